"""minires.data against torch.utils.data (and torchvision.transforms where the names match),
from a PyTorch user's side (an audit's findings):

- `TensorDataset` items are tuples of Tensors; ints, negative ints, NumPy ints, lists and
  slices index as in torch; out of range is an IndexError; mismatched lengths a ValueError
  naming the shapes (torch: AssertionError);
- `ConcatDataset` (also ``a + b``), `Subset`, `random_split` (fractional lengths summing to
  1 split as torch's; seeded; clear errors);
- `default_collate` / `default_convert` give torch's structures and dtypes (int -> int64,
  float -> float64, tuples -> lists, dicts, namedtuples, strings);
- `DataLoader`: ``batch_size=None``, ``drop_last``, ``len``, ``sampler``/``batch_sampler``,
  ``collate_fn``, an empty dataset, ``num_workers``, the argument checks, reproducible
  shuffling from ``seed``/``generator``; the `TensorDataset` fast path equals collation;
- transforms: ``Normalize`` (std 0, mean/std lengths, dtype kept, ``inplace``), ``RandomCrop``
  (torchvision's padding forms and modes, ``pad_if_needed``), ``Compose`` with one-argument
  callables, transforms callable without an rng, Tensors in -> Tensors out.

Tests that need torch as an oracle take the ``torch`` fixture (skipped, saying why, when
PyTorch is not installed); torchvision is not a dependency: where it would be the oracle the
documented torchvision behaviour is written next to the assertion.
"""

from __future__ import annotations

import collections
import warnings

import numpy as np
import pytest

import minires as mr
from minires import data as D
from minires.data import transforms as T

# -- helpers --------------------------------------------------------------------------------


def _same(ours, theirs, torch, path="batch"):
    """``ours`` (minires) has the structure, types, dtypes and values of ``theirs`` (torch)."""
    if isinstance(theirs, torch.Tensor):
        assert isinstance(ours, mr.Tensor), f"{path}: {type(ours).__name__}, torch has a Tensor"
        t = theirs.numpy()
        assert ours.shape == t.shape, f"{path}: shape {ours.shape} vs torch {t.shape}"
        assert ours.dtype == t.dtype, f"{path}: dtype {ours.dtype} vs torch {t.dtype}"
        np.testing.assert_array_equal(ours.data, t, err_msg=path)
    elif isinstance(theirs, dict):
        assert type(ours) is type(theirs) and list(ours) == list(theirs), path
        for k in theirs:
            _same(ours[k], theirs[k], torch, f"{path}[{k!r}]")
    elif isinstance(theirs, list | tuple):
        assert type(ours) is type(theirs), f"{path}: {type(ours)} vs torch {type(theirs)}"
        assert len(ours) == len(theirs), path
        for i, (a, b) in enumerate(zip(ours, theirs)):
            _same(a, b, torch, f"{path}[{i}]")
    else:
        assert type(ours) is type(theirs) and ours == theirs, f"{path}: {ours!r} vs {theirs!r}"


class Samples(D.Dataset):
    """A map-style dataset of arbitrary Python samples (torch's DataLoader takes it too)."""

    def __init__(self, items):
        self.items = list(items)

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


def _xy(n=7):
    x = np.arange(n * 6, dtype=np.float32).reshape(n, 1, 2, 3)
    return x, (np.arange(n) % 3).astype(np.int64)


# -- datasets -------------------------------------------------------------------------------


