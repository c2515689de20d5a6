"""conv2d forward / backward-input / backward-weight: the entry points of kernels.jit.

Each entry point describes its conv as a `planner.ConvGeometry`, asks
`planner.plan(pass_, geometry, dtype)` for the algorithm (or, with `MINIRES_AUTOTUNE=1`,
`autotune.choose`, which times the candidates once per geometry), records it
(`last_plan()`) and runs it. The algorithms live by family:

* `winograd.py` - Winograd F(2x2, 3x3) for 3x3 / stride 1 / pad 1 convs (`WINOGRAD`,
  forward and weight gradient), and `nhwc.py` the same on channels-last tiles for
  small planes (`WINOGRAD_NHWC`);
* `tapconv.py` - register-blocked tap-table kernels with explicit SIMD (`simd.py`):
  `TAP_SAME`, `TAP_POLY2`, `TAP_STRIDE2`, and the output-channel-lane weight gradient
  `LANE`;
* `direct.py` - zero-padded polyphase tile kernels (`DIRECT`, `DIRECT_SCATTER`) and the
  masked 3x3 weight gradient (`SAME3X3_MASKED`); with `depthwise.py`'s plane kernels
  (`DEPTHWISE3X3`);
* `im2col_gemm.py` - im2col + OpenBLAS (`IM2COL_GEMM`, `POINTWISE_GEMM`,
  `COL2IM_GEMM`);
* `gemm.py` - a GEMM on the SIMD vectors, the batch folded into its columns: 1x1 convs
  (`POINTWISE_SIMD`: forward, input and weight gradients) and, after an im2col of the
  whole batch, the weight gradient of small-output convs (`IM2COL_SIMD`).

At stride 1 the input gradient is the forward conv of grad_out with per-group
transposed, flipped weights and padding d*(k-1) - p (`TRANSPOSED_*`), so it runs
whichever forward algorithm the planner picks for that transposed conv.

All of them give the reference's NaN / inf pattern - non-finite weights, and non-finite
weight gradients from a fast kernel, go to the GEMM paths (`plan(..., finite=False)`;
why: planner.py), and a Winograd output that is not finite is recomputed by the plan
without Winograd - and the same bits for any thread count (fixed work decomposition).
The dispatch table is in planner.py and DESIGN.md; measurements in PERFLOG.md.
"""

from __future__ import annotations

import contextlib

import numpy as np

from . import autotune, nhwc
from ._numba import jit, parallel_for, serial
from .direct import direct_backward_input, direct_forward, direct_weight_grad
from .elementwise import all_finite
from .gemm import conv1x1, conv1x1_weight_grad
from .im2col_gemm import (
    col2im_backward_input,
    gemm_forward,
    gemm_weight_grad,
    im2col,
    pointwise_backward_input,
)
from .onesweep import SWEEPS
from .planner import (
    EXACT_ALGORITHMS,
    GEMM_ALGORITHMS,
    OUTPUT_CHECKED_ALGORITHMS,
    Algorithm,
    ConvGeometry,
    plan,
    record,
)
from .tapconv import (
    TapGeometry,
    lane_weight_grad,
    polyphase,
    stride2_backward_input,
    tap_conv,
)
from .winograd import forward as winograd_forward
from .winograd import weight_grad as winograd_weight_grad


def _all_finite(a):
    """True if `a` holds no NaN or inf (see planner.py for why it matters)."""
    return all_finite(a)


# Convs of fewer multiply-adds than this run on the calling thread alone (`serial`):
# handing a job to the other thread costs more than such a conv gains from it. Measured
# (us, float32, each call alone, 1 thread / 2, forward / input gradient / weight
# gradient): batch 1 16->16 32x32 (2.4M multiply-adds) 51/85, 70/125, 55/55, 64->64 8x8
# 74/148, 103/200, 95/94; batch 4 16->16 32x32 (9.4M) 131/163, 150/185, 163/170; at
# 18.9M (batch 8) mixed: 16->16 32x32 245/217, 260/239, 311/250, 32->32 16x16 154/181,
# 162/202, 220/245, 64->64 8x8 259/253, 287/314, 370/374; at 37.7M two threads win
# (16->16 32x32 482/337, 498/356, 632/418).
_PARALLEL_MIN_MACS = 1 << 24


