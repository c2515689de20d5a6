"""Matrix products: ``matmul`` (NumPy's rules, batched and 1-D) and ``linear``; vector
norms (``norm``)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from minires.autograd import Context, Function
from minires.backend import kernels
from minires.device import resolve_dtype
from minires.functional._util import (
    as_tensor,
    check_float,
    check_same_dtype,
    check_tensor,
    one_thread_gemm,
    unbroadcast,
)
from minires.functional.elementwise import cast
from minires.functional.reduce import _expand, _normalize_axis
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


# -- norm ------------------------------------------------------------------------------------


class Norm(Function):
    """out = the p-norm of ``a`` over ``axes``: (sum |a|^p)^(1/p); max |a| for p = inf,
    min |a| for p = -inf, the number of non-zeros for p = 0.

    Gradients are torch's (``norm_backward``), subgradients included: p = 1 gives
    sign(a) (0 at 0); p = 2 gives a / norm, 0 where the norm is 0; p = +-inf shares g
    among the elements at the extremum (and NaNs); p = 0 gives 0."""

    @staticmethod
    def forward(ctx: Context, a: np.ndarray, p: float, axes: tuple, keepdims: bool):
        ctx.p, ctx.axes, ctx.keepdims = p, axes, keepdims
        absa = np.abs(a)
        with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
            if p == math.inf:
                out = np.max(absa, axis=axes, keepdims=True)
            elif p == -math.inf:
                out = np.min(absa, axis=axes, keepdims=True)
            elif p == 0:
                out = np.sum(a != 0, axis=axes, keepdims=True, dtype=a.dtype)
            elif p == 1:
                out = np.sum(absa, axis=axes, keepdims=True)
            elif p == 2:
                out = np.sqrt(np.sum(a * a, axis=axes, keepdims=True))
            else:
                out = np.sum(absa**p, axis=axes, keepdims=True) ** (1 / p)
        ctx.save_for_backward(a, out)
        return out if keepdims else np.squeeze(out, axis=axes)

    @staticmethod
    def backward(ctx: Context, g: np.ndarray):
        a, norm = ctx.saved_tensors  # norm keeps the reduced axes as size 1
        p = ctx.p
        g = _expand(g, a.shape, ctx.axes, ctx.keepdims)
        zero = g.dtype.type(0)
        sign = (a > 0).astype(a.dtype) - (a < 0)  # torch's sgn: 0 at 0 and at NaN
        with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
            if p == 0:
                grad = np.zeros(a.shape, g.dtype)
            elif p == 1:
                grad = sign * g
            elif p == 2:
                grad = g * np.where(norm == 0, zero, a / norm)
            elif math.isinf(p):  # the extremum's places (and NaNs) share g
                absa = np.abs(a)
                mask = (absa == norm) | np.isnan(absa)
                grad = sign * ((g / mask.sum(axis=ctx.axes, keepdims=True)) * mask)
            elif p < 1:
                scaled = sign * np.where(a == 0, zero, np.abs(a) ** (p - 1))
                grad = scaled * g * norm ** (1 - p)
            else:
                scaled = sign * np.abs(a) ** (p - 1) if p < 2 else a * np.abs(a) ** (p - 2)
                grad = scaled * np.where(norm == 0, zero, g / norm ** (p - 1))
        return grad.astype(g.dtype, copy=False), None, None, None


def norm(
    input: Tensor,  # noqa: A002 - torch's argument names
    p: Any = "fro",
    dim: Any = None,
    keepdim: bool = False,
    dtype: Any = None,
) -> Tensor:
    """The vector p-norm of ``input`` over ``dim`` (all dimensions if None), as
    ``torch.norm`` / ``Tensor.norm``: ``p`` a number (2, 1, ``math.inf``, ``-math.inf``,
    0, any other real) or ``"fro"`` (the 2-norm over at most two dims). Float tensors
    only; ``dtype`` casts first. Differentiable (see `Norm` for the subgradients).
    Shape: the reduced dims dropped (kept as 1 with ``keepdim``)."""
    check_tensor(input, "norm")
    if isinstance(p, str):
        if p != "fro":
            raise ValueError(
                f"norm: p={p!r} is not supported; use 'fro' or a number (the nuclear norm "
                "needs an SVD, which minires does not have)"
            )
        if isinstance(dim, tuple | list) and len(dim) > 2:
            raise ValueError(
                f"norm: p='fro' is a matrix norm over at most 2 dims (as torch), got dim={dim}; "
                "use p=2 for the same norm over more"
            )
        p = 2.0
    elif p is None:
        p = 2.0
    elif isinstance(p, bool | np.bool_) or not isinstance(p, int | float | np.number):
        raise TypeError(f"norm: p must be a number or 'fro', got {p!r}")
    p = float(p)
    if math.isnan(p):
        raise ValueError("norm: p must not be NaN")
    if not isinstance(keepdim, bool | np.bool_):
        raise TypeError(f"norm: keepdim must be a bool, got {keepdim!r}")
    if dtype is not None:
        input = cast(input, resolve_dtype(dtype, "norm", float_only=True))
    if input.dtype.kind != "f":
        raise TypeError(
            f"norm: input must be float32 or float64 (as torch), got {input.dtype}; "
            "cast it first (x.float()) or pass dtype="
        )
    axes = _normalize_axis(dim, input.ndim, "norm")
    if math.isinf(p) and input.data.size == 0 and any(input.shape[i] == 0 for i in axes):
        raise ValueError(
            f"norm: the {p} norm of an empty tensor (shape {input.shape}) over dims {axes} "
            "is undefined (max and min have no identity)"
        )
    return Norm.apply(input, p, axes, bool(keepdim))


def vector_norm(
    x: Tensor,
    ord: Any = 2,  # noqa: A002 - torch.linalg's argument names
    dim: Any = None,
    keepdim: bool = False,
    *,
    dtype: Any = None,
) -> Tensor:
    """``torch.linalg.vector_norm``: the ``ord``-norm of ``x`` over ``dim`` (all if None),
    ``ord`` a number (2, 1, inf, -inf, 0, any real). The same op as `norm`, whose name
    ``minires.functional.norm`` cannot take: that is the module of batch / layer / group
    norm. Shape: the reduced dims dropped (kept as 1 with ``keepdim``)."""
    if isinstance(ord, str):
        raise TypeError(f"vector_norm: ord must be a number, got {ord!r} (norm() takes 'fro')")
    return norm(x, ord, dim, keepdim, dtype)
