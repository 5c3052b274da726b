"""Baseline files: one JSON file per cell, ``<dir>/<model>/<pruning id>/<attack id>.json``.

Files are written only on request, atomically (temp file + ``os.replace``), with sorted keys, 2-space
indent, a final newline and rounded floats, so an unchanged cell rewrites the same bytes.
"""

from __future__ import annotations

import base64
import errno
import hashlib
import json
import math
import os
import re
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytest_advprune.errors import AdvPruneError
from pytest_advprune.metrics import DIGITS, OUTCOME_NAMES, OUTCOME_OF_METRIC, percent
from pytest_advprune.paths import NotARegularFile, open_regular_file, written_by_live_process
from pytest_advprune.specs import CellSpec

if TYPE_CHECKING:
    from pytest_advprune.cell import CellResult  # imports torch: the plugin loads this module at startup

SCHEMA_VERSION = 1
BENCHMARKS_DIR = "benchmarks"  # pytest-benchmark's saved runs live beside the baselines
REQUIRED_KEYS = ("schema_version", "cell", "provenance", "metrics", "outcomes")
# Provenance fields that define *what* was measured: when one differs, the baseline is stale rather
# than the model regressed. Device and versions only move numbers slightly, within tolerance. The CPU
# thread count changes the order of float reductions, which fine-tuning and attacks amplify: it defines
# the numbers as much as the seed does.
IDENTITY_FIELDS = ("dataset", "model", "pruning", "attack", "samples", "seed", "threads")
CELL_KEYS = ("model", "pruning", "attack")
# A file name part is kept as it is when it consists of these characters (those of ASCII names and of the
# numbers ids are made of), does not start with a dot and is at most MAX_NAME_LENGTH long. Any other part
# (a string attack parameter can hold quotes, '<', '/', '..'; a name can hold non-ASCII letters) becomes
# a safe prefix of it, '=' and a hash of the whole part: '=' never occurs in a kept part, so the two kinds
# never meet, and the hash keeps different parts apart. The length leaves room for '.json' and the
# writer's temp-file name within the 255 bytes most file systems allow.
SAFE_NAME = re.compile(r"[A-Za-z0-9._-]+")
MAX_NAME_LENGTH = 150
NAME_HASH_LENGTH = 16  # hex digits of SHA-256: 64 bits, far from a collision among a matrix's ids


class BaselineFileError(AdvPruneError, ValueError):
    """A baseline file that cannot be used: unreadable, invalid JSON, wrong schema."""

    def __init__(self, path: Path, problem: str) -> None:
        super().__init__(
            f"Baseline file {str(path)!r} is unusable: {problem}. Restore it (git checkout -- <file>) or "
            "re-create it with --update-baselines."
        )
        self.path = path
        self.problem = problem


def file_name_part(identifier: str) -> str:
    """``identifier`` (a model name, a pruning id or an attack id) as one component of a baseline path:
    itself when it is ordinary (``SAFE_NAME``, no leading dot, at most ``MAX_NAME_LENGTH`` characters),
    else its safe characters (others as ``_``), ``=`` and a hash of it, so no two identifiers share a part."""
    if SAFE_NAME.fullmatch(identifier) and not identifier.startswith(".") and len(identifier) <= MAX_NAME_LENGTH:
        return identifier
    digest = hashlib.sha256(identifier.encode("utf-8", "surrogatepass")).hexdigest()[:NAME_HASH_LENGTH]
    readable = re.sub(r"[^A-Za-z0-9._-]", "_", identifier).lstrip(".")
    return f"{readable[: MAX_NAME_LENGTH - NAME_HASH_LENGTH - 1]}={digest}"


def display_path(path: Path, rootdir: Path) -> str:
    """``path`` relative to the rootdir when it is inside it (as users type it), else absolute."""
    try:
        return str(path.relative_to(rootdir))
    except ValueError:
        return str(path)


