"""Runs in parallel worker processes (``bench run --jobs N``).

A suite's runs (row x task x seed) are independent until its joint metrics, so ``--jobs N`` trains and
scores them in N worker processes, each with ``threads // N`` torch threads (at least 1): small models
use threads poorly and processes well (on 2 cores a 64x64 pix2pix step takes 101 ms with 2 threads and
155 ms with 1 thread beside another 1-thread job: two jobs do 1.3 times the work), and a GPU that one
small run leaves idle between kernel launches takes several. The joint metrics (NRDS: one classifier
over all of a seed's models) then run the same way, one (seed, task) per worker.

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
import os
import threading
import time
from multiprocessing.connection import wait
from pathlib import Path
from typing import Any, Callable

import torch

from bench import progress

log = logging.getLogger(__name__)


def threads_per_job(jobs: int, threads: int | None = None) -> int:
    """Torch threads for each of ``jobs`` workers sharing this process's ``threads`` (at least 1)."""
    threads = torch.get_num_threads() if threads is None else threads
    return max(1, threads // max(1, jobs))


def _worker(fn: Callable[..., Any], item: Any, out: str, store: str, kwargs: dict[str, Any], plugins: list[str],
            threads: int, log_level: int, what: str, conn, parent: int) -> None:
    """One item in a fresh process: load the registries, run ``fn`` on it, send the result back."""
    _exit_with_parent(parent)
    logging.basicConfig(level=log_level, format="%(levelname)s %(name)s [job %(process)d]: %(message)s")
    torch.set_num_threads(threads)
    progress.set_enabled(False)             # N interleaved bars help no one; the caller shows one over runs
    from bench.registry import load_builtins, load_plugin
    from bench.results import ResultStore
    load_builtins()
    for m in plugins:
        load_plugin(m)
    log.info("start %s", what)
    conn.send(fn(item, Path(out), ResultStore(store), **kwargs))
    conn.close()


def _exit_with_parent(parent: int, poll_s: float = 2.0) -> None:
    """End this worker when ``parent``, the process that started it, is gone (killed by SIGTERM or SIGKILL, so
    that its own clean-up never ran; maybe before this worker got here): an orphaned worker would go on
    writing into a folder nobody holds the lock of."""
    if os.getppid() != parent:
        os._exit(1)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(poll_s)
        os._exit(1)
    threading.Thread(target=watch, name="bench-job-parent-watch", daemon=True).start()


def run_parallel(fn: Callable[..., Any], items: list[Any], out: Path, store: Path, *, jobs: int,
                 on_death: Callable[[Any, str], Any], describe: Callable[[Any], str] = str,
                 **kwargs: Any) -> list[Any]:
    """``fn(item, out, ResultStore(store), **kwargs)`` (a module-level function: workers import it by name)
    for every item, at most ``jobs`` at once, each in its own process (so a death is pinned on its item and
    memory is returned between items); the results in the order of ``items``. An item whose process died
    gets ``on_death(item, reason)`` (which records it) as its result."""
    from bench.registry import loaded_plugins
    plugins = [p["module"] for p in loaded_plugins()]
    ctx = multiprocessing.get_context("spawn")
    jobs = max(1, min(jobs, len(items)))
    threads, level = threads_per_job(jobs), logging.getLogger().level
    results: list[Any] = [None] * len(items)
    queue = list(range(len(items)))
    running: dict[int, tuple[Any, Any, int]] = {}      # process sentinel -> (process, receiving end, item index)
    bar = progress.bar(total=len(items), desc=f"{jobs} jobs", unit="run")
    try:
        while queue or running:
            while queue and len(running) < jobs:
                i = queue.pop(0)
                recv, send = ctx.Pipe(duplex=False)
                proc = ctx.Process(target=_worker, name=f"bench-job-{i}",
                                   args=(fn, items[i], str(out), str(store), kwargs, plugins, threads, level,
                                         describe(items[i]), send, os.getpid()))
                proc.start()
                send.close()
                running[proc.sentinel] = (proc, recv, i)
            for sentinel in wait(list(running)):
                proc, recv, i = running.pop(sentinel)
                results[i] = _collect(proc, recv, items[i], on_death, describe)
                bar.update(1)
    except BaseException:
        for proc, _, _ in running.values():
            proc.terminate()
        for proc, _, _ in running.values():
            proc.join()
        raise
    finally:
        bar.close()
    return results


def _collect(proc, recv, item: Any, on_death: Callable[[Any, str], Any], describe: Callable[[Any], str]) -> Any:
    try:
        return recv.recv()
    except (EOFError, OSError):                        # the process died before it sent its result
        pass
    finally:
        recv.close()
        proc.join()
    reason = (f"its worker process died (exit code {proc.exitcode}: killed, or out of memory? try fewer --jobs); "
              "rerun with --resume to retry it")
    log.warning("%s failed: %s", describe(item), reason)
    return on_death(item, reason)
