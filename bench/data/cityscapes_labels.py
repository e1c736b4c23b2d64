"""The official Cityscapes label table, and conversions between its three encodings.

Cityscapes ships ground truth as ``labelIds`` (34 ids, 0..33, plus -1 for licence plates), trains and
scores on 19 ``trainIds`` (0..18; everything else 255 = ignore), and publishes a colour for each label
(the ``*_gtFine_color.png`` images, and the right half of pix2pix's ``cityscapes`` JPEGs).

The table follows the dataset's own definition (Cordts et al., CVPR 2016; the ``labels.py`` of the
official cityscapesScripts): name, id, trainId, category, colour.

Conversions:
- :func:`label_ids_to_train_ids`: a 256-entry lookup table, ids outside the table map to 255.
- :func:`colors_to_train_ids`: colour image -> trainIds by the nearest colour of the *full* table
  (void colours included, so a parking lot is not mistaken for a road), within a tolerance, which
  absorbs JPEG noise and resampling blur; pixels farther than the tolerance from every colour -> 255.
- :func:`train_ids_to_colors`: trainIds -> the 19 palette colours (ignore -> black).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

IGNORE_INDEX = 255


@dataclass(frozen=True)
class CityscapesLabel:
    name: str
    id: int
    train_id: int            # 0..18, or 255 (ignored in training and evaluation)
    category: str
    color: tuple[int, int, int]


LABELS: tuple[CityscapesLabel, ...] = (
    CityscapesLabel("unlabeled", 0, 255, "void", (0, 0, 0)),
    CityscapesLabel("ego vehicle", 1, 255, "void", (0, 0, 0)),
    CityscapesLabel("rectification border", 2, 255, "void", (0, 0, 0)),
    CityscapesLabel("out of roi", 3, 255, "void", (0, 0, 0)),
    CityscapesLabel("static", 4, 255, "void", (0, 0, 0)),
    CityscapesLabel("dynamic", 5, 255, "void", (111, 74, 0)),
    CityscapesLabel("ground", 6, 255, "void", (81, 0, 81)),
    CityscapesLabel("road", 7, 0, "flat", (128, 64, 128)),
    CityscapesLabel("sidewalk", 8, 1, "flat", (244, 35, 232)),
    CityscapesLabel("parking", 9, 255, "flat", (250, 170, 160)),
    CityscapesLabel("rail track", 10, 255, "flat", (230, 150, 140)),
    CityscapesLabel("building", 11, 2, "construction", (70, 70, 70)),
    CityscapesLabel("wall", 12, 3, "construction", (102, 102, 156)),
    CityscapesLabel("fence", 13, 4, "construction", (190, 153, 153)),
    CityscapesLabel("guard rail", 14, 255, "construction", (180, 165, 180)),
    CityscapesLabel("bridge", 15, 255, "construction", (150, 100, 100)),
    CityscapesLabel("tunnel", 16, 255, "construction", (150, 120, 90)),
    CityscapesLabel("pole", 17, 5, "object", (153, 153, 153)),
    CityscapesLabel("polegroup", 18, 255, "object", (153, 153, 153)),
    CityscapesLabel("traffic light", 19, 6, "object", (250, 170, 30)),
    CityscapesLabel("traffic sign", 20, 7, "object", (220, 220, 0)),
    CityscapesLabel("vegetation", 21, 8, "nature", (107, 142, 35)),
    CityscapesLabel("terrain", 22, 9, "nature", (152, 251, 152)),
    CityscapesLabel("sky", 23, 10, "sky", (70, 130, 180)),
    CityscapesLabel("person", 24, 11, "human", (220, 20, 60)),
    CityscapesLabel("rider", 25, 12, "human", (255, 0, 0)),
    CityscapesLabel("car", 26, 13, "vehicle", (0, 0, 142)),
    CityscapesLabel("truck", 27, 14, "vehicle", (0, 0, 70)),
    CityscapesLabel("bus", 28, 15, "vehicle", (0, 60, 100)),
    CityscapesLabel("caravan", 29, 255, "vehicle", (0, 0, 90)),
    CityscapesLabel("trailer", 30, 255, "vehicle", (0, 0, 110)),
    CityscapesLabel("train", 31, 16, "vehicle", (0, 80, 100)),
    CityscapesLabel("motorcycle", 32, 17, "vehicle", (0, 0, 230)),
    CityscapesLabel("bicycle", 33, 18, "vehicle", (119, 11, 32)),
    CityscapesLabel("license plate", -1, 255, "vehicle", (0, 0, 142)),
)

NUM_CLASSES = 19
TRAIN_LABELS: tuple[CityscapesLabel, ...] = tuple(
    sorted((lab for lab in LABELS if lab.train_id != IGNORE_INDEX), key=lambda lab: lab.train_id))
CLASS_NAMES: tuple[str, ...] = tuple(lab.name for lab in TRAIN_LABELS)
PALETTE: tuple[tuple[int, int, int], ...] = tuple(lab.color for lab in TRAIN_LABELS)

# Default colour tolerance: Euclidean RGB distance (0..255 scale) to the nearest table colour.
# JPEG noise on the pix2pix label halves is mostly below 20; blended boundary pixels lie farther.
DEFAULT_TOLERANCE = 40.0


def _id_lut() -> np.ndarray:
    lut = np.full(256, IGNORE_INDEX, dtype=np.uint8)
    for lab in LABELS:
        if 0 <= lab.id < 256:
            lut[lab.id] = lab.train_id
    return lut


ID_TO_TRAIN_ID: np.ndarray = _id_lut()
ID_TO_TRAIN_ID.setflags(write=False)


def _colour_table() -> tuple[np.ndarray, np.ndarray]:
    """Distinct colours of the full table and the trainId each one decodes to.

    Where labels share a colour, a trained class wins (pole over polegroup, car over licence plate).
    """
    best: dict[tuple[int, int, int], int] = {}
    for lab in LABELS:
        prev = best.get(lab.color)
        if prev is None or (prev == IGNORE_INDEX and lab.train_id != IGNORE_INDEX):
            best[lab.color] = lab.train_id
    colours = np.array(list(best.keys()), dtype=np.float32)
    train_ids = np.array(list(best.values()), dtype=np.int64)
    return colours, train_ids


_COLOURS, _COLOUR_TRAIN_IDS = _colour_table()
_COLOURS_SQ = (_COLOURS * _COLOURS).sum(1)[None, :]


def label_ids_to_train_ids(ids: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
    """Official labelIds (any integer array) -> trainIds (uint8 / int64 tensor), 255 for the rest."""
    if isinstance(ids, torch.Tensor):
        lut = torch.from_numpy(ID_TO_TRAIN_ID.astype(np.int64)).to(ids.device)
        idx = ids.long()
        out = torch.full_like(idx, IGNORE_INDEX)
        ok = (idx >= 0) & (idx < 256)
        out[ok] = lut[idx[ok]]
        return out
    arr = np.asarray(ids)
    if arr.dtype == np.uint8:
        return ID_TO_TRAIN_ID[arr]
    out = np.full(arr.shape, IGNORE_INDEX, dtype=np.uint8)
    ok = (arr >= 0) & (arr < 256)
    out[ok] = ID_TO_TRAIN_ID[arr[ok].astype(np.int64)]
    return out


def nearest_color(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(H, W, 3) uint8 -> (trainId of the nearest table colour (H, W) uint8, its distance (H, W) float32).

    Distances are Euclidean in 0..255 RGB, computed exactly (integer-valued float32 arithmetic).
    """
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) colour image, got shape {rgb.shape}")
    x = rgb.reshape(-1, 3).astype(np.float32)
    d2 = (x * x).sum(1, keepdims=True) - 2.0 * (x @ _COLOURS.T) + _COLOURS_SQ
    idx = d2.argmin(1)
    dist = np.sqrt(np.maximum(np.take_along_axis(d2, idx[:, None], 1)[:, 0], 0.0))
    h, w = rgb.shape[:2]
    return _COLOUR_TRAIN_IDS[idx].astype(np.uint8).reshape(h, w), dist.reshape(h, w)


def colors_to_train_ids(rgb: np.ndarray, tolerance: float = DEFAULT_TOLERANCE) -> np.ndarray:
    """Colour label image (H, W, 3) uint8 -> trainIds (H, W) uint8.

    Each pixel takes the trainId of the nearest colour of the full label table; pixels farther than
    ``tolerance`` (Euclidean, 0..255 RGB) from every colour become 255. ``tolerance=inf`` keeps all.
    """
    ids, dist = nearest_color(rgb)
    ids[dist > tolerance] = IGNORE_INDEX
    return ids


def train_ids_to_colors(train_ids: np.ndarray) -> np.ndarray:
    """trainIds (H, W) -> colour image (H, W, 3) uint8 in the 19-class palette; ignored pixels black."""
    pal = np.zeros((256, 3), dtype=np.uint8)
    pal[:NUM_CLASSES] = np.array(PALETTE, dtype=np.uint8)
    arr = np.asarray(train_ids)
    arr = np.where((arr >= 0) & (arr < 256), arr, IGNORE_INDEX).astype(np.int64)
    return pal[arr]
