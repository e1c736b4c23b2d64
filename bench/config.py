"""Typed, validated configuration from TOML suite files.

The whole schema (every section and key, its type, default and meaning) is defined here, once:
``bench schema`` prints it and the README's suite-file reference is generated from it. A suite
file is parsed structurally here (unknown key, wrong type, missing key: one-line ``ConfigError``
naming the file, the section and the allowed values) and then cross-checked against the
registries by ``bench.validate`` (names, component options, metric / task fit).
"""

from __future__ import annotations

import dataclasses
import re
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.errors import ConfigError
from bench.schema import check_type, doc, field_rows, markdown_table, parse_dataclass, slug, type_name
from bench.validate import validate_suite

__all__ = ["SuiteSection", "Profile", "Row", "Claim", "Suite", "load_suite", "parse_suite", "slug",
           "schema_markdown", "parse_dataclass"]


# --- the suite schema ---------------------------------------------------------------------------

@dataclass
class SuiteSection:
    """``[suite]``: what the suite reproduces and how its runs are made."""

    name: str = doc("Suite name (results, folders and leaderboards are keyed by it).")
    dataset: str = doc("A registered dataset (`bench list datasets`).")
    tasks: list[str] = doc("Registered tasks run on every row (`bench list tasks`).")
    title: str = doc("Heading of the leaderboard.", "")
    description: str = doc("One paragraph on what is compared.", "")
    reference: str = doc("The paper and table reproduced.", "")
    method: str = doc("Default method of every row (`bench list methods`).", "pix2pix")
    generator: str = doc("Default component of every generator slot; \"\" = each method's own default.", "")
    seeds: list[int] = doc("Seeds run per row (`--seeds N` runs 0..N-1 instead).", factory=lambda: [0])
    default_profile: str = doc("Profile used without `--profile`.", "smoke")
    runner: str = doc("How runs are executed (`bench list runners`); `train-score` trains and scores every "
                      "row x task x seed.", "train-score")
    assumptions: list[str] = doc("Everything the suite had to choose where the paper is silent; printed under "
                                 "the leaderboard.", factory=list)
    paper: str = doc("Short id of the paper reproduced (e.g. `decoupled-learning`); \"\" = not from a paper. "
                     "The status page counts the paper's tables and figures by it.", "")
    paper_items: list[str] = doc("The paper's tables and figures this suite reproduces, one entry each: "
                                 "`\"Table 2\"`, `\"Fig. 14\"`; empty with a `paper` = a check of the paper's "
                                 "text that is no table or figure (e.g. a worked example).", factory=list)
    substitute: str = doc("What stands in for the paper's data or protocol, so that its published values are "
                          "not what this suite measures (e.g. `\"MNIST 32x32 for UTKFace 128x128\"`); \"\" = the "
                          "paper's own. Smaller budgets are not substitutes: the status page shows them.", "")
    training_scalars: list[str] = doc("Logged training scalars drawn over steps in `training.png`, one panel per "
                                      "task and scalar, one line per row (seeds' mean and range): e.g. the "
                                      "new-losses paper's Figure 1 is `[\"loss_D\", \"kl\"]`.",
                                      factory=lambda: ["loss_D", "loss_G"])
    paper_budget: str = doc("The paper's training budget in words, with its source and what is not published.",
                            "")
    paper_steps: int | None = doc("The paper's generator steps (epochs x iterations per epoch); none = not "
                                  "published. With `paper_batch_size`, the status page's budget share.", None)
    paper_batch_size: int | None = doc("The paper's training batch size; none = not published.", None)
    paper_image_size: int | None = doc("The paper's training image side in pixels; none = not published.", None)

    def __post_init__(self) -> None:
        if (self.paper_items or self.substitute) and not self.paper:
            raise ConfigError("keys 'paper_items' and 'substitute' need the key 'paper' (the paper's short id)")
        for item in self.paper_items:
            if not re.fullmatch(r"(Table|Fig\.) \d+[a-z]?", item):
                raise ConfigError(f"key 'paper_items' lists one table or figure per entry, as \"Table 2\" or "
                                  f"\"Fig. 14\", not '{item}'")
        for key in ("paper_steps", "paper_batch_size", "paper_image_size"):
            if getattr(self, key) is not None and getattr(self, key) < 1:
                raise ConfigError(f"key '{key}' must be at least 1 (leave it out when not published)")


