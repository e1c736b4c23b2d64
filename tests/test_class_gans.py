"""The AC-GAN family and CA-GAN (methods/acgan.py, methods/cagan.py) on hand-made tensors, and mixed
batch training (methods/mixed_batch.py): which terms exist, which get gradients, what is masked."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from bench.adversarial import AdversarialStep
from bench.contracts import AdvTerms, DOutput, FromPrior, TrainContext
from bench.data.base import DatasetInfo
from bench.errors import ConfigError
from bench.registry import DISCRIMINATORS, GENERATORS, LOSSES, METHODS
from bench.tasks import Field, TaskSpec
from methods.mixed_batch import MixedBatch, mixed_forward, split_sizes

K = 4
TASK = TaskSpec("t", inputs={"c": Field("label", "class")}, targets={"y": Field("image", "image", 1)},
                pairing="none").bind(DatasetInfo(name="d", tasks=(), num_classes=K, provides=("image", "label")))


def _bare(name: str, **options):
    """An adapter object with options and loss only (no networks): enough to evaluate its objectives."""
    cls = METHODS.get(name)
    ad = cls.__new__(cls)
    ad.options = cls.Options(**options)
    ad.loss = LOSSES.get(ad.options.loss)()
    ad.adv = AdversarialStep(ad.loss, {}, TrainContext(torch.device("cpu")), {})
    ad.D = None
    ad._critic = lambda v: (_ for _ in ()).throw(AssertionError("D must not be called"))
    return ad


def _outputs(n: int = 3, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    real = DOutput([torch.randn(n, 1, generator=g).requires_grad_()], [],
                   {"cls": torch.randn(n, K, generator=g).requires_grad_()})
    fake = DOutput([torch.randn(n, 1, generator=g).requires_grad_()], [],
                   {"cls": torch.randn(n, K, generator=g).requires_grad_()})
    return real, fake


def _grads(loss: torch.Tensor, *tensors: torch.Tensor) -> list[torch.Tensor | None]:
    return list(torch.autograd.grad(loss, tensors, allow_unused=True))


Y_REAL, Y_FAKE = torch.tensor([0, 2, 3]), torch.tensor([1, 1, 0])


def test_cagan_trains_only_the_activated_condition():
    ad = _bare("cagan")
    real, fake = _outputs()
    t = AdvTerms(None, torch.zeros(3), torch.zeros(3), real, fake)
    loss, parts = ad.d_objective(t, Y_REAL, Y_FAKE)
    cr, cf = real.heads["cls"], fake.heads["cls"]
    ar, af = cr.gather(1, Y_REAL[:, None]), cf.gather(1, Y_FAKE[:, None])
    # the paper's LSGAN form: sum_c (D_c(x) - 1)^2 cnd_real + D_c(x')^2 cnd_fake, averaged over samples
    torch.testing.assert_close(loss, ((ar - 1) ** 2).mean() + (af ** 2).mean())
    g_real, g_fake, g_adv = _grads(loss, cr, cf, real.logits[0])
    assert g_adv is None                                          # the adversarial head is not used
    mask_r = F.one_hot(Y_REAL, K).bool()
    assert torch.all(g_real[~mask_r] == 0) and torch.all(g_real[mask_r] != 0)
    mask_f = F.one_hot(Y_FAKE, K).bool()
    assert torch.all(g_fake[~mask_f] == 0) and torch.all(g_fake[mask_f] != 0)
    # G: (D_c(x') - 1)^2 on the activated condition of each generated sample only
    t = AdvTerms(None, torch.zeros(3), torch.zeros(3), None, fake)
    loss_g, _ = ad.g_objective(t, Y_REAL, Y_FAKE)
    torch.testing.assert_close(loss_g, ((af - 1) ** 2).mean())
    (g,) = _grads(loss_g, cf)
    assert torch.all(g[~mask_f] == 0) and torch.all(g[mask_f] != 0)


@pytest.mark.parametrize("name, fake_in_d, lam", [("acgan", True, 1.0), ("acgan-mod", False, 0.1),
                                                  ("acgan-mod-gcls", True, 0.1)])
def test_acgan_variants_put_the_fake_class_term_where_they_say(name, fake_in_d, lam):
    ad = _bare(name)
    assert ad.options.lambda_cls == lam
    real, fake = _outputs()
    t = AdvTerms(None, torch.zeros(3), torch.zeros(3), real, fake)
    loss, parts = ad.d_objective(t, Y_REAL, Y_FAKE)
    ce_r = F.cross_entropy(real.heads["cls"], Y_REAL)
    ce_f = F.cross_entropy(fake.heads["cls"], Y_FAKE)
    adv = ((real.logits[0] - 1) ** 2).mean() + (fake.logits[0] ** 2).mean()          # LSGAN
    torch.testing.assert_close(loss, adv + lam * (ce_r + (ce_f if fake_in_d else 0)))
    g_fake_cls, g_adv = _grads(loss, fake.heads["cls"], real.logits[0])
    assert (g_fake_cls is not None) == fake_in_d and g_adv is not None
    # G: adversarial + lambda * class loss of the generated samples, for every variant
    t = AdvTerms(None, torch.zeros(3), torch.zeros(3), None, fake)
    loss_g, _ = ad.g_objective(t, Y_REAL, Y_FAKE)
    torch.testing.assert_close(loss_g, ((fake.logits[0] - 1) ** 2).mean() + lam * ce_f)


def test_without_adversarial_loss_the_adversarial_head_gets_nothing():
    ad = _bare("acgan-mod", adversarial=False)
    real, fake = _outputs()
    loss, parts = ad.d_objective(AdvTerms(None, torch.zeros(3), torch.zeros(3), real, fake), Y_REAL, Y_FAKE)
    assert set(parts) == {"cls"}
    assert _grads(loss, real.logits[0])[0] is None
    with pytest.raises(ConfigError, match="lambda_cls"):
        METHODS.get("acgan-mod").Options(adversarial=False, lambda_cls=0.0)


def test_mixed_batch_sizes_and_schedule():
    assert split_sizes(32, 0.5) == (16, 16) and split_sizes(10, 0.01) == (1, 9) and split_sizes(4, 0.99) == (3, 1)
    grow = MixedBatch(0.5, start=0.01, growth=0.01)
    assert [grow.real_share(e) for e in (0, 1, 48, 49, 80)] == pytest.approx([0.01, 0.02, 0.49, 0.5, 0.5])
    authors = MixedBatch(0.5, start=0.0, growth=0.01)                 # min(0.01 * epoch, 0.5): no mixing at first
    assert [authors.real_share(e) for e in (0, 1, 50, 60)] == pytest.approx([0.0, 0.01, 0.5, 0.5])
    assert MixedBatch(0.3).real_share(7) == 0.3
    with pytest.raises(ConfigError):
        MixedBatch(1.0)
    real, fake = torch.zeros(8, 2), torch.ones(8, 2)

    def d(x):
        return {"logits": x[:, :1], "cls": x}
    dr, df, k, m = mixed_forward(d, real, fake, 0.25)
    assert (k, m) == (2, 6) and torch.all(dr.heads["cls"] == 0) and torch.all(df.heads["cls"] == 1)


# -- a whole adapter with tiny stand-in networks: every D batch holds the set share ------------------
class _TinyG(nn.Module):
    def __init__(self, z_dim, num_classes, *, image_size=8, ngf=4):
        super().__init__()
        self.fc = nn.Linear(z_dim + num_classes, image_size * image_size)
        self.s = image_size

    def forward(self, z, onehot):
        return torch.tanh(self.fc(torch.cat([z, onehot], 1))).view(-1, 1, self.s, self.s)


class _SpyD(nn.Module):
    """Records the share of real samples (marked by +5 in pixel 0) in every batch it sees."""

    seen: list[float] = []

    def __init__(self, in_channels, num_classes, *, image_size=8, ndf=4):
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(in_channels * image_size * image_size, ndf),
                                  nn.BatchNorm1d(ndf))
        self.adv, self.cls = nn.Linear(ndf, 1), nn.Linear(ndf, num_classes)

    def forward(self, y):
        _SpyD.seen.append(float((y[:, 0, 0, 0] > 2).float().mean()))
        h = self.body(y)
        return {"logits": self.adv(h), "cls": self.cls(h)}


def _tiny(name: str, **options):
    for n, c in (("test-tiny-cgen", _TinyG), ("test-spy-heads", _SpyD)):
        if n not in (GENERATORS if n.endswith("cgen") else DISCRIMINATORS):
            (GENERATORS if n.endswith("cgen") else DISCRIMINATORS).register(n, c)
    from bench.build import build_method
    ctx = TrainContext(torch.device("cpu"), image_size=8, steps_per_epoch=10)
    return build_method(name, {"z_dim": 3, "ngf": 4, "ndf": 4, **options}, TASK, ctx,
                        {"G": {"name": "test-tiny-cgen"}, "D": {"name": "test-spy-heads"}}, image_size=8)


@pytest.mark.parametrize("name", ["cagan", "acgan-mod"])
@pytest.mark.parametrize("batches, shares", [(1, [0.25]), (2, [0.25, 0.75])])
def test_every_d_batch_keeps_the_mixed_share(name, batches, shares):
    ad = _tiny(name, mixed_share=0.25, mixed_batches=batches)
    batch = {"image": torch.full((8, 1, 8, 8), 5.0), "label": torch.arange(8) % K}
    _SpyD.seen.clear()
    for step in range(3):
        losses = ad.train_step(batch, step, True)
        assert all(torch.isfinite(v) for v in losses.values())
    # one batch: 2 real + 6 generated; the authors' pair: real[:2] + fake[2:], then fake[:2] + real[2:]
    assert _SpyD.seen == shares * (2 * 3)                              # D's and G's step, 3 steps
    out = ad.sample(FromPrior(6, torch.tensor([0, 1, 2, 3, 0, 1]), seed=3))["y"]
    again = ad.sample(FromPrior(6, torch.tensor([0, 1, 2, 3, 0, 1]), seed=3))["y"]
    assert out.shape == (6, 1, 8, 8) and torch.equal(out, again)
    shared = ad.sample(FromPrior(4, torch.tensor([0, 1, 0, 1]), seed=3, latent_ids=torch.tensor([0, 0, 1, 1])))["y"]
    assert not torch.equal(shared[0], shared[1])                       # same latent, other class


def test_complementary_batches_hold_every_sample_once_and_give_each_its_own_output():
    from methods.mixed_batch import complementary_forward
    n = 10
    real, fake = torch.arange(n).float()[:, None], 100 + torch.arange(n).float()[:, None]
    seen = []

    def d(x):
        seen.append(x[:, 0].clone())
        return {"logits": x * 2, "cls": torch.cat([x, -x], 1)}
    for share in (0.5, 0.3, 0.0):
        seen.clear()
        dr, df, s = complementary_forward(d, real, fake, share)
        assert s == int(share * n)
        both = torch.cat(seen)
        assert sorted(both.tolist()) == sorted(torch.cat([real, fake])[:, 0].tolist())   # each sample once
        assert int((seen[0] < 100).sum()) == s and int((seen[1] < 100).sum()) == n - s     # the set real share
        assert torch.equal(dr.logits[0], real * 2) and torch.equal(df.logits[0], fake * 2)  # back in order
        assert torch.equal(dr.heads["cls"][:, 1], -real[:, 0]) and torch.equal(df.heads["cls"][:, 0], fake[:, 0])


def test_generated_conditions_are_uniform_or_the_real_batchs():
    from scipy.stats import chisquare
    zeros = {"image": torch.zeros(64, 1, 8, 8), "label": torch.zeros(64, dtype=torch.long)}   # imbalanced: all 0
    ad = _tiny("cagan")
    assert ad.options.fake_labels == "uniform"                                            # the authors' default
    drawn = torch.cat([ad.fake_conditions(zeros["label"], step) for step in range(200)])
    counts = torch.bincount(drawn, minlength=K).numpy()
    assert chisquare(counts).pvalue > 0.001 and counts.min() > 0                            # uniform over classes
    assert torch.equal(ad.fake_conditions(zeros["label"], 7), ad.fake_conditions(zeros["label"], 7))   # (seed, step)
    real = _tiny("cagan", fake_labels="real")
    labels = torch.tensor([0, 0, 0, 1, 0, 2, 0, 0])
    assert torch.equal(real.fake_conditions(labels, 3), labels)
    with pytest.raises(ConfigError, match="fake_labels"):
        METHODS.get("cagan").Options(fake_labels="data")


@pytest.mark.parametrize("name", ["cagan", "acgan-mod"])
def test_the_d_penalty_is_the_squared_input_gradient_of_each_samples_score(name):
    """The authors' code's penalty (CAGAN-MNIST Train.py reg_losses): |d score / d x|^2 for every real and generated
    input, averaged over the batch; CA-GAN's score is the activated class logit, AC-GAN's the adversarial one. On a
    linear D the gradient is a weight column, so the penalty is known by hand."""
    ad = _bare(name, d_penalty=1.0)
    g = torch.Generator().manual_seed(1)
    w_cls, w_adv = torch.randn(6, K, generator=g).requires_grad_(), torch.randn(6, 1, generator=g).requires_grad_()
    real, fake = torch.randn(3, 6, generator=g).requires_grad_(), torch.randn(3, 6, generator=g).requires_grad_()
    lin = lambda x: DOutput([x @ w_adv], [], {"cls": x @ w_cls})                              # noqa: E731
    t = AdvTerms(None, real, fake, lin(real), lin(fake))
    got = ad._penalty(t, Y_REAL, Y_FAKE, real, fake)
    if name == "cagan":
        want = (w_cls[:, Y_REAL].pow(2).sum() + w_cls[:, Y_FAKE].pow(2).sum()) / 3
    else:
        want = 2 * w_adv.pow(2).sum()
    torch.testing.assert_close(got, want)
    (g_w,) = torch.autograd.grad(got, w_cls if name == "cagan" else w_adv)      # D's step trains through it
    assert g_w.abs().sum() > 0


@pytest.mark.parametrize("batches", [None, 2])
def test_a_penalised_d_step_trains_with_or_without_mixed_batches(batches):
    mixing = {"mixed_share": 0.5, "mixed_batches": batches} if batches else {}
    batch = {"image": torch.rand(8, 1, 8, 8) * 2 - 1, "label": torch.arange(8) % K}
    off, on = _tiny("cagan", **mixing), _tiny("cagan", d_penalty=10.0, **mixing)
    out = on.train_step(batch, 0, True)
    assert out["loss_D_penalty"] > 0 and torch.isfinite(out["loss_D"])
    assert "loss_D_penalty" not in off.train_step(batch, 0, True)
    with pytest.raises(ConfigError, match="d_penalty"):
        METHODS.get("cagan").Options(d_penalty=-1.0)
