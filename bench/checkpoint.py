"""Checkpoints: atomic, verifiable, and loadable without unpickling arbitrary objects.

Layout (one directory per step, under the run directory)::

    run_dir/checkpoints/step_00000100/
        weights.safetensors   every module's state_dict (buffers included), keys "<module>.<key>"
        state.pt              optimisers, step, RNG states, extra trainer state (torch.load weights_only=True)
        run.json              the caller's run info: resolved config, protocol, versions, git commit
        manifest.json         sha256 and size of each of the three files above

A checkpoint is written into a temporary directory beside its target (``.tmp-*``), each file
fsynced, and moved into place with one ``os.replace``: a ``step_*`` directory is therefore
complete or absent. Readers ignore ``.tmp-*`` directories (left by a killed writer); the next
save removes them. One writer per run directory is assumed.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import random
import re
import shutil
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import safetensors.torch
import torch
from torch import nn

from bench.errors import CheckpointError
from bench.provenance import file_sha256, json_default

log = logging.getLogger(__name__)

CHECKPOINTS_DIR = "checkpoints"
WEIGHTS, STATE, RUN_INFO, MANIFEST = "weights.safetensors", "state.pt", "run.json", "manifest.json"
FILES = (WEIGHTS, STATE, RUN_INFO)
FORMAT, FORMAT_VERSION = "cgan-bench-checkpoint", 1
TMP_PREFIX = ".tmp-"
_STEP_RE = re.compile(r"^step_(\d{8,})$")
_STATE_KEYS = {"format", "step", "optimizers", "rng", "state"}
_PLAIN_SCALARS = (bool, int, float, str, type(None))


@dataclass
class LoadedCheckpoint:
    """What ``load_checkpoint`` returns besides filling the given modules and optimisers."""

    step: int
    state: dict                       # the extra trainer state given to save_checkpoint
    run_info: dict                    # run.json
    path: Path
    rng: dict = field(default_factory=dict)

    def restore_rng(self) -> None:
        """Put the global RNGs (torch, CUDA, numpy, random) back as they were at save time."""
        restore_rng_state(self.rng)


def step_dir_name(step: int) -> str:
    return f"step_{step:08d}"


def step_of(path: str | os.PathLike) -> int | None:
    """The step of a checkpoint folder (``.../checkpoints/step_00001000`` -> 1000), None for another path."""
    m = _STEP_RE.match(Path(path).name)
    return int(m.group(1)) if m else None


def run_dir_of(checkpoint: str | os.PathLike) -> Path:
    """The run folder a checkpoint folder belongs to (``<run>/checkpoints/step_*`` -> ``<run>``)."""
    return Path(checkpoint).parent.parent


def list_checkpoints(run_dir: str | os.PathLike) -> list[Path]:
    """Complete checkpoints (a ``step_*`` directory with a manifest), sorted by step."""
    root = Path(run_dir) / CHECKPOINTS_DIR
    if not root.is_dir():
        return []
    found = [(s, p) for p in root.iterdir()
             if (s := step_of(p)) is not None and p.is_dir() and (p / MANIFEST).is_file()]
    return [p for _, p in sorted(found)]


def latest_checkpoint(run_dir: str | os.PathLike) -> Path | None:
    ckpts = list_checkpoints(run_dir)
    return ckpts[-1] if ckpts else None


# ----------------------------------------------------------------------------- RNG states

def capture_rng_state() -> dict:
    """Global RNG states (torch CPU, CUDA if initialised, numpy, random) as plain tensors/numbers."""
    version, mt, gauss = random.getstate()
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state(legacy=True)
    state = {"torch": torch.get_rng_state(),
             "python": {"version": version, "state": torch.tensor(mt, dtype=torch.int64), "gauss": gauss},
             "numpy": {"name": np_name, "keys": torch.from_numpy(np_keys.astype(np.int64)),
                       "pos": int(np_pos), "has_gauss": int(np_has_gauss), "gauss": float(np_gauss)}}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: Mapping[str, Any]) -> None:
    """Inverse of ``capture_rng_state``; parts absent from ``state`` are left alone."""
    if "torch" in state:
        torch.set_rng_state(state["torch"].cpu())
    if "python" in state:
        py = state["python"]
        random.setstate((py["version"], tuple(int(v) for v in py["state"].tolist()), py["gauss"]))
    if "numpy" in state:
        n = state["numpy"]
        keys = n["keys"].cpu().numpy().astype(np.uint32)
        np.random.set_state((n["name"], keys, n["pos"], n["has_gauss"], n["gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        saved = [s.cpu() for s in state["cuda"]]
        if len(saved) != torch.cuda.device_count():
            log.warning("checkpoint holds RNG states of %d CUDA devices, this machine has %d; restoring the first",
                        len(saved), torch.cuda.device_count())
        for i, s in enumerate(saved[:torch.cuda.device_count()]):
            torch.cuda.set_rng_state(s, i)


# ----------------------------------------------------------------------------- writing

def _check_plain(obj: Any, where: str) -> None:
    """Refuse what ``torch.load(weights_only=True)`` could not read back."""
    if isinstance(obj, torch.Tensor) or type(obj) in _PLAIN_SCALARS:   # exact: np.float64 is a float
        return
    if type(obj) in (dict, OrderedDict):
        for k, v in obj.items():
            if not isinstance(k, (str, int)):
                raise TypeError(f"checkpoint {where} has a {type(k).__name__} key {k!r}; use str or int keys")
            _check_plain(v, f"{where}[{k!r}]")
    elif type(obj) in (list, tuple, torch.Size):
        for i, v in enumerate(obj):
            _check_plain(v, f"{where}[{i}]")
    else:
        raise TypeError(f"checkpoint {where} is a {type(obj).__name__}; trainer state may hold only "
                        "tensors, dicts, lists, tuples, numbers, strings and None")


def _weights_bytes(modules: Mapping[str, nn.Module]) -> bytes:
    tensors: dict[str, torch.Tensor] = {}
    for name, module in modules.items():
        if not name or "." in name:
            raise ValueError(f"module name {name!r} must be non-empty and contain no '.'")
        for key, value in module.state_dict().items():
            if not isinstance(value, torch.Tensor):
                raise TypeError(f"module {name!r} state {key!r} is a {type(value).__name__}, not a tensor")
            # A fresh contiguous CPU copy: no shared storage, views or parametrization aliases.
            copy = torch.empty(value.shape, dtype=value.dtype, device="cpu")
            copy.copy_(value.detach())
            tensors[f"{name}.{key}"] = copy
    metadata = {"format": FORMAT, "modules": json.dumps(list(modules))}
    return safetensors.torch.save(tensors, metadata=metadata)


def _write_file(path: Path, data: bytes) -> dict:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    return {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return                          # not supported on this platform
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _remove_dir(path: Path) -> None:
    """Move a directory out of the readers' sight at once, then delete it."""
    trash = path.with_name(f"{TMP_PREFIX}del-{path.name}-{uuid.uuid4().hex[:8]}")
    os.replace(path, trash)
    shutil.rmtree(trash, ignore_errors=True)


