"""One adversarial step for every method family, and the helpers adapters and plug-ins rely on.

Every adversarial adapter (pix2pix and its decoupled form, the class-conditional GANs, ED+GAN / ED//GAN and
CAAE, and outside plug-ins) trains with the same three moves, so that a row's ``loss`` and ``regularizers``
mean the same thing in every suite and "compare a new regulariser" works on each of them:

1. what D sees: ``step.seen(i, real, fake)`` applies the row's input regularisers (instance noise) to the
   samples D judges, in D's update and in G's;
2. D's update: ``loss, logs = step.d_loss(terms)`` is the row's adversarial loss on the terms (times
   ``d_loss_weight``; or the adapter's own objective, ``base``, e.g. AC-GAN's class terms) plus every "d"
   regulariser (gradient penalty, R1, R2, orthogonality of D), then ``descend(loss, opt_D)``;
3. G's update with D frozen (``with frozen(D):``): ``loss, logs = step.g_loss(terms, extra)`` is the row's
   generator loss (or ``base``) plus the adapter's own terms (``extra``: L1, reconstruction) plus every "g"
   regulariser (feature matching, orthogonality of G), then ``descend(loss, opt_G)``.

With no regulariser the arithmetic is the adapters' own from before this module (the committed results
re-derive bit for bit). ``frozen``, ``adam`` and the :class:`Regularizers` combiner are public here so a
plug-in adapter needs nothing from ``methods/``.
"""

from __future__ import annotations

import contextlib
from typing import Callable, Iterable, Iterator, Mapping

import torch
from torch import nn

from bench.contracts import REGULARIZER_SIDES, AdversarialLoss, AdvTerms, DOutput, TrainContext
from bench.errors import PluginError
from bench.registry import LOSSES, REGULARIZERS

Logs = dict[str, torch.Tensor]


@contextlib.contextmanager
def frozen(*modules: nn.Module) -> Iterator[None]:
    """The modules' parameters need no gradient inside the block (restored after it).

    Used around G's update: the adversarial loss goes through D, but only G steps, so autograd can skip
    D's weight gradients (a third of D's backward) while the gradients still flow through D to G; the
    reference pix2pix does the same (``set_requires_grad(netD, False)``). Values are unchanged: D's
    gradients from G's step were discarded by D's next ``zero_grad``.
    """
    params = [p for m in modules for p in m.parameters() if p.requires_grad]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in params:
            p.requires_grad_(True)


def adam(params: Iterable[torch.nn.Parameter], *, lr: float, betas: tuple[float, float]) -> torch.optim.Adam:
    """``torch.optim.Adam`` (same update rule and defaults), fused: one pass over each parameter instead of
    about ten. On 2 CPU cores the Adam step of pix2pix's U-Net (54M parameters) takes 44 ms fused against
    244 ms with the per-parameter loop (``tests/benchmarks/test_bench_optim.py``). Falls back to torch's
    default where the device or the torch version has no fused Adam (e.g. MPS on older releases)."""
    params = list(params)
    try:
        return torch.optim.Adam(params, lr=lr, betas=betas, fused=True)
    except (RuntimeError, TypeError, ValueError):
        return torch.optim.Adam(params, lr=lr, betas=betas)


def pair_optimizers(G: nn.Module, D: nn.Module, options) -> dict[str, torch.optim.Adam]:
    """``{"G": adam(G), "D": adam(D)}`` from an adapter's options ``lr_g``, ``lr_d``, ``beta1``, ``beta2`` (the
    two-player setting of most adapters)."""
    betas = (options.beta1, options.beta2)
    return {"G": adam(G.parameters(), lr=options.lr_g, betas=betas),
            "D": adam(D.parameters(), lr=options.lr_d, betas=betas)}


def two_player(adapter, components: Mapping[str, nn.Module], options, ctx: TrainContext) -> None:
    """The usual one-G one-D setup of ``adapter``: ``G``, ``D``, ``modules``, ``d_steps_per_g`` (option
    ``d_steps``, else 1), ``adv`` (the row's ``loss`` and ``regularizers``), ``loss`` and ``optimizers``
    (:func:`pair_optimizers`)."""
    adapter.G, adapter.D = components["G"], components["D"]
    adapter.modules = {"G": adapter.G, "D": adapter.D}
    adapter.d_steps_per_g = getattr(options, "d_steps", 1)
    adapter.adv = AdversarialStep(LOSSES.get(options.loss)(), options.regularizers, ctx, adapter.modules)
    adapter.loss = adapter.adv.loss
    adapter.optimizers = pair_optimizers(adapter.G, adapter.D, options)


def descend(loss: torch.Tensor, *optimizers: torch.optim.Optimizer) -> None:
    """One gradient step of ``loss`` for every optimiser given (their gradients cleared first)."""
    for opt in optimizers:
        opt.zero_grad(set_to_none=True)
    loss.backward()
    for opt in optimizers:
        opt.step()


