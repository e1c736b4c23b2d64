"""VGG16-trunk discriminator on ``concat(x, y)`` with spectral norm (papers.md A, "VGG16 Concat + SN").

Source: the paper text names the VGG16 conv blocks 64-128-256-512-512 (Simonyan & Zisserman 2015,
configuration D: 3x3 convs, 2-2-3-3-3 per block, max-pool between). No public code; randomly
initialised (the paper does not say the trunk is pretrained, and SN on all weights rules out loading
ImageNet weights unchanged).
"""

from __future__ import annotations

import torch
from torch import nn

from bench.errors import ConfigError
from bench.nets import init_weights, make_activation, spectral_norm_all

VGG16_CONVS_PER_BLOCK: tuple[int, ...] = (2, 2, 3, 3, 3)
VGG16_WIDTH_FACTORS: tuple[int, ...] = (1, 2, 4, 8, 8)
MIN_IMAGE_SIZE = 2 ** (len(VGG16_CONVS_PER_BLOCK) - 1)  # four 2x2 max-pools


def vgg16_widths(ndf: int) -> list[int]:
    """Block widths 64-128-256-512-512 for ``ndf=64``."""
    return [ndf * f for f in VGG16_WIDTH_FACTORS]


def vgg16_stages(in_channels: int, ndf: int, activation: str) -> list[nn.Module]:
    """The five VGG16 conv blocks as stages; stages 2..5 open with the 2x2 max-pool between blocks.

    Each conv is 3x3, padding 1, with a bias (no normalisation layer), followed by the activation.
    Stage outputs are at full, 1/2, 1/4, 1/8 and 1/16 resolution (VGG's fifth pool is dropped, the
    map stays a patch map).
    """
    stages: list[nn.Module] = []
    c = in_channels
    for i, (w, n) in enumerate(zip(vgg16_widths(ndf), VGG16_CONVS_PER_BLOCK)):
        layers: list[nn.Module] = [nn.MaxPool2d(2)] if i > 0 else []
        for _ in range(n):
            layers += [nn.Conv2d(c, w, 3, 1, 1), make_activation(activation)]
            c = w
        stages.append(nn.Sequential(*layers))
    return stages


def check_vgg_input(image_size: int, what: str) -> None:
    if image_size < MIN_IMAGE_SIZE:
        raise ConfigError(f"{what}: image size {image_size} is below {MIN_IMAGE_SIZE} (four 2x2 max-pools); "
                          "use larger images")


class VGG16ConcatSN(nn.Module):
    """VGG16 conv trunk on ``concat(x, y)`` with spectral norm: ``forward(x, y) -> logits (B, 1, h, w)``.

    Spec: VGG16 conv blocks 64-128-256-512-512 (widths scaled by ``ndf / 64``), 3x3 convs 2-2-3-3-3
    per block, 2x2 max-pool between blocks (paper text: "VGG16 (conv blocks 64-128-256-512-512)").
    Assumptions (no public code): random init N(0, 0.02), SN on every conv weight, biases on, no
    normalisation layer; ReLU as in VGG16 (``activation="leaky"`` for LeakyReLU 0.2); no fifth pool
    and no fully connected layers: a 3x3 SN conv head (padding 1) maps the 1/16-resolution features
    to 1 channel, a patch map of 16x16 logits at 256x256 (4x4 at 64x64).
    """

    def __init__(self, x_channels: int, y_channels: int, *, image_size: int = 256, ndf: int = 64,
                 activation: str = "relu", init_std: float = 0.02):
        super().__init__()
        check_vgg_input(image_size, type(self).__name__)
        self.trunk = nn.Sequential(*vgg16_stages(x_channels + y_channels, ndf, activation))
        self.head = nn.Conv2d(vgg16_widths(ndf)[-1], 1, 3, 1, 1)
        init_weights(self, init_std)
        spectral_norm_all(self)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.head(self.trunk(torch.cat([x, y], dim=1)))
