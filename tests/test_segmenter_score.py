"""The segmenter score with the pretrained ESPNet on real Cityscapes images (pix2pix val layout)."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from bench.data.paths import cache_dir
from bench.errors import ConfigError
from bench.registry import METRICS, TASKS
from metrics.base import ScoreContext

SOURCE_SHA256 = "343b0e77e8545d36113c4f3efbf1ee349256f25c97c9f9d5ddefe45f2f49763e"   # SOURCE.md
SMALL = [512, 256]      # ESPNet input (W, H) for quick tests; the protocol default is 1024x512


@pytest.fixture(scope="module")
def val_batch(data_root: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, torch.Tensor]:
    """pix2pix Cityscapes val 1..4, unpacked to a temp folder: photo left half, trainIds from the right."""
    tar_path = data_root / "cityscapes_pix2pix" / "cityscapes_val.tar"
    if not tar_path.is_file() or not (data_root / "espnet_cityscapes" / "espnet_p_2_q_8.pth").is_file():
        pytest.skip("cityscapes_pix2pix val tar or ESPNet weights absent")
    from bench.data.cityscapes_labels import colors_to_train_ids

    tmp = tmp_path_factory.mktemp("cityscapes_val")
    photos, labels = [], []
    with tarfile.open(tar_path) as tf:
        for i in range(1, 5):
            out = tmp / f"{i}.jpg"
            out.write_bytes(tf.extractfile(f"cityscapes/val/{i}.jpg").read())
            a = np.asarray(Image.open(io.BytesIO(out.read_bytes())).convert("RGB"))
            photos.append(torch.from_numpy(a[:, :256].astype(np.float32)).permute(2, 0, 1) / 127.5 - 1)
            labels.append(torch.from_numpy(colors_to_train_ids(a[:, 256:]).astype(np.int64)))
    return {"photo": torch.stack(photos), "label": torch.stack(labels)}


def _ctx(**options) -> ScoreContext:
    from bench.data.cityscapes import INFO

    return ScoreContext(task=TASKS.get("labels2photo").bind(INFO), device=torch.device("cpu"),
                        cache_dir=cache_dir(), options=options)


def test_oracle_row_and_a_bad_generator(val_batch) -> None:
    scorer_cls = METRICS.get("segmenter-score")
    oracle = scorer_cls(_ctx(input_size=SMALL))              # Cityscapes -> ESPNet by default
    bad = scorer_cls(_ctx(input_size=SMALL))
    assert oracle.segmenter.name == "espnet-cityscapes"
    oracle.update(oracle.score_reference(val_batch), val_batch)
    bad.update(val_batch["photo"].flip(-2), val_batch)         # upside-down streets
    real, fake = oracle.compute(), bad.compute()
    assert real["pixel_acc"] > 0.6 and real["mean_iou"] > 0.2
    assert fake["pixel_acc"] < real["pixel_acc"] - 0.3
    assert oracle.cm.sum() == (val_batch["label"] != 255).sum()   # every labelled pixel is scored
    proto = oracle.protocol()
    assert proto["weights_sha256"] == SOURCE_SHA256
    assert proto["input_size_wh"] == SMALL and proto["resize_mode"] == "bilinear"
    assert proto["void_output"] == "exclude" and proto["num_classes"] == 19
    json.dumps(proto)
    default = scorer_cls(_ctx()).protocol()
    assert default["input_size_wh"] == [1024, 512] and default["divide_by_255_after_norm"] is True


def test_void_ignore_policy_leaves_out_pixels_predicted_void(val_batch) -> None:
    scorer_cls = METRICS.get("segmenter-score")
    batch = {k: v[:2] for k, v in val_batch.items()}
    ignore = scorer_cls(_ctx(input_size=SMALL, void="ignore"))
    ignore.update(batch["photo"], batch)
    raw = torch.nn.functional.interpolate(ignore.segmenter.logits(batch["photo"]), size=(256, 256),
                                          mode="bilinear", align_corners=False).argmax(1)
    expected = ((batch["label"] != 255) & (raw != 19)).sum()
    assert 0 < ignore.cm.sum() == expected < (batch["label"] != 255).sum()


def test_bad_options_raise_config_errors(val_batch) -> None:
    scorer_cls = METRICS.get("segmenter-score")
    with pytest.raises(ConfigError, match="input_size"):
        scorer_cls(_ctx(input_size=[500, 250]))
    with pytest.raises(ConfigError, match="void"):
        scorer_cls(_ctx(void="sometimes"))
    with pytest.raises(ConfigError, match="resize_mode"):
        scorer_cls(_ctx(resize_mode="lanczos"))


def _pix2pix_get_scores(hist: np.ndarray) -> tuple[float, float]:
    """pix2pix's FCN-score (scripts/eval_cityscapes/util.py get_scores): mean class acc and IoU over all classes."""
    cl_acc = np.diag(hist) / (hist.sum(1) + 1e-12)
    iu = np.diag(hist) / (hist.sum(1) + hist.sum(0) - np.diag(hist) + 1e-12)
    return float(np.nanmean(cl_acc)), float(np.nanmean(iu))


