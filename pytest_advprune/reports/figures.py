"""The study's figures, as SVG ready to inline in HTML: security curves, sparsity curves and the
transfer-minus-base heatmap.

Input is a sequence of ``CellPoint`` records, one per (model, pruning, attack) cell, built from baseline
payloads by ``points_from_baselines`` (a run's ``baselines.payload(result)`` or a stored file's JSON:
the same points either way), or from a report document's cells by ``points_from_document`` (what
``all_figures`` draws). Every figure comes back as a ``Figure`` whose ``data`` holds exactly the numbers
drawn, computed before any drawing, so a test or a reader can check the picture against the baselines.

matplotlib is optional (``pip install "pytest-advprune[plots]"``) and imported only when a figure is
drawn; without it every figure function raises ``FiguresUnavailable``. Drawing never touches pyplot or
the process-wide backend: each figure is a bare ``matplotlib.figure.Figure`` on an Agg canvas, built
under matplotlib's default rcParams (a user's matplotlibrc or style cannot change the output), with a
fixed size, text kept as SVG text, no date and a constant hash salt: the same points give the same
bytes. Every id is prefixed with a hash of the figure's kind and title, so figures inlined in one page
share no id.
"""

from __future__ import annotations

import hashlib
import io
import math
import re
import sys
import textwrap
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pytest_advprune.baselines import unpack_bits
from pytest_advprune.paired import paired_change
from pytest_advprune.specs import format_value

if TYPE_CHECKING:
    from matplotlib.figure import Figure as MplFigure

INSTALL_HINT = 'pip install "pytest-advprune[plots]"'
SECURITY_CURVE = "security_curve"
SPARSITY_CURVE = "sparsity_curve"
DIFFERENCE_HEATMAP = "difference_heatmap"
SVG_SALT = "pytest-advprune"
CURVE_SIZE = (7.5, 4.2)  # inches; the legend sits right of the axes
BASE_COLOR = "#000000"
# matplotlib's tab10 without its grey (kept for missing heatmap cells), so colours need no matplotlib.
LINE_COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#bcbd22", "#17becf")
MISSING_COLOR = "#dddddd"
EPS_LABEL = "eps (perturbation budget in the attack's norm, pixels in [0, 1])"
SPARSITY_LABEL = "measured sparsity (% of base parameters zero or removed)"
ROBUST_LABEL = "robust accuracy (%)"
HEATMAP_LABEL = "transfer - base robust accuracy (points)"


class FiguresUnavailable(ImportError):
    """matplotlib, which only the figures need, cannot be imported."""

    def __init__(self, reason: str) -> None:
        super().__init__(
            f"The figures need matplotlib, which cannot be imported ({reason}). Install it: {INSTALL_HINT}"
        )


@dataclass(frozen=True)
class CellPoint:
    """One cell's numbers, as the figures read them (accuracies and sparsity in percent)."""

    model: str
    pruning_id: str
    pruning_method: str
    amount: float
    attack_id: str
    attack_name: str
    eps: float | None
    params_key: str  # the attack's parameters other than eps: cells differing only in eps share a curve
    base_robust: float
    pruned_robust: float
    transfer_robust: float
    sparsity: float
    transfer_minus_base: float  # paired difference of the per-sample outcomes, in points
    transfer_minus_base_p: float  # McNemar's exact p, transfer vs base robust outcomes
    transfer_minus_base_ci: tuple[float, float]  # Newcombe's interval of the difference, in points


@dataclass(frozen=True)
class Figure:
    title: str
    kind: str  # SECURITY_CURVE, SPARSITY_CURVE or DIFFERENCE_HEATMAP
    svg: str  # the <svg> element, without XML prolog or doctype
    data: dict[str, Any]  # exactly the numbers drawn, as plain lists and dicts


# --- Points -------------------------------------------------------------------------------------------


