"""Speed of the scoring segmenters (pytest-benchmark; run with ``--benchmark-enable`` to time them).

- ESPNet scoring one generated 256x256 photo at the upstream input size (1024x512): the per-image
  cost of the Cityscapes segmenter score (CPU: about 1.5 s one core; 500 val images about 12 min).
- One training step of the default smp protocol (PSPNet, resnet18, batch 8, 64x64): 150 such steps
  are the segmenter the bench trains for a dataset without a pretrained one (target: < 60 s on
  2 cores, hashing of the training samples included).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from metrics.espnet import ESPNet, preprocess
from metrics.smp_training import SMPTrainProtocol, build_model


def test_bench_espnet_one_image_at_1024x512(benchmark) -> None:
    model = ESPNet().eval()                      # random weights: the cost does not depend on them
    image = torch.rand(1, 3, 256, 256) * 2 - 1

    def run() -> torch.Tensor:
        with torch.no_grad():
            return model(preprocess(image))

    out = benchmark(run)
    assert out.shape == (1, 20, 512, 1024)


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
