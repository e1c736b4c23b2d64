"""LPIPS (Zhang et al. 2018), paired and as a diversity score, through torchmetrics' implementation.

The network is torchmetrics' port of the authors' ``lpips`` package (``_LPIPS``: the v0.1 scaling layer,
unit-normalised activations of five trunk layers, the learned 1x1 "lin" weights the package ships, spatial
mean, sum over layers). Two sets of weights define a number, and both are named by sha256 in the protocol:

- the *lin* layers: the file inside torchmetrics (``lpips_models/<net>.pth``), no download;
- the *trunk* (AlexNet by default, as the paper's headline metric; VGG16 or SqueezeNet 1.1): torchvision's
  ImageNet weights read from a local file only: the ``weights_path`` option, ``$BENCH_LPIPS_TRUNK``,
  ``<data_root>/lpips/<file>`` or the torch hub cache (``<hub>/checkpoints/<file>``, where torchvision keeps
  them), with torchvision's own file names (``alexnet-owt-7be5be79.pth``, ``vgg16-397923af.pth``,
  ``squeezenet1_1-b8a52dc0.pth``). Nothing is downloaded at run time: without the file a one-line error says
  where to put it.

Scorers:

- ``lpips`` (paired): the mean LPIPS between each output and its target (the translation papers' "distance
  to the ground truth"); lower is better.
- ``lpips-diversity`` (samples): the mean LPIPS of random pairs of samples that share a requested class (one
  class where the task has none), as BicycleGAN / MUNIT / StarGAN v2 score diversity (they pair samples of one
  input; for class-conditional models the class is that input); with the real images' value beside it.
  Pairs are drawn as the MS-SSIM diversity's (:func:`metrics.diversity.sample_same_class_pairs`).

Images in [-1, 1] (the bench's y-space) are what LPIPS takes; grey images are repeated to three channels.
The trunk needs images of at least ``MIN_SIDE`` px per side; the option ``resize = <side>`` resizes both
images bilinearly first (stamped in the protocol).
"""

from __future__ import annotations

import functools
import os
from dataclasses import asdict, dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from bench.data.paths import data_root
from bench.errors import MetricError
from metrics.base import ScoreContext, Scorer
from metrics.diversity import sample_classes, sample_same_class_pairs

TRUNK_ENV_VAR = "BENCH_LPIPS_TRUNK"
#: trunk name -> (torchvision's weights file, torchvision builder); the files torchvision itself downloads
TRUNKS: dict[str, tuple[str, str]] = {
    "alex": ("alexnet-owt-7be5be79.pth", "alexnet"),
    "vgg": ("vgg16-397923af.pth", "vgg16"),
    "squeeze": ("squeezenet1_1-b8a52dc0.pth", "squeezenet1_1"),
}
MIN_SIDE = 32
OPTIONS = ("net", "weights_path", "resize", "pairs", "seed", "batch_size")


@dataclass(frozen=True)
class LpipsProtocol:
    """Everything that defines an LPIPS number."""

    net: str
    trunk_file: str
    trunk_sha256: str
    lin_sha256: str
    resize: int | None
    implementation: str
    version: str = "0.1"
    value_range: tuple[float, float] = (-1.0, 1.0)


# -- weights ----------------------------------------------------------------------------------------
def _howto(net: str) -> str:
    fname = TRUNKS[net][0]
    return (f"LPIPS needs torchvision's ImageNet {TRUNKS[net][1]} weights: download "
            f"https://download.pytorch.org/models/{fname} and set {TRUNK_ENV_VAR}=/path/to/{fname} (or the metric "
            f"option weights_path, or put it in <data root>/lpips/); nothing is downloaded at run time")


def _check_net(net: str) -> str:
    if net not in TRUNKS:
        raise MetricError(f"LPIPS net '{net}' is not one of {', '.join(TRUNKS)} (the lpips package's trunks)")
    return net


def trunk_weights(net: str = "alex", weights_path: str | Path | None = None) -> Path:
    """Local path of the trunk's ImageNet weights: argument, env var, data root, torch hub cache."""
    _check_net(net)
    explicit = weights_path or os.environ.get(TRUNK_ENV_VAR)
    if explicit:
        p = Path(explicit).expanduser()
        if not p.is_file():
            raise MetricError(f"LPIPS trunk weights {p} do not exist; " + _howto(net))
        return p
    fname = TRUNKS[net][0]
    for p in (data_root() / "lpips" / fname, Path(torch.hub.get_dir()) / "checkpoints" / fname):
        if p.is_file():
            return p
    raise MetricError(_howto(net))


def lin_weights(net: str = "alex") -> Path:
    """The learned linear layers torchmetrics ships for ``net`` (the lpips package's v0.1 weights)."""
    import torchmetrics.functional.image.lpips as tm_lpips
    return Path(tm_lpips.__file__).parent / "lpips_models" / f"{_check_net(net)}.pth"


def _trunk_state(path: Path, net: str) -> dict[str, torch.Tensor]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise MetricError(f"LPIPS trunk weights {path} are not a readable state dict ({e}); " + _howto(net)) from e
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise MetricError(f"LPIPS trunk weights {path} are not a state dict; " + _howto(net))
    return state


