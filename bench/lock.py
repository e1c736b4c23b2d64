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
def folder_lock(folder: Path, busy: str = "wait for it to end or choose another --out") -> Iterator[None]:
    """Hold the output folder's lock, or raise a one-line ``ConfigError`` naming the holder (and ``busy``: what
    to do then). A folder that cannot be made or written (read-only file system, no permission, a file on the
    way) is a one-line ``ConfigError`` naming it."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        if fcntl is None:
            f = None
        else:
            f = open(folder / LOCK_FILE, "a+", encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"cannot write to the output folder {folder} ({e.strerror or type(e).__name__}); "
                          "choose another --out, or make it writable") from None
    if f is None:
        yield
        return
    try:
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            f.seek(0)
            holder = f.read().strip() or "another process"
            raise ConfigError(f"{folder} is in use by another bench command ({holder}); {busy}") from None
        f.seek(0)
        f.truncate()
        f.write(f"pid {os.getpid()} since {datetime.now(timezone.utc).isoformat(timespec='seconds')}")
        f.flush()
        yield
    finally:
        f.close()            # closing releases the lock
