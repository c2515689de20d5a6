"""Inverted dropout, as in PyTorch: in training each value (`dropout`) or each whole
channel (`dropout2d`) is kept with probability ``1 - p`` and scaled by ``1 / (1 - p)`` (so
the expected output equals the input and evaluation needs no rescaling); in evaluation it
is the identity.

The mask comes from minires' generator (`minires.random`), so ``mr.manual_seed`` makes it
reproducible."""

from __future__ import annotations

import numbers
import warnings
from typing import Any

import numpy as np

from minires.autograd import Context, Function
from minires.functional._util import check_float
from minires.random import get_rng
from minires.tensor import Tensor


class Dropout(Function):
    """out = x * mask, where ``mask`` holds 0 (dropped) or 1 / (1 - p) (kept).

    The mask is drawn by `dropout` and passed in, so the op itself is deterministic (and a
    gradient check can hold the mask fixed)."""

    @staticmethod
    def forward(ctx: Context, x: np.ndarray, mask: np.ndarray) -> np.ndarray:
        ctx.save_for_backward(mask)
        with np.errstate(invalid="ignore"):  # inf * 0 = NaN where dropped, as torch
            return x * mask

    @staticmethod
    def backward(ctx: Context, g: np.ndarray):
        (mask,) = ctx.saved_tensors
        return g * mask, None


def check_p(p: float, op: str = "dropout") -> float:
    """A dropout probability must be a real number in [0, 1]."""
    if isinstance(p, bool) or not isinstance(p, numbers.Real):
        raise TypeError(f"{op}: p must be a number in [0, 1], got {type(p).__name__}")
    if not 0.0 <= p <= 1.0:  # also refuses NaN
        raise ValueError(f"{op}: dropout probability has to be between 0 and 1, but got {p}")
    return float(p)


def _check_training(training: Any, op: str) -> bool:
    """``training`` must be a bool (torch refuses None and other values)."""
    if not isinstance(training, bool | np.bool_):
        raise TypeError(f"{op}: training must be True or False, got {training!r}")
    return bool(training)


def dropout_mask(shape: tuple[int, ...], p: float, dtype: np.dtype) -> np.ndarray:
    """Keep each entry with probability 1 - p: the mask is 1 / (1 - p) there, 0 elsewhere
    (all 0 when p == 1)."""
    keep = get_rng().random(shape) < 1.0 - p
    scale = 0.0 if p == 1.0 else 1.0 / (1.0 - p)
    return keep.astype(dtype) * dtype.type(scale)


def dropout(x: Tensor, p: float = 0.5, training: bool = True, inplace: bool = False) -> Tensor:
    """Zero each value of ``x`` with probability ``p`` and scale the rest by 1 / (1 - p)
    when ``training``; return ``x`` itself otherwise (or when p == 0). Any shape.
    ``inplace=True`` writes the result into ``x`` and returns it (recorded in the graph
    as PyTorch does)."""
    p = check_p(p)
    check_float(x, "dropout")
    training = _check_training(training, "dropout")
    if not training or p == 0.0:
        return x
    return _masked(x, dropout_mask(x.shape, p, x.dtype), inplace, "dropout_")


def _masked(x: Tensor, mask: np.ndarray, inplace: bool, op: str) -> Tensor:
    """x * mask (`Dropout`), written into x when ``inplace`` (the mask drawn once)."""
    if inplace:
        return x._write_result(op, lambda t: Dropout.apply(t, mask))
    return Dropout.apply(x, mask)


class FeatureDropoutShapeError(ValueError, RuntimeError):
    """Channel dropout of an input with fewer than 2 dimensions (a ValueError for minires'
    rule on bad input, a RuntimeError as in PyTorch)."""


def dropout2d(x: Tensor, p: float = 0.5, training: bool = True, inplace: bool = False) -> Tensor:
    """Zero whole channels, as ``torch.nn.functional.dropout2d`` (and ``nn.Dropout2d``):
    when ``training``, each feature map ``x[n, c]`` is zeroed with probability ``p`` and
    the kept ones are scaled by ``1 / (1 - p)``; otherwise (or when p == 0) ``x`` itself
    is returned.

    Shape: input ``(N, C, H, W)``, output the same. As in PyTorch, a 3-D input is read as
    ``(N, C, L)`` (with a warning: channel-wise 1-D dropout) and other inputs as
    ``(N, C, ...)`` (with a warning); fewer than 2 dimensions is an error in training.
    The mask, ``(N, C, 1, ..., 1)``, comes from minires' generator (``mr.manual_seed``
    makes it reproducible); the gradient is the upstream gradient times the same mask.
    ``inplace=True`` writes the result into ``x`` and returns it (recorded in the graph
    as PyTorch does).
    """
    op = "dropout2d"
    p = check_p(p, op)
    check_float(x, op)
    if x.ndim == 3:
        warnings.warn(
            "dropout2d: Received a 3D input to dropout2d and assuming that channel-wise "
            "1D dropout behavior is desired - input is interpreted as shape (N, C, L), "
            "where C is the channel dim (as PyTorch does)",
            stacklevel=2,
        )
    elif x.ndim != 4:
        warnings.warn(
            f"dropout2d: Received a {x.ndim}-D input to dropout2d; it exists to zero "
            "channels of (N, C, H, W) inputs (use dropout for single values)",
            stacklevel=2,
        )
    training = _check_training(training, op)
    if not training or p == 0.0:
        return x
    if p == 1.0:  # torch's shortcut: every channel dropped, whatever the shape
        return _masked(x, np.zeros(x.shape, x.dtype), inplace, "dropout2d_")
    if x.ndim < 2:
        raise FeatureDropoutShapeError(
            f"{op}: channel dropout needs at least 2 dimensions (N, C, ...), got an input "
            f"of shape {x.shape}"
        )
    mask = dropout_mask(x.shape[:2] + (1,) * (x.ndim - 2), p, x.dtype)
    return _masked(x, mask, inplace, "dropout2d_")  # x * mask, broadcast; backward: grad * mask
