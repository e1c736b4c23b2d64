"""ESPNet (Mehta et al., "ESPNet: Efficient Spatial Pyramid of Dilated Convolutions for Semantic
Segmentation", ECCV 2018), the full encoder-decoder model with p=2 and q=8, written from the paper.

The module names and shapes follow the pretrained Cityscapes state dict shipped in
``<data_root>/espnet_cityscapes/espnet_p_2_q_8.pth`` (see its SOURCE.md), so it loads with
``strict=True``. The model is a *scoring segmenter*: the segmenter score of generated street
scenes (pix2pix's "FCN-score", the fusion paper's PSPNet score) segments generated photos with it.

Building blocks (paper, section 2-3):

- ESP module: a point-wise *reduce* convolution to ``n = out / K`` channels (K = 5), then K
  parallel 3x3 dilated convolutions with dilation 2^k (k = 0..4), *hierarchical feature fusion*
  (the outputs of the larger dilations are summed cumulatively before concatenation, which
  removes gridding artefacts), a residual connection when input and output widths agree, then
  batch norm + PReLU. The dilation-1 branch takes the remainder ``out - (K-1) n`` channels.
- The strided ESP module (downsampling) uses a 3x3 stride-2 reduce convolution and no residual.
- Input reinforcement: the image, average-pooled to each level's resolution, is concatenated to
  the level's features.
- Decoder: the encoder's 1/8 class map is up-sampled (transposed conv) and fused with a 1/4 class
  map from the level-2 features through an ESP module, up-sampled again and fused with the level-1
  features by a 3x3 conv; a last transposed conv gives full-resolution logits.

The paper fixes neither the order of the concatenations nor the BN epsilon. The ones used here
(features before the pooled image; level-2 block output before the strided module's output;
the 1/4 class map before the up-sampled 1/8 one; decoded map before level-1 features; eps 1e-3)
were checked against the weights: every BN layer's running mean and variance match the channel
statistics of its input on the two frankfurt images (correlation of log-variances > 0.97), and
the predicted class shares agree with SOURCE.md to 0.01.

Input convention of the pretrained weights (upstream's test script): BGR, 0..255, per-channel
mean/std normalisation, resized to 1024x512, then divided by 255. ``preprocess`` maps bench
images ([-1, 1] RGB) to that convention.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from bench.data.paths import data_root
from bench.errors import MetricError

log = logging.getLogger(__name__)

WEIGHTS_DIR = "espnet_cityscapes"
WEIGHTS_FILE = "espnet_p_2_q_8.pth"
WEIGHTS_SHA256 = "343b0e77e8545d36113c4f3efbf1ee349256f25c97c9f9d5ddefe45f2f49763e"
NUM_OUTPUTS = 20          # 19 Cityscapes trainIds + void
VOID_OUTPUT = 19          # output channel of the void class (scored as ignore)
NUM_PARAMETERS = 368_341

#: Upstream input statistics, in BGR order, on the 0..255 scale.
MEAN_BGR = (72.3923111, 82.90893555, 73.15840149)
STD_BGR = (45.3192215, 46.15289307, 44.91483307)
#: Upstream inference size, (width, height).
DEFAULT_SIZE = (1024, 512)
BN_EPS = 1e-3


class ConvBNAct(nn.Module):
    """conv -> BN -> PReLU (keys ``conv``, ``bn``, ``act``)."""

    def __init__(self, cin: int, cout: int, k: int, stride: int = 1):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, stride=stride, padding=(k - 1) // 2, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=BN_EPS)
        self.act = nn.PReLU(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


class BNAct(nn.Module):
    """BN -> PReLU (keys ``bn``, ``act``)."""

    def __init__(self, ch: int):
        super().__init__()
        self.bn = nn.BatchNorm2d(ch, eps=BN_EPS)
        self.act = nn.PReLU(ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(x))


class Conv(nn.Module):
    """A bias-free (optionally dilated, strided) conv with 'same' padding (key ``conv``)."""

    def __init__(self, cin: int, cout: int, k: int, stride: int = 1, dilation: int = 1):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, stride=stride, padding=(k - 1) // 2 * dilation,
                              dilation=dilation, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class ESPBlock(nn.Module):
    """Efficient spatial pyramid: reduce, split-transform with dilations 1..16, HFF, merge.

    ``downsample=True`` is the strided variant (3x3 stride-2 reduce, no residual, plain BN/PReLU
    keys ``bn`` / ``act``); otherwise a 1x1 reduce, a residual when ``residual`` and widths agree,
    and the BN/PReLU sit in a ``bn`` sub-module (keys ``bn.bn`` / ``bn.act``).
    """

    K = 5

    def __init__(self, cin: int, cout: int, *, downsample: bool = False, residual: bool = True):
        super().__init__()
        n = cout // self.K
        n1 = cout - (self.K - 1) * n
        self.downsample = downsample
        self.residual = residual and not downsample and cin == cout
        if downsample:
            self.c1 = Conv(cin, n, 3, stride=2)
        else:
            self.c1 = Conv(cin, n, 1)
        self.d1 = Conv(n, n1, 3, dilation=1)
        self.d2 = Conv(n, n, 3, dilation=2)
        self.d4 = Conv(n, n, 3, dilation=4)
        self.d8 = Conv(n, n, 3, dilation=8)
        self.d16 = Conv(n, n, 3, dilation=16)
        if downsample:
            self.bn = nn.BatchNorm2d(cout, eps=BN_EPS)
            self.act = nn.PReLU(cout)
        else:
            self.bn = BNAct(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        r = self.c1(x)
        a2 = self.d2(r)
        a4 = a2 + self.d4(r)
        a8 = a4 + self.d8(r)
        a16 = a8 + self.d16(r)
        out = torch.cat([self.d1(r), a2, a4, a8, a16], 1)
        if self.residual:
            out = out + x
        if self.downsample:
            return self.act(self.bn(out))
        return self.bn(out)


def _pool_input(x: torch.Tensor, times: int) -> torch.Tensor:
    for _ in range(times):
        x = F.avg_pool2d(x, 3, stride=2, padding=1)
    return x


class ESPNetEncoder(nn.Module):
    """ESPNet-C: three levels (1/2, 1/4, 1/8) with input reinforcement; ``classifier`` gives 1/8 logits."""

    def __init__(self, classes: int = NUM_OUTPUTS, p: int = 2, q: int = 8):
        super().__init__()
        self.level1 = ConvBNAct(3, 16, 3, stride=2)
        self.b1 = BNAct(16 + 3)
        self.level2_0 = ESPBlock(16 + 3, 64, downsample=True)
        self.level2 = nn.ModuleList([ESPBlock(64, 64) for _ in range(p)])
        self.b2 = BNAct(128 + 3)
        self.level3_0 = ESPBlock(128 + 3, 128, downsample=True)
        self.level3 = nn.ModuleList([ESPBlock(128, 128) for _ in range(q)])
        self.b3 = BNAct(256)
        self.classifier = Conv(256, classes, 1)

    def features(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per-level features: ``l1`` (16 ch, 1/2), ``l2`` (131 ch, 1/4), ``l3`` (256 ch, 1/8)."""
        img2, img4 = _pool_input(x, 1), _pool_input(x, 2)
        out1 = self.level1(x)
        cat1 = self.b1(torch.cat([out1, img2], 1))
        out2_0 = self.level2_0(cat1)
        out2 = out2_0
        for blk in self.level2:
            out2 = blk(out2)
        cat2 = self.b2(torch.cat([out2, out2_0, img4], 1))
        out3_0 = self.level3_0(cat2)
        out3 = out3_0
        for blk in self.level3:
            out3 = blk(out3)
        cat3 = self.b3(torch.cat([out3_0, out3], 1))
        return {"l1": out1, "l2": cat2, "l3": cat3}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x)["l3"])


