"""Nothing lost, nothing silently wrong: a SIGKILL at any point, then --resume, gives the same bytes;
every user error is one line and exit 2; a faulty plug-in, a blown-up model or a missing weights
file costs one row or nothing, never the suite; two commands never write one folder."""

from __future__ import annotations

import shutil
import signal
import textwrap
from pathlib import Path

import pandas as pd
import pytest

from bench.checkpoint import list_checkpoints
from bench.schema import slug
from suite_helpers import SCORED, bench, quickstart_variant

ROW = "4-Layer Concat + SN"
FAULT_SUITE = dict(suite={"name": "faults", "tasks": ["photo2depth", "photo2labels"]},
                   metrics={"photo2depth": ["depth"], "photo2labels": ["segmentation"]},
                   columns={"photo2depth": ["rel", "rms"], "photo2labels": ["pixel_acc", "mean_iou"]})
RUN = ("--profile", "tiny", "--deterministic", "--no-progress", "--device", "cpu")


@pytest.fixture(scope="module")
def fault_suite(tmp_path_factory) -> tuple[Path, Path]:
    """A two-task suite and its uninterrupted leaderboard."""
    tmp = tmp_path_factory.mktemp("faults")
    suite = quickstart_variant(tmp, **FAULT_SUITE, rows=[{"name": ROW, "discriminator": "patchgan-sn"}])
    ref = tmp / "reference"
    bench("run", str(suite), *RUN, "--out", str(ref), check=True)
    return suite, ref


# SIGKILL at each kind of point (the n-th time it is reached), then resume: byte-identical leaderboard.
KILL_POINTS = ["train-step:2", "checkpoint:1", "score-batch:1", "records:1", "leaderboard:1"]


@pytest.mark.parametrize("point", KILL_POINTS)
@pytest.mark.slow
def test_sigkill_anywhere_then_resume_is_byte_identical(fault_suite, tmp_path, point):
    suite, ref = fault_suite
    out = tmp_path / "out"
    r = bench("run", str(suite), *RUN, "--out", str(out), env={"BENCH_FAILPOINT": point})
    assert r.returncode == -signal.SIGKILL, f"{point} was not reached: {r.returncode} {r.stderr[-300:]}"
    if point != "leaderboard:1":
        assert not (out / "leaderboard.csv").exists()
    bench("run", str(suite), *RUN, "--out", str(out), "--resume", check=True)
    assert (out / "leaderboard.csv").read_bytes() == (ref / "leaderboard.csv").read_bytes()


@pytest.mark.slow
def test_resume_refuses_a_changed_configuration(fault_suite, tmp_path):
    suite, ref = fault_suite
    out = tmp_path / "out"
    shutil.copytree(ref, out)
    changed = suite.with_name("changed.toml")
    changed.write_text(suite.read_text().replace('"lambda_l1" = 100.0', '"lambda_l1" = 10.0'))
    r = bench("run", str(changed), *RUN, "--out", str(out), "--resume")
    assert r.returncode == 2 and r.stderr.count("\n") == 1
    assert "trained with another configuration (method_options.lambda_l1: 100.0 -> 10.0)" in r.stderr
    assert "--force-resume" in r.stderr
    before = (out / "results.sqlite").read_bytes()
    r = bench("train", str(changed), "--row", ROW, "--task", "photo2depth", *RUN[:2], "--out", str(out), "--resume",
              "--no-progress")
    assert r.returncode == 2 and "another configuration" in r.stderr
    assert (out / "results.sqlite").read_bytes() == before
    # more steps, or another checkpoint interval, is not another configuration
    longer = suite.with_name("longer.toml")
    longer.write_text(suite.read_text().replace('"checkpoint_every" = 3', '"checkpoint_every" = 2'))
    bench("run", str(longer), *RUN, "--out", str(out), "--resume", check=True)


