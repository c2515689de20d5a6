"""Winograd F(2x2, 3x3) on channels-last tiles: output channels in the SIMD lanes.

The same algorithm as winograd.py (see there for the transforms: V = B^T d B per 4x4
input patch, U = G g G^T per kernel, a 2x2 output tile y = A^T M A with M_p = sum over
input channels of U_p V_p), in the layout oneDNN uses on small planes. winograd.py keeps
*tiles* in the lanes, so a plane of 4 tiles a row (8x8, 7x7) half-fills even a vector
holding two rows; here the lanes hold *channels*, which any plane fills:

    xt      one image channels-last with a zero border (pixel (i, j): its cpi input
            channels side by side)
    V_p     (tiles, cpi): the input transform of each tile, channel vectors at a time
    U_p     (cpi, cw): the transformed weights, output channels padded to cw, whole
            panels of 4 vectors (`winograd_weights`)
    M_p     (tiles, cw) = V_p @ U_p: 16 GEMMs; a tile of 6 tiles x 4 vectors of output
            channels (24 accumulators) stays in registers over the input channels,
            each step loading 4 weight vectors and broadcasting 6 values of V
    y       A^T M A + bias per tile and vector of output channels, then the plane back
            to channels-first (strided gathers)

One forward task per chunk of images (their V and M in L2), all copies done inside it
while the image is in cache. The input gradient of a stride-1 conv is the forward with
the transposed, flipped weights, which `winograd_weights` reads in place. The weight
gradient is the backward of the same algorithm: dU_p (cpi, cw) = sum over tiles of
V_p^T (A dY A^T)_p - the same register tile with the reduction over tiles (6 input
channels x 4 vectors of output channels, each tile loading 4 grad_out vectors and
broadcasting 6 values of V) - then dW = G^T dU G; per-chunk partial dU are added in
chunk order (results do not depend on the thread count).

Rounding: as winograd.py's (the transforms add at most 9 inputs with coefficients 1
and 1/2). Non-finite values: a NaN or inf reaches all 4 outputs of its tile, so
`winograd_forward` says whether its output is finite and the caller recomputes a
non-finite one (conv.py); a weight gradient that comes out non-finite is recomputed by
the caller like every fast weight gradient's.
"""

from __future__ import annotations

import numpy as np
from numba import uint64 as u64

from ._numba import FASTMATH, jit, parallel_for
from .simd import (
    VECTOR_BYTES,
    lanes,
    vadd,
    vbcast,
    vfma,
    vgather,
    vload,
    vloadm,
    vmul,
    vneg,
    vstore,
    vstorem,
    vsub,
)

PANEL_VECTORS = 4  # vectors of output channels in a register tile (of 6 x 4)


