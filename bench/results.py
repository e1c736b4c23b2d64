"""The results store: one append-only SQLite file of result records.

Each record is one metric of one (suite, row, task, seed, profile), stamped with the
checkpoint, evaluation-protocol hash and code version that produced it. Records are never
changed: a re-score appends a newer record, and ``latest`` picks the newest per key. A failed
run is a record with ``status="failed"`` and its reason. Triggers in the schema abort any
UPDATE or DELETE, so the history cannot be rewritten by accident.

Several processes may append at once (WAL mode, ``BEGIN IMMEDIATE`` transactions, a busy
timeout and retries on "database is locked"). The file must be on a local file system:
SQLite's WAL mode does not work over network file systems; workers on other hosts spool their records
to files that the command ingests (:mod:`bench.spool`, the ``ingested`` table).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import random
import sqlite3
import time
from dataclasses import astuple, dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, TypeVar

from bench.errors import BenchError, ConfigError
from bench.provenance import canonical_json, protocol_hash

if TYPE_CHECKING:
    import pandas

log = logging.getLogger(__name__)

#: the store's file name in a suite's output folder
RESULTS_FILE = "results.sqlite"
SCHEMA_VERSION = 1
APPLICATION_ID = 0x63474231          # "cGB1": marks the SQLite file as a cGAN bench store
STATUSES = ("ok", "failed")
KEY = ("suite", "row", "task", "seed", "profile", "metric")
T = TypeVar("T")


class ResultStoreError(BenchError):
    """The results file is unreadable, foreign, too new, or stays locked."""


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


def _utc_iso(value: str) -> str:
    try:
        t = datetime.fromisoformat(value)
    except (TypeError, ValueError):
        raise ValueError(f"time {value!r} is not an ISO-8601 timestamp") from None
    if t.tzinfo is None:
        raise ValueError(f"time {value!r} has no time zone; give it in UTC (e.g. ...+00:00)")
    return t.astimezone(timezone.utc).isoformat(timespec="microseconds")


@dataclass
class ResultRecord:
    """One metric value (or one failure) of one (suite, row, task, seed, profile)."""

    suite: str
    row: str
    task: str
    seed: int
    profile: str
    metric: str
    value: float | None
    checkpoint: str
    protocol_hash: str
    code_version: str
    time: str = field(default_factory=utc_now)     # ISO-8601, normalised to UTC
    status: str = "ok"
    reason: str = ""

    def __post_init__(self) -> None:
        for f in fields(self):
            v = getattr(self, f.name)
            if f.name == "seed":
                if isinstance(v, bool) or not isinstance(v, int):
                    raise TypeError(f"seed must be an int, got {v!r}")
            elif f.name != "value" and not isinstance(v, str):
                raise TypeError(f"{f.name} must be a str, got {type(v).__name__}")
        if self.value is not None:
            self.value = float(self.value)
            if math.isnan(self.value):
                self.value = None                    # SQLite stores NaN as NULL anyway
        if self.status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, got {self.status!r}")
        if self.status == "ok" and (self.value is None or self.reason):
            raise ValueError(f"an ok record of {self.metric!r} needs a value and no reason; "
                             "record a NaN or missing value as status='failed' with a reason")
        if self.status == "failed" and not self.reason:
            raise ValueError("a failed record needs a reason")
        self.time = _utc_iso(self.time)


FIELDS = tuple(f.name for f in fields(ResultRecord))
_COLS = ", ".join(f'"{c}"' for c in FIELDS)

_SCHEMA = [
    "CREATE TABLE schema_version (version INTEGER NOT NULL, created TEXT NOT NULL)",
    """CREATE TABLE results (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        "suite" TEXT NOT NULL, "row" TEXT NOT NULL, "task" TEXT NOT NULL, "seed" INTEGER NOT NULL,
        "profile" TEXT NOT NULL, "metric" TEXT NOT NULL, "value" REAL, "checkpoint" TEXT NOT NULL,
        "protocol_hash" TEXT NOT NULL, "code_version" TEXT NOT NULL, "time" TEXT NOT NULL,
        "status" TEXT NOT NULL CHECK ("status" IN ('ok', 'failed')), "reason" TEXT NOT NULL,
        CHECK ("status" = 'failed' OR ("value" IS NOT NULL AND "reason" = '')),
        CHECK ("status" = 'ok' OR "reason" <> ''))""",
    'CREATE INDEX results_key ON results ("suite", "row", "task", "seed", "profile", "metric", "time")',
    "CREATE TABLE protocols (hash TEXT PRIMARY KEY, protocol TEXT NOT NULL, added TEXT NOT NULL)",
] + [
    f"CREATE TRIGGER {table}_no_{op.lower()} BEFORE {op} ON {table} "
    f"BEGIN SELECT RAISE(ABORT, '{table} are append-only: {op} is not allowed'); END"
    for table in ("results", "protocols", "schema_version") for op in ("UPDATE", "DELETE")
] + [
    # INSERT OR REPLACE deletes the conflicting row without firing DELETE triggers: refuse it.
    f"CREATE TRIGGER {table}_no_replace BEFORE INSERT ON {table} "
    f"WHEN EXISTS (SELECT 1 FROM {table} WHERE {col} = NEW.{col}) "
    f"BEGIN SELECT RAISE(ABORT, '{table} are append-only: {col} exists already'); END"
    for table, col in (("results", "id"), ("protocols", "hash"))
]


#: spool files already ingested (bench.spool), made on first use; append-only like the rest
_INGESTED = [
    "CREATE TABLE IF NOT EXISTS ingested (name TEXT PRIMARY KEY, added TEXT NOT NULL)",
] + [
    f"CREATE TRIGGER IF NOT EXISTS ingested_no_{op.lower()} BEFORE {op} ON ingested "
    f"BEGIN SELECT RAISE(ABORT, 'ingested are append-only: {op} is not allowed'); END"
    for op in ("UPDATE", "DELETE")
]


def where_clause(filters: dict[str, Any], style: str) -> tuple[str, list]:
    """`` WHERE ...`` and its parameters for ``field=value`` / ``field=[v1, v2]`` / ``field=None`` filters, in
    SQLite's (``qmark``: ``?``) or psycopg's (``format``: ``%s``) parameter style."""
    ph = "?" if style == "qmark" else "%s"
    clauses, params = [], []
    for k, v in filters.items():
        if k not in FIELDS:
            raise ConfigError(f"unknown result field {k!r}; filter on one of {', '.join(FIELDS)}")
        if v is None:
            clauses.append(f'"{k}" IS NULL')
        elif isinstance(v, (list, tuple, set, frozenset)):
            vals = list(v)
            if style == "qmark":
                clauses.append(f'"{k}" IN ({", ".join("?" * len(vals))})' if vals else "0")
                params.extend(vals)
            else:
                clauses.append(f'"{k}" = ANY({ph})')
                params.append(vals)
        else:
            clauses.append(f'"{k}" = {ph}')
            params.append(v)
    return (" WHERE " + " AND ".join(clauses)) if clauses else "", params


def checked(records: Iterable[ResultRecord] | ResultRecord) -> list[ResultRecord]:
    """``records`` as a list, each validated again (dataclasses are mutable) before any store takes it."""
    rows = [records] if isinstance(records, ResultRecord) else list(records)
    for r in rows:
        if not isinstance(r, ResultRecord):
            raise TypeError(f"expected ResultRecord, got {type(r).__name__}")
        r.__post_init__()
    return rows


def _is_locked(e: sqlite3.Error) -> bool:
    msg = str(e).lower()
    return "locked" in msg or "busy" in msg


class ResultStore:
    """An append-only SQLite file of ``ResultRecord`` rows (created on first use)."""

    def __init__(self, path: str | os.PathLike, timeout_s: float = 60.0):
        self.path = Path(path)
        self.timeout_s = timeout_s
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if not self.path.exists():
            self._create()
        elif self.path.is_file() and self.path.stat().st_size == 0:
            # SQLite would take an empty file for a new database and write a fresh store over it: whatever
            # truncated it, its history is gone, and a new store in its place would hide that
            raise ResultStoreError(f"results store {self.path} is an empty file (0 bytes), not a results store: its "
                                   f"records are lost; move it aside (e.g. to {self.path.name}.empty) and restore "
                                   "the store from a backup, or pass another results path")
        self._run(self._init_schema)

    def _create(self) -> None:
        """Make a new store in a file of its own, then link it into place: the path never holds a half-made
        store (a 0-byte file there is always a damaged one), and of two processes creating it at once the
        second opens the first's."""
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.{random.getrandbits(32):08x}.new")
        try:
            ResultStore.__new__(ResultStore)._init_at(tmp, self.timeout_s)
            try:
                os.link(tmp, self.path)
            except FileExistsError:
                pass                                     # another process made it first: open theirs
            except OSError:                              # no hard links here: SQLite makes it in place
                log.debug("no hard links at %s; the store is made in place", self.path.parent)
        finally:
            for suffix in ("", "-wal", "-shm", "-journal"):
                with contextlib.suppress(OSError):
                    os.unlink(f"{tmp}{suffix}")

    def _init_at(self, path: Path, timeout_s: float) -> None:
        self.path, self.timeout_s = path, timeout_s
        self._run(self._init_schema)

    def __repr__(self) -> str:
        return f"ResultStore({str(self.path)!r})"

    # ----------------------------------------------------------------- plumbing

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, timeout=min(self.timeout_s, 5.0), isolation_level=None)

    def _error(self, e: sqlite3.Error) -> ResultStoreError:
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        low = msg.lower()
        if _is_locked(e):
            return ResultStoreError(f"results store {self.path} stayed locked by another process for "
                                    f"{self.timeout_s:g} s; retry when the other run has finished writing")
        if "not a database" in low or "malformed" in low or "no such table" in low:
            return ResultStoreError(f"results store {self.path} is corrupt or not a cGAN bench store ({msg}); "
                                    "move it aside and restore it from a backup, or pass another results path")
        if "unable to open" in low or "readonly" in low:
            return ResultStoreError(f"cannot open results store {self.path} ({msg}); "
                                    "check the path and its permissions")
        return ResultStoreError(f"results store {self.path} failed ({msg}); check the file or pass another path")

    def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` on a fresh connection, retrying while the database is locked."""
        deadline = time.monotonic() + self.timeout_s
        delay = 0.005
        while True:
            try:
                conn = self._connect()
                try:
                    return fn(conn)
                finally:
                    conn.close()
            except sqlite3.Error as e:
                if _is_locked(e) and time.monotonic() < deadline:
                    log.debug("results store %s is locked; retrying in %.3f s", self.path, delay)
                    time.sleep(delay * (1 + random.random()))
                    delay = min(2 * delay, 0.25)
                    continue
                raise self._error(e) from None

    @staticmethod
    def _write(conn: sqlite3.Connection, fn: Callable[[sqlite3.Connection], T]) -> T:
        conn.execute("BEGIN IMMEDIATE")
        try:
            out = fn(conn)
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        return out

    def _is_new(self, c: sqlite3.Connection) -> bool:
        """True for an empty database; raises for a foreign one (which is left untouched)."""
        app = c.execute("PRAGMA application_id").fetchone()[0]
        if app == 0 and c.execute("SELECT count(*) FROM sqlite_master").fetchone()[0] == 0:
            return True
        if app != APPLICATION_ID:
            raise ResultStoreError(f"{self.path} is an SQLite database of another application, not a "
                                   "cGAN bench results store; pass another results path")
        return False

    def _init_schema(self, conn: sqlite3.Connection) -> None:
        if self._is_new(conn) and conn.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
            conn.execute("PRAGMA journal_mode=WAL")     # persistent in the file; needs no transaction

        def init(c: sqlite3.Connection) -> None:
            if self._is_new(c):                          # checked again: another process may have won
                for stmt in _SCHEMA:
                    c.execute(stmt)
                c.execute("INSERT INTO schema_version VALUES (?, ?)", (SCHEMA_VERSION, utc_now()))
                c.execute(f"PRAGMA application_id = {APPLICATION_ID}")
                log.info("created results store %s", self.path)
                return
            version = c.execute("SELECT max(version) FROM schema_version").fetchone()[0]
            if version is None:
                raise ResultStoreError(f"results store {self.path} has no schema version (corrupt); "
                                       "restore it from a backup or pass another results path")
            if version > SCHEMA_VERSION:
                raise ResultStoreError(f"results store {self.path} has schema version {version}, newer than this "
                                       f"cgan-bench reads ({SCHEMA_VERSION}); upgrade cgan-bench")
        self._write(conn, init)

    @staticmethod
    def _where(filters: dict[str, Any]) -> tuple[str, list]:
        return where_clause(filters, "qmark")

    def _select(self, sql: str, params: list) -> list[tuple]:
        return self._run(lambda c: c.execute(sql, params).fetchall())

    # ----------------------------------------------------------------- writing

    def append(self, records: Iterable[ResultRecord] | ResultRecord) -> int:
        """Append records in one transaction (all or none); returns how many."""
        rows = checked(records)
        if not rows:
            return 0
        sql = f"INSERT INTO results ({_COLS}) VALUES ({', '.join('?' * len(FIELDS))})"
        self._run(lambda c: self._write(c, lambda w: w.executemany(sql, [astuple(r) for r in rows])))
        log.debug("appended %d records to %s", len(rows), self.path)
        return len(rows)

    def take_ingested(self, name: str, records: list[ResultRecord]) -> bool:
        """Append ``records`` and mark spool file ``name`` ingested, in one transaction; False (nothing
        appended) when ``name`` was ingested before (:mod:`bench.spool`). The ``ingested`` table is made on
        first use, so a store that never ingests is never changed by opening it."""
        records = checked(records)
        sql = f"INSERT INTO results ({_COLS}) VALUES ({', '.join('?' * len(FIELDS))})"

        def take(c: sqlite3.Connection) -> bool:
            for stmt in _INGESTED:
                c.execute(stmt)
            if c.execute("SELECT 1 FROM ingested WHERE name = ?", (name,)).fetchone():
                return False
            c.executemany(sql, [astuple(r) for r in records])
            c.execute("INSERT INTO ingested VALUES (?, ?)", (name, utc_now()))
            return True
        return self._run(lambda c: self._write(c, take))

    def add_protocol(self, hash: str, protocol: dict) -> None:
        """Store the protocol behind a hash (idempotent); the hash must be ``protocol_hash(protocol)``."""
        text = canonical_json(protocol)
        if protocol_hash(protocol) != hash:
            raise ValueError(f"protocol hash {hash!r} is not the hash of the protocol ({protocol_hash(protocol)})")

        def add(c: sqlite3.Connection) -> str:
            row = c.execute("SELECT protocol FROM protocols WHERE hash = ?", (hash,)).fetchone()
            if row is not None:
                return row[0]
            c.execute("INSERT INTO protocols VALUES (?, ?, ?)", (hash, text, utc_now()))
            return text

        stored = self._run(lambda c: self._write(c, add))
        if stored != text:
            raise ResultStoreError(f"results store {self.path} holds another protocol under hash {hash}; "
                                   "the store is inconsistent, inspect its protocols table")

    # ----------------------------------------------------------------- reading

    def protocol(self, hash: str) -> dict | None:
        rows = self._select("SELECT protocol FROM protocols WHERE hash = ?", [hash])
        return json.loads(rows[0][0]) if rows else None

    def protocols(self) -> dict[str, dict]:
        return {h: json.loads(p) for h, p in self._select("SELECT hash, protocol FROM protocols ORDER BY hash", [])}

    def records(self, **filters: Any) -> list[ResultRecord]:
        """Records matching ``field=value`` (or ``field=[v1, v2]``) filters, in append order."""
        where, params = self._where(filters)
        return [ResultRecord(*row) for row in self._select(f"SELECT {_COLS} FROM results{where} ORDER BY id", params)]

    def count(self, **filters: Any) -> int:
        where, params = self._where(filters)
        return self._select(f"SELECT count(*) FROM results{where}", params)[0][0]

    def frame(self, **filters: Any) -> pandas.DataFrame:
        where, params = self._where(filters)
        return _frame(self._select(f"SELECT {_COLS} FROM results{where} ORDER BY id", params))

    def latest(self, **filters: Any) -> pandas.DataFrame:
        """The newest record (by time, then append order) per (suite, row, task, seed, profile, metric)."""
        where, params = self._where(filters)
        key = ", ".join(f'"{k}"' for k in KEY)
        sql = (f"SELECT {_COLS} FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY {key} "
               f'ORDER BY "time" DESC, id DESC) AS rn FROM results{where}) WHERE rn = 1 ORDER BY {key}')
        return _frame(self._select(sql, params))


def _frame(rows: list[tuple]) -> pandas.DataFrame:
    import pandas as pd

    return pd.DataFrame(rows, columns=list(FIELDS)).astype({"seed": "int64", "value": "float64"})

