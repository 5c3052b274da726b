"""baselines.py: bit packing, JSON formatting, atomic writes and the rejection of unusable files."""

from __future__ import annotations

import base64
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import pytest_advprune.attacks  # registers the built-in attacks
import pytest_advprune.pruning  # noqa: F401  (registers the built-in prunings)
from pytest_advprune.baselines import (
    SCHEMA_VERSION,
    BaselineFileError,
    BaselineStore,
    dumps,
    pack_bits,
    parse_baseline,
    payload,
    to_json_value,
    unpack_bits,
)
from pytest_advprune.cell import CellResult
from pytest_advprune.gate import stale_fields
from pytest_advprune.metrics import OUTCOME_NAMES, SizeFigures, compute_metrics
from pytest_advprune.specs import CellSpec, parse_attack, parse_pruning


def make_cell(model: str = "tiny-mlp", pruning: str = "l1_unstructured:0.5", attack: str = "fgsm:0.1") -> CellSpec:
    return CellSpec(model, parse_pruning(pruning), parse_attack(attack))


def make_result(
    cell: CellSpec | None = None, outcomes: dict[str, list[bool]] | None = None, **provenance: Any
) -> CellResult:
    cell = cell or make_cell()
    if outcomes is None:
        outcomes = {
            "base_clean": [True, True, False, True, True],
            "pruned_clean": [True, False, False, True, True],
            "base_adversarial": [False, True, False, False, True],
            "pruned_adversarial": [False, False, False, True, False],
            "transfer_adversarial": [True, False, False, False, True],
        }
    metrics = compute_metrics(outcomes, SizeFigures(650, 650, 650), SizeFigures(650, 325, 650))
    prov: dict[str, Any] = {
        "seed": 0,
        "samples": len(outcomes["base_clean"]),
        "dataset": {"name": "tiny", "fingerprint": "sha256:abc"},
        "model": {"name": cell.model, "weights_fingerprint": "sha256:def"},
        "pruning": {**cell.pruning.params(), "fine_tune_epochs": 1, "fine_tune_learning_rate": 0.001},
        "attack": {"name": cell.attack.name, **cell.attack.kwargs},
    }
    prov.update(provenance)
    return CellResult(cell, metrics, outcomes, prov)


def numpy_pack(values: list[bool]) -> str:
    return base64.b64encode(np.packbits(np.asarray(values, dtype=bool)).tobytes()).decode("ascii")


def files_under(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


# --- bit packing ----------------------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(values=st.lists(st.booleans(), max_size=200))
def test_pack_unpack_round_trip(values: list[bool]) -> None:
    text = pack_bits(values)
    assert unpack_bits(text, len(values)) == values
    assert text == numpy_pack(values)
    assert len(base64.b64decode(text)) == (len(values) + 7) // 8


def test_pack_bits_is_most_significant_bit_first() -> None:
    assert base64.b64decode(pack_bits([True])) == bytes([0b1000_0000])
    assert base64.b64decode(pack_bits([False, True, False, False, False, False, False, True, True])) == bytes(
        [0b0100_0001, 0b1000_0000]
    )
    assert pack_bits([]) == ""


@settings(max_examples=100, deadline=None)
@given(values=st.lists(st.booleans(), min_size=1, max_size=64), delta=st.sampled_from([-9, -8, 8, 9, 16]))
def test_unpack_bits_rejects_a_wrong_count(values: list[bool], delta: int) -> None:
    count = len(values) + delta
    if count < 0 or (count + 7) // 8 == (len(values) + 7) // 8:
        return
    with pytest.raises(ValueError, match="cannot hold exactly"):
        unpack_bits(pack_bits(values), count)


@pytest.mark.parametrize("text", ["!!!!", "abc", "4A=", "é"])
def test_unpack_bits_rejects_invalid_base64(text: str) -> None:
    with pytest.raises(ValueError):  # noqa: PT011  (binascii.Error and UnicodeEncodeError are ValueErrors)
        unpack_bits(text, 3)


# --- JSON formatting ------------------------------------------------------------------------------------


def test_dumps_sorts_keys_indents_two_spaces_and_ends_with_newline() -> None:
    text = dumps({"b": 1, "a": {"d": [1, 2.5], "c": None}, "C": True})
    expected = [
        "{",
        '  "C": true,',
        '  "a": {',
        '    "c": null,',
        '    "d": [',
        "      1,",
        "      2.5",
        "    ]",
        "  },",
        '  "b": 1',
        "}",
    ]
    assert text == "\n".join(expected) + "\n"


@settings(max_examples=100, deadline=None)
@given(
    data=st.dictionaries(
        st.text(max_size=8),
        st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False, allow_infinity=False)),
        max_size=8,
    )
)
def test_dumps_round_trips_and_is_canonical(data: dict[str, Any]) -> None:
    text = dumps(data)
    assert text.endswith("}\n") and not text.endswith("\n\n")
    assert json.loads(text) == data
    # Key order does not matter: the same mapping built in reverse gives the same bytes.
    assert dumps(dict(reversed(list(data.items())))) == text
    keys = json.loads(text, object_pairs_hook=lambda pairs: [key for key, _ in pairs])
    assert keys == sorted(data)
    lines = text.splitlines()
    assert all(line.startswith('  "') for line in lines[1:-1])


