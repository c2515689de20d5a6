"""im2col + BLAS: the GEMM algorithms of `conv.py` (dense and wide-group convs).

Plans (planner.py): `IM2COL_GEMM`, `POINTWISE_GEMM` (forward, weight gradient) and
`COL2IM_GEMM` (input gradient); also the forward conv run by
`TRANSPOSED_IM2COL_GEMM` / `TRANSPOSED_POINTWISE_GEMM`. These paths sum exactly the
reference's products, so they are also where non-finite weights go.

Each image's (C_in*kH*kW, Ho*Wo) column matrix - or, for small 3x3 / stride 1 / pad 1
images, a ~1 MB block of several images side by side - is built in a per-thread
workspace (`_numba.workspace`) right before its GEMM, so the GEMM reads it from cache;
these image blocks run in parallel with single-threaded OpenBLAS. 3x3 / stride 1 / pad
1 columns are a masked flat copy (`_im2col_same3x3`). Strided input gradients use
W^T @ grad_out and a parallel col2im. The weight gradient is the transposed product
cols @ grad_out^T (the faster shape for OpenBLAS). 1x1 / stride 1 / no-pad convs skip
im2col: the input already *is* the column matrix. Padding is handled inside
im2col/col2im (no padded copy).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import uint64 as u64

from ..blas import blas_controller, blas_one_thread
from ._numba import FASTMATH, jit, parallel_for, workspace
from .direct import _tap_masks
from .planner import Algorithm, ConvGeometry


class ColGeometry(NamedTuple):
    """The im2col geometry of one image, the record the `_im2col` and `_col2im` kernels
    take (as `tuple(geom)`: Numba sees 12 ints): input H x W, kernel KH x KW, output
    Ho x Wo, stride (sh, sw), padding (ph, pw), dilation (dh, dw)."""

    H: int
    W: int
    KH: int
    KW: int
    Ho: int
    Wo: int
    sh: int
    sw: int
    ph: int
    pw: int
    dh: int
    dw: int

    @classmethod
    def of(cls, g: ConvGeometry) -> ColGeometry:
        return cls(g.h, g.w, g.kh, g.kw, g.ho, g.wo, *g.stride, *g.padding, *g.dilation)

    @property
    def same3x3(self) -> bool:
        """3x3 / stride 1 / pad 1 / dilation 1 (the masked flat im2col)."""
        return (self.KH, self.KW, self.sh, self.sw, self.ph, self.pw, self.dh, self.dw) == (
            3, 3, 1, 1, 1, 1, 1, 1)  # fmt: skip


# --------------------------------------------------------------------------- kernels


@jit(nogil=True, fastmath=FASTMATH)
def _im2col(t0, t1, x, cols, geom):
    H, W, KH, KW, Ho, Wo, sh, sw, ph, pw, dh, dw = geom  # a `ColGeometry` as a tuple of 12 ints
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
def _col2im(t0, t1, cols, gx, geom):
    H, W, KH, KW, Ho, Wo, sh, sw, ph, pw, dh, dw = geom  # a `ColGeometry` as a tuple of 12 ints
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


def _im2col_range(t0, t1, x3, cols, geom):
    """cols = im2col(x3) for the tasks [t0, t1) over (image, channel) pairs.

    x3 (N, C, H*W), cols (N, C*KH*KW, Ho*Wo), geom a `ColGeometry`. The 3x3 / stride 1 /
    pad 1 case takes the masked flat copy.
    """
    H, W = geom.H, geom.W
    if geom.same3x3:
        n, C, HW = x3.shape
        z = x3.dtype.type(0)
        mk = _tap_masks(H, W)
        _im2col_same3x3(t0, t1, x3.reshape(n, -1), cols.reshape(-1), mk, C, H, W, C * 9 * HW, HW, z)
    else:
        _im2col(t0, t1, x3, cols, tuple(geom))


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
    K, P = C * geom.KH * geom.KW, geom.Ho * geom.Wo
    cols = buf[: K * nb * P]
    if geom.same3x3:
        z = x3.dtype.type(0)
        mk = _tap_masks(geom.H, geom.W)
        _im2col_same3x3(0, nb * C, x3.reshape(nb, -1), cols, mk, C, geom.H, geom.W, HW, nb * HW, z)
    elif nb == 1:
        _im2col(0, C, x3, cols.reshape(1, K, P), tuple(geom))
    else:
        raise ValueError("image blocks need the 3x3 / stride 1 / pad 1 geometry")
    return cols.reshape(K, nb * P)


# a block's column matrix is kept at about this size (bytes), so that it is still in
# this core's L2 cache when its GEMM reads it (2 MB L2 per core here)
_BLOCK_COLS_BYTES = 1 << 20


def _images_per_block(n, C, geom, itemsize):
    """Images per GEMM for `_im2col_block`: 1 unless the geometry is 3x3 / stride 1 /
    pad 1, else as many as fit `_BLOCK_COLS_BYTES` (at most n)."""
    if not geom.same3x3:
        return 1
    per_image = C * 9 * geom.Ho * geom.Wo * itemsize
    return max(1, min(n, _BLOCK_COLS_BYTES // per_image))


# --------------------------------------------------------------------------- BLAS
#
# Work decomposition (determinism). The GEMM paths cut the batch into image *blocks*
# (`_image_blocks`: one image, or several small images side by side in one column
# matrix) that depend only on the shapes, never on the thread count. Each block is one
# single-threaded GEMM on one of our threads (threadpoolctl limits BLAS to one thread;
# its own threads spin-wait and collapse under load, PERFLOG.md). The forward and the
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


def run_blas_blocks(range_kernel, ntasks, *args):
    """range_kernel(t0, t1, *args) over [0, ntasks), one chunk of tasks per thread: in
    parallel with one-thread BLAS, or serially when BLAS threads cannot be limited
    (threadpoolctl not installed). The BLAS GEMM paths here and linear.py run on it."""
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


def _mm_rows_range(t0, t1, a, b, out, bounds):
    """out[:, rows of chunk t] = a[:, those rows] @ b for the row chunks [t0, t1)."""
    for t in range(t0, t1):
        r0, r1 = bounds[t], bounds[t + 1]
        np.matmul(a[:, r0:r1], b, out=out[:, r0:r1])


# A single image is one GEMM, so one thread: its output rows are then cut into this
# many chunks (each a one-thread GEMM on the whole of b), fixed by the shapes (results
# do not depend on the thread count). Only for GEMMs of at least `_ROW_SPLIT_MIN_MACS`
# multiply-adds (a second call packs b again). Measured (ms, float32, 2 threads, batch
# 1, forward / input gradient, one GEMM -> rows split, same bits here): 128->128 3x3
# stride 2 56x56 2.07 -> 1.58 / 1.90 -> 1.67, 256->256 stride 2 28x28 1.86 -> 1.30 /
# 1.73 -> 1.30, 512->512 3x3 7x7 1.95 -> 1.35 / 2.09 -> 1.27, 1024->2048 1x1 stride 2
# 14x14 1.82 -> 1.19 / 2.02 -> 1.28.
_ROW_SPLIT = 2
_ROW_SPLIT_MIN_MACS = 1 << 24


def _row_split(g, m, k, p):
    """Row bounds of a single image's GEMM, g products (m, k) @ (k, p), or None to keep
    it whole (small products)."""
    if m < _ROW_SPLIT or g * m * k * p < _ROW_SPLIT_MIN_MACS:
        return None
    return [m * i // _ROW_SPLIT for i in range(_ROW_SPLIT + 1)]


def _gemm_images(a, b, out):
    """out[i] = a @ b[i] for every image i (a broadcast over the leading image axis);
    a single image's output rows in chunks on the threads (`_row_split`)."""
    bounds = _row_split(*a.shape, b.shape[-1]) if b.shape[0] == 1 else None
    if bounds is None:
        run_blas_blocks(_mm_range, b.shape[0], a, b, out)
    else:
        run_blas_blocks(_mm_rows_range, len(bounds) - 1, a, b[0], out[0], bounds)


