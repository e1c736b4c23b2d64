"""Data path speed: training images per second from the real loaders (JPEG decode, label colours to ids,
resize + random crop + flip), with 0 and 2 DataLoader workers. Timing only: ``--benchmark-enable -s``."""

from __future__ import annotations

import time

import pytest
import torch

from bench.errors import BenchError
from bench.registry import DATASETS


@pytest.mark.parametrize("workers", [0, 2])
@pytest.mark.parametrize("dataset", ["cityscapes", "facades"])
def test_bench_loader_images_per_s(benchmark, dataset, workers) -> None:
    if benchmark.disabled:
        pytest.skip("timing only: run with --benchmark-enable")
    try:
        ds = DATASETS.get(dataset)("train", 256, root=None, subset=64, seed=0)
    except BenchError as e:
        pytest.skip(f"{dataset} not available: {e}")
    loader = torch.utils.data.DataLoader(ds, batch_size=8, shuffle=True, num_workers=workers)

    def one_pass() -> float:
        t = time.perf_counter()
        n = sum(len(next(iter(b.values()))) for b in loader)
        return n / (time.perf_counter() - t)
    rate = benchmark.pedantic(one_pass, rounds=2, warmup_rounds=1)
    print(f"\n{dataset} train at 256 px, {workers} worker(s): {rate:.0f} images/s")
    benchmark.extra_info["images_per_s"] = rate
