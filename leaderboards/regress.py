"""Regression checks: a baseline of a suite's per-seed numbers, and a check of a newer run against it.

A **baseline** (``bench baseline``) is a CSV with one line per (row, metric column, seed): the value, the
cell's status (``ok`` / ``degenerate``; a ``failed`` or ``missing`` cell is one line without a seed), the
protocol hash of the scorer that made it, the code version, and the environment of the run (torch, its
threads, platform, GPU). Holding every seed, it holds the baseline's own seed noise.

``bench regress`` puts a newer run beside it, in one of two modes:

- ``exact`` (deterministic runs in the same environment): every value is compared with the baseline's value
  of the same row, column and seed, and any change flags a regression, naming the first values that differ
  (row, column, seed, old, new). ``--tolerance METRIC=VALUE`` (and the suite's ``[tolerances]`` with
  ``--suite-tolerances``) allows ``|new - old| <= VALUE`` per value: for a baseline made on another
  machine, at the price of not seeing a change smaller than the allowance.
- ``statistical`` (several seeds, e.g. nightly runs on a GPU that is not bit-exact): per row and column, the
  new per-seed values are tested against the baseline's with Welch's t-test
  (:func:`leaderboards.stats.compare`); a cell moved when either one-sided p is below ``alpha / 2`` (a
  two-sided test at ``alpha``): a shift beyond the baseline's own seed noise. Tolerances do not apply.

In both modes a protocol hash that differs is reported (grouped by column) and the cell is never compared;
a value that was there and is gone (failed, missing, or a seed fewer) is a regression, and so is a cell whose
status changed (ok <-> degenerate). A degenerate cell's values are compared like any other: a regression
check asks whether the code's numbers changed, not whether they are a result. The CLI exits 1 when anything
moved, changed protocol or status, or was lost.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from bench.config import Suite
from bench.errors import ConfigError
from leaderboards.stats import ALPHA, compare as welch

BASELINE_COLUMNS = ["suite", "profile", "row", "column", "seed", "value", "status", "protocol_hash",
                    "code_version", "environment"]
MODES = ("exact", "statistical")
SHOWN = 10                       # exact mode names this many differing values, then counts the rest
HELD = ("ok", "degenerate")      # cell statuses whose per-seed values a baseline holds
TEXT = ("suite", "profile", "row", "column", "status", "protocol_hash", "code_version", "environment")


def environment(out: Path) -> str:
    """The machine of the newest run in ``out`` (its ``invocations.jsonl``): torch and its threads (a reduction
    split over another number of threads rounds differently), platform, GPU."""
    from bench.publish import INVOCATIONS
    p = Path(out) / INVOCATIONS
    lines = [ln for ln in p.read_text(encoding="utf-8").splitlines() if ln.strip()] if p.is_file() else []
    if not lines:
        return ""
    last = json.loads(lines[-1])
    m = last.get("machine") or {}
    threads = last.get("threads_per_job") or m.get("torch_threads")
    gpu = m.get("gpu") or "no GPU"
    return f"torch {m.get('torch')}, {threads} thread(s) per run, {m.get('platform')}, {gpu}"


def baseline_frame(suite: Suite, store, profile: str, env: str = "") -> pd.DataFrame:
    """Every leaderboard cell of ``suite`` at ``profile`` in ``store``, one line per seed (see the module)."""
    from leaderboards.build import leaderboard_frame, store_protocols
    records = store.latest(suite=suite.name, profile=profile)
    if not len(records):
        raise ConfigError(f"the results store holds nothing of suite '{suite.name}' at profile '{profile}'; "
                          "run it first (bench run)")
    long = leaderboard_frame(suite, records, store_protocols(store, records))
    ok = records[records["status"] == "ok"]
    lines = []
    for cell in long.itertuples():
        key = {"suite": suite.name, "profile": profile, "row": cell.row, "column": cell.column}
        if cell.status not in HELD:
            lines.append({**key, "seed": None, "value": math.nan, "status": cell.status, "protocol_hash": "",
                          "code_version": "", "environment": env})
            continue
        sel = ok[(ok["row"] == cell.row) & (ok["task"] == cell.task) & (ok["metric"] == cell.metric)]
        for r in sel.sort_values("seed").itertuples():
            lines.append({**key, "seed": int(r.seed), "value": float(r.value), "status": cell.status,
                          "protocol_hash": r.protocol_hash, "code_version": r.code_version, "environment": env})
    frame = pd.DataFrame(lines, columns=BASELINE_COLUMNS).astype({"seed": "Int64"})
    if not frame["status"].isin(HELD).any():
        raise ConfigError(f"suite '{suite.name}' at profile '{profile}' has no value to hold (every cell failed or "
                          "is missing); fix the run first")
    return frame


def read_baseline(path: Path, suite: str) -> pd.DataFrame:
    """A baseline CSV, checked: one line error for a missing, empty, header-only, malformed or other suite's."""
    again = f"write it with `bench baseline {suite} --out RUN --file {path}`"
    try:
        # pandas' default float parser round-trips what to_csv wrote, bit for bit (tests/test_regress.py)
        df = pd.read_csv(path, keep_default_na=False, na_values=[""], dtype={c: str for c in TEXT})
    except FileNotFoundError:
        raise ConfigError(f"baseline {path} not found; {again}") from None
    except OSError as e:
        raise ConfigError(f"baseline {path} cannot be read ({e.strerror or type(e).__name__}); give the CSV "
                          "that `bench baseline` wrote") from None
    except pd.errors.EmptyDataError:
        raise ConfigError(f"baseline {path} is empty; {again}") from None
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as e:
        raise ConfigError(f"baseline {path} is not a baseline CSV ({type(e).__name__}); {again}") from None
    missing = [c for c in BASELINE_COLUMNS if c not in df.columns]
    if missing:
        raise ConfigError(f"baseline {path} lacks column(s) {', '.join(missing)} (an older format?); {again}")
    if not len(df):
        raise ConfigError(f"baseline {path} holds no values (a header only); {again}")
    df = df.fillna({c: "" for c in TEXT})
    held = df["status"].isin(HELD)
    seeds = pd.to_numeric(df["seed"], errors="coerce")
    values = pd.to_numeric(df["value"], errors="coerce")
    bad = df.index[held & (seeds.isna() | values.isna() | (seeds != seeds.round()))]
    if len(bad) or not held.any():
        where = f"line {int(bad[0]) + 2} has no numeric seed and value" if len(bad) else "it holds no value"
        raise ConfigError(f"baseline {path} is malformed ({where}); {again}")
    for col, what in (("suite", suite), ("profile", None)):
        found = sorted(set(df[col]))
        if len(found) != 1 or (what is not None and found[0] != what):
            raise ConfigError(f"baseline {path} is of suite(s) {', '.join(found)}, not '{suite}'; {again}"
                              if col == "suite" else f"baseline {path} mixes profiles {', '.join(found)}; {again}")
    return df.assign(seed=seeds.astype("Int64"), value=values.astype(float))


