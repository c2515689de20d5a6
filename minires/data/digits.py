"""The embedded data set: scikit-learn's 8x8 handwritten digits, shipped inside minires.

``digits.npz`` (46 kB) holds the 1,797 images of ``sklearn.datasets.load_digits()``
(the test part of the UCI "Optical Recognition of Handwritten Digits" data, Alpaydin &
Kaynak 1998; BSD-3-Clause as distributed with scikit-learn) as uint8 pixel counts 0..16,
their labels, and a fixed stratified 80/20 train/test split. It was made with::

    d = sklearn.datasets.load_digits()
    rng = np.random.default_rng(0); is_test = np.zeros(1797, bool)
    for c in range(10):   # 20% of each class, rounded
        idx = rng.permutation(np.flatnonzero(d.target == c))
        is_test[idx[: round(0.2 * len(idx))]] = True
    np.savez_compressed("digits.npz", images=d.images.astype(np.uint8),
                        labels=d.target.astype(np.uint8), is_test=is_test.astype(np.uint8))

so no network and no extra package is ever needed.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

DIGITS_FILE = Path(__file__).with_name("digits.npz")
DIGITS_CLASSES = [str(i) for i in range(10)]


@functools.lru_cache(maxsize=1)
def _raw() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if not DIGITS_FILE.exists():
        raise FileNotFoundError(
            f"the embedded digits file {DIGITS_FILE} is missing: reinstall minires "
            "(it ships inside the package)"
        )
    with np.load(DIGITS_FILE, allow_pickle=False) as f:
        return f["images"], f["labels"], f["is_test"].astype(bool)


def load_digits(split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """The embedded 8x8 digits as arrays.

    Args:
        split: ``"train"`` (1,438 images), ``"test"`` (359) or ``"all"`` (1,797).

    Returns:
        images (N, 1, 8, 8) float32 in [0, 1] (pixel counts / 16), labels (N,) int64 in 0..9.
    """
    images, labels, is_test = _raw()
    if split == "train":
        keep = ~is_test
    elif split == "test":
        keep = is_test
    elif split == "all":
        keep = np.ones(len(labels), bool)
    else:
        raise ValueError(f"load_digits: split must be 'train', 'test' or 'all', got {split!r}")
    x = images[keep].astype(np.float32)[:, None] / np.float32(16.0)
    return x, labels[keep].astype(np.int64)


def digits_stats() -> tuple[float, float]:
    """Mean and standard deviation of the training pixels (for `Normalize`)."""
    x, _ = load_digits("train")
    return float(x.mean()), float(x.std())
