"""FID / IS / KID: the Frechet distance against torch-fidelity and scipy, the extractors (Inception
plumbing, the MNIST classifier), the per-class protocol, caching, and the ``fid`` scorer."""

from __future__ import annotations

import hashlib
import json
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import scipy.linalg
import torch
from PIL import Image

from bench.data.base import DatasetInfo
from bench.errors import MetricError
from bench.registry import METRICS, TASKS
from bench.results import ResultStore
from metrics import extractors as ex
from metrics import fidelity
from metrics.base import ScoreContext


# -- the Frechet distance ---------------------------------------------------------------------------
def _scipy_fid(f1: np.ndarray, f2: np.ndarray) -> float:
    mu1, mu2 = f1.mean(0), f2.mean(0)
    s1, s2 = np.cov(f1, rowvar=False), np.cov(f2, rowvar=False)
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * covmean))


def _torch_fidelity_fid(f1: np.ndarray, f2: np.ndarray) -> float:
    from torch_fidelity.metric_fid import fid_features_to_statistics, fid_statistics_to_metric
    s1 = fid_features_to_statistics(torch.from_numpy(f1))
    s2 = fid_features_to_statistics(torch.from_numpy(f2))
    return fid_statistics_to_metric(s1, s2, verbose=False)["frechet_inception_distance"]


