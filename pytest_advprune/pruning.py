"""Pruning methods, fine-tuning with masks kept, and the compression figures of a model.

Every method works on a deep copy of the base model (``prune_model`` makes it), so the base model
shared by all cells is never changed.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import nn
from torch.nn.utils import prune

from pytest_advprune.evaluation import forward_in_pixel_space
from pytest_advprune.metrics import SizeFigures
from pytest_advprune.registry import Normalization, PruningEntry, register_pruning

if TYPE_CHECKING:
    from pytest_advprune.data import Dataset


@dataclass(frozen=True)
class FineTuneSettings:
    epochs: int = 5
    learning_rate: float = 1e-3
    batch_size: int = 64


@dataclass(frozen=True)
class PruningContext:
    """What a pruning function may need besides the model: data (for fine-tuning or data-driven
    importance), an example input batch (for graph tracing), the device and a seed."""

    dataset: Dataset
    device: torch.device
    seed: int
    normalization: Normalization | None

    @property
    def example_inputs(self) -> torch.Tensor:
        return self.dataset.eval_images[:1].to(self.device)


@contextmanager
def torch_threads(count: int) -> Iterator[None]:
    """Run with a fixed intra-op thread count, so floating-point reduction order does not depend on the
    machine's core count (it would, by a few ulps, and fine-tuning amplifies that)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def prunable_layers(model: nn.Module) -> list[nn.Module]:
    """Conv and Linear layers, the ones whose weights the built-in methods prune."""
    return [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


def classifier_layer(model: nn.Module) -> nn.Module:
    """The last Linear layer: its output units are the classes, which must never be removed."""
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError(f"{type(model).__name__} has no nn.Linear classifier layer to keep intact.")
    return linears[-1]


def make_permanent(model: nn.Module) -> nn.Module:
    """Fold every ``torch.nn.utils.prune`` mask into its weight and drop the reparametrization."""
    for module in model.modules():
        for name in [n for n, _ in module.named_parameters(recurse=False) if n.endswith("_orig")]:
            prune.remove(module, name[: -len("_orig")])  # type: ignore[no-untyped-call]
    return model


def model_size(model: nn.Module, example_inputs: torch.Tensor) -> SizeFigures:
    """Parameter counts and dense MACs of one forward pass on one input (zeroed weights still count:
    masking alone saves no arithmetic)."""
    import torch_pruning as tp

    parameters = sum(p.numel() for p in model.parameters())
    nonzero = sum(int(torch.count_nonzero(p).item()) for p in model.parameters())
    macs, _ = tp.utils.count_ops_and_params(model, example_inputs)
    return SizeFigures(parameters=parameters, nonzero_parameters=nonzero, macs=int(macs))


def fine_tune(model: nn.Module, context: PruningContext, settings: FineTuneSettings) -> nn.Module:
    """A few epochs of Adam on the train split, seeded. Masks installed by ``torch.nn.utils.prune`` are
    forward pre-hooks, so pruned weights stay exactly zero throughout."""
    generator = torch.Generator().manual_seed(context.seed)
    images, labels = context.dataset.train_images, context.dataset.train_labels
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=settings.learning_rate)
    loss_fn = nn.CrossEntropyLoss()
    model.train()
    for _ in range(settings.epochs):
        order = torch.randperm(len(images), generator=generator)
        for start in range(0, len(order), settings.batch_size):
            batch = order[start : start + settings.batch_size]
            x, y = images[batch].to(context.device), labels[batch].to(context.device)
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(forward_in_pixel_space(model, x, context.normalization), y)
            loss.backward()
            optimizer.step()
    return model.eval()


def prune_model(
    base: nn.Module,
    entry: PruningEntry,
    amount: float,
    context: PruningContext,
    settings: FineTuneSettings,
) -> nn.Module:
    """Apply ``entry`` to a deep copy of ``base``, fine-tune it if the method asks, make masks permanent."""
    torch.manual_seed(context.seed)  # methods such as random_unstructured draw from the global generator
    pruned = entry.function(copy.deepcopy(base), amount, context)
    if entry.fine_tune and amount > 0:
        fine_tune(pruned, context, settings)
    return make_permanent(pruned).eval()


