"""Reductions: sum, mean, max, min, prod (and the non-differentiable argmax, argmin), and
the running sum cumsum. Their backward spreads the gradient back over the reduced axes
(max/min: to the position of the extremum, split evenly between ties).

Every reduction takes PyTorch's ``dim``/``keepdim`` as well as NumPy's ``axis``/``keepdims``
(giving both spellings of one argument is an error).

``max(dim=d)`` returns the values only, like NumPy's ``max`` and torch's ``amax`` (torch's
``Tensor.max(dim=d)`` returns ``(values, indices)``): use ``argmax(dim=d)`` for indices."""

from __future__ import annotations

from typing import Any

import numpy as np

from minires.autograd import Context, Function
from minires.device import resolve_dtype
from minires.functional._util import check_dim, check_tensor, resolve_dim_alias
from minires.functional.elementwise import cast
from minires.tensor import Tensor

Axis = int | tuple[int, ...] | None


def _normalize_axis(axis: Axis, ndim: int, op: str = "reduce") -> tuple[int, ...]:
    if axis is None:
        return tuple(range(ndim))
    if not isinstance(axis, int | np.integer | tuple | list) or isinstance(axis, bool):
        raise TypeError(f"{op}: dim must be an int, a tuple of ints or None, got {axis!r}")
    axes = (axis,) if isinstance(axis, int | np.integer) else tuple(axis)
    out = tuple(check_dim(a, ndim, "dim", op) for a in axes)
    if len(set(out)) != len(out):
        raise ValueError(f"{op}: dim {axis} names a dimension twice")
    return out if ndim else ()  # a 0-d tensor: dim 0 / -1 is the tensor itself, as in torch


def _expand(g: np.ndarray, shape: tuple[int, ...], axes: tuple[int, ...], keepdims: bool):
    """Re-insert the reduced axes (as size 1) so ``g`` broadcasts against the input."""
    if not keepdims:
        g = np.expand_dims(g, axes) if axes else g
    return g


class Sum(Function):
    """out = a.sum(axis)"""

    @staticmethod
    def forward(ctx: Context, a: np.ndarray, axis: Axis = None, keepdims: bool = False):
        ctx.shape, ctx.axes = a.shape, _normalize_axis(axis, a.ndim, "sum")
        ctx.keepdims = keepdims
        return np.asarray(a.sum(axis=ctx.axes, keepdims=keepdims))

    @staticmethod
    def backward(ctx: Context, g: np.ndarray):
        g = _expand(g, ctx.shape, ctx.axes, ctx.keepdims)
        return np.broadcast_to(g, ctx.shape).copy(), None, None


class Mean(Function):
    """out = a.mean(axis)"""

    @staticmethod
    def forward(ctx: Context, a: np.ndarray, axis: Axis = None, keepdims: bool = False):
        ctx.shape, ctx.axes = a.shape, _normalize_axis(axis, a.ndim, "mean")
        ctx.keepdims = keepdims
        ctx.count = int(np.prod([a.shape[i] for i in ctx.axes])) if ctx.axes else 1
        return np.asarray(a.mean(axis=ctx.axes, keepdims=keepdims))

    @staticmethod
    def backward(ctx: Context, g: np.ndarray):
        g = _expand(g, ctx.shape, ctx.axes, ctx.keepdims) / ctx.count
        return np.broadcast_to(g, ctx.shape).astype(g.dtype, copy=True), None, None


class Max(Function):
    """out = a.max(axis); ties share the gradient equally (a subgradient, as in PyTorch's
    full reduction and ``amax``)."""

    reduce = staticmethod(np.max)

    @classmethod
    def forward(cls, ctx: Context, a: np.ndarray, axis: Axis = None, keepdims: bool = False):
        name = cls.__name__.lower()
        axes = _normalize_axis(axis, a.ndim, name)
        if a.size == 0 and (a.ndim == 0 or any(a.shape[i] == 0 for i in axes)):
            raise ValueError(f"{name}() over an empty dimension of a tensor of shape {a.shape}")
        out = cls.reduce(a, axis=axes, keepdims=True)
        mask = a == out
        if axis is None:  # as torch.max(x): a NaN maximum shares the gradient among the NaNs
            mask |= np.isnan(a) & np.isnan(out)
        ctx.save_for_backward(mask / mask.sum(axis=axes, keepdims=True))
        ctx.axes, ctx.keepdims, ctx.shape = axes, keepdims, a.shape
        ctx.full = axis is None
        return out if keepdims else np.squeeze(out, axis=axes)

    @staticmethod
    def backward(ctx: Context, g: np.ndarray):
        (share,) = ctx.saved_tensors
        g = _expand(g, ctx.shape, ctx.axes, ctx.keepdims)
        if ctx.full:  # torch.max(x) writes exact zeros off the maximum (even for inf g)
            return np.where(share > 0, share * g, 0).astype(g.dtype, copy=False), None, None
        return (share * g).astype(g.dtype, copy=False), None, None


