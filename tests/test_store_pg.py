"""The PostgreSQL results store (bench/store_pg.py) against a real server the test starts: the same answers as
the SQLite store for the same records, append-only, idempotent ingest, one-line errors, and a suite run whose
workers write it giving the leaderboard of an SQLite run."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

import pandas as pd
import pytest

from bench.results import ResultRecord, ResultStore, ResultStoreError
from bench.stores import open_store
from suite_helpers import bench

psycopg = pytest.importorskip("psycopg", reason="psycopg is the test extra's (pip install -e '.[test]')")


def _tool(name: str) -> str | None:
    return shutil.which(name) or next(iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))), None)


@pytest.fixture(scope="module")
def pg():
    """A throw-away PostgreSQL server on a unix socket in a temporary folder (as user postgres when root)."""
    initdb, pg_ctl = _tool("initdb"), _tool("pg_ctl")
    if not initdb or not pg_ctl:
        pytest.skip("no PostgreSQL server here (initdb / pg_ctl not found): install Debian's postgresql package")
    d = Path(tempfile.mkdtemp(prefix="bench-pg-"))     # not under pytest's folder, which only root may enter
    as_user: list[str] = []
    if os.geteuid() == 0:
        try:
            user = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no 'postgres' user to run the server as")
        os.chown(d, user.pw_uid, user.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]
    data = d / "data"
    r = subprocess.run([*as_user, initdb, "-D", str(data), "-A", "trust", "-U", "bench"], capture_output=True,
                       text=True, timeout=120)
    if r.returncode:
        pytest.skip(f"initdb failed: {r.stderr.strip().splitlines()[-1:]}")
    r = subprocess.run([*as_user, pg_ctl, "-D", str(data), "-o", f"-k {d} -c listen_addresses=''", "-w", "-l",
                        str(d / "log"), "start"], capture_output=True, text=True, timeout=120)
    if r.returncode:
        pytest.skip(f"the PostgreSQL server did not start: {(d / 'log').read_text()[-300:]}")
    yield f"postgresql://bench@/postgres?host={d}"
    subprocess.run([*as_user, pg_ctl, "-D", str(data), "-m", "immediate", "stop"], capture_output=True, timeout=120)
    shutil.rmtree(d, ignore_errors=True)


def _rec(metric: str, value: float | None, seed: int = 0, time: str = "2026-01-01T00:00:00+00:00",
         status: str = "ok", reason: str = "", row: str = "A") -> ResultRecord:
    return ResultRecord(suite="s", row=row, task="t", seed=seed, profile="p", metric=metric, value=value,
                        checkpoint="step_1", protocol_hash="h1", code_version="0+x", time=time, status=status,
                        reason=reason)


def _protocol() -> tuple[str, dict]:
    from bench.provenance import protocol_hash
    p = {"metric": "fid", "extractor": "x"}
    return protocol_hash(p), p


RECORDS = [_rec("fid", 12.5), _rec("fid", 11.0, time="2026-01-02T00:00:00+00:00"), _rec("kid", 0.1, seed=1),
           _rec("run", None, seed=2, status="failed", reason="it raised"), _rec("fid", 9.0, row="b"),
           _rec("fid", 8.0, row="B")]


def test_the_same_records_give_the_same_answers_as_sqlite(pg, tmp_path):
    lite, post = ResultStore(tmp_path / "r.sqlite"), open_store(pg + "&schema=parity")
    for store in (lite, post):
        store.append(RECORDS)
        store.add_protocol(*_protocol())
        store.add_protocol(*_protocol())                             # idempotent
    pd.testing.assert_frame_equal(lite.frame(), post.frame())
    pd.testing.assert_frame_equal(lite.latest(), post.latest())     # newest per key, in SQLite's byte order
    pd.testing.assert_frame_equal(lite.latest(seed=[0, 1]), post.latest(seed=[0, 1]))
    assert lite.records(row="A") == post.records(row="A") and lite.count(status="failed") == post.count(status="failed")
    assert lite.protocols() == post.protocols() and post.protocol("nope") is None


def test_it_is_append_only_and_ingests_a_file_once(pg):
    store = open_store(pg + "&schema=appendonly")
    store.append(RECORDS[:2])
    store.add_protocol(*_protocol())
    assert store.take_ingested("f1.jsonl", [RECORDS[2]]) is True
    assert store.take_ingested("f1.jsonl", [RECORDS[2]]) is False and store.count() == 3
    with psycopg.connect(store.dsn) as c:
        for sql in ("UPDATE appendonly.results SET value = 0", "DELETE FROM appendonly.protocols",
                    "TRUNCATE appendonly.results", "DELETE FROM appendonly.ingested"):
            with pytest.raises(psycopg.errors.RaiseException, match="append-only"):
                c.execute(sql)
            c.rollback()


def test_a_store_it_cannot_reach_is_a_one_line_error(tmp_path):
    with pytest.raises(ResultStoreError, match=r"results store postgresql://.* failed \(.*\); check the server"):
        open_store(f"postgresql://bench@/postgres?host={tmp_path}&schema=x")
    from bench.errors import ConfigError
    with pytest.raises(ConfigError, match="a schema name is letters"):
        open_store("postgresql://bench@/postgres?schema=drop;table")


@pytest.mark.slow
def test_a_suite_whose_workers_write_postgres_gives_the_sqlite_runs_leaderboard(pg, tmp_path: Path):
    args = ("quickstart", "--profile", "tiny", "--rows", "4-Layer Concat,4-Layer Concat + SN", "--tasks",
            "photo2depth", "--no-progress", "--device", "cpu", "--threads", "1")
    bench("run", *args, "--out", str(tmp_path / "lite"), check=True)
    url = pg + "&schema=e2e"
    bench("run", *args, "--jobs", "2", "--store", url, "--out", str(tmp_path / "post"), check=True)
    assert not (tmp_path / "post" / "results.sqlite").exists()            # every record went to PostgreSQL
    a = pd.read_csv(tmp_path / "lite" / "leaderboard.csv")
    pd.testing.assert_frame_equal(a, pd.read_csv(tmp_path / "post" / "leaderboard.csv"))
    (tmp_path / "post" / "leaderboard.csv").unlink()
    bench("leaderboard", "quickstart", "--store", url, "--out", str(tmp_path / "post"), "--profile", "tiny", check=True)
    pd.testing.assert_frame_equal(a, pd.read_csv(tmp_path / "post" / "leaderboard.csv"))
    r = bench("run", *args, "--store", url, "--out", str(tmp_path / "again"))
    assert r.returncode == 2 and "already holds results of quickstart / tiny" in r.stderr
