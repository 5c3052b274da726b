"""Checkpoints load tensors only unless the caller opts in."""

from __future__ import annotations

import pickle
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from pytest_advprune import load_model, load_state_dict, paths
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


@pytest.fixture
def rootdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Relative paths resolve against ``tmp_path``; the previous rootdir comes back afterwards."""
    monkeypatch.setattr(paths, "_rootdir", None)  # restored by monkeypatch at teardown
    paths.set_rootdir(tmp_path)
    return tmp_path.resolve()


def test_relative_paths_resolve_against_the_rootdir(rootdir: Path) -> None:
    model = small()
    (rootdir / "checkpoints").mkdir()
    torch.save(model.state_dict(), rootdir / "checkpoints" / "m.pt")
    loaded = load_model(nn.Sequential(nn.Flatten(), nn.Linear(64, 10)), "checkpoints/m.pt")
    assert torch.equal(loaded[1].weight, model[1].weight)
    with pytest.raises(CheckpointError) as caught:
        load_state_dict("checkpoints/other.pt")
    assert str(caught.value) == (
        f"Checkpoint 'checkpoints/other.pt' (looked for {rootdir / 'checkpoints' / 'other.pt'}; relative paths "
        f"resolve against the rootdir {rootdir}) does not exist."
    )


def write_damaged_files(root: Path) -> None:
    torch.save(nn.Linear(64, 64).state_dict(), root / "full.pt")
    whole = (root / "full.pt").read_bytes()
    (root / "truncated.pt").write_bytes(whole[: len(whole) // 2])
    torch.save(nn.Linear(64, 64).state_dict(), root / "legacy.pt", _use_new_zipfile_serialization=False)
    legacy = (root / "legacy.pt").read_bytes()
    (root / "legacy-truncated.pt").write_bytes(legacy[: len(legacy) // 2])
    (root / "notes.pt").write_text("these are my notes, not weights\n")
    (root / "random.pt").write_bytes(bytes((index * 151 + 7) % 256 for index in range(4096)))
    (root / "empty.pt").write_bytes(b"")
    (root / "plain.pt").write_bytes(pickle.dumps({"weight": [1.0, 2.0]}))
    np.savez(root / "arrays.npz", weight=np.zeros(3))
    (root / "arrays.npz").rename(root / "arrays.pt")


@pytest.mark.parametrize(
    ("file", "expected"),
    [
        ("truncated.pt", r"is truncated or damaged \(its zip archive has no central directory"),
        (
            "legacy-truncated.pt",
            r"is truncated or damaged \(torch\.load: RuntimeError: .*\)\. Save or download it again\.$",
        ),
        ("notes.pt", r"is not a PyTorch checkpoint \(a text file, starting with b'these are my not'\)"),
        ("random.pt", r"is not a PyTorch checkpoint \(unknown binary data, starting with b'\\x07"),
        ("empty.pt", r"is empty, not a PyTorch checkpoint"),
        ("plain.pt", r"is not a PyTorch checkpoint \(a plain Python pickle\)\. Point at a file written by torch\.save"),
        (
            "arrays.pt",
            r"is not a PyTorch checkpoint \(a zip archive holding weight\.npy; torch\.save writes data\.pkl\)",
        ),
    ],
)
@pytest.mark.parametrize("trusted", [False, True])
def test_damaged_and_foreign_files_are_named_without_torch_pages(
    tmp_path: Path, file: str, expected: str, trusted: bool
) -> None:
    write_damaged_files(tmp_path)
    with pytest.raises(CheckpointError) as caught:
        load_state_dict(tmp_path / file, trusted=trusted)
    message = str(caught.value)
    assert re.match(rf"Checkpoint '{re.escape(str(tmp_path / file))}' {expected}", message), message
    assert "holds more than tensors" not in message and "weights_only" not in message
    assert len(message) < 400 and len(message.splitlines()) == 1


def nets(width: int) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, width, 3), nn.BatchNorm2d(width), nn.ReLU(), nn.Flatten(), nn.LazyLinear(10))


def test_a_checkpoint_of_another_width_lists_the_shapes(tmp_path: Path) -> None:
    narrow = nn.Sequential(nn.Conv2d(3, 16, 3), nn.BatchNorm2d(16), nn.Conv2d(16, 4, 1))
    torch.save(narrow.state_dict(), tmp_path / "narrow.pt")
    wide = nn.Sequential(nn.Conv2d(3, 32, 3), nn.BatchNorm2d(32), nn.Conv2d(32, 4, 1), nn.Linear(4, 2))
    with pytest.raises(CheckpointError) as caught:
        load_model(wide, tmp_path / "narrow.pt")
    message = str(caught.value)
    assert message.startswith(f"Checkpoint '{tmp_path / 'narrow.pt'}' does not fit Sequential:\n")
    assert "  2 key(s) missing from the checkpoint:\n    3.weight\n    3.bias\n" in message
    assert "  7 key(s) with other shapes:\n    0.weight: checkpoint (16, 3, 3, 3), model (32, 3, 3, 3)\n" in message
    assert "    ... and 2 more\n" in message  # five are listed
    assert "in the checkpoint but not in the model" not in message
    assert message.endswith("(same class and constructor arguments), or point at the checkpoint of this one.")


def test_unexpected_keys_are_listed(tmp_path: Path) -> None:
    torch.save({**small().state_dict(), "head.weight": torch.zeros(2)}, tmp_path / "extra.pt")
    with pytest.raises(
        CheckpointError, match=r"1 key\(s\) in the checkpoint but not in the model:\n    head\.weight\n"
    ):
        load_model(small(), tmp_path / "extra.pt")


def test_a_dataparallel_prefix_is_named_not_stripped(tmp_path: Path) -> None:
    torch.save(nn.DataParallel(small()).state_dict(), tmp_path / "dp.pt")
    with pytest.raises(CheckpointError) as caught:
        load_model(small(), tmp_path / "dp.pt")
    message = str(caught.value)
    assert "2 key(s) missing from the checkpoint:\n    1.weight\n    1.bias" in message
    assert "Every key starts with 'module.': the checkpoint was saved from a DataParallel" in message
    assert "without that prefix it fits" in message and "another architecture" not in message


def test_a_lazy_module_takes_its_shapes_from_the_checkpoint(tmp_path: Path) -> None:
    trained = nets(8)
    trained(torch.rand(1, 3, 5, 5))  # materialises the LazyLinear
    torch.save(trained.state_dict(), tmp_path / "lazy.pt")
    loaded = load_model(nets(8), tmp_path / "lazy.pt")
    assert torch.equal(loaded[4].weight, trained[4].weight)
