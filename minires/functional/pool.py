"""Pooling: max, average, and adaptive average (global average pooling before the fc).

Max and average pooling follow ``torch.nn.functional``: input (N, C, H, W) or unbatched
(C, H, W), a batch may be empty, and the window geometry takes PyTorch's arguments. The
kernels do PyTorch's defaults (no dilation, ceil_mode=False, padding counted in the
average); the other geometries run the NumPy versions below (`_max_pool` and friends),
written to be read beside `kernels.reference.pool`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from minires.autograd import Context, Function
from minires.backend import kernels
from minires.functional._util import check_float, check_int, check_ndim, pair
from minires.kernels.reference.conv import tap_slice
from minires.tensor import Tensor

Pair = int | tuple[int, int]
IntPair = tuple[int, int]


def _out_len(size: int, k: int, s: int, p: int, d: int, ceil_mode: bool) -> int:
    """Windows along one axis, PyTorch's rule: floor (or ceil) of
    (size + 2p - d(k-1) - 1) / s, plus 1; in ceil mode the last window must start inside
    the input or the left padding (one starting in the right padding is dropped)."""
    span = size + 2 * p - d * (k - 1) - 1
    n = (span + (s - 1 if ceil_mode else 0)) // s + 1
    if ceil_mode and (n - 1) * s >= size + p:
        n -= 1
    return n


def _out_hw(shape: tuple[int, ...], k, s, p, d, ceil_mode: bool) -> IntPair:
    """(H_out, W_out) for the window geometry (pairs k, s, p, d) on input ``shape``."""
    return tuple(_out_len(shape[-2 + a], k[a], s[a], p[a], d[a], ceil_mode) for a in (0, 1))


def _floor_geometry(shape, k, s, p, d, ceil_mode) -> bool:
    """Whether the kernels' geometry applies: no dilation, and every window inside the
    padded input (ceil_mode then adds no window)."""
    return d == (1, 1) and _out_hw(shape, k, s, p, d, ceil_mode) == _out_hw(
        shape, k, s, p, d, False
    )


def _pad_to_windows(a: np.ndarray, k: IntPair, s: IntPair, p: IntPair, d: IntPair, out_hw, value):
    """Pad the last two axes by p on the left/top and enough on the right/bottom for every
    window: a ceil_mode window may run past the padded input (PyTorch clips it; here
    the extra cells hold ``value``, which never counts)."""
    widths = [(0, 0)] * (a.ndim - 2)
    for ax in (0, 1):
        size = a.shape[a.ndim - 2 + ax]
        needed = (out_hw[ax] - 1) * s[ax] + d[ax] * (k[ax] - 1) + 1
        widths.append((p[ax], max(p[ax], needed - size - p[ax])))
    return np.pad(a, widths, mode="constant", constant_values=value)


def _taps(a_padded: np.ndarray, k: IntPair, s: IntPair, d: IntPair, out_hw) -> np.ndarray:
    """(..., Hp, Wp) -> (kH*kW, ..., H_out, W_out): every window, tap by tap (row-major)."""
    return np.stack(
        [tap_slice(a_padded, i, j, s, d, out_hw) for i in range(k[0]) for j in range(k[1])]
    )


def _max_pool(x: np.ndarray, k, s, p, d, out_hw) -> tuple[np.ndarray, np.ndarray]:
    """Max pooling with dilation and ceil_mode windows, the reference kernel's method:
    x (N, C, H, W) -> out, argmax (N, C, H_out, W_out); argmax is the flat index h*W + w
    of the winner in the input plane, -1 for a window with no input pixel (a dilated
    window can straddle the input: PyTorch gives -inf and no gradient)."""
    h, w = x.shape[2:]
    windows = _taps(_pad_to_windows(x, k, s, p, d, out_hw, -np.inf), k, s, d, out_hw)
    plane = np.arange(h * w, dtype=np.int64).reshape(h, w)  # -1 marks padding below
    tap_index = _taps(_pad_to_windows(plane, k, s, p, d, out_hw, -1), k, s, d, out_hw)
    is_real = (tap_index >= 0)[:, None, None]
    # First real tap at the maximum (as torch's loop); NaN wins, the last NaN of a window.
    best = windows.max(axis=0)
    first_max = np.argmax((windows == best) & is_real, axis=0)
    nans = np.isnan(windows)
    last_nan = len(windows) - 1 - np.argmax(nans[::-1], axis=0)
    tap = np.where(nans.any(axis=0), last_nan, first_max)[None]
    out = np.take_along_axis(windows, tap, axis=0)[0]
    argmax = np.take_along_axis(np.broadcast_to(tap_index[:, None, None], windows.shape), tap, 0)
    return out, argmax[0]


def _max_pool_backward(g: np.ndarray, argmax: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Each window's gradient to its winner (argmax -1: to nobody); overlapping windows
    may share a winner, so scatter with np.add.at (it accumulates repeats)."""
    n, c, h, w = shape
    gx = np.zeros((n * c, h * w), dtype=g.dtype)
    plane = np.broadcast_to(np.arange(n * c).reshape(n, c, 1, 1), argmax.shape)
    real = argmax >= 0
    np.add.at(gx, (plane[real], argmax[real]), g[real])
    return gx.reshape(shape)


