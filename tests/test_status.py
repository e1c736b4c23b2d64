"""The status page a reviewer trusts: it counts the papers' tables and figures (not suites), shows substitutes
as substitutes, states each result's budget as a share of the paper's, gives a not-separated claim's
direction, and never averages across metrics of different units; index.html says the same, escaped.
Hand-made result folders; seconds."""

from __future__ import annotations

import html
import re
from pathlib import Path

import pandas as pd
import pytest

from bench.config import load_suite, parse_suite
from bench.errors import ConfigError
from leaderboards.status import budget_share, collect, item_states, write_status


def _suite(name: str, profiles: dict | None = None, dataset: str = "synthetic-scenes", task: str = "photo2depth",
           rows: list | None = None, **meta) -> object:
    profiles = profiles or {"cpu": {"steps": 30, "batch_size": 2, "image_size": 64}}
    return parse_suite({"suite": {"name": name, "dataset": dataset, "tasks": [task],
                                  "default_profile": next(iter(profiles)), **meta}, "profiles": profiles,
                        "rows": rows or [{"name": "A", "discriminator": "patchgan"}]}, source=f"{name}.toml")


def _board(folder: Path, cells: list[tuple[str, str, float | None, float | None, bool]], profile: str) -> None:
    """cells: (row, column, published, gap, outside)."""
    folder.mkdir(parents=True)
    pd.DataFrame([{"row": r, "column": c, "mean": 1.0, "n": 3, "published": p, "gap": g, "status": "ok",
                   "outside": o, "profile": profile} for r, c, p, g, o in cells]).to_csv(folder / "leaderboard.csv",
                                                                                         index=False)


NEW_CLAIMS = pd.DataFrame([
    {"claim": "A beats B", "verdict": "reproduced", "direction": "claimed", "seeds_needed": "", "pairs": "A vs B"},
    {"claim": "A <b>beats</b> C & D", "verdict": "not separated", "direction": "opposite", "seeds_needed": "12",
     "pairs": "A vs C"},
    {"claim": "C beats D", "verdict": "untestable", "direction": "", "seeds_needed": "",
     "pairs": "degenerate: D (see the leaderboard's degenerate runs)"}])
OLD_CLAIMS = pd.DataFrame([{"claim": "E beats F", "source": "Table 3", "metric": "photo2depth/rel", "better": "lower",
                            "order": "E > F", "ours": "E: 1; F: 2", "verdict": "not separated",
                            "pairs": "not separated"}])


@pytest.fixture
def page(tmp_path):
    """p1: Table 2 on its data (result), Table 3 on a substitute (result) and on its data (none), a worked
    example (result); p2: Figs. 4 and 5 (none); quickstart-like synthetic suite (result)."""
    real = _suite("real-t2", {"smoke": {"steps": 4, "batch_size": 1, "image_size": 32},
                              "cpu": {"steps": 30, "batch_size": 2, "image_size": 64}},
                  paper="p1", paper_items=["Table 2"], paper_steps=1000, paper_batch_size=4,
                  paper_image_size=256, paper_budget="1000 steps at batch 4 (paper text)")
    sub = _suite("sub-t3", paper="p1", paper_items=["Table 3"], substitute="MNIST for UTKFace", paper_steps=300,
                 paper_batch_size=1)
    real3 = _suite("real-t3", {"short": {"steps": 1}}, dataset="cityscapes", task="photo2labels", paper="p1",
                   paper_items=["Table 3"])
    figs = _suite("figs", paper="p2", paper_items=["Fig. 5", "Fig. 4"])
    toy = _suite("toy", {"cpu": {"steps": 0}}, "gaussians-2d", "points", paper="p1", method="gaussian",
                 rows=[{"name": "A", "options": {"mean": [0.5, 0.0], "stream": "fake_close"}}])
    quick = _suite("quick", title="Synthetic <scenes> & co")
    # real-t2: two published columns of different units; a cross-unit mean would be (0.01 + 0.05 + 2) / 3
    _board(tmp_path / "real-t2" / "cpu", [("A", "photo2depth/rel", 0.30, 0.01, False),
                                          ("B", "photo2depth/rel", 0.20, 0.05, True),
                                          ("A", "photo2depth/rms", 5.0, -2.0, True),
                                          ("B", "photo2depth/rms", None, None, False)], "cpu")
    NEW_CLAIMS.to_csv(tmp_path / "real-t2" / "cpu" / "claims.csv", index=False)
    # a budget ladder beside it (bench run --budget 1,3): its claims by budget, one claim of which it did not run
    _board(tmp_path / "real-t2" / "cpu@x1-3", [("A", "photo2depth/rel", 0.30, 0.01, False)], "cpu@x1-3")
    pd.DataFrame([{"claim": c, "label": lab, "verdict": v, "direction": d, "p": p, "p_reverse": pr}
                  for c, lab, v, d, p, pr in [("A beats B", "step 30 (x1)", "reversed", "opposite", 0.99, 0.004),
                                              ("A beats B", "end, step 90 (x3)", "not separated", "claimed", 0.2, 0.8),
                                              ("A beats C", "step 30 (x1)", "missing", "", None, None),
                                              ("A beats C", "end, step 90 (x3)", "missing", "", None, None)]]
                 ).to_csv(tmp_path / "real-t2" / "cpu@x1-3" / "claims_by_budget.csv", index=False)
    _board(tmp_path / "sub-t3" / "cpu", [("E", "photo2depth/rel", None, None, False)], "cpu")
    OLD_CLAIMS.to_csv(tmp_path / "sub-t3" / "cpu" / "claims.csv", index=False)
    _board(tmp_path / "toy" / "cpu", [("A", "photo2depth/rel", 0.5, 0.1, True)], "cpu")
    _board(tmp_path / "quick" / "cpu", [("A", "photo2depth/rel", None, None, False)], "cpu")
    suites = [real, sub, real3, figs, toy, quick]
    write_status(suites, tmp_path, {"cityscapes": False})
    results = collect(suites, tmp_path, {"cityscapes": False})
    return {"results": results, "md": (tmp_path / "README.md").read_text(),
            "html": (tmp_path / "index.html").read_text(), "suites": suites}


