"""Build the pieces of a run from its spec: device, seeding, dataset, bound task, components, adapter.

The component builder is the one place slots become modules: each slot's factory is called with
what the adapter provides (``component_args``) plus the row's options; then every component whose
``init_policy`` is "adapter" (the class attribute; or the row's ``init``) is initialised by the
adapter, in slot order, after all are built; then all move to the device.
"""

from __future__ import annotations

import logging
import os
import random
from typing import Any, Mapping

import numpy as np
import torch
from torch import nn

from bench.contracts import MethodAdapter, TrainContext
from bench.errors import ConfigError
from bench.registry import DATASETS, METHODS, REGISTRIES, TASKS
from bench.runspec import RunSpec
from bench.tasks import TaskSpec

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
    try:
        dev = torch.device(name)
    except (RuntimeError, ValueError):
        raise ConfigError(f"--device {name} is not a device; use auto, cpu, cuda, cuda:N or mps") from None
    if dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ConfigError(f"--device {name} asked for, but Apple MPS is not available here; use --device cpu or auto")
    if dev.type == "cuda" and dev.index is not None and torch.cuda.is_available() \
            and dev.index >= torch.cuda.device_count():
        raise ConfigError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    if dev.type not in ("cpu", "cuda", "mps"):
        raise ConfigError(f"--device {name}: the bench runs on cpu, cuda or mps")
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
    return TrainContext(device=device, amp=cuda and prof.amp, channels_last=cuda, seed=spec.seed,
                        image_size=prof.image_size, total_steps=prof.steps)


def build_components(cls: type[MethodAdapter], components: Mapping[str, Mapping[str, Any]], options: Any,
                     task: TaskSpec, ctx: TrainContext, image_size: int) -> dict[str, nn.Module]:
    """Build every slot of ``cls`` from ``components`` (slot -> {"name", ["init"], **options})."""
    built: dict[str, nn.Module] = {}
    policies: dict[str, str] = {}
    for slot_name, slot in cls.slots.items():
        spec = dict(components.get(slot_name) or {})
        name = spec.pop("name", slot.default)
        init = spec.pop("init", None)
        if not name:
            raise ConfigError(f"method {cls.__name__} needs a component for slot '{slot_name}'")
        factory = REGISTRIES[slot.registry].get(name)
        given = cls.component_args(slot_name, options, task, image_size)
        module = factory(*given.args, **given.kwargs, **spec)
        if not isinstance(module, nn.Module):
            raise ConfigError(f"{slot.registry[:-1]} '{name}' built a {type(module).__name__}, not a torch.nn.Module")
        built[slot_name] = module
        policies[slot_name] = init or getattr(module, "init_policy", "adapter")
    for slot_name, module in built.items():
        if policies[slot_name] == "adapter":
            cls.init_component(slot_name, module, options)
        else:
            log.info("slot %s keeps its component's own initialisation", slot_name)
    mf = torch.channels_last if ctx.channels_last else torch.contiguous_format
    return {k: m.to(ctx.device, memory_format=mf) for k, m in built.items()}


def build_method(method: str, options: Any, task: TaskSpec, ctx: TrainContext,
                 components: Mapping[str, Mapping[str, Any]] | None = None, image_size: int = 256) -> MethodAdapter:
    """Build a method adapter and its components (options: the method's ``Options`` or a dict)."""
    cls = METHODS.get(method)
    if isinstance(options, dict):
        options = cls.Options(**options)
    comps = build_components(cls, components or {}, options, task, ctx, image_size)
    return cls(options, task, ctx, comps)


def build_adapter(spec: RunSpec, task: TaskSpec, ctx: TrainContext) -> MethodAdapter:
    if spec.kind != "model":
        raise ConfigError(f"row '{spec.row}' is a '{spec.kind}' row: it has no model to build")
    return build_method(spec.method, dict(spec.method_options), task, ctx, spec.components,
                        spec.profile_settings.image_size)
