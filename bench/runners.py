"""Suite runners: how a suite's runs are executed, one registry for all of them.

A runner has ``validate(suite, source)`` (parse-time checks), ``preflight(suite, specs)`` (inputs
present before the first step) and ``run(suite, out, store, *, profile, rows, seeds, device,
deterministic, resume, progress) -> (ran, skipped, failed)``; it writes ordinary result records,
so the leaderboard, the results store and regression checks work unchanged for every runner.

``train-score`` (the default) trains each row x task x seed, scores its checkpoint with the paired
and sample-fed metrics, then scores each seed's checkpoints together with the joint metrics (NRDS).
A run that raises (a plug-in's exception included) is recorded as failed with its reason, and the
suite goes on.
"""

from __future__ import annotations

import logging
import re
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import torch

from bench import checkpoint as ckpt
from bench import failpoints
from bench.errors import ConfigError
from bench.executors import ExecutorOptions
from bench.failures import describe_failure
from bench.provenance import running_code_version
from bench.registry import RUNNERS
from bench.results import ResultRecord
from bench.runspec import RunSpec
from bench.schema import slug
from bench.score import entries, joint_entries, score_joint, score_run
from bench.score import preflight as score_preflight
from bench.grids import SAMPLES_FILE, comparison_file, write_comparison, write_samples
from bench.tracking import open_tracker
from bench.train import check_resume, read_status, train
from bench.validate import validate_models_and_metrics

if TYPE_CHECKING:  # pragma: no cover
    from bench.config import Suite
    from bench.results import ResultStore

log = logging.getLogger(__name__)

#: the key suffix of a record scored at an earlier checkpoint than the last (``[e5]``, ``[s938]``)
CHECKPOINT_SUFFIX = re.compile(r"\[[es]\d+\]$")

def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


def record(spec: RunSpec, metric: str, value: float | None, checkpoint: str, phash: str,
           status: str = "ok", reason: str = "") -> ResultRecord:
    return ResultRecord(suite=spec.suite, row=spec.row, task=spec.task, seed=spec.seed, profile=spec.profile,
                        metric=metric, value=value, checkpoint=checkpoint, protocol_hash=phash,
                        code_version=running_code_version(), time=_now(), status=status, reason=reason)


def _feeds_of(store: "ResultStore", recs: list[ResultRecord]) -> dict[str, str]:
    out = {}
    for h in {r.protocol_hash for r in recs if r.protocol_hash}:
        p = store.protocol(h) or {}
        out[h] = f"{p.get('feed', 'paired')}:{p.get('metric', '')}"
    return out


def _scored(store: "ResultStore", spec: RunSpec, joint: str | None = None) -> bool:
    """Whether ``spec`` already has ok records of its per-run metrics (or of joint metric ``joint``)."""
    recs = [r for r in store.records(suite=spec.suite, row=spec.row, task=spec.task, seed=spec.seed,
                                     profile=spec.profile) if r.status == "ok"]
    feeds = _feeds_of(store, recs)
    if joint is None:
        return any(not feeds.get(r.protocol_hash, "paired:").startswith("joint:") for r in recs)
    return any(feeds.get(r.protocol_hash) == f"joint:{joint}" for r in recs)


def _label_order(label: str) -> tuple[str, int]:
    return label[:1], int(label[1:]) if label[1:].isdigit() else 0


def eval_checkpoints(run_dir: Path) -> dict[str, Path]:
    """Label -> checkpoint of the points a completed run keeps to be scored besides its last one: ``e<N>`` the
    end of epoch N (``eval_epochs``: curves over training), ``s<N>`` step N (``eval_steps``: a budget ladder).
    A status written before labels (a bare epoch number) reads as ``e<N>``."""
    status = read_status(run_dir) or {}
    labelled = {(k if k[:1] in ("e", "s") else f"e{k}"): name
                for k, name in (status.get("eval_checkpoints") or {}).items()}
    out = {}
    for label, name in sorted(labelled.items(), key=lambda kv: _label_order(kv[0])):
        path = run_dir / ckpt.CHECKPOINTS_DIR / name
        if path.is_dir():
            out[label] = path
        else:
            log.warning("%s: the checkpoint %s (%s) is gone; its point is not scored", run_dir, label, name)
    return out