#: the most generator steps a profile may ask for (a billion: years of training; more is a typo)
MAX_STEPS = 10**9


@dataclass
class Profile:
    """``[profiles.<name>]``: how much work one run does (``smoke``, ``short``, ``full``, ...)."""

    steps: int = doc("Generator steps (0: a fixed model, nothing to train).")
    image_size: int = doc("Square side of training and evaluation images.", 256)
    load_size: int | None = doc("Jitter: load at this size and random-crop `image_size` (none: no crop).", None)
    flip: bool = doc("Random horizontal flips in training.", True)
    batch_size: int = doc("Training batch size.", 1)
    train_subset: int | None = doc("Keep the first N training samples (none: all).", None)
    eval_subset: int | None = doc("Keep the first N test samples (none: all).", None)
    eval_batch_size: int = doc("Batch size of the scoring pass.", 16)
    checkpoint_every: int = doc("Checkpoint every N generator steps (and at the last).", 1000)
    keep_checkpoints: int = doc("Newest checkpoints kept per run (the budget ladder's and eval_epochs' are kept as "
                                "well; `bench run --keep-checkpoints N` overrides).", 1)
    log_every: int = doc("Write losses to scalars.csv / TensorBoard every N steps.", 50)
    num_workers: int = doc("Data-loading worker processes.", 0)
    amp: bool = doc("bf16 autocast on CUDA (ignored on CPU).", True)
    eval_epochs: list[int] = doc("Also score the checkpoints at the end of these epochs (curves over "
                                 "training); their keys get the suffix `[eN]`.", factory=list)
    eval_steps: list[int] = doc("Also score the checkpoints at these generator steps (a budget ladder: `bench run "
                                "--budget`); their keys get the suffix `[sN]`.", factory=list)
    explode_above: float | None = doc("A run whose loss exceeds this in absolute value has diverged (none: "
                                      "only non-finite losses count).", 1e8)
    time_limit_min: float | None = doc("Wall-time limit of one run (training and scoring), minutes; a run past it "
                                       "is ended and recorded failed (none: 120 + steps / 2, a backstop; "
                                       "`--time-limit` overrides).", None)
    stall_limit_min: float = doc("A run with no training step, scoring batch or judge step for this many minutes "
                                 "is stalled: ended and recorded failed (`--stall-limit` overrides).", 30.0)
    ema: float | None = doc("Decay of an average of the generator's weights kept along training (e.g. 0.999; "
                            "bench/ema.py): scoring and sample grids use it. None: the last weights.", None)
    truncation: float | None = doc("Latents of samples drawn from the prior truncated to [-t, t] (BigGAN's "
                                   "truncation trick, for class-conditional rows; scoring and grids). None: off.",
                                   None)
    minutes_cpu: float | None = doc("Measured wall minutes of the whole profile (every row x task x seed) on 2 CPU "
                                    "cores (`bench list suites` shows it; a run of over 60 minutes started on a "
                                    "CPU asks for `--yes`). Not part of a run's spec.", None)
    minutes_gpu: float | None = doc("The same on one GPU (H100 class), where measured.", None)
    options: dict[str, Any] = doc("Method option overrides for this profile (merged over `[options]`).",
                                  factory=dict)
    components: dict[str, dict[str, Any]] = doc(
        "Per slot: factory option overrides for this profile (e.g. narrower nets on a CPU), laid over the "
        "rows'; slots a row's method lacks are skipped.", factory=dict)
    dataset_options: dict[str, Any] = doc("Dataset option overrides for this profile.", factory=dict)
    metric_options: dict[str, dict[str, Any]] = doc("Per metric: option overrides for this profile.",
                                                    factory=dict)

    def wall_limit_s(self) -> float:
        """The wall-time limit of one run in seconds: ``time_limit_min``, else 2 h plus 30 s per step."""
        return 60 * (self.time_limit_min if self.time_limit_min is not None else 120 + self.steps / 2)

    def __post_init__(self) -> None:
        for key in ("image_size", "batch_size", "eval_batch_size", "checkpoint_every", "keep_checkpoints",
                    "log_every"):
            if getattr(self, key) < 1:
                raise ConfigError(f"key '{key}' must be at least 1, got {getattr(self, key)}")
        if (self.time_limit_min is not None and not self.time_limit_min > 0) or not self.stall_limit_min > 0:
            raise ConfigError("keys 'time_limit_min' and 'stall_limit_min' must be positive minutes")
        if self.steps < 0 or self.num_workers < 0:
            raise ConfigError("keys 'steps' and 'num_workers' must not be negative")
        if self.steps > MAX_STEPS:
            raise ConfigError(f"key 'steps' = {self.steps:.3g} is beyond any training budget (at most {MAX_STEPS:,} "
                              "generator steps); give the steps of one run")
        from bench.ema import check_decay
        check_decay(self.ema, "profile key")
        if self.truncation is not None and not self.truncation > 0:
            raise ConfigError(f"key 'truncation' = {self.truncation}: a positive bound on the latents, e.g. 1.0")
        if any(e < 1 for e in self.eval_epochs) or len(set(self.eval_epochs)) != len(self.eval_epochs):
            raise ConfigError(f"key 'eval_epochs' must list distinct epochs >= 1, got {self.eval_epochs}")
        if any(s < 1 or s > self.steps for s in self.eval_steps) or len(set(self.eval_steps)) != len(self.eval_steps):
            raise ConfigError(f"key 'eval_steps' must list distinct steps in [1, steps = {self.steps}], got "
                              f"{self.eval_steps}")


