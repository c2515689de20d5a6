"""Data: datasets, the `DataLoader`, vectorised batch transforms, and the data sets
minires trains on — the embedded 8x8 digits (no network, no extra package), and
CIFAR-10, CIFAR-100, MNIST and Fashion-MNIST, downloaded and verified by
`minires.data.download` (``minires data download NAME``).

    x, y = minires.data.load_digits("train")          # (1438, 1, 8, 8) float32, (1438,) int64
    train, test, info = minires.data.make_loaders("digits", batch_size=64, seed=0)
    for xb, yb in train: ...                            # Tensors (64, 1, 8, 8), (64,)

The dataset and loader API follows ``torch.utils.data``: `Dataset`, `TensorDataset`,
`ConcatDataset`, `Subset`, `random_split`, the samplers, `default_collate`; see
`minires.data.loader.DataLoader` for what differs (seeded, resumable order; batch
transforms; no worker processes).
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
from minires.data.dataset import ConcatDataset, Dataset, Subset, TensorDataset, random_split
from minires.data.datasets import DATASETS, DatasetInfo, make_loaders, synthetic
from minires.data.digits import load_digits
from minires.data.loader import (
    BatchSampler,
    DataLoader,
    RandomSampler,
    Sampler,
    SequentialSampler,
    SubsetRandomSampler,
    WeightedRandomSampler,
    default_collate,
    default_convert,
)
from minires.data.mnist import load_mnist

__all__ = [
    "BatchSampler",
    "CIFAR10_CLASSES",
    "ConcatDataset",
    "DATASETS",
    "DataLoader",
    "Dataset",
    "DatasetInfo",
    "RandomSampler",
    "RestrictedUnpickler",
    "Sampler",
    "SequentialSampler",
    "Subset",
    "SubsetRandomSampler",
    "TensorDataset",
    "WeightedRandomSampler",
    "default_collate",
    "default_convert",
    "download",
    "find_cifar10",
    "load_cifar10",
    "load_cifar100",
    "load_digits",
    "load_mnist",
    "make_loaders",
    "random_split",
    "read_cifar_batch",
    "synthetic",
    "transforms",
    "write_cifar10_folder",
]
