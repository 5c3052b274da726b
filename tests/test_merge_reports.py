"""``python -m pytest_advprune merge-reports``: shards of one run only, every malformed report a clear error
naming its file and field (never a traceback), bounded messages; and ``--advprune-shard`` values that
cannot be a split of the matrix."""

from __future__ import annotations

import copy
import json
import re
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import plain_settings

from pytest_advprune import __version__
from pytest_advprune.__main__ import main
from pytest_advprune.reports.document import build_document, cell_record, load_schema
from pytest_advprune.reports.run import run_settings
from pytest_advprune.scheduling import MAX_SHARDS, ShardError, assign_models, parse_shard

GAP = {
    "difference": -2.5,
    "ci_low": -6.0,
    "ci_high": 1.0,
    "confidence": 0.95,
    "p_value": 0.3,
    "regressions": 3,
    "improvements": 1,
}


def a_cell(model: str, attack: str = "fgsm_0.1", status: str = "failed") -> dict[str, Any]:
    """A cell with every part a report can hold filled in, so that every field can be broken."""
    change = {"metric": "pruned_robust_accuracy", "baseline": 50.0, "observed": 40.0, "allowed": "2 points"}
    return cell_record(
        id=f"{model}-channel_0.5-{attack}",
        model=model,
        pruning="channel_0.5",
        attack="fgsm",
        attack_id=attack,
        pruning_method="channel",
        amount=0.5,
        params={"eps": 0.1},
        status=status,
        file=f"{model}/channel_0.5/{attack}.json",
        nodeid=f"suites/test_cells.py::test_robustness[{model}-channel_0.5-{attack}]",
        metrics={
            "base_clean_accuracy": 90.0,
            "pruned_clean_accuracy": 88.0,
            "base_robust_accuracy": 50.0,
            "pruned_robust_accuracy": 40.0,
            "transfer_robust_accuracy": 45.0,
            "sparsity": 50.0,
        },
        failing=[{**change, "difference": -10.0, **GAP}],
        violations=[
            {"invariant": "robustness gap", "metric": "pruned_robust_accuracy", "observed": 40.0, "allowed": "15"}
        ],
        flags=["fgsm_beats_pgd"],
        comparisons=[{**change, "difference": -10.0, **GAP}],
        stale_fields=["weights"],
        environment_changes=["torch_version"],
        worst={"metric": "pruned_robust_accuracy", "baseline": 50.0, "observed": 40.0, "difference": -10.0},
        gaps={"pruned_vs_base": GAP, "transfer_vs_base": GAP},
    )


def a_report(
    index: int | None = 1, count: int = 2, models: tuple[str, ...] = ("m1",), **settings: Any
) -> dict[str, Any]:
    """A shard's report as ``RunReport.document`` writes it (tests/test_reports.py checks that one)."""
    latency = [
        {
            "model": model,
            "pruning": "channel_0.5",
            "batch_size": 1,
            "median_seconds": 0.001,
            "base_median_seconds": 0.002,
            "speedup": 2.0,
        }
        for model in models
    ]
    return build_document(
        [a_cell(model) for model in models],
        source="run",
        gate="both",
        plugin_version=__version__,
        latency=latency,
        shard=None if index is None else (index, count),
        settings=run_settings(plain_settings(**settings)),
        provenance={"commit": "0" * 40, "python": "3.11", "libraries": {"torch": "2.3.0", "numpy": "1.26.4"}},
    )


def write(path: Path, document: dict[str, Any] | str) -> Path:
    path.write_text(document if isinstance(document, str) else json.dumps(document))
    return path


def merge(capsys: pytest.CaptureFixture[str], output: Path, *reports: Path) -> tuple[int, str]:
    """merge-reports' exit status and its stderr; any exception (a traceback) fails the test."""
    code = main(["merge-reports", str(output), *map(str, reports)])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return code, err