def params_key(attack: Mapping[str, Any]) -> str:
    """``key=value`` of an attack's provenance parameters other than its name and eps, sorted, comma-joined
    (the spec syntax: ``alpha=0.0125,steps=20``)."""
    return ",".join(
        f"{key}={_param_text(value)}" for key, value in sorted(attack.items()) if key not in ("name", "eps")
    )


def _param_text(value: Any) -> str:
    return format_value(value) if isinstance(value, (bool, int, float, str)) else repr(value)


def point_sort_key(point: CellPoint) -> tuple[Any, ...]:
    return (point.model, *_pruning_key(point), *_attack_key(point))


def _pruning_key(point: CellPoint) -> tuple[str, float, str]:
    return (point.pruning_method, point.amount, point.pruning_id)


def _attack_key(point: CellPoint) -> tuple[str, str, bool, float, str]:
    return (point.attack_name, point.params_key, point.eps is None, point.eps or 0.0, point.attack_id)


def _is_number(value: Any) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    return isinstance(value, int) and not isinstance(value, bool) and abs(value) <= sys.float_info.max


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{where} is {value!r}, not a finite number")
    return float(value)


def point_from_baseline(record: Mapping[str, Any], confidence: float = 0.95) -> CellPoint:
    """One cell's point from a baseline payload (``baselines.payload`` or a baseline file's JSON)."""
    cell = record.get("cell", {}) if isinstance(record, Mapping) else {}
    name = "/".join(str(cell.get(key, "?")) for key in ("model", "pruning", "attack"))
    try:
        provenance, metrics, outcomes = record["provenance"], record["metrics"], record["outcomes"]
        attack, pruning = provenance["attack"], provenance["pruning"]
        samples = outcomes["samples"]
        if isinstance(samples, bool) or not isinstance(samples, int) or samples <= 0:
            raise ValueError(f"outcomes.samples is {samples!r}, not a positive count")
        base = unpack_bits(outcomes["base_adversarial"], samples)
        transfer = unpack_bits(outcomes["transfer_adversarial"], samples)
        change = paired_change(base, transfer, confidence)
        eps = attack.get("eps")
        return CellPoint(
            model=str(cell["model"]),
            pruning_id=str(cell["pruning"]),
            pruning_method=str(pruning.get("method", pruning.get("name", cell["pruning"]))),
            amount=_number(pruning.get("amount"), "provenance.pruning.amount"),
            attack_id=str(cell["attack"]),
            attack_name=str(attack.get("name", cell["attack"])),
            eps=None if eps is None else _number(eps, "provenance.attack.eps"),
            params_key=params_key(attack),
            base_robust=_number(metrics.get("base_robust_accuracy"), "metrics.base_robust_accuracy"),
            pruned_robust=_number(metrics.get("pruned_robust_accuracy"), "metrics.pruned_robust_accuracy"),
            transfer_robust=_number(metrics.get("transfer_robust_accuracy"), "metrics.transfer_robust_accuracy"),
            sparsity=_number(metrics.get("sparsity"), "metrics.sparsity"),
            transfer_minus_base=change.difference,
            transfer_minus_base_p=change.p_value,
            transfer_minus_base_ci=(change.ci_low, change.ci_high),
        )
    except (KeyError, TypeError, AttributeError, ValueError) as error:
        problem = f"missing {error}" if isinstance(error, KeyError) else str(error)
        raise ValueError(f"Baseline record {name} cannot be plotted: {problem}.") from None


def points_from_baselines(records: Iterable[Mapping[str, Any]], confidence: float = 0.95) -> list[CellPoint]:
    """Points of baseline payloads, sorted by model, pruning (method, amount) and attack (name, params,
    eps). ``confidence`` is that of the transfer-minus-base interval (``1 - advprune_alpha``)."""
    return sorted((point_from_baseline(record, confidence) for record in records), key=point_sort_key)


