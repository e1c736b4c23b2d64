"""Reconstruction errors of generated images against their targets: L1, L2, PSNR, SSIM.

Pure functions take image batches (N, C, H, W) of the same shape and value range; they reduce per
image first and then, with ``reduction="mean"``, average over images (for L1 / L2 this equals the
mean over all pixels since every image has the same size). PSNR is per-image
``10 log10(data_range^2 / MSE)`` averaged over images (identical images give +inf). SSIM is
pytorch-msssim's (Gaussian window 11, sigma 1.5, K = (0.01, 0.03), valid filtering), computed in
float64 with the Gaussian window normalised in float64 (:func:`gaussian_window`; float32 only on
devices without float64, MPS): in float32 the variance terms E[x^2] - E[x]^2 cancel badly, and a
pair of flat images misses its closed form (2 a b + C1) / (a^2 + b^2 + C1) by about 1e-4.
``reduction`` is "mean" or "none"; anything else raises :class:`~bench.errors.MetricError`.

Value-range conventions of :class:`ReconstructionScorer` (images of the task's y-space, [-1, 1],
predictions clamped to [-1, 1] first, as they would be saved):

- ``l1``, ``l2``: mean absolute / squared error on the [-1, 1] images (the scale of the pix2pix
  L1 loss).
- ``l1_pct``, ``l2_pct``: the same on [0, 1] images, in percent -- the convention of the context
  encoder table (Pathak et al. 2016: "mean L1 loss 10.33 %, mean L2 loss 2.35 %").
  ``l1_pct = 100 * l1 / 2`` and ``l2_pct = 100 * l2 / 4``.
- ``psnr`` (dB) and ``ssim`` on [0, 1] images with ``data_range = 1``.

With the scorer option ``region = "<mask field>"`` (the context encoder's inpainting tasks) L1, L2
and PSNR are taken over the pixels of the region only (mask 1, every channel) and SSIM, a
windowed whole-image measure, is left out.
"""

from __future__ import annotations

from importlib.metadata import version
from typing import Any

import pytorch_msssim
import torch

from bench.errors import MetricError
from bench.registry import METRICS
from metrics.base import ScoreContext, Scorer

REDUCTIONS = ("mean", "none")


def _check(a: torch.Tensor, b: torch.Tensor, reduction: str) -> None:
    if a.shape != b.shape:
        raise MetricError(f"images to compare differ in shape: {tuple(a.shape)} vs {tuple(b.shape)}")
    if a.ndim != 4:
        raise MetricError(f"image batches are (N, C, H, W); got shape {tuple(a.shape)}")
    if reduction not in REDUCTIONS:
        raise MetricError(f"reduction must be one of {REDUCTIONS}, not '{reduction}'")


