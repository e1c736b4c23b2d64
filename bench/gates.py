"""What every scorer sees, and the sanity gates a run's outputs pass before its numbers count as a result.

**One output domain.** A model's output is scored as a saved file of it would hold it
(:func:`saved_form`): images and colour label maps clamped to [-1, 1] and quantised to 8 bits (as a PNG:
``round((x + 1) * 127.5)``), depth maps clamped and quantised to 16 bits (a 16-bit PNG), back in model
space. Label logits, masks and points are scored as they are. The rule is stamped on every protocol
(:data:`DOMAIN`), so a reconstruction metric, FID and NRDS all judge the same pixels.

**Non-finite outputs** fail the run (:func:`check_finite`): a model that outputs NaN or inf on a test input
is not a result, whatever a metric would make of it.

**Degenerate outputs** are marked, not scored as results (:class:`OutputGate`, over the whole test split,
per output a scorer reads; model rows only):

- *constant*: the outputs hardly vary across the test inputs: the spread (root mean square over positions
  of the standard deviation across inputs) is below ``SPREAD_MIN`` (1%) of the real targets' spread;
- *collapsed*: the mean pairwise L2 distance between the outputs for the first ``PAIRWISE_N`` test inputs
  (each output area-resized to at most ``PAIRWISE_SIDE`` px) is below ``PAIRWISE_MIN`` (10%) of the same
  for their real targets.

The gate's measurements are written as ordinary result records, ``gate.spread_ratio@<output>``,
``gate.pairwise_ratio@<output>`` and ``gate.degenerate@<output>`` (1 or 0), under a protocol that names the
thresholds; a run's numbers stay in the store, and the leaderboard marks the cells of a degenerate run and
calls a claim that needs it *untestable*.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

from bench.errors import MetricError

PREFIX = "gate."
SPREAD_MIN = 0.01
PAIRWISE_MIN = 0.10
PAIRWISE_N = 256
PAIRWISE_SIDE = 32
DOMAIN = ("image and colour-label outputs clamped to [-1, 1] and quantised to 8 bits (round((x + 1) * 127.5), "
          "as a saved PNG); depth clamped and quantised to 16 bits; label logits, masks and points as output")


def saved_form(pred: torch.Tensor, kind: str, label_output: str = "rgb") -> torch.Tensor:
    """``pred`` as a saved file of it would hold it, in model space (see the module docstring)."""
    if not pred.is_floating_point():
        return pred
    if kind == "image" or (kind == "labels" and label_output == "rgb"):
        return (pred.float().clamp(-1, 1).add(1).mul(127.5).round_().div_(127.5).sub_(1)).to(pred.dtype)
    if kind == "depth":
        return (pred.float().clamp(-1, 1).add(1).mul(32767.5).round_().div_(32767.5).sub_(1)).to(pred.dtype)
    return pred


def check_finite(name: str, pred: Any, where: str) -> None:
    """Raise a one-line :class:`MetricError` when output ``name`` holds NaN or inf."""
    if isinstance(pred, torch.Tensor) and pred.is_floating_point() and not bool(torch.isfinite(pred).all()):
        bad = int((~torch.isfinite(pred)).sum())
        raise MetricError(f"output '{name}' holds {bad} NaN/inf values at {where}: a non-finite model is not scored "
                          "(check the generator's last layer and its training losses)")


def protocol() -> dict[str, Any]:
    return {"metric": "gate", "domain": DOMAIN,
            "constant": f"spread (RMS over positions of the std across test inputs) < {SPREAD_MIN} x the real "
                        "targets' spread",
            "collapsed": f"mean pairwise L2 distance of the first {PAIRWISE_N} outputs (area-resized to at most "
                         f"{PAIRWISE_SIDE} px) < {PAIRWISE_MIN} x the real targets'"}


def _small(x: torch.Tensor) -> torch.Tensor:
    x = x.detach().float().cpu()
    if x.dim() == 4 and max(x.shape[-2:]) > PAIRWISE_SIDE:
        h, w = x.shape[-2:]
        s = PAIRWISE_SIDE / max(h, w)
        x = F.interpolate(x, size=(max(1, round(h * s)), max(1, round(w * s))), mode="area")
    return x.reshape(len(x), -1)


class _Spread:
    """Streaming per-position mean and variance across samples (Chan et al.'s parallel update)."""

    def __init__(self) -> None:
        self.n, self.mean, self.m2 = 0, None, None

    def update(self, x: torch.Tensor) -> None:
        x = x.detach().double().cpu().reshape(len(x), -1)
        nb, mb = len(x), x.mean(0)
        m2b = ((x - mb) ** 2).sum(0)
        if self.mean is None:
            self.n, self.mean, self.m2 = nb, mb, m2b
            return
        n = self.n + nb
        delta = mb - self.mean
        self.mean = self.mean + delta * nb / n
        self.m2 = self.m2 + m2b + delta ** 2 * self.n * nb / n
        self.n = n

    def value(self) -> float:
        if self.n < 2:
            return math.nan
        return float((self.m2 / (self.n - 1)).mean().sqrt())


def _mean_pairwise(x: torch.Tensor) -> float:
    if len(x) < 2:
        return math.nan
    d = torch.cdist(x.double(), x.double())
    n = len(x)
    return float(d.sum() / (n * (n - 1)))


class OutputGate:
    """The constant / collapsed checks of one output over the test split."""

    def __init__(self, output: str) -> None:
        self.output = output
        self._spread = (_Spread(), _Spread())                 # outputs, real targets
        self._first: tuple[list[torch.Tensor], list[torch.Tensor]] = ([], [])
        self._kept = 0

    def update(self, pred: torch.Tensor, real: torch.Tensor | None) -> None:
        if real is None or not pred.is_floating_point() or real.shape[1:] != pred.shape[1:]:
            return
        self._spread[0].update(pred)
        self._spread[1].update(real)
        if self._kept < PAIRWISE_N:
            take = PAIRWISE_N - self._kept
            self._first[0].append(_small(pred[:take]))
            self._first[1].append(_small(real[:take].to(pred.dtype)))
            self._kept += min(take, len(pred))

    def compute(self) -> dict[str, float]:
        """``spread_ratio``, ``pairwise_ratio`` and ``degenerate`` (1.0 / 0.0); empty when nothing was seen or
        the real targets do not vary (no reference to judge against)."""
        s_out, s_real = (s.value() for s in self._spread)
        if math.isnan(s_out) or not s_real:
            return {}
        p_out, p_real = (_mean_pairwise(torch.cat(f)) for f in self._first)
        spread_ratio = s_out / s_real
        pair_ratio = p_out / p_real if p_real else math.nan
        bad = spread_ratio < SPREAD_MIN or (not math.isnan(pair_ratio) and pair_ratio < PAIRWISE_MIN)
        out = {"spread_ratio": spread_ratio, "degenerate": 1.0 if bad else 0.0}
        if not math.isnan(pair_ratio):
            out["pairwise_ratio"] = pair_ratio
        return out

    def keys(self, values: dict[str, float]) -> dict[str, float]:
        """The record keys of ``values``: ``gate.<name>@<output>``."""
        return {f"{PREFIX}{k}@{self.output}": v for k, v in values.items()}


def reason(values: dict[str, float]) -> str:
    """Why a gate's values say degenerate (empty when they do not)."""
    if not values.get("degenerate"):
        return ""
    spread = values.get("spread_ratio", math.nan)
    if spread < SPREAD_MIN:
        return f"constant output (spread {_pct(spread)} of the real data's)"
    return f"collapsed output (pairwise distance {_pct(values.get('pairwise_ratio', math.nan))} of the real data's)"


def _pct(x: float) -> str:
    """A share as a percentage to two significant digits (0.0012%, 3.8%, 0%)."""
    return f"{100 * x:.2g}%"


def summary(flagged: list[dict[str, float]], seeds: int) -> str:
    """One reason for a cell from its flagged seeds' gate values, e.g. "constant output in 3 of 3 seed(s)
    (spread at most 0.01% of the real data's)"."""
    const = [v.get("spread_ratio", math.nan) for v in flagged if v.get("spread_ratio", math.nan) < SPREAD_MIN]
    coll = [v.get("pairwise_ratio", math.nan) for v in flagged if not v.get("spread_ratio", math.nan) < SPREAD_MIN]
    parts = []
    if const:
        parts.append(f"constant output in {len(const)} of {seeds} seed(s) (spread at most {_pct(max(const))} of the "
                     "real data's)")
    if coll:
        parts.append(f"collapsed output in {len(coll)} of {seeds} seed(s) (pairwise distance at most "
                     f"{_pct(max(coll))} of the real data's)")
    return "; ".join(parts)


def split_key(metric: str) -> tuple[str, str, str] | None:
    """``gate.<name>@<output>[eN]`` -> (name, output, epoch suffix), None for other metrics."""
    if not metric.startswith(PREFIX):
        return None
    body, _, rest = metric[len(PREFIX):].partition("@")
    output, br, epoch = rest.partition("[")
    return body, output, (br + epoch)


# --- a discriminator that cannot judge ------------------------------------------------------------

def _tensor_args(values: Any) -> list[torch.Tensor]:
    if isinstance(values, torch.Tensor):
        return [values]
    if isinstance(values, (list, tuple)):
        return [t for v in values for t in _tensor_args(v)]
    if isinstance(values, dict):
        return [t for v in values.values() for t in _tensor_args(v)]
    return []


def _reaches(outputs: list[torch.Tensor], inputs: list[torch.Tensor]) -> bool:
    """Whether the autograd graph behind ``outputs`` holds any of ``inputs`` (no backward pass: a walk over the
    graph, which stops at the first input it meets)."""
    nodes = {id(t.grad_fn) for t in inputs if t.grad_fn is not None}
    leaves = {id(t) for t in inputs if t.grad_fn is None}
    stack = [o.grad_fn for o in outputs if o.grad_fn is not None]
    seen: set[int] = set()
    while stack:
        fn = stack.pop()
        if fn is None or id(fn) in seen:
            continue
        seen.add(id(fn))
        if id(fn) in nodes or id(getattr(fn, "variable", None)) in leaves:
            return True
        stack.extend(n for n, _ in fn.next_functions)
    return False


def check_discriminator_call(name: str, module: torch.nn.Module, args: Any, output: Any) -> None:
    """Raise a one-line :class:`PluginError` when a discriminator's logits cannot tell its inputs apart: a constant
    (with gradients on, the logits depend neither on its weights nor on its input) or an output that does not
    depend on the sample it judges (given an input that carries gradients, as the generator's samples do, no
    path leads from the logits back to it). Either way training would run to the end and teach the generator
    nothing. A cheap check (a walk over the graph of one call), not a proof: ``0 * input`` passes it."""
    from bench.contracts import DOutput
    from bench.errors import PluginError
    if not torch.is_grad_enabled():
        return
    try:
        logits = [t for t in DOutput.wrap(output).logits if t.is_floating_point()]
    except Exception:  # noqa: BLE001 - a malformed output is the adapter's to report, with its own message
        return
    inputs = [t for t in _tensor_args(args) if t.is_floating_point() and t.requires_grad]
    trains = any(p.requires_grad for p in module.parameters())
    if not logits or not (inputs or trains):
        return
    what = f"discriminator '{name}' ({type(module).__name__})"
    if inputs and not _reaches(logits, inputs):
        raise PluginError(f"{what} returns the same output whatever sample it is given (its logits do not depend "
                          "on its input), so the generator gets no gradient from it; compute the logits from the "
                          "input in its forward")
    if not any(t.requires_grad for t in logits):
        raise PluginError(f"{what} returns a constant: its output depends neither on its input nor on its "
                          "weights, so it judges nothing and the generator learns nothing from it; compute the "
                          "logits from the input in its forward")


def watch_discriminators(adapter: Any) -> None:
    """Check every call of the adapter's discriminators (its slots of the ``discriminators`` registry) with
    :func:`check_discriminator_call` until the first training step that updates the generator has run; then the
    hooks are gone and training runs as before."""
    slots = getattr(type(adapter), "slots", {}) or {}
    components = getattr(adapter, "components", {}) or {}
    watched = [(n, components[n]) for n, s in slots.items()
               if getattr(s, "registry", "") == "discriminators" and isinstance(components.get(n), torch.nn.Module)]
    if not watched:
        return

    def hook_for(name: str) -> Any:
        def hook(module: torch.nn.Module, args: Any, kwargs: Any, output: Any) -> None:
            check_discriminator_call(name, module, (args, kwargs), output)
        return hook

    handles = [m.register_forward_hook(hook_for(n), with_kwargs=True) for n, m in watched]
    step = adapter.train_step

    def done() -> None:
        for h in handles:
            h.remove()
        if adapter.__dict__.get("train_step") is first_steps:
            del adapter.train_step                     # the class's own again

    def first_steps(*args: Any, **kwargs: Any) -> Any:     # (batch, step, update_g), as the trainer calls it
        try:
            out = step(*args, **kwargs)
        except BaseException:
            done()
            raise
        if (args[2] if len(args) > 2 else kwargs.get("update_g", True)):
            done()
        return out

    adapter.train_step = first_steps
