"""Building a :class:`Dataset` from what a team already has. Nothing here ever downloads anything.

A *source* is one split's data, in any of these forms:

- a pair ``(images, labels)`` of tensors or numpy arrays;
- a map-style dataset (``__len__`` and ``__getitem__``) whose samples are ``(image, label)``: torchvision's
  ``ImageFolder``, ``CIFAR10(root, download=False)``, ``MNIST``, or your own class. An image is a PIL
  image, a tensor or a numpy array; a label an int or a 0-d integer tensor;
- a ``torch.utils.data.DataLoader``, or any other iterable of ``(images, labels)`` batches (an item whose
  label is a single number counts as one ``(image, label)`` sample);
- a path (``str`` or ``Path``; relative paths resolve against the pytest rootdir): a folder in
  ``ImageFolder`` layout (one subfolder of images per class; torchvision opens every image as RGB, so
  pass ``transform=torchvision.transforms.Grayscale()`` for gray images), a ``.npz`` file with arrays
  ``images`` and ``labels`` (or ``x`` and ``y``), a ``.pt`` file holding a dict with ``images`` and
  ``labels`` (or ``x`` and ``y``) or an ``(images, labels)`` tuple, or a pair of paths
  ``(images.npy, labels.npy)``.

Conversion, the same for every source: PIL images and uint8 pixels are scaled by 1/255 (torchvision's
``to_tensor`` convention); an HWC image or NHWC batch (last dimension 1 or 3, the one after the batch
dimension not) is moved to CHW / NCHW; gray images without a channel dimension, ``(H, W)`` or
``(N, H, W)``, get one. Float images already in CHW / NCHW pass through unchanged. ``transform`` replaces
that conversion for each image of a map-style dataset (torchvision transforms, say); what it returns is
then converted the same way, so a transform that ends in ``ToTensor()`` or ``PILToTensor()`` both work.

The result goes through the checking :class:`Dataset` constructor like any other, so a loader's output
gets the same checks and messages.
"""

from __future__ import annotations

import os
import sys
import zipfile
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol, TypeAlias

import numpy as np
import torch

from pytest_advprune import paths
from pytest_advprune.data.dataset import Dataset, DatasetError, to_tensor, type_name
from pytest_advprune.paths import PathLike
from pytest_advprune.seeds import derive_seed

if TYPE_CHECKING:
    from PIL import Image


class MapStyle(Protocol):
    """What a map-style dataset offers: a length, and the ``(image, label)`` sample at an index."""

    def __len__(self) -> int: ...

    def __getitem__(self, index: int, /) -> Any: ...


Source: TypeAlias = "PathLike | tuple[Any, Any] | MapStyle | Iterable[Any]"
Transform: TypeAlias = Callable[[Any], Any]

ACCEPTED = (
    "a pair (images, labels) of tensors or numpy arrays; a map-style dataset of (image, label) samples "
    "(torchvision's ImageFolder, CIFAR10(root, download=False), MNIST, or your own); a DataLoader or other "
    "iterable of (images, labels) batches; or a path: an image folder with one subfolder per class, a .npz "
    "(arrays images and labels, or x and y), a .pt (a dict with images and labels, or an (images, labels) "
    "tuple), or a pair of paths (images.npy, labels.npy)"
)
_IMAGE_KEYS = ("images", "x")
_LABEL_KEYS = ("labels", "y")
_SPLIT_KEYS = ("train_images", "train_labels", "eval_images", "eval_labels")
_TORCH_SUFFIXES = (".pt", ".pth")
# PIL modes with 8-bit channels, and what each becomes: the models take gray or RGB.
_PIL_MODES = {"L": "L", "1": "L", "LA": "L", "RGB": "RGB", "RGBA": "RGB", "P": "RGB", "CMYK": "RGB", "YCbCr": "RGB"}


class _Split(NamedTuple):
    images: torch.Tensor
    labels: torch.Tensor
    classes: Sequence[Any] | None  # the source's class names, when it has them


