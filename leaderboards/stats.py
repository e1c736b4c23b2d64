"""The statistics every verdict of the bench rests on: intervals of a mean over seeds, and the test of
one row against another.

**Interval of a mean** (:func:`interval`): the Student t interval ``mean +- t(0.975, n-1) s / sqrt(n)``
at every n >= 2 (none with one seed). Seeds of a GAN are few (3 is usual), and at n = 3 a percentile
bootstrap of the mean is the seed range [min, max] (1/27 of its resamples are all-minimum), which covers
the mean only ~75% of the time; the t interval covers it 95% of the time when the seeds' values are
normal, at every n (tests/test_stats.py checks it by simulation). Its method is named in every cell
(``t95``). Where a metric has a range (pixel accuracy in [0, 1], a FID >= 0) the interval is clipped to
it (:func:`clip`), and the table says so.

**One row against another** (:func:`compare`): Welch's t-test (unequal variances) on the two rows'
per-seed values, one-sided in each direction, at ``ALPHA`` = 0.05:

- ``a better``: the one-sided test "a is better than b" (by the metric's direction) has p < ALPHA;
- ``b better``: the one-sided test "b is better than a" has p < ALPHA;
- ``not separated``: neither (always reported with the direction of the means); so is any comparison
  where a row has fewer than 2 seeds (no variance, no test).

With it: the difference of the means in the metric's better direction (positive: a is better) and its
90% Welch interval, whose ends are the one-sided 95% confidence bounds the two tests use (so "a better"
is exactly "the interval lies above 0", "b better" "below 0"), the standardised effect (difference over
the root mean square of the two seed standard deviations), and for a pair not separated the seeds per
row that a one-sided test at ALPHA would need for 80% power if the true difference and spread were the
observed ones (:func:`seeds_needed`, the noncentral t; None when the means are equal). Welch's test is
``scipy.stats.ttest_ind(equal_var=False)``; tests/test_stats.py checks both against hand-computed
cases.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

LEVEL = 0.95                 # intervals: two-sided coverage
ALPHA = 0.05                 # one-sided tests of a direction
POWER = 0.8                  # the power a seeds-needed estimate aims at
MAX_SEEDS = 10_000           # seeds_needed gives up above this
METHOD = "t95"               # the interval's name in every cell

OUTCOMES = ("a better", "b better", "not separated")


def _clean(values: Sequence[float]) -> np.ndarray:
    return np.asarray([float(x) for x in values if x is not None and not math.isnan(float(x))], dtype=np.float64)


def interval(values: Sequence[float], level: float = LEVEL) -> tuple[float, float, str]:
    """(low, high, method) of the mean of ``values`` (NaNs dropped): Student t at n >= 2, none below."""
    from scipy.stats import t
    v = _clean(values)
    n = len(v)
    if n < 2:
        return math.nan, math.nan, ""
    half = float(t.ppf((1 + level) / 2, n - 1)) * float(v.std(ddof=1)) / math.sqrt(n)
    m = float(v.mean())
    return m - half, m + half, METHOD


def clip(low: float, high: float, bounds: tuple[float | None, float | None] | None) -> tuple[float, float, bool]:
    """An interval clipped to a metric's range ``(lower, upper)`` (either may be None): (low, high, clipped)."""
    if not bounds or math.isnan(low):
        return low, high, False
    lo_b, hi_b = bounds
    new_lo = max(low, lo_b) if lo_b is not None else low
    new_hi = min(high, hi_b) if hi_b is not None else high
    return new_lo, new_hi, (new_lo, new_hi) != (low, high)


@dataclass(frozen=True)
class PairTest:
    """Row a against row b on one metric (``diff`` > 0: a is better, by the metric's direction)."""

    n_a: int
    n_b: int
    mean_a: float
    mean_b: float
    std_a: float
    std_b: float
    diff: float                 # improvement of a over b, in the metric's units and better direction
    diff_low: float             # its 90% Welch interval: the one-sided 95% bounds (> 0: a better; < 0: b better)
    diff_high: float
    effect: float               # diff / sqrt((std_a^2 + std_b^2) / 2); inf when both spreads are 0
    df: float                   # Welch-Satterthwaite degrees of freedom
    p: float                    # one-sided p of "a better than b"
    p_reverse: float            # one-sided p of "b better than a"
    outcome: str                # one of OUTCOMES
    seeds_needed: int | None    # per row, for POWER at ALPHA at the observed diff and spread (not separated)
    note: str = ""

    @property
    def means_favour(self) -> str:
        """Which way the means point: "a", "b" or "tie"."""
        return "a" if self.diff > 0 else "b" if self.diff < 0 else "tie"

    def as_dict(self) -> dict:
        return asdict(self)


def _welch_df(va: float, vb: float, na: int, nb: int) -> float:
    qa, qb = va / na, vb / nb
    den = (qa * qa / (na - 1) if na > 1 else 0.0) + (qb * qb / (nb - 1) if nb > 1 else 0.0)
    return (qa + qb) ** 2 / den if den > 0 else float(na + nb - 2)


