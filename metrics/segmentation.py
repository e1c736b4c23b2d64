"""Semantic segmentation scores from a confusion matrix: pixel accuracy, mean class accuracy, mean IoU.

The confusion matrix is accumulated with one ``torch.bincount`` on the input's device (GPU when the
predictions are there), so scoring a whole split never leaves the accelerator until ``compute``.

Conventions (the usual ones, as in the Cityscapes evaluation and the fusion paper; pix2pix's
"FCN-score" averages over all classes instead: ``class_average = "all"`` below):

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
- ``class_average`` (option of the ``segmentation`` and ``segmenter-score`` scorers, stamped on
  their protocols) chooses the classes of both means: ``"present"`` (default, the rules above: the
  fusion paper's and Cityscapes' convention) or ``"all"`` (every class ``0..C-1``; a class absent
  from the target has class accuracy 0 and a class absent from both has IoU 0: pix2pix's
  "FCN-score", whose ``get_scores`` divides by ``count + 1e-12``).
- An ``ignore_index`` inside ``0..C-1`` names a class that is not scored: its target pixels are not
  counted (above), pixels of other classes predicted as it are errors of those classes, and it
  enters neither mean (its ``iou_per_class`` entry is NaN), whatever ``class_average`` says. The
  matrix :func:`confusion_matrix` returns remembers it (``cm.ignore_index``), so ``scores(cm)`` leaves
  the class out without being told again; a sum of matrices is a new tensor that does not: pass
  ``ignore_index`` to :func:`scores` then (the scorers always do).
"""

from __future__ import annotations

import math
from typing import Any

import torch

from bench.errors import MetricError
from bench.registry import METRICS
from metrics.base import ScoreContext, Scorer

#: which classes enter mean_class_acc and mean_iou (see the module docstring)
CLASS_AVERAGES = ("present", "all")
_AVERAGE_TEXT = {
    "present": {"mean_class_acc": "mean over classes present in the target",
                "mean_iou": "mean over classes present in the target or the prediction"},
    "all": {"mean_class_acc": "mean over all classes (absent from the target: 0)",
            "mean_iou": "mean over all classes (absent from target and prediction: 0)"},
}


def class_average_option(options: dict[str, Any], metric: str) -> str:
    """The ``class_average`` option of scorer ``metric`` (default "present"), checked."""
    value = options.get("class_average", "present")
    if value not in CLASS_AVERAGES:
        raise MetricError(f"{metric}: class_average must be 'present' or 'all', not {value!r}; set "
                          f"[metric_options.{metric}] class_average = \"present\" (fusion paper, Cityscapes) "
                          "or \"all\" (pix2pix FCN-score)")
    return value


def class_average_protocol(class_average: str, ignore_index: int | None, num_classes: int) -> dict[str, Any]:
    """The protocol entries that say which classes the means run over."""
    text = dict(_AVERAGE_TEXT[class_average])
    if ignore_index is not None and 0 <= ignore_index < num_classes:
        text = {k: f"{v}, class {ignore_index} (the ignore index) left out" for k, v in text.items()}
    return {"class_average": class_average, **text}


