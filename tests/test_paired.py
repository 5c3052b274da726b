"""McNemar's exact test and Newcombe's paired interval, against independent computations."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import binomtest

from pytest_advprune.paired import mcnemar_exact, newcombe_paired_interval, paired_change, wilson_interval

counts = st.integers(min_value=0, max_value=60)


@given(regressions=counts, improvements=counts)
def test_mcnemar_exact_equals_a_two_sided_binomial_test(regressions: int, improvements: int) -> None:
    flipped = regressions + improvements
    expected = 1.0 if flipped == 0 else binomtest(regressions, flipped, 0.5).pvalue
    assert mcnemar_exact(regressions, improvements) == pytest.approx(expected, rel=1e-9, abs=1e-300)


def test_mcnemar_exact_small_cases_by_hand() -> None:
    assert mcnemar_exact(0, 0) == 1.0
    assert mcnemar_exact(5, 0) == pytest.approx(2 / 32)  # 2 * P(X = 0), X ~ Bin(5, 1/2)
    assert mcnemar_exact(3, 3) == 1.0
    assert mcnemar_exact(1, 4) == pytest.approx(2 * (1 + 5) / 32)


def test_mcnemar_exact_does_not_underflow_for_thousands_of_flips() -> None:
    assert 0.0 <= mcnemar_exact(3000, 2900) <= 1.0
    assert mcnemar_exact(3000, 2900) == pytest.approx(binomtest(2900, 5900, 0.5).pvalue, rel=1e-6)


def test_wilson_interval_matches_the_closed_form() -> None:
    low, high = wilson_interval(8, 10, 1.959963984540054)
    # Wilson (1927) interval for 8/10 at 95%, as tabulated by Newcombe (1998): 0.4902 to 0.9433.
    assert (round(low, 4), round(high, 4)) == (0.4902, 0.9433)


def test_newcombe_paired_interval_reproduces_the_published_example() -> None:
    # Newcombe (1998), paired data, Table II example: 36 pairs +/+, 12 +/-, 2 -/+, 0 -/-; method 10
    # gives 0.0569 to 0.3404 for the difference 0.2.
    low, high = newcombe_paired_interval(both=36, regressions=2, improvements=12, neither=0)
    assert (round(low, 4), round(high, 4)) == (0.0569, 0.3404)


@given(both=counts, regressions=counts, improvements=counts, neither=counts)
def test_interval_contains_the_difference_and_stays_in_range(
    both: int, regressions: int, improvements: int, neither: int
) -> None:
    n = both + regressions + improvements + neither
    low, high = newcombe_paired_interval(both, regressions, improvements, neither)
    difference = 0.0 if n == 0 else (improvements - regressions) / n
    assert -1.0 <= low <= difference + 1e-12
    assert difference - 1e-12 <= high <= 1.0


@settings(max_examples=50)
@given(both=st.integers(200, 400), regressions=st.integers(0, 40), improvements=st.integers(0, 40))
def test_interval_approaches_the_wald_interval_for_large_samples(
    both: int, regressions: int, improvements: int
) -> None:
    neither = 100
    n = both + regressions + improvements + neither
    low, high = newcombe_paired_interval(both, regressions, improvements, neither)
    difference = (improvements - regressions) / n
    half = 1.96 * math.sqrt(((regressions + improvements) / n - difference**2) / n)
    # Score-type and Wald intervals agree to within a fraction of their width when n is large and the
    # flips are not rare.
    if regressions + improvements >= 20:
        assert low == pytest.approx(difference - half, abs=0.35 * half + 0.003)
        assert high == pytest.approx(difference + half, abs=0.35 * half + 0.003)


@given(st.lists(st.tuples(st.booleans(), st.booleans()), min_size=1, max_size=200))
def test_paired_change_counts_flips_independently(pairs: list[tuple[bool, bool]]) -> None:
    before = [b for b, _ in pairs]
    after = [a for _, a in pairs]
    change = paired_change(before, after)
    regressions = sum(1 for b, a in pairs if b and not a)
    improvements = sum(1 for b, a in pairs if a and not b)
    assert (change.regressions, change.improvements) == (regressions, improvements)
    assert change.difference == pytest.approx(100 * (sum(after) - sum(before)) / len(pairs))
    assert change.ci_low <= change.difference <= change.ci_high
    assert change.p_value == mcnemar_exact(regressions, improvements)


def test_paired_change_needs_the_same_samples() -> None:
    with pytest.raises(ValueError, match="same samples"):
        paired_change([True], [True, False])
