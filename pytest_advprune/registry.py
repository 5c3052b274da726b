"""Name -> factory registries for datasets, models, pruning methods and attacks.

Users fill them from a ``conftest.py`` (or an installed package) with the ``register_*`` decorators;
the plugin fills them with the embedded defaults. Registering a *factory* rather than a built object
keeps collection cheap: nothing is built until a selected cell needs it.
"""

from __future__ import annotations

import fnmatch
import inspect
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

from pytest_advprune.errors import AdvPruneError

if TYPE_CHECKING:
    import torch
    from torch import nn

    from pytest_advprune.data import Dataset
    from pytest_advprune.pruning import PruningContext


ParamValue = float | int | str | bool
Normalization = tuple[tuple[float, ...], tuple[float, ...]]


class AttackCallable(Protocol):
    """torchattacks' shape: ``attack(images, labels) -> adversarial images``."""

    def __call__(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor: ...


AttackFactory = Callable[..., AttackCallable]
PruningFunction = Callable[["nn.Module", float, "PruningContext"], "nn.Module"]


class RegistryError(AdvPruneError, ValueError):
    """A registration or a look-up that cannot be honoured (duplicate or unknown name)."""


def describe_origin(obj: object) -> str:
    """Where ``obj`` was defined, as ``module.qualname (file:line)``, for duplicate-name messages."""
    module = getattr(obj, "__module__", "?")
    qualname = getattr(obj, "__qualname__", repr(obj))
    try:
        file = inspect.getsourcefile(obj)  # type: ignore[arg-type]
        _, line = inspect.getsourcelines(obj)  # type: ignore[arg-type]
    except (OSError, TypeError):
        return f"{module}.{qualname}"
    return f"{module}.{qualname} ({file}:{line})"


@dataclass(frozen=True)
class DatasetEntry:
    name: str
    factory: Callable[[], Dataset]
    origin: str
    builtin: bool = False


@dataclass(frozen=True)
class ModelEntry:
    name: str
    factory: Callable[[], nn.Module]
    dataset: str
    origin: str
    normalization: Normalization | None = None
    builtin: bool = False


@dataclass(frozen=True)
class PruningEntry:
    name: str
    function: PruningFunction
    origin: str
    default_amount: float = 0.5
    fine_tune: bool = True
    builtin: bool = False


@dataclass(frozen=True)
class AttackEntry:
    """An attack family: ``factory(model, **params)`` returns a callable attack.

    ``defaults`` declares every accepted parameter with its default value (and so its type);
    ``primary`` names the parameter shown bare in the cell id (``pgd_linf_0.1`` is ``eps=0.1``);
    ``norm`` ("Linf" or "L2") says which ball bounds the perturbation, if any. A ``minimal`` attack
    (DeepFool, CW) searches for the smallest perturbation that fools the model, unbounded: its ``eps``,
    if it has one, is the budget at which robust accuracy is read (a sample whose perturbation is larger
    counts as robust), not a ball the examples are projected into.
    """

    name: str
    factory: AttackFactory
    origin: str
    defaults: Mapping[str, ParamValue] = field(default_factory=dict)
    primary: str | None = None
    norm: str | None = None
    slow: bool = False
    builtin: bool = False
    minimal: bool = False


EntryT = TypeVar("EntryT", DatasetEntry, ModelEntry, PruningEntry, AttackEntry)


class Registry(Generic[EntryT]):
    """An insertion-checked mapping of names to entries of one kind, listed in sorted order."""

    def __init__(self, kind: str, decorator: str) -> None:
        self.kind = kind
        self.decorator = decorator
        self._entries: dict[str, EntryT] = {}

    def add(self, entry: EntryT) -> None:
        existing = self._entries.get(entry.name)
        if existing is not None and existing.builtin and entry.builtin and existing.origin == entry.origin:
            # The same built-in module imported again (pytester may drop and re-import modules).
            self._entries[entry.name] = entry
            return
        if existing is not None:
            raise RegistryError(
                f"{self.kind.capitalize()} {entry.name!r} is registered twice: first by {existing.origin}, "
                f"then by {entry.origin}. Pick another name for one of them."
            )
        self._entries[entry.name] = entry

    def remove(self, name: str) -> None:
        self._entries.pop(name, None)

    def snapshot(self) -> set[str]:
        return set(self._entries)

    def restore(self, names: set[str]) -> None:
        """Forget project registrations made since ``snapshot`` (a conftest.py is re-imported by every
        in-process pytest run, and must not meet its own earlier registrations). Built-ins stay."""
        for name in list(self._entries):
            if name not in names and not self._entries[name].builtin:
                del self._entries[name]

    def get(self, name: str) -> EntryT:
        try:
            return self._entries[name]
        except KeyError:
            raise RegistryError(
                f"Unknown {self.kind} {name!r}. Registered: {', '.join(self.names()) or '(none)'}. "
                f"Add one with @{self.decorator} in conftest.py."
            ) from None

    def names(self) -> list[str]:
        return sorted(self._entries)

    def entries(self) -> list[EntryT]:
        return [self._entries[name] for name in self.names()]

    def filter(self, patterns: Iterable[str]) -> list[str]:
        """Sorted names matching any fnmatch ``patterns``."""
        patterns = list(patterns)
        return [name for name in self.names() if any(fnmatch.fnmatchcase(name, p) for p in patterns)]

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._entries)


