"""The shapes dataset: 16x16 RGB images of five shape classes, generated deterministically.

Each image is one shape (disk, square, triangle, cross or ring) of random size and position, in a random
foreground colour on a random background colour of at least some contrast, anti-aliased, with speckle
noise on a random eighth of the pixels (sparse noise keeps the compressed file small; dense noise would not
compress at all). The committed file ``data/shapes.npz`` is what every training run and every robustness check
reads; regenerate it (byte for byte) with

    python -m shapes.data --out data/shapes.npz

It holds uint8 NHWC arrays, the way data is usually exported: ``train_images`` (N, 16, 16, 3),
``train_labels`` (N,), ``eval_images``, ``eval_labels``, ``num_classes`` and ``classes``.
"""

from __future__ import annotations

import argparse
import io
import zipfile
from pathlib import Path

import numpy as np

CLASSES = ("disk", "square", "triangle", "cross", "ring")
SIZE = 16
SUPERSAMPLE = 4  # shapes are drawn at 4x and averaged down: anti-aliased edges
NOISE_FRACTION = 0.12  # of the pixels, each channel perturbed independently
NOISE_STD = 0.1  # in [0, 1] pixel units
MIN_CONTRAST = 0.45  # Euclidean RGB distance between foreground and background
TRAIN, EVAL = 600, 300
SEED = 20240611


def _mask(kind: str, cx: float, cy: float, r: float) -> np.ndarray:
    """Coverage in [0, 1] of one shape on the SIZE x SIZE grid."""
    n = SIZE * SUPERSAMPLE
    coords = (np.arange(n) + 0.5) / SUPERSAMPLE
    x, y = np.meshgrid(coords, coords)
    dx, dy = x - cx, y - cy
    if kind == "disk":
        inside = dx**2 + dy**2 <= r**2
    elif kind == "square":
        inside = (np.abs(dx) <= 0.85 * r) & (np.abs(dy) <= 0.85 * r)
    elif kind == "triangle":  # apex up: the half-width grows linearly from the top
        top, bottom = cy - r, cy + 0.8 * r
        inside = (y >= top) & (y <= bottom) & (np.abs(dx) <= (y - top) / (bottom - top) * r)
    elif kind == "cross":
        arm = 0.3 * r
        inside = ((np.abs(dx) <= arm) & (np.abs(dy) <= r)) | ((np.abs(dy) <= arm) & (np.abs(dx) <= r))
    elif kind == "ring":
        distance = np.sqrt(dx**2 + dy**2)
        inside = (distance <= r) & (distance >= 0.55 * r)
    else:
        raise ValueError(f"unknown shape {kind!r}; shapes: {', '.join(CLASSES)}")
    return inside.reshape(SIZE, SUPERSAMPLE, SIZE, SUPERSAMPLE).mean(axis=(1, 3))


def _colours(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    while True:
        background, foreground = rng.uniform(0.0, 1.0, 3), rng.uniform(0.0, 1.0, 3)
        if np.linalg.norm(foreground - background) >= MIN_CONTRAST:
            return background, foreground


def generate(count: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``count`` uint8 NHWC images with balanced int64 labels, in shuffled order."""
    labels = rng.permutation(np.arange(count) % len(CLASSES)).astype(np.int64)
    images = np.empty((count, SIZE, SIZE, 3), dtype=np.uint8)
    for index, label in enumerate(labels):
        r = rng.uniform(3.5, 6.5)
        cx, cy = rng.uniform(r, SIZE - r, 2)
        coverage = _mask(CLASSES[label], cx, cy, r)[..., None]
        background, foreground = _colours(rng)
        pixels = background * (1 - coverage) + foreground * coverage
        speckled = rng.random((SIZE, SIZE, 1)) < NOISE_FRACTION
        pixels = pixels + speckled * rng.normal(0.0, NOISE_STD, pixels.shape)
        images[index] = np.round(np.clip(pixels, 0.0, 1.0) * 255).astype(np.uint8)
    return images, labels


def build(seed: int = SEED) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    train_images, train_labels = generate(TRAIN, rng)
    eval_images, eval_labels = generate(EVAL, rng)
    return {
        "train_images": train_images,
        "train_labels": train_labels,
        "eval_images": eval_images,
        "eval_labels": eval_labels,
        "num_classes": np.array(len(CLASSES)),
        "classes": np.array(CLASSES),
    }


def save(arrays: dict[str, np.ndarray], path: Path) -> None:
    """``np.savez_compressed``, but with fixed zip timestamps, so regenerating gives the same bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, array in arrays.items():
            buffer = io.BytesIO()
            np.lib.format.write_array(buffer, np.asarray(array), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, buffer.getvalue(), compresslevel=9)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("data/shapes.npz"))
    parser.add_argument("--seed", type=int, default=SEED)
    args = parser.parse_args(argv)
    save(build(args.seed), args.out)
    print(f"wrote {args.out} ({args.out.stat().st_size / 1024:.0f} KiB)")


if __name__ == "__main__":
    main()
