"""The `bench` command's smaller verbs: list, data check / prepare, train + score + leaderboard."""

from __future__ import annotations

import pandas as pd
import pytest

from suite_helpers import bench


def test_list_everything():
    r = bench("list", check=True)
    for word in ("datasets:", "synthetic-scenes", "cityscapes", "discriminators:", "vgg16-fusion-sn",
                 "metrics:", "segmenter-score", "suites:", "fusion-table3", "nrds-toy"):
        assert word in r.stdout


def test_list_suites_names_each_suites_profiles_and_their_steps():
    import tomllib

    from suite_helpers import REPO
    r = bench("list", "suites", check=True)
    line = next(ln for ln in r.stdout.splitlines() if ln.split()[:1] == ["translation-zoo"])
    prof = tomllib.loads((REPO / "leaderboards" / "translation-zoo.toml").read_text())["profiles"]
    assert f"smoke* ({prof['smoke']['steps']} steps)" in line and f"cpu ({prof['cpu']['steps']} steps" in line
    line = next(ln for ln in r.stdout.splitlines() if ln.split()[:1] == ["context-encoder"])
    assert "cpu (3000 steps, ~54 min CPU)" in line                   # the measured estimate, where there is one


def test_the_cpu_estimate_scales_with_the_runs_chosen_and_a_ladder():
    import argparse

    from bench.cli import _check_cpu_estimate
    from bench.config import load_suite
    from bench.errors import ConfigError
    from suite_helpers import REPO
    suite = load_suite(REPO / "leaderboards" / "newlosses.toml")          # cpu: ~120 min for 7 rows x 3 seeds
    args = argparse.Namespace(tasks=None, seeds=None)
    with pytest.raises(ConfigError, match="about 2.0 h"):
        _check_cpu_estimate(suite, "cpu", None, args)
    _check_cpu_estimate(suite, "cpu", [suite.rows[0].name, suite.rows[1].name], args)    # 2 of 7 rows: ~34 min
    _check_cpu_estimate(suite, "cpu", None, argparse.Namespace(tasks=None, seeds=1))    # 1 of 3 seeds: 40 min
    from bench.runspec import expand
    assert "minutes_cpu" not in expand(suite, "cpu")[0].train        # an estimate never moves a run's hashes
    with pytest.raises(ConfigError, match="about 2.0 h"):                # x1.5 ladder, 2 of 3 seeds: 120 min
        _check_cpu_estimate(suite, "cpu@x0.5-1.5", None, argparse.Namespace(tasks=None, seeds=2))


