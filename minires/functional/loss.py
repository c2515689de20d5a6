"""log_softmax and cross_entropy, written for numerical stability (max subtracted), and
the mean squared error."""

from __future__ import annotations

import numpy as np

from minires.autograd import Context, Function
from minires.functional._util import check_dim, check_float, check_same_dtype
from minires.tensor import Tensor


def _log_softmax(x: np.ndarray, axis: int) -> np.ndarray:
    if x.shape[axis] == 0:  # no classes: an empty result (max has no identity)
        return np.empty_like(x)
    shifted = x - x.max(axis=axis, keepdims=True)  # exp never overflows
    return shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))


class LogSoftmax(Function):
    """out = x - logsumexp(x, axis)"""

    @staticmethod
    def forward(ctx: Context, x: np.ndarray, axis: int) -> np.ndarray:
        out = _log_softmax(x, axis)
        ctx.save_for_backward(out)
        ctx.axis = axis
        return out

    @staticmethod
    def backward(ctx: Context, g: np.ndarray):
        (out,) = ctx.saved_tensors
        # d out_i / d x_j = delta_ij - softmax_j
        return g - np.exp(out) * g.sum(axis=ctx.axis, keepdims=True), None


class CrossEntropy(Function):
    """Negative log-likelihood of the target classes under softmax(logits), reduced by
    ``reduction`` ("mean", "sum" or "none").

    logits (N, K), target (N,) integer classes. With ``label_smoothing`` e the target
    distribution is (1 - e) * onehot + e / K, as in PyTorch. The gradient is
    (softmax(logits) - that distribution) * g (divided by N for the mean), computed as
    PyTorch composes it (the NLL gradient at the log-probabilities, then log_softmax's
    backward), so that an inf or NaN upstream gradient gives PyTorch's NaN/inf pattern.
    """

    @staticmethod
    def forward(ctx, logits, target, reduction="mean", label_smoothing=0.0):
        logp = _log_softmax(logits, axis=1)
        n = logits.shape[0]
        loss = -logp[np.arange(n), target]
        if label_smoothing:
            loss = (1 - label_smoothing) * loss - label_smoothing * logp.mean(axis=1)
        ctx.save_for_backward(logp, target)
        ctx.reduction, ctx.label_smoothing = reduction, label_smoothing
        return np.asarray(_reduce(loss, reduction), dtype=logits.dtype)

    @staticmethod
    def backward(ctx: Context, g: np.ndarray):
        logp, target = ctx.saved_tensors
        n, k = logp.shape
        e = ctx.label_smoothing
        scale = _reduce_backward(g, n, ctx.reduction)  # 0-d, or (N,) for "none"
        per_sample = np.broadcast_to(scale, (n,)).astype(logp.dtype, copy=False)
        g_logp = np.zeros_like(logp)  # d loss / d log-probabilities, as torch's NLL gives it
        if e:
            g_logp += (-e / k) * per_sample[:, None]
        g_logp[np.arange(n), target] += -(1 - e) * per_sample
        return g_logp - np.exp(logp) * g_logp.sum(axis=1, keepdims=True), None, None, None


class MSELoss(Function):
    """Squared error (input - target)^2, reduced by ``reduction``; both inputs get a
    gradient (2 (input - target), divided by the count for the mean)."""

    @staticmethod
    def forward(ctx, input, target, reduction="mean"):
        diff = input - target
        ctx.save_for_backward(diff)
        ctx.reduction = reduction
        return np.asarray(_reduce(diff * diff, reduction), dtype=diff.dtype)

    @staticmethod
    def backward(ctx: Context, g: np.ndarray):
        (diff,) = ctx.saved_tensors
        grad = 2 * diff * _reduce_backward(g, diff.size, ctx.reduction)
        return (
            grad if ctx.needs_input_grad[0] else None,
            -grad if ctx.needs_input_grad[1] else None,
            None,
        )


REDUCTIONS = ("mean", "sum", "none")


def _reduce(loss: np.ndarray, reduction: str) -> np.ndarray:
    """Per-element losses -> the requested reduction (the mean of nothing is NaN, as torch)."""
    if reduction == "none":
        return loss
    total = loss.sum()
    if reduction == "sum":
        return total
    with np.errstate(invalid="ignore", divide="ignore"):
        return total / loss.size


