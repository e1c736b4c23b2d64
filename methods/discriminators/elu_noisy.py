"""The discriminator of the new-losses paper (papers.md D): ELU convs with Gaussian noise in the second conv.

The paper gives only "ELU conv encoder / discriminator ... Gaussian noise in D's second conv" and has no public
code; every other choice below is an assumption, named as one. Its features serve a VAE that measures the
reconstruction distance in D's feature space (Larsen et al. 2016's learned similarity).
"""

from __future__ import annotations

import torch
from torch import nn

from bench.contracts import DOutput
from bench.errors import ConfigError
from methods.discriminators.unconditional import dcgan_widths, strided_depth
from bench.nets import INITS, initialise, make_norm


class GaussianNoise(nn.Module):
    """Adds N(0, std^2) noise in training mode only (identity in eval mode).

    The noise comes from torch's global generator of the tensor's device, which the trainer seeds per step.
    """

    def __init__(self, std: float):
        super().__init__()
        self.std = float(std)

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        if not self.training or self.std == 0:
            return v
        return v + self.std * torch.randn_like(v)

    def extra_repr(self) -> str:
        return f"std={self.std}"


class ELUNoisyD(nn.Module):
    """``forward(y) -> DOutput(logits=[(B,)], features=[[block outputs]])`` for 16, 32, 64, ... px images.

    - trunk: 4x4 stride-2 convs, padding 1, widths ndf, 2 ndf, 4 ndf (, 8 ndf at 64 px) down to a 4x4 map,
      each followed by ELU (alpha 1); no normalisation by default (``norm="batch"`` adds it after every conv
      but the first). Widths and depth as DCGAN's discriminator: an assumption.
    - noise: ``GaussianNoise(noise_std)`` on the *input* of the second conv, i.e. on the first block's ELU
      output, in training mode only. ``noise_std = 0.1`` is an assumption (the paper gives no value).
    - head: a linear layer from the flattened 4x4 map to one logit.
    - ``features[0]``: every block's ELU output, the first taken before the noise is added (so it is
      deterministic); in training mode the later ones carry the noise.
    - ``weight_init="fan-in"`` (He et al.; the component keeps it: ``init_policy = "own"``) so activations are
      of order 1 and ``noise_std`` is a fixed fraction of them; with N(0, 0.02) (``"normal"``, or the row's
      ``init = "adapter"``) the first block's output starts about 8x smaller (std ~0.08 against ~0.65 for
      inputs uniform in [-1, 1]) and the noise would drown it.
    The paper's orthogonal regularisation of D is a regulariser of the row, not part of this module.
    """

    init_policy = "own"

    def __init__(self, y_channels: int, *, image_size: int = 64, ndf: int = 64, noise_std: float = 0.1,
                 norm: str = "none", weight_init: str = "fan-in"):
        super().__init__()
        what = type(self).__name__
        if not noise_std >= 0:
            raise ConfigError(f"{what}: noise_std must not be negative, got {noise_std}")
        if weight_init not in INITS:
            raise ConfigError(f"{what}: unknown weight_init '{weight_init}'; choose one of: {', '.join(INITS)}")
        widths = dcgan_widths(ndf, strided_depth(image_size, what))
        blocks, c = [], y_channels
        for i, w in enumerate(widths):
            n = make_norm(norm, w) if i > 0 else None
            layers = [nn.Conv2d(c, w, 4, 2, 1, bias=n is None)] + ([n] if n is not None else []) + [nn.ELU()]
            blocks.append(nn.Sequential(*layers))
            c = w
        self.blocks = nn.ModuleList(blocks)
        self.noise = GaussianNoise(noise_std)
        self.head = nn.Linear(c * 4 * 4, 1)
        self.image_size = image_size
        initialise(self, weight_init)

    def trunk(self, y: torch.Tensor, name: str = "elu-noisy") -> list[torch.Tensor]:
        """Every conv block's output on ``y`` (the noise added at the second block's input in training)."""
        if tuple(y.shape[-2:]) != (self.image_size, self.image_size):
            raise ValueError(f"{name} was built for {self.image_size}x{self.image_size} images, got "
                             f"{tuple(y.shape[-2:])}; build it with image_size={y.shape[-1]}")
        feats = []
        v = y
        for i, block in enumerate(self.blocks):
            if i == 1:
                v = self.noise(v)
            v = block(v)
            feats.append(v)
        return feats

    def forward(self, y: torch.Tensor) -> DOutput:
        feats = self.trunk(y)
        return DOutput([self.head(feats[-1].flatten(1)).squeeze(1)], [feats])
