"""Budget ladders: one longer run per row and seed, scored at every rung's checkpoint (per-run and joint
metrics), and every claim judged again at each rung."""

from __future__ import annotations

import pandas as pd
import pytest

from bench.config import ladder_name, ladder_profile, parse_ladder
from bench.errors import ConfigError
from bench.registry import SUITES
from bench.results import ResultStore
from suite_helpers import bench


def test_a_ladder_profile_trains_the_largest_rung_and_scores_the_others():
    from bench.config import load_suite
    suite = load_suite(SUITES.get("decoupled-table2-mnist"))
    assert ladder_name("cpu", [0.3, 1.0, 3.0]) == "cpu@x0.3-1-3" and parse_ladder("cpu@x0.3-1-3") == ("cpu", [0.3, 1, 3])
    base = suite.profile("cpu")
    lad = suite.profile("cpu@x0.3-1-3")
    assert lad.steps == 3 * base.steps and lad.eval_steps == [round(0.3 * base.steps), base.steps]
    assert (lad.batch_size, lad.options) == (base.batch_size, base.options)          # nothing else changes
    assert ladder_profile(base, [2.0]).eval_steps == []
    for bad in ("cpu@x", "cpu@x3-1", "cpu@x0-1", "@x1-2", "cpu@xa"):
        with pytest.raises(ConfigError, match="budget ladder"):
            suite.profile(bad)


@pytest.mark.slow
def test_budget_runs_score_every_rung_and_judge_claims_per_rung(tmp_path):
    out = tmp_path / "ladder"
    bench("run", "decoupled-table2-mnist", "--profile", "smoke", "--budget", "0.5,1", "--seeds", "1", "--out",
          str(out), "--no-progress", "--device", "cpu", check=True)
    store = ResultStore(out / "results.sqlite")
    recs = store.latest(suite="decoupled-table2-mnist")
    assert set(recs["profile"]) == {"smoke@x0.5-1"}
    # 20 smoke steps: rungs at step 10 and the end (20); the joint NRDS and the per-run L1 at both
    for key in ("nrds", "nrds[s10]", "l1", "l1[s10]"):
        got = recs[(recs["metric"] == key) & (recs["status"] == "ok")]
        assert len(got) == 8, key                                            # 8 rows, one seed
    assert recs[recs["metric"] == "nrds[s10]"]["value"].sum() == pytest.approx(1.0)   # one classifier, 8 models
    assert recs[recs["metric"] == "nrds[s10]"]["checkpoint"].str.contains("step_00000010").all()
    budget = pd.read_csv(out / "claims_by_budget.csv")
    assert set(budget["point"]) == {"autoencode-digits/nrds[s10]", "autoencode-digits/nrds"}
    assert list(dict.fromkeys(budget["label"])) == ["step 10 (x0.5)", "end, step 20 (x1)"]
    assert "## Claims by training budget" in (out / "leaderboard.md").read_text()
