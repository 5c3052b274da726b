"""The plugin's behaviour, end to end, in pytester projects."""

from __future__ import annotations

import json
import os
import textwrap
from pathlib import Path

import pytest
from conftest import baseline_tree

CELLS = [
    "tiny-linear-l1_unstructured_0.5-fgsm_0.1",
    "tiny-linear-l1_unstructured_0.5-pgd_linf_0.1_steps3",
    "tiny-linear-random_unstructured_0.3-fgsm_0.1",
    "tiny-linear-random_unstructured_0.3-pgd_linf_0.1_steps3",
]


def test_cells_are_parametrized_with_readable_ids(tiny_project: pytest.Pytester) -> None:
    result = tiny_project.runpytest("--collect-only", "-q")
    result.stdout.fnmatch_lines([f"test_cells.py::test_robustness[[]{cell}[]]" for cell in CELLS])
    result.stdout.fnmatch_lines(["4 tests collected*"])


def test_baseline_lifecycle(tiny_project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    # Missing: every cell fails and says the exact command that creates its baseline.
    result = tiny_project.runpytest()
    result.assert_outcomes(failed=4)
    result.stdout.fnmatch_lines(
        [
            "*no baseline for cell tiny-linear-l1_unstructured_0.5-fgsm_0.1*",
            "*file:*baselines/tiny-linear/l1_unstructured_0.5/fgsm_0.1.json",
            "*create:*pytest 'test_cells.py::test_robustness[[]tiny-linear-l1_unstructured_0.5-fgsm_0.1[]]'"
            " --update-baselines",
        ]
    )
    assert not (tiny_project.path / "baselines").exists(), "nothing may be written without --update-baselines"

    # Update: the files appear, the tests pass, the summary counts them.
    result = tiny_project.runpytest("--update-baselines")
    result.assert_outcomes(passed=4)
    result.stdout.fnmatch_lines(["*4 cells: 4 created*"])
    first = baseline_tree(tiny_project.path)
    assert sorted(first) == sorted(
        f"tiny-linear/{pruning}/{attack}.json"
        for pruning in ("l1_unstructured_0.5", "random_unstructured_0.3")
        for attack in ("fgsm_0.1", "pgd_linf_0.1_steps3")
    )

    # Unchanged: pass, and the same numbers again (a second update rewrites nothing).
    tiny_project.runpytest().assert_outcomes(passed=4)
    result = tiny_project.runpytest("--update-baselines")
    result.stdout.fnmatch_lines(["*4 cells: 4 unchanged*"])
    assert baseline_tree(tiny_project.path) == first

    # Retrained weights of equal quality: every cell fails as stale, names the field that changed, and says
    # that nothing got worse against the previous weights.
    monkeypatch.setenv("TINY_SEED", "1")
    result = tiny_project.runpytest()
    result.assert_outcomes(failed=4)
    result.stdout.fnmatch_lines(
        [
            "*baseline of cell tiny-linear-*is stale: its base model's weights changed*",
            "*changed:*model.weights_fingerprint*",
            "*note:*no regression against the previous weights*",
            "*refresh:*--update-baselines",
        ]
    )
    result.stdout.fnmatch_lines(["*4 cells: 4 stale*"])

    # Accept: update, then pass.
    tiny_project.runpytest("--update-baselines").stdout.fnmatch_lines(["*4 cells: 4 updated*"])
    tiny_project.runpytest().assert_outcomes(passed=4)


def shift_baseline(path: Path, metric: str, outcome: str, flips: int) -> tuple[float, float]:
    """Make the stored baseline ``flips`` samples better (> 0) or worse (< 0) on ``metric``, by flipping
    per-sample outcomes and recomputing the metric from them, as a real earlier run would have stored it.
    Returns (stored, observed)."""
    from pytest_advprune.baselines import pack_bits, unpack_bits

    data = json.loads(path.read_text())
    samples = data["outcomes"]["samples"]
    bits = unpack_bits(data["outcomes"][outcome], samples)
    wanted = flips > 0  # make wrong samples right, or right ones wrong
    indices = [i for i, correct in enumerate(bits) if correct != wanted][: abs(flips)]
    assert len(indices) == abs(flips), "not enough samples to flip"
    for i in indices:
        bits[i] = wanted
    observed = data["metrics"][metric]
    data["outcomes"][outcome] = pack_bits(bits)
    data["metrics"][metric] = round(100.0 * sum(bits) / samples, 4)
    path.write_text(json.dumps(data))
    return data["metrics"][metric], observed


def test_metric_beyond_tolerance_fails_with_one_field_per_line(tiny_project: pytest.Pytester) -> None:
    tiny_project.runpytest("--update-baselines").assert_outcomes(passed=4)
    path = tiny_project.path / "baselines/tiny-linear/l1_unstructured_0.5/fgsm_0.1.json"
    # The baseline was 2 of 32 samples (6.25 points) better: beyond the 2-point tolerance, but two flips
    # are not significant (McNemar p = 0.5).
    stored, observed = shift_baseline(path, "transfer_robust_accuracy", "transfer_adversarial", +2)

    result = tiny_project.runpytest("--advprune-gate=tolerance")
    result.assert_outcomes(passed=3, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*1 metric(s) of cell tiny-linear-l1_unstructured_0.5-fgsm_0.1 failed the gate (tolerance).",
            "*cell:*tiny-linear-l1_unstructured_0.5-fgsm_0.1",
            "*file:*baselines/tiny-linear/l1_unstructured_0.5/fgsm_0.1.json",
            "*metric:*transfer_robust_accuracy",
            f"*baseline:*{stored}",
            f"*observed:*{observed}",
            "*allowed:*±2 points",
            "*change:*-6.25 points (95% CI*",
            "*mcnemar:*2 samples regressed, 0 improved, p = 0.5",
            "*accept it with: pytest *--update-baselines --advprune-accept-regressions",
        ]
    )
    result.stdout.fnmatch_lines(["*4 cells: 1 failed, 3 passed*"])
    # The default gate also asks for significance: two flipped samples are not, so the cell passes.
    tiny_project.runpytest().assert_outcomes(passed=4)


