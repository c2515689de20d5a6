"""Numba convolution kernels (forward, backward-input, backward-weight).

Four algorithms, chosen per call (`conv_paths` names the path of each pass; measurements:
NOTES.md). All of them give the reference's NaN / inf pattern (non-finite weights and
non-finite weight gradients are routed to the GEMM path, see "paths" below) and the same
bits for any thread count (fixed work decomposition, see "BLAS" below).

* **tap table, register-blocked** (`tapconv.py`; forward and backward-input of 3x3-type
  convs with at most 64 input channels per group: stride 1 with "same" padding, and
  3x3 / stride 2 / pad 1 through polyphase planes; `_tapconv_geometry`). Explicit SIMD
  (`simd.py`): a tile of 8 output channels x 32 pixels stays in registers over all
  input channels and taps. Its weight-gradient twin puts output channels in the
  lanes (`lane_weight_grad`, >= 32 outputs per group on small planes;
  `_use_lane_weight_grad`).

* **im2col + BLAS** (dense convs wider than 32 channels or strided, and groups wider
  than 32 channels). Each image's (C_in*kH*kW, H_out*W_out) column matrix - or, for
  small 3x3 / stride 1 / pad 1 images, a ~1 MB block of several images side by side -
  is built in a per-thread workspace (`_numba.workspace`) right before its GEMM, so the
  GEMM reads it from cache; these image blocks run in parallel with single-threaded
  OpenBLAS. 3x3 / stride 1 / pad 1 columns are a masked flat copy (`_im2col_same3x3`).
  Backward-input at stride 1 is the forward conv of grad_out with transposed, flipped
  weights; strided convs use W^T @ grad_out and a parallel col2im. Backward-weight is
  the transposed product cols @ grad_out^T (the faster shape for OpenBLAS).
  1x1/stride-1/no-pad convs skip im2col: the input already *is* the column matrix.
  Padding is handled inside im2col/col2im (no padded copy).

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

* **masked direct** weight gradient (3x3 / stride 1 / pad 1 grouped and small dense
  convs, <= 32 channels per group, where the lane kernel does not take them): dot
  products read straight from x at flat offsets under per-tap validity masks
  (`_tap_masks`; AVX-512 masked loads). Depthwise 3x3 / stride 1 / pad 1 has its own
  plane kernels (`depthwise.py`).
"""

from __future__ import annotations

import functools

import numpy as np
from numba import uint64 as u64

from ..blas import blas_controller, blas_one_thread
from ._numba import FASTMATH, jit, parallel_for, workspace
from .depthwise import dw3x3_bwd_weight_range, dw3x3_range
from .tapconv import lane_weight_grad, polyphase, stride2_backward_input, tap_conv

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
                        # unsigned offsets, no per-row slices (measured: the slice
                        # objects made this fill ~2x a memcpy)
                        so = u64(s + jlo)
                        do = u64(row + jlo)
                        for j in range(u64(jhi - jlo)):
                            dst[do + j] = src[so + j]
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
                        so = u64(row + jlo)
                        do = u64(s + jlo)
                        for j in range(u64(jhi - jlo)):
                            dst[do + j] = src[so + j]
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
            so = u64((r0 + r) * Wo)
            do = u64(r * Wq)
            for j in range(u64(Wo)):
                dst[do + j] = src[so + j]
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
                    do = u64((r0 + r) * Wo)
                    ao = u64((o - ob) * RW + r * Wq)
                    for j in range(u64(Wo)):
                        dst[do + j] = acc[ao + j]


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


# ---------------------------------------------------------- direct, 3x3 / stride 1 / pad 1
# The weight gradient of the grouped / small dense 3x3 "same" conv straight from x and
# grad_out: no padded tile, no junk columns (the tile kernel's fill cost ~1/3 of its
# time, NOTES.md). Each plane is one flat loop over p = oh*W + ow with tap (kh, kw) at
# the constant offset (kh-1)*W + (kw-1); every tap is loaded under its validity mask
# mk[kh*3 + kw, p] (`_tap_masks`), so out-of-image neighbours (wrapped-around columns,
# the rows above the first / below the last row) read as 0. Masked-off lanes compile to
# AVX-512 masked loads, which never touch memory: the flat offsets may point before
# x[0] or past the end on those lanes. (The forward and backward-input of this conv are
# the tap-table kernels, `tapconv.py`.)