def _clean_temp_dirs(root: Path) -> None:
    for p in root.iterdir():
        if p.name.startswith(TMP_PREFIX):
            log.info("removing leftover temporary checkpoint directory %s", p)
            shutil.rmtree(p, ignore_errors=True)


def save_checkpoint(run_dir: str | os.PathLike, step: int, modules: Mapping[str, nn.Module],
                    optimizers: Mapping[str, torch.optim.Optimizer], state: dict, run_info: dict,
                    keep_last: int | None = 2, keep_steps: tuple[int, ...] | frozenset[int] = ()) -> Path:
    """Write ``run_dir/checkpoints/step_XXXXXXXX`` atomically; keep the ``keep_last`` newest, and
    those of ``keep_steps`` (e.g. the end of the epochs a suite scores for its curves).

    RNG states are captured here. An existing checkpoint of the same step is replaced.
    """
    if step < 0:
        raise ValueError(f"step must be >= 0, got {step}")
    if keep_last is not None and keep_last < 1:
        raise ValueError(f"keep_last must be >= 1 or None, got {keep_last}")
    payload = {"format": FORMAT_VERSION, "step": int(step),
               "optimizers": {n: o.state_dict() for n, o in optimizers.items()},
               "rng": capture_rng_state(), "state": state}
    _check_plain(payload, "state")
    state_buf = io.BytesIO()
    torch.save(payload, state_buf)
    run_bytes = json.dumps(run_info, indent=2, sort_keys=True, default=json_default).encode("utf-8")
    weights = _weights_bytes(modules)

    root = Path(run_dir) / CHECKPOINTS_DIR
    root.mkdir(parents=True, exist_ok=True)
    _clean_temp_dirs(root)
    target = root / step_dir_name(step)
    tmp = root / f"{TMP_PREFIX}{target.name}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        files = {WEIGHTS: _write_file(tmp / WEIGHTS, weights),
                 STATE: _write_file(tmp / STATE, state_buf.getvalue()),
                 RUN_INFO: _write_file(tmp / RUN_INFO, run_bytes)}
        manifest = {"format": FORMAT, "version": FORMAT_VERSION, "step": int(step), "files": files}
        _write_file(tmp / MANIFEST, json.dumps(manifest, indent=2, sort_keys=True).encode("utf-8"))
        _fsync_dir(tmp)
        if target.exists():
            _remove_dir(target)
        os.replace(tmp, target)
        _fsync_dir(root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("saved checkpoint %s", target)
    if keep_last is not None:
        for old in list_checkpoints(run_dir)[:-keep_last]:
            if old != target and step_of(old) not in keep_steps:
                log.info("pruning checkpoint %s (keep_last=%d)", old, keep_last)
                _remove_dir(old)
    return target


# ----------------------------------------------------------------------------- reading

def _advice(path: Path) -> str:
    """What to do about a bad checkpoint: fall back to the previous complete one, if any."""
    step = step_of(path)
    if step is None or path.parent.name != CHECKPOINTS_DIR:     # never advise deleting what is not a checkpoint
        return f"pass a checkpoint directory (<run>/{CHECKPOINTS_DIR}/step_XXXXXXXX) or a run folder"
    earlier = [p for p in list_checkpoints(path.parent.parent) if (step_of(p) or 0) < step]
    if earlier:
        return f"delete {path} to resume from {earlier[-1].name}, the previous complete checkpoint"
    return f"delete {path} and start the run again (no earlier complete checkpoint exists)"


def _bad(path: Path, name: str, what: str) -> CheckpointError:
    return CheckpointError(f"checkpoint file {path / name} {what}; {_advice(path)}")


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0][:200]}" if text else type(e).__name__


