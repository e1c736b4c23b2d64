"""The DCGAN-style class-conditional generator of the conditional-activation-GAN paper.

Source: Cho & Yoon, "Conditional Activation GAN: Improved Auxiliary Classifier GAN", IEEE Access
2020, and its public code, which this follows for the layer layout: ``cat(z, onehot)`` -> linear
-> (4 ngf, s/4, s/4) -> two (nearest upsample x2, ``convs_per_block`` x [conv 3x3, LeakyReLU 0.2,
norm]) blocks -> conv 1x1 -> tanh. Sized for MNIST-scale images (28 x 28 by default).
"""

from __future__ import annotations

import torch
from torch import nn

from bench.errors import ConfigError
from bench.nets import init_weights, make_norm


def check_class_net_args(what: str, image_size: int, **counts: int) -> None:
    """One-line ``ConfigError`` unless ``image_size`` is a positive multiple of 4 and each count >= 1."""
    for name, v in counts.items():
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise ConfigError(f"{what}: {name} must be an integer of at least 1, got {v!r}")
    if not isinstance(image_size, int) or isinstance(image_size, bool) or image_size < 4 or image_size % 4:
        raise ConfigError(f"{what}: image_size must be a positive multiple of 4 (two 2x resamplings), "
                          f"got {image_size!r}")


def conv_block(c_in: int, c_out: int, n: int, norm: str) -> list[nn.Module]:
    """``n`` x (conv 3x3 pad 1, LeakyReLU 0.2, norm): the first conv maps ``c_in -> c_out``, the rest keep ``c_out``."""
    layers: list[nn.Module] = []
    for i in range(n):
        layers += [nn.Conv2d(c_in if i == 0 else c_out, c_out, 3, 1, 1), nn.LeakyReLU(0.2)]
        layer = make_norm(norm, c_out)
        if layer is not None:
            layers.append(layer)
    return layers


class ClassDCGAN(nn.Module):
    """Class-conditional DCGAN generator: ``forward(z, onehot) -> image (N, out_channels, s, s)`` in [-1, 1].

    Linear(z_dim + num_classes -> 4 ngf (s/4)^2), reshaped to (4 ngf, s/4, s/4); block 1: upsample x2
    (nearest) then ``convs_per_block`` convs to 2 ngf; block 2: upsample x2 then convs to ngf; every
    conv is followed by LeakyReLU(0.2) and the norm (the authors' order); conv 1x1 to
    ``out_channels`` and tanh. With ngf=64 at 28 px: 256 ch at 7x7, 128 at 14x14, 64 at 28x28.
    Every conv and the linear layer carry a bias. ``norm``: "instance" (no affine parameters),
    "batch" or "none". Weights N(0, 0.02), norm scales N(1, 0.02), biases 0 (the bench default;
    the adapter may re-initialise).
    """

    def __init__(self, z_dim: int, num_classes: int, *, image_size: int = 28, ngf: int = 64,
                 out_channels: int = 1, norm: str = "instance", convs_per_block: int = 3):
        super().__init__()
        check_class_net_args(type(self).__name__, image_size, z_dim=z_dim, num_classes=num_classes, ngf=ngf,
                             out_channels=out_channels, convs_per_block=convs_per_block)
        make_norm(norm, 1)  # validates the name early
        self.z_dim, self.num_classes, self.image_size = z_dim, num_classes, image_size
        self.base = (4 * ngf, image_size // 4, image_size // 4)
        self.fc = nn.Linear(z_dim + num_classes, 4 * ngf * (image_size // 4) ** 2)
        self.blocks = nn.Sequential(
            nn.Upsample(scale_factor=2, mode="nearest"), *conv_block(4 * ngf, 2 * ngf, convs_per_block, norm),
            nn.Upsample(scale_factor=2, mode="nearest"), *conv_block(2 * ngf, ngf, convs_per_block, norm),
            nn.Conv2d(ngf, out_channels, 1), nn.Tanh())
        init_weights(self)

    def forward(self, z: torch.Tensor, onehot: torch.Tensor) -> torch.Tensor:
        if z.dim() != 2 or onehot.dim() != 2 or z.shape[0] != onehot.shape[0] \
                or z.shape[1] != self.z_dim or onehot.shape[1] != self.num_classes:
            raise ConfigError(f"ClassDCGAN expects z (N, {self.z_dim}) and onehot (N, {self.num_classes}), "
                              f"got {tuple(z.shape)} and {tuple(onehot.shape)}")
        h = self.fc(torch.cat([z, onehot.to(z.dtype)], dim=1))
        return self.blocks(h.view(h.shape[0], *self.base))