def test_it_counts_tables_and_figures_not_suites(page):
    assert item_states(page["results"]) == {"p1": {"Table 2": "paper", "Table 3": "substitute"},
                                            "p2": {"Fig. 5": "none", "Fig. 4": "none"}}
    md = page["md"]
    assert ("Tables and figures with a suite: 4, of 2 papers. With a committed result on the paper's data: 1 (at the "
            "budgets below); only on a substitute: 1; none: 2.") in md
    assert "| `p1` | 2: Tables 2, 3 | 1: Table 2 | 1: Table 3 | 0 |" in md
    assert "| `p2` | 2: Figs. 4, 5 | 0 | 0 | 2: Figs. 4, 5 |" in md
    assert ("Not counted (no table or figure of a paper): toy (p1: a worked example in its text, not a table or "
            "figure); quick (not from a paper).") in md
    assert "| `sub-t3` | p1: Table 3 | substitute: MNIST for UTKFace |" in md
    assert "dataset 'cityscapes' is not on these machines; no cpu profile (profiles: short): run on a GPU" in md


def test_budget_share_against_a_hand_computed_case(page):
    real, sub = page["suites"][:2]
    # 30 steps x batch 2 = 60 samples against the paper's 1000 x 4 = 4000: 1.5%; the folder's profile is cpu, not
    # the suite's default (smoke: 4 x 1 would give 0.1%)
    assert budget_share(real, "cpu", detail=True) == \
        "1.5% of the paper's steps x batch (30 x 2 vs 1000 x 4), 64 px vs 256 px"
    assert "| cpu: 1.5% of the paper's steps x batch (30 x 2 vs 1000 x 4), 64 px vs 256 px | 2 x 3 |" in page["md"]
    assert budget_share(sub, "cpu") == "20.0% of the paper's steps x batch, 64 px (the paper's size is not published)"
    no_batch = _suite("nb", paper="p", paper_items=["Table 1"], paper_steps=120)
    assert budget_share(no_batch, "cpu") == ("25.0% of the paper's steps (its batch size is not published), 64 px "
                                             "(the paper's size is not published)")
    assert budget_share(_suite("u", paper="p", paper_items=["Table 1"]), "cpu").startswith(
        "the paper's steps are not published, 64 px")
    assert budget_share(page["suites"][4], "cpu") == "no training (fixed models)"
    # a suite of the bench's own (a zoo) has no paper to share a budget with: it says so, with its own budget
    assert budget_share(_suite("zoo"), "cpu") == "not from a paper, no published budget (ours: 30 x 2, 64 px)"
    assert "unknown" in budget_share(real, "full")
    assert "| `p1` | Table 2 | 1000 steps at batch 4 (paper text) |" in page["md"]       # the denominators' source
    assert "| `p1` | Table 3 | not stated in the suite file |" in page["md"]


def test_verdicts_say_which_way_the_means_point(page):
    md = page["md"]
    assert "| A beats B | reproduced | cpu: 1.5% of the paper's steps x batch, 64 px vs 256 px |" in md
    assert "not separated, means the other way (~12 seeds per row would separate it)" in md
    assert "untestable: a row it needs is degenerate: D (see the leaderboard's degenerate runs)" in md
    assert "| E beats F | not separated, direction not recorded |" in md        # an old-format claims.csv
    assert "1 of 3 reproduced, 1 not separated (1 means the other way), 1 untestable" in md
    assert ("Claims on the paper's data: 1 of 3 reproduced, 1 not separated (1 means the other way), 1 untestable. "
            "Claims on substitutes: 0 of 1 reproduced, 1 not separated (1 direction not recorded). "
            "Claims elsewhere: none tested.") in md


