"""Provenance: git commit / code version, canonical JSON and hashes."""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import subprocess
from pathlib import Path

import pytest

import bench
from bench import provenance
from bench.provenance import canonical_json, code_version, file_sha256, git_commit, protocol_hash

needs_git = pytest.mark.skipif(shutil.which("git") is None, reason="git not installed")


def _git(repo: Path, *args: str) -> str:
    cmd = ["git", "-c", "user.name=t", "-c", "user.email=t@example.org", "-c", "commit.gpgsign=false", *args]
    return subprocess.run(cmd, cwd=repo, check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    r = tmp_path / "repo"
    r.mkdir()
    _git(r, "init", "-q")
    (r / "a.txt").write_text("one\n")
    _git(r, "add", "a.txt")
    _git(r, "commit", "-q", "-m", "first")
    return r


@needs_git
def test_git_commit_matches_git_rev_parse(repo: Path) -> None:
    expected = _git(repo, "rev-parse", "HEAD")
    assert git_commit(repo) == expected
    sub = repo / "sub"
    sub.mkdir()
    assert git_commit(sub) == expected          # any directory inside the repository
    assert git_commit(repo / "a.txt") == expected  # a file: its directory


@needs_git
def test_code_version_clean_dirty_and_untracked(repo: Path) -> None:
    full = _git(repo, "rev-parse", "HEAD")
    assert code_version(repo) == f"{bench.__version__}+{full[:12]}"
    (repo / "untracked.txt").write_text("x")    # untracked files do not make the tree dirty
    assert code_version(repo) == f"{bench.__version__}+{full[:12]}"
    (repo / "a.txt").write_text("two\n")
    assert code_version(repo) == f"{bench.__version__}+{full[:12]}-dirty"


@needs_git
def test_outside_git_and_empty_repo_give_none(tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    assert git_commit(plain) is None
    assert code_version(plain) == bench.__version__
    empty = tmp_path / "empty"
    empty.mkdir()
    _git(empty, "init", "-q")                   # a repository without commits
    assert git_commit(empty) is None
    assert git_commit(tmp_path / "does-not-exist") is None


def test_git_missing_never_raises(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))   # no git executable to be found
    assert git_commit(tmp_path) is None
    assert git_commit() is None
    assert code_version() == bench.__version__


def test_default_commit_is_a_hash_or_none() -> None:
    c = git_commit()
    assert c is None or (len(c) == 40 and all(ch in "0123456789abcdef" for ch in c))
    assert code_version().startswith(bench.__version__)


def test_versions_report_the_libraries() -> None:
    import numpy
    import torch

    v = provenance.versions()
    assert v["torch"] == torch.__version__
    assert v["numpy"] == numpy.__version__
    assert v["cgan_bench"] == bench.__version__
    assert v["python"].count(".") == 2
    assert v["torchvision"] is not None and v["platform"]
    if not torch.cuda.is_available():
        assert v["cuda"] is None and v["gpu"] is None
    json.dumps(v)                               # goes into run.json as is


def test_canonical_json_hand_written() -> None:
    obj = {"b": 1, "a": [1, 2.5, {"z": None, "y": True}], "c": "é"}
    assert canonical_json(obj) == '{"a":[1,2.5,{"y":true,"z":null}],"b":1,"c":"é"}'
    assert canonical_json({"p": Path("x") / "y.pt", "t": (1, 2)}) == '{"p":"x/y.pt","t":[1,2]}'
    with pytest.raises(ValueError):
        canonical_json({"fid": math.nan})
    with pytest.raises(TypeError):
        canonical_json({"f": object()})


def test_protocol_hash_is_sha256_prefix_and_order_free() -> None:
    p1 = {"extractor": "inception-v3-compat", "num_samples": 50000, "resize": {"mode": "bilinear", "size": 299}}
    p2 = {"resize": {"size": 299, "mode": "bilinear"}, "num_samples": 50000, "extractor": "inception-v3-compat"}
    text = b'{"extractor":"inception-v3-compat","num_samples":50000,"resize":{"mode":"bilinear","size":299}}'
    assert protocol_hash(p1) == hashlib.sha256(text).hexdigest()[:16]
    assert protocol_hash(p1) == protocol_hash(p2)
    assert protocol_hash(p1) != protocol_hash({**p1, "num_samples": 10000})
    assert len(protocol_hash({})) == 16


def test_file_sha256_known_vector_and_chunking(tmp_path: Path) -> None:
    f = tmp_path / "abc"
    f.write_bytes(b"abc")                       # FIPS 180-2 test vector
    assert file_sha256(f) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    data = bytes(range(256)) * 4099             # spans many small chunks, ends mid-chunk
    g = tmp_path / "big"
    g.write_bytes(data)
    assert file_sha256(g, chunk_size=1000) == hashlib.sha256(data).hexdigest()
    e = tmp_path / "empty"
    e.write_bytes(b"")
    assert file_sha256(e) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


def test_running_code_version_asks_git_once_per_process(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    real = provenance._git
    monkeypatch.setattr(provenance, "_git", lambda args, cwd: calls.append(args) or real(args, cwd))
    provenance.adopt_code_version(None)
    try:
        first = provenance.running_code_version()
        asked = len(calls)
        assert [provenance.running_code_version() for _ in range(50)] == [first] * 50
        assert len(calls) == asked                       # the 50 later calls ran no git
        calls.clear()
        assert first == code_version() and len(calls) == asked   # and it is code_version()'s answer
    finally:
        provenance.adopt_code_version(None)


def test_cpu_kind_reads_the_first_processor_and_names_its_kind(tmp_path: Path) -> None:
    """The kind the CPU-trained judges depend on: vendor, family and model of /proc/cpuinfo's first processor."""
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 25\nmodel\t\t: 1\n"
                    "model name\t: AMD EPYC\n\nprocessor\t: 1\nvendor_id\t: GenuineIntel\ncpu family\t: 6\n"
                    "model\t\t: 143\n")
    assert provenance.cpu_kind(info) == "AuthenticAMD-25-1"
    info.write_text("processor\t: 0\nvendor_id\t: AuthenticAMD\n")          # no family / model (another arch)
    assert provenance.cpu_kind(info) == ""
    assert provenance.cpu_kind(tmp_path / "absent") == ""


def test_run_notes_name_the_cpu_kind_the_run_recorded(tmp_path: Path) -> None:
    from bench.publish import run_notes
    out = tmp_path / "out"
    out.mkdir()
    inv = {"argv": ["bench", "run", "s"], "commit": "abc", "code_version": "0", "started": "2026-01-01T00:00:00",
           "seconds": 60.0, "ran": 1, "skipped": 0, "failed": [],
           "machine": {"cpus": 2, "cpu_kind": "AuthenticAMD-25-1", "torch": "2.14.1", "torch_threads": 1}}
    (out / "invocations.jsonl").write_text(json.dumps(inv) + "\n")
    assert "- machine: 2 CPUs (CPU kind AuthenticAMD-25-1), torch 2.14.1 (1 threads)" in run_notes(out)
    inv["machine"].pop("cpu_kind")                                             # a run recorded before the kind
    (out / "invocations.jsonl").write_text(json.dumps(inv) + "\n")
    assert "- machine: 2 CPUs, torch 2.14.1" in run_notes(out)
