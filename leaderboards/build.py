"""Turn result records into the leaderboard: our numbers beside the published ones.

``leaderboard_frame`` gives one row per (suite row, column) where a column is ``<task>/<metric>``:
mean and std over seeds, the number of seeds, the published value, the gap, and the status.
``write_leaderboard`` renders it as ``leaderboard.md`` (wide, human), ``leaderboard.csv`` (long,
machine) and ``leaderboard.png`` (ours vs paper per column).
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path
from typing import Mapping

import pandas as pd

from bench import failpoints, gates
from bench.config import Suite
from leaderboards.claims import (EXPLAINED, budget_table, claim_table, claims_by_budget, effect_text, p_text,
                                 verdict_text)
from leaderboards.curves import CHECKPOINT_KEY, finish_figure, panel_grid, plot_curves, plot_training
from bench.escape import md_cell, md_code, md_heading, md_text
from leaderboards.export import latex_table
from leaderboards.report import html_report
from leaderboards.stats import METHOD, add_statistics

log = logging.getLogger(__name__)

LONG_COLUMNS = ["row", "column", "task", "metric", "mean", "std", "n", "published", "gap", "status", "reason"]


def store_protocols(store, records: pd.DataFrame) -> dict[str, dict]:
    """Protocol hash -> protocol, for every hash ``records`` name."""
    return {h: store.protocol(h) or {} for h in sorted(set(records["protocol_hash"]) - {""})} if len(records) else {}


def leaderboard_frame(suite: Suite, records: pd.DataFrame,
                      protocols: Mapping[str, dict] | None = None) -> pd.DataFrame:
    """Long frame, in suite row order then column order; rows, and tasks, with no record at all are left out
    (a run of some rows or tasks: ``--rows``, ``--tasks``).

    A task's columns are the same for every row (``[columns]``, else every metric any row produced,
    then the published ones), so a failed row shows up in each of them with its reason; where no
    row produced anything, a failed row still gets one line (metric ""). A cell whose runs' outputs the
    sanity gate found degenerate (:mod:`bench.gates`: constant or collapsed, in any seed) keeps its
    numbers with status ``degenerate`` and the gate's reason. The gate's own records are not columns. A
    column scored from the run's training log (``protocols`` say ``feed = "log"``: D's loss along training)
    reads no output, so the gate does not mark it: a run whose samples collapsed still logged what its
    discriminator did (without ``protocols`` every column is gated).
    """
    logged = {h for h, p in (protocols or {}).items() if p.get("feed") == "log"}
    out = []
    gate_recs = records[records["metric"].astype(str).str.startswith(gates.PREFIX)] if len(records) else records
    records = records[~records["metric"].astype(str).str.startswith(gates.PREFIX)] if len(records) else records
    ok_all = records[records["status"] == "ok"] if len(records) else records
    tasks_run = set(records["task"]) if len(records) else set()
    for row in suite.rows:
        recs = records[records["row"] == row.name] if len(records) else records
        if not len(recs):
            continue                     # not run (e.g. --rows chose others)
        for task in (t for t in suite.suite.tasks if t in tasks_run):
            r_task = recs[recs["task"] == task] if len(recs) else recs
            ok = r_task[r_task["status"] == "ok"] if len(r_task) else r_task
            failed = _current_failures(r_task)
            task_ok = ok_all[ok_all["task"] == task] if len(ok_all) else ok_all
            metrics = _columns_for(suite, task, task_ok, [r.published for r in suite.rows])
            if not metrics and len(failed):
                metrics = [""]
            g_task = gate_recs[(gate_recs["row"] == row.name) & (gate_recs["task"] == task)] if len(gate_recs) \
                else gate_recs
            for metric in metrics:
                vals = ok[ok["metric"] == metric]["value"].astype(float) if len(ok) else pd.Series(dtype=float)
                pub = row.published.get(f"{task}/{metric}")
                mean = float(vals.mean()) if len(vals) else math.nan
                status = "ok" if len(vals) else ("failed" if len(failed) else "missing")
                reason = "; ".join(sorted(set(failed["reason"]))) if len(failed) else ""
                if status == "ok" and not (logged and set(ok[ok["metric"] == metric]["protocol_hash"]) <= logged):
                    seeds = set(ok[ok["metric"] == metric]["seed"])
                    flagged = degenerate_seeds(g_task, metric, seeds)
                    if flagged:
                        status = "degenerate"
                        reason = gates.summary(list(flagged.values()), len(seeds))
                out.append({"row": row.name, "column": f"{task}/{metric}" if metric else task, "task": task,
                            "metric": metric,
                            "mean": mean, "std": float(vals.std(ddof=1)) if len(vals) > 1 else math.nan,
                            "n": int(len(vals)), "published": pub if pub is not None else math.nan,
                            "gap": mean - pub if pub is not None and len(vals) else math.nan,
                            "status": status, "reason": reason})
    return pd.DataFrame(out, columns=LONG_COLUMNS)


def degenerate_seeds(gate_recs: pd.DataFrame, metric: str, seeds: set) -> dict[int, dict[str, float]]:
    """Seed -> the gate's values, for the seeds whose output behind ``metric`` (its ``@output`` suffix, else
    ``y``; at the same ``[eN]`` checkpoint) the gate flagged degenerate."""
    if not len(gate_recs) or not metric:
        return {}
    m = CHECKPOINT_KEY.match(metric)
    base, epoch = (m.group("base"), f"[{m.group('kind')}{m.group('n')}]") if m else (metric, "")
    output = base.partition("@")[2] or "y"
    ok = gate_recs[gate_recs["status"] == "ok"]
    out = {}
    for seed, g in ok.groupby("seed"):
        if seed not in seeds:
            continue
        vals = {}
        for key, v in zip(g["metric"], g["value"]):
            parts = gates.split_key(str(key))
            if parts and parts[1] == output and parts[2] == epoch:
                vals[parts[0]] = float(v)
        if gates.reason(vals):
            out[int(seed)] = vals
    return out


def _current_failures(recs: pd.DataFrame) -> pd.DataFrame:
    """Failed records not superseded by a newer ok record of the same seed (a run re-done since)."""
    if not len(recs):
        return recs
    failed, ok = recs[recs["status"] == "failed"], recs[recs["status"] == "ok"]
    if not len(failed) or not len(ok) or "time" not in recs:
        return failed
    last_ok = ok.groupby("seed")["time"].max()
    keep = [not (seed in last_ok.index and last_ok[seed] >= t) for seed, t in zip(failed["seed"], failed["time"])]
    return failed[keep]


def _columns_for(suite: Suite, task: str, ok: pd.DataFrame, published: list[dict[str, float]]) -> list[str]:
    """``[columns]`` (and the earlier checkpoints' keys of those columns that were scored: curves and budget
    rungs), else every metric scored, then the published ones."""
    if task in suite.columns:
        listed = list(suite.columns[task])
        scored = list(dict.fromkeys(ok["metric"])) if len(ok) else []
        extra = [m for m in scored if m not in listed and (c := CHECKPOINT_KEY.match(str(m))) and c["base"] in listed]
        return listed + extra
    seen = list(dict.fromkeys(ok["metric"])) if len(ok) else []
    for pub in published:
        for key in pub:
            t, _, m = key.partition("/")
            if t == task and m not in seen:
                seen.append(m)
    return seen


def _scorer_of(suite: Suite, task: str, key: str) -> tuple[type | None, str]:
    """The suite's registered scorer of ``task`` that produces ``key`` (its ``[eN]`` suffix and ``@output`` taken
    off), and the bare key; (None, key) when no scorer of the suite makes it."""
    from bench.registry import METRICS
    m = CHECKPOINT_KEY.match(key)
    base, _, out = (m.group("base") if m else key).partition("@")
    for entry in suite.task_metrics(task):
        name, _, output = entry.partition("@")
        if output != out or name not in METRICS:
            continue
        cls = METRICS.get(name)
        if any(base == k or base.startswith(k + "_") for k in getattr(cls, "keys", ())):
            return cls, base
    return None, base


def _registry_higher(suite: Suite, task: str, key: str) -> bool | None:
    """Whether ``key`` of ``task`` is better high, by the suite's scorers in the registry (None: unknown)."""
    cls, base = _scorer_of(suite, task, key)
    if cls is None:
        return None
    return any(base == k or base.startswith(k + "_") for k in getattr(cls, "higher_is_better", ()))


