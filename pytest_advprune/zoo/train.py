"""Reproducibly train the zoo models on the digits training split and save their state dicts.

Usage::

    python -m pytest_advprune.zoo.train [--models lenet,mlp,...] [--out DIR] [--epochs N] [--seed S]

Training runs on the CPU with one thread, deterministic algorithms and seeded generators, so the same
command produces byte-identical weight files (for a given torch build and CPU). Each model is trained
from the same seed independently of which other models are selected.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from pytest_advprune.data import Dataset, load_digits
from pytest_advprune.evaluation import correct_predictions, normalize
from pytest_advprune.zoo import MODEL_NAMES, NORMALIZATION, TRAIN_COMMAND, WEIGHTS_DIR, build
from pytest_advprune.zoo.architectures import LENET_MEAN, LENET_STD

DEFAULT_SEED = 0
# Epochs per model when --epochs is not given (the MLP is cheap and needs longer to learn the shifts).
DEFAULT_EPOCHS: dict[str, int] = {"lenet": 40, "mlp": 200, "mobilenet": 40, "resnet": 40, "vgg": 40}
BATCH_SIZE = 64
LEARNING_RATE = 3e-3
WEIGHT_DECAY = 1e-4


def check_lenet_constants(train_images: torch.Tensor) -> None:
    """Fail if ``LENET_MEAN`` / ``LENET_STD`` no longer match the training-set statistics."""
    images = train_images.double()
    mean = round(float(images.mean()), 4)
    std = round(float(images.std()), 4)
    if (mean, std) != (LENET_MEAN, LENET_STD):
        raise RuntimeError(
            f"LENET_MEAN/LENET_STD are ({LENET_MEAN}, {LENET_STD}) but the digits training set has "
            f"mean {mean} and std {std}; update pytest_advprune/zoo/architectures.py"
        )


def random_shift(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Shift each image by -1, 0 or +1 pixel along each axis (zero fill), drawn from ``generator``."""
    n, c, h, w = images.shape
    padded = F.pad(images, (1, 1, 1, 1))
    offsets = torch.randint(0, 3, (2, n), generator=generator)
    rows = (offsets[0].view(n, 1) + torch.arange(h)).view(n, 1, h, 1).expand(n, c, h, w)
    cols = (offsets[1].view(n, 1) + torch.arange(w)).view(n, 1, 1, w).expand(n, c, h, w)
    batch = torch.arange(n).view(n, 1, 1, 1).expand(n, c, h, w)
    channel = torch.arange(c).view(1, c, 1, 1).expand(n, c, h, w)
    return padded[batch, channel, rows, cols]


def train_model(name: str, data: Dataset, *, epochs: int, seed: int) -> nn.Module:
    """Build model ``name`` from ``seed`` and train it on the training split; returned in eval mode."""
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    model = build(name)
    images, labels = data.train_images, data.train_labels
    steps_per_epoch = images.shape[0] // BATCH_SIZE  # drop the ragged last batch
    optimizer = torch.optim.AdamW(model.parameters(), lr=LEARNING_RATE, weight_decay=WEIGHT_DECAY)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=LEARNING_RATE, total_steps=epochs * steps_per_epoch
    )
    model.train()
    for _ in range(epochs):
        order = torch.randperm(images.shape[0], generator=generator)
        for step in range(steps_per_epoch):
            index = order[step * BATCH_SIZE : (step + 1) * BATCH_SIZE]
            batch = normalize(random_shift(images[index], generator), NORMALIZATION[name])
            loss = F.cross_entropy(model(batch), labels[index])
            optimizer.zero_grad(set_to_none=True)
            torch.autograd.backward(loss)
            optimizer.step()
            scheduler.step()
    return model.eval()


def _parse_models(value: str) -> list[str]:
    names = [name.strip() for name in value.split(",") if name.strip()]
    unknown = sorted(set(names) - set(MODEL_NAMES))
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown model(s) {', '.join(unknown) or '(none given)'}; known: {', '.join(MODEL_NAMES)}"
        )
    return names


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=TRAIN_COMMAND, description=__doc__.splitlines()[0])
    parser.add_argument(
        "--models",
        type=_parse_models,
        default=list(MODEL_NAMES),
        help=f"comma-separated subset of {','.join(MODEL_NAMES)} (default: all)",
    )
    parser.add_argument("--out", type=Path, default=WEIGHTS_DIR, help=f"output directory (default: {WEIGHTS_DIR})")
    parser.add_argument(
        "--epochs",
        type=int,
        default=None,
        help="training epochs for every selected model (default: "
        + ", ".join(f"{name} {epochs}" for name, epochs in DEFAULT_EPOCHS.items())
        + ")",
    )
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="seed for init, shuffling, augmentation")
    args = parser.parse_args(argv)
    if args.epochs is not None and args.epochs < 1:
        parser.error("--epochs must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)
    data = load_digits()
    check_lenet_constants(data.train_images)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)

    threads = torch.get_num_threads()
    deterministic = torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    try:
        total_start = time.perf_counter()
        for name in args.models:
            start = time.perf_counter()
            epochs = DEFAULT_EPOCHS[name] if args.epochs is None else args.epochs
            model = train_model(name, data, epochs=epochs, seed=args.seed)
            correct = correct_predictions(model.eval(), data.eval_images, data.eval_labels, NORMALIZATION[name])
            acc = 100.0 * float(correct.float().mean())
            path = out / f"{name}.pt"
            torch.save(model.state_dict(), path)
            params = sum(p.numel() for p in model.parameters())
            print(
                f"{name:<10} eval acc {acc:6.2f}%  params {params:>8,}  "
                f"file {path.stat().st_size / 1024:7.1f} KiB  epochs {epochs:>3}  "
                f"({time.perf_counter() - start:5.1f} s)  -> {path}",
                flush=True,
            )
        print(f"total {time.perf_counter() - total_start:.1f} s", flush=True)
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic)
    return 0


if __name__ == "__main__":
    sys.exit(main())