def test_improvements_never_fail(tiny_project: pytest.Pytester) -> None:
    tiny_project.runpytest("--update-baselines").assert_outcomes(passed=4)
    path = tiny_project.path / "baselines/tiny-linear/l1_unstructured_0.5/fgsm_0.1.json"
    shift_baseline(path, "pruned_clean_accuracy", "pruned_clean", -3)
    result = tiny_project.runpytest("--advprune-gate=tolerance")
    result.assert_outcomes(passed=4)
    result.stdout.fnmatch_lines(["*4 cells: 1 improved, 3 passed*", "*baselines are out of date*"])


def test_a_metric_edited_apart_from_its_outcomes_is_unusable(tiny_project: pytest.Pytester) -> None:
    tiny_project.runpytest("--update-baselines").assert_outcomes(passed=4)
    path = tiny_project.path / "baselines/tiny-linear/l1_unstructured_0.5/fgsm_0.1.json"
    data = json.loads(path.read_text())
    data["metrics"]["transfer_robust_accuracy"] = 99.0
    path.write_text(json.dumps(data))
    result = tiny_project.runpytest()
    result.assert_outcomes(passed=3, failed=1)
    result.stdout.fnmatch_lines(
        ["*unusable: metric 'transfer_robust_accuracy' is 99.0 but its per-sample outcomes give*(edited by hand?)*"]
    )


WEAKENING_CONFTEST = """

@pytest_advprune.register_pruning("noisy", fine_tune=False)
def noisy(model, amount, context):
    # The same method and amount either way: only the environment variable makes it weaker, the way a
    # changed pruning implementation would, so the provenance stays the same.
    if os.environ.get("WEAKEN"):
        with torch.no_grad():
            for parameter in model.parameters():
                parameter.add_(amount * 3 * torch.randn_like(parameter))
    return model
"""


