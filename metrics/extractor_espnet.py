"""A street-scene feature extractor for FID / KID / IS: the Cityscapes-pretrained ESPNet.

Importing this module registers two torch-fidelity extractors (``metrics.fidelity`` imports it):

- ``espnet-cityscapes``: images resized to 512x256 (W x H), half upstream's size, for speed;
- ``espnet-cityscapes-1024x512``: upstream's inference size (4x the pixels; several times slower).

Input: uint8 (N, 3, H, W) RGB at any size. ``metrics.espnet.preprocess`` resizes it bilinearly
(align_corners=False) to the fixed size and applies upstream's BGR / mean / std / divide-by-255
convention; this is stamped as the spec's ``internal_resize``. The network runs in eval mode (BN
on running statistics), so an image's features do not depend on its batch.

Features (names as torch-fidelity layers):

- ``pool_l3`` (256-d, FID / KID): global average pool of the deepest encoder features (``l3``, 1/8 scale);
- ``pool_l2l3`` (387-d): pooled ``l2`` (131 channels, 1/4 scale) followed by pooled ``l3``;
- ``class_hist_logits`` (20-d, IS): log of the per-image mean over pixels of the full network's
  20-class softmax (19 Cityscapes trainIds + void). torch-fidelity's IS soft-maxes it back into
  that class histogram. IS on it is a *domain* IS (confident, varied class mixes score high); it is
  not comparable to the Inception Score.

Weights: ``feature_extractor_weights_path`` or ``metrics.espnet.default_weights_path()``
(``<data_root>/espnet_cityscapes/espnet_p_2_q_8.pth``).
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch_fidelity.feature_extractor_base import FeatureExtractorBase

from bench.errors import MetricError
from metrics.espnet import (WEIGHTS_DIR, WEIGHTS_FILE, ESPNetInput, default_weights_path,
                            load_pretrained_espnet, preprocess)
from metrics.extractors import ExtractorSpec, register_extractor

log = logging.getLogger(__name__)

NAME = "espnet-cityscapes"
#: registered name -> ESPNet input size (width, height)
SIZES: dict[str, tuple[int, int]] = {NAME: (512, 256), f"{NAME}-1024x512": (1024, 512)}
FEATURES = ("pool_l3", "pool_l2l3", "class_hist_logits")
DIMS = {"pool_l3": 256, "pool_l2l3": 387, "class_hist_logits": 20}
LAYERS = {"fid": "pool_l3", "kid": "pool_l3", "isc": "class_hist_logits", "prc": "pool_l3"}


def espnet_weights(weights_path: str | Path | None = None) -> Path:
    """The ESPNet weights file to use: ``weights_path`` or the default; MetricError when absent."""
    p = Path(weights_path).expanduser() if weights_path else default_weights_path()
    if not p.is_file():
        raise MetricError(f"ESPNet weights not found at {p}; put {WEIGHTS_FILE} there (or pass "
                          f"weights_path, or set BENCH_DATA_ROOT to the folder holding {WEIGHTS_DIR}/)")
    return p


class ESPNetFeatureExtractor(FeatureExtractorBase):
    """torch-fidelity extractor: uint8 (N, 3, H, W) RGB -> pooled ESPNet features / class histograms."""

    def __init__(self, name: str, features_list: list[str],
                 feature_extractor_weights_path: str | None = None, **kwargs: object) -> None:
        super().__init__(name, features_list)
        if name not in SIZES:
            raise MetricError(f"unknown ESPNet extractor '{name}'; use one of {', '.join(SIZES)}")
        self.input = ESPNetInput(size=SIZES[name])
        self.net = load_pretrained_espnet(espnet_weights(feature_extractor_weights_path))
        self.requires_grad_(False)
        self.eval()
        # l2 / l3 are the outputs of the encoder's b2 / b3 blocks (see ESPNetEncoder.features):
        # hooks capture them from either the encoder alone or the full network, without a second pass
        self._seen: dict[str, torch.Tensor] = {}
        for key, mod in (("l2", self.net.encoder.b2), ("l3", self.net.encoder.b3)):
            mod.register_forward_hook(lambda _m, _i, out, key=key: self._seen.__setitem__(key, out))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        if x.dtype != torch.uint8 or x.dim() != 4 or x.shape[1] != 3:
            raise MetricError(f"{self.name} takes uint8 (N, 3, H, W) RGB images, "
                              f"got {x.dtype} {tuple(x.shape)}")
        inp = preprocess(x.float() / 127.5 - 1.0, self.input)
        self._seen.clear()
        out: dict[str, torch.Tensor] = {}
        if "class_hist_logits" in self.features_list:
            hist = self.net(inp).softmax(1).mean((2, 3))
            out["class_hist_logits"] = hist.clamp_min(1e-30).log()
        else:
            self.net.encoder.features(inp)
        l2, l3 = self._seen["l2"].mean((2, 3)), self._seen["l3"].mean((2, 3))
        out |= {"pool_l3": l3, "pool_l2l3": torch.cat([l2, l3], 1)}
        return tuple(out[k] for k in self.features_list)

    @staticmethod
    def get_provided_features_list() -> tuple[str, ...]:
        return FEATURES

    @staticmethod
    def get_default_feature_layer_for_metric(metric: str) -> str:
        return LAYERS[metric]

    @staticmethod
    def can_be_compiled() -> bool:
        return False

    @staticmethod
    def get_dummy_input_for_compile() -> torch.Tensor:
        return torch.zeros(1, 3, 256, 512, dtype=torch.uint8)


def _spec(size: tuple[int, int]) -> ExtractorSpec:
    w, h = size
    return ExtractorSpec(None, 3, f"espnet-preprocess: bilinear to {w}x{h} (WxH), BGR, mean/std, /255",
                         {m: LAYERS[m] for m in ("fid", "kid", "isc")})


for _name, _size in SIZES.items():
    register_extractor(_name, ESPNetFeatureExtractor, _spec(_size), weights=espnet_weights)
