"""MNIST and Fashion-MNIST from the publishers' IDX files (gzipped or not), parsed and
validated without any third-party package.

IDX format: two zero bytes, a type code (0x08 = uint8), the number of dimensions, then
each dimension as a big-endian int32, then the values in C order.
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np

MNIST_CLASSES = [str(i) for i in range(10)]
FASHION_MNIST_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal",
                         "Shirt", "Sneaker", "Bag", "Ankle boot"]  # fmt: skip
MNIST_MEAN, MNIST_STD = 0.1307, 0.3081
FASHION_MNIST_MEAN, FASHION_MNIST_STD = 0.2860, 0.3530
_IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_SPLITS = {"train": "train", "test": "t10k"}


def parse_idx(raw: bytes, what: str = "IDX data") -> np.ndarray:
    """An IDX byte string -> ndarray; ValueError naming ``what`` if the header is not
    IDX or the size does not match the dimensions it declares."""
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_TYPES:
        raise ValueError(f"{what} is not an IDX file (bad magic number {raw[:4].hex()})")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"{what}: truncated IDX header")
    dims = tuple(int(d) for d in np.frombuffer(raw, ">i4", ndim, offset=4))
    dtype = np.dtype(_IDX_TYPES[raw[2]])
    expected = header + int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    if len(raw) != expected:
        raise ValueError(
            f"{what}: {len(raw):,} bytes, but its header declares {dims} {dtype.name} "
            f"values ({expected:,} bytes): the file is truncated or corrupt; re-download it"
        )
    return np.frombuffer(raw, dtype, offset=header).reshape(dims).astype(dtype.newbyteorder("="))


def _read(path: Path) -> bytes:
    if path.exists():
        return path.read_bytes()
    gz = path.with_name(path.name + ".gz")
    if gz.exists():
        try:
            return gzip.decompress(gz.read_bytes())
        except (OSError, EOFError) as exc:
            raise ValueError(f"{gz} is not a valid gzip file ({exc}); re-download it") from exc
    raise FileNotFoundError(str(gz))


def load_mnist(
    root: str | os.PathLike | None = None, split: str = "train", name: str = "mnist"
) -> tuple[np.ndarray, np.ndarray]:
    """MNIST (``name="mnist"``) or Fashion-MNIST (``"fashion-mnist"``) from
    ``ROOT/NAME/{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]`` (what
    ``minires data download NAME`` installs).

    Returns:
        images (N, 1, 28, 28) uint8, labels (N,) int64 (N = 60,000 train, 10,000 test).
    """
    from minires.data.download import data_root, manual_steps

    if split not in _SPLITS:
        raise ValueError(f"load_mnist: split must be 'train' or 'test', got {split!r}")
    if name not in ("mnist", "fashion-mnist"):
        raise ValueError(f"load_mnist: name must be 'mnist' or 'fashion-mnist', got {name!r}")
    folder = data_root(root) / name
    stem = _SPLITS[split]
    try:
        images = parse_idx(_read(folder / f"{stem}-images-idx3-ubyte"), f"{name} {split} images")
        labels = parse_idx(_read(folder / f"{stem}-labels-idx1-ubyte"), f"{name} {split} labels")
    except FileNotFoundError as exc:
        raise FileNotFoundError(
            f"{name} not found: no {exc}. Run `minires data download {name}` (or pass "
            f"--download).\n" + manual_steps(name, root)
        ) from None
    if images.ndim != 3 or images.dtype != np.uint8 or labels.ndim != 1:
        raise ValueError(
            f"{name} {split}: expected uint8 images (N, H, W) and labels (N,), got "
            f"{images.dtype} {images.shape} and {labels.shape}"
        )
    if len(images) != len(labels):
        raise ValueError(f"{name} {split}: {len(images)} images but {len(labels)} labels")
    if len(labels) and (labels.min() < 0 or labels.max() > 9):
        raise ValueError(f"{name} {split}: labels outside 0..9")
    return images[:, None], labels.astype(np.int64)


def write_idx(path: str | os.PathLike, array: np.ndarray) -> Path:
    """Write ``array`` (uint8) as an IDX file, gzipped if ``path`` ends in .gz (tests)."""
    a = np.ascontiguousarray(array, dtype=np.uint8)
    raw = bytes([0, 0, 0x08, a.ndim]) + np.asarray(a.shape, ">i4").tobytes() + a.tobytes()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(raw) if path.suffix == ".gz" else raw)
    return path
