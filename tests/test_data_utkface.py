"""UTKFace: file-name parsing, CAAE age bins, the name-hash split, samples, damaged files, check and prepare.

Real data: shared/data/utkface_mini (29 aligned & cropped faces in ``UTKFace/*.jpg.chip.jpg``, a plain
folder). References are computed here directly (a regular expression over the listing, PIL, zlib),
independently of the module under test.
"""

from __future__ import annotations

import io
import json
import re
import shutil
import tarfile
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from bench.data import utkface
from bench.data.base import PairedDataset
from bench.data.layout import CheckReport
from bench.errors import ConfigError, DataError

N_MINI = 29
# crc32(stem) % 100 < 10 for exactly these four faces of the mini set (computed by hand once, fixed here:
# a change of the split rule shows up as a failure)
MINI_TEST = ("2_1_2_20161219205100213.jpg.chip.jpg", "4_0_0_20170110213121589.jpg.chip.jpg",
             "7_1_1_20170116225209209.jpg.chip.jpg", "9_0_0_20170110224240532.jpg.chip.jpg")
MALFORMED = "39_1_20170116174525125.jpg.chip.jpg"        # a real UTKFace name with the race missing


@pytest.fixture(scope="module")
def shared(data_root: Path) -> Path:
    d = data_root / "utkface_mini"
    if not (d / "UTKFace").is_dir() or len(list((d / "UTKFace").glob("*.jpg"))) != N_MINI:
        pytest.skip("utkface_mini not in the shared data")
    return d


@pytest.fixture(scope="module")
def names(shared: Path) -> list[str]:
    return sorted(p.name for p in (shared / "UTKFace").iterdir() if p.name.endswith(".jpg"))


def _copy(shared: Path, dest: Path) -> Path:
    """A writable copy of the mini set's images under ``dest/UTKFace`` (copytree would copy read-only modes)."""
    (dest / "UTKFace").mkdir(parents=True)
    for p in (shared / "UTKFace").iterdir():
        shutil.copyfile(p, dest / "UTKFace" / p.name)
    return dest


def _labels(name: str) -> tuple[int, int, int]:
    a, g, r = name.split("_")[:3]
    return int(a), int(g), int(r)


def _reference_photo(path: Path, size: int) -> np.ndarray:
    with Image.open(path) as im:
        img = im.convert("RGB")
    if size != 200:
        img = img.resize((size, size), Image.BILINEAR)
    return np.asarray(img, dtype=np.float32).transpose(2, 0, 1) / np.float32(127.5) - np.float32(1.0)


def _one_line_error(exc: pytest.ExceptionInfo, *parts: str) -> str:
    msg = str(exc.value)
    assert "\n" not in msg and msg
    for n in parts:
        assert n in msg, (n, msg)
    return msg


# -- names and age bins ---------------------------------------------------------------------------

@pytest.mark.parametrize("name, want", [
    ("1_0_0_20161219140623097.jpg.chip.jpg", (1, 0, 0)),
    ("100_1_2_20170112213615815.jpg.chip.jpg", (100, 1, 2)),
    ("26_1_4_20170117154748893.jpg", (26, 1, 4)),                 # the in-the-wild form
    ("0_0_3_20170119180000000.JPG", (0, 0, 3)),
    ("116_0_1_20170120134744096.jpg.chip.jpg", (116, 0, 1)),
    ("some/folder/UTKFace/43_0_0_20170104183504030.jpg.chip.jpg", (43, 0, 0)),
    (Path("x") / "58_0_0_20170120224028072.jpg.chip.jpg", (58, 0, 0)),
    (MALFORMED, None),                                              # race missing
    ("61_1_20170109150557335.jpg.chip.jpg", None),                  # race missing
    ("53__0_20170116184028385.jpg.chip.jpg", None),                 # empty field
    ("1_0_0.jpg", None),                                            # no date
    ("1_0_0_.jpg.chip.jpg", None),
    ("117_0_0_20170120134744096.jpg", None),                        # age out of range
    ("30_2_0_20170120134744096.jpg", None),                         # gender out of range
    ("30_0_5_20170120134744096.jpg", None),                         # race out of range
    ("a_0_0_20170120134744096.jpg", None),
    ("-3_0_0_20170120134744096.jpg", None),
    ("30_0_0_20170120134744096.png", None),
    ("30_0_0_20170120134744096.jpg.chip", None),
    ("30_0_0_20170120134744096.jpg.txt", None),
    ("._30_0_0_20170120134744096.jpg", None),                       # macOS resource fork
    ("", None),
])
def test_parse_name(name, want):
    assert utkface.parse_name(name) == want


