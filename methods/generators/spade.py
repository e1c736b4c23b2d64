"""SPADE: spatially-adaptive normalisation and the SPADE generator (Park et al., CVPR 2019, "GauGAN").

Source: the SPADE paper (section 3, eq. 1; appendix A, figures 10-12: SPADE = param-free norm then gamma / beta from
the resized segmentation map by a shared 3x3 conv + ReLU and two 3x3 convs; SPADE ResBlk with a learned shortcut
when the widths differ; the generator from a downsampled map) and the layout of its reference code
(``SPADE``, ``SPADEResnetBlock``, ``SPADEGenerator`` with ``use_vae=False``): written from that description, not
copied. The image encoder / VAE path (multi-modal synthesis) is not built.

Assumption: SPADE modulates from the task's ``x`` as it is, here the 3-channel colour label map in [-1, 1] of
labels2photo, instead of the one-hot semantic map of the paper (a one-hot map needs the palette decode, which the
datasets here do not provide). ``in_channels`` is the map's channel count (``label_nc`` of the reference).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm as _sn

from bench.errors import ConfigError
from bench.nets import init_weights, spectral_norm_all

PARAM_FREE_NORMS = ("batch", "instance")
N_UP_RANGE = (4, 7)


def default_n_up(image_size: int) -> int:
    """The reference's ``normal`` setting (5 upsamplings: a 256 px image from 8 x 8) at 64 px and above; 4 below,
    so 32 px starts from 2 x 2 (a 1 x 1 start would leave nothing for the param-free norm to normalise)."""
    return 5 if image_size >= 64 else 4


def _param_free_norm(kind: str, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels, affine=False)       # the reference's syncbatch on one device
    if kind == "instance":
        return nn.InstanceNorm2d(channels, affine=False, track_running_stats=False)
    raise ConfigError(f"SPADE: unknown param-free norm '{kind}'; choose one of: {', '.join(PARAM_FREE_NORMS)}")


class SPADE(nn.Module):
    """``forward(x, segmap) = norm(x) * (1 + gamma) + beta`` with ``norm`` param-free (batch or instance, no affine)
    and ``gamma``, ``beta`` (``norm_nc`` channels each, per pixel) = conv3x3(h), conv3x3(h) of
    ``h = ReLU(conv3x3(segmap resized to x's size, nearest))`` with ``nhidden`` channels."""

    def __init__(self, norm_nc: int, label_nc: int, *, nhidden: int = 128, norm: str = "batch", kernel_size: int = 3):
        super().__init__()
        self.param_free_norm = _param_free_norm(norm, norm_nc)
        pw = kernel_size // 2
        self.mlp_shared = nn.Sequential(nn.Conv2d(label_nc, nhidden, kernel_size, padding=pw), nn.ReLU())
        self.mlp_gamma = nn.Conv2d(nhidden, norm_nc, kernel_size, padding=pw)
        self.mlp_beta = nn.Conv2d(nhidden, norm_nc, kernel_size, padding=pw)

    def forward(self, x: torch.Tensor, segmap: torch.Tensor) -> torch.Tensor:
        normalized = self.param_free_norm(x)
        segmap = F.interpolate(segmap, size=x.shape[2:], mode="nearest")
        actv = self.mlp_shared(segmap)
        return normalized * (1 + self.mlp_gamma(actv)) + self.mlp_beta(actv)


class SPADEResBlock(nn.Module):
    """SPADE ResBlk(fin, fout): ``shortcut(x) + conv_1(lrelu(SPADE_1(conv_0(lrelu(SPADE_0(x, s))), s)))`` with
    ``fmiddle = min(fin, fout)``, 3x3 convs, LeakyReLU(0.2); the shortcut is ``x`` when ``fin == fout``, else the
    learned ``conv_s(SPADE_s(x, s))`` (1x1, no bias, no activation). ``block_spectral_norm`` puts spectral norm on
    conv_0, conv_1 and conv_s (the reference's default ``norm_G = spectralspadesyncbatch3x3``), not on the SPADE
    convs."""

    def __init__(self, fin: int, fout: int, label_nc: int, *, nhidden: int = 128, norm: str = "batch",
                 block_spectral_norm: bool = True):
        super().__init__()
        self.learned_shortcut = fin != fout
        fmiddle = min(fin, fout)
        self.conv_0 = nn.Conv2d(fin, fmiddle, 3, padding=1)
        self.conv_1 = nn.Conv2d(fmiddle, fout, 3, padding=1)
        self.norm_0 = SPADE(fin, label_nc, nhidden=nhidden, norm=norm)
        self.norm_1 = SPADE(fmiddle, label_nc, nhidden=nhidden, norm=norm)
        if self.learned_shortcut:
            self.conv_s = nn.Conv2d(fin, fout, 1, bias=False)
            self.norm_s = SPADE(fin, label_nc, nhidden=nhidden, norm=norm)
        self.block_spectral_norm = block_spectral_norm

    def apply_block_spectral_norm(self) -> None:
        """Wrap conv_0, conv_1 (and conv_s) in spectral norm; called by the generator after initialisation."""
        for conv in (self.conv_0, self.conv_1, getattr(self, "conv_s", None)):
            if conv is not None:
                _sn(conv)

    def forward(self, x: torch.Tensor, seg: torch.Tensor) -> torch.Tensor:
        x_s = self.conv_s(self.norm_s(x, seg)) if self.learned_shortcut else x
        dx = self.conv_0(F.leaky_relu(self.norm_0(x, seg), 0.2))
        dx = self.conv_1(F.leaky_relu(self.norm_1(dx, seg), 0.2))
        return x_s + dx


class SPADEGenerator(nn.Module):
    """The SPADE generator without the image encoder (the reference's ``use_vae=False``): ``forward(x) -> y`` in
    [-1, 1], the same spatial size as the segmentation map ``x``.

    ``x`` resized (nearest) to ``H / 2**n_up`` x ``W / 2**n_up``, a 3x3 conv -> 16 ngf; head_0 = ResBlk(16, 16),
    up, G_middle_0 = ResBlk(16, 16), [up if n_up >= 6], G_middle_1 = ResBlk(16, 16), then up + ResBlk for
    16 -> 8 -> 4 -> 2 -> 1 ngf [and up + ResBlk(ngf, ngf / 2) if n_up = 7], LeakyReLU(0.2), 3x3 conv ->
    ``out_channels``, tanh. Every ResBlk (:class:`SPADEResBlock`) is modulated by ``x``. Widths are in units of
    ``ngf`` (the pix2pix option), the SPADE hidden width is ``nhidden = 2 * ngf`` (the reference's 128 at ngf 64).

    ``n_up`` (upsamplings; the reference's ``num_upsampling_layers`` normal / more / most = 5 / 6 / 7) defaults to
    :func:`default_n_up`: 5 at 64 px and above, 4 below (4 drops the up between head_0 and G_middle_0: our
    reduction, not in the reference). The side must be divisible by ``2**n_up``.

    ``norm``: the param-free norm, "batch" (the reference's syncbatch; BatchNorm without affine parameters, with
    running statistics) or "instance". ``block_spectral_norm`` (default on, as the reference) wraps the ResBlk
    convs; ``spectral_norm=True`` (the pix2pix option) wraps every conv, SPADE's and the first / last included.
    ``dropout`` is accepted (pix2pix's G slot passes it) and ignored: SPADE's generator has none. Weights
    N(0, ``init_std``), biases 0, before spectral norm (the reference uses Xavier with gain 0.02).
    """

    def __init__(self, in_channels: int, out_channels: int, *, image_size: int = 256, ngf: int = 64,
                 spectral_norm: bool = False, dropout: float = 0.0, n_up: int | None = None, norm: str = "batch",
                 nhidden: int | None = None, block_spectral_norm: bool = True, init_std: float = 0.02):
        super().__init__()
        if in_channels < 1 or out_channels < 1 or ngf < 2:
            raise ConfigError("generator channels must be positive and ngf at least 2")
        n = default_n_up(image_size) if n_up is None else int(n_up)
        if not N_UP_RANGE[0] <= n <= N_UP_RANGE[1]:
            raise ConfigError(f"SPADE generator: n_up must be in {N_UP_RANGE[0]}..{N_UP_RANGE[1]}, got {n}")
        if image_size % (2 ** n):
            raise ConfigError(f"SPADE generator: {n} upsamplings need an image size divisible by {2 ** n} (got "
                              f"{image_size}); set n_up or change the image size")
        _param_free_norm(norm, 1)               # validates the name early
        self.n_up, self.image_size = n, image_size
        nf = ngf
        nh = 2 * ngf if nhidden is None else int(nhidden)
        kw = dict(nhidden=nh, norm=norm, block_spectral_norm=block_spectral_norm)
        self.fc = nn.Conv2d(in_channels, 16 * nf, 3, padding=1)
        self.head_0 = SPADEResBlock(16 * nf, 16 * nf, in_channels, **kw)
        self.G_middle_0 = SPADEResBlock(16 * nf, 16 * nf, in_channels, **kw)
        self.G_middle_1 = SPADEResBlock(16 * nf, 16 * nf, in_channels, **kw)
        self.ups = nn.ModuleList([SPADEResBlock(16 * nf, 8 * nf, in_channels, **kw),
                                  SPADEResBlock(8 * nf, 4 * nf, in_channels, **kw),
                                  SPADEResBlock(4 * nf, 2 * nf, in_channels, **kw),
                                  SPADEResBlock(2 * nf, 1 * nf, in_channels, **kw)])
        final_nc = nf
        if n == 7:
            self.ups.append(SPADEResBlock(nf, nf // 2, in_channels, **kw))
            final_nc = nf // 2
        self.conv_img = nn.Conv2d(final_nc, out_channels, 3, padding=1)
        init_weights(self, init_std)
        if block_spectral_norm:
            for m in self.modules():
                if isinstance(m, SPADEResBlock):
                    m.apply_block_spectral_norm()
        if spectral_norm:
            spectral_norm_all(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        div = 2 ** self.n_up
        h, w = x.shape[-2:]
        if h % div or w % div:
            raise ConfigError(f"SPADE generator input {tuple(x.shape[-2:])} is not divisible by {div} ({self.n_up} "
                              "upsamplings); resize the images")
        seg = x
        out = self.fc(F.interpolate(seg, size=(h // div, w // div), mode="nearest"))
        out = self.head_0(out, seg)
        if self.n_up >= 5:
            out = F.interpolate(out, scale_factor=2, mode="nearest")
        out = self.G_middle_0(out, seg)
        if self.n_up >= 6:
            out = F.interpolate(out, scale_factor=2, mode="nearest")
        out = self.G_middle_1(out, seg)
        for block in self.ups:
            out = block(F.interpolate(out, scale_factor=2, mode="nearest"), seg)
        return torch.tanh(self.conv_img(F.leaky_relu(out, 0.2)))

