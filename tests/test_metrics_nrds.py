"""NRDS: areas against numpy's trapezoid rule, the paper's toy example (golden), the image path."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import torch

from bench.errors import MetricError
from metrics import nrds as nr

PAPER_NRDS_CLOSE = 0.6717      # decoupled learning paper, toy example (papers.md section C)


def test_nrds_matches_numpy_trapezoid() -> None:
    rng = np.random.default_rng(0)
    curves = rng.uniform(0, 1, size=(4, 37))
    areas = np.trapezoid(curves, dx=1.0, axis=1)
    np.testing.assert_allclose(nr.curve_areas(curves), areas, rtol=1e-12)
    np.testing.assert_allclose(nr.nrds(curves), areas / areas.sum(), rtol=1e-12)
    # hand case: constant 0.5 over 3 epochs -> area 1; linear 1 -> 0 over 3 epochs -> area 1
    assert nr.nrds([[0.5, 0.5, 0.5], [1.0, 0.5, 0.0], [0.0, 0.0, 1.0]]) == pytest.approx([0.4, 0.4, 0.2])
    with pytest.raises(MetricError):
        nr.nrds([[0.5]])


# The toy's default protocol (metrics.nrds.toy_example; leaderboards/notes/nrds-toy-sensitivity.md):
# 50 points per set, Adam 2e-4 / beta1 0.5, one real + one fake per step, balanced per epoch, 300 epochs.
IDEAL_CLOSE = 0.6182            # NRDS(close) of the ideal classifier of a balanced protocol (hand-checked below)
IDEAL_OUTPUTS = (0.5028, 0.3105)  # its mean outputs E_close[D*], E_far[D*]
TOY_SEEDS = range(20)


def _calibrated_toy_grid() -> tuple[float, float, float]:
    """(E_close[D*], E_far[D*], NRDS(close)) of D* = p / (p + q_pooled), by 2-D quadrature on a grid."""
    h = 0.02
    g = np.arange(-9.0, 11.0, h)
    x, y = np.meshgrid(g, g, indexing="ij")

    def pdf(mx: float) -> np.ndarray:
        return np.exp(-((x - mx) ** 2 + y ** 2) / 2) / (2 * np.pi)
    p, qc, qf = pdf(0.0), pdf(0.5), pdf(1.5)
    d = p / (p + (qc + qf) / 2)
    ec, ef = (d * qc).sum() * h * h, (d * qf).sum() * h * h
    return float(ec), float(ef), float(ec / (ec + ef))


def _calibrated_toy_1d() -> tuple[float, float, float]:
    """The same, independently: the densities differ only along x, so y integrates out, and
    q_pooled / p = (exp(x / 2 - 1 / 8) + exp(3x / 2 - 9 / 8)) / 2; adaptive quadrature (scipy)."""
    from scipy.integrate import quad
    from scipy.stats import norm

    def d(x: float) -> float:
        return 1.0 / (1.0 + (np.exp(0.5 * x - 0.125) + np.exp(1.5 * x - 1.125)) / 2)
    ec = quad(lambda x: d(x) * norm.pdf(x, 0.5), -20, 20, points=[0.0, 1.5])[0]
    ef = quad(lambda x: d(x) * norm.pdf(x, 1.5), -20, 20, points=[0.0, 1.5])[0]
    return ec, ef, ec / (ec + ef)


def test_ideal_classifier_value_of_the_toy_protocol() -> None:
    """Golden (a): the calibrated D of the balanced toy gives NRDS(close) 0.6182, by two integrations."""
    grid, line = _calibrated_toy_grid(), _calibrated_toy_1d()
    np.testing.assert_allclose(grid, line, atol=1e-6)
    assert grid[:2] == pytest.approx(IDEAL_OUTPUTS, abs=1e-4)
    assert grid[2] == pytest.approx(IDEAL_CLOSE, abs=1e-4)
    assert grid[2] < PAPER_NRDS_CLOSE - 0.05                  # the published value is not the ideal one


@pytest.fixture(scope="module")
def toy_curves() -> np.ndarray:
    t0 = time.perf_counter()
    curves = nr.toy_curves(TOY_SEEDS)
    areas = np.stack([nr.curve_areas(c) for c in curves])
    close = areas[:, 0] / areas.sum(1)
    print(f"toy NRDS close over seeds 0-19: mean {close.mean():.4f} std {close.std(ddof=1):.4f} "
          f"5-95% {np.quantile(close, 0.05):.4f}-{np.quantile(close, 0.95):.4f}; mean areas "
          f"{areas.mean(0).round(1)}; {time.perf_counter() - t0:.1f}s")
    return curves


def test_toy_protocol_distribution_over_20_seeds(toy_curves: np.ndarray) -> None:
    """Golden (b): the default protocol over seeds 0-19 (each seed its own sample sets and D).

    Cost: 20 x 15,000 Adam steps, about 20 s on one loaded CPU core (all seeds at once).

    The published 0.6717 is NOT inside our 5-95% interval (0.572-0.664; mean 0.6145, std 0.033: the
    published value is 1.7 std above the mean, above all 20 seeds). No balanced protocol of the
    study contains it (leaderboards/notes/nrds-toy-sensitivity.md); this test pins what is true.
    """
    assert toy_curves.shape == (20, 2, 300)
    areas = np.stack([nr.curve_areas(c) for c in toy_curves])
    np.testing.assert_allclose(areas, np.trapezoid(toy_curves, axis=2), rtol=1e-12)
    close = np.array([nr.nrds(c)[0] for c in toy_curves])
    q05, q95 = np.quantile(close, [0.05, 0.95])
    assert abs(close.mean() - IDEAL_CLOSE) < 0.015               # centred on the ideal classifier (0.6145)
    assert 0.02 < close.std(ddof=1) < 0.05                        # 0.033: mostly the 50-point sets' draw
    assert 0.55 < q05 < 0.59 and 0.64 < q95 < 0.67                # 0.572 / 0.664
    assert q95 < PAPER_NRDS_CLOSE                                 # the published value lies outside
    assert (PAPER_NRDS_CLOSE - close.mean()) / close.std(ddof=1) == pytest.approx(1.72, abs=0.3)
    assert np.all(close > 0.5)                                    # the closer model always ranks first
    assert areas.mean(0) == pytest.approx([139.2, 88.2], abs=3.0)  # published 145.50 / 71.11


def test_batched_toy_curves_equal_toy_example() -> None:
    """toy_curves (all seeds at once) is toy_example seed by seed, for each balance and optimiser kind."""
    for n, opt, bal in [(nr.TOY_N, nr.TOY_OPTIMISER, nr.TOY_BALANCE), (30, "adam-1e-2-full", "none"),
                        (40, "sgd-1e-1-b64", "epoch")]:
        batched = nr.toy_curves([3, 7], n, 4, opt, bal)
        for i, seed in enumerate([3, 7]):
            np.testing.assert_allclose(batched[i], nr.toy_example(seed, n, 4, opt, bal).curves, atol=1e-5)


def test_nrds_is_deterministic_per_seed() -> None:
    a = nr.toy_example(seed=3, epochs=20)
    b = nr.toy_example(seed=3, epochs=20)
    np.testing.assert_array_equal(a.curves, b.curves)
    assert a.names == ["fake_close", "fake_far"] and sum(a.scores) == pytest.approx(1.0)


def test_balance_modes() -> None:
    g = torch.Generator().manual_seed(0)
    order = nr._epoch_order("batch", 5, 5, g)
    assert sorted(order.tolist()) == list(range(10))
    assert all(a < 5 <= b for a, b in order.view(-1, 2).tolist())   # every pair: one real, one fake
    with pytest.raises(MetricError, match="even"):
        nr.NRDS("mlp", batch_size=3, balance="batch")
    with pytest.raises(MetricError, match="balance"):
        nr.NRDS("mlp", balance="weighted")
    real, fake = torch.zeros(6, 2), torch.ones(12, 2)
    for bal in nr.BALANCES:
        res = nr.NRDS("mlp", epochs=3, batch_size=4, optimizer=nr.adam(1e-2), balance=bal)(real, [fake[:6], fake[6:]])
        assert res.curves.shape == (2, 3) and sum(res.scores) == pytest.approx(1.0)


def test_scorer_protocol_records_the_options_and_samples() -> None:
    from types import SimpleNamespace

    from bench.provenance import protocol_hash

    def run(points: int, **options) -> dict:
        ctx = SimpleNamespace(options={"classifier": "mlp", "epochs": 2, "batch_size": 2, "balance": "batch",
                                       **options}, device="cpu", seed=0, artifacts=None,
                              task=SimpleNamespace(y=lambda b: b["points"]))
        s = nr.NRDSScorer(ctx)
        g = torch.Generator().manual_seed(0)
        s.update_real({"points": torch.randn(points, 2, generator=g)})
        for m in ("b", "a"):
            s.update_model(m, torch.randn(points, 2, generator=g) + 1, {})
        s.compute_joint()
        return s.protocol()
    p = run(8)
    assert p["classifier"] == "mlp" and p["epochs"] == 2 and p["batch_size"] == 2 and p["balance"] == "batch"
    assert p["optimizer"] == "Adam lr 0.0002 betas (0.5, 0.999)"
    assert p["samples"] == {"real": 8, "a": 8, "b": 8} and p["sample_shape"] == [2]
    assert protocol_hash(p) == protocol_hash(run(8))                       # deterministic
    assert protocol_hash(p) != protocol_hash(run(10))                      # sample counts enter the hash
    assert protocol_hash(p) != protocol_hash(run(8, balance="epoch"))
    with pytest.raises(MetricError, match="even"):
        run(8, batch_size=3)


def test_image_classifier_path_on_tiny_images(tmp_path: Path) -> None:
    g = torch.Generator().manual_seed(0)
    real = torch.rand(24, 3, 16, 16, generator=g) * 2 - 1
    near = (real + 0.1 * torch.randn(24, 3, 16, 16, generator=g)).clamp(-1, 1)
    noise = torch.rand(20, 3, 16, 16, generator=g) * 2 - 1
    d = nr.ImageDiscriminator(3, 16)
    assert d(real[:2]).shape == (2,)
    convs = [m for m in d.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [64, 128, 256, 512] and convs[0].kernel_size == (5, 5)
    res = nr.NRDS("image", epochs=3, batch_size=16, seed=0)(real, {"near": near, "noise": noise})
    assert res.curves.shape == (2, 3) and np.all((res.curves > 0) & (res.curves < 1))
    assert sum(res.scores) == pytest.approx(1.0)
    out = res.plot(tmp_path / "nrds.png")
    assert out.is_file() and out.read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(MetricError):
        nr.NRDS("image", epochs=1)(real, [noise[:, :1]])


def test_custom_classifier_and_optimiser() -> None:
    real, fake = torch.zeros(8, 2), torch.ones(8, 2)
    built = []

    def build(shape: tuple[int, ...]) -> torch.nn.Module:
        built.append(shape)
        return nr.ToyMLP(2, hidden=4)
    res = nr.NRDS(build, epochs=30, batch_size=None, optimizer=nr.adam(5e-2))(real, [fake, fake.clone()])
    assert built == [(2,)]
    assert res.scores == pytest.approx([0.5, 0.5])              # identical models score the same
    assert res.curves[0, -1] < res.curves[0, 0]                 # D learns to reject the fakes


def test_a_nan_curve_is_a_one_line_error_naming_the_model() -> None:
    curves = [[0.5, 0.4, 0.3], [0.6, float("nan"), 0.2]]
    for f in (nr.curve_areas, nr.nrds):
        with pytest.raises(MetricError, match="'pix2pix'") as err:
            f(curves, names=["cyclegan", "pix2pix"])
        assert "\n" not in str(err.value) and "epoch 2" in str(err.value)
        with pytest.raises(MetricError, match="'model 1'"):     # without names: the row's index
            f(curves)
    with pytest.raises(MetricError, match="'model 0'"):
        nr.nrds([[float("inf"), 0.5], [0.5, 0.5]])


def test_a_model_with_nan_samples_is_named_before_training() -> None:
    g = torch.Generator().manual_seed(0)
    real, good = torch.randn(16, 2, generator=g), torch.randn(16, 2, generator=g) + 1
    bad = good.clone()
    bad[3, 1] = float("nan")
    with pytest.raises(MetricError, match="'broken'") as err:
        nr.NRDS("mlp", epochs=2, batch_size=None)(real, {"fine": good, "broken": bad})
    assert "\n" not in str(err.value)
    with pytest.raises(MetricError, match="'model 1'"):
        nr.NRDS("mlp", epochs=2, batch_size=None)(real, [good, bad])
    with pytest.raises(MetricError, match="real samples"):
        nr.NRDS("mlp", epochs=2, batch_size=None)(bad, [good])
