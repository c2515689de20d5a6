"""Explicit SIMD intrinsics (kernels/jit/simd.py) and the register-blocked tap-table conv
(kernels/jit/tapconv.py) against plain NumPy and the reference conv."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kernel_checks import assert_close, serial_and_parallel

import minires.kernels.jit as J
import minires.kernels.reference as R
from minires.kernels.jit import planner, tapconv
from minires.kernels.jit._numba import jit
from minires.kernels.jit.planner import Algorithm as A
from minires.kernels.jit.simd import lanes, vbcast, vfma, vgather, vload, vloadm, vstore, vstorem

SETTINGS = settings(
    max_examples=15,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
DTYPES = [np.float32, np.float64]


# ----------------------------------------------------------------------------- simd


@jit()
def _masked_copy(src, i, mask, dst, j, smask):
    vstorem(dst, j, vloadm(src, i, mask), smask)


@jit()
def _masked_store(dst, j, value, mask):
    vstorem(dst, j, vload(value, 0), mask)


@pytest.mark.parametrize("dtype", DTYPES)
def test_simd_masked_store_writes_exactly_the_selected_lanes(dtype):
    """Every mask of a vector (all lanes: a plain store on AVX2; some: the masked
    store; none: nothing), at offsets where the vector starts before the array or ends
    past it: the selected lanes are written, nothing else."""
    n = lanes(dtype)
    value = np.arange(1, n + 1, dtype=dtype)
    masks = range(1 << n) if n <= 8 else [*range(256), 0xFFFF, 0x7FFF, 0xFFFE, 0x8001]
    for mask in masks:
        for j in (-2, 0, 3):
            dst = np.full(n + 1, -1.0, dtype)
            want = dst.copy()
            lanes_on = [k for k in range(n) if mask >> k & 1 and 0 <= j + k < n + 1]
            if len(lanes_on) != bin(mask).count("1"):
                continue  # a selected lane outside the array: not a valid call
            for k in lanes_on:
                want[j + k] = value[k]
            _masked_store(dst, j, value, mask)
            np.testing.assert_array_equal(dst, want, err_msg=f"mask {mask:#x} at {j}")


@jit()
def _axpy(a, k, x, y):
    vstorem(y, 0, vfma(vbcast(a, k), vloadm(x, 0, -1), vloadm(y, 0, -1)), -1)


@pytest.mark.parametrize("dtype", DTYPES)
def test_simd_masked_load_store(dtype):
    """Masked-off lanes read as 0 and are never written, even where they would lie
    before the start or past the end of the array."""
    n = lanes(dtype)
    src = np.arange(1, n + 1, dtype=dtype)
    dst = np.full(n + 4, -1.0, dtype)
    # start 2 before the array: lanes 0, 1 masked off
    _masked_copy(src, -2, (1 << n) - 1 - 0b11, dst, 2, (1 << n) - 1)
    want = np.full(n + 4, -1.0, dtype)
    want[2:4] = 0
    want[4 : n + 2] = src[: n - 2]
    np.testing.assert_array_equal(dst, want)
    # past the end: only the first 3 lanes exist; store only lanes 0 and 2
    dst[:] = -1
    _masked_copy(src, n - 3, 0b111, dst, 0, 0b101)
    want = np.full(n + 4, -1.0, dtype)
    want[0], want[2] = src[n - 3], src[n - 1]
    np.testing.assert_array_equal(dst, want)


@pytest.mark.parametrize("dtype", DTYPES)
def test_simd_fma_broadcast(dtype):
    n = lanes(dtype)
    rng = np.random.default_rng(0)
    a, x, y = rng.standard_normal(3), rng.standard_normal(n), rng.standard_normal(n)
    a, x, y = a.astype(dtype), x.astype(dtype), y.astype(dtype)
    want = a[1] * x + y
    _axpy(a, 1, x, y)
    np.testing.assert_allclose(y, want, rtol=1e-6 if dtype == np.float32 else 1e-15)


@jit()
def _gather_store(a, i, stride, mask, out):
    vstore(out, 0, vgather(a, i, stride, mask))


@jit()
def _copy_vector(a, i, out, j):
    vstore(out, j, vload(a, i))


@pytest.mark.parametrize("dtype", DTYPES)
def test_simd_gather(dtype):
    """Lane l = a[i + l*stride] where the mask bit is set, else 0."""
    n = lanes(dtype)
    a = np.arange(200, dtype=dtype)
    out = np.full(n, -1.0, dtype)
    mask = (1 << n) - 1 - 0b100
    _gather_store(a, 3, 7, mask, out)
    want = 3 + 7 * np.arange(n, dtype=dtype)
    want[2] = 0
    np.testing.assert_array_equal(out, want)
    out2 = np.zeros(n + 2, dtype)
    _copy_vector(a, 5, out2, 1)
    np.testing.assert_array_equal(out2[1:-1], a[5 : 5 + n])
    assert out2[0] == 0 and out2[-1] == 0


def test_simd_rejects_non_float_arrays():
    with pytest.raises(Exception, match="float32/float64"):
        _masked_copy(np.arange(4), 0, 1, np.zeros(4, np.int64), 0, 1)


# ----------------------------------------------------------------------------- tap table


def _reference(x, wt, b, stride, padding, dilation, groups):
    return R.conv2d_forward(x, wt, b, stride, padding, dilation, groups)


@st.composite
def same_cases(draw):
    """Stride-1 convs whose output is the size of the input, any groups and tiles
    (C_out/groups <= 4: 4x4 tiles, else 8x2 with a padded last block)."""
    k, p, d = draw(st.sampled_from([(3, 1, 1), (3, 2, 2), (5, 2, 1), (1, 0, 1)]))
    kw, pw = draw(st.sampled_from([(k, p), (3, d)]))  # square, or 3 wide
    return dict(
        n=draw(st.integers(1, 3)),
        groups=draw(st.integers(1, 3)),
        cpi=draw(st.integers(1, 5)),
        cpo=draw(st.sampled_from([1, 2, 3, 4, 5, 8, 9, 14, 16])),
        h=draw(st.integers(1, 19)),
        w=draw(st.integers(1, 19)),
        k=(k, kw),
        p=(p, pw),
        d=(d, d),
        bias=draw(st.booleans()),
    )


@pytest.mark.parametrize("dtype", DTYPES)
@SETTINGS
@given(case=same_cases())
def test_tap_conv_same_matches_reference(case, dtype):
    n, g, cpi, cpo, h, w = (case[k] for k in ("n", "groups", "cpi", "cpo", "h", "w"))
    rng = np.random.default_rng(1)
    x = rng.standard_normal((n, g * cpi, h, w)).astype(dtype)
    wt = rng.standard_normal((g * cpo, cpi) + case["k"]).astype(dtype)
    b = rng.standard_normal(g * cpo).astype(dtype) if case["bias"] else None
    geom = tapconv.TapGeometry.same(h, w, *case["k"], *case["p"], *case["d"])
    got = tapconv.tap_conv(x.reshape(n, g * cpi, -1), wt, b, g, geom)
    want = _reference(x, wt, b, (1, 1), case["p"], case["d"], g)
    assert_close(got.reshape(want.shape), want, dtype)


# stride-2 convs: odd and even sizes down to 1 pixel, groups, 4x4 and 8x2 tiles
STRIDE2_SHAPES = dict(
    n=st.integers(1, 2),
    groups=st.integers(1, 3),
    cpi=st.integers(1, 9),  # blocks of 4 input channels: whole, partial, several
    cpo=st.sampled_from([1, 3, 4, 8, 10]),
    h=st.integers(1, 17),
    w=st.integers(1, 17),
)


@pytest.mark.parametrize("dtype", DTYPES)
@SETTINGS
@given(**STRIDE2_SHAPES)
def test_tap_conv_stride2_polyphase_matches_reference(n, groups, cpi, cpo, h, w, dtype):
    """3x3 / stride 2 / pad 1 over the polyphase planes, odd and even sizes."""
    rng = np.random.default_rng(2)
    x = rng.standard_normal((n, groups * cpi, h, w)).astype(dtype)
    wt = rng.standard_normal((groups * cpo, cpi, 3, 3)).astype(dtype)
    b = rng.standard_normal(groups * cpo).astype(dtype)
    xp = tapconv.polyphase(x)
    ho, wo = xp.shape[-2:]
    got = tapconv.tap_conv(
        xp.reshape(n, groups * cpi, -1), wt, b, groups, tapconv.TapGeometry.poly2(ho, wo)
    )
    want = _reference(x, wt, b, (2, 2), (1, 1), (1, 1), groups)
    assert_close(got.reshape(want.shape), want, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@SETTINGS
@given(k=st.sampled_from([1, 5, 7]), **STRIDE2_SHAPES)
def test_tap_conv_stride2_odd_kernels_match_reference(k, n, groups, cpi, cpo, h, w, dtype):
    """k x k / stride 2 / pad (k-1)/2 over the polyphase planes (ResNet's 7x7 stem):
    taps reach up to (k-1)/2 rows and columns of either phase away."""
    rng = np.random.default_rng(7)
    x = rng.standard_normal((n, groups * cpi, h, w)).astype(dtype)
    wt = rng.standard_normal((groups * cpo, cpi, k, k)).astype(dtype)
    xp = tapconv.polyphase(x)
    ho, wo = xp.shape[-2:]
    geom = tapconv.TapGeometry.poly2(ho, wo, k, k)
    got = tapconv.tap_conv(xp.reshape(n, groups * cpi, -1), wt, None, groups, geom)
    pad = (k - 1) // 2
    want = _reference(x, wt, None, (2, 2), (pad, pad), (1, 1), groups)
    assert_close(got.reshape(want.shape), want, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_stem_7x7_stride2_dispatch(dtype):
    """The 7x7 / stride 2 / pad 3 stem: forward through the polyphase tap table; its
    input gradient (when asked) does not take the 3x3-only stride-2 tap kernel."""
    rng = np.random.default_rng(8)
    x = rng.standard_normal((2, 3, 23, 20)).astype(dtype)
    wt = rng.standard_normal((8, 3, 7, 7)).astype(dtype)
    b = rng.standard_normal(8).astype(dtype)
    args = ((2, 2), (3, 3), (1, 1), 1)
    got = J.conv2d_forward(x, wt, b, *args)
    assert J.last_plan()["forward"] == A.TAP_POLY2
    assert_close(got, R.conv2d_forward(x, wt, b, *args), dtype)
    go = rng.standard_normal(got.shape).astype(dtype)
    gx = J.conv2d_backward_input(go, wt, x.shape, *args)
    assert J.last_plan()["backward_input"] != A.TAP_STRIDE2
    assert_close(gx, R.conv2d_backward_input(go, wt, x.shape, *args), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@SETTINGS
@given(**STRIDE2_SHAPES)
def test_stride2_backward_input_matches_reference(n, groups, cpi, cpo, h, w, dtype):
    """The input gradient of the 3x3 / stride 2 / pad 1 conv (both column phases of a row
    phase per vector pair, interleaved into grad_x), odd and even sizes."""
    rng = np.random.default_rng(4)
    wt = rng.standard_normal((groups * cpo, cpi, 3, 3)).astype(dtype)
    go = rng.standard_normal((n, groups * cpo, (h + 1) // 2, (w + 1) // 2)).astype(dtype)
    got = tapconv.stride2_backward_input(go, wt, groups, h, w)
    want = R.conv2d_backward_input(go, wt, (n, groups * cpi, h, w), (2, 2), (1, 1), (1, 1), groups)
    assert_close(got, want, dtype)


def test_polyphase_planes():
    x = np.arange(2 * 5 * 7, dtype=np.float32).reshape(1, 2, 5, 7)
    xp = tapconv.polyphase(x)
    assert xp.shape == (1, 2, 4, 3, 4)
    np.testing.assert_array_equal(xp[0, 1, 0], x[0, 1, 0::2, 0::2])
    np.testing.assert_array_equal(xp[0, 1, 3, :2, :3], x[0, 1, 1::2, 1::2])
    assert not xp[0, :, 3, 2:].any() and not xp[0, :, 3, :, 3:].any()  # past the edge


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "n,groups,cpi,cpo,h,w,stride",
    [
        (3, 1, 16, 16, 9, 12, 1),  # CIFAR-like dense, two 8-channel blocks
        (2, 4, 4, 4, 7, 6, 1),  # 32x4d-like: 4x4 tiles
        (1, 2, 14, 14, 5, 9, 1),  # 8x14d-like: blocks of 8 + 6
        (2, 1, 3, 16, 1, 1, 1),  # one pixel: every neighbour masked
        (2, 1, 16, 32, 9, 8, 2),  # CIFAR downsampling conv, odd height
        (2, 4, 8, 8, 7, 10, 2),  # ResNeXt downsampling 3x3, odd width
        (1, 2, 3, 5, 1, 2, 2),  # stride 2 on a 1-pixel-high plane
    ],
)
def test_conv_dispatch_through_tap_table(n, groups, cpi, cpo, h, w, stride, dtype, monkeypatch):
    """conv2d_forward / backward_input take the tap table for these shapes; the results
    match the reference, do not depend on the thread count, and match the kernels the
    tap table replaced (forced with _TAPCONV_MAX_WORK = 0). (Dense stride-2 input gradients
    whose weights dominate or that fill under half its lanes go to col2im by default; here
    the stride-2 kernel is tested.)"""

    monkeypatch.setattr(planner, "weights_dominate", lambda g: False)
    monkeypatch.setattr(planner, "_STRIDE2_MIN_LANE_USE", 0.0)
    s = (stride, stride)
    plan = J.plan_for((n, groups * cpi, h, w), (groups * cpo, cpi, 3, 3), s, 1, 1, groups, dtype)
    want = (A.TAP_SAME, A.TRANSPOSED_TAP_SAME) if stride == 1 else (A.TAP_POLY2, A.TAP_STRIDE2)
    assert (plan["forward"], plan["backward_input"]) == want
    rng = np.random.default_rng(3)
    x = rng.standard_normal((n, groups * cpi, h, w)).astype(dtype)
    wt = rng.standard_normal((groups * cpo, cpi, 3, 3)).astype(dtype)
    b = rng.standard_normal(groups * cpo).astype(dtype)
    args = (s, (1, 1), (1, 1), groups)
    go = rng.standard_normal(R.conv2d_forward(x, wt, b, *args).shape).astype(dtype)

    def run():
        return (
            J.conv2d_forward(x, wt, b, *args),
            J.conv2d_backward_input(go, wt, x.shape, *args),
        )

    got, parallel = serial_and_parallel(run)
    ran = J.last_plan()
    assert (ran["forward"], ran["backward_input"]) == want
    assert_close(got[0], R.conv2d_forward(x, wt, b, *args), dtype)
    assert_close(got[1], R.conv2d_backward_input(go, wt, x.shape, *args), dtype)
    for a, c in zip(got, parallel):
        np.testing.assert_array_equal(a, c)
    monkeypatch.setattr(planner, "_TAPCONV_MAX_WORK", 0)
    monkeypatch.setattr(planner, "is_stride2_3x3", lambda g: False)  # its kernel off too
    for a, c in zip(got, run()):
        assert_close(a, c, dtype)
    ran = J.last_plan()
    tap = (A.TAP_SAME, A.TAP_POLY2, A.TAP_STRIDE2)
    assert not set(tap) & {ran["forward"], ran["backward_input"]}


def test_tap_table_masks():
    """Bit l of mk[k, v] says whether tap k of output pixel v*lanes + l is inside the
    image; the vector count is padded to the tile's multiple with empty masks."""
    toff, mk, valid = tapconv.tap_table(tapconv.TapGeometry.same(3, 5, 3, 3, 1, 1, 1, 1), 4, 2)
    assert toff.tolist() == [-6, -5, -4, -1, 0, 1, 4, 5, 6]
    assert mk.shape == (9, 4) and valid.tolist() == [0b1111, 0b1111, 0b1111, 0b0111]
    # pixel 0 (row 0, col 0): only taps (1,1), (1,2), (2,1), (2,2) are inside
    assert [int(mk[k, 0]) & 1 for k in range(9)] == [0, 0, 0, 0, 1, 1, 0, 1, 1]
    assert mk[:, 3].max() <= 0b0111  # pixels 15.. do not exist (3*5 = 15 pixels)


# ----------------------------------------------------------------------------- weight gradient


@pytest.mark.parametrize("dtype", DTYPES)
@SETTINGS
@given(
    n=st.integers(1, 10),
    groups=st.integers(1, 3),
    cpi=st.integers(1, 5),
    cpo=st.sampled_from([1, 2, 5, 16, 17, 32, 33]),
    h=st.integers(1, 12),
    w=st.one_of(st.integers(1, 12), st.integers(15, 40)),
    stride=st.integers(1, 2),
)
def test_lane_weight_grad_matches_reference(n, groups, cpi, cpo, h, w, stride, dtype):
    """The output-channel-lane weight gradient (zero-bordered copies of x or of its
    polyphase planes, grad_out transposed; partial vectors of channels; odd slot
    counts; image chunks), stride 1 and 2, odd sizes; rows of one vector, a partial one,
    or several (w > 16: the vector copies of the rows)."""
    rng = np.random.default_rng(5)
    ho, wo = -(-h // stride), -(-w // stride)
    x = rng.standard_normal((n, groups * cpi, h, w)).astype(dtype)
    go = rng.standard_normal((n, groups * cpo, ho, wo)).astype(dtype)
    got = tapconv.lane_weight_grad(
        x.reshape(n, groups * cpi, -1), go.reshape(n, groups * cpo, -1), cpi, groups, h, w, stride
    )
    s = (stride, stride)
    want = R.conv2d_backward_weight(x, go, (groups * cpo, cpi, 3, 3), s, (1, 1), (1, 1), groups)
    assert_close(got, want, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "n,groups,cpi,cpo,h,w,stride",
    [
        (9, 1, 32, 32, 10, 10, 1),  # CIFAR-like stage 2: more images than chunks
        (3, 1, 48, 64, 6, 10, 1),  # 4 vectors of output channels
        (2, 4, 8, 32, 7, 7, 1),  # grouped, ResNeXt conv5-like
        (1, 1, 3, 40, 5, 3, 1),  # a partial last vector
        (9, 1, 16, 32, 11, 12, 2),  # CIFAR downsampling conv, odd height
        (2, 2, 8, 32, 7, 7, 2),  # grouped stride 2
    ],
)
def test_conv_weight_grad_dispatch_through_lanes(
    n, groups, cpi, cpo, h, w, stride, dtype, monkeypatch
):
    """conv2d_backward_weight takes the lane kernel for these shapes: it matches the
    reference and the kernels it replaced, bit-identical for 1 and 2 threads. (The
    planner keeps the lanes for 8+ inputs a group; the kernel takes any number.)"""

    monkeypatch.setattr(planner, "_LANE_MIN_CPI", 1)
    monkeypatch.setattr(planner, "use_winograd_nhwc", lambda g, itemsize: False)
    s = (stride, stride)
    plan = J.plan_for((n, groups * cpi, h, w), (groups * cpo, cpi, 3, 3), s, 1, 1, groups, dtype)
    assert plan["backward_weight"] == A.LANE
    rng = np.random.default_rng(6)
    x = rng.standard_normal((n, groups * cpi, h, w)).astype(dtype)
    go = rng.standard_normal((n, groups * cpo, -(-h // stride), -(-w // stride))).astype(dtype)
    shape = (groups * cpo, cpi, 3, 3)
    args = (s, (1, 1), (1, 1), groups)

    def run():
        return J.conv2d_backward_weight(x, go, shape, *args)

    got, parallel = serial_and_parallel(run)
    assert_close(got, R.conv2d_backward_weight(x, go, shape, *args), dtype)
    np.testing.assert_array_equal(got, parallel)
    assert J.last_plan()["backward_weight"] == A.LANE
    monkeypatch.setattr(planner, "use_lane_weight_grad", lambda *a: False)
    assert_close(run(), got, dtype)
    assert J.last_plan()["backward_weight"] != A.LANE


_NARROW_CODE = """
import numpy as np
import minires.kernels.reference as R
from minires.kernels.jit import simd, tapconv
assert simd.LANES[np.dtype(np.float32)] == 8, simd.LANES
rng = np.random.default_rng(0)
for dt in (np.float32, np.float64):
    x = rng.standard_normal((2, 6, 7, 9)).astype(dt)
    w = rng.standard_normal((10, 3, 3, 3)).astype(dt)
    go = rng.standard_normal((2, 10, 7, 9)).astype(dt)
    got = tapconv.tap_conv(
        x.reshape(2, 6, -1), w, None, 2, tapconv.TapGeometry.same(7, 9, 3, 3, 1, 1, 1, 1)
    )
    want = R.conv2d_forward(x, w, None, (1, 1), (1, 1), (1, 1), 2)
    assert np.allclose(got.reshape(want.shape), want, rtol=1e-4, atol=1e-4)
    gw = tapconv.lane_weight_grad(x.reshape(2, 6, -1), go.reshape(2, 10, -1), 3, 2, 7, 9, 1)
    want = R.conv2d_backward_weight(x, go, w.shape, (1, 1), (1, 1), (1, 1), 2)
    assert np.allclose(gw, want, rtol=1e-4, atol=1e-4)
print("ok")
"""


@pytest.mark.slow
def test_tap_conv_on_a_256_bit_target(tmp_path):
    """Without AVX-512 (NUMBA_CPU_FEATURES = AVX2) vectors are 32 bytes: 8 float32 / 4
    float64 lanes, narrower masks; the kernels still match the reference."""
    import os
    import subprocess
    import sys

    env = dict(os.environ, NUMBA_CPU_FEATURES="+avx2,+fma,+avx,+sse4.2,+popcnt")
    env["NUMBA_CACHE_DIR"] = str(tmp_path)  # a separate cache for the other target
    out = subprocess.run(
        [sys.executable, "-c", _NARROW_CODE],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]


@pytest.mark.parametrize(
    "cin,cout,groups,h,w,stride",
    [
        (3, 8, 1, 5, 4, 1),  # tap table, stride 1
        (4, 8, 2, 5, 6, 2),  # tap table through polyphase planes; stride-2 kernel backward
        (2, 32, 1, 3, 4, 1),  # + the lane weight gradient
        (2, 32, 1, 5, 4, 2),  # + the lane weight gradient, stride 2
    ],
)
def test_conv_gradcheck_through_the_new_kernels(cin, cout, groups, h, w, stride, monkeypatch):
    """float64 gradcheck of F.conv2d on the Numba backend at shapes whose forward and
    input gradient take the tap-table kernels (and, with 32 outputs, whose weight
    gradient takes the lane kernel; small stride-2 planes forced onto the tap kernel)."""
    import minires as mr
    import minires.functional as F

    monkeypatch.setattr(planner, "weights_dominate", lambda g: False)
    monkeypatch.setattr(planner, "_STRIDE2_MIN_LANE_USE", 0.0)
    monkeypatch.setattr(planner, "_LANE_MIN_CPI", 1)  # lanes at 2 inputs (the kernel can)
    s = (stride, stride)
    cpi, cpo = cin // groups, cout // groups
    plan = J.plan_for((2, cin, h, w), (cout, cpi, 3, 3), s, 1, 1, groups, np.float64)
    tap = (A.TAP_SAME, A.TRANSPOSED_TAP_SAME) if stride == 1 else (A.TAP_POLY2, A.TAP_STRIDE2)
    assert (plan["forward"], plan["backward_input"]) == tap
    assert (cpo >= 32) == (plan["backward_weight"] == A.LANE)
    rng = np.random.default_rng(7)
    x = mr.tensor(rng.standard_normal((2, cin, h, w)), requires_grad=True)
    wt = mr.tensor(rng.standard_normal((cout, cpi, 3, 3)), requires_grad=True)
    b = mr.tensor(rng.standard_normal(cout), requires_grad=True)
    with mr.use_backend("numba"):
        assert mr.gradcheck(lambda x, wt, b: F.conv2d(x, wt, b, s, 1, 1, groups), [x, wt, b])
