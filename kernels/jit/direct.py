"""Direct conv kernels: zero-padded polyphase tiles, and masked 3x3 weight gradients.

Used by `conv.py` for the plans (planner.py) `DIRECT` (forward, weight gradient),
`DIRECT_SCATTER` (strided input gradient), `SAME3X3_MASKED` (3x3 / stride 1 / pad 1
weight gradient) and, through `depthwise.py`'s plane kernels, `DEPTHWISE3X3`: grouped
and depthwise convs whose per-group GEMM is tiny (M = 4, K = 36 for ResNeXt 32x4d), and
the geometries the tap table (`tapconv.py`) does not take (dilation, 5x5 at stride 2,
crops, depthwise stride 2...).

* **Tile kernels** (`_direct_fwd_task`, `_direct_bwd_input_task`,
  `_direct_bwd_weight_task`): one task per (image, group), all tasks in one parallel
  call. A task copies its group's input planes into a zero-padded *polyphase* tile
  (`_fill_poly`; for stride 1 just the padded plane with rows `Wq` wide), so every kernel
  tap is a *constant offset* along one flat loop over output positions, for any stride
  and dilation (outputs are computed on rows `Wq` wide; the extra columns are junk that
  is never copied out). The inner loops take flat arrays and unsigned offsets, keep 4
  output channels of a block and 3 taps of a kernel row in one pass (each input load
  feeds 12 FMAs). Work is blocked by groups of output rows so the accumulators stay in
  L1. Strided input gradients scatter-add into a polyphase gradient tile. The weight
  gradient is a set of dot products (4 outputs x 3 taps per pass) into per-(image,
  group) partial results summed afterwards in image order.
* **Masked 3x3 weight gradient** (`_same3x3_bwd_weight_task`, 64-byte vectors): dot
  products read straight from x at flat offsets under per-tap lane masks
  (`_masked_tables`; AVX-512 masked loads), no tile, written with explicit SIMD.

No two tasks ever write the same memory, so results are bit-identical for any thread
count.
"""

from __future__ import annotations

import functools

import numpy as np
from numba import uint64 as u64

from ._numba import FASTMATH, jit, parallel_for
from .depthwise import dw3x3_bwd_weight_range, dw3x3_range
from .planner import Algorithm, ConvGeometry
from .simd import lanes, vadd, vbcast, vfma, vload, vloadm, vstorem, vunziphi, vunziplo
from .tapconv import TapGeometry, tap_table

# --------------------------------------------------------------------------- tiles


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
def _direct_fwd_range(t0, t1, x, w, b, out, geo):
    """Forward tasks [t0, t1); geo = `_tile_args` (12 ints)."""
    H, W, Ho, Wo, G, sh, sw, ph, pw, dh, dw, R = geo
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
def _direct_bwd_input_range(t0, t1, go, w, gx, geo):
    """Input-gradient tasks [t0, t1); geo = `_tile_args` (12 ints)."""
    H, W, Ho, Wo, G, sh, sw, ph, pw, dh, dw, R = geo
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
def _direct_bwd_weight_range(t0, t1, x, go, part, geo, zero):
    """Weight-gradient tasks [t0, t1); geo = `_tile_args` (12 ints)."""
    H, W, Ho, Wo, G, sh, sw, ph, pw, dh, dw, R = geo
    for t in range(t0, t1):
        _direct_bwd_weight_task(t, x, go, part, H, W, Ho, Wo, G, sh, sw, ph, pw, dh, dw, R, zero)


# ---------------------------------------------------------- masked, 3x3 / stride 1 / pad 1
# The masked 3x3 weight gradient (`SAME3X3_MASKED`, 64-byte vectors): for one (image,
# group) task, every weight gradient of the group is a dot product over the output plane
#
#     dw[o, c, kh, kw] = sum_p grad_out[o, p] * x[c, p + (kh - 1) * W + (kw - 1)]
#
# read straight from x, the taps that fall outside the image masked off (the tap table of
# the "same" conv, `tapconv.tap_table`: one bit mask a vector and tap). A pass holds 4
# output channels x 6 taps (kernel rows 0-1 of one input channel, or row 2 of two: 24
# accumulators of 32 vector registers) over a block of vectors of the plane; each x
# vector feeds 4 FMAs and each grad_out vector 6. The accumulators are then summed across
# their lanes together, a tree of `_pair_sums` (vector i of 8 -> lane i of one vector: ~3
# instructions a dot product instead of LLVM's ~9 for each on its own), into the task's
# partial results, laid out in the passes' order (`_SLOTS` a block of 4 output channels
# and one input channel) and put in weight order by `masked_weight`.

