"""Where a suite's runs execute: one interface, the engines this field already uses behind it.

A suite's runs (and then its joint-metric groups) are items handed to ``fn(item, out, store, **opts)``, a
module-level function (:func:`bench.runners.run_one`, :func:`bench.runners.run_joint`) that trains and
scores one item, writes its run folder and appends its records to the store. An executor runs ``fn`` on
every item and yields the results in the order of the items; an item whose worker died, raised past ``fn``,
or overran its limits gets ``on_death(item, reason)`` (which records the failure) instead, and the other
items go on. Nothing is lost or done twice by a retry: ``fn`` with ``resume`` continues a run from its newest
checkpoint and skips one already scored.

- ``local`` (the default): each item in a worker process of this machine, ``--jobs N`` at once
  (:mod:`bench.jobs`), or in this process with ``--in-process``.
- ``slurm``: each item a Slurm job through submitit (partition, time, GPUs per run as options), at most
  ``--jobs N`` queued at once (default: all). A job that Slurm preempts or times out is requeued by submitit
  and continues from its newest checkpoint (:class:`RunTask`'s ``checkpoint``). submitit is an optional extra
  (``pip install 'cgan-bench[cluster]'``).
- ``submitit-local``: the same jobs as subprocesses of this machine through submitit's local executor, to try
  a Slurm set-up (pickling, plug-ins, the store) without a cluster.
- ``ray``: each item a Ray task (``--ray-address``, else ``RAY_ADDRESS``, else a local Ray started for the
  command) with ``--cpus-per-run`` CPUs and ``--gpus-per-run`` GPUs, a fresh worker process per task, cancelled
  past the run's wall-time limit; ray is in the same extra.

The engines share one loop (:func:`_windowed`: submit, collect, fail an item, in the items' order). Their
workers never write the SQLite store (unsafe from several hosts): they read a snapshot of it and spool their
records to files that the command ingests exactly once (:mod:`bench.spool`), so the output folder only needs
to be on a file system every worker can reach.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from bench.errors import ConfigError

log = logging.getLogger(__name__)

EXECUTORS = ("local", "slurm", "submitit-local", "ray")
#: how often the command looks at its submitit jobs (seconds)
POLL_S = 2.0


@dataclass(frozen=True)
class ExecutorOptions:
    """The engine and its settings: ``name`` (one of :data:`EXECUTORS`), ``gpus_per_run``, the Slurm
    ``partition`` and extra ``slurm`` parameters (submitit's ``slurm_*`` names without the prefix, e.g.
    ``{"account": "lab", "qos": "high"}``), ``cpus_per_run`` and the ``folder`` for submitit's logs (default:
    ``OUT/submitit``)."""
    name: str = "local"
    gpus_per_run: int = 0
    cpus_per_run: int | None = None
    partition: str | None = None
    slurm: dict[str, Any] = field(default_factory=dict)
    folder: Path | None = None
    address: str | None = None

    def __post_init__(self) -> None:
        if self.name not in EXECUTORS:
            raise ConfigError(f"--executor {self.name!r} is not one of {', '.join(EXECUTORS)}")
        if self.gpus_per_run < 0:
            raise ConfigError(f"--gpus-per-run must be 0 or more, not {self.gpus_per_run}")
        if self.name != "slurm" and (self.partition or self.slurm):
            raise ConfigError("--partition and --slurm set Slurm jobs: add --executor slurm")
        if self.name == "local" and self.gpus_per_run:
            raise ConfigError("--gpus-per-run sizes submitit jobs and Ray tasks; local workers share this machine's "
                              "GPUs (CUDA_VISIBLE_DEVICES chooses them)")
        if self.address and self.name != "ray":
            raise ConfigError("--ray-address names a Ray cluster: add --executor ray")


def check(ex: ExecutorOptions) -> None:
    """Before any work: submitit is installed where the executor needs it, and every ``--slurm`` key is one of
    submitit's Slurm parameters."""
    if ex.name == "local":
        return
    if ex.name == "ray":
        ray_module()
        return
    submitit = submitit_module()
    valid = set(submitit.SlurmExecutor._valid_parameters())
    unknown = sorted(set(ex.slurm) - valid)
    if unknown:
        raise ConfigError(f"--slurm {unknown[0]}=...: not a Slurm parameter submitit knows; it knows: "
                          f"{', '.join(sorted(valid))}")


def submitit_module():
    """submitit, or a one-line error saying how to install it."""
    try:
        import submitit
    except ImportError:
        raise ConfigError("--executor slurm / submitit-local need submitit: pip install 'cgan-bench[cluster]' "
                          "(or pip install submitit)") from None
    return submitit


