"""One self-contained HTML report per suite run (``report.html``): the table with intervals and the
paper's values, the paper's claims, the ours-vs-paper chart, curves over training, the logged losses,
a sample grid per row, the failed runs, the protocols and the assumptions. Every picture is embedded
(base64), so the file can be mailed or committed and never has a broken link.
"""

from __future__ import annotations

import base64
import html
import math
from pathlib import Path
from typing import Iterable

import pandas as pd

from bench.config import Suite
from bench.grids import comparison_captions, comparison_file
from bench.schema import slug
from leaderboards.claims import EXPLAINED, budget_table, effect_text, p_text, verdict_text
from leaderboards.curves import CHECKPOINT_KEY

CSS = """body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1200px;color:#222}
table{border-collapse:collapse;font-size:13px;margin:1em 0}th,td{border:1px solid #ccc;padding:3px 7px;text-align:right}
th{background:#f2f2f2}td:first-child,th:first-child{text-align:left}.reproduced{background:#dff0d8}
.reversed{background:#f2dede}.notseparated{background:#eeeeee}.untestable{background:#fcf8e3}
.degenerate{color:#8a6d3b;font-style:italic}.outside{color:#a94442;font-weight:bold}
img{max-width:100%;border:1px solid #ddd;margin:4px 0}figure{display:inline-block;margin:6px;vertical-align:top}
figcaption{font-size:12px;color:#555}code{font-size:12px}img.grid{width:min(100%,420px);image-rendering:pixelated}
.best{font-weight:bold;background:#eef5fc}.scroll{overflow-x:auto;max-width:100%}"""


def sample_grid(out: Path, row: str, task: str) -> Path | None:
    """A row's sample grid for ``task``: its first seed's in a run folder (``runs/<row>/seed<k>/<task>/``), else
    the one ``bench publish`` copied (``samples/<row>__<task>.png``)."""
    def seed_no(p: Path) -> int:
        digits = p.parts[-3].removeprefix("seed")
        return int(digits) if digits.isdigit() else 1 << 30
    found = sorted((Path(out) / "runs" / slug(row)).glob(f"seed*/{task}/samples.png"), key=seed_no)
    if found:
        return found[0]
    published = Path(out) / "samples" / f"{slug(row)}__{task}.png"
    return published if published.is_file() else None


def comparisons(out: Path, tasks: list[str]) -> list[tuple[str, Path, list[str], int]]:
    """(task, picture, column captions, seed) of each task's side-by-side comparisons where they exist (written
    by the run and copied by ``bench publish``): the first seed's ``comparison-<task>.png``, then the other seeds'
    ``comparison-<task>-seed<k>.png`` in seed order."""
    def seed_no(p: Path) -> int:
        digits = p.stem.rpartition("-seed")[2]
        return int(digits) if digits.isdigit() else 1 << 30
    found = []
    for task in tasks:
        pngs = [Path(out) / comparison_file(task)]
        pngs += sorted(Path(out).glob(f"{Path(comparison_file(task)).stem}-seed*.png"), key=seed_no)
        for png in pngs:
            meta = comparison_captions(png) if png.is_file() else None
            if meta is not None:
                found.append((task, png, *meta))
    return found


def joint_curves(out: Path) -> list[tuple[str, Path]]:
    """(caption, file) of the joint metrics' plots (NRDS curves): the first seed's in ``joint/seed<k>/<task>/``,
    else those ``bench publish`` copied (``joint/<task>__<name>.png``)."""
    out = Path(out)
    found: dict[tuple[str, str], Path] = {}
    for png in sorted(out.glob("joint/seed*/*/*.png"),
                      key=lambda f: (int(f.parts[-3][4:]) if f.parts[-3][4:].isdigit() else 1 << 30, f.as_posix())):
        found.setdefault((png.parts[-2], png.stem), png)
    for png in sorted(out.glob("joint/*__*.png")):
        task, _, stem = png.stem.partition("__")
        found.setdefault((task, stem), png)
    return [(f"{task}, {stem}", p) for (task, stem), p in found.items()]


def _img(path: Path, alt: str, cls: str = "") -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode()
    css = f' class="{cls}"' if cls else ""
    return f'<img{css} alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def _num(v: float) -> str:
    return "" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.4g}"


ARROWS = {"higher": "\u2191", "lower": "\u2193"}


