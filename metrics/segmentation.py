"""Semantic segmentation scores from a confusion matrix: pixel accuracy, mean class accuracy, mean IoU.

The confusion matrix is accumulated with one ``torch.bincount`` on the input's device (GPU when the
predictions are there), so scoring a whole split never leaves the accelerator until ``compute``.

Conventions (the usual ones, as in the FCN / pix2pix "FCN-score" and Cityscapes evaluations):

- ``cm[t, p]`` counts pixels of target class ``t`` predicted as ``p`` (rows = target, cols = pred).
- Pixels whose target is ``ignore_index`` or outside ``0..C-1`` are not counted.
- A prediction outside ``0..C-1`` on a counted pixel is an error of the caller (a C x C matrix cannot
  hold it) and raises :class:`bench.errors.MetricError`.
- ``pixel_acc`` = trace / total counted pixels.
- ``mean_class_acc`` = mean over classes *present in the target* of ``cm[c, c] / cm[c, :].sum()``
  (a class absent from the target has no accuracy; if it is predicted, those pixels already lower
  the accuracy of the classes they belong to).
- ``mean_iou`` = mean over classes *present in the target or the prediction* of
  ``cm[c, c] / (cm[c, :].sum() + cm[:, c].sum() - cm[c, c])``. A class absent from both has no IoU
  and is excluded; a class predicted but absent from the target has IoU 0 and is included.
- ``iou_per_class`` holds NaN for the excluded classes.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from bench.errors import MetricError
from bench.registry import METRICS
from metrics.base import ScoreContext, Scorer


def confusion_matrix(pred: torch.Tensor, target: torch.Tensor, num_classes: int,
                     ignore_index: int = 255) -> torch.Tensor:
    """(C, C) int64 confusion matrix (rows = target, cols = pred) on the inputs' device.

    ``pred`` and ``target`` hold integer class ids of the same shape (any shape, e.g. (N, H, W)).
    Pixels whose target equals ``ignore_index`` or lies outside ``0..num_classes-1`` are skipped.
    """
    if num_classes < 1:
        raise MetricError(f"num_classes must be >= 1, not {num_classes}; check the dataset's DatasetInfo")
    if pred.shape != target.shape:
        raise MetricError(f"prediction shape {tuple(pred.shape)} differs from target shape "
                          f"{tuple(target.shape)}; resize predictions to the label size before scoring")
    if pred.is_floating_point() or target.is_floating_point():
        raise MetricError("confusion_matrix takes integer class ids; decode predictions first "
                          "(e.g. TaskSpec.decode_labels)")
    p = pred.reshape(-1).to(torch.int64)
    t = target.reshape(-1).to(torch.int64).to(p.device)
    keep = (t != ignore_index) & (t >= 0) & (t < num_classes)
    if bool((keep & ((p < 0) | (p >= num_classes))).any()):
        kept = p[keep]
        raise MetricError(f"predicted class ids must lie in 0..{num_classes - 1}; got "
                          f"{int(kept.min())}..{int(kept.max())}")
    # skipped pixels go to one overflow bin past the C*C cells (cheaper than compacting the arrays)
    cc = num_classes * num_classes
    idx = torch.where(keep, t * num_classes + p, cc)
    return torch.bincount(idx, minlength=cc + 1)[:cc].reshape(num_classes, num_classes)


def scores(cm: torch.Tensor) -> dict[str, Any]:
    """Pixel accuracy, mean class accuracy, mean IoU and per-class IoU from a confusion matrix.

    See the module docstring for which classes enter each mean. With no counted pixels at all,
    every value is NaN.
    """
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1]:
        raise MetricError(f"a confusion matrix is square (C, C); got shape {tuple(cm.shape)}")
    cm = cm.detach().to("cpu", torch.float64)
    diag = cm.diagonal()
    gt_count = cm.sum(1)
    pred_count = cm.sum(0)
    total = float(cm.sum())
    union = gt_count + pred_count - diag

    nan = torch.full_like(diag, math.nan)
    acc = torch.where(gt_count > 0, diag / gt_count.clamp_min(1), nan)
    iou = torch.where(union > 0, diag / union.clamp_min(1), nan)
    return {
        "pixel_acc": float(diag.sum() / total) if total > 0 else math.nan,
        "mean_class_acc": float(acc.nanmean()) if bool((gt_count > 0).any()) else math.nan,
        "mean_iou": float(iou.nanmean()) if bool((union > 0).any()) else math.nan,
        "iou_per_class": [float(v) for v in iou],
    }


@METRICS.register("segmentation")
class SegmentationScorer(Scorer):
    """Scores a labels task: decodes each prediction to class ids and accumulates the confusion matrix."""

    keys = ("pixel_acc", "mean_class_acc", "mean_iou")
    outputs = ("labels",)
    higher_is_better = ("pixel_acc", "mean_class_acc", "mean_iou")

    def __init__(self, ctx: ScoreContext):
        super().__init__(ctx)
        if ctx.task.output not in self.outputs:
            raise MetricError(f"metric 'segmentation' scores label outputs; task '{ctx.task.name}' "
                              f"outputs '{ctx.task.output}': remove it from the suite's metrics")
        info = ctx.task.info
        self.num_classes = info.num_classes
        self.ignore_index = info.ignore_index
        self.cm: torch.Tensor | None = None

    def update(self, pred: torch.Tensor, batch: dict[str, torch.Tensor]) -> None:
        labels = self.ctx.task.decode_labels(pred)
        cm = confusion_matrix(labels, batch["label"].to(labels.device), self.num_classes, self.ignore_index)
        self.cm = cm if self.cm is None else self.cm + cm.to(self.cm.device)

    def compute(self) -> dict[str, float]:
        if self.cm is None or int(self.cm.sum()) == 0:
            raise MetricError("segmentation: no labelled pixels were scored; check that the evaluation "
                              "split has labels other than the ignore index")
        s = scores(self.cm)
        return {k: s[k] for k in self.keys}

    def protocol(self) -> dict[str, Any]:
        return {
            "scorer": type(self).__name__,
            "num_classes": self.num_classes,
            "ignore_index": self.ignore_index,
            "decode": "argmax" if self.ctx.task.label_output == "logits" else "nearest palette colour",
            "mean_class_acc": "mean over classes present in the target",
            "mean_iou": "mean over classes present in the target or the prediction",
        }
