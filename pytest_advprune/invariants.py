"""Invariants: checks every cell must pass that need no baseline, so no retrain can make them stale.

- **clean-accuracy drop** (ini ``advprune_max_clean_drop``, default 3 points): the pruned model may not
  lose more clean accuracy than this against its base; otherwise its robustness numbers mean nothing.
- **robustness gap** (ini ``advprune_max_robustness_gap``, default 15 points): the pruned model's
  white-box (``pruned_robust_accuracy``) and transfer (``transfer_robust_accuracy``) robust accuracy may
  not fall below the base model's white-box robust accuracy, on the same samples in the same run, by
  more than this many points *and* significantly (McNemar's exact test on the paired per-sample
  outcomes at ``advprune_alpha``). It is the seed study's claim, "pruned models are about as robust as
  their base", as a test.
- **floors** (ini ``advprune_floors``, none by default): ``metric >= value`` (or ``metric <= value`` for
  metrics where lower is better, such as attack success rates or MACs) for any metric.

Each key takes one rule per line, ``[metric =] value [for scope]`` (floors: ``metric >= value [for
scope]``); ``off`` disables a limit. For each cell and metric the last matching line wins, after the
default, so later lines override earlier ones for the cells they select (see ``scopes.py``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pytest_advprune.errors import AdvPruneError
from pytest_advprune.messages import describe_paired, field, format_number
from pytest_advprune.metrics import ALL_METRIC_NAMES, OUTCOME_OF_METRIC, MetricValue
from pytest_advprune.paired import PairedChange, paired_change
from pytest_advprune.scopes import EVERYWHERE, Scope, ScopeError, split_scope

if TYPE_CHECKING:
    from pytest_advprune.cell import CellResult  # imports torch; options.py loads this module at startup

DEFAULT_MAX_CLEAN_DROP = 3.0
DEFAULT_MAX_ROBUSTNESS_GAP = 15.0
GAP_METRICS = ("pruned_robust_accuracy", "transfer_robust_accuracy")
SCOPE_KEYS = ("cell", "model", "dataset", "pruning", "attack")
CLEAN_DROP_KEY = "advprune_max_clean_drop"
GAP_KEY = "advprune_max_robustness_gap"
FLOORS_KEY = "advprune_floors"
_FLOOR = re.compile(r"^\s*([A-Za-z_]+)\s*(>=|<=)\s*(\S+)\s*$")


class InvariantError(AdvPruneError, ValueError):
    """An invariant line that cannot be parsed."""


@dataclass(frozen=True)
class Rule:
    metric: str
    operator: str  # "<=" (a limit or ceiling) or ">=" (a floor)
    value: float | None  # None: switched off
    scope: Scope
    source: str  # the ini key and the line, for messages

    def applies(self, metric: str, fields: dict[str, str]) -> bool:
        return self.metric == metric and self.scope.matches(**fields)


@dataclass(frozen=True)
class Invariants:
    max_clean_drop: tuple[Rule, ...]
    max_robustness_gap: tuple[Rule, ...]
    floors: tuple[Rule, ...] = ()


@dataclass(frozen=True)
class Violation:
    invariant: str  # "clean-accuracy drop", "robustness gap", "floor"
    metric: str
    observed: MetricValue
    allowed: str
    rule: str
    reference: str | None = None  # what the metric is compared with, when not a fixed number
    paired: PairedChange | None = None
    fix: str = ""

    def as_record(self) -> dict[str, object]:
        record: dict[str, object] = {
            "invariant": self.invariant,
            "metric": self.metric,
            "observed": self.observed,
            "allowed": self.allowed,
            "rule": self.rule,
        }
        if self.paired is not None:
            record.update(
                difference=round(self.paired.difference, 4),
                ci_low=round(self.paired.ci_low, 4),
                ci_high=round(self.paired.ci_high, 4),
                p_value=float(f"{self.paired.p_value:.6g}"),
            )
        return record


def _number(text: str, source: str, line: str) -> float | None:
    if text.strip().lower() in ("off", "none"):
        return None
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise InvariantError(f"{source}: {line.strip()!r}: {text.strip()!r} is not a number (or 'off').")
    return value


def _scoped(line: str, source: str) -> tuple[str, Scope]:
    try:
        return split_scope(line, keys=SCOPE_KEYS, bare_key="cell", source=source)
    except ScopeError as error:
        raise InvariantError(str(error)) from None


def parse_limits(
    lines: Sequence[str], key: str, metrics: tuple[str, ...], default: float | None, *, minimum: float = 0.0
) -> tuple[Rule, ...]:
    """Lines ``[metric =] value [for scope]`` of ini ``key`` after one default rule per metric."""
    rules = [Rule(metric, "<=", default, EVERYWHERE, f"default of ini {key}") for metric in metrics]
    for line in (line for line in lines if line.strip()):
        entry, scope = _scoped(line, f"ini {key}")
        metric, eq, value_text = entry.rpartition("=")
        metric = metric.strip()
        if eq and metric not in metrics:
            raise InvariantError(
                f"ini {key}: {line.strip()!r} names metric {metric!r}; it applies to: {', '.join(metrics)}."
            )
        value = _number(value_text, f"ini {key}", line)
        if value is not None and value < minimum:
            raise InvariantError(f"ini {key}: {line.strip()!r}: the limit must be >= {minimum:g} points.")
        source = f"ini {key}: {line.strip()!r}"
        rules += [Rule(m, "<=", value, scope, source) for m in ((metric,) if eq else metrics)]
    return tuple(rules)


def parse_floors(lines: Sequence[str]) -> tuple[Rule, ...]:
    """Lines ``metric >= value [for scope]`` or ``metric <= value [for scope]``."""
    rules = []
    for line in (line for line in lines if line.strip()):
        entry, scope = _scoped(line, f"ini {FLOORS_KEY}")
        match = _FLOOR.match(entry)
        if match is None:
            raise InvariantError(
                f"ini {FLOORS_KEY}: {line.strip()!r} is not 'metric >= value [for scope]' "
                "(or 'metric <= value'), e.g. 'pruned_robust_accuracy >= 40 for resnet-*'."
            )
        metric, operator, value_text = match.groups()
        if metric not in ALL_METRIC_NAMES:
            raise InvariantError(
                f"ini {FLOORS_KEY}: {line.strip()!r}: unknown metric {metric!r}. "
                f"Metrics: {', '.join(ALL_METRIC_NAMES)}."
            )
        rules.append(
            Rule(
                metric,
                operator,
                _number(value_text, f"ini {FLOORS_KEY}", line),
                scope,
                f"ini {FLOORS_KEY}: {line.strip()!r}",
            )
        )
    return tuple(rules)


def parse_invariants(clean_drop: Sequence[str], gap: Sequence[str], floors: Sequence[str]) -> Invariants:
    return Invariants(
        max_clean_drop=parse_limits(clean_drop, CLEAN_DROP_KEY, ("clean_accuracy_drop",), DEFAULT_MAX_CLEAN_DROP),
        max_robustness_gap=parse_limits(gap, GAP_KEY, GAP_METRICS, DEFAULT_MAX_ROBUSTNESS_GAP),
        floors=parse_floors(floors),
    )


DEFAULT_INVARIANTS = parse_invariants((), (), ())


def scope_fields(result: CellResult) -> dict[str, str]:
    """What a scope can select a cell by."""
    cell = result.cell
    dataset = result.provenance.get("dataset")
    return {
        "cell": cell.id,
        "model": cell.model,
        "dataset": str(dataset.get("name", "")) if isinstance(dataset, dict) else "",
        "pruning": cell.pruning.id,
        "attack": cell.attack.id,
    }


def effective_rule(rules: Sequence[Rule], metric: str, fields: dict[str, str], operator: str = "<=") -> Rule | None:
    """The last rule for ``metric`` (and ``operator``) whose scope selects the cell."""
    matching = [rule for rule in rules if rule.operator == operator and rule.applies(metric, fields)]
    return matching[-1] if matching else None


def _limit_text(rule: Rule) -> str:
    return f"{format_number(rule.value)} points ({rule.source})"


def check_invariants(result: CellResult, invariants: Invariants, alpha: float) -> list[Violation]:
    """Every invariant ``result`` violates, in the order clean drop, robustness gap, floors."""
    fields = scope_fields(result)
    metrics = result.metrics
    violations: list[Violation] = []

    rule = effective_rule(invariants.max_clean_drop, "clean_accuracy_drop", fields)
    drop = metrics.get("clean_accuracy_drop")
    if rule is not None and rule.value is not None and isinstance(drop, (int, float)) and drop > rule.value + 1e-9:
        violations.append(
            Violation(
                "clean-accuracy drop",
                "clean_accuracy_drop",
                drop,
                f"<= {_limit_text(rule)}",
                rule.source,
                reference=f"base {format_number(metrics.get('base_clean_accuracy'))}%, "
                f"pruned {format_number(metrics.get('pruned_clean_accuracy'))}%",
                fix="prune less, fine-tune longer (ini advprune_finetune_epochs), or raise the limit; the "
                "robustness numbers of a model that lost its accuracy mean nothing",
            )
        )

    base = metrics.get("base_robust_accuracy")
    for metric in GAP_METRICS:
        rule = effective_rule(invariants.max_robustness_gap, metric, fields)
        observed = metrics.get(metric)
        if rule is None or rule.value is None or not isinstance(base, (int, float)):
            continue
        if not isinstance(observed, (int, float)) or base - observed <= rule.value + 1e-9:
            continue
        outcome = OUTCOME_OF_METRIC[metric]
        if "base_adversarial" not in result.outcomes or outcome not in result.outcomes:
            continue
        paired = paired_change(result.outcomes["base_adversarial"], result.outcomes[outcome], 1 - alpha)
        if paired.p_value >= alpha:
            continue
        violations.append(
            Violation(
                "robustness gap",
                metric,
                observed,
                f"at most {_limit_text(rule)} below the base, or p >= {alpha:g}",
                rule.source,
                reference=f"base_robust_accuracy {format_number(base)} (the base model attacked white-box, same "
                "samples)",
                paired=paired,
                fix="the pruned model is easier to fool than its base: prune less, fine-tune longer, or allow a "
                f"larger gap for this cell (ini {GAP_KEY}, e.g. '{format_number(rule.value + 10)} for "
                f"{fields['model']}-*')",
            )
        )

    for floor in invariants.floors:
        # The last line per (metric, operator) wins: apply each such pair once.
        if effective_rule(invariants.floors, floor.metric, fields, floor.operator) is not floor or floor.value is None:
            continue
        value = metrics.get(floor.metric)
        if not isinstance(value, (int, float)):
            continue
        below = floor.operator == ">=" and value < floor.value - 1e-9
        above = floor.operator == "<=" and value > floor.value + 1e-9
        if below or above:
            violations.append(
                Violation(
                    "floor" if floor.operator == ">=" else "ceiling",
                    floor.metric,
                    value,
                    f"{floor.operator} {format_number(floor.value)} ({floor.source})",
                    floor.source,
                    fix="make the model meet it, or change the line in ini advprune_floors",
                )
            )
    return violations


def describe_violations(cell_id: str, violations: Sequence[Violation]) -> str:
    """One message block, fields one per line, in the layout of the baseline gate."""
    lines = [
        f"advprune: cell {cell_id} violates {len(violations)} invariant(s) (invariants need no baseline).",
        field("cell", cell_id),
    ]
    for violation in violations:
        lines += ["", field("invariant", violation.invariant), field("metric", violation.metric)]
        if violation.reference is not None:
            lines.append(field("base", violation.reference))
        lines += [field("observed", format_number(violation.observed)), field("allowed", violation.allowed)]
        if violation.paired is not None:
            lines += describe_paired(
                violation.paired, before="samples robust on the base but not here", after="the other way"
            )
        if violation.fix:
            lines.append(field("fix", violation.fix))
    return "\n".join(lines)