@jit(fastmath=FASTMATH)
def _dotsm_6x4(pn, ge, e0, rs, src, t0, tr, mk, m0, ms, co, c, kh, ln, zero):
    """Kernel rows kh and kh+1 (6 taps) x 4 outputs in one pass; tr = row stride of src."""
    e1 = e0 + rs
    e2 = e1 + rs
    e3 = e2 + rs
    m1 = m0 + ms
    m2 = m1 + ms
    m3 = m2 + ms
    m4 = m3 + ms
    m5 = m4 + ms
    one = u64(1)
    two = u64(2)
    u0 = t0 + tr
    r000 = zero
    r001 = zero
    r002 = zero
    r010 = zero
    r011 = zero
    r012 = zero
    r100 = zero
    r101 = zero
    r102 = zero
    r110 = zero
    r111 = zero
    r112 = zero
    r200 = zero
    r201 = zero
    r202 = zero
    r210 = zero
    r211 = zero
    r212 = zero
    r300 = zero
    r301 = zero
    r302 = zero
    r310 = zero
    r311 = zero
    r312 = zero
    for i in range(ln):
        x00 = zero
        if mk[m0 + i]:
            x00 = src[t0 + i]
        x01 = zero
        if mk[m1 + i]:
            x01 = src[t0 + one + i]
        x02 = zero
        if mk[m2 + i]:
            x02 = src[t0 + two + i]
        x10 = zero
        if mk[m3 + i]:
            x10 = src[u0 + i]
        x11 = zero
        if mk[m4 + i]:
            x11 = src[u0 + one + i]
        x12 = zero
        if mk[m5 + i]:
            x12 = src[u0 + two + i]
        f0 = ge[e0 + i]
        f1 = ge[e1 + i]
        f2 = ge[e2 + i]
        f3 = ge[e3 + i]
        r000 += f0 * x00
        r001 += f0 * x01
        r002 += f0 * x02
        r010 += f0 * x10
        r011 += f0 * x11
        r012 += f0 * x12
        r100 += f1 * x00
        r101 += f1 * x01
        r102 += f1 * x02
        r110 += f1 * x10
        r111 += f1 * x11
        r112 += f1 * x12
        r200 += f2 * x00
        r201 += f2 * x01
        r202 += f2 * x02
        r210 += f2 * x10
        r211 += f2 * x11
        r212 += f2 * x12
        r300 += f3 * x00
        r301 += f3 * x01
        r302 += f3 * x02
        r310 += f3 * x10
        r311 += f3 * x11
        r312 += f3 * x12
    pn[co + 0, c, kh + 0, 0] += r000
    pn[co + 0, c, kh + 0, 1] += r001
    pn[co + 0, c, kh + 0, 2] += r002
    pn[co + 0, c, kh + 1, 0] += r010
    pn[co + 0, c, kh + 1, 1] += r011
    pn[co + 0, c, kh + 1, 2] += r012
    pn[co + 1, c, kh + 0, 0] += r100
    pn[co + 1, c, kh + 0, 1] += r101
    pn[co + 1, c, kh + 0, 2] += r102
    pn[co + 1, c, kh + 1, 0] += r110
    pn[co + 1, c, kh + 1, 1] += r111
    pn[co + 1, c, kh + 1, 2] += r112
    pn[co + 2, c, kh + 0, 0] += r200
    pn[co + 2, c, kh + 0, 1] += r201
    pn[co + 2, c, kh + 0, 2] += r202
    pn[co + 2, c, kh + 1, 0] += r210
    pn[co + 2, c, kh + 1, 1] += r211
    pn[co + 2, c, kh + 1, 2] += r212
    pn[co + 3, c, kh + 0, 0] += r300
    pn[co + 3, c, kh + 0, 1] += r301
    pn[co + 3, c, kh + 0, 2] += r302
    pn[co + 3, c, kh + 1, 0] += r310
    pn[co + 3, c, kh + 1, 1] += r311
    pn[co + 3, c, kh + 1, 2] += r312


@jit(fastmath=FASTMATH)
def _dotsm_3x4(pn, ge, e0, rs, src, t0, mk, m0, ms, co, c, kh, ln, zero):
    e1 = e0 + rs
    e2 = e1 + rs
    e3 = e2 + rs
    m1 = m0 + ms
    m2 = m1 + ms
    one = u64(1)
    two = u64(2)
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
        x0 = zero
        if mk[m0 + i]:
            x0 = src[t0 + i]
        x1 = zero
        if mk[m1 + i]:
            x1 = src[t0 + one + i]
        x2 = zero
        if mk[m2 + i]:
            x2 = src[t0 + two + i]
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
    pn[co, c, kh, 0] += r00
    pn[co, c, kh, 1] += r01
    pn[co, c, kh, 2] += r02
    pn[co + 1, c, kh, 0] += r10
    pn[co + 1, c, kh, 1] += r11
    pn[co + 1, c, kh, 2] += r12
    pn[co + 2, c, kh, 0] += r20
    pn[co + 2, c, kh, 1] += r21
    pn[co + 2, c, kh, 2] += r22
    pn[co + 3, c, kh, 0] += r30
    pn[co + 3, c, kh, 1] += r31
    pn[co + 3, c, kh, 2] += r32


@jit(fastmath=FASTMATH)
def _dotsm_3x1(pn, ge, e0, src, t0, mk, m0, ms, co, c, kh, ln, zero):
    m1 = m0 + ms
    m2 = m1 + ms
    one = u64(1)
    two = u64(2)
    r0 = zero
    r1 = zero
    r2 = zero
    for i in range(ln):
        x0 = zero
        if mk[m0 + i]:
            x0 = src[t0 + i]
        x1 = zero
        if mk[m1 + i]:
            x1 = src[t0 + one + i]
        x2 = zero
        if mk[m2 + i]:
            x2 = src[t0 + two + i]
        f = ge[e0 + i]
        r0 += f * x0
        r1 += f * x1
        r2 += f * x2
    pn[co, c, kh, 0] += r0
    pn[co, c, kh, 1] += r1
    pn[co, c, kh, 2] += r2


@jit(fastmath=FASTMATH)
def _same3x3_bwd_weight_task(t, x, go, part, mk, H, W, G, R, zero):
    # x (N, C*H*W), go (N, Cout*H*W), part (N, Cout, cpi, 3, 3) fully overwritten
    _, Cout, cpi, _, _ = part.shape
    cpo = Cout // G
    n = t // G
    g = t - n * G
    co0 = g * cpo
    HW = H * W
    uW = u64(W)
    urs = u64(HW)
    src = x[n]
    gn = go[n]
    pn = part[n]
    for o in range(cpo):
        for c in range(cpi):
            for kh in range(3):
                for kw in range(3):
                    pn[co0 + o, c, kh, kw] = zero
    # blocks of 4 grad_out channels x R rows (in L1 while the input channels stream)
    for r0 in range(0, H, R):
        r1 = min(H, r0 + R)
        p0 = u64(r0 * W)
        uln = u64((r1 - r0) * W)
        for ob in range(0, cpo, 4):
            oe = min(ob + 4, cpo)
            for c in range(cpi):
                cb = u64((g * cpi + c) * HW) + p0
                if ob + 4 <= oe:
                    # kernel rows 0 and 1 of 4 outputs in one pass
                    t0 = cb - uW - u64(1)
                    e0 = u64((co0 + ob) * HW) + p0
                    _dotsm_6x4(pn, gn, e0, urs, src, t0, uW, mk, p0, urs, co0 + ob, c, 0, uln, zero)
                for kh in range(3):
                    t0 = cb + u64(kh) * uW - uW - u64(1)
                    m0 = u64(3 * kh * HW) + p0
                    o = ob
                    if o + 4 <= oe and kh < 2:
                        o += 4
                    if o + 4 <= oe:
                        e0 = u64((co0 + o) * HW) + p0
                        _dotsm_3x4(pn, gn, e0, urs, src, t0, mk, m0, urs, co0 + o, c, kh, uln, zero)
                        o += 4
                    while o < oe:
                        e0 = u64((co0 + o) * HW) + p0
                        _dotsm_3x1(pn, gn, e0, src, t0, mk, m0, urs, co0 + o, c, kh, uln, zero)
                        o += 1