def _threads_for(g: ConvGeometry):
    """`serial()` for a conv of fewer than `_PARALLEL_MIN_MACS` multiply-adds, else a
    context that changes nothing."""
    macs = g.n * g.c_out * g.ho * g.wo * g.cpi * g.kh * g.kw
    return serial() if macs < _PARALLEL_MIN_MACS else contextlib.nullcontext()


def _choose_for_weights(pass_, g: ConvGeometry, dtype, weight, run) -> Algorithm:
    """`_choose` for the forward / input gradient, whose algorithm depends on whether
    the weights are finite. They are tested only where the answer can change it: with
    autotuning, or where the planner's path for non-finite weights is another one and
    the planned path does not check its own output (the 1x1 convs and Winograd are not
    tested: most of ResNet-50's 100 MB of weights, read twice a step just to confirm
    the plan)."""
    if not autotune.enabled():
        alg = plan(pass_, g, dtype)
        if alg in OUTPUT_CHECKED_ALGORITHMS or plan(pass_, g, dtype, finite=False) == alg:
            return alg
    return _choose(pass_, g, dtype, _all_finite(weight), run)


def conv2d_forward(x, weight, bias, stride, padding, dilation, groups):
    """out = conv2d(x, weight) + bias, as `kernels.reference.conv2d_forward`.

    x (N, C_in, H, W), weight (C_out, C_in/groups, kH, kW), bias (C_out,) or None;
    stride, padding, dilation: (h, w) pairs -> out (N, C_out, Ho, Wo) in x's dtype.
    """
    x = np.ascontiguousarray(x)
    weight = np.ascontiguousarray(weight, dtype=x.dtype)
    g = ConvGeometry.of(x.shape, weight.shape, stride, padding, dilation, groups)
    run = lambda alg: _run_forward(alg, x, weight, bias, g)  # noqa: E731
    with _threads_for(g):
        alg = _choose_for_weights("forward", g, x.dtype, weight, run)
        record("forward", alg)
        return run(alg)


def _winograd(x, weight, bias, g: ConvGeometry, alg=Algorithm.WINOGRAD):
    """Winograd's output (`alg`: on tiles in the lanes or channels-last), or - if it is
    not finite (a NaN or inf input or weight reaches every output of its tile; see
    winograd.py) - the output of the plan without Winograd for these weights (the GEMM
    if they are not finite), recorded as what the forward ran."""
    if alg == Algorithm.WINOGRAD_NHWC:
        out, finite = nhwc.winograd_forward(x, weight, bias, g.groups)
    else:
        out, finite = winograd_forward(x, weight, bias, g.groups)
    if finite:
        return out
    return _run_forward(_without_winograd("forward", g, x.dtype, weight), x, weight, bias, g)


def _without_winograd(pass_, g: ConvGeometry, dtype, weight) -> Algorithm:
    """The plan of `pass_` with Winograd switched off, for these weights (the GEMM path
    if they are not finite), recorded as what the pass ran: for a Winograd output that
    came out non-finite."""
    off = frozenset({"winograd"})
    alt = plan(pass_, g, dtype, finite=_all_finite(weight), disabled=off)
    record(pass_, alt)
    return alt


def _choose(pass_, g: ConvGeometry, dtype, finite: bool, run) -> Algorithm:
    """The planner's algorithm, or with `MINIRES_AUTOTUNE=1` (finite weights) the fastest
    candidate, timed with `run(algorithm)` on this call's inputs (autotune.py)."""
    if finite and autotune.enabled():
        return autotune.choose(pass_, g, dtype, run)
    return plan(pass_, g, dtype, finite=finite)


