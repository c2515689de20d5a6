"""Batch normalisation in plain NumPy.

Each channel c is normalised with statistics taken over every other axis: over
(N, H, W) for images (N, C, H, W), over N for features (N, C). With
M = number of values per channel:

    mean = sum(x) / M,  var = sum((x - mean)^2) / M        (biased, as in PyTorch)
    xhat = (x - mean) / sqrt(var + eps)
    out  = weight * xhat + bias

Training uses the batch statistics (so the gradient flows through mean and var too);
evaluation uses fixed running statistics (so normalisation is just an affine map).

The batch statistics are computed in float64 whatever the input dtype: in float32 the
squares overflow for |x| > ~1.8e19 (var = inf, invstd = 0, every gradient 0), while
invstd itself (~1e-20 there) is an ordinary float32 number.
"""

from __future__ import annotations

import numpy as np


def _reduce_axes(x: np.ndarray) -> tuple[int, ...]:
    """Axes to average over: every axis except the channel axis 1."""
    return (0,) + tuple(range(2, x.ndim))


def _per_channel(v: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Reshape a (C,) vector so it broadcasts against x: (1, C, 1, 1) or (1, C)."""
    return v.astype(x.dtype, copy=False).reshape((1, -1) + (1,) * (x.ndim - 2))


def batch_norm_train_forward(
    x: np.ndarray, weight: np.ndarray, bias: np.ndarray, eps: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Batch norm forward with batch statistics.

    x (N, C, H, W) or (N, C); weight, bias (C,)
    -> out (same shape and dtype as x), mean (C,), var (C,) (biased), both float64.
    """
    axes = _reduce_axes(x)
    mean = x.mean(axis=axes, dtype=np.float64)
    var = x.var(axis=axes, dtype=np.float64)  # ddof=0: the biased variance normalises
    invstd = 1.0 / np.sqrt(var + eps)
    xhat = (x - _per_channel(mean, x)) * _per_channel(invstd, x)
    out = xhat * _per_channel(weight, x) + _per_channel(bias, x)
    return out.astype(x.dtype, copy=False), mean, var


def batch_norm_train_backward(
    grad_out: np.ndarray,
    x: np.ndarray,
    mean: np.ndarray,
    var: np.ndarray,
    weight: np.ndarray,
    eps: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gradients of training-mode batch norm.

    grad_out, x (N, C, H, W) or (N, C); mean, var (C,) as the forward returned them
    (float64); weight (C,) -> grad_x (shape of x), grad_weight (C,), grad_bias (C,), in
    x's dtype.

    Because mean and var depend on every x in the channel, d out / d x is not diagonal.
    Working it through gives the compact form (g = grad_out, M = values per channel):

        grad_x = weight * invstd / M * (M * g - sum(g) - xhat * sum(g * xhat))

    i.e. the plain scaled gradient, minus its mean (the path through `mean`), minus its
    projection on xhat (the path through `var`).
    """
    axes = _reduce_axes(x)
    m = x.size // x.shape[1]  # values per channel
    g = grad_out.astype(x.dtype, copy=False)
    invstd = 1.0 / np.sqrt(np.asarray(var, np.float64) + eps)  # never overflows (see top)
    xhat = (x - _per_channel(mean, x)) * _per_channel(invstd, x)

    sum_g = g.sum(axis=axes, dtype=np.float64)  # (C,)  = grad_bias
    # (C,) = grad_weight, as sum(g * (x - mean)) * invstd (PyTorch's order: with
    # invstd = inf it is +-inf, where sum(g * xhat) would add infs of both signs)
    centred = x - _per_channel(mean, x)
    sum_g_xhat = (g * centred).sum(axis=axes, dtype=np.float64) * invstd

    scale = _per_channel(weight * invstd / m, x)
    grad_x = scale * (m * g - _per_channel(sum_g, x) - xhat * _per_channel(sum_g_xhat, x))
    dt = x.dtype
    return grad_x.astype(dt, copy=False), sum_g_xhat.astype(dt), sum_g.astype(dt)


def batch_norm_eval_forward(
    x: np.ndarray,
    running_mean: np.ndarray,
    running_var: np.ndarray,
    weight: np.ndarray,
    bias: np.ndarray,
    eps: float,
) -> np.ndarray:
    """Batch norm forward with fixed (running) statistics.

    x (N, C, H, W) or (N, C); running_mean, running_var, weight, bias (C,)
    -> out (shape of x), in x's dtype.
    """
    invstd = 1.0 / np.sqrt(running_var + eps)
    xhat = (x - _per_channel(running_mean, x)) * _per_channel(invstd, x)
    out = xhat * _per_channel(weight, x) + _per_channel(bias, x)
    return out.astype(x.dtype, copy=False)


def batch_norm_eval_backward(
    grad_out: np.ndarray,
    x: np.ndarray,
    running_mean: np.ndarray,
    running_var: np.ndarray,
    weight: np.ndarray,
    eps: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gradients of evaluation-mode batch norm.

    grad_out, x (N, C, H, W) or (N, C); running_mean, running_var, weight (C,)
    -> grad_x (shape of x), grad_weight (C,), grad_bias (C,).

    The statistics are constants here, so out = a * x + b per channel and
    grad_x is simply grad_out * weight * invstd.
    """
    axes = _reduce_axes(x)
    g = grad_out.astype(x.dtype, copy=False)
    invstd = 1.0 / np.sqrt(running_var + eps)

    grad_x = g * _per_channel(weight * invstd, x)
    # sum(g * xhat) computed as sum(g * (x - mean)) * invstd, as in training
    centred = x - _per_channel(running_mean, x)
    grad_weight = (g * centred).sum(axis=axes) * invstd
    grad_bias = g.sum(axis=axes)
    dt = x.dtype
    return grad_x.astype(dt, copy=False), grad_weight.astype(dt), grad_bias
