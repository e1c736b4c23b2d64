"""Curves over training: the metrics a profile scores at the end of its ``eval_epochs`` (keys ``k[eN]``),
one panel per metric, one line per row (mean over seeds, the band one standard deviation)."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pandas as pd

EPOCH_KEY = re.compile(r"^(?P<base>.+)\[e(?P<epoch>\d+)\]$")


def curve_frame(long: pd.DataFrame) -> pd.DataFrame:
    """The ``[eN]`` lines of a long leaderboard frame with their base metric and epoch."""
    rows = []
    for r in long.itertuples():
        m = EPOCH_KEY.match(str(r.metric))
        if m and r.status == "ok":
            rows.append({"row": r.row, "task": r.task, "metric": m["base"], "epoch": int(m["epoch"]),
                         "mean": r.mean, "std": r.std, "n": r.n})
    return pd.DataFrame(rows, columns=["row", "task", "metric", "epoch", "mean", "std", "n"])


def plot_curves(long: pd.DataFrame, path: Path, title: str, metrics: list[str] | None = None) -> Path | None:
    """Draw the curves (``metrics``: base keys to draw, default all) to ``path``; None when there are none."""
    cf = curve_frame(long)
    if metrics:
        cf = cf[cf["metric"].isin(metrics)]
    if not len(cf):
        return None
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    panels = list(dict.fromkeys(zip(cf["task"], cf["metric"])))
    ncols = min(3, len(panels))
    nrows = math.ceil(len(panels) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.8 * ncols, 3.4 * nrows), squeeze=False)
    for ax, (task, metric) in zip(axes.flat, panels):
        g = cf[(cf["task"] == task) & (cf["metric"] == metric)]
        for row, h in g.groupby("row", sort=False):
            h = h.sort_values("epoch")
            ax.plot(h["epoch"], h["mean"], marker="o", ms=3, label=row)
            sd = h["std"].fillna(0)
            ax.fill_between(h["epoch"], h["mean"] - sd, h["mean"] + sd, alpha=0.15)
        ax.set_title(f"{task}/{metric}", fontsize=9)
        ax.set_xlabel("epoch", fontsize=8)
        ax.legend(fontsize=6)
    return finish_figure(fig, axes, len(panels), title, path)


def finish_figure(fig, axes, used: int, title: str, path: Path) -> Path:
    """Blank the unused panels, title, save and close a figure of panels."""
    import matplotlib.pyplot as plt
    for ax in list(axes.flat)[used:]:
        ax.axis("off")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