def test_resume_refuses_a_hand_edited_run_json(fault_suite, tmp_path):
    """run.json's configuration edited (another lambda_l1, its hash kept, the manifest re-signed): resume compares
    the stored configuration itself, not only its hash (issue 22, item 8: it was resumed without a word)."""
    import json
    from bench.provenance import file_sha256
    suite, ref = fault_suite
    out = tmp_path / "out"
    shutil.copytree(ref, out)
    for info in out.rglob("run.json"):
        d = json.loads(info.read_text())
        d["training_config"]["method_options"]["lambda_l1"] = 10.0
        info.write_text(json.dumps(d))
        man = info.parent / "manifest.json"
        m = json.loads(man.read_text())
        m["files"]["run.json"] = {"sha256": file_sha256(info), "size": info.stat().st_size}
        man.write_text(json.dumps(m))
    r = bench("train", str(suite), "--row", ROW, "--task", "photo2depth", *RUN[:2], "--out", str(out), "--resume",
              "--no-progress")
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "does not match its own hash" in r.stderr


PLUGIN = textwrap.dedent('''
    import torch
    from bench.registry import DISCRIMINATORS, GENERATORS
    from methods.generators.unet import UNetGenerator

    @GENERATORS.register("inf-bn-unet")
    class InfBN(UNetGenerator):
        """A U-Net whose BatchNorm statistics blow up to inf after a few steps (losses stay finite)."""
        def forward(self, x):
            if self.training:
                with torch.no_grad():
                    for m in self.modules():
                        if isinstance(m, torch.nn.BatchNorm2d):
                            m.running_var.fill_(float("inf"))
            return super().forward(x)
''')


def test_blown_up_models_are_failed_rows_not_ranked(tmp_path):
    (tmp_path / "fault_plugin.py").write_text(PLUGIN)
    suite = quickstart_variant(
        tmp_path, suite={"name": "blowup", "tasks": ["photo2depth"], "default_profile": "tiny"},
        metrics={"photo2depth": ["depth"]},
        columns={"photo2depth": ["rel"]},
        rows=[{"name": "Huge lr", "discriminator": "patchgan", "options": {"lr_g": 1e4, "lr_d": 1e4}},
              {"name": "Inf BN", "discriminator": "patchgan", "generator": "inf-bn-unet"},
              {"name": "Fine", "discriminator": "patchgan"}],
        profiles={"tiny": {**_quickstart()["profiles"]["tiny"], "explode_above": 1000.0}})
    out = tmp_path / "out"
    bench("--plugin", "fault_plugin", "run", str(suite), "--profile", "tiny", "--out", str(out), "--no-progress",
          "--device", "cpu", env={"PYTHONPATH": str(tmp_path)}, check=True)
    board = pd.read_csv(out / "leaderboard.csv").set_index("row")
    assert board.loc["Fine", "status"] in SCORED                          # scored (6 steps: maybe degenerate)
    huge = board.loc["Huge lr"]
    assert huge["status"] == "failed" and "exceeds explode_above = 1000" in huge["reason"]
    assert board.loc["Inf BN", "status"] == "failed"
    assert "module 'G' holds non-finite values in buffer" in board.loc["Inf BN", "reason"]
    assert "running_var" in board.loc["Inf BN", "reason"]


def test_missing_scoring_weights_fail_before_the_first_step(tmp_path, data_root):
    fake = tmp_path / "data"
    fake.mkdir()
    (fake / "cityscapes_pix2pix").symlink_to(data_root / "cityscapes_pix2pix")     # data, but no ESPNet weights
    out = tmp_path / "t1"
    r = bench("run", "fusion-table1", "--out", str(out), "--no-progress", env={"BENCH_DATA_ROOT": str(fake)})
    assert r.returncode == 2 and r.stderr.count("\n") == 1
    assert "ESPNet weights not found" in r.stderr
    assert not out.exists()                                  # nothing trained, nothing written


