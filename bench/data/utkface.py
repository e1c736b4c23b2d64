"""UTKFace (Zhang, Song, Qi, CVPR 2017), aligned & cropped faces, for face autoencoding and age->face.

Holds the file-name parser (:func:`parse_name`), the CAAE age bins (:data:`AGE_BINS`, :func:`age_bin`),
the loader (:func:`make_dataset`) and the dataset's :func:`check` and :func:`prepare`.

Under ``<data_root>/utkface/`` (or ``root``; searched recursively, so the official ``UTKFace/``
folder or several part folders may sit below it), JPEG files named
``[age]_[gender]_[race]_[date&time].jpg`` or ``....jpg.chip.jpg`` (the official "aligned & cropped"
set: 23708 files, 200x200 RGB). age 0..116, gender 0 male / 1 female, race 0..4 (White, Black,
Asian, Indian, Others). A ``.jpg`` whose name does not parse (a few official files lack a field) is
skipped and counted by :func:`check`; hidden files and ``__MACOSX`` are ignored. A file name found
twice in different folders is read once (the first path in sorted order). With no ``root`` and no
``<data_root>/utkface``, the shared 29-face ``utkface_mini`` is used (logged: smoke tests only).

Split: UTKFace has no official split. A face is in ``test`` when ``zlib.crc32(stem) % 100 < 10``
(about 10%), else in ``train``, where ``stem`` is the file name up to its first dot
(``[age]_[gender]_[race]_[date&time]``, so ``.jpg`` and ``.jpg.chip.jpg`` copies of a face fall on the
same side). The rule looks at nothing but the name, so adding or removing files never moves another
file between splits. Within a split, files are in sorted file-name order; ``subset`` keeps the first N.

Samples are ``{"photo": float32 (3, size, size) in [-1, 1], "age", "age_bin", "gender", "race",
"index": int64 ()}``; each JPEG is decoded when read (PIL, RGB), resized with PIL's bilinear filter
(antialiased when shrinking) when ``size != 200``, then ``x / 127.5 - 1``. An unreadable or truncated
JPEG is a one-line ``DataError`` naming the file.
"""

from __future__ import annotations

import bisect
import logging
import re
import zlib
from pathlib import Path, PurePosixPath
from typing import NamedTuple

import numpy as np
import torch
from PIL import Image

from bench.data.base import DatasetInfo, PairedDataset, reading
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

SIDE = 200
FOLDER = "UTKFace"                          # where prepare puts the images, as in the official archive
MINI_FOLDER = "utkface_mini"
SPLITS = ("train", "test")
TEST_PERCENT = 10
AGE_MAX = 116
GENDERS = ("male", "female")
RACES = ("White", "Black", "Asian", "Indian", "Others")
KNOWN_OPTIONS: tuple[str, ...] = ()

# The 10 age groups of CAAE (Zhang, Song, Qi, "Age Progression/Regression by Conditional Adversarial
# Autoencoder", CVPR 2017), also used by the decoupled-learning paper: inclusive (first, last) ages;
# None = and older.
AGE_BINS: tuple[tuple[int, int | None], ...] = (
    (0, 5), (6, 10), (11, 15), (16, 20), (21, 30), (31, 40), (41, 50), (51, 60), (61, 70), (71, None))
AGE_BIN_NAMES: tuple[str, ...] = tuple(f"{lo}-{hi}" if hi is not None else f"{lo}+" for lo, hi in AGE_BINS)
_BIN_STARTS = tuple(lo for lo, _ in AGE_BINS)

INFO = DatasetInfo(
    name="utkface",
    tasks=("autoencode", "age2face"),
    num_classes=len(AGE_BINS),                  # the class field is age_bin (CAAE's 10 age groups)
    class_names=AGE_BIN_NAMES,
    provides=("photo", "age", "age_bin", "gender", "race", "index"),
    description="UTKFace aligned & cropped faces, 200x200 RGB (23708 in the full set), age 0-116, gender, race "
                "from the file names; no official split: crc32 of the file stem puts ~10% in test; "
                "age_bin = CAAE's 10 age groups.",
    source=("UTKFace, Zhang, Song and Qi, CVPR 2017 (https://susanqq.github.io/UTKFace/). Released for "
            "non-commercial research purposes only; the copyright of the images belongs to their original owners."),
    extra={"native_size": (SIDE, SIDE), "age_bins": AGE_BINS, "genders": GENDERS, "races": RACES,
           "split_rule": f"test when zlib.crc32(stem) % 100 < {TEST_PERCENT}"},
)

