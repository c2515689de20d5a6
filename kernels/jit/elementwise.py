"""Elementwise passes: ReLU forward/backward, the sum of two arrays (residual joins and
the gradient sums where paths meet), the fused residual add + ReLU, and the finiteness
test of the conv entry points.

Flat loops over the raveled arrays (one compilation per dtype), split into contiguous
ranges over the shared thread pool (`parallel_for`; no Numba threading layer, whose
spinning OpenMP workers would compete with OpenBLAS's threads in the next conv).
NaN propagates through ReLU like np.maximum / PyTorch, and its backward passes the
gradient at a NaN (zero only where the output is <= 0), like PyTorch's
threshold_backward.
"""

from __future__ import annotations

import numpy as np

from ._numba import PARALLEL_MIN_BYTES, jit, parallel_for

_BLOCK = 1 << 16  # elements per task


# Each task loops over its own block through 0-based views (`x[s:e]`): with the loop
# written as `for i in range(b0 * _BLOCK, min(...))` LLVM did not vectorise it and the
# ReLU ran at ~60% of np.maximum's speed (0.56 vs 0.33 ms serial on 1M float32); with
# the views it matches np.maximum serially and beats it on 2 threads. The typed zero
# keeps the select in the data dtype (a bare `0` unifies float32 with int64 -> float64).


@jit(nogil=True)
def _relu(b0, b1, x, out):
    s, e = b0 * _BLOCK, min(b1 * _BLOCK, x.size)
    src, dst = x[s:e], out[s:e]
    zero = x.dtype.type(0)
    for i in range(e - s):
        v = src[i]
        dst[i] = zero if v <= zero else v  # NaN > 0 and NaN <= 0 are both False: NaN stays


@jit(nogil=True)
def _relu_inplace(b0, b1, x):
    # one array read and written: with `_relu(..., x, x)` LLVM's runtime overlap check
    # fails and the scalar loop runs
    s, e = b0 * _BLOCK, min(b1 * _BLOCK, x.size)
    v = x[s:e]
    zero = x.dtype.type(0)
    for i in range(e - s):
        if v[i] <= zero:
            v[i] = zero


@jit(nogil=True)
def _relu_bwd(b0, b1, g, y, out):
    s, e = b0 * _BLOCK, min(b1 * _BLOCK, g.size)
    gs, ys, dst = g[s:e], y[s:e], out[s:e]
    zero = g.dtype.type(0)
    for i in range(e - s):
        dst[i] = zero if ys[i] <= zero else gs[i]  # NaN output: the gradient passes (torch)


@jit(nogil=True)
def _add(b0, b1, a, b, out):
    s, e = b0 * _BLOCK, min(b1 * _BLOCK, a.size)
    as_, bs, dst = a[s:e], b[s:e], out[s:e]
    for i in range(e - s):
        dst[i] = as_[i] + bs[i]


@jit(nogil=True)
def _add_relu(b0, b1, a, b, out):
    s, e = b0 * _BLOCK, min(b1 * _BLOCK, a.size)
    as_, bs, dst = a[s:e], b[s:e], out[s:e]
    zero = a.dtype.type(0)
    for i in range(e - s):
        v = as_[i] + bs[i]
        dst[i] = zero if v <= zero else v


# A float is NaN or +-inf exactly when its exponent bits are all ones, i.e. when adding
# one to its exponent field carries into the sign bit: an OR over a block of
# (bits & exponent) + lowest exponent bit has the sign bit set iff the block holds a
# non-finite value - integer operations that vectorise without fastmath (which would let
# LLVM assume there is no NaN to find) and allocate nothing. np.isfinite(a).all() makes
# a bool array of a's size first; for ResNet-50's weights (100 MB, tested before the
# forward and the input gradient of every conv) the conv entry points spent ~25 ms of a
# 714 ms batch-4 step in it.
# below this many blocks one thread is as fast (ms, float32, warm, np.isfinite(a).all() /
# one thread / two: 262K values 0.027 / 0.023 / 0.076, 1M 0.21 / 0.16 / 0.16, 2.4M
# 0.51 / 0.36 / 0.24)
_FINITE_PARALLEL_BLOCKS = 16