def test_help_imports_no_torch():
    """``bench --help`` and ``bench run --help`` answer before torch is imported (its import is most of a
    second; the start time itself is a benchmark: tests/benchmarks/test_bench_cli_start.py)."""
    import subprocess
    import sys
    code = ("import sys; from bench.cli import main\n"
            "for argv in (['--help'], ['run', '--help']):\n"
            "    try:\n        main(argv)\n    except SystemExit:\n        pass\n"
            "print('torch' in sys.modules, file=sys.stderr)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.stderr.strip().splitlines()[-1] == "False", r.stderr[-2000:]
    assert "--executor" in r.stdout and "list suites shows each suite's" in r.stdout


def test_list_discriminator_parameter_counts_match_the_modules():
    from bench.registry import DISCRIMINATORS
    from bench.nets import count_parameters
    out = bench("list", "discriminators", check=True).stdout
    for name in DISCRIMINATORS.names():
        if not DISCRIMINATORS.origin(name).startswith("methods."):
            continue                      # registered in this process by another test, unknown to the CLI
        factory = DISCRIMINATORS.get(name)
        try:
            n = count_parameters(factory(3, 3, image_size=256))
        except TypeError:                 # an unconditional D (one image input)
            try:
                n = count_parameters(factory(3, image_size=256))
            except TypeError:             # a critic on vectors (no image size)
                n = count_parameters(factory(50))
        line = next(ln for ln in out.splitlines() if ln.split()[:1] == [name])
        assert f"{n / 1e6:.2f}M params" in line


def test_data_check_reports_and_exit_codes(data_root, tmp_path):
    ok = bench("data", "check", "synthetic-scenes", check=True)
    assert "OK" in ok.stdout
    missing = bench("data", "check", "cityscapes", "--root", str(tmp_path / "nowhere"))
    assert missing.returncode == 1 and "expected layout" in missing.stdout and "leftImg8bit" in missing.stdout
    unknown = bench("data", "check", "imagenet")
    assert unknown.returncode == 2 and "cityscapes" in unknown.stderr


def test_data_prepare_cityscapes_from_the_downloaded_tars(data_root, tmp_path):
    root = tmp_path / "cityscapes"
    r = bench("data", "prepare", "cityscapes", "--src", str(data_root / "cityscapes_pix2pix"), "--root", str(root),
              check=True)
    assert "prepared cityscapes" in r.stdout
    assert len(list((root / "val").glob("*.jpg"))) == 500 and len(list((root / "train").glob("*.jpg"))) == 2975
    assert bench("data", "check", "cityscapes", "--root", str(root)).returncode == 0
    r = bench("data", "prepare", "cityscapes", "--src", str(tmp_path / "missing"))
    assert r.returncode == 2 and "--src" in r.stderr


@pytest.mark.slow
def test_train_then_score_then_leaderboard(tmp_path):
    out = tmp_path / "out"
    r = bench("train", "quickstart", "--row", "4-Layer Concat", "--task", "photo2depth", "--profile", "tiny",
              "--out", str(out), "--no-progress", "--device", "cpu", check=True)
    assert "complete at step 6" in r.stdout
    run = out / "runs" / "4-layer-concat" / "seed0" / "photo2depth"
    s = bench("score", str(run), "--no-progress", "--device", "cpu", check=True)
    values = dict(line.split("\t")[:2] for line in s.stdout.splitlines())
    assert 0 < float(values["photo2depth/rel"]) < 10 and 0 <= float(values["photo2depth/delta1"]) <= 1
    again = bench("train", "quickstart", "--row", "4-Layer Concat", "--task", "photo2depth", "--profile", "tiny",
                  "--out", str(out), "--no-progress", "--device", "cpu")
    assert again.returncode == 2 and "--resume" in again.stderr
    lb = bench("leaderboard", "quickstart", "--out", str(out))
    assert lb.returncode == 2 and "bench run quickstart" in lb.stderr


@pytest.mark.slow
def test_leaderboard_rebuilds_from_the_store(tmp_path):
    out = tmp_path / "nrds"
    bench("run", "nrds-toy", "--seeds", "1", "--out", str(out), "--no-progress", check=True)
    first = pd.read_csv(out / "leaderboard.csv")
    (out / "leaderboard.csv").unlink()
    r = bench("leaderboard", "nrds-toy", "--out", str(out), check=True)
    assert "Fake close" in r.stdout
    pd.testing.assert_frame_equal(first, pd.read_csv(out / "leaderboard.csv"))


@pytest.mark.slow
def test_publish_copies_what_people_look_at_and_how_it_was_made(tmp_path):
    import json
    out = tmp_path / "nrds"
    bench("run", "nrds-toy", "--seeds", "1", "--out", str(out), "--no-progress", check=True)
    inv = [json.loads(ln) for ln in (out / "invocations.jsonl").read_text().splitlines()]
    assert inv[0]["argv"][:3] == ["bench", "run", "nrds-toy"] and inv[0]["ran"] == 2 and inv[0]["machine"]["cpus"]
    dest = tmp_path / "results" / "nrds-toy" / "smoke"
    bench("publish", str(out), "--dest", str(dest), check=True)
    assert {p.name for p in dest.iterdir()} >= {"leaderboard.md", "leaderboard.csv", "results.sqlite", "RUN.md"}
    notes = (dest / "RUN.md").read_text()
    assert "bench run nrds-toy --seeds 1 --out OUT --no-progress" in notes and str(out) not in notes
    curves = dest / "joint" / "points__nrds_curves.png"            # the NRDS curves people look at, linked
    assert curves.read_bytes() == (out / "joint" / "seed0" / "points" / "nrds_curves.png").read_bytes()
    assert "](joint/points__nrds_curves.png)" in (dest / "leaderboard.md").read_text()
    r = bench("publish", str(tmp_path / "nothing"), "--dest", str(dest))
    assert r.returncode == 2 and "no leaderboard.md" in r.stderr and (dest / "RUN.md").is_file()
