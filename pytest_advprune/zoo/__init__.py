"""The embedded model zoo: five small digit classifiers and their trained weights.

Weights live in ``pytest_advprune/zoo/weights/<name>.pt`` as plain state dicts and are regenerated
deterministically with ``python -m pytest_advprune.zoo.train``.
"""

from __future__ import annotations

from pathlib import Path

from torch import nn

from pytest_advprune.checkpoints import load_model
from pytest_advprune.zoo.architectures import LENET_MEAN, LENET_STD, MLP, VGG, LeNet, MobileNet, ResNet

__all__ = [
    "ARCHITECTURES",
    "MODEL_NAMES",
    "NORMALIZATION",
    "TRAIN_COMMAND",
    "WEIGHTS_DIR",
    "build",
    "load",
    "weights_path",
]

MODEL_NAMES: tuple[str, ...] = ("lenet", "mlp", "mobilenet", "resnet", "vgg")

ARCHITECTURES: dict[str, type[nn.Module]] = {
    "lenet": LeNet,
    "mlp": MLP,
    "mobilenet": MobileNet,
    "resnet": ResNet,
    "vgg": VGG,
}

# Per-channel ``(mean, std)`` each model expects its inputs normalised with, or None for raw [0, 1] pixels.
NORMALIZATION: dict[str, tuple[tuple[float, ...], tuple[float, ...]] | None] = {
    "lenet": ((LENET_MEAN,), (LENET_STD,)),
    "mlp": None,
    "mobilenet": None,
    "resnet": None,
    "vgg": None,
}

WEIGHTS_DIR: Path = Path(__file__).resolve().parent / "weights"
TRAIN_COMMAND = "python -m pytest_advprune.zoo.train"


def _check_name(name: str) -> None:
    if name not in ARCHITECTURES:
        raise KeyError(f"unknown zoo model {name!r}; known models: {', '.join(MODEL_NAMES)}")


def build(name: str) -> nn.Module:
    """A freshly initialised (untrained) instance of the architecture called ``name``."""
    _check_name(name)
    return ARCHITECTURES[name]()


def weights_path(name: str) -> Path:
    """Where the trained state dict of model ``name`` is stored."""
    _check_name(name)
    return WEIGHTS_DIR / f"{name}.pt"


def load(name: str) -> nn.Module:
    """The trained model ``name`` on the CPU, in eval mode."""
    path = weights_path(name)
    if not path.is_file():
        raise FileNotFoundError(
            f"zoo weights for {name!r} not found at {path}; regenerate them with `{TRAIN_COMMAND} --models {name}`"
        )
    return load_model(build(name), path)  # tensors only: weights_only=True
