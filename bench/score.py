"""Score runs: each checkpoint (or, for an oracle row, the real targets) on the test split.

The metric entries of a run (``name`` or ``name@output``) are registered scorers
(``bench.contracts.Scorer``). One pass over the test split feeds every paired and sample-fed scorer:
the model is asked once per batch for its named outputs, from the batch (``FromBatch``) or, on a
task without paired inputs, from the prior with the batch's class labels (``FromPrior``, latents
fixed by the batch index); each scorer reads its output and compares it with the task field that
output estimates. Joint scorers (NRDS) take every row's checkpoint of a seed together
(:func:`score_joint`). Every number is returned with the hash of its evaluation protocol.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping

import torch

from bench import checkpoint as ckpt
from bench import distributed
from bench import failpoints
from bench import gates
from bench.batches import eval_loader
from bench.build import bind_task, build_adapter, build_dataset, train_context
from bench.contracts import FromBatch, FromPrior, MethodAdapter, ScoreContext, derive_seed, scorer_feed
from bench.data.paths import cache_dir
from bench.ema import averaged_into, ema_names
from bench.errors import MetricError
from bench.progress import bar as progress_bar
from bench.provenance import protocol_hash
from bench.registry import METHODS, METRICS
from bench.runspec import RunSpec
from bench.tasks import TaskSpec
from bench.train import check_finite
from bench.validate import parse_metric

log = logging.getLogger(__name__)

PRIOR_SEED = 2020                 # latents of FromPrior scoring: derived from (this, batch index)


@dataclass
class ScoreOutcome:
    values: dict[str, float]                                  # metric key -> value
    protocol_hashes: dict[str, str]                           # metric key -> protocol hash
    protocols: dict[str, dict[str, Any]] = field(default_factory=dict)   # hash -> protocol
    degenerate: dict[str, str] = field(default_factory=dict)  # output -> why the gate flagged it


@dataclass
class Entry:
    """One metric entry of a run, resolved: scorer class, the output it reads, the field it scores."""

    text: str
    name: str
    output: str
    explicit: bool
    cls: Any
    field: str

    @property
    def feed(self) -> str:
        return scorer_feed(self.cls)

    def key(self, k: str) -> str:
        return f"{k}@{self.output}" if self.explicit else k


def entries(spec: RunSpec) -> list[Entry]:
    outputs = dict(getattr(METHODS.get(spec.method), "outputs", {"y": "y"})) if spec.kind == "model" else {}
    out = []
    for text in spec.metrics:
        name, output = parse_metric(text)
        cls = METRICS.get(name)
        o = output or getattr(cls, "reads", "y")
        out.append(Entry(text, name, o, output is not None, cls, outputs.get(o, o)))
    return out


def higher_is_better(cls: Any, key: str) -> bool:
    fn = getattr(cls, "is_higher_better", None)
    if fn is not None:
        return bool(fn(key))
    base = key.split("@", 1)[0]
    return any(base == k or base.startswith(k + "_") for k in getattr(cls, "higher_is_better", ()))


def open_model(spec: RunSpec, checkpoint: Path | None, task: TaskSpec, device: torch.device) -> MethodAdapter:
    if checkpoint is None:
        raise MetricError(f"run '{spec.row}' / {spec.task} / seed {spec.seed} has no checkpoint to score; "
                          "train it first (bench train) or rerun with --resume")
    adapter = build_adapter(spec, task, train_context(spec, device))
    loaded = ckpt.load_checkpoint(checkpoint, adapter.modules, None)
    if spec.train.get("ema"):                            # sample with the average of G's weights (bench/ema.py)
        ckpt.load_checkpoint(checkpoint, averaged_into(adapter), None)
    check_finite(adapter.modules, loaded.step)          # a blown-up model is never scored
    return adapter


def _class_labels(task: TaskSpec, batch: Mapping[str, Any]) -> torch.Tensor | None:
    for name, f in task.inputs.items():
        if f.kind == "class":
            return task.get(name, batch)
    return None


def _batch_len(batch: Mapping[str, Any]) -> int:
    for v in batch.values():
        if isinstance(v, torch.Tensor) and v.dim() >= 1:
            return int(v.shape[0])
    raise MetricError("an evaluation batch holds no tensors")


def model_outputs(adapter: MethodAdapter, task: TaskSpec, batch: dict[str, Any], index: int,
                  truncation: float | None = None) -> dict[str, Any]:
    """The adapter's named outputs for one test batch: from the batch, or from the prior on tasks
    without paired inputs (the batch's class labels, latents fixed by the batch index)."""
    if task.pairing == "none":
        req = FromPrior(_batch_len(batch), _class_labels(task, batch), derive_seed(PRIOR_SEED, index),
                        truncation=truncation)
    else:
        req = FromBatch(batch)
    out = adapter.sample(req)
    if isinstance(out, torch.Tensor):
        out = {"y": out}
    return out


def scored_outputs(outs: dict[str, Any], kinds: dict[str, tuple[str, str]], where: str) -> dict[str, Any]:
    """The outputs scorers read (``kinds``: output -> (field kind, label form)) checked finite and put in
    the saved form (:func:`bench.gates.saved_form`); other outputs as they are."""
    out = dict(outs)
    for name, (kind, label_output) in kinds.items():
        if name in out:
            gates.check_finite(name, out[name], where)
            out[name] = gates.saved_form(out[name], kind, label_output)
    return out


def output_kinds(task: TaskSpec, items: list[Entry]) -> dict[str, tuple[str, str]]:
    """Output -> (kind of the field it estimates, the task's label form) for the entries' outputs."""
    return {e.output: (task.field(e.field).kind if e.field in task.fields else "image", task.label_output)
            for e in items}


def test_batches(spec: RunSpec, device: torch.device, desc: str, progress: bool
                 ) -> tuple[Any, TaskSpec, Iterator[tuple[int, dict[str, Any]]]]:
    prof = spec.profile_settings
    data = build_dataset(spec, "test", prof.image_size, prof.eval_subset)
    task = bind_task(spec, data)
    loader = eval_loader(data, prof.eval_batch_size, prof.num_workers)

    def it() -> Iterator[tuple[int, dict[str, Any]]]:
        for i, batch in enumerate(progress_bar(loader, disable=not progress, leave=False, desc=desc, unit="batch",
                                                dynamic_ncols=True)):
            yield i, {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
    return data, task, it()


def _context(spec: RunSpec, e: Entry, task: TaskSpec, device: torch.device,
             artifacts: Path | None = None, seed: int = 0, checkpoint: Path | None = None) -> ScoreContext:
    prof = spec.profile_settings

    def train_data() -> torch.utils.data.Dataset:
        return build_dataset(spec, "train", prof.image_size, prof.train_subset)

    return ScoreContext(task=task.view(e.field), device=device, cache_dir=cache_dir(),
                        options=dict(spec.metric_options.get(e.name, {})), train_data=train_data, seed=seed,
                        artifacts=artifacts, run_dir=None if checkpoint is None else ckpt.run_dir_of(checkpoint),
                        step=None if checkpoint is None else ckpt.step_of(checkpoint))


def _protocol(spec: RunSpec, e: Entry, scorer: Any, data: Any, keys: list[str],
              sampling: dict[str, Any]) -> dict[str, Any]:
    prof = spec.profile_settings
    return {"metric": e.name, "scorer": scorer.protocol(), "output": e.output, "field": e.field, "feed": e.feed,
            "dataset": spec.dataset, "dataset_options": spec.dataset_options, "split": "test",
            "eval_subset": prof.eval_subset, "num_samples": len(data), "image_size": prof.image_size,
            "dtype": "float32", "row_kind": spec.kind, "output_domain": gates.DOMAIN, **sampling,
            "higher_is_better": sorted(e.key(k) for k in keys if higher_is_better(e.cls, k))}


def _sampling(spec: RunSpec, adapter: MethodAdapter | None, task: TaskSpec) -> dict[str, Any]:
    if adapter is None:
        return {}
    out = dict(adapter.eval_protocol())
    if spec.train.get("ema"):
        out["ema"] = {"decay": spec.train["ema"], "modules": ema_names(adapter)}
    if task.pairing == "none":
        out |= {"prior_seed": PRIOR_SEED, "prior_batch": spec.profile_settings.eval_batch_size}
        if spec.train.get("truncation") is not None:
            out["truncation"] = spec.train["truncation"]
    return out


def preflight(spec: RunSpec, device: torch.device) -> None:
    """Everything a run's scoring will read, checked before any training: the test split, the task's
    fit to it, and each scorer's own inputs (``Scorer.preflight``: weights files, extractors)."""
    prof = spec.profile_settings
    data = build_dataset(spec, "test", prof.image_size, 1)
    task = bind_task(spec, data)
    for e in entries(spec):
        check = getattr(e.cls, "preflight", None)
        if check is not None:
            check(_context(spec, e, task, device))


def score_run(spec: RunSpec, checkpoint: Path | None, *, device: torch.device,
              progress: bool = True) -> ScoreOutcome:
    """Score one run's paired, sample-fed and log metrics (joint ones are scored by :func:`score_joint`)."""
    mine = [e for e in entries(spec) if e.feed != "joint"]
    if not mine:
        return ScoreOutcome({}, {}, {})
    data, task, batches = test_batches(spec, device, f"score {spec.row} | {spec.task}", progress)
    logged = [e for e in mine if e.feed == "log"]
    mine = [e for e in mine if e.feed != "log"]
    adapter = open_model(spec, checkpoint, task, device) if spec.kind == "model" else None
    kinds = output_kinds(task, mine)

    def outputs(i: int, batch: dict[str, Any]) -> dict[str, Any]:
        return scored_outputs(model_outputs(adapter, task, batch, i, spec.train.get("truncation")), kinds,
                              f"test batch {i}")
    w = distributed.world()
    shared = None                     # under torchrun: every rank's outputs, gathered on rank 0
    if w.parallel and adapter is not None and distributed.dist.is_initialized():
        batches = list(batches)
        shared = distributed.gather_on_main({i: outputs(i, batch) for i, batch in batches if i % w.size == w.rank}, w)
        if not w.main:
            return ScoreOutcome({}, {}, {})
    scorers = {e.text: e.cls(_context(spec, e, task, device)) for e in mine}
    checks = {o: gates.OutputGate(o) for o in kinds} if adapter is not None else {}
    fields = {e.output: e.field for e in mine}
    fed = {e.text: 0 for e in mine}
    for i, batch in batches:
        outs = None
        if shared is not None:
            outs = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in shared[i].items()}
        elif adapter is not None:
            outs = outputs(i, batch)
        if outs is not None:
            for o, gate in checks.items():
                if o in outs:
                    gate.update(outs[o], task.view(fields[o]).y(batch) if fields[o] in task.fields else None)
        for e in mine:
            s = scorers[e.text]
            if outs is not None:
                if e.output not in outs:
                    raise MetricError(f"method '{spec.method}' gave no output '{e.output}' (it gave "
                                      f"{', '.join(outs)}); metric '{e.text}' cannot be scored")
                p = outs[e.output]
            else:
                p = s.score_reference(batch)
            if p is not None:
                s.update(p, batch)
                fed[e.text] += 1
        failpoints.reached("score-batch")

    values: dict[str, float] = {}
    hashes: dict[str, str] = {}
    protocols: dict[str, dict[str, Any]] = {}
    sampling = _sampling(spec, adapter, task)
    for e in mine:
        if not fed[e.text]:
            continue                     # an oracle row for a metric with no meaningful reference
        s = scorers[e.text]
        result = s.compute()
        protocol = _protocol(spec, e, s, data, list(result), sampling)
        h = protocol_hash(protocol)
        protocols[h] = protocol
        for k, v in result.items():
            values[_fresh(e.key(k), values, spec)] = float(v)
            hashes[e.key(k)] = h
    if adapter is not None:        # an oracle row has no training to read
        for e in logged:
            s = e.cls(_context(spec, e, task, device, checkpoint=checkpoint))
            result = s.compute()
            protocol = _protocol(spec, e, s, data, list(result), {})
            h = protocol_hash(protocol)
            protocols[h] = protocol
            for k, v in result.items():
                values[_fresh(e.key(k), values, spec)] = float(v)
                hashes[e.key(k)] = h
    degenerate = {}
    if checks:
        prof = spec.profile_settings
        gp = gates.protocol() | {"dataset": spec.dataset, "split": "test", "eval_subset": prof.eval_subset,
                                 "num_samples": len(data), "image_size": prof.image_size}
        gh = protocol_hash(gp)
        protocols[gh] = gp
        for o, gate in checks.items():
            got = gate.compute()
            for k, v in gate.keys(got).items():
                values[k], hashes[k] = v, gh
            if gates.reason(got):
                degenerate[o] = gates.reason(got)
    return ScoreOutcome(values, hashes, protocols, degenerate)


def _fresh(key: str, values: dict[str, float], spec: RunSpec) -> str:
    if key in values:
        raise MetricError(f"two metrics of task '{spec.task}' both produce '{key}'; "
                          "drop one of them from the suite's [metrics]")
    return key


def joint_entries(spec: RunSpec) -> list[Entry]:
    return [e for e in entries(spec) if e.feed == "joint"]


def score_joint(runs: list[tuple[RunSpec, Path]], e: Entry, *, device: torch.device, artifacts: Path,
                progress: bool = True) -> tuple[dict[str, ScoreOutcome], dict[str, str]]:
    """Score the models of ``runs`` (same task and seed; model rows with a checkpoint) together with
    the joint scorer of entry ``e``; returns each row's values with one shared protocol hash, and the rows
    left out with the reason (a model whose outputs are not finite is not scored with the others)."""
    if not runs:
        return {}, {}
    first = runs[0][0]
    data, task, batches = test_batches(first, device, f"{e.name}: real samples", progress)
    artifacts.mkdir(parents=True, exist_ok=True)
    scorer = e.cls(_context(first, e, task, device, artifacts, seed=first.seed))
    for _, batch in batches:
        scorer.update_real(batch)
    sampling: dict[str, Any] = {}
    left_out: dict[str, str] = {}
    for spec, checkpoint in runs:
        _, task_r, batches = test_batches(spec, device, f"{e.name}: {spec.row}", progress)
        adapter = open_model(spec, checkpoint, task_r, device)
        kinds = output_kinds(task_r, [e])
        try:
            trunc = spec.train.get("truncation")
            samples = [(scored_outputs(model_outputs(adapter, task_r, batch, i, trunc), kinds,
                                       f"test batch {i}")[e.output], batch) for i, batch in batches]
        except MetricError as ex:
            left_out[spec.row] = str(ex)
            continue
        sampling[spec.row] = _sampling(spec, adapter, task_r)
        for pred, batch in samples:
            scorer.update_model(spec.row, pred, batch)
    if not sampling:
        return {}, left_out
    result = scorer.compute_joint()
    keys = sorted({k for v in result.values() for k in v})
    protocol = _protocol(first, e, scorer, data, keys, {"models": sorted(sampling), "sampling": sampling})
    protocol["row_kind"] = "model"
    h = protocol_hash(protocol)
    out = {}
    for row, vals in result.items():
        values = {e.key(k): float(v) for k, v in vals.items()}
        out[row] = ScoreOutcome(values, {k: h for k in values}, {h: protocol})
    return out, left_out