def test_dumps_refuses_nan() -> None:
    with pytest.raises(ValueError, match="JSON compliant"):
        dumps({"x": float("nan")})


@pytest.mark.parametrize(
    ("value", "expected", "kind"),
    [
        (np.float32(0.1), 0.1, float),
        (np.float64(2.0 / 3.0), 0.666666666667, float),
        (np.int64(7), 7, int),
        (np.int32(-3), -3, int),
        (np.bool_(True), True, bool),
        (torch.tensor(2.5), 2.5, float),
        (torch.tensor(3), 3, int),
        (torch.tensor(False), False, bool),
        (torch.tensor([0.25]), 0.25, float),
        (0.123456789, 0.123456789, float),
        (0.1234567890123456, 0.123456789012, float),
        (-0.0, 0.0, float),
        (5, 5, int),
        (True, True, bool),
        ("text", "text", str),
        (None, None, type(None)),
    ],
)
def test_to_json_value_scalars(value: Any, expected: Any, kind: type) -> None:
    converted = to_json_value(value)
    assert converted == expected
    assert type(converted) is kind


def test_to_json_value_containers() -> None:
    value = {"a": (np.int64(1), torch.tensor(0.5)), 2: [np.bool_(False), {"x": np.float32(1.5)}]}
    converted = to_json_value(value)
    assert converted == {"a": [1, 0.5], "2": [False, {"x": 1.5}]}
    assert json.loads(json.dumps(converted)) == converted


def test_to_json_value_rejects_other_types() -> None:
    with pytest.raises(TypeError, match="Path"):
        to_json_value(Path("x"))
    with pytest.raises(TypeError, match="set"):
        to_json_value({1, 2})


def test_payload_layout() -> None:
    result = make_result()
    data = payload(result)
    assert data["schema_version"] == SCHEMA_VERSION == 1
    assert data["cell"] == {"model": "tiny-mlp", "pruning": "l1_unstructured_0.5", "attack": "fgsm_0.1"}
    assert data["outcomes"]["samples"] == 5
    for name in OUTCOME_NAMES:
        assert data["outcomes"][name] == numpy_pack(result.outcomes[name])
    assert data["metrics"] == result.metrics
    assert data["provenance"]["attack"] == {"name": "fgsm", "eps": 0.1}
    json.loads(dumps(data))


# --- the store: paths, writes, loads --------------------------------------------------------------------


def test_path_layout(tmp_path: Path) -> None:
    store = BaselineStore(tmp_path)
    cell = make_cell("m", "random_unstructured:0.3", "pgd_linf:eps=0.1,steps=20")
    assert store.path_for(cell) == tmp_path / "m" / "random_unstructured_0.3" / "pgd_linf_0.1_steps20.json"


def test_load_returns_none_for_a_missing_file(tmp_path: Path) -> None:
    assert BaselineStore(tmp_path).load(make_cell()) is None
    assert BaselineStore(tmp_path / "no" / "such" / "dir").load(make_cell()) is None


def test_write_reports_created_unchanged_updated(tmp_path: Path) -> None:
    store, cell = BaselineStore(tmp_path), make_cell()
    path = store.path_for(cell)
    first = payload(make_result(cell))
    assert store.write(cell, first) == "created"
    assert path.read_text(encoding="utf-8") == dumps(first)
    mtime = path.stat().st_mtime_ns
    assert store.write(cell, first) == "unchanged"
    assert path.stat().st_mtime_ns == mtime
    # The same content with keys in another order is the same file.
    assert store.write(cell, dict(reversed(list(first.items())))) == "unchanged"
    second = payload(make_result(cell, seed=1))
    assert store.write(cell, second) == "updated"
    assert json.loads(path.read_text(encoding="utf-8"))["provenance"]["seed"] == 1
    assert files_under(tmp_path) == [str(path.relative_to(tmp_path))]


