"""Confusion matrix and segmentation scores against scikit-learn and hand-computed cases."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.metrics import accuracy_score, balanced_accuracy_score, jaccard_score
from sklearn.metrics import confusion_matrix as sk_confusion_matrix

from bench.data.base import DatasetInfo
from bench.errors import MetricError
from bench.registry import METRICS, TASKS
from bench.tasks import labels_to_rgb
from metrics.base import ScoreContext
from metrics.segmentation import SegmentationScorer, confusion_matrix, scores

IGNORE = 255


def _random_labels(seed: int, shape=(3, 17, 23), pred_classes=5, target_classes=4):
    """Targets use classes 0..3 plus ignore (255) and out-of-range ids (7, -1); predictions 0..4."""
    g = torch.Generator().manual_seed(seed)
    target = torch.randint(0, target_classes, shape, generator=g)
    r = torch.rand(shape, generator=g)
    target[r < 0.15] = IGNORE
    target[(r >= 0.15) & (r < 0.2)] = 7
    target[(r >= 0.2) & (r < 0.22)] = -1
    pred = torch.randint(0, pred_classes, shape, generator=g)
    return pred, target


def _kept(pred: torch.Tensor, target: torch.Tensor, c: int) -> tuple[np.ndarray, np.ndarray]:
    t, p = target.numpy().ravel(), pred.numpy().ravel()
    keep = (t != IGNORE) & (t >= 0) & (t < c)
    return t[keep], p[keep]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_confusion_matrix_matches_sklearn(seed: int) -> None:
    c = 6
    pred, target = _random_labels(seed)
    t, p = _kept(pred, target, c)
    expected = sk_confusion_matrix(t, p, labels=list(range(c)))
    cm = confusion_matrix(pred, target, c, ignore_index=IGNORE)
    assert cm.dtype == torch.int64 and cm.shape == (c, c)
    np.testing.assert_array_equal(cm.numpy(), expected)


@pytest.mark.parametrize("seed", [0, 3])
def test_scores_match_sklearn_and_numpy_iou(seed: int) -> None:
    # 6 classes: 0..3 in the target, 4 only predicted (IoU 0, counted), 5 nowhere (excluded)
    c = 6
    pred, target = _random_labels(seed)
    t, p = _kept(pred, target, c)
    cm_np = sk_confusion_matrix(t, p, labels=list(range(c))).astype(float)
    inter = np.diag(cm_np)
    union = cm_np.sum(0) + cm_np.sum(1) - inter
    present = union > 0
    iou_np = inter[present] / union[present]

    s = scores(confusion_matrix(pred, target, c, IGNORE))
    assert s["pixel_acc"] == pytest.approx(accuracy_score(t, p), abs=1e-12)
    with pytest.warns(UserWarning):        # sklearn: y_pred holds class 4, absent from y_true
        bal = balanced_accuracy_score(t, p)
    assert s["mean_class_acc"] == pytest.approx(bal, abs=1e-12)
    assert s["mean_iou"] == pytest.approx(iou_np.mean(), abs=1e-12)
    assert present.tolist() == [True] * 5 + [False]
    labels_present = [k for k in range(c) if present[k]]
    iou_sk = jaccard_score(t, p, labels=labels_present, average=None)
    np.testing.assert_allclose(np.array(s["iou_per_class"])[present], iou_sk, atol=1e-12)
    assert s["iou_per_class"][4] == 0.0
    assert math.isnan(s["iou_per_class"][5])


def test_scores_hand_computed() -> None:
    target = torch.tensor([0, 0, 1, 255, 1, 1])
    pred = torch.tensor([0, 1, 1, 0, 1, 0])
    cm = confusion_matrix(pred, target, 2)
    assert cm.tolist() == [[1, 1], [1, 2]]
    s = scores(cm)
    assert s["pixel_acc"] == pytest.approx(3 / 5)
    assert s["mean_class_acc"] == pytest.approx((1 / 2 + 2 / 3) / 2)
    # IoU class 0: 1 / (2 + 2 - 1); class 1: 2 / (3 + 3 - 2)
    assert s["iou_per_class"] == pytest.approx([1 / 3, 2 / 4])
    assert s["mean_iou"] == pytest.approx((1 / 3 + 1 / 2) / 2)


def test_empty_confusion_matrix_gives_nan() -> None:
    cm = confusion_matrix(torch.zeros(4, dtype=torch.int64), torch.full((4,), 255), 3)
    assert int(cm.sum()) == 0
    s = scores(cm)
    assert all(math.isnan(s[k]) for k in ("pixel_acc", "mean_class_acc", "mean_iou"))


def test_bad_inputs_raise_metric_error() -> None:
    t = torch.zeros(2, 4, 4, dtype=torch.int64)
    with pytest.raises(MetricError, match="0..2"):
        confusion_matrix(torch.full_like(t, 3), t, 3)
    with pytest.raises(MetricError, match="shape"):
        confusion_matrix(torch.zeros(2, 4, 5, dtype=torch.int64), t, 3)
    with pytest.raises(MetricError, match="integer"):
        confusion_matrix(t.float(), t, 3)
    # an out-of-range prediction on an ignored pixel is harmless
    target = torch.tensor([0, 255])
    assert confusion_matrix(torch.tensor([0, 9]), target, 3).sum() == 1


def test_confusion_matrix_runs_on_cpu() -> None:
    pred, target = _random_labels(0)
    cm = confusion_matrix(pred, target, 6)
    assert cm.device.type == "cpu"


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_confusion_matrix_stays_on_cuda() -> None:
    pred, target = _random_labels(0)
    cm = confusion_matrix(pred.cuda(), target.cuda(), 6)
    assert cm.device.type == "cuda"
    np.testing.assert_array_equal(cm.cpu().numpy(), confusion_matrix(pred, target, 6).numpy())


# -- the scorer, streaming, with a bound task ------------------------------------------------------

PALETTE = ((128, 64, 128), (70, 70, 70), (220, 20, 60), (0, 0, 142))
INFO = DatasetInfo(name="toy-seg", tasks=("photo2labels",), num_classes=4, ignore_index=IGNORE,
                   palette=PALETTE)


def _ctx(tmp_path: Path, label_output: str = "rgb") -> ScoreContext:
    task = TASKS.get("photo2labels").bind(INFO, label_output=label_output)
    return ScoreContext(task=task, device=torch.device("cpu"), cache_dir=tmp_path)


def _batches(seed: int = 0):
    pred_lab, target = _random_labels(seed, shape=(4, 12, 10), pred_classes=4, target_classes=4)
    return pred_lab, target


def _encode(pred_lab: torch.Tensor, label_output: str, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    if label_output == "logits":
        logits = torch.randn(pred_lab.shape[0], 4, *pred_lab.shape[1:], generator=g)
        return logits.scatter(1, pred_lab.unsqueeze(1), 10.0)
    rgb = labels_to_rgb(pred_lab, INFO.palette_tensor())
    return rgb + 0.05 * torch.randn(rgb.shape, generator=g)          # a slightly noisy generator output


@pytest.mark.parametrize("label_output", ["rgb", "logits"])
def test_scorer_streams_and_matches_sklearn(tmp_path: Path, label_output: str) -> None:
    assert METRICS.get("segmentation") is SegmentationScorer
    pred_lab, target = _batches()
    pred = _encode(pred_lab, label_output)

    two = SegmentationScorer(_ctx(tmp_path, label_output))
    two.update(pred[:1], {"label": target[:1]})
    two.update(pred[1:], {"label": target[1:]})
    one = SegmentationScorer(_ctx(tmp_path, label_output))
    one.update(pred, {"label": target})
    got_two, got_one = two.compute(), one.compute()
    assert set(got_two) == {"pixel_acc", "mean_class_acc", "mean_iou"}
    for k in got_one:
        assert got_two[k] == pytest.approx(got_one[k], abs=1e-12)

    t, p = _kept(pred_lab, target, 4)
    cm_np = sk_confusion_matrix(t, p, labels=[0, 1, 2, 3]).astype(float)
    inter = np.diag(cm_np)
    iou = inter / (cm_np.sum(0) + cm_np.sum(1) - inter)
    assert got_one["pixel_acc"] == pytest.approx(accuracy_score(t, p), abs=1e-12)
    assert got_one["mean_class_acc"] == pytest.approx(balanced_accuracy_score(t, p), abs=1e-12)
    assert got_one["mean_iou"] == pytest.approx(iou.mean(), abs=1e-12)
    assert set(SegmentationScorer.higher_is_better) == set(got_one)


def test_scorer_oracle_is_perfect(tmp_path: Path) -> None:
    _, target = _batches()
    label_rgb = labels_to_rgb(target, INFO.palette_tensor(), IGNORE)
    batch = {"label": target, "label_rgb": label_rgb}
    sc = SegmentationScorer(_ctx(tmp_path))
    sc.update(sc.score_reference(batch), batch)
    assert sc.compute() == {"pixel_acc": 1.0, "mean_class_acc": 1.0, "mean_iou": 1.0}
    proto = json.loads(json.dumps(sc.protocol()))
    assert proto["num_classes"] == 4 and proto["ignore_index"] == IGNORE


def test_scorer_refuses_other_tasks_and_empty_runs(tmp_path: Path) -> None:
    depth_info = DatasetInfo(name="toy-depth", tasks=("photo2depth",), max_depth=10.0)
    ctx = ScoreContext(task=TASKS.get("photo2depth").bind(depth_info), device=torch.device("cpu"),
                       cache_dir=tmp_path)
    with pytest.raises(MetricError, match="label outputs"):
        SegmentationScorer(ctx)
    with pytest.raises(MetricError, match="no labelled pixels"):
        SegmentationScorer(_ctx(tmp_path)).compute()


# -- an ignore index inside 0..C-1, and the class_average option -------------------------------------

def test_ignore_index_inside_the_classes_is_left_out_of_both_means_by_hand() -> None:
    # 3 classes, class 0 is the ignore index: target 0 is not counted, a prediction 0 is an error
    target = torch.tensor([1, 1, 2, 2, 0])
    pred = torch.tensor([1, 0, 2, 0, 1])
    cm = confusion_matrix(pred, target, 3, ignore_index=0)
    assert cm.tolist() == [[0, 0, 0], [1, 1, 0], [1, 0, 1]]
    for average in ("present", "all"):
        s = scores(cm, average, ignore_index=0)
        assert s["pixel_acc"] == pytest.approx(2 / 4)
        assert s["mean_class_acc"] == pytest.approx((1 / 2 + 1 / 2) / 2)       # classes 1 and 2 only
        assert s["mean_iou"] == pytest.approx((1 / 2 + 1 / 2) / 2)             # 1 / (2 + 1 - 1) each
        assert math.isnan(s["iou_per_class"][0]) and s["iou_per_class"][1:] == pytest.approx([0.5, 0.5])


def test_a_matrix_made_with_an_ignore_index_keeps_that_class_out_of_scores_without_being_told_again() -> None:
    # issue 22 item 9n: confusion_matrix(..., ignore_index=0) then scores(cm) kept class 0 in the means (an IoU of
    # 0 for the predictions of it: mean_iou (0 + 1/2 + 1/2) / 3 under "present"; and 0 class accuracy under "all")
    target = torch.tensor([1, 1, 2, 2, 0])
    pred = torch.tensor([1, 0, 2, 0, 1])
    cm = confusion_matrix(pred, target, 3, ignore_index=0)
    for average in ("present", "all"):
        s = scores(cm, average)
        assert s["pixel_acc"] == pytest.approx(2 / 4)
        assert s["mean_class_acc"] == pytest.approx((1 / 2 + 1 / 2) / 2)
        assert s["mean_iou"] == pytest.approx((1 / 2 + 1 / 2) / 2)
        assert math.isnan(s["iou_per_class"][0])
    # an ignore index outside 0..C-1 leaves every class in; a caller's own ignore_index wins
    cm255 = confusion_matrix(pred, target, 3, ignore_index=255)
    assert scores(cm255)["mean_iou"] == pytest.approx((0 + 1 / 3 + 1 / 2) / 3)   # 0 / 3, 1 / (2 + 2 - 1), 1 / 2
    assert scores(cm, ignore_index=-1)["mean_iou"] == pytest.approx((0 + 1 / 2 + 1 / 2) / 3)


@pytest.mark.parametrize("seed", [0, 1])
def test_ignore_index_inside_the_classes_matches_sklearn(tmp_path: Path, seed: int) -> None:
    c, ignore = 4, 0
    g = torch.Generator().manual_seed(seed)
    target = torch.randint(0, c, (3, 9, 11), generator=g)
    pred = torch.randint(0, c, (3, 9, 11), generator=g)
    t, p = target.numpy().ravel(), pred.numpy().ravel()
    keep = t != ignore
    t, p = t[keep], p[keep]
    labels = [k for k in range(c) if k != ignore]
    iou_sk = jaccard_score(t, p, labels=labels, average=None)
    acc_sk = sk_confusion_matrix(t, p, labels=list(range(c))).diagonal()[labels] / np.bincount(t, minlength=c)[labels]

    s = scores(confusion_matrix(pred, target, c, ignore_index=ignore), ignore_index=ignore)
    assert s["mean_iou"] == pytest.approx(iou_sk.mean(), abs=1e-12)
    assert s["mean_class_acc"] == pytest.approx(acc_sk.mean(), abs=1e-12)
    assert s["pixel_acc"] == pytest.approx(accuracy_score(t, p), abs=1e-12)
    # the scorer takes the ignore index from the dataset and leaves that class out too
    info = DatasetInfo(name="toy-seg0", tasks=("photo2labels",), num_classes=c, ignore_index=ignore,
                       palette=PALETTE)
    sc = SegmentationScorer(ScoreContext(task=TASKS.get("photo2labels").bind(info, label_output="logits"),
                                         device=torch.device("cpu"), cache_dir=tmp_path))
    sc.update(torch.nn.functional.one_hot(pred, c).permute(0, 3, 1, 2).float() * 10, {"label": target})
    got = sc.compute()
    assert got["mean_iou"] == pytest.approx(iou_sk.mean(), abs=1e-12)
    assert got["mean_class_acc"] == pytest.approx(acc_sk.mean(), abs=1e-12)
    assert "class 0" in sc.protocol()["mean_iou"]


def _pix2pix_get_scores(hist: np.ndarray) -> tuple[float, float, float]:
    """pix2pix's scripts/eval_cityscapes/util.py get_scores: every class, absent ones count 0."""
    acc = np.diag(hist).sum() / (hist.sum() + 1e-12)
    cl_acc = np.diag(hist) / (hist.sum(1) + 1e-12)
    iu = np.diag(hist) / (hist.sum(1) + hist.sum(0) - np.diag(hist) + 1e-12)
    return acc, np.nanmean(cl_acc), np.nanmean(iu)


