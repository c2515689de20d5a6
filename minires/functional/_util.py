"""Small helpers shared by the ops: argument normalisation, input checks, un-broadcasting."""

from __future__ import annotations

import contextlib
from typing import Any

import numpy as np

from minires.kernels.blas import blas_one_thread
from minires.tensor import Tensor


def as_tensor(x: Any, like: Tensor | None = None) -> Tensor:
    """Tensor from ``x``; Python scalars take the dtype of ``like`` (no silent promotion):
    any number next to a float tensor, an integer next to an integer tensor."""
    if isinstance(x, Tensor):
        return x
    if isinstance(x, str | bytes):  # np.asarray("a", float32) would say "could not convert"
        raise TypeError(f"expected a Tensor, an array or a number, got {type(x).__name__} {x!r}")
    if like is not None and np.isscalar(x) and not isinstance(x, bool | np.bool_):
        integer = isinstance(x, int | np.integer)
        if like.dtype.kind == "f" or (like.dtype.kind in "iu" and integer):
            return Tensor._wrap(np.asarray(x, dtype=like.dtype))
    return Tensor(x)


def as_array(value: Any, op: str, name: str, dtype: Any = None) -> np.ndarray:
    """``np.asarray(value, dtype)`` for an argument given as a list or array, with a clear
    error naming ``op`` and the argument for a ragged list or a value NumPy cannot read."""
    try:
        return np.asarray(value, dtype=dtype)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{op}: cannot read {name} as an array of numbers ({exc})") from None


def _where(op: str | None) -> str:
    return f"{op}: " if op else ""


def check_int(value: Any, name: str, op: str | None = None, minimum: int | None = None) -> int:
    """``value`` as an int, refusing bools, floats and strings (TypeError) and values below
    ``minimum`` (ValueError); the message names ``op``, the argument and the value."""
    if isinstance(value, bool | np.bool_) or not isinstance(value, int | np.integer):
        raise TypeError(
            f"{_where(op)}{name} must be an int, got {value!r} ({type(value).__name__})"
        )
    if minimum is not None and value < minimum:
        raise ValueError(f"{_where(op)}{name} must be >= {minimum}, got {int(value)}")
    return int(value)


def check_real(
    value: Any,
    name: str,
    op: str | None = None,
    minimum: float | None = None,
    maximum: float | None = None,
) -> float:
    """``value`` as a finite float in ``[minimum, maximum]`` (bools and strings refused)."""
    if isinstance(value, bool | np.bool_) or not isinstance(value, int | float | np.number):
        raise TypeError(
            f"{_where(op)}{name} must be a number, got {value!r} ({type(value).__name__})"
        )
    if isinstance(value, complex | np.complexfloating):
        raise TypeError(f"{_where(op)}{name} must be a real number, got {value!r}")
    v = float(value)
    if not np.isfinite(v):
        raise ValueError(f"{_where(op)}{name} must be finite, got {v}")
    if minimum is not None and v < minimum:
        raise ValueError(f"{_where(op)}{name} must be >= {minimum}, got {v}")
    if maximum is not None and v > maximum:
        raise ValueError(f"{_where(op)}{name} must be <= {maximum}, got {v}")
    return v


def pair(
    value: int | tuple[int, int] | list[int],
    name: str,
    minimum: int | None = None,
    op: str | None = None,
) -> tuple[int, int]:
    """``3 -> (3, 3)``; checks that a pair really is two ints (not bools) >= ``minimum``."""
    if isinstance(value, tuple | list):
        if len(value) != 2:
            raise TypeError(
                f"{_where(op)}{name} must be an int or a pair of ints, got {value!r} "
                f"({len(value)} values)"
            )
        items = tuple(value)
    else:
        items = (value, value)
    try:
        a, b = (check_int(v, name, op) for v in items)
    except TypeError:
        raise TypeError(
            f"{_where(op)}{name} must be an int or a pair of ints, got {value!r}"
        ) from None
    if minimum is not None and min(a, b) < minimum:
        raise ValueError(f"{_where(op)}{name} must be >= {minimum}, got {value!r}")
    return a, b


def check_dim(
    dim: Any, ndim: int, name: str = "dim", op: str | None = None, *, insert: bool = False
) -> int:
    """A dimension index made non-negative; out of range is an error, never a silent wrap
    (PyTorch's rule: ``-ndim <= dim < ndim``; a 0-d tensor accepts 0 and -1).

    ``insert=True`` counts the ``ndim + 1`` places where a new axis can go (unsqueeze,
    stack): ``-ndim - 1 <= dim <= ndim``.
    """
    d = check_int(dim, name, op)
    n = ndim + 1 if insert else max(ndim, 1)
    if not -n <= d < n:
        raise ValueError(
            f"{_where(op)}{name} {d} is out of range for a tensor of {ndim} dimension(s) "
            f"(expected {-n} to {n - 1})"
        )
    return d % n


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


def _type_name(x: Any) -> str:
    """The type of ``x`` for a message; another library's ``Tensor`` says whose
    (``torch.Tensor``): "must be a Tensor, got Tensor" reads as nonsense."""
    t = type(x)
    return f"{t.__module__.split('.')[0]}.Tensor" if t.__name__ == "Tensor" else t.__name__


def check_tensor(x: Any, op: str, name: str = "input") -> None:
    """Ops take Tensors (wrap arrays with ``mr.tensor``): a TypeError naming what came."""
    if not isinstance(x, Tensor):
        raise TypeError(
            f"{op}: {name} must be a Tensor, got {_type_name(x)} (wrap arrays with mr.tensor)"
        )


def check_float(x: Tensor, op: str, name: str = "input") -> None:
    """Ops on real values refuse integer/bool tensors with a clear message."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{op}: {name} must be a Tensor, got {_type_name(x)}")
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


def one_thread_gemm() -> contextlib.AbstractContextManager:
    """Context for the matrix products of the ops (linear, matmul): BLAS on one thread.

    Why: a threaded OpenBLAS GEMM splits its work by the thread count, so its last bits
    depend on it (a 256x2048 @ 2048x1000 product differed between 1 and 2 threads), and
    "resume bit for bit" must not depend on the machine's cores. It is also faster here:
    the products in these models are small (the fc layer), and OpenBLAS's threads
    spin-wait after every threaded call - in a ResNeXt-50 fwd+bwd at batch 2 the
    2x2048x1000 fc took 40 ms per pass instead of ~1 ms and slowed the conv kernels that
    followed. Needs threadpoolctl (a dependency); a no-op without it.
    """
    return blas_one_thread()


# -- dimension arguments ---------------------------------------------------------------


def resolve_dim_alias(op: str, dim: Any, axis: Any, default: Any = None) -> Any:
    """PyTorch's ``dim`` and NumPy's ``axis`` name the same argument: take whichever is
    given and refuse both (they could disagree)."""
    if dim is not None and axis is not None:
        raise TypeError(f"{op}: give dim or axis, not both (got dim={dim!r}, axis={axis!r})")
    return default if dim is None and axis is None else (dim if axis is None else axis)
