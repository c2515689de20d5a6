"""A GEMM on the explicit SIMD vectors for the 1x1 convs of NCHW tensors.

A 1x1 / stride 1 / pad 0 conv is one matrix product per group,

    out[n, m, p] = sum_k A[m, k] * B[k, (n, p)]        A (M, K), B (K, J = N*P)

with the batch folded into the columns: column j = n*P + p is pixel p of image n. The
forward takes A = the weights (C_out, C_in) and B = x; the input gradient A = W^T (a
view: packing reads it in any layout) and B = grad_out. Per image this is what the
BLAS path (`im2col_gemm`) calls; folding the batch into one GEMM is what lets a 7x7
plane (49 columns an image) still fill whole vectors.

The structure is BLIS's (Van Zee & van de Geijn, 2015), on the vectors of `simd.py`:

    for each task (group, rows range, block of NC columns):
        for each block of kc rows of B (kc <= 384):
            pack B[k0:k0+kc, columns] as micro-panels (kc, 2 vectors)   -> L2 (this task's)
            for each micro-panel (2 vectors of columns; 1 for an odd last): -> L1
                for each block of 8 rows of A:                          (streamed from L2;
                                                  the two loops swap when this task's rows
                                                  of A outgrow L2: `_A_L2_BYTES`)
                    acc[8][2] = sum over k of A[m..m+8, k] x B[k, 2 vectors]   16 registers
                    out[rows, columns] (+)= acc

The 8 x 2-vector micro-kernel (`_micro_8x2`, tapconv's tile shape, its 8 broadcasts from
8 row pointers into A): per k, 2 vector loads and 8 broadcasts feed 16 FMAs (~200
GFLOP/s a core on cached operands). Packing B reads each row of the block contiguously
(NC columns, 512 B) instead of one cache line per row and micro-panel: 85 -> 155 GFLOP/s
on one core (128 x 256 x 3136, two images). With data that is not in cache the kernel
waits on the 256 input-row and 128 output-row streams (rows 12.5 KB apart at 56x56: more
than the hardware prefetcher follows), so each task prefetches the next column block's
rows into L2/L3 and each micro-kernel call the lines of its output tile for writing
(eight images: ~80 -> 100-125 GFLOP/s a core, OpenBLAS's speed; PERFLOG.md). Columns are
copied in whole vectors inside one image and in masked segments across an image boundary
(and past the last column, which reads as 0), so no plane size is special. The planner
(`use_pointwise_simd`) takes it where it measured faster than one BLAS GEMM per image: a
single image (split between the threads) and batches of small planes (one large GEMM
instead of many tiny ones).

Every output element is summed over k in the same order (kc blocks in turn, each by
one micro-kernel) whatever the task split, so results are bit-identical for any number
of threads.
"""

from __future__ import annotations

import numpy as np

from ._numba import FASTMATH, jit, parallel_for
from .simd import (
    VECTOR_BYTES,
    lanes,
    prefetch,
    prefetchw,
    vadd,
    vbcast,
    vfma,
    vgather,
    vload,
    vloadm,
    vstore,
    vstorem,
)

MR = 8  # rows of A per micro-kernel (8 broadcasts)
_KC_MAX = 384  # the rows of B a micro-panel holds: 384 x 2 vectors x 64 B = 48 KB at most
_NC = 128  # columns per task (float32: 4 micro-panels; a multiple of 2 vectors)
_MIN_TASKS = 8  # split the rows of A too when fewer column blocks than this
# a task's rows of A above this many bytes do not stay in L2 while its micro-panels of B
# go by: then each block of 8 rows is read once and B's micro-panels come from L2
# (512 -> 512 3x3 7x7 batch 2 in ResNet-50: A = 9.4 MB, read 4 times a call otherwise)
_A_L2_BYTES = 512 << 10


# --------------------------------------------------------------------------- kernels


@jit(fastmath=FASTMATH)
def _fma8_rows(acc, bv, a, rows, i):
    """acc[r] + bv * a[rows[r] + i] for the 8 rows of a block."""
    return (
        vfma(bv, vbcast(a, rows[0] + i), acc[0]),
        vfma(bv, vbcast(a, rows[1] + i), acc[1]),
        vfma(bv, vbcast(a, rows[2] + i), acc[2]),
        vfma(bv, vbcast(a, rows[3] + i), acc[3]),
        vfma(bv, vbcast(a, rows[4] + i), acc[4]),
        vfma(bv, vbcast(a, rows[5] + i), acc[5]),
        vfma(bv, vbcast(a, rows[6] + i), acc[6]),
        vfma(bv, vbcast(a, rows[7] + i), acc[7]),
    )


