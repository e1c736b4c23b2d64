"""Typed parsing of TOML tables into dataclasses, and the schema text generated from the same fields.

Every configuration dataclass documents its fields with :func:`doc`; :func:`parse_dataclass`
validates a table against those fields (unknown keys, wrong types, missing required keys: one-line
``ConfigError``) and :func:`schema_text` prints them (``bench schema``, the README's suite-file
reference). One definition, so the documentation cannot drift from what is checked.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import MISSING
from typing import Any

from bench.errors import ConfigError


def doc(text: str, default: Any = MISSING, *, factory: Any = MISSING) -> Any:
    """A dataclass field with its documentation (``default`` or ``factory``; neither = required)."""
    return dataclasses.field(default=default, default_factory=factory, metadata={"doc": text})


def slug(name: str) -> str:
    """A file-system-safe row name: '4-Layer Concat + SN' -> '4-layer-concat-sn'."""
    out = "".join(c.lower() if c.isalnum() else "-" for c in name)
    while "--" in out:
        out = out.replace("--", "-")
    return out.strip("-")


def type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(type_name(a) for a in typing.get_args(tp))
    if origin is not None:
        args = ", ".join(type_name(a) for a in typing.get_args(tp))
        return f"{origin.__name__}[{args}]"
    return getattr(tp, "__name__", str(tp)).replace("NoneType", "none")


def check_type(value: Any, tp: Any) -> bool:
    if tp is Any:
        return True
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return any(check_type(value, a) for a in typing.get_args(tp))
    if tp is type(None):
        return value is None
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            return False
        args = typing.get_args(tp)
        inner = args[0] if args else Any
        return all(check_type(v, inner) for v in value)
    if origin is dict:
        if not isinstance(value, dict):
            return False
        k_t, v_t = typing.get_args(tp) or (Any, Any)
        return all(check_type(k, k_t) and check_type(v, v_t) for k, v in value.items())
    if tp in (dict, list):
        return isinstance(value, tp)
    return isinstance(value, tp)


def parse_dataclass(cls: type, data: Any, *, source: str, section: str) -> Any:
    """Build dataclass ``cls`` from a mapping, rejecting unknown keys and wrong types."""
    where = f"{source}: [{section}]" if section else f"{source}:"
    if not isinstance(data, dict):
        raise ConfigError(f"{where} must be a table, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = [k for k in data if k not in fields]
    if unknown:
        raise ConfigError(f"{where} unknown key '{unknown[0]}'; allowed: {', '.join(fields)}")
    kwargs = {}
    for name, f in fields.items():
        if name not in data:
            if f.default is MISSING and f.default_factory is MISSING:
                raise ConfigError(f"{where} missing required key '{name}'")
            continue
        value, tp = data[name], hints[name]
        if not check_type(value, tp):
            raise ConfigError(f"{where} key '{name}' must be {type_name(tp)}, got "
                              f"{type(value).__name__} ({value!r})")
        if typing.get_origin(tp) is tuple or tp is tuple:
            value = tuple(value)
        if tp is float and isinstance(value, int):
            value = float(value)
        kwargs[name] = value
    try:
        return cls(**kwargs)
    except ConfigError as e:
        raise ConfigError(f"{where} {e}") from None


def _default_text(f: dataclasses.Field) -> str:
    if f.default is not MISSING:
        value = f.default
    elif f.default_factory is not MISSING:
        value = f.default_factory()
    else:
        return "required"
    if value is None:
        return "`none`"
    if isinstance(value, bool):
        return "`true`" if value else "`false`"
    return "`" + repr(value).replace("'", '"') + "`"


def field_rows(cls: type) -> list[tuple[str, str, str, str]]:
    """(key, type, default, meaning) for every field of a documented dataclass."""
    hints = typing.get_type_hints(cls)
    return [(f.name, type_name(hints[f.name]), _default_text(f), f.metadata.get("doc", ""))
            for f in dataclasses.fields(cls) if f.init]


def markdown_table(rows: list[tuple[str, str, str, str]]) -> str:
    lines = ["| key | type | default | meaning |", "|---|---|---|---|"]
    for key, tp, default, meaning in rows:
        lines.append(f"| `{key}` | {tp} | {default} | {meaning} |")
    return "\n".join(lines)
