"""Data-parallel training of one run under ``torchrun``: ``torchrun --nproc_per_node N -m bench.cli train ...``.

What makes N processes train as one with an N-times-larger device budget, and give the weights one process
gives (within float tolerance):

- **The same batches.** Every rank draws the run's global batch of ``batch_size`` exactly as one process does
  (a pure function of seed and step, :class:`bench.batches.IterationBatchSampler`, then the same jitter) and
  keeps its own contiguous ``batch_size / N`` slice (:func:`shard`). ``batch_size`` must divide by N.
- **The same gradients.** Before each optimiser step, a step pre-hook averages the gradients of that
  optimiser's parameters over the ranks (:func:`average_gradients`): with losses that are means over the batch,
  the mean of the ranks' gradients is the gradient over the global batch. This is DistributedDataParallel's
  arithmetic without wrapping the adapter's networks, so every adapter works unchanged (its own forward calls,
  several optimisers, D steps between G steps).
- **The same start.** Rank 0's weights and buffers are broadcast before the first step (and after a resume).
- **Batch norm.** On CUDA, every BatchNorm becomes a SyncBatchNorm (statistics over the global batch). torch's
  SyncBatchNorm runs on GPUs only: on CPU a network with batch norm normalises each rank's slice by its own
  statistics, and the run says so (weights then differ from one process's).
- **One writer.** Rank 0 writes the checkpoints, the scalars and the status; the logged losses are averaged
  over the ranks first. Every rank draws the same random numbers in the same order (same seed, same shapes),
  so rank 0's saved RNG state resumes every rank exactly.
- **Scoring** (``torchrun ... -m bench.cli score RUN``): each rank makes the outputs of every N-th test batch,
  rank 0 gathers them (:func:`gather_on_main`) and feeds its scorers in batch order: the metrics of one
  process, the model's work split N ways (the scorers' own networks, e.g. a segmenter judge, run on rank 0).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any, Mapping

import torch
import torch.distributed as dist

from bench.errors import ConfigError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def parallel(self) -> bool:
        return self.size > 1


def world() -> World:
    """This process's place, from torchrun's environment (one process when it is absent)."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    return World(int(os.environ.get("RANK", "0")), size, int(os.environ.get("LOCAL_RANK", "0")))


def start(device: torch.device) -> tuple[World, torch.device]:
    """Join the process group (gloo on CPU, nccl on CUDA, each rank on its local GPU) when run by torchrun."""
    w = world()
    if not w.parallel:
        return w, device
    if device.type == "cuda":
        device = torch.device("cuda", w.local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return w, device


def check_batch(batch_size: int, w: World) -> None:
    if batch_size % w.size:
        raise ConfigError(f"batch_size {batch_size} does not divide among {w.size} processes; use a multiple of "
                          f"{w.size} (each process takes batch_size / {w.size} of every batch)")


def shard(batch: Mapping[str, Any], w: World) -> dict[str, Any]:
    """This rank's contiguous slice of a global batch (tensors along dim 0; other values as they are)."""
    if not w.parallel:
        return dict(batch)
    out = {}
    for k, v in batch.items():
        if isinstance(v, torch.Tensor) and v.dim() >= 1:
            n = v.shape[0] // w.size
            out[k] = v[w.rank * n:(w.rank + 1) * n]
        else:
            out[k] = v
    return out


def broadcast_modules(modules: Mapping[str, torch.nn.Module]) -> None:
    """Rank 0's parameters and buffers to every rank."""
    for m in modules.values():
        for t in [*m.parameters(), *m.buffers()]:
            dist.broadcast(t.data, src=0)


def average_gradients(optimizers: Mapping[str, torch.optim.Optimizer], w: World) -> list[Any]:
    """Before each step of each optimiser: its parameters' gradients averaged over the ranks. Returns the hooks'
    handles."""
    def hook(opt: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        for group in opt.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)
                    p.grad.div_(w.size)
    return [o.register_step_pre_hook(hook) for o in optimizers.values()]


def sync_batch_norm(modules: Mapping[str, torch.nn.Module], device: torch.device) -> int:
    """BatchNorm layers to SyncBatchNorm in place (CUDA only); returns how many batch-norm layers there are."""
    found = sum(isinstance(x, torch.nn.modules.batchnorm._BatchNorm) for m in modules.values() for x in m.modules())
    if found and device.type == "cuda":
        for m in modules.values():
            torch.nn.SyncBatchNorm.convert_sync_batchnorm(m)
    elif found:
        log.warning("%d batch-norm layer(s) normalise each process's slice by its own statistics: torch's "
                    "SyncBatchNorm runs on GPUs only, so these weights will differ from one process's", found)
    return found


def mean_losses(losses: Mapping[str, torch.Tensor], w: World) -> dict[str, float]:
    """The logged losses averaged over the ranks (what one process would log over the global batch)."""
    vals = {k: float(v) for k, v in losses.items()}
    if not w.parallel or not vals:
        return vals
    t = torch.tensor(list(vals.values()), dtype=torch.float64)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return dict(zip(vals, (t / w.size).tolist()))


def gather_on_main(part: dict[int, Any], w: World) -> dict[int, Any] | None:
    """Every rank's ``{batch index: outputs}`` merged on rank 0 (tensors moved to the CPU to travel); None
    elsewhere. Scoring then feeds the scorers in batch order on rank 0, so the metrics are one process's."""
    cpu = {i: {k: v.cpu() if isinstance(v, torch.Tensor) else v for k, v in outs.items()} for i, outs in part.items()}
    got: list[Any] | None = [None] * w.size if w.main else None
    dist.gather_object(cpu, got, dst=0)
    if not w.main:
        return None
    merged: dict[int, Any] = {}
    for d in got or []:
        merged.update(d)
    return merged


def barrier(w: World) -> None:
    if w.parallel:
        dist.barrier()
