"""Batch normalisation with PyTorch's conventions (biased variance to normalise, unbiased
variance into the running estimate, ``running = (1 - momentum) * running + momentum * batch``)."""

from __future__ import annotations

import numpy as np

from minires.autograd import Context, Function
from minires.backend import kernels
from minires.functional._util import check_float, check_ndim, check_real, check_same_dtype
from minires.tensor import Tensor


class BatchNormTrain(Function):
    """Normalise with the batch's own statistics (training mode) and fold them into the
    running estimates."""

    @staticmethod
    def forward(ctx, x, weight, bias, running_mean, running_var, momentum, eps):
        w = np.ones(x.shape[1], x.dtype) if weight is None else weight
        b = np.zeros(x.shape[1], x.dtype) if bias is None else bias
        out, mean, var = kernels().batch_norm_train_forward(x, w, b, eps)
        if running_mean is not None:
            _update_running(running_mean, running_var, mean, var, x.size // x.shape[1], momentum)
        ctx.save_for_backward(x, mean, var, w)
        ctx.eps = eps
        return out

    @staticmethod
    def backward(ctx: Context, g: np.ndarray):
        x, mean, var, w = ctx.saved_tensors
        gx, gw, gb = kernels().batch_norm_train_backward(g, x, mean, var, w, ctx.eps)
        return gx, gw, gb, None, None, None, None


def _update_running(running_mean, running_var, mean, var, count, momentum) -> None:
    """In place: running = (1 - m) * running + m * batch, with the unbiased variance."""
    running_mean *= 1 - momentum
    running_mean += momentum * mean.astype(running_mean.dtype)
    running_var *= 1 - momentum
    running_var += momentum * (var * (count / (count - 1))).astype(running_var.dtype)


class BatchNormEval(Function):
    """Normalise with fixed running statistics (evaluation mode): a per-channel affine map."""

    @staticmethod
    def forward(ctx, x, running_mean, running_var, weight, bias, eps):
        w = np.ones(x.shape[1], x.dtype) if weight is None else weight
        b = np.zeros(x.shape[1], x.dtype) if bias is None else bias
        # Snapshot: the buffers may change before backward runs.
        rm, rv = running_mean.astype(x.dtype), running_var.astype(x.dtype)
        ctx.save_for_backward(x, rm, rv, w)
        ctx.eps = eps
        return kernels().batch_norm_eval_forward(x, rm, rv, w, b, eps)

    @staticmethod
    def backward(ctx: Context, g: np.ndarray):
        x, rm, rv, w = ctx.saved_tensors
        gx, gw, gb = kernels().batch_norm_eval_backward(g, x, rm, rv, w, ctx.eps)
        return gx, None, None, gw, gb, None


def batch_norm(
    x: Tensor,
    running_mean: np.ndarray | None,
    running_var: np.ndarray | None,
    weight: Tensor | None = None,
    bias: Tensor | None = None,
    training: bool = False,
    momentum: float = 0.1,
    eps: float = 1e-5,
) -> Tensor:
    """Batch norm over (N, C, H, W) or (N, C) inputs, per channel C.

    In training mode the batch statistics normalise ``x`` and ``running_mean`` /
    ``running_var`` (ndarrays, the module's buffers, or None) are updated in place with the
    unbiased batch variance. In eval mode the running statistics normalise.
    """
    op = "batch_norm"
    check_float(x, op)
    check_ndim(x, (2, 4), op, "input", "N, C or N, C, H, W")
    if min(x.shape) < 1:
        raise ValueError(f"{op}: input {x.shape} is empty (a dimension of size 0)")
    c = x.shape[1]
    momentum = check_real(momentum, "momentum", op, minimum=0.0, maximum=1.0)
    eps = check_real(eps, "eps", op, minimum=0.0)  # eps=0 is allowed, as in PyTorch
    if not isinstance(training, bool | int | np.bool_ | np.integer):
        raise TypeError(f"{op}: training must be a bool, got {training!r}")
    training = bool(training)
    for name, v in (("running_mean", running_mean), ("running_var", running_var)):
        if v is None:
            continue
        if not isinstance(v, np.ndarray) or v.dtype.kind != "f":
            raise TypeError(
                f"{op}: {name} must be a float ndarray (the module's buffer) or None, got "
                f"{type(v).__name__}" + (f" of {v.dtype}" if isinstance(v, np.ndarray) else "")
            )
        if v.shape != (c,):
            raise ValueError(f"{op}: {name} must have shape ({c},), got {v.shape}")
        if training and not v.flags.writeable:
            raise ValueError(f"{op}: {name} is read-only but training updates it in place")
    for name, v in (("weight", weight), ("bias", bias)):
        if v is not None:
            check_float(v, op, name)
        if v is not None and v.shape != (c,):
            raise ValueError(
                f"{op}: {name} must have shape ({c},) for input {x.shape}, got {v.shape}"
            )
    check_same_dtype(op, input=x, weight=weight, bias=bias)
    if training:
        count = x.size // max(c, 1)
        if count < 2:
            raise ValueError(
                f"{op}: expected more than 1 value per channel when training, got input {x.shape}"
            )
        if (running_mean is None) != (running_var is None):
            raise ValueError(f"{op}: give both running_mean and running_var, or neither")
        return BatchNormTrain.apply(
            x, weight, bias, running_mean, running_var, momentum, eps
        )
    if running_mean is None or running_var is None:
        raise ValueError(f"{op}: eval mode needs running_mean and running_var")
    return BatchNormEval.apply(x, running_mean, running_var, weight, bias, eps)
