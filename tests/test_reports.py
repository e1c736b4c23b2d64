"""Leaderboards a reviewer trusts: intervals, the paper's value against them, exports, on hand-made results
against independent references (scipy, enumeration). Regression checks: tests/test_regress.py; bench compare:
tests/test_compare.py."""

from __future__ import annotations

import math
import re

import pandas as pd
import pytest
from scipy import stats as sps

from bench.config import parse_suite
from leaderboards.export import latex_table
from leaderboards.stats import add_statistics, interval


def test_t_interval_for_two_seeds_and_none_for_one():
    lo, hi, how = interval([1.0, 2.0])
    ref = sps.t.interval(0.95, 1, loc=1.5, scale=sps.sem([1.0, 2.0]))
    assert how == "t95" and (lo, hi) == pytest.approx(ref)
    lo, hi, how = interval([1.0])
    assert how == "" and math.isnan(lo) and math.isnan(hi)


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
    assert a["interval"] == "t95" and not a["outside"] and a["ci_low"] <= 0.30 <= a["ci_high"]
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


def test_training_plot_draws_the_suites_scalars_with_the_seeds_band(tmp_path):
    """``training_scalars`` picks what ``training.png`` draws (the new-losses paper's Figure 1: D's loss and the
    latent KL); a scalar no run logged draws nothing rather than an empty panel."""
    from leaderboards.curves import plot_training
    for seed, shift in ((0, 0.0), (1, 1.0)):
        d = tmp_path / "runs" / "vaegan" / f"seed{seed}" / "digits"
        d.mkdir(parents=True)
        pd.DataFrame({"step": [10, 20, 30], "loss_D": [1.0 + shift, 0.8, 0.7], "kl": [5.0, 4.0, 3.0 + shift]}) \
            .to_csv(d / "scalars.csv", index=False)
    out = plot_training(tmp_path, ["VAEGAN"], ["digits"], tmp_path / "training.png", "t", ("loss_D", "kl"))
    assert out is not None and (tmp_path / "training.png").stat().st_size > 1000
    assert plot_training(tmp_path, ["VAEGAN"], ["digits"], tmp_path / "none.png", "t", ("loss_G",)) is None
    assert not (tmp_path / "none.png").exists()


def test_training_panels_use_a_log_axis_only_for_positive_values_spanning_decades():
    """SDKL's latent KL runs from ~50 to ~1e5 nats and D's loss falls to ~1e-3 as D wins: a log axis; a loss that
    crosses zero (WGAN's critic) or stays within a decade keeps the linear one."""
    from leaderboards.curves import wants_log_axis
    assert wants_log_axis(pd.Series([48.0, 120.0, 21147.0, 1e5]))
    assert wants_log_axis(pd.Series([0.004, 0.7, 7.2, float("nan")]))
    assert not wants_log_axis(pd.Series([-3.0, 0.5, 4000.0]))
    assert not wants_log_axis(pd.Series([0.0, 1.0, 5000.0]))
    assert not wants_log_axis(pd.Series([0.5, 0.7, 1.4]))
    assert not wants_log_axis(pd.Series([], dtype=float))


def test_the_html_table_says_which_way_is_better_and_marks_the_best_model_row():
    import pandas as pd

    from leaderboards.report import table_html
    rows = [("A", "t/acc", 0.7, "ok", "higher"), ("B", "t/acc", 0.8, "ok", "higher"), ("Oracle", "t/acc", 0.99, "ok",
            "higher"), ("C", "t/acc", 0.95, "degenerate", "higher"), ("A", "t/l1", 0.3, "ok", "lower"),
            ("B", "t/l1", 0.2, "ok", "lower"), ("A", "t/acc[s500]", 0.5, "ok", "higher"),
            ("B", "t/acc[s500]", 0.6, "ok", "higher"), ("A", "t/l1[s500]", 0.4, "ok", "lower")]
    long = pd.DataFrame([{"row": r, "column": c, "task": "t", "metric": c.split("/")[1], "mean": m, "std": float("nan"),
                          "n": 3, "published": float("nan"), "gap": float("nan"), "status": st, "reason": "",
                          "better": b} for r, c, m, st, b in rows])
    out = table_html(long, claim_columns=["t/acc[s500]"], oracle_rows=["Oracle"])
    assert '<th title="higher is better">t/acc \u2191</th>' in out and '<th title="lower is better">t/l1 \u2193</th>' in out
    assert out.count('class="best"') == 3             # B in acc (not the oracle, not the degenerate C), B in l1 and in
    assert "t/acc[s500]" in out and "t/l1[s500]" not in out   # acc[s500]; only the claimed earlier column is shown


def test_curves_cover_budget_rungs_and_end_at_the_last_checkpoint(tmp_path):
    import pandas as pd

    from leaderboards.curves import curve_frame, plot_curves
    cells = [("A", "fid[s500]", 90.0), ("A", "fid[s1000]", 60.0), ("A", "fid", 40.0), ("B", "fid[s500]", 95.0),
             ("B", "fid", 50.0), ("A", "acc[e1]", 0.5), ("A", "acc[e2]", 0.7), ("A", "acc", 0.8)]
    long = pd.DataFrame([{"row": r, "task": "t", "metric": m, "mean": v, "std": 1.0, "n": 3, "status": "ok"}
                         for r, m, v in cells])
    cf = curve_frame(long, final_steps=2000)
    fid = cf[cf["metric"] == "fid"].sort_values(["row", "x"])
    assert fid[["row", "x", "mean"]].values.tolist() == [["A", 500, 90.0], ["A", 1000, 60.0], ["A", 2000, 40.0],
                                                         ["B", 500, 95.0], ["B", 2000, 50.0]]
    acc = cf[cf["metric"] == "acc"]
    assert set(acc["axis"]) == {"e"} and sorted(acc["x"]) == [1, 2]     # epochs: the last one's epoch is unknown
    assert plot_curves(long, tmp_path / "c.png", "t", final_steps=2000).is_file()
