"""The study's figures: built from baseline payloads (synthetic and stored), they draw exactly the
baselines' numbers, parse as SVG, and come out byte-identical on every call."""

from __future__ import annotations

import json
import re
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from pytest_advprune.baselines import pack_bits
from pytest_advprune.metrics import percent
from pytest_advprune.paired import paired_change
from pytest_advprune.reports.figures import (
    DIFFERENCE_HEATMAP,
    HEATMAP_LABEL,
    SECURITY_CURVE,
    SPARSITY_CURVE,
    CellPoint,
    Figure,
    FiguresUnavailable,
    all_figures,
    difference_heatmap,
    points_from_baselines,
    points_from_document,
    security_curves,
    sparsity_curves,
    study_figures,
)
from pytest_advprune.specs import format_value

BASELINES = Path(__file__).resolve().parent.parent / "baselines"
REAL_FILES = (
    "lenet/channel_0.5/apgd_ce_0.1.json",
    "lenet/l1_filter_0.3/apgd_ce_0.1.json",
    "lenet/channel_0.5/fgsm_0.1.json",
)
SVG = "{http://www.w3.org/2000/svg}"
SAMPLES = 50


def _bits(correct: int) -> list[bool]:
    return [i < correct for i in range(SAMPLES)]


def synthetic_record(
    method: str, amount: float, attack: str, eps: float, params: dict[str, Any], counts: tuple[int, int, int]
) -> dict[str, Any]:
    """A baseline payload whose base, pruned and transfer robust outcomes have ``counts`` correct samples
    (the first ones: transfer's correct samples include base's, so their difference is all improvements)."""
    base, pruned, transfer = (_bits(count) for count in counts)
    attack_id = f"{attack}_{format_value(eps)}"
    return {
        "schema_version": 1,
        "cell": {"model": "toy", "pruning": f"{method}_{format_value(amount)}", "attack": attack_id},
        "provenance": {
            "attack": {"name": attack, "eps": eps, **params},
            "pruning": {"method": method, "amount": amount, "fine_tune": True},
            "samples": SAMPLES,
        },
        "metrics": {
            "samples": SAMPLES,
            "base_robust_accuracy": percent(sum(base), SAMPLES),
            "pruned_robust_accuracy": percent(sum(pruned), SAMPLES),
            "transfer_robust_accuracy": percent(sum(transfer), SAMPLES),
            "sparsity": round(100 * amount * 0.9, 4),
        },
        "outcomes": {
            "samples": SAMPLES,
            "base_clean": pack_bits([True] * SAMPLES),
            "pruned_clean": pack_bits([True] * SAMPLES),
            "base_adversarial": pack_bits(base),
            "pruned_adversarial": pack_bits(pruned),
            "transfer_adversarial": pack_bits(transfer),
        },
    }


def synthetic_records() -> list[dict[str, Any]]:
    """toy x {channel 0.3, channel 0.5, l1_unstructured 0.5} x {pgd_linf at 3 eps, fgsm at 1 eps}."""
    records = []
    for method, amount in (("channel", 0.5), ("l1_unstructured", 0.5), ("channel", 0.3)):  # unsorted on purpose
        for attack, eps, params in (
            ("pgd_linf", 0.2, {"steps": 20}),
            ("pgd_linf", 0.05, {"steps": 20}),
            ("pgd_linf", 0.1, {"steps": 20}),
            ("fgsm", 0.1, {}),
        ):
            base = round(SAMPLES * (1 - 4 * eps))
            pruned = base - round(10 * amount)
            transfer = min(SAMPLES, base + round(20 * amount) + (3 if method == "channel" else 0))
            records.append(synthetic_record(method, amount, attack, eps, params, (base, pruned, transfer)))
    return records


@pytest.fixture(scope="module")
def mpl() -> Any:
    return pytest.importorskip("matplotlib")


@pytest.fixture(scope="module")
def synthetic_points() -> list[CellPoint]:
    return points_from_baselines(synthetic_records())


