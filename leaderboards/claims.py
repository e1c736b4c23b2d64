"""The paper's claims (``[[claims]]`` of a suite), judged on our seeds by a stated test.

A claim orders rows on one column, best first (``order``: each row is claimed better than the next), or
compares two groups of rows like with like (``groups`` with a ``statistic``: the same statistic of each
group's rows per seed, e.g. the spread of one method's scores across a swept weight against another's; or
``each``: every row of the first group against every row of the second). Every claimed pair is tested
with :func:`leaderboards.stats.compare`: Welch's t-test on the two sides' per-seed values, one-sided in the
claimed direction and in the opposite one, at alpha = 0.05.

Verdicts, always with the direction of the means (``direction``: ``claimed``, ``opposite``, ``mixed``,
``tie``):

- **reproduced**: every pair is better in the claimed direction with p < alpha (an intersection-union
  test: the claim's p is the largest of its pairs' p, valid at alpha without a correction);
- **reversed**: some pair is better in the opposite direction with p < alpha after a Bonferroni correction
  over the claim's pairs (the claim's reverse p is the smallest pair's times the number of pairs);
- **not separated**: neither; ``seeds_needed`` says how many seeds per row the observed difference and
  spread would need for 80% power (the weakest pair's; empty when no number would);
- **untestable**: a row the claim needs is degenerate (constant or collapsed outputs: see
  ``bench.gates``), so the claim is not judged on it (what the test says with those runs' numbers taken as
  they are is shown beside it, ``as scored``, never counted);
- **missing**: a row has no value (failed or not run).
"""

from __future__ import annotations

import math
from typing import Mapping

import pandas as pd

from bench.config import Suite
from bench.schema import slug
from leaderboards.stats import ALPHA, PairTest, clip, compare, describe, interval

VERDICTS = ("reproduced", "not separated", "reversed", "untestable", "missing")
TEST = f"Welch's t-test on per-seed values, one-sided each way, alpha {ALPHA}"
COLUMNS = ["claim", "source", "metric", "better", "order", "ours", "verdict", "direction", "p", "p_reverse",
           "diff", "diff_low", "diff_high", "effect", "seeds_needed", "test", "pairs"]


def _row_name(suite: Suite, r: str) -> str:
    return next((row.name for row in suite.rows if r in (row.name, slug(row.name))), r)


def _ok(records: pd.DataFrame | None, column: str) -> pd.DataFrame | None:
    task, _, metric = column.partition("/")
    if records is None or not len(records):
        return None
    return records[(records["status"] == "ok") & (records["task"] == task) & (records["metric"] == metric)]


def seed_values(records: pd.DataFrame | None, column: str, row: str) -> dict[int, float]:
    """Seed -> value of ``row`` on ``column`` (ok records, the newest per seed)."""
    ok = _ok(records, column)
    if ok is None:
        return {}
    sel = ok[ok["row"] == row]
    if "time" in sel:
        sel = sel.sort_values("time")
    return {int(s): float(v) for s, v in zip(sel["seed"], sel["value"]) if v is not None and not math.isnan(v)}


def group_values(suite: Suite, c, records: pd.DataFrame | None) -> list[list[float]]:
    """Per group of a ``groups`` claim (mean / std / max / min), its statistic over the group's rows for each
    seed where every row of the group has a value."""
    out = []
    for group, stat in zip(c.groups, c.statistic):
        per_row = [seed_values(records, c.metric, _row_name(suite, r)) for r in group]
        seeds = sorted(set.intersection(*(set(v) for v in per_row))) if per_row else []
        vals = []
        for s in seeds:
            x = pd.Series([v[s] for v in per_row], dtype=float)
            vals.append(float(x.std(ddof=1)) if stat == "std" and len(x) > 1 else
                        0.0 if stat == "std" else float(getattr(x, stat)()))
        out.append(vals)
    return out


