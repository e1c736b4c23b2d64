"""L1 / L2 / PSNR / SSIM against numpy and scipy references and hand-computed cases."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.signal import convolve2d

from bench.data.base import DatasetInfo
from bench.errors import MetricError
from bench.registry import METRICS, TASKS
from metrics.base import ScoreContext
from metrics.reconstruction import ReconstructionScorer, l1, l2, psnr, ssim


def _pair(seed: int = 0, shape=(3, 3, 24, 20)) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    a = torch.rand(shape, generator=g)
    b = (a + 0.2 * torch.randn(shape, generator=g)).clamp(0, 1)
    return a, b


def test_l1_l2_match_numpy() -> None:
    a, b = _pair()
    an, bn = a.double().numpy(), b.double().numpy()
    assert float(l1(a, b)) == pytest.approx(np.mean(np.abs(an - bn)), rel=1e-6)
    assert float(l2(a, b)) == pytest.approx(np.mean((an - bn) ** 2), rel=1e-6)
    np.testing.assert_allclose(l1(a, b, "none").numpy(), np.abs(an - bn).mean((1, 2, 3)), rtol=1e-6)


@pytest.mark.parametrize("data_range", [1.0, 255.0])
def test_psnr_matches_numpy(data_range: float) -> None:
    a, b = _pair(1)
    a, b = a * data_range, b * data_range
    an, bn = a.double().numpy(), b.double().numpy()
    mse = ((an - bn) ** 2).reshape(len(an), -1).mean(1)
    want = 10 * np.log10(data_range ** 2 / mse)
    np.testing.assert_allclose(psnr(a, b, data_range, "none").numpy(), want, rtol=1e-5)
    assert float(psnr(a, b, data_range)) == pytest.approx(want.mean(), rel=1e-5)


def test_psnr_hand_computed_and_identical() -> None:
    a = torch.zeros(2, 3, 8, 8)
    assert float(psnr(a, a + 0.1, 1.0)) == pytest.approx(20.0, abs=1e-4)    # mse 0.01 -> 20 dB
    assert float(psnr(a, a + 0.01, 1.0)) == pytest.approx(40.0, abs=1e-3)
    assert float(psnr(a, a, 1.0)) == float("inf")
    with pytest.raises(MetricError, match="data_range"):
        psnr(a, a, 0.0)


def _ssim_scipy(x: np.ndarray, y: np.ndarray, data_range: float) -> np.ndarray:
    """Wang et al. (2004) SSIM, Gaussian window 11 / sigma 1.5, 'valid' filtering; per image, mean over channels."""
    coords = np.arange(11) - 5
    g = np.exp(-coords ** 2 / (2 * 1.5 ** 2))
    g /= g.sum()
    w = np.outer(g, g)
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    out = np.zeros(x.shape[:2])
    for n in range(x.shape[0]):
        for c in range(x.shape[1]):
            a, b = x[n, c].astype(np.float64), y[n, c].astype(np.float64)
            f = lambda z: convolve2d(z, w, mode="valid")  # noqa: E731  (symmetric kernel)
            mu_a, mu_b = f(a), f(b)
            va, vb, cov = f(a * a) - mu_a ** 2, f(b * b) - mu_b ** 2, f(a * b) - mu_a * mu_b
            m = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a ** 2 + mu_b ** 2 + c1) * (va + vb + c2))
            out[n, c] = m.mean()
    return out.mean(1)


def test_ssim_matches_scipy_reference() -> None:
    a, b = _pair(2)
    want = _ssim_scipy(a.numpy(), b.numpy(), 1.0)
    np.testing.assert_allclose(ssim(a, b, 1.0, "none").numpy(), want, atol=2e-5)
    assert float(ssim(a, b, 1.0)) == pytest.approx(want.mean(), abs=2e-5)
    assert float(ssim(a, a, 1.0)) == pytest.approx(1.0, abs=1e-6)


def test_bad_inputs() -> None:
    a = torch.zeros(1, 3, 10, 16)
    with pytest.raises(MetricError, match="at least 11"):
        ssim(a, a, 1.0)
    with pytest.raises(MetricError, match="differ in shape"):
        l1(a, torch.zeros(1, 3, 10, 15))
    with pytest.raises(MetricError, match=r"\(N, C, H, W\)"):
        l2(a[0], a[0])
    with pytest.raises(MetricError, match="reduction"):
        l1(a, a, "sum")


# -- the scorer, streaming, with a bound task ------------------------------------------------------

INFO = DatasetInfo(name="toy-photos", tasks=("labels2photo",), num_classes=2,
                   palette=((0, 0, 0), (255, 255, 255)))


def _ctx(tmp_path: Path, task: str = "labels2photo", info: DatasetInfo = INFO) -> ScoreContext:
    return ScoreContext(task=TASKS.get(task).bind(info), device=torch.device("cpu"), cache_dir=tmp_path)


def test_scorer_context_encoder_convention(tmp_path: Path) -> None:
    """Off by 0.1 on [0, 1] everywhere: L1 10 %, L2 1 %, PSNR 20 dB (Pathak et al.'s table units)."""
    target = torch.rand(3, 3, 16, 16) * 1.6 - 0.8
    pred = target + 0.2                                  # 0.2 on [-1, 1] = 0.1 on [0, 1]
    sc = ReconstructionScorer(_ctx(tmp_path))
    sc.update(pred, {"photo": target})
    r = sc.compute()
    assert r["l1"] == pytest.approx(0.2, abs=1e-6)
    assert r["l2"] == pytest.approx(0.04, abs=1e-6)
    assert r["l1_pct"] == pytest.approx(10.0, abs=1e-4)
    assert r["l2_pct"] == pytest.approx(1.0, abs=1e-4)
    assert r["psnr"] == pytest.approx(20.0, abs=1e-3)
    assert 0 < r["ssim"] < 1


def test_scorer_streams_and_matches_references(tmp_path: Path) -> None:
    assert METRICS.get("reconstruction") is ReconstructionScorer
    g = torch.Generator().manual_seed(3)
    target = torch.rand(5, 3, 16, 16, generator=g) * 2 - 1
    pred = target + 0.4 * torch.randn(target.shape, generator=g)      # some values beyond [-1, 1]
    two = ReconstructionScorer(_ctx(tmp_path))
    two.update(pred[:2], {"photo": target[:2]})
    two.update(pred[2:], {"photo": target[2:]})
    one = ReconstructionScorer(_ctx(tmp_path))
    one.update(pred, {"photo": target})
    r2, r1 = two.compute(), one.compute()
    for k in r1:
        assert r2[k] == pytest.approx(r1[k], rel=1e-6), k

    p = np.clip(pred.double().numpy(), -1, 1)          # the scorer clamps predictions, as they would be saved
    t = target.double().numpy()
    p01, t01 = (p + 1) / 2, (t + 1) / 2
    assert r1["l1"] == pytest.approx(np.abs(p - t).mean(), rel=1e-5)
    assert r1["l2"] == pytest.approx(((p - t) ** 2).mean(), rel=1e-5)
    assert r1["l1_pct"] == pytest.approx(100 * np.abs(p01 - t01).mean(), rel=1e-5)
    assert r1["l2_pct"] == pytest.approx(100 * ((p01 - t01) ** 2).mean(), rel=1e-5)
    mse = ((p01 - t01) ** 2).reshape(5, -1).mean(1)
    assert r1["psnr"] == pytest.approx(np.mean(10 * np.log10(1 / mse)), rel=1e-5)
    assert r1["ssim"] == pytest.approx(_ssim_scipy(p01, t01, 1.0).mean(), abs=2e-5)
    assert set(ReconstructionScorer.higher_is_better) == {"psnr", "ssim"}
    assert json.loads(json.dumps(one.protocol()))["ssim"]["data_range"] == 1.0


def test_scorer_no_oracle_and_wrong_task(tmp_path: Path) -> None:
    sc = ReconstructionScorer(_ctx(tmp_path))
    assert sc.score_reference({"photo": torch.zeros(1, 3, 16, 16)}) is None
    with pytest.raises(MetricError, match="no batches"):
        sc.compute()
    seg = DatasetInfo(name="toy-seg", tasks=("photo2labels",), num_classes=2, palette=((0, 0, 0), (9, 9, 9)))
    with pytest.raises(MetricError, match="image outputs"):
        ReconstructionScorer(_ctx(tmp_path, "photo2labels", seg))


def test_region_errors_by_hand():
    from metrics.reconstruction import region_errors
    pred = torch.zeros(1, 3, 4, 4)
    target = torch.zeros(1, 3, 4, 4)
    target[:, :, :2, :2] = 1.0                       # the region holds the whole error
    target[:, :, 3, 3] = -1.0                        # an error outside the region is ignored
    mask = torch.zeros(1, 1, 4, 4)
    mask[:, :, :2, :2] = 1
    e1, e2 = region_errors(pred, target, mask)
    assert e1.tolist() == [1.0] and e2.tolist() == [1.0]
    mask[:, :, 0, 0] = 0                             # 3 region pixels, all with error 1
    assert region_errors(pred, target, mask)[0].tolist() == [1.0]
    with pytest.raises(MetricError, match="empty"):
        region_errors(pred, target, torch.zeros(1, 1, 4, 4))


def test_scorer_on_a_region_scores_only_the_region():
    from bench.contracts import ScoreContext
    from bench.data.base import DatasetInfo
    from bench.registry import METRICS, TASKS
    info = DatasetInfo(name="d", tasks=(), provides=("photo", "index"))
    task = TASKS.get("inpaint-center").bind(info)
    s = METRICS.get("reconstruction")(ScoreContext(task=task, device=torch.device("cpu"), cache_dir=Path("."),
                                                   options={"region": "mask"}))
    photo = torch.zeros(2, 3, 8, 8)
    pred = photo.clone()
    pred[:, :, 2:6, 2:6] = 0.5                       # error 0.5 inside the centre square
    pred[:, :, 0, 0] = 1.0                           # outside it: not counted
    s.update(pred, {"photo": photo, "index": torch.tensor([0, 1])})
    out = s.compute()
    assert "ssim" not in out and out["l1"] == pytest.approx(0.5) and out["l2"] == pytest.approx(0.25)
    assert out["psnr"] == pytest.approx(10 * math.log10(4 / 0.25))
    with pytest.raises(MetricError, match="not a mask field"):
        METRICS.get("reconstruction")(ScoreContext(task=task, device=torch.device("cpu"), cache_dir=Path("."),
                                                   options={"region": "photo"}))


# -- PSNR's reduction, SSIM's precision on flat images ----------------------------------------------

def test_psnr_rejects_an_unknown_reduction() -> None:
    a = torch.zeros(2, 3, 8, 8)
    for bad in ("sum", "mean ", "batch"):
        with pytest.raises(MetricError, match="reduction") as err:
            psnr(a, a + 0.1, 1.0, bad)
        assert "\n" not in str(err.value) and "'mean'" in str(err.value)


def _flat_ssim(a: float, b: float, data_range: float = 1.0) -> float:
    """SSIM of two constant images a, b: both variances and the covariance are 0, so contrast x
    structure is (0 + C2) / (0 + 0 + C2) = 1 and only luminance is left (every window alike)."""
    c1 = (0.01 * data_range) ** 2
    return (2 * a * b + c1) / (a * a + b * b + c1)


FLAT_PAIRS = [(0.25, 0.75), (0.875, 0.625), (0.5, 0.515625), (0.9, 0.6)]


@pytest.mark.parametrize("a,b", FLAT_PAIRS)
def test_ssim_of_flat_images_equals_the_closed_form(a: float, b: float) -> None:
    x, y = torch.full((2, 3, 32, 24), a), torch.full((2, 3, 32, 24), b)
    a32, b32 = float(x[0, 0, 0, 0]), float(y[0, 0, 0, 0])       # the float32 values scored
    want = _flat_ssim(a32, b32)
    got = ssim(x, y, 1.0, "none")
    assert got.shape == (2,)
    assert float(abs(got - want).max()) < 1e-6, (got.tolist(), want)
    assert abs(float(ssim(x, y, 1.0)) - want) < 1e-6


def test_scorer_ssim_of_flat_images_equals_the_closed_form(tmp_path: Path) -> None:
    pred, target = torch.full((2, 3, 16, 16), -0.5), torch.full((2, 3, 16, 16), 0.5)   # 0.25 / 0.75 on [0, 1]
    sc = ReconstructionScorer(_ctx(tmp_path))
    sc.update(pred, {"photo": target})
    assert abs(sc.compute()["ssim"] - _flat_ssim(0.25, 0.75)) < 1e-6
    assert sc.protocol()["ssim"]["dtype"] == "float64"
