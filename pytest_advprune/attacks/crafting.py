"""Crafting adversarial examples in pixel space, batch by batch, with the threat model enforced."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from pytest_advprune.evaluation import PixelSpace, denormalize, normalize
from pytest_advprune.registry import AttackCallable, AttackEntry, Normalization, ParamValue
from pytest_advprune.specs import AttackSpec


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
