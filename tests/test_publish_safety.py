"""`bench publish` cannot destroy: it refuses a destination that holds anything but an earlier publish or that
overlaps the run, and replaces an earlier publish by renames, so a kill leaves the earlier or the new folder
whole (issue 22, item 2: before, `shutil.rmtree(dest)` deleted whatever --dest was)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.errors import ConfigError
from bench.publish import RUN_TITLE, publish


def finished_run(root: Path, board: str = "| row | fid |\n") -> Path:
    out = root / "out"
    (out / "runs").mkdir(parents=True)
    (out / "leaderboard.md").write_text(board)
    (out / "leaderboard.csv").write_text("row,metric,mean\n")
    return out


def test_an_unrelated_folder_is_refused_and_kept(tmp_path):
    out = finished_run(tmp_path)
    dest = tmp_path / "mine"
    dest.mkdir()
    (dest / "thesis.tex").write_text("three years")
    with pytest.raises(ConfigError, match="not empty and not an earlier publish"):
        publish(out, dest)
    assert (dest / "thesis.tex").read_text() == "three years"


@pytest.mark.parametrize("where", ["run", "parent", "inside"])
def test_a_dest_that_overlaps_the_run_is_refused_and_nothing_is_lost(tmp_path, where):
    out = finished_run(tmp_path)
    (out / "results.sqlite").write_bytes(b"")
    dest = {"run": out, "parent": tmp_path, "inside": out / "runs" / "published"}[where]
    with pytest.raises(ConfigError, match="the run folder"):
        publish(out, dest)
    assert (out / "leaderboard.md").is_file() and (out / "results.sqlite").is_file()
    assert not (out / "runs" / "published").exists()


def test_a_file_as_dest_is_refused(tmp_path):
    out = finished_run(tmp_path)
    (tmp_path / "dest").write_text("x")
    with pytest.raises(ConfigError, match="is a file"):
        publish(out, tmp_path / "dest")
    assert (tmp_path / "dest").read_text() == "x"


def test_an_earlier_publish_and_an_empty_folder_are_replaced(tmp_path):
    out = finished_run(tmp_path, "first\n")
    dest = tmp_path / "results" / "suite" / "cpu"
    dest.mkdir(parents=True)                                     # empty: fine
    publish(out, dest)
    assert (dest / "leaderboard.md").read_text() == "first\n" and (dest / "RUN.md").read_text().startswith(RUN_TITLE)
    (out / "leaderboard.md").write_text("second\n")
    publish(out, dest)
    assert (dest / "leaderboard.md").read_text() == "second\n"
    assert sorted(p.name for p in dest.parent.iterdir()) == ["cpu"]        # nothing left aside


def test_a_kill_between_the_renames_leaves_the_earlier_publish_whole(tmp_path, monkeypatch):
    out = finished_run(tmp_path, "first\n")
    dest = tmp_path / "results" / "cpu"
    publish(out, dest)
    (out / "leaderboard.md").write_text("second\n")
    real = Path.rename
    calls = []

    def killed_after_first(self, target):
        calls.append(self.name)
        if len(calls) == 2:
            raise KeyboardInterrupt                               # the kill: after dest went aside
        return real(self, target)

    monkeypatch.setattr(Path, "rename", killed_after_first)
    with pytest.raises(KeyboardInterrupt):
        publish(out, dest)
    monkeypatch.undo()
    aside = dest.with_name(".cpu.replaced")
    assert not dest.exists() and (aside / "leaderboard.md").read_text() == "first\n"   # whole, only set aside
    publish(out, dest)                                           # the next publish puts it back, then replaces it
    assert (dest / "leaderboard.md").read_text() == "second\n" and not aside.exists()
    assert sorted(p.name for p in dest.parent.iterdir()) == ["cpu"]


def test_a_kill_before_the_first_rename_leaves_the_earlier_publish_in_place(tmp_path, monkeypatch):
    out = finished_run(tmp_path, "first\n")
    dest = tmp_path / "cpu"
    publish(out, dest)
    (out / "leaderboard.md").write_text("second\n")

    def killed(self, target):
        raise KeyboardInterrupt
    monkeypatch.setattr(Path, "rename", killed)
    with pytest.raises(KeyboardInterrupt):
        publish(out, dest)
    monkeypatch.undo()
    assert (dest / "leaderboard.md").read_text() == "first\n"
    publish(out, dest)
    assert (dest / "leaderboard.md").read_text() == "second\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cpu", "out"]