def test_class_average_all_is_the_fcn_score_and_is_stamped(val_batch) -> None:
    scorer_cls = METRICS.get("segmenter-score")
    every = scorer_cls(_ctx(input_size=SMALL, class_average="all"))
    present = scorer_cls(_ctx(input_size=SMALL, class_average="present"))
    every.update(every.score_reference(val_batch), val_batch)
    present.cm = every.cm.clone()                # the same segmentation, averaged the other way
    hist = every.cm.double().numpy()
    assert (hist.sum(1) == 0).any()              # 4 street scenes lack some of the 19 classes
    all_acc, all_iou = _pix2pix_get_scores(hist)
    got_all, got_present = every.compute(), present.compute()
    assert got_all["mean_class_acc"] == pytest.approx(all_acc, abs=1e-9)
    assert got_all["mean_iou"] == pytest.approx(all_iou, abs=1e-9)
    in_target = hist.sum(1) > 0
    in_either = in_target | (hist.sum(0) > 0)
    inter = np.diag(hist)
    assert got_present["mean_class_acc"] == pytest.approx((inter / hist.sum(1).clip(1))[in_target].mean(), abs=1e-12)
    union = hist.sum(0) + hist.sum(1) - inter
    assert got_present["mean_iou"] == pytest.approx((inter / union.clip(1))[in_either].mean(), abs=1e-12)
    assert got_all["mean_iou"] < got_present["mean_iou"]
    assert got_all["pixel_acc"] == got_present["pixel_acc"]
    assert every.protocol()["class_average"] == "all" and present.protocol()["class_average"] == "present"
    assert scorer_cls(_ctx(input_size=SMALL)).protocol() == present.protocol()      # "present" is the default


def test_unknown_class_average_is_a_one_line_metric_error() -> None:
    from bench.errors import MetricError
    scorer_cls = METRICS.get("segmenter-score")
    for build in (scorer_cls, scorer_cls.preflight):
        with pytest.raises(MetricError, match="class_average") as err:
            build(_ctx(class_average="every"))
        assert "\n" not in str(err.value)


def test_batches_are_cached_by_content_and_protocol(val_batch, tmp_path) -> None:
    """The oracle row is segmented once: a second scorer on the same images, labels and protocol reads the
    batch's confusion matrix from the cache; other images, another protocol or a damaged entry recompute."""
    scorer_cls = METRICS.get("segmenter-score")

    def scored(images, **options):
        ctx = ScoreContext(task=_ctx().task, device=torch.device("cpu"), cache_dir=tmp_path,
                           options={"input_size": SMALL, **options})
        s = scorer_cls(ctx)
        calls = []
        real_predict = s.segmenter.predict
        s.segmenter.predict = lambda *a, **k: calls.append(1) or real_predict(*a, **k)
        s.update(images, val_batch)
        return s, len(calls)

    first, n1 = scored(val_batch["photo"])
    again, n2 = scored(val_batch["photo"])
    assert (n1, n2) == (1, 0) and torch.equal(first.cm, again.cm)
    assert again.compute() == first.compute()
    _, n3 = scored(val_batch["photo"].flip(-1))                 # other images
    _, n4 = scored(val_batch["photo"], void="ignore")           # another protocol
    assert (n3, n4) == (1, 1)
    entries = sorted((tmp_path / "segmenter-score").glob("cm-*.pt"))
    assert len(entries) == 3
    for e in entries:
        e.write_bytes(b"truncated")
    damaged, n5 = scored(val_batch["photo"])
    assert n5 == 1 and torch.equal(damaged.cm, first.cm)
