"""examples/model-repo, run the way its team runs it: the committed state passes the CI gate, and the
gate reacts as documented to an equal retrain, a weaker retrain, a refresh that would hide the weaker one,
and a change of the pruning recipe.

Each test copies the example into a pytester directory and runs pytest in-process there. Retraining is
the expensive part (seconds of CPU per model), so the two retrained checkpoints are trained once per
module, in subprocesses that start in the background as soon as the module's first test runs, while the
tests that need no retrain go ahead.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import baseline_tree

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "model-repo"
RECIPE_CELLS = ["shapes-net-conv_l1_0.6-fgsm_0.0314", "shapes-net-conv_l1_0.6-pgd_linf_0.0157_alpha0.0039_steps10"]
CHANNEL_CELLS = ["shapes-net-channel_0.3-fgsm_0.0314", "shapes-net-channel_0.3-pgd_linf_0.0157_alpha0.0039_steps10"]
CELLS = sorted(RECIPE_CELLS + CHANNEL_CELLS)
# Robustness cells only: the latency benchmarks take seconds and say nothing about the gate.
NO_TIMING = ("-m", "not advprune_timing")
# shapes.train arguments of the retrains. Another seed of the same recipe: the committed model's equal
# (README.md of the example lists the margins over seeds 1-7). Training without adversarial examples: as
# accurate on clean images, far less robust, so only a robustness gate sees the difference.
RETRAINS = {"weaker": ["--seed", "0", "--adv-eps", "0"], "equal": ["--seed", "4"]}


def _copy_example(destination: Path) -> Path:
    shutil.copytree(
        EXAMPLE,
        destination,
        dirs_exist_ok=True,
        ignore=shutil.ignore_patterns("__pycache__", ".pytest_cache", ".benchmarks", "advprune-report*"),
    )
    return destination


class Retrains:
    """``shapes.train`` runs on a copy of the example, one after the other in one background process (one torch
    import; one core, so the other stays free for the pytest runs), weaker first, as the tests need them."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = _copy_example(workdir)
        calls = "; ".join(
            f"main({[*arguments, '--out', f'retrained/{name}.pt']!r})" for name, arguments in RETRAINS.items()
        )
        self.process = subprocess.Popen(
            [sys.executable, "-c", f"from shapes.train import main; {calls}"],
            cwd=self.workdir,
            env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "PYTHONUNBUFFERED": "1"},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.output: list[str] = []

    def checkpoint(self, name: str) -> Path:
        """Wait until ``shapes.train`` reports it wrote the checkpoint ``name``."""
        assert self.process.stdout is not None
        done = f"wrote retrained/{name}.pt"
        while not any(line.startswith(done) for line in self.output):
            line = self.process.stdout.readline()
            if not line:  # the process ended without writing it
                self.process.wait()
                pytest.fail(f"training {name} ({' '.join(RETRAINS[name])}) failed:\n{''.join(self.output)}")
            self.output.append(line)
        return self.workdir / "retrained" / f"{name}.pt"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.communicate()


@pytest.fixture(scope="module")
def retrains(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Retrains]:
    started = Retrains(tmp_path_factory.mktemp("trainer"))
    yield started
    started.stop()


@pytest.fixture(scope="module", autouse=True)
def _start_retraining_early(request: pytest.FixtureRequest) -> None:
    """Start the trainings with the module's first test when a selected test of this module needs them, so
    they run while the tests that need no retrain do."""
    if any(
        "retrains" in item.fixturenames
        for item in request.session.items
        if getattr(item, "module", None) is request.module
    ):
        request.getfixturevalue("retrains")


