"""MS-SSIM diversity (AC-GAN protocol) against direct pytorch-msssim calls."""

from __future__ import annotations

import json

import pytest
import pytorch_msssim
import torch
import torch.nn.functional as F

from bench.data.base import DatasetInfo
from bench.errors import MetricError
from bench.registry import METRICS
from bench.tasks import Field, TaskSpec
from metrics.base import ScoreContext
from metrics.diversity import (DiversityScorer, diversity_protocol, ms_ssim_diversity, ms_ssim_per_class,
                               sample_same_class_pairs)


def _images(n: int, size: int | tuple[int, int], seed: int = 0, channels: int = 3) -> torch.Tensor:
    """Smooth-ish random images in [-1, 1] (blurred noise, so MS-SSIM is not trivially ~0)."""
    h, w = (size, size) if isinstance(size, int) else size
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, channels, h // 4 + 1, w // 4 + 1, generator=g)
    x = F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False)
    return (x + 0.1 * torch.rand(n, channels, h, w, generator=g)).clamp(0, 1) * 2 - 1


def test_pair_sampler_is_same_class_distinct_and_seeded() -> None:
    labels = torch.tensor([2, 0, 2, 1, 0, 2, 0, 7])          # classes 1 and 7 have one image: skipped
    a, b, cls = sample_same_class_pairs(labels, len(labels), pairs=50, seed=4)
    assert torch.equal(labels[a], cls) and torch.equal(labels[b], cls)
    assert bool((a != b).all())
    assert cls.unique().tolist() == [0, 2]
    assert [(cls == c).sum().item() for c in (0, 2)] == [50, 50]
    a2, b2, _ = sample_same_class_pairs(labels, len(labels), pairs=50, seed=4)
    assert torch.equal(a, a2) and torch.equal(b, b2)
    a3, _, _ = sample_same_class_pairs(labels, len(labels), pairs=50, seed=5)
    assert not torch.equal(a, a3)
    with pytest.raises(MetricError, match="two or more"):
        sample_same_class_pairs(torch.tensor([0, 1, 2]), 3)
    with pytest.raises(MetricError, match="one label per image"):
        sample_same_class_pairs(torch.tensor([0, 1]), 3)


def test_identical_pairs_give_one() -> None:
    base = _images(2, 32)
    images = torch.cat([base[:1].expand(3, -1, -1, -1), base[1:].expand(3, -1, -1, -1)])
    labels = torch.tensor([0, 0, 0, 1, 1, 1])
    assert ms_ssim_diversity(images, labels, pairs=4) == pytest.approx(1.0, abs=1e-5)


def test_equals_direct_pytorch_msssim_on_the_same_pairs() -> None:
    """At 168 px (>= 161) no resizing happens: the value is pytorch-msssim on [0, 1] images, data_range 1."""
    images = _images(5, 168, seed=1)
    labels = torch.tensor([0, 1, 0, 1, 0])
    a, b, _ = sample_same_class_pairs(labels, 5, pairs=2, seed=9)
    x01 = (images + 1) / 2
    # in float64 as the bench computes (a float32 reference differs by ~1e-6, by torch version)
    direct = pytorch_msssim.ms_ssim(x01[a].double(), x01[b].double(), data_range=1.0, size_average=True)
    got = ms_ssim_diversity(images, labels, pairs=2, seed=9)
    assert got == pytest.approx(float(direct), abs=1e-6)
    assert ms_ssim_diversity(images, labels, pairs=2, seed=9, batch_size=1) == pytest.approx(got, abs=1e-6)
    # the same images given in [0, 1] with value_range=(0, 1) score the same
    assert ms_ssim_diversity(x01, labels, pairs=2, seed=9, value_range=(0, 1)) == pytest.approx(got, abs=1e-6)