def test_no_average_across_metrics_of_different_units(page):
    for text in (page["md"], page["html"]):
        assert "0.6867" not in text and "0.687" not in text and "over 3 cells" not in text
        assert ("photo2depth/rel: 1 of 2 outside our interval, mean absolute gap 0.03; "
                "photo2depth/rms: 1 of 1 outside our interval, mean absolute gap 2") in text


def test_index_html_carries_the_same_counts_escaped(page):
    md, doc = page["md"], page["html"]
    summary = md.split("\n\n")[2:5]                          # the three summary paragraphs
    assert summary[0].startswith("Tables and figures with a suite: 4")
    for para in summary:
        assert f"<p>{html.escape(para)}</p>" in doc
    assert "<td>2: Tables 2, 3</td><td>1: Table 2</td><td>1: Table 3</td><td>0</td>" in doc
    assert "A &lt;b&gt;beats&lt;/b&gt; C &amp; D" in doc and "<b>beats</b>" not in doc
    assert "<td>Synthetic &lt;scenes&gt; &amp; co</td>" in doc and "<scenes>" not in doc
    assert re.search(r'<td class="not-separated">not separated, means the other way', doc)
    assert '<td class="reproduced">reproduced</td>' in doc and '<td class="untestable">untestable' in doc
    assert 'td.reversed{background:#ffcdd2}' in doc
    assert '<a href="real-t2/cpu/report.html">real-t2/cpu</a>' in doc


def test_suite_metadata_keys_are_checked():
    with pytest.raises(ConfigError, match="need the key 'paper'"):
        _suite("x", paper_items=["Table 1"])
    with pytest.raises(ConfigError, match="one table or figure per entry.*not 'Tables 2-3'"):
        _suite("x", paper="p", paper_items=["Tables 2-3"])
    with pytest.raises(ConfigError, match="'paper_steps' must be at least 1"):
        _suite("x", paper="p", paper_steps=0)


def test_the_committed_suites_say_which_paper_table_they_reproduce():
    from bench.registry import SUITES
    full = {n: load_suite(SUITES.get(n)) for n in SUITES.names()}
    suites = {n: s.suite for n, s in full.items()}
    # 2 of the paper's 50 epochs of 60000 digits: 1875 x 64 = 120000 samples of 93750 x 32 = 3000000
    assert budget_share(full["cagan-vs-acgan"], "cpu") == "4.0% of the paper's steps x batch, 28 px vs 28 px"
    # 10 of pix2pix's 200 epochs of 400 facades at batch 1, at a quarter of the side
    assert budget_share(full["decoupled-table4"], "cpu") == "5.0% of the paper's steps x batch, 64 px vs 256 px"
    # a budget ladder published alone: its base profile at the largest rung
    assert budget_share(full["decoupled-table4"], "cpu@x0.5-1-2") == \
        "10.0% of the paper's steps x batch, 64 px vs 256 px"
    assert "budget unknown" in budget_share(full["decoupled-table4"], "nosuch@x1-2")
    assert suites["quickstart"].paper == "" and suites["nrds-toy"].paper_items == []
    assert suites["decoupled-table2-mnist"].substitute and suites["decoupled-table2-mnist"].paper_items == ["Table 2"]
    assert suites["decoupled-table2"].substitute == "" and suites["cagan-vs-acgan"].paper_items == ["Fig. 14"]
    for name, s in suites.items():
        assert s.paper_budget or not s.paper, f"{name}: state the paper's budget (unknowns as unknown)"
    items = {(s.paper, i) for s in suites.values() for i in s.paper_items}
    assert len(items) == 18 and {p for p, _ in items} == {"fusion-discriminator", "conditional-activation-gan",
                                                          "decoupled-learning", "new-losses", "context-encoder",
                                                          "pix2pixhd"}


def test_budget_ladders_show_each_claims_verdict_per_rung_beside_the_main_result(page):
    real = page["results"][0]
    assert real.folder == "real-t2/cpu"                                    # the ladder is not the main result
    md = page["md"]
    assert ("| `real-t2` | A beats B | step 30 (x1): reversed (p 0.004); end, step 90 (x3): not separated, claimed "
            "way | [real-t2/cpu@x1-3](real-t2/cpu@x1-3/leaderboard.md) |") in md
    assert "A beats C | step 30" not in md                                 # a claim the ladder did not run
