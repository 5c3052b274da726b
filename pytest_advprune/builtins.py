"""The embedded defaults: the digits dataset, the zoo models, and the built-in prunings and attacks."""

from __future__ import annotations

import functools
import importlib

from pytest_advprune.registry import DATASETS, MODELS, DatasetEntry, ModelEntry, describe_origin


def load_builtins() -> None:
    """Register every built-in entry (idempotent). Imports torch, so it runs when the matrix is first
    needed, not when the plugin is loaded."""
    for module in ("pytest_advprune.attacks", "pytest_advprune.pruning"):
        importlib.import_module(module)  # their decorators register the built-in attacks and prunings
    from pytest_advprune import zoo
    from pytest_advprune.data import load_digits

    DATASETS.add(DatasetEntry("digits", load_digits, describe_origin(load_digits), builtin=True))
    for name in zoo.MODEL_NAMES:
        MODELS.add(
            ModelEntry(
                name,
                functools.partial(zoo.load, name),
                "digits",
                f"pytest_advprune.zoo.load({name!r})",
                normalization=zoo.NORMALIZATION.get(name),
                builtin=True,
            )
        )
