"""Projected Gradient Descent (Madry et al., 2018), L-inf and L2, batched, with early stopping per sample.

The steps, projections and random starts are torchattacks' ``PGD`` and ``PGDL2`` (the per-sample
cross-checks against foolbox hold for both), with two departures:

- **Early stopping.** A sample stops moving at the first iterate the model misclassifies, and that
  iterate is its example: it is adversarial and inside the threat model, so the attack has succeeded
  on it. The remaining samples' trajectories are unchanged (each sample's step depends on its own
  gradient only), so a sample counts as fooled if *any* iterate fooled it, never less often than with
  the last iterate alone, and the steps are spent on the samples still standing. This is what makes
  30 steps with 10 restarts affordable in the default suite.
- **L2 steps of exactly alpha.** The gradient of the summed loss is normalised per sample with a
  negligible guard (1e-30); torchattacks normalises the gradient of the batch-*mean* loss with 1e-10,
  which shrank the steps of confidently classified samples by an amount that depended on the batch.

Random starts draw from the global generator, which ``craft`` seeds: L-inf U(-eps, eps) per pixel;
L2 a uniform direction at radius eps * U(0, 1), as torchattacks does (foolbox starts uniformly in the
ball instead; see docs/reference/prunings-and-attacks.md).
"""

from __future__ import annotations

import torch
from torch import nn

from pytest_advprune.evaluation import eval_mode

DIVISION_GUARD = 1e-30


def start_point(images: torch.Tensor, norm: str, eps: float) -> torch.Tensor:
    """torchattacks' random starts, drawn in the same order from the global generator."""
    if norm == "Linf":
        delta = torch.empty_like(images).uniform_(-eps, eps)
    else:
        delta = torch.empty_like(images).normal_()
        lengths = delta.flatten(1).norm(dim=1).view(-1, *([1] * (images.dim() - 1)))
        radii = torch.zeros_like(lengths).uniform_(0, 1)
        delta = delta * radii / lengths * eps
    return (images + delta).clamp(0.0, 1.0)


def _step(
    x: torch.Tensor, gradient: torch.Tensor, clean: torch.Tensor, norm: str, eps: float, alpha: float
) -> torch.Tensor:
    """One ascent step from ``x``, projected into the eps ball around ``clean`` and into [0, 1]."""
    shape = (-1, *([1] * (x.dim() - 1)))
    if norm == "Linf":
        moved = x + alpha * gradient.sign()
        delta = (moved - clean).clamp(-eps, eps)
    else:
        lengths = gradient.flatten(1).norm(dim=1).view(shape) + DIVISION_GUARD
        moved = x + alpha * gradient / lengths
        delta = moved - clean
        norms = delta.flatten(1).norm(dim=1).view(shape)
        delta = delta * torch.clamp(eps / (norms + DIVISION_GUARD), max=1.0)
    return (clean + delta).clamp(0.0, 1.0)


def pgd(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    norm: str,
    eps: float,
    alpha: float,
    steps: int,
    random_start: bool = True,
    early_stop: bool = True,
) -> torch.Tensor:
    """Adversarial versions of ``images`` (NCHW in [0, 1]) for ``model`` (which takes [0, 1] images and
    returns logits), in the ``norm`` ("Linf" or "L2") ball of radius ``eps``. The model is run in eval
    mode and left in the mode it was in; its parameters get no gradient."""
    with eval_mode(model):
        adversarial = start_point(images, norm, eps) if random_start else images.clone()
        standing = torch.ones(len(images), dtype=torch.bool, device=images.device)
        for _ in range(steps):
            index = standing.nonzero().squeeze(1)
            if len(index) == 0:
                break
            x = adversarial[index].clone().requires_grad_(True)
            logits = model(x)
            fooled = logits.argmax(dim=1) != labels[index]
            if not early_stop:
                fooled.zero_()  # every sample takes every step; the last iterate is its example
            standing[index[fooled]] = False  # this iterate already fools the model: it is the example
            loss = nn.functional.cross_entropy(logits, labels[index], reduction="sum")
            (gradient,) = torch.autograd.grad(loss, x)
            moving = ~fooled
            stepped = _step(x.detach()[moving], gradient[moving], images[index[moving]], norm, eps, alpha)
            adversarial[index[moving]] = stepped
        return adversarial.detach()
