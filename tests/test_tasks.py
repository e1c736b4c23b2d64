"""Tasks as named fields: binding by the keys a dataset provides, views, derived masks, codecs."""

from __future__ import annotations

import pytest
import torch

from bench.codecs import derived_mask, encode
from bench.data.base import DatasetInfo
from bench.errors import ConfigError
from bench.registry import TASKS
from bench.tasks import Field, TaskSpec

INFO = DatasetInfo(name="d", tasks=(), num_classes=3, palette=((0, 0, 0), (255, 0, 0), (0, 255, 0)),
                   max_depth=10.0, provides=("photo", "label", "label_rgb", "depth", "index"))


def test_binding_checks_the_keys_the_dataset_provides():
    t = TASKS.get("photo2depth").bind(INFO)
    assert t.requires() == {"photo", "depth"} and t.x_channels == 3 and t.y_channels == 1
    no_depth = DatasetInfo(name="nd", tasks=(), provides=("photo", "index"))
    with pytest.raises(ConfigError, match="does not provide depth"):
        TASKS.get("photo2depth").bind(no_depth)
    logits = TASKS.get("photo2labels").bind(INFO, label_output="logits")
    assert logits.requires() == {"photo", "label"} and logits.y_channels == 3
    # a dataset that does not say what it provides falls back to its list of task names
    legacy = DatasetInfo(name="old", tasks=("photo2depth",), max_depth=5.0)
    assert TASKS.get("photo2depth").bind(legacy).info is legacy
    with pytest.raises(ConfigError, match="does not support task 'labels2photo'"):
        TASKS.get("labels2photo").bind(legacy)


def test_view_swaps_x_and_y_for_the_reverse_direction():
    t = TASKS.get("photo2labels-unpaired").bind(INFO)
    assert t.pairing == "unpaired" and t.stream_b_keys() == {"label_rgb"}
    rev = t.view("x")
    assert rev.y_key == "photo" and rev.x_key == "label_rgb" and rev.output == "image"
    batch = {"photo": torch.rand(2, 3, 4, 4), "label_rgb": torch.rand(2, 3, 4, 4)}
    assert torch.equal(rev.y(batch), batch["photo"]) and t.view("y") is t


def test_derived_masks_are_fixed_by_the_sample_index():
    centre = derived_mask("center:0.5", torch.tensor([0, 7]), 8, 8)
    expect = torch.zeros(8, 8)
    expect[2:6, 2:6] = 1
    assert torch.equal(centre[0, 0], expect) and torch.equal(centre[1, 0], expect)
    box = derived_mask("box:0.25", torch.tensor([3, 3]), 16, 16)
    assert torch.equal(box[0], box[1]) and int(box[0].sum()) == 16       # same index, same 4x4 box
    many = derived_mask("box:0.25", torch.arange(50), 16, 16)
    assert len({tuple(m.nonzero()[0].tolist()) for m in many}) > 10      # the place varies with the index
    with pytest.raises(ConfigError, match="center:F"):
        derived_mask("circle:0.5", torch.tensor([0]), 8, 8)
    t = TASKS.get("inpaint-center").bind(INFO)
    m = t.get("mask", {"photo": torch.zeros(2, 3, 8, 8), "index": torch.tensor([0, 1])})
    assert m.shape == (2, 1, 8, 8) and torch.equal(m[0, 0], expect)


def test_codecs_by_kind():
    t = TASKS.get("photo2depth").bind(INFO)
    d = torch.tensor([[[[0.0, 5.0], [10.0, 20.0]]]])
    assert torch.equal(encode(t.field("y"), {"depth": d}, INFO), torch.tensor([[[[-1.0, 0.0], [1.0, 1.0]]]]))
    torch.testing.assert_close(t.decode_depth(torch.tensor([[[[-1.0, 0.0]]]])), torch.tensor([[[[0.0, 5.0]]]]))
    cls = Field("label", "class")
    assert encode(cls, {"label": torch.tensor([[2], [0]])}, INFO).tolist() == [2, 0]
    with pytest.raises(ConfigError, match="noise"):
        encode(Field("z", "noise"), {}, INFO)


def test_task_spec_rejects_malformed_fields():
    with pytest.raises(ConfigError, match="kind 'voxels'"):
        Field("v", "voxels")
    with pytest.raises(ConfigError, match="both an input and a target"):
        TaskSpec("t", inputs={"y": Field("a", "image")}, targets={"y": Field("b", "image")})
    with pytest.raises(ConfigError, match="pairing"):
        TaskSpec("t", inputs={}, targets={"y": Field("b", "image")}, pairing="sometimes")


def test_an_unpaired_label_map_read_as_class_ids_comes_from_the_second_stream():
    """With ``label_output = "logits"`` the target is read from the class ids, not the colour map: the second,
    independent stream must serve those, or CycleGAN would train on the first stream's pairs."""
    info = DatasetInfo(name="d", tasks=(), num_classes=3, provides=("photo", "label_rgb", "label"))
    t = TASKS.get("photo2labels-unpaired").bind(info, label_output="logits")
    assert t.stream_b_keys() == {"label"} and "label" in t.requires()
    assert TASKS.get("photo2labels-unpaired").bind(info).stream_b_keys() == {"label_rgb"}
    assert TASKS.get("inpaint-center").bind(DatasetInfo(name="f", tasks=(), provides=("photo", "index"))) \
        .requires() == {"photo", "index"}
