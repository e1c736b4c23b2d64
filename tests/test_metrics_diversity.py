"""MS-SSIM diversity (AC-GAN protocol) against direct pytorch-msssim calls."""

from __future__ import annotations

import json

import pytest
import pytorch_msssim
import torch
import torch.nn.functional as F

from bench.errors import MetricError
from metrics.diversity import (diversity_protocol, ms_ssim_diversity, ms_ssim_per_class,
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
    direct = pytorch_msssim.ms_ssim(x01[a], x01[b], data_range=1.0, size_average=True)
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
    up = F.interpolate((images + 1) / 2, size=upsampled, mode="bilinear", align_corners=False).clamp(0, 1)
    direct = pytorch_msssim.ms_ssim(up[a], up[b], data_range=1.0, size_average=False)
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
