"""Leaderboards a reviewer trusts: intervals, the paper's value against them, exports, the status page,
and regression checks, on hand-made results against independent references (scipy, enumeration)."""

from __future__ import annotations

import itertools
import math
import re

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from bench.config import parse_suite
from bench.errors import ConfigError
from leaderboards.export import latex_table
from leaderboards.regress import compare, parse_tolerances, tolerance_for
from leaderboards.stats import add_statistics, interval, separated
from leaderboards.status import status_frame, status_markdown


def test_bootstrap_interval_against_exact_enumeration():
    v = [0.20, 0.26, 0.41]
    # the bootstrap distribution of the mean of 3 values: the 27 equally likely resamples
    means = sorted(np.mean(c) for c in itertools.product(v, repeat=3))
    lo, hi, how = interval(v)
    assert how == "bootstrap"
    exact = np.quantile(np.repeat(means, 1000), [0.025, 0.975])
    assert lo == pytest.approx(exact[0], abs=0.02) and hi == pytest.approx(exact[1], abs=0.02)
    assert interval(v) == (lo, hi, how)                        # a fixed generator: the same every time


def test_t_interval_for_two_seeds_and_none_for_one():
    lo, hi, how = interval([1.0, 2.0])
    ref = sps.t.interval(0.95, 1, loc=1.5, scale=sps.sem([1.0, 2.0]))
    assert how == "t" and (lo, hi) == pytest.approx(ref)
    lo, hi, how = interval([1.0])
    assert how == "" and math.isnan(lo) and math.isnan(hi)
    assert not separated((lo, hi), (5.0, 6.0)) and separated((0.0, 1.0), (1.5, 2.0))


def _suite():
    rows = [{"name": n, "discriminator": "patchgan", "published": {"photo2depth/rel": p}}
            for n, p in (("A", 0.30), ("B", 0.20), ("C", 0.10))]
    return parse_suite({"suite": {"name": "t", "dataset": "synthetic-scenes", "tasks": ["photo2depth"]},
                        "profiles": {"smoke": {"steps": 1}}, "rows": rows}, source="t.toml")


def _records(values: dict[str, list[float]]) -> pd.DataFrame:
    return pd.DataFrame([{"row": r, "task": "photo2depth", "seed": s, "metric": "rel", "value": v, "status": "ok",
                          "reason": "", "protocol_hash": "h1", "code_version": "0.1.0+abc"}
                         for r, vals in values.items() for s, v in enumerate(vals)])


def test_statistics_flag_a_published_value_outside_our_interval():
    from leaderboards.build import leaderboard_frame
    recs = _records({"A": [0.29, 0.30, 0.31], "B": [0.40, 0.41, 0.42], "C": [0.1]})
    long = add_statistics(leaderboard_frame(_suite(), recs), recs, {"photo2depth/rel": False})
    a, b, c = (long.set_index("row").loc[r] for r in "ABC")
    assert a["interval"] == "bootstrap" and not a["outside"] and a["ci_low"] <= 0.30 <= a["ci_high"]
    assert b["outside"] and b["better"] == "lower"
    assert c["interval"] == "" and not c["outside"]


def test_latex_table_is_a_booktabs_tabular_with_consistent_cells():
    from leaderboards.build import leaderboard_frame
    recs = _records({"A": [0.29, 0.30, 0.31], "B": [0.40, 0.41, 0.42], "C": [0.1]})
    long = add_statistics(leaderboard_frame(_suite(), recs), recs, {"photo2depth/rel": False})
    tex = latex_table(long, caption="Depth & co_rel")
    body = tex.split(r"\midrule")[1].split(r"\bottomrule")[0].strip().splitlines()
    spec = re.search(r"\\begin\{tabular\}\{(\w+)\}", tex).group(1)
    assert r"\toprule" in tex and r"\end{tabular}" in tex and r"Depth \& co\_rel" in tex
    assert len(body) == 3 and all(ln.endswith(r"\\") and ln.count(" & ") == len(spec) - 1 for ln in body)
    assert r"\textbf{0.1000}" in tex and "(0.3000)" in tex          # best (lowest rel) in bold, paper in ()


def test_long_frame_round_trips_through_csv(tmp_path):
    from leaderboards.build import leaderboard_frame
    recs = _records({"A": [0.29, 0.30, 0.31], "B": [0.4]})
    long = add_statistics(leaderboard_frame(_suite(), recs), recs, {})
    long.to_csv(tmp_path / "l.csv", index=False)
    back = pd.read_csv(tmp_path / "l.csv", keep_default_na=False, na_values=[""])
    cols = ["row", "mean", "ci_low", "ci_high"]
    pd.testing.assert_frame_equal(back[cols], long[cols])


def _base(mean: float, proto: str = "h1", status: str = "ok") -> pd.DataFrame:
    return pd.DataFrame([{"row": "A", "column": "photo2depth/rel", "mean": mean, "n": 3, "status": status,
                          "protocol_hash": proto, "profile": "smoke", "code_version": "x"}])