def pack_bits(values: list[bool]) -> str:
    """Bools as base64 of their bits, most significant bit first (numpy.packbits order)."""
    packed = bytearray((len(values) + 7) // 8)
    for i, value in enumerate(values):
        if value:
            packed[i // 8] |= 0x80 >> (i % 8)
    return base64.b64encode(bytes(packed)).decode("ascii")


def unpack_bits(text: str, count: int) -> list[bool]:
    packed = base64.b64decode(text.encode("ascii"), validate=True)
    if len(packed) != (count + 7) // 8:
        raise ValueError(f"{len(packed)} bytes cannot hold exactly {count} outcomes")
    return [bool(packed[i // 8] & (0x80 >> (i % 8))) for i in range(count)]


def to_json_value(value: Any) -> Any:
    """Plain JSON types: numpy/torch scalars become Python numbers; floats keep the significant digits
    their precision carries (12 for float64, 7 for float32: a float32 0.1 is stored as 0.1, not
    0.10000000149011612). Compare provenance only after this conversion."""
    digits = 12
    if hasattr(value, "item") and callable(value.item):
        itemsize = getattr(getattr(value, "dtype", None), "itemsize", 8)
        digits = {2: 4, 4: 7}.get(itemsize, 12)
        value = value.item()
    if isinstance(value, bool) or value is None or isinstance(value, (int, str)):
        return value
    if isinstance(value, float):
        return float(f"{value:.{digits}g}") + 0.0  # + 0.0 turns -0.0 into 0.0
    if isinstance(value, dict):
        return {str(k): to_json_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json_value(v) for v in value]
    raise TypeError(f"Cannot store {type(value).__name__} value {value!r} in a baseline.")


def payload(result: CellResult) -> dict[str, Any]:
    samples = len(result.outcomes["base_clean"])
    return {
        "schema_version": SCHEMA_VERSION,
        "cell": {"model": result.cell.model, "pruning": result.cell.pruning.id, "attack": result.cell.attack.id},
        "provenance": to_json_value(result.provenance),
        "metrics": to_json_value(result.metrics),
        "outcomes": {"samples": samples, **{name: pack_bits(result.outcomes[name]) for name in OUTCOME_NAMES}},
    }


def dumps(data: dict[str, Any]) -> str:
    return json.dumps(data, indent=2, sort_keys=True, allow_nan=False) + "\n"


@dataclass(frozen=True)
class Baseline:
    path: Path
    provenance: dict[str, Any]
    metrics: dict[str, Any]
    outcomes: dict[str, list[bool]]
    cell: dict[str, str] = field(default_factory=dict)  # the ids it was written for (CELL_KEYS)


class BaselineStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    def path_for(self, cell: CellSpec) -> Path:
        return self.path_of(cell.model, cell.pruning.id, cell.attack.id)

    def path_of(self, model: str, pruning_id: str, attack_id: str) -> Path:
        """Where the cell with these ids keeps its baseline (``file_name_part`` of each id)."""
        return self.root / file_name_part(model) / file_name_part(pruning_id) / f"{file_name_part(attack_id)}.json"

    def existing_files(self) -> list[Path]:
        """Every baseline-shaped file under the root (``<model>/<pruning>/<attack>.json``), sorted;
        pytest-benchmark's storage under ``benchmarks/`` and hidden temp files are not baselines.

        Symlinks are not baselines: a linked file, or a file under a linked folder, is left out, so that
        deleting unused files (``--advprune-prune-baselines``) can never reach outside the folder through
        a link that a pull request added."""
        if not self.root.is_dir():
            return []
        real_root = self.root.resolve()
        return sorted(
            path
            for path in self.root.glob("*/*/*.json")
            if path.relative_to(self.root).parts[0] != BENCHMARKS_DIR
            and not path.name.startswith(".")
            and not any(part.is_symlink() for part in (path, path.parent, path.parent.parent))
            and path.is_file()
            and path.resolve().is_relative_to(real_root)
        )

    def load(self, cell: CellSpec) -> Baseline | None:
        """The cell's baseline, ``None`` when there is no file, ``BaselineFileError`` when it is unusable."""
        try:
            return self.load_path(self.path_for(cell))
        except FileNotFoundError:
            return None

    def load_path(self, path: Path) -> Baseline:
        """The baseline in ``path`` (``FileNotFoundError`` when there is none, ``BaselineFileError`` when it
        is unusable)."""
        try:
            text = _read_baseline_bytes(path).decode("utf-8")
        except FileNotFoundError:
            raise  # not "unusable": there is no file (load() makes that None)
        except OSError as error:
            raise BaselineFileError(path, f"cannot be read ({error.strerror})") from None
        except UnicodeDecodeError as error:
            raise BaselineFileError(path, f"not UTF-8 text (byte {error.start})") from None
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise BaselineFileError(
                path, f"invalid JSON at line {error.lineno}, column {error.colno}: {error.msg}"
            ) from None
        except RecursionError:
            raise BaselineFileError(path, "JSON nested too deeply to read") from None
        except ValueError as error:
            # Python's own text for an over-long integer advises raising a limit: not what a baseline needs.
            detail = "an integer of more than 4300 digits" if "Exceeds the limit" in str(error) else str(error)
            raise BaselineFileError(path, f"unreadable JSON value ({detail})") from None
        return parse_baseline(path, data)

    def write(self, cell: CellSpec, data: dict[str, Any]) -> str:
        """Write atomically; returns 'created', 'updated' or 'unchanged' (identical bytes are not rewritten)."""
        return self.write_path(self.path_for(cell), data)

    def write_path(self, path: Path, data: dict[str, Any]) -> str:
        links = [part for part in (path, path.parent, path.parent.parent) if part.is_symlink()]
        if links or path.resolve().parent.parent.parent != self.root.resolve():
            # A link in a pull request must not let an update write anywhere else, not even into another
            # model's folder inside baselines/ (the two would overwrite each other's files).
            if links:
                raise ValueError(
                    f"{links[-1].name} is a symbolic link to {links[-1].resolve()}; a baseline is never written "
                    "through a link: replace the link with a folder or file"
                )
            raise ValueError(f"{path} is not a <model>/<pruning>/<attack>.json path under {self.root}")
        content = dumps(data).encode("utf-8")
        remove_stray_temp_files(path)
        try:  # as the gate reads it: a FIFO or device in its place is not waited on, only replaced
            old: bytes | None = _read_baseline_bytes(path)
        except FileNotFoundError:
            old = None
        except IsADirectoryError:
            raise
        except OSError:
            old = b""  # not a baseline file: the write replaces it (os.replace swaps the directory entry)
        if old == content:
            return "unchanged"
        path.parent.mkdir(parents=True, exist_ok=True)
        # The writer's pid in the name tells a concurrent writer's file from one left by a killed writer.
        fd, temp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(content)
                handle.flush()
                os.fsync(handle.fileno())
            os.chmod(temp, 0o644)  # mkstemp creates 0600; a baseline is an ordinary, shared file
            os.replace(temp, path)
        except BaseException:
            Path(temp).unlink(missing_ok=True)
            raise
        return "created" if old is None else "updated"


MAX_BASELINE_BYTES = 64 << 20  # a baseline of 100,000 samples is about 1 MB


def _read_baseline_bytes(path: Path) -> bytes:
    """The bytes of a baseline file, if it is one: a regular file, not through a link (writes refuse links
    too, so a link in a pull request cannot make the gate read a file elsewhere), not a FIFO (which would
    hang the run) and of a baseline's size (``/dev/zero`` would fill memory)."""
    try:
        file, size = open_regular_file(path)
    except NotARegularFile as error:
        if error.what == "a folder":
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR)) from None
        raise OSError(0, f"{error.what}; a baseline is a regular file of its own") from None
    with file:
        if size > MAX_BASELINE_BYTES:
            raise OSError(0, "larger than a baseline can be, not a baseline file")
        return file.read()


def remove_stray_temp_files(path: Path) -> None:
    """Delete temp files next to ``path`` left by writers that died mid-write. The temp file of a writer
    that is still running (two update runs on one folder) is left alone: deleting it would make that
    writer's ``os.replace`` fail."""
    if not path.parent.is_dir():
        return
    for temp in path.parent.glob(f".{path.name}.*.tmp"):
        if not _written_by_live_process(temp, path.name):
            temp.unlink(missing_ok=True)


def _written_by_live_process(temp: Path, name: str) -> bool:
    return written_by_live_process(temp, temp.name[len(name) + 2 :].partition(".")[0])


def brief_repr(value: Any) -> str:
    """``value!r`` for a message, cut short: a hand-edited file can hold a number of 4000 digits."""
    text = repr(value)
    return text if len(text) <= 60 else f"{text[:40]}... ({len(text)} characters)"


def _finite(value: int | float) -> bool:
    """Whether a JSON number is one the statistics and the reports can use: Python's json reads ``NaN``,
    ``Infinity`` and ``1e400`` (as inf), and integers too large for a float overflow every computation."""
    return math.isfinite(value) if isinstance(value, float) else abs(value) <= sys.float_info.max


def _not_finite(value: int | float) -> str:
    return "too large for a float" if isinstance(value, int) else "not a finite number"


def _a(noun: str) -> str:
    return f"an {noun}" if noun[:1] in "aeiou" else f"a {noun}"


def _first_non_finite(data: Any) -> tuple[str, Any] | None:
    """The first number anywhere in ``data`` that is not ``_finite``, with where it is (``a.b[2]``).
    A loop, not recursion: nesting as deep as the JSON reader allows must not overflow the stack here."""
    pending: list[tuple[str, Any]] = [("", data)]
    while pending:
        where, value = pending.pop()
        if isinstance(value, dict):
            pending += [(f"{where}.{key}" if where else str(key), item) for key, item in reversed(value.items())]
        elif isinstance(value, list):
            pending += [(f"{where}[{index}]", item) for index, item in reversed(list(enumerate(value)))]
        elif isinstance(value, (int, float)) and not isinstance(value, bool) and not _finite(value):
            return where, value
    return None


def parse_baseline(path: Path, data: Any) -> Baseline:
    if not isinstance(data, dict):
        raise BaselineFileError(path, f"the top level is {_a(type(data).__name__)}, not an object")
    missing = [key for key in REQUIRED_KEYS if key not in data]
    if missing:
        raise BaselineFileError(path, f"missing keys {missing}")
    version = data["schema_version"]
    if type(version) is not int or version != SCHEMA_VERSION:
        raise BaselineFileError(
            path, f"schema_version {brief_repr(version)} is not supported (this plugin reads {SCHEMA_VERSION})"
        )
    for key in ("cell", "provenance", "metrics", "outcomes"):
        if not isinstance(data[key], dict):
            raise BaselineFileError(path, f"{key!r} is {_a(type(data[key]).__name__)}, not an object")
    for key in CELL_KEYS:
        # The reports name the cell from these ids (the gate finds the file by its path).
        value = data["cell"].get(key)
        if not isinstance(value, str) or not value:
            raise BaselineFileError(path, f"cell.{key} is {brief_repr(value)}, not the cell's {key} id (a string)")
    for name, value in data["metrics"].items():
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise BaselineFileError(path, f"metric {brief_repr(name)} is {brief_repr(value)}, not a number")
        if value is not None and not _finite(value):
            raise BaselineFileError(path, f"metric {brief_repr(name)} is {brief_repr(value)}, {_not_finite(value)}")
    non_finite = _first_non_finite(data)
    if non_finite is not None:
        raise BaselineFileError(path, f"{non_finite[0]} is {brief_repr(non_finite[1])}, {_not_finite(non_finite[1])}")
    _check_provenance(path, data["provenance"])
    outcomes_data = data["outcomes"]
    samples = outcomes_data.get("samples")
    if not isinstance(samples, int) or isinstance(samples, bool) or samples < 0:
        raise BaselineFileError(path, f"outcomes.samples is {brief_repr(samples)}, not a count")
    for where, value in (
        ("provenance.samples", data["provenance"].get("samples")),
        ("metrics.samples", data["metrics"].get("samples")),
    ):
        if value is not None and (type(value) is not int or value != samples):
            # The paired statistics pair outcomes sample by sample: counts that disagree cannot be paired.
            raise BaselineFileError(
                path, f"{where} is {brief_repr(value)} but outcomes.samples is {brief_repr(samples)}"
            )
    outcomes: dict[str, list[bool]] = {}
    for name in OUTCOME_NAMES:
        if not isinstance(outcomes_data.get(name), str):
            raise BaselineFileError(path, f"outcomes.{name} is missing or not a string")
        try:
            outcomes[name] = unpack_bits(outcomes_data[name], samples)
        except ValueError as error:
            raise BaselineFileError(path, f"outcomes.{name} is not valid packed bits ({error})") from None
    for metric, outcome in OUTCOME_OF_METRIC.items():
        stored = data["metrics"].get(metric)
        implied = percent(sum(outcomes[outcome]), samples)
        if stored is not None and implied is not None and abs(stored - implied) > 0.5 * 10.0**-DIGITS + 1e-9:
            # The paired statistics read the outcomes: a metric edited alone would never be checked.
            raise BaselineFileError(
                path, f"metric {metric!r} is {stored!r} but its per-sample outcomes give {implied!r} (edited by hand?)"
            )
    cell = {key: data["cell"][key] for key in CELL_KEYS}
    return Baseline(path, data["provenance"], data["metrics"], outcomes, cell)


def _check_provenance(path: Path, provenance: dict[str, Any]) -> None:
    """The parts of the provenance the reports read, where present: a missing one only makes the baseline
    stale (the run's provenance has it), a wrong type is a hand edit."""
    for section, name in (("attack", "name"), ("pruning", "method")):
        if section not in provenance:
            continue
        value = provenance[section]
        if not isinstance(value, dict):
            raise BaselineFileError(path, f"provenance.{section} is {brief_repr(value)}, not an object")
        if value.get(name) is not None and not isinstance(value[name], str):
            raise BaselineFileError(
                path, f"provenance.{section}.{name} is {brief_repr(value[name])}, not the {section}'s name (a string)"
            )
    amount = provenance.get("pruning", {}).get("amount")
    if amount is not None and (isinstance(amount, bool) or not isinstance(amount, (int, float))):
        raise BaselineFileError(path, f"provenance.pruning.amount is {brief_repr(amount)}, not a number")
