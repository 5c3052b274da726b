"""The verdict on one cell: check its invariants, compare its result with its baseline, or prepare the
baseline to write.

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

Verdicts of a check run, most serious first: ``failed`` (worse beyond the gate than its baseline),
``regressed`` (the baseline is stale only because the base weights changed, and the new weights made a
metric worse beyond the gate), ``violated`` (an invariant failed; see ``invariants.py``), ``stale`` (the
baseline measured something else), ``missing``, ``unusable``, ``improved``, ``passed``. With
``--update-baselines``: ``refused`` (worse beyond the gate: not written without
``--advprune-accept-regressions``), ``accepted`` (such a cell, written because it was accepted),
``violated``, or the write's outcome (``created``, ``updated``, ``unchanged``).
"""

from __future__ import annotations

import fnmatch
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytest_advprune.baselines import (
    IDENTITY_FIELDS,
    Baseline,
    BaselineFileError,
    BaselineStore,
    display_path,
    payload,
    to_json_value,
)
from pytest_advprune.invariants import check_invariants, describe_violations
from pytest_advprune.messages import continuation, describe_paired, field, format_number
from pytest_advprune.metrics import (
    DERIVED_METRICS,
    HIGHER_IS_BETTER,
    LOWER_IS_BETTER,
    MAX_PERTURBATION_METRICS,
    NORM_METRICS,
    OUTCOME_OF_METRIC,
    POINT_METRICS,
)
from pytest_advprune.options import Settings
from pytest_advprune.paired import PairedChange, paired_change

if TYPE_CHECKING:
    from pytest_advprune.cell import CellResult  # imports torch; the plugin loads this module at startup

GATE_POLICIES = ("tolerance", "significance", "both")
ENVIRONMENT_FIELDS = ("device", "device_name", "torch_version")


WRITE = "write"  # the status of a verdict whose payload is written; the writer replaces it with the outcome


@dataclass(frozen=True)
class Verdict:
    """``status``: see the module docstring; ``problems`` is empty exactly when the test passes;
    ``payload`` is the baseline to write (with --update-baselines)."""

    status: str
    problems: tuple[str, ...] = ()
    payload: dict[str, Any] | None = None
    environment_changes: tuple[str, ...] = ()
    comparisons: tuple[dict[str, Any], ...] = ()  # paired change of every accuracy against the baseline
    violations: tuple[dict[str, Any], ...] = ()  # the invariants the cell violates
    worst: dict[str, Any] | None = None  # the metric that got worse the most (failed, regressed, refused, accepted)
    failing: tuple[dict[str, Any], ...] = ()  # every metric beyond the gate, most important first (change_record)
    stale_fields: tuple[str, ...] = ()  # what the baseline measured differently (stale, regressed)

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


def tolerance_for(metric: str, settings: Settings, retrained: bool = False) -> float:
    """The metric's tolerance; against a baseline of other base weights (a retrain), the retrain
    tolerance where one is set: seed-to-seed noise is part of a retrain, not of a pruning change."""
    same_weights = settings.metric_tolerances.get(metric, settings.tolerance)
    if not retrained:
        return same_weights
    if metric in settings.retrain_metric_tolerances:
        return settings.retrain_metric_tolerances[metric]
    return settings.retrain_tolerance if settings.retrain_tolerance is not None else same_weights


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


def compare_metrics(
    result: CellResult, baseline: Baseline, settings: Settings, retrained: bool = False
) -> list[MetricChange]:
    """Every metric that moved beyond what the policy lets pass, or improved beyond its tolerance."""
    policy = settings.gate
    observed, stored = result.metrics, baseline.metrics
    changes = []
    for metric in sorted(set(observed) | set(stored)):
        old, new = stored.get(metric), observed.get(metric)
        if metric in MAX_PERTURBATION_METRICS:
            continue  # informational: a bounded attack's is at most its eps, checked while crafting
        if metric in NORM_METRICS and old is not None and new is not None:
            changes.extend(_norm_change(metric, float(old), float(new), settings.perturbation_tolerance))
            continue
        if metric not in POINT_METRICS or old is None or new is None:
            if old != new:
                changes.append(MetricChange(metric, old, new, "exactly the baseline", failing=True, improved=False))
            continue
        delta = float(new) - float(old)
        tolerance = tolerance_for(metric, settings, retrained)
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


