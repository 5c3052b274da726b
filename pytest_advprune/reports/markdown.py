"""The report as GitHub-flavoured Markdown: what needs attention first (each cell with its failing
metrics, violated invariants, flags and baseline file), then every cell, the study's comparison of each
pruned model with its base, and latencies.

Every value that comes from a report or a baseline file (names, ids, parameters, messages, metric names)
goes through ``text`` or ``code``: the Markdown lands in ``$GITHUB_STEP_SUMMARY``, where a name holding
``<script>`` or a ``|`` must show as typed, not become markup or break a table.
"""

from __future__ import annotations

import html
import re
from collections.abc import Mapping
from typing import Any

from pytest_advprune.gate import describe_worst
from pytest_advprune.messages import format_number
from pytest_advprune.reports import formatting as fmt
from pytest_advprune.reports.document import ATTENTION

# Characters that start Markdown emphasis, code, links, tables, strikethrough, headings' closing and
# GitHub's math; '_' only outside a word (inside one it never emphasises, and every id has it there).
_MARKDOWN_SPECIAL = re.compile(r"[\\`*\[\]|~#$]|(?<![A-Za-z0-9])_|_(?![A-Za-z0-9])")
_LINE_BREAKS = re.compile(r"[\x00-\x1f\x7f\x85\u2028\u2029]")  # would end a table row or a list item
# What a code span shows as typed: no backtick (ends it), '|' (ends a table cell), or '<' / '&' (kept
# literally in a code span, which is right, but a reader of the raw summary should never meet '<script>').
_CODE_SAFE = re.compile(r"[^`|<&\x00-\x1f\x7f\x85\u2028\u2029]+")


def text(value: object) -> str:
    """``value`` as literal Markdown text: markup as HTML entities, Markdown's special characters
    backslash-escaped, line breaks as spaces. An ordinary id (``pgd_linf_0.1``) comes out unchanged."""
    escaped = html.escape(_LINE_BREAKS.sub(" ", str(value)), quote=False)
    return _MARKDOWN_SPECIAL.sub(lambda match: "\\" + match.group(0), escaped)


def code(value: object) -> str:
    """``value`` as inline code: a code span when it can hold it as typed, else an HTML ``<code>`` element
    with escaped content (GitHub renders both alike)."""
    shown = str(value)
    if _CODE_SAFE.fullmatch(shown) and shown.strip(" ") == shown:
        return f"`{shown}`"
    return f"<code>{text(shown)}</code>"


def render_markdown(document: Mapping[str, Any]) -> str:
    lines = [f"# pytest-advprune report{_title_suffix(document)}", "", summary_line(document)]
    attention = [cell for cell in document["cells"].values() if cell["status"] in ATTENTION]
    if attention:
        lines += ["", f"## Needs attention ({len(attention)})"]
        for cell in attention:
            lines += ["", *cell_details(cell)]
    accepted = [cell for cell in document["cells"].values() if cell["accepted"] and cell["worst"]]
    if accepted:
        lines += ["", "## Accepted regressions (written with --advprune-accept-regressions)", ""]
        lines += [f"- {code(cell['id'])}: {_worst(cell['worst'])}" for cell in accepted]
    if document["cells"]:
        lines += ["", "## Cells", "", *cells_table(list(document["cells"].values()))]
    if document["study"]:
        lines += ["", "## Pruned vs base", "", study_note(document["study"]), *study_tables(document["study"])]
    flagged = [(cell["id"], flag) for cell in document["cells"].values() for flag in cell["flags"]]
    if flagged:
        lines += ["", "## Sanity flags", "", *[f"- {code(cell)}: {text(flag)}" for cell, flag in flagged]]
    if document["latency"]:
        lines += ["", "## Latency", "", *latency_table(document["latency"])]
    return "\n".join(lines) + "\n"


def _worst(record: Mapping[str, Any]) -> str:
    """``gate.describe_worst`` of the record with its texts escaped (a baseline file names its metrics;
    format_number passes the escaped texts through)."""
    escaped = {key: text(format_number(record[key])) for key in ("metric", "baseline", "observed")}
    return describe_worst({**record, **escaped})


def study_note(rows: list[Mapping[str, Any]]) -> str:
    return (
        f"Robust accuracy in %; gaps in points, pruned minus base on the same samples, with the {fmt.level(rows)} "
        "paired (Newcombe) interval and McNemar's exact p-value. White-box: each model attacked itself; transfer: "
        "the base model's adversarial examples on the pruned model."
    )


def _title_suffix(document: Mapping[str, Any]) -> str:
    return " (stored baselines)" if document["source"] == "baselines" else ""


def summary_line(document: Mapping[str, Any]) -> str:
    summary = document["summary"]
    statuses = ", ".join(f"{text(number)} {text(status)}" for status, number in summary["statuses"].items())
    gate = f" · gate {code(document['gate'])}" if document.get("gate") else ""
    noun = "cell" if summary["cells"] == 1 else "cells"
    version = text(document["plugin_version"])
    return f"**{text(summary['cells'])} {noun}: {statuses or 'none'}**{gate} · pytest-advprune {version}"