EXPECTED = """\
<root>/                                   (default: $BENCH_DATA_ROOT/utkface)
UTKFace/[age]_[gender]_[race]_[date&time].jpg.chip.jpg   (or .jpg; any folder depth is searched)
  age 0-116, gender 0 male / 1 female, race 0-4 (White, Black, Asian, Indian, Others)
  the official aligned & cropped set: 23708 files, 200x200 RGB JPEG (UTKFace.tar.gz)
no official split: test = crc32(file stem) % 100 < 10 (~10%), train = the rest"""

_NAME_RE = re.compile(r"^(\d{1,3})_(\d)_(\d)_(\d+)\.jpg(?:\.chip\.jpg)?$", re.IGNORECASE)


# -- names, bins, split ----------------------------------------------------------------------------

def parse_name(name: str | Path) -> tuple[int, int, int] | None:
    """(age, gender, race) of a UTKFace file name (a path's last part), or None when it is malformed.

    ``[age]_[gender]_[race]_[date&time].jpg`` or ``....jpg.chip.jpg``; age 0..116, gender 0/1,
    race 0..4; anything else (a missing field, a value out of range, another extension) is None.
    """
    base = PurePosixPath(str(name).replace("\\", "/")).name
    g = _NAME_RE.match(base)
    if g is None:
        return None
    age, gender, race = int(g[1]), int(g[2]), int(g[3])
    if age > AGE_MAX or gender > 1 or race > 4:
        return None
    return age, gender, race


def age_bin(age: int) -> int:
    """The CAAE age group (0..9) of ``age`` years: 0-5, 6-10, 11-15, 16-20, 21-30, 31-40, 41-50, 51-60, 61-70, 71+."""
    if isinstance(age, bool) or not isinstance(age, (int, np.integer)) or age < 0:
        raise ValueError(f"age must be a non-negative integer, not {age!r}")
    return bisect.bisect_right(_BIN_STARTS, int(age)) - 1


def split_of(name: str | Path) -> str:
    """``"test"`` or ``"train"``: crc32 of the file stem (the name up to its first dot), 10% test."""
    stem = PurePosixPath(str(name).replace("\\", "/")).name.split(".", 1)[0]
    return "test" if zlib.crc32(stem.encode("utf-8")) % 100 < TEST_PERCENT else "train"


def _ignored(rel: PurePosixPath) -> bool:
    return any(p.startswith(".") or p == "__MACOSX" for p in rel.parts)


def _is_jpeg_name(name: str) -> bool:
    return name.lower().endswith((".jpg", ".jpeg"))


# -- finding the files -----------------------------------------------------------------------------

class Face(NamedTuple):
    path: Path
    age: int
    gender: int
    race: int


class Scan(NamedTuple):
    """What is under a root: valid faces per split (sorted by file name) and the malformed names."""

    splits: dict[str, list[Face]]
    malformed: list[str]


def scan(root: Path) -> Scan:
    """The UTKFace files under ``root`` (recursively), split and sorted; malformed names set aside."""
    splits: dict[str, list[Face]] = {s: [] for s in SPLITS}
    malformed: list[str] = []
    seen: set[str] = set()
    if root.is_dir():
        for p in sorted(root.rglob("*")):
            rel = PurePosixPath(p.relative_to(root).as_posix())
            if _ignored(rel) or not _is_jpeg_name(p.name) or not p.is_file():
                continue
            parsed = parse_name(p.name)
            if parsed is None:
                malformed.append(rel.as_posix())
                continue
            if p.name in seen:
                continue
            seen.add(p.name)
            splits[split_of(p.name)].append(Face(p, *parsed))
    for faces in splits.values():
        faces.sort(key=lambda f: f.path.name)
    return Scan(splits, malformed)


