"""The native threads of this process when the bench was imported (no torch import here).

A fork after an OpenMP parallel region hangs the child's first one, so :func:`bench.jobs.start_method` forks
workers only while no native thread has started since the bench was imported; ``bench/__init__`` imports this
module first to take that count. Importing torch starts none (measured: numpy's OpenBLAS server is the only
one, counted in here), so the count needs no torch and ``bench --help`` does not pay for importing it.
"""

from __future__ import annotations

import os
import threading


def native_threads() -> int | None:
    """Threads of this process that Python did not start (an OpenMP / MKL pool, CUDA's), or ``None`` where the
    system does not say (no ``/proc``)."""
    try:
        return len(os.listdir("/proc/self/task")) - threading.active_count()
    except OSError:
        return None


try:                                    # numpy's OpenBLAS starts its (fork-safe) thread server on import: count it in
    import numpy  # noqa: F401
except ImportError:  # pragma: no cover
    pass
#: native threads when the bench was imported, before any training or scoring here
BASELINE = native_threads()