@jit(nogil=True)
def _finite_blocks(b0, b1, bits, exponent, carry, flags):
    sign = exponent + carry  # the sign bit alone
    for b in range(b0, b1):
        s, e = b * _BLOCK, min((b + 1) * _BLOCK, bits.size)
        v = bits[s:e]
        seen = exponent & 0  # in the bits' unsigned type
        for i in range(e - s):
            seen |= (v[i] & exponent) + carry
        flags[b] = (seen & sign) == 0


def all_finite(a) -> bool:
    """True if the float32 / float64 array `a` (any shape) holds no NaN or inf."""
    a = np.asarray(a)
    if a.dtype == np.float32:
        bits, exponent, carry = _flat(a).view(np.uint32), np.uint32(0x7F800000), np.uint32(1 << 23)
    elif a.dtype == np.float64:
        bits, exponent = _flat(a).view(np.uint64), np.uint64(0x7FF0000000000000)
        carry = np.uint64(1 << 52)
    else:
        return bool(np.isfinite(a).all())
    flags = np.empty(_blocks(bits.size), np.bool_)
    if flags.size < _FINITE_PARALLEL_BLOCKS:
        _finite_blocks(0, flags.size, bits, exponent, carry, flags)
    else:
        parallel_for(_finite_blocks, flags.size, bits, exponent, carry, flags)
    return bool(flags.all())


def _blocks(n):
    return max(1, -(-n // _BLOCK))


def _flat(a, dtype=None):
    return np.ascontiguousarray(a, dtype=dtype).reshape(-1)


def relu_forward(x, out=None):
    """max(x, 0) elementwise (NaN stays NaN): x any shape -> out like x (written into
    ``out`` if given - x itself for an in-place ReLU)."""
    x = np.asarray(x)
    if out is not None and not out.flags.c_contiguous:  # no flat view to write through
        np.copyto(out, relu_forward(x))
        return out
    if out is x:
        parallel_for(_relu_inplace, _blocks(x.size), x.reshape(-1), nbytes=x.nbytes)
        return out
    if out is None:
        out = np.empty(x.shape, x.dtype)
    parallel_for(_relu, _blocks(x.size), _flat(x), out.reshape(-1), nbytes=x.nbytes)
    return out


def relu_backward(grad_out, out):
    """grad_out where out > 0, else 0 (a NaN output passes the gradient, like torch):
    grad_out and out of one shape -> grad_x of that shape."""
    grad_out = np.asarray(grad_out)
    gx = np.empty(grad_out.shape, grad_out.dtype)
    parallel_for(
        _relu_bwd,
        _blocks(gx.size),
        _flat(grad_out),
        _flat(out, grad_out.dtype),
        gx.reshape(-1),
        nbytes=gx.nbytes,
    )
    return gx


def add(a, b):
    """a + b: a and b of one shape -> a new array of that shape (as NumPy's add, NaN and
    inf included, silently, like torch). Two threads for float32 / float64 C-contiguous
    arrays of one dtype from `PARALLEL_MIN_BYTES` up (NumPy's add runs on one: a
    ResNet-50 residual join of 6.4 MB took 1.4 ms there, 0.65 ms here); anything else is
    NumPy's `a + b`."""
    a, b = np.asarray(a), np.asarray(b)
    if (
        a.dtype != b.dtype
        or a.dtype not in (np.float32, np.float64)
        or a.shape != b.shape
        or a.nbytes < PARALLEL_MIN_BYTES
        or not (a.flags.c_contiguous and b.flags.c_contiguous)
    ):
        with np.errstate(over="ignore", invalid="ignore"):  # inf - inf: NaN, no warning
            return a + b
    out = np.empty(a.shape, a.dtype)
    parallel_for(_add, _blocks(a.size), a.reshape(-1), b.reshape(-1), out.reshape(-1))
    return out


def add_relu_forward(a, b):
    """relu(a + b) in one pass (the residual join of a ResNet block); same shapes."""
    a = np.asarray(a)
    out = np.empty(a.shape, a.dtype)
    parallel_for(
        _add_relu, _blocks(a.size), _flat(a), _flat(b, a.dtype), out.reshape(-1), nbytes=a.nbytes
    )
    return out
