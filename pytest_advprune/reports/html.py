"""The report as one self-contained HTML file: the tables of the Markdown report and the study's figures
(inline SVG, when matplotlib is installed), with no external resource, so it opens offline."""

from __future__ import annotations

import html
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from pytest_advprune.reports import formatting as fmt
from pytest_advprune.reports.document import ATTENTION
from pytest_advprune.reports.markdown import study_note

STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #1f2328; }
table { border-collapse: collapse; margin: .5em 0 1.5em; }
th, td { border: 1px solid #d0d7de; padding: 3px 8px; }
th { background: #f6f8fa; } td.n { text-align: right; font-variant-numeric: tabular-nums; }
.attention { border-left: 4px solid #cf222e; padding-left: 1em; margin: 1em 0; }
code { background: #f6f8fa; padding: 0 3px; } figure { margin: 1em 0; } figcaption { color: #57606a; }
"""


def render_html(document: Mapping[str, Any], figures: Sequence[Any] | None = None) -> str:
    """``figures``: the study's figures (``figures.py``); computed from the document when None."""
    if figures is None:
        figures, figures_note = _figures(document)
    else:
        figures_note = ""
    title = "pytest-advprune report" + (" (stored baselines)" if document["source"] == "baselines" else "")
    parts = [f"<h1>{_e(title)}</h1>", f"<p>{_summary(document)}</p>"]
    attention = [cell for cell in document["cells"].values() if cell["status"] in ATTENTION]
    if attention:
        parts.append(f"<h2>Needs attention ({len(attention)})</h2>")
        parts += [_attention(cell) for cell in attention]
    if document["cells"]:
        parts += ["<h2>Cells</h2>", _cells_table(list(document["cells"].values()))]
    if document["study"]:
        parts += [
            "<h2>Pruned vs base</h2>",
            f"<p>{_e(study_note(document['study']))}</p>",
            *_study_tables(document["study"]),
        ]
    if figures or figures_note:
        parts.append("<h2>Figures</h2>")
        parts += [f"<p>{_e(figures_note)}</p>"] if figures_note else []
        parts += [f"<figure>{figure.svg}<figcaption>{_e(figure.title)}</figcaption></figure>" for figure in figures]
    flagged = [(cell["id"], flag) for cell in document["cells"].values() for flag in cell["flags"]]
    if flagged:
        parts += ["<h2>Sanity flags</h2>", "<ul>", *[f"<li><code>{_e(c)}</code>: {_e(f)}</li>" for c, f in flagged]]
        parts.append("</ul>")
    if document["latency"]:
        parts += ["<h2>Latency</h2>", _latency_table(document["latency"])]
    body = "\n".join(parts)
    return (
        f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n<title>{_e(title)}</title>\n'
        f"<style>{STYLE}</style>\n</head>\n<body>\n{body}\n</body>\n</html>\n"
    )


def _figures(document: Mapping[str, Any]) -> tuple[list[Any], str]:
    try:
        from pytest_advprune.reports.figures import FiguresUnavailable, all_figures
    except ImportError:
        return [], ""
    try:
        return list(all_figures(document)), ""
    except FiguresUnavailable as error:
        return [], str(error)


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _summary(document: Mapping[str, Any]) -> str:
    """The Markdown report's summary line (``markdown.summary_line``) in HTML, built from the values, not
    from that Markdown: a status or gate holding '**' or '`' must not open an element."""
    summary = document["summary"]
    statuses = ", ".join(f"{_e(number)} {_e(status)}" for status, number in summary["statuses"].items())
    noun = "cell" if summary["cells"] == 1 else "cells"
    gate = f" · gate <code>{_e(document['gate'])}</code>" if document.get("gate") else ""
    counts = f"<strong>{_e(summary['cells'])} {noun}: {statuses or 'none'}</strong>"
    return f"{counts}{gate} · pytest-advprune {_e(document['plugin_version'])}"


def _table(header: Sequence[str], rows: Iterable[Sequence[str]], numeric: Sequence[bool]) -> str:
    head = "".join(f"<th>{_e(name)}</th>" for name in header)
    cells = (
        "".join(f'<td class="n">{_e(v)}</td>' if n else f"<td>{_e(v)}</td>" for v, n in zip(row, numeric, strict=True))
        for row in rows
    )
    body = "".join(f"<tr>{row}</tr>" for row in cells)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _attention(cell: Mapping[str, Any]) -> str:
    items = []
    if cell.get("file"):
        items.append(f"baseline file: <code>{_e(cell['file'])}</code>")
    if cell.get("nodeid"):
        items.append(f"test: <code>{_e(cell['nodeid'])}</code>")
    items += [f"changed since the baseline: <code>{_e(c)}</code>" for c in cell.get("stale_fields") or ()]
    for violation in cell.get("violations") or ():
        items.append(
            f"invariant <code>{_e(violation['invariant'])}</code> violated: {_e(violation['metric'])} "
            f"{_e(fmt.points(violation['observed']))} (allowed: {_e(violation['allowed'])})"
        )
    items += [f"error: {_e(cell['error'])}"] if cell.get("error") else []
    items += [f"sanity flag: {_e(flag)}" for flag in cell.get("flags") or ()]
    parts = [f"<h3><code>{_e(cell['id'])}</code>: {_e(cell['status'])}</h3>", "<ul>"]
    parts += [f"<li>{item}</li>" for item in items] + ["</ul>"]
    changes = cell.get("failing") or (cell.get("comparisons") if cell["status"] == "stale" else None)
    if changes:
        if not cell.get("failing"):
            parts.append("<p>Against the stale baseline:</p>")
        parts.append(_metric_table(changes, with_allowed=bool(cell.get("failing"))))
    return '<div class="attention">' + "\n".join(parts) + "</div>"


def _metric_table(changes: Sequence[Mapping[str, Any]], *, with_allowed: bool) -> str:
    header = ["metric", "baseline", "observed", f"change [{fmt.level(list(changes))} CI]", "McNemar p"]
    header += ["allowed"] if with_allowed else []
    rows = [
        [
            str(c["metric"]),
            fmt.value(str(c["metric"]), c.get("baseline")),
            fmt.value(str(c["metric"]), c.get("observed")),
            fmt.change(c),
            fmt.p_value(c.get("p_value")),
        ]
        + ([str(c.get("allowed", ""))] if with_allowed else [])
        for c in changes
    ]
    return _table(header, rows, [False, True, True, True, True] + ([False] if with_allowed else []))


def _cells_table(cells: Sequence[Mapping[str, Any]]) -> str:
    header = ["cell", "status", "base clean", "pruned clean", "base robust", "pruned robust", "transfer robust"]
    header.append("sparsity")
    names = ["base_clean_accuracy", "pruned_clean_accuracy", "base_robust_accuracy", "pruned_robust_accuracy"]
    names += ["transfer_robust_accuracy", "sparsity"]
    rows = [[c["id"], c["status"], *(fmt.points(c["metrics"].get(n)) for n in names)] for c in cells]
    return _table(header, rows, [False, False, *([True] * len(names))])


def _study_tables(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    ci = f"[{fmt.level(list(rows))} CI]"
    header = ["attack", "pruning", "base", "pruned", f"pruned - base {ci}", "p", "transfer"]
    header += [f"transfer - base {ci}", "p", "sparsity", "MACs"]
    timed = any(row.get("speedup") is not None for row in rows)  # a run that timed latencies
    header += ["speedup"] if timed else []
    parts = []
    for model in sorted({row["model"] for row in rows}):
        table_rows = []
        for row in (r for r in rows if r["model"] == model):
            pruned, transfer = row.get("pruned_vs_base") or {}, row.get("transfer_vs_base") or {}
            table_rows.append(
                [
                    row["attack"],
                    row["pruning"],
                    fmt.points(row["base_robust_accuracy"]),
                    fmt.points(row["pruned_robust_accuracy"]),
                    fmt.change(pruned),
                    fmt.p_value(pruned.get("p_value")),
                    fmt.points(row["transfer_robust_accuracy"]),
                    fmt.change(transfer),
                    fmt.p_value(transfer.get("p_value")),
                    fmt.points(row["sparsity"]),
                    f"{fmt.count(row['pruned_macs'])} / {fmt.count(row['base_macs'])}",
                ]
                + ([fmt.speedup(row["speedup"])] if timed else [])
            )
        parts += [f"<h3>{_e(model)}</h3>", _table(header, table_rows, [False, False] + [True] * (len(header) - 2))]
    return parts


def _latency_table(rows: Sequence[Mapping[str, Any]]) -> str:
    table_rows = [
        [
            r["model"],
            r["pruning"],
            str(r["batch_size"]),
            "" if r.get("base_median_seconds") is None else f"{r['base_median_seconds'] * 1e3:.3f}",
            f"{r['median_seconds'] * 1e3:.3f}",
            fmt.speedup(r.get("speedup")),
        ]
        for r in rows
    ]
    header = ["model", "pruning", "batch", "base ms", "pruned ms", "speedup"]
    return _table(header, table_rows, [False, False, True, True, True, True])
