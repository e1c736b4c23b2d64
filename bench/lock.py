"""An exclusive lock on an output folder, so two ``bench`` processes never write the same results.

The lock is an advisory ``flock`` on ``<folder>/.bench.lock``, held for the life of the command:
the operating system releases it when the process ends, however it ends (a SIGKILL included), so
a crash never leaves a stale lock. Where ``fcntl`` does not exist (Windows) nothing is locked.
"""

from __future__ import annotations

import contextlib
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

from bench.errors import ConfigError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

LOCK_FILE = ".bench.lock"


@contextlib.contextmanager
def folder_lock(folder: Path) -> Iterator[None]:
    """Hold the output folder's lock, or raise a one-line ``ConfigError`` naming the holder."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if fcntl is None:
        yield
        return
    f = open(folder / LOCK_FILE, "a+", encoding="utf-8")
    try:
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            f.seek(0)
            holder = f.read().strip() or "another process"
            raise ConfigError(f"{folder} is in use by another bench command ({holder}); wait for it to end or "
                              "choose another --out") from None
        f.seek(0)
        f.truncate()
        f.write(f"pid {os.getpid()} since {datetime.now(timezone.utc).isoformat(timespec='seconds')}")
        f.flush()
        yield
    finally:
        f.close()            # closing releases the lock
