"""MNIST: the idx reader, samples, the imbalanced selection, malformed files, check and prepare.

Real data: shared/data/mnist (test images/labels and train labels as official idx.gz files, all
four arrays in mnist.npz). References are read here with numpy directly (np.load, gzip + the
documented idx layout), independently of the module under test.
"""

from __future__ import annotations

import gzip
import json
import shutil
import struct
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from bench.data import mnist
from bench.data.base import PairedDataset
from bench.data.layout import CheckReport
from bench.errors import ConfigError, DataError

FILES = ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz", "train-labels-idx1-ubyte.gz", "mnist.npz")


@pytest.fixture(scope="module")
def shared(data_root: Path) -> Path:
    d = data_root / "mnist"
    if not all((d / f).is_file() for f in FILES):
        pytest.skip("MNIST not in the shared data")
    return d


@pytest.fixture(scope="module")
def ref(shared: Path) -> dict[str, np.ndarray]:
    with np.load(shared / "mnist.npz") as z:
        return {k: z[k] for k in z.files}


def _idx_bytes(arr: np.ndarray) -> bytes:
    magic = 0x803 if arr.ndim == 3 else 0x801
    return struct.pack(f">{1 + arr.ndim}I", magic, *arr.shape) + arr.astype(np.uint8).tobytes()


def _write_pair(folder: Path, images: np.ndarray, labels: np.ndarray, prefix: str = "t10k") -> tuple[Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    img, lab = folder / f"{prefix}-images-idx3-ubyte", folder / f"{prefix}-labels-idx1-ubyte"
    img.write_bytes(_idx_bytes(images))
    lab.write_bytes(_idx_bytes(labels))
    return img, lab


def _reference_image(x: np.ndarray) -> np.ndarray:
    return x.astype(np.float32)[None] / np.float32(127.5) - np.float32(1.0)


def _one_line_error(exc: pytest.ExceptionInfo, *names: str) -> str:
    msg = str(exc.value)
    assert "\n" not in msg and msg
    for n in names:
        assert n in msg, (n, msg)
    return msg


# -- the idx reader -------------------------------------------------------------------------------

def test_idx_reader_is_byte_identical_to_npz(shared: Path, ref: dict[str, np.ndarray]):
    x = mnist.read_idx(shared / "t10k-images-idx3-ubyte.gz", 3)
    y = mnist.read_idx(shared / "t10k-labels-idx1-ubyte.gz", 1)
    ytr = mnist.read_idx(shared / "train-labels-idx1-ubyte.gz", 1)
    assert x.dtype == y.dtype == ytr.dtype == np.uint8
    assert x.shape == (10000, 28, 28) and y.shape == (10000,) and ytr.shape == (60000,)
    assert np.array_equal(x, ref["x_test"]) and np.array_equal(y, ref["y_test"])
    assert np.array_equal(ytr, ref["y_train"])
    # the published label counts (SOURCE.md)
    assert np.bincount(ytr).tolist() == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]


def test_idx_reader_round_trips_plain_and_gz(tmp_path: Path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (5, 28, 28), dtype=np.uint8)
    labels = np.array([3, 0, 9, 1, 1], dtype=np.uint8)
    img, lab = _write_pair(tmp_path, images, labels)
    gz = tmp_path / "copy-images-idx3-ubyte.gz"
    gz.write_bytes(gzip.compress(img.read_bytes()))
    assert np.array_equal(mnist.read_idx(img, 3), images)
    assert np.array_equal(mnist.read_idx(gz, 3), images)
    assert mnist.read_idx(lab, 1).tolist() == [3, 0, 9, 1, 1]


# -- samples --------------------------------------------------------------------------------------

def test_info():
    info = mnist.INFO
    assert info.name == "mnist" and info.tasks == ("class2image",) and info.num_classes == 10
    assert info.class_names == tuple("0123456789") and info.provides == ("image", "label", "index")
    assert "LeCun" in info.source


