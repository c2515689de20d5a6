"""Tensor factories with PyTorch's names and signatures: ``mr.zeros(2, 3)``,
``mr.ones((2, 3), dtype="float64")``, ``mr.randn(4, 5, requires_grad=True)``,
``mr.arange(10)``, ``mr.linspace(0, 1, 5)``, ``mr.eye(3)``, ``mr.zeros_like(x)``.
(torch's other module-level functions, ``mr.exp(x)``, ``mr.max(x, dim)``, ...: functions.py.)

The default dtype is float32 (as everywhere in minires). `arange` follows torch: all-int
arguments give an int64 tensor, any float argument a float32 one; `randint` and `randperm`
give int64. The random factories (`rand`, `randn`, `randint`, `randperm`, `rand_like`,
`randn_like`, `normal`) draw from minires' generator, so ``mr.manual_seed`` makes them
reproducible (the numbers differ from torch's for the same seed).
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np

from minires.device import check_device, resolve_dtype
from minires.functional._util import check_int
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


def _number(op: str, name: str, value: Any) -> float | int | bool:
    """A Python number from a number or a one-element Tensor (torch accepts both)."""
    if isinstance(value, Tensor) and value.size == 1:
        value = value.item()
    if not isinstance(value, int | float | bool | np.number | np.bool_) or isinstance(
        value, complex | np.complexfloating
    ):
        raise TypeError(f"{op}: {name} must be a real number, got {value!r}")
    return value


def zeros(*size: Any, dtype: Any = None, requires_grad: bool = False, device: Any = None):
    """A tensor of zeros of shape ``size`` (float32 unless ``dtype`` says otherwise)."""
    dt = resolve_dtype(np.float32 if dtype is None else dtype, "zeros")
    return _make("zeros", np.zeros(_shape("zeros", size), dt), requires_grad, device)


def ones(*size: Any, dtype: Any = None, requires_grad: bool = False, device: Any = None):
    """A tensor of ones of shape ``size`` (float32 unless ``dtype`` says otherwise)."""
    dt = resolve_dtype(np.float32 if dtype is None else dtype, "ones")
    return _make("ones", np.ones(_shape("ones", size), dt), requires_grad, device)


def empty(*size: Any, dtype: Any = None, requires_grad: bool = False, device: Any = None):
    """A tensor of shape ``size`` to be overwritten (float32 by default).

    Filled with zeros, where torch leaves the memory uninitialised: NumPy's zeroed
    allocation costs next to nothing, and a forgotten write then shows as zeros that are
    the same in every run instead of leftover numbers."""
    dt = resolve_dtype(np.float32 if dtype is None else dtype, "empty")
    return _make("empty", np.zeros(_shape("empty", size), dt), requires_grad, device)


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


def _like(op: str, t: Any, dtype: Any, *, float_only: bool = False) -> tuple[tuple, np.dtype]:
    """(shape, dtype) of a ``*_like`` result: ``t``'s, or the ``dtype`` asked for."""
    if not isinstance(t, Tensor | np.ndarray):
        raise TypeError(f"{op}: expected a Tensor, got {type(t).__name__}")
    dt = np.dtype(t.dtype) if dtype is None else resolve_dtype(dtype, op)
    if float_only and dt.kind != "f":
        raise TypeError(
            f"{op}: draws float32 or float64 numbers; the input is {dt} (pass dtype=mr.float32 "
            "or dtype=mr.float64)"
        )
    return tuple(np.shape(t)), dt


def zeros_like(
    t: Tensor, *, dtype: Any = None, requires_grad: bool = False, device: Any = None
) -> Tensor:
    """Zeros with ``t``'s shape and dtype (or ``dtype``)."""
    shape, dt = _like("zeros_like", t, dtype)
    return _make("zeros_like", np.zeros(shape, dt), requires_grad, device)


def ones_like(
    t: Tensor, *, dtype: Any = None, requires_grad: bool = False, device: Any = None
) -> Tensor:
    """Ones with ``t``'s shape and dtype (or ``dtype``)."""
    shape, dt = _like("ones_like", t, dtype)
    return _make("ones_like", np.ones(shape, dt), requires_grad, device)


def empty_like(
    t: Tensor, *, dtype: Any = None, requires_grad: bool = False, device: Any = None
) -> Tensor:
    """A tensor with ``t``'s shape and dtype (or ``dtype``), zero-filled as `empty`."""
    shape, dt = _like("empty_like", t, dtype)
    return _make("empty_like", np.zeros(shape, dt), requires_grad, device)


