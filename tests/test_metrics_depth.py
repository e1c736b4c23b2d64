"""Eigen-protocol depth errors against hand-computed cases and a numpy reference."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from bench.data.base import DatasetInfo
from bench.errors import MetricError
from bench.registry import METRICS, TASKS
from metrics.base import ScoreContext
from metrics.depth import DepthScorer, crop_box, depth_errors

LN2 = math.log(2.0)


def test_hand_computed_with_invalid_pixels() -> None:
    gt = torch.tensor([[1.0, 2.0], [4.0, 0.0]])        # the 0 is invalid
    pred = torch.tensor([[2.0, 2.0], [3.0, 5.0]])
    e = depth_errors(pred, gt)
    # valid pixels (gt, pred): (1, 2), (2, 2), (4, 3)
    assert e["rel"] == pytest.approx((1 / 1 + 0 + 1 / 4) / 3)
    assert e["sq_rel"] == pytest.approx((1 / 1 + 0 + 1 / 4) / 3)
    assert e["rms"] == pytest.approx(math.sqrt((1 + 0 + 1) / 3))
    assert e["rms_log"] == pytest.approx(math.sqrt((LN2 ** 2 + 0 + math.log(4 / 3) ** 2) / 3))
    assert e["log10"] == pytest.approx((math.log10(2) + 0 + math.log10(4 / 3)) / 3)
    # ratios 2, 1, 4/3: under 1.25 -> 1 of 3; under 1.5625 -> 2; under 1.953125 -> 2
    assert e["delta1"] == pytest.approx(1 / 3)
    assert e["delta2"] == pytest.approx(2 / 3)
    assert e["delta3"] == pytest.approx(2 / 3)


def test_shapes_are_equivalent() -> None:
    g = torch.Generator().manual_seed(0)
    gt = torch.rand(2, 6, 7, generator=g) * 9 + 0.5
    pred = torch.rand(2, 6, 7, generator=g) * 9 + 0.5
    a = depth_errors(pred, gt)
    b = depth_errors(pred.unsqueeze(1), gt.unsqueeze(1))
    assert a == pytest.approx(b)
    single = depth_errors(pred[0], gt[0])
    assert single == pytest.approx(depth_errors(pred[:1], gt[:1]))


def test_clipping_and_range_limits() -> None:
    # gt exactly at min_depth or max_depth is invalid (strict inequalities)
    gt = torch.tensor([[5.0, 1.0], [10.0, 1e-3]])
    pred = torch.tensor([[20.0, -3.0], [1.0, 1.0]])
    e = depth_errors(pred, gt, min_depth=1e-3, max_depth=10.0)
    # pred 20 -> 10 against 5: |5-10|/5 = 1; pred -3 -> 1e-3 against 1: 0.999
    assert e["rel"] == pytest.approx((1.0 + 0.999) / 2)
    assert e["rms"] == pytest.approx(math.sqrt((25 + 0.999 ** 2) / 2))
    assert e["log10"] == pytest.approx((math.log10(2) + 3) / 2)
    assert e["delta3"] == 0.0
    # a custom range makes other pixels valid
    e2 = depth_errors(torch.tensor([[3.0]]), torch.tensor([[2.0]]), min_depth=0.5, max_depth=2.5)
    assert e2["rel"] == pytest.approx(0.25)     # pred clipped to 2.5


def test_eigen_crop_boundaries_at_480x640() -> None:
    gt = torch.full((1, 480, 640), 2.0)
    pred = gt.clone()
    pred[0, 45, 41] = 4.0        # first pixel inside the crop
    pred[0, 470, 600] = 4.0      # last pixel inside the crop
    pred[0, 44, 41] = 100.0      # just above it
    pred[0, 471, 600] = 100.0    # just below it
    pred[0, 45, 40] = 100.0      # just left of it
    pred[0, 45, 601] = 100.0     # just right of it
    n_in = (471 - 45) * (601 - 41)
    e = depth_errors(pred, gt, crop="eigen")
    assert e["rel"] == pytest.approx(2 * 1.0 / n_in)
    assert e["delta1"] == pytest.approx(1 - 2 / n_in)
    assert crop_box("eigen", 480, 640) == (45, 471, 41, 601)
    # without the crop the outside pixels count (predictions clipped to 10 m)
    full = depth_errors(pred, gt)
    assert full["rel"] == pytest.approx((2 * 1.0 + 4 * 4.0) / (480 * 640))


def test_eigen_crop_scales_with_the_frame() -> None:
    # floor(45 * 240 / 480) = 22, floor(471 * 240 / 480) = 235, floor(41 * 320 / 640) = 20, floor(601 / 2) = 300
    assert crop_box("eigen", 240, 320) == (22, 235, 20, 300)
    # 256 x 256: 24, floor(251.2) = 251, floor(16.4) = 16, floor(240.4) = 240
    assert crop_box("eigen", 256, 256) == (24, 251, 16, 240)
    gt = torch.full((256, 256), 2.0)
    pred = gt.clone()
    pred[23, 100] = pred[251, 100] = pred[100, 15] = pred[100, 240] = 50.0   # all just outside
    pred[24, 16] = 3.0                                                         # inside
    e = depth_errors(pred, gt, crop="eigen")
    assert e["rel"] == pytest.approx(0.5 / ((251 - 24) * (240 - 16)))


def test_explicit_crop_tuple_and_bad_crops() -> None:
    gt = torch.full((8, 8), 2.0)
    pred = torch.full((8, 8), 3.0)
    pred[2:5, 1:7] = 2.0
    assert depth_errors(pred, gt, crop=(2, 5, 1, 7))["rel"] == 0.0
    assert depth_errors(pred, gt, crop=[2, 6, 1, 7])["rel"] == pytest.approx(6 * 0.5 / 24)
    with pytest.raises(MetricError, match="does not fit"):
        depth_errors(pred, gt, crop=(2, 9, 1, 7))
    with pytest.raises(MetricError, match="top, bottom, left, right"):
        depth_errors(pred, gt, crop=(2, 5))
    with pytest.raises(MetricError, match="unknown depth crop"):
        depth_errors(pred, gt, crop="garg")


def test_image_and_pixel_reductions_differ_as_computed_by_hand() -> None:
    gt = torch.zeros(3, 2, 2)
    pred = torch.ones(3, 2, 2)
    gt[0] = 1.0                       # 4 valid pixels, all exact
    gt[1, 0, 0] = 2.0                 # 1 valid pixel, pred 1: |2-1|/2 = 0.5, sq err 1
    # image 2 has no valid pixel: skipped by both reductions
    img = depth_errors(pred, gt, reduce="image")
    pix = depth_errors(pred, gt, reduce="pixel")
    assert img["rel"] == pytest.approx((0 + 0.5) / 2)
    assert pix["rel"] == pytest.approx(0.5 / 5)
    assert img["rms"] == pytest.approx((0 + 1) / 2)
    assert pix["rms"] == pytest.approx(math.sqrt(1 / 5))
    assert img["delta1"] == pytest.approx((1 + 0) / 2)
    assert pix["delta1"] == pytest.approx(4 / 5)
    with pytest.raises(MetricError, match="reduce"):
        depth_errors(pred, gt, reduce="batch")
    with pytest.raises(MetricError, match="no valid"):
        depth_errors(pred, torch.zeros_like(gt))


def _numpy_reference(pred: np.ndarray, gt: np.ndarray, lo: float, hi: float, reduce: str) -> dict[str, float]:
    per = []
    pooled = {k: [] for k in ("g", "p")}
    for p_img, g_img in zip(pred, gt):
        m = (g_img > lo) & (g_img < hi)
        if not m.any():
            continue
        g, p = g_img[m].astype(np.float64), np.clip(p_img[m], lo, hi).astype(np.float64)
        pooled["g"].append(g)
        pooled["p"].append(p)
        per.append((g, p))
    if reduce == "pixel":
        per = [(np.concatenate(pooled["g"]), np.concatenate(pooled["p"]))]
    rows = []
    for g, p in per:
        th = np.maximum(g / p, p / g)
        rows.append([np.mean(np.abs(g - p) / g), np.mean((g - p) ** 2 / g), np.sqrt(np.mean((g - p) ** 2)),
                     np.sqrt(np.mean((np.log(g) - np.log(p)) ** 2)), np.mean(np.abs(np.log10(g) - np.log10(p))),
                     np.mean(th < 1.25), np.mean(th < 1.25 ** 2), np.mean(th < 1.25 ** 3)])
    keys = ("rel", "sq_rel", "rms", "rms_log", "log10", "delta1", "delta2", "delta3")
    return dict(zip(keys, np.mean(rows, 0)))


@pytest.mark.parametrize("reduce", ["image", "pixel"])
def test_matches_numpy_reference_on_random_depth(reduce: str) -> None:
    rng = np.random.default_rng(0)
    gt = rng.uniform(0.0, 12.0, (4, 30, 40)).astype(np.float32)      # some beyond 10 m, invalid
    gt[1, :20] = 0.0                                                  # a hole
    pred = (gt * rng.uniform(0.6, 1.5, gt.shape) + rng.normal(0, 0.3, gt.shape)).astype(np.float32)
    got = depth_errors(torch.from_numpy(pred), torch.from_numpy(gt), reduce=reduce)
    want = _numpy_reference(pred, gt, 1e-3, 10.0, reduce)
    for k in want:
        assert got[k] == pytest.approx(want[k], rel=1e-5), k


# -- the scorer, streaming, with a bound task ------------------------------------------------------

INFO = DatasetInfo(name="toy-depth", tasks=("photo2depth",), max_depth=10.0, min_depth=1e-3)


def _ctx(tmp_path: Path, **options) -> ScoreContext:
    return ScoreContext(task=TASKS.get("photo2depth").bind(INFO), device=torch.device("cpu"),
                        cache_dir=tmp_path, options=options)


@pytest.mark.parametrize("options", [{}, {"reduce": "pixel"}, {"crop": [2, 14, 3, 17], "reduce": "image"}])
def test_scorer_streams_like_one_pass(tmp_path: Path, options: dict) -> None:
    assert METRICS.get("depth") is DepthScorer
    g = torch.Generator().manual_seed(1)
    gt = torch.rand(5, 1, 16, 20, generator=g) * 11
    gt[2, :, :8] = 0.0
    pred = torch.rand(5, 1, 16, 20, generator=g) * 2 - 1            # generator output in [-1, 1]
    two = DepthScorer(_ctx(tmp_path, **options))
    two.update(pred[:2], {"depth": gt[:2]})
    two.update(pred[2:], {"depth": gt[2:]})
    got = two.compute()
    metres = (pred + 1) / 2 * 10.0                                 # the task's decoding, by hand
    want = depth_errors(metres, gt, 1e-3, 10.0, crop=options.get("crop"), reduce=options.get("reduce", "image"))
    assert set(got) == set(want)
    for k in want:
        assert got[k] == pytest.approx(want[k], rel=1e-6), k
    proto = json.loads(json.dumps(two.protocol()))
    assert proto["min_depth"] == 1e-3 and proto["max_depth"] == 10.0
    assert proto["reduce"] == options.get("reduce", "image")
    assert proto["crop"] == options.get("crop")
    assert set(DepthScorer.higher_is_better) == {"delta1", "delta2", "delta3"}


def test_scorer_oracle_and_bad_options(tmp_path: Path) -> None:
    gt = torch.rand(2, 1, 8, 8) * 9 + 0.5
    gt[0, 0, 0, 0] = 0.0
    sc = DepthScorer(_ctx(tmp_path))
    batch = {"depth": gt}
    sc.update(sc.score_reference(batch), batch)
    e = sc.compute()
    assert e["rel"] < 1e-6 and e["delta1"] == 1.0
    with pytest.raises(MetricError, match="reduce"):
        DepthScorer(_ctx(tmp_path, reduce="median"))
    with pytest.raises(MetricError, match="unknown depth crop"):
        DepthScorer(_ctx(tmp_path, crop="kitti"))
    with pytest.raises(MetricError, match="no batches"):
        DepthScorer(_ctx(tmp_path)).compute()


def test_non_finite_predictions_follow_the_bts_policy_by_hand() -> None:
    # BTS eval: pred < min -> min, pred > max -> max, +inf -> max, NaN -> min (-inf is below the range)
    gt = torch.tensor([[2.0, 4.0], [5.0, 8.0]])
    pred = torch.tensor([[math.nan, math.inf], [-math.inf, 5.0]])
    e = depth_errors(pred, gt, min_depth=0.5, max_depth=10.0)
    # effective predictions 0.5, 10, 0.5, 5 against 2, 4, 5, 8
    assert all(math.isfinite(v) for v in e.values()), e
    assert e["rel"] == pytest.approx((1.5 / 2 + 6 / 4 + 4.5 / 5 + 3 / 8) / 4)
    assert e["sq_rel"] == pytest.approx((1.5 ** 2 / 2 + 36 / 4 + 4.5 ** 2 / 5 + 9 / 8) / 4)
    assert e["rms"] == pytest.approx(math.sqrt((1.5 ** 2 + 36 + 4.5 ** 2 + 9) / 4))
    logs = [math.log(4), math.log(2.5), math.log(10), math.log(1.6)]          # |ln gt/pred|
    assert e["rms_log"] == pytest.approx(math.sqrt(sum(v * v for v in logs) / 4))
    assert e["log10"] == pytest.approx(sum(v / math.log(10) for v in logs) / 4)
    # ratios 4, 2.5, 10, 1.6: none under 1.25 or 1.5625, one under 1.953125
    assert (e["delta1"], e["delta2"], e["delta3"]) == (0.0, 0.0, pytest.approx(0.25))
    # one NaN pixel among good ones costs that pixel only, pooled or per image
    good = torch.tensor([[2.0, 4.0], [5.0, 8.0]])
    pred2 = torch.stack([good, good.clone()])
    pred2[1, 0, 0] = math.nan
    e2 = depth_errors(pred2, torch.stack([gt, gt]), min_depth=0.5, max_depth=10.0, reduce="pixel")
    assert e2["rel"] == pytest.approx((1.5 / 2) / 8)
    assert e2["delta1"] == pytest.approx(7 / 8)


def test_scorer_scores_a_nan_prediction_and_stamps_the_policy(tmp_path: Path) -> None:
    gt = torch.full((1, 1, 2, 2), 5.0)
    pred = torch.zeros(1, 1, 2, 2)                                   # decodes to 5 m
    pred[0, 0, 0, 0] = math.nan                                      # -> min_depth 1e-3
    sc = DepthScorer(_ctx(tmp_path))
    sc.update(pred, {"depth": gt})
    e = sc.compute()
    assert e["rel"] == pytest.approx((5 - 1e-3) / 5 / 4, rel=1e-6)
    assert e["delta1"] == pytest.approx(3 / 4)
    assert "NaN -> min_depth" in json.loads(json.dumps(sc.protocol()))["non_finite_predictions"]
