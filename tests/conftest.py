"""Shared helpers for the plugin's own tests: a tiny registered model and dataset for pytester projects."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest
import torch

from pytest_advprune.builtins import load_builtins
from pytest_advprune.data import Dataset
from pytest_advprune.options import Settings


def _import_everything_heavy() -> None:
    """pytester's in-process runs drop the modules first imported inside them, and torch (with the
    submodules it imports lazily) cannot be imported twice in one process. So run the whole pipeline
    once on a toy model here, before any pytester run, to import everything it will ever need."""
    import torch
    from torch import nn

    from pytest_advprune.attacks import build_attack, craft
    from pytest_advprune.pruning import FineTuneSettings, PruningContext, model_size, prune_model
    from pytest_advprune.registry import ATTACKS, PRUNINGS

    load_builtins()
    generator = torch.Generator().manual_seed(0)
    images, labels = torch.rand(8, 1, 8, 8, generator=generator), torch.arange(8) % 2
    data = Dataset("warmup", images, labels, images, labels, num_classes=2)
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(144, 2))
    context = PruningContext(data, torch.device("cpu"), 0, None)
    for name in ("l1_unstructured", "channel"):
        pruned = prune_model(model, PRUNINGS.get(name), 0.5, context, FineTuneSettings(epochs=1))
        model_size(pruned, context.example_inputs)
    for name in ("fgsm", "pgd_linf"):
        entry = ATTACKS.get(name)
        craft(
            build_attack(entry, dict(entry.defaults), model, ((0.5,), (0.5,)), 0),
            entry,
            dict(entry.defaults),
            images,
            labels,
            ((0.5,), (0.5,)),
            0,
        )
    import sklearn.datasets  # noqa: F401


_import_everything_heavy()

pytest_plugins = ["pytester"]

# A project as a user would write it: a dataset and a model registered in conftest.py. The labels are
# the argmax of a fixed linear map of the pixels, and the model is that map plus a little seeded noise:
# a near-perfect classifier without training. TINY_SEED swaps in other noise, the way a retrained
# model has other weights; TINY_NOISE scales it, the way a worse retrain is a worse classifier.
TINY_CONFTEST = textwrap.dedent(
    """
    import os

    import torch
    from torch import nn

    import pytest_advprune
    from pytest_advprune.data import Dataset


    @pytest_advprune.register_dataset("tiny")
    def tiny():
        generator = torch.Generator().manual_seed(0)
        projection = torch.randn(64, 10, generator=generator)
        images = torch.rand(96, 1, 8, 8, generator=generator)
        labels = (images.flatten(1) @ projection).argmax(1)
        return Dataset("tiny", images[:64], labels[:64], images[64:], labels[64:], num_classes=10)


    @pytest_advprune.register_model("tiny-linear", dataset="tiny")
    def tiny_linear():
        projection = torch.randn(64, 10, generator=torch.Generator().manual_seed(0))
        noise = torch.randn(10, 64, generator=torch.Generator().manual_seed(int(os.environ.get("TINY_SEED", "0"))))
        model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
        with torch.no_grad():
            model[1].weight.copy_(projection.T + float(os.environ.get("TINY_NOISE", "0.05")) * noise)
            model[1].bias.zero_()
        return model
    """
)

TINY_INI = textwrap.dedent(
    """
    [pytest]
    advprune_prunings =
        l1_unstructured:0.5
        random_unstructured:0.3
    advprune_attacks =
        fgsm:0.1
        pgd_linf:eps=0.1,steps=3
    advprune_finetune_epochs = 1
    advprune_max_clean_drop = 100
    """
)

CELL_TEST = textwrap.dedent(
    """
    def test_robustness(cell_result, check_baseline):
        check_baseline(cell_result)
    """
)


def plain_settings(**overrides: Any) -> Settings:
    """Settings for unit tests that build them without a pytest config: small, fast, every pattern open."""
    values: dict[str, Any] = {
        "device": "cpu",
        "update_baselines": False,
        "baselines_dir": Path("baselines"),
        "model_patterns": ("*",),
        "pruning_patterns": ("*",),
        "attack_patterns": ("*",),
        "model_specs": None,
        "pruning_specs": None,
        "attack_specs": None,
        "samples": None,
        "seed": 0,
        "tolerance": 2.0,
        "metric_tolerances": {},
        "finetune_epochs": 1,
        "finetune_learning_rate": 1e-3,
        "threads": 1,
        "batch_size": 64,
        "timing_batch_sizes": (1,),
        "timing_rounds": 1,
    }
    values.update(overrides)
    return Settings(**values)


def baseline_tree(root: Path) -> dict[str, bytes]:
    """Every file under ``root/baselines`` (temp files too) with its bytes, keyed by relative path."""
    base = root / "baselines"
    return {str(p.relative_to(base)): p.read_bytes() for p in sorted(base.rglob("*")) if p.is_file()}


def tiny_conv_net(seed: int = 0) -> torch.nn.Module:
    """A seeded, untrained conv net with BatchNorm for 1x8x8 inputs: small enough for unit tests."""
    from torch import nn

    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.Conv2d(4, 8, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, 10),
    ).eval()


@pytest.fixture
def tiny_project(pytester: pytest.Pytester) -> pytest.Pytester:
    """A pytester project with the tiny model, a 1 x 2 x 2 matrix and one cell test file."""
    pytester.makeconftest(TINY_CONFTEST)
    pytester.makeini(TINY_INI)
    pytester.makepyfile(test_cells=CELL_TEST)
    return pytester


@pytest.fixture(autouse=True)
def _cache_key_of_the_test(monkeypatch: pytest.MonkeyPatch) -> None:
    """Inner runs make their cache key in pytester's home folder, never in the user's configuration."""
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    monkeypatch.delenv("ADVPRUNE_CACHE_KEY", raising=False)


@pytest.fixture(autouse=True)
def _inner_runs_outside_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    """pytest prints failure messages in full in its short summary when it detects CI (``CI`` or
    ``BUILD_NUMBER`` set), so an inner pytester run would print each message twice there and not here.
    The tests count messages, so every inner run sees the same non-CI environment wherever it runs."""
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.delenv("BUILD_NUMBER", raising=False)
