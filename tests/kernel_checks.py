"""Shared checks of the kernel tests (kernels.jit against kernels.reference)."""

from __future__ import annotations

import numba
import numpy as np


def assert_close(got, want, dtype):
    """~1e-5 relative (float32) / 1e-12 (float64), relative to the array's scale; shapes
    and dtypes must match."""
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape
    assert got.dtype == want.dtype
    tol = 2e-5 if np.dtype(dtype) == np.float32 else 1e-12
    scale = max(1.0, float(np.abs(want).max(initial=0.0)))
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol * scale)


def with_threads(k, fn):
    """fn() with the Numba kernels on k threads."""
    old = numba.get_num_threads()
    numba.set_num_threads(k)
    try:
        return fn()
    finally:
        numba.set_num_threads(old)


def serial_and_parallel(fn):
    """(fn() on 1 thread, fn() on 2 threads, or 1 where only one is configured)."""
    return with_threads(1, fn), with_threads(min(2, numba.config.NUMBA_NUM_THREADS), fn)


def conv_passes(x, wt, go, args, bias=None):
    """A function computing the three conv passes of the active kernels.jit."""
    import minires.kernels.jit as J

    def run():
        return (
            J.conv2d_forward(x, wt, bias, *args),
            J.conv2d_backward_input(go, wt, x.shape, *args),
            J.conv2d_backward_weight(x, go, wt.shape, *args),
        )

    return run