def test_tensor_dataset_indexing_matches_torch(torch):
    x, y = _xy()
    ours = D.TensorDataset(x, y)
    theirs = torch.utils.data.TensorDataset(torch.from_numpy(x), torch.from_numpy(y))
    assert len(ours) == len(theirs) == 7
    for i in [0, 3, 6, -1, -7, np.int64(2), np.int32(-3), [0, 5, 5], slice(1, 4), slice(None)]:
        _same(ours[i], theirs[i], torch, f"ds[{i!r}]")
    for bad in [7, -8, 100]:
        with pytest.raises(IndexError):
            theirs[bad]
        with pytest.raises(IndexError, match=f"index {bad} is out of range for 7"):
            ours[bad]
    with pytest.raises(IndexError):  # torch: IndexError; ours is also a TypeError
        theirs[1.0]
    with pytest.raises(IndexError, match="must be an int"):
        ours[1.0]
    with pytest.raises(TypeError, match="must be an int"):
        ours[1.0]
    # items are views, as torch's: writing through one changes the data
    ours[0][0].data[...] = -1
    assert x[0].min() == -1
    assert len(ours.tensors) == 2 and isinstance(ours.tensors[0], mr.Tensor)


def test_tensor_dataset_errors_name_the_shapes():
    with pytest.raises(ValueError, match=r"array 1 has shape \(4,\).*\(3, 2\), \(4,\)"):
        D.TensorDataset(np.zeros((3, 2)), np.zeros(4))  # torch: AssertionError "Size mismatch"
    with pytest.raises(ValueError, match="scalar"):
        D.TensorDataset(np.zeros(3), np.float32(1))
    with pytest.raises(ValueError, match="at least one"):
        D.TensorDataset()
    ds = D.TensorDataset(mr.tensor(np.ones((2, 3))), np.arange(2))  # Tensors are accepted
    assert ds[1][0].shape == (3,)


def test_concat_dataset_matches_torch(torch):
    a, b = list(range(3)), list(range(10, 15))
    ours = D.ConcatDataset([Samples(a), Samples([]), Samples(b)])
    theirs = torch.utils.data.ConcatDataset([a, [], b])
    assert len(ours) == len(theirs) == 8
    assert ours.cumulative_sizes == theirs.cumulative_sizes == [3, 3, 8]
    for i in range(-8, 8):
        assert ours[i] == theirs[i], i
    for i in (8, -9):  # torch: IndexError for 8, ValueError for -9; ours: IndexError both
        with pytest.raises(IndexError, match="out of range for 8"):
            ours[i]
    with pytest.raises(ValueError, match="empty"):  # torch: AssertionError
        D.ConcatDataset([])
    with pytest.raises(TypeError, match="dataset 0"):
        D.ConcatDataset([3])
    both = Samples(a) + Samples(b)  # Dataset.__add__, as torch
    assert isinstance(both, D.ConcatDataset) and [both[i] for i in range(8)] == a + b


def test_subset_matches_torch(torch):
    x, y = _xy()
    ours = D.Subset(D.TensorDataset(x, y), [4, 0, 6])
    tds = torch.utils.data.TensorDataset(torch.from_numpy(x), torch.from_numpy(y))
    theirs = torch.utils.data.Subset(tds, [4, 0, 6])
    assert len(ours) == len(theirs) == 3
    for i in [0, 2, -1, -3, np.int64(1), [2, 0]]:
        _same(ours[i], theirs[i], torch, f"subset[{i!r}]")
    with pytest.raises(IndexError):
        ours[3]
    with pytest.raises(TypeError, match="1-D sequence of ints"):
        D.Subset(tds, [0.5, 1.0])


@pytest.mark.parametrize(
    "n, lengths",
    [(10, [0.3, 0.7]), (10, [0.33, 0.33, 0.34]), (7, [0.5, 0.5]), (11, [0.25] * 4),
     (100, [0.8, 0.1, 0.1]), (3, [1.0]), (10, [3, 7]), (5, [0, 5])],
)  # fmt: skip
def test_random_split_lengths_match_torch(torch, n, lengths):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = torch.utils.data.random_split(range(n), lengths)
        ours = D.random_split(list(range(n)), lengths, generator=0)
    assert [len(s) for s in ours] == [len(s) for s in theirs]
    flat = [i for s in ours for i in s.indices]
    assert sorted(flat) == list(range(n))  # a partition


