"""bench run --track mlflow: every training scalar and score reaches MLflow, read back through MLflow's own client."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from bench import tracking
from bench.results import ResultStore
from bench.tracking import ENV_VAR, RUN_ID_FILE, metric_key, open_tracker
from suite_helpers import bench

mlflow = pytest.importorskip("mlflow", reason="the 'track' extra (mlflow-skinny) is not installed")

ROW = "4-Layer Concat"


def _client(out: Path):
    from mlflow.tracking import MlflowClient
    return MlflowClient(tracking_uri=f"sqlite:///{out.resolve() / 'mlflow.db'}")


@pytest.mark.slow
def test_scalars_and_scores_reach_mlflow_once_per_run(tmp_path, monkeypatch) -> None:
    for var in ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_NAME", ENV_VAR):
        monkeypatch.delenv(var, raising=False)
    out = tmp_path / "q"
    args = ("run", "quickstart", "--profile", "tiny", "--tasks", "labels2photo", "--seeds", "1", "--no-progress",
            "--device", "cpu", "--track", "mlflow", "--out", str(out))
    bench(*args, "--rows", ROW, check=True)
    client = _client(out)
    exp = client.get_experiment_by_name("quickstart")
    runs = client.search_runs([exp.experiment_id])
    assert len(runs) == 1
    run = runs[0]
    assert run.info.run_name == f"{ROW} | labels2photo | seed 0" and run.info.status == "FINISHED"
    assert run.data.tags["bench.row"] == ROW and run.data.params["train.steps"] == "6"
    run_dir = Path(run.data.tags["bench.run_dir"])
    assert (run_dir / RUN_ID_FILE).read_text().strip() == run.info.run_id
    with (run_dir / "scalars.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    history = client.get_metric_history(run.info.run_id, "loss_D")
    assert [(m.step, m.value) for m in history] == [(int(r["step"]), pytest.approx(float(r["loss_D"]))) for r in rows]
    scores = ResultStore(out / "results.sqlite").records(status="ok")
    assert scores
    for r in scores:
        assert run.data.metrics[metric_key("score/" + r.metric)] == pytest.approx(r.value)
    # a second row, the first skipped on resume: one more MLflow run, none doubled
    bench(*args, "--rows", ROW, "--rows", "4-Layer Concat + SN", "--resume", check=True)
    runs = client.search_runs([exp.experiment_id])
    assert sorted(r.data.tags["bench.row"] for r in runs) == [ROW, "4-Layer Concat + SN"]


def test_a_reopened_run_continues_and_errors_turn_tracking_off(tmp_path, monkeypatch) -> None:
    class Spec:
        suite, row, task, seed, profile, method = "s", "r", "t", 0, "p", "m"

        def to_dict(self):
            return {"train": {"steps": 2}, "components": {"G": {"name": "unet"}}}

    monkeypatch.setenv(ENV_VAR, "mlflow")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'm.db'}")
    assert metric_key("photo2labels/mean_iou[x0.5]") == "photo2labels/mean_iou:x0.5"
    assert metric_key("gate.spread_ratio@y") == "gate.spread_ratio:y"
    first = open_tracker(tmp_path, Spec())
    first.log(1, {"loss_D": 0.5})
    first.close()
    again = open_tracker(tmp_path, Spec())                 # a resumed run: the same MLflow run
    again.log(2, {"loss_D": 0.25})
    again.close()
    run_id = (tmp_path / RUN_ID_FILE).read_text().strip()
    from mlflow.tracking import MlflowClient
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'm.db'}")
    assert [(m.step, m.value) for m in client.get_metric_history(run_id, "loss_D")] == [(1, 0.5), (2, 0.25)]
    assert client.get_run(run_id).data.params["components.G.name"] == "unet"
    # an unreachable store: one warning, no exception, nothing logged
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9/")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    said: list[str] = []
    monkeypatch.setattr(tracking.log, "warning", lambda msg, *a: said.append(msg % a))
    broken = open_tracker(tmp_path / "other", Spec())
    broken.log(1, {"loss_D": 1.0})
    broken.close()
    assert len(said) == 1 and said[0].startswith("MLflow tracking is off for this run: ") and "\n" not in said[0]
    assert broken.t is None
    monkeypatch.delenv(ENV_VAR)
    assert open_tracker(tmp_path, Spec()) is None          # off by default
