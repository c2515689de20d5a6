"""2-D convolution (cross-correlation, like PyTorch) in plain NumPy.

The whole file is built on one idea, *im2col*: copy every receptive field of the
(padded) input into a column of a matrix, so that the convolution becomes a single
matrix multiplication with the flattened weights::

    weight (C_out, C_in*kH*kW)  @  cols (C_in*kH*kW, H_out*W_out)  ->  (C_out, H_out*W_out)

Grouped convolution (ResNeXt's "cardinality", and depthwise convolution when
groups == C_in) splits the channels into `groups` independent blocks: group g's output
channels only see group g's input channels. So we do one such matmul per group.

The backward passes are the same matmul transposed:

* grad w.r.t. input  : weight^T @ grad_out gives gradient *columns*; col2im adds every
                       column back to the pixels it was copied from (im2col's adjoint).
* grad w.r.t. weight : grad_out @ cols^T, summed over the batch.

Loops run over the kH*kW kernel taps (each tap is one strided slice of the whole
batch), never over pixels or images.

Shapes used below: N batch, C = C_in, G groups, Cg = C_in // G, Og = C_out // G,
K = kH*kW taps, L = H_out*W_out output pixels.
"""

from __future__ import annotations

import numpy as np

IntPair = tuple[int, int]


def output_size(
    size: IntPair, kernel_size: IntPair, stride: IntPair, padding: IntPair, dilation: IntPair
) -> IntPair:
    """Spatial output size `(H_out, W_out)` of a convolution or pooling window.

    A dilated kernel of size k spans `d*(k-1) + 1` input pixels; it fits
    `(H + 2p - span) // s + 1` times when sliding by `s` over the padded input.
    """
    return tuple(  # type: ignore[return-value]
        (n + 2 * p - d * (k - 1) - 1) // s + 1
        for n, k, s, p, d in zip(size, kernel_size, stride, padding, dilation)
    )


def tap_slice(
    x_padded: np.ndarray, i: int, j: int, stride: IntPair, dilation: IntPair, out_hw: IntPair
) -> np.ndarray:
    """View of the input pixels seen by kernel tap (i, j) at every output position.

    x_padded (..., Hp, Wp) -> view (..., H_out, W_out), where
    view[..., oh, ow] = x_padded[..., oh*sh + i*dh, ow*sw + j*dw].

    This is a strided *view* (no copy): it can be read from or added into.
    """
    (sh, sw), (dh, dw), (h_out, w_out) = stride, dilation, out_hw
    top, left = i * dh, j * dw  # where tap (i, j) sits for output pixel (0, 0)
    return x_padded[
        ...,
        top : top + sh * (h_out - 1) + 1 : sh,
        left : left + sw * (w_out - 1) + 1 : sw,
    ]


def pad_hw(x: np.ndarray, padding: IntPair, value: float = 0.0) -> np.ndarray:
    """Pad the last two axes: (..., H, W) -> (..., H + 2*ph, W + 2*pw)."""
    ph, pw = padding
    if ph == 0 and pw == 0:
        return x
    pad_width = [(0, 0)] * (x.ndim - 2) + [(ph, ph), (pw, pw)]
    return np.pad(x, pad_width, mode="constant", constant_values=value)


def im2col(
    x_padded: np.ndarray,
    kernel_size: IntPair,
    stride: IntPair,
    dilation: IntPair,
    out_hw: IntPair,
) -> np.ndarray:
    """Unfold receptive fields into columns.

    x_padded (N, C, Hp, Wp) -> cols (N, C*kH*kW, H_out*W_out)

    Row `c*kH*kW + i*kW + j` holds input channel c seen through tap (i, j): the same
    (c, i, j) order as `weight.reshape(C_out, -1)`, so `weight_matrix @ cols` is the conv.
    """
    n, c = x_padded.shape[:2]
    kh, kw = kernel_size
    h_out, w_out = out_hw
    cols = np.empty((n, c, kh, kw, h_out, w_out), dtype=x_padded.dtype)
    for i in range(kh):
        for j in range(kw):
            # one strided copy per tap moves that tap's pixel for every output position
            cols[:, :, i, j] = tap_slice(x_padded, i, j, stride, dilation, out_hw)
    return cols.reshape(n, c * kh * kw, h_out * w_out)


def col2im(
    cols: np.ndarray,
    padded_shape: tuple[int, int, int, int],
    kernel_size: IntPair,
    stride: IntPair,
    dilation: IntPair,
    out_hw: IntPair,
) -> np.ndarray:
    """Adjoint of `im2col`: add every column entry back onto the pixel it came from.

    cols (N, C*kH*kW, H_out*W_out) -> x_padded-shaped array (N, C, Hp, Wp)

    A pixel that sits in several receptive fields (overlapping windows) receives the
    sum of all its copies' gradients, which is exactly the chain rule.
    """
    n, c = padded_shape[:2]
    kh, kw = kernel_size
    h_out, w_out = out_hw
    cols = cols.reshape(n, c, kh, kw, h_out, w_out)
    x_padded = np.zeros(padded_shape, dtype=cols.dtype)
    for i in range(kh):
        for j in range(kw):
            # `+=` on a strided view: within one tap, output positions map to distinct
            # pixels, so there are no collisions inside this single slice-add.
            tap_slice(x_padded, i, j, stride, dilation, out_hw)[...] += cols[:, :, i, j]
    return x_padded


