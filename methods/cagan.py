"""Conditional activation GAN (CA-GAN; Cho & Yoon, IEEE Access 2020; papers.md section B).

One GAN per condition, all sharing D's and G's hidden layers: D's class head gives one logit per
class, and each sample trains only the logit of its own condition (the "activated" one); D's
adversarial head is not used. In the paper's LSGAN form, with cnd the one-hot condition::

    L_D = sum_c (D_c(x) - 1)^2 cnd_real + D_c(x')^2 cnd_fake        L_G = sum_c (D_c(x') - 1)^2 cnd_fake

which is the row's adversarial loss applied to the activated logits, so any registered loss (LSGAN,
vanilla, hinge, ...) gives its CA-GAN form. No class-loss weight to tune: that is the method's point.
Everything else (networks, sampling, mixed batch training) is the AC-GAN family's
(:class:`methods.acgan.ClassConditionalGAN`).
"""

from __future__ import annotations

import torch

from bench.contracts import AdvTerms, DOutput
from methods.acgan import ClassConditionalGAN


def activated(out: DOutput, labels: torch.Tensor) -> DOutput:
    """The class-head logit of each sample's own condition, as the logits of a one-scale D output."""
    return DOutput([out.heads["cls"].gather(1, labels.long()[:, None])])


class CAGAN(ClassConditionalGAN):
    def _activated_terms(self, t: AdvTerms, y_real: torch.Tensor, y_fake: torch.Tensor, real_known: bool) -> AdvTerms:
        def critic(v: torch.Tensor) -> DOutput:          # for losses / penalties that query D themselves
            return activated(self._critic(v), y_real[:len(v)])
        d_real = activated(t.d_real, y_real) if real_known else None
        return self.adv.terms(critic, t.real, t.fake, d_real, activated(t.d_fake, y_fake))

    def regularised_terms(self, t: AdvTerms, y_real: torch.Tensor, y_fake: torch.Tensor) -> AdvTerms:
        """The activated class logits: the adversarial output of a conditional activation GAN."""
        return self._activated_terms(t, y_real, y_fake, t.real_known)

    def penalty_scores(self, out: DOutput, labels: torch.Tensor) -> torch.Tensor:
        """The activated class logit (the authors' code: sum(label_logits * labels))."""
        return activated(out, labels).logits[0].reshape(-1)

    def d_objective(self, t: AdvTerms, y_real: torch.Tensor, y_fake: torch.Tensor):
        adv = self.loss.d_loss(self._activated_terms(t, y_real, y_fake, True))
        return adv, {"adv": adv}

    def g_objective(self, t: AdvTerms, y_real: torch.Tensor, y_fake: torch.Tensor):
        adv = self.loss.g_loss(self._activated_terms(t, y_real, y_fake, t.real_known))
        return adv, {"adv": adv}
