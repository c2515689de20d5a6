"""Numba convolution kernels (forward, backward-input, backward-weight).

Two algorithms, chosen per call by `_use_direct` (measurements: NOTES.md):

* **im2col + BLAS** (dense convs and groups wider than ~48 channels). A parallel Numba
  im2col writes the (C_in*kH*kW, H_out*W_out) column matrix of every image into a
  reusable workspace (`_numba.workspace`, no fresh buffer per layer per step) and
  NumPy's OpenBLAS does the matmul; backward-input is W^T @ grad_out followed by a
  parallel col2im, backward-weight is grad_out @ cols^T. OpenBLAS's packed,
  register-blocked sgemm is what a Numba GEMM would have to beat, and for dense layers
  the GEMM is large (M = C_out >= 64, K >= 64, N = H*W). 1x1/stride-1/no-pad convs skip
  im2col: the input already *is* the column matrix. Padding is handled inside
  im2col/col2im (no padded copy).

* **direct** (grouped and depthwise convs, where each group's GEMM is tiny: M = 4,
  K = 36 for ResNeXt 32x4d). One task per (image, group), all tasks in one parallel
  call (no Python loop over groups). The task copies its group's input planes into a
  zero-padded *polyphase* tile (`_fill_poly`; for stride 1 just the padded plane with
  rows `Wq` wide), so every kernel tap is a *constant offset* along one flat loop over
  output positions, for any stride and dilation (outputs are computed on rows `Wq`
  wide; the extra columns are junk that is never copied out). The inner loops take
  flat arrays and unsigned offsets, keep all 4 output channels of a block and 3 taps
  of a kernel row in one pass (each input load feeds 12 FMAs) and compile to 512-bit
  FMA loops. Work is blocked by groups of output rows so the accumulators stay in L1.
  Backward-input (stride 1) is the same forward kernel run on grad_out with the
  per-group transposed, flipped weights and padding d*(k-1) - p; strided convs use a
  scatter-add into a polyphase gradient tile. Backward-weight is a set of dot products
  (4 outputs x 3 taps per pass) with per-(image, group) partial results summed
  afterwards. No two tasks ever write the same memory, so results are bit-identical
  for any thread count.
"""

from __future__ import annotations

import numpy as np
from numba import uint64 as u64

from ._numba import FASTMATH, jit, num_threads, parallel_for, workspace

# --------------------------------------------------------------------------- helpers


def _out_size(n, k, s, p, d):
    return (n + 2 * p - d * (k - 1) - 1) // s + 1


