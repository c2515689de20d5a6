"""The conv planner of kernels.jit (`planner.plan`): its choices, and that the entry
points run what it plans (`last_plan`)."""

from __future__ import annotations

import json
import pathlib

import numpy as np
import pytest
from kernel_checks import CONV_PATH_CASES, conv_inputs, conv_path_cases, plan_of, vector_width

import minires.kernels.jit as J
from minires.kernels.jit import planner
from minires.kernels.jit.planner import PASSES, Algorithm, ConvGeometry

DTYPES = [np.float32, np.float64]
FIXTURE = pathlib.Path(__file__).parent / "data" / "conv_plans_before.json"


@pytest.mark.usefixtures("wide_vector_rules")
def test_planner_reproduces_the_dispatch_it_replaced():
    """With Winograd (added after it) switched off, the planner picks, on a sweep of 4250
    geometries (both dtypes, every threshold, depthwise multipliers, asymmetric strides
    / paddings / dilations), the algorithm the three entry points chose before it
    existed: the fixture was recorded from `conv.conv_paths` of commit e8ceb15, whose
    entry points dispatched on the same predicates - except that dense 1x1 convs, which
    went to the tile kernels when small, now always take the GEMM. With Winograd and the
    col2im rule on, exactly the forward and weight-gradient passes of winograd-sized
    geometries (and the input gradients whose transposed conv is one) change, to
    Winograd (on tiles in the lanes, or channels-last: `use_winograd_nhwc`), the
    stride-1 input gradients that ran the transposed im2col GEMM where the weights
    dominate, and the stride-2 input gradients of dense convs whose weights dominate or
    that fill under half the lanes, to `COL2IM_GEMM`, and the forward and input gradient
    and weight gradient of the dense 1x1 convs `use_pointwise_simd` takes, to the SIMD
    GEMM, and the im2col weight gradients `use_im2col_simd` takes, to im2col + the SIMD
    GEMM. And the forward of the tap-sized odd k x k stride-2 convs with "same" padding
    beyond 3x3 (5x5, the 7x7 stem) now takes the polyphase tap table (TAP_POLY2, added
    later), the weight gradient of small strided dense convs the direct tile kernel
    (`use_direct_weight_grad`, later too), and small-plane weight gradients with 16-31
    outputs a group the lane kernel (it took 32+ before), but not those with under 8
    inputs a group (the masked, depthwise or direct kernel instead, session 11), and the
    forward of grouped "poly2" convs to planes of 400+ pixels the direct tiles
    (`use_direct_poly2`, session 13), and every 3x3 / stride 2 / pad 1 input gradient
    the stride-2 kernel (tap-sized ones only before session 16)."""
    rows = json.loads(FIXTURE.read_text())
    assert len(rows) > 4000
    wrong, winograd = [], 0
    off = frozenset({"winograd", "col2im", "simd_gemm"})
    for row in rows:
        n, c, h, w, cout, cpi, kh, kw, sh, sw, ph, pw, dh, dw, g, dt, *want = row
        geo = ConvGeometry.of((n, c, h, w), (cout, cpi, kh, kw), (sh, sw), (ph, pw), (dh, dw), g)
        dtype = np.dtype("float" + dt)
        if planner.is_pointwise(geo) and g == 1:  # dense 1x1: always one GEMM per image now
            gemm = Algorithm.POINTWISE_GEMM
            want = [gemm, Algorithm.TRANSPOSED_POINTWISE_GEMM, gemm]
        if (kh, kw) != (3, 3) and planner.tap_geometry(geo) == "poly2":
            want = [Algorithm.TAP_POLY2, *want[1:]]
        if planner.is_stride2_3x3(geo):  # any channel count (session 16)
            want = [want[0], Algorithm.TAP_STRIDE2, want[2]]
        if want[0] == Algorithm.TAP_POLY2 and planner.use_direct_poly2(geo):
            want = [Algorithm.DIRECT, *want[1:]]  # grouped, large planes (session 13)
        if want[2] == Algorithm.IM2COL_GEMM and planner.use_direct_weight_grad(geo):
            want = [*want[:2], Algorithm.DIRECT]  # small strided dense convs (added later)
        if 16 <= geo.cpo < 32 and planner.use_lane_weight_grad(geo, dtype.itemsize):
            want = [*want[:2], Algorithm.LANE]  # lanes from 16 outputs a group (later too)
        if want[2] == Algorithm.LANE and geo.cpi < planner._LANE_MIN_CPI:
            # no lanes under 8 inputs a group (session 11): the plan without them
            alt = planner.plan("backward_weight", geo, dtype, disabled=off | {"lane"})
            kernels = (Algorithm.SAME3X3_MASKED, Algorithm.DIRECT, Algorithm.DEPTHWISE3X3)
            assert alt in kernels, (row, alt)
            want = [*want[:2], alt]
        if [planner.plan(p, geo, dtype, disabled=off) for p in PASSES] != want:
            wrong.append(row)
        fwd = planner.use_winograd(geo, dtype.itemsize)
        bwd = geo.stride == (1, 1) and planner.use_winograd(geo.transposed(), dtype.itemsize)
        wgrad = planner.use_winograd(geo, dtype.itemsize, "backward_weight")
        nhwc = planner.use_winograd_nhwc(geo, dtype.itemsize)  # session 12: channels-last
        nhwc_bwd = geo.stride == (1, 1) and planner.use_winograd_nhwc(
            geo.transposed(), dtype.itemsize
        )
        col2im = (
            want[1] == Algorithm.TRANSPOSED_IM2COL_GEMM
            and not bwd
            and planner.weights_dominate(geo)
        ) or (
            want[1] == Algorithm.TAP_STRIDE2
            and geo.groups == 1
            and (
                planner.weights_dominate(geo) or planner.stride2_lane_use(geo, dtype.itemsize) < 0.5
            )
        )
        simd_fwd = planner.use_pointwise_simd(geo)
        simd_bwd = planner.use_pointwise_simd(geo.transposed(), "backward_input")
        simd_w = planner.use_pointwise_simd(geo, "backward_weight", dtype.itemsize)
        im2col_w = want[2] == Algorithm.IM2COL_GEMM and planner.use_im2col_simd(
            geo, "backward_weight", dtype.itemsize
        )
        expect = [Algorithm.WINOGRAD if fwd else
                  Algorithm.WINOGRAD_NHWC if nhwc else
                  Algorithm.POINTWISE_SIMD if simd_fwd else want[0],
                  Algorithm.TRANSPOSED_WINOGRAD if bwd else
                  Algorithm.TRANSPOSED_WINOGRAD_NHWC if nhwc_bwd else
                  Algorithm.COL2IM_GEMM if col2im else
                  Algorithm.TRANSPOSED_POINTWISE_SIMD if simd_bwd else want[1],
                  Algorithm.WINOGRAD_NHWC if nhwc else
                  Algorithm.WINOGRAD if wgrad else
                  Algorithm.POINTWISE_SIMD if simd_w else
                  Algorithm.IM2COL_SIMD if im2col_w else want[2]]  # fmt: skip
        if [planner.plan(p, geo, dtype) for p in PASSES] != expect:
            wrong.append(("winograd", row))
        winograd += fwd + bwd + wgrad + nhwc + nhwc_bwd
    assert wrong == []
    assert winograd >= 5  # the sweep reaches the Winograd rule (its geometries are
    # too small for the SIMD GEMM's: `test_pointwise_simd_rule` checks that one)


