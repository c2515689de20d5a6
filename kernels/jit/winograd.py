"""Winograd F(2x2, 3x3): the 3x3 / stride 1 / pad 1 conv with 2.25x fewer multiplies.

(Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks", 2016.) Cut the
output plane into 2x2 tiles. Tile (i, j) reads the 4x4 input patch d at rows 2i-1 ..
2i+2 and columns 2j-1 .. 2j+2, and for a 3x3 kernel g

    y = A^T [ (G g G^T) * (B^T d B) ] A              (* elementwise; y is the 2x2 tile)

    B^T = [[1, 0,-1, 0],    G = [[  1,    0,   0],    A^T = [[1, 1, 1, 0],
           [0, 1, 1, 0],         [1/2,  1/2, 1/2],           [0, 1,-1,-1]]
           [0,-1, 1, 0],         [1/2, -1/2, 1/2],
           [0, 1, 0,-1]]         [  0,    0,   1]]

Summed over input channels, the elementwise product becomes 16 independent matrix
products, one per position p of the transformed 4x4 tile:

    M_p[co, t] = sum_ci U_p[co, ci] * V_p[ci, t]       U = G g G^T,  V = B^T d B

so a tile costs 16 multiply-adds per (ci, co) pair where the direct conv spends 36 on
its 4 outputs. The transforms are adds and subtracts only.

A SIMD vector holds up to LANES consecutive tiles of one row of tiles, or two rows of
at most LANES/2 tiles, one per half (`winograd_table`: small planes would otherwise
leave most lanes empty). One task per (image, group, block of tile rows), all in cache:

    V[p, ci, vectors] = B^T d B     per patch row, two vector loads of x and their
                                    even / odd elements (`_patch_row`): no padded copy
    for each block of 8 output channels, for each pair of vectors:
        M[p, o, 2 vectors] = sum_ci U_p[o, ci] * V[p, ci, 2 vectors]   8 x 2 in registers
        y = A^T M A + bias          the 2x2 outputs of a vector's tiles are two
                                    interleaved vectors per output row (`vziplo`/`vziphi`)

The weight gradient (`weight_grad`, below) is the backward of the same algorithm.

Rounding: the transforms sum at most 9 inputs with coefficients 1 and 1/2, so the error
is that of the direct conv's sum (measured: max |error| vs float64 1.8e-6, direct
6.2e-6, dense 64->64 56x56 float32). Non-finite values: a NaN or inf anywhere in a 4x4
patch reaches all 4 outputs of its tile (inf - inf, 0 * inf), and large finite inputs
can overflow in a transform, so an output that comes out non-finite is recomputed by
the caller with another algorithm (`forward` returns a flag); a finite output means
every input it read was finite.
"""

from __future__ import annotations

import functools

import numpy as np

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
    vneg,
    vstore,
    vstorem,
    vsub,
    vunziphi,
    vunziplo,
    vziphi,
    vziplo,
)
from .tapconv import _fma8, _lane_bits, _splat8

_G = np.array([[1.0, 0.0, 0.0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0.0, 0.0, 1.0]])

# vectors of tiles per task (at least): enough to reuse each transformed weight a few
# times, few enough that V (16 x cpi x vectors) stays in L2
_TASK_VECTORS = 4
# A forward task reads the transformed weights of its group once: 16 * cpo * cpi
# values, 4 MB for 256 -> 256. When the images and rows of tiles give fewer than 2
# tasks (a batch of 1 at 14x14 is one task: one thread, the other idle) and the
# weights outgrow L2, the output channels are split between 2 tasks, each transforming
# the input again. The split depends on the shapes only and every output is one
# task's, so the results are bit-identical. Measured (ms, float32, 2 threads, batch 1,
# one task -> split): 256->256 14x14 1.37 -> 0.95, 512->512 7x7 2.70 -> 2.01; but
# 128->128 14x14 0.33 -> 0.36, 64->64 16x16 0.11 -> 0.14 (the transform repeated).
_MIN_TASKS = 2
_SPLIT_MIN_WEIGHT_BYTES = 2 << 20


