"""``bench run --executor``: runs as submitit jobs or Ray tasks (which spool their records for the command to
ingest, bench/spool.py) give the records one process gives (joint metrics included), a job that dies costs its
run only and ``--resume`` retries it; a preempted job is requeued as a resume; the Slurm parameters a user
gives reach submitit."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from bench.errors import ConfigError
from bench.executors import ExecutorOptions, RunTask, _job_parameters, check
from bench.results import ResultStore
from suite_helpers import PARALLEL_ARGS, bench, ok_values

submitit = pytest.importorskip("submitit", reason="submitit is the test extra's (pip install -e '.[test]')")


@pytest.fixture(scope="module")
def one_process(tmp_path_factory) -> pd.DataFrame:
    one = tmp_path_factory.mktemp("one")
    bench("run", *PARALLEL_ARGS, "--out", str(one), check=True)
    values = ok_values(one)
    assert len(values) > 0 and set(values["metric"]) >= {"nrds", "l1"}
    return values


def _killed_then_resumed(out: Path, executor: str, failure: str, one: pd.DataFrame) -> None:
    """Every job kills itself (SIGKILL) at its 5th training step: each run is recorded failed with a one-line
    reason, nothing else is lost; ``--resume`` then gives the records of one process (one thread everywhere:
    bit-identical, NRDS over both jobs' models)."""
    args = (*PARALLEL_ARGS, "--executor", executor, "--jobs", "2", "--out", str(out))
    r = bench("run", *args, env={"BENCH_FAILPOINT": "train-step:5"})
    assert r.returncode == 0, r.stderr
    failed = ResultStore(out / "results.sqlite").frame()
    failed = failed[failed["status"] == "failed"]
    assert len(failed) == 4 and failed["reason"].str.contains(failure, regex=True).all(), failed["reason"].tolist()
    assert failed["reason"].str.contains("--resume").all() and "\n" not in "".join(failed["reason"])
    r = bench("run", *args, "--resume", check=True)
    assert "4 run(s) done, 0 skipped, 0 failed" in r.stdout
    pd.testing.assert_frame_equal(one, ok_values(out))          # every spooled record ingested, none twice
    assert not list((out / "spool").glob("*.jsonl"))


@pytest.mark.slow
def test_submitit_jobs_give_the_records_of_one_process_and_a_killed_job_is_retried(tmp_path: Path, one_process):
    _killed_then_resumed(tmp_path / "sub", "submitit-local", "its local job .* failed", one_process)
    assert any((tmp_path / "sub" / "submitit").rglob("*_log.err"))         # submitit's own logs, per job


@pytest.mark.slow
def test_ray_tasks_give_the_records_of_one_process_and_a_crashed_task_is_retried(tmp_path: Path, one_process):
    pytest.importorskip("ray", reason="ray is the test extra's (pip install -e '.[test]')")
    _killed_then_resumed(tmp_path / "ray", "ray", "its Ray task failed .*WorkerCrashedError", one_process)


def test_a_preempted_job_is_requeued_as_a_resume_of_the_same_item():
    task = RunTask(print, setup=None)
    again = task.checkpoint("item", "OUT", "STORE", {"resume": False, "device": "cpu"})
    assert isinstance(again, submitit.helpers.DelayedSubmission) and again.function is task
    assert again.args == ("item", "OUT", "STORE", {"resume": True, "device": "cpu"})


def test_the_slurm_parameters_reach_submitit_by_its_names():
    ex = ExecutorOptions(name="slurm", gpus_per_run=2, partition="gpu", slurm={"account": "lab"})
    p = _job_parameters(ex, timeout_min=90.5, threads=4)
    assert p == {"nodes": 1, "tasks_per_node": 1, "cpus_per_task": 4, "name": "cgan-bench", "gpus_per_node": 2,
                 "timeout_min": 91, "slurm_partition": "gpu", "slurm_account": "lab"}
    assert "timeout_min" not in _job_parameters(ExecutorOptions(name="submitit-local"), None, 1)
    # submitit knows every name: its cluster-neutral ones, and sbatch's behind "slurm_"
    generic = {k for k in p if not k.startswith("slurm_")}
    assert generic <= set(submitit.AutoExecutor._valid_parameters())
    assert {k.removeprefix("slurm_") for k in p} - generic <= set(submitit.SlurmExecutor._valid_parameters())
    with pytest.raises(ConfigError, match="--slurm acount=...: not a Slurm parameter submitit knows"):
        check(ExecutorOptions(name="slurm", slurm={"acount": "lab"}))


@pytest.mark.parametrize("kw,msg", [
    ({"name": "kubernetes"}, "--executor 'kubernetes' is not one of local, slurm, submitit-local"),
    ({"partition": "gpu"}, "--partition and --slurm set Slurm jobs: add --executor slurm"),
    ({"gpus_per_run": 1}, "--gpus-per-run sizes submitit jobs"),
    ({"name": "slurm", "gpus_per_run": -1}, "--gpus-per-run must be 0 or more"),
    ({"name": "slurm", "address": "ray://head:10001"}, "--ray-address names a Ray cluster: add --executor ray"),
])
def test_bad_executor_options_are_one_line_errors(kw, msg):
    with pytest.raises(ConfigError, match=msg.replace("(", r"\(").replace(")", r"\)")):
        ExecutorOptions(**kw)