@jit(fastmath=FASTMATH)
def _micro_8x2(a0, a1, a, rows, sk, k0, bp, bo, kc, L):
    """acc[r][v] + sum over k < kc of A[row r, k0 + k] * bp[bo + 2Lk + vL : ... + L],
    A[row r, k] = a[rows[r] + k*sk] (A read in place: no packed copy of the weights);
    (a0, a1) the accumulators of the two vectors. With 16 vector registers (AVX2) the
    16 accumulators would spill: there the two vectors one after the other (8 x 1)."""
    if VECTOR_BYTES < 64:
        a0 = _micro_8x1(a0, a, rows, sk, k0, bp, bo, kc, 2 * L)
        return a0, _micro_8x1(a1, a, rows, sk, k0, bp, bo + L, kc, 2 * L)
    for k in range(kc):
        b = bo + k * 2 * L
        i = (k0 + k) * sk
        a0 = _fma8_rows(a0, vload(bp, b), a, rows, i)
        a1 = _fma8_rows(a1, vload(bp, b + L), a, rows, i)
    return a0, a1


@jit(fastmath=FASTMATH)
def _micro_8x1(a0, a, rows, sk, k0, bp, bo, kc, step):
    """`_micro_8x2` for one vector of columns, bp[bo + k*step : + L]: a panel of one
    vector (step L: the odd last vector of a column block, so a 7x7 plane at batch 2 -
    98 columns, 7 vectors - computes 7 vectors instead of 8), or one vector of a
    two-vector panel (step 2L: `_micro_8x2` on AVX2)."""
    for k in range(kc):
        a0 = _fma8_rows(a0, vload(bp, bo + k * step), a, rows, (k0 + k) * sk)
    return a0


@jit(fastmath=FASTMATH)
def _column_segment(j, l, J, P, L):
    """The run of columns j + l, j + l + 1, ... that lies in one image: (image, pixel,
    count), count <= L - l and not past column J."""
    n = (j + l) // P
    p = j + l - n * P
    return n, p, min(P - p, L - l, J - j - l)


@jit(fastmath=FASTMATH)
def _pack_b_vector(x, bp, d, ds, xo, istride, P, J, j, k0, kc, L):
    """bp[d + ds*k : + L] = columns j .. j+L of rows k0 + k of B, k < kc (ds: 2L in a
    panel of two vectors, L in a one-vector panel); B[k, (n, p)] is x[xo + n*istride +
    k*P + p]. Masked segments per image; columns past J read 0."""
    n = j // P
    p = j - n * P
    if p + L <= P and j + L <= J:  # inside one image: whole vectors
        s = xo + n * istride + k0 * P + p
        for k in range(kc):
            vstore(bp, d + k * ds, vload(x, s + k * P))
        return
    z = vloadm(bp, d, 0)
    for k in range(kc):
        vstore(bp, d + k * ds, z)
    l = 0
    while l < L and j + l < J:
        n, p, cnt = _column_segment(j, l, J, P, L)
        mask = ((1 << cnt) - 1) << l  # lanes l .. l + cnt - 1
        s = xo + n * istride + k0 * P + p - l  # lane l reads pixel p
        for k in range(kc):
            o = d + k * ds
            vstore(bp, o, vadd(vload(bp, o), vloadm(x, s + k * P, mask)))
        l += cnt


@jit(fastmath=FASTMATH)
def _panel_slot(v, nv, kc, L):
    """(offset of vector v's row 0, stride between its rows) in a packed block of nv
    vectors: micro-panels of two vectors, the last of one when nv is odd."""
    return (v >> 1) * kc * 2 * L + (v & 1) * L, (2 * L if (v | 1) < nv else L)


