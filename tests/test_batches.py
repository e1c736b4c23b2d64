"""Training batches are a pure function of (seed, iteration): what makes resume exact."""

from __future__ import annotations

import torch

from bench.batches import IterationBatchSampler, jitter
from bench.scalars import ScalarLog


def test_batches_from_any_start_match_an_uninterrupted_stream():
    full = list(IterationBatchSampler(50, 8, seed=3, start=0, stop=20))
    tail = list(IterationBatchSampler(50, 8, seed=3, start=13, stop=20))
    assert full[13:] == tail


def test_each_epoch_is_a_permutation_without_repeats():
    s = IterationBatchSampler(48, 8, seed=0, start=0, stop=12)
    batches = list(s)
    for e in range(2):
        idx = [i for b in batches[e * 6:(e + 1) * 6] for i in b]
        assert sorted(idx) == list(range(48))
    assert batches[:6] != batches[6:]                    # epochs reshuffle
    assert list(IterationBatchSampler(48, 8, seed=1, start=0, stop=6)) != batches[:6]


def test_jitter_crops_all_keys_alike_and_is_seeded():
    n, size = 3, 8
    base = torch.arange(n * 10 * 10, dtype=torch.float32).reshape(n, 1, 10, 10)
    batch = {"photo": base.expand(n, 3, 10, 10).clone(), "depth": base.clone(),
             "label": base[:, 0].long(), "index": torch.arange(n)}
    a = jitter(batch, size, seed=0, it=5)
    b = jitter(batch, size, seed=0, it=5)
    c = jitter(batch, size, seed=0, it=6)
    assert a["photo"].shape == (n, 3, size, size) and a["label"].shape == (n, size, size)
    assert torch.equal(a["photo"][:, 0], a["depth"][:, 0]) and torch.equal(a["label"].float(), a["depth"][:, 0])
    assert torch.equal(a["photo"], b["photo"]) and not torch.equal(a["photo"], c["photo"])
    assert torch.equal(a["index"], batch["index"])


def test_scalar_log_drops_rows_after_the_resume_step(tmp_path):
    log = ScalarLog(tmp_path, tensorboard=False)
    for s in (10, 20, 30):
        log.write(s, {"loss_D": float(s)})
    log.close()
    log = ScalarLog(tmp_path, resume_step=20, tensorboard=False)
    log.write(30, {"loss_D": 3.0})
    log.close()
    lines = (tmp_path / "scalars.csv").read_text().splitlines()
    assert lines == ["step,loss_D", "10,10.0", "20,20.0", "30,3.0"]


def test_worker_count_is_capped_at_the_cores(monkeypatch) -> None:
    import os

    from bench.batches import usable_workers
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    assert [usable_workers(n) for n in (0, 1, 2, 8)] == [0, 1, 2, 2]
