"""CMP Facades (Tylecek & Sara, GCPR 2013) in pix2pix's paired layout, for label map -> photo.

Holds the loader (:func:`make_dataset`) and the dataset's :func:`count`, :func:`check` and :func:`prepare`.

Under ``<data_root>/facades/`` (or ``root``): ``train/``, ``val/`` and ``test/`` folders of JPEGs
``1.jpg .. N.jpg`` (400 / 100 / 106 in pix2pix's ``facades.tar.gz``), each 512x256 RGB with the
photo on the left (x 0..255) and the CMP colour label map on the right (x 256..511). This is the
tar's own ``facades/{train,val,test}`` folder, so ``tar xf facades.tar.gz -C $BENCH_DATA_ROOT``
also gives the layout. Files are in natural order of their names (``2.jpg`` before ``10.jpg``);
``subset`` keeps the first N. Splits: ``"train"`` -> ``train/``, ``"test"`` -> ``test/``,
``"val"`` -> ``val/``.

Samples are ``{"photo": float32 (3, size, size), "label_rgb": float32 (3, size, size), "index": int64 ()}``,
both images in [-1, 1]. Each JPEG is decoded when read (PIL, RGB) and cut into its halves as pix2pix
does (``crop((0, 0, w // 2, h))`` and ``crop((w // 2, 0, w, h))``); each half is resized with PIL's
bilinear filter (antialiased when shrinking) when ``size != 256``, then ``x / 127.5 - 1``. The label
map stays a colour image: facades has no class-id decoding here (``INFO.num_classes`` is 0), so
there is no ``label`` key. An unreadable or truncated JPEG is a one-line ``DataError`` naming the file.

With no ``root`` and no ``<data_root>/facades``, the tar of the shared test data
(``<data_root>/facades_pix2pix``) is unpacked once into ``cache_dir()/facades``, as Cityscapes does.
"""

from __future__ import annotations

import io
import logging
import re
from pathlib import Path, PurePosixPath

import numpy as np
import torch
from PIL import Image

from bench.data.base import DatasetInfo, PairedDataset, reading, side_by_side_problem
from bench.data.cityscapes import photo_tensor, pix2pix_files
from bench.data.layout import CheckReport, iter_members, prepare_atomically, safe_join, verify_marker, write_member
from bench.data.paths import data_root, locate, shared_archives
from bench.data.utkface import jpeg_problem
from bench.errors import ConfigError, DataError

log = logging.getLogger(__name__)

SIDE = 256                                          # each half of the 512x256 pix2pix JPEG
SPLITS = {"train": "train", "test": "test", "val": "val"}
FULL_SIZES = {"train": 400, "val": 100, "test": 106}
SHARED_FOLDER = "facades_pix2pix"
KNOWN_OPTIONS: tuple[str, ...] = ()

INFO = DatasetInfo(
    name="facades",
    tasks=("labels2photo",),
    provides=("photo", "label_rgb", "index"),
    description="CMP Facades in pix2pix's paired layout: 400 train / 100 val / 106 test 256x256 building "
                "facade photos with their colour label maps (no class-id decoding: label_rgb only).",
    source=("CMP Facade Database, R. Tylecek and R. Sara, 'Spatial pattern templates for recognition of "
            "objects with regular structure', GCPR 2013 (https://cmp.felk.cvut.cz/~tylecr1/facade/), as "
            "packaged by pix2pix (Isola et al., CVPR 2017: facades.tar.gz). Research use with citation; "
            "check the upstream terms before redistributing it."),
    extra={"split_sizes": dict(FULL_SIZES), "native_size": (SIDE, SIDE),
           "pair": "photo left (x 0..255), colour label map right (x 256..511)"},
)

EXPECTED = """\
<root>/                                   (default: $BENCH_DATA_ROOT/facades)
train/1.jpg .. 400.jpg   val/1.jpg .. 100.jpg   test/1.jpg .. 106.jpg
  pix2pix's facades.tar.gz (its facades/ folder): 512x256 JPEGs, photo left, colour label map right
splits: 'train' reads train/, 'test' reads test/, 'val' reads val/ (natural order: 2.jpg before 10.jpg)"""

