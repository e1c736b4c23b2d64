"""The pix2pix PatchGAN discriminator, without and with spectral norm (papers.md A, rows 1 and 2).

Source: pix2pix paper appendix 6.1.2 and its reference code (70x70 PatchGAN, ``n_layers=3``);
conditioning by concatenation, ``torch.cat((x, y), 1)``, as in the reference code.
"""

from __future__ import annotations

import torch
from torch import nn

from bench.errors import ConfigError
from bench.nets import init_weights, make_norm, spectral_norm_all


def patch_widths(ndf: int, n_layers: int = 3) -> list[int]:
    """Feature widths of the PatchGAN trunk: C64-C128-C256-C512 for ``ndf=64, n_layers=3``."""
    return [ndf * min(2 ** i, 8) for i in range(n_layers + 1)]


def patch_strides(n_layers: int = 3) -> list[int]:
    """Strides of the trunk convs: ``n_layers`` stride-2 convs, then one stride-1 conv."""
    return [2] * n_layers + [1]


def patch_map_size(image_size: int, n_layers: int = 3) -> int:
    """Side of the logit map for a square input (4x4 convs, padding 1): 30 at 256 with 3 layers."""
    s = image_size
    for stride in patch_strides(n_layers) + [1]:
        s = (s + 2 - 4) // stride + 1
    return s


def check_patch_input(image_size: int, n_layers: int, what: str) -> None:
    if n_layers < 1:
        raise ConfigError(f"{what}: n_layers must be at least 1, got {n_layers}")
    if patch_map_size(image_size, n_layers) < 1:
        raise ConfigError(
            f"{what}: image size {image_size} is too small for {n_layers} stride-2 layers; "
            "use larger images or fewer layers")


class PatchGAN(nn.Module):
    """pix2pix 70x70 PatchGAN on ``concat(x, y)``: ``forward(x, y) -> logits (B, 1, h, w)``.

    4x4 convs, padding 1: C64 s2 (bias, no norm) -> C128 s2 -> C256 s2 -> C512 s1 (each conv -> norm ->
    LeakyReLU 0.2; no conv bias when ``norm="batch"``, as in the reference code) -> conv to 1 channel s1
    (bias). Widths scale with ``ndf / 64``. The map is 30x30 at 256x256 (each logit sees a 70x70 patch),
    6x6 at 64x64. ``n_layers`` gives the other patch sizes of the pix2pix study (1 -> 16x16,
    3 -> 70x70, 5 -> 286x286 receptive field). No spectral norm (papers.md A, row "4-Layer Concat").

    Weights N(0, 0.02), norm scales N(1, 0.02), biases 0 (papers.md A).
    ``image_size`` only validates that the map is not empty; the net is fully convolutional.
    """

    use_spectral_norm = False

    def __init__(self, x_channels: int, y_channels: int, *, image_size: int = 256, ndf: int = 64,
                 norm: str = "batch", n_layers: int = 3, init_std: float = 0.02):
        super().__init__()
        name = type(self).__name__
        check_patch_input(image_size, n_layers, name)
        widths = patch_widths(ndf, n_layers)
        strides = patch_strides(n_layers)
        bias = norm != "batch"
        layers: list[nn.Module] = [nn.Conv2d(x_channels + y_channels, widths[0], 4, strides[0], 1),
                                   nn.LeakyReLU(0.2)]
        for i in range(1, len(widths)):
            layers.append(nn.Conv2d(widths[i - 1], widths[i], 4, strides[i], 1, bias=bias))
            n = make_norm(norm, widths[i])
            if n is not None:
                layers.append(n)
            layers.append(nn.LeakyReLU(0.2))
        layers.append(nn.Conv2d(widths[-1], 1, 4, 1, 1))
        self.net = nn.Sequential(*layers)
        init_weights(self, init_std)
        if self.use_spectral_norm:
            spectral_norm_all(self)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([x, y], dim=1))


class PatchGANSN(PatchGAN):
    """The same PatchGAN with spectral norm on every conv weight (papers.md A, "4-Layer Concat + SN").

    The paper says only "the same with spectral norm", so everything else is kept, including the
    norm layers (``norm="batch"`` by default; pass ``norm="none"`` for the pure-SN variant of
    Miyato et al.). Spectral norm is applied after the N(0, 0.02) init.
    """

    use_spectral_norm = True
