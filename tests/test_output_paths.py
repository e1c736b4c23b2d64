"""A suite's name never decides where output goes beyond ``runs/<slug>`` (issue 22, item 6: an absolute path or
``../../x`` as a suite's name wrote outside the working folder)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.cli import _out, default_out, main
from bench.errors import ConfigError


@pytest.mark.parametrize("name, expected", [("../../escape", "runs/escape"), ("/tmp/abs/x", "runs/tmp-abs-x"),
                                            ("fusion-table2", "runs/fusion-table2"), ("a\\..\\b", "runs/a-b")])
def test_the_default_output_folder_stays_under_runs(name, expected):
    assert _out(None, name) == Path(expected) == default_out(name)
    assert _out("elsewhere/out", name) == Path("elsewhere/out")          # --out is the user's own choice


def test_a_name_without_letters_needs_out():
    with pytest.raises(ConfigError, match="give --out"):
        default_out("../..")


def test_a_suite_named_as_a_path_reads_and_writes_under_runs(tmp_path, monkeypatch, capsys):
    src = (Path(__file__).parents[1] / "leaderboards" / "nrds-toy.toml").read_text()
    assert 'name = "nrds-toy"' in src
    suite = tmp_path / "evil.toml"
    suite.write_text(src.replace('name = "nrds-toy"', f'name = "{tmp_path.as_posix()}/../outside"', 1))
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    assert main(["leaderboard", str(suite)]) == 2              # nothing there yet: the message names the folder
    err = capsys.readouterr().err
    where = Path(err.split("no results at ", 1)[1].split(";", 1)[0]).parent
    assert not where.is_absolute() and where.parts[0] == "runs" and ".." not in where.parts and len(where.parts) == 2
    assert where.name.endswith("-outside")
