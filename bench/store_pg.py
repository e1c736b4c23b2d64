"""The results store in PostgreSQL, for shared clusters and dashboards: ``bench run SUITE --store URL``.

The same records, protocols and guarantees as the SQLite store (:mod:`bench.results`): append-only (triggers
abort every UPDATE, DELETE and TRUNCATE), one transaction per append, the newest record per key wins. Many
writers on many hosts are PostgreSQL's everyday case, so workers write to it directly (no spool). The URL is
libpq's (``postgresql://user@host:5432/db``); ``?schema=NAME`` (default ``public``) keeps one experiment's
records apart from another's in the same database, as an output folder does for SQLite. Needs psycopg 3
(``pip install 'cgan-bench[postgres]'``).
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any, Callable, Iterable, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from bench.errors import ConfigError
from bench.provenance import canonical_json, protocol_hash
from bench.results import (FIELDS, KEY, SCHEMA_VERSION, ResultRecord, ResultStoreError, _frame, checked,
                           utc_now, where_clause)

if TYPE_CHECKING:
    import pandas

T = TypeVar("T")
SCHEMES = ("postgresql://", "postgres://")
_COLS = ", ".join(f'"{c}"' for c in FIELDS)
_TABLES = ("results", "protocols", "schema_version", "ingested")


def is_url(where: Any) -> bool:
    return str(where).startswith(SCHEMES)


def _split(url: str) -> tuple[str, str]:
    """The libpq URL without our ``schema`` parameter, and that schema."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query)
    schema = next((v for k, v in query if k == "schema"), "public")
    if not schema.replace("_", "").isalnum() or schema[0].isdigit():
        raise ConfigError(f"--store ...?schema={schema}: a schema name is letters, digits and _ (not first a digit)")
    rest = urlencode([(k, v) for k, v in query if k != "schema"])
    return urlunsplit(parts._replace(query=rest)), schema


def _schema_sql(s: str) -> list[str]:
    return [
        f'CREATE SCHEMA IF NOT EXISTS "{s}"',
        f'CREATE TABLE IF NOT EXISTS "{s}".schema_version (version INTEGER NOT NULL, created TEXT NOT NULL)',
        f'''CREATE TABLE IF NOT EXISTS "{s}".results (
            id BIGSERIAL PRIMARY KEY,
            "suite" TEXT NOT NULL, "row" TEXT NOT NULL, "task" TEXT NOT NULL, "seed" INTEGER NOT NULL,
            "profile" TEXT NOT NULL, "metric" TEXT NOT NULL, "value" DOUBLE PRECISION, "checkpoint" TEXT NOT NULL,
            "protocol_hash" TEXT NOT NULL, "code_version" TEXT NOT NULL, "time" TEXT NOT NULL,
            "status" TEXT NOT NULL CHECK ("status" IN ('ok', 'failed')), "reason" TEXT NOT NULL,
            CHECK ("status" = 'failed' OR ("value" IS NOT NULL AND "reason" = '')),
            CHECK ("status" = 'ok' OR "reason" <> ''))''',
        f'CREATE INDEX IF NOT EXISTS results_key ON "{s}".results '
        f'("suite", "row", "task", "seed", "profile", "metric", "time")',
        f'CREATE TABLE IF NOT EXISTS "{s}".protocols (hash TEXT PRIMARY KEY, protocol TEXT NOT NULL, '
        f'added TEXT NOT NULL)',
        f'CREATE TABLE IF NOT EXISTS "{s}".ingested (name TEXT PRIMARY KEY, added TEXT NOT NULL)',
        f'''CREATE OR REPLACE FUNCTION "{s}".append_only() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN RAISE EXCEPTION '% are append-only: % is not allowed', TG_TABLE_NAME, TG_OP; END $$''',
    ] + [
        stmt for t in _TABLES for stmt in (
            f'DROP TRIGGER IF EXISTS {t}_append_only ON "{s}".{t}',
            f'CREATE TRIGGER {t}_append_only BEFORE UPDATE OR DELETE ON "{s}".{t} '
            f'FOR EACH ROW EXECUTE FUNCTION "{s}".append_only()',
            f'DROP TRIGGER IF EXISTS {t}_no_truncate ON "{s}".{t}',
            f'CREATE TRIGGER {t}_no_truncate BEFORE TRUNCATE ON "{s}".{t} '
            f'FOR EACH STATEMENT EXECUTE FUNCTION "{s}".append_only()')
    ]


