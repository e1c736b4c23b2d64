"""The new-losses paper's five models (papers.md D; methods/newlosses.py, vae_gan.py, sdkl.py): shapes and
sampling, which networks each loss reaches, the KL against its closed form, SDKL's derivation and its sampled /
non-sampled forms, two training steps of each, resume-exactness, and the suite's smoke profile end to end."""

from __future__ import annotations

import math
import shutil
import tomllib

import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from adapter_helpers import touched
from bench.adversarial import frozen
from bench.build import build_method
from bench.checkpoint import CHECKPOINTS_DIR, STATE, WEIGHTS
from bench.cli import main
from bench.contracts import FromBatch, FromPrior, TrainContext
from bench.data.base import DatasetInfo
from bench.errors import ConfigError, MetricError
from bench.registry import DISCRIMINATORS, METHODS, TASKS
from bench.schema import slug
from methods.newlosses import descend_split, gaussian_kl
from suite_helpers import REPO, assert_scored, bench, toml_dump

CTX = TrainContext(torch.device("cpu"), seed=7, image_size=32, total_steps=10)
MNIST_INFO = DatasetInfo(name="d", tasks=(), provides=("image", "label", "index"))
TASK = TASKS.get("digits").bind(MNIST_INFO)
SMALL = dict(width=4, ndf=4, z_dim=8)
METHOD_NAMES = ["gan-rkl", "vae-perceptual", "vaegan", "sdkl", "sdkl-nosample"]
ENCODERS = METHOD_NAMES[1:]
SUITE = REPO / "leaderboards" / "newlosses.toml"


