"""Shared fixtures: where the shared test data lives, and a per-test cache folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]


def _data_root() -> Path:
    v = os.environ.get("BENCH_DATA_ROOT")
    return Path(v) if v else REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def data_root() -> Path:
    """The shared real data (``../shared/data`` or ``$BENCH_DATA_ROOT``); skips when absent."""
    root = _data_root()
    if not root.is_dir():
        pytest.skip(f"shared data not found at {root}; set BENCH_DATA_ROOT")
    return root


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep derived artefacts (unpacked data, trained scorers) out of the user's home during tests."""
    cache = os.environ.get("BENCH_TEST_CACHE") or str(tmp_path_factory.getbasetemp() / "bench-cache")
    monkeypatch.setenv("BENCH_CACHE_DIR", cache)
    monkeypatch.setenv("BENCH_DATA_ROOT", str(_data_root()))


@pytest.fixture(autouse=True)
def _few_threads() -> None:
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS") or min(2, os.cpu_count() or 1)))


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--run-slow", action="store_true", default=False,
                     help="also run tests marked slow (whole suite profiles: minutes on a CPU)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--run-slow") or os.environ.get("BENCH_RUN_SLOW") == "1":
        return
    skip = pytest.mark.skip(reason="slow: run with --run-slow (or BENCH_RUN_SLOW=1)")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)
