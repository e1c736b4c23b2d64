"""Where data lives: one setting, ``BENCH_DATA_ROOT`` (default ``~/.cache/cgan-bench/data``)."""

from __future__ import annotations

import os
from pathlib import Path

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
