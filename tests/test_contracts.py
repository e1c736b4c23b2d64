"""Every cGAN shape through the unchanged trainer, scorer and suite code (bench/contracts.py).

One toy per shape (tests/contract_toys.py, loaded as an outside plug-in with ``--plugin``): each
trains two steps on the CPU, checkpoints, resumes from its step-1 checkpoint to the same bytes as
the uninterrupted run, and is scored into a leaderboard by ``bench run --resume``.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from bench.checkpoint import CHECKPOINTS_DIR, STATE, WEIGHTS
from bench.cli import main
from bench.schema import slug
from suite_helpers import toml_dump, assert_scored

TINY = {"steps": 2, "image_size": 32, "batch_size": 2, "train_subset": 8, "eval_subset": 8, "eval_batch_size": 4,
        "checkpoint_every": 1, "keep_checkpoints": 3, "log_every": 1, "flip": False,
        "options": {}}
PIX = {"ngf": 8, "ndf": 8}

SHAPES: dict[str, dict] = {
    "class-conditional (prior, class head)": dict(
        dataset="toy-bars", task="toy-class2image", method="toy-acgan", metrics=["toy-class-gap"],
        rows=[{"name": "AC-GAN toy"}], profile={"image_size": 16}, columns=["class_gap"]),
    "unpaired two-G two-D with history": dict(
        dataset="synthetic-scenes", task="photo2labels-unpaired", method="toy-cycle",
        metrics=["segmentation", "reconstruction@x"], rows=[{"name": "Cycle toy"}],
        columns=["pixel_acc", "mean_iou", "l1@x", "psnr@x"]),
    "encoder + two decoders, three outputs, joint NRDS": dict(
        dataset="synthetic-scenes", task="toy-reconstruct", method="toy-edgan",
        metrics=["reconstruction", "reconstruction@y_rec", "reconstruction@y_gan", "nrds"],
        metric_options={"nrds": {"epochs": 2, "batch_size": 8}},
        rows=[{"name": "ED//GAN"}, {"name": "ED+GAN coupled", "options": {"parallel": False}}],
        columns=["l1", "l1@y_rec", "l1@y_gan", "nrds", "area"]),
    "inpainting, region metric": dict(
        dataset="synthetic-scenes", task="inpaint-center", method="toy-inpaint", metrics=["reconstruction"],
        metric_options={"reconstruction": {"region": "mask"}}, rows=[{"name": "Inpaint toy"}],
        columns=["l1", "l2_pct", "psnr"]),
    "multi-scale D with features, feature matching": dict(
        dataset="synthetic-scenes", task="photo2depth", method="pix2pix", metrics=["depth"], options=PIX,
        rows=[{"name": "MSD + FM", "discriminator": "toy-msd",
               "options": {"regularizers": {"feature-matching": 10.0}}}], columns=["rel", "rms"],
        logged="loss_G_feature-matching"),
    "relativistic loss": dict(
        dataset="synthetic-scenes", task="photo2depth", method="pix2pix", metrics=["depth"], options=PIX,
        rows=[{"name": "RaGAN", "discriminator": "patchgan", "options": {"loss": "ragan"}}], columns=["rel"]),
    "gradient penalty": dict(
        dataset="synthetic-scenes", task="photo2depth", method="pix2pix", metrics=["depth"], options=PIX,
        rows=[{"name": "WGAN-GP", "discriminator": "patchgan", "options": {"loss": "wgan",
                                                                           "regularizers": {"gp": 10.0}}}],
        columns=["rel"], logged="loss_D_gp"),
}


def _suite(tmp: Path, key: str, s: dict) -> Path:
    prof = {**TINY, **s.get("profile", {}), "options": dict(s.get("options", {}))}
    d = {"suite": {"name": "contract-" + slug(key)[:40], "dataset": s["dataset"], "tasks": [s["task"]],
                   "method": s["method"]},
         "metrics": {s["task"]: s["metrics"]}, "metric_options": s.get("metric_options", {}),
         "profiles": {"tiny": prof}, "rows": s["rows"]}
    d["suite"]["default_profile"] = "tiny"
    if not d["metric_options"]:
        del d["metric_options"]
    p = tmp / f"{slug(key)}.toml"
    p.write_text(toml_dump(d))
    return p


def _bench(*args: str) -> None:
    rc = main(["--plugin", "contract_toys", *args, "--no-progress", "--device", "cpu"])
    assert rc == 0, f"bench {' '.join(args)} exited {rc}"


@pytest.mark.parametrize("key", list(SHAPES))
def test_shape_trains_resumes_bit_exactly_and_scores(key, tmp_path):
    s = SHAPES[key]
    suite = _suite(tmp_path, key, s)
    a, b = tmp_path / "a", tmp_path / "b"
    for row in s["rows"]:
        _bench("train", str(suite), "--row", row["name"], "--out", str(a))
    # interrupted after step 1: the copy loses its step-2 checkpoint and resumes from step 1
    shutil.copytree(a, b)
    for row in s["rows"]:
        run = b / "runs" / slug(row["name"]) / "seed0" / s["task"]
        shutil.rmtree(run / CHECKPOINTS_DIR / "step_00000002")
        (run / "status.json").unlink()
        _bench("train", str(suite), "--row", row["name"], "--out", str(b), "--resume")
        ref = a / "runs" / slug(row["name"]) / "seed0" / s["task"] / CHECKPOINTS_DIR / "step_00000002"
        got = run / CHECKPOINTS_DIR / "step_00000002"
        wa, wb = load_file(ref / WEIGHTS), load_file(got / WEIGHTS)
        assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa), f"{row['name']}: weights differ"
        sa = torch.load(ref / STATE, weights_only=True)
        sb = torch.load(got / STATE, weights_only=True)
        torch.testing.assert_close(sb["optimizers"], sa["optimizers"], rtol=0, atol=0)
        torch.testing.assert_close(sb["state"], sa["state"], rtol=0, atol=0)
        torch.testing.assert_close(sb["rng"]["torch"], sa["rng"]["torch"], rtol=0, atol=0)
        if s.get("logged"):
            assert s["logged"] in (run.parent / s["task"] / "scalars.csv").read_text().splitlines()[0]
    _bench("run", str(suite), "--out", str(a), "--resume")
    board = pd.read_csv(a / "leaderboard.csv")
    assert_scored(board)
    assert board["mean"].map(lambda v: torch.isfinite(torch.tensor(v)).item()).all()
    for row in s["rows"]:
        cols = set(board[board["row"] == row["name"]]["metric"])
        assert set(s["columns"]) <= cols, (row["name"], sorted(cols))


def test_toy_specifics(tmp_path):
    """What each shape adds beyond the common path, looked at in its outputs."""
    key = "encoder + two decoders, three outputs, joint NRDS"
    s = SHAPES[key]
    suite = _suite(tmp_path, key, s)
    _bench("run", str(suite), "--out", str(tmp_path / "ed"))
    board = pd.read_csv(tmp_path / "ed" / "leaderboard.csv").set_index(["row", "metric"])
    assert board.loc[("ED//GAN", "nrds"), "mean"] + board.loc[("ED+GAN coupled", "nrds"), "mean"] == pytest.approx(1.0)
    # ED+GAN has no separate G: its y_gan is zero and y equals y_rec
    coupled = board.loc["ED+GAN coupled"]
    assert coupled.loc["l1", "mean"] == pytest.approx(coupled.loc["l1@y_rec", "mean"])
    assert (tmp_path / "ed" / "joint" / "seed0" / "toy-reconstruct" / "nrds_curves.png").is_file()

    key = "unpaired two-G two-D with history"
    suite = _suite(tmp_path, key, SHAPES[key])
    _bench("train", str(suite), "--row", "Cycle toy", "--out", str(tmp_path / "cy"))
    last = sorted((tmp_path / "cy" / "runs" / "cycle-toy" / "seed0" / "photo2labels-unpaired" / CHECKPOINTS_DIR)
                  .iterdir())[-1]
    pools = torch.load(last / STATE, weights_only=True)["state"]["adapter"]
    assert len(pools["pool_a"]) == 4 and len(pools["pool_b"]) == 4       # the history buffer is checkpointed


def test_unpaired_streams_are_independent_and_seeded():
    from bench.batches import IterationBatchSampler
    s = IterationBatchSampler(40, 4, seed=3, start=0, stop=10, unpaired=True)
    pairs = [p for batch in s for p in batch]
    assert any(i != j for i, j in pairs)
    again = [p for batch in IterationBatchSampler(40, 4, seed=3, start=5, stop=10, unpaired=True) for p in batch]
    assert again == pairs[20:]                                   # a resumed sampler continues the same draws
    assert [i for i, _ in pairs] == [i for batch in IterationBatchSampler(40, 4, 3, 0, 10) for i in batch]


# --- the component builder ------------------------------------------------------------------------
class _ConstD(torch.nn.Module):
    """A discriminator that sets its own weights (as a pretrained one would)."""

    def __init__(self, x_channels, y_channels, *, image_size=32, ndf=8):
        super().__init__()
        self.conv = torch.nn.Conv2d(x_channels + y_channels, 1, 3, 1, 1)
        torch.nn.init.constant_(self.conv.weight, 0.5)

    def forward(self, x, y):
        return self.conv(torch.cat([x, y], 1))


class _OwnInitD(_ConstD):
    init_policy = "own"


def _built_d(name: str, **component) -> torch.Tensor:
    from bench.build import build_method
    from bench.contracts import TrainContext
    from bench.registry import DISCRIMINATORS, TASKS
    from bench.data.synthetic_scenes import INFO
    for n, cls in (("test-const-d", _ConstD), ("test-own-init-d", _OwnInitD)):
        if n not in DISCRIMINATORS:
            DISCRIMINATORS.register(n, cls)
    task = TASKS.get("photo2depth").bind(INFO)
    ad = build_method("pix2pix", {"ngf": 8}, task, TrainContext(torch.device("cpu"), image_size=32),
                      {"D": {"name": name, **component}}, image_size=32)
    return ad.D.conv.weight.detach()


def test_a_component_that_initialises_itself_is_not_reinitialised():
    # regression: every discriminator was re-drawn from N(0, 0.02), pretrained weights included
    assert torch.all(_built_d("test-own-init-d") == 0.5)
    assert torch.all(_built_d("test-const-d", init="own") == 0.5)          # the row can say so too
    redrawn = _built_d("test-const-d")                                    # default: the method's init
    assert not torch.any(redrawn == 0.5) and float(redrawn.std()) == pytest.approx(0.02, rel=0.5)