def _norm_change(metric: str, old: float, new: float, tolerance: float) -> list[MetricChange]:
    """A minimal attack's perturbation norm, compared relatively: smaller is easier to fool."""
    relative = 0.0 if new == old else (float("inf") if old == 0 else 100.0 * (new - old) / old)
    allowed = f"-{tolerance:g}% (relative; ini advprune_perturbation_tolerance)"
    if relative < -tolerance - 1e-9:
        return [MetricChange(metric, old, new, allowed, failing=True, improved=False)]
    if relative > tolerance + 1e-9:
        return [MetricChange(metric, old, new, f"±{tolerance:g}% (relative)", failing=False, improved=True)]
    return []


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


DIRECTIONAL_METRICS = (*HIGHER_IS_BETTER, *LOWER_IS_BETTER)


def same_samples(result: CellResult, baseline: Baseline) -> bool:
    """Whether both runs classified the same evaluation samples, so their outcomes can be paired."""
    return baseline.provenance.get("samples") == result.provenance.get("samples") and baseline.provenance.get(
        "dataset"
    ) == to_json_value(result.provenance.get("dataset"))


def only_weights_changed(changes: list[str]) -> bool:
    """A retrained checkpoint: the stale baseline measured the same cell (dataset, samples, pruning and
    attack) on other base weights, so comparing with it says whether the new weights are worse."""
    return bool(changes) and all(change.startswith("model.weights_fingerprint:") for change in changes)


def regressions(
    result: CellResult, baseline: Baseline, settings: Settings, retrained: bool = False
) -> list[MetricChange]:
    """Metrics that got worse beyond the gate, most important first."""
    return worse_of(compare_metrics(result, baseline, settings, retrained))


def worse_of(changes: list[MetricChange]) -> list[MetricChange]:
    """The changes that are worsenings beyond the gate, most important first (counts that merely differ,
    such as the parameters of a retrained model of another width, are not 'worse')."""
    failing = [
        change
        for change in changes
        if change.failing
        and change.metric in DIRECTIONAL_METRICS
        # A rate that became undefined (no clean sample right) is a change, not a measured worsening.
        and isinstance(change.baseline, (int, float))
        and isinstance(change.observed, (int, float))
    ]
    return sorted(failing, key=lambda change: _importance(change.metric))


def worst_change(changes: list[MetricChange]) -> dict[str, Any]:
    """The change of the largest size, as a record for the summary and the report."""
    change = max(changes, key=lambda c: abs(float(c.observed) - float(c.baseline)))
    record: dict[str, Any] = {
        "metric": change.metric,
        "baseline": change.baseline,
        "observed": change.observed,
        "difference": round(float(change.observed) - float(change.baseline), 4),
    }
    if change.paired is not None:
        record["p_value"] = float(f"{change.paired.p_value:.6g}")
    return record


def change_record(change: MetricChange) -> dict[str, Any]:
    """One metric beyond the gate, for the reports: baseline, observed, change, what was allowed, and the
    paired interval and McNemar p-value where the metric has per-sample outcomes."""
    record: dict[str, Any] = {
        "metric": change.metric,
        "baseline": change.baseline,
        "observed": change.observed,
        "difference": (
            round(float(change.observed) - float(change.baseline), 4)
            if isinstance(change.baseline, (int, float)) and isinstance(change.observed, (int, float))
            else None
        ),
        "allowed": change.allowed,
    }
    if change.paired is not None:
        record.update(
            ci_low=round(change.paired.ci_low, 4),
            ci_high=round(change.paired.ci_high, 4),
            confidence=change.paired.confidence,
            p_value=float(f"{change.paired.p_value:.6g}"),
            regressions=change.paired.regressions,
            improvements=change.paired.improvements,
        )
    return record


