"""pix2pix (Isola et al. 2017): an image-conditioned GAN with an L1 term.

G maps the condition x to y; D sees (x, y) pairs and decides real or generated; G minimises
the adversarial loss plus ``lambda_l1 * |G(x) - y|_1`` plus any regularisers of the row. The
discriminator is any registered image-conditioned one, which is what makes discriminators
comparable on fixed G, data and metrics; it may return several scales and intermediate features
(pix2pixHD's multi-scale D, ``multiscale-patchgan``, with ``regularizers = { feature-matching = 40.0 }``:
pix2pixHD's lambda_feat 10 times its layer weight 4 / (n_layers + 1), which ``feature-matching`` averages). Defaults are
pix2pix's (Adam 2e-4, betas (0.5, 0.999), lambda 100, D loss halved); the fusion-paper suites
override them (betas (0, 0.9), D twice per G step, SN in G).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from bench.adversarial import AdversarialStep, adam, descend, frozen
from bench.contracts import ComponentArgs, DOutput, MethodAdapter, Slot, TrainContext, registry_ref
from bench.registry import LOSSES
from bench.tasks import TaskSpec
from bench.nets import check_options, init_weights


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
        self.G, self.D = components["G"], components["D"]
        self.modules = {"G": self.G, "D": self.D}
        self.adv = AdversarialStep(LOSSES.get(o.loss)(), o.regularizers, ctx, self.modules,
                                   d_loss_weight=o.d_loss_weight)
        self.loss = self.adv.loss
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

    def _d_update(self, critic, y: torch.Tensor, fake: torch.Tensor, step: int) -> dict[str, torch.Tensor]:
        """One D step on real ``y`` against (detached) ``fake``, regularisers included; its logs."""
        y, fake = self.adv.seen(step, y, fake)
        t = self.adv.terms(critic, y, fake, critic(y), critic(fake))
        loss_d, logs = self.adv.d_loss(t)
        descend(loss_d, self.optimizers["D"])
        return logs

    def _g_update(self, critic, y: torch.Tensor, fake: torch.Tensor, step: int, own: torch.Tensor,
                  parts: dict[str, torch.Tensor], *optimizers: torch.optim.Optimizer) -> dict[str, torch.Tensor]:
        """G's step (D frozen): the row's adversarial loss on ``fake`` plus the adapter's ``own`` terms; its logs."""
        with frozen(self.D):
            y_seen, fake_seen = self.adv.seen(step, y, fake)
            t = self.adv.terms(critic, y_seen, fake_seen, None, critic(fake_seen))
            loss_g, logs = self.adv.g_loss(t, own, parts=parts)
            descend(loss_g, *optimizers)
        return logs

    def train_step(self, batch: dict[str, torch.Tensor], step: int, update_g: bool) -> dict[str, torch.Tensor]:
        o, ctx = self.options, self.ctx
        x, y = self.task.x(batch), self.task.y(batch)
        with torch.set_grad_enabled(update_g), ctx.autocast():
            fake = self.G(x)
        critic = self._critic(x)
        out = self._d_update(critic, y, fake.detach(), step)
        if update_g:
            loss_l1 = (fake.float() - y.float()).abs().mean()
            out.update(self._g_update(critic, y, fake, step, o.lambda_l1 * loss_l1, {"l1": loss_l1},
                                      self.optimizers["G"]))
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
