"""Results do not depend on the thread count: 1 and 2 threads give the same bits.

Every dispatch path of the conv (forward, input gradient, weight gradient: the shared
geometries of kernel_checks.CONV_PATH_CASES, plus random geometries), batch norm,
pooling, ReLU, and a whole training step. This is what makes a resumed run (training.py
checkpoints) continue bit for bit on a machine with another number of cores.

The weight gradient of the GEMM paths used to differ (36 of 200 random geometries in the
issue, 78 of the 200 of `test_conv_random_geometries_bit_identical`): the images were
split into one range per thread, so the partial sums - and their rounding - changed with
the thread count. The kernels now
cut the work into blocks and chunks that depend only on the shapes (conv.py, BLAS
section).
"""

from __future__ import annotations

import numba
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from kernel_checks import CONV_PATH_CASES, conv_case, conv_inputs, conv_passes, with_threads

import minires as mr
import minires.kernels.jit as J
from minires import nn

pytestmark = pytest.mark.skipif(
    numba.config.NUMBA_NUM_THREADS < 2, reason="needs 2 Numba threads (NUMBA_NUM_THREADS >= 2)"
)
DTYPES = [np.float32, np.float64]


def one_and_two(fn):
    """(fn() on 1 thread, fn() on 2 threads)."""
    return with_threads(1, fn), with_threads(2, fn)


def assert_bitwise(a, b, what=""):
    for i, (u, v) in enumerate(zip(a, b)):
        assert u.dtype == v.dtype and u.shape == v.shape, what
        assert np.array_equal(u, v, equal_nan=True), f"{what}: output {i} differs"


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", sorted(CONV_PATH_CASES))
def test_conv_paths_bit_identical_for_1_and_2_threads(name, dtype):
    """Each dispatch path, forward / input gradient / weight gradient, with 5 images (so
    the image blocks and weight-gradient chunks are more than one per thread)."""
    case = dict(CONV_PATH_CASES[name][0], n=5)
    x, w, go, args = conv_inputs(case, dtype, 11)
    assert_bitwise(*one_and_two(conv_passes(x, w, go, args)), name)


