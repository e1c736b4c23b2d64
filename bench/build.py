"""Build the pieces of a run from its spec: device, seeding, dataset, bound task, adapter."""

from __future__ import annotations

import logging
import os
import random
from typing import Any

import numpy as np
import torch

from bench.errors import ConfigError
from bench.registry import DATASETS, METHODS, TASKS
from bench.runspec import RunSpec
from bench.tasks import TaskSpec
from methods.base import MethodAdapter, TrainContext

log = logging.getLogger(__name__)


def select_device(name: str | None = "auto") -> torch.device:
    """``auto`` picks CUDA, then Apple MPS, then CPU."""
    name = name or "auto"
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"--device {name} asked for, but CUDA is not available here; use --device cpu or auto")
    return dev


def seed_everything(seed: int, deterministic: bool = False) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=False)
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
    else:
        torch.backends.cudnn.benchmark = torch.cuda.is_available()


def build_dataset(spec: RunSpec, split: str, size: int, subset: int | None) -> Any:
    factory = DATASETS.get(spec.dataset)
    return factory(split, size, root=None, subset=subset, seed=0, **spec.dataset_options)


def bind_task(spec: RunSpec, dataset: Any) -> TaskSpec:
    return TASKS.get(spec.task).bind(dataset.info, label_output=spec.label_output)


def train_context(spec: RunSpec, device: torch.device) -> TrainContext:
    prof = spec.profile_settings
    cuda = device.type == "cuda"
    return TrainContext(device=device, amp=cuda and prof.amp, channels_last=cuda)


def build_adapter(spec: RunSpec, task: TaskSpec, ctx: TrainContext) -> MethodAdapter:
    if spec.kind != "model":
        raise ConfigError(f"row '{spec.row}' is a '{spec.kind}' row: it has no model to build")
    cls = METHODS.get(spec.method)
    options = cls.Options(**spec.method_options)
    return cls(options, task, ctx, generator=spec.generator, discriminator=spec.discriminator,
               generator_options=spec.generator_options, discriminator_options=spec.discriminator_options,
               image_size=spec.profile_settings.image_size)
