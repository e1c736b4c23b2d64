"""``bench data check NAME`` / ``bench data prepare NAME --src DIR``: dispatch to the dataset module."""

from __future__ import annotations

import importlib
from pathlib import Path

from bench.errors import DataError
from bench.registry import DATASETS


def _module(name: str):
    DATASETS.get(name)  # raises a RegistryError listing the names when unknown
    return importlib.import_module(DATASETS.origin(name))


def check(name: str, root: Path | None = None):
    mod = _module(name)
    if not hasattr(mod, "check"):
        from bench.data.layout import CheckReport
        return CheckReport(ok=True, name=name, expected="generated on the fly; nothing to download",
                           found=[], missing=[])
    return mod.check(root)


def prepare(name: str, src: Path, root: Path | None = None) -> Path:
    mod = _module(name)
    if not hasattr(mod, "prepare"):
        raise DataError(f"dataset '{name}' is generated on the fly; it needs no preparation")
    if not Path(src).exists():
        raise DataError(f"--src {src} does not exist; give the folder or archive you downloaded")
    return mod.prepare(Path(src), root)