def jpeg_problem(path: Path) -> str | None:
    """Why ``path`` is not a complete JPEG (cheap: the header and the end marker), or None."""
    try:
        with open(path, "rb") as f:
            head = f.read(3)
            size = f.seek(0, 2)
            f.seek(max(0, size - 1024))
            tail = f.read()
    except OSError as e:
        return f"cannot be read ({e.strerror})"
    if size == 0:
        return "is empty (0 bytes)"
    if head != b"\xff\xd8\xff":
        return "is not a JPEG"
    if b"\xff\xd9" not in tail:
        return "is truncated (no JPEG end marker)"
    return None


# -- the dataset -----------------------------------------------------------------------------------

def _scalar(v: int) -> torch.Tensor:
    return torch.tensor(v, dtype=torch.int64)


class UTKFaceDataset(PairedDataset):
    """UTKFace samples ``{"photo", "age", "age_bin", "gender", "race", "index"}``, decoded when read."""

    info = INFO

    def __init__(self, faces: list[Face], size: int, split: str):
        self.faces, self.size, self.split = list(faces), int(size), split

    def keep_first(self, n: int) -> None:
        self.faces = self.faces[:n]

    def __len__(self) -> int:
        return len(self.faces)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        n = len(self.faces)
        if not -n <= i < n:
            raise IndexError(f"UTKFace {self.split} index {i} out of range ({n} samples)")
        i %= n
        face = self.faces[i]
        with reading(face.path, "utkface"), Image.open(face.path) as im:
            im.load()
            img = im.convert("RGB")
        if img.size != (self.size, self.size):
            img = img.resize((self.size, self.size), Image.BILINEAR)     # antialiased when shrinking
        photo = torch.from_numpy(np.asarray(img, dtype=np.uint8).copy()).permute(2, 0, 1).float() / 127.5 - 1.0
        return {"photo": photo, "age": _scalar(face.age), "age_bin": _scalar(age_bin(face.age)),
                "gender": _scalar(face.gender), "race": _scalar(face.race), "index": _scalar(i)}


def _base(root: Path | str | None) -> Path:
    if root is not None:
        return Path(root).expanduser()
    default, mini = data_root() / "utkface", data_root() / MINI_FOLDER
    if not default.is_dir() and mini.is_dir():
        log.info("using the 29-face UTKFace mini set at %s (smoke tests only)", mini)
        return mini
    return default


def make_dataset(split: str, size: int, *, root: Path | str | None = None, subset: int | None = None,
                 seed: int = 0, **options) -> UTKFaceDataset:
    """The registered factory (see :mod:`bench.data.base`); no options.

    ``seed`` is accepted for the common signature; the split and the order are deterministic.
    """
    if split not in SPLITS:
        raise ConfigError(f"UTKFace split must be 'train' or 'test', not '{split}'")
    if options:
        raise ConfigError(f"unknown UTKFace option(s): {', '.join(sorted(options))}; "
                          f"known: {', '.join(KNOWN_OPTIONS) or 'none'}")
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
        raise ConfigError(f"UTKFace size must be a positive integer, not {size!r}")
    if subset is not None and (isinstance(subset, bool) or not isinstance(subset, (int, np.integer)) or subset < 1):
        raise ConfigError(f"UTKFace subset must be a positive integer (or unset), not {subset!r}")
    base = _base(root)
    found = scan(base)
    faces = found.splits[split]
    if not faces:
        where = f"in {base}" if base.is_dir() else f"at {base}"
        have = sum(len(v) for v in found.splits.values())
        what = (f"no {split} images (the {have} found are all in the other split)" if have
                else "no [age]_[gender]_[race]_[date&time].jpg(.chip.jpg) images")
        raise DataError(f"UTKFace {split} data not found {where} ({what}); run "
                        "`bench data prepare utkface --src <download>` (or set BENCH_DATA_ROOT)")
    if found.malformed:
        log.info("UTKFace at %s: skipped %d file(s) with malformed names, e.g. %s",
                 base, len(found.malformed), found.malformed[0])
    ds = UTKFaceDataset(faces, int(size), split)
    if subset is not None:
        ds.keep_first(int(subset))
    return ds


