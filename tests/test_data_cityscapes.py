"""Cityscapes: the official label table, colour decoding, both layouts, check and prepare.

Real data: the pix2pix val tar in shared/data/cityscapes_pix2pix (500 JPEGs, 16 MB), prepared once
per module into a temporary folder. The official layout is tested on a fixture written here.
"""

from __future__ import annotations

import hashlib
import json
import io
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from bench.data import cityscapes as cs
from bench.data import cityscapes_labels as cl
from bench.data.layout import CheckReport, clean_member_name
from bench.errors import ConfigError, DataError

# From the Cityscapes definition (cityscapesScripts labels.py): labelId -> trainId, and colours.
OFFICIAL_IDS = {0: 255, 1: 255, 6: 255, 7: 0, 8: 1, 9: 255, 11: 2, 17: 5, 18: 255, 23: 10, 24: 11,
                26: 13, 29: 255, 31: 16, 33: 18}
OFFICIAL_COLOURS = {0: (128, 64, 128), 2: (70, 70, 70), 10: (70, 130, 180), 13: (0, 0, 142),
                    18: (119, 11, 32)}


def _val_tar(data_root: Path) -> Path:
    p = data_root / "cityscapes_pix2pix" / "cityscapes_val.tar"
    if not p.is_file():
        pytest.skip("cityscapes_val.tar not in the shared data")
    return p