@pytest.mark.parametrize("seed", [0, 3])
def test_class_average_all_is_pix2pix_fcn_score(seed: int) -> None:
    # 6 classes: 0..3 in the target, 4 only predicted, 5 nowhere: "all" counts 4 and 5 as 0
    c = 6
    pred, target = _random_labels(seed)
    t, p = _kept(pred, target, c)
    hist = sk_confusion_matrix(t, p, labels=list(range(c))).astype(float)
    acc, cl_acc, iu = _pix2pix_get_scores(hist)
    cm = confusion_matrix(pred, target, c, IGNORE)
    s = scores(cm, "all")
    assert s["pixel_acc"] == pytest.approx(acc, abs=1e-9)
    assert s["mean_class_acc"] == pytest.approx(cl_acc, abs=1e-9)
    assert s["mean_iou"] == pytest.approx(iu, abs=1e-9)
    assert s["iou_per_class"][5] == 0.0
    present = scores(cm, "present")            # the default, unchanged
    assert {k: v for k, v in present.items() if k != "iou_per_class"} == \
        {k: v for k, v in scores(cm).items() if k != "iou_per_class"}
    assert present["mean_iou"] == pytest.approx(iu * c / 5, abs=1e-9)      # 5 classes in target or prediction
    assert present["mean_class_acc"] == pytest.approx(cl_acc * c / 4, abs=1e-9)  # 4 classes in the target


