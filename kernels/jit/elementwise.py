"""Elementwise passes: ReLU forward/backward and the fused residual add + ReLU.

Flat loops over the raveled arrays (one compilation per dtype), split into contiguous
ranges over the shared thread pool (`parallel_for`; no Numba threading layer, whose
spinning OpenMP workers would compete with OpenBLAS's threads in the next conv).
NaN propagates through ReLU like np.maximum / PyTorch.
"""

from __future__ import annotations

import numpy as np

from ._numba import jit, parallel_for

_BLOCK = 1 << 16  # elements per task


@jit(nogil=True)
def _relu(b0, b1, x, out):
    for i in range(b0 * _BLOCK, min(b1 * _BLOCK, x.size)):
        v = x[i]
        out[i] = 0 if v <= 0 else v


@jit(nogil=True)
def _relu_bwd(b0, b1, g, y, out):
    for i in range(b0 * _BLOCK, min(b1 * _BLOCK, g.size)):
        out[i] = g[i] if y[i] > 0 else 0


@jit(nogil=True)
def _add_relu(b0, b1, a, b, out):
    for i in range(b0 * _BLOCK, min(b1 * _BLOCK, a.size)):
        v = a[i] + b[i]
        out[i] = 0 if v <= 0 else v


def _blocks(n):
    return max(1, -(-n // _BLOCK))


def _flat(a, dtype=None):
    return np.ascontiguousarray(a, dtype=dtype).reshape(-1)


def relu_forward(x):
    x = np.asarray(x)
    out = np.empty(x.shape, x.dtype)
    parallel_for(_relu, _blocks(x.size), _flat(x), out.reshape(-1))
    return out


def relu_backward(grad_out, out):
    grad_out = np.asarray(grad_out)
    gx = np.empty(grad_out.shape, grad_out.dtype)
    parallel_for(
        _relu_bwd, _blocks(gx.size), _flat(grad_out), _flat(out, grad_out.dtype), gx.reshape(-1)
    )
    return gx


def add_relu_forward(a, b):
    """relu(a + b) in one pass (the residual join of a ResNet block); same shapes."""
    a = np.asarray(a)
    out = np.empty(a.shape, a.dtype)
    parallel_for(_add_relu, _blocks(a.size), _flat(a), _flat(b, a.dtype), out.reshape(-1))
    return out
