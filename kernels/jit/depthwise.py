"""Depthwise 3x3 / stride 1 / pad 1 conv kernels: masked flat loops, no border passes.

Drop-in replacements for `conv._dw3x3_range` / `conv._dw3x3_bwd_weight_range` (same
signatures, same results up to float rounding; bit-identical for 1 or 2 threads since
every task writes only its own outputs):

    dw3x3_range(t0, t1, x, w, b, out, H, W, G)
        x (N, G, H*W), w (Cout, 1, 3, 3), b (Cout,), out (N, Cout, H*W); task t = n*G + g
        computes the cpo = Cout // G output planes of group g of image n. Also used for
        backward-input (grad_out with the 180-degree-flipped weights, zero bias).
    dw3x3_bwd_weight_range(t0, t1, x, go, part, H, W, G, zero)
        part (N, Cout, 1, 3, 3): per-(image, channel) weight-gradient partials, summed by
        the caller. `zero` is kept for signature compatibility (unused).
    Any H, W >= 1 and any channel multiplier cpo >= 1.

How (vs. conv.py's round-2 plane kernels, which run one flat 9-tap loop over the interior
and then recompute the first/last column of every row with scalar 6-tap formulas and
the first/last rows in separate passes): one sweep per plane. Forward: row 0 (kernel
rows 1, 2), rows 1..H-2 as ONE flat loop over p = oh*W + ow with all 9 taps at constant
offsets, row H-1 (kernel rows 0, 1) - memory is walked once, in order. The left/right
taps are loaded under a per-pixel column mask (`v = 0; if mk[p] & 1: v = src[...]`),
which LLVM turns into AVX-512 zero-masking loads (`vmovups mem, zmm{k}{z}`, a pure
load uop), so the wrapped-around neighbours at the first/last column read as 0 inside
the vector loop and no pixel is recomputed; a masked-off lane is never read, so flat
offsets before the plane / past its end are harmless (unsigned uint64 offsets: no
negative-index wrap checks). Weight gradient: the flat 9-accumulator pass over rows
1..H-2 first, then rows 0 and H-1 together in one 9-accumulator pass (one set of
horizontal reductions instead of two, and the plane is in L1 by then). Planes narrower
than one vector (3 <= W < 16) take `_dw_grad_plane_narrow` (conv.py's branch-free
algorithm): there the masked loops are nearly all scalar remainder code with
data-dependent branches (7x7: 1.2 vs 0.84 ms per pass).

Measurements (this machine: 2 cores, ~1 zmm FMA per cycle measured, so 9 FMAs per 16
outputs is the compute floor; float32, 1 thread, us per 56x56 plane in L1, forward /
weight gradient):
* runtime zero (the `zero` argument, as in conv.py): the masked loads compile to
  `vblendmps mem, zero{k}` (load + ALU uop): 0.86 / 1.00. Compile-time constant
  `np.float32(0.0)`: zero-masking loads, 0.78-0.80 / 0.80-0.86 (conv.py 0.77-0.87 /
  0.87-0.97). The float32 constant unifies to float64 in float64 kernels.
* one mask byte with two bits instead of two mask arrays: bwd-weight 1.42 -> 1.35 ms per
  pass; rows after the interior (not before) in the weight gradient: 28x28 0.95 -> 0.90.
Whole pass, 8x128x56x56 float32, ms fwd / bwd-input / bwd-weight (medians of 30-40,
old and new interleaved, 12:52 UTC, load ~0.7):
* 1 thread (time.thread_time): conv.py 1.35 / 1.40 / 1.47 -> 1.16 / 1.19 / 1.35
  (total 4.2 -> 3.7; torch channels_last 1.24 / 1.28 / 1.50).
* 2 threads via parallel_for (wall): 0.83 / 0.82 / 0.86 -> 0.72 / 0.73 / 0.815
  (total 2.50 -> 2.27; torch cl 0.66-0.69 / 0.70-0.74 / 0.74-0.85, ~2.1-2.2).
* 2 threads, the same range kernels under a numba prange driver (spinning OpenMP
  workers, ~0.25 us per call vs ~70 us for an empty parallel_for on this VM):
  fwd 0.53-0.61 (conv.py 0.63-0.66), bwd-weight 0.55-0.58 (conv.py 0.65-0.66) - i.e.
  the kernels beat torch; at 2 threads the remaining gap is the dispatch.
Other sizes, 1 thread, ms per pass fwd / bwd-input / bwd-weight, conv.py -> this file
(13:00 UTC): 28x28x256 0.90 / 0.91 / 0.90 -> 0.64 / 0.68 / 0.90; 14x14x512 0.68 / 0.69 /
0.79 -> 0.48-0.50 / 0.48-0.50 / 0.68; 7x7x1024 0.95 / 0.95 / 0.99 -> 0.53 / 0.54 / 0.84;
112x112x32 1.22 / 1.20 / 1.22 -> 1.09 / 1.15 / 1.22. (For the weight gradient the
branch-free narrow algorithm would also be ~5% faster at 28x28 and 112x112 but is 12-15%
slower at 56x56 and 7-9% slower at 32x32, so it is only used below one vector width.)
Tried and dropped: 4-output-row x 16-column register blocks (3 loads per 16 outputs
instead of 9): Numba/LLVM either fully unrolls the constant-16 loop and cannot
vectorize the masked edge blocks, or vectorizes with runtime alias checks per call;
15 ns per 64 outputs, no better than the flat loop (FMA-bound anyway). Index-predicated
top/bottom taps in one whole-plane loop: 1.37 vs 0.80 us. Software prefetch (llvm.prefetch
via an intrinsic, T0/T1, 1-12 KB ahead, with/without prefetchw on out): 5-25% slower.
Tree-shaped sums in the forward: no change. Merging the forward's first/last-row loops:
no change. Non-temporal stores: a C test on this machine saves ~20% on the write pass
(0.46 -> 0.36 ms, 2 threads) but the consumer's read-back then comes from DRAM (0.22 ->
0.42 ms): a net loss in training, not done.
"""

