"""Sample diversity as mean MS-SSIM of random same-class pairs (the AC-GAN protocol, Odena et al. 2017).

AC-GAN scores a class by the mean MS-SSIM of 100 randomly chosen pairs of its samples: lower means
more diverse (real ImageNet classes sit around 0.05-0.25, a collapsed class near 1).
:func:`ms_ssim_diversity` draws ``pairs`` pairs *per class*, so the mean over classes of the
per-class means equals the mean over all pairs.

Protocol, stamped by :func:`diversity_protocol` (and the :class:`DiversityProtocol` behind it):

- Inputs: images (N, C, H, W) in ``value_range`` (default [-1, 1], the bench's y-space); they are
  mapped linearly to [0, 1] and scored with ``data_range = 1.0``.
- MS-SSIM from pytorch-msssim with its standard settings: Gaussian window 11, sigma 1.5,
  5 scales with weights (0.0448, 0.2856, 0.3001, 0.2363, 0.1333), K = (0.01, 0.03); computed in
  float64 (float32 only on MPS, which has no float64) with the window normalised in float64
  (``metrics.reconstruction.gaussian_window``): float32 loses about 1e-4 on flat images.
- Small images: 5 scales with an 11-px window need a shorter side > 160 px (``min_side`` 161).
  By default (``small="upsample"``) images whose shorter side is under 161 px are upsampled, aspect
  ratio kept, so that it becomes 176 px (``target_side``: the smallest multiple of 2^4 above 160, so
  that, for square images, pytorch-msssim's four 2x average-poolings never zero-pad a border), with ``resize_mode``
  (default ``"bilinear"``, align_corners=False), then clamped to [0, 1]. 64 x 64 images become
  176 x 176. ``small="error"`` raises instead. Images already >= 161 px are scored as they are.
- Pairs: for each class in ascending order, ``pairs`` ordered pairs (i, j), i != j, drawn with
  replacement from one CPU ``torch.Generator`` seeded with ``seed``: i uniform over the class,
  j = (i + k) mod n with k uniform in 1..n-1 (see :func:`sample_same_class_pairs`). Classes with
  fewer than two images are skipped. ``labels=None`` treats all images as one class.

The ``ms-ssim-diversity`` scorer (:class:`DiversityScorer`) applies this to class-conditional
samples per requested class, and to the real test images of the same batches as the reference.
"""

from __future__ import annotations

import hashlib
import json

import logging
import math
from dataclasses import asdict, dataclass
from importlib.metadata import version
from typing import Any, ClassVar

import pytorch_msssim
import torch
import torch.nn.functional as F

from bench.atomic import write_atomic
from bench.errors import MetricError
from bench.progress import bar as tqdm
from metrics.base import ScoreContext, Scorer
from metrics.class_agreement import QUANTISATION, quantise, requested_labels
from metrics.reconstruction import compute_dtype, gaussian_window

log = logging.getLogger(__name__)

MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
SMALL_MODES = ("upsample", "error")
RESIZE_MODES = ("bilinear", "bicubic", "nearest")


