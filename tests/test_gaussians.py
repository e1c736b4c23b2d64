"""The NRDS toy sets: the paper's parameters (papers.md section C), determinism, dataset contract."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats

from bench.data.gaussians import INFO, make_dataset, toy_sets
from bench.errors import ConfigError
from bench.registry import DATASETS

# The paper's toy example: real ~ N(0, I), fake-close mean [0.5, 0], fake-far mean [1.5, 0], identity cov.
PAPER_MEANS = {"real": [0.0, 0.0], "fake_close": [0.5, 0.0], "fake_far": [1.5, 0.0]}


def test_shapes_and_dtypes():
    sets = toy_sets(17, seed=1)
    assert set(sets) == {"real", "fake_close", "fake_far"}
    for v in sets.values():
        assert v.shape == (17, 2) and v.dtype == torch.float32


def test_large_sample_moments_match_the_paper():
    n = 200_000                                    # standard error of a mean: 1/sqrt(n) ~ 0.0022
    for name, x in toy_sets(n, seed=0).items():
        x = x.double().numpy()
        np.testing.assert_allclose(x.mean(0), PAPER_MEANS[name], atol=0.012)
        np.testing.assert_allclose(np.cov(x, rowvar=False), np.eye(2), atol=0.015)


def test_each_coordinate_is_normal_with_unit_variance():
    for name, x in toy_sets(5000, seed=2).items():
        for d in range(2):
            p = stats.kstest(x[:, d].numpy(), stats.norm(loc=PAPER_MEANS[name][d], scale=1.0).cdf).pvalue
            assert p > 1e-3, (name, d, p)


def test_sets_are_independent_draws():
    sets = toy_sets(20_000, seed=0)
    real, close, far = sets["real"], sets["fake_close"] - torch.tensor([0.5, 0.0]), sets["fake_far"]
    assert abs(np.corrcoef(real[:, 0], close[:, 0])[0, 1]) < 0.03
    assert abs(np.corrcoef(real[:, 0], far[:, 0])[0, 1]) < 0.03


def test_deterministic_by_seed():
    a, b, c = toy_sets(100, seed=5), toy_sets(100, seed=5), toy_sets(100, seed=6)
    for k in a:
        assert torch.equal(a[k], b[k])
        assert not torch.equal(a[k], c[k])
    with pytest.raises(ConfigError):
        toy_sets(0)


def test_dataset_contract_and_registration():
    assert DATASETS.get("gaussians-2d") is make_dataset
    assert INFO.tasks == ("points",) and INFO.name == "gaussians-2d"
    ds = make_dataset("train", 64, points=50)
    assert len(ds) == 150
    s = ds[4]
    assert set(s) == {"points", "source"}
    assert s["points"].shape == (2,) and s["points"].dtype == torch.float32
    assert s["source"].dtype == torch.int64 and s["source"].shape == ()
    assert [int(ds[i]["source"]) for i in range(6)] == [0, 1, 2, 0, 1, 2]
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=150)))
    for k, name in enumerate(INFO.class_names):
        pts = batch["points"][batch["source"] == k]
        assert len(pts) == 50
        assert torch.equal(pts, toy_sets(50, seed=0)[name])


def test_dataset_subset_splits_and_errors():
    full, sub = make_dataset("train", 0), make_dataset("train", 0, subset=7)
    assert len(full) == 3000 and len(sub) == 7
    assert torch.equal(sub[6]["points"], full[6]["points"])
    with pytest.raises(IndexError):
        sub[7]
    test = make_dataset("test", 0)
    assert not torch.equal(test[0]["points"], full[0]["points"])
    assert torch.equal(make_dataset("test", 0, seed=0)[3]["points"], test[3]["points"])
    with pytest.raises(ConfigError):
        make_dataset("val", 0)
    with pytest.raises(ConfigError):
        make_dataset("train", 0, dims=3)