@functools.lru_cache(maxsize=64)
def winograd_table(H: int, W: int, nlanes: int):
    """How the 2x2 tiles of an H x W "same" output map to SIMD vectors of `nlanes`
    lanes, and their lane masks: (cmk, omk, two).

    Rows of more than nlanes / 2 tiles (two = 0): a vector holds up to nlanes tiles of
    one row of tiles, nvr = ceil(ceil(W / 2) / nlanes) vectors per row, and its two
    halves are the tiles 0 .. nlanes/2 - 1 and nlanes/2 .. nlanes - 1 of its stretch.
    Shorter rows (two = 1, e.g. 7 tiles at 14x14 with 16 lanes): a vector holds two rows
    of tiles, one per half, so small planes do not leave most lanes empty; nvr = 1 (one
    vector per pair of rows). Either way a half's patches are the even / odd elements of
    one vector load per patch row and its outputs one interleaved vector per output row,
    the second half `_second_half` elements after the first.

    cmk uint32 (nvr, 4): per column vector cv, the lanes of the 4 loads of a patch row
        (starting at input columns 2 * cv * nlanes + (-1, -1 + nlanes, 1, 1 + nlanes),
        or (-1, -1, 1, 1) in the next row of tiles for the second and fourth when two)
        that are inside the image;
    omk uint32 (nvr, 2): the lanes of the outputs of the two halves (starting at columns
        2 * cv * nlanes + (0, nlanes), or (0, 0) when two) that are inside the output.
    """
    two = int((W + 1) // 2 <= nlanes // 2)
    nvr = 1 if two else -(-((W + 1) // 2) // nlanes)
    start = 2 * nlanes * np.arange(nvr)[:, None, None]
    lane = np.arange(nlanes)
    second = 0 if two else nlanes
    cols = start + np.array([-1, second - 1, 1, second + 1])[None, :, None] + lane
    cmk = _lane_bits(((cols >= 0) & (cols < W)).reshape(-1), 4 * nvr, nlanes).reshape(nvr, 4)
    cols = start + np.array([0, second])[None, :, None] + lane
    omk = _lane_bits((cols < W).reshape(-1), 2 * nvr, nlanes).reshape(nvr, 2)
    return cmk, omk, two


def tile_rows_per_task(nvr: int, two: int, Hq: int) -> int:
    """Rows of tiles per task: at least `_TASK_VECTORS` vectors, an even count (tasks
    take vectors in pairs); with two rows of tiles per vector, a multiple of 4 rows, at
    most 2 * `_TASK_VECTORS` and no more than the plane needs."""
    if two:
        return min(2 * _TASK_VECTORS, -(-Hq // 4) * 4)
    rows = max(1, _TASK_VECTORS // nvr)
    return rows + (rows * nvr) % 2


@jit(fastmath=FASTMATH)
def _vector_tiles(v, r0, nvr, two):
    """(row of tiles of the first half, row of the second half, column vector) of
    vector v of a task whose first row of tiles is r0."""
    if two:
        return r0 + 2 * v, r0 + 2 * v + 1, 0
    return r0 + v // nvr, r0 + v // nvr, v % nvr


@jit(fastmath=FASTMATH)
def _second_half(W, two, L):
    """Elements from a vector's first half to its second, in x and in the output: the
    next 2 * L/2 columns, or (two rows of tiles per vector) two rows down."""
    return 2 * W if two else L


def transform_weights(weight: np.ndarray, groups: int) -> np.ndarray:
    """(C_out, cpi, 3, 3) -> flat (groups, blocks, 16, cpi + 1, 8): U_p = G g G^T for
    the 8 output channels of each block side by side (zero-padded). The spare row keeps
    the 16 panels of a block from starting at the same address mod 4 KB (with 128 input
    channels they would share one L1 set: 0.76 ms instead of ~0.05 for 128 -> 128).
    One task per block of 8 outputs: every forward and Winograd input gradient
    transforms its weights again (ResNet-50 batch 2: 22 calls a step, 10.6 ms when this
    ran on one thread through a zeroed array), on the threads from `_TRANSFORM_PARALLEL`
    weights on."""
    cout, cpi = weight.shape[:2]
    cpo = cout // groups
    nblk = -(-cpo // 8)
    up = np.empty((groups, nblk, 16, cpi + 1, 8), weight.dtype)
    w = weight.reshape(groups, cpo, cpi, 9)
    if cout * cpi * 9 >= _TRANSFORM_PARALLEL:
        parallel_for(_transform_weights_range, groups * nblk, w, up)
    else:
        _transform_weights_range(0, groups * nblk, w, up)
    return up.reshape(-1)


# weights (C_out * cpi * 9) from which the transform runs on the threads. Measured (ms,
# float32, one thread / two, C -> C): 64 0.024 / 0.051, 128 0.103 / 0.121, 256 0.44 /
# 0.32, 512 (serial before: 2.27) / 1.0. Writing U (16/9 of the weights) bounds it.
_TRANSFORM_PARALLEL = 256 * 128 * 9


@jit(nogil=True, fastmath=FASTMATH)
def _transform_weights_range(t0, t1, w, up):
    # w (G, cpo, cpi, 9) -> up[g, blk, 4a + b, c, j] = (G g G^T)[a, b] of output
    # blk * 8 + j, input channel c; task t = g * blocks + blk writes all of up[g, blk]
    # (zeros past cpo and in the spare row c = cpi)
    cpo, cpi = w.shape[1], w.shape[2]
    nblk = up.shape[1]
    half = w.dtype.type(0.5)
    zero = w.dtype.type(0)
    for t in range(t0, t1):
        g = t // nblk
        blk = t - g * nblk
        u = up[g, blk]
        nj = min(8, cpo - blk * 8)
        for p in range(16):
            for j in range(8):
                u[p, cpi, j] = zero
            for c in range(cpi):
                for j in range(nj, 8):
                    u[p, c, j] = zero
        for c in range(cpi):
            for j in range(nj):  # innermost: u's stores are 8 consecutive values a p
                k = w[g, blk * 8 + j, c]
                # rows of G g: k[0:3], (k[0:3] + k[3:6] + k[6:9]) / 2, (... - ...) / 2, k[6:9]
                _gt_row(u, 0, c, j, k[0], k[1], k[2], half)
                _gt_row(
                    u, 1, c, j, (k[0] + k[3] + k[6]) * half, (k[1] + k[4] + k[7]) * half,
                    (k[2] + k[5] + k[8]) * half, half,
                )  # fmt: skip
                _gt_row(
                    u, 2, c, j, (k[0] - k[3] + k[6]) * half, (k[1] - k[4] + k[7]) * half,
                    (k[2] - k[5] + k[8]) * half, half,
                )  # fmt: skip
                _gt_row(u, 3, c, j, k[6], k[7], k[8], half)


@jit(fastmath=FASTMATH)
def _gt_row(u, a, c, j, k0, k1, k2, half):
    """Row a of (G g) G^T from row a of G g, (k0, k1, k2): u[4a .. 4a+3, c, j]."""
    u[4 * a, c, j] = k0
    u[4 * a + 1, c, j] = (k0 + k1 + k2) * half
    u[4 * a + 2, c, j] = (k0 - k1 + k2) * half
    u[4 * a + 3, c, j] = k2


@jit(fastmath=FASTMATH)
def _transform_rows(V, xn, c0, cpi, r0, R, H, W, cmk, two, rows, vstep, L):
    """V[p, c, v] = (B^T d B)[p] for the input channels c0 .. c0+cpi-1 of one image xn
    (C * H * W) and the vectors v of tile rows r0 .. r0+R-1 (`winograd_table`'s layout;
    V's p step `vstep`, its channel step nvt * L); rows: scratch (nvt,) for the
    patch-row masks (bits 0-3: the first half's patch rows inside the image, bits 4-7
    the second half's; rows of tiles past the last one read nothing)."""
    Hq = (H + 1) // 2
    nvr = cmk.shape[0]
    nvt = R * nvr // (1 + two)
    d2 = _second_half(W, two, L)
    for v in range(nvt):
        ta, tb, _ = _vector_tiles(v, r0, nvr, two)
        rows[v] = 0
        for a in range(4):
            if ta < Hq and 0 <= 2 * ta - 1 + a < H:
                rows[v] |= 1 << a
            if tb < Hq and 0 <= 2 * tb - 1 + a < H:
                rows[v] |= 1 << (4 + a)
    for c in range(cpi):
        for v in range(nvt):
            ta, _, cv = _vector_tiles(v, r0, nvr, two)
            i = (c0 + c) * H * W + 2 * ta * W + 2 * cv * L
            _input_transform(V, xn, i, W, d2, rows[v], cmk[cv], (c * nvt + v) * L, vstep)


@jit(fastmath=FASTMATH)
def _rows(d0, d1, d2, d3):
    """B^T applied to 4 values: (d0 - d2, d1 + d2, d2 - d1, d1 - d3)."""
    return vsub(d0, d2), vadd(d1, d2), vsub(d2, d1), vsub(d1, d3)


@jit(fastmath=FASTMATH)
def _patch_row(src, i, d2, m0, m1, m2, m3):
    """Row of the 4x4 patches of a vector of tiles: d[., b] = src[i - 1 + b + 2 * lane]
    in the first half, src[i + d2 - 1 + b + 2 * lane'] in the second (the even / odd
    elements of two pairs of vector loads; lanes outside the image read 0)."""
    a0 = vloadm(src, i - 1, m0)
    a1 = vloadm(src, i - 1 + d2, m1)
    b0 = vloadm(src, i + 1, m2)
    b1 = vloadm(src, i + 1 + d2, m3)
    return vunziplo(a0, a1), vunziphi(a0, a1), vunziplo(b0, b1), vunziphi(b0, b1)


@jit(fastmath=FASTMATH)
def _input_transform(V, src, i, W, d2, rows, cm, o, step):
    """V[(4a + b) * step + o] = (B^T d B)[a, b] for one vector of tiles whose patches
    start at src[i - W - 1] (row -1, column -1), those of its second half d2 further;
    bits a / 4 + a of `rows`: patch row a of the first / second half is inside the
    image; cm: the column masks of its loads (`winograd_table`)."""
    r0 = _patch_row(src, i - W, d2, *_row_masks(cm, rows, 0))
    r1 = _patch_row(src, i, d2, *_row_masks(cm, rows, 1))
    r2 = _patch_row(src, i + W, d2, *_row_masks(cm, rows, 2))
    r3 = _patch_row(src, i + 2 * W, d2, *_row_masks(cm, rows, 3))
    c0 = _rows(r0[0], r1[0], r2[0], r3[0])  # column b of B^T d
    c1 = _rows(r0[1], r1[1], r2[1], r3[1])
    c2 = _rows(r0[2], r1[2], r2[2], r3[2])
    c3 = _rows(r0[3], r1[3], r2[3], r3[3])
    _store_row(V, o, step, 0, _rows(c0[0], c1[0], c2[0], c3[0]))
    _store_row(V, o, step, 1, _rows(c0[1], c1[1], c2[1], c3[1]))
    _store_row(V, o, step, 2, _rows(c0[2], c1[2], c2[2], c3[2]))
    _store_row(V, o, step, 3, _rows(c0[3], c1[3], c2[3], c3[3]))


@jit(fastmath=FASTMATH)
def _row_masks(cm, rows, a):
    """The 4 load masks of patch row a: cm, with a half's two loads masked off where
    its patch row is outside the image."""
    z = cm[0] & 0
    first = (rows >> a) & 1
    second = (rows >> (4 + a)) & 1
    return (cm[0] if first else z, cm[1] if second else z, cm[2] if first else z,
            cm[3] if second else z)  # fmt: skip


@jit(fastmath=FASTMATH)
def _store_row(V, o, step, a, r):
    """V[(4a + b) * step + o] = r[b], b = 0..3 (row a of a transformed tile)."""
    vstore(V, (a * 4) * step + o, r[0])
    vstore(V, (a * 4 + 1) * step + o, r[1])
    vstore(V, (a * 4 + 2) * step + o, r[2])
    vstore(V, (a * 4 + 3) * step + o, r[3])


@jit(fastmath=FASTMATH)
def _store8(M, i, step, acc):
    """M[i + o * step] = acc[o], o = 0..7."""
    vstore(M, i, acc[0])
    vstore(M, i + step, acc[1])
    vstore(M, i + 2 * step, acc[2])
    vstore(M, i + 3 * step, acc[3])
    vstore(M, i + 4 * step, acc[4])
    vstore(M, i + 5 * step, acc[5])
    vstore(M, i + 6 * step, acc[6])
    vstore(M, i + 7 * step, acc[7])


@jit(fastmath=FASTMATH)
def _output_transform(M, i, step):
    """(A^T m A) of the 16 vectors m[p] = M[i + p * step]: the outputs y00, y01, y10,
    y11 of each tile (row 0 of A^T m = m0 + m1 + m2, row 1 = m1 - m2 - m3)."""
    s00, s10 = _columns(M, i, step, 0)
    s01, s11 = _columns(M, i, step, 1)
    s02, s12 = _columns(M, i, step, 2)
    s03, s13 = _columns(M, i, step, 3)
    return (
        vadd(vadd(s00, s01), s02),
        vsub(vsub(s01, s02), s03),
        vadd(vadd(s10, s11), s12),
        vsub(vsub(s11, s12), s13),
    )


@jit(fastmath=FASTMATH)
def _columns(M, i, step, b):
    """Column b of A^T m: (m0b + m1b + m2b, m1b - m2b - m3b)."""
    m0 = vload(M, i + b * step)
    m1 = vload(M, i + (4 + b) * step)
    m2 = vload(M, i + (8 + b) * step)
    m3 = vload(M, i + (12 + b) * step)
    return vadd(vadd(m0, m1), m2), vsub(vsub(m1, m2), m3)


@jit(nogil=True, fastmath=FASTMATH)
def _forward_range(t0, t1, x, up, bias, out, bad, cmk, omk, two, H, W, G, cpi, cpo, R, S, L):
    # x (N, C * H * W); up from transform_weights; bias (G * nblk * 8,) padded; out
    # (N, C_out * H * W); bad (tasks,) non-finite flags; a task: R rows of tiles of one
    # (image, group) in nvt vectors (`winograd_table`), for the s-th of S equal chunks of
    # the group's blocks of 8 output channels
    Hq = (H + 1) // 2
    HW = H * W
    nvr = cmk.shape[0]
    nvt = R * nvr // (1 + two)  # vectors per task (even)
    d2 = _second_half(W, two, L)
    nrb = -(-Hq // R)
    nblk = -(-cpo // 8)
    dt = x.dtype
    # (p, ci, vector, lane) with a spare vector per p (see transform_weights)
    vstep = (cpi * nvt + 1) * L
    V = np.empty(16 * vstep, dt)
    M = np.empty(16 * 8 * 2 * L, dt)  # (p, o, 2 vectors, lane)
    rows = np.empty(nvt, np.int64)  # patch rows inside the image (`_transform_rows`)
    zero = np.zeros(max(L, 8), dt)  # _splat8 reads 8 values: more than a vector of float64 on AVX2
    lanes_ = np.empty(L, dt)
    for t in range(t0, t1):
        n = t // (G * nrb * S)
        r = t - n * (G * nrb * S)
        g = r // (nrb * S)
        r = r - g * (nrb * S)
        r0 = (r // S) * R
        s = r - (r // S) * S
        xn = x[n]
        dst = out[n]
        _transform_rows(V, xn, g * cpi, cpi, r0, R, H, W, cmk, two, rows, vstep, L)
        chk = vload(zero, 0)
        for blk in range(s * nblk // S, (s + 1) * nblk // S):
            gb = g * nblk + blk
            for v in range(0, nvt, 2):
                for p in range(16):
                    wb = (gb * 16 + p) * (cpi + 1) * 8
                    vb = p * vstep + v * L
                    if VECTOR_BYTES < 64:
                        # 16 vector registers (AVX2): 8 x 2 accumulators would spill, so
                        # the two vectors one after the other (8 x 1), weights read twice
                        for j in range(2):
                            a0 = _splat8(zero, 0)
                            for c in range(cpi):
                                a0 = _fma8(a0, vload(V, vb + c * nvt * L + j * L), up, wb + c * 8)
                            _store8(M, p * 8 * 2 * L + j * L, 2 * L, a0)
                        continue
                    a0 = _splat8(zero, 0)
                    a1 = a0
                    for c in range(cpi):
                        a0 = _fma8(a0, vload(V, vb + c * nvt * L), up, wb + c * 8)
                        a1 = _fma8(a1, vload(V, vb + c * nvt * L + L), up, wb + c * 8)
                    _store8(M, p * 8 * 2 * L, 2 * L, a0)
                    _store8(M, p * 8 * 2 * L + L, 2 * L, a1)
                for o in range(min(8, cpo - blk * 8)):
                    b = vbcast(bias, gb * 8 + o)
                    ob = (g * cpo + blk * 8 + o) * HW
                    for j in range(2):
                        ta, tb, cv = _vector_tiles(v + j, r0, nvr, two)
                        if ta >= Hq:
                            continue
                        y00, y01, y10, y11 = _output_transform(M, (o * 2 + j) * L, 8 * 2 * L)
                        y00 = vadd(y00, b)
                        y01 = vadd(y01, b)
                        y10 = vadd(y10, b)
                        y11 = vadd(y11, b)
                        # chk turns NaN if any output is not finite (0 * inf = NaN)
                        chk = vfma(vadd(vadd(y00, y01), vadd(y10, y11)), vload(zero, 0), chk)
                        # output rows 2ta, 2ta + 1 (first half) and 2tb, 2tb + 1
                        i = ob + 2 * ta * W + 2 * cv * L
                        vstorem(dst, i, vziplo(y00, y01), omk[cv, 0])
                        if 2 * ta + 1 < H:
                            vstorem(dst, i + W, vziplo(y10, y11), omk[cv, 0])
                        if tb < Hq:
                            vstorem(dst, i + d2, vziphi(y00, y01), omk[cv, 1])
                            if 2 * tb + 1 < H:
                                vstorem(dst, i + d2 + W, vziphi(y10, y11), omk[cv, 1])
        vstore(lanes_, 0, chk)
        s = dt.type(0)
        for lane in range(L):
            s += lanes_[lane]
        bad[t] = not (s == 0)


def forward(x: np.ndarray, weight: np.ndarray, bias, groups: int):
    """(out, finite) for the 3x3 / stride 1 / pad 1 conv of x (N, C, H, W) contiguous
    with weight (C_out, C/groups, 3, 3) and bias (C_out,) or None: out (N, C_out, H, W);
    `finite` False when some output is NaN or inf (recompute it another way: see the
    module docstring)."""
    N, C, H, W = x.shape
    cout, cpi = weight.shape[:2]
    cpo = cout // groups
    dt = x.dtype
    nl = lanes(dt)
    if N == 0:
        return np.empty((0, cout, H, W), dt), True
    cmk, omk, two = winograd_table(H, W, nl)
    R = tile_rows_per_task(cmk.shape[0], two, (H + 1) // 2)
    nblk = -(-cpo // 8)
    bp = np.zeros((groups, nblk * 8), dt)
    if bias is not None:
        bp[:, :cpo] = np.asarray(bias, dt).reshape(groups, cpo)
    out = np.empty((N, cout, H, W), dt)
    ntasks = N * groups * -(-((H + 1) // 2) // R)
    S = 1  # chunks of output channels (see `_MIN_TASKS`)
    if ntasks < _MIN_TASKS and 16 * cpo * cpi * dt.itemsize >= _SPLIT_MIN_WEIGHT_BYTES:
        S = min(nblk, _MIN_TASKS)
    ntasks *= S
    bad = np.zeros(ntasks, np.bool_)
    parallel_for(
        _forward_range,
        ntasks,
        x.reshape(N, -1),
        transform_weights(weight, groups),
        bp.reshape(-1),
        out.reshape(N, -1),
        bad,
        cmk,
        omk,
        two,
        H,
        W,
        groups,
        cpi,
        cpo,
        R,
        S,
        nl,
    )
    return out, not bad.any()


# --------------------------------------------------------------------------- weight gradient
#
# The forward is y = A^T [ sum_ci U_ci * V_ci ] A per tile, so its weight gradient is
#
#     dU_p[co, ci] = sum over tiles t of Y_p[co, t] * V_p[ci, t]     Y = A dy A^T
#     dg = G^T dU G                                                  (4x4 -> 3x3)
#
# with dy the 2x2 tile of grad_out and V the forward's input transform: the backward of
# the forward's own algorithm, 16 matrix products reducing over tiles. Here the output
# channels are the SIMD lanes (as in tapconv's lane weight gradient) so the reduction
# over tiles needs no horizontal sums: Y is built transposed, (tile, output channels),
# from 4 strided gathers of grad_out per tile and vector of channels, and each FMA
# multiplies one vector of Y by one V value broadcast from memory (8 input channels x
# 2 vectors of output channels in registers). A task sums one (image, group, chunk of
# tile rows) into its own partial dU; the partials are added in task order.

# at least this many tasks (so a batch of 1 or 2 still keeps 2 threads busy); the split
# depends on the shapes only, so the result does not depend on the thread count
_WGRAD_MIN_TASKS = 4
_WGRAD_TASKS = 16  # tasks a call is cut into, at least (images per task: N * G * chunks / 16)


@jit(fastmath=FASTMATH)
def _grad_transform(Y, go, i, HW, W, rows, cols, cmask, o, step, L):
    """Y[(4a + b) * step + o] = (A dy A^T)[a, b] for the 2x2 grad_out tile dy whose top
    left is go[i] of each of L channels (stride HW); rows / cols: how many of its 2 rows
    / columns are inside the output; cmask: the lanes of real channels."""
    z = cmask & 0
    m0 = cmask if rows > 0 else z
    m1 = cmask if rows > 1 else z
    a = vgather(go, i, HW, m0)
    b = vgather(go, i + 1, HW, m0 if cols > 1 else z)
    c = vgather(go, i + W, HW, m1)
    d = vgather(go, i + W + 1, HW, m1 if cols > 1 else z)
    # A dy: rows (a, b), (a + c, b + d), (a - c, b - d), (-c, -d); then each row (u, v)
    # times A^T: (u, u + v, u - v, -v)
    _grad_row(Y, o, step, 0, a, b)
    _grad_row(Y, o, step, 1, vadd(a, c), vadd(b, d))
    _grad_row(Y, o, step, 2, vsub(a, c), vsub(b, d))
    _grad_row(Y, o, step, 3, vneg(c), vneg(d))


@jit(fastmath=FASTMATH)
def _grad_row(Y, o, step, r, u, v):
    vstore(Y, (4 * r) * step + o, u)
    vstore(Y, (4 * r + 1) * step + o, vadd(u, v))
    vstore(Y, (4 * r + 2) * step + o, vsub(u, v))
    vstore(Y, (4 * r + 3) * step + o, vneg(v))


@jit(fastmath=FASTMATH)
def _fma8_bcast(acc, yv, V, i, stride):
    """acc[k] + yv * V[i + k * stride], k = 0..7 (8 input channels)."""
    return (
        vfma(yv, vbcast(V, i), acc[0]),
        vfma(yv, vbcast(V, i + stride), acc[1]),
        vfma(yv, vbcast(V, i + 2 * stride), acc[2]),
        vfma(yv, vbcast(V, i + 3 * stride), acc[3]),
        vfma(yv, vbcast(V, i + 4 * stride), acc[4]),
        vfma(yv, vbcast(V, i + 5 * stride), acc[5]),
        vfma(yv, vbcast(V, i + 6 * stride), acc[6]),
        vfma(yv, vbcast(V, i + 7 * stride), acc[7]),
    )


@jit(fastmath=FASTMATH)
def _load8(P, i, stride):
    return (
        vload(P, i),
        vload(P, i + stride),
        vload(P, i + 2 * stride),
        vload(P, i + 3 * stride),
        vload(P, i + 4 * stride),
        vload(P, i + 5 * stride),
        vload(P, i + 6 * stride),
        vload(P, i + 7 * stride),
    )


@jit(nogil=True, fastmath=FASTMATH)
def _wgrad_range(
    t0, t1, x, go, parts, cmk, two, cvalid, H, W, G, cpi, cpo, R, chunks, cpi8, cop, L, B
):
    # x (N, C * H * W), go (N, C_out * H * W); parts (tasks, 16 * cpi8 * cop): per task
    # dU (p, input channel, output channel), channels padded to cpi8 (8) and cop (2
    # vectors); cvalid (cop // L,) lane masks of real output channels; task t = (block
    # of B images, group, chunk of tile rows)
    Hq = (H + 1) // 2
    HW = H * W
    nvr = cmk.shape[0]
    nvt = R * nvr // (1 + two)
    T = nvt * L  # tiles (lanes) of a block of R tile rows
    nrb = -(-Hq // R)
    per_chunk = -(-nrb // chunks)
    dt = x.dtype
    vstep = (cpi8 * nvt + 1) * L  # V (p, ci, tile) with a spare vector per p
    V = np.zeros(16 * vstep, dt)  # rows cpi..cpi8 stay 0
    ystep = T * cop + L  # Y (p, tile, output channel)
    Y = np.empty(16 * ystep, dt)
    rows = np.empty(nvt, np.int64)
    for t in range(t0, t1):
        nb = t // (G * chunks)
        r = t - nb * (G * chunks)
        g = r // chunks
        ch = r - g * chunks
        part = parts[t]
        part[:] = 0
        for n in range(nb * B, min(x.shape[0], (nb + 1) * B)):
            xn = x[n]
            gn = go[n]
            for rb in range(ch * per_chunk, min(nrb, (ch + 1) * per_chunk)):
                r0 = rb * R
                _transform_rows(V, xn, g * cpi, cpi, r0, R, H, W, cmk, two, rows, vstep, L)
                for v in range(nvt):  # Y of the tile in each lane, as V's layout places it
                    ta, tb, cv = _vector_tiles(v, r0, nvr, two)
                    for lane in range(L):
                        if two:  # first half: row ta, second half: row tb
                            ti = ta if lane < L // 2 else tb
                            tj = lane % (L // 2)
                        else:
                            ti, tj = ta, cv * L + lane
                        oh = 2 * ti
                        nrows = min(2, H - oh) if ti < Hq else 0
                        ncols = min(2, W - 2 * tj)
                        inside = nrows if ncols > 0 else 0  # phantom tiles past the edge: 0
                        for k in range(cop // L):
                            i = (g * cpo + k * L) * HW + oh * W + 2 * tj
                            o = (v * L + lane) * cop + k * L
                            _grad_transform(Y, gn, i, HW, W, inside, ncols, cvalid[k], o, ystep, L)
                for p in range(16):
                    for c0 in range(0, cpi8, 8):
                        for k in range(0, cop, 2 * L):
                            d = (p * cpi8 + c0) * cop + k
                            vb = p * vstep + c0 * nvt * L
                            yb = p * ystep + k
                            if VECTOR_BYTES < 64:  # AVX2: 8 x 1, as in the forward
                                for j in range(2):
                                    a0 = _load8(part, d + j * L, cop)
                                    for s in range(T):
                                        yv = vload(Y, yb + s * cop + j * L)
                                        a0 = _fma8_bcast(a0, yv, V, vb + s, nvt * L)
                                    _store8(part, d + j * L, cop, a0)
                                continue
                            a0 = _load8(part, d, cop)
                            a1 = _load8(part, d + L, cop)
                            for s in range(T):
                                a0 = _fma8_bcast(a0, vload(Y, yb + s * cop), V, vb + s, nvt * L)
                                a1 = _fma8_bcast(a1, vload(Y, yb + s * cop + L), V, vb + s, nvt * L)
                            _store8(part, d, cop, a0)
                            _store8(part, d + L, cop, a1)


def weight_grad(x: np.ndarray, grad_out: np.ndarray, cpi: int, groups: int) -> np.ndarray:
    """grad_weight (C_out, cpi, 3, 3) of the 3x3 / stride 1 / pad 1 conv: x (N, C, H, W)
    and grad_out (N, C_out, H, W) contiguous, in one dtype.

    Its sums differ from the reference's only in rounding when everything is finite; a
    non-finite input can give NaN where the reference has inf (the caller checks the
    result and recomputes, as for every fast weight gradient)."""
    N, C, H, W = x.shape
    cout = grad_out.shape[1]
    cpo = cout // groups
    dt = x.dtype
    nl = lanes(dt)
    if N == 0:
        return np.zeros((cout, cpi, 3, 3), dt)
    cmk, _, two = winograd_table(H, W, nl)
    R = tile_rows_per_task(cmk.shape[0], two, (H + 1) // 2)
    nrb = -(-((H + 1) // 2) // R)
    chunks = min(nrb, max(1, -(-_WGRAD_MIN_TASKS // (N * groups))))
    cpi8 = -(-cpi // 8) * 8
    cop = -(-cpo // (2 * nl)) * 2 * nl
    lane = np.arange(cop)
    cvalid = _lane_bits(lane < cpo, cop // nl, nl)
    # B images a task: at least _WGRAD_TASKS tasks (never fewer images than that per
    # group-chunk), so few partials to sum; a fixed cut, whatever the thread count
    B = max(1, N // max(1, -(-_WGRAD_TASKS // (groups * chunks))))
    nimg = -(-N // B)
    ntasks = nimg * groups * chunks
    parts = np.empty((ntasks, 16 * cpi8 * cop), dt)
    parallel_for(
        _wgrad_range,
        ntasks,
        x.reshape(N, -1),
        grad_out.reshape(N, -1),
        parts,
        cmk,
        two,
        cvalid,
        H,
        W,
        groups,
        cpi,
        cpo,
        R,
        chunks,
        cpi8,
        cop,
        nl,
        B,
    )
    gw = np.empty((groups, cpi, cpo, 9), dt)
    _wgrad_finish(parts.reshape(nimg, groups, chunks, 16, cpi8, cop), gw)
    return np.ascontiguousarray(gw.transpose(0, 2, 1, 3)).reshape(cout, cpi, 3, 3)


@jit(fastmath=FASTMATH)
def _wgrad_finish(parts, gw):
    # parts (N, G, chunks, 16, cpi8, cop) -> gw[g, ci, co] = G^T dU G, dU the sum of
    # the partials in task order (G^T rows: (1, 1/2, 1/2, 0), (0, 1/2, -1/2, 0),
    # (0, 1/2, 1/2, 1))
    N, G, chunks, _, cpi8, cop = parts.shape
    half = gw.dtype.type(0.5)
    du = np.empty((16, cpi8, cop), gw.dtype)
    h = np.empty(12, gw.dtype)  # G^T dU: 3 x 4
    for g in range(G):
        du[:] = parts[0, g, 0]
        for n in range(N):
            for ch in range(chunks):
                if n + ch > 0:
                    du += parts[n, g, ch]
        for ci in range(gw.shape[1]):
            for co in range(gw.shape[2]):
                for b in range(4):
                    d0, d1, d2, d3 = (
                        du[b, ci, co],
                        du[4 + b, ci, co],
                        du[8 + b, ci, co],
                        du[12 + b, ci, co],
                    )
                    h[b] = d0 + (d1 + d2) * half
                    h[4 + b] = (d1 - d2) * half
                    h[8 + b] = (d1 + d2) * half + d3
                for i in range(3):
                    d0, d1, d2, d3 = h[4 * i], h[4 * i + 1], h[4 * i + 2], h[4 * i + 3]
                    gw[g, ci, co, 3 * i] = d0 + (d1 + d2) * half
                    gw[g, ci, co, 3 * i + 1] = (d1 - d2) * half
                    gw[g, ci, co, 3 * i + 2] = (d1 + d2) * half + d3