@pytest.fixture(scope="module")
def real_records() -> list[dict[str, Any]]:
    return [json.loads((BASELINES / name).read_text(encoding="utf-8")) for name in REAL_FILES]


@pytest.fixture(scope="module")
def synthetic_figures(mpl: Any, synthetic_points: list[CellPoint]) -> list[Figure]:
    return study_figures(synthetic_points)


def texts(figure: Figure) -> list[str]:
    root = ET.fromstring(figure.svg)
    return ["".join(element.itertext()) for element in root.iter(f"{SVG}text")]


def test_points_carry_the_records_numbers_and_the_paired_difference(synthetic_points: list[CellPoint]) -> None:
    assert len(synthetic_points) == 12
    first = synthetic_points[0]
    assert (first.pruning_id, first.attack_id) == ("channel_0.3", "fgsm_0.1")  # sorted by method, amount, attack
    point = next(p for p in synthetic_points if (p.pruning_id, p.attack_id) == ("channel_0.5", "pgd_linf_0.05"))
    assert (point.model, point.pruning_method, point.amount, point.attack_name, point.eps) == (
        "toy",
        "channel",
        0.5,
        "pgd_linf",
        0.05,
    )
    assert point.params_key == "steps=20"
    assert (point.base_robust, point.pruned_robust, point.transfer_robust, point.sparsity) == (80.0, 70.0, 100.0, 45.0)
    change = paired_change(_bits(40), _bits(50))
    assert point.transfer_minus_base == change.difference == 20.0  # 10 of 50 samples flipped to correct
    assert point.transfer_minus_base_p == change.p_value == pytest.approx(2 / 2**10)
    assert point.transfer_minus_base_ci == (change.ci_low, change.ci_high)
    assert next(p for p in synthetic_points if p.attack_name == "fgsm").params_key == ""


def test_points_from_stored_baselines(real_records: list[dict[str, Any]]) -> None:
    points = points_from_baselines(real_records)
    assert [(p.pruning_id, p.attack_id) for p in points] == [
        ("channel_0.5", "apgd_ce_0.1"),
        ("channel_0.5", "fgsm_0.1"),
        ("l1_filter_0.3", "apgd_ce_0.1"),
    ]
    by_cell = {(r["cell"]["pruning"], r["cell"]["attack"]): r for r in real_records}
    for point in points:
        record = by_cell[point.pruning_id, point.attack_id]
        metrics = record["metrics"]
        assert point.base_robust == metrics["base_robust_accuracy"]
        assert point.pruned_robust == metrics["pruned_robust_accuracy"]
        assert point.transfer_robust == metrics["transfer_robust_accuracy"]
        assert point.sparsity == metrics["sparsity"]
        assert point.amount == record["provenance"]["pruning"]["amount"]
        assert point.eps == record["provenance"]["attack"]["eps"]
        # The paired difference is exact; the stored accuracies are rounded to 4 digits.
        difference = metrics["transfer_robust_accuracy"] - metrics["base_robust_accuracy"]
        assert point.transfer_minus_base == pytest.approx(difference, abs=1e-3)
        assert point.transfer_minus_base_ci[0] <= point.transfer_minus_base <= point.transfer_minus_base_ci[1]
    assert points[0].params_key == "random_start=True,restarts=4,steps=100"


def test_an_unusable_record_is_named() -> None:
    record = synthetic_records()[0]
    del record["provenance"]["pruning"]["amount"]
    with pytest.raises(ValueError, match=r"toy/channel_0.5/pgd_linf_0.2 cannot be plotted: .*amount"):
        points_from_baselines([record])


def test_a_cell_given_twice_is_refused(mpl: Any, synthetic_points: list[CellPoint]) -> None:
    with pytest.raises(ValueError, match="appears twice"):
        difference_heatmap([*synthetic_points, synthetic_points[0]])


