"""NYU Depth V2 (Silberman et al. 2012) for photo->depth, from PNG pairs or the official labeled .mat.

Under ``<data_root>/nyu_depth_v2/`` (or ``root``), one of:

- PNG pairs in ``train/`` and ``test/`` (searched recursively) or flat in the root (then they serve
  both splits, logged: smoke tests only): ``image_<k>.png`` + ``depth_<k>.png`` (the shared mini set),
  ``rgb_<k>.jpg`` + ``sync_depth_<k>.png`` or ``<k>_colors.png`` + ``<k>_depth.png``; depth is uint16
  millimetres (``depth_scale=1000``), 0 where the sensor gave nothing.
- ``nyu_depth_v2_labeled.mat``, the official 1449 frames (MATLAB v7.3 = HDF5, read with ``h5py``):
  ``images`` (N, 3, W, H) uint8 and ``depths`` (N, W, H) metres, as h5py shows MATLAB's column-major
  arrays. Split: a ``splits.mat`` beside it (1-based ``trainNdxs`` / ``testNdxs``) when present, else
  the built-in official split, whose 654 test frames are the Eigen et al. test set (795 train).

With no ``root`` and no ``<data_root>/nyu_depth_v2``, the shared 10-pair ``nyu_depth_v2_mini`` is used.
Samples: ``photo`` (3, S, S) in [-1, 1] (bilinear, antialiased), ``depth`` (1, S, S) metres, 0 where
invalid (nearest neighbour: no depth invented across edges), ``valid`` (1, S, S) bool, ``index``.
Frames are squashed from 640x480 to S x S; ``info.extra`` gives the Eigen crop in 480x640 pixels.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from bench.data.base import DatasetInfo, PairedDataset, reading
from bench.data.layout import CheckReport, iter_members, prepare_atomically, safe_join, verify_marker, write_member
from bench.data.paths import data_root
from bench.errors import ConfigError, DataError
from bench.progress import bar as tqdm

log = logging.getLogger(__name__)

MAT_NAME, SPLITS_NAME = "nyu_depth_v2_labeled.mat", "splits.mat"
MINI_FOLDER = "nyu_depth_v2_mini"
LAYOUTS = ("auto", "pairs", "mat")
NUM_LABELED = 1449

# The official split of the labeled set, test side, as 0-based frame indices (= testNdxs - 1 of the
# dataset's splits.mat): 654 frames. Checked against two independent public copies (a per-frame
# export list and an index list taken from splits.mat); a splits.mat beside the data takes precedence.
_EIGEN_TEST_RANGES = (
    "0-1 8 13-17 20 27-42 45-46 55-56 58-62 75-78 83-90 116-118 124-128 130-133 136 152-154 166-168 "
    "170-175 179-201 206-211 219-221 249 263 270-272 278-284 295-301 309-311 314-316 324-334 350-351 "
    "354-363 383-389 394-396 410-413 429-434 440-447 461-465 468-476 507-512 514-525 530-532 536-538 "
    "548-550 554-570 578-582 590-593 602-606 611-612 616-620 632-637 643-644 649-650 655-657 662-663 "
    "667-672 675-680 685-689 692-693 696-698 705-712 716-717 723-727 730-733 742-743 758-786 799-803 "
    "809-813 820-822 832-845 849-851 856-861 868-870 905-907 916-918 925-927 931-934 944-946 958-961 "
    "964-966 969-976 990-994 1000-1003 1009-1011 1020-1022 1031-1033 1037-1038 1047-1048 1051-1052 "
    "1056-1057 1074-1083 1087-1095 1097-1103 1105-1108 1116-1118 1122-1130 1134-1135 1143-1157 "
    "1161-1166 1169-1170 1173-1175 1178-1183 1191-1195 1200-1211 1215-1219 1225-1229 1232-1234 "
    "1246-1249 1253-1264 1274-1279 1284-1294 1296-1298 1301-1307 1313-1314 1328-1331 1334-1339 "
    "1346-1348 1352-1355 1363-1364 1367-1368 1383-1390 1393-1400 1406-1413 1420-1423 1429-1432 1440-1448")


def _expand(ranges: str) -> tuple[int, ...]:
    out: list[int] = []
    for tok in ranges.split():
        a, _, b = tok.partition("-")
        out += range(int(a), int(b or a) + 1)
    return tuple(out)


EIGEN_TEST_INDICES: tuple[int, ...] = _expand(_EIGEN_TEST_RANGES)
EIGEN_TRAIN_INDICES: tuple[int, ...] = tuple(sorted(set(range(NUM_LABELED)) - set(EIGEN_TEST_INDICES)))

INFO = DatasetInfo(
    name="nyu-depth-v2",
    tasks=("photo2depth",),
    max_depth=10.0,
    min_depth=1e-3,
    description="NYU Depth V2 indoor RGB-D frames, 640x480, depth in metres; official split "
                "795 train / 654 test (the Eigen test set).",
    source=("NYU Depth Dataset V2, Silberman, Hoiem, Kohli, Fergus, ECCV 2012 "
            "(https://cs.nyu.edu/~silberman/datasets/nyu_depth_v2.html); no explicit licence: research "
            "use with citation."),
    extra={"native_size": (480, 640), "eigen_crop": (45, 471, 41, 601),
           "split_sizes": {"train": len(EIGEN_TRAIN_INDICES), "test": len(EIGEN_TEST_INDICES)}},
    provides=("photo", "depth", "valid", "index")
)

EXPECTED = """\
<root>/                                   (default: $BENCH_DATA_ROOT/nyu_depth_v2)
either PNG pairs: {train,test}/**/image_<k>.png + depth_<k>.png   (or flat in <root>)
                  also rgb_<k>.jpg + sync_depth_<k>.png, <k>_colors.png + <k>_depth.png
                  depth: 16-bit PNG, millimetres, 0 = no measurement