from __future__ import annotations

import numpy as np
from numba import uint64 as u64

from ._numba import FASTMATH, jit


@jit()
def _col_masks(H, W):
    """uint8 (H*W,): bit 0 = pixel has a left neighbour, bit 1 = has a right neighbour."""
    HW = H * W
    mk = np.full(HW, 3, np.uint8)
    for r in range(H):
        mk[r * W] &= 2
        mk[r * W + W - 1] &= 1
    return mk


@jit(fastmath=FASTMATH)
def _dw_fwd_plane(src, dst, mk, w, co, bias, H, W):
    """dst = depthwise 3x3 / stride 1 / pad 1 conv of one plane src (flat H*W), + bias."""
    zero = np.float32(0.0)  # compile-time constant: zero-masking loads (see module doc)
    w0 = w[co, 0, 0, 0]
    w1 = w[co, 0, 0, 1]
    w2 = w[co, 0, 0, 2]
    w3 = w[co, 0, 1, 0]
    w4 = w[co, 0, 1, 1]
    w5 = w[co, 0, 1, 2]
    w6 = w[co, 0, 2, 0]
    w7 = w[co, 0, 2, 1]
    w8 = w[co, 0, 2, 2]
    one = u64(1)
    uW = u64(W)
    HW = u64(H * W)
    if H == 1:
        for i in range(uW):
            a = zero
            if mk[i] & 1:
                a = src[i - one]
            c = zero
            if mk[i] & 2:
                c = src[i + one]
            dst[i] = bias + w3 * a + w4 * src[i] + w5 * c
        return
    # row 0: kernel rows 1 and 2
    for i in range(uW):
        q = uW + i
        a = zero
        d = zero
        if mk[i] & 1:
            a = src[i - one]
            d = src[q - one]
        c = zero
        f = zero
        if mk[i] & 2:
            c = src[i + one]
            f = src[q + one]
        dst[i] = bias + w3 * a + w4 * src[i] + w5 * c + w6 * d + w7 * src[q] + w8 * f
    # rows 1 .. H-2: one flat loop; left/right taps masked at the first/last column
    for i in range(HW - uW - uW):
        p = uW + i
        t = p - uW
        q = p + uW
        a0 = zero
        a1 = zero
        a2 = zero
        if mk[p] & 1:
            a0 = src[t - one]
            a1 = src[p - one]
            a2 = src[q - one]
        c0 = zero
        c1 = zero
        c2 = zero
        if mk[p] & 2:
            c0 = src[t + one]
            c1 = src[p + one]
            c2 = src[q + one]
        dst[p] = (
            bias
            + w0 * a0
            + w1 * src[t]
            + w2 * c0
            + w3 * a1
            + w4 * src[p]
            + w5 * c1
            + w6 * a2
            + w7 * src[q]
            + w8 * c2
        )
    # row H-1: kernel rows 0 and 1
    bot = HW - uW
    for i in range(uW):
        p = bot + i
        t = p - uW
        a = zero
        d = zero
        if mk[p] & 1:
            a = src[t - one]
            d = src[p - one]
        c = zero
        f = zero
        if mk[p] & 2:
            c = src[t + one]
            f = src[p + one]
        dst[p] = bias + w0 * a + w1 * src[t] + w2 * c + w3 * d + w4 * src[p] + w5 * f


