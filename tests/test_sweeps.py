"""Sweeps (``start..stop/count``) in matrix lines: their expansion, its errors, and the cells they become."""

from __future__ import annotations

import dataclasses
import itertools
import textwrap

import pytest
from conftest import CELL_TEST, TINY_CONFTEST, baseline_tree, plain_settings
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import pytest_advprune.attacks  # registers the built-in attacks
import pytest_advprune.pruning  # noqa: F401  (registers the built-in prunings)
from pytest_advprune.matrix import MatrixError, build_matrix
from pytest_advprune.options import Settings
from pytest_advprune.registry import ATTACKS, register_attack
from pytest_advprune.specs import SpecError, expand_attack, expand_pruning, parse_attack, parse_pruning

# --- expansion --------------------------------------------------------------------------------------------


def test_attack_sweep_of_the_named_primary() -> None:
    specs = expand_attack("pgd_linf:eps=0.02..0.2/10")
    assert [spec.id for spec in specs] == [
        "pgd_linf_0.02",
        "pgd_linf_0.04",
        "pgd_linf_0.06",
        "pgd_linf_0.08",
        "pgd_linf_0.1",
        "pgd_linf_0.12",
        "pgd_linf_0.14",
        "pgd_linf_0.16",
        "pgd_linf_0.18",
        "pgd_linf_0.2",
    ]
    # Each value is the spec written out by hand: same parameters, same id.
    assert specs == [parse_attack(f"pgd_linf:eps={spec.kwargs['eps']!r}") for spec in specs]


def test_bare_primary_sweep_is_the_same_as_the_named_one() -> None:
    assert expand_attack("pgd_linf:0.02..0.2/10") == expand_attack("pgd_linf:eps=0.02..0.2/10")


def test_pruning_amount_sweep() -> None:
    specs = expand_pruning("channel:0.1..0.7/7")
    assert [spec.id for spec in specs] == [f"channel_0.{i}" for i in range(1, 8)]
    assert specs == [parse_pruning(f"channel:0.{i}") for i in range(1, 8)]


def test_int_parameter_sweep() -> None:
    specs = expand_attack("pgd_linf:eps=0.1,steps=10..50/5")
    assert [spec.kwargs["steps"] for spec in specs] == [10, 20, 30, 40, 50]
    assert all(type(spec.kwargs["steps"]) is int for spec in specs)
    assert [spec.id for spec in specs] == [f"pgd_linf_0.1_steps{n}" for n in (10, 20, 30, 40, 50)]


def test_several_sweeps_give_their_cartesian_product_in_order() -> None:
    specs = expand_attack("pgd_linf:eps=0.1..0.3/3,steps=10..20/2,restarts=1")
    assert [spec.id for spec in specs] == [
        "pgd_linf_0.1_restarts1_steps10",
        "pgd_linf_0.1_restarts1_steps20",
        "pgd_linf_0.2_restarts1_steps10",
        "pgd_linf_0.2_restarts1_steps20",
        "pgd_linf_0.3_restarts1_steps10",
        "pgd_linf_0.3_restarts1_steps20",
    ]


def test_endpoints_are_exact_and_interior_values_clean() -> None:
    # 0.1 + 0.1/3 * i carries float error (0.13333333333333333, 0.16666666666666669): rounded to 10 digits.
    specs = expand_attack("fgsm:0.1..0.2/4")
    assert [spec.kwargs["eps"] for spec in specs] == [0.1, 0.1333333333, 0.1666666667, 0.2]
    # The ends are taken as written, even beyond 10 significant digits.
    ends = expand_attack("fgsm:0.012345678912345..0.98765432198765/3")
    assert ends[0].kwargs["eps"] == 0.012345678912345 and ends[-1].kwargs["eps"] == 0.98765432198765


def test_specs_without_a_sweep_are_parsed_as_before() -> None:
    assert expand_attack("pgd_linf:eps=0.1,steps=20") == [parse_attack("pgd_linf:eps=0.1,steps=20")]
    assert expand_attack("pgd_linf") == [parse_attack("pgd_linf")]
    assert expand_pruning("channel:0.5") == [parse_pruning("channel:0.5")]
    assert expand_pruning("channel") == [parse_pruning("channel")]


def test_negative_zero_start_has_the_id_of_zero() -> None:
    assert [spec.id for spec in expand_pruning("channel:-0.0..0.5/2")] == ["channel_0.0", "channel_0.5"]