@jit(nogil=True)
def _same3x3_bwd_weight_range(t0, t1, x, go, part, mk, H, W, G, R, zero):
    for t in range(t0, t1):
        _same3x3_bwd_weight_task(t, x, go, part, mk, H, W, G, R, zero)


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
                            so = u64(s0 + lo)
                            do = u64(row + lo)
                            for j in range(u64(hi - lo)):
                                dst[do + j] = src[so + j]
                        else:
                            for ow in range(lo, hi):
                                dst[row + ow] = src[s0 + ow * sw]
                        for ow in range(hi, Wo):
                            dst[row + ow] = 0


@jit(nogil=True, fastmath=FASTMATH)
def _im2col_same3x3(t0, t1, x, cols, mk, C, H, W, img_stride, row_stride, zero):
    # x (N, C*H*W) -> flat cols: element (n, c*9 + tap, p) at
    # n*img_stride + (c*9 + tap)*row_stride + p, so the same kernel writes one image's
    # (C*9, H*W) matrix or an image block's (C*9, nb*H*W) matrix. im2col of a 3x3 /
    # stride 1 / pad 1 conv as nine shifted copies of each plane; the out-of-image taps
    # are masked (`_tap_masks`), so a flat loop over the plane needs no border code (6x
    # faster than `_im2col` at 8x8)
    HW = u64(H * W)
    uW = u64(W)
    for t in range(t0, t1):
        n = t // C
        c = t - n * C
        src = x[n]
        cb = u64(c) * HW
        for tap in range(9):
            kh = u64(tap // 3)
            kw = u64(tap - 3 * (tap // 3))
            s0 = cb + kh * uW + kw - uW - u64(1)  # wraps only on masked lanes
            d0 = u64(n) * u64(img_stride) + (u64(c) * u64(9) + u64(tap)) * u64(row_stride)
            m0 = u64(tap) * HW
            for p in range(HW):
                v = zero
                if mk[m0 + p]:
                    v = src[s0 + p]
                cols[d0 + p] = v


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
                        do = u64(s0 + lo)
                        so = u64(row + lo)
                        for j in range(u64(hi - lo)):
                            dst[do + j] += src[so + j]
                    else:
                        for ow in range(lo, hi):
                            dst[s0 + ow * sw] += src[row + ow]


def _is_same3x3_geom(geom):
    return tuple(geom[2:4]) + tuple(geom[6:]) == (3, 3, 1, 1, 1, 1, 1, 1)


def _im2col_range(t0, t1, x3, cols, geom):
    """cols = im2col(x3) for the tasks [t0, t1) over (image, channel) pairs.

    x3 (N, C, H*W), cols (N, C*KH*KW, Ho*Wo), geom = (H, W, KH, KW, Ho, Wo, sh, sw, ph,
    pw, dh, dw). The 3x3 / stride 1 / pad 1 case takes the masked flat copy.
    """
    H, W = geom[:2]
    if _is_same3x3_geom(geom):
        n, C, HW = x3.shape
        z = x3.dtype.type(0)
        mk = _tap_masks(H, W)
        _im2col_same3x3(t0, t1, x3.reshape(n, -1), cols.reshape(-1), mk, C, H, W, C * 9 * HW, HW, z)
    else:
        _im2col(t0, t1, x3, cols, *geom)


def _im2col_block(x3, buf, geom):
    """The column matrix of an image block x3 (nb, C, H*W): (C*KH*KW, nb*Ho*Wo), the
    images side by side along the columns, in the scratch buffer `buf` (1-D).

    One GEMM per block instead of one per image: an 8x8 image gives a 64-column GEMM,
    too small for BLAS to reach speed (OpenBLAS, one core: 64x576x64 114 GFLOP/s vs
    64x576x512 128; its weight-gradient product 64x64x576 is worse). Blocks of several
    images exist only for the masked 3x3 / stride 1 / pad 1 copy; other geometries
    come one image at a time.
    """
    nb, C, HW = x3.shape
    K, P = C * geom[2] * geom[3], geom[4] * geom[5]
    cols = buf[: K * nb * P]
    if _is_same3x3_geom(geom):
        z = x3.dtype.type(0)
        mk = _tap_masks(geom[0], geom[1])
        _im2col_same3x3(
            0, nb * C, x3.reshape(nb, -1), cols, mk, C, geom[0], geom[1], HW, nb * HW, z
        )
    elif nb == 1:
        _im2col(0, C, x3, cols.reshape(1, K, P), *geom)
    else:
        raise ValueError("image blocks need the 3x3 / stride 1 / pad 1 geometry")
    return cols.reshape(K, nb * P)


# a block's column matrix is kept at about this size (bytes), so that it is still in
# this core's L2 cache when its GEMM reads it (2 MB L2 per core here)
_BLOCK_COLS_BYTES = 1 << 20


def _images_per_block(n, C, geom, itemsize):
    """Images per GEMM for `_im2col_block`: 1 unless the geometry is 3x3 / stride 1 /
    pad 1, else as many as fit `_BLOCK_COLS_BYTES` (at most n)."""
    if not _is_same3x3_geom(geom):
        return 1
    per_image = C * 9 * geom[4] * geom[5] * itemsize
    return max(1, min(n, _BLOCK_COLS_BYTES // per_image))


# --------------------------------------------------------------------------- BLAS
#
# Work decomposition (determinism). The GEMM paths cut the batch into image *blocks*
# (`_image_blocks`: one image, or several small images side by side in one column
# matrix) that depend only on the shapes, never on the thread count. Each block is one
# single-threaded GEMM on one of our threads (threadpoolctl limits BLAS to one thread;
# its own threads spin-wait and collapse under load, NOTES.md). The forward and the
# input gradient write each block's outputs in place; the weight gradient sums blocks
# into at most `_WEIGHT_GRAD_CHUNKS` partials, chunk j summing its fixed range of blocks
# in order, and the partials are added in chunk order. So every thread count makes the
# same GEMM calls on the same shapes and adds their results in the same order: the
# results are bit-identical for 1 or N threads. (Until this round the images were split
# into one range per thread, so the weight gradient's partial sums - and with them its
# last bits - changed with the thread count: 36 of 200 random geometries differed.)
# Without threadpoolctl (a dependency of minires, but kept optional here) the blocks run
# one after the other with BLAS threading each GEMM itself: the results then do not
# depend on our thread count but may on BLAS's own (OpenBLAS's threaded GEMM gave other
# last bits than its one-thread GEMM on some of these shapes, measured).

# weight-gradient partial sums: at most this many (so up to 8 threads share the work), a
# power of two (2, 4, 8 threads split them evenly), and together at most `_PARTIALS_BYTES`
# (wide layers: 512x512x3x3 float32 is 9.4 MB): below glibc's mmap threshold (32 MB,
# `_numba.py`) they come from the heap; 6 partials (56 MB) of fresh mmap pages cost ~10
# ms of page faults per call (512 -> 512 3x3 at 7x7, batch 8: 29 -> 39 ms, 1 thread)
_WEIGHT_GRAD_CHUNKS = 8
_PARTIALS_BYTES = 24 << 20


def _image_blocks(n, C, geom, itemsize):
    """Image ranges of the GEMM paths: bounds b (int list, b[0] = 0, b[-1] = n); block i
    holds images b[i] .. b[i+1]-1, as many as `_images_per_block` allows, sizes balanced
    (7 images at most 3 per block: 3 + 2 + 2). Depends on the shapes only. With `geom`
    None (no im2col: 1x1 convs, col2im), one image per block."""
    nb = 1 if geom is None else _images_per_block(n, C, geom, itemsize)
    m = -(-n // nb)
    return [n * i // m for i in range(m + 1)] if m else [0]


def _run_blocks(range_kernel, ntasks, *args):
    """range_kernel(t0, t1, *args) over [0, ntasks): in parallel with one-thread BLAS,
    or serially when BLAS threads cannot be limited (threadpoolctl not installed)."""
    if ntasks == 0:
        return
    if blas_controller():
        with blas_one_thread():
            parallel_for(range_kernel, ntasks, *args, chunks_per_thread=1)
    else:
        range_kernel(0, ntasks, *args)


def _mm_range(t0, t1, a, b, out):
    for i in range(t0, t1):
        np.matmul(a, b[i], out=out[i])


def _gemm_images(a, b, out):
    """out[i] = a @ b[i] for every image i (a broadcast over the leading image axis)."""
    _run_blocks(_mm_range, b.shape[0], a, b, out)


def _im2col_mm_range(t0, t1, x3, a, out, bounds, geom):
    """Per image block: im2col into this thread's workspace, then out[block] = a @ cols."""
    C, P = x3.shape[1], geom[4] * geom[5]
    g, o, kg = a.shape
    nb = max(bounds[i + 1] - bounds[i] for i in range(t0, t1))
    buf = workspace("cols1", C * geom[2] * geom[3] * nb * P, x3.dtype)
    res = workspace("out1", g * o * nb * P, x3.dtype)
    for t in range(t0, t1):
        i0, i1 = bounds[t], bounds[t + 1]
        cols = _im2col_block(x3[i0:i1], buf, geom).reshape(g, kg, -1)
        if i1 - i0 == 1:
            np.matmul(a, cols, out=out[i0])
        else:  # (g, o, block images * P) -> out[i0:i1] (images, g, o, P)
            r = res[: g * o * (i1 - i0) * P].reshape(g, o, -1)
            np.matmul(a, cols, out=r)
            np.copyto(out[i0:i1], r.reshape(g, o, i1 - i0, P).transpose(2, 0, 1, 3))


def _im2col_gemm(x3, a, out, geom):
    """out[i] = a @ im2col(x3[i]) per image block, im2col and GEMM of one block back to
    back on one thread (the block's column matrix is still in cache for its GEMM)."""
    bounds = _image_blocks(x3.shape[0], x3.shape[1], geom, x3.dtype.itemsize)
    _run_blocks(_im2col_mm_range, len(bounds) - 1, x3, a, out, bounds, geom)


def _mmt_range(j0, j1, go4, cols, parts, bounds, x3=None, geom=None):
    """parts[j] = sum over the image blocks of chunk j, in order, of cols @ go^T (the
    transposed weight gradient, (G, Kg, Og)); chunk j holds blocks m*j//k .. m*(j+1)//k
    - 1 of the m blocks in `bounds`. With `x3` given, each block's column matrix is built
    (`_im2col_block`) just before its GEMM (per-thread workspace); else `cols` holds one
    per image (1x1 convs: the input itself)."""
    k, g, kg, o = parts.shape
    m = len(bounds) - 1
    if x3 is not None:
        C, P = x3.shape[1], geom[4] * geom[5]
        nb = max(bounds[i + 1] - bounds[i] for i in range(m))
        buf = workspace("cols1", C * geom[2] * geom[3] * nb * P, x3.dtype)
        gob = workspace("go1", g * o * nb * P, x3.dtype)
    tmp = np.empty((g, kg, o), parts.dtype)
    for j in range(j0, j1):
        for b in range(m * j // k, m * (j + 1) // k):
            i0, i1 = bounds[b], bounds[b + 1]
            if x3 is None:
                ci, gi = cols[i0], go4[i0]
            else:
                ci = _im2col_block(x3[i0:i1], buf, geom).reshape(g, kg, -1)
                if i1 - i0 == 1:
                    gi = go4[i0]
                else:  # grad_out of the block in the same (channel, image, pixel) order
                    gi = gob[: g * o * (i1 - i0) * P].reshape(g, o, i1 - i0, P)
                    np.copyto(gi, go4[i0:i1].transpose(1, 2, 0, 3))
                    gi = gi.reshape(g, o, -1)
            if b == m * j // k:  # the chunk's first block writes its partial
                np.matmul(ci, gi.transpose(0, 2, 1), out=parts[j])
            else:
                np.matmul(ci, gi.transpose(0, 2, 1), out=tmp)
                parts[j] += tmp


def _gemm_weight_grad(go4, cols, x3=None, geom=None):
    """sum_i go4[i] @ cols[i]^T: (G, Og, L) x (G, Kg, L) per image -> (G, Og, Kg).

    Partial sums over fixed chunks of image blocks (parallel, single-threaded GEMMs),
    added in chunk order (see the top of this section). The GEMMs compute the transpose,
    cols @ go^T: OpenBLAS (one core) runs the 64-channel 56x56 product as (576 x 3136)
    @ (3136 x 64) at ~120 GFLOP/s but as (64 x 3136) @ (3136 x 576) at 68-94. With
    `cols=None` the column matrices are built per image block from `x3` (`geom` = the
    im2col geometry) next to their GEMM.
    """
    n, g, o, _ = go4.shape
    kg = cols.shape[2] if cols is not None else geom[2] * geom[3] * x3.shape[1] // g
    itemsize = go4.dtype.itemsize
    if cols is None:
        bounds = _image_blocks(n, x3.shape[1], geom, itemsize)
    else:
        bounds = _image_blocks(n, 0, None, itemsize)
    m = len(bounds) - 1
    if m == 0:  # no images
        return np.zeros((g, o, kg), go4.dtype)
    k = min(m, _WEIGHT_GRAD_CHUNKS, max(1, _PARTIALS_BYTES // (g * kg * o * itemsize)))
    k = 1 << (k.bit_length() - 1)  # a power of two
    parts = np.empty((k, g, kg, o), dtype=go4.dtype)
    _run_blocks(_mmt_range, k, go4, cols, parts, bounds, x3, geom)
    gw = parts[0] if k == 1 else parts.sum(axis=0)  # chunk order: fixed
    return gw.transpose(0, 2, 1)


# --------------------------------------------------------------------------- dispatch


def _pair(v):
    return (int(v[0]), int(v[1]))


def _use_direct(cpi, cpo, kh, kw, groups, stride):
    """Direct kernel for grouped/depthwise convs with small groups, BLAS otherwise.

    Dense convs go direct only when small and stride 1 (CIFAR's 16/32-channel layers:
    there im2col costs as much as the GEMM; measured on a resnet20 step, the 16->16 layers
    went from 229 to 87 ms). Strided dense convs keep BLAS: their direct backward-input
    was slower (7.4 vs 5.5 ms).
    """
    if groups == 1:
        return stride == (1, 1) and cpo * cpi * kh * kw <= _DIRECT_MAX_DENSE
    return cpo * cpi * kh * kw <= _DIRECT_MAX_WORK


# a group whose weight block has more entries than this goes to im2col + BLAS (measured
# crossover, fwd+bwd serial: 32 channels per group direct 47 vs BLAS 41 GFLOP/s, 64 per
# group direct 27 vs BLAS 68; session 2, 2 threads, with the faster BLAS path: 48 per
# group (conv3 4x48d, batch 8) direct 22.3 ms vs BLAS 18.9 ms)
_DIRECT_MAX_WORK = 32 * 32 * 9
_DIRECT_MAX_DENSE = 32 * 32 * 9


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


def _balanced_rows(r, h):
    """Rows per chunk <= r that split h rows into equal chunks (56 rows at r = 27:
    19 + 19 + 18, not 27 + 27 + 2)."""
    k = -(-h // max(1, r))
    return -(-h // k)


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


# The register-blocked tap-table kernel (`tapconv.py`) computes, forward and
# backward-input, stride-1 convs whose output is the size of the input ("same" padding:
# 3x3 pad 1, 5x5 pad 2, 3x3 dilation 2 pad 2, ...) and 3x3 / stride 2 / pad 1 convs
# (through polyphase planes), when a group's input channels x taps are at most this
# many. Measured (session 3, 2 threads, float32, ms, old path -> tap table):
# stride 1 forward: dense 16->16 32x32 batch 64 2.2-4.9 -> 1.3, 32->32 16x16 2.5-4.1 ->
# 1.3-1.8, 64->64 8x8 (BLAS) 2.0 -> 1.3, 64->64 56x56 batch 8 (BLAS) 9.8 -> 7.4,
# 128->128 28x28 7.8 -> 7.6, but 256->256 14x14 7.3 -> 9.2 and 512 at 7x7 9.5 -> 13.7
# (wide layers stay on BLAS); grouped 32x4d 56x56 2.1-2.9 -> 1.4-1.9, 32x8d 28x28
# 1.8-2.5 -> 1.1, 32x16d 14x14 2.4 -> 1.3, 32x32d 7x7 2.6 -> 1.1, 8x14d 5.3-8.2 -> 3.3-3.7.
# Stride 2 (batch 64 / 8), forward / backward-input: 16->32 32x32 1.2 / 2.9 -> 1.2 / 1.6,
# 32->64 16x16 1.1 / 2.2 -> 1.1 / 1.6, 32x8d 56x56 5.3 / 7.7 -> 4.0 / 4.0, 32x16d 28x28
# 4.8 / 11.4 -> 3.0 / 4.5, 32x32d 14x14 6.6 / 9.8 -> 2.7 / 5.2, dense 64->128 56x56
# 5.5 / 5.8 -> 5.0 / 5.8; but 128->256 28x28 4.8 / 5.0 -> 5.3 / 7.5 (BLAS).
_TAPCONV_MAX_WORK = 64 * 9


def _tapconv_geometry(cpi, cpo, kh, kw, stride, padding, dilation):
    """ "same" or "poly2" if the tap-table kernel takes this conv (`cpi`, `cpo`: input and
    output channels per group of the conv computed), else None. Not depthwise (one
    output per group would waste 3/4 of the 4-channel tile) and not 1x1 (the input
    already is the GEMM's matrix)."""
    if cpi * kh * kw > _TAPCONV_MAX_WORK or cpo < 2 or (kh, kw) == (1, 1):
        return None
    if stride == (1, 1) and all(
        d * (k - 1) == 2 * p for k, p, d in zip((kh, kw), padding, dilation)
    ):
        return "same"
    if (kh, kw) == (3, 3) and stride == (2, 2) and padding == (1, 1) and dilation == (1, 1):
        return "poly2"
    return None


def _use_lane_weight_grad(cpi, cpo, kh, kw, stride, padding, dilation, H, W, itemsize):
    """The output-channel-lane weight gradient (`tapconv.lane_weight_grad`) for 3x3 /
    pad 1 convs, stride 1 or 2, with >= 32 output channels per group (whole vectors)
    whose zero-bordered input planes of one image and group are small (L1-sized at
    stride 1; stride 2 does 1/4 of the FMAs per copied value but still won at 115 KB).
    Measured (2 threads, float32, ms, interleaved runs; old path -> lanes): stride 1:
    dense 32->32 16x16 batch 64 2.5 -> 1.7, 32->32 8x8 1.4 -> 0.56, 64->64 8x8 (BLAS)
    2.0 -> 1.8, ResNeXt 32x32d 7x7 batch 4 2.8 -> 1.2, 16 groups of 32 at 14x14 5.0 ->
    2.9; but 64->64 16x16 (83 KB of planes) 6.2 -> 6.6, 16->16 32x32 (one vector of
    channels: twice the copying per FMA) 1.8 -> 2.4, 64->64 56x56 9.8 -> 11.1. Stride 2:
    16->32 32x32 batch 64 3.1 -> 1.6, 32->64 16x16 2.8 -> 1.4, 32x32d 14x14 batch 4 4.8
    -> 1.8, 16 groups of 32 at 28x28 7.8 -> 4.6; but 64->128 56x56 (860 KB) 5.9 -> 8.2."""
    if stride not in ((1, 1), (2, 2)):
        return False
    scratch = cpi * (H + 2) * (W + 2) * itemsize
    return (
        (kh, kw) == (3, 3)
        and padding == (1, 1)
        and dilation == (1, 1)
        and cpo >= 32
        and cpi * 9 <= _TAPCONV_MAX_WORK
        and scratch <= (48 if stride == (1, 1) else 128) * 1024
    )


# The masked direct weight-gradient kernel (`_same3x3_bwd_weight_task`) is used for
# 3x3 / stride 1 / pad 1 convs with at most this many input channels per group.
# (Its forward twin was replaced by the tap table, which keeps the accumulators in
# registers; for the weight gradient the masked dot products already do, and a
# register-blocked 2 x 9-tap version measured 1.1-1.2x slower.) Measured
# (1 thread, float32, batch 8, fwd / bwd-input / bwd-weight ms, tile -> masked):
# 32x4d conv2 6.0/6.1/4.8 -> 4.9/4.8/3.6, 32x8d conv3 4.5/4.5/4.9 -> 3.8/3.5/2.8,
# 8x14d 12.0/12.3/11.6 -> 11.8/11.9/11.4 (with 14 channels per group the tile copy is
# already amortised). Session 2, 2 threads, fwd+bwd total, limit 16 -> 32: 4x24d 20.3 ->
# 18.9 ms, 8x28d 16.0 -> 13.0 ms, dense 32->32 16x16 batch 64 9.4 -> 7.5 ms (also
# better than im2col + BLAS, 8.5 ms). Dense 64 -> 64 at 8x8 direct: 14.9 ms vs 6.5 ms
# with BLAS. Wider groups go to BLAS (`_DIRECT_MAX_WORK`, `_DIRECT_MAX_DENSE`).
_SAME3X3_MAX_CPI = 32


def _use_same3x3(cpi, kh, kw, stride, padding, dilation):
    return (
        cpi <= _SAME3X3_MAX_CPI
        and (kh, kw) == (3, 3)
        and stride == (1, 1)
        and padding == (1, 1)
        and dilation == (1, 1)
    )


@functools.lru_cache(maxsize=64)
def _tap_masks(H, W):
    """uint8 (9 * H*W,): mk[kh*3 + kw, oh*W + ow] = 1 if input pixel (oh+kh-1, ow+kw-1)
    is inside the image. Cached per (H, W)."""
    oh, ow = np.divmod(np.arange(H * W), W)
    rows = [oh >= 1, np.ones(H * W, bool), oh < H - 1]
    cols = [ow >= 1, np.ones(H * W, bool), ow < W - 1]
    return np.stack([r & c for r in rows for c in cols]).astype(np.uint8).reshape(-1)


# --------------------------------------------------------------------------- paths
#
# Which algorithm computes a pass. Every path sums the same products as the reference's
# im2col + GEMM - the zero padding included (0 * inf = NaN at a padded tap of an inf
# weight or grad_out, as in the reference and PyTorch's float64 convolution) - with two
# exceptions that the entry points below route around, so that NaN and inf come out
# exactly where the reference has them:
#
# * The fast kernels may multiply *weights* by zeros that are not in the reference's
#   sum: the input gradient at stride 1 is a forward conv of grad_out padded by
#   d*(k-1) - p (the reference's col2im adds nothing there), masked tap-table taps,
#   junk columns of the tile kernels; and the depthwise forward skips the padded kernel
#   rows. With finite weights every such term is 0 * w = 0 and changes nothing, so
#   non-finite weights (checked on the weights, which are small) take the GEMM path.
# * The weight-gradient kernels may multiply grad_out's zero junk columns by real
#   pixels (an inf pixel makes a NaN), subtract wrapped-around terms (inf - inf), or
#   skip padded taps. Any non-finite input that reaches the weight gradient makes it
#   non-finite, so a non-finite result (checked on the small gradient) is recomputed on
#   the GEMM path; finite results are exact as they are.

_GEMM_PATHS = ("pointwise_gemm", "im2col_gemm", "col2im_gemm")


def _forward_path(cpi, cpo, kh, kw, stride, padding, dilation, groups):
    """Forward algorithm: "tap_same" / "tap_poly2" (tapconv.py), "depthwise3x3"
    (depthwise.py), "direct" (tile kernels), "pointwise_gemm" (1x1: the input is the
    column matrix) or "im2col_gemm"."""
    tap = _tapconv_geometry(cpi, cpo, kh, kw, stride, padding, dilation)
    if tap is not None:
        return "tap_" + tap
    if _use_direct(cpi, cpo, kh, kw, groups, stride):
        return "depthwise3x3" if _is_dw3x3(cpi, kh, kw, stride, padding, dilation) else "direct"
    return "pointwise_gemm" if _is_pointwise(kh, kw, stride, padding) else "im2col_gemm"


def _backward_input_path(cpi, cpo, kh, kw, stride, padding, dilation, groups):
    """Input-gradient algorithm: "transposed:<forward path>" (stride 1: the forward conv
    of grad_out with transposed, flipped weights and padding d*(k-1) - p), "tap_stride2"
    (`stride2_backward_input`), "direct_scatter" (tile kernels) or "col2im_gemm"."""
    direct = _use_direct(cpi, cpo, kh, kw, groups, stride)
    q = tuple(d * (k - 1) - p for k, p, d in zip((kh, kw), padding, dilation))
    if stride == (1, 1) and (min(q) >= 0 or direct):
        # a negative padding (a crop) only the direct kernels take
        return "transposed:" + _forward_path(cpo, cpi, kh, kw, stride, q, dilation, groups)
    if _tapconv_geometry(cpo, cpi, kh, kw, stride, padding, dilation) == "poly2":
        return "tap_stride2"
    return "direct_scatter" if direct else "col2im_gemm"


def _backward_weight_path(cpi, cpo, kh, kw, stride, padding, dilation, groups, H, W, itemsize):
    """Weight-gradient algorithm: "lane" (`lane_weight_grad`), "depthwise3x3",
    "same3x3_masked", "direct" (tile kernels), "pointwise_gemm" or "im2col_gemm"."""
    geom = (kh, kw, stride, padding, dilation)
    if _use_lane_weight_grad(cpi, cpo, *geom, H, W, itemsize):
        return "lane"
    if _use_direct(cpi, cpo, kh, kw, groups, stride):
        if _is_dw3x3(cpi, *geom):
            return "depthwise3x3"
        return "same3x3_masked" if _use_same3x3(cpi, *geom) else "direct"
    return "pointwise_gemm" if _is_pointwise(kh, kw, stride, padding) else "im2col_gemm"


def conv_paths(x_shape, weight_shape, stride, padding, dilation, groups, dtype=np.float32):
    """{"forward", "backward_input", "backward_weight"} -> the algorithm each pass of
    this conv takes with finite weights (for tests and benchmarks; see `_forward_path`
    etc.). Non-finite weights / weight gradients go to the GEMM paths."""
    _, _, H, W = (int(v) for v in x_shape)
    cout, cpi, kh, kw = (int(v) for v in weight_shape)
    s, p, d = _pair(stride), _pair(padding), _pair(dilation)
    cpo = cout // groups
    return {
        "forward": _forward_path(cpi, cpo, kh, kw, s, p, d, groups),
        "backward_input": _backward_input_path(cpi, cpo, kh, kw, s, p, d, groups),
        "backward_weight": _backward_weight_path(
            cpi, cpo, kh, kw, s, p, d, groups, H, W, np.dtype(dtype).itemsize
        ),
    }


def _all_finite(a):
    """True if `a` holds no NaN or inf (see the top of this section for why it matters)."""
    return bool(np.isfinite(a).all())


# --------------------------------------------------------------------------- entry points


def conv2d_forward(x, weight, bias, stride, padding, dilation, groups):
    x = np.ascontiguousarray(x)
    weight = np.ascontiguousarray(weight, dtype=x.dtype)
    return _forward(x, weight, bias, _pair(stride), _pair(padding), _pair(dilation), groups)


def _forward(x, weight, bias, stride, padding, dilation, groups, finite_weight=None):
    """conv2d_forward on contiguous x and weight (weight in x's dtype); `finite_weight`
    when the caller already knows."""
    dt = x.dtype
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    groups = int(groups)
    N, C, H, W = x.shape
    Cout, cpi, KH, KW = weight.shape
    cpo = Cout // groups
    Ho, Wo = _out_size(H, KH, sh, ph, dh), _out_size(W, KW, sw, pw, dw)
    P = Ho * Wo
    x3 = x.reshape(N, C, H * W)
    path = _forward_path(cpi, cpo, KH, KW, stride, padding, dilation, groups)
    if path not in _GEMM_PATHS and not (finite_weight or _all_finite(weight)):
        path = "im2col_gemm"
    if path == "tap_same":
        geom = ("same", H, W, KH, KW, ph, pw, dh, dw)
        return tap_conv(x3, weight, bias, groups, geom).reshape(N, Cout, Ho, Wo)
    if path == "tap_poly2":
        xp = polyphase(x).reshape(N, C, -1)
        return tap_conv(xp, weight, bias, groups, ("poly2", Ho, Wo)).reshape(N, Cout, Ho, Wo)
    if path in ("depthwise3x3", "direct"):
        b = np.zeros(Cout, dt) if bias is None else np.ascontiguousarray(bias, dtype=dt)
        out = np.empty((N, Cout, P), dtype=dt)
        if path == "depthwise3x3":
            parallel_for(dw3x3_range, N * groups, x3, weight, b, out, H, W, groups)
            return out.reshape(N, Cout, Ho, Wo)
        R = _rows_per_chunk(min(cpo, 4), _wq(Wo, KW, sw, dw), dt.itemsize)
        geom = (H, W, Ho, Wo, groups, sh, sw, ph, pw, dh, dw, R)
        parallel_for(_direct_fwd_range, N * groups, x3, weight, b, out, *geom)
        return out.reshape(N, Cout, Ho, Wo)

    Kg = cpi * KH * KW
    out = np.empty((N, groups, cpo, P), dtype=dt)
    a = weight.reshape(groups, cpo, Kg)
    if _is_pointwise(KH, KW, stride, padding):
        _gemm_images(a, x3.reshape(N, groups, Kg, P), out)
    else:
        _im2col_gemm(x3, a, out, (H, W, KH, KW, Ho, Wo, sh, sw, ph, pw, dh, dw))
    out = out.reshape(N, Cout, Ho, Wo)
    if bias is not None:
        out += np.asarray(bias, dtype=dt).reshape(1, Cout, 1, 1)
    return out


def _transposed_flipped(weight, groups):
    """(C_out, C_in/g, kH, kW) -> (C_in, C_out/g, kH, kW): per group, input and output
    channels swapped and the kernel rotated by 180 degrees (the weights whose stride-1
    forward conv of grad_out is grad_x)."""
    Cout, cpi, KH, KW = weight.shape
    cpo = Cout // groups
    wf = weight.reshape(groups, cpo, cpi, KH, KW)[:, :, :, ::-1, ::-1]
    return np.ascontiguousarray(wf.transpose(0, 2, 1, 3, 4)).reshape(groups * cpi, cpo, KH, KW)


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
    geom = ((sh, sw), (ph, pw), (dh, dw))
    path = _backward_input_path(cpi, cpo, KH, KW, *geom, groups)
    if path != "col2im_gemm" and not _all_finite(weight):
        path = "col2im_gemm"
    if path.startswith("transposed:"):
        # stride 1: grad_x is the forward conv of grad_out with the per-group transposed,
        # flipped weights and padding d*(k-1) - p, and the forward's dispatch picks the
        # kernel (tap table, depthwise, direct, or per-image im2col + GEMM kept in cache:
        # no column-gradient buffer, no col2im)
        wf = _transposed_flipped(weight, groups)
        q = (dh * (KH - 1) - ph, dw * (KW - 1) - pw)
        return _forward(grad_out, wf, None, (1, 1), q, (dh, dw), groups, finite_weight=True)
    if path == "tap_stride2":
        return stride2_backward_input(grad_out, weight, groups, H, W)
    gx = np.empty((N, C, H * W), dtype=dt)
    if path == "direct_scatter":
        R = _rows_per_chunk(cpo, _wq(Wo, KW, sw, dw), dt.itemsize)
        args = (H, W, Ho, Wo, groups, sh, sw, ph, pw, dh, dw, R)
        parallel_for(_direct_bwd_input_range, N * groups, go3, weight, gx, *args)
        return gx.reshape(N, C, H, W)
    # col2im_gemm: column gradients W^T @ grad_out per image, added back onto the pixels
    Kg = cpi * KH * KW
    wT = weight.reshape(groups, cpo, Kg).transpose(0, 2, 1)
    gcols = workspace("gcols", N * C * KH * KW * P, dt).reshape(N, groups, Kg, P)
    _gemm_images(wT, go3.reshape(N, groups, cpo, P), gcols)
    args = (H, W, KH, KW, Ho, Wo, sh, sw, ph, pw, dh, dw)
    parallel_for(_col2im, N * C, gcols.reshape(N, C * KH * KW, P), gx, *args)
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
    geom = ((sh, sw), (ph, pw), (dh, dw))
    path = _backward_weight_path(cpi, cpo, KH, KW, *geom, groups, H, W, dt.itemsize)
    if path not in _GEMM_PATHS:
        wshape = (Cout, cpi, KH, KW)
        gw = _fast_weight_grad(path, x3, go3, wshape, groups, H, W, Ho, Wo, *geom)
        if _all_finite(gw):
            return gw
        path = "pointwise_gemm" if _is_pointwise(KH, KW, (sh, sw), (ph, pw)) else "im2col_gemm"
    Kg = cpi * KH * KW
    go4 = go3.reshape(N, groups, cpo, P)
    if path == "pointwise_gemm":
        gw = _gemm_weight_grad(go4, x3.reshape(N, groups, Kg, P))
    else:  # per-image-block im2col next to its GEMM
        gw = _gemm_weight_grad(go4, None, x3, (H, W, KH, KW, Ho, Wo, sh, sw, ph, pw, dh, dw))
    return gw.reshape(Cout, cpi, KH, KW)


def _fast_weight_grad(path, x3, go3, wshape, groups, H, W, Ho, Wo, stride, padding, dilation):
    """The weight gradient on the non-GEMM paths of `_backward_weight_path`."""
    N = x3.shape[0]
    dt = x3.dtype
    Cout, cpi, KH, KW = wshape
    cpo = Cout // groups
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    if path == "lane":
        return lane_weight_grad(x3, go3, cpi, groups, H, W, sh)
    part = np.empty((N, Cout, cpi, KH, KW), dtype=dt)  # per-(image, group) partials
    if path == "depthwise3x3":
        parallel_for(dw3x3_bwd_weight_range, N * groups, x3, go3, part, H, W, groups, dt.type(0))
    elif path == "same3x3_masked":
        R = _balanced_rows(_rows_per_chunk(min(cpo, 4), W, dt.itemsize), H)
        args = (part, _tap_masks(H, W), H, W, groups, R, dt.type(0))
        xf, gf = x3.reshape(N, -1), go3.reshape(N, -1)
        parallel_for(_same3x3_bwd_weight_range, N * groups, xf, gf, *args)
    else:
        R = _rows_per_chunk(min(cpo, 4), _wq(Wo, KW, sw, dw), dt.itemsize)
        args = (H, W, Ho, Wo, groups, sh, sw, ph, pw, dh, dw, R, dt.type(0))
        parallel_for(_direct_bwd_weight_range, N * groups, x3, go3, part, *args)
    return part.sum(axis=0)  # image order: fixed
