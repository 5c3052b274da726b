"""Crafting adversarial examples in pixel space, batch by batch, with the threat model checked.

Every batch an attack returns is checked before anything is clamped: in [0, 1], and for a bounded
attack inside its eps ball, up to the float error of the normalize / inverse-normalize round trip. An
attack that leaves its threat model fails the cell with the largest violation; silently clamping it
would report the robustness of a different attack.

Restarts: an attack with a ``restarts`` parameter runs that many times with different seeds, each new
start only on the samples that survived every earlier one (as AutoAttack does). A sample counts as
robust only if it survives every start, and restarts cost little once most samples are fooled.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from pytest_advprune.errors import ThreatModelError
from pytest_advprune.evaluation import PixelSpace, correct_predictions, denormalize, normalize
from pytest_advprune.extras import missing_extra
from pytest_advprune.registry import AttackCallable, AttackEntry, Normalization, ParamValue
from pytest_advprune.seeds import derive_seed
from pytest_advprune.specs import AttackSpec

# The normalize / inverse-normalize round trip moves pixels by ~1e-7; an attack that exceeds its
# threat model by more than this did so on purpose (or by a bug), not by rounding.
THREAT_MODEL_TOLERANCE = 1e-5


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
        params = self.params  # build_attack keeps "restarts" from the factory: it is handled here
        restarts = int(params.get("restarts", 1))
        if params.get("random_start") is False:
            restarts = 1  # every start would be the same deterministic run
        attack = build_attack(self.entry, params, model, self.normalization, self.seed)
        adversarial = craft(attack, self.entry, params, images, labels, self.normalization, self.seed, self.batch_size)
        for restart in range(1, restarts):
            robust = correct_predictions(model, adversarial, labels, self.normalization, self.batch_size)
            survivors = robust.nonzero().squeeze(1).to(images.device)
            if len(survivors) == 0:
                break
            seed = derive_seed(self.seed, "restart", str(restart))
            attack = build_attack(self.entry, params, model, self.normalization, seed)
            x, y = images[survivors], labels[survivors]
            again = craft(attack, self.entry, params, x, y, self.normalization, seed, self.batch_size)
            # Keep a new start's example only where it fools the model: the worst case per sample.
            fooled = ~correct_predictions(model, again, y, self.normalization, self.batch_size)
            adversarial[survivors[fooled.to(images.device)]] = again[fooled.to(images.device)]
        return adversarial


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

    kwargs: dict[str, Any] = {key: value for key, value in params.items() if key != "restarts"}
    if "seed" in inspect.signature(entry.factory).parameters:
        kwargs["seed"] = seed
    try:
        attack = entry.factory(model, **kwargs)
    except ModuleNotFoundError as error:
        # Found here only when the factory's code does not name the module (the matrix check finds the rest).
        missing = missing_extra(error, entry)
        if missing is None:
            raise
        raise missing from None
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


def perturbation_norms(adversarial: torch.Tensor, images: torch.Tensor, norm: str | None) -> torch.Tensor:
    """Per-sample size of ``adversarial - images`` in ``norm`` (L2 when the attack declares none)."""
    delta = (adversarial - images).flatten(1)
    norms: torch.Tensor = delta.abs().amax(dim=1) if norm == "Linf" else delta.norm(dim=1)
    return norms


def bound_of(entry: AttackEntry, params: dict[str, ParamValue]) -> float | None:
    """The eps ball a bounded attack's examples must stay in; None for unbounded and minimal attacks."""
    eps = params.get("eps")
    if entry.minimal or entry.norm is None or not isinstance(eps, (int, float)) or isinstance(eps, bool):
        return None
    return float(eps)


def check_threat_model(
    adversarial: torch.Tensor, images: torch.Tensor, entry: AttackEntry, params: dict[str, ParamValue]
) -> None:
    """Raise ``ThreatModelError`` naming the largest violation if ``adversarial`` leaves [0, 1] or, for
    a bounded attack, its eps ball around ``images``."""
    if len(adversarial) == 0:
        return
    if adversarial.shape != images.shape:
        raise ThreatModelError(
            f"attack {entry.name!r} (registered by {entry.origin}) returned images of shape "
            f"{tuple(adversarial.shape)} for inputs of shape {tuple(images.shape)}; an attack returns one "
            "adversarial image per input, of the same shape."
        )
    if not torch.isfinite(adversarial).all():
        raise ThreatModelError(
            f"attack {entry.name!r} (registered by {entry.origin}) returned non-finite pixels (NaN or inf)."
        )
    below, above = float(-adversarial.min()), float(adversarial.max() - 1.0)
    if max(below, above) > THREAT_MODEL_TOLERANCE:
        value = float(adversarial.min()) if below >= above else float(adversarial.max())
        raise ThreatModelError(
            f"attack {entry.name!r} (registered by {entry.origin}) returned a pixel value of {value:.6g}, outside "
            "[0, 1]: adversarial images must stay valid images. Clamp them in the attack, and if the model "
            "expects normalized inputs, register it with normalization=(mean, std) so the attack works in "
            "pixel space."
        )
    eps = bound_of(entry, params)
    if eps is None:
        return
    largest = float(perturbation_norms(adversarial, images, entry.norm).max())
    if largest > eps + THREAT_MODEL_TOLERANCE:
        raise ThreatModelError(
            f"attack {entry.name!r} (registered by {entry.origin}) perturbed an image by {largest:.6g} in "
            f"{entry.norm}, beyond its eps={eps:g}: its examples must stay in the {entry.norm} ball of radius "
            "eps around each image. Fix the attack's projection (or register it with the norm it bounds)."
        )


def project(adversarial: torch.Tensor, images: torch.Tensor, norm: str | None, eps: float | None) -> torch.Tensor:
    """Clamp into [0, 1] and, for a bounded attack, into the eps ball around ``images``.

    Used after ``check_threat_model``: it only removes the float error of the normalize /
    inverse-normalize round trip, so the threat model holds exactly.
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
    eps = bound_of(entry, params)
    outputs = []
    for start in range(0, len(images), batch_size):
        x, y = images[start : start + batch_size], labels[start : start + batch_size]
        if normalization is not None and takes_normalized_inputs(attack):
            adv = denormalize(attack(normalize(x, normalization), y), normalization)
        else:
            adv = attack(x, y)
        adv = adv.detach()
        check_threat_model(adv, x, entry, params)
        outputs.append(project(adv, x, entry.norm, eps))
    return torch.cat(outputs) if outputs else images.clone()