@settings(max_examples=100, deadline=None)
@given(
    start=st.floats(min_value=0.0, max_value=10.0),
    stop=st.floats(min_value=0.0, max_value=10.0),
    count=st.integers(min_value=2, max_value=20),
)
def test_float_sweep_properties(start: float, stop: float, count: int) -> None:
    assume(stop - start > 1e-6)
    specs = expand_attack(f"fgsm:eps={start!r}..{stop!r}/{count}")
    values = [spec.kwargs["eps"] for spec in specs]
    assert len(values) == count
    assert values[0] == start and values[-1] == stop
    assert all(low < high for low, high in itertools.pairwise(values))  # strictly increasing, so distinct
    ids = [spec.id for spec in specs]
    assert len(set(ids)) == count
    for spec in specs:
        number = spec.id.removeprefix("fgsm_")
        assert parse_attack(f"fgsm:{number}") == spec  # the id parses back into the very spec
    for value in values[1:-1]:
        assert float(f"{value:.10g}") == value  # clean: at most 10 significant digits


@settings(max_examples=100, deadline=None)
@given(
    start=st.floats(min_value=0.0, max_value=0.98),
    width=st.floats(min_value=0.01, max_value=0.99),
    count=st.integers(min_value=2, max_value=20),
)
def test_pruning_sweep_properties(start: float, width: float, count: int) -> None:
    stop = min(start + width, 0.99)
    assume(stop - start >= 1e-3)
    specs = expand_pruning(f"random_unstructured:{start!r}..{stop!r}/{count}")
    amounts = [spec.amount for spec in specs]
    assert (len(amounts), amounts[0], amounts[-1]) == (count, start, stop)
    assert all(low < high for low, high in itertools.pairwise(amounts))
    assert [parse_pruning(spec.id.replace("random_unstructured_", "random_unstructured:")) for spec in specs] == specs


@settings(max_examples=100, deadline=None)
@given(
    start=st.integers(min_value=1, max_value=100), step=st.integers(min_value=1, max_value=50), count=st.integers(2, 20)
)
def test_int_sweep_properties(start: int, step: int, count: int) -> None:
    stop = start + step * (count - 1)
    specs = expand_attack(f"pgd_linf:steps={start}..{stop}/{count}")
    assert [spec.kwargs["steps"] for spec in specs] == list(range(start, stop + 1, step))
    assert [parse_attack(f"pgd_linf:steps={spec.id.split('_steps')[1]}") for spec in specs] == specs


# --- errors -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "fragments"),
    [
        ("pgd_linf:eps=0.02..0.2", ["needs a count", "START..STOP/COUNT"]),
        ("pgd_linf:eps=0.02..0.2/1", ["count 1", "at least 2", "without '..'"]),
        ("pgd_linf:eps=0.02..0.2/x", ["count 'x'", "not a whole number"]),
        ("pgd_linf:eps=0.2..0.02/3", ["starts at 0.2, not below its stop 0.02", "ascending"]),
        ("pgd_linf:eps=0.1..0.1/3", ["starts at 0.1, not below its stop 0.1", "without '..'"]),
        ("pgd_linf:eps=a..0.2/3", ["end 'a'", "not a number", "'0.02..0.2/10'"]),
        ("pgd_linf:eps=0.1..inf/3", ["end 'inf'", "finite"]),
        ("pgd_linf:eps=0.1...0.2/3", ["end '.0.2'", "not a number"]),
        ("pgd_linf:steps=1.5..10/3", ["end '1.5'", "whole number (the parameter is an int)"]),
        (
            "pgd_linf:steps=10..50/4",
            ["does not give whole values", "13.3333 apart", "counts that work: 2, 3, 5, 6, 9, 11"],
        ),
        ("pgd_linf:random_start=0..1/2", ["random_start='0..1/2' is a sweep", "bool parameter", "one line per value"]),
        ("pgd_linf:stepz=1..3/3", ["unknown parameter 'stepz'", "Accepted: alpha, early_stop"]),
        ("pgd_linf:eps=0.1..0.2/3,eps=0.3", ["eps is swept and also set elsewhere", "set it once"]),
        ("pgd_linf:0.1..0.2/3,eps=0.3", ["eps is swept and also set elsewhere"]),
        ("fgsm:1..1.000000001/3", ["too narrow for 3 values", "10 significant digits", "smaller count"]),
        # A value of the sweep that the ordinary parser rejects: its message, and the sweep named.
        ("pgd_linf:eps=-0.1..0.1/3", ["eps=-0.1 is negative", "value of the sweep 'pgd_linf:eps=-0.1..0.1/3'"]),
        ("pgd_linf:steps=0..10/3", ["steps=0 must be a positive integer", "narrow its range"]),
        # An error in the rest of the line is not blamed on the sweep.
        ("pgd_linf:eps=0.1..0.2/2,steps=abc", ["steps='abc' is not a valid int", "(in the sweep"]),
    ],
)
def test_bad_attack_sweeps_name_the_line_the_value_and_the_fix(text: str, fragments: list[str]) -> None:
    with pytest.raises(SpecError) as info:
        expand_attack(text)
    message = str(info.value)
    assert repr(text) in message
    for fragment in fragments:
        assert fragment in message
    assert "narrow its range" not in message or "value of the sweep" in message


