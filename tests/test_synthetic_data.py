"""The procedural scenes: contract, determinism, and the pinhole/occlusion geometry they claim."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from bench.data import synthetic_scenes as ss
from bench.data.synthetic_scenes import INFO, Scene, SceneObject, make_dataset, render
from bench.errors import ConfigError
from bench.registry import DATASETS, TASKS

SKY, GROUND, BOX, BALL, POLE = 0, 1, 3, 4, 5       # as listed in INFO.class_names
OBJECT_CLASSES = (2, 3, 4, 5, 6)


def test_info_describes_seven_classes_with_distinct_colours():
    assert INFO.name == "synthetic-scenes"
    assert set(INFO.tasks) == {"labels2photo", "photo2labels", "photo2depth"}
    assert INFO.class_names[:2] == ("sky", "ground") and INFO.class_names[BOX] == "box"
    assert INFO.class_names[BALL] == "ball" and INFO.class_names[POLE] == "pole"
    assert INFO.num_classes == len(INFO.class_names) == len(INFO.palette) == 7
    assert len(set(INFO.palette)) == 7
    assert INFO.max_depth == 10.0 and INFO.ignore_index == 255
    assert INFO.description and INFO.source


def test_registered_factory_and_tasks_bind():
    assert DATASETS.get("synthetic-scenes") is make_dataset
    batch = torch.utils.data.default_collate([make_dataset("test", 32)[i] for i in range(3)])
    for name in INFO.tasks:
        task = TASKS.get(name).bind(INFO)
        y = task.y(batch)
        assert y.shape[1] == task.y_channels and y.min() >= -1 and y.max() <= 1
    labels = TASKS.get("photo2labels").bind(INFO).decode_labels(batch["label_rgb"])
    assert torch.equal(labels, batch["label"])


@pytest.mark.parametrize("size", [32, 64, 256])
def test_shapes_dtypes_and_ranges(size):
    ds = make_dataset("train", size, subset=3 if size == 256 else 8)
    for i in range(len(ds)):
        s = ds[i]
        assert set(s) == {"photo", "label", "label_rgb", "depth", "index"}
        assert s["photo"].shape == (3, size, size) and s["photo"].dtype == torch.float32
        assert s["label_rgb"].shape == (3, size, size) and s["label_rgb"].dtype == torch.float32
        assert s["label"].shape == (size, size) and s["label"].dtype == torch.int64
        assert s["depth"].shape == (1, size, size) and s["depth"].dtype == torch.float32
        assert s["index"].dtype == torch.int64 and s["index"].shape == () and int(s["index"]) == i
        assert s["photo"].min() >= -1 and s["photo"].max() <= 1 and s["photo"].std() > 0.05
        assert s["label"].min() >= 0 and s["label"].max() < 7
        assert s["depth"].min() >= 0 and s["depth"].max() <= 10.0
        assert torch.isfinite(s["depth"]).all()


def test_default_lengths_num_samples_and_subset():
    assert len(make_dataset("train", 32)) == 2000
    assert len(make_dataset("test", 32)) == 200
    assert len(make_dataset("test", 32, num_samples=7)) == 7
    full, sub = make_dataset("test", 32), make_dataset("test", 32, subset=5)
    assert len(sub) == 5
    for i in range(5):
        assert torch.equal(sub[i]["photo"], full[i]["photo"])
    assert len(make_dataset("test", 32, subset=10_000)) == 200
    with pytest.raises(IndexError):
        sub[5]
    assert torch.equal(sub[-1]["label"], full[4]["label"])


def test_bad_arguments_raise_config_errors():
    with pytest.raises(ConfigError):
        make_dataset("val", 32)
    with pytest.raises(ConfigError):
        make_dataset("train", 4)
    with pytest.raises(ConfigError):
        make_dataset("train", 32, colour="red")
    with pytest.raises(ConfigError):
        make_dataset("train", 32, subset=0)


def test_deterministic_by_seed_split_index_and_order():
    a, b = make_dataset("train", 48, seed=3), make_dataset("train", 48, seed=3)
    for i in (9, 0, 4):                                   # b is read in another order than a
        _ = b[i]
    for i in (0, 4, 9):
        sa, sb = a[i], b[i]
        for k in sa:
            assert torch.equal(sa[k], sb[k]), k
    other = make_dataset("train", 48, seed=4)
    assert not torch.equal(a[0]["label"], other[0]["label"])
    assert not torch.equal(a[0]["photo"], other[0]["photo"])
    assert not torch.equal(a[0]["label"], a[1]["label"])


def test_train_and_test_splits_differ():
    tr, te = make_dataset("train", 32, subset=20), make_dataset("test", 32, subset=20)
    train_labels = {tr[i]["label"].numpy().tobytes() for i in range(20)}
    assert not any(te[i]["label"].numpy().tobytes() in train_labels for i in range(20))


def test_same_scene_at_any_size():
    small, big = make_dataset("test", 64), make_dataset("test", 128)
    for i in range(6):
        lab64, dep64 = small[i]["label"], small[i]["depth"][0]
        nearest = F.interpolate(torch.cat([big[i]["label"][None].float(), big[i]["depth"]])[None],
                                size=(64, 64), mode="nearest")[0]
        lab128, dep128 = nearest[0].long(), nearest[1]
        agree = lab64 == lab128
        assert agree.float().mean() > 0.95
        solid = agree & (lab64 != SKY)
        rel = ((dep64 - dep128).abs() / dep64)[solid]
        assert rel.median() < 0.02 and (rel < 0.1).float().mean() > 0.9


def test_label_rgb_is_the_palette_colour_everywhere():
    ds = make_dataset("train", 64, subset=5)
    for i in range(5):
        s = ds[i]
        for k, (r, g, b) in enumerate(INFO.palette):
            where = s["label"] == k
            want = torch.tensor([r, g, b], dtype=torch.float32)[:, None] / 127.5 - 1
            assert torch.equal(s["label_rgb"][:, where], want.expand(3, int(where.sum())))


def _ground_depth_per_row(label: torch.Tensor, depth: torch.Tensor) -> dict[int, float]:
    """Ground depth of every row that shows some ground (it must be the same across the row)."""
    rows = {}
    for r in range(label.shape[0]):
        g = depth[r][label[r] == GROUND]
        if len(g):
            assert torch.allclose(g, g[0].expand_as(g)), f"ground depth varies along row {r}"
            rows[r] = float(g[0])
    return rows


def test_depth_geometry_sky_ground_and_occlusion():
    ds = make_dataset("train", 96, subset=12)
    occluded_pixels = 0
    for i in range(len(ds)):
        s = ds[i]
        lab, dep = s["label"], s["depth"][0]
        assert (dep[lab == SKY] == 0).all()
        assert ((dep[lab != SKY] > 0) & (dep[lab != SKY] <= 10.0)).all()
        # The sky sits above the ground: every ground pixel is below every sky pixel of its column.
        rows = torch.arange(96)[:, None].expand(96, 96)
        sky_rows, ground_rows = rows.masked_fill(lab != SKY, -1), rows.masked_fill(lab != GROUND, 10_000)
        assert (sky_rows.max(0).values < ground_rows.min(0).values).all()
        ground = _ground_depth_per_row(lab, dep)
        rs = sorted(ground)
        ds_ = torch.tensor([ground[r] for r in rs])
        assert (ds_[1:] <= ds_[:-1]).all(), "ground depth must grow upward toward the horizon"
        # Pinhole camera over a plane: 1/depth is affine in the row below the far plane.
        near = ds_ < 9.99
        if near.sum() >= 5:
            r = torch.tensor(rs, dtype=torch.float64)[near]
            inv = 1 / ds_[near].double()
            A = torch.stack([r, torch.ones_like(r)], 1)
            coef = torch.linalg.lstsq(A, inv[:, None]).solution
            assert (A @ coef - inv[:, None]).abs().max() < 1e-4
            assert coef[0] > 0
        # Occlusion: an object pixel is nearer than the ground it hides on the same row.
        for row, gd in ground.items():
            obj = dep[row][lab[row] >= 2]
            occluded_pixels += len(obj)
            assert (obj < gd + 1e-5).all()
    assert occluded_pixels > 100


def test_nearer_surfaces_hide_farther_ones():
    """Each pixel shows the nearest of the ground and every object rendered alone, in any order."""
    ds = make_dataset("train", 64, subset=4)
    for i in range(len(ds)):
        scene = ds.scene(i)
        full = render(scene, 64)
        empty = render(dataclasses.replace(scene, objects=()), 64)
        depths = [torch.where(empty["label"] == SKY, torch.inf, empty["depth"][0])]
        labels = [empty["label"]]
        for o in scene.objects:
            solo = render(dataclasses.replace(scene, objects=(o,)), 64)
            shown = solo["label"] == o.cls
            depths.append(torch.where(shown, solo["depth"][0], torch.inf))
            labels.append(torch.full_like(solo["label"], o.cls))
        nearest = torch.stack(depths).min(0)
        want_label = torch.stack(labels).gather(0, nearest.indices[None])[0]
        want_depth = torch.where(torch.isinf(nearest.values), 0.0, nearest.values)
        assert torch.equal(full["label"], want_label)
        assert torch.allclose(full["depth"][0], want_depth)
        backwards = render(dataclasses.replace(scene, objects=scene.objects[::-1]), 64)
        assert torch.equal(backwards["label"], full["label"])


def test_every_class_appears_across_fifty_samples():
    ds = make_dataset("train", 64, subset=50)
    counts = torch.zeros(7, dtype=torch.long)
    for i in range(50):
        counts += torch.bincount(ds[i]["label"].flatten(), minlength=7)
    assert (counts > 0).all(), counts
    assert (counts[list(OBJECT_CLASSES)] > 200).all(), counts


def _pole(x: float, z: float, height: float = 2.0) -> SceneObject:
    return SceneObject(POLE, x, z, 0.3, height, colour=(0.3, 0.3, 0.3), period=0.4)


def _rows_of(mask: torch.Tensor) -> tuple[int, int]:
    r = mask.any(1).nonzero()[:, 0]
    return int(r.min()), int(r.max())


def test_hand_built_scene_follows_the_pinhole_model():
    # Horizon at 0.4 of the image, camera 1.2 m high, focal length 1 image side (ss.FOCAL).
    assert ss.FOCAL == 1.0
    size = 200
    box = SceneObject(BOX, -0.6, 3.0, 0.6, 1.2, colour=(0.6, 0.4, 0.2), period=0.2)
    ball = SceneObject(BALL, 1.4, 4.0, 1.0, 1.0, colour=(0.9, 0.1, 0.1), period=0.3)
    scene = Scene(0.4, 1.2, (_pole(-1.2, 6.0, 3.0), ball, _pole(0.6, 3.0), box))   # far to near
    out = render(scene, size)
    lab, dep = out["label"], out["depth"][0]
    # Near pole (z=3): base at 0.4 + 1.2/3 = 0.8, top at 0.8 - 2/3; x centre 0.5 + 0.6/3 = 0.7.
    near = (lab == POLE) & (torch.arange(size) > 0.6 * size)[None, :]
    top, bottom = _rows_of(near)
    assert abs(top - (0.8 - 2 / 3) * size) <= 1.5 and abs(bottom + 1 - 0.8 * size) <= 1.5
    cols = near.any(0).nonzero()[:, 0]
    assert abs(float(cols.float().mean()) + 0.5 - 0.7 * size) <= 1.0
    assert abs(len(cols) - 0.3 / 3 * size) <= 1.0
    # Far pole (z=6, 3 m): base at 0.6, top at 0.6 - 3/6 = 0.1, centre 0.5 - 1.2/6 = 0.3; half as wide.
    far = (lab == POLE) & (torch.arange(size) < 0.5 * size)[None, :]
    top, _ = _rows_of(far)
    assert abs(top - 0.1 * size) <= 1.5
    far_cols = far.any(0).nonzero()[:, 0]
    assert abs(len(far_cols) - 0.3 / 6 * size) <= 1.0
    assert torch.allclose(dep[far], torch.tensor(6.0)) and torch.allclose(dep[near], torch.tensor(3.0))
    # The box (z=3, 1.2 m, centre column 0.3, rows 0.8 - 1.2/3 = 0.4 .. 0.8) hides the far pole's
    # lower part (rows 0.4 .. 0.6); above the box the pole shows.
    front = (slice(int(0.42 * size), int(0.78 * size)), slice(int(0.28 * size), int(0.32 * size)))
    assert (lab[front] == BOX).all() and torch.allclose(dep[front], torch.tensor(3.0))
    assert lab[int(0.3 * size), int(0.3 * size)] == POLE and dep[int(0.3 * size), int(0.3 * size)] == 6.0
    # The ball (radius 0.5 m at z=4): centre column 0.5 + 1.4/4 = 0.85, rows 0.4 + 0.7/4 = 0.575 ± 0.125;
    # its depth is a spherical cap, nearest (z - r = 3.5 m) at the centre, z at the rim.
    b = lab == BALL
    top, bottom = _rows_of(b)
    assert abs(top - 0.45 * size) <= 1.5 and abs(bottom + 1 - 0.7 * size) <= 1.5
    assert abs(float(dep[b].min()) - 3.5) < 0.01 and float(dep[b].max()) < 4.0
    assert float(dep[b].max()) > 3.7
    # Ground: depth = 1.2 / (row - 0.4) at pixel centres, clipped to 10 m; sky above 0.4.
    r = 190
    assert torch.isclose(dep[r, 5], torch.tensor(1.2 / ((r + 0.5) / size - 0.4)), rtol=1e-5)
    assert (lab[: int(0.4 * size), 0] == SKY).all() and (lab[int(0.4 * size):, 0] == GROUND).all()
    assert (dep[int(0.4 * size) + 1, 0] == 10.0)
    # Thick fog (half at 5 m): the far ground (10 m) is nearer the fog colour than the near (~2.2 m).
    photo = render(dataclasses.replace(scene, fog_distance=5.0), size)["photo"]
    fog = torch.tensor(scene.fog_colour)[:, None, None] * 2 - 1
    gap = (photo[:, :, : int(0.17 * size)] - fog).abs().mean(dim=(0, 2))      # left of the box
    assert gap[int(0.4 * size) + 1] < 0.7 * gap[size - 1]


def test_cache_returns_equal_unshared_tensors():
    ds = make_dataset("train", 32, subset=2)
    first = ds[1]
    first["photo"].zero_()
    first["depth"].zero_()
    again = ds[1]
    fresh = make_dataset("train", 32, subset=2, cache_mb=0)[1]
    assert torch.equal(again["photo"], fresh["photo"]) and torch.equal(again["depth"], fresh["depth"])
    assert again["photo"].abs().sum() > 0


def test_dataloader_batches():
    loader = torch.utils.data.DataLoader(make_dataset("test", 32, subset=6), batch_size=3)
    batch = next(iter(loader))
    assert batch["photo"].shape == (3, 3, 32, 32) and batch["label"].shape == (3, 32, 32)
    assert batch["index"].tolist() == [0, 1, 2]
