"""The GPU check script (``.ci/gpu_check.py``) in its dry mode: the same code on the CPU at toy sizes."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / ".ci" / "gpu_check.py"


def _run(out: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    e = {**os.environ, "OMP_NUM_THREADS": "2", **(env or {})}
    return subprocess.run([sys.executable, str(SCRIPT), "--dry", "--out", str(out), *args], cwd=REPO, env=e,
                          capture_output=True, text=True, timeout=900)


# A stand-in for the reference's models/networks.py (the real checkout is never in the repo): its interface
# (define_G / define_D as Pix2PixModel calls them, GANLoss(gan_mode)) over our own U-Net and PatchGAN, so the
# script's loading, step and timing paths run and the parameter counts match ours.
NETWORKS = '''
import torch
try:
    import util        # the upstream file does not; one that tries must not reach the checkout's util/
except ImportError:
    pass
from methods.generators.unet import UNetGenerator
from methods.discriminators.patchgan import PatchGAN


class _PairD(torch.nn.Module):
    """The reference's D takes the concatenated pair; ours takes the two halves."""
    def __init__(self, d):
        super().__init__()
        self.d = d

    def forward(self, ab):
        return self.d(ab[:, :3], ab[:, 3:])


def define_G(input_nc, output_nc, ngf, netG, norm="batch", use_dropout=False, init_type="normal",
             init_gain=0.02, gpu_ids=[]):
    size = {"unet_256": 256, "unet_128": 128}[netG]
    return UNetGenerator(input_nc, output_nc, image_size=size, ngf=ngf)


def define_D(input_nc, ndf, netD, n_layers_D=3, norm="batch", init_type="normal", init_gain=0.02, gpu_ids=[]):
    assert netD == "basic" and input_nc == 6
    return _PairD(PatchGAN(3, 3, ndf=ndf))


class GANLoss(torch.nn.Module):
    def __init__(self, gan_mode):
        super().__init__()
        assert gan_mode == "vanilla"
        self.loss = torch.nn.BCEWithLogitsLoss()

    def __call__(self, pred, target_is_real):
        return self.loss(pred, torch.full_like(pred, 1.0 if target_is_real else 0.0))
