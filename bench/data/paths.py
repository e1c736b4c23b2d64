"""Where data lives: one setting, ``BENCH_DATA_ROOT`` (default ``~/.cache/cgan-bench/data``)."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Callable

log = logging.getLogger(__name__)

ENV_VAR = "BENCH_DATA_ROOT"
CACHE_ENV_VAR = "BENCH_CACHE_DIR"


def data_root() -> Path:
    """Folder holding one sub-folder per dataset (and pretrained weights)."""
    v = os.environ.get(ENV_VAR)
    return Path(v).expanduser() if v else Path.home() / ".cache" / "cgan-bench" / "data"


def cache_dir() -> Path:
    """Folder for derived artefacts: unpacked archives, trained scoring segmenters, reference stats."""
    v = os.environ.get(CACHE_ENV_VAR)
    p = Path(v).expanduser() if v else Path.home() / ".cache" / "cgan-bench" / "cache"
    p.mkdir(parents=True, exist_ok=True)
    return p


def shared_archives(folder: str) -> Path | None:
    """``<data_root>/<folder>`` when it holds tar archives (the shared copies of pix2pix's downloads)."""
    d = data_root() / folder
    return d if d.is_dir() and any(d.glob("*.tar*")) else None


def locate(name: str, root: Path | str | None, shared_folder: str, prepare: Callable[[Path, Path], Path], *,
           auto_prepare: bool) -> Path:
    """Where a dataset is read from: ``root`` if given, else ``<data_root>/<name>``; when that is absent and
    ``<data_root>/<shared_folder>`` holds the archives, their copy unpacked (by ``prepare``, once, only
    when ``auto_prepare``) into ``<cache_dir>/<name>``."""
    if root is not None:
        return Path(root).expanduser()
    default = data_root() / name
    if default.is_dir():
        return default
    shared = shared_archives(shared_folder)
    if shared is None:
        return default
    target = cache_dir() / name
    if (target / "PREPARED.json").is_file():
        return target
    if not auto_prepare:
        return default
    log.info("unpacking the %s archives from %s into %s (once)", name, shared, target)
    return prepare(shared, target)
