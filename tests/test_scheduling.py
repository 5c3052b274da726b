"""Where tests run: one xdist worker per model, CI shards that split the matrix by model, and merging
the shards' reports."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import baseline_tree
from hypothesis import given
from hypothesis import strategies as st

from pytest_advprune.scheduling import (
    Shard,
    ShardError,
    assign_models,
    distribution_for,
    model_of_nodeid,
    parse_shard,
    shard_of_other_test,
    strip_group,
)


def test_workers_without_a_distribution_mode_get_loadgroup() -> None:
    assert distribution_for(2, "no") == "loadgroup"
    assert distribution_for("auto", "no") == "loadgroup"
    assert distribution_for(2, "load") == "load"  # an explicit --dist wins
    assert distribution_for(None, "no") == "no"
    assert distribution_for(0, "no") == "no"


def test_the_model_of_a_test_id_is_the_longest_registered_name() -> None:
    models = ["res", "res-net", "lenet"]
    assert model_of_nodeid("s/t.py::test_robustness[res-net-channel_0.5-fgsm_0.1]", models) == "res-net"
    assert model_of_nodeid("s/t.py::test_robustness[res-channel_0.5-fgsm_0.1]", models) == "res"
    assert model_of_nodeid("s/t.py::test_inference_latency[lenet-base-b256]", models) == "lenet"
    assert model_of_nodeid("s/t.py::test_inference_latency[lenet-base-b256]@grp", models) == "lenet"
    assert model_of_nodeid("s/t.py::test_other", models) is None
    assert model_of_nodeid("s/t.py::test_other[lenet]", models) is None  # no "-": not a cell id


def test_strip_group_removes_only_xdists_suffix() -> None:
    assert strip_group("t.py::test[a-b]@lenet") == "t.py::test[a-b]"
    assert strip_group("t.py::test[a@b]") == "t.py::test[a@b]"
    assert strip_group("t.py::test") == "t.py::test"


@pytest.mark.parametrize("text", ["", "1", "0/2", "3/2", "a/b", "1/0", "-1/2", "1/2/3"])
def test_a_bad_shard_is_refused_with_the_fix(text: str) -> None:
    with pytest.raises(ShardError, match=r"Use K/N with 1 <= K <= N"):
        parse_shard(text)


def test_a_shard_parses() -> None:
    assert parse_shard(" 2/3 ") == Shard(2, 3)
    assert str(Shard(2, 3)) == "2/3"


@given(
    weights=st.dictionaries(st.from_regex(r"[a-z]{1,6}", fullmatch=True), st.integers(1, 50), max_size=12),
    count=st.integers(1, 6),
)
def test_every_model_goes_to_exactly_one_shard_and_loads_stay_balanced(weights: dict[str, int], count: int) -> None:
    assignment = assign_models(weights, count)
    assert set(assignment) == set(weights)
    assert all(1 <= shard <= count for shard in assignment.values())
    loads = [sum(w for m, w in weights.items() if assignment[m] == shard) for shard in range(1, count + 1)]
    if weights:
        # greedy heaviest-first: no shard exceeds the lightest by more than one model
        assert max(loads) - min(loads) <= max(weights.values())
    assert assign_models(dict(reversed(list(weights.items()))), count) == assignment  # order-independent


@given(nodeid=st.text(min_size=1, max_size=40), count=st.integers(1, 8))
def test_other_tests_go_to_one_stable_shard(nodeid: str, count: int) -> None:
    shard = shard_of_other_test(nodeid, count)
    assert 1 <= shard <= count
    assert shard == shard_of_other_test(nodeid, count)


# --- in runs ------------------------------------------------------------------------------------------

TWO_MODELS = """
@pytest_advprune.register_model("tiny-linear-b", dataset="tiny")
def tiny_linear_b():
    return tiny_linear()
