"""Feature extractors for FID / IS / KID, plugged into torch-fidelity's registry.

- ``inception-v3-compat``: torch-fidelity's own TF-exact Inception. Its weights come from a local
  file (``weights_path``, ``$BENCH_INCEPTION_WEIGHTS``, ``<data_root>/inception/``, the torch hub
  cache) or, where a network exists, torch-fidelity's release URL. It resizes internally to 299
  with TF1-style bilinear interpolation, whatever the resize mode says before it.
- ``mnist-classifier``: a small CNN the bench trains deterministically on MNIST (on the CPU with one
  thread, :func:`metrics.judges.judge_training`: the same weights whatever ``--threads`` / ``--jobs``;
  about 10 s for the default 60000 images x 2 epochs) and caches under ``cache_dir()`` keyed by the
  content hash of the training data + training protocol. FID / KID use
  its 128-d penultimate features, IS its 10 logits. It takes 28x28 images (native MNIST size).

``prepare_batch`` is the explicit, stamped pre-processing (value range, channels, resize) that turns
any image batch into the uint8 (N, C, S, S) tensor an extractor takes.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn
from torch_fidelity.feature_extractor_base import FeatureExtractorBase
from torch_fidelity.feature_extractor_inceptionv3 import URL_INCEPTION_V3
from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY, register_feature_extractor

from bench import provenance
from bench.atomic import write_atomic
from bench.data.paths import cache_dir, data_root
from bench.errors import DataError, MetricError
from bench.progress import bar as tqdm
from metrics.judges import judge_training, training_protocol

log = logging.getLogger(__name__)

INCEPTION_FILE = "weights-inception-2015-12-05-6726825d.pth"
WEIGHTS_ENV_VAR = "BENCH_INCEPTION_WEIGHTS"
RESIZE_MODES = ("nearest", "bilinear", "bicubic", "area", "bilinear_aa", "bicubic_aa")


@dataclass(frozen=True)
class ExtractorSpec:
    """What an extractor takes and which of its layers each metric reads."""

    input_size: int | None        # side it needs (None: any size, it resizes itself)
    channels: int                 # 3 (RGB) or 1 (grey)
    internal_resize: str          # what the extractor does to its input itself
    layers: dict[str, str]        # metric ("fid", "kid", "isc", "prc", "dc") -> feature layer
    default_resize: str = "none"
    #: () -> what else defines the features (e.g. the sha256 of code read from a local folder), stamped in the
    #: protocol beside the weights' sha256; None for extractors whose code is a pinned package
    provenance: Callable[[], dict[str, str]] | None = field(default=None, compare=False)


SPECS: dict[str, ExtractorSpec] = {
    "inception-v3-compat": ExtractorSpec(
        None, 3, "tf1x-bilinear:299",
        {"fid": "2048", "kid": "2048", "isc": "logits_unbiased", "prc": "2048", "dc": "2048"}),
    "mnist-classifier": ExtractorSpec(
        28, 1, "none", {"fid": "128", "kid": "128", "isc": "logits", "prc": "128", "dc": "128"}),
    # CLIP's image embedding through torch-fidelity (no class logits: no IS). Weights: the model's TorchScript
    # file from a local path (weights_path / --weights; no download at run time), named in the protocol by sha256.
    **{name: ExtractorSpec(None, 3, "tf1x-bilinear to the weights' input resolution, CLIP's normalisation",
                           {"fid": "clip", "kid": "clip", "prc": "clip", "dc": "clip"})
       for name in ("clip-rn50", "clip-rn101", "clip-vit-b-32", "clip-vit-b-16", "clip-vit-l-14")},
}


def spec(name: str) -> ExtractorSpec:
    if name not in SPECS:
        raise MetricError(f"unknown feature extractor '{name}'; choose one of: {', '.join(SPECS)} "
                          "(or add an ExtractorSpec to metrics.extractors.SPECS for a registered one)")
    return SPECS[name]


# -- pre-processing ---------------------------------------------------------------------------------
def parse_resize(resize: str) -> tuple[str, int | None]:
    """``"none"`` | ``"<mode>"`` | ``"<mode>:<size>"`` -> (mode, size or None)."""
    mode, _, size = resize.partition(":")
    if mode == "none" and not size:
        return "none", None
    if mode not in RESIZE_MODES or (size and not size.isdigit()):
        raise MetricError(f"bad resize mode '{resize}'; use 'none', '<mode>' or '<mode>:<side>' "
                          f"with mode one of {', '.join(RESIZE_MODES)}")
    return mode, int(size) if size else None


def prepare_batch(x: torch.Tensor, sp: ExtractorSpec, resize: str,
                  value_range: tuple[float, float] = (-1.0, 1.0)) -> torch.Tensor:
    """Image batch (N, C, H, W), uint8 or float in ``value_range`` -> uint8 (N, sp.channels, S, S).

    Channels: 1 -> 3 by repetition, 3 -> 1 by the channel mean. Resize in float on the 0..255 scale,
    then round: to ``<size>`` if given, else to the extractor's input size.
    """
    if x.dim() == 3:
        x = x.unsqueeze(1)
    if x.dim() != 4 or x.shape[1] not in (1, 3):
        raise MetricError(f"images must be (N, 1|3, H, W), got shape {tuple(x.shape)}")
    mode, size = parse_resize(resize)
    if mode == "none" and sp.input_size is not None and tuple(x.shape[-2:]) != (sp.input_size,) * 2:
        raise MetricError(f"this extractor takes {sp.input_size}x{sp.input_size} images, got "
                          f"{x.shape[-2]}x{x.shape[-1]}; pass resize='bilinear' (or another mode)")
    if x.dtype == torch.uint8:
        if x.shape[1] == sp.channels and mode == "none":
            return x.contiguous()
        xf = x.float()
    else:
        lo, hi = value_range
        xf = ((x.float() - lo) / (hi - lo) * 255.0).clamp(0, 255)
    if x.shape[1] != sp.channels:
        xf = xf.repeat(1, 3, 1, 1) if sp.channels == 3 else xf.mean(1, keepdim=True)
    if mode != "none":
        side = size or sp.input_size
        if side is None:
            raise MetricError(f"resize '{resize}' needs a side (e.g. '{mode}:299') for this extractor")
        base, aa = mode.removesuffix("_aa"), mode.endswith("_aa")
        kw = {"align_corners": False} if base in ("bilinear", "bicubic") else {}
        xf = F.interpolate(xf, size=(side, side), mode=base, antialias=aa, **kw).clamp(0, 255)
        if sp.input_size is not None and side != sp.input_size:
            raise MetricError(f"this extractor takes {sp.input_size}x{sp.input_size} images; "
                              f"resize to {sp.input_size} (e.g. '{mode}'), not {side}")
    return xf.round().to(torch.uint8)


# -- weights ----------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=16)
def _sha256_cached(path: str, size: int, mtime_ns: int) -> str:
    return provenance.file_sha256(path)


def file_sha256(path: Path) -> str:
    st = Path(path).stat()
    return _sha256_cached(str(Path(path).resolve()), st.st_size, st.st_mtime_ns)


def _inception_howto() -> str:
    return (f"Inception weights not found: download {INCEPTION_FILE} ({URL_INCEPTION_V3}) and set "
            f"{WEIGHTS_ENV_VAR}=/path/to/{INCEPTION_FILE} (or pass weights_path / the 'weights_path' "
            "metric option), or choose a domain extractor such as 'mnist-classifier'")


def inception_weights(weights_path: str | Path | None = None, *, download: bool = True) -> Path:
    """Local path of the Inception weights: argument, env var, data root, torch hub cache, download."""
    explicit = weights_path or os.environ.get(WEIGHTS_ENV_VAR)
    if explicit:
        p = Path(explicit).expanduser()
        if not p.is_file():
            raise MetricError(f"Inception weights file {p} does not exist; " + _inception_howto())
        return p
    hub = Path(torch.hub.get_dir()) / "checkpoints" / INCEPTION_FILE
    for p in (data_root() / "inception" / INCEPTION_FILE, hub):
        if p.is_file():
            return p
    if download:
        try:
            hub.parent.mkdir(parents=True, exist_ok=True)
            torch.hub.download_url_to_file(URL_INCEPTION_V3, str(hub), progress=False)
            return hub
        except Exception as e:  # no network, proxy, HTTP error: all end the same way
            log.debug("Inception download failed: %s", e)
    raise MetricError(_inception_howto())


def resolve_weights(extractor: str, weights_path: str | Path | None = None) -> Path:
    """The weights file an extractor will load (training the MNIST classifier if needed)."""
    if extractor == "inception-v3-compat":
        p = inception_weights(weights_path)
        try:  # torch-fidelity unpickles with weights_only=False: refuse anything but tensors first
            torch.load(p, map_location="cpu", weights_only=True)
        except Exception as e:
            raise MetricError(f"{p} is not a plain state dict of tensors ({e}); "
                              f"use the original {INCEPTION_FILE}") from e
        return p
    if extractor in WEIGHT_RESOLVERS:
        return WEIGHT_RESOLVERS[extractor](weights_path)
    if weights_path is None:
        raise MetricError(f"extractor '{extractor}' needs its weights file: set weights_path in the metric's "
                          "options (or --weights FILE for bench score); nothing is downloaded at run time")
    if not Path(weights_path).is_file():
        raise MetricError(f"weights for extractor '{extractor}' not found at {weights_path}")
    return Path(weights_path)


def build_extractor(extractor: str, layers: list[str], weights: Path, device: torch.device) -> nn.Module:
    """Create a registered torch-fidelity extractor (eval mode, no grad) on ``device``."""
    from torch_fidelity.utils import create_feature_extractor
    try:
        fe = create_feature_extractor(extractor, sorted(set(layers)), cuda=False, verbose=False,
                                      feature_extractor_weights_path=str(weights))
    except (RuntimeError, KeyError, ValueError) as e:
        raise MetricError(f"cannot build feature extractor '{extractor}' from {weights}: {e}") from e
    return fe.to(device).eval()


# -- the MNIST classifier ---------------------------------------------------------------------------
class MnistNet(nn.Module):
    """conv 4x4 s2 16 - conv 4x4 s2 32 - FC 128 (features) - FC 10 (logits); ReLU between."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, 16, 4, 2, 1), nn.ReLU(),
            nn.Conv2d(16, 32, 4, 2, 1), nn.ReLU(),
            nn.Flatten(), nn.Linear(32 * 7 * 7, 128), nn.ReLU())
        self.head = nn.Linear(128, 10)

    @staticmethod
    def normalise(x_uint8: torch.Tensor) -> torch.Tensor:
        return (x_uint8.float() / 255.0 - 0.1307) / 0.3081

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f = self.body(x)
        return f, self.head(f)


