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


def _cache_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    return os.environ.get("BENCH_TEST_CACHE") or str(tmp_path_factory.getbasetemp() / "bench-cache")


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep derived artefacts (unpacked data, trained scorers) out of the user's home during tests."""
    monkeypatch.setenv("BENCH_CACHE_DIR", _cache_dir(tmp_path_factory))
    monkeypatch.setenv("BENCH_DATA_ROOT", str(_data_root()))


#: what the ``quickstart_tiny`` fixture runs (``bench`` + these + ``--out DIR``): the README's regression recipe
#: (tests/test_regress.py checks that its first line is this) with output-only flags
QUICKSTART_TINY_RUN = ("run", "quickstart", "--profile", "tiny", "--deterministic", "--no-progress", "--device", "cpu")


@pytest.fixture(scope="session")
def quickstart_tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One clean ``bench run quickstart --profile tiny --deterministic`` on the CPU (~20 s), run once per session
    and shared by the tests that read it (the golden numbers, the regression recipe). Read it; never write to it."""
    from suite_helpers import bench
    out = tmp_path_factory.mktemp("quickstart-tiny") / "q"
    # a session fixture starts before the autouse fixtures above: the same cache and data, by hand
    env = {"BENCH_CACHE_DIR": _cache_dir(tmp_path_factory), "BENCH_DATA_ROOT": str(_data_root())}
    bench(*QUICKSTART_TINY_RUN, "--out", str(out), env=env, check=True)
    return out


@pytest.fixture(autouse=True)
def _few_threads() -> None:
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS") or min(2, os.cpu_count() or 1)))


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--run-manual", action="store_true", default=False,
                     help="also run tests marked manual (a whole default profile: tens of minutes on a CPU)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """``manual`` tests run only when asked; ``slow`` ones (whole-suite runs) are in the full suite and left out
    of the fast tier by ``-m "not slow"``."""
    if config.getoption("--run-manual") or os.environ.get("BENCH_RUN_MANUAL") == "1":
        return
    skip = pytest.mark.skip(reason="manual: run with --run-manual (or BENCH_RUN_MANUAL=1)")
    for item in items:
        if "manual" in item.keywords:
            item.add_marker(skip)
