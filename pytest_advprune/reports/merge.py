"""Reading the JSON reports of CI shards (``--advprune-shard=K/N --advprune-report=PATH.json``) and
merging them into one report.

Each report is checked whole before anything is merged, so no malformed file gets as far as a
traceback: its shape against the JSON Schema the package ships (``report-schema.json``), then what a
schema cannot say (a cell keyed by its own id, one cell per model, pruning and attack, a shard within its
count, no NaN, no key given twice). Reports then merge only when they come from one run: the same gate,
settings and provenance, every shard once, every cell and latency row in one report only.

Every problem is a ``ReportError`` that names the file and the field. Messages quote bounded excerpts of
what a file holds (a string's first characters, an object's size, at most ``LISTED`` shard numbers),
never the whole of it: a report is input from elsewhere, and may be large or hostile.
"""

from __future__ import annotations

import functools
import itertools
import json
import math
import stat
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from pytest_advprune.errors import AdvPruneError
from pytest_advprune.reports.document import FORMAT, SCHEMA_VERSION, build_document, load_schema
from pytest_advprune.scheduling import MAX_SHARDS

LISTED = 10  # shard numbers a message lists before "and N more"
MAX_DEPTH = 20  # levels of nesting: a report written by the plugin has about 6
MAX_REPORT_BYTES = 256 << 20  # far above a report of the largest matrix allowed (advprune_max_cells)
_SHOWN = 60  # characters of a value a message quotes
GIVE = "Merge the .json files that --advprune-report=PATH.json wrote, as it wrote them."
ONE_RUN = (
    "Merge the reports of one sharded run only (the same command but K, on the same commit and "
    "environment): rerun the shard that differs"
)


class ReportError(AdvPruneError, ValueError):
    """A report that cannot be read or merged: not a pytest-advprune JSON report, or in conflict."""


class _Problem(Exception):
    """What is wrong inside a report, by field; ``read_report`` adds the file."""


# --- reading -----------------------------------------------------------------------------------------


