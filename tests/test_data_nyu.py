"""NYU Depth V2: the 10 shared pairs, PNG-pair fixtures, the labeled .mat reader, split, check, prepare."""

from __future__ import annotations

import io
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from bench.data import nyu_depth as nyu
from bench.errors import ConfigError, DataError

# Per-image depth min / max / mean in millimetres, from shared/data/nyu_depth_v2_mini/SOURCE.md.
MINI_STATS = {0: (1798, 3615, 2879.1), 1: (1123, 2609, 1755.9), 2: (999, 7210, 2414.7),
              3: (1197, 3294, 2656.4), 4: (1162, 9929, 3253.1), 5: (894, 9961, 2805.6),
              6: (1209, 9934, 3245.3), 7: (1196, 9916, 3091.4), 8: (1443, 5935, 2481.0),
              9: (2044, 5886, 4092.1)}


@pytest.fixture
def mini(data_root: Path) -> Path:
    p = data_root / "nyu_depth_v2_mini"
    if not p.is_dir():
        pytest.skip("nyu_depth_v2_mini not in the shared data")
    return p


def _write_pair(folder: Path, key: str, rgb: np.ndarray, depth_mm: np.ndarray) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rgb).save(folder / f"image_{key}.png")
    Image.fromarray(depth_mm.astype(np.uint16)).save(folder / f"depth_{key}.png")


def _edge_pair() -> tuple[np.ndarray, np.ndarray]:
    """8x8: dark left half at 1 m, bright right half at 3 m, one hole (0) at the top left."""
    rgb = np.zeros((8, 8, 3), dtype=np.uint8)
    rgb[:, 4:] = 255
    depth = np.full((8, 8), 1000, dtype=np.uint16)
    depth[:, 4:] = 3000
    depth[0, 0] = 0
    return rgb, depth


# -- the shared mini set --------------------------------------------------------------------------

def test_mini_pairs_shapes_metres_and_published_stats(mini: Path):
    ds = nyu.make_dataset("test", 128, root=mini)
    assert len(ds) == 10 and ds.info.name == "nyu-depth-v2" and ds.info.max_depth == 10.0
    for i in range(10):
        s = ds[i]
        assert s["photo"].shape == (3, 128, 128) and s["depth"].shape == (1, 128, 128)
        assert s["photo"].dtype == torch.float32 and s["depth"].dtype == torch.float32
        assert -1.0 <= s["photo"].min() and s["photo"].max() <= 1.0 and s["index"].item() == i
        d = s["depth"]
        lo, hi, mean = MINI_STATS[i]
        assert bool(s["valid"].all())                                  # dense, in-painted maps
        assert lo / 1000 - 1e-6 <= d.min() and d.max() <= hi / 1000 + 1e-6
        assert abs(d.mean().item() - mean / 1000) < 0.05 * mean / 1000
        assert 0.5 <= d.min() and d.max() <= 10.0                       # indoor range


