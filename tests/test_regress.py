"""Regression checks and history: baselines of per-seed values, `bench regress` in exact and statistical mode
(against scipy's Welch test), a baseline that is not one is a one-line error, `bench history` draws one point per
code version over a series of run folders; and the README's recipe catches a planted change of D's init."""

from __future__ import annotations

import os
import re
import shlex
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from bench.cli import main
from bench.errors import ConfigError
from bench.results import ResultRecord, ResultStore
from leaderboards.regress import BASELINE_COLUMNS, compare, parse_tolerances, read_baseline, tolerance_for

COL = "photo2depth/rel"


def _frame(cells: dict[tuple[str, str], list[float]], status: str = "ok", proto: str = "h1",
           suite: str = "quickstart") -> pd.DataFrame:
    """A baseline frame: (row, column) -> per-seed values (seeds 0..n-1)."""
    return pd.DataFrame([{"suite": suite, "profile": "tiny", "row": r, "column": c, "seed": s, "value": v,
                          "status": status, "protocol_hash": proto, "code_version": "0.1.0+abc", "environment": ""}
                         for (r, c), vals in cells.items() for s, v in enumerate(vals)], columns=BASELINE_COLUMNS)


def test_exact_mode_names_the_first_values_that_differ():
    base = _frame({("A", COL): [0.30, 0.31, 0.32], ("B", COL): [0.5, 0.5, 0.5]})
    same = compare(base, base.copy(), "exact")
    assert not same.failed and same.unchanged == 6 and "ok (exact): 0 value(s) moved" in same.report()
    new = base.copy()
    new.loc[(new["row"] == "A") & (new["seed"] == 1), "value"] = 0.31 + 1e-12        # the last digits move
    new.loc[(new["row"] == "B") & (new["seed"] == 2), "value"] = 0.6
    res = compare(base, new, "exact")
    assert res.failed and res.unchanged == 4
    assert res.moved == [f"A / {COL} seed 1: 0.31 -> {0.31 + 1e-12!r} (+1e-12)", f"B / {COL} seed 2: 0.5 -> 0.6 (+0.1)"]
    assert "MOVED     A / photo2depth/rel seed 1: 0.31 -> " in res.report()
    assert "REGRESSION (exact): 2 value(s) moved" in res.report()
    # an allowance only where asked: on the command line, or the suite's [tolerances] when passed
    assert not compare(base, new, "exact", cli_tol={"rel": 0.2}).failed
    assert compare(base, new, "exact", cli_tol={"rel": 0.05}).moved == [f"B / {COL} seed 2: 0.5 -> 0.6 (+0.1, "
                                                                        "tolerance 0.05)"]
    assert tolerance_for(COL, {"rel": 0.1}, {}) == 0.1 and tolerance_for(COL, {"rel": 0.1}, {COL: 0.2}) == 0.2
    assert parse_tolerances(["rel=0.5", "photo2depth/rms=1"]) == {"rel": 0.5, "photo2depth/rms": 1.0}
    with pytest.raises(ConfigError, match="METRIC=VALUE"):
        parse_tolerances(["rel"])


def test_protocol_changes_lost_values_and_status_changes_are_regressions():
    base = _frame({("A", COL): [0.3, 0.31], ("B", COL): [0.4, 0.41], ("C", COL): [0.5, 0.51]})
    new = _frame({("A", COL): [0.3, 0.31], ("C", COL): [0.5]})
    new.loc[new["row"] == "A", "protocol_hash"] = "h2"
    new = pd.concat([new, _frame({("D", COL): [0.1, 0.2]})])
    res = compare(base, new, "exact")
    assert res.protocol_changed == {(COL, "h1", "h2"): ["A"]} and "not compared" in res.report()
    assert res.lost == [f"B / {COL}: 2 value(s), now missing", f"C / {COL}: seed(s) 1 gone"]
    assert res.new == [f"D / {COL}: ok"] and res.unchanged == 1 and not res.moved
    became = compare(base, _frame({("A", COL): [0.3, 0.31], ("B", COL): [0.4, 0.41], ("C", COL): [0.5, 0.51]},
                                  status="degenerate"), "exact")
    assert became.failed and len(became.status_changed) == 3 and "now degenerate" in became.status_changed[0]


