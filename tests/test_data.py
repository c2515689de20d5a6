"""minires.data: the embedded digits, the DataLoader (shapes, seeded determinism,
resumable epochs), vectorised transforms, and CIFAR-10 from a (synthetic) local folder."""

from __future__ import annotations

import os
import pickle
import time

import numpy as np
import pytest

import minires as mr
from minires import data
from minires.data import transforms as T

# -- embedded digits ------------------------------------------------------------------------


def test_load_digits_shapes_and_split():
    xtr, ytr = data.load_digits("train")
    xte, yte = data.load_digits("test")
    xall, yall = data.load_digits("all")
    assert xtr.shape == (1438, 1, 8, 8) and xte.shape == (359, 1, 8, 8)
    assert xall.shape == (1797, 1, 8, 8)
    assert xtr.dtype == np.float32 and ytr.dtype == np.int64
    assert 0.0 <= xall.min() and xall.max() == 1.0
    assert set(np.unique(yte)) == set(range(10)) and set(np.unique(ytr)) == set(range(10))
    # the split is a partition of the whole set (compare as multisets of rows)
    rows = lambda x: sorted(map(bytes, x.reshape(len(x), -1)))  # noqa: E731
    assert rows(np.concatenate([xtr, xte])) == rows(xall)
    with pytest.raises(ValueError, match="split"):
        data.load_digits("val")


def test_digits_match_sklearn_when_installed():
    sk = pytest.importorskip("sklearn.datasets")
    d = sk.load_digits()
    x, y = data.load_digits("all")
    np.testing.assert_array_equal(x[:, 0] * 16, d.images)
    np.testing.assert_array_equal(y, d.target)


def test_digits_file_is_small():
    assert os.path.getsize(data.digits.DIGITS_FILE) < 1_000_000


# -- DataLoader -----------------------------------------------------------------------------


def _ds(n=10):
    x = np.arange(n * 4, dtype=np.float32).reshape(n, 1, 2, 2)
    return data.TensorDataset(x, np.arange(n))


def test_loader_shapes_and_drop_last():
    ds = _ds(10)
    loader = data.DataLoader(ds, batch_size=4)
    batches = list(loader)
    assert len(loader) == 3 and [len(b[1].data) for b in batches] == [4, 4, 2]
    x, y = batches[0]
    assert isinstance(x, mr.Tensor) and x.shape == (4, 1, 2, 2) and x.dtype == np.float32
    assert y.dtype == np.int64 and not x.requires_grad
    np.testing.assert_array_equal(y.data, [0, 1, 2, 3])  # no shuffle: in order
    dl = data.DataLoader(ds, batch_size=4, drop_last=True)
    assert len(dl) == 2 and [len(b[1].data) for b in dl] == [4, 4]


def test_shuffle_covers_everything_and_is_seeded():
    ds = _ds(50)
    a = data.DataLoader(ds, batch_size=8, shuffle=True, seed=7)
    b = data.DataLoader(ds, batch_size=8, shuffle=True, seed=7)
    c = data.DataLoader(ds, batch_size=8, shuffle=True, seed=8)
    ea1 = np.concatenate([y.data for _, y in a])
    ea2 = np.concatenate([y.data for _, y in a])  # second epoch
    eb1 = np.concatenate([y.data for _, y in b])
    ec1 = np.concatenate([y.data for _, y in c])
    assert sorted(ea1) == list(range(50))
    np.testing.assert_array_equal(ea1, eb1)  # same seed, same order
    assert not np.array_equal(ea1, ea2)  # a new order every epoch
    assert not np.array_equal(ea1, ec1)  # another seed, another order
    assert a.state_dict() == {"seed": 7, "epoch": 2}


def test_seed_none_follows_manual_seed():
    ds = _ds(30)
    mr.manual_seed(3)
    a = data.DataLoader(ds, batch_size=5, shuffle=True)
    mr.manual_seed(3)
    b = data.DataLoader(ds, batch_size=5, shuffle=True)
    assert a.seed == b.seed
    np.testing.assert_array_equal(a.order(0), b.order(0))


def test_epoch_iter_resumes_mid_epoch_with_same_augmentation():
    x = np.random.default_rng(0).standard_normal((40, 2, 6, 6)).astype(np.float32)
    ds = data.TensorDataset(x, np.arange(40))
    tf = T.Compose([T.RandomCrop(6, padding=2), T.RandomHorizontalFlip()])
    loader = data.DataLoader(ds, batch_size=8, shuffle=True, seed=1, transform=tf)
    full = list(loader.epoch_iter(3))
    tail = list(loader.epoch_iter(3, start_batch=2))
    assert len(tail) == len(full) - 2
    for (xa, ya), (xb, yb) in zip(full[2:], tail):
        np.testing.assert_array_equal(xa.data, xb.data)
        np.testing.assert_array_equal(ya.data, yb.data)