@pytest.fixture
def example(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    """A fresh copy of the example repository as the pytester directory (the cwd of every run)."""
    # The in-process runs are not under xdist even when these tests are: pytest-benchmark reads this variable.
    monkeypatch.delenv("PYTEST_XDIST_WORKER", raising=False)
    _copy_example(pytester.path)
    return pytester


def _install(example: pytest.Pytester, retrains: Retrains, name: str) -> None:
    """Replace the committed checkpoint with a retrained one, as a retraining commit does."""
    shutil.copyfile(retrains.checkpoint(name), example.path / "checkpoints" / "shapes_net.pt")


def test_the_committed_state_passes_the_ci_gate(example: pytest.Pytester) -> None:
    # Five timed rounds, not thirty: the latency table must appear; its precision does not matter here.
    result = example.runpytest(
        "--advprune-ci", "--advprune-report=advprune-report.md", "-o", "advprune_timing_rounds=5"
    )
    assert result.ret == pytest.ExitCode.OK
    result.assert_outcomes(passed=len(CELLS) + 3)  # and the latency of the base and both pruned models
    result.stdout.fnmatch_lines(["*= advprune =*", "4 cells: 4 passed", "median inference latency*"])
    report = (example.path / "advprune-report.md").read_text()
    assert all(f"| `{cell}` | passed |" in report for cell in CELLS)


def test_the_workflow_runs_the_gate_in_ci_mode_on_cpu_and_gpu() -> None:
    """The workflow file, read as text (PyYAML is no dependency): two jobs, both in CI mode, one on CUDA."""
    text = (EXAMPLE / ".github" / "workflows" / "robustness.yml").read_text()
    assert "\t" not in text  # YAML forbids tabs in indentation
    jobs = _jobs(text)
    assert set(jobs) == {"cpu", "gpu"}
    for name, body in jobs.items():
        runs = [line for line in body.splitlines() if re.match(r"\s+run: pytest ", line)]
        assert len(runs) == 1, f"job {name} should run the gate once: {runs}"
        assert "--advprune-ci" in runs[0]
    assert "--advprune-device=cuda" in _pytest_line(jobs["gpu"])
    assert "--advprune-device" not in _pytest_line(jobs["cpu"])
    assert "runs-on: ubuntu-latest" in jobs["cpu"] and "https://download.pytorch.org/whl/cpu" in jobs["cpu"]
    assert re.search(r"runs-on: \[self-hosted,[^\]]*gpu\]", jobs["gpu"])
    assert "GITHUB_STEP_SUMMARY" in jobs["cpu"] and "GITHUB_STEP_SUMMARY" in jobs["gpu"]


def _jobs(text: str) -> dict[str, str]:
    """The top-level ``jobs:`` mapping: job name -> the job's lines."""
    section = text.split("\njobs:\n", 1)[1]
    jobs: dict[str, str] = {}
    name = None
    for line in section.splitlines():
        if line and not line.startswith(" ") and not line.startswith("#"):
            break  # the next top-level key
        found = re.fullmatch(r"  ([A-Za-z0-9_-]+):\s*", line)
        if found:
            name = found.group(1)
            jobs[name] = ""
        elif name is not None:
            jobs[name] += line + "\n"
    return jobs


def _pytest_line(job: str) -> str:
    return next(line for line in job.splitlines() if re.match(r"\s+run: pytest ", line))


def test_a_pruning_recipe_change_fails_the_recipes_cells_only(example: pytest.Pytester) -> None:
    """Same weights, same recipe name and amount, other code: no provenance field changed, so the baselines
    are not stale, and the numbers that moved fail the gate. The built-in pruning's cells are untouched."""
    conftest = example.path / "conftest.py"
    source = conftest.read_text()
    assert "\nFINE_TUNE_EPOCHS = 5\n" in source
    conftest.write_text(source.replace("\nFINE_TUNE_EPOCHS = 5\n", "\nFINE_TUNE_EPOCHS = 0\n"))

    result = example.runpytest("--advprune-ci", *NO_TIMING)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.assert_outcomes(passed=2, failed=2)
    result.stdout.fnmatch_lines(["4 cells: 2 failed, 2 passed"])
    output = result.stdout.str()
    for cell in RECIPE_CELLS:
        assert f"FAILED tests/robustness/test_robustness.py::test_robustness[{cell}]" in output
        assert f"metric(s) of cell {cell} failed the gate (both)" in output
    assert "stale" not in output
    result.stdout.fnmatch_lines(["*metric:*pruned_robust_accuracy", "*baseline:*", "*observed:*", "*mcnemar:*"])


def test_a_weaker_retrain_is_regressed_and_its_refresh_refused_unless_accepted(
    example: pytest.Pytester, retrains: Retrains
) -> None:
    """A checkpoint trained without adversarial examples: regressed in CI; --update-baselines refuses to
    write it, and writes it only with --advprune-accept-regressions."""
    _install(example, retrains, "weaker")
    result = example.runpytest("--advprune-ci", *NO_TIMING)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.assert_outcomes(failed=4)
    result.stdout.fnmatch_lines(["4 cells: 4 regressed"])
    for cell in CELLS:
        result.stdout.fnmatch_lines(
            [
                f"*cell {cell} regressed: its base model's weights changed, and * metric(s) got worse*",
                "*changed:*model.weights_fingerprint*",
                "*metric:*base_robust_accuracy",
                "*mcnemar:*samples regressed*",
            ]
        )
    # As accurate on clean images: only robustness regressed.
    assert "metric:    base_clean_accuracy" not in result.stdout.str()
    assert "no regression" not in result.stdout.str()

    committed = baseline_tree(example.path)
    refused = example.runpytest("--update-baselines", *NO_TIMING)
    assert refused.ret == pytest.ExitCode.TESTS_FAILED
    refused.stdout.fnmatch_lines(["4 cells: 4 refused"])
    for cell in CELLS:
        refused.stdout.fnmatch_lines(
            [f"refused (worse than its baseline, not written): {cell}: *_robust_accuracy * -> * (-* points, p = *)"]
        )
    accept = f"--advprune-accept-regressions={','.join(CELLS)}"
    refused.stdout.fnmatch_lines([f"accept them with: pytest --update-baselines -m 'not advprune_timing' * {accept}"])
    assert baseline_tree(example.path) == committed  # byte for byte

    # Accepting writes three; the floor in pyproject.toml is a promise no acceptance lifts: the recipe's PGD
    # cell is not written and keeps failing until the model meets it again (or the team changes the line).
    floor_cell = "shapes-net-conv_l1_0.6-pgd_linf_0.0157_alpha0.0039_steps10"
    accepted = example.runpytest("--update-baselines", "--advprune-accept-regressions", *NO_TIMING)
    assert accepted.ret == pytest.ExitCode.TESTS_FAILED
    accepted.stdout.fnmatch_lines(["4 cells: 1 violated, 3 accepted"])
    for cell in CELLS:
        if cell != floor_cell:
            accepted.stdout.fnmatch_lines([f"accepted regression (written): {cell}: *_robust_accuracy *"])
    assert f"accepted regression (written): {floor_cell}" not in accepted.stdout.str()
    accepted.stdout.fnmatch_lines(
        [
            f"*cell {floor_cell} violates 1 invariant(s)*",
            "*invariant: floor",
            "*allowed:*>= 55 (ini advprune_floors:*",
            "*baseline:*not written*",
        ]
    )
    accepted.assert_outcomes(passed=3, failed=1)
    assert f"FAILED tests/robustness/test_robustness.py::test_robustness[{floor_cell}]" in accepted.stdout.str()
    rewritten = baseline_tree(example.path)
    floor_file = "shapes-net/conv_l1_0.6/pgd_linf_0.0157_alpha0.0039_steps10.json"
    assert rewritten[floor_file] == committed[floor_file]
    assert all(rewritten[path] != committed[path] for path in committed if path != floor_file)
