"""Image-conditioned projection discriminator with spectral norm (papers.md A, "Projection + SN").

Source: Miyato & Koyama 2018 (cGANs with projection discriminator): ``D(x, y) = psi(h(y)) +
<embed(x), h(y)>``; papers.md A.5 gives the image-conditioned form used by the fusion paper:
"features h of y at reduced resolution; an SN conv maps h to the condition's channels;
output += sum(conv(h) * resize(x)) / sqrt(C*H*W), plus the unconditional head". No public code.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from bench.errors import ConfigError
from methods.discriminators.patchgan import check_patch_input, patch_strides, patch_widths
from bench.nets import init_weights, make_activation, spectral_norm_all

RESIZE_MODES: tuple[str, ...] = ("area", "bilinear", "nearest")


class ProjectionSN(nn.Module):
    """Projection discriminator, image-conditioned: ``forward(x, y) -> logits (B, 1, h, w)``.

    - Trunk on y alone (PatchGAN-style, SN): 4x4 convs, padding 1, C64 s2 -> C128 s2 -> C256 s2 ->
      C512 s1 (widths scaled by ``ndf / 64``), each with a bias and LeakyReLU 0.2, no norm layer;
      h is 31x31 at 256x256.
    - Unconditional head psi(h): SN conv 4x4, stride 1, padding 1 to 1 channel: a 30x30 patch map at
      256x256, the PatchGAN's map.
    - Projection: an SN 1x1 conv maps h to the condition's C channels; x is resized to h's H x W
      (``resize="area"``: adaptive average pooling, i.e. per-cell class proportions for one-hot maps);
      ``proj = sum_{c,i,j} conv(h) * resize(x) / sqrt(C * H * W)``, one scalar per image.
    - Output: ``psi(h) + proj``, the per-image projection term broadcast over the patch map
      (our choice; the spatial sum follows the paper's formula).

    Assumptions (no public code): the trunk widths, kernels and activation, the 1x1 projection conv,
    the resize mode, and adding the per-image scalar to every patch logit. SN on all weights and
    N(0, 0.02) init per the paper.
    """

    def __init__(self, x_channels: int, y_channels: int, *, image_size: int = 256, ndf: int = 64,
                 n_layers: int = 3, activation: str = "leaky", resize: str = "area",
                 init_std: float = 0.02):
        super().__init__()
        check_patch_input(image_size, n_layers, type(self).__name__)
        if resize not in RESIZE_MODES:
            raise ConfigError(f"unknown resize '{resize}' for ProjectionSN; choose one of: {', '.join(RESIZE_MODES)}")
        self.resize = resize
        layers: list[nn.Module] = []
        c = y_channels
        for w, s in zip(patch_widths(ndf, n_layers), patch_strides(n_layers)):
            layers += [nn.Conv2d(c, w, 4, s, 1), make_activation(activation)]
            c = w
        self.trunk = nn.Sequential(*layers)
        self.head = nn.Conv2d(c, 1, 4, 1, 1)
        self.embed = nn.Conv2d(c, x_channels, 1)
        init_weights(self, init_std)
        spectral_norm_all(self)

    def _resize(self, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        if self.resize == "area":
            return F.adaptive_avg_pool2d(x, size)
        if self.resize == "bilinear":
            return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)
        return F.interpolate(x, size=size, mode="nearest")

    def projection(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """The conditional term, one scalar per image: ``sum(conv(h) * resize(x)) / sqrt(C*H*W)``."""
        v = self.embed(h)
        xr = self._resize(x.to(v.dtype), tuple(h.shape[-2:]))
        c, hh, ww = v.shape[1:]
        return (v * xr).sum(dim=(1, 2, 3)) / math.sqrt(c * hh * ww)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        h = self.trunk(y)
        return self.head(h) + self.projection(x, h).view(-1, 1, 1, 1)
