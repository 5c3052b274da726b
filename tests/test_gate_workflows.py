"""The CI gate of a model repository, end to end: retrained checkpoints, refreshes that would hide a
regression, and invariants that need no baseline."""

from __future__ import annotations

import json
import textwrap

import pytest
from conftest import CELL_TEST, baseline_tree

CELLS = [
    "tiny-linear-l1_unstructured_0.5-fgsm_0.1",
    "tiny-linear-l1_unstructured_0.5-pgd_linf_0.1_steps3",
    "tiny-linear-random_unstructured_0.3-fgsm_0.1",
    "tiny-linear-random_unstructured_0.3-pgd_linf_0.1_steps3",
]


def test_a_weaker_retrain_is_regressed_and_an_equal_one_is_stale(
    tiny_project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    tiny_project.runpytest("--update-baselines").assert_outcomes(passed=4)
    committed = baseline_tree(tiny_project.path)

    # A retrain of equal quality: other weights, nothing worse. Stale (committed baselines must describe the
    # committed weights), and it says so.
    monkeypatch.setenv("TINY_SEED", "1")
    equal = tiny_project.runpytest("--advprune-ci")
    assert equal.ret == pytest.ExitCode.TESTS_FAILED
    equal.stdout.fnmatch_lines(
        [
            "*4 cells: 4 stale*",
            "stale cells: their baselines describe other weights, data or parameters (see each message); outside CI "
            "mode, refresh them with: pytest * --update-baselines",
        ]
    )
    assert "--advprune-ci --update-baselines" not in equal.stdout.str()
    assert equal.stdout.str().count("no regression against the previous weights") == 4

    # A retrain that lost most of its accuracy: regressed, with the metrics that got worse and the weights change.
    monkeypatch.setenv("TINY_NOISE", "1.0")
    weaker = tiny_project.runpytest("--advprune-ci", "--advprune-report=weaker.json")
    assert weaker.ret == pytest.ExitCode.TESTS_FAILED
    report = json.loads((tiny_project.path / "weaker.json").read_text())["cells"]
    assert {record["status"] for record in report.values()} == {"regressed"}
    assert report[CELLS[0]]["worst"]["metric"] == "base_clean_accuracy"
    assert report[CELLS[0]]["file"] == "tiny-linear/l1_unstructured_0.5/fgsm_0.1.json"
    weaker.stdout.fnmatch_lines(["*4 cells: 4 regressed*"])
    weaker.stdout.fnmatch_lines(
        [
            "*cell tiny-linear-l1_unstructured_0.5-fgsm_0.1 regressed: its base model's weights changed*",
            "*cell:*tiny-linear-l1_unstructured_0.5-fgsm_0.1",
            "*changed:*model.weights_fingerprint*",
            "*metric:*base_clean_accuracy",
            "*baseline:*90.625",
            "*observed:*18.75",
            "*mcnemar:*samples regressed*",
            "*accept it with: outside CI mode: pytest *--update-baselines --advprune-accept-regressions*",
        ]
    )
    assert "no regression" not in weaker.stdout.str()

    # Retrains get their own tolerance (seed noise is part of a retrain, not of a pruning change).
    lenient = tiny_project.runpytest("-o", "advprune_retrain_tolerance=80")
    lenient.stdout.fnmatch_lines(["*4 cells: 4 stale*"])
    strict_elsewhere = tiny_project.runpytest(
        "-o", "advprune_retrain_tolerance=80", "-o", "advprune_retrain_metric_tolerances=base_clean_accuracy=5"
    )
    strict_elsewhere.stdout.fnmatch_lines(["*allowed:*±5 points or p >= 0.05*", "*4 cells: 4 regressed*"])

    # Refreshing it is refused: nothing is written, the run fails and says how to accept.
    refused = tiny_project.runpytest("--update-baselines")
    assert refused.ret == pytest.ExitCode.TESTS_FAILED
    refused.stdout.fnmatch_lines(
        [
            "*4 cells: 4 refused*",
            "refused (worse than its baseline, not written): tiny-linear-l1_unstructured_0.5-fgsm_0.1: "
            "base_clean_accuracy 90.625 -> 18.75 (-71.88 points, p = *)",
            "accept them with: pytest --update-baselines * "
            "--advprune-accept-regressions=tiny-linear-l1_unstructured_0.5-fgsm_0.1,tiny-linear-l1_*",
        ]
    )
    assert baseline_tree(tiny_project.path) == committed

    # Accepting some writes those only; the others stay refused.
    partly = tiny_project.runpytest(
        "--update-baselines", "--advprune-accept-regressions=*fgsm*", "--advprune-report=partly.md"
    )
    partly.assert_outcomes(passed=2, failed=2)
    partly.stdout.fnmatch_lines(
        [
            "*4 cells: 2 refused, 2 accepted*",
            "accept them with: pytest --update-baselines * "
            "--advprune-accept-regressions=tiny-linear-l1_unstructured_0.5-pgd_linf_0.1_steps3,"
            "tiny-linear-random_unstructured_0.3-pgd_linf_0.1_steps3",
            "accepted regression (written): tiny-linear-l1_unstructured_0.5-fgsm_0.1: base_clean_accuracy*",
        ]
    )
    markdown = (tiny_project.path / "partly.md").read_text()
    assert "## Accepted regressions (written with --advprune-accept-regressions)" in markdown
    assert "- `tiny-linear-l1_unstructured_0.5-fgsm_0.1`: base_clean_accuracy 90.625 -> 18.75" in markdown
    assert "## Needs attention (2)" in markdown and "`: refused" in markdown
    changed = {path for path, data in baseline_tree(tiny_project.path).items() if committed[path] != data}
    assert changed == {
        "tiny-linear/l1_unstructured_0.5/fgsm_0.1.json",
        "tiny-linear/random_unstructured_0.3/fgsm_0.1.json",
    }

    accepted = tiny_project.runpytest("--update-baselines", "--advprune-accept-regressions")
    accepted.assert_outcomes(passed=4)
    accepted.stdout.fnmatch_lines(["*4 cells: 2 accepted, 2 unchanged*"])
    tiny_project.runpytest("--advprune-ci").assert_outcomes(passed=4)


def test_a_pruning_change_that_is_worse_is_refused_on_refresh(tiny_project: pytest.Pytester) -> None:
    """Same weights, same recipe name, worse numbers (a changed implementation: here a module constant the
    recipe reads): failed on check, refused on refresh. The on-disk cache sees the edit and recomputes."""
    conftest = (tiny_project.path / "conftest.py").read_text()
    recipe = textwrap.dedent(
        """

        BROKEN_RECIPE = {broken}


        @pytest_advprune.register_pruning("recipe", fine_tune=False)
        def recipe(model, amount, context):
            if BROKEN_RECIPE:
                with torch.no_grad():
                    keep = torch.rand(model[1].weight.shape, generator=torch.Generator().manual_seed(1)) > 0.9
                    model[1].weight.mul_(keep)
            return model
        """
    )
    tiny_project.makeconftest(conftest + recipe.format(broken=False))
    tiny_project.makeini("[pytest]\nadvprune_prunings = recipe:0.5\nadvprune_attacks = fgsm:0.1\n")
    tiny_project.runpytest("--update-baselines").assert_outcomes(passed=1)
    tiny_project.runpytest().assert_outcomes(passed=1)
    tiny_project.makeconftest(conftest + recipe.format(broken=True))
    failed = tiny_project.runpytest()
    failed.assert_outcomes(failed=1)
    failed.stdout.fnmatch_lines(["*metric(s) of cell tiny-linear-recipe_0.5-fgsm_0.1 failed the gate*"])
    failed.stdout.fnmatch_lines(["*1 cell: 1 failed*"])
    refused = tiny_project.runpytest("--update-baselines")
    refused.assert_outcomes(failed=1)
    refused.stdout.fnmatch_lines(["*refused to update the baseline of cell tiny-linear-recipe_0.5-fgsm_0.1*"])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--advprune-accept-regressions"], "*--advprune-accept-regressions only applies to --update-baselines*"),
        (
            ["--update-baselines", "--advprune-accept-regressions", "test_cells.py"],
            "*--advprune-accept-regressions took 'test_cells.py' as its cell patterns, which looks like a path*",
        ),
        (["--advprune-ci", "--update-baselines"], "*--update-baselines is refused in CI mode*"),
    ],
)
def test_accepting_regressions_is_explicit(tiny_project: pytest.Pytester, args: list[str], message: str) -> None:
    result = tiny_project.runpytest(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])