AGE_TABLE = [(0, 0), (5, 0), (6, 1), (10, 1), (11, 2), (15, 2), (16, 3), (20, 3), (21, 4), (30, 4),
             (31, 5), (40, 5), (41, 6), (50, 6), (51, 7), (60, 7), (61, 8), (70, 8), (71, 9), (116, 9)]


@pytest.mark.parametrize("age, want", AGE_TABLE)
def test_age_bin_boundaries(age, want):
    assert utkface.age_bin(age) == want
    assert utkface.age_bin(np.int64(age)) == want


def test_age_bins_constant():
    assert utkface.AGE_BINS == ((0, 5), (6, 10), (11, 15), (16, 20), (21, 30), (31, 40), (41, 50), (51, 60),
                                (61, 70), (71, None))
    assert utkface.AGE_BIN_NAMES[0] == "0-5" and utkface.AGE_BIN_NAMES[-1] == "71+"
    for age in range(0, 117):                       # every age lands in the bin whose range holds it
        lo, hi = utkface.AGE_BINS[utkface.age_bin(age)]
        assert lo <= age and (hi is None or age <= hi)
    for bad in (-1, 3.5, True, "7"):
        with pytest.raises(ValueError):
            utkface.age_bin(bad)


def test_info():
    info = utkface.INFO
    assert info.name == "utkface" and info.tasks == ("autoencode", "age2face")
    assert info.provides == ("photo", "age", "age_bin", "gender", "race", "index")
    assert "non-commercial" in info.source and info.description
    assert info.num_classes == len(utkface.AGE_BINS) == 10 and info.class_names == utkface.AGE_BIN_NAMES


# -- the split ------------------------------------------------------------------------------------

def _expected_split(name: str) -> str:
    return "test" if zlib.crc32(name.split(".")[0].encode()) % 100 < 10 else "train"


def test_split_rule_on_the_mini_set(shared: Path, names: list[str]):
    train = utkface.make_dataset("train", 200, root=shared)
    test = utkface.make_dataset("test", 200, root=shared)
    tr, te = [f.path.name for f in train.faces], [f.path.name for f in test.faces]
    assert tuple(te) == MINI_TEST and len(tr) == N_MINI - len(MINI_TEST)
    assert not set(tr) & set(te)                                      # disjoint
    assert sorted(tr + te) == names                                   # the union is every valid file
    assert tr == sorted(tr) and te == sorted(te)                      # sorted by file name
    assert all(_expected_split(n) == "train" for n in tr) and all(_expected_split(n) == "test" for n in te)
    again = utkface.make_dataset("train", 200, root=shared, seed=123)  # seed changes nothing
    assert [f.path.name for f in again.faces] == tr


def test_adding_files_moves_nothing(shared: Path, tmp_path: Path):
    root = _copy(shared, tmp_path / "utk")
    before = {s: [f.path.name for f in utkface.make_dataset(s, 200, root=root).faces] for s in ("train", "test")}
    extra = root / "more"
    extra.mkdir()
    src = next((root / "UTKFace").iterdir())
    added = [f"{a}_{a % 2}_{a % 5}_2017011{a % 10}000000{a:03d}.jpg.chip.jpg" for a in range(1, 80)]
    for n in added:
        shutil.copyfile(src, extra / n)
    after = {s: [f.path.name for f in utkface.make_dataset(s, 200, root=root).faces] for s in ("train", "test")}
    for s in ("train", "test"):
        assert set(before[s]) <= set(after[s])
        assert [n for n in after[s] if n in set(before[s])] == before[s]
    assert sum(len(v) for v in after.values()) == N_MINI + len(added)
    assert {n for n in added if _expected_split(n) == "test"} == set(after["test"]) - set(before["test"])
    assert 0 < len(after["test"]) - len(before["test"]) < len(added)


