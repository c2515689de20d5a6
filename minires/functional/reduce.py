"""Reductions: sum, mean, max. Their backward spreads the gradient back over the
reduced axes (max: to the position of the maximum, split evenly between ties)."""

from __future__ import annotations

import numpy as np

from minires.autograd import Context, Function
from minires.functional._util import check_dim, check_tensor
from minires.tensor import Tensor

Axis = int | tuple[int, ...] | None


def _normalize_axis(axis: Axis, ndim: int) -> tuple[int, ...]:
    if axis is None:
        return tuple(range(ndim))
    if not isinstance(axis, int | np.integer | tuple | list) or isinstance(axis, bool):
        raise TypeError(f"axis must be an int, a tuple of ints or None, got {axis!r}")
    axes = (axis,) if isinstance(axis, int | np.integer) else tuple(axis)
    out = tuple(check_dim(a, ndim, "axis") for a in axes)
    if len(set(out)) != len(out):
        raise ValueError(f"axis {axis} repeats an axis")
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
        ctx.shape, ctx.axes, ctx.keepdims = a.shape, _normalize_axis(axis, a.ndim), keepdims
        return np.asarray(a.sum(axis=ctx.axes, keepdims=keepdims))

    @staticmethod
    def backward(ctx: Context, g: np.ndarray):
        g = _expand(g, ctx.shape, ctx.axes, ctx.keepdims)
        return np.broadcast_to(g, ctx.shape).copy(), None, None


class Mean(Function):
    """out = a.mean(axis)"""

    @staticmethod
    def forward(ctx: Context, a: np.ndarray, axis: Axis = None, keepdims: bool = False):
        ctx.shape, ctx.axes, ctx.keepdims = a.shape, _normalize_axis(axis, a.ndim), keepdims
        ctx.count = int(np.prod([a.shape[i] for i in ctx.axes])) if ctx.axes else 1
        return np.asarray(a.mean(axis=ctx.axes, keepdims=keepdims))

    @staticmethod
    def backward(ctx: Context, g: np.ndarray):
        g = _expand(g, ctx.shape, ctx.axes, ctx.keepdims) / ctx.count
        return np.broadcast_to(g, ctx.shape).astype(g.dtype, copy=True), None, None


class Max(Function):
    """out = a.max(axis); ties share the gradient equally (a subgradient, as in PyTorch's
    full reduction)."""

    @staticmethod
    def forward(ctx: Context, a: np.ndarray, axis: Axis = None, keepdims: bool = False):
        axes = _normalize_axis(axis, a.ndim)
        if a.size == 0:
            raise ValueError("max() of an empty tensor")
        out = a.max(axis=axes, keepdims=True)
        mask = a == out
        ctx.save_for_backward(mask / mask.sum(axis=axes, keepdims=True))
        ctx.axes, ctx.keepdims, ctx.shape = axes, keepdims, a.shape
        return out if keepdims else np.squeeze(out, axis=axes)

    @staticmethod
    def backward(ctx: Context, g: np.ndarray):
        (share,) = ctx.saved_tensors
        g = _expand(g, ctx.shape, ctx.axes, ctx.keepdims)
        return (share * g).astype(g.dtype, copy=False), None, None


def sum(a: Tensor, axis: Axis = None, keepdims: bool = False) -> Tensor:  # noqa: A001
    """Sum over ``axis`` (all axes if None)."""
    check_tensor(a, "sum")
    return Sum.apply(a, axis, keepdims)


def mean(a: Tensor, axis: Axis = None, keepdims: bool = False) -> Tensor:
    """Mean over ``axis`` (all axes if None)."""
    check_tensor(a, "mean")
    return Mean.apply(a, axis, keepdims)


def max(a: Tensor, axis: Axis = None, keepdims: bool = False) -> Tensor:  # noqa: A001
    """Maximum over ``axis`` (all axes if None)."""
    check_tensor(a, "max")
    return Max.apply(a, axis, keepdims)