_SLOTS = 36  # 4 output channels x 9 taps: 24 of kernel rows 0-1 then 12 of row 2


@jit(fastmath=FASTMATH)
def _fma6(acc, f, xs):
    return (
        vfma(f, xs[0], acc[0]),
        vfma(f, xs[1], acc[1]),
        vfma(f, xs[2], acc[2]),
        vfma(f, xs[3], acc[3]),
        vfma(f, xs[4], acc[4]),
        vfma(f, xs[5], acc[5]),
    )


@jit(fastmath=FASTMATH)
def _pair_sums(a, b):
    """[a0+a1, a2+a3, ..., b0+b1, b2+b3, ...]: one level of the lane-sum tree."""
    return vadd(vunziplo(a, b), vunziphi(a, b))


@jit(fastmath=FASTMATH)
def _sum8(v):
    """8 vectors of 8 or 16 lanes -> one whose lanes hold their sums: lane i the sum of
    v[i] with 8 lanes; lanes 2i and 2i + 1 the two halves of v[i]'s with 16."""
    p0 = _pair_sums(v[0], v[1])
    p1 = _pair_sums(v[2], v[3])
    p2 = _pair_sums(v[4], v[5])
    p3 = _pair_sums(v[6], v[7])
    return _pair_sums(_pair_sums(p0, p1), _pair_sums(p2, p3))


@jit(fastmath=FASTMATH)
def _add4(pn, s, v, z, L):
    """pn[s + i] += the sum of v[i]'s lanes for 4 vectors v of L = 4, 8 or 16 lanes."""
    if L == 4:  # two levels of the tree: lane i is v[i]'s sum
        t = _pair_sums(_pair_sums(v[0], v[1]), _pair_sums(v[2], v[3]))
    else:  # the tree of 8 with zero vectors in the other four places
        t = _sum8((v[0], v[1], v[2], v[3], z, z, z, z))
        if L == 16:
            t = _pair_sums(t, t)
    m = (1 << 4) - 1
    vstorem(pn, s, vadd(vloadm(pn, s, m), t), m)


@jit(fastmath=FASTMATH)
def _add_sums(pn, s, v, z, L):
    """pn[s + i] += the sum of v[i]'s lanes for the 8 vectors v of L lanes."""
    if L == 4:
        _add4(pn, s, v[:4], z, L)
        _add4(pn, s + 4, v[4:], z, L)
        return
    t = _sum8(v)
    if L == 16:
        t = _pair_sums(t, t)
    m = (1 << 8) - 1
    vstorem(pn, s, vadd(vloadm(pn, s, m), t), m)


@jit(fastmath=FASTMATH, inline="always")
def _tap(sn, i, toff, mt, v, k, kmask, plain):
    """x's tap k at vector v (i = the channel's base + v * L): under mt[v, k], or under
    mt[v, kmask] (the tap's column mask) where the vector is `plain` - all its pixels
    real and the tap's kernel row inside the image - and without a mask for kw = 1 there.
    (Masked loads cost ALU work plain ones do not: `_masked_pass6`.)"""
    if not plain:
        return vloadm(sn, i + toff[k], mt[v, k])
    if kmask < 0:
        return vload(sn, i + toff[k])
    return vloadm(sn, i + toff[k], mt[v, kmask])


@jit(fastmath=FASTMATH, inline="always")
def _grad_rows(gn, e, ge, mt, v, plain):
    """The 4 grad_out vectors at flat offsets e + ge[o] (masked past the plane's end)."""
    if plain:
        return (vload(gn, e + ge[0]), vload(gn, e + ge[1]), vload(gn, e + ge[2]),
                vload(gn, e + ge[3]))  # fmt: skip
    m = mt[v, 9]
    return (vloadm(gn, e + ge[0], m), vloadm(gn, e + ge[1], m), vloadm(gn, e + ge[2], m),
            vloadm(gn, e + ge[3], m))  # fmt: skip


