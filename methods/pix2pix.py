"""pix2pix (Isola et al. 2017): an image-conditioned GAN with an L1 term.

G maps the condition x to y; D sees (x, y) pairs and decides real or generated; G minimises
the adversarial loss plus ``lambda_l1 * |G(x) - y|_1`` plus any regularisers of the row. The
discriminator is any registered image-conditioned one, which is what makes discriminators
comparable on fixed G, data and metrics; it may return several scales and intermediate features
(pix2pixHD's multi-scale D with ``regularizers = { feature-matching = 10.0 }``). Defaults are
pix2pix's (Adam 2e-4, betas (0.5, 0.999), lambda 100, D loss halved); the fusion-paper suites
override them (betas (0, 0.9), D twice per G step, SN in G).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from bench.contracts import (AdvTerms, ComponentArgs, DOutput, MethodAdapter, Slot, TrainContext,
                             registry_ref)
from bench.registry import LOSSES
from bench.tasks import TaskSpec
from methods.grad import frozen
from methods.init import check_options, init_weights
from methods.optim import adam
from methods.regularizers import Regularizers


class Pix2Pix(MethodAdapter):
    @dataclass
    class Options:
        loss: str = registry_ref("losses", "vanilla", "a registered adversarial loss")
        regularizers: dict[str, float] = registry_ref("regularizers", {}, "name -> weight")
        lambda_l1: float = 100.0
        lr_g: float = 2e-4
        lr_d: float = 2e-4
        beta1: float = 0.5
        beta2: float = 0.999
        d_steps: int = 1                 # D updates per G update
        d_loss_weight: float = 0.5       # pix2pix halves D's loss
        ngf: int = 64
        ndf: int = 64
        g_spectral_norm: bool = False
        dropout: float = 0.5
        init_gain: float = 0.02
        eval_mode: bool = True           # G in eval() for scoring (pix2pix's test script keeps train())

        def __post_init__(self) -> None:
            check_options(self, positive=("lr_g", "lr_d", "d_loss_weight", "init_gain"), at_least_one=(
                "d_steps", "ngf", "ndf"), non_negative=("lambda_l1",), unit=("beta1", "beta2", "dropout"))

    slots = {
        "G": Slot("generators", "unet", args=("in_channels", "out_channels"),
                  provided=("image_size", "ngf", "spectral_norm", "dropout"), call=("x",), doc="x -> y"),
        "D": Slot("discriminators", args=("x_channels", "y_channels"), provided=("image_size", "ndf"),
                  call=("x", "y"), doc="(x, y) -> real / generated"),
    }

    @classmethod
    def component_args(cls, slot: str, o: "Pix2Pix.Options", task: TaskSpec, image_size: int) -> ComponentArgs:
        if slot == "G":
            return ComponentArgs((task.x_channels, task.y_channels),
                                 dict(image_size=image_size, ngf=o.ngf, spectral_norm=o.g_spectral_norm,
                                      dropout=o.dropout))
        return ComponentArgs((task.x_channels, task.y_channels), dict(image_size=image_size, ndf=o.ndf))

    @classmethod
    def init_component(cls, slot: str, module: nn.Module, o: "Pix2Pix.Options") -> None:
        init_weights(module, o.init_gain)

    def __init__(self, options: "Pix2Pix.Options", task: TaskSpec, ctx: TrainContext,
                 components: dict[str, nn.Module]):
        super().__init__(options, task, ctx, components)
        o = options
        self.d_steps_per_g = o.d_steps
        self.loss = LOSSES.get(o.loss)()
        self.regs = Regularizers(o.regularizers)
        self.G, self.D = components["G"], components["D"]
        self.modules = {"G": self.G, "D": self.D}
        betas = (o.beta1, o.beta2)
        self.optimizers = {
            "G": adam(self.G.parameters(), lr=o.lr_g, betas=betas),
            "D": adam(self.D.parameters(), lr=o.lr_d, betas=betas),
        }

    def _critic(self, x: torch.Tensor):
        def critic(v: torch.Tensor) -> DOutput:
            with self.ctx.autocast():
                return DOutput.wrap(self.D(x, v))
        return critic

    def _d_update(self, critic, y: torch.Tensor, fake: torch.Tensor) -> dict[str, torch.Tensor]:
        """One D step on real ``y`` against (detached) ``fake``, regularisers included; its logs."""
        t = AdvTerms(critic, y, fake, critic(y), critic(fake))
        loss_d = self.loss.d_loss(t) * self.options.d_loss_weight
        reg_d, parts_d = self.regs.d(t)
        if reg_d is not None:
            loss_d = loss_d + reg_d
        opt_d = self.optimizers["D"]
        opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        opt_d.step()
        return {"loss_D": loss_d.detach(), **{f"loss_D_{k}": v for k, v in parts_d.items()}}

    def train_step(self, batch: dict[str, torch.Tensor], step: int, update_g: bool) -> dict[str, torch.Tensor]:
        o, ctx = self.options, self.ctx
        x, y = self.task.x(batch), self.task.y(batch)
        with torch.set_grad_enabled(update_g), ctx.autocast():
            fake = self.G(x)
        critic = self._critic(x)
        out = self._d_update(critic, y, fake.detach())
        if update_g:
            with frozen(self.D):
                t = AdvTerms(critic, y, fake, None, critic(fake))
                loss_gan = self.loss.g_loss(t)
                loss_l1 = (fake.float() - y.float()).abs().mean()
                loss_g = loss_gan + o.lambda_l1 * loss_l1
                reg_g, parts_g = self.regs.g(t)
                if reg_g is not None:
                    loss_g = loss_g + reg_g
                opt_g = self.optimizers["G"]
                opt_g.zero_grad(set_to_none=True)
                loss_g.backward()
            opt_g.step()
            out.update(loss_G=loss_g.detach(), loss_G_gan=loss_gan.detach(), loss_G_l1=loss_l1.detach(),
                       **{f"loss_G_{k}": v for k, v in parts_g.items()})
        return out

    @torch.no_grad()
    def generate(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        self.G.train(not self.options.eval_mode)
        with self.ctx.autocast():
            out = self.G(self.task.x(batch))
        self.G.train(True)
        return out.float()

    def eval_protocol(self) -> dict[str, Any]:
        return {"generator_eval_mode": bool(self.options.eval_mode)}
