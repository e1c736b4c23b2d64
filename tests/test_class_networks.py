"""The class-conditional DCGAN generator and two-headed discriminator of the CA-GAN paper (Cho & Yoon 2020)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from bench.contracts import DOutput
from bench.errors import ConfigError
from bench.registry import DISCRIMINATORS, GENERATORS
from methods.discriminators.class_heads import ClassHeadD
from methods.generators.class_dcgan import ClassDCGAN
from bench.nets import NORM_KINDS, count_parameters

Z, K = 16, 10


def _onehot(labels: list[int], k: int = K) -> torch.Tensor:
    return nn.functional.one_hot(torch.tensor(labels), k).float()


def _z(n: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, Z, generator=torch.Generator().manual_seed(seed))


def _images(n: int, size: int, c: int = 1, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, c, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def _conv(i: int, o: int, k: int = 3) -> int:
    return i * o * k * k + o                       # weight + bias


def _linear(i: int, o: int) -> int:
    return i * o + o


def _norm(kind: str, c: int) -> int:
    return 2 * c if kind == "batch" else 0         # instance: no affine parameters; none: no layer


def test_registered_names_resolve_to_the_classes() -> None:
    assert GENERATORS.get("class-dcgan") is ClassDCGAN
    assert DISCRIMINATORS.get("class-heads") is ClassHeadD


@pytest.mark.parametrize("norm", NORM_KINDS)
@pytest.mark.parametrize("size", [28, 32])
def test_generator_shape_and_tanh_range(size: int, norm: str) -> None:
    torch.manual_seed(0)
    g = ClassDCGAN(Z, K, image_size=size, ngf=8, norm=norm)
    out = g(_z(4), _onehot([0, 3, 7, 9]))
    assert out.shape == (4, 1, size, size)
    assert torch.isfinite(out).all() and out.abs().max() <= 1.0
    assert isinstance(g.blocks[-1], nn.Tanh)


def test_generator_widths_follow_the_authors_code() -> None:
    g = ClassDCGAN(100, 10)                        # ngf=64 at 28 px
    h = g.fc(torch.zeros(1, 110)).view(1, *g.base)
    sizes = []
    for layer in g.blocks:
        h = layer(h)
        if isinstance(layer, nn.Conv2d):
            sizes.append(tuple(h.shape[1:]))
    assert sizes == [(128, 14, 14)] * 3 + [(64, 28, 28)] * 3 + [(1, 28, 28)]
    assert g.base == (256, 7, 7)


@pytest.mark.parametrize("norm", NORM_KINDS)
@pytest.mark.parametrize("size", [28, 32])
def test_discriminator_dict_output_and_doutput_wrap(size: int, norm: str) -> None:
    torch.manual_seed(0)
    d = ClassHeadD(3, K, image_size=size, ndf=8, norm=norm)
    out = d(_images(4, size, 3))
    assert set(out) == {"logits", "cls"}
    assert out["logits"].shape == (4, 1) and out["cls"].shape == (4, K)
    assert all(torch.isfinite(t).all() for t in out.values())
    wrapped = DOutput.wrap(out)
    assert len(wrapped.logits) == 1 and wrapped.logits[0] is out["logits"]
    assert set(wrapped.heads) == {"cls"} and wrapped.heads["cls"] is out["cls"]
    assert wrapped.features == []


@pytest.mark.parametrize("norm", NORM_KINDS)
@pytest.mark.parametrize("size,ngf,convs", [(28, 64, 3), (32, 8, 2), (28, 5, 1)])
def test_generator_parameter_count_matches_hand_formula(size: int, ngf: int, convs: int, norm: str) -> None:
    z, k, out = 100, 10, 1
    q = size // 4
    expected = (_linear(z + k, 4 * ngf * q * q)
                + _conv(4 * ngf, 2 * ngf) + (convs - 1) * _conv(2 * ngf, 2 * ngf) + convs * _norm(norm, 2 * ngf)
                + _conv(2 * ngf, ngf) + (convs - 1) * _conv(ngf, ngf) + convs * _norm(norm, ngf)
                + _conv(ngf, out, 1))
    g = ClassDCGAN(z, k, image_size=size, ngf=ngf, out_channels=out, norm=norm, convs_per_block=convs)
    assert count_parameters(g) == expected


@pytest.mark.parametrize("norm", NORM_KINDS)
@pytest.mark.parametrize("size,ndf,convs", [(28, 64, 3), (32, 8, 2), (28, 5, 1)])
def test_discriminator_parameter_count_matches_hand_formula(size: int, ndf: int, convs: int, norm: str) -> None:
    c, k = 1, 10
    feats = 4 * ndf * (size // 4) ** 2
    expected = (_conv(c, ndf)
                + _conv(ndf, 2 * ndf) + (convs - 1) * _conv(2 * ndf, 2 * ndf) + convs * _norm(norm, 2 * ndf)
                + _conv(2 * ndf, 4 * ndf) + (convs - 1) * _conv(4 * ndf, 4 * ndf) + convs * _norm(norm, 4 * ndf)
                + _linear(feats, 1) + _linear(feats, k))
    d = ClassHeadD(c, k, image_size=size, ndf=ndf, norm=norm, convs_per_block=convs)
    assert count_parameters(d) == expected


def test_the_condition_changes_the_generated_image() -> None:
    torch.manual_seed(0)
    g = ClassDCGAN(Z, K, ngf=8).eval()
    z = _z(1).expand(K, Z)
    with torch.no_grad():
        out = g(z, torch.eye(K))
        again = g(z, torch.eye(K))
    assert torch.equal(out, again)                                  # deterministic for fixed (z, c)
    diffs = (out[1:] - out[:1]).flatten(1).abs().amax(dim=1)
    assert (diffs > 1e-6).all()                                     # every class differs from class 0


@pytest.mark.parametrize("norm", NORM_KINDS)
def test_gradients_reach_every_parameter_from_both_heads(norm: str) -> None:
    torch.manual_seed(0)
    g = ClassDCGAN(Z, K, ngf=8, norm=norm)
    d = ClassHeadD(1, K, ndf=8, norm=norm)
    labels = torch.tensor([1, 4, 4, 9])
    out = d(g(_z(4), _onehot(labels.tolist())))
    loss = (nn.functional.binary_cross_entropy_with_logits(out["logits"], torch.ones(4, 1))
            + nn.functional.cross_entropy(out["cls"], labels))
    loss.backward()
    for net in (g, d):
        for name, p in net.named_parameters():
            assert p.grad is not None and p.grad.abs().sum() > 0, f"{type(net).__name__}.{name} got no gradient"
    # each head alone reaches the shared trunk
    for head in ("logits", "cls"):
        d.zero_grad(set_to_none=True)
        d(_images(4, 28))[head].sum().backward()
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in d.trunk.parameters())


def test_batch_norm_d_depends_on_the_batch_instance_norm_does_not() -> None:
    """The paper's mixed-batch training: with batch norm in D a sample's logits depend on its batch mates."""
    img = _images(1, 28, seed=1)
    batch_a = torch.cat([img, _images(3, 28, seed=2)])
    batch_b = torch.cat([img, _images(3, 28, seed=3) * 0.2])
    for norm, depends in (("batch", True), ("instance", False), ("none", False)):
        torch.manual_seed(0)
        d = ClassHeadD(1, K, ndf=8, norm=norm).train()
        with torch.no_grad():
            a, b = d(batch_a), d(batch_b)
        for key in ("logits", "cls"):
            same = torch.allclose(a[key][0], b[key][0], atol=1e-6)
            assert same is not depends, f"{norm}: {key}"
    d = ClassHeadD(1, K, ndf=8, norm="batch").eval()               # eval mode: running statistics
    with torch.no_grad():
        assert torch.allclose(d(batch_a)["logits"][0], d(batch_b)["logits"][0], atol=1e-6)


@pytest.mark.parametrize("kwargs", [
    {"image_size": 30}, {"image_size": 0}, {"image_size": -8}, {"image_size": 2}, {"ngf": 0},
    {"convs_per_block": 0}, {"z_dim": 0}, {"num_classes": 0}, {"norm": "group"},
])
def test_generator_bad_arguments_are_one_line_config_errors(kwargs: dict) -> None:
    args = {"z_dim": Z, "num_classes": K, **kwargs}
    with pytest.raises(ConfigError) as e:
        ClassDCGAN(args.pop("z_dim"), args.pop("num_classes"), **args)
    assert "\n" not in str(e.value) and str(e.value)


@pytest.mark.parametrize("kwargs", [
    {"image_size": 30}, {"image_size": 0}, {"ndf": 0}, {"convs_per_block": 0}, {"in_channels": 0},
    {"num_classes": 0}, {"norm": "layer"},
])
def test_discriminator_bad_arguments_are_one_line_config_errors(kwargs: dict) -> None:
    args = {"in_channels": 1, "num_classes": K, **kwargs}
    with pytest.raises(ConfigError) as e:
        ClassHeadD(args.pop("in_channels"), args.pop("num_classes"), **args)
    assert "\n" not in str(e.value) and str(e.value)


def test_mismatched_inputs_are_one_line_config_errors() -> None:
    g = ClassDCGAN(Z, K, ngf=4)
    d = ClassHeadD(1, K, ndf=4)
    for bad in (lambda: g(_z(2), _onehot([0, 1], K + 1)), lambda: g(_z(2), _onehot([0, 1, 2])),
                lambda: d(_images(2, 32)), lambda: d(_images(2, 28, c=3))):
        with pytest.raises(ConfigError) as e:
            bad()
        assert "\n" not in str(e.value)


def test_listing_signature_still_builds() -> None:
    """``bench list`` counts parameters with ``factory(3, 3, image_size=256)``: in_channels=3, 3 classes."""
    d = DISCRIMINATORS.get("class-heads")(3, 3, image_size=256)
    assert d.cls.out_features == 3 and d.adv.in_features == 4 * 64 * 64 * 64
