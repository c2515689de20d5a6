"""log_softmax, the negative log-likelihood of class indices (nll_loss, and cross_entropy on
top of it), written for numerical stability (max subtracted), binary cross-entropy (of
probabilities and of logits) and the mean squared error."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from minires.autograd import Context, Function
from minires.functional._util import (
    as_array,
    check_dim,
    check_float,
    check_int,
    check_same_dtype,
)
from minires.functional.elementwise import _stable_sigmoid
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


def _weighted_nll(
    logp: np.ndarray, target: np.ndarray, weight: np.ndarray | None, ignore_index: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The weighted negative log-likelihood of class indices, row by row: the one mechanism
    behind `nll_loss` and `cross_entropy`.

    logp (M, C) log-probabilities, target (M,) integer classes, weight (C,) or None.
    Returns ``(t, keep, picked, divisor)``: ``t`` the targets with ignored rows pointed at
    class 0 (any valid index: they are masked out), ``keep`` (M,) False where
    ``target == ignore_index``, ``picked`` (M,) ``-w[t_i] * logp[i, t_i]`` (ignored rows not
    yet zeroed) and ``divisor`` the summed weight ``sum_i w[t_i]`` of the kept rows (their
    count without weights), a 0-d array of logp's dtype (torch keeps it in the input dtype).
    """
    keep = target != ignore_index
    t = np.where(keep, target, 0)
    picked = -logp[np.arange(len(t)), t]
    if weight is not None:
        picked = weight[t] * picked
    divisor = keep.sum() if weight is None else np.where(keep, weight[t], 0).sum()
    return t, keep, picked, np.asarray(divisor, dtype=logp.dtype)


def _weighted_nll_grad(
    shape: tuple[int, int],
    dtype: np.dtype,
    t: np.ndarray,
    per_row: np.ndarray,
    weight: np.ndarray | None,
) -> np.ndarray:
    """d loss / d logp (M, C) of `_weighted_nll`: ``-w[t_i] * per_row[i]`` at ``(i, t_i)``,
    0 elsewhere. ``per_row`` (M,) is the upstream gradient seen by each row's loss, already
    0 for ignored rows (so an inf or NaN upstream gradient reaches only kept targets, as
    in torch)."""
    g_logp = np.zeros(shape, dtype=dtype)
    g_logp[np.arange(shape[0]), t] = -per_row if weight is None else -per_row * weight[t]
    return g_logp


def _reduce_rows(
    loss: np.ndarray, reduction: str, divisor: np.ndarray, shape: tuple[int, ...]
) -> np.ndarray:
    """Per-row losses (M,) -> ``shape`` ("none"), their sum, or their sum / divisor
    ("mean"; 0 / 0 is NaN, as torch), in loss's dtype."""
    if reduction == "none":
        out = loss.reshape(shape)
    elif reduction == "sum":
        out = loss.sum()
    else:
        with np.errstate(invalid="ignore", divide="ignore"):
            out = loss.sum() / divisor
    return np.asarray(out, dtype=loss.dtype)


