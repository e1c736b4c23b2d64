"""Shared pieces of the datasets' ``check`` and ``prepare``: the report type, and safe copying.

``check(root)`` answers "is this dataset where the bench looks, in a layout it reads?" with a
:class:`CheckReport` (the ``bench data check NAME`` command prints ``report.format()``).

``prepare(src, root)`` turns what a user downloaded (archives or folders) into the layout. Members
of tar and zip archives are never extracted by name: :func:`iter_members` yields normalised
relative names (absolute paths, ``..`` parts, links and devices are skipped), the dataset module
matches them against the names it knows and builds every destination itself under ``root``
(:func:`safe_join` refuses anything that would land outside it), and files are written atomically.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tarfile
import uuid
import zipfile
import zlib
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import IO, Callable, Iterator

from bench.errors import DataError

log = logging.getLogger(__name__)

ARCHIVE_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz", ".zip")


@dataclass
class CheckReport:
    """What ``check`` found: ``ok`` when the dataset can be loaded as it is."""

    name: str
    ok: bool
    expected: str                                   # the layouts the loader reads, as text
    found: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    root: Path | None = None                        # the folder that was examined
    layout: str | None = None                       # the layout detected, if any
    hints: list[str] = field(default_factory=list)  # what to do next

    def format(self) -> str:
        status = "OK" if self.ok else "NOT READY"
        lines = [f"{self.name}: {status}" + (f"  (root: {self.root})" if self.root else "")]
        if self.layout:
            lines.append(f"layout: {self.layout}")
        if self.found:
            lines.append("found:")
            lines += [f"  + {f}" for f in self.found]
        if self.missing:
            lines.append("missing:")
            lines += [f"  - {m}" for m in self.missing]
        lines.append("expected layout:")
        lines += [f"  {ln}" for ln in self.expected.strip("\n").splitlines()]
        if self.hints:
            lines.append("next steps:" if not self.ok else "notes:")
            lines += [f"  * {h}" for h in self.hints]
        return "\n".join(lines)


# -- names ------------------------------------------------------------------------------------------

def clean_member_name(name: str) -> str | None:
    """A relative POSIX name with no ``..``/absolute/drive parts, or None when it is unsafe."""
    name = name.replace("\\", "/")
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        return None
    parts = [p for p in PurePosixPath(name).parts if p not in ("", ".")]
    if not parts or any(p == ".." for p in parts):
        return None
    return "/".join(parts)


def safe_join(root: Path, *parts: str) -> Path:
    """``root / parts`` after checking that the result stays inside ``root``."""
    root_r = Path(root).resolve()
    dest = root_r.joinpath(*parts).resolve()
    if dest != root_r and root_r not in dest.parents:
        raise DataError(f"refusing to write outside {root}: {'/'.join(parts)}; the archive looks tampered with")
    return dest


def is_archive(path: Path) -> bool:
    return path.is_file() and path.name.lower().endswith(ARCHIVE_SUFFIXES)


# -- members of archives and folders ----------------------------------------------------------------

@dataclass
class Member:
    """One regular file of a source: its cleaned relative name and how to read it."""

    name: str
    open: Callable[[], IO[bytes]]
    path: Path | None = None          # set for files in a folder (they can be hard-linked)
    source: Path | None = None        # the archive or folder it comes from (for messages)


ARCHIVE_ERRORS = (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError, zlib.error, ValueError)


def _broken(path: Path, e: BaseException) -> DataError:
    first = (str(e).strip().splitlines() or [type(e).__name__])[0][:160]
    return DataError(f"{path} is truncated or corrupt ({type(e).__name__}: {first}); download it again")


def _tar_members(path: Path) -> Iterator[Member]:
    try:
        with tarfile.open(path, "r:*") as tf:
            for info in tf:
                if not info.isfile():     # links, devices, folders: never followed
                    continue
                name = clean_member_name(info.name)
                if name is None:
                    log.warning("skipping unsafe archive member %r in %s", info.name, path)
                    continue
                yield Member(name, lambda info=info: tf.extractfile(info), source=path)
    except ARCHIVE_ERRORS as e:
        raise _broken(path, e) from None


def _zip_members(path: Path) -> Iterator[Member]:
    try:
        with zipfile.ZipFile(path) as zf:
            for info in zf.infolist():
                if info.is_dir():
                    continue
                name = clean_member_name(info.filename)
                if name is None:
                    log.warning("skipping unsafe archive member %r in %s", info.filename, path)
                    continue
                yield Member(name, lambda info=info: zf.open(info), source=path)
    except ARCHIVE_ERRORS as e:
        raise _broken(path, e) from None


def iter_members(src: Path, *, into_archives: bool = True) -> Iterator[Member]:
    """Regular files of an archive, or of a folder (recursively; archives inside it are opened too)."""
    src = Path(src)
    if src.is_file():
        low = src.name.lower()
        if low.endswith(".zip"):
            yield from _zip_members(src)
        elif low.endswith(ARCHIVE_SUFFIXES):
            yield from _tar_members(src)
        else:
            yield Member(src.name, lambda: open(src, "rb"), src)
        return
    if not src.is_dir():
        raise DataError(f"{src} does not exist; pass the downloaded archive or folder")
    for p in sorted(src.rglob("*")):
        if not p.is_file():            # a user's own folder: its symlinks are followed
            continue
        if into_archives and is_archive(p):
            log.info("reading archive %s", p)
            yield from iter_members(p, into_archives=False)
        else:
            rel = p.relative_to(src).as_posix()
            yield Member(rel, lambda p=p: open(p, "rb"), p)


# -- writing --------------------------------------------------------------------------------------

def write_member(member: Member, dest: Path, *, link: bool = True) -> None:
    """Put ``member`` at ``dest``: a hard link for folder files when possible, else an atomic copy."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    if member.path is not None and link:
        try:
            if dest.exists():
                if os.path.samefile(member.path, dest):
                    return
                dest.unlink()
            os.link(member.path, dest)
            return
        except OSError:
            pass                       # other file system, or links not allowed: copy
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    try:
        with member.open() as fin, open(tmp, "wb") as fout:
            shutil.copyfileobj(fin, fout, 1 << 20)
    except DataError:
        raise
    except ARCHIVE_ERRORS as e:
        tmp.unlink(missing_ok=True)
        raise _broken(member.source or Path(member.name), e) from None
    os.replace(tmp, dest)


