"""The 2-D Gaussian sets of the NRDS toy example (decoupled learning paper, papers.md section C).

Real samples follow N(0, I); the "close" fake model N([0.5, 0], I) and the "far" fake model
N([1.5, 0], I), all with identity covariance. The paper trains a 2x32 ReLU MLP on real vs the
pooled fakes for 300 epochs and reports curve areas 145.4955 / 71.1057, i.e. NRDS 0.6717 / 0.3283
(close / far). It does not publish the sample count: ``DEFAULT_POINTS`` is this bench's choice.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch

from bench.data.base import DatasetInfo, PairedDataset
from bench.errors import ConfigError

SOURCES = ("real", "fake_close", "fake_far")
MEANS: dict[str, tuple[float, float]] = {"real": (0.0, 0.0), "fake_close": (0.5, 0.0), "fake_far": (1.5, 0.0)}
DEFAULT_POINTS = 1000            # points per source and split (assumption: not given in the paper)
PAPER_AREAS = {"fake_close": 145.4955, "fake_far": 71.1057}
PAPER_NRDS = {"fake_close": 0.6717, "fake_far": 0.3283}

INFO = DatasetInfo(
    name="gaussians-2d",
    tasks=("points",),
    num_classes=len(SOURCES),
    class_names=SOURCES,
    description=("NRDS toy example: 2-D points from N(0, I) (real), N([0.5, 0], I) (fake_close) and "
                 "N([1.5, 0], I) (fake_far); samples interleave the three sources."),
    source="generated on the fly by bench.data.gaussians (Chen et al., decoupled learning, NRDS toy)",
    extra={"means": MEANS, "paper_areas": PAPER_AREAS, "paper_nrds": PAPER_NRDS},
    provides=("points", "source"),
)


def _stream_seed(seed: int, name: str) -> int:
    h = hashlib.blake2b(f"gaussians-2d/{seed}/{name}".encode(), digest_size=8)
    return int.from_bytes(h.digest(), "little") & (2**63 - 1)


def toy_sets(n: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """``n`` points of each toy set: {"real", "fake_close", "fake_far"} -> (n, 2) float32.

    Each set has its own random stream derived from ``seed``, so the sets are independent.
    """
    if n < 1:
        raise ConfigError(f"toy_sets needs n >= 1 points, not {n}")
    out = {}
    for name in SOURCES:
        gen = torch.Generator().manual_seed(_stream_seed(seed, name))
        out[name] = torch.randn(n, 2, generator=gen) + torch.tensor(MEANS[name])
    return out


class GaussianPoints(PairedDataset):
    """Points of the three sets, interleaved: sample i comes from source ``i % 3``."""

    info = INFO

    def __init__(self, split: str, *, seed: int = 0, points: int = DEFAULT_POINTS, subset: int | None = None,
                 sources: tuple[str, ...] = SOURCES):
        if split not in ("train", "test"):
            raise ConfigError(f"gaussians-2d has splits 'train' and 'test', not '{split}'")
        if points < 1 or (subset is not None and subset < 1):
            raise ConfigError("gaussians-2d: points and subset must be positive integers")
        # train and test are disjoint streams: the test split uses a derived seed.
        bad = [s for s in sources if s not in SOURCES]
        if bad or not sources:
            raise ConfigError(f"gaussians-2d: sources must be a non-empty subset of {', '.join(SOURCES)}; "
                              f"got {list(sources)}")
        sets = toy_sets(points, seed if split == "train" else _stream_seed(seed, "test") % 2**31)
        self.points = torch.stack([sets[k] for k in sources], 1).reshape(-1, 2)   # interleaved
        self.sources = torch.tensor([SOURCES.index(k) for k in sources]).repeat(points)
        self.length = len(self.points) if subset is None else min(subset, len(self.points))

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        i = int(i) + (self.length if int(i) < 0 else 0)
        if not 0 <= i < self.length:
            raise IndexError(f"sample {i} out of range for {self.length} samples")
        return {"points": self.points[i].clone(), "source": self.sources[i].clone()}


def make_dataset(split: str, size: int, *, root: Path | None = None, subset: int | None = None,
                 seed: int = 0, **options) -> GaussianPoints:
    """Factory registered as ``gaussians-2d``. ``size`` and ``root`` are unused (points are 2-D).

    Options: ``points`` (per source, default ``DEFAULT_POINTS``), ``sources`` (which of "real",
    "fake_close", "fake_far", default all three; the NRDS toy suite reads only "real").
    """
    unknown = set(options) - {"points", "sources"}
    if unknown:
        raise ConfigError(f"gaussians-2d: unknown option(s) {', '.join(sorted(unknown))}; accepted: points, sources")
    return GaussianPoints(split, seed=seed, points=int(options.get("points", DEFAULT_POINTS)), subset=subset,
                          sources=tuple(options.get("sources", SOURCES)))