def _run_forward(alg: Algorithm, x, weight, bias, g: ConvGeometry, transposed=False):
    """The forward algorithm `alg` on contiguous x and weight (weight in x's dtype); the
    stride-1 input gradient runs them too (`_run_backward_input`), with `transposed`:
    the conv with `weight`'s per-group transposed, flipped weights, which the tap kernel
    packs straight from `weight` (the others get a `_transposed_flipped` copy)."""
    x3 = x.reshape(g.n, g.c_in, g.h * g.w)
    shape = (g.n, g.c_out, g.ho, g.wo)
    if alg == Algorithm.TAP_SAME:
        tg = TapGeometry.same(g.h, g.w, g.kh, g.kw, *g.padding, *g.dilation)
        return tap_conv(x3, weight, bias, g.groups, tg, transposed=transposed).reshape(shape)
    if transposed:
        weight = _transposed_flipped(weight, g.groups)
    if alg in (Algorithm.WINOGRAD, Algorithm.WINOGRAD_NHWC):
        return _winograd(x, weight, bias, g, alg)
    if alg == Algorithm.TAP_POLY2:
        xp = polyphase(x).reshape(g.n, g.c_in, -1)
        tg = TapGeometry.poly2(g.ho, g.wo, g.kh, g.kw)
        return tap_conv(xp, weight, bias, g.groups, tg).reshape(shape)
    if alg in (Algorithm.DEPTHWISE3X3, Algorithm.DIRECT):
        return direct_forward(alg, x3, weight, bias, g).reshape(shape)
    if alg in (Algorithm.POINTWISE_GEMM, Algorithm.IM2COL_GEMM):
        return gemm_forward(alg, x3, weight, bias, g)
    if alg == Algorithm.POINTWISE_SIMD:
        out = conv1x1(weight.reshape(g.groups, g.cpo, g.cpi), x3)
        if bias is not None:
            out += np.asarray(bias, dtype=x.dtype).reshape(1, g.c_out, 1)
        return out.reshape(shape)
    raise ValueError(f"not a forward algorithm: {alg}")