class _Constant:
    """``NaN``, ``Infinity`` or ``-Infinity`` as parsed (json.loads accepts them by default), kept as a
    marker so the check below can name the field that holds one."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


class _Duplicated(dict[str, Any]):
    """A JSON object that names a key twice (json.loads keeps the last value silently)."""

    duplicate: str = ""


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    value = dict(pairs)
    if len(value) == len(pairs):
        return value
    duplicated = _Duplicated(value)
    seen: set[str] = set()
    for key, _ in pairs:
        if key in seen:
            duplicated.duplicate = key
            break
        seen.add(key)
    return duplicated


def read_report(path: Path) -> dict[str, Any]:
    """The report in ``path``, checked whole (see the module's docstring); a ``ReportError`` naming the
    file and the field otherwise."""
    try:
        status = path.stat()
        if not stat.S_ISREG(status.st_mode):  # a FIFO would hang the command, a device never end
            raise ReportError(f"{path}: not a regular file, so not a JSON report. {GIVE}")
        if status.st_size > MAX_REPORT_BYTES:  # a shard's report of 10,000 cells is a few MB
            raise ReportError(
                f"{path}: {status.st_size:,} bytes, more than the {MAX_REPORT_BYTES:,} a report can be. {GIVE}"
            )
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ReportError(f"{path}: cannot read it ({error.strerror or error}). {GIVE}") from None
    except UnicodeDecodeError:
        raise ReportError(f"{path}: not UTF-8 text, so not a JSON report. {GIVE}") from None
    try:
        report = json.loads(text, parse_constant=_Constant, object_pairs_hook=_object)
    except RecursionError:
        raise ReportError(f"{path}: nested deeper than Python's JSON reader can follow: not a report. {GIVE}") from None
    except ValueError as error:  # JSONDecodeError, and integers of more digits than int() takes
        raise ReportError(f"{path}: cannot read it as JSON ({error}). {GIVE}") from None
    if not isinstance(report, dict) or report.get("format") != FORMAT:
        raise ReportError(f"{path}: not a pytest-advprune JSON report (no format {FORMAT!r}). {GIVE}")
    if report.get("schema_version") != SCHEMA_VERSION or isinstance(report.get("schema_version"), bool):
        raise ReportError(
            f"{path}: report schema version {_shown(report.get('schema_version'))}; this plugin reads "
            f"{SCHEMA_VERSION}. Merge reports written by the same plugin version."
        )
    try:
        _check_values(report)
        _check(report, _schema(), "")
        _check_meaning(report)
    except _Problem as problem:
        raise ReportError(f"{path}: {problem} {GIVE}") from None
    return report


def _check_values(report: dict[str, Any]) -> None:
    """No NaN or infinity, no key named twice and no deep nesting, anywhere (free-form fields such as an
    attack's parameters included); iterative, so any depth json.loads read."""
    stack: list[tuple[Any, str, int]] = [(report, "", 0)]
    while stack:
        value, where, depth = stack.pop()
        if depth > MAX_DEPTH:  # writing the merged report (json.dumps with indent recurses) would fail
            raise _Problem(f"{_field(where)} is nested deeper than the {MAX_DEPTH} levels a report can hold.")
        if isinstance(value, _Constant) or (isinstance(value, float) and not math.isfinite(value)):
            name = value.name if isinstance(value, _Constant) else repr(value)
            raise _Problem(f"{_field(where)} is {name}: a report holds finite numbers only (JSON has no NaN).")
        if isinstance(value, _Duplicated):
            raise _Problem(f"{_field(where)} holds the key {_shown(value.duplicate)} twice.")
        if isinstance(value, dict):
            stack += [(item, _child(where, key), depth + 1) for key, item in value.items()]
        elif isinstance(value, list):
            stack += [(item, f"{where}[{index}]", depth + 1) for index, item in enumerate(value)]


def _check_meaning(report: dict[str, Any]) -> None:
    """What the schema cannot say."""
    cells: dict[str, dict[str, Any]] = report["cells"]
    coordinates: dict[tuple[str, str, str], str] = {}
    for key, cell in cells.items():
        if cell["id"] != key:
            raise _Problem(f"{_child('cells', key)}.id is {_shown(cell['id'])}: a report keys each cell by its id.")
        where = _coordinates(cell)
        if where is not None and where in coordinates:
            raise _Problem(
                f"{_child('cells', coordinates[where])} and {_child('cells', key)} are the same cell "
                f"(model, pruning, attack {_shown(where)}): a run measures each cell once."
            )
        if where is not None:
            coordinates[where] = key
    if report["summary"]["cells"] != len(cells):
        raise _Problem(
            f"summary.cells is {report['summary']['cells']}, but cells holds {len(cells)}: was the report cut "
            "short or edited?"
        )
    shard = report["shard"]
    if shard is not None and shard["count"] > MAX_SHARDS:
        raise _Problem(f"shard.count is {shard['count']}: --advprune-shard allows at most {MAX_SHARDS:,} shards.")
    if shard is not None and shard["index"] > shard["count"]:
        raise _Problem(f"shard is {shard['index']}/{shard['count']}: a shard's index is at most its count.")
    rows: set[tuple[Any, ...]] = set()
    for index, row in enumerate(report["latency"]):
        if _latency_key(row) in rows:
            raise _Problem(f"latency[{index}] times {_shown(_latency_key(row))} again: a run times each once.")
        rows.add(_latency_key(row))


def _coordinates(cell: Mapping[str, Any]) -> tuple[str, str, str] | None:
    """Where a cell sits in the matrix, when it says (a cell that errored before it measured may not)."""
    attack = cell["attack_id"] or cell["attack"]
    return None if None in (cell["model"], cell["pruning"], attack) else (cell["model"], cell["pruning"], attack)


def _latency_key(row: Mapping[str, Any]) -> tuple[Any, ...]:
    return (row["model"], row["pruning"], row["batch_size"])


# --- the schema, as far as the shipped one uses JSON Schema ----------------------------------------------

_TYPES: dict[str, tuple[str, str]] = {  # JSON type -> (a value of it, several of them)
    "object": ("an object", "objects"),
    "array": ("a list", "lists"),
    "string": ("a string", "strings"),
    "integer": ("an integer", "integers"),
    "number": ("a number", "numbers"),
    "boolean": ("true or false", "booleans"),
    "null": ("null", "nulls"),
}


@functools.lru_cache(maxsize=1)
def _schema() -> dict[str, Any]:
    return load_schema()


def _resolve(schema: Mapping[str, Any]) -> Mapping[str, Any]:
    while "$ref" in schema:
        schema = _schema()["$defs"][str(schema["$ref"]).rpartition("/")[2]]
    return schema


def _is(value: Any, kind: str) -> bool:
    if kind in ("integer", "number") and isinstance(value, bool):
        return False
    return {
        "object": isinstance(value, dict),
        "array": isinstance(value, list),
        "string": isinstance(value, str),
        "integer": isinstance(value, int),
        "number": isinstance(value, (int, float)),
        "boolean": isinstance(value, bool),
        "null": value is None,
    }[kind]


def _kinds(schema: Mapping[str, Any]) -> list[str]:
    kinds = schema.get("type", [])
    return [kinds] if isinstance(kinds, str) else list(kinds)


def _expected(schema: Mapping[str, Any]) -> str:
    """``an object of numbers``, ``a string or null``, ``one of 'run', 'baselines'``."""
    schema = _resolve(schema)
    if "const" in schema:
        return _shown(schema["const"])
    if "enum" in schema:
        return "one of " + ", ".join(_shown(option) for option in schema["enum"])
    if "oneOf" in schema:
        return " or ".join(_expected(branch) for branch in schema["oneOf"])
    names = []
    for kind in _kinds(schema):
        name = _TYPES[kind][0]
        inner = schema.get("additionalProperties") if kind == "object" else schema.get("items")
        if isinstance(inner, Mapping) and _kinds(_resolve(inner)):
            name += f" of {_TYPES[_kinds(_resolve(inner))[0]][1]}"
        names.append(name)
    return " or ".join(names) or "something else"


def _check(value: Any, schema: Mapping[str, Any], where: str) -> None:
    schema = _resolve(schema)
    for part in schema.get("allOf", ()):
        _check(value, part, where)
    if "oneOf" in schema:  # the shipped schema's branches are exclusive by type: any that matches will do
        problems = []
        for branch in schema["oneOf"]:
            try:
                _check(value, branch, where)
                break
            except _Problem as problem:
                problems.append((branch, problem))
        else:
            typed = [problem for branch, problem in problems if any(_is(value, k) for k in _kinds(_resolve(branch)))]
            if len(typed) == 1:
                raise typed[0]
            raise _Problem(f"{_field(where)} must be {_expected(schema)}, not {_shown(value)}.")
    mismatch = (
        ("const" in schema and not _same(value, schema["const"]))
        or ("enum" in schema and not any(_same(value, option) for option in schema["enum"]))
        or (_kinds(schema) and not any(_is(value, kind) for kind in _kinds(schema)))
    )
    if mismatch:
        raise _Problem(f"{_field(where)} must be {_expected(schema)}, not {_shown(value)}.")
    if _is(value, "number"):
        for word, bound, outside in (
            # Each test only where the schema has the bound (a float of 2**53 or more equals value - 1).
            ("minimum", "at least", "minimum" in schema and value < schema["minimum"]),
            ("maximum", "at most", "maximum" in schema and value > schema["maximum"]),
            ("exclusiveMinimum", "above", "exclusiveMinimum" in schema and value <= schema["exclusiveMinimum"]),
            ("exclusiveMaximum", "below", "exclusiveMaximum" in schema and value >= schema["exclusiveMaximum"]),
        ):
            if outside:
                raise _Problem(f"{_field(where)} must be {bound} {schema[word]}, not {_shown(value)}.")
    if isinstance(value, dict):
        for key in schema.get("required", ()):
            if key not in value:
                raise _Problem(f"{_field(where)} has no {key!r}.")
        properties = schema.get("properties", {})
        extra = schema.get("additionalProperties", True)
        for key, item in value.items():
            if key in properties:
                _check(item, properties[key], _child(where, key))
            elif extra is False:
                raise _Problem(f"{_field(where)} has a field {_shown(key)} that reports do not have.")
            elif isinstance(extra, Mapping):
                _check(item, extra, _child(where, key))
    if isinstance(value, list) and "items" in schema:
        for index, item in enumerate(value):
            _check(item, schema["items"], f"{where}[{index}]")


def _same(value: Any, expected: Any) -> bool:
    """JSON equality: ``true`` is not ``1``."""
    return type(value) is type(expected) and bool(value == expected)


# --- messages ------------------------------------------------------------------------------------------


def _child(where: str, key: str) -> str:
    if key.isidentifier():
        return f"{where}.{key}" if where else key
    return f"{where}[{_shown(key)}]"


def _field(where: str) -> str:
    return where or "the report"


def _shown(value: Any) -> str:
    """A bounded excerpt of a value from a report: scalars and small flat containers as written (strings
    quoted as in Python), larger containers by their size."""
    if value is None or isinstance(value, bool):
        return json.dumps(value)
    if isinstance(value, (_Constant, _Absent)):
        return repr(value)
    if isinstance(value, (dict, list)):
        items = list(value.values() if isinstance(value, dict) else value) if len(value) <= 3 else []
        if len(value) > 3 or any(isinstance(item, (dict, list)) for item in items):
            return f"an object of {len(value)} fields" if isinstance(value, dict) else f"a list of {len(value)} items"
        if isinstance(value, dict):
            text = "{" + ", ".join(f"{_shown(key)}: {_shown(item)}" for key, item in value.items()) + "}"
        else:
            text = "[" + ", ".join(map(_shown, items)) + "]"
    else:
        text = str(value) if isinstance(value, int) else repr(value)
    return text if len(text) <= _SHOWN else f"{text[: _SHOWN - 5]}...{text[-2:]}"


def _counted(numbers: Iterator[str], total: int) -> str:
    listed = list(itertools.islice(numbers, LISTED))
    return ", ".join(listed) + (f" and {total - len(listed):,} more" if total > len(listed) else "")


# --- merging -------------------------------------------------------------------------------------------


def merge_reports(paths: Sequence[Path]) -> dict[str, Any]:
    """One report from the JSON reports of the CI shards of one run (``--advprune-shard``): their cells
    and latencies together. Refused, naming the files and the field: reports of different runs, a shard
    missing or given twice, a cell or latency row in two reports."""
    if not paths:
        raise ReportError("no report given: name the shards' JSON reports.")
    given: dict[Path, Path] = {}
    for path in paths:
        same = given.setdefault(path.resolve(), path)
        if same is not path:
            raise ReportError(f"{same} and {path} are one file: give each shard's report once.")
    reports = [read_report(path) for path in paths]
    for path, report in zip(paths[1:], reports[1:], strict=True):
        _check_same_run(paths[0], reports[0], path, report)
    _check_shards(paths, reports)
    cells: dict[str, dict[str, Any]] = {}
    owner: dict[Any, tuple[Path, str]] = {}  # a cell's id, its coordinates, a latency row -> (file, cell id)
    latency: dict[tuple[Any, ...], dict[str, Any]] = {}
    for path, report in zip(paths, reports, strict=True):
        for cell in report["cells"].values():
            for key in (("cell", cell["id"]), ("coordinates", _coordinates(cell))):
                if key[1] is not None and key in owner:
                    other_path, other = owner[key]
                    cell_text = repr(cell["id"]) if other == cell["id"] else f"{other!r} (as {cell['id']!r})"
                    raise ReportError(
                        f"cell {cell_text} is in {other_path} and in {path}: each shard runs other cells, so these "
                        "reports overlap (a shard's report given twice, or reports of two runs?)."
                    )
                owner[key] = (path, cell["id"])
            cells[cell["id"]] = cell
        for row in report["latency"]:
            key = ("latency", _latency_key(row))
            if key in owner:
                raise ReportError(
                    f"the latency of {_shown(key[1])} is in {owner[key][0]} and in {path}: each shard times other "
                    "models, so these reports overlap."
                )
            owner[key], latency[key[1]] = (path, ""), row
    first = reports[0]
    return build_document(  # the whole matrix again: "shard" is null
        cells.values(),
        source=first["source"],
        gate=first["gate"],
        plugin_version=first["plugin_version"],
        latency=[latency[key] for key in sorted(latency)],
        settings=first["settings"],
        provenance=first["provenance"],
    )


def _difference(a: Any, b: Any, where: str) -> tuple[str, Any, Any] | None:
    """The first field in which two parts of reports differ, down to the leaves of nested objects (so a
    message names ``provenance.libraries.torch``, not all of ``provenance``), with both values."""
    if isinstance(a, dict) and isinstance(b, dict):
        for key in dict.fromkeys([*a, *b]):
            found = _difference(a.get(key, _ABSENT), b.get(key, _ABSENT), _child(where, key))
            if found is not None:
                return found
        return None
    same = type(a) is type(b) and json.dumps(a, sort_keys=True, default=repr) == json.dumps(
        b, sort_keys=True, default=repr
    )
    return None if same else (where, a, b)


def _check_same_run(path_a: Path, a: dict[str, Any], path_b: Path, b: dict[str, Any]) -> None:
    """Everything that changes a report's numbers or verdicts, besides its cells, is equal."""
    for key in RUN_KEYS:
        found = _difference(a[key], b[key], key)
        if found is not None:
            name, value_a, value_b = found
            raise ReportError(
                f"{path_a} and {path_b} come from different runs: {name} is {_shown(value_a)} in {path_a} "
                f"and {_shown(value_b)} in {path_b}. {ONE_RUN}."
            )


class _Absent:
    def __repr__(self) -> str:
        return "absent"


_ABSENT = _Absent()
RUN_KEYS = ("source", "gate", "plugin_version", "settings", "provenance")  # what says which run wrote a report


def _check_shards(paths: Sequence[Path], reports: Sequence[dict[str, Any]]) -> None:
    """Reports of ``--advprune-shard`` runs merge only when every shard of one split is there, once.
    Nothing here is sized by a count a file gives: the count is at most ``MAX_SHARDS`` (``read_report``),
    and the missing shards are listed lazily, ``LISTED`` of them."""
    shards = [report["shard"] for report in reports]
    if all(shard is None for shard in shards):
        return
    sharded = next(i for i, shard in enumerate(shards) if shard is not None)
    whole = next((i for i, shard in enumerate(shards) if shard is None), None)
    if whole is not None:
        shard = shards[sharded]
        raise ReportError(
            f"{paths[sharded]} comes from --advprune-shard={shard['index']}/{shard['count']} and {paths[whole]} "
            "from a run without it: merge the shards of one run."
        )
    count = shards[0]["count"]
    seen: dict[int, Path] = {}
    for path, shard in zip(paths, shards, strict=True):
        if shard["count"] != count:
            raise ReportError(
                f"{paths[0]} is shard {shards[0]['index']}/{count} and {path} shard {shard['index']}/"
                f"{shard['count']}: the reports split the matrix into different numbers of shards. {ONE_RUN}."
            )
        if shard["index"] in seen:
            raise ReportError(
                f"{seen[shard['index']]} and {path} are both shard {shard['index']}/{count}: give each shard's "
                "report once."
            )
        seen[shard["index"]] = path
    if len(seen) < count:
        missing = (f"{index}/{count}" for index in range(1, count + 1) if index not in seen)
        raise ReportError(
            f"the report of shard {_counted(missing, count - len(seen))} is missing ({len(seen)} of {count} "
            "given): a merged report must hold every shard of the run (did that job fail before writing its "
            "report?)."
        )
