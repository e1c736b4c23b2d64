"""Progress bars: one switch for the whole process (``bench ... --no-progress`` turns every bar off,
the metrics' own included), otherwise tqdm's ``disable`` as each caller gives it."""

from __future__ import annotations

from typing import Any

from tqdm.auto import tqdm

_state = {"enabled": True}


def set_enabled(on: bool) -> None:
    _state["enabled"] = bool(on)


def enabled() -> bool:
    return _state["enabled"]


def bar(iterable: Any = None, **kwargs: Any) -> tqdm:
    """``tqdm(iterable, **kwargs)``, disabled when progress is off for the process."""
    if not _state["enabled"]:
        kwargs["disable"] = True
    return tqdm(iterable, **kwargs)
