"""Deterministic training batches: a pure function of (seed, iteration), so resume is exact.

The order of samples in epoch ``e`` is ``randperm(N)`` drawn from a generator seeded with
``(seed, e)``; iteration ``i`` takes the ``i``-th slice of ``batch_size`` (the last partial batch
of an epoch is dropped). Random jitter (crop + flip) is drawn from a generator seeded with
``(seed, i)`` and applied in the main process, so worker count does not change results.

Unpaired tasks (CycleGAN) draw a second, independent stream the same way (seeded with
``(seed, e, "b")``): each training sample then takes the stream-b keys from another sample.
"""

from __future__ import annotations

import os

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

    def __init__(self, n: int, batch_size: int, seed: int, start: int, stop: int, unpaired: bool = False):
        if n < batch_size:
            raise ConfigError(f"the training set has {n} samples, fewer than batch_size = {batch_size}; "
                              "lower batch_size or raise train_subset")
        self.n, self.bs, self.seed, self.start, self.stop = n, batch_size, seed, start, stop
        self.per_epoch = n // batch_size
        self.unpaired = unpaired
        self._perm: tuple[int, torch.Tensor] | None = None
        self._perm_b: tuple[int, torch.Tensor] | None = None

    def indices(self, it: int) -> list[int]:
        epoch, pos = divmod(it, self.per_epoch)
        if self._perm is None or self._perm[0] != epoch:
            g = torch.Generator().manual_seed(_mix(self.seed, epoch))
            self._perm = (epoch, torch.randperm(self.n, generator=g))
        return self._perm[1][pos * self.bs:(pos + 1) * self.bs].tolist()

    def indices_b(self, it: int) -> list[int]:
        """The second stream of an unpaired task: its own permutation per epoch."""
        epoch, pos = divmod(it, self.per_epoch)
        if self._perm_b is None or self._perm_b[0] != epoch:
            g = torch.Generator().manual_seed(_mix(self.seed, epoch, 0x5EED_B))
            self._perm_b = (epoch, torch.randperm(self.n, generator=g))
        return self._perm_b[1][pos * self.bs:(pos + 1) * self.bs].tolist()

    def __iter__(self) -> Iterator[list]:
        for it in range(self.start, self.stop):
            if self.unpaired:
                yield list(zip(self.indices(it), self.indices_b(it)))
            else:
                yield self.indices(it)

    def __len__(self) -> int:
        return self.stop - self.start


class UnpairedView(Dataset):
    """Sample ``(i, j)``: the keys of stream b from sample ``j``, all others from sample ``i``."""

    def __init__(self, dataset: Dataset, b_keys: set[str]):
        self.dataset, self.b_keys = dataset, set(b_keys)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, ij: tuple[int, int]) -> dict:
        i, j = ij
        a, b = self.dataset[i], self.dataset[j]
        return {**{k: v for k, v in a.items() if k not in self.b_keys},
                **{k: v for k, v in b.items() if k in self.b_keys}}


def batch_loader(dataset: Dataset, batch_size: int, seed: int, start: int, stop: int,
                 num_workers: int = 0, b_keys: set[str] | None = None) -> DataLoader:
    """Training batches of iterations ``start .. stop-1``; ``b_keys``: an unpaired task's second stream.

    The loader's iterator draws one number from the global RNG when it is created (torch's worker
    base seed): the trainer creates it before restoring a checkpoint's RNG state, so that draw
    does not shift a resumed run.
    """
    sampler = IterationBatchSampler(len(dataset), batch_size, seed, start, stop, unpaired=bool(b_keys))
    data = UnpairedView(dataset, b_keys) if b_keys else dataset
    return DataLoader(data, batch_sampler=sampler, num_workers=usable_workers(num_workers),
                      persistent_workers=False, pin_memory=torch.cuda.is_available())


def eval_loader(dataset: Dataset, batch_size: int, num_workers: int = 0) -> DataLoader:
    return DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=usable_workers(num_workers))


def usable_workers(asked: int) -> int:
    """A profile's worker count, at most the machine's cores (a GPU profile's 8 workers on a 2-core box only
    add processes: loading with 2 workers was already slower than with none there; test_bench_data_loading)."""
    return max(0, min(int(asked), len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                      else (os.cpu_count() or 1)))


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
