"""``bench.adversarial.frozen``: G's step skips D's weight gradients and changes nothing else."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from bench.adversarial import frozen


def _nets():
    torch.manual_seed(0)
    return nn.Linear(3, 4), nn.Sequential(nn.Linear(4, 4), nn.Tanh(), nn.Linear(4, 1))


def test_frozen_skips_d_grads_and_keeps_g_grads() -> None:
    x = torch.randn(5, 3)
    g, d = _nets()
    d(g(x)).sum().backward()
    expected = [p.grad.clone() for p in g.parameters()]
    g2, d2 = _nets()
    d2[2].bias.requires_grad_(False)         # already frozen by its owner: must stay frozen after
    with frozen(d2):
        assert not any(p.requires_grad for p in d2.parameters())
        d2(g2(x)).sum().backward()
    assert all(p.grad is None for p in d2.parameters())
    for got, want in zip((p.grad for p in g2.parameters()), expected):
        torch.testing.assert_close(got, want, rtol=0, atol=0)
    assert [p.requires_grad for p in d2.parameters()] == [True, True, True, False]


def test_frozen_restores_after_an_error() -> None:
    _, d = _nets()
    with pytest.raises(RuntimeError):
        with frozen(d):
            raise RuntimeError("boom")
    assert all(p.requires_grad for p in d.parameters())
