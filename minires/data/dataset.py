"""Datasets with PyTorch's names and semantics (``torch.utils.data``): `Dataset`,
`TensorDataset`, `ConcatDataset`, `Subset` and `random_split`.

    ds = TensorDataset(images, labels)       # images (N, C, H, W), labels (N,)
    x, y = ds[0]                             # Tensors (C, H, W) and () — views, no copy
    train, val = random_split(ds, [0.8, 0.2], generator=0)
"""

from __future__ import annotations

import bisect
import math
import warnings
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from minires.tensor import Tensor


def _is_int(value: Any) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool | np.bool_)


class _IndexTypeError(TypeError, IndexError):
    """An index that is not an integer: a TypeError, and an IndexError as in torch."""


def _check_int_index(index: Any, n: int, who: str) -> int:
    """``index`` (an int, negative counting from the end) as an int in [0, n); IndexError
    when out of range, a TypeError (also an IndexError, as torch's) when not an int."""
    if not _is_int(index):
        raise _IndexTypeError(
            f"{who}: index must be an int, got {index!r} ({type(index).__name__})"
        )
    i = int(index)
    if not -n <= i < n:
        raise IndexError(f"{who}: index {i} is out of range for {n} samples")
    return i + n if i < 0 else i


class Dataset:
    """Base class of map-style datasets, as ``torch.utils.data.Dataset``: implement
    ``__len__`` and ``__getitem__(i)`` (a sample, e.g. a tuple ``(x, y)``).

    ``a + b`` is ``ConcatDataset([a, b])``. `DataLoader` gathers the samples of a batch
    one index at a time and stacks them (`default_collate`); `TensorDataset` (and a
    `Subset` of one) is gathered a whole batch at once with one fancy-indexing call.
    """

    def __len__(self) -> int:  # pragma: no cover - abstract
        raise NotImplementedError(f"{type(self).__name__} must implement __len__")

    def __getitem__(self, index: Any) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError(f"{type(self).__name__} must implement __getitem__")

    def __add__(self, other: Dataset) -> ConcatDataset:
        """``ConcatDataset([self, other])``."""
        return ConcatDataset([self, other])

    def _gather(self, idx: np.ndarray) -> tuple[np.ndarray, ...] | None:
        """The samples ``idx`` ((B,) int64) as stacked arrays, one per field, or None
        when the dataset cannot gather a batch at once (then the loader collates)."""
        return None


class TensorDataset(Dataset):
    """Samples are the rows of equally long arrays, as ``torch.utils.data.TensorDataset``.

    ``TensorDataset(images, labels)``: ``ds[i]`` is the tuple of Tensors
    ``(images[i], labels[i])`` (views that share memory with the arrays, as in torch);
    ``i`` may be an int (negative counts from the end, out of range: IndexError), a
    NumPy int, a slice, or an integer array / list (then each Tensor has a leading
    dimension).

    Args:
        *tensors: arrays or Tensors with the same first dimension N (shapes (N, ...)).

    Attributes:
        arrays: the data as ndarrays; ``tensors``: the same as Tensors (torch's name).
    """

    def __init__(self, *tensors: Any):
        if not tensors:
            raise ValueError("TensorDataset needs at least one array or Tensor")
        self.arrays = tuple(np.asarray(a.data if isinstance(a, Tensor) else a) for a in tensors)
        for i, a in enumerate(self.arrays):
            if a.ndim == 0:
                raise ValueError(
                    f"TensorDataset: array {i} is a scalar (shape ()); every array needs a "
                    "first dimension N"
                )
        n = len(self.arrays[0])
        for i, a in enumerate(self.arrays):
            if len(a) != n:
                shapes = ", ".join(str(b.shape) for b in self.arrays)
                raise ValueError(
                    f"TensorDataset: array {i} has shape {a.shape}, expected first "
                    f"dimension {n} (shapes: {shapes})"
                )

    @property
    def tensors(self) -> tuple[Tensor, ...]:
        """The arrays as Tensors (torch's attribute name), sharing their memory."""
        return tuple(Tensor(a) for a in self.arrays)

    def __len__(self) -> int:
        return len(self.arrays[0])

    def __getitem__(self, index: Any) -> tuple[Tensor, ...]:
        """``(a[index] for each array)`` as a tuple of Tensors."""
        if _is_int(index) or isinstance(index, bool | np.bool_ | float | np.floating):
            index = _check_int_index(index, len(self), "TensorDataset")
            return tuple(Tensor(a[index]) for a in self.arrays)
        if isinstance(index, Tensor):
            index = index.data
        try:
            return tuple(Tensor(a[index]) for a in self.arrays)
        except IndexError as exc:
            raise IndexError(f"TensorDataset ({len(self)} samples): {exc}") from None

    def _gather(self, idx: np.ndarray) -> tuple[np.ndarray, ...] | None:
        if type(self).__getitem__ is not TensorDataset.__getitem__:
            return None  # a subclass's own samples: collate them one by one
        return tuple(a[idx] for a in self.arrays)

    def __repr__(self) -> str:
        shapes = ", ".join(f"{a.dtype}{list(a.shape)}" for a in self.arrays)
        return f"TensorDataset({shapes})"


