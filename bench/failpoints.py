"""Failpoints: named places where a test makes the process die, to prove that a kill loses nothing.

``BENCH_FAILPOINT=name[:n]`` makes the process SIGKILL itself the ``n``-th time (default: the first)
it reaches ``reached(name)``. Unset, each call is one environment lookup. The points:
``train-step`` (after an optimiser step), ``checkpoint`` (after a checkpoint is in place),
``score-batch`` (after a scoring batch), ``records`` (after a run's records are stored) and
``leaderboard`` (between writing leaderboard.csv and leaderboard.md).

Runs train in worker processes (:mod:`bench.jobs`). With one job the worker stands for the command, as a
run once did in the command's own process: the point kills the command too (:func:`stand_for`), which is
what a kill trial means. With ``--jobs N`` it kills the worker only (a worker's death costs its run).
"""

from __future__ import annotations

import os
import signal

ENV = "BENCH_FAILPOINT"
_hits: dict[str, int] = {}
_command: dict[str, int | None] = {"pid": None}


def stand_for(command_pid: int | None) -> None:
    """In a worker: a failpoint kills ``command_pid`` (the ``bench`` command) before this process."""
    _command["pid"] = command_pid


def reached(name: str) -> None:
    spec = os.environ.get(ENV)
    if not spec:
        return
    point, _, n = spec.partition(":")
    if point != name:
        return
    _hits[name] = _hits.get(name, 0) + 1
    if _hits[name] >= int(n or 1):
        if _command["pid"] is not None:
            os.kill(_command["pid"], signal.SIGKILL)
        os.kill(os.getpid(), signal.SIGKILL)