def points_from_document(document: Mapping[str, Any]) -> list[CellPoint]:
    """Points of a report document's cells (``reports.document.build_document``, from a run or from stored
    baselines), sorted like ``points_from_baselines``. Cells that measured nothing (errors) or lack the
    transfer-vs-base gap are left out. The gap is the document's: rounded to 4 decimals, p to 6 digits."""
    points = []
    for cell in document.get("cells", {}).values():
        metrics, gap = cell.get("metrics") or {}, (cell.get("gaps") or {}).get("transfer_vs_base")
        names = ("base_robust_accuracy", "pruned_robust_accuracy", "transfer_robust_accuracy", "sparsity")
        values = [float(v) for v in map(metrics.get, names) if isinstance(v, (int, float)) and not isinstance(v, bool)]
        if not gap or cell.get("amount") is None or len(values) != len(names):
            continue
        params = cell.get("params") or {}
        # A custom attack may take a text eps ("8/255"): not a point on an eps axis.
        eps = params.get("eps") if _is_number(params.get("eps")) else None
        points.append(
            CellPoint(
                model=str(cell["model"]),
                pruning_id=str(cell["pruning"]),
                pruning_method=str(cell.get("pruning_method") or cell["pruning"]),
                amount=float(cell["amount"]),
                attack_id=str(cell.get("attack_id") or cell["attack"]),
                attack_name=str(cell["attack"]),
                eps=None if eps is None else float(eps),
                params_key=params_key(params),
                base_robust=values[0],
                pruned_robust=values[1],
                transfer_robust=values[2],
                sparsity=values[3],
                transfer_minus_base=float(gap["difference"]),
                transfer_minus_base_p=float(gap["p_value"]),
                transfer_minus_base_ci=(float(gap["ci_low"]), float(gap["ci_high"])),
            )
        )
    return sorted(points, key=point_sort_key)


def _unique_cells(points: Iterable[CellPoint]) -> list[CellPoint]:
    ordered = sorted(points, key=point_sort_key)
    seen: set[tuple[str, str, str]] = set()
    for point in ordered:
        cell = (point.model, point.pruning_id, point.attack_id)
        if cell in seen:
            raise ValueError(f"Cell {'/'.join(cell)} appears twice in the points; plot each cell once.")
        seen.add(cell)
    return ordered


def _colors(points: Sequence[CellPoint], key: Callable[[CellPoint], tuple[Any, ...]]) -> dict[Any, str]:
    """One colour per distinct ``key`` (its last item names it), in sorted order: stable across a model's figures."""
    names = [k[-1] for k in sorted({key(point) for point in points})]
    return {name: LINE_COLORS[i % len(LINE_COLORS)] for i, name in enumerate(names)}


def _base_line(
    points: Sequence[CellPoint], x_of: Callable[[CellPoint], float]
) -> tuple[list[float], list[float], list[float]]:
    """Base robust accuracy at each x: the first point's in sorted order (every cell of one attack measures
    the same base model on the same samples). Also the xs where cells disagree (mixed runs)."""
    values: dict[float, list[float]] = {}
    for point in points:
        values.setdefault(x_of(point), []).append(point.base_robust)
    xs = sorted(values)
    return xs, [values[x][0] for x in xs], [x for x in xs if len(set(values[x])) > 1]


# --- Data of the figures (no matplotlib) --------------------------------------------------------------


def _line(
    label: str, role: str, color: str, style: str, xs: list[float], ys: list[float], **extra: Any
) -> dict[str, Any]:
    return {"label": label, "role": role, "color": color, "style": style, "x": xs, "y": ys, **extra}


