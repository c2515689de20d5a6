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
PADDING_STRINGS = ("same", "valid")


class Conv2d(Function):
    """out[n, o] = bias[o] + sum over the group's input channels c and taps (i, j) of
    weight[o, c, i, j] * x_padded[n, c, s*h + d*i, s*w + d*j].

    x (N, C_in, H, W) or unbatched (C_in, H, W) (a batch of one; the gradient keeps x's
    shape); N may be 0 (an empty output, zero weight and bias gradients). The kernels pad
    symmetrically; ``extra`` = (rows, cols) of zeros added at the bottom/right first is
    the odd one of an asymmetric padding="same", where PyTorch puts it.
    """

    fresh_gradients = True  # the kernels allocate every gradient they return

    @staticmethod
    def forward(ctx, x, weight, bias, stride, padding, dilation, groups, extra=(0, 0)):
        ctx.shape = x.shape
        x = x.reshape(x.shape if x.ndim == 4 else (1, *x.shape))
        if extra != (0, 0):
            x = np.pad(x, ((0, 0), (0, 0), (0, extra[0]), (0, extra[1])))
        ctx.save_for_backward(x, weight)  # both always, as PyTorch's convolution
        ctx.args = (stride, padding, dilation, groups)
        ctx.has_bias = bias is not None
        if len(x):
            out = kernels().conv2d_forward(x, weight, bias, stride, padding, dilation, groups)
        else:  # an empty batch: the kernels are not asked (their loops assume N >= 1)
            (ph, pw), (kh, kw) = padding, weight.shape[2:]
            ho = out_size(x.shape[2], kh, stride[0], ph, dilation[0])
            wo = out_size(x.shape[3], kw, stride[1], pw, dilation[1])
            out = np.zeros((0, weight.shape[0], ho, wo), dtype=x.dtype)
        return out if len(ctx.shape) == 4 else out[0]

    @staticmethod
    def backward(ctx: Context, g: np.ndarray):
        x, weight = ctx.saved_tensors
        g = g.reshape((len(x), *g.shape[-3:]))
        # the input gradient is skipped for the first layer (the images need none)
        need_x, need_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        gx = gw = gb = None
        if len(x) and (need_x or need_w):  # one call: a backend may share work between them
            gx, gw = kernels().conv2d_backward(
                g, x, weight, *ctx.args, output_mask=(need_x, need_w)
            )
        elif len(x) == 0:  # an empty batch: zero gradients, the kernels are not asked
            gx = np.zeros(x.shape, dtype=x.dtype) if need_x else None
            gw = np.zeros(weight.shape, dtype=weight.dtype) if need_w else None
        if gx is not None:
            h, w = ctx.shape[-2:]
            if gx.shape[2:] != (h, w):  # drop the extra bottom/right padding of "same"
                gx = np.ascontiguousarray(gx[:, :, :h, :w])
            gx = gx.reshape(ctx.shape)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            gb = g.sum(axis=(0, 2, 3))
        return gx, gw, gb, None, None, None, None, None


def _padding(padding, kernel_hw, stride, dilation, op: str):
    """``padding`` -> (symmetric (ph, pw), extra bottom/right (eh, ew)).

    "valid" is no padding; "same" keeps H and W (stride 1 only, as in PyTorch): a total
    of d*(k-1) per axis, half on each side and the odd one at the bottom/right."""
    if not isinstance(padding, str):
        return pair(padding, "padding", minimum=0, op=op), (0, 0)
    if padding not in PADDING_STRINGS:
        raise ValueError(
            f"{op}: invalid padding string {padding!r}, should be one of {PADDING_STRINGS} "
            "or an int or a pair of ints"
        )
    if padding == "valid":
        return (0, 0), (0, 0)
    if stride != (1, 1):
        raise ValueError(f"{op}: padding='same' is not supported for strided convolutions")
    total = tuple(d * (k - 1) for k, d in zip(kernel_hw, dilation))
    return (total[0] // 2, total[1] // 2), (total[0] % 2, total[1] % 2)


def conv2d(
    x: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    stride: Pair = 1,
    padding: Pair | str = 0,
    dilation: Pair = 1,
    groups: int = 1,
) -> Tensor:
    """2-D cross-correlation, like ``torch.nn.functional.conv2d``.

    Shapes: x (N, C_in, H, W) or unbatched (C_in, H, W); weight (C_out, C_in // groups,
    kH, kW); bias (C_out,) -> (N, C_out, H_out, W_out) (or (C_out, H_out, W_out)) with
    H_out = (H + 2*pad - dil*(kH-1) - 1) // stride + 1. N may be 0.
    ``padding``: an int, a pair, "valid" (0) or "same" (H_out = H, stride 1 only; an odd
    total padding puts the extra row/column at the bottom/right, as PyTorch).
    ``groups == C_in`` is a depthwise convolution (C_out a multiple of C_in).
    """
    op = "conv2d"
    check_float(x, op)
    check_float(weight, op, "weight")
    check_ndim(x, (3, 4), op, "input", "N, C_in, H, W or C_in, H, W")
    check_ndim(weight, (4,), op, "weight", "C_out, C_in/groups, kH, kW")
    check_same_dtype(op, input=x, weight=weight, bias=bias)
    if bias is not None:
        check_float(bias, op, "bias")
    s = pair(stride, "stride", minimum=1, op=op)
    d = pair(dilation, "dilation", minimum=1, op=op)
    p, extra = _padding(padding, weight.shape[2:], s, d, op)
    groups = check_int(groups, "groups", op, minimum=1)
    if min(weight.shape) < 1:
        raise ValueError(f"{op}: weight {weight.shape} has an empty dimension")
    if min(x.shape[-3:]) < 1:  # torch too allows only the batch to be empty
        raise ValueError(f"{op}: input {x.shape} is empty (only the batch N may be 0)")
    c_in, h, w = x.shape[-3:]
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
    ho = out_size(h + extra[0], kh, s[0], p[0], d[0])
    wo = out_size(w + extra[1], kw, s[1], p[1], d[1])
    if ho < 1 or wo < 1:
        raise ValueError(
            f"{op}: kernel {kh}x{kw} (dilation {d}) is larger than the padded input "
            f"{h + 2 * p[0]}x{w + 2 * p[1]} (input {x.shape}, padding {p})"
        )
    return Conv2d.apply(x, weight, bias, s, p, d, groups, extra)
