"""The leaderboard frame: means and spread over seeds, gaps to the paper, ranking agreement."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from bench.config import parse_suite
from leaderboards.build import leaderboard_frame, rank_agreement, render_markdown, wide_table


def _suite():
    rows = [{"name": n, "discriminator": "patchgan", "published": {"photo2depth/rel": p}}
            for n, p in (("A", 0.30), ("B", 0.20), ("C", 0.10))]
    return parse_suite({
        "suite": {"name": "t", "dataset": "synthetic-scenes", "tasks": ["photo2depth"]},
        "profiles": {"smoke": {"steps": 1}}, "rows": rows}, source="t.toml")


def _records(values: dict[str, list[float]], failed: tuple[str, ...] = ()) -> pd.DataFrame:
    recs = []
    for row, vals in values.items():
        for seed, v in enumerate(vals):
            recs.append({"row": row, "task": "photo2depth", "seed": seed, "metric": "rel", "value": v,
                         "status": "ok", "reason": ""})
    for row in failed:
        recs.append({"row": row, "task": "photo2depth", "seed": 0, "metric": "train", "value": None,
                     "status": "failed", "reason": "training diverged: loss 'loss_D' = nan at step 3"})
    return pd.DataFrame(recs)


def test_mean_std_and_gap_by_hand():
    long = leaderboard_frame(_suite(), _records({"A": [0.2, 0.4], "B": [0.25], "C": [0.05, 0.15, 0.10]}))
    a = long.set_index("row").loc["A"]
    assert a["mean"] == pytest.approx(0.3) and a["std"] == pytest.approx(math.sqrt(0.02)) and a["n"] == 2
    assert a["gap"] == pytest.approx(0.0) and a["published"] == 0.30
    b = long.set_index("row").loc["B"]
    assert math.isnan(b["std"]) and b["gap"] == pytest.approx(0.05)


def test_ranking_agreement():
    same = rank_agreement(leaderboard_frame(_suite(), _records({"A": [3.0], "B": [2.0], "C": [1.0]})))
    assert same["kendall_tau"].item() == pytest.approx(1.0) and same["same_highest"].item()
    rev = rank_agreement(leaderboard_frame(_suite(), _records({"A": [1.0], "B": [2.0], "C": [3.0]})))
    assert rev["kendall_tau"].item() == pytest.approx(-1.0) and not rev["same_highest"].item()


def test_failed_and_missing_rows():
    long = leaderboard_frame(_suite(), _records({"A": [0.3], "B": [0.2]}, failed=("C",)))
    c = long.set_index("row").loc["C"]
    assert c["status"] == "failed" and "nan at step 3" in c["reason"]
    long = leaderboard_frame(_suite(), _records({"A": [0.3]}))
    assert list(long["row"]) == ["A"]                      # rows never run are left out
    md = render_markdown(_suite(), leaderboard_frame(_suite(), _records({"A": [0.3]}, failed=("C",))),
                         "smoke", {})
    assert "## Failed runs" in md and "C / photo2depth" in md


def test_wide_table_shows_paper_and_gap_columns():
    wide = wide_table(leaderboard_frame(_suite(), _records({"A": [0.2, 0.4], "B": [0.25], "C": [0.1]})))
    assert list(wide.columns) == ["row", "photo2depth/rel", "photo2depth/rel (paper)", "photo2depth/rel gap"]
    assert wide.iloc[0]["photo2depth/rel"] == "0.3000 ± 0.1414" and wide.iloc[1]["photo2depth/rel gap"] == "+0.0500"
