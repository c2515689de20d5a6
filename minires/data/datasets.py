"""Named data sets with their recipes: `make_loaders("digits" | "cifar10" | "synthetic")`
returns a train and a test `DataLoader` ready for a CIFAR-style ResNet, plus `DatasetInfo`."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field

import numpy as np

from minires.data import transforms as T
from minires.data.cifar import CIFAR10_CLASSES, CIFAR10_MEAN, CIFAR10_STD, load_cifar10
from minires.data.cifar100 import CIFAR100_MEAN, CIFAR100_STD, load_cifar100
from minires.data.dataset import TensorDataset
from minires.data.digits import DIGITS_CLASSES, digits_stats, load_digits
from minires.data.download import DOWNLOADABLE
from minires.data.download import download as fetch_dataset
from minires.data.loader import DataLoader
from minires.data.mnist import (
    FASHION_MNIST_CLASSES,
    FASHION_MNIST_MEAN,
    FASHION_MNIST_STD,
    MNIST_CLASSES,
    MNIST_MEAN,
    MNIST_STD,
    load_mnist,
)

DATASETS = ("digits", "cifar10", "cifar100", "mnist", "fashion-mnist", "synthetic")


@dataclass
class DatasetInfo:
    """What a model needs to know about a data set (shape of one image, classes)."""

    name: str
    in_channels: int
    image_size: int
    num_classes: int
    n_train: int
    n_test: int
    classes: list[str] = field(default_factory=list)
    train_transform: str = ""
    test_transform: str = ""

    def to_dict(self) -> dict:
        """Plain dict (for JSON)."""
        return asdict(self)


def synthetic(
    n: int = 256, num_classes: int = 10, channels: int = 1, size: int = 8, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """A learnable toy image set: class k is a fixed random pattern plus noise.

    Returns:
        images (n, channels, size, size) float32, labels (n,) int64.
    """
    rng = np.random.default_rng(seed)
    protos = rng.standard_normal((num_classes, channels, size, size)).astype(np.float32)
    y = rng.integers(0, num_classes, n)
    x = protos[y] + 0.5 * rng.standard_normal((n, channels, size, size)).astype(np.float32)
    return x.astype(np.float32), y.astype(np.int64)


def _cifar_transforms(mean, std, augment) -> tuple[T.Compose, T.Compose]:
    """(train, test) transforms of the CIFAR sets: uint8 -> float, the standard crop +
    flip augmentation (unless ``augment`` is False) for training, then normalisation."""
    norm = T.Normalize(mean, std)
    aug = [T.RandomCrop(32, padding=4), T.RandomHorizontalFlip()] if augment in (None, True) else []
    return T.Compose([T.ToFloat()] + aug + [norm]), T.Compose([T.ToFloat(), norm])


def make_loaders(
    name: str = "digits",
    batch_size: int = 64,
    seed: int = 0,
    augment: bool | None = None,
    root: str | os.PathLike | None = None,
    test_batch_size: int = 500,
    dtype: str | np.dtype = "float32",
    download: bool = False,
) -> tuple[DataLoader, DataLoader, DatasetInfo]:
    """Train and test loaders for a named data set.

    Args:
        name: ``"digits"`` (embedded 8x8 digits, 1x8x8, the default everywhere),
            ``"cifar10"`` / ``"cifar100"`` (3x32x32), ``"mnist"`` / ``"fashion-mnist"``
            (1x28x28) from the data root (``minires data download NAME`` or
            ``download=True``), or ``"synthetic"`` (random patterns, for tests).
        batch_size: training batch size (the training loader shuffles, keeps the last
            partial batch).
        seed: seed of the shuffling and augmentation.
        augment: random crop (and flip, for CIFAR) on the training set. Default: on for
            CIFAR (pad 4, crop 32, flip — He et al.), off for the others (MNIST: pad 2,
            crop 28 when on).
        root: data folder (default ``$MINIRES_DATA`` or ``~/.cache/minires``).
        test_batch_size: batch size of the (unshuffled) test loader.
        dtype: float dtype of the batches (``"float64"`` for a float64 model).
        download: fetch a downloadable data set into ``root`` first if it is missing
            (see `minires.data.download`).

    Returns:
        (train_loader, test_loader, info)
    """
    if download and name in DOWNLOADABLE:
        from minires.distributed import get_comm

        comm = get_comm()
        if comm.is_root:  # under MPI rank 0 fetches (a failure aborts every rank)
            fetch_dataset(name, root)
        comm.barrier()
    if name == "digits":
        (xtr, ytr), (xte, yte) = load_digits("train"), load_digits("test")
        mean, std = digits_stats()
        norm = T.Normalize([mean], [std])
        aug = [T.RandomCrop(8, padding=1)] if augment else []
        train_tf, test_tf = T.Compose(aug + [norm]), norm
        classes = DIGITS_CLASSES
    elif name == "cifar10":
        (xtr, ytr), (xte, yte) = load_cifar10(root, "train"), load_cifar10(root, "test")
        train_tf, test_tf = _cifar_transforms(CIFAR10_MEAN, CIFAR10_STD, augment)
        classes = CIFAR10_CLASSES
    elif name == "cifar100":
        (xtr, ytr), (xte, yte) = load_cifar100(root, "train"), load_cifar100(root, "test")
        train_tf, test_tf = _cifar_transforms(CIFAR100_MEAN, CIFAR100_STD, augment)
        classes = [str(i) for i in range(100)]
    elif name in ("mnist", "fashion-mnist"):
        (xtr, ytr) = load_mnist(root, "train", name)
        (xte, yte) = load_mnist(root, "test", name)
        stats = (MNIST_MEAN, MNIST_STD) if name == "mnist" else (FASHION_MNIST_MEAN,
                                                                 FASHION_MNIST_STD)  # fmt: skip
        norm = T.Normalize([stats[0]], [stats[1]])
        aug = [T.RandomCrop(28, padding=2)] if augment else []
        train_tf = T.Compose([T.ToFloat()] + aug + [norm])
        test_tf = T.Compose([T.ToFloat(), norm])
        classes = MNIST_CLASSES if name == "mnist" else FASHION_MNIST_CLASSES
    elif name == "synthetic":
        xall, yall = synthetic(384, seed=1)  # one draw: train and test share the prototypes
        xtr, ytr, xte, yte = xall[:256], yall[:256], xall[256:], yall[256:]
        aug = [T.RandomCrop(8, padding=1)] if augment else []
        train_tf, test_tf = (T.Compose(aug) if aug else None), None
        classes = [str(i) for i in range(10)]
    else:
        raise ValueError(f"unknown dataset {name!r}; choose one of {list(DATASETS)}")
    if np.dtype(dtype) != np.float32:
        cast = T.Cast(dtype)
        train_tf = T.Compose([train_tf, cast]) if train_tf is not None else cast
        test_tf = T.Compose([test_tf, cast]) if test_tf is not None else cast
    train = DataLoader(
        TensorDataset(xtr, ytr), batch_size, shuffle=True, seed=seed, transform=train_tf
    )
    test = DataLoader(
        TensorDataset(xte, yte), test_batch_size, shuffle=False, seed=seed, transform=test_tf
    )
    info = DatasetInfo(
        name=name, in_channels=int(xtr.shape[1]), image_size=int(xtr.shape[2]),
        num_classes=len(classes), n_train=len(ytr), n_test=len(yte), classes=list(classes),
        train_transform=repr(train_tf), test_transform=repr(test_tf),
    )  # fmt: skip
    return train, test, info
