"""End to end through the CLI on the quickstart's tiny profile: determinism, SIGKILL + resume,
plug-in discriminators as suite rows, the divergence guard, and one-line errors."""

from __future__ import annotations

import json
import re
import signal
import textwrap
import time
from pathlib import Path

import pandas as pd
import pytest

from suite_helpers import SCORED, bench, popen_bench, quickstart_variant, assert_scored

ROW = "4-Layer Concat + SN"
ARGS = ("run", "quickstart", "--profile", "tiny", "--rows", ROW, "--deterministic", "--no-progress",
        "--device", "cpu")


def _board(out: Path) -> pd.DataFrame:
    return pd.read_csv(out / "leaderboard.csv")


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ref") / "out"
    bench(*ARGS, "--out", str(out), check=True)
    return out


def test_run_writes_the_promised_files(reference_run):
    out = reference_run
    for f in ("leaderboard.md", "leaderboard.csv", "leaderboard.png", "results.sqlite"):
        assert (out / f).is_file(), f
    board = _board(out)
    assert set(board["task"]) == {"labels2photo", "photo2labels", "photo2depth"}
    assert_scored(board)
    assert board["mean"].notna().all() and (board["mean"].abs() < 1e6).all()
    assert (out / "runs" / "4-layer-concat-sn" / "seed0" / "photo2depth" / "checkpoints").is_dir()
    assert "4-Layer Concat + SN" in (out / "leaderboard.md").read_text()


def test_deterministic_runs_are_identical(reference_run, tmp_path):
    out = tmp_path / "again"
    bench(*ARGS, "--out", str(out), check=True)
    assert (out / "leaderboard.csv").read_bytes() == (reference_run / "leaderboard.csv").read_bytes()


@pytest.mark.slow
def test_sigkill_then_resume_gives_the_same_leaderboard(reference_run, tmp_path):
    out = tmp_path / "killed"
    target = out / "runs" / "4-layer-concat-sn" / "seed0" / "photo2labels" / "checkpoints"
    p = popen_bench(*ARGS, "--out", str(out))
    deadline = time.time() + 600
    while time.time() < deadline and p.poll() is None:
        if target.is_dir() and any(c.name.startswith("step_") for c in target.iterdir()):
            break
        time.sleep(0.05)
    assert p.poll() is None, f"run ended before it could be killed: {p.stderr.read() if p.stderr else ''}"
    p.send_signal(signal.SIGKILL)
    p.wait()
    assert not (out / "leaderboard.csv").exists()
    r = bench(*ARGS, "--out", str(out))
    assert r.returncode == 2 and "--resume" in r.stderr          # refuses to overwrite without --resume
    bench(*ARGS, "--out", str(out), "--resume", check=True)
    # byte for byte: a tolerance hid a resume that shifted every later dropout mask
    assert (out / "leaderboard.csv").read_bytes() == (reference_run / "leaderboard.csv").read_bytes()


PLUGIN = textwrap.dedent('''
    import torch
    from bench.registry import DISCRIMINATORS

    @DISCRIMINATORS.register("outside-d")
    class OutsideD(torch.nn.Module):
        """A discriminator defined outside the repository."""
        def __init__(self, x_channels, y_channels, *, image_size=256, ndf=64):
            super().__init__()
            self.net = torch.nn.Sequential(
                torch.nn.Conv2d(x_channels + y_channels, ndf, 4, 2, 1), torch.nn.LeakyReLU(0.2),
                torch.nn.Conv2d(ndf, 1, 3, 1, 1))

        def forward(self, x, y):
            return self.net(torch.cat([x, y], 1))

    @DISCRIMINATORS.register("nan-d")
    class NaND(OutsideD):
        """Returns NaN logits from its fifth call on, to trip the divergence guard."""
        calls = 0
        def forward(self, x, y):
            NaND.calls += 1
            out = super().forward(x, y)
            return out * float("nan") if NaND.calls >= 5 else out

    @DISCRIMINATORS.register("boom-d")
    class BoomD(OutsideD):
        """A plug-in with a bug: its forward raises."""
        def forward(self, x, y):
            raise RuntimeError("boom: shapes do not line up\\nsecond line of the message")

    @DISCRIMINATORS.register("empty-d")
    class EmptyD(OutsideD):
        """Returns an empty tensor."""
        def forward(self, x, y):
            return torch.empty(0)
''')