@pytest.mark.parametrize(
    ("text", "fragments"),
    [
        ("channel:0.5..1.0/3", ["amount 1.0 is outside [0, 1)", "value of the sweep 'channel:0.5..1.0/3'"]),
        ("channel:-0.5..0.5/3", ["amount -0.5 is outside [0, 1)", "narrow its range"]),
        ("channel:0.1..0.7", ["needs a count"]),
        ("channel:0.1..0.7/0", ["count 0", "at least 2"]),
        ("channel:0.7..0.1/7", ["not below its stop", "ascending"]),
        ("channel:x..0.7/7", ["end 'x'", "not a number"]),
    ],
)
def test_bad_pruning_sweeps_name_the_line_the_value_and_the_fix(text: str, fragments: list[str]) -> None:
    with pytest.raises(SpecError) as info:
        expand_pruning(text)
    message = str(info.value)
    assert repr(text) in message
    for fragment in fragments:
        assert fragment in message


def test_str_parameters_and_bare_values_without_a_primary_are_not_swept() -> None:
    try:

        @register_attack("advprune_test_sweep", mode="fast", value=1.0)
        def sweepable(model: object, mode: str, value: float) -> None:
            return None

        with pytest.raises(SpecError, match=r"mode='a\.\.b/2' is a sweep, but mode is a str parameter"):
            expand_attack("advprune_test_sweep:mode=a..b/2")
        with pytest.raises(SpecError, match="needs a name"):
            expand_attack("advprune_test_sweep:0.1..0.2/2")
        assert [spec.id for spec in expand_attack("advprune_test_sweep:value=1..2/2")] == [
            "advprune_test_sweep_value1.0",
            "advprune_test_sweep_value2.0",
        ]
    finally:
        ATTACKS.remove("advprune_test_sweep")


# --- the matrix -------------------------------------------------------------------------------------------


def matrix_settings(prunings: tuple[str, ...], attacks: tuple[str, ...], models: tuple[str, ...]) -> Settings:
    return plain_settings(model_specs=models, pruning_specs=prunings, attack_specs=attacks)


def test_a_sweep_line_is_its_values_written_one_by_one() -> None:
    swept = build_matrix(
        matrix_settings(("channel:0.1..0.3/3",), ("fgsm:0.1..0.3/3 for model=lenet",), ("lenet", "mlp"))
    )
    listed = build_matrix(
        matrix_settings(
            ("channel:0.1", "channel:0.2", "channel:0.3"),
            ("fgsm:0.1 for model=lenet", "fgsm:0.2 for model=lenet", "fgsm:0.3 for model=lenet"),
            ("lenet", "mlp"),
        )
    )
    assert [cell.id for cell in swept.cells] == [cell.id for cell in listed.cells]
    assert [cell.id for cell in swept.cells][:3] == [
        "lenet-channel_0.1-fgsm_0.1",
        "lenet-channel_0.1-fgsm_0.2",
        "lenet-channel_0.1-fgsm_0.3",
    ]
    # The scope holds for every value: mlp gets none of the three attacks.
    assert swept.attacks_for("mlp") == []
    assert [entry.scope.text for entry in swept.attacks] == ["model=lenet"] * 3
    assert [entry.line for entry in swept.attacks] == ["fgsm:0.1..0.3/3 for model=lenet"] * 3


def test_a_value_given_twice_stops_the_run_naming_both_lines() -> None:
    declared = matrix_settings(("channel:0.5",), ("pgd_linf:0.02..0.2/10", "pgd_linf:eps=0.1"), ("lenet", "mlp"))
    with pytest.raises(MatrixError) as info:
        build_matrix(declared)
    message = str(info.value)
    assert "'pgd_linf:0.02..0.2/10' and 'pgd_linf:eps=0.1' both give model 'lenet' 'pgd_linf_0.1'" in message
    assert "list each once per model (a sweep gives every value of its range" in message
    # Scoped apart, the same values are fine.
    scoped = build_matrix(
        dataclasses.replace(declared, attack_specs=("pgd_linf:0.02..0.2/10 for mlp", "pgd_linf:eps=0.1 for lenet"))
    )
    assert [spec.id for spec in scoped.attacks_for("lenet")] == ["pgd_linf_0.1"]
    assert len(scoped.attacks_for("mlp")) == 10


def test_a_bad_sweep_in_the_ini_names_its_source() -> None:
    with pytest.raises(MatrixError, match=r"'channel:0.5..1.0/3'.*narrow its range.*\(from ini advprune_prunings\)"):
        build_matrix(matrix_settings(("channel:0.5..1.0/3",), ("fgsm",), ("lenet",)))