class NLLLoss(Function):
    """Negative log-likelihood of the target classes given log-probabilities along axis 1,
    as ``torch.nn.functional.nll_loss``.

    input (N, C, d1, ..., dK) log-probabilities, target (N, d1, ..., dK) integer classes.
    Row i (one prediction) loses ``-w[t_i] * input[i, t_i]``, ``w`` the class weights
    (ones when None); rows whose target is ``ignore_index`` lose exactly 0 and get no
    gradient. "mean" divides by the summed weight of the kept rows (NaN when all are
    ignored, as torch). The gradient is ``-w[t_i] * g`` (over the divisor for "mean") at
    each target entry and 0 elsewhere: it does not depend on the input's values.
    """

    @staticmethod
    def forward(
        ctx: Context,
        logp: np.ndarray,
        target: np.ndarray,
        reduction: str = "mean",
        weight: np.ndarray | None = None,
        ignore_index: int = -100,
    ) -> np.ndarray:
        rows = _classes_last(logp)  # (M, C)
        t, keep, picked, divisor = _weighted_nll(rows, target.reshape(-1), weight, ignore_index)
        ctx.save_for_backward(t, keep)
        ctx.args = (reduction, weight, divisor, logp.shape)
        loss = np.where(keep, picked, 0)  # exactly 0 for ignored rows, even if logp is NaN
        return _reduce_rows(loss, reduction, divisor, target.shape)

    @staticmethod
    def backward(ctx: Context, g: np.ndarray):
        t, keep = ctx.saved_tensors
        reduction, weight, divisor, shape = ctx.args
        m, c = len(t), shape[1]
        scale = _per_row_scale(g, m, reduction, divisor).astype(g.dtype, copy=False)
        per_row = np.where(keep, scale, 0)
        g_rows = _weighted_nll_grad((m, c), g.dtype, t, per_row, weight)
        return _classes_back(g_rows, shape), None, None, None, None


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
        t, keep, picked, divisor = _weighted_nll(logp, target.reshape(-1), weight, ignore_index)
        e = label_smoothing
        if e:
            spread = -(logp if weight is None else logp * weight).sum(axis=1)
            picked = (1 - e) * picked + (e / c) * spread
        loss = np.where(keep, picked, 0)  # exactly 0 for ignored rows, even if logp is NaN
        ctx.save_for_backward(logp, t, keep)
        ctx.args = (reduction, e, weight, divisor, logits.shape)
        return _reduce_rows(loss, reduction, divisor, target.shape)

    @staticmethod
    def backward(ctx: Context, g: np.ndarray):
        logp, t, keep = ctx.saved_tensors
        reduction, e, weight, divisor, shape = ctx.args
        m, c = logp.shape
        scale = _per_row_scale(g, m, reduction, divisor).astype(logp.dtype, copy=False)
        per_row = np.where(keep, scale, 0)  # ignored rows: no gradient, whatever g is
        # d loss / d log-probabilities, as torch's NLL gives it, then log_softmax's backward
        g_logp = _weighted_nll_grad((m, c), logp.dtype, t, (1 - e) * per_row, weight)
        if e:
            smooth = (-e / c) * per_row[:, None]
            g_logp += smooth if weight is None else smooth * weight
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


def _log_sigmoid(x: np.ndarray) -> np.ndarray:
    """log(sigmoid(x)) = min(x, 0) - log1p(exp(-|x|)): exp never overflows, so |x| ~ 1e4
    gives -|x| or 0, not -inf or NaN (torch's CPU formula). NaN stays NaN."""
    return np.minimum(x, 0) - np.log1p(np.exp(-np.abs(x)))


