"""pix2pixHD's multi-scale discriminator (Wang et al., CVPR 2018; papers.md E), image-conditioned.

Source: the paper (section 3.2, "multi-scale discriminators") and its reference code
(``MultiscaleDiscriminator`` / ``NLayerDiscriminator`` with ``getIntermFeat``): ``num_D`` PatchGANs of the
same structure, each on ``concat(x, y)`` downsampled once more than the previous one by
``AvgPool2d(3, stride=2, padding=1, count_include_pad=False)``; each returns its logit map and the output of
every block before its last conv, which G's feature-matching loss compares on real and generated samples.
"""

from __future__ import annotations

import torch
from torch import nn

from bench.contracts import DOutput
from bench.errors import ConfigError
from bench.nets import init_weights, make_norm, spectral_norm_all

KERNEL, PAD = 4, 2          # pix2pixHD: kw = 4, padw = ceil((kw - 1) / 2) = 2 (pix2pix / CycleGAN pad 1)
MAX_WIDTH = 512             # pix2pixHD: nf = min(nf * 2, 512)


def hd_widths(ndf: int, n_layers: int) -> list[int]:
    """Block widths of pix2pixHD's ``NLayerDiscriminator``: ndf, then doubling, capped at 512."""
    widths = [ndf]
    for _ in range(n_layers):
        widths.append(min(widths[-1] * 2, MAX_WIDTH))
    return widths


def hd_strides(n_layers: int) -> list[int]:
    """``n_layers`` stride-2 blocks, then one stride-1 block (the head conv is stride 1 too)."""
    return [2] * n_layers + [1]


def downsampled_side(side: int) -> int:
    """Side after ``AvgPool2d(3, 2, padding=1)``: ``floor((side - 1) / 2) + 1 = ceil(side / 2)``."""
    return (side + 2 * 1 - 3) // 2 + 1


def hd_map_size(side: int, n_layers: int = 3) -> int:
    """Side of one scale's logit map for a square input (4x4 convs, padding 2): 11 at 64 px, 7 at 32 px."""
    for stride in hd_strides(n_layers) + [1]:
        side = (side + 2 * PAD - KERNEL) // stride + 1
    return side


def scale_sides(image_size: int, num_D: int) -> list[int]:
    """Input side of each scale: 64 -> [64, 32] with two scales."""
    sides = [image_size]
    for _ in range(num_D - 1):
        sides.append(downsampled_side(sides[-1]))
    return sides


def check_scales(image_size: int, num_D: int, n_layers: int, what: str) -> None:
    if num_D < 1 or n_layers < 1:
        raise ConfigError(f"{what}: num_D and n_layers must be at least 1, got {num_D} and {n_layers}")
    coarsest = scale_sides(image_size, num_D)[-1]
    if coarsest < 2 ** n_layers:
        raise ConfigError(f"{what}: image size {image_size} gives a {coarsest} px coarsest scale, smaller than the "
                          f"{2 ** n_layers} px its {n_layers} stride-2 layers need; use fewer scales (num_D) or layers")


class PatchScale(nn.Module):
    """One scale: pix2pixHD's ``NLayerDiscriminator`` as blocks. ``forward(v) -> (logits, [block outputs])``.

    Blocks: conv 4x4 s2 -> LeakyReLU 0.2 (no norm); ``n_layers - 1`` x (conv s2 -> norm -> LeakyReLU);
    conv s1 -> norm -> LeakyReLU; head conv s1 to one channel. Padding 2 and a bias on every conv, as in
    pix2pixHD (whose convs keep their bias before the norm).
    """

    def __init__(self, in_channels: int, ndf: int, n_layers: int, norm: str):
        super().__init__()
        widths, strides = hd_widths(ndf, n_layers), hd_strides(n_layers)
        blocks, c = [], in_channels
        for i, (w, s) in enumerate(zip(widths, strides)):
            n = make_norm(norm, w) if i > 0 else None
            layers = [nn.Conv2d(c, w, KERNEL, s, PAD)] + ([n] if n is not None else []) + [nn.LeakyReLU(0.2)]
            blocks.append(nn.Sequential(*layers))
            c = w
        self.blocks = nn.ModuleList(blocks)
        self.head = nn.Conv2d(c, 1, KERNEL, 1, PAD)

    def forward(self, v: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        feats = []
        for block in self.blocks:
            v = block(v)
            feats.append(v)
        return self.head(v), feats


class MultiscalePatchGAN(nn.Module):
    """pix2pixHD's multi-scale D on ``concat(x, y)``: ``forward(x, y) -> DOutput``.

    ``logits[k]``: the map of scale k, its input downsampled k times (with n_layers 3: 11x11 then 7x7 at 64 px,
    35x35 then 19x19 at 256 px; padding 2 adds a row and a column per conv). ``features[k]``: the
    ``n_layers + 1`` block outputs of scale k before its head conv (post-activation), what pix2pixHD's
    feature-matching loss reads (its list minus the final output).

    ``num_D=2``: pix2pixHD's training default (``--num_D 2`` in its train options); the paper's 3 scales are
    for 2048x1024 Cityscapes. At the bench's 64-256 px a third scale would see a 16-64 px image that one
    70x70 patch already covers (at 32 px a third scale is 8 px, the least ``check_scales`` lets through).
    ``norm="instance"`` (pix2pixHD's default ``--norm``, no affine parameters); ``ndf`` 64 gives C64-C128-C256-
    C512 (widths double, capped at 512 as in the reference). ``spectral_norm`` wraps every conv after the
    N(0, 0.02) initialisation. No sigmoid: pix2pixHD trains it with LSGAN; the row picks the loss.
    """

    def __init__(self, x_channels: int, y_channels: int, *, image_size: int = 256, ndf: int = 64, num_D: int = 2,
                 n_layers: int = 3, norm: str = "instance", spectral_norm: bool = False, init_std: float = 0.02):
        super().__init__()
        check_scales(image_size, num_D, n_layers, type(self).__name__)
        self.scales = nn.ModuleList(PatchScale(x_channels + y_channels, ndf, n_layers, norm) for _ in range(num_D))
        self.downsample = nn.AvgPool2d(3, stride=2, padding=1, count_include_pad=False)
        init_weights(self, init_std)
        if spectral_norm:
            spectral_norm_all(self)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> DOutput:
        v = torch.cat([x, y], dim=1)
        logits, features = [], []
        for k, scale in enumerate(self.scales):
            if k:
                v = self.downsample(v)
            out, feats = scale(v)
            logits.append(out)
            features.append(feats)
        return DOutput(logits, features)