def test_the_output_folder_is_locked(fault_suite, tmp_path):
    import fcntl
    suite, _ = fault_suite
    out = tmp_path / "locked"
    out.mkdir()
    with open(out / ".bench.lock", "a+") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        f.write("pid 12345 since today")
        f.flush()
        r = bench("run", str(suite), *RUN, "--out", str(out))
        assert r.returncode == 2 and r.stderr.count("\n") == 1 and "in use by another bench command" in r.stderr
        assert "pid 12345" in r.stderr and not (out / "results.sqlite").exists()


# -- every user error: one line, exit 2, nothing written or lost ---------------------------------------
def _quickstart() -> dict:
    import tomllib
    return tomllib.loads((Path(__file__).resolve().parents[1] / "leaderboards" / "quickstart.toml").read_text())


def _quick(tmp: Path, **profile) -> Path:
    tmp.mkdir(parents=True, exist_ok=True)
    return quickstart_variant(tmp, suite={"default_profile": "tiny"},
                              profiles={"tiny": {"steps": 2, "image_size": 32, **profile}})


def _case_suite(tmp: Path, text: str, name: str) -> Path:
    p = tmp / f"{name}.toml"
    p.write_text(text)
    return p


def _cases(tmp: Path, data_root: Path) -> list[tuple[str, list[str], dict, str]]:
    base = (Path(__file__).resolve().parents[1] / "leaderboards" / "quickstart.toml").read_text()
    (tmp / "dir.toml").mkdir()
    (tmp / "latin1.toml").write_bytes("name = 'caf\xe9'".encode("latin-1"))
    (tmp / "afile").write_text("not a folder")
    (tmp / "broken_plugin.py").write_text("def oops(:\n")
    empty = tmp / "empty-data"
    empty.mkdir()
    return [
        ("unknown suite", ["run", "no-such-suite"], {}, "quickstart"),
        ("unknown profile", ["run", "quickstart", "--profile", "galactic"], {}, "smoke"),
        ("zero steps", ["run", str(_quick(tmp / "a", steps=0)), "--profile", "tiny"], {}, "steps = 0"),
        ("negative steps", ["run", str(_quick(tmp / "b", steps=-3)), "--profile", "tiny"], {}, "'steps'"),
        ("zero batch size", ["run", str(_quick(tmp / "c", batch_size=0)), "--profile", "tiny"], {}, "'batch_size'"),
        ("zero image size", ["run", str(_quick(tmp / "d", image_size=0)), "--profile", "tiny"], {}, "'image_size'"),
        ("d_steps 0", ["run", str(_case_suite(tmp, base.replace("d_steps = 1", "d_steps = 0"), "d0"))], {},
         "'d_steps'"),
        ("negative lr", ["run", str(_case_suite(tmp, base.replace("beta1 = 0.0", "beta1 = 0.0\nlr_g = -1.0"), "lr"))],
         {}, "'lr_g'"),
        ("unknown loss", ["run", str(_case_suite(tmp, base.replace("beta1 = 0.0", "beta1 = 0.0\nloss = 'wass'"),
                                                 "loss"))], {}, "[options] loss: 'wass' is not a registered loss"),
        ("a folder as the suite", ["run", str(tmp / "dir.toml")], {}, "is a folder"),
        ("a non-UTF-8 suite file", ["run", str(tmp / "latin1.toml")], {}, "not UTF-8"),
        ("bogus device", ["run", "quickstart", "--device", "bogus"], {}, "--device bogus"),
        ("--out is a file", ["run", "quickstart", "--out", str(tmp / "afile")], {}, "is a file"),
        ("plug-in with a syntax error", ["--plugin", "broken_plugin", "list"], {"PYTHONPATH": str(tmp)},
         "SyntaxError"),
        ("missing plug-in", ["--plugin", "no_such_module", "list"], {}, "cannot import plug-in module"),
        ("missing data", ["run", "fusion-table3"], {"BENCH_DATA_ROOT": str(empty)}, "bench data prepare"),
        ("score a missing path", ["score", str(tmp / "missing")], {}, "not found"),
        ("score a suite's output folder", ["score", str(tmp / "suite-out")], {}, "a suite's output folder"),
        ("unknown row", ["run", "quickstart", "--rows", "Nope"], {}, "has no row 'Nope'"),
        ("an hour-long profile on the CPU", ["run", "newlosses", "--profile", "cpu", "--device", "cpu"], {},
         "profile 'cpu' of newlosses takes about 2.0 h on 2 CPU cores for the runs chosen; pass --yes"),
        ("a GPU profile on the CPU", ["run", "context-encoder", "--profile", "short", "--device", "cpu"], {},
         "profile 'short' of context-encoder is sized for a GPU and this run would use the CPU; pass --yes"),
        ("unknown task", ["run", "quickstart", "--tasks", "photo2depht"], {},
         "--tasks 'photo2depht' is not a task of suite 'quickstart'; its tasks: labels2photo, photo2labels"),
        ("train an unknown task", ["train", "quickstart", "--row", ROW, "--task", "nope"], {}, "has no task"),
        ("leaderboard without results", ["leaderboard", "quickstart", "--out", str(tmp / "nothing")], {},
         "no results"),
        ("prepare without --src", ["data", "prepare", "cityscapes"], {}, "--src"),
        ("unknown dataset", ["data", "check", "imagenet-42"], {}, "unknown dataset"),
    ]


