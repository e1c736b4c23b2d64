"""``bench compare``: a new discriminator as one more row of existing suites, on the same data, budget,
seeds and metrics, tested against each established row by the claims' test.

Per suite, metric column and established row, the candidate's per-seed values are tested against the row's
with :func:`leaderboards.stats.compare` (Welch's t-test, one-sided each way, alpha 0.05):

- **better**: the candidate is better (by the metric's direction) with one-sided p < alpha;
- **worse**: the row is better with one-sided p < alpha;
- **not separated**: neither (always with the direction of the means); so is every pair with fewer than
  2 seeds on a side. No rank is given: the count "better than k of m rows, worse than j" is all the
  ordering the tests support.

A degenerate cell (constant or collapsed outputs), the candidate's or a row's, is reported as such and not
tested; a failed or missing one as missing. The candidate's interval over seeds (Student t, ``t95``) is
clipped to the metric's range where its scorer declares one.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Mapping, NamedTuple

import pandas as pd

from bench.config import Row, Suite
from bench.errors import ConfigError
from bench.validate import validate_suite
from leaderboards.claims import seed_values
from leaderboards.curves import CHECKPOINT_KEY
from bench.escape import md_cell, md_code, md_heading
from leaderboards.stats import ALPHA, clip, compare, describe, interval

VERDICTS = ("better", "worse", "not separated", "degenerate", "missing")
COLUMNS = ["suite", "column", "better", "row", "verdict", "candidate", "cand_low", "cand_high", "interval",
           "row_mean", "n_candidate", "n_row", "means_favour", "diff", "diff_low", "diff_high", "p", "p_reverse",
           "seeds_needed", "detail"]
SUMMARY_COLUMNS = ["suite", "column", "better", "candidate", "cand_low", "cand_high", "interval", "n_candidate",
                   "better_than", "worse_than", "not_separated", "untested", "rows"]


def candidate_suite(suite: Suite, discriminator: str, row_name: str) -> Suite:
    """``suite`` with one more row: the suite's method with ``discriminator`` (validated as any row)."""
    s = copy.deepcopy(suite)
    s.rows.append(Row(name=row_name, discriminator=discriminator, note="candidate of bench compare"))
    validate_suite(s, f"{suite.name} + {discriminator}")
    return s


def established_rows(suite: Suite, candidate: str, wanted: list[str] | None) -> list[str]:
    """The rows the candidate is tested against: ``wanted`` that this suite has (row names or slugs), else
    every model row."""
    if not wanted:
        return [r.name for r in suite.rows if r.kind == "model" and r.name != candidate]
    from bench.schema import slug
    return [r.name for r in suite.rows if r.name != candidate and (r.name in wanted or slug(r.name) in wanted)]


class Plan(NamedTuple):
    """One suite of a comparison: where it runs, which rows it trains (None: all) and tests against."""

    suite: Suite
    out: Path
    profile: str
    rows: list[str] | None
    seeds: list[int] | None
    against: list[str]


def preflight(plans: list[Plan], device, resume: bool) -> None:
    """Every suite's data, weights and extractors checked (the runner's preflight, as ``run_suite`` does),
    and no output folder holding a finished run, before anything trains."""
    from bench.registry import RUNNERS
    from bench.runspec import expand
    from bench.suite import holds_results
    for p in plans:
        if not resume and holds_results(p.out):
            raise ConfigError(f"{p.out} already holds results; pass --resume to continue that comparison or choose "
                              "a new --out")
        specs = expand(p.suite, p.profile, p.rows, p.seeds if p.seeds is not None else p.suite.suite.seeds)
        check = getattr(RUNNERS.get(p.suite.suite.runner), "preflight", None)
        if check is not None:
            check(p.suite, specs, device, out=p.out, resume=resume)


def _cell(long: pd.DataFrame, row: str, column: str) -> str:
    c = long[(long["row"] == row) & (long["column"] == column)]
    return str(c["status"].iloc[0]) if len(c) else "missing"


