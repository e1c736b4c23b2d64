"""LPIPS (paired and diversity) against a hand-written forward pass of the paper's definition.

The real ImageNet trunk is not on this machine: the plumbing is tested with a random torchvision AlexNet
saved as a local weights file, and the number with the package's learned lin layers, checked against the
authors' lpips 0.1.4 release by sha256.
"""

from __future__ import annotations

import hashlib

import pytest
import torch
import torchvision

from bench.data.base import DatasetInfo
from bench.errors import MetricError
from bench.registry import METRICS
from bench.tasks import Field, TaskSpec
from metrics.base import ScoreContext
from metrics.lpips import TRUNK_ENV_VAR, lin_weights, lpips_distance, lpips_network, trunk_weights

# sha256 of lpips/weights/v0.1/<net>.pth in the authors' lpips 0.1.4 wheel (PyPI)
AUTHORS_LIN_SHA256 = {
    "alex": "df73285e35b22355a2df87cdb6b70b343713b667eddbda73e1977e0c860835c0",
    "vgg": "a78928a0af1e5f0fcb1f3b9e8f8c3a2a5a3de244d830ad5c1feddc79b8432868",
    "squeeze": "4a5350f23600cb79923ce65bb07cbf57dca461329894153e05a1346bd531cf76",
}
# the paper's v0.1 scaling layer (lpips.ScalingLayer): (x - shift) / scale
SHIFT = torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1)
SCALE = torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1)
ALEX_TAPS = (1, 4, 7, 9, 11)       # relu1..relu5 of torchvision's alexnet.features


@pytest.fixture(scope="module")
def alex_file(tmp_path_factory):
    torch.manual_seed(0)
    net = torchvision.models.alexnet(weights=None)
    path = tmp_path_factory.mktemp("lpips") / "alexnet-owt-7be5be79.pth"
    torch.save(net.state_dict(), path)
    return path, net.features.eval()


def _by_hand(a: torch.Tensor, b: torch.Tensor, features: torch.nn.Module) -> torch.Tensor:
    lin = torch.load(lin_weights("alex"), map_location="cpu", weights_only=True)
    w = [lin[f"lin{k}.model.1.weight"] for k in range(5)]
    total = torch.zeros(len(a), dtype=torch.float64)
    xa, xb = (a - SHIFT) / SCALE, (b - SHIFT) / SCALE
    k = 0
    with torch.no_grad():
        for i, layer in enumerate(features):
            xa, xb = layer(xa), layer(xb)
            if i in ALEX_TAPS:
                na = xa / (xa.pow(2).sum(1, keepdim=True).sqrt() + 1e-8)
                nb = xb / (xb.pow(2).sum(1, keepdim=True).sqrt() + 1e-8)
                d = torch.nn.functional.conv2d((na - nb) ** 2, w[k])       # 1x1, no bias
                total += d.mean((1, 2, 3)).double()
                k += 1
    return total


def _images(n: int, side: int = 64, seed: int = 0, channels: int = 3) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, channels, side, side, generator=g) * 2 - 1


def test_lin_layers_are_the_authors_v01_release() -> None:
    for net, sha in AUTHORS_LIN_SHA256.items():
        assert hashlib.sha256(lin_weights(net).read_bytes()).hexdigest() == sha


def test_distance_equals_the_definition_by_hand(alex_file) -> None:
    path, features = alex_file
    model, used = lpips_network("alex", path)
    assert used == path
    a, b = _images(5, seed=1), _images(5, seed=2)
    got = lpips_distance(a, b, model, batch_size=2)
    assert got.shape == (5,)
    assert torch.allclose(got, _by_hand(a, b, features), rtol=1e-4, atol=1e-7)
    assert torch.allclose(lpips_distance(b, a, model), got, rtol=1e-5)              # symmetric
    assert lpips_distance(a, a, model).abs().max() < 1e-7                             # zero on itself
    # grey images are repeated to three channels; resize goes through bilinear interpolation
    g = _images(2, side=40, seed=3, channels=1)
    assert torch.allclose(lpips_distance(g, -g, model), lpips_distance(g.repeat(1, 3, 1, 1), -g.repeat(1, 3, 1, 1),
                                                                      model))
    small = _images(2, side=16, seed=4)
    with pytest.raises(MetricError, match="resize = 64"):
        lpips_distance(small, -small, model)
    up = torch.nn.functional.interpolate(small, size=(64, 64), mode="bilinear", align_corners=False)
    assert torch.allclose(lpips_distance(small, -small, model, resize=64), _by_hand(up, -up, features), rtol=1e-4)