def test_the_test_report_is_a_valid_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    jsonschema.validate(a_report(), load_schema())
    one, two = (
        write(tmp_path / "shard-1.json", a_report(1)),
        write(tmp_path / "shard-2.json", a_report(2, models=("m2",))),
    )
    assert merge(capsys, tmp_path / "merged.json", one, two) == (0, "")
    merged = json.loads((tmp_path / "merged.json").read_text())
    jsonschema.validate(merged, load_schema())
    assert merged["shard"] is None and sorted(merged["cells"]) == ["m1-channel_0.5-fgsm_0.1", "m2-channel_0.5-fgsm_0.1"]
    assert merged["settings"] == a_report()["settings"] and merged["provenance"] == a_report()["provenance"]
    assert len(merged["latency"]) == 2


# --- shards of one run only ----------------------------------------------------------------------------


def _parent(document: Any, path: str) -> tuple[Any, Any]:
    """The object holding the last key of ``path`` (``cells/ID/metrics``: ``/``-separated, indexes as
    digits), and that key."""
    *parents, last = path.split("/")
    for key in parents:
        document = document[int(key) if key.isdigit() else key]
    return document, int(last) if last.isdigit() else last


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def edit(document: dict[str, Any]) -> None:
        parent, key = _parent(document, path)
        parent[key] = value

    return edit


def _pop(path: str) -> Callable[[dict[str, Any]], None]:
    def edit(document: dict[str, Any]) -> None:
        parent, key = _parent(document, path)
        del parent[key]

    return edit


@pytest.mark.parametrize(
    ("edit", "field", "first", "second"),
    [
        (_set("settings/seed", 1), "settings.seed", "0", "1"),
        (_set("settings/samples", 100), "settings.samples", "null", "100"),
        (_set("settings/tolerance", 5.0), "settings.tolerance", "2.0", "5.0"),
        (_set("settings/alpha", 0.01), "settings.alpha", "0.05", "0.01"),
        (_set("settings/device", "cuda"), "settings.device", "'cpu'", "'cuda'"),
        (_set("settings/metric_tolerances", {"sparsity": 1.0}), "settings.metric_tolerances.sparsity", "absent", "1.0"),
        (_set("gate", "tolerance"), "gate", "'both'", "'tolerance'"),
        (_set("plugin_version", "0.0.1"), "plugin_version", repr(__version__), "'0.0.1'"),
        (_set("provenance/commit", "1" * 40), "provenance.commit", "'" + "0" * 40, "'" + "1" * 40),
        (_set("provenance/libraries/torch", "2.4.0"), "provenance.libraries.torch", "'2.3.0'", "'2.4.0'"),
        (_set("provenance/python", "3.12"), "provenance.python", "'3.11'", "'3.12'"),
    ],
)
def test_shards_of_different_runs_are_refused_naming_both_files_the_field_and_both_values(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    edit: Callable[[dict[str, Any]], None],
    field: str,
    first: str,
    second: str,
) -> None:
    other = a_report(2, models=("m2",))
    edit(other)
    one, two = write(tmp_path / "shard-1.json", a_report(1)), write(tmp_path / "shard-2.json", other)
    code, err = merge(capsys, tmp_path / "merged.json", one, two)
    assert code == 2, err
    assert err.startswith(f"error: {one} and {two} come from different runs: ")
    # The field, and each value with the file it is in.
    assert re.search(rf"{re.escape(field)}\S* is {re.escape(first)}.* in {re.escape(str(one))} and ", err), err
    assert re.search(rf"{re.escape(second)}.* in {re.escape(str(two))}\. Merge the reports of one sharded run", err)
    assert not (tmp_path / "merged.json").exists()


def test_shards_with_other_settings_from_real_runs_are_refused(
    tiny_project: pytest.Pytester, capsys: pytest.CaptureFixture[str]
) -> None:
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false"]
    subprocess.run([*git, "init", "-q"], cwd=tiny_project.path, check=True)
    subprocess.run([*git, "commit", "-q", "--allow-empty", "-m", "x"], cwd=tiny_project.path, check=True)
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=tiny_project.path, capture_output=True, text=True).stdout
    tiny_project.runpytest("-p", "no:cacheprovider", "--advprune-report=a.json")
    tiny_project.runpytest("-p", "no:cacheprovider", "--advprune-report=b.json", "--advprune-seed=3")
    a, b = tiny_project.path / "a.json", tiny_project.path / "b.json"
    document = json.loads(a.read_text())
    assert document["settings"]["seed"] == 0 and document["provenance"]["commit"] == head.strip()
    assert document["provenance"]["libraries"]["torch"]
    code, err = merge(capsys, tiny_project.path / "m.md", a, b)
    assert code == 2 and f"{a} and {b} come from different runs: settings.seed is 0 in {a} and 3 in {b}." in err
    assert merge(capsys, tiny_project.path / "m.md", a) == (0, "")  # one report is one run