class BinaryCrossEntropyWithLogits(Function):
    """Binary cross-entropy of logits x against targets y in [0, 1], elementwise, as
    ``torch.nn.functional.binary_cross_entropy_with_logits``:

        loss = w * ((1 - y) * x - (1 + (p - 1) * y) * log_sigmoid(x))

    which is ``-w * (p * y * log(sigmoid(x)) + (1 - y) * log(1 - sigmoid(x)))`` written
    without overflow (``log_sigmoid`` in its log-sum-exp form). ``w`` (``weight``) and
    ``p`` (``pos_weight``) broadcast to x's shape; either may be None (ones). Both x and y
    get a gradient (torch's formulas, as its backward computes them):

        d/dx = w * ((p * y + 1 - y) * sigmoid(x) - p * y)    (w * (sigmoid(x) - y) without p)
        d/dy = w * (log_sigmoid(-x) - p * log_sigmoid(x))    (-w * x without p)

    times the upstream gradient (over the element count for "mean").
    """

    @staticmethod
    def forward(
        ctx: Context,
        x: np.ndarray,
        y: np.ndarray,
        weight: np.ndarray | None = None,
        pos_weight: np.ndarray | None = None,
        reduction: str = "mean",
    ) -> np.ndarray:
        log_sig = _log_sigmoid(x)
        if pos_weight is not None:
            log_sig = log_sig * ((pos_weight - 1) * y + 1)
        with np.errstate(invalid="ignore"):  # 0 * inf at x = -inf, y = 1: NaN, as in torch
            loss = (1 - y) * x - log_sig
        if weight is not None:
            loss = loss * weight
        ctx.save_for_backward(x, y)
        ctx.args = (weight, pos_weight, reduction)
        return np.asarray(_reduce(loss, reduction), dtype=x.dtype)

    @staticmethod
    def backward(ctx: Context, g: np.ndarray):
        x, y = ctx.saved_tensors
        weight, pos_weight, reduction = ctx.args
        upstream = _reduce_backward(g, x.size, reduction)
        if weight is not None:
            upstream = upstream * weight
        g_x = g_y = None
        with np.errstate(invalid="ignore", over="ignore"):
            if ctx.needs_input_grad[0]:
                if pos_weight is None:
                    d = _stable_sigmoid(x) - y
                else:
                    py = pos_weight * y
                    d = (py + 1 - y) * _stable_sigmoid(x) - py
                g_x = d * upstream
            if ctx.needs_input_grad[1]:
                if pos_weight is None:
                    d = -x
                else:
                    d = _log_sigmoid(-x) - _log_sigmoid(x) * pos_weight
                g_y = d * upstream
        return g_x, g_y, None, None, None


# torch's floor for (1 - x) * x in the gradient of binary_cross_entropy (x at 0 or 1): a
# float 1e-12 (9.99999996e-13), also in float64
_BCE_EPSILON = float(np.float32(1e-12))


class BinaryCrossEntropy(Function):
    """Binary cross-entropy of probabilities x in [0, 1] against targets y in [0, 1],
    elementwise, as ``torch.nn.functional.binary_cross_entropy``:

        loss = w * -(y * max(log(x), -100) + (1 - y) * max(log(1 - x), -100))

    (torch clamps each log at -100, so x = 0 or 1 gives a finite loss). ``w`` (``weight``)
    broadcasts to x's shape, or is None. Gradients, torch's:

        d/dx = w * (x - y) / max((1 - x) * x, 1e-12)
        d/dy = -w * log(x / (1 - x))            (not clamped: +-inf at x = 0 or 1)

    times the upstream gradient (over the element count for "mean").
    """

    @staticmethod
    def forward(
        ctx: Context,
        x: np.ndarray,
        y: np.ndarray,
        weight: np.ndarray | None = None,
        reduction: str = "mean",
    ) -> np.ndarray:
        with np.errstate(divide="ignore"):  # log(0) = -inf, clamped to -100 just below
            log_x = np.maximum(np.log(x), -100)
            log_1mx = np.maximum(np.log1p(-x), -100)
        loss = (y - 1) * log_1mx - y * log_x
        if weight is not None:
            loss = loss * weight
        ctx.save_for_backward(x, y)
        ctx.args = (weight, reduction)
        return np.asarray(_reduce(loss, reduction), dtype=x.dtype)

    @staticmethod
    def backward(ctx: Context, g: np.ndarray):
        x, y = ctx.saved_tensors
        weight, reduction = ctx.args
        upstream = _reduce_backward(g, x.size, reduction)
        if weight is not None:
            upstream = upstream * weight
        g_x = g_y = None
        if ctx.needs_input_grad[0]:
            g_x = (x - y) / np.maximum((1 - x) * x, x.dtype.type(_BCE_EPSILON)) * upstream
        if ctx.needs_input_grad[1]:
            with np.errstate(divide="ignore", invalid="ignore"):
                g_y = -np.log(x / (1 - x)) * upstream  # -logit(x), as torch computes it
        return g_x, g_y, None, None


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


