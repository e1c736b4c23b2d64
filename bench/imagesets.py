"""Image sets for ``bench score --gen PATH --real PATH``: a folder of images, an array file, or a dataset split.

Every source becomes a uint8 tensor (N, C, H, W) with C = 1 or 3, plus a description that goes into the score's
protocol (what it was, how many images, the sha256 of their bytes):

- a folder: its image files (png, jpg, jpeg, bmp, webp; not its subfolders), in name order; all of one size;
  grey files stay one channel, the rest are read as RGB;
- ``.npy`` / ``.npz`` (the array ``images``, else the only one) / ``.pt``: (N, H, W), (N, H, W, C) or
  (N, C, H, W), uint8 as it is, floats in [0, 1] or, where any value is negative, [-1, 1];
- ``dataset:NAME:SPLIT[:FIELD]``: a registered dataset's split at ``size`` (its ``image`` field, else
  ``photo``, else FIELD), as the suites read it.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.errors import ConfigError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")


def _to_u8(x: torch.Tensor, where: str) -> tuple[torch.Tensor, str]:
    """(N, H, W[, C]) or (N, C, H, W) uint8 / float -> uint8 (N, C, H, W) and the value range read."""
    if x.dim() == 3:
        x = x.unsqueeze(1)
    if x.dim() != 4:
        raise ConfigError(f"{where}: an image array is (N, H, W), (N, H, W, C) or (N, C, H, W); got {tuple(x.shape)}")
    if x.shape[1] not in (1, 3) and x.shape[-1] in (1, 3):
        x = x.permute(0, 3, 1, 2)
    if x.shape[1] not in (1, 3):
        raise ConfigError(f"{where}: images have 1 or 3 channels; got shape {tuple(x.shape)}")
    if x.dtype == torch.uint8:
        return x.contiguous(), "uint8"
    if not x.is_floating_point():
        raise ConfigError(f"{where}: images are uint8 or floats, not {x.dtype}")
    x = x.float()
    if not torch.isfinite(x).all():
        raise ConfigError(f"{where}: the array holds NaN or infinite values")
    lo, span = (-1.0, 2.0) if float(x.min()) < 0 else (0.0, 1.0)
    if float(x.min()) < lo - 1e-6 or float(x.max()) > lo + span + 1e-6:
        raise ConfigError(f"{where}: float images must lie in [0, 1] or [-1, 1]; these span "
                          f"[{float(x.min()):.3g}, {float(x.max()):.3g}]")
    u8 = ((x - lo) / span * 255).round().clamp(0, 255).to(torch.uint8)
    return u8.contiguous(), f"[{lo:g}, {lo + span:g}]"


def _folder(path: Path) -> tuple[torch.Tensor, str]:
    from PIL import Image
    files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise ConfigError(f"{path} holds no image files ({', '.join(IMAGE_SUFFIXES)}); give a folder of images, "
                          "an .npz / .npy / .pt array or dataset:NAME:SPLIT")
    arrays = []
    for f in files:
        with Image.open(f) as im:
            arrays.append(np.asarray(im.convert("L" if im.mode in ("L", "I;16", "1") else "RGB")))
    shapes = {a.shape for a in arrays}
    if len(shapes) > 1:
        a, b = sorted(shapes)[:2]
        raise ConfigError(f"{path}: the images differ in size ({a} and {b}, ...); resize them to one size first")
    if len({a.ndim for a in arrays}) > 1:
        raise ConfigError(f"{path}: some images are grey and some colour; convert them to one kind first")
    return _to_u8(torch.from_numpy(np.stack(arrays)), str(path))[0], "uint8 files"


def _array(path: Path) -> tuple[torch.Tensor, str]:
    try:
        if path.suffix == ".pt":
            x = torch.load(path, map_location="cpu", weights_only=True)
        elif path.suffix == ".npz":
            with np.load(path) as z:
                keys = list(z.keys())
                key = "images" if "images" in keys else keys[0] if len(keys) == 1 else None
                if key is None:
                    raise ConfigError(f"{path} holds arrays {', '.join(keys)}; name the images 'images'")
                x = torch.from_numpy(z[key])
        else:
            x = torch.from_numpy(np.load(path))
    except ConfigError:
        raise
    except Exception as e:  # noqa: BLE001 - whatever the file is, the answer is one line
        raise ConfigError(f"cannot read {path} as an image array ({type(e).__name__}: {str(e)[:120]})") from None
    if not isinstance(x, torch.Tensor):
        raise ConfigError(f"{path} holds a {type(x).__name__}, not one tensor of images")
    return _to_u8(x, str(path))


def _dataset(spec: str, size: int) -> tuple[torch.Tensor, str]:
    from bench.registry import DATASETS
    parts = spec.split(":")
    if len(parts) not in (3, 4) or not parts[1] or not parts[2]:
        raise ConfigError(f"{spec!r}: write a dataset source as dataset:NAME:SPLIT[:FIELD], e.g. dataset:mnist:test")
    name, split = parts[1], parts[2]
    data = DATASETS.get(name)(split, size, root=None, subset=None, seed=0)
    first = data[0]
    field = parts[3] if len(parts) == 4 else next((k for k in ("image", "photo") if k in first), None)
    if field is None or field not in first:
        images = [k for k, v in first.items() if isinstance(v, torch.Tensor) and v.dim() == 3]
        raise ConfigError(f"{spec!r}: dataset '{name}' has no image field "
                          f"{field!r}; its image fields: {', '.join(images)} (dataset:{name}:{split}:FIELD)")
    x = torch.stack([data[i][field] for i in range(len(data))])
    return _to_u8(x, spec)[0], "[-1, 1] (the bench's dataset)"


def load_images(src: str, *, size: int = 64) -> tuple[torch.Tensor, dict[str, Any]]:
    """The images of ``src`` as uint8 (N, C, H, W) and their description for the protocol."""
    if src.startswith("dataset:"):
        x, read = _dataset(src, size)
        kind = "dataset"
    else:
        path = Path(src)
        if not path.exists():
            raise ConfigError(f"{src} not found; give a folder of images, an .npz / .npy / .pt array or "
                              "dataset:NAME:SPLIT")
        if path.is_dir():
            x, read, kind = *_folder(path), "folder"
        elif path.suffix in (".npy", ".npz", ".pt"):
            x, read, kind = *_array(path), "array"
        else:
            raise ConfigError(f"{src}: not a folder, an .npz / .npy / .pt array or dataset:NAME:SPLIT")
    if len(x) < 2:
        raise ConfigError(f"{src} holds {len(x)} image(s); scoring a set needs at least 2")
    digest = hashlib.sha256(x.numpy().tobytes() + repr(tuple(x.shape)).encode()).hexdigest()
    return x, {"source": src if kind == "dataset" else Path(src).name, "kind": kind, "count": len(x),
               "shape": list(x.shape[1:]), "values": read, "sha256": digest}