@pytest.mark.parametrize("size, upsampled", [(32, (176, 176)), ((32, 48), (176, 264))])
def test_small_images_are_upsampled_bilinear(size, upsampled) -> None:
    images = _images(4, size, seed=2)
    labels = torch.tensor([0, 0, 1, 1])
    a, b, cls = sample_same_class_pairs(labels, 4, pairs=1, seed=0)
    # the reference in float64 too (as the metric computes), with a Gaussian window normalised in float64
    up = F.interpolate(((images + 1) / 2).double(), size=upsampled, mode="bilinear", align_corners=False).clamp(0, 1)
    g = torch.exp(-(torch.arange(11, dtype=torch.float64) - 5) ** 2 / (2 * 1.5 ** 2))
    win = (g / g.sum()).view(1, 1, 1, 11).repeat(3, 1, 1, 1)
    direct = pytorch_msssim.ms_ssim(up[a], up[b], data_range=1.0, size_average=False, win=win)
    per_class = ms_ssim_per_class(images, labels, pairs=1, seed=0)
    assert per_class[0] == pytest.approx(float(direct[cls == 0].mean()), abs=1e-6)
    assert per_class[1] == pytest.approx(float(direct[cls == 1].mean()), abs=1e-6)


def test_small_image_error_mode_and_bad_ranges() -> None:
    images = _images(4, 32)
    with pytest.raises(MetricError, match="at least 161"):
        ms_ssim_diversity(images, None, pairs=2, small="error")
    with pytest.raises(MetricError, match="value_range"):
        ms_ssim_diversity(images * 2, None, pairs=2)
    with pytest.raises(MetricError, match="resize_mode"):
        ms_ssim_diversity(images, None, pairs=2, resize_mode="lanczos")


def test_diverse_samples_score_lower_than_near_copies() -> None:
    diverse = _images(6, 32, seed=3)
    near = diverse[:1] + 0.02 * torch.randn(6, *diverse.shape[1:], generator=torch.Generator().manual_seed(0))
    d_div = ms_ssim_diversity(diverse, None, pairs=3)
    d_near = ms_ssim_diversity(near.clamp(-1, 1), None, pairs=3)
    assert d_div < 0.8 < d_near <= 1.0


def test_protocol_is_stamped_and_json_able() -> None:
    p = diversity_protocol(pairs=100, seed=0)
    json.dumps(p)
    assert p["pairs_per_class"] == 100 and p["seed"] == 0
    assert p["small"] == "upsample" and p["resize_mode"] == "bilinear"
    assert p["min_side"] == (11 - 1) * 2 ** 4 + 1
    assert p["target_side"] == 176
    assert p["data_range"] == 1.0 and p["value_range"] == [-1.0, 1.0]
    assert p["weights"] == [0.0448, 0.2856, 0.3001, 0.2363, 0.1333]


# -- the ms-ssim-diversity scorer ------------------------------------------------------------------
def _class_task(class_input: bool = True) -> TaskSpec:
    info = DatasetInfo(name="mnist-test", tasks=(), num_classes=10, provides=("image", "label", "index"))
    inputs = {"c": Field("label", "class")} if class_input else {}
    return TaskSpec("t", inputs=inputs, targets={"y": Field("image", "image", 1)}, pairing="none").bind(info)


def _score_ctx(options: dict, tmp_path, class_input: bool = True) -> ScoreContext:
    return ScoreContext(task=_class_task(class_input), device=torch.device("cpu"), cache_dir=tmp_path,
                        options=options)


def _on_grid(x: torch.Tensor) -> torch.Tensor:
    """Images in [-1, 1] on the uint8 grid (what the scorer stores), so direct calls see the same pixels."""
    return ((x + 1) * 127.5).round() / 127.5 - 1


def _stream(scorer: DiversityScorer, gen: torch.Tensor, real: torch.Tensor, labels: torch.Tensor,
            size: int = 5) -> dict[str, float]:
    for i in range(0, len(gen), size):
        batch = {"image": real[i:i + size], "label": labels[i:i + size]}
        scorer.update(gen[i:i + size], batch)
    return scorer.compute()