def security_curve_data(points: Iterable[CellPoint]) -> list[tuple[str, dict[str, Any]]]:
    """(title, data) of each security curve: one per (model, attack name, params) with >= 2 distinct eps."""
    cells = [point for point in _unique_cells(points) if point.eps is not None]
    groups: dict[tuple[str, str, str], list[CellPoint]] = {}
    for point in cells:
        groups.setdefault((point.model, point.attack_name, point.params_key), []).append(point)
    result = []
    for (model, attack_name, key), group in sorted(groups.items()):
        eps_values = sorted({point.eps for point in group if point.eps is not None})
        if len(eps_values) < 2:
            continue
        colors = _colors([point for point in cells if point.model == model], _pruning_key)
        xs, ys, conflicts = _base_line(group, lambda p: p.eps or 0.0)
        lines = [_line("base (white-box)", "base", BASE_COLOR, "solid", xs, ys)]
        by_pruning: dict[tuple[str, float, str], dict[float, CellPoint]] = {}
        for point in group:  # sorted: the first cell at an eps wins (ids differing only in explicit defaults)
            by_pruning.setdefault(_pruning_key(point), {}).setdefault(point.eps or 0.0, point)
        for pruning, at in sorted(by_pruning.items()):
            eps_sorted = sorted(at)
            color, pruning_id = colors[pruning[-1]], pruning[-1]
            lines.append(
                _line(
                    f"{pruning_id} (white-box)",
                    "pruned",
                    color,
                    "solid",
                    eps_sorted,
                    [at[e].pruned_robust for e in eps_sorted],
                    pruning_id=pruning_id,
                )
            )
            lines.append(
                _line(
                    f"{pruning_id} (transfer from base)",
                    "transfer",
                    color,
                    "dashed",
                    eps_sorted,
                    [at[e].transfer_robust for e in eps_sorted],
                    pruning_id=pruning_id,
                )
            )
        title = f"Security curve: {model}, {attack_name}" + (f" ({key})" if key else "")
        data = {
            "model": model,
            "attack_name": attack_name,
            "params_key": key,
            "eps": eps_values,
            "lines": lines,
            "base_conflicts": conflicts,
        }
        result.append((title, data))
    return result


def sparsity_curve_data(points: Iterable[CellPoint]) -> list[tuple[str, dict[str, Any]]]:
    """(title, data) of each sparsity curve: one per (model, attack id, pruning method) with >= 2 amounts."""
    cells = _unique_cells(points)
    groups: dict[tuple[str, tuple[str, str, bool, float, str], str], list[CellPoint]] = {}
    for point in cells:
        groups.setdefault((point.model, _attack_key(point), point.pruning_method), []).append(point)
    result = []
    for (model, attack, method), group in sorted(groups.items()):
        amounts = sorted({point.amount for point in group})
        if len(amounts) < 2:
            continue
        color = _colors([point for point in cells if point.model == model], lambda p: (p.pruning_method,))[method]
        by_amount: dict[float, CellPoint] = {}
        for point in group:
            by_amount.setdefault(point.amount, point)
        ordered = [by_amount[amount] for amount in amounts]
        shown = ordered[0]  # every cell of one attack measures the same base model on the same samples
        sparsity = [point.sparsity for point in ordered]
        attack_id = attack[-1]
        common = {"amounts": amounts, "pruning_ids": [point.pruning_id for point in ordered]}
        lines = [
            _line(
                f"{method} (white-box)",
                "pruned",
                color,
                "solid",
                sparsity,
                [point.pruned_robust for point in ordered],
                **common,
            ),
            _line(
                f"{method} (transfer from base)",
                "transfer",
                color,
                "dashed",
                sparsity,
                [point.transfer_robust for point in ordered],
                **common,
            ),
        ]
        data = {
            "model": model,
            "attack_id": attack_id,
            "pruning_method": method,
            "base": {
                "label": "base (white-box)",
                "color": BASE_COLOR,
                "y": shown.base_robust,
                "pruning_id": shown.pruning_id,
            },
            "base_conflicts": [p.pruning_id for p in ordered if p.base_robust != shown.base_robust],
            "lines": lines,
        }
        result.append((f"Sparsity curve: {model}, {attack_id}, {method}", data))
    return result


