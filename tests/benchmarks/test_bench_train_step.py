"""Speed of one training step (D update + G update) of the pix2pix adapter.

The quickstart pair (U-Net + 4-layer concat PatchGAN, with and without SN) at 64x64 (the quickstart's
widths) and at 256x256 (the paper's widths), and every registered discriminator at 256x256 with
batch 1 and 8. Run timed with ``pytest tests/benchmarks --benchmark-enable``.
"""

from __future__ import annotations

import pytest
import torch

from adapter_helpers import image_conditioned_discriminators
from bench.data.base import DatasetInfo
from bench.build import build_method
from bench.registry import METHODS, TASKS
from methods.base import TrainContext

INFO = DatasetInfo(name="bench", tasks=("labels2photo",), num_classes=8,
                   palette=tuple((i * 30, 255 - i * 30, i * 15) for i in range(8)))


def _step_fn(disc: str, size: int, batch: int, width: int, d_steps: int = 1):
    torch.manual_seed(0)
    task = TASKS.get("labels2photo").bind(INFO)
    cls = METHODS.get("pix2pix")
    opts = cls.Options(ngf=width, ndf=width, d_steps=d_steps)
    adapter = build_method("pix2pix", opts, task, TrainContext(torch.device("cpu"), image_size=size),
                           {"G": {"name": "unet"}, "D": {"name": disc}}, image_size=size)
    b = {"label_rgb": torch.rand(batch, 3, size, size) * 2 - 1, "photo": torch.rand(batch, 3, size, size) * 2 - 1}

    def step():
        return adapter.train_step(b, 0, True)
    return step


@pytest.mark.parametrize("disc", ["patchgan", "patchgan-sn"])
def test_quickstart_pair_step_64(benchmark, disc):
    step = _step_fn(disc, 64, 8, 16)
    losses = benchmark(step)
    assert all(torch.isfinite(v) for v in losses.values())


@pytest.mark.parametrize("disc", ["patchgan", "patchgan-sn"])
def test_quickstart_pair_step_256(benchmark, disc):
    step = _step_fn(disc, 256, 1, 64)
    losses = benchmark.pedantic(step, rounds=3, warmup_rounds=1)
    assert all(torch.isfinite(v) for v in losses.values())


@pytest.mark.parametrize("batch", [1, 8])
@pytest.mark.parametrize("disc", image_conditioned_discriminators(builtin_only=False))
def test_every_discriminator_step_256(benchmark, disc, batch):
    if batch > 1 and benchmark.disabled:
        pytest.skip("batch 8 is only timed (--benchmark-enable): as a plain test it runs batch 1's code at 8x the cost")
    step = _step_fn(disc, 256, batch, 64)
    losses = benchmark.pedantic(step, rounds=2 if batch == 8 else 3, warmup_rounds=1)
    assert all(torch.isfinite(v) for v in losses.values())
