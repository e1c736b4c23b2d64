"""The ``espnet-cityscapes`` FID / KID / IS extractor on real pix2pix Cityscapes val images.

References: the pooled features are recomputed through the ESPNet contract (``preprocess`` +
``encoder.features``), the class histograms from the full network's softmax, IS by hand from them.
"""

from __future__ import annotations

import io
import math
import re
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision.transforms.functional as TF
from PIL import Image

from bench.errors import MetricError
from metrics import extractors as ex
from metrics import fidelity
from metrics.espnet import ESPNetInput, load_pretrained_espnet, preprocess
from metrics.extractor_espnet import ESPNetFeatureExtractor, espnet_weights

N = 24   # val 1..24: set A = 1..12, set B = 13..24


@pytest.fixture(scope="module")
def weights(data_root: Path) -> Path:
    p = data_root / "espnet_cityscapes" / "espnet_p_2_q_8.pth"
    if not p.is_file():
        pytest.skip("espnet_cityscapes weights absent")
    return p


@pytest.fixture(scope="module")
def val(data_root: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """(photos, colour labels) of val 1..N, uint8 (N, 3, 256, 256) each."""
    tar = data_root / "cityscapes_pix2pix" / "cityscapes_val.tar"
    if not tar.is_file():
        pytest.skip("cityscapes_val.tar absent")
    with tarfile.open(tar) as tf:
        raw = [tf.extractfile(f"cityscapes/val/{i}.jpg").read() for i in range(1, N + 1)]
    ims = [np.array(Image.open(io.BytesIO(b)).convert("RGB")) for b in raw]
    x = torch.from_numpy(np.stack(ims)).permute(0, 3, 1, 2).contiguous()
    return x[..., :256].contiguous(), x[..., 256:].contiguous()


@pytest.fixture(scope="module")
def fe(weights: Path) -> ESPNetFeatureExtractor:
    return ESPNetFeatureExtractor("espnet-cityscapes", ["pool_l3", "pool_l2l3", "class_hist_logits"],
                                  feature_extractor_weights_path=str(weights))


def _reference(weights: Path, x: torch.Tensor, size: tuple[int, int]) -> dict[str, torch.Tensor]:
    net = load_pretrained_espnet(weights)
    with torch.no_grad():
        inp = preprocess(x.float() / 127.5 - 1, ESPNetInput(size=size))
        f = net.encoder.features(inp)
        hist = net(inp).softmax(1).mean((2, 3))
    return {"l2": f["l2"].mean((2, 3)), "l3": f["l3"].mean((2, 3)), "hist": hist}


def test_features_match_the_encoder_dimension_and_are_deterministic(fe, val, weights: Path) -> None:
    x = val[0][:4]
    with torch.no_grad():
        l3, l2l3, logits = fe(x)
        again = ESPNetFeatureExtractor("espnet-cityscapes", ["pool_l3"],
                                       feature_extractor_weights_path=str(weights))(x)[0]
    assert l3.shape == (4, 256) and l2l3.shape == (4, 131 + 256) and logits.shape == (4, 20)
    ref = _reference(weights, x, (512, 256))
    torch.testing.assert_close(l3, ref["l3"], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(l2l3, torch.cat([ref["l2"], ref["l3"]], 1), rtol=1e-5, atol=1e-6)
    assert torch.equal(again, l3)                               # fresh instance, encoder-only path
    hist = logits.softmax(1)
    torch.testing.assert_close(hist, ref["hist"], rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(hist.sum(1), torch.ones(4))
    assert not torch.allclose(l3[0], l3[1], atol=1e-3)           # different photos, different features


def test_batch_size_does_not_change_features(fe, val) -> None:
    x = val[0][:4]
    with torch.no_grad():
        whole = fe(x)
        single = [torch.cat(t) for t in zip(*(fe(x[i:i + 1]) for i in range(len(x))))]
    for a, b in zip(whole, single):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_large_variant_runs_at_upstream_size_and_stamps_it(val, weights: Path) -> None:
    x = val[0][:1]
    big = ESPNetFeatureExtractor("espnet-cityscapes-1024x512", ["pool_l3"],
                                 feature_extractor_weights_path=str(weights))
    with torch.no_grad():
        f = big(x)[0]
    torch.testing.assert_close(f, _reference(weights, x, (1024, 512))["l3"], rtol=1e-5, atol=1e-6)
    assert "1024x512" in ex.spec("espnet-cityscapes-1024x512").internal_resize
    assert "512x256" in ex.spec("espnet-cityscapes").internal_resize


def test_fid_separates_real_photos_from_corrupted_ones(val, weights: Path, tmp_path: Path) -> None:
    photos, labels = val
    a, b = photos[:12], photos[12:]
    blurred = TF.gaussian_blur(a, kernel_size=31, sigma=8.0)

    def score(gen: torch.Tensor) -> dict:
        return fidelity.compute(gen, a, extractor="espnet-cityscapes", weights_path=weights,
                                metrics=("fid", "kid"), cache_root=tmp_path, kid_subsets=20)

    same, other, lab, blur = score(a), score(b), score(labels[:12]), score(blurred)
    assert other["protocol"]["extractor"] == "espnet-cityscapes"
    assert other["protocol"]["layers"]["fid"] == "pool_l3"
    assert other["protocol"]["weights_sha256"] == ex.file_sha256(weights)
    assert abs(same["fid"]) < 1e-5 * other["fid"]
    assert other["fid"] > 0
    assert lab["fid"] > 5 * other["fid"] and blur["fid"] > 5 * other["fid"]   # measured: 71x, 12x
    assert lab["kid"] > other["kid"] and blur["kid"] > other["kid"]


def test_domain_inception_score_from_class_histograms(val, weights: Path) -> None:
    x = val[0][:5]
    out = fidelity.compute(x, extractor="espnet-cityscapes", weights_path=weights, metrics=("is",),
                           is_splits=1)
    p = _reference(weights, x, (512, 256))["hist"].double()
    kl = (p * (p.log() - p.mean(0, keepdim=True).log())).sum(1)
    assert out["is"] == pytest.approx(math.exp(kl.mean().item()), rel=1e-4)
    assert out["protocol"]["layers"]["is"] == "class_hist_logits"


def test_missing_weights_say_where_to_put_them(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(MetricError, match="espnet_p_2_q_8.pth"):
        ESPNetFeatureExtractor("espnet-cityscapes", ["pool_l3"],
                               feature_extractor_weights_path=str(tmp_path / "nope.pth"))
    monkeypatch.setenv("BENCH_DATA_ROOT", str(tmp_path))
    expected = str(tmp_path / "espnet_cityscapes" / "espnet_p_2_q_8.pth")
    with pytest.raises(MetricError, match=re.escape(f"not found at {expected}; put espnet_p_2_q_8.pth")):
        espnet_weights()
    with pytest.raises(MetricError, match="espnet_p_2_q_8.pth"):
        ESPNetFeatureExtractor("espnet-cityscapes", ["pool_l3"])


def test_non_uint8_input_is_refused(fe) -> None:
    with pytest.raises(MetricError, match="uint8"):
        fe(torch.zeros(1, 3, 16, 16))


def test_compute_finds_the_default_weights(val, weights: Path, tmp_path: Path) -> None:
    out = fidelity.compute(val[0][:2], val[0][2:4], extractor="espnet-cityscapes", cache_root=tmp_path)
    assert out["protocol"]["weights_sha256"] == ex.file_sha256(weights)
