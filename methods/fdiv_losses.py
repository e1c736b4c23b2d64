"""Generator losses that minimise a chosen divergence, on a discriminator trained with the standard BCE.

Notation: p is the data density, q the generator's, D = sigmoid(l) with l the logit. D is trained as in
``vanilla`` (maximise E_p[log D] + E_q[log(1 - D)]), so at its optimum

    D* = p / (p + q),    l* = log(p / q),    r := p / q = exp(l*) = D* / (1 - D*).

Only G's loss differs between the losses of this module: each is a function of the logit on generated
samples that, at D = D*, gives G the gradient of one divergence.

f-GAN route (Nowozin et al. 2016). D_f(P || Q) = E_q[f(p/q)] = sup_T E_p[T] - E_q[f*(T)], with f* the
convex conjugate and the supremum at T* = f'(p/q). G moves only q, so with T held at T* its loss is the
q-part of the bound, L_G = -E_q[f*(T*)], and T* is read off D*'s logit:

    JS, 2 JS(p||q) - log 4:  f(u) = u log u - (u+1) log(u+1),  f'(u) = log(u/(1+u)),  T* = log D*,
        f*(t) = -log(1 - e^t),  f*(T*) = -log(1 - D*)      =>  L_G = E_q[log(1 - D)] = -E_q[softplus(l)]
        ("minimax", the original saturating loss of Goodfellow et al. 2014).
    KL(q||p) (reverse):  f(u) = -log u,  f'(u) = -1/u,  T* = -exp(-l*),  f*(t) = -1 - log(-t),
        f*(T*) = l* - 1                                    =>  L_G = E_q[1 - l] ~ E_q[-l] = E_q[log((1-D)/D)]
        ("rkl", Huszar 2016; the constant 1 is dropped).
    KL(p||q) (forward):  f(u) = u log u,  f'(u) = 1 + log u,  T* = 1 + l*,  f*(t) = exp(t - 1),
        f*(T*) = exp(l*)                                   =>  L_G = -E_q[exp(l)] = -E_q[D/(1-D)]   ("kl").
        At D* the conjugate term is E_q[exp(l*)] = E_q[p/q] = 1, and the bound E_p[T*] - 1 = KL(p||q).
    SKL, KL(p||q) + KL(q||p):  f(u) = (u - 1) log u, whose conjugate has no closed form (Lambert W); the
        divergence is the sum of the two KLs, so its generator loss is the sum of the two generator losses:
        L_G = E_q[-l] - E_q[exp(l)]                                                              ("skl").

Direct route, and the gradient with respect to G. Hold D at D* (l* = log(p/q_theta) is a fixed function
of x while G's parameters theta move), and use that the integral of grad_theta q_theta is grad_theta 1 = 0:

    grad KL(q||p)   = int grad q . log(q/p) + int q grad log q = grad E_q[-l*]           (2nd term: int grad q = 0)
    grad KL(p||q)   = -int p grad log q = -int (p/q) grad q    = grad E_q[-exp(l*)]
    grad 2 JS(p||q) = grad [int p log(2p/(p+q)) + int q log(2q/(p+q))]
                    = int grad q . log(2q/(p+q)) + int grad q (1 - (p+q)/(p+q))
                    = int grad q . log(q/(p+q)) + log 2 int grad q  = grad E_q[log(1 - D*)]

so each L_G above has, at D*, the gradient of its divergence. With reparametrised samples x = G_theta(z),
grad_theta E_z[h(l(G_theta(z)))] = E_z[h'(l) (dl/dx) (dG/dtheta)]: the per-sample weight on the logit's
input gradient is h'(l) = -D for minimax (vanishes where D rejects the fakes: saturation), -1 for rkl,
-exp(l) = -D/(1-D) for kl (grows where D accepts them), -(1 + exp(l)) for skl.

The non-saturating loss ("vanilla" / "nonsaturating", in :mod:`methods.losses`) is -E_q[log D] =
E_q[softplus(-l)]. Since -log D = -l - log(1 - D), it equals L_G(rkl) - L_G(minimax), so at D* its
gradient is grad KL(q||p) - grad 2 JS(p||q) (Huszar 2016; Arjovsky & Bottou 2017), not that of one
f-divergence; its per-sample weight is -(1 - D).

exp(l) overflows float32 above l ~ 88 and makes huge gradients long before: "kl" and "skl" clamp the
logit at ``LOGIT_CLAMP`` = 20 (exp(20) ~ 4.9e8, a sample D already finds 4.9e8 times more likely real
than generated) inside the exponential; above it the term is constant and gives no gradient.

Multi-scale D outputs: as every :class:`methods.losses.PerScaleLoss`, the mean over scales.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from methods.losses import VanillaLoss

#: the largest logit fed to exp() by the forward-KL term ("kl", "skl")
LOGIT_CLAMP = 20.0


def reverse_kl_g(fake: torch.Tensor) -> torch.Tensor:
    """E_q[-l]: G's loss for KL(q || p) at D = D*."""
    return (-fake).mean()


def forward_kl_g(fake: torch.Tensor) -> torch.Tensor:
    """-E_q[exp(l)], the logit clamped at ``LOGIT_CLAMP``: G's loss for KL(p || q) at D = D*."""
    return -torch.exp(fake.clamp(max=LOGIT_CLAMP)).mean()


class MinimaxLoss(VanillaLoss):
    """The original saturating minimax GAN (Goodfellow et al. 2014): D as ``vanilla``; G minimises
    E_q[log(1 - D(fake))] = -E_q[softplus(l)] (2 JS(p||q) at D*; see the module docstring)."""

    name = "minimax"

    def g_term(self, fake: torch.Tensor) -> torch.Tensor:
        return -F.softplus(fake).mean()


class ReverseKLLoss(VanillaLoss):
    """D as ``vanilla``; G minimises E_q[-l] = E_q[log((1 - D)/D)] (Huszar 2016), KL(q || p) at D*."""

    name = "rkl"

    def g_term(self, fake: torch.Tensor) -> torch.Tensor:
        return reverse_kl_g(fake)


class ForwardKLLoss(VanillaLoss):
    """D as ``vanilla``; G minimises -E_q[exp(l)] = -E_q[D/(1 - D)] (f-GAN's KL conjugate), KL(p || q) at D*.
    The logit is clamped at ``LOGIT_CLAMP`` inside exp()."""

    name = "kl"

    def g_term(self, fake: torch.Tensor) -> torch.Tensor:
        return forward_kl_g(fake)


class SymmetricKLLoss(VanillaLoss):
    """D as ``vanilla``; G minimises the sum of the ``rkl`` and ``kl`` generator losses,
    E_q[-l] - E_q[exp(l)]: KL(p || q) + KL(q || p) at D* (the new-losses paper's SDKL objective)."""

    name = "skl"

    def g_term(self, fake: torch.Tensor) -> torch.Tensor:
        return reverse_kl_g(fake) + forward_kl_g(fake)