def _trained(run_dir: Path) -> Path | None:
    """The final checkpoint of a run whose training completed (None: not complete, or its checkpoints
    are gone, in which case it is trained again)."""
    status = read_status(run_dir)
    if not status or status.get("status") != "complete":
        return None
    last = ckpt.latest_checkpoint(run_dir)
    if last is None:
        log.warning("%s says complete but holds no checkpoint; training it again", run_dir)
    return last


def run_one(spec: RunSpec, out: Path, store: "ResultStore", *, device: torch.device, deterministic: bool,
            resume: bool, progress: bool, force_resume: bool = False) -> tuple[str, Path | None]:
    """Train (if needed) and score one run: ("ok" | "failed" | "skipped", its checkpoint)."""
    run_dir = spec.run_dir(out)
    has_own = any(e.feed != "joint" for e in entries(spec))
    done = _trained(run_dir) if resume and spec.kind == "model" else None
    if done is not None and (not has_own or _scored(store, spec)):
        return "skipped", done
    if resume and spec.kind != "model" and _scored(store, spec):
        return "skipped", None
    checkpoint = None
    try:
        if spec.kind == "model":
            if done is not None:
                checkpoint = done
            else:
                outcome = train(spec, run_dir, device=device, deterministic=deterministic, resume=resume,
                                progress=progress, force_resume=force_resume)
                if outcome.status != "complete":
                    store.append([record(spec, "train", None, "", "", "failed", outcome.reason)])
                    return "failed", None
                checkpoint = outcome.checkpoint
        scored = [(score_run(spec, checkpoint, device=device, progress=progress), checkpoint, "")]
        for label, path in eval_checkpoints(run_dir).items():   # curves over training, budget rungs
            again = scored[0][0] if checkpoint is not None and path.resolve() == checkpoint.resolve() else None
            scored.append((again or score_run(spec, path, device=device, progress=progress), path, f"[{label}]"))
    except (KeyboardInterrupt, SystemExit):
        raise
    except Exception as e:  # noqa: BLE001 - a failure costs one row, never the suite
        reason = describe_failure(e, run_dir, out)
        log.warning("run %s / %s / seed %d failed: %s", spec.row, spec.task, spec.seed, reason)
        store.append([record(spec, "run", None, "", "", "failed", reason)])
        return "failed", None
    for outcome, path, suffix in scored:
        for o, why in outcome.degenerate.items():
            log.warning("run %s / %s / seed %d%s: output '%s' is degenerate: %s (its numbers are kept, marked)",
                        spec.row, spec.task, spec.seed, f" {suffix}" if suffix else "", o, why)
    records = []
    for outcome, path, suffix in scored:
        for h, p in outcome.protocols.items():
            store.add_protocol(h, p)
        rel = str(path.relative_to(out)) if path is not None else ""
        records += [record(spec, k + suffix, v, rel, outcome.protocol_hashes[k]) for k, v in outcome.values.items()]
    store.append(records)
    failpoints.reached("records")
    if (tracker := open_tracker(run_dir, spec)) is not None:          # bench run --track: the scores too
        for outcome, path, suffix in scored:
            tracker.log(ckpt.step_of(path) or 0 if path is not None else 0,
                        {k + suffix: v for k, v in outcome.values.items()}, prefix="score/")
        tracker.close()
    if spec.kind == "model" and checkpoint is not None:
        write_samples(spec, checkpoint, run_dir / SAMPLES_FILE, device=device)
    return "ok", checkpoint


def _suffix(metric: str) -> str:
    """The checkpoint suffix of a record's key (``[e5]``, ``[s938]``), "" for the last checkpoint's."""
    m = CHECKPOINT_SUFFIX.search(metric)
    return m.group(0) if m else ""


def _joint_scored(store: "ResultStore", spec: RunSpec, name: str, suffix: str) -> bool:
    """Whether ``spec`` already has ok records of joint metric ``name`` at the checkpoint of ``suffix``."""
    recs = [r for r in store.records(suite=spec.suite, row=spec.row, task=spec.task, seed=spec.seed,
                                     profile=spec.profile) if r.status == "ok"]
    feeds = _feeds_of(store, recs)
    return any(feeds.get(r.protocol_hash) == f"joint:{name}" and _suffix(r.metric) == suffix for r in recs)


