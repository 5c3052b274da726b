"""Attacks: the built-in attack families (``builtin``) and crafting with the threat model enforced
(``crafting``). Importing the package registers the built-ins."""

from pytest_advprune.attacks import builtin  # noqa: F401  (registers the built-in attacks)
from pytest_advprune.attacks.crafting import AttackGenerator, build_attack, craft, project, takes_normalized_inputs

__all__ = ["AttackGenerator", "build_attack", "craft", "project", "takes_normalized_inputs"]