def tolerance_for(column: str, suite_tol: dict[str, float], cli_tol: dict[str, float]) -> float:
    """The allowance of a column in exact mode: the command line's first, then the suite's; else 0."""
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
        if not out[key.strip()] >= 0:                  # NaN too: no change would ever be within it
            raise ConfigError(f"--tolerance '{item}': a tolerance is the largest change allowed, a number >= 0")
    return out


@dataclass
class Comparison:
    mode: str
    moved: list[str] = field(default_factory=list)
    protocol_changed: dict[tuple[str, str, str], list[str]] = field(default_factory=dict)  # (column, old, new)
    lost: list[str] = field(default_factory=list)
    status_changed: list[str] = field(default_factory=list)
    new: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    unchanged: int = 0
    unit: str = "value"          # what moved / unchanged count: values (exact) or cells (statistical)

    @property
    def failed(self) -> bool:
        return bool(self.moved or self.protocol_changed or self.lost or self.status_changed)

    def report(self) -> str:
        protocols = [f"{col}: protocol {old} -> {new} in {len(rows)} row(s): {', '.join(rows)} (not compared)"
                     for (col, old, new), rows in self.protocol_changed.items()]
        lines = [f"note      {n}" for n in self.notes]
        for tag, items in (("MOVED", self.moved), ("PROTOCOL", protocols), ("LOST", self.lost),
                           ("STATUS", self.status_changed), ("new", self.new)):
            lines += [f"{tag:<9} {m}" for m in items[:SHOWN]]
            lines += [f"{tag:<9} ... and {len(items) - SHOWN} more"] if len(items) > SHOWN else []
        verdict = "REGRESSION" if self.failed else "ok"
        same = "unchanged" if self.mode == "exact" else "not separated from the baseline"
        cells = sum(len(r) for r in self.protocol_changed.values())
        lines.append(f"{verdict} ({self.mode}): {len(self.moved)} {self.unit}(s) moved, {cells} cell(s) with another "
                     f"protocol, {len(self.lost)} lost, {len(self.status_changed)} changed status, {self.unchanged} "
                     f"{same}, {len(self.new)} new")
        return "\n".join(lines)


def _cells(frame: pd.DataFrame) -> dict[tuple[str, str], pd.DataFrame]:
    return {k: g for k, g in frame.groupby(["row", "column"], sort=False)}


def _g(v: float) -> str:
    return repr(float(v))