'''

# What the real checkout has beside networks.py, and what must never run: each writes a marker when imported.
TRAP = "import os, pathlib; pathlib.Path(os.environ['TRAP_DIR'], {name!r}).write_text('imported')\n"


def _reference(root: Path) -> Path:
    """A reference checkout: models/networks.py, plus models/__init__.py, models/pix2pix_model.py (which, as the
    real one, imports util) and util/__init__.py that leave a marker in $TRAP_DIR when imported."""
    (root / "models").mkdir(parents=True)
    (root / "util").mkdir()
    (root / "models" / "networks.py").write_text(NETWORKS)
    (root / "models" / "__init__.py").write_text(TRAP.format(name="models"))
    (root / "models" / "pix2pix_model.py").write_text(TRAP.format(name="pix2pix_model") +
                                                       "from util.image_pool import ImagePool\n")
    (root / "util" / "__init__.py").write_text(TRAP.format(name="util"))
    (root / "util" / "image_pool.py").write_text(TRAP.format(name="image_pool") + "ImagePool = object\n")
    return root


@pytest.fixture(scope="module")
def ref_checkout(tmp_path_factory) -> Path:
    return _reference(tmp_path_factory.mktemp("ref"))


def test_only_the_references_networks_py_is_loaded(tmp_path: Path) -> None:
    """Issue 22 item 10: the reference's util/__init__.py (and the models package, pix2pix_model.py) must never
    run; the step is built and taken from models/networks.py alone."""
    ref, traps = _reference(tmp_path / "ref"), tmp_path / "traps"
    traps.mkdir()
    code = (f"import importlib.util, sys, torch\n"
            f"spec = importlib.util.spec_from_file_location('gpu_check', {str(SCRIPT)!r})\n"
            "gc = importlib.util.module_from_spec(spec); spec.loader.exec_module(gc)\n"
            f"ref = gc.ref_checkout({str(ref)!r})\n"
            f"sys.path.append({str(ref)!r})\n"            # even with the checkout on the path (a PYTHONPATH)
            "step, counts = gc.build_ref(ref, torch.device('cpu'), size=128, batch=1, amp=False, cl=False, width=8)\n"
            "step(); step()\n"
            "assert not {'models', 'util', 'models.pix2pix_model'} & set(sys.modules), sorted(sys.modules)\n"
            f"assert sys.path[-1] == {str(ref)!r}\n"       # put back as it was
            "print('counts', counts)\n")
    e = {**os.environ, "OMP_NUM_THREADS": "1", "TRAP_DIR": str(traps)}
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=e, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "counts (" in r.stdout
    assert sorted(p.name for p in traps.iterdir()) == []      # nothing but networks.py was imported


def test_a_checkout_without_networks_py_is_skipped_with_the_reason(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("gpu_check_for_test", SCRIPT)
    gc = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gc)
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "pix2pix_model.py").write_text("raise SystemExit('must not be imported')\n")
    with pytest.raises(gc.Skip, match="no models/networks.py"):
        gc.ref_checkout(str(tmp_path))


@pytest.mark.slow
def test_dry_run_measures_every_cpu_section(tmp_path: Path, ref_checkout: Path) -> None:
    out = tmp_path / "out"
    r = _run(out, "--sections", "env,cuda_tests,step,fid,confusion,compile", "--ref", str(ref_checkout))
    assert r.returncode == 0, r.stdout + r.stderr
    rep = json.loads((out / "gpu_check.json").read_text())
    s = rep["sections"]
    assert rep["dry"] and s["env"]["status"] == "ok" and s["env"]["torch"]
    # the CUDA tests are selected by their marker (skipped here: no CUDA), and at least the known ones exist
    assert s["cuda_tests"]["status"] == "ok" and "skipped" in s["cuda_tests"]["summary"]
    assert "tests/test_cuda_paths.py" in s["cuda_tests"]["files"]
    row = s["step"]["rows"][0]
    assert row["ours_ms"] > 0 and row["reference_ms"] > 0 and row["ratio_ref_over_ours"] > 0
    assert row["same_params"] is True            # the stand-in builds the same networks as ours
    assert s["fid"]["status"] == "ok" and s["fid"]["images_per_s"] > 0
    assert s["confusion"]["status"] == "ok" and s["confusion"]["gpx_per_s"] > 0
    assert s["compile"]["status"] == "skipped"   # GPU only
    md = (out / "gpu_check.md").read_text()
    assert "pix2pix training step" in md and "Gpx/s" in md


def test_without_a_reference_the_step_says_why(tmp_path: Path) -> None:
    out = tmp_path / "out"
    r = _run(out, "--sections", "step", env={"BENCH_PIX2PIX_REF": ""})
    assert r.returncode == 0, r.stdout + r.stderr
    step = json.loads((out / "gpu_check.json").read_text())["sections"]["step"]
    assert step["reference"] is None and "BENCH_PIX2PIX_REF" in step["reference_skipped"]
    assert step["rows"][0]["ours_ms"] > 0 and "reference_ms" not in step["rows"][0]


def test_a_spent_budget_skips_sections_with_the_reason(tmp_path: Path) -> None:
    out = tmp_path / "out"
    r = _run(out, "--sections", "step,confusion", "--budget", "0.001")
    assert r.returncode == 0, r.stdout + r.stderr
    rep = json.loads((out / "gpu_check.json").read_text())["sections"]
    assert rep["step"]["status"] == "skipped" and "budget" in rep["step"]["reason"]
    assert rep["confusion"]["status"] == "skipped"


def test_a_failing_section_is_recorded_and_the_rest_runs(tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    (broken / "models").mkdir(parents=True)
    (broken / "models" / "networks.py").write_text("raise ImportError('needs util.visualizer')\n")
    out = tmp_path / "out"
    r = _run(out, "--sections", "step,confusion", "--ref", str(broken))
    rep = json.loads((out / "gpu_check.json").read_text())["sections"]
    assert r.returncode == 1                     # a failed section fails the check
    assert rep["step"]["status"] == "error" and "needs util.visualizer" in rep["step"]["error"]
    assert rep["confusion"]["status"] == "ok"
    assert "Traceback" in (out / "gpu_check.log").read_text()


def test_the_short_section_runs_fusion_table2s_central_claim(tmp_path: Path, data_root) -> None:
    """Issue 23: a lent GPU ends its check on fusion-table2's short profile, the central claim's three rows (the
    dry run: their smoke profile on the CPU)."""
    out = tmp_path / "o"
    r = _run(out, "--sections", "short", "--budget", "600", env={"BENCH_DATA_ROOT": str(data_root)})
    assert r.returncode == 0, r.stderr[-2000:]
    short = json.loads((out / "gpu_check.json").read_text())["sections"]["short"]
    assert short["status"] == "ok", short
    assert short["command"].startswith("bench run fusion-table2 --profile smoke --seeds 1")
    assert {rec["row"] for rec in short["leaderboard"]} == {"4-Layer Concat", "4-Layer Concat + SN",
                                                              "4-Layer Fusion + SN"}
