"""Adding runs made later or elsewhere to a published result folder: ``bench republish DEST --add OUT``.

A seed that did not finish in one session, or a row run on another machine of the same kind, is a ``bench run``
of its own (its ``--out`` holds a results store). :func:`add_runs` appends to ``DEST/results.sqlite`` the records
of every run (row, task, seed) of ``OUT`` that ``DEST`` holds no number of, with their protocols, and copies the first
sample grid of a row and task ``DEST`` has none of. A run ``DEST`` holds already is left as it is: a published
number is never replaced by this (republish a new run instead). The union must pass the publish checks: one suite
and profile, and one judge per column (:func:`bench.judges.check_one_judge_per_column`: a segmenter trained on
another CPU kind is another judge); on any refusal ``DEST``'s store is untouched (the records go into a copy that
replaces the store only once it passed). Returns one line for RUN.md: what was added, and the commands that made it.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from bench.errors import ConfigError
from bench.judges import check_one_judge_per_column
from bench.results import ResultStore

RESULTS = "results.sqlite"
INVOCATIONS = "invocations.jsonl"


def _key(r) -> tuple[str, str, int]:
    return r.row, r.task, r.seed


def _commands(src: Path, label: str) -> str:
    """The ``bench run`` commands of ``src`` (its invocations.jsonl), with its folder written as ``label``."""
    from bench.publish import shell_command
    p = src / INVOCATIONS
    lines = [json.loads(ln) for ln in p.read_text(encoding="utf-8").splitlines() if ln.strip()] if p.is_file() else []
    if not lines:
        return "its commands were not recorded (no invocations.jsonl)"
    return "; ".join(f"`{shell_command(i['argv'], src, label)}` (commit {str(i.get('commit'))[:7]}, "
                     f"{i['started']}, {i['seconds'] / 60:.1f} min, jobs {i.get('jobs', '?')})" for i in lines)


def add_runs(dest: Path, src: Path, suite: str, profile: str, label: str = "OUT") -> str:
    """Append ``src``'s runs that ``dest`` lacks to ``dest``'s store (see the module docstring); ``label`` names
    ``src`` in the returned line (no machine paths in a committed file)."""
    dest, src = Path(dest), Path(src)
    db, src_db = dest / RESULTS, src / RESULTS
    if not src_db.is_file():
        raise ConfigError(f"--add {src} holds no {RESULTS}; pass the --out folder of a `bench run` of this suite")
    theirs = [r for r in ResultStore(src_db).records() if r.suite == suite and r.profile == profile]
    if not theirs:
        raise ConfigError(f"--add {src} holds no records of suite {suite}, profile {profile}; add a run of the "
                          "published suite at the published profile (the same --profile and --budget)")
    held = {_key(r) for r in ResultStore(db).records() if r.status == "ok"}   # a failed run may be added again
    new = [r for r in theirs if _key(r) not in held]
    runs = sorted({_key(r) for r in new}, key=lambda k: (k[0], k[1], k[2]))
    if not runs:
        raise ConfigError(f"--add {src}: every run it holds ({len({_key(r) for r in theirs})}) is in {dest} "
                          "already; nothing to add (a published run is never replaced: publish a new run instead)")
    tmp = dest / f".{RESULTS}.adding"
    tmp.unlink(missing_ok=True)
    shutil.copy2(db, tmp)
    try:
        store, source = ResultStore(tmp), ResultStore(src_db)
        for h in sorted({r.protocol_hash for r in new if r.protocol_hash}):
            if store.protocol(h) is None and (p := source.protocol(h)) is not None:
                store.add_protocol(h, p)
        store.append(new)
        check_one_judge_per_column(store)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, db)
    for grid in sorted((src / "runs").glob("*/seed*/*/samples.png")):
        target = dest / "samples" / f"{grid.parts[-4]}__{grid.parts[-2]}.png"
        if not target.exists():
            target.parent.mkdir(exist_ok=True)
            shutil.copy2(grid, target)
    shown = "; ".join(f"{row} / {task} / seed {seed}" for row, task, seed in runs)
    return (f"added {len(new)} records of {len(runs)} run(s) ({shown}) from {label}, made by "
            f"{_commands(src, label)}")
