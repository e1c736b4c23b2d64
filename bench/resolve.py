"""Resolution: a parsed suite's row, with a profile laid over it, into what one run uses, checked as it goes.

``resolve_components`` gives each slot of the row's method its component (name, init, factory options: the row's,
the suite's shorthands, the profile's options over them), checked against the factory's signature minus what the
method provides; ``method_options`` gives the method's ``Options`` (``[options]``, the profile's, the row's), with
the registry names inside them checked. ``bench.runspec.expand`` calls both once per row to make the run specs;
``bench.validate`` calls them for every profile before any work starts. Parsing (``bench.config``) comes first,
validation (``bench.validate``) reads what is resolved here: neither calls back into the other.
"""

from __future__ import annotations

import dataclasses
import inspect
from typing import TYPE_CHECKING, Any

from bench.contracts import INIT_POLICIES, Slot
from bench.errors import ConfigError, RegistryError
from bench.registry import METHODS, REGISTRIES, Registry
from bench.schema import parse_dataclass

if TYPE_CHECKING:  # pragma: no cover
    from bench.config import Suite


RESERVED_COMPONENT_KEYS = ("name", "init")
SHORTHANDS = {"generators": ("generator", "generator_options"),
              "discriminators": ("discriminator", "discriminator_options")}



def _known(registry: Registry, name: str, source: str, key: str) -> Any:
    if name not in registry:
        raise ConfigError(f"{source}: {key} = '{name}' is not a registered {registry.kind}; choose one of: "
                          f"{', '.join(registry.names())} (or load a plug-in with --plugin)")
    try:
        return registry.get(name)
    except RegistryError as e:
        raise ConfigError(f"{source}: {key} = '{name}': {e}") from None


def _src(suite: "Suite") -> str:
    return suite.path.replace("\\", "/").rsplit("/", 1)[-1] or suite.name


# --- components ---------------------------------------------------------------------------------

def check_component_options(factory: Any, slot: Slot, options: dict[str, Any], *, where: str, component: str,
                            method: str) -> None:
    """Options a row gives a component must be parameters of its factory that the method does not fill."""
    try:
        sig = inspect.signature(factory)
    except (TypeError, ValueError):
        return
    params = list(sig.parameters.values())
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if len(positional) < len(slot.args) and not any(p.kind is p.VAR_POSITIONAL for p in params):
        raise ConfigError(f"{where} {slot.registry[:-1]} '{component}' takes {len(positional)} positional "
                          f"argument(s); method '{method}' passes {len(slot.args)} ({', '.join(slot.args)})")
    taken = {p.name for p in positional[:len(slot.args)]} | set(slot.provided)
    var_kw = any(p.kind is p.VAR_KEYWORD for p in params)
    names = {p.name for p in params if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)}
    for k in options:
        if k in taken:
            raise ConfigError(f"{where} '{k}' is set by method '{method}' (it gives every {slot.registry[:-1]} "
                              f"{', '.join(sorted(set(slot.provided)))}); change it through the method's options")
    if not var_kw:
        missing = [k for k in slot.provided if k not in names]
        if missing:
            raise ConfigError(f"{where} {slot.registry[:-1]} '{component}' does not accept '{missing[0]}', which "
                              f"method '{method}' passes to it; add it to the factory's signature")
        allowed = sorted(names - taken)
        for k in options:
            if k not in names:
                raise ConfigError(f"{where} unknown key '{k}' for {slot.registry[:-1]} '{component}'; allowed: "
                                  f"{', '.join(allowed) or '(none)'}")
    forward = getattr(factory, "forward", None) if inspect.isclass(factory) else None
    if slot.call is not None and forward is not None:
        fparams = list(inspect.signature(forward).parameters.values())[1:]
        positional = [p for p in fparams if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        required_pos = [p for p in positional if p.default is p.empty]
        if not any(p.kind is p.VAR_POSITIONAL for p in fparams) and not (
                len(required_pos) <= len(slot.call) <= len(positional)):
            takes = ", ".join(p.name for p in positional)
            raise ConfigError(f"{where} {slot.registry[:-1]} '{component}' takes forward({takes}) but method "
                              f"'{method}' calls it with ({', '.join(slot.call)}); pick a {slot.registry[:-1]} made "
                              "for this method")
    required = [p.name for p in params if p.default is p.empty and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)
                and p.name not in taken and p.name not in options]
    if required:
        raise ConfigError(f"{where} {slot.registry[:-1]} '{component}' needs '{required[0]}', which neither method "
                          f"'{method}' nor the row gives")