def test_random_split_is_seeded_and_checks_its_arguments(torch):
    ds = list(range(20))
    a = D.random_split(ds, [0.5, 0.5], generator=3)
    b = D.random_split(ds, [0.5, 0.5], generator=np.random.default_rng(3))
    c = D.random_split(ds, [0.5, 0.5], generator=np.random.default_rng(3))
    assert [s.indices for s in a] == [s.indices for s in D.random_split(ds, [10, 10], generator=3)]
    assert [s.indices for s in b] == [s.indices for s in c]
    mr.manual_seed(5)
    d = D.random_split(ds, [0.5, 0.5])
    mr.manual_seed(5)
    assert [s.indices for s in d] == [s.indices for s in D.random_split(ds, [0.5, 0.5])]
    assert [s.indices for s in a] != [
        s.indices for s in D.random_split(ds, [0.5, 0.5], generator=4)
    ]
    for bad in ([3, 3], [0.5, 0.6]):
        with pytest.raises(ValueError, match="Sum of input lengths"):
            torch.utils.data.random_split(ds, bad)
        with pytest.raises(ValueError, match="does not equal the length"):
            D.random_split(ds, bad)
    with pytest.raises(ValueError, match=">= 0"):  # torch silently accepts [-1, 21]
        D.random_split(ds, [-1, 21])
    with pytest.raises(TypeError, match="generator"):
        D.random_split(ds, [10, 10], generator="seed")
    with pytest.warns(UserWarning, match="index 2 is 0"):  # as torch
        D.random_split(ds, [0.5, 0.5, 0.0], generator=0)


# -- collation ------------------------------------------------------------------------------

Point = collections.namedtuple("Point", "x y")

COLLATE_CASES = {
    "ints": [1, 2, 3],
    "floats": [1.0, 2.5],
    "bools": [True, False],
    "int then float": [1, 2.5],
    "float then int": [2.5, 1],
    "np.float32 scalars": [np.float32(1), np.float32(2)],
    "np.int32 scalars": [np.int32(1), np.int32(-2)],
    "0-d arrays": [np.array(1.5), np.array(2.5)],
    "uint8 arrays": [np.zeros((2, 3), np.uint8), np.ones((2, 3), np.uint8)],
    "tuples": [(np.zeros(2, np.float32), 1), (np.ones(2, np.float32), 2)],
    "lists": [[1, 2.0], [3, 4.0]],
    "dicts": [{"a": 1, "b": np.zeros(2)}, {"a": 2, "b": np.ones(2)}],
    "nested": [{"x": (1, [2.0, "s"])}, {"x": (3, [4.0, "t"])}],
    "strings": ["a", "b"],
    "namedtuples": [Point(1, 2.0), Point(3, 4.0)],
}


@pytest.mark.parametrize("case", list(COLLATE_CASES))
def test_default_collate_matches_torch(torch, case):
    batch = COLLATE_CASES[case]
    _same(D.default_collate(batch), torch.utils.data.default_collate(batch), torch)


@pytest.mark.parametrize("case", list(COLLATE_CASES))
def test_default_convert_matches_torch(torch, case):
    for sample in COLLATE_CASES[case]:
        _same(D.default_convert(sample), torch.utils.data.default_convert(sample), torch)


def test_default_collate_errors_match_torch(torch):
    bad = {
        "None": ([None, None], TypeError),
        "string arrays": ([np.array(["a"]), np.array(["b"])], TypeError),
        "ragged tuples": ([(1, 2), (1, 2, 3)], RuntimeError),
        "ragged arrays": ([np.zeros(2), np.zeros(3)], RuntimeError),
    }
    for batch, torch_error in bad.values():
        with pytest.raises(torch_error):
            torch.utils.data.default_collate(batch)
        with pytest.raises(torch_error):  # ours is the same type (also a ValueError)
            D.default_collate(batch)
    with pytest.raises(ValueError, match=r"sample 0 has shape \(2,\), sample 1 has shape \(3,\)"):
        D.default_collate([np.zeros(2), np.zeros(3)])
    with pytest.raises(ValueError, match="no key 'b'"):  # torch: KeyError
        D.default_collate([{"a": 1, "b": 2}, {"a": 1}])
    with pytest.raises(ValueError, match="empty"):
        D.default_collate([])