def panel_width(cpo: int, dtype) -> int:
    """Output channels of a group padded to whole panels of `PANEL_VECTORS` vectors."""
    w = PANEL_VECTORS * lanes(dtype)
    return -(-cpo // w) * w


# --------------------------------------------------------------------------- weights


@jit(nogil=True)
def _pack_range(t0, t1, w, out, cpo, cpi, T, rows, cw, transposed, L):
    # task t = (group g, row r of out (G, T, rows, cw) flat): out[g, k, r, :] for each
    # tap k, written in order (planes rows*cw apart: interleaving the 9 planes' writes
    # made them share L1 sets when that is a multiple of 4 KB, 4-8x slower), from
    # w[g, o, i, k] with (r, c) = (i, o), or transposed (o, i) and taps reversed
    one = u64(1)
    uT, ucw, plane = u64(T), u64(cw), u64(rows * cw)
    for t in range(t0, t1):
        g = t // rows
        r = u64(t - g * rows)
        dst = out[g * T * rows * cw :]
        src = w[g * cpo * cpi * T :]
        for k in range(uT):
            if transposed:  # out[g, T-1-k, o, i] = w[g, o, i, k]: w[g, o] in order
                s = r * u64(cpi) * uT + k
                d = (uT - one - k) * plane + r * ucw
                for c in range(u64(cpi)):
                    dst[d + c] = src[s + c * uT]
                for c in range(u64(cpi), ucw):  # zero padding
                    dst[d + c] = 0
            else:  # out[g, k, i, o] = w[g, o, i, k]: strided gathers (per o, w[g, o, i]
                # is 9 values in one or two cache lines, all read from L1 after k = 0)
                d = k * plane + r * ucw
                s = r * uT + k
                for c in range(0, cpo, L):
                    m = (1 << min(L, cpo - c)) - 1
                    vstorem(dst, d + c, vgather(src, s + c * cpi * T, cpi * T, m), m)
                for c in range(u64(cpo), ucw):
                    dst[d + c] = 0


def pack_weights(weight: np.ndarray, groups: int, transposed: bool = False) -> np.ndarray:
    """weight (C_out, cpi, KH, KW) -> (groups, KH*KW, cpi, cw) zero-padded, cw =
    `panel_width(cpo)`: row (tap, input channel) holds the output channels. With
    `transposed`, the weights of the transposed conv with flipped kernels (the stride-1
    input gradient as a forward conv): per group, input and output channels swapped
    and the taps reversed, (groups, KH*KW, cpo, panel_width(cpi))."""
    c, cpi, kh, kw = weight.shape
    cpo = c // groups
    rows, cols = (cpo, cpi) if transposed else (cpi, cpo)
    out = np.empty((groups, kh * kw, rows, panel_width(cols, weight.dtype)), weight.dtype)
    w = np.ascontiguousarray(weight).reshape(-1)
    _pack_range(0, groups * rows, w, out.reshape(-1), cpo, cpi, kh * kw, rows, out.shape[3],
                transposed, lanes(weight.dtype))  # fmt: skip
    return out


# --------------------------------------------------------------------------- copies


@jit(fastmath=FASTMATH)
def _to_channels_last(xt, xn, C, cs, H, W, Wp, ph, pw, L):
    """xn (C*H*W,) one image, channels first -> xt (Hp*Wp*cs,) at rows ph.., columns
    pw.. (pixels cs >= C apart; the border and channels past C are left as they are:
    zero from allocation)."""
    HW = H * W
    for r in range(H):
        for q in range(W):
            d = ((r + ph) * Wp + q + pw) * cs
            s = r * W + q
            for c0 in range(0, C, L):
                m = (1 << min(L, C - c0)) - 1
                vstorem(xt, d + c0, vgather(xn, c0 * HW + s, HW, m), m)


@jit(fastmath=FASTMATH)
def _from_channels_last(dst, d0, ot, P, cpo, cw, L):
    """ot (P, cw) rows of one group's output -> dst[d0 + co * P + p] for co < cpo."""
    for co in range(cpo):
        for p0 in range(0, P, L):
            m = (1 << min(L, P - p0)) - 1
            vstorem(dst, d0 + co * P + p0, vgather(ot, p0 * cw + co, cw, m), m)


# --------------------------------------------------------------------------- register tiles


@jit(fastmath=FASTMATH)
def _fma4(a, xv, w0, w1, w2, w3):
    """a[v] + xv * wv for the 4 vectors of output channels of one pixel."""
    return (vfma(xv, w0, a[0]), vfma(xv, w1, a[1]), vfma(xv, w2, a[2]), vfma(xv, w3, a[3]))


@jit(fastmath=FASTMATH)
def _load4(a, i, L):
    return (vload(a, i), vload(a, i + L), vload(a, i + 2 * L), vload(a, i + 3 * L))


@jit(fastmath=FASTMATH)
def _store4(c, i, a, L):
    vstore(c, i, a[0])
    vstore(c, i + L, a[1])
    vstore(c, i + 2 * L, a[2])
    vstore(c, i + 3 * L, a[3])


@jit(fastmath=FASTMATH)
def _gemm_6x4(a, b, c, c0, crow, a0, a1, a2, a3, a4, a5, K, astride, b0, bstride, add, zeros,
              L):  # fmt: skip
    """c[c0 + j*crow + (4 vectors)] (+)= sum over k < K of a[a_j + k*astride] * b[b0 +
    k*bstride + (4 vectors)] for the 6 rows j whose values start at a[a0..a5]: 6 x 4
    accumulators in registers, starting from c's values if `add`, else from zero
    (`zeros`: an array of at least one vector of zeros). The forward's tile (rows:
    tiles, k: input channels, astride 1) and the weight gradient's (rows: input
    channels, k: tiles, astride cpi) are this one.

    With 16 vector registers (AVX2) 24 accumulators spill: there the tile is two 6 x 2
    halves, one after the other (12 accumulators, 2 vectors of b, 1 broadcast), each
    broadcasting the 6 rows of a again (BLIS's Haswell micro-kernel shape)."""
    if VECTOR_BYTES < 64:
        _gemm_6x2(a, b, c, c0, crow, a0, a1, a2, a3, a4, a5, K, astride, b0, bstride, add,
                  zeros, L)  # fmt: skip
        _gemm_6x2(a, b, c, c0 + 2 * L, crow, a0, a1, a2, a3, a4, a5, K, astride, b0 + 2 * L,
                  bstride, add, zeros, L)  # fmt: skip
        return
    if add:
        r0 = _load4(c, c0, L)
        r1 = _load4(c, c0 + crow, L)
        r2 = _load4(c, c0 + 2 * crow, L)
        r3 = _load4(c, c0 + 3 * crow, L)
        r4 = _load4(c, c0 + 4 * crow, L)
        r5 = _load4(c, c0 + 5 * crow, L)
    else:
        z = vload(zeros, 0)
        r0 = r1 = r2 = r3 = r4 = r5 = (z, z, z, z)
    for k in range(K):
        w = b0 + k * bstride
        w0 = vload(b, w)
        w1 = vload(b, w + L)
        w2 = vload(b, w + 2 * L)
        w3 = vload(b, w + 3 * L)
        s = k * astride
        r0 = _fma4(r0, vbcast(a, a0 + s), w0, w1, w2, w3)
        r1 = _fma4(r1, vbcast(a, a1 + s), w0, w1, w2, w3)
        r2 = _fma4(r2, vbcast(a, a2 + s), w0, w1, w2, w3)
        r3 = _fma4(r3, vbcast(a, a3 + s), w0, w1, w2, w3)
        r4 = _fma4(r4, vbcast(a, a4 + s), w0, w1, w2, w3)
        r5 = _fma4(r5, vbcast(a, a5 + s), w0, w1, w2, w3)
    _store4(c, c0, r0, L)
    _store4(c, c0 + crow, r1, L)
    _store4(c, c0 + 2 * crow, r2, L)
    _store4(c, c0 + 3 * crow, r3, L)
    _store4(c, c0 + 4 * crow, r4, L)
    _store4(c, c0 + 5 * crow, r5, L)


@jit(fastmath=FASTMATH)
def _gemm_6x2(a, b, c, c0, crow, a0, a1, a2, a3, a4, a5, K, astride, b0, bstride, add, zeros,
              L):  # fmt: skip
    """`_gemm_6x4` on 2 vectors of columns (its half on AVX2)."""
    if add:
        r0 = (vload(c, c0), vload(c, c0 + L))
        r1 = (vload(c, c0 + crow), vload(c, c0 + crow + L))
        r2 = (vload(c, c0 + 2 * crow), vload(c, c0 + 2 * crow + L))
        r3 = (vload(c, c0 + 3 * crow), vload(c, c0 + 3 * crow + L))
        r4 = (vload(c, c0 + 4 * crow), vload(c, c0 + 4 * crow + L))
        r5 = (vload(c, c0 + 5 * crow), vload(c, c0 + 5 * crow + L))
    else:
        z = vload(zeros, 0)
        r0 = r1 = r2 = r3 = r4 = r5 = (z, z)
    for k in range(K):
        w = b0 + k * bstride
        w0 = vload(b, w)
        w1 = vload(b, w + L)
        s = k * astride
        r0 = _fma2(r0, vbcast(a, a0 + s), w0, w1)
        r1 = _fma2(r1, vbcast(a, a1 + s), w0, w1)
        r2 = _fma2(r2, vbcast(a, a2 + s), w0, w1)
        r3 = _fma2(r3, vbcast(a, a3 + s), w0, w1)
        r4 = _fma2(r4, vbcast(a, a4 + s), w0, w1)
        r5 = _fma2(r5, vbcast(a, a5 + s), w0, w1)
    for j, r in enumerate((r0, r1, r2, r3, r4, r5)):
        vstore(c, c0 + j * crow, r[0])
        vstore(c, c0 + j * crow + L, r[1])


@jit(fastmath=FASTMATH)
def _fma2(a, xv, w0, w1):
    return (vfma(xv, w0, a[0]), vfma(xv, w1, a[1]))


# --------------------------------------------------------------------------- Winograd


@jit(fastmath=FASTMATH)
def _wino_row(U, u, R, half, e0, e1, e2):
    """U[u + p*R] for p = 0..3: G (e0, e1, e2) along a row of the kernel."""
    vstore(U, u, e0)
    vstore(U, u + R, vmul(half, vadd(vadd(e0, e1), e2)))
    vstore(U, u + 2 * R, vmul(half, vadd(vsub(e0, e1), e2)))
    vstore(U, u + 3 * R, e2)


@jit(fastmath=FASTMATH)
def _wino_weights_task(t, wp, U, half, rows, cw, L):
    # task t = (group, row r): wp (G, 9, rows, cw) packed 3x3 kernels -> U (G, 16,
    # rows, cw), U_p = (G g G^T)_p, a vector of output channels at a time
    g = t // rows
    r = t - g * rows
    half = vload(half, 0)
    R = rows * cw  # one tap / position apart
    s0 = g * 9 * R + r * cw
    u0 = g * 16 * R + r * cw
    for v in range(0, cw, L):
        s = s0 + v
        k0, k1, k2 = vload(wp, s), vload(wp, s + R), vload(wp, s + 2 * R)
        k3, k4, k5 = vload(wp, s + 3 * R), vload(wp, s + 4 * R), vload(wp, s + 5 * R)
        k6, k7, k8 = vload(wp, s + 6 * R), vload(wp, s + 7 * R), vload(wp, s + 8 * R)
        u = u0 + v
        # G g: kernel rows g0, (g0 + g1 + g2) / 2, (g0 - g1 + g2) / 2, g2; then along rows
        _wino_row(U, u, R, half, k0, k1, k2)
        b0 = vmul(half, vadd(vadd(k0, k3), k6))
        b1 = vmul(half, vadd(vadd(k1, k4), k7))
        b2 = vmul(half, vadd(vadd(k2, k5), k8))
        _wino_row(U, u + 4 * R, R, half, b0, b1, b2)
        c0 = vmul(half, vadd(vsub(k0, k3), k6))
        c1 = vmul(half, vadd(vsub(k1, k4), k7))
        c2 = vmul(half, vadd(vsub(k2, k5), k8))
        _wino_row(U, u + 8 * R, R, half, c0, c1, c2)
        _wino_row(U, u + 12 * R, R, half, k6, k7, k8)


@jit(nogil=True)
def _wino_weights_range(t0, t1, wp, U, half, rows, cw, L):
    for t in range(t0, t1):
        _wino_weights_task(t, wp, U, half, rows, cw, L)


def winograd_weights(weight: np.ndarray, groups: int, transposed: bool = False) -> np.ndarray:
    """U = G g G^T of each 3x3 kernel, as (groups, 16, cpi, cw): the 16 transformed
    positions' (input channel x output channel) matrices, output channels zero-padded
    to whole 4-vector panels (`pack_weights`' layout with 16 "taps"). `transposed`: of
    the input gradient's conv (per group, input and output channels swapped, the kernel
    rotated by 180 degrees)."""
    wp = pack_weights(weight, groups, transposed)
    G, _, rows, cw = wp.shape
    U = np.empty((G, 16, rows, cw), wp.dtype)
    half = np.full(lanes(wp.dtype), 0.5, wp.dtype)
    args = (wp.reshape(-1), U.reshape(-1), half, rows, cw, lanes(wp.dtype))
    parallel_for(_wino_weights_range, G * rows, *args, nbytes=U.nbytes)
    return U


@jit(fastmath=FASTMATH)
def _input_tile(V, v0, vrow, xt, s, Wp, C, c0, m):
    """V[v0 + p*vrow + c0 ..] = (B^T d B)_p for the 4x4 patch of channels c0.. at xt[s]
    (rows Wp*C apart, columns C apart), lanes of mask m."""
    R = Wp * C
    d00 = vloadm(xt, s, m)
    d01 = vloadm(xt, s + C, m)
    d02 = vloadm(xt, s + 2 * C, m)
    d03 = vloadm(xt, s + 3 * C, m)
    d10 = vloadm(xt, s + R, m)
    d11 = vloadm(xt, s + R + C, m)
    d12 = vloadm(xt, s + R + 2 * C, m)
    d13 = vloadm(xt, s + R + 3 * C, m)
    d20 = vloadm(xt, s + 2 * R, m)
    d21 = vloadm(xt, s + 2 * R + C, m)
    d22 = vloadm(xt, s + 2 * R + 2 * C, m)
    d23 = vloadm(xt, s + 2 * R + 3 * C, m)
    d30 = vloadm(xt, s + 3 * R, m)
    d31 = vloadm(xt, s + 3 * R + C, m)
    d32 = vloadm(xt, s + 3 * R + 2 * C, m)
    d33 = vloadm(xt, s + 3 * R + 3 * C, m)
    # rows: B^T d
    r00, r01, r02, r03 = vsub(d00, d20), vsub(d01, d21), vsub(d02, d22), vsub(d03, d23)
    r10, r11, r12, r13 = vadd(d10, d20), vadd(d11, d21), vadd(d12, d22), vadd(d13, d23)
    r20, r21, r22, r23 = vsub(d20, d10), vsub(d21, d11), vsub(d22, d12), vsub(d23, d13)
    r30, r31, r32, r33 = vsub(d10, d30), vsub(d11, d31), vsub(d12, d32), vsub(d13, d33)
    # columns: (B^T d) B
    i = v0 + c0
    vstorem(V, i, vsub(r00, r02), m)
    vstorem(V, i + vrow, vadd(r01, r02), m)
    vstorem(V, i + 2 * vrow, vsub(r02, r01), m)
    vstorem(V, i + 3 * vrow, vsub(r01, r03), m)
    vstorem(V, i + 4 * vrow, vsub(r10, r12), m)
    vstorem(V, i + 5 * vrow, vadd(r11, r12), m)
    vstorem(V, i + 6 * vrow, vsub(r12, r11), m)
    vstorem(V, i + 7 * vrow, vsub(r11, r13), m)
    vstorem(V, i + 8 * vrow, vsub(r20, r22), m)
    vstorem(V, i + 9 * vrow, vadd(r21, r22), m)
    vstorem(V, i + 10 * vrow, vsub(r22, r21), m)
    vstorem(V, i + 11 * vrow, vsub(r21, r23), m)
    vstorem(V, i + 12 * vrow, vsub(r30, r32), m)
    vstorem(V, i + 13 * vrow, vadd(r31, r32), m)
    vstorem(V, i + 14 * vrow, vsub(r32, r31), m)
    vstorem(V, i + 15 * vrow, vsub(r31, r33), m)


@jit(fastmath=FASTMATH)
def _output_tile(ot, o, Wo, cw, M, m0, mrow, bias, ok01, ok10, chk, zero):
    """The 2x2 outputs A^T M A + bias of one tile, one vector of output channels (M's 16
    positions at m0 + p*mrow) -> ot[o], ot[o + cw] (row below: o + Wo*cw) where inside
    the plane (ok01: a right column, ok10: a lower row). Returns `chk` + 0 * the sum of
    the 4 outputs: NaN from here on once one of them is NaN or inf (0 * inf = NaN)."""
    m00, m01, m02, m03 = _load4(M, m0, mrow)
    m10, m11, m12, m13 = _load4(M, m0 + 4 * mrow, mrow)
    m20, m21, m22, m23 = _load4(M, m0 + 8 * mrow, mrow)
    m30, m31, m32, m33 = _load4(M, m0 + 12 * mrow, mrow)
    t00 = vadd(vadd(m00, m10), m20)
    t01 = vadd(vadd(m01, m11), m21)
    t02 = vadd(vadd(m02, m12), m22)
    t03 = vadd(vadd(m03, m13), m23)
    t10 = vsub(vsub(m10, m20), m30)
    t11 = vsub(vsub(m11, m21), m31)
    t12 = vsub(vsub(m12, m22), m32)
    t13 = vsub(vsub(m13, m23), m33)
    y00 = vadd(vadd(vadd(t00, t01), t02), bias)
    y01 = vadd(vsub(vsub(t01, t02), t03), bias)
    y10 = vadd(vadd(vadd(t10, t11), t12), bias)
    y11 = vadd(vsub(vsub(t11, t12), t13), bias)
    vstore(ot, o, y00)
    if ok01:
        vstore(ot, o + cw, y01)
    if ok10:
        r = o + Wo * cw
        vstore(ot, r, y10)
        if ok01:
            vstore(ot, r + cw, y11)
    # one FMA a call keeps the loop-carried chain short; the outputs outside the plane
    # are non-finite only with a non-finite input in the tile (a false alarm costs a
    # recompute, never a wrong result), and so is a sum that overflows
    return vfma(vadd(vadd(y00, y01), vadd(y10, y11)), zero, chk)


@jit(fastmath=FASTMATH)
def _wino_fwd_task(t, x, xq, V, U, M, oq, out, bp, zb, H, W, Wp, th, tw, G, cpi, cpo,
                   ipc, L):  # fmt: skip
    # task t = images [t*ipc, ...); x (N, C*H*W); scratch: xq (Hp*Wp*cpi + slack, zero
    # border), V (16, ipc*th*tw + 5, cpi), M (16, ipc*th*tw + 5, cw), oq (H*W*cw);
    # U (G, 16, cpi, cw); bp (G, cw); zb one vector of zeros; out (N, G*cpo*H*W).
    # Returns whether every output it wrote is finite.
    n0 = t * ipc
    n1 = min(x.shape[0], n0 + ipc)
    TI = th * tw
    TT = (n1 - n0) * TI
    vrow = V.shape[1] * cpi
    cw = U.shape[3]
    mrow = M.shape[1] * cw
    Vq = V.reshape(-1)
    Mq = M.reshape(-1)
    Uf = U.reshape(-1)
    HW = H * W
    zero = vload(zb, 0)
    chk = zero
    for g in range(G):
        for i in range(n1 - n0):
            _to_channels_last(xq, x[n0 + i, g * cpi * HW : (g + 1) * cpi * HW], cpi, cpi, H, W,
                              Wp, 1, 1, L)  # fmt: skip
            for a in range(th):
                for b in range(tw):
                    v0 = (i * TI + a * tw + b) * cpi
                    s = (2 * a * Wp + 2 * b) * cpi
                    for c0 in range(0, cpi, L):
                        m = (1 << min(L, cpi - c0)) - 1
                        _input_tile(Vq, v0, vrow, xq, s + c0, Wp, cpi, c0, m)
        for p in range(16):  # M_p = V_p @ U_p, 6 tiles x 4 vectors at a time
            for pb in range(0, cw, 4 * L):
                wb = (g * 16 + p) * cpi * cw + pb
                r0 = p * vrow
                for t0 in range(0, TT, 6):  # rows past TT: the last tile again (dropped)
                    _gemm_6x4(Vq, Uf, Mq, p * mrow + t0 * cw + pb, cw,
                              r0 + min(t0, TT - 1) * cpi, r0 + min(t0 + 1, TT - 1) * cpi,
                              r0 + min(t0 + 2, TT - 1) * cpi, r0 + min(t0 + 3, TT - 1) * cpi,
                              r0 + min(t0 + 4, TT - 1) * cpi, r0 + min(t0 + 5, TT - 1) * cpi,
                              cpi, 1, wb, cw, False, zb, L)  # fmt: skip
        for i in range(n1 - n0):
            for a in range(th):
                for b in range(tw):
                    m0 = (i * TI + a * tw + b) * cw
                    o = (2 * a * W + 2 * b) * cw
                    for v in range(0, cw, L):
                        chk = _output_tile(oq, o + v, W, cw, Mq, m0 + v, mrow,
                                           vload(bp, g * cw + v), 2 * b + 1 < W,
                                           2 * a + 1 < H, chk, zero)  # fmt: skip
            _from_channels_last(out[n0 + i], g * cpo * HW, oq, HW, cpo, cw, L)
    vstore(oq, 0, chk)  # oq is scratch, rewritten by the next task before it is read
    s = oq.dtype.type(0)
    for lane in range(L):
        s += oq[lane]
    return s == 0


@jit(nogil=True)
def _wino_fwd_range(t0, t1, x, U, out, bp, zb, ok, H, W, Wp, th, tw, G, cpi, cpo, ipc, L):
    # scratch per running chunk of tasks (at most one a thread), not per task: its size
    # does not grow with the batch
    cw = U.shape[3]
    TT = ipc * th * tw + 5
    xq = np.zeros((2 * th + 2) * Wp * cpi + L, x.dtype)
    V = np.empty((16, TT, cpi), x.dtype)
    M = np.empty((16, TT, cw), x.dtype)
    oq = np.empty(H * W * cw, x.dtype)
    for t in range(t0, t1):
        ok[t] = _wino_fwd_task(t, x, xq, V, U, M, oq, out, bp, zb, H, W, Wp, th, tw, G, cpi,
                               cpo, ipc, L)  # fmt: skip


_WINO_TASK_BYTES = 512 * 1024  # V + M of a task's images (in L2)


def winograd_forward(
    x: np.ndarray, weight: np.ndarray, bias, groups: int, transposed: bool = False
) -> tuple[np.ndarray, bool]:
    """(out, finite): the 3x3 / stride 1 / pad 1 conv of x (N, C, H, W) by Winograd F(2x2,
    3x3) on channels-last tiles, out (N, C_out, H, W); `transposed`: the input gradient's
    conv (the flipped, transposed weights of a conv with `weight`, C_in = weight's C_out).
    `finite` False when some output is NaN or inf: a non-finite input reaches all 4
    outputs of its tile, so the caller recomputes such an output another way."""
    N, C, H, W = x.shape
    cpi = C // groups
    U = winograd_weights(weight, groups, transposed)
    cw = U.shape[3]
    cpo = weight.shape[1] if transposed else weight.shape[0] // groups
    dt = x.dtype
    nl = lanes(dt)
    th, tw = -(-H // 2), -(-W // 2)
    per_image = 16 * th * tw * (cpi + cw) * dt.itemsize
    ipc = max(1, min(-(-N // 4), _WINO_TASK_BYTES // per_image))
    bp = np.zeros((groups, cw), dt)
    if bias is not None:
        bp[:, :cpo] = np.asarray(bias, dt).reshape(groups, cpo)
    out = np.empty((N, groups * cpo, H, W), dt)
    ntasks = -(-N // ipc)
    ok = np.empty(ntasks, np.bool_)
    parallel_for(
        _wino_fwd_range, ntasks, np.ascontiguousarray(x).reshape(N, -1), U,
        out.reshape(N, -1), bp.reshape(-1), np.zeros(nl, dt), ok,
        H, W, 2 * tw + 2, th, tw, groups, cpi, cpo, ipc, nl,
    )  # fmt: skip
    return out, bool(ok.all())


@jit(fastmath=FASTMATH)
def _grad_tile(dM, m0, mrow, gt, s, rs, cw):
    """dM[m0 + p*mrow ..] = (A dY A^T)_p for the 2x2 grad_out tile of one vector of
    output channels at gt[s] (columns cw apart, rows rs apart)."""
    y00 = vload(gt, s)
    y01 = vload(gt, s + cw)
    y10 = vload(gt, s + rs)
    y11 = vload(gt, s + rs + cw)
    # rows of A dY: (y0), (y0 + y1), (y0 - y1), (-y1); then each row (u, v) -> (u, u + v,
    # u - v, -v)
    _grad_row(dM, m0, mrow, y00, y01)
    _grad_row(dM, m0 + 4 * mrow, mrow, vadd(y00, y10), vadd(y01, y11))
    _grad_row(dM, m0 + 8 * mrow, mrow, vsub(y00, y10), vsub(y01, y11))
    _grad_row(dM, m0 + 12 * mrow, mrow, vneg(y10), vneg(y11))


@jit(fastmath=FASTMATH)
def _grad_row(dM, m, mrow, u, v):
    vstore(dM, m, u)
    vstore(dM, m + mrow, vadd(u, v))
    vstore(dM, m + 2 * mrow, vsub(u, v))
    vstore(dM, m + 3 * mrow, vneg(v))


@jit(fastmath=FASTMATH)
def _wino_wgrad_task(t, x, go, part, xq, gq, V, dM, zeros, H, W, Wp, th, tw, G, cpi, cpo, ipc,
                     L):  # fmt: skip
    # task t = (chunk, group) writes the sum over images [chunk*ipc, ...) to part[chunk, g] = (16,
    # cpi + 5 (spare rows for a last register tile's duplicates), cw); scratch xq
    # (Hp*Wp*cpi + slack, zero border), gq (2*th x 2*tw x cw, zero past the plane and
    # past cpo), V (16, ipc*th*tw, cpi), dM (16, ipc*th*tw, cw)
    ch = t // G
    g = t - ch * G
    n0 = ch * ipc
    n1 = min(x.shape[0], n0 + ipc)
    TI = th * tw
    TT = (n1 - n0) * TI
    Vq = V.reshape(-1)
    Mq = dM.reshape(-1)
    vrow = V.shape[1] * cpi
    cw = part.shape[4]
    mrow = dM.shape[1] * cw
    acc = part[ch, g].reshape(-1)
    HW = H * W
    W2 = 2 * tw
    for i in range(n1 - n0):
        n = n0 + i
        _to_channels_last(xq, x[n, g * cpi * HW : (g + 1) * cpi * HW], cpi, cpi, H, W, Wp, 1, 1,
                          L)  # fmt: skip
        _to_channels_last(gq, go[n, g * cpo * HW : (g + 1) * cpo * HW], cpo, cw, H, W, W2, 0, 0,
                          L)  # fmt: skip
        for a in range(th):
            for b in range(tw):
                tile = i * TI + a * tw + b
                s = (2 * a * Wp + 2 * b) * cpi
                for c0 in range(0, cpi, L):
                    m = (1 << min(L, cpi - c0)) - 1
                    _input_tile(Vq, tile * cpi, vrow, xq, s + c0, Wp, cpi, c0, m)
                s = (2 * a * W2 + 2 * b) * cw
                for v in range(0, cw, L):
                    _grad_tile(Mq, tile * cw + v, mrow, gq, s + v, W2 * cw, cw)
    for p in range(16):  # dU_p = V_p^T dM_p, 6 input channels x 4 vectors at a time
        o = p * vrow
        for pb in range(0, cw, 4 * L):
            # each tile of part written once (part need not be zeroed); rows past cpi:
            # spare rows of part, dropped
            for c0 in range(0, cpi, 6):
                _gemm_6x4(Vq, Mq, acc, (p * (cpi + 5) + c0) * cw + pb, cw,
                          o + min(c0, cpi - 1), o + min(c0 + 1, cpi - 1),
                          o + min(c0 + 2, cpi - 1), o + min(c0 + 3, cpi - 1),
                          o + min(c0 + 4, cpi - 1), o + min(c0 + 5, cpi - 1),
                          TT, cpi, p * mrow + pb, cw, False, zeros, L)  # fmt: skip


@jit(nogil=True)
def _wino_wgrad_range(t0, t1, x, go, part, H, W, Wp, th, tw, G, cpi, cpo, ipc, L):
    # scratch per running chunk of tasks (at most one a thread), as the forward's
    cw = part.shape[4]
    TT = ipc * th * tw
    xq = np.zeros((2 * th + 2) * Wp * cpi + L, x.dtype)
    gq = np.zeros(4 * th * tw * cw, x.dtype)
    V = np.empty((16, TT, cpi), x.dtype)
    dM = np.empty((16, TT, cw), x.dtype)
    zeros = np.zeros(L, x.dtype)
    for t in range(t0, t1):
        _wino_wgrad_task(t, x, go, part, xq, gq, V, dM, zeros, H, W, Wp, th, tw, G, cpi, cpo,
                         ipc, L)  # fmt: skip


@jit(fastmath=FASTMATH)
def _wino_wgrad_finish_task(t, part, gw, u, cpi, cpo, L):
    # task t = (group g, input channel i): u[p, :] = dU_p = the sum over chunks of
    # part[ch, g, p, i, :] (in chunk order), then gw[g*cpo + o, i] = G^T dU[:, o] G for
    # every o; u (16 * cw,) scratch
    g = t // cpi
    i = t - g * cpi
    cw = part.shape[4]
    for p in range(16):
        for v in range(0, cw, L):
            a = vload(part[0, g, p, i], v)
            for ch in range(1, part.shape[0]):
                a = vadd(a, vload(part[ch, g, p, i], v))
            vstore(u, p * cw + v, a)
    for o in range(cpo):
        for a in range(3):
            r0 = _gt_dot(u, a, 0, o, cw)
            r1 = _gt_dot(u, a, 1, o, cw)
            r2 = _gt_dot(u, a, 2, o, cw)
            r3 = _gt_dot(u, a, 3, o, cw)
            # (row a of G^T dU) G
            gw[g * cpo + o, i, a, 0] = r0 + 0.5 * (r1 + r2)
            gw[g * cpo + o, i, a, 1] = 0.5 * (r1 - r2)
            gw[g * cpo + o, i, a, 2] = 0.5 * (r1 + r2) + r3


@jit(fastmath=FASTMATH)
def _gt_dot(u, a, b, o, cw):
    """(G^T dU)[a, b] for output channel o, in float64: G^T's rows are (1, 1/2, 1/2,
    0), (0, 1/2, -1/2, 0), (0, 1/2, 1/2, 1); dU[r, b] at u[(4r + b) * cw + o]."""
    u0 = 1.0 * u[b * cw + o]
    u1 = 1.0 * u[(4 + b) * cw + o]
    u2 = 1.0 * u[(8 + b) * cw + o]
    u3 = 1.0 * u[(12 + b) * cw + o]
    if a == 0:
        return u0 + 0.5 * (u1 + u2)
    if a == 1:
        return 0.5 * (u1 - u2)
    return 0.5 * (u1 + u2) + u3


@jit(nogil=True)
def _wino_wgrad_finish(t0, t1, part, gw, cpi, cpo, L):
    u = np.empty(16 * part.shape[4], part.dtype)
    for t in range(t0, t1):
        _wino_wgrad_finish_task(t, part, gw, u, cpi, cpo, L)


_WGRAD_MIN_TILES = 64


def winograd_weight_grad(x: np.ndarray, grad_out: np.ndarray, groups: int) -> np.ndarray:
    """grad_weight (C_out, C/groups, 3, 3) of the 3x3 / stride 1 / pad 1 conv of x
    (N, C, H, W) with output gradient grad_out (N, C_out, H, W), by Winograd F(2x2,
    3x3) on channels-last tiles: dU_p = sum over tiles V_p^T (A dy A^T)_p, then G^T dU G."""
    N, C, H, W = x.shape
    cout = grad_out.shape[1]
    cpi, cpo = C // groups, cout // groups
    dt = x.dtype
    nl = lanes(dt)
    cw = panel_width(cpo, dt)
    th, tw = -(-H // 2), -(-W // 2)
    # ~8 tasks (fixed for any thread count), each of >= _WGRAD_MIN_TILES tiles: fewer
    # make the accumulators' loads and stores per tile of the GEMM count
    ipc = max(1, min(N, max((N * groups) // 8, -(-_WGRAD_MIN_TILES // (th * tw)))))
    chunks = -(-N // ipc)
    part = np.empty((chunks, groups, 16, cpi + 5, cw), dt)  # every task writes its own
    parallel_for(
        _wino_wgrad_range, chunks * groups, np.ascontiguousarray(x).reshape(N, -1),
        np.ascontiguousarray(grad_out).reshape(N, -1), part, H, W, 2 * tw + 2, th, tw,
        groups, cpi, cpo, ipc, nl,
    )  # fmt: skip
    gw = np.empty((cout, cpi, 3, 3), dt)
    parallel_for(_wino_wgrad_finish, groups * cpi, part, gw, cpi, cpo, nl, nbytes=part.nbytes)
    return gw