def test_write_then_load_round_trips(tmp_path: Path) -> None:
    store, result = BaselineStore(tmp_path), make_result()
    store.write(result.cell, payload(result))
    baseline = store.load(result.cell)
    assert baseline is not None
    assert baseline.path == store.path_for(result.cell)
    assert baseline.outcomes == result.outcomes
    assert baseline.metrics == result.metrics
    assert baseline.provenance == result.provenance
    assert stale_fields(result.provenance, baseline.provenance) == []


@settings(max_examples=40, deadline=None)
@given(data=st.data(), n=st.integers(min_value=0, max_value=70))
def test_outcomes_round_trip_through_the_store(data: st.DataObject, n: int) -> None:
    outcomes = {name: data.draw(st.lists(st.booleans(), min_size=n, max_size=n)) for name in OUTCOME_NAMES}
    result = make_result(outcomes=outcomes)
    with tempfile.TemporaryDirectory() as directory:
        store = BaselineStore(Path(directory))
        assert store.write(result.cell, payload(result)) == "created"
        baseline = store.load(result.cell)
    assert baseline is not None
    assert baseline.outcomes == outcomes
    assert baseline.metrics == json.loads(json.dumps(result.metrics))


def test_failed_replace_keeps_the_old_file_and_leaves_no_temp_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store, cell = BaselineStore(tmp_path), make_cell()
    store.write(cell, payload(make_result(cell)))
    path = store.path_for(cell)
    before = path.read_bytes()
    listing = files_under(tmp_path)

    def failing_replace(src: Any, dst: Any) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError, match="No space left"):
        store.write(cell, payload(make_result(cell, seed=99)))
    assert path.read_bytes() == before
    assert files_under(tmp_path) == listing


