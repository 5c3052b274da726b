"""torchvision architectures work end to end: a CIFAR-style ``resnet18`` registers, prunes and attacks.

A pytester project registers ``torchvision.models.resnet18(num_classes=10)`` adapted to 32x32 inputs
the usual CIFAR way, with seeded random weights (nothing is downloaded), on a small random 32x32 RGB
dataset, and runs every built-in pruning family against two attacks. The weights are random, so the
accuracies mean nothing; what is checked is that the whole pipeline copes with a real torchvision
model (residual connections, BatchNorm, 11M parameters): Torch-Pruning removes channels across the
residual groups, the masking methods reach the asked sparsity, attacks keep to their budget, baselines
are written, and a re-run reproduces the verdicts exactly.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import pytest
from conftest import baseline_tree

RESNET_CONFTEST = textwrap.dedent(
    """
    import torch
    import torchvision
    from torch import nn

    import pytest_advprune
    from pytest_advprune.data import Dataset

    CIFAR10_NORMALIZATION = ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))


    @pytest_advprune.register_dataset("random-cifar")
    def random_cifar():
        # 32x32 RGB noise in [0, 1]; labels cycle through the classes, so they are not all one class. Few
        # images: with 11M parameters every forward pass counts, and the accuracies of random weights mean
        # nothing anyway.
        generator = torch.Generator().manual_seed(0)
        images = torch.rand(8, 3, 32, 32, generator=generator)
        labels = torch.arange(8) % 10
        return Dataset("random-cifar", images[:4], labels[:4], images[4:], labels[4:], num_classes=10)


    @pytest_advprune.register_model("resnet18-cifar", dataset="random-cifar", normalization=CIFAR10_NORMALIZATION)
    def resnet18_cifar():
        # weights=None: random initialisation, no download. fork_rng keeps the seeding away from the
        # process's global generator.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            model = torchvision.models.resnet18(weights=None, num_classes=10)
            # The CIFAR adaptation: a 3x3 stride-1 stem and no max-pool, so 32x32 inputs are not reduced
            # to 8x8 before the first residual stage.
            model.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
            model.maxpool = nn.Identity()
        return model.eval()
    """
)

# Fine-tuning for one epoch is one optimizer step (4 train images, batch 64); the weights are random,
# so any clean-accuracy drop is allowed. filterwarnings = error, as in this repository: a warning from
# torchvision, Torch-Pruning or torchattacks on this model would fail the run (none is emitted today).
RESNET_INI = textwrap.dedent(
    """
    [pytest]
    filterwarnings = error
    advprune_prunings =
        channel:0.5
        l1_unstructured:0.5
        l1_filter:0.3
    advprune_attacks =
        fgsm:eps=0.0314
        pgd_linf:eps=0.0314,steps=2
    advprune_finetune_epochs = 1
    advprune_max_clean_drop = 100
    """
)

RESNET_TESTS = textwrap.dedent(
    """
    import torch

    from pytest_advprune.evaluation import forward_in_pixel_space
    from pytest_advprune.registry import MODELS


    def test_robustness(cell_result, check_baseline):
        check_baseline(cell_result)


    def test_pieces(advprune_cell, advprune_dataset, base_model, pruned_model, base_adversarial_examples):
        # All the eval images, in order: the run has no --advprune-samples subset.
        images = advprune_dataset.eval_images
        # The threat model holds: every example lies in [0, 1] and within eps of its image (L-inf), and
        # the attack did move the images.
        eps = advprune_cell.attack.kwargs["eps"]
        delta = (base_adversarial_examples - images).abs().amax().item()
        assert 0 < delta <= eps + 1e-6
        assert base_adversarial_examples.min() >= 0 and base_adversarial_examples.max() <= 1

        # The pruned model is a separate, ready-to-use copy whose forward pass still works (two images
        # are enough to show it, and a forward pass of resnet18 is not free on a CPU).
        normalization = MODELS.get(advprune_cell.model).normalization
        assert not pruned_model.training and pruned_model is not base_model
        with torch.no_grad():
            logits = forward_in_pixel_space(pruned_model, images[:2], normalization)
        assert logits.shape == (2, 10) and torch.isfinite(logits).all()

        # Torch-Pruning removed channels for real, through the residual groups; the base keeps its own.
        widths = [m.out_channels for m in pruned_model.modules() if isinstance(m, torch.nn.Conv2d)]
        base_widths = [m.out_channels for m in base_model.modules() if isinstance(m, torch.nn.Conv2d)]
        if advprune_cell.pruning.entry.name == "channel":
            assert all(w < b for w, b in zip(widths, base_widths)), (widths, base_widths)
            assert pruned_model.fc.in_features < 512 and pruned_model.fc.out_features == 10
        else:
            assert widths == base_widths
    """
)

PRUNING_IDS = ("channel_0.5", "l1_unstructured_0.5", "l1_filter_0.3")
ATTACK_IDS = ("fgsm_0.0314", "pgd_linf_0.0314_steps2")
CELLS = [f"resnet18-cifar-{pruning}-{attack}" for pruning in PRUNING_IDS for attack in ATTACK_IDS]


def read_baselines(root: Path) -> dict[str, dict[str, Any]]:
    """Every baseline file of the project, parsed, keyed by its path relative to ``baselines/``."""
    return {name: json.loads(content) for name, content in baseline_tree(root).items()}


def verdicts(report: Path) -> dict[str, tuple[str, dict[str, Any]]]:
    """Cell id -> (status, metrics) from an ``--advprune-report`` JSON file."""
    cells = json.loads(report.read_text())["cells"]
    return {cell: (record["status"], record["metrics"]) for cell, record in cells.items()}


def flipped_samples(report: Path) -> dict[str, int]:
    """Cell id -> how many per-sample outcomes differ from the stored baseline, over every accuracy."""
    cells = json.loads(report.read_text())["cells"]
    return {
        cell: sum(c["regressions"] + c["improvements"] for c in record["comparisons"]) for cell, record in cells.items()
    }


def test_resnet18_prunes_attacks_and_reproduces(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(RESNET_CONFTEST)
    pytester.makeini(RESNET_INI)
    pytester.makepyfile(test_cells=RESNET_TESTS)

    # Update: every cell is computed and its baseline created; test_pieces runs over the same cells.
    result = pytester.runpytest("--update-baselines", "-v")
    result.assert_outcomes(passed=2 * len(CELLS))
    for cell in CELLS:
        result.stdout.fnmatch_lines([f"*test_robustness[[]{cell}[]] PASSED*"])
    result.stdout.fnmatch_lines([f"*{len(CELLS)} cells: {len(CELLS)} created*"])
    stored = read_baselines(pytester.path)
    assert sorted(stored) == sorted(
        f"resnet18-cifar/{pruning}/{attack}.json" for pruning in PRUNING_IDS for attack in ATTACK_IDS
    )

    for name, baseline in stored.items():
        metrics, pruning = baseline["metrics"], name.split("/")[1]
        assert metrics["samples"] == 4
        assert metrics["base_parameters"] == 11_173_962  # resnet18 with a 10-way head and a bias-free 3x3 stem
        percentages = [v for k, v in metrics.items() if k.endswith(("_accuracy", "_rate")) and v is not None]
        assert percentages and all(0.0 <= v <= 100.0 for v in percentages), metrics
        if pruning == "channel_0.5":
            # Half the channels of every group: about a quarter of the parameters and MACs remain.
            assert metrics["pruned_parameters"] < 0.4 * metrics["base_parameters"], metrics
            assert metrics["pruned_macs"] < 0.4 * metrics["base_macs"], metrics
        else:
            # Masking keeps every tensor and all the arithmetic.
            assert metrics["pruned_parameters"] == metrics["base_parameters"]
            assert metrics["pruned_macs"] == metrics["base_macs"]
        if pruning == "l1_unstructured_0.5":
            # Half of the Conv/Linear weights; BatchNorm and biases are not pruned, so just under 50%.
            assert 49.5 < metrics["sparsity"] <= 50.0, metrics
        if pruning == "l1_filter_0.3":
            assert 25.0 < metrics["sparsity"] < 35.0, metrics

    # Check: every cell passes against the baselines just written, with every per-sample outcome as
    # stored (a fresh session reproduces the update run bit for bit), and nothing is rewritten.
    first_report = pytester.path / "first.json"
    result = pytester.runpytest(f"--advprune-report={first_report}")
    result.assert_outcomes(passed=2 * len(CELLS))
    result.stdout.fnmatch_lines([f"*{len(CELLS)} cells: {len(CELLS)} passed*"])
    assert read_baselines(pytester.path) == stored
    first = verdicts(first_report)
    assert sorted(first) == sorted(CELLS)
    assert {status for status, _ in first.values()} == {"passed"}
    assert flipped_samples(first_report) == dict.fromkeys(CELLS, 0)
