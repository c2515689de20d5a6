"""kernels.jit (Numba) against kernels.reference (NumPy): every kernel, both dtypes.

Shapes come from hypothesis (groups 1..depthwise, depthwise multipliers, stride,
padding, dilation, odd and non-square sizes, batch 1). Example counts are kept small:
the cost of this file is dominated by the first-call JIT compile of each kernel
(cached on disk afterwards).
"""

from __future__ import annotations

import warnings

import numba
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kernel_checks import assert_close, conv_passes, plan_of, serial_and_parallel, with_threads

import minires.kernels.jit as J
import minires.kernels.reference as R
from minires.kernels.jit import im2col_gemm as jgemm
from minires.kernels.jit import planner
from minires.kernels.jit.planner import Algorithm as A

SETTINGS = settings(
    max_examples=12,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
DTYPES = [np.float32, np.float64]


def rand(rng, shape, dtype):
    return rng.standard_normal(shape).astype(dtype)


# ----------------------------------------------------------------------------- conv


@st.composite
def conv_cases(draw):
    groups = draw(st.integers(1, 5))
    cpi = draw(st.integers(1, 4))
    cpo = draw(st.sampled_from([1, 2, 3, 4, 5, 8]))
    kh, kw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    sh, sw = draw(st.integers(1, 2)), draw(st.integers(1, 3))
    ph, pw = draw(st.integers(0, 2)), draw(st.integers(0, 2))
    dh, dw = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    h = draw(st.integers(max(1, dh * (kh - 1) + 1 - 2 * ph), 9))
    w = draw(st.integers(max(1, dw * (kw - 1) + 1 - 2 * pw), 9))
    n = draw(st.integers(1, 3))
    bias = draw(st.booleans())
    return dict(
        n=n,
        c=groups * cpi,
        h=h,
        w=w,
        cout=groups * cpo,
        k=(kh, kw),
        s=(sh, sw),
        p=(ph, pw),
        d=(dh, dw),
        g=groups,
        bias=bias,
    )


def check_conv(case, dtype, seed=0):
    rng = np.random.default_rng(seed)
    x = rand(rng, (case["n"], case["c"], case["h"], case["w"]), dtype)
    wt = rand(rng, (case["cout"], case["c"] // case["g"]) + case["k"], dtype)
    b = rand(rng, case["cout"], dtype) if case["bias"] else None
    args = (case["s"], case["p"], case["d"], case["g"])
    out = J.conv2d_forward(x, wt, b, *args)
    assert_close(out, R.conv2d_forward(x, wt, b, *args), dtype)
    go = rand(rng, out.shape, dtype)
    assert_close(
        J.conv2d_backward_input(go, wt, x.shape, *args),
        R.conv2d_backward_input(go, wt, x.shape, *args),
        dtype,
    )
    assert_close(
        J.conv2d_backward_weight(x, go, wt.shape, *args),
        R.conv2d_backward_weight(x, go, wt.shape, *args),
        dtype,
    )


@pytest.mark.parametrize("dtype", DTYPES)
@SETTINGS
@given(case=conv_cases())
def test_conv_random(case, dtype):
    check_conv(case, dtype)


def _case(n, c, h, w, cout, k, s=1, p=0, d=1, g=1, bias=False):
    return dict(
        n=n, c=c, h=h, w=w, cout=cout, k=(k, k), s=(s, s), p=(p, p), d=(d, d), g=g, bias=bias
    )


NAMED = {
    "resnext_4_per_group": _case(2, 16, 7, 6, 16, 3, p=1, g=4, bias=True),
    "resnext_8_per_group_stride2": _case(1, 32, 9, 8, 32, 3, s=2, p=1, g=4),
    "depthwise": _case(2, 6, 7, 9, 6, 3, p=1, g=6, bias=True),
    "depthwise_x2": _case(2, 3, 6, 5, 6, 3, p=1, g=3, bias=True),
    "depthwise_tiny": _case(2, 3, 2, 1, 3, 3, p=1, g=3),
    "depthwise_x2_dilated": _case(1, 5, 8, 7, 10, 3, p=2, d=2, g=5),
    "depthwise_stride2": _case(3, 4, 9, 6, 4, 3, s=2, p=1, g=4),
    "dense3x3": _case(2, 8, 6, 7, 12, 3, p=1, bias=True),
    "dense1x1": _case(2, 8, 5, 5, 6, 1),
    "dense1x1_stride2": _case(1, 8, 7, 5, 6, 1, s=2),
    "dense7x7_stem": _case(1, 3, 15, 13, 8, 7, s=2, p=3),
    "big_pad": _case(1, 4, 3, 3, 4, 3, p=3, g=2),
    "one_pixel": _case(1, 4, 1, 1, 8, 1, g=4),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", sorted(NAMED))
def test_conv_named(name, dtype):
    check_conv(NAMED[name], dtype, seed=1)


@pytest.mark.parametrize("name", ["resnext_4_per_group", "depthwise", "big_pad"])
def test_conv_grouped_through_blas(name, monkeypatch):
    """The im2col + per-group BLAS path (used for large groups) is correct too."""
    monkeypatch.setattr(planner, "_DIRECT_MAX_WORK", -1)
    monkeypatch.setattr(planner, "_TAPCONV_MAX_WORK", 0)
    gemm = {A.IM2COL_GEMM, A.TRANSPOSED_IM2COL_GEMM, A.COL2IM_GEMM}
    assert set(plan_of(NAMED[name], np.float64)) <= gemm
    check_conv(NAMED[name], np.float64, seed=2)


@pytest.mark.usefixtures("wide_vector_rules")
def test_small_dense_conv_dispatch_and_both_paths(monkeypatch):
    """CIFAR-sized dense 3x3 convs at stride 1 take direct kernels (tap table forward and
    input gradient, masked weight gradient); strided ones the lane or the direct tile
    kernel's weight gradient, wide ones BLAS. Both paths agree with the reference on the
    same case."""
    f32 = np.float32
    assert plan_of(_case(8, 16, 32, 32, 16, 3, p=1), f32) == (
        A.TAP_SAME, A.TRANSPOSED_TAP_SAME, A.SAME3X3_MASKED)  # fmt: skip
    assert plan_of(_case(8, 16, 32, 32, 16, 3, s=2, p=1), f32)[2] == A.LANE
    assert plan_of(_case(8, 8, 32, 32, 8, 3, s=2, p=1), f32)[2] == A.DIRECT
    # (20 columns: narrower than Winograd takes)
    assert plan_of(_case(8, 32, 32, 20, 32, 3, p=1), f32)[2] == A.SAME3X3_MASKED
    assert plan_of(_case(8, 64, 32, 20, 64, 3, p=1), f32)[2] == A.IM2COL_GEMM
    assert plan_of(_case(8, 32, 32, 32, 32, 3, p=1), f32) == (
        A.WINOGRAD, A.TRANSPOSED_WINOGRAD, A.WINOGRAD)  # fmt: skip
    case = _case(2, 16, 9, 7, 16, 3, p=1, bias=True)  # 16 outputs on a small plane
    assert plan_of(case, np.float64)[2] == A.LANE
    check_conv(case, np.float64, seed=3)
    monkeypatch.setattr(planner, "use_lane_weight_grad", lambda *a: False)
    assert plan_of(case, np.float64)[2] == A.SAME3X3_MASKED
    check_conv(case, np.float64, seed=3)
    monkeypatch.setattr(planner, "_DIRECT_MAX_DENSE", -1)
    assert plan_of(case, np.float64)[2] == A.IM2COL_GEMM
    check_conv(case, np.float64, seed=3)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n,c,h,w", [(1, 1, 1, 1), (2, 3, 1, 5), (1, 2, 6, 1), (3, 4, 5, 7)])
def test_im2col_same3x3_equals_general_im2col(n, c, h, w, dtype):
    """The masked flat im2col of 3x3 / stride 1 / pad 1 writes exactly what the general
    im2col writes, borders (masked taps -> 0) included, at sizes where every tap of a
    pixel may fall outside the image."""
    x = rand(np.random.default_rng(8), (n, c, h * w), dtype)
    geom = jgemm.ColGeometry(h, w, 3, 3, h, w, 1, 1, 1, 1, 1, 1)
    want = np.full((n, c * 9, h * w), np.nan, dtype)
    jgemm._im2col(0, n * c, x, want, tuple(geom))
    got = np.full_like(want, np.nan)
    jgemm._im2col_range(0, n * c, x, got, geom)
    np.testing.assert_array_equal(got, want)
    # an image block: the images side by side along the columns, (C*9, n*H*W)
    buf = np.full(want.size + 5, np.nan, dtype)
    block = jgemm._im2col_block(x, buf, geom)
    np.testing.assert_array_equal(block, want.transpose(1, 0, 2).reshape(c * 9, n * h * w))
    assert np.isnan(buf[want.size :]).all()  # nothing written past the block


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", [1, 3])
def test_dense3x3_blas_path_masked_im2col(n, dtype, monkeypatch):
    """Dense 3x3 / stride 1 / pad 1 through BLAS (the masked im2col per image; the input
    gradient as the forward conv with transposed, flipped weights), at 1 and 2 threads."""
    monkeypatch.setattr(planner, "_DIRECT_MAX_DENSE", -1)
    monkeypatch.setattr(planner, "_TAPCONV_MAX_WORK", 0)
    monkeypatch.setattr(planner, "weights_dominate", lambda g: False)  # not col2im
    case = _case(n, 5, 7, 3, 6, 3, p=1, bias=True)
    assert plan_of(case, dtype) == (A.IM2COL_GEMM, A.TRANSPOSED_IM2COL_GEMM, A.IM2COL_GEMM)
    for k in (1, min(2, numba.config.NUMBA_NUM_THREADS)):
        with_threads(k, lambda: check_conv(case, dtype, seed=9))
    # image blocks of 2 (a ragged last block when n = 3)
    per_image = 5 * 9 * 7 * 3 * np.dtype(dtype).itemsize
    monkeypatch.setattr(jgemm, "_BLOCK_COLS_BYTES", 2 * per_image)
    geom = jgemm.ColGeometry(7, 3, 3, 3, 7, 3, 1, 1, 1, 1, 1, 1)
    assert jgemm._images_per_block(n, 5, geom, np.dtype(dtype).itemsize) == min(n, 2)
    for k in (1, min(2, numba.config.NUMBA_NUM_THREADS)):
        with_threads(k, lambda: check_conv(case, dtype, seed=9))
    # and the same shortcut for a dilated conv whose flipped padding is still >= 0
    check_conv(_case(n, 4, 8, 9, 4, 3, p=2, d=2), dtype, seed=10)


@pytest.mark.usefixtures("wide_vector_rules")
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "n,groups,cpi,cpo,h,w",
    [
        (2, 4, 4, 4, 7, 6),  # 32x4d-like
        (1, 2, 14, 14, 5, 9),  # 8x14d-like: 4 + 4 + 4 + 2 output channels per group
        (2, 3, 2, 5, 1, 1),  # one pixel: every neighbour masked
        (1, 2, 3, 3, 1, 5),  # one row
        (1, 2, 2, 1, 6, 1),  # one column
        (2, 2, 8, 8, 40, 3),  # several row chunks
        (1, 1, 5, 6, 48, 49),  # weight gradient in 2-3 vector blocks, odd channel pairs
        (1, 3, 2, 6, 2, 2),
    ],
)
def test_conv_same3x3_masked_kernel(n, groups, cpi, cpo, h, w, dtype, monkeypatch):
    """The masked 3x3 / stride 1 / pad 1 kernels (tap table forward and backward-input,
    masked weight gradient) against the reference, at sizes where the flat tap offsets
    point outside the image (masked lanes), and bit-identical to themselves for 1 and 2
    threads; and the tile kernels agree too (forced with _SAME3X3_MAX_CPI = 0 and
    _TAPCONV_MAX_WORK = 0)."""
    case = _case(n, groups * cpi, h, w, groups * cpo, 3, p=1, g=groups, bias=True)
    fwd = A.TAP_SAME if cpo >= 2 else A.DIRECT  # the tap tile needs >= 2 outputs
    assert plan_of(case, dtype) == (fwd, A.TRANSPOSED_TAP_SAME, A.SAME3X3_MASKED)
    check_conv(case, dtype, seed=5)
    rng = np.random.default_rng(6)
    x = rand(rng, (n, groups * cpi, h, w), dtype)
    wt = rand(rng, (groups * cpo, cpi, 3, 3), dtype)
    go = rand(rng, (n, groups * cpo, h, w), dtype)
    run = conv_passes(x, wt, go, ((1, 1), (1, 1), (1, 1), groups))
    serial, parallel = serial_and_parallel(run)
    for a, b in zip(serial, parallel):
        np.testing.assert_array_equal(a, b)
    monkeypatch.setattr(planner, "_SAME3X3_MAX_CPI", 0)
    monkeypatch.setattr(planner, "_TAPCONV_MAX_WORK", 0)
    bwd = A.TRANSPOSED_DEPTHWISE3X3 if cpo == 1 else A.TRANSPOSED_DIRECT
    assert plan_of(case, dtype) == (A.DIRECT, bwd, A.DIRECT)
    for a, b in zip(serial, run()):
        assert_close(a, b, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("h,w", [(2, 2), (3, 3), (2, 9), (5, 2), (3, 17), (12, 11)])
def test_conv_depthwise3x3_borders(h, w, dtype):
    """The depthwise 3x3 / stride 1 / pad 1 kernels (flat interior, separate border
    columns/rows/corners) at sizes where the border is most of the plane."""
    check_conv(_case(2, 3, h, w, 3, 3, p=1, g=3, bias=True), dtype, seed=7)
    check_conv(_case(1, 2, h, w, 4, 3, p=1, g=2), dtype, seed=8)  # multiplier 2


def test_conv_noncontiguous_and_mixed_dtype():
    rng = np.random.default_rng(3)
    x = rand(rng, (2, 9, 8, 8), np.float32).transpose(0, 1, 3, 2)[:, ::2]  # (2, 5, 8, 8)
    wt = rand(rng, (5, 1, 3, 3), np.float64)  # weight dtype differs: output follows x
    out = J.conv2d_forward(x, wt, None, (1, 1), (1, 1), (1, 1), 5)
    assert out.dtype == np.float32
    want = R.conv2d_forward(
        np.ascontiguousarray(x), wt.astype(np.float32), None, (1, 1), (1, 1), (1, 1), 5
    )
    assert_close(out, want, np.float32)


@pytest.mark.parametrize(
    "name", ["resnext_4_per_group", "resnext_8_per_group_stride2", "depthwise", "dense3x3"]
)
def test_conv_parallel_equals_serial(name):
    """Every path is partition-independent: 1 thread == 2 threads bit for bit.

    (Weight-gradient partials are per (image, group), or per fixed chunk of image blocks
    on the GEMM paths, and reduced afterwards in a fixed order; each output element is
    computed by exactly one task; every GEMM runs on one BLAS thread. More in
    tests/test_determinism.py.)
    """
    case = NAMED[name]
    rng = np.random.default_rng(4)
    x = rand(rng, (case["n"], case["c"], case["h"], case["w"]), np.float32)
    wt = rand(rng, (case["cout"], case["c"] // case["g"]) + case["k"], np.float32)
    args = (case["s"], case["p"], case["d"], case["g"])
    go = rand(rng, J.conv2d_forward(x, wt, None, *args).shape, np.float32)
    serial, parallel = serial_and_parallel(conv_passes(x, wt, go, args))
    for a, b in zip(serial, parallel):
        np.testing.assert_array_equal(a, b)


def test_workspace_is_reused():
    from minires.kernels.jit._numba import workspace

    a = workspace("test", 100, np.float32)
    b = workspace("test", 50, np.float32)
    assert np.shares_memory(a, b)
    assert workspace("test", 200, np.float32).size == 200


def test_cache_fallback_warns_and_works(monkeypatch):
    """With no writable cache location, kernels still compile (in memory) and warn once."""
    import numba.core.caching as caching

    from minires.kernels.jit import _numba

    impl = getattr(caching, "CacheImpl", None) or caching._CacheImpl
    monkeypatch.setattr(impl, "_locator_classes", [])
    monkeypatch.setattr(_numba, "_cache_warned", False)
    monkeypatch.delenv("NUMBA_CACHE_LOCATOR_CLASSES", raising=False)
    with pytest.warns(RuntimeWarning, match="NUMBA_CACHE_DIR"):

        @_numba.jit()
        def twice(v):
            return 2 * v

    assert twice(21) == 42


# ----------------------------------------------------------------------------- batch norm

bn_shapes = st.one_of(
    st.tuples(st.integers(1, 4), st.integers(1, 5), st.integers(1, 6), st.integers(1, 6)),
    st.tuples(st.integers(2, 6), st.integers(1, 5)),
)


@pytest.mark.parametrize("dtype", DTYPES)
@SETTINGS
@given(shape=bn_shapes, seed=st.integers(0, 2**16))
def test_batch_norm(shape, seed, dtype):
    rng = np.random.default_rng(seed)
    c = shape[1]
    x = (rand(rng, shape, dtype) * 2 + 3).astype(dtype)
    w, b = rand(rng, c, dtype), rand(rng, c, dtype)
    g = rand(rng, shape, dtype)
    eps = 1e-5
    got = J.batch_norm_train_forward(x, w, b, eps)
    want = R.batch_norm_train_forward(x, w, b, eps)
    for a, r in zip(got, want):
        assert_close(a, r, dtype)
    _, mean, var = want
    for a, r in zip(
        J.batch_norm_train_backward(g, x, mean, var, w, eps),
        R.batch_norm_train_backward(g, x, mean, var, w, eps),
    ):
        assert_close(a, r, dtype)
    rm, rv = rand(rng, c, dtype), (rng.random(c) + 0.5).astype(dtype)
    assert_close(
        J.batch_norm_eval_forward(x, rm, rv, w, b, eps),
        R.batch_norm_eval_forward(x, rm, rv, w, b, eps),
        dtype,
    )
    for a, r in zip(
        J.batch_norm_eval_backward(g, x, rm, rv, w, eps),
        R.batch_norm_eval_backward(g, x, rm, rv, w, eps),
    ):
        assert_close(a, r, dtype)


# ----------------------------------------------------------------------------- pooling


@st.composite
def pool_cases(draw):
    kh, kw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    sh, sw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    ph, pw = draw(st.integers(0, kh // 2)), draw(st.integers(0, kw // 2))
    h = draw(st.integers(max(1, kh - 2 * ph), 9))
    w = draw(st.integers(max(1, kw - 2 * pw), 9))
    return (draw(st.integers(1, 3)), draw(st.integers(1, 3)), h, w), (kh, kw), (sh, sw), (ph, pw)


@pytest.mark.parametrize("dtype", DTYPES)
@SETTINGS
@given(case=pool_cases(), seed=st.integers(0, 2**16), ties=st.booleans())
def test_pooling(case, seed, ties, dtype):
    shape, k, s, p = case
    rng = np.random.default_rng(seed)
    x = rand(rng, shape, dtype)
    if ties:  # many equal values: the first maximum must win, like the reference
        x = np.round(x).astype(dtype)
    out, arg = J.max_pool2d_forward(x, k, s, p)
    rout, rarg = R.max_pool2d_forward(x, k, s, p)
    assert_close(out, rout, dtype)
    assert arg.dtype == np.int64
    np.testing.assert_array_equal(arg, rarg)
    g = rand(rng, out.shape, dtype)
    assert_close(J.max_pool2d_backward(g, arg, shape), R.max_pool2d_backward(g, rarg, shape), dtype)
    assert_close(J.avg_pool2d_forward(x, k, s, p), R.avg_pool2d_forward(x, k, s, p), dtype)
    assert_close(
        J.avg_pool2d_backward(g, shape, k, s, p), R.avg_pool2d_backward(g, shape, k, s, p), dtype
    )


def test_max_pool_nan_and_inf():
    x = np.array([[[[1.0, np.nan, 3.0, -np.inf], [np.nan, 0.0, -np.inf, -np.inf]]]])
    out, arg = J.max_pool2d_forward(x, (2, 2), (2, 2), (0, 0))
    rout, rarg = R.max_pool2d_forward(x, (2, 2), (2, 2), (0, 0))
    np.testing.assert_array_equal(out, rout)
    np.testing.assert_array_equal(arg, rarg)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "s,p,hw", [(2, 1, (17, 16)), (1, 1, (9, 12)), (2, 0, (15, 15)), (3, 1, (5, 20))]
)
def test_max_pool_3x3_inside_windows_like_reference(s, p, hw, dtype):
    """3x3 windows inside the plane take the straight-line path (`pool._max9`), the ones
    at the borders the clipped loop: both give the reference's maxima and indices with
    NaN (the last NaN of a window wins), -inf, +inf and ties (the first maximum wins)."""
    rng = np.random.default_rng(11)
    x = rng.integers(-3, 4, (2, 3) + hw).astype(dtype)  # many ties
    flat = x.reshape(-1)
    flat[rng.choice(flat.size, flat.size // 9, replace=False)] = np.nan
    flat[rng.choice(flat.size, flat.size // 9, replace=False)] = -np.inf
    flat[rng.choice(flat.size, flat.size // 20, replace=False)] = np.inf
    got = J.max_pool2d_forward(x, (3, 3), (s, s), (p, p))
    want = R.max_pool2d_forward(x, (3, 3), (s, s), (p, p))
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])


# ----------------------------------------------------------------------------- elementwise


@pytest.mark.parametrize("dtype", DTYPES)
def test_relu(dtype):
    rng = np.random.default_rng(5)
    x = rand(rng, (3, 4, 5, 6), dtype)
    x[0, 0, 0, :3] = [np.nan, 0.0, -0.0]
    y = rand(rng, x.shape, dtype)
    np.testing.assert_array_equal(J.relu_forward(x), R.relu_forward(x))
    np.testing.assert_array_equal(J.relu_forward(x.T), R.relu_forward(x.T))  # non-contiguous
    out = R.relu_forward(y)
    np.testing.assert_array_equal(J.relu_backward(x, out), R.relu_backward(x, out))
    np.testing.assert_array_equal(J.add_relu_forward(x, y), R.relu_forward(x + y))
    assert J.relu_forward(x).dtype == dtype


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", [5, 1 << 20])  # one thread; several blocks on two
def test_relu_into_out_and_in_place(dtype, n):
    """`relu_forward(x, out)`: into another array, into x itself (the in-place ReLU's
    one-array kernel), into a non-contiguous out - the out-of-place values, NaN kept."""
    rng = np.random.default_rng(6)
    x = rand(rng, (n,), dtype)
    x[:3] = [np.nan, 0.0, -0.0]
    want = R.relu_forward(x)
    for K in (J, R):
        out = np.empty_like(x)
        assert K.relu_forward(x, out=out) is out
        np.testing.assert_array_equal(out, want)
        inplace = x.copy()
        assert K.relu_forward(inplace, out=inplace) is inplace
        np.testing.assert_array_equal(inplace, want)
        strided = np.zeros(2 * n, dtype)[::2]
        assert K.relu_forward(x, out=strided) is strided
        np.testing.assert_array_equal(strided, want)


@pytest.mark.parametrize("dtype", DTYPES)
def test_add_is_numpys_sum_on_every_path(dtype):
    """`add` gives NumPy's a + b bit for bit: on two threads (C-contiguous, one float
    dtype, from PARALLEL_MIN_BYTES up: sizes that are not a multiple of its blocks), and
    through NumPy below that size, for strided views and for mixed dtypes (NumPy's
    promotion)."""
    from minires.kernels.jit import elementwise

    rng = np.random.default_rng(7)
    itemsize = np.dtype(dtype).itemsize
    for size in (5, elementwise.PARALLEL_MIN_BYTES // itemsize + 3, (1 << 20) + 17):
        a = rand(rng, (size,), dtype)
        b = rand(rng, (size,), dtype)
        a[:4] = [np.nan, np.inf, -np.inf, np.inf]
        b[:4] = [1.0, -np.inf, 2.0, np.inf]
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # silent on every path (inf - inf), like torch
            out = J.add(a, b)
        assert out.dtype == dtype and out.shape == a.shape
        assert not np.shares_memory(out, a) and not np.shares_memory(out, b)
        with np.errstate(invalid="ignore"):
            np.testing.assert_array_equal(out, a + b)  # NaN / inf in the same places
    x = rand(rng, (64, 4096), dtype)
    y = rand(rng, (64, 4096), dtype)
    np.testing.assert_array_equal(J.add(x.T, y.T), x.T + y.T)  # non-contiguous
    np.testing.assert_array_equal(J.add(x, y[::-1]), x + y[::-1])
    other = np.float64 if dtype == np.float32 else np.float32
    mixed = J.add(x, y.astype(other))
    assert mixed.dtype == np.float64
    np.testing.assert_array_equal(mixed, x + y.astype(other))
    np.testing.assert_array_equal(R.add(x, y), x + y)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("m,n,k", [(2, 1000, 2048), (3, 7, 5), (1, 513, 1031), (0, 4, 3)])
def test_linear_products_like_reference(m, n, k, dtype):
    """The fc layer's three products: the reference's values (its single GEMMs) whether
    or not the weights are large enough to be cut into column blocks on the threads
    (2 x 2048 -> 1000: ResNet-50's fc; 513 x 1031 with odd halves), also for no rows."""
    from minires.kernels.jit import linear

    rng = np.random.default_rng(3)
    x, w, g = rand(rng, (m, k), dtype), rand(rng, (n, k), dtype), rand(rng, (m, n), dtype)
    split = linear._chunks(w, m) > 1
    assert split == (w.nbytes >= linear.PARALLEL_MIN_BYTES and bool(linear.blas_controller()))
    for got, want in (
        (J.linear_forward(x, w), R.linear_forward(x, w)),
        (J.linear_backward_input(g, w), R.linear_backward_input(g, w)),
        (J.linear_backward_weight(g, x), R.linear_backward_weight(g, x)),
    ):
        assert got.dtype == want.dtype and got.shape == want.shape
        assert_close(got, want, dtype)


def test_exports_everything():
    for name in R.__all__:
        assert callable(getattr(J, name)), name
        assert J.implemented_here(name), f"{name} falls back to the reference"
