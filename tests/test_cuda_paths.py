"""The GPU paths: bf16 autocast and channels_last in a training step, and a whole run on CUDA.

Marked ``cuda``: skipped without a CUDA device; ``.ci/gpu_check.py`` runs them on a GPU machine.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch

from bench.build import build_method
from bench.contracts import TrainContext
from bench.data.base import DatasetInfo
from bench.registry import TASKS
from suite_helpers import bench, assert_scored

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]

INFO = DatasetInfo(name="cuda", tasks=("labels2photo",), num_classes=8,
                   palette=tuple((i * 30, 255 - i * 30, i * 15) for i in range(8)))


def _adapter(amp: bool, channels_last: bool, size: int = 64):
    torch.manual_seed(0)
    task = TASKS.get("labels2photo").bind(INFO)
    ctx = TrainContext(torch.device("cuda"), amp=amp, channels_last=channels_last, image_size=size)
    a = build_method("pix2pix", {"ngf": 16, "ndf": 16}, task, ctx, {"G": {"name": "unet"}, "D": {"name": "patchgan"}},
                     image_size=size)
    g = torch.Generator().manual_seed(1)
    batch = ctx.to_device({"label_rgb": torch.rand(4, 3, size, size, generator=g) * 2 - 1,
                           "photo": torch.rand(4, 3, size, size, generator=g) * 2 - 1})
    return a, batch


def test_bf16_channels_last_step_matches_fp32_and_keeps_fp32_weights() -> None:
    ref, b32 = _adapter(False, False)
    amp, b16 = _adapter(True, True)
    assert b16["photo"].is_contiguous(memory_format=torch.channels_last)
    l32, l16 = ref.train_step(b32, 0, True), amp.train_step(b16, 0, True)
    for k in ("loss_D", "loss_G_l1"):
        assert torch.isfinite(l16[k])
        assert float(l16[k]) == pytest.approx(float(l32[k]), rel=0.05), k  # bf16 has ~3 significant digits
    for _ in range(3):
        losses = amp.train_step(b16, 1, True)
    assert all(torch.isfinite(v) for v in losses.values())
    assert all(p.dtype == torch.float32 for p in amp.G.parameters())     # autocast, not a bf16 model
    out = amp.generate(b16)
    assert out.dtype == torch.float32 and out.device.type == "cuda" and out.abs().max() <= 1.0


def test_quickstart_tiny_runs_on_cuda(tmp_path: Path) -> None:
    out = tmp_path / "out"
    bench("run", "quickstart", "--profile", "tiny", "--rows", "4-Layer Concat + SN", "--device", "cuda",
          "--no-progress", "--out", str(out), check=True)
    board = pd.read_csv(out / "leaderboard.csv")
    assert_scored(board)
    assert board["mean"].notna().all()