def test_user_errors_are_one_line_and_exit_2(tmp_path, data_root, capsys, monkeypatch):
    """In-process through ``bench.cli.main`` (the exit path itself is tested end to end in test_suite_e2e)."""
    from bench.cli import main
    (tmp_path / "suite-out" / "runs").mkdir(parents=True)
    (tmp_path / "suite-out" / "results.sqlite").write_bytes(b"")
    before = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*")}
    for name, args, env, expect in _cases(tmp_path, data_root):
        out = tmp_path / "out" / name.replace(" ", "-")
        extra = ["--out", str(out)] if args[0] == "run" and "--out" not in args else []
        with monkeypatch.context() as m:
            for k, v in env.items():
                m.setenv(k, v)
                if k == "PYTHONPATH":
                    m.syspath_prepend(v)
            rc = main([*args, *extra, "--no-progress"] if args[0] in ("run", "train", "score") else [*args, *extra])
        err = capsys.readouterr().err
        assert rc == 2, f"{name}: exit {rc}\n{err[-600:]}"
        assert err.count("\n") == 1 and "Traceback" not in err, f"{name}: {err}"
        assert expect in err, f"{name}: {err}"
        assert not out.exists(), f"{name}: wrote {out}"
    after = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*") if p in before}
    assert after == before                                   # nothing already there was touched


def test_an_empty_results_store_left_by_an_error_does_not_block_the_rerun(fault_suite, tmp_path):
    suite, ref = fault_suite
    out = tmp_path / "out"
    out.mkdir()
    from bench.results import ResultStore
    ResultStore(out / "results.sqlite")                       # created, never written
    bench("run", str(suite), *RUN, "--out", str(out), check=True)
    assert (out / "leaderboard.csv").read_bytes() == (ref / "leaderboard.csv").read_bytes()


def test_a_complete_run_without_checkpoints_is_trained_again(fault_suite, tmp_path):
    suite, ref = fault_suite
    out = tmp_path / "out"
    shutil.copytree(ref, out)
    run = out / "runs" / "4-layer-concat-sn" / "seed0" / "photo2depth"
    shutil.rmtree(run / "checkpoints")
    (out / "results.sqlite").unlink()
    bench("run", str(suite), *RUN, "--out", str(out), "--resume", check=True)
    assert (out / "leaderboard.csv").read_bytes() == (ref / "leaderboard.csv").read_bytes()


