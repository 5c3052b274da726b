"""DeepFool, L2 (Moosavi-Dezfooli et al., 2016), batched: the minimal-perturbation attack that steps to the
nearest decision boundary of the model's local linearisation, as foolbox's ``L2DeepFoolAttack`` does it.

torchattacks' ``DeepFool`` departs from the paper: it loops over the samples in Python and applies the
overshoot to every step, so its last point sits on the boundary where float noise picks the label. Here
the whole batch moves at once and the overshoot scales the *total* perturbation, once.
"""

from __future__ import annotations

import torch
from torch import nn

from pytest_advprune.evaluation import eval_mode

__all__ = ["deepfool_l2"]

# Added to every linearised distance (as foolbox does) so that each step lands a little past the linearised
# boundary rather than on it: a sample whose model is exactly linear near it is then fooled in one step.
STEP_SLACK = 1e-4
# Keeps the divisions by gradient norms finite where a gradient vanishes (a dead ReLU region).
NORM_FLOOR = 1e-8


def _flat_norms(tensor: torch.Tensor, keep: int) -> torch.Tensor:
    """L2 norms over every dimension after the first ``keep`` ones."""
    norms: torch.Tensor = torch.linalg.vector_norm(tensor.flatten(keep), dim=-1)
    return norms


def deepfool_l2(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    steps: int = 50,
    overshoot: float = 0.02,
    candidates: int | None = None,
) -> torch.Tensor:
    """Adversarial versions of ``images`` (NCHW in [0, 1]) for ``model`` (which takes [0, 1] images and
    returns logits): each sample moved, step by step, towards the nearest boundary of the linearised model.

    At every step, for each of the ``candidates`` classes the model ranked highest on the clean image
    (None: all classes) other than the label, the linearised distance to the boundary between the label and
    that class is ``|Z_k - Z_y| / ||grad(Z_k - Z_y)||``; the sample takes the minimal step to the nearest
    of these boundaries. The steps add up to ``p_total``, and the sample is placed at
    ``clamp(x0 + (1 + overshoot) * p_total, 0, 1)``: the overshoot is applied once, to the total, so that
    the result lies past the boundary instead of on it.

    A sample stops moving as soon as it is misclassified (its prediction differs from its label); a sample
    misclassified from the start is returned unchanged. The last step is not checked, as in foolbox, so a
    sample that DeepFool could not fool within ``steps`` comes back at its last point, not adversarial:
    callers judge success by classifying the result. Returns a tensor of the shape, dtype and device of
    ``images``. The model runs in eval mode and gets its modes back; its parameters receive no gradients.
    """
    if steps < 0:
        raise ValueError(f"steps must be >= 0, got {steps}")
    originals = images.detach()
    labels = labels.to(originals.device)
    if len(originals) == 0:
        return originals.clone()
    with eval_mode(model):
        with torch.no_grad():
            clean_logits: torch.Tensor = model(originals)
        num_classes = clean_logits.shape[1]
        considered = num_classes if candidates is None else min(candidates, num_classes)
        if considered < 2:
            raise ValueError(f"DeepFool needs at least 2 candidate classes, got {considered}")
        # The candidate classes are fixed once, from the clean logits (as in foolbox): the label first, then
        # the classes ranked highest among the others. For a correctly classified sample the label is the
        # top class, so this is exactly foolbox's top-k; a misclassified one is never attacked anyway.
        others = clean_logits.scatter(1, labels[:, None], float("-inf")).argsort(dim=1, descending=True)
        targets = others[:, : considered - 1]

        adversarial = originals.clone()
        total = torch.zeros_like(originals)
        # Indices of the samples still classified correctly: only they are run through the model, so the cost
        # of a step shrinks as samples are fooled. A fooled sample is never looked at again.
        active = torch.arange(len(originals), device=originals.device)
        for _ in range(steps):
            x = adversarial[active].requires_grad_(True)  # indexing with a tensor copies
            logits = model(x)
            correct = logits.detach().argmax(dim=1) == labels[active]
            if not bool(correct.any()):
                break
            # Gradients still come with respect to all of x (the fooled rows get zeros) and are cut down below.
            active, logits = active[correct], logits[correct]
            rows = torch.arange(len(active), device=originals.device)
            # The logit gaps Z_k - Z_y (negative while the label wins) and their gradients with respect to the
            # input, one backward pass per candidate over the same forward graph. Samples are independent in
            # eval mode, so the gradient of the batch sum is each sample's own gradient.
            label_logits = logits[rows, labels[active]]
            gaps, gradients = [], []
            for k in range(considered - 1):
                gap = logits[rows, targets[active, k]] - label_logits
                (gradient,) = torch.autograd.grad(gap.sum(), x, retain_graph=k < considered - 2)
                gaps.append(gap.detach())
                gradients.append(gradient[correct])
            gap_matrix = torch.stack(gaps, dim=1)  # (n, K)
            gradient_matrix = torch.stack(gradients, dim=1)  # (n, K, C, H, W)

            # Distance to each linearised boundary; the nearest one gives the direction of this step.
            distances = gap_matrix.abs() / (_flat_norms(gradient_matrix, 2) + NORM_FLOOR)
            best = distances.argmin(dim=1)
            distance = distances[rows, best] + STEP_SLACK
            direction = gradient_matrix[rows, best]
            # The minimal step onto that boundary: its distance along the unit gradient (which increases the gap).
            scale = distance / (_flat_norms(direction, 1) + NORM_FLOOR)
            total[active] += scale.view(-1, *([1] * (originals.dim() - 1))) * direction
            adversarial[active] = (originals[active] + (1.0 + overshoot) * total[active]).clamp(0.0, 1.0)
    return adversarial
