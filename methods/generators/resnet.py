"""CycleGAN's ResNet generator (Zhu et al., ICCV 2017; after Johnson et al.'s fast style transfer network).

Source: the CycleGAN paper, appendix 7.2 ("c7s1-64, d128, d256, R256 x 6 or 9, u128, u64, c7s1-3"; "6 residual
blocks for 128 x 128 training images, and 9 residual blocks for 256 x 256 or higher-resolution training images";
reflection padding; instance normalisation) and its reference code (``ResnetGenerator``, ``resnet_9blocks``):
written from that description, not copied.
"""

from __future__ import annotations

import torch
from torch import nn

from bench.errors import ConfigError
from bench.nets import init_weights, make_norm, spectral_norm_all

PADDINGS = ("reflect", "replicate", "zero")
N_DOWNS = 2                     # two stride-2 convs: the residual blocks run at a quarter of the side


def default_n_blocks(image_size: int) -> int:
    """The paper's rule: 9 residual blocks at 256 px and above, 6 below (its 128 px setting)."""
    return 9 if image_size >= 256 else 6


def _pad(kind: str, p: int) -> list[nn.Module]:
    """The padding layer before a conv (none for "zero": the conv pads itself then)."""
    if kind == "reflect":
        return [nn.ReflectionPad2d(p)]
    if kind == "replicate":
        return [nn.ReplicationPad2d(p)]
    return []


def _norm(kind: str, channels: int) -> list[nn.Module]:
    layer = make_norm(kind, channels)
    return [] if layer is None else [layer]


class ResidualBlock(nn.Module):
    """``x + [pad 1, conv 3x3, norm, ReLU, (dropout), pad 1, conv 3x3, norm](x)``: no activation after the sum."""

    def __init__(self, dim: int, *, norm: str, padding: str, dropout: float, bias: bool):
        super().__init__()
        zero = 1 if padding == "zero" else 0
        layers: list[nn.Module] = [*_pad(padding, 1), nn.Conv2d(dim, dim, 3, padding=zero, bias=bias),
                                   *_norm(norm, dim), nn.ReLU(True)]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        layers += [*_pad(padding, 1), nn.Conv2d(dim, dim, 3, padding=zero, bias=bias), *_norm(norm, dim)]
        self.block = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x)


class ResnetGenerator(nn.Module):
    """CycleGAN's generator: ``forward(x) -> y`` in [-1, 1], the same spatial size as ``x``.

    pad 3, conv 7x7 -> ngf, norm, ReLU; two 3x3 stride-2 convs (ngf -> 2 ngf -> 4 ngf), each with norm and ReLU;
    ``n_blocks`` residual blocks at 4 ngf (:class:`ResidualBlock`); two 3x3 stride-2 transposed convs (output
    padding 1) back to ngf, each with norm and ReLU; pad 3, conv 7x7 -> ``out_channels`` (with bias), tanh.

    ``n_blocks`` defaults to the paper's rule (:func:`default_n_blocks`: 9 at 256 px, 6 below). ``norm`` is
    "instance" (CycleGAN's default; no affine parameters, no running statistics), "batch" or "none"; convs carry
    a bias except before a batch norm, as in the reference code. ``padding``: "reflect" (the paper), "replicate"
    or "zero". ``dropout`` > 0 puts dropout between the two convs of every block (the reference's
    ``use_dropout``; CycleGAN trains without). With ``ngf=64``, 3 -> 3 channels and 9 blocks this is the
    reference's 11,378,179 parameters ("11.378 M"). Weights N(0, ``init_std``), biases 0, before spectral norm
    (``spectral_norm=True`` wraps every conv).

    The side must be divisible by 4 (two stride-2 convs), checked at construction and on every call.
    """

    def __init__(self, in_channels: int, out_channels: int, *, image_size: int = 256, ngf: int = 64,
                 n_blocks: int | None = None, norm: str = "instance", padding: str = "reflect",
                 dropout: float = 0.0, spectral_norm: bool = False, init_std: float = 0.02):
        super().__init__()
        if in_channels < 1 or out_channels < 1 or ngf < 1:
            raise ConfigError("generator channels and ngf must be positive integers")
        if padding not in PADDINGS:
            raise ConfigError(f"resnet generator: padding '{padding}' is not one of {', '.join(PADDINGS)}")
        if not 0.0 <= dropout < 1.0:
            raise ConfigError(f"generator dropout must be in [0, 1), got {dropout}")
        n = default_n_blocks(image_size) if n_blocks is None else int(n_blocks)
        if n < 0:
            raise ConfigError(f"resnet generator: n_blocks must be >= 0, got {n}")
        div = 2 ** N_DOWNS
        if image_size % div or image_size < div * 2:
            raise ConfigError(f"resnet generator: image_size {image_size} must be a multiple of {div} and at least "
                              f"{div * 2} (two stride-2 convs)")
        make_norm(norm, 1)                      # validates the name early
        self.n_blocks, self.image_size = n, image_size
        bias = norm != "batch"
        zero = 3 if padding == "zero" else 0

        layers: list[nn.Module] = [*_pad(padding, 3), nn.Conv2d(in_channels, ngf, 7, padding=zero, bias=bias),
                                   *_norm(norm, ngf), nn.ReLU(True)]
        w = ngf
        for _ in range(N_DOWNS):
            layers += [nn.Conv2d(w, 2 * w, 3, stride=2, padding=1, bias=bias), *_norm(norm, 2 * w), nn.ReLU(True)]
            w *= 2
        layers += [ResidualBlock(w, norm=norm, padding=padding, dropout=dropout, bias=bias) for _ in range(n)]
        for _ in range(N_DOWNS):
            layers += [nn.ConvTranspose2d(w, w // 2, 3, stride=2, padding=1, output_padding=1, bias=bias),
                       *_norm(norm, w // 2), nn.ReLU(True)]
            w //= 2
        layers += [*_pad(padding, 3), nn.Conv2d(w, out_channels, 7, padding=zero), nn.Tanh()]
        self.model = nn.Sequential(*layers)

        init_weights(self, init_std)
        if spectral_norm:
            spectral_norm_all(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        div = 2 ** N_DOWNS
        if x.shape[-1] % div or x.shape[-2] % div:
            raise ConfigError(f"resnet generator input {tuple(x.shape[-2:])} is not divisible by {div} (two "
                              "stride-2 convs); resize the images")
        return self.model(x)
