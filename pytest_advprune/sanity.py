"""Sanity flags: signs that an attack did not do its job, as AutoAttack's authors ask evaluations to
check (Croce & Hein, 2020; Carlini et al., "On Evaluating Adversarial Robustness", 2019).

A flag does not say the numbers are wrong; it says they are suspicious in a way that usually means
gradient masking or a broken attack, so that a robustness number is not trusted blindly. Flags are
listed in the summary and the report; ``advprune_sanity = fail`` makes them fail the run.

Per cell (computed with the cell, from its own samples):

- ``transfer_beats_whitebox``: the pruned model is *less* accurate on examples crafted on the base
  (black-box for it) than on examples crafted on itself (white-box), significantly (McNemar). A
  white-box attack should be at least as strong as a transferred one: the pruned model's gradients
  probably mislead the attack (masking).
- ``zero_gradients``: more than 2% of the clean samples (and at least 2) give an input gradient of the
  loss that is exactly zero, for the base or the pruned model: saturated softmax, hard thresholds or
  non-differentiable layers; gradient attacks are blind there.
- ``probability_outputs``: the model returns probabilities (rows in [0, 1] that sum to 1), not logits:
  cross-entropy on them saturates and gradient attacks look weaker than they are.

Across the cells of one model and pruning (computed at the end of the run, from the cells' metrics;
"more than noise" is more than ``advprune_tolerance`` points):

- ``fgsm_beats_pgd``: FGSM leaves fewer samples robust than PGD (``pgd_linf``, or an APGD: ``apgd_ce``,
  ``apgd_dlr``, ``apgd_t``) at the same eps. PGD starts where FGSM does and takes more steps; when it does
  worse, its steps follow a misleading gradient.
- ``square_beats_pgd``: the gradient-free Square attack is stronger than PGD (or an APGD) at the same
  eps: the gradients are uninformative (masking).
- ``accuracy_rises_with_eps``: an attack with a larger eps (other parameters equal) leaves more samples
  robust: a larger ball contains the smaller one, so a working attack can only do better.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch
    from torch import nn

    from pytest_advprune.registry import Normalization

ZERO_GRADIENT_SHARE = 0.02  # more than "a few samples": 2% of them, and at least two
MEANINGS = {
    "transfer_beats_whitebox": "examples crafted on the base fool the pruned model more often than examples crafted "
    "on the pruned model itself: its gradients probably mislead the attack (gradient masking)",
    "zero_gradients": "the loss has exactly zero input gradient on these samples: gradient attacks are blind there "
    "(saturated outputs, thresholds, non-differentiable layers)",
    "probability_outputs": "the model returns probabilities, not logits: cross-entropy saturates and gradient attacks "
    "look weaker than they are; return the logits (drop the final softmax)",
    "fgsm_beats_pgd": "one FGSM step does better than PGD's many at the same eps: PGD follows a misleading gradient",
    "square_beats_pgd": "the gradient-free Square attack beats PGD at the same eps: the gradients are uninformative",
    "accuracy_rises_with_eps": "a larger eps leaves more samples robust although its ball contains the smaller "
    "one: the attack is not converging",
}
PAIRED_ATTACKS = {"fgsm": "fgsm_beats_pgd", "square": "square_beats_pgd"}  # compared with the PGD family
# The built-in many-step gradient attacks in the L-inf ball: FGSM and Square are compared with each of them.
# APGD is PGD with momentum and a tuned step, so "PGD" in the flags' names covers it.
PGD_FAMILY = ("pgd_linf", "apgd_ce", "apgd_dlr", "apgd_t")


@dataclass(frozen=True)
class Flag:
    name: str
    detail: str  # what was seen, with the numbers

    def describe(self) -> str:
        return f"{self.name}: {self.detail} ({MEANINGS[self.name]})"


def zero_gradient_count(
    model: nn.Module, images: torch.Tensor, labels: torch.Tensor, normalization: Normalization | None, batch_size: int
) -> int:
    """How many samples give an input gradient of the cross-entropy loss that is exactly zero everywhere.
    The model is evaluated in eval mode and left in the mode it was in; its parameters get no gradient."""
    import torch

    from pytest_advprune.evaluation import eval_mode, forward_in_pixel_space

    zero = 0
    with eval_mode(model):
        for start in range(0, len(images), batch_size):
            x = images[start : start + batch_size].clone().requires_grad_(True)
            y = labels[start : start + batch_size]
            loss = torch.nn.functional.cross_entropy(
                forward_in_pixel_space(model, x, normalization), y, reduction="sum"
            )
            (gradient,) = torch.autograd.grad(loss, x)
            zero += int((gradient.flatten(1).abs().amax(dim=1) == 0).sum())
    return zero


def looks_like_probabilities(logits: torch.Tensor) -> bool:
    """Every row in [0, 1] and summing to 1: a softmax output rather than logits."""
    if logits.numel() == 0:
        return False
    in_range = bool(((logits >= 0) & (logits <= 1)).all())
    return in_range and bool(((logits.sum(dim=1) - 1).abs() < 1e-3).all())


def cell_flags(
    outcomes: Mapping[str, Sequence[bool]],
    zero_gradients: Mapping[str, int],
    probability_outputs: Mapping[str, bool],
    alpha: float = 0.05,
) -> list[Flag]:
    """The per-cell flags. ``zero_gradients`` and ``probability_outputs`` are keyed "base" / "pruned"."""
    from pytest_advprune.paired import paired_change

    flags = []
    n = len(outcomes["pruned_adversarial"])
    # Paired: "before" is white-box, "after" is transfer; regressions are samples only transfer fools.
    paired = paired_change(outcomes["pruned_adversarial"], outcomes["transfer_adversarial"], 1 - alpha)
    if paired.difference < 0 and paired.p_value < alpha:
        flags.append(
            Flag(
                "transfer_beats_whitebox",
                f"transfer robust accuracy {paired.after_correct}/{n} < white-box {paired.before_correct}/{n} "
                f"(McNemar p={paired.p_value:.3g})",
            )
        )
    for who in ("base", "pruned"):
        count = zero_gradients.get(who, 0)
        if count >= 2 and count > ZERO_GRADIENT_SHARE * n:
            flags.append(Flag("zero_gradients", f"{who} model: {count} of {n} samples"))
        if probability_outputs.get(who):
            flags.append(Flag("probability_outputs", f"{who} model"))
    return flags


def matrix_flags(cells: Mapping[str, Mapping[str, Any]], noise: float) -> dict[str, list[Flag]]:
    """Flags across cells of one model and pruning, keyed by the cell id that carries each. ``cells`` maps
    cell ids to records with ``model``, ``pruning``, ``attack`` (its name), ``params`` and ``metrics``."""
    groups: dict[tuple[str, str], list[tuple[str, Mapping[str, Any]]]] = {}
    for cell_id, record in cells.items():
        groups.setdefault((str(record["model"]), str(record["pruning"])), []).append((cell_id, record))
    found: dict[str, list[Flag]] = {}
    for members in groups.values():
        for cell_id, record in members:
            for other_id, other in members:
                for flag in _compare(record, other, other_id, noise):
                    found.setdefault(cell_id, []).append(flag)
    return found


def _robust(record: Mapping[str, Any]) -> dict[str, float]:
    metrics = record.get("metrics") or {}
    return {
        who: float(metrics[f"{who}_robust_accuracy"])
        for who in ("base", "pruned")
        if isinstance(metrics.get(f"{who}_robust_accuracy"), (int, float))
    }


def _compare(record: Mapping[str, Any], other: Mapping[str, Any], other_id: str, noise: float) -> list[Flag]:
    """Flags that ``record`` raises against one other cell of its model and pruning."""
    params, other_params = dict(record.get("params") or {}), dict(other.get("params") or {})
    mine, theirs = _robust(record), _robust(other)
    flags = []
    name = PAIRED_ATTACKS.get(str(record["attack"]))
    same_eps = params.get("eps") is not None and params.get("eps") == other_params.get("eps")
    if name is not None and other["attack"] in PGD_FAMILY and same_eps:
        for who in sorted(set(mine) & set(theirs)):
            if mine[who] < theirs[who] - noise:
                seen = f"{who} robust accuracy {mine[who]:g} vs {theirs[who]:g} under {other_id}"
                flags.append(Flag(name, seen + _short_travel(other_params)))
    larger_eps = _differ_only_in_eps(params, other_params) and float(params["eps"]) > float(other_params["eps"])
    if record["attack"] == other["attack"] and larger_eps:
        for who in sorted(set(mine) & set(theirs)):
            if mine[who] > theirs[who] + noise:
                flags.append(
                    Flag(
                        "accuracy_rises_with_eps",
                        f"{who} robust accuracy {mine[who]:g} at eps={params['eps']:g} vs {theirs[who]:g} at "
                        f"eps={other_params['eps']:g} ({other_id})",
                    )
                )
    return flags


def _short_travel(pgd: Mapping[str, Any]) -> str:
    """The likelier cause, when PGD's steps cannot even cross its ball: ``alpha`` is absolute, so a user
    who lowers ``steps`` or raises ``eps`` without setting ``alpha`` gets a PGD that cannot reach the edge."""
    values = [pgd.get(key) for key in ("eps", "alpha", "steps")]
    numbers = [float(v) for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
    if len(numbers) != 3:
        return ""
    eps, alpha, steps = numbers
    if steps <= 0 or alpha * steps >= eps:
        return ""
    return (
        f"; that PGD's steps x alpha = {alpha * steps:g} is shorter than eps = {eps:g}, so it cannot reach the "
        f"edge of its ball: set alpha too, e.g. alpha={2.5 * eps / steps:.4g} (2.5 * eps / steps)"
    )


def _differ_only_in_eps(params: Mapping[str, Any], other: Mapping[str, Any]) -> bool:
    if not isinstance(params.get("eps"), (int, float)) or not isinstance(other.get("eps"), (int, float)):
        return False
    rest = {k: v for k, v in params.items() if k != "eps"}
    return rest == {k: v for k, v in other.items() if k != "eps"} and params["eps"] != other["eps"]
