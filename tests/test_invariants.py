"""Invariants, scopes and the regression test of the gate, against independent computations."""

from __future__ import annotations

import dataclasses
import re
from typing import Any

import pytest
from conftest import plain_settings
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import binomtest

import pytest_advprune.attacks  # registers the built-in attacks
import pytest_advprune.pruning  # noqa: F401  (registers the built-in prunings)
from pytest_advprune.baselines import Baseline
from pytest_advprune.cell import CellResult
from pytest_advprune.gate import regressions, worst_change
from pytest_advprune.invariants import (
    InvariantError,
    check_invariants,
    effective_rule,
    parse_invariants,
    scope_fields,
)
from pytest_advprune.matrix import MatrixError, build_matrix
from pytest_advprune.metrics import OUTCOME_NAMES, SizeFigures, compute_metrics
from pytest_advprune.options import Settings
from pytest_advprune.scopes import ScopeError, split_scope
from pytest_advprune.specs import CellSpec, parse_attack, parse_pruning

SIZE = SizeFigures(parameters=100, nonzero_parameters=50, macs=1000)


def result_of(outcomes: dict[str, list[bool]], cell: str = "net-l1_unstructured_0.5-fgsm_0.1") -> CellResult:
    model, pruning, attack = cell.split("-")
    spec = CellSpec(model, parse_pruning(pruning.replace("_0.", ":0.")), parse_attack(attack.replace("_", ":")))
    provenance = {"dataset": {"name": "digits"}, "samples": len(outcomes["base_clean"])}
    return CellResult(spec, compute_metrics(outcomes, SIZE, SIZE), outcomes, provenance)


def outcomes_with(base_adversarial: list[bool], pruned_adversarial: list[bool]) -> dict[str, list[bool]]:
    n = len(base_adversarial)
    return {
        "base_clean": [True] * n,
        "pruned_clean": [True] * n,
        "base_adversarial": base_adversarial,
        "pruned_adversarial": pruned_adversarial,
        "transfer_adversarial": [True] * n,
    }


# --- scopes ---------------------------------------------------------------------------------------------


def test_a_scope_ands_keys_and_ors_patterns_of_one_key() -> None:
    entry, scope = split_scope(
        "fgsm:0.1 for model=res*, model=vgg, dataset=cifar*", keys=("model", "dataset"), bare_key="model", source="x"
    )
    assert entry == "fgsm:0.1"
    assert scope.matches(model="resnet", dataset="cifar10")
    assert scope.matches(model="vgg", dataset="cifar100")
    assert not scope.matches(model="vgg", dataset="digits")
    assert not scope.matches(model="lenet", dataset="cifar10")
    assert split_scope("fgsm:0.1", keys=("model",), bare_key="model", source="x")[1].matches(model="anything")
    _, bare = split_scope("3 for lenet-*", keys=("cell",), bare_key="cell", source="x")
    assert bare.matches(cell="lenet-channel_0.5-fgsm_0.1") and not bare.matches(cell="mobilenet-x-y")


@pytest.mark.parametrize("line", ["3 for colour=red", "3 for model=", "3 for a for b"])
def test_bad_scopes_are_refused(line: str) -> None:
    with pytest.raises(ScopeError, match="ini key"):
        split_scope(line, keys=("model",), bare_key="model", source="ini key")


# --- parsing ---------------------------------------------------------------------------------------------


