"""pix2pixHD's global / coarse-to-fine generators and the SPADE generator (issue 25): shapes and range at 32 / 64 /
128 px, parameter counts at the reference sizes counted by hand from the architectures, SPADE's normalisation and
its spatial reading of the map, the pix2pix G-slot check, and two pix2pix training steps with each."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from bench.build import build_method
from bench.contracts import TrainContext
from bench.data.base import DatasetInfo
from bench.errors import ConfigError
from bench.nets import count_parameters, has_spectral_norm
from bench.registry import GENERATORS, TASKS, build
from bench.resolve import check_component_options
from methods.generators.pix2pixhd import (Pix2PixHDGenerator, Pix2PixHDGlobalGenerator, default_n_downsampling)
from methods.generators.spade import SPADE, SPADEGenerator, SPADEResBlock
from methods.pix2pix import Pix2Pix

NAMES = ("pix2pixhd-global", "pix2pixhd", "spade")


def _x(size: int, c: int = 3, n: int = 2, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, c, size, size, generator=g) * 2 - 1


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("size", [32, 64, 128])
def test_shape_and_tanh_range(name: str, size: int) -> None:
    torch.manual_seed(0)
    g = build(GENERATORS, name, 3, 2, image_size=size, ngf=4, spectral_norm=False, dropout=0.5)
    out = g(_x(size))
    assert out.shape == (2, 2, size, size)
    assert torch.isfinite(out).all() and out.abs().max() <= 1.0
    assert out.std() > 0


def test_size_rules() -> None:
    # n_downsampling = min(4, floor(log2(size)) - 3), at least 1; pix2pixHD's G1 runs at half the size
    assert [default_n_downsampling(s) for s in (16, 32, 64, 128, 256, 1024)] == [1, 2, 3, 4, 4, 4]
    assert Pix2PixHDGlobalGenerator(3, 3, image_size=64, ngf=2).n_downsampling == 3
    assert Pix2PixHDGenerator(3, 3, image_size=64, ngf=2).n_downsampling == 2
    assert Pix2PixHDGenerator(3, 3, image_size=1024, ngf=1, n_blocks=0, n_blocks_local=0).n_downsampling == 4
    assert SPADEGenerator(3, 3, image_size=32, ngf=2).n_up == 4
    assert SPADEGenerator(3, 3, image_size=64, ngf=2).n_up == 5
    with pytest.raises(ConfigError):
        Pix2PixHDGlobalGenerator(3, 3, image_size=36, ngf=2, n_downsampling=3)
    with pytest.raises(ConfigError):
        SPADEGenerator(3, 3, image_size=48, ngf=2, n_up=5)
    g = SPADEGenerator(3, 3, image_size=32, ngf=2)
    with pytest.raises(ConfigError):
        g(_x(40))


# ---- parameter counts, by hand --------------------------------------------------------------------------------------

def _conv(i: int, o: int, k: int, bias: bool = True) -> int:
    return i * o * k * k + (o if bias else 0)


def _hd_global_features(cin: int, ngf: int, downs: int, blocks: int) -> int:
    n = _conv(cin, ngf, 7)
    w = ngf
    for _ in range(downs):
        n += _conv(w, 2 * w, 3)
        w *= 2
    n += blocks * 2 * _conv(w, w, 3)
    for _ in range(downs):
        n += _conv(w, w // 2, 3)                  # a transposed conv: the same count
        w //= 2
    return n                                      # instance norm without affine parameters: none


def test_pix2pixhd_global_count_at_the_reference_size() -> None:
    expected = _hd_global_features(3, 64, 4, 9) + _conv(64, 3, 7)
    assert expected == 182_443_267                # hand count (3 -> 3 channels); not checked against a published figure
    with torch.device("meta"):
        g = Pix2PixHDGlobalGenerator(3, 3, image_size=1024, ngf=64, n_downsampling=4, n_blocks=9)
    assert count_parameters(g) == expected


def test_pix2pixhd_local_count_at_the_reference_size() -> None:
    # --netG local --ngf 32: G1 is a width-64 global generator without its last conv; G2 front, 3 blocks, back
    ngf = 32
    g1 = _hd_global_features(3, 2 * ngf, 4, 9)
    g2 = _conv(3, ngf, 7) + _conv(ngf, 2 * ngf, 3) + 3 * 2 * _conv(2 * ngf, 2 * ngf, 3) + _conv(2 * ngf, ngf, 3) \
        + _conv(ngf, 3, 7)
    expected = g1 + g2
    assert expected == 182_443_267 - _conv(64, 3, 7) + 267_971
    with torch.device("meta"):
        g = Pix2PixHDGenerator(3, 3, image_size=1024, ngf=ngf, n_downsampling=4)
    assert count_parameters(g) == expected


def _spade(c: int, label: int, nh: int) -> int:
    return _conv(label, nh, 3) + 2 * _conv(nh, c, 3)


def _spade_block(fin: int, fout: int, label: int, nh: int) -> int:
    fm = min(fin, fout)
    n = _conv(fin, fm, 3) + _conv(fm, fout, 3) + _spade(fin, label, nh) + _spade(fm, label, nh)
    if fin != fout:
        n += _conv(fin, fout, 1, bias=False) + _spade(fin, label, nh)
    return n


def test_spade_count_at_the_reference_size() -> None:
    # ngf 64, nhidden 128, 'normal' (5 ups), label_nc 3 (the colour map) -> 3 channels
    nf, nh, label = 64, 128, 3
    expected = (_conv(label, 16 * nf, 3) + 3 * _spade_block(16 * nf, 16 * nf, label, nh)
                + sum(_spade_block(16 * nf // 2 ** i, 16 * nf // 2 ** (i + 1), label, nh) for i in range(4))
                + _conv(nf, 3, 3))
    with torch.device("meta"):
        g = SPADEGenerator(3, 3, image_size=256, ngf=nf)
    assert g.n_up == 5
    assert count_parameters(g) == expected
    # block spectral norm as the reference (conv_0, conv_1, conv_s), none on SPADE's own convs
    blocks = [m for m in g.modules() if isinstance(m, SPADEResBlock)]
    assert len(blocks) == 7 and all(has_spectral_norm(b.conv_0) and has_spectral_norm(b.conv_1) for b in blocks)
    assert all(has_spectral_norm(b.conv_s) for b in blocks if b.learned_shortcut)
    spade_convs = [c for m in g.modules() if isinstance(m, SPADE) for c in (m.mlp_shared[0], m.mlp_gamma, m.mlp_beta)]
    assert len(spade_convs) == 3 * (7 * 2 + 4) and not any(has_spectral_norm(c) for c in spade_convs)
    assert not has_spectral_norm(g.fc) and not has_spectral_norm(g.conv_img)


@pytest.mark.parametrize("name", NAMES)
def test_spectral_norm_option_wraps_every_conv(name: str) -> None:
    torch.manual_seed(0)
    g = build(GENERATORS, name, 3, 3, image_size=32, ngf=4, spectral_norm=True, dropout=0.0)
    convs = [m for m in g.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    assert convs and all(has_spectral_norm(c) for c in convs)
    assert g(_x(32)).shape == (2, 3, 32, 32)


# ---- SPADE normalisation --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("norm", ["batch", "instance"])
def test_spade_with_zero_gamma_beta_is_the_param_free_norm(norm: str) -> None:
    torch.manual_seed(0)
    s = SPADE(8, 3, nhidden=16, norm=norm)
    for conv in (s.mlp_gamma, s.mlp_beta):
        nn.init.zeros_(conv.weight)
        nn.init.zeros_(conv.bias)
    x, seg = torch.randn(2, 8, 16, 16) * 3 + 1, _x(32)
    ref = (x - x.mean(dim=(0, 2, 3) if norm == "batch" else (2, 3), keepdim=True)) / torch.sqrt(
        x.var(dim=(0, 2, 3) if norm == "batch" else (2, 3), unbiased=False, keepdim=True) + 1e-5)
    torch.testing.assert_close(s(x, seg), ref, rtol=1e-4, atol=1e-4)


def test_spade_reads_the_map_where_it_changes() -> None:
    torch.manual_seed(0)
    s = SPADE(4, 3, nhidden=8, norm="instance").eval()
    x, seg = torch.randn(1, 4, 32, 32), _x(32, n=1)
    other = seg.clone()
    other[..., 8:16, 8:16] = -seg[..., 8:16, 8:16]          # one 8 x 8 region
    with torch.no_grad():
        a, b, c = s(x, seg), s(x, other), s(x, _x(32, n=1, seed=5))
    assert (a - c).abs().mean() > 1e-3                       # another map, another output
    diff = (a - b).abs().sum(dim=1)[0]
    inside = torch.zeros(32, 32, dtype=torch.bool)
    inside[6:18, 6:18] = True                                # the region dilated by two 3x3 convs
    assert diff[8:16, 8:16].mean() > 1e-3
    assert diff[~inside].max() == 0                          # nothing outside the receptive field moves


def test_spade_generator_output_follows_the_map() -> None:
    torch.manual_seed(0)
    g = SPADEGenerator(3, 3, image_size=32, ngf=4, norm="instance").eval()
    seg = _x(32, n=1)
    other = seg.clone()
    other[..., 20:28, 20:28] = -seg[..., 20:28, 20:28]
    with torch.no_grad():
        a, b = g(seg), g(other)
    diff = (a - b).abs().sum(dim=1)[0]
    near = torch.zeros(32, 32, dtype=torch.bool)
    near[16:32, 16:32] = True
    assert diff[near].mean() > 3 * diff[~near].mean()        # mainly in that region


# ---- the pix2pix G slot, and training -------------------------------------------------------------------------------

@pytest.mark.parametrize("name", NAMES)
def test_slot_check_passes(name: str) -> None:
    factory = GENERATORS.get(name)
    check_component_options(factory, Pix2Pix.slots["G"], {}, where="test", component=name, method="pix2pix")
    opt = {"pix2pixhd-global": {"n_blocks": 2}, "pix2pixhd": {"n_blocks_local": 1}, "spade": {"norm": "instance"}}
    check_component_options(factory, Pix2Pix.slots["G"], opt[name], where="test", component=name, method="pix2pix")
    with pytest.raises(ConfigError):
        check_component_options(factory, Pix2Pix.slots["G"], {"ngf": 8}, where="test", component=name,
                                method="pix2pix")


@pytest.mark.parametrize("name", NAMES)
def test_two_pix2pix_steps(name: str) -> None:
    info = DatasetInfo(name="b", tasks=("labels2photo",), provides=("photo", "label_rgb"))
    task = TASKS.get("labels2photo").bind(info)
    ctx = TrainContext(torch.device("cpu"), image_size=32, total_steps=2)
    torch.manual_seed(0)
    g_opts = {"name": name, **({"n_blocks": 2} if name.startswith("pix2pixhd") else {})}
    ad = build_method("pix2pix", {"ngf": 4, "ndf": 4}, task, ctx, {"G": g_opts, "D": {"name": "patchgan"}},
                      image_size=32)
    assert type(ad.G) is type(GENERATORS.get(name)(3, 3, image_size=32, ngf=2, spectral_norm=False, dropout=0.0))
    before = {k: v.detach().clone() for k, v in ad.G.state_dict().items()}
    g = torch.Generator().manual_seed(1)
    for step in range(2):
        batch = {"photo": torch.rand(2, 3, 32, 32, generator=g) * 2 - 1,
                 "label_rgb": torch.rand(2, 3, 32, 32, generator=g) * 2 - 1}
        logs = ad.train_step(batch, step, update_g=True)
        values = [torch.as_tensor(v) for v in logs.values() if isinstance(v, (float, torch.Tensor))]
        assert values and all(torch.isfinite(v).all() for v in values)
    after = ad.G.state_dict()
    assert any((after[k] - before[k]).abs().max() > 0 for k in before if before[k].is_floating_point())


# ------------------------------------------------------------------------- the pix2pixhd-cityscapes suite
def test_pix2pixhd_cityscapes_rows_and_claims() -> None:
    from bench.config import load_suite
    from bench.registry import SUITES
    s = load_suite(SUITES.get("pix2pixhd-cityscapes"))
    rows = {r.name: r for r in s.rows}
    assert list(rows) == ["pix2pix", "pix2pixHD", "SPADE", "GT / Oracle"]
    assert (rows["pix2pixHD"].generator, rows["pix2pixHD"].discriminator) == ("pix2pixhd", "multiscale-patchgan")
    assert rows["pix2pixHD"].options["loss"] == "lsgan" and rows["SPADE"].options["loss"] == "hinge"
    # pix2pixHD's lambda_feat 10 x layer weight 4 / (3 + 1) summed over 4 layers = 40 x the bench's layer mean
    assert rows["SPADE"].options["regularizers"] == rows["pix2pixHD"].options["regularizers"] == \
        {"feature-matching": 40.0}
    # the published Table 1 (pixel accuracy as a fraction)
    assert rows["pix2pixHD"].published == {"labels2photo/mean_iou": 0.6389, "labels2photo/pixel_acc": 0.8378}
    assert rows["GT / Oracle"].kind == "oracle" and not rows["SPADE"].published
    orders = [tuple(c.order) for c in s.claims]
    assert orders == [("pix2pixHD", "pix2pix"), ("pix2pixHD", "pix2pix"), ("SPADE", "pix2pixHD"),
                      ("GT / Oracle", "pix2pixHD")]
    assert s.suite.paper_steps == 595000 and {"smoke", "cpu", "short", "full"} <= set(s.profiles)


@pytest.mark.slow
def test_pix2pixhd_cityscapes_smoke_profile(tmp_path) -> None:
    from suite_helpers import run_smoke
    out = tmp_path / "hd"
    board = run_smoke("pix2pixhd-cityscapes", out, rows=4, claims=4)
    assert set(board["row"]) == {"pix2pix", "pix2pixHD", "SPADE", "GT / Oracle"}
    for row in ("pix2pixhd", "spade"):      # feature matching reached G in both multi-scale rows
        header = (out / "runs" / row / "seed0" / "labels2photo" / "scalars.csv").read_text().splitlines()[0]
        assert "loss_G_feature-matching" in header
