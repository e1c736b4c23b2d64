"""``bench run --jobs N``: runs in worker processes give the records one process gives, joint metrics
included, and a worker that dies costs its run only (recorded as failed, retried by --resume)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from bench.jobs import GpuSlots, threads_per_job, visible_gpus
from bench.results import ResultStore
from suite_helpers import PARALLEL_ARGS, bench, ok_values


def test_threads_are_shared_between_jobs():
    assert threads_per_job(2, 16) == 8
    assert threads_per_job(3, 2) == 1        # never below one
    assert threads_per_job(1, 4) == 4


def _seen_gpu(item, out, store):
    import os
    return item, os.environ.get("CUDA_VISIBLE_DEVICES")


def test_workers_are_spread_over_the_visible_gpus_one_each(tmp_path: Path):
    from bench.jobs import run_parallel
    got = run_parallel(_seen_gpu, list(range(6)), tmp_path, tmp_path / "r.sqlite", jobs=2, on_death=None,
                       gpus=["3", "5"], threads=1)
    assert [i for i, _ in got] == list(range(6)) and {g for _, g in got} == {"3", "5"}
    assert [g for _, g in got][:2] in (["3", "5"], ["5", "3"])           # the first two workers: one GPU each
    slots = GpuSlots(["0", "1"])
    a, b = slots.take(), slots.take()
    slots.give_back(a)
    assert (a, b, slots.take(), slots.take()) == ("0", "1", "0", "0")   # the least loaded, the lowest on a tie
    assert GpuSlots([]).take() is None


def test_the_gpus_to_spread_over_are_the_visible_ones(monkeypatch):
    import torch
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert visible_gpus(torch.device("cuda")) == ["0", "1"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,6")
    assert visible_gpus("cuda") == ["4", "6"]                          # named as the parent sees them
    assert visible_gpus("cuda:1") == [] and visible_gpus("cpu") == [] and visible_gpus(None) == []
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert visible_gpus("cuda") == []                                  # one GPU: the workers share it


@pytest.mark.slow
def test_two_jobs_give_the_records_of_one_and_a_dead_worker_costs_only_its_run(tmp_path: Path):
    one, two = tmp_path / "one", tmp_path / "two"
    bench("run", *PARALLEL_ARGS, "--out", str(one), check=True)
    # every worker kills itself (SIGKILL) at its 5th training step: each run is recorded failed, nothing else is lost
    r = bench("run", *PARALLEL_ARGS, "--jobs", "2", "--out", str(two), env={"BENCH_FAILPOINT": "train-step:5"})
    assert r.returncode == 0, r.stderr
    failed = ResultStore(two / "results.sqlite").frame()
    failed = failed[failed["status"] == "failed"]
    assert len(failed) == 4 and failed["reason"].str.contains("worker process died").all()
    assert "--resume" in failed["reason"].iloc[0]
    r = bench("run", *PARALLEL_ARGS, "--jobs", "2", "--out", str(two), "--resume", check=True)
    assert "4 run(s) done, 0 skipped, 0 failed" in r.stdout
    a, b = ok_values(one), ok_values(two)
    assert len(a) > 0 and set(a["metric"]) >= {"nrds", "l1"}
    pd.testing.assert_frame_equal(a, b)        # one thread everywhere: bit-identical, NRDS over both jobs' models
    assert (one / "leaderboard.csv").read_bytes() == (two / "leaderboard.csv").read_bytes()
    for row in ("ed-gan-coupled-w-0-001", "ed-gan-decoupled-w-1"):
        assert (two / "runs" / row / "seed1" / "autoencode-digits" / "samples.png").is_file()


def test_jobs_below_one_is_a_one_line_error(tmp_path: Path):
    r = bench("run", "decoupled-table2-mnist", "--profile", "smoke", "--jobs", "0", "--out", str(tmp_path / "o"))
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == ["bench: error: --jobs must be at least 1, not 0"]
    assert not (tmp_path / "o" / "results.sqlite").exists()


@pytest.mark.parametrize("method,at_work", [("spawn", False), ("spawn", True),   # killed while the worker starts /
                                            ("forkserver", True)])               # while it runs its item
def test_workers_end_when_their_parent_is_killed(tmp_path: Path, method: str, at_work: bool):
    import os
    import signal
    import subprocess
    import sys
    import time
    script = tmp_path / "parent.py"
    script.write_text(
        "import os, sys, time, multiprocessing\n"
        "from bench.jobs import WorkerSetup, _worker\n"
        "def nap(item, out, store):\n"
        "    (out / 'napping').touch()\n"
        "    time.sleep(600)\n"
        "if __name__ == '__main__':\n"
        f"    ctx = multiprocessing.get_context({method!r})\n"
        "    r, w = ctx.Pipe(duplex=False)\n"
        "    setup = WorkerSetup((), 1, 30, os.getpid(), fresh=True)\n"
        "    p = ctx.Process(target=_worker, args=(nap, 0, sys.argv[1], sys.argv[1] + '/r.sqlite', {}, setup,\n"
        "                                          'nap', w))\n"
        "    p.start()\n"
        "    print(p.pid, flush=True)\n"
        "    time.sleep(600)\n")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1]) + os.pathsep + str(tmp_path)}
    parent = subprocess.Popen([sys.executable, str(script), str(tmp_path)], stdout=subprocess.PIPE, text=True,
                              env=env, cwd=tmp_path)
    child = int(parent.stdout.readline())
    for _ in range(120 if at_work else 0):
        if (tmp_path / "napping").exists():
            break
        time.sleep(0.5)
    assert (tmp_path / "napping").exists() == at_work
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    def alive() -> bool:                          # a zombie (ended, not yet reaped by its new parent) is gone
        try:
            return Path(f"/proc/{child}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
        except OSError:
            return False
    for _ in range(60):                           # the watchdog polls every 2 s
        if not alive():
            break
        time.sleep(0.5)
    else:
        os.kill(child, signal.SIGKILL)
        raise AssertionError("the worker outlived its killed parent by 30 s")


def test_workers_of_a_process_that_trained_come_from_a_fork_server(tmp_path: Path):
    """After this process ran an OpenMP region, forking it is unsafe: the workers are forked from a clean fork
    server instead, with torch and what every run imports preloaded, and take this process's environment as it is
    now (the server keeps the one it started with) and its code version (no git of their own)."""
    import os
    import subprocess
    import sys
    (tmp_path / "probe_mod.py").write_text(
        "import os, sys, torch\n"
        "def probe(item, out, store):\n"
        "    from bench.provenance import running_code_version\n"
        "    preloaded = 'torch._dynamo' in sys.modules\n"
        "    x = torch.ones(256, 256) @ torch.ones(256, 256)                 # an OpenMP region: must not hang\n"
        "    return item, os.environ.get('BENCH_PROBE'), running_code_version(), preloaded, float(x[0, 0])\n")
    (tmp_path / "parent.py").write_text(
        "import os, sys, torch\n"
        "from pathlib import Path\n"
        "from bench import jobs, provenance\n"
        "from probe_mod import probe\n"
        "if __name__ == '__main__':\n"
        "    torch.set_num_threads(2)\n"
        "    torch.ones(512, 512) @ torch.ones(512, 512)                     # this process's OpenMP pool starts\n"
        "    print(jobs.start_method())\n"
        "    provenance.adopt_code_version('0.0.0+probe')\n"
        "    out = Path(sys.argv[1])\n"
        "    for value in ('first', 'second'):                                # the server starts with 'first'\n"
        "        os.environ['BENCH_PROBE'] = value\n"
        "        print(jobs.run_parallel(probe, [1, 2], out, out / 'r.sqlite', jobs=2, on_death=lambda i, why: why))\n")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1]) + os.pathsep + str(tmp_path)}
    r = subprocess.run([sys.executable, str(tmp_path / "parent.py"), str(tmp_path)], capture_output=True, text=True,
                       env=env, cwd=tmp_path, timeout=300)
    assert r.returncode == 0, r.stderr
    method, first, second = r.stdout.strip().splitlines()
    assert method == "forkserver"
    assert first == str([(i, "first", "0.0.0+probe", True, 256.0) for i in (1, 2)])
    assert second == str([(i, "second", "0.0.0+probe", True, 256.0) for i in (1, 2)])
