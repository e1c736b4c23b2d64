"""CAAE in the decoupled-learning comparison (methods/caae.py, task age2face): the age code in the decoder
and D, the latent critic D_z and its uniform prior, which loss reaches which parameters in each form, and
the Table 5 suite's smoke run through the CLI."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest
import torch

from bench.adversarial import frozen
from bench.build import build_method
from bench.contracts import AdvTerms, FromBatch, TrainContext
from bench.data.utkface import INFO as UTKFACE
from bench.errors import ConfigError
from bench.registry import DISCRIMINATORS, TASKS
from bench.results import ResultStore
from methods.caae import total_variation
from suite_helpers import bench
from adapter_helpers import touched
from leaderboards.claims import VERDICTS

TASK = TASKS.get("age2face").bind(UTKFACE)
CTX = TrainContext(torch.device("cpu"), image_size=32)
SMALL = dict(width=4, ndf=4, z_dim=8)
K = UTKFACE.num_classes


def _batch(n: int = 4, seed: int = 0, ages: list[int] | None = None) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    ages = ages if ages is not None else [0, 3, 5, 9][:n]
    return {"photo": torch.rand(n, 3, 32, 32, generator=g) * 2 - 1, "age_bin": torch.tensor(ages),
            "index": torch.arange(n)}


def _adapter(method: str, **options):
    torch.manual_seed(0)
    return build_method(method, {**SMALL, **options}, TASK, CTX, image_size=32)


def _terms(ad, batch):
    """The three generator-side losses of one forward pass: L1, image-adversarial, latent-adversarial."""
    c, y = ad.condition(batch), ad.task.y(batch)
    out = ad.forward(ad.task.x(batch), c)
    rec = (out["y_rec"] - y).abs().mean()
    critic = ad.critic(c)
    adv = ad.loss.g_loss(AdvTerms(critic, y, out["y"], None, critic(out["y"])))
    z = out["z"]
    adv_z = ad.loss.g_loss(AdvTerms(ad._critic_z, ad.prior(0, len(z)), z, None, ad._critic_z(z)))
    return out, rec, adv, adv_z


@pytest.mark.parametrize("method", ["caae", "caae-par"])
def test_the_age_label_changes_the_output_for_the_same_photo(method: str):
    ad = _adapter(method)
    young, old = _batch(ages=[0, 0, 0, 0]), _batch(ages=[9, 9, 9, 9])
    torch.testing.assert_close(young["photo"], old["photo"])
    a, b = ad.sample(FromBatch(young)), ad.sample(FromBatch(old))
    assert (a["y"] - b["y"]).abs().max() > 1e-6
    again = ad.sample(FromBatch(_batch(ages=[0, 0, 0, 0])))
    torch.testing.assert_close(again["y"], a["y"])                  # eval mode: the same label, the same face


def test_the_decoder_reads_latent_and_code_and_d_sees_the_code_as_channels():
    ad = _adapter("caae")
    assert ad.modules["Dec"].fc.in_features == SMALL["z_dim"] + K
    assert ad.modules["D"].features[0].in_channels == 3 + K == 13
    seen: list[torch.Tensor] = []
    hook = ad.modules["D"].register_forward_pre_hook(lambda m, args: seen.append(args[0].detach()))
    try:
        ad.train_step(_batch(), 0, update_g=True)
    finally:
        hook.remove()
    assert seen and all(v.shape == (4, 13, 32, 32) for v in seen)
    code = seen[0][:, 3:]                                            # the one-hot age code in {-1, 1}, tiled
    ages = code[:, :, 0, 0].argmax(1)
    assert ages.tolist() == [0, 3, 5, 9]
    assert set(code.unique().tolist()) == {-1.0, 1.0} and (code == code[:, :, :1, :1]).all()


def test_d_z_real_samples_come_from_the_uniform_prior():
    ad = _adapter("caae")
    seen: list[torch.Tensor] = []
    hook = ad.modules["D_z"].register_forward_pre_hook(lambda m, args: seen.append(args[0].detach()))
    try:
        ad.train_step(_batch(), 7, update_g=False)
    finally:
        hook.remove()
    real, fake = seen[0], seen[1]                                    # the D step: prior, then E(x)
    assert real.shape == fake.shape == (4, SMALL["z_dim"])
    assert real.min() >= -1 and real.max() <= 1
    torch.testing.assert_close(real, ad.prior(7, 4))                 # a pure function of (seed, step)
    wide = ad.prior(0, 4096)
    assert wide.min() >= -1 and wide.max() <= 1 and wide.min() < -0.99 and wide.max() > 0.99
    assert abs(float(wide.mean())) < 0.05


def test_the_d_step_moves_only_the_discriminators():
    for method in ("caae", "caae-par"):
        ad = _adapter(method)
        batch = _batch()
        out = ad.forward(ad.task.x(batch), ad.condition(batch))
        loss_d, logs = ad.d_objective(out, ad.task.y(batch), ad.condition(batch), 0)
        assert touched(ad, loss_d) == {"D", "D_z"}
        assert set(logs) == {"loss_D", "loss_D_z"}


def test_caae_couples_the_losses_in_the_decoder():
    ad = _adapter("caae")
    _, rec, adv, adv_z = _terms(ad, _batch())
    assert touched(ad, rec) == {"E", "Dec"}
    assert touched(ad, adv) == {"E", "Dec", "D"}                  # the decoder and encoder get both (D: its critic)
    assert touched(ad, adv_z) == {"E", "D_z"}                     # the latent critic reaches the encoder only
    batch = _batch()
    with frozen(ad.modules["D"], ad.modules["D_z"]):               # the generator step, as train_step runs it
        out = ad.forward(ad.task.x(batch), ad.condition(batch))
        loss, parts = ad.g_objective(out, ad.task.y(batch), ad.condition(batch), 0)
        assert touched(ad, loss) == {"E", "Dec"}
    assert set(parts) == {"gan", "l1", "z"}


def test_caae_par_decouples_the_losses():
    ad = _adapter("caae-par")
    _, rec, adv, adv_z = _terms(ad, _batch())
    assert touched(ad, rec) == {"E", "Dec"}                       # L1 reaches no parameter of G (nor D)
    assert touched(ad, adv) == {"G", "D"}                         # image-adversarial: G, never E / Dec
    assert touched(ad, adv_z) == {"E", "D_z"}
    batch = _batch()
    with frozen(ad.modules["D"], ad.modules["D_z"]):
        out = ad.forward(ad.task.x(batch), ad.condition(batch))
        loss, _ = ad.g_objective(out, ad.task.y(batch), ad.condition(batch), 0)
        assert touched(ad, loss) == {"E", "Dec", "G"}


def test_caae_par_train_step_moves_only_what_each_loss_may_move():
    ad = _adapter("caae-par", lambda_rec=0.0, lambda_z=0.0)       # only the image-adversarial loss is left
    before = {k: [p.detach().clone() for p in m.parameters()] for k, m in ad.modules.items()}
    logs = ad.train_step(_batch(), 0, update_g=True)
    moved = {k for k, m in ad.modules.items() if any(not torch.equal(a, p) for a, p in zip(before[k], m.parameters()))}
    assert moved == {"G", "D", "D_z"}                              # Adam with zero gradients leaves E / Dec in place
    assert set(logs) >= {"loss_D", "loss_D_z", "loss_G", "loss_G_gan", "loss_G_l1", "loss_G_z"}
    assert all(torch.isfinite(v) for v in logs.values())


def test_outputs_and_the_sum():
    batch = _batch()
    out = _adapter("caae-par").sample(FromBatch(batch))
    assert list(out) == ["y_rec", "y_gan", "y"]
    torch.testing.assert_close(out["y"], out["y_rec"] + out["y_gan"])
    assert all(v.shape == (4, 3, 32, 32) for v in out.values())
    assert set(_adapter("caae").sample(FromBatch(batch))) == {"y"}  # as ed-gan: y is the reconstruction


def test_total_variation_follows_caae():
    assert float(total_variation(torch.ones(2, 3, 8, 8))) == 0.0
    img = torch.zeros(1, 1, 4, 4)
    img[..., 2:] = 1.0                                               # one vertical edge: 4 horizontal steps of 1
    assert float(total_variation(img)) == pytest.approx(4 / (2 * 4))
    ad = _adapter("caae", lambda_tv=0.5)
    batch = _batch()
    out = ad.forward(ad.task.x(batch), ad.condition(batch))
    _, parts = ad.g_objective(out, ad.task.y(batch), ad.condition(batch), 0)
    assert parts["tv"] > 0


def test_mlp_critic_is_caae_latent_critic():
    d = DISCRIMINATORS.get("mlp-critic")(50)
    widths = [m.out_features for m in d.modules() if isinstance(m, torch.nn.Linear)]
    assert widths == [64, 32, 16, 1]
    assert d(torch.rand(5, 50) * 2 - 1).shape == (5,)
    with pytest.raises(ConfigError, match="hidden"):
        DISCRIMINATORS.get("mlp-critic")(50, hidden=[])


def test_bad_options_and_tasks_are_one_line_errors():
    for bad in (dict(lambda_z=-1.0), dict(lambda_tv=-0.1), dict(norm="layer")):
        with pytest.raises(ConfigError) as e:
            _adapter("caae", **bad)
        assert "\n" not in str(e.value)
    with pytest.raises(ConfigError, match="no class input"):
        build_method("caae", SMALL, TASKS.get("autoencode").bind(UTKFACE), CTX, image_size=32)


@pytest.mark.slow
def test_table5_suite_smoke(tmp_path: Path):
    out = tmp_path / "decoupled-table5"
    bench("run", "decoupled-table5", "--profile", "smoke", "--seeds", "1", "--out", str(out), "--no-progress",
          check=True)
    recs = ResultStore(out / "results.sqlite").frame(metric="nrds")
    assert len(recs) == 4 and all(math.isfinite(v) for v in recs["value"])
    assert recs["value"].sum() == pytest.approx(1.0)                # one classifier for the four models
    board = pd.read_csv(out / "leaderboard.csv")
    nrds = board[board["metric"] == "nrds"]
    assert set(nrds["row"]) == {"ED+GAN 1:1e-4", "ED+GAN 1:1e-2", "ED+GAN 1:1", "ED//GAN"}
    assert nrds["published"].notna().all() and nrds["mean"].map(math.isfinite).all()
    claims = pd.read_csv(out / "claims.csv")
    assert len(claims) == 1 and set(claims["verdict"]) <= set(VERDICTS) - {"missing"}
    assert (out / "runs" / "ed-gan" / "seed0" / "age2face" / "samples.png").is_file()


def _grads(ad, loss) -> list[torch.Tensor]:
    for m in ad.modules.values():
        m.zero_grad(set_to_none=True)
    loss.backward(retain_graph=True)
    return [p.grad.clone() for p in ad.modules["E"].parameters()]


@pytest.mark.parametrize("method", ["caae", "caae-par"])
def test_by_default_the_latent_critic_trains_but_never_reaches_the_encoder(method: str):
    """As both authors' codes (CAAE's weights 1e-4 / 0 / 0; Adapt_CAAE never runs the encoder's latent
    optimiser): E's gradient from the generator-side loss is that of L1 (+ the image term) alone."""
    batch = _batch()
    ad = _adapter(method)
    with frozen(ad.modules["D"], ad.modules["D_z"]):
        out = ad.forward(ad.task.x(batch), ad.condition(batch))
        loss, parts = ad.g_objective(out, ad.task.y(batch), ad.condition(batch), 0)
        image = ad.options.lambda_adv * parts["gan"] if method == "caae" else 0  # caae-par: the image term is G's
        without_z = ad.options.lambda_rec * parts["l1"] + image
        for a, b in zip(_grads(ad, loss), _grads(ad, without_z)):
            torch.testing.assert_close(a, b)
    ad = _adapter(method, lambda_z=0.5)                              # the CAAE paper's written objective
    with frozen(ad.modules["D"], ad.modules["D_z"]):
        out = ad.forward(ad.task.x(batch), ad.condition(batch))
        loss, parts = ad.g_objective(out, ad.task.y(batch), ad.condition(batch), 0)
        assert any((a - b).abs().max() > 1e-8 for a, b in zip(_grads(ad, loss), _grads(ad, loss - 0.5 * parts["z"])))
