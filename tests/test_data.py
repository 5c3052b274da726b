"""Datasets check themselves at construction, and build from what teams already have, without downloads."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image
from torch.utils.data import DataLoader, TensorDataset

import pytest_advprune
from pytest_advprune import paths
from pytest_advprune.data import Dataset, DatasetError, fingerprint_tensors, load_digits


def images(n: int = 6, c: int = 1, h: int = 4, w: int = 4, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, c, h, w, generator=torch.Generator().manual_seed(seed))


def labels(n: int = 6, k: int = 3) -> torch.Tensor:
    return torch.arange(n) % k


def build(**changes: Any) -> Dataset:
    """A valid 3-class dataset of 6 train and 4 eval images, with ``changes`` applied to its arguments."""
    arguments: dict[str, Any] = {
        "name": "toy",
        "train_images": images(6),
        "train_labels": labels(6),
        "eval_images": images(4, seed=1),
        "eval_labels": labels(4),
        "num_classes": 3,
    }
    arguments.update(changes)
    return Dataset(**arguments)


@pytest.fixture
def rootdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Relative paths resolve against ``tmp_path``; the previous rootdir comes back afterwards."""
    monkeypatch.setattr(paths, "_rootdir", None)  # restored by monkeypatch at teardown
    paths.set_rootdir(tmp_path)
    return tmp_path.resolve()


# -- the constructor's checks -----------------------------------------------------------------------


def test_valid_tensors_are_stored_as_given() -> None:
    train_x, train_y = images(6), labels(6)
    data = Dataset("toy", train_x, train_y, images(4, seed=1), labels(4), 3)
    assert data.train_images is train_x and data.train_labels is train_y
    assert data.input_shape == (1, 4, 4)
    assert repr(data) == "Dataset('toy', train=(6, 1, 4, 4), eval=(4, 1, 4, 4), num_classes=3)"
    assert pytest_advprune.Dataset is Dataset


def test_numpy_arrays_and_other_dtypes_are_converted() -> None:
    x = np.random.default_rng(0).random((6, 1, 4, 4))  # float64
    data = build(train_images=x, train_labels=np.arange(6, dtype=np.int32) % 3, eval_images=images(4).half())
    assert data.train_images.dtype == torch.float32 and data.eval_images.dtype == torch.float32
    assert data.train_labels.dtype == torch.int64
    assert torch.allclose(data.train_images, torch.from_numpy(x).float())
    read_only = np.broadcast_to(np.float32(0.5), (4, 1, 4, 4))  # torch would warn about sharing it
    assert torch.equal(build(eval_images=read_only).eval_images, torch.full((4, 1, 4, 4), 0.5))


def test_the_digits_dataset_is_unchanged() -> None:
    data = load_digits()
    assert (len(data.train_images), len(data.eval_images), data.num_classes) == (1347, 450, 10)
    assert fingerprint_tensors(data.eval_images, data.eval_labels) == (
        "sha256:db052ea65fae3ff870a74b1fe0b3ce5992db9aa317d25ff9966a992fe15867b7"
    )