def joint_points(runs: list[tuple[RunSpec, Path]], out: Path) -> list[tuple[str, list[tuple[RunSpec, Path]]]]:
    """The checkpoints a seed's joint metrics judge together: the last ones (suffix ""), then every eval point
    (``[e<N>]``, ``[s<N>]``) that all of the seed's runs kept."""
    points = [("", runs)]
    per_run = [eval_checkpoints(spec.run_dir(out)) for spec, _ in runs]
    common = set.intersection(*(set(p) for p in per_run)) if per_run else set()
    for label in sorted(common, key=_label_order):
        points.append((f"[{label}]", [(spec, p[label]) for (spec, _), p in zip(runs, per_run)]))
    return points


@dataclass(frozen=True)
class JointUnit:
    """One joint metric of one (seed, task) at one checkpoint point: what one worker scores."""

    entry: str                                  # the joint metric's name (NRDS)
    suffix: str                                 # "" (last checkpoints) or the eval point's "[e5]", "[s938]"
    runs: tuple[tuple[RunSpec, Path], ...]      # every model of the seed and task, at that point


def joint_units(groups: list[list[tuple[RunSpec, Path]]], out: Path) -> list[JointUnit]:
    """Every (joint metric, checkpoint point) of every (seed, task) group, so that ``--jobs N`` spreads the
    points over workers (scored one after another, the budget rungs made the joint phase a third of a table's
    time); each unit's judge trains from its own protocol's seed, so the split changes no value."""
    return [JointUnit(e.name, suffix, tuple(group))
            for runs in groups for e in joint_entries(runs[0][0]) for suffix, group in joint_points(runs, out)]


def run_joint(unit: JointUnit, out: Path, store: "ResultStore", *,
              device: torch.device, resume: bool, progress: bool, **_: Any) -> list[str]:
    """Score one joint metric of one (seed, task) over its models at one checkpoint point; returns the
    failures."""
    runs = list(unit.runs)
    if resume and all(_joint_scored(store, spec, unit.entry, unit.suffix) for spec, _ in runs):
        return []
    e = next(x for x in joint_entries(runs[0][0]) if x.name == unit.entry)
    art = out / "joint" / f"seed{runs[0][0].seed}" / runs[0][0].task / unit.suffix.strip("[]")
    return _score_joint_point(e, unit.suffix, runs, out, store, art, device, progress)


def _score_joint_point(e: Any, suffix: str, runs: list[tuple[RunSpec, Path]], out: Path, store: "ResultStore",
                       art: Path, device: torch.device, progress: bool) -> list[str]:
    seed, task = runs[0][0].seed, runs[0][0].task
    where = f"{e.name}{suffix} | {task} | seed {seed}"
    try:
        results, left_out = score_joint(runs, e, device=device, artifacts=art, progress=progress)
    except (KeyboardInterrupt, SystemExit):
        raise
    except Exception as ex:  # noqa: BLE001
        reason = describe_failure(ex, art, out)
        log.warning("joint metric %s failed: %s", where, reason)
        store.append([record(spec, e.name + suffix, None, "", "", "failed", f"{e.name}: {reason}")
                      for spec, _ in runs])
        return [where]
    failed = []
    for spec, checkpoint in runs:
        res = results.get(spec.row)
        if spec.row in left_out:
            log.warning("joint metric %s: %s left out: %s", where, spec.row, left_out[spec.row])
            store.append([record(spec, e.name + suffix, None, "", "", "failed", f"{e.name}: {left_out[spec.row]}")])
            failed.append(f"{e.name}{suffix} | {spec.row} | {task} | seed {seed}")
        if res is None:
            continue
        for h, p in res.protocols.items():
            store.add_protocol(h, p)
        rel = str(checkpoint.relative_to(out))
        store.append([record(spec, k + suffix, v, rel, res.protocol_hashes[k]) for k, v in res.values.items()])
    return failed


def _label(spec: RunSpec) -> str:
    return f"{spec.row} | {spec.task} | seed {spec.seed}"


def _joint_label(unit: JointUnit) -> str:
    spec = unit.runs[0][0]
    return f"{unit.entry}{unit.suffix} | {spec.task} | seed {spec.seed}"