class Min(Max):
    """out = a.min(axis); the same backward as `Max` (gradient to the minimum, ties share)."""

    reduce = staticmethod(np.min)


def _reduce_args(
    a: Tensor, op: str, axis: Axis, keepdims: bool | None, dim: Axis, keepdim: bool | None
):
    """(axis, keepdims) from either spelling: NumPy's axis/keepdims or torch's dim/keepdim."""
    check_tensor(a, op)
    axis = resolve_dim_alias(op, dim, axis)
    if keepdims is not None and keepdim is not None:
        raise TypeError(f"{op}: give keepdim or keepdims, not both")
    keep = keepdim if keepdims is None else keepdims
    if keep is not None and not isinstance(keep, bool | np.bool_):  # "no" is truthy
        raise TypeError(f"{op}: keepdim must be a bool, got {keep!r} ({type(keep).__name__})")
    return axis, bool(keep)


def sum(  # noqa: A001
    a: Tensor,
    axis: Axis = None,
    keepdims: bool | None = None,
    *,
    dim: Axis = None,
    keepdim: bool | None = None,
    dtype: Any = None,
) -> Tensor:
    """Sum over ``axis`` (or ``dim``; all axes if None). Reduced axes are dropped unless
    ``keepdims`` (or ``keepdim``) is true. ``dtype``: cast ``a`` to it first, as torch
    (``x32.sum(dtype=mr.float64)`` accumulates in float64; the gradient comes back as
    float32)."""
    axis, keepdims = _reduce_args(a, "sum", axis, keepdims, dim, keepdim)
    return Sum.apply(_as_dtype(a, dtype, "sum"), axis, keepdims)


def mean(
    a: Tensor,
    axis: Axis = None,
    keepdims: bool | None = None,
    *,
    dim: Axis = None,
    keepdim: bool | None = None,
    dtype: Any = None,
) -> Tensor:
    """Mean over ``axis`` (or ``dim``; all axes if None). ``dtype`` (a float dtype, as
    torch): cast ``a`` to it first, e.g. ``mask.mean(dtype=mr.float32)``."""
    axis, keepdims = _reduce_args(a, "mean", axis, keepdims, dim, keepdim)
    if dtype is not None:
        dtype = resolve_dtype(dtype, "mean")
        if dtype.kind != "f":
            raise TypeError(f"mean: dtype must be float32 or float64 (as torch), got {dtype}")
    return Mean.apply(_as_dtype(a, dtype, "mean"), axis, keepdims)


def _as_dtype(a: Tensor, dtype: Any, op: str) -> Tensor:
    """``a`` cast to a reduction's ``dtype=`` argument (differentiable between floats)."""
    return a if dtype is None else cast(a, resolve_dtype(dtype, op))


def max(  # noqa: A001
    a: Tensor,
    axis: Axis = None,
    keepdims: bool | None = None,
    *,
    dim: Axis = None,
    keepdim: bool | None = None,
) -> Tensor:
    """Maximum over ``axis`` (or ``dim``; all axes if None: a 0-d tensor). Values only,
    like torch's ``amax``; the indices are `argmax`."""
    axis, keepdims = _reduce_args(a, "max", axis, keepdims, dim, keepdim)
    return Max.apply(a, axis, keepdims)


def min(  # noqa: A001
    a: Tensor,
    axis: Axis = None,
    keepdims: bool | None = None,
    *,
    dim: Axis = None,
    keepdim: bool | None = None,
) -> Tensor:
    """Minimum over ``axis`` (or ``dim``; all axes if None). Values only, like ``amin``."""
    axis, keepdims = _reduce_args(a, "min", axis, keepdims, dim, keepdim)
    return Min.apply(a, axis, keepdims)


def _arg_extremum(op: str, find, a: Tensor, axis, keepdims, dim, keepdim) -> Tensor:
    axis, keepdims = _reduce_args(a, op, axis, keepdims, dim, keepdim)
    if isinstance(axis, bool) or (axis is not None and not isinstance(axis, int | np.integer)):
        raise TypeError(f"{op}: dim must be one int or None, got {axis!r}")
    if axis is not None:
        axis = check_dim(axis, a.ndim, "dim", op)
        if a.ndim == 0:
            axis = None
    if a.size == 0 and (axis is None or a.shape[axis] == 0):
        raise ValueError(f"{op}() over an empty dimension of a tensor of shape {a.shape}")
    out = find(a.data, axis=axis, keepdims=keepdims)
    return Tensor._wrap(np.asarray(out, dtype=np.int64))