def difference_heatmap_data(points: Iterable[CellPoint], alpha: float = 0.05) -> list[tuple[str, dict[str, Any]]]:
    """(title, data) of each model's heatmap of transfer minus base robust accuracy (``None`` = no cell)."""
    cells = _unique_cells(points)
    result = []
    for model in sorted({point.model for point in cells}):
        mine = [point for point in cells if point.model == model]
        rows = [key[-1] for key in sorted({_pruning_key(point) for point in mine})]
        columns = [key[-1] for key in sorted({_attack_key(point) for point in mine})]
        at = {(point.pruning_id, point.attack_id): point for point in mine}
        values = [[_get(at, row, column, "transfer_minus_base") for column in columns] for row in rows]
        p_values = [[_get(at, row, column, "transfer_minus_base_p") for column in columns] for row in rows]
        present = [abs(value) for row in values for value in row if value is not None]
        limit = max(present) if present and max(present) > 0 else 1.0
        data = {
            "model": model,
            "alpha": alpha,
            "rows": rows,
            "columns": columns,
            "values": values,
            "p_values": p_values,
            "significant": [[None if p is None else p < alpha for p in row] for row in p_values],
            "labels": [
                [_cell_label(v, p, alpha) for v, p in zip(vr, pr, strict=True)]
                for vr, pr in zip(values, p_values, strict=True)
            ],
            "limits": [-limit, limit],
        }
        result.append((f"Transfer minus base robust accuracy: {model}", data))
    return result


def _get(at: Mapping[tuple[str, str], CellPoint], row: str, column: str, name: str) -> float | None:
    point = at.get((row, column))
    return None if point is None else float(getattr(point, name))


def _cell_label(value: float | None, p_value: float | None, alpha: float) -> str:
    if value is None or p_value is None:
        return "n/a"
    return f"{value:+.1f}" + ("*" if p_value < alpha else "")


# --- Drawing ------------------------------------------------------------------------------------------


def _require_matplotlib() -> None:
    try:
        # The package first: a submodule already in sys.modules would hide its absence.
        import matplotlib
        import matplotlib.backends.backend_agg
        import matplotlib.figure  # noqa: F401
    except ImportError as error:
        raise FiguresUnavailable(str(error)) from None


def figures_available() -> bool:
    try:
        _require_matplotlib()
    except FiguresUnavailable:
        return False
    return True


def _render(
    title: str,
    kind: str,
    data: dict[str, Any],
    size: tuple[float, float],
    draw: Callable[[MplFigure, dict[str, Any]], None],
) -> Figure:
    import matplotlib
    import matplotlib.style
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure as MplFigure

    # matplotlib's defaults, not the user's matplotlibrc or style; both contexts restore rcParams on exit.
    with (
        matplotlib.style.context("default"),
        matplotlib.rc_context(
            {
                "svg.fonttype": "none",  # text stays text: searchable, selectable, smaller
                "svg.hashsalt": SVG_SALT,  # ids from content hashes, not random: reproducible bytes
                "font.size": 10.0,
                # Names and parameters are drawn as typed: '$' in a name would start mathtext, which fails
                # on an unknown macro ($\foo{$) and eats backslashes. No label of ours uses mathtext.
                "text.parse_math": False,
                "text.usetex": False,
            }
        ),
    ):
        figure = MplFigure(figsize=size, layout="constrained")
        FigureCanvasAgg(figure)
        draw(figure, data)
        buffer = io.BytesIO()
        figure.savefig(buffer, format="svg", metadata={"Date": None, "Title": title})
    text = buffer.getvalue().decode("utf-8")
    prefix = "f" + hashlib.sha256(f"{kind}\x1f{title}".encode()).hexdigest()[:8] + "-"
    return Figure(title=title, kind=kind, svg=_scope_ids(text[text.index("<svg") :].rstrip(), prefix) + "\n", data=data)


_TAG = re.compile(r"<[^>]+>")
_ID_REFERENCE = re.compile(r'(\bid="|url\(#|href="#)([^")]+)')


