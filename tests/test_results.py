"""Results store: round trip, filters, latest, append-only, concurrent writers, bad files."""

from __future__ import annotations

import multiprocessing as mp
import random
import sqlite3
from pathlib import Path

import pandas as pd
import pytest

from bench.errors import BenchError, ConfigError
from bench.provenance import protocol_hash
from bench.results import ResultRecord, ResultStore


def rec(metric: str = "fid", value: float | None = 12.5, *, seed: int = 0, row: str = "pix2pix",
        time: str = "2024-05-01T10:00:00+00:00", **kw) -> ResultRecord:
    base = dict(suite="pix2pix-facades", row=row, task="facades", seed=seed, profile="smoke", metric=metric,
                value=value, checkpoint=f"runs/{row}/{seed}/checkpoints/step_00000100", protocol_hash="ab" * 8,
                code_version="0.1.0+0123456789ab", time=time)
    base.update(kw)
    return ResultRecord(**base)


def test_round_trip(tmp_path: Path) -> None:
    store = ResultStore(tmp_path / "sub" / "results.sqlite")
    written = [rec(), rec("ssim", 0.25, seed=1),
               rec("fid", None, seed=2, status="failed", reason="training diverged at step 40")]
    assert store.append(written) == 3
    assert store.records() == written
    again = ResultStore(tmp_path / "sub" / "results.sqlite")       # reopening an existing store
    assert again.records() == written and again.count() == 3
    df = again.frame()
    assert list(df.columns) == ["suite", "row", "task", "seed", "profile", "metric", "value", "checkpoint",
                                "protocol_hash", "code_version", "time", "status", "reason"]
    assert df["value"].tolist()[:2] == [12.5, 0.25] and pd.isna(df["value"].iloc[2])
    assert df["seed"].dtype == "int64" and df["status"].tolist() == ["ok", "ok", "failed"]
    assert store.append([]) == 0


def test_record_validation() -> None:
    r = rec(time="2024-05-01T12:00:00+02:00")
    assert r.time == "2024-05-01T10:00:00.000000+00:00"                # normalised to UTC
    assert rec(time="2024-05-01T10:00:00Z").time == r.time
    assert ResultRecord("s", "r", "t", 0, "smoke", "m", 1, "", "h", "v").time.endswith("+00:00")
    with pytest.raises(ValueError, match="time zone"):
        rec(time="2024-05-01T10:00:00")
    with pytest.raises(ValueError, match="needs a value"):
        rec(value=float("nan"))
    with pytest.raises(ValueError, match="reason"):
        rec(value=None, status="failed")
    with pytest.raises(ValueError, match="status"):
        rec(status="maybe", reason="x")
    with pytest.raises(TypeError, match="seed"):
        rec(seed="0")


def test_filters(tmp_path: Path) -> None:
    store = ResultStore(tmp_path / "r.sqlite")
    store.append([rec("fid", 10.0, seed=s, row=row) for row in ("a", "b", "c") for s in (0, 1)])
    store.append(rec("ssim", 0.5, row="a"))
    assert store.count(row="a") == 3
    assert {(r.row, r.seed) for r in store.records(metric="fid", seed=1)} == {("a", 1), ("b", 1), ("c", 1)}
    assert store.count(row=["a", "c"], metric="fid") == 4
    assert store.count(row=[]) == 0 and store.frame(row="zzz").empty
    assert len(store.frame(metric="ssim")) == 1
    with pytest.raises(ConfigError, match="unknown result field 'colour'"):
        store.records(colour="red")


def test_latest_picks_newest_per_key(tmp_path: Path) -> None:
    store = ResultStore(tmp_path / "r.sqlite")
    store.append([
        rec("fid", 30.0, time="2024-05-01T10:00:00+00:00"),
        rec("fid", 20.0, time="2024-05-03T10:00:00+00:00"),               # newest by time
        rec("fid", 25.0, time="2024-05-02T10:00:00+00:00"),               # appended last, older
        rec("fid", 40.0, seed=1, time="2024-05-01T10:00:00+00:00"),
        rec("fid", None, seed=1, time="2024-05-04T10:00:00+00:00", status="failed", reason="oom"),
        rec("ssim", 0.3, time="2024-05-01T10:00:00+00:00"),
        rec("ssim", 0.4, time="2024-05-01T10:00:00+00:00"),               # same time: appended last wins
    ])
    df = store.latest()
    got = {(r.seed, r.metric): (r.value, r.status) for r in df.itertuples()}
    assert len(df) == 3
    assert got[(0, "fid")] == (20.0, "ok") and got[(0, "ssim")] == (0.4, "ok")
    assert got[(1, "fid")][1] == "failed"
    ok = store.latest(status="ok")                                          # filters apply first
    assert {(r.seed, r.metric): r.value for r in ok.itertuples()}[(1, "fid")] == 40.0