def test_scorer_equals_direct_calls_on_generated_and_real(tmp_path) -> None:
    labels = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 1, 2])
    gen, real = _on_grid(_images(12, 28, seed=5, channels=1)), _on_grid(_images(12, 28, seed=6, channels=1))
    out = _stream(METRICS.get("ms-ssim-diversity")(_score_ctx({"pairs": 7, "seed": 3}, tmp_path)), gen, real, labels)
    assert set(out) == {"ms_ssim", "ms_ssim_real"}
    assert out["ms_ssim"] == pytest.approx(ms_ssim_diversity(gen, labels, pairs=7, seed=3), abs=1e-5)
    assert out["ms_ssim_real"] == pytest.approx(ms_ssim_diversity(real, labels, pairs=7, seed=3), abs=1e-5)
    assert out["ms_ssim"] != pytest.approx(out["ms_ssim_real"], abs=1e-3)
    # defaults: 100 pairs per class, seed 0
    default = _stream(DiversityScorer(_score_ctx({}, tmp_path)), gen, real, labels)
    assert default["ms_ssim"] == pytest.approx(ms_ssim_diversity(gen, labels), abs=1e-5)
    # the oracle row (the real images as samples) scores the real value
    oracle = DiversityScorer(_score_ctx({"pairs": 7, "seed": 3}, tmp_path))
    for i in range(0, 12, 5):
        batch = {"image": real[i:i + 5], "label": labels[i:i + 5]}
        oracle.update(oracle.score_reference(batch), batch)
    assert oracle.compute()["ms_ssim"] == pytest.approx(out["ms_ssim_real"], abs=1e-6)


def test_scorer_identical_images_per_class_give_one(tmp_path) -> None:
    base = _on_grid(_images(2, 28, seed=7, channels=1))
    labels = torch.tensor([4, 9, 4, 9, 4, 9])
    gen = base[(labels == 9).long()]                              # every class is one image repeated
    real = _on_grid(_images(6, 28, seed=8, channels=1))
    out = _stream(DiversityScorer(_score_ctx({"pairs": 5}, tmp_path)), gen, real, labels, size=4)
    assert out["ms_ssim"] == pytest.approx(1.0, abs=1e-5)
    assert out["ms_ssim_real"] < 0.9
    # the requested classes matter: without a class field nor labels, all samples are one class
    fallback = _stream(DiversityScorer(_score_ctx({"pairs": 5}, tmp_path, class_input=False)), gen, real, labels)
    assert fallback["ms_ssim"] == pytest.approx(1.0, abs=1e-5)     # no class field: batch['label']
    one = DiversityScorer(_score_ctx({"pairs": 5}, tmp_path, class_input=False))
    one.update(gen, {"image": real})
    assert one.compute()["ms_ssim"] == pytest.approx(ms_ssim_diversity(gen, None, pairs=5), abs=1e-5)
    assert "one class" in one.protocol()["classes"]


def test_scorer_options_errors_and_protocol(tmp_path) -> None:
    with pytest.raises(MetricError, match="pairs, seed") as err:
        DiversityScorer(_score_ctx({"pairs": 10, "win_size": 7}, tmp_path))
    assert "'win_size'" in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(MetricError, match="pairs"):
        DiversityScorer.preflight(_score_ctx({"pairs": 0}, tmp_path))
    with pytest.raises(MetricError, match="integer"):
        DiversityScorer(_score_ctx({"seed": "zero"}, tmp_path))
    scorer = DiversityScorer(_score_ctx({"pairs": 10, "seed": 2}, tmp_path))
    with pytest.raises(MetricError, match="no samples"):
        scorer.compute()
    img = torch.zeros(3, 1, 28, 28)
    with pytest.raises(MetricError, match="one sample per image"):
        scorer.update(img[:2], {"image": img, "label": torch.tensor([0, 1, 2])})
    assert METRICS.get("ms-ssim-diversity") is DiversityScorer
    assert DiversityScorer.feed == "samples" and DiversityScorer.outputs == ("image",)
    assert not any(DiversityScorer.is_higher_better(k) for k in ("ms_ssim", "ms_ssim_real"))
    p = scorer.protocol()
    json.dumps(p)
    assert p["pairs_per_class"] == 10 and p["seed"] == 2 and p["value_range"] == [0.0, 255.0]
    assert p["scorer"] == "DiversityScorer" and "127.5" in p["quantisation"]


# -- precision on flat images -----------------------------------------------------------------------
def _flat_ms_ssim(a: float, b: float) -> float:
    """MS-SSIM of two constant images a, b (data_range 1): at every scale both variances and the
    covariance are 0, so contrast x structure is C2 / C2 = 1 (the 2x average pools of a 176 px side
    never pad, so the images stay constant); luminance enters at the coarsest scale only:
    1^(w1 + ... + w4) * ((2 a b + C1) / (a^2 + b^2 + C1))^w5 with C1 = 0.01^2 and w5 = 0.1333."""
    c1 = 0.01 ** 2
    return ((2 * a * b + c1) / (a * a + b * b + c1)) ** 0.1333


