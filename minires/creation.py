"""Tensor factories with PyTorch's names and signatures: ``mr.zeros(2, 3)``,
``mr.ones((2, 3), dtype="float64")``, ``mr.randn(4, 5, requires_grad=True)``,
``mr.arange(10)``, ``mr.zeros_like(x)``.

The default dtype is float32 (as everywhere in minires). `arange` follows torch: all-int
arguments give an int64 tensor, any float argument a float32 one. `randn` and `rand` draw
from minires' generator, so ``mr.manual_seed`` makes them reproducible.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np

from minires.device import check_device, resolve_dtype
from minires.random import get_rng
from minires.tensor import Tensor


def _shape(op: str, size: tuple) -> tuple[int, ...]:
    """``(2, 3)`` from ``zeros(2, 3)``, ``zeros((2, 3))`` or ``zeros([2, 3])``."""
    if len(size) == 1 and isinstance(size[0], tuple | list):
        size = tuple(size[0])
    for s in size:
        if isinstance(s, bool) or not isinstance(s, int | np.integer):
            raise TypeError(f"{op}: sizes must be ints, got {size!r}")
        if s < 0:
            raise ValueError(f"{op}: sizes must be >= 0, got {size!r}")
    return tuple(int(s) for s in size)


def _make(op: str, arr: np.ndarray, requires_grad: bool, device: Any) -> Tensor:
    check_device(device, op)
    return Tensor(arr, requires_grad=requires_grad)


def zeros(*size: Any, dtype: Any = None, requires_grad: bool = False, device: Any = None):
    """A tensor of zeros of shape ``size`` (float32 unless ``dtype`` says otherwise)."""
    dt = resolve_dtype(np.float32 if dtype is None else dtype, "zeros")
    return _make("zeros", np.zeros(_shape("zeros", size), dt), requires_grad, device)


def ones(*size: Any, dtype: Any = None, requires_grad: bool = False, device: Any = None):
    """A tensor of ones of shape ``size`` (float32 unless ``dtype`` says otherwise)."""
    dt = resolve_dtype(np.float32 if dtype is None else dtype, "ones")
    return _make("ones", np.ones(_shape("ones", size), dt), requires_grad, device)


def full(
    size: Any, fill_value: float, *, dtype: Any = None, requires_grad: bool = False, device=None
) -> Tensor:
    """A tensor of shape ``size`` filled with ``fill_value`` (float32 by default)."""
    if isinstance(fill_value, Tensor) and fill_value.size == 1:
        fill_value = fill_value.item()
    if not isinstance(fill_value, int | float | bool | np.number | np.bool_):
        raise TypeError(f"full: fill_value must be a number, got {fill_value!r}")
    size = size if isinstance(size, tuple | list) else (size,)
    dt = resolve_dtype(np.float32 if dtype is None else dtype, "full")
    return _make(
        "full", np.full(_shape("full", tuple(size)), fill_value, dt), requires_grad, device
    )


def zeros_like(t: Tensor, *, dtype: Any = None, requires_grad: bool = False) -> Tensor:
    """Zeros with ``t``'s shape and dtype (or ``dtype``)."""
    if not isinstance(t, Tensor | np.ndarray):
        raise TypeError(f"zeros_like: expected a Tensor, got {type(t).__name__}")
    dt = t.dtype if dtype is None else resolve_dtype(dtype, "zeros_like")
    return Tensor(np.zeros(np.shape(t), dt), requires_grad=requires_grad)


def ones_like(t: Tensor, *, dtype: Any = None, requires_grad: bool = False) -> Tensor:
    """Ones with ``t``'s shape and dtype (or ``dtype``)."""
    if not isinstance(t, Tensor | np.ndarray):
        raise TypeError(f"ones_like: expected a Tensor, got {type(t).__name__}")
    dt = t.dtype if dtype is None else resolve_dtype(dtype, "ones_like")
    return Tensor(np.ones(np.shape(t), dt), requires_grad=requires_grad)


def randn(*size: Any, dtype: Any = None, requires_grad: bool = False, device: Any = None):
    """Standard normal samples of shape ``size`` from minires' generator (float32 default)."""
    dt = resolve_dtype(np.float32 if dtype is None else dtype, "randn", float_only=True)
    arr = get_rng().standard_normal(_shape("randn", size), dtype=dt)
    return _make("randn", arr, requires_grad, device)


def rand(*size: Any, dtype: Any = None, requires_grad: bool = False, device: Any = None):
    """Uniform samples in [0, 1) of shape ``size`` from minires' generator."""
    dt = resolve_dtype(np.float32 if dtype is None else dtype, "rand", float_only=True)
    arr = get_rng().random(_shape("rand", size), dtype=dt)
    return _make("rand", arr, requires_grad, device)


def arange(
    start: float,
    end: float | None = None,
    step: float = 1,
    *,
    dtype: Any = None,
    requires_grad: bool = False,
    device: Any = None,
) -> Tensor:
    """Values ``start, start + step, ...`` below ``end`` (``arange(n)`` is 0..n-1).

    Like torch: int64 when start, end and step are all ints, else float32 (unless
    ``dtype`` says otherwise); a zero step, or a step pointing away from ``end``, is an
    error rather than an empty result."""
    if end is None:
        start, end = 0, start
    for name, v in (("start", start), ("end", end), ("step", step)):
        if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(v):
            raise TypeError(f"arange: {name} must be a finite number, got {v!r}")
    if step == 0:
        raise ValueError("arange: step must be nonzero")
    if (end - start) * step < 0:
        raise ValueError(
            f"arange: upper bound and lower bound inconsistent with step sign "
            f"(start={start}, end={end}, step={step})"
        )
    all_int = all(isinstance(v, int | np.integer) for v in (start, end, step))
    if dtype is None:
        dtype = np.int64 if all_int else np.float32
    dt = resolve_dtype(dtype, "arange")
    # torch's length rule, computed in float64: ceil((end - start) / step)
    n = math.ceil((end - start) / step)
    arr = (start + np.arange(n, dtype=np.float64 if not all_int else np.int64) * step).astype(dt)
    return _make("arange", arr, requires_grad, device)


def from_numpy(array: np.ndarray) -> Tensor:
    """A tensor sharing ``array``'s memory (as ``torch.from_numpy``): float32, float64,
    integer and bool arrays; other dtypes are refused (a float16 array would need a copy)."""
    if not isinstance(array, np.ndarray):
        raise TypeError(f"from_numpy: expected an ndarray, got {type(array).__name__}")
    t = Tensor(array)
    if t.data is not array and not np.shares_memory(t.data, array):
        order = "" if array.dtype.isnative else " (non-native byte order)"
        raise TypeError(
            f"from_numpy: an array of dtype {array.dtype}{order} cannot be shared; use "
            "mr.tensor(array) for a converted copy"
        )
    return t
