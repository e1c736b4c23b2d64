"""`bench compare`: a candidate discriminator tested against each established row with the claims' test
(Welch's t-test, one-sided each way), on hand-made results against scipy; no rank where tests don't separate;
the candidate's interval clipped to the metric's range; degenerate cells reported, not tested; every suite's
data checked before any training."""

from __future__ import annotations

import math

import pandas as pd
import pytest
from scipy import stats as sps

from bench.config import parse_suite
from leaderboards.build import leaderboard_frame, ranges
from leaderboards.compare import VERDICTS, compare_markdown, summary, verdicts

CAND = "mine (candidate)"


def _suite():
    rows = [{"name": n, "discriminator": "patchgan"} for n in ("A", "B", CAND)]
    return parse_suite({"suite": {"name": "t", "dataset": "synthetic-scenes", "tasks": ["photo2labels", "photo2depth"]},
                        "metrics": {"photo2labels": ["segmentation"], "photo2depth": ["depth"]},
                        "profiles": {"smoke": {"steps": 1}}, "rows": rows}, source="t.toml")


def _records(values: dict[tuple[str, str], list[float]]) -> pd.DataFrame:
    """(row, task/metric) -> per-seed values, as ok records."""
    return pd.DataFrame([{"row": r, "task": col.split("/")[0], "seed": s, "metric": col.split("/")[1], "value": v,
                          "status": "ok", "reason": "", "protocol_hash": "h1", "code_version": "0.1.0+abc",
                          "time": f"2026-01-01T00:00:0{s}+00:00"}
                         for (r, col), vals in values.items() for s, v in enumerate(vals)])


def _verdicts(values, higher=None, rows=("A", "B"), status=None):
    suite = _suite()
    recs = _records(values)
    long = leaderboard_frame(suite, recs)
    for (row, col), st in (status or {}).items():
        long.loc[(long["row"] == row) & (long["column"] == col), "status"] = st
    return verdicts("t", long, recs, higher or {}, ranges(suite, long), CAND, list(rows))


def test_two_equal_rows_are_not_separated_and_get_no_rank():
    v = [0.30, 0.31, 0.33]
    frame = _verdicts({("A", "photo2depth/rel"): v, (CAND, "photo2depth/rel"): v}, rows=["A"])
    line = frame.iloc[0]
    assert line["verdict"] == "not separated" and line["means_favour"] == "tie" and line["diff"] == 0
    assert line["p"] == pytest.approx(0.5) and line["p_reverse"] == pytest.approx(0.5)     # t = 0
    s = summary(frame).iloc[0]
    assert (s["better_than"], s["worse_than"], s["not_separated"]) == (0, 0, 1)
    assert "rank" not in frame.columns and "rank" not in summary(frame).columns
    one = _verdicts({("A", "photo2depth/rel"): [0.1], (CAND, "photo2depth/rel"): [0.5]}, rows=["A"]).iloc[0]
    assert one["verdict"] == "not separated" and "one seed" in one["detail"]     # no spread, no test


def test_better_and_worse_with_the_p_of_scipys_welch_test():
    cand, a, b = [0.20, 0.21, 0.23], [0.30, 0.31, 0.34], [0.10, 0.11, 0.125]
    frame = _verdicts({("A", "photo2depth/rel"): a, ("B", "photo2depth/rel"): b, (CAND, "photo2depth/rel"): cand},
                      higher={"photo2depth/rel": False}).set_index("row")      # rel: lower is better
    assert frame.loc["A", "verdict"] == "better" and frame.loc["B", "verdict"] == "worse"
    assert frame.loc["A", "p"] == pytest.approx(sps.ttest_ind(cand, a, equal_var=False, alternative="less").pvalue)
    assert frame.loc["B", "p_reverse"] == pytest.approx(
        sps.ttest_ind(cand, b, equal_var=False, alternative="greater").pvalue)
    assert frame.loc["A", "diff"] == pytest.approx(sum(a) / 3 - sum(cand) / 3)     # improvement, lower better
    assert frame.loc["B", "means_favour"] == "row"
    s = summary(frame.reset_index()).iloc[0]
    assert (s["better_than"], s["worse_than"], s["rows"]) == (1, 1, 2)
    md = compare_markdown(frame.reset_index(), "mine")
    assert "| better" in md and "| worse" in md and "not separated" in md