class ESPNet(nn.Module):
    """The full ESPNet (encoder + light decoder). Input: preprocessed (N, 3, H, W), H and W
    multiples of 8; output: (N, classes, H, W) logits."""

    def __init__(self, classes: int = NUM_OUTPUTS, p: int = 2, q: int = 8):
        super().__init__()
        self.encoder = ESPNetEncoder(classes, p, q)
        self.level3_C = Conv(128 + 3, classes, 1)
        self.br = nn.BatchNorm2d(classes, eps=BN_EPS)
        self.conv = ConvBNAct(16 + classes, classes, 3)
        self.up_l3 = nn.Sequential(nn.ConvTranspose2d(classes, classes, 2, stride=2, bias=False))
        self.combine_l2_l3 = nn.Sequential(BNAct(2 * classes), ESPBlock(2 * classes, classes, residual=False))
        self.up_l2 = nn.Sequential(nn.ConvTranspose2d(classes, classes, 2, stride=2, bias=False),
                                   BNAct(classes))
        self.classifier = nn.ConvTranspose2d(classes, classes, 2, stride=2, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.encoder.features(x)
        c3 = self.up_l3(self.br(self.encoder.classifier(f["l3"])))       # 1/8 -> 1/4
        c2 = self.level3_C(f["l2"])                                        # 1/4
        c = self.up_l2(self.combine_l2_l3(torch.cat([c2, c3], 1)))        # 1/4 -> 1/2
        c = self.conv(torch.cat([c, f["l1"]], 1))                          # 1/2
        return self.classifier(c)                                          # full


@dataclass(frozen=True)
class ESPNetInput:
    """How bench images become ESPNet inputs (recorded in the scorer's protocol)."""

    size: tuple[int, int] = DEFAULT_SIZE      # (width, height) the image is resized to
    resize_mode: str = "bilinear"             # torch interpolate mode, align_corners=False (cv2-like)
    scale_quirk: bool = True                  # upstream divides the normalised image by 255

    def describe(self) -> dict:
        return {"input_size_wh": list(self.size), "resize_mode": self.resize_mode,
                "color_order": "BGR", "range": "0..255", "mean_bgr": list(MEAN_BGR),
                "std_bgr": list(STD_BGR), "divide_by_255_after_norm": self.scale_quirk}


def preprocess(images: torch.Tensor, spec: ESPNetInput | None = None) -> torch.Tensor:
    """Bench images (N, 3, H, W), RGB in [-1, 1] -> ESPNet input (N, 3, h, w), BGR normalised.

    Steps as upstream: RGB -> BGR, 0..255, subtract mean / divide by std (BGR), resize to
    ``spec.size`` (W x H), divide by 255.
    """
    spec = spec or ESPNetInput()
    if images.ndim != 4 or images.shape[1] != 3:
        raise MetricError(f"ESPNet expects (N, 3, H, W) RGB images, got shape {tuple(images.shape)}")
    x = (images.float().clamp(-1, 1) + 1) * 127.5
    x = x.flip(1)                                                          # RGB -> BGR
    mean = torch.tensor(MEAN_BGR, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(STD_BGR, device=x.device).view(1, 3, 1, 1)
    x = (x - mean) / std
    w, h = spec.size
    if (x.shape[-2], x.shape[-1]) != (h, w):
        if spec.resize_mode in ("nearest", "area"):
            x = F.interpolate(x, size=(h, w), mode=spec.resize_mode)
        else:
            x = F.interpolate(x, size=(h, w), mode=spec.resize_mode, align_corners=False)
    if spec.scale_quirk:
        x = x / 255.0
    return x


def default_weights_path() -> Path:
    return data_root() / WEIGHTS_DIR / WEIGHTS_FILE


def load_pretrained_espnet(path: str | Path | None = None) -> ESPNet:
    """The Cityscapes-pretrained ESPNet (p=2, q=8), in eval mode, on the CPU.

    ``path`` defaults to ``data_root()/espnet_cityscapes/espnet_p_2_q_8.pth``.
    """
    p = Path(path) if path is not None else default_weights_path()
    if not p.is_file():
        raise MetricError(f"ESPNet weights not found at {p}; put espnet_p_2_q_8.pth there "
                          f"or set BENCH_DATA_ROOT to the folder holding {WEIGHTS_DIR}/")
    try:
        state = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unpickling failure means a bad file
        raise MetricError(f"cannot read ESPNet weights {p} ({e}); replace the file") from e
    model = ESPNet()
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        first = str(e).splitlines()[0]
        raise MetricError(f"{p} is not an ESPNet p=2 q=8 Cityscapes state dict ({first})") from e
    return model.eval()
