"""`DataLoader`: mini-batches from a dataset, shuffled reproducibly, with batch transforms."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

from minires.data.dataset import Dataset, TensorDataset
from minires.data.transforms import BatchTransform, SampleRNG
from minires.tensor import Tensor


class DataLoader:
    """Iterate over a dataset in mini-batches of `Tensor`\\ s, like PyTorch's.

    Each pass (epoch) yields ``(x, y)`` with x of shape (B, C, H, W) after ``transform``
    and y of shape (B,) int64. The order and the augmentation are a pure function of the
    seed: the permutation of epoch e comes from ``default_rng([seed, e])`` and each
    sample's augmentation draws from ``SampleRNG(seed, e, sample indices)``, keyed by
    (seed, epoch, sample index). So a run is reproducible, a resumed run can re-enter an
    epoch at any batch (`epoch_iter`) without replaying the ones before, and a sample is
    augmented the same way whichever batch or MPI rank it lands in (`load`).

    Args:
        dataset: a `Dataset` (a `TensorDataset` is gathered a whole batch at a time).
        batch_size: samples per batch.
        shuffle: a new random order every epoch.
        drop_last: drop the last batch if it is smaller than ``batch_size``.
        seed: seed of the order and augmentation; None draws one from minires' global
            generator (so ``mr.manual_seed`` controls it).
        transform: a batch transform ``t(x, rng) -> x`` applied to the inputs (see
            `minires.data.transforms`).
    """

    def __init__(
        self,
        dataset: Dataset,
        batch_size: int = 1,
        shuffle: bool = False,
        drop_last: bool = False,
        seed: int | None = None,
        transform: BatchTransform | None = None,
    ):
        if isinstance(batch_size, bool) or not isinstance(batch_size, int | np.integer):
            raise TypeError(f"DataLoader: batch_size must be an int, got {batch_size!r}")
        if batch_size < 1:
            raise ValueError(f"DataLoader: batch_size must be a positive int, got {batch_size!r}")
        if len(dataset) == 0:
            raise ValueError("DataLoader: the dataset is empty")
        if seed is None:
            from minires.random import get_rng

            seed = int(get_rng().integers(2**31))
        if isinstance(seed, bool) or not isinstance(seed, int | np.integer):
            raise TypeError(f"DataLoader: seed must be an int, got {seed!r}")
        if not 0 <= seed < 2**64:  # (the augmentation's hashes are 64-bit)
            raise ValueError(f"DataLoader: seed must be in [0, 2**64), got {seed}")
        self.dataset, self.batch_size = dataset, int(batch_size)
        self.shuffle, self.drop_last = shuffle, drop_last
        self.seed, self.transform = int(seed), transform
        self.epoch = 0  # the epoch the next plain `iter(loader)` will produce

    def __len__(self) -> int:
        """Number of batches per epoch."""
        n = len(self.dataset)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def order(self, epoch: int) -> np.ndarray:
        """The sample indices of ``epoch`` in the order they are served, (N,) int64."""
        n = len(self.dataset)
        if not self.shuffle:
            return np.arange(n)
        return np.random.default_rng([self.seed, epoch]).permutation(n)

    def epoch_iter(self, epoch: int, start_batch: int = 0) -> Iterator[tuple[Tensor, ...]]:
        """The batches of ``epoch``, starting at batch ``start_batch`` (for resuming)."""
        order = self.order(epoch)
        for i in range(start_batch, len(self)):
            yield self.load(order[i * self.batch_size : (i + 1) * self.batch_size], epoch)

    def batch_indices(self, epoch: int, i: int) -> np.ndarray:
        """The dataset indices of batch ``i`` of ``epoch``, (B,) int64."""
        return self.order(epoch)[i * self.batch_size : (i + 1) * self.batch_size]

    def load(self, idx: np.ndarray, epoch: int) -> Any:
        """Samples ``idx`` (dataset indices) as Tensors, transformed with ``epoch``'s
        per-sample draws: any subset of a batch gets exactly its rows of the whole batch.

        Collated as PyTorch's default: samples that are tuples give a tuple of batched
        Tensors (the first one transformed, the others labels), a sample that is one
        array gives one batched Tensor (transformed), dicts a dict of batched Tensors."""
        batch = self._gather(np.asarray(idx))
        if isinstance(batch, dict):
            if self.transform is not None:
                raise TypeError("DataLoader: a transform needs samples that are arrays or tuples")
            return {k: Tensor(_as_label(v)) for k, v in batch.items()}
        single = not isinstance(batch, tuple)
        x = batch if single else batch[0]
        if self.transform is not None:
            x = self.transform(x, SampleRNG(self.seed, epoch, idx))
        if single:
            return Tensor(x)
        return (Tensor(x),) + tuple(Tensor(_as_label(b)) for b in batch[1:])

    def __iter__(self) -> Iterator[tuple[Tensor, ...]]:
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

    def _gather(self, idx: np.ndarray) -> Any:
        """The samples ``idx`` stacked: a tuple of arrays, one array, or a dict of arrays
        (the structure of the dataset's samples)."""
        if isinstance(self.dataset, TensorDataset):
            return self.dataset[idx]
        items = [self.dataset[int(i)] for i in idx]
        first = items[0]
        if isinstance(first, dict):
            return {k: _stack([it[k] for it in items], k) for k in first}
        if isinstance(first, tuple | list):
            return tuple(_stack([it[k] for it in items], k) for k in range(len(first)))
        return _stack(items, None)

    def __repr__(self) -> str:
        return (
            f"DataLoader({self.dataset!r}, batch_size={self.batch_size}, shuffle={self.shuffle}, "
            f"drop_last={self.drop_last}, seed={self.seed}, transform={self.transform!r})"
        )


def _stack(values: list[Any], field: Any) -> np.ndarray:
    """One field of a batch's samples stacked; a clear error when samples differ."""
    try:
        return np.stack([np.asarray(v.data if isinstance(v, Tensor) else v) for v in values])
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        what = "samples" if field is None else f"field {field!r} of the samples"
        raise ValueError(f"DataLoader: cannot batch the {what}: {exc}") from None


def _as_label(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a)
    return a.astype(np.int64) if a.dtype.kind in "iu" else a
