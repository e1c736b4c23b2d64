"""The classic-family discriminators: patchgan-uncond, dcgan, multiscale-patchgan, elu-noisy.

Map sizes below are worked out by hand from the layer specs (4x4 kernels; out = (in + 2 pad - 4) // stride + 1):
- PatchGAN, padding 1, strides 2, 2, 2, 1 and a stride-1 head: s -> s/2, s/4, s/8, s/8 - 1, s/8 - 2
  (32 -> 2, 64 -> 6, 128 -> 14); receptive field 1 + 3 * (1 + 2 + 4 + 8 + 8) = 70.
- pix2pixHD's scale, padding 2: s -> s//2 + 1 three times, then + 1, + 1 (64 -> 33, 17, 9, 10, 11;
  32 -> 17, 9, 5, 6, 7; 16 -> 9, 5, 3, 4, 5); AvgPool2d(3, 2, 1) takes s to ceil(s / 2).
- DCGAN / elu-noisy: stride-2 convs down to 4x4 (3 at 32 px, 4 at 64 px), then one logit.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from bench.contracts import AdvTerms, DOutput, Slot
from bench.errors import ConfigError
from bench.registry import DISCRIMINATORS, REGULARIZERS, build
from bench.resolve import check_component_options
from methods.discriminators.patchgan import PatchGAN
from bench.nets import LINEAR_LAYERS, count_parameters, has_spectral_norm

UNCOND = ("patchgan-uncond", "dcgan", "elu-noisy")
COND = ("multiscale-patchgan",)
ALL = UNCOND + COND
OPTIONS = {"patchgan-uncond": {"n_layers": 2, "norm": "batch", "spectral_norm": True},
           "dcgan": {"norm": "none", "spectral_norm": True},
           "multiscale-patchgan": {"num_D": 3, "n_layers": 2, "norm": "batch"},
           "elu-noisy": {"noise_std": 0.2, "norm": "batch", "weight_init": "normal"}}


def _img(n: int, c: int, s: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, c, s, s, generator=g) * 2 - 1


def _smooth(n: int, c: int, s: int, seed: int = 0) -> torch.Tensor:
    """'Real' images: a random colour per image plus a horizontal ramp (no pixel noise)."""
    g = torch.Generator().manual_seed(seed)
    colour = torch.rand(n, c, 1, 1, generator=g) - 0.5
    ramp = torch.linspace(-0.5, 0.5, s).view(1, 1, 1, s)
    return (colour + ramp).expand(n, c, s, s).contiguous()


def _make(name: str, size: int, ndf: int = 8, c: int = 3, **kw) -> nn.Module:
    args = (c, c) if name in COND else (c,)
    return build(DISCRIMINATORS, name, *args, image_size=size, ndf=ndf, **kw)


def _critic(name: str, d: nn.Module, x: torch.Tensor) -> Callable[[torch.Tensor], DOutput]:
    """D bound to the condition ``x`` for a conditional D, D alone otherwise."""
    return (lambda v: DOutput.wrap(d(x, v))) if name in COND else (lambda v: DOutput.wrap(d(v)))


def _sides(out: DOutput) -> list[tuple[int, ...]]:
    return [tuple(t.shape) for t in out.logits]


def test_every_zoo_discriminator_is_registered() -> None:
    assert set(ALL) <= set(DISCRIMINATORS.names())


# ------------------------------------------------------------------------------------------ shapes
EXPECTED_LOGITS = {
    ("patchgan-uncond", 32): [(2, 1, 2, 2)], ("patchgan-uncond", 64): [(2, 1, 6, 6)],
    ("dcgan", 32): [(2,)], ("dcgan", 64): [(2,)],
    ("elu-noisy", 32): [(2,)], ("elu-noisy", 64): [(2,)],
    ("multiscale-patchgan", 32): [(2, 1, 7, 7), (2, 1, 5, 5)],
    ("multiscale-patchgan", 64): [(2, 1, 11, 11), (2, 1, 7, 7)],
}


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("size", [32, 64])
def test_logit_shapes_follow_the_hand_arithmetic(name: str, size: int) -> None:
    torch.manual_seed(0)
    d = _make(name, size).eval()
    y = _img(2, 3, size)
    with torch.no_grad():
        out = _critic(name, d, _img(2, 3, size, seed=1))(y)
    assert _sides(out) == EXPECTED_LOGITS[(name, size)]
    assert all(torch.isfinite(t).all() for t in out.logits)


@pytest.mark.parametrize("size", [32, 64])
def test_multiscale_features_are_every_block_before_the_head(size: int) -> None:
    d = _make("multiscale-patchgan", size, ndf=4)
    out = d(_img(2, 3, size), _img(2, 3, size, seed=1))
    first = {32: [17, 9, 5, 6], 64: [33, 17, 9, 10]}[size]
    second = {32: [9, 5, 3, 4], 64: [17, 9, 5, 6]}[size]
    for feats, sides in zip(out.features, (first, second)):
        assert [tuple(f.shape) for f in feats] == [(2, w, s, s) for w, s in zip((4, 8, 16, 32), sides)]


@pytest.mark.parametrize("size", [32, 64])
def test_elu_noisy_features_are_every_conv_block(size: int) -> None:
    out = _make("elu-noisy", size, ndf=4)(_img(2, 3, size))
    widths_sides = {32: [(4, 16), (8, 8), (16, 4)], 64: [(4, 32), (8, 16), (16, 8), (32, 4)]}[size]
    assert len(out.features) == 1
    assert [tuple(f.shape) for f in out.features[0]] == [(2, w, s, s) for w, s in widths_sides]


def test_patchgan_uncond_receptive_field_is_70_pixels() -> None:
    # norm "none": instance / batch norm would couple every logit to the whole image
    torch.manual_seed(0)
    d = _make("patchgan-uncond", 128, ndf=4, norm="none")
    y = _img(1, 3, 128).requires_grad_(True)
    logits = d(y)
    assert logits.shape == (1, 1, 14, 14)
    logits[0, 0, 7, 7].backward()
    rows = y.grad.abs().sum(dim=(0, 1, 3)).nonzero().flatten()
    cols = y.grad.abs().sum(dim=(0, 1, 2)).nonzero().flatten()
    # window of logit i: starts at 8 i - (1 + 2 + 4 + 8 + 8) (each conv's padding 1 times its input stride)
    assert (rows.min().item(), rows.max().item() + 1) == (7 * 8 - 23, 7 * 8 - 23 + 70)
    assert (cols.min().item(), cols.max().item() + 1) == (33, 103)


# ------------------------------------------------------------------------------------------ patchgan-uncond
def test_patchgan_uncond_is_patchgan_without_condition_channels() -> None:
    torch.manual_seed(3)
    ours = _make("patchgan-uncond", 64, ndf=8)
    torch.manual_seed(3)
    theirs = PatchGAN(0, 3, image_size=64, ndf=8, norm="instance")
    a, b = ours.state_dict(), theirs.state_dict()
    assert list(a) == list(b) and all(torch.equal(a[k], b[k]) for k in a)
    y = _img(2, 3, 64)
    with torch.no_grad():
        torch.testing.assert_close(ours(y), theirs(y[:, :0], y), rtol=0, atol=0)


def test_patchgan_uncond_parameter_count_matches_cyclegan() -> None:
    def conv(i: int, o: int) -> int:                 # instance norm (no affine): every conv has a bias
        return i * o * 16 + o

    ndf = 64
    expected = conv(3, ndf) + conv(ndf, 2 * ndf) + conv(2 * ndf, 4 * ndf) + conv(4 * ndf, 8 * ndf) + conv(8 * ndf, 1)
    d = build(DISCRIMINATORS, "patchgan-uncond", 3, image_size=256, ndf=ndf)
    assert count_parameters(d) == expected == 2_764_737
    assert round(count_parameters(d) / 1e6, 3) == 2.765    # CycleGAN prints "[Network D_A] ... 2.765 M"


# ------------------------------------------------------------------------------------------ dcgan
def test_dcgan_parameter_count_matches_the_reference_at_64() -> None:
    d = build(DISCRIMINATORS, "dcgan", 3, image_size=64, ndf=64)
    # PyTorch's DCGAN example (no conv biases): 2,765,568; ours adds the first conv's and the head's biases
    assert count_parameters(d) == 2_765_568 + 64 + 1
    bns = [m for m in d.modules() if isinstance(m, nn.BatchNorm2d)]
    assert [m.num_features for m in bns] == [128, 256, 512]  # none after the first conv


@pytest.mark.parametrize("size", [8, 48, 100])
def test_dcgan_refuses_sizes_it_cannot_take(size: int) -> None:
    with pytest.raises(ConfigError, match="power of two"):
        build(DISCRIMINATORS, "dcgan", 3, image_size=size, ndf=8)


@pytest.mark.parametrize("name", ["dcgan", "elu-noisy"])
def test_one_logit_nets_refuse_another_input_size(name: str) -> None:
    d = _make(name, 32)
    with pytest.raises(ValueError, match="image_size=64"):
        d(_img(1, 3, 64))


@pytest.mark.parametrize("name", ["patchgan-uncond", "dcgan", "multiscale-patchgan"])
def test_spectral_norm_option_wraps_every_weight(name: str) -> None:
    d = _make(name, 32, spectral_norm=True)
    layers = [m for m in d.modules() if isinstance(m, LINEAR_LAYERS)]
    assert layers and all(has_spectral_norm(m) for m in layers)
    assert not any(has_spectral_norm(m) for m in _make(name, 32).modules())


# ------------------------------------------------------------------------------------------ gradients
@pytest.mark.parametrize("name", ALL)
def test_every_parameter_gets_a_gradient_from_the_logits(name: str) -> None:
    torch.manual_seed(0)
    d = _make(name, 32, ndf=4)
    out = _critic(name, d, _img(2, 3, 32, seed=1))(_img(2, 3, 32))
    sum(t.sum() for t in out.logits).backward()
    missing = [n for n, p in d.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing


def test_multiscale_scale_logits_reach_only_their_own_scale() -> None:
    d = _make("multiscale-patchgan", 64, ndf=4)
    out = d(_img(2, 3, 64), _img(2, 3, 64, seed=1))
    out.logits[1].sum().backward()
    assert all(p.grad is None for p in d.scales[0].parameters())
    assert all(p.grad is not None for p in d.scales[1].parameters())


# ------------------------------------------------------------------------------------------ multi-scale
def test_multiscale_downsamples_by_avgpool_between_scales() -> None:
    d = _make("multiscale-patchgan", 64, ndf=4, num_D=3)
    seen: list[torch.Tensor] = []
    for scale in d.scales:
        scale.register_forward_pre_hook(lambda m, args: seen.append(args[0]))
    x, y = _img(2, 3, 64), _img(2, 3, 64, seed=1)
    with torch.no_grad():
        out = d(x, y)
    assert len(d.scales) == len(out.logits) == len(out.features) == 3
    assert [v.shape[-1] for v in seen] == [64, 32, 16]           # the input halves at each scale
    assert [t.shape[-1] for t in out.logits] == [11, 7, 5]
    v = torch.cat([x, y], 1)
    torch.testing.assert_close(seen[0], v, rtol=0, atol=0)
    for k in (1, 2):
        v = F.avg_pool2d(v, 3, stride=2, padding=1, count_include_pad=False)
        torch.testing.assert_close(seen[k], v, rtol=0, atol=0)


def test_multiscale_default_is_two_scales_and_small_images_are_refused() -> None:
    assert len(_make("multiscale-patchgan", 32).scales) == 2
    with pytest.raises(ConfigError, match="num_D"):
        _make("multiscale-patchgan", 16, num_D=3)             # 16 -> 8 -> 4 px: under 2 ** 3


def test_feature_matching_through_the_multiscale_discriminator() -> None:
    torch.manual_seed(0)
    d = _make("multiscale-patchgan", 32, ndf=4)
    fm = REGULARIZERS.get("feature-matching")()
    x, real = _img(2, 3, 32), _img(2, 3, 32, seed=1)
    critic = _critic("multiscale-patchgan", d, x)
    assert fm(AdvTerms(critic, real, real.clone())).item() == 0.0
    fake = _img(2, 3, 32, seed=2).requires_grad_(True)
    loss = fm(AdvTerms(critic, real, fake))
    assert loss.item() > 0
    loss.backward()
    assert fake.grad is not None and fake.grad.abs().sum() > 0
    # the features stop before each scale's head: its logits conv gets no gradient from feature matching
    for scale in d.scales:
        assert all(p.grad is None for p in scale.head.parameters())
        assert all(p.grad is not None for p in scale.blocks.parameters())


# ------------------------------------------------------------------------------------------ elu-noisy
def test_elu_noisy_is_deterministic_in_eval_and_noisy_in_train() -> None:
    torch.manual_seed(0)
    d = _make("elu-noisy", 32)
    y = _img(4, 3, 32)
    with torch.no_grad():
        d.eval()
        assert torch.equal(d(y).logits[0], d(y).logits[0])
        d.train()
        a, b = d(y), d(y)
        assert not torch.equal(a.logits[0], b.logits[0])
        # the first block's output is taken before the noise; the second conv sees the noisy one
        assert torch.equal(a.features[0][0], b.features[0][0])
        assert not torch.equal(a.features[0][1], b.features[0][1])
        torch.manual_seed(7)                                  # the noise is torch's global generator's
        c = d(y)
        torch.manual_seed(7)
        assert torch.equal(c.logits[0], d(y).logits[0])


@pytest.mark.parametrize("std", [0.1, 0.3])
def test_elu_noisy_noise_has_the_asked_std(std: float) -> None:
    torch.manual_seed(0)
    d = _make("elu-noisy", 64, noise_std=std).train()
    pairs: list[tuple[torch.Tensor, torch.Tensor]] = []
    d.noise.register_forward_hook(lambda m, args, out: pairs.append((args[0], out)))
    with torch.no_grad():
        out = d(_img(4, 3, 64))
    (clean, noisy), = pairs
    torch.testing.assert_close(clean, out.features[0][0], rtol=0, atol=0)  # injected on the second conv's input
    diff = noisy - clean                                       # 4 x 8 x 32 x 32 = 32768 draws
    assert abs(diff.std().item() - std) < 0.03 * std
    assert abs(diff.mean().item()) < 0.03 * std


def test_elu_noisy_without_noise_is_deterministic_in_train() -> None:
    d = _make("elu-noisy", 32, noise_std=0.0).train()
    y = _img(2, 3, 32)
    with torch.no_grad():
        assert torch.equal(d(y).logits[0], d(y).logits[0])


def test_elu_noisy_keeps_its_own_fan_in_initialisation() -> None:
    assert getattr(DISCRIMINATORS.get("elu-noisy"), "init_policy", "adapter") == "own"
    d = _make("elu-noisy", 64, ndf=64)
    w = d.blocks[1][0].weight                                  # 64 x 16 fan-in, He: std sqrt(2 / 1024)
    assert abs(w.std().item() - (2 / 1024) ** 0.5) < 0.05 * (2 / 1024) ** 0.5


# ------------------------------------------------------------------------------------------ training
def _bce(name: str, d: nn.Module, x: torch.Tensor, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    critic = _critic(name, d, x)
    r, f = critic(real).logits, critic(fake).logits
    return sum(F.binary_cross_entropy_with_logits(a, torch.ones_like(a))
               + F.binary_cross_entropy_with_logits(b, torch.zeros_like(b)) for a, b in zip(r, f)) / len(r)


@pytest.mark.parametrize("name", ALL)
def test_a_few_adam_steps_lower_the_bce(name: str) -> None:
    torch.manual_seed(0)
    d = _make(name, 32, ndf=8).train()
    x, real, fake = _img(4, 3, 32, seed=5), _smooth(4, 3, 32), _img(4, 3, 32, seed=6)
    opt = torch.optim.Adam(d.parameters(), lr=1e-3, betas=(0.5, 0.999))

    def measured() -> float:
        torch.manual_seed(11)                                  # the same noise draws for elu-noisy
        with torch.no_grad():
            return _bce(name, d, x, real, fake).item()

    before = measured()
    for _ in range(5):
        loss = _bce(name, d, x, real, fake)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    after = measured()
    assert after < 0.9 * before, (before, after)


# ------------------------------------------------------------------------------------------ component check
SLOTS = {"uncond": Slot("discriminators", args=("in_channels",), provided=("image_size", "ndf"), call=("y",)),
         "cond": Slot("discriminators", args=("x_channels", "y_channels"), provided=("image_size", "ndf"),
                      call=("x", "y"))}


def _check(name: str, slot: Slot, options: dict) -> None:
    check_component_options(DISCRIMINATORS.get(name), slot, options, where="[rows.0] components.D",
                            component=name, method="m")


@pytest.mark.parametrize("name", ALL)
def test_component_check_passes_for_the_declared_arity_and_refuses_the_other(name: str) -> None:
    mine, other = ("cond", "uncond") if name in COND else ("uncond", "cond")
    _check(name, SLOTS[mine], OPTIONS[name])
    _make(name, 32, **OPTIONS[name])                           # the options the check let through do build
    with pytest.raises(ConfigError, match="takes forward"):
        _check(name, dataclasses.replace(SLOTS[mine], call=SLOTS[other].call), {})
    with pytest.raises(ConfigError, match="set by method"):
        _check(name, SLOTS[mine], {"ndf": 16})
    with pytest.raises(ConfigError, match="unknown key"):
        _check(name, SLOTS[mine], {"nfd": 16})