# --- malformed reports: an error naming the file and the field ---------------------------------------------


CELL = "cells['m1-channel_0.5-fgsm_0.1']"


def _cell(field: str, value: Any) -> Callable[[dict[str, Any]], None]:
    return _set(f"cells/m1-channel_0.5-fgsm_0.1/{field}", value)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (_set("shard/index", "x"), "shard.index must be an integer, not 'x'"),
        (_set("shard/index", True), "shard.index must be an integer, not true"),
        (_set("shard/index", 3), "shard is 3/2: a shard's index is at most its count"),
        (_pop("shard/count"), "shard has no 'count'"),
        (_set("shard/count", 10**12), "shard.count is 1000000000000: --advprune-shard allows at most 10,000 shards"),
        (_set("shard", [1, 2]), "shard must be null or an object, not [1, 2]"),
        (_pop("summary"), "the report has no 'summary'"),
        (_set("summary/cells", 7), "summary.cells is 7, but cells holds 1: was the report cut short or edited?"),
        (_pop("settings"), "the report has no 'settings'"),
        (_set("settings/seed", "0"), "settings.seed must be an integer, not '0'"),
        (_set("settings/extra", 1), "settings has a field 'extra' that reports do not have"),
        (_set("provenance/libraries/torch", 2.3), "provenance.libraries.torch must be a string, not 2.3"),
        (_set("source", "elsewhere"), "source must be one of 'run', 'baselines', not 'elsewhere'"),
        (_set("cells", []), "cells must be an object of objects, not []"),
        (_cell("status", "fine"), f"{CELL}.status must be one of 'failed', "),
        (_pop("cells/m1-channel_0.5-fgsm_0.1/status"), f"{CELL} has no 'status'"),
        (_cell("metrics", "abc"), f"{CELL}.metrics must be an object of numbers, not 'abc'"),
        (_cell("metrics", {"sparsity": "50"}), f"{CELL}.metrics.sparsity must be a number or null, not '50'"),
        (_cell("metrics", {"sparsity": True}), f"{CELL}.metrics.sparsity must be a number or null, not true"),
        (_cell("id", "other"), f"{CELL}.id is 'other': a report keys each cell by its id"),
        (_cell("params", {"eps": "0.1"}), f"{CELL}.params.eps must be a number, not '0.1'"),
        (_cell("worst", {"metric": "x"}), f"{CELL}.worst has no 'baseline'"),
        (_cell("accepted", "yes"), f"{CELL}.accepted must be true or false, not 'yes'"),
        (_cell("flags", [1]), f"{CELL}.flags[0] must be a string, not 1"),
        (_cell("gaps", {"pruned_vs_base": {}}), f"{CELL}.gaps.pruned_vs_base has no 'difference'"),
        (_cell("failing", [{"metric": "x"}]), f"{CELL}.failing[0] has no 'baseline'"),
        (_set("latency", [{"model": "m1"}]), "latency[0] has no 'pruning'"),
        (_set("latency/0", None), "latency[0] must be an object, not null"),
    ],
)
def test_a_malformed_report_is_an_error_naming_the_file_and_the_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], edit: Callable[[Any], None], message: str
) -> None:
    document = a_report()
    edit(document)
    good, bad = (
        write(tmp_path / "shard-1.json", a_report(2, models=("m2",))),
        write(tmp_path / "shard-2.json", document),
    )
    code, err = merge(capsys, tmp_path / "merged.json", good, bad)
    assert code == 2 and err.startswith(f"error: {bad}: {message}"), err
    assert len(err) < 600  # what is accepted (every status) at most; nothing sized by the file
    assert not (tmp_path / "merged.json").exists()