@dataclass
class Row:
    """``[[rows]]``: one line of the table (a model, or an oracle scored on the real targets)."""

    name: str = doc("Row name as in the paper's table.")
    discriminator: str = doc("Shorthand: the component of every discriminator slot of the method.", "")
    method: str = doc("Method of this row (default: `[suite] method`).", "")
    generator: str = doc("Shorthand: the component of every generator slot (default: `[suite] generator`).", "")
    kind: str = doc("`model` (trained) or `oracle` (the real targets scored: a ceiling row).", "model")
    label_output: str = doc("Labels outputs: `rgb` colour map or `logits` (one channel per class).", "rgb")
    options: dict[str, Any] = doc("Method options of this row (merged over `[options]` and the profile's).",
                                  factory=dict)
    components: dict[str, dict[str, Any]] = doc(
        "Per slot of the method (`bench list methods`): `{ name = \"...\", init = \"adapter\" | \"own\", "
        "<factory options> }`, e.g. `{ D = { name = \"fusion4-sn\", ndf = 32 } }`.", factory=dict)
    generator_options: dict[str, Any] = doc("Shorthand: factory options of every generator slot.", factory=dict)
    discriminator_options: dict[str, Any] = doc("Shorthand: factory options of every discriminator slot.",
                                                factory=dict)
    published: dict[str, float] = doc("The paper's values, `\"<task>/<metric key>\" = value`.", factory=dict)
    ema: float | None = doc("This row's weight-average decay, over the profile's `ema` (e.g. to compare with "
                            "and without).", None)
    note: str = doc("Free text shown nowhere but the file.", "")

    def __post_init__(self) -> None:
        from bench.ema import check_decay
        check_decay(self.ema, f"row '{self.name}':")


CLAIM_STATISTICS = ("mean", "std", "max", "min", "each")


