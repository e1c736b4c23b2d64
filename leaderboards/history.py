"""A metric over time: every record the results store keeps (it is append-only), per row, against the
date and the code version that made it: the trend a scheduled regression job leaves behind."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from bench.errors import ConfigError


def history_frame(store, suite: str, metric: str, profile: str | None = None) -> pd.DataFrame:
    """Mean over seeds per (row, code version, run date) of ``metric`` (a key or ``task/key``)."""
    task, _, key = metric.rpartition("/")
    filters = {"suite": suite, "metric": key, "status": "ok"}
    if profile:
        filters["profile"] = profile
    if task:
        filters["task"] = task
    df = store.frame(**filters)
    if not len(df):
        raise ConfigError(f"the results store has no ok records of '{metric}' for suite '{suite}'"
                          + (f" at profile '{profile}'" if profile else ""))
    df = df.assign(date=pd.to_datetime(df["time"], utc=True).dt.floor("min"))
    return (df.groupby(["row", "code_version", "date"], sort=False)["value"].agg(["mean", "count"])
            .reset_index().sort_values("date"))


def plot_history(frame: pd.DataFrame, path: Path, title: str) -> Path:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(8, 4))
    for row, g in frame.groupby("row", sort=False):
        ax.plot(g["date"], g["mean"], marker="o", ms=4, label=row)
        for d, m, v in zip(g["date"], g["mean"], g["code_version"]):
            ax.annotate(str(v).split("+")[-1][:8], (d, m), fontsize=6, alpha=0.6, xytext=(2, 2),
                        textcoords="offset points")
    ax.set_title(title, fontsize=10)
    ax.set_xlabel("run date (code version annotated)", fontsize=8)
    ax.legend(fontsize=7)
    fig.autofmt_xdate()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
