"""``--threads`` / ``BENCH_THREADS``: torch's CPU thread count, with a one-line error for a bad value."""

from __future__ import annotations

import pytest
import torch

from bench.cli import main


@pytest.fixture(autouse=True)
def _restore_threads():
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


def test_threads_option_sets_torch(tmp_path, capsys) -> None:
    main(["score", str(tmp_path / "absent"), "--threads", "1", "--no-progress"])    # fails later: no run there
    assert torch.get_num_threads() == 1


def test_env_setting_and_bad_values(tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("BENCH_THREADS", "1")
    main(["score", str(tmp_path / "absent"), "--no-progress"])
    assert torch.get_num_threads() == 1
    capsys.readouterr()
    for bad in (["--threads", "0"], ["--threads", "-2"]):
        assert main(["score", str(tmp_path / "absent"), *bad]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "--threads / BENCH_THREADS must be a positive integer" in err[0]
    monkeypatch.setenv("BENCH_THREADS", "many")
    assert main(["score", str(tmp_path / "absent")]) == 2
    assert "'many'" in capsys.readouterr().err
