"""CIFAR-10 from a local folder in the standard "python version" layout, read without
ever executing code from the files.

Expected layout (what ``cifar-10-python.tar.gz`` extracts to)::

    ROOT/cifar-10-batches-py/data_batch_1 ... data_batch_5, test_batch, batches.meta

Each batch is a pickled dict with ``b'data'``: uint8 (10000, 3072), each row one image in
CHW order (1024 red, 1024 green, 1024 blue values), and ``b'labels'``: a list of ints.
Pickle can run arbitrary code, so the files are read with `RestrictedUnpickler`, which
only lets NumPy's array reconstruction through and refuses every other global.
"""

from __future__ import annotations

import io
import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np

CIFAR10_FOLDER = "cifar-10-batches-py"
CIFAR10_TRAIN = [f"data_batch_{i}" for i in range(1, 6)]
CIFAR10_TEST = ["test_batch"]
CIFAR10_CLASSES = [
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
]  # fmt: skip
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)

_HOW_TO_GET = (
    "Run `minires data download cifar10` (or pass --download to minires train), or: "
    "download the CIFAR-10 *python version* (cifar-10-python.tar.gz, 163 MB) from "
    "https://www.cs.toronto.edu/~kriz/cifar.html and extract it there, e.g.\n"
    "    mkdir -p {root} && tar -xzf cifar-10-python.tar.gz -C {root}\n"
    "so that {root}/cifar-10-batches-py/data_batch_1 exists (or point --data-root / the "
    "MINIRES_DATA environment variable at the folder that holds cifar-10-batches-py)."
)


def default_data_root() -> Path:
    """``$MINIRES_DATA`` if set, else the user cache folder (``~/.cache/minires``, where
    ``minires data download`` puts data sets)."""
    from minires.data.download import data_root

    return data_root()


def _latin1_encode(text: str, encoding: str = "latin1") -> bytes:
    """``_codecs.encode`` restricted to the one use in data pickles: str -> latin-1 bytes."""
    if not isinstance(text, str) or encoding.lower().replace("-", "") != "latin1":
        raise pickle.UnpicklingError(
            f"refusing _codecs.encode({type(text).__name__}, {encoding!r})"
        )
    return text.encode("latin1")


