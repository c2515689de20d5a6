"""Row standardisation (layer norm, group norm) as Numba passes, parallel over rows.

Same maths as `kernels.reference.rownorm`. Statistics are accumulated in float64 whatever
the input dtype, two passes (mean, then the centred sum of squares: no cancellation when
|mean| >> std). Each row is computed by one thread start to end, so the result does not
depend on the thread count.
"""

from __future__ import annotations

import numpy as np

from ._numba import FASTMATH, jit, parallel_for


@jit(nogil=True, fastmath=FASTMATH)
def _fwd(r0, r1, x, eps, xhat, mean, rstd):
    D = x.shape[1]
    for r in range(r0, r1):
        row = x[r]
        if D == 0:  # NumPy's mean of nothing
            mean[r] = np.nan
            rstd[r] = np.nan
            continue
        s = 0.0
        for i in range(D):
            s += row[i]
        m = s / D
        q = 0.0
        for i in range(D):
            d = row[i] - m
            q += d * d
        v = q / D + eps
        rs = np.inf if v == 0 else 1.0 / np.sqrt(v)  # eps=0, constant row: inf, then NaN
        mean[r] = m
        rstd[r] = rs
        dt = xhat.dtype.type
        m_ = dt(m)
        rs_ = dt(rs)
        dst = xhat[r]
        for i in range(D):
            dst[i] = (row[i] - m_) * rs_


@jit(nogil=True, fastmath=FASTMATH)
def _bwd(r0, r1, g, xhat, rstd, gx):
    D = g.shape[1]
    for r in range(r0, r1):
        if D == 0:
            continue
        gr = g[r]
        xr = xhat[r]
        sg = 0.0
        sgx = 0.0
        for i in range(D):
            sg += gr[i]
            sgx += gr[i] * xr[i]
        dt = gx.dtype.type
        mg = dt(sg / D)
        mgx = dt(sgx / D)
        rs = dt(rstd[r])
        dst = gx[r]
        for i in range(D):
            dst[i] = rs * (gr[i] - mg - xr[i] * mgx)


def row_norm_forward(x, eps):
    """Each row standardised: x (M, D) -> (xhat (M, D), mean (M,), rstd (M,) =
    1/sqrt(biased var + eps))."""
    x = np.ascontiguousarray(x)
    xhat = np.empty_like(x)
    mean = np.empty(x.shape[0], np.float64)
    rstd = np.empty(x.shape[0], np.float64)
    parallel_for(_fwd, x.shape[0], x, float(eps), xhat, mean, rstd, nbytes=x.nbytes)
    return xhat, mean.astype(x.dtype), rstd.astype(x.dtype)


def row_norm_backward(grad_xhat, xhat, rstd):
    """Gradient of `row_norm_forward`: grad_xhat, xhat (M, D), rstd (M,) -> grad_x (M, D)."""
    xhat = np.ascontiguousarray(xhat)
    g = np.ascontiguousarray(grad_xhat, dtype=xhat.dtype)
    gx = np.empty_like(xhat)
    parallel_for(_bwd, xhat.shape[0], g, xhat, np.asarray(rstd), gx, nbytes=xhat.nbytes)
    return gx