def test_both_name_forms_and_duplicates(shared: Path, tmp_path: Path):
    root = _copy(shared, tmp_path / "utk")
    chip = MINI_TEST[0]
    (root / "UTKFace" / chip).rename(root / "UTKFace" / chip.replace(".jpg.chip.jpg", ".jpg"))
    (root / "part2").mkdir()
    shutil.copyfile(root / "UTKFace" / MINI_TEST[1], root / "part2" / MINI_TEST[1])   # same file twice
    test = utkface.make_dataset("test", 200, root=root)
    got = [f.path.name for f in test.faces]
    assert len(got) == len(MINI_TEST) and chip.replace(".jpg.chip.jpg", ".jpg") in got   # same side, read once
    assert test.faces[1].path == root / "UTKFace" / MINI_TEST[1]                         # first in sorted order


def test_subset(shared: Path):
    full = utkface.make_dataset("train", 200, root=shared)
    ds = utkface.make_dataset("train", 32, root=shared, subset=5)
    assert len(ds) == 5 and [f.path for f in ds.faces] == [f.path for f in full.faces[:5]]
    assert [int(ds[i]["index"]) for i in range(5)] == list(range(5))
    assert len(utkface.make_dataset("test", 32, root=shared, subset=100)) == len(MINI_TEST)
    with pytest.raises(IndexError):
        ds[5]


# -- samples --------------------------------------------------------------------------------------

def test_samples_on_the_real_files(shared: Path):
    ds = utkface.make_dataset("train", 200, root=shared)
    assert isinstance(ds, PairedDataset) and ds.info is utkface.INFO
    for i in range(len(ds)):
        s = ds[i]
        name = ds.faces[i].path.name
        assert set(s) == set(utkface.INFO.provides)
        assert s["photo"].dtype == torch.float32 and s["photo"].shape == (3, 200, 200)
        assert -1.0 <= float(s["photo"].min()) and float(s["photo"].max()) <= 1.0
        assert float(s["photo"].std()) > 0.05                                  # a picture, not a constant
        for k in ("age", "age_bin", "gender", "race", "index"):
            assert s[k].dtype == torch.int64 and s[k].shape == (), k
        age, gender, race = _labels(name)
        assert (int(s["age"]), int(s["gender"]), int(s["race"])) == (age, gender, race)
        assert int(s["age_bin"]) == dict(AGE_TABLE).get(age, utkface.age_bin(age))
        assert int(s["index"]) == i
        assert np.array_equal(s["photo"].numpy(), _reference_photo(ds.faces[i].path, 200))
    assert int(ds[-1]["index"]) == len(ds) - 1


def test_resized_samples(shared: Path):
    ds = utkface.make_dataset("test", 64, root=shared)
    full = utkface.make_dataset("test", 200, root=shared)
    for i in range(len(ds)):
        p = ds[i]["photo"]
        assert p.shape == (3, 64, 64) and p.dtype == torch.float32
        assert -1.0 <= float(p.min()) and float(p.max()) <= 1.0
        assert np.allclose(p.numpy(), _reference_photo(ds.faces[i].path, 64), atol=1e-6)
        assert abs(float(p.mean()) - float(full[i]["photo"].mean())) < 0.02     # resizing keeps the brightness
    ages = {int(ds[i]["age"]) for i in range(len(ds))}
    assert ages == {2, 4, 7, 9}