@jit(fastmath=FASTMATH, inline="always")
def _step6(acc, sn, gn, xb, eb, ge, toff, mt, v, L, plain):
    """acc[o][k] += grad_out row o x tap k (k = 0..5) at vector v."""
    i = xb + v * L
    xs = (
        _tap(sn, i, toff, mt, v, 0, 3, plain),
        _tap(sn, i, toff, mt, v, 1, -1, plain),
        _tap(sn, i, toff, mt, v, 2, 5, plain),
        _tap(sn, i, toff, mt, v, 3, 3, plain),
        _tap(sn, i, toff, mt, v, 4, -1, plain),
        _tap(sn, i, toff, mt, v, 5, 5, plain),
    )
    f = _grad_rows(gn, eb + v * L, ge, mt, v, plain)
    return (_fma6(acc[0], f[0], xs), _fma6(acc[1], f[1], xs), _fma6(acc[2], f[2], xs),
            _fma6(acc[3], f[3], xs))  # fmt: skip


@jit(fastmath=FASTMATH, inline="always")
def _step3(acc, sn, gn, xb, cs, eb, ge, toff, mt, v, L, plain):
    """acc[o][j] += grad_out row o x tap 6 + j % 3 (kernel row 2) of the channel at xb
    (j < 3) and of the one cs after it (j >= 3), at vector v."""
    i = xb + v * L
    xs = (
        _tap(sn, i, toff, mt, v, 6, 3, plain),
        _tap(sn, i, toff, mt, v, 7, -1, plain),
        _tap(sn, i, toff, mt, v, 8, 5, plain),
        _tap(sn, i + cs, toff, mt, v, 6, 3, plain),
        _tap(sn, i + cs, toff, mt, v, 7, -1, plain),
        _tap(sn, i + cs, toff, mt, v, 8, 5, plain),
    )
    f = _grad_rows(gn, eb + v * L, ge, mt, v, plain)
    return (_fma6(acc[0], f[0], xs), _fma6(acc[1], f[1], xs), _fma6(acc[2], f[2], xs),
            _fma6(acc[3], f[3], xs))  # fmt: skip


@jit(fastmath=FASTMATH, inline="always")
def _masked_pass6(pn, s, sn, gn, xb, eb, ge, toff, mt, v0, v1, va, vb, L, z):
    """pn[s + o*6 + k] += the dot products of 4 grad_out rows (eb + ge[o]) with x's
    taps k = 0..5 (kernel rows 0 and 1) of the channel at xb, over vectors [v0, v1);
    [va, vb) are the `plain` ones (`_tap`).

    Offsets are unsigned (no negative-index test per access): toff[k] is tap k's offset
    plus W + 1 and xb is the channel's start minus W + 1 (wrapping), mt[v, k] tap k's
    lane mask at vector v and mt[v, 9] grad_out's (the real pixels). A masked load costs
    ALU work (Zen 4: ~13% of this loop's time when every load was masked), so the vectors
    inside the plane load grad_out and the kw = 1 taps without masks."""
    z6 = (z, z, z, z, z, z)
    acc = (z6, z6, z6, z6)
    va = max(v0, min(va, v1))
    vb = max(va, min(vb, v1))
    for v in range(v0, va):
        acc = _step6(acc, sn, gn, xb, eb, ge, toff, mt, v, L, False)
    for v in range(va, vb):
        acc = _step6(acc, sn, gn, xb, eb, ge, toff, mt, v, L, True)
    for v in range(vb, v1):
        acc = _step6(acc, sn, gn, xb, eb, ge, toff, mt, v, L, False)
    a0, a1, a2, a3 = acc
    _add_sums(pn, s, (a0[0], a0[1], a0[2], a0[3], a0[4], a0[5], a1[0], a1[1]), z, L)
    _add_sums(pn, s + 8, (a1[2], a1[3], a1[4], a1[5], a2[0], a2[1], a2[2], a2[3]), z, L)
    _add_sums(pn, s + 16, (a2[4], a2[5], a3[0], a3[1], a3[2], a3[3], a3[4], a3[5]), z, L)


@jit(fastmath=FASTMATH, inline="always")
def _add_sums12(pn, s, v, z, L):
    """pn[s + i] += the sum of v[i]'s lanes for 12 vectors v."""
    _add_sums(pn, s, v[:8], z, L)
    _add4(pn, s + 8, v[8:], z, L)


