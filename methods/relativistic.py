"""Relativistic adversarial losses (Jolicoeur-Martineau 2019): D judges how much more real a real sample
looks than a generated one, so the generator's loss reads the real logits too (detached: G gets no
gradient through them, and they do not depend on G anyway).

Multi-scale D outputs: each loss is the mean over scales of a per-scale term on (real, fake) logits.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from bench.contracts import AdversarialLoss, AdvTerms


class PairedScaleLoss(AdversarialLoss):
    """A loss that is the mean over scales of ``d_pair(real, fake)`` / ``g_pair(real, fake)``; G's
    pair sees the real logits detached."""

    def d_pair(self, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def g_pair(self, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def d_loss(self, t: AdvTerms) -> torch.Tensor:
        r, f = t.d_real.logits, t.d_fake.logits
        return sum(self.d_pair(a.float(), b.float()) for a, b in zip(r, f)) / len(r)

    def g_loss(self, t: AdvTerms) -> torch.Tensor:
        r, f = t.d_real.logits, t.d_fake.logits
        return sum(self.g_pair(a.detach().float(), b.float()) for a, b in zip(r, f)) / len(r)


class RelativisticAverageLoss(AdversarialLoss):
    """Relativistic average GAN (Jolicoeur-Martineau 2019; ESRGAN's D): each side is judged against the
    mean logit of the other side, so the generator's loss reads the real logits too::

        D: BCE(C(r) - E[C(f)], 1) + BCE(C(f) - E[C(r)], 0)
        G: BCE(C(r) - E[C(f)], 0) + BCE(C(f) - E[C(r)], 1)     (real logits detached for G)

    Each of the two terms is halved, as in ESRGAN.
    """

    name = "ragan"

    @staticmethod
    def _pair(real: torch.Tensor, fake: torch.Tensor, real_target: float) -> torch.Tensor:
        rr = real - fake.mean()
        ff = fake - real.mean()
        return (F.binary_cross_entropy_with_logits(rr, torch.full_like(rr, real_target))
                + F.binary_cross_entropy_with_logits(ff, torch.full_like(ff, 1.0 - real_target))) / 2

    def d_loss(self, t: AdvTerms) -> torch.Tensor:
        r, f = t.d_real.logits, t.d_fake.logits
        return sum(self._pair(a.float(), b.float(), 1.0) for a, b in zip(r, f)) / len(r)

    def g_loss(self, t: AdvTerms) -> torch.Tensor:
        r, f = t.d_real.logits, t.d_fake.logits
        return sum(self._pair(a.detach().float(), b.float(), 0.0) for a, b in zip(r, f)) / len(r)


class RelativisticStandardLoss(PairedScaleLoss):
    """Relativistic standard GAN, RSGAN (Jolicoeur-Martineau 2019; the author's code, ``loss_D == 5``):
    each real sample is paired with the generated sample at the same position of the batch::

        D: BCE(C(r) - C(f), 1) = E[softplus(C(f) - C(r))]
        G: BCE(C(f) - C(r), 1) = E[softplus(C(r) - C(f))]     (real logits detached for G)

    The pairing needs real and fake logits of the same shape (equal batch sizes).
    """

    name = "rsgan"

    @staticmethod
    def _more_real(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """BCE(a - b, 1), mean: how badly ``a`` fails to look more real than ``b``."""
        if a.shape != b.shape:
            raise ValueError(f"rsgan pairs real and fake logits per sample but got shapes {tuple(a.shape)} and "
                             f"{tuple(b.shape)}; give D equal-sized real and fake batches, or use 'ragan'")
        diff = a - b
        return F.binary_cross_entropy_with_logits(diff, torch.ones_like(diff))

    def d_pair(self, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        return self._more_real(real, fake)

    def g_pair(self, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        return self._more_real(fake, real)


class RelativisticAverageLSLoss(PairedScaleLoss):
    """Relativistic average least-squares GAN, RaLSGAN (Jolicoeur-Martineau 2019)::

        D: ( E[(C(r) - E C(f) - 1)^2] + E[(C(f) - E C(r) + 1)^2] ) / 2
        G: ( E[(C(r) - E C(f) + 1)^2] + E[(C(f) - E C(r) - 1)^2] ) / 2     (real logits detached for G)

    The constant: halved, as in the author's public code (AlexiaJM/RelativisticGAN, GAN_losses_iter.py,
    ``loss_D == 7``) and like ``ragan`` here; the paper writes the sum without the 1/2. G still gets a
    gradient through its real term, via E C(f).
    """

    name = "ralsgan"

    @staticmethod
    def _terms(real: torch.Tensor, fake: torch.Tensor, target: float) -> torch.Tensor:
        """Real judged against the mean fake aiming at ``target``, fake against the mean real at ``-target``."""
        rr = real - fake.mean()
        ff = fake - real.mean()
        return ((rr - target).pow(2).mean() + (ff + target).pow(2).mean()) / 2

    def d_pair(self, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        return self._terms(real, fake, 1.0)

    def g_pair(self, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        return self._terms(real, fake, -1.0)