_MEMBER_RE = re.compile(r"(?:^|/)(train|val|test)/([^/]+\.jpe?g)$", re.IGNORECASE)


def _ignored(name: str) -> bool:
    return any(p.startswith(".") or p == "__MACOSX" for p in PurePosixPath(name).parts)


def _files(root: Path, folder: str) -> list[Path]:
    """The split's JPEGs in natural order, hidden files left out."""
    return [p for p in pix2pix_files(root, folder) if not p.name.startswith(".") and p.is_file()]


def _size_problem(path: Path) -> str | None:
    """The pair check of :func:`bench.data.base.side_by_side_problem` from the file's header (no decode); None
    when it cannot read one (the JPEG checks say why)."""
    try:
        with Image.open(path) as im:
            return side_by_side_problem(*im.size)
    except (OSError, ValueError, SyntaxError):
        return None


# -- finding the data ------------------------------------------------------------------------------

def _locate(root: Path | str | None, *, auto_prepare: bool) -> Path:
    return locate("facades", root, SHARED_FOLDER, prepare, auto_prepare=auto_prepare)


# -- the dataset -----------------------------------------------------------------------------------

class FacadesDataset(PairedDataset):
    """Facades samples ``{"photo", "label_rgb", "index"}``, decoded when read."""

    info = INFO

    def __init__(self, files: list[Path], size: int, split: str):
        self.files, self.size, self.split = list(files), int(size), split

    def keep_first(self, n: int) -> None:
        self.files = self.files[:n]

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        n = len(self.files)
        if not -n <= i < n:
            raise IndexError(f"facades {self.split} index {i} out of range ({n} samples)")
        i %= n
        path = self.files[i]
        with reading(path, "facades"):
            with Image.open(io.BytesIO(path.read_bytes())) as im:
                ab = im.convert("RGB")                  # decodes: a truncated file fails here
            w, h = ab.size
            if (why := side_by_side_problem(w, h)) is not None:
                raise DataError(f"facades image {path} {why}; replace it with the pix2pix pair or run "
                                "`bench data check facades`")
            half = w // 2
            photo = photo_tensor(ab.crop((0, 0, half, h)), self.size)
            label_rgb = photo_tensor(ab.crop((half, 0, w, h)), self.size)
        return {"photo": photo, "label_rgb": label_rgb, "index": torch.tensor(i, dtype=torch.int64)}


def make_dataset(split: str, size: int, *, root: Path | str | None = None, subset: int | None = None,
                 seed: int = 0, **options) -> FacadesDataset:
    """The registered factory (see :mod:`bench.data.base`); no options.

    ``seed`` is accepted for the common signature; the loader itself is deterministic.
    """
    if split not in SPLITS:
        raise ConfigError(f"facades split must be one of {', '.join(SPLITS)}, not '{split}'")
    if options:
        raise ConfigError(f"unknown facades option(s): {', '.join(sorted(options))}; "
                          f"known: {', '.join(KNOWN_OPTIONS) or 'none'}")
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
        raise ConfigError(f"facades size must be a positive integer, not {size!r}")
    if subset is not None and (isinstance(subset, bool) or not isinstance(subset, (int, np.integer)) or subset < 1):
        raise ConfigError(f"facades subset must be a positive integer (or unset), not {subset!r}")
    base = _locate(root, auto_prepare=True)
    folder = base / SPLITS[split]
    files = _files(base, SPLITS[split])
    if not files:
        where = f"in {folder}" if folder.is_dir() else f"at {folder}"
        raise DataError(f"facades {split} images not found {where} (no *.jpg); run "
                        "`bench data prepare facades --src <facades.tar.gz>` (or set BENCH_DATA_ROOT)")
    ds = FacadesDataset(files, int(size), split)
    if subset is not None:
        ds.keep_first(int(subset))
    return ds


