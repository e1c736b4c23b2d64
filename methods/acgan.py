"""The AC-GAN family (Odena et al. 2017, and the modified forms of StarGAN / AttGAN), as compared by
the conditional activation GAN paper (Cho & Yoon, IEEE Access 2020; papers.md section B).

G takes a latent z and a one-hot class; D has an adversarial head and a class head (``class-heads``).
With L_adv the row's adversarial loss and L_cls(.) the class head's cross-entropy:

====================  ======================================  ===========================
method                D minimises                             G minimises
====================  ======================================  ===========================
``acgan``             L_adv + l (L_cls(real) + L_cls(fake))   L_adv + l L_cls(fake)
``acgan-mod``         L_adv + l L_cls(real)                   L_adv + l L_cls(fake)
``acgan-mod-gcls``    L_adv + l (L_cls(real) + L_cls(fake))   L_adv + l L_cls(fake)
====================  ======================================  ===========================

The original AC-GAN's G loss also holds L_cls(real), a constant for G (no gradient reaches G through
it): it is left out. ``acgan`` weighs the class terms 1 (the original sums them), the modified forms
``lambda_cls`` = 0.1 (the authors' code). ``adversarial = false`` drops L_adv (the paper's runs
without adversarial loss). G's conditions (``fake_labels``) are drawn uniformly over the classes, as the
authors' code does (CAGAN ``ctg_ltn_dist``, CAGAN-MNIST ``Train.py``), or copied from the real batch
(``"real"``: then G's conditions follow the data's class prior, imbalanced sets included, and a real and a
generated batch have the same condition distribution); labels and latents are a pure function of
(seed, step). Mixed batch training (``mixed_share``, :mod:`methods.mixed_batch`) is an option of every
variant, as the authors' two complementary batches (``mixed_batches = 2``, every sample used) or one;
when on, G's step sees the same mix (only the generated samples enter G's loss).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from bench.adversarial import descend, frozen, two_player
from bench.contracts import (AdvTerms, ComponentArgs, DOutput, FromPrior, MethodAdapter, SampleRequest, Slot,
                             TrainContext, registry_ref)
from bench.errors import ConfigError, MetricError
from bench.tasks import TaskSpec
from bench.nets import check_options, init_weights
from methods.mixed_batch import MixedBatch, complementary_forward, mixed_forward

FAKE_LABELS = ("uniform", "real")


@dataclass
class ClassGANOptions:
    loss: str = registry_ref("losses", "lsgan", "adversarial loss (the paper: LSGAN)")
    regularizers: dict[str, float] = registry_ref("regularizers", {}, "name -> weight")
    z_dim: int = 256                 # the authors' code: latent 256 + one-hot 10
    ngf: int = 64
    ndf: int = 64
    lr_g: float = 1e-5               # the authors' code (paper text: 3e-6)
    lr_d: float = 1e-5
    beta1: float = 0.5
    beta2: float = 0.999
    init_gain: float = 0.02
    fake_labels: str = "uniform"     # G's conditions: "uniform" (the authors' code) | "real" (the real batch's)
    mixed_share: float = 0.0         # real share of every D batch (0: off; the paper: 0.5)
    mixed_batches: int = 2           # 2: the authors' complementary pair, every sample used; 1: one batch
    mixed_start: float = 0.0         # with mixed_growth > 0: the share at epoch 0 (the authors: 0) ...
    mixed_growth: float = 0.0        # ... growing by this much per epoch up to mixed_share (the authors: 0.01)
    d_penalty: float = 0.0           # weight of the squared gradient of D's score at every input it judges, real
    #                                  and generated (the authors' current code: 1.0; the paper's text: none)

    def __post_init__(self) -> None:
        check_options(self, positive=("lr_g", "lr_d", "init_gain"), at_least_one=("z_dim", "ngf", "ndf"),
                      non_negative=("mixed_growth", "d_penalty"), unit=("beta1", "beta2", "mixed_share", "mixed_start"))
        if self.fake_labels not in FAKE_LABELS:
            raise ConfigError(f"option 'fake_labels' must be one of {', '.join(FAKE_LABELS)}, not "
                              f"'{self.fake_labels}'")
        if (self.mixed_start or self.mixed_growth) and not self.mixed_share:
            raise ConfigError("options 'mixed_start' / 'mixed_growth' need mixed_share > 0 (the share they grow to)")
        if self.mixed_share:
            self.mixed()                # the schedule's own checks, at parse time

    def mixed(self) -> MixedBatch | None:
        if not self.mixed_share:
            return None
        start = self.mixed_start if self.mixed_growth else None
        return MixedBatch(self.mixed_share, start, self.mixed_growth, self.mixed_batches)


class ClassConditionalGAN(MethodAdapter):
    """What every class-conditional variant shares: components, sampling, the two optimisation steps."""

    Options = ClassGANOptions
    slots = {
        "G": Slot("generators", "class-dcgan", args=("z_dim", "num_classes"), provided=("image_size", "ngf"),
                  call=("z", "onehot"), doc="(z, one-hot class) -> image"),
        "D": Slot("discriminators", "class-heads", args=("in_channels", "num_classes"),
                  provided=("image_size", "ndf"), call=("y",), doc="image -> {adversarial logit, class logits}"),
    }
    samples_from = ("prior",)

    @classmethod
    def component_args(cls, slot: str, o: Any, task: TaskSpec, image_size: int) -> ComponentArgs:
        k = task.info.num_classes
        if slot == "G":
            return ComponentArgs((o.z_dim, k), dict(image_size=image_size, ngf=o.ngf))
        return ComponentArgs((task.y_channels, k), dict(image_size=image_size, ndf=o.ndf))

    @classmethod
    def init_component(cls, slot: str, module: nn.Module, o: Any) -> None:
        init_weights(module, o.init_gain)

    def __init__(self, options: Any, task: TaskSpec, ctx: TrainContext, components: dict[str, nn.Module]):
        super().__init__(options, task, ctx, components)
        if task.info.num_classes < 2:
            raise ConfigError(f"a class-conditional GAN needs class labels; dataset '{task.info.name}' has none")
        self.num_classes = task.info.num_classes
        self.class_field = next((n for n, f in task.inputs.items() if f.kind == "class"), None)
        if self.class_field is None:
            raise ConfigError(f"task '{task.name}' has no class input for a class-conditional GAN")
        two_player(self, components, options, ctx)
        self.mixed = options.mixed()

    # -- the losses of a variant -------------------------------------------------------------------
    def d_objective(self, t: AdvTerms, y_real: torch.Tensor, y_fake: torch.Tensor
                    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """D's loss from its outputs on real and generated samples (``t.d_real``, ``t.d_fake``)."""
        raise NotImplementedError

    def g_objective(self, t: AdvTerms, y_real: torch.Tensor, y_fake: torch.Tensor
                    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """G's loss from D's outputs on generated samples (``t.d_real`` is computed if read)."""
        raise NotImplementedError

    def regularised_terms(self, t: AdvTerms, y_real: torch.Tensor, y_fake: torch.Tensor) -> AdvTerms:
        """What the row's regularisers see: D's outputs as the adversarial loss reads them (CA-GAN: the
        activated class logits)."""
        return t

    def penalty_scores(self, out: DOutput, labels: torch.Tensor) -> torch.Tensor:
        """Per sample, the score whose input gradient ``d_penalty`` penalises: the adversarial logit (the
        authors' code for AC-GAN; CA-GAN penalises its activated class logit)."""
        return out.logits[0].reshape(len(labels), -1).sum(1)

    def _penalty(self, t: AdvTerms, y_real: torch.Tensor, y_fake: torch.Tensor, real: torch.Tensor,
                 fake: torch.Tensor) -> torch.Tensor:
        """``sum_x |d score(x) / dx|^2`` over every real and generated input, divided by the batch size: the
        authors' per-position sum over their two (mixed) batches, averaged (CAGAN-MNIST Train.py reg_losses).
        Not a registered regulariser (methods.regularizers): those query D again through ``AdvTerms.critic`` on
        real or generated samples alone, which with batch norm in D would not be the outputs of the mixed
        batches D was judged on; this differentiates the outputs the step already computed."""
        score = self.penalty_scores(t.d_real, y_real).sum() + self.penalty_scores(t.d_fake, y_fake).sum()
        g_real, g_fake = torch.autograd.grad(score.float(), [real, fake], create_graph=True)
        return (g_real.float().pow(2).sum() + g_fake.float().pow(2).sum()) / len(real)

    # -- training ----------------------------------------------------------------------------------
    def _generate(self, labels: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        with self.ctx.autocast():
            return self.G(z.to(labels.device), F.one_hot(labels, self.num_classes).float())

    def _critic(self, v: torch.Tensor) -> DOutput:
        with self.ctx.autocast():
            return DOutput.wrap(self.D(v))

    def _terms(self, real: torch.Tensor, fake: torch.Tensor, y_real: torch.Tensor, y_fake: torch.Tensor,
               step: int, need_real: bool = True) -> tuple[AdvTerms, torch.Tensor, torch.Tensor]:
        """D's outputs on real and generated samples: separate batches, or mixed ones (returns the terms and
        the labels of the samples they hold, in the terms' order)."""
        real, fake = self.adv.seen(step, real, fake)
        if self.mixed is None:
            d_real = self._critic(real) if need_real else None
            return self.adv.terms(self._critic, real, fake, d_real, self._critic(fake)), y_real, y_fake
        share = self.mixed.real_share(self.ctx.epoch(step * self.d_steps_per_g))
        with self.ctx.autocast():
            if self.mixed.batches == 2:
                d_real, d_fake, _ = complementary_forward(self.D, real, fake, share)
                return self.adv.terms(self._critic, real, fake, d_real, d_fake), y_real, y_fake
            d_real, d_fake, k, m = mixed_forward(self.D, real, fake, share)
        return self.adv.terms(self._critic, real[:k], fake[:m], d_real, d_fake), y_real[:k], y_fake[:m]

    def fake_conditions(self, labels: torch.Tensor, step: int) -> torch.Tensor:
        """G's conditions for a step whose real batch has ``labels`` (``fake_labels``)."""
        if self.options.fake_labels == "real":
            return labels
        g = self.ctx.generator(step, "labels")
        return torch.randint(0, self.num_classes, (len(labels),), generator=g).to(labels.device)

    def train_step(self, batch: dict[str, torch.Tensor], step: int, update_g: bool) -> dict[str, torch.Tensor]:
        real, labels = self.task.y(batch), self.task.get(self.class_field, batch)
        y_fake = self.fake_conditions(labels, step)
        z = torch.randn(len(labels), self.options.z_dim, generator=self.ctx.generator(step, "z"))
        with torch.set_grad_enabled(update_g):
            fake = self._generate(y_fake, z)
        penalise = self.options.d_penalty > 0
        real_d = real.detach().requires_grad_(True) if penalise else real
        fake_d = fake.detach().requires_grad_(penalise)
        t, yr, yf = self._terms(real_d, fake_d, labels, y_fake, step)
        loss_d, parts_d = self.d_objective(t, yr, yf)
        if penalise:
            parts_d["penalty"] = self._penalty(t, yr, yf, real_d, fake_d)
            loss_d = loss_d + self.options.d_penalty * parts_d["penalty"]
        loss_d, regs = self.adv.d_loss(self.regularised_terms(t, yr, yf), base=loss_d)
        descend(loss_d, self.optimizers["D"])
        out = {**self.adv.d_logs(loss_d, parts_d), **regs}
        if update_g:
            with frozen(self.D):
                t, yr, yf = self._terms(real, fake, labels, y_fake, step, need_real=False)
                loss_g, parts_g = self.g_objective(t, yr, yf)
                loss_g, logs = self.adv.g_loss(self.regularised_terms(t, yr, yf), base=loss_g, parts=parts_g)
                descend(loss_g, self.optimizers["G"])
            out.update(logs)
        return out

    # -- sampling ----------------------------------------------------------------------------------
    @torch.no_grad()
    def sample(self, request: SampleRequest) -> dict[str, torch.Tensor]:
        if not isinstance(request, FromPrior) or request.labels is None:
            raise MetricError(f"{type(self).__name__} samples from the prior, for given class labels")
        labels = request.labels.to(self.ctx.device).long()
        self.G.eval()
        try:
            out = self._generate(labels, request.normal(self.options.z_dim)).float()
        finally:
            self.G.train()
        return {"y": out}

    def eval_protocol(self) -> dict[str, Any]:
        return {"generator_eval_mode": True, "latents": f"N(0, I) of {self.options.z_dim} dims, from the request"}


def _cls(out: DOutput, labels: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(out.heads["cls"].float(), labels)


@dataclass
class ACGANOptions(ClassGANOptions):
    adversarial: bool = True         # False: drop L_adv (the paper's runs without adversarial loss)
    lambda_cls: float = 1.0          # weight of the class terms

    def __post_init__(self) -> None:
        super().__post_init__()
        check_options(self, non_negative=("lambda_cls",))
        if not self.adversarial and not self.lambda_cls:
            raise ConfigError("with adversarial = false, lambda_cls must be positive (nothing would train)")


@dataclass
class ModifiedACGANOptions(ACGANOptions):
    lambda_cls: float = 0.1          # the authors' code: classification 0.1 against adversarial 1.0


class ACGAN(ClassConditionalGAN):
    """The AC-GAN family: the class terms each variant puts in D's loss are set by two flags."""

    Options = ACGANOptions
    fake_class_in_d = True           # L_cls(fake) in D's loss

    def d_objective(self, t: AdvTerms, y_real: torch.Tensor, y_fake: torch.Tensor):
        o = self.options
        cls = _cls(t.d_real, y_real) + (_cls(t.d_fake, y_fake) if self.fake_class_in_d else 0.0)
        parts = {"cls": cls}
        total = o.lambda_cls * cls
        if o.adversarial:
            adv = self.loss.d_loss(t)
            total, parts["adv"] = total + adv, adv
        return total, parts

    def g_objective(self, t: AdvTerms, y_real: torch.Tensor, y_fake: torch.Tensor):
        o = self.options
        cls = _cls(t.d_fake, y_fake)
        parts = {"cls": cls}
        total = o.lambda_cls * cls
        if o.adversarial:
            adv = self.loss.g_loss(t)
            total, parts["adv"] = total + adv, adv
        return total, parts


class ModifiedACGAN(ACGAN):
    """StarGAN / AttGAN form: D's class loss on real samples only."""

    Options = ModifiedACGANOptions
    fake_class_in_d = False


class ModifiedACGANFakeClass(ACGAN):
    """The modified form with the fake class term added back to D's loss."""

    Options = ModifiedACGANOptions
    fake_class_in_d = True