class Regularizers:
    """The weighted regularisers of one row: ``d(terms)`` / ``g(terms)`` -> (total or None, {name: value}),
    ``perturb(v, progress)`` for the ones that change what D sees."""

    def __init__(self, weights: Mapping[str, float]):
        self.terms = []
        for name, w in weights.items():
            if not w:
                continue
            reg = REGULARIZERS.get(name)()
            side = getattr(reg, "applies_to", None)
            if side not in REGULARIZER_SIDES:
                raise PluginError(f"regulariser '{name}' applies to {side!r}; set its applies_to to one of "
                                  f"{', '.join(REGULARIZER_SIDES)}")
            self.terms.append((name, float(w), reg))

    def __bool__(self) -> bool:
        return bool(self.terms)

    def _apply(self, side: str, t: AdvTerms) -> tuple[torch.Tensor | None, Logs]:
        total, parts = None, {}
        for name, w, reg in self.terms:
            if reg.applies_to != side:
                continue
            v = reg(t)
            parts[name] = v.detach()
            total = w * v if total is None else total + w * v
        return total, parts

    def d(self, t: AdvTerms) -> tuple[torch.Tensor | None, Logs]:
        return self._apply("d", t)

    def g(self, t: AdvTerms) -> tuple[torch.Tensor | None, Logs]:
        return self._apply("g", t)

    def perturb(self, v: torch.Tensor, progress: float) -> torch.Tensor:
        """``v`` as D sees it: every "input" regulariser applied in the row's order (``v`` itself if none)."""
        for _, w, reg in self.terms:
            if reg.applies_to == "input":
                v = reg.perturb(v, w, progress)
        return v


class AdversarialStep:
    """The row's adversarial loss and regularisers, applied the same way by every adapter (module docstring).

    ``modules``: the adapter's networks by slot; "d" and "g" regularisers that read weights find them in
    ``AdvTerms.modules`` (``step.terms`` fills it). ``d_loss_weight`` scales the row's D loss (pix2pix halves
    it); it does not scale an adapter's own ``base`` objective nor the regularisers.
    """

    def __init__(self, loss: AdversarialLoss, regularizers: Mapping[str, float] | Regularizers, ctx: TrainContext,
                 modules: Mapping[str, nn.Module], *, d_loss_weight: float = 1.0):
        self.loss = loss
        self.regs = regularizers if isinstance(regularizers, Regularizers) else Regularizers(regularizers)
        self.ctx, self.modules, self.d_loss_weight = ctx, modules, d_loss_weight

    def seen(self, step: int, *samples: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The samples as D sees them at training step ``step`` (instance noise and the like; unchanged if the row
        has no input regulariser, and then no random number is drawn)."""
        if not any(reg.applies_to == "input" for _, _, reg in self.regs.terms):
            return samples
        p = self.ctx.progress(step)
        return tuple(self.regs.perturb(v, p) for v in samples)

    def terms(self, critic: Callable[[torch.Tensor], DOutput], real: torch.Tensor, fake: torch.Tensor,
              d_real: DOutput | None = None, d_fake: DOutput | None = None, **extra) -> AdvTerms:
        """:class:`AdvTerms` carrying the adapter's modules (for weight regularisers)."""
        return AdvTerms(critic, real, fake, d_real, d_fake, modules=self.modules, **extra)

    def regularise(self, side: str, t: AdvTerms, loss: torch.Tensor) -> tuple[torch.Tensor, Logs]:
        """``loss`` plus every regulariser of ``side`` ("d" or "g") on ``t``, and their values by name."""
        reg, parts = self.regs.d(t) if side == "d" else self.regs.g(t)
        return (loss if reg is None else loss + reg), parts

    def d_loss(self, t: AdvTerms, base: torch.Tensor | None = None) -> tuple[torch.Tensor, Logs]:
        """D's loss: ``base`` (default: the row's loss times ``d_loss_weight``) plus every "d" regulariser; logs
        ``loss_D`` and ``loss_D_<regulariser>`` (an adapter with parts of its own adds them to the logs)."""
        loss = self.loss.d_loss(t) * self.d_loss_weight if base is None else base
        loss, parts = self.regularise("d", t, loss)
        return loss, self.d_logs(loss, parts)

    def d_logs(self, loss: torch.Tensor, parts: Mapping[str, torch.Tensor] | None = None) -> Logs:
        return {"loss_D": loss.detach(), **{f"loss_D_{k}": v.detach() for k, v in (parts or {}).items()}}

    def g_loss(self, t: AdvTerms, extra: torch.Tensor | None = None, base: torch.Tensor | None = None,
               parts: Mapping[str, torch.Tensor] | None = None) -> tuple[torch.Tensor, Logs]:
        """G's loss: ``base`` (default: the row's generator loss) plus ``extra`` (the adapter's own terms) plus
        every "g" regulariser; logs ``loss_G``, ``loss_G_gan`` (the row's adversarial term; with ``base``, the
        adapter logs its own parts instead), ``loss_G_<part>`` for the adapter's ``parts`` and
        ``loss_G_<regulariser>``."""
        adv = self.loss.g_loss(t) if base is None else base
        loss, regs = self.regularise("g", t, adv if extra is None else adv + extra)
        own = {"gan": adv} if base is None else {}
        logs = {"loss_G": loss.detach(), **{f"loss_G_{k}": v.detach() for k, v in {**own, **(parts or {})}.items()}}
        return loss, {**logs, **{f"loss_G_{k}": v for k, v in regs.items()}}
