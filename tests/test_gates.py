"""Sanity gates and the one output domain: what every scorer sees is what a saved file would hold; a model
whose outputs are constant or collapsed is marked degenerate (its numbers kept, its claims untestable); a
model that outputs NaN at evaluation fails its row; the other rows are scored as before."""

from __future__ import annotations

import math
import textwrap

import pandas as pd
import pytest
import torch

from bench import gates
from suite_helpers import bench, quickstart_variant


def test_saved_form_is_what_a_png_would_hold():
    x = torch.tensor([-1.7, -1.0, -0.50001, 0.0, 0.3, 0.999, 1.2]).reshape(1, 1, 1, 7)
    img = gates.saved_form(x, "image")
    u8 = ((x.clamp(-1, 1) + 1) * 127.5).round()                       # the byte a PNG stores
    assert torch.equal(img, u8 / 127.5 - 1)
    assert torch.equal(gates.saved_form(img, "image"), img)           # idempotent
    assert torch.equal(gates.saved_form(x, "labels", "rgb"), img)     # a colour label map is an image
    logits = torch.randn(2, 5, 4, 4) * 3
    assert torch.equal(gates.saved_form(logits, "labels", "logits"), logits)
    depth = gates.saved_form(x, "depth")                               # 16 bits
    assert (depth - x.clamp(-1, 1)).abs().max() <= 1 / 65535 + 1e-7
    assert torch.equal(gates.saved_form(torch.tensor([[0.123, 4.5]]), "points"), torch.tensor([[0.123, 4.5]]))


def test_non_finite_outputs_are_refused_in_one_line():
    with pytest.raises(Exception) as e:
        gates.check_finite("y", torch.tensor([0.0, math.nan, math.inf]), "test batch 3")
    assert "2 NaN/inf values at test batch 3" in str(e.value) and "\n" not in str(e.value)
    gates.check_finite("y", torch.zeros(3), "test batch 0")


def _gate(outputs: torch.Tensor, real: torch.Tensor) -> dict[str, float]:
    g = gates.OutputGate("y")
    for o, r in zip(outputs.split(7), real.split(7)):
        g.update(o, r)
    return g.compute()


def test_gate_flags_constant_and_collapsed_outputs_and_passes_varied_ones():
    torch.manual_seed(0)
    real = torch.rand(40, 3, 16, 16) * 2 - 1
    ok = _gate(real.flip(0) * 0.8, real)
    assert ok["degenerate"] == 0 and 0.7 < ok["spread_ratio"] < 0.9 and 0.7 < ok["pairwise_ratio"] < 0.9
    const = _gate(torch.full((40, 3, 16, 16), 0.25), real)
    assert const["degenerate"] == 1 and const["spread_ratio"] == 0 and "constant output" in gates.reason(const)
    # varies by 5% of the data: not constant (> 1%), but collapsed (pairwise distance < 10% of the data's)
    collapsed = _gate(0.25 + 0.05 * real, real)
    assert collapsed["spread_ratio"] == pytest.approx(0.05, rel=1e-6)
    assert collapsed["pairwise_ratio"] == pytest.approx(0.05, rel=1e-6)
    assert collapsed["degenerate"] == 1 and "collapsed output" in gates.reason(collapsed)
    # the streaming spread equals the direct one: RMS over positions of the std across inputs
    x = torch.randn(40, 3, 16, 16, dtype=torch.float64)
    direct = float(x.std(0, unbiased=True).pow(2).mean().sqrt())
    assert _gate(x.float(), real)["spread_ratio"] == pytest.approx(direct / float(real.double().std(0).pow(2)
                                                                                   .mean().sqrt()), rel=1e-5)


PLUGIN = textwrap.dedent('''
    import torch
    from bench.registry import GENERATORS
    from methods.generators.unet import UNetGenerator

    @GENERATORS.register("constant-unet")
    class Constant(UNetGenerator):
        """One image whatever the input: a learnt constant."""
        def __init__(self, *a, **k):
            super().__init__(*a, **k)
            self.level = torch.nn.Parameter(torch.zeros(1))
        def forward(self, x):
            y = super().forward(x)
            return y * 0 + torch.tanh(self.level)

    @GENERATORS.register("grey-unet")
    class Grey(UNetGenerator):
        """The U-Net plus the input's grey level: its depth maps follow the photo from the first step (a plain
        U-Net's outputs hardly vary after the tiny profile's 6 steps: the gate rightly calls them constant)."""
        def forward(self, x):
            return (super().forward(x) + x.mean(1, keepdim=True)).clamp(-1, 1)

    @GENERATORS.register("nan-at-eval-unet")
    class NanAtEval(UNetGenerator):
        """Fine in training, NaN in eval mode (what the scorer sees)."""
        def forward(self, x):
            y = super().forward(x)
            return y if self.training else y * float("nan")
''')