@functools.lru_cache(maxsize=4)
def _network(net: str, trunk_path: str, size: int, mtime_ns: int) -> nn.Module:
    from torchmetrics.functional.image.lpips import _LPIPS
    model = _LPIPS(pretrained=True, net=net, pnet_rand=True, pnet_tune=False)   # lin layers from the package
    state = _trunk_state(Path(trunk_path), net)
    # The trunk's slices hold torchvision's `features` modules under their own indices: sliceK.<i>.w <- features.<i>.w
    mapped, missing = {}, []
    for key in model.net.state_dict():
        src = "features." + key.split(".", 1)[1]
        if src not in state:
            missing.append(src)
        else:
            mapped[key] = state[src]
    if missing:
        raise MetricError(f"LPIPS trunk weights {trunk_path} lack {missing[0]} (and {len(missing) - 1} more): "
                          f"not torchvision's {TRUNKS[net][1]}; " + _howto(net))
    try:
        model.net.load_state_dict(mapped)
    except RuntimeError as e:
        raise MetricError(f"LPIPS trunk weights {trunk_path} do not fit torchvision's {TRUNKS[net][1]}: "
                          f"{str(e).splitlines()[0]}") from e
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def lpips_network(net: str = "alex", weights_path: str | Path | None = None) -> tuple[nn.Module, Path]:
    """The LPIPS module (eval, no grad, on the CPU; cached per process) and its trunk file."""
    p = trunk_weights(net, weights_path)
    st = p.stat()
    return _network(net, str(p.resolve()), st.st_size, st.st_mtime_ns), p


def lpips_protocol(net: str, trunk: Path, resize: int | None) -> dict[str, Any]:
    from metrics.extractors import file_sha256
    return asdict(LpipsProtocol(
        net=net, trunk_file=trunk.name, trunk_sha256=file_sha256(trunk), lin_sha256=file_sha256(lin_weights(net)),
        resize=resize, implementation=f"torchmetrics {version('torchmetrics')} (_LPIPS, the lpips package's port)"))


# -- the distance ---------------------------------------------------------------------------------
def _prepare(x: torch.Tensor, resize: int | None) -> torch.Tensor:
    if x.dim() != 4 or x.shape[1] not in (1, 3):
        raise MetricError(f"LPIPS scores images (N, 1|3, H, W); got shape {tuple(x.shape)}")
    x = x.float().clamp(-1, 1)
    if x.shape[1] == 1:
        x = x.repeat(1, 3, 1, 1)
    if resize is not None:
        x = F.interpolate(x, size=(resize, resize), mode="bilinear", align_corners=False).clamp(-1, 1)
    if min(x.shape[-2:]) < MIN_SIDE:
        raise MetricError(f"LPIPS needs images of at least {MIN_SIDE} px per side, got {tuple(x.shape[-2:])}: "
                          f"set the metric option resize = 64")
    return x


@torch.no_grad()
def lpips_distance(a: torch.Tensor, b: torch.Tensor, model: nn.Module, resize: int | None = None,
                   batch_size: int = 64) -> torch.Tensor:
    """LPIPS per pair of images (N,) for ``a``, ``b`` in [-1, 1], computed on ``a``'s device."""
    if a.shape != b.shape:
        raise MetricError(f"LPIPS compares images of one shape; got {tuple(a.shape)} and {tuple(b.shape)}")
    model = model.to(a.device)
    out = []
    for i in range(0, len(a), batch_size):
        d = model(_prepare(a[i:i + batch_size], resize), _prepare(b[i:i + batch_size].to(a.device), resize))
        out.append(d.reshape(-1).double())
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.float64)


def _options(name: str, options: dict[str, Any], allowed: tuple[str, ...]) -> dict[str, Any]:
    bad = sorted(set(options) - set(allowed))
    if bad:
        raise MetricError(f"{name} has no option {', '.join(repr(b) for b in bad)}; allowed: {', '.join(allowed)}")
    out = {"net": _check_net(options.get("net", "alex")), "weights_path": options.get("weights_path"),
           "resize": options.get("resize"), "pairs": options.get("pairs", 100), "seed": options.get("seed", 0),
           "batch_size": options.get("batch_size", 64)}
    for key in ("resize", "pairs", "seed", "batch_size"):
        v = out[key]
        if v is not None and (isinstance(v, bool) or not isinstance(v, int)):
            raise MetricError(f"{name} option '{key}' must be an integer, not {v!r}")
    if out["resize"] is not None and out["resize"] < MIN_SIDE:
        raise MetricError(f"{name} option 'resize' must be >= {MIN_SIDE}, not {out['resize']}")
    if out["pairs"] < 1 or out["batch_size"] < 1:
        raise MetricError(f"{name} options 'pairs' and 'batch_size' must be >= 1")
    return out


