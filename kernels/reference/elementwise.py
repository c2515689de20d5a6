"""Elementwise kernels: ReLU and the sum of two arrays.

In the reference these are one-liners; the `jit` backend fuses them with neighbouring
operations (e.g. the residual add), which is why they are kernels at all.
"""

from __future__ import annotations

import numpy as np


def relu_forward(x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """out = max(x, 0), any shape; same dtype as x (NaN propagates, like PyTorch).
    ``out``: where to write (x's shape and dtype; x itself for an in-place ReLU)."""
    return np.maximum(x, x.dtype.type(0), out=out)


def relu_backward(grad_out: np.ndarray, out: np.ndarray) -> np.ndarray:
    """grad_x = 0 where the ReLU was off (out <= 0), else grad_out; any shape.

    Uses the forward *output*, so the input need not be kept. At exactly 0 the
    gradient is taken as 0, like PyTorch. Written as "zero where out <= 0" rather than
    "pass where out > 0" because the two differ at NaN: PyTorch's threshold_backward
    passes the gradient through a NaN input (NaN <= 0 is False), and so do we.
    """
    return np.where(out <= 0, grad_out.dtype.type(0), grad_out)


def add(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a + b, a and b of one shape (a residual join, or two gradients where paths meet);
    inf + -inf is NaN without a warning, as in torch."""
    with np.errstate(over="ignore", invalid="ignore"):
        return a + b
