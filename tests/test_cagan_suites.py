"""The conditional-activation-GAN suites (papers.md B) end to end on their smoke profiles: every row
trains, is scored by per-class FID, class accuracy and MS-SSIM diversity over training, and the
leaderboard checks the paper's claims; after a few hundred steps CA-GAN already obeys the condition."""

from __future__ import annotations

import pandas as pd
import pytest

from leaderboards.claims import VERDICTS
from suite_helpers import bench

SUITES = ["cagan-vs-acgan", "cagan-mixed-batch", "cagan-acgan-ablation"]


@pytest.mark.slow
@pytest.mark.parametrize("suite", SUITES)
def test_smoke_profile(suite, tmp_path):
    out = tmp_path / suite
    r = bench("-v", "run", suite, "--profile", "smoke", "--seeds", "1", "--out", str(out), "--no-progress", "--device",
              "cpu", check=True, timeout=1200)
    # the class-accuracy check loads the MNIST judge before training, at one thread: the runs are forked from the
    # command, not from a fork server (which loses the command's OpenMP state) or spawned (3 s of imports each)
    assert "workers started by fork" in r.stderr and "workers started by forkserver" not in r.stderr
    board = pd.read_csv(out / "leaderboard.csv")
    assert (board["status"] == "ok").all(), board[board["status"] != "ok"][["row", "metric", "reason"]]
    keys = set(board["metric"])
    assert {"fid_class_mean", "class_acc", "ms_ssim"} <= keys
    claims = pd.read_csv(out / "claims.csv")
    assert len(claims) >= 3 and set(claims["verdict"]) <= set(VERDICTS)
    assert "## Published claims" in (out / "leaderboard.md").read_text()
    runs = sorted((out / "runs").glob("*/seed0/class2image/samples.png"))
    assert len(runs) == board["row"].nunique()
    if suite == "cagan-vs-acgan":
        assert (out / "curves.png").is_file() and "fid_class_mean[e1]" in keys
        acc = board.set_index(["row", "metric"]).loc[("CA-GAN", "class_acc"), "mean"]
        # chance is 0.1; 500 samples put 3 standard errors at +0.04
        assert acc > 0.15, f"CA-GAN's samples are recognised as the requested digit only {acc:.3f} of the time"
