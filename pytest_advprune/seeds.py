"""Seeds: every random draw of a run (subsets, pruning, fine-tuning, attack starts) is seeded from the
run's base seed and the names of what it is for, so a cell's numbers depend on its id, never on run
order, worker or process. No imports from the rest of the plugin: any module can use it."""

from __future__ import annotations

import hashlib


def derive_seed(base_seed: int, *parts: str) -> int:
    """A 31-bit seed from ``base_seed`` and names: independent of run order, process and hash seed."""
    digest = hashlib.sha256("\x1f".join([str(base_seed), *parts]).encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFF_FFFF
