"""log_softmax and cross_entropy, written for numerical stability (max subtracted), and
the mean squared error."""

from __future__ import annotations

import numpy as np

from minires.autograd import Context, Function
from minires.functional._util import check_dim, check_float, check_int, check_same_dtype
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


def _classes_last(a: np.ndarray) -> np.ndarray:
    """(N, C, d1, ..., dK) -> (N*d1*...*dK, C): one row per prediction, classes along
    axis 1 (a free view for the usual (N, C))."""
    rows = a.shape[0] * int(np.prod(a.shape[2:]))  # not -1: C may be 0
    return np.moveaxis(a, 1, -1).reshape(rows, a.shape[1])


def _classes_back(rows: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """The inverse of `_classes_last`: (M, C) rows -> ``shape`` = (N, C, d1, ..., dK)."""
    return np.moveaxis(rows.reshape(shape[0], *shape[2:], shape[1]), -1, 1)


def _per_row_scale(g: np.ndarray, rows: int, reduction: str, divisor) -> np.ndarray:
    """The upstream gradient as seen by each row's loss: g itself ("none", any shape with
    ``rows`` entries), broadcast ("sum"), or g / divisor ("mean")."""
    if reduction == "none":
        return g.reshape(rows)
    if reduction == "mean":
        with np.errstate(invalid="ignore", divide="ignore"):
            g = g / divisor
    return np.broadcast_to(g, (rows,))


class CrossEntropy(Function):
    """Negative log-likelihood of the target classes under softmax(logits) along axis 1,
    reduced by ``reduction`` ("mean", "sum" or "none"), as PyTorch's class-index path.

    logits (N, C, d1, ..., dK), target (N, d1, ..., dK) integer classes. Row i (one
    prediction) loses ``-w[t_i] * logp[i, t_i]``, ``w`` the class weights (ones when
    None); with ``label_smoothing`` e that becomes
    ``(1 - e) * (-w[t_i] logp[i, t_i]) + (e / C) * sum_c (-w_c logp[i, c])``. Rows whose
    target is ``ignore_index`` lose nothing and get no gradient. "mean" divides by the
    summed weight ``sum_i w[t_i]`` of the rows kept (their count without weights; NaN when
    all are ignored, as torch).

    The gradient is computed as PyTorch composes it (the NLL gradient at the
    log-probabilities, then log_softmax's backward), so that an inf or NaN upstream
    gradient gives PyTorch's NaN/inf pattern.
    """

    @staticmethod
    def forward(
        ctx, logits, target, reduction="mean", label_smoothing=0.0, weight=None, ignore_index=-100
    ):
        c = logits.shape[1]
        logp = _log_softmax(_classes_last(logits), axis=1)  # (M, C)
        t = target.reshape(-1)
        keep = t != ignore_index
        t = np.where(keep, t, 0)  # any valid index for ignored rows: masked out below
        rows = np.arange(len(t))
        picked = -logp[rows, t]
        if weight is not None:
            picked = weight[t] * picked
        e = label_smoothing
        if e:
            spread = -(logp if weight is None else logp * weight).sum(axis=1)
            picked = (1 - e) * picked + (e / c) * spread
        loss = np.where(keep, picked, 0)  # exactly 0 for ignored rows, even if logp is NaN
        # "mean" divides by the kept rows' total weight (their count without weights)
        divisor = keep.sum() if weight is None else np.where(keep, weight[t], 0).sum()
        divisor = np.asarray(divisor, dtype=logits.dtype)  # torch keeps it in the input dtype
        ctx.save_for_backward(logp, t, keep)
        ctx.args = (reduction, e, weight, divisor, logits.shape)
        if reduction == "none":
            out = loss.reshape(target.shape)
        elif reduction == "sum":
            out = loss.sum()
        else:
            with np.errstate(invalid="ignore", divide="ignore"):
                out = loss.sum() / divisor
        return np.asarray(out, dtype=logits.dtype)

    @staticmethod
    def backward(ctx: Context, g: np.ndarray):
        logp, t, keep = ctx.saved_tensors
        reduction, e, weight, divisor, shape = ctx.args
        m, c = logp.shape
        scale = _per_row_scale(g, m, reduction, divisor).astype(logp.dtype, copy=False)
        per_row = np.where(keep, scale, 0)  # ignored rows: no gradient, whatever g is
        g_logp = np.zeros_like(logp)  # d loss / d log-probabilities, as torch's NLL gives it
        if e:
            smooth = (-e / c) * per_row[:, None]
            g_logp += smooth if weight is None else smooth * weight
        picked = -(1 - e) * per_row
        g_logp[np.arange(m), t] += picked if weight is None else picked * weight[t]
        g_rows = g_logp - np.exp(logp) * g_logp.sum(axis=1, keepdims=True)
        return _classes_back(g_rows, shape), None, None, None, None, None


class CrossEntropyProbs(Function):
    """Cross-entropy against class probabilities, as PyTorch's path for a float target of
    the logits' shape (N, C, d1, ..., dK): row i loses ``-sum_c w_c q[i, c] logp[i, c]``
    with ``q = (1 - e) * target + e / C`` (``label_smoothing`` e) and class weights ``w``
    (ones when None). "mean" divides by the number of rows N*d1*...*dK (not by weights).

    Both inputs get a gradient: logits ``(softmax * sum_c w_c q_c - w q) * g`` (through
    log_softmax's backward, as torch composes it), target ``-(1 - e) * w * logp * g``.
    """

    @staticmethod
    def forward(ctx, logits, target, reduction="mean", label_smoothing=0.0, weight=None):
        c = logits.shape[1]
        logp = _log_softmax(_classes_last(logits), axis=1)  # (M, C)
        e = label_smoothing
        q = _classes_last(target)
        if e:
            q = q * (1 - e) + e / c
        wq = q if weight is None else q * weight
        loss = -(logp * wq).sum(axis=1)  # (M,)
        ctx.save_for_backward(logp, wq)
        ctx.args = (reduction, e, weight, logits.shape)
        if reduction == "none":
            out = loss.reshape(logits.shape[:1] + logits.shape[2:])
        elif reduction == "sum":
            out = loss.sum()
        else:
            with np.errstate(invalid="ignore", divide="ignore"):
                out = loss.sum() / len(loss)  # no rows: NaN, as torch
        return np.asarray(out, dtype=logits.dtype)

    @staticmethod
    def backward(ctx: Context, g: np.ndarray):
        logp, wq = ctx.saved_tensors
        reduction, e, weight, shape = ctx.args
        m = len(logp)
        per_row = _per_row_scale(g, m, reduction, m).astype(logp.dtype, copy=False)[:, None]
        g_logits = g_target = None
        if ctx.needs_input_grad[0]:
            g_logp = -wq * per_row
            g_rows = g_logp - np.exp(logp) * g_logp.sum(axis=1, keepdims=True)
            g_logits = _classes_back(g_rows, shape)
        if ctx.needs_input_grad[1]:
            g_q = -(logp if weight is None else logp * weight) * per_row
            g_target = _classes_back(g_q * (1 - e) if e else g_q, shape)
        return g_logits, g_target, None, None, None


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
    if not isinstance(reduction, str):
        # torch's third positional argument is `weight`; here it is `reduction`
        raise TypeError(
            f"{op}: reduction must be one of {REDUCTIONS}, got a {type(reduction).__name__} "
            "(class weights go by keyword: weight=...)"
        )
    if reduction not in REDUCTIONS:
        raise ValueError(f"{op}: reduction must be one of {REDUCTIONS}, got {reduction!r}")
    return reduction


class _DefaultDim(int):
    """The type of `_LAST`, softmax's default ``dim`` (-1): an int told apart from an
    explicit -1 by identity, so that ``dim`` and ``axis`` given together can be compared."""


_LAST = _DefaultDim(-1)


def _softmax_dim(op: str, ndim: int, dim: int, axis: int | None) -> int:
    """PyTorch's ``dim`` or NumPy's ``axis`` as a non-negative axis; both may be given only
    if they name the same axis."""
    if axis is None:
        return check_dim(dim, ndim, "dim", op)
    a = check_dim(axis, ndim, "axis", op)
    if dim is not _LAST and check_dim(dim, ndim, "dim", op) != a:
        raise TypeError(
            f"{op}: dim={dim!r} and axis={axis!r} name different axes; give dim or axis"
        )
    return a


def log_softmax(x: Tensor, dim: int = _LAST, *, axis: int | None = None) -> Tensor:
    """log(softmax(x)) along ``dim`` (PyTorch's name; ``axis``, NumPy's, also works),
    the last axis by default; same shape as x."""
    check_float(x, "log_softmax")
    if x.ndim == 0:
        raise ValueError("log_softmax: needs at least one dimension, got a 0-d tensor")
    return LogSoftmax.apply(x, _softmax_dim("log_softmax", x.ndim, dim, axis))


def softmax(x: Tensor, dim: int = _LAST, *, axis: int | None = None) -> Tensor:
    """softmax along ``dim`` or ``axis`` (exp of `log_softmax`); same shape as x."""
    return log_softmax(x, dim, axis=axis).exp()


def _class_weights(weight, logits: Tensor, op: str) -> np.ndarray | None:
    """``weight`` (C,) as an array of the logits' dtype, or None. A Tensor must have that
    dtype already (as for any input); an array is converted."""
    if weight is None:
        return None
    c = logits.shape[1]
    if isinstance(weight, Tensor):
        check_float(weight, op, "weight")
        check_same_dtype(op, input=logits, weight=weight)
        w = weight.data
    else:
        w = np.asarray(weight)
        if w.dtype.kind not in "fiu":
            raise TypeError(f"{op}: weight must hold one real number per class, got {w.dtype}")
        w = w.astype(logits.dtype)
    if w.shape != (c,):
        raise ValueError(
            f"{op}: weight must have one entry per class, shape ({c},), got {tuple(w.shape)}"
        )
    return w


def cross_entropy(
    logits: Tensor,
    target: Tensor | np.ndarray,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
    *,
    weight: Tensor | np.ndarray | None = None,
    ignore_index: int = -100,
) -> Tensor:
    """Cross-entropy of logits (N, C) or (N, C, d1, ..., dK), as PyTorch, against either

    - class indices: an integer target (N,) or (N, d1, ..., dK) with values in [0, C), or
      equal to ``ignore_index`` (such entries lose nothing and get no gradient);
    - class probabilities: a float target of the logits' shape (it gets a gradient too;
      ``ignore_index`` does not apply).

    ``reduction``: "mean" (default) or "sum" -> a 0-d tensor, "none" -> the target's shape
    without the class axis. "mean" divides by the summed ``weight`` of the non-ignored
    targets (their count without weights) for class indices, by N*d1*...*dK for
    probabilities. ``label_smoothing`` in [0, 1] mixes the target with the uniform
    distribution. ``weight`` (C,): a rescaling per class (a constant: it gets no
    gradient, as in PyTorch). ``weight`` and ``ignore_index`` are keyword-only: the third
    positional argument is ``reduction``.
    """
    op = "cross_entropy"
    check_float(logits, op, "logits")
    _check_reduction(reduction, op)
    if isinstance(label_smoothing, bool) or not isinstance(label_smoothing, int | float):
        raise TypeError(f"{op}: label_smoothing must be a float, got {label_smoothing!r}")
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(
            f"{op}: label_smoothing must be between 0.0 and 1.0, got {label_smoothing}"
        )
    ignore_index = check_int(ignore_index, "ignore_index", op)
    if not isinstance(target, Tensor | np.ndarray | list | tuple):
        raise TypeError(
            f"{op}: target must be a Tensor or array of class indices or probabilities, got "
            f"{type(target).__name__}"
        )
    if logits.ndim < 2:
        raise ValueError(
            f"{op}: logits must be (N, num_classes) or (N, num_classes, d1, ...), got "
            f"{logits.shape}"
        )
    w = _class_weights(weight, logits, op)
    smoothing = float(label_smoothing)
    t = target.data if isinstance(target, Tensor) else np.asarray(target)
    if t.shape == logits.shape:  # class probabilities (torch tells the two apart by shape)
        if t.dtype.kind != "f":
            raise TypeError(
                f"{op}: a target of the logits' shape {logits.shape} holds class "
                f"probabilities and must be float, got {t.dtype}"
            )
        if not isinstance(target, Tensor):
            target = Tensor._wrap(t.astype(logits.dtype))
        check_same_dtype(op, logits=logits, target=target)
        return CrossEntropyProbs.apply(logits, target, reduction, smoothing, w)
    if t.dtype.kind not in "iu":
        raise TypeError(f"{op}: target must hold integer class indices, got {t.dtype}")
    expected = logits.shape[:1] + logits.shape[2:]
    if t.shape != expected:
        raise ValueError(
            f"{op}: target shape {t.shape} does not match logits {logits.shape}: expected "
            f"{expected} (class indices) or {logits.shape} (class probabilities)"
        )
    k = logits.shape[1]
    if k == 0 and t.size:
        raise ValueError(f"{op}: logits {logits.shape} have no classes (dimension 1 is 0)")
    valid = t[t != ignore_index]
    if valid.size and (valid.min() < 0 or valid.max() >= k):
        raise ValueError(
            f"{op}: target values must be in [0, {k}) or equal ignore_index ({ignore_index}), "
            f"got min {valid.min()} max {valid.max()}"
        )
    return CrossEntropy.apply(logits, t.astype(np.int64), reduction, smoothing, w, ignore_index)


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