def test_mini_is_the_default_and_subset(mini: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("BENCH_DATA_ROOT", str(mini.parent))
    if (mini.parent / "nyu_depth_v2").exists():
        pytest.skip("a full nyu_depth_v2 folder shadows the mini set")
    ds = nyu.make_dataset("train", 32, subset=3)
    assert len(ds) == 3 and [p.name for p, _ in ds.pairs] == ["image_0.png", "image_1.png", "image_2.png"]
    rep = nyu.check()
    assert rep.ok and rep.layout == "pairs" and rep.root == mini


# -- PNG pair fixtures ----------------------------------------------------------------------------

def test_millimetres_holes_and_alignment(tmp_path: Path):
    rgb, depth = _edge_pair()
    _write_pair(tmp_path, "0", rgb, depth)
    s = nyu.make_dataset("test", 8, root=tmp_path)[0]           # native size: no resampling
    expected = torch.from_numpy(depth.astype(np.float32) / 1000)[None]
    assert torch.equal(s["depth"], expected)
    assert not s["valid"][0, 0, 0] and s["valid"].sum() == 63
    small = nyu.make_dataset("test", 4, root=tmp_path)[0]
    # the edge stays in the same place in photo and depth, depth is not blended across it
    assert torch.equal(small["depth"][0, 1:], torch.tensor([[1.0, 1.0, 3.0, 3.0]] * 3))
    assert (small["photo"][:, :, :2] < -0.5).all() and (small["photo"][:, :, 2:] > 0.5).all()
    assert set(small["depth"].unique().tolist()) <= {0.0, 1.0, 3.0}


def test_split_folders_natural_order_and_naming_variants(tmp_path: Path):
    rgb, depth = _edge_pair()
    for k in ("1", "10", "2"):
        _write_pair(tmp_path / "train" / "scene_a", k, rgb, depth)
    _write_pair(tmp_path / "test", "5", rgb, depth)
    Image.fromarray(rgb).save(tmp_path / "test" / "00007_colors.png")
    Image.fromarray(depth).save(tmp_path / "test" / "00007_depth.png")
    Image.fromarray(rgb).save(tmp_path / "test" / "rgb_00009.jpg")
    Image.fromarray(depth).save(tmp_path / "test" / "sync_depth_00009.png")
    train = nyu.make_dataset("train", 8, root=tmp_path)
    assert [p.name for p, _ in train.pairs] == ["image_1.png", "image_2.png", "image_10.png"]
    test = nyu.make_dataset("test", 8, root=tmp_path)
    assert sorted(d.name for _, d in test.pairs) == ["00007_depth.png", "depth_5.png", "sync_depth_00009.png"]
    assert len(nyu.make_dataset("train", 8, root=tmp_path, subset=2)) == 2
    rep = nyu.check(tmp_path)
    assert rep.ok and "train/: 3 pairs" in rep.found and "test/: 3 pairs" in rep.found


def test_errors(tmp_path: Path):
    with pytest.raises(ConfigError):
        nyu.make_dataset("val", 8, root=tmp_path)
    with pytest.raises(ConfigError):
        nyu.make_dataset("test", 8, root=tmp_path, max_depth=5)
    with pytest.raises(DataError):
        nyu.make_dataset("test", 8, root=tmp_path)
    rep = nyu.check(tmp_path)
    assert not rep.ok and rep.missing and "nyu_depth_v2_labeled.mat" in rep.format()
    rgb, depth = _edge_pair()
    Image.fromarray(rgb).save(tmp_path / "image_0.png")
    Image.fromarray((depth // 20).astype(np.uint8)).save(tmp_path / "depth_0.png")     # 8-bit: wrong
    with pytest.raises(DataError, match="16-bit"):
        nyu.make_dataset("test", 8, root=tmp_path)[0]


# -- the official labeled .mat --------------------------------------------------------------------

def test_official_split_indices():
    test, train = nyu.EIGEN_TEST_INDICES, nyu.EIGEN_TRAIN_INDICES
    assert len(test) == 654 and len(train) == 795 and not set(test) & set(train)
    assert sorted(test + train) == list(range(1449))
    # splits.mat testNdxs (1-based) begins 1, 2, 9, 14, 15 and ends with 1449
    assert [i + 1 for i in test[:5]] == [1, 2, 9, 14, 15] and test[-1] + 1 == 1449


def _write_mat(root: Path, n: int = 4, h: int = 6, w: int = 6) -> tuple[np.ndarray, np.ndarray]:
    h5py = pytest.importorskip("h5py")
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (n, h, w, 3), dtype=np.uint8)
    depths = rng.uniform(0.5, 9.5, (n, h, w)).astype(np.float32)
    depths[:, 0, 0] = 0.0
    root.mkdir(parents=True, exist_ok=True)
    with h5py.File(root / nyu.MAT_NAME, "w") as f:      # MATLAB v7.3 stores column-major arrays
        f["images"] = images.transpose(0, 3, 2, 1)          # (N, 3, W, H)
        f["depths"] = depths.transpose(0, 2, 1)             # (N, W, H)
    return images, depths


def test_labeled_mat_reader_with_splits_mat(tmp_path: Path):
    from scipy.io import savemat
    images, depths = _write_mat(tmp_path, h=6, w=6)
    savemat(tmp_path / nyu.SPLITS_NAME, {"trainNdxs": np.array([[1], [3]]), "testNdxs": np.array([[2], [4]])})
    ds = nyu.make_dataset("test", 6, root=tmp_path)
    assert len(ds) == 2 and ds.indices == [1, 3]
    s = ds[1]
    ref = torch.from_numpy(images[3].astype(np.float32)).permute(2, 0, 1) / 127.5 - 1
    assert torch.allclose(s["photo"], ref, atol=1e-6)
    assert torch.equal(s["depth"][0], torch.from_numpy(depths[3]))
    assert not s["valid"][0, 0, 0] and s["valid"].sum() == 35
    assert nyu.make_dataset("train", 6, root=tmp_path, subset=1).indices == [0]
    pickle.loads(pickle.dumps(ds))[0]                        # DataLoader workers reopen the file
    rep = nyu.check(tmp_path)
    assert rep.ok and rep.layout == "mat" and nyu.SPLITS_NAME in rep.found


def test_labeled_mat_non_square_and_missing_split(tmp_path: Path):
    images, depths = _write_mat(tmp_path, n=3, h=4, w=8)
    with pytest.raises(DataError, match="splits.mat"):
        nyu.make_dataset("test", 4, root=tmp_path)           # 3 frames: the built-in split cannot apply
    from scipy.io import savemat
    savemat(tmp_path / nyu.SPLITS_NAME, {"trainNdxs": np.array([[1]]), "testNdxs": np.array([[2], [3]])})
    s = nyu.make_dataset("test", 8, root=tmp_path)[0]          # frame 1, 4x8 squashed to 8x8
    assert s["depth"].shape == (1, 8, 8)
    assert torch.equal(s["depth"][0, ::2], torch.from_numpy(depths[1]))   # rows doubled by nearest


# -- prepare ----------------------------------------------------------------------------------------

def test_prepare_from_mini_folder(mini: Path, tmp_path: Path):
    root = nyu.prepare(mini, tmp_path / "nyu")
    assert len(list(root.glob("image_*.png"))) == 10 and len(list(root.glob("depth_*.png"))) == 10
    assert len(nyu.make_dataset("test", 16, root=root)) == 10


def test_prepare_from_archive_keeps_splits_and_refuses_traversal(tmp_path: Path):
    rgb, depth = _edge_pair()
    buf_rgb, buf_d = io.BytesIO(), io.BytesIO()
    Image.fromarray(rgb).save(buf_rgb, format="PNG")
    Image.fromarray(depth).save(buf_d, format="PNG")
    tar_path = tmp_path / "nyu_pairs.tar.gz"
    with tarfile.open(tar_path, "w:gz") as tf:
        for name, data in (("nyu/train/kitchen/image_1.png", buf_rgb), ("nyu/train/kitchen/depth_1.png", buf_d),
                           ("nyu/test/image_2.png", buf_rgb), ("nyu/test/depth_2.png", buf_d),
                           ("../image_3.png", buf_rgb), ("nyu/README.txt", buf_d)):
            info = tarfile.TarInfo(name)
            info.size = len(data.getvalue())
            tf.addfile(info, io.BytesIO(data.getvalue()))
    root = nyu.prepare(tar_path, tmp_path / "out")
    files = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file())
    assert files == ["nyu_pairs.tar.gz", "out/PREPARED.json", "out/test/depth_2.png", "out/test/image_2.png",
                     "out/train/kitchen/depth_1.png", "out/train/kitchen/image_1.png"]
    assert len(nyu.make_dataset("train", 8, root=root)) == 1
    with pytest.raises(DataError):
        nyu.prepare(tmp_path / "out" / "test" / "image_2.png", tmp_path / "bad")


def test_prepare_labeled_mat(tmp_path: Path):
    _write_mat(tmp_path / "download")
    root = nyu.prepare(tmp_path / "download" / nyu.MAT_NAME, tmp_path / "nyu")
    assert (root / nyu.MAT_NAME).is_file() and nyu.check(root).layout == "mat"


def test_registered_factory_and_task_bind():
    from bench.registry import DATASETS, TASKS
    assert DATASETS.get("nyu-depth-v2") is nyu.make_dataset
    t = TASKS.get("photo2depth").bind(nyu.INFO)
    assert t.info.max_depth == 10.0