#: torch threads (and the CPUs asked of Slurm or Ray) of a run on a cluster when --cpus-per-run is not given
CLUSTER_CPUS = 4


@dataclass(frozen=True)
class Isolation:
    """How runs are run: each in a process of its own (the default; :mod:`bench.jobs`), at most ``jobs`` at once,
    ended past ``time_limit_min`` (else the profile's) or after ``stall_limit_min`` without a heartbeat (else the
    profile's); ``isolate=False`` runs them one after the other in this process (a debugger's choice: a plug-in's
    exit, hang or global state then reaches the command). The workers share ``threads`` torch threads (default:
    this process's)."""
    jobs: int = 1
    isolate: bool = True
    time_limit_min: float | None = None
    stall_limit_min: float | None = None
    threads: int | None = None
    executor: ExecutorOptions = field(default_factory=ExecutorOptions)

    def limits(self, spec: RunSpec):
        from bench.jobs import Limits
        prof = spec.profile_settings
        wall = 60 * self.time_limit_min if self.time_limit_min is not None else prof.wall_limit_s()
        stall = self.stall_limit_min if self.stall_limit_min is not None else prof.stall_limit_min
        return Limits(wall_s=wall, stall_s=60 * stall)


@dataclass(frozen=True)
class RunOptions:
    """How one command runs its run specs (what the specs say is what runs; none of this defines a run, so none of
    it is in a run's hashes): the device, determinism, resuming, progress bars and how runs are isolated."""
    device: torch.device
    deterministic: bool = False
    resume: bool = False
    progress: bool = True
    force_resume: bool = False
    isolation: Isolation = field(default_factory=Isolation)

    def worker_options(self) -> dict[str, Any]:
        """What each run's worker function takes besides its item (plain values: they travel to workers)."""
        return dict(device=self.device, deterministic=self.deterministic, resume=self.resume,
                    progress=self.progress, force_resume=self.force_resume)


def _each(fn: Callable[..., Any], items: list[Any], out: Path, store: "ResultStore", how: Isolation,
          opts: dict[str, Any], *, describe: Callable[[Any], str], on_death: Callable[[Any, str], Any],
          spec_of: Callable[[Any], RunSpec]):
    """``fn(item, out, store, **opts)`` for each item: each in a worker process of its own (:mod:`bench.jobs`),
    where an item whose worker died, exited or overran its limits gets ``on_death(item, reason)``; or, with
    ``how.isolate`` off, in this process one after the other; or as submitit jobs (:mod:`bench.executors`)."""
    if how.executor.name != "local" and items:
        from bench.executors import map_ray, map_submitit, worker_setup
        from bench.jobs import threads_per_job

        def timeout_min(item: Any) -> float | None:
            wall = how.limits(spec_of(item)).wall_s
            return None if wall is None else wall / 60
        here = how.executor.name == "submitit-local" or (how.executor.name == "ray" and not how.executor.address)
        threads = how.executor.cpus_per_run or (threads_per_job(how.jobs, how.threads) if here else CLUSTER_CPUS)
        from bench.spool import ingest, snapshot, spool_dir
        from bench.store_pg import is_url
        engine = map_ray if how.executor.name == "ray" else map_submitit
        spool = spool_dir(out) if not is_url(store.path) else None   # PostgreSQL takes the workers' writes
        if spool is not None:
            ingest(store, spool)                      # what an earlier command's workers left
            snapshot(store, spool)                    # what this command's workers read
        try:
            for result in engine(fn, items, out, store.path, opts, ex=how.executor,
                                 workers=how.jobs if how.jobs > 1 or here else None, setup=worker_setup(threads),
                                 describe=describe, on_death=on_death, timeout_min=timeout_min):
                if spool is not None:
                    ingest(store, spool)
                yield result
        finally:
            if spool is not None:
                ingest(store, spool)
        return
    if how.isolate and items:
        from bench.jobs import run_parallel, visible_gpus
        yield from run_parallel(fn, items, out, store.path, jobs=how.jobs, on_death=on_death, describe=describe,
                                limits=lambda item: how.limits(spec_of(item)), threads=how.threads,
                                gpus=visible_gpus(opts.get("device")) if how.jobs > 1 else None, **opts)
        return
    for i, item in enumerate(items, 1):
        log.info("[%d/%d] %s", i, len(items), describe(item))
        yield fn(item, out, store, **opts)


