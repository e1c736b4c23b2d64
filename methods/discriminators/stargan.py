"""StarGAN's discriminator (Choi et al., CVPR 2018): a PatchGAN with a second head that classifies the domain.

Source: the StarGAN paper (appendix, "network architecture": PatchGAN, Leaky ReLU with slope 0.01, no
normalisation; D_src a 3x3 conv to one channel per patch, D_cls a conv over the whole remaining map to one logit
per domain) and the layout of its reference code (``Discriminator`` in ``model.py``; ``repeat_num`` stride-2 convs,
6 at 128 px so that the map is 2x2): written from that description, not copied.

Assumption: ``n_layers`` defaults to ``log2(image_size) - 1`` (a 2x2 map, the reference's 6 at 128 px) so that the
network fits any power-of-two side; the reference fixes it at 6.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from bench.contracts import DOutput
from bench.errors import ConfigError

MAX_WIDTH = 2048                # the reference's 64 * 2^5 at 128 px


def default_n_layers(image_size: int) -> int:
    """Stride-2 convs down to a 2x2 map: ``log2(image_size) - 1`` (6 at 128 px, 4 at 32 px)."""
    return max(1, int(math.log2(image_size)) - 1)


class StarGANDiscriminator(nn.Module):
    """``forward(y) -> DOutput(logits=[(N, 1, m, m)], heads={"cls": (N, num_classes)})`` for images (N, C, s, s).

    ``n_layers`` conv 4x4 stride 2 (with bias) each followed by LeakyReLU(0.01), widths ndf doubling (capped at
    2048); then D_src: conv 3x3 stride 1 to 1 channel (no bias), and D_cls: conv with kernel the map's side to
    ``num_classes`` logits (no bias). ``s`` must be a power of two.
    """

    def __init__(self, in_channels: int, num_classes: int, *, image_size: int = 128, ndf: int = 64,
                 n_layers: int | None = None):
        super().__init__()
        n = default_n_layers(image_size) if n_layers is None else n_layers
        if image_size < 2 or image_size & (image_size - 1):
            raise ConfigError(f"stargan discriminator: image_size must be a power of two, got {image_size}")
        if not isinstance(n, int) or n < 1 or image_size >> n < 1:
            raise ConfigError(f"stargan discriminator: n_layers must be between 1 and log2(image_size) = "
                              f"{int(math.log2(image_size))}, got {n!r}")
        if min(in_channels, num_classes, ndf) < 1:
            raise ConfigError("stargan discriminator: in_channels, num_classes and ndf must be at least 1")
        self.in_channels, self.image_size = in_channels, image_size
        layers: list[nn.Module] = []
        w_in, w = in_channels, ndf
        for _ in range(n):
            layers += [nn.Conv2d(w_in, w, 4, 2, 1), nn.LeakyReLU(0.01)]
            w_in, w = w, min(2 * w, MAX_WIDTH)
        self.main = nn.Sequential(*layers)
        side = image_size >> n
        self.src = nn.Conv2d(w_in, 1, 3, 1, 1, bias=False)
        self.cls = nn.Conv2d(w_in, num_classes, side, bias=False)

    def forward(self, y: torch.Tensor) -> DOutput:
        s = self.image_size
        if y.dim() != 4 or tuple(y.shape[1:]) != (self.in_channels, s, s):
            raise ConfigError(f"stargan discriminator expects images (N, {self.in_channels}, {s}, {s}), got "
                              f"{tuple(y.shape)}; build it with the matching in_channels / image_size")
        h = self.main(y)
        return DOutput([self.src(h)], heads={"cls": self.cls(h).flatten(1)})