def test_a_constant_generator_is_degenerate_and_a_nan_one_fails_the_others_are_scored(tmp_path):
    (tmp_path / "gate_plugin.py").write_text(PLUGIN)
    import tomllib
    from suite_helpers import QUICKSTART
    tiny = tomllib.loads(QUICKSTART.read_text())["profiles"]["tiny"]
    suite = quickstart_variant(
        tmp_path, suite={"name": "gates", "tasks": ["photo2depth"], "default_profile": "tiny", "seeds": [0, 1]},
        metrics={"photo2depth": ["depth"]}, columns={"photo2depth": ["rel", "delta1"]},
        rows=[{"name": "Constant", "discriminator": "patchgan", "generator": "constant-unet"},
              {"name": "NaN at eval", "discriminator": "patchgan", "generator": "nan-at-eval-unet"},
              {"name": "Fine", "discriminator": "patchgan", "generator": "grey-unet"}],
        claims=[{"text": "a constant image beats the U-Net", "metric": "photo2depth/rel",
                 "order": ["Constant", "Fine"]}],
        profiles={"tiny": tiny})
    out = tmp_path / "out"
    r = bench("--plugin", "gate_plugin", "run", str(suite), "--out", str(out), "--no-progress", "--device", "cpu",
              env={"PYTHONPATH": str(tmp_path)}, check=True)
    board = pd.read_csv(out / "leaderboard.csv").set_index(["row", "column"])
    const = board.loc[("Constant", "photo2depth/rel")]
    assert const["status"] == "degenerate" and "constant output in 2 of 2 seed(s)" in const["reason"]
    assert not math.isnan(const["mean"])                                # its numbers are kept
    nan = board.loc[("NaN at eval", "photo2depth/rel")]
    assert nan["status"] == "failed" and "NaN/inf" in nan["reason"]
    fine = board.loc[("Fine", "photo2depth/rel")]
    assert fine["status"] == "ok" and fine["n"] == 2
    assert not any(str(c).startswith("photo2depth/gate.") for _, c in board.index)
    claims = pd.read_csv(out / "claims.csv")
    assert claims.loc[0, "verdict"] == "untestable" and "Constant" in claims.loc[0, "pairs"]
    md = (out / "leaderboard.md").read_text()
    assert "## Degenerate runs" in md and "untestable" in md
    # the gate's measurements are in the store, under a protocol naming the thresholds
    from bench.results import ResultStore
    store = ResultStore(out / "results.sqlite")
    recs = store.latest(suite="gates")
    g = recs[(recs["row"] == "Constant") & (recs["metric"] == "gate.degenerate@y")]
    assert len(g) == 2 and set(g["value"]) == {1.0}
    proto = store.protocol(g.iloc[0]["protocol_hash"])
    assert proto["metric"] == "gate" and "0.01" in proto["constant"]
    fine_rel = recs[(recs["row"] == "Fine") & (recs["metric"] == "rel")]
    assert "quantised to 8 bits" in store.protocol(fine_rel.iloc[0]["protocol_hash"])["output_domain"]
    assert "degenerate" in r.stderr


def test_scored_outputs_put_what_scorers_read_in_the_saved_form():
    from bench.score import scored_outputs
    outs = {"y": torch.tensor([[[[1.7, -0.3]]]]), "y_rec": torch.tensor([[[[1.7, -0.3]]]]), "z": torch.tensor([9.0])}
    got = scored_outputs(outs, {"y": ("image", "rgb"), "y_rec": ("depth", "rgb")}, "test batch 0")
    assert torch.equal(got["y"], gates.saved_form(outs["y"], "image")) and got["y"].max() == 1.0
    assert got["y_rec"].max() == 1.0 and torch.equal(got["z"], outs["z"])       # unread outputs untouched
    with pytest.raises(Exception, match="output 'y' holds 1 NaN/inf values at test batch 0"):
        scored_outputs({"y": torch.tensor([math.nan])}, {"y": ("image", "rgb")}, "test batch 0")