def _registry_range(suite: Suite, task: str, key: str) -> tuple[float | None, float | None] | None:
    """The range of ``key``'s values, by the suite's scorer of ``task`` in the registry (None: unbounded or
    unknown)."""
    cls, base = _scorer_of(suite, task, key)
    fn = getattr(cls, "range_of", None)
    return fn(base) if fn is not None else None


def ranges(suite: Suite, long: pd.DataFrame) -> dict[str, tuple[float | None, float | None]]:
    """Column -> the range its values can take (``Scorer.ranges``), for the columns whose scorer declares one;
    intervals over seeds are clipped to it."""
    out = {}
    for r in long.drop_duplicates("column").itertuples():
        if r.metric:
            rng = _registry_range(suite, r.task, str(r.metric))
            if rng is not None:
                out[r.column] = rng
    return out


def directions(suite: Suite, long: pd.DataFrame, protocols: Mapping[str, dict] | None = None,
               records: pd.DataFrame | None = None) -> dict[str, bool]:
    """Column -> whether higher is better: from the scorers' protocols stamped on the records, else
    from the suite's scorers in the registry (``Scorer.higher_is_better``); lower when unknown."""
    out: dict[str, bool] = {}
    if protocols and records is not None and len(records):
        for (task, metric, h), _ in records.groupby(["task", "metric", "protocol_hash"]):
            p = protocols.get(h) or {}
            if "higher_is_better" in p:                  # an [eN] / [sN] key takes its base key's direction
                m = CHECKPOINT_KEY.match(metric)
                out[f"{task}/{metric}"] = (m.group("base") if m else metric) in p["higher_is_better"]
    for r in long.drop_duplicates("column").itertuples():
        if r.column not in out and r.metric:
            out[r.column] = bool(_registry_higher(suite, r.task, r.metric))
    return out


