"""Where the quickstart's time goes: training, scoring, the scoring segmenter's training, the leaderboard.

Runs ``bench run quickstart --profile tiny`` in-process under cProfile and reports each phase's cumulative
time (profiler overhead included, so read the split, not the absolute seconds). Timing only: runs with
``--benchmark-enable -s``.
"""

from __future__ import annotations

import cProfile
import pstats
from pathlib import Path

import pytest

from bench.cli import main

PHASES = {  # (file suffix, function) -> phase
    ("bench/train.py", "train"): "train",
    ("bench/score.py", "score_run"): "score",
    ("metrics/smp_training.py", "_train"): "segmenter training",
    ("leaderboards/build.py", "write_leaderboard"): "leaderboard",
}


def test_quickstart_phase_split(benchmark, tmp_path: Path) -> None:
    if benchmark.disabled:
        pytest.skip("timing only: run with --benchmark-enable")
    prof = cProfile.Profile()
    out = tmp_path / "q"
    argv = ["run", "quickstart", "--profile", "tiny", "--device", "cpu", "--no-progress", "--out", str(out)]
    rc = benchmark.pedantic(lambda: prof.runcall(main, argv), rounds=1, iterations=1)
    assert rc == 0
    stats = pstats.Stats(prof).stats          # (file, line, func) -> (cc, nc, tt, ct, callers)
    total = max(v[3] for v in stats.values())
    split: dict[str, float] = {}
    for (file, _, func), v in stats.items():
        for (suffix, name), phase in PHASES.items():
            if func == name and file.replace("\\", "/").endswith(suffix):
                split[phase] = split.get(phase, 0.0) + v[3]
    print("\nquickstart tiny: " + ", ".join(f"{k} {v:.1f} s ({v / total:.0%})" for k, v in split.items())
          + f"; whole run {total:.1f} s")
    benchmark.extra_info.update(split)
    assert split.get("train", 0) > 0 and split.get("score", 0) > 0
