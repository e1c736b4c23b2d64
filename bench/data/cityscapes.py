"""Cityscapes (Cordts et al. 2016) for labels->photo and photo->labels, in its two common layouts.

Under ``<data_root>/cityscapes/`` (or ``root``):

- ``pix2pix``: ``{train,val}/*.jpg``, 512x256, photo left, *colour* label map right (pix2pix's
  ``cityscapes.tar.gz``: 2975 train / 500 val). Colours are decoded to the 19 trainIds by the nearest
  colour of the official table within a tolerance (JPEG noise); the decoded maps are cached under
  ``cache_dir()/cityscapes-labels`` keyed by the JPEG's sha256, so each file is decoded once.
- ``official``: ``leftImg8bit/{train,val}/<city>/*_leftImg8bit.png`` with
  ``gtFine/{train,val}/<city>/*_gtFine_labelIds.png``; labelIds map to trainIds by the official table.

``split="test"`` reads ``val`` (the protocol of the fusion-discriminator paper and pix2pix: 500 test
images). Photos are resized (squashed) to ``size`` x ``size`` bilinearly with antialiasing, labels
by nearest neighbour; ``label_rgb`` is drawn from the trainIds in the 19-class palette.

With no ``root`` and no ``<data_root>/cityscapes``, the pix2pix tars of the shared test data
(``<data_root>/cityscapes_pix2pix``) are unpacked once into ``cache_dir()/cityscapes``.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import re
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from bench.data import cityscapes_labels as cl
from bench.data.base import DatasetInfo, PairedDataset, reading, side_by_side_problem
from bench.data.layout import CheckReport, iter_members, prepare_atomically, safe_join, verify_marker, write_member
from bench.data.paths import cache_dir, data_root, locate, shared_archives
from bench.errors import ConfigError, DataError
from bench.progress import bar as tqdm

log = logging.getLogger(__name__)

SPLITS = {"train": "train", "test": "val", "val": "val"}
FULL_SIZES = {"train": 2975, "val": 500}
LAYOUTS = ("auto", "pix2pix", "official")
SHARED_FOLDER = "cityscapes_pix2pix"
DECODER_VERSION = 1

INFO = DatasetInfo(
    name="cityscapes",
    tasks=("labels2photo", "photo2labels"),
    num_classes=cl.NUM_CLASSES,
    ignore_index=cl.IGNORE_INDEX,
    class_names=cl.CLASS_NAMES,
    palette=cl.PALETTE,
    description="Cityscapes street scenes, 2975 train / 500 val (used as test), 19 trainIds, ignore 255.",
    source=("Cityscapes, Cordts et al., CVPR 2016 (https://www.cityscapes-dataset.com). Terms: "
            "non-commercial use after registration; redistribution of the images, or of modified "
            "versions of them, is forbidden. pix2pix layout: the 'cityscapes' set of Isola et al. 2017."),
    extra={"split_sizes": {"train": 2975, "test": 500}, "layouts": LAYOUTS[1:]},
    provides=("photo", "label", "label_rgb", "index")
)

EXPECTED = """\
<root>/                                   (default: $BENCH_DATA_ROOT/cityscapes)
either pix2pix:   train/*.jpg  val/*.jpg    512x256 JPEGs, photo left, colour labels right
or     official:  leftImg8bit/{train,val}/<city>/<name>_leftImg8bit.png
                  gtFine/{train,val}/<city>/<name>_gtFine_labelIds.png
full splits: train 2975, val 500 ('test' reads val)"""

_PIX2PIX_RE = re.compile(r"(?:^|/)(train|val)/([^/]+\.jpe?g)$", re.IGNORECASE)
_LEFT_RE = re.compile(r"(?:^|/)leftImg8bit/(train|val)/([^/]+)/([^/]+)_leftImg8bit\.png$")
_GT_RE = re.compile(r"(?:^|/)gtFine/(train|val)/([^/]+)/([^/]+)_gtFine_labelIds\.png$")


def _natural_key(p: Path) -> list:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", p.as_posix())]


# -- finding files ---------------------------------------------------------------------------------

def pix2pix_files(root: Path, split: str) -> list[Path]:
    """The images of ``root/split`` in pix2pix's side-by-side layout, in natural order (shared with facades)."""
    d = root / split
    if not d.is_dir():
        return []
    return sorted((p for p in d.iterdir() if p.suffix.lower() in (".jpg", ".jpeg")), key=_natural_key)


def _official_pairs(root: Path, split: str) -> tuple[list[tuple[Path, Path]], list[Path]]:
    """(photo, labelIds) pairs, and photos without a labelIds file."""
    img_dir, gt_dir = root / "leftImg8bit" / split, root / "gtFine" / split
    if not img_dir.is_dir():
        return [], []
    pairs, orphans = [], []
    for img in sorted(img_dir.glob("*/*_leftImg8bit.png"), key=_natural_key):
        stem = img.name[: -len("_leftImg8bit.png")]
        gt = gt_dir / img.parent.name / f"{stem}_gtFine_labelIds.png"
        if gt.is_file():
            pairs.append((img, gt))
        else:
            orphans.append(img)
    return pairs, orphans


