"""pruning.py: the built-in methods through prune_model (fine-tuning with masks, then permanent)."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import torch
from conftest import tiny_conv_net
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torch.nn.utils import prune

from pytest_advprune.data import Dataset
from pytest_advprune.pruning import (
    FineTuneSettings,
    PruningContext,
    classifier_layer,
    fine_tune,
    make_permanent,
    model_size,
    prunable_layers,
    prune_model,
    torch_threads,
)
from pytest_advprune.registry import PRUNINGS, PruningEntry

ONE_EPOCH = FineTuneSettings(epochs=1)
AMOUNTS = st.sampled_from([0.1, 0.3, 0.5, 0.7])


def tiny_mlp(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 10)).eval()


def tiny_dataset(seed: int = 0) -> Dataset:
    generator = torch.Generator().manual_seed(seed)
    images = torch.rand(80, 1, 8, 8, generator=generator)
    labels = torch.randint(0, 10, (80,), generator=generator)
    return Dataset(
        name="tiny",
        train_images=images[:64],
        train_labels=labels[:64],
        eval_images=images[64:],
        eval_labels=labels[64:],
        num_classes=10,
    )


DATA = tiny_dataset()


def context(seed: int = 0) -> PruningContext:
    return PruningContext(DATA, torch.device("cpu"), seed, None)


def run_pruning(name: str, base: nn.Module, amount: float, seed: int = 0) -> nn.Module:
    with torch_threads(1):
        return prune_model(base, PRUNINGS.get(name), amount, context(seed), ONE_EPOCH)


def layers(model: nn.Module) -> list[Any]:
    """The Conv/Linear layers, typed loosely so their attributes (weight_mask, out_channels) type-check."""
    return list(prunable_layers(model))


def child(model: nn.Module, index: int) -> Any:
    return list(model.children())[index]


def weights(model: nn.Module) -> list[torch.Tensor]:
    return [layer.weight.detach() for layer in layers(model)]


def snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {key: value.clone() for key, value in model.state_dict().items()}


def same_state(first: dict[str, torch.Tensor], second: dict[str, torch.Tensor]) -> bool:
    return first.keys() == second.keys() and all(torch.equal(first[key], second[key]) for key in first)


def assert_no_reparametrization(model: nn.Module) -> None:
    for name, _ in [*model.named_parameters(), *model.named_buffers()]:
        assert not name.endswith(("_orig", "_mask")), name
    for module in model.modules():
        assert not prune.is_pruned(module)
        assert not module._forward_pre_hooks


# --- unstructured -------------------------------------------------------------------------------------


@settings(max_examples=4, deadline=None)
@given(amount=AMOUNTS, method=st.sampled_from(["l1_unstructured", "random_unstructured"]))
def test_unstructured_pruning_reaches_the_asked_sparsity(amount: float, method: str) -> None:
    base = tiny_conv_net()
    before = snapshot(base)
    pruned = run_pruning(method, base, amount)

    assert_no_reparametrization(pruned)
    total = sum(w.numel() for w in weights(pruned))
    zeros = sum(int((w == 0).sum()) for w in weights(pruned))
    assert abs(zeros - amount * total) <= 0.5 + 1e-9, (zeros, amount * total)
    # The pruning is global: every layer keeps some weights, and BatchNorm is not pruned.
    assert all((w != 0).any() for w in weights(pruned))
    assert (child(pruned, 1).weight != 0).all()
    # Fine-tuning ran (with the masks in force): surviving weights moved, pruned ones stayed exactly zero.
    moved = [(w != b) & (w != 0) for w, b in zip(weights(pruned), weights(base), strict=True)]
    assert any(m.any() for m in moved)
    assert not pruned.training
    # The base model is untouched.
    assert same_state(before, snapshot(base))
    assert_no_reparametrization(base)


@settings(max_examples=4, deadline=None)
@given(amount=AMOUNTS)
def test_l1_unstructured_removes_the_globally_smallest_weights(amount: float) -> None:
    base = tiny_mlp()
    pruned = run_pruning("l1_unstructured", base, amount)
    magnitudes = torch.cat([w.abs().flatten() for w in weights(base)])
    count = round(amount * magnitudes.numel())
    expected = torch.zeros_like(magnitudes, dtype=torch.bool)
    expected[torch.argsort(magnitudes)[:count]] = True
    actual = torch.cat([(w == 0).flatten() for w in weights(pruned)])
    assert torch.equal(actual, expected)


def test_random_unstructured_depends_on_the_seed() -> None:
    base = tiny_mlp()
    first = torch.cat([(w == 0).flatten() for w in weights(run_pruning("random_unstructured", base, 0.5, seed=1))])
    second = torch.cat([(w == 0).flatten() for w in weights(run_pruning("random_unstructured", base, 0.5, seed=2))])
    assert int(first.sum()) == int(second.sum())
    assert not torch.equal(first, second)


@pytest.mark.parametrize("method", ["l1_unstructured", "random_unstructured", "l1_filter", "channel"])
def test_prune_model_is_deterministic_for_a_seed(method: str) -> None:
    base = tiny_conv_net()
    first = run_pruning(method, base, 0.5, seed=3)
    torch.manual_seed(999)  # the global generator's state must not matter
    second = run_pruning(method, base, 0.5, seed=3)
    assert same_state(snapshot(first), snapshot(second))


@pytest.mark.parametrize("method", ["l1_unstructured", "random_unstructured", "l1_filter"])
def test_amount_zero_is_the_base_model(method: str) -> None:
    base = tiny_conv_net()
    pruned = run_pruning(method, base, 0.0)
    assert_no_reparametrization(pruned)
    assert same_state(snapshot(pruned), snapshot(base))  # nothing pruned, so no fine-tuning either
    assert pruned is not base


def test_fine_tune_keeps_masked_weights_at_zero() -> None:
    model = tiny_mlp()
    entry = PRUNINGS.get("l1_unstructured")
    entry.function(model, 0.6, context())
    masks = [layer.weight_mask.clone() for layer in layers(model)]
    originals = [layer.weight_orig.detach().clone() for layer in layers(model)]
    fine_tune(model, context(), FineTuneSettings(epochs=2, learning_rate=1e-2, batch_size=16))
    assert not model.training
    for layer, mask, original in zip(layers(model), masks, originals, strict=True):
        assert torch.equal(layer.weight_mask, mask)
        assert torch.equal(layer.weight[mask == 0], torch.zeros(int((mask == 0).sum())))
        assert not torch.equal(layer.weight_orig, original)  # it trained
    make_permanent(model)
    assert_no_reparametrization(model)
    for layer, mask in zip(layers(model), masks, strict=True):
        assert torch.equal(layer.weight == 0, mask == 0)
        assert isinstance(layer.weight, nn.Parameter)


def test_fine_tune_lowers_the_training_loss() -> None:
    model = tiny_mlp()
    images, labels = DATA.train_images, DATA.train_labels

    def loss() -> float:
        with torch.no_grad():
            return float(nn.functional.cross_entropy(model(images), labels))

    start = loss()
    fine_tune(model, context(), FineTuneSettings(epochs=5, learning_rate=1e-2, batch_size=16))
    assert loss() < start


def test_make_permanent_without_masks_changes_nothing() -> None:
    model = tiny_conv_net()
    before = snapshot(model)
    assert make_permanent(model) is model
    assert same_state(before, snapshot(model))


# --- l1_filter ----------------------------------------------------------------------------------------


@settings(max_examples=4, deadline=None)
@given(amount=AMOUNTS)
def test_l1_filter_zeroes_whole_filters_with_the_smallest_norms(amount: float) -> None:
    base = tiny_conv_net()
    before = snapshot(base)
    pruned = run_pruning("l1_filter", base, amount)
    assert_no_reparametrization(pruned)
    assert same_state(before, snapshot(base))

    for base_layer, layer in zip(layers(base), layers(pruned), strict=True):
        rows = layer.weight.detach().flatten(1)
        zero_rows = (rows == 0).all(dim=1)
        if isinstance(layer, nn.Linear):  # the classifier keeps every output
            assert not zero_rows.any()
            assert (rows != 0).all()
            continue
        assert int(zero_rows.sum()) == round(amount * layer.out_channels)
        # Whole filters: a filter is either all zero or has no zero at all.
        assert torch.equal((rows == 0).any(dim=1), zero_rows)
        norms = base_layer.weight.detach().flatten(1).abs().sum(dim=1)
        smallest = set(torch.argsort(norms)[: round(amount * layer.out_channels)].tolist())
        assert set(torch.nonzero(zero_rows).flatten().tolist()) == smallest
        assert layer.weight.shape == base_layer.weight.shape  # masked, not removed


def test_l1_filter_keeps_the_classifier_of_an_mlp() -> None:
    base = tiny_mlp()
    pruned = run_pruning("l1_filter", base, 0.5)
    hidden, classifier = layers(pruned)
    assert layers(pruned)[-1] is classifier_layer(pruned)
    assert int((hidden.weight == 0).all(dim=1).sum()) == 8
    assert not (classifier.weight == 0).all(dim=1).any()
    assert pruned(DATA.eval_images).shape == (16, 10)


def test_l1_filter_skips_depthwise_convolutions() -> None:
    torch.manual_seed(0)
    base = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),
        nn.Conv2d(4, 4, 3, padding=1, groups=4),
        nn.Flatten(),
        nn.Linear(256, 10),
    ).eval()
    pruned = run_pruning("l1_filter", base, 0.5)
    first, depthwise, _ = layers(pruned)
    assert int((first.weight == 0).flatten(1).all(dim=1).sum()) == 2
    assert not (depthwise.weight == 0).flatten(1).all(dim=1).any()


# --- channel (Torch-Pruning) --------------------------------------------------------------------------


def conv_net_parameters(c1: int, c2: int) -> int:
    """Parameter count of tiny_conv_net with c1 and c2 channels, by hand."""
    conv1 = c1 * 1 * 9 + c1
    batch_norm = 2 * c1
    conv2 = c2 * c1 * 9 + c2
    linear = 10 * c2 + 10
    return conv1 + batch_norm + conv2 + linear


def test_channel_pruning_shrinks_the_model() -> None:
    base = tiny_conv_net()
    before = snapshot(base)
    example = DATA.eval_images[:1]
    base_size = model_size(base, example)
    pruned = run_pruning("channel", base, 0.5)

    assert same_state(before, snapshot(base))
    assert_no_reparametrization(pruned)
    assert (child(pruned, 0).out_channels, child(pruned, 1).num_features, child(pruned, 3).in_channels) == (2, 2, 2)
    assert (child(pruned, 3).out_channels, child(pruned, 7).in_features, child(pruned, 7).out_features) == (4, 4, 10)
    pruned_size = model_size(pruned, example)
    assert base_size.parameters == conv_net_parameters(4, 8)
    assert pruned_size.parameters == conv_net_parameters(2, 4)
    assert pruned_size.nonzero_parameters <= pruned_size.parameters
    assert pruned_size.macs < base_size.macs
    assert pruned(DATA.eval_images).shape == (16, 10)


@settings(max_examples=3, deadline=None)
@given(amount=st.sampled_from([0.25, 0.5, 0.75]))
def test_channel_pruning_keeps_ten_classes(amount: float) -> None:
    base = tiny_mlp()
    pruned = run_pruning("channel", base, amount)
    hidden, classifier = layers(pruned)
    assert classifier.out_features == 10
    assert hidden.out_features == classifier.in_features < 16
    assert model_size(pruned, DATA.eval_images[:1]).parameters < model_size(base, DATA.eval_images[:1]).parameters
    assert pruned(DATA.eval_images).shape == (16, 10)


# --- model_size, helpers ------------------------------------------------------------------------------


def test_model_size_counts_parameters_and_nonzeros() -> None:
    model = tiny_mlp()
    with torch.no_grad():
        child(model, 1).weight[:3] = 0.0  # 3 rows of 64
        child(model, 3).bias.zero_()  # 10
    example = DATA.eval_images[:1]
    before = snapshot(model)
    size = model_size(model, example)
    assert size.parameters == 64 * 16 + 16 + 16 * 10 + 10
    assert size.nonzero_parameters == size.parameters - 3 * 64 - 10
    # Zeroed weights still cost arithmetic: a dense copy has the same MACs.
    assert size.macs == model_size(tiny_mlp(), example).macs
    assert size.macs >= 64 * 16 + 16 * 10
    assert same_state(before, snapshot(model))
    assert not model.training


def test_classifier_layer_is_the_last_linear() -> None:
    model = tiny_mlp()
    assert classifier_layer(model) is child(model, 3)
    assert prunable_layers(model) == [child(model, 1), child(model, 3)]
    with pytest.raises(ValueError, match=r"no nn\.Linear classifier"):
        classifier_layer(nn.Sequential(nn.Conv2d(1, 2, 3)))


def test_torch_threads_sets_and_restores() -> None:
    previous = torch.get_num_threads()
    with torch_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == previous
    with pytest.raises(RuntimeError, match="boom"), torch_threads(1):
        raise RuntimeError("boom")
    assert torch.get_num_threads() == previous


def test_fine_tune_settings_defaults() -> None:
    assert FineTuneSettings() == FineTuneSettings(epochs=5, learning_rate=1e-3, batch_size=64)


def test_builtin_pruning_entries() -> None:
    entries = {name: PRUNINGS.get(name) for name in ["l1_unstructured", "random_unstructured", "l1_filter", "channel"]}
    assert all(isinstance(entry, PruningEntry) and entry.builtin for entry in entries.values())
    assert all(entry.fine_tune for entry in entries.values())
    assert entries["l1_filter"].default_amount == 0.3


def test_prune_model_works_on_a_copy_even_for_a_training_base() -> None:
    base = tiny_conv_net().train()
    before = copy.deepcopy(base.state_dict())
    pruned = run_pruning("l1_unstructured", base, 0.5)
    assert base.training
    assert not pruned.training
    assert same_state(before, snapshot(base))  # BatchNorm running stats of the base did not move


def test_l1_filter_silences_the_pruned_channels_bias_and_batchnorm() -> None:
    """A zeroed filter whose bias or BatchNorm shift survived would still emit a constant."""
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1, bias=True),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(8 * 64, 16),
        nn.ReLU(),
        nn.Linear(16, 10),
    )
    with torch.no_grad():
        model[1].bias.fill_(0.5)  # a shift that would leak through a masked filter
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(32, 1, 8, 8, generator=generator)
    data = Dataset("tiny", images, torch.arange(32) % 10, images, torch.arange(32) % 10, num_classes=10)
    context = PruningContext(data, torch.device("cpu"), 0, None)
    pruned = prune_model(model, PRUNINGS.get("l1_filter"), 0.5, context, ONE_EPOCH)

    dead = (pruned[0].weight.flatten(1) == 0).all(dim=1)
    assert int(dead.sum()) == 4
    assert torch.all(pruned[0].bias[dead] == 0)
    assert torch.all(pruned[1].weight[dead] == 0)
    assert torch.all(pruned[1].bias[dead] == 0)
    with torch.no_grad():
        activations = pruned[:3].eval()(images)
    assert torch.all(activations[:, dead] == 0), "a pruned filter's channel must output zero"
    dead_neurons = (pruned[4].weight == 0).all(dim=1)
    assert int(dead_neurons.sum()) == 8
    assert torch.all(pruned[4].bias[dead_neurons] == 0)
