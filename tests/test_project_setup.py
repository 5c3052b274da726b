"""A team's project: several datasets in one matrix, its own data checked up front, its own checkpoints
found from the rootdir."""

from __future__ import annotations

import json
import textwrap
from typing import Any

import pytest
from conftest import CELL_TEST, TINY_CONFTEST

RGB_CONFTEST = textwrap.dedent(
    """

    @pytest_advprune.register_dataset("tiny-rgb")
    def tiny_rgb():
        generator = torch.Generator().manual_seed(3)
        images = torch.rand(48, 3, 4, 4, generator=generator)
        labels = (images.flatten(1) @ torch.randn(48, 5, generator=generator)).argmax(1)
        return Dataset("tiny-rgb", images[:32], labels[:32], images[32:], labels[32:], num_classes=5)


    @pytest_advprune.register_model("rgb-linear", dataset="tiny-rgb")
    def rgb_linear():
        torch.manual_seed(0)
        return nn.Sequential(nn.Flatten(), nn.Linear(48, 5))
    """
)

SCOPED_INI = textwrap.dedent(
    """
    [pytest]
    advprune_prunings =
        l1_unstructured:0.5
        random_unstructured:0.3 for dataset=tiny
    advprune_attacks =
        fgsm:0.1 for dataset=tiny
        fgsm:0.03 for dataset=tiny-rgb
        pgd_linf:eps=0.03,steps=2 for model=rgb-*
    advprune_finetune_epochs = 1
    advprune_max_clean_drop = off
    advprune_max_robustness_gap = off
    """
)


