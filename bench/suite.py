"""Run a whole suite with its runner; every row x seed x task is recorded; then the leaderboard.

Output folder layout (``--out DIR``)::

    DIR/results.sqlite                    append-only result records (all runs, all profiles)
    DIR/leaderboard.md / .csv / .png      the table beside the published values
    DIR/runs/<row>/seed<k>/<task>/        checkpoints/, scalars.csv, tb/, status.json[, error.txt]
    DIR/joint/seed<k>/<task>/             joint metrics' artefacts (NRDS curves)

A run that fails (divergence, a data or metric error, a plug-in that raises) is recorded as
failed with its reason, and the suite goes on. ``resume=True`` skips runs already scored and
continues interrupted training from the newest complete checkpoint.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import torch

from bench.errors import ConfigError
from bench.lock import folder_lock
from bench.provenance import code_version, git_commit
from bench.publish import record_invocation
from bench.registry import RUNNERS
from bench.results import RESULTS_FILE, ResultStore
from bench.stores import open_store
from bench.runspec import expand

if TYPE_CHECKING:  # pragma: no cover
    from bench.config import Suite
    from bench.executors import ExecutorOptions

log = logging.getLogger(__name__)


#: writes the leaderboard of (suite, store, out, profile) and returns its path (``leaderboards.build``)
LeaderboardWriter = Callable[["Suite", ResultStore, Path, str], Path]


@dataclass
class SuiteReport:
    out: Path
    ran: int = 0
    skipped: int = 0
    failed: list[str] = field(default_factory=list)
    seconds: float = 0.0
    leaderboard: Path | None = None


def holds_results(out: Path) -> bool:
    """Whether ``out`` holds result records (an empty store, left by an error, does not count)."""
    db = Path(out) / RESULTS_FILE
    return db.is_file() and ResultStore(db).count() > 0


def run_suite(suite: "Suite", out: Path, *, profile: str | None = None, rows: list[str] | None = None,
              seeds: list[int] | None = None, tasks: list[str] | None = None, device: torch.device,
              deterministic: bool = False, resume: bool = False, progress: bool = True, force_resume: bool = False,
              leaderboard: LeaderboardWriter | None = None, jobs: int = 1, isolate: bool = True,
              time_limit_min: float | None = None, stall_limit_min: float | None = None,
              executor: "ExecutorOptions | None" = None, store_url: str | None = None) -> SuiteReport:
    """Train and score every selected run, each in a process of its own unless ``isolate`` is off (see
    :class:`bench.runners.Isolation`), or each as a cluster job (``executor``, :mod:`bench.executors`), then
    write the leaderboard."""
    from bench.runners import Isolation, RunOptions
    out = Path(out)
    if int(jobs) < 1:
        raise ConfigError(f"--jobs must be at least 1, not {jobs}")
    for name, v in (("--time-limit", time_limit_min), ("--stall-limit", stall_limit_min)):
        if v is not None and not v > 0:
            raise ConfigError(f"{name} must be positive minutes, not {v}")
    threads = torch.get_num_threads()
    from bench.executors import ExecutorOptions, check
    executor = executor or ExecutorOptions()
    check(executor)
    if executor.name != "local" and not isolate:
        raise ConfigError(f"--in-process runs everything in this process; it cannot go with --executor {executor.name}")
    isolation = Isolation(jobs=int(jobs), isolate=isolate, time_limit_min=time_limit_min,
                          stall_limit_min=stall_limit_min, threads=threads, executor=executor)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file; give a folder (it is created if missing)")
    pname = profile or suite.suite.default_profile
    suite.profile(pname)  # an unknown profile fails before anything is written
    seeds = seeds if seeds is not None else suite.suite.seeds
    runner = RUNNERS.get(suite.suite.runner)
    resume = resume or force_resume
    if store_url:
        refuse = ConfigError(f"the store at --store already holds results of {suite.name} / {pname}; pass --resume "
                             "to continue that run or choose another ?schema=")
    else:
        refuse = ConfigError(f"{out} already holds results; pass --resume to continue that run or choose a new --out")

    def holds() -> bool:
        if store_url:
            return open_store(store_url).count(suite=suite.name, profile=pname) > 0
        return holds_results(out)
    if not resume and holds():
        raise refuse
    if isolate:
        # This process's own torch work (the checks, the bookkeeping between runs) at one thread until its last
        # worker has started: a parallel region would start OpenMP's pool, after which forking is unsafe and the
        # workers come from the fork server (loading the MNIST judge in the class-accuracy check did, for every
        # MNIST suite). The workers share the threads it had.
        torch.set_num_threads(1)
    try:
        specs = expand(suite, pname, rows, seeds, tasks)      # resolved once: the checks and the runs share them
        preflight = getattr(runner, "preflight", None)
        if preflight is not None:
            preflight(suite, specs, device, out=out, resume=resume, force_resume=force_resume)
        with folder_lock(out):
            if not resume and holds():                # again, now that no other process can write
                raise refuse
            store = open_store(store_url) if store_url else ResultStore(out / RESULTS_FILE)
            report = SuiteReport(out)
            started, t0 = datetime.now(timezone.utc), time.perf_counter()
            report.ran, report.skipped, report.failed = runner.run(
                suite, out, store, specs, RunOptions(device=device, deterministic=deterministic, resume=resume,
                                                     progress=progress, force_resume=force_resume,
                                                     isolation=isolation))
            report.seconds = time.perf_counter() - t0
            torch.set_num_threads(threads)
            if leaderboard is not None:
                report.leaderboard = leaderboard(suite, store, out, pname)
            record_invocation(out, started, time.perf_counter() - t0, report, git_commit(), code_version(),
                              jobs=int(jobs))
    finally:
        torch.set_num_threads(threads)
    return report