def test_weakened_model_fails_with_a_significant_mcnemar_result(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    from conftest import CELL_TEST, TINY_CONFTEST

    pytester.makeconftest(TINY_CONFTEST + WEAKENING_CONFTEST)
    pytester.makeini("[pytest]\nadvprune_prunings = noisy:0.5\nadvprune_attacks = fgsm:0.1\n")
    pytester.makepyfile(test_cells=CELL_TEST)
    pytester.runpytest("--update-baselines").assert_outcomes(passed=1)
    for _ in range(2):  # re-running an unchanged model never fails
        pytester.runpytest().assert_outcomes(passed=1)

    monkeypatch.setenv("WEAKEN", "1")
    result = pytester.runpytest()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*metric(s) of cell tiny-linear-noisy_0.5-fgsm_0.1 failed the gate (both)*"])
    p_values = [float(line.rsplit("p = ", 1)[1]) for line in result.outlines if "mcnemar:" in line]
    assert p_values, result.stdout.str()
    assert min(p_values) < 0.05


def test_filtered_update_writes_only_selected_cells(tiny_project: pytest.Pytester) -> None:
    result = tiny_project.runpytest("--update-baselines", "--advprune-attacks=fgsm*", "--advprune-prunings=l1_*")
    result.assert_outcomes(passed=1, deselected=3)
    assert list(baseline_tree(tiny_project.path)) == ["tiny-linear/l1_unstructured_0.5/fgsm_0.1.json"]

    result = tiny_project.runpytest("--update-baselines", "-k", "random_unstructured and pgd")
    result.assert_outcomes(passed=1, deselected=3)
    assert len(baseline_tree(tiny_project.path)) == 2


def test_unusable_baseline_fails_only_its_cell(tiny_project: pytest.Pytester) -> None:
    tiny_project.runpytest("--update-baselines").assert_outcomes(passed=4)
    broken = tiny_project.path / "baselines/tiny-linear/random_unstructured_0.3/fgsm_0.1.json"
    broken.write_text(broken.read_text()[:100])
    before = baseline_tree(tiny_project.path)

    result = tiny_project.runpytest()
    result.assert_outcomes(passed=3, failed=1)
    result.stdout.fnmatch_lines(["*random_unstructured_0.3/fgsm_0.1.json* is unusable: invalid JSON*"])
    assert baseline_tree(tiny_project.path) == before, "a check run must not touch any baseline"


def test_clean_accuracy_gate(tiny_project: pytest.Pytester) -> None:
    tiny_project.makeini(TINY_INI_STRICT := tiny_ini_with("advprune_max_clean_drop = 0"))
    assert "advprune_max_clean_drop = 0" in TINY_INI_STRICT
    result = tiny_project.runpytest("-k", "random_unstructured and fgsm", "--advprune-report=report.json")
    outcomes = result.parseoutcomes()
    drop_lines = [line for line in result.outlines if "invariant: clean-accuracy drop" in line]
    # Whether the random tiny model loses accuracy is up to the data; the gate must agree with the metric.
    record = json.loads((tiny_project.path / "report.json").read_text())["cells"][
        "tiny-linear-random_unstructured_0.3-fgsm_0.1"
    ]
    if record["metrics"]["clean_accuracy_drop"] > 0:
        assert outcomes.get("failed") == 1 and drop_lines and record["status"] == "violated"
    else:
        assert outcomes.get("failed") == 1 and not drop_lines and record["status"] == "missing"


def tiny_ini_with(line: str) -> str:
    from conftest import TINY_INI

    return TINY_INI.replace("advprune_max_clean_drop = 100", line)


@pytest.mark.parametrize(
    ("ini_line", "message"),
    [
        ("advprune_attacks = pgdd:0.1", "*Unknown attack 'pgdd'. Registered: *fgsm*pgd_linf*@register_attack*"),
        ("advprune_prunings = l1_unstructured:1.5", "*amount 1.5 is outside [[]0, 1)*"),
        ("advprune_attacks = fgsm:eps=-0.1", "*eps=-0.1 is negative; eps must be >= 0*"),
        ("advprune_models = nosuchnet", "*Unknown model 'nosuchnet'. Registered: *tiny-linear*"),
    ],
)
def test_bad_matrix_entries_end_in_a_clear_message(tiny_project: pytest.Pytester, ini_line: str, message: str) -> None:
    key = ini_line.split("=")[0].strip()
    ini = "\n".join(line for line in tiny_ini_lines() if not line.startswith(f"{key}") and not line.startswith("    "))
    tiny_project.makeini(ini + "\n" + ini_line + "\n")
    result = tiny_project.runpytest()
    assert result.ret != 0
    result.stdout.fnmatch_lines([message])
    assert "Traceback" not in result.stdout.str()


def tiny_ini_lines() -> list[str]:
    from conftest import TINY_INI

    return TINY_INI.strip().splitlines()


def test_unavailable_device_is_a_usage_error(tiny_project: pytest.Pytester) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    result = tiny_project.runpytest("--advprune-device=cuda")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--advprune-device='cuda' is not available on this machine*Available: cpu*"])
    assert "Traceback" not in result.stderr.str() + result.stdout.str()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--advprune-device=tpu"], "*--advprune-device='tpu' is not a device*"),
        (["--advprune-samples=0"], "*--advprune-samples='0' must be >= 1*"),
        (["--advprune-seed=x"], "*--advprune-seed='x' is not an integer*"),
    ],
)
def test_bad_options_are_usage_errors(tiny_project: pytest.Pytester, args: list[str], message: str) -> None:
    result = tiny_project.runpytest(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])


