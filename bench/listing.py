"""Text for ``bench list``: each registry's entries with their origin (and parameter counts for D)."""

from __future__ import annotations

from bench.registry import REGISTRIES


def _param_count(factory) -> str:
    try:
        from methods.init import count_parameters
        m = factory(3, 3, image_size=256)
        return f"{count_parameters(m) / 1e6:.2f}M params (x=3, y=3 channels, 256 px, default width)"
    except Exception as e:  # a plug-in with another signature still lists
        return f"(parameter count unavailable: {type(e).__name__})"


def describe(kind: str) -> str:
    reg = REGISTRIES[kind]
    lines = [f"{kind}:"]
    for name in reg.names():
        origin = reg.origin(name)
        extra = ""
        if kind == "discriminators":
            extra = "  " + _param_count(reg.get(name))
        elif kind == "tasks":
            extra = "  " + reg.get(name).description
        elif kind == "datasets":
            try:
                import importlib
                mod = importlib.import_module(origin)
                info = getattr(mod, "INFO", None)
                extra = f"  tasks: {', '.join(info.tasks)}" if info else ""
            except Exception:
                extra = ""
        lines.append(f"  {name:<20} [{origin}]{extra}")
    return "\n".join(lines)