@pytest.mark.usefixtures("wide_vector_rules")
@pytest.mark.parametrize(
    "n, c, hw, cout, stride, want",
    [
        (64, 3, 32, 16, 1, Algorithm.SAME3X3_MASKED),  # CIFAR's stem: 3 inputs
        (64, 1, 28, 32, 1, Algorithm.DEPTHWISE3X3),  # one input channel (MNIST-like)
        (64, 4, 16, 32, 1, Algorithm.SAME3X3_MASKED),
        (64, 8, 16, 32, 1, Algorithm.LANE),  # 8 inputs: the lanes
        (8, 4, 56, 64, 2, Algorithm.DIRECT),  # stride 2 under 8 inputs
        (8, 8, 56, 64, 2, Algorithm.LANE),
        (64, 16, 32, 32, 2, Algorithm.LANE),  # CIFAR's downsampling conv
    ],
)
def test_lane_weight_grad_needs_eight_inputs_a_group(n, c, hw, cout, stride, want):
    """The lane weight gradient copies grad_out (transposed) and x's planes per image:
    with under 8 inputs a group those copies outweigh its FMAs (measured, planner.py)."""
    g = ConvGeometry.of((n, c, hw, hw), (cout, c, 3, 3), stride, 1, 1, 1)
    assert planner.use_lane_weight_grad(g, 4) is (want == Algorithm.LANE)
    assert planner.plan("backward_weight", g) == want


