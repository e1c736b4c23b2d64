"""SDKL: the symmetric KL between the encoder's and the decoder's joint distributions (papers.md D), with and
without a draw from p(x|z) (``sdkl`` / ``sdkl-nosample``).

The two joints over (image, latent) pairs:

    encoder  q(x, z) = p_data(x) q(z|x),   q(z|x) = N(mu(x), diag(sigma^2(x)))          (moved by E's weights)
    decoder  p(x, z) = p(z) p(x|z),        p(z) = N(0, I),  p(x|z) = N(Dec(z), s^2 I)   (moved by Dec's weights)

A joint discriminator D(x, z) (``elu-joint``) with logit l is trained by BCE with the encoder pairs
(x, z ~ q(z|x)) as the "real" class and the decoder pairs (x ~ p(x|z), z ~ p(z)) as the "generated" one (the
row's loss, default ``skl``, whose D loss is BCE). At its optimum D* = q / (q + p), so

    l* = log q(x, z) / p(x, z),    KL(q || p) = E_q[l*],    KL(p || q) = E_p[-l*],
    SKL = KL(q || p) + KL(p || q) = E_q[l*] - E_p[l*]                                    (logged as ``loss_G_skl``).

E and Dec minimise SKL through reparametrised samples (z = mu + sigma eps for the encoder pairs; x = Dec(z_p) +
s eps' for the decoder pairs) with D frozen. The plug-in E_q[l] - E_p[l] has the value of SKL but not its
gradient: l* depends on the weights too. With theta the weights, using int grad q = int grad p = 0,

    grad KL(q || p) = int grad q . l* + int q (grad q / q - grad p / p) = grad E_q[l] - grad E_p[exp(l)]
    grad KL(p || q) = -int grad p . l* + int p (grad p / p - grad q / q) = -grad E_p[l] - grad E_q[exp(-l)]

(l held fixed at l* on the right: D frozen), and q moves only with E, p only with Dec, so

    E minimises  E_q[l - exp(-l)]        = E_q[-(-l)] - E_q[exp(-l)]
    Dec minimises  E_p[-l - exp(l)]      = E_p[-l]    - E_p[exp(l)].

The decoder's loss is exactly the ``skl`` generator loss of :mod:`methods.fdiv_losses` (reverse-KL term
E[-l] plus forward-KL term -E[exp(l)]) on the decoder pairs, with p the generated side; the encoder's is the same
loss on the encoder pairs with the logit negated, -l = log p / q: the logit of the same D read with the classes
swapped (for BCE, sigmoid(-l) = 1 - D), so that q is the generated side. The adapter therefore applies the row's
generator loss twice, once per side (:meth:`SDKL.g_losses`): with ``loss = "rkl"`` it minimises the plug-in
E_q[l] - E_p[l] instead (E its KL(q || p) gradient only, Dec its KL(p || q) only), with ``vanilla`` it is a
symmetric non-saturating game (ALI / BiGAN-like). The derivation holds for a D trained by BCE (vanilla, minimax,
rkl, kl, skl); the exp() terms are clamped as in ``skl`` (``LOGIT_CLAMP``).

D sees a pair as one flat tensor, ``cat(x.flatten(1), z)`` (:func:`pack`), so the row's losses, regularisers
(gradient penalties interpolate whole pairs; orthogonal reads D's weights) and input noise apply unchanged.

"With sampling" (``sdkl``): the decoder's x is drawn from p(x|z) = N(Dec(z), s^2 I), s = ``sigma`` (0.1 on the
[-1, 1] scale: an assumption, the paper's value is lost). ``sdkl-nosample``: x = Dec(z), the mean of p(x|z). The
two differ in nothing else: same networks, same encoder pairs, same z; the decoder's x differs by s eps', eps'
from the stream "x" of ``TrainContext.generator``. The encoder's KL to the prior is no part of the loss; it is
logged as ``kl`` (Figure 1).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from bench.adversarial import descend, frozen
from bench.contracts import AdvTerms, DOutput, Slot, registry_ref
from bench.nets import check_options
from methods.newlosses import EncoderModel, NewLossOptions, decoder_slot, encoder_slot


@dataclass
class SDKLNoSampleOptions(NewLossOptions):
    loss: str = registry_ref("losses", "skl", "D: BCE; E and Dec: this generator loss per side (skl: SDKL)")


@dataclass
class SDKLOptions(SDKLNoSampleOptions):
    sigma: float = 0.1               # std of p(x|z) = N(Dec(z), sigma^2 I) on the [-1, 1] scale (assumption)

    def __post_init__(self) -> None:
        super().__post_init__()
        check_options(self, positive=("sigma",))


def pack(x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """An (image, latent) pair as D sees it: (N, C*H*W + z_dim)."""
    return torch.cat([x.flatten(1), z.to(x.dtype)], 1)


def negated(out: DOutput) -> DOutput:
    """D's output read with the classes swapped: every logit negated."""
    return DOutput([-t for t in out.logits], out.features, out.heads)


