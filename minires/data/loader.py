"""`DataLoader` (PyTorch's arguments and batches, shuffled reproducibly, with batch
transforms), the samplers of ``torch.utils.data`` and its collate functions
(`default_collate`, `default_convert`)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from minires.data.dataset import _is_int, _seed_from
from minires.data.transforms import BatchTransform, SampleRNG
from minires.tensor import Tensor


class _CollateError(ValueError, RuntimeError):
    """Samples that cannot be batched: a ValueError, and a RuntimeError as torch's."""


_COLLATE_TYPES = (
    "default_collate: batch must contain tensors, numpy arrays, numbers, dicts or lists"
)


def _is_namedtuple(x: Any) -> bool:
    return isinstance(x, tuple) and hasattr(x, "_fields")


def _stack(values: Sequence[Any], where: str) -> Tensor:
    """Tensors, arrays or NumPy scalars of one shape stacked into one Tensor (B, ...)."""
    arrays = [np.asarray(v.data if isinstance(v, Tensor) else v) for v in values]
    for k, a in enumerate(arrays):
        if a.dtype.kind in "SUOV" or a.dtype.kind not in "biufc":
            raise TypeError(f"{_COLLATE_TYPES}; found {a.dtype} in sample {k}{where}")
        if a.shape != arrays[0].shape:
            raise _CollateError(
                f"DataLoader: cannot batch samples of different shapes{where}: sample 0 has "
                f"shape {arrays[0].shape}, sample {k} has shape {a.shape}"
            )
    return Tensor(np.stack(arrays))


def _collate(batch: Sequence[Any], where: str) -> Any:
    elem = batch[0]
    if isinstance(elem, Tensor | np.ndarray | np.number | np.bool_):
        return _stack(batch, where)
    if isinstance(elem, bool | int | float):
        for k, v in enumerate(batch):
            if not isinstance(v, bool | int | float | np.number | np.bool_):
                raise TypeError(f"{_COLLATE_TYPES}; sample {k}{where} is {type(v).__name__}")
        # torch: a float first -> float64; else torch.tensor's inference: any float ->
        # float32 (the default dtype), all bools -> bool, ints (and bools) -> int64
        if isinstance(elem, float):
            dtype: Any = np.float64
        elif any(isinstance(v, float | np.floating) for v in batch):
            dtype = np.float32
        elif all(isinstance(v, bool | np.bool_) for v in batch):
            dtype = np.bool_
        else:
            dtype = np.int64
        try:
            return Tensor(np.array(batch, dtype=dtype))
        except OverflowError as exc:
            raise _CollateError(f"DataLoader: cannot batch {list(batch)}{where}: {exc}") from None
    if isinstance(elem, str | bytes):
        return batch  # as torch: the list (a tuple when nested in sequences) unchanged
    if isinstance(elem, Mapping):
        out = {}
        for key in elem:
            values = []
            for k, d in enumerate(batch):
                if not isinstance(d, Mapping) or key not in d:
                    raise _CollateError(f"DataLoader: sample {k}{where} has no key {key!r}")
                values.append(d[key])
            out[key] = _collate(values, f"{where}[{key!r}]")
        try:
            return type(elem)(out)
        except TypeError:
            return out
    if isinstance(elem, Sequence):
        n = len(elem)
        for k, s in enumerate(batch):
            if not isinstance(s, Sequence) or isinstance(s, str | bytes) or len(s) != n:
                got = len(s) if isinstance(s, Sequence) else type(s).__name__
                raise _CollateError(
                    "DataLoader: each element in list of batch should be of equal size: "
                    f"sample 0{where} has {n} fields, sample {k} has {got}"
                )
        fields = [_collate(tuple(s[j] for s in batch), f"{where}[{j}]") for j in range(n)]
        if _is_namedtuple(elem):
            return type(elem)(*fields)
        return fields
    raise TypeError(f"{_COLLATE_TYPES}; found {type(elem)}{where}")