def from_splits(
    name: str,
    train: Source,
    eval: Source,
    *,
    num_classes: int | None = None,
    transform: Transform | None = None,
    limit: int | None = None,
) -> Dataset:
    """A :class:`Dataset` called ``name`` from one source per split (see the module docstring).

    ``transform`` is applied to each image of a map-style dataset (or image folder) in place of the
    default conversion; other sources refuse it, since their arrays are converted as they are.
    ``limit``: at most that many samples per split. For a pair, a file or a map-style dataset these are a
    fixed random subset (seeded from ``name`` and the split, kept in source order), so a folder sorted by
    class still gives a mixture of classes, and a map-style dataset loads only the samples it keeps. For a
    DataLoader or other iterable they are its first ``limit`` samples (so pass a loader that does not
    shuffle: other samples every run make every baseline stale).
    ``num_classes``: when not given, the length of the sources' ``classes`` attribute (ImageFolder, CIFAR10
    and MNIST have one; train and eval must agree), else the largest label of both splits + 1.
    """
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise DatasetError(f"Dataset {name!r}: limit must be a positive int (samples per split), got {limit!r}.")
    train_split = _load(name, "train", train, transform, limit)
    eval_split = _load(name, "eval", eval, transform, limit)
    if num_classes is None:
        num_classes = _infer_num_classes(name, train_split, eval_split)
    return Dataset(
        name, train_split.images, train_split.labels, eval_split.images, eval_split.labels, num_classes=num_classes
    )


def from_file(
    path: PathLike, name: str | None = None, *, num_classes: int | None = None, limit: int | None = None
) -> Dataset:
    """Both splits from one ``.npz`` or ``.pt`` file holding ``train_images``, ``train_labels``,
    ``eval_images`` and ``eval_labels``, and optionally ``num_classes`` (an explicit argument wins).

    ``name`` defaults to the file's stem; a relative path resolves against the pytest rootdir. Arrays are
    converted as :func:`from_splits` converts pairs, and ``limit`` works the same way.
    """
    resolved = paths.resolve(path)
    name = resolved.stem if name is None else name
    what = f"Dataset {name!r}: the file"
    if resolved.suffix not in (".npz", *_TORCH_SUFFIXES):
        raise DatasetError(
            f"{what} {paths.describe(path)} is not a .npz or .pt file. Dataset.from_file reads one file holding "
            f"{', '.join(_SPLIT_KEYS)}; for other sources (folders, DataLoaders, .npy) use Dataset.from_splits."
        )
    arrays = _read_arrays(what, path, resolved)
    missing = [key for key in _SPLIT_KEYS if key not in arrays]
    if missing:
        raise DatasetError(
            f"{what} {str(resolved)!r} lacks {', '.join(missing)}; it holds {_keys(arrays)}. Dataset.from_file "
            f"needs {', '.join(_SPLIT_KEYS)} (and optionally num_classes); for one split per file use "
            "Dataset.from_splits."
        )
    if num_classes is None and "num_classes" in arrays:
        stored = arrays["num_classes"]
        value = stored.item() if _is_array(stored) and stored.ndim == 0 else stored
        if isinstance(value, bool) or not isinstance(value, int):
            raise DatasetError(f"{what} {str(resolved)!r} holds num_classes={stored!r}; expected one integer.")
        num_classes = value
    return from_splits(
        name,
        (arrays["train_images"], arrays["train_labels"]),
        (arrays["eval_images"], arrays["eval_labels"]),
        num_classes=num_classes,
        limit=limit,
    )


# -- one split --------------------------------------------------------------------------------------


