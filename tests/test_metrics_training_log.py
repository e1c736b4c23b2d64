"""The training-log scorer (metrics/training_log.py): statistics of a run's logged scalars up to the scored
checkpoint, checked against numbers computed by hand and by the standard library, and its errors."""

from __future__ import annotations

import statistics

import pytest
import torch

from bench.checkpoint import run_dir_of, step_of
from bench.contracts import ScoreContext, scorer_feed
from bench.errors import MetricError
from bench.registry import METRICS
from bench.tasks import TASKS

# step, loss_D, kl: the GAN-like first column is logged at every row, kl only from step 20 on
LOG = """step,kl,loss_D
10,,1.0
20,5.0,0.5
30,3.0,0.25
40,1.0,0.75
50,2.0,nan
"""


def _scorer(run_dir, step, **options):
    ctx = ScoreContext(task=TASKS.get("digits"), device=torch.device("cpu"), cache_dir=run_dir,
                       options={"scalars": ["loss_D", "kl"], **options}, run_dir=run_dir, step=step)
    return METRICS.get("training-log")(ctx)


@pytest.fixture
def run(tmp_path):
    (tmp_path / "scalars.csv").write_text(LOG)
    return tmp_path


def test_it_is_a_log_fed_scorer_of_any_task():
    cls = METRICS.get("training-log")
    assert scorer_feed(cls) == "log" and cls.outputs == ()


def test_the_window_is_the_last_share_of_the_steps_up_to_the_checkpoint(run):
    # step 40, window 0.5: rows with 20 < step <= 40 (30 and 40); the NaN row at 50 is after the checkpoint
    got = _scorer(run, 40, window=0.5).compute()
    assert got["end_loss_D"] == pytest.approx(0.5)                     # (0.25 + 0.75) / 2
    assert got["sd_loss_D"] == pytest.approx(0.25)                     # population sd of {0.25, 0.75}
    assert got["end_kl"] == pytest.approx(2.0) and got["sd_kl"] == pytest.approx(1.0)


def test_the_whole_log_against_the_statistics_module_with_non_finite_values_left_out(run):
    got = _scorer(run, 50, window=1.0).compute()
    assert got["end_loss_D"] == pytest.approx(statistics.fmean([1.0, 0.5, 0.25, 0.75]))
    assert got["sd_loss_D"] == pytest.approx(statistics.pstdev([1.0, 0.5, 0.25, 0.75]))
    assert got["end_kl"] == pytest.approx(statistics.fmean([5.0, 3.0, 1.0, 2.0]))


def test_a_budget_rung_reads_only_its_own_prefix(run):
    assert _scorer(run, 20, window=0.5).compute() == {"end_loss_D": 0.5, "sd_loss_D": 0.0,
                                                      "end_kl": 5.0, "sd_kl": 0.0}


def test_a_scalar_the_run_does_not_log_gives_no_value_but_none_at_all_is_an_error(run):
    got = _scorer(run, 10, window=1.0).compute()                        # kl is empty up to step 10
    assert set(got) == {"end_loss_D", "sd_loss_D"}
    with pytest.raises(MetricError, match=r"logs none of loss_G .*\(it logs: kl, loss_D\)"):
        _scorer(run, 40, scalars=["loss_G"]).compute()


def test_bad_options_and_a_missing_log_are_one_line_errors(run, tmp_path):
    with pytest.raises(MetricError, match="unknown option 'windw'"):
        _scorer(run, 40, windw=0.5)
    with pytest.raises(MetricError, match=r"window = 0.0; .* in \(0, 1\]"):
        _scorer(run, 40, window=0.0)
    with pytest.raises(MetricError, match="scalars = "):
        _scorer(run, 40, scalars=[])
    with pytest.raises(MetricError, match="scalars.csv is missing"):
        _scorer(tmp_path / "elsewhere", 40).compute()


def test_the_run_folder_and_step_come_from_the_checkpoint_path(tmp_path):
    ck = tmp_path / "runs" / "row" / "seed0" / "digits" / "checkpoints" / "step_00001500"
    assert step_of(ck) == 1500 and run_dir_of(ck) == tmp_path / "runs" / "row" / "seed0" / "digits"
    assert step_of(tmp_path / "best") is None