def test_test_samples_equal_the_reference(shared: Path, ref: dict[str, np.ndarray]):
    ds = mnist.make_dataset("test", 28, root=shared)
    assert len(ds) == 10000 and isinstance(ds, PairedDataset) and ds.info is mnist.INFO
    for i in (0, 1, 4321, 9999):
        s = ds[i]
        assert set(s) == {"image", "label", "index"}
        assert s["image"].dtype == torch.float32 and s["image"].shape == (1, 28, 28)
        assert s["label"].dtype == torch.int64 and s["label"].shape == ()
        assert s["index"].dtype == torch.int64 and int(s["index"]) == i
        assert int(s["label"]) == int(ref["y_test"][i])
        assert np.array_equal(s["image"].numpy(), _reference_image(ref["x_test"][i]))
        assert -1.0 <= float(s["image"].min()) and float(s["image"].max()) <= 1.0
    assert float(ds[0]["image"].min()) == -1.0 and float(ds[0]["image"].max()) == 1.0   # 0 and 255 pixels


def test_train_from_npz_by_default_root(ref: dict[str, np.ndarray], shared: Path):
    ds = mnist.make_dataset("train", 28)            # BENCH_DATA_ROOT -> shared data
    assert len(ds) == 60000
    for i in (0, 59999):
        assert np.array_equal(ds[i]["image"].numpy(), _reference_image(ref["x_train"][i]))
        assert int(ds[i]["label"]) == int(ref["y_train"][i])
    assert int(ds[-1]["index"]) == 59999


def test_resize_to_32(shared: Path, ref: dict[str, np.ndarray]):
    ds = mnist.make_dataset("test", 32, root=shared)
    img = ds[7]["image"]
    assert img.shape == (1, 32, 32) and img.dtype == torch.float32
    assert float(img.min()) >= -1.0 and float(img.max()) <= 1.0
    src = torch.from_numpy(_reference_image(ref["x_test"][7]))
    want = F.interpolate(src[None], size=(32, 32), mode="bilinear", align_corners=False, antialias=True)[0]
    assert torch.allclose(img, want.clamp(-1, 1), atol=1e-6)
    assert abs(float(img.mean()) - float(src.mean())) < 0.02          # resizing keeps the ink amount


def test_downsizing_is_antialiased(shared: Path, ref: dict[str, np.ndarray]):
    img = mnist.make_dataset("test", 14, root=shared)[0]["image"]
    src = torch.from_numpy(_reference_image(ref["x_test"][0]))[None]
    smooth = F.interpolate(src, size=(14, 14), mode="bilinear", align_corners=False, antialias=True)[0]
    plain = F.interpolate(src, size=(14, 14), mode="bilinear", align_corners=False, antialias=False)[0]
    assert img.shape == (1, 14, 14) and torch.allclose(img, smooth.clamp(-1, 1), atol=1e-6)
    assert not torch.allclose(img, plain.clamp(-1, 1), atol=1e-3)


# -- imbalanced MNIST and subsets -----------------------------------------------------------------

def _imbalanced_by_hand(y: np.ndarray) -> list[int]:
    quota, taken, rows = [5500] + [500] * 9, [0] * 10, []
    for i, label in enumerate(y.tolist()):
        if taken[label] < quota[label]:
            taken[label] += 1
            rows.append(i)
    return rows


def test_imbalanced_selection(ref: dict[str, np.ndarray]):
    ds = mnist.make_dataset("train", 28, imbalanced=True)
    rows = _imbalanced_by_hand(ref["y_train"])
    assert len(ds) == 10000 == len(rows)
    labels = np.array([int(ds[i]["label"]) for i in range(len(ds))])
    assert np.bincount(labels, minlength=10).tolist() == [5500] + [500] * 9
    assert np.all(np.diff(ds.file_indices) > 0) and ds.file_indices.tolist() == rows
    assert np.array_equal(labels, ref["y_train"][rows])
    for k in (0, 5000, 9999):
        s = ds[k]
        assert int(s["index"]) == k
        assert np.array_equal(s["image"].numpy(), _reference_image(ref["x_train"][rows[k]]))


def test_imbalanced_leaves_test_split_unchanged(shared: Path, ref: dict[str, np.ndarray]):
    ds = mnist.make_dataset("test", 28, root=shared, imbalanced=True)
    assert len(ds) == 10000 and np.array_equal(ds.labels, ref["y_test"])


def test_subset(ref: dict[str, np.ndarray]):
    ds = mnist.make_dataset("train", 28, subset=7)
    assert len(ds) == 7 and [int(ds[i]["label"]) for i in range(7)] == ref["y_train"][:7].tolist()
    imb = mnist.make_dataset("train", 28, subset=20, imbalanced=True)
    assert imb.file_indices.tolist() == _imbalanced_by_hand(ref["y_train"])[:20]
    assert [int(imb[i]["index"]) for i in range(20)] == list(range(20))
    with pytest.raises(IndexError):
        ds[7]


