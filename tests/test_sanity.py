"""sanity.py: the flags that point at gradient masking or a broken attack, per cell and across cells."""

from __future__ import annotations

import textwrap

import pytest
import torch
from conftest import tiny_conv_net
from scipy.stats import binomtest
from torch import nn

from pytest_advprune.sanity import (
    Flag,
    cell_flags,
    looks_like_probabilities,
    matrix_flags,
    zero_gradient_count,
)


def outcomes(whitebox: list[bool], transfer: list[bool]) -> dict[str, list[bool]]:
    n = len(whitebox)
    return {
        "base_clean": [True] * n,
        "pruned_clean": [True] * n,
        "base_adversarial": [False] * n,
        "pruned_adversarial": whitebox,
        "transfer_adversarial": transfer,
    }


def test_transfer_beating_whitebox_is_flagged_only_when_significant() -> None:
    # 12 samples only the transfer examples fool, none the other way: McNemar's exact p = 2 * 0.5**12.
    flagged = cell_flags(outcomes([True] * 40, [False] * 12 + [True] * 28), {}, {})
    assert [f.name for f in flagged] == ["transfer_beats_whitebox"]
    assert binomtest(0, 12, 0.5).pvalue < 0.05 and "28/40 < white-box 40/40" in flagged[0].detail
    # 3 against 1: not significant (binomial p = 0.625), not flagged.
    assert binomtest(1, 4, 0.5).pvalue > 0.05
    assert cell_flags(outcomes([True] * 3 + [False] + [True] * 36, [False] * 3 + [True] * 37), {}, {}) == []


@pytest.mark.parametrize(("zero", "flagged"), [(0, False), (1, False), (2, True), (3, True)])
def test_zero_gradients_are_flagged_beyond_a_few_samples(zero: int, flagged: bool) -> None:
    found = cell_flags(outcomes([True] * 50, [True] * 50), {"base": 0, "pruned": zero}, {})
    assert [f.name for f in found] == (["zero_gradients"] if flagged else [])


