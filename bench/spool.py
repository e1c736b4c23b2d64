"""Results from many machines: workers spool their records to files, the command ingests them once.

SQLite on a network file system is not safe with writers on several hosts (its WAL index lives in shared
memory on one host). So a run on a cluster (``--executor slurm | submitit-local | ray``) never writes the
results store: it reads a snapshot of it and spools what it would have appended.

- **Snapshot** (:func:`snapshot`): before dispatching, the command copies the store with SQLite's backup API
  into ``OUT/spool/snapshot.sqlite`` in rollback-journal mode, which workers open read-only (``mode=ro``):
  all a worker reads is what was there before it started (is this run scored already? which protocol is
  behind a hash?).
- **Spool** (:class:`SpooledStore`): each ``append`` / ``add_protocol`` of a worker becomes one file
  ``OUT/spool/<time>-<host>-<pid>-<random>.jsonl``, written to a hidden temporary name, flushed and renamed
  into place: a worker killed mid-write leaves a hidden file that is never read, never half a record.
- **Ingest** (:func:`ingest`): the command (the one writer of the store) reads the spool files in name order
  and, for each, appends its records and protocols *and* the file's name to the store's ``ingested`` table in
  one transaction, then deletes the file. A file whose name is already there (the command died between the
  commit and the delete) is deleted without appending: nothing is lost, nothing counted twice. The command
  ingests after every finished item, and at its start what an earlier command left.
"""

from __future__ import annotations

import json
import logging
import os
import random
import socket
import sqlite3
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable

from bench.provenance import protocol_hash
from bench.results import FIELDS, ResultRecord, ResultStore, ResultStoreError, checked

log = logging.getLogger(__name__)

SPOOL_DIR = "spool"
SNAPSHOT = "snapshot.sqlite"
SUFFIX = ".jsonl"


def spool_dir(out: str | os.PathLike) -> Path:
    return Path(out) / SPOOL_DIR


def snapshot(store: ResultStore, folder: Path) -> Path:
    """A read-only copy of ``store`` for workers (rollback journal, no WAL: readable from any host)."""
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / SNAPSHOT
    tmp = folder / f".{SNAPSHOT}.{os.getpid()}.{random.getrandbits(32):08x}"
    src = sqlite3.connect(store.path)
    dst = sqlite3.connect(tmp)
    try:
        src.backup(dst)
        dst.execute("PRAGMA journal_mode=DELETE")
    finally:
        dst.close()
        src.close()
    os.replace(tmp, final)
    return final


class SpooledStore(ResultStore):
    """A worker's store on a cluster: reads from the command's snapshot (read-only), writes to spool files."""

    def __init__(self, snapshot_path: str | os.PathLike, spool: str | os.PathLike, timeout_s: float = 60.0):
        self.path = Path(snapshot_path)
        self.timeout_s = timeout_s
        self.spool = Path(spool)

    def __repr__(self) -> str:
        return f"SpooledStore({str(self.path)!r}, spool={str(self.spool)!r})"

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=min(self.timeout_s, 5.0),
                               isolation_level=None)

    def _spool(self, lines: list[dict[str, Any]]) -> None:
        self.spool.mkdir(parents=True, exist_ok=True)
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%f")
        name = f"{stamp}-{socket.gethostname()}-{os.getpid()}-{random.getrandbits(32):08x}{SUFFIX}"
        tmp = self.spool / f".{name}.tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            for line in lines:
                f.write(json.dumps(line, sort_keys=True, allow_nan=False) + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.spool / name)

    def append(self, records: Iterable[ResultRecord] | ResultRecord) -> int:
        rows = checked(records)
        if rows:
            self._spool([{"kind": "record", **asdict(r)} for r in rows])
        return len(rows)

    def add_protocol(self, hash: str, protocol: dict) -> None:
        if protocol_hash(protocol) != hash:
            raise ValueError(f"protocol hash {hash!r} is not the hash of the protocol ({protocol_hash(protocol)})")
        self._spool([{"kind": "protocol", "hash": hash, "protocol": protocol}])


def _read(path: Path) -> tuple[list[ResultRecord], list[tuple[str, dict]]]:
    records, protocols = [], []
    try:
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            d = json.loads(line)
            if d.get("kind") == "record":
                records.append(ResultRecord(**{k: d[k] for k in FIELDS}))
            elif d.get("kind") == "protocol":
                protocols.append((d["hash"], d["protocol"]))
            else:
                raise ValueError(f"line {n} is neither a record nor a protocol")
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ResultStoreError(f"spool file {path} cannot be ingested ({str(e).splitlines()[0]}); move it aside "
                               "and rerun with --resume (its run is then scored again)") from None
    return records, protocols


def ingest(store: ResultStore, folder: Path) -> int:
    """Move every spool file in ``folder`` into ``store`` exactly once (see the module docstring); returns the
    number of records appended."""
    if not folder.is_dir():
        return 0
    total = 0
    for path in sorted(p for p in folder.glob(f"*{SUFFIX}") if not p.name.startswith(".")):
        records, protocols = _read(path)
        for h, p in protocols:
            store.add_protocol(h, p)                   # idempotent by hash
        if store.take_ingested(path.name, records):
            total += len(records)
        path.unlink()
    if total:
        log.debug("ingested %d spooled records into %s", total, store.path)
    return total

