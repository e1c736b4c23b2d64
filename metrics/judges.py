"""Training the bench's learned judges so that their weights do not depend on the machine's threads.

A judge is a network the bench trains itself and then scores with: the MNIST feature classifier
(FID, per-class FID, class accuracy), the smp scoring segmenter, the NRDS classifier. On the CPU a
different intra-op thread count splits reductions differently, so ``--threads`` / ``--jobs`` / the core
count used to change the trained weights (and every number the judge gives). :func:`judge_training`
trains with one intra-op thread, ``torch.use_deterministic_algorithms(True)`` and a forked RNG seeded
with the judge's seed, and restores the caller's settings afterwards; :func:`training_protocol` is the
line that states it in the judge's protocol.

On a CUDA device (only the NRDS classifier trains there, when scoring runs there) the thread count does
not matter; the context adds deterministic cuDNN / cuBLAS settings, and the protocol line names the device
kind, so a judge trained on a GPU never shares a protocol hash with one trained on the CPU.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import torch

THREADS = 1


def training_protocol(seed: int | str, device: torch.device | str = "cpu") -> str:
    """The protocol line of a judge trained under :func:`judge_training` (``seed``: the number, or words
    such as "the run seed" where the seed is recorded elsewhere)."""
    kind = torch.device(device).type
    if kind == "cpu":
        return f"trained on the CPU with {THREADS} thread, deterministic algorithms, seed {seed}"
    return f"trained on {kind} with deterministic algorithms, seed {seed}"


@contextmanager
def judge_training(seed: int, device: torch.device | str = "cpu") -> Iterator[None]:
    """Train a judge inside: 1 intra-op thread, deterministic algorithms, the RNG forked and seeded.

    The caller's thread count, deterministic-algorithms flag (and warn-only mode), cuDNN flags and random
    state are restored on exit, also when training raises.
    """
    dev = torch.device(device)
    threads = torch.get_num_threads()
    det = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    cudnn = (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    cuda = [dev] if dev.type == "cuda" else []
    if cuda:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")   # cuBLAS refuses determinism without it
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    torch.set_num_threads(THREADS)
    torch.use_deterministic_algorithms(True)
    try:
        with torch.random.fork_rng(devices=cuda):
            torch.manual_seed(seed)
            yield
    finally:
        torch.use_deterministic_algorithms(det, warn_only=warn_only)
        torch.set_num_threads(threads)
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = cudnn
