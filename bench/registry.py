"""One small generic registry, and the plug-in loader.

Entries are registered either with the object itself (decorator or call) or lazily
with a ``"module:attribute"`` string, so ``bench list`` does not import every model.

Plug-ins: any module imported through the entry-point group ``cgan_bench.plugins``
or named with ``--plugin some.module`` registers its entries on import, e.g.::

    from bench.registry import DISCRIMINATORS

    @DISCRIMINATORS.register("my-disc")
    class MyDisc(torch.nn.Module): ...
"""

from __future__ import annotations

import hashlib
import importlib
import logging
import sys
from importlib.metadata import PackageNotFoundError, entry_points, version
from typing import Any, Callable, Iterator

from bench.errors import RegistryError

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "cgan_bench.plugins"


class Registry:
    """A name -> object map for one kind of component."""

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, Any] = {}
        self._origin: dict[str, str] = {}

    def register(self, name: str, obj: Any = None, *, origin: str | None = None) -> Any:
        """Register ``obj`` under ``name``; without ``obj``, return a decorator.

        ``obj`` may be a ``"module:attribute"`` string, resolved on first use.
        """
        if obj is None:
            def deco(o: Any) -> Any:
                self.register(name, o, origin=origin)
                return o
            return deco
        if name in self._entries and self._entries[name] is not obj:
            existing = self._entries[name]
            if not (isinstance(existing, str) and not isinstance(obj, str) and _qualname(obj) == existing):
                raise RegistryError(
                    f"{self.kind} '{name}' is already registered (by {self._origin.get(name, '?')}); "
                    f"pick another name for the one from {origin or _module_of(obj)}")
        self._entries[name] = obj
        self._origin[name] = origin or _module_of(obj)
        return obj

    def get(self, name: str) -> Any:
        load_builtins()
        if name not in self._entries:
            raise RegistryError(
                f"unknown {self.kind} '{name}'; choose one of: {', '.join(self.names()) or '(none)'}"
                " (or load a plug-in with --plugin)")
        obj = self._entries[name]
        if isinstance(obj, str):
            obj = _resolve(obj, f"{self.kind} '{name}'")
            self._entries[name] = obj
        return obj

    def names(self) -> list[str]:
        load_builtins()
        return sorted(self._entries)

    def origin(self, name: str) -> str:
        return self._origin.get(name, "?")

    def __contains__(self, name: str) -> bool:
        load_builtins()
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def items(self) -> Iterator[tuple[str, Any]]:
        for n in self.names():
            yield n, self.get(n)


def _module_of(obj: Any) -> str:
    if isinstance(obj, str):
        return obj.split(":")[0]
    return getattr(obj, "__module__", "?")


def _qualname(obj: Any) -> str:
    return f"{getattr(obj, '__module__', '?')}:{getattr(obj, '__qualname__', '?')}"


def _resolve(path: str, what: str) -> Any:
    mod_name, _, attr = path.partition(":")
    try:
        mod = importlib.import_module(mod_name)
        return getattr(mod, attr) if attr else mod
    except (ImportError, AttributeError) as e:
        raise RegistryError(f"cannot load {what} from '{path}': {e}") from e


DATASETS = Registry("dataset")
TASKS = Registry("task")
GENERATORS = Registry("generator")
DISCRIMINATORS = Registry("discriminator")
METHODS = Registry("method")
METRICS = Registry("metric")
LOSSES = Registry("loss")
SUITES = Registry("suite")
RUNNERS = Registry("runner")
REGULARIZERS = Registry("regularizer")

REGISTRIES: dict[str, Registry] = {
    "datasets": DATASETS, "tasks": TASKS, "generators": GENERATORS,
    "discriminators": DISCRIMINATORS, "methods": METHODS, "metrics": METRICS,
    "losses": LOSSES, "regularizers": REGULARIZERS, "suites": SUITES, "runners": RUNNERS,
}

# Built-ins load through the same path as outside plug-ins: import the module, it registers.
_BUILTIN_MODULES = ("bench.data", "bench.tasks", "bench.runners", "methods", "metrics", "leaderboards")
_state: dict[str, Any] = {"builtins": False, "entry_points": False}
_PLUGINS: dict[str, dict[str, Any]] = {}        # module -> {"module", "version", "sha256", "via"}


