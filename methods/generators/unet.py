"""The pix2pix U-Net generator (Isola et al. 2017), as used by the fusion-discriminator paper.

Source: pix2pix paper appendix 6.1.1 and its reference code; papers.md A ("U-Net generator (pix2pix
encoder C64-C128-C256-C512x5, decoder with dropout on the first three, skip connections, tanh out)",
"spectral norm on all weights of G and D", "weights N(0, 0.02)").
"""

from __future__ import annotations

import logging
import math

import torch
from torch import nn

from bench.errors import ConfigError
from bench.nets import init_weights, make_norm, spectral_norm_all

log = logging.getLogger(__name__)

MAX_DOWNS = 8  # pix2pix at 256x256: 256 / 2**8 = 1x1 bottleneck


def default_num_downs(image_size: int) -> int:
    """log2(image_size) capped at 8, lowered until 2**num_downs divides ``image_size``."""
    n = min(MAX_DOWNS, int(math.floor(math.log2(image_size))))
    while n > 1 and image_size % (2 ** n):
        n -= 1
    return n


class UNetGenerator(nn.Module):
    """pix2pix U-Net: ``forward(x) -> y`` in [-1, 1], same spatial size as ``x``.

    Encoder (4x4 convs, stride 2, padding 1): C64-C128-C256-C512 x (num_downs - 3), widths scaled by
    ``ngf / 64`` (width of level i = ngf * min(2**i, 8)). Every block but the first is
    LeakyReLU(0.2) -> conv -> norm; the first is a bare conv, the innermost has no norm (pix2pix code:
    a norm on the 1x1 bottleneck would zero it).

    Decoder, mirrored (4x4 transposed convs, stride 2, padding 1): ReLU -> convT -> norm, each block
    after the innermost taking ``cat(decoded, encoder skip)``; the outermost is ReLU -> convT -> tanh.
    Dropout (p = ``dropout``) follows the norm in the first ``dropout_blocks`` (3) decoder blocks after
    the innermost one, as in the pix2pix code (at 256x256: the three 1024 -> 512 blocks; the paper text
    counts the innermost too, the code does not; we follow the code). At smaller images with fewer
    levels the same "first three after the innermost" rule applies, never on the outermost block
    (our choice: the pix2pix code would drop dropout on the ngf*4 / ngf*2 levels there).

    Biases follow the pix2pix code: convs carry no bias when ``norm="batch"`` (the following
    BatchNorm makes it redundant; the code drops it on the first conv too), a bias otherwise; the
    output convT always has one. With ``ngf=64``, 3 -> 3 channels at 256x256 this gives the pix2pix
    count of 54,414,080 parameters.

    ``num_downs`` defaults to log2(image_size) capped at 8 (256 -> 8 as in the paper, 64 -> 6, 32 -> 5).
    ``spectral_norm=True`` puts spectral norm on every conv and transposed-conv weight (the fusion
    paper: "SN on all weights of G and D"); the norm layers are kept (the paper does not remove them).
    Weights are initialised N(0, 0.02), norm scales N(1, 0.02), biases 0, before spectral norm.
    """

    def __init__(self, in_channels: int, out_channels: int, *, image_size: int = 256, ngf: int = 64,
                 spectral_norm: bool = False, dropout: float = 0.5, num_downs: int | None = None,
                 norm: str = "batch", dropout_blocks: int = 3, init_std: float = 0.02):
        super().__init__()
        if in_channels < 1 or out_channels < 1 or ngf < 1:
            raise ConfigError("generator channels and ngf must be positive integers")
        if not 0.0 <= dropout < 1.0:
            raise ConfigError(f"generator dropout must be in [0, 1), got {dropout}")
        n = default_num_downs(image_size) if num_downs is None else int(num_downs)
        if n < 2 or image_size % (2 ** n):
            raise ConfigError(
                f"U-Net with {n} downsamplings needs an image size divisible by {2 ** n} (got {image_size}); "
                "set num_downs (at least 2) or change the image size")
        self.num_downs = n
        self.image_size = image_size
        widths = [ngf * min(2 ** i, 8) for i in range(n)]
        bias = norm != "batch"
        make_norm(norm, 1)  # validates the name early

        self.encoder = nn.ModuleList()
        for i, w in enumerate(widths):
            if i == 0:
                self.encoder.append(nn.Sequential(nn.Conv2d(in_channels, w, 4, 2, 1, bias=bias)))
                continue
            layers: list[nn.Module] = [nn.LeakyReLU(0.2), nn.Conv2d(widths[i - 1], w, 4, 2, 1, bias=bias)]
            if i < n - 1:
                layers += _norm(norm, w)
            self.encoder.append(nn.Sequential(*layers))

        # decoder[0] undoes the innermost level; decoder[j] (j >= 1) takes cat(h, skip of level n-1-j)
        self.decoder = nn.ModuleList()
        self.decoder.append(nn.Sequential(
            nn.ReLU(), nn.ConvTranspose2d(widths[n - 1], widths[n - 2], 4, 2, 1, bias=bias),
            *_norm(norm, widths[n - 2])))
        for j, level in enumerate(range(n - 2, 0, -1), start=1):
            layers = [nn.ReLU(), nn.ConvTranspose2d(2 * widths[level], widths[level - 1], 4, 2, 1, bias=bias),
                      *_norm(norm, widths[level - 1])]
            if dropout > 0 and j <= dropout_blocks:
                layers.append(nn.Dropout(dropout))
            self.decoder.append(nn.Sequential(*layers))
        self.decoder.append(nn.Sequential(
            nn.ReLU(), nn.ConvTranspose2d(2 * widths[0], out_channels, 4, 2, 1, bias=True), nn.Tanh()))

        init_weights(self, init_std)
        if spectral_norm:
            spectral_norm_all(self)
        log.debug("U-Net: %d downs, widths %s, norm %s, SN %s", n, widths, norm, spectral_norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        div = 2 ** self.num_downs
        if x.shape[-1] % div or x.shape[-2] % div:
            raise ConfigError(
                f"U-Net input {tuple(x.shape[-2:])} is not divisible by {div} ({self.num_downs} downsamplings); "
                "resize the images or build the generator with a matching image_size / num_downs")
        skips = []
        h = x
        for block in self.encoder:
            h = block(h)
            skips.append(h)
        h = self.decoder[0](skips.pop())
        for block in self.decoder[1:]:
            h = block(torch.cat([h, skips.pop()], dim=1))
        return h


def _norm(kind: str, channels: int) -> list[nn.Module]:
    layer = make_norm(kind, channels)
    return [] if layer is None else [layer]
