"""Writing a report document (``document.py``) as JSON, Markdown or HTML (by the file's suffix). Reading
and merging the JSON reports of CI shards is ``merge.py``'s (its names are here too)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pytest_advprune.reports.merge import ReportError, merge_reports, read_report

__all__ = ["SUFFIXES", "ReportError", "merge_reports", "read_report", "render", "write_report"]
SUFFIXES = (".json", ".md", ".html")


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