class RunTask:
    """One item as a submitit job or Ray task: ``fn(item, out, store, **opts)`` in the job's process, after
    the same set-up as a local worker (plug-ins, threads, the command's code version), its store the
    command's snapshot for reading and spool files for writing (:mod:`bench.spool`; ``spooled=False``: the
    store itself). Preempted or timed out,
    submitit calls :meth:`checkpoint` and requeues the job, which then resumes the run from its newest
    checkpoint (``resume=True``) instead of starting it again."""

    def __init__(self, fn: Callable[..., Any], setup: Any, spooled: bool = True):
        self.fn = fn
        self.setup = setup
        self.spooled = spooled

    def __call__(self, item: Any, out: str, store: str, opts: dict[str, Any]) -> Any:
        import torch

        from bench.provenance import adopt_code_version
        from bench.registry import load_builtins, load_plugin
        from bench.stores import open_store
        from bench.spool import SNAPSHOT, SpooledStore, spool_dir
        logging.basicConfig(level=self.setup.log_level, format="%(levelname)s %(name)s [job %(process)d]: %(message)s")
        if self.setup.code_version is not None:
            adopt_code_version(self.setup.code_version)
        torch.set_num_threads(self.setup.threads)
        load_builtins()
        for m in self.setup.plugins:
            load_plugin(m)
        spool = spool_dir(out)
        writer = SpooledStore(spool / SNAPSHOT, spool) if self.spooled else open_store(store)
        return self.fn(item, Path(out), writer, **opts)

    def checkpoint(self, item: Any, out: str, store: str, opts: dict[str, Any]):
        submitit = submitit_module()
        again = dict(opts)
        if "resume" in again:
            again["resume"] = True
        return submitit.helpers.DelayedSubmission(self, item, out, store, again)


def _job_parameters(ex: ExecutorOptions, timeout_min: float | None, threads: int) -> dict[str, Any]:
    """submitit's ``update_parameters`` for one run: AutoExecutor's cluster-neutral names, Slurm's with
    ``slurm_``."""
    p: dict[str, Any] = {"nodes": 1, "tasks_per_node": 1, "cpus_per_task": ex.cpus_per_run or threads,
                         "name": "cgan-bench"}
    if ex.gpus_per_run:
        p["gpus_per_node"] = ex.gpus_per_run
    if timeout_min is not None:
        p["timeout_min"] = max(1, int(timeout_min + 0.999))
    if ex.name == "slurm":
        if ex.partition:
            p["slurm_partition"] = ex.partition
        p.update({f"slurm_{k}": v for k, v in ex.slurm.items()})
    return p


def _failure(job: Any, e: BaseException, what: str) -> str:
    """A failed submitit job's reason in one line: its exception's last line, and where its log is."""
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    last = lines[-1] if lines else type(e).__name__
    return f"its {what} job {job.job_id} failed ({last}); log: {job.paths.stderr}; rerun with --resume to retry it"


@dataclass
class _Engine:
    """How one engine submits an item, finds the ones done, reads a result (raising the item's failure),
    explains a failure in one line, and ends an item that overran its time (None: the engine enforces it)."""
    submit: Callable[[Any], Any]
    done: Callable[[list[Any]], list[Any]]
    result: Callable[[Any], Any]
    reason: Callable[[Any, BaseException], str]
    cancel: Callable[[Any], None] | None = None


def _windowed(items: list[Any], limit: int, engine: _Engine, *, describe: Callable[[Any], str],
              on_death: Callable[[Any, str], Any], wall_s: Callable[[Any], float | None]) -> Iterator[Any]:
    """Each item through ``engine``, at most ``limit`` submitted and not done at once; the results in the order
    of the items, an item that failed (or overran ``wall_s``, where the engine cannot enforce it) replaced by
    ``on_death(item, reason)``."""
    results: dict[int, Any] = {}
    queue = list(range(len(items)))
    running: dict[int, tuple[Any, float]] = {}
    nxt = 0
    while nxt < len(items):
        while queue and len(running) < limit:
            i = queue.pop(0)
            running[i] = (engine.submit(items[i]), time.monotonic())
        handles = {id(h): i for i, (h, _) in running.items()}
        for h in engine.done([h for h, _ in running.values()]) if running else []:
            i = handles[id(h)]
            running.pop(i)
            try:
                results[i] = engine.result(h)
            except Exception as e:  # noqa: BLE001 - the item's failure (raised, killed, timed out) costs its item
                why = engine.reason(h, e)
                log.warning("%s failed: %s", describe(items[i]), why)
                results[i] = on_death(items[i], why)
        now = time.monotonic()
        for i, (h, t0) in list(running.items()):
            limit_s = wall_s(items[i]) if engine.cancel is not None else None
            if limit_s is not None and now - t0 > limit_s:
                engine.cancel(h)
                running.pop(i)
                why = (f"it ran past its wall-time limit ({limit_s / 60:.3g} min) and was cancelled; rerun with "
                       "--resume to continue it from its newest checkpoint")
                log.warning("%s failed: %s", describe(items[i]), why)
                results[i] = on_death(items[i], why)
        while nxt in results:
            yield results.pop(nxt)
            nxt += 1