def test_regression_comparison():
    assert not compare(_base(0.30), _base(0.30), {}, {}).failed
    moved = compare(_base(0.30), _base(0.32), {}, {})
    assert moved.failed and "A / photo2depth/rel: 0.3 -> 0.32 (+0.02, tolerance 0)" in moved.moved[0]
    assert not compare(_base(0.30), _base(0.32), {"rel": 0.05}, {}).failed           # the suite's tolerance
    assert compare(_base(0.30), _base(0.32), {"rel": 0.05}, {"photo2depth/rel": 0.01}).failed   # CLI wins
    proto = compare(_base(0.30), _base(0.30, proto="h2"), {}, {})
    assert proto.failed and not proto.moved and "h1 -> h2" in proto.protocol_changed[0]
    lost = compare(_base(0.30), _base(math.nan, status="failed"), {}, {})
    assert lost.failed and "now failed" in lost.lost[0]
    assert tolerance_for("photo2depth/rel", {"rel": 0.1}, {}) == 0.1
    assert parse_tolerances(["rel=0.5", "photo2depth/rms=1"]) == {"rel": 0.5, "photo2depth/rms": 1.0}
    with pytest.raises(ConfigError, match="METRIC=VALUE"):
        parse_tolerances(["rel"])


def test_status_page_counts_claims_and_says_what_is_missing(tmp_path):
    suite = _suite()
    folder = tmp_path / "t" / "cpu"
    folder.mkdir(parents=True)
    pd.DataFrame([{"row": "A", "column": "photo2depth/rel", "mean": 0.31, "n": 3, "published": 0.30, "gap": 0.01,
                   "status": "ok", "outside": False},
                  {"row": "B", "column": "photo2depth/rel", "mean": 0.25, "n": 3, "published": 0.20, "gap": 0.05,
                   "status": "ok", "outside": True}]).to_csv(folder / "leaderboard.csv", index=False)
    pd.DataFrame({"verdict": ["reproduced", "not separated", "reproduced"]}).to_csv(folder / "claims.csv", index=False)
    other = parse_suite({"suite": {"name": "gpu-only", "dataset": "cityscapes", "tasks": ["photo2labels"],
                                   "default_profile": "short"},
                         "profiles": {"short": {"steps": 1}}, "rows": [{"name": "A", "discriminator": "patchgan"}]},
                        source="g.toml")
    frame = status_frame([suite, other], tmp_path, {"cityscapes": False})
    t = frame.set_index("suite").loc["t"]
    assert (t["profile"], t["reproduced"], t["claims_tested"], t["not_separated"]) == ("cpu", 2, 3, 1)
    assert t["mean_abs_gap"] == pytest.approx(0.03) and t["outside"] == 1
    md = status_markdown(frame)
    assert "2 / 3 reproduced (1 not separated)" in md
    assert "dataset 'cityscapes' is not on these machines; no cpu profile (profiles: short)" in md


def test_baseline_and_regress_through_the_cli(tmp_path):
    from suite_helpers import bench
    out = tmp_path / "nrds"
    bench("run", "nrds-toy", "--seeds", "1", "--out", str(out), "--no-progress", check=True)
    base = tmp_path / "base.csv"
    bench("baseline", "nrds-toy", "--out", str(out), "--file", str(base), check=True)
    r = bench("regress", "nrds-toy", "--baseline", str(base), "--out", str(out))
    assert r.returncode == 0 and "ok: 0 moved" in r.stdout
    planted = pd.read_csv(base)
    planted.loc[planted["column"] == "points/nrds", "mean"] += 0.01
    planted.to_csv(base, index=False)
    r = bench("regress", "nrds-toy", "--baseline", str(base), "--out", str(out))
    assert r.returncode == 1 and "MOVED" in r.stdout and "points/nrds" in r.stdout and "REGRESSION" in r.stdout
    r = bench("regress", "nrds-toy", "--baseline", str(base), "--out", str(out), "--tolerance", "nrds=0.02")
    assert r.returncode == 0
    planted["protocol_hash"] = "0000000000000000"
    planted.to_csv(base, index=False)
    r = bench("regress", "nrds-toy", "--baseline", str(base), "--out", str(out), "--tolerance", "nrds=0.02")
    assert r.returncode == 1 and "PROTOCOL" in r.stdout and "not compared" in r.stdout
    r = bench("history", "nrds-toy", "--metric", "points/nrds", "--out", str(out), check=True)
    assert "Fake close" in r.stdout and (out / "history-points_nrds.png").is_file()


def test_compare_ranks_a_new_discriminator_beside_the_established_ones(tmp_path):
    from suite_helpers import bench, quickstart_variant
    suite = quickstart_variant(tmp_path, suite={"name": "cmp", "tasks": ["photo2depth"]},
                               metrics={"photo2depth": ["depth"]}, columns={"photo2depth": ["rel", "rms"]},
                               rows=[{"name": "4-Layer Concat", "discriminator": "patchgan"},
                                     {"name": "Fusion + SN", "discriminator": "fusion4-sn"}])
    out = tmp_path / "cmp"
    r = bench("compare", "--discriminator", "patchgan-sn", "--suites", str(suite), "--profile", "tiny", "--out",
              str(out), "--no-progress", "--device", "cpu", check=True)
    frame = pd.read_csv(out / "compare.csv")
    assert set(frame["column"]) >= {"photo2depth/rel", "photo2depth/rms"}
    assert (frame["rows"] == 3).all() and frame["rank"].between(1, 3).all()
    rel = frame.set_index("column").loc["photo2depth/rel"]
    board = pd.read_csv(out / "cmp" / "leaderboard.csv").set_index(["row", "column"])
    means = board.xs("photo2depth/rel", level="column")["mean"]
    assert rel["rank"] == 1 + int((means < means["patchgan-sn (candidate)"]).sum())     # lower rel is better
    assert "patchgan-sn" in r.stdout and (out / "compare.md").is_file()
    bad = bench("compare", "--discriminator", "class-heads", "--suites", str(suite), "--out", str(tmp_path / "x"))
    assert bad.returncode == 2 and "takes forward(y)" in bad.stderr