@pytest.mark.parametrize(("written", "shown"), [("NaN", "NaN"), ("1e999", "inf"), ("-Infinity", "-Infinity")])
def test_nan_and_infinity_are_refused_naming_the_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], written: str, shown: str
) -> None:
    raw = json.dumps(a_report(None)).replace('"base_clean_accuracy": 90.0', f'"base_clean_accuracy": {written}', 1)
    report = write(tmp_path / "r.json", raw)
    code, err = merge(capsys, tmp_path / "merged.json", report)
    message = f"{CELL}.metrics.base_clean_accuracy is {shown}: a report holds finite numbers only"
    assert code == 2 and err.startswith(f"error: {report}: {message}"), err


def test_deeply_nested_json_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    report = write(tmp_path / "deep.json", "[" * 200_000 + "]" * 200_000)
    code, err = merge(capsys, tmp_path / "merged.json", report)
    assert code == 2 and err.startswith(f"error: {report}: nested deeper than Python's JSON reader can follow")
    # Deep enough to read, in a field of free form: writing the merged report would recurse too deeply.
    raw = json.dumps(a_report(None)).replace('"eps": 0.1', '"eps": 0.1, "x": ' + "[" * 900 + "]" * 900, 1)
    report = write(tmp_path / "deep-params.json", raw)
    code, err = merge(capsys, tmp_path / "merged.json", report)
    assert code == 2 and err.startswith(f"error: {report}: {CELL}.params.x[0][0]"), err
    assert "[0] is nested deeper than the 20 levels a report can hold" in err and len(err) < 400


