"""The fusion discriminator (Mahmood et al., ICLR 2019 workshop), 4-layer PatchGAN-width branches.

Source: papers.md A, row "4-Layer Fusion + SN": "two branches psi(x), phi(y) of identical
conv->SN->ReLU blocks; after each block the y-branch activation is summed element-wise with the
x-branch activation (fusion), the fused signal goes on". The paper has no public code.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from methods.discriminators.patchgan import check_patch_input, patch_strides, patch_widths
from bench.nets import init_weights, make_activation, spectral_norm_all


class FusionTrunk(nn.Module):
    """Two parallel block stacks, x-branch ``psi`` and y-branch ``phi``, fused after every block.

    ``forward(x, y)``: for each level l, ``x_l = psi_l(x_{l-1})`` (the x-branch goes on unfused) and
    ``y_l = phi_l(y_{l-1}) + x_l`` (the fused signal goes on in the y-branch); returns ``y_L``.
    Matching blocks must produce tensors of the same shape.
    """

    def __init__(self, x_blocks: Sequence[nn.Module], y_blocks: Sequence[nn.Module]):
        super().__init__()
        if len(x_blocks) != len(y_blocks):
            raise ValueError("fusion branches need the same number of blocks")
        self.psi = nn.ModuleList(x_blocks)
        self.phi = nn.ModuleList(y_blocks)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        for psi, phi in zip(self.psi, self.phi):
            x = psi(x)
            y = phi(y) + x
        return y


def patch_branch(in_channels: int, ndf: int, n_layers: int, activation: str) -> list[nn.Module]:
    """One branch: conv (4x4, padding 1, PatchGAN widths and strides) -> activation blocks, no norm."""
    blocks: list[nn.Module] = []
    c = in_channels
    for w, s in zip(patch_widths(ndf, n_layers), patch_strides(n_layers)):
        blocks.append(nn.Sequential(nn.Conv2d(c, w, 4, s, 1), make_activation(activation)))
        c = w
    return blocks


class Fusion4SN(nn.Module):
    """4-layer fusion discriminator with spectral norm: ``forward(x, y) -> logits (B, 1, h, w)``.

    Spec (paper text, papers.md A): two branches psi(x) and phi(y) of identical conv -> SN -> ReLU
    blocks; after each block the y-branch activation is summed element-wise with the x-branch
    activation and the fused signal goes on in the y-branch; SN on all weights; init N(0, 0.02).

    Assumptions (no public code; the paper gives only the branch widths "of the 4-layer PatchGAN"):
    - blocks are the PatchGAN trunk: 4x4 convs, padding 1, widths C64-C128-C256-C512 (scaled by
      ``ndf / 64``), strides 2-2-2-1, a bias on every conv, no normalisation layer;
    - fusion after every block, the last included; the x-branch output of the last block is used only
      for that fusion;
    - head: SN conv 4x4, stride 1, padding 1 to 1 channel on the fused signal, as the PatchGAN head,
      so the map matches the PatchGAN's (30x30 at 256x256, 6x6 at 64x64);
    - activation ReLU as the paper says (``activation="leaky"`` gives LeakyReLU 0.2).
    """

    def __init__(self, x_channels: int, y_channels: int, *, image_size: int = 256, ndf: int = 64,
                 n_layers: int = 3, activation: str = "relu", init_std: float = 0.02):
        super().__init__()
        check_patch_input(image_size, n_layers, type(self).__name__)
        self.trunk = FusionTrunk(patch_branch(x_channels, ndf, n_layers, activation),
                                 patch_branch(y_channels, ndf, n_layers, activation))
        self.head = nn.Conv2d(patch_widths(ndf, n_layers)[-1], 1, 4, 1, 1)
        init_weights(self, init_std)
        spectral_norm_all(self)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.head(self.trunk(x, y))
