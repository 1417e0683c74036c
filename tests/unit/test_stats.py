"""The statistics of the comparison (smallvision.stats): McNemar's exact test and Newcombe's paired interval on
hand-checked tables, the paired test's orientation, Student's t over seeds."""

from __future__ import annotations

import math

import pytest
from helpers.fake_runs import table

from smallvision.stats import mcnemar_exact, mean_interval, paired_difference_interval, paired_test


@pytest.mark.parametrize(
    "only_first, only_second, p",
    [
        (0, 0, 1.0),  # all agree: no evidence either way
        (3, 3, 1.0),
        (0, 5, 2 / 2**5),  # one-sided: every discordant image favours the second
        (5, 0, 2 / 2**5),
        (1, 9, 2 * (1 + 10) / 2**10),  # 2 * P(X <= 1), X ~ Bin(10, 1/2): 2 * (C(10, 0) + C(10, 1)) / 1024
        (6, 16, 2 * 110_056 / 2**22),  # 2 * sum C(22, k), k <= 6; Fagerland et al. (2017) ch. 8: 0.0525
        (0, 1, 1.0),  # one discordant image: 2 * 1/2, capped at 1
    ],
)
def test_mcnemar_exact_p_value_on_hand_checked_tables(only_first, only_second, p):
    assert mcnemar_exact(only_first, only_second) == pytest.approx(p, rel=1e-12)


def test_newcombe_paired_interval_matches_the_published_example_and_stays_in_bounds():
    # Fagerland, Lydersen & Laake (2017), ch. 8 (Cavo et al. 2012): 59 both, 6 first only, 16 second only, 80
    # neither; the first minus the second: -0.0621 (95 % CI -0.1186 to -0.0046). Ours is second minus first.
    low, high = paired_difference_interval(59, 16, 6, 80)
    assert (low, high) == pytest.approx((-0.1186, -0.0046), abs=5e-5)
    low, high = paired_difference_interval(90, 0, 0, 10)  # all agree: the interval straddles 0
    assert low < 0 < high and high - low < 0.08
    low, high = paired_difference_interval(0, 0, 20, 0)  # the second right everywhere the first is wrong
    assert 0.7 < low < high == 1.0


def test_paired_test_counts_the_table_and_orients_the_difference_second_minus_first():
    first, second = table(both=70, only_first=4, only_second=12, neither=14)
    test = paired_test(first, second)
    assert (test.n, test.both, test.only_first, test.only_second, test.neither) == (100, 70, 4, 12, 14)
    assert (test.first_accuracy, test.second_accuracy) == (0.74, 0.82)
    assert test.difference == pytest.approx(0.08) and test.ci95_low < 0.08 < test.ci95_high
    assert test.p_value == pytest.approx(mcnemar_exact(4, 12))
    with pytest.raises(ValueError, match="equally long"):
        paired_test([True], [True, False])


def test_mean_interval_over_seeds_is_students_t():
    mean, low, high = mean_interval([0.80, 0.84, 0.82])
    half = 4.302652729911275 * 0.02 / math.sqrt(3)  # t(0.975, 2 df) * s / sqrt(n)
    assert (mean, low, high) == pytest.approx((0.82, 0.82 - half, 0.82 + half))
    assert math.isnan(mean_interval([0.8])[1])  # one seed says nothing about the spread
