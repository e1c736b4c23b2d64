"""Task specs: what x and y are for a conditional model, and how outputs are decoded.

The trainer and scorer never branch on a method's name; they read the task. A task is
registered by name and bound to a dataset (``bind``), which fills in the number of classes,
the palette and the depth range.

Generator targets ``y`` always live in [-1, 1]:
- ``image``:  the photo itself.
- ``labels``: the colour label image (the fusion paper's 3-channel output), decoded to class
  ids by the nearest palette colour; or, with ``label_output="logits"``, C logits decoded by argmax.
- ``depth``:  depth / max_depth * 2 - 1, decoded back to metres.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from bench.data.base import DatasetInfo
from bench.errors import ConfigError
from bench.registry import TASKS


@dataclass(frozen=True)
class TaskSpec:
    name: str
    x_key: str
    y_key: str
    output: str                       # "image" | "labels" | "depth"
    x_channels: int
    y_channels: int
    default_metrics: tuple[str, ...]
    description: str = ""
    # filled in by bind():
    dataset: DatasetInfo | None = None
    label_output: str = "rgb"         # "rgb" | "logits" (labels tasks only)

    # -- binding ---------------------------------------------------------------------------
    def bind(self, info: DatasetInfo, label_output: str = "rgb") -> "TaskSpec":
        if self.name not in info.tasks:
            raise ConfigError(f"dataset '{info.name}' does not support task '{self.name}'; "
                              f"it supports: {', '.join(info.tasks)}")
        if label_output not in ("rgb", "logits"):
            raise ConfigError(f"label_output must be 'rgb' or 'logits', not '{label_output}'")
        t = replace(self, dataset=info, label_output=label_output)
        if self.output == "labels" and label_output == "logits":
            t = replace(t, y_channels=info.num_classes)
        if self.output == "depth" and not info.max_depth:
            raise ConfigError(f"dataset '{info.name}' gives no max_depth; it cannot serve a depth task")
        return t

    @property
    def info(self) -> DatasetInfo:
        if self.dataset is None:
            raise RuntimeError(f"task '{self.name}' is not bound to a dataset; call bind(info) first")
        return self.dataset

    # -- encoding ------------------------------------------------------------------------------
    def x(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return batch[self.x_key]

    def y(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The generator's target in [-1, 1]."""
        if self.output == "depth":
            d = batch["depth"].clamp(0, self.info.max_depth)
            return d / self.info.max_depth * 2 - 1
        if self.output == "labels" and self.label_output == "logits":
            lab = batch["label"]
            return torch.nn.functional.one_hot(
                lab.clamp(0, self.info.num_classes - 1), self.info.num_classes
            ).permute(0, 3, 1, 2).float() * 2 - 1
        return batch[self.y_key]

    # -- decoding ------------------------------------------------------------------------------
    def decode_labels(self, pred: torch.Tensor) -> torch.Tensor:
        """Generator output (N, C|3, H, W) -> class ids (N, H, W)."""
        if self.label_output == "logits":
            return pred.argmax(1)
        return rgb_to_labels(pred, self.info.palette_tensor().to(pred.device))

    def decode_depth(self, pred: torch.Tensor) -> torch.Tensor:
        """Generator output in [-1, 1] (N, 1, H, W) -> metres (N, 1, H, W)."""
        return (pred.float().clamp(-1, 1) + 1) / 2 * self.info.max_depth


def rgb_to_labels(img: torch.Tensor, palette: torch.Tensor) -> torch.Tensor:
    """Nearest palette colour. img (N, 3, H, W) in [-1, 1], palette (C, 3) in [-1, 1] -> (N, H, W) int64."""
    n, _, h, w = img.shape
    flat = img.float().permute(0, 2, 3, 1).reshape(-1, 3)
    d = torch.cdist(flat, palette.float())
    return d.argmin(1).reshape(n, h, w)


def labels_to_rgb(labels: torch.Tensor, palette: torch.Tensor, ignore_index: int = 255) -> torch.Tensor:
    """(N, H, W) class ids -> (N, 3, H, W) colour image in [-1, 1]; ignored pixels are black."""
    pal = torch.cat([palette.float(), torch.full((1, 3), -1.0, device=palette.device)])
    idx = labels.clone()
    idx[(idx < 0) | (idx >= len(palette))] = len(palette)
    return pal[idx].permute(0, 3, 1, 2).contiguous()


TASKS.register("labels2photo", TaskSpec(
    "labels2photo", x_key="label_rgb", y_key="photo", output="image", x_channels=3, y_channels=3,
    default_metrics=("reconstruction", "segmenter-score"),
    description="colour label map -> photo (scored by segmenting the generated photo)"))
TASKS.register("photo2labels", TaskSpec(
    "photo2labels", x_key="photo", y_key="label_rgb", output="labels", x_channels=3, y_channels=3,
    default_metrics=("segmentation",),
    description="photo -> semantic labels (colour map or logits)"))
TASKS.register("photo2depth", TaskSpec(
    "photo2depth", x_key="photo", y_key="depth", output="depth", x_channels=3, y_channels=1,
    default_metrics=("depth",),
    description="photo -> depth in metres"))
TASKS.register("nrds", TaskSpec(
    "nrds", x_key="points", y_key="points", output="points", x_channels=2, y_channels=2,
    default_metrics=(),
    description="sample sets scored jointly by NRDS (no conditional model; run by the nrds-toy runner)"))