def _status(long: pd.DataFrame, column: str, row: str) -> str:
    cell = long[(long["column"] == column) & (long["row"] == row)] if len(long) else long
    return str(cell.iloc[0]["status"]) if len(cell) else "missing"


def _shown(label: str, vals: list[float], bounds: tuple | None = None) -> str:
    if not vals:
        return f"{label}: -"
    lo, hi, how = interval(vals)
    lo, hi, _ = clip(lo, hi, bounds)
    mean = sum(vals) / len(vals)
    return f"{label}: {mean:.4g}" + (f" [{lo:.4g}, {hi:.4g}]" if how else "") + f" (n={len(vals)})"


def _pairs(suite: Suite, c, records: pd.DataFrame | None, bounds: tuple | None = None
           ) -> tuple[list[tuple[str, str, list[float], list[float]]], list[str], list[str]]:
    """The claim's tested pairs (label a, label b, a's values, b's values), what is shown per side (a row's
    interval clipped to the metric's ``bounds``, as in the table), and the rows it needs."""
    if not c.groups:
        names = [_row_name(suite, r) for r in c.order]
        vals = {n: list(seed_values(records, c.metric, n).values()) for n in names}
        return ([(a, b, vals[a], vals[b]) for a, b in zip(names, names[1:])],
                [_shown(n, vals[n], bounds) for n in names], names)
    needed = [_row_name(suite, r) for g in c.groups for r in g]
    if c.statistic[0] == "each":
        g1, g2 = ([_row_name(suite, r) for r in g] for g in c.groups)
        vals = {n: list(seed_values(records, c.metric, n).values()) for n in needed}
        return ([(a, b, vals[a], vals[b]) for a in g1 for b in g2],
                [_shown(n, vals[n], bounds) for n in dict.fromkeys(needed)], needed)
    sides = group_values(suite, c, records)
    labels = [f"{st} of ({', '.join(g)})" for g, st in zip(c.groups, c.statistic)]
    shown = [_shown(f"{st} of {len(g)} rows", v, (0.0, None) if st == "std" else bounds)
             for g, st, v in zip(c.groups, c.statistic, sides)]
    return [(labels[0], labels[1], sides[0], sides[1])], shown, needed


def judge(tests: list[PairTest], alpha: float = ALPHA) -> dict:
    """A claim's verdict, p-values, direction and effect from its pair tests (see the module docstring)."""
    k = len(tests)
    p = max(t.p for t in tests)
    p_rev = min(1.0, k * min(t.p_reverse for t in tests))
    leans = {t.means_favour for t in tests}
    direction = ("tie" if leans == {"tie"} else "claimed" if leans == {"a"} else "opposite" if leans == {"b"}
                 else "mixed")
    if any(math.isnan(t.p) for t in tests):
        verdict = "not separated"
        p, p_rev = math.nan, math.nan
    else:
        verdict = "reproduced" if p < alpha else "reversed" if p_rev < alpha else "not separated"
    weakest = max(tests, key=lambda t: (2.0 if math.isnan(t.p) else t.p, -t.diff))
    needs = [t.seeds_needed for t in tests if t.outcome == "not separated"]
    seeds = (max(needs) if needs and all(n is not None for n in needs) else None) if verdict == "not separated" \
        else None
    return {"verdict": verdict, "direction": direction, "p": p, "p_reverse": p_rev, "diff": weakest.diff,
            "diff_low": weakest.diff_low, "diff_high": weakest.diff_high, "effect": weakest.effect,
            "seeds_needed": seeds}


def as_scored(j: Mapping) -> str:
    """What the test says with the degenerate runs' numbers taken as they are: shown beside *untestable* for
    the reader (a collapse on the side a claim calls worse may be the failure the paper reports), never
    counted as a verdict."""
    v = j["verdict"]
    p = j["p"] if v == "reproduced" else j["p_reverse"] if v == "reversed" else None
    lean = {"claimed": "claimed way", "opposite": "other way"}.get(j["direction"], j["direction"])
    return (f"; as scored, the degenerate runs counted: {v}" + (f" (p {p_text(p)})" if p is not None else
                                                             f" ({lean})" if v == "not separated" else ""))