@jit(fastmath=FASTMATH, inline="always")
def _masked_pass3(pn, s, s2, sn, gn, xb, cs, eb, ge, toff, mt, v0, v1, va, vb, L, z):
    """`_masked_pass6` for taps 6..8 (kernel row 2) of two input channels, the one at xb
    and the one cs after it: pn[s + o*3 + k - 6] and pn[s2 + o*3 + k - 6]. (Two, so that
    each x vector feeds 4 FMAs and each grad_out vector 6, as in `_masked_pass6`; for
    the last of an odd count, cs = 0 and s2 = s: the same channel twice, added once.)"""
    z6 = (z, z, z, z, z, z)
    acc = (z6, z6, z6, z6)
    va = max(v0, min(va, v1))
    vb = max(va, min(vb, v1))
    for v in range(v0, va):
        acc = _step3(acc, sn, gn, xb, cs, eb, ge, toff, mt, v, L, False)
    for v in range(va, vb):
        acc = _step3(acc, sn, gn, xb, cs, eb, ge, toff, mt, v, L, True)
    for v in range(vb, v1):
        acc = _step3(acc, sn, gn, xb, cs, eb, ge, toff, mt, v, L, False)
    a0, a1, a2, a3 = acc
    first = (a0[0], a0[1], a0[2], a1[0], a1[1], a1[2], a2[0], a2[1], a2[2], a3[0], a3[1], a3[2])
    _add_sums12(pn, s, first, z, L)
    if s2 != s:
        second = (a0[3], a0[4], a0[5], a1[3], a1[4], a1[5], a2[3], a2[4], a2[5], a3[3], a3[4],
                  a3[5])  # fmt: skip
        _add_sums12(pn, s2, second, z, L)


