"""Checkpoints: bit-exact resume, weights_only state, atomic layout, pruning, corruption errors."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from bench.checkpoint import (
    LoadedCheckpoint,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    load_module_weights,
    read_run_info,
    save_checkpoint,
    verify_checkpoint,
)
from bench.errors import BenchError, CheckpointError


class Gen(nn.Module):
    """Conv + BatchNorm (buffers), a tied weight and a non-contiguous buffer."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.a = nn.Linear(4, 4, bias=False)
        self.b = nn.Linear(4, 4, bias=False)
        self.b.weight = self.a.weight                     # shared tensor: two keys, one storage
        self.register_buffer("scale", torch.arange(12.0).reshape(3, 4).t())  # non-contiguous view

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.bn(self.conv(x))).mean((2, 3))
        return torch.tanh(self.b(self.a(h))) * self.scale[0, 0]


class Disc(nn.Module):
    """Spectral-normalised layers (parametrizations with _u/_v buffers)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = spectral_norm(nn.Conv2d(2, 3, 3))
        self.fc = spectral_norm(nn.Linear(4 + 3, 1))

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.cat([y, self.conv(x).mean((2, 3))], 1))


def build(seed: int) -> tuple[dict[str, nn.Module], dict[str, torch.optim.Optimizer]]:
    torch.manual_seed(seed)
    mods = {"G": Gen(), "D": Disc()}
    opts = {"G": torch.optim.Adam(mods["G"].parameters(), lr=1e-2, betas=(0.5, 0.999)),
            "D": torch.optim.Adam(mods["D"].parameters(), lr=2e-3, betas=(0.0, 0.9))}
    return mods, opts


def step(mods: dict[str, nn.Module], opts: dict[str, torch.optim.Optimizer], i: int) -> None:
    g = torch.Generator().manual_seed(1000 + i)
    x = torch.randn(4, 2, 6, 6, generator=g)
    real = torch.randn(4, 4, generator=g)
    G, D = mods["G"], mods["D"]
    opts["D"].zero_grad()
    d_loss = (nn.functional.softplus(-D(x, real)) + nn.functional.softplus(D(x, G(x).detach()))).mean()
    d_loss.backward()
    opts["D"].step()
    opts["G"].zero_grad()
    nn.functional.softplus(-D(x, G(x))).mean().backward()
    opts["G"].step()


def tensors_of(mods: dict[str, nn.Module]) -> dict[str, torch.Tensor]:
    return {f"{n}.{k}": v.detach().clone() for n, m in mods.items() for k, v in m.state_dict().items()}


def save(run: Path, at: int, mods=None, opts=None, **kw) -> Path:
    if mods is None:
        mods, opts = build(at)
    return save_checkpoint(run, at, mods, opts, state=kw.pop("state", {"epoch": at}),
                           run_info=kw.pop("run_info", {"step": at}), **kw)


def one_line(e: pytest.ExceptionInfo) -> str:
    msg = str(e.value)
    assert "\n" not in msg and isinstance(e.value, BenchError)
    return msg


def test_resume_is_bit_exact(tmp_path: Path) -> None:
    mods, opts = build(0)
    for i in range(3):
        step(mods, opts, i)
    extra = {"epoch": 2, "history": [1.5, 2.5], "ema": {"decay": 0.999, "shadow": torch.ones(3)}, "note": None}
    ck = save_checkpoint(tmp_path, 3, mods, opts, state=extra, run_info={"config": {"lr": 0.01}})
    assert ck == tmp_path / "checkpoints" / "step_00000003"

    fresh, fresh_opts = build(123)                       # different init: loading must overwrite all
    assert any(not torch.equal(a, b) for a, b in zip(tensors_of(mods).values(), tensors_of(fresh).values()))
    loaded = load_checkpoint(ck, fresh, fresh_opts)
    assert isinstance(loaded, LoadedCheckpoint) and loaded.step == 3 and loaded.path == ck
    assert loaded.run_info == {"config": {"lr": 0.01}}
    assert loaded.state["history"] == [1.5, 2.5] and torch.equal(loaded.state["ema"]["shadow"], torch.ones(3))
    for k, v in tensors_of(mods).items():
        assert torch.equal(v, tensors_of(fresh)[k]), k
    assert fresh["G"].b.weight is fresh["G"].a.weight    # tying survives loading

    step(mods, opts, 3)                                  # one more identical step on both
    step(fresh, fresh_opts, 3)
    after, after_fresh = tensors_of(mods), tensors_of(fresh)
    for k in after:
        assert torch.equal(after[k], after_fresh[k]), k
    for n in opts:
        sa, sb = opts[n].state_dict()["state"], fresh_opts[n].state_dict()["state"]
        for pid in sa:
            for key in sa[pid]:
                assert torch.equal(sa[pid][key], sb[pid][key]), (n, pid, key)


def test_state_loads_with_weights_only_and_safetensors_is_plain(tmp_path: Path) -> None:
    from safetensors.torch import load_file

    mods, opts = build(0)
    step(mods, opts, 0)
    ck = save_checkpoint(tmp_path, 1, mods, opts, state={"k": [1, 2]}, run_info={"p": Path("a") / "b"})
    st = torch.load(ck / "state.pt", weights_only=True)
    assert st["step"] == 1 and st["state"] == {"k": [1, 2]}
    exp_avg = opts["D"].state_dict()["state"][0]["exp_avg"]
    assert torch.equal(st["optimizers"]["D"]["state"][0]["exp_avg"], exp_avg)
    w = load_file(ck / "weights.safetensors")            # readable by the reference library alone
    sd = mods["D"].state_dict()
    assert "D.fc.parametrizations.weight.original" in w and "D.fc.parametrizations.weight.0._u" in w
    assert torch.equal(w["D.fc.parametrizations.weight.0._v"], sd["fc.parametrizations.weight.0._v"])
    assert torch.equal(w["G.bn.running_var"], mods["G"].bn.running_var)
    assert torch.equal(w["G.scale"], mods["G"].scale)
    assert json.loads((ck / "run.json").read_text()) == {"p": "a/b"}
    assert read_run_info(ck) == {"p": "a/b"}
    per_module = load_module_weights(ck)
    assert set(per_module) == {"G", "D"}
    assert set(per_module["G"]) == set(mods["G"].state_dict())
    manifest = json.loads((ck / "manifest.json").read_text())
    assert set(manifest["files"]) == {"weights.safetensors", "state.pt", "run.json"}
    assert manifest["files"]["state.pt"]["size"] == (ck / "state.pt").stat().st_size


def test_unpicklable_state_is_refused_before_writing(tmp_path: Path) -> None:
    mods, opts = build(0)
    for bad in (object(), np.float64(1.0), {(1, 2): 3}):
        with pytest.raises(TypeError, match="checkpoint state"):
            save_checkpoint(tmp_path, 1, mods, opts, state={"bad": bad}, run_info={})
    assert list_checkpoints(tmp_path) == []


def test_keep_last_prunes_older(tmp_path: Path) -> None:
    mods, opts = build(0)
    for s in (10, 20, 30, 40):
        save_checkpoint(tmp_path, s, mods, opts, state={}, run_info={}, keep_last=2)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step_00000030", "step_00000040"]
    assert latest_checkpoint(tmp_path).name == "step_00000040"
    for s in (50, 60):
        save_checkpoint(tmp_path, s, mods, opts, state={}, run_info={}, keep_last=None)
    assert len(list_checkpoints(tmp_path)) == 4
    save_checkpoint(tmp_path, 70, mods, opts, state={}, run_info={}, keep_last=1)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step_00000070"]
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["step_00000070"]
    assert latest_checkpoint(tmp_path / "nothing") is None and list_checkpoints(tmp_path / "nothing") == []


def test_same_step_is_replaced(tmp_path: Path) -> None:
    save(tmp_path, 5, state={"v": 1})
    mods, opts = build(77)
    save(tmp_path, 5, mods, opts, state={"v": 2})
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step_00000005"]
    got = load_module_weights(latest_checkpoint(tmp_path))
    assert torch.equal(got["G"]["conv.weight"], mods["G"].conv.weight)
    assert load_checkpoint(latest_checkpoint(tmp_path)).state == {"v": 2}


def test_truncated_weights_named_and_previous_still_loads(tmp_path: Path) -> None:
    save(tmp_path, 50, keep_last=None)
    bad = save(tmp_path, 100, keep_last=None)
    f = bad / "weights.safetensors"
    f.write_bytes(f.read_bytes()[:-100])
    for fn in (verify_checkpoint, load_checkpoint, load_module_weights):
        with pytest.raises(CheckpointError) as e:
            fn(bad)
        msg = one_line(e)
        assert str(f) in msg and "step_00000050" in msg and "delete" in msg
    mods, opts = build(1)
    assert load_checkpoint(tmp_path / "checkpoints" / "step_00000050", mods, opts).step == 50


def test_flipped_byte_named(tmp_path: Path) -> None:
    bad = save(tmp_path, 10)
    f = bad / "state.pt"
    data = bytearray(f.read_bytes())
    data[len(data) // 2] ^= 0x01
    f.write_bytes(bytes(data))
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(bad)
    msg = one_line(e)
    assert str(f) in msg and "sha256" in msg and "start the run again" in msg   # no earlier checkpoint
    assert read_run_info(bad) == {"step": 10}          # run.json alone is still intact


def _rewrite_manifest(ck: Path) -> None:
    """Make the manifest match damaged files, so that decoding itself must catch the damage."""
    import hashlib

    m = json.loads((ck / "manifest.json").read_text())
    for name in m["files"]:
        data = (ck / name).read_bytes()
        m["files"][name] = {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
    (ck / "manifest.json").write_text(json.dumps(m))


class Evil:
    def __reduce__(self):
        return (print, ("this must never run",))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
@pytest.mark.parametrize("damage", ["truncated_weights", "garbage_state", "evil_pickle", "bad_json"])
def test_decoding_failures_become_checkpoint_errors(tmp_path: Path, damage: str) -> None:
    ck = save(tmp_path, 3)
    if damage == "truncated_weights":
        target = ck / "weights.safetensors"
        target.write_bytes(target.read_bytes()[:200])
    elif damage == "garbage_state":
        target = ck / "state.pt"
        target.write_bytes(b"\x80\x04not a pickle at all")
    elif damage == "evil_pickle":
        target = ck / "state.pt"
        torch.save({"format": 1, "step": 3, "optimizers": {}, "rng": {}, "state": Evil()}, target)
    else:
        target = ck / "run.json"
        target.write_text("{not json")
    _rewrite_manifest(ck)
    mods, opts = build(0)
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(ck, mods, opts)
    assert str(target) in one_line(e)


def test_mismatched_modules_and_optimizers(tmp_path: Path) -> None:
    ck = save(tmp_path, 3)
    other = {"G": nn.Sequential(nn.Linear(2, 2))}
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(ck, other)
    assert "weights.safetensors" in one_line(e) and "'G'" in str(e.value) and "missing keys" in str(e.value)
    g = Gen()
    g.conv = nn.Conv2d(2, 4, 5, padding=2)                # same keys, other shape
    with pytest.raises(CheckpointError, match="shape mismatches"):
        load_checkpoint(ck, {"G": g})
    with pytest.raises(CheckpointError, match="no module 'E'"):
        load_checkpoint(ck, {"E": Gen()})
    lin = nn.Linear(2, 2)
    with pytest.raises(CheckpointError, match="optimizer 'G'"):
        load_checkpoint(ck, optimizers={"G": torch.optim.Adam(lin.parameters())})
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "checkpoints" / "step_99999999")


def test_leftover_temp_dir_ignored_then_cleaned(tmp_path: Path) -> None:
    save(tmp_path, 1)
    root = tmp_path / "checkpoints"
    leftover = root / ".tmp-step_00000002-4242-deadbeef"  # a writer killed mid-save
    leftover.mkdir()
    (leftover / "weights.safetensors").write_bytes(b"partial")
    (root / "step_00000003").mkdir()                      # no manifest: not a complete checkpoint
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step_00000001"]
    assert latest_checkpoint(tmp_path).name == "step_00000001"
    save(tmp_path, 4)
    assert not leftover.exists()
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step_00000001", "step_00000004"]


def test_missing_manifest_error(tmp_path: Path) -> None:
    save(tmp_path, 1)
    ck = save(tmp_path, 2)
    (ck / "manifest.json").unlink()
    with pytest.raises(CheckpointError) as e:
        verify_checkpoint(ck)
    assert "manifest.json" in one_line(e) and "step_00000001" in str(e.value)


def test_rng_state_round_trip(tmp_path: Path) -> None:
    torch.manual_seed(5)
    np.random.seed(5)
    random.seed(5)
    torch.randn(3), np.random.randn(3), random.gauss(0, 1)   # leave gauss caches in a non-trivial state
    mods, opts = build(0)
    torch.manual_seed(11)
    np.random.seed(11)
    random.seed(11)
    random.gauss(0, 1)
    np.random.randn()
    ck = save_checkpoint(tmp_path, 1, mods, opts, state={}, run_info={})
    expected = (torch.rand(4), np.random.rand(4), np.random.randn(), [random.random() for _ in range(3)],
                random.gauss(0, 1))
    torch.manual_seed(99)
    np.random.seed(99)
    random.seed(99)
    load_checkpoint(ck).restore_rng()
    got = (torch.rand(4), np.random.rand(4), np.random.randn(), [random.random() for _ in range(3)],
           random.gauss(0, 1))
    assert torch.equal(expected[0], got[0])
    assert np.array_equal(expected[1], got[1]) and expected[2] == got[2]
    assert expected[3] == got[3] and expected[4] == got[4]


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_checkpoint_loads_on_cpu_and_back(tmp_path: Path) -> None:
    torch.manual_seed(0)
    g = Gen().cuda().to(memory_format=torch.channels_last)
    opt = torch.optim.Adam(g.parameters(), lr=1e-2)
    x = torch.randn(4, 2, 6, 6, device="cuda").contiguous(memory_format=torch.channels_last)
    g(x).square().mean().backward()
    opt.step()
    torch.cuda.manual_seed(3)
    ck = save_checkpoint(tmp_path, 1, {"G": g}, {"G": opt}, state={}, run_info={})
    expected = torch.rand(5, device="cuda")
    cpu = Gen()
    cpu_opt = torch.optim.Adam(cpu.parameters(), lr=1e-2)
    loaded = load_checkpoint(ck, {"G": cpu}, {"G": cpu_opt})     # a GPU checkpoint on the CPU
    for k, v in g.state_dict().items():
        assert torch.equal(v.cpu(), cpu.state_dict()[k]), k
    assert cpu_opt.state_dict()["state"][0]["exp_avg"].device.type == "cpu"
    back = Gen().cuda()
    load_checkpoint(ck, {"G": back})
    assert all(torch.equal(v, back.state_dict()[k]) for k, v in g.state_dict().items())
    loaded.restore_rng()
    assert torch.equal(torch.rand(5, device="cuda"), expected)
