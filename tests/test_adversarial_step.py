"""One adversarial step for every family (bench/adversarial.py, issue 24): a row's ``regularizers`` reach D's and
G's losses in pix2pix, the class-conditional GANs and the decoupled / CAAE forms alike, input regularisers change
what D sees, and a row without regularisers trains exactly as before (``test_quickstart_unchanged`` holds the
committed numbers; here the loss is recomputed by hand from the same networks)."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from bench.adversarial import AdversarialStep, Regularizers, descend
from bench.build import build_method
from bench.contracts import AdvTerms, DOutput, TrainContext
from bench.data.base import DatasetInfo
from bench.errors import ConfigError
from bench.registry import LOSSES, METHODS
from bench.tasks import Field, TaskSpec

CTX = TrainContext(torch.device("cpu"), image_size=32, total_steps=10)
K = 3
CLASS_TASK = TaskSpec("t", inputs={"c": Field("label", "class")}, targets={"y": Field("image", "image", 1)},
                      pairing="none").bind(DatasetInfo(name="d", tasks=(), num_classes=K, provides=("image", "label")))
AE_TASK = TaskSpec("ae", inputs={"x": Field("image", "image", 1)}, targets={"y": Field("image", "image", 1)},
                   pairing="paired").bind(DatasetInfo(name="d", tasks=(), provides=("image",)))

SMALL = {"acgan": dict(ngf=4, ndf=4, z_dim=8), "cagan": dict(ngf=4, ndf=4, z_dim=8),
         "ed-gan": dict(width=4, ndf=4, z_dim=8), "ed-par-gan": dict(width=4, ndf=4, z_dim=8)}


def _batch(n: int = 4, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {"image": torch.rand(n, 1, 32, 32, generator=g) * 2 - 1, "label": torch.randint(0, K, (n,), generator=g),
            "index": torch.arange(n)}


def _adapter(method: str, **options):
    torch.manual_seed(0)
    task = CLASS_TASK if method in ("acgan", "cagan") else AE_TASK
    return build_method(method, {**SMALL[method], **options}, task, CTX, image_size=32)


@pytest.mark.parametrize("method", ["acgan", "cagan", "ed-gan", "ed-par-gan"])
def test_every_family_takes_r1_and_adds_exactly_its_weighted_value(method):
    """The issue's condition: a class-conditional and a decoupled row accept ``regularizers = { r1 = 1.0 }``.
    With the same weights and batch, D's loss with R1 at weight 2 is D's loss without it plus 2 x the R1 it logs,
    and R1 equals ||grad_real D||^2 / 2 recomputed here from the same D before the step."""
    batch = _batch()
    plain, reg = _adapter(method), _adapter(method, regularizers={"r1": 2.0})
    d = reg.modules["D"]
    real = reg.task.y(batch).detach().requires_grad_(True)
    critic = reg.critic(reg.condition(batch)) if hasattr(reg, "critic") and callable(getattr(reg, "condition", None)) \
        else reg._critic
    if method == "cagan":                       # the activated class logit is CA-GAN's adversarial output
        from methods.cagan import activated
        score = activated(DOutput.wrap(d(real)), batch["label"]).logits[0].sum()
    else:
        score = sum(lg.sum() for lg in critic(real).logits)
    (g,) = torch.autograd.grad(score, real)
    r1_by_hand = g.pow(2).reshape(len(g), -1).sum(1).mean() / 2
    torch.manual_seed(5)
    a = plain.train_step(batch, 0, update_g=False)
    torch.manual_seed(5)
    b = reg.train_step(batch, 0, update_g=False)
    assert float(b["loss_D_r1"]) == pytest.approx(float(r1_by_hand), rel=1e-4)
    assert float(b["loss_D"]) == pytest.approx(float(a["loss_D"]) + 2.0 * float(b["loss_D_r1"]), rel=1e-5)
    assert float(b["loss_D_r1"]) > 0


@pytest.mark.parametrize("method", ["acgan", "acgan-mod", "cagan", "ed-gan", "ed-par-gan", "caae", "caae-par",
                                    "pix2pix", "pix2pix-par"])
def test_a_row_of_each_family_passes_the_parse_time_check_with_regularizers(method):
    """Before issue 24 ``acgan`` and ``ed-gan`` refused the key at parse time; a name that is not registered is
    still refused there, in one line."""
    from bench.resolve import _check_registry_refs
    o = METHODS.get(method).Options(regularizers={"r1": 1.0, "orthogonal": 1e-4})
    _check_registry_refs(o, "suite.toml", "rows[0].options")
    with pytest.raises(ConfigError, match="not a registered regularizer"):
        _check_registry_refs(METHODS.get(method).Options(regularizers={"no-such": 1.0}), "suite.toml", "rows[0]")


def test_orthogonal_reaches_the_class_conditional_d_through_the_step():
    """A weight regulariser finds D in ``AdvTerms.modules``: the gradient of D's loss with ``orthogonal`` differs
    from the one without by exactly the weight times the regulariser's own gradient."""
    batch = _batch()
    ad = _adapter("acgan", regularizers={"orthogonal": 0.5})
    d = ad.modules["D"]
    ref = copy.deepcopy(d)
    torch.manual_seed(3)
    logs = ad.train_step(batch, 0, update_g=False)
    assert "loss_D_orthogonal" in logs
    from bench.registry import REGULARIZERS
    v = REGULARIZERS.get("orthogonal")()(AdvTerms(None, torch.zeros(1), torch.zeros(1), modules={"D": ref}))
    assert float(logs["loss_D_orthogonal"]) == pytest.approx(float(v), rel=1e-5)