"""


@pytest.fixture
def two_model_project(tiny_project: pytest.Pytester) -> pytest.Pytester:
    conftest = tiny_project.path / "conftest.py"
    conftest.write_text(conftest.read_text() + TWO_MODELS)
    tiny_project.makepyfile(test_timing="def test_latency(inference_benchmark):\n    inference_benchmark()\n")
    return tiny_project


def test_each_models_tests_run_on_one_worker(two_model_project: pytest.Pytester) -> None:
    result = two_model_project.runpytest_subprocess("-n", "2", "-v", "-p", "no:cacheprovider", "--update-baselines")
    result.assert_outcomes(passed=14)  # 2 models x (4 cells + 3 timings)
    result.stdout.fnmatch_lines(["*scheduling tests via ModelGroupScheduling*"])
    workers: dict[str, set[str]] = {}
    for worker, model in re.findall(r"\[(gw\d)\].*PASSED \S+\[(tiny-linear(?:-b)?)-", result.stdout.str()):
        workers.setdefault(model, set()).add(worker)
    assert set(workers) == {"tiny-linear", "tiny-linear-b"}
    assert all(len(ran_on) == 1 for ran_on in workers.values()), workers
    assert workers["tiny-linear"] != workers["tiny-linear-b"]  # and the two models ran side by side


def test_an_explicit_distribution_mode_is_kept(two_model_project: pytest.Pytester) -> None:
    result = two_model_project.runpytest_subprocess("-n", "2", "--dist", "load", "-p", "no:cacheprovider", "-q")
    result.stdout.no_fnmatch_line("*ModelGroupScheduling*")


def test_shards_split_by_model_and_together_make_the_whole_run(two_model_project: pytest.Pytester) -> None:
    whole = two_model_project.runpytest("-p", "no:cacheprovider", "--update-baselines")
    whole.assert_outcomes(passed=14)
    whole_tree = baseline_tree(two_model_project.path)
    shutil.rmtree(two_model_project.path / "baselines")
    models_of_shard = []
    for index in (1, 2):
        result = two_model_project.runpytest(
            "-p",
            "no:cacheprovider",
            "--update-baselines",
            f"--advprune-shard={index}/2",
            f"--advprune-report=shard-{index}.json",
            "-v",
        )
        result.assert_outcomes(passed=7, deselected=7)
        result.stdout.fnmatch_lines([f"advprune shard {index}/2: models tiny-linear* (of 2 in 2 shards)"])
        models_of_shard.append(set(re.findall(r"\[(tiny-linear(?:-b)?)-", result.stdout.str())))
    assert [len(models) for models in models_of_shard] == [1, 1]
    assert models_of_shard[0] != models_of_shard[1]
    assert baseline_tree(two_model_project.path) == whole_tree  # disjoint files, together the whole set

    merged = two_model_project.path / "merged.json"
    command = [sys.executable, "-m", "pytest_advprune", "merge-reports", str(merged), "shard-1.json", "shard-2.json"]
    done = subprocess.run(command, cwd=two_model_project.path, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert "merged 8 cells from 2 reports" in done.stdout
    cells = json.loads(merged.read_text())["cells"]
    assert sorted(cells) == sorted(
        f"{model}-{pruning}-{attack}"
        for model in ("tiny-linear", "tiny-linear-b")
        for pruning in ("l1_unstructured_0.5", "random_unstructured_0.3")
        for attack in ("fgsm_0.1", "pgd_linf_0.1_steps3")
    )
    assert all(record["status"] == "created" for record in cells.values())
    assert json.loads((two_model_project.path / "shard-1.json").read_text())["shard"] == {"index": 1, "count": 2}
    assert json.loads(merged.read_text())["shard"] is None

    # A shard's report missing (its job failed before writing it): the merge says which.
    command = [sys.executable, "-m", "pytest_advprune", "merge-reports", str(merged), "shard-1.json"]
    done = subprocess.run(command, cwd=two_model_project.path, capture_output=True, text=True, check=False)
    assert done.returncode == 2 and "the report of shard 2/2 is missing" in done.stderr


def test_a_shard_without_models_says_so(two_model_project: pytest.Pytester) -> None:
    result = two_model_project.runpytest("-p", "no:cacheprovider", "--advprune-shard=3/3", "--collect-only")
    result.stdout.fnmatch_lines(["advprune shard 3/3: no model (2 models in 3 shards): use at most 2 shards"])


def test_a_shard_cannot_prune_baselines(tiny_project: pytest.Pytester) -> None:
    result = tiny_project.runpytest("--advprune-shard=1/2", "--advprune-prune-baselines")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--advprune-prune-baselines refuses a filtered run (--advprune-shard=1/2)*"])


def test_a_bad_shard_option_stops_the_run(tiny_project: pytest.Pytester) -> None:
    result = tiny_project.runpytest("--advprune-shard=3/2")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--advprune-shard='3/2' is not a shard*"])


def test_merging_conflicting_or_foreign_reports_fails_naming_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from pytest_advprune.__main__ import main
    from pytest_advprune.reports.document import build_document, cell_record

    def report(name: str, status: str) -> Path:
        cell = cell_record(id="m-p-a", model="m", pruning="p", attack="a", attack_id="a", status=status)
        path = tmp_path / name
        path.write_text(json.dumps(build_document([cell], source="run", gate="both", plugin_version="1")))
        return path

    good, other = report("a.json", "passed"), report("b.json", "failed")
    foreign = tmp_path / "c.json"
    foreign.write_text("[1, 2]")
    assert main(["merge-reports", str(tmp_path / "out.json"), str(good), str(other)]) == 2
    assert "cell 'm-p-a' is in" in capsys.readouterr().err
    assert main(["merge-reports", str(tmp_path / "out.json"), str(good), str(foreign)]) == 2
    assert f"{foreign}: not a pytest-advprune JSON report" in capsys.readouterr().err
    assert not (tmp_path / "out.json").exists()
    assert main(["merge-reports", str(tmp_path / "out.md"), str(good)]) == 0
    assert "m-p-a" in (tmp_path / "out.md").read_text()