def map_submitit(fn: Callable[..., Any], items: list[Any], out: Path, store: Path, opts: dict[str, Any], *,
                 ex: ExecutorOptions, workers: int | None, setup: Any, describe: Callable[[Any], str],
                 on_death: Callable[[Any, str], Any], timeout_min: Callable[[Any], float | None]) -> Iterator[Any]:
    """Each item as a submitit job (at most ``workers`` submitted and not yet done at once, all when None);
    the results in the order of the items. The job's time limit is the run's wall-time limit."""
    submitit = submitit_module()
    folder = Path(ex.folder or Path(out) / "submitit")
    cluster = "local" if ex.name == "submitit-local" else "slurm"
    executor = submitit.AutoExecutor(folder=str(folder / "%j"), cluster=cluster)
    task = RunTask(fn, setup, spooled=not str(store).startswith(("postgresql://", "postgres://")))

    def submit(item: Any) -> Any:
        executor.update_parameters(**_job_parameters(ex, timeout_min(item), setup.threads))
        job = executor.submit(task, item, str(out), str(store), opts)
        log.info("%s: submitted as job %s", describe(item), job.job_id)
        return job

    def done(jobs: list[Any]) -> list[Any]:
        ready = [j for j in jobs if j.done()]
        if not ready:
            time.sleep(POLL_S)
        return ready

    engine = _Engine(submit=submit, done=done, result=lambda j: j.result(),
                     reason=lambda j, e: _failure(j, e, cluster))
    yield from _windowed(items, len(items) if not workers else max(1, workers), engine, describe=describe,
                         on_death=on_death, wall_s=lambda item: None)


def _ray_call(task: "RunTask", item: Any, out: str, store: str, opts: dict[str, Any]) -> Any:
    return task(item, out, store, opts)


def map_ray(fn: Callable[..., Any], items: list[Any], out: Path, store: Path, opts: dict[str, Any], *,
            ex: ExecutorOptions, workers: int | None, setup: Any, describe: Callable[[Any], str],
            on_death: Callable[[Any, str], Any], timeout_min: Callable[[Any], float | None]) -> Iterator[Any]:
    """Each item as a Ray task on the cluster at ``ex.address`` (else ``RAY_ADDRESS``, else a local one started
    for this command): ``setup.threads`` CPUs and ``ex.gpus_per_run`` GPUs each, a fresh worker process per task
    (``max_calls=1``: no state leaks between runs), no retries (``--resume`` retries, from the checkpoint), and
    cancelled past the run's wall-time limit."""
    ray = ray_module()
    started = not ray.is_initialized()
    if started:
        ray.init(address=ex.address or None, include_dashboard=False, log_to_driver=False,
                 logging_level=logging.WARNING)
    remote = ray.remote(max_calls=1)(_ray_call).options(num_cpus=setup.threads, num_gpus=ex.gpus_per_run,
                                                        max_retries=0)
    task = RunTask(fn, setup, spooled=not str(store).startswith(("postgresql://", "postgres://")))

    def submit(item: Any) -> Any:
        return remote.remote(task, item, str(out), str(store), opts)

    def done(refs: list[Any]) -> list[Any]:
        ready, _ = ray.wait(refs, num_returns=1, timeout=POLL_S)
        return ready

    def reason(ref: Any, e: BaseException) -> str:
        lines = [ln.strip() for ln in str(e).splitlines() if ln.strip() and not ln.startswith("Traceback")]
        what = lines[-1] if lines else type(e).__name__
        return f"its Ray task failed ({type(e).__name__}: {what[:300]}); rerun with --resume to retry it"

    engine = _Engine(submit=submit, done=done, result=ray.get, reason=reason,
                     cancel=lambda ref: ray.cancel(ref, force=True))
    wall = {}

    def wall_s(item: Any) -> float | None:
        if id(item) not in wall:
            t = timeout_min(item)
            wall[id(item)] = None if t is None else 60 * t
        return wall[id(item)]
    try:
        yield from _windowed(items, len(items) if not workers else max(1, workers), engine, describe=describe,
                             on_death=on_death, wall_s=wall_s)
    finally:
        if started:
            ray.shutdown()


def ray_module():
    """ray, or a one-line error saying how to install it."""
    try:
        import ray
    except ImportError:
        raise ConfigError("--executor ray needs ray: pip install 'cgan-bench[cluster]' (or pip install 'ray>=2.9')"
                          ) from None
    return ray


def worker_setup(threads: int) -> Any:
    """What a submitit job needs from the command (the same as a fresh local worker): plug-ins, threads, log
    level and code version."""
    from bench.jobs import WorkerSetup
    from bench.provenance import running_code_version
    from bench.registry import loaded_plugins
    return WorkerSetup(plugins=tuple(p["module"] for p in loaded_plugins()), threads=max(1, threads),
                       log_level=logging.getLogger().level, parent=os.getpid(), fresh=True,
                       code_version=running_code_version())