def test_pipes_and_commas_in_row_names(tmp_path):
    suite = quickstart_variant(
        tmp_path, suite={"name": "names", "tasks": ["photo2depth"]}, metrics={"photo2depth": ["depth"]},
        columns={"photo2depth": ["rel"]},
        rows=[{"name": "A | B", "discriminator": "patchgan"}, {"name": "C, D", "discriminator": "patchgan"}])
    out = tmp_path / "out"
    bench("run", str(suite), "--profile", "tiny", "--rows", "C, D", "--rows", "A | B", "--out", str(out),
          "--no-progress", "--device", "cpu", check=True)
    md = (out / "leaderboard.md").read_text()
    table = [ln for ln in md.splitlines() if ln.startswith("|")]
    assert len({ln.count("|") - ln.count("\\|") for ln in table}) == 1          # every line has the same cells
    assert "A \\| B" in md and "C, D" in md
    assert set(pd.read_csv(out / "leaderboard.csv")["row"]) == {"A | B", "C, D"}


@pytest.mark.slow
def test_tasks_runs_only_the_chosen_tasks_and_the_board_shows_only_them(tmp_path):
    out = tmp_path / "out"
    r = bench("run", "quickstart", "--profile", "tiny", "--rows", ROW, "--tasks", "photo2depth", "--out", str(out),
              "--no-progress", "--device", "cpu", check=True)
    assert r.stdout.strip().splitlines()[-1] == f"open the report: {out / 'report.html'}"   # the last line says where
    assert (out / "report.html").is_file()
    board = pd.read_csv(out / "leaderboard.csv")
    assert set(board["task"]) == {"photo2depth"} and set(board["status"]) <= {"ok", "degenerate"}
    assert sorted(p.name for p in (out / "runs" / slug(ROW) / "seed0").iterdir()) == ["photo2depth"]
    assert "photo2labels/" not in (out / "leaderboard.md").read_text()           # no column of a task not run
    # a later command adds a row to the folder: the side-by-side picture shows it beside the first, in suite order
    bench("run", "quickstart", "--profile", "tiny", "--rows", "4-Layer Concat", "--tasks", "photo2depth", "--out",
          str(out), "--resume", "--no-progress", "--device", "cpu", "--keep-checkpoints", "all", check=True)
    kept = {r: [p.name for p in list_checkpoints(out / "runs" / slug(r) / "seed0" / "photo2depth")]
            for r in (ROW, "4-Layer Concat")}
    assert kept == {ROW: ["step_00000006"], "4-Layer Concat": ["step_00000003", "step_00000006"]}   # 1 by default
    from bench.grids import comparison_captions
    captions, _ = comparison_captions(out / "comparison-photo2depth.png")
    assert [c for c in captions if c in ("4-Layer Concat", ROW)] == ["4-Layer Concat", ROW]
    assert set(pd.read_csv(out / "leaderboard.csv")["row"]) == {"4-Layer Concat", ROW}


def test_a_rescored_failure_leaves_no_stale_reason():
    from bench.config import parse_suite
    from leaderboards.build import leaderboard_frame
    suite = parse_suite({"suite": {"name": "t", "dataset": "synthetic-scenes", "tasks": ["photo2depth"]},
                         "profiles": {"smoke": {"steps": 1}}, "rows": [{"name": "A", "discriminator": "patchgan"}]},
                        source="t.toml")
    recs = pd.DataFrame([
        {"row": "A", "task": "photo2depth", "seed": 0, "metric": "run", "value": None, "status": "failed",
         "reason": "DataError: cannot read x.png", "time": "2026-01-01T00:00:00.000000+00:00"},
        {"row": "A", "task": "photo2depth", "seed": 0, "metric": "rel", "value": 0.2, "status": "ok", "reason": "",
         "time": "2026-01-02T00:00:00.000000+00:00"}])
    line = leaderboard_frame(suite, recs).iloc[0]
    assert line["status"] == "ok" and line["reason"] == ""
    recs.loc[0, "time"] = "2026-01-03T00:00:00.000000+00:00"      # failed after the ok run (another seed...)
    assert "cannot read" in leaderboard_frame(suite, recs).iloc[0]["reason"]