def _feature_pair(n1: int, n2: int, d: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    f1 = rng.standard_normal((n1, d)) @ rng.standard_normal((d, d)) * 0.3
    f2 = rng.standard_normal((n2, d)) @ rng.standard_normal((d, d)) * 0.5 + rng.standard_normal(d)
    return f1, f2


@pytest.mark.parametrize("n1,n2,d", [(600, 500, 32), (40, 50, 64)])  # full-rank and singular covariances
def test_fid_from_features_matches_torch_fidelity_and_scipy(n1: int, n2: int, d: int) -> None:
    f1, f2 = _feature_pair(n1, n2, d)
    ours = fidelity.fid_from_features(f1, f2)
    assert ours == pytest.approx(_torch_fidelity_fid(f1, f2), rel=1e-6)
    if n1 > d:  # sqrtm of a singular product is ill-conditioned; torch-fidelity covers that case
        assert ours == pytest.approx(_scipy_fid(f1, f2), rel=1e-6)
    assert fidelity.fid_from_features(torch.from_numpy(f1).float(), torch.from_numpy(f2).float()) == \
        pytest.approx(ours, rel=1e-5)


def test_fid_closed_form_diagonal_gaussians() -> None:
    # features with exact mean m and diagonal variance v: FID = |m1-m2|^2 + sum (sqrt(v1) - sqrt(v2))^2
    base = np.array([[1.0, 1.0], [1.0, -1.0], [-1.0, 1.0], [-1.0, -1.0]])   # mean 0, cov 4/3 I
    a = base * np.array([1.0, 2.0]) + np.array([3.0, 0.0])
    b = base * np.array([3.0, 1.0])
    va, vb = np.array([1.0, 4.0]) * 4 / 3, np.array([9.0, 1.0]) * 4 / 3
    expected = 9.0 + ((np.sqrt(va) - np.sqrt(vb)) ** 2).sum()
    assert fidelity.fid_from_features(a, b) == pytest.approx(expected, rel=1e-12)


def test_fid_self_zero_and_symmetric() -> None:
    f1, f2 = _feature_pair(300, 400, 16, seed=3)
    assert abs(fidelity.fid_from_features(f1, f1)) < 1e-9 * np.trace(np.cov(f1, rowvar=False))
    assert fidelity.fid_from_features(f1, f2) == pytest.approx(fidelity.fid_from_features(f2, f1), rel=1e-9)
    with pytest.raises(MetricError):
        fidelity.fid_from_features(f1[:, :8], f2)
    with pytest.raises(MetricError):
        fidelity.fid_from_features(f1[:1], f2)


# -- pre-processing ---------------------------------------------------------------------------------
def test_prepare_batch_range_channels_resize() -> None:
    sp = ex.spec("mnist-classifier")
    x = torch.zeros(2, 3, 28, 28)
    x[:, :, 0, 0], x[:, :, 0, 2] = -1.0, 1.0
    x[:, 0, 1, 0], x[:, 1, 1, 0], x[:, 2, 1, 0] = 1.0, -1.0, 0.5
    u = ex.prepare_batch(x, sp, "none")
    assert u.dtype == torch.uint8 and u.shape == (2, 1, 28, 28)
    assert u[0, 0, 0, :3].tolist() == [0, 128, 255]           # (x + 1) * 127.5, rounded
    assert u[1, 0, 1, 0].item() == 149                        # channel mean of 255, 0, 191.25
    flat = torch.full((2, 1, 32, 32), 100, dtype=torch.uint8)
    assert ex.prepare_batch(flat, sp, "bilinear").shape == (2, 1, 28, 28)
    assert (ex.prepare_batch(flat, sp, "bicubic_aa") == 100).all()
    with pytest.raises(MetricError, match="28x28"):
        ex.prepare_batch(flat, sp, "none")
    with pytest.raises(MetricError, match="resize"):
        ex.parse_resize("cubic:28")
    grey = torch.randint(0, 256, (2, 1, 8, 8), dtype=torch.uint8)
    rgb = ex.prepare_batch(grey, ex.spec("inception-v3-compat"), "nearest:16")
    assert rgb.shape == (2, 3, 16, 16) and torch.equal(rgb[:, 0, ::2, ::2], grey[:, 0])


# -- Inception plumbing ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def random_inception(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised torch-fidelity Inception state dict in a temp file."""
    from torch_fidelity import feature_extractor_inceptionv3 as fei
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(fei, "load_state_dict_from_url", lambda *a, **k: {})
        mp.setattr(fei.FeatureExtractorInceptionV3, "load_state_dict", lambda self, sd, *a, **k: None)
        torch.manual_seed(0)
        net = fei.FeatureExtractorInceptionV3("inception-v3-compat", ["2048"])
    path = tmp_path_factory.mktemp("inception") / ex.INCEPTION_FILE
    torch.save(net.state_dict(), path)
    return path


def test_inception_weights_load_from_configured_path(random_inception: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ex.WEIGHTS_ENV_VAR, str(random_inception))
    fs = fidelity.FeatureSpace("inception-v3-compat", metrics=("fid", "is"), batch_size=2)
    assert fs.protocol["weights_sha256"] == hashlib.sha256(random_inception.read_bytes()).hexdigest()
    assert fs.protocol["internal_resize"] == "tf1x-bilinear:299"
    saved = torch.load(random_inception, weights_only=True)
    fe = fs.extractor
    assert not fe.training and not any(m.training for m in fe.modules())
    assert torch.equal(fe.state_dict()["Mixed_7c.branch_pool.conv.weight"], saved["Mixed_7c.branch_pool.conv.weight"])
    imgs = torch.randint(0, 256, (2, 3, 40, 40), dtype=torch.uint8)
    f = fs.features(imgs)
    assert f["2048"].shape == (2, 2048) and f["logits_unbiased"].shape == (2, 1008)
    alone = fs.features(imgs[:1])     # eval mode: an image's features do not depend on its batch
    torch.testing.assert_close(alone["2048"][0], f["2048"][0], rtol=1e-4, atol=1e-5)


def test_absent_inception_weights_without_network(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ex.WEIGHTS_ENV_VAR, raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("BENCH_DATA_ROOT", str(tmp_path / "data"))
    calls = []

    def no_network(url: str, dst: str, *a: object, **k: object) -> None:
        calls.append(url)
        raise urllib.error.URLError("no network")
    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    with pytest.raises(MetricError) as err:
        fidelity.compute(torch.zeros(2, 3, 8, 8, dtype=torch.uint8), torch.zeros(2, 3, 8, 8, dtype=torch.uint8))
    msg = str(err.value)
    assert calls and ex.INCEPTION_FILE in msg and ex.WEIGHTS_ENV_VAR in msg and "\n" not in msg
    with pytest.raises(MetricError, match="does not exist"):
        ex.inception_weights(tmp_path / "missing.pth")
    pickled = tmp_path / "pickled.pth"
    torch.save({"conv": torch.zeros(1), "extra": urllib.error.URLError("not a tensor")}, pickled)
    with pytest.raises(MetricError, match="plain state dict"):     # refused before torch-fidelity unpickles it
        ex.resolve_weights("inception-v3-compat", pickled)
    with pytest.raises(MetricError, match=ex.WEIGHTS_ENV_VAR):
        METRICS.get("fid")(_ctx({}, tmp_path))


# -- the MNIST classifier -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def mnist(data_root: Path) -> dict[str, np.ndarray]:
    return ex.load_mnist(data_root / "mnist")


@pytest.fixture(scope="module")
def mnist_weights(data_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A test-sized classifier: 2000 training images, 2 epochs."""
    proto = ex.MnistClassifierProtocol(n_train=2000, epochs=2, n_eval=1000)
    return ex.train_mnist_classifier(proto, root=data_root / "mnist", cache_root=tmp_path_factory.mktemp("mc"))


class _Images(torch.utils.data.Dataset):
    """A tensor of images as torch-fidelity's input."""

    def __init__(self, x: torch.Tensor):
        self.x = x

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.x[i]


def _digits(mnist: dict[str, np.ndarray], c: int, split: str = "test") -> torch.Tensor:
    x, y = mnist[f"x_{split}"], mnist[f"y_{split}"]
    return torch.from_numpy(x[y == c]).unsqueeze(1)


def test_mnist_classifier_training_is_deterministic_and_cached(data_root: Path, tmp_path: Path) -> None:
    proto = ex.MnistClassifierProtocol(n_train=256, epochs=1, n_eval=256)
    a = ex.train_mnist_classifier(proto, root=data_root / "mnist", cache_root=tmp_path / "a")
    b = ex.train_mnist_classifier(proto, root=data_root / "mnist", cache_root=tmp_path / "b")
    assert a.name == b.name and a.read_bytes() == b.read_bytes()     # so the stamped sha256 is stable
    assert json.loads(a.with_suffix(".json").read_text())["protocol"]["n_train"] == 256
    mtime = a.stat().st_mtime_ns
    assert ex.train_mnist_classifier(proto, root=data_root / "mnist", cache_root=tmp_path / "a") == a
    assert a.stat().st_mtime_ns == mtime
    other = ex.MnistClassifierProtocol(n_train=255, epochs=1, n_eval=256)   # other data -> other key
    assert ex.train_mnist_classifier(other, root=data_root / "mnist", cache_root=tmp_path / "a").name != a.name


def test_mnist_fid_same_class_much_smaller(mnist: dict[str, np.ndarray], mnist_weights: Path) -> None:
    zeros, ones = _digits(mnist, 0), _digits(mnist, 1)
    kw = dict(extractor="mnist-classifier", weights_path=mnist_weights, cache=False)
    same = fidelity.compute(zeros[:490], zeros[490:980], **kw)
    diff = fidelity.compute(zeros[:490], ones[:490], **kw)
    assert same["fid"] * 10 < diff["fid"], (same["fid"], diff["fid"])
    p = same["protocol"]
    assert p["extractor"] == "mnist-classifier" and p["resize"] == "none" and p["num_gen"] == 490
    assert p["weights_sha256"] == hashlib.sha256(mnist_weights.read_bytes()).hexdigest()


def test_compute_equals_torch_fidelity_calculate_metrics(mnist: dict[str, np.ndarray], mnist_weights: Path) -> None:
    import torch_fidelity

    gen, real = _digits(mnist, 3)[:300], _digits(mnist, 5)[:320]
    ref = torch_fidelity.calculate_metrics(
        input1=_Images(gen), input2=_Images(real), feature_extractor="mnist-classifier",
        feature_extractor_weights_path=str(mnist_weights), fid=True, kid=True, isc=True, cuda=False,
        cache=False, verbose=False, save_cpu_ram=True, kid_subset_size=100, kid_subsets=20, batch_size=50,
        prc=True)
    ours = fidelity.compute(gen, real, extractor="mnist-classifier", weights_path=mnist_weights,
                            metrics=("fid", "kid", "is", "prc"), kid_subset_size=100, kid_subsets=20, cache=False)
    for k in ("precision", "recall", "f_score"):                      # input1 generated, input2 real: as ours
        assert ours[k] == pytest.approx(ref[k], abs=1e-9), k
    assert ours["fid"] == pytest.approx(ref["frechet_inception_distance"], rel=1e-5)
    assert ours["kid"] == pytest.approx(ref["kernel_inception_distance_mean"], rel=1e-5)
    assert ours["is"] == pytest.approx(ref["inception_score_mean"], rel=1e-6)
    assert ours["is_std"] == pytest.approx(ref["inception_score_std"], rel=1e-5)


def test_precision_recall_density_coverage_by_hand() -> None:
    """1-d features: real 0, 1, 2, 3 (each ball of radius 1 with k = 1), generated 0.5 and 10 (balls of 9.5).
    Precision: 0.5 lies in a real ball, 10 in none -> 1/2; recall: every real point lies in 0.5's ball -> 1;
    density: 0.5 is strictly inside 2 real balls (0 and 1), 10 in none -> (2 + 0) / (1 x 2) = 1; coverage: real
    0 and 1 hold a generated point, 2 and 3 do not -> 1/2. Swapping the sides would give 1 and 1/2: the order
    is checked."""
    fs = fidelity.FeatureSpace.__new__(fidelity.FeatureSpace)
    fs.layers, fs.protocol = {"prc": "f", "dc": "f"}, {}
    gen, real = torch.tensor([[0.5], [10.0]]), torch.tensor([[0.0], [1.0], [2.0], [3.0]])
    out = fs.score({"f": gen}, {"feat.f": real, "n": torch.tensor(4)}, prc_k=1, dc_k=1)
    assert (out["precision"], out["recall"], out["density"], out["coverage"]) == (0.5, 1.0, 1.0, 0.5)
    assert out["f_score"] == pytest.approx(2 * 0.5 / 1.5)
    assert out["protocol"]["prc"]["k"] == 1 and out["protocol"]["dc"]["k"] == 1
    # a set against itself: every point in its own ball, and (no ties) exactly k points strictly inside each ball
    x = torch.randn(200, 8, generator=torch.Generator().manual_seed(0))
    assert fidelity.density_coverage(x, x, k=5) == (1.0, 1.0)
    with pytest.raises(MetricError, match="need more than 5 real samples"):
        fidelity.density_coverage(x, x[:5], k=5)


def test_batch_size_folder_and_cache(mnist: dict[str, np.ndarray], mnist_weights: Path, tmp_path: Path) -> None:
    gen, real = _digits(mnist, 7)[:200], _digits(mnist, 7, "train")[:250]
    kw = dict(extractor="mnist-classifier", weights_path=mnist_weights, cache_root=tmp_path / "c")
    a = fidelity.compute(gen, real, batch_size=64, cache=False, **kw)["fid"]
    b = fidelity.compute(gen, real, batch_size=7, cache=False, **kw)["fid"]
    assert b == pytest.approx(a, rel=1e-5)
    folder = tmp_path / "gen"
    folder.mkdir()
    for i, img in enumerate(gen):
        Image.fromarray(img[0].numpy()).convert("RGB").save(folder / f"{i:04d}.png")
    assert fidelity.compute(folder, real, cache=False, **kw)["fid"] == pytest.approx(a, rel=1e-9)
    # a generator callable and an iterable of batches give the same features as the tensor
    sample = iter(gen.split(30))
    assert fidelity.compute(lambda n: next(sample)[:n], real, num_samples=200, batch_size=30, cache=False,
                            **kw)["fid"] == pytest.approx(a, rel=1e-5)
    assert fidelity.compute(list(gen.split(45)), real, cache=False, **kw)["fid"] == pytest.approx(a, rel=1e-5)
    # cache: keyed by content, not by object or name
    c1 = fidelity.compute(gen, real, **kw)["fid"]
    files = list((tmp_path / "c").glob("ref-*.safetensors"))
    assert len(files) == 1 and c1 == pytest.approx(a, rel=1e-9)
    assert fidelity.compute(gen, real.clone(), **kw)["fid"] == c1
    kid = fidelity.compute(gen, real, metrics=("kid",), kid_subset_size=50, kid_subsets=5, **kw)
    assert np.isfinite(kid["kid"]) and "fid" not in kid          # same key, features now cached
    assert fidelity.compute(gen, real, **kw)["fid"] == pytest.approx(c1, rel=1e-12)
    assert len(list((tmp_path / "c").glob("ref-*.safetensors"))) == 1
    real2 = real.clone()
    real2[0, 0, 14, 14] ^= 1
    fidelity.compute(gen, real2, **kw)
    assert len(list((tmp_path / "c").glob("ref-*.safetensors"))) == 2


def test_per_class_fid_equals_hand_calls(mnist: dict[str, np.ndarray], mnist_weights: Path) -> None:
    classes, n_real = (0, 1, 2), 60
    real = torch.cat([_digits(mnist, c)[:n_real] for c in classes])
    real_labels = torch.tensor(classes).repeat_interleave(n_real)
    x, y = torch.from_numpy(mnist["x_train"][:2000]).unsqueeze(1), torch.from_numpy(mnist["y_train"][:2000])
    keep = (y <= 2)
    gen, gen_labels = x[keep], y[keep].long()     # interleaved classes, more than needed per class
    kw = dict(extractor="mnist-classifier", weights_path=mnist_weights, cache=False)
    out = fidelity.per_class_fid(gen, gen_labels, real, real_labels, **kw)
    by_hand = {c: fidelity.compute(gen[gen_labels == c][:n_real], real[real_labels == c], **kw)["fid"]
               for c in classes}
    assert out["per_class"].keys() == by_hand.keys()
    for c in classes:
        assert out["per_class"][c] == pytest.approx(by_hand[c], rel=1e-5)
    assert out["mean"] == pytest.approx(np.mean(list(by_hand.values())), rel=1e-5)
    with pytest.raises(MetricError, match="as many generated"):
        fidelity.per_class_fid(gen[:50], gen_labels[:50], real, real_labels, **kw)


# -- the scorer -----------------------------------------------------------------------------------
def _ctx(options: dict, cache: Path) -> ScoreContext:
    info = DatasetInfo(name="digits", tasks=("labels2photo",))
    task = TASKS.get("labels2photo").bind(info)
    return ScoreContext(task=task, device=torch.device("cpu"), cache_dir=cache, options=options)


def test_fid_scorer_streams_and_stamps(mnist: dict[str, np.ndarray], mnist_weights: Path, tmp_path: Path) -> None:
    real = _digits(mnist, 4)[:120].float() / 127.5 - 1
    gen = _digits(mnist, 9)[:120].float() / 127.5 - 1
    labels = torch.from_numpy(mnist["y_test"][:120]).long() % 2
    opts = {"extractor": "mnist-classifier", "weights_path": str(mnist_weights), "per_class": True}
    scorer = METRICS.get("fid")(_ctx(opts, tmp_path))
    oracle = METRICS.get("fid")(_ctx(opts, tmp_path))
    for i in range(0, 120, 50):
        batch = {"photo": real[i:i + 50], "label": labels[i:i + 50]}
        scorer.update(gen[i:i + 50], batch)
        oracle.update(oracle.score_reference(batch), batch)
    out = scorer.compute()
    expected = fidelity.compute(gen, real, extractor="mnist-classifier", weights_path=mnist_weights, cache=False)
    assert out["fid"] == pytest.approx(expected["fid"], rel=1e-6)
    pc = fidelity.per_class_fid(gen, labels, real, labels, extractor="mnist-classifier",
                                weights_path=mnist_weights, cache=False)
    assert out["fid_class_mean"] == pytest.approx(pc["mean"], rel=1e-6)
    assert abs(oracle.compute()["fid"]) < 1e-6 * out["fid"]      # the real targets against themselves
    p = scorer.protocol()
    assert p["extractor"] == "mnist-classifier" and p["num_gen"] == 120 and p["resize"] == "none"
    assert p["weights_sha256"] == hashlib.sha256(mnist_weights.read_bytes()).hexdigest()


# -- KID in float64, cache_root as a str, per-class FID with a tiny class ---------------------------
def _kid_numpy(f1: np.ndarray, f2: np.ndarray, subsets: int, size: int, seed: int) -> tuple[float, float]:
    """Unbiased MMD^2 with k(x, y) = (x.y / d + 1)^3, float64, on the subsets torch-fidelity draws:
    one np.random.RandomState(seed), per subset size rows of f1 then size rows of f2, without replacement."""
    x1, x2 = np.asarray(f1, np.float64), np.asarray(f2, np.float64)
    d, m = x1.shape[1], size
    rng = np.random.RandomState(seed)
    mmds = []
    for _ in range(subsets):
        a = x1[rng.choice(len(x1), m, replace=False)]
        b = x2[rng.choice(len(x2), m, replace=False)]
        kaa, kbb, kab = ((a @ a.T / d + 1) ** 3, (b @ b.T / d + 1) ** 3, (a @ b.T / d + 1) ** 3)
        off = (kaa.sum() - np.trace(kaa) + kbb.sum() - np.trace(kbb)) / (m * (m - 1))
        mmds.append(off - 2 * kab.sum() / (m * m))
    return float(np.mean(mmds)), float(np.std(mmds))


def _low_variance_features(seed: int = 0, n: int = 120, d: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """float32 features around 1 +- 1e-4 (what an extractor hands over), the two sets 5e-5 apart."""
    rng = np.random.default_rng(seed)
    f1 = 1 + 1e-4 * rng.standard_normal((n, d))
    f2 = 1 + 5e-5 + 1e-4 * rng.standard_normal((n + 17, d))
    return torch.from_numpy(f1).float(), torch.from_numpy(f2).float()


def test_kid_of_low_variance_features_matches_a_float64_reference(mnist_weights: Path) -> None:
    fg, fr = _low_variance_features()
    want, want_std = _kid_numpy(fg.numpy(), fr.numpy(), subsets=10, size=50, seed=2020)
    assert want > 0
    # the scorer's path: FeatureSpace.score on generated features against a reference
    fs = fidelity.FeatureSpace("mnist-classifier", weights_path=mnist_weights, metrics=("kid",))
    layer = fs.layers["kid"]
    out = fs.score({layer: fg}, {f"feat.{layer}": fr, "n": torch.tensor(len(fr))}, kid_subsets=10,
                   kid_subset_size=50, rng_seed=2020)
    assert out["kid"] == pytest.approx(want, rel=1e-6) and out["kid_std"] == pytest.approx(want_std, rel=1e-5)
    assert out["protocol"]["kid"]["dtype"] == "float64"
    mean, std = fidelity.kid_from_features(fg, fr, subsets=10, subset_size=50, rng_seed=2020)
    assert mean == pytest.approx(want, rel=1e-6) and std == pytest.approx(want_std, rel=1e-5)
    # zero spread: two identical constant sets are exactly as far apart as a float64 MMD says (0)
    same = torch.full((60, 32), 1.1)
    out = fs.score({layer: same}, {f"feat.{layer}": same.clone(), "n": torch.tensor(60)}, kid_subsets=5,
                   kid_subset_size=30)
    assert abs(out["kid"]) < 1e-12


def test_cache_root_may_be_a_str(mnist: dict[str, np.ndarray], mnist_weights: Path, tmp_path: Path) -> None:
    gen, real = _digits(mnist, 2)[:40], _digits(mnist, 2, "train")[:50]
    kw = dict(extractor="mnist-classifier", weights_path=mnist_weights)
    a = fidelity.compute(gen, real, cache_root=str(tmp_path / "s"), **kw)["fid"]
    assert len(list((tmp_path / "s").glob("ref-*.safetensors"))) == 1
    assert a == pytest.approx(fidelity.compute(gen, real, cache=False, **kw)["fid"], rel=1e-9)
    labels = torch.arange(40) % 2
    pc = fidelity.per_class_fid(gen, labels, gen, labels, cache_root=str(tmp_path / "pc"), **kw)
    assert set(pc["per_class"]) == {0, 1} and len(list((tmp_path / "pc").glob("ref-*.safetensors"))) == 1


def test_per_class_fid_names_a_class_with_one_image(mnist: dict[str, np.ndarray], mnist_weights: Path) -> None:
    kw = dict(extractor="mnist-classifier", weights_path=mnist_weights, cache=False)
    real = torch.cat([_digits(mnist, 0)[:5], _digits(mnist, 3)[:1], _digits(mnist, 7)[:4]])
    labels = torch.tensor([0] * 5 + [3] + [7] * 4)
    with pytest.raises(MetricError) as err:
        fidelity.per_class_fid(real, labels, real, labels, **kw)
    msg = str(err.value)
    assert "class 3 has 1" in msg and "eval_subset" in msg and "\n" not in msg
    assert "class 0" not in msg and "class 7" not in msg
    # one generated image of a class with four real ones: named too, with what to do
    gen_labels = torch.tensor([0] * 5 + [3] + [7] + [0] * 3)
    real_keep = labels != 3                             # real: five of class 0, four of class 7
    with pytest.raises(MetricError, match=r"class 7: 1 < 4.*generate more") as err:
        fidelity.per_class_fid(real, gen_labels, real[real_keep], labels[real_keep], **kw)
    assert "\n" not in str(err.value)


def test_the_scorer_gives_precision_recall_density_coverage_of_one_for_equal_sets(
        mnist: dict[str, np.ndarray], mnist_weights: Path, tmp_path: Path) -> None:
    real = _digits(mnist, 7)[:120].float() / 127.5 - 1
    opts = {"extractor": "mnist-classifier", "weights_path": str(mnist_weights), "metrics": ["fid", "prc", "dc"]}
    scorer = METRICS.get("fid")(_ctx(opts, tmp_path))
    for i in range(0, 120, 50):
        scorer.update(real[i:i + 50], {"photo": real[i:i + 50]})
    out = scorer.compute()
    assert abs(out["fid"]) < 1e-3
    assert (out["precision"], out["recall"], out["f_score"], out["coverage"]) == (1.0, 1.0, 1.0, 1.0)
    assert out["density"] == pytest.approx(1.0, abs=0.02)            # exactly 1 where no two distances tie
    assert scorer.protocol()["prc"]["k"] == 3 and scorer.protocol()["dc"]["k"] == 5
    assert all(METRICS.get("fid").is_higher_better(k) for k in ("precision", "recall", "density", "coverage"))


# -- bench score --gen --real: image sets as they are ----------------------------------------------------
def _score(capsys, *args: str) -> dict[str, float]:
    from bench.cli import main
    assert main(["score", *args, "--device", "cpu", "--no-progress"]) == 0
    out = {}
    for line in capsys.readouterr().out.splitlines():
        parts = line.split("\t")
        if len(parts) == 3 and parts[2].startswith("protocol "):
            out[parts[0]] = float(parts[1])
    return out


def test_bench_score_of_two_image_folders_equals_torch_fidelity(mnist: dict[str, np.ndarray], mnist_weights: Path,
                                                                tmp_path: Path, capsys) -> None:
    import torch_fidelity
    from PIL import Image
    gen, real = _digits(mnist, 3)[:200], _digits(mnist, 5)[:220]
    for name, x in (("gen", gen), ("real", real)):
        (tmp_path / name).mkdir()
        for i, img in enumerate(x):
            Image.fromarray(img[0].numpy()).save(tmp_path / name / f"{i:04d}.png")

    ref = torch_fidelity.calculate_metrics(
        input1=_Images(gen), input2=_Images(real), feature_extractor="mnist-classifier",
        feature_extractor_weights_path=str(mnist_weights), fid=True, kid=True, prc=True, cuda=False, cache=False,
        verbose=False, save_cpu_ram=True, kid_subset_size=200, kid_subsets=100, batch_size=64)
    ours = _score(capsys, "--gen", str(tmp_path / "gen"), "--real", str(tmp_path / "real"), "--extractor",
                  "mnist-classifier", "--weights", str(mnist_weights), "--metrics", "fid,kid,prc", "--out",
                  str(tmp_path / "o"))
    assert ours["fid"] == pytest.approx(ref["frechet_inception_distance"], rel=1e-5)
    assert ours["kid"] == pytest.approx(ref["kernel_inception_distance_mean"], rel=1e-4)
    assert (ours["precision"], ours["recall"]) == pytest.approx((ref["precision"], ref["recall"]), abs=1e-6)  # printed to 6 digits
    store = ResultStore(tmp_path / "o" / "results.sqlite")
    recs = store.records()
    assert {r.metric for r in recs} >= {"fid", "kid", "precision", "recall"} and {r.row for r in recs} == {"gen"}
    p = store.protocol(recs[0].protocol_hash)
    assert p["gen"]["count"] == 200 and p["real"]["count"] == 220 and p["extractor"] == "mnist-classifier"
    assert p["gen"]["sha256"] != p["real"]["sha256"]


def test_bench_score_of_equal_sets_from_an_array_and_a_dataset(mnist_weights: Path, data_root: Path,
                                                              tmp_path: Path, capsys) -> None:
    from bench.registry import DATASETS
    data = DATASETS.get("facades")("test", 28, root=None, subset=None, seed=0)
    np.savez(tmp_path / "gen.npz", images=torch.stack([data[i]["photo"] for i in range(len(data))]).numpy())
    out = _score(capsys, "--gen", str(tmp_path / "gen.npz"), "--real", "dataset:facades:test", "--size", "28",
                 "--extractor", "mnist-classifier", "--weights", str(mnist_weights), "--metrics", "fid,prc,dc")
    assert abs(out["fid"]) < 1e-3                                        # the same 106 images: FID ~ 0
    assert (out["precision"], out["recall"], out["coverage"]) == (1.0, 1.0, 1.0)


def test_bench_score_of_bad_sets_is_a_one_line_error(tmp_path: Path, capsys) -> None:
    from PIL import Image

    from bench.cli import main
    (tmp_path / "mixed").mkdir()
    Image.new("L", (8, 8)).save(tmp_path / "mixed" / "a.png")
    Image.new("L", (9, 9)).save(tmp_path / "mixed" / "b.png")
    np.save(tmp_path / "nan.npy", np.full((4, 8, 8), np.nan, dtype=np.float32))
    cases = [(["--gen", str(tmp_path / "nope"), "--real", str(tmp_path / "nope")], "not found"),
             (["--gen", str(tmp_path / "mixed"), "--real", str(tmp_path / "mixed")], "differ in size"),
             (["--gen", str(tmp_path / "nan.npy"), "--real", str(tmp_path / "nan.npy")], "NaN or infinite"),
             (["--gen", "dataset:facades:test:depth", "--real", "dataset:facades:test"], "no image field 'depth'"),
             (["--gen", "dataset:facades", "--real", "dataset:facades"], "dataset:NAME:SPLIT"),
             (["--gen", str(tmp_path / "mixed"), "--metrics", "fid"], "--real is needed")]
    for args, expect in cases:
        assert main(["score", *args, "--device", "cpu"]) == 2, args
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and expect in err, (args, err)


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory) -> Path:
    """A random CLIP image tower at toy size (ViT: width 64, one layer, 16 px patches, 32 px input) saved as the
    TorchScript file torch-fidelity loads: the plumbing without the real weights (not on these machines)."""
    from torch_fidelity.feature_extractor_clip import CLIPVisual

    class Tower(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.visual = CLIPVisual(16, 32, 1, 64, 16).visual
            self.text_projection = torch.nn.Parameter(torch.randn(16, 16))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.visual(x)
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("clip") / "tiny-clip.pt"
    torch.jit.trace(Tower().eval(), torch.randn(1, 3, 32, 32)).save(str(path))
    return path


def test_clip_features_equal_torch_fidelity_with_a_local_weights_file(mnist: dict[str, np.ndarray],
                                                                      tiny_clip: Path) -> None:
    import torch_fidelity
    gen, real = _digits(mnist, 3)[:60].repeat(1, 3, 1, 1), _digits(mnist, 8)[:64].repeat(1, 3, 1, 1)
    ref = torch_fidelity.calculate_metrics(
        input1=_Images(gen), input2=_Images(real), feature_extractor="clip-vit-b-32",
        feature_extractor_weights_path=str(tiny_clip), fid=True, kid=True, prc=True, cuda=False, cache=False,
        verbose=False, save_cpu_ram=True, kid_subset_size=60, kid_subsets=10, batch_size=32)
    ours = fidelity.compute(gen, real, extractor="clip-vit-b-32", weights_path=tiny_clip,
                            metrics=("fid", "kid", "prc"), kid_subset_size=60, kid_subsets=10, cache=False)
    assert ours["fid"] == pytest.approx(ref["frechet_inception_distance"], rel=1e-5)
    assert ours["kid"] == pytest.approx(ref["kernel_inception_distance_mean"], rel=1e-4)
    assert (ours["precision"], ours["recall"]) == pytest.approx((ref["precision"], ref["recall"]), abs=1e-9)
    assert ours["protocol"]["weights_sha256"] == ex.file_sha256(tiny_clip)
    with pytest.raises(MetricError, match="gives no features for is"):
        fidelity.FeatureSpace("clip-vit-b-32", weights_path=tiny_clip, metrics=("is",))
    with pytest.raises(MetricError, match="needs its weights file"):
        fidelity.FeatureSpace("clip-vit-b-32", metrics=("fid",))


TOY_HUBCONF = '''
import torch

class Toy(torch.nn.Module):
    """A stand-in for DINOv2's ViT: 14 px patches, mean over patches, 384 features."""
    def __init__(self):
        super().__init__()
        self.patch = torch.nn.Conv2d(3, 8, 14, stride=14)
        self.head = torch.nn.Linear(8, 384)

    def forward(self, x):
        return self.head(self.patch(x).mean((2, 3)))

def dinov2_vits14(*, pretrained=True, **kwargs):
    if pretrained:
        raise RuntimeError("would download")
    return Toy()
'''


@pytest.fixture(scope="module")
def toy_dinov2(tmp_path_factory) -> tuple[Path, Path, torch.nn.Module]:
    """A local 'facebookresearch/dinov2' checkout with a toy hubconf, and a weights file for it: the plumbing
    without the real code and weights (not on these machines; the real code was checked by hand)."""
    import importlib.util
    root = tmp_path_factory.mktemp("dinov2")
    code = root / "code"
    (code / "dinov2").mkdir(parents=True)
    (code / "hubconf.py").write_text(TOY_HUBCONF)
    (code / "dinov2" / "__init__.py").write_text("")
    spec = importlib.util.spec_from_file_location("toy_hubconf", code / "hubconf.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    torch.manual_seed(3)
    net = mod.Toy().eval()
    weights = root / "dinov2_vits14_pretrain.pth"
    torch.save(net.state_dict(), weights)
    return code, weights, net


def test_dinov2_from_local_code_and_weights_equals_torch_fidelitys_forward(mnist, toy_dinov2, monkeypatch) -> None:
    import torch_fidelity
    from torch_fidelity.interpolate_compat_tensorflow import interpolate_bilinear_2d_like_tensorflow1x
    from metrics import extractor_dinov2 as dv
    code, weights, net = toy_dinov2
    monkeypatch.setenv(dv.CODE_ENV_VAR, str(code))
    gen, real = _digits(mnist, 3)[:60].repeat(1, 3, 1, 1), _digits(mnist, 8)[:64].repeat(1, 3, 1, 1)
    space = fidelity.FeatureSpace("dinov2-vit-s-14", weights_path=weights, metrics=("fid",))
    feats = space.features(gen[:5])["dinov2"]
    u8 = ex.prepare_batch(gen[:5], ex.spec("dinov2-vit-s-14"), "none")
    x = interpolate_bilinear_2d_like_tensorflow1x(u8.float(), size=(224, 224), align_corners=False)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1) * 255
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1) * 255
    with torch.no_grad():
        assert torch.allclose(feats, net((x - mean) / std), atol=1e-5)
    ref = torch_fidelity.calculate_metrics(
        input1=_Images(gen), input2=_Images(real), feature_extractor="dinov2-vit-s-14",
        feature_extractor_weights_path=str(weights), fid=True, prc=True, cuda=False, cache=False, verbose=False,
        save_cpu_ram=True, batch_size=32)
    ours = fidelity.compute(gen, real, extractor="dinov2-vit-s-14", weights_path=weights, metrics=("fid", "prc"),
                            cache=False)
    assert ours["fid"] == pytest.approx(ref["frechet_inception_distance"], rel=1e-5)
    assert (ours["precision"], ours["recall"]) == pytest.approx((ref["precision"], ref["recall"]), abs=1e-9)
    proto = ours["protocol"]
    assert proto["weights_sha256"] == ex.file_sha256(weights)
    assert proto["dinov2_code_sha256"] == dv.code_sha256(code)
    (code / "dinov2" / "extra.py").write_text("# the code changed\n")       # another code, another protocol
    assert fidelity.FeatureSpace("dinov2-vit-s-14", weights_path=weights).protocol["dinov2_code_sha256"] != \
        proto["dinov2_code_sha256"]
    (code / "dinov2" / "extra.py").unlink()


def test_dinov2_without_local_files_says_what_to_fetch(toy_dinov2, tmp_path, monkeypatch) -> None:
    from metrics import extractor_dinov2 as dv
    code, _, _ = toy_dinov2
    monkeypatch.setenv("BENCH_DATA_ROOT", str(tmp_path))
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    monkeypatch.setenv(dv.CODE_ENV_VAR, str(code))
    with pytest.raises(MetricError, match="needs dinov2_vitl14_pretrain.pth: download https://dl.fbaipublicfiles"
                                          ".com/dinov2/dinov2_vitl14/dinov2_vitl14_pretrain.pth") as err:
        fidelity.FeatureSpace("dinov2-vit-l-14", metrics=("fid",))
    assert "\n" not in str(err.value)
    monkeypatch.delenv(dv.CODE_ENV_VAR)
    (tmp_path / "w.pth").write_bytes(b"")
    with pytest.raises(MetricError, match="git clone https://github.com/facebookresearch/dinov2"):
        fidelity.FeatureSpace("dinov2-vit-l-14", weights_path=tmp_path / "w.pth", metrics=("fid",))
    with pytest.raises(MetricError, match="gives no features for is"):
        fidelity.FeatureSpace("dinov2-vit-l-14", weights_path=tmp_path / "w.pth", metrics=("is",))