def best_rows(long: pd.DataFrame, column: str, skip: Iterable[str] = ()) -> set[str]:
    """The rows with the best mean of ``column`` (by its ``better`` direction; ties all marked), among the
    scored, non-degenerate rows not in ``skip`` (oracles); none where the column has no direction."""
    g = long[(long["column"] == column) & (long["status"] == "ok") & ~long["row"].isin(list(skip))]
    g = g[g["mean"].notna()]
    if not len(g) or "better" not in g or g["better"].iloc[0] not in ARROWS:
        return set()
    best = g["mean"].max() if g["better"].iloc[0] == "higher" else g["mean"].min()
    return set(g[g["mean"] == best]["row"])


def table_html(long: pd.DataFrame, claim_columns: Iterable[str] = (), oracle_rows: Iterable[str] = ()) -> str:
    """The results table: each column's header says whether higher or lower is better (arrow and tooltip), the
    best model row of each column is bold (oracle rows are not ranked), and the earlier-checkpoint columns that
    a claim is judged on are shown beside the final ones."""
    claimed = set(claim_columns)
    cols = [c for c in dict.fromkeys(long["column"]) if not CHECKPOINT_KEY.match(c) or c in claimed]
    has_pub = {c: long[long["column"] == c]["published"].notna().any() for c in cols}
    better = {c: str(long[long["column"] == c]["better"].iloc[0]) if "better" in long else "" for c in cols}
    best = {c: best_rows(long, c, oracle_rows) for c in cols}

    def th(c: str) -> str:
        arrow = ARROWS.get(better[c], "")
        tip = f' title="{better[c]} is better"' if arrow else ""
        return f"<th{tip}>{html.escape(c)}{' ' + arrow if arrow else ''}</th>"
    head = "".join(th(c) + ("<th>paper</th>" if has_pub[c] else "") for c in cols)
    body = []
    for row, g in long.groupby("row", sort=False):
        cells = [f"<td>{html.escape(str(row))}</td>"]
        for c in cols:
            hit = g[g["column"] == c]
            if not len(hit):
                cells.append("<td></td>" + ("<td></td>" if has_pub[c] else ""))
                continue
            r = hit.iloc[0]
            if r["status"] not in ("ok", "degenerate"):
                cells.append(f'<td title="{html.escape(str(r["reason"]))}">{html.escape(str(r["status"]))}</td>')
            else:
                ci = ""
                if "ci_low" in r and not math.isnan(r["ci_low"]):
                    ci = f" <small>[{_num(r['ci_low'])}, {_num(r['ci_high'])}]</small>"
                if ci and r.get("interval"):
                    ci += f" <small>{html.escape(str(r['interval']))}</small>"
                classes = (["outside"] if bool(r.get("outside", False)) else []) + (["best"] if row in best[c] else [])
                cls = f' class="{" ".join(classes)}"' if classes else ""
                if r["status"] == "degenerate":
                    cls = f' class="degenerate" title="{html.escape(str(r["reason"]))}"'
                    ci += " <small>degenerate</small>"
                cells.append(f"<td{cls}>{_num(r['mean'])}{ci} <small>n={int(r['n'])}</small></td>")
            if has_pub[c]:
                cells.append(f"<td>{_num(r['published'])}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<div class='scroll'><table><tr><th>row</th>{head}</tr>{''.join(body)}</table></div>"


def claims_html(claims: pd.DataFrame) -> str:
    if not len(claims):
        return ""
    rows = "".join(
        f'<tr class="{str(c["verdict"]).replace(" ", "")}"><td>{html.escape(str(c["claim"]))}</td>'
        f'<td>{html.escape(str(c["source"]))}</td><td>{html.escape(str(c["ours"]))}</td>'
        f'<td>{html.escape(verdict_text(c))}</td><td>{html.escape(p_text(c.get("p")))}</td>'
        f'<td>{html.escape(effect_text(c))}</td></tr>' for c in claims.to_dict("records"))
    return (f"<h2>The paper's claims</h2><p>{html.escape(EXPLAINED).replace('*', '')}</p>"
            "<table><tr><th>claim</th><th>source</th><th>ours</th><th>verdict</th><th>p</th><th>effect</th></tr>"
            f"{rows}</table>")


def html_report(suite: Suite, long: pd.DataFrame, out: Path, profile: str, protocols: dict[str, str],
                claims: pd.DataFrame, agree: pd.DataFrame, budget: pd.DataFrame | None = None) -> str:
    s = suite.suite
    out = Path(out)
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(s.title or s.name)}</title>"
             f"<style>{CSS}</style></head><body>",
             f"<h1>{html.escape(s.title or s.name)}</h1>",
             f"<p>suite <code>{html.escape(s.name)}</code> · profile <code>{html.escape(profile)}</code> · dataset "
             f"<code>{html.escape(s.dataset)}</code> · tasks {html.escape(', '.join(s.tasks))}</p>"]
    if s.reference:
        parts.append(f"<p>reproduces: {html.escape(s.reference)}</p>")
    parts += ["<h2>Results</h2><p>Ours: mean over seeds with its 95% Student t interval of the mean (t95; "
              "'clipped' where cut to the metric's range); \u2191 / \u2193: higher / lower is better; bold: the "
              "best model row of a column; red: the paper's value lies outside our interval; "
              "italic: a degenerate run (constant or collapsed outputs), shown but not a result.</p>",
              table_html(long, [c.metric for c in suite.claims], [r.name for r in suite.rows if r.kind != "model"])]
    parts.append(claims_html(claims))
    if budget is not None and len(budget):
        parts += ["<h2>Claims by training budget</h2><p>Each claim judged again at every earlier checkpoint its "
                  "column was scored at (epochs; budget rungs: x = multiple of the profile's steps), then at the "
                  "end.</p>", budget_table(budget).to_html(index=False, escape=True)]
    if len(agree):
        parts += ["<h2>Ranking agreement with the paper</h2>", agree.to_html(index=False, float_format="%.3f")]
    published = bool(len(long)) and long["published"].notna().any()
    for name, title in (("leaderboard.png", "Ours vs the paper" if published else "Ours, by row"),
                        ("curves.png", "Over training"), ("training.png", "Logged losses")):
        if (out / name).is_file():
            parts += [f"<h2>{title}</h2>", _img(out / name, title)]
    for task, png, columns, seed in comparisons(out, list(s.tasks)):
        parts += [f"<h2>Side by side: {html.escape(task)} (seed {seed})</h2>",
                  f"<figure>{_img(png, f'{task}: side by side', 'grid')}<figcaption>columns: "
                  f"{html.escape(' | '.join(columns))}</figcaption></figure>"]
    grids = []
    for row in dict.fromkeys(long["row"]) if len(long) else []:
        for task in s.tasks:
            found = sample_grid(out, row, task)
            if found is not None:
                seed = f" ({found.parts[-3]})" if found.name == "samples.png" else " (first seed)"
                grids.append(f"<figure>{_img(found, f'{row} / {task}', 'grid')}<figcaption>{html.escape(row)} / "
                             f"{html.escape(task)}{seed}</figcaption></figure>")
    if grids:
        parts += ["<h2>Samples</h2>"] + grids
    curves = joint_curves(out)
    if curves:
        parts += ["<h2>Joint metrics' curves</h2>"] + [
            f"<figure>{_img(p, cap)}<figcaption>{html.escape(cap)}</figcaption></figure>" for cap, p in curves]
    degenerate = long[long["status"] == "degenerate"].drop_duplicates(["row", "task"]) if len(long) else long
    if len(degenerate):
        parts += ["<h2>Degenerate runs</h2><ul>"] + [f"<li>{html.escape(f'{r.row} / {r.task}: {r.reason}')}</li>"
                                                     for r in degenerate.itertuples()] + ["</ul>"]
    failed = long[long["status"] == "failed"].drop_duplicates(["row", "task"]) if len(long) else long
    if len(failed):
        parts += ["<h2>Failed runs</h2><ul>"] + [f"<li>{html.escape(f'{r.row} / {r.task}: {r.reason}')}</li>"
                                                 for r in failed.itertuples()] + ["</ul>"]
    if protocols:
        parts += ["<h2>Evaluation protocols</h2><ul>"] + [f"<li><code>{h}</code>: {html.escape(d)}</li>"
                                                          for h, d in protocols.items()] + ["</ul>"]
    if s.assumptions:
        parts += ["<h2>Assumptions</h2><ul>"] + [f"<li>{html.escape(a)}</li>" for a in s.assumptions] + ["</ul>"]
    parts.append("</body></html>")
    return "\n".join(parts)