@jit(fastmath=FASTMATH)
def _same3x3_bwd_weight_task(t, x, go, part, zero, toff, mt, P, W, G, cpi, cpo, VB, L):
    # x (N, C*P), go (N, Cout*P), part (N, G * nob * cpi * _SLOTS) fully overwritten:
    # task t = (image n, group g) writes its (nob, cpi, _SLOTS) block; zero (1,)
    n = t // G
    g = t - n * G
    nob = (cpo + 3) // 4
    sn = x[n]
    gn = go[n]
    pn = part[n]
    z = vbcast(zero, 0)
    base = g * nob * cpi * _SLOTS
    for i in range(nob * cpi * _SLOTS):
        pn[base + i] = zero[0]
    nv = mt.shape[0]
    uP = u64(P)
    uL = u64(L)
    # the plain vectors (`_tap`): rows 1.. for kernel rows 0-1, rows ..H-2 for row 2
    lo6, hi6 = u64((W + L - 1) // L), u64(P // L)
    hi3 = u64(max(0, P - W) // L)
    for v0 in range(0, nv, VB):
        v1 = min(nv, v0 + VB)
        for ob in range(nob):
            # a block's 4 grad_out rows; past cpo, the last real one again (not stored)
            o0 = g * cpo + ob * 4
            last = g * cpo + cpo - 1
            ge = (u64(0), u64(min(o0 + 1, last) - o0) * uP, u64(min(o0 + 2, last) - o0) * uP,
                  u64(min(o0 + 3, last) - o0) * uP)  # fmt: skip
            eb = u64(o0) * uP
            uv0, uv1 = u64(v0), u64(v1)
            for c in range(cpi):
                xb = u64((g * cpi + c) * P) - u64(W + 1)  # wraps for the first channel
                s = base + (ob * cpi + c) * _SLOTS
                _masked_pass6(pn, s, sn, gn, xb, eb, ge, toff, mt, uv0, uv1, lo6, hi6, uL, z)
            for c in range(0, cpi, 2):
                xb = u64((g * cpi + c) * P) - u64(W + 1)
                s = base + (ob * cpi + c) * _SLOTS + 24
                pair = c + 1 < cpi
                cs = uP if pair else u64(0)
                s2 = s + _SLOTS if pair else s
                _masked_pass3(pn, s, s2, sn, gn, xb, cs, eb, ge, toff, mt, uv0, uv1, u64(0), hi3,
                              uL, z)  # fmt: skip


@jit(nogil=True)
def _same3x3_bwd_weight_range(t0, t1, x, go, part, zero, toff, mt, P, W, G, cpi, cpo, VB, L):
    for t in range(t0, t1):
        _same3x3_bwd_weight_task(t, x, go, part, zero, toff, mt, P, W, G, cpi, cpo, VB, L)


# --------------------------------------------------------------------------- helpers


def _wq(wo, k, s, d):
    return ((wo - 1) * s + d * (k - 1)) // s + 1


def _rows_per_chunk(cpo, wq, itemsize, budget=24 * 1024):
    """Output rows per block: `cpo` accumulator rows of ~`budget` bytes (L1), at most 32
    rows.

    Called with the output-channel block size (min(C_out/groups, 4)) for the forward and
    weight-gradient kernels. Measured on the ResNeXt layers (PERFLOG.md): longer blocks
    spill the accumulators out of L1, shorter ones pay the fixed per-block cost (tap
    set-up, bias fill, copy-out) too often.
    """
    return max(1, min(32, budget // max(1, cpo * wq * itemsize)))


# The masked weight gradient streams its 4 grad_out rows (the budget) and one input
# channel's rows past 24 dot-product accumulators held in registers; a block pays 24 lane
# sums per input channel. 32 KB blocks measured faster than 24 KB on every geometry tried
# (ms, float32, 2 threads, interleaved, 2026-12-03 session 7, LLVM-vectorised version of
# the kernel; rows per block 19 -> 28 at 56x56): 8x14d 56x56 batch 8 4.94 -> 4.65, 32x4d
# 1.58 -> 1.49, 4x24d 5.84 -> 5.21; the whole 56-row plane (50 KB) was slower again
# (5.58 for 8x14d).
_SAME3X3_BLOCK_BYTES = 32 * 1024


def _balanced(r, h):
    """Items per chunk <= r that split h items into equal chunks (56 rows at r = 27:
    19 + 19 + 18, not 27 + 27 + 2)."""
    k = -(-h // max(1, r))
    return -(-h // k)


@functools.lru_cache(maxsize=64)
def _tap_masks(H, W):
    """uint8 (9 * H*W,): mk[kh*3 + kw, oh*W + ow] = 1 if input pixel (oh+kh-1, ow+kw-1)
    is inside the image. Cached per (H, W)."""
    oh, ow = np.divmod(np.arange(H * W), W)
    rows = [oh >= 1, np.ones(H * W, bool), oh < H - 1]
    cols = [ow >= 1, np.ones(H * W, bool), ow < W - 1]
    return np.stack([r & c for r in rows for c in cols]).astype(np.uint8).reshape(-1)


@functools.lru_cache(maxsize=64)
def _masked_tables(H: int, W: int, L: int):
    """The masked weight gradient's tables for an H x W plane in vectors of L lanes:
    mt uint32 (nv, 10) - columns 0..8 tap k's lane mask at vector v (`tap_table`), column
    9 the real pixels - and toff uint64 (9,), tap k's offset plus W + 1 (>= 0)."""
    toff, mk, valid = tap_table(TapGeometry.same(H, W, 3, 3, 1, 1, 1, 1), L, 1)
    mt = np.ascontiguousarray(np.concatenate([mk, valid[None]]).T)
    return mt, (toff + W + 1).astype(np.uint64)


def _tile_args(g: ConvGeometry, R: int) -> tuple:
    """The geometry record of the tile kernels, a tuple of 12 ints that their range
    kernels unpack: H, W, Ho, Wo, G, sh, sw, ph, pw, dh, dw, R (rows per block)."""
    geo = (g.h, g.w, g.ho, g.wo, g.groups, *g.stride, *g.padding, *g.dilation, R)
    return tuple(int(v) for v in geo)


# --------------------------------------------------------------------------- drivers


def masked_weight_grad_tasks(x3, go3, g: ConvGeometry):
    """The masked 3x3 weight gradient's set-up: (part, args) - task t < N * groups of
    `_same3x3_bwd_weight_task(t, *args)` writes image t // groups's partials of group
    t % groups into part (N, groups * ceil(cpo/4) * cpi * _SLOTS), for `masked_weight`.
    x3 (N, C_in, H*W), go3 (N, C_out, H*W) contiguous, one dtype."""
    dt = x3.dtype
    L = lanes(dt)
    mt, toff = _masked_tables(g.h, g.w, L)
    nv = mt.shape[0]
    vb = _balanced(max(1, _SAME3X3_BLOCK_BYTES // (4 * L * dt.itemsize)), nv)
    nob = -(-g.cpo // 4)
    part = np.empty((g.n, g.groups * nob * g.cpi * _SLOTS), dtype=dt)
    args = (x3.reshape(g.n, -1), go3.reshape(g.n, -1), part, np.zeros(1, dt), toff, mt,
            g.h * g.w, g.w, g.groups, g.cpi, g.cpo, vb, L)  # fmt: skip
    return part, args


def masked_weight(part, g: ConvGeometry):
    """`masked_weight_grad_tasks`' partials (N, ...) summed over the images in order and
    put in weight order: (C_out, C_in/groups, 3, 3)."""
    nob = -(-g.cpo // 4)
    s = part.sum(axis=0).reshape(g.groups, nob, g.cpi, _SLOTS)
    rows01 = s[..., :24].reshape(g.groups, nob, g.cpi, 4, 6)
    row2 = s[..., 24:].reshape(g.groups, nob, g.cpi, 4, 3)
    w = np.concatenate([rows01, row2], axis=-1).transpose(0, 1, 3, 2, 4)
    w = w.reshape(g.groups, nob * 4, g.cpi, 9)[:, : g.cpo]
    return np.ascontiguousarray(w.reshape(g.c_out, g.cpi, 3, 3))


def direct_forward(alg: Algorithm, x3, weight, bias, g: ConvGeometry):
    """Forward of `DIRECT` or `DEPTHWISE3X3`: x3 (N, C_in, H*W) contiguous, weight
    (C_out, C_in/groups, kH, kW) contiguous in x3's dtype, bias (C_out,) or None ->
    (N, C_out, Ho*Wo)."""
    dt = x3.dtype
    b = np.zeros(g.c_out, dt) if bias is None else np.ascontiguousarray(bias, dtype=dt)
    out = np.empty((g.n, g.c_out, g.ho * g.wo), dtype=dt)
    if alg == Algorithm.DEPTHWISE3X3:
        parallel_for(dw3x3_range, g.n * g.groups, x3, weight, b, out, g.h, g.w, g.groups)
        return out
    R = _rows_per_chunk(min(g.cpo, 4), _wq(g.wo, g.kw, g.stride[1], g.dilation[1]), dt.itemsize)
    parallel_for(_direct_fwd_range, g.n * g.groups, x3, weight, b, out, _tile_args(g, R))
    return out


def direct_backward_input(go3, weight, g: ConvGeometry):
    """Input gradient of `DIRECT_SCATTER`: go3 (N, C_out, Ho*Wo), weight (C_out,
    C_in/groups, kH, kW) -> (N, C_in, H*W)."""
    dt = go3.dtype
    gx = np.empty((g.n, g.c_in, g.h * g.w), dtype=dt)
    R = _rows_per_chunk(g.cpo, _wq(g.wo, g.kw, g.stride[1], g.dilation[1]), dt.itemsize)
    parallel_for(_direct_bwd_input_range, g.n * g.groups, go3, weight, gx, _tile_args(g, R))
    return gx


def direct_weight_grad(alg: Algorithm, x3, go3, g: ConvGeometry):
    """Weight gradient of `DEPTHWISE3X3`, `SAME3X3_MASKED` or `DIRECT`: x3 (N, C_in,
    H*W), go3 (N, C_out, Ho*Wo) -> (C_out, C_in/groups, kH, kW), per-image partials
    summed in image order (bit-identical for any thread count)."""
    dt = x3.dtype
    part = np.empty((g.n, g.c_out, g.cpi, g.kh, g.kw), dtype=dt)
    ntasks = g.n * g.groups
    if alg == Algorithm.DEPTHWISE3X3:
        parallel_for(dw3x3_bwd_weight_range, ntasks, x3, go3, part, g.h, g.w, g.groups, dt.type(0))
    elif alg == Algorithm.SAME3X3_MASKED:
        part, args = masked_weight_grad_tasks(x3, go3, g)
        parallel_for(_same3x3_bwd_weight_range, ntasks, *args)
        return masked_weight(part, g)
    elif alg == Algorithm.DIRECT:
        R = _rows_per_chunk(min(g.cpo, 4), _wq(g.wo, g.kw, g.stride[1], g.dilation[1]), dt.itemsize)
        parallel_for(_direct_bwd_weight_range, ntasks, x3, go3, part, _tile_args(g, R), dt.type(0))
    else:
        raise ValueError(f"not a direct weight-gradient algorithm: {alg}")
    return part.sum(axis=0)  # image order: fixed
