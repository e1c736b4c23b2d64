"""Tables to put in a paper: a LaTeX (booktabs) version of the leaderboard.

One line per row; per column our mean with its 95% interval half-width (``0.412 \\pm 0.013``) and,
where published, the paper's value in parentheses. The best of our means in each column (by the
metric's direction) is bold. Needs ``\\usepackage{booktabs}``.
"""

from __future__ import annotations

import math

import pandas as pd

from leaderboards.curves import CHECKPOINT_KEY
from bench.escape import latex_text as escape   # row names, column labels, the caption


def _num(v: float) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    a = abs(v)
    if a == 0 or 1e-3 <= a < 1e5:
        digits = max(0, 3 - int(math.floor(math.log10(a)))) if a else 3
        return f"{v:.{digits}f}"
    return f"{v:.3g}"


def latex_table(long: pd.DataFrame, caption: str = "", columns: list[str] | None = None) -> str:
    """A booktabs ``tabular`` (in a ``table``) of the long frame's ok cells."""
    cols = columns or [c for c in dict.fromkeys(long["column"]) if not CHECKPOINT_KEY.match(c)]
    lines = [r"\begin{table}[t]", r"\centering", r"\begin{tabular}{l" + "c" * len(cols) + "}", r"\toprule",
             " & ".join(["Row", *(escape(c.split("/", 1)[-1]) for c in cols)]) + r" \\", r"\midrule"]
    best = {}
    for c in cols:
        g = long[(long["column"] == c) & (long["status"] == "ok")]
        if len(g):
            up = "better" in g and (g["better"] == "higher").any()
            best[c] = g.loc[g["mean"].idxmax() if up else g["mean"].idxmin(), "row"]
    for row, g in long.groupby("row", sort=False):
        cells = [escape(row)]
        for c in cols:
            hit = g[g["column"] == c]
            if not len(hit) or hit.iloc[0]["status"] != "ok":
                cells.append(escape(hit.iloc[0]["status"]) if len(hit) else "")
                continue
            r = hit.iloc[0]
            s = _num(r["mean"])
            if "ci_low" in r and not math.isnan(r["ci_low"]):
                s += rf" $\pm$ {_num((r['ci_high'] - r['ci_low']) / 2)}"
            if best.get(c) == row:
                s = rf"\textbf{{{s}}}"
            if not math.isnan(r["published"]):
                s += f" ({_num(r['published'])})"
            cells.append(s)
        lines.append(" & ".join(cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    if caption:
        lines.append(rf"\caption{{{escape(caption)}}}")
    lines.append(r"\end{table}")
    return "\n".join(lines) + "\n"
