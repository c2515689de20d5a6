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

    fresh_gradients = True  # the kernels allocate every gradient they return

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


def _check_buffer(v: np.ndarray | None, op: str, name: str) -> None:
    """Buffers updated in place must already be native float arrays: a converted copy
    (what `Function.apply` makes of other arrays) would silently lose the update."""
    if v is None or isinstance(v, Tensor):
        return
    if not isinstance(v, np.ndarray):
        raise TypeError(
            f"{op}: {name} must be an ndarray (a module buffer), got {type(v).__name__}"
        )
    if v.dtype not in (np.dtype(np.float32), np.dtype(np.float64)) or not v.flags.writeable:
        raise TypeError(
            f"{op}: {name} is updated in place when training, so it must be a writable "
            f"native-endian float32/float64 ndarray, got dtype {v.dtype}"
            + ("" if v.flags.writeable else " (read-only)")
        )


def _update_running(running_mean, running_var, mean, var, count, momentum) -> None:
    """In place: running = (1 - m) * running + m * batch, with the unbiased variance."""
    running_mean *= 1 - momentum
    running_mean += momentum * mean.astype(running_mean.dtype)
    running_var *= 1 - momentum
    running_var += momentum * (var * (count / (count - 1))).astype(running_var.dtype)


class BatchNormEval(Function):
    """Normalise with fixed running statistics (evaluation mode): a per-channel affine map."""

    fresh_gradients = True

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
    c = x.shape[1]
    momentum = check_real(momentum, "momentum", op, minimum=0.0, maximum=1.0)
    eps = check_real(eps, "eps", op, minimum=0.0)  # eps=0: eval mode only, as in PyTorch
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
    if x.size == 0:  # as torch: nothing to normalise, an empty output, running stats untouched
        shape = (1, c) + (1,) * (x.ndim - 2)
        out = x if weight is None else x * weight.reshape(shape)
        return out if bias is None else out + bias.reshape(shape)
    if training:
        count = x.size // max(c, 1)
        if count < 2:
            raise ValueError(
                f"{op}: expected more than 1 value per channel when training, got input {x.shape}"
            )
        if eps <= 0:  # a constant channel would divide 0 by 0 (PyTorch 2.13 refuses it too)
            raise ValueError(f"{op}: eps must be positive during training, got {eps}")
        if (running_mean is None) != (running_var is None):
            raise ValueError(f"{op}: give both running_mean and running_var, or neither")
        for name, v in (("running_mean", running_mean), ("running_var", running_var)):
            _check_buffer(v, op, name)
        return BatchNormTrain.apply(x, weight, bias, running_mean, running_var, momentum, eps)
    if running_mean is None or running_var is None:
        raise ValueError(f"{op}: eval mode needs running_mean and running_var")
    return BatchNormEval.apply(x, running_mean, running_var, weight, bias, float(eps))


# -- layer norm and group norm: standardise rows of a 2-D view (kernels: row_norm_*) ------


def _affine_backward(ctx: Context, g: np.ndarray, xhat: np.ndarray, weight, axes, shape):
    """Gradients of out = xhat * weight + bias: (d xhat, d weight, d bias). ``axes`` are
    the axes weight is broadcast over, ``shape`` how it broadcasts."""
    gw = (g * xhat).sum(axis=axes).reshape(weight.shape) if ctx.needs_input_grad[1] else None
    gb = g.sum(axis=axes).reshape(ctx.bias_shape) if ctx.needs_input_grad[2] else None
    g_xhat = g if weight is None else g * weight.reshape(shape)
    return g_xhat, gw, gb


class LayerNorm(Function):
    """Standardise over the last ``k`` dimensions, then ``* weight + bias`` elementwise
    (weight, bias of shape ``x.shape[-k:]``)."""

    @staticmethod
    def forward(ctx, x, weight, bias, k, eps):
        d = int(np.prod(x.shape[x.ndim - k :]))
        rows = x.reshape(int(np.prod(x.shape[: x.ndim - k])), d)
        xhat, _, rstd = kernels().row_norm_forward(rows, eps)
        xhat = xhat.reshape(x.shape)
        out = xhat if weight is None else xhat * weight
        out = out if bias is None else out + bias
        ctx.save_for_backward(xhat, rstd, weight)
        ctx.k, ctx.rows, ctx.bias_shape = k, rows.shape, None if bias is None else bias.shape
        return out

    @staticmethod
    def backward(ctx: Context, g: np.ndarray):
        xhat, rstd, weight = ctx.saved_tensors
        axes = tuple(range(xhat.ndim - ctx.k))  # the leading (batch) axes
        shape = xhat.shape[xhat.ndim - ctx.k :]
        g_xhat, gw, gb = _affine_backward(ctx, g, xhat, weight, axes, shape)
        return _row_norm_input_grad(ctx, g_xhat, xhat, rstd), gw, gb, None, None


def _row_norm_input_grad(ctx: Context, g_xhat, xhat, rstd):
    """The input gradient of a standardisation over the rows ``ctx.rows`` (LayerNorm,
    GroupNorm), or None when the input needs none."""
    if not ctx.needs_input_grad[0]:
        return None
    rows = ctx.rows
    gx = kernels().row_norm_backward(g_xhat.reshape(rows), xhat.reshape(rows), rstd)
    return gx.reshape(xhat.shape)


