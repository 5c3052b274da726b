"""Evaluation datasets: images in [0, 1] with integer labels, checked when built, and their fingerprints.

``Dataset(...)`` takes tensors or numpy arrays and checks them; ``Dataset.from_splits`` and
``Dataset.from_file`` build one from what a team already has (torchvision datasets, image folders,
DataLoaders, ``.npz``/``.npy``/``.pt`` files; see :mod:`pytest_advprune.data.sources`). ``load_digits``
is the embedded default.
"""

from __future__ import annotations

from pytest_advprune.data.dataset import Dataset, DatasetError, fingerprint_tensors
from pytest_advprune.data.digits import DIGITS_EVAL_FRACTION, DIGITS_SPLIT_SEED, load_digits

__all__ = [
    "DIGITS_EVAL_FRACTION",
    "DIGITS_SPLIT_SEED",
    "Dataset",
    "DatasetError",
    "fingerprint_tensors",
    "load_digits",
]
