"""The statistics behind every verdict, against independent references: the coverage of the interval by
simulation, Welch's test against scipy and a hand computation, the power estimate against Cohen's /
G*Power's published sample sizes."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from leaderboards.stats import ALPHA, compare, describe, interval, seeds_needed, clip


def test_t_interval_covers_the_mean_95_percent_of_the_time_at_three_seeds():
    rng = np.random.default_rng(7)
    draws = rng.normal(10.0, 2.0, size=(2000, 3))
    covered = 0
    for v in draws:
        lo, hi, how = interval(v)
        covered += lo <= 10.0 <= hi
    assert how == "t95"
    assert abs(covered / 2000 - 0.95) <= 0.015
    # the seed range [min, max] of three draws, what the old bootstrap gave, covers it far less often
    rng_cov = np.mean((draws.min(1) <= 10.0) & (10.0 <= draws.max(1)))
    assert rng_cov == pytest.approx(0.75, abs=0.03)


def test_interval_at_n_seeds_equals_scipy_t_interval():
    v = [0.31, 0.35, 0.29, 0.40, 0.33]
    lo, hi, _ = interval(v)
    ref = sps.t.interval(0.95, len(v) - 1, loc=np.mean(v), scale=sps.sem(v))
    assert (lo, hi) == pytest.approx(ref)


def test_clip_to_a_metric_range():
    assert clip(-0.1, 0.5, (0.0, 1.0)) == (0.0, 0.5, True)
    assert clip(0.9, 1.31, (0.0, 1.0)) == (0.9, 1.0, True)
    assert clip(2.0, 3.0, (0.0, None)) == (2.0, 3.0, False)
    lo, hi, c = clip(math.nan, math.nan, (0.0, 1.0))
    assert math.isnan(lo) and not c


def test_welch_test_by_hand_and_against_scipy():
    a, b = [1.0, 2.0, 3.0], [4.0, 6.0, 8.0]
    # by hand: means 2 and 6, variances 1 and 4, se^2 = 1/3 + 4/3 = 5/3
    se = math.sqrt(5 / 3)
    t = (2.0 - 6.0) / se
    df = (5 / 3) ** 2 / ((1 / 3) ** 2 / 2 + (4 / 3) ** 2 / 2)           # 2.9412
    r = compare(a, b, higher=False)                                        # lower is better: a is claimed better
    assert r.df == pytest.approx(df) and r.diff == pytest.approx(4.0)
    assert r.p == pytest.approx(sps.t.cdf(t, df))                          # one-sided "a lower than b"
    assert r.p == pytest.approx(sps.ttest_ind(a, b, equal_var=False, alternative="less").pvalue)
    assert r.p_reverse == pytest.approx(1 - r.p)
    half = sps.t.ppf(0.95, df) * se                                      # 90%: the one-sided 95% bounds
    assert (r.diff_low, r.diff_high) == pytest.approx((4.0 - half, 4.0 + half))
    assert r.effect == pytest.approx(4.0 / math.sqrt((1 + 4) / 2))
    assert r.outcome == ("a better" if r.p < ALPHA else "not separated")
    assert (r.diff_low > 0) == (r.outcome == "a better")                  # the interval and the test agree
    # the same data, higher better: b is better, and the test says so from the other side
    up = compare(a, b, higher=True)
    assert up.p == pytest.approx(r.p_reverse) and up.p_reverse == pytest.approx(r.p)
    assert up.diff == pytest.approx(-4.0) and up.outcome in ("b better", "not separated")


@pytest.mark.parametrize("seed", range(5))
def test_outcome_matches_scipy_one_sided_tests(seed):
    rng = np.random.default_rng(seed)
    a, b = rng.normal(0.5, 0.1, 3), rng.normal(0.4, 0.1, 3)
    r = compare(a, b, higher=True)
    greater = sps.ttest_ind(a, b, equal_var=False, alternative="greater").pvalue
    less = sps.ttest_ind(a, b, equal_var=False, alternative="less").pvalue
    assert (r.p, r.p_reverse) == pytest.approx((greater, less))
    assert r.outcome == ("a better" if greater < ALPHA else "b better" if less < ALPHA else "not separated")


def test_equal_rows_are_not_separated_and_one_seed_is_no_test():
    r = compare([0.3, 0.3, 0.3], [0.3, 0.3, 0.3], higher=True)
    assert r.outcome == "not separated" and r.means_favour == "tie" and r.seeds_needed is None
    r = compare([0.3, 0.31, 0.29], [0.3, 0.31, 0.29], higher=True)
    assert r.outcome == "not separated" and r.p == pytest.approx(0.5)
    one = compare([0.9], [0.1, 0.2], higher=True)
    assert one.outcome == "not separated" and "one seed" in one.note and math.isnan(one.p)
    # constant rows that differ: separated without a p-value computation
    c = compare([1.0, 1.0], [0.0, 0.0], higher=True)
    assert c.outcome == "a better" and c.p == 0.0


def test_seeds_needed_equals_published_sample_sizes():
    # One-sided two-sample t-test, alpha 0.05, power 0.80 (Cohen 1988; G*Power "t tests - means: difference
    # between two independent means", one tail): d = 0.5 -> 51, d = 0.8 -> 21, d = 1 -> 14 per group.
    assert seeds_needed(0.5, 1.0, 1.0) == 51
    assert seeds_needed(0.8, 1.0, 1.0) == 21
    assert seeds_needed(1.0, 1.0, 1.0) == 14
    assert seeds_needed(-1.0, 1.0, 1.0) == 14                      # either direction
    assert seeds_needed(0.0, 1.0, 1.0) is None


def test_seeds_needed_reaches_its_power_by_simulation():
    n = seeds_needed(1.0, 0.5, 1.5)
    rng = np.random.default_rng(3)
    hits = sum(sps.ttest_ind(rng.normal(1.0, 0.5, n), rng.normal(0.0, 1.5, n), equal_var=False,
                             alternative="greater").pvalue < 0.05 for _ in range(2000))
    assert hits / 2000 == pytest.approx(0.8, abs=0.03)
    fewer = n - 2
    hits = sum(sps.ttest_ind(rng.normal(1.0, 0.5, fewer), rng.normal(0.0, 1.5, fewer), equal_var=False,
                             alternative="greater").pvalue < 0.05 for _ in range(2000))
    assert hits / 2000 < 0.8


def test_not_separated_pair_reports_direction_and_seeds_needed():
    r = compare([0.50, 0.60, 0.55], [0.52, 0.45, 0.57], higher=True)
    assert r.outcome == "not separated" and r.means_favour == "a"
    assert r.seeds_needed == seeds_needed(r.diff, r.std_a, r.std_b) and r.seeds_needed > 3
    text = describe(r, "A", "B")
    assert "means favour A" in text and f"~{r.seeds_needed} seeds" in text