def test_defaults_and_the_last_matching_line_wins() -> None:
    invariants = parse_invariants(
        ["5 for model=vgg", "off for vgg-channel_*"],
        ["10", "transfer_robust_accuracy = 4", "20 for model=mobilenet"],
        ["pruned_robust_accuracy >= 40 for resnet-*", "pruned_robust_accuracy >= 30 for *-fgsm_*", "pruned_macs <= 9"],
    )

    def fields(cell: str) -> dict[str, str]:
        model, pruning, attack = cell.split("-")
        return {"cell": cell, "model": model, "dataset": "digits", "pruning": pruning, "attack": attack}

    def limit(rules: Any, metric: str, cell: str, operator: str = "<=") -> float | None:
        rule = effective_rule(rules, metric, fields(cell), operator)
        return None if rule is None else rule.value

    drop = invariants.max_clean_drop
    assert limit(drop, "clean_accuracy_drop", "lenet-channel_0.5-fgsm_0.1") == 3.0  # the default
    assert limit(drop, "clean_accuracy_drop", "vgg-l1_filter_0.3-fgsm_0.1") == 5.0
    assert limit(drop, "clean_accuracy_drop", "vgg-channel_0.5-fgsm_0.1") is None  # off
    gap = invariants.max_robustness_gap
    assert limit(gap, "pruned_robust_accuracy", "lenet-channel_0.5-fgsm_0.1") == 10.0
    assert limit(gap, "transfer_robust_accuracy", "lenet-channel_0.5-fgsm_0.1") == 4.0
    assert limit(gap, "transfer_robust_accuracy", "mobilenet-channel_0.5-fgsm_0.1") == 20.0
    floors = invariants.floors
    assert limit(floors, "pruned_robust_accuracy", "resnet-channel_0.5-pgd_0.1", ">=") == 40.0
    assert limit(floors, "pruned_robust_accuracy", "resnet-channel_0.5-fgsm_0.1", ">=") == 30.0  # later line
    assert limit(floors, "pruned_robust_accuracy", "vgg-channel_0.5-pgd_0.1", ">=") is None
    assert limit(floors, "pruned_macs", "vgg-channel_0.5-pgd_0.1") == 9.0


@pytest.mark.parametrize(
    ("drop", "gap", "floors", "message"),
    [
        (["-1"], [], [], "the limit must be >= 0"),
        (["three"], [], [], "'three' is not a number"),
        ([], ["clean_accuracy_drop = 2"], [], "names metric 'clean_accuracy_drop'"),
        ([], ["nan"], [], "'nan' is not a number"),
        ([], [], ["accuracy >= 3"], "unknown metric 'accuracy'"),
        ([], [], ["sparsity = 3"], "is not 'metric >= value"),
    ],
)
def test_bad_lines_name_the_key_and_the_line(drop: list[str], gap: list[str], floors: list[str], message: str) -> None:
    with pytest.raises(InvariantError, match=message):
        parse_invariants(drop, gap, floors)


# --- checking, against independent computations ---------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(
    pairs=st.lists(st.tuples(st.booleans(), st.booleans()), min_size=1, max_size=120),
    limit=st.sampled_from([0.0, 2.0, 5.0, 15.0]),
    alpha=st.sampled_from([0.01, 0.05, 0.2]),
)
def test_the_gap_is_violated_exactly_when_large_and_significant(
    pairs: list[tuple[bool, bool]], limit: float, alpha: float
) -> None:
    base = [b for b, _ in pairs]
    pruned = [p for _, p in pairs]
    result = result_of(outcomes_with(base, pruned))
    invariants = parse_invariants(["off"], [f"pruned_robust_accuracy = {limit}", "transfer_robust_accuracy = off"], [])
    violated = [v.metric for v in check_invariants(result, invariants, alpha)]

    # Independent: the gap from the raw counts, McNemar's exact test as scipy's two-sided binomial test.
    n = len(pairs)
    gap = 100.0 * (sum(base) - sum(pruned)) / n
    worse = sum(1 for b, p in pairs if b and not p)
    better = sum(1 for b, p in pairs if p and not b)
    p_value = binomtest(worse, worse + better, 0.5).pvalue if worse + better else 1.0
    # Both sides use the metrics as stored (4 decimals); compare away from the boundaries.
    expected = gap > limit + 1e-3 and p_value < alpha * (1 - 1e-9)
    if abs(gap - limit) > 1e-3 and abs(p_value - alpha) > 1e-9:
        assert (violated == ["pruned_robust_accuracy"]) == expected, (gap, p_value)


def test_floors_clean_drop_and_scopes_in_one_check() -> None:
    n = 20
    outcomes = outcomes_with([True] * 10 + [False] * 10, [True] * 10 + [False] * 10)
    outcomes["pruned_clean"] = [True] * 15 + [False] * 5  # a drop of 25 points
    result = result_of(outcomes, "resnet-channel_0.5-fgsm_0.1")
    assert scope_fields(result) == {
        "cell": "resnet-channel_0.5-fgsm_0.1",
        "model": "resnet",
        "dataset": "digits",
        "pruning": "channel_0.5",
        "attack": "fgsm_0.1",
    }
    invariants = parse_invariants([], [], ["pruned_robust_accuracy >= 60 for dataset=digits", "samples <= 10"])
    found = {(v.invariant, v.metric) for v in check_invariants(result, invariants, 0.05)}
    assert found == {
        ("clean-accuracy drop", "clean_accuracy_drop"),
        ("floor", "pruned_robust_accuracy"),
        ("ceiling", "samples"),
    }
    assert result.metrics["samples"] == n


