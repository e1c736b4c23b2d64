"""Weight initialisation, spectral normalisation and parameter counting for the building blocks: public helpers
that built-in and plug-in networks and adapters rely on (with :mod:`bench.adversarial` 's ``adam`` and ``frozen``).

The conventions of the field (pix2pix, DCGAN, the fusion-discriminator paper, papers.md A):

- conv / transposed-conv / linear weights ~ N(0, 0.02), their biases 0;
- normalisation-layer scales ~ N(1, 0.02), their shifts 0;
- spectral norm (Miyato et al. 2018) through ``torch.nn.utils.parametrizations.spectral_norm``
  on every conv / transposed-conv / linear weight when a paper says "SN on all weights".

It also builds the normalisation and activation layers the blocks share (:func:`make_norm`,
:func:`make_activation`).

Initialise first, then apply spectral norm: the parametrisation starts its power iteration from the
weight it wraps. :func:`init_weights` also works on an already-parametrised module (it initialises the
stored ``original`` weight), but the power-iteration vectors then need a few training-mode passes to
catch up with the new weight.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import spectral_norm

from bench.errors import ConfigError

#: layers whose ``weight`` is a linear map (initialised N(0, std), spectrally normalised by SN)
LINEAR_LAYERS: tuple[type[nn.Module], ...] = (
    nn.Conv1d, nn.Conv2d, nn.Conv3d,
    nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d,
    nn.Linear,
)

#: normalisation layers whose affine scale is initialised N(1, std)
NORM_LAYERS: tuple[type[nn.Module], ...] = (
    nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d,
    nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d,
    nn.GroupNorm, nn.LayerNorm,
)


def raw_weight(module: nn.Module) -> torch.Tensor | None:
    """The trained weight tensor: the parametrisation's ``original`` when one is registered (the hook-based
    ``torch.nn.utils.spectral_norm`` 's ``weight_orig``), else ``weight``."""
    if parametrize.is_parametrized(module, "weight"):
        return module.parametrizations.weight.original
    return getattr(module, "weight_orig", getattr(module, "weight", None))


@torch.no_grad()
def init_weights(module: nn.Module, std: float = 0.02) -> nn.Module:
    """Initialise ``module`` and all its children in place; returns ``module``.

    Linear-map weights ~ N(0, std) and their biases 0; norm-layer scales ~ N(1, std), shifts 0.
    Other layers (embeddings, custom ones) are left as they are.
    """
    for m in module.modules():
        if isinstance(m, LINEAR_LAYERS):
            w = raw_weight(m)
            if w is not None:
                nn.init.normal_(w, 0.0, std)
            if getattr(m, "bias", None) is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, NORM_LAYERS):
            w = getattr(m, "weight", None)
            if w is not None:
                nn.init.normal_(w, 1.0, std)
            if getattr(m, "bias", None) is not None:
                nn.init.zeros_(m.bias)
    return module


@torch.no_grad()
def init_fan_in(module: nn.Module) -> nn.Module:
    """He initialisation (fan-in scaled, ReLU gain; He et al. 2015) of every linear-map weight, biases 0, norm
    scales 1: the output variance of a ReLU net then stays of order 1 at any width, where N(0, 0.02) shrinks it
    by ``0.02^2 * fan_in`` per layer (a 3-layer encoder-decoder at width 16 outputs one image, ~1e-6 apart)."""
    for m in module.modules():
        if isinstance(m, LINEAR_LAYERS):
            w = raw_weight(m)
            if w is not None:
                nn.init.kaiming_normal_(w, a=0.0, mode="fan_in", nonlinearity="relu")
            if getattr(m, "bias", None) is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, NORM_LAYERS):
            if getattr(m, "weight", None) is not None:
                nn.init.ones_(m.weight)
            if getattr(m, "bias", None) is not None:
                nn.init.zeros_(m.bias)
    return module


INITS: tuple[str, ...] = ("normal", "fan-in")


def initialise(module: nn.Module, kind: str, std: float = 0.02) -> nn.Module:
    """``"normal"``: :func:`init_weights` with ``std`` (DCGAN / pix2pix); ``"fan-in"``: :func:`init_fan_in`."""
    if kind == "normal":
        return init_weights(module, std)
    if kind == "fan-in":
        return init_fan_in(module)
    raise ConfigError(f"unknown init '{kind}'; choose one of: {', '.join(INITS)}")


def has_spectral_norm(module: nn.Module) -> bool:
    """Whether ``module`` (itself, not its children) carries a spectral-norm parametrisation."""
    if not parametrize.is_parametrized(module, "weight"):
        return False
    return any(type(p).__name__ == "_SpectralNorm" for p in module.parametrizations.weight)


def spectral_norm_all(module: nn.Module, n_power_iterations: int = 1, eps: float = 1e-12) -> nn.Module:
    """Apply spectral norm to the weight of every conv / transposed-conv / linear layer in ``module``.

    Layers that already carry spectral norm are skipped, so the call is idempotent. Transposed
    convolutions are normalised over their output-channel dimension (``dim=1``), the torch default.
    Returns ``module`` (modified in place).
    """
    for m in list(module.modules()):
        if isinstance(m, LINEAR_LAYERS) and getattr(m, "weight", None) is not None and not has_spectral_norm(m):
            spectral_norm(m, n_power_iterations=n_power_iterations, eps=eps)
    return module


NORM_KINDS: tuple[str, ...] = ("batch", "instance", "none")


def make_norm(kind: str, channels: int) -> nn.Module | None:
    """The normalisation layer named ``kind`` for ``channels`` feature maps (``None`` for "none").

    "instance" follows pix2pix: no affine parameters, no running statistics.
    """
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "instance":
        return nn.InstanceNorm2d(channels, affine=False, track_running_stats=False)
    if kind == "none":
        return None
    raise ConfigError(f"unknown norm '{kind}'; choose one of: {', '.join(NORM_KINDS)}")


ACTIVATIONS: tuple[str, ...] = ("relu", "leaky")


def make_activation(kind: str) -> nn.Module:
    """``"relu"`` -> ReLU, ``"leaky"`` -> LeakyReLU(0.2) (the pix2pix / DCGAN discriminator slope)."""
    if kind == "relu":
        return nn.ReLU()
    if kind == "leaky":
        return nn.LeakyReLU(0.2)
    raise ConfigError(f"unknown activation '{kind}'; choose one of: {', '.join(ACTIVATIONS)}")


def count_parameters(module: nn.Module, trainable_only: bool = False) -> int:
    """Number of scalar parameters of ``module`` (each shared tensor counted once).

    A spectrally normalised weight counts once (its stored ``original``); the power-iteration
    vectors are buffers, not parameters.
    """
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


def check_options(o: object, *, positive: tuple[str, ...] = (), at_least_one: tuple[str, ...] = (),
                  non_negative: tuple[str, ...] = (), unit: tuple[str, ...] = ()) -> None:
    """Range checks of a method's options (raised at parse time, one line): ``unit`` means [0, 1)."""
    for k in positive:
        if not getattr(o, k) > 0:
            raise ConfigError(f"option '{k}' must be positive, got {getattr(o, k)}")
    for k in at_least_one:
        if getattr(o, k) < 1:
            raise ConfigError(f"option '{k}' must be at least 1, got {getattr(o, k)}")
    for k in non_negative:
        if getattr(o, k) < 0:
            raise ConfigError(f"option '{k}' must not be negative, got {getattr(o, k)}")
    for k in unit:
        if not 0 <= getattr(o, k) < 1:
            raise ConfigError(f"option '{k}' must be in [0, 1), got {getattr(o, k)}")