# A dataset whose images carry their signal in the first 8 pixels; the other 56 are exactly 0.5 in every
# image. The base model reads the 8 signal pixels only. The 'fragile' pruning adds large zero-sum weights
# on the constant pixels: clean predictions stay exactly the same (0.5 times a zero sum), but a small
# perturbation of those pixels now moves the logits a lot. Far less robust, equally accurate.
FRAGILE_CONFTEST = textwrap.dedent(
    """
    import torch
    from torch import nn

    import pytest_advprune
    from pytest_advprune import Dataset


    def flat_images(count, generator):
        images = torch.full((count, 1, 8, 8), 0.5)
        images.view(count, 64)[:, :8] = torch.rand(count, 8, generator=generator)
        return images


    PROJECTION = torch.randn(8, 4, generator=torch.Generator().manual_seed(0))


    @pytest_advprune.register_dataset("flat")
    def flat():
        generator = torch.Generator().manual_seed(1)
        train, test = flat_images(64, generator), flat_images(64, generator)
        label = lambda images: (images.flatten(1)[:, :8] @ PROJECTION).argmax(1)
        return Dataset("flat", train, label(train), test, label(test), num_classes=4)


    @pytest_advprune.register_model("flat-net", dataset="flat")
    def flat_net():
        model = nn.Sequential(nn.Flatten(), nn.Linear(64, 4))
        with torch.no_grad():
            model[1].weight.zero_()
            model[1].weight[:, :8] = PROJECTION.T
            model[1].bias.zero_()
        return model


    @pytest_advprune.register_pruning("fragile", fine_tune=False)
    def fragile(model, amount, context):
        noise = torch.randn(4, 56, generator=torch.Generator().manual_seed(2))
        with torch.no_grad():
            model[1].weight[:, 8:] += 50 * amount * (noise - noise.mean(dim=1, keepdim=True))
        return model
    """
)