def _weight_per_group(weight: np.ndarray, groups: int) -> np.ndarray:
    """weight (C_out, Cg, kH, kW) -> (G, Og, Cg*kH*kW): one weight matrix per group."""
    c_out = weight.shape[0]
    return weight.reshape(groups, c_out // groups, -1)


def conv2d_forward(
    x: np.ndarray,
    weight: np.ndarray,
    bias: np.ndarray | None,
    stride: IntPair,
    padding: IntPair,
    dilation: IntPair,
    groups: int,
) -> np.ndarray:
    """Convolution forward pass.

    x (N, C_in, H, W), weight (C_out, C_in // groups, kH, kW), bias (C_out,) or None
    -> out (N, C_out, H_out, W_out), same dtype as x.
    """
    n, _, h, w = x.shape
    c_out, _, kh, kw = weight.shape
    h_out, w_out = output_size((h, w), (kh, kw), stride, padding, dilation)

    cols = im2col(pad_hw(x, padding), (kh, kw), stride, dilation, (h_out, w_out))
    # Group g's rows are contiguous in cols because rows are ordered channel-major.
    cols = cols.reshape(n, groups, -1, h_out * w_out)  # (N, G, Cg*K, L)
    w_mat = _weight_per_group(weight.astype(x.dtype, copy=False), groups)  # (G, Og, Cg*K)

    # One matmul per group; np.matmul broadcasts over the leading (N, G) axes.
    out = np.matmul(w_mat[None], cols)  # (N, G, Og, L)
    out = out.reshape(n, c_out, h_out, w_out)
    if bias is not None:
        out += bias.astype(x.dtype, copy=False).reshape(1, c_out, 1, 1)
    return out


def conv2d_backward_input(
    grad_out: np.ndarray,
    weight: np.ndarray,
    input_shape: tuple[int, int, int, int],
    stride: IntPair,
    padding: IntPair,
    dilation: IntPair,
    groups: int,
) -> np.ndarray:
    """Gradient of the loss w.r.t. the conv input.

    grad_out (N, C_out, H_out, W_out), weight (C_out, C_in // groups, kH, kW)
    -> grad_x of input_shape (N, C_in, H, W), same dtype as grad_out.
    """
    n, c_in, h, w = input_shape
    _, _, kh, kw = weight.shape
    _, _, h_out, w_out = grad_out.shape
    ph, pw = padding

    g = grad_out.reshape(n, groups, -1, h_out * w_out)  # (N, G, Og, L)
    w_mat = _weight_per_group(weight.astype(grad_out.dtype, copy=False), groups)
    # out = W @ cols  =>  d cols = W^T @ d out, one matmul per group.
    grad_cols = np.matmul(w_mat.transpose(0, 2, 1)[None], g)  # (N, G, Cg*K, L)

    padded_shape = (n, c_in, h + 2 * ph, w + 2 * pw)
    grad_x_padded = col2im(
        grad_cols.reshape(n, c_in * kh * kw, h_out * w_out),
        padded_shape,
        (kh, kw),
        stride,
        dilation,
        (h_out, w_out),
    )
    # Padding pixels are constants, not inputs: drop their gradient.
    return np.ascontiguousarray(grad_x_padded[:, :, ph : ph + h, pw : pw + w])


def conv2d_backward_weight(
    x: np.ndarray,
    grad_out: np.ndarray,
    weight_shape: tuple[int, int, int, int],
    stride: IntPair,
    padding: IntPair,
    dilation: IntPair,
    groups: int,
) -> np.ndarray:
    """Gradient of the loss w.r.t. the conv weight.

    x (N, C_in, H, W), grad_out (N, C_out, H_out, W_out)
    -> grad_w of weight_shape (C_out, C_in // groups, kH, kW), same dtype as x.
    """
    n = x.shape[0]
    c_out, _, kh, kw = weight_shape
    _, _, h_out, w_out = grad_out.shape
    length = h_out * w_out

    cols = im2col(pad_hw(x, padding), (kh, kw), stride, dilation, (h_out, w_out))
    # Put the batch next to the pixels so the sum over images and pixels is one matmul:
    # cols (N, G, Cg*K, L) -> (G, Cg*K, N*L);  grad_out (N, G, Og, L) -> (G, Og, N*L)
    cols = cols.reshape(n, groups, -1, length).transpose(1, 2, 0, 3).reshape(groups, -1, n * length)
    g = grad_out.astype(x.dtype, copy=False).reshape(n, groups, -1, length)
    g = g.transpose(1, 2, 0, 3).reshape(groups, -1, n * length)

    # out = W @ cols  =>  dW = d out @ cols^T, one matmul per group.
    grad_w = np.matmul(g, cols.transpose(0, 2, 1))  # (G, Og, Cg*K)
    return grad_w.reshape(weight_shape)


def conv2d_backward(
    grad_out: np.ndarray,
    x: np.ndarray,
    weight: np.ndarray,
    stride: IntPair,
    padding: IntPair,
    dilation: IntPair,
    groups: int,
    output_mask: tuple[bool, bool] = (True, True),
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Both gradients of the conv in one call, as a training step's backward asks for
    them (PyTorch's ``convolution_backward``): ``(grad_x, grad_w)``, each None where
    ``output_mask`` = (input, weight) does not ask for it.

    grad_out (N, C_out, H_out, W_out), x (N, C_in, H, W), weight (C_out, C_in // groups,
    kH, kW) -> grad_x like x, grad_w like weight. Here the two functions above; a
    backend may compute both in one sweep over grad_out.
    """
    need_x, need_w = output_mask
    args = (stride, padding, dilation, groups)
    grad_x = conv2d_backward_input(grad_out, weight, x.shape, *args) if need_x else None
    grad_w = conv2d_backward_weight(x, grad_out, weight.shape, *args) if need_w else None
    return grad_x, grad_w
