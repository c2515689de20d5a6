"""Small helpers shared by the ops: argument normalisation, input checks, un-broadcasting."""

from __future__ import annotations

import contextlib
from typing import Any

import numpy as np

from minires.kernels.blas import blas_one_thread
from minires.tensor import Tensor


def as_tensor(x: Any, like: Tensor | None = None) -> Tensor:
    """Tensor from ``x``; Python scalars take the dtype of ``like`` (no silent promotion)."""
    if isinstance(x, Tensor):
        return x
    if like is not None and np.isscalar(x) and like.dtype.kind == "f":
        return Tensor._wrap(np.asarray(x, dtype=like.dtype))
    return Tensor(x)


def pair(value: int | tuple[int, int] | list[int], name: str) -> tuple[int, int]:
    """``3 -> (3, 3)``; checks that a pair really is two ints."""
    if isinstance(value, int | np.integer):
        return int(value), int(value)
    if (
        isinstance(value, tuple | list)
        and len(value) == 2
        and all(isinstance(v, int | np.integer) for v in value)
    ):
        return int(value[0]), int(value[1])
    raise TypeError(f"{name} must be an int or a pair of ints, got {value!r}")


def unbroadcast(grad: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Sum ``grad`` over the axes NumPy broadcasting added or stretched, back to ``shape``.

    If ``a`` of shape (3, 1) was added to ``b`` of shape (4, 3, 5), the output is (4, 3, 5)
    and d out / d a sums over axis 0 (added) and axis 2 (stretched from 1).
    """
    if grad.shape == shape:
        return grad
    extra = grad.ndim - len(shape)
    if extra > 0:
        grad = grad.sum(axis=tuple(range(extra)))
    stretched = tuple(i for i, n in enumerate(shape) if n == 1 and grad.shape[i] != 1)
    if stretched:
        grad = grad.sum(axis=stretched, keepdims=True)
    return grad.reshape(shape)


def check_float(x: Tensor, op: str, name: str = "input") -> None:
    """Ops on real values refuse integer/bool tensors with a clear message."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{op}: {name} must be a Tensor, got {type(x).__name__}")
    if x.dtype.kind != "f":
        raise TypeError(f"{op}: {name} must be float32 or float64, got {x.dtype}")


def check_same_dtype(op: str, **tensors: Tensor | None) -> None:
    """Like PyTorch, mixing float32 and float64 in one op is an error, not a silent cast."""
    named = {k: t.dtype for k, t in tensors.items() if t is not None}
    if len(set(named.values())) > 1:
        desc = ", ".join(f"{k} {d}" for k, d in named.items())
        raise TypeError(f"{op}: all inputs must have the same dtype, got {desc}")


def check_ndim(x: Tensor, ndims: tuple[int, ...], op: str, name: str, layout: str) -> None:
    """Raise a ValueError naming the expected layout when ``x.ndim`` is wrong."""
    if x.ndim not in ndims:
        raise ValueError(
            f"{op}: expected {name} of {' or '.join(map(str, ndims))} dimensions ({layout}), "
            f"got shape {x.shape}"
        )


def out_size(size: int, k: int, s: int, p: int, d: int = 1) -> int:
    """Output length of a conv/pool window sweep: floor((size + 2p - d(k-1) - 1)/s) + 1."""
    return (size + 2 * p - d * (k - 1) - 1) // s + 1


# -- BLAS threads ----------------------------------------------------------------------

# Below this many multiply-adds a matrix product runs on one BLAS thread (see `small_gemm`).
SMALL_GEMM_MACS = 1 << 24


def small_gemm(macs: int) -> contextlib.AbstractContextManager:
    """Context for a matrix product of ``macs`` multiply-adds: one BLAS thread when it is
    small, else BLAS's own threading.

    Why: a small product gains nothing from a second thread, and OpenBLAS's threads
    spin-wait after every threaded call. In a ResNeXt-50 fwd+bwd at batch 2 (2 cores
    shared with another job) the 2x2048x1000 fc took 40 ms per pass instead of ~1 ms,
    and the spinning thread slowed the conv kernels that followed (profiled step 889 ms
    vs 463 ms with OPENBLAS_NUM_THREADS=1). Needs threadpoolctl; a no-op without it.
    """
    return blas_one_thread() if macs < SMALL_GEMM_MACS else contextlib.nullcontext()


# -- dimension arguments ---------------------------------------------------------------


def normalize_dim(dim: Any, ndim: int, op: str, *, insert: bool = False) -> int:
    """Check a dimension index and make it non-negative; out of range is an error, never
    a silent wrap (torch's rule: ``-ndim <= dim < ndim``; a 0-d tensor accepts 0 and -1).

    ``insert=True`` counts the ``ndim + 1`` places where a new axis can go (unsqueeze,
    stack): ``-ndim - 1 <= dim <= ndim``.
    """
    if isinstance(dim, bool) or not isinstance(dim, int | np.integer):
        raise TypeError(f"{op}: a dimension must be an int, got {dim!r}")
    n = ndim + 1 if insert else max(ndim, 1)
    if not -n <= dim < n:
        raise ValueError(
            f"{op}: dim {dim} is out of range for a tensor of {ndim} dimension(s) "
            f"(expected {-n}..{n - 1})"
        )
    return int(dim) % n


def resolve_dim_alias(op: str, dim: Any, axis: Any, default: Any = None) -> Any:
    """PyTorch's ``dim`` and NumPy's ``axis`` name the same argument: take whichever is
    given and refuse both (they could disagree)."""
    if dim is not None and axis is not None:
        raise TypeError(f"{op}: give dim or axis, not both (got dim={dim!r}, axis={axis!r})")
    return default if dim is None and axis is None else (dim if axis is None else axis)
