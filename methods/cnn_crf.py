"""CNN-CRF baselines of the fusion-discriminator paper (Tables 2 and 3, rows "CNN-CRF Postprocess" and
"CNN-CRF Joint Training"; papers.md A, rows 7-8).

A per-pixel CNN (the registered generator, the U-Net by default) trained with the task loss alone, no
discriminator, followed by a fully connected CRF (:mod:`methods.crf`) whose bilateral kernel uses the
input photo x as the appearance feature:

- ``mode="postprocess"``: the CNN is trained alone; the CRF (fixed parameters) is applied in ``generate``.
- ``mode="joint"``: the CRF is unrolled in training (CRF-as-RNN, Zheng et al. 2015), the loss is taken on
  its output, and its kernel bandwidths, weights and compatibility matrix are learned.

Labels (``label_output="logits"`` required): unary logits = ``logit_scale * G(x)`` (the U-Net ends in
tanh, so its output is rescaled into logits; ``logit_scale`` is our choice), loss = cross-entropy on the
(CRF) log-marginals against ``batch["label"]`` with the dataset's ignore index; ``generate`` returns
``2 Q - 1`` (Q the CRF marginals), the y-space of one-hot targets, decoded by argmax.
Depth: unary = G(x) in y-space [-1, 1], continuous CRF, L1 in y-space on valid pixels (depth > 0,
or ``batch["valid"]``); ``generate`` returns the refined map in [-1, 1].

The paper gives no CRF details (an assumption throughout): kernels and bandwidths as in :mod:`methods.crf`
(pydensecrf's theta 80 / 13 / 3), 5 mean-field iterations, Adam lr 2e-4 with the paper's betas (0, 0.9).
Kernel weights default to 3 (bilateral) and 1 (spatial) for both tasks, not pydensecrf's 10 / 3: with
10 / 3 and a randomly initialised CNN, joint training of the labels task oscillated (whole regions
flipping between confident labels, loss jumping between ~0 and ~6 on a fixed batch), while 3 / 1 trained
smoothly; in joint mode the weights are learned from there. ``crf_filter="auto"`` filters
exactly over all pixel pairs up to ``exact_max_pixels`` (64 x 64) and with a ``window`` x ``window``
neighbourhood (every ``dilation`` pixels) above that.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from bench.adversarial import adam
from bench.contracts import ComponentArgs, MethodAdapter, Slot, TrainContext
from bench.errors import ConfigError
from bench.tasks import TaskSpec
from methods.crf import DenseCRF, GaussianCRF
from bench.nets import check_options, init_weights

log = logging.getLogger(__name__)

MODES: tuple[str, ...] = ("postprocess", "joint")
FILTERS: tuple[str, ...] = ("auto", "exact", "window")


class CNNCRF(MethodAdapter):

    @dataclass
    class Options:
        mode: str = "postprocess"          # "postprocess" | "joint"
        crf_iterations: int = 5
        crf_filter: str = "auto"           # "auto" | "exact" | "window"
        window: int = 11                   # odd; neighbourhood side for the window filter
        dilation: int = 2                  # window sampling step in pixels
        exact_max_pixels: int = 4096       # "auto": exact filtering up to this many pixels (64 x 64)
        theta_alpha: float = 80.0          # bilateral: position bandwidth (pixels)
        theta_beta: float = 13.0           # bilateral: colour bandwidth (8-bit units)
        theta_gamma: float = 3.0           # spatial bandwidth (pixels)
        w_bilateral: float = 3.0           # bilateral kernel weight (initial value in joint mode)
        w_spatial: float = 1.0             # spatial kernel weight
        normalization: str = "symmetric"   # "symmetric" | "row" | "none"
        logit_scale: float = 10.0          # labels: unary logits = logit_scale * G(x)
        mask_invalid_depth: bool = True    # depth: L1 only where depth > 0
        lr: float = 2e-4
        crf_lr: float | None = None        # None: same as lr (joint mode)
        beta1: float = 0.0
        beta2: float = 0.9
        ngf: int = 64
        g_spectral_norm: bool = False
        dropout: float = 0.5
        init_gain: float = 0.02
        eval_mode: bool = True             # G in eval() for generate()

        def __post_init__(self) -> None:
            check_options(self, positive=("lr", "logit_scale", "init_gain"), at_least_one=("crf_iterations", "ngf"),
                          unit=("beta1", "beta2", "dropout"))
            if self.mode not in MODES:
                raise ConfigError(f"cnn-crf mode must be one of: {', '.join(MODES)}; got '{self.mode}'")
            if self.crf_filter not in FILTERS:
                raise ConfigError(f"cnn-crf crf_filter must be one of: {', '.join(FILTERS)}; "
                                  f"got '{self.crf_filter}'")

    ema_modules = ("G", "CRF")             # the CRF is the last stage of the generator (bench/ema.py)
    slots = {"G": Slot("generators", "unet", args=("in_channels", "out_channels"),
                       provided=("image_size", "ngf", "spectral_norm", "dropout"), call=("x",),
                       doc="the per-pixel CNN")}

    @classmethod
    def component_args(cls, slot: str, o: "CNNCRF.Options", task: TaskSpec, image_size: int) -> ComponentArgs:
        return ComponentArgs((task.x_channels, task.y_channels),
                             dict(image_size=image_size, ngf=o.ngf, spectral_norm=o.g_spectral_norm,
                                  dropout=o.dropout))

    @classmethod
    def init_component(cls, slot: str, module: torch.nn.Module, o: "CNNCRF.Options") -> None:
        init_weights(module, o.init_gain)

    def __init__(self, options: "CNNCRF.Options", task: TaskSpec, ctx: TrainContext,
                 components: dict[str, torch.nn.Module]):
        super().__init__(options, task, ctx, components)
        o = options
        image_size = ctx.image_size
        if task.output == "labels":
            if task.label_output != "logits":
                raise ConfigError("cnn-crf on a labels task needs per-class logits: set label_output = 'logits' "
                                  "on the row")
        elif task.output != "depth":
            raise ConfigError(f"cnn-crf predicts labels or depth; task '{task.name}' has output '{task.output}'")
        self.is_labels = task.output == "labels"
        self.G = components["G"]

        exact = o.crf_filter == "exact" or (o.crf_filter == "auto" and image_size * image_size <= o.exact_max_pixels)
        kw: dict[str, Any] = dict(iterations=o.crf_iterations, theta_alpha=o.theta_alpha, theta_beta=o.theta_beta,
                                  theta_gamma=o.theta_gamma, window=None if exact else o.window,
                                  dilation=o.dilation, normalization=o.normalization,
                                  w_bilateral=o.w_bilateral, w_spatial=o.w_spatial, learnable=o.mode == "joint")
        crf = DenseCRF(task.y_channels, **kw) if self.is_labels else GaussianCRF(**kw)
        self.crf = crf.to(ctx.device)
        log.info("cnn-crf (%s): %s CRF, %s filtering", o.mode, "dense" if self.is_labels else "Gaussian",
                 "exact" if exact else f"{o.window}x{o.window} window, dilation {o.dilation}")

        self.modules = {"G": self.G, "CRF": self.crf}
        betas = (o.beta1, o.beta2)
        self.optimizers = {"G": adam(self.G.parameters(), lr=o.lr, betas=betas)}
        if o.mode == "joint":
            crf_lr = o.lr if o.crf_lr is None else o.crf_lr
            self.optimizers["CRF"] = adam(self.crf.parameters(), lr=crf_lr, betas=betas)

    # -- the two steps --------------------------------------------------------------------------------------

    def _refine(self, out: torch.Tensor, x: torch.Tensor, crf: bool) -> torch.Tensor:
        """Labels: log-marginals (B, C, H, W); depth: the prediction in y-space. ``crf`` applies the CRF."""
        if self.is_labels:
            logits = out.float() * self.options.logit_scale
            return self.crf.log_marginals(logits, x) if crf else logits.log_softmax(1)
        return self.crf(out.float(), x) if crf else out.float()

    def _loss(self, pred: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        if self.is_labels:
            label = batch["label"].long()
            if label.dim() == 4:
                label = label[:, 0]
            ignore = self.task.info.ignore_index
            nll = F.nll_loss(pred, label, ignore_index=ignore, reduction="sum")
            return nll / (label != ignore).sum().clamp_min(1)
        y = self.task.y(batch).float()
        err = (pred - y).abs()
        if not self.options.mask_invalid_depth:
            return err.mean()
        valid = batch.get("valid")
        valid = (batch["depth"] > 0) if valid is None else valid.bool()
        return (err * valid).sum() / valid.sum().clamp_min(1)

    def train_step(self, batch: dict[str, torch.Tensor], step: int, update_g: bool) -> dict[str, torch.Tensor]:
        if not update_g:
            return {}
        x = self.task.x(batch)
        with self.ctx.autocast():
            out = self.G(x)
        pred = self._refine(out, x, crf=self.options.mode == "joint")
        loss = self._loss(pred, batch)
        for opt in self.optimizers.values():
            opt.zero_grad(set_to_none=True)
        loss.backward()
        for opt in self.optimizers.values():
            opt.step()
        name = "loss_ce" if self.is_labels else "loss_l1"
        return {"loss_G": loss.detach(), name: loss.detach()}

    @torch.no_grad()
    def generate(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        self.G.train(not self.options.eval_mode)
        x = self.task.x(batch)
        with self.ctx.autocast():
            out = self.G(x)
        self.G.train(True)
        pred = self._refine(out, x, crf=True)
        if self.is_labels:
            return pred.exp() * 2 - 1
        return pred.clamp(-1, 1)

    def eval_protocol(self) -> dict[str, Any]:
        return {"generator_eval_mode": bool(self.options.eval_mode), "crf": self.options.mode}