PROBLEMS = {
    "not-an-array": ({"train_images": [[0.5]]}, r"train_images is a list; expected a tensor or numpy array"),
    "uint8": (
        {"eval_images": (images(4) * 255).to(torch.uint8)},
        r"eval_images are uint8 \(values 0\.\.255\): convert with images\.float\(\) / 255, or build the "
        r"dataset with Dataset\.from_splits, which scales uint8 by 1/255",
    ),
    "int64": ({"train_images": torch.zeros(6, 1, 4, 4, dtype=torch.int64)}, r"train_images are int64.*floating point"),
    "gray-3d": ({"train_images": images(6)[:, 0]}, r"train_images have shape \(6, 4, 4\).*images\.unsqueeze\(1\)"),
    "flat": ({"train_images": images(6).flatten(1)}, r"train_images have shape \(6, 16\); images must be 4-D"),
    "nhwc": (
        {"eval_images": torch.rand(4, 4, 4, 3)},
        r"eval_images have shape \(4, 4, 4, 3\), which looks like NHWC.*images\.permute\(0, 3, 1, 2\)",
    ),
    "two-shapes": (
        {"eval_images": images(4, h=5)},
        r"train_images are \(1, 4, 4\) \(C, H, W\) but eval_images are \(1, 5, 4\)",
    ),
    "empty": (
        {"eval_images": torch.zeros(0, 1, 4, 4)},
        r"eval_images is empty.*eval split is what every cell measures",
    ),
    "0-255": ({"eval_images": images(4) * 255}, r"eval_images have values up to 2\d\d(\.\d+)?: divide by 255"),
    "huge": (
        {"train_images": images(6) * 1000},
        r"train_images have values up to \d+(\.\d+)?: scale them into \[0, 1\]",
    ),
    "normalized": (
        {"train_images": images(6) - 2.1},
        r"train_images have values down to -2\.\d+: these look normalized; pass raw pixels in \[0, 1\] and "
        r"declare normalization=\(mean, std\) in @register_model",
    ),
    "float-labels": (
        {"eval_labels": labels(4).float()},
        r"eval_labels are float32; .*convert them with labels\.long\(\)",
    ),
    "fractional-labels": ({"eval_labels": labels(4) + 0.5}, r"eval_labels are float32; .*non-integer values"),
    "bool-labels": ({"eval_labels": labels(4) == 1}, r"eval_labels are bool.*labels\.long\(\)"),
    "one-hot": ({"eval_labels": torch.eye(3)[labels(4)]}, r"eval_labels have shape \(4, 3\).*labels\.argmax\(1\)"),
    "column": ({"eval_labels": labels(4)[:, None]}, r"eval_labels have shape \(4, 1\).*labels\.reshape\(-1\)"),
    "lengths": ({"train_labels": labels(5)}, r"train_labels has 5 label\(s\) but train_images has 6 image\(s\)"),
    "out-of-range": (
        {"eval_labels": torch.tensor([0, 3, -1, 3])},
        r"eval_labels hold label\(s\) -1, 3, outside \[0, num_classes\) = \[0, 3\)",
    ),
    "one-based": (
        {"train_labels": torch.arange(6) + 1},
        r"train_labels hold label\(s\) 3, 4, 5, 6, outside.*labels - 1",
    ),
    "many-out-of-range": (
        {"train_labels": torch.arange(6) + 10},
        r"train_labels hold label\(s\) 10, 11, 12, 13, 14 and 1 more, outside",
    ),
    "one-class": ({"num_classes": 1}, r"num_classes must be an int >= 2 .*got 1"),
    "bool-classes": ({"num_classes": True}, r"num_classes must be an int >= 2 .*got True"),
    "float-classes": ({"num_classes": 3.0}, r"num_classes must be an int >= 2 .*got 3\.0"),
}


@pytest.mark.parametrize(("changes", "expected"), PROBLEMS.values(), ids=PROBLEMS.keys())
def test_each_problem_is_named_with_its_fix(changes: dict[str, Any], expected: str) -> None:
    with pytest.raises(DatasetError, match=r"^Dataset 'toy': .*" + expected):
        build(**changes)


def test_non_finite_values_are_counted_per_split() -> None:
    x = images(4)
    x[0, 0, 0, 0], x[1, 0, 0, 0], x[2, 0, 1, 1] = float("nan"), float("nan"), float("inf")
    with pytest.raises(DatasetError, match=r"eval_images hold 2 NaN and 1 infinite value\(s\)"):
        build(eval_images=x)


def test_a_bad_name_is_refused() -> None:
    with pytest.raises(DatasetError, match=r"^Dataset '': name must be a non-empty str"):
        build(name="")


@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_images_outside_the_unit_interval_are_always_refused(data: st.DataObject) -> None:
    shape = data.draw(st.tuples(st.integers(1, 4), st.sampled_from([1, 3]), st.integers(1, 5), st.integers(1, 5)))
    array = data.draw(hnp.arrays(np.float32, shape, elements=st.floats(0, 1, width=32)))
    outside = data.draw(st.one_of(st.floats(-1e6, -(2.0**-10), width=32), st.floats(1 + 2.0**-10, 1e6, width=32)))
    array.flat[data.draw(st.integers(0, array.size - 1))] = outside
    with pytest.raises(DatasetError, match=r"eval_images have values (up|down) to"):
        Dataset("toy", images(2, c=shape[1], h=shape[2], w=shape[3]), labels(2, 2), array, labels(shape[0], 2), 2)


