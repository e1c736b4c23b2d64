"""Helpers for adapter unit tests: which components a loss reaches."""

from __future__ import annotations

import torch


def touched(ad, loss: torch.Tensor) -> set[str]:
    """The slots whose parameters get a non-zero gradient from ``loss``."""
    for m in ad.modules.values():
        m.zero_grad(set_to_none=True)
    loss.backward(retain_graph=True)
    return {name for name, m in ad.modules.items()
            if any(p.grad is not None and p.grad.abs().sum() > 0 for p in m.parameters())}
