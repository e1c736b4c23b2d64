"""Issue 22, items 9 and 11: what the bench accepted without a word (and what cost a run or a night), and where a
traceback came out instead of the one line promised. Each is now a one-line error (exit 2), at validation where the
fault is in a suite file, before anything is trained or written; or, where it is found at training time, the row
fails with the reason."""

from __future__ import annotations

import errno
import os
import tomllib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from bench.cli import main
from bench.errors import ConfigError, DataError
from suite_helpers import QUICKSTART, toml_dump

ROWS = ["4-Layer Concat", "4-Layer Concat + SN"]


def suite_file(tmp_path: Path, change) -> Path:
    """The quickstart suite, changed by ``change(data)``, written to ``tmp_path/my.toml``."""
    data = tomllib.loads(QUICKSTART.read_text())
    change(data)
    path = tmp_path / "my.toml"
    path.write_text(toml_dump(data))
    return path


def one_line_error(capsys, argv: list[str], *, nothing_at: Path | None = None) -> str:
    """``bench argv`` exits 2 with exactly one line on stderr (returned); nothing is written at ``nothing_at``."""
    capsys.readouterr()
    rc = main(argv)
    err = capsys.readouterr().err
    assert rc == 2, err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert nothing_at is None or not nothing_at.exists()
    return err.strip()


def refused(tmp_path: Path, capsys, change) -> str:
    """``bench run`` of the changed quickstart suite: one line, exit 2, before any output folder exists."""
    out = tmp_path / "out"
    return one_line_error(capsys, ["run", str(suite_file(tmp_path, change)), "--profile", "tiny", "--out", str(out),
                                   "--no-progress", "--device", "cpu"], nothing_at=out)


def claim(**fields) -> dict:
    return {"text": "a claim", "metric": "photo2depth/rel", **fields}


# --- item 9: silent accepts ----------------------------------------------------------------------

def test_9a_claim_on_an_unknown_metric_key_is_refused_naming_the_keys(tmp_path, capsys):
    err = refused(tmp_path, capsys, lambda d: d.update(claims=[claim(metric="photo2depth/rell", order=ROWS)]))
    assert "[claims.0]" in err and "'rell'" in err and "rel, sq_rel, rms" in err and "delta1" in err
    # the keys a scorer declares a family of (class_acc_<k>), gate keys and a scored epoch are accepted
    err = refused(tmp_path, capsys, lambda d: d.update(claims=[claim(metric="photo2depth/rel[e3]", order=ROWS)]))
    assert "epoch 3" in err and "eval_epochs" in err


def test_9a_keys_the_scorers_declare_still_load(tmp_path):
    from bench.config import load_suite
    path = suite_file(tmp_path, lambda d: d.update(claims=[claim(order=ROWS),
                                                           claim(metric="photo2depth/gate.spread_ratio@y", order=ROWS),
                                                           claim(metric="labels2photo/mean_iou", order=ROWS)]))
    assert len(load_suite(path).claims) == 3


def test_9b_a_row_in_both_groups_of_a_claim_is_refused(tmp_path, capsys):
    err = refused(tmp_path, capsys, lambda d: d.update(claims=[claim(groups=[ROWS, [ROWS[0]]])]))
    assert "[claims.0]" in err and "'4-layer-concat'" in err and "both groups" in err
    err = refused(tmp_path, capsys, lambda d: d.update(claims=[claim(order=[ROWS[0], ROWS[1], ROWS[0]])]))
    assert "twice" in err


def test_9c_absurd_profile_steps_are_refused(tmp_path, capsys):
    err = refused(tmp_path, capsys, lambda d: d["profiles"]["tiny"].update(steps=10**30))
    assert "[profiles.tiny]" in err and "'steps'" in err and "1,000,000,000" in err


def test_9d_rows_naming_no_row_is_refused(tmp_path, capsys):
    out = tmp_path / "out"
    for value in (",", " , ", ""):
        err = one_line_error(capsys, ["run", "quickstart", "--rows", value, "--out", str(out), "--no-progress"],
                             nothing_at=out)
        assert f"--rows {value!r} names no row" in err


@pytest.fixture
def _threads():
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


