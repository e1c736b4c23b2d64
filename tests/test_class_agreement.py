"""The ``class-accuracy`` scorer against the MNIST classifier called directly, a stub classifier, and
its quantisation / channel / resize handling."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from bench.data.base import DatasetInfo
from bench.errors import MetricError
from bench.registry import METRICS
from bench.tasks import Field, TaskSpec
from metrics import extractors as ex
from metrics.base import ScoreContext
from metrics.class_agreement import ClassAgreementScorer

N = 2000          # real MNIST test digits scored in the reference tests
INFO = DatasetInfo(name="mnist-test", tasks=(), num_classes=10, provides=("image", "label", "index"))


def _task(class_input: bool = True) -> TaskSpec:
    inputs = {"c": Field("label", "class")} if class_input else {}
    return TaskSpec("t", inputs=inputs, targets={"y": Field("image", "image", 1)}, pairing="none").bind(INFO)


def _ctx(options: dict, tmp_path: Path, class_input: bool = True) -> ScoreContext:
    return ScoreContext(task=_task(class_input), device=torch.device("cpu"), cache_dir=tmp_path, options=options)


def _batches(images: torch.Tensor, labels: torch.Tensor, size: int = 500):
    for i in range(0, len(images), size):
        yield {"image": images[i:i + size], "label": labels[i:i + size],
               "index": torch.arange(i, min(i + size, len(images)))}


def _score(scorer: ClassAgreementScorer, preds: torch.Tensor, labels: torch.Tensor, size: int = 500
           ) -> dict[str, float]:
    for i, batch in enumerate(_batches(preds, labels, size)):
        scorer.update(preds[i * size:(i + 1) * size], batch)
    return scorer.compute()


# -- fixtures: the bench's classifier, trained once per session --------------------------------------
@pytest.fixture(scope="module")
def mnist(data_root: Path) -> dict[str, np.ndarray]:
    return ex.load_mnist(data_root / "mnist")


@pytest.fixture(scope="module")
def weights(data_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bench's default classifier, cached where the conftest's autouse fixture points
    BENCH_CACHE_DIR, so that the scorer's default (``train_mnist_classifier()``) finds it there."""
    cache = Path(os.environ.get("BENCH_TEST_CACHE") or tmp_path_factory.getbasetemp() / "bench-cache")
    return ex.train_mnist_classifier(root=data_root / "mnist", cache_root=cache / "fidelity")


