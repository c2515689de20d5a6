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
* **Masked 3x3 weight gradient** (`_same3x3_bwd_weight_task`): dot products read
  straight from x at flat offsets under per-tap validity masks (`_tap_masks`; AVX-512
  masked loads), no tile.

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
from .simd import VECTOR_BYTES

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


# ---------------------------------------------------------- direct, 3x3 / stride 1 / pad 1
# The weight gradient of the grouped / small dense 3x3 "same" conv straight from x and
# grad_out: no padded tile, no junk columns (the tile kernel's fill cost ~1/3 of its
# time, PERFLOG.md). Each plane is one flat loop over p = oh*W + ow with tap (kh, kw) at
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
                if ob + 4 <= oe and VECTOR_BYTES >= 64:
                    # kernel rows 0 and 1 of 4 outputs in one pass (24 accumulators: only
                    # with AVX-512's 32 vector registers; they spill on AVX2's 16)
                    t0 = cb - uW - u64(1)
                    e0 = u64((co0 + ob) * HW) + p0
                    _dotsm_6x4(pn, gn, e0, urs, src, t0, uW, mk, p0, urs, co0 + ob, c, 0, uln, zero)
                for kh in range(3):
                    t0 = cb + u64(kh) * uW - uW - u64(1)
                    m0 = u64(3 * kh * HW) + p0
                    o = ob
                    if o + 4 <= oe and kh < 2 and VECTOR_BYTES >= 64:
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
# channel's rows past 24 dot-product accumulators held in registers; a block pays 24
# horizontal sums per input channel and, when its pixels are not a whole number of
# vectors, a scalar remainder loop. 32 KB blocks measured faster than 24 KB on every
# geometry tried (ms, float32, 2 threads, interleaved, 2026-12-03 session 7; rows per
# block 19 -> 28 at 56x56): 8x14d 56x56 batch 8 4.94 -> 4.65, 32x4d 1.58 -> 1.49, 4x24d
# 5.84 -> 5.21; the whole 56-row plane (50 KB) was slower again (5.58 for 8x14d).
_SAME3X3_BLOCK_BYTES = 32 * 1024


def _balanced_rows(r, h):
    """Rows per chunk <= r that split h rows into equal chunks (56 rows at r = 27:
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


def _tile_args(g: ConvGeometry, R: int) -> tuple:
    """The geometry record of the tile kernels, a tuple of 12 ints that their range
    kernels unpack: H, W, Ho, Wo, G, sh, sw, ph, pw, dh, dw, R (rows per block)."""
    geo = (g.h, g.w, g.ho, g.wo, g.groups, *g.stride, *g.padding, *g.dilation, R)
    return tuple(int(v) for v in geo)


# --------------------------------------------------------------------------- drivers


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
        R = _rows_per_chunk(min(g.cpo, 4), g.w, dt.itemsize, _SAME3X3_BLOCK_BYTES)
        R = _balanced_rows(R, g.h)
        args = (part, _tap_masks(g.h, g.w), g.h, g.w, g.groups, R, dt.type(0))
        xf, gf = x3.reshape(g.n, -1), go3.reshape(g.n, -1)
        parallel_for(_same3x3_bwd_weight_range, ntasks, xf, gf, *args)
    elif alg == Algorithm.DIRECT:
        R = _rows_per_chunk(min(g.cpo, 4), _wq(g.wo, g.kw, g.stride[1], g.dilation[1]), dt.itemsize)
        parallel_for(_direct_bwd_weight_range, ntasks, x3, go3, part, _tile_args(g, R), dt.type(0))
    else:
        raise ValueError(f"not a direct weight-gradient algorithm: {alg}")
    return part.sum(axis=0)  # image order: fixed