def _im2col_mm_range(t0, t1, x3, a, out, bounds, geom):
    """Per image block: im2col into this thread's workspace, then out[block] = a @ cols."""
    C, P = x3.shape[1], geom.Ho * geom.Wo
    g, o, kg = a.shape
    nb = max(bounds[i + 1] - bounds[i] for i in range(t0, t1))
    buf = workspace("cols1", C * geom.KH * geom.KW * nb * P, x3.dtype)
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
    back on one thread (the block's column matrix is still in cache for its GEMM); a
    single image's im2col on the threads, then its GEMM in row chunks (`_row_split`)."""
    n, C = x3.shape[:2]
    P = geom.Ho * geom.Wo
    if n == 1 and _row_split(*a.shape, P) is not None:
        cols = workspace("cols_image", C * geom.KH * geom.KW * P, x3.dtype).reshape(1, -1, P)
        parallel_for(_im2col_range, C, x3, cols, geom)
        _gemm_images(a, cols.reshape(1, a.shape[0], -1, P), out)
        return
    bounds = _image_blocks(n, C, geom, x3.dtype.itemsize)
    run_blas_blocks(_im2col_mm_range, len(bounds) - 1, x3, a, out, bounds, geom)


def _mmt_range(j0, j1, go4, cols, parts, bounds, x3=None, geom=None):
    """parts[j] = sum over the image blocks of chunk j, in order, of cols @ go^T (the
    transposed weight gradient, (G, Kg, Og)); chunk j holds blocks m*j//k .. m*(j+1)//k
    - 1 of the m blocks in `bounds`. With `x3` given, each block's column matrix is built
    (`_im2col_block`) just before its GEMM (per-thread workspace); else `cols` holds one
    per image (1x1 convs: the input itself)."""
    k, g, kg, o = parts.shape
    m = len(bounds) - 1
    if x3 is not None:
        C, P = x3.shape[1], geom.Ho * geom.Wo
        nb = max(bounds[i + 1] - bounds[i] for i in range(m))
        buf = workspace("cols1", C * geom.KH * geom.KW * nb * P, x3.dtype)
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
    kg = cols.shape[2] if cols is not None else geom.KH * geom.KW * x3.shape[1] // g
    itemsize = go4.dtype.itemsize
    if cols is None:
        bounds = _image_blocks(n, x3.shape[1], geom, itemsize)
    else:
        bounds = _image_blocks(n, 0, None, itemsize)
    m = len(bounds) - 1
    if m == 0:  # no images
        return np.zeros((g, o, kg), go4.dtype)
    rows = _row_split(g, kg, go4.shape[-1], o) if n == 1 else None
    if rows is not None:  # one image: its GEMM in chunks of the gradient's kg rows
        if cols is None:
            P = geom.Ho * geom.Wo
            cols = workspace("cols_image", kg * g * P, x3.dtype).reshape(1, g, kg, P)
            parallel_for(_im2col_range, x3.shape[1], x3, cols.reshape(1, g * kg, P), geom)
        gwt = np.empty((g, kg, o), go4.dtype)
        run_blas_blocks(
            _mm_rows_range, len(rows) - 1, cols[0], go4[0].transpose(0, 2, 1), gwt, rows
        )
        return gwt.transpose(0, 2, 1)
    k = min(m, _WEIGHT_GRAD_CHUNKS, max(1, _PARTIALS_BYTES // (g * kg * o * itemsize)))
    k = 1 << (k.bit_length() - 1)  # a power of two
    parts = np.empty((k, g, kg, o), dtype=go4.dtype)
    run_blas_blocks(_mmt_range, k, go4, cols, parts, bounds, x3, geom)
    gw = parts[0] if k == 1 else parts.sum(axis=0)  # chunk order: fixed
    return gw.transpose(0, 2, 1)


# --------------------------------------------------------------------------- drivers


def im2col(x3, g: ConvGeometry):
    """The column matrices of the whole batch, (N, C_in*kH*kW, Ho*Wo): the B operand of
    `IM2COL_SIMD` (gemm.py folds the batch into one GEMM). x3 (N, C_in, H*W). A fresh
    array, not a `workspace`: a whole batch's columns can be tens of MB, which a
    workspace would keep for the life of the thread."""
    P = g.ho * g.wo
    cols = np.empty((g.n, g.c_in * g.kh * g.kw, P), x3.dtype)
    parallel_for(_im2col_range, g.n * g.c_in, x3, cols, ColGeometry.of(g))
    return cols


def gemm_forward(alg: Algorithm, x3, weight, bias, g: ConvGeometry):
    """Forward of `POINTWISE_GEMM` / `IM2COL_GEMM`: x3 (N, C_in, H*W) contiguous, weight
    (C_out, C_in/groups, kH, kW) contiguous in x3's dtype, bias (C_out,) or None ->
    (N, C_out, Ho, Wo)."""
    dt = x3.dtype
    P = g.ho * g.wo
    Kg = g.cpi * g.kh * g.kw
    out = np.empty((g.n, g.groups, g.cpo, P), dtype=dt)
    a = weight.reshape(g.groups, g.cpo, Kg)
    if alg == Algorithm.POINTWISE_GEMM:
        _gemm_images(a, x3.reshape(g.n, g.groups, Kg, P), out)
    else:
        _im2col_gemm(x3, a, out, ColGeometry.of(g))
    out = out.reshape(g.n, g.c_out, g.ho, g.wo)
    if bias is not None:
        out += np.asarray(bias, dtype=dt).reshape(1, g.c_out, 1, 1)
    return out


def pointwise_backward_input(grad_out, weight, g: ConvGeometry):
    """Input gradient of a 1x1 / stride 1 / pad 0 conv (`TRANSPOSED_POINTWISE_GEMM`):
    W^T @ grad_out per image and group, W^T a transposed view of the weights (no copy).
    grad_out (N, C_out, H, W) contiguous, weight (C_out, C_in/groups, 1, 1) -> (N, C_in,
    H*W)."""
    P = g.h * g.w
    wT = weight.reshape(g.groups, g.cpo, g.cpi).transpose(0, 2, 1)
    gx = np.empty((g.n, g.groups, g.cpi, P), grad_out.dtype)
    _gemm_images(wT, grad_out.reshape(g.n, g.groups, g.cpo, P), gx)
    return gx.reshape(g.n, g.c_in, P)


def col2im_backward_input(go3, weight, g: ConvGeometry):
    """Input gradient of `COL2IM_GEMM`: column gradients W^T @ grad_out per image, added
    back onto the pixels. go3 (N, C_out, Ho*Wo), weight (C_out, C_in/groups, kH, kW) ->
    (N, C_in, H*W)."""
    dt = go3.dtype
    P = g.ho * g.wo
    Kg = g.cpi * g.kh * g.kw
    wT = weight.reshape(g.groups, g.cpo, Kg).transpose(0, 2, 1)
    gcols = workspace("gcols", g.n * g.c_in * g.kh * g.kw * P, dt).reshape(g.n, g.groups, Kg, P)
    _gemm_images(wT, go3.reshape(g.n, g.groups, g.cpo, P), gcols)
    gx = np.empty((g.n, g.c_in, g.h * g.w), dtype=dt)
    cols = gcols.reshape(g.n, g.c_in * g.kh * g.kw, P)
    parallel_for(_col2im, g.n * g.c_in, cols, gx, tuple(ColGeometry.of(g)))
    return gx


def gemm_weight_grad(alg: Algorithm, x3, go3, g: ConvGeometry):
    """Weight gradient of `POINTWISE_GEMM` / `IM2COL_GEMM`: x3 (N, C_in, H*W), go3 (N,
    C_out, Ho*Wo) -> (C_out, C_in/groups, kH, kW)."""
    P = g.ho * g.wo
    go4 = go3.reshape(g.n, g.groups, g.cpo, P)
    if alg == Algorithm.POINTWISE_GEMM:
        gw = _gemm_weight_grad(go4, x3.reshape(g.n, g.groups, g.cpi, P))
    else:  # per-image-block im2col next to its GEMM
        gw = _gemm_weight_grad(go4, None, x3, ColGeometry.of(g))
    return gw.reshape(g.c_out, g.cpi, g.kh, g.kw)
