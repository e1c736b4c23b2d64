"""Data-parallel training and scoring under torchrun (bench/distributed.py) on CPU with the gloo back-end: two
processes with half the batch each give the weights of one process with the whole batch, a run resumed under
two processes is bit-identical to one that was not interrupted, and scoring split over two processes gives one
process's metrics."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from bench.checkpoint import CHECKPOINTS_DIR, WEIGHTS
from suite_helpers import REPO, bench, quickstart_variant

RUN = ("--row", "A", "--task", "photo2depth", "--no-progress", "--device", "cpu", "--deterministic")
ENV = {"OMP_NUM_THREADS": "1", "BENCH_THREADS": "1"}


@pytest.fixture(scope="module")
def suite(tmp_path_factory) -> Path:
    """pix2pix without norm layers or dropout, 4 steps of batch 4 at 32x32: torch's SyncBatchNorm runs on GPUs
    only, dropout draws per sample, and behind instance norm a conv's bias has no gradient but rounding noise,
    which Adam scales to a full step (so two sums of the same zero disagree by the learning rate)."""
    tiny = {"steps": 4, "image_size": 32, "load_size": 36, "batch_size": 4, "train_subset": 16, "eval_subset": 8,
            "eval_batch_size": 2, "checkpoint_every": 2, "keep_checkpoints": 4, "log_every": 1,
            "options": {"ngf": 8, "ndf": 8, "dropout": 0.0},
            "components": {"G": {"norm": "none"}, "D": {"norm": "none"}}}
    return quickstart_variant(tmp_path_factory.mktemp("suite"), suite={"name": "ddp", "tasks": ["photo2depth"],
                                                                         "default_profile": "tiny"},
                              metrics={"photo2depth": ["depth"]}, columns={"photo2depth": ["rel"]},
                              profiles={"tiny": tiny}, rows=[{"name": "A", "discriminator": "patchgan"}])


def _torchrun(suite: Path, out: Path, *extra: str) -> None:
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                        "-m", "bench.cli", "train", str(suite), *RUN, "--out", str(out), *extra], cwd=REPO,
                       capture_output=True, text=True, timeout=600, env={**__import__("os").environ, **ENV})
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.count("A | photo2depth | seed 0: complete at step 4") == 1          # rank 0 alone prints


def _weights(out: Path, step: int = 4) -> dict[str, torch.Tensor]:
    return load_file(out / "runs" / "a" / "seed0" / "photo2depth" / CHECKPOINTS_DIR / f"step_{step:08d}" / WEIGHTS)


@pytest.fixture(scope="module")
def two(suite, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("two")
    _torchrun(suite, out)
    return out


def test_two_processes_with_half_the_batch_give_one_process_weights(suite, two, tmp_path):
    bench("train", str(suite), *RUN, "--out", str(tmp_path / "one"), env=ENV, check=True)
    one, got = _weights(tmp_path / "one"), _weights(two)
    assert one.keys() == got.keys()
    for k in one:
        torch.testing.assert_close(got[k], one[k], rtol=1e-4, atol=1e-5, msg=k)
    assert any(not torch.equal(_weights(two, 2)[k], got[k]) for k in got)           # it did train
    log = (two / "runs" / "a" / "seed0" / "photo2depth" / "scalars.csv").read_text().splitlines()
    assert len(log) == 5                                                              # one writer: 4 steps, once


def test_a_run_resumed_under_two_processes_is_bit_identical(suite, two, tmp_path):
    again = tmp_path / "again"
    shutil.copytree(two, again)
    run = again / "runs" / "a" / "seed0" / "photo2depth"
    shutil.rmtree(run / CHECKPOINTS_DIR / "step_00000004")
    (run / "status.json").unlink()
    _torchrun(suite, again, "--resume")
    a, b = _weights(two), _weights(again)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_scoring_split_over_two_processes_gives_one_process_metrics(two):
    run = two / "runs" / "a" / "seed0" / "photo2depth"
    one = bench("score", str(run), "--device", "cpu", "--no-progress", env=ENV, check=True).stdout
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                        "-m", "bench.cli", "score", str(run), "--device", "cpu", "--no-progress"], cwd=REPO,
                       capture_output=True, text=True, timeout=600, env={**__import__("os").environ, **ENV})
    assert r.returncode == 0, r.stderr[-3000:]
    assert "photo2depth/rel" in one and r.stdout == one     # 4 test batches, 2 per rank: rank 0 prints the same
