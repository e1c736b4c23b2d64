"""The context encoder's generator (Pathak et al., CVPR 2016): the image with its hole filled -> the hole's content.

Source: the paper's Section 3.1 (encoder, channel-wise fully connected layer, decoder of up-convolutions) and the
authors' released centre-inpainting code (``train.lua``: the strided 4x4 encoder and decoder, batch norm, LeakyReLU
0.2 in the encoder, ReLU in the decoder, tanh out, N(0, 0.02) weights, conv biases held at zero: here no conv has
a bias). At 128 x 128 x 3
with a 64 x 64 hole:

- encoder: 5 x conv 4x4 stride 2 (widths nef, nef, 2 nef, 4 nef, 8 nef) down to 4 x 4; batch norm after every
  conv but the first, LeakyReLU 0.2;
- bottleneck, ``"channel-wise"`` (the paper's Section 3.1): :class:`ChannelWiseFC` -- one fully connected map over
  the 4 x 4 = 16 positions per channel, no mixing between channels (m n^4 parameters for m maps of n x n, against
  m^2 n^4 for a full layer) -- then a 1x1 convolution that mixes the channels ("a stride 1 convolution to propagate
  information across channels"), batch norm, LeakyReLU 0.2;
  ``"fc"`` (the authors' released inpainting code, ``nBottleneck = 4000``): conv 4x4 to ``units`` x 1 x 1, batch
  norm, LeakyReLU 0.2, then an up-convolution 4x4 back to 8 ngf x 4 x 4, batch norm, ReLU;
- decoder: up-convs 4x4 stride 2 (widths 4 ngf, 2 ngf, ngf) with batch norm and ReLU, then an up-conv to the
  image channels and tanh: the hole's content, ``region_size`` x ``region_size`` (64 x 64 at 128 px).

Other sizes keep the shape: ``log2(image_size / 4)`` encoder convs whose last four have widths nef..8 nef (earlier
ones nef; at 64 px: nef, 2 nef, 4 nef, 8 nef), and ``log2(region_size / 4)`` up-convs whose widths halve down to
ngf before the last. ``image_size`` and ``region_size`` are powers of two, at least 16 and 8.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from bench.errors import ConfigError
from bench.nets import init_weights

BOTTLENECKS = ("channel-wise", "fc")


def power_of_two_depth(side: int, least: int, what: str) -> int:
    """``log2(side / 4)``: the stride-2 layers between ``side`` and 4 (a one-line error unless a power of two of
    at least ``least``)."""
    if isinstance(side, bool) or not isinstance(side, int) or side < least or side & (side - 1):
        raise ConfigError(f"{what} must be a power of two of at least {least} (it halves down to 4x4), got {side!r}")
    return int(math.log2(side // 4))


class ChannelWiseFC(nn.Module):
    """A fully connected map over the spatial positions of each channel on its own: ``(N, m, n, n) -> (N, m, n, n)``
    with ``out[b, c, j] = sum_i weight[c, j, i] * in[b, c, i]`` over the ``n * n`` positions ``i``, ``j``.

    Channel ``c`` 's output reads channel ``c`` 's input only (the paper's channel-wise fully connected layer; the
    1x1 convolution that follows mixes channels). No bias: a batch norm follows the mixing convolution.
    """

    def __init__(self, channels: int, side: int, init_std: float = 0.02):
        super().__init__()
        self.channels, self.side = channels, side
        self.weight = nn.Parameter(torch.empty(channels, side * side, side * side))
        self.reset_parameters(init_std)

    @torch.no_grad()
    def reset_parameters(self, std: float = 0.02) -> None:
        """N(0, std) weights, like every other linear map of the network (``bench.nets.init_weights`` skips this
        layer: it is no ``nn.Linear``)."""
        nn.init.normal_(self.weight, 0.0, std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        if (c, h, w) != (self.channels, self.side, self.side):
            raise ValueError(f"channel-wise FC was built for {self.channels} x {self.side} x {self.side} maps, got "
                             f"{c} x {h} x {w}")
        flat = x.reshape(n, c, h * w).transpose(0, 1)                   # (m, N, n^2)
        out = torch.bmm(flat, self.weight.transpose(1, 2).to(flat.dtype))   # (m, N, n^2): per channel x @ W_c^T
        return out.transpose(0, 1).reshape(n, c, h, w)

    def extra_repr(self) -> str:
        return f"channels={self.channels}, side={self.side}"


class ContextEncoderGenerator(nn.Module):
    """``forward(x) -> region``: the image with its hole filled (N, C, s, s) -> the hole's content (N, C', r, r) in
    [-1, 1]. See the module docstring for the layers."""

    def __init__(self, in_channels: int, out_channels: int, *, image_size: int = 128, region_size: int = 64,
                 nef: int = 64, ngf: int = 64, bottleneck: str = "channel-wise", units: int = 4000,
                 init_std: float = 0.02):
        super().__init__()
        depth = power_of_two_depth(image_size, 16, "context-encoder: image_size")
        up = power_of_two_depth(region_size, 8, "context-encoder: region_size")
        if region_size >= image_size:
            raise ConfigError(f"context-encoder: the region ({region_size} px) must be smaller than the image "
                              f"({image_size} px)")
        if bottleneck not in BOTTLENECKS:
            raise ConfigError(f"context-encoder: bottleneck must be one of {', '.join(BOTTLENECKS)}, not "
                              f"'{bottleneck}'")
        for k, v in (("nef", nef), ("ngf", ngf), ("units", units)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ConfigError(f"context-encoder: {k} must be an integer of at least 1, got {v!r}")
        self.image_size, self.region_size, self.bottleneck_kind = image_size, region_size, bottleneck

        enc: list[nn.Module] = []
        c = in_channels
        for k in range(depth):
            w = nef * 2 ** max(0, k - (depth - 4))
            enc.append(nn.Conv2d(c, w, 4, 2, 1, bias=False))
            if k > 0:
                enc.append(nn.BatchNorm2d(w))
            enc.append(nn.LeakyReLU(0.2))
            c = w
        self.encoder = nn.Sequential(*enc)

        if bottleneck == "channel-wise":
            self.cwfc = ChannelWiseFC(c, 4, init_std)
            self.bottleneck = nn.Sequential(nn.Conv2d(c, c, 1, bias=False), nn.BatchNorm2d(c), nn.LeakyReLU(0.2))
        else:
            self.cwfc = None
            self.bottleneck = nn.Sequential(
                nn.Conv2d(c, units, 4, bias=False), nn.BatchNorm2d(units), nn.LeakyReLU(0.2),
                nn.ConvTranspose2d(units, ngf * 8, 4, bias=False), nn.BatchNorm2d(ngf * 8), nn.ReLU())
            c = ngf * 8

        dec: list[nn.Module] = []
        for k in range(up - 1):
            w = ngf * 2 ** (up - 2 - k)
            dec += [nn.ConvTranspose2d(c, w, 4, 2, 1, bias=False), nn.BatchNorm2d(w), nn.ReLU()]
            c = w
        dec += [nn.ConvTranspose2d(c, out_channels, 4, 2, 1, bias=False), nn.Tanh()]
        self.decoder = nn.Sequential(*dec)
        self.reset_parameters(init_std)

    def reset_parameters(self, std: float = 0.02) -> None:
        """N(0, std) for every conv, up-conv and the channel-wise layer; batch-norm scales N(1, std), shifts 0."""
        init_weights(self, std)
        if self.cwfc is not None:
            self.cwfc.reset_parameters(std)

    def code(self, x: torch.Tensor) -> torch.Tensor:
        """The encoder's 4 x 4 maps after the bottleneck (what the decoder reads)."""
        h = self.encoder(x)
        if self.cwfc is not None:
            h = self.cwfc(h)
        return self.bottleneck(h)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[-2:]) != (self.image_size, self.image_size):
            raise ValueError(f"context-encoder was built for {self.image_size}x{self.image_size} images, got "
                             f"{tuple(x.shape[-2:])}")
        return self.decoder(self.code(x))