def _detect_layout(root: Path) -> str | None:
    if any(_official_pairs(root, s)[0] for s in ("val", "train")):
        return "official"
    if any(pix2pix_files(root, s) for s in ("val", "train")):
        return "pix2pix"
    return None


def _locate(root: Path | str | None, *, auto_prepare: bool) -> Path:
    return locate("cityscapes", root, SHARED_FOLDER, prepare, auto_prepare=auto_prepare)


# -- the pix2pix colour labels, decoded once ------------------------------------------------------

def decoded_label(jpeg_bytes: bytes, tolerance: float = cl.DEFAULT_TOLERANCE) -> np.ndarray:
    """trainIds (H, W) uint8 of the right (label) half of a pix2pix JPEG, cached by content hash."""
    digest = hashlib.sha256(jpeg_bytes).hexdigest()
    folder = cache_dir() / "cityscapes-labels" / f"v{DECODER_VERSION}-tol{tolerance:g}" / digest[:2]
    path = folder / f"{digest}.png"
    if path.is_file():
        try:
            with Image.open(path) as im:
                return np.asarray(im, dtype=np.uint8)
        except OSError:
            log.warning("corrupt cached label %s; decoding again", path)
    with Image.open(io.BytesIO(jpeg_bytes)) as im:
        rgb = np.asarray(im.convert("RGB"))
    w = rgb.shape[1] // 2
    labels = cl.colors_to_train_ids(rgb[:, w:], tolerance)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{digest}.{os.getpid()}.tmp.png"
    Image.fromarray(labels, mode="L").save(tmp)
    os.replace(tmp, path)
    return labels


# -- the dataset -----------------------------------------------------------------------------------

def photo_tensor(img: Image.Image, size: int) -> torch.Tensor:
    """A PIL image as an RGB tensor (3, size, size) in [-1, 1], bilinear (shared with facades)."""
    if img.size != (size, size):
        img = img.resize((size, size), Image.BILINEAR)   # PIL antialiases when shrinking
    arr = np.asarray(img.convert("RGB"), dtype=np.uint8)
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).float() / 127.5 - 1.0


