"""A critic on vectors (latents): CAAE's latent discriminator D_z.

Source: Zhang, Song & Qi, "Age Progression/Regression by Conditional Adversarial Autoencoder" (CVPR 2017)
and its public code (``discriminator_z``): fully connected 64 -> 32 -> 16, each followed by batch norm
and ReLU, then one logit. It judges whether a latent was drawn from the prior or produced by the encoder.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from bench.errors import ConfigError
from bench.nets import init_weights

NORMS = ("batch", "none")


class MLPCritic(nn.Module):
    """``forward(z) -> (N,)`` logits for vectors (N, in_features).

    ``hidden`` widths (default CAAE's 64, 32, 16), each layer Linear -> norm -> ReLU, then Linear(-> 1).
    ``norm``: "batch" (CAAE's code; its batch norm has a shift but no scale, this ``BatchNorm1d`` has both)
    or "none". Weights N(0, 0.02), norm scales N(1, 0.02), biases 0.
    """

    def __init__(self, in_features: int, *, hidden: Sequence[int] = (64, 32, 16), norm: str = "batch"):
        super().__init__()
        if isinstance(in_features, bool) or not isinstance(in_features, int) or in_features < 1:
            raise ConfigError(f"MLPCritic: in_features must be an integer of at least 1, got {in_features!r}")
        widths = list(hidden) if isinstance(hidden, (list, tuple)) else []
        if not widths or any(isinstance(h, bool) or not isinstance(h, int) or h < 1 for h in widths):
            raise ConfigError(f"MLPCritic: hidden must be a non-empty list of integers of at least 1, got {hidden!r}")
        if norm not in NORMS:
            raise ConfigError(f"MLPCritic: norm must be one of {', '.join(NORMS)}, not '{norm}'")
        layers: list[nn.Module] = []
        c = in_features
        for w in widths:
            layers.append(nn.Linear(c, w))
            if norm == "batch":
                layers.append(nn.BatchNorm1d(w))
            layers.append(nn.ReLU())
            c = w
        layers.append(nn.Linear(c, 1))
        self.net = nn.Sequential(*layers)
        self.in_features = in_features
        init_weights(self)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if z.dim() != 2 or z.shape[1] != self.in_features:
            raise ConfigError(f"MLPCritic expects vectors (N, {self.in_features}), got {tuple(z.shape)}")
        return self.net(z).squeeze(1)