def _scope_ids(svg: str, prefix: str) -> str:
    """Prefix every id of the figure, and every reference to one: matplotlib numbers its groups alike in
    every figure (``figure_1``, ``axes_1``), and ids must be unique in a page that inlines several.
    Only tags are rewritten (text is escaped, so no tag is inside it; attribute values escape quotes)."""
    return _TAG.sub(lambda tag: _ID_REFERENCE.sub(lambda m: m.group(1) + prefix + m.group(2), tag.group(0)), svg)


# How much of a name or a note is drawn (the figure's data and its caption keep them whole): longer tick
# and legend labels squeeze the axes to nothing, and matplotlib then gives up on the layout.
LABEL_LENGTH = 40
TITLE_LENGTH = 100
NOTE_LINES = 3


def _short(text: str, limit: int = LABEL_LENGTH) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def _headline(figure: MplFigure, title: str, subtitle: str) -> None:
    figure.suptitle(_short(title, TITLE_LENGTH), fontsize=12)
    if subtitle:
        lines = textwrap.wrap(subtitle, TITLE_LENGTH, max_lines=NOTE_LINES, placeholder=" \u2026")
        figure.axes[0].set_title("\n".join(lines), fontsize=8)


def _plot_lines(figure: MplFigure, lines: Sequence[Mapping[str, Any]]) -> None:
    axes = figure.axes[0]
    markers = {"base": "D", "pruned": "o", "transfer": "s"}
    for line in lines:
        axes.plot(
            line["x"],
            line["y"],
            color=line["color"],
            linestyle=line["style"],
            marker=markers[line["role"]],
            markersize=5,
            linewidth=1.5,
            label=_short(line["label"]),
            clip_on=False,  # markers at 0 % and 100 % are drawn whole
        )


def _finish_curves(figure: MplFigure, xlabel: str) -> None:
    axes = figure.axes[0]
    axes.set_xlabel(xlabel)
    axes.set_ylabel(ROBUST_LABEL)
    axes.set_ylim(0.0, 100.0)
    axes.grid(True, linewidth=0.5, alpha=0.4)
    axes.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize="small", frameon=False)


def _draw_security(figure: MplFigure, data: dict[str, Any]) -> None:
    axes = figure.add_subplot()
    _plot_lines(figure, data["lines"])
    eps = data["eps"]
    axes.set_xlim(0.0, eps[-1] * 1.05 if eps[-1] > 0 else 1.0)
    if len(eps) <= 8:
        axes.set_xticks(eps, [format_value(e) for e in eps])
    _finish_curves(figure, EPS_LABEL)
    notes = [data["params_key"].replace(",", ", ")]
    if data["base_conflicts"]:
        where = ", ".join(format_value(e) for e in data["base_conflicts"])
        notes.append(f"base robust accuracy differs between cells at eps={where}: the first pruning's is shown")
    _headline(figure, f"Security curve: {data['model']}, {data['attack_name']}", "; ".join(n for n in notes if n))


def _draw_sparsity(figure: MplFigure, data: dict[str, Any]) -> None:
    axes = figure.add_subplot()
    base = data["base"]
    axes.axhline(base["y"], color=base["color"], linestyle="dotted", linewidth=1.5, label=_short(base["label"]))
    _plot_lines(figure, data["lines"])
    axes.set_xlim(0.0, 100.0)
    _finish_curves(figure, SPARSITY_LABEL)
    note = ""
    if data["base_conflicts"]:
        note = f"base robust accuracy differs between cells: {data['base']['pruning_id']}'s is shown"
    _headline(figure, f"Sparsity curve: {data['model']}, {data['attack_id']}, {data['pruning_method']}", note)


def _heatmap_size(data: Mapping[str, Any]) -> tuple[float, float]:
    """Fixed by the grid: a column or row more widens or heightens it; never shorter than the colorbar label."""
    return (max(6.4, 3.2 + 1.1 * len(data["columns"])), max(4.6, 2.4 + 0.5 * len(data["rows"])))


