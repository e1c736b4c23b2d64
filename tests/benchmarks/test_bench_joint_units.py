"""The joint phase (NRDS) spread over workers by (metric, checkpoint point) (issue 27), whole commands.

decoupled-table2-mnist's smoke profile on a budget ladder (x0.5, x1), two rows x two seeds: each seed's NRDS is
scored at both rungs, four joint units. They used to be one unit per seed, its rungs one after another; now
``--jobs 2`` scores two units at once. Timed with ``pytest tests/benchmarks/test_bench_joint_units.py
--benchmark-enable``; skipped otherwise (80 s of CI for no check: the records' equality with one worker is
tests/test_jobs.py's). On this session's 2-core AMD EPYC: 20.5 s with one worker, 14.9 s with two (1.37x; 3 rounds
each, the whole command).
"""

from __future__ import annotations

import itertools

import pytest

from suite_helpers import bench

ROWS = "ED+GAN coupled w=0.001,ED//GAN decoupled w=1"
_n = itertools.count()


@pytest.mark.parametrize("jobs", [1, 2])
def test_joint_units_jobs(benchmark, tmp_path, jobs):
    if benchmark.disabled:
        pytest.skip("a timing only: run with --benchmark-enable")
    def run() -> None:
        r = bench("run", "decoupled-table2-mnist", "--profile", "smoke", "--budget", "0.5,1", "--seeds", "2",
                  "--rows", ROWS, "--jobs", str(jobs), "--out", str(tmp_path / f"out{next(_n)}"), "--no-progress",
                  "--device", "cpu", check=True, env={"OMP_NUM_THREADS": "2", "BENCH_THREADS": "2"})
        assert "0 failed" in r.stdout
    benchmark.pedantic(run, rounds=3, iterations=1, warmup_rounds=0)
