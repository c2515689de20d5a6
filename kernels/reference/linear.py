"""The fully connected layer's three matrix products (the op adds the bias and flattens
the leading dimensions to rows)."""

from __future__ import annotations

import numpy as np


def linear_forward(x: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """out = x @ weight^T: x (M, K), weight (N, K) -> (M, N)."""
    return x @ weight.T


def linear_backward_input(grad_out: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """grad_x = grad_out @ weight: grad_out (M, N), weight (N, K) -> (M, K)."""
    return grad_out @ weight


def linear_backward_weight(grad_out: np.ndarray, x: np.ndarray) -> np.ndarray:
    """grad_weight = grad_out^T @ x: grad_out (M, N), x (M, K) -> (N, K)."""
    return grad_out.T @ x
