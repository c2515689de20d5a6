"""Max and average pooling in plain NumPy (PyTorch defaults: ceil_mode=False).

A pooling window is a convolution window without weights, so we reuse the conv
machinery: pad, then look at the input through each of the kH*kW taps
(`tap_slice`, one strided view per tap) and reduce over the taps.

* max pooling pads with -inf (padding can never win) and remembers *where* the
  maximum was (`argmax`), because only that input pixel receives the gradient;
* average pooling pads with 0 and always divides by kH*kW (count_include_pad=True);
  its gradient spreads grad / (kH*kW) evenly over the window.
"""

from __future__ import annotations

import numpy as np

from .conv import IntPair, output_size, pad_hw, tap_slice

_NO_DILATION = (1, 1)


def _stack_taps(x_padded: np.ndarray, kernel_size: IntPair, stride: IntPair, out_hw: IntPair):
    """All windows, tap by tap: x_padded (..., Hp, Wp) -> (kH*kW, ..., H_out, W_out).

    Entry [t, ..., oh, ow] is tap t = i*kW + j of window (oh, ow), i.e. taps are in
    row-major order inside the window.
    """
    kh, kw = kernel_size
    return np.stack(
        [
            tap_slice(x_padded, i, j, stride, _NO_DILATION, out_hw)
            for i in range(kh)
            for j in range(kw)
        ]
    )


def max_pool2d_forward(
    x: np.ndarray, kernel_size: IntPair, stride: IntPair, padding: IntPair
) -> tuple[np.ndarray, np.ndarray]:
    """Max pooling forward pass.

    x (N, C, H, W) -> out (N, C, H_out, W_out) in x's dtype,
                      argmax (N, C, H_out, W_out) int64: flat index h*W + w of the
                      winning pixel in the (unpadded) input plane.

    Ties: the first maximum in row-major window order wins, like PyTorch. NaN counts as
    larger than everything, and of several NaNs the *last* one wins: PyTorch's loop
    takes a tap when `val > maxval or isnan(val)`, so every later NaN replaces the
    previous one (and the gradient goes to it).
    """
    n, c, h, w = x.shape
    out_hw = output_size((h, w), kernel_size, stride, padding, _NO_DILATION)

    # Pass 1: the pixel values of every window, (K, N, C, H_out, W_out).
    windows = _stack_taps(pad_hw(x, padding, -np.inf), kernel_size, stride, out_hw)

    # Pass 2: the same windows over an "index image" holding h*W + w at every real pixel
    # and -1 on the padding: this tells us which input pixel each tap is, (K, H_out, W_out).
    index_plane = np.arange(h * w, dtype=np.int64).reshape(h, w)
    tap_index = _stack_taps(pad_hw(index_plane, padding, -1), kernel_size, stride, out_hw)
    is_real = (tap_index >= 0)[:, None, None]  # (K, 1, 1, H_out, W_out)

    # Winner = first *real* tap that attains the window's maximum. (Masking padding
    # matters only when a window's real pixels are all -inf.) np.argmax on booleans
    # returns the first True. A window holding NaN: its last NaN wins (see above).
    best = windows.max(axis=0)
    first_max = np.argmax((windows == best) & is_real, axis=0)
    nans = np.isnan(windows)
    last_nan = len(windows) - 1 - np.argmax(nans[::-1], axis=0)
    tap = np.where(nans.any(axis=0), last_nan, first_max)  # (N, C, H_out, W_out)

    out = np.take_along_axis(windows, tap[None], axis=0)[0]
    argmax = np.take_along_axis(tap_index[:, None, None], tap[None], axis=0)[0]
    return out.astype(x.dtype, copy=False), argmax.astype(np.int64, copy=False)


def max_pool2d_backward(
    grad_out: np.ndarray, argmax: np.ndarray, input_shape: tuple[int, int, int, int]
) -> np.ndarray:
    """Max pooling backward pass.

    grad_out, argmax (N, C, H_out, W_out) -> grad_x of input_shape (N, C, H, W).

    Each output's gradient goes to the one input pixel that won its window. Windows can
    overlap (stride < kernel), so one pixel may win several times: scatter with
    np.add.at, which accumulates repeated indices (plain `grad[idx] += g` would not).
    """
    n, c, h, w = input_shape
    # Turn the per-plane index h*W + w into an index into the flattened (N*C*H*W) array.
    plane_start = (np.arange(n * c, dtype=np.int64) * (h * w)).reshape(n, c, 1, 1)
    flat_index = (plane_start + argmax).ravel()

    grad_x = np.zeros(n * c * h * w, dtype=grad_out.dtype)
    np.add.at(grad_x, flat_index, grad_out.ravel())
    return grad_x.reshape(input_shape)


def avg_pool2d_forward(
    x: np.ndarray, kernel_size: IntPair, stride: IntPair, padding: IntPair
) -> np.ndarray:
    """Average pooling forward pass (zero padding counts towards the average).

    x (N, C, H, W) -> out (N, C, H_out, W_out) in x's dtype.
    """
    _, _, h, w = x.shape
    kh, kw = kernel_size
    out_hw = output_size((h, w), kernel_size, stride, padding, _NO_DILATION)
    x_padded = pad_hw(x, padding, 0.0)

    out = np.zeros(x.shape[:2] + out_hw, dtype=x.dtype)
    for i in range(kh):
        for j in range(kw):
            out += tap_slice(x_padded, i, j, stride, _NO_DILATION, out_hw)
    # With ceil_mode=False every window lies inside the padded input, so the divisor is
    # always the full window size.
    out /= kh * kw
    return out


def avg_pool2d_backward(
    grad_out: np.ndarray,
    input_shape: tuple[int, int, int, int],
    kernel_size: IntPair,
    stride: IntPair,
    padding: IntPair,
) -> np.ndarray:
    """Average pooling backward pass.

    grad_out (N, C, H_out, W_out) -> grad_x of input_shape (N, C, H, W).

    Every pixel of a window contributed 1/(kH*kW) of the output, so it gets that share of
    the output's gradient; overlapping windows add up.
    """
    n, c, h, w = input_shape
    kh, kw = kernel_size
    ph, pw = padding
    out_hw = grad_out.shape[2:]
    share = grad_out / (kh * kw)

    grad_x_padded = np.zeros((n, c, h + 2 * ph, w + 2 * pw), dtype=grad_out.dtype)
    for i in range(kh):
        for j in range(kw):
            tap_slice(grad_x_padded, i, j, stride, _NO_DILATION, out_hw)[...] += share
    return np.ascontiguousarray(grad_x_padded[:, :, ph : ph + h, pw : pw + w])
