"""StarGAN's generator (Choi, Choi, Kim, Ha, Kim & Choo, CVPR 2018): one network for every domain pair.

Source: the StarGAN paper (section 3 and appendix, "network architecture": the target domain label replicated
spatially and concatenated with the image; conv 7x7, two stride-2 down-sampling convs, six residual blocks, two
stride-2 transposed convs, conv 7x7, tanh; instance normalisation everywhere but the last layer) and the layout
of its reference code (``Generator``, ``ResidualBlock`` in ``model.py``): written from that description, not
copied.

Assumptions: instance norm with affine parameters and no running statistics (the reference also tracks running
statistics, which it never uses: its test script keeps G in train mode); convs without bias as in the reference
(each is followed by a norm).
"""

from __future__ import annotations

import torch
from torch import nn

from bench.errors import ConfigError

N_DOWNS = 2                      # the reference: two stride-2 convs, blocks at a quarter of the side


def _in(channels: int) -> nn.InstanceNorm2d:
    return nn.InstanceNorm2d(channels, affine=True, track_running_stats=False)


class StarResidualBlock(nn.Module):
    """``x + [conv 3x3, IN, ReLU, conv 3x3, IN](x)``, zero padding, no bias (the reference's block)."""

    def __init__(self, dim: int):
        super().__init__()
        self.block = nn.Sequential(nn.Conv2d(dim, dim, 3, 1, 1, bias=False), _in(dim), nn.ReLU(True),
                                   nn.Conv2d(dim, dim, 3, 1, 1, bias=False), _in(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x)


class StarGANGenerator(nn.Module):
    """``forward(x, c) -> y``: image ``x`` (N, in_channels, s, s) in [-1, 1] and target domains ``c`` (N,) class ids
    or (N, num_classes) one-hot / multi-hot vectors -> (N, out_channels, s, s) in [-1, 1].

    conv 7x7 (in_channels + num_classes -> ngf), IN, ReLU; two conv 4x4 stride 2 (ngf -> 2 ngf -> 4 ngf), each
    with IN and ReLU; ``n_blocks`` residual blocks at 4 ngf; two transposed conv 4x4 stride 2 back to ngf, each
    with IN and ReLU; conv 7x7 -> out_channels, tanh. No conv carries a bias. The side must be a multiple of 4.
    """

    def __init__(self, in_channels: int, out_channels: int, num_classes: int, *, image_size: int = 128,
                 ngf: int = 64, n_blocks: int = 6):
        super().__init__()
        for k, v in (("in_channels", in_channels), ("out_channels", out_channels), ("num_classes", num_classes),
                     ("ngf", ngf), ("n_blocks", n_blocks)):
            if not isinstance(v, int) or v < 1:
                raise ConfigError(f"stargan generator: {k} must be an integer of at least 1, got {v!r}")
        if image_size % (2 ** N_DOWNS) or image_size < 2 ** N_DOWNS:
            raise ConfigError(f"stargan generator: image_size must be a multiple of {2 ** N_DOWNS}, got {image_size}")
        self.in_channels, self.num_classes, self.image_size = in_channels, num_classes, image_size
        layers: list[nn.Module] = [nn.Conv2d(in_channels + num_classes, ngf, 7, 1, 3, bias=False), _in(ngf),
                                   nn.ReLU(True)]
        w = ngf
        for _ in range(N_DOWNS):
            layers += [nn.Conv2d(w, 2 * w, 4, 2, 1, bias=False), _in(2 * w), nn.ReLU(True)]
            w *= 2
        layers += [StarResidualBlock(w) for _ in range(n_blocks)]
        for _ in range(N_DOWNS):
            layers += [nn.ConvTranspose2d(w, w // 2, 4, 2, 1, bias=False), _in(w // 2), nn.ReLU(True)]
            w //= 2
        layers += [nn.Conv2d(w, out_channels, 7, 1, 3, bias=False), nn.Tanh()]
        self.main = nn.Sequential(*layers)

    def domain_map(self, c: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """Target domains as (N, num_classes, H, W) planes: a class id becomes its one-hot vector, replicated."""
        if c.dim() == 1:
            if c.dtype.is_floating_point:
                raise ConfigError("stargan generator: class ids must be integers; give vectors as (N, num_classes)")
            c = nn.functional.one_hot(c.long(), self.num_classes).to(like.dtype)
        if c.dim() != 2 or c.shape[1] != self.num_classes or len(c) != len(like):
            raise ConfigError(f"stargan generator: expected {len(like)} target domains as class ids (N,) or "
                              f"vectors (N, {self.num_classes}), got shape {tuple(c.shape)}")
        return c.to(like.dtype)[:, :, None, None].expand(-1, -1, like.shape[2], like.shape[3])

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        s = self.image_size
        if x.dim() != 4 or tuple(x.shape[1:]) != (self.in_channels, s, s):
            raise ConfigError(f"stargan generator expects images (N, {self.in_channels}, {s}, {s}), got "
                              f"{tuple(x.shape)}; build it with the matching in_channels / image_size")
        return self.main(torch.cat([x, self.domain_map(c, x)], 1))
