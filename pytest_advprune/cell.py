"""Evaluating one cell: clean, white-box and transfer outcomes of base and pruned model -> ``CellResult``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pytest_advprune.attacks import AttackGenerator
from pytest_advprune.evaluation import correct_predictions
from pytest_advprune.metrics import OUTCOME_NAMES, MetricValue, SizeFigures, compute_metrics
from pytest_advprune.specs import CellSpec, derive_seed

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


def evaluate_cell(
    cell: CellSpec,
    *,
    base: nn.Module,
    pruned: nn.Module,
    base_size: SizeFigures,
    pruned_size: SizeFigures,
    images: torch.Tensor,
    labels: torch.Tensor,
    base_adversarials: torch.Tensor,
    normalization: Normalization | None,
    seed: int,
    batch_size: int,
    provenance: dict[str, Any],
) -> CellResult:
    """Measure one cell. ``base_adversarials`` were crafted on ``base`` (shared by every pruning of that
    base); the white-box examples of the pruned model are crafted here, on ``pruned``."""
    whitebox = AttackGenerator.for_spec(cell.attack, normalization, derive_seed(seed, "whitebox", cell.id), batch_size)
    pruned_adversarials = whitebox(pruned, images, labels)

    def correct(model: nn.Module, inputs: torch.Tensor) -> list[bool]:
        return [bool(v) for v in correct_predictions(model, inputs, labels, normalization, batch_size).tolist()]

    outcomes = {
        "base_clean": correct(base, images),
        "pruned_clean": correct(pruned, images),
        "base_adversarial": correct(base, base_adversarials),
        "pruned_adversarial": correct(pruned, pruned_adversarials),
        "transfer_adversarial": correct(pruned, base_adversarials),
    }
    assert tuple(outcomes) == OUTCOME_NAMES
    return CellResult(cell, compute_metrics(outcomes, base_size, pruned_size), outcomes, provenance)