def _batch(n: int = 4, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {"image": torch.rand(n, 1, 32, 32, generator=g) * 2 - 1, "label": torch.randint(0, 10, (n,), generator=g),
            "index": torch.arange(n)}


def _adapter(method: str, components: dict | None = None, **options):
    torch.manual_seed(0)
    return build_method(method, {**SMALL, **options}, TASK, CTX, components, image_size=32)


def _snapshot(ad) -> dict[str, list[torch.Tensor]]:
    return {k: [p.detach().clone() for p in m.parameters()] for k, m in ad.modules.items()}


def _moved(ad, before: dict[str, list[torch.Tensor]]) -> set[str]:
    return {k for k, m in ad.modules.items() if any(not torch.equal(a, p) for a, p in zip(before[k], m.parameters()))}


# --- tasks, shapes, sampling ------------------------------------------------------------------------

def test_the_prior_tasks_bind_and_are_scored_from_the_prior():
    from bench.data.facades import INFO as FACADES
    from bench.data.mnist import INFO as MNIST
    from bench.score import model_outputs
    digits, photos = TASKS.get("digits").bind(MNIST), TASKS.get("photos").bind(FACADES)
    assert digits.pairing == photos.pairing == "none" and not digits.inputs and not photos.inputs
    assert (digits.y_channels, photos.y_channels) == (1, 3) and digits.default_metrics == ("fid",)
    out = model_outputs(_adapter("vaegan"), TASK, _batch(6), 0)       # FromPrior, no labels: the batch's size
    assert set(out) == {"y"} and out["y"].shape == (6, 1, 32, 32)


@pytest.mark.parametrize("method", METHOD_NAMES)
def test_sampling_from_the_prior_and_reconstructing_a_batch(method):
    ad = _adapter(method)
    a, b = ad.sample(FromPrior(5, None, 3)), ad.sample(FromPrior(5, None, 3))
    assert set(a) == {"y"} and a["y"].shape == (5, 1, 32, 32) and torch.equal(a["y"], b["y"])
    assert a["y"].abs().max() <= 1 and not torch.equal(a["y"], ad.sample(FromPrior(5, None, 4))["y"])
    assert all(m.training for m in ad.modules.values())                 # back in training mode
    assert ad.eval_protocol()["eval_mode"] is True
    if method in ENCODERS:
        out = ad.sample(FromBatch(_batch(3)))
        assert set(out) == {"y", "y_rec"} and out["y_rec"].shape == (3, 1, 32, 32)
        assert set(METHODS.get(method).outputs) == {"y", "y_rec"} and "batch" in ad.samples_from
    else:
        with pytest.raises(MetricError, match="samples from the prior"):
            ad.sample(FromBatch(_batch(3)))


def test_a_task_with_classes_is_refused():
    task = TASKS.get("class2image").bind(DatasetInfo(name="d", tasks=(), num_classes=10, provides=("image", "label")))
    with pytest.raises(ConfigError, match="unconditional"):
        build_method("gan-rkl", SMALL, task, CTX, image_size=32)


def test_options_are_checked_and_defaults_are_the_documented_ones():
    o = {m: METHODS.get(m).Options() for m in METHOD_NAMES}
    assert o["gan-rkl"].loss == "rkl" and o["vaegan"].loss == o["vae-perceptual"].loss == "vanilla"
    assert o["sdkl"].loss == o["sdkl-nosample"].loss == "skl" and o["sdkl"].sigma == 0.1
    assert o["vaegan"].gamma == 1e-3 and o["vaegan"].lambda_rec == 1.0 and o["vaegan"].feature_layer == 2
    assert not hasattr(o["sdkl-nosample"], "sigma") and not hasattr(o["gan-rkl"], "gamma")
    with pytest.raises(ConfigError, match="prior_share"):
        METHODS.get("vaegan").Options(prior_share=1.0)
    with pytest.raises(ConfigError, match="sigma"):
        METHODS.get("sdkl").Options(sigma=0.0)
    assert _adapter("sdkl", d_steps=3).d_steps_per_g == 3


# --- KL and noise -------------------------------------------------------------------------------------

def test_kl_matches_the_closed_form_and_the_posterior_sample_is_reparametrised():
    mu = torch.tensor([[0.0, 0.0], [1.0, -2.0], [0.5, 0.0]])
    logvar = torch.tensor([[0.0, 0.0], [0.0, 0.0], [2.0, -1.0]])
    # per dimension 0.5 (mu^2 + exp(logvar) - 1 - logvar), summed
    by_hand = torch.tensor([0.0, 0.5 * (1 + 4), 0.5 * ((0.25 + math.exp(2) - 1 - 2) + (math.exp(-1) - 1 + 1))])
    torch.testing.assert_close(gaussian_kl(mu, logvar), by_hand)
    ref = torch.distributions.kl_divergence(torch.distributions.Normal(mu, (0.5 * logvar).exp()),
                                            torch.distributions.Normal(0.0, 1.0)).sum(1)
    torch.testing.assert_close(gaussian_kl(mu, logvar), ref)
    ad = _adapter("vaegan")
    x = TASK.y(_batch())
    z, kl = ad.encode(x, 5)
    mu, logvar = ad.E(x)
    eps = torch.randn(*mu.shape, generator=CTX.generator(5, "eps/0"))
    torch.testing.assert_close(z, mu + (0.5 * logvar).exp() * eps)
    torch.testing.assert_close(kl, gaussian_kl(mu, logvar).mean())


def test_noise_differs_between_the_d_steps_of_one_generator_step_and_restarts_after_it():
    ad = _adapter("gan-rkl", d_steps=2)
    first = ad.noise(0, "z", 3)
    ad.train_step(_batch(), 0, update_g=False)
    assert ad._sub == 1 and not torch.equal(ad.noise(0, "z", 3), first)
    ad.train_step(_batch(), 0, update_g=True)
    assert ad._sub == 0 and ad.extra_state() == {"sub": 0} and torch.equal(ad.noise(0, "z", 3), first)


# --- which networks each loss reaches ---------------------------------------------------------------

@pytest.mark.parametrize("method", ["vae-perceptual", "vaegan"])
def test_d_step_moves_only_d_and_the_generator_side_never_moves_d(method):
    ad = _adapter(method)
    x = TASK.y(_batch())
    out = ad.forward(x, 0)
    before = _snapshot(ad)
    ad.d_step(x, out, 0)
    assert _moved(ad, before) == {"D"}
    before = _snapshot(ad)
    with frozen(ad.D):
        losses, _ = ad.g_losses(x, out, 0)
        ad.g_step(losses)
    assert _moved(ad, before) == {"E", "Dec"}


def test_vae_perceptual_gets_no_adversarial_gradient_but_the_feature_distance():
    ad = _adapter("vae-perceptual")
    x = TASK.y(_batch())
    out = ad.forward(x, 0)
    with frozen(ad.D):
        losses, logs = ad.g_losses(x, out, 0)
    assert "loss_G_gan" not in logs and losses["E"] is losses["Dec"]
    assert float(logs["loss_G"]) == pytest.approx(float(logs["loss_G_kl"]) + float(logs["loss_G_dis_l"]), rel=1e-6)
    assert touched(ad, losses["E"]) == {"E", "Dec"}
    ad0 = _adapter("vae-perceptual", lambda_rec=0.0)                 # without the distance only the KL is left
    out = ad0.forward(x, 0)
    with frozen(ad0.D):
        losses, logs = ad0.g_losses(x, out, 0)
    assert float(logs["loss_G"]) == pytest.approx(float(out["kl"].detach()), rel=1e-6)
    assert touched(ad0, losses["E"]) == {"E"}


def test_vaegan_encoder_steps_on_kl_plus_distance_and_the_decoder_on_distance_plus_gan():
    ad = _adapter("vaegan", gamma=0.5)
    x = TASK.y(_batch())
    out = ad.forward(x, 0)
    with frozen(ad.D):
        losses, logs = ad.g_losses(x, out, 0)
        e_params, dec_params = list(ad.E.parameters()), list(ad.Dec.parameters())
        want_e = torch.autograd.grad(losses["E"], e_params, retain_graph=True)
        want_dec = torch.autograd.grad(losses["Dec"], dec_params, retain_graph=True)
        gan_on_e = torch.autograd.grad(losses["Dec"], e_params, retain_graph=True)
        ad.g_step(losses)
    assert float(logs["loss_E"]) == pytest.approx(float(out["kl"].detach()) + float(logs["loss_E_dis_l"]), rel=1e-6)
    assert float(logs["loss_G"]) == pytest.approx(float(logs["loss_G_gan"]) + 0.5 * float(logs["loss_G_dis_l"]),
                                                  rel=1e-6)
    assert any(g.abs().sum() > 0 for g in gan_on_e)                    # Dec's loss would reach E through z ...
    for p, g in zip(e_params, want_e):                                 # ... but E stepped on KL + Dis_l only
        torch.testing.assert_close(p.grad, g, rtol=0, atol=0)
    for p, g in zip(dec_params, want_dec):                             # and Dec on gamma Dis_l + GAN only
        torch.testing.assert_close(p.grad, g, rtol=0, atol=0)


def test_descend_split_gives_each_optimiser_its_own_losss_gradient():
    a, b = torch.nn.Parameter(torch.tensor(2.0)), torch.nn.Parameter(torch.tensor(3.0))
    opt_a, opt_b = torch.optim.SGD([a], lr=0.1), torch.optim.SGD([b], lr=0.1)
    shared = a * b
    descend_split((shared + a ** 2, opt_a), (shared * 10, opt_b))
    assert a.grad.item() == pytest.approx(3 + 4) and b.grad.item() == pytest.approx(20)
    assert a.item() == pytest.approx(2 - 0.7) and b.item() == pytest.approx(3 - 2.0)


@pytest.mark.parametrize("method", ["sdkl", "sdkl-nosample"])
def test_sdkl_d_loss_reaches_only_d_and_each_side_reaches_only_its_network(method):
    ad = _adapter(method)
    x = TASK.y(_batch())
    out = ad.pairs(x, 0)
    before = _snapshot(ad)
    ad.d_update(out["enc"], out["dec"], 0)
    assert _moved(ad, before) == {"D"}
    with frozen(ad.D):
        _, parts = ad.side_losses(out, 0)
        assert touched(ad, parts["dec"]) == {"Dec"} and touched(ad, parts["enc"]) == {"E"}
        loss, _ = ad.g_losses(out, 0)
        assert touched(ad, loss) == {"E", "Dec"}
    parts_free = ad.side_losses(out, 0)[1]                             # D is frozen only by the adapter's step
    assert "D" in touched(ad, parts_free["dec"])


def test_sdkl_per_side_losses_are_the_derived_ones():
    """D without noise, so its logits can be recomputed: Dec's side is E_p[-l - exp(l)], E's E_q[l - exp(-l)]; with
    ``loss = "rkl"`` the two sides sum to the plug-in E_q[l] - E_p[l]."""
    quiet = {"D": {"noise_std": 0.0}}
    ad = _adapter("sdkl", quiet)
    x = TASK.y(_batch())
    out = ad.pairs(x, 0)
    with torch.no_grad():
        l_q, l_p = ad.critic(out["enc"]).logits[0], ad.critic(out["dec"]).logits[0]
        _, parts = ad.side_losses(out, 0)
    torch.testing.assert_close(parts["dec"], (-l_p - l_p.exp()).mean())
    torch.testing.assert_close(parts["enc"], (l_q - (-l_q).exp()).mean())
    torch.testing.assert_close(parts["skl"], l_q.mean() - l_p.mean())
    rkl = _adapter("sdkl", quiet, loss="rkl")
    out = rkl.pairs(x, 0)
    with torch.no_grad():
        _, parts = rkl.side_losses(out, 0)
    torch.testing.assert_close(parts["dec"] + parts["enc"], parts["skl"])


def test_sampled_and_non_sampled_sdkl_differ_only_by_the_draw_from_p_x_given_z():
    s, n = _adapter("sdkl", sigma=0.3), _adapter("sdkl-nosample")
    for k in ("E", "Dec", "D"):                                           # same weights
        sa, sb = s.modules[k].state_dict(), n.modules[k].state_dict()
        assert all(torch.equal(sa[p], sb[p]) for p in sa)
    x = TASK.y(_batch(8))
    a, b = s.pairs(x, 3), n.pairs(x, 3)
    assert torch.equal(a["enc"], b["enc"]) and torch.equal(a["kl"], b["kl"])  # the encoder pairs are identical
    pixels = 32 * 32
    assert torch.equal(a["dec"][:, pixels:], b["dec"][:, pixels:])          # the same decoder latents ...
    eps = torch.randn(8, 1, 32, 32, generator=CTX.generator(3, "x/0")).flatten(1)
    torch.testing.assert_close(a["dec"][:, :pixels] - b["dec"][:, :pixels], 0.3 * eps)   # ... x differs by sigma eps
    z_p = torch.randn(8, 8, generator=CTX.generator(3, "z/0"))
    with torch.no_grad():
        torch.testing.assert_close(b["dec"], torch.cat([n.Dec(z_p).flatten(1), z_p], 1))   # no-sample: Dec(z)


def test_the_joint_discriminator_judges_image_and_latent_together():
    d = DISCRIMINATORS.get("elu-joint")(1, 6, image_size=32, ndf=4).eval()
    y, z = torch.rand(3, 1, 32, 32) * 2 - 1, torch.randn(3, 6)
    out = d(y, z)
    assert out.logits[0].shape == (3,) and len(out.features[0]) == 3 + 2
    assert not torch.equal(d(y, torch.randn(3, 6)).logits[0], out.logits[0])
    assert not torch.equal(d(y.flip(0), z).logits[0], out.logits[0])
    with pytest.raises(ValueError, match="latents of 6 dims"):
        d(y, torch.randn(3, 5))


# --- training -------------------------------------------------------------------------------------

@pytest.mark.parametrize("method", METHOD_NAMES)
def test_two_steps_with_k_d_steps_and_orthogonal_d(method):
    ad = _adapter(method, d_steps=2, regularizers={"orthogonal": 1e-4})
    before = _snapshot(ad)
    for step in range(2):
        for k in range(2):
            logs = ad.train_step(_batch(4, seed=10 * step + k), step, update_g=k == 1)
            assert all(torch.isfinite(v).all() for v in logs.values()), logs
    assert _moved(ad, before) == set(ad.modules)
    assert {"loss_D", "loss_D_orthogonal", "loss_G"} <= set(logs) and float(logs["loss_D_orthogonal"]) > 0
    assert ("kl" in logs) == (method in ENCODERS)
    expect = {"gan-rkl": {"loss_G_gan"}, "vae-perceptual": {"loss_G_kl", "loss_G_dis_l"},
              "vaegan": {"loss_G_gan", "loss_G_dis_l", "loss_E", "loss_E_kl", "loss_E_dis_l"},
              "sdkl": {"loss_G_dec", "loss_G_enc", "loss_G_skl"}, "sdkl-nosample": {"loss_G_dec", "loss_G_enc"}}
    assert expect[method] <= set(logs)


# --- through the trainer: resume, and the suite's smoke profile -----------------------------------------

def _tiny_suite(tmp_path):
    d = tomllib.loads(SUITE.read_text())
    smoke = d["profiles"]["smoke"]
    d["profiles"] = {"tiny": {**smoke, "steps": 2, "batch_size": 4, "train_subset": 16, "checkpoint_every": 1,
                              "keep_checkpoints": 3, "eval_subset": 8, "eval_batch_size": 8}}
    d["suite"].update(default_profile="tiny", seeds=[0])
    p = tmp_path / "newlosses-tiny.toml"
    p.write_text(toml_dump(d))
    return p, [r["name"] for r in d["rows"]]


def test_every_row_resumes_bit_exactly(tmp_path):
    suite, rows = _tiny_suite(tmp_path)
    a, b = tmp_path / "a", tmp_path / "b"

    def train(*args: str) -> None:
        assert main(["train", str(suite), *args, "--no-progress", "--device", "cpu"]) == 0

    for row in rows:
        train("--row", row, "--out", str(a))
    shutil.copytree(a, b)
    for row in rows:
        run = b / "runs" / slug(row) / "seed0" / "digits"
        shutil.rmtree(run / CHECKPOINTS_DIR / "step_00000002")
        (run / "status.json").unlink()
        train("--row", row, "--out", str(b), "--resume")
        ref = a / "runs" / slug(row) / "seed0" / "digits" / CHECKPOINTS_DIR / "step_00000002"
        got = run / CHECKPOINTS_DIR / "step_00000002"
        wa, wb = load_file(ref / WEIGHTS), load_file(got / WEIGHTS)
        assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa), f"{row}: weights differ"
        sa, sb = torch.load(ref / STATE, weights_only=True), torch.load(got / STATE, weights_only=True)
        torch.testing.assert_close(sb["optimizers"], sa["optimizers"], rtol=0, atol=0)
        torch.testing.assert_close(sb["state"], sa["state"], rtol=0, atol=0)


