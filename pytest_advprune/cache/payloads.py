"""Cached results as bytes and back: tensors (read with ``weights_only``, so reading runs no code) and
pruned models (a whole pickled module: channel pruning changes layer shapes, which a state dict alone
cannot rebuild).

A module entry is unpickled, which imports and runs the classes it names: only read caches you or
your CI wrote (see the README's Cache section). A module that cannot be pickled (a lambda attribute, an
open file) is simply not cached; one whose classes no longer import is recomputed.
"""

from __future__ import annotations

import io
import pickle
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch
    from torch import nn


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


def module_to_bytes(module: nn.Module, extra: dict[str, Any]) -> bytes | None:
    """``module`` and plain ``extra`` values, or None when the module cannot be pickled."""
    import torch

    buffer = io.BytesIO()
    try:
        torch.save({"module": module, "extra": extra}, buffer)
    except (pickle.PicklingError, TypeError, AttributeError, RuntimeError):
        return None
    return buffer.getvalue()


def module_from_bytes(data: bytes, device: torch.device) -> tuple[nn.Module, dict[str, Any]] | None:
    import torch
    from torch import nn

    try:
        loaded = torch.load(io.BytesIO(data), map_location=device, weights_only=False)
    except Exception:  # a class that moved or changed, a corrupt pickle: recompute
        return None
    if not isinstance(loaded, dict) or not isinstance(loaded.get("module"), nn.Module):
        return None
    return loaded["module"], dict(loaded.get("extra") or {})
