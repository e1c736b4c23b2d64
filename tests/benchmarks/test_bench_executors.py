"""The local executor: one worker against two on a smoke suite (issue 26), whole commands as a user runs them.

Four runs of the quickstart's tiny profile (4 rows x photo -> depth, 6 steps each): with ``--jobs 1`` they
run one after the other in one worker process at a time with both threads; with ``--jobs 2`` two at once with
one thread each. On runs this small the command's own start (imports, the suite's checks, the leaderboard) is
a large share, so the speed-up is a floor for longer runs. Timed with
``pytest tests/benchmarks/test_bench_executors.py --benchmark-enable``; skipped otherwise (20 s of the fast tier
for no check: the records' equality of 1 and 2 workers is tests/test_jobs.py's). On this session's 2-core AMD EPYC:
13.0 s with one worker, 10.4 s with two (1.25x; medians 12.7 / 10.2 s, 3 rounds each).
"""

from __future__ import annotations

import itertools

import pytest

from suite_helpers import bench

ROWS = ("4-Layer Concat", "4-Layer Concat + SN", "4-Layer Fusion + SN", "Projection + SN")
_n = itertools.count()


@pytest.mark.parametrize("jobs", [1, 2])
def test_local_executor_jobs(benchmark, tmp_path, jobs):
    if benchmark.disabled:
        pytest.skip("a timing only: run with --benchmark-enable")
    def run() -> None:
        rows = [a for r in ROWS for a in ("--rows", r)]
        r = bench("run", "quickstart", "--profile", "tiny", *rows, "--tasks", "photo2depth", "--jobs", str(jobs),
                  "--out", str(tmp_path / f"out{next(_n)}"), "--no-progress", "--device", "cpu", check=True,
                  env={"OMP_NUM_THREADS": "2", "BENCH_THREADS": "2"})
        assert "4 run(s) done, 0 skipped, 0 failed" in r.stdout
    benchmark.pedantic(run, rounds=3, iterations=1, warmup_rounds=0)
