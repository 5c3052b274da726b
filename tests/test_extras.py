"""torchattacks is an extra: without it, the attacks that need it stop the run with one message that
names them and the pip command, and everything else runs."""

from __future__ import annotations

import functools
import sys
import textwrap
from typing import Any

import pytest
import torchattacks as aliased  # a module global bound to torchattacks under another name
from conftest import CELL_TEST, TINY_CONFTEST
from torchattacks import FGSM

from pytest_advprune.extras import referenced_names

FIX = "pip install 'pytest-advprune[[]torchattacks[]]'"  # as an fnmatch pattern: [[] is a literal [

TORCHATTACKS_CONFTEST = TINY_CONFTEST + textwrap.dedent(
    """

    @pytest_advprune.register_attack("ta_fgsm", primary="eps", norm="Linf", eps=0.1)
    def ta_fgsm(model, eps):
        import torchattacks

        return torchattacks.FGSM(model, eps=eps)


    @pytest_advprune.register_attack("hidden_fgsm", primary="eps", norm="Linf", eps=0.1)
    def hidden_fgsm(model, eps):
        import importlib

        # The module's name is a string here: no check of the code can see it.
        return importlib.import_module("torch" + "attacks").FGSM(model, eps=eps)
    """
)


def ini(*attacks: str) -> str:
    lines = "".join(f"    {attack}\n" for attack in attacks)
    return (
        "[pytest]\nadvprune_prunings = l1_unstructured:0.5\nadvprune_attacks =\n"
        f"{lines}advprune_finetune_epochs = 1\nadvprune_max_clean_drop = off\n"
    )


@pytest.fixture
def without_torchattacks(monkeypatch: pytest.MonkeyPatch) -> None:
    """torchattacks unimportable in the inner runs, as in an environment installed without the extra
    (``None`` in sys.modules makes ``import torchattacks`` raise ModuleNotFoundError)."""
    monkeypatch.setitem(sys.modules, "torchattacks", None)


@pytest.fixture
def torchattacks_project(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makeconftest(TORCHATTACKS_CONFTEST)
    pytester.makepyfile(test_cells=CELL_TEST)
    return pytester


@pytest.mark.usefixtures("without_torchattacks")
def test_attacks_that_need_torchattacks_stop_the_run_once(torchattacks_project: pytest.Pytester) -> None:
    torchattacks_project.makeini(ini("ta_fgsm:0.1", "autoattack:0.1", "pgd_linf:eps=0.1,steps=2"))
    torchattacks_project.makepyfile(test_more_cells=CELL_TEST)  # a second cell module: still one message
    result = torchattacks_project.runpytest()
    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.stdout.fnmatch_lines(
        [
            "*advprune: torchattacks is not installed, and 2 attacks need it:",
            "*'autoattack' (built in pytest_advprune.attacks.builtin.autoattack (*builtin.py:*))",
            "*'ta_fgsm' (registered by conftest.ta_fgsm (*conftest.py:*))",
            f"*pytest-advprune installs torchattacks only with its extra: {FIX} (or take them out of the matrix*",
        ]
    )
    output = result.stdout.str()
    assert output.count("pytest-advprune[torchattacks]") == 1
    assert "Traceback" not in output
    assert result.parseoutcomes().get("passed", 0) == 0

    # Attacks the filters deselect do not run, so they need nothing.
    others = torchattacks_project.runpytest("--advprune-attacks=pgd*", "--update-baselines")
    others.assert_outcomes(passed=2, deselected=4)


@pytest.mark.usefixtures("without_torchattacks")
def test_the_builtin_autoattack_alone_names_itself(torchattacks_project: pytest.Pytester) -> None:
    torchattacks_project.makeini(ini("autoattack:0.1"))
    result = torchattacks_project.runpytest()
    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.stdout.fnmatch_lines(
        [
            "*advprune: torchattacks is not installed, and attack 'autoattack' (built in *builtin.py:*) needs it.",
            f"*{FIX} (or take it out of the matrix: advprune_attacks, --advprune-attacks).",
        ]
    )
    assert result.stdout.str().count("pytest-advprune[torchattacks]") == 1
    assert "Traceback" not in result.stdout.str()


@pytest.mark.usefixtures("without_torchattacks")
def test_a_factory_that_hides_the_import_gets_the_message_when_built(torchattacks_project: pytest.Pytester) -> None:
    torchattacks_project.makeini(ini("hidden_fgsm:0.1"))
    result = torchattacks_project.runpytest()
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        [
            "*advprune: torchattacks is not installed, and attack 'hidden_fgsm' (registered by "
            "conftest.hidden_fgsm (*conftest.py:*)) needs it.",
            f"*{FIX}*",
        ]
    )
    assert "Traceback" not in result.stdout.str()


@pytest.mark.usefixtures("without_torchattacks")
def test_a_conftest_importing_torchattacks_is_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makeconftest("import torchattacks\n\n" + TINY_CONFTEST)
    pytester.makepyfile(test_cells=CELL_TEST)
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [
            f"ERROR: {pytester.path / 'conftest.py'} imports torchattacks (itself or through a module it imports), "
            f"which is not installed. pytest-advprune installs torchattacks only with its extra: {FIX}"
        ]
    )
    assert "Traceback" not in result.stderr.str() + result.stdout.str()


def test_other_conftest_import_errors_are_pytest_s_own(pytester: pytest.Pytester) -> None:
    pytester.makeconftest("import no_such_module_anywhere\n")
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ImportError while loading conftest*", "*No module named 'no_such_module_anywhere'"])
    assert "pytest-advprune[" not in result.stderr.str()


# --- which factories name torchattacks ---------------------------------------------------------------


def _imports_inside(model: Any) -> Any:
    from torchattacks.attacks.fgsm import FGSM as Inner

    return Inner(model)


def _helper_user(model: Any) -> Any:
    return _imports_inside(model)


def _nested(model: Any) -> Any:
    def attack(images: Any, labels: Any) -> Any:
        import torchattacks

        return torchattacks.FGSM(model)(images, labels)

    return attack


@pytest.mark.parametrize(
    "factory",
    [
        _imports_inside,
        _helper_user,  # through a helper of the project
        _nested,  # in a nested function
        lambda model: aliased.FGSM(model),
        lambda model: FGSM(model),  # a class imported from it
        functools.partial(_helper_user),
    ],
)
def test_factories_that_name_torchattacks(factory: Any) -> None:
    assert "torchattacks" in referenced_names(factory)


def test_of_the_builtins_only_autoattack_needs_torchattacks() -> None:
    from pytest_advprune.builtins import load_builtins
    from pytest_advprune.registry import ATTACKS

    load_builtins()
    assert "torchattacks" not in referenced_names(lambda model: model)
    needing = [e.name for e in ATTACKS.entries() if e.builtin and "torchattacks" in referenced_names(e.factory)]
    assert needing == ["autoattack"]


def test_a_library_that_is_not_installed_reads_unknown_in_cache_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    from pytest_advprune.cache import keys

    monkeypatch.setattr(keys, "LIBRARIES", (*keys.LIBRARIES, "no-such-distribution"))
    keys.library_versions.cache_clear()
    try:
        versions = keys.library_versions()
    finally:
        keys.library_versions.cache_clear()
    assert versions["no-such-distribution"] == "unknown"
    assert versions["torch"] != "unknown"