def test_update_and_delete_refused(tmp_path: Path) -> None:
    path = tmp_path / "r.sqlite"
    store = ResultStore(path)
    store.append([rec(), rec("ssim", 0.1)])
    h = protocol_hash({"fid": {"n": 10}})
    store.add_protocol(h, {"fid": {"n": 10}})
    conn = sqlite3.connect(path)
    for sql in ("UPDATE results SET value = 0", "DELETE FROM results", "DELETE FROM results WHERE metric='fid'",
                "UPDATE protocols SET protocol = '{}'", "DELETE FROM protocols", "DELETE FROM schema_version",
                "INSERT OR REPLACE INTO protocols VALUES ('%s', '{}', 'now')" % h,
                "INSERT OR REPLACE INTO results SELECT * FROM results WHERE id = 1"):
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            conn.execute(sql)
    conn.close()
    assert [r.value for r in store.records()] == [12.5, 0.1]
    assert store.protocol(h) == {"fid": {"n": 10}}


def test_protocols_idempotent_and_checked(tmp_path: Path) -> None:
    store = ResultStore(tmp_path / "r.sqlite")
    p = {"extractor": "inception", "n": 50000, "resize": "bilinear"}
    store.add_protocol(protocol_hash(p), p)
    store.add_protocol(protocol_hash(p), dict(reversed(list(p.items()))))   # same protocol, other key order
    assert store.protocols() == {protocol_hash(p): p}
    assert store.protocol("0" * 16) is None
    with pytest.raises(ValueError, match="not the hash"):
        store.add_protocol("0" * 16, p)


def _writer(path: str, worker: int, n: int, barrier) -> None:
    store = ResultStore(path, timeout_s=120)
    rng = random.Random(worker)
    barrier.wait()
    i = 0
    while i < n:
        k = min(rng.randint(1, 4), n - i)
        store.append([rec("fid", float(j), seed=worker, row=f"r{j:03d}") for j in range(i, i + k)])
        i += k


def test_concurrent_writers_lose_nothing(tmp_path: Path) -> None:
    path = tmp_path / "r.sqlite"
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(4)
    procs = [ctx.Process(target=_writer, args=(str(path), w, 100, barrier)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0, 0, 0, 0]
    store = ResultStore(path)
    got = sorted((r.seed, r.row, r.value) for r in store.records())
    assert got == sorted((w, f"r{j:03d}", float(j)) for w in range(4) for j in range(100))


def _assert_one_line_error(path: Path, match: str) -> None:
    before = path.read_bytes()
    with pytest.raises(BenchError, match=match) as e:
        ResultStore(path).records()
    assert "\n" not in str(e.value) and str(path) in str(e.value)
    assert path.read_bytes() == before                                  # the bad file is left untouched


def test_garbage_file(tmp_path: Path) -> None:
    path = tmp_path / "r.sqlite"
    path.write_bytes(b"this is not a database at all\n" * 200)
    _assert_one_line_error(path, "not a cGAN bench store")


def test_empty_file_is_refused_not_replaced(tmp_path: Path) -> None:
    # issue 22 item 9i: SQLite takes a 0-byte file for a new database; the store wrote a fresh schema over it and
    # the lost history went unnoticed
    path = tmp_path / "results.sqlite"
    path.write_bytes(b"")
    _assert_one_line_error(path, r"empty file \(0 bytes\).*move it aside")
    assert not list(tmp_path.glob(".results.sqlite.*"))                # no temporary store left behind


def test_a_new_store_never_shows_as_an_empty_file(tmp_path: Path) -> None:
    # made aside and linked into place: another process opening it meanwhile never meets a 0-byte file
    path = tmp_path / "new" / "results.sqlite"
    ResultStore(path).append(rec("fid", 1.0))
    assert path.stat().st_size > 0 and sorted(p.name for p in path.parent.iterdir()) == ["results.sqlite"]
    assert [r.value for r in ResultStore(path).records()] == [1.0]


def test_foreign_sqlite_file(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE songs (title TEXT)")
    conn.commit()
    conn.close()
    _assert_one_line_error(path, "another application")


def test_newer_schema_refused(tmp_path: Path) -> None:
    path = tmp_path / "r.sqlite"
    ResultStore(path)
    conn = sqlite3.connect(path)
    conn.execute("INSERT INTO schema_version VALUES (99, 'later')")
    conn.commit()
    conn.close()
    _assert_one_line_error(path, "upgrade cgan-bench")


def test_truncated_store(tmp_path: Path) -> None:
    path = tmp_path / "r.sqlite"
    store = ResultStore(path)
    for i in range(20):
        store.append([rec("fid", float(j), seed=i, reason="", row="x" * 200 + str(j)) for j in range(20)])
    data = path.read_bytes()
    assert len(data) > 8 * 4096
    path.write_bytes(data[: len(data) // 2])
    _assert_one_line_error(path, "corrupt")
