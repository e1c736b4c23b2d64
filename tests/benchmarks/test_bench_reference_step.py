"""One pix2pix training step, ours against the reference implementation's, at equal work.

The reference is pytorch-CycleGAN-and-pix2pix's ``Pix2PixModel.optimize_parameters`` (U-Net 256 + 70x70
PatchGAN, batch norm, Adam, vanilla GAN + 100 L1) from the checkout named by ``BENCH_PIX2PIX_REF`` (never
copied into this repository; skipped when the setting is absent). Only the checkout's ``models/networks.py``
is loaded, by its file path: the step is rebuilt from its classes (``gpu_check.build_ref``), and the
``models`` package, ``models/pix2pix_model.py`` and ``util/`` are never imported (they run code on import; a
stored copy's ``util/__init__.py`` was malicious). Both are built and timed by the GPU check's own functions
(``.ci/gpu_check.py``): same parameter counts, interleaved rounds, median.
``pytest tests/benchmarks/test_bench_reference_step.py --benchmark-enable -s`` prints the ratio.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]


def _gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", REPO / ".ci" / "gpu_check.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def gc():
    mod = _gpu_check()
    try:
        mod.ref_checkout(None)
    except mod.Skip as e:
        pytest.skip(str(e))
    return mod


@pytest.mark.parametrize("size,batch", [(256, 1)])
def test_step_ours_vs_reference_cpu(benchmark, gc, size, batch) -> None:
    dev = torch.device("cpu")
    ref = gc.ref_checkout(None)
    ours, n_ours = gc.build_ours(dev, size, batch, amp=False, cl=False)
    theirs, n_ref = gc.build_ref(ref, dev, size, batch, amp=False, cl=False)
    assert n_ours == n_ref, f"parameter counts differ: ours {n_ours}, reference {n_ref}"
    rounds = int(os.environ.get("BENCH_STEP_ROUNDS", "5"))
    res = gc.time_pair(dev, {"ours": ours, "reference": theirs}, rounds=rounds, steps=1, warmup=1)
    ratio = res["reference"]["median_ms"] / res["ours"]["median_ms"]
    print(f"\npix2pix step {size}px b{batch} on CPU ({torch.get_num_threads()} threads): ours "
          f"{res['ours']['median_ms']:.0f} ms, reference {res['reference']['median_ms']:.0f} ms, "
          f"reference / ours = {ratio:.3f} (median of {rounds} interleaved rounds)")
    benchmark.extra_info.update(ratio_ref_over_ours=ratio, **{f"{k}_ms": v["median_ms"] for k, v in res.items()})
    benchmark.pedantic(ours, rounds=1, iterations=1)