@pytest.mark.slow
def test_plugin_discriminator_runs_as_a_row_and_divergence_is_recorded(tmp_path):
    (tmp_path / "outside_plugin.py").write_text(PLUGIN)
    suite = quickstart_variant(
        tmp_path, suite={"name": "plug", "tasks": ["photo2depth"]},
        metrics={"photo2depth": ["depth"]}, columns={"photo2depth": ["rel", "rms"]},
        rows=[{"name": "Boom D", "discriminator": "boom-d"}, {"name": "Outside D", "discriminator": "outside-d"},
              {"name": "NaN D", "discriminator": "nan-d"}, {"name": "Empty D", "discriminator": "empty-d"}])
    out = tmp_path / "out"
    env = {"PYTHONPATH": str(tmp_path)}
    r = bench("run", str(suite), "--profile", "tiny", "--out", str(out), "--no-progress", "--device", "cpu")
    assert r.returncode == 2 and "boom-d" in r.stderr and "--plugin" in r.stderr   # unknown without the plug-in
    bench("--plugin", "outside_plugin", "run", str(suite), "--profile", "tiny", "--out", str(out),
          "--no-progress", "--device", "cpu", env=env, check=True)
    board = _board(out).set_index(["row", "metric"])
    assert board.loc[("Outside D", "rel"), "status"] in SCORED           # scored (a 6-step model may be degenerate)
    assert board.loc[("Outside D", "rel"), "mean"] > 0
    failed = board.loc[("NaN D", "rel")]
    assert failed["status"] == "failed"
    assert re.search(r"^training diverged: loss 'loss_[DG]' = nan at step \d+$", failed["reason"])
    # regression: a plug-in that raises ended the suite with a traceback; now it costs one row
    boom = board.loc[("Boom D", "rel")]
    assert boom["status"] == "failed" and boom["reason"].startswith("RuntimeError: boom: shapes do not line up")
    assert "second line" not in boom["reason"] and "error.txt" in boom["reason"]
    assert (out / "runs" / "boom-d" / "seed0" / "photo2depth" / "error.txt").read_text().count("Traceback") == 1
    empty = board.loc[("Empty D", "rel")]
    assert empty["status"] == "failed" and empty["reason"].startswith("a discriminator returned empty logits")
    # --plugin is remembered by the run: scoring its checkpoint names it, and is refused (one line) without it
    info = json.loads(next((out / "runs" / "outside-d").rglob("run.json")).read_text())
    assert [p["module"] for p in info["plugins"]] == ["outside_plugin"] and len(info["plugins"][0]["sha256"]) == 64
    run = str(out / "runs" / "outside-d" / "seed0" / "photo2depth")
    r = bench("score", run, "--no-progress", env=env)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "--plugin outside_plugin" in r.stderr
    r = bench("--plugin", "outside_plugin", "score", run, "--no-progress", env=env, check=True)
    assert re.search(r"^photo2depth/rel\t", r.stdout, re.M)
    # a single run through `bench train` tells the plug-in's fault in one line too
    r = bench("--plugin", "outside_plugin", "train", str(suite), "--row", "Boom D", "--profile", "tiny",
              "--out", str(tmp_path / "single"), "--no-progress", "--device", "cpu", env=env)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "RuntimeError: boom" in r.stderr
    assert "error.txt" in r.stderr


def test_user_errors_exit_2_with_one_line(tmp_path):
    r = bench("run", "no-such-suite")
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "quickstart" in r.stderr
    r = bench("run", "quickstart", "--profile", "galactic", "--out", str(tmp_path / "x"))
    assert r.returncode == 2 and "galactic" in r.stderr and "smoke" in r.stderr
    r = bench("score", str(tmp_path / "missing"))
    assert r.returncode == 2 and r.stderr.count("\n") == 1
    empty = tmp_path / "no-data"
    empty.mkdir()
    r = bench("run", "fusion-table3", "--out", str(tmp_path / "t3"), env={"BENCH_DATA_ROOT": str(empty)})
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "bench data prepare" in r.stderr
    assert not (tmp_path / "t3").exists()                 # nothing written before the data is there


def test_corrupt_checkpoint_is_one_line_error(reference_run, tmp_path):
    import shutil
    run = tmp_path / "run"
    shutil.copytree(reference_run / "runs" / "4-layer-concat-sn" / "seed0" / "photo2depth", run)
    latest = sorted((run / "checkpoints").iterdir())[-1]
    w = latest / "weights.safetensors"
    w.write_bytes(w.read_bytes()[: w.stat().st_size // 2])
    r = bench("score", str(latest), "--no-progress")
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "weights.safetensors" in r.stderr


def test_list_shows_discriminators_with_parameter_counts():
    r = bench("list", "discriminators", check=True)
    assert "patchgan-sn" in r.stdout and "params" in r.stdout