@pytest.fixture(scope="module")
def prepared_val(data_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return cs.prepare(_val_tar(data_root), tmp_path_factory.mktemp("cityscapes"))


# -- the label table ------------------------------------------------------------------------------

def test_label_ids_to_train_ids_matches_official_table():
    for label_id, train_id in OFFICIAL_IDS.items():
        assert cl.label_ids_to_train_ids(np.array([label_id], dtype=np.uint8))[0] == train_id
    ids = torch.tensor([[7, 26, 0], [-1, 34, 200]])
    assert cl.label_ids_to_train_ids(ids).tolist() == [[0, 13, 255], [255, 255, 255]]
    assert len(cl.LABELS) == 35 and cl.NUM_CLASSES == 19
    assert cl.CLASS_NAMES[0] == "road" and cl.CLASS_NAMES[13] == "car" and cl.CLASS_NAMES[18] == "bicycle"
    for train_id, colour in OFFICIAL_COLOURS.items():
        assert cl.PALETTE[train_id] == colour
    assert cs.INFO.palette == cl.PALETTE and cs.INFO.ignore_index == 255 and cs.INFO.num_classes == 19


def test_colour_round_trip_noise_and_void_colours():
    ids = np.array([list(range(19)) + [255]], dtype=np.uint8)
    rgb = cl.train_ids_to_colors(ids)
    assert tuple(rgb[0, 0]) == (128, 64, 128) and tuple(rgb[0, 19]) == (0, 0, 0)
    assert np.array_equal(cl.colors_to_train_ids(rgb), ids)
    noisy = np.clip(rgb.astype(int) + np.array([9, -9, 9]), 0, 255).astype(np.uint8)
    assert np.array_equal(cl.colors_to_train_ids(noisy), ids)
    # void colours of the full table are not absorbed by a neighbouring class
    parking, ground, white = (250, 170, 160), (81, 0, 81), (255, 255, 255)
    out = cl.colors_to_train_ids(np.array([[parking, ground, white]], dtype=np.uint8))
    assert out.tolist() == [[255, 255, 255]]
    # beyond the tolerance -> ignore; with an infinite tolerance the nearest colour wins
    far = np.array([[[128, 64 - 50, 128]]], dtype=np.uint8)     # 50 from road, 68 from ground
    assert cl.colors_to_train_ids(far, tolerance=40)[0, 0] == 255
    assert cl.colors_to_train_ids(far, tolerance=float("inf"))[0, 0] == 0


def test_nearest_color_equals_brute_force():
    table = np.array([lab.color for lab in cl.LABELS], dtype=np.int64)
    train = np.array([lab.train_id for lab in cl.LABELS])
    rgb = np.random.default_rng(1).integers(0, 256, (24, 24, 3), dtype=np.uint8)
    d2 = ((rgb.reshape(-1, 1, 3).astype(np.int64) - table[None]) ** 2).sum(-1)
    ids, dist = cl.nearest_color(rgb)
    assert np.allclose(dist.ravel(), np.sqrt(d2.min(1)), atol=1e-3)
    best = d2 == d2.min(1, keepdims=True)
    # the chosen id is one of the labels at the minimum distance (shared colours: the trained class)
    for k, i in enumerate(ids.ravel()):
        cands = set(train[best[k]].tolist())
        assert i in cands and (i != 255 or cands == {255})


# -- prepare / the pix2pix layout on the real files -----------------------------------------------

def test_prepare_val_tar_matches_manifest(prepared_val: Path, data_root: Path):
    files = sorted((prepared_val / "val").glob("*.jpg"))
    assert len(files) == 500
    manifest = {}
    for line in (data_root / "cityscapes_pix2pix" / "MANIFEST_val.sha256").read_text().splitlines():
        digest, name = line.split(maxsplit=1)
        manifest[name.strip()] = digest
    for n in (1, 2, 250, 500):
        got = hashlib.sha256((prepared_val / "val" / f"{n}.jpg").read_bytes()).hexdigest()
        assert got == manifest[f"cityscapes/val/{n}.jpg"]


def test_colour_decode_of_shared_jpegs_is_mostly_within_tolerance(prepared_val: Path):
    near, counts = [], np.zeros(256, dtype=np.int64)
    for n in range(1, 21):
        rgb = np.asarray(Image.open(prepared_val / "val" / f"{n}.jpg").convert("RGB"))
        ids, dist = cl.nearest_color(rgb[:, 256:])
        near.append((dist <= cl.DEFAULT_TOLERANCE).mean())
        counts += np.bincount(ids[dist <= cl.DEFAULT_TOLERANCE], minlength=256)
    assert np.mean(near) > 0.90
    assert int(np.argmax(counts[:19])) == 0            # road is Cityscapes' most frequent class


def test_pix2pix_samples(prepared_val: Path, monkeypatch: pytest.MonkeyPatch):
    ds = cs.make_dataset("test", 256, root=prepared_val, subset=3)
    assert len(ds) == 3 and ds.layout == "pix2pix" and ds.info.name == "cityscapes"
    s = ds[0]
    assert s["photo"].dtype == torch.float32 and s["photo"].shape == (3, 256, 256)
    assert s["label"].dtype == torch.int64 and s["label"].shape == (256, 256)
    assert s["label_rgb"].shape == (3, 256, 256) and s["index"].item() == 0
    # at the native 256 the photo is the JPEG's left half, exactly
    jpeg = np.asarray(Image.open(prepared_val / "val" / "1.jpg").convert("RGB"))
    ref = torch.from_numpy(jpeg[:, :256].astype(np.float32)).permute(2, 0, 1) / 127.5 - 1
    assert torch.allclose(s["photo"], ref, atol=1e-6)
    lab = s["label"]
    assert set(lab.unique().tolist()) <= set(range(19)) | {255}
    pal = torch.tensor(cl.PALETTE + ((0, 0, 0),), dtype=torch.float32) / 127.5 - 1
    idx = torch.where(lab == 255, torch.tensor(19), lab)
    assert torch.equal(s["label_rgb"], pal[idx].permute(2, 0, 1))
    # the decoded map is cached under the JPEG's sha256, and read back without decoding again
    digest = hashlib.sha256((prepared_val / "val" / "1.jpg").read_bytes()).hexdigest()
    assert list(cs.cache_dir().rglob(f"{digest}.png"))
    monkeypatch.setattr(cl, "colors_to_train_ids", lambda *a, **k: pytest.fail("decoded twice"))
    assert torch.equal(ds[0]["label"], lab)
    small = cs.make_dataset("test", 64, root=prepared_val, subset=1)[0]
    assert small["photo"].shape == (3, 64, 64) and small["label"].shape == (64, 64)
    assert -1.0 <= small["photo"].min() and small["photo"].max() <= 1.0
    assert set(small["label"].unique().tolist()) <= set(lab.unique().tolist())   # nearest: no new ids


def test_splits_options_and_check(prepared_val: Path, tmp_path: Path):
    with pytest.raises(DataError):
        cs.make_dataset("train", 64, root=prepared_val)      # only val was prepared
    with pytest.raises(ConfigError):
        cs.make_dataset("validation", 64, root=prepared_val)
    with pytest.raises(ConfigError):
        cs.make_dataset("test", 64, root=prepared_val, colour_tol=3)
    with pytest.raises(DataError):
        cs.make_dataset("test", 64, root=tmp_path)
    rep = cs.check(prepared_val)
    assert not rep.ok and rep.layout == "pix2pix"
    assert "val/*.jpg: 500" in rep.found and "train/*.jpg" in rep.missing
    assert "leftImg8bit" in rep.format()
    empty = cs.check(tmp_path)
    assert not empty.ok and empty.layout is None and empty.missing


def test_auto_prepare_from_the_shared_tars(data_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    fake_root = tmp_path / "data"
    (fake_root / "cityscapes_pix2pix").mkdir(parents=True)
    (fake_root / "cityscapes_pix2pix" / "cityscapes_val.tar").symlink_to(_val_tar(data_root))
    monkeypatch.setenv("BENCH_DATA_ROOT", str(fake_root))
    monkeypatch.setenv("BENCH_CACHE_DIR", str(tmp_path / "cache"))   # a val-only unpack must not leak
    ds = cs.make_dataset("test", 32, subset=2)
    assert len(ds) == 2 and ds.root == cs.cache_dir() / "cityscapes"
    assert (ds.root / "PREPARED.json").is_file()


def test_prepare_refuses_path_traversal(tmp_path: Path):
    buf = io.BytesIO()
    Image.new("RGB", (8, 4)).save(buf, format="JPEG")
    data = buf.getvalue()
    tar_path = tmp_path / "evil.tar"
    with tarfile.open(tar_path, "w") as tf:
        for name in ("../val/evil.jpg", "cityscapes/val/../../../val/evil2.jpg", "/abs/val/3.jpg",
                     "cityscapes/val/1.jpg"):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
        link = tarfile.TarInfo("cityscapes/val/4.jpg")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tf.addfile(link)
    root = tmp_path / "out" / "cityscapes"
    cs.prepare(tar_path, root)
    written = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file())
    assert written == ["evil.tar", "out/cityscapes/PREPARED.json", "out/cityscapes/val/1.jpg"]


# -- the official layout, on a fixture -------------------------------------------------------------

def _official_fixture(root: Path) -> None:
    ids = np.full((32, 64), 7, dtype=np.uint8)        # road
    ids[:, 32:] = 26                                   # car
    ids[:8] = 0                                        # unlabeled
    rng = np.random.default_rng(0)
    for split, city, n in (("train", "aachen", 1), ("val", "lindau", 2)):
        for k in range(n):
            stem = f"{city}_00000{k}_000019"
            img = root / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png"
            gt = root / "gtFine" / split / city / f"{stem}_gtFine_labelIds.png"
            img.parent.mkdir(parents=True, exist_ok=True)
            gt.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 256, (32, 64, 3), dtype=np.uint8)).save(img)
            Image.fromarray(ids).save(gt)
            Image.fromarray(ids).save(gt.with_name(f"{stem}_gtFine_color.png"))   # not taken