def test_project_registrations_become_cells(pytester: pytest.Pytester) -> None:
    """A model, pruning and attack registered in another folder's conftest.py replace the defaults."""
    from conftest import TINY_CONFTEST

    project = pytester.mkdir("other_project")
    (project / "conftest.py").write_text(
        TINY_CONFTEST
        + textwrap.dedent(
            """

            @pytest_advprune.register_pruning("halve_first_layer", default_amount=0.5, fine_tune=False)
            def halve_first_layer(model, amount, context):
                with torch.no_grad():
                    model[1].weight.mul_(1 - amount)
                return model


            @pytest_advprune.register_attack("noise", primary="eps", norm="Linf", eps=0.05)
            def noise(model, eps):
                def attack(images, labels):
                    return (images + eps * torch.sign(torch.randn_like(images))).clamp(0, 1)
                return attack
            """
        )
    )
    (project / "test_mine.py").write_text(
        "def test_robustness(cell_result, check_baseline):\n"
        "    assert cell_result.metrics['samples'] == 32\n"
        "    check_baseline(cell_result)\n"
    )
    result = pytester.runpytest("other_project", "--update-baselines", "-v")
    result.stdout.fnmatch_lines(["*test_robustness[[]tiny-linear-halve_first_layer_0.5-noise_0.05[]] PASSED*"])
    result.assert_outcomes(passed=1)
    assert (pytester.path / "baselines/tiny-linear/halve_first_layer_0.5/noise_0.05.json").is_file()


def test_same_verdicts_and_bytes_under_xdist(tiny_project: pytest.Pytester) -> None:
    serial = tiny_project.runpytest("--update-baselines")
    serial.assert_outcomes(passed=4)
    serial_tree = baseline_tree(tiny_project.path)

    os.rename(tiny_project.path / "baselines", tiny_project.path / "serial_baselines")
    parallel = tiny_project.runpytest_subprocess("--update-baselines", "-n", "2", "-p", "no:cacheprovider")
    parallel.assert_outcomes(passed=4)
    parallel.stdout.fnmatch_lines(["*4 cells: 4 created*"])
    assert baseline_tree(tiny_project.path) == serial_tree

    checked = tiny_project.runpytest_subprocess("-n", "2")
    checked.assert_outcomes(passed=4)


TIMING_TEST = "def test_latency(inference_benchmark):\n    inference_benchmark()\n"