def test_scorer_class_average_option_changes_numbers_and_protocol(tmp_path: Path) -> None:
    pred_lab, target = _batches()
    target[target == 3] = 2                     # class 3 absent from the target
    pred = _encode(pred_lab, "logits")
    got = {}
    for average in ("present", "all"):
        ctx = _ctx(tmp_path, "logits")
        ctx.options = {"class_average": average}
        SegmentationScorer.preflight(ctx)
        sc = SegmentationScorer(ctx)
        sc.update(pred, {"label": target})
        got[average] = (sc.compute(), sc.protocol())
    t, p = _kept(pred_lab, target, 4)
    hist = sk_confusion_matrix(t, p, labels=[0, 1, 2, 3]).astype(float)
    _, cl_acc, iu = _pix2pix_get_scores(hist)
    assert got["all"][0]["mean_class_acc"] == pytest.approx(cl_acc, abs=1e-9)
    assert got["all"][0]["mean_iou"] == pytest.approx(iu, abs=1e-9)
    with pytest.warns(UserWarning):            # sklearn: y_pred holds class 3, absent from y_true
        bal = balanced_accuracy_score(t, p)
    assert got["present"][0]["mean_class_acc"] == pytest.approx(bal, abs=1e-12)
    assert got["present"][1]["class_average"] == "present" and got["all"][1]["class_average"] == "all"
    default = SegmentationScorer(_ctx(tmp_path, "logits")).protocol()
    assert default == got["present"][1]


def test_unknown_class_average_is_a_one_line_metric_error(tmp_path: Path) -> None:
    ctx = _ctx(tmp_path)
    ctx.options = {"class_average": "mean"}
    for build in (SegmentationScorer, SegmentationScorer.preflight):
        with pytest.raises(MetricError, match="class_average") as err:
            build(ctx)
        assert "\n" not in str(err.value) and "'present' or 'all'" in str(err.value)
    with pytest.raises(MetricError, match="class_average"):
        scores(torch.eye(2, dtype=torch.int64), "mean")