# -- check and prepare -----------------------------------------------------------------------------

def count(root: Path | str) -> dict[str, int]:
    """Samples the loader sees per split at ``root``, e.g. {"train": 21337, "test": 2371}; empty splits left out."""
    found = scan(Path(root))
    return {s: len(v) for s, v in found.splits.items() if v}


def check(root: Path | str | None = None) -> CheckReport:
    """Which UTKFace images are at ``root`` (default: where :func:`make_dataset` looks), and what is wrong.

    Reads each file's JPEG header and end marker (cheap); a full decode happens when a sample is read.
    """
    base = _base(root)
    rep = CheckReport("utkface", ok=False, expected=EXPECTED, root=base)
    found = scan(base)
    counts: dict[str, int] = {}
    for split in SPLITS:
        faces = found.splits[split]
        if not faces:
            rep.missing.append(f"{split}: no UTKFace images")
            continue
        bad = [(f.path, why) for f in faces if (why := jpeg_problem(f.path)) is not None]
        for path, why in bad[:5]:
            rep.missing.append(f"{split}: {path} {why}")
        if len(bad) > 5:
            rep.missing.append(f"{split}: {len(bad) - 5} more damaged file(s)")
        counts[split] = len(faces)
        rep.found.append(f"{split}: {len(faces)} images" + (f" ({len(bad)} damaged)" if bad else ""))
    if found.malformed:
        rep.found.append(f"malformed names: {len(found.malformed)} .jpg file(s) skipped, e.g. {found.malformed[0]}")
    rep.layout = "UTKFace file names" if counts else None
    verify_marker(base, counts, rep)
    rep.ok = not rep.missing
    if not rep.ok:
        rep.hints.append("download UTKFace.tar.gz (aligned & cropped faces), then run "
                         "`bench data prepare utkface --src <download>` (or set BENCH_DATA_ROOT)")
    return rep


def prepare(src: Path | str, root: Path | str | None = None, *, link: bool = True) -> Path:
    """Bring a download into ``root`` (default ``<data_root>/utkface``), under ``UTKFace/``; returns it.

    ``src``: ``UTKFace.tar.gz`` (or the part archives), a folder of JPEGs (searched recursively,
    archives inside it opened) such as the shared ``utkface_mini``. Files whose names parse are
    placed flat under ``<root>/UTKFace/``; malformed names are skipped (logged). Every image is
    checked (JPEG header and end marker), so a damaged download fails here with the file named.
    """
    src = Path(src).expanduser()
    root = Path(root).expanduser() if root is not None else data_root() / "utkface"

    def fill(tmp: Path) -> dict[str, int]:
        taken, skipped = 0, []
        for m in iter_members(src):
            rel = PurePosixPath(m.name)
            if _ignored(rel) or not _is_jpeg_name(rel.name):
                continue
            if parse_name(rel.name) is None:
                skipped.append(m.name)
                continue
            dest = safe_join(tmp, FOLDER, rel.name)
            write_member(m, dest, link=link)
            why = jpeg_problem(dest)
            if why is not None:
                where = f"{m.source}: {m.name}" if m.source is not None and m.path is None else str(m.path or m.name)
                raise DataError(f"{where} {why}; download it again (or delete it) and run prepare again")
            taken += 1
        if skipped:
            log.warning("skipped %d UTKFace file(s) with malformed names, e.g. %s", len(skipped), skipped[0])
        if not taken:
            raise DataError(f"no UTKFace images found in {src}; expected [age]_[gender]_[race]_[date&time].jpg "
                            "(or .jpg.chip.jpg) files, e.g. UTKFace.tar.gz")
        return {"images": taken, "malformed_skipped": len(skipped)}

    prepare_atomically(root, fill, count, src)
    log.info("prepared UTKFace in %s from %s: %s", root, src, count(root))
    return root