class ConcatDataset(Dataset):
    """Several datasets one after another, as ``torch.utils.data.ConcatDataset``.

    ``ds[i]`` is sample ``i - cumulative_sizes[k-1]`` of dataset k; negative ``i``
    counts from the end; out of range: IndexError (torch raises a ValueError for a
    negative index below ``-len``).

    Args:
        datasets: a non-empty iterable of datasets (anything with ``len`` and indexing).

    Attributes:
        datasets: the list of datasets; ``cumulative_sizes``: their running lengths.
    """

    def __init__(self, datasets: Iterable[Any]):
        if isinstance(datasets, Dataset) or not isinstance(datasets, Iterable):
            raise TypeError(
                f"ConcatDataset: expected an iterable of datasets, got {type(datasets).__name__}"
            )
        self.datasets = list(datasets)
        if not self.datasets:
            raise ValueError("ConcatDataset: datasets should not be an empty iterable")
        for k, d in enumerate(self.datasets):
            if not (hasattr(d, "__len__") and hasattr(d, "__getitem__")):
                raise TypeError(
                    f"ConcatDataset: dataset {k} ({type(d).__name__}) has no __len__ and "
                    "__getitem__ (iterable-style datasets are not supported)"
                )
        self.cumulative_sizes = np.cumsum([len(d) for d in self.datasets]).tolist()

    def __len__(self) -> int:
        return self.cumulative_sizes[-1]

    def __getitem__(self, index: Any) -> Any:
        i = _check_int_index(index, len(self), "ConcatDataset")
        k = bisect.bisect_right(self.cumulative_sizes, i)
        return self.datasets[k][i - (self.cumulative_sizes[k - 1] if k else 0)]

    def __repr__(self) -> str:
        return f"ConcatDataset({len(self.datasets)} datasets, {len(self)} samples)"


class Subset(Dataset):
    """The samples ``indices`` of ``dataset``, as ``torch.utils.data.Subset``:
    ``Subset(ds, idx)[i]`` is ``ds[idx[i]]``; a list ``i`` gives
    ``ds[[idx[j] for j in i]]`` (as torch).

    Args:
        dataset: the full dataset.
        indices: (M,) sequence of ints, positions in ``dataset``.
    """

    def __init__(self, dataset: Any, indices: Sequence[int] | np.ndarray):
        idx = np.asarray(indices.data if isinstance(indices, Tensor) else indices)
        if idx.size == 0:
            idx = idx.astype(np.int64)
        if idx.ndim != 1 or idx.dtype.kind not in "iu":
            raise TypeError(
                f"Subset: indices must be a 1-D sequence of ints, got shape {idx.shape} "
                f"dtype {idx.dtype}"
            )
        self.dataset = dataset
        self.indices = indices

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, list):
            return self.dataset[[self.indices[j] for j in index]]
        return self.dataset[self.indices[_check_int_index(index, len(self), "Subset")]]

    def _gather(self, idx: np.ndarray) -> tuple[np.ndarray, ...] | None:
        gather = getattr(self.dataset, "_gather", None)
        if gather is None or type(self).__getitem__ is not Subset.__getitem__:
            return None
        return gather(np.asarray(self.indices, dtype=np.int64)[idx])

    def __repr__(self) -> str:
        return f"Subset({self.dataset!r}, {len(self)} samples)"