def rank_agreement(long: pd.DataFrame, higher: Mapping[str, bool] | None = None) -> pd.DataFrame:
    """Per column with >= 3 published rows: Kendall's tau between our values and the paper's, and
    whether the best row (highest or lowest, as the metric says; lowest when unknown) is the same."""
    from scipy.stats import kendalltau
    rows = []
    higher = higher or {}
    for col, g in long.groupby("column", sort=False):
        g = g.dropna(subset=["mean", "published"])
        if len(g) < 3:
            continue
        res = kendalltau(g["mean"], g["published"])
        up = bool(higher.get(col, False))
        best_ours = g.loc[g["mean"].idxmax() if up else g["mean"].idxmin(), "row"]
        best_paper = g.loc[g["published"].idxmax() if up else g["published"].idxmin(), "row"]
        rows.append({"column": col, "rows": len(g), "better": "higher" if up else "lower",
                     "kendall_tau": float(res.statistic), "p_value": float(res.pvalue),
                     "same_best": best_ours == best_paper})
    return pd.DataFrame(rows, columns=["column", "rows", "better", "kendall_tau", "p_value", "same_best"])


SIG_DIGITS = 4


def _sig(v: float, digits: int = SIG_DIGITS, sign: bool = False) -> str:
    """``v`` to ``digits`` significant digits, in fixed-point notation, trailing zeros dropped.

    The rule: round to ``digits`` significant digits (as ``f"{v:.{digits}g}"`` does) and write the
    result without an exponent, dropping trailing zeros and a trailing point; a value whose integer
    part already has ``digits`` digits or more is written as its rounded integer (every integer digit
    kept: 12345.6 -> "12346"). So 0.0007712 -> "0.0007712", 0.8012 -> "0.8012", 0.3 -> "0.3",
    145.4955 -> "145.5", 1234.5 -> "1234" (round half to even), 0 -> "0". Scientific notation
    (``.4g``) only outside 1e-6 <= |v| < 1e15, where fixed point would be unreadable. ``sign``: a
    leading "+" on values >= 0 (the gap column). NaN / inf are written as Python writes them.
    """
    if not math.isfinite(v):
        return f"{v:+}" if sign else str(v)
    plus = "+" if sign and not (v < 0) else ""
    if v == 0:
        return plus + "0"
    exponent = int(f"{v:.{digits - 1}e}".split("e")[1])     # the exponent after rounding
    if exponent < -6 or exponent >= 15:
        return plus + f"{v:.{digits}g}"
    if exponent >= digits - 1:
        return plus + str(round(v))
    s = f"{v:.{digits - 1 - exponent}f}"
    if "." in s:
        s = s.rstrip("0").rstrip(".")
    return plus + s


