"""MNIST handwritten digits (LeCun, Cortes, Burges) for class->image generation.

Holds the loader (:func:`make_dataset`), a small reader of the official idx format
(:func:`read_idx`), and the dataset's :func:`check` and :func:`prepare`.

Under ``<data_root>/mnist/`` (or ``root``), per split, the official idx files
(``train-images-idx3-ubyte`` + ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte`` +
``t10k-labels-idx1-ubyte``, each plain or ``.gz``) are read when both files of the split are there;
otherwise the split's arrays of ``mnist.npz`` (``x_train, y_train, x_test, y_test``, the layout
Keras distributes). 60000 train / 10000 test 28x28 grey images, labels 0..9.

Samples are ``{"image": float32 (1, size, size) in [-1, 1], "label": int64 (), "index": int64 ()}``;
the uint8 images stay in memory and each item is converted when read (``x / 127.5 - 1``, then a
bilinear antialiased resize when ``size != 28``).

``imbalanced=True`` gives the imbalanced MNIST of the conditional-activation-GAN paper: of the
train split, the first 5500 images of digit 0 and the first 500 of each other digit, in file
order (10000 images). The test split is never changed by it.
"""

from __future__ import annotations

import functools
import gzip
import logging
import re
import zipfile
import zlib
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from bench.data.base import DatasetInfo, PairedDataset
from bench.data.layout import (
    CheckReport,
    iter_members,
    prepare_atomically,
    safe_join,
    verify_marker,
    write_member,
)
from bench.data.paths import data_root
from bench.errors import ConfigError, DataError

log = logging.getLogger(__name__)

SIDE = 28
FULL_SIZES = {"train": 60000, "test": 10000}
IDX_PREFIX = {"train": "train", "test": "t10k"}
NPZ_NAME = "mnist.npz"
NPZ_KEYS = {"train": ("x_train", "y_train"), "test": ("x_test", "y_test")}
IMAGES_MAGIC, LABELS_MAGIC = 0x00000803, 0x00000801
IMBALANCED_QUOTA = (5500,) + (500,) * 9       # per digit, from the train split, in file order
KNOWN_OPTIONS = ("imbalanced",)

INFO = DatasetInfo(
    name="mnist",
    tasks=("class2image",),
    num_classes=10,
    class_names=tuple("0123456789"),
    provides=("image", "label", "index"),
    description="MNIST handwritten digits, 28x28 grey, 60000 train / 10000 test, 10 classes; "
                "option imbalanced=True: 5500 zeros + 500 of each other digit from train (10000).",
    source=("MNIST, LeCun, Cortes and Burges (http://yann.lecun.com/exdb/mnist/), from NIST SD-1/SD-3. "
            "Commonly distributed under CC BY-SA 3.0: credit the original authors."),
    extra={"split_sizes": dict(FULL_SIZES), "imbalanced_quota": IMBALANCED_QUOTA},
)

EXPECTED = """\
<root>/                                   (default: $BENCH_DATA_ROOT/mnist)
official idx files, plain or .gz (a split is read from them when both of its files are there):
  train-images-idx3-ubyte  train-labels-idx1-ubyte    train: 60000 images
  t10k-images-idx3-ubyte   t10k-labels-idx1-ubyte     test:  10000 images
and/or mnist.npz with x_train, y_train, x_test, y_test (uint8, 28x28 images), for a split without both idx files"""

_IDX_RE = re.compile(r"(?:^|/)(train|t10k)-(images|labels)[.-]idx([13])-ubyte(\.gz)?$", re.IGNORECASE)
_NPZ_RE = re.compile(r"(?:^|/)mnist\.npz$", re.IGNORECASE)
_LUT = np.arange(256, dtype=np.float32) / np.float32(127.5) - np.float32(1.0)   # uint8 -> [-1, 1]


# -- the idx format --------------------------------------------------------------------------------