@pytest.mark.parametrize("size", [176, 64])          # 64 px is upsampled to 176 first (constant stays constant)
@pytest.mark.parametrize("a,b", [(0.25, 0.75), (0.875, 0.625), (0.9, 0.6)])
def test_ms_ssim_of_flat_images_equals_the_closed_form(size: int, a: float, b: float) -> None:
    images = torch.stack([torch.full((3, size, size), a), torch.full((3, size, size), b)])
    a32, b32 = float(images[0, 0, 0, 0]), float(images[1, 0, 0, 0])     # the float32 values scored
    got = ms_ssim_diversity(images, None, pairs=3, value_range=(0, 1))
    assert abs(got - _flat_ms_ssim(a32, b32)) < 1e-6, (got, _flat_ms_ssim(a32, b32))


def _counted(monkeypatch):
    """Six images of two classes (generated, real) and the list that records each MS-SSIM computation; the
    in-memory table of real values starts empty."""
    import metrics.diversity as md
    labels = torch.tensor([0, 1, 0, 1, 0, 1])
    gen, real = _on_grid(_images(6, 28, seed=1, channels=1)), _on_grid(_images(6, 28, seed=2, channels=1))
    calls: list[int] = []
    real_fn = md.ms_ssim_diversity
    monkeypatch.setattr(md, "ms_ssim_diversity", lambda x, *a, **k: calls.append(len(x)) or real_fn(x, *a, **k))
    monkeypatch.setattr(md, "_REAL_VALUES", {})
    return md, labels, gen, real, calls, real_fn


def test_real_value_is_computed_once_per_test_set(tmp_path, monkeypatch) -> None:
    """The real images' MS-SSIM is the same at every evaluation: computed once per images + classes +
    protocol, and a different test set, class list or option gets its own value."""
    md, labels, gen, real, calls, real_fn = _counted(monkeypatch)
    first = _stream(DiversityScorer(_score_ctx({"pairs": 4}, tmp_path)), gen, real, labels, size=3)
    again = _stream(DiversityScorer(_score_ctx({"pairs": 4}, tmp_path)), gen.flip(0), real, labels, size=3)
    assert len(calls) == 3                                   # gen, real, gen: the real value was reused
    assert again["ms_ssim_real"] == first["ms_ssim_real"] == pytest.approx(
        real_fn(real, labels, pairs=4, seed=0), abs=1e-6)
    _stream(DiversityScorer(_score_ctx({"pairs": 4, "seed": 1}, tmp_path)), gen, real, labels)
    _stream(DiversityScorer(_score_ctx({"pairs": 4}, tmp_path)), gen, real.flip(0), labels)
    assert len(calls) == 7                                   # another seed, other images: computed again


def test_real_value_is_kept_in_the_cache_folder_for_the_next_process(tmp_path, monkeypatch) -> None:
    """Each run scores in a worker process of its own: the real value computed by one is read by the next from
    the cache folder (a new process starts with an empty in-memory table), and a damaged file is recomputed."""
    md, labels, gen, real, calls, real_fn = _counted(monkeypatch)
    first = _stream(DiversityScorer(_score_ctx({"pairs": 4}, tmp_path)), gen, real, labels, size=3)
    files = list((tmp_path / md.REAL_CACHE_FOLDER).glob("*.json"))
    assert len(calls) == 2 and len(files) == 1
    monkeypatch.setattr(md, "_REAL_VALUES", {})                      # the next process
    again = _stream(DiversityScorer(_score_ctx({"pairs": 4}, tmp_path)), gen, real, labels, size=3)
    assert len(calls) == 3 and again["ms_ssim_real"] == first["ms_ssim_real"]    # only gen computed
    files[0].write_text("{not json")                                 # a damaged file: computed again, rewritten
    monkeypatch.setattr(md, "_REAL_VALUES", {})
    third = _stream(DiversityScorer(_score_ctx({"pairs": 4}, tmp_path)), gen, real, labels, size=3)
    assert len(calls) == 5 and third["ms_ssim_real"] == first["ms_ssim_real"]
    assert json.loads(files[0].read_text())["ms_ssim_real"] == first["ms_ssim_real"]
