"""A metric over code versions: one point per (row, code version) from a series of run folders (the nightly
regression runs, each with its own ``results.sqlite``), or from one folder's append-only store.

A point is the mean over that version's seeds (each seed's newest record, so the same seed run on two nights
counts once) with its 95% Student t interval (``t95``, clipped to the metric's range) as the error bar.
Versions are ordered by the time of their first record and labelled by their short version (the commit,
``-dirty`` when the tree had uncommitted changes: such runs of one commit are pooled). A version whose records
carry several protocol hashes (a scorer changed in a dirty tree) is split into one point per protocol. The seeds
of one run are never drawn as a trend: they are the spread of one point.
"""

from __future__ import annotations

import glob
from pathlib import Path

import pandas as pd

from bench.config import Suite
from bench.errors import ConfigError
from bench.results import ResultStore
from bench.results import RESULTS_FILE
from leaderboards.stats import clip, interval

COLUMNS = ["row", "version", "first_record", "n", "mean", "ci_low", "ci_high", "interval", "protocol",
           "code_version"]


def run_folders(items: list[str]) -> list[Path]:
    """Folders holding a results store: each item a run folder, a folder of run folders, or a glob of them."""
    out: list[Path] = []
    for item in items:
        p = Path(item)
        if p.is_dir():
            found = [p] if (p / RESULTS_FILE).is_file() else sorted(
                q for q in p.iterdir() if (q / RESULTS_FILE).is_file())
        else:
            found = sorted(Path(m) for m in glob.glob(item) if (Path(m) / RESULTS_FILE).is_file())
        if not found:
            raise ConfigError(f"--runs {item}: no folder holding {RESULTS_FILE} there; give a run folder, a folder "
                              "of run folders (e.g. runs) or a quoted glob (e.g. 'runs/nightly-*')")
        out += found
    return list(dict.fromkeys(out))


def short_version(code_version: str) -> str:
    """``0.1.0+7112cb750cce-dirty`` -> ``7112cb750cce-dirty``; a version without a commit as it is."""
    return str(code_version).split("+", 1)[-1]


def _records(folders: list[Path], suite: str, metric: str, profile: str | None) -> pd.DataFrame:
    task, _, key = metric.rpartition("/")
    filters = {"suite": suite, "metric": key, "status": "ok", **({"task": task} if task else {}),
               **({"profile": profile} if profile else {})}
    frames = [ResultStore(f / RESULTS_FILE).frame(**filters) for f in folders]
    df = pd.concat(frames, ignore_index=True).drop_duplicates() if frames else pd.DataFrame()
    where = f"{len(folders)} run folder(s)" + (f" at profile '{profile}'" if profile else "")
    if not len(df):
        raise ConfigError(f"no ok records of '{metric}' for suite '{suite}' in {where}; check --metric "
                          "(a metric key or task/metric) and --profile")
    for col, flag in (("profile", "--profile"), ("task", "--metric TASK/METRIC")):
        if df[col].nunique() > 1:
            raise ConfigError(f"'{metric}' of suite '{suite}' is recorded at several {col}s "
                              f"({', '.join(sorted(set(df[col])))}); choose one with {flag}")
    return df


def history_frame(folders: list[Path], suite: Suite, metric: str, profile: str | None = None) -> pd.DataFrame:
    """One line per (row, code version): the mean over the version's seeds and its interval (see the module)."""
    from leaderboards.build import ranges
    df = _records(folders, suite.name, metric, profile)
    task, key = str(df["task"].iloc[0]), str(df["metric"].iloc[0])
    column = f"{task}/{key}"
    bounds = ranges(suite, pd.DataFrame([{"column": column, "task": task, "metric": key}])).get(column)
    df = df.assign(time=pd.to_datetime(df["time"], utc=True), point=df["code_version"] + "|" + df["protocol_hash"])
    first = df.groupby("point")["time"].min()
    protocols = df.groupby("code_version")["protocol_hash"].nunique()
    newest = df.sort_values("time").groupby(["row", "point", "seed"]).tail(1)
    order = {r.name: i for i, r in enumerate(suite.rows)}
    lines = []
    for (row, point), g in newest.groupby(["row", "point"], sort=False):
        version, protocol = point.split("|", 1)
        lo, hi, how = interval(g["value"].tolist())
        lo, hi, clipped = clip(lo, hi, bounds)
        label = short_version(version) + (f" p:{protocol[:6]}" if protocols[version] > 1 else "")
        lines.append({"row": row, "version": label, "first_record": first[point], "n": len(g),
                      "mean": float(g["value"].mean()), "ci_low": lo, "ci_high": hi,
                      "interval": how + (", clipped" if clipped else ""), "protocol": protocol,
                      "code_version": version})
    out = pd.DataFrame(lines, columns=COLUMNS)
    out = out.assign(_r=out["row"].map(lambda r: order.get(r, len(order))))
    return out.sort_values(["first_record", "_r"], kind="stable").drop(columns="_r").reset_index(drop=True)


def plot_history(frame: pd.DataFrame, path: Path, title: str) -> Path:
    """Each row's points over the versions (x: versions by first record), with their 95% intervals."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    versions = list(dict.fromkeys(frame.sort_values("first_record", kind="stable")["version"]))
    x_of = {v: i for i, v in enumerate(versions)}
    fig, ax = plt.subplots(figsize=(max(6.0, 1.2 * len(versions) + 3), 4))
    rows = list(dict.fromkeys(frame["row"]))
    for k, (row, g) in enumerate(frame.groupby("row", sort=False)):
        shift = (k - (len(rows) - 1) / 2) * 0.06              # rows side by side at a version
        xs = [x_of[v] + shift for v in g["version"]]
        err = [(g["mean"] - g["ci_low"]).fillna(0).clip(lower=0), (g["ci_high"] - g["mean"]).fillna(0).clip(lower=0)]
        ax.errorbar(xs, g["mean"], yerr=err, marker="o", ms=4, capsize=3, label=row)
    firsts = frame.drop_duplicates("version").set_index("version")["first_record"]
    ax.set_xticks(range(len(versions)))
    ax.set_xticklabels([f"{v}\n{firsts[v]:%Y-%m-%d}" for v in versions], fontsize=7)
    ax.set_xlim(-0.5, len(versions) - 0.5)
    ax.set_title(title, fontsize=10)
    ax.set_xlabel("code version (by its first record); mean over its seeds, 95% t interval", fontsize=8)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