def test_timing_tests_report_speedups(tiny_project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    # The in-process run must time even when these tests run under xdist: pytest-benchmark reads this variable.
    monkeypatch.delenv("PYTEST_XDIST_WORKER", raising=False)
    tiny_project.makepyfile(test_timing=TIMING_TEST)
    result = tiny_project.runpytest(
        "-m",
        "advprune_timing",
        "--benchmark-json=bench.json",
        "-p",
        "no:cacheprovider",
        "-o",
        "advprune_timing_rounds=3",
        "-o",
        "advprune_timing_batch_sizes=1, 64",
        "--advprune-dtype=bfloat16",
    )
    result.assert_outcomes(passed=6, deselected=4)
    result.stdout.fnmatch_lines(
        [
            "*median inference latency (pytest-benchmark)*",
            "model*pruning*batch*base ms*pruned ms*speedup",
            "tiny-linear*l1_unstructured_0.5*1*x",
            "tiny-linear*l1_unstructured_0.5*64*x",
        ]
    )
    report = json.loads((tiny_project.path / "bench.json").read_text())
    infos = {(b["extra_info"]["pruning"], b["extra_info"]["batch_size"]): b["extra_info"] for b in report["benchmarks"]}
    assert set(infos) == {(v, n) for v in ("base", "l1_unstructured_0.5", "random_unstructured_0.3") for n in (1, 64)}
    info = infos[("l1_unstructured_0.5", 64)]
    assert (info["model"], info["amount"], info["dtype"], info["device"]) == ("tiny-linear", 0.5, "bfloat16", "cpu")
    assert info["parameters"] == 650 and info["macs"] > 0
    assert report["machine_info"]["advprune"]["dtype"] == "bfloat16"
    assert report["machine_info"]["advprune"]["torch_version"]


def test_timing_under_xdist_prints_one_notice(tiny_project: pytest.Pytester) -> None:
    tiny_project.makepyfile(test_timing=TIMING_TEST)
    result = tiny_project.runpytest_subprocess("-m", "advprune_timing", "-n", "2", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=3)  # xdist's controller does not count deselected items
    notices = [line for line in result.outlines if "timing tests measured nothing" in line]
    assert len(notices) == 1, result.stdout.str()
    assert "serial run (no -n): pytest -m advprune_timing" in notices[0]


def test_fixtures_expose_the_pieces_of_a_cell(tiny_project: pytest.Pytester) -> None:
    tiny_project.makepyfile(
        test_pieces="""
        import torch

        def test_pieces(advprune_cell, advprune_dataset, base_model, pruned_model, adversarial_attack,
                        base_adversarial_examples, cell_result):
            assert advprune_dataset.name == "tiny"
            assert pruned_model is not base_model
            images, labels = advprune_dataset.eval_images, advprune_dataset.eval_labels
            # The generator crafts with the cell's parameters: FGSM is deterministic, so crafting on the
            # base model again gives the examples every pruning of this base shares.
            if advprune_cell.attack.name == "fgsm":
                assert torch.equal(adversarial_attack(base_model, images, labels), base_adversarial_examples)
            delta = (base_adversarial_examples - images).abs().max().item()
            assert delta <= advprune_cell.attack.kwargs["eps"] + 1e-6
            transfer = (pruned_model(base_adversarial_examples).argmax(1) == labels).float().mean().item()
            assert abs(100 * transfer - cell_result.metrics["transfer_robust_accuracy"]) < 1e-3
        """
    )
    tiny_project.runpytest("test_pieces.py").assert_outcomes(passed=4)


def test_too_many_samples_stops_the_run_once(tiny_project: pytest.Pytester) -> None:
    result = tiny_project.runpytest("--advprune-samples=1000")
    assert result.ret != 0
    result.stdout.fnmatch_lines(["*--advprune-samples=1000 exceeds the 32 evaluation images of dataset 'tiny'*"])
    assert "Traceback" not in result.stdout.str()
    assert result.parseoutcomes().get("passed", 0) == 0


def test_a_model_of_an_unknown_dataset_stops_the_run(pytester: pytest.Pytester) -> None:
    from conftest import CELL_TEST

    pytester.makeconftest(
        "import torch, pytest_advprune\n"
        "@pytest_advprune.register_model('orphan', dataset='nope')\n"
        "def orphan():\n"
        "    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))\n"
    )
    pytester.makepyfile(test_cells=CELL_TEST)
    result = pytester.runpytest()
    assert result.ret != 0
    result.stdout.fnmatch_lines(["*Unknown dataset 'nope'. Registered: digits*@register_dataset*"])
    assert "Traceback" not in result.stdout.str()


def test_names_that_escape_the_baseline_folder_are_refused() -> None:
    from pytest_advprune.registry import RegistryError, register_model

    for name in ("..", ".hidden", "a/b", "benchmarks"):
        with pytest.raises(RegistryError, match=repr(name)):
            register_model(name)(lambda: None)


def test_report_records_every_cell_with_paired_comparisons(tiny_project: pytest.Pytester) -> None:
    tiny_project.runpytest("--update-baselines").assert_outcomes(passed=4)
    path = tiny_project.path / "baselines/tiny-linear/l1_unstructured_0.5/fgsm_0.1.json"
    stored, observed = shift_baseline(path, "transfer_robust_accuracy", "transfer_adversarial", +2)
    tiny_project.runpytest("--advprune-report=out/report.json").assert_outcomes(passed=4)
    report = json.loads((tiny_project.path / "out/report.json").read_text())
    assert sorted(report["cells"]) == sorted(CELLS)
    cell = report["cells"]["tiny-linear-l1_unstructured_0.5-fgsm_0.1"]
    assert cell["status"] == "passed"
    rows = {row["metric"]: row for row in cell["comparisons"]}
    assert set(rows) == {
        "base_clean_accuracy",
        "pruned_clean_accuracy",
        "base_robust_accuracy",
        "pruned_robust_accuracy",
        "transfer_robust_accuracy",
    }
    transfer = rows["transfer_robust_accuracy"]
    assert (transfer["baseline"], transfer["observed"]) == (stored, observed)
    assert (transfer["regressions"], transfer["improvements"], transfer["p_value"]) == (2, 0, 0.5)
    assert transfer["difference"] == -6.25
    assert transfer["ci_low"] < -6.25 < transfer["ci_high"]
    assert rows["base_clean_accuracy"]["p_value"] == 1.0

    tiny_project.runpytest("--advprune-report=report.md").assert_outcomes(passed=4)
    markdown = (tiny_project.path / "report.md").read_text()
    assert "| `tiny-linear-l1_unstructured_0.5-fgsm_0.1` | passed |" in markdown

    result = tiny_project.runpytest("--advprune-report=report.txt")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--advprune-report='report.txt' must end in .json, .md (Markdown) or .html*"])


def test_loading_the_plugin_does_not_import_torch() -> None:
    """Unrelated pytest runs in an environment with the plugin installed must not pay for torch."""
    import subprocess
    import sys

    code = "import sys, pytest_advprune.plugin; print(sorted(m for m in ('torch', 'torchattacks') if m in sys.modules))"
    output = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    assert output.strip() == "[]"
