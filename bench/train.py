"""The generic training loop: one run (row x task x seed) from a RunSpec to checkpoints.

Never branches on a method's name: the adapter owns its losses and steps; the loop owns
batches, the D:G ratio, AMP, logging, the divergence guard and checkpoints.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from bench import checkpoint as ckpt
from bench import distributed, failpoints
from bench.batches import batch_loader, jitter
from bench.build import bind_task, build_adapter, build_dataset, seed_everything, train_context
from bench.ema import WeightAverage
from bench.errors import ConfigError, DivergenceError
from bench.gates import watch_discriminators
from bench.progress import bar as progress_bar
from bench.provenance import code_version, flatten, git_commit, protocol_hash, versions
from bench.registry import loaded_plugins
from bench.runspec import RunSpec
from bench.scalars import ScalarLog
from bench.tracking import open_tracker

log = logging.getLogger(__name__)

STATUS_FILE = "status.json"


@dataclass
class TrainOutcome:
    status: str                    # "complete" | "failed"
    step: int
    checkpoint: Path | None
    reason: str = ""
    seconds: float = 0.0


def read_status(run_dir: Path) -> dict[str, Any] | None:
    p = Path(run_dir) / STATUS_FILE
    if not p.exists():
        return None
    try:
        return json.loads(p.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def _write_status(run_dir: Path, **status: Any) -> None:
    p = Path(run_dir) / STATUS_FILE
    tmp = p.with_suffix(".tmp")
    tmp.write_text(json.dumps(status, indent=1))
    tmp.replace(p)


#: profile keys that may change between an interrupted run and its resumption
RESUMABLE_CHANGES = ("steps", "checkpoint_every", "keep_checkpoints", "log_every", "num_workers", "eval_subset",
                     "eval_batch_size", "explode_above", "eval_epochs", "eval_steps", "time_limit_min",
                     "stall_limit_min")


def training_config(spec: RunSpec) -> dict[str, Any]:
    """What defines the trained weights: the spec without its scoring and bookkeeping settings."""
    d = spec.to_dict()
    for k in ("metrics", "metric_options"):
        d.pop(k, None)
    d["train"] = {k: v for k, v in d["train"].items() if k not in RESUMABLE_CHANGES}
    return d


def run_info(spec: RunSpec, deterministic: bool, device: torch.device) -> dict[str, Any]:
    config = training_config(spec)
    return {"spec": spec.to_dict(), "config_hash": protocol_hash(config), "training_config": config,
            "deterministic": deterministic, "device": str(device), "versions": versions(),
            "git_commit": git_commit(), "code_version": code_version(), "plugins": loaded_plugins()}


def check_resume(spec: RunSpec, run_dir: Path, force: bool = False) -> None:
    """Refuse (one line) to resume a run whose newest checkpoint was made with another configuration."""
    last = ckpt.latest_checkpoint(run_dir)
    if last is None or force:
        return
    saved = ckpt.read_run_info(last)
    now = json.loads(json.dumps(training_config(spec)))           # as run.json holds it (tuples as lists)
    stored = saved.get("training_config")
    if stored is not None and saved.get("config_hash") not in (None, protocol_hash(stored)):
        raise ConfigError(f"{last}/run.json's configuration does not match its own hash (edited by hand?); "
                          "the run cannot be trusted: choose a new --out, or pass --force-resume to continue anyway")
    if stored is None and saved.get("config_hash") in (None, protocol_hash(now)):
        return                                    # a run made before run.json kept its configuration
    if stored == now:
        return
    old, new = flatten(stored or {}), flatten(now)
    diff = [f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]
    shown = "; ".join(diff[:3]) + (f"; and {len(diff) - 3} more" if len(diff) > 3 else "")
    raise ConfigError(f"{run_dir} was trained with another configuration ({shown or 'config hash differs'}); "
                      "pass --force-resume to continue it anyway, or choose a new --out")


def train(spec: RunSpec, run_dir: Path, *, device: torch.device, deterministic: bool = False,
          resume: bool = False, progress: bool = True, force_resume: bool = False) -> TrainOutcome:
    """Train one run. A non-finite loss ends it as ``failed`` (recorded, not raised)."""
    run_dir = Path(run_dir)
    if resume:
        check_resume(spec, run_dir, force_resume)
    run_dir.mkdir(parents=True, exist_ok=True)
    prof = spec.profile_settings
    t0 = time.perf_counter()
    w, device = distributed.start(device)      # one process, or a rank of torchrun's (bench/distributed.py)
    distributed.check_batch(prof.batch_size, w)
    seed_everything(spec.seed, deterministic)

    load = prof.load_size or prof.image_size
    data = build_dataset(spec, "train", load, prof.train_subset)
    task = bind_task(spec, data)
    ctx = train_context(spec, device)
    ctx.steps_per_epoch = max(1, len(data) // prof.batch_size)
    adapter = build_adapter(spec, task, ctx)
    watch_discriminators(adapter)          # the first G update: a D whose output ignores its input fails the run

    average = WeightAverage(adapter, prof.ema) if prof.ema else None      # of G's weights (bench/ema.py)
    saved = {**adapter.modules, **(average.modules() if average else {})}
    start, loaded = 0, None
    if resume and (last := ckpt.latest_checkpoint(run_dir)) is not None:
        loaded = ckpt.load_checkpoint(last, saved, adapter.optimizers)
        start = loaded.step
        adapter.load_extra_state(loaded.state.get("adapter") or {})
        log.info("resumed %s from %s", run_dir, last.name)
    elif any(ckpt.list_checkpoints(run_dir)):
        raise ConfigError(f"{run_dir} already holds checkpoints; pass --resume to continue it or choose a new --out")
    if w.parallel:
        distributed.sync_batch_norm(adapter.modules, device)
        distributed.broadcast_modules(adapter.modules)
        distributed.average_gradients(adapter.optimizers, w)

    info = run_info(spec, deterministic, device) | ({"world_size": w.size} if w.parallel else {})
    status = _write_status if w.main else (lambda *a, **k: None)     # rank 0 writes the run folder
    status(run_dir, status="running", step=start)

    d_per_g = max(1, int(adapter.d_steps_per_g))
    evals = eval_steps(prof, ctx.steps_per_epoch, d_per_g)

    def save(step: int) -> Path:
        if not w.main:
            return run_dir / ckpt.CHECKPOINTS_DIR / ckpt.step_dir_name(step)
        return ckpt.save_checkpoint(run_dir, step, saved, adapter.optimizers,
                                    {"step": step, "adapter": adapter.extra_state()}, info,
                                    keep_last=prof.keep_checkpoints, keep_steps=frozenset(evals.values()))

    if prof.steps == 0 and loaded is None:            # a fixed model: nothing to train
        last_ckpt = save(0)
        status(run_dir, status="complete", step=0, checkpoint=last_ckpt.name)
        return TrainOutcome("complete", 0, last_ckpt, "", time.perf_counter() - t0)
    scalars = ScalarLog(run_dir, resume_step=start, tracker=open_tracker(run_dir, spec)) if w.main else None
    loader = batch_loader(data, prof.batch_size, spec.seed, start * d_per_g, prof.steps * d_per_g,
                          prof.num_workers, b_keys=task.stream_b_keys())
    batches = iter(loader)               # draws torch's worker seed: before the RNG is restored
    if loaded is not None:
        loaded.restore_rng()
    bar = progress_bar(total=prof.steps, initial=start, disable=not progress or not w.main, leave=False,
                       desc=f"{spec.row} | {spec.task} | seed {spec.seed}", unit="step", dynamic_ncols=True)
    step, last_ckpt = start, None
    adapter.train(True)
    try:
        for i, batch in enumerate(batches, start=start * d_per_g):
            batch = jitter(batch, prof.image_size, spec.seed, i, prof.flip)
            batch = ctx.to_device(distributed.shard(batch, w))      # this rank's slice of the global batch
            update_g = (i + 1) % d_per_g == 0
            losses = adapter.train_step(batch, step, update_g)
            _guard(losses, step + 1, prof.explode_above)
            if not update_g:
                continue
            step += 1
            if average is not None:
                average.update()
            bar.update(1)
            failpoints.reached("train-step")
            if step % prof.log_every == 0 or step == prof.steps:
                vals = distributed.mean_losses(losses, w)
                if scalars is not None:
                    scalars.write(step, vals)
                bar.set_postfix({k: f"{v:.3g}" for k, v in vals.items() if k in ("loss_D", "loss_G")})
            if step % prof.checkpoint_every == 0 or step == prof.steps or step in evals.values():
                check_finite(saved, step)
                last_ckpt = save(step)
                failpoints.reached("checkpoint")
    except DivergenceError as e:
        status(run_dir, status="failed", step=e.step, reason=str(e))
        log.warning("%s: %s", run_dir, e)
        return TrainOutcome("failed", e.step, last_ckpt, str(e), time.perf_counter() - t0)
    finally:
        bar.close()
        if scalars is not None:
            scalars.close()
    if last_ckpt is None:
        last_ckpt = ckpt.latest_checkpoint(run_dir)
    status(run_dir, status="complete", step=step, checkpoint=last_ckpt.name if last_ckpt else None,
           eval_checkpoints={label: ckpt.step_dir_name(s) for label, s in evals.items()})
    distributed.barrier(w)                            # rank 0's last checkpoint is on disk for every rank
    return TrainOutcome("complete", step, last_ckpt, "", time.perf_counter() - t0)


def eval_steps(prof: Any, steps_per_epoch: int, d_per_g: int) -> dict[str, int]:
    """Label -> generator step of the checkpoints also scored: ``e<N>`` the end of epoch N (``eval_epochs``)
    and ``s<N>`` step N (``eval_steps``, a budget ladder), within the profile's steps."""
    out = {}
    for e in prof.eval_epochs:
        s = math.ceil(e * steps_per_epoch / d_per_g)
        if s <= prof.steps:
            out[f"e{e}"] = s
        else:
            log.warning("eval epoch %d ends at step %d, after the last step (%d): not scored", e, s, prof.steps)
    for s in getattr(prof, "eval_steps", ()):
        out[f"s{s}"] = s
    return out


def _guard(losses: dict[str, torch.Tensor], step: int, explode_above: float | None = None) -> None:
    """Raise DivergenceError naming the first non-finite (or exploded) loss; one host sync per step."""
    if not losses:
        return
    names = list(losses)
    vals = torch.stack([losses[n].detach().float().reshape(()) for n in names]).tolist()
    for n, v in zip(names, vals):
        if not math.isfinite(v):
            raise DivergenceError(step, n, v)
        if explode_above is not None and abs(v) > explode_above:
            raise DivergenceError(step, n, v, f"loss '{n}' = {v:.4g} exceeds explode_above = {explode_above:g}")


def check_finite(modules: dict[str, torch.nn.Module], step: int) -> None:
    """Raise DivergenceError when a parameter or buffer (e.g. BatchNorm statistics) is not finite."""
    for mname, module in modules.items():
        for kind, tensors in (("parameter", module.named_parameters()), ("buffer", module.named_buffers())):
            for key, t in tensors:
                if t.is_floating_point() and not bool(torch.isfinite(t).all()):
                    raise DivergenceError(step, mname, math.nan,
                                          f"module '{mname}' holds non-finite values in {kind} '{key}'")
