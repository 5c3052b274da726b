"""The embedded default dataset: scikit-learn's bundled handwritten digits, split once and for all."""

from __future__ import annotations

from pytest_advprune.data.dataset import Dataset

# The digits split is part of every baseline's provenance: changing these constants changes the
# dataset fingerprint, and every stored baseline then reports itself as stale.
DIGITS_EVAL_FRACTION = 0.25
DIGITS_SPLIT_SEED = 0


def load_digits() -> Dataset:
    """scikit-learn's bundled handwritten digits (1,797 8x8 images, 10 classes), scaled to [0, 1].

    The split is stratified and seeded, so every machine gets the same 1,347 train and 450 eval images.
    Nothing is downloaded: the data ships inside scikit-learn.
    """
    import numpy as np
    import torch
    from sklearn.datasets import load_digits as sklearn_load_digits
    from sklearn.model_selection import train_test_split

    bunch = sklearn_load_digits()
    images = (bunch.images.astype(np.float32) / 16.0)[:, None, :, :]  # pixel values are 0..16
    labels = bunch.target.astype(np.int64)
    train_x, eval_x, train_y, eval_y = train_test_split(
        images,
        labels,
        test_size=DIGITS_EVAL_FRACTION,
        random_state=DIGITS_SPLIT_SEED,
        stratify=labels,
    )
    return Dataset(
        name="digits",
        train_images=torch.from_numpy(np.ascontiguousarray(train_x)),
        train_labels=torch.from_numpy(np.ascontiguousarray(train_y)),
        eval_images=torch.from_numpy(np.ascontiguousarray(eval_x)),
        eval_labels=torch.from_numpy(np.ascontiguousarray(eval_y)),
        num_classes=10,
    )
