"""The decoupled-learning paper's encoder, decoder and image discriminator (its Table 1 network).

Source: Zhang, Song & Qi, "Decoupled learning for conditional adversarial networks" (WACV 2018),
Table 1, and the authors' code for kernel 5x5, stride 2 (papers.md section C). At 128 x 128 x 3:

- encoder / D: 5 x (conv 5x5 s2, norm, ReLU) 64-128-256-512-1024 down to 4x4, FC to ``z_dim``
  (tanh) for the encoder, FC to 1 logit for D;
- decoder / G: FC to 4x4x1024, 4 x (deconv 5x5 s2, norm, ReLU) 512-256-128-64, deconv to the image
  channels, tanh.

Other sizes keep the shape: ``log2(image_size / 4)`` stride-2 layers with widths ``width * 2**k``
(at 32 x 32: 3 layers 64-128-256 down to 4x4). ``norm`` is "batch" (the paper) or "none" (its
Table 3, ED without batch norm).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from bench.errors import ConfigError
from bench.nets import init_weights, make_norm


def depth_for(what: str, image_size: int) -> int:
    """Stride-2 layers from ``image_size`` down to 4 (one-line error unless a power of two >= 8)."""
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 8 \
            or image_size & (image_size - 1):
        raise ConfigError(f"{what}: image_size must be a power of two of at least 8 (it halves down to 4x4), "
                          f"got {image_size!r}")
    return int(math.log2(image_size // 4))


def _check_counts(what: str, **counts: int) -> None:
    for name, v in counts.items():
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ConfigError(f"{what}: {name} must be an integer of at least 1, got {v!r}")


def down_stack(in_channels: int, image_size: int, width: int, norm: str, what: str) -> tuple[nn.Sequential, int]:
    """``log2(image_size/4)`` x (conv 5x5 s2, norm, ReLU); returns the stack and its flat output size."""
    layers: list[nn.Module] = []
    c = in_channels
    n = depth_for(what, image_size)
    for k in range(n):
        layers.append(nn.Conv2d(c, width * 2 ** k, 5, 2, 2))
        c = width * 2 ** k
        layer = make_norm(norm, c)
        if layer is not None:
            layers.append(layer)
        layers.append(nn.ReLU())
    return nn.Sequential(*layers, nn.Flatten()), c * 16


class ConvEncoder(nn.Module):
    """Image (N, C, s, s) -> latent (N, z_dim) in [-1, 1] (tanh)."""

    def __init__(self, in_channels: int, z_dim: int, *, image_size: int = 128, width: int = 64,
                 norm: str = "batch"):
        super().__init__()
        _check_counts(type(self).__name__, in_channels=in_channels, z_dim=z_dim, width=width)
        self.features, flat = down_stack(in_channels, image_size, width, norm, type(self).__name__)
        self.fc = nn.Linear(flat, z_dim)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.fc(self.features(x)))


class ConvDecoder(nn.Module):
    """Latent (N, z_dim) -> image (N, out_channels, s, s) in [-1, 1] (tanh)."""

    def __init__(self, z_dim: int, out_channels: int, *, image_size: int = 128, width: int = 64,
                 norm: str = "batch"):
        super().__init__()
        _check_counts(type(self).__name__, z_dim=z_dim, out_channels=out_channels, width=width)
        n = depth_for(type(self).__name__, image_size)
        c = width * 2 ** (n - 1)
        self.base = (c, 4, 4)
        self.fc = nn.Linear(z_dim, c * 16)
        layers: list[nn.Module] = []
        head = make_norm(norm, c)
        if head is not None:
            layers.append(head)
        layers.append(nn.ReLU())
        for k in range(n - 2, -1, -1):
            layers.append(nn.ConvTranspose2d(c, width * 2 ** k, 5, 2, 2, output_padding=1))
            c = width * 2 ** k
            layer = make_norm(norm, c)
            if layer is not None:
                layers.append(layer)
            layers.append(nn.ReLU())
        layers += [nn.ConvTranspose2d(c, out_channels, 5, 2, 2, output_padding=1), nn.Tanh()]
        self.blocks = nn.Sequential(*layers)
        init_weights(self)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.fc(z)
        return self.blocks(h.view(h.shape[0], *self.base))


class ConvCritic(nn.Module):
    """The paper's D: the encoder's stack with one logit (N,) instead of the latent."""

    def __init__(self, in_channels: int, *, image_size: int = 128, ndf: int = 64, norm: str = "batch"):
        super().__init__()
        _check_counts(type(self).__name__, in_channels=in_channels, ndf=ndf)
        self.features, flat = down_stack(in_channels, image_size, ndf, norm, type(self).__name__)
        self.fc = nn.Linear(flat, 1)
        init_weights(self)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(y)).squeeze(1)
