"""Scalar logging to CSV (always), TensorBoard (when installed) and an experiment tracker (``bench run --track``:
bench/tracking.py); the CSV and TensorBoard resumable without duplicates."""

from __future__ import annotations

import csv
import logging
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


class ScalarLog:
    def __init__(self, run_dir: Path, resume_step: int = 0, tensorboard: bool = True, tracker: Any = None):
        self.path = Path(run_dir) / "scalars.csv"
        self._rows: list[dict[str, float]] = []
        if self.path.exists():
            with self.path.open(newline="") as f:
                self._rows = [r for r in csv.DictReader(f) if int(float(r["step"])) <= resume_step]
        self._keys = sorted({k for r in self._rows for k in r if k != "step"})
        self._rewrite()
        self.tracker = tracker
        self.tb = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
                self.tb = SummaryWriter(str(Path(run_dir) / "tb"), purge_step=resume_step + 1 if resume_step else None)
            except ImportError:  # pragma: no cover - tensorboard is a dependency
                log.info("tensorboard not installed; logging scalars to CSV only")

    def _rewrite(self) -> None:
        with self.path.open("w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=["step", *self._keys])
            w.writeheader()
            w.writerows(self._rows)

    def write(self, step: int, scalars: dict[str, float]) -> None:
        row = {"step": step, **scalars}
        self._rows.append(row)
        new = sorted(set(scalars) - set(self._keys))
        if new:
            self._keys = sorted(set(self._keys) | set(new))
            self._rewrite()
        else:
            with self.path.open("a", newline="") as f:
                csv.DictWriter(f, fieldnames=["step", *self._keys]).writerow(row)
        if self.tb is not None:
            for k, v in scalars.items():
                self.tb.add_scalar(k, v, step)
        if self.tracker is not None:
            self.tracker.log(step, scalars)

    def close(self) -> None:
        if self.tb is not None:
            self.tb.flush()
            self.tb.close()
        if self.tracker is not None:
            self.tracker.close()