def _fmt(v: float, std: float = math.nan) -> str:
    """A leaderboard cell: the mean, and `` ± std`` when there is one, each to 4 significant digits
    (the rule of :func:`_sig`), so metrics of every scale (an ESPNet FID of 1e-3, an area of 145)
    keep their digits."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    s = _sig(float(v))
    if std is not None and not math.isnan(std):
        s += f" ± {_sig(float(std))}"
    return s


def wide_table(long: pd.DataFrame, listed: Mapping[str, list[str]] | None = None) -> pd.DataFrame:
    """Human table: one line per row; per column ours (± std), and paper / gap where published. With ``listed``
    (a suite's ``[columns]``), an earlier checkpoint's column appears only where listed by name (the others are
    in the CSV, the curves and the budget section)."""
    cols = list(dict.fromkeys(long["column"]))
    if listed:
        cols = [c for c in cols if not CHECKPOINT_KEY.match(c) or c.partition("/")[2] in listed.get(
            c.partition("/")[0], [c.partition("/")[2]])]
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
            if r["status"] not in ("ok", "degenerate"):
                line[c] = r["status"]
            elif "ci_low" in r and not math.isnan(r["ci_low"]):
                line[c] = (f"{_sig(float(r['mean']))} [{_sig(float(r['ci_low']))}, {_sig(float(r['ci_high']))}] "
                           f"{r['interval']}")
            else:
                line[c] = _fmt(r["mean"], r["std"])
            if r["status"] == "degenerate":
                line[c] += " (degenerate)"
            if has_pub[c]:
                line[f"{c} (paper)"] = _fmt(r["published"])
                flag = "*" if bool(r.get("outside", False)) else ""
                line[f"{c} gap"] = _sig(float(r["gap"]), sign=True) + flag if not math.isnan(r["gap"]) else ""
        table.append(line)
    return pd.DataFrame(table)


def render_markdown(suite: Suite, long: pd.DataFrame, profile: str, protocols: dict[str, str],
                    higher: Mapping[str, bool] | None = None, claims: pd.DataFrame | None = None) -> str:
    s = suite.suite
    lines = [f"# {md_heading(s.title or s.name)}", "",
             f"suite {md_code(s.name)} · profile {md_code(profile)} · dataset {md_code(s.dataset)} · tasks "
             f"{md_text(', '.join(s.tasks))}"]
    if s.reference:
        lines.append(f"reproduces: {md_text(s.reference)}")
    seeds = sorted(set(long["n"])) if len(long) else []
    how = (f"mean [95% Student t interval of the mean] over seeds, its method named in each cell ({METHOD}; "
           "'clipped' where cut to the metric's range); mean ± sample std where there is no interval (one seed)"
           if "ci_low" in long else "mean ± sample std over seeds")
    lines += [f"seeds per cell: {', '.join(map(str, seeds))} ({how}); a gap marked * puts the paper's value "
              "outside our interval", ""]
    wide = wide_table(long, suite.columns)
    wide.columns = [md_cell(c) for c in wide.columns]
    lines.append(wide.map(md_cell).to_markdown(index=False))
    agree = rank_agreement(long, higher if higher is not None else directions(suite, long))
    if len(agree):
        lines += ["", "## Ranking agreement with the paper", "",
                  agree.assign(column=agree["column"].map(md_cell)).to_markdown(index=False, floatfmt=".3f")]
    if claims is None:
        claims = claim_table(suite, long, higher if higher is not None else directions(suite, long))
    if len(claims):
        shown = claims.assign(verdict=[verdict_text(r) for r in claims.to_dict("records")],
                              p=[p_text(v) for v in claims["p"]],
                              effect=[effect_text(r) for r in claims.to_dict("records")])
        lines += ["", "## Published claims", "", EXPLAINED, "",
                  shown[["claim", "source", "ours", "verdict", "p", "effect"]].map(md_cell)
                  .to_markdown(index=False)]
    degenerate = long[long["status"] == "degenerate"].drop_duplicates(["row", "task"])
    if len(degenerate):
        lines += ["", "## Degenerate runs", "", "Their numbers are shown but are not results: the sanity gate "
                  "(constant or collapsed outputs on the test inputs; `bench.gates`) flagged them, and a claim that "
                  "needs them is untestable.", ""]
        lines += [f"- {md_text(r.row, start=True)} / {md_text(r.task)}: {md_text(r.reason)}"
                  for r in degenerate.itertuples()]
    failed = long[long["status"] == "failed"].drop_duplicates(["row", "task"])
    if len(failed):
        lines += ["", "## Failed runs", ""] + [f"- {md_text(r.row, start=True)} / {md_text(r.task)}: "
                                                f"{md_text(r.reason)}" for r in failed.itertuples()]
    if protocols:
        lines += ["", "## Evaluation protocols", ""] + [f"- {md_code(h)}: {md_text(d)}" for h, d in protocols.items()]
    if s.assumptions:
        lines += ["", "## Assumptions", ""] + [f"- {md_text(a, start=True)}" for a in s.assumptions]
    return "\n".join(lines) + "\n"


def plot(long: pd.DataFrame, path: Path, title: str) -> Path | None:
    cols = [c for c in dict.fromkeys(long["column"]) if long[long["column"] == c]["mean"].notna().any()
            and not CHECKPOINT_KEY.match(str(c))]
    if not cols:
        return None
    fig, axes = panel_grid(len(cols), 3.2)
    for ax, c in zip(axes.flat, cols):
        g = long[long["column"] == c]
        xs = range(len(g))
        if "ci_low" in g and g["ci_low"].notna().any():
            err = [(g["mean"] - g["ci_low"]).fillna(0).clip(lower=0),
                   (g["ci_high"] - g["mean"]).fillna(0).clip(lower=0)]
        else:
            err = g["std"].fillna(0)
        ax.bar([x - 0.2 for x in xs], g["mean"], width=0.4, yerr=err, capsize=2, label="ours (95% interval)")
        if g["published"].notna().any():
            ax.bar([x + 0.2 for x in xs], g["published"], width=0.4, label="paper")
            ax.legend(fontsize=7)
        ax.set_title(c, fontsize=9)
        ax.set_xticks(list(xs))
        ax.set_xticklabels(g["row"], rotation=30, ha="right", fontsize=7)
    return finish_figure(fig, axes, len(cols), title, path)


def write_leaderboard(suite: Suite, store, out: Path, profile: str | None = None) -> Path:
    """Write leaderboard.md / .csv / .png for ``suite`` and ``profile`` from ``store``; return the .md path."""
    profile = profile or suite.suite.default_profile
    records = store.latest(suite=suite.name, profile=profile)
    full = store_protocols(store, records)
    long = leaderboard_frame(suite, records, full)
    higher = directions(suite, long, full, records)
    if len(records):
        long = add_statistics(long, records, higher, ranges(suite, long))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    _atomic_text(out / "leaderboard.csv", long.assign(profile=profile).to_csv(index=False))
    failpoints.reached("leaderboard")
    protocols = {h: _describe(p) for h, p in full.items()}
    title = suite.suite.title or suite.name
    final = suite.profile(profile).steps if profile else None
    _draw(lambda p: plot_curves(long, p, f"{title} ({profile}): over training", final_steps=final),
          out / "curves.png")
    _draw(lambda p: plot(long, p, f"{title} ({profile})"), out / "leaderboard.png")
    _draw(lambda p: plot_training(out, [r.name for r in suite.rows], suite.suite.tasks, p,
                                  f"{title} ({profile}): logged over training",
                                  tuple(suite.suite.training_scalars)), out / "training.png")
    md = out / "leaderboard.md"
    claims = claim_table(suite, long, higher, records, ranges(suite, long))
    budget = claims_by_budget(suite, long, higher, records, profile, ranges(suite, long))
    _atomic_text(md, render_markdown(suite, long, profile, protocols, higher, claims) + budget_markdown(budget)
                 + _figures(suite, long, out))
    if len(claims):
        _atomic_text(out / "claims.csv", claims.to_csv(index=False))
    if len(budget):
        _atomic_text(out / "claims_by_budget.csv", budget.to_csv(index=False))
    if len(long):
        _atomic_text(out / "leaderboard.tex", latex_table(long, caption=f"{title} ({profile})"))
    agree = rank_agreement(long, higher)
    _atomic_text(out / "report.html", html_report(suite, long, out, profile, protocols, claims, agree, budget))
    return md


def budget_markdown(budget: pd.DataFrame) -> str:
    """The ``## Claims by training budget`` section (empty without earlier checkpoints)."""
    if not len(budget):
        return ""
    return "\n".join(["", "## Claims by training budget", "",
                      "Each claim judged again (the same test) at every earlier checkpoint its column was scored at: "
                      "epochs (`eval_epochs`) and budget rungs (`bench run --budget`, x = multiple of the profile's "
                      "steps), then at the end. A verdict that holds at every budget does not hang on the training "
                      "length; one that turns says so.", "",
                      budget_table(budget).map(md_cell).to_markdown(index=False), ""])


def _figures(suite: Suite, long: pd.DataFrame, out: Path) -> str:
    """Markdown links to the curves, each row's sample grid (its first seed) and the joint metrics' plots, where
    they exist (in run folders, or where ``bench publish`` copied them)."""
    from leaderboards.report import comparisons, joint_curves, sample_grid
    lines = []
    if len(long) and long["metric"].astype(str).str.match(CHECKPOINT_KEY.pattern).any():
        lines += ["", "## Over training", "", "![curves](curves.png)"]
    for task, png, columns, seed in comparisons(out, list(suite.suite.tasks)):
        lines += ["", f"## Side by side: {md_heading(task)} (seed {seed})", "",
                  f"Columns: {' | '.join(md_text(c) for c in columns)}.", "", f"![{md_text(task, brackets=True)}]"
                  f"({png.name})"]
    grids = []
    for row in dict.fromkeys(long["row"]) if len(long) else []:
        for task in suite.suite.tasks:
            found = sample_grid(out, row, task)
            if found is not None:
                grids.append(f"- {md_text(row, start=True)} / {md_text(task)}: "
                             f"![{md_text(row, brackets=True)}]({found.relative_to(out).as_posix()})")
    if grids:
        lines += ["", "## Samples", ""] + grids
    curves = joint_curves(out)
    if curves:
        lines += ["", "## Joint metrics' curves", ""] + [
            f"- {md_text(cap, start=True)}: ![{md_text(cap, brackets=True)}]({p.relative_to(out).as_posix()})"
            for cap, p in curves]
    return "\n".join(lines) + ("\n" if lines else "")


def _draw(draw, path: Path) -> None:
    """Draw through a temporary file; a failed plot is logged, never raised."""
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.png")
    try:
        if draw(tmp) is not None:
            os.replace(tmp, path)
    except Exception as e:  # noqa: BLE001 - a plot must never lose the table
        log.warning("could not draw %s: %s", path.name, e)
    finally:
        tmp.unlink(missing_ok=True)


def _atomic_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename: a kill leaves the old file or
    the new one, never a torn one."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _describe(protocol: dict | None) -> str:
    if not protocol:
        return "?"
    sc = protocol.get("scorer", {})
    parts = [f"{protocol.get('metric')}",
             f"{protocol.get('num_samples')} test samples at {protocol.get('image_size')} px"]
    if isinstance(sc, dict):
        parts += [f"{k}={v}" for k, v in sc.items() if k != "scorer" and not isinstance(v, (dict, list))]
    return ", ".join(str(p) for p in parts)