@dataclass(frozen=True)
class MnistClassifierProtocol:
    """How the MNIST feature classifier is trained (part of its cache key)."""

    n_train: int | None = None    # first N training images (None: all 60000)
    epochs: int = 2
    batch_size: int = 128
    lr: float = 1e-3              # Adam
    seed: int = 0
    n_eval: int = 10000           # first N test images for the logged accuracy
    version: int = 2              # bump when MnistNet or the loop changes (2: trained under
                                  # metrics.judges.judge_training: 1 thread, deterministic)


def _mnist_file(root: Path | None) -> Path:
    path = (root or data_root() / "mnist") / "mnist.npz"
    if not path.is_file():
        raise DataError(f"MNIST not found at {path}; put mnist.npz there or set BENCH_DATA_ROOT")
    return path


def load_mnist(root: Path | None = None) -> dict[str, np.ndarray]:
    with np.load(_mnist_file(root)) as z:
        return {k: z[k] for k in ("x_train", "y_train", "x_test", "y_test")}


@functools.lru_cache(maxsize=8)
def _classifier_key(npz: str, size: int, mtime_ns: int, protocol: MnistClassifierProtocol) -> str:
    """The classifier's cache key: sha256 of its training images + labels + protocol + architecture (asked once
    per process and file version: reading and hashing the 47 MB of images costs 0.3 s)."""
    with np.load(npz) as z:
        x_all, y_all = z["x_train"], z["y_train"]
    n = protocol.n_train or len(x_all)
    recipe = json.dumps(asdict(protocol), sort_keys=True) + repr(MnistNet())   # architecture in the key
    return hashlib.sha256(x_all[:n].tobytes() + y_all[:n].tobytes() + recipe.encode()).hexdigest()


