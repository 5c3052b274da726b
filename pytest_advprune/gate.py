"""The verdict on one cell: compare its result with its baseline, or write the baseline when asked."""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pytest_advprune.baselines import IDENTITY_FIELDS, BaselineFileError, BaselineStore, payload, to_json_value
from pytest_advprune.cell import CellResult
from pytest_advprune.metrics import POINT_METRICS
from pytest_advprune.options import Settings


@dataclass(frozen=True)
class Verdict:
    """``status`` is one of passed, failed, stale, missing, unusable, created, updated, unchanged;
    ``problems`` is empty exactly when the test passes."""

    status: str
    problems: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.problems


def tolerance_for(metric: str, settings: Settings) -> float:
    return settings.metric_tolerances.get(metric, settings.tolerance)


def _field(name: str, value: object) -> str:
    return f"  {name + ':':<10}{value}"


def _shown(path: Path, rootdir: Path) -> str:
    try:
        return str(path.relative_to(rootdir))
    except ValueError:
        return str(path)


def compare_metrics(
    observed: dict[str, Any], baseline: dict[str, Any], settings: Settings
) -> list[tuple[str, Any, Any, str]]:
    """(metric, baseline, observed, allowed) for every metric out of tolerance. Point metrics may move by
    their tolerance; counts must match exactly; a metric only one side has is out of tolerance."""
    out = []
    for metric in sorted(set(observed) | set(baseline)):
        old, new = baseline.get(metric), observed.get(metric)
        if metric in POINT_METRICS:
            tolerance = tolerance_for(metric, settings)
            allowed = f"±{tolerance:g} points"
            within = (old is None and new is None) or (
                old is not None and new is not None and abs(float(new) - float(old)) <= tolerance + 1e-9
            )
        else:
            allowed = "exact"
            within = old == new
        if not within:
            out.append((metric, old, new, allowed))
    return out


def stale_fields(observed: dict[str, Any], stored: dict[str, Any]) -> list[str]:
    """Identity fields of the provenance that changed, as 'field: old -> new' lines."""
    observed = to_json_value(observed)  # as it would be stored
    changes = []
    for name in IDENTITY_FIELDS:
        old, new = stored.get(name), observed.get(name)
        if isinstance(old, dict) and isinstance(new, dict):
            for key in sorted(set(old) | set(new)):
                if old.get(key) != new.get(key):
                    changes.append(f"{name}.{key}: {old.get(key)!r} -> {new.get(key)!r}")
        elif old != new:
            changes.append(f"{name}: {old!r} -> {new!r}")
    return changes


def judge(
    result: CellResult,
    store: BaselineStore,
    settings: Settings,
    *,
    nodeid: str,
    rootdir: Path,
) -> Verdict:
    """Check ``result`` against its stored baseline, or store it under ``--update-baselines``."""
    cell_id = result.cell.id
    path = store.path_for(result.cell)
    shown = _shown(path, rootdir)
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
                    "  fix:      prune less, fine-tune longer (ini advprune_finetune_epochs), or raise the limit",
                ]
            )
        )

    if settings.update_baselines:
        status = store.write(result.cell, payload(result))
        return Verdict(status, tuple(problems))

    try:
        baseline = store.load(result.cell)
    except BaselineFileError as error:
        return Verdict("unusable", (*problems, f"advprune: {error}\n  cell:     {cell_id}\n  fix:      {refresh}"))
    if baseline is None:
        return Verdict(
            "missing",
            (
                *problems,
                "\n".join(
                    [
                        f"advprune: no baseline for cell {cell_id}.",
                        _field("file", shown),
                        _field("create", refresh),
                    ]
                ),
            ),
        )

    changes = stale_fields(result.provenance, baseline.provenance)
    if changes:
        lines = [f"advprune: the baseline of cell {cell_id} is stale: it measured something else."]
        lines += [_field("changed", change) for change in changes]
        lines += [_field("file", shown), _field("refresh", refresh)]
        return Verdict("stale", (*problems, "\n".join(lines)))

    out = compare_metrics(result.metrics, baseline.metrics, settings)
    for metric, old, new, allowed in out:
        problems.append(
            "\n".join(
                [
                    f"advprune: {metric} of cell {cell_id} is out of tolerance.",
                    _field("cell", cell_id),
                    _field("metric", metric),
                    _field("baseline", old),
                    _field("observed", new),
                    _field("allowed", allowed),
                    _field("file", shown),
                ]
            )
        )
    if out:
        problems.append(f"advprune: if the change is intended, accept it with: {refresh}")
    return Verdict("failed" if problems else "passed", tuple(problems))