def test_only_figures_with_enough_data_are_drawn(synthetic_figures: list[Figure]) -> None:
    assert [(f.kind, f.title) for f in synthetic_figures] == [
        (SECURITY_CURVE, "Security curve: toy, pgd_linf (steps=20)"),  # fgsm: one eps only
        (SPARSITY_CURVE, "Sparsity curve: toy, fgsm_0.1, channel"),  # l1_unstructured: one amount only
        (SPARSITY_CURVE, "Sparsity curve: toy, pgd_linf_0.05, channel"),
        (SPARSITY_CURVE, "Sparsity curve: toy, pgd_linf_0.1, channel"),
        (SPARSITY_CURVE, "Sparsity curve: toy, pgd_linf_0.2, channel"),
        (DIFFERENCE_HEATMAP, "Transfer minus base robust accuracy: toy"),
    ]


def test_security_curve_draws_the_points(synthetic_figures: list[Figure], synthetic_points: list[CellPoint]) -> None:
    data = synthetic_figures[0].data
    pgd = [p for p in synthetic_points if p.attack_name == "pgd_linf"]
    assert data["eps"] == [0.05, 0.1, 0.2]
    lines = {(line["role"], line.get("pruning_id")): line for line in data["lines"]}
    assert list(lines) == [
        ("base", None),
        ("pruned", "channel_0.3"),
        ("transfer", "channel_0.3"),
        ("pruned", "channel_0.5"),
        ("transfer", "channel_0.5"),
        ("pruned", "l1_unstructured_0.5"),
        ("transfer", "l1_unstructured_0.5"),
    ]
    assert lines["base", None]["x"] == [0.05, 0.1, 0.2]
    assert lines["base", None]["y"] == [next(p.base_robust for p in pgd if p.eps == e) for e in (0.05, 0.1, 0.2)]
    for (role, pruning_id), line in lines.items():
        if pruning_id is None:
            continue
        expected = sorted((p.eps, getattr(p, f"{role}_robust")) for p in pgd if p.pruning_id == pruning_id)
        assert list(zip(line["x"], line["y"], strict=True)) == expected
        assert line["style"] == ("solid" if role == "pruned" else "dashed")
    assert data["base_conflicts"] == []


def test_sparsity_curve_draws_the_points(synthetic_figures: list[Figure], synthetic_points: list[CellPoint]) -> None:
    data = synthetic_figures[3].data
    assert (data["attack_id"], data["pruning_method"]) == ("pgd_linf_0.1", "channel")
    cells = [p for p in synthetic_points if p.attack_id == "pgd_linf_0.1" and p.pruning_method == "channel"]
    assert data["base"]["y"] == cells[0].base_robust == cells[1].base_robust
    pruned, transfer = data["lines"]
    assert pruned["amounts"] == transfer["amounts"] == [0.3, 0.5]
    assert pruned["x"] == transfer["x"] == [p.sparsity for p in cells]
    assert pruned["y"] == [p.pruned_robust for p in cells]
    assert transfer["y"] == [p.transfer_robust for p in cells]


def test_heatmap_of_stored_baselines(mpl: Any, real_records: list[dict[str, Any]]) -> None:
    points = points_from_baselines(real_records)
    assert security_curves(points) == [] and sparsity_curves(points) == []  # one eps, one amount per method
    (figure,) = difference_heatmap(points, alpha=0.05)
    data = figure.data
    assert (data["rows"], data["columns"]) == (["channel_0.5", "l1_filter_0.3"], ["apgd_ce_0.1", "fgsm_0.1"])
    at = {(p.pruning_id, p.attack_id): p for p in points}
    for i, row in enumerate(data["rows"]):
        for j, column in enumerate(data["columns"]):
            point = at.get((row, column))
            if point is None:
                assert data["values"][i][j] is None and data["labels"][i][j] == "n/a"
                continue
            assert data["values"][i][j] == point.transfer_minus_base
            assert data["p_values"][i][j] == point.transfer_minus_base_p
            star = "*" if point.transfer_minus_base_p < 0.05 else ""
            assert data["labels"][i][j] == f"{point.transfer_minus_base:+.1f}{star}"
    limit = max(abs(p.transfer_minus_base) for p in points)
    assert data["limits"] == [-limit, limit]
    shown = texts(figure)
    assert {label for row in data["labels"] for label in row} <= set(shown)
    assert (
        HEATMAP_LABEL in shown and "* McNemar p < 0.05 (transfer vs base robust outcomes on the same samples)" in shown
    )