def full_like(
    t: Tensor,
    fill_value: float,
    *,
    dtype: Any = None,
    requires_grad: bool = False,
    device: Any = None,
) -> Tensor:
    """``fill_value`` everywhere, with ``t``'s shape and dtype (or ``dtype``); a float
    value in an integer tensor is truncated toward zero, as in torch."""
    shape, dt = _like("full_like", t, dtype)
    fill_value = _number("full_like", "fill_value", fill_value)
    return _make("full_like", np.full(shape, fill_value, dt), requires_grad, device)


def eye(
    n: int,
    m: int | None = None,
    *,
    dtype: Any = None,
    requires_grad: bool = False,
    device: Any = None,
) -> Tensor:
    """The (n, m) matrix with ones on the diagonal and zeros elsewhere (m defaults to n;
    float32 unless ``dtype`` says otherwise)."""
    n = check_int(n, "n", "eye", minimum=0)
    m = n if m is None else check_int(m, "m", "eye", minimum=0)
    dt = resolve_dtype(np.float32 if dtype is None else dtype, "eye")
    return _make("eye", np.eye(n, m, dtype=dt), requires_grad, device)


def _spaced(op: str, start: Any, end: Any, steps: Any, dt: np.dtype) -> np.ndarray:
    """``steps`` evenly spaced values from ``start`` to ``end`` in float64, by torch's rule:
    the first half counts up from ``start``, the second half down from ``end``, so both
    ends are exact. For an integer ``dt`` the ends are truncated first, as torch does."""
    start = _number(op, "start", start)
    end = _number(op, "end", end)
    steps = check_int(steps, "steps", op, minimum=0)
    if not (math.isfinite(start) and math.isfinite(end)):
        raise ValueError(f"{op}: start and end must be finite, got start={start}, end={end}")
    if dt.kind in "iub":
        start, end = int(start), int(end)
    if steps == 1:
        return np.array([start], np.float64)
    step = (end - start) / (steps - 1) if steps > 1 else 0.0
    i = np.arange(steps, dtype=np.float64)
    return np.where(i < steps // 2, start + step * i, end - step * (steps - 1 - i))


def linspace(
    start: float,
    end: float,
    steps: int,
    *,
    dtype: Any = None,
    requires_grad: bool = False,
    device: Any = None,
) -> Tensor:
    """``steps`` evenly spaced values from ``start`` to ``end``, both included: shape
    ``(steps,)``, float32 by default. An integer ``dtype`` truncates toward zero, as torch."""
    dt = resolve_dtype(np.float32 if dtype is None else dtype, "linspace")
    values = _spaced("linspace", start, end, steps, dt)
    return _make("linspace", values.astype(dt), requires_grad, device)


def logspace(
    start: float,
    end: float,
    steps: int,
    base: float = 10.0,
    *,
    dtype: Any = None,
    requires_grad: bool = False,
    device: Any = None,
) -> Tensor:
    """``base ** linspace(start, end, steps)``: shape ``(steps,)``, float32 by default."""
    dt = resolve_dtype(np.float32 if dtype is None else dtype, "logspace")
    base = float(_number("logspace", "base", base))
    with np.errstate(over="ignore"):  # overflow gives inf, as in torch
        values = np.power(base, _spaced("logspace", start, end, steps, dt))
    return _make("logspace", values.astype(dt), requires_grad, device)


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


def randn_like(
    t: Tensor, *, dtype: Any = None, requires_grad: bool = False, device: Any = None
) -> Tensor:
    """Standard normal samples with ``t``'s shape and float dtype (or ``dtype``)."""
    shape, dt = _like("randn_like", t, dtype, float_only=True)
    arr = get_rng().standard_normal(shape, dtype=dt)
    return _make("randn_like", arr, requires_grad, device)


def rand_like(
    t: Tensor, *, dtype: Any = None, requires_grad: bool = False, device: Any = None
) -> Tensor:
    """Uniform samples in [0, 1) with ``t``'s shape and float dtype (or ``dtype``)."""
    shape, dt = _like("rand_like", t, dtype, float_only=True)
    return _make("rand_like", get_rng().random(shape, dtype=dt), requires_grad, device)


def _fits(op: str, dt: np.dtype, low: int, high_inclusive: int) -> None:
    """An integer ``dt`` must hold every value that may be drawn (no silent wrap-around)."""
    if dt.kind in "iu":
        info = np.iinfo(dt)
        if low < info.min or high_inclusive > info.max:
            raise ValueError(
                f"{op}: values from {low} to {high_inclusive} do not fit in {dt} "
                f"({info.min} to {info.max})"
            )


def _size_tuple(op: str, size: Any) -> tuple[int, ...]:
    """A ``size`` given as a tuple or list, as torch insists for randint and normal (in
    ``randint(2, 3, 4)`` the 4 could be meant as anything)."""
    if not isinstance(size, tuple | list):
        raise TypeError(f"{op}: size must be a tuple of ints, e.g. (3,), got {size!r}")
    return _shape(op, tuple(size))


def randint(
    low: int = 0,
    high: int | None = None,
    size: Any = None,
    *,
    dtype: Any = None,
    requires_grad: bool = False,
    device: Any = None,
) -> Tensor:
    """Integers drawn uniformly from ``[low, high)``, of shape ``size``: int64 unless
    ``dtype`` says otherwise. Both of torch's forms: ``randint(high, size)`` and
    ``randint(low, high, size)`` (``size`` a tuple, as in torch)."""
    if size is None and isinstance(high, tuple | list):  # randint(high, size)
        low, high, size = 0, low, high
    elif high is None:  # randint(high, size=...)
        low, high = 0, low
    if size is None:
        raise TypeError("randint: size is required, e.g. randint(10, (3,)) or randint(0, 10, (3,))")
    low = check_int(low, "low", "randint")
    high = check_int(high, "high", "randint")
    if low >= high:
        raise ValueError(f"randint: low must be smaller than high, got low={low}, high={high}")
    shape = _size_tuple("randint", size)
    dt = resolve_dtype(np.int64 if dtype is None else dtype, "randint")
    _fits("randint", dt, low, high - 1)
    arr = get_rng().integers(low, high, size=shape, dtype=np.int64).astype(dt)
    return _make("randint", arr, requires_grad, device)


def randperm(
    n: int, *, dtype: Any = None, requires_grad: bool = False, device: Any = None
) -> Tensor:
    """A random permutation of ``0 .. n-1``: shape ``(n,)``, int64 unless ``dtype`` says
    otherwise."""
    n = check_int(n, "n", "randperm", minimum=0)
    dt = resolve_dtype(np.int64 if dtype is None else dtype, "randperm")
    _fits("randperm", dt, 0, n - 1)
    return _make("randperm", get_rng().permutation(n).astype(dt), requires_grad, device)


def normal(
    mean: Any = 0.0,
    std: Any = 1.0,
    size: Any = None,
    *,
    dtype: Any = None,
    requires_grad: bool = False,
    device: Any = None,
) -> Tensor:
    """Normal samples with the given ``mean`` and ``std`` (torch.normal's forms).

    * ``normal(mean, std, size)`` with two numbers: shape ``size``, float32 by default;
    * ``normal(mean_tensor, std)``, ``normal(mean, std_tensor)``, ``normal(mean_tensor,
      std_tensor)``: one sample per element, the shapes broadcast, the tensors' float dtype.

    The result is a sample, not a function of ``mean`` and ``std``: it is not recorded in
    the graph (torch records it with zero gradients)."""
    check_device(device, "normal")
    tensors = [v for v in (mean, std) if isinstance(v, Tensor)]
    if not tensors:
        if size is None:
            raise TypeError("normal: with a number mean and std, size is required")
        mean = float(_number("normal", "mean", mean))
        std = float(_number("normal", "std", std))
        shape = _size_tuple("normal", size)
        dt = resolve_dtype(np.float32 if dtype is None else dtype, "normal", float_only=True)
        stds = np.asarray(std)
    else:
        if size is not None or dtype is not None:
            raise TypeError("normal: size and dtype are taken from the mean/std tensors")
        for t in tensors:
            if t.dtype.kind != "f":
                raise TypeError(f"normal: mean and std tensors must be float, got {t.dtype}")
        dt = np.result_type(*(t.dtype for t in tensors))
        mean, std = (
            v.data if isinstance(v, Tensor) else float(_number("normal", name, v))
            for name, v in (("mean", mean), ("std", std))
        )
        try:
            shape = np.broadcast_shapes(np.shape(mean), np.shape(std))
        except ValueError:
            raise ValueError(
                f"normal: mean of shape {np.shape(mean)} and std of shape {np.shape(std)} "
                "do not broadcast"
            ) from None
        stds = np.asarray(std)
    if np.any(stds < 0):  # NaN passes, as in torch
        raise ValueError(f"normal: std must be >= 0, found {float(np.min(stds))}")
    draws = get_rng().standard_normal(shape, dtype=dt)
    return Tensor((mean + std * draws).astype(dt, copy=False), requires_grad=requires_grad)


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