def _load(name: str, split: str, source: Any, transform: Transform | None, limit: int | None) -> _Split:
    what = f"Dataset {name!r}: the {split} source"
    if isinstance(source, (str, os.PathLike)):
        return _load_path(name, split, source, transform, limit)
    if isinstance(source, (tuple, list)) and len(source) == 2:
        first, second = source
        if isinstance(first, (str, os.PathLike)) and isinstance(second, (str, os.PathLike)):
            _refuse_transform(what, "a pair of .npy paths", transform)
            return _load_npy_pair(name, split, first, second, limit)
        if _is_array(first) and _is_array(second):
            _refuse_transform(what, "a pair of arrays", transform)
            return _take_pair(name, split, first, second, limit)
        if not (isinstance(first, (tuple, list)) and len(first) == 2):  # nor two (image, label) samples
            raise DatasetError(
                f"{what} is a pair ({type_name(first)}, {type_name(second)}); a pair holds (images, labels) as two "
                "tensors or numpy arrays (np.stack a list of images, np.asarray a list of labels), or two .npy paths."
            )
    if isinstance(source, (torch.Tensor, np.ndarray, dict)):
        raise DatasetError(f"{what} is a {type_name(source)}. Accepted: {ACCEPTED}.")
    if isinstance(source, torch.utils.data.DataLoader):
        _refuse_transform(what, "a DataLoader", transform)
        return _load_iterable(name, split, source, limit, _classes(source.dataset))
    if hasattr(source, "__len__") and hasattr(source, "__getitem__"):
        return _load_map_style(name, split, source, transform, limit)
    if isinstance(source, Iterable):
        _refuse_transform(what, f"an iterable ({type_name(source)})", transform)
        return _load_iterable(name, split, source, limit, None)
    raise DatasetError(f"{what} is a {type_name(source)}. Accepted: {ACCEPTED}.")


def _refuse_transform(what: str, kind: str, transform: Transform | None) -> None:
    if transform is not None:
        raise DatasetError(
            f"{what} is {kind}, but transform= applies to each image of a map-style dataset or image folder. "
            "Arrays and batches are converted as they are (uint8 scaled by 1/255, NHWC moved to NCHW): "
            "transform them before passing them, or leave transform out."
        )


def _take_pair(name: str, split: str, images: Any, labels: Any, limit: int | None) -> _Split:
    """A pair of arrays, limited and converted; unequal lengths are left for the Dataset check to report."""
    x = _tensor(name, f"the {split} images", images)
    y = _tensor(name, f"the {split} labels", labels)
    if limit is not None and x.dim() > 0 and y.dim() > 0 and len(x) == len(y) and len(x) > limit:
        chosen = torch.from_numpy(_subset(name, split, len(x), limit))
        x, y = x[chosen], y[chosen]
    return _Split(_batch_images(x), y, None)


def _subset(name: str, split: str, size: int, limit: int) -> np.ndarray[Any, Any]:
    """``limit`` indices of ``range(size)``: a seeded random choice, kept in source order."""

    generator = torch.Generator().manual_seed(derive_seed(0, "limit", name, split))
    chosen: np.ndarray[Any, Any] = torch.randperm(size, generator=generator)[:limit].sort().values.numpy()
    return chosen


def _load_map_style(name: str, split: str, source: MapStyle, transform: Transform | None, limit: int | None) -> _Split:
    size = len(source)
    # Indices first, so that a limited dataset decodes only the images it keeps.
    indices = range(size) if limit is None or size <= limit else _subset(name, split, size, limit).tolist()
    images: list[torch.Tensor] = []
    labels: list[int] = []
    for index in indices:
        where = f"sample {index} of the {split} source ({type_name(source)})"
        sample = source[index]
        if not isinstance(sample, (tuple, list)) or len(sample) != 2:
            raise DatasetError(
                f"Dataset {name!r}: {where} is {_brief(sample)}; a map-style dataset must return (image, label)."
            )
        image, label = sample
        converted = _sample_image(name, where, image if transform is None else transform(image))
        if images and converted.shape != images[0].shape:
            raise DatasetError(
                f"Dataset {name!r}: {where} is an image of shape {tuple(converted.shape)}, but the first one is "
                f"{tuple(images[0].shape)}; all images must have one shape. Pass transform= that resizes them, "
                "e.g. torchvision.transforms.Compose([Resize((32, 32)), ToTensor()])."
            )
        images.append(converted)
        labels.append(_label(name, where, label))
    if not images:
        raise DatasetError(f"Dataset {name!r}: the {split} source ({type_name(source)}) is empty.")
    return _Split(torch.stack(images), torch.tensor(labels, dtype=torch.int64), _classes(source))


