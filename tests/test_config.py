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


# --- components, registry names inside options, metric entries (the contracts) --------------------

def test_component_option_the_method_sets_is_a_parse_error_not_a_crash():
    # regression: accepted by the old validator, then TypeError (duplicate 'ngf') in every run
    d = base()
    d["rows"][0]["generator_options"] = {"ngf": 4}
    msg = _error(d)
    assert "'ngf' is set by method 'pix2pix'" in msg and "rows.0" in msg


def test_component_options_are_checked_against_the_factory_signature():
    d = base()
    d["rows"][0]["components"] = {"D": {"name": "patchgan", "n_layers": 2}}
    parse(d)                                                 # a real PatchGAN option
    d["rows"][0]["components"] = {"D": {"name": "patchgan", "wingspan": 2}}
    msg = _error(d)
    assert "'wingspan'" in msg and "n_layers" in msg and "components.D" in msg
    d["rows"][0]["components"] = {"E": {"name": "patchgan"}}
    assert "has no slot 'E'" in _error(d) and "G, D" in _error(d)
    d["rows"][0]["components"] = {"D": {"name": "patchgan", "init": "zeros"}}
    assert "init = 'zeros'" in _error(d)
    d["rows"][0]["components"] = {"D": {"name": "no-such-d"}}
    assert "'no-such-d' is not a registered discriminator" in _error(d)


def test_components_table_is_the_same_as_the_shorthand():
    from bench.runspec import expand
    d = base()
    d["rows"] = [{"name": "short", "discriminator": "patchgan", "discriminator_options": {"n_layers": 2}},
                 {"name": "long", "components": {"D": {"name": "patchgan", "n_layers": 2}}}]
    specs = expand(parse(d), "smoke", seeds=[0])
    by_row = {s.row: s.components for s in specs}
    assert by_row["short"] == by_row["long"] == {"G": {"name": "unet"}, "D": {"name": "patchgan", "n_layers": 2}}


def test_a_method_without_a_discriminator_refuses_one():
    d = base()
    d["rows"][0].update(method="cnn-crf", label_output="logits")
    assert "uses no discriminator; remove the 'discriminator' key" in _error(d)
    del d["rows"][0]["discriminator"]
    d["suite"]["tasks"] = ["photo2depth"]
    d["metrics"] = {"photo2depth": ["depth"]}
    d["columns"] = {}
    parse(d)


def test_loss_and_regularizer_names_are_checked_at_parse_time():
    # regression: an unknown loss was found only when the run started training
    d = base()
    d["rows"][0]["options"] = {"loss": "wasserstein-ish"}
    msg = _error(d)
    assert "'wasserstein-ish' is not a registered loss" in msg and "hinge" in msg
    d["rows"][0]["options"] = {"regularizers": {"gp": 10.0, "r3": 1.0}}
    assert "'r3' is not a registered regularizer" in _error(d)
    d["options"]["loss"] = "nope"
    d["rows"][0]["options"] = {}
    assert "'nope' is not a registered loss" in _error(d)


def test_metric_entries_name_an_output_and_fit_its_field():
    d = base()
    d["metrics"]["photo2depth"] = ["depth@y_rec"]
    msg = _error(d)
    assert "reads output 'y_rec'" in msg and "outputs: y" in msg
    d = base()
    d["suite"].update(dataset="gaussians-2d", tasks=["points"], method="gaussian")
    d["metrics"] = {"points": ["reconstruction"]}
    d["columns"] = {}
    d["options"] = {}
    for p in d["profiles"].values():
        p["options"] = {}
        p.pop("metric_options", None)
    d["rows"] = [{"name": "g"}]
    assert "no paired inputs (pairing 'none')" in _error(d)
    d["metrics"] = {"points": ["nrds"]}
    parse(d)


def test_schema_is_documented_field_by_field_and_in_the_readme():
    import dataclasses

    from bench.config import Profile, Row, Suite, SuiteSection, schema_markdown
    for cls in (SuiteSection, Profile, Row):
        for f in dataclasses.fields(cls):
            assert f.metadata.get("doc"), f"{cls.__name__}.{f.name} has no documentation"
    text = schema_markdown()
    for cls in (SuiteSection, Profile, Row):
        for f in dataclasses.fields(cls):
            assert f"| `{f.name}` |" in text
    readme = (QUICKSTART.parents[1] / "README.md").read_text()
    start, end = readme.index("<!-- schema:start -->"), readme.index("<!-- schema:end -->")
    assert readme[start:end].split("-->", 1)[1].strip() == text.strip(), \
        "README's suite-file reference is stale: paste the output of `bench schema` between the markers"
    assert [f.name for f in dataclasses.fields(Suite) if f.metadata.get("doc")] == \
        ["dataset_options", "options", "metrics", "metric_options", "columns", "tolerances"]


def test_a_component_made_for_another_method_is_refused_at_parse_time():
    d = base()
    d["rows"][0]["discriminator"] = "class-heads"          # forward(y): a class-conditional D
    msg = _error(d)
    assert "'class-heads' takes forward(y) but method 'pix2pix' calls it with (x, y)" in msg
