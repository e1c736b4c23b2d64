"""Cross-checks of a parsed suite against the registries, all before any work starts.

Registry names (datasets, tasks, methods, metrics, runners), each model row resolved for every profile
(``bench.resolve``: its components against their factories' signatures, its method options and the registry
names inside them), and the fit of every metric entry to the task field it scores and to the feeds the task can
give. Nothing here branches on the name of a method, task, metric or runner: it reads what each declares
(``bench.contracts``). It reads what ``bench.config`` parsed and what ``bench.resolve`` resolves; it resolves
nothing itself.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from bench.contracts import scorer_feed
from bench.errors import ConfigError, RegistryError
from bench.registry import DATASETS, METHODS, METRICS, RUNNERS, TASKS
from bench.resolve import _known, method_options, resolve_components
from bench.schema import slug

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


def parse_metric(entry: str) -> tuple[str, str | None]:
    """``"fid@y_rec"`` -> ("fid", "y_rec"); ``"fid"`` -> ("fid", None: the scorer's own ``reads``)."""
    name, _, output = entry.partition("@")
    return name, (output or None)


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
