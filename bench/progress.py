"""Progress bars: one switch for the whole process (``bench ... --no-progress`` turns every bar off,
the metrics' own included), otherwise tqdm's ``disable`` as each caller gives it. Every bar, shown or
not, beats the run's heartbeat (:mod:`bench.heartbeat`) as it advances: that is how a hung run is told
from a slow one."""

from __future__ import annotations

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


def bar(iterable: Any = None, **kwargs: Any) -> tqdm:
    """``tqdm(iterable, **kwargs)``, disabled when progress is off for the process; it beats the heartbeat."""
    if not _state["enabled"]:
        kwargs["disable"] = True
    return Bar(iterable, **kwargs)