# -- the scorers ----------------------------------------------------------------------------------
class _LpipsBase(Scorer):
    """What both LPIPS scorers share: image outputs only, the options, the network (loaded in preflight too)."""

    NAME: ClassVar[str] = "lpips"
    outputs: ClassVar[tuple[str, ...]] = ("image",)
    OPTIONS: ClassVar[tuple[str, ...]] = OPTIONS

    def __init__(self, ctx: ScoreContext):
        super().__init__(ctx)
        if ctx.task.output not in self.outputs:
            raise MetricError(f"metric '{self.NAME}' scores image outputs; task '{ctx.task.name}' outputs "
                              f"'{ctx.task.output}': remove it from the suite's metrics")
        self.opts = _options(self.NAME, ctx.options, self.OPTIONS)
        self.model, self.trunk = lpips_network(self.opts["net"], self.opts["weights_path"])

    @classmethod
    def preflight(cls, ctx: ScoreContext) -> None:
        opts = _options(cls.NAME, ctx.options, cls.OPTIONS)
        lpips_network(opts["net"], opts["weights_path"])


class LpipsScorer(_LpipsBase):
    """Mean LPIPS between each output and its target (lower is better). Options: net (alex | vgg | squeeze),
    weights_path (the trunk's torchvision weights), resize (side), batch_size."""

    keys: ClassVar[tuple[str, ...]] = ("lpips",)
    ranges: ClassVar[dict[str, tuple[float | None, float | None]]] = {"lpips": (0.0, None)}
    OPTIONS: ClassVar[tuple[str, ...]] = ("net", "weights_path", "resize", "batch_size")

    def __init__(self, ctx: ScoreContext):
        super().__init__(ctx)
        self._sum = 0.0
        self._count = 0

    def update(self, pred: torch.Tensor, batch: dict[str, torch.Tensor]) -> None:
        target = self.ctx.task.y(batch).to(pred.device)
        d = lpips_distance(pred, target, self.model, self.opts["resize"], self.opts["batch_size"])
        self._sum += float(d.sum())
        self._count += len(d)

    def compute(self) -> dict[str, float]:
        if self._count == 0:
            raise MetricError("lpips: no batches were scored; check the evaluation split")
        return {"lpips": self._sum / self._count}

    def protocol(self) -> dict[str, Any]:
        return {"scorer": type(self).__name__, **lpips_protocol(self.opts["net"], self.trunk, self.opts["resize"]),
                "pairs": "each output with its own target, mean over the evaluation split"}

    def score_reference(self, batch: dict[str, torch.Tensor]) -> torch.Tensor | None:
        """The target against itself is 0 by construction: no oracle row."""
        return None


class LpipsDiversityScorer(_LpipsBase):
    """Mean LPIPS of random same-class pairs of samples (higher is more diverse), and of the real images."""

    NAME: ClassVar[str] = "lpips-diversity"
    feed: ClassVar[str] = "samples"
    keys: ClassVar[tuple[str, ...]] = ("lpips_div", "lpips_div_real")
    higher_is_better: ClassVar[tuple[str, ...]] = ()     # more diverse is not better by itself: compare with real
    ranges: ClassVar[dict[str, tuple[float | None, float | None]]] = {"lpips_div": (0.0, None)}

    def __init__(self, ctx: ScoreContext):
        super().__init__(ctx)
        self._gen: list[torch.Tensor] = []
        self._real: list[torch.Tensor] = []
        self._labels: list[torch.Tensor] = []
        self._classwise = True

    def update(self, pred: torch.Tensor, batch: dict[str, torch.Tensor]) -> None:
        real = self.ctx.task.y(batch)
        labels, classwise = sample_classes(self.ctx.task, pred, real, batch, "lpips-diversity")
        self._classwise = self._classwise and classwise
        self._gen.append(pred.detach().float().clamp(-1, 1).cpu())
        self._real.append(real.detach().float().clamp(-1, 1).cpu())
        self._labels.append(labels)

    def _score(self, images: list[torch.Tensor], labels: torch.Tensor) -> float:
        x = torch.cat(images).to(self.ctx.device)
        a, b, _ = sample_same_class_pairs(labels, len(x), self.opts["pairs"], self.opts["seed"])
        return float(lpips_distance(x[a.to(x.device)], x[b.to(x.device)], self.model, self.opts["resize"],
                                    self.opts["batch_size"]).mean())

    def compute(self) -> dict[str, float]:
        if not self._gen:
            raise MetricError("the lpips-diversity scorer saw no samples; score at least one batch")
        labels = torch.cat(self._labels)
        return {"lpips_div": self._score(self._gen, labels), "lpips_div_real": self._score(self._real, labels)}

    def protocol(self) -> dict[str, Any]:
        return {"scorer": type(self).__name__, **lpips_protocol(self.opts["net"], self.trunk, self.opts["resize"]),
                "pairs_per_class": self.opts["pairs"], "seed": self.opts["seed"],
                "pairs": "i uniform over the class, j = i + k mod n, k uniform in 1..n-1 (as ms-ssim-diversity)",
                "classes": ("requested class: the task's input of kind 'class' (else batch['label'])"
                            if self._classwise else "none given: all samples one class"),
                "real": f"task target '{self.ctx.task.y_key}' with the same classes and pairs"}
