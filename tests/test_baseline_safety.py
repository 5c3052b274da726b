"""Baselines a CI gate can trust: one writer under xdist, atomic writes, unused files, CI mode, staleness."""

from __future__ import annotations

import json
import os
import re
import signal
import textwrap
from pathlib import Path

import pytest
from conftest import CELL_TEST, TINY_CONFTEST, baseline_tree
from hypothesis import assume, given, settings
from hypothesis import strategies as st

STRESS_INI = textwrap.dedent(
    """
    [pytest]
    advprune_prunings =
    {prunings}
    advprune_attacks =
    {attacks}
    advprune_finetune_epochs = 0
    advprune_max_clean_drop = 100
    """
)


@pytest.fixture
def stress_project(pytester: pytest.Pytester) -> pytest.Pytester:
    """5 prunings x 12 attacks = 60 cells of the tiny model. Half of the attacks draw random starts, so
    a cell whose numbers depended on run order or process would not reproduce."""
    prunings = [f"    l1_unstructured:{amount / 100:g}" for amount in range(10, 60, 10)]
    attacks = [f"    fgsm:{eps / 100:g}" for eps in range(1, 7)]
    attacks += [f"    pgd_linf:eps={eps / 100:g},steps=2" for eps in range(1, 7)]
    pytester.makeconftest(TINY_CONFTEST)
    pytester.makeini(STRESS_INI.format(prunings="\n".join(prunings), attacks="\n".join(attacks)))
    pytester.makepyfile(test_cells=CELL_TEST)
    return pytester


def test_parallel_update_of_60_cells_is_byte_identical_to_serial(stress_project: pytest.Pytester) -> None:
    trees = []
    for _ in range(2):  # consecutive serial updates: no churn
        result = stress_project.runpytest("--update-baselines", "-q", "-p", "no:cacheprovider")
        result.assert_outcomes(passed=60)
        trees.append(baseline_tree(stress_project.path))
    assert trees[0] == trees[1]
    assert len(trees[0]) == 60
    result.stdout.fnmatch_lines(["*60 cells: 60 unchanged*"])

    os.rename(stress_project.path / "baselines", stress_project.path / "serial")
    # More workers than this machine's two cores, so that cells of one model interleave across processes.
    result = stress_project.runpytest_subprocess("--update-baselines", "-n", "3", "-q", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=60)
    result.stdout.fnmatch_lines(["*60 cells: 60 created*"])
    assert baseline_tree(stress_project.path) == trees[0], "parallel and serial updates must write the same bytes"

    result = stress_project.runpytest_subprocess("-n", "2", "-q", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=60)
    result.stdout.fnmatch_lines(["*60 cells: 60 passed*"])


KILL_CONFTEST = """

# Kill this process (SIGKILL: no cleanup, no finally) at the moment the N-th baseline write hands its
# bytes to the file: the worst possible time for a writer that is not atomic.
if os.environ.get("ADVPRUNE_KILL_AT"):
    import signal
    import sys

    from pytest_advprune.baselines import BaselineStore

    _target = BaselineStore.write_path.__code__
    _writes = [0]

    def _kill_on_write(frame, event, arg):
        if event != "c_call" or getattr(arg, "__name__", "") != "write":
            return
        while frame is not None:
            if frame.f_code is _target:
                _writes[0] += 1
                if _writes[0] == int(os.environ["ADVPRUNE_KILL_AT"]):
                    os.kill(os.getpid(), signal.SIGKILL)
                return
            frame = frame.f_back

    sys.setprofile(_kill_on_write)
"""


