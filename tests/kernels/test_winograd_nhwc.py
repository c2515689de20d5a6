"""Winograd F(2x2, 3x3) on channels-last tiles (kernels/jit/nhwc.py) against the reference
conv: forward, input gradient (the transposed conv), weight gradient; its weight packing
and transform; the same bits on 1 and 2 threads; and where the planner takes it."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from kernel_checks import serial_and_parallel, vector_width

from minires.kernels import reference as R
from minires.kernels.jit import nhwc, planner
from minires.kernels.jit.planner import Algorithm, ConvGeometry

DTYPES = [np.float32, np.float64]
SAME = ((1, 1), (1, 1), (1, 1))  # stride, padding, dilation of every conv here


def _close(got, ref, dtype, terms):
    """got equals ref to the rounding of sums of `terms` products of unit normals."""
    assert got.shape == ref.shape and got.dtype == ref.dtype == dtype
    tol = (1e-5 if dtype == np.float32 else 1e-13) * np.sqrt(terms) * 4
    np.testing.assert_allclose(got, ref, rtol=tol, atol=tol)


def _inputs(n, groups, cpi, cpo, h, w, dtype, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, groups * cpi, h, w)).astype(dtype)
    wt = rng.standard_normal((groups * cpo, cpi, 3, 3)).astype(dtype)
    go = rng.standard_normal((n, groups * cpo, h, w)).astype(dtype)
    b = rng.standard_normal(groups * cpo).astype(dtype)
    return x, wt, go, b


SHAPES = dict(
    n=st.integers(1, 3),
    groups=st.integers(1, 3),
    cpi=st.integers(1, 40),
    cpo=st.integers(1, 70),  # partial panels, one and two panels of 4 vectors
    h=st.integers(1, 11),
    w=st.integers(1, 11),
    dtype=st.sampled_from(DTYPES),
    seed=st.integers(0, 2**16),
)


@settings(max_examples=40, deadline=None)
@given(**SHAPES, bias=st.booleans())
def test_forward_matches_reference(n, groups, cpi, cpo, h, w, dtype, seed, bias):
    """Any 3x3 / stride 1 / pad 1 conv: odd sizes (a last tile half outside the plane),
    1 x 1 planes, groups, batch 1, output channels not filling a panel."""
    x, wt, _, b = _inputs(n, groups, cpi, cpo, h, w, dtype, seed)
    b = b if bias else None
    y, finite = nhwc.winograd_forward(x, wt, b, groups)
    assert finite
    _close(y, R.conv2d_forward(x, wt, b, *SAME, groups), dtype, 9 * cpi)


@settings(max_examples=40, deadline=None)
@given(**SHAPES)
def test_transposed_forward_is_the_input_gradient(n, groups, cpi, cpo, h, w, dtype, seed):
    """`transposed`: the conv of grad_out with the flipped, transposed weights - the
    input gradient - with the weights read as they are."""
    x, wt, go, _ = _inputs(n, groups, cpi, cpo, h, w, dtype, seed)
    gx, finite = nhwc.winograd_forward(go, wt, None, groups, transposed=True)
    assert finite
    _close(gx, R.conv2d_backward_input(go, wt, x.shape, *SAME, groups), dtype, 9 * cpo)


@settings(max_examples=40, deadline=None)
@given(**SHAPES)
def test_weight_grad_matches_reference(n, groups, cpi, cpo, h, w, dtype, seed):
    x, wt, go, _ = _inputs(n, groups, cpi, cpo, h, w, dtype, seed)
    gw = nhwc.winograd_weight_grad(x, go, groups)
    ref = R.conv2d_backward_weight(x, go, wt.shape, *SAME, groups)
    _close(gw, ref, dtype, n * h * w)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n, cpi, cpo, hw", [(64, 64, 64, 8), (9, 128, 128, 7), (3, 32, 96, 14),
                                             (20, 40, 64, 6)])  # fmt: skip
def test_planned_sizes(n, cpi, cpo, hw, dtype):
    """Geometries the planner sends here (ResNet-20's 64-channel stage, 7x7 and 14x14
    planes, two panels), several chunks of images, results equal for 1 and 2 threads."""
    x, wt, go, b = _inputs(n, 1, cpi, cpo, hw, hw, dtype, n)
    (y1, f1), (y2, f2) = serial_and_parallel(lambda: nhwc.winograd_forward(x, wt, b, 1))
    assert f1 and f2 and np.array_equal(y1, y2)
    _close(y1, R.conv2d_forward(x, wt, b, *SAME, 1), dtype, 9 * cpi)
    g1, g2 = serial_and_parallel(lambda: nhwc.winograd_weight_grad(x, go, 1))
    assert np.array_equal(g1, g2)
    _close(g1, R.conv2d_backward_weight(x, go, wt.shape, *SAME, 1), dtype, n * hw * hw)


@pytest.mark.parametrize("transposed", [False, True])
def test_weight_packing_and_transform(transposed):
    """pack_weights: (groups, taps, rows, panel) with the output channels of each (tap,
    input channel) row side by side, zero-padded; `transposed`: channels swapped and
    the kernel rotated by 180 degrees. winograd_weights: U_p = G g G^T in that layout."""
    rng = np.random.default_rng(1)
    w = rng.standard_normal((10, 3, 3, 3))  # 2 groups of 5 outputs, 3 inputs each
    w5 = w.reshape(2, 5, 3, 3, 3)
    if transposed:  # the conv whose weight is w5[g, i, o] rotated: 5 inputs, 3 outputs
        want = w5[:, :, :, ::-1, ::-1].transpose(0, 3, 4, 1, 2).reshape(2, 9, 5, 3)
    else:
        want = w5.transpose(0, 3, 4, 2, 1).reshape(2, 9, 3, 5)
    packed = nhwc.pack_weights(w, 2, transposed)
    cols = want.shape[3]
    assert packed.shape == (2, 9, want.shape[2], nhwc.panel_width(cols, w.dtype))
    np.testing.assert_array_equal(packed[..., :cols], want)
    assert not packed[..., cols:].any()
    G = np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]])
    u = nhwc.winograd_weights(w, 2, transposed)
    g9 = want.reshape(2, 3, 3, *want.shape[2:])
    want_u = np.einsum("ak,gklrc,bl->gabrc", G, g9, G).reshape(2, 16, *want.shape[2:])
    np.testing.assert_allclose(u[..., :cols], want_u, atol=1e-14)
    assert not u[..., cols:].any()


@pytest.mark.parametrize("dtype", DTYPES)
def test_non_finite_input_is_reported(dtype):
    """A NaN or inf reaches the 4 outputs of its tile (the caller recomputes those):
    the forward says its output is not finite."""
    x, wt, _, _ = _inputs(2, 1, 8, 16, 6, 6, dtype, 0)
    for bad in (np.nan, np.inf):
        xb = x.copy()
        xb[1, 3, 2, 4] = bad
        y, finite = nhwc.winograd_forward(xb, wt, None, 1)
        assert not finite and not np.isfinite(y).all()


@pytest.mark.parametrize(
    "n, c, hw, cout, want",
    [
        (64, 64, 8, 64, True),  # ResNet-20's 64-channel stage
        (8, 64, 8, 64, True),  # 128 tiles
        (7, 64, 8, 64, False),  # 112 tiles: too few
        (8, 256, 7, 256, False),  # 128 tiles < 256 input channels: weights stream
        (16, 256, 8, 256, True),
        (8, 512, 7, 512, False),  # over 256 channels
        (64, 16, 8, 64, False),  # 16 input channels
        (64, 64, 8, 48, False),  # 48 outputs in a 64-lane panel
        (8, 64, 14, 64, True),  # 7 x 7 tiles a plane
        (8, 64, 16, 64, False),  # 8 x 8 tiles: the tiles-in-lanes Winograd's
    ],
)
def test_winograd_nhwc_rule(n, c, hw, cout, want, monkeypatch):
    """`use_winograd_nhwc` at each of its thresholds (float32, 16 lanes: the planner is
    told so on any CPU), and the plan follows it: forward after the tiles-in-lanes
    Winograd, weight gradient before it."""
    vector_width(monkeypatch, 64)
    g = ConvGeometry.of((n, c, hw, hw), (cout, c, 3, 3), 1, 1, 1, 1)
    assert planner.use_winograd_nhwc(g, 4) is want
    nhwc_plan = planner.plan("backward_weight", g) == Algorithm.WINOGRAD_NHWC
    assert nhwc_plan is want
    if want and not planner.use_winograd(g, 4):
        assert planner.plan("forward", g) == Algorithm.WINOGRAD_NHWC