def _check_reduction(
    reduction: str, op: str, hint: str = " (class weights go by keyword: weight=...)"
) -> str:
    """``reduction`` if it is "mean", "sum" or "none". ``hint`` ends the TypeError for a
    non-string: by default it is cross_entropy's, whose third positional argument is
    ``reduction`` where torch's is ``weight``."""
    if not isinstance(reduction, str):
        raise TypeError(
            f"{op}: reduction must be one of {REDUCTIONS}, got a {type(reduction).__name__}{hint}"
        )
    if reduction not in REDUCTIONS:
        raise ValueError(f"{op}: reduction must be one of {REDUCTIONS}, got {reduction!r}")
    return reduction


class _DefaultDim(int):
    """The type of `_LAST`, softmax's default ``dim`` (-1): an int told apart from an
    explicit -1 by identity, so that ``dim`` and ``axis`` given together can be compared."""


_LAST = _DefaultDim(-1)


def legacy_softmax_dim(op: str, ndim: int, stacklevel: int = 3) -> int:
    """torch's choice for a softmax given ``dim=None``: 0 for 0-, 1- and 3-D inputs, 1
    otherwise, with its deprecation warning."""
    warnings.warn(
        f"{op}: implicit dimension choice for {op} has been deprecated. Change the call to "
        "include dim=X as an argument.",
        stacklevel=stacklevel,
    )
    return 0 if ndim in (0, 1, 3) else 1


def _softmax_dim(op: str, ndim: int, dim: int | None, axis: int | None) -> int:
    """PyTorch's ``dim`` or NumPy's ``axis`` as a non-negative axis; both may be given only
    if they name the same axis; an explicit ``dim=None`` is torch's legacy choice."""
    if dim is None and axis is None:
        dim = legacy_softmax_dim(op, ndim, stacklevel=4)
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
    d = _softmax_dim("log_softmax", x.ndim, dim, axis)
    if x.ndim == 0:  # one value: log_softmax 0 (and softmax 1), as torch
        return LogSoftmax.apply(x.reshape(1), 0).reshape(())
    return LogSoftmax.apply(x, d)


def softmax(x: Tensor, dim: int = _LAST, *, axis: int | None = None) -> Tensor:
    """softmax along ``dim`` or ``axis`` (exp of `log_softmax`); same shape as x."""
    check_float(x, "softmax")
    return log_softmax(x, _softmax_dim("softmax", x.ndim, dim, axis)).exp()


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
        w = as_array(weight, op, "weight")
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
    if isinstance(label_smoothing, bool | np.bool_) or not isinstance(
        label_smoothing, int | float | np.integer | np.floating
    ):
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
    if logits.ndim == 1:  # unbatched (C,), as torch: a batch of one
        t = target.data if isinstance(target, Tensor) else as_array(target, op, "target")
        if t.shape not in ((), logits.shape):
            raise ValueError(
                f"{op}: unbatched logits {logits.shape} need a 0-d class index or "
                f"probabilities of shape {logits.shape}, got a target of shape {t.shape}"
            )
        one = target.reshape(1, -1) if isinstance(target, Tensor) and t.ndim else t[None]
        out = cross_entropy(logits.reshape(1, -1), one, reduction, label_smoothing,
                            weight=weight, ignore_index=ignore_index)  # fmt: skip
        return out.reshape(()) if reduction == "none" else out
    if logits.ndim < 2:
        raise ValueError(
            f"{op}: logits must be (N, num_classes) or (N, num_classes, d1, ...), got "
            f"{logits.shape}"
        )
    w = _class_weights(weight, logits, op)
    smoothing = float(label_smoothing)
    t = target.data if isinstance(target, Tensor) else as_array(target, op, "target")
    if t.shape == logits.shape:  # class probabilities (torch tells the two apart by shape)
        if t.dtype.kind != "f":
            raise TypeError(
                f"{op}: a target of the logits' shape {logits.shape} holds class "
                f"probabilities and must be float, got {t.dtype}"
            )
        if ignore_index != -100:  # torch: not supported for floating point targets
            raise ValueError(
                f"{op}: ignore_index ({ignore_index}) does not apply to class-probability "
                f"targets (a float target of the logits' shape {logits.shape})"
            )
        if not isinstance(target, Tensor):
            target = Tensor._wrap(t.astype(logits.dtype))
        check_same_dtype(op, logits=logits, target=target)
        return CrossEntropyProbs.apply(logits, target, reduction, smoothing, w)
    t = _class_indices(t, logits, ignore_index, op, "logits", "or {} (class probabilities)")
    return CrossEntropy.apply(logits, t, reduction, smoothing, w, ignore_index)


