"""The scorer contract: how a metric is computed from a trained model.

Each metric module holds pure functions on tensors (tested against independent references)
and registers a *scorer* in ``bench.registry.METRICS`` under a short name used by suite files::

    @METRICS.register("depth")
    class DepthScorer(Scorer): ...

The scoring loop (``bench/score.py``) builds each scorer once per run as ``cls(ctx)``, then for
every evaluation batch calls ``update(pred, batch)`` with the generator's output ``pred`` (in the
task's y-space: [-1, 1], ``ctx.task.y_channels`` channels) and the batch dict (see
``bench.data.base``), and finally ``compute()``. Scorers decode predictions through the task
(``ctx.task.decode_labels`` / ``decode_depth``) and never branch on a method's name.

``compute()`` returns ``{metric_key: float}``; leaderboard columns are ``<task>/<metric_key>``.
``protocol()`` returns a JSON-able dict of everything that defines the number (extractor and
its weights' sha256, resize mode, sample counts, crop, averaging, ...). It is hashed and stamped
on every result record.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from bench.tasks import TaskSpec


@dataclass
class ScoreContext:
    task: TaskSpec                          # bound to the dataset
    device: torch.device
    cache_dir: Path                         # for cached segmenters / reference statistics
    options: dict[str, Any] = field(default_factory=dict)    # suite [metric_options.<name>] + profile
    train_data: Callable[[], torch.utils.data.Dataset] | None = None   # real training split, built lazily
    seed: int = 0


class Scorer:
    """Streaming scorer: ``update`` per batch, ``compute`` once."""

    #: metric keys this scorer produces (for column ordering and documentation)
    keys: tuple[str, ...] = ()
    #: the task outputs this scorer can score ("image", "labels", "depth")
    outputs: tuple[str, ...] = ("image", "labels", "depth")
    #: larger is better, per key (for ranking); keys not listed are "lower is better"
    higher_is_better: tuple[str, ...] = ()

    def __init__(self, ctx: ScoreContext):
        self.ctx = ctx

    def update(self, pred: torch.Tensor, batch: dict[str, torch.Tensor]) -> None:
        raise NotImplementedError

    def compute(self) -> dict[str, float]:
        raise NotImplementedError

    def protocol(self) -> dict[str, Any]:
        return {"scorer": type(self).__name__}

    def score_reference(self, batch: dict[str, torch.Tensor]) -> torch.Tensor | None:
        """The 'oracle' prediction for this batch (the real target), or None if not meaningful."""
        return self.ctx.task.y(batch)
