"""``--no-progress`` turns off every bar of the process, the metrics' own included."""

from __future__ import annotations

from bench import progress
from bench.cli import main


def test_switch_overrides_callers(monkeypatch) -> None:
    monkeypatch.setattr(progress, "_state", {"enabled": True})
    assert not progress.bar(range(3), disable=False).disable
    progress.set_enabled(False)
    assert progress.bar(range(3), disable=False).disable
    assert progress.bar(range(3)).disable


def test_cli_flag_sets_the_switch(monkeypatch, tmp_path, capsys) -> None:
    monkeypatch.setattr(progress, "_state", {"enabled": True})
    main(["score", str(tmp_path / "absent"), "--no-progress"])     # fails (no run there), after parsing
    assert not progress.enabled()
    assert "bench: error" in capsys.readouterr().err


class _Tty(__import__("io").StringIO):
    def isatty(self) -> bool:
        return True


def _redraws(monkeypatch, out, seconds_per_item: float = 1.0, items: int = 600) -> int:
    """How many times a bar over ``items`` redraws into ``out`` when each item takes ``seconds_per_item`` (a fake
    clock: no sleeping)."""
    import tqdm.std
    from bench import progress
    clock = iter(i * seconds_per_item for i in range(10 * items))
    monkeypatch.setattr(tqdm.std, "time", lambda: next(clock))
    monkeypatch.setattr(tqdm.std.tqdm, "monitor_interval", 0)
    progress.set_enabled(True)
    for _ in progress.bar(range(items), file=out, desc="x"):
        pass
    return out.getvalue().count("\r")


def test_a_redirected_bar_redraws_once_a_minute_not_ten_times_a_second(monkeypatch) -> None:
    import io
    piped = _redraws(monkeypatch, io.StringIO())              # a 10-minute loop into a log file
    assert piped <= 600 / 60 + 3
    assert _redraws(monkeypatch, _Tty()) >= 500               # a terminal still gets a live bar
