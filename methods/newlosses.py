"""The new-losses paper (papers.md D): what its five models share, and its reverse-KL GAN (``gan-rkl``).

The paper compares, on CelebA, a GAN minimising the reverse KL, a VAE whose reconstruction distance is learned
adversarially (``vae-perceptual``), VAEGAN (``vaegan``, Larsen et al. 2016; both in :mod:`methods.vae_gan`) and
a symmetric KL between the encoder's and the decoder's joint distributions, with and without a draw from
p(x|z) (``sdkl`` / ``sdkl-nosample``, :mod:`methods.sdkl`). It has no table; its Figure 1 plots D's loss and the
latent KL along training, which every adapter here logs (``loss_D``, ``kl``). Its equations are lost from our
copy and it has no public code: the objectives are derived in each module's docstring, and every value below
is an **assumption** (the paper names the components, not their sizes):

- Networks (slots, so a row may swap them): ``E`` = :class:`GaussianEncoder` (``elu-gauss-encoder``: ELU convs,
  the paper's "ELU conv encoder", to mu and log-variance), ``Dec`` = ``conv-decoder`` (the paper's "deconv
  decoder": FC to 4x4, 5x5 transposed convs, batch norm, ReLU, tanh, so images in [-1, 1]; N(0, 0.02) weights),
  ``D`` = ``elu-noisy`` (ELU convs, Gaussian noise of std 0.1 at the input of the second conv) or, for SDKL, the
  joint ``elu-joint``. Widths ``width`` = ``ndf`` = 64 and ``z_dim`` = 128 (Larsen et al.'s CelebA latent).
- Adam (the paper) at lr 2e-4, betas (0.5, 0.999) (DCGAN's: assumed), one optimiser per network (``E``,
  ``Dec``, ``D``); ``d_steps`` = k D updates per generator-side update (the paper's k is lost: 1 here, the suite
  sets its own). Orthogonal regularisation of D is the row's ``regularizers = { orthogonal = w }``.
- Latents: the prior is N(0, I); q(z|x) = N(mu(x), diag(exp(logvar(x)))) sampled by reparametrisation,
  ``z = mu + exp(logvar / 2) * eps``. Every eps (posterior, prior, and SDKL's p(x|z) draw) comes from
  ``TrainContext.generator(step, stream)``, a pure function of (run seed, step, stream, D-step index within the
  step), so a resumed run draws the same numbers; D's own noise (``elu-noisy``) and the row's input
  regularisers draw from torch's global generator, which checkpoints carry.
- ``kl`` (logged at every call of ``train_step``) is the batch mean of KL(q(z|x) || N(0, I)) =
  0.5 sum_j (mu_j^2 + sigma_j^2 - 1 - log sigma_j^2) (:func:`gaussian_kl`).

Sampling: ``FromPrior(n, None, seed)`` gives ``{"y": Dec(z)}``, z ~ N(0, I) from the request, every network in
eval mode (D's noise off, batch norm on running statistics); the models with an encoder also answer
``FromBatch`` with the reconstruction Dec(mu(y)) of the batch's target images (the posterior mean: an
assumption), as ``y`` and ``y_rec``. The models are unconditional: a task with a class input is refused.

``gan-rkl``: a GAN from the prior, Dec is its generator; D and G trained by the row's loss, by default ``rkl``
(D: BCE; G: E_q[-l] = E_q[log((1 - D) / D)], Huszar 2016's reverse-KL loss, derived in
:mod:`methods.fdiv_losses`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, ClassVar

import torch
from torch import nn

from bench.adversarial import AdversarialStep, adam, descend, frozen
from bench.contracts import (ComponentArgs, DOutput, FromBatch, FromPrior, MethodAdapter, SampleRequest, Slot,
                             TrainContext, registry_ref)
from bench.errors import ConfigError, MetricError
from bench.nets import INITS, NORM_KINDS, check_options, initialise
from bench.registry import LOSSES
from bench.tasks import TaskSpec
from methods.discriminators.unconditional import dcgan_widths, strided_depth

#: log-variances are clamped to this range (exp(-30) ~ 1e-13, exp(20) ~ 5e8): a guard against overflow only
LOGVAR_RANGE = (-30.0, 20.0)


# --------------------------------------------------------------------------------------- pieces
class GaussianEncoder(nn.Module):
    """``forward(x) -> (mu, logvar)``, each (N, z_dim): q(z|x) = N(mu, diag(exp(logvar))).

    The paper's "ELU conv encoder" (assumed shape, the trunk of ``elu-noisy``): 4x4 stride-2 convs, padding 1,
    widths ``width``, 2 ``width``, 4 ``width`` (, 8 ``width`` at 64 px) down to 4x4, each followed by ELU, no
    normalisation; a linear layer from the flattened map to 2 ``z_dim`` (mu, then logvar, clamped to
    ``LOGVAR_RANGE``). He (fan-in) initialisation, its own (``init_policy = "own"``), like ``elu-noisy``.
    """

    init_policy = "own"

    def __init__(self, in_channels: int, z_dim: int, *, image_size: int = 64, width: int = 64,
                 weight_init: str = "fan-in"):
        super().__init__()
        what = type(self).__name__
        if weight_init not in INITS:
            raise ConfigError(f"{what}: unknown weight_init '{weight_init}'; choose one of: {', '.join(INITS)}")
        layers: list[nn.Module] = []
        c = in_channels
        for w in dcgan_widths(width, strided_depth(image_size, what)):
            layers += [nn.Conv2d(c, w, 4, 2, 1), nn.ELU()]
            c = w
        self.trunk = nn.Sequential(*layers, nn.Flatten())
        self.head = nn.Linear(c * 16, 2 * z_dim)
        self.z_dim = z_dim
        initialise(self, weight_init)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logvar = self.head(self.trunk(x)).chunk(2, dim=1)
        return mu, logvar.clamp(*LOGVAR_RANGE)


def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """Per sample, KL(N(mu, diag(exp(logvar))) || N(0, I)) = 0.5 sum_j (mu_j^2 + exp(logvar_j) - 1 - logvar_j)."""
    mu, logvar = mu.float(), logvar.float()
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum(1)


def descend_split(*pairs: tuple[torch.Tensor, torch.optim.Optimizer]) -> None:
    """One step of every optimiser, each on the gradient of its own loss (the losses may share one graph):
    optimiser k's parameters get the gradient of loss k and of nothing else. With one pair it is
    :func:`bench.adversarial.descend`. VAEGAN needs it: E and Dec are trained on different losses computed from
    the same forward pass (E: KL + Dis_l; Dec: gamma Dis_l + GAN), and E's loss is no part of Dec's gradient."""
    grads = []
    for i, (loss, opt) in enumerate(pairs):
        params = [p for group in opt.param_groups for p in group["params"] if p.requires_grad]
        got = torch.autograd.grad(loss, params, retain_graph=i < len(pairs) - 1, allow_unused=True)
        grads.append((opt, params, got))
    for opt, params, got in grads:
        opt.zero_grad(set_to_none=True)
        for p, g in zip(params, got):
            p.grad = g
        opt.step()


# --------------------------------------------------------------------------------------- options
@dataclass
class NewLossOptions:
    loss: str = registry_ref("losses", "rkl", "the row's adversarial loss (gan-rkl: the paper's reverse KL)")
    regularizers: dict[str, float] = registry_ref("regularizers", {}, "name -> weight (the paper: orthogonal in D)")
    z_dim: int = 128                 # Larsen et al.'s CelebA latent (assumption)
    width: int = 64                  # E's first width, Dec's last width (DCGAN's 64: assumption)
    ndf: int = 64                    # D's first width
    norm: str = "batch"              # in Dec (DCGAN's generator: assumption)
    lr: float = 2e-4                 # E and Dec
    lr_d: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.999
    d_steps: int = 1                 # k: D updates per generator-side update (the paper's k is lost)
    init: str = "normal"             # components that take the adapter's initialisation (Dec): N(0, init_gain)
    init_gain: float = 0.02

    def __post_init__(self) -> None:
        check_options(self, positive=("lr", "lr_d", "init_gain"), at_least_one=("z_dim", "width", "ndf", "d_steps"),
                      unit=("beta1", "beta2"))
        if self.norm not in NORM_KINDS:
            raise ConfigError(f"option 'norm' must be one of {', '.join(NORM_KINDS)}, not '{self.norm}'")
        if self.init not in INITS:
            raise ConfigError(f"option 'init' must be one of {', '.join(INITS)}, not '{self.init}'")


def encoder_slot() -> Slot:
    return Slot("generators", "elu-gauss-encoder", args=("in_channels", "z_dim"), provided=("image_size", "width"),
                call=("x",), doc="image -> (mu, logvar) of q(z|x)")


def decoder_slot() -> Slot:
    return Slot("generators", "conv-decoder", args=("z_dim", "out_channels"), provided=("image_size", "width", "norm"),
                call=("z",), doc="latent -> image in [-1, 1]")


def image_d_slot() -> Slot:
    return Slot("discriminators", "elu-noisy", args=("in_channels",), provided=("image_size", "ndf"), call=("y",),
                doc="image -> real / generated (with features)")


# --------------------------------------------------------------------------------------- base adapter
class LatentModel(MethodAdapter):
    """What the five models share: networks, optimisers, resume-exact noise, KL, sampling."""

    Options = NewLossOptions
    slots: ClassVar[dict[str, Slot]] = {"Dec": decoder_slot(), "D": image_d_slot()}
    samples_from = ("prior",)
    ema_modules = ("E", "Dec")             # the generator side (bench/ema.py); E where the model has one

    @classmethod
    def component_args(cls, slot: str, o: Any, task: TaskSpec, image_size: int) -> ComponentArgs:
        c = task.y_channels
        if slot == "E":
            return ComponentArgs((c, o.z_dim), dict(image_size=image_size, width=o.width))
        if slot == "Dec":
            return ComponentArgs((o.z_dim, c), dict(image_size=image_size, width=o.width, norm=o.norm))
        args = (c, o.z_dim) if cls.slots["D"].args == ("in_channels", "z_dim") else (c,)
        return ComponentArgs(args, dict(image_size=image_size, ndf=o.ndf))

    @classmethod
    def init_component(cls, slot: str, module: nn.Module, o: Any) -> None:
        initialise(module, o.init, o.init_gain)

    def __init__(self, options: Any, task: TaskSpec, ctx: TrainContext, components: dict[str, nn.Module]):
        super().__init__(options, task, ctx, components)
        if any(f.kind == "class" for f in task.inputs.values()):
            raise ConfigError(f"{type(self).__name__} is unconditional; task '{task.name}' has a class input "
                              "(use a task sampled from the prior without classes, e.g. 'digits')")
        o = options
        self.d_steps_per_g = o.d_steps
        self.modules = dict(components)
        self.E: nn.Module | None = components.get("E")
        self.Dec, self.D = components["Dec"], components["D"]
        # Dec is the generator: "g" regularisers that read weights (orthogonal-g) find it as "G"
        self.adv = AdversarialStep(LOSSES.get(o.loss)(), o.regularizers, ctx, {**self.modules, "G": self.Dec})
        self.loss = self.adv.loss
        betas = (o.beta1, o.beta2)
        self.optimizers = {"D": adam(self.D.parameters(), lr=o.lr_d, betas=betas),
                           "Dec": adam(self.Dec.parameters(), lr=o.lr, betas=betas)}
        if self.E is not None:
            self.optimizers["E"] = adam(self.E.parameters(), lr=o.lr, betas=betas)
        self._sub = 0                     # D-only calls since the last generator-side update

    # -- noise ---------------------------------------------------------------------------------------
    def noise(self, step: int, stream: str, *shape: int) -> torch.Tensor:
        """N(0, 1) of ``shape``, a pure function of (run seed, step, stream, D-step index within the step)."""
        g = self.ctx.generator(step, f"{stream}/{self._sub}")
        return torch.randn(*shape, generator=g).to(self.ctx.device)

    def extra_state(self) -> dict[str, Any]:
        return {"sub": self._sub}         # 0 at every checkpoint (saved after generator-side updates)

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self._sub = int(state.get("sub", 0))

    def _advance(self, update_g: bool) -> None:
        self._sub = 0 if update_g else self._sub + 1

    # -- networks ------------------------------------------------------------------------------------
    def critic(self, v: torch.Tensor) -> DOutput:
        with self.ctx.autocast():
            return DOutput.wrap(self.D(v))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        with self.ctx.autocast():
            return self.Dec(z)

    def encode(self, x: torch.Tensor, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """A reparametrised z ~ q(z|x) and the batch mean of KL(q(z|x) || N(0, I))."""
        with self.ctx.autocast():
            mu, logvar = self.E(x)
        mu, logvar = mu.float(), logvar.float()
        z = mu + (0.5 * logvar).exp() * self.noise(step, "eps", *mu.shape)
        return z, gaussian_kl(mu, logvar).mean()

    def d_update(self, real: torch.Tensor, fake: torch.Tensor, step: int,
                 critic: Callable[[torch.Tensor], DOutput] | None = None) -> dict[str, torch.Tensor]:
        """One D step of the row's loss (and "d" regularisers) on ``real`` against ``fake`` (both detached here)."""
        critic = critic or self.critic
        real, fake = self.adv.seen(step, real.detach(), fake.detach())
        loss, logs = self.adv.d_loss(self.adv.terms(critic, real, fake, critic(real), critic(fake)))
        descend(loss, self.optimizers["D"])
        return logs

    # -- sampling ------------------------------------------------------------------------------------
    @torch.no_grad()
    def sample(self, request: SampleRequest) -> dict[str, torch.Tensor]:
        self.train(False)
        try:
            if isinstance(request, FromPrior):
                return {"y": self.decode(request.normal(self.options.z_dim).to(self.ctx.device)).float()}
            if isinstance(request, FromBatch) and self.E is not None:
                with self.ctx.autocast():
                    mu, _ = self.E(self.task.y(request.batch))
                rec = self.decode(mu).float()
                return {"y": rec, "y_rec": rec}
        finally:
            self.train(True)
        raise MetricError(f"{type(self).__name__} samples from the prior"
                          + ("" if self.E is None else " or reconstructs a batch"))

    def eval_protocol(self) -> dict[str, Any]:
        out = {"eval_mode": True, "latents": f"N(0, I) of {self.options.z_dim} dims, from the request"}
        if self.E is not None:
            out["from_batch"] = "Dec(mu(y)): the posterior mean's reconstruction"
        return out


class EncoderModel(LatentModel):
    """The models with an encoder: they also reconstruct a batch (``FromBatch``)."""

    slots = {"E": encoder_slot(), "Dec": decoder_slot(), "D": image_d_slot()}
    outputs = {"y": "y", "y_rec": "y"}
    samples_from = ("prior", "batch")


# --------------------------------------------------------------------------------------- gan-rkl
class GANRKL(LatentModel):
    """A GAN from the prior (no encoder): Dec(z) against the data, the row's loss (default ``rkl``)."""

    def train_step(self, batch: dict[str, torch.Tensor], step: int, update_g: bool) -> dict[str, torch.Tensor]:
        real = self.task.y(batch)
        z = self.noise(step, "z", len(real), self.options.z_dim)
        with torch.set_grad_enabled(update_g):
            fake = self.decode(z)
        logs = self.d_update(real, fake, step)
        if update_g:
            with frozen(self.D):
                real_s, fake_s = self.adv.seen(step, real, fake)
                t = self.adv.terms(self.critic, real_s, fake_s, None, self.critic(fake_s))
                loss, g_logs = self.adv.g_loss(t)
                descend(loss, self.optimizers["Dec"])
            logs.update(g_logs)
        self._advance(update_g)
        return logs
