"""Failpoints: named places where a test makes the process die, to prove that a kill loses nothing.

``BENCH_FAILPOINT=name[:n]`` makes the process SIGKILL itself the ``n``-th time (default: the first)
it reaches ``reached(name)``. Unset, each call is one environment lookup. The points:
``train-step`` (after an optimiser step), ``checkpoint`` (after a checkpoint is in place),
``score-batch`` (after a scoring batch), ``records`` (after a run's records are stored) and
``leaderboard`` (between writing leaderboard.csv and leaderboard.md).
"""

from __future__ import annotations

import os
import signal

ENV = "BENCH_FAILPOINT"
_hits: dict[str, int] = {}


def reached(name: str) -> None:
    spec = os.environ.get(ENV)
    if not spec:
        return
    point, _, n = spec.partition(":")
    if point != name:
        return
    _hits[name] = _hits.get(name, 0) + 1
    if _hits[name] >= int(n or 1):
        os.kill(os.getpid(), signal.SIGKILL)