def describe_worst(record: dict[str, Any]) -> str:
    """``pruned_robust_accuracy 48.8889 -> 20.0 (-28.89 points, p = 1e-30)``."""
    p_value = f", p = {record['p_value']:.3g}" if "p_value" in record else ""
    return (
        f"{record['metric']} {format_number(record['baseline'])} -> {format_number(record['observed'])} "
        f"({record['difference']:+.2f} points{p_value})"
    )


def _metric_blocks(changes: list[MetricChange]) -> list[str]:
    lines: list[str] = []
    for change in changes:
        lines += ["", field("metric", change.metric), field("baseline", format_number(change.baseline))]
        lines += [field("observed", format_number(change.observed)), field("allowed", change.allowed)]
        if change.paired is not None:
            lines += describe_paired(change.paired)
    return lines


def _stale_note(result: CellResult, baseline: Baseline, settings: Settings) -> list[str]:
    """What refreshing a stale baseline would accept when the samples are the same: the robustness
    metrics that got worse beyond the gate against it."""
    if not same_samples(result, baseline):
        return []
    worse = [change for change in regressions(result, baseline, settings) if change.metric in OUTCOME_OF_METRIC]
    if not worse:
        return [field("note", "no accuracy got worse beyond the gate against the stale baseline")]
    lines = [field("note", "against the stale baseline, these got worse beyond the gate:")]
    for change in worse:
        assert change.paired is not None  # accuracies always carry their paired test
        lines.append(
            continuation(
                f"{change.metric}: {format_number(change.baseline)} -> {format_number(change.observed)} "
                f"(McNemar p = {change.paired.p_value:.3g})"
            )
        )
    return lines


def update_command(nodeid: str, settings: Settings, *extra: str) -> str:
    """The command that writes this cell's baseline (CI mode refuses writes: say where to run it)."""
    command = shlex.join(["pytest", nodeid, "--update-baselines", *extra])
    return f"outside CI mode: {command}, then commit the file" if settings.ci_mode else command


def _accepted(cell_id: str, settings: Settings) -> bool:
    return any(fnmatch.fnmatchcase(cell_id, pattern) for pattern in settings.accept_regressions)