def judge_claim(suite: Suite, c, long: pd.DataFrame, higher: Mapping[str, bool], records: pd.DataFrame | None,
                bounds: Mapping[str, tuple] | None = None) -> dict:
    """One claim's line of :func:`claim_table`."""
    up = c.better == "higher" if c.better else bool(higher.get(c.metric, False))
    order = (" > ".join(f"{st}({', '.join(g)})" for g, st in zip(c.groups, c.statistic)) if c.groups
             else " > ".join(c.order))
    pairs, shown, needed = _pairs(suite, c, records, (bounds or {}).get(c.metric))
    line = {"claim": c.text, "source": c.source, "metric": c.metric, "better": "higher" if up else "lower",
            "order": order, "ours": "; ".join(shown), "test": TEST}
    statuses = {n: _status(long, c.metric, n) for n in dict.fromkeys(needed)}
    degenerate = [n for n, s in statuses.items() if s == "degenerate"]
    absent = [n for n, s in statuses.items() if s not in ("ok", "degenerate")]
    if absent or any(not a or not b for _, _, a, b in pairs):
        return line | {"verdict": "missing", "direction": "",
                       "pairs": "no values for " + ", ".join(absent or [n for n in statuses])}
    tests = [compare(a, b, up) for _, _, a, b in pairs]
    if degenerate:
        return line | {"verdict": "untestable", "direction": "",
                       "pairs": "degenerate: " + ", ".join(degenerate) + " (see the leaderboard's degenerate runs)"
                                + as_scored(judge(tests))}
    line |= judge(tests)
    line["pairs"] = "; ".join(f"{la} vs {lb}: {t.outcome}, {describe(t, la, lb)}"
                              for (la, lb, _, _), t in zip(pairs, tests))
    return line


def claim_table(suite: Suite, long: pd.DataFrame, higher: Mapping[str, bool],
                records: pd.DataFrame | None = None, bounds: Mapping[str, tuple] | None = None) -> pd.DataFrame:
    """Every ``[[claims]]`` entry judged on the per-seed ``records``; ``long`` (the leaderboard frame) says
    which cells are degenerate, failed or missing; ``bounds`` (column -> range) clips the rows' intervals
    shown, as in the table."""
    rows = [judge_claim(suite, c, long, higher, records, bounds) for c in suite.claims]
    return pd.DataFrame(rows, columns=COLUMNS)


BUDGET_COLUMNS = ["claim", "point", "label", "steps", "verdict", "direction", "p", "p_reverse", "diff", "diff_low",
                  "diff_high", "seeds_needed"]


def claims_by_budget(suite: Suite, long: pd.DataFrame, higher: Mapping[str, bool], records: pd.DataFrame | None,
                     profile: str, bounds: Mapping[str, tuple] | None = None) -> pd.DataFrame:
    """Each claim judged again at every earlier checkpoint its column was scored at (``[e<N>]`` epochs,
    ``[s<N>]`` budget rungs) and at the last: would the verdict hold with less (or more) training? Claims
    pinned to one checkpoint already (a ``[eN]`` metric) are left out; so is a claim scored at one point only."""
    import dataclasses
    from bench.config import LADDER_MARK, parse_ladder
    from leaderboards.curves import CHECKPOINT_KEY
    prof = suite.profile(profile)
    base_steps = suite.profile(parse_ladder(profile)[0]).steps if LADDER_MARK in profile else 0
    columns = set(long["column"]) if len(long) else set()
    out = []
    for c in suite.claims:
        if CHECKPOINT_KEY.match(c.metric):
            continue
        points = []
        for col in columns:
            m = CHECKPOINT_KEY.match(col)
            if m and m.group("base") == c.metric:
                n = int(m.group("n"))
                steps = n if m.group("kind") == "s" else None
                label = f"step {n}" if steps is not None else f"epoch {n}"
                points.append(((m.group("kind") == "s", n), col, label, steps))
        if not points:
            continue
        points.sort()
        points.append(((True, prof.steps), c.metric, f"end, step {prof.steps}", prof.steps))
        for _, col, label, steps in points:
            if steps is not None and base_steps:         # a ladder: the rung as a multiple of the base profile
                label += f" (x{steps / base_steps:.3g})"
            at = dataclasses.replace(c, metric=col)
            up = higher.get(col, higher.get(c.metric, False))
            line = judge_claim(suite, at, long, {col: up}, records, bounds)
            out.append({"claim": c.text, "point": col, "label": label, "steps": steps,
                        **{k: line.get(k) for k in BUDGET_COLUMNS[4:]}})
    return pd.DataFrame(out, columns=BUDGET_COLUMNS)


