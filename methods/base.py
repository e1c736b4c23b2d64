"""The method-adapter contract and the building-block signatures.

Building blocks (registered separately so a new discriminator can be compared on fixed
generators, data and metrics):

- Generator factory, in ``GENERATORS``::

      factory(in_channels: int, out_channels: int, *, image_size: int, ngf: int = 64,
              spectral_norm: bool = False, **options) -> nn.Module      # forward(x) -> y in [-1, 1]

- Image-conditioned discriminator factory, in ``DISCRIMINATORS``::

      factory(x_channels: int, y_channels: int, *, image_size: int, ndf: int = 64, **options)
          -> nn.Module                                                   # forward(x, y) -> logits

  ``x`` is the condition, ``y`` the real or generated output; logits any shape (a patch map).
  How conditioning enters is the discriminator's own business. A new discriminator is one file
  plus one registration line in ``methods/discriminators/__init__.py`` (or a plug-in module).

A method adapter (in ``METHODS``) owns its losses and its optimisation step::

      cls(options: cls.Options, task: TaskSpec, ctx: TrainContext, *, generator: str,
          discriminator: str, generator_options: dict, discriminator_options: dict, image_size: int)

It exposes ``modules`` and ``optimizers`` (dicts, for checkpointing), ``d_steps_per_g``,
``train_step(batch, step, update_g) -> dict[str, Tensor]`` (detached scalar losses) and
``generate(batch) -> Tensor`` (eval mode, y-space of the task).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from bench.tasks import TaskSpec


@dataclass
class TrainContext:
    """What the trainer hands an adapter: where to run and how."""

    device: torch.device
    amp: bool = False                 # bf16 autocast (CUDA only)
    channels_last: bool = False

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.amp:
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def to_device(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        out = {}
        for k, v in batch.items():
            if isinstance(v, torch.Tensor):
                v = v.to(self.device, non_blocking=True)
                if self.channels_last and v.dim() == 4:
                    v = v.contiguous(memory_format=torch.channels_last)
            out[k] = v
        return out


class MethodAdapter:
    """Base class for adapters; subclasses set ``Options`` and implement the two steps."""

    @dataclass
    class Options:
        pass

    d_steps_per_g: int = 1

    def __init__(self, options: Any, task: TaskSpec, ctx: TrainContext, **components: Any):
        self.options, self.task, self.ctx = options, task, ctx
        self.modules: dict[str, nn.Module] = {}
        self.optimizers: dict[str, torch.optim.Optimizer] = {}

    def train_step(self, batch: dict[str, torch.Tensor], step: int, update_g: bool) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    @torch.no_grad()
    def generate(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        raise NotImplementedError

    def train(self, mode: bool = True) -> None:
        for m in self.modules.values():
            m.train(mode)
