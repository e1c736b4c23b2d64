"""Typed, validated configuration from TOML suite files.

A suite file (``leaderboards/*.toml``) has the sections below; every unknown key, wrong type
or unknown registry name raises a ``ConfigError`` whose one line names the file, the key and
the allowed values::

    [suite]            name, title, dataset, tasks, method, generator, seeds, default_profile, ...
    [dataset_options]  passed to the dataset factory
    [options]          method options for every row
    [metrics]          per task: list of scorer names (default: the task's own metrics)
    [metric_options.<scorer>]   options for one scorer
    [columns]          per task: metric keys shown in leaderboard.md (all are kept in the CSV)
    [tolerances]       per metric key: allowed |ours - published| for the regression check
    [profiles.<name>]  steps, image_size, load_size, batch_size, subsets, ...; [profiles.<name>.options]
    [[rows]]           name, method, generator, discriminator, kind, options, *_options, published
"""

from __future__ import annotations

import dataclasses
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.errors import ConfigError


# --- generic dataclass validation --------------------------------------------------------------

def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if origin is not None:
        args = ", ".join(_type_name(a) for a in typing.get_args(tp))
        return f"{origin.__name__}[{args}]"
    return getattr(tp, "__name__", str(tp)).replace("NoneType", "none")


def _check(value: Any, tp: Any) -> bool:
    if tp is Any:
        return True
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return any(_check(value, a) for a in typing.get_args(tp))
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
        return all(_check(v, inner) for v in value)
    if origin is dict:
        if not isinstance(value, dict):
            return False
        k_t, v_t = typing.get_args(tp) or (Any, Any)
        return all(_check(k, k_t) and _check(v, v_t) for k, v in value.items())
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
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise ConfigError(f"{where} missing required key '{name}'")
            continue
        value, tp = data[name], hints[name]
        if not _check(value, tp):
            raise ConfigError(f"{where} key '{name}' must be {_type_name(tp)}, got "
                              f"{type(value).__name__} ({value!r})")
        if typing.get_origin(tp) is tuple or tp is tuple:
            value = tuple(value)
        if tp is float and isinstance(value, int):
            value = float(value)
        kwargs[name] = value
    return cls(**kwargs)


# --- the suite schema ---------------------------------------------------------------------------

@dataclass
class SuiteSection:
    name: str
    dataset: str
    tasks: list[str]
    title: str = ""
    description: str = ""
    reference: str = ""                      # the paper / table reproduced
    method: str = "pix2pix"
    generator: str = "unet"
    seeds: list[int] = field(default_factory=lambda: [0])
    default_profile: str = "smoke"
    runner: str = "train-score"              # how runs are executed (bench.runners); most suites train+score
    assumptions: list[str] = field(default_factory=list)


@dataclass
class Profile:
    """How much work one run does: ``smoke`` (CPU minutes), ``short`` (one GPU), ``full`` (paper)."""

    steps: int                               # generator steps
    image_size: int = 256
    load_size: int | None = None             # jitter: resize to this, random-crop image_size
    flip: bool = True
    batch_size: int = 1
    train_subset: int | None = None
    eval_subset: int | None = None
    eval_batch_size: int = 16
    checkpoint_every: int = 1000
    keep_checkpoints: int = 2
    log_every: int = 50
    num_workers: int = 0
    amp: bool = True                         # bf16 autocast, CUDA only
    options: dict[str, Any] = field(default_factory=dict)           # method option overrides
    dataset_options: dict[str, Any] = field(default_factory=dict)
    metric_options: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass
class Row:
    name: str
    discriminator: str = ""
    method: str = ""                         # default: [suite].method
    generator: str = ""                      # default: [suite].generator
    kind: str = "model"                      # "model" (trained) | "oracle" (real targets scored)
    label_output: str = "rgb"                # labels tasks: "rgb" colour map or "logits"
    options: dict[str, Any] = field(default_factory=dict)
    generator_options: dict[str, Any] = field(default_factory=dict)
    discriminator_options: dict[str, Any] = field(default_factory=dict)
    published: dict[str, float] = field(default_factory=dict)     # "task/metric" -> value
    note: str = ""


@dataclass
class Suite:
    suite: SuiteSection
    profiles: dict[str, Profile]
    rows: list[Row]
    dataset_options: dict[str, Any] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, list[str]] = field(default_factory=dict)
    metric_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    columns: dict[str, list[str]] = field(default_factory=dict)
    tolerances: dict[str, float] = field(default_factory=dict)
    path: str = ""

    @property
    def name(self) -> str:
        return self.suite.name

    def row(self, name: str) -> Row:
        for r in self.rows:
            if r.name == name or slug(r.name) == name:
                return r
        raise ConfigError(f"suite '{self.name}' has no row '{name}'; rows: {', '.join(r.name for r in self.rows)}")

    def profile(self, name: str | None) -> Profile:
        name = name or self.suite.default_profile
        if name not in self.profiles:
            raise ConfigError(f"suite '{self.name}' has no profile '{name}'; choose one of: "
                              f"{', '.join(self.profiles)}")
        return self.profiles[name]

    def task_metrics(self, task: str) -> list[str]:
        from bench.registry import TASKS
        return list(self.metrics.get(task) or TASKS.get(task).default_metrics)


def slug(name: str) -> str:
    """A file-system-safe row name: '4-Layer Concat + SN' -> '4-layer-concat-sn'."""
    out = "".join(c.lower() if c.isalnum() else "-" for c in name)
    while "--" in out:
        out = out.replace("--", "-")
    return out.strip("-")


def load_suite(path: str | Path) -> Suite:
    """Read and validate a suite file (registry names included)."""
    path = Path(path)
    source = path.name
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"suite file not found: {path}") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{source}: not valid TOML: {e}") from None
    return parse_suite(data, source=source, path=str(path))


def parse_suite(data: dict[str, Any], *, source: str, path: str = "") -> Suite:
    allowed = {f.name for f in dataclasses.fields(Suite) if f.name != "path"}
    for k in data:
        if k not in allowed:
            raise ConfigError(f"{source}: unknown section '{k}'; allowed: {', '.join(sorted(allowed))}")
    if "suite" not in data:
        raise ConfigError(f"{source}: missing section [suite]")
    if "rows" not in data or not isinstance(data["rows"], list) or not data["rows"]:
        raise ConfigError(f"{source}: needs at least one [[rows]] entry")
    if "profiles" not in data or not isinstance(data["profiles"], dict) or not data["profiles"]:
        raise ConfigError(f"{source}: needs at least one [profiles.<name>] section")
    suite = Suite(
        suite=parse_dataclass(SuiteSection, data["suite"], source=source, section="suite"),
        profiles={n: parse_dataclass(Profile, p, source=source, section=f"profiles.{n}")
                  for n, p in data["profiles"].items()},
        rows=[parse_dataclass(Row, r, source=source, section=f"rows.{i}") for i, r in enumerate(data["rows"])],
        path=path or source,
    )
    for key in ("dataset_options", "options", "metrics", "metric_options", "columns", "tolerances"):
        if key in data:
            tp = typing.get_type_hints(Suite)[key]
            if not _check(data[key], tp):
                raise ConfigError(f"{source}: [{key}] must be {_type_name(tp)}")
            setattr(suite, key, data[key])
    from bench.validate import validate_suite
    validate_suite(suite, source)
    return suite