def _class_indices(
    t: np.ndarray, inp: Tensor, ignore_index: int, op: str, name: str, other: str = ""
) -> np.ndarray:
    """Check a class-index target against ``inp`` (N, C, d1, ..., dK) (called ``name``
    in messages): integers, shape (N, d1, ..., dK), values in [0, C) or ``ignore_index``.
    Returns it as int64. ``other`` adds to the shape message another accepted shape
    (``{}``: the input's)."""
    if t.dtype.kind not in "iu":
        raise TypeError(f"{op}: target must hold integer class indices, got {t.dtype}")
    expected = inp.shape[:1] + inp.shape[2:]
    if t.shape != expected:
        more = " " + other.format(inp.shape) if other else ""
        raise ValueError(
            f"{op}: target shape {t.shape} does not match {name} {inp.shape}: expected "
            f"{expected} (class indices){more}"
        )
    k = inp.shape[1]
    if k == 0 and t.size:  # (torch gives nan when every target is ignored)
        raise ValueError(f"{op}: {name} {inp.shape} have no classes (dimension 1 is 0)")
    valid = t[t != ignore_index]
    if valid.size and (valid.min() < 0 or valid.max() >= k):
        raise ValueError(
            f"{op}: target values must be in [0, {k}) or equal ignore_index ({ignore_index}), "
            f"got min {valid.min()} max {valid.max()}"
        )
    return t.astype(np.int64)


def nll_loss(
    input: Tensor,  # noqa: A002
    target: Tensor | np.ndarray,
    weight: Tensor | np.ndarray | None = None,
    *,
    ignore_index: int = -100,
    reduction: str = "mean",
) -> Tensor:
    """Negative log-likelihood loss, as ``torch.nn.functional.nll_loss``: ``input`` holds
    log-probabilities (e.g. the output of `log_softmax` along dim 1), and each prediction
    loses ``-weight[t] * input[n, t, d1, ..., dK]`` for its target class ``t``.

    Shapes: input (N, C) or (N, C, d1, ..., dK), target (N,) or (N, d1, ..., dK) integer
    class indices in [0, C) or equal to ``ignore_index`` (such entries lose exactly 0 and
    get no gradient); also unbatched input (C,) with a 0-d target. ``weight`` (C,): a
    rescaling per class (a constant: it gets no gradient). ``reduction``: "mean" (default;
    divides by the summed ``weight`` of the non-ignored targets - their count without
    weights - NaN when all are ignored, as torch) or "sum" -> a 0-d tensor, "none" -> the
    target's shape. ``ignore_index`` and ``reduction`` are keyword-only (torch's fourth
    positional argument is the deprecated ``size_average``).

    ``cross_entropy(x, t)`` equals ``nll_loss(log_softmax(x, dim=1), t)``; both compute the
    loss with the same code.
    """
    op = "nll_loss"
    check_float(input, op)
    _weight_not_reduction(weight, op)
    _check_reduction(reduction, op, "")
    ignore_index = check_int(ignore_index, "ignore_index", op)
    if not isinstance(target, Tensor | np.ndarray | list | tuple):
        raise TypeError(
            f"{op}: target must be a Tensor or array of class indices, got {type(target).__name__}"
        )
    t = target.data if isinstance(target, Tensor) else as_array(target, op, "target")
    if input.ndim == 1:  # unbatched (C,) with a 0-d target: a batch of one
        if t.ndim != 0:
            raise ValueError(
                f"{op}: an unbatched input {input.shape} needs a 0-d target, got shape {t.shape}"
            )
        out = nll_loss(
            input.reshape(1, -1), t.reshape(1), weight, ignore_index=ignore_index,
            reduction=reduction,
        )  # fmt: skip
        return out.reshape(()) if reduction == "none" else out
    if input.ndim == 0:
        raise ValueError(
            f"{op}: input must be (N, num_classes), (N, num_classes, d1, ...) or "
            f"(num_classes,), got a 0-d tensor"
        )
    w = _class_weights(weight, input, op)
    t = _class_indices(t, input, ignore_index, op, "input")
    return NLLLoss.apply(input, t, reduction, w, ignore_index)