def _random_geometries(seed, count):
    """Dense / grouped convs of 8..96 channels, kernel 1/3/5, stride 1/2, batch 1..8: the
    GEMM paths mostly (the sweep that found the thread-dependent weight gradient)."""
    rng = np.random.default_rng(seed)
    for _ in range(count):
        g = int(rng.choice([1, 1, 1, 2, 4]))
        cpi, cpo = (int(rng.choice([8, 16, 32, 48, 64, 96])) for _ in range(2))
        k = int(rng.choice([1, 3, 3, 5]))
        h, w = (int(rng.integers(k, 20)) for _ in range(2))
        s, p = int(rng.choice([1, 2])), int(rng.integers(0, k // 2 + 1))
        yield conv_case(int(rng.integers(1, 9)), g * cpi, h, w, g * cpo, k, s=s, p=p, g=g)


def _check_geometries(cases):
    for i, case in enumerate(cases):
        x, w, go, args = conv_inputs(case, np.float32, i)
        assert_bitwise(*one_and_two(conv_passes(x, w, go, args)), str(case))


def test_conv_random_geometries_bit_identical():
    """200 random geometries, as in the issue's sweep (78 of these differed before the
    fix: weight gradient 78, forward 4, input gradient 3)."""
    _check_geometries(_random_geometries(123, 200))


def test_weight_grad_work_split_does_not_depend_on_threads(monkeypatch):
    """The GEMM weight gradient sums fixed chunks of fixed image blocks: image blocks of
    several small images, more chunks than threads, a ragged last block; and the partials
    capped by memory (wide layers) - still the same bits for 1 and 2 threads."""
    from minires.kernels.jit import im2col_gemm as jgemm

    case = conv_case(13, 72, 12, 12, 80, 3, p=1)  # im2col_gemm, 2 images per block
    x, w, go, args = conv_inputs(case, np.float32, 3)
    geom = jgemm.ColGeometry(12, 12, 3, 3, 12, 12, 1, 1, 1, 1, 1, 1)
    assert jgemm._image_blocks(13, 72, geom, 4) == [0, 1, 3, 5, 7, 9, 11, 13]
    run = lambda: J.conv2d_backward_weight(x, go, w.shape, *args)  # noqa: E731
    want, b = one_and_two(run)
    assert_bitwise([want], [b])
    monkeypatch.setattr(jgemm, "_PARTIALS_BYTES", 3 * w.nbytes)  # 2 chunks, not 4
    a, b = one_and_two(run)
    assert_bitwise([a], [b])
    np.testing.assert_allclose(a, want, rtol=1e-4, atol=1e-3)


@settings(max_examples=40, deadline=None)
@given(
    g=st.integers(1, 3),
    cpi=st.integers(1, 20),
    cpo=st.integers(1, 40),
    hw=st.integers(1, 11),
    k=st.sampled_from([1, 3]),
    s=st.integers(1, 2),
    dtype=st.sampled_from(DTYPES),
    seed=st.integers(0, 2**16),
)
def test_single_image_gemm_row_split(g, cpi, cpo, hw, k, s, dtype, seed, monkeypatch):
    """A single image's BLAS GEMM (the three passes of the GEMM paths) runs in chunks of
    its output rows on the threads (forced here on small convs): the reference's
    values, and the same bits for 1 and 2 threads."""
    from minires.kernels import reference as R
    from minires.kernels.jit import conv as jconv
    from minires.kernels.jit import im2col_gemm as jgemm
    from minires.kernels.jit import planner

    A = planner.Algorithm
    monkeypatch.setattr(jgemm, "_ROW_SPLIT_MIN_MACS", 0)
    case = conv_case(1, g * cpi, hw, hw, g * cpo, k, s=s, p=k // 2, g=g)
    x, w, go, args = conv_inputs(case, dtype, seed)
    geo = planner.ConvGeometry.of(x.shape, w.shape, *args)
    paths = [(A.IM2COL_GEMM, A.COL2IM_GEMM, A.IM2COL_GEMM)]
    if planner.is_pointwise(geo):
        paths.append((A.POINTWISE_GEMM, A.TRANSPOSED_POINTWISE_GEMM, A.POINTWISE_GEMM))
    tol = 1e-4 if dtype == np.float32 else 1e-10
    want = (
        R.conv2d_forward(x, w, None, *args),
        R.conv2d_backward_input(go, w, x.shape, *args),
        R.conv2d_backward_weight(x, go, w.shape, *args),
    )
    x3, go3 = x.reshape(1, x.shape[1], -1), go.reshape(1, go.shape[1], -1)
    for fwd, bwd, wgrad in paths:
        run = lambda fwd=fwd, bwd=bwd, wgrad=wgrad: (  # noqa: E731
            jconv._run_forward(fwd, x, w, None, geo),
            jconv._run_backward_input(bwd, go, w, geo),
            jconv._run_backward_weight(wgrad, x3, go3, geo),
        )
        one, two = one_and_two(run)
        assert_bitwise(one, two, f"{case} {fwd} {bwd}")
        for got, ref in zip(one, want):
            np.testing.assert_allclose(got, ref, rtol=tol, atol=tol)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(6, 5, 9, 11), (40, 7)])
def test_batch_norm_bit_identical(shape, dtype):
    rng = np.random.default_rng(4)
    x, g = (rng.standard_normal(shape).astype(dtype) for _ in range(2))
    w, b, rm = (rng.standard_normal(shape[1]).astype(dtype) for _ in range(3))
    rv = rng.random(shape[1]).astype(dtype) + 0.5

    def run():
        out, mean, var = J.batch_norm_train_forward(x, w, b, 1e-5)
        return (
            out,
            mean,
            var,
            *J.batch_norm_train_backward(g, x, mean, var, w, 1e-5),
            J.batch_norm_eval_forward(x, rm, rv, w, b, 1e-5),
            *J.batch_norm_eval_backward(g, x, rm, rv, w, 1e-5),
        )

    assert_bitwise(*one_and_two(run))


@pytest.mark.parametrize("dtype", DTYPES)
def test_pooling_and_relu_bit_identical(dtype):
    rng = np.random.default_rng(5)
    x = rng.standard_normal((4, 6, 13, 12)).astype(dtype)
    x[0, 0, :2, :2] = np.nan
    y = rng.standard_normal(x.shape).astype(dtype)

    def run():
        res = []
        for k, s, p in (((3, 3), (2, 2), (1, 1)), ((2, 2), (2, 2), (0, 0))):
            out, arg = J.max_pool2d_forward(x, k, s, p)
            g = np.linspace(-1, 1, out.size, dtype=dtype).reshape(out.shape)
            res += [out, arg, J.max_pool2d_backward(g, arg, x.shape)]
            res += [J.avg_pool2d_forward(x, k, s, p), J.avg_pool2d_backward(g, x.shape, k, s, p)]
        out = J.relu_forward(x)
        big = np.repeat(x, 200, axis=0)  # 3 MB at float32: `add` on the threads
        return res + [out, J.relu_backward(y, out), J.add_relu_forward(x, y), J.add(big, big)]

    assert_bitwise(*one_and_two(run))


@pytest.mark.parametrize("dtype", DTYPES)
def test_linear_bit_identical(dtype):
    """The fc products (cut into column blocks for large weights) on 1 and 2 threads."""
    rng = np.random.default_rng(8)
    x = rng.standard_normal((2, 2048)).astype(dtype)
    w = rng.standard_normal((1000, 2048)).astype(dtype)
    g = rng.standard_normal((2, 1000)).astype(dtype)

    def run():
        return [
            J.linear_forward(x, w),
            J.linear_backward_input(g, w),
            J.linear_backward_weight(g, x),
        ]

    assert_bitwise(*one_and_two(run))


def _training_step(threads, dtype):
    """Two SGD steps of a small net that takes every kind of path (tap table, lanes,
    direct, im2col + GEMM, 1x1 GEMM, batch norm, pools, linear) on `threads` threads."""
    rng = np.random.default_rng(6)
    mr.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1),
        nn.BatchNorm2d(16),
        nn.ReLU(),
        nn.Conv2d(16, 80, 3, stride=2, padding=1),  # tap table forward
        nn.BatchNorm2d(80),
        nn.ReLU(),
        nn.Conv2d(80, 96, 3, padding=1),  # im2col + GEMM
        nn.ReLU(),
        nn.MaxPool2d(3, 2, 1),
        nn.Conv2d(96, 128, 1),  # 1x1 GEMM
        nn.Conv2d(128, 128, 3, padding=1, groups=8),  # grouped direct / masked
        nn.AvgPool2d(2),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(128, 10),
    ).to(dtype)
    opt = mr.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    x = rng.standard_normal((6, 3, 16, 16)).astype(dtype)
    y = rng.integers(0, 10, 6)

    def step():
        for _ in range(2):
            opt.zero_grad()
            loss = mr.nn.functional.cross_entropy(model(mr.tensor(x)), y)
            loss.backward()
            opt.step()
        return [p.data.copy() for p in model.parameters()] + [
            b.copy() for _, b in model.named_buffers()
        ]

    return with_threads(threads, step)


@pytest.mark.parametrize("dtype", DTYPES)
def test_training_steps_bit_identical(dtype):
    """Parameters and running statistics after two SGD steps: the same bits for 1 and 2
    threads (what a resumed run on another machine relies on)."""
    with mr.use_backend("numba"):
        a, b = _training_step(1, dtype), _training_step(2, dtype)
    assert len(a) > 20
    assert_bitwise(a, b)
