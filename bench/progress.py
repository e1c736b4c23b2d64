"""Progress bars: one switch for the whole process (``bench ... --no-progress`` turns every bar off,
the metrics' own included), otherwise tqdm's ``disable`` as each caller gives it. Every bar, shown or
not, beats the run's heartbeat (:mod:`bench.heartbeat`) as it advances: that is how a hung run is told
from a slow one."""

from __future__ import annotations

import sys
from typing import Any

from tqdm.auto import tqdm

from bench import heartbeat

_state = {"enabled": True}


def set_enabled(on: bool) -> None:
    _state["enabled"] = bool(on)


def enabled() -> bool:
    return _state["enabled"]


class Bar(tqdm):
    """tqdm that beats the heartbeat at every item and every ``update`` (a disabled tqdm skips both hooks of
    its own, so they are wrapped here)."""

    def __iter__(self):
        for item in super().__iter__():
            heartbeat.beat()
            yield item

    def update(self, n: float | None = 1) -> bool | None:
        heartbeat.beat()
        return super().update(n)


#: seconds between a bar's redraws where its output is not a terminal (a log file, a pipe, CI): tqdm's 0.1 s
#: wrote a line of carriage returns per tenth of a second (174 KB for the quickstart), 60 s writes a few lines
REDIRECTED_INTERVAL_S = 60.0


def _is_terminal(f: Any) -> bool:
    try:
        return bool(f.isatty())
    except (AttributeError, ValueError):          # closed, or not a file
        return False


def bar(iterable: Any = None, **kwargs: Any) -> tqdm:
    """``tqdm(iterable, **kwargs)``, disabled when progress is off for the process, redrawn at most once a minute
    where its output is not a terminal; it beats the heartbeat."""
    if not _state["enabled"]:
        kwargs["disable"] = True
    if not _is_terminal(kwargs.get("file") or sys.stderr):
        kwargs.setdefault("mininterval", REDIRECTED_INTERVAL_S)
        kwargs.setdefault("maxinterval", REDIRECTED_INTERVAL_S)
    return Bar(iterable, **kwargs)
