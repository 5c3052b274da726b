"""Evaluating one cell: clean, white-box and transfer outcomes of base and pruned model -> ``CellResult``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pytest_advprune.attacks.crafting import perturbation_norms
from pytest_advprune.evaluation import correct_predictions
from pytest_advprune.metrics import OUTCOME_NAMES, MetricValue, SizeFigures, compute_metrics, perturbation_metrics
from pytest_advprune.sanity import Flag, cell_flags
from pytest_advprune.specs import CellSpec

if TYPE_CHECKING:
    import torch
    from torch import nn

    from pytest_advprune.registry import Normalization


@dataclass(frozen=True)
class CellResult:
    """What one cell measured: metrics (see ``metrics.py``), per-sample outcomes (one bool per evaluation
    sample, in evaluation order) and the provenance that makes the numbers comparable."""

    cell: CellSpec
    metrics: dict[str, MetricValue]
    outcomes: dict[str, list[bool]]
    provenance: dict[str, Any] = field(default_factory=dict)
    flags: tuple[Flag, ...] = ()  # sanity flags of this cell (see sanity.py); never stored in baselines


def evaluate_cell(
    cell: CellSpec,
    *,
    pruned: nn.Module,
    base_size: SizeFigures,
    pruned_size: SizeFigures,
    images: torch.Tensor,
    labels: torch.Tensor,
    base_adversarials: torch.Tensor,
    pruned_adversarials: torch.Tensor,
    base_clean_correct: torch.Tensor,
    base_adversarial_correct: torch.Tensor,
    normalization: Normalization | None,
    batch_size: int,
    provenance: dict[str, Any],
    model_checks: dict[str, tuple[int, bool]] | None = None,
    alpha: float = 0.05,
) -> CellResult:
    """Measure one cell. ``base_adversarials`` were crafted on the base model (shared by every pruning of
    that base, as are ``base_clean_correct`` and ``base_adversarial_correct``, the base model's hits on clean
    images and on them); ``pruned_adversarials`` were crafted on ``pruned`` (its white-box examples).

    For a minimal attack, an example whose perturbation exceeds the attack's ``eps`` counts as robust
    (robust accuracy is read at that budget), and the norms of the successful examples are reported.
    ``model_checks`` maps "base" / "pruned" to (samples with a zero input gradient, outputs look like
    probabilities), for the sanity flags."""
    entry, params = cell.attack.entry, cell.attack.kwargs
    base_norms = perturbation_norms(base_adversarials, images, entry.norm).cpu()
    pruned_norms = perturbation_norms(pruned_adversarials, images, entry.norm).cpu()
    budget = params.get("eps") if entry.minimal else None

    def correct(model: nn.Module, inputs: torch.Tensor) -> torch.Tensor:
        return correct_predictions(model, inputs, labels, normalization, batch_size)

    raw = {
        "base_adversarial": base_adversarial_correct,
        "pruned_adversarial": correct(pruned, pruned_adversarials),
        "transfer_adversarial": correct(pruned, base_adversarials),
    }
    norms_of = {"base_adversarial": base_norms, "pruned_adversarial": pruned_norms, "transfer_adversarial": base_norms}
    outcomes = {"base_clean": _bools(base_clean_correct), "pruned_clean": _bools(correct(pruned, images))}
    for name, hits in raw.items():
        if isinstance(budget, (int, float)) and not isinstance(budget, bool):
            hits = hits | (norms_of[name] > float(budget))
        outcomes[name] = _bools(hits)
    outcomes = {name: outcomes[name] for name in OUTCOME_NAMES}
    fooled = None
    if entry.minimal:
        fooled = {who: _bools(~raw[f"{who}_adversarial"]) for who in ("base", "pruned", "transfer")}
    metrics = compute_metrics(outcomes, base_size, pruned_size)
    metrics.update(perturbation_metrics(base_norms.tolist(), pruned_norms.tolist(), fooled, outcomes))
    checks = model_checks or {}
    flags = cell_flags(
        outcomes,
        {who: zero for who, (zero, _) in checks.items()},
        {who: probabilities for who, (_, probabilities) in checks.items()},
        alpha,
    )
    return CellResult(cell, metrics, outcomes, provenance, tuple(flags))


def _bools(values: torch.Tensor) -> list[bool]:
    return [bool(v) for v in values.tolist()]
