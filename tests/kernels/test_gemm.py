"""The SIMD GEMM of the 1x1 convs (kernels/jit/gemm.py) against a float64 product."""

from __future__ import annotations

import numba
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minires.kernels.jit import gemm

DTYPES = [np.float32, np.float64]
TOL = {np.float32: 2e-6, np.float64: 1e-14}


def _product(a, x):
    """out[n, g*M + m, p] = sum_k a[g, m, k] x[n, g*K + k, p], in float64."""
    G, M, K = a.shape
    N, _, P = x.shape
    xg = x.astype(np.float64).reshape(N, G, K, P)
    return np.einsum("gmk,ngkp->ngmp", a.astype(np.float64), xg).reshape(N, G * M, P)


def _check(a, x):
    out = gemm.conv1x1(a, x)
    assert out.shape == (x.shape[0], a.shape[0] * a.shape[1], x.shape[2])
    assert out.dtype == x.dtype
    want = _product(a, x)
    scale = np.abs(a).max(initial=0) * np.abs(x).max(initial=0) * max(1, a.shape[2])
    err = np.abs(out - want).max(initial=0)
    assert err <= TOL[x.dtype.type] * max(scale, 1e-300), (a.shape, x.shape, err, scale)
    return out


@settings(max_examples=60, deadline=None)
@given(
    groups=st.integers(1, 3),
    m=st.integers(1, 21),  # rows of A: whole and partial blocks of 8
    k=st.integers(1, 40),
    n=st.integers(1, 5),
    p=st.sampled_from([1, 3, 7, 15, 16, 17, 33, 49, 64, 100]),  # pixels per image
    transposed=st.booleans(),  # A as the transposed view an input gradient passes
    dtype=st.sampled_from(DTYPES),
    seed=st.integers(0, 999),
)
def test_conv1x1_matches_the_product(groups, m, k, n, p, transposed, dtype, seed):
    """Any plane size: columns inside one image, across image boundaries (vectors that
    span 2+ images when p < LANES), past the last column; batch 1; grouped."""
    rng = np.random.default_rng(seed)
    if transposed:
        a = rng.standard_normal((groups, k, m)).astype(dtype).transpose(0, 2, 1)
    else:
        a = rng.standard_normal((groups, m, k)).astype(dtype)
    x = rng.standard_normal((n, groups * k, p)).astype(dtype)
    _check(a, x)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("k", [385, 800])  # several blocks of rows of B (`_k_block`)
