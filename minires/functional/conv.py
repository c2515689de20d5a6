"""2-D convolution (dense, grouped, depthwise) as one Function. The arithmetic lives
in the kernels (`kernels.reference.conv` is the version to read); this op checks the
arguments and routes the three gradients."""

from __future__ import annotations

import numpy as np

from minires.autograd import Context, Function
from minires.backend import kernels
from minires.functional._util import (
    check_float,
    check_int,
    check_ndim,
    check_same_dtype,
    out_size,
    pair,
)
from minires.tensor import Tensor

Pair = int | tuple[int, int]


class Conv2d(Function):
    """out[n, o] = bias[o] + sum over the group's input channels c and taps (i, j) of
    weight[o, c, i, j] * x_padded[n, c, s*h + d*i, s*w + d*j]."""

    fresh_gradients = True  # the kernels allocate every gradient they return

    @staticmethod
    def forward(ctx, x, weight, bias, stride, padding, dilation, groups):
        ctx.save_for_backward(x, weight)
        ctx.args = (stride, padding, dilation, groups)
        ctx.has_bias = bias is not None
        return kernels().conv2d_forward(x, weight, bias, stride, padding, dilation, groups)

    @staticmethod
    def backward(ctx: Context, g: np.ndarray):
        x, weight = ctx.saved_tensors
        k = kernels()
        gx = gw = gb = None
        if ctx.needs_input_grad[0]:  # skipped for the first layer (the images need none)
            gx = k.conv2d_backward_input(g, weight, x.shape, *ctx.args)
        if ctx.needs_input_grad[1]:
            gw = k.conv2d_backward_weight(x, g, weight.shape, *ctx.args)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            gb = g.sum(axis=(0, 2, 3))
        return gx, gw, gb, None, None, None, None


def conv2d(
    x: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    stride: Pair = 1,
    padding: Pair = 0,
    dilation: Pair = 1,
    groups: int = 1,
) -> Tensor:
    """2-D cross-correlation, like ``torch.nn.functional.conv2d``.

    Shapes: x (N, C_in, H, W); weight (C_out, C_in // groups, kH, kW); bias (C_out,)
    -> (N, C_out, H_out, W_out) with H_out = (H + 2*pad - dil*(kH-1) - 1) // stride + 1.
    ``groups == C_in`` is a depthwise convolution (C_out a multiple of C_in).
    """
    op = "conv2d"
    check_float(x, op)
    check_float(weight, op, "weight")
    check_ndim(x, (4,), op, "input", "N, C_in, H, W")
    check_ndim(weight, (4,), op, "weight", "C_out, C_in/groups, kH, kW")
    check_same_dtype(op, input=x, weight=weight, bias=bias)
    if bias is not None:
        check_float(bias, op, "bias")
    s = pair(stride, "stride", minimum=1, op=op)
    p = pair(padding, "padding", minimum=0, op=op)
    d = pair(dilation, "dilation", minimum=1, op=op)
    groups = check_int(groups, "groups", op, minimum=1)
    if min(weight.shape) < 1:
        raise ValueError(f"{op}: weight {weight.shape} has an empty dimension")
    if min(x.shape) < 1:
        raise ValueError(f"{op}: input {x.shape} is empty (a dimension of size 0)")
    n, c_in, h, w = x.shape
    c_out, c_per_group, kh, kw = weight.shape
    if c_in % groups or c_out % groups:
        raise ValueError(
            f"{op}: in_channels ({c_in}) and out_channels ({c_out}) must both be divisible by "
            f"groups ({groups})"
        )
    if c_per_group * groups != c_in:
        raise ValueError(
            f"{op}: weight {weight.shape} expects {c_per_group * groups} input channels "
            f"({c_per_group} per group x {groups} groups) but the input {x.shape} has {c_in}"
        )
    if bias is not None and bias.shape != (c_out,):
        raise ValueError(f"{op}: bias must have shape ({c_out},), got {bias.shape}")
    ho, wo = out_size(h, kh, s[0], p[0], d[0]), out_size(w, kw, s[1], p[1], d[1])
    if ho < 1 or wo < 1:
        raise ValueError(
            f"{op}: kernel {kh}x{kw} (dilation {d}) is larger than the padded input "
            f"{h + 2 * p[0]}x{w + 2 * p[1]} (input {x.shape}, padding {p})"
        )
    return Conv2d.apply(x, weight, bias, s, p, d, groups)