# --- the gate's notion of "worse" ------------------------------------------------------------------------


def baseline_of(result: CellResult) -> Baseline:
    from pathlib import Path

    return Baseline(Path("b.json"), dict(result.provenance), dict(result.metrics), dict(result.outcomes))


def gate_settings() -> Settings:
    return plain_settings()


def test_a_rate_that_becomes_undefined_is_not_a_measured_regression() -> None:
    """A model that gets no clean sample right has no attack success rate (None): the accuracies carry the
    regression, and describing the worst change never meets a None."""
    n = 40
    before = {name: [True] * 30 + [False] * 10 for name in OUTCOME_NAMES}
    after = {name: [False] * n for name in OUTCOME_NAMES}
    old, new = result_of(before), result_of(after)
    assert new.metrics["base_attack_success_rate"] is None
    worse = regressions(new, baseline_of(old), gate_settings())
    assert {change.metric for change in worse} == {
        "base_clean_accuracy",
        "pruned_clean_accuracy",
        "base_robust_accuracy",
        "pruned_robust_accuracy",
        "transfer_robust_accuracy",
    }
    assert worst_change(worse)["difference"] == -75.0


@pytest.mark.parametrize(
    ("old", "new", "failing", "improved"),
    [(1.0, 0.91, False, False), (1.0, 0.89, True, False), (1.0, 1.11, False, True), (0.5, 0.5, False, False)],
)
def test_a_minimal_attacks_norms_are_gated_relatively_and_max_perturbation_never(
    old: float, new: float, failing: bool, improved: bool
) -> None:
    """A pruned model whose median DeepFool perturbation shrinks by more than 10% is easier to fool; the
    largest perturbation is informational (a bounded attack's is its eps) and never fails a cell."""
    from pytest_advprune.gate import compare_metrics

    outcomes = {name: [True] * 30 + [False] * 10 for name in OUTCOME_NAMES}
    before, after = result_of(outcomes), result_of(outcomes)
    before.metrics.update(pruned_median_perturbation=old, pruned_max_perturbation=0.5)
    after.metrics.update(pruned_median_perturbation=new, pruned_max_perturbation=0.7)
    changes = compare_metrics(after, baseline_of(before), gate_settings())
    assert [(c.metric, c.failing, c.improved) for c in changes] == (
        [("pruned_median_perturbation", failing, improved)] if failing or improved else []
    )


@pytest.mark.parametrize(
    ("clean_drop", "floors"),
    [
        ((), ("pruned_robust_accuracy >= 40 for MLP-*",)),  # ids are lower case
        ((), ("pruned_robust_accuracy >= 40 for nosuchmodel-*",)),
        (("5 for model=vgg",), ()),  # a model the matrix does not have
        ((), ("pruned_clean_accuracy >= 50 for attack=pgd_*, model=lenet",)),
    ],
)
def test_a_rule_whose_scope_selects_no_cell_is_refused(clean_drop: tuple[str, ...], floors: tuple[str, ...]) -> None:
    """A typo in a scope would switch the rule off without a word; matrix lines are refused for it too."""
    settings = plain_settings(
        model_specs=("lenet", "mlp"),
        pruning_specs=("channel:0.5",),
        attack_specs=("fgsm:0.1",),
        invariants=parse_invariants(clean_drop, (), floors),
    )
    line = (clean_drop or floors)[0]
    with pytest.raises(MatrixError, match=rf"{re.escape(repr(line))} selects no cell of the matrix.*lenet-channel_0.5"):
        build_matrix(settings)
    matching = parse_invariants(
        (), (), ("pruned_robust_accuracy >= 40 for mlp-*", "pruned_clean_accuracy >= 1 for dataset=digits")
    )
    assert build_matrix(dataclasses.replace(settings, invariants=matching)).cells
