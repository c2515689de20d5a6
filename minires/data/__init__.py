"""Data: datasets, the `DataLoader`, vectorised batch transforms, and the data sets
minires trains on — the embedded 8x8 digits (no network, no extra package), and
CIFAR-10, CIFAR-100, MNIST and Fashion-MNIST, downloaded and verified by
`minires.data.download` (``minires data download NAME``).

    x, y = minires.data.load_digits("train")          # (1438, 1, 8, 8) float32, (1438,) int64
    train, test, info = minires.data.make_loaders("digits", batch_size=64, seed=0)
    for xb, yb in train: ...                            # Tensors (64, 1, 8, 8), (64,)
"""

from minires.data import download, transforms
from minires.data.cifar import (
    CIFAR10_CLASSES,
    RestrictedUnpickler,
    find_cifar10,
    load_cifar10,
    read_cifar_batch,
    write_cifar10_folder,
)
from minires.data.cifar100 import load_cifar100
from minires.data.dataset import Dataset, TensorDataset
from minires.data.datasets import DATASETS, DatasetInfo, make_loaders, synthetic
from minires.data.digits import load_digits
from minires.data.loader import DataLoader
from minires.data.mnist import load_mnist

__all__ = [
    "CIFAR10_CLASSES",
    "DATASETS",
    "DataLoader",
    "Dataset",
    "DatasetInfo",
    "RestrictedUnpickler",
    "TensorDataset",
    "download",
    "find_cifar10",
    "load_cifar10",
    "load_cifar100",
    "load_digits",
    "load_mnist",
    "make_loaders",
    "read_cifar_batch",
    "synthetic",
    "transforms",
    "write_cifar10_folder",
]
