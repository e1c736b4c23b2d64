"""The GPU check script (``.ci/gpu_check.py``) in its dry mode: the same code on the CPU at toy sizes."""

from __future__ import annotations

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


@pytest.fixture(scope="module")
def ref_checkout(tmp_path_factory) -> Path:
    """A stand-in 'reference checkout' with the reference's interface (the real one is never in the repo):
    Pix2PixModel(opt) with set_input / optimize_parameters over netG / netD built by our own U-Net and
    PatchGAN, so the script's import, option and timing paths run."""
    root = tmp_path_factory.mktemp("ref")
    (root / "models").mkdir()
    (root / "models" / "__init__.py").write_text("")
    (root / "models" / "pix2pix_model.py").write_text('''
import torch
from methods.generators.unet import UNetGenerator
from methods.discriminators.patchgan import PatchGAN

class Pix2PixModel:
    def __init__(self, opt):
        size = {"unet_256": 256, "unet_128": 128}[opt.netG]
        self.netG = UNetGenerator(opt.input_nc, opt.output_nc, image_size=size, ngf=opt.ngf)
        self.netD = PatchGAN(opt.input_nc, opt.output_nc, image_size=size, ndf=opt.ndf)
        self.criterionGAN = torch.nn.BCEWithLogitsLoss()
        self.opt_g = torch.optim.Adam(self.netG.parameters(), lr=opt.lr)
        self.opt_d = torch.optim.Adam(self.netD.parameters(), lr=opt.lr)
        self.device = torch.device("cpu")

    def set_input(self, d):
        self.a, self.b = d["A"].to(self.device), d["B"].to(self.device)

    def optimize_parameters(self):
        fake = self.netG(self.a)
        d = self.netD(self.a, fake.detach())
        self.opt_d.zero_grad(); self.criterionGAN(d, torch.zeros_like(d)).backward(); self.opt_d.step()
        self.opt_g.zero_grad(); (fake - self.b).abs().mean().backward(); self.opt_g.step()
''')
    return root


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
    (broken / "models" / "__init__.py").write_text("")
    (broken / "models" / "pix2pix_model.py").write_text("raise ImportError('needs util.visualizer')\n")
    out = tmp_path / "out"
    r = _run(out, "--sections", "step,confusion", "--ref", str(broken))
    rep = json.loads((out / "gpu_check.json").read_text())["sections"]
    assert r.returncode == 1                     # a failed section fails the check
    assert rep["step"]["status"] == "error" and "needs util.visualizer" in rep["step"]["error"]
    assert rep["confusion"]["status"] == "ok"
    assert "Traceback" in (out / "gpu_check.log").read_text()