class GroupNorm(Function):
    """Standardise each group of ``C / G`` channels of each sample (over the channels and
    all spatial positions), then ``* weight + bias`` per channel (weight, bias (C,))."""

    @staticmethod
    def forward(ctx, x, weight, bias, groups, eps):
        n, c = x.shape[:2]
        rows = x.reshape(n * groups, c // groups * int(np.prod(x.shape[2:])))
        xhat, _, rstd = kernels().row_norm_forward(rows, eps)
        xhat = xhat.reshape(x.shape)
        per_channel = (1, c) + (1,) * (x.ndim - 2)
        out = xhat if weight is None else xhat * weight.reshape(per_channel)
        out = out if bias is None else out + bias.reshape(per_channel)
        ctx.save_for_backward(xhat, rstd, weight)
        ctx.rows, ctx.bias_shape = rows.shape, None if bias is None else bias.shape
        return out

    @staticmethod
    def backward(ctx: Context, g: np.ndarray):
        xhat, rstd, weight = ctx.saved_tensors
        axes = (0,) + tuple(range(2, xhat.ndim))  # every axis but the channel axis
        shape = (1, xhat.shape[1]) + (1,) * (xhat.ndim - 2)
        g_xhat, gw, gb = _affine_backward(ctx, g, xhat, weight, axes, shape)
        return _row_norm_input_grad(ctx, g_xhat, xhat, rstd), gw, gb, None, None


def _check_eps(eps: float, op: str) -> float:
    if isinstance(eps, bool) or not isinstance(eps, int | float | np.floating) or not eps >= 0:
        raise ValueError(f"{op}: eps must be a number >= 0, got {eps!r}")
    return float(eps)


def layer_norm(
    x: Tensor,
    normalized_shape: int | tuple[int, ...] | list[int],
    weight: Tensor | None = None,
    bias: Tensor | None = None,
    eps: float = 1e-5,
) -> Tensor:
    """Layer norm over the trailing dimensions ``normalized_shape`` of ``x`` (any shape
    ending in it), as ``torch.nn.functional.layer_norm``: each sample is standardised with
    its own mean and biased variance, then scaled by ``weight`` and shifted by ``bias``
    (both of shape ``normalized_shape``, or None). Output: the shape of x."""
    op = "layer_norm"
    check_float(x, op)
    shape = (
        (normalized_shape,) if isinstance(normalized_shape, int | np.integer) else normalized_shape
    )
    if not isinstance(shape, tuple | list) or not all(
        isinstance(s, int | np.integer) and not isinstance(s, bool) for s in shape
    ):
        raise TypeError(
            f"{op}: normalized_shape must be an int or a tuple of ints, got {normalized_shape!r}"
        )
    shape = tuple(int(s) for s in shape)
    if not shape or len(shape) > x.ndim or x.shape[x.ndim - len(shape) :] != shape:
        raise ValueError(
            f"{op}: input shape {x.shape} does not end in normalized_shape {shape} "
            f"(expected input of shape (*, {', '.join(map(str, shape))}))"
        )
    check_same_dtype(op, input=x, weight=weight, bias=bias)
    for name, v in (("weight", weight), ("bias", bias)):
        if v is not None and v.shape != shape:
            raise ValueError(f"{op}: {name} must have shape {shape}, got {v.shape}")
    return LayerNorm.apply(x, weight, bias, len(shape), _check_eps(eps, op))


def group_norm(
    x: Tensor,
    num_groups: int,
    weight: Tensor | None = None,
    bias: Tensor | None = None,
    eps: float = 1e-5,
) -> Tensor:
    """Group norm of (N, C, *) inputs, as ``torch.nn.functional.group_norm``: the C
    channels are split into ``num_groups`` groups; each group of each sample is
    standardised over its channels and positions, then ``weight``, ``bias`` (C,) apply
    per channel. Works the same in training and evaluation (no batch statistics)."""
    op = "group_norm"
    check_float(x, op)
    if x.ndim < 2:
        raise ValueError(f"{op}: expected input of at least 2 dimensions (N, C, *), got {x.shape}")
    if isinstance(num_groups, bool) or not isinstance(num_groups, int | np.integer):
        raise TypeError(f"{op}: num_groups must be an int, got {num_groups!r}")
    c = x.shape[1]
    if num_groups <= 0 or c % num_groups:
        raise ValueError(
            f"{op}: the {c} channels of input {x.shape} must be divisible by num_groups "
            f"({num_groups}), which must be positive"
        )
    check_same_dtype(op, input=x, weight=weight, bias=bias)
    for name, v in (("weight", weight), ("bias", bias)):
        if v is not None and v.shape != (c,):
            raise ValueError(
                f"{op}: {name} must have shape ({c},) for input {x.shape}, got {v.shape}"
            )
    return GroupNorm.apply(x, weight, bias, int(num_groups), _check_eps(eps, op))
