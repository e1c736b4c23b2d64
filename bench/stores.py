"""Which results store a path or URL names: an SQLite file (:mod:`bench.results`) or a PostgreSQL schema
(:mod:`bench.store_pg`), behind the same interface."""

from __future__ import annotations

import os

from bench.results import ResultStore
from bench.store_pg import PostgresStore, is_url


def open_store(where: str | os.PathLike) -> ResultStore | PostgresStore:
    """The store at ``where``: a PostgreSQL URL (``postgresql://...``) or an SQLite file."""
    return PostgresStore(str(where)) if is_url(where) else ResultStore(where)
