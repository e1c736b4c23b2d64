"""Adversarial losses and regularisers on AdvTerms, against hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch

from bench.contracts import AdvTerms, DOutput
from bench.errors import PluginError
from bench.registry import LOSSES, REGULARIZERS
from methods.regularizers import Regularizers


def _terms(real_logits, fake_logits, **kw) -> AdvTerms:
    r, f = torch.tensor(real_logits), torch.tensor(fake_logits)
    return AdvTerms(lambda v: None, torch.zeros(1), torch.zeros(1), DOutput([r]), DOutput([f]), **kw)


def softplus(x: float) -> float:
    return math.log1p(math.exp(x))


def test_classic_losses_by_hand():
    t = _terms([2.0, 0.0], [-1.0, 1.0])
    v = LOSSES.get("vanilla")()
    # BCE(real, 1) = softplus(-r), BCE(fake, 0) = softplus(f)
    assert float(v.d_loss(t)) == pytest.approx((softplus(-2) + softplus(0)) / 2 + (softplus(-1) + softplus(1)) / 2)
    assert float(v.g_loss(t)) == pytest.approx((softplus(1) + softplus(-1)) / 2)
    ls = LOSSES.get("lsgan")()
    assert float(ls.d_loss(t)) == pytest.approx((1 + 1) / 2 + (1 + 1) / 2)
    h = LOSSES.get("hinge")()
    assert float(h.d_loss(t)) == pytest.approx((0 + 1) / 2 + (0 + 2) / 2)
    w = LOSSES.get("wgan")()
    assert float(w.d_loss(t)) == pytest.approx(0.0 - 1.0) and float(w.g_loss(t)) == pytest.approx(0.0)


def test_multi_scale_outputs_average_over_scales():
    r1, f1, r2, f2 = torch.tensor([1.0]), torch.tensor([0.0]), torch.tensor([3.0]), torch.tensor([-2.0])
    t = AdvTerms(lambda v: None, torch.zeros(1), torch.zeros(1), DOutput([r1, r2]), DOutput([f1, f2]))
    ls = LOSSES.get("lsgan")()
    assert float(ls.d_loss(t)) == pytest.approx(((0 + 0) + (4 + 4)) / 2)
    assert float(ls.g_loss(t)) == pytest.approx((1 + 9) / 2)


def test_relativistic_generator_loss_reads_the_real_logits():
    r, f = [1.0, 2.0], [0.0, -1.0]
    ra = LOSSES.get("ragan")()
    # G: BCE(r - mean f, 0) + BCE(f - mean r, 1), halved: softplus(r + 0.5) and softplus(-(f - 1.5))
    g = (sum(softplus(x + 0.5) for x in r) / 2 + sum(softplus(-(x - 1.5)) for x in f) / 2) / 2
    d = (sum(softplus(-(x + 0.5)) for x in r) / 2 + sum(softplus(x - 1.5) for x in f) / 2) / 2
    assert float(ra.g_loss(_terms(r, f))) == pytest.approx(g)
    assert float(ra.d_loss(_terms(r, f))) == pytest.approx(d)
    assert float(ra.g_loss(_terms([5.0, 6.0], f))) != pytest.approx(g)     # real logits matter to G


def test_lazy_terms_call_the_critic_only_when_read():
    calls = []

    def critic(v):
        calls.append(v)
        return DOutput([v.sum(1)])
    t = AdvTerms(critic, torch.ones(2, 3), torch.zeros(2, 3), d_fake=DOutput([torch.zeros(2)]))
    LOSSES.get("vanilla")().g_loss(t)
    assert calls == []                                              # G's vanilla loss never reads real logits
    LOSSES.get("ragan")().g_loss(t)
    assert len(calls) == 1


class _LinearCritic:
    """D(x, v) = sum(w * v) per sample: its input gradient is w everywhere."""

    def __init__(self, w: torch.Tensor):
        self.w = w

    def __call__(self, v: torch.Tensor) -> DOutput:
        return DOutput([(v * self.w).flatten(1).sum(1)])


def test_gradient_penalties_on_a_linear_critic():
    w = torch.tensor([[[0.6, 0.0], [0.0, 1.2]]])                     # ||w|| = sqrt(0.36 + 1.44)
    real, fake = torch.randn(5, 1, 2, 2), torch.randn(5, 1, 2, 2)
    t = AdvTerms(_LinearCritic(w), real, fake)
    norm = math.sqrt(0.36 + 1.44)
    assert float(REGULARIZERS.get("gp")()(t)) == pytest.approx((norm - 1) ** 2, rel=1e-5)
    assert float(REGULARIZERS.get("r1")()(t)) == pytest.approx(norm ** 2 / 2, rel=1e-5)
    total, parts = Regularizers({"gp": 10.0, "r1": 2.0}).d(t)
    assert float(total) == pytest.approx(10 * (norm - 1) ** 2 + 2 * norm ** 2 / 2, rel=1e-5)
    assert set(parts) == {"gp", "r1"} and Regularizers({"gp": 1.0}).g(t) == (None, {})


def test_gradient_penalty_sends_gradients_to_the_critic():
    w = torch.nn.Parameter(torch.tensor([[[0.3, 0.4]]]))
    t = AdvTerms(_LinearCritic(w), torch.randn(3, 1, 1, 2), torch.randn(3, 1, 1, 2))
    REGULARIZERS.get("gp")()(t).backward()
    # d/dw (||w|| - 1)^2 = 2 (||w|| - 1) w / ||w||, with ||w|| = 0.5
    torch.testing.assert_close(w.grad, 2 * (0.5 - 1) * w.detach() / 0.5)


def test_feature_matching_by_hand():
    real = DOutput([torch.zeros(1)], [[torch.zeros(2), torch.ones(2)], [torch.full((2,), 2.0)]])
    fake = DOutput([torch.zeros(1)], [[torch.ones(2), torch.ones(2)], [torch.zeros(2)]])
    t = AdvTerms(lambda v: None, torch.zeros(1), torch.zeros(1), real, fake)
    # scale 1: layers |1-0| = 1 and |1-1| = 0 -> 0.5; scale 2: |0-2| = 2 -> mean over scales 1.25
    assert float(REGULARIZERS.get("feature-matching")()(t)) == pytest.approx(1.25)
    no_features = AdvTerms(lambda v: None, torch.zeros(1), torch.zeros(1), DOutput([torch.zeros(1)]),
                           DOutput([torch.zeros(1)]))
    with pytest.raises(ValueError, match="returns features"):
        REGULARIZERS.get("feature-matching")()(no_features)


def test_discriminator_outputs_are_wrapped():
    a, b = torch.zeros(2, 1), torch.ones(2, 1)
    assert DOutput.wrap(a).logits == [a]
    assert DOutput.wrap([a, b]).logits == [a, b]
    out = DOutput.wrap({"logits": a, "cls": b})
    assert out.logits == [a] and set(out.heads) == {"cls"} and out.heads["cls"] is b
    same = DOutput([a])
    assert DOutput.wrap(same) is same
    with pytest.raises(PluginError, match="a discriminator returned"):
        DOutput.wrap({"cls": b})
