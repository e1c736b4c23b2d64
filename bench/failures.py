"""How a failure is told: one line for the leaderboard and the terminal, the traceback in a file.

A ``BenchError`` carries its own one-line message. Any other exception (a plug-in's bug, most
often) is told as its type and the first line of its message, and its full traceback is written
to ``error.txt`` in the run's folder for whoever has to fix it.
"""

from __future__ import annotations

import traceback
from pathlib import Path

from bench.errors import BenchError

ERROR_FILE = "error.txt"


def failure_reason(e: BaseException) -> str:
    """One line: a BenchError's own message; any other exception's type and first line.

    An error re-raised by a DataLoader worker carries the worker's whole traceback in its message
    ("Caught DataError in DataLoader worker process 0 ... Original Traceback ..."): its last line,
    the original message, is the one told.
    """
    lines = [ln.strip() for ln in str(e).strip().splitlines() if ln.strip()]
    if len(lines) > 1 and lines[0].startswith("Caught ") and "DataLoader worker" in lines[0]:
        last = lines[-1]
        head, sep, rest = last.partition(": ")
        lines = [rest if sep and "." in head and " " not in head else last]
    if isinstance(e, BenchError):
        return lines[0] if lines else type(e).__name__
    return f"{type(e).__name__}: {lines[0][:300]}" if lines else type(e).__name__


def keep_traceback(folder: Path, e: BaseException) -> Path | None:
    """Write the traceback of ``e`` to ``folder/error.txt``; its path, or None if it cannot be written."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / ERROR_FILE
        path.write_text("".join(traceback.format_exception(e)))
        return path
    except OSError:
        return None


def describe_failure(e: BaseException, folder: Path, relative_to: Path | None = None) -> str:
    """``failure_reason`` plus, for an exception that is not a BenchError, where its traceback is."""
    reason = failure_reason(e)
    if isinstance(e, BenchError):
        return reason
    path = keep_traceback(folder, e)
    if path is not None:
        shown = path.relative_to(relative_to) if relative_to is not None else path
        reason += f" (traceback: {shown})"
    return reason