# -- DataLoader -----------------------------------------------------------------------------


def _loaders(torch, ds_items, **kw):
    ours = D.DataLoader(Samples(ds_items), **kw)
    theirs = torch.utils.data.DataLoader(Samples(ds_items), **kw)
    return ours, theirs


@pytest.mark.parametrize(
    "kw",
    [dict(), dict(batch_size=3), dict(batch_size=3, drop_last=True), dict(batch_size=None),
     dict(batch_size=7), dict(batch_size=10, drop_last=True)],
)  # fmt: skip
def test_loader_batches_match_torch(torch, kw):
    x, y = _xy()
    items = [(x[i], int(y[i]), float(i) / 2, {"id": i}) for i in range(7)]
    ours, theirs = _loaders(torch, items, **kw)
    assert len(ours) == len(theirs)
    _same(list(ours), list(theirs), torch)
    tds = torch.utils.data.TensorDataset(torch.from_numpy(x), torch.from_numpy(y))
    mds = D.TensorDataset(x, y)
    _same(list(D.DataLoader(mds, **kw)), list(torch.utils.data.DataLoader(tds, **kw)), torch)
    ours_sub = D.DataLoader(D.Subset(mds, [6, 1, 2, 5]), **kw)  # gathered a batch at a time
    theirs_sub = torch.utils.data.DataLoader(torch.utils.data.Subset(tds, [6, 1, 2, 5]), **kw)
    _same(list(ours_sub), list(theirs_sub), torch)


def test_loader_len_matches_torch(torch):
    for n in (0, 1, 5, 8, 9):
        for bs in (1, 2, 4, 8, 16, None):
            for drop_last in (False, True) if bs is not None else (False,):
                ours, theirs = _loaders(torch, range(n), batch_size=bs, drop_last=drop_last)
                assert len(ours) == len(theirs) == len(list(ours)), (n, bs, drop_last)


def test_loader_empty_dataset_like_torch(torch):
    ours, theirs = _loaders(torch, [], batch_size=4)
    assert len(ours) == len(theirs) == 0 and list(ours) == list(theirs) == []
    with pytest.raises(ValueError, match="num_samples"):
        torch.utils.data.DataLoader(Samples([]), batch_size=4, shuffle=True)
    with pytest.raises(ValueError, match="num_samples should be a positive integer"):
        D.DataLoader(Samples([]), batch_size=4, shuffle=True)


def test_loader_samplers_match_torch(torch):
    items = list(range(10, 20))
    tdu = torch.utils.data
    for kw_ours, kw_theirs in [
        (dict(sampler=[9, 3, 4, 0], batch_size=3), None),
        (dict(batch_sampler=[[0, 1], [9], [2, 2, 5]]), None),
        (dict(sampler=D.SequentialSampler(items), batch_size=4),
         dict(sampler=tdu.SequentialSampler(items), batch_size=4)),
        (dict(batch_sampler=D.BatchSampler(range(10), 3, True)),
         dict(batch_sampler=tdu.BatchSampler(range(10), 3, True))),
        (dict(batch_size=4, collate_fn=lambda b: b), None),
        (dict(batch_size=None, collate_fn=lambda s: s * 2), None),
    ]:  # fmt: skip
        ours = D.DataLoader(Samples(items), **kw_ours)
        theirs = tdu.DataLoader(Samples(items), **(kw_theirs or kw_ours))
        assert len(ours) == len(theirs)
        _same(list(ours), list(theirs), torch, str(kw_ours))
    assert list(D.BatchSampler(range(10), 3, False)) == list(tdu.BatchSampler(range(10), 3, False))
    for args in [(range(10), 3, True), (range(10), 3, False), (range(9), 3, True)]:
        assert len(D.BatchSampler(*args)) == len(tdu.BatchSampler(*args))
    dl = D.DataLoader(Samples(items), batch_size=2)
    assert isinstance(dl.sampler, D.SequentialSampler) and isinstance(
        dl.batch_sampler, D.BatchSampler
    )
    assert isinstance(D.DataLoader(Samples(items), shuffle=True).sampler, D.RandomSampler)