@dataclass
class Claim:
    """``[[claims]]``: an ordering the paper claims, checked by the leaderboard on our seeds."""

    text: str = doc("The claim in words, as the paper makes it.")
    metric: str = doc("The column it is about: `\"<task>/<metric key>\"` (e.g. `class2image/fid_class_mean[e5]`).")
    order: list[str] = doc("Rows from best to worst (two or more): each is claimed better than the next.",
                           factory=list)
    groups: list[list[str]] = doc(
        "Instead of `order`: two groups of rows, the first claimed better than the second on a statistic "
        "over each group's rows, computed per seed (see `statistic`).", factory=list)
    statistic: list[str] = doc(
        "With `groups`: the same statistic for both groups, like with like: `mean`, `std`, `max` or `min` over "
        "each group's rows per seed (`std`, `max`, `min` need groups of equal size: the best of four noisy rows "
        "is not comparable with the mean of four, nor with the best of two), or `each`: every row of the "
        "first group against every row of the second (e.g. `[\"std\", \"std\"]`: the first group varies less).",
        factory=lambda: ["mean", "mean"])
    better: str = doc("`higher` or `lower` is better; \"\" = what the metric's scorer says (required with a "
                      "`std` statistic).", "")
    source: str = doc("Where the paper makes it (figure, table, section).", "")

    def __post_init__(self) -> None:
        if self.groups:
            if self.order:
                raise ConfigError("a claim has either 'order' or 'groups', not both")
            if len(self.groups) != 2 or any(not g for g in self.groups):
                raise ConfigError("key 'groups' must hold two non-empty lists of rows, the better group first")
            if len(self.statistic) != 2 or any(st not in CLAIM_STATISTICS for st in self.statistic):
                raise ConfigError(f"key 'statistic' must hold two of {', '.join(CLAIM_STATISTICS)} (one per group)")
            if self.statistic[0] != self.statistic[1]:
                raise ConfigError(f"key 'statistic' compares unlike with unlike ({self.statistic[0]} vs "
                                  f"{self.statistic[1]}): use the same statistic for both groups (mean with mean, "
                                  "max with max, ...) or 'each' for every pair of rows")
            if self.statistic[0] in ("std", "max", "min") and len(self.groups[0]) != len(self.groups[1]):
                raise ConfigError(f"a '{self.statistic[0]}' claim needs groups of equal size (got "
                                  f"{len(self.groups[0])} and {len(self.groups[1])} rows): that statistic depends "
                                  "on how many rows it is taken over; use 'mean' or 'each'")
            if "std" in self.statistic and not self.better:
                raise ConfigError("a claim on a 'std' statistic must say better = \"lower\" or \"higher\"")
        elif len(self.order) < 2:
            raise ConfigError("key 'order' must name at least two rows, best first")
        if self.better not in ("", "higher", "lower"):
            raise ConfigError(f"key 'better' must be 'higher', 'lower' or \"\", not '{self.better}'")

    @property
    def rows(self) -> list[str]:
        """Every row the claim names."""
        return list(self.order) + [r for g in self.groups for r in g]


@dataclass
class Suite:
    suite: SuiteSection
    profiles: dict[str, Profile]
    rows: list[Row]
    dataset_options: dict[str, Any] = doc("Passed to the dataset factory (`[dataset_options]`).", factory=dict)
    options: dict[str, Any] = doc("Method options of every row (`[options]`), checked against the suite's "
                                  "method.", factory=dict)
    metrics: dict[str, list[str]] = doc(
        "Per task: scorers to run (default: the task's own). `name@output` scores another output of the "
        "method (e.g. `reconstruction@y_rec`); its keys get the suffix `@output`.", factory=dict)
    metric_options: dict[str, dict[str, Any]] = doc("Per scorer name: its options (`[metric_options.<name>]`).",
                                                    factory=dict)
    columns: dict[str, list[str]] = doc("Per task: metric keys shown in leaderboard.md (all are in the CSV).",
                                        factory=dict)
    tolerances: dict[str, float] = doc(
        "Per metric key or `task/metric`: how far a value may move from its baseline in `bench regress --mode "
        "exact` when asked with `--suite-tolerances` (a baseline made on another machine; default: any change "
        "fails); `--tolerance` overrides.", factory=dict)
    claims: list[Claim] = field(default_factory=list)
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
        """Profile ``name``: one of the file's, or a budget ladder over one (``<profile>@x<r1>-<r2>-...``, see
        :func:`ladder_profile`), made and remembered on first use."""
        name = name or self.suite.default_profile
        if name not in self.profiles and LADDER_MARK in name:
            base, rungs = parse_ladder(name)
            self.profiles[name] = ladder_profile(self.profile(base), rungs)
        if name not in self.profiles:
            raise ConfigError(f"suite '{self.name}' has no profile '{name}'; choose one of: "
                              f"{', '.join(self.profiles)}")
        return self.profiles[name]

    def task_metrics(self, task: str) -> list[str]:
        """The metric entries of ``task`` (``name`` or ``name@output``)."""
        from bench.registry import TASKS
        return list(self.metrics.get(task) or TASKS.get(task).default_metrics)


LADDER_MARK = "@x"


