"""Speed of the Frechet distance on Inception-sized features (10k x 2048, float64)."""

from __future__ import annotations

import numpy as np
import pytest

from metrics.fidelity import fid_from_features


@pytest.fixture(scope="module")
def features() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    f1 = rng.standard_normal((10_000, 2048), dtype=np.float32)
    f2 = (rng.standard_normal((10_000, 2048), dtype=np.float32) * 1.1 + 0.05).astype(np.float32)
    return f1, f2


def test_bench_fid_10k_2048(benchmark, features: tuple[np.ndarray, np.ndarray]) -> None:
    f1, f2 = features
    fid = benchmark.pedantic(fid_from_features, args=(f1, f2), rounds=3, iterations=1)
    # population value 2048 * (0.05^2 + 0.1^2) = 25.6; the finite-sample estimate is biased upwards
    assert np.isfinite(fid) and fid > 25.6