class PostgresStore:
    """:class:`bench.results.ResultStore`'s interface over a PostgreSQL schema (created on first use)."""

    def __init__(self, url: str, timeout_s: float = 60.0):
        try:
            import psycopg
        except ImportError:
            raise ConfigError("--store postgresql://... needs psycopg 3: pip install 'cgan-bench[postgres]'") from None
        self._pg = psycopg
        self.path = url                     # what workers are handed to open the same store
        self.dsn, self.schema = _split(url)
        self.timeout_s = timeout_s
        self._shown = re.sub(r"//[^@/?]*@", "//", self.dsn)        # no user or password in messages
        self._run(self._init_schema)

    def __repr__(self) -> str:
        return f"PostgresStore({self._shown!r}, schema={self.schema!r})"

    def _run(self, fn: Callable[[Any], T]) -> T:
        """``fn(cursor)`` in one transaction (committed when it returns, rolled back when it raises)."""
        try:
            with self._pg.connect(self.dsn, connect_timeout=max(1, int(self.timeout_s))) as conn:
                with conn.cursor() as cur:
                    return fn(cur)
        except self._pg.Error as e:
            msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ResultStoreError(f"results store {self._shown} (schema {self.schema}) failed ({msg}); check the "
                                   "server, the URL and the role's rights") from None

    def _init_schema(self, cur: Any) -> None:
        cur.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"cgan-bench:{self.schema}",))
        for stmt in _schema_sql(self.schema):
            cur.execute(stmt)
        cur.execute(f'SELECT max(version) FROM "{self.schema}".schema_version')
        version = cur.fetchone()[0]
        if version is None:
            cur.execute(f'INSERT INTO "{self.schema}".schema_version VALUES (%s, %s)', (SCHEMA_VERSION, utc_now()))
        elif version > SCHEMA_VERSION:
            raise ResultStoreError(f"results store {self._shown} has schema version {version}, newer than this "
                                   f"cgan-bench reads ({SCHEMA_VERSION}); upgrade cgan-bench")

    def _t(self, table: str) -> str:
        return f'"{self.schema}".{table}'

    @staticmethod
    def _where(filters: dict[str, Any]) -> tuple[str, list]:
        return where_clause(filters, "format")

    def _select(self, sql: str, params: list) -> list[tuple]:
        def q(cur: Any) -> list[tuple]:
            cur.execute(sql, params)
            return cur.fetchall()
        return self._run(q)

    # ----------------------------------------------------------------- writing

    def _insert(self, cur: Any, rows: list[ResultRecord]) -> None:
        sql = f"INSERT INTO {self._t('results')} ({_COLS}) VALUES ({', '.join(['%s'] * len(FIELDS))})"
        cur.executemany(sql, [tuple(getattr(r, f) for f in FIELDS) for r in rows])

    def append(self, records: Iterable[ResultRecord] | ResultRecord) -> int:
        rows = checked(records)
        if rows:
            self._run(lambda cur: self._insert(cur, rows))
        return len(rows)

    def take_ingested(self, name: str, records: list[ResultRecord]) -> bool:
        records = checked(records)

        def take(cur: Any) -> bool:
            cur.execute(f"INSERT INTO {self._t('ingested')} VALUES (%s, %s) ON CONFLICT (name) DO NOTHING",
                        (name, utc_now()))
            if cur.rowcount == 0:
                return False
            self._insert(cur, records)
            return True
        return self._run(take)

    def add_protocol(self, hash: str, protocol: dict) -> None:
        text = canonical_json(protocol)
        if protocol_hash(protocol) != hash:
            raise ValueError(f"protocol hash {hash!r} is not the hash of the protocol ({protocol_hash(protocol)})")

        def add(cur: Any) -> str:
            cur.execute(f"INSERT INTO {self._t('protocols')} VALUES (%s, %s, %s) ON CONFLICT (hash) DO NOTHING",
                        (hash, text, utc_now()))
            cur.execute(f"SELECT protocol FROM {self._t('protocols')} WHERE hash = %s", (hash,))
            return cur.fetchone()[0]
        if self._run(add) != text:
            raise ResultStoreError(f"results store {self._shown} holds another protocol under hash {hash}; "
                                   "the store is inconsistent, inspect its protocols table")

    # ----------------------------------------------------------------- reading

    def protocol(self, hash: str) -> dict | None:
        rows = self._select(f"SELECT protocol FROM {self._t('protocols')} WHERE hash = %s", [hash])
        return json.loads(rows[0][0]) if rows else None

    def protocols(self) -> dict[str, dict]:
        return {h: json.loads(p) for h, p in self._select(
            f"SELECT hash, protocol FROM {self._t('protocols')} ORDER BY hash", [])}

    def records(self, **filters: Any) -> list[ResultRecord]:
        where, params = self._where(filters)
        return [ResultRecord(*row) for row in self._select(
            f"SELECT {_COLS} FROM {self._t('results')}{where} ORDER BY id", params)]

    def count(self, **filters: Any) -> int:
        where, params = self._where(filters)
        return self._select(f"SELECT count(*) FROM {self._t('results')}{where}", params)[0][0]

    def frame(self, **filters: Any) -> "pandas.DataFrame":
        where, params = self._where(filters)
        return _frame(self._select(f"SELECT {_COLS} FROM {self._t('results')}{where} ORDER BY id", params))

    def latest(self, **filters: Any) -> "pandas.DataFrame":
        where, params = self._where(filters)
        key = ", ".join(f'"{k}"' for k in KEY)
        order = ", ".join(f'"{k}"' + ("" if k == "seed" else ' COLLATE "C"') for k in KEY)   # SQLite's byte order
        sql = (f"SELECT {_COLS} FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY {key} "
               f'ORDER BY "time" COLLATE "C" DESC, id DESC) AS rn FROM {self._t("results")}{where}) AS t '
               f"WHERE rn = 1 ORDER BY {order}")
        return _frame(self._select(sql, params))