# -- errors ---------------------------------------------------------------------------------------

def test_bad_split_and_unknown_option(shared: Path):
    with pytest.raises(ConfigError) as e:
        mnist.make_dataset("val", 28, root=shared)
    _one_line_error(e, "val", "train", "test")
    with pytest.raises(ConfigError) as e:
        mnist.make_dataset("test", 28, root=shared, colour=True)
    _one_line_error(e, "colour", "imbalanced")


def test_missing_data_names_the_folder(tmp_path: Path):
    with pytest.raises(DataError) as e:
        mnist.make_dataset("test", 28, root=tmp_path)
    _one_line_error(e, str(tmp_path), "bench data prepare mnist --src")
    with pytest.raises(DataError) as e:
        mnist.make_dataset("train", 28, root=tmp_path / "nothing")
    _one_line_error(e, str(tmp_path / "nothing"), "BENCH_DATA_ROOT")


def _good_pair() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    return rng.integers(0, 256, (10, 28, 28), dtype=np.uint8), rng.integers(0, 10, 10).astype(np.uint8)


@pytest.mark.parametrize("fault", ["bad_magic", "truncated", "zero_bytes", "zero_bytes_gz", "bad_gz",
                                   "too_long", "wrong_dims", "bad_label", "count_mismatch"])
def test_malformed_idx_files(tmp_path: Path, fault: str):
    images, labels = _good_pair()
    img, lab = _write_pair(tmp_path, images, labels)
    bad = img
    if fault == "bad_magic":
        data = bytearray(img.read_bytes())
        data[3] = 0x01
        img.write_bytes(bytes(data))
    elif fault == "truncated":
        img.write_bytes(img.read_bytes()[:-100])
    elif fault == "zero_bytes":
        lab.write_bytes(b"")
        bad = lab
    elif fault == "zero_bytes_gz":
        img.unlink()
        bad = tmp_path / "t10k-images-idx3-ubyte.gz"
        bad.write_bytes(b"")
    elif fault == "bad_gz":
        img.unlink()
        bad = tmp_path / "t10k-images-idx3-ubyte.gz"
        bad.write_bytes(gzip.compress(_idx_bytes(images))[:200])
    elif fault == "too_long":
        img.write_bytes(img.read_bytes() + b"\0" * 28)
    elif fault == "wrong_dims":
        img.write_bytes(_idx_bytes(np.zeros((10, 28, 27), dtype=np.uint8)))
    elif fault == "bad_label":
        lab.write_bytes(_idx_bytes(np.array([1, 12] + [0] * 8, dtype=np.uint8)))
        bad = lab
    elif fault == "count_mismatch":
        lab.write_bytes(_idx_bytes(labels[:9]))
    with pytest.raises(DataError) as e:
        mnist.make_dataset("test", 28, root=tmp_path)
    names = (img.name, lab.name) if fault == "count_mismatch" else (bad.name,)
    _one_line_error(e, *names)
    rep = mnist.check(tmp_path)
    assert not rep.ok and any(bad.name in m for m in rep.missing)


def test_malformed_npz(tmp_path: Path):
    (tmp_path / "mnist.npz").write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(DataError) as e:
        mnist.make_dataset("test", 28, root=tmp_path)
    _one_line_error(e, "mnist.npz")
    np.savez(tmp_path / "mnist.npz", x_test=np.zeros((3, 28, 28), np.uint8), y_test=np.zeros(3, np.uint8))
    assert len(mnist.make_dataset("test", 28, root=tmp_path)) == 3
    with pytest.raises(DataError) as e:
        mnist.make_dataset("train", 28, root=tmp_path)
    _one_line_error(e, "mnist.npz", "x_train")


# -- check ----------------------------------------------------------------------------------------

def test_check_shared_folder(shared: Path):
    rep = mnist.check(shared)
    assert isinstance(rep, CheckReport) and rep.ok and not rep.missing, rep.format()
    found = "\n".join(rep.found)
    assert "train: mnist.npz" in found and "60000 samples" in found
    assert "t10k-images-idx3-ubyte.gz" in found and "10000 samples" in found
    assert "full split" not in found
    assert mnist.check().root == shared                    # default: $BENCH_DATA_ROOT/mnist
    assert "OK" in rep.format().splitlines()[0]


