"""Attack adapters over torchattacks, and crafting in pixel space with the threat model enforced.

Defaults suit images in [0, 1] (the digits are 8x8, so an L-inf epsilon of 0.1 is a visible but
label-preserving change, and an L2 epsilon of 0.5 is the same budget as changing 25 pixels by 0.1).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from pytest_advprune.evaluation import PixelSpace, denormalize, normalize
from pytest_advprune.registry import AttackCallable, AttackEntry, Normalization, ParamValue, register_attack
from pytest_advprune.specs import AttackSpec


@register_attack("fgsm", primary="eps", norm="Linf", builtin=True, eps=0.1)
def fgsm(model: nn.Module, eps: float) -> AttackCallable:
    """Fast Gradient Sign Method (Goodfellow et al., 2015): one signed-gradient step of size eps."""
    import torchattacks

    return torchattacks.FGSM(model, eps=eps)  # type: ignore[no-any-return]


@register_attack("pgd_linf", primary="eps", norm="Linf", builtin=True, eps=0.1, alpha=0.02, steps=10, random_start=True)
def pgd_linf(model: nn.Module, eps: float, alpha: float, steps: int, random_start: bool) -> AttackCallable:
    """Projected Gradient Descent in the L-inf ball (Madry et al., 2018)."""
    import torchattacks

    return torchattacks.PGD(model, eps=eps, alpha=alpha, steps=steps, random_start=random_start)  # type: ignore[no-any-return]


@register_attack("pgd_l2", primary="eps", norm="L2", builtin=True, eps=0.5, alpha=0.1, steps=10, random_start=True)
def pgd_l2(model: nn.Module, eps: float, alpha: float, steps: int, random_start: bool) -> AttackCallable:
    """Projected Gradient Descent in the L2 ball."""
    import torchattacks

    return torchattacks.PGDL2(model, eps=eps, alpha=alpha, steps=steps, random_start=random_start)  # type: ignore[no-any-return]


@register_attack("mifgsm", primary="eps", norm="Linf", builtin=True, eps=0.1, alpha=0.02, steps=10, decay=1.0)
def mifgsm(model: nn.Module, eps: float, alpha: float, steps: int, decay: float) -> AttackCallable:
    """Momentum Iterative FGSM (Dong et al., 2018), designed for examples that transfer between models."""
    import torchattacks

    return torchattacks.MIFGSM(model, eps=eps, alpha=alpha, steps=steps, decay=decay)  # type: ignore[no-any-return]


@register_attack("cw_l2", primary="c", builtin=True, c=1.0, kappa=0.0, steps=50, lr=0.05)
def cw_l2(model: nn.Module, c: float, kappa: float, steps: int, lr: float) -> AttackCallable:
    """Carlini-Wagner L2 (2017): minimal-perturbation attack, unbounded, trading distance against c."""
    import torchattacks

    return torchattacks.CW(model, c=c, kappa=kappa, steps=steps, lr=lr)  # type: ignore[no-any-return]


@register_attack("deepfool", primary="overshoot", builtin=True, overshoot=0.02, steps=50)
def deepfool(model: nn.Module, overshoot: float, steps: int) -> AttackCallable:
    """DeepFool (Moosavi-Dezfooli et al., 2016): minimal L2 step to the nearest linearized boundary."""
    import torchattacks

    attack = torchattacks.DeepFool(model, steps=steps, overshoot=overshoot)

    def run(images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        adversarial: torch.Tensor = attack(images, labels)
        # torchattacks applies the overshoot to each step, so the last point sits on the decision boundary
        # (logit margins of ~1e-6) where float noise picks the label; the original DeepFool scales the
        # total perturbation by (1 + overshoot), which is what makes its examples stay adversarial.
        return (images + (1 + overshoot) * (adversarial - images)).clamp(0.0, 1.0)

    return run


@register_attack("square", primary="eps", norm="Linf", builtin=True, eps=0.1, n_queries=300, p_init=0.8)
def square(model: nn.Module, eps: float, n_queries: int, p_init: float, seed: int = 0) -> AttackCallable:
    """Square Attack (Andriushchenko et al., 2020): score-based and gradient-free, L-inf."""
    import torchattacks

    return torchattacks.Square(model, norm="Linf", eps=eps, n_queries=n_queries, p_init=p_init, seed=seed)  # type: ignore[no-any-return]


@register_attack("autoattack", primary="eps", norm="Linf", slow=True, builtin=True, eps=0.1, n_classes=10)
def autoattack(model: nn.Module, eps: float, n_classes: int, seed: int = 0) -> AttackCallable:
    """AutoAttack, standard version (Croce & Hein, 2020): APGD-CE, APGD-T, FAB-T and Square. Slow."""
    import torchattacks

    return torchattacks.AutoAttack(model, norm="Linf", eps=eps, version="standard", n_classes=n_classes, seed=seed)  # type: ignore[no-any-return]


@dataclass(frozen=True)
class AttackGenerator:
    """A cell's attack, ready to run against any model: ``generator(model, images, labels)`` returns
    adversarial images in [0, 1], with the cell's parameters, normalization and seed."""

    entry: AttackEntry
    params: dict[str, ParamValue]
    normalization: Normalization | None
    seed: int
    batch_size: int = 256

    @classmethod
    def for_spec(
        cls, spec: AttackSpec, normalization: Normalization | None, seed: int, batch_size: int = 256
    ) -> AttackGenerator:
        return cls(spec.entry, spec.kwargs, normalization, seed, batch_size)

    def __call__(self, model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        attack = build_attack(self.entry, self.params, model, self.normalization, self.seed)
        return craft(attack, self.entry, self.params, images, labels, self.normalization, self.seed, self.batch_size)


def build_attack(
    entry: AttackEntry,
    params: dict[str, ParamValue],
    model: nn.Module,
    normalization: Normalization | None,
    seed: int,
) -> AttackCallable:
    """Instantiate ``entry`` against ``model``. A factory that takes ``seed`` gets the cell's seed.

    For a model that expects normalized inputs, a torchattacks attack is told so
    (``set_normalization_used``); any other callable is built against the model wrapped in
    ``PixelSpace``, so it sees a model of [0, 1] images either way.
    """
    import inspect

    kwargs: dict[str, Any] = dict(params)
    if "seed" in inspect.signature(entry.factory).parameters:
        kwargs["seed"] = seed
    attack = entry.factory(model, **kwargs)
    if normalization is not None:
        set_normalization_used = getattr(attack, "set_normalization_used", None)
        if set_normalization_used is None:
            return entry.factory(PixelSpace(model, normalization), **kwargs)
        set_normalization_used(mean=list(normalization[0]), std=list(normalization[1]))
    return attack


def takes_normalized_inputs(attack: AttackCallable) -> bool:
    """Whether ``attack`` was told about normalization (torchattacks): it then takes and returns
    normalized images."""
    return getattr(attack, "normalization_used", None) is not None


def project(adversarial: torch.Tensor, images: torch.Tensor, norm: str | None, eps: float | None) -> torch.Tensor:
    """Clamp into [0, 1] and, for a bounded attack, into the eps ball around ``images``.

    The attacks already do this; projecting again removes the float error of the
    normalize / inverse-normalize round trip so the threat model holds exactly.
    """
    adversarial = adversarial.clamp(0.0, 1.0)
    if norm is None or eps is None:
        return adversarial
    delta = adversarial - images
    if norm == "Linf":
        delta = delta.clamp(-eps, eps)
    else:
        norms = delta.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, *([1] * (delta.dim() - 1)))
        delta = delta * torch.clamp(eps / norms, max=1.0)
    return (images + delta).clamp(0.0, 1.0)


def craft(
    attack: AttackCallable,
    entry: AttackEntry,
    params: dict[str, ParamValue],
    images: torch.Tensor,
    labels: torch.Tensor,
    normalization: Normalization | None,
    seed: int,
    batch_size: int = 256,
) -> torch.Tensor:
    """Adversarial versions of ``images`` (pixel space, [0, 1]), crafted batch by batch.

    A torchattacks attack told about normalization (``set_normalization_used``) takes and returns
    normalized images; any other attack works in pixel space. Epsilons apply in pixel space either way.
    """
    torch.manual_seed(seed)  # random starts (PGD) draw from the global generator
    eps = params.get("eps")
    outputs = []
    for start in range(0, len(images), batch_size):
        x, y = images[start : start + batch_size], labels[start : start + batch_size]
        if normalization is not None and takes_normalized_inputs(attack):
            adv = denormalize(attack(normalize(x, normalization), y), normalization)
        else:
            adv = attack(x, y)
        outputs.append(project(adv.detach(), x, entry.norm, float(eps) if isinstance(eps, (int, float)) else None))
    return torch.cat(outputs) if outputs else images.clone()
