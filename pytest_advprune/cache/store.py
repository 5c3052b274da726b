"""A content-addressed store on disk: bytes filed under the SHA-256 of a JSON key, written atomically,
checked on every read.

An entry is ``MAGIC`` line, the key as canonical JSON, the payload's SHA-256, then the payload. A read
returns the payload only if all of that holds for the key asked for; anything else (a truncated file, a
flipped byte, a foreign file, another format) is treated as absent, removed, and recomputed by the
caller. Writers put the whole entry in a temporary file of their own (pid and a random part in its
name) and rename it into place, so readers and concurrent writers (xdist workers, two runs sharing the
folder) see either no entry or a whole one; two writers of one key write the same bytes.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MAGIC = b"pytest-advprune cache 1\n"


def canonical_json(key: Mapping[str, Any]) -> bytes:
    return json.dumps(key, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


@dataclass
class CacheCounts:
    """What this process did with the cache, per kind of entry."""

    read: dict[str, int] = field(default_factory=dict)
    computed: dict[str, int] = field(default_factory=dict)
    rejected: dict[str, int] = field(default_factory=dict)  # corrupt or unreadable entries, recomputed
    write_errors: list[str] = field(default_factory=list)

    def count(self, table: dict[str, int], kind: str) -> None:
        table[kind] = table.get(kind, 0) + 1

    def as_dict(self) -> dict[str, Any]:
        """Plain values, to travel from an xdist worker to the controller."""
        return {"read": self.read, "computed": self.computed, "rejected": self.rejected, "errors": self.write_errors}

    def add(self, other: Mapping[str, Any]) -> None:
        for name in ("read", "computed", "rejected"):
            table: dict[str, int] = getattr(self, name)
            for kind, number in dict(other.get(name) or {}).items():
                table[kind] = table.get(kind, 0) + int(number)
        self.write_errors += [str(error) for error in other.get("errors") or ()]

    def summary(self) -> list[str]:
        """Lines for the run's summary: what was read and computed, per kind; corrupt entries; errors."""
        kinds = sorted({*self.read, *self.computed, *self.rejected})
        if not kinds and not self.write_errors:
            return []
        parts = [
            f"{KIND_NAMES.get(kind, kind)}: {self.read.get(kind, 0)} read, {self.computed.get(kind, 0)} computed"
            for kind in kinds
        ]
        lines = ["cache: " + "; ".join(parts)]
        rejected = sum(self.rejected.values())
        if rejected:
            lines.append(
                f"cache: {rejected} unusable entr{'y' if rejected == 1 else 'ies'} (corrupt or "
                "unreadable) recomputed and replaced"
            )
        lines += [f"cache: could not write {error}" for error in self.write_errors[:5]]
        return lines


KIND_NAMES = {"pruned_models": "pruned models", "adversarials": "crafted example sets"}


class DiskCache:
    """Entries under ``root/<kind>/<first two hex digits>/<digest>``. With ``reads`` False (CI mode,
    unless asked otherwise) entries are written but never read."""

    def __init__(self, root: Path, *, reads: bool = True) -> None:
        self.root = root
        self.reads = reads
        self.counts = CacheCounts()

    def path_for(self, kind: str, key: Mapping[str, Any]) -> Path:
        digest = hashlib.sha256(canonical_json(key)).hexdigest()
        return self.root / kind / digest[:2] / digest

    def load(self, kind: str, key: Mapping[str, Any]) -> bytes | None:
        if not self.reads:
            return None
        path = self.path_for(kind, key)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError:
            self.counts.count(self.counts.rejected, kind)
            return None
        payload = _payload_of(data, canonical_json(key))
        if payload is None:
            self.reject(kind, key)
        return payload

    def reject(self, kind: str, key: Mapping[str, Any]) -> None:
        """Forget an entry that cannot be used (corrupt, or its contents no longer load)."""
        self.counts.count(self.counts.rejected, kind)
        with contextlib.suppress(OSError):  # another process removed or replaced it: it is not trusted either way
            self.path_for(kind, key).unlink()

    def store(self, kind: str, key: Mapping[str, Any], payload: bytes) -> None:
        """Write an entry; a failure (read-only or full disk) is recorded, never raised: the cache only
        saves time, the numbers were computed."""
        path = self.path_for(kind, key)
        entry = MAGIC + canonical_json(key) + b"\n" + hashlib.sha256(payload).hexdigest().encode() + b"\n" + payload
        temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(temporary, "wb") as file:
                file.write(entry)
                file.flush()
                os.fsync(file.fileno())
            os.replace(temporary, path)
        except OSError as error:
            self.counts.write_errors.append(f"{path}: {error.strerror or error}")
            with contextlib.suppress(OSError):
                temporary.unlink()


def _payload_of(data: bytes, key: bytes) -> bytes | None:
    """The payload of an entry, if it is a whole, intact entry for ``key``."""
    if not data.startswith(MAGIC):
        return None
    rest = data[len(MAGIC) :]
    stored_key, newline, rest = rest.partition(b"\n")
    digest, newline2, payload = rest.partition(b"\n")
    if not (newline and newline2) or stored_key != key:
        return None
    if hashlib.sha256(payload).hexdigest().encode() != digest:
        return None
    return payload
