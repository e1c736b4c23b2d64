"""How long ``bench --help`` takes, a new user's first command (issue 27: under 1 s where torch is cached on
disk), and ``bench list discriminators``. --help imports no torch (tests/test_cli.py checks that); before,
``bench/__init__`` imported ``bench.jobs`` and with it torch, 2.3 s on the 2-core machine, against 0.28 s
after. Timed with
``pytest tests/benchmarks/test_bench_cli_start.py --benchmark-enable``; once as a test otherwise.
"""

from __future__ import annotations

import subprocess
import sys


def test_bench_help_start(benchmark):
    def run() -> None:
        r = subprocess.run([sys.executable, "-m", "bench.cli", "--help"], capture_output=True, text=True, timeout=60)
        assert r.returncode == 0 and "usage: bench" in r.stdout
    benchmark.pedantic(run, rounds=5, iterations=1, warmup_rounds=1)


def test_bench_list_discriminators(benchmark):
    """Counting every discriminator's parameters: built on the meta device with spectral norm's power
    iterations skipped (4.6 s -> 2.9 s on the 2-core machine, most of it importing torch and the plug-ins; the
    counts are checked against real modules in tests/test_cli.py)."""
    def run() -> None:
        r = subprocess.run([sys.executable, "-m", "bench.cli", "list", "discriminators"], capture_output=True,
                           text=True, timeout=120)
        assert r.returncode == 0 and "M params" in r.stdout
    benchmark.pedantic(run, rounds=3, iterations=1, warmup_rounds=0)
