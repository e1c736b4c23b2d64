"""Unconditional discriminators: they judge the image alone, ``forward(y) -> logits``.

- ``patchgan-uncond``: CycleGAN's 70x70 PatchGAN (one per domain; no condition channels).
- ``dcgan``: the DCGAN discriminator (Radford, Metz & Chintala, ICLR 2016), one logit per image.

Both keep the adapter's initialisation (``init_policy = "adapter"``); their own is the same N(0, 0.02)
of their reference code (bench/nets.py).
"""

from __future__ import annotations

import torch
from torch import nn

from bench.errors import ConfigError
from methods.discriminators.patchgan import PatchGAN
from bench.nets import init_weights, make_norm, spectral_norm_all


class PatchGANUncond(PatchGAN):
    """CycleGAN's PatchGAN on the image alone: ``forward(y) -> logits (B, 1, h, w)``.

    It is :class:`PatchGAN` built with no condition channels (``PatchGAN(0, y_channels)``), so its
    modules, their order and their initialisation are PatchGAN's: 4x4 convs, padding 1, C64 s2 (no norm)
    -> C128 s2 -> C256 s2 -> C512 s1 -> conv to 1 channel, LeakyReLU 0.2, conv bias only where no
    batch norm follows (CycleGAN's ``NLayerDiscriminator``, ``n_layers=3``: 70x70 receptive field; the map
    is 30x30 at 256 px, 6x6 at 64 px, 2x2 at 32 px).

    ``norm`` defaults to "instance", CycleGAN's default (pix2pix trains with "batch"); ``spectral_norm``
    wraps every conv after the N(0, 0.02) initialisation (the SN variants of the fusion paper).
    """

    def __init__(self, y_channels: int, *, image_size: int = 256, ndf: int = 64, n_layers: int = 3,
                 norm: str = "instance", spectral_norm: bool = False, init_std: float = 0.02):
        super().__init__(0, y_channels, image_size=image_size, ndf=ndf, norm=norm, n_layers=n_layers,
                         init_std=init_std)
        if spectral_norm:
            spectral_norm_all(self)

    def forward(self, y: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return self.net(y)


def strided_depth(image_size: int, what: str) -> int:
    """Number of 4x4 stride-2 convs that take a square ``image_size`` image down to 4x4 (DCGAN's trunk).

    ``image_size`` must be ``4 * 2**n`` with ``n >= 2`` (16, 32, 64, 128, ...).
    """
    n, s = 0, image_size
    while s > 4 and s % 2 == 0:
        s, n = s // 2, n + 1
    if s != 4 or n < 2:
        raise ConfigError(f"{what}: image_size {image_size} is not supported; use a power of two of at "
                          "least 16 (32 or 64 as in DCGAN)")
    return n


def dcgan_widths(ndf: int, depth: int) -> list[int]:
    """Feature widths of the strided trunk: ndf, 2 ndf, 4 ndf, 8 ndf at 64 px (depth 4)."""
    return [ndf * 2 ** i for i in range(depth)]


class DCGANDiscriminator(nn.Module):
    """The DCGAN discriminator: ``forward(y) -> logits (B,)``, one per image.

    Radford et al. (2016) and its reference code at 64x64: 4x4 stride-2 convs, padding 1, widths ndf, 2 ndf,
    4 ndf, 8 ndf down to a 4x4 map, batch norm after every conv but the first ("not applying batchnorm to the
    discriminator input layer"), LeakyReLU 0.2, then a 4x4 valid conv to one logit (no sigmoid: losses take
    logits). 32x32 takes one strided conv less (ndf, 2 ndf, 4 ndf); any ``4 * 2**n`` size >= 16 works the same.
    Conv biases only where no batch norm follows (redundant before it). ``norm="none"`` drops the batch norm
    (e.g. for WGAN-GP), ``spectral_norm`` wraps every conv (SN-GAN). Weights N(0, 0.02), BN scales N(1, 0.02).
    """

    def __init__(self, y_channels: int, *, image_size: int = 64, ndf: int = 64, norm: str = "batch",
                 spectral_norm: bool = False, init_std: float = 0.02):
        super().__init__()
        self.image_size = image_size
        depth = strided_depth(image_size, type(self).__name__)
        widths = dcgan_widths(ndf, depth)
        layers: list[nn.Module] = []
        c = y_channels
        for i, w in enumerate(widths):
            n = make_norm(norm, w) if i > 0 else None
            layers += [nn.Conv2d(c, w, 4, 2, 1, bias=n is None)] + ([n] if n is not None else [])
            layers.append(nn.LeakyReLU(0.2))
            c = w
        self.features = nn.Sequential(*layers)
        self.head = nn.Conv2d(c, 1, 4, 1, 0)
        init_weights(self, init_std)
        if spectral_norm:
            spectral_norm_all(self)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        if tuple(y.shape[-2:]) != (self.image_size, self.image_size):
            raise ValueError(f"dcgan was built for {self.image_size}x{self.image_size} images, got "
                             f"{tuple(y.shape[-2:])}; build it with image_size={y.shape[-1]}")
        return self.head(self.features(y)).flatten(1).squeeze(1)
