"""`bench republish DEST --add OUT`: a seed run later (or on another machine of the same kind) joins a published
folder; published numbers are never replaced, and a run judged by another judge is refused with the store untouched."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace

import pandas as pd
import pytest

from bench.cli import main
from bench.results import ResultStore, protocol_hash
from suite_helpers import REPO

COMMITTED = REPO / "leaderboards" / "results" / "translation-zoo" / "cpu@x0.5-1"
SPADE = "SPADE (SPADE G + multi-scale D + FM, hinge)"


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    """The committed translation-zoo folder's SPADE seed-1 records, the seeds it holds, and its protocols."""
    store = ResultStore(COMMITTED / "results.sqlite")
    recs = [r for r in store.records(row=SPADE, seed=1)]
    seeds = sorted({r.seed for r in store.records(row=SPADE)})
    assert recs and seeds
    return recs, seeds, store.protocols()


def _out(path, recs, protocols, *, seed: int, shift: float = 0.0, sha: str | None = None):
    """A `bench run` --out holding SPADE at ``seed`` (one the folder lacks): seed 1's records moved by ``shift`` (and, with ``sha``, one
    judge's weights sha256 changed, as a segmenter trained on another CPU kind would be)."""
    path.mkdir(parents=True)
    store = ResultStore(path / "results.sqlite")
    hashes = {}
    for h in sorted({r.protocol_hash for r in recs if r.protocol_hash}):
        p = json.loads(json.dumps(protocols[h]))
        if sha is not None and "weights_sha256" in p.get("scorer", {}):
            p["scorer"]["weights_sha256"] = sha
            hashes[h] = protocol_hash(p)
        store.add_protocol(hashes.get(h, h), p)
    store.append([replace(r, seed=seed, value=None if r.value is None else r.value + shift,
                          protocol_hash=hashes.get(r.protocol_hash, r.protocol_hash)) for r in recs])
    (path / "invocations.jsonl").write_text(json.dumps(
        {"argv": ["bench", "run", "translation-zoo", "--rows", SPADE, "--out", str(path)], "commit": "abcdef1234",
         "started": "2026-12-06T21:00:00+00:00", "seconds": 660.0, "jobs": 2}) + "\n")
    return path


def test_a_later_seed_joins_the_published_folder(published, tmp_path, capsys):
    recs, seeds, protocols = published
    dest = tmp_path / "cpu@x0.5-1"
    shutil.copytree(COMMITTED, dest)
    before = ResultStore(dest / "results.sqlite").records()
    src = _out(tmp_path / "later", recs, protocols, seed=seeds[-1] + 1, shift=0.01)
    assert main(["republish", str(dest), "--add", str(src), "--why", "SPADE's next seed"]) == 0
    capsys.readouterr()
    after = ResultStore(dest / "results.sqlite").records()
    assert after[:len(before)] == before and len(after) == len(before) + len(recs)       # appended, nothing moved
    board = pd.read_csv(dest / "leaderboard.csv")
    row = board[(board["row"] == SPADE) & (board["column"] == "labels2photo/mean_iou")].iloc[0]
    values = [r.value for r in after if r.row == SPADE and r.task == "labels2photo" and r.metric == "mean_iou"]
    assert len(values) == len(seeds) + 1 and row["n"] == len(values)
    assert row["mean"] == pytest.approx(sum(values) / len(values), abs=1e-12)
    run = (dest / "RUN.md").read_text()
    line = [ln for ln in run.split("## Republished", 1)[1].splitlines() if ln.startswith("- ")][-1]
    assert "--add OUT1" in line and "SPADE's next seed" in line and f"seed {seeds[-1] + 1}" in line
    assert "--out OUT1" in line
    assert str(tmp_path) not in run                                                       # no machine paths
    stored = (dest / "results.sqlite").read_bytes()
    assert main(["republish", str(dest), "--add", str(src)]) == 2                         # it holds them now
    assert "nothing to add" in capsys.readouterr().err
    assert (dest / "results.sqlite").read_bytes() == stored


def test_a_run_by_another_judge_is_refused_and_the_store_untouched(published, tmp_path, capsys):
    recs, seeds, protocols = published
    dest = tmp_path / "cpu@x0.5-1"
    shutil.copytree(COMMITTED, dest)
    stored = (dest / "results.sqlite").read_bytes()
    src = _out(tmp_path / "elsewhere", recs, protocols, seed=seeds[-1] + 1, sha="0" * 64)
    assert main(["republish", str(dest), "--add", str(src)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "different judges" in err
    assert (dest / "results.sqlite").read_bytes() == stored
    assert not list(dest.glob("*.adding"))                                              # no copy left


def test_add_refuses_a_folder_without_a_store_or_of_another_profile(published, tmp_path, capsys):
    recs, seeds, protocols = published
    dest = tmp_path / "cpu@x0.5-1"
    shutil.copytree(COMMITTED, dest)
    assert main(["republish", str(dest), "--add", str(tmp_path / "none")]) == 2
    assert "holds no results.sqlite" in capsys.readouterr().err
    other = _out(tmp_path / "other", [replace(r, profile="cpu") for r in recs], protocols, seed=seeds[-1] + 1)
    assert main(["republish", str(dest), "--add", str(other)]) == 2
    assert "holds no records of suite translation-zoo, profile cpu@x0.5-1" in capsys.readouterr().err


def test_recorded_commands_run_again_as_written(tmp_path):
    """RUN.md's commands are shell lines: a row name with blanks and commas stays one argument, the run folder
    (also when it was copied before publishing, so its recorded --out is elsewhere) reads OUT, no machine path."""
    import shlex
    from bench.publish import shell_command
    out, elsewhere = tmp_path / "copy", tmp_path / "runs" / "newlosses"
    argv = ["bench", "run", "newlosses", "--rows", "SDKL, no sampling", "--out", str(elsewhere), "--plugin",
            str(tmp_path / "mine.py"), "--rows", "it's", f"--store={out / 'results.sqlite'}"]
    line = shell_command(argv, out)
    assert shlex.split(line) == ["bench", "run", "newlosses", "--rows", "SDKL, no sampling", "--out", "OUT",
                                 "--plugin", ".../mine.py", "--rows", "it's", "--store=OUT/results.sqlite"]
    assert shell_command([f"--out={elsewhere}", str(out / "x")], out, "OUT1") == "--out=OUT1 OUT1/x"