def seeds_needed(diff: float, std_a: float, std_b: float, alpha: float = ALPHA, power: float = POWER,
                 cap: int = MAX_SEEDS) -> int | None:
    """Seeds per row for a one-sided Welch test at ``alpha`` to reach ``power``, if the true difference were
    ``|diff|`` and the seeds' spreads ``std_a`` / ``std_b`` (noncentral t with the Welch degrees of freedom).

    None when ``diff`` is 0 (no number of seeds separates equal means) or more than ``cap`` seeds are needed;
    2 when both spreads are 0 and the means differ.
    """
    from scipy.stats import nct, t
    d = abs(float(diff))
    if not d or math.isnan(d):
        return None
    va, vb = float(std_a) ** 2, float(std_b) ** 2
    if va + vb == 0:
        return 2

    def reached(n: int) -> bool:
        df = _welch_df(va, vb, n, n)
        ncp = d / math.sqrt((va + vb) / n)
        return float(nct.sf(t.ppf(1 - alpha, df), df, ncp)) >= power

    if not reached(cap):
        return None
    lo, hi = 2, cap                          # power grows with n: the smallest n that reaches it
    while lo < hi:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if reached(mid) else (mid + 1, hi)
    return lo


def compare(a: Sequence[float], b: Sequence[float], higher: bool, alpha: float = ALPHA) -> PairTest:
    """Welch's t-test of row ``a`` against row ``b`` (per-seed values; NaNs dropped), one-sided each way."""
    from scipy.stats import t, ttest_ind
    va, vb = _clean(a), _clean(b)
    na, nb = len(va), len(vb)
    ma = float(va.mean()) if na else math.nan
    mb = float(vb.mean()) if nb else math.nan
    sa = float(va.std(ddof=1)) if na > 1 else math.nan
    sb = float(vb.std(ddof=1)) if nb > 1 else math.nan
    sign = 1.0 if higher else -1.0
    diff = sign * (ma - mb)
    if na < 2 or nb < 2:
        why = "no seeds" if not (na and nb) else "one seed: no spread, no test"
        return PairTest(na, nb, ma, mb, sa, sb, diff, math.nan, math.nan, math.nan, math.nan, math.nan, math.nan,
                        "not separated", None, why)
    var_a, var_b = sa * sa, sb * sb
    se = math.sqrt(var_a / na + var_b / nb)
    df = _welch_df(var_a, var_b, na, nb)
    rms = math.sqrt((var_a + var_b) / 2)
    effect = diff / rms if rms > 0 else (math.copysign(math.inf, diff) if diff else 0.0)
    if se == 0:                                   # both rows constant over seeds
        p = 0.0 if diff > 0 else 1.0
        p_rev = 0.0 if diff < 0 else 1.0
        low = high = diff
    else:
        res = ttest_ind(va, vb, equal_var=False, alternative="greater" if higher else "less")
        p = float(res.pvalue)
        p_rev = float(ttest_ind(va, vb, equal_var=False, alternative="less" if higher else "greater").pvalue)
        half = float(t.ppf(1 - alpha, df)) * se
        low, high = diff - half, diff + half
    outcome = "a better" if p < alpha else "b better" if p_rev < alpha else "not separated"
    needed = seeds_needed(diff, sa, sb, alpha) if outcome == "not separated" else None
    return PairTest(na, nb, ma, mb, sa, sb, diff, low, high, effect, df, p, p_rev, outcome, needed)


def describe(test: PairTest, a: str = "a", b: str = "b") -> str:
    """One line: the means' direction, the difference with its interval, p, effect, seeds needed."""
    if math.isnan(test.df):
        return f"{test.note or 'no test'}"
    lean = {"a": f"means favour {a}", "b": f"means favour {b}", "tie": "equal means"}[test.means_favour]
    s = (f"{lean}: diff {_g(test.diff)} [{_g(test.diff_low)}, {_g(test.diff_high)}] (90%), p = {_p(test.p)} "
         f"(reverse {_p(test.p_reverse)}), effect {_g(test.effect)}")
    if test.outcome == "not separated":
        s += (f"; ~{test.seeds_needed} seeds per row would separate it at this spread" if test.seeds_needed
              else "; no number of seeds separates equal means" if test.means_favour == "tie"
              else f"; more than {MAX_SEEDS} seeds per row would be needed")
    return s


def _g(v: float) -> str:
    return f"{v:.4g}" if math.isfinite(v) else str(v)


def _p(p: float) -> str:
    return "nan" if math.isnan(p) else f"{p:.2g}" if p >= 1e-4 else "<1e-4"


def add_statistics(long: pd.DataFrame, records: pd.DataFrame, higher: Mapping[str, bool],
                   bounds: Mapping[str, tuple[float | None, float | None]] | None = None) -> pd.DataFrame:
    """``long`` with ``ci_low``, ``ci_high``, ``interval`` (its method, e.g. ``t95``; ``t95, clipped`` where
    clipped to the metric's range), ``outside`` (the paper's value lies outside our interval) and ``better``
    ("higher" / "lower") per line; per-seed values come from ``records`` (status ok, the cell's seeds)."""
    ok = records[records["status"] == "ok"] if len(records) else records
    bounds = bounds or {}
    lows, highs, methods, outside = [], [], [], []
    for r in long.itertuples():
        vals = (ok[(ok["row"] == r.row) & (ok["task"] == r.task) & (ok["metric"] == r.metric)]["value"]
                .astype(float).tolist() if len(ok) and r.status in ("ok", "degenerate") else [])
        lo, hi, how = interval(vals)
        lo, hi, clipped = clip(lo, hi, bounds.get(r.column))
        lows.append(lo)
        highs.append(hi)
        methods.append(how + (", clipped" if clipped else ""))
        pub = r.published
        outside.append(bool(how) and not math.isnan(pub) and not lo <= pub <= hi)
    return long.assign(ci_low=lows, ci_high=highs, interval=methods, outside=outside,
                       better=[("higher" if higher.get(c, False) else "lower") if m else ""
                               for c, m in zip(long["column"], long["metric"])])
