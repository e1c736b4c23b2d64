"""Decoupled learning (Zhang, Song & Qi, WACV 2018; papers.md section C): ED+GAN and ED//GAN.

Both are an encoder-decoder (ED) that reconstructs its input, ``z = Enc(x)``, ``y_rec = Dec(z)``,
judged by an image discriminator D against the real images:

- ``ed-gan`` (ED+GAN, coupled): the decoder is trained by ``L1(y_rec, y) + lambda_adv * adv``, so
  the reconstruction and the adversarial loss pull on the same weights and ``lambda_adv`` trades
  them off. Output ``y = y_rec``.
- ``ed-par-gan`` (ED//GAN, decoupled): Enc and Dec are trained by the L1 loss only; a generator G
  with its own weights (a copy of Dec's architecture) takes the same latent and is trained by the
  adversarial loss only; the output is ``y = Dec(z) + G(z)`` and D sees that sum. No loss reaches
  the other's weights: the L1 gradient stops at G's input (``z`` is detached for G) and the
  adversarial gradient stops at Dec's output (``y_rec`` is detached in the sum). ``lambda_adv``
  only scales G's gradient, which Adam largely normalises away: the paper's point that ED//GAN
  needs no weight between the losses. Outputs ``y``, ``y_rec`` and ``y_gan`` (the residual G adds).

Both forms share one training step; a variant conditioned on more than the latent (CAAE's age group,
:mod:`methods.caae`) overrides its hooks: ``condition``, ``decoder_input``, ``critic``, ``d_objective``,
``g_objective`` and ``d_groups``.

Defaults follow the authors' code: Adam 2e-4, beta1 0.5, 5x5 kernels, batch norm in ED and D, latent 50,
weights N(0, 0.02). ``init = "fan-in"`` (He) is for nets without batch norm at widths far below the paper's:
there N(0, 0.02) leaves the output constant (see :func:`bench.nets.init_fan_in`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, ClassVar

import torch
from torch import nn

from bench.adversarial import AdversarialStep, adam, descend, frozen
from bench.contracts import ComponentArgs, DOutput, MethodAdapter, Slot, TrainContext, registry_ref
from bench.errors import ConfigError
from bench.registry import LOSSES
from bench.tasks import TaskSpec
from bench.nets import INITS, NORM_KINDS, check_options, initialise


@dataclass
class DecoupledOptions:
    loss: str = registry_ref("losses", "vanilla", "a registered adversarial loss")
    regularizers: dict[str, float] = registry_ref("regularizers", {}, "name -> weight (on the image D)")
    lambda_adv: float = 0.01          # ED+GAN: weight of the adversarial term; ED//GAN: scale of G's loss
    lambda_rec: float = 1.0           # weight of the L1 reconstruction
    z_dim: int = 50
    width: int = 64                   # first encoder width / last decoder width
    ndf: int = 64
    norm: str = "batch"               # in Enc, Dec (and G): "batch" (Table 2) or "none" (Table 3)
    d_norm: str = "batch"
    lr: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.999
    init_gain: float = 0.02
    init: str = "normal"              # "normal": N(0, init_gain) (the authors' DCGAN code); "fan-in": He init

    def __post_init__(self) -> None:
        check_options(self, positive=("lr", "init_gain"), at_least_one=("z_dim", "width", "ndf"),
                      non_negative=("lambda_adv", "lambda_rec"), unit=("beta1", "beta2"))
        if self.init not in INITS:
            raise ConfigError(f"option 'init' must be one of {', '.join(INITS)}, not '{self.init}'")
        for k in ("norm", "d_norm"):
            if getattr(self, k) not in NORM_KINDS:
                raise ConfigError(f"option '{k}' must be one of {', '.join(NORM_KINDS)}, not '{getattr(self, k)}'")


def _decoder_slot(doc: str) -> Slot:
    return Slot("generators", "conv-decoder", args=("z_dim", "out_channels"), provided=("image_size", "width", "norm"),
                call=("z",), doc=doc)


class EDGAN(MethodAdapter):
    """ED+GAN: one decoder trained by L1 + lambda_adv * adversarial."""

    Options = DecoupledOptions
    ema_modules = ("E", "Dec", "G")       # encoder, decoder and (ED//GAN) residual G: bench/ema.py
    slots = {
        "E": Slot("generators", "conv-encoder", args=("in_channels", "z_dim"), provided=("image_size", "width", "norm"),
                  call=("x",), doc="image -> latent"),
        "Dec": _decoder_slot("latent -> reconstruction"),
        "D": Slot("discriminators", "conv-critic", args=("in_channels",), provided=("image_size", "ndf", "norm"),
                  call=("y",), doc="image -> real / generated"),
    }

    @classmethod
    def component_args(cls, slot: str, o: DecoupledOptions, task: TaskSpec, image_size: int) -> ComponentArgs:
        if slot == "E":
            return ComponentArgs((task.x_channels, o.z_dim), dict(image_size=image_size, width=o.width, norm=o.norm))
        if slot == "D":
            return ComponentArgs((task.y_channels,), dict(image_size=image_size, ndf=o.ndf, norm=o.d_norm))
        return ComponentArgs((o.z_dim, task.y_channels), dict(image_size=image_size, width=o.width, norm=o.norm))

    @classmethod
    def init_component(cls, slot: str, module: nn.Module, o: DecoupledOptions) -> None:
        initialise(module, o.init, o.init_gain)

    def __init__(self, options: DecoupledOptions, task: TaskSpec, ctx: TrainContext,
                 components: dict[str, nn.Module]):
        super().__init__(options, task, ctx, components)
        self.modules = dict(components)
        self.adv = AdversarialStep(LOSSES.get(options.loss)(), options.regularizers, ctx, self.modules)
        self.loss = self.adv.loss
        betas = (options.beta1, options.beta2)
        self.optimizers = {name: adam(self.parameter_groups()[name], lr=options.lr, betas=betas)
                           for name in self.parameter_groups()}

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        """One optimiser per group: what each loss may move."""
        m = self.modules
        return {"ED": [*m["E"].parameters(), *m["Dec"].parameters()], "D": list(m["D"].parameters())}

    # -- the hooks a variant overrides ---------------------------------------------------------------
    #: the optimiser groups stepped by the discriminators' losses (the others step with the generator side)
    d_groups: ClassVar[tuple[str, ...]] = ("D",)

    def condition(self, batch: dict[str, torch.Tensor]) -> torch.Tensor | None:
        """What the decoder and D read besides the latent and the image (None: a plain encoder-decoder)."""
        return None

    def decoder_input(self, z: torch.Tensor, c: torch.Tensor | None) -> torch.Tensor:
        """What the decoder (and ED//GAN's G) reads: the latent itself here."""
        return z

    def critic(self, c: torch.Tensor | None) -> Callable[[torch.Tensor], DOutput]:
        """D bound to the condition ``c`` (``AdvTerms.critic``): here D sees the image alone."""
        return self._critic

    # -- the forward pass of a variant --------------------------------------------------------------
    def forward(self, x: torch.Tensor, c: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Named outputs for a batch of inputs; ``y`` is what D judges, ``z`` the latent."""
        with self.ctx.autocast():
            z = self.modules["E"](x)
            y_rec = self.modules["Dec"](self.decoder_input(z, c))
        return {"y": y_rec, "y_rec": y_rec, "z": z}

    def _critic(self, v: torch.Tensor) -> DOutput:
        with self.ctx.autocast():
            return DOutput.wrap(self.modules["D"](v))

    # -- the losses ---------------------------------------------------------------------------------
    def d_objective(self, out: dict[str, torch.Tensor], y: torch.Tensor, c: torch.Tensor | None, step: int
                    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The discriminators' loss (one scalar: their parameters are disjoint) and its logs."""
        critic = self.critic(c)
        y, fake = self.adv.seen(step, y, out["y"].detach())
        return self.adv.d_loss(self.adv.terms(critic, y, fake, critic(y), critic(fake)))

    def g_objective(self, out: dict[str, torch.Tensor], y: torch.Tensor, c: torch.Tensor | None, step: int
                    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The generator side's loss and its parts (logged as ``loss_G_<part>``)."""
        o, critic = self.options, self.critic(c)
        rec = (out["y_rec"].float() - y.float()).abs().mean()
        y_seen, fake_seen = self.adv.seen(step, y, out["y"])
        t = self.adv.terms(critic, y_seen, fake_seen, None, critic(fake_seen))
        adv = self.loss.g_loss(t)
        loss, regs = self.adv.regularise("g", t, o.lambda_rec * rec + o.lambda_adv * adv)
        return loss, {"gan": adv, "l1": rec, **regs}

    def train_step(self, batch: dict[str, torch.Tensor], step: int, update_g: bool) -> dict[str, torch.Tensor]:
        x, y, c = self.task.x(batch), self.task.y(batch), self.condition(batch)
        with torch.set_grad_enabled(update_g):
            out = self.forward(x, c)
        loss_d, logs = self.d_objective(out, y, c, step)
        descend(loss_d, *(self.optimizers[k] for k in self.d_groups))
        if update_g:
            g_opts = [opt for name, opt in self.optimizers.items() if name not in self.d_groups]
            with frozen(*(self.modules[k] for k in self.d_groups)):
                loss, parts = self.g_objective(out, y, c, step)
                descend(loss, *g_opts)
            logs.update(loss_G=loss.detach(), **{f"loss_G_{k}": v.detach() for k, v in parts.items()})
        return logs

    @torch.no_grad()
    def generate(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        self.train(False)
        try:
            out = self.forward(self.task.x(batch), self.condition(batch))
        finally:
            self.train(True)
        return {k: v.float() for k, v in out.items() if k in self.outputs}

    def eval_protocol(self) -> dict[str, Any]:
        return {"eval_mode": True}


class EDParGAN(EDGAN):
    """ED//GAN: Enc/Dec by L1 only, G (own weights, same latent) by the adversarial loss only; y = Dec(z) + G(z)."""

    slots = {**EDGAN.slots, "G": _decoder_slot("latent -> residual added to the reconstruction")}
    outputs = {"y_rec": "y", "y_gan": "y", "y": "y"}     # the grid's order: reconstruction | residual | output

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        return {**super().parameter_groups(), "G": list(self.modules["G"].parameters())}

    def forward(self, x: torch.Tensor, c: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        m = self.modules
        with self.ctx.autocast():
            z = m["E"](x)
            h = self.decoder_input(z, c)
            y_rec = m["Dec"](h)
            y_gan = m["G"](h.detach())
        # the adversarial path sees the reconstruction as a constant: no adversarial gradient reaches Enc/Dec
        return {"y_rec": y_rec, "y_gan": y_gan, "y": y_rec.detach() + y_gan, "z": z}