def _read_manifest(path: Path) -> dict:
    if not path.is_dir():
        raise CheckpointError(f"checkpoint {path} not found; pass a checkpoint directory "
                              f"(run_dir/{CHECKPOINTS_DIR}/step_XXXXXXXX)")
    if not (path / MANIFEST).is_file():
        raise _bad(path, MANIFEST, "is missing (incomplete checkpoint or not a checkpoint)")
    try:
        manifest = json.loads((path / MANIFEST).read_text(encoding="utf-8"))
        if manifest.get("format") != FORMAT or not isinstance(manifest.get("files"), dict):
            raise ValueError("not a cgan-bench checkpoint manifest")
    except (OSError, ValueError, AttributeError) as e:
        raise _bad(path, MANIFEST, f"cannot be read ({_first_line(e)})") from None
    if manifest.get("version", 0) > FORMAT_VERSION:
        raise CheckpointError(f"checkpoint {path} has format version {manifest['version']}, newer than this "
                              f"cgan-bench reads ({FORMAT_VERSION}); upgrade cgan-bench")
    return manifest


def _verify(path: Path, names: tuple[str, ...]) -> dict:
    manifest = _read_manifest(path)
    for name in names:
        entry = manifest["files"].get(name)
        if not isinstance(entry, dict) or "sha256" not in entry or "size" not in entry:
            raise _bad(path, name, f"is not listed in {MANIFEST}")
        f = path / name
        if not f.is_file():
            raise _bad(path, name, "is missing")
        size = f.stat().st_size
        if size != entry["size"]:
            raise _bad(path, name, f"has {size} bytes but {MANIFEST} says {entry['size']} (truncated or corrupt)")
        if file_sha256(f) != entry["sha256"]:
            raise _bad(path, name, f"does not match its sha256 in {MANIFEST} (corrupt)")
    return manifest


def verify_checkpoint(path: str | os.PathLike) -> None:
    """Check the manifest and each file's size and sha256; raise ``CheckpointError`` if bad."""
    _verify(Path(path), FILES)


