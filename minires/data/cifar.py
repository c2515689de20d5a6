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


# Largest array a data pickle may hold: a CIFAR batch is 10,000 x 3072 bytes = 30 MB.
MAX_PICKLED_ARRAY_BYTES = 1 << 28


def _check_shape(shape: Any) -> tuple[int, ...]:
    if not isinstance(shape, tuple) or any(
        type(n) is not int or n < 0
        for n in shape  # noqa: E721 - exactly int, no bool
    ):
        raise pickle.UnpicklingError(f"refusing array shape {str(shape)[:80]}")
    return shape


def _safe_dtype(dt: Any) -> np.dtype:
    """Plain numeric dtypes only: no object (its data would be a list of objects), no
    structured or sub-array dtypes (a sub-array dtype of shape (10**9,) is a way to make
    a one-element array allocate gigabytes)."""
    if not isinstance(dt, np.dtype | str | bytes):
        raise pickle.UnpicklingError(f"refusing dtype {str(dt)[:80]}")
    try:
        dt = np.dtype(dt)
    except (TypeError, ValueError) as exc:
        raise pickle.UnpicklingError(f"refusing dtype {str(dt)[:80]}: {exc}") from None
    if dt.hasobject or dt.kind not in "biuf" or dt.fields or dt.subdtype:
        raise pickle.UnpicklingError(f"refusing array dtype {dt}: only plain numbers allowed")
    return dt


def _nbytes(shape: tuple[int, ...], dt: np.dtype) -> int:
    count = 1
    for n in shape:
        count *= n
    return count * dt.itemsize


class _NdarrayName:
    """What the name ``numpy.ndarray`` resolves to in a data pickle: only a marker for
    `_reconstruct`, so a pickle cannot call ``ndarray(shape)`` itself (an allocation of
    any size)."""

    def __init__(self, *args: Any, **kwargs: Any):
        raise pickle.UnpicklingError("refusing to call numpy.ndarray directly")


def _reconstruct(subtype: Any, shape: Any, dtype: Any) -> np.ndarray:
    """NumPy's ``_reconstruct`` (an empty array that BUILD then fills), refusing a real
    size: NumPy's own pickles always pass ``(0,)``; a crafted one could ask for a huge
    allocation here, before any data is read."""
    if subtype is not _NdarrayName:
        raise pickle.UnpicklingError(f"refusing to reconstruct a {subtype!r}")
    shape = _check_shape(shape)
    dt = _safe_dtype(dtype)
    if _nbytes(shape, np.dtype(np.uint8)) > 1:
        raise pickle.UnpicklingError(f"refusing a pre-sized array of shape {shape}")
    return np.ndarray.__new__(np.ndarray, shape, dt)


def _frombuffer(buf: Any, dtype: Any, shape: Any, order: str) -> np.ndarray:
    """NumPy's protocol-5 array constructor, with the buffer's size checked first."""
    dt, shape = _safe_dtype(dtype), _check_shape(shape)
    if not isinstance(buf, bytes | bytearray | pickle.PickleBuffer):
        raise pickle.UnpicklingError(f"refusing array data of type {type(buf).__name__}")
    nbytes = memoryview(buf).nbytes
    if _nbytes(shape, dt) != nbytes:
        raise pickle.UnpicklingError(f"array of shape {shape} {dt} does not fit {nbytes} bytes")
    return np.frombuffer(buf, dtype=dt).reshape(shape, order="F" if order == "F" else "C")


def _scalar(dtype: Any, data: Any = None) -> Any:
    """NumPy's ``scalar`` constructor for plain numeric dtypes."""
    dt = _safe_dtype(dtype)
    if not isinstance(data, bytes) or len(data) != dt.itemsize:
        raise pickle.UnpicklingError(f"refusing scalar data for {dt}")
    return np.frombuffer(data, dtype=dt)[0]


def _numpy_global(module: str, name: str) -> Any:
    """The few NumPy callables an array pickle needs, each as a checked wrapper."""
    table = {
        ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
        ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
        ("numpy.core.multiarray", "scalar"): _scalar,
        ("numpy._core.multiarray", "scalar"): _scalar,
        ("numpy.core.numeric", "_frombuffer"): _frombuffer,
        ("numpy._core.numeric", "_frombuffer"): _frombuffer,
        ("numpy", "ndarray"): _NdarrayName,
        ("numpy", "dtype"): _safe_dtype_call,
        ("_codecs", "encode"): _latin1_encode,  # how Python 3 protocol-2 pickles store bytes
    }
    return table.get((module, name))


