"""Regularisers: weighted extra terms of D's or G's loss, picked per row by name.

``options = { loss = "wgan", regularizers = { gp = 10.0 } }`` adds ``10 * gp(terms)`` to D's loss.
Each sees :class:`bench.contracts.AdvTerms` (real and fake samples, their D outputs, and the critic,
D bound to the condition, for penalties on interpolates).
"""

from __future__ import annotations

from typing import Any, Mapping

import torch

from bench.contracts import AdvTerms, Regularizer
from bench.registry import REGULARIZERS


def _scalar_logits(out: Any) -> torch.Tensor:
    """Sum of every logit of every scale (the quantity whose input gradient is penalised)."""
    return sum(lg.float().sum() for lg in out.logits)


def _grad_norm_sq(out: Any, inputs: torch.Tensor) -> torch.Tensor:
    (grad,) = torch.autograd.grad(_scalar_logits(out), inputs, create_graph=True)
    return grad.float().pow(2).reshape(grad.shape[0], -1).sum(1)


class GradientPenalty(Regularizer):
    """WGAN-GP (Gulrajani et al. 2017): E[(||grad_v D(x, v)||_2 - 1)^2] at v = a real + (1 - a) fake,
    a ~ U(0, 1) per sample."""

    applies_to = "d"

    def __call__(self, t: AdvTerms) -> torch.Tensor:
        real, fake = t.real.detach(), t.fake.detach()
        alpha = torch.rand(real.shape[0], *([1] * (real.dim() - 1)), device=real.device, dtype=real.dtype)
        mix = (alpha * real + (1 - alpha) * fake).requires_grad_(True)
        return (_grad_norm_sq(t.critic(mix), mix).sqrt() - 1).pow(2).mean()


class R1Penalty(Regularizer):
    """R1 (Mescheder et al. 2018): E[||grad_v D(x, v)||^2] / 2 on real samples."""

    applies_to = "d"

    def __call__(self, t: AdvTerms) -> torch.Tensor:
        real = t.real.detach().requires_grad_(True)
        return _grad_norm_sq(t.critic(real), real).mean() / 2


class FeatureMatching(Regularizer):
    """pix2pixHD's feature-matching loss: L1 between D's intermediate features on real (fixed) and
    generated samples, mean over layers, then over scales. Needs a D that returns ``features``."""

    applies_to = "g"

    def __call__(self, t: AdvTerms) -> torch.Tensor:
        real, fake = t.d_real.features, t.d_fake.features
        if not fake or not any(fake):
            raise ValueError("feature-matching needs a discriminator that returns features "
                             "(DOutput.features); this one returns none")
        per_scale = [sum((b.float() - a.detach().float()).abs().mean() for a, b in zip(fr, ff)) / len(ff)
                     for fr, ff in zip(real, fake)]
        return sum(per_scale) / len(per_scale)


class Regularizers:
    """The weighted regularisers of one method: ``d(terms)`` / ``g(terms)`` -> (total, {name: value})."""

    def __init__(self, weights: Mapping[str, float]):
        self.terms = [(name, float(w), REGULARIZERS.get(name)()) for name, w in weights.items() if w]

    def _apply(self, side: str, t: AdvTerms) -> tuple[torch.Tensor | None, dict[str, torch.Tensor]]:
        total, parts = None, {}
        for name, w, reg in self.terms:
            if reg.applies_to != side:
                continue
            v = reg(t)
            parts[name] = v.detach()
            total = w * v if total is None else total + w * v
        return total, parts

    def d(self, t: AdvTerms) -> tuple[torch.Tensor | None, dict[str, torch.Tensor]]:
        return self._apply("d", t)

    def g(self, t: AdvTerms) -> tuple[torch.Tensor | None, dict[str, torch.Tensor]]:
        return self._apply("g", t)
