"""Sample grids: what a trained model makes, drawn the same way for every row, seed and commit.

Written beside each run's checkpoints as ``samples.png`` after it is scored:

- conditional on data (pix2pix and kin): the first rows of the test split, one per line:
  condition | each named output, the main output ``y`` last | target; where the task asks for a class other
  than the sample's own (a derived class input ``c``, StarGAN's target domain), the target column shows a real
  test image of the requested class (the first of that class in the test split), so the reader sees what was
  asked for;
- sampled from the prior with classes (AC-GAN, CA-GAN): rows are fixed latents, columns the classes
  (the same latents in every column, as in the papers' figures).

A conditional run also keeps its grid's columns (``samples.safetensors``, 8-bit RGB), and the suite draws one
``comparison-<task>.png`` per task from its first seed: condition | each row's output | target, on the same test
inputs, the rows in the suite's order (:func:`write_comparison`): the picture a reader compares discriminators by.

Inputs are fixed (test split order, latents from a fixed seed), so grids compare across rows and
commits. Drawing a grid never fails a run: a problem is logged and the grid is skipped.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch

from bench.atomic import write_atomic
from bench.codecs import labels_to_rgb
from bench.contracts import FromBatch, FromPrior
from bench.runspec import RunSpec
from bench.tasks import TaskSpec

log = logging.getLogger(__name__)

EXEMPLAR_POOL = 256                               # test samples searched for a requested class's exemplar
SAMPLES_FILE = "samples.png"
COLUMNS_FILE = "samples.safetensors"              # the grid's columns, for the suite's side-by-side comparison
GRID_SEED = 7
GRID_ROWS = 8


def to_rgb(task: TaskSpec, field: str, x: torch.Tensor) -> torch.Tensor | None:
    """A field's model-space batch as RGB images in [0, 1] (N, 3, H, W); None when it is not an image."""
    kind = task.field(field).kind
    if x.dim() != 4:
        return None
    x = x.detach().float().cpu()
    if kind == "labels" and task.label_output == "logits" and x.shape[1] != 3:
        rgb = labels_to_rgb(x.argmax(1), task.info.palette_tensor())
        return ((rgb + 1) / 2).clamp(0, 1)
    if kind in ("image", "labels", "depth", "mask"):
        x = x.clamp(-1, 1) if kind != "mask" else x * 2 - 1
        x = (x + 1) / 2
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        return x[:, :3]
    return None


def comparison_file(task: str, seed: int | None = None) -> str:
    """The file name of ``task``'s side-by-side comparison in a suite's output folder: the first seed's
    ``comparison-<task>.png``, another seed's ``comparison-<task>-seed<k>.png``."""
    return f"comparison-{task}.png" if seed is None else f"comparison-{task}-seed{seed}.png"


def _save(images: list[torch.Tensor], nrow: int, path: Path) -> Path:
    from PIL import Image
    from torchvision.utils import make_grid
    grid = make_grid(torch.cat(images), nrow=nrow, padding=2, pad_value=1.0)
    arr = (grid.permute(1, 2, 0).numpy() * 255).round().clip(0, 255).astype("uint8")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp.png")
    Image.fromarray(arr).save(tmp)
    tmp.replace(path)
    return path


def write_samples(spec: RunSpec, checkpoint: Path, path: Path, *, device: torch.device,
                  rows: int = GRID_ROWS) -> Path | None:
    """Draw the run's sample grid to ``path``; None (and a log line) when it cannot be drawn."""
    from bench.build import bind_task, build_dataset
    from bench.score import open_model
    try:
        prof = spec.profile_settings
        data = build_dataset(spec, "test", prof.image_size, rows)
        task = bind_task(spec, data)
        adapter = open_model(spec, checkpoint, task, device)
        if task.pairing == "none":
            classes = task.info.num_classes if any(f.kind == "class" for f in task.inputs.values()) else 0
            k = max(1, min(classes, 16))
            labels = torch.arange(k).repeat(rows) if classes else None
            req = FromPrior(rows * k, labels, GRID_SEED, torch.arange(rows).repeat_interleave(k),
                            truncation=spec.train.get("truncation"))
            img = to_rgb(task, "y", adapter.sample(req)["y"])
            if img is None:
                return None
            real = next(iter(torch.utils.data.DataLoader(data, batch_size=rows)))
            real = to_rgb(task, "y", task.y({k_: v for k_, v in real.items() if isinstance(v, torch.Tensor)}))
            n = min(rows, len(img), len(real) if real is not None else 0)
            if n:   # for the comparison: the first latent's classes (or the first samples) beside real test images
                _save_columns([img[:n].cpu(), real[:n].cpu()], False, path.with_name(COLUMNS_FILE))
            return _save([img], k, path)
        batch = next(iter(torch.utils.data.DataLoader(data, batch_size=rows)))
        batch = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
        outs = adapter.sample(FromBatch(batch))
        fields = dict(getattr(adapter, "outputs", {"y": "y"}))
        columns = [to_rgb(task, "x", task.x(batch))] if "x" in task.inputs else []
        columns += [to_rgb(task.view(fields.get(name, "y")), "y", outs[name]) for name in grid_outputs(outs)]
        shown = requested_exemplars(spec, task, batch, prof.image_size)
        columns.append(to_rgb(task, "y", task.y(batch) if shown is None else shown.to(device)))
        columns = [c for c in columns if c is not None]
        if not columns:
            return None
        _save_columns(columns, "x" in task.inputs, path.with_name(COLUMNS_FILE))
        interleaved = torch.stack(columns, 1).flatten(0, 1)            # row by row: one sample per line
        return _save([interleaved], len(columns), path)
    except Exception as e:  # noqa: BLE001 - a picture must never cost a result
        log.warning("could not draw the sample grid of %s / %s / seed %d: %s", spec.row, spec.task, spec.seed, e)
        return None


