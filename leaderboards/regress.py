"""Regression checks: a baseline of a suite's numbers, and a comparison that fails loudly when one moves.

A baseline is a CSV (one line per row and column: our mean over seeds, n, and the protocol hash(es)
that made it) written from a finished run's results store. ``compare`` puts a newer run beside it:
a column moves when ``|new - old| > tolerance`` (per metric key or ``task/metric``: the command line
first, then the suite's ``[tolerances]``, else 0: any change), a protocol hash that differs is
reported as such and never silently compared, and a value that was there and is gone (failed or
missing) is a regression too. The CLI exits 1 when anything moved.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from bench.config import Suite
from bench.errors import ConfigError

BASELINE_COLUMNS = ["row", "column", "mean", "n", "status", "protocol_hash", "profile", "code_version"]


def baseline_frame(suite: Suite, store, profile: str) -> pd.DataFrame:
    from leaderboards.build import leaderboard_frame
    records = store.latest(suite=suite.name, profile=profile)
    if not len(records):
        raise ConfigError(f"the results store holds nothing of suite '{suite.name}' at profile '{profile}'; "
                          "run it first (bench run)")
    long = leaderboard_frame(suite, records)
    ok = records[records["status"] == "ok"]
    hashes, versions = [], []
    for r in long.itertuples():
        sel = ok[(ok["row"] == r.row) & (ok["task"] == r.task) & (ok["metric"] == r.metric)]
        hashes.append(";".join(sorted(set(sel["protocol_hash"]))))
        versions.append(";".join(sorted(set(sel["code_version"]))))
    return long.assign(protocol_hash=hashes, profile=profile, code_version=versions)[BASELINE_COLUMNS]


@dataclass
class Comparison:
    moved: list[str] = field(default_factory=list)
    protocol_changed: list[str] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)
    new: list[str] = field(default_factory=list)
    unchanged: int = 0

    @property
    def failed(self) -> bool:
        return bool(self.moved or self.protocol_changed or self.lost)

    def report(self) -> str:
        lines = [*(f"MOVED     {m}" for m in self.moved), *(f"PROTOCOL  {m}" for m in self.protocol_changed),
                 *(f"LOST      {m}" for m in self.lost), *(f"new       {m}" for m in self.new)]
        verdict = "REGRESSION" if self.failed else "ok"
        lines.append(f"{verdict}: {len(self.moved)} moved, {len(self.protocol_changed)} with another protocol, "
                     f"{len(self.lost)} lost, {self.unchanged} within tolerance, {len(self.new)} new")
        return "\n".join(lines)


def tolerance_for(column: str, suite_tol: dict[str, float], cli_tol: dict[str, float]) -> float:
    metric = column.split("/", 1)[-1]
    for table in (cli_tol, suite_tol):
        for key in (column, metric):
            if key in table:
                return float(table[key])
    return 0.0


def parse_tolerances(items: list[str] | None) -> dict[str, float]:
    out = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        try:
            out[key.strip()] = float(value)
        except ValueError:
            sep = ""
        if not sep or not key.strip():
            raise ConfigError(f"--tolerance '{item}' must be METRIC=VALUE (e.g. fid_class_mean=2.5 or "
                              "photo2depth/rel=0.01)")
    return out


def compare(baseline: pd.DataFrame, current: pd.DataFrame, suite_tol: dict[str, float],
            cli_tol: dict[str, float]) -> Comparison:
    res = Comparison()
    cur = {(r.row, r.column): r for r in current.itertuples()}
    for b in baseline.itertuples():
        where = f"{b.row} / {b.column}"
        c = cur.pop((b.row, b.column), None)
        if b.status != "ok":
            continue
        if c is None or c.status != "ok" or math.isnan(c.mean):
            res.lost.append(f"{where}: was {b.mean:.6g}, now {getattr(c, 'status', 'missing')}")
            continue
        if str(c.protocol_hash) != str(b.protocol_hash):
            res.protocol_changed.append(f"{where}: protocol {b.protocol_hash} -> {c.protocol_hash} "
                                        f"({b.mean:.6g} -> {c.mean:.6g}, not compared)")
            continue
        tol = tolerance_for(b.column, suite_tol, cli_tol)
        diff = c.mean - b.mean
        if abs(diff) > tol:
            res.moved.append(f"{where}: {b.mean:.6g} -> {c.mean:.6g} ({diff:+.4g}, tolerance {tol:g}) "
                             f"[protocol {c.protocol_hash}]")
        else:
            res.unchanged += 1
    res.new = [f"{r} / {col}" for (r, col), c in cur.items() if c.status == "ok"]
    return res


def read_baseline(path: Path) -> pd.DataFrame:
    try:
        df = pd.read_csv(path, keep_default_na=True)
    except FileNotFoundError:
        raise ConfigError(f"baseline {path} not found; write one with `bench baseline SUITE --out DIR`") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise ConfigError(f"baseline {path} is not a baseline CSV ({type(e).__name__}); write it again") from None
    missing = set(BASELINE_COLUMNS) - set(df.columns)
    if missing:
        raise ConfigError(f"baseline {path} lacks column(s) {', '.join(sorted(missing))}; write it again with "
                          "`bench baseline`")
    return df.fillna({"protocol_hash": "", "status": ""})
