"""A report from stored baselines, without running anything: ``python -m pytest_advprune report``.

Each baseline file becomes a cell with status ``stored``: its metrics, the study's paired gaps computed
from its per-sample outcomes (the same computation a run makes), and the sanity flags that compare cells
(``sanity.matrix_flags``); flags that need the models themselves (zero gradients, softmax outputs) and the
gate's comparisons exist only in a run's report. Latencies are not stored in baselines.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pytest_advprune.baselines import BaselineFileError, BaselineStore
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
        cell = json.loads(path.read_text(encoding="utf-8")).get("cell") or {}
        attack = dict(baseline.provenance.get("attack") or {})
        pruning = baseline.provenance.get("pruning") or {}
        model, pruning_id, attack_id = (str(cell.get(k, "")) for k in ("model", "pruning", "attack"))
        cell_id = f"{model}-{pruning_id}-{attack_id}"
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
