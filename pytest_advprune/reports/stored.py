"""A report from stored baselines, without running anything: ``python -m pytest_advprune report``.

Each baseline file becomes a cell with status ``stored``: its metrics, the study's paired gaps computed
from its per-sample outcomes (the same computation a run makes), and the sanity flags that compare cells
(``sanity.matrix_flags``); flags that need the models themselves (zero gradients, softmax outputs) and the
gate's comparisons exist only in a run's report. Latencies are not stored in baselines.

A file that cannot be used (see ``baselines.parse_baseline``), or whose ``cell`` is not the cell its path
belongs to, stops the report with a ``BaselineFileError`` naming the file and the field: a report that
left it out would look complete.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pytest_advprune.baselines import CELL_KEYS, BaselineFileError, BaselineStore, brief_repr
from pytest_advprune.reports.document import build_document, cell_record
from pytest_advprune.reports.study import robustness_gaps


def stored_document(root: Path, *, alpha: float = 0.05, noise: float = 2.0) -> dict[str, Any]:
    """The report of every baseline under ``root``; ``alpha`` sets the intervals' level (1 - alpha),
    ``noise`` the sanity flags' margin (``advprune_tolerance``)."""
    from pytest_advprune import __version__
    from pytest_advprune.sanity import matrix_flags

    store = BaselineStore(root)
    files = store.existing_files()
    if not files:
        raise BaselineFileError(root, "holds no baseline files (<model>/<pruning>/<attack>.json)")
    cells: dict[str, dict[str, Any]] = {}
    for path in files:
        baseline = store.load_path(path)
        model, pruning_id, attack_id = (baseline.cell[key] for key in CELL_KEYS)
        expected = store.path_of(model, pruning_id, attack_id)
        if expected != path:
            # A copied or renamed file: the report would show it under a cell the gate never compares it with.
            raise BaselineFileError(
                path,
                f"its 'cell' ({', '.join(map(brief_repr, (model, pruning_id, attack_id)))}) belongs in "
                f"{expected.relative_to(root).as_posix()!r}; move the file there or correct its 'cell'",
            )
        cell_id = f"{model}-{pruning_id}-{attack_id}"
        if cell_id in cells:
            raise BaselineFileError(
                path,
                f"its cell id {brief_repr(cell_id)} is also that of {cells[cell_id]['file']!r} (the ids joined by '-')",
            )
        # parse_baseline checked the types of these sections where they are present.
        attack = dict(baseline.provenance.get("attack") or {})
        pruning = baseline.provenance.get("pruning") or {}
        cells[cell_id] = cell_record(
            id=cell_id,
            status="stored",
            model=model,
            pruning=pruning_id,
            attack=attack.pop("name", None),
            attack_id=attack_id,
            pruning_method=pruning.get("method"),
            amount=pruning.get("amount"),
            params=attack,
            file=path.relative_to(root).as_posix(),
            metrics=baseline.metrics,
            gaps=robustness_gaps(baseline.outcomes, 1.0 - alpha),
        )
    for cell_id, flags in matrix_flags(cells, noise).items():
        cells[cell_id]["flags"] += [flag.describe() for flag in flags]
    return build_document(cells.values(), source="baselines", gate=None, plugin_version=__version__)
