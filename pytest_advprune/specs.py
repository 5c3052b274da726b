"""Cell specifications: parsing ``name:params`` strings, building readable ids, deriving seeds.

A pruning spec is ``name`` or ``name:amount`` (``l1_unstructured:0.5``); an attack spec is ``name``,
``name:value`` (the attack's primary parameter) or ``name:key=value,key=value``
(``pgd_linf:eps=0.1,steps=20``). Ids are what users see in test names and baseline paths:
``l1_unstructured_0.5``, ``pgd_linf_0.1``, ``pgd_linf_0.1_steps20``.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

from pytest_advprune.registry import ATTACKS, PRUNINGS, AttackEntry, ParamValue, PruningEntry


class SpecError(ValueError):
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
_POSITIVE = {"steps", "n_queries", "n_restarts", "n_classes", "restarts", "search_steps", "candidates"}


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
                accepted = ", ".join(sorted(entry.defaults)) or "(none)"
                raise SpecError(f"Attack spec {text!r}: unknown parameter {key!r}. Accepted: {accepted}.")
            values[key] = _coerce(entry.name, key, raw, entry.defaults[key])
            explicit.append(key)
    for key, value in values.items():
        _validate_param(entry.name, key, value)
    return AttackSpec(entry.name, tuple(sorted(values.items())), tuple(sorted(set(explicit))))


def derive_seed(base_seed: int, *parts: str) -> int:
    """A 31-bit seed from ``base_seed`` and names: independent of run order, process and hash seed."""
    digest = hashlib.sha256("\x1f".join([str(base_seed), *parts]).encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFF_FFFF
