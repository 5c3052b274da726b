"""metrics.py: every number of a cell, checked against an independent numpy computation."""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_advprune.metrics import (
    DIGITS,
    METRIC_NAMES,
    NORM_METRICS,
    OUTCOME_NAMES,
    POINT_METRICS,
    SizeFigures,
    compute_metrics,
    percent,
    perturbation_metrics,
    success_rate,
)

# A value rounded to DIGITS decimals is within half a unit of the last digit of the exact value.
ROUNDING = 0.5 * 10.0**-DIGITS + 1e-9

EXPECTED_KEYS = {
    "samples",
    "base_clean_accuracy",
    "pruned_clean_accuracy",
    "clean_accuracy_drop",
    "base_robust_accuracy",
    "pruned_robust_accuracy",
    "transfer_robust_accuracy",
    "base_attack_success_rate",
    "pruned_attack_success_rate",
    "transfer_attack_success_rate",
    "transfer_rate",
    "base_parameters",
    "pruned_parameters",
    "base_nonzero_parameters",
    "pruned_nonzero_parameters",
    "sparsity",
    "compression_ratio",
    "base_macs",
    "pruned_macs",
}


@st.composite
def outcome_vectors(draw: st.DrawFn, min_size: int = 1, max_size: int = 64) -> dict[str, list[bool]]:
    n = draw(st.integers(min_value=min_size, max_value=max_size))
    vector = st.lists(st.booleans(), min_size=n, max_size=n)
    return {name: draw(vector) for name in OUTCOME_NAMES}


@st.composite
def size_pairs(draw: st.DrawFn) -> tuple[SizeFigures, SizeFigures]:
    base_parameters = draw(st.integers(min_value=1, max_value=10**8))
    base = SizeFigures(
        parameters=base_parameters,
        nonzero_parameters=draw(st.integers(min_value=0, max_value=base_parameters)),
        macs=draw(st.integers(min_value=0, max_value=10**10)),
    )
    pruned_parameters = draw(st.integers(min_value=0, max_value=base_parameters))
    pruned = SizeFigures(
        parameters=pruned_parameters,
        nonzero_parameters=draw(st.integers(min_value=0, max_value=pruned_parameters)),
        macs=draw(st.integers(min_value=0, max_value=10**10)),
    )
    return base, pruned


def numpy_accuracy(vector: list[bool]) -> float:
    return float(100.0 * np.asarray(vector, dtype=np.float64).mean())


def numpy_success_rate(clean: list[bool], attacked: list[bool]) -> float | None:
    clean_arr, attacked_arr = np.asarray(clean, dtype=bool), np.asarray(attacked, dtype=bool)
    if not clean_arr.any():
        return None
    flipped = np.logical_and(clean_arr, np.logical_not(attacked_arr))
    return float(100.0 * flipped.sum() / clean_arr.sum())


def assert_rounded(actual: Any, exact: float | None) -> None:
    """``actual`` is ``exact`` rounded to the stored precision (or both are None)."""
    if exact is None:
        assert actual is None
        return
    assert isinstance(actual, float)
    assert abs(actual - exact) <= ROUNDING, (actual, exact)


def sizes() -> tuple[SizeFigures, SizeFigures]:
    return SizeFigures(1000, 990, 5000), SizeFigures(1000, 250, 5000)


