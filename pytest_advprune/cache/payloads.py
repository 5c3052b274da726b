"""Cached results as bytes and back, read with ``torch.load(weights_only=True)``: reading an entry runs no
code, whoever wrote it.

Crafted examples are a tensor. A pruned model is stored as tensors and plain values, never as a pickled
module: for every submodule its class name, its parameters and buffers (channel pruning changes their
shapes) and its plain attributes (``out_channels``, ``num_features``, ``groups``). Reading rebuilds the
model from a copy of the base model: same submodules, classes checked, those tensors and attributes put
back. Before an entry is written, it is rebuilt once and compared with the model it stands for (the
same submodules, attributes, tensors, hooks, and bit-identical outputs on example images); a pruned model
this cannot reproduce (a recipe that adds or replaces submodules, or keeps state the description does
not hold) is not cached, only computed.
"""

from __future__ import annotations

import copy
import io
import math
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch
    from torch import nn

FORMAT = "pytest-advprune module 1"
PLAIN = (bool, int, float, str, type(None))


def tensor_to_bytes(tensor: torch.Tensor) -> bytes:
    import torch

    buffer = io.BytesIO()
    torch.save(tensor.detach().cpu().clone(), buffer)
    return buffer.getvalue()


def tensor_from_bytes(data: bytes, device: torch.device) -> torch.Tensor | None:
    import torch

    try:
        tensor = torch.load(io.BytesIO(data), map_location=device, weights_only=True)
    except Exception:  # any unreadable payload is a cache miss
        return None
    return tensor if isinstance(tensor, torch.Tensor) else None


def module_to_bytes(module: nn.Module, base: nn.Module, examples: torch.Tensor, extra: dict[str, Any]) -> bytes | None:
    """``module`` (built from ``base``) and plain ``extra`` values, or None when a copy of ``base`` cannot
    be made into exactly ``module`` from them (see the module docstring)."""
    import torch

    description = describe_module(module)
    if description is None:
        return None
    buffer = io.BytesIO()
    torch.save({"format": FORMAT, "module": description, "extra": extra}, buffer)
    data = buffer.getvalue()
    # What a later run will read: these bytes, loaded back as a read loads them (a value that
    # weights_only refuses, such as a numpy scalar, fails here, not in every later run).
    loaded = module_from_bytes(data, base, examples.device)
    if loaded is None or loaded[1] != extra or not same_module(loaded[0], module, examples):
        return None
    return data


def module_from_bytes(data: bytes, base: nn.Module, device: torch.device) -> tuple[nn.Module, dict[str, Any]] | None:
    import torch

    try:
        loaded = torch.load(io.BytesIO(data), map_location=device, weights_only=True)
    except Exception:  # a corrupt payload: recompute
        return None
    if not isinstance(loaded, dict) or loaded.get("format") != FORMAT or not isinstance(loaded.get("extra"), dict):
        return None
    module = rebuild_module(base, loaded.get("module"), device)
    return None if module is None else (module, loaded["extra"])


def describe_module(module: nn.Module) -> list[dict[str, Any]] | None:
    """Per submodule (in ``named_modules`` order, shared ones listed each time they appear): its name,
    class, tensors and plain attributes. None for a model whose parameters are shared between submodules
    (tied weights), which a description per submodule would untie."""
    import torch

    owners: dict[int, str] = {}
    description = []
    for name, sub in module.named_modules(remove_duplicate=False):
        parameters: dict[str, tuple[torch.Tensor, bool] | None] = {}
        for key, parameter in sub._parameters.items():
            if parameter is not None:
                if owners.setdefault(id(parameter), f"{name}.{key}") != f"{name}.{key}" and not _shared_module(
                    module, owners[id(parameter)], f"{name}.{key}"
                ):
                    return None
                parameters[key] = (parameter.detach().cpu().clone(), bool(parameter.requires_grad))
            else:
                parameters[key] = None
        buffers = {key: None if b is None else b.detach().cpu().clone() for key, b in sub._buffers.items()}
        attributes = {}
        for key, value in vars(sub).items():
            if key.startswith("_") and key != "_reversed_padding_repeated_twice":
                continue
            if _is_plain(value):
                attributes[key] = value
            elif isinstance(value, torch.Tensor):
                attributes[key] = value.detach().cpu().clone()
        description.append(
            {
                "name": name,
                "class": _class_name(sub),
                "parameters": parameters,
                "buffers": buffers,
                "non_persistent": sorted(sub._non_persistent_buffers_set),
                "attributes": attributes,
            }
        )
    return description


