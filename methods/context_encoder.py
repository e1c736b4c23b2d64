"""The context encoder (Pathak et al., CVPR 2016) and two inpainting baselines for its Table 2 (papers.md E).

All three fill the task's hole -- the ``mask`` field, the central square of half the side (``inpaint-center``) --
and return ``{"y": the completed image}``: the input outside the hole, exactly, and the method's content inside.
None of them reads the hole's pixels of the input: the hole is overwritten (:func:`blank`) before anything sees it.

- ``context-encoder``: G (``methods/generators/context_encoder.py``: encoder, channel-wise fully connected layer,
  decoder of up-convolutions) predicts the hole's content from the image with the hole filled with a constant
  colour; D (default the bench's ``dcgan``: the authors' D) judges the hole's content alone, the real centre
  against the predicted one. G's loss is ``lambda_rec * L2 + lambda_adv * adversarial`` with the L2 over the hole,
  its outer band (``overlap``) weighted ``overlap_weight`` times (the authors' ``wtl2 = 0.999``,
  ``overlapPred = 4`` of 64 px weighted 10x); the adversarial loss and its regularisers are the row's (default the
  authors' BCE, ``vanilla``) through :class:`bench.adversarial.AdversarialStep`. ``lambda_adv = 0`` is the L2-only
  context encoder: D is then neither trained nor used.
- ``inpaint-nn-hog``: nearest-neighbour inpainting (the basis of Hays & Efros's scene completion; Table 2's
  "NN-inpainting (HOG features)"): the training images are kept (their hole's content and a HOG-style descriptor of
  their context); a test image gets the hole's content of the training image whose context descriptor is nearest in
  L2. It has no weights: "training" is one pass that fills the bank, so it needs ``steps * batch_size`` at least the
  training split's size.
- ``inpaint-border-mean``: fills the hole with the mean colour of a ring of context pixels around it (per image and
  channel); no training and nothing the paper reports: a floor any learnt method must beat.

Assumptions where the paper is silent (the authors' released code, ``train.lua`` / ``test.lua``, decides where it
speaks):

- the hole is fed to G filled with the authors' constant colour (117, 104, 123) / 255 (their data's mean), and the
  whole hole is hidden: the authors leave the hole's outer 4 px visible to G (``overlapPred``) and paste back only
  the inner part, but the bench scores the whole hole, so G never sees any of it; the 10x weight of that band in
  the L2 is kept (it weights the seam with the context);
- the hole is the task's centred square; the network's strides need ``image_size`` and the hole's side to be powers
  of two (32 px with a 16 px hole, 64 with 32, 128 with 64: the paper's);
- optimiser: Adam, betas (0.5, 0.999), D at 2e-4 and G at 10 x that (2e-3) -- the authors' code raises G's rate ten
  times whenever 0 < wtl2 < 1; the L2-only row keeps G's rate so that the rows differ in ``lambda_adv`` alone;
- D's loss is the row's loss unhalved (the authors' ``errD_real + errD_fake``), one D step per G step; both nets in
  eval mode for sampling (``test.lua`` calls ``net:evaluate()``);
- NN-inpainting's descriptor: the grey image's gradients binned in 9 unsigned orientations, summed over cells of
  1/16 of the side, L2-Hys normalised per cell; cells touching the hole (dilated by one pixel) are left out of the
  descriptor; the bank keeps the last view of each training image (after the profile's crop and flip jitter).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from bench.adversarial import descend, frozen, two_player
from bench.codecs import mask_spec
from bench.contracts import ComponentArgs, DOutput, MethodAdapter, Slot, TrainContext, registry_ref
from bench.errors import ConfigError, DataError
from bench.nets import check_options, init_weights
from bench.tasks import TaskSpec
from methods.generators.context_encoder import ChannelWiseFC

#: the authors' fill colour of the hole in G's input, in [0, 1] (``train.lua``: 117, 104, 123 of 255)
FILL_RGB = (117 / 255, 104 / 255, 123 / 255)
MASK_FIELD = "mask"


# --------------------------------------------------------------------------------------- the hole
def hole_fraction(task: TaskSpec) -> float:
    """The side of the task's centred hole as a share of the image side (``mask`` derived ``"center:F"``)."""
    f = task.fields.get(MASK_FIELD)
    if f is None or f.kind != "mask" or not f.derive:
        raise ConfigError(f"the inpainting methods need a task with a derived '{MASK_FIELD}' field (e.g. "
                          f"inpaint-center); task '{task.name}' has none")
    shape, frac = mask_spec(f.derive)
    if shape != "center":
        raise ConfigError(f"the inpainting methods fill a centred hole; task '{task.name}' derives its mask "
                          f"'{f.derive}' (choose a task whose mask is 'center:F')")
    return frac


