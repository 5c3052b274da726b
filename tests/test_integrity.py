"""Integrity checks in every cell: an attack or pruning that changes the base model (weights or train/eval
flags) fails its cell naming it, and the base model is restored for the other cells."""

from __future__ import annotations

import textwrap

import pytest

SLOPPY = textwrap.dedent(
    """
    import torch
    import pytest_advprune


    @pytest_advprune.register_attack("leaves_training_mode", primary="eps", norm="Linf", eps=0.1)
    def leaves_training_mode(model, eps):
        def attack(images, labels):
            model.train()  # forgets to restore the mode it found
            return images
        return attack


    @pytest_advprune.register_attack("nudges_weights", primary="eps", norm="Linf", eps=0.1)
    def nudges_weights(model, eps):
        def attack(images, labels):
            with torch.no_grad():
                next(model.parameters()).add_(0.01)
            return images
        return attack


    @pytest_advprune.register_attack("spares_the_base", primary="eps", norm="Linf", eps=0.1)
    def spares_the_base(model, eps):
        def attack(images, labels):
            # only the pruned model has weight matrices that are half zeros
            if any(float((p == 0).float().mean()) > 0.3 for p in model.parameters() if p.dim() > 1):
                with torch.no_grad():
                    next(model.parameters()).add_(0.01)
            return images
        return attack


    BUILT = []


    @pytest_advprune.register_model("remembered", dataset="tiny")
    def remembered():
        BUILT.append(tiny_linear())
        return BUILT[-1]


    @pytest_advprune.register_pruning("in_place", default_amount=0.5, fine_tune=False)
    def in_place(model, amount, context):
        # A recipe that prunes "the" model it kept a reference to, not the copy it was given.
        with torch.no_grad():
            BUILT[-1][1].weight.mul_(1 - amount)
        return model
    """
)


@pytest.mark.parametrize(
    ("attack", "change"),
    [
        ("leaves_training_mode", "the train/eval mode of 3 module(s): '(the model)' (training)"),
        ("nudges_weights", "its weights"),
    ],
)
def test_an_attack_that_changes_the_base_fails_its_cell_and_the_base_is_restored(
    tiny_project: pytest.Pytester, attack: str, change: str
) -> None:
    tiny_project.makeconftest((tiny_project.path / "conftest.py").read_text() + SLOPPY)
    tiny_project.makeini(
        "[pytest]\nadvprune_models = tiny-linear\nadvprune_prunings = l1_unstructured:0.5\n"
        f"advprune_attacks =\n    {attack}:0.1\n    fgsm:0.1\n"
        "advprune_finetune_epochs = 1\nadvprune_max_clean_drop = 100\n"
    )
    result = tiny_project.runpytest("--update-baselines")
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(
        [
            f"*advprune: attack {attack!r} (registered by conftest.*) changed the base model 'tiny-linear': {change}*"
            "The base model was restored for the other cells.*",
        ]
    )
    # The fgsm cell measured the registered model: its baseline equals a run without the sloppy attack.
    fgsm = (tiny_project.path / "baselines/tiny-linear/l1_unstructured_0.5/fgsm_0.1.json").read_bytes()
    tiny_project.makeini(
        "[pytest]\nadvprune_models = tiny-linear\nadvprune_prunings = l1_unstructured:0.5\n"
        "advprune_attacks = fgsm:0.1\nadvprune_finetune_epochs = 1\n"
        "advprune_max_clean_drop = 100\n"
    )
    tiny_project.runpytest().assert_outcomes(passed=1)
    assert (tiny_project.path / "baselines/tiny-linear/l1_unstructured_0.5/fgsm_0.1.json").read_bytes() == fgsm


def test_a_pruning_that_changes_the_base_in_place_fails_naming_it(tiny_project: pytest.Pytester) -> None:
    tiny_project.makeconftest((tiny_project.path / "conftest.py").read_text() + SLOPPY)
    tiny_project.makeini(
        "[pytest]\nadvprune_models = remembered\nadvprune_prunings = in_place:0.5\nadvprune_attacks = fgsm:0.1\n"
    )
    result = tiny_project.runpytest("--update-baselines")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        ["*advprune: pruning 'in_place' (registered by conftest.*) changed the base model 'remembered': its weights*"]
    )
    assert not (tiny_project.path / "baselines").exists()


def test_an_attack_that_changes_the_pruned_model_fails_its_cell_and_is_never_cached(
    tiny_project: pytest.Pytester,
) -> None:
    tiny_project.makeconftest((tiny_project.path / "conftest.py").read_text() + SLOPPY)
    tiny_project.makeini(
        "[pytest]\nadvprune_models = tiny-linear\nadvprune_prunings = l1_unstructured:0.5\n"
        "advprune_attacks =\n    spares_the_base:0.1\n    fgsm:0.1\n"
        "advprune_finetune_epochs = 1\nadvprune_max_clean_drop = 100\n"
    )
    for _ in range(2):  # the second run meets the same failure: the white-box craft was not cached
        result = tiny_project.runpytest("--update-baselines")
        result.assert_outcomes(passed=1, errors=1)
        result.stdout.fnmatch_lines(
            [
                "*advprune: attack 'spares_the_base' (registered by conftest.*) changed the pruned model "
                "'tiny-linear-l1_unstructured_0.5': its weights*The pruned model was restored for the other cells.*"
            ]
        )
