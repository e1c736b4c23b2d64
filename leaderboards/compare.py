"""``bench compare``: a new discriminator as one more row of existing suites, on the same data, budget,
seeds and metrics, and one report of where it ranks on each task and metric."""

from __future__ import annotations

import copy
import math
from typing import Mapping

import pandas as pd

from bench.config import Row, Suite
from bench.validate import validate_suite

COLUMNS = ["suite", "column", "better", "rank", "rows", "candidate", "ci_low", "ci_high", "best_row", "best"]


def candidate_suite(suite: Suite, discriminator: str, row_name: str) -> Suite:
    """``suite`` with one more row: the suite's method with ``discriminator`` (validated as any row)."""
    s = copy.deepcopy(suite)
    s.rows = [r for r in s.rows if r.kind == "model" or r.kind == "oracle"]
    s.rows.append(Row(name=row_name, discriminator=discriminator, note="candidate of bench compare"))
    validate_suite(s, f"{suite.name} + {discriminator}")
    return s


def ranks(suite: str, long: pd.DataFrame, higher: Mapping[str, bool], candidate: str) -> pd.DataFrame:
    """Per column: the candidate's rank among the ok model rows (1 = best, by the metric's direction)."""
    out = []
    for col, g in long[long["status"] == "ok"].groupby("column", sort=False):
        if "[e" in col or candidate not in set(g["row"]):
            continue
        up = bool(higher.get(col, False))
        order = g.sort_values("mean", ascending=not up).reset_index(drop=True)
        me = order[order["row"] == candidate].iloc[0]
        best = order.iloc[0]
        out.append({"suite": suite, "column": col, "better": "higher" if up else "lower",
                    "rank": int(order.index[order["row"] == candidate][0]) + 1, "rows": len(order),
                    "candidate": me["mean"], "ci_low": me.get("ci_low", math.nan),
                    "ci_high": me.get("ci_high", math.nan), "best_row": best["row"], "best": best["mean"]})
    return pd.DataFrame(out, columns=COLUMNS)


def compare_markdown(frame: pd.DataFrame, discriminator: str) -> str:
    lines = [f"# `{discriminator}` against the established discriminators", "",
             "Rank 1 is best (by each metric's direction); the candidate's mean with its 95% interval over seeds.", ""]
    for suite, g in frame.groupby("suite", sort=False):
        lines += [f"## {suite}", "", g.drop(columns="suite").to_markdown(index=False, floatfmt=".4g"), ""]
    return "\n".join(lines)
