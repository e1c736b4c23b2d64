"""The average of the generator's weights (bench/ema.py): its update by hand, along a real training run against
the run's own checkpoints, exact resume, scoring with the average, and the settings' checks; and the truncated
latents of prior samples (bench.contracts.FromPrior)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from bench.checkpoint import CHECKPOINTS_DIR, WEIGHTS
from bench.config import load_suite
from bench.ema import WeightAverage
from bench.errors import ConfigError
from bench.runspec import expand
from suite_helpers import bench, quickstart_variant

RUN = ("--row", "A", "--task", "photo2depth", "--no-progress", "--device", "cpu", "--deterministic")


class _Adapter:
    def __init__(self):
        self.modules = {"G": nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2)), "D": nn.Linear(2, 1)}


def test_the_average_moves_a_share_of_the_way_and_copies_buffers():
    a = _Adapter()
    avg = WeightAverage(a, decay=0.75)
    w0 = a.modules["G"][0].weight.detach().clone()
    with torch.no_grad():
        a.modules["G"][0].weight.add_(4.0)
        a.modules["G"][1].running_mean.fill_(3.0)
    avg.update()
    got = avg.modules()["ema_G"]
    torch.testing.assert_close(got[0].weight, 0.75 * w0 + 0.25 * (w0 + 4.0))      # d x average + (1 - d) x current
    assert torch.equal(got[1].running_mean, torch.full((2,), 3.0))                # buffers are copied
    assert set(avg.modules()) == {"ema_G"} and not any(p.requires_grad for p in got.parameters())


@pytest.fixture(scope="module")
def suite(tmp_path_factory) -> Path:
    tiny = {"steps": 3, "image_size": 32, "load_size": 36, "batch_size": 2, "train_subset": 8, "eval_subset": 4,
            "eval_batch_size": 4, "checkpoint_every": 1, "keep_checkpoints": 4, "log_every": 1, "ema": 0.5,
            "options": {"ngf": 8, "ndf": 8}}
    return quickstart_variant(tmp_path_factory.mktemp("suite"), suite={"name": "ema", "tasks": ["photo2depth"],
                                                                         "default_profile": "tiny"},
                              metrics={"photo2depth": ["depth"]}, columns={"photo2depth": ["rel"]},
                              profiles={"tiny": tiny},
                              rows=[{"name": "A", "discriminator": "patchgan"},
                                    {"name": "B", "discriminator": "patchgan", "ema": 0.9}])


def _weights(out: Path, step: int) -> dict[str, torch.Tensor]:
    return load_file(out / "runs" / "a" / "seed0" / "photo2depth" / CHECKPOINTS_DIR / f"step_{step:08d}" / WEIGHTS)


def test_training_keeps_the_average_in_every_checkpoint_and_resumes_it_exactly(suite, tmp_path):
    out = tmp_path / "a"
    bench("train", str(suite), *RUN, "--out", str(out), check=True)
    w2, w3 = _weights(out, 2), _weights(out, 3)
    for k in (k for k in w3 if k.startswith("G.") and w3[k].is_floating_point() and "running" not in k):
        avg = f"ema_{k}"
        torch.testing.assert_close(w3[avg], 0.5 * w2[avg] + 0.5 * w3[k])            # step 3 from step 2's average
    assert any(not torch.equal(w3[f"ema_{k}"], w3[k]) for k in w3 if k.startswith("G."))
    again = tmp_path / "b"
    shutil.copytree(out, again)
    run = again / "runs" / "a" / "seed0" / "photo2depth"
    shutil.rmtree(run / CHECKPOINTS_DIR / "step_00000003")
    (run / "status.json").unlink()
    bench("train", str(suite), *RUN, "--out", str(again), "--resume", check=True)
    b3 = load_file(run / CHECKPOINTS_DIR / "step_00000003" / WEIGHTS)
    assert w3.keys() == b3.keys() and all(torch.equal(w3[k], b3[k]) for k in w3)


def test_scoring_samples_with_the_average_and_says_so(suite, tmp_path):
    from bench.score import _sampling, open_model
    bench("train", str(suite), *RUN, "--out", str(tmp_path), check=True)
    s = load_suite(suite)
    spec = next(x for x in expand(s, "tiny", ["A"], [0]) if x.task == "photo2depth")
    ck = tmp_path / "runs" / "a" / "seed0" / "photo2depth" / CHECKPOINTS_DIR / "step_00000003"
    from bench.build import bind_task, build_dataset
    task = bind_task(spec, build_dataset(spec, "test", 32, 4))
    adapter = open_model(spec, ck, task, torch.device("cpu"))
    w = load_file(ck / WEIGHTS)
    for k, v in adapter.modules["G"].state_dict().items():
        assert torch.equal(v, w[f"ema_G.{k}"]), k                                   # the average, not the last
    assert _sampling(spec, adapter, task)["ema"] == {"decay": 0.5, "modules": ["G"]}
    assert next(x for x in expand(s, "tiny", ["B"], [0])).train["ema"] == 0.9        # the row's over the profile's


def test_bad_decays_are_refused_and_runs_without_it_keep_their_hashes():
    from bench.config import Profile, Row
    with pytest.raises(ConfigError, match=r"ema = 1.0: the decay of the weights' average lies in \(0, 1\)"):
        Profile(steps=1, ema=1.0)
    with pytest.raises(ConfigError, match="row 'A': ema = -0.1"):
        Row(name="A", ema=-0.1)
    from suite_helpers import REPO
    spec = expand(load_suite(REPO / "leaderboards" / "quickstart.toml"), "tiny")[0]
    assert "ema" not in spec.train                                                   # no key where none is set


def test_truncated_latents_stay_in_bounds_are_reproducible_and_leave_untruncated_ones_alone():
    from bench.contracts import FromPrior
    plain, cut = FromPrior(64, seed=3), FromPrior(64, seed=3, truncation=0.5)
    assert torch.equal(plain.normal(16), torch.randn(64, 16, generator=torch.Generator().manual_seed(3)))
    z = cut.normal(16)
    assert z.abs().max() <= 0.5 and torch.equal(z, cut.normal(16))                   # a pure function of the request
    ids = FromPrior(6, seed=3, latent_ids=torch.tensor([0, 0, 1, 1, 2, 2]), truncation=0.5).normal(4)
    assert ids.abs().max() <= 0.5 and torch.equal(ids[0], ids[1])


def test_scoring_asks_the_prior_for_truncated_latents_and_says_so():
    from bench.score import _sampling, model_outputs
    seen = []

    class Prior:
        def sample(self, request):
            seen.append(request)
            return {"y": torch.zeros(2, 1, 4, 4)}

        def eval_protocol(self):
            return {}

    class Task:
        pairing, inputs = "none", {}

    class Spec:
        train = {"truncation": 0.7, "eval_batch_size": 2, "steps": 1}
        profile_settings = type("P", (), {"eval_batch_size": 2})()

    model_outputs(Prior(), Task(), {"image": torch.zeros(2, 1, 4, 4)}, 0, 0.7)
    assert seen[0].truncation == 0.7
    assert _sampling(Spec(), Prior(), Task())["truncation"] == 0.7
    from bench.config import Profile
    with pytest.raises(ConfigError, match="'truncation' = 0.0"):
        Profile(steps=1, truncation=0.0)