or     labeled:   nyu_depth_v2_labeled.mat (official, HDF5 v7.3; needs h5py) [+ splits.mat]"""

_RGB_RE = re.compile(r"^(?:image_(?P<a>.+)|rgb_(?P<b>.+)|(?P<c>.+)_colors)\.(?:png|jpe?g)$", re.IGNORECASE)


def _depth_for(rgb: Path) -> Path | None:
    return next((rgb.with_name(n) for n in _depth_names(rgb) if rgb.with_name(n).is_file()), None)


def _natural_key(p: Path) -> list:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", p.as_posix())]


def _depth_names(rgb: Path) -> list[str]:
    """The depth file names that would pair with ``rgb`` (empty: ``rgb`` is not an RGB frame's name)."""
    g = _RGB_RE.match(rgb.name)
    if g is None:
        return []
    if g["a"] is not None:
        return [f"depth_{g['a']}.png"]
    if g["b"] is not None:
        return [f"sync_depth_{g['b']}.png", f"depth_{g['b']}.png"]
    return [f"{g['c']}_depth.png"]


def find_pairs(folder: Path, recursive: bool = True) -> list[tuple[Path, Path]]:
    """(rgb, depth) PNG pairs in ``folder``, in natural order of their paths."""
    if not folder.is_dir():
        return []
    files = folder.rglob("*") if recursive else folder.iterdir()
    pairs = [(p, d) for p in files if p.is_file() and (d := _depth_for(p)) is not None]
    return sorted(pairs, key=lambda pd: _natural_key(pd[0]))


def unpaired(folder: Path, recursive: bool = True) -> list[Path]:
    """RGB frames in ``folder`` (named as :func:`find_pairs` reads them) that have no depth file beside them."""
    if not folder.is_dir():
        return []
    files = folder.rglob("*") if recursive else folder.iterdir()
    return sorted((p for p in files if p.is_file() and _RGB_RE.match(p.name) and _depth_for(p) is None),
                  key=_natural_key)


def _refuse_unpaired(folder: Path, recursive: bool) -> None:
    """A frame without its depth would be left out of the split without a word: name it instead."""
    lone = unpaired(folder, recursive)
    if lone:
        more = f" (and {len(lone) - 1} more)" if len(lone) > 1 else ""
        raise DataError(f"NYU-v2 image {lone[0]} has no depth file{more}: expected "
                        f"{' or '.join(_depth_names(lone[0]))} beside it; add it, or move the image out of the "
                        "dataset folder")


def _locate(root: Path | str | None) -> Path:
    if root is not None:
        return Path(root).expanduser()
    default = data_root() / "nyu_depth_v2"
    mini = data_root() / MINI_FOLDER
    if not default.is_dir() and mini.is_dir():
        log.info("using the 10-pair NYU-v2 mini set at %s (smoke tests only)", mini)
        return mini
    return default


def _detect_layout(root: Path) -> str | None:
    if (root / MAT_NAME).is_file():
        return "mat"
    if any(find_pairs(root / s) for s in ("train", "test")) or find_pairs(root, recursive=False):
        return "pairs"
    return None


def mat_split_indices(root: Path, split: str, n_frames: int) -> list[int]:
    """0-based frame indices of ``split`` in the labeled .mat: splits.mat if present, else the built-in split."""
    sp = root / SPLITS_NAME
    if sp.is_file():
        from scipy.io import loadmat
        key = "testNdxs" if split == "test" else "trainNdxs"
        return sorted(int(i) - 1 for i in np.asarray(loadmat(sp)[key]).ravel())
    if n_frames != NUM_LABELED:
        raise DataError(f"{root / MAT_NAME} holds {n_frames} frames, not {NUM_LABELED}; put the official "
                        f"{SPLITS_NAME} beside it so the split is known")
    return list(EIGEN_TEST_INDICES if split == "test" else EIGEN_TRAIN_INDICES)


# -- the dataset -----------------------------------------------------------------------------------

def _to_sample(rgb: np.ndarray, depth_m: np.ndarray, size: int, index: int) -> dict[str, torch.Tensor]:
    """(H, W, 3) uint8 and (H, W) float metres -> the sample dict at ``size`` x ``size``."""
    img = Image.fromarray(rgb)
    if img.size != (size, size):
        img = img.resize((size, size), Image.BILINEAR)          # antialiased when shrinking
    d = Image.fromarray(np.ascontiguousarray(depth_m, dtype=np.float32), mode="F")
    if d.size != (size, size):
        d = d.resize((size, size), Image.NEAREST)
    photo = torch.from_numpy(np.asarray(img, dtype=np.uint8).copy()).permute(2, 0, 1).float() / 127.5 - 1.0
    depth = torch.from_numpy(np.asarray(d, dtype=np.float32).copy())[None]
    depth = torch.where(torch.isfinite(depth) & (depth > 0), depth, torch.zeros(()))
    return {"photo": photo, "depth": depth, "valid": depth > 0, "index": torch.tensor(index, dtype=torch.int64)}


class NYUDepthPairs(PairedDataset):
    """RGB / uint16-depth image pairs on disk."""

    info = INFO

    def __init__(self, pairs: list[tuple[Path, Path]], size: int, depth_scale: float = 1000.0):
        self.pairs, self.size, self.depth_scale = pairs, size, depth_scale

    def __len__(self) -> int:
        return len(self.pairs)

    def keep_first(self, n: int) -> None:
        self.pairs = self.pairs[:n]

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        rgb_path, depth_path = self.pairs[i]
        with reading(rgb_path, "nyu-depth-v2"), Image.open(rgb_path) as im:
            rgb = np.asarray(im.convert("RGB"))
        with reading(depth_path, "nyu-depth-v2"), Image.open(depth_path) as im:
            if im.mode not in ("I;16", "I;16B", "I"):
                raise DataError(f"{depth_path} is a {im.mode} image, not a 16-bit depth PNG in millimetres")
            raw = np.asarray(im).astype(np.float32)
        if rgb.shape[:2] != raw.shape:
            raise DataError(f"{rgb_path.name} is {rgb.shape[1]}x{rgb.shape[0]} but {depth_path.name} is "
                            f"{raw.shape[1]}x{raw.shape[0]}; the pair is not aligned")
        return _to_sample(rgb, raw / self.depth_scale, self.size, i)


class NYUDepthMat(PairedDataset):
    """Frames of the official labeled .mat, read lazily (one h5py handle per process)."""

    info = INFO

    def __init__(self, path: Path, indices: list[int], size: int):
        self.path, self.indices, self.size = path, indices, size
        self._h5, self._pid = None, None

    def _file(self):
        if self._h5 is None or self._pid != os.getpid():
            try:
                import h5py
            except ImportError as e:
                raise DataError("reading nyu_depth_v2_labeled.mat needs h5py: pip install h5py") from e
            try:
                self._h5, self._pid = h5py.File(self.path, "r"), os.getpid()
            except OSError as e:
                raise DataError(f"cannot read {self.path} as HDF5 (MATLAB v7.3): {e}; download it again") from e
        return self._h5

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_h5": None, "_pid": None}

    def __len__(self) -> int:
        return len(self.indices)

    def keep_first(self, n: int) -> None:
        self.indices = self.indices[:n]

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        f, k = self._file(), self.indices[i]
        img, dep = np.asarray(f["images"][k]), np.asarray(f["depths"][k], dtype=np.float32)
        if img.shape[0] == 3:                       # MATLAB column-major: (3, W, H), (W, H)
            rgb, depth = img.transpose(2, 1, 0), dep.T
        else:                                       # already (H, W, 3), (H, W)
            rgb, depth = img, dep
        return _to_sample(np.ascontiguousarray(rgb, dtype=np.uint8), depth, self.size, i)


def make_dataset(split: str, size: int, *, root: Path | str | None = None, subset: int | None = None,
                 seed: int = 0, layout: str = "auto", **options) -> PairedDataset:
    """The registered factory (see :mod:`bench.data.base`). Option: ``depth_scale`` (PNG units per metre)."""
    if split not in ("train", "test"):
        raise ConfigError(f"NYU-v2 split must be 'train' or 'test', not '{split}'")
    if layout not in LAYOUTS:
        raise ConfigError(f"NYU-v2 layout must be one of {', '.join(LAYOUTS)}, not '{layout}'")
    depth_scale = float(options.pop("depth_scale", 1000.0))
    if options:
        raise ConfigError(f"unknown NYU-v2 option(s): {', '.join(options)}; known: depth_scale")
    base = _locate(root)
    found = _detect_layout(base) if base.is_dir() else None
    layout = found if layout == "auto" else layout
    if layout is None:
        raise DataError(f"NYU-v2 not found at {base}; run `bench data prepare nyu-depth-v2 --src <download>` "
                        "(or set BENCH_DATA_ROOT)")
    if layout == "mat":
        if not (base / MAT_NAME).is_file():
            raise DataError(f"{base / MAT_NAME} not found; run `bench data check nyu-depth-v2`")
        ds = NYUDepthMat(base / MAT_NAME, [], int(size))
        ds.indices = mat_split_indices(base, split, int(ds._file()["images"].shape[0]))
    else:
        pairs = find_pairs(base / split)
        _refuse_unpaired(base / split, True)
        if not pairs:
            pairs = find_pairs(base, recursive=False)
            if pairs:
                _refuse_unpaired(base, False)
                log.warning("NYU-v2 at %s has no %s/ folder: its %d flat pairs serve every split",
                            base, split, len(pairs))
        if not pairs:
            raise DataError(f"no NYU-v2 '{split}' pairs in {base}; run `bench data check nyu-depth-v2`")
        ds = NYUDepthPairs(pairs, int(size), depth_scale)
    if subset is not None:
        ds.keep_first(subset)
    return ds


# -- check and prepare -----------------------------------------------------------------------------

def data_counts(root: Path) -> dict[str, int]:
    """What the loader sees at ``root``: the .mat files, or RGB/depth pairs per split folder and flat."""
    layout = _detect_layout(root) if root.is_dir() else None
    if layout == "mat":
        return {MAT_NAME: 1, SPLITS_NAME: int((root / SPLITS_NAME).is_file())}
    if layout == "pairs":
        return {"train": len(find_pairs(root / "train")), "test": len(find_pairs(root / "test")),
                "flat": len(find_pairs(root, recursive=False))}
    return {}


def check(root: Path | str | None = None) -> CheckReport:
    """What NYU-v2 data is at ``root`` (default: where :func:`make_dataset` looks)."""
    base = _locate(root)
    rep = CheckReport("nyu-depth-v2", ok=False, expected=EXPECTED, root=base)
    rep.layout = _detect_layout(base) if base.is_dir() else None
    if rep.layout == "mat":
        rep.found.append(MAT_NAME)
        if (base / SPLITS_NAME).is_file():
            rep.found.append(SPLITS_NAME)
        else:
            rep.hints.append(f"no {SPLITS_NAME}: the built-in official split (795 train / 654 test) is used")
        try:
            import h5py  # noqa: F401
        except ImportError:
            rep.missing.append("the h5py package (pip install h5py) to read the v7.3 .mat")
    elif rep.layout == "pairs":
        for s in ("train", "test"):
            if n := len(find_pairs(base / s)):
                rep.found.append(f"{s}/: {n} pairs")
        flat = len(find_pairs(base, recursive=False))
        if flat:
            rep.found.append(f"{flat} pairs directly in the root (they serve both splits)")
        lone = unpaired(base / "train") + unpaired(base / "test") + unpaired(base, recursive=False)
        for path in lone[:5]:
            rep.missing.append(f"the depth file of {path} ({' or '.join(_depth_names(path))})")
        if len(lone) > 5:
            rep.missing.append(f"the depth files of {len(lone) - 5} more images")
        if not (base / "train").is_dir() or not (base / "test").is_dir():
            rep.hints.append("no train/ and test/ sub-folders: fine for smoke tests, not for reported numbers")
    else:
        rep.missing.append(f"{base}: no {MAT_NAME} and no RGB/depth PNG pairs")
        rep.hints.append("download nyu_depth_v2_labeled.mat (and splits.mat) from the NYU-v2 page, then "
                         "`bench data prepare nyu-depth-v2 --src <file or folder>`")
    verify_marker(base, data_counts(base), rep)
    rep.ok = rep.layout is not None and not rep.missing
    return rep


_SPLIT_RE = re.compile(r"(?:^|/)(train|test)/(.+)$")
_DEPTH_RE = re.compile(r"^(?:sync_)?depth_.+\.png$|^.+_depth\.png$", re.IGNORECASE)


def prepare(src: Path | str, root: Path | str | None = None, *, link: bool = True) -> Path:
    """Bring a download into ``root`` (default ``<data_root>/nyu_depth_v2``); returns it.

    Takes the labeled .mat (+ splits.mat), or RGB/depth PNG pairs from a folder or archive; pairs
    under a ``train``/``test`` folder keep that split and the sub-folders below it; others go flat.
    """
    src = Path(src).expanduser()
    root = Path(root).expanduser() if root is not None else data_root() / "nyu_depth_v2"

    def fill(tmp: Path) -> dict[str, int]:
        n = 0
        for m in tqdm(iter_members(src), desc=f"nyu-depth-v2 <- {src.name}", unit=" files",
                      leave=False, disable=None):
            name = m.name.rsplit("/", 1)[-1]
            if name in (MAT_NAME, SPLITS_NAME):
                dest = safe_join(tmp, name)
            elif _RGB_RE.match(name) or _DEPTH_RE.match(name):
                g = _SPLIT_RE.search(m.name)        # keep train/ and test/ and what lies below them
                dest = safe_join(tmp, g[1], *g[2].split("/")) if g else safe_join(tmp, name)
            else:
                continue
            write_member(m, dest, link=link)
            n += 1
        if not n or _detect_layout(tmp) is None:
            raise DataError(f"no NYU-v2 data found in {src}; expected {MAT_NAME} or RGB/depth PNG pairs")
        return {"files": n}

    prepare_atomically(root, fill, data_counts, src)
    log.info("prepared NYU-v2 in %s: %s", root, data_counts(root))
    return root
