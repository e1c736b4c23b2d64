"""The dataset contract every loader (real or procedural) follows.

A dataset factory is registered in ``bench.registry.DATASETS`` and called as::

    factory(split: str, size: int, *, root: Path | None, subset: int | None, seed: int, **options)
        -> PairedDataset

``split`` is ``"train"`` or ``"test"`` (loaders map it to the dataset's own names, e.g. Cityscapes
``val``). ``size`` is the square side the samples come out at (the trainer asks for the jitter
load size for training, e.g. 286, and crops itself). ``subset`` keeps the first N samples (None = all).
``root`` is the dataset folder (``bench.data.paths.data_root()`` resolves the default).

Each sample is a dict of tensors (any subset of these keys, as the dataset provides):

=============  ===================  =========================================================
key            dtype / shape        meaning
=============  ===================  =========================================================
``photo``      float32 (3, H, W)    RGB photo in [-1, 1]
``label``      int64 (H, W)         class ids 0..C-1, ``info.ignore_index`` for void pixels
``label_rgb``  float32 (3, H, W)    colour label image in [-1, 1] (palette colours)
``depth``      float32 (1, H, W)    depth in metres; 0 where invalid
``valid``      bool (1, H, W)       where the depth is valid (sensor datasets)
``index``      int64 ()             position of the sample in the split
``points``     float32 (D,)         a point (sample sets of the NRDS toy)
=============  ===================  =========================================================

``info.provides`` lists the keys a dataset's samples hold; a task binds to a dataset when the
dataset provides every key the task requires (``TaskSpec.requires()``).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import torch

from bench.errors import DataError


@dataclass(frozen=True)
class DatasetInfo:
    """Static facts about a dataset that tasks, metrics and leaderboards need."""

    name: str
    tasks: tuple[str, ...]
    num_classes: int = 0
    ignore_index: int = 255
    class_names: tuple[str, ...] = ()
    palette: tuple[tuple[int, int, int], ...] = ()   # RGB 0..255 per class id
    max_depth: float | None = None                   # metres; depth targets are scaled by it
    min_depth: float = 1e-3
    description: str = ""
    source: str = ""                                  # where the data comes from / its terms
    provides: tuple[str, ...] = ()                    # the batch keys every sample holds (task binding)
    extra: dict = field(default_factory=dict)

    def palette_tensor(self) -> torch.Tensor:
        """(C, 3) float32 palette in [-1, 1]."""
        return torch.tensor(self.palette, dtype=torch.float32) / 127.5 - 1.0


class PairedDataset(torch.utils.data.Dataset):
    """Base class: ``info`` plus ``__len__`` / ``__getitem__`` returning the dict described above."""

    info: DatasetInfo

    def __len__(self) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:  # pragma: no cover - abstract
        raise NotImplementedError


@contextlib.contextmanager
def reading(path: Path, dataset: str) -> Iterator[None]:
    """Turn a failure to read or decode ``path`` (a zero-byte or truncated image, a bad file) into a
    one-line ``DataError`` naming the file and what to do."""
    try:
        yield
    except DataError:
        raise
    except (OSError, ValueError, SyntaxError, EOFError) as e:
        first = (str(e).strip().splitlines() or [""])[0][:200]
        raise DataError(f"cannot read {path} ({type(e).__name__}: {first}); replace the file (download it "
                        f"again) or run `bench data check {dataset}`") from None


def side_by_side_problem(w: int, h: int) -> str | None:
    """Why a ``w`` x ``h`` image is not a pix2pix side-by-side pair (two square halves, e.g. 512x256: photo left,
    label map right), or None: a single 256x256 photo cut in two is not a sample (facades, Cityscapes)."""
    if w == 2 * h and h > 0:
        return None
    return f"is {w}x{h}, not a side-by-side pair of two square halves (e.g. 512x256: photo left, label map right)"