def test_statistical_mode_flags_a_shift_beyond_seed_noise_as_scipys_two_sided_welch_test_does():
    rng = np.random.default_rng(0)
    sd, n = 0.01, 5
    base = _frame({("A", COL): list(rng.normal(0.30, sd, n))})
    for shift, expect in ((0.0, None), (5 * sd, True)):
        for _ in range(20):
            draw = rng.normal(0.30 + shift, sd, n)
            p = sps.ttest_ind(draw, base["value"], equal_var=False).pvalue             # two-sided
            res = compare(base, _frame({("A", COL): list(draw)}), "statistical", {COL: False})
            assert res.failed == (p < 0.05)                                            # the same decision
            if expect:
                assert res.failed and f"two-sided Welch p = {p:.2g} < 0.05" in res.moved[0]
                assert "worse" in res.moved[0]                                        # rel went up: worse
    same = compare(base, _frame({("A", COL): list(rng.normal(0.30, sd, n))}), "statistical", {COL: False})
    assert not same.failed and same.unchanged == 1 and "1 not separated from the baseline" in same.report()
    with pytest.raises(ConfigError, match="holds 1 seed"):
        compare(_frame({("A", COL): [0.3]}), _frame({("A", COL): [0.3]}), "statistical")


@pytest.mark.parametrize("content, message", [
    ("", "is empty"),
    (",".join(BASELINE_COLUMNS) + "\n", "holds no values"),
    ("row,column,mean,n,status,protocol_hash,profile,code_version\nA,t/rel,0.3,1,ok,h,tiny,v\n", "lacks column"),
    (",".join(BASELINE_COLUMNS) + "\nquickstart,tiny,A,t/rel,0,abc,ok,h,v,\n", "malformed"),
    (",".join(BASELINE_COLUMNS) + "\nnrds-toy,tiny,A,t/rel,0,0.3,ok,h,v,\n", "of suite(s) nrds-toy"),
])
def test_a_baseline_that_is_not_one_exits_2_in_one_line(tmp_path, capsys, content, message):
    path = tmp_path / "base.csv"
    path.write_text(content)
    assert main(["regress", "quickstart", "--baseline", str(path), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1 and "bench baseline" in err


def test_baseline_holds_every_seed_exactly_through_the_cli(tmp_path, capsys):
    from suite_helpers import bench
    out, base = tmp_path / "nrds", tmp_path / "base.csv"
    # the one command that (re)writes a baseline: run, then write it
    bench("baseline", "nrds-toy", "--run", "--seeds", "2", "--deterministic", "--out", str(out), "--file", str(base),
          "--no-progress", "--device", "cpu", check=True)
    held = read_baseline(base, "nrds-toy")
    stored = ResultStore(out / "results.sqlite").latest(status="ok")
    stored = stored[stored["metric"].isin(["nrds", "area"])]
    assert len(held) == len(stored) == 8 and set(held["seed"]) == {0, 1}
    assert sorted(held["value"]) == sorted(stored["value"])                      # bit-exact through the CSV
    assert held["environment"].str.startswith("torch ").all()

    def regress(*extra: str) -> tuple[int, str]:
        rc = main(["regress", "nrds-toy", "--baseline", str(base), "--out", str(out), *extra])
        return rc, capsys.readouterr().out

    rc, text = regress()
    assert rc == 0 and "ok (exact): 0 value(s) moved" in text
    rc, text = regress("--mode", "statistical")
    assert rc == 0 and "ok (statistical): 0 cell(s) moved" in text and "4 not separated" in text
    planted = pd.read_csv(base)
    planted.loc[(planted["column"] == "points/nrds") & (planted["seed"] == 1), "value"] += 0.01
    planted.to_csv(base, index=False)
    rc, text = regress()
    assert rc == 1 and re.search(r"MOVED .* / points/nrds seed 1: ", text) and "REGRESSION" in text
    planted["protocol_hash"] = "0000000000000000"
    planted.to_csv(base, index=False)
    rc, text = regress()
    assert rc == 1 and "PROTOCOL" in text and "not compared" in text and "MOVED" not in text


def _nightly(folder: Path, version: str, day: int, values: dict[str, list[float]]) -> None:
    store = ResultStore(folder / "results.sqlite")
    store.append([ResultRecord("quickstart", row, "photo2depth", seed, "tiny", "rel", v, "", "h1", version,
                               time=f"2026-03-{day:02d}T03:00:{seed:02d}+00:00")
                  for row, vals in values.items() for seed, v in enumerate(vals)])


def test_history_draws_one_point_per_code_version_over_a_series_of_run_folders(tmp_path, capsys):
    runs = tmp_path / "runs"
    old, new = {"A": [0.30, 0.32, 0.31], "B": [0.50, 0.52, 0.54]}, {"A": [0.20, 0.21, 0.25], "B": [0.40, 0.44, 0.42]}
    rows = {"A": "4-Layer Concat", "B": "Projection + SN"}
    # folder names sort against time: the x axis follows the versions' first records, not the names
    _nightly(runs / "nightly-b", "0.1.0+aaaaaaaaaaaa", 1, {rows[k]: v for k, v in old.items()})
    _nightly(runs / "nightly-a", "0.1.0+bbbbbbbbbbbb", 2, {rows[k]: v for k, v in new.items()})
    _nightly(runs / "nightly-c", "0.1.0+bbbbbbbbbbbb", 3, {rows[k]: v for k, v in new.items()})   # same commit again
    assert main(["history", "quickstart", "--metric", "photo2depth/rel", "--runs", str(runs / "nightly-*")]) == 0
    printed = capsys.readouterr().out
    assert (runs / "history-quickstart-photo2depth_rel.png").is_file()
    from bench.config import load_suite
    from leaderboards.history import history_frame, run_folders
    frame = history_frame(run_folders([str(runs)]), load_suite(Path("leaderboards/quickstart.toml")),
                          "photo2depth/rel")
    assert list(frame["version"]) == ["aaaaaaaaaaaa"] * 2 + ["bbbbbbbbbbbb"] * 2     # two points per row
    for (row, version), vals in {("A", "aaaaaaaaaaaa"): old["A"], ("B", "bbbbbbbbbbbb"): new["B"]}.items():
        p = frame[(frame["row"] == rows[row]) & (frame["version"] == version)].iloc[0]
        lo, hi = sps.t.interval(0.95, len(vals) - 1, loc=np.mean(vals), scale=sps.sem(vals))
        assert p["n"] == 3 and p["mean"] == pytest.approx(np.mean(vals))    # a night at the same commit: once
        assert (p["ci_low"], p["ci_high"]) == pytest.approx((lo, hi)) and p["interval"] == "t95"
    assert printed.count("aaaaaaaaaaaa") == 2 and printed.count("bbbbbbbbbbbb") == 2
    one = tmp_path / "one"
    _nightly(one, "0.1.0+cccccccccccc", 4, {rows["A"]: [0.3, 0.2, 0.1]})
    assert main(["history", "quickstart", "--metric", "rel", "--out", str(one)]) == 0       # one folder still works
    assert capsys.readouterr().out.count("cccccccccccc") == 1                               # its seeds: one point
    assert main(["history", "quickstart", "--metric", "rel", "--runs", str(tmp_path / "none-*")]) == 2
    assert "no folder holding results.sqlite" in capsys.readouterr().err


def _readme_recipe() -> list[list[str]]:
    from suite_helpers import REPO
    m = re.search(r"<!-- regression-recipe -->\s*```bash\n(.*?)```", (REPO / "README.md").read_text(), re.S)
    assert m, "README.md has no regression recipe block"
    text = m.group(1).replace("\\\n", " ").replace("$(date +%F)", "DATE")
    return [shlex.split(ln) for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]


PLANT = '''from bench.nets import init_weights
from methods.pix2pix import Pix2Pix


def _init_component(cls, slot, module, o):          # D ~ N(0, 0.021) instead of N(0, 0.02)
    init_weights(module, 0.021 if slot == "D" else o.init_gain)


Pix2Pix.init_component = classmethod(_init_component)
'''


@pytest.mark.slow
def test_the_readme_recipe_catches_a_planted_change_of_the_discriminators_init(tmp_path, quickstart_tiny):
    from conftest import QUICKSTART_TINY_RUN
    from suite_helpers import bench
    run, baseline, regress = _readme_recipe()
    at = run.index("--out")
    assert run[0] == "bench" and run[1:at] + run[at + 2:] == list(QUICKSTART_TINY_RUN[:5])   # the shared clean run
    paths = {run[at + 1]: str(quickstart_tiny)}

    def local(cmd: list[str]) -> list[str]:
        """The README's command with its paths in tmp_path (the clean run: the shared one)."""
        out = cmd[1:]
        for i, a in enumerate(out[:-1]):
            if a in ("--out", "--file", "--baseline"):
                out[i + 1] = paths.setdefault(out[i + 1], str(tmp_path / re.sub(r"\W", "_", out[i + 1])))
        return out

    assert baseline[:2] == ["bench", "baseline"] and regress[:2] == ["bench", "regress"] and "exact" in regress
    bench(*local(baseline), check=True)
    (tmp_path / "plant_d_init.py").write_text(PLANT)
    env = {"PYTHONPATH": os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")]))}
    r = bench("--plugin", "plant_d_init", *local(regress), "--no-progress", "--device", "cpu", env=env)
    assert r.returncode == 1, r.stdout + r.stderr
    first = re.search(r"^MOVED +(.+) / (\w+/\w+) seed 0: (\S+) -> (\S+) ", r.stdout, re.M)
    assert first and float(first.group(3)) != float(first.group(4)), r.stdout
    assert "REGRESSION (exact)" in r.stdout and "PROTOCOL" not in r.stdout and "LOST" not in r.stdout
    assert int(re.search(r"(\d+) value\(s\) moved", r.stdout).group(1)) > 0