@jit(nogil=True, fastmath=FASTMATH)
def dw3x3_range(t0, t1, x, w, b, out, H, W, G):
    """Tasks [t0, t1) of the depthwise 3x3 / stride 1 / pad 1 forward (t = n*G + g)."""
    cpo = w.shape[0] // G
    mk = _col_masks(H, W)
    for t in range(t0, t1):
        n = t // G
        g = t - n * G
        src = x[n, g]
        for o in range(cpo):
            co = g * cpo + o
            _dw_fwd_plane(src, out[n, co], mk, w, co, b[co], H, W)


@jit(fastmath=FASTMATH)
def _dw_grad_plane(src, gr, mk, pn, co, H, W):
    """pn[co, 0] = weight gradient of one plane: 9 dot products of gr with shifted src."""
    zero = np.float32(0.0)
    one = u64(1)
    uW = u64(W)
    HW = u64(H * W)
    r0 = zero
    r1 = zero
    r2 = zero
    r3 = zero
    r4 = zero
    r5 = zero
    r6 = zero
    r7 = zero
    r8 = zero
    if H == 1:
        for i in range(uW):
            f = gr[i]
            a = zero
            if mk[i] & 1:
                a = src[i - one]
            c = zero
            if mk[i] & 2:
                c = src[i + one]
            r3 += f * a
            r4 += f * src[i]
            r5 += f * c
    else:
        # rows 1 .. H-2: one flat pass, 9 accumulators (1 grad_out + 9 input loads)
        for i in range(HW - uW - uW):
            p = uW + i
            t = p - uW
            q = p + uW
            f = gr[p]
            a0 = zero
            a1 = zero
            a2 = zero
            if mk[p] & 1:
                a0 = src[t - one]
                a1 = src[p - one]
                a2 = src[q - one]
            c0 = zero
            c1 = zero
            c2 = zero
            if mk[p] & 2:
                c0 = src[t + one]
                c1 = src[p + one]
                c2 = src[q + one]
            r0 += f * a0
            r1 += f * src[t]
            r2 += f * c0
            r3 += f * a1
            r4 += f * src[p]
            r5 += f * c1
            r6 += f * a2
            r7 += f * src[q]
            r8 += f * c2
        # rows 0 (kernel rows 1, 2) and H-1 (kernel rows 0, 1) in one pass
        bot = HW - uW
        top = bot - uW
        for i in range(uW):
            f = gr[i]
            g = gr[bot + i]
            q = uW + i
            v = bot + i
            u = top + i
            a = zero
            d = zero
            k = zero
            m = zero
            if mk[i] & 1:
                a = src[i - one]
                d = src[q - one]
                k = src[u - one]
                m = src[v - one]
            c = zero
            e = zero
            l = zero
            n = zero
            if mk[i] & 2:
                c = src[i + one]
                e = src[q + one]
                l = src[u + one]
                n = src[v + one]
            r0 += g * k
            r1 += g * src[u]
            r2 += g * l
            r3 += f * a + g * m
            r4 += f * src[i] + g * src[v]
            r5 += f * c + g * n
            r6 += f * d
            r7 += f * src[q]
            r8 += f * e
    pn[co, 0, 0, 0] = r0
    pn[co, 0, 0, 1] = r1
    pn[co, 0, 0, 2] = r2
    pn[co, 0, 1, 0] = r3
    pn[co, 0, 1, 1] = r4
    pn[co, 0, 1, 2] = r5
    pn[co, 0, 2, 0] = r6
    pn[co, 0, 2, 1] = r7
    pn[co, 0, 2, 2] = r8


