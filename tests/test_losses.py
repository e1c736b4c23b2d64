"""Adversarial losses and regularisers on AdvTerms, against hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch

from bench.contracts import AdvTerms, DOutput
from bench.errors import PluginError
from bench.registry import LOSSES, REGULARIZERS
from bench.adversarial import Regularizers


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


# ------------------------------------------------------------------------------ new losses (issue 24)
def sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def _grads(loss_name: str, side: str, real, fake):
    """(loss, d loss / d real, d loss / d fake) of ``side`` ("d" or "g") on one scale of hand-made logits."""
    r = torch.tensor(real, requires_grad=True)
    f = torch.tensor(fake, requires_grad=True)
    t = AdvTerms(lambda v: None, torch.zeros(1), torch.zeros(1), DOutput([r]), DOutput([f]))
    loss = getattr(LOSSES.get(loss_name)(), f"{side}_loss")(t)
    loss.backward()
    return float(loss.detach()), r.grad, f.grad


R, F_ = [1.0, 2.0], [0.0, -1.0]


def test_nonsaturating_is_vanilla_under_a_second_name():
    assert LOSSES.get("nonsaturating") is LOSSES.get("vanilla")


@pytest.mark.parametrize("name, value, grad", [
    # G's loss and its gradient per fake logit (n = 2 logits, so each mean carries 1/2)
    ("minimax", -(softplus(0.0) + softplus(-1.0)) / 2, [-sigmoid(x) / 2 for x in F_]),
    ("rkl", (0.0 + 1.0) / 2, [-0.5, -0.5]),
    ("kl", -(math.exp(0.0) + math.exp(-1.0)) / 2, [-math.exp(x) / 2 for x in F_]),
    ("skl", 0.5 - (1 + math.exp(-1.0)) / 2, [-(1 + math.exp(x)) / 2 for x in F_]),
])
def test_fdiv_generator_losses_by_hand(name, value, grad):
    loss, gr, gf = _grads(name, "g", R, F_)
    assert loss == pytest.approx(value)
    torch.testing.assert_close(gf, torch.tensor(grad))
    assert gr is None                                          # G's loss never reads the real logits


@pytest.mark.parametrize("name", ["minimax", "rkl", "kl", "skl"])
def test_fdiv_discriminators_train_with_the_standard_bce(name):
    d = (softplus(-1.0) + softplus(-2.0)) / 2 + (softplus(0.0) + softplus(-1.0)) / 2
    loss, gr, gf = _grads(name, "d", R, F_)
    assert loss == pytest.approx(d)
    torch.testing.assert_close(gr, torch.tensor([-sigmoid(-x) / 2 for x in R]))     # d softplus(-r) = -sigmoid(-r)
    torch.testing.assert_close(gf, torch.tensor([sigmoid(x) / 2 for x in F_]))      # d softplus(f) = sigmoid(f)


def test_forward_kl_clamps_the_logit_inside_exp():
    loss, _, gf = _grads("kl", "g", [0.0, 0.0], [50.0, 1.0])
    assert loss == pytest.approx(-(math.exp(20.0) + math.exp(1.0)) / 2)
    torch.testing.assert_close(gf, torch.tensor([0.0, -math.exp(1.0) / 2]))     # nothing above the clamp
    loss, _, _ = _grads("skl", "g", [0.0], [1e4])
    assert math.isfinite(loss)


def test_rsgan_by_hand():
    # D: softplus(f - r) per pair; G: softplus(r - f) per pair, means over the 2 pairs
    loss, gr, gf = _grads("rsgan", "d", R, F_)
    assert loss == pytest.approx((softplus(-1.0) + softplus(-3.0)) / 2)
    torch.testing.assert_close(gr, torch.tensor([-sigmoid(f - r) / 2 for r, f in zip(R, F_)]))
    torch.testing.assert_close(gf, torch.tensor([sigmoid(f - r) / 2 for r, f in zip(R, F_)]))
    loss, gr, gf = _grads("rsgan", "g", R, F_)
    assert loss == pytest.approx((softplus(1.0) + softplus(3.0)) / 2)
    torch.testing.assert_close(gf, torch.tensor([-sigmoid(r - f) / 2 for r, f in zip(R, F_)]))
    assert gr is None


def test_rsgan_refuses_unpaired_batches():
    t = _terms([1.0, 2.0, 3.0], [0.0, 1.0])
    with pytest.raises(ValueError, match="equal-sized real and fake batches"):
        LOSSES.get("rsgan")().d_loss(t)


def test_ralsgan_by_hand():
    mr, mf = sum(R) / 2, sum(F_) / 2                                # 1.5, -0.5
    rr, ff = [r - mf for r in R], [f - mr for f in F_]              # [1.5, 2.5], [-1.5, -2.5]
    d = (sum((x - 1) ** 2 for x in rr) / 2 + sum((x + 1) ** 2 for x in ff) / 2) / 2
    g = (sum((x + 1) ** 2 for x in rr) / 2 + sum((x - 1) ** 2 for x in ff) / 2) / 2
    assert (d, g) == (pytest.approx(1.25), pytest.approx(9.25))
    loss, gr, gf = _grads("ralsgan", "d", R, F_)
    assert loss == pytest.approx(d)
    # dD/dr_j = [(rr_j - 1) - mean(ff + 1)] / n ; dD/df_j = [(ff_j + 1) - mean(rr - 1)] / n   (halving included)
    m_ff, m_rr = sum(x + 1 for x in ff) / 2, sum(x - 1 for x in rr) / 2
    torch.testing.assert_close(gr, torch.tensor([((x - 1) - m_ff) / 2 for x in rr]))
    torch.testing.assert_close(gf, torch.tensor([((x + 1) - m_rr) / 2 for x in ff]))
    loss, gr, gf = _grads("ralsgan", "g", R, F_)
    assert loss == pytest.approx(g)
    # G's fake logits enter both terms: directly in (ff - 1)^2 and through mean f in (rr + 1)^2
    m_rr1 = sum(x + 1 for x in rr) / 2
    torch.testing.assert_close(gf, torch.tensor([((x - 1) - m_rr1) / 2 for x in ff]))
    assert gr is None


@pytest.mark.parametrize("name", ["rsgan", "ralsgan", "ragan"])
def test_relativistic_generator_losses_read_but_do_not_train_the_real_logits(name):
    loss = LOSSES.get(name)()
    base = float(loss.g_loss(_terms(R, F_)))
    assert float(loss.g_loss(_terms([3.0, -2.0], F_))) != pytest.approx(base)
    _, gr, gf = _grads(name, "g", R, F_)
    assert gr is None and gf is not None and bool((gf != 0).all())


G_LOSSES = ["vanilla", "nonsaturating", "minimax", "rkl", "kl", "skl", "lsgan", "hinge", "wgan",
            "ragan", "rsgan", "ralsgan"]


@pytest.mark.parametrize("name", G_LOSSES)
def test_every_generator_loss_falls_as_the_fake_logits_rise(name):
    real, fake = [0.5, 1.0], [-2.0, -1.5]            # fakes below every loss's target (lsgan 1, ralsgan mean r + 1)
    loss = LOSSES.get(name)()
    lower = float(loss.g_loss(_terms(real, fake)))
    higher = float(loss.g_loss(_terms(real, [x + 0.5 for x in fake])))
    assert higher < lower
    _, _, gf = _grads(name, "g", real, fake)
    assert bool((gf < 0).all())


@pytest.mark.parametrize("name", ["minimax", "rkl", "kl", "skl", "rsgan", "ralsgan"])
def test_new_losses_average_over_scales(name):
    loss = LOSSES.get(name)()
    r1, f1, r2, f2 = [1.0, 0.0], [0.0, -1.0], [2.0, 3.0], [0.5, -2.0]
    both = AdvTerms(lambda v: None, torch.zeros(1), torch.zeros(1), DOutput([torch.tensor(r1), torch.tensor(r2)]),
                    DOutput([torch.tensor(f1), torch.tensor(f2)]))
    for side in ("d_loss", "g_loss"):
        one, two = (float(getattr(loss, side)(_terms(r, f))) for r, f in ((r1, f1), (r2, f2)))
        assert float(getattr(loss, side)(both)) == pytest.approx((one + two) / 2)


# -- the optimal discriminator D* = p / (p + q): the generator losses are the divergences' terms
P, Q = [0.5, 0.3, 0.2], [0.2, 0.3, 0.5]              # data p and model q on three points


def _at_optimum():
    """Real logits drawn exactly in proportion to p, fake ones to q (10 samples each), at l* = log p/q."""
    lstar = [math.log(p / q) for p, q in zip(P, Q)]
    real = [lstar[i] for i, p in enumerate(P) for _ in range(round(10 * p))]
    fake = [lstar[i] for i, q in enumerate(Q) for _ in range(round(10 * q))]
    return lstar, _terms(real, fake)


def test_rkl_generator_loss_at_the_optimum_is_kl_q_p():
    _, t = _at_optimum()
    kl_qp = sum(q * math.log(q / p) for p, q in zip(P, Q))
    assert float(LOSSES.get("rkl")().g_loss(t)) == pytest.approx(kl_qp)


def test_kl_generator_loss_at_the_optimum_is_the_conjugate_term():
    lstar, t = _at_optimum()
    g = float(LOSSES.get("kl")().g_loss(t))
    assert g == pytest.approx(-1.0)                                   # E_q[exp(l*)] = E_q[p/q] = 1
    kl_pq = sum(p * math.log(p / q) for p, q in zip(P, Q))
    e_p_tstar = sum(p * (1 + lv) for p, lv in zip(P, lstar))         # T* = f'(p/q) = 1 + l*
    assert e_p_tstar + g == pytest.approx(kl_pq)                      # f-GAN bound E_p[T*] - E_q[f*(T*)] is tight


def test_skl_generator_loss_at_the_optimum_sums_the_two():
    lstar, t = _at_optimum()
    kl_pq = sum(p * math.log(p / q) for p, q in zip(P, Q))
    kl_qp = sum(q * math.log(q / p) for p, q in zip(P, Q))
    g = float(LOSSES.get("skl")().g_loss(t))
    assert g == pytest.approx(kl_qp - 1.0)
    assert sum(p * (1 + lv) for p, lv in zip(P, lstar)) + g == pytest.approx(kl_pq + kl_qp)


def test_minimax_at_the_optimum_is_the_js_game():
    _, t = _at_optimum()
    e_q_log_1md = sum(q * math.log(q / (p + q)) for p, q in zip(P, Q))
    assert float(LOSSES.get("minimax")().g_loss(t)) == pytest.approx(e_q_log_1md)
    m = [(p + q) / 2 for p, q in zip(P, Q)]
    js = (sum(p * math.log(p / mm) for p, mm in zip(P, m)) + sum(q * math.log(q / mm) for q, mm in zip(Q, m))) / 2
    assert float(LOSSES.get("minimax")().d_loss(t)) == pytest.approx(math.log(4) - 2 * js)   # D's BCE at D*


@pytest.mark.parametrize("name, dkl", [("rkl", 1.0), ("kl", 1.0), ("skl", 2.0)])
def test_generator_gradient_at_the_optimum_is_the_divergence_gradient(name, dkl):
    """p = N(0, 1), q = N(mu, 1) with x = mu + z: at D* (l*(x) = log p/q at mu0, held fixed) the reparametrised
    gradient of G's loss in mu is that of the divergence: KL(q||p) = KL(p||q) = mu^2 / 2, so mu0 (skl: 2 mu0)."""
    mu0 = 0.6
    z = torch.randn(400_000, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    mu = torch.tensor(mu0, dtype=torch.float64, requires_grad=True)
    x = mu + z
    lstar = -mu0 * x + mu0 ** 2 / 2                                  # log N(x; 0, 1) - log N(x; mu0, 1)
    t = AdvTerms(lambda v: None, torch.zeros(1), x, DOutput([lstar]), DOutput([lstar]))
    LOSSES.get(name)().g_loss(t).backward()
    assert float(mu.grad) == pytest.approx(dkl * mu0, rel=2e-2)