def _safe_dtype_call(spec: Any, align: Any = False, copy: Any = False) -> np.dtype:
    """``np.dtype(spec, align, copy)`` as a pickle calls it, for plain numbers only."""
    return _safe_dtype(spec)


def _check_dtype_state(state: Any) -> None:
    # (version, byteorder, subarray, names, fields, elsize, alignment, flags)
    if not isinstance(state, tuple) or len(state) < 5 or any(v is not None for v in state[2:5]):
        raise pickle.UnpicklingError(f"refusing dtype state {str(state)[:80]}")


def _check_array_state(state: Any) -> None:
    # (version, shape, dtype, is_fortran, raw bytes)
    if not isinstance(state, tuple) or len(state) != 5:
        raise pickle.UnpicklingError("refusing an array state of unexpected form")
    _, shape, dtype, _, raw = state
    dt, shape = _safe_dtype(dtype), _check_shape(shape)
    if not isinstance(raw, bytes | bytearray):
        raise pickle.UnpicklingError(f"refusing array data of type {type(raw).__name__}")
    nbytes = _nbytes(shape, dt)
    if nbytes != len(raw) or nbytes > MAX_PICKLED_ARRAY_BYTES:
        raise pickle.UnpicklingError(
            f"array of shape {shape} {dt} ({nbytes} bytes) does not match its {len(raw)} bytes"
        )


class RestrictedUnpickler(pickle._Unpickler):  # the Python one, so BUILD can be checked
    """An unpickler for data files: dicts, lists, tuples, strings, bytes, numbers and
    plain numeric NumPy arrays come through; any other global (a class or function a
    malicious file would need to run code) raises ``pickle.UnpicklingError``. Every
    array's declared shape and dtype is checked against the bytes the file holds before
    NumPy allocates anything, so a small crafted file cannot claim gigabytes."""

    def find_class(self, module: str, name: str) -> Any:
        obj = _numpy_global(module, name)
        if obj is None:
            raise pickle.UnpicklingError(
                f"refusing to load global {module}.{name}: only plain arrays, lists and dicts "
                "are allowed in a data file"
            )
        return obj

    def load_build(self) -> None:
        state = self.stack.pop()
        inst = self.stack[-1]
        if isinstance(inst, np.dtype):
            _check_dtype_state(state)
        elif isinstance(inst, np.ndarray):
            _check_array_state(state)
        else:
            raise pickle.UnpicklingError(f"refusing to set the state of a {type(inst).__name__}")
        inst.__setstate__(state)

    dispatch = dict(pickle._Unpickler.dispatch)
    dispatch[pickle.BUILD[0]] = load_build


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
    size = path.stat().st_size
    if size > MAX_PICKLED_ARRAY_BYTES:  # a real batch is 31 MB
        raise ValueError(f"{bad}: {size:,} bytes, far more than a CIFAR batch (~31 MB)")
    try:
        d = restricted_load(path.read_bytes())
    except pickle.UnpicklingError as exc:
        raise ValueError(f"{bad}: {exc}. Re-download and re-extract it.") from exc
    except Exception as exc:  # truncated or garbage: EOFError, ValueError, IndexError, ...
        raise ValueError(f"{bad} ({type(exc).__name__}: {exc}). Re-download it.") from exc
    if not isinstance(d, dict):
        raise ValueError(f"{bad}: expected a dict with 'data' and 'labels', got {type(d).__name__}")
    try:
        data, labels = _get(d, "data"), _get(d, "labels")
    except (KeyError, TypeError) as exc:
        raise ValueError(f"{bad}: expected a dict with 'data' and 'labels'") from exc
    # Types and lengths first, before any conversion: np.asarray of a crafted nested list
    # (one list referenced thousands of times) would allocate hundreds of MiB.
    if not isinstance(data, np.ndarray):
        raise ValueError(f"{bad}: 'data' is a {type(data).__name__}, expected a uint8 array")
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        raise ValueError(f"{bad}: 'data' is {data.dtype} {data.shape}, expected uint8 (n, 3072)")
    if isinstance(labels, list):
        if len(labels) != len(data) or not all(type(v) is int for v in labels):  # noqa: E721
            raise ValueError(
                f"{bad}: 'labels' must be a list of {len(data)} ints, got {len(labels)} items"
            )
        labels = np.array(labels, dtype=np.int64)
    elif not isinstance(labels, np.ndarray):
        raise ValueError(f"{bad}: 'labels' is a {type(labels).__name__}, expected a list of ints")
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
