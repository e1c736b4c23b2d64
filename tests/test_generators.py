"""The pix2pix U-Net generator, and the shared init / spectral-norm / counting helpers."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

from bench.errors import ConfigError
from bench.registry import GENERATORS, build
from methods.generators.unet import UNetGenerator
from bench.nets import (LINEAR_LAYERS, count_parameters, has_spectral_norm, init_weights,
                          spectral_norm_all)


def _x(size: int, c: int = 3, n: int = 2, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, c, size, size, generator=g) * 2 - 1


def test_registered_as_unet() -> None:
    g = build(GENERATORS, "unet", 3, 1, image_size=32, ngf=16)
    assert isinstance(g, UNetGenerator)


@pytest.mark.parametrize("size,downs", [(32, 5), (64, 6), (128, 7), (256, 8)])
def test_output_shape_and_tanh_range(size: int, downs: int) -> None:
    torch.manual_seed(0)
    g = UNetGenerator(3, 1, image_size=size, ngf=16)
    assert g.num_downs == downs                   # log2(image_size), capped at 8
    out = g(_x(size))
    assert out.shape == (2, 1, size, size)
    assert torch.isfinite(out).all() and out.abs().max() <= 1.0
    assert isinstance(g.decoder[-1][-1], nn.Tanh)


def test_num_downs_is_capped_at_8_and_512_works() -> None:
    g = UNetGenerator(3, 3, image_size=512, ngf=8)
    assert g.num_downs == 8
    assert g(_x(512, n=1)).shape == (1, 3, 512, 512)


def test_parameter_count_matches_pix2pix_unet_256() -> None:
    # pix2pix unet_256, BatchNorm: convs without bias except the output convT; 4x4 kernels
    def conv(i: int, o: int) -> int:
        return i * o * 16

    enc = conv(3, 64) + conv(64, 128) + conv(128, 256) + conv(256, 512) + 4 * conv(512, 512)
    enc_norm = 2 * (128 + 256 + 512 + 512 + 512 + 512)     # no norm on the first and innermost
    dec = (conv(512, 512) + 3 * conv(1024, 512) + conv(1024, 256) + conv(512, 128) + conv(256, 64)
           + conv(128, 3) + 3)
    dec_norm = 2 * (512 + 3 * 512 + 256 + 128 + 64)
    expected = enc + enc_norm + dec + dec_norm
    g = UNetGenerator(3, 3, image_size=256, ngf=64)
    assert count_parameters(g) == expected == 54_413_955
    assert round(count_parameters(g) / 1e6, 3) == 54.414    # pix2pix prints "54.414 M" for unet_256


def test_encoder_widths_follow_c64_c128_c256_c512x5() -> None:
    g = UNetGenerator(3, 3, image_size=256, ngf=64)
    widths = [next(m for m in b if isinstance(m, nn.Conv2d)).out_channels for b in g.encoder]
    assert widths == [64, 128, 256, 512, 512, 512, 512, 512]
    norms = [any(isinstance(m, nn.BatchNorm2d) for m in b) for b in g.encoder]
    assert norms == [False] + [True] * 6 + [False]
    assert isinstance(g.encoder[1][0], nn.LeakyReLU) and g.encoder[1][0].negative_slope == 0.2
    assert all(isinstance(b[0], nn.ReLU) for b in g.decoder)


def test_skip_connections_matter() -> None:
    torch.manual_seed(0)
    g = UNetGenerator(3, 3, image_size=32, ngf=16).eval()
    x = _x(32)
    with torch.no_grad():
        ref = g(x)

    def zero_skip(module: nn.Module, args: tuple[torch.Tensor]) -> tuple[torch.Tensor]:
        (t,) = args
        t = t.clone()
        t[:, t.shape[1] // 2:] = 0                # decoder input is cat(decoded, skip)
        return (t,)

    handles = [b.register_forward_pre_hook(zero_skip) for b in g.decoder[1:]]
    try:
        with torch.no_grad():
            cut = g(x)
    finally:
        for h in handles:
            h.remove()
    assert (cut - ref).abs().max() > 1e-3
    with torch.no_grad():
        torch.testing.assert_close(g(x), ref)     # hooks removed: the same function again


def test_dropout_only_in_train_mode() -> None:
    torch.manual_seed(0)
    g = UNetGenerator(3, 3, image_size=64, ngf=16)
    drops = [m for m in g.modules() if isinstance(m, nn.Dropout)]
    assert len(drops) == 3 and all(d.p == 0.5 for d in drops)
    # on the first three decoder blocks after the innermost, as in pix2pix
    assert [any(isinstance(m, nn.Dropout) for m in b) for b in g.decoder] == [False, True, True, True,
                                                                              False, False]
    x = _x(64)
    with torch.no_grad():
        g.train()
        a, b = g(x), g(x)
        assert (a - b).abs().max() > 1e-4          # BatchNorm uses batch statistics: only dropout differs
        g.eval()
        torch.testing.assert_close(g(x), g(x), rtol=0, atol=0)


def test_no_dropout_when_zero() -> None:
    g = UNetGenerator(3, 3, image_size=32, ngf=16, dropout=0.0).train()
    assert not any(isinstance(m, nn.Dropout) for m in g.modules())
    x = _x(32)
    with torch.no_grad():
        torch.testing.assert_close(g(x), g(x), rtol=0, atol=0)


def _effective_matrix(m: nn.Module) -> torch.Tensor:
    w = m.weight.detach()
    if isinstance(m, nn.ConvTranspose2d):
        w = w.transpose(0, 1)                     # spectral norm works on dim 1 of a transposed conv
    return w.reshape(w.shape[0], -1)


def test_spectral_norm_when_asked() -> None:
    torch.manual_seed(0)
    plain = UNetGenerator(3, 3, image_size=32, ngf=16)
    assert not any(parametrize.is_parametrized(m) for m in plain.modules())
    g = UNetGenerator(3, 3, image_size=32, ngf=16, spectral_norm=True)
    layers = [m for m in g.modules() if isinstance(m, LINEAR_LAYERS)]
    assert len(layers) == 10 and all(has_spectral_norm(m) for m in layers)
    assert count_parameters(g) == count_parameters(plain)
    g.train()
    with torch.no_grad():
        g(_x(32))
        for m in layers:                          # in train mode each weight access is one power iteration
            for _ in range(40):
                m.weight
    g.eval()
    for m in layers:
        sigma = torch.linalg.matrix_norm(_effective_matrix(m), ord=2).item()
        assert 0.99 <= sigma <= 1.03, (m, sigma)


def test_init_gives_normal_0_002_weights_and_unit_norm_scales() -> None:
    torch.manual_seed(0)
    g = UNetGenerator(3, 3, image_size=256, ngf=16)
    big = g.encoder[4][1].weight.detach()           # 128 x 128 x 4 x 4 conv
    assert big.numel() > 200_000
    assert abs(big.mean().item()) < 1e-3 and abs(big.std().item() - 0.02) < 5e-4
    scales = torch.cat([m.weight.detach() for m in g.modules() if isinstance(m, nn.BatchNorm2d)])
    assert abs(scales.mean().item() - 1.0) < 3e-3 and abs(scales.std().item() - 0.02) < 3e-3
    out_bias = g.decoder[-1][1].bias
    assert torch.count_nonzero(out_bias) == 0
    shifts = torch.cat([m.bias.detach() for m in g.modules() if isinstance(m, nn.BatchNorm2d)])
    assert torch.count_nonzero(shifts) == 0


def test_init_reaches_the_stored_weight_under_spectral_norm() -> None:
    torch.manual_seed(0)
    lin = spectral_norm_all(nn.Linear(512, 512))
    init_weights(lin, std=0.05)
    w = lin.parametrizations.weight.original.detach()
    assert abs(w.std().item() - 0.05) < 1e-3 and torch.count_nonzero(lin.bias) == 0
    spectral_norm_all(lin)                         # idempotent: no second parametrisation
    assert len(lin.parametrizations.weight) == 1


def test_count_parameters_by_hand() -> None:
    m = nn.Sequential(nn.Linear(10, 5), nn.Linear(5, 2, bias=False))
    assert count_parameters(m) == 10 * 5 + 5 + 5 * 2
    m[0].weight.requires_grad_(False)
    assert count_parameters(m, trainable_only=True) == 5 + 5 * 2


def test_bad_sizes_are_config_errors() -> None:
    with pytest.raises(ConfigError):
        UNetGenerator(3, 3, image_size=96, num_downs=8)  # 96 is not divisible by 256
    g = UNetGenerator(3, 3, image_size=32, ngf=8)
    with pytest.raises(ConfigError, match="divisible"):
        g(_x(48))
    with pytest.raises(ConfigError, match="norm"):
        UNetGenerator(3, 3, image_size=32, ngf=8, norm="group")


def test_instance_norm_variant_has_biases() -> None:
    g = UNetGenerator(3, 3, image_size=32, ngf=8, norm="instance")
    convs = [m for m in g.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    assert all(m.bias is not None for m in convs)
    assert g(_x(32)).shape == (2, 3, 32, 32)
