"""An exponential moving average of the generator's weights, for every adapter (``ema`` in a profile or row).

Many GAN papers score the average of G's weights over the last steps rather than the last weights (ProGAN,
StyleGAN, BigGAN). With ``ema = d`` the trainer keeps a copy of each of the adapter's ``ema_modules`` (default
``("G",)``) and after every generator step sets each of its parameters to ``d x average + (1 - d) x current``
(buffers, e.g. batch-norm statistics and spectral norm's u / v, are copied, as StyleGAN's code does). The
average starts from the initial weights, is saved in every checkpoint as module ``ema_<name>`` (so resume is
exact), and scoring and sample grids load it into the module in place of the last weights; the protocol of
every score says ``ema``.
"""

from __future__ import annotations

import copy
from typing import Any, Mapping

import torch
from torch import nn

from bench.errors import ConfigError

PREFIX = "ema_"


def ema_names(adapter: Any) -> list[str]:
    """The adapter's modules that are averaged (its ``ema_modules`` that it has)."""
    names = [n for n in getattr(adapter, "ema_modules", ("G",)) if n in adapter.modules]
    if not names:
        raise ConfigError(f"ema: method '{type(adapter).__name__}' has none of the modules it averages "
                          f"({', '.join(getattr(adapter, 'ema_modules', ('G',)))}); set its ema_modules or drop ema")
    return names


def check_decay(decay: Any, where: str) -> None:
    if decay is not None and not (isinstance(decay, (int, float)) and 0.0 < float(decay) < 1.0):
        raise ConfigError(f"{where} ema = {decay!r}: the decay of the weights' average lies in (0, 1), e.g. 0.999")


class WeightAverage:
    """The averaged copies of an adapter's generator modules."""

    def __init__(self, adapter: Any, decay: float):
        self.decay = float(decay)
        self.live = {PREFIX + n: adapter.modules[n] for n in ema_names(adapter)}
        self.average: dict[str, nn.Module] = {k: copy.deepcopy(m).requires_grad_(False)
                                              for k, m in self.live.items()}

    @torch.no_grad()
    def update(self) -> None:
        for k, avg in self.average.items():
            live = self.live[k]
            for a, p in zip(avg.parameters(), live.parameters()):
                a.lerp_(p.detach(), 1.0 - self.decay)
            for a, b in zip(avg.buffers(), live.buffers()):
                a.copy_(b)

    def modules(self) -> dict[str, nn.Module]:
        """``{"ema_<name>": averaged module}``: saved and loaded beside the adapter's own modules."""
        return dict(self.average)


def averaged_into(adapter: Any) -> Mapping[str, nn.Module]:
    """The checkpoint names to load into the adapter's own modules so that it samples with the average."""
    return {PREFIX + n: adapter.modules[n] for n in ema_names(adapter)}
