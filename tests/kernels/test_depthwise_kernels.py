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


# --------------------------------------------------------------------------- both gradients


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_conv2d_backward_both_gradients_as_the_two_passes(shape, dtype, monkeypatch):
    """kernels.jit.conv2d_backward gives the bits of the two entry points; with one output
    channel per group it runs the one-sweep kernel (`onesweep.depthwise_backward`), else
    the two."""
    import minires.kernels.jit as J
    from minires.kernels.jit import onesweep
    from minires.kernels.jit.planner import Algorithm, last_plan

    swept = []
    pair = (Algorithm.TRANSPOSED_DEPTHWISE3X3, Algorithm.DEPTHWISE3X3)
    real = onesweep.SWEEPS[pair]
    monkeypatch.setitem(onesweep.SWEEPS, pair, lambda *a: swept.append(1) or real(*a))
    x, w, _, go = data(shape, dtype, seed=4)
    C = x.shape[1]
    gx, gw = J.conv2d_backward(go, x, w, *ONE, C)
    assert last_plan()["backward_input"] == Algorithm.TRANSPOSED_DEPTHWISE3X3 or shape[2] != 1
    assert last_plan()["backward_weight"] == Algorithm.DEPTHWISE3X3
    assert len(swept) == (shape[2] == 1)
    assert gx.shape == x.shape and gw.shape == w.shape and gx.dtype == gw.dtype == dtype
    np.testing.assert_array_equal(gx, J.conv2d_backward_input(go, w, x.shape, *ONE, C))
    np.testing.assert_array_equal(gw, J.conv2d_backward_weight(x, go, w.shape, *ONE, C))
    want_x, want_w = R.conv2d_backward(go, x, w, *ONE, C)
    assert_close(gx, want_x, dtype)
    assert_close(gw, want_w, dtype)


def test_conv2d_backward_output_mask_and_other_convs():
    """None for a gradient not asked for (no sweep then); dense and strided convs go
    through the two entry points, also in the reference."""
    import minires.kernels.jit as J

    x, w, _, go = data((2, 3, 1, 9, 8), np.float64, seed=5)
    gx, gw = J.conv2d_backward(go, x, w, *ONE, 3, output_mask=(True, False))
    assert gw is None and np.array_equal(gx, J.conv2d_backward_input(go, w, x.shape, *ONE, 3))
    gx, gw = J.conv2d_backward(go, x, w, *ONE, 3, output_mask=(False, True))
    assert gx is None and np.array_equal(gw, J.conv2d_backward_weight(x, go, w.shape, *ONE, 3))
    assert R.conv2d_backward(go, x, w, *ONE, 3, output_mask=(False, False)) == (None, None)
    rng = np.random.default_rng(6)
    wd = rng.standard_normal((4, 3, 3, 3))
    args = ((2, 2), (1, 1), (1, 1), 1)
    god = rng.standard_normal((2, 4, 5, 4))
    gx, gw = J.conv2d_backward(god, x, wd, *args)
    want_x, want_w = R.conv2d_backward(god, x, wd, *args)
    assert_close(gx, want_x, np.float64)
    assert_close(gw, want_w, np.float64)


@pytest.mark.parametrize("where", ["x", "go", "w"])
def test_conv2d_backward_nonfinite_like_the_reference(where):
    """A NaN or inf in x, grad_out or the weights: the one-sweep path's NaN / inf pattern
    is the reference's (a non-finite weight gradient is recomputed on the exact GEMM,
    non-finite weights take the GEMM paths, as in the two entry points)."""
    import minires.kernels.jit as J

    x, w, _, go = data((2, 3, 1, 6, 7), np.float32, seed=7)
    arr = {"x": x, "go": go, "w": w}[where]
    arr.reshape(-1)[0] = np.nan
    arr.reshape(-1)[-1] = np.inf
    gx, gw = J.conv2d_backward(go, x, w, *ONE, 3)
    want_x, want_w = R.conv2d_backward(go, x, w, *ONE, 3)
    for got, want in ((gx, want_x), (gw, want_w)):
        np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
        np.testing.assert_array_equal(np.isposinf(got), np.isposinf(want))
        fin = np.isfinite(want)
        assert_close(got[fin], want[fin], np.float32)


@pytest.mark.parametrize("dtype", DTYPES)
def test_conv2d_backward_one_vs_two_threads_bit_identical(dtype):
    import minires.kernels.jit as J

    x, w, _, go = data((3, 5, 1, 19, 23), dtype, seed=8)
    (gx1, gw1), (gx2, gw2) = serial_and_parallel(lambda: J.conv2d_backward(go, x, w, *ONE, 5))
    assert np.array_equal(gx1, gx2) and np.array_equal(gw1, gw2)