def _load_iterable(name: str, split: str, source: Iterable[Any], limit: int | None, classes: Any) -> _Split:
    images: list[torch.Tensor] = []
    labels: list[torch.Tensor] = []
    count = 0
    for number, item in enumerate(source):
        where = f"batch {number} of the {split} source ({type_name(source)})"
        if not isinstance(item, (tuple, list)) or len(item) != 2:
            raise DatasetError(f"Dataset {name!r}: {where} is {_brief(item)}; expected (images, labels).")
        batch_x, batch_y = item
        if _is_scalar(batch_y):  # an (image, label) sample rather than a batch
            x = _sample_image(name, where, batch_x)[None]
            y = torch.tensor([_label(name, where, batch_y)])
        else:
            x = _batch_images(_tensor(name, f"the images of {where}", batch_x))
            y = _tensor(name, f"the labels of {where}", batch_y)
        if images and x.shape[1:] != images[0].shape[1:]:
            raise DatasetError(
                f"Dataset {name!r}: {where} holds images of shape {tuple(x.shape[1:])}, but the first batch "
                f"{tuple(images[0].shape[1:])}; all images must have one shape."
            )
        images.append(x)
        labels.append(y)
        count += len(x)
        if limit is not None and count >= limit:
            break  # before the loader loads another batch
    if not images:
        raise DatasetError(f"Dataset {name!r}: the {split} source ({type_name(source)}) yielded no batches.")
    x, y = torch.cat(images), torch.cat(labels)
    return _Split(x[:limit], y[:limit], classes)


# -- paths ------------------------------------------------------------------------------------------


def _load_path(name: str, split: str, path: PathLike, transform: Transform | None, limit: int | None) -> _Split:
    resolved = paths.resolve(path)
    what = f"Dataset {name!r}: the {split} source"
    if resolved.is_dir():
        return _load_map_style(name, split, _image_folder(what, path, resolved), transform, limit)
    if resolved.suffix == ".npy" and resolved.is_file():
        raise DatasetError(
            f"{what} {str(resolved)!r} is one .npy file, which holds one array; pass the pair "
            "(images.npy, labels.npy), or save both arrays in one .npz."
        )
    arrays = _read_arrays(what, path, resolved)
    _refuse_transform(what, f"the file {str(resolved)!r}", transform)
    images = next((key for key in _IMAGE_KEYS if key in arrays), None)
    labels = next((key for key in _LABEL_KEYS if key in arrays), None)
    if images is None or labels is None:
        raise DatasetError(
            f"{what} {str(resolved)!r} holds {_keys(arrays)}; expected arrays 'images' and 'labels' (or 'x' and "
            "'y'). A file with both splits loads with Dataset.from_file."
        )
    return _take_pair(name, split, arrays[images], arrays[labels], limit)


def _read_arrays(what: str, path: PathLike, resolved: Path) -> dict[str, Any]:
    """The named arrays of a ``.npz`` or ``.pt`` file (a ``.pt`` pair becomes images and labels)."""
    if not resolved.exists():
        raise DatasetError(f"{what} {paths.describe(path)} does not exist.")
    if resolved.suffix == ".npz":
        return _read_npz(what, resolved)
    if resolved.suffix in _TORCH_SUFFIXES:
        from pytest_advprune.checkpoints import load_problem, torch_load

        try:
            loaded = torch_load(resolved)
        except Exception as error:  # torch.load fails in many ways on a bad file; load_problem tells which
            raise DatasetError(
                f"{what} {str(resolved)!r} {load_problem(resolved, error)}. Save tensors with "
                "torch.save({'images': images, 'labels': labels}, path) (numpy arrays: torch.from_numpy them first)."
            ) from None
        if isinstance(loaded, (tuple, list)) and len(loaded) == 2:
            return {"images": loaded[0], "labels": loaded[1]}
        if isinstance(loaded, dict):
            return {str(key): value for key, value in loaded.items()}
        raise DatasetError(
            f"{what} {str(resolved)!r} holds {_brief(loaded)}; expected a dict of tensors or an (images, labels) tuple."
        )
    raise DatasetError(
        f"{what} {str(resolved)!r} has suffix {resolved.suffix!r}, which is not a data file this reads. "
        f"Accepted: {ACCEPTED}."
    )


