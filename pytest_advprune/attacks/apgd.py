"""Auto-PGD (Croce & Hein, 2020), L-inf and L2, untargeted (cross-entropy or DLR loss) and targeted (APGD-T),
batched, with early stopping per sample.

APGD is PGD with momentum and a step size it tunes itself: it starts at ``2 * eps`` and halves at fixed
checkpoints (after 22% of the steps, then at shrinking intervals, never under 6%) for every sample whose
loss rose in fewer than ``rho`` of the steps since the last checkpoint, or whose best loss did not improve
while its step was left alone; a sample whose step halves restarts from its best point. Every choice here
is the authors' (their published code, which torchattacks ports); the tests check it sample by sample
against an independent reference. Two things are the plugin's:

- **Early stopping.** Every sample's step size, checkpoints and trajectory depend on its own losses only,
  so a sample can stop at its first misclassified iterate without changing any other sample's run, and
  the steps go to the samples still standing. ``early_stop=False`` runs every sample to the end and, like
  the authors' code, keeps its last misclassified iterate.
- **What a surviving sample returns.** Its highest-loss point (the authors' ``x_best``), not the clean
  image as torchattacks returns: the study evaluates pruned models on the base model's examples, and a
  high-loss point is the example that transfers.

A sample the model misclassifies already is returned unchanged (it needs no attack). Restarts are the
crafting layer's (``attacks/crafting.py``): each new start runs on the survivors of the earlier ones.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from pytest_advprune.evaluation import eval_mode

__all__ = ["apgd", "apgd_targeted", "dlr_loss", "targeted_dlr_loss"]

# Keeps the DLR ratio finite when the top logits tie, and the L2 directions finite where a gradient or a
# perturbation vanishes: the authors' value, or the smallest normal number where the dtype cannot hold it
# (1e-12 is 0 in float16).
GUARD = 1e-12
STEP_WEIGHT = 0.75  # the new step's weight against the last move's (the paper's alpha); the rest is momentum

# loss(logits, index) -> per-sample loss to maximise; ``index`` are the rows' positions in the batch.
Loss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _guard(dtype: torch.dtype) -> float:
    return max(GUARD, torch.finfo(dtype).tiny)


def dlr_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Difference of Logits Ratio, untargeted: ``-(z_y - max_{i != y} z_i) / (z_pi1 - z_pi3)``, where
    ``z_pi1 >= z_pi2 >= ...`` are the sorted logits. Invariant to the logits' shift and scale."""
    ordered, ranking = logits.sort(dim=1)
    rows = torch.arange(len(logits), device=logits.device)
    label_is_top = (ranking[:, -1] == labels).to(logits.dtype)
    best_other = ordered[:, -2] * label_is_top + ordered[:, -1] * (1.0 - label_is_top)
    return -(logits[rows, labels] - best_other) / (ordered[:, -1] - ordered[:, -3] + _guard(logits.dtype))


