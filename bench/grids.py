"""Sample grids: what a trained model makes, drawn the same way for every row, seed and commit.

Written beside each run's checkpoints as ``samples.png`` after it is scored:

- conditional on data (pix2pix and kin): the first rows of the test split, one per line:
  condition | each named output | target;
- sampled from the prior with classes (AC-GAN, CA-GAN): rows are fixed latents, columns the classes
  (the same latents in every column, as in the papers' figures).

Inputs are fixed (test split order, latents from a fixed seed), so grids compare across rows and
commits. Drawing a grid never fails a run: a problem is logged and the grid is skipped.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from bench.codecs import labels_to_rgb
from bench.contracts import FromBatch, FromPrior
from bench.runspec import RunSpec
from bench.tasks import TaskSpec

log = logging.getLogger(__name__)

SAMPLES_FILE = "samples.png"
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
            req = FromPrior(rows * k, labels, GRID_SEED, torch.arange(rows).repeat_interleave(k))
            img = to_rgb(task, "y", adapter.sample(req)["y"])
            return _save([img], k, path) if img is not None else None
        batch = next(iter(torch.utils.data.DataLoader(data, batch_size=rows)))
        batch = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
        outs = adapter.sample(FromBatch(batch))
        fields = dict(getattr(adapter, "outputs", {"y": "y"}))
        columns = [to_rgb(task, "x", task.x(batch))] if "x" in task.inputs else []
        columns += [to_rgb(task.view(fields.get(name, "y")), "y", v) for name, v in outs.items()]
        columns.append(to_rgb(task, "y", task.y(batch)))
        columns = [c for c in columns if c is not None]
        if not columns:
            return None
        interleaved = torch.stack(columns, 1).flatten(0, 1)            # row by row: one sample per line
        return _save([interleaved], len(columns), path)
    except Exception as e:  # noqa: BLE001 - a picture must never cost a result
        log.warning("could not draw the sample grid of %s / %s / seed %d: %s", spec.row, spec.task, spec.seed, e)
        return None
