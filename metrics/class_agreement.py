"""Class agreement of class-conditional samples: does G draw the digit it was asked for?

The ``class-accuracy`` scorer classifies every generated image with the bench's MNIST classifier
(:class:`metrics.extractors.MnistNet`, trained deterministically and cached by
:func:`metrics.extractors.train_mnist_classifier`) and compares the recognised digit with the
requested one (the AC-GAN / CA-GAN "is the condition obeyed" check).

Protocol (stamped by :meth:`ClassAgreementScorer.protocol`):

- Requested classes: the task's class input ``c`` (else its first input field of kind ``"class"``;
  ``ctx.task.get(name, batch)``),
  else ``batch["label"]`` when the task has none (see :func:`requested_labels`).
- Pre-processing, as for FID (``metrics.fidelity.FIDScorer``): the model output in [-1, 1] is
  clamped and quantised to uint8 as ``round((x + 1) * 127.5)`` (as if saved to PNG); 3 channels are
  averaged to one (then rounded to uint8); images that are not 28 x 28 are resized to 28 x 28 with
  antialiased bilinear interpolation (align_corners=False) on the 0..255 scale and rounded
  (:func:`metrics.extractors.prepare_batch` with ``"bilinear_aa"``); then ``MnistNet.normalise``.
- Decision: argmax of the classifier's 10 logits (eval mode).
- Keys: ``class_acc`` = share of all samples recognised as their requested digit (a micro
  average; higher is better); ``class_acc_<c>`` = the same among the samples requested as class
  ``c``, for each requested class present (higher is better); ``recognised_<k>`` for every digit
  ``k`` = share of all samples recognised as ``k`` (a histogram summing to 1; no direction).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from safetensors.torch import load_file

from bench import provenance
from bench.errors import BenchError, MetricError
from metrics import extractors as ex
from metrics.base import ScoreContext, Scorer

if TYPE_CHECKING:  # pragma: no cover
    from bench.tasks import TaskSpec

OPTIONS = ("weights_path",)
QUANTISATION = "clamp to [-1, 1], uint8 round((x + 1) * 127.5)"
RESIZE = "bilinear_aa"          # metrics.extractors.prepare_batch mode, used only when not 28 x 28


def requested_labels(task: TaskSpec, batch: dict[str, torch.Tensor]) -> torch.Tensor | None:
    """The class each sample of ``batch`` was generated for, as int64 (N,) on the CPU, or None.

    The task's input field ``c`` when it is of kind ``"class"`` (the condition: StarGAN's target digit, not the
    source digit ``c_src``), else its first input field of kind ``"class"``, else ``batch["label"]`` when that is a
    vector of per-sample class ids; None when neither exists.
    """
    named = [n for n, f in task.inputs.items() if f.kind == "class"]
    if named:
        name = "c" if "c" in named else named[0]
        return task.get(name, batch).detach().reshape(-1).long().cpu()
    lab = batch.get("label")
    if isinstance(lab, torch.Tensor) and lab.dim() == 1:
        return lab.detach().long().cpu()
    return None


def quantise(x: torch.Tensor) -> torch.Tensor:
    """Model-space images in [-1, 1] -> uint8 on the CPU, ``round((x + 1) * 127.5)`` (as FIDScorer)."""
    return ((x.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).cpu()


def resolve_classifier(weights_path: str | Path | None = None) -> Path:
    """The classifier's weights file: ``weights_path``, else the bench's cached (or freshly trained) one."""
    if weights_path:
        p = Path(weights_path).expanduser()
        if not p.is_file():
            raise MetricError(f"class-accuracy classifier weights not found at {p}; fix the 'weights_path' "
                              "metric option or drop it to use the bench's MNIST classifier")
        return p
    try:
        return ex.train_mnist_classifier()
    except BenchError as e:
        raise MetricError(f"cannot train the bench's MNIST classifier for class-accuracy ({e}); "
                          "provide MNIST or set the 'weights_path' metric option") from e


def load_classifier(path: Path, device: torch.device | str = "cpu") -> ex.MnistNet:
    """``MnistNet`` with the weights of ``path``, in eval mode, without gradients, on ``device``."""
    net = ex.MnistNet()
    try:
        net.load_state_dict(load_file(str(path)))
    except Exception as e:  # not safetensors, wrong keys or shapes: all end the same way
        raise MetricError(f"{path} is not an MnistNet safetensors file ({type(e).__name__}); "
                          "use weights from metrics.extractors.train_mnist_classifier") from e
    return net.to(device).eval().requires_grad_(False)


def _check_options(options: dict[str, Any]) -> None:
    bad = sorted(set(options) - set(OPTIONS))
    if bad:
        raise MetricError(f"class-accuracy has no option {', '.join(repr(b) for b in bad)}; "
                          f"allowed: {', '.join(OPTIONS)}")


class ClassAgreementScorer(Scorer):
    """Share of generated samples the bench's MNIST classifier recognises as the requested digit.

    Option (``ctx.options``): ``weights_path`` (an ``MnistNet`` safetensors file; default: the bench's
    classifier from ``metrics.extractors.train_mnist_classifier()``). See the module docstring for
    the protocol and the keys.
    """

    feed: ClassVar[str] = "samples"
    keys: ClassVar[tuple[str, ...]] = ("class_acc",)
    outputs: ClassVar[tuple[str, ...]] = ("image",)
    higher_is_better: ClassVar[tuple[str, ...]] = ("class_acc",)
    ranges: ClassVar[dict[str, tuple[float | None, float | None]]] = {"class_acc": (0.0, 1.0), "recognised": (0.0, 1.0)}

    def __init__(self, ctx: ScoreContext):
        super().__init__(ctx)
        _check_options(ctx.options)
        self.weights = resolve_classifier(ctx.options.get("weights_path"))
        self.weights_sha256 = provenance.file_sha256(self.weights)
        self.net = load_classifier(self.weights, ctx.device)
        self.num_classes = self.net.head.out_features
        self.spec = ex.spec("mnist-classifier")
        k = self.num_classes
        self._requested = torch.zeros(k, dtype=torch.int64)     # samples asked for as class c
        self._hits = torch.zeros(k, dtype=torch.int64)          # ... and recognised as c
        self._recognised = torch.zeros(k, dtype=torch.int64)    # samples recognised as k

    @classmethod
    def preflight(cls, ctx: ScoreContext) -> None:
        """The classifier's weights: the given file, or the bench's (trained and cached if absent)."""
        _check_options(ctx.options)
        load_classifier(resolve_classifier(ctx.options.get("weights_path")))

    @torch.no_grad()
    def classify(self, pred: torch.Tensor) -> torch.Tensor:
        """Recognised digit (int64 (N,), CPU) of each model-space image (N, 1|3, H, W) in [-1, 1]."""
        u8 = quantise(pred)
        side = self.spec.input_size
        resize = "none" if tuple(u8.shape[-2:]) == (side, side) else RESIZE
        x = ex.prepare_batch(u8, self.spec, resize)
        logits = self.net(ex.MnistNet.normalise(x.to(self.ctx.device)))[1]
        return logits.argmax(1).cpu()

    def update(self, pred: torch.Tensor, batch: dict[str, torch.Tensor]) -> None:
        labels = requested_labels(self.ctx.task, batch)
        if labels is None:
            raise MetricError("class-accuracy needs the requested class of each sample: give the task an input "
                              "field of kind 'class' (or batches a 'label' vector)")
        if len(labels) != len(pred):
            raise MetricError(f"class-accuracy got {len(pred)} samples for {len(labels)} requested labels; "
                              "generate one sample per label of the batch")
        outside = labels[(labels < 0) | (labels >= self.num_classes)]
        if len(outside):
            raise MetricError(f"class-accuracy's classifier knows classes 0..{self.num_classes - 1}, not the "
                              f"requested class {int(outside[0])}; score a task whose classes are digits")
        rec = self.classify(pred)
        k = self.num_classes
        self._requested += torch.bincount(labels, minlength=k)
        self._hits += torch.bincount(labels[rec == labels], minlength=k)
        self._recognised += torch.bincount(rec, minlength=k)

    def compute(self) -> dict[str, float]:
        n = int(self._requested.sum())
        if n == 0:
            raise MetricError("the class-accuracy scorer saw no samples; score at least one batch")
        out = {"class_acc": int(self._hits.sum()) / n}
        out |= {f"class_acc_{c}": int(self._hits[c]) / int(self._requested[c])
                for c in range(self.num_classes) if int(self._requested[c]) > 0}
        out |= {f"recognised_{k}": int(self._recognised[k]) / n for k in range(self.num_classes)}
        return out

    def protocol(self) -> dict[str, Any]:
        return {
            "scorer": type(self).__name__,
            "classifier": "mnist-classifier (metrics.extractors.MnistNet)",
            "weights_sha256": self.weights_sha256,
            "quantisation": QUANTISATION,
            "channels": "3 -> 1 by the channel mean, rounded to uint8",
            "resize": f"{RESIZE} to {self.spec.input_size}x{self.spec.input_size} when not that size",
            "normalise": "(x / 255 - 0.1307) / 0.3081",
            "decision": "argmax of the logits, eval mode",
            "labels": "requested class: the task's input of kind 'class' (else batch['label'])",
            "class_acc": "share of all samples recognised as requested (micro average)",
            "num_samples": int(self._requested.sum()),
        }