def argmax(
    a: Tensor,
    axis: int | None = None,
    keepdims: bool | None = None,
    *,
    dim: int | None = None,
    keepdim: bool | None = None,
) -> Tensor:
    """int64 index of the maximum along ``dim`` (of the flattened tensor if None); the
    first one on ties, like torch and NumPy. Not differentiable."""
    return _arg_extremum("argmax", np.argmax, a, axis, keepdims, dim, keepdim)


def argmin(
    a: Tensor,
    axis: int | None = None,
    keepdims: bool | None = None,
    *,
    dim: int | None = None,
    keepdim: bool | None = None,
) -> Tensor:
    """int64 index of the minimum along ``dim`` (of the flattened tensor if None)."""
    return _arg_extremum("argmin", np.argmin, a, axis, keepdims, dim, keepdim)


class StdOfVar(Function):
    """out = sqrt(var) for a variance; the gradient g / (2 out) is 0 where out == 0 (a
    constant input), as torch's std, where sqrt's would be inf * 0 = NaN."""

    @staticmethod
    def forward(ctx: Context, var: np.ndarray) -> np.ndarray:
        out = np.sqrt(var)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx: Context, g: np.ndarray):
        (out,) = ctx.saved_tensors
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(out == 0, g.dtype.type(0), g / (2 * out))


def std_of_var(var: Tensor) -> Tensor:
    """The standard deviation from a variance (`Tensor.std`): sqrt with a 0 gradient at 0."""
    check_tensor(var, "std")
    return StdOfVar.apply(var)


# -- prod and cumsum -----------------------------------------------------------------------


class LogSumExp(Function):
    """out = log(sum(exp(a))) over ``axis``, computed as m + log(sum(exp(a - m))) with m
    the (finite) maximum, so large values do not overflow; the gradient is g * exp(a -
    out), the softmax."""

    @staticmethod
    def forward(ctx: Context, a: np.ndarray, axis: int, keepdims: bool) -> np.ndarray:
        m = (
            np.max(a, axis=axis, keepdims=True)
            if a.size
            else np.zeros_like(a.sum(axis, keepdims=True))
        )
        m = np.where(np.isfinite(m), m, 0).astype(a.dtype)  # an all-(-inf) or inf slice
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            out = np.log(np.sum(np.exp(a - m), axis=axis, keepdims=True)) + m
        ctx.save_for_backward(a, out)
        ctx.axis, ctx.keepdims = axis, keepdims
        return out if keepdims else np.squeeze(out, axis)

    @staticmethod
    def backward(ctx: Context, g: np.ndarray):
        a, out = ctx.saved_tensors
        if not ctx.keepdims:
            g = np.expand_dims(g, ctx.axis)
        with np.errstate(invalid="ignore", over="ignore"):
            return g * np.exp(a - out), None, None


def logsumexp(input: Tensor, dim: Any, keepdim: bool = False) -> Tensor:  # noqa: A002
    """log(sum(exp(input))) along ``dim`` without overflow, as ``torch.logsumexp``
    (``dim`` required; -inf for an empty or all -inf slice); differentiable (the
    gradient is the softmax along ``dim``)."""
    check_tensor(input, "logsumexp")
    if input.dtype.kind != "f":
        raise TypeError(f"logsumexp: needs a floating-point tensor, got {input.dtype}")
    if not isinstance(keepdim, bool | np.bool_):
        raise TypeError(f"logsumexp: keepdim must be a bool, got {keepdim!r}")
    d = check_dim(dim, input.ndim, "dim", "logsumexp")
    if input.ndim == 0:
        return LogSumExp.apply(input.reshape(1), 0, False).reshape(())
    return LogSumExp.apply(input, d, bool(keepdim))


def _integer_result(a: np.ndarray) -> Any:
    """The accumulator dtype of prod / cumsum: int64 for bool and integer input (torch's
    rule; NumPy would keep uint64 for unsigned input), the input's float dtype otherwise."""
    return np.int64 if a.dtype.kind in "biu" else None


def _product_of_others(a: np.ndarray, axis: int) -> np.ndarray:
    """For each element, the product of the other elements along ``axis``, from exclusive
    cumulative products taken from both ends - no division, so zeros are exact (torch's
    ``prod_safe_zeros_backward``)."""
    n = a.shape[axis]
    if n == 1:
        return np.ones_like(a)
    ones = np.ones_like(np.take(a, [0], axis=axis))
    before = np.concatenate([ones, np.take(a, range(n - 1), axis=axis)], axis)
    after = np.concatenate([ones, np.flip(np.take(a, range(1, n), axis=axis), axis)], axis)
    return np.cumprod(before, axis) * np.flip(np.cumprod(after, axis), axis)


