"""FID / IS / KID through torch-fidelity, the per-class FID protocol, and the ``fid`` scorer.

Pure functions: ``fid_from_features`` / ``fid_from_stats`` (Frechet distance in float64) and
``kid_from_features`` (torch-fidelity's KID, fed float64 features: in float32 its cubic kernel
loses the small differences of low-variance features, e.g. KID 2^-21 instead of 0 at zero spread).
``compute(gen, real, ...)`` extracts features with a torch-fidelity extractor (see
``metrics.extractors``: the standard Inception from a local weights file, or a registered domain
extractor such as ``mnist-classifier``) and scores them with torch-fidelity's IS / KID functions.
Inputs may be uint8 or float (``value_range``, default [-1, 1]) tensors (N, C, H, W), image folders,
datasets of image tensors, iterables of batches, or a callable ``sample(n) -> images`` with
``num_samples``. Reference statistics of ``real`` are cached under ``cache_dir()/fidelity`` keyed by the
content hash of the data + the protocol (never by a name); ``cache_root`` may be a str or a Path.
Every result carries its ``protocol``.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, Union

import numpy as np
import torch
import torch_fidelity
from safetensors.torch import load_file, save_file

from bench.data.paths import cache_dir
from bench.errors import MetricError
from bench.progress import bar as tqdm
from bench.registry import METRICS
from metrics import extractors as ex
from metrics import extractor_dinov2  # noqa: F401  (DINOv2 from local code and weights)
from metrics import extractor_espnet  # noqa: F401  (registers the espnet-cityscapes extractors)
from metrics.base import ScoreContext, Scorer

log = logging.getLogger(__name__)

ImageSource = Union[torch.Tensor, str, Path, torch.utils.data.Dataset, Callable[[int], torch.Tensor],
                    Iterable[torch.Tensor]]
METRIC_NAMES = ("fid", "kid", "is", "prc", "dc")
#: metrics that compare the generated features with the real ones one by one (not through statistics)
FEATURE_METRICS = ("kid", "prc", "dc")


# -- pure functions ---------------------------------------------------------------------------------
def feature_statistics(f: torch.Tensor | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(N, D) features -> mean (D,) and unbiased covariance (D, D), float64."""
    x = np.asarray(f.detach().cpu().numpy() if torch.is_tensor(f) else f, dtype=np.float64)
    if x.ndim != 2 or len(x) < 2:
        raise MetricError(f"FID needs (N >= 2, D) features, got shape {x.shape}; use more samples")
    mu = x.mean(0)
    xc = x - mu
    return mu, (xc.T @ xc) / (len(x) - 1)


def fid_from_stats(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """Frechet distance ||mu1-mu2||^2 + tr(S1 + S2 - 2 (S1 S2)^1/2), float64.

    tr (S1 S2)^1/2 is the sum of the square roots of the eigenvalues of L^T S2 L with S1 = L L^T
    (Cholesky; eigen-decomposition when S1 is singular): symmetric, so no complex round-off.
    """
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    s1, s2 = np.asarray(sigma1, np.float64), np.asarray(sigma2, np.float64)
    if mu1.shape != mu2.shape or s1.shape != s2.shape or s1.shape != (len(mu1), len(mu1)):
        raise MetricError(f"feature dimensions differ: {mu1.shape} / {s1.shape} vs {mu2.shape} / {s2.shape}")
    try:
        lt = np.linalg.cholesky(s1)
    except np.linalg.LinAlgError:
        w, v = np.linalg.eigh(s1)
        lt = v * np.sqrt(np.clip(w, 0, None))
    m = lt.T @ s2 @ lt
    tr_covmean = np.sqrt(np.clip(np.linalg.eigvalsh((m + m.T) / 2), 0, None)).sum()
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2 * tr_covmean)


def fid_from_features(f1: torch.Tensor | np.ndarray, f2: torch.Tensor | np.ndarray) -> float:
    """FID between two (N, D) feature sets (float64)."""
    return fid_from_stats(*feature_statistics(f1), *feature_statistics(f2))


