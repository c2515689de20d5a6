"""Register-blocked direct convolution over a *tap table*, written with explicit SIMD.

The convs ResNet and ResNeXt spend most of their time in: every 3x3 conv of a CIFAR
ResNet (stride 1 and 2), every grouped 3x3 of ResNeXt's bottlenecks, and the stride-1
input gradient of each (the same conv with transposed, flipped weights).

A conv whose output plane (Ho x Wo, P pixels) is read as one flat array can be written
as a list of T *taps*: tap k reads the source at flat offset `p + toff[k]` (in the
channel's source plane, `cs` elements per channel) where its lane mask `mk[k]` says the
tap is inside the image. Two layouts give such a table (`tap_table`):

* stride 1 with "same" padding (Ho, Wo = H, W; e.g. 3x3 pad 1): the source is x itself
  and toff = (kh*dh - ph) * W + (kw*dw - pw);
* stride 2, odd KH x KW with padding (KH-1)/2, (KW-1)/2 (3x3 pad 1, ResNet's 7x7 pad 3
  stem): the source is x split into its 4 polyphase planes (even/odd rows x even/odd
  columns, each Ho x Wo; `polyphase`), so every tap is again a unit-stride read of one
  plane at a small row and column offset.

Forward, one task per (image, group, block of CB output channels):

    for each run of PV vectors of output pixels:
        acc[o][j] = bias[o]                        CB x PV vectors, held in registers
        for c in the group's input channels:
            for k in taps:
                xv[j] = src[c, pixels j + toff[k]]      masked load: outside taps read 0
                acc[o][j] += xv[j] * w[o, c, k]        (the weight broadcast to all lanes)
        out[o, pixels] = acc[o]

Each input vector feeds CB FMAs and each weight PV, and the accumulators are stored once
per tile instead of once per (channel, tap): this is what the scalar-loop kernels could
not do (LLVM will not keep a tile in registers across the channel loop; see `simd.py`).
Tiles: CB = 8 output channels x PV = 2 vectors (16 accumulators), or 4 x 4 when a group
has at most 4 output channels (ResNeXt 32x4d). Output channels are padded to CB with zero
weights; padded channels are computed and dropped. Measurements: PERFLOG.md, round 4.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import numpy as np
from numba import uint64 as u64

from ._numba import FASTMATH, jit, parallel_for
from .simd import (
    VECTOR_BYTES,
    lanes,
    prefetch,
    vadd,
    vbcast,
    vfma,
    vgather,
    vload,
    vloadm,
    vstore,
    vstorem,
    vziphi,
    vziplo,
)


def _lane_bits(ok: np.ndarray, nv: int, nlanes: int) -> np.ndarray:
    """bool (nv * nlanes,) -> uint32 (nv,): bit l of entry v is ok[v * nlanes + l]."""
    bits = np.left_shift(np.uint64(1), np.arange(nlanes, dtype=np.uint64))
    return (ok.reshape(nv, nlanes) * bits).sum(axis=1).astype(np.uint32)


class TapGeometry(NamedTuple):
    """The output plane and taps of one tap-table conv (a hashable `tap_table` key).

    kind "same": stride 1, H x W output (= input), kernel KH x KW, padding (ph, pw),
    dilation (dh, dw); "poly2": odd KH x KW / stride 2 / padding (KH-1)/2, (KW-1)/2 over
    `polyphase` planes, H x W = Ho x Wo. Build with `same` or `poly2`.
    """

    kind: str
    H: int
    W: int
    KH: int = 3
    KW: int = 3
    ph: int = 1
    pw: int = 1
    dh: int = 1
    dw: int = 1

    @classmethod
    def same(cls, H, W, KH, KW, ph, pw, dh, dw) -> TapGeometry:
        return cls("same", H, W, KH, KW, ph, pw, dh, dw)

    @classmethod
    def poly2(cls, Ho, Wo, KH=3, KW=3) -> TapGeometry:
        return cls("poly2", Ho, Wo, KH, KW, (KH - 1) // 2, (KW - 1) // 2)


def _phase(offset: int) -> tuple[int, int]:
    """Input row 2*oh + offset = row oh + dr of polyphase rows a: (a, dr)."""
    a = offset % 2
    return a, (offset - a) // 2


@functools.lru_cache(maxsize=64)
def tap_table(geom: TapGeometry, nlanes: int, block: int):
    """(toff int64 (T,), mk uint32 (T, nv), valid uint32 (nv,)) for one `TapGeometry`.

    nv (vectors of `nlanes` output pixels) is rounded up to a multiple of `block`;
    `valid` marks the real output pixels (the store mask). Cached per geometry.
    """
    H, W = geom.H, geom.W
    if geom.kind == "same":
        taps = [
            (kh * geom.dh - geom.ph, kw * geom.dw - geom.pw, 0)
            for kh in range(geom.KH)
            for kw in range(geom.KW)
        ]
    elif geom.kind == "poly2":
        # input row 2*oh + kh - ph is row oh + dr of the even (a = 0) or odd (a = 1) rows
        rows = [_phase(kh - geom.ph) for kh in range(geom.KH)]  # kh -> (a, dr)
        cols = [_phase(kw - geom.pw) for kw in range(geom.KW)]
        taps = [(dr, dc, (a * 2 + b) * H * W) for a, dr in rows for b, dc in cols]
    else:
        raise ValueError(f"unknown tap geometry {geom.kind!r}")
    P = H * W
    nv = -(-P // nlanes)
    nv = -(-nv // block) * block
    pix = np.arange(nv * nlanes)
    oh, ow = np.divmod(pix, W)
    inside = pix < P
    toff = np.array([dr * W + dc + base for dr, dc, base in taps], np.int64)
    mk = np.empty((len(taps), nv), np.uint32)
    for k, (dr, dc, _) in enumerate(taps):
        ih, iw = oh + dr, ow + dc
        mk[k] = _lane_bits(inside & (ih >= 0) & (ih < H) & (iw >= 0) & (iw < W), nv, nlanes)
    return toff, mk, _lane_bits(inside, nv, nlanes)


@jit(nogil=True)
def _polyphase_range(t0, t1, x, out, H, W, Hq, Wq):
    # x (N*C, H, W) -> out (N*C, 2, 2, Hq, Wq), zero past the edge of odd sizes
    zero = x.dtype.type(0)
    for t in range(t0, t1):
        for a in range(2):
            for b in range(2):
                for i in range(Hq):
                    r = 2 * i + a
                    for j in range(Wq):
                        c = 2 * j + b
                        out[t, a, b, i, j] = x[t, r, c] if r < H and c < W else zero


def polyphase(x: np.ndarray) -> np.ndarray:
    """x (N, C, H, W) -> (N, C, 4, Ho, Wo) with Ho, Wo = ceil(H/2), ceil(W/2): plane
    2a + b holds x[2i + a, 2j + b] (zero where that is past the edge of an odd size)."""
    N, C, H, W = x.shape
    Hq, Wq = -(-H // 2), -(-W // 2)
    out = np.empty((N * C, 2, 2, Hq, Wq), x.dtype)
    x3 = np.ascontiguousarray(x).reshape(N * C, H, W)
    parallel_for(_polyphase_range, N * C, x3, out, H, W, Hq, Wq, nbytes=x3.nbytes)
    return out.reshape(N, C, 4, Hq, Wq)


def pack_weights(weight: np.ndarray, groups: int, cb: int, transposed: bool = False) -> np.ndarray:
    """(C_out, cpi, KH, KW) -> flat (groups, blocks, cpi, KH*KW, cb): for each (input
    channel, tap) the cb weights of one output-channel block side by side; blocks are
    padded with zero weights. With `transposed`, the weights packed are those of the
    transposed conv - per group, input and output channels swapped and the kernel
    rotated by 180 degrees (`conv._transposed_flipped`; the stride-1 input gradient) -
    read from `weight` as it is: (groups, blocks, C_out/groups, KH*KW, cb), blocks of
    cpi. One pass on one thread (ms, ResNeXt-50's 1024-channel grouped 3x3, 1.2 MB:
    NumPy's zero-fill, copy and transposed copy 0.20, and 0.33 with the transposed copy
    before it; this 0.08 / 0.11, and 0.13 on two threads, which do not pay here)."""
    w = np.ascontiguousarray(weight)
    cout, cpi, kh, kw = w.shape
    cpo = cout // groups
    rows, cols = (cpi, cpo) if transposed else (cpo, cpi)  # the packed conv's out / in
    nblk = -(-rows // cb)
    out = np.empty(groups * nblk * cols * kh * kw * cb, w.dtype)
    _pack_range(0, groups * nblk, w.reshape(-1), out, cpo, cpi, kh * kw, cb, nblk, transposed)
    return out


@jit(nogil=True)
def _pack_range(t0, t1, w, out, cpo, cpi, T, cb, nblk, transposed):
    # w flat (G * cpo, cpi, T); task t = (group g, block of cb rows r0 ..) writes
    # out[g, block] = (cols, T, cb): the packed conv's weight (row r0 + j, input c, tap
    # k) is w[g*cpo + r0 + j, c, k], or transposed w[g*cpo + c, r0 + j, T-1-k]. One
    # row j at a time, read in order (strided reads with all the index arithmetic per
    # value ran 3 cycles a value, as slow as NumPy's three passes)
    rows, cols = (cpi, cpo) if transposed else (cpo, cpi)
    zero = w.dtype.type(0)
    n = cols * T  # packed values per row
    for t in range(t0, t1):
        g = t // nblk
        r0 = (t - g * nblk) * cb
        nr = min(cb, rows - r0)
        dst = out[t * n * cb : (t + 1) * n * cb]
        ucb = u64(cb)  # unsigned offsets: no wrap-around test per access
        if transposed:  # per input c, rows r0 .. r0+nr of w[g*cpo + c] are nr*T in order
            uT = u64(T)
            for c in range(cols):
                src = w[((g * cpo + c) * cpi + r0) * T :]
                d = dst[c * T * cb : (c + 1) * T * cb]
                for j in range(u64(nr)):
                    for k in range(uT):
                        d[k * ucb + j] = src[j * uT + uT - u64(1) - k]
        else:
            for j in range(u64(nr)):
                src = w[(g * cpo + r0) * n + j * u64(n) :]
                for i in range(u64(n)):
                    dst[i * ucb + j] = src[i]
        for j in range(u64(nr), ucb):
            for i in range(u64(n)):
                dst[i * ucb + j] = zero


# --------------------------------------------------------------------------- kernels


@jit(fastmath=FASTMATH)
def _splat8(b, i):
    return (
        vbcast(b, i),
        vbcast(b, i + 1),
        vbcast(b, i + 2),
        vbcast(b, i + 3),
        vbcast(b, i + 4),
        vbcast(b, i + 5),
        vbcast(b, i + 6),
        vbcast(b, i + 7),
    )


@jit(fastmath=FASTMATH)
def _fma8(acc, xv, w, i):
    """acc[o] + xv * w[i + o] for the 8 channels of a block."""
    return (
        vfma(xv, vbcast(w, i), acc[0]),
        vfma(xv, vbcast(w, i + 1), acc[1]),
        vfma(xv, vbcast(w, i + 2), acc[2]),
        vfma(xv, vbcast(w, i + 3), acc[3]),
        vfma(xv, vbcast(w, i + 4), acc[4]),
        vfma(xv, vbcast(w, i + 5), acc[5]),
        vfma(xv, vbcast(w, i + 6), acc[6]),
        vfma(xv, vbcast(w, i + 7), acc[7]),
    )


@jit(fastmath=FASTMATH)
def _splat4(b, i):
    return (vbcast(b, i), vbcast(b, i + 1), vbcast(b, i + 2), vbcast(b, i + 3))


@jit(fastmath=FASTMATH)
def _fma4(acc, xv, w, i):
    return (
        vfma(xv, vbcast(w, i), acc[0]),
        vfma(xv, vbcast(w, i + 1), acc[1]),
        vfma(xv, vbcast(w, i + 2), acc[2]),
        vfma(xv, vbcast(w, i + 3), acc[3]),
    )


@jit(fastmath=FASTMATH)
def _task_index(t, G, nblk):
    """Task t of (image, group, block of channels) -> (image n, g * nblk + blk, group g,
    block blk)."""
    n = t // (G * nblk)
    gb = t - n * (G * nblk)
    g = gb // nblk
    return n, gb, g, gb - g * nblk


@jit(fastmath=FASTMATH)
def _store(dst, d, acc, mask, HW, nvalid):
    """dst[d + o*HW + lanes] = acc[o] for the nvalid real channels of the block."""
    for o in range(len(acc)):
        if o < nvalid:
            vstorem(dst, d + o * HW, acc[o], mask)


@jit(fastmath=FASTMATH)
def _next_source(t, t1, src, G, nblk, cpi, cs):
    """Flat offset in src of task t+1's input channels; -1 if t is its thread's last or
    both read the same channels (two blocks of one group's output channels)."""
    if t + 1 >= t1 or (t + 1) % nblk != 0:
        return -1
    n = (t + 1) // (G * nblk)
    g = (t + 1 - n * (G * nblk)) // nblk
    return n * src.shape[1] + g * cpi * cs


@jit(fastmath=FASTMATH)
def _prefetch_step(src, start, nlines, step, nsteps, L):
    """Prefetch part `step` of `nsteps` of the `nlines` vectors (a cache line each with
    AVX-512, two with AVX2) from flat src[start]:
    the next task's input, spread over this task's pixel runs. Its group's planes are one
    contiguous block read in `cpi` interleaved streams (or 4*cpi polyphase ones), more
    than the hardware prefetcher follows from a cold start: stride 1 3-11% faster, stride
    2 30-50% (PERFLOG, session 14)."""
    if start >= 0:
        flat = src.reshape(-1)
        per = (nlines + nsteps - 1) // nsteps
        for line in range(step * per, min((step + 1) * per, nlines)):
            prefetch(flat, start + line * L)


@jit(fastmath=FASTMATH)
def _task_setup(t, t1, src, out, T, cb, G, cpi, cpo, nblk, cs, L):
    """What a forward task of `cb`-channel blocks needs before its tile loop: (its image's
    src and out rows, group g, g * nblk + blk, block blk, its packed weights' offset, its
    real channels, the next task's input offset for `_prefetch_step` and its vectors)."""
    n, gb, g, blk = _task_index(t, G, nblk)
    wb = gb * cpi * T * cb
    nvalid = min(cb, cpo - blk * cb)
    nxt = _next_source(t, t1, src, G, nblk, cpi, cs)
    return src[n], out[n], g, gb, blk, wb, nvalid, nxt, -(-cpi * cs // L)


@jit(fastmath=FASTMATH)
def _fwd_8x2_task(t, t1, src, wt, bp, out, toff, mk, valid, cs, P, G, cpi, cpo, nblk, L):
    # src (N, C*cs), wt packed (G, nblk, cpi, T, 8), bp (G*nblk*8,), out (N, C_out*P);
    # t1: the end of this thread's tasks (the next one's input is prefetched)
    T = toff.size
    sn, dst, g, gb, blk, wb, nvalid, nxt, nlines = _task_setup(
        t, t1, src, out, T, 8, G, cpi, cpo, nblk, cs, L
    )
    for v in range(0, valid.size, 2):
        _prefetch_step(src, nxt, nlines, v // 2, valid.size // 2, L)
        p = v * L
        a0 = _splat8(bp, gb * 8)
        a1 = a0
        for c in range(cpi):
            xb = (g * cpi + c) * cs + p
            wc = wb + c * T * 8
            for k in range(T):
                i = xb + toff[k]
                a0 = _fma8(a0, vloadm(sn, i, mk[k, v]), wt, wc + k * 8)
                a1 = _fma8(a1, vloadm(sn, i + L, mk[k, v + 1]), wt, wc + k * 8)
        d = (g * cpo + blk * 8) * P + p
        _store(dst, d, a0, valid[v], P, nvalid)
        _store(dst, d + L, a1, valid[v + 1], P, nvalid)


@jit(fastmath=FASTMATH)
def _fwd_4x4_task(t, t1, src, wt, bp, out, toff, mk, valid, cs, P, G, cpi, cpo, nblk, L):
    # as _fwd_8x2_task, with blocks of 4 output channels x 4 vectors
    T = toff.size
    sn, dst, g, gb, blk, wb, nvalid, nxt, nlines = _task_setup(
        t, t1, src, out, T, 4, G, cpi, cpo, nblk, cs, L
    )
    for v in range(0, valid.size, 4):
        _prefetch_step(src, nxt, nlines, v // 4, valid.size // 4, L)
        p = v * L
        a0 = _splat4(bp, gb * 4)
        a1 = a0
        a2 = a0
        a3 = a0
        for c in range(cpi):
            xb = (g * cpi + c) * cs + p
            wc = wb + c * T * 4
            for k in range(T):
                i = xb + toff[k]
                w = wc + k * 4
                a0 = _fma4(a0, vloadm(sn, i, mk[k, v]), wt, w)
                a1 = _fma4(a1, vloadm(sn, i + L, mk[k, v + 1]), wt, w)
                a2 = _fma4(a2, vloadm(sn, i + 2 * L, mk[k, v + 2]), wt, w)
                a3 = _fma4(a3, vloadm(sn, i + 3 * L, mk[k, v + 3]), wt, w)
        d = (g * cpo + blk * 4) * P + p
        _store(dst, d, a0, valid[v], P, nvalid)
        _store(dst, d + L, a1, valid[v + 1], P, nvalid)
        _store(dst, d + 2 * L, a2, valid[v + 2], P, nvalid)
        _store(dst, d + 3 * L, a3, valid[v + 3], P, nvalid)


@jit(fastmath=FASTMATH)
def _fwd_4x2_task(t, t1, src, wt, bp, out, toff, mk, valid, cs, P, G, cpi, cpo, nblk, L):
    # as _fwd_4x4_task, with blocks of 4 output channels x 2 vectors (8 accumulators:
    # the tile for 16 vector registers, `TAP_TILES`)
    T = toff.size
    sn, dst, g, gb, blk, wb, nvalid, nxt, nlines = _task_setup(
        t, t1, src, out, T, 4, G, cpi, cpo, nblk, cs, L
    )
    for v in range(0, valid.size, 2):
        _prefetch_step(src, nxt, nlines, v // 2, valid.size // 2, L)
        p = v * L
        a0 = _splat4(bp, gb * 4)
        a1 = a0
        for c in range(cpi):
            xb = (g * cpi + c) * cs + p
            wc = wb + c * T * 4
            for k in range(T):
                i = xb + toff[k]
                w = wc + k * 4
                a0 = _fma4(a0, vloadm(sn, i, mk[k, v]), wt, w)
                a1 = _fma4(a1, vloadm(sn, i + L, mk[k, v + 1]), wt, w)
        d = (g * cpo + blk * 4) * P + p
        _store(dst, d, a0, valid[v], P, nvalid)
        _store(dst, d + L, a1, valid[v + 1], P, nvalid)


@jit(fastmath=FASTMATH)
def tap_task(tile, t, t1, src, wt, bp, out, toff, mk, valid, cs, P, G, cpi, cpo, nblk, L):
    """Task t of the register tile `tile` (an index into `TAP_TILES`)."""
    if tile == 0:
        _fwd_8x2_task(t, t1, src, wt, bp, out, toff, mk, valid, cs, P, G, cpi, cpo, nblk, L)
    elif tile == 1:
        _fwd_4x4_task(t, t1, src, wt, bp, out, toff, mk, valid, cs, P, G, cpi, cpo, nblk, L)
    else:
        _fwd_4x2_task(t, t1, src, wt, bp, out, toff, mk, valid, cs, P, G, cpi, cpo, nblk, L)


# The register tiles of the tap kernel, (output channels, vectors of pixels) held in
# accumulators: 8x2 and 4x4 (16 accumulators) where AVX-512 has 32 vector registers,
# 4x2 (8) where AVX2 has 16 - there a 16-accumulator tile spills to the stack every
# tap. Measured (session 18, AMD EPYC Zen 3, AVX2, 1 thread, float32, forward ms, tiles
# 8x2 / 4x4 / 4x2 / 8x1): 32x4d 56x56 batch 8 16.9 / 9.3 / 7.4 / 11.6, 32x8d 28x28 8.1 /
# 7.6 / 5.5 / 5.6, 8x14d 56x56 35.4 / 40.1 / 27.0 / 28.7, CIFAR 16->16 32x32 batch 64
# 12.7 / 14.4 / 10.5 / 9.8 (a noisy host: the order held over 4 runs).
TAP_TILES = ((8, 2), (4, 4), (4, 2))


@jit(nogil=True)
def _tap_range(t0, t1, tile, src, wt, bp, out, toff, mk, valid, cs, P, G, cpi, cpo, nblk, L):
    """Tasks [t0, t1) of the register tile `tile` (`tap_task`)."""
    for t in range(t0, t1):
        tap_task(tile, t, t1, src, wt, bp, out, toff, mk, valid, cs, P, G, cpi, cpo, nblk, L)


def tap_tile(cpo: int) -> int:
    """The index in `TAP_TILES` of the register tile for `cpo` output channels a group
    on this CPU's vectors."""
    if VECTOR_BYTES < 64:
        return 2
    return 1 if cpo <= 4 else 0


def tap_conv(
    src: np.ndarray,
    weight: np.ndarray,
    bias,
    groups: int,
    geom: TapGeometry,
    out=None,
    transposed: bool = False,
) -> np.ndarray:
    """The conv of `tap_table(geom)` over src (N, C, cs) contiguous: x as (N, C, H*W), or
    its `polyphase` planes as (N, C, 4*Ho*Wo). weight (C_out, C/groups, KH, KW), bias
    (C_out,) or None. Returns out (N, C_out, P), P the output pixels of geom (written
    into `out` if given: a contiguous array of that shape). With `transposed`, the conv
    with the transposed, flipped weights (see `pack_weights`): weight (C, C_out/groups,
    KH, KW) is then the original conv's."""
    out, tile, nblk, args = tap_conv_tasks(src, weight, bias, groups, geom, out, transposed)
    parallel_for(_tap_range, src.shape[0] * groups * nblk, tile, *args)
    return out


def tap_conv_tasks(src, weight, bias, groups: int, geom: TapGeometry, out=None,
                   transposed: bool = False):  # fmt: skip
    """`tap_conv`'s set-up: (out, tile, nblk, args) - task t of `tap_task(tile, t, t1,
    *args)` (t < N * groups * nblk, t1 the end of the calling thread's tasks; `tile` an
    index into `TAP_TILES`) computes block
    t % nblk of the output channels of group (t // nblk) % groups of image t // (groups *
    nblk), into out (allocated here unless given)."""
    N = src.shape[0]
    if transposed:
        cpo, cpi = weight.shape[1], weight.shape[0] // groups
    else:
        cpo, cpi = weight.shape[0] // groups, weight.shape[1]
    cout = groups * cpo
    dt = src.dtype
    nl = lanes(dt)
    tile = tap_tile(cpo)
    cb, pv = TAP_TILES[tile]
    nblk = -(-cpo // cb)
    toff, mk, valid = tap_table(geom, nl, pv)
    P = geom.H * geom.W
    bp = np.zeros((groups, nblk * cb), dt)
    if bias is not None:
        bp[:, :cpo] = np.asarray(bias, dt).reshape(groups, cpo)
    if out is None:
        out = np.empty((N, cout, P), dtype=dt)
    wt = pack_weights(weight, groups, cb, transposed)
    args = (src.reshape(N, -1), wt, bp.reshape(-1), out.reshape(N, -1), toff, mk, valid,
            src.shape[2], P, groups, cpi, cpo, nblk, nl)  # fmt: skip
    return out, tile, nblk, args


# ----------------------------------------------------------------- stride-2 input gradient
#
# grad_x of the 3x3 / stride 2 / pad 1 conv. Input pixel (2i + a, 2j + b) - row phase a,
# column phase b - receives grad_out at (i + dr, j + dc) through the kernel taps
#
#     a or b = 0:  tap 1 at d = 0            a or b = 1:  tap 0 at d = 1, tap 2 at d = 0
#
# (input row 2*oh + kh - 1 = 2i + a). A task (image, group, block of 4 input channels)
# walks grad_out's plane in *segments*: runs of S = LANES/2 pixels inside one row, two
# segments to a vector. For each pair of vectors and each row phase a it holds both
# column phases of 4 channels in registers - p (b = 0) and q (b = 1), 16 accumulators -
# over all output channels of the group:
#
#     for co in the group's output channels:
#         for each kernel row kh of row phase a (dr its row offset):
#             x0 = grad_out[co, segments shifted by (dr, 0)]     masked: past the edge is 0
#             x1 = grad_out[co, segments shifted by (dr, 1)]
#             p[c] += x0 * w[co, c, kh, 1]
#             q[c] += x0 * w[co, c, kh, 2] + x1 * w[co, c, kh, 0]
#
# Every FMA is one of the reference's products (no zero taps, so NaN and inf propagate as
# they do there). Then lanes k of p and q interleaved (`vziplo` / `vziphi`) are the 2*S
# consecutive input pixels 2j .. 2j + 2S - 1 of row 2i + a of a segment: one masked
# store each, straight into grad_x. (Before: four tap convs, one per (a, b) phase with
# 1, 2, 2 or 4 taps, into a phase buffer, then an interleave pass: 1.3-2.7x slower,
# PERFLOG.md session 16.) Where two segments of a vector are not contiguous in grad_out
# (rows shorter than S or not a multiple of it, odd split) a load is two masked half
# loads added; `_stride2_tables` says which.


@functools.lru_cache(maxsize=64)
def _stride2_tables(Ho: int, Wo: int, H: int, W: int, nlanes: int):
    """Load and store tables of the stride-2 input gradient over an Ho x Wo grad_out
    plane (H x W input), vectors of `nlanes`: (loff, lmask, soff, smask, split).

    loff / lmask (nv, 4, 2): for vector v, shift t = 2*dr + dc and half h (segment 2v +
    h), the flat grad_out offset to load from and the lanes to load (half h's lanes
    h*S .. h*S + S - 1; the offset of half 1 is S before its segment). soff / smask (nv,
    2, 2): for row phase a and half h, the flat input-gradient offset of its 2*S
    interleaved pixels and the lanes inside the image. split: False when every vector's
    two segments are contiguous (one load of both halves). nv is even (vector pairs)."""
    S = nlanes // 2
    segs = [(i, j0, min(S, Wo - j0)) for i in range(Ho) for j0 in range(0, Wo, S)]
    nv = -(-len(segs) // 2)
    nv += nv % 2
    loff = np.zeros((nv, 4, 2), np.int64)
    lmask = np.zeros((nv, 4, 2), np.uint32)
    soff = np.zeros((nv, 2, 2), np.int64)
    smask = np.zeros((nv, 2, 2), np.uint32)
    for v in range(nv):
        for h in range(2):
            if 2 * v + h >= len(segs):  # no segment: nothing loaded or stored
                loff[v, :, h] = loff[v, :, 0]
                soff[v, :, h] = soff[v, :, 0]
                continue
            i, j0, n = segs[2 * v + h]
            for dr in range(2):
                for dc in range(2):
                    ok = [i + dr < Ho and j0 + dc + k < Wo for k in range(n)]
                    loff[v, 2 * dr + dc, h] = (i + dr) * Wo + j0 + dc - h * S
                    lmask[v, 2 * dr + dc, h] = sum(1 << (h * S + k) for k in range(n) if ok[k])
            for a in range(2):
                r = 2 * i + a
                soff[v, a, h] = r * W + 2 * j0
                smask[v, a, h] = sum(1 << k for k in range(2 * n) if r < H and 2 * j0 + k < W)
    split = bool((loff[:, :, 0] != loff[:, :, 1]).any())
    return loff, lmask, soff, smask, split


@jit(fastmath=FASTMATH)
def _load_halves(src, sb, off, mask, split):
    """A vector's two halves (flat offsets `off` from sb, lane masks `mask`) added, or one
    load where they are contiguous (`split` is None: a separate compilation)."""
    if split is None:
        return vloadm(src, sb + off[0], mask[0] | mask[1])
    return vadd(vloadm(src, sb + off[0], mask[0]), vloadm(src, sb + off[1], mask[1]))


@jit(fastmath=FASTMATH)
def _shift_table(loff, lmask, v, dr):
    """(offsets, masks) of the dc = 0 and dc = 1 loads at row dr of vectors v, v + 1."""
    t0, t1 = 2 * dr, 2 * dr + 1
    offs = (
        (loff[v, t0, 0], loff[v, t0, 1]),
        (loff[v, t1, 0], loff[v, t1, 1]),
        (loff[v + 1, t0, 0], loff[v + 1, t0, 1]),
        (loff[v + 1, t1, 0], loff[v + 1, t1, 1]),
    )
    masks = (
        (lmask[v, t0, 0], lmask[v, t0, 1]),
        (lmask[v, t1, 0], lmask[v, t1, 1]),
        (lmask[v + 1, t0, 0], lmask[v + 1, t0, 1]),
        (lmask[v + 1, t1, 0], lmask[v + 1, t1, 1]),
    )
    return offs, masks


@jit(fastmath=FASTMATH)
def _kernel_row(acc, src, sb, tab, split, wt, wb, kh):
    """acc (p0, p1, q0, q1) += kernel row kh's products for one output channel (its
    grad_out plane at sb, its packed weights at wb) over a pair of vectors."""
    p0, p1, q0, q1 = acc
    offs, masks = tab
    x00 = _load_halves(src, sb, offs[0], masks[0], split)
    x01 = _load_halves(src, sb, offs[1], masks[1], split)
    x10 = _load_halves(src, sb, offs[2], masks[2], split)
    x11 = _load_halves(src, sb, offs[3], masks[3], split)
    w1 = wb + (7 - 3 * kh) * 4  # tap kh*3 + kw of the rotated packing is at 8 - that
    w2 = wb + (6 - 3 * kh) * 4
    w0 = wb + (8 - 3 * kh) * 4
    p0 = _fma4(p0, x00, wt, w1)
    p1 = _fma4(p1, x10, wt, w1)
    q0 = _fma4(_fma4(q0, x00, wt, w2), x01, wt, w0)
    q1 = _fma4(_fma4(q1, x10, wt, w2), x11, wt, w0)
    return p0, p1, q0, q1


@jit(fastmath=FASTMATH)
def _store_zipped(dst, c0, p, q, soff, smask, v, a, HW, nvalid):
    """The interleaved phases p (b = 0), q (b = 1) of vector v, row phase a, into the
    input-gradient planes of channels c0 .. c0 + nvalid - 1."""
    for o in range(len(p)):
        if o < nvalid:
            base = (c0 + o) * HW
            vstorem(dst, base + soff[v, a, 0], vziplo(p[o], q[o]), smask[v, a, 0])
            vstorem(dst, base + soff[v, a, 1], vziphi(p[o], q[o]), smask[v, a, 1])


@jit(fastmath=FASTMATH)
def _stride2_bwd_task(t, go, wt, gx, zero, loff, lmask, soff, smask, P, HW, G, cpi, cpo,
                      nblk, split):  # fmt: skip
    # go (N, C_out*P), gx (N, C*HW), wt packed transposed (G, nblk, cpo, 9, 4)
    n, gb, g, blk = _task_index(t, G, nblk)
    src = go[n]
    dst = gx[n]
    c0 = g * cpi + blk * 4
    nvalid = min(4, cpi - blk * 4)
    z = vbcast(zero, 0)
    z4 = (z, z, z, z)
    for v in range(0, loff.shape[0], 2):
        row0 = _shift_table(loff, lmask, v, 0)
        row1 = _shift_table(loff, lmask, v, 1)
        acc = (z4, z4, z4, z4)  # row phase 0: kernel row 1 at dr = 0
        for co in range(cpo):
            acc = _kernel_row(acc, src, (g * cpo + co) * P, row0, split, wt,
                              (gb * cpo + co) * 36, 1)  # fmt: skip
        _store_zipped(dst, c0, acc[0], acc[2], soff, smask, v, 0, HW, nvalid)
        _store_zipped(dst, c0, acc[1], acc[3], soff, smask, v + 1, 0, HW, nvalid)
        acc = (z4, z4, z4, z4)  # row phase 1: kernel row 0 at dr = 1, row 2 at dr = 0
        for co in range(cpo):
            sb = (g * cpo + co) * P
            wb = (gb * cpo + co) * 36
            acc = _kernel_row(acc, src, sb, row1, split, wt, wb, 0)
            acc = _kernel_row(acc, src, sb, row0, split, wt, wb, 2)
        _store_zipped(dst, c0, acc[0], acc[2], soff, smask, v, 1, HW, nvalid)
        _store_zipped(dst, c0, acc[1], acc[3], soff, smask, v + 1, 1, HW, nvalid)


@jit(fastmath=FASTMATH)
def _kernel_row1(acc, src, sb, offs, masks, split, wt, wb, kh):
    """`_kernel_row` for one vector: acc (p, q), offs / masks its dc = 0 and dc = 1 loads."""
    p, q = acc
    x0 = _load_halves(src, sb, offs[0], masks[0], split)
    x1 = _load_halves(src, sb, offs[1], masks[1], split)
    p = _fma4(p, x0, wt, wb + (7 - 3 * kh) * 4)
    q = _fma4(_fma4(q, x0, wt, wb + (6 - 3 * kh) * 4), x1, wt, wb + (8 - 3 * kh) * 4)
    return p, q


@jit(fastmath=FASTMATH)
def _stride2_bwd_task1(t, go, wt, gx, zero, loff, lmask, soff, smask, P, HW, G, cpi, cpo,
                       nblk, split):  # fmt: skip
    # `_stride2_bwd_task` one vector at a time: p and q of 4 channels, 8 accumulators
    # (16 vector registers, AVX2: the pair's 16 would spill)
    n, gb, g, blk = _task_index(t, G, nblk)
    src = go[n]
    dst = gx[n]
    c0 = g * cpi + blk * 4
    nvalid = min(4, cpi - blk * 4)
    z = vbcast(zero, 0)
    z4 = (z, z, z, z)
    for v in range(loff.shape[0]):
        o0 = ((loff[v, 0, 0], loff[v, 0, 1]), (loff[v, 1, 0], loff[v, 1, 1]))
        m0 = ((lmask[v, 0, 0], lmask[v, 0, 1]), (lmask[v, 1, 0], lmask[v, 1, 1]))
        o1 = ((loff[v, 2, 0], loff[v, 2, 1]), (loff[v, 3, 0], loff[v, 3, 1]))
        m1 = ((lmask[v, 2, 0], lmask[v, 2, 1]), (lmask[v, 3, 0], lmask[v, 3, 1]))
        acc = (z4, z4)  # row phase 0: kernel row 1 at dr = 0
        for co in range(cpo):
            acc = _kernel_row1(acc, src, (g * cpo + co) * P, o0, m0, split, wt,
                               (gb * cpo + co) * 36, 1)  # fmt: skip
        _store_zipped(dst, c0, acc[0], acc[1], soff, smask, v, 0, HW, nvalid)
        acc = (z4, z4)  # row phase 1: kernel row 0 at dr = 1, row 2 at dr = 0
        for co in range(cpo):
            sb = (g * cpo + co) * P
            wb = (gb * cpo + co) * 36
            acc = _kernel_row1(acc, src, sb, o1, m1, split, wt, wb, 0)
            acc = _kernel_row1(acc, src, sb, o0, m0, split, wt, wb, 2)
        _store_zipped(dst, c0, acc[0], acc[1], soff, smask, v, 1, HW, nvalid)


@jit(nogil=True)
def _stride2_bwd_range(t0, t1, go, wt, gx, zero, loff, lmask, soff, smask, P, HW, G, cpi,
                       cpo, nblk, split):  # fmt: skip
    for t in range(t0, t1):
        if VECTOR_BYTES < 64:
            _stride2_bwd_task1(t, go, wt, gx, zero, loff, lmask, soff, smask, P, HW, G, cpi,
                               cpo, nblk, split)  # fmt: skip
        else:
            _stride2_bwd_task(t, go, wt, gx, zero, loff, lmask, soff, smask, P, HW, G, cpi,
                              cpo, nblk, split)  # fmt: skip


def stride2_backward_input(grad_out: np.ndarray, weight: np.ndarray, groups: int, H: int, W: int):
    """grad_x (N, C, H, W) of the 3x3 / stride 2 / pad 1 conv: grad_out (N, C_out, Ho, Wo)
    with Ho, Wo = ceil(H/2), ceil(W/2), weight (C_out, C/groups, 3, 3), same dtype.
    One task per (image, group, block of 4 input channels); see the section comment."""
    N, cout, Ho, Wo = grad_out.shape
    cpo, cpi = cout // groups, weight.shape[1]
    dt = grad_out.dtype
    nblk = -(-cpi // 4)
    wt = pack_weights(weight, groups, 4, transposed=True)
    loff, lmask, soff, smask, split = _stride2_tables(Ho, Wo, H, W, lanes(dt))
    gx = np.empty((N, groups * cpi, H, W), dt)
    go = np.ascontiguousarray(grad_out).reshape(N, -1)
    parallel_for(_stride2_bwd_range, N * groups * nblk, go, wt, gx.reshape(N, -1),
                 np.zeros(1, dt), loff, lmask, soff, smask, Ho * Wo, H * W, groups, cpi, cpo,
                 nblk, True if split else None)  # fmt: skip
    return gx


# --------------------------------------------------------------------------- weight gradient
#
# grad_w[co, c, kh, kw] = sum over images and output pixels p of
#     grad_out[co, p] * x[c, input pixel of (p, kh, kw)]
# with the lanes over *output channels*: grad_out is transposed per image to (P, C_out
# padded to whole vectors), x is copied into zero-bordered planes (so no masks: stride
# 1, one plane with rows W + 2 wide; stride 2, its 4 polyphase planes, each with a zero
# row above and a zero column on the left), and each FMA multiplies one grad_out vector
# by one x value broadcast from memory (a 4-byte load never straddles a cache line; the
# 64-byte shifted loads of the pixel-lane layout do, and cost two). The accumulators -
# 9 taps x 2 (input channel, output-channel vector) slots - stay in registers over a
# block of output rows.


_GT_BLOCK_BYTES = 16 * 1024  # transposed grad_out rows per pass over the slots


@jit(fastmath=FASTMATH)
def _taps9(acc, xp, i, ra, rb, rc, cq, c2, g):
    """acc[k] + xp[i + R[kh] + C[kw]] * g for the 9 taps k = (kh, kw) of one slot, with
    R = (ra, rb, rc) and C = (cq, 1, c2): stride 1 (one bordered plane, rows rs) R = (0,
    rs, 2 rs), C = (0, 1, 2); stride 2 (polyphase planes q floats apart) R = (2q, rs,
    2q + rs), C = (q, 1, q + 1) - the phase plane and the bordered row / column that hold
    the input pixel. Spelled out from three row bases (and literal column offsets at
    stride 1): with nine offsets read from a table LLVM kept 18 tap pointers for two slots
    and spilled half of them to the stack inside the loop (10 extra loads per 18 FMAs)."""
    u, v, w = i + ra, i + rb, i + rc
    return (
        vfma(vbcast(xp, u + cq), g, acc[0]),
        vfma(vbcast(xp, u + 1), g, acc[1]),
        vfma(vbcast(xp, u + c2), g, acc[2]),
        vfma(vbcast(xp, v + cq), g, acc[3]),
        vfma(vbcast(xp, v + 1), g, acc[4]),
        vfma(vbcast(xp, v + c2), g, acc[5]),
        vfma(vbcast(xp, w + cq), g, acc[6]),
        vfma(vbcast(xp, w + 1), g, acc[7]),
        vfma(vbcast(xp, w + c2), g, acc[8]),
    )


@jit(fastmath=FASTMATH)
def _fma2(a, b, k, xv, g0, g1):
    """(a[k] + xv * g0, b[k] + xv * g1): one broadcast input value for two vectors."""
    return vfma(xv, g0, a[k]), vfma(xv, g1, b[k])


@jit(fastmath=FASTMATH)
def _taps_1x2(a, b, xp, i, ra, rb, rc, cq, c2, g0, g1):
    """Two slots of one input channel (planes at i): each tap's value is broadcast once
    for both output-channel vectors. Tap (kh, kw) at i + R[kh] + C[kw] with R = (ra, rb,
    rc), C = (cq, 1, c2) as in `_taps9`."""
    u, v, w = i + ra, i + rb, i + rc
    a0, b0 = _fma2(a, b, 0, vbcast(xp, u + cq), g0, g1)
    a1, b1 = _fma2(a, b, 1, vbcast(xp, u + 1), g0, g1)
    a2, b2 = _fma2(a, b, 2, vbcast(xp, u + c2), g0, g1)
    a3, b3 = _fma2(a, b, 3, vbcast(xp, v + cq), g0, g1)
    a4, b4 = _fma2(a, b, 4, vbcast(xp, v + 1), g0, g1)
    a5, b5 = _fma2(a, b, 5, vbcast(xp, v + c2), g0, g1)
    a6, b6 = _fma2(a, b, 6, vbcast(xp, w + cq), g0, g1)
    a7, b7 = _fma2(a, b, 7, vbcast(xp, w + 1), g0, g1)
    a8, b8 = _fma2(a, b, 8, vbcast(xp, w + c2), g0, g1)
    return (a0, a1, a2, a3, a4, a5, a6, a7, a8), (b0, b1, b2, b3, b4, b5, b6, b7, b8)


@jit(fastmath=FASTMATH)
def _rows(a, b, xq, gq, x0, x1, r0, r1, Wo, rs, cw, v0, v1, stride, q4, L):
    """Output rows r0 .. r1 of two slots: (input planes at x0, vector v0) into a, (x1, v1)
    into b; q4 the size of a polyphase plane (stride 2)."""
    for r in range(r0, r1):
        for q in range(Wo):
            p = r * Wo + q
            g0 = vload(gq, p * cw + v0 * L)
            g1 = vload(gq, p * cw + v1 * L)
            e = r * rs + q
            if x0 == x1:  # one input channel, two vectors of output channels
                if stride == 1:
                    a, b = _taps_1x2(a, b, xq, x0 + e, 0, rs, 2 * rs, 0, 2, g0, g1)
                else:
                    q2 = 2 * q4
                    a, b = _taps_1x2(a, b, xq, x0 + e, q2, rs, q2 + rs, q4, q4 + 1, g0, g1)
            elif stride == 1:
                a = _taps9(a, xq, x0 + e, 0, rs, 2 * rs, 0, 2, g0)
                b = _taps9(b, xq, x1 + e, 0, rs, 2 * rs, 0, 2, g1)
            else:
                q2 = 2 * q4
                a = _taps9(a, xq, x0 + e, q2, rs, q2 + rs, q4, q4 + 1, g0)
                b = _taps9(b, xq, x1 + e, q2, rs, q2 + rs, q4, q4 + 1, g1)
    return a, b


@jit(fastmath=FASTMATH)
def _rows1(a, xq, gq, x0, r0, r1, Wo, rs, cw, v0, stride, q4, L):
    """`_rows` for one slot (9 accumulators: the AVX2 tile, `_bwd_weight_task`)."""
    for r in range(r0, r1):
        for q in range(Wo):
            p = r * Wo + q
            g0 = vload(gq, p * cw + v0 * L)
            e = r * rs + q
            if stride == 1:
                a = _taps9(a, xq, x0 + e, 0, rs, 2 * rs, 0, 2, g0)
            else:
                q2 = 2 * q4
                a = _taps9(a, xq, x0 + e, q2, rs, q2 + rs, q4, q4 + 1, g0)
    return a


@jit(fastmath=FASTMATH)
def _load9(acc, i, L):
    return (
        vload(acc, i),
        vload(acc, i + L),
        vload(acc, i + 2 * L),
        vload(acc, i + 3 * L),
        vload(acc, i + 4 * L),
        vload(acc, i + 5 * L),
        vload(acc, i + 6 * L),
        vload(acc, i + 7 * L),
        vload(acc, i + 8 * L),
    )


@jit(fastmath=FASTMATH)
def _store9(acc, i, L, a):
    for k in range(9):
        vstore(acc, i + k * L, a[k])


@jit(fastmath=FASTMATH)
def _bordered_copy(xq, xn, s0, H, W, c, cs, rs, stride, L):
    """Input channel c of one image (xn[s0 : s0 + H*W]) into its zero-bordered scratch
    planes at xq[c * cs:]: stride 1, one plane with a 1-pixel border; stride 2, the 4
    polyphase planes (2a + b holds x[2i + a, 2j + b]), each with a zero row above and a
    zero column on the left. Borders (and odd-size padding) are zero from allocation."""
    if stride == 1:
        d0 = c * cs + rs + 1
        for r in range(H):
            for q in range(0, W, L):
                m = (1 << min(L, W - q)) - 1
                vstorem(xq, d0 + r * rs + q, vloadm(xn, s0 + r * W + q, m), m)
    else:  # columns b, b + 2, ... of row r into row r // 2 + 1 of plane 2 * (r % 2) + b
        plane = cs // 4
        for r in range(H):
            for b in range(2):
                d0 = c * cs + (2 * (r % 2) + b) * plane + (r // 2 + 1) * rs + 1
                n = (W - b + 1) // 2
                for q in range(0, n, L):
                    m = (1 << min(L, n - q)) - 1
                    v = vgather(xn, s0 + r * W + b + 2 * q, 2, m)
                    vstorem(xq, d0 + q, v, m)


@jit(fastmath=FASTMATH)
def _bwd_weight_task(t, x, go, part, xp, gt, H, W, Ho, Wo, rs, cs, stride, G, cpi, cpo, ipc, RB, L):
    # x (N, C*H*W), go (N, C_out*Ho*Wo); task t = (chunk, group) accumulates images
    # [chunk*ipc, ...) into part[chunk, g] = (cpi, 9, cv*L) (cv vectors of output
    # channels); scratch of task t: xp[t] (cpi * cs + slack) zero-bordered planes (row
    # stride rs, output pixel (r, q) at r * rs + q; taps: `_taps9`), gt[t] (Ho*Wo*cv*L)
    # grad_out transposed; both zero outside the copied values
    ch = t // G
    g = t - ch * G
    n0 = ch * ipc
    n1 = min(x.shape[0], n0 + ipc)
    P = Ho * Wo
    cv = (cpo + L - 1) // L
    cw = cv * L
    acc = part[ch, g]
    xq = xp[t]
    gq = gt[t]
    nslots = cpi * cv
    for n in range(n0, n1):
        xn = x[n]
        gn = go[n]
        for c in range(cpi):
            _bordered_copy(xq, xn, (g * cpi + c) * H * W, H, W, c, cs, rs, stride, L)
        for v in range(cv):  # grad_out transposed to (pixel, channel): strided gathers
            s0 = (g * cpo + v * L) * P
            m = (1 << min(L, cpo - v * L)) - 1  # lanes past cpo stay 0
            for p in range(P):
                vstore(gq, p * cw + v * L, vgather(gn, s0 + p, P, m))
        for r0 in range(0, Ho, RB):  # row blocks: their grad_out rows stay in L1
            r1 = min(Ho, r0 + RB)
            if VECTOR_BYTES < 64:
                # 16 vector registers (AVX2): one slot at a time, 9 accumulators (two
                # slots' 18 would spill every tap)
                for s in range(nslots):
                    c0 = s // cv
                    v0 = s - c0 * cv
                    i0 = (c0 * 9 * cv + v0) * L
                    a = _load9(acc, i0, cw)
                    a = _rows1(a, xq, gq, c0 * cs, r0, r1, Wo, rs, cw, v0, stride, cs // 4, L)
                    _store9(acc, i0, cw, a)
                continue
            for s in range(0, nslots, 2):
                s1 = min(s + 1, nslots - 1)  # an odd last slot is computed twice
                c0 = s // cv
                v0 = s - c0 * cv
                c1 = s1 // cv
                v1 = s1 - c1 * cv
                i0 = (c0 * 9 * cv + v0) * L  # acc index of (c0, tap 0, vector v0)
                i1 = (c1 * 9 * cv + v1) * L
                a = _load9(acc, i0, cw)
                b = _load9(acc, i1, cw)
                x0, x1 = c0 * cs, c1 * cs
                a, b = _rows(a, b, xq, gq, x0, x1, r0, r1, Wo, rs, cw, v0, v1, stride, cs // 4, L)
                _store9(acc, i0, cw, a)
                if s1 > s:
                    _store9(acc, i1, cw, b)


@jit(nogil=True)
def _bwd_weight_range(
    t0, t1, x, go, part, xp, gt, H, W, Ho, Wo, rs, cs, stride, G, cpi, cpo, ipc, RB, L
):
    for t in range(t0, t1):
        _bwd_weight_task(
            t, x, go, part, xp, gt, H, W, Ho, Wo, rs, cs, stride, G, cpi, cpo, ipc, RB, L
        )


def lane_weight_grad(
    x3: np.ndarray, go3: np.ndarray, cpi: int, groups: int, H: int, W: int, stride: int
) -> np.ndarray:
    """grad_weight (C_out, cpi, 3, 3) of the 3x3 / pad 1 conv with stride 1 or 2: x3
    (N, C, H*W) and go3 (N, C_out, Ho*Wo) contiguous. Tasks are (chunk of images, group),
    ~8 of them or one per group; each keeps its accumulators in a private buffer and
    the chunks are summed at the end (the chunking does not depend on the thread count,
    so neither do the results)."""
    N = x3.shape[0]
    cout = go3.shape[1]
    cpo = cout // groups
    dt = x3.dtype
    nl = lanes(dt)
    cw = -(-cpo // nl) * nl
    if stride == 1:  # one plane with a 1-pixel zero border
        Ho, Wo = H, W
        rs, cs = W + 2, (H + 2) * (W + 2)
    else:  # 4 polyphase planes, each with a zero row above and a zero column on the left
        Ho, Wo = -(-H // 2), -(-W // 2)
        rs = Wo + 1
        cs = 4 * (Ho + 1) * rs
    ipc = max(1, min(N, (N * groups) // 8))
    chunks = -(-N // ipc)
    part = np.zeros((chunks, groups, cpi * 9 * cw), dt)
    xp = np.zeros((chunks * groups, cpi * cs + nl), dt)
    gt = np.zeros((chunks * groups, Ho * Wo * cw), dt)
    parallel_for(
        _bwd_weight_range,
        chunks * groups,
        x3.reshape(N, -1),
        go3.reshape(N, -1),
        part,
        xp,
        gt,
        H,
        W,
        Ho,
        Wo,
        rs,
        cs,
        stride,
        groups,
        cpi,
        cpo,
        ipc,
        max(1, _GT_BLOCK_BYTES // (Wo * cw * dt.itemsize)),
        nl,
    )
    gw = part.sum(axis=0).reshape(groups, cpi, 9, cw)[:, :, :, :cpo]
    return np.ascontiguousarray(gw.transpose(0, 3, 1, 2)).reshape(cout, cpi, 3, 3)
