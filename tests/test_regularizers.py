"""Regularisers against closed forms: penalties on critics whose input gradient is known, orthogonality of
hand-made weights, instance noise's annealed scale; and the combiner's sides."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from bench.contracts import AdvTerms, DOutput, Regularizer
from bench.errors import PluginError
from bench.registry import REGULARIZERS
from bench.adversarial import Regularizers


def reg(name: str) -> Regularizer:
    return REGULARIZERS.get(name)()


def value(name: str, t: AdvTerms) -> float:
    return float(reg(name)(t).detach())


class LinearCritic:
    """D(v) = <w, v> per sample: grad_v D = w, whatever v is."""

    def __init__(self, w: torch.Tensor):
        self.w = w

    def __call__(self, v: torch.Tensor) -> DOutput:
        return DOutput([(v * self.w).flatten(1).sum(1)])


class QuadraticCritic:
    """D(v) = ||v||^2 / 2 per sample: grad_v D = v, so a penalty tells where it was taken."""

    def __call__(self, v: torch.Tensor) -> DOutput:
        return DOutput([v.pow(2).flatten(1).sum(1) / 2])


W = torch.tensor([[[2.0, -1.0], [0.0, 2.0]]])                   # ||w||^2 = 9, ||w|| = 3


def test_gp_r1_r2_on_a_linear_critic():
    t = AdvTerms(LinearCritic(W), torch.randn(4, 1, 2, 2), torch.randn(4, 1, 2, 2))
    assert value("gp", t) == pytest.approx((3 - 1) ** 2)
    assert value("r1", t) == pytest.approx(9 / 2)
    assert value("r2", t) == pytest.approx(9 / 2)


def test_r1_reads_the_real_samples_and_r2_the_generated_ones():
    real = torch.tensor([[1.0, 2.0], [0.0, 1.0]])                # ||.||^2: 5, 1 -> mean 3
    fake = torch.tensor([[3.0, 0.0], [0.0, 0.0]])                # ||.||^2: 9, 0 -> mean 4.5
    t = AdvTerms(QuadraticCritic(), real, fake)
    assert value("r1", t) == pytest.approx(3 / 2)
    assert value("r2", t) == pytest.approx(4.5 / 2)


def test_r2_trains_the_critic_not_the_generator():
    g = nn.Parameter(torch.tensor([[1.0, -1.0]]))               # the "generator": fake = g * 2
    w = nn.Parameter(torch.tensor([[0.5, 1.5]]))
    t = AdvTerms(LinearCritic(w), torch.zeros(1, 2), g * 2)
    reg("r2")(t).backward()
    assert g.grad is None
    torch.testing.assert_close(w.grad, w.detach())               # d/dw ||w||^2 / 2 = w


# ------------------------------------------------------------------------------ orthogonal
def _linear(weight: list[list[float]]) -> nn.Linear:
    w = torch.tensor(weight)
    m = nn.Linear(w.shape[1], w.shape[0])
    with torch.no_grad():
        m.weight.copy_(w)
    return m


A = [[1.0, 2.0], [3.0, 4.0]]            # W W^T = [[5, 11], [11, 25]]: off-diagonal 2 * 11^2 = 242
B = [[1.0, 0.0], [1.0, 1.0], [0.0, 2.0]]  # W W^T = [[1, 1, 0], [1, 2, 2], [0, 2, 4]]: 2 * (1 + 0 + 4) = 10


def test_orthogonal_by_hand():
    d = nn.Sequential(_linear(A), nn.ReLU(), _linear(B))
    t = AdvTerms(lambda v: None, torch.zeros(1), torch.zeros(1), modules={"D": d})
    assert value("orthogonal", t) == pytest.approx(242 + 10)
    q = nn.Sequential(_linear([[0.6, -0.8], [0.8, 0.6]]))        # orthogonal rows: no penalty
    assert value("orthogonal", AdvTerms(lambda v: None, torch.zeros(1), torch.zeros(1), modules={"D": q})) \
        == pytest.approx(0.0, abs=1e-6)


def test_orthogonal_gradient_is_four_times_the_masked_gram_times_w():
    m = _linear(B)
    t = AdvTerms(lambda v: None, torch.zeros(1), torch.zeros(1), modules={"D": m})
    reg("orthogonal")(t).backward()
    w = m.weight.detach()
    gram = w @ w.t()
    torch.testing.assert_close(m.weight.grad, 4 * (gram * (1 - torch.eye(3))) @ w)
    assert m.bias.grad is None


def test_orthogonal_reshapes_conv_weights_and_reads_the_weight_before_spectral_norm():
    conv = nn.Conv2d(1, 2, kernel_size=(1, 2), bias=False)
    with torch.no_grad():
        conv.weight.copy_(torch.tensor(A).reshape(2, 1, 1, 2))
    t = AdvTerms(lambda v: None, torch.zeros(1), torch.zeros(1), modules={"D": conv})
    assert value("orthogonal", t) == pytest.approx(242)
    sn = spectral_norm(_linear(A))
    t = AdvTerms(lambda v: None, torch.zeros(1), torch.zeros(1), modules={"D": sn})
    assert value("orthogonal", t) == pytest.approx(242)     # the raw parameter, not W / sigma


def test_orthogonal_sides_and_missing_modules():
    assert reg("orthogonal").applies_to == "d" and reg("orthogonal-g").applies_to == "g"
    g, d = _linear(A), _linear(B)
    t = AdvTerms(lambda v: None, torch.zeros(1), torch.zeros(1), modules={"G": g, "D": d})
    assert value("orthogonal-g", t) == pytest.approx(242)
    total, parts = Regularizers({"orthogonal": 0.5, "orthogonal-g": 2.0}).d(t)
    assert float(total.detach()) == pytest.approx(0.5 * 10) and set(parts) == {"orthogonal"}
    total, parts = Regularizers({"orthogonal": 0.5, "orthogonal-g": 2.0}).g(t)
    assert float(total.detach()) == pytest.approx(2.0 * 242) and set(parts) == {"orthogonal-g"}
    bare = AdvTerms(lambda v: None, torch.zeros(1), torch.zeros(1))
    with pytest.raises(ValueError, match=r"pass modules=\{'D'"):
        reg("orthogonal")(bare)
    with pytest.raises(ValueError, match="no conv / linear weight"):
        reg("orthogonal")(AdvTerms(lambda v: None, torch.zeros(1), torch.zeros(1), modules={"D": nn.ReLU()}))


# ------------------------------------------------------------------------------ instance noise
@pytest.mark.parametrize("progress, sigma", [(0.0, 0.2), (0.5, 0.1), (0.25, 0.15)])
def test_instance_noise_sigma_anneals_linearly(progress, sigma):
    torch.manual_seed(0)
    v = torch.full((200_000,), 3.0)
    out = reg("instance-noise").perturb(v, 0.2, progress)
    noise = out - v
    assert float(noise.std()) == pytest.approx(sigma, rel=0.02)
    assert abs(float(noise.mean())) < 5 * sigma / math.sqrt(v.numel())


def test_instance_noise_is_zero_at_the_end():
    v = torch.randn(1000)
    assert torch.equal(reg("instance-noise").perturb(v, 0.2, 1.0), v)


def test_the_combiner_perturbs_with_input_regularisers_only():
    regs = Regularizers({"instance-noise": 0.4, "gp": 10.0})
    torch.manual_seed(1)
    v = torch.zeros(100_000)
    assert float(regs.perturb(v, 0.5).std()) == pytest.approx(0.2, rel=0.02)
    t = AdvTerms(LinearCritic(W), torch.randn(3, 1, 2, 2), torch.randn(3, 1, 2, 2))
    total, parts = regs.d(t)                                     # instance noise adds no loss term
    assert set(parts) == {"gp"} and float(total) == pytest.approx(10 * (3 - 1) ** 2)
    assert regs.g(t) == (None, {})
    assert Regularizers({"gp": 10.0}).perturb(v, 0.5) is v


def test_a_regulariser_with_an_unknown_side_is_refused(monkeypatch):
    class Sideways(Regularizer):
        applies_to = "both"

    REGULARIZERS.names()                                          # built-ins loaded before the patch
    monkeypatch.setitem(REGULARIZERS._entries, "sideways", Sideways)
    with pytest.raises(PluginError, match="regulariser 'sideways' applies to 'both'; set its applies_to to one of"):
        Regularizers({"sideways": 1.0})
