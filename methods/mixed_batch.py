"""Mixed batch training (Cho & Yoon, conditional activation GAN, IEEE Access 2020): every batch the
discriminator sees holds a fixed share of real and generated samples.

With batch norm in D, a batch of only real or only generated samples lets D tell them apart by the
batch statistics alone, and the condition it is given can then be ignored; mixing the two in every
batch takes that shortcut away. The authors' code grows the real share per epoch (0.01 more each
epoch, up to 0.5); a fixed share is the other option. Any adapter can use :func:`mixed_forward`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from bench.contracts import DOutput
from bench.errors import ConfigError


@dataclass(frozen=True)
class MixedBatch:
    """The real share of each D batch: ``share``, or, with ``start``, ``start + growth * epoch`` up to ``share``."""

    share: float = 0.5
    start: float | None = None
    growth: float = 0.0

    def __post_init__(self) -> None:
        if not 0 < self.share < 1 or (self.start is not None and not 0 < self.start <= self.share) or self.growth < 0:
            raise ConfigError("mixed batch: share must be in (0, 1), start in (0, share], growth >= 0")

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


def mixed_forward(D: Callable[[torch.Tensor], object], real: torch.Tensor, fake: torch.Tensor,
                  share: float) -> tuple[DOutput, DOutput, int, int]:
    """One forward of D on a batch of ``len(real)`` samples: the first ``k`` real and the first ``n - k``
    generated ones; returns D's outputs on the real part, on the generated part, and (k, n - k)."""
    k, m = split_sizes(real.shape[0], share)
    out = DOutput.wrap(D(torch.cat([real[:k], fake[:m]])))
    return _part(out, slice(0, k)), _part(out, slice(k, k + m)), k, m
