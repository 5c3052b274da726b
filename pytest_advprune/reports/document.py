"""The report document: every cell of a run (or of a baselines folder) with what a reviewer needs, in the
versioned shape that ``report-schema.json`` describes. Markdown, HTML and JSON are renderings of it.

Cells come failures first (``ATTENTION``, most serious first), then the rest, by id within a status.
Numbers keep the precision stored in the baselines (4 decimals); the renderings print one format.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

from pytest_advprune.reports.study import study_rows

FORMAT = "pytest-advprune report"
SCHEMA_VERSION = 1
ATTENTION = ("failed", "regressed", "violated", "error", "refused", "write failed", "missing", "unusable", "stale")
STATUSES = (*ATTENTION, "improved", "accepted", "passed", "created", "updated", "unchanged", "stored")
CELL_FIELDS: dict[str, Any] = {  # every cell carries every field; the defaults of a cell that measured nothing
    "id": "",
    "model": None,
    "pruning": None,
    "attack": None,  # the attack's name (pgd_linf)
    "attack_id": None,  # with its parameters, as in the cell id (pgd_linf_0.1)
    "pruning_method": None,  # the pruning's name (channel); "pruning" is its id (channel_0.5)
    "amount": None,
    "params": {},
    "status": "error",
    "file": None,
    "nodeid": None,
    "metrics": {},
    "failing": [],
    "violations": [],
    "flags": [],
    "comparisons": [],
    "stale_fields": [],
    "environment_changes": [],
    "accepted": False,
    "worst": None,
    "gaps": {},
    "error": None,  # why a cell with status "error" measured nothing (the last line of its failure)
}


def load_schema() -> dict[str, Any]:
    """The JSON Schema of the report (``report-schema.json``, shipped with the package)."""
    import json
    from importlib.resources import files

    schema: dict[str, Any] = json.loads(files("pytest_advprune.reports").joinpath("report-schema.json").read_text())
    return schema


def cell_record(**values: Any) -> dict[str, Any]:
    """A cell of the report with every field (``CELL_FIELDS``), from what the caller knows."""
    unknown = set(values) - set(CELL_FIELDS)
    if unknown:
        raise ValueError(f"unknown report fields {sorted(unknown)}")
    record = {name: values.get(name, default) for name, default in CELL_FIELDS.items()}
    for name, default in CELL_FIELDS.items():
        if record[name] is None and default is not None:
            record[name] = type(default)()
    return record


def ordered(cells: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Failures first (in ``STATUSES`` order), then by id."""
    rank = {status: index for index, status in enumerate(STATUSES)}
    return sorted((dict(cell) for cell in cells), key=lambda c: (rank.get(c["status"], len(rank)), c["id"]))


def speedups(latencies: Iterable[Mapping[str, Any]]) -> dict[tuple[str, str], float]:
    """(model, pruning) -> measured speedup over the base, at the largest batch size timed."""
    chosen: dict[tuple[str, str], tuple[int, float]] = {}
    for row in latencies:
        if row.get("speedup") is None:
            continue
        key = (str(row["model"]), str(row["pruning"]))
        if key not in chosen or int(row["batch_size"]) > chosen[key][0]:
            chosen[key] = (int(row["batch_size"]), float(row["speedup"]))
    return {key: speedup for key, (_, speedup) in chosen.items()}


def latency_rows(medians: Mapping[tuple[str, int, str], float]) -> list[dict[str, Any]]:
    """Latency rows from ``(model, batch size, variant) -> median seconds``, each pruned variant with its
    base's median and the speedup."""
    rows = []
    for (model, batch, variant), median in sorted(medians.items()):
        if variant == "base":
            continue
        base = medians.get((model, batch, "base"))
        rows.append(
            {
                "model": model,
                "pruning": variant,
                "batch_size": batch,
                "median_seconds": median,
                "base_median_seconds": base,
                "speedup": round(base / median, 4) if base and median else None,
            }
        )
    return rows


def build_document(
    cells: Iterable[Mapping[str, Any]],
    *,
    source: str,
    gate: str | None,
    plugin_version: str,
    latency: Iterable[Mapping[str, Any]] = (),
    shard: tuple[int, int] | None = None,
    settings: Mapping[str, Any] | None = None,
    provenance: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The whole report: ``source`` is ``run`` (statuses are the gate's verdicts) or ``baselines`` (rendered
    from stored files: every status is ``stored``, and nothing was compared). ``settings`` and
    ``provenance`` say what else a run's numbers depend on (``reports/run.py``); None for stored files."""
    cells = ordered(cells)  # failures first: JSON keeps this order (its cells are keyed by id, not sorted)
    latency = [dict(row) for row in latency]
    counts = Counter(cell["status"] for cell in cells)
    return {
        "format": FORMAT,
        "schema_version": SCHEMA_VERSION,
        "plugin_version": plugin_version,
        "source": source,
        "gate": gate,
        "shard": None if shard is None else {"index": shard[0], "count": shard[1]},
        "settings": None if settings is None else dict(settings),
        "provenance": None if provenance is None else dict(provenance),
        "summary": {
            "cells": len(cells),
            "statuses": {status: counts[status] for status in STATUSES if counts[status]},
            "attention": [cell["id"] for cell in cells if cell["status"] in ATTENTION],
        },
        "cells": {cell["id"]: cell for cell in cells},
        "study": study_rows(cells, speedups(latency)),
        "latency": latency,
    }
