"""Deterministic training batches: a pure function of (seed, iteration), so resume is exact.

The order of samples in epoch ``e`` is ``randperm(N)`` drawn from a generator seeded with
``(seed, e)``; iteration ``i`` takes the ``i``-th slice of ``batch_size`` (the last partial batch
of an epoch is dropped). Random jitter (crop + flip) is drawn from a generator seeded with
``(seed, i)`` and applied in the main process, so worker count does not change results.
"""

from __future__ import annotations

from typing import Iterator

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from bench.errors import ConfigError


def _mix(*xs: int) -> int:
    h = 0x9E3779B97F4A7C15
    for x in xs:
        h = (h ^ (x + 0x9E3779B9 + (h << 6) + (h >> 2))) & 0x7FFFFFFFFFFFFFFF
    return h


class IterationBatchSampler(Sampler[list[int]]):
    """Yields the index lists of iterations ``start .. stop-1``."""

    def __init__(self, n: int, batch_size: int, seed: int, start: int, stop: int):
        if n < batch_size:
            raise ConfigError(f"the training set has {n} samples, fewer than batch_size = {batch_size}; "
                              "lower batch_size or raise train_subset")
        self.n, self.bs, self.seed, self.start, self.stop = n, batch_size, seed, start, stop
        self.per_epoch = n // batch_size
        self._perm: tuple[int, torch.Tensor] | None = None

    def indices(self, it: int) -> list[int]:
        epoch, pos = divmod(it, self.per_epoch)
        if self._perm is None or self._perm[0] != epoch:
            g = torch.Generator().manual_seed(_mix(self.seed, epoch))
            self._perm = (epoch, torch.randperm(self.n, generator=g))
        return self._perm[1][pos * self.bs:(pos + 1) * self.bs].tolist()

    def __iter__(self) -> Iterator[list[int]]:
        for it in range(self.start, self.stop):
            yield self.indices(it)

    def __len__(self) -> int:
        return self.stop - self.start


def batch_loader(dataset: Dataset, batch_size: int, seed: int, start: int, stop: int,
                 num_workers: int = 0) -> DataLoader:
    sampler = IterationBatchSampler(len(dataset), batch_size, seed, start, stop)
    return DataLoader(dataset, batch_sampler=sampler, num_workers=num_workers,
                      persistent_workers=False, pin_memory=torch.cuda.is_available())


def eval_loader(dataset: Dataset, batch_size: int, num_workers: int = 0) -> DataLoader:
    return DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers)


def jitter(batch: dict[str, torch.Tensor], size: int, seed: int, it: int, flip: bool = True) -> dict[str, torch.Tensor]:
    """Random crop to ``size`` and horizontal flip, the same for every image key of a sample."""
    keys = [k for k, v in batch.items() if isinstance(v, torch.Tensor) and v.dim() >= 3]
    if not keys:
        return batch
    h, w = batch[keys[0]].shape[-2:]
    if h == size and w == size and not flip:
        return batch
    g = torch.Generator().manual_seed(_mix(seed, it, 7))
    n = batch[keys[0]].shape[0]
    tops = torch.randint(0, h - size + 1, (n,), generator=g).tolist()
    lefts = torch.randint(0, w - size + 1, (n,), generator=g).tolist()
    flips = (torch.rand(n, generator=g) < 0.5).tolist() if flip else [False] * n
    out = dict(batch)
    for k in keys:
        v = batch[k]
        crops = []
        for i in range(n):
            c = v[i, ..., tops[i]:tops[i] + size, lefts[i]:lefts[i] + size]
            crops.append(c.flip(-1) if flips[i] else c)
        out[k] = torch.stack(crops)
    return out
