"""A fixed Gaussian distribution as a "model": nothing to train, samples from the prior.

The NRDS toy's sample sets (decoupled learning paper, papers.md section C): N(mean, std^2 I) in
``len(mean)`` dimensions. Each row names its own random ``stream``, so two rows draw independent
samples from the same request; the samples are a pure function of (request seed, stream).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from bench.contracts import FromPrior, MethodAdapter, SampleRequest, derive_seed
from bench.errors import ConfigError, MetricError


class FixedGaussian(MethodAdapter):
    @dataclass
    class Options:
        mean: list[float] = field(default_factory=lambda: [0.0, 0.0])
        std: float = 1.0
        stream: str = ""              # rows with different streams draw independent samples

        def __post_init__(self) -> None:
            if not self.mean or self.std <= 0:
                raise ConfigError("gaussian: mean must be a non-empty list and std positive")

    samples_from = ("prior",)
    trainable = False

    def train_step(self, batch: dict[str, torch.Tensor], step: int, update_g: bool) -> dict[str, torch.Tensor]:
        return {}

    @torch.no_grad()
    def sample(self, request: SampleRequest) -> dict[str, torch.Tensor]:
        if not isinstance(request, FromPrior):
            raise MetricError("the gaussian method samples from the prior only")
        o = self.options
        g = torch.Generator().manual_seed(derive_seed(request.seed, o.stream))
        z = torch.randn(request.n, len(o.mean), generator=g)
        return {"y": (z * o.std + torch.tensor(o.mean)).to(self.ctx.device)}

    def eval_protocol(self) -> dict[str, Any]:
        o = self.options
        return {"distribution": f"N({list(o.mean)}, {o.std}^2 I)", "stream": o.stream}
