"""Text for ``bench list``: each registry's entries with their origin, and what each declares
(parameter counts for discriminators, slots and outputs for methods, feed and keys for metrics, profiles and
their steps for suites)."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from bench.registry import REGISTRIES


def _built(factory: Any, args: tuple, size: int | None) -> Any:
    """The network, built on torch's meta device where it can be (shapes only: no memory, no initialisation;
    counting 9 discriminators took 5 s on the CPU), else on the CPU."""
    from unittest import mock

    import torch
    from torch.nn.utils.parametrizations import _SpectralNorm
    make = (lambda: factory(*args, image_size=size)) if size else (lambda: factory(*args))
    try:      # spectral norm's power iterations at construction only refine u and v: no shapes change
        with torch.device("meta"), mock.patch.object(_SpectralNorm, "_power_method", lambda *a, **k: None):
            return make()
    except TypeError:
        raise
    except Exception:  # noqa: BLE001 - an op the meta device lacks (e.g. in an initialiser): build it for real
        return make()


def _param_count(factory: Any) -> str:
    """Parameters of a conditional D built for x=3, y=3 channels, of an unconditional one for y=3, or of a
    critic on vectors (no image size, e.g. a latent critic) for 50 features."""
    for args, size, what in (((3, 3), 256, "x=3, y=3 channels, 256 px, default width"),
                             ((3,), 256, "y=3 channels, unconditional, 256 px, default width"),
                             ((50,), None, "vectors of 50 features, default widths")):
        try:
            m = _built(factory, args, size)
        except TypeError:
            continue
        except Exception as e:  # noqa: BLE001 - a plug-in with another signature still lists
            return f"(parameter count unavailable: {type(e).__name__})"
        n = sum(p.numel() for p in m.parameters())
        return f"{n / 1e6:.2f}M params ({what})"
    return "(parameter count unavailable: neither (x, y) nor (y) channels, nor vectors)"


def _method(cls: Any) -> str:
    slots = ", ".join(f"{k}: {s.registry[:-1]}" + (f" (default {s.default})" if s.default else "")
                      for k, s in getattr(cls, "slots", {}).items()) or "no components"
    outputs = ", ".join(f"{k} -> {v}" for k, v in getattr(cls, "outputs", {"y": "y"}).items())
    return f"slots: {slots}; outputs: {outputs}; samples from: {', '.join(getattr(cls, 'samples_from', ('batch',)))}"


def _metric(cls: Any) -> str:
    keys = ", ".join(getattr(cls, "keys", ())) or "keys set by options"
    return f"feed: {getattr(cls, 'feed', 'paired')}; scores: {', '.join(getattr(cls, 'outputs', ()))}; keys: {keys}"


def _suite(path: Any) -> str:
    """A suite's profiles with their training steps, read from its file (no validation: listing stays fast)."""
    import tomllib
    data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    profiles = data.get("profiles") or {}
    default = (data.get("suite") or {}).get("default_profile")
    def est(p: dict) -> str:
        t = [f"~{p[k]:.0f} min {where}" for k, where in (("minutes_cpu", "CPU"), ("minutes_gpu", "GPU")) if k in p]
        return f", {' / '.join(t)}" if t else ""
    parts = [f"{name}{'*' if name == default else ''} ({p.get('steps', '?')} steps{est(p)})"
             for name, p in profiles.items()]
    return f"profiles: {', '.join(parts)}" if parts else "no profiles"


def describe(kind: str) -> str:
    reg = REGISTRIES[kind]
    lines = [f"{kind}:"]
    for name in reg.names():
        origin = reg.origin(name)
        extra = ""
        try:
            if kind == "discriminators":
                extra = "  " + _param_count(reg.get(name))
            elif kind == "tasks":
                t = reg.get(name)
                extra = f"  {t.description} (fields: {', '.join(t.fields)}; pairing: {t.pairing})"
            elif kind == "methods":
                extra = "  " + _method(reg.get(name))
            elif kind == "metrics":
                extra = "  " + _metric(reg.get(name))
            elif kind == "suites":
                extra = "  " + _suite(reg.get(name))
            elif kind == "datasets":
                info = getattr(importlib.import_module(origin), "INFO", None)
                extra = f"  provides: {', '.join(info.provides or info.tasks)}" if info else ""
        except Exception as e:  # noqa: BLE001 - one broken plug-in must not hide the others
            extra = f"  (cannot load: {type(e).__name__}: {e})"
        lines.append(f"  {name:<20} [{origin}]{extra}")
    return "\n".join(lines)
