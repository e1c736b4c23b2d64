"""The adapters' optimiser: Adam, with torch's fused kernel where the parameters' device has one."""

from __future__ import annotations

from typing import Iterable

import torch


def adam(params: Iterable[torch.nn.Parameter], *, lr: float, betas: tuple[float, float]) -> torch.optim.Adam:
    """``torch.optim.Adam`` (same update rule and defaults), fused: one pass over each parameter instead of
    about ten. On 2 CPU cores the Adam step of pix2pix's U-Net (54M parameters) takes 44 ms fused against
    244 ms with the per-parameter loop (``tests/benchmarks/test_bench_optim.py``). Falls back to torch's
    default where the device or the torch version has no fused Adam (e.g. MPS on older releases)."""
    params = list(params)
    try:
        return torch.optim.Adam(params, lr=lr, betas=betas, fused=True)
    except (RuntimeError, TypeError, ValueError):
        return torch.optim.Adam(params, lr=lr, betas=betas)
