"""Speed of generating one synthetic scene (pytest-benchmark; run with ``--benchmark-enable``).

Targets on one CPU core (``OMP_NUM_THREADS=1``, ``torch.set_num_threads(1)``): under 5 ms per
64 x 64 sample and under 40 ms per 256 x 256 sample, cache off (every call draws a new index).
"""

from __future__ import annotations

import itertools

import pytest
import torch

from bench.data.synthetic_scenes import make_dataset


@pytest.mark.parametrize("size,target_ms", [(64, 5.0), (256, 40.0)])
def test_bench_synthetic_scene(benchmark, size: int, target_ms: float) -> None:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        ds = make_dataset("train", size, cache_mb=0)
        counter = itertools.count()
        benchmark.extra_info["target_ms"] = target_ms
        sample = benchmark(lambda: ds[next(counter) % len(ds)])
    finally:
        torch.set_num_threads(threads)
    assert sample["photo"].shape == (3, size, size)
    assert sample["depth"].max() <= 10.0