def test_generic_dataset_is_stacked():
    class Squares(data.Dataset):
        def __len__(self):
            return 5

        def __getitem__(self, i):
            return np.full((1, 2, 2), i * i, np.float32), i

    (x, y), *_ = data.DataLoader(Squares(), batch_size=3)
    assert x.shape == (3, 1, 2, 2)
    np.testing.assert_array_equal(y.data, [0, 1, 2])
    np.testing.assert_array_equal(x.data[:, 0, 0, 0], [0, 1, 4])


def test_loader_errors():
    with pytest.raises(ValueError, match="batch_size"):
        data.DataLoader(_ds(), batch_size=0)
    with pytest.raises(ValueError, match="first dimension"):
        data.TensorDataset(np.zeros((3, 2)), np.zeros(4))


# -- transforms -----------------------------------------------------------------------------


def test_random_crop_is_a_window_of_the_padded_image():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 3, 5, 5)).astype(np.float32)
    out = T.RandomCrop(5, padding=2)(x, np.random.default_rng(1))
    assert out.shape == x.shape and out.dtype == x.dtype
    padded = np.pad(x, ((0, 0), (0, 0), (2, 2), (2, 2)))
    offsets = set()
    for i in range(len(x)):  # brute force: find the window each image came from
        hits = [
            (t, l)
            for t in range(5)
            for l in range(5)
            if np.array_equal(padded[i, :, t : t + 5, l : l + 5], out[i])
        ]
        assert hits, f"image {i} is not a crop of its padded input"
        offsets.add(hits[0])
    assert len(offsets) > 10  # offsets differ between images
    # no padding, full size: identity
    np.testing.assert_array_equal(T.RandomCrop(5)(x, rng), x)
    with pytest.raises(ValueError, match="larger"):
        T.RandomCrop(8, padding=1)(x, rng)


def test_random_crop_same_rng_same_result():
    x = np.random.default_rng(0).standard_normal((8, 1, 8, 8))
    a = T.RandomCrop(8, padding=1)(x, np.random.default_rng(5))
    b = T.RandomCrop(8, padding=1)(x, np.random.default_rng(5))
    np.testing.assert_array_equal(a, b)


def test_horizontal_flip():
    x = np.random.default_rng(0).standard_normal((200, 2, 3, 4))
    np.testing.assert_array_equal(
        T.RandomHorizontalFlip(1.0)(x, np.random.default_rng()), x[..., ::-1]
    )
    np.testing.assert_array_equal(T.RandomHorizontalFlip(0.0)(x, np.random.default_rng()), x)
    out = T.RandomHorizontalFlip(0.5)(x, np.random.default_rng(0))
    flipped = np.array([np.array_equal(o, xi[..., ::-1]) for o, xi in zip(out, x)])
    kept = np.array([np.array_equal(o, xi) for o, xi in zip(out, x)])
    assert np.all(flipped ^ kept) and 70 < flipped.sum() < 130
    with pytest.raises(ValueError, match="p must"):
        T.RandomHorizontalFlip(1.5)


def test_normalize_tofloat_compose():
    x = np.random.default_rng(0).integers(0, 256, (4, 3, 2, 2)).astype(np.uint8)
    mean, std = (0.1, 0.2, 0.3), (0.5, 0.25, 2.0)
    tf = T.Compose([T.ToFloat(), T.Normalize(mean, std)])
    out = tf(x, np.random.default_rng())
    expect = (x / 255.0 - np.array(mean)[:, None, None]) / np.array(std)[:, None, None]
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, expect, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="N, C, H, W"):
        T.Normalize(mean, std)(np.zeros((3, 2, 2)))
    with pytest.raises(ValueError, match="channel"):
        T.Normalize(mean, std)(np.zeros((1, 2, 2, 2), np.float32))


def test_transforms_are_vectorised_fast():
    x = np.random.default_rng(0).random((512, 3, 32, 32), dtype=np.float32)
    tf = T.Compose([T.RandomCrop(32, padding=4), T.RandomHorizontalFlip()])
    t = time.perf_counter()
    tf(x, np.random.default_rng(0))
    assert time.perf_counter() - t < 2.0  # a per-pixel Python loop would take minutes


