"""The paper's claims (``[[claims]]`` of a suite), checked on our seeds.

A claim orders rows on one column, best first (``order``), or compares a statistic over two groups of
rows (``groups``: e.g. the spread of one method's scores across a swept weight against another's),
computed per seed from the records and summarised by the same intervals. Each adjacent pair (a claimed
better than b) is judged with the 95% intervals of the mean over seeds of :mod:`leaderboards.stats`
(bootstrap for 3 seeds or more, Student t for 2; the columns ``ci_low`` / ``ci_high`` of the leaderboard
frame when it has them):

- **reproduced**: a's mean is better and the two intervals do not overlap;
- **reversed**: b's mean is better and the intervals do not overlap;
- **not separated**: the intervals overlap (or a row has a single seed: no interval).

A claim is reversed if any of its pairs is, else not separated if any is, else reproduced; "missing"
when a row has no value.
"""

from __future__ import annotations

import math
from typing import Mapping

import pandas as pd

from bench.config import Suite
from bench.schema import slug

VERDICTS = ("reproduced", "not separated", "reversed", "missing")
COLUMNS = ["claim", "source", "metric", "better", "order", "ours", "verdict", "pairs"]


def interval(mean: float, std: float, n: int) -> tuple[float, float]:
    """95% t-interval of a mean over ``n`` seeds from its summary; (-inf, inf) for a single seed (used when
    the frame carries no per-seed interval)."""
    if n < 2 or math.isnan(std):
        return -math.inf, math.inf
    from scipy.stats import t
    half = float(t.ppf(0.975, n - 1)) * std / math.sqrt(n)
    return mean - half, mean + half


def judge_pair(a: tuple[float, float, float], b: tuple[float, float, float], higher: bool) -> str:
    """``a`` claimed better than ``b``; each (mean, interval low, interval high)."""
    if any(math.isnan(x[0]) for x in (a, b)):
        return "missing"
    apart = a[2] < b[1] or b[2] < a[1]
    a_better = a[0] > b[0] if higher else a[0] < b[0]
    if not apart:
        return "not separated"
    return "reproduced" if a_better else "reversed"


def _row_name(suite: Suite, r: str) -> str:
    return next((row.name for row in suite.rows if r in (row.name, slug(row.name))), r)


def _order_claim(suite: Suite, c, long: pd.DataFrame, up: bool) -> tuple[list[str], list[str]]:
    cells = long[long["column"] == c.metric] if len(long) else long
    stats, shown = {}, []
    for r in c.order:
        name = _row_name(suite, r)
        hit = cells[cells["row"] == name]
        if len(hit) and hit.iloc[0]["status"] == "ok":
            h = hit.iloc[0]
            if "ci_low" in h and not math.isnan(h["ci_low"]):
                lo, hi = float(h["ci_low"]), float(h["ci_high"])
            elif "ci_low" in h:
                lo, hi = -math.inf, math.inf
            else:
                lo, hi = interval(float(h["mean"]), float(h["std"]), int(h["n"]))
            stats[r] = (float(h["mean"]), lo, hi)
            shown.append(f"{name}: {h['mean']:.4g}" + (f" [{lo:.4g}, {hi:.4g}]" if math.isfinite(lo) else ""))
        else:
            stats[r] = (math.nan, math.nan, math.nan)
            shown.append(f"{name}: -")
    return [judge_pair(stats[a], stats[b], up) for a, b in zip(c.order, c.order[1:])], shown


def group_values(suite: Suite, c, records: pd.DataFrame | None) -> list[list[float]]:
    """Per group of a ``groups`` claim, its statistic over the group's rows for each seed where every
    row of the group has a value."""
    task, _, metric = c.metric.partition("/")
    ok = records[(records["status"] == "ok") & (records["task"] == task) & (records["metric"] == metric)] \
        if records is not None and len(records) else None
    out = []
    for group, stat in zip(c.groups, c.statistic):
        names = [_row_name(suite, r) for r in group]
        vals = []
        if ok is not None:
            per_seed = ok[ok["row"].isin(names)].pivot_table(index="seed", columns="row", values="value",
                                                              aggfunc="last")
            for _, v in per_seed.iterrows():
                if all(n in v.index and not math.isnan(v[n]) for n in names):
                    x = v[names].astype(float)
                    vals.append(float(x.std(ddof=1)) if stat == "std" and len(x) > 1 else
                                0.0 if stat == "std" else float(getattr(x, stat)()))
        out.append(vals)
    return out


def _group_claim(suite: Suite, c, records: pd.DataFrame | None, up: bool) -> tuple[list[str], list[str]]:
    from leaderboards.stats import interval as ci
    stats, shown = [], []
    for group, stat, vals in zip(c.groups, c.statistic, group_values(suite, c, records)):
        label = f"{stat} of {len(group)} rows"
        if not vals:
            stats.append((math.nan, math.nan, math.nan))
            shown.append(f"{label}: -")
            continue
        lo, hi, how = ci(vals)
        lo, hi = (lo, hi) if how else (-math.inf, math.inf)
        mean = sum(vals) / len(vals)
        stats.append((mean, lo, hi))
        shown.append(f"{label}: {mean:.4g}" + (f" [{lo:.4g}, {hi:.4g}]" if math.isfinite(lo) else "")
                     + f" (n={len(vals)})")
    return [judge_pair(stats[0], stats[1], up)], shown


def claim_table(suite: Suite, long: pd.DataFrame, higher: Mapping[str, bool],
                records: pd.DataFrame | None = None) -> pd.DataFrame:
    """Every ``[[claims]]`` entry judged; ``records`` (per seed) are needed for ``groups`` claims."""
    rows = []
    for c in suite.claims:
        up = c.better == "higher" if c.better else bool(higher.get(c.metric, False))
        if c.groups:
            pairs, shown = _group_claim(suite, c, records, up)
            order = " > ".join(f"{st}({', '.join(g)})" for g, st in zip(c.groups, c.statistic))
        else:
            pairs, shown = _order_claim(suite, c, long, up)
            order = " > ".join(c.order)
        verdict = ("missing" if "missing" in pairs else "reversed" if "reversed" in pairs
                   else "not separated" if "not separated" in pairs else "reproduced")
        rows.append({"claim": c.text, "source": c.source, "metric": c.metric, "better": "higher" if up else "lower",
                     "order": order, "ours": "; ".join(shown), "verdict": verdict, "pairs": ", ".join(pairs)})
    return pd.DataFrame(rows, columns=COLUMNS)
