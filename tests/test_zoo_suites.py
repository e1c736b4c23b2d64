"""The zoo suites (issue 24): ``discriminator-zoo`` holds every registered image-conditioned discriminator and
``loss-zoo`` every registered loss and every D-side or input regulariser, so a component added to the registry
without its row fails here; both run end to end on their smoke profiles and judge their claims."""

from __future__ import annotations

import pandas as pd
import pytest

from bench.config import load_suite
from bench.registry import LOSSES, REGULARIZERS, SUITES
from leaderboards.claims import VERDICTS
from adapter_helpers import image_conditioned_discriminators
from suite_helpers import assert_scored, bench


def _rows(name: str):
    return load_suite(SUITES.get(name)).rows


def test_the_discriminator_zoo_has_every_image_conditioned_discriminator():
    named = {r.discriminator for r in _rows("discriminator-zoo")}
    wanted = set(image_conditioned_discriminators())
    assert wanted <= named, f"add a row for {sorted(wanted - named)}"
    assert {"patchgan-uncond", "dcgan", "elu-noisy"}.isdisjoint(named)     # they take the image alone


def test_the_loss_zoo_has_every_loss_and_every_regulariser_a_patchgan_can_take():
    rows = _rows("loss-zoo")
    losses = {r.options.get("loss", "vanilla") for r in rows}
    # one row per loss class: an alias (nonsaturating = vanilla) needs none of its own
    targets = {LOSSES.get(n) for n in losses}
    missing = sorted(n for n in LOSSES.names() if LOSSES.get(n) not in targets
                     and LOSSES.origin(n).startswith("methods."))
    assert not missing, f"add a row for the losses {missing}"
    regs = {k for r in rows for k in (r.options.get("regularizers") or {})}
    # G-side weight regularisers and feature matching (which needs a D with features: discriminator-zoo) aside
    wanted = {n for n in REGULARIZERS.names() if REGULARIZERS.origin(n).startswith("methods.")
              and REGULARIZERS.get(n).applies_to in ("d", "input")}
    assert wanted <= regs, f"add a row for the regularisers {sorted(wanted - regs)}"


@pytest.mark.slow
@pytest.mark.parametrize("suite", ["discriminator-zoo", "loss-zoo"])
def test_smoke_profile(suite, tmp_path):
    out = tmp_path / suite
    bench("run", suite, "--profile", "smoke", "--seeds", "1", "--out", str(out), "--no-progress", "--device", "cpu",
          check=True, timeout=900)
    board = pd.read_csv(out / "leaderboard.csv")
    assert_scored(board)
    assert board["row"].nunique() == len(_rows(suite))
    assert {"l1", "mean_iou", "rel"} <= set(board["metric"])
    claims = pd.read_csv(out / "claims.csv")
    assert len(claims) == len(load_suite(SUITES.get(suite)).claims) and set(claims["verdict"]) <= set(VERDICTS)