def read_idx(path: Path | str, ndim: int) -> np.ndarray:
    """The uint8 array of an official idx file (plain or ``.gz``): ``ndim`` 3 for images, 1 for labels.

    Checks the magic number (0x00000803 images, 0x00000801 labels), the dimensions (28x28 images)
    and that the byte count matches the header; anything else is a one-line ``DataError``.
    """
    path = Path(path)
    magic_expected = IMAGES_MAGIC if ndim == 3 else LABELS_MAGIC
    try:
        if path.name.lower().endswith(".gz"):
            with gzip.open(path, "rb") as f:
                data = f.read()
        else:
            data = path.read_bytes()
    except (OSError, EOFError, zlib.error) as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:120]
        raise DataError(f"{path} is truncated or corrupt ({type(e).__name__}: {first}); "
                        "download it again or run `bench data check mnist`") from None
    header = 4 + 4 * ndim
    if not data:
        raise DataError(f"{path} is empty (no data); download it again or run `bench data check mnist`")
    if len(data) < header:
        raise DataError(f"{path} is truncated ({len(data)} bytes, shorter than its header); "
                        "download it again or run `bench data check mnist`")
    magic = int.from_bytes(data[:4], "big")
    if magic != magic_expected:
        raise DataError(f"{path} is not an idx {'images' if ndim == 3 else 'labels'} file (magic "
                        f"0x{magic:08x}, expected 0x{magic_expected:08x}); download it again or run "
                        "`bench data check mnist`")
    dims = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    if ndim == 3 and dims[1:] != (SIDE, SIDE):
        raise DataError(f"{path} holds {dims[1]}x{dims[2]} images, not {SIDE}x{SIDE}; "
                        "download the MNIST file again or run `bench data check mnist`")
    want = header + int(np.prod(dims, dtype=np.int64))
    if len(data) != want:
        what = "truncated" if len(data) < want else "longer than its header says"
        raise DataError(f"{path} is {what} ({len(data)} bytes, {want} expected for {dims}); "
                        "download it again or run `bench data check mnist`")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)


# -- finding and loading a split -------------------------------------------------------------------

class Source(NamedTuple):
    """Where a split is read from: ``kind`` "idx" (images, labels) or "npz" (the archive)."""

    kind: str
    files: tuple[Path, ...]


def _idx_file(base: Path, stem: str) -> Path | None:
    for name in (stem, stem + ".gz"):                 # plain first: it reads faster
        if (base / name).is_file():
            return base / name
    return None


def idx_names(split: str) -> tuple[str, str]:
    """The official (images, labels) file names of ``split``, without ``.gz``."""
    p = IDX_PREFIX[split]
    return f"{p}-images-idx3-ubyte", f"{p}-labels-idx1-ubyte"


def find_source(base: Path, split: str) -> Source | None:
    """The idx pair of ``split`` when both files exist in ``base``, else ``mnist.npz``, else None."""
    images, labels = (_idx_file(base, n) for n in idx_names(split))
    if images is not None and labels is not None:
        return Source("idx", (images, labels))
    if (base / NPZ_NAME).is_file():
        return Source("npz", (base / NPZ_NAME,))
    return None


def _checked_labels(labels: np.ndarray, path: Path) -> np.ndarray:
    if labels.size and int(labels.max()) > 9:
        raise DataError(f"{path} holds label {int(labels.max())}, not a digit 0..9; download it again or run "
                        "`bench data check mnist`")
    return labels


def _read_npz(path: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    xk, yk = NPZ_KEYS[split]
    try:
        with np.load(path, allow_pickle=False) as z:
            missing = [k for k in (xk, yk) if k not in z.files]
            if missing:
                raise DataError(f"{path} has no {' / '.join(missing)} array (it has {', '.join(z.files) or 'none'}); "
                                "download mnist.npz again or run `bench data check mnist`")
            x, y = z[xk], z[yk]
    except DataError:
        raise
    except (OSError, EOFError, ValueError, KeyError, zipfile.BadZipFile, zlib.error) as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:120]
        raise DataError(f"{path} is truncated or corrupt ({type(e).__name__}: {first}); "
                        "download it again or run `bench data check mnist`") from None
    if x.dtype != np.uint8 or x.ndim != 3 or x.shape[1:] != (SIDE, SIDE):
        raise DataError(f"{path}: {xk} is {x.dtype} {x.shape}, not uint8 (N, {SIDE}, {SIDE}); "
                        "download mnist.npz again or run `bench data check mnist`")
    if y.ndim != 1 or y.dtype.kind not in "iu" or len(y) != len(x) or (y.size and int(y.min()) < 0):
        raise DataError(f"{path}: {yk} is {y.dtype} {y.shape}, not {len(x)} integer labels; "
                        "download mnist.npz again or run `bench data check mnist`")
    return x, _checked_labels(y.astype(np.uint8), path)