def train_mnist_classifier(protocol: MnistClassifierProtocol = MnistClassifierProtocol(), *,
                           root: Path | None = None, cache: bool = True,
                           cache_root: Path | None = None) -> Path:
    """Train (or fetch from the cache) the classifier; returns its safetensors file.

    ``root``: the MNIST folder (default ``data_root()/mnist``); ``cache_root``: where trained
    classifiers live (default ``cache_dir()/fidelity``), as ``mnist-classifier-<key>.safetensors``
    (byte-identical for identical weights) plus a ``.json`` with the protocol and test accuracy; the
    key is the sha256 of the training images + labels + protocol + architecture.
    """
    npz = _mnist_file(root)
    st = npz.stat()
    key = _classifier_key(str(npz.resolve()), st.st_size, st.st_mtime_ns, protocol)
    out = (cache_root or cache_dir() / "fidelity") / f"mnist-classifier-{key[:20]}.safetensors"
    if cache and out.is_file():
        return out
    data = load_mnist(root)
    n = protocol.n_train or len(data["x_train"])
    x, y = data["x_train"][:n], data["y_train"][:n]
    log.info("training the MNIST feature classifier on %d images (%s)", n, protocol)
    with judge_training(protocol.seed):       # the same weights whatever --threads / --jobs / the cores
        net = _train_mnist_net(x, y, protocol)
        net.eval()
        with torch.no_grad():
            xe = torch.from_numpy(data["x_test"][:protocol.n_eval]).unsqueeze(1)
            pred = torch.cat([net(MnistNet.normalise(b))[1].argmax(1) for b in xe.split(1000)])
    acc = float((pred.numpy() == data["y_test"][:protocol.n_eval]).mean())
    log.info("MNIST feature classifier: test accuracy %.4f on %d images", acc, protocol.n_eval)
    # no safetensors metadata: its order varies between writes, and the file's sha256 is stamped
    write_atomic(out.with_suffix(".json"), lambda tmp: tmp.write_text(json.dumps(
        {"protocol": asdict(protocol), "training": training_protocol(protocol.seed), "test_accuracy": acc,
         "key_sha256": key}, indent=1)))
    write_atomic(out, lambda tmp: save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(tmp)))
    return out


