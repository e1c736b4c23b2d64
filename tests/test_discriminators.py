"""The image-conditioned discriminators of the fusion-discriminator paper (papers.md A, rows 1-6)."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize
from torchvision.models.vgg import cfgs, make_layers

from bench.errors import ConfigError
from bench.registry import DISCRIMINATORS, build
from methods.discriminators.fusion4 import FusionTrunk
from methods.discriminators.patchgan import PatchGAN, patch_map_size
from methods.discriminators.projection import ProjectionSN
from bench.nets import LINEAR_LAYERS, count_parameters, has_spectral_norm

PATCH = ("patchgan", "patchgan-sn", "fusion4-sn", "projection-sn")
VGG = ("vgg16-concat-sn", "vgg16-fusion-sn")
SN = ("patchgan-sn", "fusion4-sn", "projection-sn", "vgg16-concat-sn", "vgg16-fusion-sn")
CONDITIONED = ("fusion4-sn", "projection-sn", "vgg16-fusion-sn", "patchgan", "vgg16-concat-sn")

# logit-map side, worked out by hand from the layer specs:
# PatchGAN family: 4x4 convs with padding 1, strides 2,2,2,1,1 -> s/2, s/4, s/8, s/8 - 1, s/8 - 2
# VGG16 family: four 2x2 max-pools, 3x3 head with padding 1 -> s/16
EXPECTED_SIDE = {
    **{n: {64: 6, 128: 14, 256: 30} for n in PATCH},
    **{n: {64: 4, 128: 8, 256: 16} for n in VGG},
}


def _pair(size: int, xc: int = 3, yc: int = 3, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(2, xc, size, size, generator=g) * 2 - 1,
            torch.rand(2, yc, size, size, generator=g) * 2 - 1)


def test_every_paper_row_is_registered() -> None:
    assert set(PATCH + VGG) <= set(DISCRIMINATORS.names())


@pytest.mark.parametrize("name", PATCH + VGG)
@pytest.mark.parametrize("size", [64, 128, 256])
def test_logit_map_shape_and_finite(name: str, size: int) -> None:
    torch.manual_seed(0)
    d = build(DISCRIMINATORS, name, 3, 1, image_size=size, ndf=16)
    x, y = _pair(size, 3, 1)
    with torch.no_grad():
        out = d(x, y)
    side = EXPECTED_SIDE[name][size]
    assert out.shape == (2, 1, side, side)
    assert torch.isfinite(out).all()


def test_patchgan_default_width_gives_30x30_at_256() -> None:
    d = PatchGAN(3, 3, image_size=256)
    x, y = _pair(256)
    with torch.no_grad():
        out = d(x[:1], y[:1])
    assert out.shape == (1, 1, 30, 30)
    assert patch_map_size(256) == 30


def test_patchgan_parameter_count_matches_hand_formula_and_pix2pix() -> None:
    c_in, ndf = 6, 64

    def conv(i: int, o: int, bias: bool) -> int:
        return i * o * 16 + (o if bias else 0)

    expected = (conv(c_in, ndf, True)                                 # C64, no norm, bias
                + conv(ndf, 2 * ndf, False) + 2 * 2 * ndf              # C128 + BatchNorm (no conv bias)
                + conv(2 * ndf, 4 * ndf, False) + 2 * 4 * ndf          # C256 + BatchNorm
                + conv(4 * ndf, 8 * ndf, False) + 2 * 8 * ndf          # C512 s1 + BatchNorm
                + conv(8 * ndf, 1, True))                              # head
    d = PatchGAN(3, 3, image_size=256, ndf=ndf)
    assert count_parameters(d) == expected == 2_768_705
    assert round(count_parameters(d) / 1e6, 3) == 2.769               # pix2pix prints "2.769 M"
    # the SN variant has the same parameters (the power-iteration vectors are buffers)
    assert count_parameters(build(DISCRIMINATORS, "patchgan-sn", 3, 3)) == expected


def test_vgg16_trunk_matches_torchvision_vgg16_features() -> None:
    reference = make_layers(cfgs["D"])            # torchvision's VGG16 conv part (ends with a 5th pool)
    d = build(DISCRIMINATORS, "vgg16-concat-sn", 1, 2, image_size=64, ndf=64)
    ours = [tuple(m.weight.shape) for m in d.trunk.modules() if isinstance(m, nn.Conv2d)]
    theirs = [tuple(m.weight.shape) for m in reference.modules() if isinstance(m, nn.Conv2d)]
    assert ours == theirs and len(ours) == 13
    assert count_parameters(d.trunk) == count_parameters(reference) == 14_714_688
    pools = sum(isinstance(m, nn.MaxPool2d) for m in d.trunk.modules())
    assert pools == 4                             # between the five blocks, no fifth pool


def _effective_matrix(m: nn.Module) -> torch.Tensor:
    w = m.weight.detach()
    if isinstance(m, (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)):
        w = w.transpose(0, 1)                     # spectral norm works on dim 1 of a transposed conv
    return w.reshape(w.shape[0], -1)


@pytest.mark.parametrize("name", SN)
def test_spectral_norm_bounds_every_weight(name: str) -> None:
    torch.manual_seed(0)
    d = build(DISCRIMINATORS, name, 3, 3, image_size=64, ndf=16)
    x, y = _pair(64)
    layers = [m for m in d.modules() if isinstance(m, LINEAR_LAYERS)]
    assert layers and all(has_spectral_norm(m) for m in layers)
    d.train()
    with torch.no_grad():
        d(x, y)
        for m in layers:                          # in train mode each weight access is one power iteration
            for _ in range(40):
                m.weight
    d.eval()
    for m in layers:
        sigma = torch.linalg.matrix_norm(_effective_matrix(m), ord=2).item()
        assert 0.99 <= sigma <= 1.03, (m, sigma)


def test_plain_patchgan_has_no_spectral_norm() -> None:
    d = build(DISCRIMINATORS, "patchgan", 3, 3, image_size=64, ndf=16)
    assert not any(parametrize.is_parametrized(m) for m in d.modules())
    assert not any("parametrizations" in n for n, _ in d.named_parameters())


@pytest.mark.parametrize("name", CONDITIONED)
def test_output_depends_on_condition_and_output(name: str) -> None:
    torch.manual_seed(0)
    d = build(DISCRIMINATORS, name, 3, 3, image_size=64, ndf=16).eval()
    x1, y1 = _pair(64, seed=1)
    x2, y2 = _pair(64, seed=2)
    with torch.no_grad():
        base = d(x1, y1)
        assert torch.equal(base, d(x1, y1))       # deterministic in eval mode
        assert (d(x2, y1) - base).abs().max() > 1e-6, "ignores the condition x"
        assert (d(x1, y2) - base).abs().max() > 1e-6, "ignores the output y"


class _Scale(nn.Module):
    def __init__(self, k: float):
        super().__init__()
        self.k = k

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return self.k * t


def test_fusion_rule_on_hand_computed_case() -> None:
    # psi_l = 2*, phi_l = 3*: x1 = 2x, y1 = 3y + 2x; x2 = 4x, y2 = 3*y1 + x2 = 9y + 6x + 4x
    trunk = FusionTrunk([_Scale(2), _Scale(2)], [_Scale(3), _Scale(3)])
    x, y = torch.randn(2, 4), torch.randn(2, 4)
    torch.testing.assert_close(trunk(x, y), 9 * y + 10 * x)


def test_projection_term_is_linear_in_x_and_constant_over_the_map() -> None:
    torch.manual_seed(0)
    d = ProjectionSN(3, 3, image_size=64, ndf=16).eval()
    x, y = _pair(64)
    with torch.no_grad():
        uncond = d(torch.zeros_like(x), y)        # x = 0 leaves the unconditional head alone
        torch.testing.assert_close(uncond, d.head(d.trunk(y)))
        delta = d(x, y) - uncond
        # one scalar per image, broadcast over the patch map
        torch.testing.assert_close(delta, delta[:, :, :1, :1].expand_as(delta))
        torch.testing.assert_close(d(2 * x, y) - uncond, 2 * delta, rtol=1e-4, atol=1e-5)
        # hand formula on a condition constant per channel (its resize is itself, whatever the mode):
        # proj = sum_c a_c * sum_ij conv(h)_c / sqrt(C * H * W)
        a = torch.tensor([0.5, -1.0, 0.25])
        xc = a.view(1, 3, 1, 1).expand(2, 3, 64, 64)
        v = d.embed(d.trunk(y))
        c, hh, ww = v.shape[1:]
        manual = (v.sum(dim=(2, 3)) * a).sum(1) / (c * hh * ww) ** 0.5
        torch.testing.assert_close((d(xc, y) - uncond)[:, 0, 0, 0], manual, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", PATCH + VGG)
def test_too_small_images_are_a_config_error(name: str) -> None:
    with pytest.raises(ConfigError):
        build(DISCRIMINATORS, name, 3, 3, image_size=8, ndf=16)


def test_unknown_norm_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="norm"):
        PatchGAN(3, 3, image_size=64, ndf=16, norm="layer")