@pytest.mark.parametrize(
    "n, c, hw, cout, groups, k, want",
    [  # want: (forward, input gradient) on the SIMD GEMM
        (1, 256, 14, 256, 1, 1, (True, False)),  # one image, 2^23.6 multiply-adds
        (1, 256, 16, 256, 1, 1, (True, True)),  # 2^24
        (1, 256, 8, 256, 1, 1, (False, False)),  # 2^22: BLAS's one GEMM is as fast
        (8, 256, 8, 256, 1, 1, (True, True)),  # 8 images of 64 pixels
        (2, 256, 14, 256, 1, 1, (True, False)),  # 196 pixels: forward only
        (2, 256, 17, 256, 1, 1, (False, False)),  # 289 pixels: BLAS
        (2, 64, 14, 64, 1, 1, (False, False)),  # 2^20.6 multiply-adds: too little work
        (8, 1024, 7, 256, 1, 1, (True, False)),  # 2^18 weights: W^T read in place loses
        (2, 2048, 7, 512, 1, 1, (False, False)),  # 2^20 weights: they stream from memory
        (8, 64, 8, 64, 2, 1, (False, False)),  # grouped: not measured, BLAS
        (8, 64, 8, 64, 1, 3, (False, False)),  # not 1x1
    ],
)
def test_pointwise_simd_rule(n, c, hw, cout, groups, k, want, monkeypatch):
    """`use_pointwise_simd` at each of its thresholds (64-byte vectors, where they were
    measured), and the plan follows it."""
    vector_width(monkeypatch, 64)
    g = ConvGeometry.of((n, c, hw, hw), (cout, c // groups, k, k), 1, k // 2, 1, groups)
    fwd, bwd = want
    assert planner.use_pointwise_simd(g) is fwd
    assert planner.use_pointwise_simd(g.transposed(), "backward_input") is bwd
    assert (planner.plan("forward", g) == Algorithm.POINTWISE_SIMD) is fwd
    assert (planner.plan("backward_input", g) == Algorithm.TRANSPOSED_POINTWISE_SIMD) is bwd
    if fwd:  # switched off (autotuning's alternative): one BLAS GEMM per image
        off = frozenset({"simd_gemm"})
        assert planner.plan("forward", g, disabled=off) == Algorithm.POINTWISE_GEMM
        # it sums exactly the reference's products: non-finite weights keep it
        assert planner.plan("forward", g, finite=False) == Algorithm.POINTWISE_SIMD


@pytest.mark.parametrize(
    "n, c, hw, cout, want",
    [
        (2, 2048, 7, 512, True),  # ResNet-50 layer4
        (64, 16, 32, 32, False),  # 16 input channels fill half of a float32 panel (AVX-512)
        (2, 3, 5, 8, True),  # tiny: the call overheads rule
        (8, 256, 56, 128, True),  # 38 MB of x + grad_out: the reduction in chunks
        (8, 188, 56, 188, True),  # the benchmark's separable layer
        (1, 256, 56, 256, True),
    ],
)
def test_pointwise_simd_weight_gradient_rule(n, c, hw, cout, want, monkeypatch):
    vector_width(monkeypatch, 64)
    g = ConvGeometry.of((n, c, hw, hw), (cout, c, 1, 1), 1, 0, 1, 1)
    assert planner.use_pointwise_simd(g, "backward_weight", 4) is want
    assert (planner.plan("backward_weight", g) == Algorithm.POINTWISE_SIMD) is want
    if want:  # a non-finite weight gradient is recomputed by BLAS
        assert planner.plan("backward_weight", g, finite=False) == Algorithm.POINTWISE_GEMM


@pytest.mark.parametrize(
    "n, c, hw, cout, k, s, p, want",
    [  # want: the weight gradient on im2col + the SIMD GEMM
        (2, 512, 7, 512, 3, 1, 1, True),  # ResNet-50 layer4 3x3
        (2, 512, 14, 512, 3, 2, 1, True),  # its stride-2 3x3 (7x7 outputs)
        (2, 1024, 14, 2048, 1, 2, 0, True),  # its 1x1 / stride 2 downsample
        (2, 128, 56, 128, 3, 2, 1, False),  # 28x28 outputs: BLAS
        (2, 3, 224, 64, 7, 2, 3, False),  # the stem
        (2, 8, 9, 8, 3, 2, 1, False),  # too little work
        (3, 80, 6, 72, 3, 1, 1, False),  # 2^23 multiply-adds: still too little
    ],
)
def test_im2col_simd_rule(n, c, hw, cout, k, s, p, want, monkeypatch):
    vector_width(monkeypatch, 64)
    g = ConvGeometry.of((n, c, hw, hw), (cout, c, k, k), s, p, 1, 1)
    assert planner.use_im2col_simd(g, "backward_weight") is want
    assert not planner.use_im2col_simd(g, "forward")  # measured no faster in a network
    assert not planner.use_im2col_simd(g, "backward_input")
    alg = planner.plan("backward_weight", g)
    if alg in (Algorithm.IM2COL_SIMD, Algorithm.IM2COL_GEMM):
        assert (alg == Algorithm.IM2COL_SIMD) is want
    assert planner.plan("forward", g) != Algorithm.IM2COL_SIMD
    if want:
        assert planner.plan("backward_weight", g, finite=False) == Algorithm.IM2COL_GEMM


@pytest.mark.parametrize("vector_bytes", [32, 64])
def test_dispatch_cases_plan_alike_on_every_vector_width(vector_bytes, monkeypatch):
    """The lane counts enter the rules (Winograd's lane fill, panel widths), so the
    shared geometries are chosen to plan alike with 32-byte (AVX2) and 64-byte
    (AVX-512) vectors: the dispatch tests then mean the same on every CPU."""
    vector_width(monkeypatch, vector_bytes)
    for name, (case, want) in conv_path_cases(vector_bytes).items():
        for dtype in DTYPES:
            assert plan_of(case, dtype) == want, (name, vector_bytes, np.dtype(dtype).name)
    if vector_bytes == 32:  # the SIMD GEMM's and the masked weight gradient's rules
        wide = conv_path_cases(64)
        differ = {n for n, (_, want) in conv_path_cases(32).items() if want != wide[n][1]}
        assert differ == {"pointwise_simd", "pointwise_simd_image", "im2col_simd",
                          "dense3x3", "grouped"}  # fmt: skip


@pytest.mark.parametrize(
    "n, c, hw, groups, want",
    [(8, 128, 56, 32, "tap_same"),  # ResNeXt 32x4d conv2: 4 channels a group
     (8, 256, 28, 32, "tap_same"),  # 32x8d conv3: 8 a group
     (8, 112, 56, 8, "direct"),  # 8x14d: 14 a group
     (64, 16, 32, 1, "direct"),  # CIFAR 16->16, dense
     (2, 512, 14, 32, "tap_same"),  # 16 a group but 196 output pixels
     (8, 128, 56, 128, "depthwise3x3")],
)  # fmt: skip
def test_same_conv_forward_rule_with_32_byte_vectors(n, c, hw, groups, want, monkeypatch):
    """With AVX2's vectors a direct-sized "same" 3x3 conv of >= 400 output pixels runs
    the direct tile kernel with more than 8 input channels a group, the tap kernel with
    at most 8 (measured, planner.py); with AVX-512's the tap kernel takes them all. The
    input gradient follows the forward (the transposed conv's)."""
    g = ConvGeometry.of((n, c, hw, hw), (c, c // groups, 3, 3), 1, 1, 1, groups)
    vector_width(monkeypatch, 32)
    assert planner.plan("forward", g).value == want
    assert planner.plan("backward_input", g).value in (want, f"transposed:{want}")
    vector_width(monkeypatch, 64)
    wide = planner.plan("forward", g).value
    assert wide == ("depthwise3x3" if groups == c else "tap_same")


@pytest.mark.parametrize(
    "n, c, hw, groups, narrow",
    [(8, 96, 56, 4, "direct"),  # ResNeXt-style 4 groups of 24
     (8, 224, 28, 8, "direct"),  # 8 groups of 28
     (8, 256, 28, 8, "winograd"),  # 8 groups of 32
     (8, 192, 28, 4, "winograd"),  # 4 groups of 48: not direct-sized
     (8, 64, 56, 1, "winograd")],
)  # fmt: skip
def test_winograd_weight_gradient_rule_by_vector_width(n, c, hw, groups, narrow, monkeypatch):
    """With AVX2's vectors the Winograd weight gradient leaves the direct-sized convs of
    fewer than 32 input channels a group to the direct tiles (measured 1.08-1.5x faster,
    planner.py); with AVX-512's it takes them all. The forward is unchanged."""
    g = ConvGeometry.of((n, c, hw, hw), (c, c // groups, 3, 3), 1, 1, 1, groups)
    vector_width(monkeypatch, 32)
    assert planner.plan("backward_weight", g).value == narrow
    assert planner.plan("forward", g) == Algorithm.WINOGRAD
    assert Algorithm.WINOGRAD in planner.candidates("backward_weight", g)
    vector_width(monkeypatch, 64)
    assert planner.plan("backward_weight", g) == Algorithm.WINOGRAD


@pytest.mark.parametrize(
    "n, c, hw, cout, k, s",
    [(2, 1024, 14, 512, 1, 1), (1, 256, 17, 240, 1, 1), (16, 128, 5, 72, 1, 1),
     (2, 512, 7, 512, 3, 1), (2, 1024, 14, 2048, 1, 2)],
)  # fmt: skip
def test_simd_gemm_gives_way_to_blas_with_32_byte_vectors(n, c, hw, cout, k, s, monkeypatch):
    """With AVX2's vectors the dense 1x1 convs and im2col weight gradients the SIMD GEMM
    takes with AVX-512's go to BLAS (measured 1.3-2x faster there), but for tiny weight
    gradients; the SIMD GEMM stays a candidate for autotuning."""
    g = ConvGeometry.of((n, c, hw, hw), (cout, c, k, k), s, k // 2, 1, 1)
    vector_width(monkeypatch, 64)
    wide = [planner.plan(p, g) for p in PASSES]
    assert {Algorithm.POINTWISE_SIMD, Algorithm.IM2COL_SIMD} & set(wide)
    vector_width(monkeypatch, 32)
    narrow = [planner.plan(p, g) for p in PASSES]
    assert narrow == [planner._gemm(g), planner.plan("backward_input", g), planner._gemm(g)]
    assert "simd" not in narrow[1].value
    for p, was, now in zip(PASSES, wide, narrow):  # what the rules gave up is still timed
        assert was in planner.candidates(p, g) and planner.candidates(p, g)[0] == now
    tiny = ConvGeometry.of((2, 16, 8, 8), (16, 16, 1, 1), 1, 0, 1, 1)
    assert planner.plan("backward_weight", tiny) == Algorithm.POINTWISE_SIMD


def test_dispatch_cases_cover_every_algorithm(monkeypatch):
    """The shared geometries (kernel_checks.CONV_PATH_CASES) are planned as they say,
    and together they reach every algorithm of every pass (with 64-byte vectors; with
    32-byte ones the SIMD GEMM's forward, input gradient and im2col weight gradient are
    never planned, and tested on their own in test_gemm.py)."""
    vector_width(monkeypatch, 64)
    seen = [set(), set(), set()]
    for case, want in conv_path_cases(64).values():
        for dtype in DTYPES:
            assert plan_of(case, dtype) == want
        for s, p in zip(seen, want):
            s.add(p)
    A = Algorithm
    fwd = {A.WINOGRAD, A.WINOGRAD_NHWC, A.TAP_SAME, A.TAP_POLY2, A.DEPTHWISE3X3, A.DIRECT,
           A.POINTWISE_SIMD, A.POINTWISE_GEMM, A.IM2COL_GEMM}  # fmt: skip
    assert seen[0] == fwd
    transposed = {a for a in A if a.transposed_of is not None}
    assert {a.transposed_of for a in transposed} == fwd - {A.TAP_POLY2}
    assert seen[1] == transposed | {A.TAP_STRIDE2, A.DIRECT_SCATTER, A.COL2IM_GEMM}
    assert seen[2] == {
        A.WINOGRAD, A.WINOGRAD_NHWC, A.LANE, A.DEPTHWISE3X3, A.SAME3X3_MASKED, A.DIRECT,
        A.POINTWISE_SIMD,
        A.POINTWISE_GEMM, A.IM2COL_SIMD, A.IM2COL_GEMM,
    }  # fmt: skip
    assert set().union(*seen) == set(A)  # no algorithm the planner never picks


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
@pytest.mark.parametrize("name", sorted(CONV_PATH_CASES))
def test_entry_points_run_the_plan(name):
    """conv2d_forward / backward_input / backward_weight run the planned algorithm
    (`last_plan`), for finite inputs; with a non-finite weight the GEMM fallbacks."""
    case, want = CONV_PATH_CASES[name]
    x, w, go, args = conv_inputs(case, np.float32, 1)

    def run():
        J.conv2d_forward(x, w, None, *args)
        J.conv2d_backward_input(go, w, x.shape, *args)
        J.conv2d_backward_weight(x, go, w.shape, *args)
        ran = J.last_plan()
        return ran["forward"], ran["backward_input"], ran["backward_weight"]

    assert run() == want
    w[0, 0, 0, 0] = np.inf
    exact = planner.EXACT_ALGORITHMS
    fwd = want[0] if want[0] in exact else Algorithm.IM2COL_GEMM
    bwd = want[1] if want[1] in exact else Algorithm.COL2IM_GEMM
    ran = run()
    assert ran[:2] == (fwd, bwd)
    assert ran[2] == want[2]  # the weight gradient does not read the weights


@pytest.mark.parametrize("name", sorted(CONV_PATH_CASES))
def test_weights_are_tested_only_where_it_can_change_the_plan(name, monkeypatch):
    """The forward and the input gradient test their weights for NaN / inf exactly when
    the plan for non-finite weights is another algorithm (a BLAS path needs no test) and
    the planned one does not check its own output (Winograd), and always with
    autotuning on (a tuned choice may be a fast kernel)."""
    from minires.kernels.jit import autotune
    from minires.kernels.jit import conv as C

    case, _ = CONV_PATH_CASES[name]
    x, w, go, args = conv_inputs(case, np.float32, 2)
    tested = []
    monkeypatch.setattr(C, "_all_finite", lambda a: tested.append(a is w) or True)
    g = planner.ConvGeometry.of(x.shape, w.shape, *args)
    J.conv2d_forward(x, w, None, *args)
    J.conv2d_backward_input(go, w, x.shape, *args)
    planned = [planner.plan(p, g, np.float32) for p in ("forward", "backward_input")]
    differs = [
        alg not in planner.OUTPUT_CHECKED_ALGORITHMS
        and planner.plan(p, g, np.float32, finite=False) != alg
        for p, alg in zip(("forward", "backward_input"), planned)
    ]
    assert tested == [True] * sum(differs)
    monkeypatch.setattr(autotune, "enabled", lambda: True)
    untimed = lambda pass_, g, dtype, run: planner.plan(pass_, g, dtype)  # noqa: E731
    monkeypatch.setattr(autotune, "choose", untimed)
    tested.clear()
    J.conv2d_forward(x, w, None, *args)
    J.conv2d_backward_input(go, w, x.shape, *args)
    assert tested == [True, True]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ["winograd", "winograd_nhwc"])
def test_winograd_falls_back_where_its_output_is_not_finite(name, dtype):
    """A NaN or inf input reaches all 4 outputs of its Winograd tile (and a huge finite
    one can overflow in a transform): such outputs are recomputed by the plan without
    Winograd, so the result is the reference's, NaN and inf where it has them, and
    `last_plan` names what ran."""
    from minires.kernels import reference as R

    case, want = CONV_PATH_CASES[name]
    x, w, go, args = conv_inputs(case, dtype, 3)
    huge = np.finfo(dtype).max / 4
    for bad in (np.nan, np.inf, -np.inf, huge):
        xb, gb = x.copy(), go.copy()
        xb[0, 3, 2, min(7, x.shape[3] - 1)] = bad
        gb[0, 5, 1, min(10, go.shape[3] - 1)] = bad
        y = J.conv2d_forward(xb, w, None, *args)
        assert J.last_plan()["forward"] == Algorithm.TAP_SAME
        np.testing.assert_allclose(y, R.conv2d_forward(xb, w, None, *args), rtol=1e-4, atol=1e-4)
        gx = J.conv2d_backward_input(gb, w, x.shape, *args)
        assert J.last_plan()["backward_input"] == Algorithm.TRANSPOSED_TAP_SAME
        ref = R.conv2d_backward_input(gb, w, x.shape, *args)
        np.testing.assert_allclose(gx, ref, rtol=1e-4, atol=1e-4)
        if bad != huge:
            assert np.isnan(y).any() or np.isinf(y).any()
    assert planner.plan("forward", ConvGeometry.of(x.shape, w.shape, *args)) == want[0]


@pytest.mark.usefixtures("wide_vector_rules")
def test_plan_of_a_geometry_and_its_fallbacks():
    g = ConvGeometry.of((8, 128, 56, 56), (128, 4, 3, 3), 1, 1, 1, 32)  # ResNeXt 32x4d
    assert (g.cpi, g.cpo, g.ho, g.wo) == (4, 4, 56, 56)
    assert planner.plan("forward", g) == Algorithm.TAP_SAME
    assert planner.plan("backward_input", g) == Algorithm.TRANSPOSED_TAP_SAME
    assert planner.plan("backward_weight", g) == Algorithm.SAME3X3_MASKED
    assert planner.plan("forward", g, finite=False) == Algorithm.IM2COL_GEMM
    assert planner.plan("backward_input", g, finite=False) == Algorithm.COL2IM_GEMM
    assert planner.plan("backward_weight", g, finite=False) == Algorithm.IM2COL_GEMM
    pw = ConvGeometry.of((8, 256, 28, 28), (128, 256, 1, 1), 1, 0, 1, 1)
    assert planner.plan("backward_weight", pw, finite=False) == Algorithm.POINTWISE_GEMM
    with pytest.raises(ValueError, match="backward"):
        planner.plan("backwards", g)


def test_transposed_geometry_is_the_input_gradient_conv():
    """The stride-1 input gradient is a forward conv of grad_out: its output is x's size."""
    g = ConvGeometry.of((2, 6, 9, 7), (10, 3, 3, 5), 1, (2, 1), (1, 2), 2)
    t = g.transposed()
    assert (t.n, t.c_in, t.h, t.w) == (2, 10, g.ho, g.wo)
    assert (t.c_out, t.ho, t.wo) == (6, 9, 7)
    assert t.flipped_padding == g.padding


def test_docstring_table_names_every_algorithm():
    """The planner's docstring holds the dispatch table: every algorithm is in it."""
    doc = planner.__doc__
    for a in Algorithm:
        name = "TRANSPOSED_<forward alg>" if a.transposed_of is not None else a.name
        assert name in doc, a


def test_algorithms_are_strings_for_reports():
    assert Algorithm.TAP_SAME == "tap_same"
    assert str(Algorithm.TRANSPOSED_DIRECT) == "transposed:direct"
    assert json.dumps({"p": Algorithm.LANE}) == '{"p": "lane"}'


@pytest.mark.parametrize("vector_bytes, want", [(64, 25 / 64), (32, 25 / 48)])
def test_stride2_lane_use_by_vector_width(vector_bytes, want, monkeypatch):
    """5x5 grad_out rows in half-vector segments: 5 segments of 8 lanes in 4 vectors of
    16 (39%), or 10 segments of 4 lanes in 6 vectors of 8 (52%)."""
    vector_width(monkeypatch, vector_bytes)
    geo = ConvGeometry.of((16, 128, 9, 9), (64, 128, 3, 3), 2, 1, 1, 1)
    assert planner.stride2_lane_use(geo, 4) == pytest.approx(want)


@pytest.mark.parametrize(
    "n, c, hw, cout, groups, want",
    [  # 3x3 / stride 2 / pad 1 input gradients (planner.py has the timings)
        (2, 1024, 14, 1024, 32, Algorithm.TAP_STRIDE2),  # grouped, to 7x7
        (8, 256, 14, 256, 8, Algorithm.TAP_STRIDE2),
        (64, 32, 16, 64, 1, Algorithm.TAP_STRIDE2),  # CIFAR, to 8x8
        (8, 128, 56, 128, 128, Algorithm.TAP_STRIDE2),  # depthwise
        (2, 128, 56, 128, 1, Algorithm.TAP_STRIDE2),  # dense, activations dominate
        (2, 512, 14, 512, 1, Algorithm.COL2IM_GEMM),  # dense, weights dominate
        (16, 64, 4, 64, 1, Algorithm.COL2IM_GEMM),  # dense, to 2x2
        (16, 128, 9, 64, 1, "lanes"),  # dense, to 5x5: 39% of 16 lanes, 52% of 8
        (64, 32, 8, 64, 1, Algorithm.TAP_STRIDE2),  # dense, to 4x4: half the lanes
    ],
)
def test_stride2_input_gradient_rule(n, c, hw, cout, groups, want):
    """Every 3x3 / stride 2 / pad 1 input gradient takes the stride-2 kernel, except dense
    ones whose weights dominate or that would fill under half its lanes."""
    geo = ConvGeometry.of((n, c, hw, hw), (cout, c // groups, 3, 3), 2, 1, 1, groups)
    if want == "lanes":  # the lane use decides, and it depends on the vector width
        half = planner.stride2_lane_use(geo, 4) < 0.5
        want = Algorithm.COL2IM_GEMM if half else Algorithm.TAP_STRIDE2
    assert planner.plan("backward_input", geo) == want
    assert planner.plan("backward_input", geo, disabled=frozenset({"col2im"})) == (
        Algorithm.TAP_STRIDE2
    )
    assert planner.plan("backward_input", geo, disabled=frozenset({"tap"})) != (
        Algorithm.TAP_STRIDE2
    )


@pytest.mark.parametrize(
    "n, c, hw, groups, want",
    [
        (2, 256, 56, 32, Algorithm.DIRECT),  # ResNeXt-50's conv3 entry: 28x28 outputs
        (8, 128, 40, 32, Algorithm.DIRECT),  # 20x20 outputs: 400 pixels
        (8, 128, 38, 32, Algorithm.TAP_POLY2),  # 19x19: under 400
        (8, 512, 28, 32, Algorithm.TAP_POLY2),  # 14x14 outputs: the tap kernel wins
        (8, 64, 56, 32, Algorithm.TAP_POLY2),  # 2 channels a group: not measured
        (64, 16, 32, 1, Algorithm.TAP_POLY2),  # dense: DIRECT does not take it
    ],
)
@pytest.mark.parametrize("narrow", [True, False])
def test_grouped_stride2_forward_rule(n, c, hw, groups, want, narrow, monkeypatch):
    """DIRECT where it was measured faster (AVX-512 on 256-bit datapaths, Zen 4); the
    tap kernel on CPUs with 512-bit units (Intel), where it wins them all."""
    monkeypatch.setattr(planner, "AVX512_ON_256BIT_UNITS", narrow)
    if not narrow:
        want = Algorithm.TAP_POLY2
    geo = ConvGeometry.of((n, c, hw, hw), (c, c // groups, 3, 3), 2, 1, 1, groups)
    assert planner.plan("forward", geo, np.float32) == want
    assert planner.use_direct_poly2(geo) == (want == Algorithm.DIRECT)


def test_datapath_width_comes_from_cpuinfo(tmp_path, monkeypatch):
    """Zen 4 (AMD family 25 with avx512f) runs AVX-512 on 256-bit datapaths; Zen 3 (no
    avx512f), Zen 5 (family 26) and Intel do not; an unreadable cpuinfo says no."""
    import builtins

    real_open = builtins.open

    def cpu(vendor, family, flags):
        path = tmp_path / f"{vendor}-{family}"
        path.write_text(
            f"processor\t: 0\nvendor_id\t: {vendor}\ncpu family\t: {family}\n"
            f"flags\t\t: fpu sse2 {flags}\n\nprocessor\t: 1\nvendor_id\t: Other\n"
        )
        monkeypatch.setattr(
            builtins,
            "open",
            lambda f, *a, **k: real_open(path if f == "/proc/cpuinfo" else f, *a, **k),
        )
        return planner._avx512_on_256bit_units()

    assert cpu("AuthenticAMD", 25, "avx2 avx512f avx512bw")
    assert not cpu("AuthenticAMD", 25, "avx2")
    assert not cpu("AuthenticAMD", 26, "avx2 avx512f")
    assert not cpu("GenuineIntel", 6, "avx2 avx512f")
    monkeypatch.setattr(builtins, "open", lambda *a, **k: (_ for _ in ()).throw(OSError("no")))
    assert not planner._avx512_on_256bit_units()
