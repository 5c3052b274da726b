"""pytest-advprune: a pytest plugin that keeps pruned PyTorch models honest about adversarial robustness."""

from __future__ import annotations

from pytest_advprune.checkpoints import load_model, load_state_dict
from pytest_advprune.data import Dataset as Dataset
from pytest_advprune.errors import AdvPruneError
from pytest_advprune.registry import register_attack, register_dataset, register_model, register_pruning

__version__ = "0.1.0"

__all__ = [
    "AdvPruneError",
    "__version__",
    "load_model",
    "load_state_dict",
    "register_attack",
    "register_dataset",
    "register_model",
    "register_pruning",
]