def test_random_samplers_semantics_and_errors(torch):
    tdu = torch.utils.data
    ds = list(range(5))
    for kw in [dict(), dict(num_samples=12), dict(replacement=True, num_samples=12),
               dict(replacement=True)]:  # fmt: skip
        ours, theirs = D.RandomSampler(ds, generator=1, **kw), tdu.RandomSampler(ds, **kw)
        assert len(ours) == len(theirs)
        a = list(ours)
        assert len(a) == len(theirs) and all(0 <= i < 5 for i in a) and type(a[0]) is int
        if not kw.get("replacement"):  # blocks of permutations, as torch
            for k in range(0, len(a) - 4, 5):
                assert sorted(a[k : k + 5]) == ds
        assert list(ours) != a or kw.get("num_samples") is None  # a new order every pass
    same = D.RandomSampler(ds, generator=1, num_samples=12)
    assert list(same) == list(D.RandomSampler(ds, generator=1, num_samples=12))
    for kw, error in [(dict(num_samples=0), ValueError), (dict(replacement=1), TypeError)]:
        with pytest.raises(error):
            tdu.RandomSampler(ds, **kw)
        with pytest.raises(error, match=list(kw)[0]):
            D.RandomSampler(ds, **kw)
    sub = list(D.SubsetRandomSampler([7, 3, 9], generator=0))
    assert sorted(sub) == [3, 7, 9] and len(D.SubsetRandomSampler([7, 3, 9])) == 3
    w = D.WeightedRandomSampler([0.0, 1.0, 0.0, 3.0], 200, generator=0)
    drawn = np.array(list(w))
    assert len(w) == 200 and set(drawn) == {1, 3} and 120 < np.sum(drawn == 3) < 180
    assert sorted(D.WeightedRandomSampler([1, 1, 0, 1], 3, replacement=False, generator=0)) == [
        0,
        1,
        3,
    ]
    with pytest.raises(ValueError, match="without replacement"):
        D.WeightedRandomSampler([1, 0], 2, replacement=False)
    with pytest.raises(ValueError, match="1d"):
        D.WeightedRandomSampler(np.ones((2, 2)), 2)


@pytest.mark.parametrize(
    "kw",
    [dict(batch_size=0), dict(batch_size=-1), dict(batch_size=None, drop_last=True),
     dict(num_workers=-1), dict(shuffle=True, sampler=[0, 1]),
     dict(batch_sampler=[[0]], batch_size=2), dict(batch_sampler=[[0]], shuffle=True),
     dict(batch_sampler=[[0]], drop_last=True), dict(batch_sampler=[[0]], sampler=[0]),
     dict(timeout=-1), dict(prefetch_factor=2), dict(persistent_workers=True)],
)  # fmt: skip
def test_loader_argument_errors_match_torch(torch, kw):
    with pytest.raises(ValueError):
        torch.utils.data.DataLoader(Samples(range(4)), **kw)
    with pytest.raises(ValueError, match=list(kw)[-1].split("_")[0]):
        D.DataLoader(Samples(range(4)), **kw)


def test_loader_type_errors():
    # torch raises a ValueError for these too; minires raises a TypeError for a wrong type
    for bad in (2.0, "2", True):
        with pytest.raises(TypeError, match="batch_size"):
            D.DataLoader(Samples(range(4)), batch_size=bad)
    with pytest.raises(TypeError, match="num_workers"):
        D.DataLoader(Samples(range(4)), num_workers=1.5)
    with pytest.raises(TypeError, match="map-style"):
        D.DataLoader(iter(range(4)))
    with pytest.raises(TypeError, match="collate_fn"):
        D.DataLoader(Samples(range(4)), collate_fn=3)
    with pytest.raises(ValueError, match="not both"):
        D.DataLoader(Samples(range(4)), seed=1, generator=2)