def default_collate(batch: Sequence[Any]) -> Any:
    """Stack a list of B samples into a batch, as ``torch.utils.data.default_collate``.

    Tensors and numeric arrays of one shape S become one Tensor (B, *S) of their dtype;
    NumPy scalars a Tensor (B,) of their dtype; Python ints a (B,) int64 Tensor, floats
    float64, bools bool; strings stay a list; dicts give a dict of batches per key;
    tuples and lists give a list of batches per position (torch returns a list for
    tuple samples too; namedtuples keep their type). Recursive.

    Raises:
        TypeError: a sample of another type (None, string arrays, objects).
        ValueError: samples of different shapes, lengths or keys (also a RuntimeError,
            as torch raises).
    """
    if isinstance(batch, str | bytes) or not isinstance(batch, Sequence):
        raise TypeError(f"default_collate: expected a list of samples, got {type(batch).__name__}")
    if len(batch) == 0:
        raise ValueError("default_collate: the batch is empty")
    return _collate(batch, "")


def default_convert(data: Any) -> Any:
    """One sample's arrays as Tensors, nothing stacked, as
    ``torch.utils.data.default_convert`` (what a loader with ``batch_size=None`` yields).

    Numeric ndarrays and NumPy scalars become Tensors (same shape and dtype); Python
    numbers and strings stay as they are; dicts, namedtuples keep their type; tuples and
    lists become lists, converted recursively.
    """
    if isinstance(data, Tensor):
        return data
    if isinstance(data, np.ndarray | np.number | np.bool_):
        a = np.asarray(data)
        return data if a.dtype.kind not in "biuf" else Tensor(a)
    if isinstance(data, Mapping):
        out = {k: default_convert(v) for k, v in data.items()}
        try:
            return type(data)(out)
        except TypeError:
            return out
    if _is_namedtuple(data):
        return type(data)(*(default_convert(d) for d in data))
    if isinstance(data, Sequence) and not isinstance(data, str | bytes):
        return [default_convert(d) for d in data]
    return data


# -- samplers -------------------------------------------------------------------------------


def _check_bool(value: Any, name: str, who: str) -> bool:
    if not isinstance(value, bool | np.bool_):
        raise TypeError(f"{who}: {name} should be a boolean value, but got {name}={value!r}")
    return bool(value)


def _check_positive_int(value: Any, name: str, who: str) -> int:
    if not _is_int(value):
        raise TypeError(
            f"{who}: {name} should be a positive integer value, but got {name}={value!r} "
            f"({type(value).__name__})"
        )
    if value < 1:
        raise ValueError(
            f"{who}: {name} should be a positive integer value, but got {name}={value}"
        )
    return int(value)


class Sampler:
    """Base class of samplers, as ``torch.utils.data.Sampler``: ``__iter__`` yields the
    dataset indices of one pass (ints), ``__len__`` their number.

    minires' samplers are keyed by the epoch: ``sampler._order(epoch)`` is the (M,)
    int64 order of that epoch, a pure function of (seed, epoch), which the `DataLoader`
    uses so a run is reproducible and resumable mid-epoch. Another sampler is iterated
    once per epoch."""

    def __init__(self, data_source: Any = None) -> None:
        pass

    def __iter__(self) -> Iterator[int]:  # pragma: no cover - abstract
        raise NotImplementedError(f"{type(self).__name__} must implement __iter__")


class _SeededSampler(Sampler):
    """A sampler whose pass p is `_order(p)`, a pure function of (seed, p): each `iter`
    takes the next pass."""

    epoch = 0  # the pass the next `iter` produces

    def _seed_with(self, generator: Any, who: str) -> None:
        """Keep ``generator`` (as torch's attribute) and the seed drawn from it; start at
        pass 0."""
        self.generator = generator
        self.seed = _seed_from(generator, who)
        self.epoch = 0

    def _order(self, epoch: int) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def __iter__(self) -> Iterator[int]:
        order = self._order(self.epoch)
        self.epoch += 1
        return iter(order.tolist())

    def __len__(self) -> int:
        return len(self._order(self.epoch))


class SequentialSampler(Sampler):
    """Indices 0, 1, ..., N-1 of ``data_source`` (N = its length)."""

    def __init__(self, data_source: Any) -> None:
        self.data_source = data_source

    def _order(self, epoch: int) -> np.ndarray:
        return np.arange(len(self.data_source), dtype=np.int64)

    def __iter__(self) -> Iterator[int]:
        return iter(range(len(self.data_source)))

    def __len__(self) -> int:
        return len(self.data_source)