def verdicts(suite: str, long: pd.DataFrame, records: pd.DataFrame, higher: Mapping[str, bool],
             bounds: Mapping[str, tuple[float | None, float | None]], candidate: str, rows: list[str]) -> pd.DataFrame:
    """One line per (metric column, established row): the candidate tested against the row (see the module)."""
    out = []
    columns = [c for c, m in dict(zip(long["column"], long["metric"])).items()
               if m and not CHECKPOINT_KEY.match(str(m))]
    for col in columns:
        up = bool(higher.get(col, False))
        cand_status = _cell(long, candidate, col)
        cand = list(seed_values(records, col, candidate).values()) if cand_status in ("ok", "degenerate") else []
        lo, hi, how = interval(cand)
        lo, hi, clipped = clip(lo, hi, bounds.get(col))
        base = {"suite": suite, "column": col, "better": "higher" if up else "lower",
                "candidate": sum(cand) / len(cand) if cand else math.nan, "cand_low": lo, "cand_high": hi,
                "interval": how + (", clipped" if clipped else ""), "n_candidate": len(cand)}
        for row in rows:
            status = _cell(long, row, col)
            vals = list(seed_values(records, col, row).values()) if status in ("ok", "degenerate") else []
            line = {**base, "row": row, "row_mean": sum(vals) / len(vals) if vals else math.nan, "n_row": len(vals)}
            untested = [f"{who} {s}" for who, s in (("candidate", cand_status), ("row", status)) if s != "ok"]
            if untested:
                verdict = "degenerate" if "degenerate" in (cand_status, status) else "missing"
                out.append({**line, "verdict": verdict, "detail": "not tested: " + ", ".join(untested)})
                continue
            t = compare(cand, vals, up)
            out.append({**line, "verdict": {"a better": "better", "b better": "worse"}.get(t.outcome, t.outcome),
                        "means_favour": {"a": "candidate", "b": "row", "tie": "tie"}[t.means_favour],
                        "diff": t.diff, "diff_low": t.diff_low, "diff_high": t.diff_high, "p": t.p,
                        "p_reverse": t.p_reverse, "seeds_needed": t.seeds_needed,
                        "detail": describe(t, "candidate", row)})
    return pd.DataFrame(out, columns=COLUMNS)


def summary(frame: pd.DataFrame) -> pd.DataFrame:
    """Per suite and column: the candidate's mean and interval, and how many rows it is better / worse than."""
    out = []
    for (suite, col), g in frame.groupby(["suite", "column"], sort=False):
        first = g.iloc[0]
        v = g["verdict"]
        out.append({**{k: first[k] for k in ("suite", "column", "better", "candidate", "cand_low", "cand_high",
                                             "interval", "n_candidate")},
                    "better_than": int((v == "better").sum()), "worse_than": int((v == "worse").sum()),
                    "not_separated": int((v == "not separated").sum()),
                    "untested": int(v.isin(["degenerate", "missing"]).sum()), "rows": len(g)})
    return pd.DataFrame(out, columns=SUMMARY_COLUMNS)


def compare_markdown(frame: pd.DataFrame, discriminator: str) -> str:
    """compare.md: what the verdicts mean, then per suite the summary and every pair's test."""
    lines = [f"# {md_code(discriminator)} against the established discriminators", "",
             f"Each established row is tested against the candidate on each metric with Welch's t-test on the "
             f"per-seed values, one-sided each way at alpha {ALPHA}: *better* / *worse* when the candidate is "
             "better / worse by the metric's direction with p < alpha, *not separated* otherwise (with the "
             "direction of the means; always with fewer than 2 seeds per side). There is no rank: "
             "\"better than k of m\" counts the rows the test separates. *degenerate* / *missing*: a side's "
             "outputs were constant or collapsed / it has no value, so no test. `p`: one-sided p of \"candidate "
             "better\", `p_reverse` of \"row better\"; `diff`: the candidate's improvement over the row in the "
             "metric's units, with its 90% Welch interval (its ends are the one-sided 95% bounds the tests use). "
             "The candidate's interval is its mean's 95% Student t interval over seeds (`t95`), clipped to the "
             "metric's range where it has one (`t95, clipped`).", ""]
    if not len(frame):
        return "\n".join(lines + ["No metric column to compare.", ""])
    for suite, g in frame.groupby("suite", sort=False):
        s = summary(g).drop(columns="suite")
        pairs = g[["column", "row", "verdict", "means_favour", "diff", "diff_low", "diff_high", "p", "p_reverse",
                   "row_mean", "n_row", "detail"]]
        lines += [f"## {md_heading(suite)}", "", s.map(md_cell).to_markdown(index=False, floatfmt=".4g"), "",
                  pairs.map(md_cell).to_markdown(index=False, floatfmt=".4g"), ""]
    return "\n".join(lines)
