"""log_softmax and cross_entropy, written for numerical stability (max subtracted)."""

from __future__ import annotations

import numpy as np

from minires.autograd import Context, Function
from minires.functional._util import check_float
from minires.tensor import Tensor


def _log_softmax(x: np.ndarray, axis: int) -> np.ndarray:
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
    """Mean negative log-likelihood of the target classes under softmax(logits).

    logits (N, K), target (N,) integer classes. The gradient is
    (softmax(logits) - onehot(target)) * g / N, computed as PyTorch composes it (the
    NLL gradient -g/N at the targets, then log_softmax's backward), so that an inf or
    NaN upstream gradient gives PyTorch's NaN/inf pattern (inf - inf at the target).
    """

    @staticmethod
    def forward(ctx: Context, logits: np.ndarray, target: np.ndarray) -> np.ndarray:
        logp = _log_softmax(logits, axis=1)
        n = logits.shape[0]
        ctx.save_for_backward(logp, target)
        return np.asarray(-logp[np.arange(n), target].mean(), dtype=logits.dtype)

    @staticmethod
    def backward(ctx: Context, g: np.ndarray):
        logp, target = ctx.saved_tensors
        n = logp.shape[0]
        g_logp = np.zeros_like(logp)
        g_logp[np.arange(n), target] = -g / n
        return g_logp - np.exp(logp) * g_logp.sum(axis=1, keepdims=True), None


def log_softmax(x: Tensor, axis: int = -1) -> Tensor:
    """log(softmax(x)) along ``axis``; same shape as x."""
    check_float(x, "log_softmax")
    if not -x.ndim <= axis < x.ndim:
        raise ValueError(f"log_softmax: axis {axis} out of range for shape {x.shape}")
    return LogSoftmax.apply(x, axis % x.ndim)


def softmax(x: Tensor, axis: int = -1) -> Tensor:
    """softmax along ``axis`` (exp of `log_softmax`)."""
    return log_softmax(x, axis).exp()


def cross_entropy(logits: Tensor, target: Tensor | np.ndarray) -> Tensor:
    """Mean cross-entropy. logits (N, K) float; target (N,) integer class indices in [0, K)."""
    check_float(logits, "cross_entropy", "logits")
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
    return CrossEntropy.apply(logits, t.astype(np.int64))