def test_official_layout_fixture(tmp_path: Path):
    root = tmp_path / "cityscapes"
    _official_fixture(root)
    ds = cs.make_dataset("test", 16, root=root)
    assert ds.layout == "official" and len(ds) == 2
    lab = ds[0]["label"]
    expected = torch.full((16, 16), 0, dtype=torch.int64)
    expected[:, 8:] = 13
    expected[:4] = 255
    assert torch.equal(lab, expected)
    assert ds[1]["photo"].shape == (3, 16, 16) and len(cs.make_dataset("train", 16, root=root)) == 1
    assert cs.check(root).ok


def test_prepare_official_zip_keeps_only_what_the_loader_reads(tmp_path: Path):
    src = tmp_path / "download"
    _official_fixture(src)
    zpath = tmp_path / "gtFine_and_leftImg8bit.zip"
    with zipfile.ZipFile(zpath, "w") as zf:
        for p in src.rglob("*.png"):
            zf.write(p, p.relative_to(src).as_posix())
        zf.writestr("../outside.png", b"x")
    root = cs.prepare(zpath, tmp_path / "prepared")
    names = sorted(p.relative_to(root).as_posix() for p in root.rglob("*.png"))
    assert len(names) == 6 and not any("color" in n for n in names)
    assert not (tmp_path / "outside.png").exists()
    assert cs.check(root).ok
    assert cs.make_dataset("test", 8, root=root, layout="official")[0]["label"].shape == (8, 8)
    # a folder works as a source too (files are linked or copied)
    root2 = cs.prepare(src, tmp_path / "from_folder")
    assert cs.check(root2).ok


