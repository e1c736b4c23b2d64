"""Regularisers: weighted extra terms of D's or G's loss, or changes of what D sees, picked per row by name.

``options = { loss = "wgan", regularizers = { gp = 10.0 } }`` adds ``10 * gp(terms)`` to D's loss.
Each sees :class:`bench.contracts.AdvTerms` (real and fake samples, their D outputs, the critic, D bound
to the condition, for penalties on interpolates, and the adapter's networks for weight penalties).
"input" regularisers (instance noise) are applied by the adversarial step through
:meth:`bench.adversarial.Regularizers.perturb`, not added to a loss.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from bench.contracts import AdvTerms, Regularizer
from bench.nets import LINEAR_LAYERS, raw_weight


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


class R2Penalty(Regularizer):
    """R2 (Mescheder et al. 2018): E[||grad_v D(x, v)||^2] / 2 on generated samples (detached)."""

    applies_to = "d"

    def __call__(self, t: AdvTerms) -> torch.Tensor:
        fake = t.fake.detach().requires_grad_(True)
        return _grad_norm_sq(t.critic(fake), fake).mean() / 2


def off_diagonal_gram(w: torch.Tensor) -> torch.Tensor:
    """||W W^T * (1 - I)||_F^2 for ``w`` reshaped to (shape[0], rest): how far its rows are from orthogonal."""
    m = w.float().reshape(w.shape[0], -1)
    gram = m @ m.t()
    return (gram * (1 - torch.eye(gram.shape[0], device=gram.device))).pow(2).sum()


def orthogonality(module: nn.Module) -> torch.Tensor:
    """The sum of :func:`off_diagonal_gram` over the conv / linear weights of ``module``."""
    weights = [raw_weight(m) for m in module.modules()
               if isinstance(m, LINEAR_LAYERS) and getattr(m, "weight", None) is not None]
    if not weights:
        raise ValueError(f"orthogonal regularisation found no conv / linear weight in {type(module).__name__}; "
                         "drop it from this row's regularizers")
    return sum(off_diagonal_gram(w) for w in weights)


class OrthogonalD(Regularizer):
    """BigGAN's orthogonal regularisation (Brock et al. 2019), here on D as in the new-losses paper:
    sum over D's conv / linear weights W (reshaped to out x rest, BigGAN's ``shape[0]`` first: in-channels
    for a transposed conv) of ||W W^T * (1 - I)||_F^2, on the raw parameter (before spectral norm).

    BigGAN-PyTorch (utils.ortho) adds ``strength * 2 (W W^T * (1 - I)) W`` to the gradient, which is the
    gradient of half this sum: its strength 1e-4 is a weight of 5e-5 here. Reads ``t.modules["D"]``.
    """

    applies_to = "d"
    slot = "D"

    def __call__(self, t: AdvTerms) -> torch.Tensor:
        module = t.modules.get(self.slot)
        if module is None:
            raise ValueError(f"orthogonal regularisation reads the network '{self.slot}' from AdvTerms.modules, which "
                             f"holds {sorted(t.modules) or 'none'}; pass modules={{'{self.slot}': ...}} to AdvTerms")
        return orthogonality(module)


class OrthogonalG(OrthogonalD):
    """BigGAN's orthogonal regularisation on G (``t.modules["G"]``), a term of G's loss; see :class:`OrthogonalD`."""

    applies_to = "g"
    slot = "G"


class InstanceNoise(Regularizer):
    """Instance noise (Sonderby et al. 2016; Arjovsky & Bottou 2017): D sees v + sigma N(0, 1) for real
    and generated samples alike, so that the two distributions overlap.

    Assumption (the papers anneal, the schedule is ours): sigma = weight * (1 - progress), linear from
    ``weight`` at the start of training to 0 at its end; with an unknown training length progress is 0
    and sigma stays at ``weight``. The noise comes from torch's global generator (seeded per step).
    """

    applies_to = "input"

    @staticmethod
    def sigma(weight: float, progress: float) -> float:
        return weight * (1.0 - min(1.0, max(0.0, progress)))

    def perturb(self, v: torch.Tensor, weight: float, progress: float) -> torch.Tensor:
        s = self.sigma(weight, progress)
        return v if s == 0 else v + s * torch.randn_like(v)
