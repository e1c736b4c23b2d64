"""Every run in a process of its own: ``bench run`` (one job) and ``bench run --jobs N``.

A suite's runs (row x task x seed) are independent until its joint metrics, so each one trains and
scores in a worker process of its own, at most ``--jobs N`` at once, each with ``threads // N`` torch
threads (at least 1): small models use threads poorly and processes well (on 2 cores a 64x64 pix2pix
step takes 101 ms with 2 threads and 155 ms with 1 thread beside another 1-thread job: two jobs do 1.3
times the work). The joint metrics (NRDS: one classifier over all of a seed's models) then run the same
way, one (seed, task) per worker.

A process per run is what makes a plug-in's faults cost its own row only (issue 22): ``sys.exit``,
``os._exit``, a crash, ``KeyboardInterrupt`` raised by plug-in code, a hang (ended by the wall-time
limit or the stall watchdog, :class:`Limits`), or global torch state it changed (the default dtype, the
RNG, threads), which dies with its process instead of leaking into the next row. The run is recorded as
failed with the reason, the other runs go on, and ``--resume`` retries it from its newest checkpoint.

Workers are forked where that is safe (Linux, CUDA not yet initialised and no native thread pool started in
this process: a fork costs milliseconds and inherits the loaded plug-ins). Else they are forked from a
``forkserver`` (POSIX): one clean process, started once per command with torch, the bench and what every run
imports preloaded, so a worker still starts in milliseconds where ``spawn`` took 3 s (importing torch and
``torch._dynamo`` anew in each); ``spawn`` only where neither exists. Workers that are not forked from this
process take its environment, code version and ``--plugin`` modules from :class:`WorkerSetup` (so components
registered by a script without an importable module are not seen there). Workers write their own run folders
and append to the one results store (several writers are safe, see :mod:`bench.results`); the caller holds the
output folder's lock for all of them. A worker ends with the command (``PR_SET_PDEATHSIG`` on Linux, else a
thread that polls) and ignores Ctrl-C, which the command handles by ending them.
"""

from __future__ import annotations

import importlib
import logging
import multiprocessing
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass
from multiprocessing.connection import wait
from pathlib import Path
from typing import Any, Callable

import torch

from bench import failpoints, heartbeat, native, progress
from bench.native import native_threads

log = logging.getLogger(__name__)

#: how often the command looks at its workers' clocks (seconds)
POLL_S = 1.0


@dataclass(frozen=True)
class Limits:
    """When a worker is ended: ``wall_s`` seconds after it started, or ``stall_s`` seconds after its last
    heartbeat (a training step, a scoring batch, a judge's step; :mod:`bench.heartbeat`). ``None``: never."""
    wall_s: float | None = None
    stall_s: float | None = None

    def overdue(self, started: float, last_beat: float, now: float) -> str | None:
        if self.wall_s is not None and now - started > self.wall_s:
            return (f"it ran past its wall-time limit of {_minutes(self.wall_s)} (profile key time_limit_min, or "
                    "--time-limit MIN); rerun with --resume and a larger limit to continue it")
        if self.stall_s is not None and now - last_beat > self.stall_s:
            return (f"stalled: no training step, scoring batch or judge step for {_minutes(self.stall_s)} (a hung "
                    "plug-in or data worker?); it was ended (--stall-limit MIN sets the watchdog)")
        return None


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.3g} min"


