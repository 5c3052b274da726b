"""The compact matrix printed at the end of a run: per model, prunings as rows and attacks as columns,
each cell ``white-box / transfer`` robust accuracy with its status, and the base model's white-box
robust accuracy on the first row."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from pytest_advprune.reports import formatting as fmt

SHORT_STATUS = {"passed": "ok", "unchanged": "ok", "created": "new", "updated": "upd", "write failed": "write!"}


def matrix_lines(cells: Iterable[Mapping[str, Any]]) -> list[str]:
    by_model: dict[str, list[Mapping[str, Any]]] = {}
    for cell in cells:
        if cell.get("model") and cell.get("attack_id") and cell.get("metrics"):
            by_model.setdefault(str(cell["model"]), []).append(cell)
    if not by_model:
        return []
    lines = ["robust accuracy % (white-box / transfer, status); base: the base model's white-box robust accuracy"]
    for model, model_cells in sorted(by_model.items()):
        # Attacks by name, then eps as a number (a sweep's pgd_linf_0.05 before pgd_linf_0.1 before 0.15).
        order = {str(c["attack_id"]): _attack_order(c) for c in model_cells}
        attacks = sorted(order, key=lambda attack: order[attack])
        prunings = sorted({str(c["pruning"]) for c in model_cells})
        table = {(str(c["pruning"]), str(c["attack_id"])): c for c in model_cells}
        rows = [[model, *attacks]]
        base_row = ["  base"]
        for attack in attacks:
            any_cell = next((c for (p, a), c in table.items() if a == attack), None)
            base_row.append(fmt.points(any_cell["metrics"].get("base_robust_accuracy")) if any_cell else "")
        rows.append(base_row)
        for pruning in prunings:
            row = [f"  {pruning}"]
            for attack in attacks:
                found = table.get((pruning, attack))
                row.append(_entry(found) if found is not None else "")
            rows.append(row)
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        for row in rows:
            lines.append("  ".join(value.ljust(width) for value, width in zip(row, widths, strict=True)).rstrip())
    return lines


def _attack_order(cell: Mapping[str, Any]) -> tuple[str, float, str]:
    eps = (cell.get("params") or {}).get("eps")
    number = float(eps) if isinstance(eps, (int, float)) and not isinstance(eps, bool) else float("inf")
    return (str(cell.get("attack")), number, str(cell["attack_id"]))


def _entry(cell: Mapping[str, Any]) -> str:
    metrics = cell["metrics"]
    status = str(cell["status"])
    return (
        f"{fmt.points(metrics.get('pruned_robust_accuracy'))} / {fmt.points(metrics.get('transfer_robust_accuracy'))}"
        f" {SHORT_STATUS.get(status, status)}"
    )
