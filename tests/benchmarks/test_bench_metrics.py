"""Speed of the metric kernels (pytest-benchmark; run with ``--benchmark-enable`` to time them).

Sizes: a Cityscapes-like evaluation batch for the confusion matrix (16 x 512 x 512, 19 classes),
a full-resolution NYU batch for the depth errors (16 x 480 x 640, Eigen crop), and the AC-GAN
diversity protocol at 64 x 64 (100 pairs, upsampled to 176 px as the default protocol says).
"""

from __future__ import annotations

import torch

from metrics.depth import depth_errors
from metrics.diversity import ms_ssim_diversity
from metrics.segmentation import confusion_matrix, scores


def test_bench_confusion_matrix_16x512x512(benchmark) -> None:
    g = torch.Generator().manual_seed(0)
    target = torch.randint(0, 19, (16, 512, 512), generator=g)
    target[:, :32] = 255
    pred = torch.randint(0, 19, (16, 512, 512), generator=g)
    cm = benchmark(confusion_matrix, pred, target, 19)
    assert int(cm.sum()) == 16 * 480 * 512
    assert 0 < scores(cm)["mean_iou"] < 0.2


def test_bench_depth_errors_16x480x640(benchmark) -> None:
    g = torch.Generator().manual_seed(0)
    gt = torch.rand(16, 1, 480, 640, generator=g) * 10
    pred = gt * (0.8 + 0.4 * torch.rand(16, 1, 480, 640, generator=g))
    e = benchmark(depth_errors, pred, gt, crop="eigen")
    assert 0 < e["rel"] < 0.2 and e["delta1"] > 0.8


def test_bench_ms_ssim_diversity_100_pairs_64px(benchmark) -> None:
    g = torch.Generator().manual_seed(0)
    images = torch.rand(50, 3, 64, 64, generator=g) * 2 - 1
    value = benchmark(ms_ssim_diversity, images, None, 100, 0)
    assert 0 <= value < 0.2