def _draw_heatmap(figure: MplFigure, data: dict[str, Any]) -> None:
    import matplotlib
    import numpy as np

    axes = figure.add_subplot()
    values = np.array([[math.nan if v is None else v for v in row] for row in data["values"]], dtype=float)
    low, high = data["limits"]
    cmap = matplotlib.colormaps["RdBu"].with_extremes(bad=MISSING_COLOR)
    image = axes.imshow(np.ma.masked_invalid(values), cmap=cmap, vmin=low, vmax=high, aspect="auto")
    axes.set_xticks(range(len(data["columns"])), [_short(c) for c in data["columns"]], rotation=30, ha="right")
    axes.set_yticks(range(len(data["rows"])), [_short(r) for r in data["rows"]])
    axes.set_xlabel("attack")
    axes.set_ylabel("pruning")
    for i, row in enumerate(data["labels"]):
        for j, label in enumerate(row):
            value = data["values"][i][j]
            dark = value is not None and abs(value) > 0.55 * high
            axes.text(j, i, label, ha="center", va="center", fontsize=9, color="white" if dark else "black")
    figure.colorbar(image, ax=axes).set_label(HEATMAP_LABEL, fontsize=9)
    figure.suptitle(_short(f"Transfer minus base robust accuracy: {data['model']}", TITLE_LENGTH), fontsize=12)
    figure.supxlabel(
        f"* McNemar p < {data['alpha']:g} (transfer vs base robust outcomes on the same samples)", fontsize=8
    )


# --- Figures ------------------------------------------------------------------------------------------


def security_curves(points: Iterable[CellPoint]) -> list[Figure]:
    """Robust accuracy against eps, one figure per (model, attack name, params) measured at >= 2 eps: the
    base white-box (black), and per pruning its white-box (solid) and transfer (dashed) accuracy."""
    _require_matplotlib()
    return [_render(t, SECURITY_CURVE, d, CURVE_SIZE, _draw_security) for t, d in security_curve_data(points)]


def sparsity_curves(points: Iterable[CellPoint]) -> list[Figure]:
    """Robust accuracy against measured sparsity, one figure per (model, attack, pruning method) measured at
    >= 2 amounts: white-box (solid) and transfer (dashed), the base white-box as a dotted reference."""
    _require_matplotlib()
    return [_render(t, SPARSITY_CURVE, d, CURVE_SIZE, _draw_sparsity) for t, d in sparsity_curve_data(points)]


def difference_heatmap(points: Iterable[CellPoint], alpha: float = 0.05) -> list[Figure]:
    """Transfer minus base robust accuracy per (pruning, attack), one figure per model; '*' marks p < alpha."""
    _require_matplotlib()
    return [
        _render(t, DIFFERENCE_HEATMAP, d, _heatmap_size(d), _draw_heatmap)
        for t, d in difference_heatmap_data(points, alpha)
    ]


def study_figures(points: Iterable[CellPoint], alpha: float = 0.05) -> list[Figure]:
    """Every figure the points support: security curves, sparsity curves, then the heatmaps."""
    cells = list(points)
    return [*security_curves(cells), *sparsity_curves(cells), *difference_heatmap(cells, alpha)]


def all_figures(document: Mapping[str, Any], alpha: float | None = None) -> list[Figure]:
    """Every figure of a report document (``study_figures`` of ``points_from_document``). ``alpha``: the
    heatmap's significance level; by default 1 - the confidence the document's gaps were computed at."""
    if alpha is None:
        confidences = [
            gap["confidence"]
            for cell in document.get("cells", {}).values()
            if isinstance(gap := (cell.get("gaps") or {}).get("transfer_vs_base"), Mapping) and "confidence" in gap
        ]
        alpha = round(1.0 - float(confidences[0]), 10) if confidences else 0.05
    return study_figures(points_from_document(document), alpha)