class Prod(Function):
    """out = the product of ``a`` over ``axis`` (one int, or None for all).

    The gradient is torch's: ``g * (out / a)`` when ``a`` holds no zero; otherwise, per
    element, g times the product of the other elements of its slice (so a lone zero gets
    the product of the rest and every other element 0; two zeros give 0 everywhere)."""

    @staticmethod
    def forward(ctx: Context, a: np.ndarray, axis: int | None, keepdims: bool) -> np.ndarray:
        ctx.axis, ctx.keepdims = axis, keepdims
        out = np.asarray(np.prod(a, axis=axis, keepdims=keepdims, dtype=_integer_result(a)))
        ctx.save_for_backward(a, out)
        return out

    @staticmethod
    def backward(ctx: Context, g: np.ndarray):
        a, out = ctx.saved_tensors
        if a.ndim == 0:
            return g, None, None
        axes = tuple(range(a.ndim)) if ctx.axis is None else (ctx.axis,)
        g = _expand(g, a.shape, axes, ctx.keepdims)
        if a.size == 0:
            return np.broadcast_to(g, a.shape).copy(), None, None
        zeros = np.count_nonzero(a == 0)
        if zeros == 0:
            out = _expand(out, a.shape, axes, ctx.keepdims)
            with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
                return g * (out / a), None, None
        if ctx.axis is None:
            if zeros > 1:  # torch's shortcut: every product of the others holds a zero
                return np.zeros(a.shape, g.dtype), None, None
            others = _product_of_others(a.reshape(-1), 0).reshape(a.shape)
        else:  # torch decides on zeros in the whole tensor, then works per slice
            others = _product_of_others(a, ctx.axis)
        with np.errstate(invalid="ignore", over="ignore"):
            return g * others, None, None


def prod(
    a: Tensor,
    dim: int | None = None,
    keepdim: bool | None = None,
    *,
    dtype: Any = None,
    axis: int | None = None,
    keepdims: bool | None = None,
) -> Tensor:
    """Product over one dimension ``dim`` (or NumPy's ``axis``), or of every element if
    None (a 0-d tensor), as ``torch.prod``; ``keepdim`` keeps it as size 1. Bool and
    integer input give int64; ``dtype`` casts ``a`` first. Differentiable, zeros
    included (see `Prod`). (N, ..., K, ...) -> (N, ..., ...) for ``dim`` at K."""
    axis, keepdims = _reduce_args(a, "prod", axis, keepdims, dim, keepdim)
    if axis is not None:
        if isinstance(axis, bool) or not isinstance(axis, int | np.integer):
            raise TypeError(f"prod: dim must be one int or None (as torch), got {axis!r}")
        axis = None if a.ndim == 0 else check_dim(axis, a.ndim, "dim", "prod")
    return Prod.apply(_as_dtype(a, dtype, "prod"), axis, keepdims)


class CumSum(Function):
    """out[..., i, ...] = sum of a[..., :i + 1, ...] along ``axis``; the gradient is the
    running sum of g taken from the other end (torch's ``reversed_cumsum``)."""

    @staticmethod
    def forward(ctx: Context, a: np.ndarray, axis: int) -> np.ndarray:
        ctx.axis = axis
        if a.ndim == 0:  # a 0-d tensor is its own running sum (dim 0 or -1, as torch)
            return a.astype(_integer_result(a) or a.dtype)
        return np.cumsum(a, axis=axis, dtype=_integer_result(a))

    @staticmethod
    def backward(ctx: Context, g: np.ndarray):
        if g.ndim == 0 or g.shape[ctx.axis] <= 1:
            return g, None
        return np.flip(np.cumsum(np.flip(g, ctx.axis), axis=ctx.axis), ctx.axis), None


def cumsum(a: Tensor, dim: int | None = None, *, dtype: Any = None, axis: Any = None) -> Tensor:
    """Running sum along ``dim`` (required, as torch; or NumPy's ``axis``): same shape as
    ``a``. Bool and integer input give int64; ``dtype`` casts ``a`` first.
    Differentiable."""
    check_tensor(a, "cumsum")
    d = resolve_dim_alias("cumsum", dim, axis)
    if d is None:
        raise TypeError("cumsum: dim is required (as torch), e.g. x.cumsum(0)")
    d = check_dim(d, a.ndim, "dim", "cumsum")
    return CumSum.apply(_as_dtype(a, dtype, "cumsum"), d)
