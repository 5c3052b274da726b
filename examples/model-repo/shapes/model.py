"""ShapesNet: three conv blocks with BatchNorm, global average pooling and a linear classifier (14k weights)."""

from __future__ import annotations

import torch
from torch import nn

# Inputs are normalized per channel before the network sees them; train.py does it for training, the
# robustness gate does it from the normalization declared in conftest.py (so attack budgets stay in pixels).
MEAN = (0.5, 0.5, 0.5)
STD = (0.25, 0.25, 0.25)


def _block(inputs: int, outputs: int) -> list[nn.Module]:
    return [nn.Conv2d(inputs, outputs, 3, padding=1, bias=False), nn.BatchNorm2d(outputs), nn.ReLU()]


class ShapesNet(nn.Module):
    def __init__(self, num_classes: int = 5, width: int = 16) -> None:
        super().__init__()
        self.features = nn.Sequential(
            *_block(3, width),
            nn.MaxPool2d(2),  # 16x16 -> 8x8
            *_block(width, 2 * width),
            nn.MaxPool2d(2),  # 8x8 -> 4x4
            *_block(2 * width, 2 * width),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.classifier = nn.Linear(2 * width, num_classes)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = self.classifier(self.features(images))
        return logits


def normalize(images: torch.Tensor) -> torch.Tensor:
    mean = torch.tensor(MEAN, device=images.device).view(1, -1, 1, 1)
    std = torch.tensor(STD, device=images.device).view(1, -1, 1, 1)
    return (images - mean) / std
