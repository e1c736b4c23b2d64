"""The classic adversarial losses: ``d_loss(terms)`` / ``g_loss(terms)`` on :class:`bench.contracts.AdvTerms`.

A discriminator's output may hold several scales (``DOutput.logits``): the loss is the mean over
them. Per-scale losses (``d_term`` / ``g_term``) cover the classic family here. The other families
live beside it: :mod:`methods.relativistic` (G's loss reads the real logits too, which is why losses
see both sides) and :mod:`methods.fdiv_losses` (minimax / reverse KL / KL / symmetrised KL generator
losses on a BCE-trained D). ``RelativisticAverageLoss`` stays importable from here.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from bench.contracts import AdversarialLoss, AdvTerms
from methods.relativistic import RelativisticAverageLoss

__all__ = ["PerScaleLoss", "VanillaLoss", "LSGANLoss", "HingeLoss", "WassersteinLoss", "RelativisticAverageLoss"]


class PerScaleLoss(AdversarialLoss):
    """A loss that is the mean over scales of ``d_term(real, fake)`` / ``g_term(fake)``."""

    def d_term(self, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def g_term(self, fake: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def d_loss(self, t: AdvTerms) -> torch.Tensor:
        r, f = t.d_real.logits, t.d_fake.logits
        return sum(self.d_term(a.float(), b.float()) for a, b in zip(r, f)) / len(r)

    def g_loss(self, t: AdvTerms) -> torch.Tensor:
        f = t.d_fake.logits
        return sum(self.g_term(b.float()) for b in f) / len(f)


class VanillaLoss(PerScaleLoss):
    """The original minimax loss with the non-saturating generator term (pix2pix 'vanilla')."""

    name = "vanilla"

    def d_term(self, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        return (F.binary_cross_entropy_with_logits(real, torch.ones_like(real))
                + F.binary_cross_entropy_with_logits(fake, torch.zeros_like(fake)))

    def g_term(self, fake: torch.Tensor) -> torch.Tensor:
        return F.binary_cross_entropy_with_logits(fake, torch.ones_like(fake))


class LSGANLoss(PerScaleLoss):
    """Least squares GAN (Mao et al. 2017): targets 1 for real, 0 for fake."""

    name = "lsgan"

    def d_term(self, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        return F.mse_loss(real, torch.ones_like(real)) + F.mse_loss(fake, torch.zeros_like(fake))

    def g_term(self, fake: torch.Tensor) -> torch.Tensor:
        return F.mse_loss(fake, torch.ones_like(fake))


class HingeLoss(PerScaleLoss):
    """Hinge loss (Lim & Ye 2017; SN-GAN, SPADE)."""

    name = "hinge"

    def d_term(self, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        return F.relu(1 - real).mean() + F.relu(1 + fake).mean()

    def g_term(self, fake: torch.Tensor) -> torch.Tensor:
        return -fake.mean()


class WassersteinLoss(PerScaleLoss):
    """WGAN critic loss (Arjovsky et al. 2017): D maximises E[D(real)] - E[D(fake)]; pair it with the
    ``gp`` regulariser (WGAN-GP, Gulrajani et al. 2017) as StarGAN does."""

    name = "wgan"

    def d_term(self, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        return fake.mean() - real.mean()

    def g_term(self, fake: torch.Tensor) -> torch.Tensor:
        return -fake.mean()