def test_truncated_jpeg_is_a_data_error(shared: Path, tmp_path: Path):
    root = _copy(shared, tmp_path / "utk")
    ds = utkface.make_dataset("train", 64, root=root)
    k = 3
    bad = ds.faces[k].path
    bad.write_bytes(bad.read_bytes()[: bad.stat().st_size // 2])
    with pytest.raises(DataError) as e:
        ds[k]
    _one_line_error(e, str(bad), "bench data check utkface")
    ds[k + 1]                                                          # the others still read
    rep = utkface.check(root)
    assert not rep.ok and any(bad.name in m and "truncated" in m for m in rep.missing), rep.format()
    bad.write_bytes(b"")
    with pytest.raises(DataError) as e:
        utkface.make_dataset("train", 64, root=root)[k]
    _one_line_error(e, bad.name)


def test_malformed_names_are_skipped_and_counted(shared: Path, tmp_path: Path):
    root = _copy(shared, tmp_path / "utk")
    one = next((root / "UTKFace").iterdir())
    for n in (MALFORMED, "61_1_20170109142408075.jpg.chip.jpg", "1_0_0.jpg"):
        shutil.copyfile(one, root / "UTKFace" / n)
    (root / "UTKFace" / "notes.txt").write_text("not a face")
    (root / "UTKFace" / ".hidden_1_0_0_20170109142408075.jpg").write_bytes(b"")
    assert sum(len(utkface.make_dataset(s, 32, root=root)) for s in ("train", "test")) == N_MINI
    assert utkface.count(root) == {"train": N_MINI - len(MINI_TEST), "test": len(MINI_TEST)}
    rep = utkface.check(root)
    assert rep.ok, rep.format()
    assert any(re.search(r"malformed names: 3 \.jpg file", f) for f in rep.found), rep.found


# -- errors ---------------------------------------------------------------------------------------

def test_bad_arguments(shared: Path):
    with pytest.raises(ConfigError) as e:
        utkface.make_dataset("val", 64, root=shared)
    _one_line_error(e, "val", "train", "test")
    with pytest.raises(ConfigError) as e:
        utkface.make_dataset("test", 64, root=shared, colour=True)
    _one_line_error(e, "unknown UTKFace option", "colour")
    for size in (0, -3, 2.5, True, "64"):
        with pytest.raises(ConfigError) as e:
            utkface.make_dataset("test", size, root=shared)
        _one_line_error(e, "size")
    for subset in (0, -1, 1.5, False):
        with pytest.raises(ConfigError) as e:
            utkface.make_dataset("test", 64, root=shared, subset=subset)
        _one_line_error(e, "subset")


def test_missing_data_names_the_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    with pytest.raises(DataError) as e:
        utkface.make_dataset("train", 64, root=tmp_path)
    _one_line_error(e, str(tmp_path), "bench data prepare utkface --src <download>")
    with pytest.raises(DataError) as e:
        utkface.make_dataset("test", 64, root=tmp_path / "nothing")
    _one_line_error(e, str(tmp_path / "nothing"), "bench data prepare utkface --src", "BENCH_DATA_ROOT")
    monkeypatch.setenv("BENCH_DATA_ROOT", str(tmp_path))
    with pytest.raises(DataError) as e:
        utkface.make_dataset("train", 64)
    _one_line_error(e, str(tmp_path / "utkface"), "bench data prepare utkface --src")


def test_default_root(shared: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    assert utkface.check().root == shared                 # no <data_root>/utkface: the shared mini set
    assert len(utkface.make_dataset("test", 32)) == len(MINI_TEST)
    (tmp_path / "utkface").mkdir()
    (tmp_path / "utkface_mini").mkdir()
    monkeypatch.setenv("BENCH_DATA_ROOT", str(tmp_path))
    assert utkface.check().root == tmp_path / "utkface"   # a real folder wins


# -- check ----------------------------------------------------------------------------------------

def test_check_shared_folder(shared: Path):
    rep = utkface.check(shared)
    assert isinstance(rep, CheckReport) and rep.ok and not rep.missing, rep.format()
    assert rep.found == [f"train: {N_MINI - len(MINI_TEST)} images", f"test: {len(MINI_TEST)} images"]
    assert "OK" in rep.format().splitlines()[0]
    assert utkface.check(shared / "UTKFace").ok                       # the images folder itself works too


def test_check_empty_folder(tmp_path: Path):
    rep = utkface.check(tmp_path)
    assert not rep.ok and len(rep.missing) == 2 and not rep.found
    assert any("bench data prepare utkface" in h for h in rep.hints)
    assert "[age]_[gender]_[race]_[date&time]" in rep.format()


# -- prepare --------------------------------------------------------------------------------------

def _assert_prepared(root: Path, names: list[str], shared: Path) -> dict:
    assert sorted(p.name for p in (root / "UTKFace").iterdir()) == names
    marker = json.loads((root / "PREPARED.json").read_text())
    assert marker["counts"] == {"train": N_MINI - len(MINI_TEST), "test": len(MINI_TEST)}
    assert utkface.count(root) == marker["counts"]
    rep = utkface.check(root)
    assert rep.ok, rep.format()
    ds = utkface.make_dataset("test", 200, root=root)
    assert tuple(f.path.name for f in ds.faces) == MINI_TEST
    assert np.array_equal(ds[0]["photo"].numpy(), _reference_photo(shared / "UTKFace" / MINI_TEST[0], 200))
    return marker


def test_prepare_from_the_mini_folder(shared: Path, names: list[str], tmp_path: Path):
    root = utkface.prepare(shared, tmp_path / "utkface")
    assert root == tmp_path / "utkface" and (root / "PREPARED.json").is_file()
    marker = _assert_prepared(root, names, shared)
    assert marker["files"] == {"images": N_MINI, "malformed_skipped": 0}
    assert sorted(p.name for p in (shared / "UTKFace").iterdir()) == names      # the source is untouched


def test_prepare_from_the_official_archive_layout(shared: Path, names: list[str], tmp_path: Path):
    tgz = tmp_path / "UTKFace.tar.gz"
    with tarfile.open(tgz, "w:gz") as tf:
        for n in names:
            tf.add(shared / "UTKFace" / n, arcname=f"UTKFace/{n}")
        face = (shared / "UTKFace" / names[0]).read_bytes()       # (tf.add of the same file twice makes a link)
        for arcname, data in ((f"UTKFace/{MALFORMED}", face), (f"__MACOSX/UTKFace/._{names[0]}", b"\0" * 4)):
            info = tarfile.TarInfo(arcname)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    root = utkface.prepare(tgz, tmp_path / "prepared")
    marker = _assert_prepared(root, names, shared)
    assert marker["files"] == {"images": N_MINI, "malformed_skipped": 1}
    root2 = utkface.prepare(tgz, root)                                 # again: the same folder, no duplicates
    assert _assert_prepared(root2, names, shared)["counts"] == marker["counts"]


def test_prepare_marker_catches_deleted_files(shared: Path, tmp_path: Path):
    root = utkface.prepare(shared, tmp_path / "utkface")
    (root / "UTKFace" / MINI_TEST[0]).unlink()
    rep = utkface.check(root)
    assert not rep.ok and any("3 files on disk, 4 when it was prepared" in m for m in rep.missing), rep.format()


def test_prepare_nothing_recognised(tmp_path: Path):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "notes.txt").write_text("nothing here")
    (tmp_path / "src" / MALFORMED).write_bytes(b"\xff\xd8\xff")
    with pytest.raises(DataError) as e:
        utkface.prepare(tmp_path / "src", tmp_path / "out")
    _one_line_error(e, "no UTKFace images", str(tmp_path / "src"))
    assert not (tmp_path / "out").exists()


def test_prepare_rejects_a_damaged_download(shared: Path, tmp_path: Path):
    src = _copy(shared, tmp_path / "src")
    bad = src / "UTKFace" / MINI_TEST[2]
    bad.write_bytes(bad.read_bytes()[:1000])
    with pytest.raises(DataError) as e:
        utkface.prepare(src, tmp_path / "out")
    _one_line_error(e, MINI_TEST[2], "truncated")
    assert not (tmp_path / "out").exists()


def test_registered_for_bench_data(shared: Path, tmp_path: Path):
    from bench.data import manage
    from bench.registry import DATASETS
    assert DATASETS.get("utkface") is utkface.make_dataset
    assert manage.check("utkface", shared).ok
    root = manage.prepare("utkface", shared, tmp_path / "utkface")
    assert utkface.count(root) == {"train": N_MINI - len(MINI_TEST), "test": len(MINI_TEST)}
