"""Cell specifications: parsing ``name:params`` strings, building readable ids, deriving seeds.

A pruning spec is ``name`` or ``name:amount`` (``l1_unstructured:0.5``); an attack spec is ``name``,
``name:value`` (the attack's primary parameter) or ``name:key=value,key=value``
(``pgd_linf:eps=0.1,steps=20``). Ids are what users see in test names and baseline paths:
``l1_unstructured_0.5``, ``pgd_linf_0.1``, ``pgd_linf_0.1_steps20``.

Wherever a number goes, a sweep ``start..stop/count`` stands for ``count`` evenly spaced values, both
ends included (``pgd_linf:eps=0.02..0.2/10``, ``channel:0.1..0.7/7``); ``expand_pruning`` and
``expand_attack`` turn such a line into the ordinary specs it stands for, one per value (several
sweeps in one line: their cartesian product).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from pytest_advprune.errors import AdvPruneError
from pytest_advprune.registry import ATTACKS, PRUNINGS, AttackEntry, ParamValue, PruningEntry


class SpecError(AdvPruneError, ValueError):
    """A pruning or attack spec that cannot be parsed or validated."""


def format_value(value: ParamValue) -> str:
    """Shortest faithful text for a parameter value (``0.1``, ``20``, ``True``)."""
    if isinstance(value, float):
        return repr(value) if not value.is_integer() else f"{value:.1f}"
    return str(value)


def _coerce(attack: str, key: str, text: str, default: ParamValue) -> ParamValue:
    kind = type(default)
    try:
        if kind is bool:
            lowered = text.strip().lower()
            if lowered not in ("true", "false", "1", "0"):
                raise ValueError(text)
            return lowered in ("true", "1")
        if kind is int:
            return int(text)
        if kind is float:
            value = float(text)
            if not math.isfinite(value):
                raise ValueError(text)
            return value
        return text.strip()
    except ValueError:
        raise SpecError(
            f"Attack {attack!r}: parameter {key}={text!r} is not a valid {kind.__name__} (default {default!r})."
        ) from None


# Parameters whose meaning requires a sign: a negative epsilon or step count is always a mistake.
_NON_NEGATIVE = {"eps", "alpha", "c", "initial_c", "kappa", "lr", "overshoot", "decay", "p_init"}
_POSITIVE = {"steps", "n_queries", "n_restarts", "n_classes", "targets", "restarts", "search_steps", "candidates"}


def _validate_param(attack: str, key: str, value: ParamValue) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return
    if key in _NON_NEGATIVE and value < 0:
        raise SpecError(f"Attack {attack!r}: {key}={value!r} is negative; {key} must be >= 0.")
    if key in _POSITIVE and value < 1:
        raise SpecError(f"Attack {attack!r}: {key}={value!r} must be a positive integer.")


@dataclass(frozen=True)
class PruningSpec:
    name: str
    amount: float

    @property
    def id(self) -> str:
        return f"{self.name}_{format_value(self.amount)}"

    @property
    def entry(self) -> PruningEntry:
        return PRUNINGS.get(self.name)

    def params(self) -> dict[str, ParamValue]:
        return {"method": self.name, "amount": self.amount, "fine_tune": self.entry.fine_tune}


@dataclass(frozen=True)
class AttackSpec:
    name: str
    params: tuple[tuple[str, ParamValue], ...]  # every accepted parameter, sorted by key
    explicit: tuple[str, ...]  # the keys the spec set, which become part of the id

    @property
    def entry(self) -> AttackEntry:
        return ATTACKS.get(self.name)

    @property
    def kwargs(self) -> dict[str, ParamValue]:
        return dict(self.params)

    @property
    def id(self) -> str:
        entry = self.entry
        values = self.kwargs
        parts = [self.name]
        if entry.primary is not None:
            parts.append(format_value(values[entry.primary]))
        parts += [f"{key}{format_value(values[key])}" for key in sorted(self.explicit) if key != entry.primary]
        return "_".join(parts)


@dataclass(frozen=True)
class CellSpec:
    """One (model, pruning, attack) triple: one test, one baseline file."""

    model: str
    pruning: PruningSpec
    attack: AttackSpec

    @property
    def id(self) -> str:
        return f"{self.model}-{self.pruning.id}-{self.attack.id}"


@dataclass(frozen=True)
class VariantSpec:
    """A base model (``pruning is None``) or one of its pruned versions, timed on batches of ``batch_size``."""

    model: str
    pruning: PruningSpec | None
    batch_size: int = 256

    @property
    def pruning_id(self) -> str:
        return self.pruning.id if self.pruning else "base"

    @property
    def id(self) -> str:
        return f"{self.model}-{self.pruning_id}-b{self.batch_size}"


def parse_pruning(text: str) -> PruningSpec:
    name, sep, amount_text = text.strip().partition(":")
    entry = PRUNINGS.get(name.strip())
    if not sep:
        amount = entry.default_amount
    else:
        try:
            amount = float(amount_text)
        except ValueError:
            raise SpecError(
                f"Pruning spec {text!r}: amount {amount_text!r} is not a number. Use e.g. '{name}:0.5'."
            ) from None
    amount += 0.0  # -0.0 -> 0.0: one amount, one id
    if not 0.0 <= amount < 1.0 or not math.isfinite(amount):
        raise SpecError(
            f"Pruning spec {text!r}: amount {amount!r} is outside [0, 1). It is the fraction of weights "
            "(or channels) removed, e.g. 0.5."
        )
    return PruningSpec(entry.name, amount)


def _unknown_parameter(text: str, entry: AttackEntry, key: str) -> SpecError:
    accepted = ", ".join(sorted(entry.defaults)) or "(none)"
    return SpecError(f"Attack spec {text!r}: unknown parameter {key!r}. Accepted: {accepted}.")


def parse_attack(text: str) -> AttackSpec:
    name, sep, rest = text.strip().partition(":")
    entry = ATTACKS.get(name.strip())
    values: dict[str, ParamValue] = dict(entry.defaults)
    explicit: list[str] = []
    if sep and rest.strip():
        for item in rest.split(","):
            key, eq, raw = item.partition("=")
            if not eq:
                if entry.primary is None:
                    raise SpecError(
                        f"Attack spec {text!r}: {item!r} needs a name (key=value); {entry.name!r} has no "
                        "primary parameter."
                    )
                key, raw = entry.primary, item
            key = key.strip()
            if key not in entry.defaults:
                raise _unknown_parameter(text, entry, key)
            values[key] = _coerce(entry.name, key, raw, entry.defaults[key])
            explicit.append(key)
    for key, value in values.items():
        _validate_param(entry.name, key, value)
    return AttackSpec(entry.name, tuple(sorted(values.items())), tuple(sorted(set(explicit))))


# --- sweeps: 'start..stop/count' ------------------------------------------------------------------------

SWEEP_DIGITS = 10  # interior sweep values are rounded to this many significant digits
_SweepT = TypeVar("_SweepT", PruningSpec, AttackSpec)


def is_sweep(text: str) -> bool:
    """Whether a spec holds a ``start..stop/count`` range (no name or other value contains '..')."""
    return ".." in text


def spec_count(text: str) -> int:
    """How many specs a line stands for (the product of its sweeps' counts), read from the text alone so
    that a matrix can be sized before anything is expanded. A count that does not parse counts as one:
    expanding the line then reports it."""
    total = 1
    for item in text.partition(":")[2].split(","):
        if is_sweep(item):
            count_text = item.rpartition("/")[2].strip()
            if count_text.isdigit():  # int() refuses thousands of digits: cap what messages will show
                total *= max(int(count_text), 1) if len(count_text) <= 30 else 10**30
    return total


def _round_sweep_value(value: float) -> float:
    """``0.06000000000000001`` -> ``0.06``: rounding to ``SWEEP_DIGITS`` significant digits removes the
    float error of ``start + i*(stop-start)/(count-1)`` so ids stay readable, and still tells apart any
    two values a sweep of sensible width produces (collisions are reported, never merged)."""
    return float(f"{value:.{SWEEP_DIGITS}g}")


def _sweep_counts(span: int) -> str:
    """The counts that split an integer range of width ``span`` into whole steps (``count - 1`` divides
    ``span``), the first dozen, for messages."""
    if span > 10**12:  # too many candidates to list usefully (and slow to find)
        return f"those where COUNT-1 divides {span}"
    divisors = {d for i in range(1, math.isqrt(span) + 1) if span % i == 0 for d in (i, span // i)}
    counts = sorted(d + 1 for d in divisors)
    return ", ".join(map(str, counts[:12])) + (", ..." if len(counts) > 12 else "")


def sweep_values(where: str, key: str, raw: str, kind: type[int] | type[float]) -> list[int] | list[float]:
    """The ``count`` values of ``raw`` = ``start..stop/count``, ascending, both ends exact.

    Float values are ``start + i*(stop-start)/(count-1)`` rounded to ``SWEEP_DIGITS`` significant
    digits; int values must come out whole. ``where`` names the spec line in messages, ``key`` the value.
    """
    text = raw.strip()
    start_text, _, rest = text.partition("..")
    stop_text, slash, count_text = rest.rpartition("/")
    example = "10..50/5" if kind is int else "0.02..0.2/10"
    if not slash:
        raise SpecError(f"{where}: sweep {key}={text!r} needs a count: write START..STOP/COUNT, e.g. {example!r}.")
    try:
        count = int(count_text)
    except ValueError:
        raise SpecError(
            f"{where}: sweep {key}={text!r} has count {count_text.strip()!r}, not a whole number; write "
            f"START..STOP/COUNT, e.g. {example!r}."
        ) from None
    if count < 2:
        raise SpecError(
            f"{where}: sweep {key}={text!r} has count {count}; a sweep needs a count of at least 2 (for one "
            "value, write the value alone, without '..')."
        )
    ends: list[float] = []
    for end in (start_text, stop_text):
        try:
            value = int(end) if kind is int else float(end)
        except ValueError:
            what = "a whole number (the parameter is an int)" if kind is int else "a number"
            raise SpecError(
                f"{where}: sweep {key}={text!r} has end {end.strip()!r}, which is not {what}; write e.g. {example!r}."
            ) from None
        if not math.isfinite(value):
            raise SpecError(f"{where}: sweep {key}={text!r} has end {end.strip()!r}; both ends must be finite.")
        ends.append(value)
    start, stop = ends
    if start >= stop:
        fix = "for one value, write it alone, without '..'" if start == stop else "write it ascending"
        raise SpecError(f"{where}: sweep {key}={text!r} starts at {start!r}, not below its stop {stop!r}; {fix}.")
    if not math.isfinite(stop - start):
        raise SpecError(f"{where}: sweep {key}={text!r} is too wide to compute; narrow it.")
    if kind is int:
        first, last = int(start), int(stop)
        step, remainder = divmod(last - first, count - 1)
        if remainder:
            raise SpecError(
                f"{where}: sweep {key}={text!r} does not give whole values ({key} is an int parameter: "
                f"{count} values from {first} to {last} are {(last - first) / (count - 1):g} apart); counts "
                f"that work: {_sweep_counts(last - first)}."
            )
        return list(range(first, last + 1, step))
    interior = [_round_sweep_value(start + i * (stop - start) / (count - 1)) for i in range(1, count - 1)]
    values = [start, *interior, stop]
    if any(low >= high for low, high in itertools.pairwise(values)):
        raise SpecError(
            f"{where}: sweep {key}={text!r} is too narrow for {count} values: at {SWEEP_DIGITS} significant "
            "digits some coincide. Use a smaller count or a wider range."
        )
    return [value + 0.0 for value in values]  # -0.0 -> 0.0: one value, one id


def _expanded(line: str, parse: Callable[[str], _SweepT], text: str) -> _SweepT:
    """Parse one value of a sweep with the ordinary parser, naming the sweep when that value is invalid."""
    try:
        return parse(text)
    except SpecError as error:
        raise SpecError(f"{error} This is a value of the sweep {line!r}: narrow its range.") from None


def expand_pruning(text: str) -> list[PruningSpec]:
    """``channel:0.1..0.7/7`` -> the seven specs it stands for; a spec without a sweep -> itself."""
    name, sep, amount_text = text.strip().partition(":")
    if not sep or not is_sweep(amount_text):
        return [parse_pruning(text)]
    entry = PRUNINGS.get(name.strip())
    amounts = sweep_values(f"Pruning spec {text.strip()!r}", "amount", amount_text, float)
    return [_expanded(text.strip(), parse_pruning, f"{entry.name}:{amount!r}") for amount in amounts]


def expand_attack(text: str) -> list[AttackSpec]:
    """``pgd_linf:eps=0.1..0.3/3,steps=10..20/2`` -> the six specs it stands for, in order (the first
    sweep varies slowest); a spec without a sweep -> itself."""
    name, sep, rest = text.strip().partition(":")
    if not sep or not is_sweep(rest):
        return [parse_attack(text)]
    line = text.strip()
    entry = ATTACKS.get(name.strip())
    items = rest.split(",")
    keys = [item.partition("=")[0].strip() if "=" in item else entry.primary for item in items]
    sweeps: dict[int, list[str]] = {}
    for index, (item, key) in enumerate(zip(items, keys, strict=True)):
        raw = item.partition("=")[2] if "=" in item else item
        if key is None or not is_sweep(raw):  # a bare value without a primary: parse_attack says so below
            continue
        if key not in entry.defaults:
            raise _unknown_parameter(line, entry, key)
        if keys.count(key) > 1:
            raise SpecError(f"Attack spec {line!r}: {key} is swept and also set elsewhere in the line; set it once.")
        default = entry.defaults[key]
        if isinstance(default, bool) or not isinstance(default, (int, float)):
            raise SpecError(
                f"Attack spec {line!r}: {key}={raw.strip()!r} is a sweep, but {key} is a "
                f"{type(default).__name__} parameter (default {default!r}); sweeps take int and float "
                "parameters only. Write one line per value."
            )
        values = sweep_values(f"Attack spec {line!r}", key, raw, type(default))
        sweeps[index] = [f"{key}={value!r}" if "=" in item else repr(value) for value in values]
    fixed = ",".join(item for index, item in enumerate(items) if index not in sweeps)
    try:  # the rest of the line first, so that an error there is not blamed on the sweep
        parse_attack(f"{entry.name}:{fixed}")
    except SpecError as error:
        raise SpecError(f"{error} (in the sweep {line!r})") from None
    choices = [sweeps.get(index, [item]) for index, item in enumerate(items)]
    return [_expanded(line, parse_attack, f"{entry.name}:{','.join(combo)}") for combo in itertools.product(*choices)]