def targeted_dlr_loss(logits: torch.Tensor, labels: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Targeted DLR: ``-(z_y - z_t) / (z_pi1 - (z_pi3 + z_pi4) / 2)``."""
    ordered = logits.sort(dim=1).values
    rows = torch.arange(len(logits), device=logits.device)
    scale = ordered[:, -1] - 0.5 * (ordered[:, -3] + ordered[:, -4]) + _guard(logits.dtype)
    return -(logits[rows, labels] - logits[rows, targets]) / scale


def _unit(tensor: torch.Tensor) -> torch.Tensor:
    """Each sample scaled to L2 norm 1 (the authors' guard against a zero norm)."""
    norms: torch.Tensor = tensor.flatten(1).norm(dim=1).view(-1, *([1] * (tensor.dim() - 1)))
    return tensor / (norms + _guard(tensor.dtype))


def _project(x: torch.Tensor, clean: torch.Tensor, norm: str, eps: float) -> torch.Tensor:
    """``x`` projected into the ``norm`` ball of radius ``eps`` around ``clean``, then into [0, 1]."""
    if norm == "Linf":
        return torch.min(torch.max(x, clean - eps), clean + eps).clamp(0.0, 1.0)
    delta = x - clean
    lengths = delta.flatten(1).norm(dim=1).view(-1, *([1] * (x.dim() - 1)))
    return (clean + _unit(delta) * torch.clamp(lengths, max=eps)).clamp(0.0, 1.0)


def _start(clean: torch.Tensor, norm: str, eps: float) -> torch.Tensor:
    """The authors' random start, from the global generator: L-inf a uniform draw in [-1, 1]^d scaled so its
    largest coordinate is eps; L2 a Gaussian direction at radius eps. Clamped to [0, 1]."""
    if norm == "Linf":
        t = 2.0 * torch.rand_like(clean) - 1.0
        largest = t.flatten(1).abs().amax(dim=1).view(-1, *([1] * (clean.dim() - 1)))
        return (clean + eps * t / largest).clamp(0.0, 1.0)
    return (clean + eps * _unit(torch.randn_like(clean))).clamp(0.0, 1.0)


def _checkpoint_schedule(steps: int) -> tuple[int, int, int]:
    """The authors' checkpoint intervals: the first after 22% of the steps, each next one 3% of the steps
    shorter, never under 6%."""
    return max(int(0.22 * steps), 1), max(int(0.03 * steps), 1), max(int(0.06 * steps), 1)


@dataclass(frozen=True)
class Run:
    """What one APGD run is given besides its samples: the ball, the budget and the schedule's threshold."""

    norm: str
    eps: float
    steps: int
    rho: float
    early_stop: bool


def _run(
    model: nn.Module, clean: torch.Tensor, start: torch.Tensor, labels: torch.Tensor, loss_of: Loss, run: Run
) -> tuple[torch.Tensor, torch.Tensor]:
    """One APGD run from ``start`` on every sample of ``clean``: each sample's example (see the module
    docstring) and whether it fools the model."""
    norm, eps, steps, rho, early_stop = run.norm, run.eps, run.steps, run.rho, run.early_stop
    count = len(clean)
    shape = (-1, *([1] * (clean.dim() - 1)))

    def evaluate(points: torch.Tensor, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        points = points.detach().requires_grad_(True)  # a fresh tensor each time: no copy needed
        logits = model(points)
        losses = loss_of(logits, index)
        (gradient,) = torch.autograd.grad(losses.sum(), points)  # each sample's loss depends on itself only
        return logits.detach(), losses.detach(), gradient

    everyone = torch.arange(count, device=clean.device)
    x = start.clone()
    logits, losses, gradient = evaluate(start.clone(), everyone)
    fooled = logits.argmax(dim=1) != labels
    adversarial = torch.where(fooled.view(shape), x, clean)
    x_best, gradient_best, loss_best = x.clone(), gradient.clone(), losses.clone()

    step = torch.full((count, *([1] * (clean.dim() - 1))), 2.0 * eps, dtype=clean.dtype, device=clean.device)
    x_previous = x.clone()
    loss_history = torch.zeros(steps, count, dtype=clean.dtype, device=clean.device)
    interval, shrink, shortest = _checkpoint_schedule(steps)
    since_checkpoint = 0
    loss_best_at_checkpoint = loss_best.clone()
    reduced_at_checkpoint = torch.ones(count, dtype=torch.bool, device=clean.device)

    for i in range(steps):
        index = (~fooled).nonzero().squeeze(1) if early_stop else everyone
        if len(index) == 0:
            break
        with torch.no_grad():
            here, origin = x[index], clean[index]
            last_move = here - x_previous[index]
            x_previous[index] = here
            weight = STEP_WEIGHT if i > 0 else 1.0  # the first step has no last move to draw on
            direction = gradient[index].sign() if norm == "Linf" else _unit(gradient[index])
            z = _project(here + step[index] * direction, origin, norm, eps)
            moved = _project(here + (z - here) * weight + last_move * (1.0 - weight), origin, norm, eps)
            x[index] = moved

        logits, losses, new_gradient = evaluate(x[index], index)
        with torch.no_grad():
            gradient[index] = new_gradient
            wrong = index[logits.argmax(dim=1) != labels[index]]
            adversarial[wrong] = x[wrong]
            fooled[wrong] = True
            loss_history[i, index] = losses
            better = index[losses > loss_best[index]]
            x_best[better], gradient_best[better] = x[better], gradient[better]
            loss_best[better] = loss_history[i, better]

            since_checkpoint += 1
            if since_checkpoint == interval:
                # The loss rose in fewer than rho of the last ``interval`` steps (the authors compare the
                # first step of the first interval with the history's last row, still zero then).
                rises = sum((loss_history[i - j] > loss_history[i - j - 1]).to(torch.int64) for j in range(interval))
                oscillating = rises <= interval * rho
                stalled = ~reduced_at_checkpoint & (loss_best_at_checkpoint >= loss_best)
                halve = oscillating | stalled
                reduced_at_checkpoint = halve
                loss_best_at_checkpoint = loss_best.clone()
                step[halve] /= 2.0
                x[halve], gradient[halve] = x_best[halve], gradient_best[halve]
                since_checkpoint = 0
                interval = max(interval - shrink, shortest)

    return torch.where(fooled.view(shape), adversarial, x_best), fooled


def _check(norm: str, eps: float, steps: int) -> None:
    if norm not in ("Linf", "L2"):
        raise ValueError(f"APGD: norm={norm!r}; use 'Linf' or 'L2'.")
    if steps < 0 or eps < 0:
        raise ValueError(f"APGD: steps={steps!r}, eps={eps!r}; both must be >= 0.")


def _needs_classes(logits: torch.Tensor, needed: int, loss: str) -> None:
    if logits.shape[1] < needed:
        raise ValueError(
            f"APGD: the {loss} loss needs at least {needed} classes, and the model returns {logits.shape[1]} "
            "logits; use the cross-entropy loss (apgd_ce) instead."
        )


def apgd(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    norm: str,
    eps: float,
    steps: int,
    loss: str = "ce",
    random_start: bool = True,
    rho: float = 0.75,
    early_stop: bool = True,
) -> torch.Tensor:
    """Untargeted APGD examples of ``images`` (NCHW in [0, 1]) for ``model`` (which takes [0, 1] images and
    returns logits), in the ``norm`` ball of radius ``eps``, on the cross-entropy (``loss="ce"``) or the DLR
    loss (``"dlr"``). ``random_start=False`` starts at the clean image, which makes the run deterministic.

    Each sample returns: the clean image if the model misclassifies it already; else, with ``early_stop``,
    its first misclassified iterate, and without, its last (the authors' choice); else its highest-loss
    point. The model runs in eval mode and gets its modes back; its parameters receive no gradient."""
    _check(norm, eps, steps)
    if loss not in ("ce", "dlr"):
        raise ValueError(f"APGD: loss={loss!r}; use 'ce' or 'dlr'.")
    clean, labels = images.detach(), labels.to(images.device, torch.long)
    result = clean.clone()
    # The start is drawn for the whole batch, so a sample's draw does not depend on which mates are skipped.
    start = _start(clean, norm, eps) if random_start else clean
    with eval_mode(model):
        with torch.no_grad():
            logits = model(clean)
        if loss == "dlr":
            _needs_classes(logits, 3, "DLR")
        standing = (logits.argmax(dim=1) == labels).nonzero().squeeze(1)
        if len(standing) == 0:
            return result
        y = labels[standing]

        def loss_of(output: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
            if loss == "ce":
                return nn.functional.cross_entropy(output, y[index], reduction="none")
            return dlr_loss(output, y[index])

        result[standing], _ = _run(
            model, clean[standing], start[standing], y, loss_of, Run(norm, eps, steps, rho, early_stop)
        )
    return result


def apgd_targeted(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    norm: str = "Linf",
    eps: float,
    steps: int,
    targets: int = 9,
    random_start: bool = True,
    rho: float = 0.75,
    early_stop: bool = True,
) -> torch.Tensor:
    """APGD-T: for each of the ``targets`` classes the model ranks highest on the clean image after its
    prediction (capped at the number of classes minus one), in turn, an APGD run on the targeted DLR loss
    towards that class, on the samples no earlier target fooled. A sample that survives every target
    returns the highest-loss point of its last run."""
    _check(norm, eps, steps)
    if targets < 1:
        raise ValueError(f"APGD-T: targets={targets!r}; it must be >= 1.")
    clean, labels = images.detach(), labels.to(images.device, torch.long)
    result = clean.clone()
    with eval_mode(model):
        with torch.no_grad():
            logits = model(clean)
        _needs_classes(logits, 4, "targeted DLR")
        ranking = logits.argsort(dim=1, descending=True)
        standing = (logits.argmax(dim=1) == labels).nonzero().squeeze(1)
        run = Run(norm, eps, steps, rho, early_stop)
        for rank in range(1, min(targets, logits.shape[1] - 1) + 1):
            if len(standing) == 0:
                break
            y, target = labels[standing], ranking[standing, rank]

            def loss_of(
                output: torch.Tensor, index: torch.Tensor, y: torch.Tensor = y, t: torch.Tensor = target
            ) -> torch.Tensor:
                return targeted_dlr_loss(output, y[index], t[index])

            start = _start(clean, norm, eps) if random_start else clean  # drawn for the whole batch, as above
            result[standing], fooled = _run(model, clean[standing], start[standing], y, loss_of, run)
            standing = standing[~fooled]
    return result