def hole_box(height: int, width: int, frac: float) -> tuple[int, int, int, int]:
    """(top, left, h, w) of the centred hole, as ``bench.codecs.derived_mask`` places it."""
    h, w = max(1, round(height * frac)), max(1, round(width * frac))
    return (height - h) // 2, (width - w) // 2, h, w


def crop(v: torch.Tensor, box: tuple[int, int, int, int]) -> torch.Tensor:
    top, left, h, w = box
    return v[..., top:top + h, left:left + w]


def paste(x: torch.Tensor, region: torch.Tensor, mask: torch.Tensor, box: tuple[int, int, int, int]) -> torch.Tensor:
    """``x`` with ``region`` in the hole: exactly ``x`` where ``mask`` is 0, ``region`` where it is 1."""
    top, left, h, w = box
    canvas = F.pad(region.to(x.dtype), (left, x.shape[-1] - left - w, top, x.shape[-2] - top - h))
    return torch.where(mask > 0.5, canvas, x)


def fill_colour(channels: int, like: torch.Tensor) -> torch.Tensor:
    """The authors' fill colour in [-1, 1] as a (1, C, 1, 1) tensor (their grey mean for one channel)."""
    rgb = [2 * v - 1 for v in FILL_RGB]
    vals = rgb if channels == 3 else [sum(rgb) / 3] * channels
    return torch.tensor(vals, dtype=like.dtype, device=like.device).view(1, channels, 1, 1)


