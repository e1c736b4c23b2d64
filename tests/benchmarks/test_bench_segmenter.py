"""Speed of the scoring segmenters (pytest-benchmark; run with ``--benchmark-enable`` to time them).

- ESPNet scoring one generated 256x256 photo at the upstream input size (1024x512): the per-image
  cost of the Cityscapes segmenter score (CPU: about 1.5 s one core; 500 val images about 12 min).
- One training step of the default smp protocol (PSPNet, resnet18, batch 8, 64x64): 150 such steps
  are the segmenter the bench trains for a dataset without a pretrained one (target: < 60 s on
  2 cores, hashing of the training samples included).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from metrics.espnet import ESPNet, preprocess
from metrics.smp_training import SMPTrainProtocol, build_model


@pytest.mark.parametrize("onednn", [True, False], ids=["oneDNN", "no-oneDNN"])
def test_bench_espnet_one_image_at_1024x512(benchmark, onednn) -> None:
    """oneDNN on / off for this model (measured on 2 cores, torch 2.14.1: 0.46 s vs 0.87 s per image, the
    same predictions to 5e-5 in the logits): the bench keeps torch's default (on)."""
    model = ESPNet().eval()                      # random weights: the cost does not depend on them
    image = torch.rand(1, 3, 256, 256) * 2 - 1

    def run() -> torch.Tensor:
        with torch.no_grad(), torch.backends.mkldnn.flags(enabled=onednn):
            return model(preprocess(image))

    out = benchmark(run)
    assert out.shape == (1, 20, 512, 1024)


def test_bench_segmenter_score_cached_batch(benchmark, tmp_path, monkeypatch) -> None:
    """A batch the scorer has seen (the oracle row's real photos in every run): a hash and a small file read
    instead of ESPNet at 1024x512 (about 0.5 s per image on 2 cores)."""
    from bench.data.cityscapes import INFO
    from bench.registry import METRICS, TASKS
    from metrics.base import ScoreContext
    import metrics.segmenter_score as ss
    from metrics.segmenters import ESPNetSegmenter
    ctx = ScoreContext(task=TASKS.get("labels2photo").bind(INFO), device=torch.device("cpu"), cache_dir=tmp_path)
    # the scorer without its weights file: a random-weight ESPNet (the cost does not depend on the weights)
    monkeypatch.setattr(ss, "build_segmenter", lambda *a, **k: ESPNetSegmenter(ESPNet(), "random"))
    scorer = METRICS.get("segmenter-score")(ctx)
    g = torch.Generator().manual_seed(0)
    batch = {"photo": torch.rand(4, 3, 256, 256, generator=g) * 2 - 1,
             "label": torch.randint(0, 19, (4, 256, 256), generator=g)}
    scorer.update(batch["photo"], batch)          # computes and caches
    benchmark(scorer.update, batch["photo"], batch)
    assert scorer.num_images >= 8


def test_bench_smp_default_training_step_64px(benchmark) -> None:
    proto = SMPTrainProtocol()
    torch.manual_seed(0)
    model = build_model(proto, 7).train()
    opt = torch.optim.Adam(model.parameters(), lr=proto.lr)
    x = torch.rand(proto.batch_size, 3, 64, 64) * 2 - 1
    y = torch.randint(0, 7, (proto.batch_size, 64, 64))

    def step() -> float:
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss.item()

    assert benchmark(step) > 0