def test_failed_fsync_of_a_new_file_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store, cell = BaselineStore(tmp_path), make_cell()

    def failing_fsync(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fsync", failing_fsync)
    with pytest.raises(OSError, match="Input/output"):
        store.write(cell, payload(make_result(cell)))
    assert not store.path_for(cell).exists()
    assert files_under(tmp_path) == []
    monkeypatch.undo()
    assert store.write(cell, payload(make_result(cell))) == "created"


def test_interrupted_write_leaves_no_temp_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store, cell = BaselineStore(tmp_path), make_cell()
    store.write(cell, payload(make_result(cell)))
    before = store.path_for(cell).read_bytes()

    def interrupted(src: Any, dst: Any) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        store.write(cell, payload(make_result(cell, seed=5)))
    monkeypatch.undo()
    assert store.path_for(cell).read_bytes() == before
    assert len(files_under(tmp_path)) == 1


# --- unusable files -------------------------------------------------------------------------------------


def valid_data() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(dumps(payload(make_result())))
    return data


def _drop(key: str) -> Any:
    def edit(data: dict[str, Any]) -> Any:
        del data[key]
        return data

    return edit


def _set(section: str, key: str, value: Any) -> Any:
    def edit(data: dict[str, Any]) -> Any:
        data[section][key] = value
        return data

    return edit


def _top(key: str, value: Any) -> Any:
    def edit(data: dict[str, Any]) -> Any:
        data[key] = value
        return data

    return edit


UNUSABLE_DATA = [
    pytest.param(lambda data: [data], "the top level is a list", id="top-level-list"),
    pytest.param(lambda data: "text", "the top level is a str", id="top-level-string"),
    pytest.param(_drop("metrics"), "missing keys ['metrics']", id="missing-metrics"),
    pytest.param(_drop("schema_version"), "missing keys ['schema_version']", id="missing-schema"),
    pytest.param(_top("schema_version", 2), "schema_version 2 is not supported", id="schema-2"),
    pytest.param(_top("schema_version", "1"), "schema_version '1' is not supported", id="schema-text"),
    pytest.param(_top("provenance", []), "'provenance' is a list, not an object", id="provenance-list"),
    pytest.param(_top("outcomes", "x"), "'outcomes' is a str, not an object", id="outcomes-string"),
    pytest.param(_set("metrics", "sparsity", "50%"), "metric 'sparsity' is '50%', not a number", id="metric-string"),
    pytest.param(_set("metrics", "samples", True), "metric 'samples' is True, not a number", id="metric-bool"),
    pytest.param(_set("metrics", "base_macs", [1]), "metric 'base_macs' is [1], not a number", id="metric-list"),
    pytest.param(_set("outcomes", "samples", -1), "outcomes.samples is -1, not a count", id="samples-negative"),
    pytest.param(_set("outcomes", "samples", 2.5), "outcomes.samples is 2.5, not a count", id="samples-float"),
    pytest.param(
        _set("outcomes", "samples", 50), "provenance.samples is 5 but outcomes.samples is 50", id="samples-wrong"
    ),
    pytest.param(_set("outcomes", "pruned_clean", "!!!!"), "outcomes.pruned_clean is not valid packed bits", id="b64"),
    pytest.param(
        _set("outcomes", "transfer_adversarial", pack_bits([True] * 40)),
        "outcomes.transfer_adversarial is not valid packed bits (5 bytes cannot hold exactly 5 outcomes)",
        id="wrong-length",
    ),
    pytest.param(_set("outcomes", "base_adversarial", 7), "outcomes.base_adversarial is missing", id="bits-int"),
]


@pytest.mark.parametrize(("edit", "problem"), UNUSABLE_DATA)
def test_unusable_content_is_rejected_naming_file_and_problem(tmp_path: Path, edit: Any, problem: str) -> None:
    store, cell = BaselineStore(tmp_path), make_cell()
    path = store.path_for(cell)
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(edit(valid_data())), encoding="utf-8")
    with pytest.raises(BaselineFileError) as info:
        store.load(cell)
    message = str(info.value)
    assert str(path) in message
    assert problem in message
    assert "--update-baselines" in message
    assert info.value.path == path
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        pytest.param("", "invalid JSON at line 1, column 1", id="empty"),
        pytest.param("not json", "invalid JSON at line 1, column 1", id="garbage"),
        pytest.param('{"schema_version": 1,\n  "cell": ', "invalid JSON at line 2", id="truncated-small"),
        pytest.param("{'a': 1}", "invalid JSON", id="python-dict"),
    ],
)
def test_invalid_json_is_rejected_with_its_position(tmp_path: Path, text: str, problem: str) -> None:
    store, cell = BaselineStore(tmp_path), make_cell()
    path = store.path_for(cell)
    path.parent.mkdir(parents=True)
    path.write_text(text, encoding="utf-8")
    with pytest.raises(BaselineFileError) as info:
        store.load(cell)
    assert str(path) in str(info.value)
    assert problem in str(info.value)


@pytest.mark.parametrize("keep", [0.1, 0.5, 0.9, -2], ids=["tenth", "half", "most", "all-but-last-brace"])
def test_truncated_file_is_rejected(tmp_path: Path, keep: float) -> None:
    store, result = BaselineStore(tmp_path), make_result()
    store.write(result.cell, payload(result))
    path = store.path_for(result.cell)
    text = path.read_text(encoding="utf-8")
    end = int(len(text) * keep) if keep > 0 else len(text) + int(keep)
    assert 0 < end < len(text) - 1
    path.write_text(text[:end], encoding="utf-8")
    with pytest.raises(BaselineFileError, match="invalid JSON") as info:
        store.load(result.cell)
    assert str(path) in str(info.value)


def test_directory_in_place_of_file_is_rejected(tmp_path: Path) -> None:
    store, cell = BaselineStore(tmp_path), make_cell()
    store.path_for(cell).mkdir(parents=True)
    with pytest.raises(BaselineFileError, match="cannot be read") as info:
        store.load(cell)
    assert str(store.path_for(cell)) in str(info.value)


def test_parse_baseline_accepts_valid_data_with_null_metrics(tmp_path: Path) -> None:
    data = valid_data()
    data["metrics"]["base_attack_success_rate"] = None
    baseline = parse_baseline(tmp_path / "x.json", data)
    assert baseline.metrics["base_attack_success_rate"] is None
    assert baseline.outcomes["base_clean"] == [True, True, False, True, True]


