"""DINOv2 feature spaces for FID / KID / precision-recall / density-coverage, from local files only.

torch-fidelity 0.4 registers ``dinov2-vit-s-14`` / ``-b-14`` / ``-l-14`` / ``-g-14`` (the feature space
Stein et al. 2023, dgm-eval, recommend over Inception), but builds them with ``torch.hub.load`` from GitHub
and raises ``NotImplementedError`` for a local weights path. Importing this module (``metrics.fidelity`` does)
puts a subclass in their place that keeps torch-fidelity's forward pass exactly (TF1-style bilinear resize to
224, ImageNet normalisation, the CLS token after the final norm as the ``dinov2`` feature) and builds the
network from two local things, nothing downloaded at run time:

- the authors' code, a checkout of facebookresearch/dinov2 (its ``hubconf.py``): ``$BENCH_DINOV2_CODE``,
  ``<data root>/dinov2/code`` or the torch hub cache's copy (``<hub>/facebookresearch_dinov2_main``, there
  on any machine that has loaded DINOv2 through torch.hub once), loaded with ``source="local"`` and
  ``pretrained=False``;
- the weights, the authors' ``dinov2_vit<s|b|l|g>14_pretrain.pth``: the metric option ``weights_path``,
  ``<data root>/dinov2/<file>`` or ``<hub>/checkpoints/<file>`` (where torch.hub keeps them).

The protocol names both by sha256 (the weights file's; the code's over ``hubconf.py`` and ``dinov2/**/*.py``).
"""

from __future__ import annotations

import functools
import hashlib
import os
import sys
import warnings
from contextlib import redirect_stdout
from pathlib import Path

import torch
from torch_fidelity.feature_extractor_base import FeatureExtractorBase
from torch_fidelity.feature_extractor_dinov2 import MODEL_METADATA, FeatureExtractorDinoV2
from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY

from bench.data.paths import data_root
from bench.errors import MetricError
from metrics.extractors import SPECS, WEIGHT_RESOLVERS, ExtractorSpec

CODE_ENV_VAR = "BENCH_DINOV2_CODE"
URL = "https://dl.fbaipublicfiles.com/dinov2/{0}/{0}_pretrain.pth"


def weights_file(name: str) -> str:
    """The authors' file name for an extractor: dinov2-vit-l-14 -> dinov2_vitl14_pretrain.pth."""
    return f"{MODEL_METADATA[name]}_pretrain.pth"


def code_dir() -> Path:
    """The local checkout of facebookresearch/dinov2 (a folder with hubconf.py)."""
    explicit = os.environ.get(CODE_ENV_VAR)
    candidates = ([Path(explicit).expanduser()] if explicit else
                  [data_root() / "dinov2" / "code", Path(torch.hub.get_dir()) / "facebookresearch_dinov2_main"])
    for p in candidates:
        if (p / "hubconf.py").is_file():
            return p
    raise MetricError(f"DINOv2's code not found ({', '.join(str(p) for p in candidates)} has no hubconf.py): "
                      f"git clone https://github.com/facebookresearch/dinov2 and set {CODE_ENV_VAR}=/path/to/dinov2; "
                      "nothing is downloaded at run time")


@functools.lru_cache(maxsize=8)
def _code_sha256(folder: str, stamp: tuple[tuple[str, int, int], ...]) -> str:
    h = hashlib.sha256()
    for rel, _, _ in stamp:
        h.update(rel.encode() + b"\0" + (Path(folder) / rel).read_bytes())
    return h.hexdigest()


def code_sha256(folder: Path) -> str:
    """sha256 over hubconf.py and dinov2/**/*.py (relative path and bytes, in sorted order)."""
    files = [folder / "hubconf.py", *sorted((folder / "dinov2").rglob("*.py"))]
    stamp = tuple((str(f.relative_to(folder)), f.stat().st_size, f.stat().st_mtime_ns) for f in files)
    return _code_sha256(str(folder.resolve()), stamp)


def resolve(name: str, weights_path: str | Path | None = None) -> Path:
    """The weights file for ``name``: the argument, ``<data root>/dinov2/`` or the torch hub cache."""
    fname = weights_file(name)
    if weights_path:
        p = Path(weights_path).expanduser()
        if not p.is_file():
            raise MetricError(f"DINOv2 weights {p} do not exist; download {URL.format(MODEL_METADATA[name])}")
        return p
    for p in (data_root() / "dinov2" / fname, Path(torch.hub.get_dir()) / "checkpoints" / fname):
        if p.is_file():
            return p
    raise MetricError(f"extractor '{name}' needs {fname}: download {URL.format(MODEL_METADATA[name])} into "
                      f"<data root>/dinov2/ or set the metric option weights_path; nothing is downloaded at run time")


class LocalDinoV2(FeatureExtractorDinoV2):
    """torch-fidelity's DINOv2 extractor, built from the local code and weights (see the module docstring)."""

    def __init__(self, name: str, features_list: list[str], feature_extractor_weights_path: str | None = None,
                 feature_extractor_internal_dtype: str | None = None, **kwargs: object) -> None:
        FeatureExtractorBase.__init__(self, name, features_list)
        if name not in MODEL_METADATA:
            raise MetricError(f"unknown DINOv2 extractor '{name}'; choose one of {', '.join(MODEL_METADATA)}")
        if feature_extractor_internal_dtype not in (None, "float32"):
            raise MetricError("the DINOv2 extractor computes in float32 only")
        self.feature_extractor_internal_dtype = torch.float32
        weights = resolve(name, feature_extractor_weights_path)
        os.environ["XFORMERS_DISABLED"] = "1"
        with redirect_stdout(sys.stderr), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="xFormers is")
            self.model = torch.hub.load(str(code_dir()), MODEL_METADATA[name], source="local", pretrained=False,
                                        trust_repo=True)
        try:
            self.model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True), strict=True)
        except (RuntimeError, OSError, ValueError) as e:
            raise MetricError(f"cannot load {weights} into DINOv2 {MODEL_METADATA[name]}: "
                              f"{str(e).splitlines()[0]}") from e
        self.requires_grad_(False)
        self.eval()


def provenance() -> dict[str, str]:
    """What the protocol stamps beside the weights' sha256: the code's folder name and sha256."""
    folder = code_dir()
    return {"dinov2_code_sha256": code_sha256(folder), "dinov2_code": "facebookresearch/dinov2 (local, hubconf.py)"}


for _name in MODEL_METADATA:
    FEATURE_EXTRACTORS_REGISTRY[_name] = LocalDinoV2
    SPECS[_name] = ExtractorSpec(
        None, 3, "tf1x-bilinear:224, ImageNet normalisation (torch-fidelity's DINOv2 forward)",
        {"fid": "dinov2", "kid": "dinov2", "prc": "dinov2", "dc": "dinov2"},
        provenance=provenance)
    WEIGHT_RESOLVERS[_name] = functools.partial(resolve, _name)