def _train_mnist_net(x: np.ndarray, y: np.ndarray, protocol: MnistClassifierProtocol) -> MnistNet:
    """The training loop (the caller seeds the RNG: initialisation draws from it)."""
    n = len(x)
    net = MnistNet()
    gen = torch.Generator().manual_seed(protocol.seed)
    xt = torch.from_numpy(x).unsqueeze(1)
    yt = torch.from_numpy(y.astype(np.int64))
    opt = torch.optim.Adam(net.parameters(), lr=protocol.lr)
    net.train()
    for epoch in range(protocol.epochs):
        perm = torch.randperm(n, generator=gen)
        for i in tqdm(range(0, n, protocol.batch_size), desc=f"mnist classifier epoch {epoch + 1}",
                      leave=False, disable=n < 20000):
            idx = perm[i:i + protocol.batch_size]
            loss = F.cross_entropy(net(MnistNet.normalise(xt[idx]))[1], yt[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return net


class MnistFeatureExtractor(FeatureExtractorBase):
    """torch-fidelity extractor: uint8 (N, 1|3, 28, 28) -> ("128" features, "logits")."""

    def __init__(self, name: str, features_list: list[str],
                 feature_extractor_weights_path: str | None = None, **kwargs: object) -> None:
        super().__init__(name, features_list)
        path = feature_extractor_weights_path or train_mnist_classifier()
        self.net = MnistNet()
        self.net.load_state_dict(load_file(str(path)))
        self.requires_grad_(False)
        self.eval()

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        if x.dtype != torch.uint8 or x.dim() != 4 or x.shape[-2:] != (28, 28):
            raise MetricError(f"mnist-classifier takes uint8 (N, 1|3, 28, 28), got {x.dtype} {tuple(x.shape)}")
        xf = x.float().mean(1, keepdim=True) if x.shape[1] == 3 else x
        f, logits = self.net(MnistNet.normalise(xf))
        out = {"128": f, "logits": logits}
        return tuple(out[k] for k in self.features_list)

    @staticmethod
    def get_provided_features_list() -> tuple[str, ...]:
        return "128", "logits"

    @staticmethod
    def get_default_feature_layer_for_metric(metric: str) -> str:
        return {"isc": "logits", "fid": "128", "kid": "128", "prc": "128"}[metric]

    @staticmethod
    def can_be_compiled() -> bool:
        return False

    @staticmethod
    def get_dummy_input_for_compile() -> torch.Tensor:
        return torch.zeros(1, 1, 28, 28, dtype=torch.uint8)


WEIGHT_RESOLVERS: dict[str, Callable[[str | Path | None], Path]] = {}


def register_extractor(name: str, cls: type[FeatureExtractorBase], extractor_spec: ExtractorSpec,
                       weights: Callable[[str | Path | None], Path] | None = None) -> None:
    """Plug in a domain extractor: torch-fidelity's registry (for its metrics) plus its spec here.

    ``weights(weights_path_or_None) -> Path`` finds (or makes) its default weights file.
    """
    if name not in FEATURE_EXTRACTORS_REGISTRY:
        register_feature_extractor(name, cls)
    elif FEATURE_EXTRACTORS_REGISTRY[name] is not cls:
        raise MetricError(f"feature extractor '{name}' is already registered by another class; pick another name")
    SPECS[name] = extractor_spec
    if weights is not None:
        WEIGHT_RESOLVERS[name] = weights


register_extractor("mnist-classifier", MnistFeatureExtractor, SPECS["mnist-classifier"],
                   weights=lambda p: Path(p) if p else train_mnist_classifier())
