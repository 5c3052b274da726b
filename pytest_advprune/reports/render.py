"""Writing a report document (``document.py``) as JSON, Markdown or HTML (by the file's suffix), and
merging the JSON reports of CI shards."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pytest_advprune.reports.document import FORMAT, SCHEMA_VERSION, build_document

SUFFIXES = (".json", ".md", ".html")


class ReportError(ValueError):
    """A report that cannot be read or merged: not a pytest-advprune JSON report, or in conflict."""


def render(document: dict[str, Any], suffix: str) -> str:
    if suffix == ".md":
        from pytest_advprune.reports.markdown import render_markdown

        return render_markdown(document)
    if suffix == ".html":
        from pytest_advprune.reports.html import render_html

        return render_html(document)
    # Not sorted: the cells keep the report's order, failures first.
    return json.dumps(document, indent=2, allow_nan=False) + "\n"


def write_report(path: Path, document: dict[str, Any]) -> None:
    """``path`` ending in ``.md`` gets Markdown, ``.html`` one self-contained HTML file, anything else JSON."""
    text = render(document, path.suffix.lower())
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def read_report(path: Path) -> dict[str, Any]:
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ReportError(
            f"{path}: cannot read it as JSON ({error}). Give the .json reports written with "
            "--advprune-report=PATH.json."
        ) from None
    if not isinstance(report, dict) or report.get("format") != FORMAT or not isinstance(report.get("cells"), dict):
        raise ReportError(
            f"{path}: not a pytest-advprune JSON report (no format {FORMAT!r} with its cells). Give the files "
            "written with --advprune-report=PATH.json."
        )
    if report.get("schema_version") != SCHEMA_VERSION:
        raise ReportError(
            f"{path}: report schema version {report.get('schema_version')!r}; this plugin reads {SCHEMA_VERSION}. "
            "Merge reports written by the same plugin version."
        )
    return report


def merge_reports(paths: Sequence[Path]) -> dict[str, Any]:
    """One report from the JSON reports of several CI shards (``--advprune-shard``): their cells and
    latencies together. A cell may appear in several reports only with the same record; gates must agree."""
    if not paths:
        raise ReportError("no report given: name the shards' JSON reports.")
    reports = [read_report(path) for path in paths]
    for key in ("gate", "source", "plugin_version"):
        values = {str(report.get(key)) for report in reports}
        if len(values) > 1:
            raise ReportError(
                f"the reports differ in {key} ({', '.join(sorted(values))}): merge the shards of one run only."
            )
    _check_shards(paths, reports)
    cells: dict[str, dict[str, Any]] = {}
    owner: dict[str, Path] = {}
    latency: dict[tuple[Any, ...], dict[str, Any]] = {}
    for path, report in zip(paths, reports, strict=True):
        try:
            for cell in report["cells"].values():
                if cell["id"] in cells and cells[cell["id"]] != cell:
                    raise ReportError(
                        f"cell {cell['id']!r} is in {owner[cell['id']]} and in {path} with different results. Each "
                        "shard runs other cells: were these reports written by one sharded run?"
                    )
                cells[cell["id"]], owner[cell["id"]] = cell, path
            for row in report.get("latency") or ():
                where = (row["model"], row["pruning"], row["batch_size"])
                if where in latency and latency[where] != row:
                    raise ReportError(f"{path}: the latency of {where} differs from another report's.")
                latency[where] = row
        except (KeyError, TypeError, AttributeError) as error:
            raise ReportError(f"{path}: a cell or latency row lacks a field ({error!r}): is it a report?") from None
    return build_document(  # the whole matrix again: "shard" is null
        cells.values(),
        source=str(reports[0].get("source", "run")),
        gate=reports[0].get("gate"),
        plugin_version=str(reports[0].get("plugin_version")),
        latency=[latency[key] for key in sorted(latency)],
    )


def _check_shards(paths: Sequence[Path], reports: Sequence[dict[str, Any]]) -> None:
    """Reports of ``--advprune-shard`` runs merge only when every shard of one split is there, once."""
    shards = [report.get("shard") for report in reports]
    if not any(shards):
        return
    if not all(isinstance(shard, dict) for shard in shards):
        raise ReportError("some reports come from --advprune-shard runs and some do not: merge the shards of one run.")
    counts = {int(shard["count"]) for shard in shards if isinstance(shard, dict)}
    if len(counts) > 1:
        raise ReportError(f"the reports split the matrix into different numbers of shards ({sorted(counts)}).")
    count = counts.pop()
    seen: dict[int, Path] = {}
    for path, shard in zip(paths, shards, strict=True):
        index = int(shard["index"]) if isinstance(shard, dict) else 0
        if index in seen and seen[index] != path:
            raise ReportError(
                f"shard {index}/{count} is in {seen[index]} and in {path}: give each shard's report once."
            )
        seen[index] = path
    missing = [f"{index}/{count}" for index in range(1, count + 1) if index not in seen]
    if missing:
        raise ReportError(
            f"the report of shard {', '.join(missing)} is missing: a merged report must hold every shard of the run "
            "(did that job fail before writing its report?)."
        )