@pytest.fixture
def fragile_project(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makeconftest(FRAGILE_CONFTEST)
    pytester.makeini("[pytest]\nadvprune_prunings = fragile:0.5\nadvprune_attacks = fgsm:0.02\n")
    pytester.makepyfile(test_cells=CELL_TEST)
    return pytester


def test_a_pruned_model_far_less_robust_than_its_base_violates_the_gap_without_any_baseline(
    fragile_project: pytest.Pytester,
) -> None:
    result = fragile_project.runpytest()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*cell flat-net-fragile_0.5-fgsm_0.02 violates 1 invariant(s) (invariants need no baseline).",
            "*invariant: robustness gap",
            "*metric:*pruned_robust_accuracy",
            "*base:*base_robust_accuracy * (the base model attacked white-box, same samples)",
            "*observed:*",
            "*allowed:*at most 15 points (default of ini advprune_max_robustness_gap) below the base, or p >= 0.05",
            "*change:*points (95% CI*",
            "*mcnemar:*samples robust on the base but not here*",
            "*fix:*",
        ]
    )
    # The missing baseline is reported too, after the violation; the verdict is the more serious one.
    result.stdout.fnmatch_lines(["*no baseline for cell flat-net-fragile_0.5-fgsm_0.02*", "*1 cell: 1 violated*"])
    # Clean predictions did not change, and examples crafted on the base do not touch the constant pixels.
    assert "clean-accuracy drop" not in result.stdout.str()
    assert "metric:    transfer_robust_accuracy" not in result.stdout.str()

    # An update does not write numbers that violate an invariant: no refresh or acceptance lifts one.
    written = fragile_project.runpytest("--update-baselines", "--advprune-report=report.json")
    written.stdout.fnmatch_lines(["*baseline:*not written: fix the model, or change the invariant's line*"])
    written.stdout.fnmatch_lines(["*1 cell: 1 violated*"])
    assert not (fragile_project.path / "baselines").exists()
    metrics = json.loads((fragile_project.path / "report.json").read_text())["cells"]["flat-net-fragile_0.5-fgsm_0.02"][
        "metrics"
    ]
    assert metrics["clean_accuracy_drop"] == 0
    assert metrics["base_robust_accuracy"] - metrics["pruned_robust_accuracy"] > 50
    assert metrics["transfer_robust_accuracy"] == metrics["base_robust_accuracy"]

    # Per-cell and per-metric overrides; the last matching line wins.
    assert fragile_project.runpytest("-o", "advprune_max_robustness_gap=off", "--update-baselines").ret == 0
    for lines, passes in [
        ("off", True),
        ("5\n    off for flat-*", True),
        ("pruned_robust_accuracy = 95 for model=flat-net", True),
        ("off\n    pruned_robust_accuracy = 20 for dataset=flat, attack=fgsm*", False),
        ("off for flat-*\n    20", False),
    ]:
        fragile_project.makeini(
            "[pytest]\nadvprune_prunings = fragile:0.5\nadvprune_attacks = fgsm:0.02\n"
            f"advprune_max_robustness_gap =\n    {lines}\n"
        )
        fragile_project.runpytest().assert_outcomes(**({"passed": 1} if passes else {"failed": 1}))