def test_svg_parses_and_shows_titles_and_legends(synthetic_figures: list[Figure]) -> None:
    for figure in synthetic_figures:
        assert figure.svg.startswith("<svg") and "<?xml" not in figure.svg and "DOCTYPE" not in figure.svg
        root = ET.fromstring(figure.svg)
        assert root.tag == f"{SVG}svg"
        titles = [element.text for element in root.iter("{http://purl.org/dc/elements/1.1/}title")]
        assert figure.title in titles  # in the SVG's metadata, beside matplotlib's name as its creator
        assert figure.title.split(" (")[0] in texts(figure)  # the headline; the params are drawn below it
    security = texts(synthetic_figures[0])
    assert {"base (white-box)", "channel_0.5 (white-box)", "channel_0.5 (transfer from base)"} <= set(security)
    assert "robust accuracy (%)" in security and "steps=20" in security
    assert {"base (white-box)", "channel (white-box)", "channel (transfer from base)"} <= set(
        texts(synthetic_figures[1])
    )


def test_output_is_byte_identical_and_ignores_the_users_rc_params(
    mpl: Any, synthetic_points: list[CellPoint], synthetic_figures: list[Figure]
) -> None:
    user = {"lines.linewidth": 7.0, "font.size": 22.0, "svg.fonttype": "path", "svg.hashsalt": None}
    with mpl.rc_context(user):
        again = study_figures(list(reversed(synthetic_points)))
        assert {key: mpl.rcParams[key] for key in user} == user
    assert again == synthetic_figures
    assert "backend" in mpl.rcParams


def test_figures_inlined_in_one_page_share_no_ids(synthetic_figures: list[Figure]) -> None:
    ids = [found for figure in synthetic_figures for found in re.findall(r'\bid="([^"]+)"', figure.svg)]
    assert ids and len(ids) == len(set(ids))
    for figure in synthetic_figures:  # every reference points into its own figure
        mine = set(re.findall(r'\bid="([^"]+)"', figure.svg))
        references = re.findall(r'(?:url\(#|href="#)([^")]+)', figure.svg)
        assert references and set(references) <= mine


def test_missing_matplotlib_is_explained(monkeypatch: pytest.MonkeyPatch, synthetic_points: list[CellPoint]) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    for draw in (security_curves, sparsity_curves, difference_heatmap, study_figures):
        with pytest.raises(FiguresUnavailable, match=re.escape('pip install "pytest-advprune[plots]"')) as caught:
            draw(synthetic_points)
        assert isinstance(caught.value, ImportError)


def test_a_report_document_gives_the_same_figures(mpl: Any, synthetic_points: list[CellPoint]) -> None:
    """The report's cells (``reports.document``) carry the same numbers: the same points, the same figures;
    the heatmap's alpha is 1 - the confidence of the document's gaps."""
    cells = {}
    for record in synthetic_records():
        model, pruning_id, attack_id = (record["cell"][key] for key in ("model", "pruning", "attack"))
        attack, pruning = dict(record["provenance"]["attack"]), record["provenance"]["pruning"]
        point = next(p for p in synthetic_points if (p.pruning_id, p.attack_id) == (pruning_id, attack_id))
        gap = {"difference": point.transfer_minus_base, "p_value": point.transfer_minus_base_p, "confidence": 0.9}
        gap |= {"ci_low": point.transfer_minus_base_ci[0], "ci_high": point.transfer_minus_base_ci[1]}
        cells[f"{model}-{pruning_id}-{attack_id}"] = {
            "model": model,
            "pruning": pruning_id,
            "attack": attack.pop("name"),
            "attack_id": attack_id,
            "pruning_method": pruning["method"],
            "amount": pruning["amount"],
            "params": attack,
            "metrics": record["metrics"],
            "gaps": {"transfer_vs_base": gap},
        }
    cells["toy-channel_0.5-broken"] = {"model": "toy", "pruning": "channel_0.5", "metrics": {}, "gaps": {}}  # errored
    document = {"cells": cells}
    assert points_from_document(document) == synthetic_points
    figures = all_figures(document)
    assert figures[-1].data["alpha"] == 0.1
    assert [f.svg for f in figures[:-1]] == [f.svg for f in study_figures(synthetic_points)[:-1]]