@settings(max_examples=200, deadline=None)
@given(outcomes=outcome_vectors(), figures=size_pairs())
def test_compute_metrics_matches_numpy(
    outcomes: dict[str, list[bool]], figures: tuple[SizeFigures, SizeFigures]
) -> None:
    base, pruned = figures
    metrics = compute_metrics(outcomes, base, pruned)

    assert set(metrics) == EXPECTED_KEYS
    assert metrics["samples"] == len(outcomes["base_clean"])
    assert_rounded(metrics["base_clean_accuracy"], numpy_accuracy(outcomes["base_clean"]))
    assert_rounded(metrics["pruned_clean_accuracy"], numpy_accuracy(outcomes["pruned_clean"]))
    assert_rounded(metrics["base_robust_accuracy"], numpy_accuracy(outcomes["base_adversarial"]))
    assert_rounded(metrics["pruned_robust_accuracy"], numpy_accuracy(outcomes["pruned_adversarial"]))
    assert_rounded(metrics["transfer_robust_accuracy"], numpy_accuracy(outcomes["transfer_adversarial"]))
    assert_rounded(
        metrics["base_attack_success_rate"],
        numpy_success_rate(outcomes["base_clean"], outcomes["base_adversarial"]),
    )
    assert_rounded(
        metrics["pruned_attack_success_rate"],
        numpy_success_rate(outcomes["pruned_clean"], outcomes["pruned_adversarial"]),
    )
    # Transfer examples are judged against what the *pruned* model gets right when clean.
    assert_rounded(
        metrics["transfer_attack_success_rate"],
        numpy_success_rate(outcomes["pruned_clean"], outcomes["transfer_adversarial"]),
    )

    # The usual transfer rate: only examples that fooled the base, on samples both models get right.
    arrays = {name: np.asarray(vector, dtype=bool) for name, vector in outcomes.items()}
    fooled_base = arrays["base_clean"] & arrays["pruned_clean"] & ~arrays["base_adversarial"]
    exact_rate = None if not fooled_base.any() else 100.0 * (~arrays["transfer_adversarial"][fooled_base]).mean()
    assert_rounded(metrics["transfer_rate"], None if exact_rate is None else float(exact_rate))

    # The drop is the exact difference of the two accuracies, rounded once.
    exact_drop = numpy_accuracy(outcomes["base_clean"]) - numpy_accuracy(outcomes["pruned_clean"])
    assert_rounded(metrics["clean_accuracy_drop"], exact_drop)

    assert metrics["base_parameters"] == base.parameters
    assert metrics["pruned_parameters"] == pruned.parameters
    assert metrics["base_nonzero_parameters"] == base.nonzero_parameters
    assert metrics["pruned_nonzero_parameters"] == pruned.nonzero_parameters
    assert metrics["base_macs"] == base.macs
    assert metrics["pruned_macs"] == pruned.macs
    exact_sparsity = Fraction(100 * (base.parameters - pruned.nonzero_parameters), base.parameters)
    assert_rounded(metrics["sparsity"], float(exact_sparsity))
    if pruned.nonzero_parameters == 0:
        assert metrics["compression_ratio"] is None
    else:
        assert_rounded(metrics["compression_ratio"], float(Fraction(base.parameters, pruned.nonzero_parameters)))


@settings(max_examples=100, deadline=None)
@given(outcomes=outcome_vectors())
def test_metrics_are_percentages_in_range(outcomes: dict[str, list[bool]]) -> None:
    metrics = compute_metrics(outcomes, *sizes())
    for name in POINT_METRICS:
        value = metrics[name]
        if name == "clean_accuracy_drop":
            assert isinstance(value, float) and -100.0 <= value <= 100.0
        elif value is not None:
            assert isinstance(value, float) and 0.0 <= value <= 100.0, (name, value)


def test_hand_computed_example() -> None:
    t, f = True, False
    outcomes = {
        "base_clean": [t, t, f, t],  # 3/4 right
        "pruned_clean": [t, f, f, t],  # 2/4 right
        "base_adversarial": [t, t, f, f],  # of samples 0, 1, 3: 3 flipped -> 1/3
        "pruned_adversarial": [t, f, t, f],  # of samples 0, 3: 3 flipped -> 1/2
        # Of samples 0, 3: 0 flipped -> 1/2. But only sample 3 fooled the base, and it does not
        # transfer: the usual (conditioned) transfer rate is 0/1.
        "transfer_adversarial": [f, f, f, t],
    }
    metrics = compute_metrics(outcomes, SizeFigures(200, 198, 1000), SizeFigures(150, 50, 700))
    assert metrics == {
        "samples": 4,
        "base_clean_accuracy": 75.0,
        "pruned_clean_accuracy": 50.0,
        "clean_accuracy_drop": 25.0,
        "base_robust_accuracy": 50.0,
        "pruned_robust_accuracy": 50.0,
        "transfer_robust_accuracy": 25.0,
        "base_attack_success_rate": 33.3333,
        "pruned_attack_success_rate": 50.0,
        "transfer_attack_success_rate": 50.0,
        "transfer_rate": 0.0,
        "base_parameters": 200,
        "pruned_parameters": 150,
        "base_nonzero_parameters": 198,
        "pruned_nonzero_parameters": 50,
        "sparsity": 75.0,  # (200 - 50) / 200
        "compression_ratio": 4.0,  # 200 / 50
        "base_macs": 1000,
        "pruned_macs": 700,
    }


