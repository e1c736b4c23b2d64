"""Mixed batch training (Cho & Yoon, conditional activation GAN, IEEE Access 2020): every batch the
discriminator sees holds a share of real and generated samples.

With batch norm in D, a batch of only real or only generated samples lets D tell them apart by the
batch statistics alone, and the condition it is given can then be ignored; mixing the two in every
batch takes that shortcut away. Two forms:

- :func:`complementary_forward`, the authors' code (jeongik-jo/CAGAN and CAGAN-MNIST ``Train.py``): with
  ``s = floor(share * n)``, D sees ``cat(real[:s], fake[s:])`` and ``cat(fake[:s], real[s:])``, two batches
  that hold every real and every generated sample exactly once; the outputs are put back in order.
- :func:`mixed_forward`: one batch of ``share * n`` real and ``n - share * n`` generated samples; the other
  samples of the step are not used.

The authors' code grows the real share per epoch (``min(rate * epoch, 0.5)``, from 0); a fixed share is
the other option (:class:`MixedBatch`). Any adapter can use these.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from bench.contracts import DOutput
from bench.errors import ConfigError


@dataclass(frozen=True)
class MixedBatch:
    """The real share of each D batch: ``share``, or, with ``start``, ``start + growth * epoch`` up to ``share``;
    ``batches``: 2 complementary batches (the authors') or 1."""

    share: float = 0.5
    start: float | None = None
    growth: float = 0.0
    batches: int = 2

    def __post_init__(self) -> None:
        if not 0 < self.share < 1 or (self.start is not None and not 0 <= self.start <= self.share) or self.growth < 0:
            raise ConfigError("mixed batch: share must be in (0, 1), start in [0, share], growth >= 0")
        if self.batches not in (1, 2):
            raise ConfigError(f"mixed batch: batches must be 1 or 2 (the authors' complementary pair), "
                              f"not {self.batches}")

    def real_share(self, epoch: int) -> float:
        if self.start is None:
            return self.share
        return min(self.share, self.start + self.growth * epoch)


def split_sizes(n: int, share: float) -> tuple[int, int]:
    """(real, generated) counts of a mixed batch of ``n``: at least one of each."""
    if n < 2:
        raise ConfigError("mixed batch training needs batches of at least 2 samples")
    k = min(n - 1, max(1, round(share * n)))
    return k, n - k


def _part(out: DOutput, sl: slice) -> DOutput:
    return DOutput([t[sl] for t in out.logits], [[f[sl] for f in scale] for scale in out.features],
                   {k: v[sl] for k, v in out.heads.items()})


def _cat(a: DOutput, b: DOutput) -> DOutput:
    """``a``'s samples then ``b``'s, head by head and scale by scale."""
    return DOutput([torch.cat([x, y]) for x, y in zip(a.logits, b.logits)],
                   [[torch.cat([x, y]) for x, y in zip(fa, fb)] for fa, fb in zip(a.features, b.features)],
                   {k: torch.cat([a.heads[k], b.heads[k]]) for k in a.heads})


def complementary_forward(D: Callable[[torch.Tensor], object], real: torch.Tensor, fake: torch.Tensor,
                          share: float) -> tuple[DOutput, DOutput, int]:
    """The authors' two mixed batches of one step: D on ``cat(real[:s], fake[s:])`` and on ``cat(fake[:s],
    real[s:])`` with ``s = floor(share * n)``; returns D's outputs on all ``n`` real samples and on all ``n``
    generated ones, each in its own order, and ``s``. ``share`` 0 gives one all-generated and one all-real
    batch (no mixing)."""
    n = real.shape[0]
    if fake.shape[0] != n:
        raise ConfigError(f"complementary mixed batches need as many generated as real samples ({fake.shape[0]} "
                          f"vs {n})")
    s = min(n, max(0, int(share * n)))
    out0 = DOutput.wrap(D(torch.cat([real[:s], fake[s:]])))
    out1 = DOutput.wrap(D(torch.cat([fake[:s], real[s:]])))
    d_real = _cat(_part(out0, slice(0, s)), _part(out1, slice(s, n)))
    d_fake = _cat(_part(out1, slice(0, s)), _part(out0, slice(s, n)))
    return d_real, d_fake, s


def mixed_forward(D: Callable[[torch.Tensor], object], real: torch.Tensor, fake: torch.Tensor,
                  share: float) -> tuple[DOutput, DOutput, int, int]:
    """One forward of D on a batch of ``len(real)`` samples: the first ``k`` real and the first ``n - k``
    generated ones; returns D's outputs on the real part, on the generated part, and (k, n - k)."""
    k, m = split_sizes(real.shape[0], share)
    out = DOutput.wrap(D(torch.cat([real[:k], fake[:m]])))
    return _part(out, slice(0, k)), _part(out, slice(k, k + m)), k, m