def threads_per_job(jobs: int, threads: int | None = None) -> int:
    """Torch threads for each of ``jobs`` workers sharing this process's ``threads`` (at least 1)."""
    threads = torch.get_num_threads() if threads is None else threads
    return max(1, threads // max(1, jobs))


@dataclass(frozen=True)
class WorkerSetup:
    """What a worker needs besides its item: the plug-ins (not forked from the command only), its torch threads,
    the log level, the command's pid (it ends with it), whether it shows its own progress bars (one job) and
    whether it stands for the command at a failpoint (one job, :mod:`bench.failpoints`); for a worker not forked
    from the command, the command's environment (a fork server keeps the one it started with) and its code
    version (asked of git once)."""
    plugins: tuple[str, ...]
    threads: int
    log_level: int
    parent: int
    fresh: bool                        # not forked from the command: load the registries and plug-ins
    show_progress: bool = False
    stands_for_command: bool = False
    environ: tuple[tuple[str, str], ...] | None = None
    code_version: str | None = None


def _worker(fn: Callable[..., Any], item: Any, out: str, store: str, kwargs: dict[str, Any], setup: WorkerSetup,
            what: str, conn, beat: Any = None, gpu: str | None = None) -> None:
    """One item in its own process: run ``fn`` on it, send ``("ok", result)`` or ``("raised", reason)`` back;
    ``gpu``: the one GPU it sees (``CUDA_VISIBLE_DEVICES``, set before CUDA starts here)."""
    _exit_with_parent(setup.parent)
    if setup.environ is not None:
        os.environ.clear()
        os.environ.update(setup.environ)
    if gpu is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = gpu
    if setup.code_version is not None:
        from bench.provenance import adopt_code_version
        adopt_code_version(setup.code_version)
    signal.signal(signal.SIGINT, signal.SIG_IGN)       # Ctrl-C is the command's: it ends its workers
    heartbeat.attach(beat)
    failpoints.stand_for(setup.parent if setup.stands_for_command else None)
    if setup.fresh:
        logging.basicConfig(level=setup.log_level, format="%(levelname)s %(name)s [job %(process)d]: %(message)s")
    torch.set_num_threads(setup.threads)
    progress.set_enabled(setup.show_progress and progress.enabled())
    if setup.fresh:
        from bench.registry import load_builtins, load_plugin
        load_builtins()
        for m in setup.plugins:
            load_plugin(m)
    from bench.stores import open_store
    log.info("start %s", what)
    try:
        result = ("ok", fn(item, Path(out), open_store(store), **kwargs))
    except BaseException as e:  # noqa: BLE001 - sys.exit or KeyboardInterrupt from a plug-in: this run's fault
        detail = f"({e.code!r})" if isinstance(e, SystemExit) else f": {str(e).splitlines()[0]}" if str(e) else ""
        result = ("raised", f"it raised {type(e).__name__}{detail} (a plug-in ending the process?); the other runs "
                            "went on; rerun with --resume to retry it")
    conn.send(result)
    conn.close()


def _exit_with_parent(parent: int, poll_s: float = 2.0) -> None:
    """End this worker when ``parent``, the command that started it, is gone (killed by SIGTERM or SIGKILL, so
    that its own clean-up never ran; maybe before this worker got here): an orphaned worker would go on
    writing into a folder nobody holds the lock of. On Linux the kernel sends SIGKILL at once when the
    worker's own parent ends (``PR_SET_PDEATHSIG``): the command, or the fork server, which ends with it;
    elsewhere, and as a fallback, a thread polls both."""
    if sys.platform.startswith("linux"):
        try:
            import ctypes
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)     # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass
    own_parent = os.getppid()                          # the command, or the fork server it started

    def orphaned() -> bool:
        if os.getppid() != own_parent:
            return True
        try:
            os.kill(parent, 0)
        except ProcessLookupError:
            return True
        except OSError:                                # alive, owned by another user: not ours to judge
            pass
        return False
    if orphaned():
        os._exit(1)

    def watch() -> None:
        while not orphaned():
            time.sleep(poll_s)
        os._exit(1)
    threading.Thread(target=watch, name="bench-job-parent-watch", daemon=True).start()


#: what every run imports on first use: its first optimiser step (``torch._dynamo``), deterministic algorithms
#: (``torch._inductor``), its loss log (TensorBoard) and its sample grid (torchvision)
WARM_MODULES = ("torch._dynamo", "torch._inductor.config", "torch.utils.tensorboard", "torchvision.utils")


def warm_imports() -> None:
    """Import :data:`WARM_MODULES` here, once: forked workers inherit them, where each would otherwise import
    them anew (measured on a tiny quickstart suite, 18 runs: 305 s forked cold, 143 s in one process)."""
    for name in WARM_MODULES:
        try:
            importlib.import_module(name)
        except ImportError:                     # an optional piece missing: the run that needs it will say so
            pass


def start_method() -> str:
    """``fork`` where it is safe and cheap: Linux, CUDA not initialised here, and no native thread started since
    the bench was imported (``bench/__init__`` imports this module first): a fork after an OpenMP parallel
    region hangs the child's first one in ``gomp_team_barrier_wait_end`` (seen when a test ran the command
    inside a process that had trained before). Else ``forkserver`` where the system has it (a clean process
    that never trained, so forking it is safe), else ``spawn``."""
    now = native_threads()
    if sys.platform.startswith("linux") and not torch.cuda.is_initialized() and now is not None \
            and native.BASELINE is not None and now <= native.BASELINE:
        return "fork"
    return "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"


def _context(method: str):
    """The multiprocessing context for ``method``; a fork server preloads torch, the bench and
    :data:`WARM_MODULES` once, so that every worker forked from it has them."""
    ctx = multiprocessing.get_context(method)
    if method == "forkserver":
        ctx.set_forkserver_preload(["bench", "bench.registry", "bench.runners", *WARM_MODULES])
    return ctx


@dataclass
class _Running:
    proc: Any
    recv: Any
    index: int
    started: float
    beat: Any
    limits: Limits
    gpu: str | None = None


def visible_gpus(device: Any) -> list[str]:
    """The GPUs workers may be spread over: every visible CUDA device (as ``CUDA_VISIBLE_DEVICES`` names them)
    when ``device`` is plain ``cuda`` and there are two or more; none for a CPU, one named GPU (``cuda:N``) or a
    single one (workers then share it). Asks the driver for the count without starting CUDA here."""
    dev = torch.device(device) if device is not None else None
    if dev is None or dev.type != "cuda" or dev.index is not None:
        return []
    n = torch.cuda.device_count()
    if n < 2:
        return []
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    names = [v.strip() for v in env.split(",") if v.strip()] if env else [str(i) for i in range(n)]
    return names[:n]