def test_conv1x1_long_reductions(dtype, k):
    rng = np.random.default_rng(k)
    a = rng.standard_normal((1, 19, k)).astype(dtype)
    x = rng.standard_normal((3, k, 50)).astype(dtype)
    _check(a, x)
    # 7x7 planes at batch 2: an odd number of vectors (a one-vector last panel) summed
    # over several blocks of k
    _check(a, rng.standard_normal((2, k, 49)).astype(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
def test_conv1x1_many_columns_and_few_rows(dtype):
    """Large planes (whole-vector packing, prefetches of the next block) and wide A with
    few columns (its rows split between tasks)."""
    rng = np.random.default_rng(1)
    normal = lambda *shape: rng.standard_normal(shape).astype(dtype)  # noqa: E731
    _check(normal(1, 24, 64), normal(2, 64, 3136))
    _check(normal(1, 520, 96), normal(2, 96, 9))
    _check(normal(2, 30, 9)[:, ::2], normal(3, 18, 20))  # neither W nor W^T: copied first


@pytest.mark.parametrize("dtype", DTYPES)
def test_conv1x1_empty_shapes(dtype):
    rng = np.random.default_rng(2)
    assert gemm.conv1x1(np.ones((1, 4, 3), dtype), np.ones((0, 3, 5), dtype)).shape == (0, 4, 5)
    assert gemm.conv1x1(np.ones((1, 0, 3), dtype), np.ones((2, 3, 5), dtype)).shape == (2, 0, 5)
    out = gemm.conv1x1(np.ones((1, 4, 0), dtype), np.ones((2, 0, 5), dtype))
    np.testing.assert_array_equal(out, np.zeros((2, 4, 5), dtype))
    _check(*(rng.standard_normal((1, 1, 1)).astype(dtype) for _ in range(2)))


@pytest.mark.parametrize("dtype", DTYPES)
def test_conv1x1_nonfinite_inputs(dtype):
    """NaN and inf reach exactly the outputs whose products they are in (packing adds
    the segments of a vector that spans images onto zeros: no lane mixes two values)."""
    a = np.ones((1, 3, 2), dtype)
    x = np.ones((3, 2, 7), dtype)
    x[1, 0, 3] = np.nan
    x[2, 1, 6] = np.inf
    out = gemm.conv1x1(a, x)
    np.testing.assert_array_equal(out, _product(a, x).astype(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("transposed", [False, True])
def test_conv1x1_nonfinite_weights(dtype, transposed):
    """A NaN / inf weight reaches exactly the outputs whose products it is in: the lanes
    past the last column (which read 0: 0 * inf) and the rows past M are never stored,
    so the SIMD GEMM takes non-finite weights as they are (planner.EXACT_ALGORITHMS)."""
    rng = np.random.default_rng(4)
    a = rng.standard_normal((1, 11, 5)).astype(dtype)  # 11 rows: a partial block of 8
    a[0, 3, 2], a[0, 10, 4], a[0, 0, 0] = np.inf, np.nan, -np.inf
    if transposed:  # W^T read as a view, as the input gradient does
        a = np.ascontiguousarray(a.transpose(0, 2, 1)).transpose(0, 2, 1)
    x = rng.standard_normal((3, 5, 7)).astype(dtype)  # 21 columns: vectors span images
    out = gemm.conv1x1(a, x)
    want = _product(a, x)
    np.testing.assert_array_equal(np.isnan(out), np.isnan(want))
    np.testing.assert_array_equal(np.isposinf(out), np.isposinf(want))
    np.testing.assert_array_equal(np.isneginf(out), np.isneginf(want))


def _one_thread_and_all(fn):
    """(fn() on one thread, fn() on all of them)."""
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = fn()
    finally:
        numba.set_num_threads(before)
    return one, fn()


def test_conv1x1_same_bits_for_any_thread_count():
    rng = np.random.default_rng(3)
    a = rng.standard_normal((1, 40, 700)).astype(np.float32)
    x = rng.standard_normal((5, 700, 37)).astype(np.float32)
    np.testing.assert_array_equal(*_one_thread_and_all(lambda: gemm.conv1x1(a, x)))


def _weight_grad_product(x, go, groups):
    N, GK, P = x.shape
    G, K, M = groups, GK // groups, go.shape[1] // groups
    xg = x.astype(np.float64).reshape(N, G, K, P)
    return np.einsum("ngmp,ngkp->gmk", go.astype(np.float64).reshape(N, G, M, P), xg)


@settings(max_examples=60, deadline=None)
@given(
    groups=st.integers(1, 3),
    m=st.integers(1, 21),
    k=st.integers(1, 40),  # input channels: partial panels of k
    n=st.integers(1, 5),
    p=st.sampled_from([1, 3, 7, 15, 16, 17, 49, 100, 300]),  # reduction runs across images
    dtype=st.sampled_from(DTYPES),
    chunks=st.sampled_from([None, 1, 3, 8]),  # tasks owning tiles, or reduction chunks
    seed=st.integers(0, 999),
)
def test_weight_grad_matches_the_product(groups, m, k, n, p, dtype, chunks, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, groups * k, p)).astype(dtype)
    go = rng.standard_normal((n, groups * m, p)).astype(dtype)
    gw = gemm.conv1x1_weight_grad(x, go, groups, chunks)
    assert gw.shape == (groups, m, k) and gw.dtype == dtype
    want = _weight_grad_product(x, go, groups)
    scale = np.abs(x).max() * np.abs(go).max() * n * p
    assert np.abs(gw - want).max() <= TOL[dtype] * scale


@pytest.mark.parametrize("dtype", DTYPES)
def test_weight_grad_long_reduction_and_nonfinite(dtype):
    """Several blocks of the reduction (`_JC`) summed in order; NaN and inf reach only
    the gradients whose products they are in."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((3, 40, 300)).astype(dtype)
    go = rng.standard_normal((3, 9, 300)).astype(dtype)
    want = _weight_grad_product(x, go, 1)
    np.testing.assert_allclose(gemm.conv1x1_weight_grad(x, go, 1), want, rtol=1e-4, atol=1e-3)
    x[1, 7, 250] = np.nan
    go[2, 4, 10] = np.inf
    gw = gemm.conv1x1_weight_grad(x, go, 1)
    np.testing.assert_array_equal(np.isnan(gw), np.isnan(_weight_grad_product(x, go, 1)))
    np.testing.assert_array_equal(np.isinf(gw), np.isinf(_weight_grad_product(x, go, 1)))


def test_weight_grad_chunks_rule():
    """Tiles over the whole reduction up to 8 MB of x + grad_out, then 8 chunks (a power
    of two), fewer when their partials would pass 24 MB."""
    assert gemm.weight_grad_chunks(1, 128, 256, 1000, 4) == 1
    assert gemm.weight_grad_chunks(1, 128, 256, 8 * 3136, 4) == 8
    assert gemm.weight_grad_chunks(1, 2048, 512, 8 * 3136, 4) == 4  # 4 MB partials
    assert gemm.weight_grad_chunks(1, 4096, 2048, 8 * 3136, 4) == 1  # 32 MB: one


def test_weight_grad_same_bits_for_any_thread_count():
    rng = np.random.default_rng(6)
    x = rng.standard_normal((4, 96, 77)).astype(np.float32)
    go = rng.standard_normal((4, 50, 77)).astype(np.float32)
    for chunks in (1, 4):
        wgrad = lambda c=chunks: gemm.conv1x1_weight_grad(x, go, 1, c)  # noqa: E731
        np.testing.assert_array_equal(*_one_thread_and_all(wgrad))
    empty = gemm.conv1x1_weight_grad(x[:0], go[:0], 1)
    np.testing.assert_array_equal(empty, np.zeros((1, 50, 96), np.float32))