def _seed_from(generator: Any, who: str) -> int:
    """A 63-bit seed from ``generator``: None (minires' global generator, so
    ``mr.manual_seed`` controls it), an int seed, or a ``numpy.random.Generator``."""
    if generator is None:
        from minires.random import get_rng

        return int(get_rng().integers(2**63))
    if isinstance(generator, np.random.Generator):
        return int(generator.integers(2**63))
    if _is_int(generator):
        if not 0 <= generator < 2**64:
            raise ValueError(f"{who}: a seed must be in [0, 2**64), got {generator}")
        return int(generator)
    raise TypeError(
        f"{who}: generator must be None, an int seed or a numpy.random.Generator, "
        f"got {type(generator).__name__}"
    )


def random_split(
    dataset: Any, lengths: Sequence[int | float], generator: Any = None
) -> list[Subset]:
    """Split ``dataset`` into non-overlapping random `Subset`\\ s, as
    ``torch.utils.data.random_split``.

    Args:
        dataset: a dataset of N samples.
        lengths: the subsets' lengths, ints summing to N, or fractions summing to 1
            (each gets ``floor(N * f)``, the remainder handed out one by one from the
            first subset on, as in torch).
        generator: None (minires' global generator: ``mr.manual_seed`` makes the split
            reproducible), an int seed, or a ``numpy.random.Generator``. The same seed
            gives the same split (not the split torch gives: another generator).

    Returns:
        ``len(lengths)`` Subsets whose index lists partition range(N).
    """
    if isinstance(lengths, str) or not isinstance(lengths, Sequence | np.ndarray):
        raise TypeError(f"random_split: lengths must be a sequence, got {lengths!r}")
    lengths = list(lengths)
    for v in lengths:
        if isinstance(v, bool | np.bool_) or not isinstance(
            v, int | float | np.integer | np.floating
        ):
            raise TypeError(f"random_split: lengths must be ints or floats, got {v!r}")
        if v < 0 or not math.isfinite(v):
            raise ValueError(f"random_split: lengths must be >= 0, got {lengths}")
    n = len(dataset)
    if math.isclose(sum(lengths), 1) and sum(lengths) <= 1 and not all(map(_is_int, lengths)):
        sizes = [math.floor(n * f) for f in lengths]
        for i in range(n - sum(sizes)):
            sizes[i % len(sizes)] += 1
        for i, size in enumerate(sizes):
            if size == 0:
                warnings.warn(
                    f"Length of split at index {i} is 0. This might result in an empty dataset.",
                    stacklevel=2,
                )
    elif all(map(_is_int, lengths)):
        sizes = [int(v) for v in lengths]
    else:
        sizes = None
    if sizes is None or sum(sizes) != n:
        raise ValueError(
            f"random_split: sum of input lengths {lengths} ({sum(lengths):g}) does not equal "
            f"the length of the input dataset ({n}); give ints summing to {n} or fractions "
            "summing to 1"
        )
    order = np.random.default_rng(_seed_from(generator, "random_split")).permutation(n).tolist()
    bounds = np.cumsum([0] + sizes).tolist()
    return [Subset(dataset, order[a:b]) for a, b in zip(bounds[:-1], bounds[1:])]
