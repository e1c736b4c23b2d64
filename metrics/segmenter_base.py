"""The scoring-segmenter interface shared by the segmenters the bench uses (``metrics.segmenters``)."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

IGNORE = 255                      # "the segmenter abstains" in predicted class ids


class ScoringSegmenter:
    """Interface: ``predict(images, size) -> (N, H, W) int64`` class ids (``IGNORE`` = abstain)."""

    name: str
    num_classes: int

    def predict(self, images: torch.Tensor, size: tuple[int, int] | None = None) -> torch.Tensor:
        raise NotImplementedError

    def protocol(self) -> dict[str, Any]:
        raise NotImplementedError

    def to(self, device: torch.device | str) -> "ScoringSegmenter":
        raise NotImplementedError


def resize_logits(logits: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    if tuple(logits.shape[-2:]) == tuple(size):
        return logits
    return F.interpolate(logits, size=size, mode="bilinear", align_corners=False)
