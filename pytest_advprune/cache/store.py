"""A content-addressed store on disk: bytes filed under the SHA-256 of a JSON key, written atomically,
authenticated and checked on every read.

An entry is the ``MAGIC`` line, the key as canonical JSON, the payload's length and SHA-256, an HMAC of
those three under the cache's secret (``trust.py``), then the payload. The header is read and its HMAC
checked before the payload is read, so a file forged without the secret costs a read of its first
lines, whatever its size. A read returns the payload only if all of that
holds for the key asked for; anything else (a truncated file, a flipped byte, a foreign file, an entry
written under another secret or forged) is treated as absent, removed, and recomputed by the caller.
Writers put the whole entry in a temporary file of their own (pid and a random part in its name) and
rename it into place, so readers and concurrent writers (xdist workers, two runs sharing the folder) see
either no entry or a whole one; two writers of one key write the same bytes.

Nothing is read, written or deleted outside the cache's folder: an entry or a folder that is a symbolic
link, or a special file (a FIFO, a device), is skipped, never followed or opened.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

from pytest_advprune.paths import NotARegularFile, open_regular_file, written_by_live_process

T = TypeVar("T")

MAGIC = b"pytest-advprune cache 2\n"
MAX_HEADER_BYTES = 1 << 20  # a key is a few kilobytes: a longer header is not one the plugin wrote

# Why an entry was not used, as the summary says it.
DAMAGED = "damaged (truncated, edited or not a cache entry)"
FOREIGN_KEY = "not written with this cache key (another machine, or forged)"
UNLOADABLE = "intact but no longer loadable"
NOT_A_FILE = "not a regular file (a link, folder, FIFO or device; skipped)"
OUTSIDE = "outside the cache folder through a symbolic link (skipped)"


def canonical_json(key: Mapping[str, Any]) -> bytes:
    return json.dumps(key, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


@dataclass
class CacheCounts:
    """What this process did with the cache, per kind of entry."""

    read: dict[str, int] = field(default_factory=dict)
    computed: dict[str, int] = field(default_factory=dict)
    rejected: dict[str, int] = field(default_factory=dict)  # unusable entries, recomputed: reason -> number
    write_errors: list[str] = field(default_factory=list)
    stale_temporaries: int = 0  # temp files of killed writers, removed

    def count(self, table: dict[str, int], kind: str) -> None:
        table[kind] = table.get(kind, 0) + 1

    def as_dict(self) -> dict[str, Any]:
        """Plain values, to travel from an xdist worker to the controller."""
        return {
            "read": self.read,
            "computed": self.computed,
            "rejected": self.rejected,
            "errors": self.write_errors,
            "stale_temporaries": self.stale_temporaries,
        }

    def add(self, other: Mapping[str, Any]) -> None:
        for name in ("read", "computed", "rejected"):
            table: dict[str, int] = getattr(self, name)
            for kind, number in dict(other.get(name) or {}).items():
                table[kind] = table.get(kind, 0) + int(number)
        self.write_errors += [str(error) for error in other.get("errors") or ()]
        self.stale_temporaries += int(other.get("stale_temporaries") or 0)

    def summary(self) -> list[str]:
        """Lines for the run's summary: what was read and computed, per kind; unusable entries, by reason;
        errors."""
        kinds = sorted({*self.read, *self.computed})
        if not (kinds or self.write_errors or self.rejected or self.stale_temporaries):
            return []
        parts = [
            f"{KIND_NAMES.get(kind, kind)}: {self.read.get(kind, 0)} read, {self.computed.get(kind, 0)} computed"
            for kind in kinds
        ]
        lines = ["cache: " + "; ".join(parts)] if parts else []
        rejected = sum(self.rejected.values())
        if rejected:
            reasons = ", ".join(f"{number} {reason}" for reason, number in sorted(self.rejected.items()))
            lines.append(f"cache: {rejected} unusable entr{'y' if rejected == 1 else 'ies'} recomputed: {reasons}")
        if self.rejected.get(FOREIGN_KEY):
            lines.append(
                "cache: to share a cache between machines (a CI cache), set ADVPRUNE_CACHE_KEY to one secret on "
                "all of them (see docs/explanation/cache.md)"
            )
        if self.stale_temporaries:
            lines.append(f"cache: removed {self.stale_temporaries} temporary files of writers that were killed")
        lines += [f"cache: could not write {error}" for error in self.write_errors[:5]]
        if len(self.write_errors) > 5:
            lines.append(f"cache: could not write {len(self.write_errors) - 5} more entries")
        return lines


KIND_NAMES = {"pruned_models": "pruned models", "adversarials": "crafted example sets"}


class DiskCache:
    """Entries under ``root/<kind>/<first two hex digits>/<digest>``, authenticated with ``secret``. With
    ``reads`` False (CI mode, unless asked otherwise) entries are written but never read."""

    def __init__(self, root: Path, *, secret: bytes, reads: bool = True) -> None:
        self.root = root
        self.reads = reads
        self.counts = CacheCounts()
        self._secret = secret

    def path_for(self, kind: str, key: Mapping[str, Any]) -> Path:
        digest = hashlib.sha256(canonical_json(key)).hexdigest()
        return self.root / kind / digest[:2] / digest

    def load(self, kind: str, key: Mapping[str, Any]) -> bytes | None:
        if not self.reads:
            return None
        path = self.path_for(kind, key)
        if not self._inside(path.parent):
            self.counts.count(self.counts.rejected, OUTSIDE)
            return None
        try:
            payload, problem = _read_entry(path, lambda file, size: self._payload_of(file, size, canonical_json(key)))
        except FileNotFoundError:
            return None
        except NotARegularFile:
            self.counts.count(self.counts.rejected, NOT_A_FILE)
            return None
        except OSError as error:
            self.counts.count(self.counts.rejected, f"unreadable ({error.strerror or error})")
            return None
        if problem:
            self.reject(kind, key, problem)
        return payload

    def reject(self, kind: str, key: Mapping[str, Any], reason: str = UNLOADABLE) -> None:
        """Forget an entry that cannot be used (damaged, forged, or its contents no longer load)."""
        self.counts.count(self.counts.rejected, reason)
        path = self.path_for(kind, key)
        if self._inside(path.parent):  # unlink removes a link itself, never what it points to
            with contextlib.suppress(OSError):  # another process removed or replaced it: not trusted either way
                path.unlink()

    def store(self, kind: str, key: Mapping[str, Any], payload: bytes) -> None:
        """Write an entry; a failure (read-only or full disk) is recorded, never raised: the cache only
        saves time, the numbers were computed."""
        path = self.path_for(kind, key)
        fields = [canonical_json(key), str(len(payload)).encode(), hashlib.sha256(payload).hexdigest().encode()]
        entry = MAGIC + b"\n".join([*fields, self._seal(*fields)]) + b"\n" + payload
        temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
        try:
            self._make_folders(path.parent)
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
            descriptor = os.open(temporary, flags, 0o644)
            with os.fdopen(descriptor, "wb") as file:
                file.write(entry)
                file.flush()
                os.fsync(file.fileno())
            os.replace(temporary, path)
        except OSError as error:
            self.counts.write_errors.append(f"{path}: {error.strerror or error}")
            with contextlib.suppress(OSError):
                if self._inside(temporary.parent):
                    temporary.unlink()

    def remove_stale_temporaries(self) -> None:
        """Delete the temp files of writers that died mid-write (killed, out of memory), everywhere in the
        cache; a live writer's are left alone. Folders that are links are not entered."""
        for kind in _subfolders(self.root):
            for folder in _subfolders(kind):
                for temporary in _temporaries(folder):
                    pid_text = temporary.name[1:].split(".")[1]  # .<digest>.<pid>.<random>.tmp
                    if not written_by_live_process(temporary, pid_text):
                        with contextlib.suppress(OSError):
                            temporary.unlink()
                            self.counts.stale_temporaries += 1

    def _make_folders(self, folder: Path) -> None:
        """Make ``root/<kind>/<xx>`` one level at a time, refusing a level that is a link: nothing is
        made outside the cache folder."""
        self.root.mkdir(parents=True, exist_ok=True)
        level = self.root
        for part in folder.relative_to(self.root).parts:
            level = level / part
            if level.is_symlink():
                raise OSError(0, f"{level} is a symbolic link; nothing is written through it")
            level.mkdir(exist_ok=True)

    def _inside(self, folder: Path) -> bool:
        """Whether ``folder`` (an entry's folder) really is inside the cache's folder: no link on the way
        points elsewhere."""
        try:
            return folder.resolve().is_relative_to(self.root.resolve())
        except (OSError, RuntimeError):  # a link loop
            return False

    def _seal(self, key_json: bytes, length: bytes, digest: bytes) -> bytes:
        message = b"\n".join([key_json, length, digest])
        return hmac.new(self._secret, message, hashlib.sha256).hexdigest().encode()

    def _payload_of(self, file: BinaryIO, size: int, key: bytes) -> tuple[bytes | None, str]:
        """The payload of an entry if it is a whole, intact, authentic entry for ``key``; else None and why.
        The payload is read only once the header proves the entry was written with the secret."""
        header = file.read(min(size, MAX_HEADER_BYTES))
        if not header.startswith(MAGIC):
            return None, DAMAGED
        lines = header[len(MAGIC) :].split(b"\n", 4)
        if len(lines) < 5:
            return None, DAMAGED
        stored_key, length, digest, seal, _ = lines
        if stored_key != key or not length.isdigit():
            return None, DAMAGED
        if not hmac.compare_digest(seal, self._seal(stored_key, length, digest)):
            return None, FOREIGN_KEY
        start = len(MAGIC) + sum(len(line) + 1 for line in lines[:4])
        if size - start != int(length):
            return None, DAMAGED
        file.seek(start)
        payload = file.read(int(length))
        if hashlib.sha256(payload).hexdigest().encode() != digest:
            return None, DAMAGED
        return payload, ""


def _read_entry(path: Path, read: Callable[[BinaryIO, int], T]) -> T:
    """``read(file, size)`` on ``path`` if it is a regular file (``paths.open_regular_file``)."""
    file, size = open_regular_file(path)
    with file:
        return read(file, size)


def _temporaries(folder: Path) -> list[Path]:
    """The writers' temp files in ``folder`` (regular files named ``.<digest>.<pid>.<random>.tmp``)."""
    try:
        with os.scandir(folder) as entries:
            return [
                Path(entry.path)
                for entry in entries
                if entry.name.startswith(".")
                and entry.name.endswith(".tmp")
                and entry.name.count(".") == 4
                and entry.is_file(follow_symlinks=False)
            ]
    except OSError:
        return []


def _subfolders(folder: Path) -> list[Path]:
    try:
        with os.scandir(folder) as entries:
            return [Path(entry.path) for entry in entries if entry.is_dir(follow_symlinks=False)]
    except OSError:
        return []
