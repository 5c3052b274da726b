"""pytest-advprune: a pytest plugin that keeps pruned PyTorch models honest about adversarial robustness."""

from __future__ import annotations

from pytest_advprune.registry import register_attack, register_dataset, register_model, register_pruning

__version__ = "0.1.0"

__all__ = ["__version__", "register_attack", "register_dataset", "register_model", "register_pruning"]