def _read_npz(what: str, resolved: Path) -> dict[str, Any]:
    with resolved.open("rb") as file:
        head = file.read(2)
    if head != b"PK":  # np.savez writes a zip archive; np.load would guess "pickled data" for anything else
        raise DatasetError(f"{what} {str(resolved)!r} is not a .npz archive (np.savez writes a zip file); {head!r}...")
    try:
        with np.load(resolved, allow_pickle=False) as archive:
            return {key: archive[key] for key in archive.files}
    except zipfile.BadZipFile:
        raise DatasetError(f"{what} {str(resolved)!r} is truncated or damaged (an incomplete zip archive).") from None
    except (OSError, ValueError, EOFError) as error:  # object arrays need pickle, which stays off
        raise DatasetError(f"{what} {str(resolved)!r} cannot be read with allow_pickle=False: {error}") from None


def _load_npy_pair(name: str, split: str, images: PathLike, labels: PathLike, limit: int | None) -> _Split:
    arrays = []
    for path in (images, labels):
        resolved = paths.resolve(path)
        if not resolved.is_file():
            raise DatasetError(f"Dataset {name!r}: the {split} source {paths.describe(path)} does not exist.")
        try:
            arrays.append(np.load(resolved, allow_pickle=False))
        except (OSError, ValueError, EOFError) as error:
            raise DatasetError(
                f"Dataset {name!r}: the {split} source {str(resolved)!r} is not a readable .npy array "
                f"({error}); write it with np.save."
            ) from None
    return _take_pair(name, split, arrays[0], arrays[1], limit)


def _image_folder(what: str, path: PathLike, resolved: Path) -> MapStyle:
    from torchvision.datasets import ImageFolder

    try:
        folder: MapStyle = ImageFolder(str(resolved), loader=_open_image)
    except FileNotFoundError as error:  # no class subfolders, or class folders without images
        raise DatasetError(
            f"{what} {paths.describe(path)} is not a folder in ImageFolder layout ({error}). Put the images of each "
            "class in a subfolder named after the class: root/cat/001.png, root/dog/001.png."
        ) from None
    return folder


def _open_image(path: str) -> Image.Image:
    """The image as stored: a gray image stays one channel (torchvision's default loader makes every
    image RGB, so a gray dataset would reach a one-channel model with three channels)."""
    from PIL import Image

    with open(path, "rb") as handle:
        image = Image.open(handle)
        image.load()  # read the pixels now: the file closes with this block
    return image


# -- conversion -------------------------------------------------------------------------------------


def _tensor(name: str, what: str, value: Any) -> torch.Tensor:
    try:
        return to_tensor(value, what)
    except TypeError as error:
        raise DatasetError(f"Dataset {name!r}: {error}.") from None


def _batch_images(images: torch.Tensor) -> torch.Tensor:
    """``(N, H, W)`` gray and NHWC batches moved to NCHW, uint8 scaled by 1/255; others as they are, for the
    :class:`Dataset` check to judge."""
    if images.dim() == 3:
        images = images[:, None]
    elif images.dim() == 4 and images.shape[-1] in (1, 3) and images.shape[1] not in (1, 3):
        images = images.permute(0, 3, 1, 2)
    return images.float().div_(255) if images.dtype == torch.uint8 else images


