"""Cross-checks of a parsed suite against the registries (names, option keys, task/metric fit)."""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any

from bench.config import Suite, parse_dataclass
from bench.errors import ConfigError, RegistryError
from bench.registry import DATASETS, DISCRIMINATORS, GENERATORS, METHODS, METRICS, RUNNERS, TASKS, Registry

ROW_KINDS = ("model", "oracle")


def _known(registry: Registry, name: str, source: str, key: str) -> Any:
    if name not in registry:
        raise ConfigError(f"{source}: {key} = '{name}' is not a registered {registry.kind}; choose one of: "
                          f"{', '.join(registry.names())} (or load a plug-in with --plugin)")
    try:
        return registry.get(name)
    except RegistryError as e:
        raise ConfigError(f"{source}: {key} = '{name}': {e}") from None


def _check_kwargs(factory: Any, options: dict[str, Any], source: str, key: str) -> None:
    try:
        sig = inspect.signature(factory)
    except (TypeError, ValueError):
        return
    params = sig.parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    allowed = [n for n, p in params.items() if p.kind is inspect.Parameter.KEYWORD_ONLY
               or (p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD and p.default is not inspect.Parameter.empty)]
    for k in options:
        if k not in allowed:
            raise ConfigError(f"{source}: [{key}] unknown key '{k}'; allowed: {', '.join(allowed)}")


def method_options(suite: Suite, row_index: int, profile: str | None = None) -> Any:
    """The validated ``Options`` dataclass of a row's method.

    ``[options]`` and the profile's ``options`` are checked strictly against the suite's default
    method; a row with another method takes from them only the keys its method knows. The row's own
    ``options`` are checked strictly against its method.
    """
    row = suite.rows[row_index]
    default = METHODS.get(suite.suite.method)
    cls = METHODS.get(row.method or suite.suite.method)
    src = suite.path.rsplit("/", 1)[-1] or suite.name
    shared = dict(suite.options)
    if profile is not None:
        shared.update(suite.profile(profile).options)
    parse_dataclass(default.Options, shared, source=src,
                    section=f"options] / [profiles.{profile}.options" if profile else "options")
    if cls is not default:
        known = {f.name for f in dataclasses.fields(cls.Options)}
        shared = {k: v for k, v in shared.items() if k in known}
    merged = {**shared, **row.options}
    parse_dataclass(cls.Options, row.options, source=src, section=f"rows.{row_index}.options")
    return parse_dataclass(cls.Options, merged, source=src, section=f"rows.{row_index}.options")


def validate_suite(suite: Suite, source: str) -> None:
    s = suite.suite
    _known(DATASETS, s.dataset, source, "[suite] dataset")
    if not s.tasks:
        raise ConfigError(f"{source}: [suite] tasks must name at least one task; choose from: "
                          f"{', '.join(TASKS.names())}")
    if s.default_profile not in suite.profiles:
        raise ConfigError(f"{source}: [suite] default_profile = '{s.default_profile}' is not a profile; "
                          f"profiles: {', '.join(suite.profiles)}")
    if s.runner != "train-score":
        runner = _known(RUNNERS, s.runner, source, "[suite] runner")
        runner.validate(suite, source)
        return
    for t in s.tasks:
        task = _known(TASKS, t, source, "[suite] tasks")
        for m in suite.task_metrics(t):
            scorer = _known(METRICS, m, source, f"[metrics] {t}")
            outputs = getattr(scorer, "outputs", ())
            if outputs and task.output not in outputs:
                raise ConfigError(f"{source}: metric '{m}' cannot score task '{t}' (output '{task.output}'); "
                                  f"it scores outputs: {', '.join(outputs)}")
    for t in suite.metrics:
        if t not in s.tasks:
            raise ConfigError(f"{source}: [metrics] names task '{t}' which is not in [suite] tasks "
                              f"({', '.join(s.tasks)})")
    if not s.seeds:
        raise ConfigError(f"{source}: [suite] seeds must list at least one seed")
    seen = set()
    for i, row in enumerate(suite.rows):
        where = f"[rows.{i}]"
        from bench.config import slug
        if slug(row.name) in seen:
            raise ConfigError(f"{source}: {where} duplicate row name '{row.name}'")
        seen.add(slug(row.name))
        if row.kind not in ROW_KINDS:
            raise ConfigError(f"{source}: {where} kind = '{row.kind}'; allowed: {', '.join(ROW_KINDS)}")
        for key in row.published:
            task, _, metric = key.partition("/")
            if task not in s.tasks or not metric:
                raise ConfigError(f"{source}: {where} published key '{key}' must be '<task>/<metric>' with a task "
                                  f"of the suite ({', '.join(s.tasks)})")
        if row.kind == "oracle":
            continue
        method = _known(METHODS, row.method or s.method, source, f"{where} method")
        uses_d = getattr(method, "uses_discriminator", True)
        if uses_d and not row.discriminator:
            raise ConfigError(f"{source}: {where} missing required key 'discriminator'")
        gen = _known(GENERATORS, row.generator or s.generator, source, f"{where} generator")
        _check_kwargs(gen, row.generator_options, source, f"rows.{i}.generator_options")
        if uses_d:
            disc = _known(DISCRIMINATORS, row.discriminator, source, f"{where} discriminator")
            _check_kwargs(disc, row.discriminator_options, source, f"rows.{i}.discriminator_options")
        elif row.discriminator:
            raise ConfigError(f"{source}: {where} method '{row.method or s.method}' uses no discriminator; "
                              "remove the 'discriminator' key")
        for p in [None, *suite.profiles]:
            method_options(suite, i, p)
