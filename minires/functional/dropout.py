"""Inverted dropout, as in PyTorch: in training each value is kept with probability
``1 - p`` and scaled by ``1 / (1 - p)`` (so the expected output equals the input and
evaluation needs no rescaling); in evaluation it is the identity.

The mask comes from minires' generator (`minires.random`), so ``mr.manual_seed`` makes it
reproducible."""

from __future__ import annotations

import numbers

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


def dropout_mask(shape: tuple[int, ...], p: float, dtype: np.dtype) -> np.ndarray:
    """Keep each entry with probability 1 - p: the mask is 1 / (1 - p) there, 0 elsewhere
    (all 0 when p == 1)."""
    keep = get_rng().random(shape) < 1.0 - p
    scale = 0.0 if p == 1.0 else 1.0 / (1.0 - p)
    return keep.astype(dtype) * dtype.type(scale)


def dropout(x: Tensor, p: float = 0.5, training: bool = True) -> Tensor:
    """Zero each value of ``x`` with probability ``p`` and scale the rest by 1 / (1 - p)
    when ``training``; return ``x`` itself otherwise (or when p == 0). Any shape."""
    p = check_p(p)
    check_float(x, "dropout")
    if not training or p == 0.0:
        return x
    return Dropout.apply(x, dropout_mask(x.shape, p, x.dtype))