def test_9e_more_threads_than_cores_is_refused(tmp_path, capsys, monkeypatch, _threads):
    too_many = (os.cpu_count() or 1) + 1
    err = one_line_error(capsys, ["score", str(tmp_path / "absent"), "--threads", str(too_many)])
    assert f"--threads / BENCH_THREADS = {too_many}" in err and "CPU cores" in err
    monkeypatch.setenv("BENCH_THREADS", "999")
    assert "999" in one_line_error(capsys, ["score", str(tmp_path / "absent")])


def test_9f_duplicate_seeds_are_refused(tmp_path, capsys):
    err = refused(tmp_path, capsys, lambda d: d["suite"].update(seeds=[0, 1, 0]))
    assert "[suite] seeds" in err and "seed 0 is listed twice" in err


def test_9f_seeds_option_is_bounded(tmp_path, capsys):
    out = tmp_path / "out"
    err = one_line_error(capsys, ["run", "quickstart", "--seeds", str(10**12), "--out", str(out)], nothing_at=out)
    assert "--seeds" in err


def test_9g_unknown_columns_are_refused_naming_the_known_keys(tmp_path, capsys):
    err = refused(tmp_path, capsys, lambda d: d["columns"].update(photo2depth=["rel", "rmse"]))
    assert "[columns] photo2depth" in err and "'rmse'" in err and "rel, sq_rel, rms" in err
    err = refused(tmp_path, capsys, lambda d: d["columns"].update(photo2deph=["rel"]))
    assert "[columns]" in err and "'photo2deph'" in err and "photo2depth" in err


def test_9h_negative_tolerances_are_refused(tmp_path, capsys):
    err = refused(tmp_path, capsys, lambda d: d["tolerances"].update(l1=-0.002))
    assert "[tolerances] l1 = -0.002" in err and ">= 0" in err
    from leaderboards.regress import parse_tolerances
    with pytest.raises(ConfigError, match=">= 0"):
        parse_tolerances(["rel=-1"])
    assert parse_tolerances(["rel=0", "photo2depth/rms=0.5"]) == {"rel": 0.0, "photo2depth/rms": 0.5}


def test_9i_an_empty_store_file_is_refused_by_the_commands_and_kept(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "results.sqlite").write_bytes(b"")
    err = one_line_error(capsys, ["leaderboard", "nrds-toy", "--out", str(out)])
    assert "empty file (0 bytes)" in err and "move it aside" in err
    assert (out / "results.sqlite").read_bytes() == b""


def test_9j_leaderboard_refuses_a_folder_a_run_is_writing(tmp_path, capsys):
    from bench.lock import folder_lock
    from bench.results import ResultStore
    out = tmp_path / "out"
    ResultStore(out / "results.sqlite")
    with folder_lock(out):                                  # as `bench run` holds it for its whole run
        err = one_line_error(capsys, ["leaderboard", "nrds-toy", "--out", str(out)])
    assert str(out) in err and "a run is writing there" in err
    assert not (out / "leaderboard.md").exists()


def _png16(path: Path, value: int) -> None:
    Image.fromarray(np.full((8, 8), value, dtype=np.uint16)).save(path)


def test_9k_an_nyu_image_without_its_depth_is_named(tmp_path):
    from bench.data import nyu_depth
    root = tmp_path / "nyu"
    for split in ("train", "test"):
        (root / split).mkdir(parents=True)
        for k in range(2):
            Image.fromarray(np.zeros((8, 8, 3), dtype=np.uint8)).save(root / split / f"image_{k}.png")
            _png16(root / split / f"depth_{k}.png", 1000)
    (root / "train" / "depth_1.png").unlink()
    with pytest.raises(DataError) as e:
        nyu_depth.make_dataset("train", 8, root=root)
    msg = str(e.value)
    assert "\n" not in msg and str(root / "train" / "image_1.png") in msg and "depth_1.png" in msg
    assert len(nyu_depth.make_dataset("test", 8, root=root)) == 2            # the complete split still loads
    rep = nyu_depth.check(root)
    assert not rep.ok and any("image_1.png" in m for m in rep.missing)