def _outcomes(specs: list[RunSpec], out: Path, store: "ResultStore", how: Isolation, opts: dict[str, Any]):
    """Each spec's (status, checkpoint)."""
    def died(spec: RunSpec, reason: str) -> tuple[str, None]:
        store.append([record(spec, "run", None, "", "", "failed", reason)])
        return "failed", None
    return _each(run_one, specs, out, store, how, opts, on_death=died, describe=_label, spec_of=lambda s: s)


def _joints(groups: list[list[tuple[RunSpec, Path]]], out: Path, store: "ResultStore", how: Isolation,
            opts: dict[str, Any]):
    """The failures of each (seed, task) group's joint metrics, one unit per metric and checkpoint point."""
    def died(unit: JointUnit, reason: str) -> list[str]:
        store.append([record(s, unit.entry + unit.suffix, None, "", "", "failed", reason) for s, _ in unit.runs])
        return [_joint_label(unit)]
    return _each(run_joint, joint_units(groups, out), out, store, how, opts, on_death=died, describe=_joint_label,
                 spec_of=lambda unit: unit.runs[0][0])


def _comparisons(suite: "Suite", trained: dict[tuple[int, str], list[tuple[RunSpec, Path]]], out: Path) -> None:
    """Each task's side-by-side pictures of its rows, one per seed (:func:`bench.grids.write_comparison`; the
    first seed's is ``comparison-<task>.png``): every model row of the suite whose run folder holds samples, so
    that a command adding rows or tasks to a folder (``--rows``, ``--tasks``, ``--resume``) draws them beside those
    an earlier command trained."""
    for task in dict.fromkeys(t for _, t in trained):
        seeds = sorted(s for s, t in trained if t == task)
        for seed in seeds:
            runs = [(row.name, out / "runs" / slug(row.name) / f"seed{seed}" / task) for row in suite.rows
                    if row.kind == "model"]
            write_comparison(runs, out / comparison_file(task, None if seed == seeds[0] else seed), seed)


@RUNNERS.register("train-score")
class TrainScoreRunner:
    """Train and score every row x task x seed; then the joint metrics of each seed's models."""

    @staticmethod
    def validate(suite: "Suite", source: str) -> None:
        validate_models_and_metrics(suite, source)

    @staticmethod
    def preflight(suite: "Suite", specs: list[RunSpec], device: torch.device | None = None, *,
                  out: Path | None = None, resume: bool = False, force_resume: bool = False) -> None:
        """Fail before any work when the suite's data, weights or extractors are missing, its data cannot
        serve its tasks (one check per task and row kind), or a run to resume was trained otherwise."""
        seen = set()
        for spec in specs:
            if (spec.task, spec.kind) in seen:
                continue
            seen.add((spec.task, spec.kind))
            score_preflight(spec, device or torch.device("cpu"))
        for spec in specs if out is not None else []:
            if spec.kind != "model":
                continue
            run_dir = spec.run_dir(out)
            if resume:
                check_resume(spec, run_dir, force_resume)
            elif ckpt.list_checkpoints(run_dir):
                raise ConfigError(f"{run_dir} already holds checkpoints; pass --resume to continue it or choose "
                                  "a new --out")

    @staticmethod
    def run(suite: "Suite", out: Path, store: "ResultStore", specs: list[RunSpec],
            options: "RunOptions") -> tuple[int, int, list[str]]:
        how = options.isolation
        ran = skipped = 0
        failed: list[str] = []
        trained: dict[tuple[int, str], list[tuple[RunSpec, Path]]] = defaultdict(list)
        opts = options.worker_options()
        for spec, (status, checkpoint) in zip(specs, _outcomes(specs, out, store, how, opts)):
            if status == "skipped":
                skipped += 1
            else:
                ran += 1
            if status == "failed":
                failed.append(_label(spec))
            elif spec.kind == "model" and checkpoint is not None:
                trained[(spec.seed, spec.task)].append((spec, checkpoint))
        for fails in _joints(list(trained.values()), out, store, how, opts):
            failed += fails
        _comparisons(suite, trained, out)
        return ran, skipped, failed
