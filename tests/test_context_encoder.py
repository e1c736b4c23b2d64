"""The context encoder (issue 25): its channel-wise fully connected layer, the hole it fills (fixed per index, the
context passed through exactly, the hole's pixels never read), which parameters each of its losses reaches, two
training steps, the two inpainting baselines, the region metric by hand, and the ``context-encoder`` suite's smoke
profile end to end."""

from __future__ import annotations

import copy
import math
from pathlib import Path

import pandas as pd
import pytest
import torch

from bench.adversarial import frozen
from bench.build import build_method
from bench.config import load_suite
from bench.contracts import FromBatch, ScoreContext, TrainContext
from bench.data.base import DatasetInfo
from bench.errors import ConfigError
from bench.registry import METHODS, METRICS, SUITES, TASKS
from bench.tasks import Field, TaskSpec
from methods.context_encoder import band_weights, blank, hole_box
from methods.generators.context_encoder import ChannelWiseFC, ContextEncoderGenerator
from suite_helpers import assert_scored, bench

INFO = DatasetInfo(name="d", tasks=(), provides=("photo", "index"))
TASK = TASKS.get("inpaint-center").bind(INFO)
S = 32                                              # a 16 px hole
SMALL = dict(nef=4, ngf=4, ndf=4)


def _ctx(size: int = S) -> TrainContext:
    return TrainContext(torch.device("cpu"), image_size=size, total_steps=10)


def _batch(n: int = 4, seed: int = 0, size: int = S) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {"photo": torch.rand(n, 3, size, size, generator=g) * 2 - 1, "index": torch.arange(n) + 10 * seed}


def _adapter(method: str = "context-encoder", seed: int = 0, **options):
    torch.manual_seed(seed)
    opts = {**SMALL, **options} if method == "context-encoder" else options
    return build_method(method, opts, TASK, _ctx(), image_size=S)


def _grads(module: torch.nn.Module) -> list[torch.Tensor | None]:
    return [p.grad for p in module.parameters()]


def _zero(*modules: torch.nn.Module) -> None:
    for m in modules:
        m.zero_grad(set_to_none=True)


# -- the channel-wise fully connected layer --------------------------------------------------------

def test_channel_wise_fc_is_one_linear_map_per_channel_by_hand():
    layer = ChannelWiseFC(2, 2)
    with torch.no_grad():
        layer.weight.copy_(torch.arange(2 * 4 * 4, dtype=torch.float32).reshape(2, 4, 4) / 10)
    x = torch.randn(3, 2, 2, 2)
    out = layer(x)
    for b in range(3):
        for c in range(2):
            xi = x[b, c].reshape(4)                  # positions in row-major order
            by_hand = [sum(float(layer.weight.detach()[c, j, i]) * float(xi[i]) for i in range(4)) for j in range(4)]
            assert out[b, c].reshape(4).tolist() == pytest.approx(by_hand, rel=1e-5, abs=1e-6)
    assert sum(p.numel() for p in layer.parameters()) == 2 * 2 ** 4          # m n^4 parameters
    x2 = x.clone()
    x2[:, 1] += torch.randn(3, 2, 2)                 # change channel 1's input only
    out2 = layer(x2)
    assert torch.equal(out2[:, 0], out[:, 0]) and not torch.allclose(out2[:, 1], out[:, 1])