def test_a_writer_killed_mid_write_leaves_every_file_old_or_new(
    tiny_project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    tiny_project.makeconftest(TINY_CONFTEST + KILL_CONFTEST)
    tiny_project.runpytest_subprocess("--update-baselines", "-p", "no:cacheprovider").assert_outcomes(passed=4)
    old = baseline_tree(tiny_project.path)

    monkeypatch.setenv("TINY_SEED", "1")  # new weights: every cell gets new content
    monkeypatch.setenv("ADVPRUNE_KILL_AT", "3")
    killed = tiny_project.runpytest_subprocess("--update-baselines", "-p", "no:cacheprovider")
    assert killed.ret == -signal.SIGKILL

    files = {p: b for p, b in baseline_tree(tiny_project.path).items() if p.endswith(".json")}
    assert set(files) == set(old)
    new_count = 0
    for name, content in files.items():
        data = json.loads(content)  # never truncated: always a whole JSON document
        if content != old[name]:
            new_count += 1
            assert (
                data["provenance"]["model"]["weights_fingerprint"]
                != json.loads(old[name])["provenance"]["model"]["weights_fingerprint"]
            )
    assert new_count == 2, "the two writes before the kill landed, the killed one left its file as it was"

    monkeypatch.delenv("ADVPRUNE_KILL_AT")
    tiny_project.runpytest_subprocess("--update-baselines", "-p", "no:cacheprovider").assert_outcomes(passed=4)
    assert [p for p in baseline_tree(tiny_project.path) if not p.endswith(".json")] == [], "no temp file is left"


def test_unused_baselines_are_listed_and_pruned_only_on_an_unfiltered_run(tiny_project: pytest.Pytester) -> None:
    tiny_project.runpytest("--update-baselines").assert_outcomes(passed=4)
    orphan = tiny_project.path / "baselines/tiny-linear/l1_unstructured_0.9/fgsm_0.1.json"
    orphan.parent.mkdir(parents=True)
    orphan.write_bytes((tiny_project.path / "baselines/tiny-linear/l1_unstructured_0.5/fgsm_0.1.json").read_bytes())
    benchmark_run = tiny_project.path / "baselines/benchmarks/Linux-CPython/0001_run.json"
    benchmark_run.parent.mkdir(parents=True)
    benchmark_run.write_text("{}")

    # Deselected cells still own their files: only the orphan is unused.
    result = tiny_project.runpytest("-k", "fgsm")
    result.assert_outcomes(passed=2, deselected=2)
    result.stdout.fnmatch_lines(
        ["*2 cells: 2 passed, 1 unused*", "unused baseline: baselines/tiny-linear/l1_unstructured_0.9/fgsm_0.1.json*"]
    )

    result = tiny_project.runpytest("--advprune-prune-baselines", "-k", "fgsm")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--advprune-prune-baselines refuses a filtered run (-k 'fgsm')*"])
    assert orphan.exists()

    result = tiny_project.runpytest("--advprune-prune-baselines")
    result.assert_outcomes(passed=4)
    result.stdout.fnmatch_lines(["*deleted unused baseline: baselines/tiny-linear/l1_unstructured_0.9/fgsm_0.1.json"])
    assert not orphan.exists()
    assert benchmark_run.exists(), "pytest-benchmark's storage is not a baseline"
    assert len(baseline_tree(tiny_project.path)) == 5


def test_pruning_never_follows_a_symlink_out_of_the_baselines_folder(tiny_project: pytest.Pytester) -> None:
    """A symlinked folder or file inside baselines/ (one line in a pull request) must not let
    --advprune-prune-baselines delete, or the run list, files outside the folder."""
    tiny_project.runpytest("--update-baselines").assert_outcomes(passed=4)
    outside = tiny_project.path / "outside"
    outside_file = outside / "l1_unstructured_0.9" / "fgsm_0.1.json"
    outside_file.parent.mkdir(parents=True)
    outside_file.write_bytes(
        (tiny_project.path / "baselines/tiny-linear/l1_unstructured_0.5/fgsm_0.1.json").read_bytes()
    )
    (tiny_project.path / "baselines/ghost").symlink_to(outside, target_is_directory=True)
    linked_file = tiny_project.path / "baselines/tiny-linear/l1_unstructured_0.5/pgd_linf_0.3.json"
    linked_file.symlink_to(outside_file)

    result = tiny_project.runpytest("--advprune-prune-baselines")
    result.assert_outcomes(passed=4)
    assert "ghost" not in result.stdout.str() and "pgd_linf_0.3" not in result.stdout.str()
    assert outside_file.exists(), "a file outside baselines/ was deleted through a symlinked folder"
    assert linked_file.is_symlink(), "a symlink is not a baseline: it is left alone"


def test_an_update_never_writes_through_a_symlink_out_of_the_baselines_folder(
    tiny_project: pytest.Pytester,
) -> None:
    outside = tiny_project.path / "outside"
    outside.mkdir()
    (tiny_project.path / "baselines").mkdir()
    (tiny_project.path / "baselines/tiny-linear").symlink_to(outside, target_is_directory=True)
    result = tiny_project.runpytest("--update-baselines")
    assert result.ret != 0
    result.stdout.fnmatch_lines(["*tiny-linear is a symbolic link to *outside*never written through a link*"])
    assert not any(outside.rglob("*")), "a baseline was written outside baselines/ through a symlinked folder"


@pytest.mark.parametrize("how", ["flag", "ini", "env"])
def test_ci_mode_refuses_writes_and_fails_on_missing(
    tiny_project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    args: list[str] = []
    if how == "flag":
        args = ["--advprune-ci"]
    elif how == "ini":
        args = ["-o", "advprune_ci=true"]
    else:
        monkeypatch.setenv("ADVPRUNE_CI", "1")
    result = tiny_project.runpytest("--update-baselines", *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--update-baselines is refused in CI mode*"])
    assert not (tiny_project.path / "baselines").exists()

    result = tiny_project.runpytest(*args)
    result.assert_outcomes(failed=4)
    result.stdout.fnmatch_lines(["*no baseline for cell*", "*create:*outside CI mode: pytest*--update-baselines*"])
    assert not (tiny_project.path / "baselines").exists()


@pytest.mark.parametrize(
    ("args", "changed"),
    [
        (["--advprune-samples=16"], "*changed:*samples: 32 -> 16*"),
        (["--advprune-seed=7"], "*changed:*seed: 0 -> 7*"),
        (["-o", "advprune_finetune_epochs=2"], "*changed:*pruning.fine_tune_epochs: 1 -> 2*"),
    ],
)
def test_changed_provenance_is_stale_not_regressed(
    tiny_project: pytest.Pytester, args: list[str], changed: str
) -> None:
    tiny_project.runpytest("--update-baselines").assert_outcomes(passed=4)
    result = tiny_project.runpytest(*args)
    result.assert_outcomes(failed=4)
    result.stdout.fnmatch_lines(["*is stale: it measured something else*", changed, "*refresh:*--update-baselines"])
    result.stdout.fnmatch_lines(["*4 cells: 4 stale*"])
    assert "out of tolerance" not in result.stdout.str()


def test_another_device_or_torch_version_is_one_warning(tiny_project: pytest.Pytester) -> None:
    tiny_project.runpytest("--update-baselines").assert_outcomes(passed=4)
    for path in (tiny_project.path / "baselines").rglob("*.json"):
        data = json.loads(path.read_text())
        data["provenance"]["device"] = "cuda"
        path.write_text(json.dumps(data))
    result = tiny_project.runpytest()
    result.assert_outcomes(passed=4)
    warnings = [line for line in result.outlines if line.startswith("warning: ")]
    assert len(warnings) == 1, warnings
    assert "4 cells compared with baselines made elsewhere (device: 'cuda' -> 'cpu')" in warnings[0]


@pytest.mark.parametrize(
    ("corrupt", "problem"),
    [
        (lambda d: "[1, 2]", "*the top level is a list, not an object*"),
        (lambda d: json.dumps({k: v for k, v in d.items() if k != "metrics"}), "*missing keys [[]'metrics'[]]*"),
        (lambda d: json.dumps({**d, "schema_version": 99}), "*schema_version 99 is not supported*"),
        (lambda d: json.dumps({**d, "metrics": {**d["metrics"], "sparsity": "high"}}), "*metric 'sparsity' is 'high'*"),
        (lambda d: '{"cell": ' + "[" * 100_000 + "]" * 100_000 + "}", "*JSON nested too deeply to read*"),
        (
            lambda d: json.dumps(d)[:-1] + ', "x": ' + "9" * 5000 + "}",
            "*unreadable JSON value (an integer of more than 4300 digits)*",
        ),
        (
            lambda d: json.dumps({**d, "provenance": {**d["provenance"], "samples": 31}}),
            "*provenance.samples is 31 but outcomes.samples is 32*",
        ),
        (
            lambda d: json.dumps({**d, "provenance": {**d["provenance"], "samples": 32.0}}),
            "*provenance.samples is 32.0 but outcomes.samples is 32*",
        ),
        # The gate reads neither the cell's ids nor these types, but the reports do: unusable everywhere.
        (lambda d: json.dumps({**d, "cell": 5}), "*'cell' is an int, not an object*"),
        (lambda d: json.dumps({**d, "cell": {**d["cell"], "model": [1]}}), "*cell.model is [[]1[]], not the cell's*"),
        (
            lambda d: json.dumps({**d, "provenance": {**d["provenance"], "attack": "x"}}),
            "*provenance.attack is 'x', not an object*",
        ),
        (
            lambda d: json.dumps(d).replace('"eps": 0.1', '"eps": NaN'),
            "*provenance.attack.eps is nan, not a finite number*",
        ),
    ],
)
def test_hand_edited_baseline_fails_its_cell_only(tiny_project: pytest.Pytester, corrupt: object, problem: str) -> None:
    tiny_project.runpytest("--update-baselines").assert_outcomes(passed=4)
    path = tiny_project.path / "baselines/tiny-linear/l1_unstructured_0.5/fgsm_0.1.json"
    path.write_text(corrupt(json.loads(path.read_text())))  # type: ignore[operator]
    before = baseline_tree(tiny_project.path)
    result = tiny_project.runpytest()
    result.assert_outcomes(passed=3, failed=1)
    result.stdout.fnmatch_lines([f"*l1_unstructured_0.5/fgsm_0.1.json' is unusable: {problem}"])
    result.stdout.fnmatch_lines(["*4 cells: 1 unusable, 3 passed*"])
    assert baseline_tree(tiny_project.path) == before


def test_pruning_refuses_an_ini_override_of_the_matrix(tiny_project: pytest.Pytester) -> None:
    tiny_project.runpytest("--update-baselines").assert_outcomes(passed=4)
    result = tiny_project.runpytest("--advprune-prune-baselines", "-o", "advprune_attacks=fgsm:0.1")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*refuses a filtered run (-o advprune_attacks)*"])
    assert len(baseline_tree(tiny_project.path)) == 4


@pytest.mark.parametrize(
    ("value", "ci_mode"),
    [
        ("1", True),
        ("y", True),
        ("Yes", True),
        ("enabled", True),
        ("on", True),
        ("0", False),
        ("no", False),
        ("", False),
    ],
)
def test_advprune_ci_reads_the_usual_yes_and_no_words(
    tiny_project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, value: str, ci_mode: bool
) -> None:
    monkeypatch.setenv("ADVPRUNE_CI", value)
    result = tiny_project.runpytest("--update-baselines", "-k", "l1_unstructured and fgsm")
    if ci_mode:
        assert result.ret == pytest.ExitCode.USAGE_ERROR
        result.stderr.fnmatch_lines(
            [f"*--update-baselines is refused in CI mode (turned on by ADVPRUNE_CI={value!r})*"]
        )
    else:
        result.assert_outcomes(passed=1, deselected=3)


def test_the_ini_key_reads_the_same_words(tiny_project: pytest.Pytester) -> None:
    from conftest import TINY_INI

    tiny_project.makeini(TINY_INI + "advprune_ci = yes\n")
    result = tiny_project.runpytest("--update-baselines")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*refused in CI mode (turned on by ini advprune_ci)*"])
    tiny_project.makeini(TINY_INI + "advprune_ci = maybe\n")
    result = tiny_project.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*ini advprune_ci='maybe' is not a yes/no value*"])


@pytest.mark.parametrize("value", ["2", "maybe", "tru"])
def test_advprune_ci_refuses_other_words(
    tiny_project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("ADVPRUNE_CI", value)
    result = tiny_project.runpytest("--advprune-ci")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*ADVPRUNE_CI={value!r} is not a yes/no value. Use one of 1, true, *"])


def test_a_report_path_that_cannot_be_written_is_a_usage_error(tiny_project: pytest.Pytester) -> None:
    (tiny_project.path / "out.md").mkdir()
    (tiny_project.path / "notes.txt").write_text("a file")
    for path, message in [
        ("out.md", "*--advprune-report='out.md' is a directory*"),
        (
            "notes.txt/report.json",
            "*--advprune-report='notes.txt/report.json' lies under *notes.txt', which is a file*",
        ),
    ]:
        result = tiny_project.runpytest(f"--advprune-report={path}")
        assert result.ret == pytest.ExitCode.USAGE_ERROR
        result.stderr.fnmatch_lines([message])
        assert "Traceback" not in result.stdout.str() + result.stderr.str()


def test_a_report_that_fails_at_the_end_keeps_the_summary(
    tiny_project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pytest_advprune.reports.run

    def full_disk(*args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(pytest_advprune.reports.run, "write_report", full_disk)
    tiny_project.runpytest("--update-baselines").assert_outcomes(passed=4)
    result = tiny_project.runpytest("--advprune-report=report.json")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["*4 cells: 4 passed*", "error: could not write the report report.json: *"])
    assert "Traceback" not in result.stdout.str()


def test_pruning_baselines_reports_what_it_could_not_delete(
    tiny_project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pathlib import Path

    tiny_project.runpytest("--update-baselines").assert_outcomes(passed=4)
    orphan = tiny_project.path / "baselines/tiny-linear/l1_unstructured_0.9/fgsm_0.1.json"
    orphan.parent.mkdir(parents=True)
    orphan.write_text("{}")
    folder = tiny_project.path / "baselines/tiny-linear/l1_unstructured_0.9/x.json"
    folder.mkdir()  # a folder with a baseline's name is not a baseline: not listed, not deleted

    real_unlink = Path.unlink

    def read_only(path: Path, missing_ok: bool = False) -> None:
        if path == orphan:
            raise PermissionError(13, "Permission denied", str(path))
        real_unlink(path, missing_ok=missing_ok)

    monkeypatch.setattr(Path, "unlink", read_only)
    result = tiny_project.runpytest("--advprune-prune-baselines")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(
        [
            "*4 cells: 4 passed, 1 unused*",
            "error: could not delete unused baseline baselines/tiny-linear/l1_unstructured_0.9/fgsm_0.1.json: "
            "Permission denied",
        ]
    )
    assert "x.json" not in result.stdout.str()
    assert orphan.exists() and folder.is_dir()
    assert "Traceback" not in result.stdout.str()


def test_a_folder_in_the_place_of_a_cells_baseline(tiny_project: pytest.Pytester) -> None:
    tiny_project.runpytest("--update-baselines").assert_outcomes(passed=4)
    path = tiny_project.path / "baselines/tiny-linear/l1_unstructured_0.5/fgsm_0.1.json"
    path.unlink()
    path.mkdir()
    checked = tiny_project.runpytest()
    checked.stdout.fnmatch_lines(["*fgsm_0.1.json' is unusable: cannot be read (Is a directory)*"])
    updated = tiny_project.runpytest("--update-baselines")
    assert updated.ret == pytest.ExitCode.TESTS_FAILED
    updated.stdout.fnmatch_lines(
        [
            "*4 cells: 1 write failed, 3 unchanged*",
            "could not write baseline baselines/tiny-linear/l1_unstructured_0.5/fgsm_0.1.json: a folder has the "
            "baseline's name; move it away",
        ]
    )


# --- baseline file names ----------------------------------------------------------------------------------

SAFE_PART = re.compile(r"[A-Za-z0-9._=-]+")
ORDINARY_ID = st.from_regex(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,149}", fullmatch=True)
ANY_ID = st.one_of(
    st.text(min_size=1, max_size=300),
    st.text(alphabet='abc_.-/\\"<>:*?|= \n\x00é', min_size=1, max_size=20),  # the characters that matter
    ORDINARY_ID,
    st.builds(lambda text: text + "=" + "0" * 16, ORDINARY_ID),  # shaped like a hashed part
)


@settings(max_examples=500, deadline=None)
@given(identifier=ANY_ID)
def test_a_file_name_part_is_safe_for_any_id(identifier: str) -> None:
    from pytest_advprune.baselines import MAX_NAME_LENGTH, file_name_part

    part = file_name_part(identifier)
    assert SAFE_PART.fullmatch(part), part  # no separator, quote, '<', space or control character
    assert not part.startswith(".") and part not in (".", "..")
    assert 0 < len(part) <= MAX_NAME_LENGTH


@settings(max_examples=500, deadline=None)
@given(identifier=ORDINARY_ID)
def test_an_ordinary_id_is_its_own_file_name(identifier: str) -> None:
    from pytest_advprune.baselines import file_name_part

    assert file_name_part(identifier) == identifier


@settings(max_examples=500, deadline=None)
@given(first=ANY_ID, second=ANY_ID)
def test_different_ids_never_share_a_file_name(first: str, second: str) -> None:
    from pytest_advprune.baselines import file_name_part

    assume(first != second)
    assert file_name_part(first) != file_name_part(second)


def test_ids_that_differ_only_in_unsafe_characters_get_different_names() -> None:
    from pytest_advprune.baselines import BaselineStore, file_name_part

    ids = ['tagged_0.1_mode"a"', "tagged_0.1_mode<a>", "tagged_0.1_mode_a_", "tagged_0.1_mode/a/", "x" * 151]
    parts = [file_name_part(identifier) for identifier in ids]
    assert parts[2] == "tagged_0.1_mode_a_"  # ordinary: kept
    assert len(set(parts)) == len(ids)
    assert parts[0].startswith("tagged_0.1_mode_a_=")  # readable, then the hash that sets it apart
    root = Path("baselines")
    for attack_id in ids:
        path = BaselineStore(root).path_of("../up", "..", attack_id)
        assert path.parent.parent.parent == root and ".." not in path.parts


def test_the_committed_baselines_keep_their_file_names() -> None:
    from pytest_advprune.baselines import BaselineStore

    repository = Path(__file__).resolve().parent.parent
    for root in (repository / "baselines", repository / "examples" / "model-repo" / "baselines"):
        store = BaselineStore(root)
        files = store.existing_files()
        assert files
        for path in files:
            cell = json.loads(path.read_text(encoding="utf-8"))["cell"]
            assert store.path_of(cell["model"], cell["pruning"], cell["attack"]) == path


TAGGED_ATTACK = """

@pytest_advprune.register_attack("tagged", primary="eps", norm="Linf", eps=0.1, mode="plain")
def tagged(model, eps, mode):
    return lambda images, labels: images.clone()  # the clean images: only the name matters here
"""


def test_a_string_parameter_cannot_put_unsafe_characters_in_a_file_name(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(TINY_CONFTEST + TAGGED_ATTACK)
    pytester.makeini(
        "[pytest]\nadvprune_prunings = l1_unstructured:0.5\n"
        + 'advprune_attacks = tagged:eps=0.1,mode="<b>/x"\nadvprune_finetune_epochs = 0\n'
        + "advprune_max_clean_drop = 100\n"
    )
    pytester.makepyfile(test_cells=CELL_TEST)
    pytester.runpytest("--update-baselines", "-p", "no:cacheprovider").assert_outcomes(passed=1)
    (name,) = baseline_tree(pytester.path)
    model, pruning, attack = name.split(os.sep)
    assert (model, pruning) == ("tiny-linear", "l1_unstructured_0.5")
    assert re.fullmatch(r"tagged_0\.1_mode__b__x_=[0-9a-f]{16}\.json", attack), attack
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["1 cell: 1 passed"])
    from pytest_advprune.__main__ import main

    # The report reads the cell's ids from the file and finds it where the gate does.
    assert main(["report", str(pytester.path / "baselines"), "-o", str(pytester.path / "stored.json")]) == 0
    stored = json.loads((pytester.path / "stored.json").read_text())
    assert list(stored["cells"]) == ['tiny-linear-l1_unstructured_0.5-tagged_0.1_mode"<b>/x"']


def test_an_update_replaces_a_fifo_in_a_baselines_place_without_waiting_on_it(tiny_project: pytest.Pytester) -> None:
    import os

    tiny_project.runpytest("--update-baselines").assert_outcomes(passed=4)
    path = tiny_project.path / "baselines/tiny-linear/l1_unstructured_0.5/fgsm_0.1.json"
    path.unlink()
    os.mkfifo(path)  # reading it for the old content would wait for a writer forever
    tiny_project.runpytest("--update-baselines").assert_outcomes(passed=4)
    assert path.is_file() and json.loads(path.read_text())["cell"]["model"] == "tiny-linear"


def test_a_model_folder_linked_to_another_models_folder_is_never_written(tiny_project: pytest.Pytester) -> None:
    """Inside baselines/ too: two models sharing one folder through a link would overwrite each other."""
    (tiny_project.path / "baselines/other").mkdir(parents=True)
    (tiny_project.path / "baselines/tiny-linear").symlink_to("other", target_is_directory=True)
    result = tiny_project.runpytest("--update-baselines")
    assert result.ret != 0
    result.stdout.fnmatch_lines(["*tiny-linear is a symbolic link to *other*never written through a link*"])
    assert not any((tiny_project.path / "baselines/other").iterdir())


def test_a_baselines_folder_that_is_a_link_loop_does_not_break_a_run_without_cells(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile("def test_plain():\n    assert True\n")
    (pytester.path / "baselines").symlink_to(pytester.path / "baselines")
    result = pytester.runpytest("-W", "default")
    result.assert_outcomes(passed=1, warnings=1)
    result.stdout.fnmatch_lines(["*the baselines folder * cannot be resolved*"])
    assert "INTERNALERROR" not in result.stdout.str() + result.stderr.str()
