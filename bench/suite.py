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
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import torch

from bench.errors import ConfigError
from bench.registry import RUNNERS
from bench.results import ResultStore
from bench.runspec import expand

if TYPE_CHECKING:  # pragma: no cover
    from bench.config import Suite

log = logging.getLogger(__name__)

RESULTS_FILE = "results.sqlite"

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


def run_suite(suite: "Suite", out: Path, *, profile: str | None = None, rows: list[str] | None = None,
              seeds: list[int] | None = None, device: torch.device, deterministic: bool = False,
              resume: bool = False, progress: bool = True,
              leaderboard: LeaderboardWriter | None = None) -> SuiteReport:
    out = Path(out)
    pname = profile or suite.suite.default_profile
    suite.profile(pname)  # an unknown profile fails before anything is written
    seeds = seeds if seeds is not None else suite.suite.seeds
    runner = RUNNERS.get(suite.suite.runner)
    if not resume and (out / RESULTS_FILE).exists():
        raise ConfigError(f"{out} already holds results; pass --resume to continue that run or choose a new --out")
    preflight = getattr(runner, "preflight", None)
    if preflight is not None:
        preflight(suite, expand(suite, pname, rows, seeds))
    out.mkdir(parents=True, exist_ok=True)
    store = ResultStore(out / RESULTS_FILE)
    report = SuiteReport(out)
    t0 = time.perf_counter()
    report.ran, report.skipped, report.failed = runner.run(
        suite, out, store, profile=pname, rows=rows, seeds=seeds, device=device, deterministic=deterministic,
        resume=resume, progress=progress)
    report.seconds = time.perf_counter() - t0
    if leaderboard is not None:
        report.leaderboard = leaderboard(suite, store, out, pname)
    return report