def _avg_divisor(
    hw: tuple[int, int], k, s, p, out_hw, count_include_pad: bool, divisor_override, dtype
) -> np.ndarray:
    """(H_out, W_out) divisors, PyTorch's rule: the window clipped to the padded input
    (count_include_pad=True) or to the input itself (False); ``divisor_override`` wins."""
    if divisor_override is not None:
        return np.full(out_hw, divisor_override, dtype=dtype)
    counts = []
    for ax in (0, 1):
        start = np.arange(out_hw[ax]) * s[ax] - p[ax]
        end = np.minimum(start + k[ax], hw[ax] + p[ax])
        if not count_include_pad:
            start, end = np.maximum(start, 0), np.minimum(end, hw[ax])
        counts.append(end - start)
    return np.outer(*counts).astype(dtype)


def _avg_pool(x: np.ndarray, k, s, p, out_hw, divisor: np.ndarray) -> np.ndarray:
    """Window sums (padding adds zeros) / divisor: x (N, C, H, W) -> (N, C, H_out, W_out)."""
    windows = _taps(_pad_to_windows(x, k, s, p, (1, 1), out_hw, 0.0), k, s, (1, 1), out_hw)
    return windows.sum(axis=0) / divisor


def _avg_pool_backward(g: np.ndarray, shape, k, s, p, out_hw, divisor) -> np.ndarray:
    """Each pixel of a window gets g / divisor; overlapping windows add up."""
    h, w = shape[2:]
    share = g / divisor
    gx = _pad_to_windows(np.zeros(shape, dtype=g.dtype), k, s, p, (1, 1), out_hw, 0.0)
    for i in range(k[0]):
        for j in range(k[1]):
            tap_slice(gx, i, j, s, (1, 1), out_hw)[...] += share
    return np.ascontiguousarray(gx[:, :, p[0] : p[0] + h, p[1] : p[1] + w])


def _batched(shape: tuple[int, ...]) -> tuple[int, ...]:
    """An unbatched (C, H, W) is pooled as a batch of one."""
    return shape if len(shape) == 4 else (1, *shape)


class MaxPool2d(Function):
    """Window maximum; the gradient goes to the (first) arg-max of each window.

    x (N, C, H, W) or (C, H, W). PyTorch's default geometry runs the kernels; dilation,
    extra ceil_mode windows and an empty batch run `_max_pool` (NumPy). With
    ``return_indices`` a second output, not differentiable: each window's winner as the
    flat index h*W + w in its input plane (int64, as torch's)."""

    @staticmethod
    def forward(
        ctx, x, kernel_size, stride, padding, dilation=(1, 1), ceil_mode=False, indices=False
    ):
        x4 = x.reshape(_batched(x.shape))
        out_hw = _out_hw(x.shape, kernel_size, stride, padding, dilation, ceil_mode)
        geometry = (kernel_size, stride, padding, dilation, ceil_mode)
        ctx.shape, ctx.use_kernel = x.shape, len(x4) > 0 and _floor_geometry(x.shape, *geometry)
        if ctx.use_kernel:
            out, argmax = kernels().max_pool2d_forward(x4, kernel_size, stride, padding)
        else:
            out, argmax = _max_pool(x4, kernel_size, stride, padding, dilation, out_hw)
        ctx.save_for_backward(argmax)
        out = out.reshape(x.shape[:-2] + out_hw)
        if not indices:
            return out
        winners = argmax.reshape(out.shape)
        ctx.mark_non_differentiable(winners)
        return out, winners

    @staticmethod
    def backward(ctx: Context, g: np.ndarray, *_: Any):
        (argmax,) = ctx.saved_tensors
        g4, shape4 = g.reshape(argmax.shape), _batched(ctx.shape)
        if ctx.use_kernel:
            gx = kernels().max_pool2d_backward(g4, argmax, shape4)
        else:
            gx = _max_pool_backward(g4, argmax, shape4)
        return gx.reshape(ctx.shape), None, None, None, None, None, None


