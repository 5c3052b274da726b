"""Checkpoints load tensors only unless the caller opts in."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from pytest_advprune import load_model, load_state_dict
from pytest_advprune.checkpoints import CheckpointError


def small() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 10))


def test_state_dict_round_trip(tmp_path: Path) -> None:
    model = small()
    torch.save(model.state_dict(), tmp_path / "m.pt")
    loaded = load_model(nn.Sequential(nn.Flatten(), nn.Linear(64, 10)), tmp_path / "m.pt")
    assert torch.equal(loaded[1].weight, model[1].weight)
    assert not loaded.training


def test_training_loop_layout_is_unwrapped(tmp_path: Path) -> None:
    model = small()
    torch.save({"state_dict": model.state_dict(), "epoch": 3}, tmp_path / "m.pt")
    assert torch.equal(load_state_dict(tmp_path / "m.pt")["1.weight"], model[1].weight)


def test_pickled_model_needs_an_explicit_opt_in(tmp_path: Path) -> None:
    torch.save(small(), tmp_path / "whole.pt")
    with pytest.raises(CheckpointError, match=r"whole\.pt.*holds more than tensors.*trusted=True"):
        load_state_dict(tmp_path / "whole.pt")
    with pytest.raises(CheckpointError, match="holds a Sequential, not a state dict"):
        load_state_dict(tmp_path / "whole.pt", trusted=True)


def test_missing_checkpoint_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match=r"nothere\.pt' does not exist"):
        load_state_dict(tmp_path / "nothere.pt")
