"""Matrix products: ``matmul`` (NumPy's rules, batched and 1-D) and ``linear``."""

from __future__ import annotations

import math

import numpy as np

from minires.autograd import Context, Function
from minires.backend import kernels
from minires.functional._util import (
    as_tensor,
    check_float,
    check_same_dtype,
    one_thread_gemm,
    unbroadcast,
)
from minires.tensor import Tensor


class MatMul(Function):
    """out = a @ b, with NumPy's batching and 1-D promotion rules."""

    fresh_gradients = True  # new products (or their batch sums)

    @staticmethod
    def forward(ctx: Context, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        ctx.save_for_backward(ctx.kept_for(a, 1), ctx.kept_for(b, 0))
        with one_thread_gemm():
            return np.matmul(a, b)

    @staticmethod
    def backward(ctx: Context, g: np.ndarray):
        a, b = ctx.saved_tensors
        # Promote 1-D operands to matrices so one formula covers every case:
        # (..., n, k) @ (..., k, m): dA = g @ B^T, dB = A^T @ g, then un-broadcast batches.
        a2 = a[None, :] if a.ndim == 1 else a
        b2 = b[:, None] if b.ndim == 1 else b
        # g gets b's dropped column axis back first, then a's row axis (both 1-D: a 0-d g)
        g2 = np.asarray(g)
        if b.ndim == 1:
            g2 = np.expand_dims(g2, -1)
        if a.ndim == 1:
            g2 = np.expand_dims(g2, -2)
        ga = gb = None
        with one_thread_gemm():
            if ctx.needs_input_grad[0]:
                ga = np.matmul(g2, np.swapaxes(b2, -1, -2))
                ga = unbroadcast(ga, a2.shape).reshape(a.shape)
            if ctx.needs_input_grad[1]:
                gb = np.matmul(np.swapaxes(a2, -1, -2), g2)
                gb = unbroadcast(gb, b2.shape).reshape(b.shape)
        return ga, gb


def matmul(a: Tensor, b: Tensor) -> Tensor:
    """Matrix product with NumPy semantics; a clear error when inner dimensions differ
    or when float32 meets float64 (as in PyTorch)."""
    a, b = as_tensor(a), as_tensor(b)
    if a.dtype.kind == "f" and b.dtype.kind == "f":
        check_same_dtype("matmul", a=a, b=b)
    if a.ndim == 0 or b.ndim == 0:
        raise ValueError(
            f"matmul: operands must be at least 1-D, got shapes {a.shape} and {b.shape}"
        )
    k_a = a.shape[-1]
    k_b = b.shape[0] if b.ndim == 1 else b.shape[-2]
    if k_a != k_b:
        raise ValueError(
            f"matmul: shapes {a.shape} and {b.shape} are not aligned: "
            f"{k_a} (last dim of a) != {k_b} ({'dim 0' if b.ndim == 1 else 'second-to-last dim'}"
            " of b)"
        )
    try:
        np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    except ValueError:
        raise ValueError(
            f"matmul: batch dimensions of {a.shape} and {b.shape} do not broadcast"
        ) from None
    return MatMul.apply(a, b)


class Linear(Function):
    """out = x @ weight^T + bias; x (..., in), weight (out, in), bias (out,)."""

    fresh_gradients = True

    @staticmethod
    def forward(ctx: Context, x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None):
        ctx.save_for_backward(ctx.kept_for(x, 1), ctx.kept_for(weight, 0))
        with one_thread_gemm():
            out = kernels().linear_forward(_rows(x), weight)
        if bias is not None:
            out += bias
        return out.reshape(x.shape[:-1] + (weight.shape[0],))

    @staticmethod
    def backward(ctx: Context, g: np.ndarray):
        x, weight = ctx.saved_tensors
        k = kernels()
        gx = gw = gb = None
        g2 = _rows(g)
        with one_thread_gemm():
            if ctx.needs_input_grad[0]:
                gx = k.linear_backward_input(g2, weight).reshape(x.shape)
            if ctx.needs_input_grad[1]:
                gw = k.linear_backward_weight(g2, _rows(x))
        if ctx.needs_input_grad[2]:
            gb = g2.sum(axis=0)
        return gx, gw, gb


def _rows(a: np.ndarray) -> np.ndarray:
    """(..., F) -> (M, F), M the product of the leading dimensions (1 for a 1-D a)."""
    return a.reshape(math.prod(a.shape[:-1]), a.shape[-1])


def linear(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """Affine map ``x @ weight.T + bias``.

    Shapes: x (..., in_features), weight (out_features, in_features), bias (out_features,)
    -> (..., out_features).
    """
    check_float(x, "linear")
    check_float(weight, "linear", "weight")
    if bias is not None:
        check_float(bias, "linear", "bias")
    if weight.ndim != 2:
        raise ValueError(f"linear: weight must be (out_features, in_features), got {weight.shape}")
    if x.ndim < 1 or x.shape[-1] != weight.shape[1]:
        raise ValueError(
            f"linear: input of shape {x.shape} has {x.shape[-1] if x.ndim else 0} features "
            f"but weight {weight.shape} expects {weight.shape[1]}"
        )
    if bias is not None and bias.shape != (weight.shape[0],):
        raise ValueError(f"linear: bias must have shape ({weight.shape[0]},), got {bias.shape}")
    check_same_dtype("linear", input=x, weight=weight, bias=bias)
    return Linear.apply(x, weight, bias)
