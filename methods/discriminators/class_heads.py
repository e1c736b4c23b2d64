"""The two-headed discriminator of the conditional-activation-GAN paper (adversarial + class logits).

Source: Cho & Yoon, "Conditional Activation GAN: Improved Auxiliary Classifier GAN", IEEE Access
2020, and its public code, which this follows for the layer layout: conv 3x3 + LeakyReLU 0.2, two
(avg-pool 2, ``convs_per_block`` x [conv 3x3, LeakyReLU 0.2, norm]) blocks doubling the width, flatten,
one linear head for the real/fake logit and one for the condition logits. The paper's mixed-batch
experiment puts batch norm in D (``norm="batch"``), which makes a sample's logits depend on its batch.
"""

from __future__ import annotations

import torch
from torch import nn

from bench.errors import ConfigError
from methods.generators.class_dcgan import check_class_net_args, conv_block
from bench.nets import init_weights, make_norm


class ClassHeadD(nn.Module):
    """``forward(y) -> {"logits": (N, 1), "cls": (N, num_classes)}`` for images (N, in_channels, s, s).

    Conv(in_channels -> ndf, 3x3) + LeakyReLU(0.2); block 1: AvgPool2d(2) then ``convs_per_block``
    convs (the first ndf -> 2 ndf); block 2: AvgPool2d(2) then convs (the first 2 ndf -> 4 ndf); every
    conv in a block is followed by LeakyReLU(0.2) and the norm (the authors' order); flatten
    (4 ndf (s/4)^2 features); heads Linear(-> 1) and Linear(-> num_classes). Every conv and linear
    layer carries a bias. ``norm``: "instance" (no affine parameters), "batch" or "none". Weights
    N(0, 0.02), norm scales N(1, 0.02), biases 0 (the bench default; the adapter may re-initialise).
    The condition enters only through the "cls" head (no image condition): this is not an
    image-conditioned ``D(x, y)``.
    """

    def __init__(self, in_channels: int, num_classes: int, *, image_size: int = 28, ndf: int = 64,
                 norm: str = "instance", convs_per_block: int = 3):
        super().__init__()
        check_class_net_args(type(self).__name__, image_size, in_channels=in_channels, num_classes=num_classes,
                             ndf=ndf, convs_per_block=convs_per_block)
        make_norm(norm, 1)  # validates the name early
        self.in_channels, self.image_size = in_channels, image_size
        self.trunk = nn.Sequential(
            nn.Conv2d(in_channels, ndf, 3, 1, 1), nn.LeakyReLU(0.2),
            nn.AvgPool2d(2), *conv_block(ndf, 2 * ndf, convs_per_block, norm),
            nn.AvgPool2d(2), *conv_block(2 * ndf, 4 * ndf, convs_per_block, norm),
            nn.Flatten())
        features = 4 * ndf * (image_size // 4) ** 2
        self.adv = nn.Linear(features, 1)
        self.cls = nn.Linear(features, num_classes)
        init_weights(self)

    def forward(self, y: torch.Tensor) -> dict[str, torch.Tensor]:
        s = self.image_size
        if y.dim() != 4 or tuple(y.shape[1:]) != (self.in_channels, s, s):
            raise ConfigError(f"ClassHeadD expects images (N, {self.in_channels}, {s}, {s}), got {tuple(y.shape)}; "
                              "build it with the matching in_channels / image_size")
        h = self.trunk(y)
        return {"logits": self.adv(h), "cls": self.cls(h)}
