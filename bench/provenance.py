"""Provenance: which code, which libraries and which protocol produced a result.

- ``git_commit`` / ``code_version``: the commit of the repository the package lives in
  (``"0.1.0+1a2b3c4d5e6f"``, with ``"-dirty"`` when tracked files have uncommitted changes).
- ``versions``: interpreter, libraries and accelerator, for ``run.json``.
- ``canonical_json`` / ``protocol_hash``: one stable text and hash per evaluation protocol, so
  a result row and a cached statistic say exactly which protocol made them.
- ``file_sha256``: streaming content hash (checkpoint manifests, feature-extractor weights).

Nothing here raises for a missing git or a directory outside git: provenance is then
reported as unknown (``None``), never as an error.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import json
import logging
import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

from bench import __version__

log = logging.getLogger(__name__)

PACKAGE_DIR = Path(__file__).resolve().parent
_GIT_TIMEOUT_S = 10.0
SHORT_COMMIT_LEN = 12


def _git(args: list[str], cwd: Path) -> str | None:
    """Run ``git args`` in ``cwd``; its stripped stdout, or None on any failure."""
    env = dict(os.environ, GIT_OPTIONAL_LOCKS="0", LC_ALL="C")
    try:
        proc = subprocess.run(
            ["git", *args], cwd=cwd, env=env, capture_output=True, text=True,
            timeout=_GIT_TIMEOUT_S, check=False,
        )
    except (OSError, subprocess.SubprocessError, ValueError) as e:
        log.debug("git %s failed in %s: %s", " ".join(args), cwd, e)
        return None
    if proc.returncode != 0:
        return None
    return proc.stdout.strip()


def _repo_dir(path: str | os.PathLike | None) -> Path | None:
    """The directory to ask git about, or None when it cannot describe the code.

    Without ``path``, the package's own directory, but only when the package is tracked
    there: an installed copy inside some other project's repository (a virtualenv in a
    git checkout) must not report that project's commit.
    """
    if path is not None:
        p = Path(path)
        p = p if p.is_dir() else p.parent
        return p if p.is_dir() else None
    if _git(["ls-files", "--error-unmatch", "--", "__init__.py"], PACKAGE_DIR) is None:
        return None
    return PACKAGE_DIR


def git_commit(path: str | os.PathLike | None = None) -> str | None:
    """Full commit hash of HEAD in the repository holding ``path`` (default: this package).

    None outside git, in a repository without commits, or when git is not installed.
    """
    cwd = _repo_dir(path)
    if cwd is None:
        return None
    out = _git(["rev-parse", "--verify", "--quiet", "HEAD^{commit}"], cwd)
    return out or None


def git_dirty(path: str | os.PathLike | None = None) -> bool | None:
    """Whether tracked files differ from HEAD (untracked files do not count); None outside git."""
    cwd = _repo_dir(path)
    if cwd is None:
        return None
    out = _git(["status", "--porcelain", "--untracked-files=no"], cwd)
    return None if out is None else bool(out)


def cpu_kind(cpuinfo: str | os.PathLike = "/proc/cpuinfo") -> str:
    """``vendor-family-model`` of this CPU (e.g. ``AuthenticAMD-25-17``), "" where unreadable (not Linux).

    The judges the bench trains on the CPU (the labels -> photo segmenter, the MNIST classifier) are bit-exact
    per CPU kind, not across kinds: their kernels round differently, so a reproduction names the kind it ran on.
    """
    fields: dict[str, str] = {}
    try:
        for line in Path(cpuinfo).read_text().splitlines():
            key, _, value = line.partition(":")
            fields.setdefault(key.strip(), value.strip())
    except OSError:
        return ""
    parts = [fields.get(k, "") for k in ("vendor_id", "cpu family", "model")]
    return "-".join(parts) if all(parts) else ""


def code_version(path: str | os.PathLike | None = None) -> str:
    """Package version plus short commit, e.g. ``0.1.0+1a2b3c4d5e6f`` or ``...-dirty``.

    Just the package version when the code is not in a git repository with commits.
    """
    commit = git_commit(path)
    if commit is None:
        return __version__
    version = f"{__version__}+{commit[:SHORT_COMMIT_LEN]}"
    return version + "-dirty" if git_dirty(path) else version


_RUNNING: str | None = None


def running_code_version() -> str:
    """:func:`code_version` of this package as this process loaded it: asked of git once per process.

    The code a process runs is the code it imported at start, so every record it writes carries the
    same version; a suite with thousands of records asked git three times per record before (16-21% of
    a smoke suite's time).
    """
    global _RUNNING
    if _RUNNING is None:
        _RUNNING = code_version()
    return _RUNNING


def adopt_code_version(version: str | None) -> None:
    """Take ``version`` as this process's :func:`running_code_version` (``None``: ask git again on next use).
    A worker that ``bench run`` starts runs the command's code and records the command's version, asked of git
    once there, instead of three git processes of its own per run."""
    global _RUNNING
    _RUNNING = version


def _dist_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def versions() -> dict[str, Any]:
    """Interpreter, platform, library and accelerator versions (None where absent)."""
    import numpy
    import torch

    cuda = torch.cuda.is_available()
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cgan_bench": __version__,
        "torch": torch.__version__,
        "torchvision": _dist_version("torchvision"),
        "numpy": numpy.__version__,
        "safetensors": _dist_version("safetensors"),
        "torch_fidelity": _dist_version("torch-fidelity"),
        "pytorch_msssim": _dist_version("pytorch-msssim"),
        "cuda_build": torch.version.cuda,
        "cuda": torch.version.cuda if cuda else None,
        "cudnn": torch.backends.cudnn.version() if cuda and torch.backends.cudnn.is_available() else None,
        "gpu": torch.cuda.get_device_name(0) if cuda else None,
    }


def json_default(obj: Any) -> Any:
    """``json.dumps(default=...)`` hook: paths, dataclasses, enums, sets, tuples of them."""
    if isinstance(obj, os.PathLike):
        return Path(obj).as_posix()
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.asdict(obj)
    if isinstance(obj, enum.Enum):
        return obj.value
    if isinstance(obj, (set, frozenset)):
        return sorted(obj, key=lambda v: json.dumps(v, sort_keys=True, default=json_default))
    raise TypeError(f"{type(obj).__name__} is not JSON-serialisable: {obj!r}")


def canonical_json(obj: Any) -> str:
    """One text per value: sorted keys, no whitespace, UTF-8 kept, NaN/inf refused.

    Note that ``1`` and ``1.0`` are different texts (and so different hashes).
    """
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False, default=json_default)


def protocol_hash(protocol: dict) -> str:
    """First 16 hex digits of the sha256 of ``canonical_json(protocol)``."""
    return hashlib.sha256(canonical_json(protocol).encode("utf-8")).hexdigest()[:16]


def file_sha256(path: str | os.PathLike, chunk_size: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(chunk_size):
            h.update(chunk)
    return h.hexdigest()


def flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    """A nested dict as {"a.b.c": leaf} (configuration diffs, experiment-tracker params)."""
    if not isinstance(d, dict):
        return {prefix: d}
    out: dict[str, Any] = {}
    for k, v in d.items():
        out |= flatten(v, f"{prefix}.{k}" if prefix else str(k))
    return out
