"""Scoring segmenters: the networks that segment generated photos for the segmenter score.

Two kinds, registered by name in :data:`SEGMENTERS` (a builder each, called with a
:class:`~metrics.base.ScoreContext`):

- ``espnet-cityscapes``: the pretrained Cityscapes ESPNet (``metrics.espnet``), 19 trainIds.
  Its 20th output (void) is never a prediction by default (``void="exclude"``: argmax over the 19
  trainIds), so a generator cannot earn a score by producing images the segmenter calls void;
  ``void="ignore"`` instead leaves pixels predicted void out of the count.
- ``smp-pspnet`` (the default outside Cityscapes) / ``smp-fpn``: a segmentation-models-pytorch
  model (random init, no download) that the bench trains on the real training photos + labels of
  the dataset being scored (:mod:`metrics.smp_training`), cached under the cache folder by content
  hash of the training samples and the training protocol.

Every segmenter maps bench images (N, 3, H, W), RGB in [-1, 1], to class ids (N, H, W) at the
requested size (default: the input's), and describes itself in ``protocol()``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from bench.errors import ConfigError, MetricError
from bench.provenance import file_sha256
from bench.registry import Registry
from metrics.base import ScoreContext
from metrics.espnet import (NUM_OUTPUTS, VOID_OUTPUT, ESPNet, ESPNetInput, default_weights_path,
                            load_pretrained_espnet, preprocess)
from metrics.segmenter_base import IGNORE, ScoringSegmenter, resize_logits
from metrics.smp_training import SMPSegmenter, SMPTrainProtocol, train_or_load

__all__ = ["IGNORE", "SEGMENTERS", "ScoringSegmenter", "ESPNetSegmenter", "SMPSegmenter", "build_segmenter",
           "default_segmenter"]

log = logging.getLogger(__name__)

SEGMENTERS = Registry("scoring segmenter")
VOID_POLICIES = ("exclude", "ignore")


@dataclass
class ESPNetSegmenter(ScoringSegmenter):
    """The pretrained Cityscapes ESPNet as a scoring segmenter (19 Cityscapes trainIds)."""

    model: ESPNet
    weights_sha256: str
    spec: ESPNetInput = field(default_factory=ESPNetInput)
    void: str = "exclude"
    chunk: int = 4                   # images per forward pass (bounds memory at 1024x512)
    name: str = "espnet-cityscapes"
    num_classes: int = NUM_OUTPUTS - 1

    def __post_init__(self) -> None:
        if self.void not in VOID_POLICIES:
            raise ConfigError(f"segmenter-score: void must be one of {', '.join(VOID_POLICIES)}, "
                              f"not '{self.void}'")
        if self.chunk < 1:
            raise ConfigError(f"segmenter-score: chunk must be a positive integer, not {self.chunk}")
        self.model.eval()

    def to(self, device: torch.device | str) -> "ESPNetSegmenter":
        self.model.to(device)
        return self

    @torch.no_grad()
    def logits(self, images: torch.Tensor) -> torch.Tensor:
        """(N, 20, h, w) logits at the ESPNet input size (``spec.size``)."""
        dev = next(self.model.parameters()).device
        return torch.cat([self.model(preprocess(images[i:i + self.chunk].to(dev), self.spec))
                          for i in range(0, len(images), self.chunk)])

    @torch.no_grad()
    def predict(self, images: torch.Tensor, size: tuple[int, int] | None = None) -> torch.Tensor:
        size = tuple(size) if size is not None else tuple(images.shape[-2:])
        out = []
        for i in range(0, len(images), self.chunk):
            lg = resize_logits(self.logits(images[i:i + self.chunk]), size)
            if self.void == "exclude":
                out.append(lg[:, :VOID_OUTPUT].argmax(1))
            else:
                p = lg.argmax(1)
                out.append(p.masked_fill(p == VOID_OUTPUT, IGNORE))
        return torch.cat(out)

    def protocol(self) -> dict[str, Any]:
        return {"segmenter": self.name, "architecture": "ESPNet p=2 q=8 (Mehta et al. 2018)",
                "weights_sha256": self.weights_sha256, "num_classes": self.num_classes,
                **self.spec.describe(),
                "output_resize": "bilinear logits to the label size, align_corners=False",
                "void_output": self.void}


# -- builders --------------------------------------------------------------------------------------

RESIZE_MODES = ("bilinear", "bicubic", "nearest", "area")


def _input_size(value: Any) -> tuple[int, int]:
    ok = (isinstance(value, (list, tuple)) and len(value) == 2
          and all(isinstance(s, int) and not isinstance(s, bool) and s > 0 and s % 8 == 0 for s in value))
    if not ok:
        raise ConfigError("segmenter-score: input_size must be [width, height], positive multiples of 8; "
                          f"got {value!r}")
    return int(value[0]), int(value[1])


def build_espnet(ctx: ScoreContext) -> ESPNetSegmenter:
    """``espnet-cityscapes``. Options: ``weights`` (path), ``input_size`` ([W, H], default
    [1024, 512]), ``resize_mode`` (default bilinear), ``void`` (exclude | ignore), ``chunk``."""
    opts = ctx.options
    path = opts.get("weights") or default_weights_path()
    size = _input_size(opts.get("input_size", list(ESPNetInput().size)))
    mode = str(opts.get("resize_mode", "bilinear"))
    if mode not in RESIZE_MODES:
        raise ConfigError(f"segmenter-score: resize_mode must be one of {', '.join(RESIZE_MODES)}, "
                          f"not '{mode}'")
    model = load_pretrained_espnet(path)
    seg = ESPNetSegmenter(model, file_sha256(path), ESPNetInput(size, mode),
                          void=str(opts.get("void", "exclude")), chunk=int(opts.get("chunk", 4)))
    return seg.to(ctx.device)


def _smp_builder(arch: str):
    def build(ctx: ScoreContext) -> SMPSegmenter:
        if ctx.train_data is None:
            raise MetricError(f"segmenter 'smp-{arch}' is trained on the dataset's real training split, "
                              "but the scoring context gives no train_data; score with a dataset loader")
        proto = SMPTrainProtocol.from_options(arch, ctx.options)
        seg = train_or_load(ctx.train_data(), proto, ctx.cache_dir / "segmenters")   # trained on the CPU
        return seg.to(ctx.device)
    build.__name__ = f"build_smp_{arch}"
    return build


SEGMENTERS.register("espnet-cityscapes", build_espnet, origin=__name__)
SEGMENTERS.register("smp-fpn", _smp_builder("fpn"), origin=__name__)
SEGMENTERS.register("smp-pspnet", _smp_builder("pspnet"), origin=__name__)


def default_segmenter(ctx: ScoreContext) -> str:
    """The pretrained ESPNet for Cityscapes; else a PSPNet the bench trains on the dataset.

    PSPNet rather than FPN by default: it is the fusion paper's kind of segmenter, and with the
    default protocol it costs about a third of FPN's CPU time per step (0.19 s vs 0.62 s, batch 8 at
    64x64, one core) for nearly the same accuracy on synthetic scenes (see ``metrics.smp_training``).
    """
    return "espnet-cityscapes" if ctx.task.info.name == "cityscapes" else "smp-pspnet"


def check_segmenter(name: str, ctx: ScoreContext) -> None:
    """Cheap checks that segmenter ``name`` can be built for ``ctx`` (run before any training)."""
    if name not in SEGMENTERS:
        raise ConfigError(f"unknown segmenter '{name}'; choose one of: {', '.join(SEGMENTERS.names())}")
    if name == "espnet-cityscapes":
        path = ctx.options.get("weights") or default_weights_path()
        if not Path(path).is_file():
            raise MetricError(f"ESPNet weights not found at {path}; put espnet_p_2_q_8.pth there, or set "
                              "BENCH_DATA_ROOT to the folder holding espnet_cityscapes/ (or [metric_options."
                              "segmenter-score] weights)")
    elif ctx.train_data is None:
        raise MetricError(f"segmenter '{name}' is trained on the dataset's training split, which this "
                          "scoring context does not give")
    else:
        # Imported here, before any training: a missing library is said now, and the command's run workers,
        # forked from it, inherit the import (0.7 s each, timm's model zoo, where each run would pay it again).
        try:
            import segmentation_models_pytorch  # noqa: F401
        except ImportError as e:
            raise MetricError(f"segmenter '{name}' needs segmentation-models-pytorch ({e}); "
                              "pip install segmentation-models-pytorch") from e


def build_segmenter(name: str, ctx: ScoreContext) -> ScoringSegmenter:
    """Build the scoring segmenter ``name`` (see :data:`SEGMENTERS`) for ``ctx``."""
    if name not in SEGMENTERS:
        raise ConfigError(f"unknown segmenter '{name}'; choose one of: {', '.join(SEGMENTERS.names())}")
    return SEGMENTERS.get(name)(ctx)
