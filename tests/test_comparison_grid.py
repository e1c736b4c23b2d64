"""The side-by-side comparison: condition | each row's final output | target on the same test inputs, built from
the runs' saved grid columns alone, with its captions, linked from the leaderboard and copied by publish."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from bench.grids import COLUMNS_FILE, _save_columns, comparison_captions, write_comparison

SIDE, N = 8, 3


def _run(tmp: Path, name: str, outputs: list[float], cond: float = 0.1, target: float = 0.9) -> Path:
    """A run folder whose grid has columns condition | outputs... | target, each a flat grey of the given value."""
    d = tmp / name
    d.mkdir()
    cols = [torch.full((N, 3, SIDE, SIDE), v) for v in [cond, *outputs, target]]
    _save_columns(cols, True, d / COLUMNS_FILE)
    return d


def _cell(img: np.ndarray, line: int, col: int) -> np.ndarray:
    """The pixels of one cell of a make_grid picture (padding 2)."""
    y, x = 2 + line * (SIDE + 2), 2 + col * (SIDE + 2)
    return img[y:y + SIDE, x:x + SIDE]


def test_each_rows_final_output_between_the_condition_and_the_target(tmp_path: Path):
    runs = [("Concat", _run(tmp_path, "a", [0.3])),
            ("Fusion", _run(tmp_path, "b", [0.2, 0.5, 0.6])),       # reconstruction | residual | output: the last
            ("Broken", tmp_path / "missing")]                       # no columns saved: left out
    png = tmp_path / "comparison-photo2labels.png"
    assert write_comparison(runs, png, seed=0) == ["condition", "Concat", "Fusion", "target"]
    assert comparison_captions(png) == (["condition", "Concat", "Fusion", "target"], 0)
    img = np.asarray(Image.open(png))
    assert img.shape == (2 + N * (SIDE + 2), 2 + 4 * (SIDE + 2), 3)
    for line in range(N):
        for col, value in enumerate([0.1, 0.3, 0.6, 0.9]):
            assert (_cell(img, line, col) == round(value * 255)).all(), (line, col)


def test_no_comparison_from_one_row_or_from_grids_of_another_size(tmp_path: Path):
    one = [("Concat", _run(tmp_path, "a", [0.3]))]
    (tmp_path / "c.png").write_bytes(b"an earlier run's picture")
    assert write_comparison(one, tmp_path / "c.png", seed=0) is None and not (tmp_path / "c.png").exists()
    other = tmp_path / "b"
    other.mkdir()
    _save_columns([torch.zeros(N, 3, SIDE * 2, SIDE * 2)] * 3, True, other / COLUMNS_FILE)
    assert write_comparison(one + [("Big", other)], tmp_path / "c.png", seed=0) is None
    (tmp_path / "d.png").write_bytes(b"")
    (tmp_path / "d.json").write_text(json.dumps({"columns": "x"}))
    assert comparison_captions(tmp_path / "d.png") is None          # damaged captions: no section, no error


def test_models_sampled_from_the_prior_sit_beside_real_images(tmp_path: Path):
    """Without a condition (the new-losses models, AC-GAN) a run saves its samples from the grid's latents and real
    test images: the comparison puts each row's samples side by side and ends with a column captioned "real"."""
    runs = []
    for name, v in (("GAN", 0.3), ("VAE", 0.6)):
        d = tmp_path / name
        d.mkdir()
        _save_columns([torch.full((N, 3, SIDE, SIDE), v), torch.full((N, 3, SIDE, SIDE), 0.9)], False,
                      d / COLUMNS_FILE)
        runs.append((name, d))
    png = tmp_path / "comparison-digits.png"
    assert write_comparison(runs, png, seed=0) == ["GAN", "VAE", "real"]
    img = np.asarray(Image.open(png)).astype(float) / 255
    for col, v in enumerate((0.3, 0.6, 0.9)):
        assert abs(_cell(img, 0, col).mean() - v) < 0.01


def test_the_main_output_is_the_grids_last_output_column():
    """write_samples puts the main output y last (next to the target), where write_comparison reads each row's
    output: CycleGAN's and StarGAN's {"y", "x"} and a VAE's {"y", "y_rec"} showed their backward output or
    reconstruction in the comparison before."""
    from bench.grids import grid_outputs
    t = torch.zeros(1)
    assert grid_outputs({"y": t, "x": t}) == ["x", "y"]
    assert grid_outputs({"y": t, "y_rec": t}) == ["y_rec", "y"]
    assert grid_outputs({"y_rec": t, "y_gan": t, "y": t}) == ["y_rec", "y_gan", "y"]     # ED//GAN's order kept
    assert grid_outputs({"region": t}) == ["region"]


def test_one_picture_per_seed_the_first_under_the_plain_name(tmp_path: Path):
    """Several seeds side by side: the first seed's picture keeps comparison-<task>.png, the others get
    comparison-<task>-seed<k>.png, and the report lists them in seed order with their seeds."""
    from types import SimpleNamespace

    from bench.runners import _comparisons
    from bench.schema import slug
    from leaderboards.report import comparisons
    rows = [SimpleNamespace(name=n, kind="model") for n in ("Concat", "Fusion")]
    trained = {}
    for seed in (2, 10, 0):
        for i, row in enumerate(rows):
            d = tmp_path / "runs" / slug(row.name) / f"seed{seed}" / "labels2photo"
            d.parent.mkdir(parents=True, exist_ok=True)
            _run(d.parent, "labels2photo", [0.2 + 0.1 * i + 0.01 * seed])
        trained[(seed, "labels2photo")] = []
    _comparisons(SimpleNamespace(rows=rows), trained, tmp_path)
    found = comparisons(tmp_path, ["labels2photo"])
    assert [(p.name, seed) for _, p, _, seed in found] == [
        ("comparison-labels2photo.png", 0), ("comparison-labels2photo-seed2.png", 2),
        ("comparison-labels2photo-seed10.png", 10)]
    for _, png, columns, seed in found:
        assert columns == ["condition", "Concat", "Fusion", "target"]
        img = np.asarray(Image.open(png))
        assert (_cell(img, 0, 2) == round((0.3 + 0.01 * seed) * 255)).all()     # that seed's Fusion output
