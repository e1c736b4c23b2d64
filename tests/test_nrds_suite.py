"""`bench run nrds-toy`: the NRDS toy as a suite (one classifier scores both sets per seed)."""

from __future__ import annotations

import pandas as pd
import pytest

from bench.results import ResultStore
from suite_helpers import bench


def test_nrds_toy_suite(tmp_path):
    out = tmp_path / "nrds"
    bench("run", "nrds-toy", "--seeds", "2", "--out", str(out), "--no-progress", check=True)
    board = pd.read_csv(out / "leaderboard.csv").set_index(["row", "metric"])
    close = board.loc[("Fake close (mean [0.5, 0])", "nrds")]
    far = board.loc[("Fake far (mean [1.5, 0])", "nrds")]
    assert close["published"] == 0.6717 and far["published"] == 0.3283
    assert close["n"] == 2 and close["mean"] + far["mean"] == pytest.approx(1.0)
    assert close["mean"] > far["mean"]                     # the closer set looks more real
    recs = ResultStore(out / "results.sqlite").frame(metric="nrds")
    for _, g in recs.groupby("seed"):                      # per seed the scores are a distribution
        assert g["value"].sum() == pytest.approx(1.0)
    assert (out / "runs" / "seed0" / "nrds_curves.png").is_file()
    again = bench("run", "nrds-toy", "--seeds", "2", "--out", str(out), "--resume", "--no-progress", check=True)
    assert "0 run(s) done, 2 skipped" in again.stdout
