"""Errors that stop one cell (or the run) with a message instead of a traceback through the plugin.

Each message names what is wrong (the dataset, model, attack or pruning), where it came from, and
what to do about it; the plugin prints it as the cell's whole failure.
"""

from __future__ import annotations


class AdvPruneError(Exception):
    """The base of every error the plugin raises with a message for the user (a bad option, spec, file,
    registration or cell), so a caller can catch them all: ``except pytest_advprune.AdvPruneError``."""


class CellError(AdvPruneError):
    """A cell that cannot be computed honestly."""


class SetupError(CellError):
    """A dataset or model that cannot be built: the message names it, where it was registered, and why."""


class ThreatModelError(CellError):
    """An attack returned images outside [0, 1] or outside its eps ball."""


class IntegrityError(CellError):
    """An attack or pruning changed the base model (its weights or its train/eval flags)."""


class MissingExtraError(SetupError):
    """An attack (or a conftest.py) needs a module that only an extra of pytest-advprune installs, and it is
    not installed: the message names what needs it, where that was registered, and the pip command."""