@jit(fastmath=FASTMATH)
def _pack_b(x, bp, xo, istride, P, J, j0, nv, k0, kc, L):
    """Rows k0 .. k0+kc of `nv` vectors of columns from j0 into micro-panels: vector v
    of row k at bp[(v >> 1) * kc * 2L + (v & 1) * L + k * ds], ds = 2L (L in an odd last
    panel of one vector). A block inside one image is copied row by row (each row's
    nv * 64 B in order: 6 cycles a vector against 10-12 column by column, PERFLOG.md);
    blocks across images or past J vector by vector, masked."""
    n = j0 // P
    p = j0 - n * P
    if p + nv * L <= P and j0 + nv * L <= J:
        s = xo + n * istride + k0 * P + p
        for k in range(kc):
            for v in range(nv):
                d, ds = _panel_slot(v, nv, kc, L)
                vstore(bp, d + k * ds, vload(x, s + v * L))
            s += P
        return
    for v in range(nv):
        d, ds = _panel_slot(v, nv, kc, L)
        _pack_b_vector(x, bp, d, ds, xo, istride, P, J, j0 + v * L, k0, kc, L)


@jit(fastmath=FASTMATH)
def _store_rows(out, acc, oo, ostride, P, J, j, m0, nrows, add, L):
    """out rows m0 .. m0+nrows, columns j .. j+L (= or += when `add`) from acc[i] (row
    m0 + i); C[m, (n, p)] is out[oo + n*ostride + m*P + p]."""
    n = j // P
    p = j - n * P
    if p + L <= P and j + L <= J:
        b = oo + n * ostride + m0 * P + p
        for i in range(MR):
            if i < nrows:
                v = acc[i]
                if add:
                    v = vadd(v, vload(out, b + i * P))
                vstore(out, b + i * P, v)
        return
    l = 0
    while l < L and j + l < J:
        n, p, cnt = _column_segment(j, l, J, P, L)
        mask = ((1 << cnt) - 1) << l
        b = oo + n * ostride + m0 * P + p - l
        for i in range(MR):
            if i < nrows:
                v = acc[i]
                if add:
                    v = vadd(v, vloadm(out, b + i * P, mask))
                vstorem(out, b + i * P, v, mask)
        l += cnt


@jit(fastmath=FASTMATH)
def _prefetch_rows(x, s, P, nrows, ncols, L):
    """Prefetch `ncols` columns of `nrows` rows of B from x[s], rows P apart."""
    for r in range(nrows):
        for q in range(0, ncols, L):
            prefetch(x, s + r * P + q)


@jit(fastmath=FASTMATH)
def _row_offsets(ao, m0, M, sm):
    """Offsets of rows m0 .. m0+7 of A (rows past M repeat row M-1: computed, dropped)."""
    return (
        ao + min(m0, M - 1) * sm,
        ao + min(m0 + 1, M - 1) * sm,
        ao + min(m0 + 2, M - 1) * sm,
        ao + min(m0 + 3, M - 1) * sm,
        ao + min(m0 + 4, M - 1) * sm,
        ao + min(m0 + 5, M - 1) * sm,
        ao + min(m0 + 6, M - 1) * sm,
        ao + min(m0 + 7, M - 1) * sm,
    )


