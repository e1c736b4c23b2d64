"""cGAN bench: train conditional GANs, score checkpoints, compare with published tables."""

__version__ = "0.1.0"

import os as _os

# Before torch loads OpenMP: an idle OpenMP thread spins 1000 rounds, then sleeps, unless
# the user chose (OMP_WAIT_POLICY or GOMP_SPINCOUNT). On 2 cores, 2 threads, ms per 64x64 pix2pix step / s per 200
# MNIST-sized D steps: unloaded 75 / 1.94 (PASSIVE 82 / 2.30, spinning 47 / 1.69), beside a 2-thread job 96 / 3.38
# (PASSIVE 86 / 3.25, spinning 145 / 7.64): nearly PASSIVE's robustness on a shared box, less of its cost alone
# (tests/benchmarks/test_bench_threads.py). No effect where torch was imported before the bench.
if "OMP_WAIT_POLICY" not in _os.environ and "GOMP_SPINCOUNT" not in _os.environ:
    _os.environ["GOMP_SPINCOUNT"] = "1000"

# First, before any training or scoring in this process: the worker start method compares the native threads
# with the count taken now (bench.jobs.start_method: never fork after an OpenMP pool started). No torch import.
from bench import native as _native  # noqa: E402,F401
