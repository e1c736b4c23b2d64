"""StarGAN (methods/stargan.py), its generator and two-headed discriminator, the derived target class of the
digit2digit task, and the stargan-digits suite: shapes, the reference sizes' parameter counts (the paper's Table 3
gives 53.2M for StarGAN), which parameters each loss term reaches, training steps, resume-relevant determinism of
the test targets, and the suite's smoke profile."""

from __future__ import annotations

import pytest
import torch

from bench import codecs
from bench.build import build_method
from bench.config import load_suite
from bench.contracts import DOutput, TrainContext
from bench.data.mnist import INFO
from bench.errors import ConfigError
from bench.nets import count_parameters
from bench.registry import DISCRIMINATORS, GENERATORS, METHODS, SUITES, TASKS
from bench.tasks import Field
from methods.discriminators.stargan import StarGANDiscriminator, default_n_layers
from methods.generators.stargan import StarGANGenerator
from methods.stargan import StarGAN
from metrics.class_agreement import requested_labels
from suite_helpers import run_smoke

TINY = {"ngf": 4, "ndf": 4}


def _batch(n: int = 4, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {"image": torch.rand(n, 1, 32, 32, generator=g) * 2 - 1, "label": torch.arange(n) % 10,
            "index": torch.arange(n) + 10 * seed}


def _adapter(seed: int = 0, **options) -> StarGAN:
    torch.manual_seed(seed)
    task = TASKS.get("digit2digit").bind(INFO)
    ctx = TrainContext(torch.device("cpu"), image_size=32, seed=seed)
    return build_method("stargan", {**TINY, **options}, task, ctx, {}, image_size=32)


def _grads(ad: StarGAN) -> dict[str, bool]:
    return {k: any(p.grad is not None and bool(p.grad.abs().sum() > 0) for p in m.parameters())
            for k, m in ad.modules.items()}


def _zero(ad: StarGAN) -> None:
    for m in ad.modules.values():
        m.zero_grad(set_to_none=True)


# --------------------------------------------------------------------------------- networks
def test_registered_names() -> None:
    assert METHODS.get("stargan") is StarGAN
    assert GENERATORS.get("stargan") is StarGANGenerator and DISCRIMINATORS.get("stargan") is StarGANDiscriminator


@pytest.mark.parametrize("size", [32, 128])
def test_shapes(size: int) -> None:
    g = StarGANGenerator(3, 3, 5, image_size=size, ngf=4)
    x = torch.rand(2, 3, size, size) * 2 - 1
    y = g(x, torch.tensor([0, 4]))
    assert y.shape == x.shape and y.abs().max() <= 1
    d = StarGANDiscriminator(3, 5, image_size=size, ndf=4)
    out = d(y)
    assert isinstance(out, DOutput) and out.logits[0].shape == (2, 1, 2, 2) and out.heads["cls"].shape == (2, 5)
    assert default_n_layers(128) == 6 and default_n_layers(32) == 4       # the reference's 6 at 128 px


def test_class_ids_and_one_hot_vectors_condition_alike() -> None:
    torch.manual_seed(0)
    g = StarGANGenerator(1, 1, 10, image_size=16, ngf=4)
    x = torch.rand(3, 1, 16, 16)
    c = torch.tensor([1, 7, 3])
    assert torch.equal(g(x, c), g(x, torch.nn.functional.one_hot(c, 10).float()))
    assert not torch.allclose(g(x, c)[0], g(x, torch.tensor([2, 7, 3]))[0])     # the target changes the output
    with pytest.raises(ConfigError, match="target domains"):
        g(x, torch.zeros(3, 9))
    with pytest.raises(ConfigError, match="multiple of 4"):
        StarGANGenerator(1, 1, 10, image_size=30)
    with pytest.raises(ConfigError, match="power of two"):
        StarGANDiscriminator(1, 10, image_size=28)


def test_parameter_counts_at_the_reference_size_give_table_3s_53_2m() -> None:
    # RaFD: 8 expressions, 128 px, widths 64, 6 residual blocks, 6 D layers (the reference's defaults)
    k = 8
    g_expected = ((3 + k) * 64 * 49 + 2 * 64 + 64 * 128 * 16 + 2 * 128 + 128 * 256 * 16 + 2 * 256
                  + 6 * 2 * (256 * 256 * 9 + 2 * 256) + 256 * 128 * 16 + 2 * 128 + 128 * 64 * 16 + 2 * 64
                  + 64 * 3 * 49)                                   # no conv bias; instance norm with affine
    widths = [3, 64, 128, 256, 512, 1024, 2048]
    d_expected = sum(i * o * 16 + o for i, o in zip(widths, widths[1:])) + 2048 * 9 + 2048 * k * 2 * 2
    g, d = StarGANGenerator(3, 3, k, image_size=128), StarGANDiscriminator(3, k, image_size=128)
    assert count_parameters(g) == g_expected and count_parameters(d) == d_expected
    assert round((g_expected + d_expected) / 1e6, 1) == 53.2      # StarGAN, Table 3: "53.2M x 1"


# --------------------------------------------------------------------------------- the task's target class
def test_derived_target_is_another_class_fixed_by_the_index() -> None:
    src = torch.arange(1000) % 10
    idx = torch.arange(1000)
    t = codecs.derived_class("other:label", idx, src, 10)
    assert (t != src).all() and t.min() >= 0 and t.max() <= 9
    assert torch.equal(t, codecs.derived_class("other:label", idx, src, 10))        # the same in every run
    counts = torch.bincount((t - src) % 10, minlength=10)                          # shifts 1..9, near uniform
    assert counts[0] == 0 and counts[1:].min() > 70
    task = TASKS.get("digit2digit").bind(INFO)
    b = _batch(6)
    assert torch.equal(task.get("c", b), codecs.derived_class("other:label", b["index"], b["label"], 10))
    assert torch.equal(requested_labels(task, b), task.get("c", b))              # class-accuracy asks for c
    assert task.requires() == {"image", "label", "index"}
    with pytest.raises(ConfigError, match="other:KEY"):
        Field("t", "class", derive="same:label")
    with pytest.raises(ConfigError, match="only mask and class"):
        Field("t", "image", 1, derive="other:label")


# --------------------------------------------------------------------------------- which loss reaches what
def test_each_loss_term_reaches_only_its_network() -> None:
    ad = _adapter()
    b = _batch()
    x, src = ad.task.x(b), ad.task.get("c_src", b)
    tgt = ad.targets(src)
    fake = ad.translate(x, tgt)
    loss_d, logs = ad.d_objective(x, fake, src, 0)
    loss_d.backward()
    assert _grads(ad) == {"G": False, "D": True}                        # fakes detached
    assert {"loss_D", "loss_D_adv", "loss_D_cls", "loss_D_gp"} <= set(logs)
    _zero(ad)
    for p in ad.D.parameters():
        p.requires_grad_(False)
    loss_g, logs = ad.g_objective(x, fake, tgt, src, 0)
    loss_g.backward()
    assert _grads(ad) == {"G": True, "D": False}
    assert {"loss_G", "loss_G_gan", "loss_G_cls", "loss_G_rec"} <= set(logs)
    # the reconstruction term alone reaches G (through both translations)
    _zero(ad)
    rec = (ad.translate(ad.translate(x, tgt), src) - x).abs().mean()
    rec.backward()
    assert _grads(ad)["G"]
    # D's class term: the cross-entropy on the real images' own digits, as computed by hand
    for p in ad.D.parameters():
        p.requires_grad_(True)
    _, logs = ad.d_objective(x, fake, src, 0)
    by_hand = torch.nn.functional.cross_entropy(ad.D(x).heads["cls"], src)
    assert torch.allclose(logs["loss_D_cls"], by_hand)


def test_targets_permute_the_batch_domains() -> None:
    torch.manual_seed(3)
    src = torch.tensor([0, 1, 2, 3, 4, 5, 6, 7])
    t = StarGAN.targets(src)
    assert sorted(t.tolist()) == src.tolist() and not torch.equal(t, src)


def test_two_training_steps_and_outputs() -> None:
    ad = _adapter(d_steps=1)
    before = {k: [p.detach().clone() for p in m.parameters()] for k, m in ad.modules.items()}
    logs = ad.train_step(_batch(seed=0), 0, True)
    logs = ad.train_step(_batch(seed=1), 1, True)
    assert all(torch.isfinite(v) for v in logs.values())
    for k, m in ad.modules.items():
        assert any(not torch.equal(a, p) for a, p in zip(before[k], m.parameters())), f"{k} did not move"
    out = ad.generate(_batch())
    assert out["y"].shape == out["x"].shape == (4, 1, 32, 32)
    # a D-only step leaves G alone
    g0 = [p.detach().clone() for p in ad.G.parameters()]
    ad.train_step(_batch(seed=2), 2, False)
    assert all(torch.equal(a, p) for a, p in zip(g0, ad.G.parameters()))


def test_wrong_task_is_refused_in_one_line() -> None:
    task = TASKS.get("class2image").bind(INFO)
    with pytest.raises(ConfigError, match="stargan needs a task"):
        build_method("stargan", TINY, task, TrainContext(torch.device("cpu"), image_size=32, seed=0), {},
                     image_size=32)


# --------------------------------------------------------------------------------- the stargan-digits suite
def test_suite_rows_and_claims() -> None:
    s = load_suite(SUITES.get("stargan-digits"))
    assert [r.name for r in s.rows] == ["StarGAN", "StarGAN without domain classification",
                                        "StarGAN without reconstruction"]
    assert [c.metric for c in s.claims] == ["digit2digit/class_acc", "digit2digit/l1@x"]
    o = METHODS.get("stargan").Options()
    assert (o.loss, o.regularizers, o.lambda_cls, o.lambda_rec, o.d_steps) == ("wgan", {"gp": 10.0}, 1.0, 10.0, 5)
    assert s.suite.paper_steps == 40000 and {"smoke", "cpu", "short"} <= set(s.profiles)


@pytest.mark.slow
def test_suite_smoke_profile(tmp_path) -> None:
    out = tmp_path / "sg"
    board = run_smoke("stargan-digits", out, rows=3, claims=2)
    assert {"class_acc", "fid", "l1@x"} <= set(board["metric"])
    header = (out / "runs" / "stargan" / "seed0" / "digit2digit" / "scalars.csv").read_text().splitlines()[0]
    assert {"loss_D_gp", "loss_D_cls", "loss_G_cls", "loss_G_rec"} <= set(header.split(","))
    # the grid's last column shows, per test input, a real test digit of the class it asked for
    from safetensors.torch import load_file

    from bench.registry import DATASETS
    cols = load_file(str(out / "runs" / "stargan" / "seed0" / "digit2digit" / "samples.safetensors"))["columns"]
    test = DATASETS.get("mnist")("test", 32, root=None, subset=256, seed=0)
    task = TASKS.get("digit2digit").bind(test.info)
    first = {}
    for i in range(len(test)):
        first.setdefault(int(test[i]["label"]), test[i]["image"])
    n = cols.shape[1]
    asked = task.get("c", {"label": torch.tensor([int(test[i]["label"]) for i in range(n)]),
                           "index": torch.tensor([int(test[i]["index"]) for i in range(n)])})
    want = torch.stack([first[int(k)] for k in asked])                   # [-1, 1], (n, 1, 32, 32)
    got = cols[-1].float() / 255 * 2 - 1                                  # 8-bit RGB, grey in every channel
    assert torch.allclose(got[:, :1], want, atol=2 / 255 + 1e-6)
    assert not torch.allclose(cols[-1].float(), cols[0].float())          # not the input digits


def test_resume_is_exact(tmp_path) -> None:
    """Interrupted after step 1, resumed: the step-2 checkpoint has the uninterrupted run's bytes (the targets'
    permutations and the gradient penalty's mixing weights come from the trainer's restored generator)."""
    import shutil

    from safetensors.torch import load_file

    from bench.checkpoint import CHECKPOINTS_DIR, STATE, WEIGHTS
    from bench.cli import main
    from suite_helpers import toml_dump
    suite = tmp_path / "sg.toml"
    prof = {"steps": 2, "image_size": 32, "batch_size": 4, "train_subset": 16, "eval_subset": 8, "eval_batch_size": 8,
            "checkpoint_every": 1, "keep_checkpoints": 3, "log_every": 1, "flip": False,
            "options": {"ngf": 4, "ndf": 4, "d_steps": 2}}
    suite.write_text(toml_dump({
        "suite": {"name": "stargan-resume", "dataset": "mnist", "tasks": ["digit2digit"], "method": "stargan",
                  "default_profile": "tiny"},
        "metrics": {"digit2digit": ["reconstruction@x"]}, "profiles": {"tiny": prof}, "rows": [{"name": "StarGAN"}]}))
    a, b = tmp_path / "a", tmp_path / "b"

    def run(*args: str) -> None:
        assert main(["train", str(suite), "--row", "StarGAN", *args, "--no-progress", "--device", "cpu"]) == 0

    run("--out", str(a))
    shutil.copytree(a, b)
    rundir = b / "runs" / "stargan" / "seed0" / "digit2digit"
    shutil.rmtree(rundir / CHECKPOINTS_DIR / "step_00000002")
    (rundir / "status.json").unlink()
    run("--out", str(b), "--resume")
    ref = a / "runs" / "stargan" / "seed0" / "digit2digit" / CHECKPOINTS_DIR / "step_00000002"
    got = rundir / CHECKPOINTS_DIR / "step_00000002"
    wa, wb = load_file(ref / WEIGHTS), load_file(got / WEIGHTS)
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    sa, sb = torch.load(ref / STATE, weights_only=True), torch.load(got / STATE, weights_only=True)
    torch.testing.assert_close(sb["optimizers"], sa["optimizers"], rtol=0, atol=0)
