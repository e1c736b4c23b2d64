"""Task specs: the named fields a conditional model reads and predicts, and how they pair.

A task has ``inputs`` and ``targets``: named :class:`Field` s, each a batch key with a kind
(``bench.codecs``: image, labels, depth, class, mask, points, noise). By convention the condition
is the input ``x`` and the main target ``y``; a method's outputs say which field each estimates
(``MethodAdapter.outputs``), and a scorer compares an output with that field.

``pairing`` says how training samples come: ``"paired"`` (x and y of one sample together),
``"unpaired"`` (fields with ``stream = "b"`` come from an independent, seeded draw of the training
set: CycleGAN's two domains) or ``"none"`` (nothing to condition on but class labels: samples are
drawn from the prior, e.g. AC-GAN). Test splits are always read paired, so outputs can be scored
against their fields.

A task is registered by name and bound to a dataset (``bind``): the dataset must provide every
batch key the task requires (``requires() <= info.provides``); binding fills in the number of
classes, the palette and the depth range. The trainer and scorer never branch on a task's name.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from bench import codecs
from bench.codecs import labels_to_rgb, rgb_to_labels  # noqa: F401  (re-exported)
from bench.data.base import DatasetInfo
from bench.errors import ConfigError
from bench.registry import TASKS

PAIRINGS = ("paired", "unpaired", "none")


@dataclass(frozen=True)
class Field:
    key: str                          # the batch key it is read from
    kind: str                         # bench.codecs.KINDS
    channels: int = 0                 # model-space channels (images, masks); labels/class: from the dataset
    stream: str = "a"                 # unpaired tasks: "a" or "b" (the independently drawn stream)
    derive: str = ""                  # masks: from the sample index ("center:0.5", "box:0.25"); classes: "other:KEY"

    def __post_init__(self) -> None:
        if self.kind not in codecs.KINDS:
            raise ConfigError(f"field '{self.key}': kind '{self.kind}' is not one of {', '.join(codecs.KINDS)}")
        if self.stream not in ("a", "b"):
            raise ConfigError(f"field '{self.key}': stream must be 'a' or 'b', not '{self.stream}'")
        if self.derive and self.kind not in ("mask", "class"):
            raise ConfigError(f"field '{self.key}': only mask and class fields can be derived, not {self.kind}")
        if self.derive and self.kind == "class":
            codecs.class_spec(self.derive)


@dataclass(frozen=True)
class TaskSpec:
    name: str
    inputs: dict[str, Field]
    targets: dict[str, Field]
    default_metrics: tuple[str, ...] = ()
    pairing: str = "paired"
    description: str = ""
    # filled in by bind():
    dataset: DatasetInfo | None = None
    label_output: str = "rgb"         # "rgb" | "logits" (labels fields only)

    def __post_init__(self) -> None:
        if self.pairing not in PAIRINGS:
            raise ConfigError(f"task '{self.name}': pairing must be one of {', '.join(PAIRINGS)}")
        clash = set(self.inputs) & set(self.targets)
        if clash:
            raise ConfigError(f"task '{self.name}': field '{sorted(clash)[0]}' is both an input and a target")

    # -- fields ----------------------------------------------------------------------------------
    @property
    def fields(self) -> dict[str, Field]:
        return {**self.inputs, **self.targets}

    def field(self, name: str) -> Field:
        f = self.fields.get(name)
        if f is None:
            raise ConfigError(f"task '{self.name}' has no field '{name}'; fields: {', '.join(self.fields)}")
        return f

    def reads(self, f: Field) -> set[str]:
        """The batch keys field ``f`` is read from (a labels field in logits space reads the class ids)."""
        if f.kind == "noise":
            return set()
        if f.kind == "mask" and f.derive:
            return {"index"}
        if f.kind == "class" and f.derive:
            return {"index", codecs.class_spec(f.derive)}
        if f.kind == "labels" and self.label_output == "logits":
            return {codecs.LABEL_IDS_KEY}
        return {f.key}

    def requires(self) -> set[str]:
        """The batch keys a dataset must provide for this task."""
        return set().union(*(self.reads(f) for f in self.fields.values()))

    def stream_b_keys(self) -> set[str]:
        """Batch keys drawn from the second, independent stream (unpaired training only): what the stream-b fields
        read, so that a label map read as class ids comes from the second stream too."""
        if self.pairing != "unpaired":
            return set()
        return set().union(*(self.reads(f) for f in self.fields.values() if f.stream == "b"))

    def channels(self, name: str) -> int:
        f = self.field(name)
        if f.kind == "labels":
            return self.info.num_classes if self.label_output == "logits" else 3
        if f.kind == "depth" or f.kind == "mask":
            return f.channels or 1
        if f.kind == "class":
            return self.info.num_classes
        return f.channels

    def get(self, name: str, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Field ``name`` of ``batch`` in model space."""
        return codecs.encode(self.field(name), batch, self.dataset, self.label_output)

    # -- the x -> y convention -------------------------------------------------------------------
    @property
    def x_key(self) -> str:
        return self.inputs["x"].key if "x" in self.inputs else ""

    @property
    def y_key(self) -> str:
        return self.targets["y"].key

    @property
    def output(self) -> str:
        """The kind of the main target ``y``."""
        return self.targets["y"].kind

    @property
    def x_channels(self) -> int:
        return self.channels("x") if "x" in self.inputs else 0

    @property
    def y_channels(self) -> int:
        return self.channels("y")

    def x(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.get("x", batch)

    def y(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The main target in model space ([-1, 1] for images, labels and depth)."""
        return self.get("y", batch)

    def view(self, name: str) -> "TaskSpec":
        """This task seen from field ``name``: ``y`` becomes that field (scoring an output that
        estimates another field, e.g. CycleGAN's B -> A direction, where ``x`` and ``y`` swap)."""
        if name == "y":
            return self
        f = self.field(name)
        inputs = {k: v for k, v in self.inputs.items() if k != name}
        targets = {k: v for k, v in self.targets.items() if k != "y"}
        if name == "x":
            inputs["x"] = self.targets["y"]
        else:
            targets.pop(name, None)
            targets["_y"] = self.targets["y"]
        targets["y"] = f
        return replace(self, inputs=inputs, targets=targets)

    # -- binding ---------------------------------------------------------------------------------
    def bind(self, info: DatasetInfo, label_output: str = "rgb") -> "TaskSpec":
        if label_output not in ("rgb", "logits"):
            raise ConfigError(f"label_output must be 'rgb' or 'logits', not '{label_output}'")
        t = replace(self, dataset=info, label_output=label_output)
        provides = set(info.provides)
        if provides:
            missing = t.requires() - provides
            if missing:
                raise ConfigError(f"dataset '{info.name}' does not provide {', '.join(sorted(missing))} for task "
                                  f"'{self.name}' (it provides: {', '.join(sorted(provides))})")
        elif self.name not in info.tasks:
            raise ConfigError(f"dataset '{info.name}' does not support task '{self.name}'; "
                              f"it supports: {', '.join(info.tasks)}")
        if any(f.kind == "depth" for f in self.fields.values()) and not info.max_depth:
            raise ConfigError(f"dataset '{info.name}' gives no max_depth; it cannot serve a depth task")
        return t

    @property
    def info(self) -> DatasetInfo:
        if self.dataset is None:
            raise RuntimeError(f"task '{self.name}' is not bound to a dataset; call bind(info) first")
        return self.dataset

    # -- decoding (the main target's kind) -------------------------------------------------------
    def decode_labels(self, pred: torch.Tensor) -> torch.Tensor:
        """Generator output (N, C|3, H, W) -> class ids (N, H, W)."""
        return codecs.decode_labels(pred, self.info, self.label_output)

    def decode_depth(self, pred: torch.Tensor) -> torch.Tensor:
        """Generator output in [-1, 1] (N, 1, H, W) -> metres (N, 1, H, W)."""
        return codecs.decode_depth(pred, self.info)


def image_task(name: str, x: Field, y: Field, metrics: tuple[str, ...], description: str,
               pairing: str = "paired") -> TaskSpec:
    """An x -> y task (the pix2pix shape)."""
    return TaskSpec(name, inputs={"x": x}, targets={"y": y}, default_metrics=metrics, pairing=pairing,
                    description=description)


TASKS.register("labels2photo", image_task(
    "labels2photo", Field("label_rgb", "labels", 3), Field("photo", "image", 3),
    ("reconstruction", "segmenter-score"),
    "colour label map -> photo (scored by segmenting the generated photo)"))
TASKS.register("photo2labels", image_task(
    "photo2labels", Field("photo", "image", 3), Field("label_rgb", "labels", 3), ("segmentation",),
    "photo -> semantic labels (colour map or logits)"))
TASKS.register("photo2depth", image_task(
    "photo2depth", Field("photo", "image", 3), Field("depth", "depth", 1), ("depth",),
    "photo -> depth in metres"))
TASKS.register("photo2labels-unpaired", image_task(
    "photo2labels-unpaired", Field("photo", "image", 3), Field("label_rgb", "labels", 3, stream="b"),
    ("reconstruction",), "photo <-> colour label map from unpaired training streams (CycleGAN); "
    "scored per direction on the paired test split", pairing="unpaired"))
TASKS.register("inpaint-center", TaskSpec(
    "inpaint-center", inputs={"x": Field("photo", "image", 3), "mask": Field("mask", "mask", 1, derive="center:0.5")},
    targets={"y": Field("photo", "image", 3)}, default_metrics=("reconstruction",),
    description="fill the central square (half the side) of a photo; score on the region (context encoder)"))
TASKS.register("class2image", TaskSpec(
    "class2image", inputs={"c": Field("label", "class")}, targets={"y": Field("image", "image", 1)},
    default_metrics=("fid",), pairing="none",
    description="class label -> image, sampled from the prior (AC-GAN, CA-GAN); scored on samples per class"))
TASKS.register("autoencode", TaskSpec(
    "autoencode", inputs={"x": Field("photo", "image", 3)}, targets={"y": Field("photo", "image", 3)},
    default_metrics=("reconstruction",),
    description="photo -> the same photo through a bottleneck (decoupled learning's encoder-decoder)"))
TASKS.register("age2face", TaskSpec(
    "age2face", inputs={"x": Field("photo", "image", 3), "c": Field("age_bin", "class")},
    targets={"y": Field("photo", "image", 3)}, default_metrics=("reconstruction",),
    description="photo + age group -> the face at that age through a bottleneck (CAAE); scored at the photo's own "
                "age group"))
TASKS.register("autoencode-digits", TaskSpec(
    "autoencode-digits", inputs={"x": Field("image", "image", 1)}, targets={"y": Field("image", "image", 1)},
    default_metrics=("reconstruction",),
    description="grey digit image -> the same image through a bottleneck (decoupled learning on MNIST)"))
TASKS.register("digit2digit", TaskSpec(
    "digit2digit", inputs={"x": Field("image", "image", 1), "c": Field("target", "class", derive="other:label"),
                           "c_src": Field("label", "class")},
    targets={"y": Field("image", "image", 1)}, default_metrics=("class-accuracy",),
    description="grey digit image + a target digit -> the image redrawn as the target digit (StarGAN's domains "
                "on MNIST); each test image asks for a digit other than its own, fixed by its index; y is the "
                "real digits (FID's reference)"))
TASKS.register("points", TaskSpec(
    "points", inputs={}, targets={"y": Field("points", "points", 2)}, default_metrics=(), pairing="none",
    description="samples of a distribution of points, from the prior (the NRDS toy's sample sets)"))
TASKS.register("digits", TaskSpec(
    "digits", inputs={}, targets={"y": Field("image", "image", 1)}, default_metrics=("fid",), pairing="none",
    description="grey digit images sampled from the prior, no class condition (the new-losses paper on MNIST)"))
TASKS.register("photos", TaskSpec(
    "photos", inputs={}, targets={"y": Field("photo", "image", 3)}, default_metrics=("fid",), pairing="none",
    description="colour photos sampled from the prior, no condition (facades / Cityscapes photos; CelebA faces)"))
