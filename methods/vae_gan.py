"""VAEs whose reconstruction distance is measured in a discriminator's features (papers.md D):
``vae-perceptual`` and ``vaegan`` (Larsen, Sonderby, Larochelle & Winther, ICML 2016).

Both encode x to q(z|x) = N(mu(x), diag(sigma^2(x))), decode z ~ q(z|x) (reparametrised) to x~ = Dec(z), and
measure the reconstruction not in pixels but in the features of D's layer l (``feature_layer``): Larsen's
Dis_l, the Gaussian negative log-likelihood of D's features of x under a unit-variance Gaussian centred on D's
features of x~, constants dropped,

    Dis_l(x, x~) = 0.5 || D_l(x) - D_l(x~) ||^2     (summed over the layer's elements, averaged over the batch),

so that KL + Dis_l is the negative ELBO of a VAE whose likelihood lives in feature space. D is trained
adversarially by the row's loss (default ``vanilla``: BCE), real images against a "generated" batch that holds
reconstructions and prior samples Dec(z_p), z_p ~ N(0, I): the first ``B - n`` samples of the batch are
reconstructions (of the first real images), the last ``n = round(prior_share * B)`` prior samples. D thus
learns against the mixture 0.5 q_rec + 0.5 p_prior (``prior_share`` = 0.5); Larsen sums the two fake terms of
BCE instead, i.e. weighs the fake side twice (an assumption; a batch of B generated samples, as the real one,
lets every loss and regulariser, e.g. a gradient penalty, pair them).

- ``vae-perceptual``: E and Dec minimise KL(q(z|x) || N(0, I)) + ``lambda_rec`` Dis_l, with D frozen; no
  adversarial term in their loss, so the only gradient D sends them is the feature distance's. D is trained
  only so that its features are learned.
- ``vaegan`` (Larsen et al.'s Algorithm 1): with D frozen, E minimises KL + ``lambda_rec`` Dis_l; Dec minimises
  ``gamma`` Dis_l + the row's generator loss on the generated batch (reconstructions and prior samples). The two
  losses come from one forward pass; E's parameters step on E's loss only and Dec's on Dec's only
  (:func:`methods.newlosses.descend_split`), so the GAN term never reaches E (its gradient through z is
  discarded, as in Larsen's algorithm) and E's KL never reaches Dec.

Assumptions (the paper's values are lost): ``lambda_rec`` = 1 (the ELBO's own weight); ``feature_layer`` = 2,
the third ELU block of ``elu-noisy`` (Larsen: D's third of four convs; at 32 px it is D's last block, 4 ``ndf``
x 4 x 4); D's features are read in training mode (its Gaussian noise on, as D sees every sample in training:
the noise adds a constant to the expected distance and zero-mean noise to its gradient); ``gamma`` = 1e-3:
Larsen's 1e-6 weighs their feature sum at 64x64; ours sums 4 ``ndf`` x 16 elements at 32 px, and on MNIST at
32 px, ndf 64, Dis_l falls from ~2.7e3 to ~1.2e3 over the first 10 steps, so 1e-3 puts gamma Dis_l (1 to 3) at
the order of the GAN term (~1) (at ndf 16, Dis_l ~ 3e2 to 5e2: gamma Dis_l ~ 0.3 to 0.5; Dis_l grows with
the layer's size, so gamma is tied to ``ndf`` and ``feature_layer``). Input regularisers of the row (instance
noise) apply to every image D sees, the ones whose features are compared included.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from bench.adversarial import descend, frozen
from bench.contracts import DOutput, registry_ref
from bench.errors import ConfigError
from bench.nets import check_options
from methods.newlosses import EncoderModel, NewLossOptions, descend_split


@dataclass
class VAEOptions(NewLossOptions):
    loss: str = registry_ref("losses", "vanilla", "the row's adversarial loss (D: BCE; VAEGAN's Dec: non-saturating)")
    lambda_rec: float = 1.0          # weight of Dis_l in E's (and vae-perceptual's Dec's) loss: the ELBO's own
    feature_layer: int = 2           # which of D's feature maps Dis_l reads (Larsen: the third conv)
    prior_share: float = 0.5         # share of D's generated batch drawn from the prior (the rest: reconstructions)

    def __post_init__(self) -> None:
        super().__post_init__()
        check_options(self, non_negative=("lambda_rec",), unit=("prior_share",))


@dataclass
class VAEGANOptions(VAEOptions):
    gamma: float = 1e-3              # weight of Dis_l in Dec's loss (Larsen: 1e-6 at their scale; see the docstring)

    def __post_init__(self) -> None:
        super().__post_init__()
        check_options(self, non_negative=("gamma",))


def feature_distance(a: DOutput, b: DOutput, layer: int) -> torch.Tensor:
    """Dis_l: 0.5 || a_l - b_l ||^2 summed over the layer's elements, averaged over the batch (scale 0's features)."""
    feats_a, feats_b = (a.features[0] if a.features else []), (b.features[0] if b.features else [])
    if not -len(feats_a) <= layer < len(feats_a):
        raise ConfigError(f"feature_layer {layer} is not one of the discriminator's {len(feats_a)} feature maps; "
                          "a VAE with a learned distance needs a D that returns features (e.g. elu-noisy)")
    fa, fb = feats_a[layer].float(), feats_b[layer].float()
    return 0.5 * (fa - fb).pow(2).flatten(1).sum(1).mean()


class VAEPerceptual(EncoderModel):
    """VAE with D's features as its reconstruction space; D trained adversarially, no GAN term in E / Dec."""

    Options = VAEOptions

    def forward(self, x: torch.Tensor, step: int) -> dict[str, torch.Tensor]:
        """z ~ q(z|x), KL, the reconstructions and D's generated batch (reconstructions, then prior samples)."""
        b = len(x)
        n = int(round(self.options.prior_share * b))
        z, kl = self.encode(x, step)
        z_p = self.noise(step, "z", n, self.options.z_dim)
        out = self.decode(torch.cat([z, z_p.to(z.dtype)]))
        rec, prior = out[:b], out[b:]
        return {"z": z, "kl": kl, "rec": rec, "fake": torch.cat([rec[:b - n], prior])}

    def d_step(self, x: torch.Tensor, out: dict[str, torch.Tensor], step: int) -> dict[str, torch.Tensor]:
        return self.d_update(x, out["fake"], step)

    def distance(self, x: torch.Tensor, rec: torch.Tensor, step: int
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, DOutput, DOutput]:
        """Dis_l between x and its reconstruction as D sees them, with those views and D's outputs on them."""
        x_s, rec_s = self.adv.seen(step, x, rec)
        d_x, d_rec = self.critic(x_s), self.critic(rec_s)
        return feature_distance(d_x, d_rec, self.options.feature_layer), x_s, rec_s, d_x, d_rec

    def g_losses(self, x: torch.Tensor, out: dict[str, torch.Tensor], step: int
                 ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """E's and Dec's loss (one here: KL + lambda_rec Dis_l, plus the row's "g" regularisers) and the logs."""
        dis, x_s, rec_s, d_x, d_rec = self.distance(x, out["rec"], step)
        own = out["kl"] + self.options.lambda_rec * dis
        loss, logs = self.adv.g_loss(self.adv.terms(self.critic, x_s, rec_s, d_x, d_rec), base=own,
                                     parts={"kl": out["kl"], "dis_l": dis})
        return {"E": loss, "Dec": loss}, logs

    def g_step(self, losses: dict[str, torch.Tensor]) -> None:
        descend(losses["E"], self.optimizers["E"], self.optimizers["Dec"])

    def train_step(self, batch: dict[str, torch.Tensor], step: int, update_g: bool) -> dict[str, torch.Tensor]:
        x = self.task.y(batch)
        with torch.set_grad_enabled(update_g):
            out = self.forward(x, step)
        logs = {**self.d_step(x, out, step), "kl": out["kl"].detach()}
        if update_g:
            with frozen(self.D):
                losses, g_logs = self.g_losses(x, out, step)
                self.g_step(losses)
            logs.update(g_logs)
        self._advance(update_g)
        return logs


class VAEGAN(VAEPerceptual):
    """Larsen et al. 2016: E by KL + Dis_l, Dec by gamma Dis_l + GAN, D by the row's loss."""

    Options = VAEGANOptions

    def g_losses(self, x: torch.Tensor, out: dict[str, torch.Tensor], step: int
                 ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        o = self.options
        dis, x_s, _, d_x, _ = self.distance(x, out["rec"], step)
        (fake_s,) = self.adv.seen(step, out["fake"])
        t = self.adv.terms(self.critic, x_s, fake_s, d_x, self.critic(fake_s))
        loss_dec, logs = self.adv.g_loss(t, o.gamma * dis, parts={"dis_l": dis})
        loss_e = out["kl"] + o.lambda_rec * dis
        logs.update(loss_E=loss_e.detach(), loss_E_kl=out["kl"].detach(), loss_E_dis_l=dis.detach())
        return {"E": loss_e, "Dec": loss_dec}, logs

    def g_step(self, losses: dict[str, torch.Tensor]) -> None:
        descend_split((losses["E"], self.optimizers["E"]), (losses["Dec"], self.optimizers["Dec"]))
