"""Helpers for adapter unit tests: which components a loss reaches."""

from __future__ import annotations

import torch


def touched(ad, loss: torch.Tensor) -> set[str]:
    """The slots whose parameters get a non-zero gradient from ``loss``."""
    for m in ad.modules.values():
        m.zero_grad(set_to_none=True)
    loss.backward(retain_graph=True)
    return {name for name, m in ad.modules.items()
            if any(p.grad is not None and p.grad.abs().sum() > 0 for p in m.parameters())}


#: registered discriminators with pix2pix's arity, forward(a, b), that judge something other than (x, y) images
NOT_IMAGE_PAIRS = {"elu-joint"}        # SDKL's D on (image, latent) pairs


def image_conditioned_discriminators(builtin_only: bool = True) -> list[str]:
    """The registered discriminators pix2pix can take (forward(x, y) on images), checked as the suite validator
    does; ``builtin_only`` leaves out those another test registered in this process."""
    from bench.registry import DISCRIMINATORS
    from bench.resolve import check_component_options
    from methods.pix2pix import Pix2Pix
    out = []
    for name in DISCRIMINATORS.names():
        if name in NOT_IMAGE_PAIRS or (builtin_only and not DISCRIMINATORS.origin(name).startswith("methods.")):
            continue
        try:
            check_component_options(DISCRIMINATORS.get(name), Pix2Pix.slots["D"], {}, where="", component=name,
                                    method="pix2pix")
        except Exception:  # noqa: BLE001 - another kind of discriminator (unconditional, class heads, vectors)
            continue
        out.append(name)
    return out
