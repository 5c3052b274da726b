"""The verdict on one cell: compare its result with its baseline, or prepare the baseline to write.

Gate policies (``--advprune-gate``, ini ``advprune_gate``) decide when a point metric that got *worse*
fails the cell; improvements never fail (they are reported: the baseline is out of date):

- ``tolerance``: the change exceeds the metric's tolerance (in points);
- ``significance``: McNemar's exact test on the per-sample outcomes rejects "no change" at
  ``advprune_alpha``;
- ``both`` (default): the change exceeds the tolerance *and* is significant. A CI gate should stop a
  merge for a drop that is large enough to matter and unlikely to come from a handful of borderline
  samples flipping; tolerance alone fails on such flips when samples are few, significance alone
  fails on negligible but real changes when samples are many.

Under ``significance`` and ``both``, the attack success rates and the clean-accuracy drop (functions of
the accuracies) are reported but do not fail a cell on their own; sparsity, which has no sampling
noise, keeps its tolerance. Counts (parameters, MACs, samples) must match exactly under every policy.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pytest_advprune.baselines import (
    IDENTITY_FIELDS,
    Baseline,
    BaselineFileError,
    BaselineStore,
    display_path,
    payload,
    to_json_value,
)
from pytest_advprune.cell import CellResult
from pytest_advprune.metrics import (
    DERIVED_METRICS,
    HIGHER_IS_BETTER,
    LOWER_IS_BETTER,
    OUTCOME_OF_METRIC,
    POINT_METRICS,
)
from pytest_advprune.options import Settings
from pytest_advprune.paired import PairedChange, paired_change

GATE_POLICIES = ("tolerance", "significance", "both")
ENVIRONMENT_FIELDS = ("device", "torch_version")


@dataclass(frozen=True)
class Verdict:
    """``status``: passed, improved, failed, stale, missing, unusable, or (with --update-baselines)
    accepted; ``problems`` is empty exactly when the test passes; ``payload`` is the baseline to write."""

    status: str
    problems: tuple[str, ...] = ()
    payload: dict[str, Any] | None = None
    environment_changes: tuple[str, ...] = ()
    comparisons: tuple[dict[str, Any], ...] = ()  # paired change of every accuracy against the baseline

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass(frozen=True)
class MetricChange:
    metric: str
    baseline: Any
    observed: Any
    allowed: str
    failing: bool
    improved: bool
    paired: PairedChange | None = None


def tolerance_for(metric: str, settings: Settings) -> float:
    return settings.metric_tolerances.get(metric, settings.tolerance)


def _field(name: str, value: object) -> str:
    return f"  {name + ':':<10}{value}"


def _importance(metric: str) -> int:
    """Report order: accuracies (with paired statistics) first, then rates, then counts."""
    order = (*HIGHER_IS_BETTER, *LOWER_IS_BETTER, *POINT_METRICS)
    return order.index(metric) if metric in order else len(order)


def _worse(metric: str, delta: float) -> bool:
    if metric in HIGHER_IS_BETTER:
        return delta < 0
    if metric in LOWER_IS_BETTER:
        return delta > 0
    return delta != 0


def compare_metrics(result: CellResult, baseline: Baseline, settings: Settings) -> list[MetricChange]:
    """Every metric that moved beyond what the policy lets pass, or improved beyond its tolerance."""
    policy = settings.gate
    observed, stored = result.metrics, baseline.metrics
    changes = []
    for metric in sorted(set(observed) | set(stored)):
        old, new = stored.get(metric), observed.get(metric)
        if metric not in POINT_METRICS or old is None or new is None:
            if old != new:
                changes.append(MetricChange(metric, old, new, "exactly the baseline", failing=True, improved=False))
            continue
        delta = float(new) - float(old)
        tolerance = tolerance_for(metric, settings)
        beyond_tolerance = abs(delta) > tolerance + 1e-9
        outcome = OUTCOME_OF_METRIC.get(metric)
        paired = None
        if outcome is not None and outcome in baseline.outcomes:
            paired = paired_change(baseline.outcomes[outcome], result.outcomes[outcome], 1 - settings.alpha)
        significant = paired.p_value < settings.alpha if paired is not None else None
        if not _worse(metric, delta):
            if beyond_tolerance:
                changes.append(MetricChange(metric, old, new, f"±{tolerance:g} points", False, True, paired))
            continue
        if policy == "tolerance":
            failing = beyond_tolerance
        elif significant is None:
            # Rates and the clean-accuracy drop are functions of the accuracies, which carry the paired
            # test: letting them fail on tolerance alone would turn 'both' back into 'tolerance'.
            failing = beyond_tolerance and metric not in DERIVED_METRICS
        elif policy == "significance":
            failing = significant
        else:
            failing = beyond_tolerance and significant
        if failing or beyond_tolerance:
            allowed = f"±{tolerance:g} points"
            if policy != "tolerance" and metric in DERIVED_METRICS:
                allowed = "judged through the accuracies it derives from"
            elif policy != "tolerance" and paired is not None:
                allowed = (
                    f"p >= {settings.alpha:g}" if policy == "significance" else f"{allowed} or p >= {settings.alpha:g}"
                )
            changes.append(MetricChange(metric, old, new, allowed, failing, False, paired))
    return changes


def stale_fields(
    observed: dict[str, Any], stored: dict[str, Any], fields: tuple[str, ...] = IDENTITY_FIELDS
) -> list[str]:
    """Provenance fields that changed, as 'field: old -> new' lines."""
    observed = to_json_value(observed)  # as it would be stored
    changes = []
    for name in fields:
        old, new = stored.get(name), observed.get(name)
        if isinstance(old, dict) and isinstance(new, dict):
            for key in sorted(set(old) | set(new)):
                if old.get(key) != new.get(key):
                    changes.append(f"{name}.{key}: {old.get(key)!r} -> {new.get(key)!r}")
        elif old != new:
            changes.append(f"{name}: {old!r} -> {new!r}")
    return changes


def _describe_paired(paired: PairedChange) -> list[str]:
    level = f"{100 * paired.confidence:g}%"
    return [
        _field("change", f"{paired.difference:+.2f} points ({level} CI {paired.ci_low:+.2f} to {paired.ci_high:+.2f})"),
        _field(
            "mcnemar",
            f"{paired.regressions} samples regressed, {paired.improvements} improved, p = {paired.p_value:.3g}",
        ),
    ]


def paired_comparisons(result: CellResult, baseline: Baseline, settings: Settings) -> tuple[dict[str, Any], ...]:
    """For each accuracy: baseline, observed, the paired change with its confidence interval and McNemar's
    p-value (the per-cell record of ``--advprune-report``)."""
    rows = []
    for metric, outcome in OUTCOME_OF_METRIC.items():
        if outcome not in baseline.outcomes:
            continue
        change = paired_change(baseline.outcomes[outcome], result.outcomes[outcome], 1 - settings.alpha)
        rows.append(
            {
                "metric": metric,
                "baseline": baseline.metrics.get(metric),
                "observed": result.metrics.get(metric),
                "difference": round(change.difference, 4),
                "ci_low": round(change.ci_low, 4),
                "ci_high": round(change.ci_high, 4),
                "confidence": change.confidence,
                "regressions": change.regressions,
                "improvements": change.improvements,
                "p_value": float(f"{change.p_value:.6g}"),
            }
        )
    return tuple(rows)


def _stale_comparison(result: CellResult, baseline: Baseline, settings: Settings) -> list[str]:
    """What refreshing a stale baseline would accept: the robustness metrics that got worse beyond the
    gate, when the samples are the same ones (a retrained model is stale, but its users should see
    whether it got weaker before they refresh)."""
    if baseline.provenance.get("samples") != result.provenance.get("samples") or baseline.provenance.get(
        "dataset"
    ) != to_json_value(result.provenance.get("dataset")):
        return []
    worse = [change for change in compare_metrics(result, baseline, settings) if change.failing]
    worse = [change for change in worse if change.metric in OUTCOME_OF_METRIC]
    if not worse:
        return [_field("note", "no accuracy got worse beyond the gate against the stale baseline")]
    lines = [_field("note", "against the stale baseline, these got worse beyond the gate:")]
    for change in sorted(worse, key=lambda change: _importance(change.metric)):
        assert change.paired is not None  # accuracies always carry their paired test
        lines.append(
            f"            {change.metric}: {change.baseline} -> {change.observed} "
            f"(McNemar p = {change.paired.p_value:.3g})"
        )
    return lines


def judge(result: CellResult, store: BaselineStore, settings: Settings, *, nodeid: str, rootdir: Path) -> Verdict:
    """Check ``result`` against its stored baseline, or (``--update-baselines``) return it to be written."""
    cell_id = result.cell.id
    path = store.path_for(result.cell)
    shown = display_path(path, rootdir)
    refresh = f"pytest {shlex.quote(nodeid)} --update-baselines"
    problems: list[str] = []

    drop = result.metrics.get("clean_accuracy_drop")
    if isinstance(drop, (int, float)) and drop > settings.max_clean_drop:
        problems.append(
            "\n".join(
                [
                    f"advprune: the pruned model of cell {cell_id} lost too much clean accuracy; its robustness "
                    "numbers are not meaningful.",
                    _field("cell", cell_id),
                    _field("metric", "clean_accuracy_drop"),
                    _field("base", f"{result.metrics['base_clean_accuracy']}%"),
                    _field("pruned", f"{result.metrics['pruned_clean_accuracy']}%"),
                    _field("allowed", f"<= {settings.max_clean_drop:g} points (ini advprune_max_clean_drop)"),
                    _field("fix", "prune less, fine-tune longer (ini advprune_finetune_epochs), or raise the limit"),
                ]
            )
        )

    if settings.update_baselines:
        return Verdict("accepted", tuple(problems), payload=payload(result))

    try:
        baseline = store.load(result.cell)
    except BaselineFileError as error:
        lines = [
            f"advprune: baseline file {shown!r} is unusable: {error.problem}.",
            _field("cell", cell_id),
            _field("fix", f"restore it (git checkout -- {shown}) or re-create it: {refresh}"),
        ]
        return Verdict("unusable", (*problems, "\n".join(lines)))
    if baseline is None:
        missing = [f"advprune: no baseline for cell {cell_id}.", _field("file", shown)]
        if settings.ci_mode:
            missing.append(_field("create", f"outside CI mode: {refresh}, then commit the file"))
        else:
            missing.append(_field("create", refresh))
        return Verdict("missing", (*problems, "\n".join(missing)))

    changes = stale_fields(result.provenance, baseline.provenance)
    if changes:
        lines = [f"advprune: the baseline of cell {cell_id} is stale: it measured something else."]
        lines += [_field("changed", change) for change in changes]
        lines += [_field("file", shown), _field("refresh", refresh)]
        lines += _stale_comparison(result, baseline, settings)
        return Verdict("stale", (*problems, "\n".join(lines)))
    environment = tuple(stale_fields(result.provenance, baseline.provenance, ENVIRONMENT_FIELDS))
    comparisons = paired_comparisons(result, baseline, settings)

    moved = compare_metrics(result, baseline, settings)
    failing = sorted((change for change in moved if change.failing), key=lambda change: _importance(change.metric))
    if failing:
        lines = [
            f"advprune: {len(failing)} metric(s) of cell {cell_id} failed the gate ({settings.gate}).",
            _field("cell", cell_id),
            _field("file", shown),
        ]
        for change in failing:
            lines += ["", _field("metric", change.metric), _field("baseline", change.baseline)]
            lines += [_field("observed", change.observed), _field("allowed", change.allowed)]
            if change.paired is not None:
                lines += _describe_paired(change.paired)
        lines += ["", f"advprune: if the change is intended, accept it with: {refresh}"]
        problems.append("\n".join(lines))
    status = "failed" if problems else "improved" if any(change.improved for change in moved) else "passed"
    return Verdict(status, tuple(problems), environment_changes=environment, comparisons=comparisons)