class AvgPool2d(Function):
    """Window mean. x (N, C, H, W) or (C, H, W). PyTorch's default geometry (padding
    counted in the divisor, every window inside the padded input) runs the kernels;
    ceil_mode windows, count_include_pad=False, divisor_override and an empty batch run
    `_avg_pool` (NumPy) with PyTorch's divisors (`_avg_divisor`)."""

    @staticmethod
    def forward(
        ctx,
        x,
        kernel_size,
        stride,
        padding,
        ceil_mode=False,
        count_include_pad=True,
        divisor_override=None,
    ):
        k, s, p = kernel_size, stride, padding
        x4 = x.reshape(_batched(x.shape))
        out_hw = _out_hw(x.shape, k, s, p, (1, 1), ceil_mode)
        ctx.shape, ctx.args = x.shape, (k, s, p, out_hw)
        # the kernels divide by kH*kW: right unless padding is left out of a count
        full_windows = count_include_pad or p == (0, 0)
        ctx.divisor = None
        if len(x4) and full_windows and divisor_override is None:
            if _floor_geometry(x.shape, k, s, p, (1, 1), ceil_mode):
                return kernels().avg_pool2d_forward(x4, k, s, p).reshape(x.shape[:-2] + out_hw)
        ctx.divisor = _avg_divisor(
            x.shape[-2:], k, s, p, out_hw, count_include_pad, divisor_override, x.dtype
        )
        return _avg_pool(x4, k, s, p, out_hw, ctx.divisor).reshape(x.shape[:-2] + out_hw)

    @staticmethod
    def backward(ctx: Context, g: np.ndarray):
        k, s, p, out_hw = ctx.args
        shape4 = _batched(ctx.shape)
        g4 = g.reshape(shape4[:2] + out_hw)
        if ctx.divisor is None:
            gx = kernels().avg_pool2d_backward(g4, shape4, k, s, p)
        else:
            gx = _avg_pool_backward(g4, shape4, k, s, p, out_hw, ctx.divisor)
        return gx.reshape(ctx.shape), None, None, None, None, None, None


class AdaptiveAvgPool2d(Function):
    """Average over PyTorch's adaptive bins: output cell i covers input rows
    floor(i*H/Ho) .. ceil((i+1)*H/Ho) - 1 (bins may overlap when H is not a multiple).
    x (N, C, H, W) or (C, H, W); N may be 0."""

    @staticmethod
    def forward(ctx, x, output_size):
        ho, wo = output_size
        ctx.shape, ctx.output_size = x.shape, output_size
        x = x.reshape(_batched(x.shape))
        n, c, h, w = x.shape
        if (ho, wo) == (1, 1):  # global average pool: the common case, one reduction
            return x.mean(axis=(2, 3), keepdims=True).reshape(ctx.shape[:-2] + (1, 1))
        out = np.empty((n, c, ho, wo), dtype=x.dtype)
        for i, (h0, h1) in enumerate(_bins(h, ho)):
            for j, (w0, w1) in enumerate(_bins(w, wo)):
                out[:, :, i, j] = x[:, :, h0:h1, w0:w1].mean(axis=(2, 3))
        return out.reshape(ctx.shape[:-2] + (ho, wo))

    @staticmethod
    def backward(ctx: Context, g: np.ndarray):
        h, w = ctx.shape[-2:]
        ho, wo = ctx.output_size
        if (ho, wo) == (1, 1):
            return np.broadcast_to(g / (h * w), ctx.shape).astype(g.dtype), None
        shape4 = _batched(ctx.shape)
        g = g.reshape(shape4[:2] + (ho, wo))
        gx = np.zeros(shape4, dtype=g.dtype)
        for i, (h0, h1) in enumerate(_bins(h, ho)):
            for j, (w0, w1) in enumerate(_bins(w, wo)):
                gx[:, :, h0:h1, w0:w1] += g[:, :, i : i + 1, j : j + 1] / ((h1 - h0) * (w1 - w0))
        return gx.reshape(ctx.shape), None