def _reduce(per_image: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction not in REDUCTIONS:
        raise MetricError(f"reduction must be one of {REDUCTIONS}, not '{reduction}'")
    return per_image.mean() if reduction == "mean" else per_image


def compute_dtype(device: torch.device | str) -> torch.dtype:
    """float64, where the device has it (not MPS): what SSIM and MS-SSIM are computed in."""
    return torch.float32 if torch.device(device).type == "mps" else torch.float64


def gaussian_window(win_size: int, win_sigma: float, channels: int, dtype: torch.dtype = torch.float64,
                    device: torch.device | str = "cpu") -> torch.Tensor:
    """pytorch-msssim's 1-D Gaussian window (``_fspecial_gauss_1d``), built and normalised in ``dtype``,
    repeated per channel: (channels, 1, 1, win_size), as its ``win`` argument takes it. The library's
    own window is normalised in float32 (its sum is 1 - 3e-8), which alone moves SSIM by 1e-5 on flat
    images even in float64."""
    coords = torch.arange(win_size, dtype=dtype, device=device) - win_size // 2
    g = torch.exp(-coords.square() / (2 * win_sigma ** 2))
    g = g / g.sum()
    return g.view(1, 1, 1, win_size).repeat(channels, 1, 1, 1)


def l1(a: torch.Tensor, b: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Mean absolute error; per image (N,) with ``reduction="none"``."""
    _check(a, b, reduction)
    return _reduce((a.float() - b.float()).abs().flatten(1).mean(1), reduction)


def l2(a: torch.Tensor, b: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Mean squared error; per image (N,) with ``reduction="none"``."""
    _check(a, b, reduction)
    return _reduce((a.float() - b.float()).square().flatten(1).mean(1), reduction)


def region_errors(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-image mean absolute and squared error over the pixels where ``mask`` (N, 1, H, W) is 1."""
    _check(a, b, "none")
    if mask.shape[0] != a.shape[0] or mask.shape[-2:] != a.shape[-2:]:
        raise MetricError(f"the region mask {tuple(mask.shape)} does not fit the images {tuple(a.shape)}")
    m = mask.float().expand_as(a).flatten(1)
    count = m.sum(1)
    if bool((count == 0).any()):
        raise MetricError("a region mask is empty for some image; check the task's mask field")
    d = (a.float() - b.float()).flatten(1)
    return (d.abs() * m).sum(1) / count, (d.square() * m).sum(1) / count


def psnr(a: torch.Tensor, b: torch.Tensor, data_range: float, reduction: str = "mean") -> torch.Tensor:
    """Peak signal-to-noise ratio in dB, per image then averaged over images."""
    _check(a, b, reduction)
    if data_range <= 0:
        raise MetricError(f"data_range must be positive (1.0 for [0, 1] images, 255 for bytes); got {data_range}")
    mse = l2(a, b, reduction="none").double()
    return _reduce(10 * torch.log10(data_range ** 2 / mse), reduction).float()


def ssim(a: torch.Tensor, b: torch.Tensor, data_range: float, reduction: str = "mean",
         win_size: int = 11) -> torch.Tensor:
    """Structural similarity (pytorch-msssim), per image (mean over channels) then over images.

    Computed in float64 (float32 on MPS) with a float64-normalised window; returns that dtype."""
    _check(a, b, reduction)
    if min(a.shape[-2:]) < win_size:
        raise MetricError(f"SSIM needs images of at least {win_size} px per side (the window); got "
                          f"{tuple(a.shape[-2:])}: score at a larger size")
    dtype = compute_dtype(a.device)
    win = gaussian_window(win_size, 1.5, a.shape[1], dtype, a.device)
    per_image = pytorch_msssim.ssim(a.to(dtype), b.to(dtype), data_range=data_range, size_average=False,
                                    win=win)
    return _reduce(per_image, reduction)


@METRICS.register("reconstruction")
class ReconstructionScorer(Scorer):
    """Scores an image task against its target: l1, l2 ([-1, 1]), l1_pct, l2_pct, psnr, ssim ([0, 1])."""

    keys = ("l1", "l2", "l1_pct", "l2_pct", "psnr", "ssim")
    outputs = ("image",)
    higher_is_better = ("psnr", "ssim")
    ranges = {"l1": (0.0, None), "l2": (0.0, None), "l1_pct": (0.0, 100.0), "l2_pct": (0.0, 100.0),
              "psnr": (0.0, None), "ssim": (-1.0, 1.0)}

    def __init__(self, ctx: ScoreContext):
        super().__init__(ctx)
        if ctx.task.output not in self.outputs:
            raise MetricError(f"metric 'reconstruction' scores image outputs; task '{ctx.task.name}' "
                              f"outputs '{ctx.task.output}': remove it from the suite's metrics")
        unknown = sorted(set(ctx.options) - {"region"})
        if unknown:
            raise MetricError(f"reconstruction: unknown option '{unknown[0]}'; allowed: region")
        self.region = ctx.options.get("region")
        if self.region is not None:
            f = ctx.task.fields.get(self.region)
            if f is None or f.kind != "mask":
                masks = [k for k, v in ctx.task.fields.items() if v.kind == "mask"]
                raise MetricError(f"reconstruction: region = '{self.region}' is not a mask field of task "
                                  f"'{ctx.task.name}' (its mask fields: {', '.join(masks) or 'none'})")
        self._sums = torch.zeros(4, dtype=torch.float64)     # l1, l2, psnr, ssim (per-image sums)
        self._count = 0

    def update(self, pred: torch.Tensor, batch: dict[str, torch.Tensor]) -> None:
        target = self.ctx.task.y(batch).to(pred.device).float()
        pred = pred.float().clamp(-1, 1)
        p01, t01 = (pred + 1) / 2, (target + 1) / 2
        if self.region is not None:
            mask = self.ctx.task.get(self.region, batch).to(pred.device)
            e1, e2 = region_errors(pred, target, mask)
            per_image = torch.stack([e1, e2, (10 * torch.log10(4.0 / e2.double())).float(), torch.zeros_like(e1)])
        else:
            per_image = torch.stack([
                l1(pred, target, "none"),
                l2(pred, target, "none"),
                psnr(p01, t01, 1.0, "none"),
                ssim(p01, t01, 1.0, "none"),
            ])
        self._sums += per_image.double().sum(1).cpu()
        self._count += pred.shape[0]

    def compute(self) -> dict[str, float]:
        if self._count == 0:
            raise MetricError("reconstruction: no batches were scored; check the evaluation split")
        l1_, l2_, psnr_, ssim_ = (self._sums / self._count).tolist()
        out = {"l1": l1_, "l2": l2_, "l1_pct": 100 * l1_ / 2, "l2_pct": 100 * l2_ / 4, "psnr": psnr_, "ssim": ssim_}
        if self.region is not None:
            del out["ssim"]
        return out

    def protocol(self) -> dict[str, Any]:
        region = {} if self.region is None else {
            "region": f"mask field '{self.region}' only (L1, L2, PSNR over its pixels; no SSIM)"}
        return {
            "scorer": type(self).__name__, **region,
            "clamp_predictions": [-1.0, 1.0],
            "l1_l2_range": [-1.0, 1.0],
            "pct_range": [0.0, 1.0],
            "psnr": "per image, data_range 1 on [0, 1], mean over images",
            "ssim": {"library": f"pytorch-msssim {version('pytorch-msssim')}", "win_size": 11, "win_sigma": 1.5,
                     "K": [0.01, 0.03], "data_range": 1.0, "range": [0.0, 1.0],
                     "dtype": str(compute_dtype(self.ctx.device)).removeprefix("torch."),
                     "window": "Gaussian normalised in that dtype"},
        }

    def score_reference(self, batch: dict[str, torch.Tensor]) -> torch.Tensor | None:
        """The target compared with itself is trivial (l1 = 0, psnr = inf): no oracle row."""
        return None
