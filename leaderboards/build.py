"""Turn result records into the leaderboard: our numbers beside the published ones.

``leaderboard_frame`` gives one row per (suite row, column) where a column is ``<task>/<metric>``:
mean and std over seeds, the number of seeds, the published value, the gap, and the status.
``write_leaderboard`` renders it as ``leaderboard.md`` (wide, human), ``leaderboard.csv`` (long,
machine) and ``leaderboard.png`` (ours vs paper per column).
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import pandas as pd

from bench.config import Suite

log = logging.getLogger(__name__)

LONG_COLUMNS = ["row", "column", "task", "metric", "mean", "std", "n", "published", "gap", "status", "reason"]


def leaderboard_frame(suite: Suite, records: pd.DataFrame) -> pd.DataFrame:
    """Long frame, in suite row order then column order; rows with no record at all are left out."""
    out = []
    for row in suite.rows:
        recs = records[records["row"] == row.name] if len(records) else records
        if not len(recs):
            continue                     # not run (e.g. --rows chose others)
        for task in suite.suite.tasks:
            r_task = recs[recs["task"] == task] if len(recs) else recs
            ok = r_task[r_task["status"] == "ok"] if len(r_task) else r_task
            failed = r_task[r_task["status"] == "failed"] if len(r_task) else r_task
            metrics = _columns_for(suite, task, ok, row.published)
            for metric in metrics:
                vals = ok[ok["metric"] == metric]["value"].astype(float) if len(ok) else pd.Series(dtype=float)
                pub = row.published.get(f"{task}/{metric}")
                mean = float(vals.mean()) if len(vals) else math.nan
                status = "ok" if len(vals) else ("failed" if len(failed) else "missing")
                reason = "; ".join(sorted(set(failed["reason"]))) if len(failed) else ""
                out.append({"row": row.name, "column": f"{task}/{metric}", "task": task, "metric": metric,
                            "mean": mean, "std": float(vals.std(ddof=1)) if len(vals) > 1 else math.nan,
                            "n": int(len(vals)), "published": pub if pub is not None else math.nan,
                            "gap": mean - pub if pub is not None and len(vals) else math.nan,
                            "status": status, "reason": reason})
    return pd.DataFrame(out, columns=LONG_COLUMNS)


def _columns_for(suite: Suite, task: str, ok: pd.DataFrame, published: dict[str, float]) -> list[str]:
    if task in suite.columns:
        return list(suite.columns[task])
    seen = list(dict.fromkeys(ok["metric"])) if len(ok) else []
    for key in published:
        t, _, m = key.partition("/")
        if t == task and m not in seen:
            seen.append(m)
    return seen


def rank_agreement(long: pd.DataFrame) -> pd.DataFrame:
    """Per column with >= 3 published rows: Kendall's tau between our values and the paper's."""
    from scipy.stats import kendalltau
    rows = []
    for col, g in long.groupby("column", sort=False):
        g = g.dropna(subset=["mean", "published"])
        if len(g) < 3:
            continue
        tau = kendalltau(g["mean"], g["published"]).statistic
        best_ours = g.loc[g["mean"].idxmax(), "row"]
        best_paper = g.loc[g["published"].idxmax(), "row"]
        rows.append({"column": col, "rows": len(g), "kendall_tau": float(tau),
                     "same_highest": best_ours == best_paper})
    return pd.DataFrame(rows, columns=["column", "rows", "kendall_tau", "same_highest"])


def _fmt(v: float, std: float = math.nan) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    s = f"{v:.4f}"
    if not math.isnan(std):
        s += f" ± {std:.4f}"
    return s


def wide_table(long: pd.DataFrame) -> pd.DataFrame:
    """Human table: one line per row; per column ours (± std), and paper / gap where published."""
    cols = list(dict.fromkeys(long["column"]))
    has_pub = {c: long[long["column"] == c]["published"].notna().any() for c in cols}
    table = []
    for row, g in long.groupby("row", sort=False):
        line = {"row": row}
        for c in cols:
            cell = g[g["column"] == c]
            if not len(cell):
                line[c] = ""
                continue
            r = cell.iloc[0]
            line[c] = _fmt(r["mean"], r["std"]) if r["status"] == "ok" else r["status"]
            if has_pub[c]:
                line[f"{c} (paper)"] = _fmt(r["published"])
                line[f"{c} gap"] = f"{r['gap']:+.4f}" if not math.isnan(r["gap"]) else ""
        table.append(line)
    return pd.DataFrame(table)


def render_markdown(suite: Suite, long: pd.DataFrame, profile: str, protocols: dict[str, str]) -> str:
    s = suite.suite
    lines = [f"# {s.title or s.name}", "",
             f"suite `{s.name}` · profile `{profile}` · dataset `{s.dataset}` · tasks {', '.join(s.tasks)}"]
    if s.reference:
        lines.append(f"reproduces: {s.reference}")
    seeds = sorted(set(long["n"])) if len(long) else []
    lines += [f"seeds per cell: {', '.join(map(str, seeds))} (mean ± sample std over seeds)", ""]
    lines.append(wide_table(long).to_markdown(index=False))
    agree = rank_agreement(long)
    if len(agree):
        lines += ["", "## Ranking agreement with the paper", "", agree.to_markdown(index=False, floatfmt=".3f")]
    failed = long[long["status"] == "failed"].drop_duplicates(["row", "task"])
    if len(failed):
        lines += ["", "## Failed runs", ""] + [f"- {r.row} / {r.task}: {r.reason}" for r in failed.itertuples()]
    if protocols:
        lines += ["", "## Evaluation protocols", ""] + [f"- `{h}`: {d}" for h, d in protocols.items()]
    if s.assumptions:
        lines += ["", "## Assumptions", ""] + [f"- {a}" for a in s.assumptions]
    return "\n".join(lines) + "\n"


def plot(long: pd.DataFrame, path: Path, title: str) -> Path | None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    cols = [c for c in dict.fromkeys(long["column"]) if long[long["column"] == c]["mean"].notna().any()]
    if not cols:
        return None
    n = len(cols)
    ncols = min(3, n)
    nrows = math.ceil(n / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.5 * ncols, 3.2 * nrows), squeeze=False)
    for ax, c in zip(axes.flat, cols):
        g = long[long["column"] == c]
        xs = range(len(g))
        ax.bar([x - 0.2 for x in xs], g["mean"], width=0.4, yerr=g["std"].fillna(0), label="ours")
        if g["published"].notna().any():
            ax.bar([x + 0.2 for x in xs], g["published"], width=0.4, label="paper")
            ax.legend(fontsize=7)
        ax.set_title(c, fontsize=9)
        ax.set_xticks(list(xs))
        ax.set_xticklabels(g["row"], rotation=30, ha="right", fontsize=7)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_leaderboard(suite: Suite, store, out: Path, profile: str | None = None) -> Path:
    """Write leaderboard.md / .csv / .png for ``suite`` and ``profile`` from ``store``; return the .md path."""
    profile = profile or suite.suite.default_profile
    records = store.latest(suite=suite.name, profile=profile)
    long = leaderboard_frame(suite, records)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    long.assign(profile=profile).to_csv(out / "leaderboard.csv", index=False)
    hashes = sorted(set(records["protocol_hash"]) - {""}) if len(records) else []
    protocols = {h: _describe(store.protocol(h)) for h in hashes}
    md = out / "leaderboard.md"
    md.write_text(render_markdown(suite, long, profile, protocols))
    try:
        plot(long, out / "leaderboard.png", f"{suite.suite.title or suite.name} ({profile})")
    except Exception as e:  # a plot must never lose the table
        log.warning("could not draw leaderboard.png: %s", e)
    return md


def _describe(protocol: dict | None) -> str:
    if not protocol:
        return "?"
    sc = protocol.get("scorer", {})
    parts = [f"{protocol.get('metric')}", f"{protocol.get('num_samples')} test samples at {protocol.get('image_size')} px"]
    if isinstance(sc, dict):
        parts += [f"{k}={v}" for k, v in sc.items() if k != "scorer" and not isinstance(v, (dict, list))]
    return ", ".join(str(p) for p in parts)