def test_no_points_no_figures(mpl: Any) -> None:
    assert study_figures([]) == []


HOSTILE_NAMES = {  # mathtext that matplotlib cannot parse, and markup an SVG or HTML reader would run
    "model": "$\\undefinedmacro{$",
    "method": "sp$a$rse\\",
    "attack": '<script>alert("x")</script>&amp;',
    "mode": "$x^{2}$ <img onerror=1>",
}


def renamed_records(names: dict[str, str]) -> list[dict[str, Any]]:
    """The synthetic matrix with its model, one pruning method, one attack and a string parameter renamed."""
    records = synthetic_records()
    for record in records:
        attack, pruning = record["provenance"]["attack"], record["provenance"]["pruning"]
        attack["name"] = names["attack"] if attack["name"] == "pgd_linf" else attack["name"]
        attack["mode"] = names["mode"]
        pruning["method"] = names["method"] if pruning["method"] == "channel" else pruning["method"]
        record["cell"]["model"] = names["model"]
        record["cell"]["pruning"] = f"{pruning['method']}_{format_value(pruning['amount'])}"
        record["cell"]["attack"] = f"{attack['name']}_{format_value(attack['eps'])}"
    return records


def hostile_records() -> list[dict[str, Any]]:
    """The synthetic matrix under names and a string parameter made of mathtext, markup and backslashes."""
    return renamed_records(HOSTILE_NAMES)


def test_names_with_mathtext_and_markup_are_drawn_literally(mpl: Any) -> None:
    figures = study_figures(points_from_baselines(hostile_records()))
    assert [figure.kind for figure in figures] == [SECURITY_CURVE, *[SPARSITY_CURVE] * 4, DIFFERENCE_HEATMAP]
    drawn = "\n".join(text for figure in figures for text in texts(figure))
    for name in HOSTILE_NAMES.values():
        assert name in drawn  # as typed: no mathtext, no lost backslash or dollar
    for figure in figures:
        root = ET.fromstring(figure.svg)  # well-formed: every name escaped in text and metadata
        assert not [element for element in root.iter() if element.tag.rpartition("}")[2] in ("script", "img")]
        titles = [element.text for element in root.iter("{http://purl.org/dc/elements/1.1/}title")]
        assert figure.title in titles


def test_long_names_are_shortened_in_the_drawing_only(mpl: Any) -> None:
    """Names of hundreds of characters would squeeze the axes to nothing (matplotlib warns and gives up
    the layout; under filterwarnings=error the report fails): the drawing shortens them, the data keeps them."""
    long = {"model": "m" * 300, "method": "p" * 300, "attack": "a" * 300, "mode": "x " * 2500}
    records = renamed_records(long)
    figures = study_figures(points_from_baselines(records))  # no layout warning
    assert [figure.kind for figure in figures] == [SECURITY_CURVE, *[SPARSITY_CURVE] * 4, DIFFERENCE_HEATMAP]
    heatmap = figures[-1]
    assert heatmap.data["model"] == long["model"] and f"{long['method']}_0.3" in heatmap.data["rows"]
    shown = texts(heatmap)
    assert any(text.startswith("ppp") and text.endswith("\u2026") for text in shown)  # a row's label, cut
    assert max(len(text) for figure in figures for text in texts(figure)) <= 100
