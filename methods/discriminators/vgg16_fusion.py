"""The fusion discriminator with VGG16 branches (papers.md A, "VGG16 Fusion + SN", the paper's best row).

Source: papers.md A: fusion scheme of the 4-layer fusion discriminator ("two branches psi(x), phi(y) of
identical conv->SN->ReLU blocks; after each block the y-branch activation is summed element-wise with
the x-branch activation, the fused signal goes on") with VGG16 conv blocks 64-128-256-512-512.
No public code.
"""

from __future__ import annotations

import torch
from torch import nn

from methods.discriminators.fusion4 import FusionTrunk
from methods.discriminators.vgg16_concat import check_vgg_input, vgg16_stages, vgg16_widths
from bench.nets import init_weights, spectral_norm_all


class VGG16FusionSN(nn.Module):
    """VGG16 fusion discriminator with spectral norm: ``forward(x, y) -> logits (B, 1, h, w)``.

    Two VGG16 conv trunks, psi on the condition x and phi on the output y (3x3 convs 2-2-3-3-3 per
    block, widths 64-128-256-512-512 scaled by ``ndf / 64``, SN on every weight, ReLU as the paper's
    "conv->SN->ReLU"). After each VGG block the y-branch activation is summed element-wise with the
    x-branch activation; the fused signal goes on in the y-branch, the x-branch goes on unfused.

    Assumptions (no public code):
    - "block" is a VGG conv block (5 fusions), not every conv layer (13 fusions);
    - the fusion happens at the end of a block, after its last activation and before the 2x2 max-pool
      that opens the next block (each branch pools its own signal);
    - random init N(0, 0.02), biases on, no normalisation layer, no fifth pool, no FC layers;
    - head: 3x3 SN conv (padding 1) to 1 channel on the last fused signal: 16x16 logits at 256x256,
      the same map as :class:`~methods.discriminators.vgg16_concat.VGG16ConcatSN`.
    """

    def __init__(self, x_channels: int, y_channels: int, *, image_size: int = 256, ndf: int = 64,
                 activation: str = "relu", init_std: float = 0.02):
        super().__init__()
        check_vgg_input(image_size, type(self).__name__)
        self.trunk = FusionTrunk(vgg16_stages(x_channels, ndf, activation),
                                 vgg16_stages(y_channels, ndf, activation))
        self.head = nn.Conv2d(vgg16_widths(ndf)[-1], 1, 3, 1, 1)
        init_weights(self, init_std)
        spectral_norm_all(self)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.head(self.trunk(x, y))