@jit(fastmath=FASTMATH)
def _fill_poly(tile, xn, c0, H, W, Hq, Wq, sh, sw, ph, pw):
    """Zero-padded, stride-polyphase copy of the input planes c0.. of one image.

    tile[(c*sh + a)*sw + b, qi*Wq + qj] = x[c0 + c, qi*sh + a - ph, qj*sw + b - pw]
    (zero outside the input). With this layout the pixel under tap (kh, kw) of output
    (oh, ow) is at plane (kh*dh % sh, kw*dw % sw), flat index
    (oh + kh*dh // sh)*Wq + ow + kw*dw // sw: a constant offset from oh*Wq + ow for
    every stride, so all strides run the same unit-stride loops. For stride 1 it is
    just the zero-padded plane.
    """
    cpi = tile.shape[0] // (sh * sw)
    for c in range(cpi):
        src = xn[c0 + c]
        for a in range(sh):
            for qi in range(Hq):
                ih = qi * sh + a - ph
                row = qi * Wq
                if ih < 0 or ih >= H:
                    for b in range(sw):
                        dst = tile[(c * sh + a) * sw + b]
                        for j in range(Wq):
                            dst[row + j] = 0
                    continue
                if sw == 2:
                    # both column phases in one pass (LLVM vectorises the stride-2 pair)
                    d0 = tile[(c * sh + a) * 2]
                    d1 = tile[(c * sh + a) * 2 + 1]
                    for j in range(Wq):
                        d0[row + j] = 0
                        d1[row + j] = 0
                    # interior: both source columns 2*qj - pw and 2*qj + 1 - pw inside
                    lo = max(0, (pw + 1) // 2)
                    hi = min(Wq, (W - 2 + pw) // 2 + 1)
                    s = ih * W - pw
                    for j in range(lo, hi):
                        d0[row + j] = src[s + 2 * j]
                        d1[row + j] = src[s + 2 * j + 1]
                    for b in range(2):
                        dd = tile[(c * sh + a) * 2 + b]
                        jlo = max(0, (pw - b + 1) // 2)
                        jhi = min(Wq, (W - 1 + pw - b) // 2 + 1)
                        for j in range(jlo, min(jhi, lo)):
                            dd[row + j] = src[s + 2 * j + b]
                        for j in range(max(jlo, hi), jhi):
                            dd[row + j] = src[s + 2 * j + b]
                    continue
                for b in range(sw):
                    dst = tile[(c * sh + a) * sw + b]
                    # qj range whose source column is inside the input
                    jlo = max(0, (pw - b + sw - 1) // sw)
                    jhi = min(Wq, (W - 1 + pw - b) // sw + 1)
                    if jhi <= jlo:
                        for j in range(Wq):
                            dst[row + j] = 0
                        continue
                    for j in range(jlo):
                        dst[row + j] = 0
                    s = ih * W + b - pw
                    if sw == 1:
                        seg = src[s + jlo : s + jhi]
                        d = dst[row + jlo : row + jhi]
                        for j in range(jhi - jlo):
                            d[j] = seg[j]
                    else:
                        for j in range(jlo, jhi):
                            dst[row + j] = src[s + j * sw]
                    for j in range(jhi, Wq):
                        dst[row + j] = 0


@jit(fastmath=FASTMATH)
def _unfill_poly(tile, gxn, c0, H, W, Hq, Wq, sh, sw, ph, pw):
    """Adjoint of `_fill_poly` for a gradient tile: gxn[c0 + c] = the input-pixel part
    of tile c (pixels the tile does not cover get 0)."""
    cpi = tile.shape[0] // (sh * sw)
    for c in range(cpi):
        dst = gxn[c0 + c]
        for i in range(H * W):
            dst[i] = 0
        for a in range(sh):
            for b in range(sw):
                src = tile[(c * sh + a) * sw + b]
                jlo = max(0, (pw - b + sw - 1) // sw)
                jhi = min(Wq, (W - 1 + pw - b) // sw + 1)
                if jhi <= jlo:
                    continue
                for qi in range(Hq):
                    ih = qi * sh + a - ph
                    if ih < 0 or ih >= H:
                        continue
                    s = ih * W + b - pw
                    row = qi * Wq
                    if sw == 1:
                        seg = src[row + jlo : row + jhi]
                        d = dst[s + jlo : s + jhi]
                        for j in range(jhi - jlo):
                            d[j] = seg[j]
                    else:
                        for j in range(jlo, jhi):
                            dst[s + j * sw] = src[row + j]


@jit(fastmath=FASTMATH)
def _fill_ext(ge, gon, co0, r0, nr, Wo, Wq):
    """ge[o, r*Wq + j] = gon[co0 + o, (r0+r)*Wo + j] for j < Wo, 0 for Wo <= j < Wq."""
    cpo = ge.shape[0]
    for o in range(cpo):
        src = gon[co0 + o]
        dst = ge[o]
        for r in range(nr):
            s = src[(r0 + r) * Wo : (r0 + r + 1) * Wo]
            d = dst[r * Wq : r * Wq + Wo]
            for j in range(Wo):
                d[j] = s[j]
            if r < nr - 1:
                for j in range(Wo, Wq):
                    dst[r * Wq + j] = 0


# Inner loops. Arrays are flat 1-D and every offset is an *unsigned* integer (uint64):
# with signed indices Numba emits a negative-index wrap-around per access, and slicing
# per call costs refcount traffic; both kept LLVM from producing tight FMA loops (the
# slice-based first version ran 2-4x slower on 64-512 element blocks). Each loop keeps
# one load of the input feeding several FMAs: 3 taps of a kernel row x 4 output
# channels = 12 FMAs per 3 input loads + 4 accumulator loads/stores.


@jit(fastmath=FASTMATH)
def _acc_3x4(acc, a0, rs, src, t0, t1, t2, w, co, c, kh, kw, ln):
    w00 = w[co, c, kh, kw]
    w01 = w[co, c, kh, kw + 1]
    w02 = w[co, c, kh, kw + 2]
    w10 = w[co + 1, c, kh, kw]
    w11 = w[co + 1, c, kh, kw + 1]
    w12 = w[co + 1, c, kh, kw + 2]
    w20 = w[co + 2, c, kh, kw]
    w21 = w[co + 2, c, kh, kw + 1]
    w22 = w[co + 2, c, kh, kw + 2]
    w30 = w[co + 3, c, kh, kw]
    w31 = w[co + 3, c, kh, kw + 1]
    w32 = w[co + 3, c, kh, kw + 2]
    a1 = a0 + rs
    a2 = a1 + rs
    a3 = a2 + rs
    for i in range(ln):
        x0 = src[t0 + i]
        x1 = src[t1 + i]
        x2 = src[t2 + i]
        acc[a0 + i] += w00 * x0 + w01 * x1 + w02 * x2
        acc[a1 + i] += w10 * x0 + w11 * x1 + w12 * x2
        acc[a2 + i] += w20 * x0 + w21 * x1 + w22 * x2
        acc[a3 + i] += w30 * x0 + w31 * x1 + w32 * x2


@jit(fastmath=FASTMATH)
def _acc_3x2(acc, a0, rs, src, t0, t1, t2, w, co, c, kh, kw, ln):
    w00 = w[co, c, kh, kw]
    w01 = w[co, c, kh, kw + 1]
    w02 = w[co, c, kh, kw + 2]
    w10 = w[co + 1, c, kh, kw]
    w11 = w[co + 1, c, kh, kw + 1]
    w12 = w[co + 1, c, kh, kw + 2]
    a1 = a0 + rs
    for i in range(ln):
        x0 = src[t0 + i]
        x1 = src[t1 + i]
        x2 = src[t2 + i]
        acc[a0 + i] += w00 * x0 + w01 * x1 + w02 * x2
        acc[a1 + i] += w10 * x0 + w11 * x1 + w12 * x2


@jit(fastmath=FASTMATH)
def _dots_9x1(pn, ge, e0, src, tp, co, ln, zero):
    """All 9 taps of a 3x3 kernel, one output channel, C_in/groups == 1, one pass."""
    t0 = tp[0]
    t1 = tp[1]
    t2 = tp[2]
    t3 = tp[3]
    t4 = tp[4]
    t5 = tp[5]
    t6 = tp[6]
    t7 = tp[7]
    t8 = tp[8]
    r0 = zero
    r1 = zero
    r2 = zero
    r3 = zero
    r4 = zero
    r5 = zero
    r6 = zero
    r7 = zero
    r8 = zero
    for i in range(ln):
        f = ge[e0 + i]
        r0 += f * src[t0 + i]
        r1 += f * src[t1 + i]
        r2 += f * src[t2 + i]
        r3 += f * src[t3 + i]
        r4 += f * src[t4 + i]
        r5 += f * src[t5 + i]
        r6 += f * src[t6 + i]
        r7 += f * src[t7 + i]
        r8 += f * src[t8 + i]
    pn[co, 0, 0, 0] += r0
    pn[co, 0, 0, 1] += r1
    pn[co, 0, 0, 2] += r2
    pn[co, 0, 1, 0] += r3
    pn[co, 0, 1, 1] += r4
    pn[co, 0, 1, 2] += r5
    pn[co, 0, 2, 0] += r6
    pn[co, 0, 2, 1] += r7
    pn[co, 0, 2, 2] += r8


@jit(fastmath=FASTMATH)
def _acc_3x1(acc, a0, src, t0, t1, t2, w, co, c, kh, kw, ln):
    w0 = w[co, c, kh, kw]
    w1 = w[co, c, kh, kw + 1]
    w2 = w[co, c, kh, kw + 2]
    for i in range(ln):
        acc[a0 + i] += w0 * src[t0 + i] + w1 * src[t1 + i] + w2 * src[t2 + i]


@jit(fastmath=FASTMATH)
def _acc_1x1(acc, a0, src, t0, wv, ln):
    for i in range(ln):
        acc[a0 + i] += wv * src[t0 + i]


@jit(fastmath=FASTMATH)
def _set_9x1(acc, a0, src, tp, w, co, bias, ln):
    """acc = bias + all 9 taps of a 3x3 kernel in one pass (C_in/groups == 1)."""
    t0 = tp[0]
    t1 = tp[1]
    t2 = tp[2]
    t3 = tp[3]
    t4 = tp[4]
    t5 = tp[5]
    t6 = tp[6]
    t7 = tp[7]
    t8 = tp[8]
    w0 = w[co, 0, 0, 0]
    w1 = w[co, 0, 0, 1]
    w2 = w[co, 0, 0, 2]
    w3 = w[co, 0, 1, 0]
    w4 = w[co, 0, 1, 1]
    w5 = w[co, 0, 1, 2]
    w6 = w[co, 0, 2, 0]
    w7 = w[co, 0, 2, 1]
    w8 = w[co, 0, 2, 2]
    for i in range(ln):
        acc[a0 + i] = (
            bias
            + w0 * src[t0 + i]
            + w1 * src[t1 + i]
            + w2 * src[t2 + i]
            + w3 * src[t3 + i]
            + w4 * src[t4 + i]
            + w5 * src[t5 + i]
            + w6 * src[t6 + i]
            + w7 * src[t7 + i]
            + w8 * src[t8 + i]
        )


@jit(fastmath=FASTMATH)
def _scatter_1x4(dst, d0, ge, e0, rs, w, co, c, kh, kw, ln):
    w0 = w[co, c, kh, kw]
    w1 = w[co + 1, c, kh, kw]
    w2 = w[co + 2, c, kh, kw]
    w3 = w[co + 3, c, kh, kw]
    e1 = e0 + rs
    e2 = e1 + rs
    e3 = e2 + rs
    for i in range(ln):
        dst[d0 + i] += w0 * ge[e0 + i] + w1 * ge[e1 + i] + w2 * ge[e2 + i] + w3 * ge[e3 + i]


@jit(fastmath=FASTMATH)
def _dots_3x4(pn, ge, e0, rs, src, t0, t1, t2, co, c, kh, kw, ln, zero):
    e1 = e0 + rs
    e2 = e1 + rs
    e3 = e2 + rs
    r00 = zero
    r01 = zero
    r02 = zero
    r10 = zero
    r11 = zero
    r12 = zero
    r20 = zero
    r21 = zero
    r22 = zero
    r30 = zero
    r31 = zero
    r32 = zero
    for i in range(ln):
        x0 = src[t0 + i]
        x1 = src[t1 + i]
        x2 = src[t2 + i]
        f0 = ge[e0 + i]
        f1 = ge[e1 + i]
        f2 = ge[e2 + i]
        f3 = ge[e3 + i]
        r00 += f0 * x0
        r01 += f0 * x1
        r02 += f0 * x2
        r10 += f1 * x0
        r11 += f1 * x1
        r12 += f1 * x2
        r20 += f2 * x0
        r21 += f2 * x1
        r22 += f2 * x2
        r30 += f3 * x0
        r31 += f3 * x1
        r32 += f3 * x2
    pn[co, c, kh, kw] += r00
    pn[co, c, kh, kw + 1] += r01
    pn[co, c, kh, kw + 2] += r02
    pn[co + 1, c, kh, kw] += r10
    pn[co + 1, c, kh, kw + 1] += r11
    pn[co + 1, c, kh, kw + 2] += r12
    pn[co + 2, c, kh, kw] += r20
    pn[co + 2, c, kh, kw + 1] += r21
    pn[co + 2, c, kh, kw + 2] += r22
    pn[co + 3, c, kh, kw] += r30
    pn[co + 3, c, kh, kw + 1] += r31
    pn[co + 3, c, kh, kw + 2] += r32


@jit(fastmath=FASTMATH)
def _dots_3x1(pn, ge, e0, src, t0, t1, t2, co, c, kh, kw, ln, zero):
    r0 = zero
    r1 = zero
    r2 = zero
    for i in range(ln):
        f = ge[e0 + i]
        r0 += f * src[t0 + i]
        r1 += f * src[t1 + i]
        r2 += f * src[t2 + i]
    pn[co, c, kh, kw] += r0
    pn[co, c, kh, kw + 1] += r1
    pn[co, c, kh, kw + 2] += r2


@jit(fastmath=FASTMATH)
def _dot(ge, e0, src, t0, ln, zero):
    r = zero
    for i in range(ln):
        r += ge[e0 + i] * src[t0 + i]
    return r


@jit(fastmath=FASTMATH)
def _tap_offsets(KH, KW, dh, dw, sh, sw, Hq, Wq):
    """Flat offset of tap (kh, kw) inside one channel's polyphase tile (sh*sw planes)."""
    taps = np.empty(KH * KW, dtype=np.int64)
    for kh in range(KH):
        for kw in range(KW):
            ri = kh * dh
            ci = kw * dw
            plane = (ri % sh) * sw + ci % sw
            taps[kh * KW + kw] = plane * (Hq * Wq) + (ri // sh) * Wq + ci // sw
    return taps


# --------------------------------------------------------------------------- direct


@jit(fastmath=FASTMATH)
def _direct_fwd_task(t, x, w, b, out, H, W, Ho, Wo, G, sh, sw, ph, pw, dh, dw, R):
    # x (N, C, H*W), w (Cout, cpi, KH, KW), b (Cout,), out (N, Cout, Ho*Wo)
    Cout, cpi, KH, KW = w.shape
    cpo = Cout // G
    S = sh * sw
    Hq = ((Ho - 1) * sh + dh * (KH - 1)) // sh + 1
    Wq = ((Wo - 1) * sw + dw * (KW - 1)) // sw + 1
    plane = S * Hq * Wq  # one input channel's tile
    n = t // G
    g = t - n * G
    co0 = g * cpo
    tile = np.empty(cpi * plane, dtype=x.dtype)
    _fill_poly(tile.reshape((cpi * S, Hq * Wq)), x[n], g * cpi, H, W, Hq, Wq, sh, sw, ph, pw)
    taps = _tap_offsets(KH, KW, dh, dw, sh, sw, Hq, Wq)
    RW = R * Wq
    acc = np.empty(min(cpo, 4) * RW, dtype=x.dtype)
    urw = u64(RW)
    on = out[n]
    depthwise3x3 = cpi == 1 and KH == 3 and KW == 3
    tp = np.empty(9, dtype=np.uint64)
    for r0 in range(0, Ho, R):
        nr = min(R, Ho - r0)
        ln = (nr - 1) * Wq + Wo
        uln = u64(ln)
        p0 = r0 * Wq
        if depthwise3x3:
            for k in range(9):
                tp[k] = u64(taps[k] + p0)
        # output channels in blocks of 4: the block's accumulators stay in L1 while
        # all input channels and taps stream through
        for ob in range(0, cpo, 4):
            oe = min(ob + 4, cpo)
            if depthwise3x3:
                for o in range(ob, oe):
                    _set_9x1(acc, u64((o - ob) * RW), tile, tp, w, co0 + o, b[co0 + o], uln)
            else:
                for o in range(ob, oe):
                    bv = b[co0 + o]
                    a = acc[(o - ob) * RW : (o - ob) * RW + ln]
                    for i in range(ln):
                        a[i] = bv
                for c in range(cpi):
                    base = c * plane + p0
                    for kh in range(KH):
                        kw = 0
                        while kw + 3 <= KW:
                            k = kh * KW + kw
                            t0 = u64(base + taps[k])
                            t1 = u64(base + taps[k + 1])
                            t2 = u64(base + taps[k + 2])
                            o = ob
                            if o + 4 <= oe:
                                _acc_3x4(
                                    acc, u64(0), urw, tile, t0, t1, t2, w, co0 + o, c, kh, kw, uln
                                )
                                o += 4
                            if o + 2 <= oe:
                                _acc_3x2(
                                    acc,
                                    u64((o - ob) * RW),
                                    urw,
                                    tile,
                                    t0,
                                    t1,
                                    t2,
                                    w,
                                    co0 + o,
                                    c,
                                    kh,
                                    kw,
                                    uln,
                                )
                                o += 2
                            while o < oe:
                                _acc_3x1(
                                    acc,
                                    u64((o - ob) * RW),
                                    tile,
                                    t0,
                                    t1,
                                    t2,
                                    w,
                                    co0 + o,
                                    c,
                                    kh,
                                    kw,
                                    uln,
                                )
                                o += 1
                            kw += 3
                        while kw < KW:
                            t0 = u64(base + taps[kh * KW + kw])
                            for o in range(ob, oe):
                                _acc_1x1(
                                    acc, u64((o - ob) * RW), tile, t0, w[co0 + o, c, kh, kw], uln
                                )
                            kw += 1
            for o in range(ob, oe):
                dst = on[co0 + o]
                for r in range(nr):
                    d = dst[(r0 + r) * Wo : (r0 + r + 1) * Wo]
                    a = acc[(o - ob) * RW + r * Wq : (o - ob) * RW + r * Wq + Wo]
                    for j in range(Wo):
                        d[j] = a[j]


@jit(nogil=True)
def _direct_fwd_range(t0, t1, x, w, b, out, H, W, Ho, Wo, G, sh, sw, ph, pw, dh, dw, R):
    for t in range(t0, t1):
        _direct_fwd_task(t, x, w, b, out, H, W, Ho, Wo, G, sh, sw, ph, pw, dh, dw, R)


@jit(fastmath=FASTMATH)
def _direct_bwd_input_task(t, go, w, gx, H, W, Ho, Wo, G, sh, sw, ph, pw, dh, dw, R):
    # Scatter form (used for strided convs). go (N, Cout, Ho*Wo), w (Cout, cpi, KH, KW),
    # gx (N, C, H*W) fully overwritten.
    Cout, cpi, KH, KW = w.shape
    cpo = Cout // G
    S = sh * sw
    Hq = ((Ho - 1) * sh + dh * (KH - 1)) // sh + 1
    Wq = ((Wo - 1) * sw + dw * (KW - 1)) // sw + 1
    plane = S * Hq * Wq
    n = t // G
    g = t - n * G
    co0 = g * cpo
    gt = np.zeros(cpi * plane, dtype=go.dtype)
    taps = _tap_offsets(KH, KW, dh, dw, sh, sw, Hq, Wq)
    RW = R * Wq
    urw = u64(RW)
    ge = np.empty(cpo * RW, dtype=go.dtype)
    ge2 = ge.reshape((cpo, RW))
    for r0 in range(0, Ho, R):
        nr = min(R, Ho - r0)
        ln = (nr - 1) * Wq + Wo
        uln = u64(ln)
        p0 = r0 * Wq
        _fill_ext(ge2, go[n], co0, r0, nr, Wo, Wq)
        for c in range(cpi):
            base = c * plane + p0
            for kh in range(KH):
                for kw in range(KW):
                    d0 = u64(base + taps[kh * KW + kw])
                    o = 0
                    while o + 4 <= cpo:
                        _scatter_1x4(gt, d0, ge, u64(o * RW), urw, w, co0 + o, c, kh, kw, uln)
                        o += 4
                    while o < cpo:
                        _acc_1x1(gt, d0, ge, u64(o * RW), w[co0 + o, c, kh, kw], uln)
                        o += 1
    # un-polyphase and crop the padded gradient tile into grad_x
    _unfill_poly(gt.reshape((cpi * S, Hq * Wq)), gx[n], g * cpi, H, W, Hq, Wq, sh, sw, ph, pw)


@jit(nogil=True)
def _direct_bwd_input_range(t0, t1, go, w, gx, H, W, Ho, Wo, G, sh, sw, ph, pw, dh, dw, R):
    for t in range(t0, t1):
        _direct_bwd_input_task(t, go, w, gx, H, W, Ho, Wo, G, sh, sw, ph, pw, dh, dw, R)


@jit(fastmath=FASTMATH)
def _direct_bwd_weight_task(t, x, go, part, H, W, Ho, Wo, G, sh, sw, ph, pw, dh, dw, R, zero):
    # x (N, C, H*W), go (N, Cout, Ho*Wo), part (N, Cout, cpi, KH, KW) fully overwritten
    _, Cout, cpi, KH, KW = part.shape
    cpo = Cout // G
    S = sh * sw
    Hq = ((Ho - 1) * sh + dh * (KH - 1)) // sh + 1
    Wq = ((Wo - 1) * sw + dw * (KW - 1)) // sw + 1
    plane = S * Hq * Wq
    n = t // G
    g = t - n * G
    co0 = g * cpo
    tile = np.empty(cpi * plane, dtype=x.dtype)
    _fill_poly(tile.reshape((cpi * S, Hq * Wq)), x[n], g * cpi, H, W, Hq, Wq, sh, sw, ph, pw)
    taps = _tap_offsets(KH, KW, dh, dw, sh, sw, Hq, Wq)
    pn = part[n]
    for o in range(cpo):
        for c in range(cpi):
            for kh in range(KH):
                for kw in range(KW):
                    pn[co0 + o, c, kh, kw] = zero
    RW = R * Wq
    urw = u64(RW)
    ge = np.empty(cpo * RW, dtype=x.dtype)
    ge2 = ge.reshape((cpo, RW))
    tp = np.empty(9, dtype=np.uint64)
    for r0 in range(0, Ho, R):
        nr = min(R, Ho - r0)
        ln = (nr - 1) * Wq + Wo
        uln = u64(ln)
        p0 = r0 * Wq
        _fill_ext(ge2, go[n], co0, r0, nr, Wo, Wq)
        if cpi == 1 and KH == 3 and KW == 3:
            for k in range(9):
                tp[k] = u64(taps[k] + p0)
            for o in range(cpo):
                _dots_9x1(pn, ge, u64(o * RW), tile, tp, co0 + o, uln, zero)
            continue
        # output channels in blocks of 4 (their grad_out rows stay in L1)
        for ob in range(0, cpo, 4):
            oe = min(ob + 4, cpo)
            for c in range(cpi):
                base = c * plane + p0
                for kh in range(KH):
                    kw = 0
                    while kw + 3 <= KW:
                        k = kh * KW + kw
                        t0 = u64(base + taps[k])
                        t1 = u64(base + taps[k + 1])
                        t2 = u64(base + taps[k + 2])
                        o = ob
                        if o + 4 <= oe:
                            _dots_3x4(
                                pn,
                                ge,
                                u64(o * RW),
                                urw,
                                tile,
                                t0,
                                t1,
                                t2,
                                co0 + o,
                                c,
                                kh,
                                kw,
                                uln,
                                zero,
                            )
                            o += 4
                        while o < oe:
                            _dots_3x1(
                                pn,
                                ge,
                                u64(o * RW),
                                tile,
                                t0,
                                t1,
                                t2,
                                co0 + o,
                                c,
                                kh,
                                kw,
                                uln,
                                zero,
                            )
                            o += 1
                        kw += 3
                    while kw < KW:
                        t0 = u64(base + taps[kh * KW + kw])
                        for o in range(ob, oe):
                            pn[co0 + o, c, kh, kw] += _dot(ge, u64(o * RW), tile, t0, uln, zero)
                        kw += 1


@jit(nogil=True)
def _direct_bwd_weight_range(t0, t1, x, go, part, H, W, Ho, Wo, G, sh, sw, ph, pw, dh, dw, R, zero):
    for t in range(t0, t1):
        _direct_bwd_weight_task(t, x, go, part, H, W, Ho, Wo, G, sh, sw, ph, pw, dh, dw, R, zero)


@jit(fastmath=FASTMATH)
def _dw_pixel(src, H, W, oh, ow, w, co, bias):
    """One output pixel of a 3x3, stride-1, pad-1 depthwise conv, with bounds checks."""
    acc = bias
    for kh in range(3):
        ih = oh - 1 + kh
        if ih < 0 or ih >= H:
            continue
        for kw in range(3):
            iw = ow - 1 + kw
            if iw < 0 or iw >= W:
                continue
            acc += w[co, 0, kh, kw] * src[ih * W + iw]
    return acc


@jit(fastmath=FASTMATH)
def _dw3x3_task(t, x, w, b, out, H, W, G):
    """Depthwise 3x3, stride 1, padding 1, dilation 1: straight from x into out.

    No tile and no copy-out (the memory traffic of those dominated this memory-bound
    kernel). Interior rows run as one flat loop over p = oh*W + ow with the 9 taps at
    constant offsets p + (kh-1)*W + (kw-1); that loop also writes the first and last
    column of each row with wrapped-around (wrong) values, which the border pass then
    overwrites with bounds-checked ones.
    """
    Cout = w.shape[0]
    cpo = Cout // G
    n = t // G
    g = t - n * G
    src = x[n, g]
    for o in range(cpo):
        co = g * cpo + o
        dst = out[n, co]
        bias = b[co]
        if H >= 3 and W >= 3:
            w0 = w[co, 0, 0, 0]
            w1 = w[co, 0, 0, 1]
            w2 = w[co, 0, 0, 2]
            w3 = w[co, 0, 1, 0]
            w4 = w[co, 0, 1, 1]
            w5 = w[co, 0, 1, 2]
            w6 = w[co, 0, 2, 0]
            w7 = w[co, 0, 2, 1]
            w8 = w[co, 0, 2, 2]
            lo = W + 1
            ln = u64((H - 1) * W - 1 - lo)
            d0 = u64(lo)
            s0 = u64(0)  # lo - W - 1
            s3 = u64(W)  # lo - 1
            s6 = u64(2 * W)  # lo + W - 1
            one = u64(1)
            two = u64(2)
            for i in range(ln):
                dst[d0 + i] = (
                    bias
                    + w0 * src[s0 + i]
                    + w1 * src[s0 + one + i]
                    + w2 * src[s0 + two + i]
                    + w3 * src[s3 + i]
                    + w4 * src[s3 + one + i]
                    + w5 * src[s3 + two + i]
                    + w6 * src[s6 + i]
                    + w7 * src[s6 + one + i]
                    + w8 * src[s6 + two + i]
                )
            # first/last column of the interior rows: 6 taps, no bounds checks
            for oh in range(1, H - 1):
                r = (oh - 1) * W
                dst[oh * W] = (
                    bias
                    + w1 * src[r]
                    + w2 * src[r + 1]
                    + w4 * src[r + W]
                    + w5 * src[r + W + 1]
                    + w7 * src[r + 2 * W]
                    + w8 * src[r + 2 * W + 1]
                )
                r = (oh - 1) * W + W - 2
                dst[oh * W + W - 1] = (
                    bias
                    + w0 * src[r]
                    + w1 * src[r + 1]
                    + w3 * src[r + W]
                    + w4 * src[r + W + 1]
                    + w6 * src[r + 2 * W]
                    + w7 * src[r + 2 * W + 1]
                )
            # first and last row (vectorised middle, bounds-checked corners)
            lnr = u64(W - 2)
            top = u64(1)
            bot = u64((H - 1) * W + 1)
            for i in range(lnr):
                dst[top + i] = (
                    bias
                    + w3 * src[i]
                    + w4 * src[one + i]
                    + w5 * src[two + i]
                    + w6 * src[s3 + i]
                    + w7 * src[s3 + one + i]
                    + w8 * src[s3 + two + i]
                )
                dst[bot + i] = (
                    bias
                    + w0 * src[bot - s3 - one + i]
                    + w1 * src[bot - s3 + i]
                    + w2 * src[bot - s3 + one + i]
                    + w3 * src[bot - one + i]
                    + w4 * src[bot + i]
                    + w5 * src[bot + one + i]
                )
            for oh in (0, H - 1):
                dst[oh * W] = _dw_pixel(src, H, W, oh, 0, w, co, bias)
                dst[oh * W + W - 1] = _dw_pixel(src, H, W, oh, W - 1, w, co, bias)
        else:
            for oh in range(H):
                for ow in range(W):
                    dst[oh * W + ow] = _dw_pixel(src, H, W, oh, ow, w, co, bias)


@jit(nogil=True)
def _dw3x3_range(t0, t1, x, w, b, out, H, W, G):
    for t in range(t0, t1):
        _dw3x3_task(t, x, w, b, out, H, W, G)


@jit(fastmath=FASTMATH)
def _dw_pixel_grad(src, gv, H, W, oh, ow, pn, co):
    """Add output pixel (oh, ow)'s weight-gradient terms (3x3, pad 1), bounds-checked."""
    for kh in range(3):
        ih = oh - 1 + kh
        if ih < 0 or ih >= H:
            continue
        for kw in range(3):
            iw = ow - 1 + kw
            if iw < 0 or iw >= W:
                continue
            pn[co, 0, kh, kw] += gv * src[ih * W + iw]


@jit(fastmath=FASTMATH)
def _dw3x3_bwd_weight_task(t, x, go, part, H, W, G, zero):
    """Depthwise 3x3 / stride 1 / pad 1 weight gradient straight from x and grad_out.

    The interior rows are 9 flat dot products (the forward's trick); the terms that the
    flat loop wrongly picks up at the first/last column (wrapped-around neighbours) are
    subtracted, and the first/last rows and the two skipped pixels are added separately.
    """
    Cout = part.shape[1]
    cpo = Cout // G
    n = t // G
    g = t - n * G
    src = x[n, g]
    pn = part[n]
    for o in range(cpo):
        co = g * cpo + o
        gr = go[n, co]
        for kh in range(3):
            for kw in range(3):
                pn[co, 0, kh, kw] = zero
        if H < 3 or W < 3:
            for oh in range(H):
                for ow in range(W):
                    _dw_pixel_grad(src, gr[oh * W + ow], H, W, oh, ow, pn, co)
            continue
        lo = W + 1
        ln = u64((H - 1) * W - 1 - lo)
        e0 = u64(lo)
        for kh in range(3):
            for kw in range(3):
                s0 = u64(lo + (kh - 1) * W + kw - 1)
                r = zero
                for i in range(ln):
                    r += gr[e0 + i] * src[s0 + i]
                pn[co, 0, kh, kw] += r
        # remove the wrapped-around terms of the first/last column inside the flat range
        for oh in range(2, H - 1):
            p = oh * W
            gv = gr[p]
            for kh in range(3):
                pn[co, 0, kh, 0] -= gv * src[p + (kh - 1) * W - 1]
        for oh in range(1, H - 2):
            p = oh * W + W - 1
            gv = gr[p]
            for kh in range(3):
                pn[co, 0, kh, 2] -= gv * src[p + (kh - 1) * W + 1]
        # pixels outside the flat range: (1, 0), (H-2, W-1), first and last row
        _dw_pixel_grad(src, gr[W], H, W, 1, 0, pn, co)
        _dw_pixel_grad(src, gr[(H - 1) * W - 1], H, W, H - 2, W - 1, pn, co)
        for oh in (0, H - 1):
            for kh in range(3):
                ih = oh - 1 + kh
                if ih < 0 or ih >= H:
                    continue
                for kw in range(3):
                    # ow with 0 <= ow - 1 + kw < W
                    a = max(0, 1 - kw)
                    b = min(W, W + 1 - kw)
                    e = u64(oh * W + a)
                    s0 = u64(ih * W + a - 1 + kw)
                    r = zero
                    for i in range(u64(b - a)):
                        r += gr[e + i] * src[s0 + i]
                    pn[co, 0, kh, kw] += r


@jit(nogil=True)
def _dw3x3_bwd_weight_range(t0, t1, x, go, part, H, W, G, zero):
    for t in range(t0, t1):
        _dw3x3_bwd_weight_task(t, x, go, part, H, W, G, zero)


# --------------------------------------------------------------------------- im2col


@jit(nogil=True, fastmath=FASTMATH)
def _im2col(t0, t1, x, cols, H, W, KH, KW, Ho, Wo, sh, sw, ph, pw, dh, dw):
    # x (N, C, H*W) -> cols (N, C*KH*KW, Ho*Wo)
    C = x.shape[1]
    for t in range(t0, t1):
        n = t // C
        c = t - n * C
        src = x[n, c]
        for kh in range(KH):
            for kw in range(KW):
                dst = cols[n, (c * KH + kh) * KW + kw]
                base = kw * dw - pw  # iw = ow*sw + base
                lo = 0
                if base < 0:
                    lo = min(Wo, (-base + sw - 1) // sw)
                hi = 0
                if W - 1 - base >= 0:
                    hi = min(Wo, (W - 1 - base) // sw + 1)
                if hi < lo:
                    hi = lo
                for oh in range(Ho):
                    ih = oh * sh - ph + kh * dh
                    row = oh * Wo
                    if ih < 0 or ih >= H:
                        for ow in range(Wo):
                            dst[row + ow] = 0
                    else:
                        for ow in range(lo):
                            dst[row + ow] = 0
                        s0 = ih * W + base
                        if sw == 1:
                            seg = src[s0 + lo : s0 + hi]
                            d = dst[row + lo : row + hi]
                            for j in range(hi - lo):
                                d[j] = seg[j]
                        else:
                            for ow in range(lo, hi):
                                dst[row + ow] = src[s0 + ow * sw]
                        for ow in range(hi, Wo):
                            dst[row + ow] = 0


@jit(nogil=True, fastmath=FASTMATH)
def _col2im(t0, t1, cols, gx, H, W, KH, KW, Ho, Wo, sh, sw, ph, pw, dh, dw):
    # cols (N, C*KH*KW, Ho*Wo) -> gx (N, C, H*W) (overwritten)
    C = gx.shape[1]
    for t in range(t0, t1):
        n = t // C
        c = t - n * C
        dst = gx[n, c]
        for i in range(H * W):
            dst[i] = 0
        for kh in range(KH):
            for kw in range(KW):
                src = cols[n, (c * KH + kh) * KW + kw]
                base = kw * dw - pw
                lo = 0
                if base < 0:
                    lo = min(Wo, (-base + sw - 1) // sw)
                hi = 0
                if W - 1 - base >= 0:
                    hi = min(Wo, (W - 1 - base) // sw + 1)
                for oh in range(Ho):
                    ih = oh * sh - ph + kh * dh
                    if ih < 0 or ih >= H or hi <= lo:
                        continue
                    s0 = ih * W + base
                    row = oh * Wo
                    if sw == 1:
                        d = dst[s0 + lo : s0 + hi]
                        seg = src[row + lo : row + hi]
                        for j in range(hi - lo):
                            d[j] += seg[j]
                    else:
                        for ow in range(lo, hi):
                            dst[s0 + ow * sw] += src[row + ow]


# --------------------------------------------------------------------------- BLAS

_blas_ctl = None


def _blas_controller():
    """threadpoolctl's controller (created once), or False if threadpoolctl is missing."""
    global _blas_ctl
    if _blas_ctl is None:
        try:
            from threadpoolctl import ThreadpoolController

            _blas_ctl = ThreadpoolController()
        except Exception:  # threadpoolctl missing: let BLAS thread itself
            _blas_ctl = False
    return _blas_ctl


def _blas_one_thread():
    """Context manager limiting BLAS to 1 thread; the limit applies on creation and is
    undone on exit, so only ever use it in a `with` statement."""
    return _blas_controller().limit(limits=1, user_api="blas")


def _split_images(n):
    """Number of image ranges to run as parallel single-threaded GEMMs (1 = let BLAS thread).

    Measured under load (2 cores shared with other jobs, 2 threads, 8 images): OpenBLAS's
    own threads (spin-waiting) fell to 10-23 GFLOP/s median on the ResNet GEMMs, while
    one single-threaded GEMM per image on our blocking pool kept 22-43; on an idle
    machine both split the same work over the same cores.
    """
    k = min(n, num_threads())
    if k <= 1:
        return 1
    return k if _blas_controller() else 1


def _mm_range(k0, k1, a, b, out, n, k):
    for j in range(k0, k1):
        for i in range(n * j // k, n * (j + 1) // k):
            np.matmul(a, b[i], out=out[i])


def _gemm_images(a, b, out):
    """out[i] = a @ b[i] for every image i (a broadcast over the leading image axis)."""
    n = b.shape[0]
    k = _split_images(n)
    if k == 1:
        np.matmul(a, b, out=out)
        return
    with _blas_one_thread():
        parallel_for(_mm_range, k, a, b, out, n, k, chunks_per_thread=1)


def _mmt_range(k0, k1, go4, cols, parts, n, k):
    for j in range(k0, k1):
        acc = parts[j]
        tmp = np.empty_like(acc)
        acc[...] = 0
        for i in range(n * j // k, n * (j + 1) // k):
            np.matmul(go4[i], cols[i].transpose(0, 2, 1), out=tmp)
            acc += tmp


def _gemm_weight_grad(go4, cols):
    """sum_i go4[i] @ cols[i]^T: (G, Og, L) x (G, Kg, L) per image -> (G, Og, Kg).

    One partial sum per image range (parallel, single-threaded GEMMs), added at the end.
    """
    n, g, o, _ = go4.shape
    kg = cols.shape[2]
    k = _split_images(n)
    parts = np.empty((k, g, o, kg), dtype=go4.dtype)
    if k == 1:
        _mmt_range(0, 1, go4, cols, parts, n, 1)
        return parts[0]
    with _blas_one_thread():
        parallel_for(_mmt_range, k, go4, cols, parts, n, k, chunks_per_thread=1)
    return parts.sum(axis=0)


# --------------------------------------------------------------------------- dispatch


def _pair(v):
    return (int(v[0]), int(v[1]))


def _use_direct(cpi, cpo, kh, kw, groups):
    """Direct kernel for grouped/depthwise convs with small groups, BLAS otherwise."""
    if groups == 1:
        return False
    return cpo * cpi * kh * kw <= _DIRECT_MAX_WORK


# a group whose weight block has more entries than this goes to im2col + BLAS (measured
# crossover, fwd+bwd serial: 32 channels per group direct 47 vs BLAS 41 GFLOP/s, 64 per
# group direct 27 vs BLAS 68)
_DIRECT_MAX_WORK = 48 * 48 * 9


def _wq(wo, k, s, d):
    return ((wo - 1) * s + d * (k - 1)) // s + 1


def _rows_per_chunk(cpo, wq, itemsize):
    """Output rows per block: `cpo` accumulator rows of ~24 KB (L1), at most 32 rows.

    Called with the output-channel block size (min(C_out/groups, 4)) for the forward and
    weight-gradient kernels. Measured on the ResNeXt layers (NOTES.md): longer blocks
    spill the accumulators out of L1, shorter ones pay the fixed per-block cost (tap
    set-up, bias fill, copy-out) too often.
    """
    return max(1, min(32, (24 * 1024) // max(1, cpo * wq * itemsize)))


def _is_dw3x3(cpi, kh, kw, stride, padding, dilation):
    return (
        cpi == 1
        and kh == 3
        and kw == 3
        and stride == (1, 1)
        and padding == (1, 1)
        and dilation == (1, 1)
    )


def _is_pointwise(kh, kw, stride, padding):
    return kh == 1 and kw == 1 and stride == (1, 1) and padding == (0, 0)


def conv2d_forward(x, weight, bias, stride, padding, dilation, groups):
    x = np.ascontiguousarray(x)
    dt = x.dtype
    weight = np.ascontiguousarray(weight, dtype=dt)
    (sh, sw), (ph, pw), (dh, dw) = _pair(stride), _pair(padding), _pair(dilation)
    groups = int(groups)
    N, C, H, W = x.shape
    Cout, cpi, KH, KW = weight.shape
    cpo = Cout // groups
    Ho, Wo = _out_size(H, KH, sh, ph, dh), _out_size(W, KW, sw, pw, dw)
    P = Ho * Wo
    x3 = x.reshape(N, C, H * W)
    if _use_direct(cpi, cpo, KH, KW, groups):
        b = np.zeros(Cout, dt) if bias is None else np.ascontiguousarray(bias, dtype=dt)
        out = np.empty((N, Cout, P), dtype=dt)
        if _is_dw3x3(cpi, KH, KW, (sh, sw), (ph, pw), (dh, dw)):
            parallel_for(_dw3x3_range, N * groups, x3, weight, b, out, H, W, groups)
            return out.reshape(N, Cout, Ho, Wo)
        R = _rows_per_chunk(min(cpo, 4), _wq(Wo, KW, sw, dw), dt.itemsize)
        parallel_for(
            _direct_fwd_range,
            N * groups,
            x3,
            weight,
            b,
            out,
            H,
            W,
            Ho,
            Wo,
            groups,
            sh,
            sw,
            ph,
            pw,
            dh,
            dw,
            R,
        )
        return out.reshape(N, Cout, Ho, Wo)

    Kg = cpi * KH * KW
    if _is_pointwise(KH, KW, (sh, sw), (ph, pw)):
        cols = x3.reshape(N, groups, Kg, P)
    else:
        cols = workspace("cols", N * C * KH * KW * P, dt).reshape(N, C * KH * KW, P)
        parallel_for(_im2col, N * C, x3, cols, H, W, KH, KW, Ho, Wo, sh, sw, ph, pw, dh, dw)
        cols = cols.reshape(N, groups, Kg, P)
    out = np.empty((N, groups, cpo, P), dtype=dt)
    _gemm_images(weight.reshape(groups, cpo, Kg), cols, out)
    out = out.reshape(N, Cout, Ho, Wo)
    if bias is not None:
        out += np.asarray(bias, dtype=dt).reshape(1, Cout, 1, 1)
    return out


def conv2d_backward_input(grad_out, weight, input_shape, stride, padding, dilation, groups):
    grad_out = np.ascontiguousarray(grad_out)
    dt = grad_out.dtype
    weight = np.ascontiguousarray(weight, dtype=dt)
    (sh, sw), (ph, pw), (dh, dw) = _pair(stride), _pair(padding), _pair(dilation)
    groups = int(groups)
    N, C, H, W = (int(v) for v in input_shape)
    Cout, cpi, KH, KW = weight.shape
    cpo = Cout // groups
    _, _, Ho, Wo = grad_out.shape
    P = Ho * Wo
    go3 = grad_out.reshape(N, Cout, P)
    gx = np.empty((N, C, H * W), dtype=dt)
    if _use_direct(cpi, cpo, KH, KW, groups):
        if (sh, sw) == (1, 1):
            # stride 1: grad_x is the forward conv of grad_out with the per-group
            # transposed, flipped weights and padding d*(k-1) - p (negative = crop)
            wf = weight.reshape(groups, cpo, cpi, KH, KW)[:, :, :, ::-1, ::-1]
            wf = np.ascontiguousarray(wf.transpose(0, 2, 1, 3, 4)).reshape(C, cpo, KH, KW)
            qh, qw = dh * (KH - 1) - ph, dw * (KW - 1) - pw
            if cpi == 1 and _is_dw3x3(cpo, KH, KW, (1, 1), (qh, qw), (dh, dw)):
                # plain depthwise 3x3: its transpose is again a depthwise 3x3
                zeros = np.zeros(C, dt)
                parallel_for(_dw3x3_range, N * groups, go3, wf, zeros, gx, H, W, groups)
                return gx.reshape(N, C, H, W)
            R = _rows_per_chunk(min(cpi, 4), _wq(W, KW, 1, dw), dt.itemsize)
            parallel_for(
                _direct_fwd_range,
                N * groups,
                go3,
                wf,
                np.zeros(C, dt),
                gx,
                Ho,
                Wo,
                H,
                W,
                groups,
                1,
                1,
                qh,
                qw,
                dh,
                dw,
                R,
            )
        else:
            R = _rows_per_chunk(cpo, _wq(Wo, KW, sw, dw), dt.itemsize)
            parallel_for(
                _direct_bwd_input_range,
                N * groups,
                go3,
                weight,
                gx,
                H,
                W,
                Ho,
                Wo,
                groups,
                sh,
                sw,
                ph,
                pw,
                dh,
                dw,
                R,
            )
        return gx.reshape(N, C, H, W)

    Kg = cpi * KH * KW
    wT = weight.reshape(groups, cpo, Kg).transpose(0, 2, 1)
    go4 = go3.reshape(N, groups, cpo, P)
    if _is_pointwise(KH, KW, (sh, sw), (ph, pw)) and (Ho, Wo) == (H, W):
        _gemm_images(wT, go4, gx.reshape(N, groups, Kg, P))
        return gx.reshape(N, C, H, W)
    gcols = workspace("gcols", N * C * KH * KW * P, dt).reshape(N, groups, Kg, P)
    _gemm_images(wT, go4, gcols)
    parallel_for(
        _col2im,
        N * C,
        gcols.reshape(N, C * KH * KW, P),
        gx,
        H,
        W,
        KH,
        KW,
        Ho,
        Wo,
        sh,
        sw,
        ph,
        pw,
        dh,
        dw,
    )
    return gx.reshape(N, C, H, W)


def conv2d_backward_weight(x, grad_out, weight_shape, stride, padding, dilation, groups):
    x = np.ascontiguousarray(x)
    dt = x.dtype
    grad_out = np.ascontiguousarray(grad_out, dtype=dt)
    (sh, sw), (ph, pw), (dh, dw) = _pair(stride), _pair(padding), _pair(dilation)
    groups = int(groups)
    N, C, H, W = x.shape
    Cout, cpi, KH, KW = (int(v) for v in weight_shape)
    cpo = Cout // groups
    _, _, Ho, Wo = grad_out.shape
    P = Ho * Wo
    x3 = x.reshape(N, C, H * W)
    go3 = grad_out.reshape(N, Cout, P)
    if _use_direct(cpi, cpo, KH, KW, groups):
        part = np.empty((N, Cout, cpi, KH, KW), dtype=dt)
        if _is_dw3x3(cpi, KH, KW, (sh, sw), (ph, pw), (dh, dw)):
            parallel_for(
                _dw3x3_bwd_weight_range, N * groups, x3, go3, part, H, W, groups, dt.type(0)
            )
            return part.sum(axis=0)
        R = _rows_per_chunk(min(cpo, 4), _wq(Wo, KW, sw, dw), dt.itemsize)
        parallel_for(
            _direct_bwd_weight_range,
            N * groups,
            x3,
            go3,
            part,
            H,
            W,
            Ho,
            Wo,
            groups,
            sh,
            sw,
            ph,
            pw,
            dh,
            dw,
            R,
            dt.type(0),
        )
        return part.sum(axis=0)

    Kg = cpi * KH * KW
    if _is_pointwise(KH, KW, (sh, sw), (ph, pw)):
        cols = x3.reshape(N, groups, Kg, P)
    else:
        cols = workspace("cols", N * C * KH * KW * P, dt).reshape(N, C * KH * KW, P)
        parallel_for(_im2col, N * C, x3, cols, H, W, KH, KW, Ho, Wo, sh, sw, ph, pw, dh, dw)
        cols = cols.reshape(N, groups, Kg, P)
    go4 = go3.reshape(N, groups, cpo, P)
    gw = _gemm_weight_grad(go4, cols)
    return gw.reshape(Cout, cpi, KH, KW)