# --- built-in methods -------------------------------------------------------------------------------


def _global_unstructured(model: nn.Module, amount: float, method: type[prune.BasePruningMethod]) -> nn.Module:
    parameters = [(layer, "weight") for layer in prunable_layers(model)]
    prune.global_unstructured(parameters, pruning_method=method, amount=amount)
    return model


@register_pruning("l1_unstructured", builtin=True)
def l1_unstructured(model: nn.Module, amount: float, context: PruningContext) -> nn.Module:
    """Global magnitude pruning: the ``amount`` fraction of smallest |w| over all Conv/Linear weights."""
    return _global_unstructured(model, amount, prune.L1Unstructured)


@register_pruning("random_unstructured", builtin=True)
def random_unstructured(model: nn.Module, amount: float, context: PruningContext) -> nn.Module:
    """Global random pruning of the ``amount`` fraction of Conv/Linear weights (a control for l1)."""
    return _global_unstructured(model, amount, prune.RandomUnstructured)


def batchnorm_after(model: nn.Module) -> dict[nn.Module, nn.Module]:
    """Each Conv/Linear layer mapped to the BatchNorm that directly follows it in definition order and
    normalizes its outputs (the Conv -> BN -> ReLU pattern)."""
    pairs: dict[nn.Module, nn.Module] = {}
    previous: nn.Module | None = None
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            previous = module
        elif isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)) and previous is not None:
            out_features = previous.out_channels if isinstance(previous, nn.Conv2d) else previous.out_features
            if module.num_features == out_features:
                pairs[previous] = module
            previous = None
    return pairs


@register_pruning("l1_filter", default_amount=0.3, builtin=True)
def l1_filter(model: nn.Module, amount: float, context: PruningContext) -> nn.Module:
    """Per layer, zero the ``amount`` fraction of output filters (neurons) with the smallest L1 norm.

    A pruned filter's bias and the scale and shift of the BatchNorm channel it feeds are masked too, so
    the channel outputs zero, as if the filter were removed (otherwise it would still emit a learned
    constant). Masked, not removed: tensor shapes and arithmetic stay the same. The classifier keeps all
    its outputs. Depthwise convolutions are skipped: each of their filters is one channel's only path,
    and zeroing it is channel pruning, which ``channel`` does properly.
    """
    classifier = classifier_layer(model)
    batchnorms = batchnorm_after(model)
    for layer in prunable_layers(model):
        if layer is classifier or (isinstance(layer, nn.Conv2d) and layer.groups > 1):
            continue
        prune.ln_structured(layer, "weight", amount=amount, n=1, dim=0)  # type: ignore[no-untyped-call]
        mask = layer.get_buffer("weight_mask")
        kept = mask.flatten(1).any(dim=1).to(mask.dtype)
        if layer.bias is not None:
            prune.custom_from_mask(layer, "bias", kept)  # type: ignore[no-untyped-call]
        batchnorm = batchnorms.get(layer)
        if batchnorm is not None and batchnorm.affine:
            prune.custom_from_mask(batchnorm, "weight", kept)  # type: ignore[no-untyped-call]
            prune.custom_from_mask(batchnorm, "bias", kept)  # type: ignore[no-untyped-call]
    return model


@register_pruning("channel", builtin=True)
def channel(model: nn.Module, amount: float, context: PruningContext) -> nn.Module:
    """Structural channel pruning with Torch-Pruning: the ``amount`` fraction of channels of every layer
    group, ranked by L1 magnitude, is physically removed (with their dependants: BatchNorm, the next
    layer's inputs, residual partners), so the model gets smaller and faster."""
    import torch_pruning as tp

    pruner = tp.pruner.BasePruner(
        model,
        context.example_inputs,
        importance=tp.importance.MagnitudeImportance(p=1),
        pruning_ratio=amount,
        ignored_layers=[classifier_layer(model)],
    )
    pruner.step()
    return model
