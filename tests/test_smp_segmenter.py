"""The bench-trained smp scoring segmenter on synthetic scenes: accuracy, determinism, the cache,
and the segmenter score end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from bench.data.paths import cache_dir
from bench.errors import ConfigError, MetricError
from bench.registry import METRICS, TASKS
from metrics.base import ScoreContext
from metrics.segmentation import confusion_matrix, scores
from metrics.smp_training import SMPTrainProtocol, cache_path, train_or_load

synthetic = pytest.importorskip("bench.data.synthetic_scenes")

SIZE = 64
# A test-sized protocol: the default arch (PSPNet), a few dozen steps on 160 scenes. The FPN path is
# trained (two steps) in the determinism test.
ARCH = "pspnet"
TEST_OPTIONS = {"steps": 40, "batch_size": 8, "max_train_samples": 160, "lr": 2e-3}


@pytest.fixture(scope="module")
def train_set():
    return synthetic.make_dataset("train", SIZE, subset=160)


@pytest.fixture(scope="module")
def test_batch() -> dict[str, torch.Tensor]:
    ds = synthetic.make_dataset("test", SIZE, subset=48)
    samples = [ds[i] for i in range(len(ds))]
    return {k: torch.stack([s[k] for s in samples]) for k in ("photo", "label", "label_rgb")}


@pytest.fixture(scope="module")
def module_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("segmenters")


@pytest.fixture(scope="module")
def trained(train_set, module_cache: Path):
    proto = SMPTrainProtocol.from_options(ARCH, TEST_OPTIONS)
    return train_or_load(train_set, proto, module_cache / "segmenters")


def test_trained_segmenter_beats_chance_widely(trained, test_batch) -> None:
    labels = test_batch["label"]
    majority = torch.bincount(labels.flatten(), minlength=7).max().item() / labels.numel()
    assert not trained.from_cache
    pred = trained.predict(test_batch["photo"])
    assert pred.shape == labels.shape and pred.dtype == torch.int64
    s = scores(confusion_matrix(pred, labels, 7))
    assert majority < 0.45                              # ground is the largest class
    assert s["pixel_acc"] > majority + 0.25
    assert s["mean_iou"] > 0.3                          # a constant prediction scores <= majority / 7


def test_cache_returns_the_same_weights_without_training(trained, train_set, module_cache: Path) -> None:
    proto = SMPTrainProtocol.from_options(ARCH, TEST_OPTIONS)
    folder = module_cache / "segmenters"
    path = cache_path(folder, proto, trained.key)
    assert path.is_file()
    stamp = path.stat().st_mtime_ns
    again = train_or_load(train_set, proto, folder)
    assert again.from_cache and again.key == trained.key
    assert path.stat().st_mtime_ns == stamp              # not rewritten
    ref = trained.model.state_dict()
    assert all(torch.equal(v, ref[k]) for k, v in again.model.state_dict().items())
    assert list(folder.glob("*.safetensors")) == [path]


def test_training_is_deterministic_and_keyed_by_content(tmp_path: Path) -> None:
    proto = SMPTrainProtocol.from_options("fpn", {"steps": 2, "batch_size": 4, "max_train_samples": 8})
    ds = synthetic.make_dataset("train", 32, subset=8)
    torch.manual_seed(123)
    before = torch.rand(3)
    a = train_or_load(ds, proto, tmp_path / "a")
    b = train_or_load(ds, proto, tmp_path / "b")
    assert a.key == b.key and not a.from_cache and not b.from_cache
    sa, sb = a.model.state_dict(), b.model.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    torch.manual_seed(123)
    assert torch.equal(before, torch.rand(3))            # caller's RNG untouched by training
    # same content under another object -> same key; other content -> another key
    same = synthetic.make_dataset("train", 32, subset=8)
    assert train_or_load(same, proto, tmp_path / "a").from_cache
    other = synthetic.make_dataset("train", 32, subset=8, seed=1)
    assert train_or_load(other, proto, tmp_path / "a").key != a.key


def test_protocol_options_are_validated() -> None:
    with pytest.raises(ConfigError):
        SMPTrainProtocol.from_options("fpn", {"steps": "many"})
    with pytest.raises(ConfigError):
        SMPTrainProtocol.from_options("unet", {})
    with pytest.raises(ConfigError):
        SMPTrainProtocol.from_options("fpn", {"hflip": 1})
    p = SMPTrainProtocol.from_options("fpn", {"train_seed": 3, "segmenter": "smp-fpn", "other": 1})
    assert p.seed == 3 and p.arch == "fpn"


def _ctx(options: dict, train_set, cache: Path | None = None) -> ScoreContext:
    task = TASKS.get("labels2photo").bind(synthetic.INFO)
    return ScoreContext(task=task, device=torch.device("cpu"), cache_dir=cache or cache_dir(),
                        options=options, train_data=lambda: train_set)


def test_segmenter_score_end_to_end(trained, train_set, test_batch, module_cache: Path) -> None:
    scorer_cls = METRICS.get("segmenter-score")
    # no "segmenter" option: the default outside Cityscapes, trained on ctx.train_data(); here found in
    # the cache that the `trained` fixture filled (same data, same protocol)
    scorer = scorer_cls(_ctx(dict(TEST_OPTIONS), train_set, module_cache))
    assert set(scorer.keys) == set(scorer.higher_is_better) == {"pixel_acc", "mean_class_acc", "mean_iou"}
    oracle = scorer_cls(_ctx(dict(TEST_OPTIONS), train_set, module_cache))
    assert scorer.segmenter.from_cache and oracle.segmenter.key == trained.key
    half = {k: v[:24] for k, v in test_batch.items()}, {k: v[24:] for k, v in test_batch.items()}
    for b in half:
        oracle.update(oracle.score_reference(b), b)
        scorer.update(b["photo"].flip(-2), b)              # a "generator" that paints scenes upside down
    real, fake = oracle.compute(), scorer.compute()
    assert real["pixel_acc"] > 0.7
    assert fake["pixel_acc"] < real["pixel_acc"] - 0.1
    assert all(0 <= v <= 1 for v in (*real.values(), *fake.values()))
    # the streamed score equals the score of one pass over everything
    direct = scores(confusion_matrix(oracle.segmenter.predict(test_batch["photo"]), test_batch["label"], 7))
    assert real["pixel_acc"] == pytest.approx(direct["pixel_acc"], abs=1e-12)
    proto = oracle.protocol()
    assert proto["segmenter"] == f"smp-{ARCH}" and len(proto["training_key"]) == 64
    assert proto["training"]["steps"] == TEST_OPTIONS["steps"]
    json.dumps(proto)


def test_default_segmenter_choice() -> None:
    from bench.data.base import DatasetInfo
    from metrics.segmenters import default_segmenter

    def ctx(name: str) -> ScoreContext:
        info = DatasetInfo(name=name, tasks=("labels2photo",), num_classes=19, palette=((0, 0, 0),) * 19)
        return ScoreContext(task=TASKS.get("labels2photo").bind(info), device=torch.device("cpu"),
                            cache_dir=cache_dir())

    assert default_segmenter(ctx("cityscapes")) == "espnet-cityscapes"
    assert default_segmenter(ctx("synthetic-scenes")) == "smp-pspnet"


def test_segmenter_score_rejects_what_it_cannot_score(train_set, data_root: Path) -> None:
    scorer_cls = METRICS.get("segmenter-score")
    photo2labels = TASKS.get("photo2labels").bind(synthetic.INFO)
    with pytest.raises(MetricError, match="generated photos"):
        scorer_cls(ScoreContext(task=photo2labels, device=torch.device("cpu"), cache_dir=cache_dir()))
    with pytest.raises(MetricError, match="train_data"):
        scorer_cls(ScoreContext(task=TASKS.get("labels2photo").bind(synthetic.INFO),
                                device=torch.device("cpu"), cache_dir=cache_dir()))
    with pytest.raises(ConfigError, match="unknown segmenter"):
        scorer_cls(_ctx({"segmenter": "fcn-8s"}, train_set))
    with pytest.raises(MetricError, match="19 classes"):        # ESPNet on a 7-class dataset
        scorer_cls(_ctx({"segmenter": "espnet-cityscapes"}, train_set))