def resolve_components(suite: "Suite", row_index: int, profile: str | None = None) -> dict[str, dict[str, Any]]:
    """Each slot of the row's method -> ``{"name": ..., "init": ..., **factory options}``, checked; with
    ``profile``, its ``components`` options are laid over the row's (slots the method lacks are skipped)."""
    row = suite.rows[row_index]
    source, where = _src(suite), f"[rows.{row_index}]"
    method = row.method or suite.suite.method
    cls = _known(METHODS, method, source, f"{where} method")
    slots: dict[str, Slot] = dict(getattr(cls, "slots", {}) or {})
    for registry, (name_key, opts_key) in SHORTHANDS.items():
        if (getattr(row, name_key) or getattr(row, opts_key)) and not any(s.registry == registry
                                                                           for s in slots.values()):
            used = name_key if getattr(row, name_key) else opts_key
            raise ConfigError(f"{source}: {where} method '{method}' uses no {name_key}; remove the '{used}' key")
    for k in row.components:
        if k not in slots:
            raise ConfigError(f"{source}: {where} components: method '{method}' has no slot '{k}'; its slots: "
                              f"{', '.join(slots) or '(none)'}")
    out: dict[str, dict[str, Any]] = {}
    for slot_name, slot in slots.items():
        name, opts, label = slot.default, {}, f"{where} components.{slot_name}.name"
        if slot.registry in SHORTHANDS:
            name_key, opts_key = SHORTHANDS[slot.registry]
            suite_default = suite.suite.generator if slot.registry == "generators" else ""
            if getattr(row, name_key):
                name, label = getattr(row, name_key), f"{where} {name_key}"
            elif suite_default:
                name, label = suite_default, f"[suite] {name_key}"
            opts.update(getattr(row, opts_key))
        table = row.components.get(slot_name, {})
        if not isinstance(table, dict):
            raise ConfigError(f"{source}: {where} components.{slot_name} must be a table")
        table = dict(table)
        if "name" in table:
            name, label = table.pop("name"), f"{where} components.{slot_name}.name"
        init = table.pop("init", None)
        opts.update(table)
        sect = f"{where} components.{slot_name}"
        if profile is not None:
            extra = dict(suite.profile(profile).components.get(slot_name) or {})
            if {"name", "init"} & set(extra):
                raise ConfigError(f"{source}: [profiles.{profile}.components.{slot_name}] sets factory options only; "
                                  "choose the component ('name', 'init') in the rows")
            opts.update(extra)
            sect += f" + profiles.{profile}.components.{slot_name}" if extra else ""
        if not name:
            key = SHORTHANDS.get(slot.registry, ("components." + slot_name,))[0]
            raise ConfigError(f"{source}: {where} missing required key '{key}' (method '{method}' has no default "
                              f"for slot '{slot_name}')")
        if not isinstance(name, str):
            raise ConfigError(f"{source}: {sect}.name must be a string")
        if init is not None and init not in INIT_POLICIES:
            raise ConfigError(f"{source}: {sect}.init = '{init}'; allowed: {', '.join(INIT_POLICIES)}")
        registry = REGISTRIES.get(slot.registry)
        if registry is None:
            raise ConfigError(f"{source}: method '{method}' slot '{slot_name}' names unknown registry "
                              f"'{slot.registry}'")
        factory = _known(registry, name, source, label)
        check_component_options(factory, slot, opts, where=f"{source}: {sect}", component=name, method=method)
        out[slot_name] = {"name": name, **({"init": init} if init else {}), **opts}
    return out


# --- method options -----------------------------------------------------------------------------

def _check_registry_refs(options: Any, source: str, section: str, only: set[str] | None = None) -> None:
    for f in dataclasses.fields(options):
        kind = f.metadata.get("registry")
        if not kind or (only is not None and f.name not in only):
            continue
        value = getattr(options, f.name)
        names = list(value) if isinstance(value, (dict, list, tuple)) else [value]
        reg = REGISTRIES[kind]
        for n in names:
            if n not in reg:
                raise ConfigError(f"{source}: [{section}] {f.name}: '{n}' is not a registered {reg.kind}; "
                                  f"choose one of: {', '.join(reg.names())} (or load a plug-in with --plugin)")


def method_options(suite: "Suite", row_index: int, profile: str | None = None) -> Any:
    """The validated ``Options`` dataclass of a row's method.

    ``[options]`` and the profile's ``options`` are checked strictly against the suite's default
    method; a row with another method takes from them only the keys its method knows. The row's own
    ``options`` are checked strictly against its method.
    """
    row = suite.rows[row_index]
    default = METHODS.get(suite.suite.method)
    cls = METHODS.get(row.method or suite.suite.method)
    src = _src(suite)
    shared = dict(suite.options)
    if profile is not None:
        shared.update(suite.profile(profile).options)
    shared_section = f"options] / [profiles.{profile}.options" if profile else "options"
    _check_registry_refs(parse_dataclass(default.Options, shared, source=src, section=shared_section), src,
                         shared_section, only=set(shared))
    if cls is not default:
        known = {f.name for f in dataclasses.fields(cls.Options)}
        shared = {k: v for k, v in shared.items() if k in known}
    merged = {**shared, **row.options}
    parse_dataclass(cls.Options, row.options, source=src, section=f"rows.{row_index}.options")
    section = f"rows.{row_index}.options" + (f" + profiles.{profile}.options" if profile else "")
    opts = parse_dataclass(cls.Options, merged, source=src, section=section)
    _check_registry_refs(opts, src, section)
    return opts
