"""Suite runners: how a suite's runs are executed.

Most suites use the default ``train-score`` runner (``bench.suite``: train each row x task x seed,
score its checkpoint). A suite whose rows are scored jointly, such as NRDS (one classifier judges
all models at once), names another runner in ``[suite] runner``. A runner has
``validate(suite, source)`` and ``run(suite, out, store, *, profile, rows, seeds, device, resume,
progress) -> (ran, skipped, failed)`` and writes ordinary result records, so the leaderboard,
the results store and regression checks work unchanged.
"""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from bench.config import Suite, slug
from bench.errors import ConfigError
from bench.provenance import code_version, protocol_hash
from bench.registry import RUNNERS

log = logging.getLogger(__name__)


@RUNNERS.register("nrds-toy")
class NRDSToyRunner:
    """The NRDS paper's 2-D toy (``metrics.nrds.toy_example``): each row is one fake sample set.

    Rows name their set with ``options = { set = "fake_close" }`` (or ``"fake_far"``); the profile's
    ``options`` are passed to ``toy_example`` (``n``, ``batch_size``, ``lr``); ``steps`` is the number
    of classifier epochs. One classifier per seed scores all rows together.
    """

    SETS = ("fake_close", "fake_far")

    @staticmethod
    def validate(suite: Suite, source: str) -> None:
        allowed_profile = {"n", "batch_size", "lr"}
        for i, row in enumerate(suite.rows):
            s = row.options.get("set")
            if s not in NRDSToyRunner.SETS or set(row.options) != {"set"}:
                raise ConfigError(f"{source}: [rows.{i}] options must be {{ set = \"fake_close\" | \"fake_far\" }}")
        for name, p in suite.profiles.items():
            bad = set(p.options) - allowed_profile
            if bad:
                raise ConfigError(f"{source}: [profiles.{name}.options] unknown key '{sorted(bad)[0]}'; "
                                  f"allowed: {', '.join(sorted(allowed_profile))}")

    @staticmethod
    def run(suite: Suite, out: Path, store: Any, *, profile: str, rows: list[str] | None, seeds: list[int],
            resume: bool, progress: bool, **_: Any) -> tuple[int, int, list[str]]:
        from bench.results import ResultRecord
        from metrics.nrds import toy_example
        prof = suite.profile(profile)
        chosen = [suite.row(r) for r in rows] if rows else suite.rows
        task = suite.suite.tasks[0]
        ran = skipped = 0
        for seed in seeds:
            done = store.records(suite=suite.name, profile=profile, seed=seed, status="ok")
            if resume and {r.row for r in done} >= {row.name for row in chosen}:
                skipped += 1
                continue
            res = toy_example(seed=seed, epochs=prof.steps, **prof.options)
            by_set = dict(zip(res.names, zip(res.scores, res.areas)))
            protocol = {"metric": "nrds", "runner": "nrds-toy", "epochs": prof.steps, **prof.options,
                        "classifier": "MLP 2x32 ReLU", "sets": list(res.names), "num_samples": prof.options.get("n")}
            h = protocol_hash(protocol)
            store.add_protocol(h, protocol)
            plot_dir = out / "runs" / f"seed{seed}"
            plot_dir.mkdir(parents=True, exist_ok=True)
            res.plot(plot_dir / "nrds_curves.png")
            now = datetime.now(timezone.utc).isoformat(timespec="seconds")
            records = []
            for row in chosen:
                score, area = by_set[row.options["set"]]
                for metric, value in (("nrds", score), ("area", area)):
                    records.append(ResultRecord(
                        suite=suite.name, row=row.name, task=task, seed=seed, profile=profile, metric=metric,
                        value=float(value), checkpoint=str((plot_dir / "nrds_curves.png").relative_to(out)),
                        protocol_hash=h, code_version=code_version(), time=now, status="ok", reason=""))
            store.append(records)
            ran += 1
            log.info("nrds-toy seed %d: %s", seed, {slug(k): round(v[0], 4) for k, v in by_set.items()})
        return ran, skipped, []
