"""CMP Facades (pix2pix layout): prepare, check, samples (the two halves), natural order, subset, errors.

Real data: shared/data/facades_pix2pix/facades.tar (pix2pix's facades: ``facades/{train,val,test}/N.jpg``,
512x256, photo left, colour label map right), prepared once per module into a temporary folder.
References are computed here directly (PIL crops of the file, numpy), independently of the module under test.
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from bench.data import facades
from bench.data.base import PairedDataset
from bench.data.layout import CheckReport
from bench.errors import ConfigError, DataError

FULL = {"train": 400, "val": 100, "test": 106}


@pytest.fixture(scope="module")
def shared(data_root: Path) -> Path:
    d = data_root / "facades_pix2pix"
    if not (d / "facades.tar").is_file():
        pytest.skip("facades_pix2pix/facades.tar not in the shared data")
    return d


@pytest.fixture(scope="module")
def prepared(shared: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return facades.prepare(shared, tmp_path_factory.mktemp("data") / "facades")


def _reference(path: Path, side: str, size: int) -> np.ndarray:
    """The left ("photo") or right ("label") half of a pix2pix JPEG, resized, in [-1, 1], (3, size, size)."""
    with Image.open(path) as im:
        ab = im.convert("RGB")
    box = (0, 0, 256, 256) if side == "photo" else (256, 0, 512, 256)
    half = ab.crop(box)
    if size != 256:
        half = half.resize((size, size), Image.BILINEAR)
    return np.asarray(half, dtype=np.float32).transpose(2, 0, 1) / np.float32(127.5) - np.float32(1.0)


def _copy_split(prepared: Path, dest: Path, split: str, names: list[str]) -> Path:
    """Writable copies of a few prepared files under ``dest/split`` (hard links would share a truncation)."""
    (dest / split).mkdir(parents=True, exist_ok=True)
    for n in names:
        shutil.copyfile(prepared / split / n, dest / split / n)
    return dest


def _one_line_error(exc: pytest.ExceptionInfo, *parts: str) -> str:
    msg = str(exc.value)
    assert "\n" not in msg and msg
    for n in parts:
        assert n in msg, (n, msg)
    return msg


# -- prepare and check ----------------------------------------------------------------------------

def test_prepare_from_the_shared_tar_then_check(shared: Path, prepared: Path):
    assert sorted(p.name for p in prepared.iterdir()) == ["PREPARED.json", "test", "train", "val"]
    for split, n in FULL.items():
        assert sorted(p.name for p in (prepared / split).iterdir()) == sorted(f"{k}.jpg" for k in range(1, n + 1))
    marker = json.loads((prepared / "PREPARED.json").read_text())
    assert marker["counts"] == FULL and marker["files"] == FULL
    assert facades.count(prepared) == FULL
    rep = facades.check(prepared)
    assert isinstance(rep, CheckReport) and rep.ok and not rep.missing, rep.format()
    assert rep.found == ["train/*.jpg: 400", "val/*.jpg: 100", "test/*.jpg: 106"]
    assert rep.layout == "pix2pix" and "OK" in rep.format().splitlines()[0]
    # the bytes are the tar's own (MANIFEST.sha256 lists every member)
    manifest = dict(line.split()[::-1] for line in (shared / "MANIFEST.sha256").read_text().splitlines())
    for rel in ("train/1.jpg", "val/100.jpg", "test/106.jpg"):
        assert hashlib.sha256((prepared / rel).read_bytes()).hexdigest() == manifest[f"facades/{rel}"]
    assert sorted(p.name for p in shared.iterdir()) == ["MANIFEST.sha256", "SOURCE.md", "facades.tar"]


def test_prepare_from_a_tar_gz_and_an_unpacked_folder(prepared: Path, tmp_path: Path):
    tgz = tmp_path / "facades.tar.gz"
    picked = {"train": ["1.jpg", "2.jpg"], "val": ["1.jpg"], "test": ["1.jpg", "2.jpg", "10.jpg"]}
    with tarfile.open(tgz, "w:gz") as tf:
        for split, names in picked.items():
            for n in names:
                tf.add(prepared / split / n, arcname=f"facades/{split}/{n}")
        junk = tarfile.TarInfo("__MACOSX/facades/train/._1.jpg")
        junk.size = 4
        tf.addfile(junk, io.BytesIO(b"\0" * 4))
    root = facades.prepare(tgz, tmp_path / "from_tgz")
    want = {s: len(v) for s, v in picked.items()}
    assert facades.count(root) == want and json.loads((root / "PREPARED.json").read_text())["counts"] == want
    rep = facades.check(root)
    assert rep.ok and "train/*.jpg: 2 (the full split has 400)" in rep.found, rep.format()
    unpacked = tmp_path / "unpacked"
    with tarfile.open(tgz) as tf:
        tf.extractall(unpacked, filter="data")
    root2 = facades.prepare(unpacked / "facades", tmp_path / "from_folder")
    assert facades.count(root2) == want
    assert facades.prepare(unpacked, root2) == root2 and facades.count(root2) == want     # again: no duplicates


def test_check_empty_folder_and_deleted_files(prepared: Path, tmp_path: Path):
    rep = facades.check(tmp_path)
    assert not rep.ok and len(rep.missing) == 3 and not rep.found and rep.layout is None
    assert any("bench data prepare facades --src <facades.tar.gz>" in h for h in rep.hints)
    assert "train/1.jpg .. 400.jpg" in rep.format()
    root = facades.prepare(prepared, tmp_path / "copy")
    (root / "val" / "7.jpg").unlink()
    rep = facades.check(root)
    assert not rep.ok and any("99 files on disk, 100 when it was prepared" in m for m in rep.missing), rep.format()


def test_prepare_nothing_recognised_or_damaged(prepared: Path, tmp_path: Path):
    (tmp_path / "src" / "photos").mkdir(parents=True)
    (tmp_path / "src" / "photos" / "1.jpg").write_bytes(b"\xff\xd8\xff")
    with pytest.raises(DataError) as e:
        facades.prepare(tmp_path / "src", tmp_path / "out")
    _one_line_error(e, "no facades images", str(tmp_path / "src"))
    assert not (tmp_path / "out").exists()
    src = _copy_split(prepared, tmp_path / "dl", "test", ["1.jpg", "2.jpg"])
    bad = src / "test" / "2.jpg"
    bad.write_bytes(bad.read_bytes()[:1000])
    with pytest.raises(DataError) as e:
        facades.prepare(src, tmp_path / "out")
    _one_line_error(e, str(bad), "truncated")
    assert not (tmp_path / "out").exists()


# -- samples --------------------------------------------------------------------------------------

@pytest.mark.parametrize("split, size", [("train", 64), ("test", 32), ("val", 48)])
def test_samples_shapes_dtypes_ranges(prepared: Path, split: str, size: int):
    ds = facades.make_dataset(split, size, root=prepared)
    assert isinstance(ds, PairedDataset) and ds.info is facades.INFO and len(ds) == FULL[split]
    for i in (0, len(ds) - 1):
        s = ds[i]
        assert set(s) == set(facades.INFO.provides) == {"photo", "label_rgb", "index"}
        for k in ("photo", "label_rgb"):
            assert s[k].dtype == torch.float32 and s[k].shape == (3, size, size), k
            assert -1.0 <= float(s[k].min()) and float(s[k].max()) <= 1.0, k
            assert float(s[k].std()) > 0.05, k                               # a picture, not a constant
        assert s["index"].dtype == torch.int64 and s["index"].shape == () and int(s["index"]) == i
    assert int(ds[-1]["index"]) == len(ds) - 1


def test_photo_is_the_left_half_and_label_the_right(prepared: Path):
    ds = facades.make_dataset("test", 256, root=prepared, subset=2)
    for i in range(2):
        path = prepared / "test" / f"{i + 1}.jpg"
        with Image.open(path) as im:
            arr = np.asarray(im.convert("RGB"), dtype=np.float32) / np.float32(127.5) - np.float32(1.0)
        assert arr.shape == (256, 512, 3)
        s = ds[i]
        assert np.array_equal(s["photo"].numpy(), arr[:, :256].transpose(2, 0, 1))       # native size: no resize
        assert np.array_equal(s["label_rgb"].numpy(), arr[:, 256:].transpose(2, 0, 1))
    small = facades.make_dataset("train", 64, root=prepared, subset=3)
    for i in range(3):
        path = prepared / "train" / f"{i + 1}.jpg"
        s = small[i]
        assert np.allclose(s["photo"].numpy(), _reference(path, "photo", 64), atol=1e-6)
        assert np.allclose(s["label_rgb"].numpy(), _reference(path, "label", 64), atol=1e-6)
        assert not np.allclose(s["photo"].numpy(), s["label_rgb"].numpy(), atol=0.1)      # not the same half twice


def test_natural_order(prepared: Path):
    ds = facades.make_dataset("test", 32, root=prepared)
    assert [p.name for p in ds.files] == [f"{k}.jpg" for k in range(1, 107)]          # 2.jpg before 10.jpg
    k2, k10 = ds.files.index(prepared / "test" / "2.jpg"), ds.files.index(prepared / "test" / "10.jpg")
    assert (k2, k10) == (1, 9)
    assert np.allclose(ds[9]["photo"].numpy(), _reference(prepared / "test" / "10.jpg", "photo", 32), atol=1e-6)


def test_subset(prepared: Path):
    full = facades.make_dataset("val", 32, root=prepared)
    ds = facades.make_dataset("val", 32, root=prepared, subset=3)
    assert len(ds) == 3 and ds.files == full.files[:3]
    assert [int(ds[i]["index"]) for i in range(3)] == [0, 1, 2]
    assert torch.equal(ds[2]["label_rgb"], full[2]["label_rgb"])
    assert len(facades.make_dataset("val", 32, root=prepared, subset=1000)) == 100
    with pytest.raises(IndexError):
        ds[3]


# -- errors ---------------------------------------------------------------------------------------

def test_truncated_jpeg_is_a_data_error(prepared: Path, tmp_path: Path):
    root = _copy_split(prepared, tmp_path / "facades", "test", ["1.jpg", "2.jpg", "3.jpg"])
    bad = root / "test" / "2.jpg"
    bad.write_bytes(bad.read_bytes()[: bad.stat().st_size // 2])
    ds = facades.make_dataset("test", 32, root=root)
    with pytest.raises(DataError) as e:
        ds[1]
    _one_line_error(e, str(bad), "bench data check facades")
    ds[2]                                                                      # the others still read
    rep = facades.check(root)
    assert not rep.ok and any(str(bad) in m and "truncated" in m for m in rep.missing), rep.format()
    bad.write_bytes(b"")
    with pytest.raises(DataError) as e:
        facades.make_dataset("test", 32, root=root)[1]
    _one_line_error(e, str(bad))


def test_bad_arguments(prepared: Path):
    for split in ("validation", "", "TEST"):
        with pytest.raises(ConfigError) as e:
            facades.make_dataset(split, 64, root=prepared)
        _one_line_error(e, "split", "train", "test", "val")
    with pytest.raises(ConfigError) as e:
        facades.make_dataset("test", 64, root=prepared, direction="AtoB")
    _one_line_error(e, "unknown facades option", "direction")
    for size in (0, -3, 2.5, True, "64"):
        with pytest.raises(ConfigError) as e:
            facades.make_dataset("test", size, root=prepared)
        _one_line_error(e, "size")
    for subset in (0, -1, 1.5, False):
        with pytest.raises(ConfigError) as e:
            facades.make_dataset("test", 64, root=prepared, subset=subset)
        _one_line_error(e, "subset")


def test_missing_data_names_the_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    with pytest.raises(DataError) as e:
        facades.make_dataset("train", 64, root=tmp_path)
    _one_line_error(e, str(tmp_path / "train"), "bench data prepare facades --src <facades.tar.gz>")
    (tmp_path / "test").mkdir()
    with pytest.raises(DataError) as e:
        facades.make_dataset("test", 64, root=tmp_path)
    _one_line_error(e, str(tmp_path / "test"), "bench data prepare facades --src <facades.tar.gz>")
    monkeypatch.setenv("BENCH_DATA_ROOT", str(tmp_path / "empty"))     # no facades, no shared tar
    with pytest.raises(DataError) as e:
        facades.make_dataset("val", 64)
    _one_line_error(e, str(tmp_path / "empty" / "facades" / "val"), "bench data prepare facades --src",
                    "BENCH_DATA_ROOT")


# -- default root: the shared tar, unpacked once into the cache --------------------------------------

def test_default_root_unpacks_the_shared_tar(shared: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    fake_root = tmp_path / "data"
    (fake_root / "facades_pix2pix").mkdir(parents=True)
    (fake_root / "facades_pix2pix" / "facades.tar").symlink_to(shared / "facades.tar")
    monkeypatch.setenv("BENCH_DATA_ROOT", str(fake_root))
    monkeypatch.setenv("BENCH_CACHE_DIR", str(tmp_path / "cache"))
    before = facades.check()                                        # check never unpacks
    assert not before.ok and before.root == fake_root / "facades"
    assert any("facades_pix2pix" in h for h in before.hints), before.format()
    ds = facades.make_dataset("test", 32, subset=2)
    target = tmp_path / "cache" / "facades"
    assert len(ds) == 2 and ds.files[0] == target / "test" / "1.jpg" and (target / "PREPARED.json").is_file()
    after = facades.check()
    assert after.ok and after.root == target, after.format()
    (fake_root / "facades").mkdir()                                 # a real folder wins
    assert facades.check().root == fake_root / "facades"


# -- registration ---------------------------------------------------------------------------------

def test_registered_for_bench_data(prepared: Path, tmp_path: Path):
    from bench.data import manage
    from bench.registry import DATASETS
    from bench.tasks import TASKS
    assert DATASETS.get("facades") is facades.make_dataset
    assert DATASETS.origin("facades") == "bench.data.facades"
    assert manage.check("facades", prepared).ok
    src = _copy_split(prepared, tmp_path / "dl" / "facades", "val", ["1.jpg", "2.jpg"])
    root = manage.prepare("facades", src, tmp_path / "facades")
    assert facades.count(root) == {"val": 2}
    task = TASKS.get("labels2photo").bind(facades.INFO)
    assert task.info is facades.INFO
