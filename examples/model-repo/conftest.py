"""What the robustness gate measures in this repository: our dataset, our model and our pruning recipe.

pyproject.toml says which prunings and attacks run and what they must satisfy; this file says what the
names mean. Paths are relative to the repository root (pytest's rootdir), wherever pytest is started.
"""

from __future__ import annotations

from typing import Any

import pytest_advprune
from torch import nn
from torch.nn.utils import prune

from shapes.model import MEAN, STD, ShapesNet
from shapes.train import fit

# Our recipe: unstructured L1 (magnitude) pruning of the convolutions, the way we ship the model. The
# first convolution sees raw pixels and has only 432 weights, so it is pruned at a lower rate than the
# others; the classifier is left dense.
STEM_SHARE = 0.5  # the stem's rate, as a share of the amount
FINE_TUNE_EPOCHS = 5


@pytest_advprune.register_dataset("shapes")
def shapes() -> pytest_advprune.Dataset:
    # uint8 NHWC arrays, as exported: from_file scales them to [0, 1] and moves the channels first.
    return pytest_advprune.Dataset.from_file("data/shapes.npz", name="shapes")


# normalization: the network expects (x - mean) / std, while attacks work on pixels in [0, 1], so the
# attack budgets in pyproject.toml are in pixel units (4/255 means four grey levels).
@pytest_advprune.register_model("shapes-net", dataset="shapes", normalization=(MEAN, STD))
def shapes_net() -> nn.Module:
    return pytest_advprune.load_model(ShapesNet(), "checkpoints/shapes_net.pt")


# fine_tune=False: the plugin's built-in fine-tuning trains on clean images, which would wash out the
# adversarial training the robustness comes from. The recipe fine-tunes the way train.py trains.
@pytest_advprune.register_pruning("conv_l1", default_amount=0.6, fine_tune=False)
def conv_l1(model: nn.Module, amount: float, context: Any) -> nn.Module:
    stem, *convs = [module for module in model.modules() if isinstance(module, nn.Conv2d)]
    prune.l1_unstructured(stem, "weight", amount=amount * STEM_SHARE)
    prune.global_unstructured([(conv, "weight") for conv in convs], prune.L1Unstructured, amount=amount)
    # The masks stay in force while fine-tuning; the plugin makes them permanent afterwards.
    data = context.dataset
    return fit(model, data.train_images, data.train_labels, epochs=FINE_TUNE_EPOCHS, seed=context.seed)
