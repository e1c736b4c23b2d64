"""Runs in parallel worker processes (``bench run --jobs N``).

A suite's runs (row x task x seed) are independent until its joint metrics, so ``--jobs N`` trains and
scores them in N worker processes, each with ``threads // N`` torch threads (at least 1): small models
use threads poorly and processes well (on 2 cores a 64x64 pix2pix step takes 101 ms with 2 threads and
155 ms with 1 thread beside another 1-thread job: two jobs do 1.3 times the work), and a GPU that one
small run leaves idle between kernel launches takes several. The joint metrics (NRDS) then run in the
calling process over each seed's checkpoints, as with one job.

Each run gets a fresh worker process, started with the ``spawn`` method (safe with CUDA and OpenMP);
it loads the built-in registries and the plug-in modules loaded here (``--plugin``), so components
registered by a script without an importable module are not seen by a worker. Workers write their own
run folders and append to the one results store (several writers are safe, see :mod:`bench.results`);
the caller holds the output folder's lock for all of them. A worker that dies (killed, out of memory)
costs its run only: it is recorded as failed with the reason, the other runs go on, and ``--resume``
continues it from its newest checkpoint.
"""

from __future__ import annotations

import logging
import multiprocessing
from multiprocessing.connection import wait
from pathlib import Path
from typing import Any, Callable

import torch

from bench import progress
from bench.runspec import RunSpec

log = logging.getLogger(__name__)

Outcome = tuple[str, "Path | None"]      # ("ok" | "failed" | "skipped", checkpoint)


def threads_per_job(jobs: int, threads: int | None = None) -> int:
    """Torch threads for each of ``jobs`` workers sharing this process's ``threads`` (at least 1)."""
    threads = torch.get_num_threads() if threads is None else threads
    return max(1, threads // max(1, jobs))


def _worker(fn: Callable[..., tuple[str, Path | None]], spec: RunSpec, out: str, store: str,
            kwargs: dict[str, Any], plugins: list[str], threads: int, log_level: int, conn) -> None:
    """One run in a fresh process: load the registries, run it, send (status, checkpoint) back."""
    logging.basicConfig(level=log_level, format="%(levelname)s %(name)s [job %(process)d]: %(message)s")
    torch.set_num_threads(threads)
    progress.set_enabled(False)             # N interleaved bars help no one; the caller shows one over runs
    from bench.registry import load_builtins, load_plugin
    from bench.results import ResultStore
    load_builtins()
    for m in plugins:
        load_plugin(m)
    log.info("start %s | %s | seed %d", spec.row, spec.task, spec.seed)
    status, checkpoint = fn(spec, Path(out), ResultStore(store), **kwargs)
    conn.send((status, None if checkpoint is None else str(checkpoint)))
    conn.close()


def run_parallel(fn: Callable[..., tuple[str, Path | None]], specs: list[RunSpec], out: Path, store: Path, *,
                 jobs: int, on_death: Callable[[RunSpec, str], None], **kwargs: Any) -> list[Outcome]:
    """``fn(spec, out, ResultStore(store), **kwargs)`` (a module-level function: workers import it by name)
    for every spec, at most ``jobs`` at once, each in its own
    process (so a death is pinned on its run and memory is returned between runs); the outcomes in the
    order of ``specs``. ``on_death(spec, reason)`` records a run whose process died."""
    from bench.registry import loaded_plugins
    plugins = [p["module"] for p in loaded_plugins()]
    ctx = multiprocessing.get_context("spawn")
    threads, level = threads_per_job(jobs), logging.getLogger().level
    outcomes: list[Outcome] = [("failed", None)] * len(specs)
    queue = list(range(len(specs)))
    running: dict[int, tuple[Any, Any]] = {}           # sentinel -> (process, receiving end), by spec index below
    index: dict[int, int] = {}
    bar = progress.bar(total=len(specs), desc=f"runs ({jobs} jobs)", unit="run")
    try:
        while queue or running:
            while queue and len(running) < jobs:
                i = queue.pop(0)
                recv, send = ctx.Pipe(duplex=False)
                proc = ctx.Process(target=_worker, args=(fn, specs[i], str(out), str(store), kwargs, plugins, threads,
                                                           level, send),
                                   name=f"bench-job-{i}")
                proc.start()
                send.close()
                running[proc.sentinel], index[proc.sentinel] = (proc, recv), i
            for sentinel in wait(list(running)):
                proc, recv = running.pop(sentinel)
                i = index.pop(sentinel)
                outcomes[i] = _collect(proc, recv, specs[i], on_death)
                bar.update(1)
    except BaseException:
        for proc, _ in running.values():
            proc.terminate()
        for proc, _ in running.values():
            proc.join()
        raise
    finally:
        bar.close()
    return outcomes


def _collect(proc, recv, spec: RunSpec, on_death: Callable[[RunSpec, str], None]) -> Outcome:
    try:
        result = recv.recv() if recv.poll() else None
    except (EOFError, OSError):                        # the process died before it sent its outcome
        result = None
    recv.close()
    proc.join()
    if result is not None:
        status, checkpoint = result
        return status, None if checkpoint is None else Path(checkpoint)
    reason = (f"its worker process died (exit code {proc.exitcode}: killed, or out of memory? try fewer --jobs); "
              "rerun with --resume to retry it")
    log.warning("run %s / %s / seed %d failed: %s", spec.row, spec.task, spec.seed, reason)
    on_death(spec, reason)
    return "failed", None