@pytest.fixture(scope="module")
def digits(mnist: dict[str, np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """The first N test digits: uint8 (N, 1, 28, 28) and int64 labels (N,)."""
    x = torch.from_numpy(mnist["x_test"][:N]).unsqueeze(1)
    return x, torch.from_numpy(mnist["y_test"][:N].astype(np.int64))


@pytest.fixture(scope="module")
def direct(weights: Path, digits: tuple[torch.Tensor, torch.Tensor]) -> np.ndarray:
    """The classifier's own predictions on the uint8 digits, computed here without the scorer."""
    net = ex.MnistNet()
    net.load_state_dict(load_file(str(weights)))
    net.eval()
    with torch.no_grad():
        return torch.cat([net(ex.MnistNet.normalise(b))[1].argmax(1) for b in digits[0].split(500)]).numpy()


def _model_space(x_u8: torch.Tensor) -> torch.Tensor:
    return x_u8.float() / 127.5 - 1


# -- against the classifier itself ------------------------------------------------------------------
def test_real_digits_score_the_classifiers_own_accuracy(weights: Path, digits, direct: np.ndarray,
                                                        tmp_path: Path) -> None:
    x, y = digits
    scorer = METRICS.get("class-accuracy")(_ctx({"weights_path": str(weights)}, tmp_path))
    oracle = METRICS.get("class-accuracy")(_ctx({"weights_path": str(weights)}, tmp_path))
    for batch in _batches(_model_space(x), y):
        scorer.update(batch["image"], batch)
        oracle.update(oracle.score_reference(batch), batch)     # the oracle row: the real images
    out = scorer.compute()
    yn = y.numpy()
    acc = float((direct == yn).mean())
    assert out["class_acc"] == pytest.approx(acc, abs=1e-12) and out["class_acc"] > 0.9
    for c in range(10):
        assert out[f"class_acc_{c}"] == pytest.approx(float((direct[yn == c] == c).mean()), abs=1e-12)
    hist = np.bincount(direct, minlength=10) / N
    assert [out[f"recognised_{k}"] for k in range(10)] == pytest.approx(hist.tolist(), abs=1e-12)
    assert sum(out[f"recognised_{k}"] for k in range(10)) == pytest.approx(1.0, abs=1e-12)
    assert oracle.compute() == out
    assert ClassAgreementScorer.is_higher_better("class_acc")
    assert ClassAgreementScorer.is_higher_better("class_acc_3")
    assert not ClassAgreementScorer.is_higher_better("recognised_3")


def test_labels_rolled_by_one_score_near_chance(weights: Path, digits, direct: np.ndarray, tmp_path: Path) -> None:
    x, y = digits
    rolled = torch.roll(y, 1)                                   # each image asked for its neighbour's digit
    out = _score(ClassAgreementScorer(_ctx({"weights_path": str(weights)}, tmp_path)), _model_space(x), rolled)
    assert out["class_acc"] == pytest.approx(float((direct == rolled.numpy()).mean()), abs=1e-12)
    assert out["class_acc"] < 0.15
    hist = np.bincount(direct, minlength=10) / N                # what is recognised does not depend on labels
    assert [out[f"recognised_{k}"] for k in range(10)] == pytest.approx(hist.tolist(), abs=1e-12)
    off = _score(ClassAgreementScorer(_ctx({"weights_path": str(weights)}, tmp_path)), _model_space(x), (y + 1) % 10)
    assert off["class_acc"] < 0.1


def test_per_class_keys_only_for_requested_classes(weights: Path, digits, tmp_path: Path) -> None:
    x, y = digits
    keep = (y == 3) | (y == 7)
    out = _score(ClassAgreementScorer(_ctx({"weights_path": str(weights)}, tmp_path)), _model_space(x[keep]), y[keep])
    assert {k for k in out if k.startswith("class_acc")} == {"class_acc", "class_acc_3", "class_acc_7"}
    assert {k for k in out if k.startswith("recognised_")} == {f"recognised_{k}" for k in range(10)}
    assert sum(out[f"recognised_{k}"] for k in range(10)) == pytest.approx(1.0, abs=1e-12)


# -- a stub classifier: the counting by hand ----------------------------------------------------------
def _stub_forward(self: ex.MnistNet, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Recognises the digit (grey level of the top-left pixel) mod 10."""
    grey = ((x * 0.3081 + 0.1307) * 255).round().long()[:, 0, 0, 0]
    logits = F.one_hot(grey % 10, 10).float()
    return torch.zeros(len(x), 128), logits


def test_counts_by_hand_with_a_stub_classifier(weights: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ex.MnistNet, "forward", _stub_forward)
    grey = torch.tensor([10, 1, 11, 21, 5])                     # recognised: 0, 1, 1, 1, 5
    requested = torch.tensor([0, 0, 1, 1, 2])
    expected = {"class_acc": 3 / 5, "class_acc_0": 0.5, "class_acc_1": 1.0, "class_acc_2": 0.0}
    expected |= {f"recognised_{k}": v for k, v in enumerate([0.2, 0.6, 0, 0, 0, 0.2, 0, 0, 0, 0])}
    flat = grey.float().view(-1, 1, 1, 1).expand(-1, 1, 28, 28) / 127.5 - 1
    variants = {"grey 28": flat, "rgb 28": flat.expand(-1, 3, -1, -1),
                "grey 56 (resized)": F.interpolate(flat, size=(56, 56), mode="nearest"),
                "rgb 40x32 (resized)": F.interpolate(flat, size=(40, 32), mode="nearest").expand(-1, 3, -1, -1)}
    for name, pred in variants.items():
        out = _score(ClassAgreementScorer(_ctx({"weights_path": str(weights)}, tmp_path)), pred, requested, size=3)
        assert out == pytest.approx(expected, abs=1e-12), name
        assert set(out) == set(expected), name


def test_label_errors(weights: Path, tmp_path: Path) -> None:
    scorer = ClassAgreementScorer(_ctx({"weights_path": str(weights)}, tmp_path))
    img = torch.zeros(2, 1, 28, 28)
    with pytest.raises(MetricError, match="0..9"):
        scorer.update(img, {"image": img, "label": torch.tensor([3, 10])})
    with pytest.raises(MetricError, match="one sample per label"):
        scorer.update(img[:1], {"image": img, "label": torch.tensor([3, 4])})
    bare = ClassAgreementScorer(_ctx({"weights_path": str(weights)}, tmp_path, class_input=False))
    with pytest.raises(MetricError, match="kind 'class'"):
        bare.update(img, {"image": img})
    bare.update(img, {"image": img, "label": torch.tensor([3, 4])})   # no class field: batch['label']
    assert {"class_acc_3", "class_acc_4"} <= set(bare.compute())


# -- pre-processing ---------------------------------------------------------------------------------
def test_quantisation_and_resize(weights: Path, digits, tmp_path: Path) -> None:
    x, y = digits[0][:500], digits[1][:500]
    base = _score(ClassAgreementScorer(_ctx({"weights_path": str(weights)}, tmp_path)), _model_space(x), y)
    g = torch.Generator().manual_seed(0)
    jitter = (torch.rand(x.shape, generator=g) - 0.5) * 0.9 / 127.5      # under half a grey level
    nudged = _score(ClassAgreementScorer(_ctx({"weights_path": str(weights)}, tmp_path)),
                    _model_space(x) + jitter, y)
    assert nudged == base
    # 3 channels at 40 x 40: the channel mean, then antialiased bilinear to 28 x 28 on the 0..255 scale, rounded
    # once at the end (metrics.extractors.prepare_batch; rounding the mean first moved a borderline digit on an
    # AMD EPYC host)
    rgb = F.interpolate(_model_space(x), size=(40, 40), mode="bilinear", align_corners=False)
    rgb = torch.cat([rgb, rgb * 0.5, rgb.clamp(min=-0.5)], 1)
    out = _score(ClassAgreementScorer(_ctx({"weights_path": str(weights)}, tmp_path)), rgb, y)
    u8 = ((rgb.clamp(-1, 1) + 1) * 127.5).round()
    grey = u8.mean(1, keepdim=True)
    small = F.interpolate(grey, size=(28, 28), mode="bilinear", antialias=True, align_corners=False)
    small = small.clamp(0, 255).round().to(torch.uint8)
    net = ex.MnistNet()
    net.load_state_dict(load_file(str(weights)))
    with torch.no_grad():
        rec = net.eval()(ex.MnistNet.normalise(small))[1].argmax(1).numpy()
    assert out["class_acc"] == pytest.approx(float((rec == y.numpy()).mean()), abs=1e-12)
    assert [out[f"recognised_{k}"] for k in range(10)] == pytest.approx(
        (np.bincount(rec, minlength=10) / len(rec)).tolist(), abs=1e-12)


# -- options, preflight, protocol ------------------------------------------------------------------------
def test_options_preflight_and_no_samples(weights: Path, tmp_path: Path) -> None:
    with pytest.raises(MetricError, match="weights_path") as err:
        ClassAgreementScorer(_ctx({"weights_path": str(weights), "resize": "bicubic"}, tmp_path))
    assert "'resize'" in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(MetricError, match="weights_path"):
        ClassAgreementScorer.preflight(_ctx({"extractor": "inception-v3-compat"}, tmp_path))
    with pytest.raises(MetricError, match="not found") as err:
        ClassAgreementScorer.preflight(_ctx({"weights_path": str(tmp_path / "missing.safetensors")}, tmp_path))
    assert "\n" not in str(err.value)
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a safetensors file")
    with pytest.raises(MetricError, match="MnistNet"):
        ClassAgreementScorer.preflight(_ctx({"weights_path": str(junk)}, tmp_path))
    ClassAgreementScorer.preflight(_ctx({"weights_path": str(weights)}, tmp_path))
    with pytest.raises(MetricError, match="no samples"):
        ClassAgreementScorer(_ctx({"weights_path": str(weights)}, tmp_path)).compute()


def test_default_weights_registration_and_protocol(weights: Path, tmp_path: Path) -> None:
    """Without options the scorer uses ``train_mnist_classifier()``: the cached file of the fixture
    (training is deterministic and byte-identical, so the sha256 matches in any case)."""
    ClassAgreementScorer.preflight(_ctx({}, tmp_path))
    cls = METRICS.get("class-accuracy")
    assert cls is ClassAgreementScorer and cls.feed == "samples" and cls.outputs == ("image",)
    scorer = cls(_ctx({}, tmp_path))
    p = scorer.protocol()
    json.dumps(p)
    assert p["weights_sha256"] == hashlib.sha256(weights.read_bytes()).hexdigest()
    assert "127.5" in p["quantisation"] and "bilinear_aa" in p["resize"]