def kid_from_features(f1: torch.Tensor | np.ndarray, f2: torch.Tensor | np.ndarray, *, subsets: int = 100,
                      subset_size: int = 1000, rng_seed: int = 2020) -> tuple[float, float]:
    """KID (mean, std over ``subsets``) between two (N, D) feature sets: torch-fidelity's unbiased MMD^2
    with the kernel (x.y / D + 1)^3 on random subsets of ``min(subset_size, N1, N2)`` rows each,
    computed in float64 whatever the features' dtype."""
    a, b = (torch.as_tensor(f).detach().cpu().double() for f in (f1, f2))
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1] or min(len(a), len(b)) < 2:
        raise MetricError(f"KID needs two (N >= 2, D) feature sets of the same D, got {tuple(a.shape)} and "
                          f"{tuple(b.shape)}; use more samples")
    from torch_fidelity.metric_kid import kid_features_to_metric
    k = kid_features_to_metric(a, b, kid_subsets=subsets, kid_subset_size=min(subset_size, len(a), len(b)),
                               rng_seed=rng_seed, verbose=False)
    return float(k["kernel_inception_distance_mean"]), float(k["kernel_inception_distance_std"])


# -- sources --------------------------------------------------------------------------------------
def _folder_files(path: Path) -> list[str]:
    from torch_fidelity.utils import glob_samples_paths
    files = glob_samples_paths(str(path), False, "png,jpg,jpeg", "jpg,jpeg", verbose=False)
    if not files:
        raise MetricError(f"no png/jpg images in {path}")
    return files


def _batches(src: ImageSource, batch_size: int, num_samples: int | None) -> Iterator[torch.Tensor]:
    if torch.is_tensor(src):
        yield from src[:num_samples].split(batch_size)
        return
    if isinstance(src, (str, Path)):
        if not Path(src).is_dir():
            raise MetricError(f"image folder {src} does not exist")
        from torch_fidelity.datasets import ImagesPathDataset
        src = ImagesPathDataset(_folder_files(Path(src)))
    if isinstance(src, torch.utils.data.Dataset):
        n = len(src) if num_samples is None else min(num_samples, len(src))  # type: ignore[arg-type]
        for i in range(0, n, batch_size):
            yield torch.stack([_image_of(src[j]) for j in range(i, min(i + batch_size, n))])
        return
    if callable(src):
        if not num_samples:
            raise MetricError("a generator callable needs num_samples")
        for i in range(0, num_samples, batch_size):
            yield src(min(batch_size, num_samples - i))
        return
    seen = 0
    for b in src:
        b = _image_of(b)
        if num_samples is not None:
            b = b[:num_samples - seen]
        yield b
        seen += len(b)
        if num_samples is not None and seen >= num_samples:
            return


def _image_of(item: Any) -> torch.Tensor:
    """A dataset item: a tensor, the first element of a tuple, or the 'image' entry of a dict."""
    if isinstance(item, (tuple, list)):
        item = item[0]
    if isinstance(item, dict):
        item = item.get("image", item.get("photo"))
    if not torch.is_tensor(item):
        raise MetricError("dataset items must be image tensors (or (image, ...) tuples)")
    return item