def _sample_image(name: str, where: str, image: Any) -> torch.Tensor:
    """One image as a CHW tensor: PIL and uint8 scaled by 1/255, HWC moved, gray given a channel."""
    if _is_pil(image):
        image = _pil_array(name, where, image)
    try:
        tensor = to_tensor(image, f"the image of {where}")
    except TypeError as error:
        raise DatasetError(
            f"Dataset {name!r}: {error} or PIL image. Pass transform= that turns the images into tensors."
        ) from None
    if tensor.dim() == 2:
        tensor = tensor[None]
    elif tensor.dim() == 3 and tensor.shape[-1] in (1, 3) and tensor.shape[0] not in (1, 3):
        tensor = tensor.permute(2, 0, 1)
    if tensor.dim() != 3:
        raise DatasetError(
            f"Dataset {name!r}: the image of {where} has shape {tuple(tensor.shape)}; expected (C, H, W), "
            "(H, W, C) or (H, W)."
        )
    return tensor.float().div_(255) if tensor.dtype == torch.uint8 else tensor


def _is_pil(image: object) -> bool:
    pil = sys.modules.get("PIL.Image")  # not imported yet: the object cannot be a PIL image
    return pil is not None and isinstance(image, pil.Image)


def _pil_array(name: str, where: str, image: Image.Image) -> np.ndarray[Any, Any]:
    mode = _PIL_MODES.get(image.mode)
    if mode is None:
        raise DatasetError(
            f"Dataset {name!r}: the image of {where} is a PIL image in mode {image.mode!r}, not 8-bit gray or "
            "color; pass transform= that turns it into a float tensor in [0, 1]."
        )
    return np.asarray(image if image.mode == mode else image.convert(mode))


def _label(name: str, where: str, label: Any) -> int:
    value = label.item() if _is_scalar(label) and hasattr(label, "item") else label
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise DatasetError(
        f"Dataset {name!r}: the label of {where} is {_brief(label)}; expected an int class index (or a 0-d "
        "integer tensor)."
    )


def _is_scalar(value: object) -> bool:
    if isinstance(value, (int, float, np.number)):
        return True
    return isinstance(value, (torch.Tensor, np.ndarray)) and value.ndim == 0


def _is_array(value: object) -> bool:
    return isinstance(value, (torch.Tensor, np.ndarray))


def _is_integer(tensor: torch.Tensor) -> bool:
    return not (tensor.is_floating_point() or tensor.is_complex() or tensor.dtype == torch.bool)


def _classes(source: object) -> Sequence[Any] | None:
    classes = getattr(source, "classes", None)
    return classes if isinstance(classes, (list, tuple)) and classes else None


def _infer_num_classes(name: str, train: _Split, eval: _Split) -> int:
    if train.classes is not None and eval.classes is not None and list(train.classes) != list(eval.classes):
        raise DatasetError(
            f"Dataset {name!r}: the train source has classes {_names(train.classes)} but the eval source has "
            f"{_names(eval.classes)}, so one label would mean different classes in the two splits. Give both the "
            "same classes (for image folders: the same class subfolders), or pass num_classes= and matching labels."
        )
    for split in (train, eval):
        if split.classes is not None:
            return len(split.classes)
    usable = [y for y in (train.labels, eval.labels) if y.dim() == 1 and y.numel() and _is_integer(y)]
    if len(usable) < 2:
        # Float, bool, empty or misshapen labels: any valid count lets the Dataset check name the real problem.
        return max([2, *(int(y.max()) + 1 for y in usable)])
    largest = max(int(y.max()) for y in usable)
    if largest < 1:
        raise DatasetError(
            f"Dataset {name!r}: num_classes was not given and the labels cannot tell it (the largest label is "
            f"{largest}); pass num_classes=."
        )
    return largest + 1


def _names(classes: Sequence[Any]) -> str:
    shown = ", ".join(repr(c) for c in list(classes)[:8])
    return f"[{shown}{', ...' if len(classes) > 8 else ''}] ({len(classes)})"


def _keys(arrays: dict[str, Any]) -> str:
    return ", ".join(repr(key) for key in arrays) if arrays else "no arrays"


def _brief(value: object) -> str:
    """``value`` named by its type, with its repr when short (samples can be whole images)."""
    text = repr(value)
    return f"a {type_name(value)}" + (f" ({text})" if len(text) <= 60 else "")