def confusion_matrix(pred: torch.Tensor, target: torch.Tensor, num_classes: int,
                     ignore_index: int = 255) -> torch.Tensor:
    """(C, C) int64 confusion matrix (rows = target, cols = pred) on the inputs' device.

    ``pred`` and ``target`` hold integer class ids of the same shape (any shape, e.g. (N, H, W)).
    Pixels whose target equals ``ignore_index`` or lies outside ``0..num_classes-1`` are skipped. An
    ``ignore_index`` inside ``0..num_classes-1`` is kept on the matrix (``cm.ignore_index``): :func:`scores`
    leaves that class out of both means.
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
    cm = torch.bincount(idx, minlength=cc + 1)[:cc].reshape(num_classes, num_classes)
    if 0 <= ignore_index < num_classes:
        cm.ignore_index = int(ignore_index)       # an unscored class: scores(cm) must not average it in
    return cm


def scores(cm: torch.Tensor, class_average: str = "present", ignore_index: int | None = None) -> dict[str, Any]:
    """Pixel accuracy, mean class accuracy, mean IoU and per-class IoU from a confusion matrix.

    ``class_average``: "present" (default) or "all"; ``ignore_index``: a class id inside 0..C-1
    that enters neither mean (ids outside are harmless; default: the one ``cm`` was made with by
    :func:`confusion_matrix`). See the module docstring for which classes enter each mean. With no
    counted pixels at all, every value is NaN.
    """
    if ignore_index is None:
        ignore_index = getattr(cm, "ignore_index", None)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1]:
        raise MetricError(f"a confusion matrix is square (C, C); got shape {tuple(cm.shape)}")
    if class_average not in CLASS_AVERAGES:
        raise MetricError(f"class_average must be 'present' or 'all', not {class_average!r}")
    cm = cm.detach().to("cpu", torch.float64)
    diag = cm.diagonal()
    gt_count = cm.sum(1)
    pred_count = cm.sum(0)
    total = float(cm.sum())
    union = gt_count + pred_count - diag
    scored = torch.ones_like(diag, dtype=torch.bool)
    if ignore_index is not None and 0 <= ignore_index < len(diag):
        scored[ignore_index] = False

    nan = torch.full_like(diag, math.nan)
    if class_average == "all":
        acc_in, iou_in = scored, scored
    else:
        acc_in, iou_in = scored & (gt_count > 0), scored & (union > 0)
    acc = torch.where(acc_in, diag / gt_count.clamp_min(1), nan)
    iou = torch.where(iou_in, diag / union.clamp_min(1), nan)
    counted = total > 0
    return {
        "pixel_acc": float(diag.sum() / total) if counted else math.nan,
        "mean_class_acc": float(acc.nanmean()) if counted and bool(acc_in.any()) else math.nan,
        "mean_iou": float(iou.nanmean()) if counted and bool(iou_in.any()) else math.nan,
        "iou_per_class": [float(v) for v in iou],
    }


@METRICS.register("segmentation")
class SegmentationScorer(Scorer):
    """Scores a labels task: decodes each prediction to class ids and accumulates the confusion matrix."""

    keys = ("pixel_acc", "mean_class_acc", "mean_iou")
    outputs = ("labels",)
    higher_is_better = ("pixel_acc", "mean_class_acc", "mean_iou")
    ranges = {"pixel_acc": (0.0, 1.0), "mean_class_acc": (0.0, 1.0), "mean_iou": (0.0, 1.0)}

    def __init__(self, ctx: ScoreContext):
        super().__init__(ctx)
        if ctx.task.output not in self.outputs:
            raise MetricError(f"metric 'segmentation' scores label outputs; task '{ctx.task.name}' "
                              f"outputs '{ctx.task.output}': remove it from the suite's metrics")
        info = ctx.task.info
        self.num_classes = info.num_classes
        self.ignore_index = info.ignore_index
        self.class_average = class_average_option(ctx.options, "segmentation")
        self.cm: torch.Tensor | None = None

    @classmethod
    def preflight(cls, ctx: ScoreContext) -> None:
        """Only the options (nothing to load): a bad ``class_average`` fails before any training."""
        class_average_option(ctx.options, "segmentation")

    def update(self, pred: torch.Tensor, batch: dict[str, torch.Tensor]) -> None:
        labels = self.ctx.task.decode_labels(pred)
        cm = confusion_matrix(labels, batch["label"].to(labels.device), self.num_classes, self.ignore_index)
        self.cm = cm if self.cm is None else self.cm + cm.to(self.cm.device)

    def compute(self) -> dict[str, float]:
        if self.cm is None or int(self.cm.sum()) == 0:
            raise MetricError("segmentation: no labelled pixels were scored; check that the evaluation "
                              "split has labels other than the ignore index")
        s = scores(self.cm, self.class_average, self.ignore_index)
        return {k: s[k] for k in self.keys}

    def protocol(self) -> dict[str, Any]:
        return {
            "scorer": type(self).__name__,
            "num_classes": self.num_classes,
            "ignore_index": self.ignore_index,
            "decode": "argmax" if self.ctx.task.label_output == "logits" else "nearest palette colour",
            **class_average_protocol(self.class_average, self.ignore_index, self.num_classes),
        }