def _bins(size: int, out: int) -> list[tuple[int, int]]:
    return [((i * size) // out, -(-((i + 1) * size) // out)) for i in range(out)]


def _check_flag(value: Any, name: str, op: str) -> bool:
    if not isinstance(value, bool | np.bool_):
        raise TypeError(f"{op}: {name} must be True or False, got {value!r}")
    return bool(value)


def check_pool_geometry(
    op: str, kernel_size: Any, stride: Any, padding: Any, dilation: Any = 1
) -> tuple[IntPair, IntPair, IntPair, IntPair]:
    """(k, s, p, d) as pairs; stride None is the kernel size; PyTorch's limit on the
    padding: at most half the kernel size k // 2, dilated or not (its pool2d_shape_check;
    the modules call this at construction)."""
    k = pair(kernel_size, "kernel_size", minimum=1, op=op)
    s = k if stride is None else pair(stride, "stride", minimum=1, op=op)
    p = pair(padding, "padding", minimum=0, op=op)
    d = pair(dilation, "dilation", minimum=1, op=op)
    half = (k[0] // 2, k[1] // 2)
    if p[0] > half[0] or p[1] > half[1]:
        raise ValueError(
            f"{op}: padding {p} must be at most half the kernel size {k}, i.e. <= {half}"
        )
    return k, s, p, d


def _pool_args(x: Tensor, op: str, kernel_size, stride, padding, dilation, ceil_mode):
    check_float(x, op)
    check_ndim(x, (3, 4), op, "input", "N, C, H, W or C, H, W")
    k, s, p, d = check_pool_geometry(op, kernel_size, stride, padding, dilation)
    ceil_mode = _check_flag(ceil_mode, "ceil_mode", op)
    if min(x.shape[-3:]) < 1:  # torch too allows only the batch to be empty
        raise ValueError(f"{op}: input {x.shape} is empty (only the batch N may be 0)")
    ho, wo = _out_hw(x.shape, k, s, p, d, ceil_mode)
    if ho < 1 or wo < 1:
        raise ValueError(f"{op}: kernel {k} is larger than the padded input of shape {x.shape}")
    return k, s, p, d, ceil_mode


def max_pool2d(
    x: Tensor,
    kernel_size: Pair,
    stride: Pair | None = None,
    padding: Pair = 0,
    dilation: Pair = 1,
    ceil_mode: bool = False,
    return_indices: bool = False,
) -> Tensor:
    """Max over kH x kW windows, like ``torch.nn.functional.max_pool2d``.

    x (N, C, H, W) -> (N, C, H_out, W_out), or unbatched (C, H, W) -> (C, H_out, W_out);
    H_out = floor((H + 2*padding - dilation*(kH-1) - 1) / stride) + 1 (ceil with
    ``ceil_mode``, keeping only windows that start inside the input or the left padding).
    stride defaults to the kernel size; padding counts as -inf and is at most half the
    (dilated) kernel. With ``return_indices=True``, ``(output, indices)``: indices int64
    of the output's shape, each window's maximum as the flat index h*W + w in its input
    plane (torch's convention, the first maximum of the window; NaN wins).
    """
    op = "max_pool2d"
    return_indices = _check_flag(return_indices, "return_indices", op)
    k, s, p, d, ceil_mode = _pool_args(x, op, kernel_size, stride, padding, dilation, ceil_mode)
    return MaxPool2d.apply(x, k, s, p, d, ceil_mode, return_indices)


def avg_pool2d(
    x: Tensor,
    kernel_size: Pair,
    stride: Pair | None = None,
    padding: Pair = 0,
    ceil_mode: bool = False,
    count_include_pad: bool = True,
    divisor_override: int | None = None,
) -> Tensor:
    """Mean over kH x kW windows, like ``torch.nn.functional.avg_pool2d``.

    x (N, C, H, W) -> (N, C, H_out, W_out), or unbatched (C, H, W) -> (C, H_out, W_out),
    H_out as in `max_pool2d` (no dilation). The divisor is the window's size clipped to
    the padded input (``count_include_pad=True``, the default) or the number of input
    pixels in it (False), or ``divisor_override`` (a non-zero int) when given.
    """
    op = "avg_pool2d"
    k, s, p, _, ceil_mode = _pool_args(x, op, kernel_size, stride, padding, 1, ceil_mode)
    count_include_pad = _check_flag(count_include_pad, "count_include_pad", op)
    if divisor_override is not None:
        divisor_override = check_int(divisor_override, "divisor_override", op)
        if divisor_override == 0:
            raise ValueError(f"{op}: divisor_override must not be zero")
    return AvgPool2d.apply(x, k, s, p, ceil_mode, count_include_pad, divisor_override)


def adaptive_avg_pool2d(x: Tensor, output_size: int | tuple[int | None, int | None]) -> Tensor:
    """Average into a fixed ``output_size`` grid, like ``torch.nn.functional.adaptive_avg_pool2d``:
    x (N, C, H, W) -> (N, C, *output_size), or unbatched (C, H, W) -> (C, *output_size);
    None in ``output_size`` keeps the input's size there; the batch may be empty."""
    op = "adaptive_avg_pool2d"
    check_float(x, op)
    check_ndim(x, (3, 4), op, "input", "N, C, H, W or C, H, W")
    size = output_size
    if isinstance(size, tuple | list) and len(size) == 2:  # None: keep the input's size there
        size = tuple(x.shape[x.ndim - 2 + i] if v is None else v for i, v in enumerate(size))
    o = pair(size, "output_size", minimum=1, op=op)
    if min(x.shape[-3:]) < 1:  # torch too allows only the batch to be empty
        raise ValueError(f"{op}: input {x.shape} is empty (only the batch N may be 0)")
    return AdaptiveAvgPool2d.apply(x, o)