def test_num_workers_loads_in_process_with_the_same_batches():
    x, y = _xy(10)
    a = D.DataLoader(D.TensorDataset(x, y), batch_size=3, shuffle=True, seed=4)
    b = D.DataLoader(D.TensorDataset(x, y), batch_size=3, shuffle=True, seed=4, num_workers=4,
                     pin_memory=True, prefetch_factor=2, persistent_workers=True)  # fmt: skip
    for (xa, ya), (xb, yb) in zip(a, b, strict=True):
        np.testing.assert_array_equal(xa.data, xb.data)
        np.testing.assert_array_equal(ya.data, yb.data)


def test_loader_shuffle_is_reproducible_and_iterates_again():
    x, y = _xy(20)
    ds = D.TensorDataset(x, y)

    def epochs(loader, k=2):
        return [np.concatenate([b[1].data for b in loader]).tolist() for _ in range(k)]

    a = epochs(D.DataLoader(ds, batch_size=6, shuffle=True, seed=3))
    assert a == epochs(D.DataLoader(ds, batch_size=6, shuffle=True, seed=3))
    assert a[0] != a[1] and sorted(a[0]) == sorted(y.tolist())  # new order, every sample
    g1 = D.DataLoader(ds, batch_size=6, shuffle=True, generator=np.random.default_rng(9))
    g2 = D.DataLoader(ds, batch_size=6, shuffle=True, generator=np.random.default_rng(9))
    assert epochs(g1) == epochs(g2)
    mr.manual_seed(11)
    m1 = epochs(D.DataLoader(ds, batch_size=6, shuffle=True))
    mr.manual_seed(11)
    assert m1 == epochs(D.DataLoader(ds, batch_size=6, shuffle=True))
    unshuffled = D.DataLoader(ds, batch_size=6)
    assert epochs(unshuffled) == [y.tolist()] * 2  # iterating twice gives it all, again
    # a minires sampler passed in follows the loader's epochs: reproducible and resumable
    s = D.DataLoader(ds, batch_size=4, sampler=D.RandomSampler(ds, generator=2))
    full = [b[1].data.tolist() for b in s.epoch_iter(1)]
    assert [b[1].data.tolist() for b in s.epoch_iter(1, start_batch=2)] == full[2:]


def test_fast_path_equals_collation_and_transform():
    x, y = _xy(9)
    ds = D.Subset(D.TensorDataset(x, y), [8, 0, 3, 3, 5])
    tf = T.RandomCrop((1, 2), padding=1)
    fast = D.DataLoader(ds, batch_size=2, shuffle=True, seed=1, transform=tf)
    slow = D.DataLoader(ds, batch_size=2, shuffle=True, seed=1, transform=tf,
                        collate_fn=D.default_collate)  # fmt: skip
    for a, b in zip(fast, slow, strict=True):
        assert type(a) is type(b) is list
        for ta, tb in zip(a, b):
            assert ta.dtype == tb.dtype and ta.shape == tb.shape
            np.testing.assert_array_equal(ta.data, tb.data)
    # without batching the transform sees the single sample as a batch of one
    one = D.DataLoader(D.TensorDataset(x, y), batch_size=None, transform=T.RandomCrop((1, 2)))
    xs, ys = next(iter(one))
    assert xs.shape == (1, 1, 2) and ys.shape == ()
    with pytest.raises(TypeError, match="transform needs"):
        next(iter(D.DataLoader(Samples([{"a": x[0]}]), transform=tf)))


# -- transforms -----------------------------------------------------------------------------


