"""pix2pix (Isola et al. 2017): an image-conditioned GAN with an L1 term.

G maps the condition x to y; D sees (x, y) pairs and decides real or generated; G minimises
the adversarial loss plus ``lambda_l1 * |G(x) - y|_1``. The discriminator is any registered
image-conditioned one, which is what makes discriminators comparable on fixed G, data and
metrics. Defaults are pix2pix's (Adam 2e-4, betas (0.5, 0.999), lambda 100, D loss halved);
the fusion-paper suites override them (betas (0, 0.9), D twice per G step, SN in G).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from bench.registry import DISCRIMINATORS, GENERATORS, LOSSES
from bench.tasks import TaskSpec
from methods.base import MethodAdapter, TrainContext
from methods.init import init_weights


class Pix2Pix(MethodAdapter):
    @dataclass
    class Options:
        loss: str = "vanilla"            # a registered loss: vanilla | lsgan | hinge
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

    def __init__(self, options: "Pix2Pix.Options", task: TaskSpec, ctx: TrainContext, *,
                 generator: str = "unet", discriminator: str = "patchgan",
                 generator_options: dict[str, Any] | None = None,
                 discriminator_options: dict[str, Any] | None = None, image_size: int = 256):
        super().__init__(options, task, ctx)
        o = options
        self.d_steps_per_g = o.d_steps
        self.loss = LOSSES.get(o.loss)()
        G = GENERATORS.get(generator)(task.x_channels, task.y_channels, image_size=image_size, ngf=o.ngf,
                                      spectral_norm=o.g_spectral_norm, dropout=o.dropout,
                                      **(generator_options or {}))
        D = DISCRIMINATORS.get(discriminator)(task.x_channels, task.y_channels, image_size=image_size,
                                              ndf=o.ndf, **(discriminator_options or {}))
        init_weights(G, o.init_gain)
        init_weights(D, o.init_gain)
        mf = torch.channels_last if ctx.channels_last else torch.contiguous_format
        self.G = G.to(ctx.device, memory_format=mf)
        self.D = D.to(ctx.device, memory_format=mf)
        self.modules = {"G": self.G, "D": self.D}
        betas = (o.beta1, o.beta2)
        self.optimizers = {
            "G": torch.optim.Adam(self.G.parameters(), lr=o.lr_g, betas=betas),
            "D": torch.optim.Adam(self.D.parameters(), lr=o.lr_d, betas=betas),
        }

    def train_step(self, batch: dict[str, torch.Tensor], step: int, update_g: bool) -> dict[str, torch.Tensor]:
        o, ctx = self.options, self.ctx
        x, y = self.task.x(batch), self.task.y(batch)
        with torch.set_grad_enabled(update_g), ctx.autocast():
            fake = self.G(x)
        with ctx.autocast():
            d_real = self.D(x, y)
            d_fake = self.D(x, fake.detach())
        loss_d = self.loss.d_loss(d_real, d_fake) * o.d_loss_weight
        opt_d = self.optimizers["D"]
        opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        opt_d.step()
        out = {"loss_D": loss_d.detach()}
        if update_g:
            with ctx.autocast():
                d_fake = self.D(x, fake)
            loss_gan = self.loss.g_loss(d_fake)
            loss_l1 = (fake.float() - y.float()).abs().mean()
            loss_g = loss_gan + o.lambda_l1 * loss_l1
            opt_g = self.optimizers["G"]
            opt_g.zero_grad(set_to_none=True)
            loss_g.backward()
            opt_g.step()
            out.update(loss_G=loss_g.detach(), loss_G_gan=loss_gan.detach(), loss_G_l1=loss_l1.detach())
        return out

    @torch.no_grad()
    def generate(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        self.G.train(not self.options.eval_mode)
        with self.ctx.autocast():
            out = self.G(self.task.x(batch))
        self.G.train(True)
        return out.float()
