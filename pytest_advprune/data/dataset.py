"""The ``Dataset`` every cell evaluates on, checked when it is built, and tensor fingerprints.

torch and numpy are imported inside the functions that need them: the package root exports ``Dataset``,
and loading the plugin must not import torch.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pytest_advprune.errors import AdvPruneError

if TYPE_CHECKING:
    from typing import TypeAlias

    import numpy as np
    import torch

    from pytest_advprune.data.sources import Source
    from pytest_advprune.paths import PathLike

    ArrayLike: TypeAlias = torch.Tensor | np.ndarray[Any, Any]


class DatasetError(AdvPruneError, ValueError):
    """A dataset that cannot be used as given; the message says what is wrong and how to fix it."""


# How many offending labels an error lists before it only counts the rest.
_SHOWN = 5


@dataclass(frozen=True, init=False, repr=False)
class Dataset:
    """A labelled image classification dataset with a train split (for fine-tuning) and an eval split.

    Images are float32 tensors of shape ``(N, C, H, W)`` with values in ``[0, 1]``; labels are int64
    class indices in ``[0, num_classes)``. The constructor checks all of that and raises
    :class:`DatasetError` saying what is wrong and how to fix it. It accepts numpy arrays as well as
    tensors, and float16/float64 images, and stores float32 and int64 tensors (float32 images and int64
    labels are stored as given, not copied).

    To build one from what you already have (a torchvision dataset, an image folder, a DataLoader,
    ``.npz``/``.npy``/``.pt`` files, uint8 or NHWC arrays), use :meth:`from_splits` or :meth:`from_file`.
    """

    name: str
    train_images: torch.Tensor
    train_labels: torch.Tensor
    eval_images: torch.Tensor
    eval_labels: torch.Tensor
    num_classes: int

    def __init__(
        self,
        name: str,
        train_images: ArrayLike,
        train_labels: ArrayLike,
        eval_images: ArrayLike,
        eval_labels: ArrayLike,
        num_classes: int,
    ) -> None:
        check = _Checker(name)
        check.num_classes(num_classes)
        train_x = check.images("train_images", train_images)
        eval_x = check.images("eval_images", eval_images)
        if train_x.shape[1:] != eval_x.shape[1:]:
            raise check.error(
                f"train_images are {_shape(train_x.shape[1:])} (C, H, W) but eval_images are "
                f"{_shape(eval_x.shape[1:])}: both splits must hold images of one shape (the models take one "
                "input size). Resize or crop one split to match the other."
            )
        train_y = check.labels("train_labels", train_labels, len(train_x), num_classes)
        eval_y = check.labels("eval_labels", eval_labels, len(eval_x), num_classes)
        # Frozen: the checked values can only be stored by going around __setattr__.
        for field, value in (
            ("name", name),
            ("train_images", train_x),
            ("train_labels", train_y),
            ("eval_images", eval_x),
            ("eval_labels", eval_y),
            ("num_classes", num_classes),
        ):
            object.__setattr__(self, field, value)

    def __repr__(self) -> str:
        # The generated repr would print every pixel.
        return (
            f"Dataset({self.name!r}, train={_shape(self.train_images.shape)}, "
            f"eval={_shape(self.eval_images.shape)}, num_classes={self.num_classes})"
        )

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.eval_images.shape[1:])

    @classmethod
    def from_splits(
        cls,
        name: str,
        train: Source,
        eval: Source,
        *,
        num_classes: int | None = None,
        transform: Callable[[Any], Any] | None = None,
        limit: int | None = None,
    ) -> Dataset:
        """A dataset from one source per split; see :func:`pytest_advprune.data.sources.from_splits`.

        A source is a pair ``(images, labels)``, a map-style dataset of ``(image, label)`` samples
        (torchvision's ``ImageFolder``, ``CIFAR10(root, download=False)``, ``MNIST``, your own), a
        ``DataLoader`` or other iterable of ``(images, labels)`` batches, or a path: an image folder
        (one subfolder per class), a ``.npz`` or ``.pt`` file, or a pair of ``.npy`` paths. Relative
        paths resolve against the pytest rootdir. PIL images and uint8 pixels are scaled by 1/255,
        HWC/NHWC is moved to CHW/NCHW. ``transform`` replaces that conversion for each image of a
        map-style dataset; ``limit`` keeps at most that many samples per split (a fixed random subset).
        ``num_classes`` defaults to the source's ``classes``, else to the largest label + 1. Nothing is
        ever downloaded.
        """
        from pytest_advprune.data.sources import from_splits

        return from_splits(name, train, eval, num_classes=num_classes, transform=transform, limit=limit)

    @classmethod
    def from_file(
        cls,
        path: PathLike,
        name: str | None = None,
        *,
        num_classes: int | None = None,
        limit: int | None = None,
    ) -> Dataset:
        """Both splits from one ``.npz`` or ``.pt`` file; see :func:`pytest_advprune.data.sources.from_file`.

        The file holds ``train_images``, ``train_labels``, ``eval_images`` and ``eval_labels`` (and
        optionally ``num_classes``); ``name`` defaults to the file's stem.
        """
        from pytest_advprune.data.sources import from_file

        return from_file(path, name, num_classes=num_classes, limit=limit)


def fingerprint_tensors(*tensors: torch.Tensor) -> str:
    """SHA-256 over the shapes, dtypes and raw bytes of ``tensors``, in order (CPU, contiguous)."""
    digest = hashlib.sha256()
    for tensor in tensors:
        tensor = tensor.detach().to("cpu").contiguous()
        digest.update(f"{tuple(tensor.shape)}|{tensor.dtype}|".encode())
        digest.update(tensor.numpy().tobytes())
    return "sha256:" + digest.hexdigest()


def _shape(shape: Any) -> str:
    return str(tuple(int(size) for size in shape))


def to_tensor(value: object, what: str) -> torch.Tensor:
    """``value`` as a tensor: tensors as they are, numpy arrays shared (copied only when read-only).

    Raises ``TypeError`` naming the type for anything else; ``what`` says which value it was.
    """
    import numpy as np
    import torch

    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, np.ndarray):
        if value.dtype.kind not in "biuf":
            raise TypeError(f"{what} is a numpy array of dtype {value.dtype}; expected numbers")
        # torch warns about (and cannot honour) read-only arrays, such as np.broadcast_to's results.
        array = value if value.flags.writeable else value.copy()
        return torch.from_numpy(np.ascontiguousarray(array))
    raise TypeError(f"{what} is a {type_name(value)}; expected a tensor or numpy array")


def type_name(value: object) -> str:
    """``int``, ``list``, ``PIL.Image.Image``: the type of ``value`` as a user would write it."""
    kind = type(value)
    return kind.__qualname__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__qualname__}"


class _Checker:
    """The checks of one dataset, with messages that start with the dataset's name."""

    def __init__(self, name: object) -> None:
        self.name = name
        if not isinstance(name, str) or not name:
            raise self.error(f"name must be a non-empty str, got {name!r}.")

    def error(self, message: str) -> DatasetError:
        return DatasetError(f"Dataset {self.name!r}: {message}")

    def num_classes(self, num_classes: object) -> None:
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
            raise self.error(
                f"num_classes must be an int >= 2 (the number of classes the models predict), got {num_classes!r}."
            )

    def images(self, field: str, value: object) -> torch.Tensor:
        import torch

        try:
            images = to_tensor(value, field)
        except TypeError as error:
            raise self.error(f"{error}. Pass a torch.Tensor or numpy array of shape (N, C, H, W).") from None
        if images.dtype == torch.uint8:
            raise self.error(
                f"{field} are uint8 (values 0..255): convert with images.float() / 255, or build the dataset "
                "with Dataset.from_splits, which scales uint8 by 1/255."
            )
        if not images.is_floating_point():
            raise self.error(
                f"{field} are {_dtype(images)}; images must be floating point in [0, 1]. Convert them, e.g. "
                "images.float() / 255 for 8-bit pixel values."
            )
        if images.dtype != torch.float32:
            images = images.float()  # the models and attacks run in float32
        self._layout(field, images)
        if len(images) == 0:
            raise self.error(f"{field} is empty. {_EMPTY_SPLIT}")
        low, high = (float(v) for v in torch.aminmax(images.detach()))
        if not (math.isfinite(low) and math.isfinite(high)):  # aminmax propagates NaN, so one pass suffices
            nan = int(torch.isnan(images).sum())
            inf = int(torch.isinf(images).sum())
            raise self.error(
                f"{field} hold {nan} NaN and {inf} infinite value(s); every pixel must be a finite value in [0, 1]."
                " Check the loading or preprocessing that produced them."
            )
        if low < 0:
            raise self.error(
                f"{field} have values down to {low:g}: these look normalized; pass raw pixels in [0, 1] and declare "
                "normalization=(mean, std) in @register_model, so attacks keep their pixel-space epsilons."
            )
        if high > 1:
            hint = "divide by 255" if high <= 255 else "scale them into [0, 1]"
            raise self.error(
                f"{field} have values up to {high:g}: {hint}. Images must be floats in [0, 1]"
                " (Dataset.from_splits scales uint8 images by 1/255)."
            )
        return images

    def _layout(self, field: str, images: torch.Tensor) -> None:
        shape = _shape(images.shape)
        if images.dim() == 3:
            raise self.error(
                f"{field} have shape {shape}, which looks like (N, H, W) gray images; add the channel "
                "dimension with images.unsqueeze(1) to get (N, 1, H, W)."
            )
        if images.dim() != 4:
            raise self.error(
                f"{field} have shape {shape}; images must be 4-D (N, C, H, W). Flattened images: reshape "
                "them, e.g. images.reshape(-1, 1, 8, 8)."
            )
        if images.shape[-1] in (1, 3) and images.shape[1] not in (1, 3):
            raise self.error(
                f"{field} have shape {shape}, which looks like NHWC (channels last); images must be NCHW: "
                "use images.permute(0, 3, 1, 2)."
            )

    def labels(self, field: str, value: object, count: int, num_classes: int) -> torch.Tensor:
        import torch

        try:
            labels = to_tensor(value, field)
        except TypeError as error:
            raise self.error(f"{error}. Pass a 1-D tensor or numpy array of class indices.") from None
        if labels.dim() != 1:
            fix = (
                "labels.argmax(1) if they are one-hot or scores"
                if labels.dim() == 2 and labels.shape[1] > 1
                else "labels.reshape(-1)"
            )
            raise self.error(f"{field} have shape {_shape(labels.shape)}; labels must be 1-D class indices. Use {fix}.")
        if labels.dtype == torch.bool:
            raise self.error(f"{field} are bool; labels must be integer class indices. Use labels.long().")
        if labels.is_floating_point():
            integral = bool(torch.all(labels == labels.round())) if labels.numel() else True
            fix = (
                "convert them with labels.long()"
                if integral
                else "they have non-integer values, so they are not class indices (pass the class indices)"
            )
            raise self.error(f"{field} are {_dtype(labels)}; labels must be integer class indices: {fix}.")
        if labels.is_complex():
            raise self.error(f"{field} are {_dtype(labels)}; labels must be integer class indices (int64).")
        if labels.dtype != torch.int64:
            labels = labels.long()
        images = field.replace("labels", "images")
        if len(labels) != count:
            raise self.error(
                f"{field} has {len(labels)} label(s) but {images} has {count} image(s); every image needs "
                "exactly one label."
            )
        low, high = (int(v) for v in torch.aminmax(labels))
        if low < 0 or high >= num_classes:
            bad = torch.unique(labels[(labels < 0) | (labels >= num_classes)])
            shown = ", ".join(str(int(v)) for v in bad[:_SHOWN])
            more = f" and {len(bad) - _SHOWN} more" if len(bad) > _SHOWN else ""
            raise self.error(
                f"{field} hold label(s) {shown}{more}, outside [0, num_classes) = [0, {num_classes}). Labels "
                f"are class indices 0..{num_classes - 1}: fix num_classes, or remap the labels "
                "(e.g. 1-based labels: labels - 1)."
            )
        return labels


_EMPTY_SPLIT = (
    "Both splits need samples: the train split feeds fine-tuning after pruning, the eval split is what "
    "every cell measures."
)


def _dtype(tensor: torch.Tensor) -> str:
    return str(tensor.dtype).removeprefix("torch.")
