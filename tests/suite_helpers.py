"""Helpers for tests that run whole (tiny) suites through the CLI."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
QUICKSTART = REPO / "leaderboards" / "quickstart.toml"


def toml_dump(d: dict, prefix: str = "") -> str:
    """A minimal TOML writer for the suite shapes used in tests (tables, arrays of tables, scalars)."""
    def val(v):
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, str):
            return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
        if isinstance(v, (list, tuple)):
            return "[" + ", ".join(val(x) for x in v) + "]"
        return repr(v)

    lines, tables = [], []
    for k, v in d.items():
        if isinstance(v, dict):
            tables.append((k, v))
        elif isinstance(v, list) and v and isinstance(v[0], dict):
            tables.append((k, v))
        else:
            lines.append(f'"{k}" = {val(v)}')
    out = "\n".join(lines) + "\n"
    for k, v in tables:
        name = f'{prefix}"{k}"'
        if isinstance(v, dict):
            out += f"\n[{name}]\n" + toml_dump(v, prefix=name + ".")
        else:
            for item in v:
                out += f"\n[[{name}]]\n" + toml_dump(item, prefix=name + ".")
    return out


def quickstart_variant(tmp: Path, **changes) -> Path:
    """Write a copy of the quickstart suite with top-level sections replaced / rows changed."""
    d = tomllib.loads(QUICKSTART.read_text())
    for k, v in changes.items():
        if k == "suite":
            d["suite"].update(v)
        else:
            d[k] = v
    p = tmp / f"{d['suite']['name']}.toml"
    p.write_text(toml_dump(d))
    return p


def bench(*args: str, cwd: Path | None = None, env: dict | None = None, check: bool = False,
          timeout: int = 900) -> subprocess.CompletedProcess:
    e = dict(os.environ)
    e.update(env or {})
    e.setdefault("OMP_NUM_THREADS", "2")
    r = subprocess.run([sys.executable, "-m", "bench.cli", *args], cwd=cwd or REPO, env=e,
                       capture_output=True, text=True, timeout=timeout)
    if check and r.returncode != 0:
        raise AssertionError(f"bench {' '.join(args)} exited {r.returncode}:\n{r.stdout}\n{r.stderr}")
    return r


def popen_bench(*args: str, env: dict | None = None) -> subprocess.Popen:
    e = dict(os.environ)
    e.update(env or {})
    e.setdefault("OMP_NUM_THREADS", "2")
    return subprocess.Popen([sys.executable, "-m", "bench.cli", *args], cwd=REPO, env=e,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


SCORED = ("ok", "degenerate")


def assert_scored(board) -> None:
    """Every cell of a leaderboard frame was scored: ok, or degenerate (the sanity gate's verdict on a model
    trained for a few steps: its numbers are kept, with the gate's reason)."""
    bad = board[~board["status"].isin(SCORED)]
    assert not len(bad), bad[[c for c in ("row", "metric", "status", "reason") if c in board]]
    deg = board[board["status"] == "degenerate"]
    assert deg["reason"].astype(str).str.contains("constant output|collapsed output").all(), deg["reason"].tolist()


def run_smoke(suite: str, out: Path, *, rows: int, claims: int):
    """``bench run SUITE --profile smoke`` for one seed on one thread into ``out``; checks that every cell was
    scored, that ``rows`` rows were run and ``claims`` claims judged with known verdicts; returns the
    leaderboard frame."""
    import pandas as pd

    from leaderboards.claims import VERDICTS
    bench("run", suite, "--profile", "smoke", "--seeds", "1", "--out", str(out), "--no-progress",
          "--device", "cpu", env={"OMP_NUM_THREADS": "1"}, check=True, timeout=300)
    board = pd.read_csv(out / "leaderboard.csv")
    assert_scored(board)
    assert board["row"].nunique() == rows
    judged = pd.read_csv(out / "claims.csv")
    assert len(judged) == claims and set(judged["verdict"]) <= set(VERDICTS)
    return board


#: two rows x two seeds of a suite with a joint metric (NRDS), one thread: the records of a parallel or
#: cluster run must equal those of one process (tests/test_jobs.py, tests/test_executors.py)
PARALLEL_ARGS = ("decoupled-table2-mnist", "--profile", "smoke", "--seeds", "2", "--rows",
                 "ED+GAN coupled w=0.001,ED//GAN decoupled w=1", "--no-progress", "--threads", "1")


def ok_values(out: Path):
    """The ok records of ``out``'s store as (row, seed, metric, value), sorted: what two runs must agree on."""
    from bench.results import ResultStore
    f = ResultStore(out / "results.sqlite").frame()
    f = f[f["status"] == "ok"][["row", "seed", "metric", "value"]]
    return f.sort_values(["row", "seed", "metric"]).reset_index(drop=True)