def load_builtins() -> None:
    """Import the project's own registration modules, then the installed plug-ins (once)."""
    if _state["builtins"]:
        return
    _state["builtins"] = True
    for m in _BUILTIN_MODULES:
        importlib.import_module(m)
    load_entry_point_plugins()


def load_entry_point_plugins() -> list[str]:
    """Import every module advertised under the ``cgan_bench.plugins`` entry-point group."""
    if _state["entry_points"]:
        return []
    _state["entry_points"] = True
    loaded = []
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            obj = ep.load()
        except Exception as e:  # a broken third-party plug-in must not hide the cause
            raise RegistryError(f"plug-in entry point '{ep.name}' ({ep.value}) failed to load: {e}") from e
        if callable(obj) and not isinstance(obj, type):
            obj()
        loaded.append(ep.value)
        _record_plugin(ep.value.partition(":")[0], via="entry point")
        log.info("loaded plug-in %s", ep.value)
    return loaded


def load_plugin(module: str) -> None:
    """Import ``module`` (``--plugin``); it registers its components on import, and is remembered
    (:func:`loaded_plugins`) so runs record it in ``run.json`` and ``bench score`` reloads it."""
    load_builtins()
    try:
        importlib.import_module(module)
    except ImportError as e:
        raise RegistryError(
            f"cannot import plug-in module '{module}': {e}; check the name and that it is on PYTHONPATH") from e
    except Exception as e:  # noqa: BLE001 - a plug-in that fails on import must not print a traceback
        raise RegistryError(f"plug-in module '{module}' failed on import: {type(e).__name__}: "
                            f"{str(e).strip().splitlines()[0] if str(e).strip() else ''}") from e
    _record_plugin(module, via="--plugin")


def _record_plugin(module: str, via: str) -> None:
    mod = sys.modules.get(module)
    path = getattr(mod, "__file__", None)
    sha = None
    if path:
        try:
            with open(path, "rb") as f:
                sha = hashlib.sha256(f.read()).hexdigest()
        except OSError:
            sha = None
    try:
        ver = version(module.split(".")[0])
    except (PackageNotFoundError, ValueError):
        ver = None
    _PLUGINS[module] = {"module": module, "version": ver, "sha256": sha, "via": via}


def loaded_plugins() -> list[dict[str, Any]]:
    """The plug-in modules loaded in this process (name, distribution version, file sha256)."""
    return [dict(v) for v in _PLUGINS.values()]


def check_recorded_plugins(recorded: list[dict[str, Any]]) -> list[str]:
    """The plug-ins a run recorded (``run.json``) must already be loaded: named on this command line with
    ``--plugin`` or installed as entry points. A received run folder is data, and importing the modules it
    names would run whatever code sits beside it, so nothing is imported here; a missing one is refused in
    one line that names them all. Warns where a loaded module's file changed since the run was trained."""
    missing = [p["module"] for p in recorded or [] if p.get("module") and p["module"] not in _PLUGINS]
    if missing:
        flags = " ".join(f"--plugin {m}" for m in missing)
        raise RegistryError(f"this run was trained with plug-in module(s) {', '.join(missing)}, which the bench "
                            f"does not import on a run's word; if you trust that code, pass {flags}")
    warnings = []
    for p in recorded or []:
        module = p.get("module")
        now = _PLUGINS.get(module, {}).get("sha256") if module else None
        if p.get("sha256") and now and p["sha256"] != now:
            msg = (f"plug-in '{module}' changed since the run was trained (sha256 {p['sha256'][:12]} -> "
                   f"{now[:12]}); scores may not match the checkpoint's code")
            log.warning(msg)
            warnings.append(msg)
    return warnings


def build(registry: Registry, name: str, *args: Any, **kwargs: Any) -> Any:
    """Look up ``name`` and call it with the given arguments."""
    factory: Callable[..., Any] = registry.get(name)
    return factory(*args, **kwargs)