def _transposed_flipped(weight, groups):
    """(C_out, C_in/g, kH, kW) -> (C_in, C_out/g, kH, kW): per group, input and output
    channels swapped and the kernel rotated by 180 degrees (the weights whose stride-1
    forward conv of grad_out is grad_x)."""
    Cout, cpi, KH, KW = weight.shape
    out = np.empty((groups * cpi, Cout // groups, KH, KW), weight.dtype)
    blocks = -(-cpi // _FLIP_BLOCK)
    args = (weight.reshape(-1), out.reshape(-1), Cout, cpi, KH * KW, groups, blocks)
    parallel_for(_transpose_flip_range, groups * blocks, *args, nbytes=weight.nbytes)
    return out


# A task of `_transpose_flip_range` copies _FLIP_BLOCK input channels, in tiles of
# _FLIP_BLOCK output channels, so that every cache line it reads or writes is used whole
# while it is in L1 (a numpy transpose-and-flip copy walked one tap row per output
# channel, 2 KB apart: 7.7 ms for 2048 x 512 1x1 weights, 1.8 ms for 512 x 512 3x3).
_FLIP_BLOCK = 16


@jit(nogil=True)
def _transpose_flip_range(t0, t1, w, out, cout, cpi, T, groups, blocks):
    # w flat (C_out, cpi, T) -> out flat (C_in, cpo, T):
    # out[g*cpi + c, o, T-1-k] = w[g*cpo + o, c, k]; flat u64 offsets (no wrap-around checks)
    cpo = cout // groups
    for t in range(t0, t1):
        g = t // blocks
        c0 = (t - g * blocks) * _FLIP_BLOCK
        c1 = min(cpi, c0 + _FLIP_BLOCK)
        for o0 in range(0, cpo, _FLIP_BLOCK):
            o1 = min(cpo, o0 + _FLIP_BLOCK)
            for c in range(c0, c1):
                dst = np.uint64(((g * cpi + c) * cpo + o0) * T + T - 1)
                src = np.uint64(((g * cpo + o0) * cpi + c) * T)
                for _ in range(o1 - o0):
                    for k in range(T):
                        out[dst - np.uint64(k)] = w[src + np.uint64(k)]
                    dst += np.uint64(T)
                    src += np.uint64(cpi * T)


def conv2d_backward_input(grad_out, weight, input_shape, stride, padding, dilation, groups):
    """grad_x of conv2d, as `kernels.reference.conv2d_backward_input`.

    grad_out (N, C_out, Ho, Wo), weight (C_out, C_in/groups, kH, kW), input_shape
    (N, C_in, H, W) -> grad_x (N, C_in, H, W) in grad_out's dtype.
    """
    grad_out = np.ascontiguousarray(grad_out)
    dt = grad_out.dtype
    weight = np.ascontiguousarray(weight, dtype=dt)
    g = ConvGeometry.of(input_shape, weight.shape, stride, padding, dilation, groups)
    run = lambda alg: _run_backward_input(alg, grad_out, weight, g)  # noqa: E731
    with _threads_for(g):
        alg = _choose_for_weights("backward_input", g, dt, weight, run)
        record("backward_input", alg)
        return run(alg)


def _run_backward_input(alg: Algorithm, grad_out, weight, g: ConvGeometry):
    """The input-gradient algorithm `alg` on contiguous grad_out and weight (same dtype)."""
    shape = (g.n, g.c_in, g.h, g.w)
    if alg == Algorithm.TRANSPOSED_POINTWISE_GEMM:
        # W^T @ grad_out per image, W^T a transposed view (BLAS reads it as it is)
        return pointwise_backward_input(grad_out, weight, g).reshape(shape)
    if alg == Algorithm.TRANSPOSED_POINTWISE_SIMD:  # the same product, W^T packed as a view
        wT = weight.reshape(g.groups, g.cpo, g.cpi).transpose(0, 2, 1)
        return conv1x1(wT, grad_out.reshape(g.n, g.c_out, -1)).reshape(shape)
    if alg in (Algorithm.TRANSPOSED_WINOGRAD, Algorithm.TRANSPOSED_WINOGRAD_NHWC):
        # as below, but a non-finite output (a NaN or inf in grad_out or the weights
        # reaches all 4 outputs of its tile) is recomputed by the plan without Winograd
        # for these weights (`COL2IM_GEMM` if they are not finite)
        if alg == Algorithm.TRANSPOSED_WINOGRAD_NHWC:  # reads the weights transposed
            gx, finite = nhwc.winograd_forward(grad_out, weight, None, g.groups, True)
        else:
            wf = _transposed_flipped(weight, g.groups)
            gx, finite = winograd_forward(grad_out, wf, None, g.groups)
        if finite:
            return gx
        alt = _without_winograd("backward_input", g, grad_out.dtype, weight)
        return _run_backward_input(alt, grad_out, weight, g)
    if alg.transposed_of is not None:
        # stride 1: grad_x is the forward conv of grad_out with the per-group transposed,
        # flipped weights and padding d*(k-1) - p (no column-gradient buffer, no col2im)
        return _run_forward(alg.transposed_of, grad_out, weight, None, g.transposed(), True)
    if alg == Algorithm.TAP_STRIDE2:
        return stride2_backward_input(grad_out, weight, g.groups, g.h, g.w)
    go3 = grad_out.reshape(g.n, g.c_out, g.ho * g.wo)
    if alg == Algorithm.DIRECT_SCATTER:
        return direct_backward_input(go3, weight, g).reshape(shape)
    if alg == Algorithm.COL2IM_GEMM:
        return col2im_backward_input(go3, weight, g).reshape(shape)
    raise ValueError(f"not an input-gradient algorithm: {alg}")


def conv2d_backward_weight(x, grad_out, weight_shape, stride, padding, dilation, groups):
    """grad_weight of conv2d, as `kernels.reference.conv2d_backward_weight`.

    x (N, C_in, H, W), grad_out (N, C_out, Ho, Wo), weight_shape (C_out, C_in/groups,
    kH, kW) -> grad_weight of that shape in x's dtype.
    """
    x = np.ascontiguousarray(x)
    dt = x.dtype
    grad_out = np.ascontiguousarray(grad_out, dtype=dt)
    g = ConvGeometry.of(x.shape, weight_shape, stride, padding, dilation, groups)
    x3 = x.reshape(g.n, g.c_in, g.h * g.w)
    go3 = grad_out.reshape(g.n, g.c_out, g.ho * g.wo)
    run = lambda alg: _run_backward_weight(alg, x3, go3, g)  # noqa: E731
    with _threads_for(g):
        return _checked_weight_grad(_choose("backward_weight", g, dt, True, run), run, g, dt)


def _checked_weight_grad(alg: Algorithm, run, g: ConvGeometry, dt, gw=None):
    """The weight gradient of `alg` (`gw` if already computed, else `run(alg)`),
    recorded as what the pass ran; a non-finite one from a fast (not exact) algorithm is
    recomputed by the exact GEMM path, which gives the reference's NaN / inf."""
    if alg not in EXACT_ALGORITHMS:
        gw = run(alg) if gw is None else gw
        if _all_finite(gw):
            record("backward_weight", alg)
            return gw
        alg, gw = plan("backward_weight", g, dt, finite=False), None
    record("backward_weight", alg)
    return run(alg) if gw is None else gw


def _run_backward_weight(alg: Algorithm, x3, go3, g: ConvGeometry):
    """The weight-gradient algorithm `alg`: x3 (N, C_in, H*W), go3 (N, C_out, Ho*Wo)."""
    if alg == Algorithm.WINOGRAD:
        return winograd_weight_grad(x3.reshape(g.n, g.c_in, g.h, g.w), go3, g.cpi, g.groups)
    if alg == Algorithm.WINOGRAD_NHWC:
        x4, go4 = x3.reshape(g.n, g.c_in, g.h, g.w), go3.reshape(g.n, g.c_out, g.ho, g.wo)
        return nhwc.winograd_weight_grad(x4, go4, g.groups)
    if alg == Algorithm.LANE:
        return lane_weight_grad(x3, go3, g.cpi, g.groups, g.h, g.w, g.stride[0])
    if alg in GEMM_ALGORITHMS:
        return gemm_weight_grad(alg, x3, go3, g)
    if alg in (Algorithm.POINTWISE_SIMD, Algorithm.IM2COL_SIMD):
        cols = x3 if alg == Algorithm.POINTWISE_SIMD else im2col(x3, g)
        return conv1x1_weight_grad(cols, go3, g.groups).reshape(g.c_out, g.cpi, g.kh, g.kw)
    return direct_weight_grad(alg, x3, go3, g)


def conv2d_backward(
    grad_out, x, weight, stride, padding, dilation, groups, output_mask=(True, True)
):
    """(grad_x, grad_w) of conv2d in one call, as `kernels.reference.conv2d_backward`:
    each None where output_mask = (input, weight) does not ask for it.

    grad_out (N, C_out, Ho, Wo), x (N, C_in, H, W), weight (C_out, C_in/groups, kH, kW).
    Both asked, and the two passes' algorithms a pair of `onesweep.SWEEPS` (the
    depthwise 3x3; the grouped tap-table input gradient with the masked 3x3 weight
    gradient): one sweep over the (image, group) tasks computes both, grad_out read once
    (onesweep.py); otherwise the two entry points above (which the step profiler times
    as the two passes). Each pass records its algorithm either way."""
    need_x, need_w = (bool(m) for m in output_mask)
    args = (stride, padding, dilation, groups)
    if need_x and need_w:
        both = _one_sweep_backward(grad_out, x, weight, *args)
        if both is not None:
            return both
    gx = conv2d_backward_input(grad_out, weight, x.shape, *args) if need_x else None
    gw = conv2d_backward_weight(x, grad_out, np.shape(weight), *args) if need_w else None
    return gx, gw


def _one_sweep_backward(grad_out, x, weight, stride, padding, dilation, groups):
    """`conv2d_backward`'s one-sweep path, or None where it does not apply: mixed
    dtypes, a planned pair that is not in `SWEEPS` (checked first, from the planner
    alone: a few microseconds), or non-finite weights or autotuning choosing another
    pair."""
    if x.dtype != grad_out.dtype:
        return None
    dt = x.dtype
    g = ConvGeometry.of(x.shape, np.shape(weight), stride, padding, dilation, groups)
    planned = (plan("backward_input", g, dt), plan("backward_weight", g, dt))
    if not autotune.enabled() and planned not in SWEEPS:
        return None
    x = np.ascontiguousarray(x)
    grad_out = np.ascontiguousarray(grad_out)
    weight = np.ascontiguousarray(weight, dtype=dt)
    x3 = x.reshape(g.n, g.c_in, g.h * g.w)
    go3 = grad_out.reshape(g.n, g.c_out, g.ho * g.wo)
    with _threads_for(g):
        run_x = lambda alg: _run_backward_input(alg, grad_out, weight, g)  # noqa: E731
        run_w = lambda alg: _run_backward_weight(alg, x3, go3, g)  # noqa: E731
        alg_x = _choose_for_weights("backward_input", g, dt, weight, run_x)
        alg_w = _choose("backward_weight", g, dt, True, run_w)
        sweep = SWEEPS.get((alg_x, alg_w))
        if sweep is None:
            return None
        gx, gw = sweep(x3, go3, weight, g)
        record("backward_input", alg_x)
        return gx.reshape(x.shape), _checked_weight_grad(alg_w, run_w, g, dt, gw)
