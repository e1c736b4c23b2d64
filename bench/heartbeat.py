"""Liveness of a run in its worker process: a time stamp in shared memory that every step of work renews.

Each run (and each joint-metric group) runs in a process of its own (:mod:`bench.jobs`), handed a shared
``double``; :func:`beat` writes the time into it. Every progress bar of the bench (:mod:`bench.progress`:
training steps, scoring batches, the judges' epochs and steps, feature extraction) beats as it advances,
so the parent sees a run that hangs (a plug-in's forward that never returns, a dead data worker) as a
stamp that stops moving, and ends it as *stalled* (``--stall-limit``). Outside a worker it does nothing.
"""

from __future__ import annotations

import time
from typing import Any

_slot: dict[str, Any] = {"value": None}


def attach(shared: Any) -> None:
    """Beat into ``shared`` (a ``multiprocessing.Value('d')``) from now on; ``None`` detaches."""
    _slot["value"] = shared
    beat()


def beat() -> None:
    """Now: the run is making progress."""
    shared = _slot["value"]
    if shared is not None:
        shared.value = time.time()
