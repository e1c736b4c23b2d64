"""Monocular depth errors, standard Eigen et al. (2014) protocol, as stated in papers.md section A.

For each image, over its *valid* pixels ``min_depth < gt < max_depth`` (inside the crop, if any),
with the prediction clipped to ``[min_depth, max_depth]``:

- ``rel``     = mean |gt - pred| / gt
- ``sq_rel``  = mean (gt - pred)^2 / gt
- ``rms``     = sqrt(mean (gt - pred)^2)
- ``rms_log`` = sqrt(mean (ln gt - ln pred)^2)
- ``log10``   = mean |log10 pred - log10 gt|
- ``delta_k`` = share of pixels with max(gt / pred, pred / gt) < 1.25^k, k = 1, 2, 3

Averaging (``reduce``):

- ``"image"`` (default): each quantity above is computed per image (rms as the root of that
  image's mean squared error), then averaged over images. Images without valid pixels are skipped.
- ``"pixel"``: the means are taken over all valid pixels of all images pooled
  (rms = root of the pooled mean squared error).

Predictions are made finite and clipped as the BTS evaluation does (``eval.py``: values below
``min_depth`` become ``min_depth``, above ``max_depth`` become ``max_depth``, ``+inf`` becomes
``max_depth``, ``NaN`` becomes ``min_depth``; ``-inf`` is below the range, so ``min_depth``). One
non-finite pixel therefore costs that pixel's error, never every metric of the split. Ground-truth
pixels that are NaN or out of range are simply invalid.

Crop: ``None`` (whole frame), ``"eigen"`` (rows 45:471, cols 41:601 of a 480 x 640 frame; for other
frame sizes each edge is scaled proportionally and truncated: ``floor(45 * H / 480)`` etc.), or an
explicit ``(top, bottom, left, right)`` tuple of Python slice bounds.

Everything is reduced to per-image sums first (:func:`per_image_sums`), which is what the streaming
scorer keeps: ten numbers per image, never the pixels.
"""

from __future__ import annotations

import logging
import math
from typing import Any, Sequence

import torch

from bench.errors import MetricError
from bench.registry import METRICS
from metrics.base import ScoreContext, Scorer

log = logging.getLogger(__name__)

KEYS = ("rel", "sq_rel", "rms", "rms_log", "log10", "delta1", "delta2", "delta3")
REDUCTIONS = ("image", "pixel")
#: Eigen crop on the 480 x 640 NYU frame: (top, bottom, left, right), Python slice bounds
EIGEN_CROP_480x640 = (45, 471, 41, 601)

# columns of the per-image sums table
_N, _ABS_REL, _SQ_REL, _SQ, _SQ_LOG, _LOG10, _D1, _D2, _D3 = range(9)
_LN10 = math.log(10.0)

Crop = str | Sequence[int] | None


