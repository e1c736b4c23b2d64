"""CycleGAN (Zhu, Park, Isola & Efros, ICCV 2017): unpaired translation with two generators and cycle consistency.

G maps x to y and F maps y to x; D_Y judges images of y's domain (real y against G(x)), D_X images of x's domain
(real x against F(y)). G and F are trained together on both adversarial losses plus the cycle losses
``lambda_cycle * (|F(G(x)) - x|_1 + |G(F(y)) - y|_1)`` plus, when x and y have the same number of channels, the
identity losses ``lambda_identity * lambda_cycle * (|G(y) - y|_1 + |F(x) - x|_1)``. Each D is trained on a
history of 50 generated images (:class:`methods.history.ImageHistory`; Shrivastava et al. 2017) instead of the
newest ones only. As in the reference code, one step first updates G and F (both Ds frozen), then both Ds on the
fakes of that step's forward pass (before G's update), queried through the pools.

Defaults are the paper's and its reference code's: LSGAN loss, lambda_A = lambda_B = 10 (one ``lambda_cycle``),
identity weight 0.5 x lambda, Adam 2e-4 with betas (0.5, 0.999), pool of 50, D loss halved, ResNet generator
(9 blocks at 256 px, 6 below) and the 70x70 PatchGAN on one image, both with instance norm, weights N(0, 0.02).
Not reproduced: the learning rate's linear decay to zero over the second half of training (no adapter of the
bench schedules its learning rate; a suite's length is its profile's ``steps``).

Every adversarial term goes through :class:`bench.adversarial.AdversarialStep` (one per discriminator), so a
row's ``loss`` and ``regularizers`` apply to both directions alike.

Training data
    On an unpaired task (``photo2labels-unpaired``) the trainer serves y from a second, independent stream.
    On a paired task the adapter unpairs the batches itself (option ``unpair``), so that CycleGAN and pix2pix
    can share one suite, one task and one test split:

    - ``"previous"`` (default): y comes from the previous training batch, an independent draw of the trainer's
      seeded sampler (x and y of one step are different scenes, and D never sees a scene's real y together
      with its translated x). The held batch is part of ``extra_state``, so resume stays exact. At the very
      first step there is no previous batch: y is then the batch's own ys in a random order with no sample
      kept in place (as ``"shuffle"``); with a batch of one that single first step is paired.
    - ``"shuffle"``: each x with the y of another sample of the same batch (a random cycle drawn from
      (run seed, step)); needs batch_size >= 2. CycleGAN's default losses are means of per-sample terms and
      instance norm is per sample, so this is nearly the paired stream re-ordered: the batch's x and y sets are
      still the same scenes.
    - ``"off"``: train on the pairs as served (an ablation: CycleGAN's losses never compare x_i with y_i, but D
      then sees the scenes of its fakes as reals in the same step).

Outputs
    ``sample(FromBatch(batch))`` gives ``{"y": G(x), "x": F(y)}``: both directions, each scored on the paired
    test split against its own field (``segmentation`` scores y; ``segmenter-score@x`` or ``reconstruction@x``
    the backward direction, in suites whose every row has an ``x`` output).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import torch
from torch import nn

from bench.adversarial import AdversarialStep, adam, descend, frozen
from bench.contracts import ComponentArgs, DOutput, MethodAdapter, Slot, TrainContext, derive_seed, registry_ref
from bench.errors import ConfigError
from bench.nets import check_options, init_weights
from bench.registry import LOSSES
from bench.tasks import TaskSpec
from methods.history import ImageHistory

UNPAIR_MODES = ("previous", "shuffle", "off")


def derangement(n: int, gen: torch.Generator) -> torch.Tensor:
    """Indices ``idx`` with ``idx[i] != i`` for every i (n >= 2): one random cycle through all n samples."""
    perm = torch.randperm(n, generator=gen)
    idx = torch.empty_like(perm)
    idx[perm] = perm.roll(-1)
    return idx


class CycleGAN(MethodAdapter):
    @dataclass
    class Options:
        loss: str = registry_ref("losses", "lsgan", "a registered adversarial loss (CycleGAN: least squares)")
        regularizers: dict[str, float] = registry_ref("regularizers", {}, "name -> weight, on both directions")
        lambda_cycle: float = 10.0       # lambda_A = lambda_B of the reference code
        lambda_identity: float = 0.5     # times lambda_cycle; used only when x and y have equal channel counts
        pool_size: int = 50              # the image history of each D (0: D sees the newest fakes only)
        lr_g: float = 2e-4               # G and F (one optimiser, as in the reference)
        lr_d: float = 2e-4               # D_Y and D_X (one optimiser)
        beta1: float = 0.5
        beta2: float = 0.999
        d_loss_weight: float = 0.5       # CycleGAN halves each D's loss
        ngf: int = 64
        ndf: int = 64
        init_gain: float = 0.02
        eval_mode: bool = True           # G and F in eval() for scoring (no effect with instance norm, no dropout)
        unpair: str = "previous"         # paired tasks only: how y is drawn apart from x (module docstring)

        def __post_init__(self) -> None:
            check_options(self, positive=("lr_g", "lr_d", "d_loss_weight", "init_gain"),
                          at_least_one=("ngf", "ndf"), non_negative=("lambda_cycle", "lambda_identity", "pool_size"),
                          unit=("beta1", "beta2"))
            if self.unpair not in UNPAIR_MODES:
                raise ConfigError(f"option 'unpair' must be one of {', '.join(UNPAIR_MODES)}, got '{self.unpair}'")

    ema_modules = ("G", "F")               # both generators (bench/ema.py)
    slots = {
        "G": Slot("generators", "resnet", args=("in_channels", "out_channels"), provided=("image_size", "ngf"),
                  call=("x",), doc="x -> y"),
        "F": Slot("generators", "resnet", args=("in_channels", "out_channels"), provided=("image_size", "ngf"),
                  call=("y",), doc="y -> x"),
        "D_Y": Slot("discriminators", "patchgan-uncond", args=("y_channels",), provided=("image_size", "ndf"),
                    call=("y",), doc="an image of y's domain -> real / generated"),
        "D_X": Slot("discriminators", "patchgan-uncond", args=("y_channels",), provided=("image_size", "ndf"),
                    call=("x",), doc="an image of x's domain -> real / generated"),
    }
    outputs = {"y": "y", "x": "x"}

    @classmethod
    def component_args(cls, slot: str, o: "CycleGAN.Options", task: TaskSpec, image_size: int) -> ComponentArgs:
        a, b = task.x_channels, task.y_channels
        if slot in ("G", "F"):
            return ComponentArgs((a, b) if slot == "G" else (b, a), dict(image_size=image_size, ngf=o.ngf))
        return ComponentArgs((b,) if slot == "D_Y" else (a,), dict(image_size=image_size, ndf=o.ndf))

    @classmethod
    def init_component(cls, slot: str, module: nn.Module, o: "CycleGAN.Options") -> None:
        init_weights(module, o.init_gain)

    def __init__(self, options: "CycleGAN.Options", task: TaskSpec, ctx: TrainContext,
                 components: Mapping[str, nn.Module]):
        super().__init__(options, task, ctx, components)
        o = options
        if "x" not in task.inputs or task.pairing == "none":
            raise ConfigError(f"cyclegan translates between an input x and a target y; task '{task.name}' has "
                              f"{'no input x' if 'x' not in task.inputs else 'no paired inputs (pairing none)'}")
        self.G, self.F = components["G"], components["F"]
        self.D_Y, self.D_X = components["D_Y"], components["D_X"]
        self.modules = {"G": self.G, "F": self.F, "D_Y": self.D_Y, "D_X": self.D_X}
        loss = LOSSES.get(o.loss)()
        # one step per discriminator; "G" / "D" name the pair a weight regulariser reads in each direction
        self.adv_y = AdversarialStep(loss, o.regularizers, ctx, {"G": self.G, "D": self.D_Y},
                                     d_loss_weight=o.d_loss_weight)
        self.adv_x = AdversarialStep(loss, self.adv_y.regs, ctx, {"G": self.F, "D": self.D_X},
                                     d_loss_weight=o.d_loss_weight)
        self.loss = loss
        betas = (o.beta1, o.beta2)
        self.optimizers = {
            "G": adam([*self.G.parameters(), *self.F.parameters()], lr=o.lr_g, betas=betas),
            "D": adam([*self.D_Y.parameters(), *self.D_X.parameters()], lr=o.lr_d, betas=betas),
        }
        # the histories draw from their own generators, seeded from the run seed
        self.pool_y = ImageHistory(o.pool_size, derive_seed(ctx.seed, "cyclegan-pool", "y"))
        self.pool_x = ImageHistory(o.pool_size, derive_seed(ctx.seed, "cyclegan-pool", "x"))
        self.identity = o.lambda_identity > 0 and task.x_channels == task.y_channels
        self.unpair = o.unpair if task.pairing == "paired" else "off"   # an unpaired task's stream b is drawn apart
        self._held_y: torch.Tensor | None = None                         # "previous": the last batch's y

    # -- data ------------------------------------------------------------------------------------
    def _shuffled(self, y: torch.Tensor, step: int) -> torch.Tensor:
        if len(y) < 2:
            raise ConfigError("cyclegan with unpair = \"shuffle\" on a paired task needs batch_size >= 2 (each x "
                              "takes another sample's y); raise batch_size, or use unpair = \"previous\"")
        idx = derangement(len(y), self.ctx.generator(step, "cyclegan-unpair"))
        return y[idx.to(y.device)]

    def training_y(self, batch: dict[str, torch.Tensor], step: int) -> torch.Tensor:
        """The y images this step trains on (drawn apart from x on a paired task: option ``unpair``)."""
        y = self.task.y(batch)
        if self.unpair == "off":
            return y
        if self.unpair == "shuffle":
            return self._shuffled(y, step)
        held, self._held_y = self._held_y, y.detach()
        if held is not None and held.shape == y.shape:
            return held.to(device=y.device, dtype=y.dtype)
        return self._shuffled(y, step) if len(y) > 1 else y

    # -- training --------------------------------------------------------------------------------
    def _critic(self, D: nn.Module):
        def critic(v: torch.Tensor) -> DOutput:
            with self.ctx.autocast():
                return DOutput.wrap(D(v))
        return critic

    @staticmethod
    def _tagged(logs: Mapping[str, torch.Tensor], side: str, skip: str) -> dict[str, torch.Tensor]:
        """A direction's logs with its domain as suffix (``loss_G_gan`` -> ``loss_G_gan_y``), less ``skip``."""
        return {f"{k}_{side}": v for k, v in logs.items() if k != skip}

    def train_step(self, batch: dict[str, torch.Tensor], step: int, update_g: bool) -> dict[str, torch.Tensor]:
        ctx = self.ctx
        x, y = self.task.x(batch), self.training_y(batch, step)
        with torch.set_grad_enabled(update_g), ctx.autocast():
            fake_y, fake_x = self.G(x), self.F(y)
        out: dict[str, torch.Tensor] = {}
        if update_g:
            out.update(self._g_update(x, y, fake_y, fake_x, step))
        out.update(self._d_update(x, y, fake_y.detach(), fake_x.detach(), step))
        return out

    def _g_update(self, x: torch.Tensor, y: torch.Tensor, fake_y: torch.Tensor, fake_x: torch.Tensor,
                  step: int) -> dict[str, torch.Tensor]:
        """G and F together, one step of :meth:`generator_losses` (both Ds frozen)."""
        with frozen(self.D_Y, self.D_X):
            total, logs, _ = self.generator_losses(x, y, fake_y, fake_x, step)
            descend(total, self.optimizers["G"])
        return logs

    def generator_losses(self, x: torch.Tensor, y: torch.Tensor, fake_y: torch.Tensor, fake_x: torch.Tensor,
                         step: int) -> tuple[torch.Tensor, dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """G and F's loss: both adversarial terms (each through its direction's AdversarialStep, regularisers
        included), both cycles and both identities; returns (total, logs, the unweighted terms by name)."""
        o, ctx = self.options, self.ctx
        with ctx.autocast():
            rec_x, rec_y = self.F(fake_y), self.G(fake_x)
        terms = {"cycle_x": (rec_x.float() - x.float()).abs().mean(),     # x -> G -> F -> x (the reference's cycle_A)
                 "cycle_y": (rec_y.float() - y.float()).abs().mean()}     # y -> F -> G -> y (cycle_B)
        own_g, own_f = o.lambda_cycle * terms["cycle_x"], o.lambda_cycle * terms["cycle_y"]
        if self.identity:
            with ctx.autocast():
                same_y, same_x = self.G(y), self.F(x)
            terms["idt_y"] = (same_y.float() - y.float()).abs().mean()   # G leaves a y alone (the reference's idt_A)
            terms["idt_x"] = (same_x.float() - x.float()).abs().mean()   # F leaves an x alone (idt_B)
            own_g = own_g + o.lambda_identity * o.lambda_cycle * terms["idt_y"]
            own_f = own_f + o.lambda_identity * o.lambda_cycle * terms["idt_x"]
        crit_y, crit_x = self._critic(self.D_Y), self._critic(self.D_X)
        y_seen, fake_y_seen = self.adv_y.seen(step, y, fake_y)
        t_y = self.adv_y.terms(crit_y, y_seen, fake_y_seen, None, crit_y(fake_y_seen))
        terms["gan_y"] = self.loss.g_loss(t_y)                             # G against D_Y
        loss_g, logs_g = self.adv_y.g_loss(t_y, own_g, base=terms["gan_y"], parts={"gan": terms["gan_y"]})
        x_seen, fake_x_seen = self.adv_x.seen(step, x, fake_x)
        t_x = self.adv_x.terms(crit_x, x_seen, fake_x_seen, None, crit_x(fake_x_seen))
        terms["gan_x"] = self.loss.g_loss(t_x)                             # F against D_X
        loss_f, logs_f = self.adv_x.g_loss(t_x, own_f, base=terms["gan_x"], parts={"gan": terms["gan_x"]})
        total = loss_g + loss_f
        logs = {"loss_G": total.detach(), **self._tagged(logs_g, "y", "loss_G"), **self._tagged(logs_f, "x", "loss_G"),
                **{f"loss_G_{k}": v.detach() for k, v in terms.items() if not k.startswith("gan")}}
        return total, logs, terms

    def _d_update(self, x: torch.Tensor, y: torch.Tensor, fake_y: torch.Tensor, fake_x: torch.Tensor,
                  step: int) -> dict[str, torch.Tensor]:
        """Both Ds, one step of :meth:`discriminator_losses`."""
        total, logs, _ = self.discriminator_losses(x, y, fake_y, fake_x, step)
        descend(total, self.optimizers["D"])
        return logs

    def discriminator_losses(self, x: torch.Tensor, y: torch.Tensor, fake_y: torch.Tensor, fake_x: torch.Tensor,
                             step: int) -> tuple[torch.Tensor, dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """Each D on real images of its domain against (detached) fakes drawn through its history, through its
        direction's AdversarialStep; returns (total, logs, {"d_y": D_Y's loss, "d_x": D_X's})."""
        crit_y, crit_x = self._critic(self.D_Y), self._critic(self.D_X)
        y_seen, pool_y = self.adv_y.seen(step, y, self.pool_y.query(fake_y.detach()))
        loss_dy, logs_y = self.adv_y.d_loss(self.adv_y.terms(crit_y, y_seen, pool_y, crit_y(y_seen), crit_y(pool_y)))
        x_seen, pool_x = self.adv_x.seen(step, x, self.pool_x.query(fake_x.detach()))
        loss_dx, logs_x = self.adv_x.d_loss(self.adv_x.terms(crit_x, x_seen, pool_x, crit_x(x_seen), crit_x(pool_x)))
        total = loss_dy + loss_dx
        logs = {"loss_D": total.detach(), **self._tagged(logs_y, "y", ""), **self._tagged(logs_x, "x", "")}
        return total, logs, {"d_y": loss_dy, "d_x": loss_dx}

    # -- state -----------------------------------------------------------------------------------
    def extra_state(self) -> dict[str, Any]:
        state: dict[str, Any] = {"pool_y": self.pool_y.state_dict(), "pool_x": self.pool_x.state_dict()}
        if self._held_y is not None:
            state["held_y"] = self._held_y.cpu()
        return state

    def load_extra_state(self, state: Mapping[str, Any]) -> None:
        if "pool_y" in state:
            self.pool_y.load_state_dict(state["pool_y"])
        if "pool_x" in state:
            self.pool_x.load_state_dict(state["pool_x"])
        held = state.get("held_y")
        self._held_y = None if held is None else held.to(self.ctx.device)

    # -- sampling --------------------------------------------------------------------------------
    @torch.no_grad()
    def generate(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        gens = (self.G, self.F)
        for g in gens:
            g.train(not self.options.eval_mode)
        with self.ctx.autocast():
            out = {"y": self.G(self.task.x(batch)), "x": self.F(self.task.y(batch))}
        for g in gens:
            g.train(True)
        return {k: v.float() for k, v in out.items()}

    def eval_protocol(self) -> dict[str, Any]:
        return {"generator_eval_mode": bool(self.options.eval_mode)}