class GpuSlots:
    """Which GPU the next worker gets: the one running the fewest workers (the lowest first on a tie)."""

    def __init__(self, gpus: list[str]):
        self.load = {g: 0 for g in gpus}

    def take(self) -> str | None:
        if not self.load:
            return None
        g = min(self.load, key=lambda k: (self.load[k], list(self.load).index(k)))
        self.load[g] += 1
        return g

    def give_back(self, gpu: str | None) -> None:
        if gpu is not None:
            self.load[gpu] -= 1


def run_parallel(fn: Callable[..., Any], items: list[Any], out: Path, store: Path, *, jobs: int,
                 on_death: Callable[[Any, str], Any], describe: Callable[[Any], str] = str,
                 limits: Callable[[Any], Limits] | None = None, threads: int | None = None,
                 gpus: list[str] | None = None, **kwargs: Any) -> list[Any]:
    """``fn(item, out, open_store(store), **kwargs)`` (a module-level function: spawned workers import it by
    name) for every item, at most ``jobs`` at once, each in its own process (so a death is pinned on its item
    and memory is returned between items); the results in the order of ``items``. An item whose process died,
    raised ``SystemExit`` / ``KeyboardInterrupt``, or overran ``limits(item)`` gets ``on_death(item, reason)``
    (which records it) as its result. The workers share ``threads`` torch threads (default: this process's)
    and are spread over ``gpus`` (each sees one: :class:`GpuSlots`)."""
    from bench.provenance import running_code_version
    from bench.registry import loaded_plugins
    method = start_method()
    ctx = _context(method)
    if method == "fork":
        warm_imports()
    jobs = max(1, min(jobs, len(items)))
    log.info("%d item(s), %d at once, workers started by %s", len(items), jobs, method)
    fresh = method != "fork"
    setup = WorkerSetup(plugins=tuple(p["module"] for p in loaded_plugins()), threads=threads_per_job(jobs, threads),
                        log_level=logging.getLogger().level, parent=os.getpid(), fresh=fresh,
                        show_progress=jobs == 1, stands_for_command=jobs == 1,
                        environ=tuple(os.environ.items()) if fresh else None, code_version=running_code_version())
    results: list[Any] = [None] * len(items)
    queue = list(range(len(items)))
    running: dict[int, _Running] = {}                  # process sentinel -> the worker
    slots = GpuSlots(list(gpus or []))
    bar = progress.bar(total=len(items), desc=f"{jobs} jobs", unit="run", disable=jobs == 1)
    try:
        while queue or running:
            while queue and len(running) < jobs:
                i = queue.pop(0)
                recv, send = ctx.Pipe(duplex=False)
                beat = ctx.Value("d", time.time(), lock=False)
                gpu = slots.take()
                proc = ctx.Process(target=_worker, name=f"bench-job-{i}",
                                   args=(fn, items[i], str(out), str(store), kwargs, setup, describe(items[i]), send,
                                         beat, gpu))
                proc.start()
                send.close()
                running[proc.sentinel] = _Running(proc, recv, i, time.time(), beat,
                                                  limits(items[i]) if limits else Limits(), gpu)
            ready = wait([*running, *(r.recv for r in running.values())], timeout=POLL_S)
            for sentinel, r in list(running.items()):      # ended, or its result is waiting (never blocks it)
                if sentinel in ready or r.recv in ready:
                    running.pop(sentinel)
                    slots.give_back(r.gpu)
                    results[r.index] = _collect(r.proc, r.recv, items[r.index], on_death, describe)
                    bar.update(1)
            now = time.time()
            for sentinel, r in list(running.items()):
                why = r.limits.overdue(r.started, r.beat.value, now)
                if why is None:
                    continue
                r.proc.kill()
                r.proc.join()
                r.recv.close()
                running.pop(sentinel)
                slots.give_back(r.gpu)
                log.warning("%s failed: %s", describe(items[r.index]), why)
                results[r.index] = on_death(items[r.index], why)
                bar.update(1)
    except BaseException:
        for r in running.values():
            r.proc.terminate()
        for r in running.values():
            r.proc.join()
        raise
    finally:
        bar.close()
    return results


def _collect(proc, recv, item: Any, on_death: Callable[[Any, str], Any], describe: Callable[[Any], str]) -> Any:
    reason = None
    try:
        kind, value = recv.recv()
        if kind == "ok":
            return value
        reason = value
    except (EOFError, OSError):                        # the process died before it sent its result
        pass
    finally:
        recv.close()
        proc.join()
    reason = reason or (f"its worker process died without a result (exit code {proc.exitcode}: a plug-in calling "
                        "os._exit, killed, or out of memory? try fewer --jobs); rerun with --resume to retry it")
    log.warning("%s failed: %s", describe(item), reason)
    return on_death(item, reason)
