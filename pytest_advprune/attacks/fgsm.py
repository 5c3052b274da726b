"""FGSM and MI-FGSM, L-inf, batched: the one-step attack and its momentum iteration.

Both follow their papers (and torchattacks' ``FGSM`` and ``MIFGSM``, which the tests check them against
sample by sample): the cross-entropy gradient's sign scaled by the step, projected into the eps ball and
[0, 1]. The loss is summed over the batch, so each sample's gradient is its own and does not depend on its
batch mates (a mean would only rescale it, which neither the sign nor MI-FGSM's normalisation sees).
"""

from __future__ import annotations

import torch
from torch import nn

from pytest_advprune.evaluation import eval_mode

__all__ = ["fgsm", "mifgsm"]

# MI-FGSM divides each sample's gradient by its mean absolute value; a sample whose gradient vanishes
# (saturated softmax) would divide 0 by 0. torchattacks returns NaN there; this keeps its step at zero.
NORM_FLOOR = 1e-12


def _input_gradient(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The gradient of each sample's cross-entropy with respect to its own input."""
    x = images.detach().requires_grad_(True)  # a new tensor object: the caller's images stay untouched
    loss = nn.functional.cross_entropy(model(x), labels.to(images.device, torch.long), reduction="sum")
    (gradient,) = torch.autograd.grad(loss, x)
    return gradient


def fgsm(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, *, eps: float) -> torch.Tensor:
    """Fast Gradient Sign Method (Goodfellow et al., 2015): ``clamp(x + eps * sign(grad), 0, 1)``.

    ``model`` takes images in [0, 1] (NCHW) and returns logits; it runs in eval mode and gets its modes
    back, and its parameters receive no gradient.
    """
    with eval_mode(model):
        gradient = _input_gradient(model, images, labels)
    return (images.detach() + eps * gradient.sign()).clamp(0.0, 1.0)


def mifgsm(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    eps: float,
    alpha: float,
    steps: int,
    decay: float,
) -> torch.Tensor:
    """Momentum Iterative FGSM (Dong et al., 2018): ``steps`` signed steps of ``alpha`` along an
    accumulated gradient ``g = decay * g + grad / mean|grad|``, each projected into the L-inf ball of
    radius ``eps`` and into [0, 1]. Every sample takes every step (the last iterate is its example): the
    attack is meant to transfer, and stopping at the first fooling iterate would weaken that.
    """
    if steps < 0:
        raise ValueError(f"MI-FGSM: steps={steps!r}; it must be >= 0.")
    clean = images.detach()
    shape = (-1, *([1] * (clean.dim() - 1)))
    adversarial = clean.clone()
    momentum = torch.zeros_like(clean)
    with eval_mode(model):
        for _ in range(steps):
            gradient = _input_gradient(model, adversarial, labels)
            scale = gradient.abs().flatten(1).mean(dim=1).view(shape).clamp_min_(NORM_FLOOR)
            momentum.mul_(decay).add_(gradient.div_(scale))  # in place: the same arithmetic, fewer tensors
            moved = adversarial + alpha * momentum.sign()
            adversarial = (clean + (moved - clean).clamp(-eps, eps)).clamp(0.0, 1.0)
    return adversarial