# -- check and prepare -----------------------------------------------------------------------------

def count(root: Path | str) -> dict[str, int]:
    """JPEGs the loader sees per folder at ``root``, e.g. {"train": 400, "val": 100, "test": 106}; empty left out."""
    root = Path(root)
    counts = {s: len(_files(root, s)) for s in FULL_SIZES}
    return {s: n for s, n in counts.items() if n}


def check(root: Path | str | None = None) -> CheckReport:
    """Which facades JPEGs are at ``root`` (default: where :func:`make_dataset` looks), and what is wrong.

    Reads each file's JPEG header and end marker (cheap); a full decode happens when a sample is read.
    """
    base = _locate(root, auto_prepare=False)
    rep = CheckReport("facades", ok=False, expected=EXPECTED, root=base)
    for split, full in FULL_SIZES.items():
        files = _files(base, split)
        if not files:
            rep.missing.append(f"{split}/*.jpg: no facades images")
            continue
        bad = [(p, why) for p in files if (why := jpeg_problem(p) or _size_problem(p)) is not None]
        for path, why in bad[:5]:
            rep.missing.append(f"{split}: {path} {why}")
        if len(bad) > 5:
            rep.missing.append(f"{split}: {len(bad) - 5} more damaged file(s)")
        n = len(files)
        rep.found.append(f"{split}/*.jpg: {n}" + ("" if n == full else f" (the full split has {full})")
                         + (f" ({len(bad)} damaged)" if bad else ""))
    rep.layout = "pix2pix" if rep.found else None
    verify_marker(base, count(base), rep)
    rep.ok = not rep.missing
    if not rep.ok:
        shared = shared_archives(SHARED_FOLDER) if root is None else None
        rep.hints.append(f"the pix2pix facades tar is in {shared}: `bench data prepare facades --src {shared}` "
                         "or just load the dataset, which unpacks it into the cache" if shared and rep.layout is None
                         else "download pix2pix's facades.tar.gz, then run "
                              "`bench data prepare facades --src <facades.tar.gz>` (or set BENCH_DATA_ROOT)")
    return rep


def prepare(src: Path | str, root: Path | str | None = None, *, link: bool = True) -> Path:
    """Bring a download into ``root`` (default ``<data_root>/facades``) as ``{train,val,test}/*.jpg``; returns it.

    ``src``: pix2pix's ``facades.tar.gz`` (or ``facades.tar``), its unpacked ``facades`` folder, or a
    folder holding either (archives inside it are opened), such as the shared ``facades_pix2pix``.
    Every JPEG under a ``train/``, ``val/`` or ``test/`` folder is taken (hidden files and
    ``__MACOSX`` are not) and checked (JPEG header and end marker), so a damaged download fails here
    with the file named. ``src`` is only read; folder files are hard-linked where possible.
    """
    src = Path(src).expanduser()
    root = Path(root).expanduser() if root is not None else data_root() / "facades"

    def fill(tmp: Path) -> dict[str, int]:
        taken: dict[str, int] = {}
        for m in iter_members(src):
            g = _MEMBER_RE.search(m.name)
            if g is None or _ignored(m.name):
                continue
            split = g[1].lower()
            dest = safe_join(tmp, split, g[2])
            write_member(m, dest, link=link)
            why = jpeg_problem(dest)
            if why is not None:
                where = f"{m.source}: {m.name}" if m.source is not None and m.path is None else str(m.path or m.name)
                raise DataError(f"{where} {why}; download it again (or delete it) and run prepare again")
            taken[split] = taken.get(split, 0) + 1
        if not taken:
            raise DataError(f"no facades images found in {src}; expected train/, val/ and test/ folders of "
                            "*.jpg (pix2pix's facades.tar.gz)")
        return taken

    prepare_atomically(root, fill, count, src)
    log.info("prepared facades in %s from %s: %s", root, src, count(root))
    return root