def test_pruned_better_than_base_gives_negative_drop() -> None:
    outcomes = {name: [False, False, True] for name in OUTCOME_NAMES}
    outcomes["pruned_clean"] = [True, True, True]
    metrics = compute_metrics(outcomes, *sizes())
    assert metrics["base_clean_accuracy"] == 33.3333
    assert metrics["pruned_clean_accuracy"] == 100.0
    assert metrics["clean_accuracy_drop"] == -66.6667


@settings(max_examples=50, deadline=None)
@given(n=st.integers(min_value=1, max_value=40), data=st.data())
def test_success_rate_is_none_without_clean_correct_samples(n: int, data: st.DataObject) -> None:
    attacked = data.draw(st.lists(st.booleans(), min_size=n, max_size=n))
    assert success_rate([False] * n, attacked) is None
    outcomes = {name: data.draw(st.lists(st.booleans(), min_size=n, max_size=n)) for name in OUTCOME_NAMES}
    outcomes["base_clean"] = [False] * n
    outcomes["pruned_clean"] = [False] * n
    metrics = compute_metrics(outcomes, *sizes())
    assert metrics["base_attack_success_rate"] is None
    assert metrics["pruned_attack_success_rate"] is None
    assert metrics["transfer_attack_success_rate"] is None
    assert metrics["base_clean_accuracy"] == 0.0
    assert metrics["clean_accuracy_drop"] == 0.0


def test_success_rate_counts_only_clean_correct_samples() -> None:
    # Samples 2 and 3 are wrong when clean: whatever the attack does to them does not count.
    assert success_rate([True, True, False, False], [True, False, False, True]) == 50.0
    assert success_rate([True, True, True], [True, True, True]) == 0.0
    assert success_rate([True, True, True], [False, False, False]) == 100.0


def test_no_samples_gives_no_rates() -> None:
    metrics = compute_metrics({name: [] for name in OUTCOME_NAMES}, *sizes())
    assert metrics["samples"] == 0
    for name in POINT_METRICS:
        if name != "sparsity":
            assert metrics[name] is None, name
    assert metrics["sparsity"] == 75.0


def test_percent() -> None:
    assert percent(0, 0) is None
    assert percent(1, 3) == 33.3333
    assert percent(2, 3) == 66.6667
    assert percent(3, 3) == 100.0
    assert percent(0, 7) == 0.0


def test_sparsity_and_compression_definitions() -> None:
    base = SizeFigures(parameters=1000, nonzero_parameters=1000, macs=10)
    # Structured pruning removes parameters: absent ones count as sparsity too.
    removed = SizeFigures(parameters=400, nonzero_parameters=400, macs=4)
    metrics = compute_metrics({name: [True] for name in OUTCOME_NAMES}, base, removed)
    assert metrics["sparsity"] == 60.0
    assert metrics["compression_ratio"] == 2.5
    # Unstructured pruning zeroes parameters without removing them.
    zeroed = SizeFigures(parameters=1000, nonzero_parameters=300, macs=10)
    metrics = compute_metrics({name: [True] for name in OUTCOME_NAMES}, base, zeroed)
    assert metrics["sparsity"] == 70.0
    assert metrics["compression_ratio"] == 3.3333
    # Nothing left: no finite compression ratio.
    empty = SizeFigures(parameters=1000, nonzero_parameters=0, macs=10)
    metrics = compute_metrics({name: [True] for name in OUTCOME_NAMES}, base, empty)
    assert metrics["sparsity"] == 100.0
    assert metrics["compression_ratio"] is None
    # A model without parameters has no sparsity.
    nothing = SizeFigures(parameters=0, nonzero_parameters=0, macs=0)
    assert compute_metrics({name: [True] for name in OUTCOME_NAMES}, nothing, nothing)["sparsity"] is None