def _label_tensors(train_ids: np.ndarray, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    if train_ids.shape != (size, size):
        train_ids = np.asarray(Image.fromarray(train_ids, mode="L").resize((size, size), Image.NEAREST))
    label = torch.from_numpy(train_ids.astype(np.int64))
    rgb = torch.from_numpy(cl.train_ids_to_colors(train_ids)).permute(2, 0, 1).float() / 127.5 - 1.0
    return label, rgb


class CityscapesDataset(PairedDataset):
    info = INFO

    def __init__(self, root: Path, split: str, size: int, layout: str, *,
                 subset: int | None = None, tolerance: float = cl.DEFAULT_TOLERANCE):
        self.root, self.split, self.size, self.layout, self.tolerance = root, split, size, layout, tolerance
        if layout == "pix2pix":
            self.items: list[tuple[Path, Path | None]] = [(p, None) for p in pix2pix_files(root, split)]
        else:
            pairs, orphans = _official_pairs(root, split)
            if orphans:
                log.warning("%d Cityscapes photos in %s have no labelIds file and are skipped",
                            len(orphans), root / "leftImg8bit" / split)
            self.items = list(pairs)
        if not self.items:
            raise DataError(f"no Cityscapes '{split}' images in {root} ({layout} layout); "
                            "run `bench data check cityscapes` to see what is expected")
        if subset is not None:
            self.items = self.items[:subset]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        photo_path, label_path = self.items[i]
        if label_path is None:                       # pix2pix side-by-side JPEG
            with reading(photo_path, "cityscapes"):
                data = photo_path.read_bytes()
                with Image.open(io.BytesIO(data)) as im:
                    im = im.convert("RGB")
                    if (why := side_by_side_problem(im.width, im.height)) is not None:
                        raise DataError(f"cityscapes image {photo_path} {why}; replace it with the pix2pix pair or "
                                        "run `bench data check cityscapes`")
                    photo = photo_tensor(im.crop((0, 0, im.width // 2, im.height)), self.size)
                train_ids = decoded_label(data, self.tolerance)
        else:
            with reading(photo_path, "cityscapes"), Image.open(photo_path) as im:
                photo = photo_tensor(im, self.size)
            with reading(label_path, "cityscapes"), Image.open(label_path) as im:
                ids = np.asarray(im.resize((self.size, self.size), Image.NEAREST)
                                 if im.size != (self.size, self.size) else im)
            train_ids = cl.label_ids_to_train_ids(ids.astype(np.int64))
        label, label_rgb = _label_tensors(np.asarray(train_ids, dtype=np.uint8), self.size)
        return {"photo": photo, "label": label, "label_rgb": label_rgb,
                "index": torch.tensor(i, dtype=torch.int64)}


def make_dataset(split: str, size: int, *, root: Path | str | None = None, subset: int | None = None,
                 seed: int = 0, layout: str = "auto", **options) -> CityscapesDataset:
    """The registered factory (see :mod:`bench.data.base`). Options: ``label_tolerance`` (RGB distance).

    ``seed`` is accepted for the common signature; the loader itself is deterministic.
    """
    if split not in SPLITS:
        raise ConfigError(f"Cityscapes split must be one of {', '.join(SPLITS)}, not '{split}'")
    if layout not in LAYOUTS:
        raise ConfigError(f"Cityscapes layout must be one of {', '.join(LAYOUTS)}, not '{layout}'")
    tolerance = float(options.pop("label_tolerance", cl.DEFAULT_TOLERANCE))
    if options:
        raise ConfigError(f"unknown Cityscapes option(s): {', '.join(options)}; known: label_tolerance")
    base = _locate(root, auto_prepare=True)
    found = _detect_layout(base) if base.is_dir() else None
    if layout == "auto":
        if found is None:
            raise DataError(f"Cityscapes not found at {base}; download it and run "
                            "`bench data prepare cityscapes --src <archive or folder>` (or set BENCH_DATA_ROOT)")
        layout = found
    return CityscapesDataset(base, SPLITS[split], int(size), layout, subset=subset, tolerance=tolerance)


# -- check and prepare -----------------------------------------------------------------------------

def split_counts(root: Path) -> dict[str, int]:
    """Samples the loader sees per split: {"train": n, "val": n} in the layout found at ``root``."""
    layout = _detect_layout(root) if root.is_dir() else None
    if layout == "pix2pix":
        return {s: len(pix2pix_files(root, s)) for s in ("train", "val")}
    if layout == "official":
        return {s: len(_official_pairs(root, s)[0]) for s in ("train", "val")}
    return {}


def check(root: Path | str | None = None) -> CheckReport:
    """Which layout is at ``root`` (default: where :func:`make_dataset` would look), and what is missing."""
    base = _locate(root, auto_prepare=False)
    rep = CheckReport("cityscapes", ok=False, expected=EXPECTED, root=base)
    rep.layout = _detect_layout(base) if base.is_dir() else None
    if rep.layout is None:
        rep.missing.append(f"{base}: no pix2pix JPEGs and no leftImg8bit/gtFine pairs")
        shared = shared_archives(SHARED_FOLDER) if root is None else None
        rep.hints.append(f"pix2pix tars found in {shared}: `bench data prepare cityscapes --src {shared}` or "
                         "just load the dataset, which unpacks them into the cache" if shared else
                         "download pix2pix's cityscapes.tar.gz, or leftImg8bit_trainvaltest.zip + "
                         "gtFine_trainvaltest.zip (cityscapes-dataset.com, after registration), then "
                         "run `bench data prepare cityscapes --src <file or folder>`")
        verify_marker(base, {}, rep)
        return rep
    for split in ("train", "val"):
        if rep.layout == "pix2pix":
            n, orphans = len(pix2pix_files(base, split)), []
            what = f"{split}/*.jpg"
        else:
            pairs, orphans = _official_pairs(base, split)
            n, what = len(pairs), f"leftImg8bit+gtFine labelIds pairs in {split}"
        if n:
            rep.found.append(f"{what}: {n}" + ("" if n == FULL_SIZES[split]
                                               else f" (the full split has {FULL_SIZES[split]})"))
        else:
            rep.missing.append(what)
        rep.missing += [f"labelIds for {p.relative_to(base)}" for p in orphans[:5]]
        if len(orphans) > 5:
            rep.missing.append(f"... and {len(orphans) - 5} more labelIds files")
    verify_marker(base, split_counts(base), rep)
    rep.ok = not rep.missing
    if not rep.ok:
        rep.hints.append("run `bench data prepare cityscapes --src <download>` to fill in what is missing")
    return rep


def prepare(src: Path | str, root: Path | str | None = None, *, link: bool = True) -> Path:
    """Bring a download into the layout at ``root`` (default ``<data_root>/cityscapes``); returns it.

    ``src``: pix2pix's ``cityscapes.tar.gz`` or split tars, the official ``leftImg8bit``/``gtFine``
    zips or folders, or a folder holding any of these. Only the files the loader reads are taken
    (official: photos and ``*_labelIds.png``); folder files are hard-linked where possible.
    """
    src = Path(src).expanduser()
    root = Path(root).expanduser() if root is not None else data_root() / "cityscapes"

    def fill(tmp: Path) -> dict[str, int]:
        counts: dict[str, int] = {}
        for m in tqdm(iter_members(src), desc=f"cityscapes <- {src.name}", unit=" files",
                      leave=False, disable=None):
            if g := _PIX2PIX_RE.search(m.name):
                kind, dest = f"pix2pix/{g[1]}", safe_join(tmp, g[1], g[2])
            elif g := _LEFT_RE.search(m.name):
                kind = f"leftImg8bit/{g[1]}"
                dest = safe_join(tmp, "leftImg8bit", g[1], g[2], f"{g[3]}_leftImg8bit.png")
            elif g := _GT_RE.search(m.name):
                kind = f"gtFine/{g[1]}"
                dest = safe_join(tmp, "gtFine", g[1], g[2], f"{g[3]}_gtFine_labelIds.png")
            else:
                continue
            write_member(m, dest, link=link)
            counts[kind] = counts.get(kind, 0) + 1
        if not counts:
            raise DataError(f"no Cityscapes files found in {src}; expected pix2pix JPEGs under train/ or val/, "
                            "or leftImg8bit/ and gtFine/ *_labelIds.png files")
        return counts

    prepare_atomically(root, fill, split_counts, src)
    log.info("prepared Cityscapes in %s: %s", root, split_counts(root))
    return root
