"""`bench run nrds-toy`: the NRDS toy through the ordinary train-score path, NRDS as a joint metric
(each row a fixed Gaussian "model"; one classifier per seed scores both rows together)."""

from __future__ import annotations

import pandas as pd
import pytest

from bench.results import ResultStore
from suite_helpers import bench

# The ideal classifier D = p / (p + q_pooled) gives NRDS 0.618 / 0.382 for the toy's unit-variance
# Gaussians (tests/test_metrics_nrds.py integrates it); a trained MLP lands near it.
CALIBRATED_CLOSE = 0.618


@pytest.mark.slow
def test_nrds_toy_suite(tmp_path):
    out = tmp_path / "nrds"
    bench("run", "nrds-toy", "--seeds", "2", "--out", str(out), "--no-progress", check=True)
    board = pd.read_csv(out / "leaderboard.csv").set_index(["row", "metric"])
    close = board.loc[("Fake close (mean [0.5, 0])", "nrds")]
    far = board.loc[("Fake far (mean [1.5, 0])", "nrds")]
    assert close["published"] == 0.6717 and far["published"] == 0.3283
    assert close["n"] == 2 and close["mean"] + far["mean"] == pytest.approx(1.0)
    assert close["mean"] == pytest.approx(CALIBRATED_CLOSE, abs=0.02)
    recs = ResultStore(out / "results.sqlite").frame(metric="nrds")
    for _, g in recs.groupby("seed"):                      # per seed the scores are a distribution
        assert g["value"].sum() == pytest.approx(1.0)
    assert len(set(recs["protocol_hash"])) == 1            # one protocol: both models, every seed
    assert (out / "joint" / "seed0" / "points" / "nrds_curves.png").is_file()
    again = bench("run", "nrds-toy", "--seeds", "2", "--out", str(out), "--resume", "--no-progress", check=True)
    assert "0 run(s) done, 4 skipped" in again.stdout
    assert ResultStore(out / "results.sqlite").count(metric="nrds") == 4      # nothing scored twice
