"""CycleGAN's image history: fill, then swap half the time; deterministic from its seed and resume-exact."""

from __future__ import annotations

import io

import pytest
import torch

from methods.history import ImageHistory


def images(*values: float) -> torch.Tensor:
    """A batch of 1x1x1 "images", one per value, so each is recognisable by its value."""
    return torch.tensor(values).reshape(-1, 1, 1, 1)


def values(batch: torch.Tensor) -> list[float]:
    return batch.reshape(-1).tolist()


def test_size_zero_returns_the_input():
    x = images(1.0, 2.0)
    assert ImageHistory(0).query(x) is x


def test_the_first_size_images_come_back_unchanged():
    h = ImageHistory(5, seed=3)
    for batch in (images(1, 2), images(3, 4), images(5)):
        assert torch.equal(h.query(batch), batch)
    assert sorted(values(torch.stack(h.images))) == [1, 2, 3, 4, 5]


def test_a_full_history_returns_new_and_stored_images_about_half_each():
    size, batch, rounds = 10, 4, 500
    h = ImageHistory(size, seed=7)
    h.query(images(*(-1.0 - i for i in range(size))))            # stored: -1 .. -10
    new_seen, n = 0, 0
    for k in range(rounds):
        pool_before = values(torch.stack(h.images))
        x = images(*(k * batch + i for i in range(batch)))       # new, distinct values
        out = h.query(x)
        pool_after = values(torch.stack(h.images))
        # nothing is made up or lost: what was stored and given equals what is stored and returned
        assert sorted(pool_before + values(x)) == sorted(pool_after + values(out))
        new_seen += sum(a == b for a, b in zip(values(out), values(x)))
        n += batch
    # 2000 draws of p = 1/2: std 0.011, so [0.45, 0.55] is 4.5 std wide on each side
    assert 0.45 < new_seen / n < 0.55


def test_outputs_are_detached_and_the_global_generator_untouched():
    h = ImageHistory(2, seed=0)
    x = torch.randn(6, 3, 4, 4, requires_grad=True)
    torch.manual_seed(11)
    expected = torch.rand(3)
    torch.manual_seed(11)
    out = h.query(x)
    assert not out.requires_grad and out.shape == x.shape
    assert torch.equal(torch.rand(3), expected)


def test_the_same_seed_gives_the_same_outputs():
    a, b, c = ImageHistory(4, seed=5), ImageHistory(4, seed=5), ImageHistory(4, seed=6)
    outs = {id(h): [] for h in (a, b, c)}
    for k in range(30):
        x = images(*(3.0 * k + i for i in range(3)))
        for h in (a, b, c):
            outs[id(h)].append(values(h.query(x)))
    assert outs[id(a)] == outs[id(b)] and outs[id(a)] != outs[id(c)]


def test_state_dict_round_trip_resumes_exactly():
    a = ImageHistory(6, seed=1)
    for k in range(10):
        a.query(images(*(4.0 * k + i for i in range(4))))
    buf = io.BytesIO()
    torch.save(a.state_dict(), buf)                              # checkpoints load with weights_only=True
    buf.seek(0)
    b = ImageHistory(6, seed=999)
    b.load_state_dict(torch.load(buf, weights_only=True))
    for k in range(10, 40):
        x = images(*(4.0 * k + i for i in range(4)))
        assert values(a.query(x)) == values(b.query(x))
    assert values(torch.stack(a.images)) == values(torch.stack(b.images))


def test_a_state_of_another_size_is_refused():
    a = ImageHistory(3)
    a.query(images(1, 2, 3))
    with pytest.raises(ValueError, match="build it with size=3"):
        ImageHistory(5).load_state_dict(a.state_dict())
    with pytest.raises(ValueError, match="size >= 0"):
        ImageHistory(-1)