def _reduce_backward(g: np.ndarray, count: int, reduction: str) -> np.ndarray:
    """The upstream gradient as seen by each element: itself for "none", broadcast for
    "sum", and divided by the count for "mean"."""
    if reduction == "mean":
        with np.errstate(invalid="ignore", divide="ignore"):
            return g / count
    return g


def _check_reduction(reduction: str, op: str) -> str:
    if reduction not in REDUCTIONS:
        raise ValueError(f"{op}: reduction must be one of {REDUCTIONS}, got {reduction!r}")
    return reduction


def log_softmax(x: Tensor, axis: int = -1) -> Tensor:
    """log(softmax(x)) along ``axis``; same shape as x."""
    check_float(x, "log_softmax")
    if x.ndim == 0:
        raise ValueError("log_softmax: needs at least one dimension, got a 0-d tensor")
    return LogSoftmax.apply(x, check_dim(axis, x.ndim, "axis", "log_softmax"))


def softmax(x: Tensor, axis: int = -1) -> Tensor:
    """softmax along ``axis`` (exp of `log_softmax`)."""
    return log_softmax(x, axis).exp()


def cross_entropy(
    logits: Tensor,
    target: Tensor | np.ndarray,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
) -> Tensor:
    """Cross-entropy of logits (N, K) float against target (N,) integer class indices in
    [0, K). ``reduction``: "mean" (default) or "sum" -> a 0-d tensor, "none" -> (N,).
    ``label_smoothing`` in [0, 1] mixes the one-hot target with the uniform distribution,
    as in PyTorch."""
    check_float(logits, "cross_entropy", "logits")
    _check_reduction(reduction, "cross_entropy")
    if isinstance(label_smoothing, bool) or not isinstance(label_smoothing, int | float):
        raise TypeError(f"cross_entropy: label_smoothing must be a float, got {label_smoothing!r}")
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(
            f"cross_entropy: label_smoothing must be between 0.0 and 1.0, got {label_smoothing}"
        )
    if not isinstance(target, Tensor | np.ndarray | list | tuple):
        raise TypeError(
            f"cross_entropy: target must be a Tensor or array of class indices, got "
            f"{type(target).__name__}"
        )
    t = np.asarray(target.data if isinstance(target, Tensor) else target)
    if logits.ndim != 2:
        raise ValueError(f"cross_entropy: logits must be (N, num_classes), got {logits.shape}")
    if t.dtype.kind not in "iu":
        raise TypeError(f"cross_entropy: target must hold integer class indices, got {t.dtype}")
    if t.shape != (logits.shape[0],):
        raise ValueError(
            f"cross_entropy: target shape {t.shape} does not match logits {logits.shape}: "
            f"expected ({logits.shape[0]},)"
        )
    k = logits.shape[1]
    if t.size and (t.min() < 0 or t.max() >= k):
        raise ValueError(
            f"cross_entropy: target values must be in [0, {k}), got min {t.min()} max {t.max()}"
        )
    return CrossEntropy.apply(logits, t.astype(np.int64), reduction, float(label_smoothing))


def mse_loss(input: Tensor, target: Tensor | np.ndarray, reduction: str = "mean") -> Tensor:  # noqa: A002
    """Mean squared error ``(input - target)^2`` with ``reduction`` "mean" (default),
    "sum" (0-d results) or "none" (input's shape). ``target`` must have input's shape (torch
    broadcasts with a warning; here a mismatch is an error); a Tensor target must have its
    dtype too, an array target is converted."""
    op = "mse_loss"
    check_float(input, op)
    _check_reduction(reduction, op)
    if not isinstance(target, Tensor):
        target = Tensor._wrap(np.asarray(target, dtype=input.dtype))
    check_float(target, op, "target")
    check_same_dtype(op, input=input, target=target)
    if target.shape != input.shape:
        raise ValueError(
            f"{op}: target shape {target.shape} does not match input shape {input.shape}"
        )
    return MSELoss.apply(input, target, reduction)