def ladder_name(base: str, rungs: list[float]) -> str:
    """The profile name of a budget ladder over ``base``: ``cpu@x1-3-10``."""
    return f"{base}{LADDER_MARK}" + "-".join(f"{r:g}" for r in rungs)


def parse_ladder(name: str) -> tuple[str, list[float]]:
    """``cpu@x0.3-1-3`` -> ("cpu", [0.3, 1.0, 3.0]) (one-line error when it is not one)."""
    base, _, spec = name.partition(LADDER_MARK)
    try:
        rungs = [float(r) for r in spec.split("-")]
    except ValueError:
        rungs = []
    if not base or not rungs or any(not r > 0 for r in rungs) or sorted(set(rungs)) != rungs:
        raise ConfigError(f"'{name}' is not a budget ladder: write <profile>{LADDER_MARK}<r1>-<r2>-... with increasing "
                          "multiples of the profile's steps (e.g. cpu@x1-3-10), or use --budget 1,3,10")
    return base, rungs


def ladder_profile(base: Profile, rungs: list[float]) -> Profile:
    """The profile that trains ``max(rungs)`` times ``base``'s steps and scores the checkpoints at each smaller
    rung's step (``eval_steps``, keys ``[sN]``): one longer run per row and seed judged at several budgets. The
    base's ``eval_epochs`` are kept where they fall within the longer run."""
    if base.steps < 1:
        raise ConfigError("a budget ladder needs a profile that trains (steps >= 1)")
    steps = max(1, round(max(rungs) * base.steps))
    at = sorted({max(1, round(r * base.steps)) for r in rungs} - {steps})
    scale = steps / base.steps                         # the estimates grow with the training (not the scoring)
    return dataclasses.replace(base, steps=steps, eval_steps=at,
                               minutes_cpu=None if base.minutes_cpu is None else base.minutes_cpu * scale,
                               minutes_gpu=None if base.minutes_gpu is None else base.minutes_gpu * scale)


TOP_SECTIONS = ("dataset_options", "options", "metrics", "metric_options", "columns", "tolerances")


def load_suite(path: str | Path) -> Suite:
    """Read and validate a suite file (registry names included)."""
    path = Path(path)
    source = path.name
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"suite file not found: {path}") from None
    except IsADirectoryError:
        raise ConfigError(f"{path} is a folder, not a suite file (.toml)") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"{source}: not UTF-8 text (byte {e.start}); save the suite file as UTF-8 TOML") from None
    except OSError as e:
        raise ConfigError(f"cannot read suite file {path}: {e.strerror}") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{source}: not valid TOML: {e}") from None
    except RecursionError:
        raise ConfigError(f"{source}: arrays or tables nested too deeply to read; a suite file nests a few "
                          "levels") from None
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
    claims = data.get("claims", [])
    if not isinstance(claims, list):
        raise ConfigError(f"{source}: [[claims]] must be an array of tables")
    suite.claims = [parse_dataclass(Claim, c, source=source, section=f"claims.{i}") for i, c in enumerate(claims)]
    hints = typing.get_type_hints(Suite)
    for key in TOP_SECTIONS:
        if key in data:
            if not check_type(data[key], hints[key]):
                raise ConfigError(f"{source}: [{key}] must be {type_name(hints[key])}")
            setattr(suite, key, data[key])
    validate_suite(suite, source)                # cross-checks against the registries
    return suite


def schema_markdown() -> str:
    """The suite-file reference: every section and key with type, default and meaning."""
    parts = ["A suite file is TOML with these sections; unknown keys are errors.", ""]
    for title, cls in (("[suite]", SuiteSection), ("[profiles.<name>]", Profile), ("[[rows]]", Row),
                       ("[[claims]]", Claim)):
        about = (cls.__doc__ or "").strip().split(": ", 1)[-1].replace("``", "`")
        parts += [f"#### `{title}`", "", about[:1].upper() + about[1:], "", markdown_table(field_rows(cls)), ""]
    hints = typing.get_type_hints(Suite)
    top = [(f.name, type_name(hints[f.name]), "`{}`", f.metadata.get("doc", ""))
           for f in dataclasses.fields(Suite) if f.name in TOP_SECTIONS]
    parts += ["#### Top-level sections", "", markdown_table([(f"[{k}]", t, d, m) for k, t, d, m in top]), ""]
    return "\n".join(parts)