def _read_weights(path: Path) -> dict[str, dict[str, torch.Tensor]]:
    f = path / WEIGHTS
    try:
        data = f.read_bytes()
        tensors = safetensors.torch.load(data)
        header_len = int.from_bytes(data[:8], "little")
        meta = json.loads(data[8:8 + header_len]).get("__metadata__") or {}
        names = json.loads(meta["modules"]) if "modules" in meta else sorted({k.split(".", 1)[0] for k in tensors})
    except Exception as e:  # noqa: BLE001 - any decoding failure is a bad file
        raise _bad(path, WEIGHTS, f"cannot be read ({_first_line(e)})") from None
    out: dict[str, dict[str, torch.Tensor]] = {n: {} for n in names}
    for key, t in tensors.items():
        name, _, sub = key.partition(".")
        if name not in out:
            raise _bad(path, WEIGHTS, f"holds key {key!r} of no listed module")
        out[name][sub] = t
    return out


def _read_state(path: Path, map_location: Any) -> dict:
    try:
        payload = torch.load(path / STATE, map_location=map_location, weights_only=True)
    except Exception as e:  # noqa: BLE001 - truncated, bad pickle, forbidden global
        raise _bad(path, STATE, f"cannot be read ({_first_line(e)})") from None
    if not isinstance(payload, dict) or not _STATE_KEYS <= payload.keys():
        raise _bad(path, STATE, "is not a cgan-bench trainer state")
    return payload


def _read_json(path: Path, name: str) -> dict:
    try:
        return json.loads((path / name).read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise _bad(path, name, f"cannot be read ({_first_line(e)})") from None


def _mismatch(expected: Mapping[str, torch.Tensor], got: Mapping[str, torch.Tensor]) -> str:
    missing = sorted(set(expected) - set(got))
    unexpected = sorted(set(got) - set(expected))
    shapes = [f"{k}: checkpoint {tuple(got[k].shape)}, module {tuple(expected[k].shape)}"
              for k in sorted(set(expected) & set(got)) if got[k].shape != expected[k].shape]
    parts = [f"{label} {items[:3]}{' ...' if len(items) > 3 else ''}"
             for label, items in (("missing keys", missing), ("unexpected keys", unexpected),
                                  ("shape mismatches", shapes)) if items]
    return "; ".join(parts)


def load_checkpoint(path: str | os.PathLike, modules: Mapping[str, nn.Module] | None = None,
                    optimizers: Mapping[str, torch.optim.Optimizer] | None = None,
                    map_location: Any = "cpu") -> LoadedCheckpoint:
    """Verify a checkpoint, load its weights (strictly) and optimiser states into those given.

    Every given module and optimiser must be in the checkpoint; others in it are left unread.
    RNG states are returned, not applied: call ``restore_rng()`` on the result to resume.
    """
    path = Path(path)
    _verify(path, FILES)
    run_info = _read_json(path, RUN_INFO)
    payload = _read_state(path, map_location)
    if modules:
        weights = _read_weights(path)
        for name, module in modules.items():
            if name not in weights:
                raise _bad(path, WEIGHTS, f"has no module {name!r} (it holds {sorted(weights)})")
            problem = _mismatch(module.state_dict(), weights[name])
            if problem:
                raise CheckpointError(f"checkpoint file {path / WEIGHTS} does not fit module {name!r}: "
                                      f"{problem}; build the model from {path / RUN_INFO}'s config")
            try:
                module.load_state_dict(weights[name], strict=True)
            except Exception as e:  # noqa: BLE001
                raise _bad(path, WEIGHTS, f"cannot be loaded into module {name!r} ({_first_line(e)})") from None
    for name, opt in (optimizers or {}).items():
        states = payload["optimizers"]
        if name not in states:
            raise _bad(path, STATE, f"has no optimizer {name!r} (it holds {sorted(states)})")
        try:
            opt.load_state_dict(states[name])
        except Exception as e:  # noqa: BLE001
            raise CheckpointError(f"checkpoint file {path / STATE} does not fit optimizer {name!r} "
                                  f"({_first_line(e)}); build it from {path / RUN_INFO}'s config") from None
    return LoadedCheckpoint(step=int(payload["step"]), state=payload["state"], run_info=run_info,
                            path=path, rng=payload["rng"])


def read_run_info(path: str | os.PathLike) -> dict:
    """The verified ``run.json`` of a checkpoint."""
    path = Path(path)
    _verify(path, (RUN_INFO,))
    return _read_json(path, RUN_INFO)


def load_module_weights(path: str | os.PathLike) -> dict[str, dict[str, torch.Tensor]]:
    """The verified weights of a checkpoint, one state_dict per module name (CPU tensors)."""
    path = Path(path)
    _verify(path, (WEIGHTS,))
    return _read_weights(path)
