"""CIFAR-100 from a local ``cifar-100-python`` folder (``train``, ``test``, ``meta``),
read with the same restricted unpickler as CIFAR-10 (no code from the files runs)."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np

from minires.data.cifar import restricted_load

CIFAR100_FOLDER = "cifar-100-python"
CIFAR100_MEAN = (0.5071, 0.4865, 0.4409)
CIFAR100_STD = (0.2673, 0.2564, 0.2762)


def load_cifar100(
    root: str | os.PathLike | None = None, split: str = "train", labels: str = "fine"
) -> tuple[np.ndarray, np.ndarray]:
    """CIFAR-100 images (N, 3, 32, 32) uint8 and labels (N,) int64: the 100 ``"fine"``
    classes or the 20 ``"coarse"`` superclasses. N = 50,000 train, 10,000 test.

    Args:
        root: the folder holding ``cifar-100-python`` (default: see
            `minires.data.download.data_root`).
    """
    from minires.data.download import data_root, manual_steps

    if split not in ("train", "test"):
        raise ValueError(f"load_cifar100: split must be 'train' or 'test', got {split!r}")
    if labels not in ("fine", "coarse"):
        raise ValueError(f"load_cifar100: labels must be 'fine' or 'coarse', got {labels!r}")
    r = data_root(root)
    folder = r / CIFAR100_FOLDER if (r / CIFAR100_FOLDER).is_dir() else r
    path = Path(folder) / split
    if not path.exists():
        raise FileNotFoundError(
            f"CIFAR-100 not found: no {r / CIFAR100_FOLDER / split}. Run `minires data "
            "download cifar100` (or pass --download).\n" + manual_steps("cifar100", root)
        )
    bad = f"CIFAR-100 file {path} is corrupt or not a CIFAR-100 python file"
    try:
        d = restricted_load(path.read_bytes())
    except pickle.UnpicklingError as exc:
        raise ValueError(f"{bad}: {exc}") from exc
    except Exception as exc:  # truncated or garbage
        raise ValueError(f"{bad} ({type(exc).__name__}: {exc}); re-download it") from exc
    key = f"{labels}_labels"
    try:
        data, y = np.asarray(d[b"data"]), np.asarray(d[key.encode()])
    except (KeyError, TypeError) as exc:
        raise ValueError(f"{bad}: expected a dict with 'data' and '{key}'") from exc
    n_classes = 100 if labels == "fine" else 20
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        raise ValueError(f"{bad}: 'data' is {data.dtype} {data.shape}, expected uint8 (n, 3072)")
    if y.shape != (len(data),) or (len(y) and (y.min() < 0 or y.max() >= n_classes)):
        raise ValueError(f"{bad}: '{key}' must be {len(data)} ints in 0..{n_classes - 1}")
    return data.reshape(-1, 3, 32, 32), y.astype(np.int64)