def verdict_text(r: Mapping) -> str:
    """The verdict as a reader needs it: untestable says which row; not separated says which way the means
    point and how many seeds would separate them."""
    v = str(r.get("verdict", ""))
    if v == "untestable":
        return f"untestable ({r.get('pairs', '')})"
    if v == "not separated":
        lean = {"claimed": "means in the claimed order", "opposite": "means the other way",
                "mixed": "means mixed", "tie": "equal means"}.get(str(r.get("direction", "")), "")
        seeds = r.get("seeds_needed")
        need = (f"; ~{int(seeds)} seeds per row would separate it" if seeds is not None and not
                (isinstance(seeds, float) and math.isnan(seeds)) else "")
        return f"not separated ({lean}{need})" if lean else v
    return v


EXPLAINED = (
    "Each claim is tested on our per-seed values with Welch's t-test, one-sided in the claimed direction and in "
    "the opposite one, at alpha 0.05: *reproduced* when the claimed direction has p < 0.05 (for a claim over "
    "several pairs, every pair: p is the largest), *reversed* when the opposite direction has p < 0.05 "
    "(Bonferroni over the pairs), *not separated* otherwise, with the direction of the means and the seeds per "
    "row that the observed difference and spread would need for 80% power; *untestable* when a row it needs is "
    "degenerate. p is the claimed direction's; effect is the difference of the means in the claimed direction "
    "(positive: as claimed) with its 90% Welch interval, whose ends are the one-sided 95% bounds: reproduced "
    "exactly when it lies above 0, reversed when below.")


def _nan(v) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def p_text(p) -> str:
    """A p-value to two significant digits ("<1e-4" below that); "" when there is none."""
    if _nan(p):
        return ""
    return f"{float(p):.2g}" if float(p) >= 1e-4 else "<1e-4"


def effect_text(r: Mapping) -> str:
    """The difference of the means in the claimed direction with its 90% Welch interval, e.g. "+0.21 [0.05, 0.37]"."""
    d = r.get("diff")
    if _nan(d):
        return ""
    lo, hi = r.get("diff_low"), r.get("diff_high")
    ci = f" [{float(lo):.4g}, {float(hi):.4g}]" if not _nan(lo) and not _nan(hi) else ""
    return f"{float(d):+.4g}{ci}"


def budget_cell(r: Mapping) -> str:
    """One claim at one training point: the verdict, with p for a verdict and the means' way for a not separated."""
    v = str(r["verdict"])
    if v in ("reproduced", "reversed"):
        return f"{v} (p {p_text(r['p'] if v == 'reproduced' else r['p_reverse'])})"
    if v == "not separated":
        return {"claimed": "not separated, claimed way", "opposite": "not separated, other way"}.get(
            str(r["direction"]), "not separated")
    return v


def budget_table(budget: pd.DataFrame) -> pd.DataFrame:
    """Claims x training points (:func:`budget_cell`)."""
    labels = list(dict.fromkeys(budget["label"]))
    table = (budget.assign(cell=[budget_cell(r) for r in budget.to_dict("records")])
             .pivot_table(index="claim", columns="label", values="cell", aggfunc="first", sort=False))
    return table.reindex(columns=labels).reset_index()
