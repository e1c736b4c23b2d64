"""Suite files: valid ones load; every malformed one gives one line naming file, key and allowed values."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from bench.config import load_suite, parse_suite
from bench.errors import ConfigError
from bench.registry import SUITES

QUICKSTART = Path(__file__).resolve().parents[1] / "leaderboards" / "quickstart.toml"


def base() -> dict:
    return tomllib.loads(QUICKSTART.read_text())


def parse(data: dict):
    return parse_suite(data, source="my.toml")


def test_every_shipped_suite_loads():
    for name in SUITES.names():
        suite = load_suite(SUITES.get(name))
        assert suite.name == name
        assert suite.rows and suite.profiles


def test_quickstart_values():
    s = load_suite(QUICKSTART)
    assert s.suite.tasks == ["labels2photo", "photo2labels", "photo2depth"]
    assert s.profile("smoke").image_size == 64
    assert s.task_metrics("photo2depth") == ["depth"]


def _error(data: dict) -> str:
    with pytest.raises(ConfigError) as e:
        parse(data)
    msg = str(e.value)
    assert "\n" not in msg
    assert msg.startswith("my.toml")
    return msg


def test_unknown_key_names_file_key_and_allowed():
    d = base()
    d["rows"][0]["discriminatr"] = "patchgan"
    msg = _error(d)
    assert "[rows.0]" in msg and "'discriminatr'" in msg and "discriminator" in msg.split("allowed:")[1]


def test_unknown_section():
    d = base()
    d["profile"] = {}
    assert "unknown section 'profile'" in _error(d)


def test_wrong_type():
    d = base()
    d["profiles"]["smoke"]["steps"] = "ten"
    msg = _error(d)
    assert "[profiles.smoke]" in msg and "'steps'" in msg and "int" in msg and "'ten'" in msg


def test_bool_is_not_an_int():
    d = base()
    d["profiles"]["smoke"]["batch_size"] = True
    assert "'batch_size' must be int" in _error(d)


def test_unknown_discriminator_lists_registered_names():
    d = base()
    d["rows"][0]["discriminator"] = "patchgn"
    msg = _error(d)
    assert "'patchgn'" in msg and "patchgan-sn" in msg and "--plugin" in msg


def test_unknown_dataset_task_and_metric():
    d = base()
    d["suite"]["dataset"] = "imagenet"
    assert "imagenet" in _error(d) and "synthetic-scenes" in _error(d)
    d = base()
    d["suite"]["tasks"] = ["photo2sound"]
    assert "photo2sound" in _error(d)
    d = base()
    d["metrics"]["photo2depth"] = ["segmentation"]
    assert "cannot score task 'photo2depth'" in _error(d)


def test_unknown_method_option_is_caught_with_the_allowed_keys():
    d = base()
    d["rows"][1]["options"] = {"lamda_l1": 10}
    msg = _error(d)
    assert "'lamda_l1'" in msg and "lambda_l1" in msg and "rows.1.options" in msg


def test_method_option_type_checked():
    d = base()
    d["options"]["d_steps"] = 1.5
    assert "'d_steps' must be int" in _error(d)


def test_discriminator_option_unknown():
    d = base()
    d["rows"][0]["discriminator_options"] = {"wings": 2}
    assert "'wings'" in _error(d)


def test_missing_required_and_profile():
    d = base()
    del d["suite"]["dataset"]
    assert "missing required key 'dataset'" in _error(d)
    d = base()
    d["suite"]["default_profile"] = "huge"
    assert "'huge'" in _error(d)


def test_published_key_must_name_a_task():
    d = base()
    d["rows"][0]["published"] = {"mean_iou": 0.3}
    assert "published key 'mean_iou'" in _error(d)


def test_not_toml(tmp_path):
    p = tmp_path / "bad.toml"
    p.write_text("[suite\nname = 1")
    with pytest.raises(ConfigError, match="bad.toml: not valid TOML"):
        load_suite(p)


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_suite(tmp_path / "nope.toml")