class RandomSampler(_SeededSampler):
    """A random order of ``data_source``'s N indices, a new one every pass, as
    ``torch.utils.data.RandomSampler``.

    Args:
        data_source: the dataset (only its length is used).
        replacement: draw ``num_samples`` indices with replacement.
        num_samples: indices per pass (default N; more than N without replacement
            concatenates permutations, as torch).
        generator: None (a seed from minires' global generator, ``mr.manual_seed``), an
            int seed, or a ``numpy.random.Generator`` (one seed drawn from it). Pass p
            is ``default_rng([seed, p])``: reproducible, not torch's numbers.
    """

    def __init__(
        self,
        data_source: Any,
        replacement: bool = False,
        num_samples: int | None = None,
        generator: Any = None,
    ) -> None:
        self.data_source = data_source
        self.replacement = _check_bool(replacement, "replacement", "RandomSampler")
        self._num_samples = num_samples
        _check_positive_int(self.num_samples, "num_samples", "RandomSampler")
        self._seed_with(generator, "RandomSampler")

    @property
    def num_samples(self) -> int:
        """Indices per pass."""
        return len(self.data_source) if self._num_samples is None else self._num_samples

    def _order(self, epoch: int) -> np.ndarray:
        n, m = len(self.data_source), self.num_samples
        rng = np.random.default_rng([self.seed, epoch])
        if self.replacement:
            return rng.integers(0, n, m, dtype=np.int64)
        if m == n:
            return rng.permutation(n)
        return np.concatenate([rng.permutation(n) for _ in range(-(-m // n))])[:m]

    def __len__(self) -> int:
        return self.num_samples


class SubsetRandomSampler(_SeededSampler):
    """The given ``indices`` in a random order, a new one every pass, as
    ``torch.utils.data.SubsetRandomSampler``.

    Args:
        indices: (M,) dataset indices.
        generator: as `RandomSampler`'s.
    """

    def __init__(self, indices: Sequence[int] | np.ndarray, generator: Any = None) -> None:
        idx = np.asarray(indices)
        if idx.ndim != 1 or (idx.size and idx.dtype.kind not in "iu"):
            raise TypeError(
                f"SubsetRandomSampler: indices must be a 1-D sequence of ints, got shape "
                f"{idx.shape} dtype {idx.dtype}"
            )
        self.indices = indices
        self._seed_with(generator, "SubsetRandomSampler")

    def _order(self, epoch: int) -> np.ndarray:
        idx = np.asarray(self.indices, dtype=np.int64)
        return idx[np.random.default_rng([self.seed, epoch]).permutation(len(idx))]

    def __len__(self) -> int:
        return len(self.indices)


class WeightedRandomSampler(_SeededSampler):
    """``num_samples`` indices in [0, len(weights)) drawn with probabilities
    proportional to ``weights``, as ``torch.utils.data.WeightedRandomSampler``.

    Args:
        weights: (K,) non-negative weights (not necessarily summing to one).
        num_samples: indices per pass.
        replacement: draw with replacement (without: ``num_samples`` must not exceed
            the number of positive weights).
        generator: as `RandomSampler`'s.
    """

    def __init__(
        self,
        weights: Sequence[float] | np.ndarray,
        num_samples: int,
        replacement: bool = True,
        generator: Any = None,
    ) -> None:
        self.num_samples = _check_positive_int(num_samples, "num_samples", "WeightedRandomSampler")
        self.replacement = _check_bool(replacement, "replacement", "WeightedRandomSampler")
        w = np.asarray(weights.data if isinstance(weights, Tensor) else weights)
        if w.ndim != 1 or w.dtype.kind not in "biuf":
            raise ValueError(
                f"WeightedRandomSampler: weights should be a 1d sequence of numbers but given "
                f"weights have shape {w.shape} (dtype {w.dtype})"
            )
        w = w.astype(np.float64)
        if not np.all(np.isfinite(w)) or np.any(w < 0) or not w.sum() > 0:
            raise ValueError(
                "WeightedRandomSampler: weights must be finite, non-negative and not all "
                f"zero, got {w.tolist()[:10]}"
            )
        if not self.replacement and self.num_samples > np.count_nonzero(w):
            raise ValueError(
                f"WeightedRandomSampler: cannot draw {self.num_samples} samples without "
                f"replacement from {np.count_nonzero(w)} positive weights"
            )
        self.weights = w
        self._seed_with(generator, "WeightedRandomSampler")

    def _order(self, epoch: int) -> np.ndarray:
        rng = np.random.default_rng([self.seed, epoch])
        p = self.weights / self.weights.sum()
        return rng.choice(len(p), self.num_samples, replace=self.replacement, p=p).astype(np.int64)

    def __len__(self) -> int:
        return self.num_samples


class BatchSampler(Sampler):
    """Group another sampler's indices into lists of ``batch_size``, as
    ``torch.utils.data.BatchSampler``: ``list(BatchSampler(range(10), 3, False))`` is
    ``[[0, 1, 2], [3, 4, 5], [6, 7, 8], [9]]``.

    Args:
        sampler: any iterable of indices (a `Sampler`, a range, a list).
        batch_size: indices per batch, a positive int.
        drop_last: drop the last batch if it is smaller than ``batch_size``.
    """

    def __init__(self, sampler: Any, batch_size: int, drop_last: bool) -> None:
        self.batch_size = _check_positive_int(batch_size, "batch_size", "BatchSampler")
        self.drop_last = _check_bool(drop_last, "drop_last", "BatchSampler")
        self.sampler = sampler

    def __iter__(self) -> Iterator[list[int]]:
        batch: list[int] = []
        for i in self.sampler:
            batch.append(i)
            if len(batch) == self.batch_size:
                yield batch
                batch = []
        if batch and not self.drop_last:
            yield batch

    def __len__(self) -> int:
        n = len(self.sampler)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)


# -- the loader -----------------------------------------------------------------------------


class DataLoader:
    """Iterate over a dataset in mini-batches of `Tensor`\\ s, as
    ``torch.utils.data.DataLoader`` (same arguments, same batches).

    Each pass (epoch) yields the collated batches: for samples ``(x, y)`` a list
    ``[x, y]`` of Tensors (B, ...) (torch's `default_collate`: a list, which unpacks as
    ``for x, y in loader``), for a dict sample a dict, for one array one Tensor. With
    ``batch_size=None`` each sample is yielded alone, converted (`default_convert`).
    The order and the augmentation are a pure function of the seed: with ``shuffle``
    the permutation of epoch e is ``default_rng([seed, e])`` and each sample's
    augmentation draws from ``SampleRNG(seed, e, sample indices)``, keyed by (seed,
    epoch, sample index). So a run is reproducible, a resumed run can re-enter an epoch
    at any batch (`epoch_iter`) without replaying the ones before, and a sample is
    augmented the same way whichever batch or MPI rank it lands in (`load`).

    Args:
        dataset: a map-style dataset (``len`` and integer indexing); a `TensorDataset`
            (or a `Subset` of one) is gathered a whole batch at a time.
        batch_size: samples per batch (a positive int), or None: no batching.
        shuffle: a new random order every epoch (None: False).
        sampler: a `Sampler` (or iterable of indices) giving the order; not with
            ``shuffle``.
        batch_sampler: an iterable of index lists, one per batch; not with
            ``batch_size``, ``shuffle``, ``sampler`` or ``drop_last``.
        num_workers: accepted for compatibility (an int >= 0); minires always loads in
            the main process: the batches are the same, there are no worker processes.
        collate_fn: ``f(list of samples) -> batch`` (default `default_collate`;
            `default_convert` per sample when ``batch_size=None``).
        pin_memory, timeout, worker_init_fn, multiprocessing_context, prefetch_factor,
            persistent_workers, pin_memory_device, in_order: accepted and checked as
            torch does, no effect (one CPU process: no worker is started, so
            ``worker_init_fn`` is not called, as in torch with ``num_workers=0``).
        drop_last: drop the last batch if it is smaller than ``batch_size``.
        generator: seed source when ``seed`` is None: an int or a
            ``numpy.random.Generator`` (one seed is drawn from it).
        seed: seed of the order and augmentation; None (and no ``generator``) draws one
            from minires' global generator (so ``mr.manual_seed`` controls it).
        transform: a batch transform ``t(x, rng) -> x`` applied to the batch's first
            field (the inputs), see `minires.data.transforms`.
    """

    def __init__(
        self,
        dataset: Any,
        batch_size: int | None = 1,
        shuffle: bool | None = None,
        sampler: Any = None,
        batch_sampler: Any = None,
        num_workers: int = 0,
        collate_fn: Callable[[Any], Any] | None = None,
        pin_memory: bool = False,
        drop_last: bool = False,
        timeout: float = 0,
        worker_init_fn: Callable[[int], None] | None = None,
        multiprocessing_context: Any = None,
        generator: Any = None,
        *,
        prefetch_factor: int | None = None,
        persistent_workers: bool = False,
        pin_memory_device: str = "",
        in_order: bool = True,
        seed: int | None = None,
        transform: BatchTransform | None = None,
    ):
        if not (hasattr(dataset, "__len__") and hasattr(dataset, "__getitem__")):
            raise TypeError(
                f"DataLoader: the dataset must have __len__ and __getitem__ (a map-style "
                f"dataset), got {type(dataset).__name__}"
            )
        if batch_size is not None:
            if isinstance(batch_size, bool) or not isinstance(batch_size, int | np.integer):
                raise TypeError(
                    f"DataLoader: batch_size must be an int or None, got {batch_size!r}"
                )
            if batch_size < 1:
                raise ValueError(
                    f"DataLoader: batch_size should be a positive integer value, but got "
                    f"batch_size={batch_size!r}"
                )
        if not _is_int(num_workers):
            raise TypeError(f"DataLoader: num_workers must be an int, got {num_workers!r}")
        if num_workers < 0:
            raise ValueError(
                "DataLoader: num_workers option should be non-negative; use num_workers=0 to "
                f"disable multiprocessing (got {num_workers})"
            )
        if isinstance(timeout, bool) or not isinstance(timeout, int | float | np.number):
            raise TypeError(f"DataLoader: timeout must be a number, got {timeout!r}")
        if timeout < 0:
            raise ValueError(f"DataLoader: timeout option should be non-negative, got {timeout}")
        if num_workers == 0 and prefetch_factor is not None:
            raise ValueError(
                "DataLoader: prefetch_factor option could only be specified with "
                "num_workers > 0; otherwise set prefetch_factor to None"
            )
        if num_workers == 0 and persistent_workers:
            raise ValueError("DataLoader: persistent_workers option needs num_workers > 0")
        if collate_fn is not None and not callable(collate_fn):
            raise TypeError(f"DataLoader: collate_fn must be callable, got {collate_fn!r}")
        if transform is not None and not callable(transform):
            raise TypeError(f"DataLoader: transform must be callable, got {transform!r}")
        if sampler is not None and shuffle:
            raise ValueError("DataLoader: sampler option is mutually exclusive with shuffle")
        if batch_sampler is not None:
            if batch_size != 1 or shuffle or sampler is not None or drop_last:
                raise ValueError(
                    "DataLoader: batch_sampler option is mutually exclusive with batch_size, "
                    "shuffle, sampler, and drop_last"
                )
            batch_size, drop_last = None, False
        elif batch_size is None and drop_last:
            raise ValueError(
                "DataLoader: batch_size=None option disables auto-batching and is mutually "
                "exclusive with drop_last"
            )
        if seed is None:
            if generator is not None:
                seed = _seed_from(generator, "DataLoader")
            else:
                from minires.random import get_rng

                seed = int(get_rng().integers(2**31))
        elif generator is not None:
            raise ValueError("DataLoader: give seed or generator, not both")
        if isinstance(seed, bool) or not isinstance(seed, int | np.integer):
            raise TypeError(f"DataLoader: seed must be an int, got {seed!r}")
        if not 0 <= seed < 2**64:  # (the augmentation's hashes are 64-bit)
            raise ValueError(f"DataLoader: seed must be in [0, 2**64), got {seed}")
        self.dataset = dataset
        self.batch_size = None if batch_size is None else int(batch_size)
        self.shuffle, self.drop_last = bool(shuffle), bool(drop_last)
        self.seed, self.transform = int(seed), transform
        self.generator = generator
        self.num_workers, self.pin_memory, self.timeout = int(num_workers), pin_memory, timeout
        self.worker_init_fn, self.multiprocessing_context = worker_init_fn, multiprocessing_context
        self.prefetch_factor, self.persistent_workers = prefetch_factor, persistent_workers
        self.pin_memory_device, self.in_order = pin_memory_device, in_order
        self._own_sampler = sampler is None
        if sampler is None:
            sampler = (
                RandomSampler(dataset, generator=self.seed) if self.shuffle
                else SequentialSampler(dataset)
            )  # fmt: skip
        self.sampler = sampler
        self._user_batch_sampler = batch_sampler is not None
        if batch_sampler is None and self.batch_size is not None:
            batch_sampler = BatchSampler(sampler, self.batch_size, self.drop_last)
        self.batch_sampler = batch_sampler
        self._default_collate = collate_fn is None
        if collate_fn is None:
            collate_fn = default_collate if self.batch_size is not None or \
                self._user_batch_sampler else default_convert  # fmt: skip
        self.collate_fn = collate_fn
        self._cache: tuple[int, Any] | None = None  # (epoch, its order or batches)
        self.epoch = 0  # the epoch the next plain `iter(loader)` will produce

    @property
    def _auto_batch(self) -> bool:
        return self.batch_size is not None or self._user_batch_sampler

    def __len__(self) -> int:
        """Number of batches per epoch (samples, with ``batch_size=None``)."""
        if self._user_batch_sampler:
            return len(self.batch_sampler)
        n = len(self.sampler)
        if self.batch_size is None:
            return n
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def _cached(self, epoch: int, make: Callable[[], Any]) -> Any:
        """``make()`` once per epoch: a sampler that is not keyed by the epoch is
        iterated once, and every batch of that epoch comes from that one pass."""
        if self._cache is None or self._cache[0] != epoch:
            self._cache = (epoch, make())
        return self._cache[1]

    def _batches(self, epoch: int) -> list[np.ndarray]:
        """The user batch sampler's batches of ``epoch``, each (B,) int64."""
        return self._cached(
            epoch, lambda: [_indices(b, "batch_sampler") for b in self.batch_sampler]
        )

    def order(self, epoch: int) -> np.ndarray:
        """The sample indices of ``epoch`` in the order they are served, (N,) int64."""
        if self._user_batch_sampler:
            batches = self._batches(epoch)
            return np.concatenate(batches) if batches else np.zeros(0, np.int64)
        if self._own_sampler and self.shuffle:
            n = len(self.dataset)  # keyed by the loader's seed (load_state_dict may change it)
            return np.random.default_rng([self.seed, epoch]).permutation(n)
        if hasattr(self.sampler, "_order"):
            return np.asarray(self.sampler._order(epoch), dtype=np.int64)
        return self._cached(epoch, lambda: _indices(list(self.sampler), "sampler"))

    def batch_indices(self, epoch: int, i: int) -> np.ndarray:
        """The dataset indices of batch ``i`` of ``epoch``, (B,) int64."""
        if self._user_batch_sampler:
            return self._batches(epoch)[i]
        b = 1 if self.batch_size is None else self.batch_size
        return self.order(epoch)[i * b : (i + 1) * b]

    def epoch_iter(self, epoch: int, start_batch: int = 0) -> Iterator[Any]:
        """The batches of ``epoch``, starting at batch ``start_batch`` (for resuming)."""
        if self._user_batch_sampler:
            for idx in self._batches(epoch)[start_batch:]:
                yield self.load(idx, epoch)
            return
        order, b = self.order(epoch), (1 if self.batch_size is None else self.batch_size)
        for i in range(start_batch, len(self)):
            yield self.load(order[i * b : (i + 1) * b], epoch)

    def load(self, idx: np.ndarray, epoch: int) -> Any:
        """Samples ``idx`` ((B,) dataset indices) collated, the inputs transformed with
        ``epoch``'s per-sample draws: any subset of a batch gets exactly its rows of the
        whole batch. With ``batch_size=None`` ``idx`` holds one index and the sample is
        returned alone (converted to Tensors, not stacked)."""
        idx = np.asarray(idx, dtype=np.int64).reshape(-1)
        if not self._auto_batch:
            if len(idx) != 1:
                raise ValueError(
                    f"DataLoader(batch_size=None): load takes one index, got {len(idx)}"
                )
            sample = self.collate_fn(self.dataset[int(idx[0])])
            return self._transform(sample, idx, epoch, single=True)
        batch = None
        if self._default_collate and hasattr(self.dataset, "_gather"):
            arrays = self.dataset._gather(idx)
            if arrays is not None:
                batch = [Tensor(a) for a in arrays]
        if batch is None:
            batch = self.collate_fn([self.dataset[int(i)] for i in idx])
        return self._transform(batch, idx, epoch)

    def _transform(self, batch: Any, idx: np.ndarray, epoch: int, single: bool = False) -> Any:
        """``self.transform`` applied to the batch (a Tensor) or to its first field."""
        if self.transform is None:
            return batch

        def apply(x: Any) -> Tensor:
            x = np.asarray(x.data if isinstance(x, Tensor) else x)
            out = self.transform(x[None] if single else x, SampleRNG(self.seed, epoch, idx))
            out = out.data if isinstance(out, Tensor) else np.asarray(out)
            return Tensor(out[0] if single else out)

        if isinstance(batch, Tensor | np.ndarray):
            return apply(batch)
        if isinstance(batch, list | tuple) and batch and isinstance(batch[0], Tensor | np.ndarray):
            fields = [apply(batch[0]), *batch[1:]]
            if _is_namedtuple(batch):
                return type(batch)(*fields)
            return tuple(fields) if isinstance(batch, tuple) else fields
        raise TypeError(
            "DataLoader: a transform needs batches that are a Tensor or a list/tuple whose "
            f"first element is a Tensor, got {type(batch).__name__}"
        )

    def __iter__(self) -> Iterator[Any]:
        epoch = self.epoch
        self.epoch += 1
        return self.epoch_iter(epoch)

    def set_epoch(self, epoch: int) -> None:
        """Make the next ``iter(loader)`` produce ``epoch``'s order and augmentation."""
        self.epoch = int(epoch)

    def state_dict(self) -> dict[str, int]:
        """``{"seed", "epoch"}``: all a loader needs to resume its sequence."""
        return {"seed": self.seed, "epoch": self.epoch}

    def check_state_dict(self, state: Mapping[str, Any]) -> None:
        """Check, changing nothing, that ``state`` is a loader state: exactly ``seed`` and
        ``epoch``, ints in [0, 2**64) (they key 64-bit hashes). TypeError for a wrong type,
        ValueError otherwise, naming the key and the value."""
        if not isinstance(state, Mapping):
            raise TypeError(f"DataLoader state: expected a mapping, got {type(state).__name__}")
        keys = ("seed", "epoch")
        unknown = [k for k in state if k not in keys]
        missing = [k for k in keys if k not in state]
        if unknown or missing:
            what = f"unknown key {unknown[0]!r}" if unknown else f"no {missing[0]!r} entry"
            raise ValueError(f"DataLoader state: {what} (a loader state has exactly seed, epoch)")
        for key in keys:
            value = state[key]
            if isinstance(value, bool | np.bool_) or not isinstance(value, int | np.integer):
                raise TypeError(f"DataLoader state: {key} must be an int, got {value!r}")
            if not 0 <= value < 2**64:
                raise ValueError(f"DataLoader state: {key} must be in [0, 2**64), got {value!r}")

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore `state_dict`, after `check_state_dict` (nothing changes if it fails)."""
        self.check_state_dict(state)
        self.seed, self.epoch = int(state["seed"]), int(state["epoch"])
        if self._own_sampler and isinstance(self.sampler, RandomSampler):
            self.sampler.seed = self.seed
        self._cache = None

    def __repr__(self) -> str:
        return (
            f"DataLoader({self.dataset!r}, batch_size={self.batch_size}, shuffle={self.shuffle}, "
            f"drop_last={self.drop_last}, seed={self.seed}, transform={self.transform!r})"
        )


def _indices(values: Any, what: str) -> np.ndarray:
    """A sampler's indices as (M,) int64; a clear error for anything else."""
    idx = np.asarray(values)
    if idx.size == 0:
        return np.zeros(0, np.int64)
    if idx.ndim != 1 or idx.dtype.kind not in "iu":
        raise TypeError(
            f"DataLoader: the {what} must give integer dataset indices, got "
            f"{idx.dtype} values of shape {idx.shape}"
        )
    return idx.astype(np.int64, copy=False)