def rebuild_module(base: nn.Module, description: Any, device: torch.device) -> nn.Module | None:
    """A copy of ``base`` given the tensors and attributes of ``description``; None unless the copy has
    exactly the described submodules, of the described classes (nothing is imported or constructed)."""
    import torch
    from torch import nn

    if not isinstance(description, list):
        return None
    module = copy.deepcopy(base)
    subs = list(module.named_modules(remove_duplicate=False))
    if len(subs) != len(description):
        return None
    try:
        for (name, sub), entry in zip(subs, description, strict=True):
            if entry["name"] != name or entry["class"] != _class_name(sub):
                return None
            parameters: dict[str, nn.Parameter | None] = {}
            for key, value in entry["parameters"].items():
                if value is None:
                    parameters[key] = None
                else:
                    tensor, requires_grad = value
                    parameters[key] = nn.Parameter(tensor.to(device), requires_grad=bool(requires_grad))
            sub._parameters = parameters  # type: ignore[assignment]
            sub._buffers = {k: None if b is None else b.to(device) for k, b in entry["buffers"].items()}
            sub._non_persistent_buffers_set = set(entry["non_persistent"])
            for key, value in entry["attributes"].items():
                if not (_is_plain(value) or isinstance(value, torch.Tensor)):
                    return None
                object.__setattr__(sub, key, value.to(device) if isinstance(value, torch.Tensor) else value)
    except Exception:  # a description of another shape, tensors that do not fit: recompute
        return None
    return module


def same_module(rebuilt: nn.Module, original: nn.Module, examples: torch.Tensor) -> bool:
    """Whether ``rebuilt`` is ``original`` for every purpose the plugin has: the same submodules and
    classes, attributes (plain values equal, other objects the same object or of equal content), the same
    tensors bit for bit, the same hooks, train/eval flags, and bit-identical outputs on ``examples``."""

    pairs = list(zip(rebuilt.modules(), original.modules(), strict=False))
    if len(pairs) != len(list(original.modules())):
        return False
    for new, old in pairs:
        if type(new) is not type(old) or new.training != old.training:
            return False
        if set(vars(new)) != set(vars(old)):
            return False
        for key, value in vars(old).items():
            if key in ("_parameters", "_buffers", "_modules"):
                continue
            if not _same_value(getattr(new, key), value):
                return False
        for table in ("_parameters", "_buffers"):
            new_tensors, old_tensors = getattr(new, table), getattr(old, table)
            if new_tensors.keys() != old_tensors.keys():
                return False
            if not all(_same_value(new_tensors[k], old_tensors[k]) for k in old_tensors):
                return False
    return _same_outputs(rebuilt, original, examples)


def _same_outputs(rebuilt: nn.Module, original: nn.Module, examples: torch.Tensor) -> bool:
    """Bit-identical logits, computed in eval mode (a forward in train mode would update batch-norm
    statistics); both models' train/eval flags are restored."""
    import torch

    modes = [(sub, sub.training) for model in (rebuilt, original) for sub in model.modules()]
    try:
        rebuilt.eval()
        original.eval()
        with torch.no_grad():
            new, old = rebuilt(examples), original(examples)
    finally:
        for sub, training in modes:
            sub.training = training
    return isinstance(new, torch.Tensor) and isinstance(old, torch.Tensor) and bool(torch.equal(new, old))


def _same_value(new: Any, old: Any) -> bool:
    import torch

    if new is old:
        return True
    if isinstance(old, torch.Tensor):
        return (
            isinstance(new, torch.Tensor)
            and new.dtype == old.dtype
            and new.shape == old.shape
            and new.requires_grad == old.requires_grad
            and bool(torch.equal(new.detach().cpu(), old.detach().cpu()))
        )
    if isinstance(old, float) and isinstance(new, float) and math.isnan(old) and math.isnan(new):
        return True
    if _is_plain(old):
        return type(new) is type(old) and bool(new == old)
    if type(new) is not type(old):
        return False
    if isinstance(old, (set, frozenset)):
        return bool(new == old)
    if isinstance(old, (list, tuple)):
        return len(new) == len(old) and all(_same_value(a, b) for a, b in zip(new, old, strict=True))
    if isinstance(old, dict):
        return new.keys() == old.keys() and all(_same_value(new[k], old[k]) for k in old)
    from pytest_advprune.cache.keys import stable_value

    # Objects the copy made anew (a partial, a config object): equal when their contents are.
    text = stable_value(old)
    return text is not None and text == stable_value(new)


def _is_plain(value: Any) -> bool:
    """A value ``weights_only`` reads back as itself: exactly a bool, int, float, str or None (not a
    subclass such as numpy.float64 or an IntEnum), or a tuple or list of them."""
    if type(value) in PLAIN:
        return True
    return type(value) in (tuple, list) and all(_is_plain(item) for item in value)


def _class_name(module: nn.Module) -> str:
    return f"{type(module).__module__}.{type(module).__qualname__}"


def _shared_module(model: nn.Module, first: str, second: str) -> bool:
    """Whether two names of one parameter come from one submodule listed twice (a module reused in two
    places), which the copy of the base shares too, rather than from two submodules tying a weight."""
    first_owner, second_owner = first.rpartition(".")[0], second.rpartition(".")[0]
    return model.get_submodule(first_owner.lstrip(".")) is model.get_submodule(second_owner.lstrip("."))
