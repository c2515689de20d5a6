"""Winograd F(2x2, 3x3) (kernels/jit/winograd.py) against the reference conv, and the
SIMD shuffles it is built on."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minires.kernels import reference as R
from minires.kernels.jit import winograd
from minires.kernels.jit._numba import jit
from minires.kernels.jit.simd import (
    lanes,
    vadd,
    vload,
    vstore,
    vsub,
    vunziphi,
    vunziplo,
    vziphi,
    vziplo,
)

DTYPES = [np.float32, np.float64]


@jit()
def _shuffles(a, b, out):
    x, y = vload(a, 0), vload(b, 0)
    n = a.size
    vstore(out, 0, vziplo(x, y))
    vstore(out, n, vziphi(x, y))
    vstore(out, 2 * n, vunziplo(x, y))
    vstore(out, 3 * n, vunziphi(x, y))
    vstore(out, 4 * n, vadd(x, y))
    vstore(out, 5 * n, vsub(x, y))


@pytest.mark.parametrize("dtype", DTYPES)
def test_simd_shuffles_and_arithmetic(dtype):
    n = lanes(dtype)
    a = np.arange(n, dtype=dtype)
    b = np.arange(n, 2 * n, dtype=dtype)
    out = np.zeros(6 * n, dtype)
    _shuffles(a, b, out)
    both = np.concatenate([a, b])
    zipped = np.stack([a, b], axis=1).reshape(-1)
    np.testing.assert_array_equal(out[: 2 * n], zipped)  # lo then hi: a0 b0 a1 b1 ...
    np.testing.assert_array_equal(out[2 * n : 3 * n], both[0::2])
    np.testing.assert_array_equal(out[3 * n : 4 * n], both[1::2])
    np.testing.assert_array_equal(out[4 * n : 5 * n], a + b)
    np.testing.assert_array_equal(out[5 * n :], a - b)


def test_weight_transform_is_g_g_gt():
    """U_p = G g G^T, packed (groups, blocks of 8 outputs, 16, cpi + 1, 8), zero-padded."""
    rng = np.random.default_rng(0)
    w = rng.standard_normal((10, 3, 3, 3))
    up = winograd.transform_weights(w, 2).reshape(2, 1, 16, 4, 8)
    G = winograd._G
    want = np.einsum("ak,oikl,bl->oabi", G, w, G).reshape(2, 5, 16, 3)
    np.testing.assert_allclose(up[:, 0, :, :3, :5], want.transpose(0, 2, 3, 1), atol=1e-14)
    assert not up[:, 0, :, :, 5:].any() and not up[:, 0, :, 3].any()


def _assert_close(got, ref, dtype, terms):
    """got equals ref (same shape and dtype) to the rounding of sums of `terms` products
    of unit normals in `dtype`."""
    assert got.shape == ref.shape and got.dtype == dtype
    tol = (1e-5 if dtype == np.float32 else 1e-13) * np.sqrt(terms) * 4
    np.testing.assert_allclose(got, ref, rtol=tol, atol=tol)


def _check(n, groups, cpi, cpo, h, w, dtype, bias, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, groups * cpi, h, w)).astype(dtype)
    wt = rng.standard_normal((groups * cpo, cpi, 3, 3)).astype(dtype)
    b = rng.standard_normal(groups * cpo).astype(dtype) if bias else None
    y, finite = winograd.forward(x, wt, b, groups)
    ref = R.conv2d_forward(x, wt, b, (1, 1), (1, 1), (1, 1), groups)
    assert finite
    _assert_close(y, ref, dtype, 9 * cpi)


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(1, 3),
    groups=st.integers(1, 3),
    cpi=st.integers(1, 12),
    cpo=st.integers(1, 19),
    h=st.integers(1, 13),
    w=st.integers(1, 70),
    dtype=st.sampled_from(DTYPES),
    bias=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_winograd_matches_reference(n, groups, cpi, cpo, h, w, dtype, bias, seed):
    """Any 3x3 / stride 1 / pad 1 conv (odd and even sizes, 1 x 1 planes, rows of tiles
    spanning several vectors, partial output-channel blocks, groups, batch 1)."""
    _check(n, groups, cpi, cpo, h, w, dtype, bias, seed)


@pytest.mark.parametrize("dtype", DTYPES)
def test_winograd_planned_sizes(dtype):
    """Geometries the planner sends to Winograd (wide channels, several blocks of tile
    rows per image, an odd last block)."""
    _check(2, 1, 40, 24, 15, 30, dtype, True, 1)
    _check(1, 2, 32, 17, 7, 56, dtype, False, 2)
    # two rows of tiles per vector (short rows), several blocks of rows, odd sizes
    _check(2, 1, 33, 20, 30, 14, dtype, True, 3)
    _check(1, 1, 9, 11, 13, 13, dtype, False, 4)
    _check(3, 2, 5, 9, 7, 7, dtype, True, 5)


@settings(max_examples=30, deadline=None)
@given(
    groups=st.integers(1, 2),
    cpi=st.integers(1, 12),
    cpo=st.integers(1, 27),  # 1 to 4 blocks of 8 outputs, partial last block
    h=st.integers(1, 9),
    w=st.integers(1, 20),
    dtype=st.sampled_from(DTYPES),
    seed=st.integers(0, 2**16),
)
def test_winograd_split_output_channels_same_bits(groups, cpi, cpo, h, w, dtype, seed):
    """A batch-1 conv with wide weights splits its output channels between tasks (a
    plane that is one task would leave a thread idle): the same bits as one task, and
    the reference's values (the split forced here on small convs)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((1, groups * cpi, h, w)).astype(dtype)
    wt = rng.standard_normal((groups * cpo, cpi, 3, 3)).astype(dtype)
    whole, _ = winograd.forward(x, wt, None, groups)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(winograd, "_SPLIT_MIN_WEIGHT_BYTES", 0)
        split, finite = winograd.forward(x, wt, None, groups)
    assert finite
    np.testing.assert_array_equal(split, whole)
    ref = R.conv2d_forward(x, wt, None, (1, 1), (1, 1), (1, 1), groups)
    _assert_close(split, ref, dtype, 9 * cpi)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_winograd_reports_nonfinite_output(bad):
    """A non-finite input makes `finite` False (the caller then recomputes), and a
    finite input gives True."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 4, 9, 11)).astype(np.float32)
    wt = rng.standard_normal((5, 4, 3, 3)).astype(np.float32)
    assert winograd.forward(x, wt, None, 1)[1]
    for pos in [(0, 0, 0, 0), (1, 3, 8, 10), (1, 2, 4, 5)]:
        xb = x.copy()
        xb[pos] = bad
        assert not winograd.forward(xb, wt, None, 1)[1]
    huge = np.full_like(x, np.finfo(np.float32).max / 2)
    assert not winograd.forward(huge, wt, None, 1)[1]  # overflows in the transform


def _check_weight_grad(n, groups, cpi, cpo, h, w, dtype, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, groups * cpi, h, w)).astype(dtype)
    go = rng.standard_normal((n, groups * cpo, h, w)).astype(dtype)
    gw = winograd.weight_grad(x, go, cpi, groups)
    ref = R.conv2d_backward_weight(x, go, (groups * cpo, cpi, 3, 3), (1, 1), (1, 1), (1, 1), groups)
    _assert_close(gw, ref, dtype, n * h * w)


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(1, 3),
    groups=st.integers(1, 3),
    cpi=st.integers(1, 12),
    cpo=st.integers(1, 40),
    h=st.integers(1, 13),
    w=st.integers(1, 70),
    dtype=st.sampled_from(DTYPES),
    seed=st.integers(0, 2**16),
)
def test_winograd_weight_grad_matches_reference(n, groups, cpi, cpo, h, w, dtype, seed):
    """G^T (sum over tiles of (A dy A^T) * (B^T d B)) G is the 3x3 / stride 1 / pad 1
    weight gradient at any size (odd planes, tiles past the edge, partial channel
    vectors, groups, batch 1, images split into several tasks)."""
    _check_weight_grad(n, groups, cpi, cpo, h, w, dtype, seed)


@pytest.mark.parametrize("dtype", DTYPES)
def test_winograd_weight_grad_planned_sizes(dtype):
    _check_weight_grad(2, 1, 40, 24, 15, 30, dtype, 1)
    _check_weight_grad(1, 2, 32, 33, 9, 56, dtype, 2)
    _check_weight_grad(2, 1, 33, 20, 30, 14, dtype, 3)
    _check_weight_grad(1, 1, 9, 11, 13, 13, dtype, 4)
    _check_weight_grad(3, 2, 5, 9, 7, 7, dtype, 5)


@pytest.mark.parametrize("n, groups", [(33, 1), (50, 1), (64, 2), (40, 3)])
def test_winograd_weight_grad_several_images_a_task(n, groups):
    """Large batches run blocks of images a task (at least 16 tasks; the last block
    shorter): the reference's values, and the same bits on 1 or 2 threads."""
    from kernel_checks import serial_and_parallel

    _check_weight_grad(n, groups, 8, 16, 5, 6, np.float64, 6)
    rng = np.random.default_rng(7)
    x = rng.standard_normal((n, groups * 8, 5, 6)).astype(np.float32)
    go = rng.standard_normal((n, groups * 16, 5, 6)).astype(np.float32)
    one, two = serial_and_parallel(lambda: winograd.weight_grad(x, go, 8, groups))
    assert np.array_equal(one, two)


