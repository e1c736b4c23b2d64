"""CycleGAN (methods/cyclegan.py), its ResNet generator (methods/generators/resnet.py) and the translation-zoo
suite: shapes and the reference's parameter count, which parameters each loss reaches, the image histories in
the checkpoint, the unpaired training stream, two training steps, exact resume, and the suite's smoke profile."""

from __future__ import annotations

import shutil

import pytest
import torch
from safetensors.torch import load_file

from bench.build import build_method
from bench.checkpoint import CHECKPOINTS_DIR, STATE, WEIGHTS
from bench.cli import main
from bench.config import load_suite
from bench.contracts import FromBatch, TrainContext
from bench.data.synthetic_scenes import INFO
from bench.errors import ConfigError
from bench.nets import count_parameters
from bench.registry import GENERATORS, METHODS, SUITES, TASKS
from bench.schema import slug
from methods.cyclegan import CycleGAN, derangement
from methods.generators.resnet import ResidualBlock, ResnetGenerator, default_n_blocks
from suite_helpers import run_smoke, toml_dump

TINY = {"ngf": 4, "ndf": 4}


def _imgs(n: int = 2, size: int = 32, seed: int = 0, c: int = 3) -> torch.Tensor:
    return torch.rand(n, c, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def _batch(n: int = 2, size: int = 32, seed: int = 0) -> dict[str, torch.Tensor]:
    return {"photo": _imgs(n, size, seed), "label_rgb": _imgs(n, size, seed + 100)}


def _adapter(task: str = "photo2labels", seed: int = 0, **options) -> CycleGAN:
    torch.manual_seed(seed)
    t = TASKS.get(task).bind(INFO)
    ctx = TrainContext(torch.device("cpu"), image_size=32, seed=seed)
    return build_method("cyclegan", {**TINY, **options}, t, ctx, {}, image_size=32)


def _grads(ad: CycleGAN) -> dict[str, bool]:
    """Slot -> whether any of its parameters holds a non-zero gradient."""
    return {k: any(p.grad is not None and bool(p.grad.abs().sum() > 0) for p in m.parameters())
            for k, m in ad.modules.items()}


def _zero(ad: CycleGAN) -> None:
    for m in ad.modules.values():
        m.zero_grad(set_to_none=True)


# --------------------------------------------------------------------------------- the ResNet generator
def test_registered_names():
    assert METHODS.get("cyclegan") is CycleGAN
    assert GENERATORS.get("resnet") is ResnetGenerator
    assert CycleGAN.slots["G"].default == "resnet" and CycleGAN.slots["D_Y"].default == "patchgan-uncond"


@pytest.mark.parametrize("size", [32, 64])
def test_resnet_shapes_and_tanh_range(size):
    g = ResnetGenerator(3, 1, image_size=size, ngf=8)
    assert g.n_blocks == 6                                      # the paper's rule below 256 px
    out = g(_imgs(2, size))
    assert out.shape == (2, 1, size, size) and out.abs().max() <= 1
    assert isinstance(g.model[0], torch.nn.ReflectionPad2d) and isinstance(g.model[-1], torch.nn.Tanh)
    assert sum(isinstance(m, ResidualBlock) for m in g.model) == 6
    assert ResnetGenerator(3, 3, image_size=size, ngf=4, n_blocks=2)(_imgs(1, size)).shape == (1, 3, size, size)


def test_resnet_parameter_count_matches_the_reference_9_block_256px():
    # c7s1-64 + d128 + d256 + 9 x R256 + u128 + u64 + c7s1-3, instance norm (no affine), biases on every conv
    def conv(i, o, k):
        return i * o * k * k + o

    expected = (conv(3, 64, 7) + conv(64, 128, 3) + conv(128, 256, 3) + 9 * 2 * conv(256, 256, 3)
                + conv(256, 128, 3) + conv(128, 64, 3) + conv(64, 3, 7))
    g = ResnetGenerator(3, 3, image_size=256)
    assert default_n_blocks(256) == g.n_blocks == 9 and default_n_blocks(128) == 6
    assert count_parameters(g) == expected == 11_378_179
    assert round(count_parameters(g) / 1e6, 3) == 11.378          # the reference prints "11.378 M"


def test_resnet_refuses_sizes_it_cannot_halve_twice():
    with pytest.raises(ConfigError, match="multiple of 4"):
        ResnetGenerator(3, 3, image_size=30)
    with pytest.raises(ConfigError, match="padding"):
        ResnetGenerator(3, 3, image_size=32, padding="circular")


# --------------------------------------------------------------------------------- which loss reaches what
def test_each_loss_reaches_only_its_networks():
    ad = _adapter()
    b = _batch()
    x, y = ad.task.x(b), ad.task.y(b)
    fake_y, fake_x = ad.G(x), ad.F(y)
    # D_Y's loss: D_Y only (the fakes are detached); D_X's: D_X only
    _, _, d = ad.discriminator_losses(x, y, fake_y, fake_x, 0)
    d["d_y"].backward(retain_graph=True)
    assert _grads(ad) == {"G": False, "F": False, "D_Y": True, "D_X": False}
    _zero(ad)
    d["d_x"].backward()
    assert _grads(ad) == {"G": False, "F": False, "D_Y": False, "D_X": True}
    _zero(ad)

    def g_terms():
        fy, fx = ad.G(x), ad.F(y)
        return ad.generator_losses(x, y, fy, fx, 0)[2]

    # the cycle losses: G and F, never the Ds
    t = g_terms()
    (t["cycle_x"] + t["cycle_y"]).backward()
    assert _grads(ad) == {"G": True, "F": True, "D_Y": False, "D_X": False}
    for name, alone in (("cycle_x", "both"), ("cycle_y", "both"), ("idt_y", "G"), ("idt_x", "F")):
        _zero(ad)
        g_terms()[name].backward()
        got = _grads(ad)
        assert not got["D_Y"] and not got["D_X"], name
        assert (got["G"], got["F"]) == ((True, True) if alone == "both" else (alone == "G", alone == "F")), name
    # G's adversarial term reaches G (through D_Y) and D_Y's input path, not F; F's the reverse
    _zero(ad)
    g_terms()["gan_y"].backward()
    got = _grads(ad)
    assert got["G"] and not got["F"] and not got["D_X"]
    _zero(ad)
    g_terms()["gan_x"].backward()
    got = _grads(ad)
    assert got["F"] and not got["G"] and not got["D_Y"]


def test_the_g_step_freezes_both_ds_and_the_d_step_leaves_the_generators():
    ad = _adapter()
    before = {k: [p.detach().clone() for p in m.parameters()] for k, m in ad.modules.items()}
    b = _batch()
    x, y = ad.task.x(b), ad.task.y(b)
    ad._g_update(x, y, ad.G(x), ad.F(y), 0)
    moved = {k: any(not torch.equal(p, q) for p, q in zip(m.parameters(), before[k])) for k, m in ad.modules.items()}
    assert moved == {"G": True, "F": True, "D_Y": False, "D_X": False}
    assert all(p.requires_grad for m in ad.modules.values() for p in m.parameters())     # unfrozen after


def test_identity_terms_only_when_x_and_y_have_the_same_channels():
    assert _adapter().identity                                     # photo and colour label map: 3 and 3
    depth = _adapter("photo2depth")                                # photo (3) <-> depth (1)
    assert not depth.identity
    logs = depth.train_step({"photo": _imgs(), "depth": torch.rand(2, 1, 32, 32) * 10}, 0, True)
    assert "loss_G_cycle_x" in logs and not any("idt" in k for k in logs)
    assert not _adapter(lambda_identity=0.0).identity


# --------------------------------------------------------------------------------- the image histories
def test_d_sees_the_pool_s_fakes():
    ad = _adapter(pool_size=3)
    seen: list[torch.Tensor] = []
    stored = torch.full((2, 3, 32, 32), 0.25)
    query = ad.pool_y.query
    ad.pool_y.query = lambda imgs: (seen.append(imgs), query(imgs), stored)[-1]
    terms = ad.adv_y.terms
    fakes: list[torch.Tensor] = []
    ad.adv_y.terms = lambda critic, real, fake, d_real=None, d_fake=None, **kw: (
        fakes.append(fake) if d_real is not None else None, terms(critic, real, fake, d_real, d_fake, **kw))[-1]
    ad.train_step(_batch(), 0, True)
    assert len(seen) == 1 and seen[0].shape == (2, 3, 32, 32) and not seen[0].requires_grad
    assert len(fakes) == 1 and fakes[0] is stored                  # D_Y's fake batch is what the pool returned
    assert len(ad.pool_y.images) == 2 and len(ad.pool_x.images) == 2


def test_pool_state_round_trips_through_extra_state(tmp_path):
    ad = _adapter(pool_size=2)
    for s in range(3):                                             # full after the first step: draws from then on
        ad.train_step(_batch(seed=s), s, True)
    torch.save(ad.extra_state(), tmp_path / "state.pt")
    state = torch.load(tmp_path / "state.pt", weights_only=True)   # as the checkpoint loads it
    assert set(state) == {"pool_y", "pool_x", "held_y"} and len(state["pool_y"]["images"]) == 2
    other = _adapter(pool_size=2, seed=5)
    other.load_extra_state(state)
    new = _imgs(2, seed=9)
    for pool in ("pool_y", "pool_x"):
        a, b = getattr(ad, pool), getattr(other, pool)
        for _ in range(4):
            assert torch.equal(a.query(new), b.query(new))
    assert torch.equal(other._held_y, ad._held_y)
    with pytest.raises(ValueError, match="holds 5 images"):
        _adapter(pool_size=5).load_extra_state(state)


def test_pools_are_seeded_from_the_run_seed():
    a, b, c = _adapter(seed=1), _adapter(seed=1), _adapter(seed=2)
    assert torch.equal(a.pool_y.generator.get_state(), b.pool_y.generator.get_state())
    assert not torch.equal(a.pool_y.generator.get_state(), c.pool_y.generator.get_state())
    assert not torch.equal(a.pool_y.generator.get_state(), a.pool_x.generator.get_state())


# --------------------------------------------------------------------------------- the unpaired stream
def test_derangement_moves_every_sample():
    for n in (2, 3, 8):
        for s in range(20):
            idx = derangement(n, torch.Generator().manual_seed(s))
            assert sorted(idx.tolist()) == list(range(n)) and all(i != j for i, j in enumerate(idx.tolist()))


def test_paired_task_trains_on_the_previous_batch_s_y():
    ad = _adapter()
    b0, b1 = _batch(seed=0), _batch(seed=1)
    y0 = ad.training_y(b0, 0)                          # no previous batch: its own ys, none in place
    own = ad.task.y(b0)
    assert torch.equal(y0, own[[1, 0]])
    assert torch.equal(ad.training_y(b1, 1), own)      # then the previous batch's
    shuffled = _adapter(unpair="shuffle")
    assert torch.equal(shuffled.training_y(b1, 3), ad.task.y(b1)[[1, 0]])
    with pytest.raises(ConfigError, match="batch_size >= 2"):
        shuffled.training_y(_batch(n=1), 0)
    assert torch.equal(_adapter(unpair="off").training_y(b1, 1), ad.task.y(b1))
    # an unpaired task's y already comes from the trainer's second stream
    assert torch.equal(_adapter("photo2labels-unpaired").training_y(b1, 1), ad.task.y(b1))
    with pytest.raises(ConfigError, match="unpair"):
        _adapter(unpair="sometimes")


# --------------------------------------------------------------------------------- training and sampling
def test_two_training_steps_move_every_network_and_log_each_term():
    ad = _adapter(pool_size=2)
    before = {k: [p.detach().clone() for p in m.parameters()] for k, m in ad.modules.items()}
    for s in range(2):
        logs = ad.train_step(_batch(seed=s), s, True)
        assert all(torch.isfinite(v) for v in logs.values())
    assert {"loss_D", "loss_D_y", "loss_D_x", "loss_G", "loss_G_gan_y", "loss_G_gan_x", "loss_G_cycle_x",
            "loss_G_cycle_y", "loss_G_idt_x", "loss_G_idt_y"} == set(logs)
    lam, idt = 10.0, 0.5 * 10.0
    parts = (logs["loss_G_gan_y"] + logs["loss_G_gan_x"] + lam * (logs["loss_G_cycle_x"] + logs["loss_G_cycle_y"])
             + idt * (logs["loss_G_idt_x"] + logs["loss_G_idt_y"]))
    assert float(logs["loss_G"]) == pytest.approx(float(parts), rel=1e-5)
    assert float(logs["loss_D"]) == pytest.approx(float(logs["loss_D_y"] + logs["loss_D_x"]), rel=1e-6)
    for k, m in ad.modules.items():
        assert any(not torch.equal(p, q) for p, q in zip(m.parameters(), before[k])), f"{k} did not train"
    assert set(ad.optimizers) == {"G", "D"}


def test_a_row_regulariser_applies_to_both_discriminators():
    logs = _adapter(regularizers={"r1": 1.0}).train_step(_batch(), 0, True)
    assert "loss_D_r1_y" in logs and "loss_D_r1_x" in logs


def test_sample_gives_both_directions():
    ad = _adapter()
    b = _batch()
    out = ad.sample(FromBatch(b))
    assert set(out) == {"y", "x"} == set(CycleGAN.outputs) and CycleGAN.outputs == {"y": "y", "x": "x"}
    with torch.no_grad():
        assert torch.equal(out["y"], ad.G(ad.task.x(b))) and torch.equal(out["x"], ad.F(ad.task.y(b)))


# --------------------------------------------------------------------------------- through the trainer
TINY_PROFILE = {"steps": 2, "image_size": 32, "batch_size": 2, "train_subset": 8, "eval_subset": 4,
                "eval_batch_size": 4, "checkpoint_every": 1, "keep_checkpoints": 3, "log_every": 1, "flip": False,
                "options": {"ngf": 4, "ndf": 4, "pool_size": 2}}


@pytest.mark.parametrize("task", ["photo2labels", "photo2labels-unpaired"])
def test_resume_is_exact(task, tmp_path):
    """Interrupted after step 1, resumed: the step-2 checkpoint has the uninterrupted run's bytes (weights,
    optimisers, pools, the held y batch, RNG), as tests/test_contracts.py checks for the toy plug-ins."""
    suite = tmp_path / "cy.toml"
    suite.write_text(toml_dump({
        "suite": {"name": "cyclegan-resume", "dataset": "synthetic-scenes", "tasks": [task], "method": "cyclegan",
                  "default_profile": "tiny"},
        "metrics": {task: ["segmentation"]}, "profiles": {"tiny": TINY_PROFILE}, "rows": [{"name": "CycleGAN"}]}))
    a, b = tmp_path / "a", tmp_path / "b"

    def run(*args):
        assert main(["train", str(suite), "--row", "CycleGAN", *args, "--no-progress", "--device", "cpu"]) == 0

    run("--out", str(a))
    shutil.copytree(a, b)
    rundir = b / "runs" / "cyclegan" / "seed0" / task
    shutil.rmtree(rundir / CHECKPOINTS_DIR / "step_00000002")
    (rundir / "status.json").unlink()
    run("--out", str(b), "--resume")
    ref = a / "runs" / "cyclegan" / "seed0" / task / CHECKPOINTS_DIR / "step_00000002"
    got = rundir / CHECKPOINTS_DIR / "step_00000002"
    wa, wb = load_file(ref / WEIGHTS), load_file(got / WEIGHTS)
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    sa, sb = torch.load(ref / STATE, weights_only=True), torch.load(got / STATE, weights_only=True)
    torch.testing.assert_close(sb["optimizers"], sa["optimizers"], rtol=0, atol=0)
    torch.testing.assert_close(sb["state"], sa["state"], rtol=0, atol=0)
    pools = sa["state"]["adapter"]
    assert len(pools["pool_y"]["images"]) == 2 and len(pools["pool_x"]["images"]) == 2
    assert ("held_y" in pools) == (task == "photo2labels")


# --------------------------------------------------------------------------------- the translation-zoo suite
def test_translation_zoo_rows_and_claims():
    s = load_suite(SUITES.get("translation-zoo"))
    assert s.suite.tasks == ["photo2labels", "labels2photo"] and TASKS.get("photo2labels").pairing == "paired"
    rows = {r.name: r for r in s.rows}
    assert sorted(r.method or s.suite.method for r in s.rows) == ["cyclegan", "pix2pix", "pix2pix", "pix2pix"]
    assert sorted(r.generator for r in s.rows) == ["pix2pixhd", "resnet", "spade", "unet"]
    gens = {name: r.generator for name, r in rows.items()}
    assert [(c.metric, [gens[r] for r in c.order]) for c in s.claims] == [
        ("photo2labels/mean_iou", ["unet", "resnet"]),          # paired beats unpaired, both directions
        ("labels2photo/mean_iou", ["unet", "resnet"]),
        ("labels2photo/mean_iou", ["pix2pixhd", "unet"]),
        ("labels2photo/mean_iou", ["spade", "pix2pixhd"])]
    assert {"smoke", "cpu", "short"} <= set(s.profiles)


@pytest.mark.slow
def test_translation_zoo_smoke_profile(tmp_path):
    out = tmp_path / "tz"
    board = run_smoke("translation-zoo", out, rows=4, claims=4)
    assert {"pixel_acc", "mean_iou"} <= set(board["metric"]) and set(board["task"]) == {"photo2labels",
                                                                                        "labels2photo"}
    cyc = out / "runs" / slug("CycleGAN (ResNet + PatchGAN, unpaired)") / "seed0" / "photo2labels" / "scalars.csv"
    assert "loss_G_cycle_x" in cyc.read_text().splitlines()[0]
