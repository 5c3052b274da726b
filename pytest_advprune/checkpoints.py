"""Loading model checkpoints safely: tensors only, unless the caller explicitly trusts the file.

Relative paths resolve against the pytest rootdir (see :mod:`pytest_advprune.paths`), so
``load_model(Net(), "checkpoints/net.pt")`` in a ``conftest.py`` means the file in the repository,
wherever pytest was started. Every error names the file and says what is wrong with it: missing, not a
PyTorch checkpoint at all, truncated or damaged, holding pickled objects, or not fitting the model.
"""

from __future__ import annotations

import pickle
import re
import warnings
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytest_advprune import paths
from pytest_advprune.errors import AdvPruneError

if TYPE_CHECKING:
    from torch import nn


class CheckpointError(AdvPruneError, ValueError):
    """A checkpoint that cannot be loaded as asked."""


# How many keys of each kind a mismatch message lists before it only counts the rest.
_SHOWN = 5
# Prefixes that wrappers add to every key: DataParallel / DistributedDataParallel, torch.compile.
_WRAPPER_PREFIXES = {"module.": "DataParallel or DistributedDataParallel", "_orig_mod.": "torch.compile"}
# Messages of torch's weights_only unpickler when it refuses a (well-formed) pickle of non-tensor objects.
_REFUSED_GLOBAL = re.compile(r"(?:Unsupported global: GLOBAL|unsupported GLOBAL) ([\w.]+)")
# torch.save's format before torch 1.6: a pickle (protocol 2) of this magic number, then the data.
_LEGACY_MAGIC = pickle.dumps(0x1950A86A20F9469CFC6C, protocol=2)
_REFUSALS = ("Can only create new object", "Trying to call reduce for unrecognized function", "Can only build")


def torch_load(path: Path, *, weights_only: bool = True) -> Any:
    """``torch.load(path, map_location="cpu")`` without the warnings torch gives on files it half-understands.

    A file that is not a checkpoint can make the weights-only unpickler warn about its pickle protocol
    before it fails; the failure says more, and under ``-W error`` the warning would hide it.
    """
    import torch

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Detected pickle protocol", category=UserWarning)
        return torch.load(path, map_location="cpu", weights_only=weights_only)


def load_problem(path: Path, error: Exception) -> str:
    """What is wrong with the file at ``path``, given the exception ``torch.load`` raised on it.

    A phrase that follows the file's name: ``"is truncated or damaged (...)"``, ``"is not a PyTorch
    checkpoint (...)"``, or ``"holds more than tensors (it pickles X), so weights_only=True refused it"``.
    torch's own messages run to pages and blame its zip reader; the file's first bytes tell the cases apart.
    """
    message = str(error)
    if isinstance(error, pickle.UnpicklingError):
        found = _REFUSED_GLOBAL.search(message)
        if found or any(refusal in message for refusal in _REFUSALS):
            pickled = f" (it pickles {found.group(1)})" if found else ""
            return f"holds more than tensors{pickled}, so weights_only=True refused it"
    with path.open("rb") as file:
        head = file.read(16)
    if not head:
        return "is empty, not a PyTorch checkpoint"
    if head.startswith(b"PK"):  # torch.save writes a zip archive since torch 1.6
        if not zipfile.is_zipfile(path):
            return "is truncated or damaged (its zip archive has no central directory, as a cut-off download leaves it)"
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
        if not any(name.endswith("data.pkl") for name in names):
            listed = ", ".join(names[:_SHOWN]) + (", ..." if len(names) > _SHOWN else "")
            return f"is not a PyTorch checkpoint (a zip archive holding {listed}; torch.save writes data.pkl)"
        return f"is damaged: torch.load could not read it ({type(error).__name__}: {_first_line(message)})"
    if head.startswith(_LEGACY_MAGIC):
        return f"is truncated or damaged (torch.load: {type(error).__name__}: {_first_line(message)})"
    if head.startswith(b"\x80"):  # the PROTO opcode that starts every pickle since protocol 2
        return "is not a PyTorch checkpoint (a plain Python pickle)"
    kind = "a text file" if _looks_like_text(head) else "unknown binary data"
    return f"is not a PyTorch checkpoint ({kind}, starting with {head!r})"


def _first_line(message: str) -> str:
    line = message.strip().splitlines()[0].rstrip(".") if message.strip() else "no message"
    return line if len(line) <= 160 else line[:157] + "..."


def _looks_like_text(head: bytes) -> bool:
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return all(char.isprintable() or char in "\t\r\n" for char in text)


