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
