"""An optional experiment logger beside TensorBoard: MLflow (``bench run --track mlflow``), off by default.

What it logs, per run (one MLflow run per row x seed x task, named like the progress bars):

- tags ``bench.suite / row / task / seed / profile / method`` and the run's folder; params: the run's
  training configuration, flattened (``train.steps``, ``components.G.name``, ...);
- every training scalar at its step (what ``scalars.csv`` holds);
- every scored number at its checkpoint's step, under ``score/<metric>`` (``[x0.5]``-style budget suffixes
  become ``:x0.5``, ``@output`` ``:output``), so the MLflow UI compares rows and seeds.

Where: ``$MLFLOW_TRACKING_URI`` when set (a server, a database), else ``sqlite:///<out>/mlflow.db`` beside
the results (MLflow 3 keeps the plain-folder store in maintenance mode and refuses it by default); the
experiment is ``$MLFLOW_EXPERIMENT_NAME``, else the suite's name. ``bench run`` sets both variables for its
workers (local processes, Slurm jobs through submitit inherit them; Ray tasks do not: set them in the cluster's
runtime environment). A resumed run continues the same MLflow run (its id is kept in the run folder); the
steps between its checkpoint and the kill are logged again with the same values (training resumes exactly).

The logger never costs a result: any MLflow error is logged once as a warning and the logger turns itself off.
Needs the ``track`` extra (``pip install 'cgan-bench[track]'``: mlflow-skinny, SQLAlchemy, alembic).
"""

from __future__ import annotations

import logging
import os
import re
import time
from pathlib import Path
from typing import Any

from bench.errors import ConfigError
from bench.provenance import flatten

log = logging.getLogger(__name__)

ENV_VAR = "BENCH_TRACK"
BACKENDS = ("mlflow",)
RUN_ID_FILE = "mlflow_run_id.txt"
_KEY_BAD = re.compile(r"[^A-Za-z0-9_\-. /:]")


def enable(backend: str | None, out: Path, suite: str) -> None:
    """Called by ``bench run --track BACKEND``: set the variables its workers read (refusing a missing extra)."""
    if backend is None:
        return
    if backend not in BACKENDS:
        raise ConfigError(f"--track must be one of {', '.join(BACKENDS)}, not '{backend}'")
    try:
        import mlflow  # noqa: F401
    except ImportError as e:
        raise ConfigError("--track mlflow needs MLflow: pip install 'cgan-bench[track]' (mlflow-skinny, SQLAlchemy, "
                          "alembic)") from e
    os.environ[ENV_VAR] = backend
    os.environ.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{Path(out).resolve() / 'mlflow.db'}")
    os.environ.setdefault("MLFLOW_EXPERIMENT_NAME", suite)


def metric_key(name: str) -> str:
    """A bench metric name as an MLflow key (alphanumerics, ``_-. /:`` only): ``photo2labels/mean_iou[x0.5]`` ->
    ``photo2labels/mean_iou:x0.5``, ``gate.spread_ratio@y`` -> ``gate.spread_ratio:y``."""
    return _KEY_BAD.sub("_", name.replace("[", ":").replace("]", "").replace("@", ":"))


class Tracker:
    """One MLflow run, opened (or reopened) from a run folder; every call is best-effort."""

    def __init__(self, run_dir: Path, name: str, tags: dict[str, str], params: dict[str, Any]):
        from mlflow.tracking import MlflowClient
        self.client = MlflowClient()
        id_file = Path(run_dir) / RUN_ID_FILE
        run_id = id_file.read_text().strip() if id_file.is_file() else ""
        if run_id:
            self.client.update_run(run_id, status="RUNNING")
        else:
            experiment = os.environ.get("MLFLOW_EXPERIMENT_NAME") or "cgan-bench"
            found = self.client.get_experiment_by_name(experiment)
            exp_id = found.experiment_id if found is not None else self.client.create_experiment(experiment)
            run_id = self.client.create_run(exp_id, run_name=name, tags=tags).info.run_id
            id_file.write_text(run_id + "\n")
            from mlflow.entities import Param
            items = [Param(k[:250], str(v)[:6000]) for k, v in sorted(params.items())]
            for i in range(0, len(items), 100):
                self.client.log_batch(run_id, params=items[i:i + 100])
        self.run_id = run_id

    def log(self, step: int, values: dict[str, float], prefix: str = "") -> None:
        from mlflow.entities import Metric
        now = int(time.time() * 1000)
        metrics = [Metric(metric_key(prefix + k), float(v), now, int(step)) for k, v in values.items()
                   if v is not None]
        for i in range(0, len(metrics), 500):
            self.client.log_batch(self.run_id, metrics=metrics[i:i + 500])

    def close(self, status: str = "FINISHED") -> None:
        self.client.set_terminated(self.run_id, status=status)


class _Safe:
    """Wraps a Tracker: the first error is logged and turns tracking off for this run."""

    def __init__(self, make: Any):
        self.t = None
        try:
            self.t = make()
        except Exception as e:  # noqa: BLE001 - a logger never costs a result
            log.warning("MLflow tracking is off for this run: %s", str(e).splitlines()[0] if str(e) else repr(e))

    def __getattr__(self, name: str) -> Any:
        def call(*a: Any, **k: Any) -> None:
            if self.t is None:
                return
            try:
                getattr(self.t, name)(*a, **k)
            except Exception as e:  # noqa: BLE001
                log.warning("MLflow tracking is off for this run: %s", str(e).splitlines()[0] if str(e) else repr(e))
                t, self.t = self.t, None
                try:
                    t.close("FAILED")
                except Exception:  # noqa: BLE001 - the store itself may be what failed
                    pass
        return call


def open_tracker(run_dir: Path, spec: Any) -> Any | None:
    """The run's tracker when ``bench run --track`` asked for one (None otherwise)."""
    if os.environ.get(ENV_VAR) != "mlflow":
        return None
    tags = {"bench.suite": spec.suite, "bench.row": spec.row, "bench.task": spec.task, "bench.seed": str(spec.seed),
            "bench.profile": spec.profile, "bench.method": spec.method, "bench.run_dir": str(run_dir)}
    params = flatten({k: v for k, v in spec.to_dict().items() if k not in ("suite", "row", "task", "seed")})
    name = f"{spec.row} | {spec.task} | seed {spec.seed}"
    return _Safe(lambda: Tracker(run_dir, name, tags, params))