class SDKLNoSample(EncoderModel):
    """SDKL with the decoder pairs (Dec(z), z): the mean of p(x|z), no draw."""

    Options = SDKLNoSampleOptions
    slots = {"E": encoder_slot(), "Dec": decoder_slot(),
             "D": Slot("discriminators", "elu-joint", args=("in_channels", "z_dim"), provided=("image_size", "ndf"),
                       call=("y", "z"), doc="(image, latent) -> encoder pair / decoder pair")}
    sampled = False

    def unpack(self, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        c = self.task.y_channels
        n = v.shape[1] - self.options.z_dim
        side = math.isqrt(n // c)
        return v[:, :n].reshape(len(v), c, side, side), v[:, n:]

    def critic(self, v: torch.Tensor) -> DOutput:
        x, z = self.unpack(v)
        with self.ctx.autocast():
            return DOutput.wrap(self.D(x, z))

    def flipped(self, v: torch.Tensor) -> DOutput:
        return negated(self.critic(v))

    def pairs(self, x: torch.Tensor, step: int) -> dict[str, torch.Tensor]:
        """The encoder pairs (x, z ~ q(z|x)) and the decoder pairs (x ~ p(x|z) or Dec(z), z ~ N(0, I)), packed."""
        z_q, kl = self.encode(x, step)
        z_p = self.noise(step, "z", len(x), self.options.z_dim)
        x_p = self.decode(z_p).float()
        if self.sampled:
            x_p = x_p + self.options.sigma * self.noise(step, "x", *x_p.shape)
        return {"enc": pack(x, z_q), "dec": pack(x_p, z_p), "kl": kl}

    def side_losses(self, out: dict[str, torch.Tensor], step: int) -> tuple[AdvTerms, dict[str, torch.Tensor]]:
        """Each side's generator loss, not yet summed: ``dec`` (the row's generator loss on the decoder pairs,
        reaching Dec), ``enc`` (the same on the encoder pairs with the logit negated, reaching E) and ``skl``
        (the plug-in estimate E_q[l] - E_p[l]); and the terms the row's "g" regularisers see (p generated)."""
        enc, dec = self.adv.seen(step, out["enc"], out["dec"])
        d_enc, d_dec = self.critic(enc), self.critic(dec)
        t_dec = self.adv.terms(self.critic, enc, dec, d_enc, d_dec)                      # p generated
        t_enc = self.adv.terms(self.flipped, dec, enc, negated(d_dec), negated(d_enc))   # q generated
        skl = sum(a.float().mean() - b.float().mean() for a, b in zip(d_enc.logits, d_dec.logits)) / len(d_enc.logits)
        return t_dec, {"dec": self.loss.g_loss(t_dec), "enc": self.loss.g_loss(t_enc), "skl": skl}

    def g_losses(self, out: dict[str, torch.Tensor], step: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """E's and Dec's loss, one scalar (their weights are disjoint: each side's term reaches its own network),
        and the logs: ``loss_G_dec`` (Dec's side), ``loss_G_enc`` (E's side), ``loss_G_skl`` (the plug-in SKL)."""
        t_dec, parts = self.side_losses(out, step)
        return self.adv.g_loss(t_dec, base=parts["dec"] + parts["enc"], parts=parts)

    def train_step(self, batch: dict[str, torch.Tensor], step: int, update_g: bool) -> dict[str, torch.Tensor]:
        x = self.task.y(batch)
        with torch.set_grad_enabled(update_g):
            out = self.pairs(x, step)
        logs = {**self.d_update(out["enc"], out["dec"], step), "kl": out["kl"].detach()}
        if update_g:
            with frozen(self.D):
                loss, g_logs = self.g_losses(out, step)
                descend(loss, self.optimizers["E"], self.optimizers["Dec"])
            logs.update(g_logs)
        self._advance(update_g)
        return logs

    def eval_protocol(self) -> dict[str, Any]:
        return {**super().eval_protocol(), "prior_sample": "Dec(z), the mean of p(x|z)"}


class SDKL(SDKLNoSample):
    """SDKL with the decoder's x drawn from p(x|z) = N(Dec(z), sigma^2 I)."""

    Options = SDKLOptions
    sampled = True
