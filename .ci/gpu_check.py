#!/usr/bin/env python3
"""The GPU check: everything the bench does on a GPU, measured in one command of a few minutes.

Sections (in this order, each under the time left of ``--budget``; a section that would not fit is
skipped with that reason, one that fails is recorded and the next one runs):

``env``          Python, torch, CUDA, the GPU, the plug-in libraries' versions.
``cuda_tests``   the CUDA-marked tests (``pytest -m cuda``).
``step``         one pix2pix training step at 256x256 (U-Net 256 + 70x70 PatchGAN, Adam, vanilla GAN + 100 L1),
                 ours (the ``pix2pix`` adapter) side by side with the reference implementation's
                 (pytorch-CycleGAN-and-pix2pix, from the checkout named by ``BENCH_PIX2PIX_REF`` / ``--ref``;
                 skipped with the reason when absent): batch 1 and 8, fp32 and bf16 autocast + channels_last;
                 interleaved rounds, median ms per step; same parameter counts checked. Of the checkout only
                 ``models/networks.py`` is loaded, by its file path (its U-Net, PatchGAN and GANLoss; it imports
                 nothing but torch and the standard library): never ``models/__init__.py``,
                 ``models/pix2pix_model.py`` nor ``util/``, which run code of their own on import (a checkout's
                 ``util/__init__.py`` was found malicious). ``Pix2PixModel.optimize_parameters`` is rebuilt here
                 from those classes (:func:`build_ref`).
``fid``          features of 10k generated images through the FID Inception (random weights: the speed does not
                 depend on them) and the Frechet distance from them.
``confusion``    the segmentation confusion matrix in Gpx/s.
``fusion_row``   one fusion-table row (fusion-table1, "4-Layer Fusion + SN") at the ``gpu-check`` profile.
``compile``      the pix2pix step again with ``torch.compile`` (ours and the reference), batch 8.
``short``        a suite's short profile with the time that is left (default: fusion-table2's central claim, the
                 rows 4-Layer Concat, Concat + SN and Fusion + SN, 1 seed, in ``--short-jobs`` worker processes at
                 once: one small run leaves the GPU idle between kernel launches; ``--short-rows all`` for every
                 row) on the carried Cityscapes subset; a run cut short keeps what it finished (``bench run
                 --resume`` continues it on the full data).

Writes ``gpu_check.json`` (everything), ``gpu_check.md`` (the summary) and ``gpu_check.log`` to ``--out``
after every section, and ``runs.tar.gz`` (the bench runs' leaderboards and curves, no checkpoints).
``--dry`` runs the same code on the CPU at toy sizes, without the CUDA-only parts: the tests use it.
See the README's "GPU check" section for how to run it on a GPU machine without a package index.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import importlib.util
import json
import os
import platform
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import traceback
import types
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
REF_ENV = "BENCH_PIX2PIX_REF"
FUSION_ROW = "4-Layer Fusion + SN"


class Skip(Exception):
    """A section that cannot run here, with the reason."""


class Check:
    def __init__(self, out: Path, budget: float, dry: bool):
        self.out, self.budget, self.dry = out, budget, dry
        self.t0 = time.monotonic()
        self.report: dict[str, Any] = {"started": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                                       "dry": dry, "budget_s": budget, "sections": {}}
        out.mkdir(parents=True, exist_ok=True)
        self.log_file = open(out / "gpu_check.log", "a", buffering=1)

    def log(self, msg: str) -> None:
        line = f"[{time.monotonic() - self.t0:7.1f}s] {msg}"
        print(line, flush=True)
        self.log_file.write(line + "\n")

    def left(self) -> float:
        return self.budget - (time.monotonic() - self.t0)

    def section(self, name: str, fn: Callable[[], dict[str, Any]], need_s: float) -> None:
        if self.left() < need_s:
            why = f"out of time budget ({self.left():.0f}s left, needs ~{need_s:.0f}s)"
            self.report["sections"][name] = {"status": "skipped", "reason": why}
            self.log(f"{name}: skipped (budget)")
            self.write()
            return
        self.log(f"{name}: start")
        t = time.monotonic()
        try:
            res = {"status": "ok", **fn()}
        except Skip as e:
            res = {"status": "skipped", "reason": str(e)}
        except Exception as e:  # noqa: BLE001 - a failing section is a result; the next one runs
            res = {"status": "error", "error": f"{type(e).__name__}: {e}".splitlines()[0][:400]}
            self.log_file.write(traceback.format_exc())
        res["wall_s"] = round(time.monotonic() - t, 2)
        self.report["sections"][name] = res
        self.log(f"{name}: {res['status']} in {res['wall_s']}s" + (f" ({res.get('reason') or res.get('error')})"
                                                                     if res["status"] != "ok" else ""))
        self.write()

    def write(self) -> None:
        self.report["elapsed_s"] = round(time.monotonic() - self.t0, 1)
        tmp = self.out / "gpu_check.json.tmp"
        tmp.write_text(json.dumps(self.report, indent=2, default=str))
        tmp.replace(self.out / "gpu_check.json")
        (self.out / "gpu_check.md").write_text(summary_markdown(self.report))


# ------------------------------------------------------------------------------------------- sections
def section_env(dev: Any) -> dict[str, Any]:
    import importlib.metadata as md

    import torch
    out: dict[str, Any] = {"python": platform.python_version(), "torch": torch.__version__,
                           "cuda_build": torch.version.cuda, "device": str(dev),
                           "commit": os.environ.get("BENCH_COMMIT") or _git_commit()}
    for pkg in ("torchvision", "torch-fidelity", "pytorch-msssim", "segmentation-models-pytorch", "timm",
                "numpy", "pandas", "scipy"):
        with contextlib.suppress(md.PackageNotFoundError):
            out[pkg] = md.version(pkg)
    if dev.type == "cuda":
        p = torch.cuda.get_device_properties(dev)
        out |= {"gpu": p.name, "gpu_memory_gib": round(p.total_memory / 2**30, 1),
                "multiprocessors": p.multi_processor_count, "cudnn": torch.backends.cudnn.version()}
    return out


def _git_commit() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                              timeout=10).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def cuda_test_files() -> list[str]:
    """The test files that hold CUDA-marked tests (collecting only these is seconds, not a minute)."""
    return sorted(str(p.relative_to(ROOT)) for p in (ROOT / "tests").glob("test_*.py")
                  if "mark.cuda" in p.read_text(encoding="utf-8"))


def section_cuda_tests(check: Check) -> dict[str, Any]:
    files = cuda_test_files()
    if not files:
        raise RuntimeError("no CUDA-marked tests found under tests/")
    cmd = [sys.executable, "-m", "pytest", "-m", "cuda", "-q", "-p", "no:cacheprovider", "-o", "addopts=",
           "--benchmark-disable", *files]
    p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=max(30, min(240, check.left())))
    check.log_file.write(p.stdout[-6000:] + p.stderr[-3000:])
    last = [ln for ln in p.stdout.strip().splitlines() if ln.strip()][-1:] or ["(no output)"]
    out = {"returncode": p.returncode, "summary": last[0].strip("= "), "files": files}
    if p.returncode not in (0, 5):
        raise RuntimeError(f"CUDA tests failed: {out['summary']}")
    return out


# -- the pix2pix step ------------------------------------------------------------------------------
REF_NETWORKS = Path("models") / "networks.py"    # the one file of the reference checkout that is loaded


def ref_checkout(arg: str | None) -> Path:
    """The reference checkout (``--ref``, else ``$BENCH_PIX2PIX_REF``): a folder with ``models/networks.py``."""
    where = arg or os.environ.get(REF_ENV)
    if not where:
        raise Skip(f"no reference checkout: set {REF_ENV} (or --ref) to a pytorch-CycleGAN-and-pix2pix checkout")
    p = Path(where).expanduser()
    if not (p / REF_NETWORKS).is_file():
        raise Skip(f"{p} is not a pytorch-CycleGAN-and-pix2pix checkout (no {REF_NETWORKS.as_posix()})")
    return p


def load_ref_networks(ref: Path) -> types.ModuleType:
    """The reference's ``models/networks.py`` alone, executed from its file path as a module of no package.

    Nothing else of the checkout is imported: not the ``models`` package (its ``__init__`` imports every
    model), not ``models/pix2pix_model.py`` (it imports ``util/``), not ``util/`` (a stored copy's
    ``util/__init__.py`` was malicious). The checkout is never put on ``sys.path``, and while networks.py runs
    every ``sys.path`` entry inside the checkout (a ``PYTHONPATH``, the working folder) is taken off, so an
    import of ``util`` or ``models`` in it fails instead of reaching into the checkout, and so does a relative
    import (no parent package). The upstream networks.py imports only torch, functools and
    torch.optim.lr_scheduler."""
    path = Path(ref) / REF_NETWORKS
    root = Path(ref).resolve()

    def inside(entry: str) -> bool:
        try:
            return Path(entry or ".").resolve().is_relative_to(root)
        except (OSError, ValueError):
            return False

    name = "_pix2pix_reference_networks"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise RuntimeError(f"cannot load {path}")
    mod = importlib.util.module_from_spec(spec)
    saved = list(sys.path)
    sys.path[:] = [e for e in saved if not inside(e)]
    sys.modules[name] = mod                          # torch.compile looks functions' modules up by name
    try:
        spec.loader.exec_module(mod)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    finally:
        sys.path[:] = saved
    return mod


def build_ours(dev: Any, size: int, batch: int, amp: bool, cl: bool, width: int = 64, compile_: bool = False):
    """The ``pix2pix`` adapter with pix2pix's defaults (U-Net, batch-norm PatchGAN, vanilla GAN + 100 L1)."""
    import torch

    from bench.build import build_method
    from bench.contracts import TrainContext
    from bench.data.base import DatasetInfo
    from bench.registry import TASKS
    torch.manual_seed(0)
    info = DatasetInfo(name="gpu-check", tasks=("labels2photo",), num_classes=8,
                       palette=tuple((i * 30, 255 - i * 30, i * 15) for i in range(8)))
    task = TASKS.get("labels2photo").bind(info)
    ctx = TrainContext(dev, amp=amp, channels_last=cl, image_size=size)
    a = build_method("pix2pix", {"ngf": width, "ndf": width}, task, ctx,
                     {"G": {"name": "unet"}, "D": {"name": "patchgan"}}, image_size=size)
    if compile_:
        a.G, a.D = torch.compile(a.G), torch.compile(a.D)
    b = ctx.to_device({"label_rgb": torch.rand(batch, 3, size, size) * 2 - 1,
                       "photo": torch.rand(batch, 3, size, size) * 2 - 1})
    counts = (sum(p.numel() for p in a.G.parameters()), sum(p.numel() for p in a.D.parameters()))
    return (lambda: a.train_step(b, 0, True)), counts


