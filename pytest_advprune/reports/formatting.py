"""One number format for every report: accuracies and points with one decimal, changes signed, intervals
in brackets, p-values with two significant digits, counts with thousands separators."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def points(value: object) -> str:
    """``62.2`` (an accuracy, a rate, a sparsity, in %); an empty cell for no value."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return "" if value is None else str(value)
    return f"{value:.1f}"


def signed(value: object) -> str:
    """``+3.1`` / ``-15.6``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return ""
    return f"{value:+.1f}"


def p_value(value: object) -> str:
    """``0.0013``, ``<1e-06``, ``1``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return ""
    return "<1e-06" if value < 1e-6 else f"{value:.2g}"


def count(value: object) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return ""
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.4g}"


def value(metric: str, number: object) -> str:
    """A metric's value in its own format: counts for parameters, MACs and samples, points otherwise."""
    if metric in ("samples",) or metric.endswith(("_parameters", "_macs")):
        return count(number)
    if metric == "compression_ratio":
        return f"{number:.2f}x" if isinstance(number, (int, float)) else ""
    return points(number)


def change(gap: Mapping[str, Any] | None) -> str:
    """``-15.6 [-20.1, -11.0]`` (a difference with its interval), or empty."""
    if not gap or gap.get("difference") is None:
        return ""
    interval = f" [{signed(gap['ci_low'])}, {signed(gap['ci_high'])}]" if "ci_low" in gap else ""
    return signed(gap["difference"]) + interval


def speedup(value: object) -> str:
    return f"{value:.2f}x" if isinstance(value, (int, float)) and not isinstance(value, bool) else ""


def level(items: object) -> str:
    """The confidence of the intervals in ``items`` (changes, or study rows with their gaps) as ``95%``;
    every interval of one report has the level of its run's ``advprune_alpha``."""
    for item in items if isinstance(items, (list, tuple)) else ():
        for candidate in (item, item.get("pruned_vs_base"), item.get("transfer_vs_base")):
            if isinstance(candidate, Mapping) and isinstance(candidate.get("confidence"), (int, float)):
                return f"{100 * candidate['confidence']:g}%"
    return "95%"