def test_normalize_matches_torchvision_formula(torch):
    x = np.random.default_rng(0).random((2, 3, 4, 5))
    mean, std = [0.1, 0.2, 0.3], [0.5, 0.25, 2.0]
    t = torch.from_numpy(x)  # torchvision's F.normalize: (x - mean[:, None, None]) / std[...]
    m, s = torch.tensor(mean, dtype=t.dtype), torch.tensor(std, dtype=t.dtype)
    expect = (t - m[:, None, None]) / s[:, None, None]
    out = T.Normalize(mean, std)(x)
    assert out.dtype == np.float64  # the input's float dtype is kept, as torchvision
    np.testing.assert_allclose(out, expect.numpy(), rtol=1e-12)
    out32 = T.Normalize(mean, std)(x.astype(np.float32))
    assert out32.dtype == np.float32
    np.testing.assert_allclose(out32, expect.numpy(), rtol=1e-5)
    np.testing.assert_allclose(T.Normalize(0.5, 2.0)(x), (x - 0.5) / 2.0)  # one value for all


def test_normalize_errors_and_inplace():
    x = np.random.default_rng(0).random((2, 3, 4, 4)).astype(np.float32)
    with pytest.raises(ValueError, match="std evaluated to zero"):  # torchvision: ValueError
        T.Normalize([0.5, 0.5, 0.5], [1.0, 0.0, 1.0])
    with pytest.raises(ValueError, match="mean has 3 values and std 2"):
        T.Normalize([0.5, 0.5, 0.5], [1.0, 1.0])
    with pytest.raises(ValueError, match="2 channel stats in std for 3 channels"):
        T.Normalize([0.5], [1.0, 1.0])(x)
    with pytest.raises(TypeError, match="float batch, got uint8"):  # torchvision: TypeError
        T.Normalize([0.5], [1.0])(np.zeros((1, 1, 2, 2), np.uint8))
    with pytest.raises(TypeError, match="mean"):
        T.Normalize("abc", [1.0])
    expect = T.Normalize([0.1, 0.2, 0.3], [1.0, 2.0, 3.0])(x)
    y = x.copy()
    out = T.Normalize([0.1, 0.2, 0.3], [1.0, 2.0, 3.0], inplace=True)(y)
    assert out is y
    np.testing.assert_array_equal(y, expect)
    assert not np.array_equal(x, expect)  # not in place by default
    tx = mr.tensor(x)
    out = T.Normalize([0.1, 0.2, 0.3], [1.0, 2.0, 3.0])(tx)
    assert isinstance(out, mr.Tensor)
    np.testing.assert_array_equal(out.data, expect)


def test_random_crop_padding_forms_and_modes():
    x = np.random.default_rng(0).random((16, 2, 4, 5)).astype(np.float32)

    def windows_of(out, padded):
        ch, cw = out.shape[2:]
        for i in range(len(out)):
            assert any(
                np.array_equal(padded[i, :, t : t + ch, l : l + cw], out[i])
                for t in range(padded.shape[2] - ch + 1)
                for l in range(padded.shape[3] - cw + 1)
            ), i

    rng = np.random.default_rng(1)
    # torchvision: padding (lr, tb) pads left/right by lr and top/bottom by tb;
    # (l, t, r, b) each side; padding_mode as np.pad's constant / edge / reflect / symmetric
    cases = [
        (dict(size=4, padding=(1, 2)), ((2, 2), (1, 1)), "constant"),
        (dict(size=(3, 4), padding=[1, 0, 2, 3]), ((0, 3), (1, 2)), "constant"),
        (dict(size=4, padding=2, padding_mode="edge"), ((2, 2), (2, 2)), "edge"),
        (dict(size=4, padding=2, padding_mode="reflect"), ((2, 2), (2, 2)), "reflect"),
        (dict(size=(4, 5), padding=1, padding_mode="symmetric"), ((1, 1), (1, 1)), "symmetric"),
    ]
    for kw, (hw, ww), mode in cases:
        out = T.RandomCrop(**kw)(x, rng)
        assert out.dtype == x.dtype and out.shape[:2] == x.shape[:2]
        padded = np.pad(x, ((0, 0), (0, 0), hw, ww), mode=mode)
        windows_of(out, padded)
    out = T.RandomCrop(4, padding=1, fill=7.0)(x, rng)
    windows_of(out, np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)), constant_values=7.0))
    big = T.RandomCrop((6, 5), pad_if_needed=True)(x, rng)  # pads H by 2 on both sides
    assert big.shape == (16, 2, 6, 5)
    windows_of(big, np.pad(x, ((0, 0), (0, 0), (2, 2), (0, 0))))
    u8 = T.RandomCrop(3, padding=1)(np.ones((2, 1, 3, 3), np.uint8))
    assert u8.dtype == np.uint8 and u8.shape == (2, 1, 3, 3)
    assert T.RandomCrop(4, padding=None)(x, rng).shape == (16, 2, 4, 4)
    t = T.RandomCrop(4)(mr.tensor(x))  # a Tensor in, a Tensor out; rng None: minires' own
    assert isinstance(t, mr.Tensor) and t.shape == (16, 2, 4, 4)