def _weight_not_reduction(weight: Any, op: str) -> None:
    """torch's third positional argument is ``weight``: a string there is a reduction
    given by position (as `cross_entropy` and `mse_loss` take it)."""
    if isinstance(weight, str):
        raise TypeError(
            f"{op}: weight must be a Tensor, an array or None, got the string {weight!r}; "
            f"give the reduction by keyword: reduction={weight!r}"
        )


def _same_shape_target(target: Any, inp: Tensor, op: str) -> Tensor:
    """The target of an elementwise loss: a float Tensor of the input's dtype and shape
    (a Tensor may require grad), or an array / list of numbers, converted to that dtype."""
    if isinstance(target, Tensor):
        check_float(target, op, "target")
        check_same_dtype(op, input=inp, target=target)
    else:
        if not isinstance(target, np.ndarray | list | tuple | int | float | np.number):
            raise TypeError(
                f"{op}: target must be a Tensor or an array of numbers, got {type(target).__name__}"
            )
        t = as_array(target, op, "target")
        if t.dtype.kind not in "fiub":
            raise TypeError(f"{op}: target must hold real numbers, got {t.dtype}")
        target = Tensor._wrap(t.astype(inp.dtype))
    if target.shape != inp.shape:
        raise ValueError(
            f"{op}: target size {target.shape} must be the same as input size {inp.shape}"
        )
    return target


def _elementwise_weight(weight: Any, inp: Tensor, op: str, name: str) -> np.ndarray | None:
    """``weight`` / ``pos_weight`` of a binary cross-entropy: None, or an array of the
    input's dtype whose shape broadcasts to the input's (a Tensor must have that dtype; it
    is a constant: it gets no gradient)."""
    if weight is None:
        return None
    if isinstance(weight, Tensor):
        check_float(weight, op, name)
        check_same_dtype(op, input=inp, **{name: weight})
        w = weight.data
    else:
        if isinstance(weight, str | bytes):
            raise TypeError(f"{op}: {name} must be a Tensor, an array or None, got {weight!r}")
        w = as_array(weight, op, name)
        if w.dtype.kind not in "fiu":
            raise TypeError(f"{op}: {name} must hold real numbers, got {w.dtype}")
        w = w.astype(inp.dtype)
    try:
        fits = np.broadcast_shapes(w.shape, inp.shape) == inp.shape
    except ValueError:
        fits = False
    if not fits:
        raise ValueError(
            f"{op}: {name} of shape {tuple(w.shape)} does not broadcast to the input's shape "
            f"{inp.shape}"
        )
    return w


