"""kernels.jit.conv2d_backward: both conv gradients in one call. Where the two passes plan
a pair of `onesweep.SWEEPS` (the depthwise 3x3; the grouped tap-table input gradient with
the masked 3x3 weight gradient) one sweep computes both: the same bits as the two entry
points, the reference's values and NaN / inf pattern, any thread count."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kernel_checks import assert_close, serial_and_parallel

import minires.kernels.jit as J
import minires.kernels.reference as R
from minires.kernels.jit import conv as jconv
from minires.kernels.jit import onesweep
from minires.kernels.jit.planner import last_plan, plan_for

SETTINGS = settings(
    max_examples=25,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
SAME = ((1, 1), (1, 1), (1, 1))  # stride, padding, dilation of a 3x3 "same" conv


def _data(n, c_in, c_out, groups, h, w, dtype, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, c_in, h, w)).astype(dtype)
    wt = rng.standard_normal((c_out, c_in // groups, 3, 3)).astype(dtype)
    go = rng.standard_normal((n, c_out, h, w)).astype(dtype)
    return x, wt, go


@contextlib.contextmanager
def counting_sweeps():
    """Yields the list of the sweeps that ran inside the block, by pair."""
    ran = []
    with pytest.MonkeyPatch.context() as mp:
        for pair, fn in list(onesweep.SWEEPS.items()):

            def counted(*args, _fn=fn, _pair=pair):
                ran.append(_pair)
                return _fn(*args)

            mp.setitem(onesweep.SWEEPS, pair, counted)
        yield ran


@pytest.fixture
def sweeps():
    with counting_sweeps() as ran:
        yield ran


@st.composite
def grouped_3x3(draw):
    """Grouped and dense 3x3 "same" convs of odd sizes, batch 1-3, 1-16 channels a group
    in and out (the masked weight gradient's range: <= 32 in)."""
    groups = draw(st.integers(1, 6))
    cpi = draw(st.integers(1, 12))
    cpo = draw(st.integers(1, 16))
    n = draw(st.integers(1, 3))
    h, w = draw(st.integers(1, 19)), draw(st.integers(1, 23))
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    return n, groups * cpi, groups * cpo, groups, h, w, dtype


@SETTINGS
@given(case=grouped_3x3())
def test_one_call_is_the_two_passes(case):
    n, c_in, c_out, groups, h, w, dtype = case
    x, wt, go = _data(n, c_in, c_out, groups, h, w, dtype)
    with counting_sweeps() as sweeps:
        gx, gw = J.conv2d_backward(go, x, wt, *SAME, groups)
    ran = dict(last_plan())
    assert gx.shape == x.shape and gw.shape == wt.shape and gx.dtype == gw.dtype == dtype
    pair = (ran["backward_input"], ran["backward_weight"])
    assert sweeps == ([pair] if pair in onesweep.SWEEPS else [])
    planned = plan_for(x.shape, wt.shape, 1, 1, 1, groups, dtype)
    assert pair == (planned["backward_input"], planned["backward_weight"])
    np.testing.assert_array_equal(gx, J.conv2d_backward_input(go, wt, x.shape, *SAME, groups))
    np.testing.assert_array_equal(gw, J.conv2d_backward_weight(x, go, wt.shape, *SAME, groups))
    want_x, want_w = R.conv2d_backward(go, x, wt, *SAME, groups)
    assert_close(gx, want_x, dtype)
    assert_close(gw, want_w, dtype)


# (N, C_in, C_out, groups, H, W): the benchmark's grouped rows at a smaller batch, a
# ResNet-20 layer, a depthwise conv
PLANNED_SWEEPS = [
    (2, 128, 128, 32, 56, 56),
    (1, 112, 112, 8, 20, 21),
    (2, 256, 256, 32, 28, 28),
    (2, 16, 16, 1, 32, 32),
    (2, 24, 24, 24, 15, 17),
]


@pytest.mark.usefixtures("wide_vector_rules")
@pytest.mark.parametrize("shape", PLANNED_SWEEPS)
def test_the_sweep_runs_where_planned(shape, sweeps):
    n, c_in, c_out, groups, h, w = shape
    x, wt, go = _data(n, c_in, c_out, groups, h, w, np.float32, seed=1)
    gx, gw = J.conv2d_backward(go, x, wt, *SAME, groups)
    assert len(sweeps) == 1, dict(last_plan())
    np.testing.assert_array_equal(gx, J.conv2d_backward_input(go, wt, x.shape, *SAME, groups))
    np.testing.assert_array_equal(gw, J.conv2d_backward_weight(x, go, wt.shape, *SAME, groups))


@pytest.mark.usefixtures("wide_vector_rules")
def test_every_sweep_pair_is_planned_somewhere():
    """Each pair of `SWEEPS` is the planner's (input gradient, weight gradient) for one of
    the geometries above: no driver for a pair that never runs."""
    planned = set()
    for n, c_in, c_out, groups, h, w in PLANNED_SWEEPS:
        p = plan_for((n, c_in, h, w), (c_out, c_in // groups, 3, 3), 1, 1, 1, groups)
        planned.add((p["backward_input"], p["backward_weight"]))
    assert set(onesweep.SWEEPS) <= planned, set(onesweep.SWEEPS) - planned


@pytest.mark.parametrize("where", ["x", "go", "w"])
@pytest.mark.parametrize("groups", [4, 12])  # tap + masked; depthwise
def test_nonfinite_like_the_reference(where, groups):
    """A NaN or inf in x, grad_out or the weights gives the reference's pattern: the
    sweep's weight gradient is recomputed on the exact GEMM when it is not finite, and
    non-finite weights plan the GEMM paths (no sweep)."""
    x, wt, go = _data(2, 12, 12, groups, 7, 9, np.float32, seed=2)
    arr = {"x": x, "go": go, "w": wt}[where]
    arr.reshape(-1)[3] = np.nan
    arr.reshape(-1)[-2] = -np.inf
    gx, gw = J.conv2d_backward(go, x, wt, *SAME, groups)
    want_x, want_w = R.conv2d_backward(go, x, wt, *SAME, groups)
    for got, want in ((gx, want_x), (gw, want_w)):
        np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
        np.testing.assert_array_equal(np.isneginf(got), np.isneginf(want))
        fin = np.isfinite(want)
        assert_close(got[fin], want[fin], np.float32)


@pytest.mark.parametrize("groups", [1, 8, 40])
def test_one_vs_two_threads_bit_identical(groups):
    x, wt, go = _data(3, 40, 40, groups, 19, 23, np.float32, seed=3)
    (gx1, gw1), (gx2, gw2) = serial_and_parallel(
        lambda: J.conv2d_backward(go, x, wt, *SAME, groups)
    )
    assert np.array_equal(gx1, gx2) and np.array_equal(gw1, gw2)


def test_other_convs_and_masks_run_the_two_passes(sweeps):
    """Strided convs and single gradients never sweep."""
    x, wt, go = _data(2, 8, 8, 4, 9, 9, np.float64, seed=4)
    gx, gw = J.conv2d_backward(go, x, wt, *SAME, 4, output_mask=(True, False))
    assert gw is None and np.array_equal(gx, J.conv2d_backward_input(go, wt, x.shape, *SAME, 4))
    gx, gw = J.conv2d_backward(go, x, wt, *SAME, 4, output_mask=(False, True))
    assert gx is None and np.array_equal(gw, J.conv2d_backward_weight(x, go, wt.shape, *SAME, 4))
    args = ((2, 2), (1, 1), (1, 1), 4)
    go2 = go[:, :, ::2, ::2].copy()
    gx, gw = jconv.conv2d_backward(go2, x, wt, *args)
    want_x, want_w = R.conv2d_backward(go2, x, wt, *args)
    assert_close(gx, want_x, np.float64)
    assert_close(gw, want_w, np.float64)
    assert sweeps == []
