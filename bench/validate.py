"""Cross-checks of a parsed suite against the registries, all before any work starts.

Registry names (datasets, tasks, methods, components, losses, regularisers, metrics, runners),
component options against their factory's signature minus what the method provides, method
options (and the registry names inside them), and the fit of every metric entry to the task
field it scores and to the feeds the task can give. Nothing here branches on the name of a
method, task, metric or runner: it reads what each declares (``bench.contracts``).
"""

from __future__ import annotations

import dataclasses
import inspect
import re
from typing import TYPE_CHECKING, Any

from bench.contracts import INIT_POLICIES, Slot, scorer_feed
from bench.errors import ConfigError, RegistryError
from bench.registry import DATASETS, METHODS, METRICS, REGISTRIES, RUNNERS, TASKS, Registry
from bench.schema import parse_dataclass, slug

if TYPE_CHECKING:  # pragma: no cover
    from bench.config import Suite

ROW_KINDS = ("model", "oracle")
#: seeds go to torch, numpy (which takes 32 bits) and the results store: 0 <= seed < SEED_LIMIT
SEED_LIMIT = 2**32
#: a row's slug names its run folder: longer ones fail on file systems (255 bytes a name) with the folder above
MAX_SLUG = 100
#: what the bench gives every dataset factory itself (bench.build.build_dataset): never a [dataset_options] key
DATASET_ARGS = ("split", "size", "root", "subset", "seed")
#: a metric key as recorded: ``<key>[@<output>]``, with ``[eN]`` (an epoch's checkpoint) or ``[sN]`` (a budget rung)
_CHECKPOINT_SUFFIX = re.compile(r"^(?P<base>.+)\[(?P<kind>[es])(?P<n>\d+)\]$")
#: the output gate's record keys (bench.gates): ``gate.<name>@<output>``
_GATE_KEYS = ("spread_ratio", "pairwise_ratio", "degenerate")
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


def parse_metric(entry: str) -> tuple[str, str | None]:
    """``"fid@y_rec"`` -> ("fid", "y_rec"); ``"fid"`` -> ("fid", None: the scorer's own ``reads``)."""
    name, _, output = entry.partition("@")
    return name, (output or None)


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


# --- metric keys --------------------------------------------------------------------------------

def _declared(scorer: Any) -> tuple[str, ...]:
    """The keys a scorer declares: ``keys``, and those it gives a direction or range to (a key may extend one
    with ``_<suffix>``, e.g. ``class_acc_0``, as the leaderboard reads them)."""
    out = list(getattr(scorer, "keys", ()) or ())
    out += [k for k in (*(getattr(scorer, "higher_is_better", ()) or ()), *(getattr(scorer, "ranges", {}) or {}))
            if k not in out]
    return tuple(out)


def task_keys(suite: "Suite", task: str) -> tuple[list[str], bool]:
    """The metric keys the suite's scorers of ``task`` declare (``key`` or ``key@output``), and whether every
    scorer declares its keys (a plug-in scorer that declares none may produce any key: nothing can be checked)."""
    keys: list[str] = []
    complete = True
    for entry in suite.task_metrics(task):
        name, output = parse_metric(entry)
        if name not in METRICS:
            complete = False
            continue
        try:
            declared = _declared(METRICS.get(name))
        except RegistryError:
            complete = False
            continue
        complete = complete and bool(declared)
        keys += [f"{k}@{output}" if output else k for k in declared]
    return list(dict.fromkeys(keys)), complete