def binary_cross_entropy_with_logits(
    input: Tensor,  # noqa: A002
    target: Tensor | np.ndarray,
    weight: Tensor | np.ndarray | None = None,
    *,
    reduction: str = "mean",
    pos_weight: Tensor | np.ndarray | None = None,
) -> Tensor:
    """Binary cross-entropy of logits, as ``torch.nn.functional.binary_cross_entropy_with_logits``:
    elementwise ``-w * (p * y * log(sigmoid(x)) + (1 - y) * log(1 - sigmoid(x)))``, computed
    in a log-sum-exp form that neither overflows nor loses the loss for large |x| (1e4 in
    float32 gives 1e4, not inf).

    Shapes: input x any shape; target y the same shape (probabilities in [0, 1], usually
    0/1 labels; a Tensor target must have x's dtype and gets a gradient too, as in torch;
    an array or list is converted). ``weight`` (w) and ``pos_weight`` (p, the weight of
    positive examples, e.g. one per class (C,) for x (N, C)) broadcast to x's shape;
    constants, no gradient. ``reduction``: "mean" (default, over all elements) or "sum" ->
    a 0-d tensor, "none" -> x's shape. ``reduction`` and ``pos_weight`` are keyword-only
    (torch's fourth and fifth positional arguments are the deprecated ``size_average`` and
    ``reduce``).
    """
    op = "binary_cross_entropy_with_logits"
    check_float(input, op)
    _weight_not_reduction(weight, op)
    _check_reduction(reduction, op, "")
    target = _same_shape_target(target, input, op)
    w = _elementwise_weight(weight, input, op, "weight")
    pw = _elementwise_weight(pos_weight, input, op, "pos_weight")
    return BinaryCrossEntropyWithLogits.apply(input, target, w, pw, reduction)


def binary_cross_entropy(
    input: Tensor,  # noqa: A002
    target: Tensor | np.ndarray,
    weight: Tensor | np.ndarray | None = None,
    *,
    reduction: str = "mean",
) -> Tensor:
    """Binary cross-entropy of probabilities, as ``torch.nn.functional.binary_cross_entropy``:
    elementwise ``-w * (y * log(x) + (1 - y) * log(1 - x))`` with each log clamped at -100
    (as torch: x = 0 or 1 gives a finite loss of at most 100 per element). Prefer
    `binary_cross_entropy_with_logits` on logits: it is exact where sigmoid rounds to 0 or 1.

    Shapes: input x (probabilities in [0, 1]) any shape; target y the same shape, values in
    [0, 1] (a Tensor target must have x's dtype and gets a gradient too, as in torch; an
    array or list is converted). Values outside [0, 1], NaN included, are a ValueError (a
    RuntimeError in torch). ``weight`` broadcasts to x's shape (a constant). ``reduction``:
    "mean" (default, over all elements) or "sum" -> a 0-d tensor, "none" -> x's shape;
    keyword-only.
    """
    op = "binary_cross_entropy"
    check_float(input, op)
    _weight_not_reduction(weight, op)
    _check_reduction(reduction, op, "")
    target = _same_shape_target(target, input, op)
    w = _elementwise_weight(weight, input, op, "weight")
    for name, v in (("input", input.data), ("target", target.data)):
        if not np.all((v >= 0) & (v <= 1)):  # NaN fails both comparisons
            raise ValueError(
                f"{op}: all elements of {name} should be between 0 and 1 (probabilities), "
                f"got values in [{np.min(v)}, {np.max(v)}]"
                + (" and NaN" if np.isnan(v).any() else "")
            )
    return BinaryCrossEntropy.apply(input, target, w, reduction)


def mse_loss(input: Tensor, target: Tensor | np.ndarray, reduction: str = "mean") -> Tensor:  # noqa: A002
    """Mean squared error ``(input - target)^2`` with ``reduction`` "mean" (default),
    "sum" (0-d results) or "none" (input's shape). ``target`` must have input's shape (torch
    broadcasts with a warning; here a mismatch is an error); a Tensor target must have its
    dtype too, an array target is converted."""
    op = "mse_loss"
    check_float(input, op)
    _check_reduction(reduction, op)
    if not isinstance(target, Tensor):
        target = Tensor._wrap(as_array(target, op, "target", input.dtype))
    check_float(target, op, "target")
    check_same_dtype(op, input=input, target=target)
    if target.shape != input.shape:
        raise ValueError(
            f"{op}: target shape {target.shape} does not match input shape {input.shape}"
        )
    return MSELoss.apply(input, target, reduction)
