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

from dataclasses import dataclass, field

import torch


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
