"""The study's comparison: is each pruned model as robust as its base, under its own attack (white-box)
and under the base's examples (transfer)? Paired over the same evaluation samples.

``robustness_gaps`` compares per-sample outcomes of one cell: the pruned model's white-box robustness
and the transfer robustness, each against the base model's white-box robustness on the same samples
(difference in points, Newcombe's paired interval, McNemar's exact p-value). ``study_rows`` lays the
cells of a report out as the table a reader of the study wants: per model and attack, the base, then
each pruned version with its gaps, sparsity, MACs and measured speedup.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from pytest_advprune.paired import paired_change

GAPS = {  # gap name -> (outcomes before, outcomes after)
    "pruned_vs_base": ("base_adversarial", "pruned_adversarial"),
    "transfer_vs_base": ("base_adversarial", "transfer_adversarial"),
    "clean_vs_base": ("base_clean", "pruned_clean"),
}


def robustness_gaps(outcomes: Mapping[str, Sequence[bool]], confidence: float = 0.95) -> dict[str, dict[str, Any]]:
    """Each gap (after minus before, in points) with its paired interval and McNemar p-value."""
    gaps: dict[str, dict[str, Any]] = {}
    for name, (before, after) in GAPS.items():
        if before in outcomes and after in outcomes and len(outcomes[before]) == len(outcomes[after]):
            change = paired_change(outcomes[before], outcomes[after], confidence)
            gaps[name] = {
                "difference": round(change.difference, 4),
                "ci_low": round(change.ci_low, 4),
                "ci_high": round(change.ci_high, 4),
                "confidence": confidence,
                "p_value": float(f"{change.p_value:.6g}"),
                "regressions": change.regressions,
                "improvements": change.improvements,
            }
    return gaps


def study_rows(cells: Iterable[Mapping[str, Any]], speedups: Mapping[tuple[str, str], float]) -> list[dict[str, Any]]:
    """One row per cell, sorted by model, attack and pruning: base and pruned white-box robust accuracy,
    transfer robust accuracy, their gaps to the base, sparsity, MACs, and the measured speedup of the
    pruned model (``speedups[(model, pruning)]``, from the latency benchmarks of the same run, if any)."""
    rows = []
    for cell in cells:
        metrics = cell.get("metrics") or {}
        if "base_robust_accuracy" not in metrics:
            continue  # a cell that errored before measuring anything
        gaps = cell.get("gaps") or {}
        rows.append(
            {
                "model": cell["model"],
                "attack": cell.get("attack_id") or cell["attack"],
                "pruning": cell["pruning"],
                "cell": cell["id"],
                "base_clean_accuracy": metrics.get("base_clean_accuracy"),
                "pruned_clean_accuracy": metrics.get("pruned_clean_accuracy"),
                "base_robust_accuracy": metrics.get("base_robust_accuracy"),
                "pruned_robust_accuracy": metrics.get("pruned_robust_accuracy"),
                "transfer_robust_accuracy": metrics.get("transfer_robust_accuracy"),
                "pruned_vs_base": gaps.get("pruned_vs_base"),
                "transfer_vs_base": gaps.get("transfer_vs_base"),
                "sparsity": metrics.get("sparsity"),
                "base_macs": metrics.get("base_macs"),
                "pruned_macs": metrics.get("pruned_macs"),
                "speedup": speedups.get((str(cell["model"]), str(cell["pruning"]))),
            }
        )
    return sorted(rows, key=lambda row: (row["model"], row["attack"], row["pruning"]))