def crop_box(crop: Crop, height: int, width: int) -> tuple[int, int, int, int] | None:
    """Resolve a crop spec to (top, bottom, left, right) slice bounds for an H x W frame."""
    if crop is None:
        return None
    if isinstance(crop, str):
        if crop != "eigen":
            raise MetricError(f"unknown depth crop '{crop}'; use 'eigen', None or (top, bottom, left, right)")
        t, b, l, r = EIGEN_CROP_480x640
        return (t * height // 480, b * height // 480, l * width // 640, r * width // 640)
    box = tuple(int(v) for v in crop)
    if len(box) != 4:
        raise MetricError(f"a depth crop tuple is (top, bottom, left, right); got {tuple(crop)}")
    t, b, l, r = box
    if not (0 <= t < b <= height and 0 <= l < r <= width):
        raise MetricError(f"depth crop {box} does not fit a {height} x {width} frame; "
                          "give 0 <= top < bottom <= H and 0 <= left < right <= W")
    return box


def _as_nhw(x: torch.Tensor, name: str) -> torch.Tensor:
    if x.ndim == 2:
        return x.unsqueeze(0)
    if x.ndim == 3:
        return x
    if x.ndim == 4 and x.shape[1] == 1:
        return x[:, 0]
    raise MetricError(f"depth {name} must be (N, 1, H, W), (N, H, W) or (H, W); got {tuple(x.shape)}")


def per_image_sums(pred: torch.Tensor, gt: torch.Tensor, min_depth: float = 1e-3, max_depth: float = 10.0,
                   crop: Crop = None) -> torch.Tensor:
    """(N, 9) float64 table of per-image sums over valid pixels.

    Columns: valid count, sum |d|/gt, sum d^2/gt, sum d^2, sum (ln gt - ln pred)^2,
    sum |log10 gt - log10 pred|, and the counts under 1.25, 1.25^2, 1.25^3 (d = gt - pred).
    """
    pred, gt = _as_nhw(pred, "prediction"), _as_nhw(gt, "ground truth")
    if pred.shape != gt.shape:
        raise MetricError(f"depth prediction {tuple(pred.shape)} and ground truth {tuple(gt.shape)} differ "
                          "in shape; resize predictions to the ground-truth size first")
    if not 0 < min_depth < max_depth:
        raise MetricError(f"depth range must satisfy 0 < min_depth < max_depth; got {min_depth}, {max_depth}")
    box = crop_box(crop, gt.shape[-2], gt.shape[-1])
    if box is not None:
        t, b, l, r = box
        pred, gt = pred[:, t:b, l:r], gt[:, t:b, l:r]
    gt = gt.to(pred.device, torch.float32)
    # BTS evaluation policy: NaN -> min_depth, +inf -> max_depth, then clip into [min_depth, max_depth]
    pred = torch.nan_to_num(pred.float(), nan=min_depth, posinf=max_depth, neginf=min_depth)
    pred = pred.clamp(min_depth, max_depth)

    valid = (gt > min_depth) & (gt < max_depth)           # NaN ground truth is invalid too
    g = torch.where(valid, gt, torch.ones_like(gt))
    p = torch.where(valid, pred, torch.ones_like(pred))
    diff = g - p
    dlog = torch.log(g) - torch.log(p)
    ratio = torch.maximum(g / p, p / g)
    sq = diff.square()
    cols = [
        valid.float(),
        diff.abs() / g,
        sq / g,
        sq,
        dlog.square(),
        dlog.abs() / _LN10,
        (ratio < 1.25).float(),
        (ratio < 1.25 ** 2).float(),
        (ratio < 1.25 ** 3).float(),
    ]
    # Invalid pixels have g == p == 1: every error term is 0 and the ratio 1 (counted in the deltas,
    # subtracted below). Per-image float32 sums are exact for counts below 2^24 pixels and use
    # torch's cascaded summation for the rest; images are accumulated in float64.
    sums = torch.stack([c.flatten(1).sum(1) for c in cols], 1).double()
    n_invalid = valid[0].numel() - sums[:, _N:_N + 1]
    sums[:, _D1:] -= n_invalid
    return sums


def reduce_sums(sums: torch.Tensor, reduce: str = "image") -> dict[str, float]:
    """Turn a per-image sums table (from :func:`per_image_sums`) into the error dict."""
    if reduce not in REDUCTIONS:
        raise MetricError(f"depth reduce must be one of {REDUCTIONS}, not '{reduce}'")
    sums = sums.to("cpu", torch.float64)
    sums = sums[sums[:, _N] > 0]
    if len(sums) == 0:
        raise MetricError("depth: no valid ground-truth pixels (min_depth < gt < max_depth) were scored; "
                          "check the depth range and the crop")
    if reduce == "pixel":
        sums = sums.sum(0, keepdim=True)
    mean = sums[:, 1:] / sums[:, :1]                      # per-image (or pooled) means
    out = {
        "rel": mean[:, _ABS_REL - 1],
        "sq_rel": mean[:, _SQ_REL - 1],
        "rms": mean[:, _SQ - 1].sqrt(),
        "rms_log": mean[:, _SQ_LOG - 1].sqrt(),
        "log10": mean[:, _LOG10 - 1],
        "delta1": mean[:, _D1 - 1],
        "delta2": mean[:, _D2 - 1],
        "delta3": mean[:, _D3 - 1],
    }
    return {k: float(v.mean()) for k, v in out.items()}


def depth_errors(pred: torch.Tensor, gt: torch.Tensor, min_depth: float = 1e-3, max_depth: float = 10.0,
                 crop: Crop = None, reduce: str = "image") -> dict[str, float]:
    """Eigen-protocol depth errors of ``pred`` against ``gt`` (both in metres).

    Shapes (N, 1, H, W), (N, H, W) or (H, W). ``reduce="image"`` (default) averages per-image
    errors over images; ``"pixel"`` pools all valid pixels. See the module docstring.
    """
    if reduce not in REDUCTIONS:
        raise MetricError(f"depth reduce must be one of {REDUCTIONS}, not '{reduce}'")
    return reduce_sums(per_image_sums(pred, gt, min_depth, max_depth, crop), reduce)


@METRICS.register("depth")
class DepthScorer(Scorer):
    """Scores a depth task. Options (``[metric_options.depth]``): ``crop`` (None | "eigen" |
    [top, bottom, left, right]) and ``reduce`` ("image" | "pixel"); depth range from the dataset.
    Predictions are clipped to the range, NaN counting as ``min_depth`` and +inf as ``max_depth``
    (the BTS evaluation's policy; stamped on the protocol)."""

    keys = KEYS
    outputs = ("depth",)
    higher_is_better = ("delta1", "delta2", "delta3")
    ranges = {**{k: (0.0, None) for k in ("rel", "sq_rel", "rms", "rms_log", "log10")},
              **{k: (0.0, 1.0) for k in ("delta1", "delta2", "delta3")}}

    def __init__(self, ctx: ScoreContext):
        super().__init__(ctx)
        if ctx.task.output not in self.outputs:
            raise MetricError(f"metric 'depth' scores depth outputs; task '{ctx.task.name}' outputs "
                              f"'{ctx.task.output}': remove it from the suite's metrics")
        unknown = set(ctx.options) - {"crop", "reduce"}
        if unknown:
            log.warning("depth metric ignores options %s (it reads crop, reduce)", sorted(unknown))
        info = ctx.task.info
        self.min_depth = float(info.min_depth)
        self.max_depth = float(info.max_depth)
        crop = ctx.options.get("crop")
        self.crop: Crop = tuple(crop) if isinstance(crop, (list, tuple)) else crop
        self.reduce = ctx.options.get("reduce", "image")
        if self.reduce not in REDUCTIONS:
            raise MetricError(f"depth reduce must be one of {REDUCTIONS}, not '{self.reduce}'")
        if isinstance(self.crop, str):
            crop_box(self.crop, 480, 640)     # validate the name early
        self._sums: list[torch.Tensor] = []

    def update(self, pred: torch.Tensor, batch: dict[str, torch.Tensor]) -> None:
        depth = self.ctx.task.decode_depth(pred)
        s = per_image_sums(depth, batch["depth"], self.min_depth, self.max_depth, self.crop)
        self._sums.append(s.cpu())

    def compute(self) -> dict[str, float]:
        if not self._sums:
            raise MetricError("depth: no batches were scored; check the evaluation split")
        return reduce_sums(torch.cat(self._sums), self.reduce)

    def protocol(self) -> dict[str, Any]:
        return {
            "scorer": type(self).__name__,
            "min_depth": self.min_depth,
            "max_depth": self.max_depth,
            "crop": list(self.crop) if isinstance(self.crop, tuple) else self.crop,
            "reduce": self.reduce,
            "clip_predictions": [self.min_depth, self.max_depth],
            "non_finite_predictions": "NaN -> min_depth, +inf -> max_depth, -inf -> min_depth (BTS eval)",
            "log": "rms_log natural log; log10 base 10",
        }
