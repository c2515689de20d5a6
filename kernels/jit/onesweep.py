"""Both gradients of a conv in one sweep over grad_out (`conv.conv2d_backward`).

A training step asks for the input gradient and the weight gradient of a conv together.
Run apart, the two passes each read all of grad_out from memory; where both run
kernels that work per (image, group) task - the input gradient as the forward conv of
grad_out with the transposed, flipped weights - one task can do both: first the group's
input gradient, then its weight gradient while the group's grad_out planes are still in
L1/L2. Same tasks, same arithmetic: the same bits as the two passes.

    SWEEPS[(input-gradient algorithm, weight-gradient algorithm)] -> driver
    driver(x3, go3, weight, g) -> (grad_x (N, C_in, H*W), grad_w like weight)

with x3 (N, C_in, H*W) and go3 (N, C_out, Ho*Wo) contiguous, weight (C_out, C_in/groups,
kH, kW) in their dtype. The pairs, measured on the Intel host (2 threads, ms, the two
passes -> one sweep): depthwise 3x3 (`dw3x3_bwd_range`) 8x128x56x56 1.46 -> 1.17-1.24,
8x256x28x28 1.57 -> 0.77, 2x512x14x14 0.37 -> 0.17; the grouped tap-table input gradient
with the masked 3x3 weight gradient 32x4d 8x128x56x56 2.87 -> 2.47, 8x14d 8x112x56x56
7.35 -> 6.87, 32x8d 8x256x28x28 2.61 -> 2.32, 16 groups 8x256x56x56 17.3 -> 16.7.
"""

from __future__ import annotations

import numpy as np

from ._numba import jit, parallel_for
from .depthwise import dw3x3_bwd_range
from .direct import _same3x3_bwd_weight_task as masked_weight_grad_task
from .direct import masked_weight, masked_weight_grad_tasks
from .planner import Algorithm, ConvGeometry
from .tapconv import TapGeometry, tap_conv_tasks, tap_task


def _flipped(weight, groups):
    """(C, 1, 3, 3) depthwise weights rotated by 180 degrees (one channel a group: the
    per-group transpose is the identity)."""
    return np.ascontiguousarray(weight[:, :, ::-1, ::-1])


def depthwise_backward(x3, go3, weight, g: ConvGeometry):
    """Both gradients of a `DEPTHWISE3X3` conv with one output channel per group: per
    plane the input gradient (the conv of grad_out with the flipped weights), then the
    weight gradient (`dw3x3_bwd_range`); per-image partials summed in image order."""
    dt = x3.dtype
    gx = np.empty_like(x3)
    part = np.empty((g.n, g.c_out, 1, 3, 3), dtype=dt)
    args = (x3, go3, _flipped(weight, g.groups), gx, part, g.h, g.w, g.c_in, dt.type(0))
    parallel_for(dw3x3_bwd_range, g.n * g.c_in, *args)
    return gx, part.sum(axis=0)


@jit(nogil=True)
def _tap_masked_range(t0, t1, tap, tile, masked):
    """Tasks [t0, t1), t = n*G + g: the tap-table input gradient of image n's group g
    (its nblk blocks of input channels; `tap` = `tap_conv_tasks`' arguments, `tile` its
    register tile), then the masked 3x3 weight gradient of the same group (`masked` =
    `masked_weight_grad_tasks`' arguments)."""
    nblk = tap[12]
    for t in range(t0, t1):
        for b in range(nblk):
            tap_task(tile, t * nblk + b, t1 * nblk, *tap)
        masked_weight_grad_task(t, *masked)


def tap_masked_backward(x3, go3, weight, g: ConvGeometry):
    """Both gradients of a 3x3 / stride 1 / pad 1 conv whose passes plan
    `TRANSPOSED_TAP_SAME` and `SAME3X3_MASKED`, one (image, group) task at a time."""
    tg = TapGeometry.same(g.h, g.w, g.kh, g.kw, *g.flipped_padding, *g.dilation)
    gx, tile, _, tap = tap_conv_tasks(go3, weight, None, g.groups, tg, transposed=True)
    part, masked = masked_weight_grad_tasks(x3, go3, g)
    parallel_for(_tap_masked_range, g.n * g.groups, tap, tile, masked)
    return gx, masked_weight(part, g)


SWEEPS = {
    (Algorithm.TRANSPOSED_DEPTHWISE3X3, Algorithm.DEPTHWISE3X3): depthwise_backward,
    (Algorithm.TRANSPOSED_TAP_SAME, Algorithm.SAME3X3_MASKED): tap_masked_backward,
}
