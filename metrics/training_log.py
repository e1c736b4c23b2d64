"""What a run's training did, as numbers a claim can test: statistics of its logged scalars.

Papers about training dynamics (the new-losses paper's Figure 1: D's loss and the latent KL along
training) make claims about curves, not about samples: "the discriminator does not win", "the loss
is stable". This scorer turns a run's own ``scalars.csv`` (written every ``log_every`` steps by the
trainer, resume-exact) into two numbers per named scalar, over the last ``window`` of the steps up to
the scored checkpoint (the last quarter by default, so a budget rung reads its own prefix of the
log):

- ``end_<scalar>``: the mean of the logged values there (where the curve has settled);
- ``sd_<scalar>``: their standard deviation (population, ddof 0): how much it still swings.

Neither has a better direction of its own: a claim on them says ``better = "higher"`` or
``"lower"``. A scalar a run does not log (a GAN row has no latent KL) gives no value for that row;
a run that logs none of the named scalars, or none inside the window, is an error.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

from bench.errors import MetricError
from metrics.base import LogScorer, ScoreContext

OPTIONS = ("scalars", "window")


def read_log(path: Path, up_to: int) -> list[dict[str, float]]:
    """The rows of a ``scalars.csv`` with step <= ``up_to``, values as floats (empty cells left out)."""
    if not path.is_file():
        raise MetricError(f"training-log: {path} is missing; the run logged no scalars (train it with log_every > 0)")
    with path.open(newline="") as f:
        rows = [{k: float(v) for k, v in r.items() if v not in ("", None)} for r in csv.DictReader(f)]
    return [r for r in rows if "step" in r and r["step"] <= up_to]


def window_stats(rows: list[dict[str, float]], key: str, start: float) -> tuple[float, float] | None:
    """Mean and population standard deviation of ``key``'s finite values at steps > ``start``; None when
    no row in the window logs it."""
    vals = [r[key] for r in rows if r["step"] > start and key in r and math.isfinite(r[key])]
    if not vals:
        return None
    mean = math.fsum(vals) / len(vals)
    return mean, math.sqrt(math.fsum((v - mean) ** 2 for v in vals) / len(vals))


class TrainingLogScorer(LogScorer):
    """``end_<scalar>`` and ``sd_<scalar>`` of each scalar in ``scalars`` over the last ``window`` of the
    steps up to the scored checkpoint (options: ``scalars`` = list of logged names, ``window`` in (0, 1])."""

    keys = ("end", "sd")
    ranges = {"sd": (0.0, None)}

    def __init__(self, ctx: ScoreContext):
        super().__init__(ctx)
        unknown = sorted(set(ctx.options) - set(OPTIONS))
        if unknown:
            raise MetricError(f"training-log: unknown option '{unknown[0]}'; allowed: {', '.join(OPTIONS)}")
        scalars = ctx.options.get("scalars")
        if not isinstance(scalars, list) or not scalars or not all(isinstance(s, str) and s for s in scalars):
            raise MetricError("training-log: set [metric_options.training-log] scalars = [\"loss_D\", ...], the "
                              "logged scalars (scalars.csv columns) to summarise")
        self.scalars = list(dict.fromkeys(scalars))
        self.window = float(ctx.options.get("window", 0.25))
        if not 0.0 < self.window <= 1.0:
            raise MetricError(f"training-log: window = {self.window}; it is the share of the steps up to the "
                              "checkpoint to read, in (0, 1]")

    def compute(self) -> dict[str, float]:
        if self.ctx.run_dir is None or self.ctx.step is None:
            raise MetricError("training-log scores a checkpoint inside its run folder (<run>/checkpoints/step_*); "
                              "it was given none")
        path = Path(self.ctx.run_dir) / "scalars.csv"
        rows = read_log(path, self.ctx.step)
        start = (1.0 - self.window) * self.ctx.step
        out: dict[str, float] = {}
        for name in self.scalars:
            got = window_stats(rows, name, start)
            if got is not None:
                out[f"end_{name}"], out[f"sd_{name}"] = got
        if not out:
            logged = sorted({k for r in rows for k in r} - {"step"})
            raise MetricError(f"training-log: {path} logs none of {', '.join(self.scalars)} between steps "
                              f"{start:g} and {self.ctx.step} (it logs: {', '.join(logged) or 'nothing'}); "
                              "fix [metric_options.training-log] scalars")
        return out

    def protocol(self) -> dict[str, Any]:
        return {"scorer": type(self).__name__, "scalars": self.scalars, "window": self.window,
                "source": "the run's scalars.csv, rows with (1 - window) x step < row step <= checkpoint step",
                "end": "mean of the finite logged values", "sd": "population standard deviation (ddof 0)"}