# -- sources ----------------------------------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_float_nchw_arrays_in_the_unit_interval_round_trip_unchanged(data: st.DataObject) -> None:
    shape = data.draw(st.tuples(st.integers(1, 5), st.sampled_from([1, 3]), st.integers(1, 6), st.integers(1, 6)))
    train = data.draw(hnp.arrays(np.float32, shape, elements=st.floats(0, 1, width=32)))
    eval_ = data.draw(hnp.arrays(np.float32, (2, *shape[1:]), elements=st.floats(0, 1, width=32)))
    y = np.arange(shape[0]) % 2
    dataset = Dataset.from_splits("rt", (train, y), (eval_, np.array([0, 1])))
    assert torch.equal(dataset.train_images, torch.from_numpy(train))
    assert torch.equal(dataset.eval_images, torch.from_numpy(eval_))
    assert torch.equal(dataset.train_labels, torch.from_numpy(y))
    assert dataset.num_classes == 2


def test_uint8_nhwc_and_gray_arrays_are_converted() -> None:
    rgb = np.random.default_rng(0).integers(0, 256, (6, 5, 4, 3), dtype=np.uint8)  # NHWC
    gray = rgb[..., 0].copy()  # (N, H, W)
    data = Dataset.from_splits("conv", (rgb, np.arange(6) % 3), (torch.from_numpy(rgb[:2]), torch.tensor([0, 2])))
    assert data.train_images.shape == (6, 3, 5, 4)
    assert torch.allclose(data.train_images, torch.from_numpy(rgb).permute(0, 3, 1, 2).float() / 255)
    assert torch.equal(data.eval_images, data.train_images[:2])
    gray_data = Dataset.from_splits("gray", (gray, np.arange(6) % 3), (gray, np.arange(6) % 3))
    assert gray_data.input_shape == (1, 5, 4) and float(gray_data.eval_images.max()) <= 1


class Samples:
    """A user's own map-style dataset: gray PIL images of size 4x4 whose pixels equal the label * 25."""

    def __init__(self, classes_sorted: list[int]) -> None:
        self.targets = classes_sorted
        self.calls = 0

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> tuple[Image.Image, int]:
        self.calls += 1
        label = self.targets[index]
        return Image.fromarray(np.full((4, 4), label * 25, dtype=np.uint8)), label


def test_a_map_style_dataset_of_pil_images() -> None:
    train, eval_ = Samples([0, 1, 2, 2]), Samples([2, 0])
    data = Dataset.from_splits("user", train, eval_)
    assert data.train_images.shape == (4, 1, 4, 4) and data.num_classes == 3
    assert torch.allclose(data.train_images[:, 0, 0, 0], torch.tensor([0, 25, 50, 50]) / 255)
    assert data.eval_labels.tolist() == [2, 0]


def test_limit_loads_only_the_kept_samples_as_a_fixed_class_mixture() -> None:
    sorted_by_class = [label for label in range(10) for _ in range(50)]  # 500 samples, class by class
    source = Samples(sorted_by_class)
    data = Dataset.from_splits("big", source, Samples([0, 9]), limit=40)
    assert source.calls == 40 and len(data.train_labels) == 40
    assert len(set(data.train_labels.tolist())) >= 8  # the first 40 in order would all be class 0
    again = Dataset.from_splits("big", Samples(sorted_by_class), Samples([0, 9]), limit=40)
    assert torch.equal(again.train_labels, data.train_labels)  # the same subset every run
    assert torch.equal(again.train_images, data.train_images)
    pairs = Dataset.from_splits("big", (images(500), torch.tensor(sorted_by_class)), (images(2), labels(2)), limit=40)
    assert len(pairs.train_labels) == 40 and len(set(pairs.train_labels.tolist())) >= 8
    assert len(pairs.eval_labels) == 2  # fewer than the limit: all of them


def test_a_transform_replaces_the_default_conversion() -> None:
    from torchvision import transforms

    pipeline = transforms.Compose([transforms.Resize((2, 2)), transforms.ToTensor()])
    data = Dataset.from_splits("t", Samples([0, 1, 2]), Samples([1, 2]), transform=pipeline)
    assert data.input_shape == (1, 2, 2)
    with pytest.raises(DatasetError, match=r"the train source is a pair of arrays, but transform= applies"):
        Dataset.from_splits("t", (images(), labels()), Samples([1]), transform=pipeline)


def write_image_folder(root: Path, counts: dict[str, int], size: tuple[int, int] = (5, 4), mode: str = "RGB") -> None:
    for number, (cls, count) in enumerate(counts.items()):
        (root / cls).mkdir(parents=True)
        for index in range(count):
            color = (number * 100, index * 10, 255) if mode == "RGB" else number * 100 + index
            Image.new(mode, size, color).save(root / cls / f"{index}.png")