def test_check_empty_folder(tmp_path: Path):
    rep = mnist.check(tmp_path)
    assert not rep.ok and len(rep.missing) == 2 and not rep.found
    assert any("bench data prepare mnist" in h for h in rep.hints)
    assert "train-images-idx3-ubyte" in rep.format()


# -- prepare --------------------------------------------------------------------------------------

def _assert_prepared(root: Path, ref: dict[str, np.ndarray]) -> None:
    marker = json.loads((root / "PREPARED.json").read_text())
    assert marker["counts"] == {"train": 60000, "test": 10000}
    for split, (xk, yk) in (("train", ("x_train", "y_train")), ("test", ("x_test", "y_test"))):
        ds = mnist.make_dataset(split, 28, root=root)
        assert len(ds) == len(ref[yk]) and np.array_equal(ds.labels, ref[yk])
        assert np.array_equal(ds.images, ref[xk])
        assert np.array_equal(ds[3]["image"].numpy(), _reference_image(ref[xk][3]))
    assert mnist.check(root).ok


def test_prepare_from_folder(shared: Path, ref: dict[str, np.ndarray], tmp_path: Path):
    src = tmp_path / "download" / "nested"
    src.mkdir(parents=True)
    for f in FILES:
        shutil.copyfile(shared / f, src / f)
    (src / "README.txt").write_text("not MNIST")
    root = mnist.prepare(tmp_path / "download", tmp_path / "mnist")
    assert sorted(p.name for p in root.iterdir()) == sorted(FILES + ("PREPARED.json",))
    _assert_prepared(root, ref)


def test_prepare_from_tar(shared: Path, ref: dict[str, np.ndarray], tmp_path: Path):
    tar = tmp_path / "mnist.tar"
    with tarfile.open(tar, "w") as tf:
        for f in FILES:
            tf.add(shared / f, arcname=f"mnist-download/{f}")
    root = mnist.prepare(tar, tmp_path / "prepared")
    assert (root / "t10k-images-idx3-ubyte.gz").read_bytes() == (shared / "t10k-images-idx3-ubyte.gz").read_bytes()
    _assert_prepared(root, ref)


def test_prepare_replaces_an_old_copy_and_marker_catches_changes(tmp_path: Path):
    images, labels = _good_pair()
    root = tmp_path / "mnist"
    _write_pair(root, images, labels)[0].write_bytes(b"")      # a broken plain images file already there
    src = tmp_path / "src"
    src.mkdir()
    (src / "t10k-images.idx3-ubyte.gz").write_bytes(gzip.compress(_idx_bytes(images)))   # dotted variant
    mnist.prepare(src, root)
    assert not (root / "t10k-images-idx3-ubyte").exists() and (root / "t10k-images-idx3-ubyte.gz").is_file()
    ds = mnist.make_dataset("test", 28, root=root)
    assert np.array_equal(ds.images, images) and np.array_equal(ds.labels, labels)
    assert mnist.count(root) == {"test": 10}
    rep = mnist.check(root)
    assert [m for m in rep.missing if m.startswith("test")] == [] and any(m.startswith("train") for m in rep.missing)
    (root / "t10k-images-idx3-ubyte.gz").unlink()
    _write_pair(root, images[:4], labels[:4])                   # changed since it was prepared
    rep = mnist.check(root)
    assert any("4 files on disk, 10 when it was prepared" in m for m in rep.missing)


def test_prepare_nothing_recognised(tmp_path: Path):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "notes.txt").write_text("nothing here")
    with pytest.raises(DataError) as e:
        mnist.prepare(tmp_path / "src", tmp_path / "out")
    _one_line_error(e, "no MNIST files", str(tmp_path / "src"))
    assert not (tmp_path / "out").exists()


def test_prepare_rejects_a_damaged_download(tmp_path: Path):
    images, labels = _good_pair()
    src = tmp_path / "src"
    img, _ = _write_pair(src, images, labels)
    img.write_bytes(img.read_bytes()[:500])
    with pytest.raises(DataError) as e:
        mnist.prepare(src, tmp_path / "out")
    _one_line_error(e, "t10k-images-idx3-ubyte")
    assert not (tmp_path / "out").exists()