@functools.lru_cache(maxsize=4)
def _load_cached(source: Source, split: str, stamps: tuple) -> tuple[np.ndarray, np.ndarray]:
    if source.kind == "npz":
        images, labels = _read_npz(source.files[0], split)
    else:
        img_path, lab_path = source.files
        images, labels = read_idx(img_path, 3), _checked_labels(read_idx(lab_path, 1), lab_path)
        if len(images) != len(labels):
            raise DataError(f"{img_path} holds {len(images)} images but {lab_path} holds {len(labels)} labels; "
                            "download both files again or run `bench data check mnist`")
    images, labels = np.ascontiguousarray(images), np.ascontiguousarray(labels)
    images.setflags(write=False)                       # shared between datasets through the cache
    labels.setflags(write=False)
    log.info("read MNIST %s: %d images from %s", split, len(labels), ", ".join(p.name for p in source.files))
    return images, labels


def load_split(source: Source, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Read-only (images uint8 (N, 28, 28), labels uint8 (N,)) of ``split`` (cached per file version)."""
    stamps = []
    for p in source.files:
        st = p.stat()
        stamps.append((st.st_size, st.st_mtime_ns, st.st_ino))
    return _load_cached(source, split, tuple(stamps))


def imbalanced_indices(labels: np.ndarray, quota: tuple[int, ...] = IMBALANCED_QUOTA) -> np.ndarray:
    """File positions of the first ``quota[d]`` images of each digit ``d``, in file order."""
    picked = []
    for digit, q in enumerate(quota):
        rows = np.flatnonzero(labels == digit)
        if len(rows) < q:
            raise DataError(f"imbalanced MNIST needs {q} images of digit {digit} in the train split, which has "
                            f"{len(rows)}; prepare the full train split (`bench data check mnist`)")
        picked.append(rows[:q])
    return np.sort(np.concatenate(picked))


# -- the dataset -----------------------------------------------------------------------------------

class MnistDataset(PairedDataset):
    """MNIST samples ``{"image", "label", "index"}``; ``file_indices`` maps positions to file rows."""

    info = INFO

    def __init__(self, images: np.ndarray, labels: np.ndarray, size: int, split: str,
                 file_indices: np.ndarray | None = None):
        self.images, self.size, self.split = images, int(size), split
        self.file_indices = (np.arange(len(labels), dtype=np.int64) if file_indices is None
                             else np.asarray(file_indices, dtype=np.int64))
        self.labels = labels[self.file_indices].astype(np.int64)

    def keep_first(self, n: int) -> None:
        self.file_indices, self.labels = self.file_indices[:n], self.labels[:n]

    def __len__(self) -> int:
        return len(self.file_indices)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        n = len(self.file_indices)
        if not -n <= i < n:
            raise IndexError(f"MNIST {self.split} index {i} out of range ({n} samples)")
        i %= n
        image = torch.from_numpy(_LUT[self.images[self.file_indices[i]]])[None]    # (1, 28, 28)
        if self.size != SIDE:
            image = F.interpolate(image[None], size=(self.size, self.size), mode="bilinear",
                                  align_corners=False, antialias=True)[0].clamp_(-1.0, 1.0)
        return {"image": image, "label": torch.tensor(int(self.labels[i]), dtype=torch.int64),
                "index": torch.tensor(i, dtype=torch.int64)}


def _base(root: Path | str | None) -> Path:
    return Path(root).expanduser() if root is not None else data_root() / "mnist"


def make_dataset(split: str, size: int, *, root: Path | str | None = None, subset: int | None = None,
                 seed: int = 0, imbalanced: bool = False, **options) -> MnistDataset:
    """The registered factory (see :mod:`bench.data.base`). Option: ``imbalanced`` (train only).

    ``seed`` is accepted for the common signature; the loader itself is deterministic.
    """
    if split not in FULL_SIZES:
        raise ConfigError(f"MNIST split must be 'train' or 'test', not '{split}'")
    if options:
        raise ConfigError(f"unknown MNIST option(s): {', '.join(sorted(options))}; known: {', '.join(KNOWN_OPTIONS)}")
    if not isinstance(imbalanced, (bool, np.bool_)):
        raise ConfigError(f"MNIST option imbalanced must be true or false, not {imbalanced!r}")
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
        raise ConfigError(f"MNIST size must be a positive integer, not {size!r}")
    if subset is not None and (isinstance(subset, bool) or not isinstance(subset, (int, np.integer)) or subset < 1):
        raise ConfigError(f"MNIST subset must be a positive integer (or unset), not {subset!r}")
    base = _base(root)
    source = find_source(base, split) if base.is_dir() else None
    if source is None:
        images_name, labels_name = idx_names(split)
        where = f"in {base}" if base.is_dir() else f"at {base}"
        raise DataError(f"MNIST {split} data not found {where} (need {images_name} + {labels_name}, plain or .gz, "
                        f"or {NPZ_NAME}); run `bench data prepare mnist --src <download>` (or set BENCH_DATA_ROOT)")
    images, labels = load_split(source, split)
    rows = imbalanced_indices(labels) if imbalanced and split == "train" else None
    ds = MnistDataset(images, labels, int(size), split, rows)
    if subset is not None:
        ds.keep_first(int(subset))
    return ds


# -- check and prepare -----------------------------------------------------------------------------

def count(root: Path | str) -> dict[str, int]:
    """Samples the loader sees per split present at ``root``, e.g. {"train": 60000, "test": 10000}.

    A split with no files is left out; a malformed file raises ``DataError``.
    """
    base = Path(root)
    out: dict[str, int] = {}
    for split in FULL_SIZES:
        source = find_source(base, split) if base.is_dir() else None
        if source is not None:
            out[split] = len(load_split(source, split)[1])
    return out


def check(root: Path | str | None = None) -> CheckReport:
    """Which MNIST files are at ``root`` (default: where :func:`make_dataset` looks), and what is missing."""
    base = _base(root)
    rep = CheckReport("mnist", ok=False, expected=EXPECTED, root=base)
    counts: dict[str, int] = {}
    kinds = []
    for split, full in FULL_SIZES.items():
        images_name, labels_name = idx_names(split)
        source = find_source(base, split) if base.is_dir() else None
        if source is None:
            rep.missing.append(f"{split}: {images_name} + {labels_name} (plain or .gz), or {NPZ_NAME}")
            continue
        kinds.append(f"{split} from {source.kind}")
        if source.kind == "npz":
            lone = [p.name for p in (_idx_file(base, images_name), _idx_file(base, labels_name)) if p is not None]
            if lone:
                rep.hints.append(f"{', '.join(lone)} not used for {split}: both idx files of the split are needed, "
                                 f"so {NPZ_NAME} is read")
        try:
            n = len(load_split(source, split)[1])
        except DataError as e:
            rep.missing.append(f"{split}: {e}")
            continue
        counts[split] = n
        what = " + ".join(p.name for p in source.files)
        if source.kind == "npz":
            what += f" ({', '.join(NPZ_KEYS[split])})"
        rep.found.append(f"{split}: {what}: {n} samples" + ("" if n == full else f" (the full split has {full})"))
    rep.layout = ", ".join(kinds) or None
    verify_marker(base, counts, rep)
    rep.ok = not rep.missing
    if not rep.ok:
        rep.hints.append("download the four idx files (or mnist.npz), then run "
                         "`bench data prepare mnist --src <download>` (or set BENCH_DATA_ROOT)")
    return rep


def _canonical_name(member_name: str) -> str | None:
    """The file name ``prepare`` stores a recognised member under, or None."""
    if _NPZ_RE.search(member_name):
        return NPZ_NAME
    g = _IDX_RE.search(member_name)
    if g is None or (g[2].lower() == "images") != (g[3] == "3"):
        return None
    return f"{g[1].lower()}-{g[2].lower()}-idx{g[3]}-ubyte" + (".gz" if g[4] else "")


def prepare(src: Path | str, root: Path | str | None = None, *, link: bool = True) -> Path:
    """Bring a download into ``root`` (default ``<data_root>/mnist``); returns it.

    ``src``: the official idx files (plain or ``.gz``) and/or ``mnist.npz``, as files, a folder or a
    tar/zip archive (folders are searched recursively, archives inside them opened). A new file
    replaces an older copy of the same file (plain or ``.gz``); every split found is read once to
    validate it, so a damaged download fails here with the file named.
    """
    src = Path(src).expanduser()
    root = _base(root)

    def fill(tmp: Path) -> dict[str, int]:
        taken: dict[str, int] = {}
        for m in iter_members(src):
            name = _canonical_name(m.name)
            if name is None:
                continue
            dest = safe_join(tmp, name)
            other = name[:-3] if name.endswith(".gz") else name + ".gz"
            if name != NPZ_NAME:
                safe_join(tmp, other).unlink(missing_ok=True)   # the new download supersedes the old form
            write_member(m, dest, link=link)
            taken[name] = taken.get(name, 0) + 1
        if not taken:
            raise DataError(f"no MNIST files found in {src}; expected train-images-idx3-ubyte(.gz), "
                            f"train-labels-idx1-ubyte(.gz), t10k-... or {NPZ_NAME}")
        return taken

    prepare_atomically(root, fill, count, src)
    _load_cached.cache_clear()                          # drop the arrays read from the temporary folder
    log.info("prepared MNIST in %s from %s", root, src)
    return root
