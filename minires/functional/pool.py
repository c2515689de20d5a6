"""Pooling: max, average, and adaptive average (global average pooling before the fc)."""

from __future__ import annotations

import numpy as np

from minires.autograd import Context, Function
from minires.backend import kernels
from minires.functional._util import check_float, check_ndim, out_size, pair
from minires.tensor import Tensor

Pair = int | tuple[int, int]


class MaxPool2d(Function):
    """Window maximum; the gradient goes to the (first) arg-max of each window."""

    @staticmethod
    def forward(ctx, x, kernel_size, stride, padding):
        out, argmax = kernels().max_pool2d_forward(x, kernel_size, stride, padding)
        ctx.save_for_backward(argmax)
        ctx.shape = x.shape
        return out

    @staticmethod
    def backward(ctx: Context, g: np.ndarray):
        (argmax,) = ctx.saved_tensors
        return kernels().max_pool2d_backward(g, argmax, ctx.shape), None, None, None


class AvgPool2d(Function):
    """Window mean (zero padding counted, as PyTorch's count_include_pad=True)."""

    @staticmethod
    def forward(ctx, x, kernel_size, stride, padding):
        ctx.shape, ctx.args = x.shape, (kernel_size, stride, padding)
        return kernels().avg_pool2d_forward(x, kernel_size, stride, padding)

    @staticmethod
    def backward(ctx: Context, g: np.ndarray):
        gx = kernels().avg_pool2d_backward(g, ctx.shape, *ctx.args)
        return gx, None, None, None


class AdaptiveAvgPool2d(Function):
    """Average over PyTorch's adaptive bins: output cell i covers input rows
    floor(i*H/Ho) .. ceil((i+1)*H/Ho) - 1 (bins may overlap when H is not a multiple)."""

    @staticmethod
    def forward(ctx, x, output_size):
        ho, wo = output_size
        n, c, h, w = x.shape
        ctx.shape, ctx.output_size = x.shape, output_size
        if (ho, wo) == (1, 1):  # global average pool: the common case, one reduction
            return x.mean(axis=(2, 3), keepdims=True)
        out = np.empty((n, c, ho, wo), dtype=x.dtype)
        for i, (h0, h1) in enumerate(_bins(h, ho)):
            for j, (w0, w1) in enumerate(_bins(w, wo)):
                out[:, :, i, j] = x[:, :, h0:h1, w0:w1].mean(axis=(2, 3))
        return out

    @staticmethod
    def backward(ctx: Context, g: np.ndarray):
        n, c, h, w = ctx.shape
        ho, wo = ctx.output_size
        if (ho, wo) == (1, 1):
            return np.broadcast_to(g / (h * w), ctx.shape).astype(g.dtype), None
        gx = np.zeros(ctx.shape, dtype=g.dtype)
        for i, (h0, h1) in enumerate(_bins(h, ho)):
            for j, (w0, w1) in enumerate(_bins(w, wo)):
                gx[:, :, h0:h1, w0:w1] += g[:, :, i : i + 1, j : j + 1] / ((h1 - h0) * (w1 - w0))
        return gx, None


def _bins(size: int, out: int) -> list[tuple[int, int]]:
    return [((i * size) // out, -(-((i + 1) * size) // out)) for i in range(out)]


def _pool_args(x: Tensor, kernel_size, stride, padding, op: str):
    check_float(x, op)
    check_ndim(x, (4,), op, "input", "N, C, H, W")
    k = pair(kernel_size, "kernel_size", minimum=1, op=op)
    s = k if stride is None else pair(stride, "stride", minimum=1, op=op)
    p = pair(padding, "padding", minimum=0, op=op)
    if min(x.shape) < 1:
        raise ValueError(f"{op}: input {x.shape} is empty (a dimension of size 0)")
    if p[0] > k[0] // 2 or p[1] > k[1] // 2:
        raise ValueError(f"{op}: padding {p} must be at most half the kernel size {k}")
    ho = out_size(x.shape[2], k[0], s[0], p[0])
    wo = out_size(x.shape[3], k[1], s[1], p[1])
    if ho < 1 or wo < 1:
        raise ValueError(f"{op}: kernel {k} is larger than the padded input of shape {x.shape}")
    return k, s, p


def max_pool2d(x: Tensor, kernel_size: Pair, stride: Pair | None = None, padding: Pair = 0):
    """Max over kH x kW windows. x (N, C, H, W) -> (N, C, H_out, W_out); stride defaults
    to the kernel size; padding counts as -inf."""
    k, s, p = _pool_args(x, kernel_size, stride, padding, "max_pool2d")
    return MaxPool2d.apply(x, k, s, p)


def avg_pool2d(x: Tensor, kernel_size: Pair, stride: Pair | None = None, padding: Pair = 0):
    """Mean over kH x kW windows (padding counted as zeros in the divisor, as PyTorch).
    x (N, C, H, W) -> (N, C, H_out, W_out)."""
    k, s, p = _pool_args(x, kernel_size, stride, padding, "avg_pool2d")
    return AvgPool2d.apply(x, k, s, p)


def adaptive_avg_pool2d(x: Tensor, output_size: Pair) -> Tensor:
    """Average into a fixed ``output_size`` grid. x (N, C, H, W) -> (N, C, *output_size)."""
    op = "adaptive_avg_pool2d"
    check_float(x, op)
    check_ndim(x, (4,), op, "input", "N, C, H, W")
    o = pair(output_size, "output_size", minimum=1, op=op)
    if min(x.shape) < 1:
        raise ValueError(f"{op}: input {x.shape} is empty (a dimension of size 0)")
    return AdaptiveAvgPool2d.apply(x, o)