def grid_outputs(outs: dict[str, torch.Tensor]) -> list[str]:
    """The order of a run's outputs in its grid: the others as the method names them, then the main output ``y``
    last, next to the target, where the side-by-side comparison takes each row's output from (a CycleGAN's or
    StarGAN's backward output ``x``, a VAE's reconstruction, an ED//GAN's parts come before it)."""
    return [n for n in outs if n != "y"] + (["y"] if "y" in outs else [])


def requested_exemplars(spec: RunSpec, task: TaskSpec, batch: dict[str, torch.Tensor],
                        size: int) -> torch.Tensor | None:
    """For a task whose class input ``c`` is derived (asks for a class other than the sample's own): per sample
    of ``batch``, the target field of the first test image of the requested class (model space); None for other
    tasks, or when a requested class is not among the first ``EXEMPLAR_POOL`` test images."""
    from bench.build import build_dataset
    from bench.codecs import class_spec
    f = task.inputs.get("c")
    if f is None or f.kind != "class" or not f.derive:
        return None
    want = task.get("c", batch).cpu().tolist()
    key = class_spec(f.derive)
    pool = build_dataset(spec, "test", size, EXEMPLAR_POOL)
    found: dict[int, dict[str, torch.Tensor]] = {}
    for i in range(len(pool)):
        sample = pool[i]
        k = int(sample[key])
        if k in want and k not in found:
            found[k] = sample
        if len(found) == len(set(want)):
            break
    if len(found) < len(set(want)):
        return None
    rows = [found[k] for k in want]
    stacked = {k: torch.stack([torch.as_tensor(r[k]) for r in rows]) for k in rows[0]
               if isinstance(rows[0][k], torch.Tensor)}
    return task.y(stacked)


def _save_columns(columns: list[torch.Tensor], has_input: bool, path: Path) -> None:
    """The grid's columns as 8-bit RGB (columns, N, 3, H, W): condition (where there is one), outputs, target."""
    from safetensors.torch import save_file
    u8 = (torch.stack(columns) * 255).round().clamp(0, 255).to(torch.uint8).contiguous()
    write_atomic(path, lambda tmp: save_file({"columns": u8}, str(tmp), metadata={"has_input": str(bool(has_input))}))


def _columns(path: Path) -> tuple[torch.Tensor, bool] | None:
    from safetensors import safe_open
    try:
        with safe_open(str(path), "pt") as f:
            return f.get_tensor("columns"), f.metadata().get("has_input") == "True"
    except Exception as e:  # noqa: BLE001 - a missing or damaged file leaves its row out
        log.warning("sample columns %s unreadable (%s): that row is left out of the comparison", path, e)
        return None


def write_comparison(runs: list[tuple[str, Path]], path: Path, seed: int) -> list[str] | None:
    """One picture of every row on the same test inputs: condition | each row's final output | target, one input
    per line (for models sampled from the prior: each row's samples from the same latents | real test images), from the runs' ``samples.safetensors`` (``runs``: (row, run folder) of ``seed``, in the suite's
    order), with its column captions beside it (``.json``). Returns the captions, or None when fewer than two
    rows have columns (an earlier picture at ``path`` is removed: it would show other runs). Reads files only: no
    model, no plug-in code runs here."""
    got = []
    for row, run_dir in runs:
        found = _columns(run_dir / COLUMNS_FILE) if (run_dir / COLUMNS_FILE).is_file() else None
        if found is not None:
            got.append((row, found))
    shapes = {tuple(c.shape[1:]) for _, (c, _) in got}
    if len(got) < 2 or len(shapes) != 1:
        if len(shapes) > 1:
            log.warning("the rows' sample grids differ in shape %s: no comparison drawn at %s", sorted(shapes), path)
        path.unlink(missing_ok=True)
        path.with_suffix(".json").unlink(missing_ok=True)
        return None
    first, has_input = got[0][1]
    cols = ([first[0]] if has_input else []) + [c[-2] for _, (c, _) in got] + [first[-1]]
    # without a condition the models sample from the prior: the last column is real test images, not targets
    captions = (["condition"] if has_input else []) + [row for row, _ in got] + ["target" if has_input else "real"]
    grid = torch.stack(cols, 1).flatten(0, 1).float() / 255                     # line by line
    _save([grid], len(cols), path)
    meta = json.dumps({"columns": captions, "seed": seed}, indent=1) + "\n"
    write_atomic(path.with_suffix(".json"), lambda tmp: tmp.write_text(meta))
    return captions


def comparison_captions(png: Path) -> tuple[list[str], int] | None:
    """The column captions and seed written beside a comparison picture, or None."""
    try:
        meta = json.loads(png.with_suffix(".json").read_text())
        return [str(c) for c in meta["columns"]], int(meta["seed"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
