"""User text (suite titles, row names, claims, assumptions, column labels, failure reasons, CLI arguments) made
safe for the format it is written in: Markdown (``leaderboard.md``, the status page's ``README.md``,
``compare.md``, ``RUN.md``, ``gpu_check.md``) and LaTeX (``leaderboard.tex``). HTML pages escape with
:func:`html.escape` where they are written.

Markdown (GitHub-flavoured, as GitHub renders the committed files), :func:`md_text`:

- a single-line field stays on one line: every line break (``\\r``, ``\\n``, and the other characters Python
  splits lines at) with the blanks around it becomes one space, so a title cannot start a heading, a list or
  a table on a line of its own;
- ``\\`` becomes ``\\\\`` and ``|`` becomes ``\\|`` (a cell cannot end early, and a backslash of the text
  cannot undo an escape added here);
- raw HTML is neutralised: ``<`` becomes ``&lt;`` where it could open HTML or an autolink, i.e. before a
  letter, ``/``, ``!`` or ``?`` (``<img``, ``</x``, ``<!--``, ``<?``); a ``<`` before anything else
  (``p <1e-4``, ``<= 100``, ``a < b``) cannot start HTML in CommonMark and is kept, as is every ``>``
  (with no tag opened it is plain text; at a line start it is escaped, below). ``&`` becomes ``&amp;`` only
  where it would start a character reference (``&lt;``, ``&#60;``, ``&#x3c;``), so ``Cho & Yoon`` is kept
  and ``&lt;`` in a name shows as typed;
- with ``start=True`` (the field begins a line or a list item's content, e.g. ``- {assumption}``) a first
  character that would start block structure is backslash-escaped: ``#`` (heading), ``>`` (quote),
  ``-`` ``+`` ``*`` (list, thematic break), ``=`` and ``-`` (setext underline), ``_`` (thematic break),
  backtick and ``~`` (code fence), ``[`` (link reference definition, task box) and the ``.`` / ``)`` of
  ``1.`` / ``1)`` (ordered list); leading blanks (an indented code block) are dropped;
- Markdown's inline marks (``*``, ``_``, backticks, links) are otherwise left as they are: ordinary names
  ("ED+GAN L1:adv 1:1", "4-Layer Fusion + SN", "CA-GAN", "fid_class_mean[e5]") render unchanged, and the
  committed leaderboards' Markdown is byte-for-byte what it was. With ``brackets=True`` (image alt text),
  ``[`` and ``]`` are escaped too.

:func:`md_heading` is :func:`md_text` for ``# {title}`` (a closing run of ``#`` is kept as text);
:func:`md_code` a code span (its backtick fence longer than any run of backticks in the text).

LaTeX, :func:`latex_text`: ``\\ & % $ # _ { } ~ ^`` as their text-mode commands, ``< > |`` as
``\\textless{}`` ``\\textgreater{}`` ``\\textbar{}`` (OT1 fonts print other glyphs for them), line breaks
as spaces (a blank line would end the ``\\caption`` argument).
"""

from __future__ import annotations

import re

_BREAKS = re.compile(r"[ \t]*[\r\n\v\f\x1c\x1d\x1e\x85\u2028\u2029]+[ \t]*")
_HTML_START = re.compile(r"<(?=[A-Za-z/!?])")
_ENTITY = re.compile(r"&(?=#[0-9]{1,7};|#[xX][0-9A-Fa-f]{1,6};|[A-Za-z][A-Za-z0-9]{0,31};)")
_BLOCK_START = re.compile(r"[#>\-+*=_~`\[]")
_ORDERED = re.compile(r"(\d{1,9})([.)])")


def one_line(text: object) -> str:
    """``text`` with every line break (and the blanks around it) as one space."""
    return _BREAKS.sub(" ", str(text))


def md_text(text: object, *, start: bool = False, brackets: bool = False) -> str:
    """``text`` as one line of Markdown that shows as typed: no HTML, no table cell ends, no new blocks
    (see the module's docstring for the rules)."""
    s = one_line(text).replace("\\", "\\\\").replace("|", "\\|")
    s = _HTML_START.sub("&lt;", _ENTITY.sub("&amp;", s))
    if brackets:
        s = s.replace("[", "\\[").replace("]", "\\]")
    if start:
        s = s.lstrip(" \t")
        if _BLOCK_START.match(s):
            s = "\\" + s
        elif m := _ORDERED.match(s):
            s = f"{m.group(1)}\\{m.group(2)}{s[m.end():]}"
    return s


def md_cell(v: object) -> object:
    """A table cell (:func:`md_text`); numbers and other non-strings are left to the table writer."""
    return md_text(v) if isinstance(v, str) else v


def md_heading(text: object) -> str:
    """The text of a ``#`` heading: :func:`md_text`, with a closing run of ``#`` kept as text."""
    s = md_text(text)
    return re.sub(r"(^|\s)(#+)(\s*)$", lambda m: f"{m.group(1)}\\{m.group(2)}{m.group(3)}", s)


def md_code(text: object, *, cell: bool = False) -> str:
    """``text`` as a Markdown code span (shown verbatim: no HTML, no escapes inside) on one line; ``cell``: in
    a table, with ``|`` escaped (GitHub drops that backslash in a cell's code span, and only there)."""
    s = one_line(text)
    if cell:
        s = s.replace("|", "\\|")
    longest = max((len(r) for r in re.findall(r"`+", s)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if s.startswith("`") or s.endswith("`") or not s.strip() else ""
    return f"{fence}{pad}{s}{pad}{fence}"


_LATEX = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
          "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
          "<": r"\textless{}", ">": r"\textgreater{}", "|": r"\textbar{}"}


def latex_text(text: object) -> str:
    """``text`` for LaTeX's text mode: every special character as its command, on one line."""
    return "".join(_LATEX.get(c, c) for c in one_line(text))
