"""The matrix of cells: which models, prunings and attacks run, in a stable sorted order.

Each axis comes from its ini key (``advprune_models``, ``advprune_prunings``, ``advprune_attacks``).
An axis without an ini key takes the entries registered outside the plugin (a project's conftest.py
or package) at their default parameters, or, when there are none, the embedded defaults below.
The ``--advprune-models/prunings/attacks`` patterns then deselect by id.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from pytest_advprune.options import Settings
from pytest_advprune.registry import ATTACKS, DATASETS, MODELS, PRUNINGS, RegistryError
from pytest_advprune.specs import AttackSpec, CellSpec, PruningSpec, SpecError, VariantSpec, parse_attack, parse_pruning

DEFAULT_MODELS = ("lenet", "mlp", "mobilenet", "resnet", "vgg")
DEFAULT_PRUNINGS = ("l1_unstructured:0.5", "l1_filter:0.3", "channel:0.5")
DEFAULT_ATTACKS = ("fgsm:0.1", "pgd_linf:0.1", "pgd_l2:0.5", "mifgsm:0.1")


class MatrixError(ValueError):
    """A matrix that cannot be built: unknown names, bad parameters."""


@dataclass(frozen=True)
class Matrix:
    models: tuple[str, ...]
    prunings: tuple[PruningSpec, ...]
    attacks: tuple[AttackSpec, ...]

    @property
    def cells(self) -> list[CellSpec]:
        return [CellSpec(m, p, a) for m in self.models for p in self.prunings for a in self.attacks]

    def variants(self, batch_sizes: Sequence[int]) -> list[VariantSpec]:
        return [VariantSpec(m, p, b) for m in self.models for p in (None, *self.prunings) for b in batch_sizes]


def _axis(ini_specs: Sequence[str] | None, registered: list[str], defaults: Sequence[str]) -> list[str]:
    if ini_specs is not None:
        return list(ini_specs)
    return registered or list(defaults)


@contextmanager
def _source(ini_key: str, declared: Sequence[str] | None) -> Iterator[None]:
    """Re-raise registry and spec errors as ``MatrixError`` naming where the bad entry came from."""
    try:
        yield
    except (RegistryError, SpecError) as error:
        where = f"ini {ini_key}" if declared is not None else "the default matrix"
        raise MatrixError(f"{error} (from {where})") from None


def _matches(identifier: str, patterns: Sequence[str]) -> bool:
    return any(fnmatch.fnmatchcase(identifier, pattern) for pattern in patterns)


def _unique(items: list[str], what: str, source: str) -> list[str]:
    seen: set[str] = set()
    for item in items:
        if item in seen:
            raise MatrixError(f"{what} {item!r} appears twice in {source}; list each once.")
        seen.add(item)
    return items


def build_matrix(settings: Settings) -> Matrix:
    """Parse the declared axes, raising ``MatrixError`` with the source named."""
    user_models = [e.name for e in MODELS.entries() if not e.builtin]
    user_prunings = [e.name for e in PRUNINGS.entries() if not e.builtin]
    user_attacks = [e.name for e in ATTACKS.entries() if not e.builtin and not e.slow]
    model_names = _axis(settings.model_specs, user_models, DEFAULT_MODELS)
    with _source("advprune_models", settings.model_specs):
        for name in model_names:
            DATASETS.get(MODELS.get(name).dataset)
    with _source("advprune_prunings", settings.pruning_specs):
        prunings = [parse_pruning(s) for s in _axis(settings.pruning_specs, user_prunings, DEFAULT_PRUNINGS)]
    with _source("advprune_attacks", settings.attack_specs):
        attacks = [parse_attack(s) for s in _axis(settings.attack_specs, user_attacks, DEFAULT_ATTACKS)]
    _unique(model_names, "Model", "advprune_models")
    _unique([p.id for p in prunings], "Pruning", "advprune_prunings")
    _unique([a.id for a in attacks], "Attack", "advprune_attacks")
    return Matrix(
        models=tuple(sorted(model_names)),
        prunings=tuple(sorted(prunings, key=lambda p: p.id)),
        attacks=tuple(sorted(attacks, key=lambda a: a.id)),
    )


def is_selected(spec: CellSpec | VariantSpec, settings: Settings) -> bool:
    """Whether ``spec`` passes the ``--advprune-models/prunings/attacks`` filters (a base variant passes
    any pruning filter: it is the reference the pruned variants are compared with)."""
    if not _matches(spec.model, settings.model_patterns):
        return False
    if spec.pruning is not None and not _matches(spec.pruning.id, settings.pruning_patterns):
        return False
    return not isinstance(spec, CellSpec) or _matches(spec.attack.id, settings.attack_patterns)