def content_hash(src: ImageSource) -> str | None:
    """sha256 of a tensor's dtype/shape/bytes or of a folder's files; None when not hashable."""
    h = hashlib.sha256()
    if torch.is_tensor(src):
        t = src.detach().cpu().contiguous()
        h.update(f"{t.dtype}{tuple(t.shape)}".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
        return h.hexdigest()
    if isinstance(src, (str, Path)) and Path(src).is_dir():
        for f in _folder_files(Path(src)):
            h.update(Path(f).name.encode())
            h.update(Path(f).read_bytes())
        return h.hexdigest()
    return None


# -- the feature space: one extractor, one protocol ---------------------------------------------------
class FeatureSpace:
    """A built extractor plus the protocol that defines its numbers."""

    def __init__(self, extractor: str = "inception-v3-compat", *, weights_path: str | Path | None = None,
                 metrics: Iterable[str] = ("fid",), resize: str | None = None, batch_size: int = 64,
                 device: str | torch.device = "cpu", value_range: tuple[float, float] = (-1.0, 1.0)):
        self.metrics = tuple(metrics)
        bad = [m for m in self.metrics if m not in METRIC_NAMES]
        if bad or not self.metrics:
            raise MetricError(f"metrics must be some of {', '.join(METRIC_NAMES)}, got {list(self.metrics)}")
        self.name, self.spec = extractor, ex.spec(extractor)
        lacking = [m for m in self.metrics if ("isc" if m == "is" else m) not in self.spec.layers]
        if lacking:
            raise MetricError(f"extractor '{extractor}' gives no features for {', '.join(lacking)} (it has "
                              f"{', '.join(sorted(self.spec.layers))}); drop them or use another extractor")
        self.resize = resize or self.spec.default_resize
        ex.parse_resize(self.resize)
        self.batch_size, self.device = int(batch_size), torch.device(device)
        self.value_range = (float(value_range[0]), float(value_range[1]))
        self.weights = ex.resolve_weights(extractor, weights_path)
        self.layers = {m: self.spec.layers["isc" if m == "is" else m] for m in self.metrics}
        self._fe: torch.nn.Module | None = None
        self.protocol: dict[str, Any] = {
            "extractor": extractor, "weights_sha256": ex.file_sha256(self.weights),
            "layers": self.layers, "resize": self.resize, "internal_resize": self.spec.internal_resize,
            "channels": self.spec.channels, "value_range": list(self.value_range), "input_dtype": "uint8",
            "eval_mode": True, "torch_fidelity": torch_fidelity.__version__,
            **(self.spec.provenance() if self.spec.provenance else {})}

    @property
    def extractor(self) -> torch.nn.Module:
        if self._fe is None:
            self._fe = ex.build_extractor(self.name, list(self.layers.values()), self.weights, self.device)
        return self._fe

    def features(self, src: ImageSource, num_samples: int | None = None, desc: str = "features"
                 ) -> dict[str, torch.Tensor]:
        """Features of every image of ``src``: {layer: float32 (N, D)} on the CPU."""
        fe, out = self.extractor, {layer: [] for layer in set(self.layers.values())}
        sized = torch.is_tensor(src) or isinstance(src, torch.utils.data.Dataset)
        total = num_samples or (len(src) if sized else None)  # type: ignore[arg-type]
        with torch.no_grad(), tqdm(total=total, desc=desc, unit="img", leave=False,
                                   disable=total is not None and total < 2000) as bar:
            for b in _batches(src, self.batch_size, num_samples):
                x = ex.prepare_batch(b.to(self.device), self.spec, self.resize, self.value_range)
                for k, v in fe.convert_features_tuple_to_dict(fe(x)).items():
                    out[k].append(v.float().cpu())
                bar.update(len(b))
        if not out or not next(iter(out.values())):
            raise MetricError("no images to score")
        return {k: torch.cat(v) for k, v in out.items()}

    def reference(self, src: ImageSource, *, cache: bool = True, cache_root: str | Path | None = None,
                  need_features: bool = False) -> dict[str, torch.Tensor]:
        """Real-side features / FID statistics ("mu", "sigma"), cached by content hash + protocol."""
        digest = content_hash(src) if cache else None
        path = None
        if digest is not None:
            proto = dict(self.protocol, layers=sorted(set(self.layers.values())))
            key = hashlib.sha256((digest + json.dumps(proto, sort_keys=True)).encode()).hexdigest()
            root = Path(cache_root) if cache_root is not None else cache_dir() / "fidelity"
            path = root / f"ref-{key[:32]}.safetensors"
            if path.is_file():
                ref = load_file(str(path))
                has_feats = any(k.startswith("feat.") for k in ref)
                if (has_feats or not need_features) and ("mu" in ref or "fid" not in self.layers):
                    log.debug("reference statistics from %s", path)
                    return ref
        feats = self.features(src, desc="reference features")
        ref = {f"feat.{k}": v for k, v in feats.items()}
        if "fid" in self.layers:
            mu, sigma = feature_statistics(feats[self.layers["fid"]])
            ref |= {"mu": torch.from_numpy(mu), "sigma": torch.from_numpy(sigma)}
        ref["n"] = torch.tensor(len(next(iter(feats.values()))))
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            keep = ref if need_features else {k: v for k, v in ref.items() if not k.startswith("feat.")}
            tmp = path.with_suffix(".tmp")
            save_file({k: v.contiguous() for k, v in keep.items()}, str(tmp))
            tmp.replace(path)
        return ref

    @property
    def needs_features(self) -> bool:
        """Whether the real side must keep its features (not only FID's statistics)."""
        return any(m in self.metrics for m in FEATURE_METRICS)

    def score(self, gen: dict[str, torch.Tensor], ref: dict[str, torch.Tensor], *, rng_seed: int = 2020,
              kid_subsets: int = 100, kid_subset_size: int = 1000, is_splits: int = 10, prc_k: int = 3,
              dc_k: int = 5) -> dict[str, Any]:
        """Metrics from generated features and a reference (from ``reference``)."""
        from torch_fidelity.metric_isc import isc_features_to_metric
        n_gen = len(next(iter(gen.values())))
        out: dict[str, Any] = {}
        proto = dict(self.protocol, num_gen=n_gen, num_real=int(ref["n"]))
        if "fid" in self.layers:
            out["fid"] = fid_from_stats(*feature_statistics(gen[self.layers["fid"]]),
                                        ref["mu"].numpy(), ref["sigma"].numpy())
        if "kid" in self.layers:
            fg, fr = gen[self.layers["kid"]], ref[f"feat.{self.layers['kid']}"]
            size = min(kid_subset_size, len(fg), len(fr))
            out["kid"], out["kid_std"] = kid_from_features(fg, fr, subsets=kid_subsets, subset_size=size,
                                                           rng_seed=rng_seed)
            proto["kid"] = {"subsets": kid_subsets, "subset_size": size, "rng_seed": rng_seed, "dtype": "float64"}
        if "is" in self.layers:
            i = isc_features_to_metric(gen[self.layers["is"]], is_splits, True, rng_seed)
            out |= {"is": i["inception_score_mean"], "is_std": i["inception_score_std"]}
            proto["is"] = {"splits": is_splits, "rng_seed": rng_seed}
        if "prc" in self.layers:                 # torch-fidelity's: generated first, real second
            from torch_fidelity.metric_prc import calculate_precision_recall_part
            fg, fr = gen[self.layers["prc"]], ref[f"feat.{self.layers['prc']}"]
            p, r = calculate_precision_recall_part(fg, fr, neighborhood=prc_k)
            out |= {"precision": p, "recall": r, "f_score": 2 * p * r / max(1e-5, p + r)}
            proto["prc"] = {"k": prc_k, "method": "Kynkaanniemi et al. 2019 (torch-fidelity), ball <= k-th NN",
                            "dtype": "float32"}
        if "dc" in self.layers:
            fg, fr = gen[self.layers["dc"]], ref[f"feat.{self.layers['dc']}"]
            out["density"], out["coverage"] = density_coverage(fg, fr, k=dc_k)
            proto["dc"] = {"k": dc_k, "method": "Naeem et al. 2020 (prdc), strictly inside the k-th NN ball",
                           "dtype": "float64"}
        out["protocol"] = proto
        return out


def density_coverage(gen: torch.Tensor, real: torch.Tensor, k: int = 5, batch_size: int = 10000
                     ) -> tuple[float, float]:
    """Density and coverage (Naeem et al. 2020, as their ``prdc`` code): each real sample's ball reaches its
    k-th nearest real neighbour; density = (1 / kM) x the count of (real ball, generated sample) pairs with the
    sample strictly inside the ball; coverage = the share of real balls holding at least one generated sample."""
    from torch_fidelity.metric_prc import calc_cdist_part
    real, gen = real.double(), gen.double()
    if len(real) <= k:
        raise MetricError(f"density / coverage with k = {k} need more than {k} real samples, got {len(real)}")
    radii = torch.cat([calc_cdist_part(b, real, batch_size).kthvalue(k + 1, dim=1).values
                       for b in real.split(batch_size)])                  # the 1st is the sample itself
    inside = torch.cat([calc_cdist_part(b, gen, batch_size) < r[:, None]
                        for b, r in zip(real.split(batch_size), radii.split(batch_size))])   # (N real, M gen)
    return float(inside.sum(0).double().mean() / k), float(inside.any(1).double().mean())


def compute(gen: ImageSource, real: ImageSource | None = None, *, extractor: str = "inception-v3-compat",
            weights_path: str | Path | None = None, metrics: Iterable[str] = ("fid",),
            resize: str | None = None, batch_size: int = 64, device: str | torch.device = "cpu",
            cache: bool = True, cache_root: str | Path | None = None, num_samples: int | None = None,
            value_range: tuple[float, float] = (-1.0, 1.0), rng_seed: int = 2020, kid_subsets: int = 100,
            kid_subset_size: int = 1000, is_splits: int = 10) -> dict[str, Any]:
    """FID / KID / IS of ``gen`` against ``real``: {"fid": ..., "kid": ..., "kid_std": ..., "is": ...,
    "is_std": ..., "protocol": {...}} (only the metrics asked for; IS needs no ``real``).

    ``resize``: "none" (the extractor's native input; Inception still resizes to 299 internally,
    TF1-style, stamped as ``internal_resize``) or "<mode>[:<side>]" with mode in
    ``metrics.extractors.RESIZE_MODES``; default: the extractor's own default ("none").
    """
    fs = FeatureSpace(extractor, weights_path=weights_path, metrics=metrics, resize=resize,
                      batch_size=batch_size, device=device, value_range=value_range)
    if real is None and set(fs.metrics) - {"is"}:
        raise MetricError("FID and KID need the real images (real=...)")
    g = fs.features(gen, num_samples, desc="generated features")
    ref = (fs.reference(real, cache=cache, cache_root=cache_root, need_features=fs.needs_features)
           if real is not None else {"n": torch.tensor(0)})
    return fs.score(g, ref, rng_seed=rng_seed, kid_subsets=kid_subsets, kid_subset_size=kid_subset_size,
                    is_splits=is_splits)


def per_class_fid(gen_images: torch.Tensor, gen_labels: torch.Tensor, real_images: torch.Tensor,
                  real_labels: torch.Tensor, **compute_kwargs: Any) -> dict[str, Any]:
    """CA-GAN protocol: for each class c, FID of all real images of c against the first as many
    generated images of c; returns {"per_class": {c: fid}, "mean": mean over classes, "protocol"}.

    Every class needs at least two real images (and as many generated ones): a covariance needs two
    samples. A class with fewer raises a one-line MetricError naming it and its count.
    """
    compute_kwargs = {k: v for k, v in compute_kwargs.items() if k not in ("metrics", "num_samples")}
    fs_keys = ("extractor", "weights_path", "resize", "batch_size", "device", "value_range")
    fs = FeatureSpace(metrics=("fid",), **{k: v for k, v in compute_kwargs.items() if k in fs_keys})
    gl, rl = torch.as_tensor(gen_labels).cpu(), torch.as_tensor(real_labels).cpu()
    classes = sorted(int(c) for c in torch.unique(rl))
    counts = {c: int((rl == c).sum()) for c in classes}
    gen_counts = {c: int((gl == c).sum()) for c in classes}
    few = {c: n for c, n in counts.items() if n < 2}
    if few:
        raise MetricError("per-class FID needs at least 2 real images per class (a covariance needs two); "
                          + ", ".join(f"class {c} has {n}" for c, n in few.items())
                          + ": score more samples (raise the profile's eval_subset, or none for the whole split)")
    short = {c: n for c, n in gen_counts.items() if n < counts[c]}
    if short:
        raise MetricError("per-class FID needs as many generated images per class as real ones; short: "
                          + ", ".join(f"class {c}: {n} < {counts[c]}" for c, n in short.items())
                          + ": generate more samples of those classes")
    layer = fs.layers["fid"]
    real_f = fs.reference(real_images, cache=compute_kwargs.get("cache", True),
                          cache_root=compute_kwargs.get("cache_root"), need_features=True)[f"feat.{layer}"]
    keep = torch.cat([torch.nonzero(gl == c).flatten()[:counts[c]] for c in classes])
    gen_f = torch.empty(len(gl), real_f.shape[1])
    gen_f[keep] = fs.features(gen_images[keep], desc="generated features")[layer]
    per_class = {c: fid_from_features(gen_f[torch.nonzero(gl == c).flatten()[:counts[c]]], real_f[rl == c])
                 for c in tqdm(classes, desc="per-class FID", leave=False, disable=len(classes) < 20)}
    protocol = dict(fs.protocol, per_class="all real of class c vs as many generated of c", counts=counts)
    return {"per_class": per_class, "mean": float(np.mean(list(per_class.values()))), "protocol": protocol}


# -- the scorer -------------------------------------------------------------------------------------
@METRICS.register("fid")
class FIDScorer(Scorer):
    """FID (and optionally KID / IS, per-class FID) of generated images against the real targets.

    Options (``ctx.options``): ``extractor`` (default "inception-v3-compat"), ``weights_path``,
    ``resize``, ``batch_size``, ``metrics`` (subset of fid / kid / is / prc: precision, recall and their F-score,
    Kynkaanniemi et al. 2019 with ``prc_k`` neighbours, default 3 / dc: density and coverage, Naeem et al. 2020
    with ``dc_k``, default 5), ``per_class`` (bool: CA-GAN
    per-class FID by ``batch[class_key]``, default key "label"). Predictions and targets are
    quantised to uint8 (from [-1, 1]) as they stream in, as if saved to PNG.
    """

    feed = "samples"
    keys = ("fid", "kid", "is", "fid_class_mean", "precision", "recall", "f_score", "density", "coverage")
    outputs = ("image",)
    higher_is_better = ("is", "precision", "recall", "f_score", "density", "coverage")
    ranges = {"fid": (0.0, None), "fid_class_mean": (0.0, None), "is": (1.0, None),   # KID's estimate may be < 0
              "precision": (0.0, 1.0), "recall": (0.0, 1.0), "f_score": (0.0, 1.0), "density": (0.0, None),
              "coverage": (0.0, 1.0)}

    def __init__(self, ctx: ScoreContext):
        super().__init__(ctx)
        o = ctx.options
        self.per_class = bool(o.get("per_class", False))
        self.prc_k, self.dc_k = int(o.get("prc_k", 3)), int(o.get("dc_k", 5))
        if self.prc_k < 1 or self.dc_k < 1:
            raise MetricError(f"fid: prc_k and dc_k count neighbours (1 or more), got {self.prc_k} and {self.dc_k}")
        self.class_key = str(o.get("class_key", "label"))
        self.space = FeatureSpace(
            o.get("extractor", "inception-v3-compat"), weights_path=o.get("weights_path"),
            metrics=tuple(o.get("metrics", ("fid",))), resize=o.get("resize"),
            batch_size=int(o.get("batch_size", 64)), device=ctx.device, value_range=(-1.0, 1.0))
        self._gen: list[torch.Tensor] = []
        self._real: list[torch.Tensor] = []
        self._labels: list[torch.Tensor] = []

    @staticmethod
    def _u8(x: torch.Tensor) -> torch.Tensor:
        return ((x.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).cpu()

    @classmethod
    def preflight(cls, ctx: ScoreContext) -> None:
        """The feature extractor's weights (Inception from a local file on machines without network)."""
        ex.resolve_weights(ctx.options.get("extractor", "inception-v3-compat"), ctx.options.get("weights_path"))

    def update(self, pred: torch.Tensor, batch: dict[str, torch.Tensor]) -> None:
        self._gen.append(self._u8(pred))
        self._real.append(self._u8(self.ctx.task.y(batch)))
        if self.per_class:
            if self.class_key not in batch or batch[self.class_key].dim() != 1:
                raise MetricError(f"per-class FID needs per-image class ids in batch['{self.class_key}']")
            self._labels.append(batch[self.class_key].cpu())

    def compute(self) -> dict[str, float]:
        if not self._gen:
            raise MetricError("the fid scorer saw no images")
        gen, real = torch.cat(self._gen), torch.cat(self._real)
        root = self.ctx.cache_dir / "fidelity"
        ref = self.space.reference(real, cache_root=root, need_features=self.space.needs_features)
        out = self.space.score(self.space.features(gen, desc="generated features"), ref, rng_seed=2020,
                               prc_k=self.prc_k, dc_k=self.dc_k)
        self._protocol = out.pop("protocol")
        if self.per_class:
            labels = torch.cat(self._labels)
            pc = per_class_fid(gen, labels, real, labels, extractor=self.space.name,
                               weights_path=self.space.weights, resize=self.space.resize,
                               batch_size=self.space.batch_size, device=self.space.device, cache_root=root)
            out["fid_class_mean"] = pc["mean"]
            out |= {f"fid_class_{c}": v for c, v in pc["per_class"].items()}
        return {k: float(v) for k, v in out.items()}

    @classmethod
    def score_sets(cls, gen: torch.Tensor, real: torch.Tensor, options: dict[str, Any], device: torch.device,
                   cache_dir: Path) -> tuple[dict[str, float], dict[str, Any]]:
        """Two image sets as they are (uint8 (N, C, H, W), any sizes N): ``bench score --gen --real``. Options as
        the scorer's (extractor, weights_path, resize, batch_size, metrics, prc_k, dc_k); IS needs no real set."""
        unknown = sorted(set(options) - {"extractor", "weights_path", "resize", "batch_size", "metrics", "prc_k",
                                         "dc_k"})
        if unknown:
            raise MetricError(f"fid: unknown option '{unknown[0]}'")
        space = FeatureSpace(options.get("extractor", "inception-v3-compat"), weights_path=options.get("weights_path"),
                             metrics=tuple(options.get("metrics", ("fid",))), resize=options.get("resize"),
                             batch_size=int(options.get("batch_size", 64)), device=device)
        ref = (space.reference(real, cache_root=Path(cache_dir) / "fidelity", need_features=space.needs_features)
               if set(space.metrics) - {"is"} else {"n": torch.tensor(len(real))})
        out = space.score(space.features(gen, desc="generated features"), ref, rng_seed=2020,
                          prc_k=int(options.get("prc_k", 3)), dc_k=int(options.get("dc_k", 5)))
        proto = out.pop("protocol")
        return {k: float(v) for k, v in out.items()}, {"scorer": f"{cls.__name__}.score_sets", **proto}

    def protocol(self) -> dict[str, Any]:
        p = dict(getattr(self, "_protocol", self.space.protocol))
        return {"scorer": type(self).__name__, **p, "per_class": self.per_class,
                "real": f"task target '{self.ctx.task.y_key}' quantised to uint8"}