def test_registered_factory_and_tasks_bind(prepared_val: Path):
    from bench.registry import DATASETS, TASKS
    assert DATASETS.get("cityscapes") is cs.make_dataset
    for task in ("labels2photo", "photo2labels"):
        TASKS.get(task).bind(cs.INFO)


def test_layout_helpers_and_unwritable_root(tmp_path: Path):
    assert clean_member_name("./cityscapes//val/1.jpg") == "cityscapes/val/1.jpg"
    for bad in ("../x.jpg", "a/../../x.jpg", "/etc/passwd", "C:/x.jpg", "..\\x.jpg", ""):
        assert clean_member_name(bad) is None
    rep = CheckReport(name="gaussians-2d", ok=True, expected="generated", found=[], missing=[])
    assert rep.format().splitlines()[0] == "gaussians-2d: OK"
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    with pytest.raises(DataError, match="cannot write"):
        cs.prepare(tmp_path, blocker / "cityscapes")


# -- faults: bad files, broken archives, interrupted preparation -----------------------------------

def _pix2pix_tar(path: Path, n: int, *, truncate: bool = False) -> Path:
    buf = io.BytesIO()
    Image.new("RGB", (64, 32), (128, 64, 128)).save(buf, format="JPEG")
    data = buf.getvalue()
    with tarfile.open(path, "w") as tf:
        for k in range(n):
            info = tarfile.TarInfo(f"cityscapes/val/{k + 1}.jpg")
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    if truncate:
        raw = path.read_bytes()
        path.write_bytes(raw[: len(raw) // 2])
    return path


def test_a_zero_byte_image_is_a_one_line_data_error(tmp_path: Path):
    root = cs.prepare(_pix2pix_tar(tmp_path / "v.tar", 3), tmp_path / "cs")
    (root / "val" / "2.jpg").write_bytes(b"")
    ds = cs.make_dataset("test", 32, root=root)
    assert ds[0]["photo"].shape == (3, 32, 32)
    with pytest.raises(DataError) as e:
        ds[1]
    msg = str(e.value)
    assert "\n" not in msg and "2.jpg" in msg and "bench data check cityscapes" in msg


def test_a_truncated_archive_is_a_one_line_error_and_prepares_nothing(tmp_path: Path):
    root = tmp_path / "cs"
    with pytest.raises(DataError) as e:
        cs.prepare(_pix2pix_tar(tmp_path / "v.tar", 40, truncate=True), root)
    assert "truncated or corrupt" in str(e.value) and "download it again" in str(e.value)
    assert not root.exists() and not list(tmp_path.glob(".cs.partial-*"))


def test_prepare_is_atomic_and_check_verifies_the_counts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    # regression: a crashed prepare left 167 of 2975 images that `bench data check` called OK
    root = cs.prepare(_pix2pix_tar(tmp_path / "v.tar", 6), tmp_path / "cs")
    marker = json.loads((root / "PREPARED.json").read_text())
    assert marker["counts"] == {"train": 0, "val": 6} and marker["complete"]
    # a second prepare that dies half way leaves the first one as it was
    from bench.data import layout

    calls = {"n": 0}
    real = layout.write_member

    def dying(m, dest, link=True):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        real(m, dest, link=link)
    monkeypatch.setattr(cs, "write_member", dying)
    with pytest.raises(KeyboardInterrupt):
        cs.prepare(_pix2pix_tar(tmp_path / "w.tar", 9), root)
    assert len(list((root / "val").iterdir())) == 6 and not list(tmp_path.glob(".cs.partial-*"))
    # files lost after preparation: check says so
    for k in (1, 2):
        (root / "val" / f"{k}.jpg").unlink()
    rep = cs.check(root)
    assert not rep.ok and any("4 files on disk, 6 when it was prepared" in m for m in rep.missing)
    # a prepare killed outright (SIGKILL) leaves its temporary folder: check points at it
    (tmp_path / ".cs.partial-123-abcd").mkdir()
    assert any("interrupted `bench data prepare`" in h for h in cs.check(root).hints)
