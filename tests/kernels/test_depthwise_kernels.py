"""kernels.jit.depthwise (depthwise 3x3 / stride 1 / pad 1 range kernels) against the
NumPy reference: forward (with bias, channel
multiplier 1 and 2), backward-input (the forward on grad_out with flipped weights) and the
weight gradient; float32 and float64; H, W in {1, 2, 3, 5, 17, 56} and odd shapes;
1 thread vs 2 threads bit-identical."""

from __future__ import annotations

import numpy as np
import pytest
from kernel_checks import assert_close, serial_and_parallel

import minires.kernels.reference as R
from minires.kernels.jit import conv as jconv
from minires.kernels.jit import depthwise as dw
from minires.kernels.jit._numba import parallel_for

DTYPES = [np.float32, np.float64]
ONE = ((1, 1), (1, 1), (1, 1))  # stride, padding, dilation

# (N, C, cpo, H, W): C = groups = input channels, cpo = output channels per group
SHAPES = [
    (2, 3, 1, 56, 56),
    (1, 4, 1, 17, 17),
    (1, 2, 2, 17, 5),
    (2, 3, 1, 1, 1),
    (1, 2, 1, 1, 7),
    (1, 2, 1, 7, 1),
    (1, 2, 1, 1, 56),
    (1, 1, 2, 2, 2),
    (1, 2, 1, 2, 3),
    (1, 2, 1, 3, 3),
    (1, 2, 1, 5, 17),
    (1, 3, 2, 33, 31),
    (1, 2, 1, 9, 16),
    (1, 2, 1, 3, 56),
    (1, 2, 1, 56, 2),
    (1, 2, 1, 7, 7),
    (2, 3, 1, 14, 14),
    (1, 2, 2, 4, 15),
]


def data(shape, dtype, seed=0):
    N, C, cpo, H, W = shape
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((N, C, H, W)).astype(dtype)
    w = rng.standard_normal((C * cpo, 1, 3, 3)).astype(dtype)
    b = rng.standard_normal(C * cpo).astype(dtype)
    go = rng.standard_normal((N, C * cpo, H, W)).astype(dtype)
    return x, w, b, go


def forward(kernel, x, w, b):
    N, C, H, W = x.shape
    out = np.full((N, w.shape[0], H * W), np.nan, x.dtype)  # every element must be written
    parallel_for(kernel, N * C, x.reshape(N, C, H * W), w, b, out, H, W, C)
    return out.reshape(N, w.shape[0], H, W)


def weight_grad(kernel, x, go):
    N, C, H, W = x.shape
    Cout = go.shape[1]
    part = np.full((N, Cout, 1, 3, 3), np.nan, x.dtype)
    parallel_for(
        kernel,
        N * C,
        x.reshape(N, C, H * W),
        go.reshape(N, Cout, H * W),
        part,
        H,
        W,
        C,
        x.dtype.type(0),
    )
    return part.sum(axis=0)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_forward_and_weight_grad_match_reference(shape, dtype):
    x, w, b, go = data(shape, dtype)
    C = x.shape[1]
    want = R.conv2d_forward(x, w, b, *ONE, C)
    got = forward(dw.dw3x3_range, x, w, b)
    assert got.dtype == want.dtype
    assert_close(got, want, dtype)

    want_w = R.conv2d_backward_weight(x, go, w.shape, *ONE, C)
    got_w = weight_grad(dw.dw3x3_bwd_weight_range, x, go)
    assert_close(got_w, want_w, dtype)


SHAPES_CPO1 = [s for s in SHAPES if s[2] == 1]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES_CPO1, ids=lambda s: "x".join(map(str, s)))
def test_backward_input_via_flipped_weights(shape, dtype):
    # conv.conv2d_backward_input runs the forward kernel on grad_out with the
    # 180-degree-flipped weights and zero bias (channel multiplier 1)
    x, w, _, go = data(shape, dtype, seed=1)
    C = x.shape[1]
    want = R.conv2d_backward_input(go, w, x.shape, *ONE, C)
    wf = jconv._transposed_flipped(w, C)
    got = forward(dw.dw3x3_range, go, wf, np.zeros(C, dtype))
    assert_close(got, want, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_one_vs_two_threads_bit_identical(dtype):
    x, w, b, go = data((3, 5, 2, 19, 23), dtype, seed=2)
    (f1, g1), (f2, g2) = serial_and_parallel(
        lambda: (forward(dw.dw3x3_range, x, w, b), weight_grad(dw.dw3x3_bwd_weight_range, x, go))
    )
    assert np.array_equal(f1, f2)
    assert np.array_equal(g1, g2)


def test_nonfinite_inputs_propagate_like_the_reference():
    # masked (out-of-image) taps read as 0 and are never multiplied into the result as
    # inf * 0: non-finite outputs appear exactly where the reference has them
    x, w, b, _ = data((1, 2, 1, 6, 7), np.float32, seed=3)
    x[0, 0, 0, 0] = np.inf
    x[0, 0, 5, 6] = -np.inf
    x[0, 1, 2, 6] = np.nan
    x[0, 1, 3, 0] = np.inf
    want = R.conv2d_forward(x, w, b, *ONE, 2)
    got = forward(dw.dw3x3_range, x, w, b)
    np.testing.assert_array_equal(np.isfinite(got), np.isfinite(want))
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    fin = np.isfinite(want)
    assert_close(got[fin], want[fin], np.float32)
