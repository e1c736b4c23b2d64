"""`bench republish`: a committed result folder's leaderboard, claims and report rebuilt from its own store
(nothing trained), its RUN.md notes kept and the republication recorded; and `bench publish`'s links."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest

from bench.cli import main
from leaderboards.claims import COLUMNS
from suite_helpers import REPO

COMMITTED = REPO / "leaderboards" / "results" / "decoupled-table4" / "cpu"


def test_republish_rebuilds_from_the_store_and_keeps_the_notes(tmp_path, capsys):
    dest = tmp_path / "cpu"
    shutil.copytree(COMMITTED, dest)
    before = (COMMITTED / "RUN.md").read_text()
    notes = before.split("\n## Judges\n")[0].split("\n## Republished")[0].rstrip()
    earlier = [ln for ln in before.split("## Republished", 1)[-1].splitlines() if ln.startswith("- ")] \
        if "## Republished" in before else []
    store_bytes = (dest / "results.sqlite").read_bytes()
    assert main(["republish", str(dest), "--why", "first"]) == 0
    assert main(["republish", str(dest), "--why", "second"]) == 0
    capsys.readouterr()
    assert (dest / "results.sqlite").read_bytes() == store_bytes           # the records are not touched
    claims = pd.read_csv(dest / "claims.csv")
    assert list(claims.columns) == COLUMNS and claims["p"].between(0, 1).all()
    board = pd.read_csv(dest / "leaderboard.csv")
    ok = board[board["status"] == "ok"]
    assert (ok["interval"].str.startswith("t95")).all()
    nrds = ok[ok["metric"] == "nrds"]
    assert (nrds["ci_low"] >= 0).all() and (nrds["ci_high"] <= 1).all()  # clipped to NRDS's range
    md = (dest / "leaderboard.md").read_text()
    for png in sorted((dest / "samples").glob("*.png")) + sorted((dest / "joint").glob("*.png")):
        assert f"]({png.relative_to(dest).as_posix()})" in md              # the published pictures, linked
    assert "runs/" not in md
    run = (dest / "RUN.md").read_text()
    assert run.startswith(notes)                                          # what was written stays
    assert run.count("## Judges") == 1 and run.count("## Republished") == 1
    lines = [ln for ln in run.split("## Republished", 1)[1].splitlines() if ln.startswith("- ")]
    assert lines[:len(earlier)] == earlier and len(lines) == len(earlier) + 2     # one line per republication
    assert lines[-2].endswith(": first") and lines[-1].endswith(": second")
    assert "bench republish" in lines[1] and str(tmp_path) not in run     # no machine paths


def test_republish_refuses_a_folder_without_a_store(tmp_path, capsys):
    assert main(["republish", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "holds no results.sqlite" in err


def test_republish_reads_the_code_version_before_it_rebuilds(tmp_path, monkeypatch, capsys):
    """A republish into a tracked folder must record the commit it ran at, not '-dirty' from its own output."""
    import bench.provenance
    import leaderboards.build
    dest = tmp_path / "cpu"
    shutil.copytree(COMMITTED, dest)
    calls: list[str] = []
    real_write = leaderboards.build.write_leaderboard

    def version() -> str:
        calls.append("version")
        return "0.1.0+abc" + ("-dirty" if "write" in calls else "")

    def write(*a, **k):
        calls.append("write")
        return real_write(*a, **k)

    monkeypatch.setattr(bench.provenance, "code_version", version)
    monkeypatch.setattr(leaderboards.build, "write_leaderboard", write)
    assert main(["republish", str(dest), "--why", "check"]) == 0
    capsys.readouterr()
    assert calls == ["version", "write"]
    assert "(code version `0.1.0+abc`): check" in (dest / "RUN.md").read_text()


def _committed_folders() -> list[Path]:
    return sorted(p.parent for p in (REPO / "leaderboards" / "results").glob("*/*/results.sqlite"))


@pytest.mark.parametrize("folder", _committed_folders(), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_committed_verdict_re_derives_from_its_store(folder, tmp_path, capsys):
    """What a reviewer checks by hand: each committed folder's leaderboard, claims and claims by budget are what
    this code computes from the folder's own results.sqlite (republish a copy, compare the files byte for byte).
    A change to the statistics fails here until the folders are republished (`bench republish`)."""
    dest = tmp_path / folder.name
    shutil.copytree(folder, dest)
    assert main(["republish", str(dest), "--why", "check"]) == 0
    capsys.readouterr()
    for name in ("leaderboard.csv", "claims.csv", "claims_by_budget.csv"):
        if (folder / name).is_file():
            assert (dest / name).read_bytes() == (folder / name).read_bytes(), \
                f"{folder.relative_to(REPO)}/{name} does not re-derive from its store: run bench republish on it"


def test_run_md_states_each_claim_with_its_p_values_and_budgets(tmp_path, capsys):
    """RUN.md's ``## Claims``: one line per claim of claims.csv with its verdict, p, reverse p and the verdict at
    each budget of claims_by_budget.csv (a reversed point gives the reverse's p); made anew on each republish."""
    folder = REPO / "leaderboards" / "results" / "translation-zoo" / "cpu@x0.5-1"
    dest = tmp_path / folder.name
    shutil.copytree(folder, dest)
    for why in ("first", "second"):
        assert main(["republish", str(dest), "--why", why]) == 0
    capsys.readouterr()
    run = (dest / "RUN.md").read_text()
    assert run.count("\n## Claims\n") == 1 and run.index("## Claims") < run.index("## Judges")
    section = run.split("\n## Claims\n", 1)[1].split("\n## Judges\n", 1)[0]
    bullets = [ln for ln in section.splitlines() if ln.startswith("- ")]
    claims = pd.read_csv(dest / "claims.csv")
    by = pd.read_csv(dest / "claims_by_budget.csv")
    assert len(bullets) == len(claims)
    for line, (_, c) in zip(bullets, claims.iterrows()):
        assert line.startswith(f"- {c['claim']}: **{c['verdict']}** ({c['direction']}; p {c['p']:.2g}, "
                               f"reverse {c['p_reverse']:.2g}; diff {c['diff']:.3g}")
        for _, b in by[by["claim"] == c["claim"]].iterrows():
            p = f"p of the reverse {b['p_reverse']:.2g}" if b["verdict"] == "reversed" else f"p {b['p']:.2g}"
            assert f"{b['label']}: {b['verdict']} ({p})" in line
    assert "reversed (p of the reverse" in section            # this table has a reversed budget point
