"""Curves over training: the metrics a profile scores at earlier checkpoints, at the end of its ``eval_epochs``
(keys ``k[eN]``, x = epoch) or at a budget ladder's rungs (keys ``k[sN]``, x = generator steps, with the last
checkpoint's value at the profile's steps), one panel per metric, one line per row (mean over seeds, every
evaluated point marked, the band one standard deviation)."""

from __future__ import annotations

import math
import re
import textwrap
from pathlib import Path

import pandas as pd

EPOCH_KEY = re.compile(r"^(?P<base>.+)\[e(?P<epoch>\d+)\]$")
#: a key scored at an earlier checkpoint than the last: the end of an epoch ``[eN]`` or a budget rung ``[sN]``
CHECKPOINT_KEY = re.compile(r"^(?P<base>.+)\[(?P<kind>[es])(?P<n>\d+)\]$")
AXES = {"e": "epoch", "s": "generator steps"}


def curve_frame(long: pd.DataFrame, final_steps: int | None = None) -> pd.DataFrame:
    """The earlier-checkpoint lines of a long leaderboard frame with their base metric, axis (``e`` epochs,
    ``s`` steps) and x; with ``final_steps``, each step curve ends with the last checkpoint's value there."""
    rows = []
    stepped = set()
    for r in long.itertuples():
        m = CHECKPOINT_KEY.match(str(r.metric))
        if m and r.status == "ok":
            rows.append({"row": r.row, "task": r.task, "metric": m["base"], "axis": m["kind"], "x": int(m["n"]),
                         "mean": r.mean, "std": r.std, "n": r.n})
            if m["kind"] == "s":
                stepped.add((r.row, r.task, m["base"]))
    if final_steps:
        rows += [{"row": r.row, "task": r.task, "metric": r.metric, "axis": "s", "x": int(final_steps),
                  "mean": r.mean, "std": r.std, "n": r.n} for r in long.itertuples()
                 if r.status == "ok" and (r.row, r.task, r.metric) in stepped]
    return pd.DataFrame(rows, columns=["row", "task", "metric", "axis", "x", "mean", "std", "n"])


def plot_curves(long: pd.DataFrame, path: Path, title: str, metrics: list[str] | None = None,
                final_steps: int | None = None) -> Path | None:
    """Draw the curves (``metrics``: base keys to draw, default all) to ``path``; None when there are none."""
    cf = curve_frame(long, final_steps)
    if metrics:
        cf = cf[cf["metric"].isin(metrics)]
    if not len(cf):
        return None
    panels = list(dict.fromkeys(zip(cf["task"], cf["metric"], cf["axis"])))
    fig, axes = panel_grid(len(panels), 3.4)
    for ax, (task, metric, axis) in zip(axes.flat, panels):
        g = cf[(cf["task"] == task) & (cf["metric"] == metric) & (cf["axis"] == axis)]
        for row, h in g.groupby("row", sort=False):
            h = h.sort_values("x")
            ax.plot(h["x"], h["mean"], marker="o", ms=3, label=row)
            sd = h["std"].fillna(0)
            ax.fill_between(h["x"], h["mean"] - sd, h["mean"] + sd, alpha=0.15)
        ax.set_title(textwrap.fill(f"{task}/{metric}", 40), fontsize=9)
        ax.set_xlabel(AXES[axis], fontsize=8)
        ax.legend(fontsize=6)
    return finish_figure(fig, axes, len(panels), title, path)


def panel_grid(n: int, height: float):
    """A figure of ``n`` panels, at most three per line (headless backend)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    ncols = min(3, n)
    nrows = math.ceil(n / ncols)
    return plt.subplots(nrows, ncols, figsize=(4.8 * ncols, height * nrows), squeeze=False)


def finish_figure(fig, axes, used: int, title: str, path: Path) -> Path:
    """Blank the unused panels, title, save and close a figure of panels."""
    import matplotlib.pyplot as plt
    for ax in list(axes.flat)[used:]:
        ax.axis("off")
    width = fig.get_size_inches()[0]
    fig.suptitle(textwrap.fill(title, max(40, int(width * 14))), fontsize=10)   # ~14 characters an inch at 10 pt
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


LOG_SPAN = 1e3


def wants_log_axis(values: pd.Series) -> bool:
    """A panel's values are drawn on a log axis when all are positive and they span over ``LOG_SPAN`` (a latent
    KL from 20 to 1e5 nats, a discriminator loss falling to 1e-3 as D wins): on a linear axis one seed's spike
    flattens every other curve to the floor."""
    v = pd.to_numeric(values, errors="coerce").dropna()
    v = v[v.abs() != float("inf")]
    return bool(len(v)) and bool((v > 0).all()) and float(v.max() / v.min()) > LOG_SPAN


def plot_training(out: Path, rows: list[str], tasks: list[str], path: Path, title: str,
                  keys: tuple[str, ...] = ("loss_D", "loss_G")) -> Path | None:
    """The logged scalars ``keys`` (each run's ``scalars.csv``) per row, the mean over its seeds with their range
    as a band, one panel per (task, scalar)."""
    from bench.schema import slug
    frames = []
    for row in rows:
        for task in tasks:
            for f in sorted((Path(out) / "runs" / slug(row)).glob(f"seed*/{task}/scalars.csv")):
                try:
                    d = pd.read_csv(f)
                except (OSError, ValueError, pd.errors.EmptyDataError):
                    continue
                for k in keys:
                    if k in d:
                        frames.append(pd.DataFrame({"row": row, "task": task, "key": k, "step": d["step"],
                                                    "value": d[k]}))
    if not frames:
        return None
    df = pd.concat(frames)
    panels = list(dict.fromkeys(zip(df["task"], df["key"])))
    fig, axes = panel_grid(len(panels), 3.2)
    colour = {row: f"C{i % 10}" for i, row in enumerate(rows)}      # a row keeps its colour in every panel
    for ax, (task, key) in zip(axes.flat, panels):
        g = df[(df["task"] == task) & (df["key"] == key)]
        for row, h in g.groupby("row", sort=False):
            by = h.groupby("step")["value"]
            m, lo, hi = by.mean(), by.min(), by.max()
            ax.plot(m.index, m.values, lw=1, label=row, color=colour[row])
            if by.size().max() > 1:
                ax.fill_between(m.index, lo.values, hi.values, color=colour[row], alpha=0.15, lw=0)
        log = wants_log_axis(g["value"])
        if log:
            ax.set_yscale("log")
        ax.set_title(f"{task}: {key}" + (" (log scale)" if log else ""), fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.legend(fontsize=6)
    return finish_figure(fig, axes, len(panels), title, path)