def test_winograd_empty_batch_and_wide_planes():
    """Batch 0 gives empty / zero results; the planner keeps very wide planes (one
    task's transform buffer would not fit in cache) off Winograd."""
    from minires.kernels.jit import planner

    w = np.ones((24, 32, 3, 3), np.float32)
    y, finite = winograd.forward(np.zeros((0, 32, 9, 30), np.float32), w, None, 1)
    assert y.shape == (0, 24, 9, 30) and finite
    gw = winograd.weight_grad(np.zeros((0, 32, 9, 30)), np.zeros((0, 24, 9, 30)), 32, 1)
    assert gw.shape == (24, 32, 3, 3) and not gw.any()
    narrow = planner.ConvGeometry.of((1, 256, 4, 56), (256, 256, 3, 3), 1, 1, 1, 1)
    wide = planner.ConvGeometry.of((1, 256, 4, 4000), (256, 256, 3, 3), 1, 1, 1, 1)
    assert planner.use_winograd(narrow, 4) and not planner.use_winograd(wide, 4)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "cout,cpi,k,groups",
    [(6, 5, 3, 1), (40, 17, 3, 2), (35, 33, 1, 5), (64, 1, 3, 64), (9, 3, 5, 3)],
)
def test_transposed_flipped_weights(cout, cpi, k, groups, dtype):
    """The blocked transpose-and-flip kernel behind every transposed input gradient
    writes exactly the per-group transposed, 180-degree-rotated weights (channel counts
    that are not multiples of its 16-channel tiles, 1x1 and 5x5, depthwise); the tap
    kernel's packed weights (zero-padded blocks of output channels) give the same values
    from the weights as they are with `transposed`."""
    from minires.kernels.jit import conv, tapconv

    w = np.random.default_rng(0).standard_normal((cout, cpi, k, k)).astype(dtype)
    cpo = cout // groups
    want = w.reshape(groups, cpo, cpi, k, k)[:, :, :, ::-1, ::-1].transpose(0, 2, 1, 3, 4)
    got = conv._transposed_flipped(w, groups)
    np.testing.assert_array_equal(got, want.reshape(groups * cpi, cpo, k, k))
    # the tap kernel's packing reads the transposed, flipped weights straight from w (the
    # input gradient's copy skipped): the same values
    for cb in (4, 8):
        np.testing.assert_array_equal(
            tapconv.pack_weights(w, groups, cb, transposed=True),
            tapconv.pack_weights(got, groups, cb),
        )
        packed = tapconv.pack_weights(w, groups, cb).reshape(groups, -1, cpi, k * k, cb)
        blocked = np.zeros((groups, packed.shape[1] * cb, cpi, k * k), dtype)
        blocked[:, :cpo] = w.reshape(groups, cpo, cpi, k * k)
        np.testing.assert_array_equal(
            packed, blocked.reshape(packed.shape[:2] + (cb, cpi, k * k)).transpose(0, 1, 3, 4, 2)
        )