def blank(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``x`` with the hole overwritten by the fill colour: what every method here reads of the input."""
    return torch.where(mask > 0.5, fill_colour(x.shape[1], x), x)


def band_weights(side: int, overlap: float, weight: float, device: torch.device | None = None) -> torch.Tensor:
    """(side, side) L2 weights over the hole: ``weight`` on its outer band of ``round(overlap * side)`` px, 1 inside
    (the authors' ``wtl2Matrix`` over wtl2: 10 on the 4 px band of 64)."""
    b = round(overlap * side)
    w = torch.full((side, side), float(weight), device=device)
    if b > 0:
        w[b:side - b, b:side - b] = 1.0
    else:
        w.fill_(1.0)
    return w


# --------------------------------------------------------------------------------------- context encoder
class ContextEncoder(MethodAdapter):
    """The context encoder: G fills the hole from its context, D judges the hole's content (module docstring)."""

    @dataclass
    class Options:
        loss: str = registry_ref("losses", "vanilla", "a registered adversarial loss (the authors' BCE: vanilla)")
        regularizers: dict[str, float] = registry_ref("regularizers", {}, "name -> weight (on the region D)")
        lambda_rec: float = 0.999          # the authors' wtl2
        lambda_adv: float = 0.001          # 1 - wtl2; 0 = the L2-only context encoder (no D)
        overlap: float = 0.0625            # the hole's outer band weighted in the L2, share of its side (4 of 64 px)
        overlap_weight: float = 10.0       # the authors' overlapL2Weight
        lr_g: float = 2e-3                 # the authors' lr x 10 for G (0 < wtl2 < 1)
        lr_d: float = 2e-4
        beta1: float = 0.5
        beta2: float = 0.999
        d_steps: int = 1
        nef: int = 64
        ngf: int = 64
        ndf: int = 64
        bottleneck: str = "channel-wise"   # "channel-wise" (the paper's Section 3.1) or "fc" (the released code)
        units: int = 4000                  # "fc" bottleneck's units (the released code's nBottleneck)
        init_gain: float = 0.02
        eval_mode: bool = True

        def __post_init__(self) -> None:
            check_options(self, positive=("lr_g", "lr_d", "init_gain", "overlap_weight"),
                          at_least_one=("d_steps", "nef", "ngf", "ndf", "units"),
                          non_negative=("lambda_rec", "lambda_adv"), unit=("beta1", "beta2", "overlap"))
            if self.overlap >= 0.5:
                raise ConfigError(f"option 'overlap' is a share of the hole's side below 0.5, got {self.overlap}")
            if self.bottleneck not in ("channel-wise", "fc"):
                raise ConfigError(f"option 'bottleneck' must be 'channel-wise' or 'fc', not '{self.bottleneck}'")
            if self.lambda_rec == 0 and self.lambda_adv == 0:
                raise ConfigError("options 'lambda_rec' and 'lambda_adv' are both 0: G would learn nothing")
            if self.lambda_adv == 0 and any(self.regularizers.values()):
                raise ConfigError("option 'regularizers' needs lambda_adv > 0 (with lambda_adv = 0 there is no D "
                                  "to regularise)")

    slots = {
        "G": Slot("generators", "context-encoder", args=("in_channels", "out_channels"),
                  provided=("image_size", "region_size", "nef", "ngf", "bottleneck", "units"), call=("x",),
                  doc="the image with its hole filled -> the hole's content"),
        "D": Slot("discriminators", "dcgan", args=("y_channels",), provided=("image_size", "ndf"), call=("y",),
                  doc="the hole's content (real or predicted) -> real / generated"),
    }

    @classmethod
    def component_args(cls, slot: str, o: "ContextEncoder.Options", task: TaskSpec, image_size: int) -> ComponentArgs:
        region = hole_box(image_size, image_size, hole_fraction(task))[2]
        if slot == "G":
            return ComponentArgs((task.x_channels, task.y_channels),
                                 dict(image_size=image_size, region_size=region, nef=o.nef, ngf=o.ngf,
                                      bottleneck=o.bottleneck, units=o.units))
        return ComponentArgs((task.y_channels,), dict(image_size=region, ndf=o.ndf))

    @classmethod
    def init_component(cls, slot: str, module: nn.Module, o: "ContextEncoder.Options") -> None:
        """N(0, init_gain) for every linear map, the channel-wise layer included (``init_weights`` skips it)."""
        init_weights(module, o.init_gain)
        for m in module.modules():
            if isinstance(m, ChannelWiseFC):
                m.reset_parameters(o.init_gain)

    def __init__(self, options: "ContextEncoder.Options", task: TaskSpec, ctx: TrainContext,
                 components: dict[str, nn.Module]):
        super().__init__(options, task, ctx, components)
        o = options
        self.frac = hole_fraction(task)
        two_player(self, components, o, ctx)
        self._weights: torch.Tensor | None = None

    # -- pieces (public for tests) -------------------------------------------------------------------
    def box(self, v: torch.Tensor) -> tuple[int, int, int, int]:
        return hole_box(v.shape[-2], v.shape[-1], self.frac)

    def predict(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """``region``: G's content for the hole; ``y``: the completed image; ``mask``: the task's hole."""
        x, m = self.task.x(batch), self.task.get(MASK_FIELD, batch)
        with self.ctx.autocast():
            region = self.G(blank(x, m))
        return {"region": region, "y": paste(x, region.float(), m, self.box(x)), "mask": m}

    def rec_loss(self, region: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        """The hole's L2 with the outer band weighted (mean over pixels and channels, as the authors' MSE)."""
        side = real.shape[-1]
        if self._weights is None or self._weights.shape[-1] != side or self._weights.device != real.device:
            o = self.options
            self._weights = band_weights(side, o.overlap, o.overlap_weight, real.device)
        return (self._weights * (region.float() - real.float()).square()).mean()

    def critic(self, v: torch.Tensor) -> DOutput:
        with self.ctx.autocast():
            return DOutput.wrap(self.D(v))

    def d_update(self, real: torch.Tensor, fake: torch.Tensor, step: int) -> dict[str, torch.Tensor]:
        """One D step on the real hole contents against the (detached) predicted ones; its logs."""
        real, fake = self.adv.seen(step, real, fake.detach())
        t = self.adv.terms(self.critic, real, fake, self.critic(real), self.critic(fake))
        loss_d, logs = self.adv.d_loss(t)
        descend(loss_d, self.optimizers["D"])
        return logs

    def g_objective(self, real: torch.Tensor, region: torch.Tensor, step: int) -> tuple[torch.Tensor, dict]:
        """G's loss (call it with D frozen): ``lambda_rec * L2 + lambda_adv * adversarial`` plus the row's "g"
        regularisers; its logs."""
        o = self.options
        rec = self.rec_loss(region, real)
        if o.lambda_adv == 0:
            loss = o.lambda_rec * rec
            return loss, {"loss_G": loss.detach(), "loss_G_rec": rec.detach()}
        real_seen, fake_seen = self.adv.seen(step, real, region)
        t = self.adv.terms(self.critic, real_seen, fake_seen, None, self.critic(fake_seen))
        gan = self.loss.g_loss(t)
        return self.adv.g_loss(t, o.lambda_rec * rec, base=o.lambda_adv * gan, parts={"gan": gan, "rec": rec})

    def train_step(self, batch: dict[str, torch.Tensor], step: int, update_g: bool) -> dict[str, torch.Tensor]:
        o = self.options
        y = self.task.y(batch)
        real = crop(y, self.box(y))
        with torch.set_grad_enabled(update_g):
            region = self.predict(batch)["region"]
        out: dict[str, torch.Tensor] = {}
        if o.lambda_adv > 0:
            out.update(self.d_update(real, region, step))
        if update_g:
            with frozen(self.D):
                loss_g, logs = self.g_objective(real, region, step)
                descend(loss_g, self.optimizers["G"])
            out.update(logs)
        return out

    @torch.no_grad()
    def generate(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        self.G.train(not self.options.eval_mode)
        try:
            return {"y": self.predict(batch)["y"].float()}
        finally:
            self.G.train(True)

    def eval_protocol(self) -> dict[str, Any]:
        return {"generator_eval_mode": bool(self.options.eval_mode), "hole_fill_rgb": list(FILL_RGB),
                "hole_visible_to_G": "none"}


# --------------------------------------------------------------------------------------- baselines
class BorderMeanFill(MethodAdapter):
    """Fills the hole with the mean colour of the context pixels within ``border`` of it (per image, per channel):
    the ring between the hole and the hole dilated by ``max(1, round(border * hole side))`` px. Nothing to train."""

    @dataclass
    class Options:
        border: float = 0.125              # the ring's width as a share of the hole's side (4 px of a 32 px hole)

        def __post_init__(self) -> None:
            check_options(self, positive=("border",))

    trainable = False

    def __init__(self, options: Any, task: TaskSpec, ctx: TrainContext, components: Any = None):
        super().__init__(options, task, ctx, components)
        if task.fields.get(MASK_FIELD) is None or task.fields[MASK_FIELD].kind != "mask":
            raise ConfigError(f"inpaint-border-mean needs a task with a '{MASK_FIELD}' field; task '{task.name}' "
                              "has none")

    def train_step(self, batch: dict[str, torch.Tensor], step: int, update_g: bool) -> dict[str, torch.Tensor]:
        return {}

    @torch.no_grad()
    def generate(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        x, m = self.task.x(batch).float(), self.task.get(MASK_FIELD, batch).float()
        side = math.sqrt(float(m.flatten(1).sum(1).max()))            # a square hole's side
        px = max(1, round(self.options.border * side))
        ring = F.max_pool2d(m, 2 * px + 1, stride=1, padding=px) - m
        count = ring.flatten(1).sum(1)
        if bool((count == 0).any()):
            raise DataError("inpaint-border-mean: an image has no hole or no context around it")
        mean = (x * ring).flatten(2).sum(-1) / count[:, None]          # (N, C), context pixels only
        return {"y": torch.where(m > 0.5, mean[:, :, None, None].expand_as(x), x)}

    def eval_protocol(self) -> dict[str, Any]:
        return {"fill": "mean colour of the context ring", "border": self.options.border}


def hog_cells(img: torch.Tensor, mask: torch.Tensor, cell: int, bins: int = 9) -> torch.Tensor:
    """(N, bins * cells) HOG-style descriptor of the context: unsigned gradient orientations of the grey image in
    ``bins`` bins, magnitudes summed over ``cell`` x ``cell`` cells, L2-Hys per cell (clip 0.2); cells that touch
    the hole (dilated by one pixel: the gradient there sees the fill) are zero."""
    g = img.float().mean(1, keepdim=True)
    gp = F.pad(g, (1, 1, 1, 1), mode="replicate")
    gx = (gp[..., 1:-1, 2:] - gp[..., 1:-1, :-2]) / 2
    gy = (gp[..., 2:, 1:-1] - gp[..., :-2, 1:-1]) / 2
    mag = torch.sqrt(gx.square() + gy.square())
    ang = torch.remainder(torch.atan2(gy, gx), math.pi)
    idx = (ang / math.pi * bins).long().clamp(0, bins - 1)
    hist = torch.zeros(g.shape[0], bins, *g.shape[-2:], device=g.device).scatter_(1, idx, mag)
    cells = F.avg_pool2d(hist, cell) * cell * cell
    eps = 1e-6
    v = cells / (cells.square().sum(1, keepdim=True).sqrt() + eps)
    v = v.clamp(max=0.2)
    v = v / (v.square().sum(1, keepdim=True).sqrt() + eps)
    touched = F.max_pool2d(F.max_pool2d(mask.float(), 3, stride=1, padding=1), cell) > 0
    return (v * (~touched)).flatten(1)


class HOGBank(nn.Module):
    """The NN baseline's memory, checkpointed with the run: per training index its context descriptor, its hole's
    content and whether it is filled."""

    def __init__(self, size: int, features: int, channels: int, side: int):
        super().__init__()
        self.register_buffer("features", torch.zeros(size, features))
        self.register_buffer("regions", torch.zeros(size, channels, side, side))
        self.register_buffer("filled", torch.zeros(size, dtype=torch.bool))


class NNInpaint(MethodAdapter):
    """Nearest-neighbour inpainting on HOG-style context descriptors (module docstring)."""

    @dataclass
    class Options:
        bank_size: int = 512               # the largest training index + 1 it can keep (facades: 400)
        cell: float = 0.0625               # HOG cell side as a share of the image side (8 px at 128)
        bins: int = 9

        def __post_init__(self) -> None:
            check_options(self, at_least_one=("bank_size", "bins"), positive=("cell",))
            if self.cell >= 0.5:
                raise ConfigError(f"option 'cell' is a share of the image side below 0.5, got {self.cell}")

    def __init__(self, options: "NNInpaint.Options", task: TaskSpec, ctx: TrainContext, components: Any = None):
        super().__init__(options, task, ctx, components)
        self.frac = hole_fraction(task)
        s = ctx.image_size
        self.cell = max(1, round(options.cell * s))
        if s % self.cell:
            raise ConfigError(f"inpaint-nn-hog: the HOG cell ({self.cell} px) must divide the image side ({s} px)")
        side = hole_box(s, s, self.frac)[2]
        feats = options.bins * (s // self.cell) ** 2
        self.bank = HOGBank(options.bank_size, feats, task.y_channels, side).to(ctx.device)
        self.modules = {"bank": self.bank}

    def describe(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(descriptor, x, mask) of a batch; the descriptor reads the context only."""
        x, m = self.task.x(batch), self.task.get(MASK_FIELD, batch)
        return hog_cells(blank(x.float(), m), m, self.cell, self.options.bins), x, m

    @torch.no_grad()
    def train_step(self, batch: dict[str, torch.Tensor], step: int, update_g: bool) -> dict[str, torch.Tensor]:
        idx = batch["index"].reshape(-1).to(self.bank.filled.device).long()
        if int(idx.max()) >= self.options.bank_size:
            raise ConfigError(f"inpaint-nn-hog: training index {int(idx.max())} does not fit bank_size = "
                              f"{self.options.bank_size}; raise it to the training split's size")
        f, _, _ = self.describe(batch)
        y = self.task.y(batch).float()
        self.bank.features[idx] = f
        self.bank.regions[idx] = crop(y, hole_box(y.shape[-2], y.shape[-1], self.frac))
        self.bank.filled[idx] = True
        return {}

    @torch.no_grad()
    def generate(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        keep = self.bank.filled.nonzero().flatten()
        if keep.numel() == 0:
            raise DataError("inpaint-nn-hog: its bank is empty (no training step ran)")
        f, x, m = self.describe(batch)
        d = torch.cdist(f, self.bank.features[keep], compute_mode="donot_use_mm_for_euclid_dist")
        nearest = keep[d.argmin(1)]
        return {"y": paste(x.float(), self.bank.regions[nearest], m, hole_box(x.shape[-2], x.shape[-1], self.frac))}

    def eval_protocol(self) -> dict[str, Any]:
        o = self.options
        return {"descriptor": f"HOG-style, {o.bins} unsigned bins, {self.cell} px cells, L2-Hys per cell, "
                              "cells touching the hole left out", "distance": "L2, nearest training image"}
