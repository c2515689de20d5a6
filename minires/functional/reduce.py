"""Reductions: sum, mean, max. Their backward spreads the gradient back over the
reduced axes (max: to the position of the maximum, split evenly between ties)."""

from __future__ import annotations

import builtins

import numpy as np

from minires.autograd import Context, Function
from minires.tensor import Tensor

Axis = int | tuple[int, ...] | None


def _normalize_axis(axis: Axis, ndim: int) -> tuple[int, ...]:
    if axis is None:
        return tuple(range(ndim))
    axes = (axis,) if isinstance(axis, int | np.integer) else tuple(axis)
    out = []
    for a in axes:
        if not -ndim <= a < builtins.max(ndim, 1):
            raise ValueError(f"axis {a} is out of range for a tensor of {ndim} dimensions")
        out.append(int(a) % builtins.max(ndim, 1))
    return tuple(out)


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


def sum(a: Tensor, axis: Axis = None, keepdims: bool = False) -> Tensor:  # noqa: A001
    """Sum over ``axis`` (all axes if None)."""
    return Sum.apply(a, axis, keepdims)


def mean(a: Tensor, axis: Axis = None, keepdims: bool = False) -> Tensor:
    """Mean over ``axis`` (all axes if None)."""
    return Mean.apply(a, axis, keepdims)


def max(a: Tensor, axis: Axis = None, keepdims: bool = False) -> Tensor:  # noqa: A001
    """Maximum over ``axis`` (all axes if None)."""
    return Max.apply(a, axis, keepdims)