def writable_dir(path: Path) -> Path:
    """Create ``path`` (with parents) or say how to pick another place."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".write-test-{os.getpid()}"
        probe.touch()
        probe.unlink()
    except OSError as e:
        raise DataError(f"cannot write to {path} ({e.strerror}); pass --root or set BENCH_DATA_ROOT "
                        "to a writable folder") from e
    return path


# -- atomic preparation -----------------------------------------------------------------------------

MARKER = "PREPARED.json"


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def prepare_atomically(root: Path, fill: Callable[[Path], dict[str, int]], count: Callable[[Path], dict[str, int]],
                       source: Path) -> Path:
    """Prepare a dataset folder so that a crash never leaves a half-made one where the loader looks.

    ``fill(tmp)`` writes the new files into a temporary sibling folder (holding hard links to what
    ``root`` already had, so a second download adds to the first) and returns what it took; then
    ``count(tmp)`` counts what the loader will see, both go into the completion marker
    ``PREPARED.json``, and the folder replaces ``root`` by renames. ``check`` compares the files on
    disk with the marker's counts.
    """
    root = Path(root)
    parent = writable_dir(root.parent)
    tag = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp = parent / f".{root.name}.partial-{tag}"
    try:
        if root.is_dir():
            shutil.copytree(root, tmp, copy_function=_link_or_copy, ignore=shutil.ignore_patterns(MARKER))
        else:
            tmp.mkdir()
        taken = fill(tmp)
        marker = {"source": str(source), "files": taken, "counts": count(tmp), "complete": True,
                  "time": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        (tmp / MARKER).write_text(json.dumps(marker, indent=1))
        if root.exists():
            old = parent / f".{root.name}.old-{tag}"
            os.replace(root, old)
            os.replace(tmp, root)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return root


def verify_marker(root: Path, counts: dict[str, int], report: CheckReport) -> None:
    """Compare the files on disk (``counts``) with a prepared folder's marker; note leftovers of a crash."""
    leftovers = sorted(p.name for p in root.parent.glob(f".{root.name}.partial-*")) if root.parent.is_dir() else []
    if leftovers:
        report.hints.append(f"an interrupted `bench data prepare` left {root.parent / leftovers[0]}: delete it "
                            "and run prepare again")
    marker = root / MARKER
    if not marker.is_file():
        return
    try:
        expected = json.loads(marker.read_text()).get("counts") or {}
    except (OSError, ValueError):
        report.missing.append(f"{marker} cannot be read: run `bench data prepare` again")
        return
    for key, n in expected.items():
        have = counts.get(key, 0)
        if have != n:
            report.missing.append(f"{key}: {have} files on disk, {n} when it was prepared (files deleted or "
                                  "damaged since): run `bench data prepare` again")
