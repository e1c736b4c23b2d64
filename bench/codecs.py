"""Encoding and decoding of task fields, one place per field kind.

A task field (``bench.tasks.Field``) has a kind; this module turns the dataset's batch entry into
what a model sees (``encode``) and a model's output back into the field's own units (``decode_*``).

=========  =======================================  =================================================
kind       model space                              batch entry (``bench.data.base``)
=========  =======================================  =================================================
image      float (N, C, H, W) in [-1, 1]            the same
labels     colour map (N, 3, H, W) in [-1, 1], or    ``label_rgb`` colour image / ``label`` class ids
           one-hot (N, C, H, W) in {-1, 1} (logits)
depth      float (N, 1, H, W) in [-1, 1]            metres, ``depth / max_depth * 2 - 1``
class      int64 (N,)                                class ids, or derived (``other:KEY``: a class other
                                                    than ``batch[KEY]``, fixed by the sample index)
mask       float (N, 1, H, W), 1 = the region       the batch key, or derived (``center:F``,
                                                    ``box:F`` at a place fixed by the sample index)
points     float (N, D)                              the same
noise      drawn by the method (never from data)     -
=========  =======================================  =================================================
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from bench.contracts import derive_seed
from bench.errors import ConfigError, DataError

if TYPE_CHECKING:  # pragma: no cover
    from bench.data.base import DatasetInfo
    from bench.tasks import Field

KINDS = ("image", "labels", "depth", "class", "mask", "points", "noise")
LABEL_IDS_KEY = "label"


def mask_spec(derive: str) -> tuple[str, float]:
    """Parse a derived-mask spec ``"center:0.5"`` / ``"box:0.25"`` -> (shape, side fraction)."""
    shape, _, frac = derive.partition(":")
    try:
        f = float(frac)
    except ValueError:
        f = -1.0
    if shape not in ("center", "box") or not 0 < f < 1:
        raise ConfigError(f"mask derive '{derive}' must be 'center:F' or 'box:F' with 0 < F < 1")
    return shape, f


def derived_mask(derive: str, index: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(N, 1, H, W) masks: a centred square, or a square at a place fixed by each sample's index."""
    shape, frac = mask_spec(derive)
    h, w = max(1, round(height * frac)), max(1, round(width * frac))
    out = torch.zeros(len(index), 1, height, width)
    for i, idx in enumerate(index.reshape(-1).tolist()):
        if shape == "center":
            top, left = (height - h) // 2, (width - w) // 2
        else:
            g = torch.Generator().manual_seed(derive_seed("mask", derive, int(idx)))
            top = int(torch.randint(0, height - h + 1, (1,), generator=g))
            left = int(torch.randint(0, width - w + 1, (1,), generator=g))
        out[i, :, top:top + h, left:left + w] = 1.0
    return out


CLASS_DERIVES = ("other",)


def class_spec(derive: str) -> str:
    """Parse a derived-class spec ``"other:label"`` -> the batch key of the class it must differ from."""
    kind, _, key = derive.partition(":")
    if kind not in CLASS_DERIVES or not key:
        raise ConfigError(f"class derive '{derive}' must be 'other:KEY' (a class other than batch[KEY], e.g. "
                          "'other:label')")
    return key


def derived_class(derive: str, index: torch.Tensor, source: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(N,) int64: for each sample a class other than its ``source`` class, drawn uniformly from the other
    ``num_classes - 1`` by a generator seeded from (the spec, the sample's index), so a test sample asks for the
    same class in every run (StarGAN's target domain of a test image)."""
    class_spec(derive)
    if num_classes < 2:
        raise ConfigError(f"a derived class '{derive}' needs at least 2 classes, the dataset has {num_classes}")
    out = torch.empty(len(index), dtype=torch.long)
    for i, (idx, src) in enumerate(zip(index.reshape(-1).tolist(), source.reshape(-1).tolist())):
        g = torch.Generator().manual_seed(derive_seed("class", derive, int(idx)))
        shift = 1 + int(torch.randint(0, num_classes - 1, (1,), generator=g))
        out[i] = (int(src) + shift) % num_classes
    return out


def _spatial(batch: dict[str, torch.Tensor]) -> tuple[int, int, torch.device]:
    for v in batch.values():
        if isinstance(v, torch.Tensor) and v.dim() == 4:
            return v.shape[-2], v.shape[-1], v.device
    raise DataError("a derived mask needs an image in the batch to take its size from")


def encode(f: "Field", batch: dict[str, torch.Tensor], info: "DatasetInfo | None", label_output: str = "rgb"
           ) -> torch.Tensor:
    """The model-space value of field ``f`` for ``batch``."""
    if f.kind == "noise":
        raise ConfigError("a noise field is drawn by the method, not read from data")
    if f.kind == "mask" and f.derive and f.key not in batch:
        h, w, dev = _spatial(batch)
        if "index" not in batch:
            raise DataError("a derived mask needs batch['index'] (the sample's position in its split)")
        return derived_mask(f.derive, batch["index"].cpu(), h, w).to(dev)
    if f.kind == "class" and f.derive and f.key not in batch:
        key = class_spec(f.derive)
        if "index" not in batch or key not in batch:
            raise DataError(f"a derived class '{f.derive}' needs batch['index'] and batch['{key}']")
        if info is None:
            raise RuntimeError("a derived class field needs the task bound to a dataset (its number of classes)")
        src = batch[key]
        return derived_class(f.derive, batch["index"].cpu(), src.cpu(), info.num_classes).to(src.device)
    if f.kind == "labels" and label_output == "logits":
        if info is None:
            raise RuntimeError("a labels field in logits form needs the task bound to a dataset")
        lab = batch[LABEL_IDS_KEY]
        return torch.nn.functional.one_hot(
            lab.clamp(0, info.num_classes - 1), info.num_classes).permute(0, 3, 1, 2).float() * 2 - 1
    if f.key not in batch:
        raise DataError(f"the batch has no '{f.key}' (it has: {', '.join(sorted(batch))})")
    v = batch[f.key]
    if f.kind == "depth":
        if info is None or not info.max_depth:
            raise RuntimeError("a depth field needs the task bound to a dataset with max_depth")
        return v.clamp(0, info.max_depth) / info.max_depth * 2 - 1
    if f.kind == "class":
        return v.long().reshape(-1)
    if f.kind == "mask":
        return v.float()
    return v


def decode_labels(pred: torch.Tensor, info: "DatasetInfo", label_output: str = "rgb") -> torch.Tensor:
    """Model output (N, C|3, H, W) -> class ids (N, H, W)."""
    if label_output == "logits":
        return pred.argmax(1)
    return rgb_to_labels(pred, info.palette_tensor().to(pred.device))


def decode_depth(pred: torch.Tensor, info: "DatasetInfo") -> torch.Tensor:
    """Model output in [-1, 1] (N, 1, H, W) -> metres (N, 1, H, W)."""
    return (pred.float().clamp(-1, 1) + 1) / 2 * info.max_depth


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