DATASETS: Registry[DatasetEntry] = Registry("dataset", "register_dataset")
MODELS: Registry[ModelEntry] = Registry("model", "register_model")
PRUNINGS: Registry[PruningEntry] = Registry("pruning", "register_pruning")
ATTACKS: Registry[AttackEntry] = Registry("attack", "register_attack")

F = TypeVar("F", bound=Callable[..., Any])


def _check_name(name: str, kind: str) -> None:
    # Names become path components of baseline files and parts of test ids.
    if not name or name.startswith(".") or not all(ch.isalnum() or ch in "_." for ch in name.replace("-", "_")):
        raise RegistryError(
            f"Invalid {kind} name {name!r}: use letters, digits, '-', '_' and '.' only "
            "(it becomes part of test ids and baseline paths), not starting with '.'."
        )
    if kind == "model" and name == "benchmarks":
        raise RegistryError("Model name 'benchmarks' is reserved: baselines/benchmarks/ holds pytest-benchmark runs.")


def register_dataset(name: str, *, builtin: bool = False) -> Callable[[F], F]:
    """Register ``factory() -> pytest_advprune.data.Dataset`` under ``name``."""

    def decorate(factory: F) -> F:
        _check_name(name, "dataset")
        DATASETS.add(DatasetEntry(name, factory, describe_origin(factory), builtin))
        return factory

    return decorate


def register_model(
    name: str,
    *,
    dataset: str = "digits",
    normalization: Normalization | None = None,
    builtin: bool = False,
) -> Callable[[F], F]:
    """Register ``factory() -> nn.Module``, a trained base model for ``dataset``.

    ``normalization=(mean, std)`` (per channel) declares that the model expects normalized inputs;
    attacks then still work in pixel space, so epsilons keep their meaning.
    """

    def decorate(factory: F) -> F:
        _check_name(name, "model")
        if normalization is not None:
            mean, std = normalization
            if len(mean) != len(std) or any(s <= 0 for s in std):
                raise RegistryError(
                    f"Model {name!r}: normalization={normalization!r} needs one mean and one positive std per channel."
                )
        # The dataset name is resolved when a cell is built: it may be registered after the model.
        MODELS.add(ModelEntry(name, factory, dataset, describe_origin(factory), normalization, builtin))
        return factory

    return decorate


def register_pruning(
    name: str,
    *,
    default_amount: float = 0.5,
    fine_tune: bool = True,
    builtin: bool = False,
) -> Callable[[F], F]:
    """Register ``function(model, amount, context) -> model``, applied to a deep copy of the base model.

    With ``fine_tune=True`` the plugin fine-tunes the returned model on the dataset's train split;
    ``torch.nn.utils.prune`` masks left on the model stay in force during fine-tuning and are made
    permanent afterwards.
    """

    def decorate(function: F) -> F:
        _check_name(name, "pruning")
        PRUNINGS.add(PruningEntry(name, function, describe_origin(function), default_amount, fine_tune, builtin))
        return function

    return decorate


def register_attack(
    name: str,
    *,
    primary: str | None = None,
    norm: str | None = None,
    slow: bool = False,
    builtin: bool = False,
    minimal: bool = False,
    **defaults: ParamValue,
) -> Callable[[F], F]:
    """Register ``factory(model, **params) -> attack``, where ``attack(images, labels)`` returns adversarial
    images in [0, 1] (a torchattacks ``Attack`` has this shape).

    Keyword arguments declare the accepted parameters and their defaults, e.g.
    ``@register_attack("my_fgsm", primary="eps", norm="Linf", eps=0.1)``. A parameter named ``restarts``
    is the crafting layer's, not the factory's: the attack runs that many times, each new start only on
    the samples that survived every earlier one (see ``attacks/crafting.py``).
    """

    def decorate(factory: F) -> F:
        _check_name(name, "attack")
        if primary is not None and primary not in defaults:
            raise RegistryError(
                f"Attack {name!r}: primary={primary!r} is not one of its parameters ({', '.join(defaults)})."
            )
        if norm not in (None, "Linf", "L2"):
            raise RegistryError(f"Attack {name!r}: norm={norm!r}; use 'Linf', 'L2' or None.")
        if minimal and norm is None:
            raise RegistryError(f"Attack {name!r}: a minimal attack needs norm='L2' or 'Linf' to measure its examples.")
        entry = AttackEntry(
            name, factory, describe_origin(factory), dict(defaults), primary, norm, slow, builtin, minimal
        )
        ATTACKS.add(entry)
        return factory

    return decorate
