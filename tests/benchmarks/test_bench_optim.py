"""Adam's step on pix2pix's U-Net (54M parameters): torch's per-parameter loop against the fused kernel
that ``bench.adversarial.adam`` uses, and a check that both make the same update."""

from __future__ import annotations

import pytest
import torch

from bench.adversarial import adam
from methods.generators.unet import UNetGenerator


def _net(size: int = 256, ngf: int = 64) -> torch.nn.Module:
    torch.manual_seed(0)
    g = UNetGenerator(3, 3, image_size=size, ngf=ngf)
    for p in g.parameters():
        p.grad = torch.randn_like(p)
    return g


@pytest.mark.parametrize("kind", ["loop", "fused"])
def test_bench_adam_step(benchmark, kind) -> None:
    g = _net()
    opt = (torch.optim.Adam(g.parameters(), lr=2e-4, betas=(0.5, 0.999), foreach=False) if kind == "loop"
           else adam(g.parameters(), lr=2e-4, betas=(0.5, 0.999)))
    benchmark.pedantic(opt.step, rounds=3, warmup_rounds=1)


def test_fused_adam_makes_the_loop_update() -> None:
    a, b = _net(64, 8), _net(64, 8)
    oa = torch.optim.Adam(a.parameters(), lr=1e-3, betas=(0.5, 0.999), foreach=False)
    ob = adam(b.parameters(), lr=1e-3, betas=(0.5, 0.999))
    assert ob.defaults.get("fused") is True
    for _ in range(3):
        oa.step()
        ob.step()
    for pa, pb in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(pb, pa, rtol=1e-5, atol=1e-7)
