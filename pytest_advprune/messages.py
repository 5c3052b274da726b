"""The layout every failure message shares: a headline, then one ``name: value`` field per line."""

from __future__ import annotations

from pytest_advprune.paired import PairedChange

FIELD_WIDTH = 11  # "invariant:" plus one space


def field(name: str, value: object) -> str:
    return f"  {name + ':':<{FIELD_WIDTH}}{value}"


def continuation(text: str) -> str:
    """A further line of the previous field's value, aligned under it."""
    return " " * (FIELD_WIDTH + 2) + text


def format_number(value: object) -> str:
    """Metric values as stored (4 decimals at most), without a trailing '.0' on whole numbers."""
    if isinstance(value, float):
        return f"{value:.4f}".rstrip("0").rstrip(".") if not value.is_integer() else f"{value:g}"
    return str(value)


def describe_paired(paired: PairedChange, *, before: str = "", after: str = "") -> list[str]:
    """The ``change`` and ``mcnemar`` fields of a paired comparison (``after`` minus ``before``)."""
    level = f"{100 * paired.confidence:g}%"
    regressed = f"{paired.regressions} samples regressed" if not before else f"{paired.regressions} {before}"
    improved = f"{paired.improvements} improved" if not after else f"{paired.improvements} {after}"
    return [
        field("change", f"{paired.difference:+.2f} points ({level} CI {paired.ci_low:+.2f} to {paired.ci_high:+.2f})"),
        field("mcnemar", f"{regressed}, {improved}, p = {paired.p_value:.3g}"),
    ]
