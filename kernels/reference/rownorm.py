"""Layer norm and group norm in plain NumPy: both standardise the rows of a 2-D view.

- LayerNorm over the last dims ``normalized_shape`` of x: view x as (M, D) with
  D = prod(normalized_shape); each row is one sample (one position, for sequences).
- GroupNorm with G groups on (N, C, *spatial): view x as (N * G, C / G * prod(spatial));
  each row is one group of channels of one image. (G = C is instance norm, G = 1 is a
  layer norm over (C, H, W).)

Unlike batch norm, no statistic crosses the batch, so training and evaluation are the
same computation and there are no running estimates. Per row r, with D values:

    mean_r = sum(x_r) / D,   var_r = sum((x_r - mean_r)^2) / D     (biased, as in PyTorch)
    rstd_r = 1 / sqrt(var_r + eps),   xhat = (x - mean_r) * rstd_r

The learnable affine map that follows differs (one weight per element of
normalized_shape vs one per channel), so the ops apply it; these kernels only standardise.
"""

from __future__ import annotations

import numpy as np


def row_norm_forward(x: np.ndarray, eps: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Standardise each row of ``x``.

    x (M, D) -> xhat (M, D), mean (M,), rstd (M,), all in x's dtype.
    """
    mean = x.mean(axis=1)
    centered = x - mean[:, None]
    var = (centered * centered).mean(axis=1)  # two-pass: no cancellation for large means
    with np.errstate(divide="ignore"):  # eps=0 on a constant row: inf, then NaN (as torch)
        rstd = (1.0 / np.sqrt(var + eps)).astype(x.dtype, copy=False)
    with np.errstate(invalid="ignore"):
        xhat = centered * rstd[:, None]
    return xhat, mean, rstd


def row_norm_backward(grad_xhat: np.ndarray, xhat: np.ndarray, rstd: np.ndarray) -> np.ndarray:
    """Gradient of `row_norm_forward` w.r.t. x, given d loss / d xhat.

    grad_xhat, xhat (M, D); rstd (M,) -> grad_x (M, D).

    Every xhat in a row depends on every x of the row (through mean and var), so with
    g = grad_xhat and means over the row:

        grad_x = rstd * (g - mean(g) - xhat * mean(g * xhat))

    the scaled gradient minus its mean (the path through `mean`) minus its projection on
    xhat (the path through `var`) - the same form as batch norm's, along rows.
    """
    g = grad_xhat.astype(xhat.dtype, copy=False)
    mean_g = g.mean(axis=1, keepdims=True)
    mean_g_xhat = (g * xhat).mean(axis=1, keepdims=True)
    return rstd[:, None] * (g - mean_g - xhat * mean_g_xhat)