def build_ref(ref: Path, dev: Any, size: int, batch: int, amp: bool, cl: bool, width: int = 64,
              compile_: bool = False):
    """The reference's pix2pix training step, ``Pix2PixModel.optimize_parameters`` at its pix2pix defaults,
    rebuilt from the classes of its ``models/networks.py`` (:func:`load_ref_networks`; the model file itself
    imports ``util/`` and is never loaded): ``define_G`` (U-Net, batch norm, dropout), ``define_D`` (70x70
    PatchGAN on the concatenated pair), ``GANLoss("vanilla")``, L1 x 100, Adam (lr 2e-4, betas 0.5, 0.999) for
    each; one step = G forward, D's update on the detached fake and the real pair (their losses' mean), then
    G's update with D's parameters frozen (``set_requires_grad``), all under autocast with ``amp`` as the
    model's step is. ``pool_size`` 0 (pix2pix's) makes the model's image pool a no-op, so none is built. On one
    device without DataParallel (a one-GPU run of the reference wraps its nets in DataParallel; we leave that
    out so both do the same work); cudnn.benchmark, which the reference's BaseModel turns on, :func:`main`
    turns on for both on a GPU."""
    import torch
    nets = load_ref_networks(ref)
    torch.manual_seed(0)
    net_g = {256: "unet_256", 128: "unet_128"}[size]
    # Pix2PixModel.__init__: define_G(input_nc, output_nc, ngf, netG, norm, not no_dropout, init_type, init_gain,
    # gpu_ids) and define_D(input_nc + output_nc, ndf, netD, n_layers_D, norm, init_type, init_gain, gpu_ids),
    # gpu_ids left at its default [] (no DataParallel)
    net_G = nets.define_G(3, 3, width, net_g, "batch", True, "normal", 0.02)
    net_D = nets.define_D(6, width, "basic", 3, "batch", "normal", 0.02)
    mf = torch.channels_last if cl else torch.contiguous_format
    net_G.to(dev, memory_format=mf)
    net_D.to(dev, memory_format=mf)
    gan = nets.GANLoss("vanilla").to(dev)
    l1 = torch.nn.L1Loss()
    opt_G = torch.optim.Adam(net_G.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_D = torch.optim.Adam(net_D.parameters(), lr=2e-4, betas=(0.5, 0.999))
    counts = (sum(p.numel() for p in net_G.parameters()), sum(p.numel() for p in net_D.parameters()))
    G, D = (torch.compile(net_G), torch.compile(net_D)) if compile_ else (net_G, net_D)
    real_A = (torch.rand(batch, 3, size, size) * 2 - 1).to(dev, memory_format=mf)
    real_B = (torch.rand(batch, 3, size, size) * 2 - 1).to(dev, memory_format=mf)
    ac = (lambda: torch.autocast(dev.type, dtype=torch.bfloat16)) if amp else contextlib.nullcontext

    def set_requires_grad(flag: bool) -> None:
        for p in net_D.parameters():
            p.requires_grad = flag

    def step():
        with ac():
            fake_B = G(real_A)                                       # forward
            set_requires_grad(True)                                  # update D
            opt_D.zero_grad()
            loss_D_fake = gan(D(torch.cat((real_A, fake_B), 1).detach()), False)
            loss_D_real = gan(D(torch.cat((real_A, real_B), 1)), True)
            ((loss_D_fake + loss_D_real) * 0.5).backward()
            opt_D.step()
            set_requires_grad(False)                                 # update G
            opt_G.zero_grad()
            loss_G = gan(D(torch.cat((real_A, fake_B), 1)), True) + l1(fake_B, real_B) * 100.0
            loss_G.backward()
            opt_G.step()
    return step, counts


def _shown(p: Path) -> str:
    """A path as the report shows it: relative to the checkout when inside it (no machine paths in reports)."""
    try:
        return str(p.resolve().relative_to(ROOT))
    except ValueError:
        return p.name


def _sync(dev: Any) -> None:
    import torch
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def time_pair(dev: Any, fns: dict[str, Callable[[], Any]], rounds: int, steps: int, warmup: int
              ) -> dict[str, dict[str, float]]:
    """Median ms per step of each function, in interleaved rounds (A's steps, B's steps, A's, ...)."""
    first: dict[str, float] = {}
    for k, fn in fns.items():
        t = time.perf_counter()
        fn()
        _sync(dev)
        first[k] = (time.perf_counter() - t) * 1e3   # includes compilation / cudnn autotuning
        for _ in range(warmup - 1):
            fn()
        _sync(dev)
    per: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(rounds):
        for k, fn in fns.items():
            _sync(dev)
            t = time.perf_counter()
            for _ in range(steps):
                fn()
            _sync(dev)
            per[k].append((time.perf_counter() - t) * 1e3 / steps)
    return {k: {"median_ms": round(statistics.median(v), 3), "min_ms": round(min(v), 3),
                "first_ms": round(first[k], 1)} for k, v in per.items()}


def step_configs(dry: bool, compiled: bool) -> list[dict[str, Any]]:
    if dry:
        return [dict(size=128, batch=1, amp=False, cl=False, width=8)]
    if compiled:
        return [dict(size=256, batch=8, amp=a, cl=a) for a in (True, False)]
    return [dict(size=256, batch=b, amp=a, cl=a) for b in (1, 8) for a in (False, True)]


def section_step(check: Check, dev: Any, ref_arg: str | None, compiled: bool = False) -> dict[str, Any]:
    import torch
    try:
        ref: Path | None = ref_checkout(ref_arg)
        ref_reason = None
    except Skip as e:
        ref, ref_reason = None, str(e)
    if compiled and check.dry:
        raise Skip("torch.compile is timed on the GPU only")
    rounds, steps, warmup = (1, 1, 1) if check.dry else (5, 5, 3 if not compiled else 2)
    rows = []
    for cfg in step_configs(check.dry, compiled):
        label = f"{cfg['size']}px b{cfg['batch']} {'bf16+CL' if cfg['amp'] else 'fp32'}" + (" compiled" if compiled
                                                                                           else "")
        need = 120 if compiled else 15
        if check.left() < need:
            rows.append({"config": label, "skipped": "out of time budget"})
            continue
        fns, counts = {}, {}
        fns["ours"], counts["ours"] = build_ours(dev, compile_=compiled, **cfg)
        if ref is not None:
            fns["reference"], counts["reference"] = build_ref(ref, dev, compile_=compiled, **cfg)
        res = time_pair(dev, fns, rounds, steps, warmup)
        row = {"config": label, **cfg, "compiled": compiled, "params": counts,
               **{f"{k}_ms": v["median_ms"] for k, v in res.items()},
               **{f"{k}_first_ms": v["first_ms"] for k, v in res.items()}}
        if ref is not None:
            row["same_params"] = counts["ours"] == counts["reference"]
            row["ratio_ref_over_ours"] = round(res["reference"]["median_ms"] / res["ours"]["median_ms"], 3)
        rows.append(row)
        check.log(f"  {label}: " + ", ".join(f"{k} {v['median_ms']:.2f} ms" for k, v in res.items()))
        del fns
        if dev.type == "cuda":
            torch.cuda.empty_cache()
    return {"rows": rows, "reference": _shown(ref) if ref else None, "reference_skipped": ref_reason,
            "timing": f"median of {rounds} interleaved rounds of {steps} steps after {warmup} warm-up steps"}


def section_fid(check: Check, dev: Any) -> dict[str, Any]:
    import torch
    from torch_fidelity import feature_extractor_inceptionv3 as fei

    from metrics import extractors as ex
    from metrics.fidelity import FeatureSpace, fid_from_features
    n, side, bs = (16, 64, 8) if check.dry else (10_000, 256, 250)
    tmp = Path(tempfile.mkdtemp()) / ex.INCEPTION_FILE
    # random Inception weights (the standard file is not needed to time it): torch-fidelity's net, no download
    orig_url, orig_load = fei.load_state_dict_from_url, fei.FeatureExtractorInceptionV3.load_state_dict
    try:
        fei.load_state_dict_from_url = lambda *a, **k: {}
        fei.FeatureExtractorInceptionV3.load_state_dict = lambda self, sd, *a, **k: None
        torch.manual_seed(0)
        torch.save(fei.FeatureExtractorInceptionV3("inception-v3-compat", ["2048"]).state_dict(), tmp)
    finally:
        fei.load_state_dict_from_url, fei.FeatureExtractorInceptionV3.load_state_dict = orig_url, orig_load
    fs = FeatureSpace("inception-v3-compat", weights_path=tmp, device=dev, batch_size=bs)
    gen = torch.Generator(device=dev).manual_seed(0)

    def images(k: int) -> torch.Tensor:
        return torch.randint(0, 256, (k, 3, side, side), dtype=torch.uint8, device=dev, generator=gen)
    fs.features(images, num_samples=bs)            # build + warm up
    _sync(dev)
    t = time.perf_counter()
    f1 = fs.features(images, num_samples=n)["2048"]
    _sync(dev)
    t_feat = time.perf_counter() - t
    f2 = fs.features(images, num_samples=n)["2048"]
    t = time.perf_counter()
    dims = 64 if check.dry else f1.shape[1]
    fid = fid_from_features(f1[:, :dims].numpy(), f2[:, :dims].numpy())
    t_fid = time.perf_counter() - t
    return {"images": n, "image_side": side, "batch_size": bs, "features_s": round(t_feat, 2),
            "images_per_s": round(n / t_feat, 1), "frechet_s": round(t_fid, 2), "feature_dims": dims,
            "fid_from_images_s": round(2 * t_feat + t_fid, 2), "fid_value_random_weights": round(fid, 4),
            "note": "random Inception weights: times, not a meaningful FID value"}


def section_confusion(check: Check, dev: Any) -> dict[str, Any]:
    import torch

    from metrics.segmentation import confusion_matrix
    shape = (1, 256, 512) if check.dry else (8, 1024, 2048)
    g = torch.Generator(device=dev).manual_seed(0)
    target = torch.randint(0, 20, shape, device=dev, generator=g)
    target[target == 19] = 255
    pred = torch.randint(0, 19, shape, device=dev, generator=g)
    cm = confusion_matrix(pred, target, 19)
    assert int(cm.sum()) == int((target != 255).sum())
    times = []
    for _ in range(3 if check.dry else 10):
        _sync(dev)
        t = time.perf_counter()
        confusion_matrix(pred, target, 19)
        _sync(dev)
        times.append(time.perf_counter() - t)
    px = pred.numel()
    med = statistics.median(times)
    return {"pixels": px, "classes": 19, "median_ms": round(med * 1e3, 3), "gpx_per_s": round(px / med / 1e9, 4)}


def bench_run(check: Check, args: list[str], out: Path, timeout: float) -> dict[str, Any]:
    """``bench run ...`` as a user types it, cut at ``timeout``; the leaderboard values it wrote."""
    import pandas as pd
    cmd = [sys.executable, "-m", "bench.cli", "run", *args, "--out", str(out), "--no-progress"]
    check.log("  $ " + " ".join(cmd[2:]))
    t = time.monotonic()
    try:
        p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
        rc, tail = p.returncode, (p.stdout + p.stderr)[-3000:]
    except subprocess.TimeoutExpired as e:
        rc, tail = None, f"cut at {timeout:.0f}s: {(e.stdout or b'')[-2000:]!r}"
    check.log_file.write(tail + "\n")
    res: dict[str, Any] = {"command": "bench run " + " ".join(args), "returncode": rc,
                           "wall_s": round(time.monotonic() - t, 1)}
    board = out / "leaderboard.csv"
    if board.is_file():
        df = pd.read_csv(board)
        keep = [c for c in ("row", "task", "metric", "mean", "n", "published", "status") if c in df.columns]
        res["leaderboard"] = df[keep].to_dict(orient="records")
    if rc not in (0, None):
        res["error"] = tail.strip().splitlines()[-1][:400] if tail.strip() else "no output"
    return res


def section_fusion_row(check: Check, dev: Any, work: Path) -> dict[str, Any]:
    profile = "smoke" if check.dry else "gpu-check"
    res = bench_run(check, ["fusion-table1", "--profile", profile, "--rows", FUSION_ROW, "--seeds", "1",
                            "--device", str(dev.type)], work / "fusion-table1", timeout=max(10, check.left() - 5))
    if res.get("returncode") != 0:
        raise RuntimeError(res.get("error") or "the run was cut short")
    return res


SHORT_ROWS = "4-Layer Concat,4-Layer Concat + SN,4-Layer Fusion + SN"


def section_short(check: Check, dev: Any, work: Path, suite: str, jobs: int = 3, rows: str = SHORT_ROWS
                  ) -> dict[str, Any]:
    profile, jobs = ("smoke", 1) if check.dry else ("short", jobs)
    picked = [] if rows == "all" else ["--rows", rows]
    return bench_run(check, [suite, "--profile", profile, "--seeds", "1", "--jobs", str(jobs), *picked,
                             "--device", str(dev.type)], work / suite, timeout=max(10, check.left() - 10))


def pack_runs(work: Path, dest: Path) -> None:
    """The runs' leaderboards, curves, grids and results stores (no checkpoints) in one archive."""
    with tarfile.open(dest, "w:gz") as tar:
        for f in sorted(work.rglob("*")):
            if f.is_file() and "checkpoints" not in f.parts and f.suffix not in (".pt", ".safetensors", ".lock"):
                tar.add(f, arcname=str(f.relative_to(work)))


# ------------------------------------------------------------------------------------------- summary
def summary_markdown(r: dict[str, Any]) -> str:
    """gpu_check.md; errors, paths and the suites' row names escaped for Markdown (:mod:`bench.escape`)."""
    from bench.escape import md_heading, md_text
    s = r["sections"]
    env = s.get("env", {})
    lines = [f"# GPU check{' (dry run, CPU)' if r['dry'] else ''}", "",
             f"{env.get('gpu', env.get('device', '?'))}; Python {env.get('python', '?')}, torch {env.get('torch', '?')}"
             f" (CUDA {env.get('cuda_build')}), commit {str(env.get('commit'))[:12]}; started {r['started']}, "
             f"{r.get('elapsed_s', 0):.0f}s of a {r['budget_s']:.0f}s budget.", "",
             "| section | status | wall s | detail |", "|---|---|---|---|"]
    for name, v in s.items():
        detail = v.get("reason") or v.get("error") or v.get("summary") or ""
        lines.append(f"| {name} | {v['status']} | {v.get('wall_s', '')} | {md_text(detail)} |")
    for key in ("step", "compile"):
        rows = [x for x in s.get(key, {}).get("rows", []) if "skipped" not in x]
        if rows:
            lines += ["", f"## pix2pix training step ({'torch.compile' if key == 'compile' else 'eager'})", "",
                      "| config | ours ms | reference ms | reference / ours | same params | first step ms (ours, ref)"
                      " |",
                      "|---|---|---|---|---|---|"]
            for x in rows:
                lines.append(f"| {x['config']} | {x['ours_ms']} | {x.get('reference_ms', '-')} | "
                             f"{x.get('ratio_ref_over_ours', '-')} | {x.get('same_params', '-')} | "
                             f"{x['ours_first_ms']}, {x.get('reference_first_ms', '-')} |")
            if s[key].get("reference_skipped"):
                lines.append(f"\nReference not timed: {md_text(s[key]['reference_skipped'])}")
    if (f := s.get("fid", {})).get("status") == "ok":
        lines += ["", f"FID features: {f['images']} images in {f['features_s']} s ({f['images_per_s']} img/s); "
                  f"Frechet distance from {f['images']}x2048 features: {f['frechet_s']} s; FID from two sets of "
                  f"images: {f['fid_from_images_s']} s."]
    if (c := s.get("confusion", {})).get("status") == "ok":
        lines += ["", f"Confusion matrix: {c['pixels']} px, 19 classes: {c['median_ms']} ms = {c['gpx_per_s']} Gpx/s."]
    for key in ("fusion_row", "short"):
        v = s.get(key, {})
        if v.get("leaderboard"):
            lines += ["", f"## {md_heading(v['command'])} ({v['wall_s']} s, return code {v['returncode']})", "",
                      "| row | task | metric | mean | published |", "|---|---|---|---|---|"]
            for x in v["leaderboard"]:
                lines.append(f"| {md_text(x.get('row'))} | {md_text(x.get('task'))} | {md_text(x.get('metric'))} | "
                             f"{x.get('mean')} | "
                             f"{x.get('published', '')} |")
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------------- main
SECTIONS = ("env", "cuda_tests", "step", "fid", "confusion", "fusion_row", "compile", "short")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, type=Path, help="folder for gpu_check.json / .md / .log, runs.tar.gz")
    ap.add_argument("--budget", type=float, default=420.0, help="seconds for the whole check (default 420)")
    ap.add_argument("--dry", action="store_true", help="on the CPU at toy sizes, without the CUDA-only parts")
    ap.add_argument("--ref", help=f"pytorch-CycleGAN-and-pix2pix checkout (default: ${REF_ENV})")
    ap.add_argument("--sections", default=",".join(SECTIONS), help="comma-separated subset of: " + ", ".join(SECTIONS))
    ap.add_argument("--short-suite", default="fusion-table2", help="the suite whose short profile ends the check")
    ap.add_argument("--short-rows", default=SHORT_ROWS,
                    help="its rows, comma-separated (default: fusion-table2's central claim), or 'all'")
    ap.add_argument("--short-jobs", type=int, default=3, help="runs of the short profile at once (bench run --jobs)")
    a = ap.parse_args(argv)
    wanted = [x.strip() for x in a.sections.split(",") if x.strip()]
    if bad := [x for x in wanted if x not in SECTIONS]:
        ap.error(f"unknown section(s) {', '.join(bad)}; choose from {', '.join(SECTIONS)}")

    import torch
    if a.dry:
        dev = torch.device("cpu")
    elif not torch.cuda.is_available():
        print("gpu_check: no CUDA device here; run with --dry to check the script on the CPU", file=sys.stderr)
        return 2
    else:
        dev = torch.device("cuda")
        torch.backends.cudnn.benchmark = True
    check = Check(a.out, a.budget, a.dry)
    work = Path(tempfile.mkdtemp(prefix="gpu-check-runs-"))
    plan: dict[str, tuple[Callable[[], dict[str, Any]], float]] = {
        "env": (lambda: section_env(dev), 0),
        "cuda_tests": (lambda: section_cuda_tests(check), 20),
        "step": (lambda: section_step(check, dev, a.ref), 20),
        "fid": (lambda: section_fid(check, dev), 20),
        "confusion": (lambda: section_confusion(check, dev), 2),
        "fusion_row": (lambda: section_fusion_row(check, dev, work), 60),
        "compile": (lambda: section_step(check, dev, a.ref, compiled=True), 120),
        "short": (lambda: section_short(check, dev, work, a.short_suite, a.short_jobs, a.short_rows), 30),
    }
    for name in SECTIONS:
        if name in wanted:
            fn, need = plan[name]
            check.section(name, fn, need)
    if any(work.iterdir()):
        pack_runs(work, a.out / "runs.tar.gz")
    check.write()
    failed = [k for k, v in check.report["sections"].items() if v["status"] == "error"]
    check.log(f"done in {time.monotonic() - check.t0:.0f}s" + (f"; failed: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
