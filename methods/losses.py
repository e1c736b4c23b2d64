"""Adversarial losses as small composable objects: ``d_loss(real, fake)`` and ``g_loss(fake)``.

Logits may be one tensor or a list of tensors (multi-scale discriminators): the loss is the
mean over the list.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

Logits = torch.Tensor | list[torch.Tensor]


def _each(logits: Logits) -> list[torch.Tensor]:
    return list(logits) if isinstance(logits, (list, tuple)) else [logits]


class AdversarialLoss:
    name = "base"

    def d_term(self, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def g_term(self, fake: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def d_loss(self, real: Logits, fake: Logits) -> torch.Tensor:
        r, f = _each(real), _each(fake)
        return sum(self.d_term(a.float(), b.float()) for a, b in zip(r, f)) / len(r)

    def g_loss(self, fake: Logits) -> torch.Tensor:
        f = _each(fake)
        return sum(self.g_term(b.float()) for b in f) / len(f)


class VanillaLoss(AdversarialLoss):
    """The original minimax loss with the non-saturating generator term (pix2pix 'vanilla')."""

    name = "vanilla"

    def d_term(self, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        return (F.binary_cross_entropy_with_logits(real, torch.ones_like(real))
                + F.binary_cross_entropy_with_logits(fake, torch.zeros_like(fake)))

    def g_term(self, fake: torch.Tensor) -> torch.Tensor:
        return F.binary_cross_entropy_with_logits(fake, torch.ones_like(fake))


class LSGANLoss(AdversarialLoss):
    """Least squares GAN (Mao et al. 2017): targets 1 for real, 0 for fake."""

    name = "lsgan"

    def d_term(self, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        return F.mse_loss(real, torch.ones_like(real)) + F.mse_loss(fake, torch.zeros_like(fake))

    def g_term(self, fake: torch.Tensor) -> torch.Tensor:
        return F.mse_loss(fake, torch.ones_like(fake))


class HingeLoss(AdversarialLoss):
    """Hinge loss (Lim & Ye 2017; SN-GAN, SPADE)."""

    name = "hinge"

    def d_term(self, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        return F.relu(1 - real).mean() + F.relu(1 + fake).mean()

    def g_term(self, fake: torch.Tensor) -> torch.Tensor:
        return -fake.mean()