def judge(result: CellResult, store: BaselineStore, settings: Settings, *, nodeid: str, rootdir: Path) -> Verdict:
    """Check ``result``'s invariants and compare it with its stored baseline, or (``--update-baselines``)
    return the baseline to write unless it hides a regression."""
    cell_id = result.cell.id
    shown = display_path(store.path_for(result.cell), rootdir)
    refresh = update_command(nodeid, settings)
    violations = check_invariants(result, settings.invariants, settings.alpha)
    violated = [describe_violations(cell_id, violations)] if violations else []
    records = tuple(violation.as_record() for violation in violations)

    unusable: str | None = None
    try:
        baseline = store.load(result.cell)
    except BaselineFileError as error:
        baseline = None
        unusable = "\n".join(
            [
                f"advprune: baseline file {shown!r} is unusable: {error.problem}.",
                field("cell", cell_id),
                field("fix", f"restore it (git checkout -- {shown}) or re-create it: {refresh}"),
            ]
        )

    changes = stale_fields(result.provenance, baseline.provenance) if baseline is not None else []
    comparable = baseline is not None and (not changes or only_weights_changed(changes))
    # One comparison serves the gate, the regressed verdict and the refusal of an update.
    moved = (
        compare_metrics(result, baseline, settings, retrained=bool(changes))
        if baseline is not None and comparable
        else []
    )
    worse = worse_of(moved)

    if settings.update_baselines:
        return _judge_update(result, worse, violated, records, settings, nodeid)

    if baseline is None:
        if unusable is not None:
            return Verdict("violated" if violated else "unusable", (*violated, unusable), violations=records)
        missing = "\n".join(
            [f"advprune: no baseline for cell {cell_id}.", field("file", shown), field("create", refresh)]
        )
        return Verdict("violated" if violated else "missing", (*violated, missing), violations=records)

    environment = tuple(stale_fields(result.provenance, baseline.provenance, ENVIRONMENT_FIELDS))
    comparisons = paired_comparisons(result, baseline, settings) if same_samples(result, baseline) else ()
    worst = worst_change(worse) if worse else None
    common: dict[str, Any] = {"environment_changes": environment, "comparisons": comparisons, "violations": records}

    if changes and worse:  # retrained weights that made the cell worse
        lines = [
            f"advprune: cell {cell_id} regressed: its base model's weights changed, and {len(worse)} metric(s) got "
            f"worse beyond the gate ({settings.gate}) against the previous weights.",
            field("cell", cell_id),
            field("file", shown),
            *(field("changed", change) for change in changes),
            *_metric_blocks(worse),
            "",
            "advprune: if the weaker model is intended, accept it with: "
            + update_command(nodeid, settings, "--advprune-accept-regressions"),
        ]
        return Verdict(
            "regressed",
            ("\n".join(lines), *violated),
            worst=worst,
            failing=tuple(map(change_record, worse)),
            stale_fields=tuple(changes),
            **common,
        )
    if changes:
        reason = "its base model's weights changed" if comparable else "it measured something else"
        lines = [f"advprune: the baseline of cell {cell_id} is stale: {reason}."]
        lines += [field("changed", change) for change in changes]
        lines += [field("file", shown)]
        if comparable:
            lines.append(
                field("note", "no regression against the previous weights (no metric got worse beyond the gate)")
            )
        else:
            lines += _stale_note(result, baseline, settings)
        lines.append(field("refresh", refresh))
        return Verdict(
            "violated" if violated else "stale", (*violated, "\n".join(lines)), stale_fields=tuple(changes), **common
        )

    failing = sorted((change for change in moved if change.failing), key=lambda change: _importance(change.metric))
    if failing:
        lines = [
            f"advprune: {len(failing)} metric(s) of cell {cell_id} failed the gate ({settings.gate}).",
            field("cell", cell_id),
            field("file", shown),
            *_metric_blocks(failing),
            "",
            "advprune: if the change is intended, accept it with: "
            + update_command(nodeid, settings, *(["--advprune-accept-regressions"] if worse else [])),
        ]
        return Verdict(
            "failed", ("\n".join(lines), *violated), worst=worst, failing=tuple(map(change_record, failing)), **common
        )
    if violated:
        return Verdict("violated", tuple(violated), **common)
    return Verdict("improved" if any(change.improved for change in moved) else "passed", **common)


def _judge_update(
    result: CellResult,
    worse: list[MetricChange],
    violated: list[str],
    records: tuple[dict[str, Any], ...],
    settings: Settings,
    nodeid: str,
) -> Verdict:
    """``--update-baselines``: write the new baseline, unless its numbers are worse beyond the gate than
    the existing one (the same cell, or the same cell on retrained weights) and the regression was not
    accepted with ``--advprune-accept-regressions``, or they violate an invariant (no acceptance lifts an
    invariant: a baseline is written only for numbers that keep them)."""
    cell_id = result.cell.id
    worst = worst_change(worse) if worse else None
    if violated and (not worse or _accepted(cell_id, settings)):
        note = field("baseline", "not written: fix the model, or change the invariant's line in the ini file")
        return Verdict("violated", (f"{violated[0]}\n{note}", *violated[1:]), violations=records, worst=worst)
    if not worse:
        return Verdict(WRITE, (), payload(result))
    if _accepted(cell_id, settings):
        return Verdict("accepted", (), payload(result), worst=worst, failing=tuple(map(change_record, worse)))
    lines = [
        f"advprune: refused to update the baseline of cell {cell_id}: {len(worse)} metric(s) got worse beyond the "
        f"gate ({settings.gate}).",
        field("cell", cell_id),
        *_metric_blocks(worse),
        "",
        "advprune: if the weaker numbers are intended, accept them with: "
        + update_command(nodeid, settings, "--advprune-accept-regressions"),
    ]
    return Verdict(
        "refused",
        ("\n".join(lines), *violated),
        violations=records,
        worst=worst_change(worse),
        failing=tuple(map(change_record, worse)),
    )
