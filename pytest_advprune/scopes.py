"""Scoped ini lines: ``<entry> for <selectors>`` limits an entry to some models, datasets or cells.

    advprune_attacks =
        pgd_linf:0.1 for dataset=digits
        pgd_linf:0.0314 for dataset=cifar10
    advprune_floors =
        pruned_robust_accuracy >= 40 for resnet-*

Selectors are comma-separated ``key=pattern`` items (fnmatch patterns). Patterns of one key are
alternatives; different keys must all match. A bare pattern (no ``key=``) means the cell id in
invariant lines and the model name in matrix lines. A line without ``for`` applies everywhere.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass

from pytest_advprune.errors import AdvPruneError

_FOR = re.compile(r"\s+for\s+")


class ScopeError(AdvPruneError, ValueError):
    """A ``for ...`` clause that cannot be parsed."""


@dataclass(frozen=True)
class Scope:
    selectors: tuple[tuple[str, tuple[str, ...]], ...] = ()  # (key, alternative patterns), keys in order
    text: str = ""  # as written after 'for', for messages

    def matches(self, **fields: str) -> bool:
        """Whether every key's value matches one of its patterns (an unscoped line matches everything)."""
        for key, patterns in self.selectors:
            value = fields.get(key)
            if value is None or not any(fnmatch.fnmatchcase(value, pattern) for pattern in patterns):
                return False
        return True


EVERYWHERE = Scope()


def split_scope(line: str, *, keys: tuple[str, ...], bare_key: str, source: str) -> tuple[str, Scope]:
    """``'fgsm:0.1 for dataset=digits'`` -> ``('fgsm:0.1', Scope(...))``; raises ``ScopeError``."""
    parts = _FOR.split(line.strip())
    if len(parts) == 1:
        return line.strip(), EVERYWHERE
    if len(parts) > 2:
        raise ScopeError(f"{source}: {line.strip()!r} has more than one 'for'; write one scope per line.")
    entry, text = parts[0].strip(), parts[1].strip()
    grouped: dict[str, list[str]] = {}
    for item in (piece.strip() for piece in text.split(",")):
        key, eq, pattern = item.partition("=")
        key, pattern = (key.strip(), pattern.strip()) if eq else (bare_key, item)
        if key not in keys:
            raise ScopeError(
                f"{source}: {line.strip()!r} selects by {key!r}; use {', '.join(f'{k}=PATTERN' for k in keys)} "
                f"(a bare PATTERN means {bare_key}=PATTERN)."
            )
        if not pattern:
            raise ScopeError(f"{source}: {line.strip()!r} has an empty pattern after 'for'.")
        grouped.setdefault(key, []).append(pattern)
    return entry, Scope(tuple((key, tuple(patterns)) for key, patterns in grouped.items()), text)