def test_trunk_weights_are_local_only_with_one_line_errors(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv(TRUNK_ENV_VAR, raising=False)
    monkeypatch.setenv("BENCH_DATA_ROOT", str(tmp_path / "data"))
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    with pytest.raises(MetricError, match=f"{TRUNK_ENV_VAR}=/path/to/alexnet-owt-7be5be79.pth") as err:
        trunk_weights("alex")
    assert "\n" not in str(err.value) and "nothing is downloaded" in str(err.value)
    with pytest.raises(MetricError, match="not one of alex, vgg, squeeze"):
        trunk_weights("resnet")
    hub = tmp_path / "hub" / "checkpoints" / "vgg16-397923af.pth"
    hub.parent.mkdir(parents=True)
    hub.write_bytes(b"x")
    assert trunk_weights("vgg") == hub                                  # torchvision's own cache is used
    bad = tmp_path / "other.pth"
    torch.save({"classifier.weight": torch.zeros(2)}, bad)
    with pytest.raises(MetricError, match="lack features.0.weight"):
        lpips_network("alex", bad)


def _ctx(options: dict, tmp_path, class_input: bool = False, pairing: str = "paired") -> ScoreContext:
    info = DatasetInfo(name="t", tasks=(), num_classes=3, provides=("image", "label", "photo", "index"))
    inputs = {"c": Field("label", "class")} if class_input else {"x": Field("photo", "image", 3)}
    task = TaskSpec("t", inputs=inputs, targets={"y": Field("image", "image", 3)}, pairing=pairing).bind(info)
    return ScoreContext(task=task, device=torch.device("cpu"), cache_dir=tmp_path, options=options)


def test_paired_scorer_is_the_mean_distance_with_its_protocol(alex_file, tmp_path) -> None:
    path, _ = alex_file
    pred, target = _images(7, seed=5), _images(7, seed=6)
    scorer = METRICS.get("lpips")(_ctx({"weights_path": str(path), "batch_size": 3}, tmp_path))
    for i in range(0, 7, 4):
        scorer.update(pred[i:i + 4], {"image": target[i:i + 4]})
    model, _ = lpips_network("alex", path)
    assert scorer.compute()["lpips"] == pytest.approx(float(lpips_distance(pred, target, model).mean()), rel=1e-6)
    p = scorer.protocol()
    assert p["trunk_sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert p["lin_sha256"] == AUTHORS_LIN_SHA256["alex"] and p["net"] == "alex"
    assert not scorer.is_higher_better("lpips") and scorer.score_reference({"image": target}) is None
    with pytest.raises(MetricError, match="has no option 'pairs'"):
        METRICS.get("lpips")(_ctx({"weights_path": str(path), "pairs": 3}, tmp_path))


def test_diversity_scorer_zero_on_copies_and_pairs_within_classes(alex_file, tmp_path) -> None:
    path, _ = alex_file
    model, _ = lpips_network("alex", path)
    labels = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1, 2])
    base = _images(3, seed=7)
    copies = base[labels]                               # each class is one image repeated
    real = _images(9, seed=8)
    scorer = METRICS.get("lpips-diversity")(_ctx({"weights_path": str(path), "pairs": 4}, tmp_path, class_input=True))
    for i in range(0, 9, 5):
        scorer.update(copies[i:i + 5], {"image": real[i:i + 5], "label": labels[i:i + 5]})
    out = scorer.compute()
    assert out["lpips_div"] == pytest.approx(0.0, abs=1e-7)
    # the real value: the same pairs by hand
    from metrics.diversity import sample_same_class_pairs
    a, b, c = sample_same_class_pairs(labels, 9, 4, 0)
    assert bool((labels[a] == labels[b]).all() and (a != b).all())
    assert out["lpips_div_real"] == pytest.approx(float(lpips_distance(real[a], real[b], model).mean()), rel=1e-6)
    assert out["lpips_div_real"] > 0
    assert scorer.protocol()["pairs_per_class"] == 4
