"""Forward passes in pixel space: images in [0, 1] go in, whatever the model expects is fed to it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from pytest_advprune.registry import Normalization


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Run ``model`` in eval mode and give every submodule its own mode back afterwards.

    Attacks and evaluations must not touch the model: in train mode, BatchNorm would fold the images into
    its running statistics (a change to the state dict) and couple the samples of a batch, and dropout
    would make outputs random. Modes are restored module by module, since a model may mix them (a frozen
    BatchNorm inside a model being fine-tuned); ``model.train(was_training)`` would flatten them.
    """
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for module, training in modes:
            module.training = training


def _statistics(images: torch.Tensor, normalization: Normalization) -> tuple[torch.Tensor, torch.Tensor]:
    mean, std = (torch.tensor(v, dtype=images.dtype, device=images.device).view(1, -1, 1, 1) for v in normalization)
    return mean, std


def normalize(images: torch.Tensor, normalization: Normalization | None) -> torch.Tensor:
    if normalization is None:
        return images
    mean, std = _statistics(images, normalization)
    return (images - mean) / std


def denormalize(images: torch.Tensor, normalization: Normalization | None) -> torch.Tensor:
    if normalization is None:
        return images
    mean, std = _statistics(images, normalization)
    return images * std + mean


class PixelSpace(nn.Module):
    """``model`` behind its normalization: takes images in [0, 1].

    It takes the wrapped model's train/eval mode: a new module starts in training mode, and an attack
    that "restores" the mode it found (torchattacks does) would otherwise put the model into training mode.
    """

    def __init__(self, model: nn.Module, normalization: Normalization) -> None:
        super().__init__()
        self.model = model
        self.normalization = normalization
        self.training = model.training

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return forward_in_pixel_space(self.model, images, self.normalization)


def forward_in_pixel_space(model: nn.Module, images: torch.Tensor, normalization: Normalization | None) -> torch.Tensor:
    logits: torch.Tensor = model(normalize(images, normalization))
    return logits


@torch.no_grad()
def correct_predictions(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    normalization: Normalization | None,
    batch_size: int = 512,
) -> torch.Tensor:
    """Boolean vector: sample ``i`` is classified correctly by ``model`` (in eval mode)."""
    with eval_mode(model):
        hits = [
            forward_in_pixel_space(model, images[i : i + batch_size], normalization).argmax(dim=1)
            == labels[i : i + batch_size]
            for i in range(0, len(images), batch_size)
        ]
    return torch.cat(hits).cpu() if hits else torch.zeros(0, dtype=torch.bool)