def test_random_crop_errors():
    x = np.zeros((2, 1, 4, 4), np.float32)
    with pytest.raises(ValueError, match="larger than the padded image"):  # torchvision too
        T.RandomCrop(5)(x)
    with pytest.raises(ValueError, match="positive"):
        T.RandomCrop(0)
    with pytest.raises(TypeError, match="size"):
        T.RandomCrop((2, 2, 2))
    with pytest.raises(TypeError, match="padding"):
        T.RandomCrop(4, padding=(1, 2, 3))
    with pytest.raises(ValueError, match="padding must be >= 0"):
        T.RandomCrop(4, padding=-1)
    with pytest.raises(ValueError, match="padding_mode"):
        T.RandomCrop(4, padding_mode="wrap")
    with pytest.raises(ValueError, match="N, C, H, W"):
        T.RandomCrop(4)(np.zeros((1, 4, 4)))


def test_compose_flip_and_one_argument_callables():
    x = np.random.default_rng(0).random((8, 1, 3, 3))
    tf = T.Compose([T.RandomHorizontalFlip(1.0), lambda b: b * 2, T.Normalize([1.0], [2.0])])
    np.testing.assert_allclose(tf(x), (x[..., ::-1] * 2 - 1.0) / 2.0)  # no rng needed
    np.testing.assert_allclose(tf(x, np.random.default_rng(0)), (x[..., ::-1] * 2 - 1.0) / 2.0)
    mr.manual_seed(2)
    a = T.RandomHorizontalFlip()(x)
    mr.manual_seed(2)
    np.testing.assert_array_equal(a, T.RandomHorizontalFlip()(x))  # the global rng, seeded
    with pytest.raises(TypeError, match="transform 1"):
        T.Compose([T.ToFloat(), 3])
    with pytest.raises(TypeError, match="list of transforms"):
        T.Compose(T.ToFloat())
    with pytest.raises(TypeError, match="p must be a number"):
        T.RandomHorizontalFlip("0.5")
    flipped = T.RandomHorizontalFlip(1.0)(mr.tensor(x))
    assert isinstance(flipped, mr.Tensor)
    np.testing.assert_array_equal(flipped.data, x[..., ::-1])


def test_subclass_getitem_is_respected():
    class Doubled(D.TensorDataset):
        def __getitem__(self, i):
            x, y = super().__getitem__(i)
            return x * 2, y

    x, y = _xy(4)
    xb, yb = next(iter(D.DataLoader(Doubled(x, y), batch_size=4)))
    np.testing.assert_array_equal(xb.data, 2 * x)
    xb, _ = next(iter(D.DataLoader(D.Subset(Doubled(x, y), [3, 1]), batch_size=2)))
    np.testing.assert_array_equal(xb.data, 2 * x[[3, 1]])
