"""Records from many machines (bench/spool.py): workers read a snapshot and spool their records; the command
ingests each spool file exactly once, whatever dies when."""

from __future__ import annotations

import shutil
import sqlite3

import pytest

from bench.results import ResultRecord, ResultStore, ResultStoreError
from bench.spool import SNAPSHOT, SpooledStore, ingest, snapshot, spool_dir


def _rec(metric: str, value: float = 1.0, seed: int = 0) -> ResultRecord:
    return ResultRecord(suite="s", row="A", task="t", seed=seed, profile="p", metric=metric, value=value,
                        checkpoint="step_1", protocol_hash="", code_version="0+x")


def _tables(path) -> set[str]:
    with sqlite3.connect(path) as c:
        return {r[0] for r in c.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


@pytest.fixture
def setup(tmp_path):
    store = ResultStore(tmp_path / "results.sqlite")
    store.append(_rec("before"))
    folder = spool_dir(tmp_path)
    snap = snapshot(store, folder)
    return store, folder, SpooledStore(snap, folder)


def test_a_worker_reads_the_snapshot_and_writes_only_spool_files(setup):
    store, folder, worker = setup
    assert [r.metric for r in worker.records()] == ["before"]            # what was there before it started
    with sqlite3.connect(folder / SNAPSHOT) as c:
        assert c.execute("PRAGMA journal_mode").fetchone()[0] == "delete"  # no WAL: readable from any host
    worker.append([_rec("fid", 12.5), _rec("kid", 0.1)])
    worker.add_protocol(*_protocol())
    assert store.count() == 1 and len(list(folder.glob("*.jsonl"))) == 2
    with pytest.raises(ResultStoreError, match="readonly database"):
        worker._run(lambda c: c.execute("INSERT INTO protocols VALUES ('h', '{}', 'now')"))


def _protocol():
    from bench.provenance import protocol_hash
    p = {"metric": "fid", "extractor": "x"}
    return protocol_hash(p), p


def test_ingest_appends_each_file_once_and_removes_it(setup):
    store, folder, worker = setup
    worker.append([_rec("fid", 12.5), _rec("kid", 0.1)])
    h, p = _protocol()
    worker.add_protocol(h, p)
    assert ingest(store, folder) == 2
    assert sorted(r.metric for r in store.records()) == ["before", "fid", "kid"] and store.protocol(h) == p
    assert not list(folder.glob("*.jsonl")) and ingest(store, folder) == 0
    assert store.count() == 3


def test_a_command_killed_between_the_commit_and_the_delete_counts_nothing_twice(setup, tmp_path):
    store, folder, worker = setup
    worker.append(_rec("fid", 12.5))
    (f,) = folder.glob("*.jsonl")
    kept = shutil.copy(f, tmp_path / "kept")
    ingest(store, folder)
    shutil.copy(kept, f)                   # as if the command died after the commit, before unlinking
    assert ingest(store, folder) == 0 and not f.exists()
    assert [r.metric for r in store.records()] == ["before", "fid"]


def test_a_worker_killed_mid_write_leaves_a_hidden_file_that_is_never_read(setup):
    store, folder, _ = setup
    (folder / ".20261206T000000000000-h-1-abcd.jsonl.tmp").write_text('{"kind": "record", "suite"')
    assert ingest(store, folder) == 0 and store.count() == 1


def test_a_damaged_spool_file_is_a_one_line_error_and_is_kept(setup):
    store, folder, worker = setup
    worker.append(_rec("fid"))
    (f,) = folder.glob("*.jsonl")
    f.write_text(f.read_text()[:40])
    with pytest.raises(ResultStoreError, match=r"cannot be ingested .* move it aside and rerun with --resume"):
        ingest(store, folder)
    assert f.exists() and store.count() == 1


def test_opening_a_store_never_adds_the_ingested_table(tmp_path):
    """A committed store read by bench republish / leaderboard must stay byte-identical."""
    store = ResultStore(tmp_path / "results.sqlite")
    store.append(_rec("fid"))
    before = (tmp_path / "results.sqlite").read_bytes()
    ResultStore(tmp_path / "results.sqlite").records()
    assert "ingested" not in _tables(tmp_path / "results.sqlite")
    assert (tmp_path / "results.sqlite").read_bytes() == before
    store.take_ingested("f1.jsonl", [_rec("kid")])
    assert "ingested" in _tables(tmp_path / "results.sqlite")
    with sqlite3.connect(tmp_path / "results.sqlite") as c, pytest.raises(sqlite3.DatabaseError, match="append-only"):
        c.execute("DELETE FROM ingested")