def check_metric_key(suite: "Suite", task: str, key: str, where: str) -> None:
    """``key`` (as in ``[[claims]] metric = "<task>/<key>"`` or ``[columns]``) must be one the suite's scorers of
    ``task`` produce: a declared key (or one extending it with ``_<suffix>``), with the ``@output`` of its entry,
    optionally at an earlier checkpoint (``[eN]``: N an epoch some profile scores; ``[sN]``: a budget rung), or
    an output gate's key (``gate.<name>@<output>``)."""
    m = _CHECKPOINT_SUFFIX.match(key)
    base = m["base"] if m else key
    if m and m["kind"] == "e" and not any(int(m["n"]) in p.eval_epochs for p in suite.profiles.values()):
        raise ConfigError(f"{where} '{task}/{key}' is scored at the end of epoch {m['n']}, which no profile's "
                          f"eval_epochs lists; add {m['n']} to a profile's eval_epochs or drop the '[e{m['n']}]'")
    if base.startswith("gate."):
        name, _, output = base[len("gate."):].partition("@")
        if name in _GATE_KEYS and output:
            return
    known, complete = task_keys(suite, task)
    if not complete:
        return
    stem, _, output = base.partition("@")
    for k in known:
        k_stem, _, k_output = k.partition("@")
        if k_output == output and (stem == k_stem or stem.startswith(k_stem + "_")):
            return
    raise ConfigError(f"{where} no metric of task '{task}' produces '{key}'; the task's metrics "
                      f"({', '.join(suite.task_metrics(task))}) produce: {', '.join(known)} (a key may extend one "
                      "with _<suffix>, or add [eN] for an epoch a profile scores)")


# --- the suite ----------------------------------------------------------------------------------

def _check_seeds(seeds: list[int], where: str) -> None:
    bad = [x for x in seeds if not 0 <= x < SEED_LIMIT]
    if bad:
        raise ConfigError(f"{where} seed {bad[0]} is out of range; seeds must be integers in 0..{SEED_LIMIT - 1} "
                          "(torch, numpy and the results store take them)")
    dup = sorted({x for x in seeds if seeds.count(x) > 1})
    if dup:
        raise ConfigError(f"{where} seed {dup[0]} is listed twice; list each seed once (a repeated seed would "
                          "train the same run again and count it twice)")


def validate_suite(suite: "Suite", source: str) -> None:
    """Checks every suite needs; then the runner's own (``runner.validate``)."""
    s = suite.suite
    _known(DATASETS, s.dataset, source, "[suite] dataset")
    if not s.tasks:
        raise ConfigError(f"{source}: [suite] tasks must name at least one task; choose from: "
                          f"{', '.join(TASKS.names())}")
    for t in s.tasks:
        _known(TASKS, t, source, "[suite] tasks")
    if s.default_profile not in suite.profiles:
        raise ConfigError(f"{source}: [suite] default_profile = '{s.default_profile}' is not a profile; "
                          f"profiles: {', '.join(suite.profiles)}")
    if not s.seeds:
        raise ConfigError(f"{source}: [suite] seeds must list at least one seed")
    _check_seeds(list(s.seeds), f"{source}: [suite] seeds:")
    profile_options = [(f"profiles.{n}.dataset_options", p.dataset_options) for n, p in suite.profiles.items()]
    for section, options in [("dataset_options", suite.dataset_options), *profile_options]:
        for k in options:
            if k in DATASET_ARGS:
                raise ConfigError(f"{source}: [{section}] unknown dataset option '{k}' for dataset '{s.dataset}': "
                                  f"the bench sets {', '.join(DATASET_ARGS)} itself (the data's place: "
                                  "BENCH_DATA_ROOT; subsets: a profile's train_subset / eval_subset)")
    for key, value in suite.tolerances.items():
        if not value >= 0:                        # NaN too: no change would ever be within it
            raise ConfigError(f"{source}: [tolerances] {key} = {value}: a tolerance is the largest change allowed, "
                              "a number >= 0")
    for section, tasks in (("metrics", suite.metrics), ("columns", suite.columns)):
        for t in tasks:
            if t not in s.tasks:
                raise ConfigError(f"{source}: [{section}] names task '{t}' which is not in [suite] tasks "
                                  f"({', '.join(s.tasks)})")
    seen = set()
    for i, row in enumerate(suite.rows):
        where = f"[rows.{i}]"
        if not slug(row.name):
            raise ConfigError(f"{source}: {where} row name '{row.name}' needs a letter or digit (it names the run's "
                              "folder)")
        if len(slug(row.name)) > MAX_SLUG:
            raise ConfigError(f"{source}: {where} row name '{row.name[:40]}...' is {len(row.name)} characters; its "
                              f"folder name would be {len(slug(row.name))} (at most {MAX_SLUG}): shorten it and "
                              "say the rest in its 'note'")
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
    names = {r.name for r in suite.rows} | {slug(r.name) for r in suite.rows}
    for i, c in enumerate(suite.claims):
        task, _, metric = c.metric.partition("/")
        if task not in s.tasks or not metric:
            raise ConfigError(f"{source}: [claims.{i}] metric '{c.metric}' must be '<task>/<metric>' with a task of "
                              f"the suite ({', '.join(s.tasks)})")
        for r in c.rows:
            if r not in names:
                raise ConfigError(f"{source}: [claims.{i}] names row '{r}', which the suite does not have")
        rows = [[slug(r) for r in g] for g in ([c.order] if c.order else c.groups)]
        for g, group in enumerate(rows):
            twice = [r for r in dict.fromkeys(group) if group.count(r) > 1]
            if twice:
                raise ConfigError(f"{source}: [claims.{i}] names row '{twice[0]}' twice in its "
                                  f"{'order' if c.order else f'group {g + 1}'}; name each row once")
        if c.groups and set(rows[0]) & set(rows[1]):
            both = next(r for r in rows[0] if r in rows[1])
            raise ConfigError(f"{source}: [claims.{i}] row '{both}' is in both groups; a claim compares two disjoint "
                              "groups of rows")
    runner = _known(RUNNERS, s.runner, source, "[suite] runner")
    runner.validate(suite, source)


