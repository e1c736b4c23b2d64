"""Memory format and precision on CPU, measured on the fusion cpu profile's step (issue 23).

One pix2pix step (2 D updates + 1 G update) of fusion-table2's cpu profile (U-Net + 4-Layer Fusion + SN,
widths 32, 64x64, batch 1, photo -> labels, SN on G as well) in three forms: torch's default contiguous
layout in float32 (what the bench uses on CPU), channels_last, and bf16 autocast. Measured on the 2-core
machine at one thread (issue 23's closing note): channels_last 1.15x and bf16 1.19x *slower* than the default,
so ``TrainContext`` keeps both for CUDA only (``bench/build.py``). Run timed with
``pytest tests/benchmarks/test_bench_cpu_formats.py --benchmark-enable``.
"""

from __future__ import annotations

import contextlib

import pytest
import torch

from bench.build import build_method
from bench.data.base import DatasetInfo
from bench.registry import METHODS, TASKS
from methods.base import TrainContext

INFO = DatasetInfo(name="bench", tasks=("photo2labels",), num_classes=19,
                   palette=tuple((i * 10, 200 - i * 10, i * 5) for i in range(19)))


def _step(form: str):
    torch.manual_seed(0)
    task = TASKS.get("photo2labels").bind(INFO)
    opts = METHODS.get("pix2pix").Options(ngf=32, ndf=32, d_steps=2, g_spectral_norm=True, beta1=0.0, beta2=0.9)
    adapter = build_method("pix2pix", opts, task, TrainContext(torch.device("cpu"), image_size=64),
                           {"G": {"name": "unet"}, "D": {"name": "fusion4-sn"}}, image_size=64)
    batch = {"label_rgb": torch.rand(1, 3, 64, 64) * 2 - 1, "photo": torch.rand(1, 3, 64, 64) * 2 - 1,
             "label": torch.randint(0, 19, (1, 64, 64))}
    if form == "channels_last":
        adapter.G.to(memory_format=torch.channels_last)
        adapter.D.to(memory_format=torch.channels_last)
        batch = {k: v.contiguous(memory_format=torch.channels_last) if v.dim() == 4 else v for k, v in batch.items()}
    cast = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if form == "bf16" else contextlib.nullcontext

    def step():
        with cast():
            adapter.train_step(batch, 0, False)
            return adapter.train_step(batch, 1, True)
    return step


@pytest.mark.parametrize("form", ["default", "channels_last", "bf16"])
def test_bench_fusion_cpu_step_forms(benchmark, form):
    step = _step(form)
    losses = benchmark.pedantic(step, rounds=5, warmup_rounds=1)
    assert set(losses) >= {"loss_D", "loss_G"}
    assert all(torch.isfinite(v) for v in losses.values())