@pytest.mark.parametrize("shorter", OUTCOME_NAMES)
def test_length_mismatch_raises(shorter: str) -> None:
    outcomes = {name: [True, False, True] for name in OUTCOME_NAMES}
    outcomes[shorter] = [True, False]
    with pytest.raises(ValueError, match="differ in length"):
        compute_metrics(outcomes, *sizes())


@settings(max_examples=50, deadline=None)
@given(outcomes=outcome_vectors(), extra=st.integers(min_value=1, max_value=5), which=st.sampled_from(OUTCOME_NAMES))
def test_length_mismatch_raises_for_any_lengths(outcomes: dict[str, list[bool]], extra: int, which: str) -> None:
    outcomes[which] = outcomes[which] + [True] * extra
    with pytest.raises(ValueError, match="differ in length"):
        compute_metrics(outcomes, *sizes())


def test_success_rate_length_mismatch_raises() -> None:
    with pytest.raises(ValueError, match=r"shorter|longer"):
        success_rate([True, True], [True])


def test_missing_outcome_raises_naming_it() -> None:
    outcomes = {name: [True] for name in OUTCOME_NAMES if name != "transfer_adversarial"}
    with pytest.raises(ValueError, match="transfer_adversarial"):
        compute_metrics(outcomes, *sizes())


def test_point_metrics_and_outcome_names() -> None:
    assert set(POINT_METRICS) <= EXPECTED_KEYS
    assert set(METRIC_NAMES) == EXPECTED_KEYS and len(METRIC_NAMES) == len(EXPECTED_KEYS)
    # Counts are compared exactly, never with a points tolerance.
    for count in ("samples", "base_parameters", "pruned_nonzero_parameters", "base_macs", "compression_ratio"):
        assert count not in POINT_METRICS
    assert OUTCOME_NAMES == (
        "base_clean",
        "pruned_clean",
        "base_adversarial",
        "pruned_adversarial",
        "transfer_adversarial",
    )


@settings(max_examples=100, deadline=None)
@given(
    outcomes=outcome_vectors(),
    data=st.data(),
)
def test_perturbation_metrics_match_numpy(outcomes: dict[str, list[bool]], data: st.DataObject) -> None:
    n = len(outcomes["base_clean"])
    norm = st.floats(min_value=0.0, max_value=10.0, allow_nan=False)
    base_norms = data.draw(st.lists(norm, min_size=n, max_size=n))
    pruned_norms = data.draw(st.lists(norm, min_size=n, max_size=n))
    fooled = {who: data.draw(st.lists(st.booleans(), min_size=n, max_size=n)) for who in ("base", "pruned", "transfer")}
    metrics = perturbation_metrics(base_norms, pruned_norms, fooled, outcomes)

    assert_rounded(metrics["base_max_perturbation"], float(np.max(base_norms)))
    assert_rounded(metrics["pruned_max_perturbation"], float(np.max(pruned_norms)))
    cases = {
        "base": (base_norms, "base_clean"),
        "pruned": (pruned_norms, "pruned_clean"),
        "transfer": (base_norms, "pruned_clean"),  # the base's examples, judged by the pruned model
    }
    for who, (norms, clean) in cases.items():
        succeeded = np.asarray(outcomes[clean], dtype=bool) & np.asarray(fooled[who], dtype=bool)
        chosen = np.asarray(norms, dtype=np.float64)[succeeded]
        assert_rounded(metrics[f"{who}_median_perturbation"], float(np.median(chosen)) if chosen.size else None)
        assert_rounded(metrics[f"{who}_mean_perturbation"], float(np.mean(chosen)) if chosen.size else None)
    assert set(metrics) == {"base_max_perturbation", "pruned_max_perturbation", *NORM_METRICS}


def test_bounded_attacks_report_only_their_largest_perturbation() -> None:
    outcomes = {name: [True, False] for name in OUTCOME_NAMES}
    assert perturbation_metrics([0.1, 0.05], [0.0, 0.1], None, outcomes) == {
        "base_max_perturbation": 0.1,
        "pruned_max_perturbation": 0.1,
    }
