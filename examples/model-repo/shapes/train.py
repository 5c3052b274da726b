"""Train ShapesNet on data/shapes.npz and save its state dict: deterministic, about 15 s on one CPU core.

    python -m shapes.train --seed 0 --out checkpoints/shapes_net.pt

The committed checkpoint is ``--seed 0`` with the defaults. Training is adversarial (FGSM with a random
start, Wong et al. 2020, "Fast is better than free") at ``--adv-eps`` 2/255: the robustness the CI gate
protects comes from here. Shape identity does not depend on orientation left/right, on which channel holds
which colour, or on light-on-dark versus dark-on-light, so batches are flipped, channel-permuted and
inverted at random.

The same arguments give the same weights on the same torch build (one CPU thread, seeded shuffling,
augmentation and initialization). ``--train-fraction`` trains on a seeded subset of the training images
and ``--adv-eps 0`` trains without adversarial examples: both make weaker models, to see what the gate says.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from torch import nn

from shapes.model import ShapesNet, normalize

DEFAULT_EPOCHS = 40
DEFAULT_ADV_EPS = 2 / 255
BATCH_SIZE = 64
LEARNING_RATE = 5e-3


def load_split(path: Path, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """One split as float NCHW images in [0, 1] and int64 labels."""
    with np.load(path, allow_pickle=False) as arrays:
        images = torch.from_numpy(arrays[f"{split}_images"]).permute(0, 3, 1, 2).float() / 255
        labels = torch.from_numpy(arrays[f"{split}_labels"]).long()
    return images, labels


def _augment(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    flip = (torch.rand(len(images), generator=generator) < 0.5).view(-1, 1, 1, 1)
    images = torch.where(flip, images.flip(3), images)
    images = images[:, torch.randperm(3, generator=generator)]
    invert = (torch.rand(len(images), generator=generator) < 0.5).view(-1, 1, 1, 1)
    return torch.where(invert, 1 - images, images)


def _fgsm_rs(
    model: nn.Module, images: torch.Tensor, labels: torch.Tensor, eps: float, generator: torch.Generator
) -> torch.Tensor:
    """FGSM from a random point of the eps-ball, step 1.25 eps (Wong et al. 2020), in pixel space."""
    start = ((torch.rand(images.shape, generator=generator) * 2 - 1) * eps).to(images.device)
    start.requires_grad_(True)
    loss = nn.functional.cross_entropy(model(normalize((images + start).clamp(0, 1))), labels)
    (gradient,) = torch.autograd.grad(loss, start)
    delta = (start + 1.25 * eps * gradient.sign()).clamp(-eps, eps)
    return (images + delta).clamp(0, 1).detach()


def fit(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    epochs: int,
    seed: int,
    adv_eps: float = DEFAULT_ADV_EPS,
    learning_rate: float = LEARNING_RATE,
) -> nn.Module:
    """Adam with a one-cycle schedule on augmented (and, for adv_eps > 0, adversarial) batches, on the
    device the model is on. Also the fine-tuning of the pruning recipe in conftest.py."""
    device = next(model.parameters()).device
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=learning_rate)
    steps = max(1, epochs * -(-len(images) // BATCH_SIZE))
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=learning_rate, total_steps=steps)
    for _ in range(epochs):
        order = torch.randperm(len(images), generator=generator)
        for start in range(0, len(order), BATCH_SIZE):
            batch = order[start : start + BATCH_SIZE]
            x = _augment(images[batch], generator).to(device)
            y = labels[batch].to(device)
            model.train()
            if adv_eps > 0:
                x = _fgsm_rs(model, x, y, adv_eps, generator)
            optimizer.zero_grad(set_to_none=True)
            nn.functional.cross_entropy(model(normalize(x)), y).backward()
            optimizer.step()
            schedule.step()
    return model.eval()


def accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    with torch.no_grad():
        return float((model.eval()(normalize(images)).argmax(1) == labels).float().mean()) * 100


def train(
    data: Path,
    *,
    seed: int,
    epochs: int = DEFAULT_EPOCHS,
    train_fraction: float = 1.0,
    adv_eps: float = DEFAULT_ADV_EPS,
) -> tuple[ShapesNet, float]:
    """The trained model and its clean eval accuracy (%)."""
    torch.set_num_threads(1)  # one thread: the reduction order, and so the weights, do not depend on the CPU
    torch.manual_seed(seed)  # the initial weights
    images, labels = load_split(data, "train")
    if train_fraction < 1.0:
        keep = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))
        keep = keep[: max(1, round(train_fraction * len(images)))]
        images, labels = images[keep], labels[keep]
    model = ShapesNet()
    fit(model, images, labels, epochs=epochs, seed=seed, adv_eps=adv_eps)
    return model, accuracy(model, *load_split(data, "eval"))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Train ShapesNet and save its state dict.")
    parser.add_argument("--data", type=Path, default=Path("data/shapes.npz"))
    parser.add_argument("--out", type=Path, default=Path("checkpoints/shapes_net.pt"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=DEFAULT_EPOCHS)
    parser.add_argument("--train-fraction", type=float, default=1.0, help="Train on this fraction of the images")
    parser.add_argument("--adv-eps", type=float, default=DEFAULT_ADV_EPS, help="FGSM-RS budget; 0: clean training")
    args = parser.parse_args(argv)
    if not 0.0 < args.train_fraction <= 1.0:
        parser.error(f"--train-fraction={args.train_fraction} must be in (0, 1]")
    model, clean = train(
        args.data, seed=args.seed, epochs=args.epochs, train_fraction=args.train_fraction, adv_eps=args.adv_eps
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), args.out)
    print(f"wrote {args.out}: clean eval accuracy {clean:.1f}%")


if __name__ == "__main__":
    main()
