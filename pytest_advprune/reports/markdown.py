"""The report as GitHub-flavoured Markdown: what needs attention first (each cell with its failing
metrics, violated invariants, flags and baseline file), then every cell, the study's comparison of each
pruned model with its base, and latencies."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pytest_advprune.gate import describe_worst
from pytest_advprune.reports import formatting as fmt
from pytest_advprune.reports.document import ATTENTION


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
        lines += [f"- `{cell['id']}`: {describe_worst(cell['worst'])}" for cell in accepted]
    if document["cells"]:
        lines += ["", "## Cells", "", *cells_table(list(document["cells"].values()))]
    if document["study"]:
        lines += ["", "## Pruned vs base", "", study_note(document["study"]), *study_tables(document["study"])]
    flagged = [(cell["id"], flag) for cell in document["cells"].values() for flag in cell["flags"]]
    if flagged:
        lines += ["", "## Sanity flags", "", *[f"- `{cell}`: {flag}" for cell, flag in flagged]]
    if document["latency"]:
        lines += ["", "## Latency", "", *latency_table(document["latency"])]
    return "\n".join(lines) + "\n"


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
    statuses = ", ".join(f"{number} {status}" for status, number in summary["statuses"].items())
    gate = f" · gate `{document['gate']}`" if document.get("gate") else ""
    noun = "cell" if summary["cells"] == 1 else "cells"
    return f"**{summary['cells']} {noun}: {statuses or 'none'}**{gate} · pytest-advprune {document['plugin_version']}"


def cell_details(cell: Mapping[str, Any]) -> list[str]:
    lines = [f"### `{cell['id']}`: {cell['status']}", ""]
    if cell.get("file"):
        lines.append(f"- baseline file: `{cell['file']}`")
    if cell.get("nodeid"):
        lines.append(f"- test: `{cell['nodeid']}`")
    for changed in cell.get("stale_fields") or ():
        lines.append(f"- changed since the baseline: `{changed}`")
    for violation in cell.get("violations") or ():
        interval = fmt.change(violation) if "ci_low" in violation else ""
        p_value = f", p = {fmt.p_value(violation['p_value'])}" if "p_value" in violation else ""
        lines.append(
            f"- invariant `{violation['invariant']}` violated: {violation['metric']} "
            f"{fmt.points(violation['observed'])} (allowed: {violation['allowed']}){' ' + interval if interval else ''}"
            f"{p_value}"
        )
    if cell.get("error"):
        lines.append(f"- error: {cell['error']}")
    for flag in cell.get("flags") or ():
        lines.append(f"- sanity flag: {flag}")
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
        row = (
            f"| {metric} | {fmt.value(metric, change.get('baseline'))} | {fmt.value(metric, change.get('observed'))} "
            f"| {fmt.change(change)} | {fmt.p_value(change.get('p_value'))} |"
        )
        lines.append(row + (f" {change.get('allowed', '')} |" if with_allowed else ""))
    return lines


def cells_table(cells: list[Mapping[str, Any]]) -> list[str]:
    lines = [
        "| cell | status | base clean | pruned clean | base robust | pruned robust | transfer robust | sparsity |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for cell in cells:
        m = cell["metrics"]
        lines.append(
            f"| `{cell['id']}` | {cell['status']} | {fmt.points(m.get('base_clean_accuracy'))} "
            f"| {fmt.points(m.get('pruned_clean_accuracy'))} | {fmt.points(m.get('base_robust_accuracy'))} "
            f"| {fmt.points(m.get('pruned_robust_accuracy'))} | {fmt.points(m.get('transfer_robust_accuracy'))} "
            f"| {fmt.points(m.get('sparsity'))} |"
        )
    return lines


def study_tables(rows: list[Mapping[str, Any]]) -> list[str]:
    """One table per model; the speedup column only when the latencies were measured (a run that timed)."""
    timed = any(row.get("speedup") is not None for row in rows)
    ci = f"[{fmt.level(rows)} CI]"
    lines: list[str] = []
    for model in sorted({row["model"] for row in rows}):
        lines += [
            "",
            f"### {model}",
            "",
            f"| attack | pruning | base | pruned | pruned - base {ci} | p | transfer | transfer - base {ci} "
            "| p | sparsity | MACs |" + (" speedup |" if timed else ""),
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|" + ("---:|" if timed else ""),
        ]
        for row in (r for r in rows if r["model"] == model):
            pruned_gap, transfer_gap = row.get("pruned_vs_base") or {}, row.get("transfer_vs_base") or {}
            line = (
                f"| {row['attack']} | {row['pruning']} | {fmt.points(row['base_robust_accuracy'])} "
                f"| {fmt.points(row['pruned_robust_accuracy'])} | {fmt.change(pruned_gap)} "
                f"| {fmt.p_value(pruned_gap.get('p_value'))} | {fmt.points(row['transfer_robust_accuracy'])} "
                f"| {fmt.change(transfer_gap)} | {fmt.p_value(transfer_gap.get('p_value'))} "
                f"| {fmt.points(row['sparsity'])} | {fmt.count(row['pruned_macs'])} / {fmt.count(row['base_macs'])} |"
            )
            lines.append(line + (f" {fmt.speedup(row['speedup'])} |" if timed else ""))
    return lines


def latency_table(rows: list[Mapping[str, Any]]) -> list[str]:
    lines = ["| model | pruning | batch | base ms | pruned ms | speedup |", "|---|---|---:|---:|---:|---:|"]
    for row in rows:
        base = row.get("base_median_seconds")
        base_ms = "" if base is None else f"{base * 1e3:.3f}"
        lines.append(
            f"| {row['model']} | {row['pruning']} | {row['batch_size']} | {base_ms} "
            f"| {row['median_seconds'] * 1e3:.3f} | {fmt.speedup(row.get('speedup'))} |"
        )
    return lines
