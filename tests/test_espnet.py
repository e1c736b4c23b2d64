"""ESPNet (p=2, q=8) against the pretrained Cityscapes weights and the facts in its SOURCE.md."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from bench.errors import MetricError
from metrics.espnet import ESPNet, ESPNetInput, load_pretrained_espnet, preprocess
from metrics.segmentation import confusion_matrix, scores

FRANKFURT = ("frankfurt_000000_000294_leftImg8bit.png", "frankfurt_000000_000576_leftImg8bit.png")
ROAD, SIDEWALK, BUILDING, CAR = 0, 1, 2, 13


def _weights(data_root: Path) -> Path:
    p = data_root / "espnet_cityscapes" / "espnet_p_2_q_8.pth"
    if not p.is_file():
        pytest.skip("espnet_cityscapes weights absent")
    return p


def _to_bench(rgb: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8 -> (3, H, W) in [-1, 1]."""
    return torch.from_numpy(np.array(rgb, dtype=np.float32)).permute(2, 0, 1) / 127.5 - 1


@pytest.fixture(scope="module")
def espnet(data_root: Path) -> ESPNet:
    return load_pretrained_espnet(_weights(data_root))


def test_state_dict_keys_match_strictly_and_count(data_root: Path) -> None:
    state = torch.load(_weights(data_root), map_location="cpu", weights_only=True)
    model = ESPNet()
    own = {k: v for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    assert set(own) == set(state)
    assert all(own[k].shape == state[k].shape for k in state)
    model.load_state_dict(state, strict=True)            # raises on any missing / unexpected key
    assert sum(v.numel() for v in own.values()) == 368_341   # SOURCE.md: 189 tensors, 368,341 values
    assert len(own) == 189
    out = model.eval()(torch.zeros(1, 3, 64, 128))
    assert out.shape == (1, 20, 64, 128)


def test_default_path_comes_from_data_root(data_root: Path) -> None:
    _weights(data_root)
    model = load_pretrained_espnet()                      # BENCH_DATA_ROOT points at data_root (conftest)
    assert not model.training
    ref = torch.load(_weights(data_root), map_location="cpu", weights_only=True)
    assert torch.equal(model.state_dict()["classifier.weight"], ref["classifier.weight"])


def test_missing_or_wrong_weights_raise_metric_error(tmp_path: Path) -> None:
    with pytest.raises(MetricError, match="not found"):
        load_pretrained_espnet(tmp_path / "nope.pth")
    bad = tmp_path / "bad.pth"
    torch.save({"encoder.level1.conv.weight": torch.zeros(1)}, bad)
    with pytest.raises(MetricError, match="not an ESPNet"):
        load_pretrained_espnet(bad)


def test_preprocess_follows_the_upstream_convention() -> None:
    # one pixel, RGB (255, 128, 0) -> BGR (0, 128, 255), normalised with SOURCE.md's BGR mean/std, /255
    rgb = torch.tensor([255.0, 128.0, 0.0]).view(1, 3, 1, 1) / 127.5 - 1
    x = preprocess(rgb.expand(1, 3, 4, 6), ESPNetInput(size=(16, 8)))
    assert x.shape == (1, 3, 8, 16)
    mean = [72.3923111, 82.90893555, 73.15840149]
    std = [45.3192215, 46.15289307, 44.91483307]
    expect = [(v - m) / s / 255 for v, m, s in zip((0.0, 128.0, 255.0), mean, std)]
    assert torch.allclose(x[0, :, 3, 7], torch.tensor(expect), atol=1e-6)
    assert preprocess(torch.zeros(2, 3, 32, 32)).shape == (2, 3, 512, 1024)   # default 1024x512 (W x H)
    with pytest.raises(MetricError):
        preprocess(torch.zeros(3, 32, 32))


def test_frankfurt_class_shares_match_source(espnet: ESPNet, data_root: Path) -> None:
    """SOURCE.md (upstream definition): 000294 building .33 road .28 sidewalk .11; 000576 road .34
    building .27 car .15 (shares of all pixels at 1024x512, argmax over the 20 outputs)."""
    imgs = torch.stack([_to_bench(Image.open(data_root / "espnet_cityscapes" / n).convert("RGB"))
                        for n in FRANKFURT])
    assert imgs.shape[-2:] == (1024, 2048)
    with torch.no_grad():
        pred = espnet(preprocess(imgs)).argmax(1)
    share = [torch.bincount(p.flatten(), minlength=20).double() / p.numel() for p in pred]
    for cls, ref in ((BUILDING, 0.33), (ROAD, 0.28), (SIDEWALK, 0.11)):
        assert share[0][cls] == pytest.approx(ref, abs=0.03)
    for cls, ref in ((ROAD, 0.34), (BUILDING, 0.27), (CAR, 0.15)):
        assert share[1][cls] == pytest.approx(ref, abs=0.03)
    for s in share:   # street scene: road + building + sidewalk + car dominate
        assert s[[ROAD, BUILDING, SIDEWALK, CAR]].sum() > 0.6


def load_pix2pix_val(data_root: Path, tmp_path: Path, indices) -> tuple[torch.Tensor, torch.Tensor]:
    """Unpack a few pix2pix Cityscapes val JPEGs; photo = left half, trainIds from the right half."""
    tar_path = data_root / "cityscapes_pix2pix" / "cityscapes_val.tar"
    if not tar_path.is_file():
        pytest.skip("cityscapes_pix2pix val tar absent")
    from bench.data.cityscapes_labels import colors_to_train_ids

    photos, labels = [], []
    with tarfile.open(tar_path) as tf:
        for i in indices:
            out = tmp_path / f"{i}.jpg"
            out.write_bytes(tf.extractfile(f"cityscapes/val/{i}.jpg").read())
            a = np.asarray(Image.open(io.BytesIO(out.read_bytes())).convert("RGB"))
            assert a.shape == (256, 512, 3)
            photos.append(_to_bench(a[:, :256]))
            labels.append(torch.from_numpy(colors_to_train_ids(a[:, 256:]).astype(np.int64)))
    return torch.stack(photos), torch.stack(labels)


def test_pixel_accuracy_on_pix2pix_val_is_plausible(espnet: ESPNet, data_root: Path, tmp_path: Path) -> None:
    """SOURCE.md: 73.9% pixel accuracy on val 1..100 (photo upsampled to 1024x512)."""
    photos, labels = load_pix2pix_val(data_root, tmp_path, range(1, 7))
    with torch.no_grad():
        logits = espnet(preprocess(photos))
    logits = torch.nn.functional.interpolate(logits, size=(256, 256), mode="bilinear", align_corners=False)
    s = scores(confusion_matrix(logits[:, :19].argmax(1), labels, 19))
    assert s["pixel_acc"] > 0.6
    assert s["mean_iou"] > 0.2
    # the same images with the labels of other images: much worse (the segmentation follows the photo)
    s_wrong = scores(confusion_matrix(logits[:, :19].argmax(1), labels.roll(1, 0).flip(-2), 19))
    assert s_wrong["pixel_acc"] < s["pixel_acc"] - 0.3
