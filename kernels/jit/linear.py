"""The fully connected layer's matrix products on the thread team.

Each product is one BLAS GEMM on one thread (`blas_one_thread`: a threaded OpenBLAS
GEMM's last bits depend on its thread count, and its threads spin against ours), cut
into `_CHUNKS` GEMMs over columns of the output that run on two threads when the
weights are large: at small batch these products stream the weights (ResNet-50's fc,
2048 x 1000, is 8 MB, read cold from memory: ms for batch 2, forward / input gradient /
weight gradient, one GEMM -> two: 1.43 -> 0.91, 1.60 -> 0.91, 1.53 -> 1.15). The cut
depends on the shapes only, and each output element is the same GEMM's sum over the
same k, so the results are bit-identical for any thread count (and, here, to one GEMM).
"""

from __future__ import annotations

import numpy as np

from ..blas import blas_controller
from ._numba import PARALLEL_MIN_BYTES
from .im2col_gemm import run_blas_blocks

_CHUNKS = 2  # column blocks of a split product
_SPLIT_MIN_MACS = 1 << 24  # or products of this many multiply-adds (compute-bound ones)


def _chunks(weight: np.ndarray, m: int) -> int:
    """Column blocks for a product with these weights and m rows of x: `_CHUNKS` when
    the weights take half a core's L2 or more, or the product is large; else 1."""
    big = weight.nbytes >= PARALLEL_MIN_BYTES or m * weight.size >= _SPLIT_MIN_MACS
    return _CHUNKS if big and blas_controller() else 1


def _bounds(n: int, chunks: int) -> list[int]:
    return [n * i // chunks for i in range(chunks + 1)]


def _forward_range(t0, t1, x, weight, out, bounds):
    for t in range(t0, t1):  # out[:, j0:j1] = x @ weight[j0:j1]^T
        j0, j1 = bounds[t], bounds[t + 1]
        np.matmul(x, weight[j0:j1].T, out=out[:, j0:j1])


def _input_range(t0, t1, grad_out, weight, gx, bounds):
    for t in range(t0, t1):  # gx[:, k0:k1] = grad_out @ weight[:, k0:k1]
        k0, k1 = bounds[t], bounds[t + 1]
        np.matmul(grad_out, weight[:, k0:k1], out=gx[:, k0:k1])


def _weight_range(t0, t1, grad_out, x, gw, bounds):
    for t in range(t0, t1):  # gw[j0:j1] = grad_out[:, j0:j1]^T @ x
        j0, j1 = bounds[t], bounds[t + 1]
        np.matmul(grad_out[:, j0:j1].T, x, out=gw[j0:j1])


def linear_forward(x: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """out = x @ weight^T: x (M, K), weight (N, K) -> (M, N) in their result dtype."""
    out = np.empty((x.shape[0], weight.shape[0]), np.result_type(x, weight))
    c = _chunks(weight, x.shape[0])
    run_blas_blocks(_forward_range, c, x, weight, out, _bounds(weight.shape[0], c))
    return out


def linear_backward_input(grad_out: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """grad_x = grad_out @ weight: grad_out (M, N), weight (N, K) -> (M, K)."""
    gx = np.empty((grad_out.shape[0], weight.shape[1]), np.result_type(grad_out, weight))
    c = _chunks(weight, grad_out.shape[0])
    run_blas_blocks(_input_range, c, grad_out, weight, gx, _bounds(weight.shape[1], c))
    return gx


def linear_backward_weight(grad_out: np.ndarray, x: np.ndarray) -> np.ndarray:
    """grad_weight = grad_out^T @ x: grad_out (M, N), x (M, K) -> (N, K)."""
    n = grad_out.shape[1]
    gw = np.empty((n, x.shape[1]), np.result_type(grad_out, x))
    c = _chunks(gw, grad_out.shape[0])
    run_blas_blocks(_weight_range, c, grad_out, x, gw, _bounds(n, c))
    return gw
