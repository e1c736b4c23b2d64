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

Defaults follow the authors' code: Adam 2e-4, beta1 0.5, 5x5 kernels, batch norm in ED and D, latent 50.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from bench.contracts import AdvTerms, ComponentArgs, DOutput, MethodAdapter, Slot, TrainContext, registry_ref
from bench.errors import ConfigError
from bench.registry import LOSSES
from bench.tasks import TaskSpec
from methods.grad import frozen
from methods.init import NORM_KINDS, check_options, init_weights
from methods.optim import adam


@dataclass
class DecoupledOptions:
    loss: str = registry_ref("losses", "vanilla", "a registered adversarial loss")
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

    def __post_init__(self) -> None:
        check_options(self, positive=("lr", "init_gain"), at_least_one=("z_dim", "width", "ndf"),
                      non_negative=("lambda_adv", "lambda_rec"), unit=("beta1", "beta2"))
        for k in ("norm", "d_norm"):
            if getattr(self, k) not in NORM_KINDS:
                raise ConfigError(f"option '{k}' must be one of {', '.join(NORM_KINDS)}, not '{getattr(self, k)}'")


def _decoder_slot(doc: str) -> Slot:
    return Slot("generators", "conv-decoder", args=("z_dim", "out_channels"), provided=("image_size", "width", "norm"),
                call=("z",), doc=doc)


class EDGAN(MethodAdapter):
    """ED+GAN: one decoder trained by L1 + lambda_adv * adversarial."""

    Options = DecoupledOptions
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
        init_weights(module, o.init_gain)

    def __init__(self, options: DecoupledOptions, task: TaskSpec, ctx: TrainContext,
                 components: dict[str, nn.Module]):
        super().__init__(options, task, ctx, components)
        self.loss = LOSSES.get(options.loss)()
        self.modules = dict(components)
        betas = (options.beta1, options.beta2)
        self.optimizers = {name: adam(self.parameter_groups()[name], lr=options.lr, betas=betas)
                           for name in self.parameter_groups()}

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        """One optimiser per group: what each loss may move."""
        m = self.modules
        return {"ED": [*m["E"].parameters(), *m["Dec"].parameters()], "D": list(m["D"].parameters())}

    # -- the forward pass of a variant --------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Named outputs for a batch of inputs; ``y`` is what D judges."""
        with self.ctx.autocast():
            y_rec = self.modules["Dec"](self.modules["E"](x))
        return {"y": y_rec, "y_rec": y_rec}

    def _critic(self, v: torch.Tensor) -> DOutput:
        with self.ctx.autocast():
            return DOutput.wrap(self.modules["D"](v))

    def train_step(self, batch: dict[str, torch.Tensor], step: int, update_g: bool) -> dict[str, torch.Tensor]:
        o = self.options
        x, y = self.task.x(batch), self.task.y(batch)
        with torch.set_grad_enabled(update_g):
            out = self.forward(x)
        fake = out["y"]
        t = AdvTerms(self._critic, y, fake.detach(), self._critic(y), self._critic(fake.detach()))
        loss_d = self.loss.d_loss(t)
        opt_d = self.optimizers["D"]
        opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        opt_d.step()
        logs = {"loss_D": loss_d.detach()}
        if update_g:
            with frozen(self.modules["D"]):
                adv = self.loss.g_loss(AdvTerms(self._critic, y, fake, None, self._critic(fake)))
                rec = (out["y_rec"].float() - y.float()).abs().mean()
                loss = o.lambda_rec * rec + o.lambda_adv * adv
                for name, opt in self.optimizers.items():
                    if name != "D":
                        opt.zero_grad(set_to_none=True)
                loss.backward()
            for name, opt in self.optimizers.items():
                if name != "D":
                    opt.step()
            logs.update(loss_G=loss.detach(), loss_G_gan=adv.detach(), loss_G_l1=rec.detach())
        return logs

    @torch.no_grad()
    def generate(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        self.train(False)
        try:
            out = self.forward(self.task.x(batch))
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

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        m = self.modules
        with self.ctx.autocast():
            z = m["E"](x)
            y_rec = m["Dec"](z)
            y_gan = m["G"](z.detach())
        # the adversarial path sees the reconstruction as a constant: no adversarial gradient reaches Enc/Dec
        return {"y_rec": y_rec, "y_gan": y_gan, "y": y_rec.detach() + y_gan}