def test_the_generator_changes_channels_only_in_the_mixing_conv():
    g = ContextEncoderGenerator(3, 3, image_size=S, region_size=S // 2, nef=4, ngf=4).eval()
    h = torch.randn(2, g.cwfc.channels, 4, 4)
    h2 = h.clone()
    h2[:, 3] += 1.0
    pre, pre2 = g.cwfc(h), g.cwfc(h2)
    changed = (pre2 - pre).abs().flatten(2).amax(-1).gt(0).any(0)
    assert changed.nonzero().flatten().tolist() == [3]
    mixed = g.bottleneck[0](pre2) - g.bottleneck[0](pre)                     # the 1x1 conv spreads it
    assert mixed.abs().flatten(2).amax(-1).gt(0).any(0).sum() > 1


def test_the_adapter_initialises_the_channel_wise_layer_too():
    a = _adapter(init_gain=0.5)
    w = a.G.cwfc.weight.detach()
    assert 0.4 < float(w.std()) < 0.6 and abs(float(w.mean())) < 0.1


@pytest.mark.parametrize("size,region,bottleneck", [(32, 16, "channel-wise"), (64, 32, "channel-wise"),
                                                    (128, 64, "channel-wise"), (64, 32, "fc")])
def test_the_generator_predicts_the_hole_at_any_power_of_two(size, region, bottleneck):
    g = ContextEncoderGenerator(3, 3, image_size=size, region_size=region, nef=4, ngf=4, bottleneck=bottleneck,
                                units=16)
    out = g(torch.randn(2, 3, size, size))
    assert out.shape == (2, 3, region, region) and out.abs().max() <= 1
    if size == 128:                                  # the released code's widths at 128 px: nef, nef, 2, 4, 8 nef
        convs = [m.out_channels for m in g.encoder if isinstance(m, torch.nn.Conv2d)]
        assert convs == [4, 4, 8, 16, 32]
    with pytest.raises(ConfigError, match="power of two"):
        ContextEncoderGenerator(3, 3, image_size=48, region_size=24)


# -- the hole -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("method", ["context-encoder", "inpaint-nn-hog", "inpaint-border-mean"])
def test_the_hole_is_fixed_the_context_exact_and_the_hole_never_read(method):
    a = _adapter(method)
    if method == "inpaint-nn-hog":
        a.train_step(_batch(8, seed=3), 0, True)
    batch = _batch()
    m1, m2 = TASK.get("mask", batch), TASK.get("mask", dict(batch))
    assert torch.equal(m1, m2)                                               # same index, same mask
    top, left, h, w = hole_box(S, S, 0.5)
    assert (top, left, h, w) == (8, 8, 16, 16)
    assert m1[:, :, top:top + h, left:left + w].all() and m1.sum() == 4 * 16 * 16
    y = a.sample(FromBatch(batch))["y"]
    assert torch.equal(y[m1.expand_as(y) == 0], batch["photo"][m1.expand_as(y) == 0])   # bit for bit outside
    other = dict(batch, photo=torch.where(m1 > 0, torch.rand_like(batch["photo"]), batch["photo"]))
    assert torch.equal(a.sample(FromBatch(other))["y"], y)                   # the hole's pixels are never read


def test_g_reads_the_hole_filled_with_the_authors_colour():
    x = torch.zeros(1, 3, 8, 8)
    m = torch.zeros(1, 1, 8, 8)
    m[..., 2:6, 2:6] = 1
    b = blank(x, m)
    assert b[0, :, 3, 3].tolist() == pytest.approx([2 * 117 / 255 - 1, 2 * 104 / 255 - 1, 2 * 123 / 255 - 1])
    assert torch.equal(b[0, :, 0, 0], x[0, :, 0, 0])


def test_the_l2_weights_its_outer_band_ten_times_by_hand():
    w = band_weights(8, 0.25, 10.0)                  # a 2 px band of an 8 px hole
    assert w[0].tolist() == [10.0] * 8 and w[4].tolist() == [10.0, 10.0, 1, 1, 1, 1, 10.0, 10.0]
    assert band_weights(16, 0.0625, 10.0)[1, 1] == 1.0 and band_weights(16, 0.0625, 10.0)[0, 5] == 10.0
    a = _adapter()
    region, real = torch.zeros(1, 3, 16, 16), torch.zeros(1, 3, 16, 16)
    region[..., 0, 0] = 1.0                          # a band pixel: weight 10
    region[..., 8, 8] = 2.0                          # an inner pixel: weight 1
    assert float(a.rec_loss(region, real)) == pytest.approx((3 * 10 * 1 + 3 * 1 * 4) / (3 * 256))


# -- which parameters each loss reaches ---------------------------------------------------------------

def test_each_loss_reaches_only_what_it_should():
    a = _adapter()
    batch = _batch()
    y = TASK.y(batch)
    real = y[..., 8:24, 8:24]
    # the reconstruction term: G only
    _zero(a.G, a.D)
    a.rec_loss(a.predict(batch)["region"], real).backward()
    assert all(g is not None and g.abs().sum() > 0 for g in _grads(a.G))
    assert all(g is None for g in _grads(a.D))
    # D's loss (on the detached prediction): D only
    _zero(a.G, a.D)
    fake = a.predict(batch)["region"]
    t = a.adv.terms(a.critic, real, fake.detach(), a.critic(real), a.critic(fake.detach()))
    a.adv.d_loss(t)[0].backward()
    assert all(g is None for g in _grads(a.G))
    assert any(g is not None and g.abs().sum() > 0 for g in _grads(a.D))
    # G's adversarial term: through D to G, D frozen (no gradient, no step)
    _zero(a.G, a.D)
    d_before = {k: v.detach().clone() for k, v in a.D.named_parameters()}
    with frozen(a.D):
        region = a.predict(batch)["region"]
        t = a.adv.terms(a.critic, real, region, None, a.critic(region))
        a.loss.g_loss(t).backward()
        a.optimizers["G"].step()
    assert all(g is None for g in _grads(a.D))
    assert sum(float(g.abs().sum()) for g in _grads(a.G) if g is not None) > 0
    assert all(torch.equal(v, d_before[k]) for k, v in a.D.named_parameters())   # (BN statistics aside)
    assert all(p.requires_grad for p in a.D.parameters())                    # unfrozen after


def test_g_loss_is_the_weighted_sum_and_logs_its_parts():
    a = _adapter()
    batch = _batch()
    real = TASK.y(batch)[..., 8:24, 8:24]
    with frozen(a.D):
        region = a.predict(batch)["region"]
        loss, logs = a.g_objective(real, region, 0)
    o = a.options
    by_hand = o.lambda_rec * float(logs["loss_G_rec"]) + o.lambda_adv * float(logs["loss_G_gan"])
    assert float(loss.detach()) == pytest.approx(by_hand, rel=1e-6)
    assert float(logs["loss_G_rec"]) == pytest.approx(float(a.rec_loss(region, real).detach()), rel=1e-6)


# -- training ------------------------------------------------------------------------------------------

def test_two_training_steps_move_g_and_d_and_the_l2_only_row_leaves_d_alone():
    a = _adapter()
    g0, d0 = copy.deepcopy(a.G.state_dict()), copy.deepcopy(a.D.state_dict())
    logs = [a.train_step(_batch(seed=s), s, True) for s in range(2)]
    assert {"loss_D", "loss_G", "loss_G_gan", "loss_G_rec"} <= set(logs[-1])
    assert all(math.isfinite(float(v)) for lg in logs for v in lg.values())
    assert any(not torch.equal(v, g0[k]) for k, v in a.G.state_dict().items())
    assert any(not torch.equal(v, d0[k]) for k, v in a.D.state_dict().items())
    l2 = _adapter(lambda_adv=0.0)
    d0 = copy.deepcopy(l2.D.state_dict())
    logs = [l2.train_step(_batch(seed=s), s, True) for s in range(2)]
    assert set(logs[-1]) == {"loss_G", "loss_G_rec"}
    assert all(torch.equal(v, d0[k]) for k, v in l2.D.state_dict().items())
    assert float(logs[-1]["loss_G"]) == pytest.approx(0.999 * float(logs[-1]["loss_G_rec"]))


def test_a_rows_loss_and_regularisers_reach_the_region_d():
    a = _adapter(loss="lsgan", regularizers={"r1": 1.0})
    logs = a.train_step(_batch(), 0, True)
    assert float(logs["loss_D_r1"]) > 0 and type(a.loss).__name__ == "LSGANLoss"


def test_options_and_tasks_are_checked():
    with pytest.raises(ConfigError, match="needs lambda_adv > 0"):
        METHODS.get("context-encoder").Options(lambda_adv=0.0, regularizers={"r1": 1.0})
    with pytest.raises(ConfigError, match="'bottleneck'"):
        METHODS.get("context-encoder").Options(bottleneck="dense")
    boxed = TaskSpec("boxed", inputs={"x": Field("photo", "image", 3), "mask": Field("mask", "mask", 1,
                                                                                      derive="box:0.25")},
                     targets={"y": Field("photo", "image", 3)}).bind(INFO)
    with pytest.raises(ConfigError, match="centred hole"):
        build_method("context-encoder", SMALL, boxed, _ctx(), image_size=S)
    with pytest.raises(ConfigError, match="derived 'mask'"):
        build_method("context-encoder", SMALL, TASKS.get("autoencode").bind(INFO), _ctx(), image_size=S)


# -- the baselines ---------------------------------------------------------------------------------------

def test_border_mean_fills_the_hole_with_the_ring_mean_by_hand():
    a = _adapter("inpaint-border-mean", border=0.125)                        # 2 px ring around a 16 px hole
    photo = torch.full((1, 3, S, S), -1.0)
    photo[:, :, 6:26, 6:26] = 0.5                   # the ring (and the hole, which is never read)
    photo[:, :, 6, 6] = -0.5                         # one ring pixel differs
    photo[:, :, 8:24, 8:24] = 0.9                   # the hole's own pixels: ignored
    y = a.sample(FromBatch({"photo": photo, "index": torch.tensor([0])}))["y"]
    ring = 20 * 20 - 16 * 16
    assert float(y[0, 0, 16, 16]) == pytest.approx(((ring - 1) * 0.5 - 0.5) / ring)
    assert not METHODS.get("inpaint-border-mean").trainable


def test_nn_inpainting_returns_the_nearest_training_images_hole():
    a = _adapter("inpaint-nn-hog")
    train = _batch(6, seed=1)
    a.train_step(train, 0, True)
    assert int(a.bank.filled.sum()) == 6
    test = {"photo": train["photo"][[4, 2]].clone(), "index": torch.tensor([0, 1])}
    test["photo"][:, :, 8:24, 8:24] = 0.0            # the test images' own holes differ
    y = a.sample(FromBatch(test))["y"]
    assert torch.equal(y, train["photo"][[4, 2]])    # the same context: the training image's hole
    big = _batch(2, seed=1)
    big["index"] = torch.tensor([0, 600])
    with pytest.raises(ConfigError, match="bank_size"):
        a.train_step(big, 1, True)


# -- the region metric, by hand ------------------------------------------------------------------------------

def test_the_region_metric_by_hand():
    """The hole of a grey target (0.5 on [0, 1]) predicted at 0.75: L1 25 %, L2 6.25 %, PSNR 10 log10(1 / 0.0625);
    a large error outside the hole is not counted."""
    s = METRICS.get("reconstruction")(ScoreContext(task=TASK, device=torch.device("cpu"), cache_dir=Path("."),
                                                   options={"region": "mask"}))
    photo = torch.zeros(2, 3, 16, 16)
    pred = photo.clone()
    pred[:, :, 4:12, 4:12] = 0.5                     # 0.75 on [0, 1] where the target is 0.5
    pred[:, :, :2] = -1.0                            # outside the hole
    s.update(pred, {"photo": photo, "index": torch.tensor([0, 1])})
    out = s.compute()
    assert out["l1_pct"] == pytest.approx(25.0) and out["l2_pct"] == pytest.approx(6.25)
    assert out["psnr"] == pytest.approx(10 * math.log10(1 / 0.0625), rel=1e-6)
    assert "ssim" not in out


# -- the suite --------------------------------------------------------------------------------------------

def test_the_suite_maps_the_papers_rows_and_claims():
    s = load_suite(SUITES.get("context-encoder"))
    rows = {r.name: r for r in s.rows}
    assert rows["Context encoder (L2 + adv)"].published == {"inpaint-center/l1_pct": 10.33,
                                                             "inpaint-center/l2_pct": 2.35,
                                                             "inpaint-center/psnr": 17.59}
    assert rows["NN-inpainting (HOG features)"].published["inpaint-center/psnr"] == 12.79
    assert rows["Context encoder (L2 only)"].options == {"lambda_adv": 0.0}
    assert s.suite.substitute and s.suite.paper_items == ["Table 2"]
    assert s.metric_options["reconstruction"] == {"region": "mask"}
    assert {c.metric for c in s.claims} == {"inpaint-center/l1_pct", "inpaint-center/l2_pct", "inpaint-center/psnr"}


@pytest.mark.slow
def test_smoke_profile_end_to_end(tmp_path):
    out = tmp_path / "ce"
    bench("run", "context-encoder", "--profile", "smoke", "--seeds", "1", "--out", str(out), "--no-progress",
          "--device", "cpu", check=True, timeout=300, env={"OMP_NUM_THREADS": "1"})
    board = pd.read_csv(out / "leaderboard.csv")
    assert_scored(board)
    assert board["row"].nunique() == 4 and set(board["metric"]) == {"l1_pct", "l2_pct", "psnr"}
    cell = board[(board["row"] == "Context encoder (L2 + adv)") & (board["metric"] == "l1_pct")].iloc[0]
    assert cell["published"] == 10.33 and 0 < cell["mean"] < 100
    claims = pd.read_csv(out / "claims.csv")
    assert len(claims) == 3
