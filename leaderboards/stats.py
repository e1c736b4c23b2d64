"""Statistics of a leaderboard: an interval for each of our means, and where the paper's value falls.

Intervals are 95% intervals of the mean over seeds:

- n >= 3: percentile bootstrap of the mean (10000 resamples of the seeds, a fixed generator, so the
  same values always give the same interval);
- n = 2: Student t, ``mean +- t(0.975, 1) s / sqrt(2)``;
- n = 1: none (shown as empty; nothing can be separated with one seed).

A published value outside our interval is flagged (``outside``): the gap is then more than seed noise.
Every ranking or "best" uses the metric's direction (``better``: from the scorers' protocols).
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

LEVEL = 0.95
BOOTSTRAP = 10_000
BOOTSTRAP_SEED = 20201


def interval(values: Sequence[float], level: float = LEVEL) -> tuple[float, float, str]:
    """(low, high, method) of the mean of ``values`` (NaNs dropped)."""
    v = np.asarray([x for x in values if x is not None and not math.isnan(x)], dtype=np.float64)
    n = len(v)
    if n >= 3:
        rng = np.random.default_rng(BOOTSTRAP_SEED)
        means = v[rng.integers(0, n, size=(BOOTSTRAP, n))].mean(1)
        lo, hi = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
        return float(lo), float(hi), "bootstrap"
    if n == 2:
        from scipy.stats import t
        half = float(t.ppf((1 + level) / 2, 1)) * float(v.std(ddof=1)) / math.sqrt(2)
        return float(v.mean() - half), float(v.mean() + half), "t"
    return math.nan, math.nan, ""


def add_statistics(long: pd.DataFrame, records: pd.DataFrame, higher: Mapping[str, bool]) -> pd.DataFrame:
    """``long`` with ``ci_low``, ``ci_high``, ``interval``, ``outside`` (the paper's value lies outside our
    interval) and ``better`` ("higher" / "lower") per line; per-seed values come from ``records``."""
    ok = records[records["status"] == "ok"] if len(records) else records
    lows, highs, methods, outside = [], [], [], []
    for r in long.itertuples():
        vals = (ok[(ok["row"] == r.row) & (ok["task"] == r.task) & (ok["metric"] == r.metric)]["value"]
                .astype(float).tolist() if len(ok) and r.status == "ok" else [])
        lo, hi, how = interval(vals)
        lows.append(lo)
        highs.append(hi)
        methods.append(how)
        pub = r.published
        outside.append(bool(how) and not math.isnan(pub) and not lo <= pub <= hi)
    return long.assign(ci_low=lows, ci_high=highs, interval=methods, outside=outside,
                       better=[("higher" if higher.get(c, False) else "lower") if m else ""
                               for c, m in zip(long["column"], long["metric"])])


def separated(a: tuple[float, float], b: tuple[float, float]) -> bool:
    """Whether two intervals do not overlap (a missing interval never separates)."""
    if any(math.isnan(x) for x in (*a, *b)):
        return False
    return a[1] < b[0] or b[1] < a[0]
