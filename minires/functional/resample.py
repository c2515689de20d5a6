"""Resampling: `one_hot` (class indices -> one-hot rows) and `interpolate` (resize NCHW
images by nearest neighbour or bilinear interpolation) with torch's index rules.

Both interpolation modes are separable: each output row reads one (nearest) or two
(bilinear) input rows, and each output column one or two input columns. So an op is two
gathers along H and W, and its backward the two matching scatter-adds - every output
gradient goes back to the pixels it was read from, with the weights it was read with.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np

from minires.autograd import Context, Function
from minires.functional._util import check_float, check_int, check_real, check_tensor
from minires.tensor import Tensor

# -- one_hot ----------------------------------------------------------------------------


def one_hot(tensor: Tensor, num_classes: int = -1) -> Tensor:
    """Class indices of any shape S -> int64 one-hot rows of shape ``S + (num_classes,)``:
    ``out[..., k] = 1`` where ``tensor[...] == k``.

    ``num_classes=-1`` takes the largest index + 1. Indices must be integers in
    ``[0, num_classes)``. Any integer dtype is accepted (torch takes int64 only); float
    input is refused, since minires makes ``mr.tensor([0, 2])`` float32 - build indices
    with ``dtype="long"`` or ``.long()``. Not differentiable (integer in and out)."""
    check_tensor(tensor, "one_hot", "tensor")
    if tensor.dtype.kind not in "iu":
        raise TypeError(
            f"one_hot: tensor must hold integer class indices, got {tensor.dtype} (make it "
            "with dtype='long' or convert with .long())"
        )
    num_classes = check_int(num_classes, "num_classes", "one_hot")
    if num_classes < -1:
        raise ValueError(f"one_hot: num_classes must be -1 (infer) or >= 0, got {num_classes}")
    idx = tensor.data
    if idx.size == 0 and num_classes <= 0:  # torch refuses num_classes=0 here too
        raise ValueError(
            f"one_hot: cannot infer the number of classes from an empty tensor of shape "
            f"{tensor.shape}; pass num_classes > 0"
        )
    if idx.size:
        low, high = int(idx.min()), int(idx.max())
        if low < 0:
            raise ValueError(f"one_hot: class values must be non-negative, got {low}")
        if num_classes == -1:
            num_classes = high + 1
        if high >= num_classes:
            raise ValueError(
                f"one_hot: class values must be smaller than num_classes={num_classes}, got {high}"
            )
    out = np.zeros(idx.shape + (num_classes,), np.int64)
    np.put_along_axis(out, idx[..., None].astype(np.intp), 1, axis=-1)
    return Tensor._wrap(out)


# -- interpolate: the index rules --------------------------------------------------------

_TORCH_MODES = ("nearest", "linear", "bilinear", "bicubic", "trilinear", "area")
_TORCH_MODES += ("nearest-exact", "lanczos")
_MODES = ("nearest", "bilinear")


def nearest_index(n_in: int, n_out: int, scale: float | None) -> np.ndarray:
    """Source index of each of the ``n_out`` outputs along one axis, torch's "nearest":
    ``min(floor(dst * s), n_in - 1)`` with ``s = 1 / scale_factor`` when a scale factor
    was given, else ``n_in / n_out``; ``s`` and the product are float32 whatever the
    dtype, and torch special-cases ``n_out == n_in`` (identity, even if ``1 / scale``
    says otherwise) and ``n_out == 2 * n_in`` (``dst // 2``)."""
    dst = np.arange(n_out)
    if n_out == n_in:
        return dst
    if n_out == 2 * n_in:
        return dst // 2
    s = np.float32(1.0 / scale) if scale else np.float32(n_in) / np.float32(n_out)
    src = np.floor(dst.astype(np.float32) * s).astype(np.int64)
    return np.minimum(src, n_in - 1)


class Taps(NamedTuple):
    """Linear interpolation along one axis: ``out[i] = w0[i] * x[i0[i]] + w1[i] * x[i1[i]]``."""

    i0: np.ndarray
    i1: np.ndarray
    w0: np.ndarray
    w1: np.ndarray


def linear_taps(
    n_in: int, n_out: int, scale: float | None, align_corners: bool, dtype: np.dtype
) -> Taps:
    """torch's source position of each output along one axis and the two input taps around it.

    ``align_corners=True`` maps the corner pixels' centres onto each other:
    ``src = dst * (n_in - 1) / (n_out - 1)`` (the scale factor is not used). Otherwise
    pixel areas: ``src = (dst + 0.5) * s - 0.5`` clamped at 0, with ``s = 1 / scale_factor``
    if given, else ``n_in / n_out``. Computed in ``dtype`` as torch does (its floor is in
    float32); ``n_out == n_in`` copies, as torch special-cases it."""
    if n_out == n_in:
        i = np.arange(n_in)
        return Taps(i, i, np.ones(n_in, dtype), np.zeros(n_in, dtype))
    ft = dtype.type
    dst = np.arange(n_out).astype(dtype)
    if align_corners:
        s = ft(n_in - 1) / ft(n_out - 1) if n_out > 1 else ft(0)
        src = s * dst
    else:
        s = ft(1.0 / scale) if scale else ft(n_in) / ft(n_out)
        src = np.maximum(s * (dst + ft(0.5)) - ft(0.5), ft(0))
    i0 = np.minimum(np.floor(src.astype(np.float32)).astype(np.int64), n_in - 1)
    w1 = np.clip(src - i0.astype(dtype), ft(0), ft(1))
    i1 = np.where(i0 < n_in - 1, i0 + 1, i0)
    return Taps(i0, i1, ft(1) - w1, w1)


def _scatter_sum(g: np.ndarray, idx: np.ndarray, size: int, axis: int) -> np.ndarray:
    """The adjoint of ``g = x.take(idx, axis)``: slices of ``g`` summed into the positions
    ``idx`` (non-decreasing) of an array with ``size`` entries along ``axis``."""
    shape = list(g.shape)
    shape[axis] = size
    out = np.zeros(shape, g.dtype)
    if g.size == 0:
        return out
    # idx is sorted, so each input position is read by one contiguous run of outputs:
    # reduceat sums the runs (far faster than np.add.at)
    targets, starts = np.unique(idx, return_index=True)
    where = [slice(None)] * g.ndim
    where[axis] = targets
    out[tuple(where)] = np.add.reduceat(g, starts, axis=axis)
    return out


class UpsampleNearest2d(Function):
    """out[n, c, i, j] = x[n, c, rows[i], cols[j]]: (N, C, H, W) -> (N, C, H', W').

    Backward: each output gradient is added to the input pixel it copies."""

    @staticmethod
    def forward(ctx: Context, x: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        ctx.in_hw, ctx.rows, ctx.cols = x.shape[2:], rows, cols
        return x[:, :, rows][:, :, :, cols]

    @staticmethod
    def backward(ctx: Context, g: np.ndarray):
        g = _scatter_sum(g, ctx.cols, ctx.in_hw[1], axis=3)
        return _scatter_sum(g, ctx.rows, ctx.in_hw[0], axis=2), None, None


class UpsampleBilinear2d(Function):
    """out = linear interpolation along H (taps ``rows``) then along W (taps ``cols``):
    (N, C, H, W) -> (N, C, H', W'); each output mixes the 2x2 input pixels around its
    source position.

    Backward: the adjoint, along W then H - each output gradient goes to the two taps it
    read, times their weights."""

    @staticmethod
    def forward(ctx: Context, x: np.ndarray, rows: Taps, cols: Taps) -> np.ndarray:
        ctx.in_hw, ctx.rows, ctx.cols = x.shape[2:], rows, cols
        h = x[:, :, rows.i0] * rows.w0[:, None] + x[:, :, rows.i1] * rows.w1[:, None]
        return h[..., cols.i0] * cols.w0 + h[..., cols.i1] * cols.w1

    @staticmethod
    def backward(ctx: Context, g: np.ndarray):
        (height, width), r, c = ctx.in_hw, ctx.rows, ctx.cols
        gh = _scatter_sum(g * c.w0, c.i0, width, 3) + _scatter_sum(g * c.w1, c.i1, width, 3)
        gx = _scatter_sum(gh * r.w0[:, None], r.i0, height, 2)
        gx += _scatter_sum(gh * r.w1[:, None], r.i1, height, 2)
        return gx, None, None


# -- interpolate -------------------------------------------------------------------------


def _two(value: Any, name: str) -> tuple[Any, Any]:
    """One value for H and W, or a pair."""
    if isinstance(value, tuple | list):
        if len(value) != 2:
            raise ValueError(
                f"interpolate: {name} must be one value or one per spatial dimension (H, W) "
                f"of the 4-D input, got {value!r}"
            )
        return value[0], value[1]
    return value, value


def _output_size(
    hw: tuple[int, int], size: Any, scale_factor: Any, recompute_scale_factor: Any
) -> tuple[tuple[int, int], tuple[float | None, float | None]]:
    """((H', W'), (scale_h, scale_w)) as torch derives them: ``size`` as given, or
    ``floor(H * scale_factor)``; the scales reach the index rules only when a scale factor
    was given and ``recompute_scale_factor`` is not True."""
    if size is not None and scale_factor is not None:
        raise ValueError("interpolate: only one of size or scale_factor should be defined")
    if size is None and scale_factor is None:
        raise ValueError("interpolate: either size or scale_factor should be defined")
    if recompute_scale_factor is not None and not isinstance(recompute_scale_factor, bool):
        raise TypeError(
            f"interpolate: recompute_scale_factor must be a bool or None, "
            f"got {recompute_scale_factor!r}"
        )
    if size is not None:
        if recompute_scale_factor:
            raise ValueError(
                "interpolate: recompute_scale_factor is not meaningful with an explicit size"
            )
        out = tuple(check_int(v, "size", "interpolate") for v in _two(size, "size"))
        return out, (None, None)
    factors = tuple(
        check_real(v, "scale_factor", "interpolate") for v in _two(scale_factor, "scale_factor")
    )
    if min(factors) <= 0:
        raise ValueError(f"interpolate: scale_factor must be > 0, got {scale_factor!r}")
    out = tuple(math.floor(float(n) * f) for n, f in zip(hw, factors))
    return out, (None, None) if recompute_scale_factor else factors


def interpolate(
    input: Tensor,  # noqa: A002 - torch's argument name
    size: int | tuple[int, int] | None = None,
    scale_factor: float | tuple[float, float] | None = None,
    mode: str = "nearest",
    align_corners: bool | None = None,
    recompute_scale_factor: bool | None = None,
    antialias: bool = False,
) -> Tensor:
    """Resize images: (N, C, H, W) -> (N, C, H', W'), as ``torch.nn.functional.interpolate``.

    Give ``size`` (H', W') (or one int for both) or ``scale_factor`` (one or a pair; then
    H' = floor(H * scale_factor)). Modes:

    * ``"nearest"``: output pixel (i, j) copies input pixel
      ``(floor(i * H / H'), floor(j * W / W'))`` - torch's rule (with a scale factor it
      uses ``1 / scale_factor`` for ``H / H'`` unless ``recompute_scale_factor=True``);
    * ``"bilinear"``: linear interpolation between the 2x2 nearest input pixels;
      ``align_corners=False`` (default) treats pixels as areas,
      ``align_corners=True`` maps the corner pixels onto each other.

    Float32 or float64 input; the gradient flows to ``input``. Other modes, other input
    ranks and ``antialias=True`` are not implemented."""
    check_float(input, "interpolate")
    if not isinstance(mode, str) or mode not in _TORCH_MODES:
        raise ValueError(f"interpolate: unknown mode {mode!r}; expected one of {_MODES}")
    if mode not in _MODES:
        raise NotImplementedError(
            f"interpolate: mode {mode!r} is not implemented in minires (only {_MODES})"
        )
    if input.ndim != 4:
        raise ValueError(f"interpolate: expected 4-D input (N, C, H, W), got shape {input.shape}")
    if align_corners is not None and not isinstance(align_corners, bool):
        raise TypeError(f"interpolate: align_corners must be a bool or None, got {align_corners!r}")
    if mode == "nearest" and align_corners is not None:
        raise ValueError(
            "interpolate: align_corners option can only be set with the interpolating modes "
            "(bilinear)"
        )
    if not isinstance(antialias, bool):
        raise TypeError(f"interpolate: antialias must be a bool, got {antialias!r}")
    if antialias:
        raise NotImplementedError("interpolate: antialias=True is not implemented in minires")
    hw = input.shape[2:]
    out_hw, scales = _output_size(hw, size, scale_factor, recompute_scale_factor)
    if min(hw) <= 0 or min(out_hw) <= 0:
        raise ValueError(
            f"interpolate: input and output sizes must be > 0, got input (H, W) = {hw} and "
            f"output (H', W') = {out_hw}"
        )
    if mode == "nearest":
        rows, cols = (nearest_index(n, m, s) for n, m, s in zip(hw, out_hw, scales))
        return UpsampleNearest2d.apply(input, rows, cols)
    rows, cols = (
        linear_taps(n, m, s, bool(align_corners), input.dtype)
        for n, m, s in zip(hw, out_hw, scales)
    )
    return UpsampleBilinear2d.apply(input, rows, cols)
