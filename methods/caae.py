"""CAAE in the decoupled-learning comparison (Zhang, Song & Qi, WACV 2018, Table 5; papers.md section C).

CAAE (Zhang, Song & Qi, CVPR 2017, "Age Progression/Regression by Conditional Adversarial Autoencoder")
encodes a face, ``z = E(x)`` (tanh, 50 dims), and decodes ``[z, age code]`` back to the face at that age.
Two discriminators judge it: D on images, conditioned on the age group, and D_z on latents, which pushes
``E(x)`` toward the uniform prior U(-1, 1) (real = prior samples, fake = ``E(x)``). The decoupled-learning
paper compares CAAE's coupled form with its decoupled one, as for its own encoder-decoder:

- ``caae`` (ED+GAN): E and Dec are trained by ``lambda_rec * L1 + lambda_adv * image-adversarial +
  lambda_z * latent-adversarial (+ lambda_tv * total variation)``; output ``y = Dec(z, c)``.
- ``caae-par`` (ED//GAN): E and Dec by ``lambda_rec * L1 + lambda_z * latent-adversarial`` only; a
  generator G (Dec's architecture, own weights) reads the detached ``[z, code]`` and is trained by the
  image-adversarial loss only (``lambda_adv`` scales it, ``lambda_tv`` adds total variation on ``y``);
  output ``y = Dec(z, c).detach() + G(z, c)``, which D sees with the label. The gradient isolation is
  ED//GAN's (:mod:`methods.decoupled`): no adversarial image gradient reaches E or Dec, no L1 gradient G.
  Outputs ``y_rec`` | ``y_gan`` | ``y``.

D's loss is the row's adversarial loss on (photo, its label) against (output, the same label); D_z's the
same loss on prior samples against ``E(x)``; both step together before the generator side (frozen then).
Samples reconstruct each photo at its own age group (``FromBatch``).

Adaptations (listed in ``leaderboards/decoupled-table5.toml``):

- the label is a one-hot code in {-1, 1} (CAAE's values) of the task's class field (``age_bin``, CAAE's
  10 age groups); CAAE also conditions on gender, left out here;
- D sees the code tiled over the image as ``num_classes`` extra input channels (``conv-critic`` with
  ``in_channels = 3 + num_classes``); CAAE's code concatenates it after D's first conv;
- the decoder reads ``[z, code]`` once (CAAE tiles the age code 5 times and gender 25 times);
- the networks are the decoupled paper's Table 1 nets (``conv-encoder``, ``conv-decoder``, ``conv-critic``;
  CAAE's decoder adds two stride-1 deconvs, its image D is 16-32-64-128 + FC 1024); D_z is CAAE's
  (``mlp-critic``: 64-32-16, batch norm, ReLU);
- ``lambda_z`` defaults to 0, as both codes the paper's Table 5 comes from: CAAE's (``weigts=(0.0001, 0, 0)``:
  image-adversarial 1e-4, latent-adversarial 0, total variation 0) and the decoupled authors' CAAE adaptation
  (``Adapt_CAAE/ResLearn.py`` builds the encoder's latent-adversarial optimiser but never runs it). D_z still
  trains; set ``lambda_z > 0`` for the CAAE paper's written objective, where the prior reaches E.
- the authors' adaptation steps the residual generator G twice per batch; ``caae-par`` steps it once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from bench.contracts import AdvTerms, ComponentArgs, DOutput, Slot, TrainContext
from bench.errors import ConfigError
from bench.tasks import TaskSpec
from methods.decoupled import DecoupledOptions, EDGAN, EDParGAN
from bench.nets import check_options


@dataclass
class CAAEOptions(DecoupledOptions):
    """ED+GAN / ED//GAN options plus CAAE's latent-adversarial and total-variation weights."""

    lambda_adv: float = 1e-4          # caae: weight of the image-adversarial term (CAAE's code); caae-par: G's scale
    lambda_z: float = 0.0             # weight of the latent-adversarial term on E (0: both authors' codes)
    lambda_tv: float = 0.0            # total variation of the output y (CAAE's code: 0)
    norm: str = "none"                # in E, Dec (and G): CAAE's encoder and generator have no batch norm

    def __post_init__(self) -> None:
        super().__post_init__()
        check_options(self, non_negative=("lambda_z", "lambda_tv"))


def total_variation(img: torch.Tensor) -> torch.Tensor:
    """CAAE's total variation of images (N, C, H, W): (sum dy^2 / 2H + sum dx^2 / 2W) / N."""
    n, _, h, w = img.shape
    dy = img[:, :, 1:, :].float() - img[:, :, :-1, :].float()
    dx = img[:, :, :, 1:].float() - img[:, :, :, :-1].float()
    return (dy.pow(2).sum() / (2 * h) + dx.pow(2).sum() / (2 * w)) / n


def _decoder_slot(doc: str) -> Slot:
    return Slot("generators", "conv-decoder", args=("z_dim", "out_channels"), provided=("image_size", "width", "norm"),
                call=("z",), doc=doc + " (its z_dim: latent + num_classes)")


