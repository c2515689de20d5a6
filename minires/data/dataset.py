"""`Dataset` and `TensorDataset`: indexable collections of (image, label) samples."""

from __future__ import annotations

from typing import Any

import numpy as np


class Dataset:
    """Base class: implement ``__len__`` and ``__getitem__(i) -> (x, y)``.

    A dataset that can also be indexed with an integer *array* (returning stacked
    arrays) lets `DataLoader` gather a whole batch with one fancy-indexing call;
    `TensorDataset` does.
    """

    def __len__(self) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    def __getitem__(self, index: Any) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError


class TensorDataset(Dataset):
    """Samples are the rows of equally long arrays (PyTorch's name).

    ``TensorDataset(images, labels)``: ``ds[i]`` is ``(images[i], labels[i])`` and
    ``ds[idx]`` for an integer array ``idx`` is ``(images[idx], labels[idx])``.

    Args:
        *arrays: arrays (or Tensors) with the same first dimension N.
    """

    def __init__(self, *arrays: Any):
        if not arrays:
            raise ValueError("TensorDataset needs at least one array")
        self.arrays = tuple(np.asarray(getattr(a, "data", a)) for a in arrays)
        n = len(self.arrays[0])
        for i, a in enumerate(self.arrays):
            if a.ndim == 0 or len(a) != n:
                raise ValueError(
                    f"TensorDataset: array {i} has shape {a.shape}, expected first dimension {n}"
                )

    def __len__(self) -> int:
        return len(self.arrays[0])

    def __getitem__(self, index: Any) -> tuple[np.ndarray, ...]:
        return tuple(a[index] for a in self.arrays)

    def __repr__(self) -> str:
        shapes = ", ".join(f"{a.dtype}{list(a.shape)}" for a in self.arrays)
        return f"TensorDataset({shapes})"
