"""Kill `bench run --deterministic` at random moments, resume it, and compare leaderboard.csv bytes.

The benchmark-style twin of tests/test_faults.py (which kills at each named failpoint): here the kill
comes from outside, with SIGKILL, at a moment drawn uniformly over the length of an uninterrupted run.

    python tests/fault_injection.py --kills 10 [--seed 0]

Prints one line per kill and the count of byte-identical leaderboards; exits 1 if any differs.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from suite_helpers import REPO, quickstart_variant  # noqa: E402

RUN = ("--profile", "tiny", "--deterministic", "--no-progress", "--device", "cpu")


def _cmd(suite: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "bench.cli", "run", str(suite), *RUN, "--out", str(out), *extra]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kills", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    rng = random.Random(args.seed)
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "2"))
    env.setdefault("BENCH_DATA_ROOT", str(REPO.parent / "shared" / "data"))
    tmp = Path(tempfile.mkdtemp(prefix="bench-faults-"))
    suite = quickstart_variant(
        tmp, suite={"name": "faults", "tasks": ["photo2depth", "photo2labels"]},
        metrics={"photo2depth": ["depth"], "photo2labels": ["segmentation"]},
        columns={"photo2depth": ["rel", "rms"], "photo2labels": ["pixel_acc", "mean_iou"]},
        rows=[{"name": "4-Layer Concat + SN", "discriminator": "patchgan-sn"},
              {"name": "4-Layer Fusion + SN", "discriminator": "fusion4-sn"}])
    t0 = time.perf_counter()
    subprocess.run(_cmd(suite, tmp / "reference"), env=env, cwd=REPO, check=True, capture_output=True)
    length = time.perf_counter() - t0
    reference = (tmp / "reference" / "leaderboard.csv").read_bytes()
    print(f"uninterrupted run: {length:.1f} s")
    same = 0
    for k in range(args.kills):
        out = tmp / f"kill{k}"
        delay = rng.uniform(1.0, 0.85 * length)       # past start-up, before the end
        p = subprocess.Popen(_cmd(suite, out), env=env, cwd=REPO, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
        try:
            p.wait(timeout=delay)
            killed = False
        except subprocess.TimeoutExpired:
            p.send_signal(signal.SIGKILL)
            p.wait()
            killed = True
        r = subprocess.run(_cmd(suite, out, "--resume"), env=env, cwd=REPO, capture_output=True, text=True)
        ok = r.returncode == 0 and (out / "leaderboard.csv").read_bytes() == reference
        same += ok
        print(f"kill {k + 1}: SIGKILL at {delay:5.1f} s ({'killed' if killed else 'had finished'}), resume "
              f"exit {r.returncode}: {'identical' if ok else 'DIFFERENT ' + r.stderr[-200:]}")
    print(f"{same} of {args.kills} resumed leaderboards byte-identical to the uninterrupted one")
    return 0 if same == args.kills else 1


if __name__ == "__main__":
    sys.exit(main())