def compare(baseline: pd.DataFrame, current: pd.DataFrame, mode: str = "exact",
            higher: dict[str, bool] | None = None, suite_tol: dict[str, float] | None = None,
            cli_tol: dict[str, float] | None = None, alpha: float = ALPHA) -> Comparison:
    """``current`` (a :func:`baseline_frame` of the new run) against ``baseline``, in ``mode`` (see the module)."""
    if mode not in MODES:
        raise ConfigError(f"--mode must be one of {', '.join(MODES)}, not '{mode}'")
    res = Comparison(mode, unit="value" if mode == "exact" else "cell")
    held = baseline[baseline["status"].isin(HELD)]
    fewest = int(held.groupby(["row", "column"])["seed"].nunique().min())
    if mode == "statistical" and fewest < 2:
        raise ConfigError(f"--mode statistical tests against the baseline's seed noise, and this baseline holds "
                          f"{fewest} seed(s) of a cell; write it from a run of 3 or more seeds "
                          "(bench baseline --run --seeds 5) or use --mode exact")
    envs = set(baseline["environment"]) - {""}, set(current["environment"]) - {""}
    if mode == "exact" and all(envs) and envs[0] != envs[1]:
        res.notes.append(f"the baseline was made with {', '.join(sorted(envs[0]))}; this run with "
                         f"{', '.join(sorted(envs[1]))}: exact values may differ there without a code change "
                         "(make the baseline here, or use --mode statistical)")
    cur = _cells(current)
    for (row, col), old in _cells(baseline).items():
        where = f"{row} / {col}"
        new = cur.pop((row, col), None)
        old_status = str(old["status"].iloc[0])
        new_status = str(new["status"].iloc[0]) if new is not None else "missing"
        if old_status not in HELD:
            if new_status in HELD:
                res.new.append(f"{where}: was {old_status}, now {new_status}")
            continue
        if new_status not in HELD:
            res.lost.append(f"{where}: {len(old)} value(s), now {new_status}")
            continue
        if new_status != old_status:
            res.status_changed.append(f"{where}: was {old_status}, now {new_status}")
        old_h, new_h = ";".join(sorted(set(old["protocol_hash"]))), ";".join(sorted(set(new["protocol_hash"])))
        if old_h != new_h:
            res.protocol_changed.setdefault((col, old_h, new_h), []).append(row)
            continue
        lost, added = sorted(set(old["seed"]) - set(new["seed"])), sorted(set(new["seed"]) - set(old["seed"]))
        if lost:
            res.lost.append(f"{where}: seed(s) {', '.join(map(str, lost))} gone")
        if added and mode == "exact":
            res.new.append(f"{where}: seed(s) {', '.join(map(str, added))} not in the baseline (not compared)")
        if mode == "exact":
            _exact(res, where, old, new, tolerance_for(col, suite_tol or {}, cli_tol or {}))
        else:
            _statistical(res, where, old, new, bool((higher or {}).get(col, False)), alpha)
    res.new += [f"{r} / {c}: {str(g['status'].iloc[0])}" for (r, c), g in cur.items()
                if str(g["status"].iloc[0]) in HELD]
    return res


def _exact(res: Comparison, where: str, old: pd.DataFrame, new: pd.DataFrame, tol: float) -> None:
    now = dict(zip(new["seed"], new["value"]))
    for seed, was in zip(old["seed"], old["value"]):
        if seed not in now:
            continue
        diff = now[seed] - was
        if abs(diff) > tol or (diff != diff):
            allow = f", tolerance {tol:g}" if tol else ""
            res.moved.append(f"{where} seed {seed}: {_g(was)} -> {_g(now[seed])} ({diff:+.3g}{allow})")
        else:
            res.unchanged += 1


def _statistical(res: Comparison, where: str, old: pd.DataFrame, new: pd.DataFrame, higher: bool,
                 alpha: float) -> None:
    a, b = new["value"].tolist(), old["value"].tolist()
    if len(a) < 2 or len(b) < 2:
        res.lost.append(f"{where}: {len(b)} baseline and {len(a)} new seed(s); a test needs 2 or more on each side "
                        "(run more seeds, or use --mode exact)")
        return
    t = welch(a, b, higher, alpha / 2)
    p = min(1.0, 2 * min(t.p, t.p_reverse))
    if t.outcome == "not separated":
        res.unchanged += 1
        return
    way = "better" if t.outcome == "a better" else "worse"
    res.moved.append(f"{where}: {t.mean_b:.6g} (n {t.n_b}) -> {t.mean_a:.6g} (n {t.n_a}), {way}: diff {t.diff:+.4g} "
                     f"[{t.diff_low:+.4g}, {t.diff_high:+.4g}], two-sided Welch p = {p:.2g} < {alpha:g}")