def test_9l_a_facades_image_that_is_no_side_by_side_pair_is_refused(tmp_path):
    from bench.data import facades
    root = tmp_path / "facades"
    (root / "train").mkdir(parents=True)
    Image.new("RGB", (512, 256), (10, 20, 30)).save(root / "train" / "1.jpg")
    Image.new("RGB", (256, 256), (10, 20, 30)).save(root / "train" / "2.jpg")
    ds = facades.make_dataset("train", 32, root=root)
    assert ds[0]["photo"].shape == (3, 32, 32)
    with pytest.raises(DataError) as e:
        ds[1]
    msg = str(e.value)
    assert "\n" not in msg and str(root / "train" / "2.jpg") in msg and "256x256" in msg and "512x256" in msg
    rep = facades.check(root)
    assert not rep.ok and any("2.jpg" in m and "512x256" in m for m in rep.missing)



def test_9l_a_cityscapes_pix2pix_image_that_is_no_pair_is_refused(tmp_path):
    """The Cityscapes pix2pix loader cut images the same way: the same check, in one place."""
    from bench.data import cityscapes
    root = tmp_path / "cityscapes"
    (root / "train").mkdir(parents=True)
    Image.new("RGB", (512, 256), (128, 64, 128)).save(root / "train" / "1.jpg")
    Image.new("RGB", (256, 256), (128, 64, 128)).save(root / "train" / "2.jpg")
    ds = cityscapes.make_dataset("train", 32, root=root, layout="pix2pix")
    assert ds[0]["photo"].shape == (3, 32, 32)
    with pytest.raises(DataError) as e:
        ds[1]
    assert "\n" not in str(e.value) and str(root / "train" / "2.jpg") in str(e.value) and "256x256" in str(e.value)

# --- item 9m: a discriminator that judges nothing ------------------------------------------------

class ConstantD(torch.nn.Module):
    """Returns zeros: no weights, no input in its output."""

    def __init__(self, x_channels, y_channels, *, image_size=256, ndf=64):
        super().__init__()
        self.conv = torch.nn.Conv2d(x_channels + y_channels, 1, 3, 1, 1)

    def forward(self, x, y):
        return torch.zeros(len(y), 1, 4, 4)


class BlindD(ConstantD):
    """Its output depends on its weights only: the same logits for every input."""

    def forward(self, x, y):
        return self.conv.bias.view(1, 1, 1, 1).expand(len(y), 1, 4, 4)


class ZeroTimesInputD(ConstantD):
    """Honest enough for the cheap check (its graph reaches the input), though it ignores it."""

    def forward(self, x, y):
        return self.conv(torch.cat([x, y], 1)) * 0


@pytest.fixture(scope="module")
def toy_discriminators():
    from bench.registry import DISCRIMINATORS
    for name, cls in (("silent-constant-d", ConstantD), ("silent-blind-d", BlindD),
                      ("silent-zero-times-d", ZeroTimesInputD)):
        if name not in DISCRIMINATORS:
            DISCRIMINATORS.register(name, cls)


@pytest.mark.parametrize("name", ["silent-constant-d", "silent-blind-d"])
def test_9m_a_discriminator_whose_output_ignores_its_input_fails_at_the_first_step(tmp_path, capsys, name,
                                                                                   toy_discriminators):
    suite = suite_file(tmp_path, lambda d: d.update(rows=[{"name": "Toy D", "discriminator": name}]))
    out = tmp_path / "out"
    err = one_line_error(capsys, ["train", str(suite), "--row", "Toy D", "--task", "photo2depth", "--profile",
                                  "tiny", "--out", str(out), "--no-progress", "--device", "cpu"])
    assert "discriminator 'D'" in err and "generator" in err
    assert not list(out.rglob("checkpoints/*"))                           # stopped before the first checkpoint