def validate_models_and_metrics(suite: "Suite", source: str) -> None:
    """The train-and-score checks: each model row's method, components and options for every profile,
    and each metric entry against the fields its output estimates and the feeds its task gives."""
    s = suite.suite
    for t in s.tasks:
        task = TASKS.get(t)
        for entry in suite.task_metrics(t):
            name, output = parse_metric(entry)
            scorer = _known(METRICS, name, source, f"[metrics] {t}")
            feed = scorer_feed(scorer)
            if feed == "paired" and task.pairing == "none":
                raise ConfigError(f"{source}: metric '{name}' compares each output with its own target, but task "
                                  f"'{t}' has no paired inputs (pairing 'none'); use a samples or joint metric")
            out = output or getattr(scorer, "reads", "y")
            for i, row in enumerate(suite.rows):
                if row.kind == "model":
                    cls = METHODS.get(row.method or s.method)
                    outputs = dict(getattr(cls, "outputs", {"y": "y"}))
                    if out not in outputs:
                        raise ConfigError(f"{source}: [metrics] {t}: '{entry}' reads output '{out}', which method "
                                          f"'{row.method or s.method}' (row '{row.name}') does not give; its "
                                          f"outputs: {', '.join(outputs)}")
                    field_name = outputs[out]
                    need = "prior" if task.pairing == "none" else "batch"
                    if need not in getattr(cls, "samples_from", ("batch",)):
                        raise ConfigError(f"{source}: method '{row.method or s.method}' cannot sample from the "
                                          f"{need} that task '{t}' scores with")
                else:
                    field_name = out
                if field_name not in task.fields:
                    raise ConfigError(f"{source}: [metrics] {t}: output '{out}' estimates field '{field_name}', "
                                      f"which task '{t}' lacks (fields: {', '.join(task.fields)})")
                kind = task.fields[field_name].kind
                kinds = getattr(scorer, "outputs", ())
                if kinds and kind not in kinds:
                    raise ConfigError(f"{source}: metric '{name}' cannot score task '{t}' (output '{kind}'); "
                                      f"it scores outputs: {', '.join(kinds)}")
    for i, c in enumerate(suite.claims):           # the metrics fit their tasks: now the keys they produce
        task, _, key = c.metric.partition("/")
        check_metric_key(suite, task, key, f"{source}: [claims.{i}] metric:")
    for t, keys in suite.columns.items():
        for key in keys:
            check_metric_key(suite, t, key, f"{source}: [columns] {t}:")
    for i, row in enumerate(suite.rows):
        if row.kind != "model":
            continue
        cls = METHODS.get(row.method or s.method)
        for p in [None, *suite.profiles]:
            resolve_components(suite, i, p)
            method_options(suite, i, p)
            if p is not None and suite.profiles[p].steps == 0 and getattr(cls, "trainable", True):
                raise ConfigError(f"{source}: [profiles.{p}] steps = 0, but method '{row.method or s.method}' "
                                  f"(row '{row.name}') has weights to train; give steps >= 1")
