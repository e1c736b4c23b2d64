"""Score one run: its checkpoint (or, for an oracle row, the real targets) on the test split.

Each metric in the run's spec is a registered scorer (``metrics/base.py``) fed batch by batch;
the evaluation protocol of every number (scorer protocol + split, sample count, size, eval mode)
is hashed and returned with it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from bench import checkpoint as ckpt
from bench.batches import eval_loader
from bench.build import bind_task, build_adapter, build_dataset, train_context
from bench.data.paths import cache_dir
from bench.errors import MetricError
from bench.provenance import protocol_hash
from bench.registry import METRICS
from bench.runspec import RunSpec
from metrics.base import ScoreContext, Scorer

log = logging.getLogger(__name__)


@dataclass
class ScoreOutcome:
    values: dict[str, float]                                  # metric key -> value
    protocol_hashes: dict[str, str]                           # metric key -> protocol hash
    protocols: dict[str, dict[str, Any]] = field(default_factory=dict)   # hash -> protocol


def _scorers(spec: RunSpec, task: Any, device: torch.device) -> dict[str, Scorer]:
    prof = spec.profile_settings

    def train_data() -> torch.utils.data.Dataset:
        return build_dataset(spec, "train", prof.image_size, prof.train_subset)

    out = {}
    for name in spec.metrics:
        ctx = ScoreContext(task=task, device=device, cache_dir=cache_dir(),
                           options=dict(spec.metric_options.get(name, {})), train_data=train_data, seed=0)
        out[name] = METRICS.get(name)(ctx)
    return out


def score_run(spec: RunSpec, checkpoint: Path | None, *, device: torch.device,
              progress: bool = True) -> ScoreOutcome:
    prof = spec.profile_settings
    data = build_dataset(spec, "test", prof.image_size, prof.eval_subset)
    task = bind_task(spec, data)
    scorers = _scorers(spec, task, device)
    adapter = None
    eval_mode = None
    if spec.kind == "model":
        if checkpoint is None:
            raise MetricError(f"run '{spec.row}' / {spec.task} / seed {spec.seed} has no checkpoint to score; "
                              "train it first (bench train) or rerun with --resume")
        ctx = train_context(spec, device)
        adapter = build_adapter(spec, task, ctx)
        ckpt.load_checkpoint(checkpoint, adapter.modules, None)
        eval_mode = bool(spec.method_options.get("eval_mode", True))
    loader = eval_loader(data, prof.eval_batch_size, prof.num_workers)
    fed = {name: 0 for name in scorers}
    for batch in tqdm(loader, disable=not progress, leave=False, desc=f"score {spec.row} | {spec.task}",
                      unit="batch", dynamic_ncols=True):
        batch = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
        pred = adapter.generate(batch) if adapter is not None else None
        for name, s in scorers.items():
            p = pred if pred is not None else s.score_reference(batch)
            if p is not None:
                s.update(p, batch)
                fed[name] += 1

    values: dict[str, float] = {}
    hashes: dict[str, str] = {}
    protocols: dict[str, dict[str, Any]] = {}
    for name, s in scorers.items():
        if not fed[name]:
            continue                     # an oracle row for a metric with no meaningful reference
        result = s.compute()
        protocol = {"metric": name, "scorer": s.protocol(), "dataset": spec.dataset,
                    "dataset_options": spec.dataset_options, "split": "test", "eval_subset": prof.eval_subset,
                    "num_samples": len(data), "image_size": prof.image_size, "dtype": "float32",
                    "generator_eval_mode": eval_mode, "row_kind": spec.kind}
        h = protocol_hash(protocol)
        protocols[h] = protocol
        for k, v in result.items():
            if k in values:
                raise MetricError(f"two metrics of task '{spec.task}' both produce '{k}'; "
                                  "drop one of them from the suite's [metrics]")
            values[k] = float(v)
            hashes[k] = h
    return ScoreOutcome(values, hashes, protocols)
