"""User text in what the bench writes (issue 22 item 7): a suite's title, row names, claims and assumptions, a
failure's reason, CLI arguments are escaped for the format they land in (bench.escape): no raw HTML and
no injected headings, lists or table lines in the Markdown, no LaTeX commands or broken cells in the .tex, and
still escaped in the HTML report. Ordinary names (the committed suites') render unchanged. The leaderboard is
built from a hand-made results store (nothing trained; plots left out), so this file takes a few seconds."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest

import leaderboards.build as build
from bench.config import parse_suite
from bench.provenance import protocol_hash
from bench.results import ResultRecord, ResultStore
from bench.escape import latex_text, md_code, md_heading, md_text

TITLE = "Title\n# Injected\n| a | b |"
IMG, SCRIPT, SVG = "<img src=x onerror=alert(1)>", "<script>alert(1)</script>", "<svg onload=alert(5)>|x"
TEX = r"50% of $x_1$ & {y}^2 ~ #1 \ back"
ORDINARY = ["ED+GAN L1:adv 1:1", "4-Layer Fusion + SN", "CA-GAN"]
ROWS = [IMG, SCRIPT, *ORDINARY, TEX]
FAILED = SVG                                     # a row whose only record is a failure (its reason: HTML too)
ASSUMPTIONS = ["<img src=x onerror=alert(4)> chosen", "# Injected assumption heading", "- a | b\n- injected item",
               "plain & simple: 1 < 2 -> ok, p <1e-4, a <= b"]
CLAIM = "<script>alert('claim')</script> beats\n# Injected claim"
RAW_HTML = re.compile(r"<\s*/?\s*(script|img|svg|b)\b", re.I)
UNESCAPED_PIPE = re.compile(r"(?<!\\)\|")


def _suite():
    rows = [{"name": n, "discriminator": "patchgan", "published": {"photo2depth/rel": 0.1 * (i + 1)}}
            for i, n in enumerate(ROWS)] + [{"name": FAILED, "discriminator": "patchgan"}]
    return parse_suite({
        "suite": {"name": "esc", "dataset": "synthetic-scenes", "tasks": ["photo2depth"], "title": TITLE,
                  "reference": "Paper <b onmouseover=alert(3)>bold</b>\n## Injected reference",
                  "assumptions": ASSUMPTIONS},
        "profiles": {"smoke": {"steps": 1}}, "rows": rows,
        "claims": [{"text": CLAIM, "metric": "photo2depth/rel", "order": [IMG, SCRIPT], "better": "lower"}]},
        source="esc.toml")


def _store(path: Path) -> ResultStore:
    store = ResultStore(path)
    protocol = {"metric": "depth <i>x</i>", "num_samples": 4, "scorer": {"scorer": "Depth", "note": "a|b\n# c"}}
    h = protocol_hash(protocol)
    store.add_protocol(h, protocol)
    for i, row in enumerate(ROWS):
        for seed in range(3):
            store.append(ResultRecord(suite="esc", row=row, task="photo2depth", seed=seed, profile="smoke",
                                      metric="rel", value=0.1 * (i + 1) + 0.01 * seed, checkpoint="c.pt",
                                      protocol_hash=h, code_version="0"))
    store.append(ResultRecord(suite="esc", row=FAILED, task="photo2depth", seed=0, profile="smoke", metric="train",
                              value=None, checkpoint="", protocol_hash="", code_version="0", status="failed",
                              reason="<script>alert(6)</script>\n# Injected reason"))
    return store


@pytest.fixture(scope="module")
def board(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("board")
    mp = pytest.MonkeyPatch()
    mp.setattr(build, "_draw", lambda draw, path: None)          # the plots are not what is tested (and slow)
    try:
        build.write_leaderboard(_suite(), _store(out / "results.sqlite"), out, "smoke")
    finally:
        mp.undo()
    return out


def _section(md: str, heading: str) -> list[str]:
    """The lines under ``heading`` up to the next heading, blank lines left out."""
    lines = md.splitlines()
    start = lines.index(heading) + 1
    end = next((i for i in range(start, len(lines)) if lines[i].startswith("#")), len(lines))
    return [ln for ln in lines[start:end] if ln.strip()]


def _table(lines: list[str]) -> list[str]:
    """The first Markdown table in ``lines``: header, rule and rows."""
    start = next(i for i, ln in enumerate(lines) if ln.startswith("|"))
    end = next((i for i in range(start, len(lines)) if not lines[i].startswith("|")), len(lines))
    return lines[start:end]


def test_leaderboard_md_carries_no_raw_html_and_no_injected_structure(board: Path) -> None:
    md = (board / "leaderboard.md").read_text()
    assert not RAW_HTML.search(md), RAW_HTML.search(md)
    lines = md.splitlines()
    assert lines[0] == r"# Title # Injected \| a \| b \|"          # the title, on its heading line
    headings = [ln for ln in lines if ln.lstrip().startswith(("#", ">"))]
    assert headings == [lines[0], "## Ranking agreement with the paper", "## Published claims", "## Failed runs",
                        "## Evaluation protocols", "## Assumptions"], headings
    assert all("Injected" not in ln for ln in headings[1:])
    assert lines[2].startswith("suite `esc`") and lines[3].startswith("reproduces: Paper &lt;b onmouseover")

    # the wide table: one line per row of the suite that has a record, every line with the header's cells
    table = _table(lines)
    assert len(table) == 2 + len(ROWS) + 1
    cells = [len(UNESCAPED_PIPE.findall(ln)) for ln in table]
    assert len(set(cells)) == 1, cells
    body = "\n".join(table[2:])
    for name in ORDINARY:                                        # ordinary names as they are
        assert f"| {name} " in body
    assert "&lt;img src=x onerror=alert(1)>" in body and "&lt;script>alert(1)&lt;/script>" in body
    assert r"&lt;svg onload=alert(5)>\|x" in body                # the failed row, its | escaped
    assert r"50% of $x_1$ & {y}^2 ~ #1 \\ back" in body

    claims = _table(_section(md, "## Published claims"))
    assert len(claims) == 3 and len({len(UNESCAPED_PIPE.findall(ln)) for ln in claims}) == 1
    assert "&lt;script>alert('claim')&lt;/script> beats # Injected claim" in claims[2]

    failed = _section(md, "## Failed runs")
    assert failed == [r"- &lt;svg onload=alert(5)>\|x / photo2depth: &lt;script>alert(6)&lt;/script> # Injected reason"]
    protocols = _section(md, "## Evaluation protocols")
    assert len(protocols) == 1 and "depth &lt;i>x&lt;/i>" in protocols[0] and r"a\|b # c" in protocols[0]

    assumptions = _section(md, "## Assumptions")
    assert assumptions == ["- &lt;img src=x onerror=alert(4)> chosen", r"- \# Injected assumption heading",
                           r"- \- a \| b - injected item", "- plain & simple: 1 < 2 -> ok, p <1e-4, a <= b"]


def test_csv_keeps_the_names_as_data(board: Path) -> None:
    """CSV is data, not Markdown: the names are stored as given (pandas quotes what needs quoting)."""
    long = pd.read_csv(board / "leaderboard.csv")
    assert set(long["row"]) == set(ROWS) | {FAILED}
    assert pd.read_csv(board / "claims.csv")["claim"].tolist() == [CLAIM]


def test_leaderboard_tex_escapes_every_special_character(board: Path) -> None:
    tex = (board / "leaderboard.tex").read_text()
    caption = [ln for ln in tex.splitlines() if ln.startswith(r"\caption")]
    assert caption == [r"\caption{Title \# Injected \textbar{} a \textbar{} b \textbar{} (smoke)}"]
    body = tex.split(r"\midrule")[1].split(r"\bottomrule")[0].strip().splitlines()
    spec = re.search(r"\\begin\{tabular\}\{(\w+)\}", tex).group(1)
    assert len(body) == len(ROWS) + 1
    assert all(ln.endswith(r"\\") and ln.count(" & ") == len(spec) - 1 for ln in body)   # no & of a name
    row = next(ln for ln in body if ln.startswith("50"))
    assert row.startswith(r"50\% of \$x\_1\$ \& \{y\}\textasciicircum{}2 \textasciitilde{} \#1 "
                          r"\textbackslash{} back & ")
    assert r"\textless{}script\textgreater{}alert(1)\textless{}/script\textgreater{}" in tex
    assert "<" not in tex and ">" not in tex and "|" not in tex


def test_report_html_stays_escaped(board: Path) -> None:
    html = (board / "report.html").read_text()
    assert "<script>alert" not in html and "<img src=x onerror" not in html and "<svg onload" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_markdown_helpers() -> None:
    for name in ORDINARY + ["Cho & Yoon", "p <1e-4", "a <= b", "x -> y", "fid_class_mean[e5]", "*emphasis*"]:
        assert md_text(name) == name                             # ordinary text unchanged
    assert md_text("a\r\nb\rc\n\nd") == "a b c d"
    assert md_text("a|b") == r"a\|b" and md_text("a\\|b") == r"a\\\|b"     # a backslash cannot eat the escape
    assert md_text("<p>") == "&lt;p>" and md_text("</p>") == "&lt;/p>" and md_text("<!-- x -->") == "&lt;!-- x -->"
    assert md_text("<http://x>") == "&lt;http://x>"             # no autolink
    assert md_text("&lt;b&gt; &#60; &#x3c; &amp") == "&amp;lt;b&amp;gt; &amp;#60; &amp;#x3c; &amp"
    for text, want in (("# h", r"\# h"), ("> q", r"\> q"), ("- l", r"\- l"), ("+ l", r"\+ l"), ("* l", r"\* l"),
                       ("===", r"\==="), ("___", r"\___"), ("```py", r"\```py"), ("~~~", r"\~~~"),
                       ("[x]: /u", r"\[x]: /u"), ("1. one", r"1\. one"), ("2) two", r"2\) two"),
                       ("    code", "code"), ("2018 results", "2018 results")):
        assert md_text(text, start=True) == want, text
        assert md_text(text) == text                             # inside a line: left as is
    assert md_text("a [b] c", brackets=True) == r"a \[b\] c"
    assert md_heading("Title #") == r"Title \#" and md_heading("C# code") == "C# code"
    assert md_code("a`b") == "``a`b``" and md_code("`x`") == "`` `x` ``" and md_code("a\nb") == "`a b`"
    assert md_code("a|b") == "`a|b`" and md_code("a|b", cell=True) == r"`a\|b`"


def test_latex_helper() -> None:
    assert latex_text("a\n\nb") == "a b"                         # a blank line would end \caption's argument
    assert latex_text(r"\&%$#_{}~^<>|") == (r"\textbackslash{}\&\%\$\#\_\{\}\textasciitilde{}\textasciicircum{}"
                                            r"\textless{}\textgreater{}\textbar{}")
    assert latex_text("ED+GAN L1:adv 1:1") == "ED+GAN L1:adv 1:1"


def test_status_page_markdown_escapes_the_suites_text() -> None:
    from leaderboards.status import Cell, Page, Table, page_markdown
    page = Page([f"Not counted: s ({TITLE})."],
                [Table("Claims", "", ["suite", "claim", "results"],
                       [[Cell("a|b`c", code=True), Cell(CLAIM), Cell(f"x{SCRIPT}", folder="s (x)/cpu")]])])
    md = page_markdown(page)
    assert not RAW_HTML.search(md)
    assert "Not counted: s (Title # Injected \\| a \\| b \\|)." in md.splitlines()
    row = [ln for ln in md.splitlines() if ln.startswith("| ``")]
    assert len(row) == 1 and len(UNESCAPED_PIPE.findall(row[0])) == 4, row
    assert "](s%20%28x%29/cpu/leaderboard.md)" in row[0]
    assert [ln for ln in md.splitlines() if ln.startswith("#")] == ["# Reproduction status", "## Claims"]


def test_compare_markdown_escapes_names() -> None:
    from leaderboards.compare import COLUMNS, compare_markdown
    frame = pd.DataFrame([{c: "" for c in COLUMNS} | {
        "suite": "s\n# Injected", "column": "photo2depth/rel", "better": "lower", "row": SCRIPT,
        "verdict": "better", "candidate": 0.1, "cand_low": 0.0, "cand_high": 0.2, "n_candidate": 3, "n_row": 3,
        "detail": IMG}])
    md = compare_markdown(frame, "my-d\n# Injected`")
    assert not RAW_HTML.search(md)
    assert [ln for ln in md.splitlines() if ln.startswith("#")] == [
        "# `` my-d # Injected` `` against the established discriminators", "## s # Injected"]


def test_run_notes_keep_cli_text_in_its_place(tmp_path: Path) -> None:
    from bench.publish import republish_notes, run_notes
    out = tmp_path / "out"
    out.mkdir()
    inv = {"argv": ["bench", "run", "s", "--rows", "x\n```\n<script>alert(1)</script>\n# Injected"],
           "commit": "abc`def", "code_version": "0", "started": "2026-01-01T00:00:00", "seconds": 60.0, "ran": 1,
           "skipped": 0, "failed": [], "machine": {}}
    (out / "invocations.jsonl").write_text(json.dumps(inv) + "\n")
    notes = run_notes(out).splitlines()
    fences = [i for i, ln in enumerate(notes) if ln.startswith("```")]
    assert len(fences) == 2 and notes[fences[0]] == notes[fences[1]] == "````"     # longer than the ``` inside
    assert fences[1] - fences[0] == 2                            # the command stays one line, inside the fence
    assert [ln for ln in notes if ln.startswith("#")] == ["# How these results were made", "## Judges"]
    (out / "RUN.md").write_text("\n".join(notes))
    republish_notes(out, "bench republish out", "abc", "0", "why\n## Judges\n<img src=x onerror=alert(1)>")
    run = (out / "RUN.md").read_text()
    assert [ln for ln in run.splitlines() if ln.startswith("#")] == ["# How these results were made", "## Judges",
                                                                     "## Republished"]
    assert "<img" not in run
    assert run.splitlines()[-1].endswith(": why ## Judges &lt;img src=x onerror=alert(1)>")
