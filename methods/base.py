"""The method-adapter contract, as ``methods/`` uses it (defined in ``bench.contracts``).

Building blocks are registered separately so a new discriminator can be compared on fixed
generators, data and metrics:

- Generator factory, in ``GENERATORS``::

      factory(in_channels: int, out_channels: int, *, image_size: int, ngf: int = 64,
              spectral_norm: bool = False, **options) -> nn.Module      # forward(x) -> y in [-1, 1]

- Image-conditioned discriminator factory, in ``DISCRIMINATORS``::

      factory(x_channels: int, y_channels: int, *, image_size: int, ndf: int = 64, **options)
          -> nn.Module        # forward(x, y) -> logits | [logits per scale] | {"logits", heads} | DOutput

  ``x`` is the condition, ``y`` the real or generated output. How conditioning enters is the
  discriminator's own business. A new discriminator is one file plus one registration line in
  ``methods/discriminators/__init__.py`` (or a plug-in module). A component keeps the method's
  initialisation (N(0, 0.02) for pix2pix) unless its class sets ``init_policy = "own"``.

A method adapter (in ``METHODS``) declares ``Options`` (a dataclass), ``slots``, ``outputs`` and
implements ``train_step`` and ``sample`` / ``generate``; see :class:`bench.contracts.MethodAdapter`.
"""

from __future__ import annotations

from bench.contracts import (AdvTerms, ComponentArgs, DOutput, FromBatch, FromPrior, MethodAdapter, Slot,
                             TrainContext, registry_ref)

__all__ = ["AdvTerms", "ComponentArgs", "DOutput", "FromBatch", "FromPrior", "MethodAdapter", "Slot",
           "TrainContext", "registry_ref"]
