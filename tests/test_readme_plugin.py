"""An outside plug-in written from the README alone: its module and suite, taken verbatim from the
README's examples, run as rows beside a built-in one; the run remembers the plug-in for scoring."""

from __future__ import annotations

import re

import pandas as pd
import pytest

from suite_helpers import REPO, bench, assert_scored


def readme_block(name: str) -> str:
    text = (REPO / "README.md").read_text()
    m = re.search(rf"<!-- plugin-example:{re.escape(name)} -->\s*```\w*\n(.*?)```", text, re.S)
    assert m, f"README.md has no example block for {name}"
    return m.group(1)


@pytest.mark.slow
def test_the_readme_plugin_runs_as_rows_of_a_custom_suite(tmp_path):
    (tmp_path / "my_plugin.py").write_text(readme_block("my_plugin.py"))
    (tmp_path / "my_suite.toml").write_text(readme_block("my_suite.toml"))
    out = tmp_path / "runs" / "mine"
    env = {"PYTHONPATH": str(tmp_path)}
    bench("--plugin", "my_plugin", "run", "my_suite.toml", "--out", str(out), "--no-progress", "--device", "cpu",
          cwd=tmp_path, env=env, check=True)
    board = pd.read_csv(out / "leaderboard.csv").set_index(["row", "metric"])
    assert_scored(board.reset_index())
    for row in ("PatchGAN (pix2pix)", "Tiny concat + softplus hinge"):
        assert 0 <= board.loc[(row, "colour_shift"), "mean"] < 1          # the plug-in metric
        assert board.loc[(row, "l1"), "mean"] > 0                         # a built-in metric beside it
    scalars = (out / "runs" / "tiny-concat-softplus-hinge" / "seed0" / "labels2photo" / "scalars.csv").read_text()
    assert "loss_D" in scalars.splitlines()[0]
    run_json = next((out / "runs" / "tiny-concat-softplus-hinge").rglob("run.json")).read_text()
    assert '"loss": "softplus-hinge"' in run_json and '"name": "tiny-concat"' in run_json
    # scored again later: the run recorded its plug-in, but a run folder's word imports nothing (a received
    # checkpoint could name a module shipped beside it); the user names it, or is told to in one line
    run = str(out / "runs" / "tiny-concat-softplus-hinge" / "seed0" / "labels2photo")
    with open(tmp_path / "my_plugin.py", "a") as f:      # it now leaves a mark when imported
        f.write("\nimport pathlib; pathlib.Path('IMPORTED').write_text('ran')\n")
    r = bench("score", run, "--no-progress", cwd=tmp_path, env=env)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1
    assert "my_plugin" in r.stderr and "--plugin my_plugin" in r.stderr
    assert not (tmp_path / "IMPORTED").exists()
    r = bench("--plugin", "my_plugin", "score", run, "--no-progress", cwd=tmp_path, env=env, check=True)
    assert "labels2photo/colour_shift" in r.stdout and (tmp_path / "IMPORTED").exists()