def cell_details(cell: Mapping[str, Any]) -> list[str]:
    lines = [f"### {code(cell['id'])}: {text(cell['status'])}", ""]
    if cell.get("file"):
        lines.append(f"- baseline file: {code(cell['file'])}")
    if cell.get("nodeid"):
        lines.append(f"- test: {code(cell['nodeid'])}")
    for changed in cell.get("stale_fields") or ():
        lines.append(f"- changed since the baseline: {code(changed)}")
    for violation in cell.get("violations") or ():
        interval = fmt.change(violation) if "ci_low" in violation else ""
        p_value = f", p = {fmt.p_value(violation['p_value'])}" if "p_value" in violation else ""
        lines.append(
            f"- invariant {code(violation['invariant'])} violated: {text(violation['metric'])} "
            f"{text(fmt.points(violation['observed']))} (allowed: {text(violation['allowed'])})"
            f"{' ' + interval if interval else ''}{p_value}"
        )
    if cell.get("error"):
        lines.append(f"- error: {text(cell['error'])}")
    for flag in cell.get("flags") or ():
        lines.append(f"- sanity flag: {text(flag)}")
    if cell.get("failing"):
        lines += ["", *metric_table(cell["failing"], with_allowed=True)]
    elif cell.get("comparisons") and cell["status"] == "stale":
        lines += ["", "Against the stale baseline:", "", *metric_table(cell["comparisons"], with_allowed=False)]
    return lines


def metric_table(changes: list[Mapping[str, Any]], *, with_allowed: bool) -> list[str]:
    header = f"| metric | baseline | observed | change [{fmt.level(changes)} CI] | McNemar p |"
    header += " allowed |" if with_allowed else ""
    lines = [header, "|---|---:|---:|---:|---:|" + ("---|" if with_allowed else "")]
    for change in changes:
        metric = str(change["metric"])
        baseline, observed = (text(fmt.value(metric, change.get(key))) for key in ("baseline", "observed"))
        p_value = fmt.p_value(change.get("p_value"))
        row = f"| {text(metric)} | {baseline} | {observed} | {fmt.change(change)} | {p_value} |"
        lines.append(row + (f" {text(change.get('allowed', ''))} |" if with_allowed else ""))
    return lines


CELL_COLUMNS = (
    "base_clean_accuracy",
    "pruned_clean_accuracy",
    "base_robust_accuracy",
    "pruned_robust_accuracy",
    "transfer_robust_accuracy",
    "sparsity",
)


def cells_table(cells: list[Mapping[str, Any]]) -> list[str]:
    lines = [
        "| cell | status | base clean | pruned clean | base robust | pruned robust | transfer robust | sparsity |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for cell in cells:
        m = cell["metrics"]
        numbers = " | ".join(text(fmt.points(m.get(name))) for name in CELL_COLUMNS)
        lines.append(f"| {code(cell['id'])} | {text(cell['status'])} | {numbers} |")
    return lines


def study_tables(rows: list[Mapping[str, Any]]) -> list[str]:
    """One table per model; the speedup column only when the latencies were measured (a run that timed)."""
    timed = any(row.get("speedup") is not None for row in rows)
    ci = f"[{fmt.level(rows)} CI]"
    lines: list[str] = []
    for model in sorted({row["model"] for row in rows}):
        lines += [
            "",
            f"### {text(model)}",
            "",
            f"| attack | pruning | base | pruned | pruned - base {ci} | p | transfer | transfer - base {ci} "
            "| p | sparsity | MACs |" + (" speedup |" if timed else ""),
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|" + ("---:|" if timed else ""),
        ]
        for row in (r for r in rows if r["model"] == model):
            pruned_gap, transfer_gap = row.get("pruned_vs_base") or {}, row.get("transfer_vs_base") or {}
            base, pruned, transfer, sparsity = (
                text(fmt.points(row[name]))
                for name in ("base_robust_accuracy", "pruned_robust_accuracy", "transfer_robust_accuracy", "sparsity")
            )
            line = (
                f"| {text(row['attack'])} | {text(row['pruning'])} | {base} | {pruned} | {fmt.change(pruned_gap)} "
                f"| {fmt.p_value(pruned_gap.get('p_value'))} | {transfer} "
                f"| {fmt.change(transfer_gap)} | {fmt.p_value(transfer_gap.get('p_value'))} "
                f"| {sparsity} | {fmt.count(row['pruned_macs'])} / {fmt.count(row['base_macs'])} |"
            )
            lines.append(line + (f" {fmt.speedup(row['speedup'])} |" if timed else ""))
    return lines


def latency_table(rows: list[Mapping[str, Any]]) -> list[str]:
    lines = ["| model | pruning | batch | base ms | pruned ms | speedup |", "|---|---|---:|---:|---:|---:|"]
    for row in rows:
        base = row.get("base_median_seconds")
        base_ms = "" if base is None else f"{base * 1e3:.3f}"
        lines.append(
            f"| {text(row['model'])} | {text(row['pruning'])} | {text(row['batch_size'])} | {base_ms} "
            f"| {row['median_seconds'] * 1e3:.3f} | {fmt.speedup(row.get('speedup'))} |"
        )
    return lines
