"""StarGAN (Choi, Choi, Kim, Ha, Kim & Choo, CVPR 2018): one generator translates an image to any of several
domains, given the target domain as input.

Objective (the paper's eq. 1-7; papers.md section E: WGAN-GP, lambda_cls 1, lambda_rec 10, lambda_gp 10):

- D has two heads on one trunk: D_src (real / generated, per patch) and D_cls (the domain).
- D's loss: the row's adversarial loss on real x against G(x, c) plus ``lambda_cls`` x the cross-entropy of
  D_cls on the real images against their own domain c' (the source), plus the row's "d" regularisers (the
  gradient penalty at ``lambda_gp``: ``regularizers = {gp = 10}``).
- G's loss (D frozen): the row's generator loss on G(x, c), plus ``lambda_cls`` x the cross-entropy of D_cls on
  G(x, c) against the target c, plus ``lambda_rec`` x the cycle ``|x - G(G(x, c), c')|_1``.
- Targets c are the batch's own domains in a random order (the reference's ``randperm`` of the labels), drawn
  from the trainer's seeded global generator (restored on resume); D and G of one step share them.
- ``d_steps`` (n_critic, 5) D updates per G update, each on a fresh batch (the reference's iterations).

Defaults are the reference code's (``main.py``): Adam 1e-4 for both with betas (0.5, 0.999), n_critic 5,
widths 64, 6 residual blocks, PyTorch's default initialisation (no N(0, 0.02) re-initialisation). Not reproduced:
the linear learning-rate decay over the last 100k of 200k iterations (no bench adapter schedules its rate).

Outputs: ``y`` = G(x, c) for the task's target ``c`` (digit2digit: a digit other than the image's own, fixed per
test index) and ``x`` = G(G(x, c), c_src), the cycle back to the source domain, scored against ``x``
(``reconstruction@x``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from bench.adversarial import descend, frozen, two_player
from bench.contracts import ComponentArgs, DOutput, MethodAdapter, Slot, TrainContext, registry_ref
from bench.errors import ConfigError
from bench.nets import check_options
from bench.tasks import TaskSpec

TARGET, SOURCE = "c", "c_src"      # the task's class fields: the domain asked for, and the image's own


class StarGAN(MethodAdapter):
    @dataclass
    class Options:
        loss: str = registry_ref("losses", "wgan", "a registered adversarial loss (StarGAN: WGAN)")
        regularizers: dict[str, float] = registry_ref("regularizers", {"gp": 10.0},
                                                      "name -> weight (StarGAN: the gradient penalty, 10)")
        lambda_cls: float = 1.0
        lambda_rec: float = 10.0
        lr_g: float = 1e-4
        lr_d: float = 1e-4
        beta1: float = 0.5
        beta2: float = 0.999
        d_steps: int = 5                 # n_critic: D updates per G update
        ngf: int = 64
        ndf: int = 64

        def __post_init__(self) -> None:
            check_options(self, positive=("lr_g", "lr_d"), at_least_one=("d_steps", "ngf", "ndf"),
                          non_negative=("lambda_cls", "lambda_rec"), unit=("beta1", "beta2"))

    slots = {
        "G": Slot("generators", "stargan", args=("in_channels", "out_channels", "num_classes"),
                  provided=("image_size", "ngf"), call=("x", "c"), doc="(image, target domain) -> image"),
        "D": Slot("discriminators", "stargan", args=("y_channels", "num_classes"), provided=("image_size", "ndf"),
                  call=("y",), doc="image -> real / generated per patch, and its domain (head 'cls')"),
    }
    outputs = {"y": "y", "x": "x"}

    @classmethod
    def check_task(cls, task: TaskSpec) -> None:
        fields = task.inputs
        if "x" not in fields or any(fields.get(k) is None or fields[k].kind != "class" for k in (TARGET, SOURCE)):
            raise ConfigError(f"stargan needs a task with an image x, a target domain '{TARGET}' and the image's "
                              f"own domain '{SOURCE}' (class fields), e.g. digit2digit; task '{task.name}' has "
                              f"inputs {', '.join(fields) or 'none'}")

    @classmethod
    def component_args(cls, slot: str, o: "StarGAN.Options", task: TaskSpec, image_size: int) -> ComponentArgs:
        cls.check_task(task)
        k = task.channels(TARGET)
        if slot == "G":
            return ComponentArgs((task.x_channels, task.y_channels, k), dict(image_size=image_size, ngf=o.ngf))
        return ComponentArgs((task.y_channels, k), dict(image_size=image_size, ndf=o.ndf))

    def __init__(self, options: "StarGAN.Options", task: TaskSpec, ctx: TrainContext,
                 components: Mapping[str, nn.Module]):
        super().__init__(options, task, ctx, components)
        o = options
        self.check_task(task)
        if task.x_channels != task.y_channels:
            raise ConfigError(f"stargan translates within one image space; task '{task.name}' maps "
                              f"{task.x_channels} to {task.y_channels} channels")
        two_player(self, components, o, ctx)

    # -- pieces (public for tests) -------------------------------------------------------------------
    def critic(self, v: torch.Tensor) -> DOutput:
        with self.ctx.autocast():
            out = DOutput.wrap(self.D(v))
        if "cls" not in out.heads:
            raise ConfigError("stargan's discriminator must return a 'cls' head (the domain logits), as the "
                              "'stargan' discriminator does")
        return out

    def translate(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        with self.ctx.autocast():
            return self.G(x, c)

    @staticmethod
    def targets(source: torch.Tensor) -> torch.Tensor:
        """The batch's own domains in a random order (the reference), from the global generator."""
        return source[torch.randperm(len(source)).to(source.device)]

    def d_objective(self, x: torch.Tensor, fake: torch.Tensor, source: torch.Tensor, step: int):
        """D's loss on real ``x`` (domains ``source``) against detached ``fake``, and its logs."""
        real_seen, fake_seen = self.adv.seen(step, x, fake.detach())
        d_real, d_fake = self.critic(real_seen), self.critic(fake_seen)
        t = self.adv.terms(self.critic, real_seen, fake_seen, d_real, d_fake)
        adv = self.loss.d_loss(t)
        cls = F.cross_entropy(d_real.heads["cls"].float(), source)
        loss, logs = self.adv.d_loss(t, base=adv + self.options.lambda_cls * cls)
        return loss, {**logs, "loss_D_adv": adv.detach(), "loss_D_cls": cls.detach()}

    def g_objective(self, x: torch.Tensor, fake: torch.Tensor, target: torch.Tensor, source: torch.Tensor,
                    step: int):
        """G's loss (call it with D frozen) for ``fake = G(x, target)``, and its logs."""
        o = self.options
        rec = (self.translate(fake, source).float() - x.float()).abs().mean()
        real_seen, fake_seen = self.adv.seen(step, x, fake)
        d_fake = self.critic(fake_seen)
        t = self.adv.terms(self.critic, real_seen, fake_seen, None, d_fake)
        cls = F.cross_entropy(d_fake.heads["cls"].float(), target)
        return self.adv.g_loss(t, o.lambda_cls * cls + o.lambda_rec * rec, parts={"cls": cls, "rec": rec})

    # -- training --------------------------------------------------------------------------------
    def train_step(self, batch: dict[str, torch.Tensor], step: int, update_g: bool) -> dict[str, torch.Tensor]:
        x, source = self.task.x(batch), self.task.get(SOURCE, batch)
        target = self.targets(source)
        with torch.set_grad_enabled(update_g):
            fake = self.translate(x, target)
        loss_d, out = self.d_objective(x, fake, source, step)
        descend(loss_d, self.optimizers["D"])
        if update_g:
            with frozen(self.D):
                loss_g, logs = self.g_objective(x, fake, target, source, step)
                descend(loss_g, self.optimizers["G"])
            out.update(logs)
        return out

    # -- sampling --------------------------------------------------------------------------------
    @torch.no_grad()
    def generate(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        x = self.task.x(batch)
        y = self.translate(x, self.task.get(TARGET, batch))
        back = self.translate(y, self.task.get(SOURCE, batch))
        return {"y": y.float(), "x": back.float()}