def test_floors_and_ceilings(tiny_project: pytest.Pytester) -> None:
    from conftest import TINY_INI

    tiny_project.runpytest("--update-baselines").assert_outcomes(passed=4)
    tiny_project.makeini(
        TINY_INI
        + "advprune_floors =\n"
        + "    base_clean_accuracy >= 99\n"
        + "    base_clean_accuracy >= 50 for *-random_unstructured_*\n"
        + "    pruned_macs <= 10 for attack=pgd*\n"
    )
    result = tiny_project.runpytest()
    result.assert_outcomes(passed=1, failed=3)
    result.stdout.fnmatch_lines(
        [
            "*cell tiny-linear-l1_unstructured_0.5-fgsm_0.1 violates 1 invariant(s)*",
            "*invariant: floor",
            "*metric:*base_clean_accuracy",
            "*observed:*90.625",
            "*allowed:*>= 99 (ini advprune_floors: 'base_clean_accuracy >= 99')",
        ]
    )
    result.stdout.fnmatch_lines(["*invariant: ceiling", "*metric:*pruned_macs", "*allowed:*<= 10*"])
    result.stdout.fnmatch_lines(["*4 cells: 3 violated, 1 passed*"])


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("advprune_floors = accuracy >= 40", "*unknown metric 'accuracy'. Metrics: samples, base_clean_accuracy*"),
        ("advprune_floors = pruned_robust_accuracy > 40", "*is not 'metric >= value [[]for scope[]]'*"),
        ("advprune_max_robustness_gap = lots", "*'lots' is not a number (or 'off')*"),
        ("advprune_max_robustness_gap = sparsity = 3", "*names metric 'sparsity'; it applies to: pruned_robust*"),
        ("advprune_max_clean_drop = 3 for colour=red", "*selects by 'colour'; use cell=PATTERN, model=PATTERN*"),
        ("advprune_max_clean_drop = -1", "*the limit must be >= 0 points*"),
    ],
)
def test_bad_invariant_lines_are_usage_errors(tiny_project: pytest.Pytester, line: str, message: str) -> None:
    from conftest import TINY_INI

    tiny_project.makeini(TINY_INI.replace("advprune_max_clean_drop = 100\n", "") + line + "\n")
    result = tiny_project.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])