@jit(fastmath=FASTMATH)
def _task_split(t, M, mc, nmb, ninner):
    """Task t = (group, chunk of `mc` blocks of 8 rows of the output, inner index), the
    inner index fastest: (group, first block, end block, inner index)."""
    g = t // (nmb * ninner)
    r = (t // ninner) % nmb
    b0 = r * mc
    return g, b0, min(-(-M // MR), b0 + mc), t % ninner


@jit(fastmath=FASTMATH)
def _gemm_task(t, a, sm, sk, x, out, bp, G, M, K, P, J, kc, nc, ncb, mc, nmb, a_outer, L):
    g, b0, b1, c = _task_split(t, M, mc, nmb, ncb)  # c: the column block
    j0 = c * nc
    nv = -(-min(nc, J - j0) // L)  # vectors of columns (the extra columns read 0)
    npan = (nv + 1) >> 1  # micro-panels: of two vectors, the last of one if nv is odd
    nb = b1 - b0
    xo = g * K * P
    oo = g * M * P
    z = vloadm(bp, 0, 0)
    zs = (z, z, z, z, z, z, z, z)
    # where the next column block starts in x: its rows are prefetched while this block
    # computes, a few rows before each micro-kernel call (the rows of a block are
    # ~12 KB apart at 56x56; the hardware prefetcher does not follow 256 such streams)
    jn = j0 + nc
    nn = jn // P
    pf = xo + nn * G * K * P + jn - nn * P
    ncalls = npan * nb
    for k0 in range(0, K, kc):
        kk = min(kc, K - k0)
        last = k0 + kk >= K
        _pack_b(x, bp, xo, G * K * P, P, J, j0, nv, k0, kk, L)
        per_call = -(-kk // ncalls) if jn < J else 0
        row = 0
        for call in range(ncalls):
            # micro-panels of B inner (each block of A rows read once, B from L2) when
            # this task's rows of A are too many to stay in L2; else rows of A inner
            if a_outer:
                b = b0 + call // npan
                jr = call - (b - b0) * npan
            else:
                jr = call // nb
                b = b0 + call - jr * nb
            j = j0 + 2 * jr * L
            nrows = min(per_call, kk - row)
            _prefetch_rows(x, pf + (k0 + row) * P, P, nrows, nc, L)
            row += nrows
            if last:  # the output tile's lines, fetched for writing while we compute
                n = j // P
                ob = oo + n * G * M * P + j - n * P + b * MR * P  # row b*8, column j
                for i in range(MR):
                    prefetchw(out, ob + i * P)
                    prefetchw(out, ob + i * P + 2 * L - 1)
            rows = _row_offsets(g * M * K, b * MR, M, sm)
            nrows_a = min(MR, M - b * MR)
            if 2 * jr + 1 < nv:
                a0, a1 = _micro_8x2(zs, zs, a, rows, sk, k0, bp, jr * kk * 2 * L, kk, L)
                _store_rows(out, a0, oo, G * M * P, P, J, j, b * MR, nrows_a, k0 > 0, L)
                _store_rows(out, a1, oo, G * M * P, P, J, j + L, b * MR, nrows_a, k0 > 0, L)
            else:
                a0 = _micro_8x1(zs, a, rows, sk, k0, bp, jr * kk * 2 * L, kk, L)
                _store_rows(out, a0, oo, G * M * P, P, J, j, b * MR, nrows_a, k0 > 0, L)


@jit(nogil=True)
def _gemm_range(t0, t1, a, sm, sk, x, out, G, M, K, P, J, kc, nc, ncb, mc, nmb, a_outer, L):
    bp = np.empty(min(kc, K) * nc, x.dtype)  # this chunk's packed B block
    for t in range(t0, t1):
        _gemm_task(t, a, sm, sk, x, out, bp, G, M, K, P, J, kc, nc, ncb, mc, nmb, a_outer, L)


# --------------------------------------------------------------------------- driver


def _row_chunks(M: int, tasks: int) -> tuple[int, int]:
    """(blocks of 8 output rows per chunk, chunks): the rows are split only when `tasks`
    (groups x inner tasks) are fewer than `_MIN_TASKS`, into chunks of equal size."""
    nblk = -(-M // MR)
    nmb = min(nblk, max(1, -(-_MIN_TASKS // tasks)))
    mc = -(-nblk // nmb)
    return mc, -(-nblk // mc)


def _k_block(K: int) -> int:
    """Rows of B per packed block: K itself up to `_KC_MAX`, else K in equal blocks."""
    nk = -(-K // _KC_MAX)
    return -(-K // nk)


def conv1x1(a: np.ndarray, x: np.ndarray) -> np.ndarray:
    """out[n, g*M + m, p] = sum_k a[g, m, k] * x[n, g*K + k, p]: a 1x1 conv per group.

    a (G, M, K) in x's dtype: the weights (G, C_out/G, C_in/G), or their transposed view
    for an input gradient, both read in place (any other layout is copied first); x
    (N, G*K, P) C-contiguous float32/float64 -> out (N, G*M, P). Work split by shape only
    (see the module docstring).
    """
    G, M, K = a.shape
    N, _, P = x.shape
    L = lanes(x.dtype)
    out = np.empty((N, G * M, P), x.dtype)
    J = N * P
    if J == 0 or M == 0:
        return out
    if K == 0:
        out[...] = 0
        return out
    nc = min(_NC // (2 * L) * 2 * L, -(-J // (2 * L)) * 2 * L)
    ncb = -(-J // nc)
    mc, nmb = _row_chunks(M, G * ncb)
    kc = _k_block(K)
    a_outer = mc * MR * K * x.itemsize > _A_L2_BYTES
    if a.transpose(0, 2, 1).flags.c_contiguous:  # W^T: a[g, m, k] at g*M*K + k*M + m
        flat, sm, sk = a.transpose(0, 2, 1).reshape(-1), 1, M
    else:
        flat, sm, sk = np.ascontiguousarray(a).reshape(-1), K, 1
    parallel_for(
        _gemm_range,
        G * nmb * ncb,
        flat,
        sm,
        sk,
        x.reshape(-1),
        out.reshape(-1),
        G, M, K, P, J, kc, nc, ncb, mc, nmb, a_outer, L,
    )  # fmt: skip
    return out


# --------------------------------------------------------------------------- weight gradient
#
#     gW[g, m, k] = sum over j = (n, p) of G[n, g*M + m, p] * X[n, g*K + k, p]
#
# is the same product with the batch-and-pixel index j as the reduction: rows m of G are
# broadcast in place (contiguous in p inside an image), and X^T is packed per block of
# JC columns as (JC, 2 vectors of k) by strided gathers (a row of X^T is a column of
# X, P apart). A task sums its output tiles over its range of J in order (blocks in
# turn, images in turn inside a block): the whole of J (tasks own tiles), or one of a
# fixed number of chunks of J whose partial gradients are added in chunk order
# (`weight_grad_chunks`). Either way the split depends on the shapes only, so the result
# does not depend on the thread count.

_JC = 256  # columns of the reduction per packed block (float32: 256 x 32 values, 32 KB)


@jit(fastmath=FASTMATH)
def _panel_masks(kp, K, L):
    """Lane masks of the two vectors of the k panel starting at kp: the rows < K."""
    return (1 << min(L, max(0, K - kp))) - 1, (1 << min(L, max(0, K - kp - L))) - 1


@jit(fastmath=FASTMATH)
def _pack_xt(x, bp, xo, istride, P, j0, jn, kp, m0, m1, L):
    """bp[jj*2L + v*L + l] = X[kp + v*L + l, j0 + jj] for jj < jn, where X[k, (n, p)] =
    x[xo + n*istride + k*P + p]; lanes outside masks (m0, m1) (rows past K) read 0."""
    n = j0 // P
    p = j0 - n * P
    for jj in range(jn):
        s = xo + n * istride + kp * P + p
        vstore(bp, jj * 2 * L, vgather(x, s, P, m0))
        vstore(bp, jj * 2 * L + L, vgather(x, s + L * P, P, m1))
        p += 1
        if p == P:
            p = 0
            n += 1


@jit(fastmath=FASTMATH)
def _wgrad_task(t, go, x, parts, bp, G, M, K, P, J, npc, nkc, mc, nmb, nch, L):
    # task t = (group, rows chunk, chunk of k panels, chunk ch of the reduction), the
    # reduction chunk fastest; it sums its output tiles over columns J*ch/nch ..
    # J*(ch+1)/nch into partial `ch` of parts (nch, G, M, K)
    ch = t % nch
    g, b0, b1, c = _task_split(t // nch, M, mc, nmb, nkc)  # c: the chunk of k panels
    ja = J * ch // nch
    jz = J * (ch + 1) // nch
    npan = -(-K // (2 * L))
    q0 = c * npc
    q1 = min(npan, q0 + npc)
    z = vloadm(bp, 0, 0)
    zs = (z, z, z, z, z, z, z, z)
    for jb in range(ja, jz, _JC):
        jn = min(_JC, jz - jb)
        for q in range(q0, q1):
            kp = q * 2 * L
            kmask0, kmask1 = _panel_masks(kp, K, L)
            _pack_xt(x, bp, g * K * P, G * K * P, P, jb, jn, kp, kmask0, kmask1, L)
            for b in range(b0, b1):
                a0 = zs
                a1 = zs
                j = jb
                while j < jb + jn:  # one image's run of columns at a time
                    n = j // P
                    p = j - n * P
                    run = min(P - p, jb + jn - j)
                    rows = _row_offsets((n * G + g) * M * P + p, b * MR, M, P)
                    a0, a1 = _micro_8x2(a0, a1, go, rows, 1, 0, bp, (j - jb) * 2 * L, run, L)
                    j += run
                o = ((ch * G + g) * M + b * MR) * K + kp
                for i in range(MR):
                    if b * MR + i < M:
                        v0 = a0[i]
                        v1 = a1[i]
                        if jb > ja:
                            v0 = vadd(v0, vloadm(parts, o + i * K, kmask0))
                            v1 = vadd(v1, vloadm(parts, o + i * K + L, kmask1))
                        vstorem(parts, o + i * K, v0, kmask0)
                        vstorem(parts, o + i * K + L, v1, kmask1)


@jit(nogil=True)
def _wgrad_range(t0, t1, go, x, parts, G, M, K, P, J, npc, nkc, mc, nmb, nch, L):
    bp = np.empty(_JC * 2 * L, x.dtype)  # one packed block of X^T
    for t in range(t0, t1):
        _wgrad_task(t, go, x, parts, bp, G, M, K, P, J, npc, nkc, mc, nmb, nch, L)


# Long reductions (large batches of large planes) are cut into this many fixed chunks of
# the batch x pixels, one task each over all output tiles, their partial gradients added
# in chunk order: otherwise every task (a panel of output columns) would stream all of
# grad_out from memory. At most `_WGRAD_PARTIALS_BYTES` of partials.
_WGRAD_CHUNKS = 8
_WGRAD_PARTIALS_BYTES = 24 << 20
# x + grad_out up to this size: tasks own output tiles over the whole batch (they stream
# grad_out once per panel of output columns, from L2/L3 when it is this small)
_WGRAD_TILE_TASK_BYTES = 8 << 20


def weight_grad_chunks(G: int, M: int, K: int, J: int, itemsize: int) -> int:
    """Chunks of the reduction `conv1x1_weight_grad` cuts (1: tasks own output tiles over
    the whole reduction): `_WGRAD_CHUNKS` when x and grad_out take more than
    `_WGRAD_TILE_TASK_BYTES`, fewer if their partials would exceed
    `_WGRAD_PARTIALS_BYTES`; a power of two (2 or 4 threads split them evenly)."""
    if G * (M + K) * J * itemsize <= _WGRAD_TILE_TASK_BYTES:
        return 1
    k = min(_WGRAD_CHUNKS, max(1, _WGRAD_PARTIALS_BYTES // (G * M * K * itemsize)))
    return 1 << (k.bit_length() - 1)


def conv1x1_weight_grad(
    x: np.ndarray, grad_out: np.ndarray, groups: int, chunks: int | None = None
) -> np.ndarray:
    """gW[g, m, k] = sum over n, p of grad_out[n, g*M + m, p] * x[n, g*K + k, p]: the
    weight gradient of a 1x1 conv per group.

    x (N, G*K, P) and grad_out (N, G*M, P) C-contiguous, same float dtype -> (G, M, K).
    chunks: the reduction's chunks (default `weight_grad_chunks`). Bit-identical for any
    thread count (the split depends on the shapes only; partials added in order).
    """
    N, GK, P = x.shape
    GM = grad_out.shape[1]
    G = groups
    K, M = GK // G, GM // G
    L = lanes(x.dtype)
    J = N * P
    if J == 0 or M == 0 or K == 0:
        return np.zeros((G, M, K), x.dtype)
    nch = weight_grad_chunks(G, M, K, J, x.itemsize) if chunks is None else chunks
    nch = max(1, min(nch, J))
    npan = -(-K // (2 * L))
    if nch == 1:  # tasks own tiles: split the panels, then the rows
        npc = max(1, -(-npan // max(1, _MIN_TASKS // G)))  # k panels per task
        nkc = -(-npan // npc)
        mc, nmb = _row_chunks(M, G * nkc)
    else:  # tasks own chunks of the reduction, all tiles each
        npc, nkc, mc, nmb = npan, 1, -(-M // MR), 1
    parts = np.empty((nch, G, M, K), x.dtype)
    parallel_for(
        _wgrad_range,
        G * nmb * nkc * nch,
        grad_out.reshape(-1),
        x.reshape(-1),
        parts.reshape(-1),
        G, M, K, P, J, npc, nkc, mc, nmb, nch, L,
    )  # fmt: skip
    return parts[0] if nch == 1 else parts.sum(axis=0)