@pytest.fixture
def two_dataset_project(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makeconftest(TINY_CONFTEST + RGB_CONFTEST)
    pytester.makeini(SCOPED_INI)
    pytester.makepyfile(test_cells=CELL_TEST)
    return pytester


def test_prunings_and_attacks_per_dataset_and_model(two_dataset_project: pytest.Pytester) -> None:
    result = two_dataset_project.runpytest("--collect-only", "-q")
    cells = sorted(line.split("[")[1].rstrip("]") for line in result.outlines if "::test_robustness[" in line)
    assert cells == [
        "rgb-linear-l1_unstructured_0.5-fgsm_0.03",
        "rgb-linear-l1_unstructured_0.5-pgd_linf_0.03_steps2",
        "tiny-linear-l1_unstructured_0.5-fgsm_0.1",
        "tiny-linear-random_unstructured_0.3-fgsm_0.1",
    ]
    two_dataset_project.runpytest("--update-baselines").assert_outcomes(passed=4)
    # Ids and baseline paths are those of an unscoped matrix; the provenance has the cell's own epsilon.
    stored = json.loads(
        (two_dataset_project.path / "baselines/rgb-linear/l1_unstructured_0.5/fgsm_0.03.json").read_text()
    )
    assert stored["provenance"]["attack"] == {"name": "fgsm", "eps": 0.03}
    assert stored["provenance"]["dataset"]["name"] == "tiny-rgb"
    two_dataset_project.runpytest().assert_outcomes(passed=4)

    timing = two_dataset_project.runpytest(
        "--collect-only", "-q", "-p", "no:randomly", "-o", "advprune_timing_batch_sizes=8", "-m", "advprune_timing"
    )
    assert timing.ret == pytest.ExitCode.NO_TESTS_COLLECTED  # no latency test in this project: none collected


@pytest.mark.parametrize(
    ("attacks", "message"),
    [
        (["fgsm:0.1 for dataset=cifar10"], "*'fgsm:0.1 for dataset=cifar10' applies to no model of the matrix*"),
        (
            ["fgsm:0.1 for dataset=tiny*", "fgsm:0.1 for model=tiny-linear"],
            "*both give model 'tiny-linear' 'fgsm_0.1'; list each once per model*",
        ),
        (["fgsm:0.1 for size=small"], "*selects by 'size'; use model=PATTERN, dataset=PATTERN*"),
        (["fgsm:0.1 for dataset=tiny for model=x"], "*has more than one 'for'*"),
    ],
)
def test_bad_scopes_stop_the_run_with_one_message(
    two_dataset_project: pytest.Pytester, attacks: list[str], message: str
) -> None:
    ini = SCOPED_INI.split("advprune_attacks =")[0] + "advprune_attacks =\n" + "".join(f"    {a}\n" for a in attacks)
    two_dataset_project.makeini(ini)
    result = two_dataset_project.runpytest()
    assert result.ret != 0
    result.stdout.fnmatch_lines([message])
    assert "Traceback" not in result.stdout.str()


def test_images_in_0_to_255_stop_the_run_before_any_cell(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(TINY_CONFTEST.replace("return Dataset(", "images = images * 255\n    return Dataset("))
    pytester.makepyfile(test_cells=CELL_TEST)
    pytester.makeini("[pytest]\nadvprune_prunings = l1_unstructured:0.5\nadvprune_attacks = fgsm:0.1\n")
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.stdout.fnmatch_lines(["*advprune: dataset 'tiny' (registered by *conftest.py:*) cannot be used: *255*"])
    assert "divide by 255" in result.stdout.str()
    assert "Traceback" not in result.stdout.str()
    assert result.stdout.str().count("cannot be used") == 1
    assert result.parseoutcomes().get("passed", 0) == 0


CHECKPOINT_CONFTEST = TINY_CONFTEST + textwrap.dedent(
    """

    @pytest_advprune.register_model("saved-linear", dataset="tiny")
    def saved_linear():
        return pytest_advprune.load_model(nn.Sequential(nn.Flatten(), nn.Linear(64, 10)), "checkpoints/linear.pt")
    """
)


def test_checkpoints_resolve_against_the_rootdir(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    import torch
    from torch import nn

    pytester.makeconftest(CHECKPOINT_CONFTEST)
    pytester.makeini(
        "[pytest]\nadvprune_models = saved-linear\nadvprune_prunings = l1_unstructured:0.5\n"
        "advprune_attacks = fgsm:0.1\nadvprune_max_clean_drop = off\n"
    )
    pytester.makepyfile(test_cells=CELL_TEST)

    missing = pytester.runpytest()
    missing.assert_outcomes(errors=1)
    missing.stdout.fnmatch_lines(
        [
            "*advprune: model 'saved-linear' (registered by *conftest.py:*) cannot be built: Checkpoint "
            f"'checkpoints/linear.pt' (looked for {pytester.path}/checkpoints/linear.pt; relative paths resolve "
            f"against the rootdir {pytester.path})*",
            "*1 cell: 1 error*",
        ]
    )
    assert "Traceback" not in missing.stdout.str()

    (pytester.path / "checkpoints").mkdir()
    torch.manual_seed(0)
    torch.save(nn.Sequential(nn.Flatten(), nn.Linear(64, 10)).state_dict(), pytester.path / "checkpoints/linear.pt")
    elsewhere = pytester.mkdir("somewhere_else")
    monkeypatch.chdir(elsewhere)  # started from another folder, as an IDE or a CI step may do
    missing_baseline = pytester.runpytest(str(pytester.path))
    missing_baseline.stdout.fnmatch_lines(  # a command that works when pasted where pytest was started
        ["*create:*pytest '../test_cells.py::test_robustness[[]saved-linear-l1_unstructured_0.5-fgsm_0.1[]]' *"]
    )
    result = pytester.runpytest(str(pytester.path), "--update-baselines")
    result.assert_outcomes(passed=1)
    assert (pytester.path / "baselines/saved-linear/l1_unstructured_0.5/fgsm_0.1.json").is_file()


def test_a_model_built_for_other_inputs_fails_its_cells_with_one_message(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(
        TINY_CONFTEST
        + textwrap.dedent(
            """

            @pytest_advprune.register_model("rgb-net", dataset="tiny")
            def rgb_net():  # built for 3-channel images; the dataset's are gray
                return nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.Linear(144, 10))


            @pytest_advprune.register_model("five-way", dataset="tiny")
            def five_way():  # 5 outputs for a 10-class dataset
                return nn.Sequential(nn.Flatten(), nn.Linear(64, 5))
            """
        )
    )
    pytester.makeini(
        "[pytest]\nadvprune_models =\n    rgb-net\n    five-way\nadvprune_prunings = l1_unstructured:0.5\n"
        "advprune_attacks = fgsm:0.1\n"
    )
    pytester.makepyfile(test_cells=CELL_TEST)
    result = pytester.runpytest()
    result.assert_outcomes(errors=2)
    result.stdout.fnmatch_lines(
        [
            "*advprune: model 'five-way' (registered by *) returns outputs of shape (1, 5) for one image, but "
            "dataset 'tiny' has 10 classes*",
            "*advprune: model 'rgb-net' (registered by *) cannot take the images of dataset 'tiny', of shape "
            "(1, 8, 8) (C, H, W): *channels*",
            "*2 cells: 2 error*",
        ]
    )
    assert "Traceback" not in result.stdout.str()


# --- the plain install -------------------------------------------------------------------------------
# A model repository installs pytest-advprune next to its own pins: requests>=2.32 (Hugging Face datasets
# needs it), its own torch. torchattacks 3.5.1 pins requests~=2.25.1, so it is an extra; these tests keep
# any dependency from bringing such a pin back. .ci/run asks pip's resolver the same question online.

PROJECT = "pytest-advprune"


def _requirements_of(distribution: str, extras: frozenset[str]) -> list[Any]:
    """The requirements ``distribution`` (installed) declares for this interpreter and platform and for
    ``extras`` only; none when it is not installed."""
    from importlib import metadata

    from packaging.requirements import Requirement

    try:
        declared = metadata.requires(distribution) or []
    except metadata.PackageNotFoundError:
        return []
    requirements = [Requirement(text) for text in declared]
    return [
        requirement
        for requirement in requirements
        if requirement.marker is None or any(requirement.marker.evaluate({"extra": extra}) for extra in {"", *extras})
    ]


def plain_install_closure() -> dict[str, list[tuple[str, Any]]]:
    """Every distribution ``pip install pytest-advprune`` (no extra) pulls in, as installed here, with the
    requirements on it and who declares them: ``{name: [(requirer, requirement), ...]}``."""
    from packaging.utils import canonicalize_name

    on: dict[str, list[tuple[str, Any]]] = {}
    seen: set[tuple[str, frozenset[str]]] = set()
    queue = [(PROJECT, frozenset[str]())]
    while queue:
        name, extras = queue.pop()
        if (name, extras) in seen:
            continue
        seen.add((name, extras))
        for requirement in _requirements_of(name, extras):
            dependency = canonicalize_name(requirement.name)
            on.setdefault(dependency, []).append((name, requirement))
            queue.append((dependency, frozenset(requirement.extras)))
    return on


def test_the_plain_install_brings_no_torchattacks_and_takes_any_new_requests() -> None:
    closure = plain_install_closure()
    assert "torch" in closure and "torch-pruning" in closure  # the walk reached the plain dependencies
    problems = [
        f"torchattacks is required by {requirer}: {requirement}"
        for requirer, requirement in closure.get("torchattacks", [])
    ]
    for requirer, requirement in closure.get("requests", []):
        # 2.32.2 is the oldest requests that Hugging Face datasets 3.6.0 accepts (its requirement: >=2.32.2).
        if not (requirement.specifier.contains("2.32.2") and requirement.specifier.contains("99")):
            problems.append(f"{requirer} requires {requirement}: a repository on requests>=2.32 could not install it")
    assert not problems, "\n".join(problems)


def test_torchattacks_is_an_extra_and_the_installed_metadata_is_current() -> None:
    from importlib import metadata
    from pathlib import Path

    from packaging.requirements import Requirement

    try:
        import tomllib
    except ImportError:  # Python 3.10: pytest depends on tomli there
        import tomli as tomllib

    project = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())["project"]
    declared = {str(Requirement(text)) for text in project["dependencies"]}
    assert not any(Requirement(text).name == "torchattacks" for text in project["dependencies"])
    assert any(Requirement(text).name == "torchattacks" for text in project["optional-dependencies"]["torchattacks"])
    installed = {
        str(requirement) for requirement in map(Requirement, metadata.requires(PROJECT) or []) if not requirement.marker
    }
    assert installed == declared, "the installed metadata is stale: pip install -e . again"


def test_every_error_the_plugin_raises_for_users_has_one_base() -> None:
    """``except pytest_advprune.AdvPruneError`` catches every error with a message for the user: each
    ``...Error`` class defined in the package derives from it."""
    import importlib
    import inspect
    import pkgutil

    import pytest_advprune

    errors = {}
    for module_info in pkgutil.walk_packages(pytest_advprune.__path__, "pytest_advprune."):
        if module_info.name.endswith("__main__"):
            continue
        module = importlib.import_module(module_info.name)
        for name, value in vars(module).items():
            if inspect.isclass(value) and name.endswith("Error") and value.__module__ == module.__name__:
                errors[f"{module.__name__}.{name}"] = value
    assert len(errors) >= 14
    assert [name for name, cls in errors.items() if not issubclass(cls, pytest_advprune.AdvPruneError)] == []