@dataclass(frozen=True)
class DiversityProtocol:
    """Everything that defines an MS-SSIM diversity number."""

    pairs_per_class: int = 100
    seed: int = 0
    value_range: tuple[float, float] = (-1.0, 1.0)
    small: str = "upsample"
    resize_mode: str = "bilinear"
    win_size: int = 11
    win_sigma: float = 1.5

    def __post_init__(self) -> None:
        if self.pairs_per_class < 1:
            raise MetricError(f"pairs must be >= 1, not {self.pairs_per_class}")
        if self.small not in SMALL_MODES:
            raise MetricError(f"small must be one of {SMALL_MODES}, not '{self.small}'")
        if self.resize_mode not in RESIZE_MODES:
            raise MetricError(f"resize_mode must be one of {RESIZE_MODES}, not '{self.resize_mode}'")
        lo, hi = self.value_range
        if not hi > lo:
            raise MetricError(f"value_range must be (low, high) with high > low; got {self.value_range}")

    @property
    def min_side(self) -> int:
        """Smallest shorter side pytorch-msssim accepts for 5 scales: (win - 1) * 2^4 + 1."""
        return (self.win_size - 1) * 2 ** (len(MS_SSIM_WEIGHTS) - 1) + 1

    @property
    def target_side(self) -> int:
        """Shorter side small images are upsampled to: the smallest multiple of 2^4 >= min_side."""
        step = 2 ** (len(MS_SSIM_WEIGHTS) - 1)
        return -(-self.min_side // step) * step

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["value_range"] = list(self.value_range)
        d.update({
            "metric": "ms-ssim",
            "library": f"pytorch-msssim {version('pytorch-msssim')}",
            "data_range": 1.0,
            "scored_range": [0.0, 1.0],
            "weights": list(MS_SSIM_WEIGHTS),
            "K": [0.01, 0.03],
            "dtype": "float64 (float32 on MPS), window normalised in that dtype",
            "min_side": self.min_side,
            "target_side": self.target_side,
            "pair_sampling": "per class, ordered i != j, with replacement, torch.Generator(seed)",
            "averaging": "mean over classes of per-class mean (= mean over all pairs)",
        })
        return d


def diversity_protocol(pairs: int = 100, seed: int = 0, *, value_range: tuple[float, float] = (-1.0, 1.0),
                       small: str = "upsample", resize_mode: str = "bilinear") -> dict[str, Any]:
    """The protocol dict :func:`ms_ssim_diversity` with the same arguments follows."""
    return DiversityProtocol(pairs, seed, tuple(value_range), small, resize_mode).as_dict()


def sample_same_class_pairs(labels: torch.Tensor | None, n_images: int, pairs: int = 100,
                            seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Index tensors (a, b, cls) of ``pairs`` random same-class pairs per class (CPU, int64)."""
    if labels is None:
        labels = torch.zeros(n_images, dtype=torch.int64)
    labels = labels.reshape(-1).cpu().to(torch.int64)
    if len(labels) != n_images:
        raise MetricError(f"got {n_images} images but {len(labels)} labels; give one label per image")
    g = torch.Generator().manual_seed(seed)
    a, b, c = [], [], []
    for cls in torch.unique(labels).tolist():          # ascending
        idx = (labels == cls).nonzero().flatten()
        n = len(idx)
        if n < 2:
            log.warning("class %s has %d image(s); it needs two for MS-SSIM pairs and is skipped", cls, n)
            continue
        i = torch.randint(0, n, (pairs,), generator=g)
        j = (i + torch.randint(1, n, (pairs,), generator=g)) % n
        a.append(idx[i])
        b.append(idx[j])
        c.append(torch.full((pairs,), cls, dtype=torch.int64))
    if not a:
        raise MetricError("MS-SSIM diversity needs at least one class with two or more images")
    return torch.cat(a), torch.cat(b), torch.cat(c)


def _prepare(x: torch.Tensor, p: DiversityProtocol) -> torch.Tensor:
    lo, hi = p.value_range
    x = ((x.to(compute_dtype(x.device)) - lo) / (hi - lo)).clamp(0, 1)
    h, w = x.shape[-2:]
    short = min(h, w)
    if short >= p.min_side:
        return x
    if p.small == "error":
        raise MetricError(f"MS-SSIM with 5 scales needs images of at least {p.min_side} px per side; got "
                          f"{h} x {w}: use small='upsample' or score larger images")
    t = p.target_side
    size = (-(-h * t // short), -(-w * t // short))     # ceil; the shorter side becomes exactly t
    kw = {} if p.resize_mode == "nearest" else {"align_corners": False}
    return F.interpolate(x, size=size, mode=p.resize_mode, **kw).clamp(0, 1)


def ms_ssim_pairs(images: torch.Tensor, a: torch.Tensor, b: torch.Tensor, protocol: DiversityProtocol,
                  batch_size: int = 32) -> torch.Tensor:
    """MS-SSIM of images[a[k]] vs images[b[k]] for every k, as a (K,) tensor on the images' device
    (float64; float32 on MPS)."""
    out = []
    win = gaussian_window(protocol.win_size, protocol.win_sigma, images.shape[1], compute_dtype(images.device),
                          images.device)
    starts = range(0, len(a), batch_size)
    for s in tqdm(starts, desc="ms-ssim pairs", leave=False, disable=len(starts) < 8):
        ia, ib = a[s:s + batch_size].to(images.device), b[s:s + batch_size].to(images.device)
        x, y = _prepare(images[ia], protocol), _prepare(images[ib], protocol)
        out.append(pytorch_msssim.ms_ssim(x, y, data_range=1.0, size_average=False, win=win,
                                          weights=list(MS_SSIM_WEIGHTS)))
    return torch.cat(out)


def ms_ssim_per_class(images: torch.Tensor, labels: torch.Tensor | None, pairs: int = 100, seed: int = 0, *,
                      value_range: tuple[float, float] = (-1.0, 1.0), small: str = "upsample",
                      resize_mode: str = "bilinear", batch_size: int = 32) -> dict[int, float]:
    """{class: mean MS-SSIM of its ``pairs`` random pairs}; see the module docstring for the protocol."""
    p = DiversityProtocol(pairs, seed, tuple(value_range), small, resize_mode)
    if images.ndim != 4:
        raise MetricError(f"images must be (N, C, H, W); got shape {tuple(images.shape)}")
    lo, hi = p.value_range
    tol = 1e-3 * (hi - lo)
    if images.numel() and (float(images.min()) < lo - tol or float(images.max()) > hi + tol):
        raise MetricError(f"images span [{float(images.min()):.3g}, {float(images.max()):.3g}], outside "
                          f"value_range {list(p.value_range)}; pass the range they are in")
    a, b, cls = sample_same_class_pairs(labels, images.shape[0], pairs, seed)
    vals = ms_ssim_pairs(images, a, b, p, batch_size).double().cpu()
    return {int(c): float(vals[cls == c].mean()) for c in torch.unique(cls).tolist()}


def ms_ssim_diversity(images: torch.Tensor, labels: torch.Tensor | None, pairs: int = 100, seed: int = 0, *,
                      value_range: tuple[float, float] = (-1.0, 1.0), small: str = "upsample",
                      resize_mode: str = "bilinear", batch_size: int = 32) -> float:
    """Mean MS-SSIM over ``pairs`` random same-class pairs per class (lower = more diverse).

    ``images`` (N, C, H, W) in ``value_range`` (default [-1, 1]); ``labels`` (N,) class ids or None.
    The protocol it follows is ``diversity_protocol(pairs, seed, value_range=..., small=..., resize_mode=...)``.
    """
    per_class = ms_ssim_per_class(images, labels, pairs, seed, value_range=value_range, small=small,
                                  resize_mode=resize_mode, batch_size=batch_size)
    value = sum(per_class.values()) / len(per_class)
    if not math.isfinite(value):
        log.warning("MS-SSIM diversity is not finite (%s); check the images for NaN", value)
    return value


# -- the scorer -------------------------------------------------------------------------------------
def sample_classes(task: Any, pred: torch.Tensor, real: torch.Tensor, batch: dict[str, torch.Tensor],
                   metric: str) -> tuple[torch.Tensor, bool]:
    """The requested class of each sample in a batch (the task's input of kind "class", else ``batch["label"]``)
    and True; all zeros and False where there is none. Checks one sample per real image."""
    labels = requested_labels(task, batch)
    classwise = labels is not None
    if labels is None:
        labels = torch.zeros(len(pred), dtype=torch.int64)
    if not len(pred) == len(labels) == len(real):
        raise MetricError(f"{metric} got {len(pred)} samples, {len(labels)} labels and {len(real)} "
                          "real images; generate one sample per image of the batch")
    return labels.reshape(-1).cpu(), classwise


_REAL_VALUES: dict[str, float] = {}     # real images' MS-SSIM by content key (see DiversityScorer._score_real)
REAL_CACHE_FOLDER = "ms-ssim-real"      # the same values under the cache folder, one JSON file per key


class DiversityScorer(Scorer):
    """MS-SSIM diversity of class-conditional samples (AC-GAN protocol), with the real images' value.

    ``update(pred, batch)`` keeps the generated images with their requested classes (the task's
    input of kind "class", else ``batch["label"]``; one class when neither exists) and the batch's
    real images (``ctx.task.y(batch)``) with the same classes, both quantised to uint8 on the CPU
    (``round((x + 1) * 127.5)``, as FIDScorer). ``compute()`` returns ``ms_ssim``: the mean MS-SSIM
    of ``pairs`` random same-class pairs per class of the generated images (:func:`ms_ssim_diversity`
    on the uint8 images with ``value_range=(0, 255)``, i.e. ``u8 / 255`` in [0, 1]) and
    ``ms_ssim_real``: the same on the real images (the reference value). Lower is more diverse; no
    key is better high. Options: ``pairs`` (per class, default 100), ``seed`` (default 0).
    """

    feed: ClassVar[str] = "samples"
    keys: ClassVar[tuple[str, ...]] = ("ms_ssim", "ms_ssim_real")
    outputs: ClassVar[tuple[str, ...]] = ("image",)
    higher_is_better: ClassVar[tuple[str, ...]] = ()
    ranges: ClassVar[dict[str, tuple[float | None, float | None]]] = {"ms_ssim": (0.0, 1.0)}
    OPTIONS: ClassVar[tuple[str, ...]] = ("pairs", "seed")
    VALUE_RANGE: ClassVar[tuple[float, float]] = (0.0, 255.0)     # the stored uint8 images

    def __init__(self, ctx: ScoreContext):
        super().__init__(ctx)
        self.pairs, self.seed = self._options(ctx.options)
        self._protocol = diversity_protocol(self.pairs, self.seed, value_range=self.VALUE_RANGE)
        self._gen: list[torch.Tensor] = []
        self._real: list[torch.Tensor] = []
        self._labels: list[torch.Tensor] = []
        self._classwise = True

    @classmethod
    def _options(cls, options: dict[str, Any]) -> tuple[int, int]:
        bad = sorted(set(options) - set(cls.OPTIONS))
        if bad:
            raise MetricError(f"ms-ssim-diversity has no option {', '.join(repr(b) for b in bad)}; "
                              f"allowed: {', '.join(cls.OPTIONS)}")
        pairs, seed = options.get("pairs", 100), options.get("seed", 0)
        for name, v in (("pairs", pairs), ("seed", seed)):
            if isinstance(v, bool) or not isinstance(v, int):
                raise MetricError(f"ms-ssim-diversity option '{name}' must be an integer, not {v!r}")
        if pairs < 1:
            raise MetricError(f"ms-ssim-diversity option 'pairs' must be >= 1, not {pairs}")
        return pairs, seed

    @classmethod
    def preflight(cls, ctx: ScoreContext) -> None:
        """Only the options: MS-SSIM needs no weights."""
        cls._options(ctx.options)

    def update(self, pred: torch.Tensor, batch: dict[str, torch.Tensor]) -> None:
        real = self.ctx.task.y(batch)
        if pred.dim() != 4 or real.dim() != 4:
            raise MetricError(f"ms-ssim-diversity scores images (N, C, H, W); got samples {tuple(pred.shape)} "
                              f"and real images {tuple(real.shape)}")
        labels, classwise = sample_classes(self.ctx.task, pred, real, batch, "ms-ssim-diversity")
        self._classwise = self._classwise and classwise
        self._gen.append(quantise(pred))
        self._real.append(quantise(real))
        self._labels.append(labels)

    def _score(self, images: list[torch.Tensor], labels: torch.Tensor) -> float:
        x = torch.cat(images).to(self.ctx.device)
        return ms_ssim_diversity(x, labels, self.pairs, self.seed, value_range=self.VALUE_RANGE)

    def _score_real(self, labels: torch.Tensor) -> float:
        """The real images' value: the same at every evaluation of every run on the same test set, so it is
        computed once for given images, classes, protocol, device and library versions (keyed by their bytes)
        and kept in this process and in the cache folder (each run scores in a process of its own)."""
        x = torch.cat(self._real)
        h = hashlib.sha256(x.numpy().tobytes())
        h.update(labels.numpy().tobytes())
        h.update(f"{tuple(x.shape)}{self.pairs}{self.seed}{self.ctx.device}{torch.__version__}"
                 f"{version('pytorch-msssim')}".encode())
        key = h.hexdigest()
        if key not in _REAL_VALUES:
            if len(_REAL_VALUES) >= 16:
                _REAL_VALUES.pop(next(iter(_REAL_VALUES)))
            _REAL_VALUES[key] = self._cached_real(key, labels)
        return _REAL_VALUES[key]

    def _cached_real(self, key: str, labels: torch.Tensor) -> float:
        path = self.ctx.cache_dir / REAL_CACHE_FOLDER / f"{key[:40]}.json"
        try:
            stored = json.loads(path.read_text())
            if stored.get("key") == key and isinstance(stored.get("ms_ssim_real"), float):
                return stored["ms_ssim_real"]
        except (OSError, ValueError):                  # absent or unreadable: compute it again
            pass
        value = self._score(self._real, labels)
        write_atomic(path, lambda tmp: tmp.write_text(json.dumps({"key": key, "ms_ssim_real": value})))
        return value

    def compute(self) -> dict[str, float]:
        if not self._gen:
            raise MetricError("the ms-ssim-diversity scorer saw no samples; score at least one batch")
        labels = torch.cat(self._labels)
        return {"ms_ssim": self._score(self._gen, labels), "ms_ssim_real": self._score_real(labels)}

    def protocol(self) -> dict[str, Any]:
        return {"scorer": type(self).__name__, **self._protocol,
                "quantisation": f"{QUANTISATION}, scored as u8 / 255",
                "classes": ("requested class: the task's input of kind 'class' (else batch['label'])"
                            if self._classwise else "none given: all samples one class"),
                "real": f"task target '{self.ctx.task.y_key}', quantised alike, with the same classes",
                "num_samples": sum(len(g) for g in self._gen)}