def test_a_gray_image_folder_stays_one_channel(tmp_path: Path) -> None:
    """torchvision's default loader makes every image RGB; a folder of gray PNGs is a one-channel dataset."""
    write_image_folder(tmp_path / "train", {"a": 2, "b": 2}, mode="L")
    write_image_folder(tmp_path / "eval", {"a": 1, "b": 1}, mode="L")
    data = Dataset.from_splits("gray", tmp_path / "train", tmp_path / "eval")
    assert data.input_shape == (1, 4, 5)
    assert torch.allclose(data.train_images[3, 0, 0, 0], torch.tensor(101 / 255))


def test_torchvision_image_folder_and_a_folder_path(rootdir: Path) -> None:
    from torchvision.datasets import ImageFolder

    write_image_folder(rootdir / "train", {"cat": 3, "dog": 2, "fox": 1})
    write_image_folder(rootdir / "eval", {"cat": 1, "dog": 1, "fox": 1})
    data = Dataset.from_splits("pets", ImageFolder(str(rootdir / "train")), "eval")  # relative: the rootdir
    assert data.train_images.shape == (6, 3, 4, 5)  # PIL sizes are (width, height)
    assert data.num_classes == 3 and data.train_labels.tolist() == [0, 0, 0, 1, 1, 2]
    assert torch.allclose(data.eval_images[2, :, 0, 0], torch.tensor([200, 0, 255]) / 255)
    assert float(data.train_images.max()) == 1.0


def test_folders_with_other_classes_are_refused(tmp_path: Path) -> None:
    write_image_folder(tmp_path / "train", {"cat": 1, "dog": 1, "fox": 1})
    write_image_folder(tmp_path / "eval", {"cat": 1, "fox": 1})
    with pytest.raises(DatasetError, match=r"train source has classes \['cat', 'dog', 'fox'\] \(3\) but the eval"):
        Dataset.from_splits("pets", tmp_path / "train", tmp_path / "eval")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match=r"'.*empty' is not a folder in ImageFolder layout.*root/cat/001\.png"):
        Dataset.from_splits("pets", tmp_path / "empty", tmp_path / "eval")


def test_a_dataloader_and_an_iterable_of_samples() -> None:
    x, y = images(10), labels(10)
    loader = DataLoader(TensorDataset(x, y), batch_size=4)
    data = Dataset.from_splits("dl", loader, ((x[i], int(y[i])) for i in range(3)))
    assert torch.equal(data.train_images, x) and torch.equal(data.eval_labels, y[:3])
    batches: list[int] = []

    def counted() -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for start in range(0, 10, 4):
            batches.append(start)
            yield x[start : start + 4], y[start : start + 4]

    limited = Dataset.from_splits("dl", counted(), loader, limit=5)
    assert torch.equal(limited.train_images, x[:5]) and batches == [0, 4]  # the first 5, no third batch
    assert len(limited.eval_images) == 5


def test_array_files(rootdir: Path) -> None:
    x, y = (images(6).numpy() * 255).astype(np.uint8), np.arange(6) % 3
    np.savez(rootdir / "train.npz", images=x, labels=y)
    np.savez(rootdir / "eval.npz", x=x[:2], y=y[:2])
    np.save(rootdir / "x.npy", x)
    np.save(rootdir / "y.npy", y)
    torch.save({"images": torch.from_numpy(x), "labels": torch.from_numpy(y)}, rootdir / "dict.pt")
    torch.save((torch.from_numpy(x[:2]), torch.from_numpy(y[:2])), rootdir / "tuple.pt")
    expected = torch.from_numpy(x).float() / 255
    for train, eval_ in [
        ("train.npz", "eval.npz"),
        (("x.npy", "y.npy"), "tuple.pt"),
        ("dict.pt", rootdir / "eval.npz"),
    ]:
        data = Dataset.from_splits("files", train, eval_)
        assert torch.allclose(data.train_images, expected) and data.train_labels.tolist() == y.tolist()
        assert torch.allclose(data.eval_images, expected[:2]) and data.num_classes == 3


