"""Every run in a process of its own (issue 22, items 3-5): a plug-in that calls ``sys.exit``, ``os._exit``, raises
``KeyboardInterrupt``, hangs, or changes torch's global state costs its own row only, recorded failed with the
reason; the other rows run and give the numbers they give alone. Before, the first three ended the whole suite
silently, a hang kept it stuck for ever, and a float64 default dtype changed the next row's numbers."""

from __future__ import annotations

import textwrap

import pandas as pd
import pytest

from bench.jobs import Limits
from suite_helpers import SCORED, bench, quickstart_variant

PLUGIN = textwrap.dedent('''
    import os, sys, time
    import torch
    from bench.registry import DISCRIMINATORS
    from methods.discriminators.patchgan import PatchGAN

    class _Faulty(PatchGAN):
        def forward(self, *args, **kwargs):
            self.fault()
            return super().forward(*args, **kwargs)

    @DISCRIMINATORS.register("exits")
    class Exits(_Faulty):
        def fault(self):
            sys.exit(3)

    @DISCRIMINATORS.register("os-exits")
    class OsExits(_Faulty):
        def fault(self):
            os._exit(1)

    @DISCRIMINATORS.register("interrupts")
    class Interrupts(_Faulty):
        def fault(self):
            raise KeyboardInterrupt

    @DISCRIMINATORS.register("hangs")
    class Hangs(_Faulty):
        def fault(self):
            time.sleep(3600)

    @DISCRIMINATORS.register("float64")
    class Float64(PatchGAN):
        def __init__(self, *args, **kwargs):
            torch.set_default_dtype(torch.float64)          # global state, changed and never restored
            super().__init__(*args, **kwargs)
''')

FAULTS = {"sys.exit": "exits", "os._exit": "os-exits", "KeyboardInterrupt": "interrupts", "float64": "float64",
          "hangs": "hangs"}


def _suite(tmp, rows):
    return quickstart_variant(tmp, suite={"name": "isolation", "tasks": ["photo2depth"], "default_profile": "tiny"},
                              metrics={"photo2depth": ["depth"]}, columns={"photo2depth": ["rel", "rms"]}, rows=rows)


@pytest.mark.slow
def test_a_plugin_that_exits_hangs_or_leaks_state_costs_its_own_row(tmp_path):
    (tmp_path / "faulty.py").write_text(PLUGIN)
    env = {"PYTHONPATH": str(tmp_path)}
    fine = {"name": "Fine", "discriminator": "patchgan"}
    rows = [{"name": name, "discriminator": d} for name, d in FAULTS.items()] + [fine]
    out, alone = tmp_path / "out", tmp_path / "alone"
    args = ("--profile", "tiny", "--deterministic", "--no-progress", "--device", "cpu")
    r = bench("--plugin", "faulty", "run", str(_suite(tmp_path, rows)), *args, "--out", str(out),
              "--stall-limit", "0.3", env=env, timeout=600)
    assert r.returncode == 0, r.stderr
    assert "6 run(s) done" in r.stdout and "5 failed" in r.stdout          # float64 fails its own row too
    board = pd.read_csv(out / "leaderboard.csv").set_index(["row", "metric"])
    reason = {row: board.loc[(row, "rel"), "reason"] for row in FAULTS}
    assert "SystemExit(3)" in reason["sys.exit"]
    assert "died without a result (exit code 1" in reason["os._exit"]
    assert "KeyboardInterrupt" in reason["KeyboardInterrupt"]
    assert "stalled" in reason["hangs"] and "0.3 min" in reason["hangs"]
    assert all(board.loc[(row, "rel"), "status"] == "failed" for row in FAULTS)
    # the float64 row's global dtype died with its process: the next row gives the numbers it gives alone
    (tmp_path / "a").mkdir()
    bench("run", str(_suite(tmp_path / "a", [fine])), *args, "--out", str(alone), check=True)
    ref = pd.read_csv(alone / "leaderboard.csv").set_index(["row", "metric"])
    assert board.loc[("Fine", "rel"), "status"] in SCORED
    pd.testing.assert_series_equal(board.loc["Fine"]["mean"], ref.loc["Fine"]["mean"])


def test_limits_end_a_run_past_its_wall_time_or_without_a_heartbeat():
    lim = Limits(wall_s=600, stall_s=60)
    assert lim.overdue(started=0, last_beat=0, now=59) is None
    assert "stalled" in lim.overdue(started=0, last_beat=0, now=61)
    assert lim.overdue(started=0, last_beat=590, now=599) is None
    assert "wall-time limit of 10 min" in lim.overdue(started=0, last_beat=600, now=601)
    assert Limits().overdue(started=0, last_beat=0, now=1e9) is None


def test_the_wall_time_default_grows_with_the_steps():
    from bench.config import Profile
    assert Profile(steps=0).wall_limit_s() == 120 * 60
    assert Profile(steps=1200).wall_limit_s() == (120 + 600) * 60
    assert Profile(steps=1200, time_limit_min=5).wall_limit_s() == 300


@pytest.mark.slow
def test_in_process_runs_one_after_the_other_here(tmp_path):
    """--in-process (a debugger's choice) is still there and gives the numbers the isolated default gives."""
    rows = [{"name": "Fine", "discriminator": "patchgan"}]
    args = ("--profile", "tiny", "--deterministic", "--no-progress", "--device", "cpu")
    a, b = tmp_path / "a", tmp_path / "b"
    suite = _suite(tmp_path, rows)
    bench("run", str(suite), *args, "--out", str(a), check=True)
    bench("run", str(suite), *args, "--out", str(b), "--in-process", check=True)
    pd.testing.assert_frame_equal(pd.read_csv(a / "leaderboard.csv"), pd.read_csv(b / "leaderboard.csv"))