@pytest.mark.parametrize(
    ("prunings", "attacks", "cells"),
    [
        (("channel:0.1..0.9/100000",), ("fgsm:0.1",), "200,000 cells"),  # 2 models
        (("channel:0.1..0.9/1000000000",), ("fgsm:0.1",), "2,000,000,000 cells"),
        (("channel:0.5",), ("pgd_linf:eps=0.01..0.3/1000,steps=1..1000/1000",), "2,000,000 cells"),
        (("channel:0.5",), ("fgsm:0.1..0.3/" + "9" * 5000,), "[0-9,]+ cells"),  # more digits than int() takes
    ],
)
def test_a_matrix_beyond_the_cell_limit_is_refused_before_it_is_expanded(
    prunings: tuple[str, ...], attacks: tuple[str, ...], cells: str
) -> None:
    settings = matrix_settings(prunings, attacks, ("lenet", "mlp"))
    with pytest.raises(MatrixError, match=rf"has {cells}.*limit of 10,000.*--advprune-max-cells=N"):
        build_matrix(settings)


def test_the_cell_limit_counts_scoped_lines_per_model_and_can_be_raised() -> None:
    lines = (("channel:0.1..0.9/9",), ("fgsm:0.01..0.3/30 for model=lenet", "pgd_l2:0.5"))
    settings = matrix_settings(*lines, ("lenet", "mlp"))  # lenet: 9 x 31, mlp: 9 x 1 = 288 cells
    assert len(build_matrix(dataclasses.replace(settings, max_cells=288)).cells) == 288
    with pytest.raises(MatrixError, match="has 288 cells"):
        build_matrix(dataclasses.replace(settings, max_cells=287))


def test_the_cell_limit_option_is_validated_and_applied(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(TINY_CONFTEST)
    pytester.makeini(SWEEP_INI)
    pytester.makepyfile(test_cells=CELL_TEST)
    refused = pytester.runpytest("--collect-only", "-q", "--advprune-max-cells=2")
    assert refused.ret != 0
    refused.stdout.fnmatch_lines(["*has 3 cells*more than the limit of 2*"])
    assert "Traceback" not in refused.stdout.str()
    pytester.runpytest("--collect-only", "-q", "--advprune-max-cells=3").assert_outcomes()
    bad = pytester.runpytest("--advprune-max-cells=lots")
    bad.stderr.fnmatch_lines(["*--advprune-max-cells='lots' is not an integer*"])


# --- a project --------------------------------------------------------------------------------------------

SWEEP_INI = textwrap.dedent(
    """
    [pytest]
    advprune_prunings = l1_unstructured:0.5
    advprune_attacks = pgd_linf:eps=0.05..0.15/3,steps=3
    advprune_finetune_epochs = 1
    advprune_max_clean_drop = 100
    """
)

SWEPT_IDS = [
    "tiny-linear-l1_unstructured_0.5-pgd_linf_0.05_steps3",
    "tiny-linear-l1_unstructured_0.5-pgd_linf_0.1_steps3",
    "tiny-linear-l1_unstructured_0.5-pgd_linf_0.15_steps3",
]


@pytest.fixture
def sweep_project(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makeconftest(TINY_CONFTEST)
    pytester.makeini(SWEEP_INI)
    pytester.makepyfile(test_cells=CELL_TEST)
    return pytester


def test_a_sweep_runs_as_ordinary_cells_with_their_own_baselines(sweep_project: pytest.Pytester) -> None:
    collected = sweep_project.runpytest("--collect-only", "-q")
    cells = [line.split("[")[1].rstrip("]") for line in collected.outlines if "::test_robustness[" in line]
    assert sorted(cells) == sorted(SWEPT_IDS)

    only = sweep_project.runpytest("--collect-only", "-q", "--advprune-attacks=pgd_linf_0.1_*")
    assert [line.split("[")[1].rstrip("]") for line in only.outlines if "::test_robustness[" in line] == [SWEPT_IDS[1]]

    sweep_project.runpytest("--update-baselines").assert_outcomes(passed=3)
    assert sorted(baseline_tree(sweep_project.path)) == [
        "tiny-linear/l1_unstructured_0.5/pgd_linf_0.05_steps3.json",
        "tiny-linear/l1_unstructured_0.5/pgd_linf_0.15_steps3.json",
        "tiny-linear/l1_unstructured_0.5/pgd_linf_0.1_steps3.json",
    ]


def test_a_bad_sweep_stops_the_run_with_one_message(sweep_project: pytest.Pytester) -> None:
    sweep_project.makeini(SWEEP_INI.replace("steps=3", "steps=10..50/4"))
    result = sweep_project.runpytest()
    assert result.ret != 0
    result.stdout.fnmatch_lines(["*'pgd_linf:eps=0.05..0.15/3,steps=10..50/4'*counts that work: 2, 3, 5, 6, 9, 11*"])
    assert "Traceback" not in result.stdout.str()