def test_zero_gradient_count_matches_autograd_per_sample() -> None:
    model = tiny_conv_net()
    images = torch.rand(20, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    images[:5] = 0.0  # with a ReLU net and zero inputs some samples may have no gradient at all
    labels = torch.arange(20) % 10
    expected = 0
    for x, y in zip(images, labels, strict=True):
        x = x[None].clone().requires_grad_(True)
        (gradient,) = torch.autograd.grad(nn.functional.cross_entropy(model(x), y[None]), x)
        expected += int(bool((gradient == 0).all()))
    assert zero_gradient_count(model, images, labels, None, batch_size=7) == expected
    assert not model.training and all(p.grad is None for p in model.parameters())

    dead = nn.Sequential(nn.Flatten(), nn.Linear(64, 10), nn.ReLU()).eval()  # negative logits: no gradient
    with torch.no_grad():
        dead[1].bias.fill_(-100.0)
    assert zero_gradient_count(dead, images, labels, None, batch_size=7) == 20


def test_probabilities_are_told_from_logits() -> None:
    logits = torch.randn(8, 10, generator=torch.Generator().manual_seed(0))
    assert not looks_like_probabilities(logits)
    assert looks_like_probabilities(logits.softmax(dim=1))
    assert not looks_like_probabilities(logits.sigmoid())  # in [0, 1] but rows do not sum to 1


def record(
    attack: str, eps: float, base: float, pruned: float, model: str = "m", **params: object
) -> dict[str, object]:
    return {
        "model": model,
        "pruning": "channel_0.5",
        "attack": attack,
        "params": {"eps": eps, **params},
        "metrics": {"base_robust_accuracy": base, "pruned_robust_accuracy": pruned},
    }


def test_matrix_flags_compare_cells_of_one_model_and_pruning() -> None:
    cells = {
        "fgsm": record("fgsm", 0.1, base=20.0, pruned=30.0),  # FGSM beats PGD on the base by 10 points
        "pgd": record("pgd_linf", 0.1, base=30.0, pruned=31.0, steps=10),
        "pgd_big": record("pgd_linf", 0.2, base=35.0, pruned=10.0, steps=10),  # base rises with eps
        "square": record("square", 0.1, base=29.0, pruned=25.0),  # beats PGD on pruned by 6
        "other_model_fgsm": record("fgsm", 0.1, base=0.0, pruned=0.0, model="n"),  # no PGD cell to compare
        "pgd_other_steps": record("pgd_linf", 0.3, base=90.0, pruned=90.0, steps=20),  # other params: no pair
    }
    found = {cell: [(f.name, f.detail) for f in flags] for cell, flags in matrix_flags(cells, noise=2.0).items()}
    assert found == {
        "fgsm": [("fgsm_beats_pgd", "base robust accuracy 20 vs 30 under pgd")],
        "pgd_big": [("accuracy_rises_with_eps", "base robust accuracy 35 at eps=0.2 vs 30 at eps=0.1 (pgd)")],
        "square": [("square_beats_pgd", "pruned robust accuracy 25 vs 31 under pgd")],
    }


@pytest.mark.parametrize("pgd_family", ["apgd_ce", "apgd_dlr", "apgd_t"])
def test_fgsm_and_square_are_compared_with_the_apgd_attacks_too(pgd_family: str) -> None:
    cells = {
        "fgsm": record("fgsm", 0.1, base=20.0, pruned=30.0),
        "square": record("square", 0.1, base=29.0, pruned=25.0),
        "apgd": record(pgd_family, 0.1, base=30.0, pruned=31.0, steps=100),
        "apgd_l2": record("apgd_ce_l2", 0.1, base=90.0, pruned=90.0),  # another norm: never compared
    }
    found = {cell: [f.name for f in flags] for cell, flags in matrix_flags(cells, noise=2.0).items()}
    assert found == {"fgsm": ["fgsm_beats_pgd"], "square": ["square_beats_pgd"]}


def test_differences_within_noise_raise_no_flag() -> None:
    cells = {"fgsm": record("fgsm", 0.1, 29.0, 29.0), "pgd": record("pgd_linf", 0.1, 30.0, 30.0)}
    assert matrix_flags(cells, noise=2.0) == {}


SOFTMAX_MODEL = textwrap.dedent(
    """
    @pytest_advprune.register_model("tiny-softmax", dataset="tiny")
    def tiny_softmax():
        return nn.Sequential(tiny_linear(), nn.Softmax(dim=1))
    """
)


@pytest.mark.parametrize("mode", ["warn", "fail"])
def test_a_softmax_model_is_flagged_in_the_summary_and_fails_when_asked(
    tiny_project: pytest.Pytester, mode: str
) -> None:
    tiny_project.makeconftest((tiny_project.path / "conftest.py").read_text() + SOFTMAX_MODEL)
    tiny_project.makeini(
        "[pytest]\nadvprune_models = tiny-softmax\nadvprune_prunings = l1_unstructured:0.5\n"
        "advprune_attacks =\n    fgsm:0.1\n    fgsm:0.2\nadvprune_finetune_epochs = 1\nadvprune_max_clean_drop = 100\n"
        f"advprune_sanity = {mode}\n"
    )
    result = tiny_project.runpytest("--update-baselines")
    # The model's own flag is printed once, with the cells it concerns.
    result.stdout.fnmatch_lines(
        [
            "sanity flags on 2 cells *",
            "  2 cells (tiny-softmax-l1_unstructured_0.5-fgsm_0.1, tiny-softmax-l1_unstructured_0.5-fgsm_0.2): "
            "probability_outputs: base model (the model returns probabilities, not logits*",
        ]
    )
    if mode == "warn":
        assert result.stdout.str().count("probability_outputs: base model") == 1
        result.assert_outcomes(passed=2)
    else:
        result.assert_outcomes(failed=2)
        result.stdout.fnmatch_lines(["*raised sanity flags (advprune_sanity = fail)*"])


def test_flag_descriptions_say_what_they_usually_mean() -> None:
    assert "gradient masking" in Flag("transfer_beats_whitebox", "x").describe()


def test_fgsm_beating_a_pgd_too_short_to_cross_its_ball_says_to_set_alpha() -> None:
    from pytest_advprune.sanity import matrix_flags

    def record(attack: str, params: dict[str, object], robust: float) -> dict[str, object]:
        metrics = {"base_robust_accuracy": robust, "pruned_robust_accuracy": robust}
        return {"model": "m", "pruning": "p", "attack": attack, "params": params, "metrics": metrics}

    cells = {
        "fgsm": record("fgsm", {"eps": 0.1}, 14.0),
        "pgd": record("pgd_linf", {"eps": 0.1, "alpha": 0.0125, "steps": 5}, 46.0),
    }
    flags = [flag.describe() for flag in matrix_flags(cells, 2.0)["fgsm"]]
    assert flags and all("steps x alpha = 0.0625 is shorter than eps = 0.1" in f for f in flags)
    assert all("alpha=0.05 (2.5 * eps / steps)" in f for f in flags)
    cells["pgd"] = record("pgd_linf", {"eps": 0.1, "alpha": 0.0125, "steps": 20}, 46.0)
    assert all("steps x alpha" not in flag.describe() for flag in matrix_flags(cells, 2.0)["fgsm"])
