"""`bench publish` and the judges: RUN.md lists every judge's sha256 (from the stored protocols) and the
jobs / threads of each command, and a store whose latest records of one column name two judges is refused.
Stores are built by hand with ResultStore / ResultRecord."""

from __future__ import annotations

import hashlib
from datetime import datetime, timezone
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from bench.cli import main
from bench.errors import ConfigError
from bench.judges import sha256_keys
from bench.provenance import protocol_hash
from bench.publish import publish, record_invocation
from bench.results import ResultRecord, ResultStore


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


FID_JUDGE, OTHER_JUDGE, SEG_JUDGE = _sha("mnist classifier"), _sha("another classifier"), _sha("segmenter")


def _protocol(metric: str, sha: str, samples: int = 64) -> dict:
    return {"metric": metric, "scorer": {"scorer": "FIDScorer", "weights_sha256": sha, "resize": "none"},
            "num_samples": samples}


def _add(store: ResultStore, protocol: dict, *, row: str, seed: int, metric: str, value: float,
         task: str = "digits", time: str | None = None) -> None:
    h = protocol_hash(protocol)
    store.add_protocol(h, protocol)
    extra = {"time": time} if time else {}
    store.append(ResultRecord(suite="s", row=row, task=task, seed=seed, profile="smoke", metric=metric,
                              value=value, checkpoint="c.pt", protocol_hash=h, code_version="0", **extra))


def _out(tmp_path: Path) -> tuple[Path, ResultStore]:
    out = tmp_path / "out"
    out.mkdir()
    (out / "leaderboard.md").write_text("# board\n")
    return out, ResultStore(out / "results.sqlite")


def test_sha256_keys_are_found_at_any_depth() -> None:
    p = {"a_sha256": "x", "scorer": {"weights_sha256": "y", "n": 3, "parts": [{"key_sha256": "z"}]}, "sha": "no"}
    assert sorted(sha256_keys(p)) == [("a_sha256", "x"), ("scorer.parts.0.key_sha256", "z"),
                                      ("scorer.weights_sha256", "y")]


def test_run_notes_list_every_judge_once_and_the_jobs_and_threads(tmp_path: Path) -> None:
    out, store = _out(tmp_path)
    for row in ("A", "B"):
        for seed in (0, 1):
            _add(store, _protocol("fid", FID_JUDGE), row=row, seed=seed, metric="fid", value=1.0)
    seg = {"metric": "segmenter-score", "scorer": {"segmenter": "smp-pspnet", "weights_sha256": SEG_JUDGE}}
    for metric in ("pixel_acc", "mean_iou"):
        _add(store, seg, row="A", seed=0, metric=metric, value=0.5, task="labels2photo")
    torch.set_num_threads(2)
    report = SimpleNamespace(ran=4, skipped=0, failed=[])
    record_invocation(out, datetime.now(timezone.utc), 12.0, report, "abc", "0.1", jobs=2)
    notes = (publish(out, tmp_path / "dest") / "RUN.md").read_text()
    assert f"| digits | fid | `scorer.weights_sha256` | `{FID_JUDGE}` |" in notes
    assert f"| labels2photo | segmenter-score | `scorer.weights_sha256` | `{SEG_JUDGE}` |" in notes
    assert notes.count(FID_JUDGE) == 1 and notes.count(SEG_JUDGE) == 1          # deduplicated
    assert "--jobs 2, 1 thread(s) per job" in notes                           # 2 threads shared by 2 jobs
    assert f"torch {torch.__version__}" in notes


def test_an_older_judge_superseded_by_newer_records_is_published(tmp_path: Path) -> None:
    out, store = _out(tmp_path)
    _add(store, _protocol("fid", OTHER_JUDGE), row="A", seed=0, metric="fid", value=2.0,
         time="2020-01-01T00:00:00+00:00")
    _add(store, _protocol("fid", FID_JUDGE), row="A", seed=0, metric="fid", value=1.0)     # re-scored later
    _add(store, _protocol("fid", FID_JUDGE), row="B", seed=0, metric="fid", value=1.5)
    _add(store, _protocol("fid", OTHER_JUDGE), row="B", seed=0, metric="fid", value=1.5, task="other")
    notes = (publish(out, tmp_path / "dest") / "RUN.md").read_text()
    assert "(no invocations.jsonl" in notes and FID_JUDGE in notes
    assert f"| other | fid | `scorer.weights_sha256` | `{OTHER_JUDGE}` |" in notes   # another column


def test_two_judges_in_one_column_are_refused_with_one_line(tmp_path: Path, capsys) -> None:
    out, store = _out(tmp_path)
    _add(store, _protocol("fid", FID_JUDGE), row="A", seed=0, metric="fid", value=1.0)
    _add(store, _protocol("fid", OTHER_JUDGE), row="B", seed=0, metric="fid", value=1.2)
    dest = tmp_path / "dest"
    with pytest.raises(ConfigError) as err:
        publish(out, dest)
    msg = str(err.value)
    assert "\n" not in msg and "digits/fid" in msg and "scorer.weights_sha256" in msg
    assert FID_JUDGE[:12] in msg and OTHER_JUDGE[:12] in msg and "one judge" in msg
    assert not dest.exists()
    assert main(["publish", str(out), "--dest", str(dest)]) == 2
    err_lines = capsys.readouterr().err.strip().splitlines()
    assert len(err_lines) == 1 and err_lines[0].startswith("bench: error: ") and "digits/fid" in err_lines[0]
    assert not dest.exists()