@jit(fastmath=FASTMATH)
def _dw_grad_plane_narrow(src, gr, pn, co, H, W):
    """pn[co, 0] = weight gradient of one plane, for 3 <= W < 16 and H >= 3.

    Copy of conv.py's round-2 `_dw3x3_grad_plane`: for planes narrower than one vector
    the masked kernel's loops run almost entirely in scalar remainder code with
    data-dependent branches on the masks; this branch-free version (unmasked flat pass,
    wrapped-around terms subtracted, edges added) is faster there (8x1024x7x7, 1 thread:
    0.96-1.0 vs 1.19-1.23 ms per pass; 14x14: 0.79 vs 0.83-0.86).

    The interior rows are one flat pass with 9 dot products (one grad_out load and 9
    input loads per step, the forward's trick); the terms that the flat pass wrongly
    picks up at the first/last column (wrapped-around neighbours) are subtracted, and the
    first/last rows and the two pixels outside the flat range are added separately.
    """
    zero = np.float32(0.0)
    uW = u64(W)
    one = u64(1)
    two = u64(2)
    s6 = uW + uW
    bot = u64((H - 1) * W)
    top = bot - uW
    r0 = zero
    r1 = zero
    r2 = zero
    r3 = zero
    r4 = zero
    r5 = zero
    r6 = zero
    r7 = zero
    r8 = zero
    lo = uW + one
    for i in range(bot - one - lo):
        f = gr[lo + i]
        r0 += f * src[i]
        r1 += f * src[one + i]
        r2 += f * src[two + i]
        r3 += f * src[uW + i]
        r4 += f * src[uW + one + i]
        r5 += f * src[uW + two + i]
        r6 += f * src[s6 + i]
        r7 += f * src[s6 + one + i]
        r8 += f * src[s6 + two + i]
    # wrapped-around terms inside the flat range: (oh, 0) for oh = 2..H-2 got kw=0 terms,
    # (oh, W-1) for oh = 1..H-3 got kw=2 terms
    p = s6
    e = s6 - one
    for _ in range(u64(H - 3)):
        f = gr[p]
        r0 -= f * src[p - uW - one]
        r3 -= f * src[p - one]
        r6 -= f * src[p + uW - one]
        f = gr[e]
        r2 -= f * src[e - uW + one]
        r5 -= f * src[e + one]
        r8 -= f * src[e + uW + one]
        p += uW
        e += uW
    # the two pixels outside the flat range: (1, 0) and (H-2, W-1)
    f = gr[uW]
    r1 += f * src[0]
    r2 += f * src[one]
    r4 += f * src[uW]
    r5 += f * src[uW + one]
    r7 += f * src[s6]
    r8 += f * src[s6 + one]
    e = bot - one
    f = gr[e]
    r0 += f * src[e - uW - one]
    r1 += f * src[e - uW]
    r3 += f * src[e - one]
    r4 += f * src[e]
    r6 += f * src[e + uW - one]
    r7 += f * src[e + uW]
    # first row (taps kh = 1, 2) and last row (kh = 0, 1), columns 1..W-2
    for i in range(uW - two):
        f = gr[one + i]
        r3 += f * src[i]
        r4 += f * src[one + i]
        r5 += f * src[two + i]
        r6 += f * src[uW + i]
        r7 += f * src[uW + one + i]
        r8 += f * src[uW + two + i]
    for i in range(uW - two):
        f = gr[bot + one + i]
        r0 += f * src[top + i]
        r1 += f * src[top + one + i]
        r2 += f * src[top + two + i]
        r3 += f * src[bot + i]
        r4 += f * src[bot + one + i]
        r5 += f * src[bot + two + i]
    # corners
    e = uW - one
    f = gr[0]
    r4 += f * src[0]
    r5 += f * src[one]
    r7 += f * src[uW]
    r8 += f * src[uW + one]
    f = gr[e]
    r3 += f * src[e - one]
    r4 += f * src[e]
    r6 += f * src[e + uW - one]
    r7 += f * src[e + uW]
    f = gr[bot]
    r1 += f * src[top]
    r2 += f * src[top + one]
    r4 += f * src[bot]
    r5 += f * src[bot + one]
    e = bot + e
    f = gr[e]
    r0 += f * src[e - uW - one]
    r1 += f * src[e - uW]
    r3 += f * src[e - one]
    r4 += f * src[e]
    pn[co, 0, 0, 0] = r0
    pn[co, 0, 0, 1] = r1
    pn[co, 0, 0, 2] = r2
    pn[co, 0, 1, 0] = r3
    pn[co, 0, 1, 1] = r4
    pn[co, 0, 1, 2] = r5
    pn[co, 0, 2, 0] = r6
    pn[co, 0, 2, 1] = r7
    pn[co, 0, 2, 2] = r8