def load_state_dict(path: paths.PathLike, *, trusted: bool = False) -> dict[str, Any]:
    """``torch.load(path, map_location="cpu", weights_only=True)``, with errors that name the file.

    ``weights_only=True`` refuses arbitrary pickled objects, which can run code when loaded. A
    checkpoint that needs them (a whole pickled model, custom classes) loads only with
    ``trusted=True``, an explicit statement that the file comes from a trusted source. A relative
    ``path`` resolves against the pytest rootdir. A ``{"state_dict": ...}`` training-loop layout is
    unwrapped.
    """
    resolved = paths.resolve(path)
    if not resolved.is_file():
        raise CheckpointError(f"Checkpoint {paths.describe(path)} does not exist.")
    try:
        loaded = torch_load(resolved, weights_only=not trusted)
    except Exception as error:  # torch.load fails in a dozen ways (zip, pickle, struct, EOF) on a bad file
        problem = load_problem(resolved, error)
        if problem.startswith("holds more than tensors"):
            fix = "Save model.state_dict() instead, or, only if you trust the file, load it with trusted=True."
        elif "damaged" in problem:
            fix = "Save or download it again."
        else:
            fix = "Point at a file written by torch.save(model.state_dict(), path)."
        raise CheckpointError(f"Checkpoint {str(resolved)!r} {problem}. {fix}") from None
    if isinstance(loaded, dict) and "state_dict" in loaded and isinstance(loaded["state_dict"], dict):
        loaded = loaded["state_dict"]  # a common training-loop layout: {"state_dict": ..., "epoch": ...}
    if not isinstance(loaded, dict):
        raise CheckpointError(
            f"Checkpoint {str(resolved)!r} holds a {type(loaded).__name__}, not a state dict. "
            "Save model.state_dict() and load it into a freshly built model."
        )
    return loaded


def load_model(model: nn.Module, path: paths.PathLike, *, trusted: bool = False) -> nn.Module:
    """Load the state dict at ``path`` into ``model`` (strict) and return it in eval mode.

    A relative ``path`` resolves against the pytest rootdir. A checkpoint that does not fit the model
    (missing or unexpected keys, other shapes) raises :class:`CheckpointError` listing the differences.
    """
    state = load_state_dict(path, trusted=trusted)
    shown = repr(str(paths.resolve(path)))
    problems = _mismatch(model, state)
    if problems:
        raise CheckpointError(_mismatch_message(model, state, shown, problems))
    try:
        model.load_state_dict(state)
    except RuntimeError as error:  # the keys and shapes fit; a module's own load hook refused a value
        raise CheckpointError(f"Checkpoint {shown} does not load into {type(model).__name__}: {error}") from None
    return model.eval()


def _mismatch(model: nn.Module, state: dict[str, Any]) -> list[str]:
    """One line per difference between ``state`` and what ``model`` expects; empty when it fits."""
    import torch
    from torch.nn.parameter import is_lazy

    expected = model.state_dict()
    missing = [key for key in expected if key not in state]
    unexpected = [key for key in state if key not in expected]
    shapes = [
        f"{key}: checkpoint {_shape(value)}, model {_shape(expected[key])}"
        for key, value in state.items()
        if key in expected
        and isinstance(value, torch.Tensor)
        and isinstance(expected[key], torch.Tensor)
        and not is_lazy(expected[key])  # a lazy module takes its shape from the checkpoint
        and value.shape != expected[key].shape
    ]
    return [
        *_listed("missing from the checkpoint", missing),
        *_listed("in the checkpoint but not in the model", unexpected),
        *_listed("with other shapes", shapes),
    ]


def _listed(what: str, items: list[str]) -> list[str]:
    if not items:
        return []
    more = f"\n    ... and {len(items) - _SHOWN} more" if len(items) > _SHOWN else ""
    body = "\n".join(f"    {item}" for item in items[:_SHOWN])
    return [f"  {len(items)} key(s) {what}:\n{body}{more}"]


def _mismatch_message(model: nn.Module, state: dict[str, Any], shown: str, problems: list[str]) -> str:
    architecture = type(model).__name__
    lines = [f"Checkpoint {shown} does not fit {architecture}:", *problems]
    for prefix, wrapper in _WRAPPER_PREFIXES.items():
        if state and all(key.startswith(prefix) for key in state):
            stripped = {key.removeprefix(prefix): value for key, value in state.items()}
            if not _mismatch(model, stripped):
                lines.append(
                    f"Every key starts with {prefix!r}: the checkpoint was saved from a {wrapper} wrapper, and "
                    "without that prefix it fits. Save the unwrapped model's state dict (model.module.state_dict() "
                    f"for DataParallel), or rewrite the file once: torch.save({{k.removeprefix({prefix!r}): v for "
                    f"k, v in torch.load(path).items()}}, path)."
                )
                return "\n".join(lines)
    lines.append(
        f"The checkpoint was saved from another architecture or width than this {architecture}: build the model "
        "it was trained as (same class and constructor arguments), or point at the checkpoint of this one."
    )
    return "\n".join(lines)


def _shape(value: Any) -> str:
    return str(tuple(int(size) for size in value.shape))
