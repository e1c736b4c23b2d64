"""Run a whole suite: every row x seed x task is trained, scored and recorded; then the leaderboard.

Output folder layout (``--out DIR``)::

    DIR/results.sqlite                    append-only result records (all runs, all profiles)
    DIR/leaderboard.md / .csv / .png      the table beside the published values
    DIR/runs/<row>/seed<k>/<task>/        checkpoints/, scalars.csv, tb/, status.json

A run that fails (divergence, a data or metric error) is recorded as failed with its reason,
and the suite goes on. ``resume=True`` skips runs already scored and continues interrupted
training from the newest complete checkpoint.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import torch

from bench import checkpoint as ckpt
from bench.config import Suite
from bench.errors import BenchError, ConfigError
from bench.provenance import code_version
from bench.registry import RUNNERS
from bench.results import ResultRecord, ResultStore
from bench.runspec import RunSpec, expand
from bench.score import score_run
from bench.train import read_status, train

log = logging.getLogger(__name__)

RESULTS_FILE = "results.sqlite"


@dataclass
class SuiteReport:
    out: Path
    ran: int = 0
    skipped: int = 0
    failed: list[str] = field(default_factory=list)
    seconds: float = 0.0
    leaderboard: Path | None = None


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _record(spec: RunSpec, metric: str, value: float | None, checkpoint: str, phash: str,
            status: str = "ok", reason: str = "") -> ResultRecord:
    return ResultRecord(suite=spec.suite, row=spec.row, task=spec.task, seed=spec.seed, profile=spec.profile,
                        metric=metric, value=value, checkpoint=checkpoint, protocol_hash=phash,
                        code_version=code_version(), time=_now(), status=status, reason=reason)


def _already_scored(store: ResultStore, spec: RunSpec) -> bool:
    recs = store.records(suite=spec.suite, row=spec.row, task=spec.task, seed=spec.seed, profile=spec.profile)
    return any(r.status == "ok" for r in recs)


def run_one(spec: RunSpec, out: Path, store: ResultStore, *, device: torch.device, deterministic: bool,
            resume: bool, progress: bool) -> str:
    """Train (if needed) and score one run; returns its status ("ok" | "failed" | "skipped")."""
    run_dir = spec.run_dir(out)
    if resume and _already_scored(store, spec):
        return "skipped"
    try:
        checkpoint = None
        if spec.kind == "model":
            status = read_status(run_dir)
            if resume and status and status.get("status") == "complete":
                checkpoint = ckpt.latest_checkpoint(run_dir)
            else:
                outcome = train(spec, run_dir, device=device, deterministic=deterministic, resume=resume,
                                progress=progress)
                if outcome.status != "complete":
                    store.append([_record(spec, "train", None, "", "", "failed", outcome.reason)])
                    return "failed"
                checkpoint = outcome.checkpoint
        scored = score_run(spec, checkpoint, device=device, progress=progress)
    except ConfigError:
        raise
    except BenchError as e:
        log.warning("run %s / %s / seed %d failed: %s", spec.row, spec.task, spec.seed, e)
        store.append([_record(spec, "run", None, "", "", "failed", str(e))])
        return "failed"
    for h, p in scored.protocols.items():
        store.add_protocol(h, p)
    rel = str(checkpoint.relative_to(out)) if checkpoint is not None else ""
    store.append([_record(spec, k, v, rel, scored.protocol_hashes[k]) for k, v in scored.values.items()])
    return "ok"


def _preflight(spec: RunSpec) -> None:
    """Fail before any work when the suite's data is missing (one line, exit 2), not once per run."""
    from bench.build import build_dataset
    build_dataset(spec, "test", spec.profile_settings.image_size, 1)


def run_suite(suite: Suite, out: Path, *, profile: str | None = None, rows: list[str] | None = None,
              seeds: list[int] | None = None, device: torch.device, deterministic: bool = False,
              resume: bool = False, progress: bool = True) -> SuiteReport:
    out = Path(out)
    suite.profile(profile)  # an unknown profile fails before anything is written
    specs = expand(suite, profile, rows, seeds) if suite.suite.runner == "train-score" else []
    if not resume and (out / RESULTS_FILE).exists():
        raise ConfigError(f"{out} already holds results; pass --resume to continue that run or choose a new --out")
    if specs:
        _preflight(specs[0])
    out.mkdir(parents=True, exist_ok=True)
    store = ResultStore(out / RESULTS_FILE)
    report = SuiteReport(out)
    t0 = time.perf_counter()
    pname = profile or suite.suite.default_profile
    if suite.suite.runner != "train-score":
        runner = RUNNERS.get(suite.suite.runner)
        report.ran, report.skipped, report.failed = runner.run(
            suite, out, store, profile=pname, rows=rows, seeds=seeds if seeds is not None else suite.suite.seeds,
            device=device, deterministic=deterministic, resume=resume, progress=progress)
        specs = []
    for i, spec in enumerate(specs, 1):
        log.info("[%d/%d] %s | %s | seed %d", i, len(specs), spec.row, spec.task, spec.seed)
        status = run_one(spec, out, store, device=device, deterministic=deterministic, resume=resume,
                         progress=progress)
        if status == "skipped":
            report.skipped += 1
        else:
            report.ran += 1
        if status == "failed":
            report.failed.append(f"{spec.row} | {spec.task} | seed {spec.seed}")
    report.seconds = time.perf_counter() - t0
    from leaderboards.build import write_leaderboard
    report.leaderboard = write_leaderboard(suite, store, out, profile=pname)
    return report