class CAAEMixin:
    """What CAAE adds to either decoupled form: the age code in the decoder and D, and the latent critic D_z."""

    Options = CAAEOptions
    d_groups = ("D", "D_z")
    ema_modules = ("E", "Dec", "G")
    slots = {
        "E": EDGAN.slots["E"],
        "Dec": _decoder_slot("[latent, age code] -> the face at that age"),
        "D": Slot("discriminators", "conv-critic", args=("in_channels",), provided=("image_size", "ndf", "norm"),
                  call=("y",), doc="face with the age code tiled as extra channels -> real / generated"),
        "D_z": Slot("discriminators", "mlp-critic", args=("in_features",), call=("z",),
                    doc="latent -> drawn from the uniform prior / encoded"),
    }

    @classmethod
    def component_args(cls, slot: str, o: CAAEOptions, task: TaskSpec, image_size: int) -> ComponentArgs:
        """The decoders read z_dim + num_classes inputs, D 3 + num_classes channels, D_z z_dim features."""
        k = task.info.num_classes
        if slot == "D":
            return ComponentArgs((task.y_channels + k,), dict(image_size=image_size, ndf=o.ndf, norm=o.d_norm))
        if slot == "D_z":
            return ComponentArgs((o.z_dim,))
        if slot in ("Dec", "G"):
            return ComponentArgs((o.z_dim + k, task.y_channels),
                                 dict(image_size=image_size, width=o.width, norm=o.norm))
        return super().component_args(slot, o, task, image_size)

    def __init__(self, options: CAAEOptions, task: TaskSpec, ctx: TrainContext, components: dict[str, nn.Module]):
        self.class_field = next((n for n, f in task.inputs.items() if f.kind == "class"), None)
        if self.class_field is None:
            raise ConfigError(f"task '{task.name}' has no class input; CAAE decodes at a class (e.g. task age2face)")
        self.num_classes = task.info.num_classes
        if self.num_classes < 2:
            raise ConfigError(f"CAAE needs class labels; dataset '{task.info.name}' has none")
        super().__init__(options, task, ctx, components)

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        """The decoupled form's groups plus D_z's."""
        return {**super().parameter_groups(), "D_z": list(self.modules["D_z"].parameters())}

    # -- the condition ------------------------------------------------------------------------------
    def condition(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The batch's class as CAAE's code: one-hot in {-1, 1}, (N, num_classes)."""
        labels = self.task.get(self.class_field, batch)
        return F.one_hot(labels, self.num_classes).float() * 2 - 1

    def decoder_input(self, z: torch.Tensor, c: torch.Tensor | None) -> torch.Tensor:
        """``[z, code]`` (N, z_dim + num_classes)."""
        return torch.cat([z, c.to(z.dtype)], 1)

    def critic(self, c: torch.Tensor | None) -> Callable[[torch.Tensor], DOutput]:
        """D on the image with the code tiled over it as extra channels (N, C + num_classes, H, W)."""
        def judge(v: torch.Tensor) -> DOutput:
            code = c.to(v.dtype)[:, :, None, None].expand(-1, -1, v.shape[-2], v.shape[-1])
            return self._critic(torch.cat([v, code], 1))
        return judge

    # -- the latent critic --------------------------------------------------------------------------
    def prior(self, step: int, n: int) -> torch.Tensor:
        """(n, z_dim) latents from CAAE's prior U(-1, 1): a pure function of (run seed, step)."""
        g = self.ctx.generator(step, "z_prior")
        return (torch.rand(n, self.options.z_dim, generator=g) * 2 - 1).to(self.ctx.device)

    def _critic_z(self, v: torch.Tensor) -> DOutput:
        with self.ctx.autocast():
            return DOutput.wrap(self.modules["D_z"](v))

    # -- the losses ---------------------------------------------------------------------------------
    def d_objective(self, out: dict[str, torch.Tensor], y: torch.Tensor, c: torch.Tensor | None, step: int
                    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """D's loss plus D_z's: prior samples (real) against the detached E(x) (fake)."""
        loss_d, logs = super().d_objective(out, y, c, step)
        z = out["z"].detach()
        prior = self.prior(step, len(z))
        loss_z = self.loss.d_loss(AdvTerms(self._critic_z, prior, z, self._critic_z(prior), self._critic_z(z)))
        return loss_d + loss_z, {**logs, "loss_D_z": loss_z.detach()}

    def g_objective(self, out: dict[str, torch.Tensor], y: torch.Tensor, c: torch.Tensor | None, step: int
                    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The decoupled form's loss plus lambda_z * latent-adversarial (on E) and lambda_tv * TV(y)."""
        o = self.options
        loss, parts = super().g_objective(out, y, c, step)
        z = out["z"]
        adv_z = self.loss.g_loss(AdvTerms(self._critic_z, self.prior(step, len(z)), z, None, self._critic_z(z)))
        loss, parts["z"] = loss + o.lambda_z * adv_z, adv_z
        if o.lambda_tv:
            tv = total_variation(out["y"])
            loss, parts["tv"] = loss + o.lambda_tv * tv, tv
        return loss, parts

    def eval_protocol(self) -> dict[str, Any]:
        """Eval mode; each photo decoded at its own class."""
        return {**super().eval_protocol(), "condition": "each photo's own class (age group)"}


class CAAE(CAAEMixin, EDGAN):
    """CAAE as ED+GAN: E and Dec by L1 + lambda_adv * image-adversarial + lambda_z * latent-adversarial."""


class CAAEPar(CAAEMixin, EDParGAN):
    """CAAE as ED//GAN: E/Dec by L1 (+ latent-adversarial), G by the image-adversarial loss; y = Dec + G."""

    slots = {**CAAEMixin.slots, "G": _decoder_slot("[latent, age code] -> residual added to the reconstruction")}
    outputs = EDParGAN.outputs