def test_non_utf8_file_is_rejected_as_unusable(tmp_path: Path) -> None:
    store, cell = BaselineStore(tmp_path), make_cell()
    path = store.path_for(cell)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"\xff\xfe{\x00}\x00")  # e.g. saved as UTF-16 by an editor
    with pytest.raises(BaselineFileError, match="unusable"):
        store.load(cell)


def test_update_replaces_a_non_utf8_file(tmp_path: Path) -> None:
    store, result = BaselineStore(tmp_path), make_result()
    path = store.path_for(result.cell)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"\x89PNG\r\n\x1a\n")
    assert store.write(result.cell, payload(result)) == "updated"
    assert store.load(result.cell) is not None


def test_provenance_with_precise_parameters_is_not_stale_after_update(tmp_path: Path) -> None:
    cell = make_cell(attack="pgd_linf:eps=0.031372549,alpha=0.0078431373")  # 8/255 and 2/255
    result = make_result(cell)
    store = BaselineStore(tmp_path)
    store.write(cell, payload(result))
    baseline = store.load(cell)
    assert baseline is not None
    assert stale_fields(result.provenance, baseline.provenance) == []


# --- concurrent writers ---------------------------------------------------------------------------------


def _write_many(root: str, seed: int, rounds: int) -> list[str]:
    """One update run's writer: rewrite the same cell ``rounds`` times with alternating contents."""
    store, cell = BaselineStore(Path(root)), make_cell()
    failures = []
    for i in range(rounds):
        try:
            store.write(cell, payload(make_result(cell, seed=seed + i % 2)))
        except OSError as error:
            failures.append(repr(error))
    return failures


def test_two_writers_on_one_folder_never_fail_each_other(tmp_path: Path) -> None:
    """Two update runs on the same baselines folder: each one's clean-up of stray temp files must leave the
    other's in-flight temp file alone, and every file read afterwards is whole."""
    import multiprocessing

    context = multiprocessing.get_context("spawn")  # fork would copy torch's threads into the children
    with context.Pool(2) as pool:
        results = pool.starmap(_write_many, [(str(tmp_path), 0, 300), (str(tmp_path), 10, 300)])
    assert results == [[], []]
    store, cell = BaselineStore(tmp_path), make_cell()
    assert store.load(cell) is not None
    assert files_under(tmp_path) == ["tiny-mlp/l1_unstructured_0.5/fgsm_0.1.json"]


def test_stray_temp_files_are_removed_but_a_live_writers_is_kept(tmp_path: Path) -> None:
    import subprocess
    import sys

    store, cell = BaselineStore(tmp_path), make_cell()
    data = payload(make_result(cell))
    store.write(cell, data)
    folder = store.path_for(cell).parent
    killed_writer = folder / ".fgsm_0.1.json.abc123.tmp"  # an older naming, or a writer killed mid-write
    killed_writer.write_text("{")
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        live_writer = folder / f".fgsm_0.1.json.{live.pid}.xyz.tmp"
        live_writer.write_text("{")
        assert store.write(cell, data) == "unchanged"  # an unchanged baseline still gets its folder cleaned
        assert not killed_writer.exists()
        assert live_writer.exists(), "the temp file of a writer that is still running must be left alone"
    finally:
        live.kill()
        live.wait()
    store.write(cell, data)
    assert not live_writer.exists(), "once its writer is gone, its temp file is stray"
    old = folder / f".fgsm_0.1.json.{os.getpid() + 1}.old.tmp"
    old.write_text("{")
    os.utime(old, (0, 0))  # far older than any write takes, whoever wrote it
    store.write(cell, data)
    assert not old.exists()


@pytest.mark.parametrize("kind", ["fifo", "link", "huge"])
def test_a_baseline_that_is_not_a_regular_file_is_unusable_without_being_read(tmp_path: Path, kind: str) -> None:
    """A FIFO would hang the run, a link to /dev/zero fill memory, a link elsewhere read another file."""
    import os

    store, cell = BaselineStore(tmp_path), make_cell()
    path = store.path_for(cell)
    path.parent.mkdir(parents=True)
    if kind == "fifo":
        os.mkfifo(path)
        match = "a FIFO or device"
    elif kind == "link":
        path.symlink_to("/dev/zero")
        match = "a symbolic link"
    else:
        with open(path, "wb") as file:
            file.truncate(1 << 30)  # sparse
        match = "larger than a baseline can be"
    with pytest.raises(BaselineFileError, match=match):
        store.load(cell)