# -- CIFAR-10 -------------------------------------------------------------------------------


def test_cifar_synthetic_folder_loads(tmp_path):
    folder = data.write_cifar10_folder(tmp_path, n_per_batch=12, seed=3)
    x, y = data.load_cifar10(tmp_path, "train")
    assert x.shape == (60, 3, 32, 32) and x.dtype == np.uint8
    assert y.shape == (60,) and y.dtype == np.int64
    # rows are CHW: the first 1024 values of a row are the red plane
    with open(folder / "data_batch_1", "rb") as f:
        raw = pickle.load(f, encoding="bytes")
    np.testing.assert_array_equal(x[0, 0].ravel(), raw[b"data"][0, :1024])
    np.testing.assert_array_equal(y[:12], raw[b"labels"])
    xt, yt = data.load_cifar10(folder, "test")  # the folder itself works too
    assert xt.shape == (12, 3, 32, 32)
    tr, te, info = data.make_loaders("cifar10", batch_size=16, root=tmp_path)
    xb, yb = next(iter(tr))
    assert xb.shape == (16, 3, 32, 32) and xb.dtype == np.float32
    assert (info.in_channels, info.image_size, info.num_classes) == (3, 32, 10)


def test_cifar_missing_folder_says_what_to_download(tmp_path):
    with pytest.raises(FileNotFoundError) as e:
        data.load_cifar10(tmp_path / "nowhere")
    msg = str(e.value)
    assert "cifar-10-python.tar.gz" in msg and "cifar-10-batches-py" in msg
    assert str(tmp_path / "nowhere") in msg


def test_cifar_incomplete_folder(tmp_path):
    folder = data.write_cifar10_folder(tmp_path, n_per_batch=2)
    (folder / "data_batch_3").unlink()
    with pytest.raises(FileNotFoundError, match="data_batch_3"):
        data.load_cifar10(tmp_path)


def test_cifar_truncated_file_is_refused(tmp_path):
    folder = data.write_cifar10_folder(tmp_path, n_per_batch=4)
    raw = (folder / "data_batch_2").read_bytes()
    (folder / "data_batch_2").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ValueError, match="data_batch_2.*corrupt"):
        data.load_cifar10(tmp_path)


class _Evil:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (os.mkdir, (self.path,))


def test_cifar_malicious_pickle_is_refused_not_run(tmp_path):
    folder = data.write_cifar10_folder(tmp_path, n_per_batch=4)
    marker = tmp_path / "pwned"
    payload = {b"data": _Evil(str(marker)), b"labels": [0] * 4}
    (folder / "test_batch").write_bytes(pickle.dumps(payload, protocol=2))
    with pytest.raises(ValueError, match="refusing to load global"):
        data.load_cifar10(tmp_path, "test")
    assert not marker.exists()


def test_cifar_wrong_shapes_are_refused(tmp_path):
    folder = data.write_cifar10_folder(tmp_path, n_per_batch=4)
    bad = {b"data": np.zeros((4, 100), np.uint8), b"labels": [0] * 4}
    (folder / "test_batch").write_bytes(pickle.dumps(bad, protocol=2))
    with pytest.raises(ValueError, match="3072"):
        data.load_cifar10(tmp_path, "test")
    bad = {b"data": np.zeros((4, 3072), np.uint8), b"labels": [0, 1]}
    (folder / "test_batch").write_bytes(pickle.dumps(bad, protocol=4))
    with pytest.raises(ValueError, match="labels"):
        data.load_cifar10(tmp_path, "test")


def test_restricted_unpickler_allows_plain_data():
    obj = {b"a": [1, 2.5, "x", (3, None)], "arr": np.arange(6, dtype=np.int16).reshape(2, 3)}
    for proto in (2, 4, 5):
        back = data.cifar.restricted_load(pickle.dumps(obj, protocol=proto))
        np.testing.assert_array_equal(back["arr"], obj["arr"])
        assert back[b"a"] == obj[b"a"]


def test_make_loaders_digits_and_errors():
    tr, te, info = data.make_loaders("digits", batch_size=32, seed=0)
    x, y = next(iter(tr))
    assert x.shape == (32, 1, 8, 8) and info.in_channels == 1 and info.num_classes == 10
    assert abs(float(np.mean(np.concatenate([b[0].data for b in te])))) < 0.2  # normalised
    with pytest.raises(ValueError, match="unknown dataset"):
        data.make_loaders("imagenet")