def _numpy_global(module: str, name: str) -> Any:
    """The few NumPy callables an array pickle needs, resolved without importing by name."""
    try:
        from numpy._core import multiarray, numeric  # NumPy 2
    except ImportError:  # pragma: no cover - NumPy 1
        from numpy.core import multiarray, numeric  # type: ignore[no-redef]
    table = {
        ("numpy.core.multiarray", "_reconstruct"): multiarray._reconstruct,
        ("numpy._core.multiarray", "_reconstruct"): multiarray._reconstruct,
        ("numpy.core.multiarray", "scalar"): multiarray.scalar,
        ("numpy._core.multiarray", "scalar"): multiarray.scalar,
        ("numpy.core.numeric", "_frombuffer"): numeric._frombuffer,
        ("numpy._core.numeric", "_frombuffer"): numeric._frombuffer,
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): _latin1_encode,  # how Python 3 protocol-2 pickles store bytes
    }
    return table.get((module, name))


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler for data files: dicts, lists, tuples, strings, bytes, numbers and
    NumPy arrays come through; any other global (a class or function a malicious file
    would need to run code) raises ``pickle.UnpicklingError``."""

    def find_class(self, module: str, name: str) -> Any:
        obj = _numpy_global(module, name)
        if obj is None:
            raise pickle.UnpicklingError(
                f"refusing to load global {module}.{name}: only plain arrays, lists and dicts "
                "are allowed in a data file"
            )
        return obj


def restricted_load(data: bytes) -> Any:
    """Unpickle ``data`` (Python 2 pickles too: byte strings stay bytes) with
    `RestrictedUnpickler`."""
    return RestrictedUnpickler(io.BytesIO(data), encoding="bytes").load()


def find_cifar10(root: str | os.PathLike | None = None) -> Path:
    """The ``cifar-10-batches-py`` folder under ``root`` (or ``root`` itself if it is one).

    Raises FileNotFoundError saying what to download and where to put it.
    """
    root = default_data_root() if root is None else Path(root).expanduser()
    for cand in (root / CIFAR10_FOLDER, root):
        if (cand / "data_batch_1").exists() or (cand / "test_batch").exists():
            break
    else:
        raise FileNotFoundError(
            f"CIFAR-10 not found: no {root / CIFAR10_FOLDER}/data_batch_1.\n"
            + _HOW_TO_GET.format(root=root)
        )
    missing = [f for f in CIFAR10_TRAIN + CIFAR10_TEST if not (cand / f).exists()]
    if missing:
        raise FileNotFoundError(
            f"CIFAR-10 folder {cand} is incomplete: missing {', '.join(missing)}.\n"
            + _HOW_TO_GET.format(root=cand.parent)
        )
    return cand


def _get(d: dict, key: str) -> Any:
    for k in (key.encode(), key):
        if k in d:
            return d[k]
    raise KeyError(key)


def read_cifar_batch(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """One CIFAR-10 batch file -> images (n, 3, 32, 32) uint8, labels (n,) int64.

    Raises ValueError naming the file if it is truncated, not a pickle, holds anything
    but plain data, or has the wrong shapes.
    """
    path = Path(path)
    bad = f"CIFAR-10 file {path} is corrupt or not a CIFAR-10 python batch"
    try:
        d = restricted_load(path.read_bytes())
    except pickle.UnpicklingError as exc:
        raise ValueError(f"{bad}: {exc}. Re-download and re-extract it.") from exc
    except Exception as exc:  # truncated or garbage: EOFError, ValueError, IndexError, ...
        raise ValueError(f"{bad} ({type(exc).__name__}: {exc}). Re-download it.") from exc
    try:
        data, labels = _get(d, "data"), _get(d, "labels")
    except (KeyError, TypeError) as exc:
        raise ValueError(f"{bad}: expected a dict with 'data' and 'labels'") from exc
    data = np.asarray(data)
    labels = np.asarray(labels)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        raise ValueError(f"{bad}: 'data' is {data.dtype} {data.shape}, expected uint8 (n, 3072)")
    if labels.shape != (len(data),) or labels.dtype.kind not in "iu":
        raise ValueError(f"{bad}: 'labels' has shape {labels.shape}, expected ({len(data)},) ints")
    if len(labels) and (labels.min() < 0 or labels.max() > 9):
        raise ValueError(f"{bad}: labels outside 0..9")
    return data.reshape(-1, 3, 32, 32), labels.astype(np.int64)


def load_cifar10(
    root: str | os.PathLike | None = None, split: str = "train"
) -> tuple[np.ndarray, np.ndarray]:
    """CIFAR-10 from a local folder (see the module doc for the layout).

    Args:
        root: folder holding ``cifar-10-batches-py`` (or that folder itself); default
            ``$MINIRES_DATA`` or ``~/.cache/minires``.
        split: ``"train"`` (50,000 images) or ``"test"`` (10,000).

    Returns:
        images (N, 3, 32, 32) uint8 (use ``transforms.ToFloat()`` to get [0, 1] floats),
        labels (N,) int64.
    """
    if split not in ("train", "test"):
        raise ValueError(f"load_cifar10: split must be 'train' or 'test', got {split!r}")
    folder = find_cifar10(root)
    parts = [
        read_cifar_batch(folder / f) for f in (CIFAR10_TRAIN if split == "train" else CIFAR10_TEST)
    ]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def write_cifar10_folder(root: str | os.PathLike, n_per_batch: int = 20, seed: int = 0) -> Path:
    """Write a small *synthetic* CIFAR-10 folder in the real format (for tests and demos).

    Creates ``root/cifar-10-batches-py`` with five training batches and a test batch of
    ``n_per_batch`` random images each, plus ``batches.meta``. Returns the folder.
    """
    rng = np.random.default_rng(seed)
    folder = Path(root) / CIFAR10_FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    for name in CIFAR10_TRAIN + CIFAR10_TEST:
        d = {
            b"batch_label": name.encode(),
            b"labels": [int(v) for v in rng.integers(0, 10, n_per_batch)],
            b"data": rng.integers(0, 256, (n_per_batch, 3072), dtype=np.uint8),
            b"filenames": [f"img_{i}.png".encode() for i in range(n_per_batch)],
        }
        (folder / name).write_bytes(pickle.dumps(d, protocol=2))
    meta = {
        b"label_names": [c.encode() for c in CIFAR10_CLASSES],
        b"num_cases_per_batch": n_per_batch,
        b"num_vis": 3072,
    }
    (folder / "batches.meta").write_bytes(pickle.dumps(meta, protocol=2))
    return folder