def test_from_file(rootdir: Path) -> None:
    splits = {"train_images": images(6).numpy(), "train_labels": labels(6, 2).numpy()}
    splits |= {"eval_images": images(2).numpy(), "eval_labels": labels(2, 2).numpy()}
    np.savez(rootdir / "both.npz", **splits, num_classes=np.int64(5))
    data = Dataset.from_file("both.npz")
    assert data.name == "both" and data.num_classes == 5 and torch.equal(data.eval_images, images(2))
    torch.save({key: torch.from_numpy(value) for key, value in splits.items()}, rootdir / "both.pt")
    assert Dataset.from_file(rootdir / "both.pt", "named", limit=3).train_labels.shape == (3,)
    assert Dataset.from_file(rootdir / "both.pt").num_classes == 2
    np.savez(rootdir / "one.npz", images=images(2).numpy(), labels=labels(2).numpy())
    with pytest.raises(DatasetError, match=r"lacks train_images, .*; it holds 'images', 'labels'"):
        Dataset.from_file(rootdir / "one.npz")


def test_num_classes_inference() -> None:
    assert (
        Dataset.from_splits("n", (images(4), torch.tensor([0, 1, 1, 0])), (images(2), torch.tensor([4, 0]))).num_classes
        == 5
    )
    explicit = Dataset.from_splits("n", (images(4), labels(4, 2)), (images(2), labels(2, 2)), num_classes=7)
    assert explicit.num_classes == 7
    with pytest.raises(
        DatasetError, match=r"num_classes was not given and the labels cannot tell it.*pass num_classes="
    ):
        Dataset.from_splits(
            "n", (images(2), torch.zeros(2, dtype=torch.int64)), (images(1), torch.zeros(1, dtype=torch.int64))
        )
    with pytest.raises(DatasetError, match=r"train_labels are float32; .*non-integer values"):
        Dataset.from_splits("n", (images(2), torch.tensor([0.0, float("nan")])), (images(1), torch.zeros(1)))


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (
            lambda root: "missing.npz",
            r"'missing\.npz' \(looked for .*missing\.npz; relative paths resolve against the rootdir",
        ),
        (lambda root: ("x.npy", "missing.npy"), r"'missing\.npy' \(looked for .*rootdir .*\) does not exist"),
        (lambda root: "data.csv", r"has suffix '\.csv', which is not a data file this reads\. Accepted: a pair"),
        (lambda root: "x.npy", r"is one \.npy file, which holds one array; pass the pair \(images\.npy, labels\.npy\)"),
        (
            lambda root: "other.npz",
            r"holds 'pixels', 'targets'; expected arrays 'images' and 'labels' \(or 'x' and 'y'\)",
        ),
        (lambda root: "bad.pt", r"bad\.pt' is truncated or damaged"),
        (lambda root: "text.npz", r"text\.npz' is not a \.npz archive"),
        (lambda root: 42, r"the train source is a int\. Accepted: a pair"),
        (lambda root: images(2), r"the train source is a torch\.Tensor\. Accepted"),
        (lambda root: ([images(1)[0]], [0]), r"the train source is a pair \(list, list\); a pair holds \(images"),
        (lambda root: [(images(1)[0], 0.5)], r"the label of sample 0 of the train source \(list\) is a float \(0\.5\)"),
        (
            lambda root: [{"image": 1}],
            r"sample 0 of the train source \(list\) is a dict .*must return \(image, label\)",
        ),
    ],
)
def test_source_problems_are_named(rootdir: Path, make: Callable[[Path], Any], expected: str) -> None:
    np.save(rootdir / "x.npy", images(2).numpy())
    (rootdir / "data.csv").write_text("1,2\n")
    (rootdir / "text.npz").write_text("hello")
    np.savez(rootdir / "other.npz", pixels=images(2).numpy(), targets=labels(2).numpy())
    torch.save({"images": images(64)}, rootdir / "full.pt")
    (rootdir / "bad.pt").write_bytes((rootdir / "full.pt").read_bytes()[:2000])
    with pytest.raises(DatasetError, match=r"^Dataset 'src': (the train source )?.*" + expected):
        Dataset.from_splits("src", make(rootdir), (images(2), labels(2)))


def test_limit_must_be_positive() -> None:
    with pytest.raises(DatasetError, match=r"limit must be a positive int \(samples per split\), got 0"):
        Dataset.from_splits("l", (images(), labels()), (images(), labels()), limit=0)


def test_messages_never_carry_torch_pages(tmp_path: Path) -> None:
    (tmp_path / "random.pt").write_bytes(bytes(range(256)) * 4)
    with pytest.raises(DatasetError) as caught:
        Dataset.from_splits("r", tmp_path / "random.pt", (images(), labels()))
    assert "not a PyTorch checkpoint (unknown binary data" in str(caught.value)
    assert len(str(caught.value).splitlines()) == 1 and not re.search(r"weights_only|miniz", str(caught.value))
