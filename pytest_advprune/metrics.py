"""The numbers a cell reports, computed from per-sample outcomes and model sizes.

Every accuracy and rate is a percentage of evaluation samples (0-100), so tolerances read as
"accuracy points". Definitions (n = number of evaluation samples):

- ``base_clean_accuracy`` / ``pruned_clean_accuracy``: % of clean samples classified correctly.
- ``clean_accuracy_drop``: base minus pruned clean accuracy, in points (positive = pruned is worse).
- ``base_robust_accuracy``: % of samples the base model classifies correctly after the attack was run
  against the base model itself (white-box).
- ``pruned_robust_accuracy``: the same for the pruned model, attacked directly (white-box).
- ``transfer_robust_accuracy``: % of samples the pruned model classifies correctly on the adversarial
  examples crafted on the *base* model (the study's central measure).
- ``*_attack_success_rate``: among the samples the evaluated model gets right when clean, % that the
  attack turns into errors (``None`` when the model gets no clean sample right). The transfer one
  counts every base-crafted example, also those that never fooled the base.
- ``transfer_rate``: the usual transfer rate, conditioned on fooling the base: among the samples that
  both models get right when clean and whose base-crafted example fools the base, % whose example also
  fools the pruned model (``None`` when there are none).
- ``base_max_perturbation`` / ``pruned_max_perturbation``: the largest perturbation of any example
  crafted on that model, in the attack's norm (L2 when it declares none), in pixel space.
- For minimal attacks (DeepFool, CW; see ``registry.AttackEntry``) robust accuracy is read at the
  attack's ``eps``: a sample whose adversarial example needs a larger perturbation counts as robust.
  ``*_median_perturbation`` / ``*_mean_perturbation``: the median and mean perturbation norm of the
  examples that succeed (the model is right on the clean sample, wrong on its example, whatever the
  norm), the measure the DeepFool paper and foolbox's minimal attacks report (``None`` when none
  succeeds). ``transfer_*``: the base-crafted examples that fool the pruned model.
- ``sparsity``: % of the base model's parameters that are zero or absent in the pruned model.
- ``compression_ratio``: base parameters / pruned nonzero parameters.
- ``*_parameters``, ``*_nonzero_parameters``, ``*_macs``: counts (MACs of one forward pass on one input).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

MetricValue = float | int | None

# Metrics measured in percentage points, compared against baselines with a tolerance. Every other
# metric is a count (or a ratio of counts) and must match exactly.
POINT_METRICS = (
    "base_clean_accuracy",
    "pruned_clean_accuracy",
    "clean_accuracy_drop",
    "base_robust_accuracy",
    "pruned_robust_accuracy",
    "transfer_robust_accuracy",
    "base_attack_success_rate",
    "pruned_attack_success_rate",
    "transfer_attack_success_rate",
    "transfer_rate",
    "sparsity",
)
# Direction of "worse": improvements never fail a cell. Other point metrics (sparsity) are neutral.
HIGHER_IS_BETTER = (
    "base_clean_accuracy",
    "pruned_clean_accuracy",
    "base_robust_accuracy",
    "pruned_robust_accuracy",
    "transfer_robust_accuracy",
)
LOWER_IS_BETTER = (
    "clean_accuracy_drop",
    "base_attack_success_rate",
    "pruned_attack_success_rate",
    "transfer_attack_success_rate",
    "transfer_rate",
)
# Functions of the accuracies: under a significance-based gate they are judged through those.
DERIVED_METRICS = LOWER_IS_BETTER
# The per-sample outcomes each accuracy is the mean of: the pairs McNemar's test compares.
OUTCOME_OF_METRIC = {
    "base_clean_accuracy": "base_clean",
    "pruned_clean_accuracy": "pruned_clean",
    "base_robust_accuracy": "base_adversarial",
    "pruned_robust_accuracy": "pruned_adversarial",
    "transfer_robust_accuracy": "transfer_adversarial",
}
# Every metric a cell reports, in the order compute_metrics returns them.
METRIC_NAMES = (
    "samples",
    *POINT_METRICS[:-1],
    "base_parameters",
    "pruned_parameters",
    "base_nonzero_parameters",
    "pruned_nonzero_parameters",
    "sparsity",
    "compression_ratio",
    "base_macs",
    "pruned_macs",
)
# Reported by every cell, never gated: a bounded attack's largest perturbation is at most its eps.
MAX_PERTURBATION_METRICS = ("base_max_perturbation", "pruned_max_perturbation")
# Reported by cells of minimal attacks, gated with a relative tolerance; larger is more robust.
NORM_METRICS = tuple(
    f"{who}_{stat}_perturbation" for who in ("base", "pruned", "transfer") for stat in ("median", "mean")
)
# Every metric name a cell can report, for the settings that name metrics (floors).
ALL_METRIC_NAMES = (*METRIC_NAMES, *MAX_PERTURBATION_METRICS, *NORM_METRICS)
OUTCOME_NAMES = ("base_clean", "pruned_clean", "base_adversarial", "pruned_adversarial", "transfer_adversarial")
DIGITS = 4  # stored precision; far below one sample's weight (100/n points) for any realistic n


@dataclass(frozen=True)
class SizeFigures:
    parameters: int
    nonzero_parameters: int
    macs: int


def percent(hits: int, total: int) -> float | None:
    return None if total == 0 else round(100.0 * hits / total, DIGITS)


def success_rate(clean: Sequence[bool], attacked: Sequence[bool]) -> float | None:
    """% of clean-correct samples that are wrong under attack."""
    eligible = [a for c, a in zip(clean, attacked, strict=True) if c]
    return percent(sum(1 for a in eligible if not a), len(eligible))


def transfer_rate(outcomes: Mapping[str, Sequence[bool]]) -> float | None:
    """% of the base-fooling examples (on samples both models get right when clean) that fool the pruned."""
    eligible = [
        transfer
        for base_clean, pruned_clean, base_adversarial, transfer in zip(
            outcomes["base_clean"],
            outcomes["pruned_clean"],
            outcomes["base_adversarial"],
            outcomes["transfer_adversarial"],
            strict=True,
        )
        if base_clean and pruned_clean and not base_adversarial
    ]
    return percent(sum(1 for transfer in eligible if not transfer), len(eligible))


def norm_statistics(norms: Sequence[float], succeeded: Sequence[bool]) -> tuple[float | None, float | None]:
    """Median and mean of ``norms`` over the samples where ``succeeded``; (None, None) when none did."""
    import statistics

    chosen = [float(n) for n, s in zip(norms, succeeded, strict=True) if s]
    if not chosen:
        return None, None
    return round(statistics.median(chosen), DIGITS), round(statistics.fmean(chosen), DIGITS)


def perturbation_metrics(
    base_norms: Sequence[float],
    pruned_norms: Sequence[float],
    fooled: Mapping[str, Sequence[bool]] | None,
    outcomes: Mapping[str, Sequence[bool]],
) -> dict[str, MetricValue]:
    """The perturbation metrics of a cell: the largest norm of each model's examples and, for a minimal
    attack (``fooled`` given: per-sample "the model is wrong on its example", whatever the norm, for
    ``base``, ``pruned`` and ``transfer``), the median and mean norm of the examples that succeed."""
    metrics: dict[str, MetricValue] = {
        "base_max_perturbation": round(max(base_norms), DIGITS) if len(base_norms) else None,
        "pruned_max_perturbation": round(max(pruned_norms), DIGITS) if len(pruned_norms) else None,
    }
    if fooled is None:
        return metrics
    cases = {
        "base": (base_norms, outcomes["base_clean"], fooled["base"]),
        "pruned": (pruned_norms, outcomes["pruned_clean"], fooled["pruned"]),
        "transfer": (base_norms, outcomes["pruned_clean"], fooled["transfer"]),
    }
    for who, (norms, clean, wrong) in cases.items():
        succeeded = [bool(c) and bool(w) for c, w in zip(clean, wrong, strict=True)]
        metrics[f"{who}_median_perturbation"], metrics[f"{who}_mean_perturbation"] = norm_statistics(norms, succeeded)
    return metrics


def compute_metrics(
    outcomes: Mapping[str, Sequence[bool]], base: SizeFigures, pruned: SizeFigures
) -> dict[str, MetricValue]:
    """All metrics of a cell. ``outcomes`` maps each of ``OUTCOME_NAMES`` to per-sample correctness."""
    missing = [name for name in OUTCOME_NAMES if name not in outcomes]
    if missing:
        raise ValueError(f"Outcomes lack {missing}; expected {list(OUTCOME_NAMES)}.")
    n = len(outcomes["base_clean"])
    if any(len(outcomes[name]) != n for name in OUTCOME_NAMES):
        raise ValueError("Outcome vectors differ in length: every outcome must cover the same samples.")

    def accuracy(name: str) -> float | None:
        return percent(sum(bool(v) for v in outcomes[name]), n)

    base_clean, pruned_clean = accuracy("base_clean"), accuracy("pruned_clean")
    # From the counts, not from the rounded accuracies, so it carries one rounding only.
    hits = {name: sum(bool(v) for v in outcomes[name]) for name in ("base_clean", "pruned_clean")}
    drop = None if n == 0 else round(100.0 * (hits["base_clean"] - hits["pruned_clean"]) / n, DIGITS)
    return {
        "samples": n,
        "base_clean_accuracy": base_clean,
        "pruned_clean_accuracy": pruned_clean,
        "clean_accuracy_drop": drop,
        "base_robust_accuracy": accuracy("base_adversarial"),
        "pruned_robust_accuracy": accuracy("pruned_adversarial"),
        "transfer_robust_accuracy": accuracy("transfer_adversarial"),
        "base_attack_success_rate": success_rate(outcomes["base_clean"], outcomes["base_adversarial"]),
        "pruned_attack_success_rate": success_rate(outcomes["pruned_clean"], outcomes["pruned_adversarial"]),
        "transfer_attack_success_rate": success_rate(outcomes["pruned_clean"], outcomes["transfer_adversarial"]),
        "transfer_rate": transfer_rate(outcomes),
        "base_parameters": base.parameters,
        "pruned_parameters": pruned.parameters,
        "base_nonzero_parameters": base.nonzero_parameters,
        "pruned_nonzero_parameters": pruned.nonzero_parameters,
        "sparsity": percent(base.parameters - pruned.nonzero_parameters, base.parameters),
        "compression_ratio": (
            None if pruned.nonzero_parameters == 0 else round(base.parameters / pruned.nonzero_parameters, DIGITS)
        ),
        "base_macs": base.macs,
        "pruned_macs": pruned.macs,
    }
