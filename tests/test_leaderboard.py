"""The leaderboard frame: means and spread over seeds, gaps to the paper, ranking agreement."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from bench.config import parse_suite
from leaderboards.build import _fmt, directions, leaderboard_frame, rank_agreement, render_markdown, wide_table


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


def _agree(values: dict[str, list[float]]) -> pd.DataFrame:
    long = leaderboard_frame(_suite(), _records(values))
    return rank_agreement(long, directions(_suite(), long))


def test_ranking_agreement():
    same = _agree({"A": [3.0], "B": [2.0], "C": [1.0]})
    assert same["kendall_tau"].item() == pytest.approx(1.0) and same["same_best"].item()
    rev = _agree({"A": [1.0], "B": [2.0], "C": [3.0]})
    assert rev["kendall_tau"].item() == pytest.approx(-1.0) and not rev["same_best"].item()


def test_best_row_follows_the_metric_direction():
    # rel is better low (the depth scorer says so): the paper's best is C (0.10). Ours ranks A highest
    # like the paper, but our lowest is B: the best rows differ, whatever the highest ones say.
    agree = _agree({"A": [0.3], "B": [0.1], "C": [0.2]})
    assert agree["better"].item() == "lower" and not agree["same_best"].item()
    agree = _agree({"A": [0.3], "B": [0.2], "C": [0.05]})
    assert agree["same_best"].item()
    # were the column better high (as a protocol stamped on the records may say), A would be best in both
    long = leaderboard_frame(_suite(), _records({"A": [0.3], "B": [0.1], "C": [0.2]}))
    up = rank_agreement(long, {"photo2depth/rel": True})
    assert up["better"].item() == "higher" and up["same_best"].item()


def test_directions_come_from_the_stamped_protocols_first():
    recs = _records({"A": [0.3], "B": [0.1], "C": [0.2]}).assign(protocol_hash="h1")
    long = leaderboard_frame(_suite(), recs)
    assert directions(_suite(), long) == {"photo2depth/rel": False}
    assert directions(_suite(), long, {"h1": {"higher_is_better": ["rel"]}}, recs) == {"photo2depth/rel": True}


def test_a_key_scored_at_an_earlier_checkpoint_takes_its_base_keys_direction():
    # a protocol lists its base keys only: class_acc[e2] (an epoch's checkpoint) and [s500] (a budget rung) are
    # better high as class_acc is (the cagan-mixed-batch ladder judged them as better low before this was fixed)
    recs = pd.concat([_records({"A": [0.3]}).assign(metric=m) for m in ("rel", "rel[e2]", "rel[s500]")])
    recs = recs.assign(protocol_hash="h1")
    long = leaderboard_frame(_suite(), recs)
    got = directions(_suite(), long, {"h1": {"higher_is_better": ["rel"]}}, recs)
    assert got == {"photo2depth/rel": True, "photo2depth/rel[e2]": True, "photo2depth/rel[s500]": True}
    assert directions(_suite(), long, {"h1": {"higher_is_better": []}}, recs) == dict.fromkeys(got, False)


def test_a_failed_row_shows_in_every_column_without_columns_or_published_values():
    suite = parse_suite({
        "suite": {"name": "t", "dataset": "synthetic-scenes", "tasks": ["photo2depth"]},
        "profiles": {"smoke": {"steps": 1}},
        "rows": [{"name": n, "discriminator": "patchgan"} for n in "AB"]}, source="t.toml")
    recs = _records({"A": [0.3]}, failed=("B",))
    recs = pd.concat([recs, recs.assign(metric="rms", value=1.2)[recs["status"] == "ok"]])
    long = leaderboard_frame(suite, recs)
    b = long[long["row"] == "B"]
    assert list(b["metric"]) == ["rel", "rms"] and (b["status"] == "failed").all()
    assert b["reason"].str.contains("nan at step 3").all()
    only_failed = leaderboard_frame(suite, _records({}, failed=("A", "B")))
    assert list(only_failed["row"]) == ["A", "B"] and (only_failed["status"] == "failed").all()
    assert "B / photo2depth" in render_markdown(suite, only_failed, "smoke", {})


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
    assert wide.iloc[0]["photo2depth/rel"] == "0.3 ± 0.1414" and wide.iloc[1]["photo2depth/rel gap"] == "+0.05"


@pytest.mark.parametrize("value, text", [
    (0.0007712, "0.0007712"), (7.7e-4, "0.00077"), (0.8012, "0.8012"), (0.3, "0.3"), (0.06, "0.06"),
    (145.4955, "145.5"), (1234.5, "1234"), (12345.6, "12346"), (1.0, "1"), (10.0, "10"), (99.99, "99.99"),
    (-0.5, "-0.5"), (2.5e-5, "0.000025"), (1e-7, "1e-07"), (0.0, "0"), (-1234.5, "-1234"), (5e15, "5e+15"),
])
def test_cells_show_four_significant_digits_at_every_scale(value: float, text: str) -> None:
    assert _fmt(value) == text
    if 1e-4 <= abs(value) < 1e3:        # where Python's .4g writes no exponent, the rule is exactly .4g
        assert _fmt(value) == f"{value:.4g}"


def test_mean_std_and_gap_cells_keep_the_digits_of_small_metrics():
    # an ESPNet-feature FID lives around 1e-3: four decimals would show 0.0008 +- 0.0000
    rows = [{"name": n, "discriminator": "patchgan", "published": {"photo2depth/rel": p}}
            for n, p in (("A", 0.0007712), ("B", 145.4955))]
    suite = parse_suite({"suite": {"name": "t", "dataset": "synthetic-scenes", "tasks": ["photo2depth"]},
                         "profiles": {"smoke": {"steps": 1}}, "rows": rows}, source="t.toml")
    recs = _records({"A": [0.00075, 0.00080], "B": [150.0, 141.0]})
    wide = wide_table(leaderboard_frame(suite, recs)).set_index("row")
    assert wide.loc["A", "photo2depth/rel"] == "0.000775 ± 0.00003536"       # std sqrt(1.25e-9)
    assert wide.loc["A", "photo2depth/rel (paper)"] == "0.0007712"
    assert wide.loc["A", "photo2depth/rel gap"] == "+0.0000038"               # 0.000775 - 0.0007712
    assert wide.loc["B", "photo2depth/rel"] == "145.5 ± 6.364"
    assert wide.loc["B", "photo2depth/rel gap"] == "+0.0045"                  # 145.5 - 145.4955
