"""pix2pixHD's generators (Wang et al., CVPR 2018): the global generator G1 and the coarse-to-fine generator
G = {G1, G2} (one local enhancer around G1).

Source: the pix2pixHD paper, section 3.2 ("coarse-to-fine generator": G1 at half resolution, G2's front-end
output added element-wise to G1's last feature map, then G2's residual blocks and back-end) and the layout of its
reference code (``GlobalGenerator``, ``LocalEnhancer``, ``ResnetBlock`` in ``networks.py``): written from that
description, not copied.

Not built: the instance-boundary map input of the paper (section 3.3) and the instance-level feature encoder. The
datasets here carry no instance maps (the Cityscapes pix2pix split is colour label images only), so the generator
takes the task's ``x`` alone.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from bench.errors import ConfigError
from bench.nets import init_weights, make_norm, spectral_norm_all
from methods.generators.resnet import ResidualBlock

MAX_DOWNS = 4                   # the reference's n_downsample_global


def default_n_downsampling(size: int) -> int:
    """The number of stride-2 convs of a global generator run at ``size`` px: ``min(4, floor(log2(size)) - 3)``,
    so the bottleneck keeps at least 8 x 8 (the reference's 4 at 128 px and above, 3 at 64, 2 at 32, 1 at 16),
    lowered while ``2**n`` does not divide ``size``; at least 1."""
    n = max(1, min(MAX_DOWNS, int(math.floor(math.log2(max(size, 2)))) - 3))
    while n > 1 and size % (2 ** n):
        n -= 1
    return n


def _norm(kind: str, channels: int) -> list[nn.Module]:
    layer = make_norm(kind, channels)
    return [] if layer is None else [layer]


def _check(in_channels: int, out_channels: int, ngf: int, n_blocks: int, norm: str) -> None:
    if in_channels < 1 or out_channels < 1 or ngf < 1:
        raise ConfigError("generator channels and ngf must be positive integers")
    if n_blocks < 0:
        raise ConfigError(f"pix2pixHD generator: n_blocks must be >= 0, got {n_blocks}")
    make_norm(norm, 1)          # validates the name early


def global_layers(in_channels: int, out_channels: int, ngf: int, n_downsampling: int, n_blocks: int,
                  norm: str) -> tuple[list[nn.Module], list[nn.Module]]:
    """G1's layers as (features, head): features = pad 3, conv 7x7 -> ngf, norm, ReLU; ``n_downsampling`` 3x3
    stride-2 convs doubling the width, each with norm and ReLU; ``n_blocks`` residual blocks at
    ``ngf * 2**n_downsampling``; as many 3x3 stride-2 transposed convs (output padding 1) halving it, each with norm
    and ReLU. head = pad 3, conv 7x7 -> ``out_channels``, tanh. Every conv has a bias (the reference's
    ``nn.Conv2d`` default), whatever the norm."""
    layers: list[nn.Module] = [nn.ReflectionPad2d(3), nn.Conv2d(in_channels, ngf, 7), *_norm(norm, ngf), nn.ReLU(True)]
    w = ngf
    for _ in range(n_downsampling):
        layers += [nn.Conv2d(w, 2 * w, 3, stride=2, padding=1), *_norm(norm, 2 * w), nn.ReLU(True)]
        w *= 2
    layers += [ResidualBlock(w, norm=norm, padding="reflect", dropout=0.0, bias=True) for _ in range(n_blocks)]
    for _ in range(n_downsampling):
        layers += [nn.ConvTranspose2d(w, w // 2, 3, stride=2, padding=1, output_padding=1), *_norm(norm, w // 2),
                   nn.ReLU(True)]
        w //= 2
    head: list[nn.Module] = [nn.ReflectionPad2d(3), nn.Conv2d(w, out_channels, 7), nn.Tanh()]
    return layers, head


class Pix2PixHDGlobalGenerator(nn.Module):
    """pix2pixHD's global generator G1: ``forward(x) -> y`` in [-1, 1], the same spatial size as ``x``.

    c7s1-ngf, ``n_downsampling`` d-layers (3x3 stride-2 convs doubling the width), ``n_blocks`` (9) residual blocks
    (pad 1, conv 3x3, norm, ReLU, pad 1, conv 3x3, norm, plus the input), as many u-layers (3x3 stride-2 transposed
    convs halving it), c7s1-``out_channels``, tanh; reflection padding, instance norm (no affine parameters) by
    default (``norm``: "instance", "batch" or "none"); every conv carries a bias, as in the reference.

    Reduced sizes: ``n_downsampling`` defaults to ``min(4, floor(log2(image_size)) - 3)`` (
    :func:`default_n_downsampling`: 4 at 128 px and above as the reference, 3 at 64 px, 2 at 32 px), so the residual
    blocks run at ``image_size / 2**n`` >= 8 px; the widths are ``ngf * 2**i`` (the pix2pix option ``ngf`` scales
    them). With ``ngf=64``, 4 downsamplings, 9 blocks, 3 -> 3 channels: 182,443,267 parameters.

    ``dropout`` is accepted (pix2pix's G slot passes it) and ignored: pix2pixHD's generator has no dropout.
    ``spectral_norm=True`` wraps every conv (not in the reference; for the bench's SN option). Weights
    N(0, ``init_std``), biases 0, before spectral norm.
    """

    def __init__(self, in_channels: int, out_channels: int, *, image_size: int = 256, ngf: int = 64,
                 spectral_norm: bool = False, dropout: float = 0.0, n_downsampling: int | None = None,
                 n_blocks: int = 9, norm: str = "instance", init_std: float = 0.02):
        super().__init__()
        _check(in_channels, out_channels, ngf, n_blocks, norm)
        n = default_n_downsampling(image_size) if n_downsampling is None else int(n_downsampling)
        if n < 1 or image_size % (2 ** n):
            raise ConfigError(f"pix2pixHD global generator: {n} downsamplings need an image size divisible by {2 ** n} "
                              f"(got {image_size}); set n_downsampling (at least 1) or change the image size")
        self.n_downsampling, self.n_blocks, self.image_size = n, n_blocks, image_size
        features, head = global_layers(in_channels, out_channels, ngf, n, n_blocks, norm)
        self.model = nn.Sequential(*features, *head)
        init_weights(self, init_std)
        if spectral_norm:
            spectral_norm_all(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        div = 2 ** self.n_downsampling
        if x.shape[-1] % div or x.shape[-2] % div:
            raise ConfigError(f"pix2pixHD global generator input {tuple(x.shape[-2:])} is not divisible by {div} "
                              f"({self.n_downsampling} downsamplings); resize the images")
        return self.model(x)


class Pix2PixHDGenerator(nn.Module):
    """pix2pixHD's coarse-to-fine generator (the reference's ``netG=local`` with one local enhancer):
    ``forward(x) -> y`` in [-1, 1], the same spatial size as ``x``.

    G1 = a global generator of width ``2 * ngf`` (:func:`global_layers`) without its last pad / 7x7 conv / tanh,
    run on ``x`` downsampled by AvgPool(3, stride 2, padding 1, count_include_pad=False); its output
    (``2 * ngf`` channels at half resolution) is added to G2's front-end output (pad 3, conv 7x7 -> ngf, norm, ReLU,
    3x3 stride-2 conv -> 2 ngf, norm, ReLU on the full-resolution ``x``); then G2's back-end: ``n_blocks_local``
    (3) residual blocks at 2 ngf, a 3x3 stride-2 transposed conv -> ngf, norm, ReLU, pad 3, conv 7x7 ->
    ``out_channels``, tanh.

    ``n_downsampling`` (G1's) defaults to :func:`default_n_downsampling` of the size G1 runs at, ``image_size / 2``
    (the reference's 4 when G1 sees 128 px or more, e.g. 512 px of a 1024 px image; 2 at 64 px, 1 at 32 px);
    ``image_size`` must be divisible by ``2**(n_downsampling + 1)``. ``n_blocks`` (9) is G1's. With ``ngf=32``
    (the reference's 2048 x 1024 Cityscapes setting), 4 downsamplings, 3 -> 3 channels: 182,701,827 parameters.

    ``dropout`` is accepted and ignored (no dropout in pix2pixHD); ``spectral_norm=True`` wraps every conv.
    The reference trains G1 alone first and then both; here both train together from the start (the bench has no
    staged schedule).
    """

    def __init__(self, in_channels: int, out_channels: int, *, image_size: int = 256, ngf: int = 64,
                 spectral_norm: bool = False, dropout: float = 0.0, n_downsampling: int | None = None,
                 n_blocks: int = 9, n_blocks_local: int = 3, norm: str = "instance", init_std: float = 0.02):
        super().__init__()
        _check(in_channels, out_channels, ngf, min(n_blocks, n_blocks_local), norm)
        if image_size % 2:
            raise ConfigError(f"pix2pixHD generator: image_size must be even, got {image_size}")
        n = default_n_downsampling(image_size // 2) if n_downsampling is None else int(n_downsampling)
        div = 2 ** (n + 1)
        if n < 1 or image_size % div:
            raise ConfigError(f"pix2pixHD generator: a global generator with {n} downsamplings inside one local "
                              f"enhancer needs an image size divisible by {div} (got {image_size}); set "
                              "n_downsampling (at least 1) or change the image size")
        self.n_downsampling, self.n_blocks, self.n_blocks_local = n, n_blocks, n_blocks_local
        self.image_size = image_size
        features, _ = global_layers(in_channels, out_channels, 2 * ngf, n, n_blocks, norm)
        self.global_features = nn.Sequential(*features)
        self.downsample_input = nn.AvgPool2d(3, stride=2, padding=1, count_include_pad=False)
        self.local_down = nn.Sequential(
            nn.ReflectionPad2d(3), nn.Conv2d(in_channels, ngf, 7), *_norm(norm, ngf), nn.ReLU(True),
            nn.Conv2d(ngf, 2 * ngf, 3, stride=2, padding=1), *_norm(norm, 2 * ngf), nn.ReLU(True))
        self.local_up = nn.Sequential(
            *[ResidualBlock(2 * ngf, norm=norm, padding="reflect", dropout=0.0, bias=True)
              for _ in range(n_blocks_local)],
            nn.ConvTranspose2d(2 * ngf, ngf, 3, stride=2, padding=1, output_padding=1), *_norm(norm, ngf),
            nn.ReLU(True),
            nn.ReflectionPad2d(3), nn.Conv2d(ngf, out_channels, 7), nn.Tanh())
        init_weights(self, init_std)
        if spectral_norm:
            spectral_norm_all(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        div = 2 ** (self.n_downsampling + 1)
        if x.shape[-1] % div or x.shape[-2] % div:
            raise ConfigError(f"pix2pixHD generator input {tuple(x.shape[-2:])} is not divisible by {div} (one "
                              f"local enhancer around {self.n_downsampling} downsamplings); resize the images")
        coarse = self.global_features(self.downsample_input(x))
        return self.local_up(self.local_down(x) + coarse)
