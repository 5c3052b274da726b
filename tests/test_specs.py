"""specs.py and registry.py: parsing cell specs, their ids, seeds, and the name registries."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import pytest_advprune.attacks  # registers the built-in attacks
import pytest_advprune.pruning  # noqa: F401  (registers the built-in prunings)
from pytest_advprune.registry import (
    ATTACKS,
    PRUNINGS,
    AttackEntry,
    PruningEntry,
    Registry,
    RegistryError,
    describe_origin,
    register_attack,
    register_model,
    register_pruning,
)
from pytest_advprune.seeds import derive_seed
from pytest_advprune.specs import (
    AttackSpec,
    CellSpec,
    PruningSpec,
    SpecError,
    VariantSpec,
    format_value,
    parse_attack,
    parse_pruning,
)

BUILTIN_ATTACKS = [
    "apgd_ce",
    "apgd_ce_l2",
    "apgd_dlr",
    "apgd_dlr_l2",
    "apgd_t",
    "autoattack",
    "cw_l2",
    "deepfool",
    "fgsm",
    "mifgsm",
    "pgd_l2",
    "pgd_linf",
    "square",
]
BUILTIN_PRUNINGS = ["channel", "l1_filter", "l1_unstructured", "random_unstructured"]


# --- ids ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("l1_unstructured:0.5", "l1_unstructured_0.5"),
        ("random_unstructured:0.3", "random_unstructured_0.3"),
        (" channel : 0.25 ", "channel_0.25"),
        ("l1_filter:0", "l1_filter_0.0"),
        ("l1_unstructured:5e-1", "l1_unstructured_0.5"),
        ("l1_unstructured:0.50", "l1_unstructured_0.5"),
        ("l1_unstructured:0.125", "l1_unstructured_0.125"),
    ],
)
def test_pruning_ids(text: str, expected: str) -> None:
    assert parse_pruning(text).id == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("pgd_linf:0.1", "pgd_linf_0.1"),
        ("pgd_linf:eps=0.1", "pgd_linf_0.1"),
        ("pgd_linf", "pgd_linf_0.1"),
        ("pgd_linf:eps=0.1,steps=20", "pgd_linf_0.1_steps20"),
        ("pgd_linf:0.1,steps=20", "pgd_linf_0.1_steps20"),
        ("pgd_linf:steps=20", "pgd_linf_0.1_steps20"),
        ("pgd_linf:steps=20,alpha=0.01", "pgd_linf_0.1_alpha0.01_steps20"),
        ("pgd_linf: steps = 20 , eps = 0.05", "pgd_linf_0.05_steps20"),
        ("pgd_linf:random_start=0", "pgd_linf_0.1_random_startFalse"),
        ("fgsm:1", "fgsm_1.0"),
        ("fgsm:0.03", "fgsm_0.03"),
        ("pgd_l2:eps=0.5", "pgd_l2_0.5"),
        ("cw_l2", "cw_l2_0.5"),
        ("deepfool", "deepfool_0.5"),
        ("deepfool:overshoot=0.05", "deepfool_0.5_overshoot0.05"),
        ("square:n_queries=5", "square_0.1_n_queries5"),
    ],
)
def test_attack_ids(text: str, expected: str) -> None:
    assert parse_attack(text).id == expected


def test_cell_and_variant_ids() -> None:
    cell = CellSpec("tiny-mlp", parse_pruning("l1_unstructured:0.5"), parse_attack("pgd_linf:eps=0.1,steps=20"))
    assert cell.id == "tiny-mlp-l1_unstructured_0.5-pgd_linf_0.1_steps20"
    assert VariantSpec("tiny-mlp", None).id == "tiny-mlp-base-b256"
    assert VariantSpec("tiny-mlp", parse_pruning("channel:0.3")).id == "tiny-mlp-channel_0.3-b256"


@pytest.mark.parametrize(
    ("value", "text"),
    [(0.1, "0.1"), (1.0, "1.0"), (20, "20"), (True, "True"), (False, "False"), (2.5e-05, "2.5e-05"), ("x", "x")],
)
def test_format_value(value: Any, text: str) -> None:
    assert format_value(value) == text


@settings(max_examples=200, deadline=None)
@given(value=st.floats(allow_nan=False, allow_infinity=False))
def test_format_value_is_faithful_for_floats(value: float) -> None:
    assert float(format_value(value)) == value


# --- defaults -------------------------------------------------------------------------------------------


def test_attack_defaults() -> None:
    spec = parse_attack("pgd_linf")
    assert spec.kwargs == {
        "eps": 0.1,
        "alpha": 0.0125,
        "steps": 20,
        "random_start": True,
        "restarts": 10,
        "early_stop": True,
    }
    assert spec.explicit == ()
    assert [key for key, _ in spec.params] == sorted(spec.kwargs)
    assert parse_attack("fgsm").kwargs == {"eps": 0.1}
    assert set(parse_attack("pgd_l2").kwargs) == {"eps", "alpha", "steps", "random_start", "restarts", "early_stop"}
    assert set(parse_attack("cw_l2").kwargs) == {"eps", "steps", "search_steps", "initial_c", "kappa", "lr"}
    assert set(parse_attack("square").kwargs) == {"eps", "n_queries", "p_init"}
    for name in BUILTIN_ATTACKS:
        assert parse_attack(name).kwargs == dict(ATTACKS.get(name).defaults)
    # An explicit value replaces only its own default.
    spec = parse_attack("pgd_linf:steps=3")
    assert spec.kwargs == {
        "eps": 0.1,
        "alpha": 0.0125,
        "steps": 3,
        "random_start": True,
        "restarts": 10,
        "early_stop": True,
    }
    assert spec.explicit == ("steps",)


def test_attack_entries_declare_norms() -> None:
    norms = {name: ATTACKS.get(name).norm for name in BUILTIN_ATTACKS}
    assert norms == {
        "apgd_ce": "Linf",
        "apgd_ce_l2": "L2",
        "apgd_dlr": "Linf",
        "apgd_dlr_l2": "L2",
        "apgd_t": "Linf",
        "autoattack": "Linf",
        "cw_l2": "L2",
        "deepfool": "L2",
        "fgsm": "Linf",
        "mifgsm": "Linf",
        "pgd_l2": "L2",
        "pgd_linf": "Linf",
        "square": "Linf",
    }
    assert [name for name in BUILTIN_ATTACKS if ATTACKS.get(name).slow] == ["autoattack"]
    assert [name for name in BUILTIN_ATTACKS if ATTACKS.get(name).minimal] == ["cw_l2", "deepfool"]


def test_pruning_defaults() -> None:
    assert parse_pruning("l1_unstructured") == PruningSpec("l1_unstructured", 0.5)
    assert parse_pruning("random_unstructured").amount == 0.5
    assert parse_pruning("channel").amount == 0.5
    assert parse_pruning("l1_filter").amount == 0.3
    assert parse_pruning("l1_unstructured:0.2").params() == {
        "method": "l1_unstructured",
        "amount": 0.2,
        "fine_tune": True,
    }


def test_specs_are_hashable_values() -> None:
    assert parse_attack("pgd_linf:eps=0.1") == parse_attack("pgd_linf:0.1")
    assert hash(parse_attack("pgd_linf:eps=0.1")) == hash(parse_attack("pgd_linf:0.1"))
    assert parse_attack("pgd_linf:steps=10") != parse_attack("pgd_linf")  # explicit keys differ: so do ids
    assert len({parse_pruning("channel:0.5"), parse_pruning("channel"), parse_pruning("channel:0.3")}) == 2


def test_attack_spec_with_several_explicit_parameters() -> None:
    spec = parse_attack("pgd_linf:eps=0.05,steps=20,random_start=false")
    assert spec.kwargs == {
        "eps": 0.05,
        "alpha": 0.0125,
        "steps": 20,
        "random_start": False,
        "restarts": 10,
        "early_stop": True,
    }
    assert spec.id == "pgd_linf_0.05_random_startFalse_steps20"
    assert isinstance(spec, AttackSpec)


@settings(max_examples=100, deadline=None)
@given(
    eps=st.floats(min_value=0, max_value=10, allow_nan=False),
    steps=st.integers(min_value=1, max_value=10_000),
    random_start=st.booleans(),
)
def test_attack_spec_round_trips_values(eps: float, steps: int, random_start: bool) -> None:
    spec = parse_attack(f"pgd_linf:eps={format_value(eps)},steps={steps},random_start={random_start}")
    assert spec.kwargs["eps"] == eps
    assert spec.kwargs["steps"] == steps
    assert spec.kwargs["random_start"] is random_start
    primary = spec.id.split("_")[2]  # pgd_linf_<eps>_...
    assert float(primary) == eps
    assert parse_attack(f"pgd_linf:{primary}").kwargs["eps"] == eps


# --- unknown names --------------------------------------------------------------------------------------


def test_unknown_attack_lists_registered_names() -> None:
    with pytest.raises(RegistryError) as info:
        parse_attack("pgd_linff:0.1")
    message = str(info.value)
    assert "Unknown attack 'pgd_linff'" in message
    assert ", ".join(BUILTIN_ATTACKS) in message  # sorted
    assert "@register_attack" in message


def test_unknown_pruning_lists_registered_names() -> None:
    with pytest.raises(RegistryError) as info:
        parse_pruning("magnitude:0.5")
    message = str(info.value)
    assert "Unknown pruning 'magnitude'" in message
    assert ", ".join(BUILTIN_PRUNINGS) in message
    assert "@register_pruning" in message


# --- invalid values -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("l1_unstructured:1.5", "1.5"),
        ("l1_unstructured:-0.1", "-0.1"),
        ("l1_unstructured:1", "1.0"),
        ("l1_unstructured:1.0", "1.0"),
        ("l1_unstructured:abc", "'abc'"),
        ("l1_unstructured:", "''"),
        ("l1_unstructured:nan", "nan"),
        ("l1_unstructured:inf", "inf"),
        ("channel:50%", "'50%'"),
    ],
)
def test_invalid_amount_is_a_spec_error_naming_the_value(text: str, shown: str) -> None:
    with pytest.raises(SpecError) as info:
        parse_pruning(text)
    message = str(info.value)
    assert f"amount {shown}" in message
    assert repr(text) in message


@settings(max_examples=100, deadline=None)
@given(amount=st.floats(min_value=0.0, max_value=1.0, exclude_max=True))
def test_valid_amounts_are_accepted(amount: float) -> None:
    spec = parse_pruning(f"random_unstructured:{amount!r}")
    assert spec.amount == amount
    assert float(spec.id.removeprefix("random_unstructured_")) == amount


@settings(max_examples=100, deadline=None)
@given(amount=st.one_of(st.floats(max_value=-1e-300), st.floats(min_value=1.0)))
def test_amounts_outside_unit_interval_are_rejected(amount: float) -> None:
    with pytest.raises(SpecError, match=r"outside \[0, 1\)"):
        parse_pruning(f"l1_unstructured:{amount!r}")


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("fgsm:-0.1", "eps=-0.1 is negative"),
        ("pgd_linf:eps=-0.01", "eps=-0.01 is negative"),
        ("pgd_linf:alpha=-1", "alpha=-1.0 is negative"),
        ("cw_l2:initial_c=-1", "initial_c=-1.0 is negative"),
        ("pgd_linf:steps=0", "steps=0 must be a positive integer"),
        ("pgd_linf:restarts=0", "restarts=0 must be a positive integer"),
        ("square:n_queries=-5", "n_queries=-5 must be a positive integer"),
        ("pgd_linf:steps=2.5", "steps='2.5' is not a valid int"),
        ("pgd_linf:eps=abc", "eps='abc' is not a valid float"),
        ("pgd_linf:eps=inf", "eps='inf' is not a valid float"),
        ("pgd_linf:eps=nan", "eps='nan' is not a valid float"),
        ("pgd_linf:random_start=yes", "random_start='yes' is not a valid bool"),
        ("fgsm:0.1,", "eps='' is not a valid float"),
    ],
)
def test_invalid_attack_values_are_spec_errors(text: str, fragment: str) -> None:
    with pytest.raises(SpecError, match="Attack") as info:
        parse_attack(text)
    assert fragment in str(info.value)


def test_unknown_parameter_lists_accepted_ones() -> None:
    with pytest.raises(SpecError) as info:
        parse_attack("pgd_linf:eps=0.1,stepz=3")
    message = str(info.value)
    assert "unknown parameter 'stepz'" in message
    assert "Accepted: alpha, early_stop, eps, random_start, restarts, steps." in message


def test_bare_value_needs_a_primary_parameter() -> None:
    try:

        @register_attack("advprune_test_noprimary", value=1.0)
        def noprimary(model: Any, value: float) -> Any:
            return None

        with pytest.raises(SpecError, match="needs a name"):
            parse_attack("advprune_test_noprimary:0.5")
        assert parse_attack("advprune_test_noprimary:value=0.5").id == "advprune_test_noprimary_value0.5"
        assert parse_attack("advprune_test_noprimary").id == "advprune_test_noprimary"
    finally:
        ATTACKS.remove("advprune_test_noprimary")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("true", True), ("True", True), (" TRUE ", True), ("1", True), ("false", False), ("FALSE", False), ("0", False)],
)
def test_bool_coercion(raw: str, expected: bool) -> None:
    value = parse_attack(f"pgd_linf:random_start={raw}").kwargs["random_start"]
    assert value is expected


@settings(max_examples=100, deadline=None)
@given(steps=st.integers(min_value=1, max_value=10**9))
def test_int_coercion(steps: int) -> None:
    value = parse_attack(f"pgd_linf:steps={steps}").kwargs["steps"]
    assert type(value) is int
    assert value == steps


def test_float_parameter_given_as_integer_text_becomes_float() -> None:
    value = parse_attack("fgsm:1").kwargs["eps"]
    assert type(value) is float
    assert value == 1.0
    assert type(parse_attack("cw_l2:steps=5,kappa=0").kwargs["kappa"]) is float


# --- seeds ----------------------------------------------------------------------------------------------


def test_derive_seed_matches_its_definition() -> None:
    # sha256 of the parts joined by the unit separator; first 4 bytes, little endian, 31 bits.
    digest = hashlib.sha256(b"0\x1fwhitebox\x1fcell").digest()
    assert derive_seed(0, "whitebox", "cell") == int.from_bytes(digest[:4], "little") % 2**31


names = st.text(alphabet=st.characters(exclude_characters="\x1f", exclude_categories=["Cs"]), max_size=12)


@settings(max_examples=200, deadline=None)
@given(base=st.integers(min_value=0, max_value=2**63), parts=st.lists(names, max_size=4))
def test_derive_seed_is_deterministic_and_31_bit(base: int, parts: list[str]) -> None:
    seed = derive_seed(base, *parts)
    assert seed == derive_seed(base, *parts)
    assert isinstance(seed, int)
    assert 0 <= seed < 2**31


@settings(max_examples=200, deadline=None)
@given(
    base=st.integers(min_value=0, max_value=10**6),
    first=st.lists(names, max_size=3),
    second=st.lists(names, max_size=3),
)
def test_derive_seed_differs_for_different_parts(base: int, first: list[str], second: list[str]) -> None:
    assume(first != second)
    assert derive_seed(base, *first) != derive_seed(base, *second)


@settings(max_examples=100, deadline=None)
@given(base=st.integers(min_value=0, max_value=10**6), other=st.integers(min_value=0, max_value=10**6), part=names)
def test_derive_seed_differs_for_different_base_seeds(base: int, other: int, part: str) -> None:
    assume(base != other)
    assert derive_seed(base, part) != derive_seed(other, part)


def test_derive_seed_separates_parts() -> None:
    assert derive_seed(0, "ab", "c") != derive_seed(0, "a", "bc")
    assert derive_seed(0, "abc") != derive_seed(0, "ab", "c")
    assert derive_seed(1, "2") != derive_seed(12)


# --- registries -----------------------------------------------------------------------------------------


def _no_attack(model: Any) -> Any:
    """An attack factory that is never called."""
    return None


def _first() -> None:
    """One registration."""


def _second() -> None:
    """Another registration with the same name."""


def test_duplicate_registration_names_both_origins() -> None:
    registry: Registry[PruningEntry] = Registry("pruning", "register_pruning")
    registry.add(PruningEntry("dup", lambda m, a, c: m, describe_origin(_first)))
    with pytest.raises(RegistryError) as info:
        registry.add(PruningEntry("dup", lambda m, a, c: m, describe_origin(_second)))
    message = str(info.value)
    assert "Pruning 'dup' is registered twice" in message
    assert f"{__name__}._first" in message
    assert f"{__name__}._second" in message
    assert __file__ in message
    assert registry.names() == ["dup"]


def test_duplicate_registration_through_the_decorator() -> None:
    try:
        register_pruning("advprune_test_dup")(_first)
        with pytest.raises(RegistryError) as info:
            register_pruning("advprune_test_dup")(_second)
        message = str(info.value)
        assert "_first" in message and "_second" in message
        assert PRUNINGS.get("advprune_test_dup").origin == describe_origin(_first)
    finally:
        PRUNINGS.remove("advprune_test_dup")
    assert "advprune_test_dup" not in PRUNINGS


def test_builtin_re_registration_from_the_same_origin_is_allowed() -> None:
    registry: Registry[AttackEntry] = Registry("attack", "register_attack")
    first = AttackEntry("a", _no_attack, "mod.a", builtin=True)
    second = AttackEntry("a", _no_attack, "mod.a", builtin=True)
    registry.add(first)
    registry.add(second)
    assert registry.get("a") is second
    with pytest.raises(RegistryError, match="registered twice"):
        registry.add(AttackEntry("a", _no_attack, "elsewhere.a", builtin=True))
    with pytest.raises(RegistryError, match="registered twice"):
        registry.add(AttackEntry("a", _no_attack, "mod.a", builtin=False))


def test_registry_filter_with_fnmatch_patterns_returns_sorted_names() -> None:
    registry: Registry[AttackEntry] = Registry("attack", "register_attack")
    for name in ["pgd_linf", "fgsm", "pgd_l2", "square", "mifgsm", "PGD_upper"]:
        registry.add(AttackEntry(name, _no_attack, f"test.{name}"))
    assert registry.filter(["pgd*"]) == ["pgd_l2", "pgd_linf"]  # case-sensitive
    assert registry.filter(["*fgsm", "square"]) == ["fgsm", "mifgsm", "square"]
    assert registry.filter(["square", "pgd_l?"]) == ["pgd_l2", "square"]
    assert registry.filter(["pgd_l[2x]", "pgd_l2"]) == ["pgd_l2"]  # no duplicates
    assert registry.filter([]) == []
    assert registry.filter(["nothing*"]) == []
    assert registry.filter(["*"]) == sorted(["pgd_linf", "fgsm", "pgd_l2", "square", "mifgsm", "PGD_upper"])
    assert list(registry) == registry.names() == sorted(registry.names())
    assert len(registry) == 6
    assert "fgsm" in registry and "nope" not in registry


def test_registry_snapshot_and_restore_keep_builtins() -> None:
    registry: Registry[AttackEntry] = Registry("attack", "register_attack")
    registry.add(AttackEntry("builtin", _no_attack, "b", builtin=True))
    snapshot = registry.snapshot()
    registry.add(AttackEntry("project", _no_attack, "p"))
    registry.add(AttackEntry("later_builtin", _no_attack, "lb", builtin=True))
    registry.restore(snapshot)
    assert registry.names() == ["builtin", "later_builtin"]


def test_unknown_name_in_an_empty_registry() -> None:
    registry: Registry[AttackEntry] = Registry("attack", "register_attack")
    with pytest.raises(RegistryError, match=r"Unknown attack 'x'\. Registered: \(none\)"):
        registry.get("x")


@pytest.mark.parametrize("name", ["", "a/b", "a b", "../x", "x:y"])
def test_invalid_names_are_rejected(name: str) -> None:
    with pytest.raises(RegistryError, match="Invalid attack name"):
        register_attack(name, eps=0.1)(lambda model, eps: None)
    assert name not in ATTACKS


def test_register_attack_validates_primary_and_norm() -> None:
    with pytest.raises(RegistryError, match="primary='eps' is not one of its parameters"):
        register_attack("advprune_test_bad", primary="eps", steps=3)(lambda model, steps: None)
    with pytest.raises(RegistryError, match="norm='L1'"):
        register_attack("advprune_test_bad", norm="L1", eps=0.1)(lambda model, eps: None)
    assert "advprune_test_bad" not in ATTACKS


def test_register_model_validates_normalization() -> None:
    with pytest.raises(RegistryError, match="one mean and one positive std"):
        register_model("advprune_test_model", normalization=((0.5,), (0.0,)))(lambda: None)
    with pytest.raises(RegistryError, match="one mean and one positive std"):
        register_model("advprune_test_model", normalization=((0.5, 0.5), (0.2,)))(lambda: None)


def test_describe_origin_names_module_function_and_line() -> None:
    origin = describe_origin(_first)
    assert origin.startswith(f"{__name__}._first (")
    assert origin.endswith(f":{_first.__code__.co_firstlineno})")
    assert describe_origin(len) == "builtins.len"


def test_negative_zero_amount_has_the_same_id_as_zero() -> None:
    assert parse_pruning("l1_unstructured:-0").id == parse_pruning("l1_unstructured:0").id == "l1_unstructured_0.0"
