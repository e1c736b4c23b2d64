"""The dependency direction of the architecture: import-linter contracts in pyproject.toml.

The harness (``bench/``) imports nothing from ``methods/`` or ``metrics/``; only the command line
reaches the leaderboard builder; methods and metrics are independent; no package has an import
cycle. Built-ins load through the registry by module name, like outside plug-ins.
"""

from __future__ import annotations

import os
import sys

import pytest

from suite_helpers import REPO


def test_import_linter_contracts_hold(monkeypatch, capsys):
    lint = pytest.importorskip("importlinter.cli")
    monkeypatch.chdir(REPO)
    monkeypatch.syspath_prepend(str(REPO))
    rc = lint.lint_imports(config_filename=str(REPO / "pyproject.toml"), no_cache=True)
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "4 kept, 0 broken" in out


def test_bench_modules_load_without_plugin_packages():
    """Importing the harness alone pulls in no module of methods/ or metrics/."""
    import subprocess
    code = ("import sys, importlib, pkgutil, bench\n"
            "for m in pkgutil.walk_packages(bench.__path__, 'bench.'):\n"
            "    importlib.import_module(m.name)\n"
            "bad = sorted(n for n in sys.modules if n.split('.')[0] in ('methods', 'metrics'))\n"
            "print(bad)\n")
    env = dict(os.environ, PYTHONPATH=str(REPO))
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=REPO)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"