@pytest.mark.slow
def test_the_suite_smoke_profile_scores_every_row(tmp_path):
    out = tmp_path / "newlosses"
    bench("run", "newlosses", "--profile", "smoke", "--seeds", "1", "--out", str(out), "--no-progress", "--device",
          "cpu", env={"OMP_NUM_THREADS": "1"}, check=True, timeout=600)
    board = pd.read_csv(out / "leaderboard.csv")
    no_kl = (board["row"] == "GAN (reverse KL)") & board["metric"].str.endswith("_kl")
    assert (board[no_kl]["status"] == "missing").all()                 # a GAN has no encoder, no latent KL
    assert_scored(board[~no_kl])
    suite = tomllib.loads(SUITE.read_text())
    names = [r["name"] for r in suite["rows"]]
    assert sorted(board["row"].unique()) == sorted(names)
    for name in names:
        assert {"fid", "kid"} <= set(board[board["row"] == name]["metric"]), name
        header = (out / "runs" / slug(name) / "seed0" / "digits" / "scalars.csv").read_text().splitlines()[0]
        cols = header.split(",")
        assert "loss_D" in cols and "loss_D_orthogonal" in cols and ("kl" in cols) == (name != "GAN (reverse KL)")
        # Figure 1 as numbers: D's loss (and the latent KL) over the last half of the 4 steps, from scalars.csv
        log = pd.read_csv(out / "runs" / slug(name) / "seed0" / "digits" / "scalars.csv")
        tail = log[log["step"] > 2]
        mine = board[board["row"] == name].set_index("metric")["mean"]
        assert mine["end_loss_D"] == pytest.approx(tail["loss_D"].mean(), rel=1e-6)
        assert mine["sd_loss_D"] == pytest.approx(tail["loss_D"].std(ddof=0), rel=1e-6, abs=1e-9)
        assert math.isfinite(mine["end_kl"]) == ("kl" in cols)
    assert (out / "training.png").is_file()                     # Figure 1: loss_D and kl of every row
    from bench.grids import comparison_captions
    assert comparison_captions(out / "comparison-digits.png") == ([*names, "real"], 0)
