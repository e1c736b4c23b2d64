"""The segmenter score of generated images (pix2pix's "FCN-score", the fusion paper's PSPNet score).

A labels->photo generator is scored by segmenting its photos with a fixed scoring segmenter and
comparing the segmentation with the input labels: a generator whose photos show the right things
in the right places scores high. The same scorer on the real photos (``score_reference``) gives
the oracle row, the ceiling of the protocol (pix2pix: 0.80 / 0.26 / 0.21 per-pixel acc / per-class
acc / IoU with its FCN; the fusion paper: 85.13% / 0.5937 with a PSPNet).

Options (``[metric_options.segmenter-score]``):

- ``segmenter``: a name in ``metrics.segmenters.SEGMENTERS``; default ``espnet-cityscapes`` for
  the Cityscapes dataset, else ``smp-pspnet`` trained on the dataset's real training split
  (``smp-fpn``: finer output, about 3x the training cost).
- for ESPNet: ``weights``, ``input_size`` ([W, H], default [1024, 512]), ``resize_mode``,
  ``void`` (``exclude``: argmax over the 19 trainIds, default; ``ignore``: pixels predicted void
  are not counted), ``chunk``.
- for smp: ``encoder``, ``steps``, ``batch_size``, ``lr``, ``weight_decay``, ``hflip``,
  ``train_seed``, ``max_train_samples`` (see ``metrics.smp_training.SMPTrainProtocol``).
- ``class_average``: ``"present"`` (default: the means run over the classes present in the labels,
  or in the labels or the segmentation for IoU, as the fusion paper and Cityscapes do) or ``"all"``
  (every class, absent ones counting 0, as pix2pix's FCN-score); stamped on the protocol.

Keys: ``pixel_acc``, ``mean_class_acc``, ``mean_iou`` (higher is better), from the confusion
matrix of ``metrics.segmentation`` (ignore-index pixels of the labels are not counted).

Each batch's confusion matrix is cached under ``<cache_dir>/segmenter-score/`` by the content of what was
scored (the images' and labels' bytes) and the segmenter's protocol: the oracle row (the real photos, the same
in every run of a suite) is segmented once, and re-scoring a checkpoint costs no segmenter pass. A cache entry
that cannot be read is recomputed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from typing import Any

import torch

from bench.errors import MetricError
from bench.registry import METRICS
from metrics.base import ScoreContext, Scorer
from metrics.segmentation import class_average_option, class_average_protocol, confusion_matrix, scores
from metrics.segmenters import IGNORE, build_segmenter, check_segmenter, default_segmenter

log = logging.getLogger(__name__)
CACHE_FOLDER = "segmenter-score"


@METRICS.register("segmenter-score")
class SegmenterScorer(Scorer):
    """Segments generated photos and scores the segmentation against the batch's labels."""

    keys = ("pixel_acc", "mean_class_acc", "mean_iou")
    outputs = ("image",)
    higher_is_better = ("pixel_acc", "mean_class_acc", "mean_iou")
    ranges = {"pixel_acc": (0.0, 1.0), "mean_class_acc": (0.0, 1.0), "mean_iou": (0.0, 1.0)}

    def __init__(self, ctx: ScoreContext):
        super().__init__(ctx)
        if ctx.task.output not in self.outputs:
            raise MetricError(f"metric 'segmenter-score' scores generated photos; task '{ctx.task.name}' "
                              f"outputs '{ctx.task.output}': remove it from the suite's metrics")
        info = ctx.task.info
        if info.num_classes < 2:
            raise MetricError(f"metric 'segmenter-score' needs semantic labels; dataset '{info.name}' "
                              "has none: remove it from the suite's metrics")
        self.num_classes = info.num_classes
        self.ignore_index = info.ignore_index
        self.class_average = class_average_option(ctx.options, "segmenter-score")
        self.segmenter_name = str(ctx.options.get("segmenter") or default_segmenter(ctx))
        self.segmenter = build_segmenter(self.segmenter_name, ctx)
        if self.segmenter.num_classes != self.num_classes:
            raise MetricError(
                f"segmenter '{self.segmenter_name}' predicts {self.segmenter.num_classes} classes but "
                f"dataset '{info.name}' has {self.num_classes}; choose a segmenter trained on this dataset "
                "(e.g. segmenter = \"smp-fpn\")")
        self.cm: torch.Tensor | None = None
        self.num_images = 0

    def update(self, pred: torch.Tensor, batch: dict[str, torch.Tensor]) -> None:
        if "label" not in batch:
            raise MetricError("segmenter-score needs batch['label'] (class ids); the dataset gives "
                              f"{', '.join(sorted(batch))}")
        target = batch["label"]
        if pred.ndim != 4 or pred.shape[1] != 3:
            raise MetricError("segmenter-score expects generated RGB images (N, 3, H, W); "
                              f"got {tuple(pred.shape)}")
        path = self._cache_path(pred, target)
        cm = self._cached(path)
        if cm is None:
            cm = self._batch_confusion(pred, target)
            self._store(path, cm)
        self.cm = cm if self.cm is None else self.cm + cm.to(self.cm.device)
        self.num_images += len(pred)

    def _batch_confusion(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        labels = self.segmenter.predict(pred, size=tuple(target.shape[-2:]))
        target = target.to(labels.device)
        abstain = labels == IGNORE          # the segmenter declined (e.g. ESPNet void with void="ignore")
        if bool(abstain.any()):
            target = target.masked_fill(abstain, self.ignore_index)
            labels = labels.masked_fill(abstain, 0)
        return confusion_matrix(labels, target, self.num_classes, self.ignore_index).cpu()

    def _cache_path(self, pred: torch.Tensor, target: torch.Tensor):
        """Where this batch's confusion matrix is kept: a hash of the images, the labels and the protocol."""
        h = hashlib.sha256(json.dumps(self.segmenter.protocol(), sort_keys=True, default=str).encode())
        h.update(f"{self.num_classes}/{self.ignore_index}".encode())
        for t in (pred, target):
            c = t.detach().cpu().contiguous()
            h.update(f"{c.dtype}{tuple(c.shape)}".encode())
            h.update(c.numpy().tobytes())
        return self.ctx.cache_dir / CACHE_FOLDER / f"cm-{h.hexdigest()[:40]}.pt"

    def _cached(self, path) -> torch.Tensor | None:
        if not path.is_file():
            return None
        try:
            cm = torch.load(path, weights_only=True)
        except Exception as e:  # noqa: BLE001 - a damaged cache entry is recomputed, never trusted
            log.warning("segmenter-score cache entry %s unreadable (%s): recomputing", path.name, e)
            return None
        ok = isinstance(cm, torch.Tensor) and cm.shape == (self.num_classes, self.num_classes)
        return cm if ok else None

    def _store(self, path, cm: torch.Tensor) -> None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")      # two --jobs workers may store one entry
            torch.save(cm, tmp)
            tmp.replace(path)
        except OSError as e:                # a read-only cache costs speed, not the result
            log.warning("segmenter-score: cannot cache to %s (%s)", path.parent, e)

    def compute(self) -> dict[str, float]:
        if self.cm is None or int(self.cm.sum()) == 0:
            raise MetricError("segmenter-score: no labelled pixels were scored; check that the evaluation "
                              "split has labels other than the ignore index")
        s = scores(self.cm, self.class_average, self.ignore_index)
        return {k: s[k] for k in self.keys}

    @classmethod
    def preflight(cls, ctx: ScoreContext) -> None:
        """The options, and the scoring segmenter's inputs: the ESPNet weights file, or a labelled training split."""
        class_average_option(ctx.options, "segmenter-score")
        check_segmenter(str(ctx.options.get("segmenter") or default_segmenter(ctx)), ctx)

    def score_reference(self, batch: dict[str, torch.Tensor]) -> torch.Tensor | None:
        """The real photo: scoring it gives the oracle row (the segmenter on real images)."""
        return batch["photo"]

    def protocol(self) -> dict[str, Any]:
        return {
            "scorer": type(self).__name__,
            **self.segmenter.protocol(),
            "num_classes": self.num_classes,
            "ignore_index": self.ignore_index,
            **class_average_protocol(self.class_average, self.ignore_index, self.num_classes),
        }