def test_the_candidates_interval_is_clipped_to_the_metrics_range():
    cand = [0.96, 0.99, 1.0]
    raw = sps.t.interval(0.95, 2, loc=sum(cand) / 3, scale=sps.sem(cand))
    assert raw[1] > 1                                                       # the t interval leaves [0, 1]
    frame = _verdicts({("A", "photo2labels/pixel_acc"): [0.5, 0.6, 0.55], (CAND, "photo2labels/pixel_acc"): cand},
                      higher={"photo2labels/pixel_acc": True}, rows=["A"])
    line = frame.iloc[0]
    assert line["cand_high"] == 1.0 and line["cand_low"] == pytest.approx(raw[0])
    assert line["interval"] == "t95, clipped" and line["verdict"] == "better"
    assert "`t95, clipped`" in compare_markdown(frame, "mine") and "t95, clipped" in summary(frame)["interval"].iloc[0]


def test_degenerate_and_missing_cells_are_reported_not_tested():
    col = "photo2depth/rel"
    values = {("A", col): [0.3, 0.31, 0.32], ("B", col): [0.2, 0.2, 0.2], (CAND, col): [0.1, 0.11, 0.12]}
    frame = _verdicts(values, status={("B", col): "degenerate"}).set_index("row")
    assert frame.loc["B", "verdict"] == "degenerate" and math.isnan(frame.loc["B", "p"])
    assert frame.loc["B", "detail"] == "not tested: row degenerate" and frame.loc["A", "verdict"] == "better"
    cand_bad = _verdicts(values, status={(CAND, col): "degenerate"})
    assert (cand_bad["verdict"] == "degenerate").all() and cand_bad["p"].isna().all()
    del values[("A", col)]
    gone = _verdicts(values, rows=["A"]).iloc[0]
    assert gone["verdict"] == "missing" and "row missing" in gone["detail"]
    assert set(VERDICTS) >= set(cand_bad["verdict"]) | {gone["verdict"]}


def test_every_suites_data_is_checked_before_anything_trains(tmp_path):
    from suite_helpers import bench, quickstart_variant
    suite = quickstart_variant(tmp_path, suite={"name": "cmp", "tasks": ["photo2depth"]},
                               metrics={"photo2depth": ["depth"]}, columns={"photo2depth": ["rel"]})
    out = tmp_path / "cmp-out"
    r = bench("compare", "--discriminator", "patchgan-sn", "--suites", f"{suite},decoupled-table4", "--out", str(out),
              "--no-progress", "--device", "cpu", env={"BENCH_DATA_ROOT": str(tmp_path / "no-data")})
    assert r.returncode == 2 and "facades" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert not out.exists()                                      # the first suite did not train


def test_compare_through_the_cli_tests_the_candidate_against_the_named_rows(tmp_path):
    from suite_helpers import bench, quickstart_variant
    suite = quickstart_variant(tmp_path, suite={"name": "cmp", "tasks": ["photo2depth"]},
                               metrics={"photo2depth": ["depth"]}, columns={"photo2depth": ["rel", "rms"]},
                               rows=[{"name": "4-Layer Concat", "discriminator": "patchgan"},
                                     {"name": "Fusion + SN", "discriminator": "fusion4-sn"}])
    out = tmp_path / "cmp"
    r = bench("compare", "--discriminator", "patchgan-sn", "--suites", str(suite), "--rows", "4-Layer Concat",
              "--profile", "tiny", "--out", str(out), "--no-progress", "--device", "cpu", check=True)
    frame = pd.read_csv(out / "compare.csv")
    assert list(frame["column"]) == ["photo2depth/rel", "photo2depth/rms"]
    assert (frame["row"] == "4-Layer Concat").all() and frame["verdict"].isin(VERDICTS).all()
    assert not (out / "cmp" / "runs" / "fusion-sn").exists()             # --rows: the other row is not trained
    assert "patchgan-sn" in r.stdout and "rank" not in frame.columns and (out / "compare.md").is_file()
    bad = bench("compare", "--discriminator", "class-heads", "--suites", str(suite), "--out", str(tmp_path / "x"))
    assert bad.returncode == 2 and "takes forward(y)" in bad.stderr