@jit(nogil=True, fastmath=FASTMATH)
def dw3x3_bwd_weight_range(t0, t1, x, go, part, H, W, G, zero):
    """Tasks [t0, t1) of the depthwise 3x3 / stride 1 / pad 1 weight gradient."""
    cpo = part.shape[1] // G
    mk = _col_masks(H, W)
    for t in range(t0, t1):
        n = t // G
        g = t - n * G
        src = x[n, g]
        pn = part[n]
        for o in range(cpo):
            co = g * cpo + o
            if W < 16 and W >= 3 and H >= 3:
                _dw_grad_plane_narrow(src, go[n, co], pn, co, H, W)
            else:
                _dw_grad_plane(src, go[n, co], mk, pn, co, H, W)


@jit(nogil=True, fastmath=FASTMATH)
def dw3x3_bwd_range(t0, t1, x, go, wf, gx, part, H, W, C, zero):
    """Tasks [t0, t1) of both gradients of a depthwise 3x3 / stride 1 / pad 1 conv with
    one output channel per group (t = n*C + c): gx[n, c] = the conv of go[n, c] with the
    flipped weights wf (C, 1, 3, 3), then part[n, c] = its weight gradient, while
    go[n, c] is still in L1/L2 - go is read from memory once instead of twice. The same
    plane functions as `dw3x3_range` and `dw3x3_bwd_weight_range`: the same bits."""
    mk = _col_masks(H, W)
    for t in range(t0, t1):
        n = t // C
        c = t - n * C
        _dw_fwd_plane(go[n, c], gx[n, c], mk, wf, c, zero, H, W)
        if W < 16 and W >= 3 and H >= 3:
            _dw_grad_plane_narrow(x[n, c], go[n, c], part[n], c, H, W)
        else:
            _dw_grad_plane(x[n, c], go[n, c], mk, part[n], c, H, W)
