"""pix2pix decoupled (decoupled-learning paper, Table 4; papers.md section C): two U-Nets, one trained
by the L1 loss only, one by the adversarial loss only, output their sum.

``G`` maps the condition x to a reconstruction of y trained by ``lambda_l1 * |G(x) - y|_1`` alone;
``G_gan`` maps x to a residual trained by the adversarial loss alone; D sees (x, G(x) + G_gan(x)) with
``G(x)`` detached, so no adversarial gradient reaches G and no L1 gradient reaches G_gan. Everything
else (D, loss, optimiser, defaults) is pix2pix's, which makes the coupled rows of the table plain
pix2pix at L1:adversarial weights 1:1, 100:1 and 1000:1. Outputs ``y_rec`` | ``y_gan`` | ``y``.
"""

from __future__ import annotations

import torch
from torch import nn

from bench.adversarial import adam
from bench.contracts import ComponentArgs, Slot, TrainContext
from bench.tasks import TaskSpec
from methods.pix2pix import Pix2Pix


class Pix2PixDecoupled(Pix2Pix):
    slots = {**Pix2Pix.slots,
             "G_gan": Slot("generators", "unet", args=("in_channels", "out_channels"),
                           provided=("image_size", "ngf", "spectral_norm", "dropout"), call=("x",),
                           doc="x -> residual added to G's reconstruction (adversarial loss only)")}
    outputs = {"y_rec": "y", "y_gan": "y", "y": "y"}       # the grid's order: reconstruction | residual | output

    @classmethod
    def component_args(cls, slot: str, o: Pix2Pix.Options, task: TaskSpec, image_size: int) -> ComponentArgs:
        return super().component_args("G" if slot == "G_gan" else slot, o, task, image_size)

    def __init__(self, options: Pix2Pix.Options, task: TaskSpec, ctx: TrainContext,
                 components: dict[str, nn.Module]):
        super().__init__(options, task, ctx, components)
        o = options
        self.G_gan = components["G_gan"]
        self.modules["G_gan"] = self.G_gan
        self.optimizers["G_gan"] = adam(self.G_gan.parameters(), lr=o.lr_g, betas=(o.beta1, o.beta2))

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        with self.ctx.autocast():
            y_rec, y_gan = self.G(x), self.G_gan(x)
        return {"y_rec": y_rec, "y_gan": y_gan, "y": y_rec.detach() + y_gan}

    def train_step(self, batch: dict[str, torch.Tensor], step: int, update_g: bool) -> dict[str, torch.Tensor]:
        o = self.options
        x, y = self.task.x(batch), self.task.y(batch)
        with torch.set_grad_enabled(update_g):
            out = self.forward(x)
        fake = out["y"]
        critic = self._critic(x)
        logs = self._d_update(critic, y, fake.detach(), step)
        if update_g:
            # disjoint graphs: L1 -> G, adversarial -> G_gan
            loss_l1 = (out["y_rec"].float() - y.float()).abs().mean()
            logs.update(self._g_update(critic, y, fake, step, o.lambda_l1 * loss_l1, {"l1": loss_l1},
                                       self.optimizers["G"], self.optimizers["G_gan"]))
        return logs

    @torch.no_grad()
    def generate(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        for m in (self.G, self.G_gan):
            m.train(not self.options.eval_mode)
        try:
            out = self.forward(self.task.x(batch))
        finally:
            self.G.train(True)
            self.G_gan.train(True)
        return {k: v.float() for k, v in out.items()}