def test_instance_noise_changes_what_d_sees_and_anneals_to_nothing():
    """``instance-noise`` at weight 0.5: at step 0 the real images D is shown differ from the batch's by noise of
    std 0.5; at the last step by none (the schedule's end), and a row without it shows D the batch itself."""
    batch = _batch(n=8)
    seen: list[torch.Tensor] = []
    for regs, step, expected in (({"instance-noise": 0.5}, 0, 0.5), ({"instance-noise": 0.5}, 10, 0.0), ({}, 0, 0.0)):
        ad = _adapter("ed-gan", regularizers=regs)
        handle = ad.modules["D"].register_forward_pre_hook(lambda m, args: seen.append(args[0].detach()))
        seen.clear()
        ad.train_step(batch, step, update_g=False)
        handle.remove()
        diff = seen[0] - ad.task.y(batch)                        # D's first call is on the real images
        assert float(diff.std()) == pytest.approx(expected, abs=0.03)


def test_a_row_without_regularisers_trains_as_the_step_written_by_hand():
    """pix2pix's D and G updates through the step equal the formulas of the paper written out here (D's loss
    halved, G's = adversarial + lambda * L1), to the bit."""
    info = DatasetInfo(name="b", tasks=("labels2photo",), provides=("photo", "label_rgb"))
    from bench.registry import TASKS
    task = TASKS.get("labels2photo").bind(info)
    torch.manual_seed(0)
    ad = build_method("pix2pix", {"ngf": 4, "ndf": 4, "dropout": 0.0}, task, CTX, {"D": {"name": "patchgan"}},
                      image_size=32)
    g0, d0 = copy.deepcopy(ad.G), copy.deepcopy(ad.D)
    g = torch.Generator().manual_seed(1)
    batch = {"photo": torch.rand(2, 3, 32, 32, generator=g) * 2 - 1,
             "label_rgb": torch.rand(2, 3, 32, 32, generator=g) * 2 - 1}
    logs = ad.train_step(batch, 0, update_g=True)
    x, y = task.x(batch), task.y(batch)
    bce = nn.BCEWithLogitsLoss()
    fake = g0(x)
    dr, df = d0(x, y), d0(x, fake.detach())
    loss_d = (bce(dr, torch.ones_like(dr)) + bce(df, torch.zeros_like(df))) * 0.5
    assert float(logs["loss_D"]) == float(loss_d)


def test_the_step_refuses_a_regulariser_of_unknown_side_and_descend_steps_every_optimiser():
    w1, w2 = nn.Parameter(torch.ones(2)), nn.Parameter(torch.ones(2))
    o1, o2 = torch.optim.SGD([w1], lr=0.5), torch.optim.SGD([w2], lr=0.5)
    descend((w1 * w2).sum(), o1, o2)
    torch.testing.assert_close(w1.detach(), torch.full((2,), 0.5))
    torch.testing.assert_close(w2.detach(), torch.full((2,), 0.5))
    step = AdversarialStep(LOSSES.get("vanilla")(), {}, CTX, {})
    a = torch.ones(3)
    assert step.seen(0, a)[0] is a and not Regularizers({})
