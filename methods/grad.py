"""Gradient bookkeeping shared by the adapters."""

from __future__ import annotations

import contextlib
from typing import Iterator

from torch import nn


@contextlib.contextmanager
def frozen(*modules: nn.Module) -> Iterator[None]:
    """The modules' parameters need no gradient inside the block (restored after it).

    Used around G's update: the adversarial loss goes through D, but only G steps, so autograd can skip
    D's weight gradients (a third of D's backward) while the gradients still flow through D to G; the
    reference pix2pix does the same (``set_requires_grad(netD, False)``). Values are unchanged: D's
    gradients from G's step were discarded by D's next ``zero_grad``.
    """
    params = [p for m in modules for p in m.parameters() if p.requires_grad]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in params:
            p.requires_grad_(True)
