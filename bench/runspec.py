"""One fully resolved run: a suite row x task x seed under a profile.

A ``RunSpec`` holds everything that defines a run (it is written into ``run.json`` and hashed),
so ``bench train`` / ``bench score`` can rebuild the run from a checkpoint alone.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.schema import slug
from bench.resolve import method_options, resolve_components

if TYPE_CHECKING:  # pragma: no cover
    from bench.config import Profile, Suite


@dataclass
class RunSpec:
    suite: str
    row: str
    task: str
    seed: int
    profile: str
    dataset: str
    kind: str                                   # "model" | "oracle"
    method: str
    components: dict[str, dict[str, Any]]       # slot -> {"name", ["init"], **factory options}
    label_output: str
    method_options: dict[str, Any]
    dataset_options: dict[str, Any]
    train: dict[str, Any]                       # the Profile, as a dict
    metrics: list[str]                          # metric entries: "name" or "name@output"
    metric_options: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def profile_settings(self) -> "Profile":
        from bench.config import Profile
        return Profile(**self.train)

    def run_dir(self, out: Path) -> Path:
        return Path(out) / "runs" / slug(self.row) / f"seed{self.seed}" / self.task

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "RunSpec":
        d = dict(d)
        if "components" not in d:               # run.json written before slots existed
            comps = {}
            if d.get("generator"):
                comps["G"] = {"name": d["generator"], **(d.get("generator_options") or {})}
            if d.get("discriminator"):
                comps["D"] = {"name": d["discriminator"], **(d.get("discriminator_options") or {})}
            d["components"] = comps
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


#: profile keys that describe it and do not define a run (kept out of ``RunSpec.train`` and its hashes)
ESTIMATES = ("minutes_cpu", "minutes_gpu")


def _train(prof: "Profile", row_ema: float | None) -> dict[str, Any]:
    """A run's ``train``: the profile without its estimates, its ``ema`` (the row's over the profile's) only
    where one is set, so that runs without it keep the hashes they had."""
    d = {k: v for k, v in dataclasses.asdict(prof).items() if k not in ESTIMATES}
    ema = row_ema if row_ema is not None else d.pop("ema", None)
    d.pop("ema", None)
    if d.get("truncation") is None:
        d.pop("truncation", None)
    return d | ({"ema": ema} if ema is not None else {})


def expand(suite: "Suite", profile: str | None = None, rows: list[str] | None = None,
           seeds: list[int] | None = None, tasks: list[str] | None = None) -> list[RunSpec]:
    """All runs of a suite (or of the chosen rows, seeds and tasks), in row, seed, task order."""
    pname = profile or suite.suite.default_profile
    prof = suite.profile(pname)
    chosen = [suite.row(r) for r in rows] if rows else suite.rows
    runs = []
    for row in chosen:
        i = suite.rows.index(row)
        model = row.kind == "model"
        opts = dataclasses.asdict(method_options(suite, i, pname)) if model else {}
        comps = resolve_components(suite, i, pname) if model else {}
        for seed in (seeds if seeds is not None else suite.suite.seeds):
            for task in suite.suite.tasks:
                if tasks and task not in tasks:
                    continue
                entries = suite.task_metrics(task)
                metric_opts = {}
                for m in entries:
                    name = m.partition("@")[0]
                    metric_opts[name] = {**suite.metric_options.get(name, {}), **prof.metric_options.get(name, {})}
                runs.append(RunSpec(
                    suite=suite.name, row=row.name, task=task, seed=seed, profile=pname,
                    dataset=suite.suite.dataset, kind=row.kind,
                    method=(row.method or suite.suite.method) if model else "",
                    components=comps, label_output=row.label_output, method_options=opts,
                    dataset_options={**suite.dataset_options, **prof.dataset_options},
                    train=_train(prof, row.ema if model else None),
                    metrics=entries, metric_options=metric_opts))
    return runs
