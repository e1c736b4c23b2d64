"""A joint discriminator D(x, z) for the new-losses paper's SDKL (papers.md D): ``elu-joint``.

The image path is ``elu-noisy`` 's trunk (ELU convs, Gaussian noise at the input of the second conv); the latent
path is an MLP; their outputs are concatenated and a joint MLP gives one logit. A joint layer is needed: a logit
that is a sum f(x) + g(z) only compares the marginals, not how x and z go together. Widths after ALI's CelebA
discriminator (Dumoulin et al. 2017: z path 512, joint 1024 at ndf 64): ``z_width`` = 8 ``ndf``, ``joint_width`` =
16 ``ndf``, each with ELU; no noise in the latent path. All an assumption: the paper has no public code.
"""

from __future__ import annotations

import torch
from torch import nn

from bench.contracts import DOutput
from bench.errors import ConfigError
from bench.nets import initialise
from methods.discriminators.elu_noisy import ELUNoisyD


class ELUJointD(ELUNoisyD):
    """``forward(y, z) -> DOutput(logits=[(B,)], features=[[image block outputs..., latent path, joint hidden]])``.

    ``z_width`` / ``joint_width`` = 0 take 8 ``ndf`` / 16 ``ndf``. The other options are ``elu-noisy`` 's; its
    He initialisation is kept for the new layers (``init_policy = "own"``).
    """

    def __init__(self, y_channels: int, z_dim: int, *, image_size: int = 64, ndf: int = 64, noise_std: float = 0.1,
                 norm: str = "none", weight_init: str = "fan-in", z_width: int = 0, joint_width: int = 0):
        super().__init__(y_channels, image_size=image_size, ndf=ndf, noise_std=noise_std, norm=norm,
                         weight_init=weight_init)
        for k, v in (("z_dim", z_dim), ("z_width", z_width), ("joint_width", joint_width)):
            if isinstance(v, bool) or not isinstance(v, int) or v < (1 if k == "z_dim" else 0):
                raise ConfigError(f"{type(self).__name__}: {k} must be a non-negative integer, got {v!r}")
        zw, jw = z_width or 8 * ndf, joint_width or 16 * ndf
        flat = self.head.in_features
        self.z_dim = z_dim
        self.z_path = nn.Sequential(nn.Linear(z_dim, zw), nn.ELU(), nn.Linear(zw, zw), nn.ELU())
        self.joint = nn.Sequential(nn.Linear(flat + zw, jw), nn.ELU())
        self.head = nn.Linear(jw, 1)
        for m in (self.z_path, self.joint, self.head):
            initialise(m, weight_init)

    def forward(self, y: torch.Tensor, z: torch.Tensor) -> DOutput:  # type: ignore[override]
        if z.dim() != 2 or z.shape[1] != self.z_dim:
            raise ValueError(f"elu-joint was built for latents of {self.z_dim} dims, got shape {tuple(z.shape)}")
        feats = self.trunk(y, "elu-joint")
        v = feats[-1]
        hz = self.z_path(z)
        h = self.joint(torch.cat([v.flatten(1), hz.to(v.dtype)], 1))
        return DOutput([self.head(h).squeeze(1)], [[*feats, hz, h]])
