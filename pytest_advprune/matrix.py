"""The matrix of cells: which models, prunings and attacks run, in a stable sorted order.

Each axis comes from its ini key (``advprune_models``, ``advprune_prunings``, ``advprune_attacks``).
An axis without an ini key takes the entries registered outside the plugin (a project's conftest.py
or package) at their default parameters, or, when there are none, the embedded defaults below.
A pruning or attack line may end in a scope, ``for dataset=cifar10`` or ``for model=resnet*`` (see
``scopes.py``; a bare pattern is a model name): it then applies to the models it selects only, so one
suite holds a digits model attacked at eps 0.1 and a 32x32 RGB model at eps 8/255. Ids and baseline
paths do not show the scope. A line holding a sweep (``pgd_linf:eps=0.02..0.2/10``, see ``specs.py``)
stands for one spec per value, each with the line's scope, as if the values had been listed one by one.
The ``--advprune-models/prunings/attacks`` patterns then deselect by id.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Generic, TypeVar

from pytest_advprune.errors import AdvPruneError
from pytest_advprune.invariants import Invariants
from pytest_advprune.options import Settings
from pytest_advprune.registry import ATTACKS, DATASETS, MODELS, PRUNINGS, RegistryError
from pytest_advprune.scopes import Scope, ScopeError, split_scope
from pytest_advprune.specs import (
    AttackSpec,
    CellSpec,
    PruningSpec,
    SpecError,
    VariantSpec,
    expand_attack,
    expand_pruning,
    is_sweep,
    spec_count,
)

SpecT = TypeVar("SpecT", PruningSpec, AttackSpec)
MATRIX_SCOPE_KEYS = ("model", "dataset")

DEFAULT_MODELS = ("lenet", "mlp", "mobilenet", "resnet", "vgg")
DEFAULT_PRUNINGS = ("l1_unstructured:0.5", "l1_filter:0.3", "channel:0.5")
DEFAULT_ATTACKS = ("fgsm:0.1", "apgd_ce:0.1", "apgd_ce_l2:0.5", "mifgsm:0.1")


class MatrixError(AdvPruneError, ValueError):
    """A matrix that cannot be built: unknown names, bad parameters."""


@dataclass(frozen=True)
class Scoped(Generic[SpecT]):
    """A pruning or attack of the matrix and the models it applies to."""

    spec: SpecT
    scope: Scope
    line: str  # as declared, for messages

    def applies_to(self, model: str) -> bool:
        return self.scope.matches(model=model, dataset=MODELS.get(model).dataset)


@dataclass(frozen=True)
class Matrix:
    models: tuple[str, ...]
    prunings: tuple[Scoped[PruningSpec], ...]
    attacks: tuple[Scoped[AttackSpec], ...]

    def prunings_for(self, model: str) -> list[PruningSpec]:
        return [entry.spec for entry in self.prunings if entry.applies_to(model)]

    def attacks_for(self, model: str) -> list[AttackSpec]:
        return [entry.spec for entry in self.attacks if entry.applies_to(model)]

    @property
    def cells(self) -> list[CellSpec]:
        return [CellSpec(m, p, a) for m in self.models for p in self.prunings_for(m) for a in self.attacks_for(m)]

    def variants(self, batch_sizes: Sequence[int]) -> list[VariantSpec]:
        return [VariantSpec(m, p, b) for m in self.models for p in (None, *self.prunings_for(m)) for b in batch_sizes]


def _axis(ini_specs: Sequence[str] | None, registered: list[str], defaults: Sequence[str]) -> list[str]:
    if ini_specs is not None:
        return list(ini_specs)
    return registered or list(defaults)


@contextmanager
def _source(ini_key: str, declared: bool) -> Iterator[None]:
    """Re-raise registry, spec and scope errors as ``MatrixError`` naming where the bad entry came from."""
    try:
        yield
    except (RegistryError, SpecError, ScopeError) as error:
        where = f"ini {ini_key}" if declared else "the default matrix"
        raise MatrixError(f"{error} (from {where})") from None


def _matches(identifier: str, patterns: Sequence[str]) -> bool:
    return any(fnmatch.fnmatchcase(identifier, pattern) for pattern in patterns)


def _scoped_specs(
    lines: Sequence[str], expand: Callable[[str], list[SpecT]], models: Sequence[str], ini_key: str, declared: bool
) -> list[Scoped[SpecT]]:
    """Parse ``spec [for scope]`` lines, a sweep into one entry per value; each line must select a model,
    and no model may get one id twice (from two lines: a sweep never repeats a value)."""
    entries: list[Scoped[SpecT]] = []
    with _source(ini_key, declared):
        for line in lines:
            text, scope = split_scope(line, keys=MATRIX_SCOPE_KEYS, bare_key="model", source=f"ini {ini_key}")
            entries += [Scoped(spec, scope, line.strip()) for spec in expand(text)]
    for entry in entries:
        if entry.scope.selectors and not any(entry.applies_to(model) for model in models):
            datasets = sorted({MODELS.get(model).dataset for model in models})
            raise MatrixError(
                f"ini {ini_key}: {entry.line!r} applies to no model of the matrix (models: {', '.join(models)}; "
                f"their datasets: {', '.join(datasets)})."
            )
    for model in models:
        seen: dict[str, str] = {}
        for entry in (entry for entry in entries if entry.applies_to(model)):
            if entry.spec.id in seen:
                first = seen[entry.spec.id]
                fix = "narrow one of them with 'for ...'"
                if is_sweep(first) or is_sweep(entry.line):
                    fix = f"a sweep gives every value of its range: move a range's end or drop a line, or {fix}"
                raise MatrixError(
                    f"ini {ini_key}: {first!r} and {entry.line!r} both give model {model!r} "
                    f"{entry.spec.id!r}; list each once per model ({fix})."
                )
            seen[entry.spec.id] = entry.line
    return sorted(entries, key=lambda entry: (entry.spec.id, entry.scope.text))


def build_matrix(settings: Settings) -> Matrix:
    """Parse the declared axes, raising ``MatrixError`` with the source named."""
    user_models = [e.name for e in MODELS.entries() if not e.builtin]
    user_prunings = [e.name for e in PRUNINGS.entries() if not e.builtin]
    user_attacks = [e.name for e in ATTACKS.entries() if not e.builtin and not e.slow]
    model_names = _axis(settings.model_specs, user_models, DEFAULT_MODELS)
    with _source("advprune_models", settings.model_specs is not None):
        for index, name in enumerate(model_names):
            if name in model_names[:index]:
                raise MatrixError(f"Model {name!r} appears twice in advprune_models; list each once.")
            DATASETS.get(MODELS.get(name).dataset)
    models = sorted(model_names)
    prunings = _axis(settings.pruning_specs, user_prunings, DEFAULT_PRUNINGS)
    attacks = _axis(settings.attack_specs, user_attacks, DEFAULT_ATTACKS)
    _check_size(models, prunings, attacks, settings.max_cells)
    matrix = Matrix(
        models=tuple(models),
        prunings=tuple(
            _scoped_specs(prunings, expand_pruning, models, "advprune_prunings", settings.pruning_specs is not None)
        ),
        attacks=tuple(
            _scoped_specs(attacks, expand_attack, models, "advprune_attacks", settings.attack_specs is not None)
        ),
    )
    _check_rule_scopes(matrix, settings.invariants)
    return matrix


def _check_size(models: Sequence[str], prunings: Sequence[str], attacks: Sequence[str], limit: int) -> None:
    """Refuse a matrix of more than ``limit`` cells before any sweep is expanded: a ``/1000000000``
    sweep, or two sweeps of 1000 in one line, would otherwise fill memory before the first test."""

    def sizes(lines: Sequence[str], ini_key: str) -> list[tuple[str, Scope, int]]:
        with _source(ini_key, True):
            scoped = [
                (line, *split_scope(line, keys=MATRIX_SCOPE_KEYS, bare_key="model", source=f"ini {ini_key}"))
                for line in lines
            ]
        return [(line, scope, spec_count(text)) for line, text, scope in scoped]

    pruning_sizes, attack_sizes = sizes(prunings, "advprune_prunings"), sizes(attacks, "advprune_attacks")
    cells = 0
    for model in models:
        dataset = MODELS.get(model).dataset
        per_model = [
            sum(size for _, scope, size in axis if scope.matches(model=model, dataset=dataset))
            for axis in (pruning_sizes, attack_sizes)
        ]
        cells += per_model[0] * per_model[1]
    largest = max([*pruning_sizes, *attack_sizes], key=lambda entry: entry[2], default=None)
    if cells <= limit and (largest is None or largest[2] <= limit):
        return
    line = f" The largest line is {largest[0].strip()!r}, {largest[2]:,} values." if largest else ""
    raise MatrixError(
        f"The matrix has {cells:,} cells (models x prunings x attacks), more than the limit of {limit:,} "
        f"(ini advprune_max_cells).{line} Narrow a sweep or list fewer entries, or raise the limit with "
        "--advprune-max-cells=N or ini advprune_max_cells = N."
    )


def _check_rule_scopes(matrix: Matrix, invariants: Invariants) -> None:
    """An invariant or floor whose scope selects no cell of the matrix is a typo (``for MLP-*`` where the
    model is ``mlp``) that would silently switch the rule off: refuse it, as matrix lines are."""
    rules = (*invariants.max_clean_drop, *invariants.max_robustness_gap, *invariants.floors)
    scoped = {rule.source: rule.scope for rule in rules if rule.scope.selectors}
    if not scoped:
        return
    cells = matrix.cells
    fields = [
        {
            "cell": cell.id,
            "model": cell.model,
            "dataset": MODELS.get(cell.model).dataset,
            "pruning": cell.pruning.id,
            "attack": cell.attack.id,
        }
        for cell in cells
    ]
    for source, scope in scoped.items():
        if not any(scope.matches(**selected) for selected in fields):
            examples = ", ".join(repr(cell.id) for cell in cells[:3]) + (", ..." if len(cells) > 3 else "")
            raise MatrixError(
                f"{source} selects no cell of the matrix (cells: {examples or 'none'}; models: "
                f"{', '.join(matrix.models)}). Patterns are case-sensitive and match whole ids ('for mlp-*', "
                "'for model=mlp', 'for attack=fgsm_*'); fix the pattern or remove the line."
            )


def is_selected_model(model: str, settings: Settings) -> bool:
    return _matches(model, settings.model_patterns)


def is_selected(spec: CellSpec | VariantSpec, settings: Settings) -> bool:
    """Whether ``spec`` passes the ``--advprune-models/prunings/attacks`` filters (a base variant passes
    any pruning filter: it is the reference the pruned variants are compared with)."""
    if not _matches(spec.model, settings.model_patterns):
        return False
    if spec.pruning is not None and not _matches(spec.pruning.id, settings.pruning_patterns):
        return False
    return not isinstance(spec, CellSpec) or _matches(spec.attack.id, settings.attack_patterns)