def test_a_cell_given_twice_is_refused_within_a_report_and_across_reports(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Within one file: a key twice (json.loads would keep the last silently), or two ids for one cell.
    cell = json.dumps(a_cell("m1"))
    raw = json.dumps(a_report(None)).replace('"cells": {', f'"cells": {{"m1-channel_0.5-fgsm_0.1": {cell}, ', 1)
    twice = write(tmp_path / "twice.json", raw)
    code, err = merge(capsys, tmp_path / "merged.json", twice)
    assert code == 2 and err.startswith(f"error: {twice}: cells holds the key 'm1-channel_0.5-fgsm_0.1' twice"), err

    document = a_report(None)
    renamed = {**a_cell("m1"), "id": "m1-renamed"}
    document["cells"]["m1-renamed"] = renamed
    document["summary"]["cells"] = 2
    same = write(tmp_path / "same.json", document)
    code, err = merge(capsys, tmp_path / "merged.json", same)
    assert code == 2, err
    assert f"{CELL} and cells['m1-renamed'] are the same cell (model, pruning, attack ('m1', 'channel_0.5'" in err

    # Across files: the same cell in two shards' reports, even with the same numbers, names both files.
    one, two = write(tmp_path / "shard-1.json", a_report(1)), write(tmp_path / "shard-2.json", a_report(2))
    code, err = merge(capsys, tmp_path / "merged.json", one, two)
    assert code == 2 and f"cell 'm1-channel_0.5-fgsm_0.1' is in {one} and in {two}: each shard runs other cells" in err
    code, err = merge(capsys, tmp_path / "merged.json", one, tmp_path / "." / "shard-1.json")
    assert code == 2 and "are one file: give each shard's report once" in err


def test_shard_counts_are_checked_before_anything_is_sized_by_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    one = write(tmp_path / "shard-1.json", a_report(1, MAX_SHARDS))
    code, err = merge(capsys, tmp_path / "merged.json", one)
    assert code == 2
    listed = ", ".join(f"{index}/{MAX_SHARDS}" for index in range(2, 12))
    assert f"the report of shard {listed} and 9,989 more is missing (1 of 10000 given)" in err
    assert len(err) < 400
    huge = write(tmp_path / "shard-2.json", a_report(1, 10**6))
    code, err = merge(capsys, tmp_path / "merged.json", huge)
    assert code == 2 and f"{huge}: shard.count is 1000000: --advprune-shard allows at most 10,000 shards" in err
    assert len(err) < 400


def every_field(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield path
    if isinstance(value, dict):
        for key, item in value.items():
            yield from every_field(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from every_field(item, (*path, index))


@pytest.mark.parametrize("suffix", [".json", ".md"])
def test_no_broken_field_ends_in_a_traceback(tmp_path: Path, capsys: pytest.CaptureFixture[str], suffix: str) -> None:
    """Every field of a report replaced by a value of every other JSON type: merged, or refused with an
    error naming the file; never an exception out of the command."""
    good = a_report(None)
    report = tmp_path / "r.json"
    refused = 0
    for path in list(every_field(good))[1:]:
        for value in ("abc", None, -1, [], {}, [1, "x"]):
            document = copy.deepcopy(good)
            target = document
            for key in path[:-1]:
                target = target[key]
            target[path[-1]] = value
            write(report, document)
            code, err = merge(capsys, tmp_path / f"merged{suffix}", report)
            assert code == 0 or (code == 2 and err.startswith(f"error: {report}: ")), (path, value, err)
            refused += code == 2
    assert refused > 100


# --- --advprune-shard --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "--advprune-shard='' is empty. Use K/N with 1 <= K <= N <= 10,000"),
        ("  ", "--advprune-shard='  ' is empty."),
        ("1/1000000000000", "--advprune-shard='1/1000000000000' asks for 1000000000000 shards; at most 10,000"),
        ("1/10001", "asks for 10001 shards; at most 10,000 are allowed"),
        ("1/" + "9" * 5000, "shards; at most 10,000 are allowed"),
        ("1/+3", "--advprune-shard='1/+3' is not a shard"),
        ("1_0/20", "is not a shard"),
    ],
)
def test_shard_values_that_are_no_split_are_refused(text: str, message: str) -> None:
    with pytest.raises(ShardError, match=re.escape(message)):
        parse_shard(text)


def test_the_largest_shard_count_parses_and_splits_without_a_list_per_shard() -> None:
    assert parse_shard(f"{MAX_SHARDS}/{MAX_SHARDS}").count == MAX_SHARDS
    assert assign_models({"a": 3, "b": 2, "c": 1}, 10**12) == {"a": 1, "b": 2, "c": 3}


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ("--advprune-shard=", "*--advprune-shard='' is empty. Use K/N with 1 <= K <= N <= 10,000*"),
        ("--advprune-shard=1/1000000000000", "*--advprune-shard='1/1000000000000' asks for 1000000000000 shards*"),
    ],
)
def test_an_empty_or_huge_shard_option_is_a_usage_error(
    tiny_project: pytest.Pytester, option: str, message: str
) -> None:
    result = tiny_project.runpytest("-p", "no:cacheprovider", option)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])
    result.stdout.no_fnmatch_line("*INTERNALERROR*")


def test_a_fifo_or_an_oversized_file_is_refused_before_it_is_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import os

    fifo = tmp_path / "shard-1.json"
    os.mkfifo(fifo)  # reading it would wait for a writer forever
    code, err = merge(capsys, tmp_path / "out.json", fifo)
    assert code == 2 and "shard-1.json: not a regular file" in err
    huge = tmp_path / "shard-2.json"
    with open(huge, "wb") as file:
        file.truncate(1 << 30)  # sparse: a gigabyte that takes no disk
    code, err = merge(capsys, tmp_path / "out.json", huge)
    assert code == 2 and "shard-2.json: 1,073,741,824 bytes, more than the" in err


def test_a_huge_float_metric_is_checked_against_the_schema_without_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """At 2**53 and above ``value - 1 == value``: a bound the schema does not have must not be tested."""
    document = a_report()
    document["cells"]["m1-channel_0.5-fgsm_0.1"]["metrics"]["sparsity"] = 1e16
    good = write(tmp_path / "shard-1.json", a_report(2, models=("m2",)))
    code, _ = merge(capsys, tmp_path / "merged.json", good, write(tmp_path / "shard-2.json", document))
    assert code in (0, 2)
