"""Loading model checkpoints safely: tensors only, unless the caller explicitly trusts the file."""

from __future__ import annotations

import pickle
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torch import nn


class CheckpointError(ValueError):
    """A checkpoint that cannot be loaded as asked."""


def load_state_dict(path: str | Path, *, trusted: bool = False) -> dict[str, Any]:
    """``torch.load(path, map_location="cpu", weights_only=True)``, with errors that name the file.

    ``weights_only=True`` refuses arbitrary pickled objects, which can run code when loaded. A
    checkpoint that needs them (a whole pickled model, custom classes) loads only with
    ``trusted=True``, an explicit statement that the file comes from a trusted source.
    """
    import torch

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"Checkpoint {str(path)!r} does not exist.")
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=not trusted)
    except pickle.UnpicklingError as error:
        # torch's message is pages long; the class it refused is the useful part.
        found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(error))
        refused = f" (it pickles {found.group(1)})" if found else ""
        raise CheckpointError(
            f"Checkpoint {str(path)!r} holds more than tensors{refused}, so weights_only=True refused it. "
            "Save model.state_dict() instead, or, only if you trust the file, load it with trusted=True."
        ) from None
    if isinstance(loaded, dict) and "state_dict" in loaded and isinstance(loaded["state_dict"], dict):
        loaded = loaded["state_dict"]  # a common training-loop layout: {"state_dict": ..., "epoch": ...}
    if not isinstance(loaded, dict):
        raise CheckpointError(
            f"Checkpoint {str(path)!r} holds a {type(loaded).__name__}, not a state dict. "
            "Save model.state_dict() and load it into a freshly built model."
        )
    return loaded


def load_model(model: nn.Module, path: str | Path, *, trusted: bool = False) -> nn.Module:
    """Load the state dict at ``path`` into ``model`` (strict) and return it in eval mode."""
    model.load_state_dict(load_state_dict(path, trusted=trusted))
    return model.eval()
