"""Five small classifiers for 1x8x8 digit images, one per common architecture family.

Every model maps a ``(N, 1, 8, 8)`` float tensor to ``(N, 10)`` logits and ends in a single ``nn.Linear``
named ``classifier`` (the layer to leave out of structural pruning). Only standard modules and out-of-place
operations are used, so Torch-Pruning can trace the models and prune their channels.

``LeNet`` expects inputs normalised with :data:`LENET_MEAN` / :data:`LENET_STD`; every other model takes the
raw ``[0, 1]`` pixels.
"""

from __future__ import annotations

import torch
from torch import nn

IN_CHANNELS = 1
NUM_CLASSES = 10

# Per-channel mean and (unbiased) standard deviation of the digits training images, rounded to 4 decimals.
# ``LeNet`` is trained on ``(x - LENET_MEAN) / LENET_STD``; ``pytest_advprune.zoo.train`` checks these values.
LENET_MEAN: float = 0.3052
LENET_STD: float = 0.3760


def _conv_bn_relu(
    in_channels: int, out_channels: int, *, kernel_size: int = 3, stride: int = 1, groups: int = 1
) -> nn.Sequential:
    """``Conv2d`` (no bias, "same" padding) followed by ``BatchNorm2d`` and ``ReLU``."""
    return nn.Sequential(
        nn.Conv2d(
            in_channels,
            out_channels,
            kernel_size,
            stride=stride,
            padding=kernel_size // 2,
            groups=groups,
            bias=False,
        ),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(),
    )


class MLP(nn.Module):
    """Fully connected family: flatten, two hidden ``Linear`` + ``ReLU`` layers, linear classifier."""

    def __init__(self, hidden: tuple[int, int] = (256, 128), num_classes: int = NUM_CLASSES) -> None:
        super().__init__()
        self.fc1 = nn.Linear(IN_CHANNELS * 8 * 8, hidden[0])
        self.relu1 = nn.ReLU()
        self.fc2 = nn.Linear(hidden[0], hidden[1])
        self.relu2 = nn.ReLU()
        self.classifier = nn.Linear(hidden[1], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.flatten(x, 1)
        x = self.relu1(self.fc1(x))
        x = self.relu2(self.fc2(x))
        logits: torch.Tensor = self.classifier(x)
        return logits


class LeNet(nn.Module):
    """Classic small CNN family (LeNet-5 style): two conv + max-pool stages, then three ``Linear`` layers.

    Expects normalised inputs ``(x - LENET_MEAN) / LENET_STD``.
    """

    def __init__(
        self,
        channels: tuple[int, int] = (16, 32),
        hidden: tuple[int, int] = (120, 84),
        num_classes: int = NUM_CLASSES,
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(IN_CHANNELS, channels[0], 3, padding=1)
        self.relu1 = nn.ReLU()
        self.pool1 = nn.MaxPool2d(2)  # 8x8 -> 4x4
        self.conv2 = nn.Conv2d(channels[0], channels[1], 3, padding=1)
        self.relu2 = nn.ReLU()
        self.pool2 = nn.MaxPool2d(2)  # 4x4 -> 2x2
        self.fc1 = nn.Linear(channels[1] * 2 * 2, hidden[0])
        self.relu3 = nn.ReLU()
        self.fc2 = nn.Linear(hidden[0], hidden[1])
        self.relu4 = nn.ReLU()
        self.classifier = nn.Linear(hidden[1], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool1(self.relu1(self.conv1(x)))
        x = self.pool2(self.relu2(self.conv2(x)))
        x = torch.flatten(x, 1)
        x = self.relu3(self.fc1(x))
        x = self.relu4(self.fc2(x))
        logits: torch.Tensor = self.classifier(x)
        return logits


class BasicBlock(nn.Module):
    """ResNet basic block: two 3x3 conv + BN, with an identity or 1x1-conv + BN projection shortcut."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut: nn.Module
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )
        else:
            self.shortcut = nn.Identity()
        self.relu2 = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.relu1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out = self.relu2(out + self.shortcut(x))
        return out


class ResNet(nn.Module):
    """Residual network family (a small ResNet): conv stem, three stages of basic blocks, global pooling."""

    def __init__(self, widths: tuple[int, int, int] = (32, 64, 96), num_classes: int = NUM_CLASSES) -> None:
        super().__init__()
        self.stem = _conv_bn_relu(IN_CHANNELS, widths[0])
        self.layer1 = BasicBlock(widths[0], widths[0])  # 8x8
        self.layer2 = BasicBlock(widths[0], widths[1], stride=2)  # 4x4
        self.layer3 = BasicBlock(widths[1], widths[2], stride=2)  # 2x2
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(widths[2], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        x = self.layer3(self.layer2(self.layer1(x)))
        x = torch.flatten(self.pool(x), 1)
        logits: torch.Tensor = self.classifier(x)
        return logits


class DepthwiseSeparable(nn.Module):
    """MobileNetV1 block: 3x3 depthwise conv + BN + ReLU, then 1x1 pointwise conv + BN + ReLU."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.depthwise = _conv_bn_relu(in_channels, in_channels, stride=stride, groups=in_channels)
        self.pointwise = _conv_bn_relu(in_channels, out_channels, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.pointwise(self.depthwise(x))
        return out


class MobileNet(nn.Module):
    """Efficient-network family (MobileNetV1 style): conv stem, depthwise-separable blocks, global pooling."""

    def __init__(
        self,
        stem: int = 32,
        blocks: tuple[tuple[int, int], ...] = ((64, 1), (96, 2), (96, 1), (128, 2), (128, 1)),
        num_classes: int = NUM_CLASSES,
    ) -> None:
        super().__init__()
        self.stem = _conv_bn_relu(IN_CHANNELS, stem)
        layers: list[nn.Module] = []
        channels = stem
        for out_channels, stride in blocks:
            layers.append(DepthwiseSeparable(channels, out_channels, stride))
            channels = out_channels
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(self.stem(x))
        x = torch.flatten(self.pool(x), 1)
        logits: torch.Tensor = self.classifier(x)
        return logits


class VGG(nn.Module):
    """Plain deep CNN family (a small VGG): 3x3 conv + BN + ReLU stacks with max pooling, then a Linear."""

    def __init__(
        self,
        config: tuple[int | str, ...] = (32, 32, "M", 64, 64, "M", 96, 96, "M"),
        num_classes: int = NUM_CLASSES,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = IN_CHANNELS
        for item in config:
            if item == "M":
                layers.append(nn.MaxPool2d(2))
            else:
                if not isinstance(item, int):
                    raise ValueError(f"VGG config entries must be channel counts or 'M', got {item!r}")
                layers.append(_conv_bn_relu(channels, item))
                channels = item
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(channels, num_classes)  # three poolings: 8x8 -> 1x1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.flatten(self.features(x), 1)
        logits: torch.Tensor = self.classifier(x)
        return logits