def test_9m_the_watch_lets_a_discriminator_that_reads_its_input_train(tmp_path, toy_discriminators):
    from bench.build import build_method
    from bench.contracts import TrainContext
    from bench.data import synthetic_scenes
    from bench.gates import watch_discriminators
    from bench.registry import TASKS
    data = synthetic_scenes.make_dataset("train", 32, num_samples=2)
    task = TASKS.get("photo2depth").bind(data.info)
    ctx = TrainContext(torch.device("cpu"), image_size=32)
    batch = {k: torch.stack([data[i][k] for i in range(2)]) for k in data[0]}
    for name in ("patchgan", "silent-zero-times-d"):
        ad = build_method("pix2pix", {"ngf": 4, "ndf": 4}, task, ctx, {"D": {"name": name}}, image_size=32)
        watch_discriminators(ad)
        ad.train_step(batch, 0, True)
        assert "train_step" not in ad.__dict__ and not ad.components["D"]._forward_hooks   # the watch is gone
        ad.train_step(batch, 1, True)


# --- item 11: tracebacks where one line is promised -----------------------------------------------

def test_11a_a_deeply_nested_suite_file_is_one_line(tmp_path, capsys):
    path = tmp_path / "deep.toml"
    path.write_text('[suite]\nname = "deep"\nx = ' + "[" * 2000 + "]" * 2000 + "\n")
    err = one_line_error(capsys, ["run", str(path), "--out", str(tmp_path / "out")], nothing_at=tmp_path / "out")
    assert "deep.toml" in err and "nested too deeply" in err


@pytest.mark.parametrize("seed", [2**64, 2**32, -1])
def test_11b_a_seed_out_of_range_is_refused_before_training(tmp_path, capsys, seed):
    err = refused(tmp_path, capsys, lambda d: d["suite"].update(seeds=[0, seed]))
    assert f"seed {seed} is out of range" in err and "0..4294967295" in err


def test_11c_a_dataset_option_the_bench_sets_is_refused(tmp_path, capsys):
    err = refused(tmp_path, capsys, lambda d: d.update(dataset_options={"root": "/data"}))
    assert "[dataset_options]" in err and "unknown dataset option 'root'" in err and "synthetic-scenes" in err
    err = refused(tmp_path, capsys, lambda d: d["profiles"]["tiny"].update(dataset_options={"seed": 3}))
    assert "[profiles.tiny.dataset_options]" in err and "'seed'" in err


def test_11d_an_output_folder_that_cannot_be_made_is_one_line(tmp_path, capsys, monkeypatch):
    (tmp_path / "a-file").write_text("x")
    out = tmp_path / "a-file" / "out"
    err = one_line_error(capsys, ["train", "quickstart", "--row", ROWS[0], "--task", "photo2depth", "--profile",
                                  "tiny", "--out", str(out), "--no-progress", "--device", "cpu"])
    assert f"cannot write to the output folder {out}" in err
    from bench.lock import folder_lock

    def read_only(self, *a, **k):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(self))

    monkeypatch.setattr(Path, "mkdir", read_only)
    with pytest.raises(ConfigError, match="Read-only file system"):
        with folder_lock(tmp_path / "ro"):
            pass


def test_11e_a_row_name_too_long_for_a_folder_is_refused(tmp_path, capsys):
    err = refused(tmp_path, capsys, lambda d: d["rows"].append({"name": "x" * 300, "discriminator": "patchgan"}))
    assert "[rows.6]" in err and "300 characters" in err and "at most 100" in err


def test_9f_seed_option_runs_just_those_seeds(tmp_path, capsys, monkeypatch):
    """`bench run --seed K` (repeated) hands the runner exactly those seeds (a seed a session did not finish);
    with --seeds, or outside the bound, it is refused in one line with nothing run."""
    import bench.suite
    seen = []

    def fake_run_suite(suite, out, *, seeds=None, **_):
        seen.append(seeds)
        raise SystemExit(0)

    monkeypatch.setattr(bench.suite, "run_suite", fake_run_suite)
    with pytest.raises(SystemExit):
        main(["run", "quickstart", "--seed", "2", "--seed", "0", "--seed", "2", "--out", str(tmp_path / "a")])
    assert seen == [[0, 2]]
    out = tmp_path / "out"
    err = one_line_error(capsys, ["run", "quickstart", "--seed", "2", "--seeds", "3", "--out", str(out)],
                         nothing_at=out)
    assert "--seeds N" in err and "--seed K" in err and "not both" in err
    err = one_line_error(capsys, ["run", "quickstart", "--seed", "-1", "--out", str(out)], nothing_at=out)
    assert "--seed -1 is outside" in err
