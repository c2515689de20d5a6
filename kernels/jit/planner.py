"""The conv planner: which algorithm computes each pass of a convolution.

`plan(pass_, geometry, dtype) -> Algorithm` is the one place where kernels.jit chooses a
conv algorithm; `conv2d_forward`, `conv2d_backward_input` and `conv2d_backward_weight`
(`conv.py`) ask it and dispatch on the answer. `plan_for(...)` gives the three passes of
a conv from its shapes, `last_plan()` what the last conv call on this thread ran.

Dispatch table (`cpi` / `cpo`: input / output channels per group; "3x3 same": 3x3,
stride 1, pad 1, dilation 1; "same": stride 1 and d*(k-1) == 2*p on both axes;
"tap-sized": cpi*kh*kw <= 576, cpo >= 2 and not 1x1; "direct-sized" (`use_direct`):
cpo*cpi*kh*kw <= 9216, and stride 1 and not 1x1 if dense). The first matching row wins:

    pass             algorithm                  geometry
    forward          WINOGRAD                   3x3 same, winograd-sized (`use_winograd`:
                                                24 <= cpi <= 256, cpo >= 16, rows of
                                                tiles fill >= 3/4 of the lanes that hold
                                                them) (winograd.py)
                     WINOGRAD_NHWC              3x3 same, planes <= 14x14, 32 <= cpi <=
                                                256, cpo <= 256 filling >= 7/8 of its
                                                4-vector panels, >= max(128, cpi) tiles
                                                (`use_winograd_nhwc`; nhwc.py)
                     TAP_SAME                   "same", tap-sized (tapconv.py); with
                                                32-byte vectors DIRECT instead where
                                                direct-sized with cpi > 8 and >= 400
                                                output pixels (`use_direct_same`)
                     DIRECT                     grouped, 4-32 channels a group in and
                                                out, direct-sized, what TAP_POLY2 would
                                                take, output planes >= 400 pixels, on
                                                AVX-512 with 256-bit datapaths (Zen 4;
                                                `use_direct_poly2`)
                     TAP_POLY2                  odd k x k / stride 2 / pad (k-1)/2 (3x3
                                                pad 1, the 7x7 stem), tap-sized
                     DEPTHWISE3X3               3x3 same, cpi == 1, direct-sized
                     DIRECT                     direct-sized (direct.py tile kernels)
                     POINTWISE_SIMD             1x1 / stride 1 / pad 0, dense: batch 1 with
                                                >= 2^23 multiply-adds, or >= 2^22 and
                                                <= 256 pixels and cpi*cpo < 2^20 (for an
                                                input gradient: 2^24; <= 64 pixels and
                                                cpi*cpo < 2^18) (`use_pointwise_simd`;
                                                gemm.py); never with 32-byte vectors
                                                (AVX2: `simd_gemm_beats_blas`)
                     POINTWISE_GEMM             1x1 / stride 1 / pad 0 (im2col_gemm.py)
                     IM2COL_GEMM                anything else
    backward_input   COL2IM_GEMM                stride 1, p <= d*(k-1), the transposed
                                                conv's forward would be IM2COL_GEMM, and
                                                weights >= half the input gradient
                                                (`weights_dominate`)
                     TRANSPOSED_<forward alg>   stride 1 and (p <= d*(k-1) or
                                                direct-sized): the forward algorithm of
                                                the transposed conv (grad_out as input,
                                                cpi and cpo swapped, padding d*(k-1)-p)
                     TAP_STRIDE2                3x3 / stride 2 / pad 1, unless dense with
                                                weights that dominate or under half the
                                                lanes filled (`stride2_lane_use`; those:
                                                COL2IM_GEMM) (tapconv.py)
                     DIRECT_SCATTER             direct-sized (direct.py)
                     COL2IM_GEMM                anything else
    backward_weight  WINOGRAD_NHWC              as the forward's (nhwc.py)
                     WINOGRAD                   3x3 same, winograd-sized, and cpi <= 64
                                                where two rows of tiles share a vector;
                                                with 32-byte vectors not direct-sized
                                                ones with cpi < 32
                     LANE                       3x3 / pad 1 / stride 1 or 2, cpo >= 16,
                                                8 <= cpi, cpi*9 <= 576, one image's zero-bordered
                                                planes of a group <= 48 KB (stride 1) or
                                                128 KB (stride 2) (tapconv.py)
                     DEPTHWISE3X3               3x3 same, cpi == 1, direct-sized
                     SAME3X3_MASKED             3x3 same, cpi <= 32, direct-sized,
                                                64-byte vectors (32-byte: DIRECT)
                     DIRECT                     direct-sized, or dense, strided, not 1x1,
                                                cpo*cpi*kh*kw <= 2*9216 (the 7x7 stem)
                     POINTWISE_SIMD             1x1 / stride 1 / pad 0, dense, cpi fills
                                                >= 3/4 of its 2-vector panels (or < 2^20
                                                multiply-adds: with 32-byte vectors only
                                                these)
                     POINTWISE_GEMM             1x1 / stride 1 / pad 0
                     IM2COL_SIMD                dense, Ho*Wo <= 256, >= 2^24 multiply-adds,
                                                and the 1x1 conv of its column matrix would
                                                take POINTWISE_SIMD (`use_im2col_simd`)
                     IM2COL_GEMM                anything else

Non-finite values (`finite=False`): the fast kernels multiply some weights by zeros that
are not in the reference's sum (0 * inf = NaN where the reference has a finite value),
so non-finite weights take the GEMM paths: forward `IM2COL_GEMM`, backward_input
`COL2IM_GEMM` (each unless the plan is already one that sums exactly the reference's
products: `EXACT_ALGORITHMS`), and a non-finite weight gradient from a fast kernel is
recomputed with backward_weight's `POINTWISE_GEMM` / `IM2COL_GEMM`. `WINOGRAD` mixes
the inputs of a tile (a NaN or inf reaches all 4 of its outputs), so a Winograd output
that comes out non-finite is recomputed with the plan that has the "winograd" family
switched off (conv.py). The dtype matters to the lane weight gradient (the size of its
per-image planes) and to Winograd (the lanes of a vector).

The thresholds and the measurements behind them are beside each predicate below and in
DESIGN.md / PERFLOG.md.
"""

from __future__ import annotations

import enum
import functools
import threading
from typing import NamedTuple

import numpy as np

PASSES = ("forward", "backward_input", "backward_weight")


class Algorithm(str, enum.Enum):
    """A conv algorithm of kernels.jit (the value is its name in plans and benchmarks)."""

    WINOGRAD = "winograd"  # winograd.forward: F(2x2, 3x3), 3x3 / stride 1 / pad 1
    WINOGRAD_NHWC = "winograd_nhwc"  # nhwc.py: the same on channels-last tiles
    TAP_SAME = "tap_same"  # tapconv.tap_conv on x (stride-1 "same" convs)
    TAP_POLY2 = "tap_poly2"  # tapconv.tap_conv on x's polyphase planes (odd k, stride 2)
    DEPTHWISE3X3 = "depthwise3x3"  # depthwise.py plane kernels
    DIRECT = "direct"  # direct.py tile kernels (any stride / dilation / kernel size)
    POINTWISE_SIMD = "pointwise_simd"  # 1x1: gemm.conv1x1, the batch folded into columns
    IM2COL_SIMD = "im2col_simd"  # im2col of the whole batch, then gemm.py's GEMM
    POINTWISE_GEMM = "pointwise_gemm"  # 1x1: GEMM on the input as it is
    IM2COL_GEMM = "im2col_gemm"  # per-image-block im2col next to its GEMM
    # backward_input at stride 1: the forward conv of grad_out with transposed, flipped
    # weights, computed by the named forward algorithm
    TRANSPOSED_WINOGRAD = "transposed:winograd"
    TRANSPOSED_WINOGRAD_NHWC = "transposed:winograd_nhwc"
    TRANSPOSED_TAP_SAME = "transposed:tap_same"
    TRANSPOSED_DEPTHWISE3X3 = "transposed:depthwise3x3"
    TRANSPOSED_DIRECT = "transposed:direct"
    TRANSPOSED_POINTWISE_SIMD = "transposed:pointwise_simd"
    TRANSPOSED_POINTWISE_GEMM = "transposed:pointwise_gemm"
    TRANSPOSED_IM2COL_GEMM = "transposed:im2col_gemm"
    TAP_STRIDE2 = "tap_stride2"  # tapconv.stride2_backward_input
    DIRECT_SCATTER = "direct_scatter"  # direct.py scatter-add into a polyphase tile
    COL2IM_GEMM = "col2im_gemm"  # W^T @ grad_out, then col2im
    LANE = "lane"  # tapconv.lane_weight_grad: output channels in the SIMD lanes
    SAME3X3_MASKED = "same3x3_masked"  # direct.py masked dot products, no tile

    def __str__(self) -> str:
        return self.value

    @property
    def transposed_of(self) -> Algorithm | None:
        """For a TRANSPOSED_* algorithm, the forward algorithm that runs it."""
        if self.value.startswith("transposed:"):
            return Algorithm(self.value.split(":", 1)[1])
        return None


GEMM_ALGORITHMS = frozenset(
    {Algorithm.POINTWISE_GEMM, Algorithm.IM2COL_GEMM, Algorithm.COL2IM_GEMM}
)
# the paths that report whether their output is finite (Winograd mixes the inputs of a
# tile: conv.py recomputes a non-finite output with the plan without Winograd, chosen
# then for the weights as they are), so their weights need no test before they run
OUTPUT_CHECKED_ALGORITHMS = frozenset(
    {
        Algorithm.WINOGRAD,
        Algorithm.TRANSPOSED_WINOGRAD,
        Algorithm.WINOGRAD_NHWC,
        Algorithm.TRANSPOSED_WINOGRAD_NHWC,
    }
)
# the paths that sum exactly the reference's products (no padding zeros, masked taps or
# junk lanes multiplied into an output they keep): they take non-finite values as they
# are. The SIMD GEMM's lanes past the last column read 0 but are never stored, and a
# vector spanning two images holds each image's own values (gemm.py).
EXACT_ALGORITHMS = GEMM_ALGORITHMS | frozenset(
    {
        Algorithm.POINTWISE_SIMD,
        Algorithm.IM2COL_SIMD,  # the im2col of the reference, then the same SIMD GEMM
        Algorithm.TRANSPOSED_POINTWISE_GEMM,
        Algorithm.TRANSPOSED_POINTWISE_SIMD,
    }
)


class ConvGeometry(NamedTuple):
    """The shapes of one conv: x (n, c_in, h, w), weight (c_out, c_in/groups, kh, kw);
    stride, padding and dilation are (height, width) pairs of ints."""

    n: int
    c_in: int
    h: int
    w: int
    c_out: int
    kh: int
    kw: int
    stride: tuple[int, int]
    padding: tuple[int, int]
    dilation: tuple[int, int]
    groups: int

    @classmethod
    def of(cls, x_shape, weight_shape, stride, padding, dilation, groups) -> ConvGeometry:
        """From the shapes and arguments of a conv call (ints or pairs)."""
        n, c, h, w = (int(v) for v in x_shape)
        cout, _, kh, kw = (int(v) for v in weight_shape)
        return cls(n, c, h, w, cout, kh, kw, pair(stride), pair(padding), pair(dilation),
                   int(groups))  # fmt: skip

    @property
    def cpi(self) -> int:
        """Input channels per group."""
        return self.c_in // self.groups

    @property
    def cpo(self) -> int:
        """Output channels per group."""
        return self.c_out // self.groups

    @property
    def ho(self) -> int:
        return out_size(self.h, self.kh, self.stride[0], self.padding[0], self.dilation[0])

    @property
    def wo(self) -> int:
        return out_size(self.w, self.kw, self.stride[1], self.padding[1], self.dilation[1])

    @property
    def flipped_padding(self) -> tuple[int, int]:
        """d*(k-1) - p per axis: the padding of the stride-1 input gradient as a forward
        conv of grad_out (negative: a crop)."""
        (ph, pw), (dh, dw) = self.padding, self.dilation
        return (dh * (self.kh - 1) - ph, dw * (self.kw - 1) - pw)

    def transposed(self) -> ConvGeometry:
        """The stride-1 conv whose forward is this conv's input gradient: grad_out as
        input, channels swapped, padding `flipped_padding`."""
        return ConvGeometry(self.n, self.c_out, self.ho, self.wo, self.c_in, self.kh,
                            self.kw, (1, 1), self.flipped_padding, self.dilation,
                            self.groups)  # fmt: skip


def pair(v) -> tuple[int, int]:
    """(int, int) from an int or a pair."""
    if isinstance(v, (int, np.integer)):
        return (int(v), int(v))
    return (int(v[0]), int(v[1]))


def out_size(n, k, s, p, d) -> int:
    """Output length of a conv axis: input n, kernel k, stride s, padding p, dilation d."""
    return (n + 2 * p - d * (k - 1) - 1) // s + 1


# --------------------------------------------------------------------------- predicates
#
# Each predicate decides whether one algorithm family can take a geometry (and is fast
# there, by measurement); `plan` applies them in the order of the table above.

# A group whose weight block has more entries than this goes to im2col + BLAS (measured
# crossover, fwd+bwd serial: 32 channels per group direct 47 vs BLAS 41 GFLOP/s, 64 per
# group direct 27 vs BLAS 68; session 2, 2 threads, with the faster BLAS path: 48 per
# group (conv3 4x48d, batch 8) direct 22.3 ms vs BLAS 18.9 ms)
_DIRECT_MAX_WORK = 32 * 32 * 9
_DIRECT_MAX_DENSE = 32 * 32 * 9


def use_direct(g: ConvGeometry) -> bool:
    """Direct kernels (tile, masked, depthwise) for grouped/depthwise convs with small
    groups; BLAS otherwise.

    Dense convs are direct-sized only when small and stride 1 (CIFAR's 16/32-channel
    layers: there im2col costs as much as the GEMM; measured on a resnet20 step, the
    16->16 layers went from 229 to 87 ms); most of these now run on the tap table
    (checked first by `plan`). Strided dense convs keep BLAS: their direct
    backward-input was slower (7.4 vs 5.5 ms).
    """
    work = g.cpo * g.cpi * g.kh * g.kw
    if g.groups == 1:
        # dense 1x1: the input already is the GEMM's matrix, and one GEMM per image beat
        # the tile kernels at every size measured (2026-12-03, fwd / bwd-input / bwd-weight
        # ms, direct -> GEMM: 64->64 56x56 batch 8 3.6/3.1/2.6 -> 1.2/1.2/1.4, 16->32
        # 32x32 batch 64 1.5/1.5/1.3 -> 0.7/0.7/0.8, 64->64 8x8 batch 64 0.9/0.9/1.1 ->
        # 0.4/0.4/0.8; 6->10 9x9 batch 2 0.03 -> 0.03-0.05)
        return g.stride == (1, 1) and work <= _DIRECT_MAX_DENSE and not is_pointwise(g)
    return work <= _DIRECT_MAX_WORK


# The direct weight gradient (`direct.py`'s tile kernel: no im2col copy) also beats im2col
# + BLAS on small *strided* dense convs, whose forward and input gradient stay off it
# (above). Measured (2026-12-03 session 8, 2 threads, float32, ms, im2col_gemm vs direct,
# same process): the 7x7 / stride 2 stem 3->64 at 224x224 batch 1 4.18 vs 3.31, batch 8
# 18.0 vs 14.1, at 112x112 batch 2 1.17 vs 0.98, 64x64 batch 4 0.83 vs 0.68; 3->32 5x5
# stride 2 1.76 vs 1.33; 3->64 3x3 stride 2 1.36 vs 0.92; 1->32 5x5 stride 2 28x28 0.12
# vs 0.06; CIFAR-sized 16->16 3x3 stride 2 32x32 batch 64 2.35 vs 1.26, batch 8 0.47 vs
# 0.24, 32->16 16x16 batch 64 1.90 vs 1.22, 64->32 56x56 batch 2 0.88 vs 0.58, 8->8 5x5
# 1.91 vs 0.74; at twice the stem's work a tie (3->128 7x7 6.52 vs 6.44, 6->64 1.96 vs
# 1.83).
_DIRECT_MAX_STRIDED_WEIGHT_GRAD = 2 * _DIRECT_MAX_DENSE


def use_direct_weight_grad(g: ConvGeometry) -> bool:
    """The direct kernels for the weight gradient: where `use_direct` takes the conv, and
    for dense strided convs that are not 1x1 with up to twice the dense work limit (the
    7x7 stem of the ImageNet ResNets: cpi*cpo*kh*kw = 9408)."""
    if use_direct(g):
        return True
    return (
        g.groups == 1
        and g.stride != (1, 1)
        and (g.kh, g.kw) != (1, 1)
        and g.cpo * g.cpi * g.kh * g.kw <= _DIRECT_MAX_STRIDED_WEIGHT_GRAD
    )


def is_depthwise3x3(g: ConvGeometry) -> bool:
    """One input channel per group, 3x3 / stride 1 / pad 1 / dilation 1."""
    return g.cpi == 1 and is_same3x3(g)


def _is_3x3(g: ConvGeometry, stride: int) -> bool:
    """3x3 / this stride / pad 1 / dilation 1."""
    return (
        (g.kh, g.kw) == (3, 3)
        and g.stride == (stride, stride)
        and g.padding == (1, 1)
        and (g.dilation == (1, 1))
    )


def is_same3x3(g: ConvGeometry) -> bool:
    """3x3 / stride 1 / pad 1 / dilation 1."""
    return _is_3x3(g, 1)


def is_stride2_3x3(g: ConvGeometry) -> bool:
    """3x3 / stride 2 / pad 1 / dilation 1 (ResNet's downsampling convs)."""
    return _is_3x3(g, 2)


def is_pointwise(g: ConvGeometry) -> bool:
    """1x1 / stride 1 / pad 0: the input already is the GEMM's column matrix."""
    return (g.kh, g.kw) == (1, 1) and g.stride == (1, 1) and g.padding == (0, 0)


# The register-blocked tap-table kernel (`tapconv.py`) computes, forward and (stride 1)
# backward-input, stride-1 convs whose output is the size of the input ("same" padding:
# 3x3 pad 1, 5x5 pad 2, 3x3 dilation 2 pad 2, ...) and the forward of 3x3 / stride 2 /
# pad 1 convs (through polyphase planes; their input gradient: `is_stride2_3x3`), when
# a group's input channels x taps are at most this many. Measured (session 3, 2 threads,
# float32, ms, old path -> tap table):
# stride 1 forward: dense 16->16 32x32 batch 64 2.2-4.9 -> 1.3, 32->32 16x16 2.5-4.1 ->
# 1.3-1.8, 64->64 8x8 (BLAS) 2.0 -> 1.3, 64->64 56x56 batch 8 (BLAS) 9.8 -> 7.4,
# 128->128 28x28 7.8 -> 7.6, but 256->256 14x14 7.3 -> 9.2 and 512 at 7x7 9.5 -> 13.7
# (wide layers stay on BLAS); grouped 32x4d 56x56 2.1-2.9 -> 1.4-1.9, 32x8d 28x28
# 1.8-2.5 -> 1.1, 32x16d 14x14 2.4 -> 1.3, 32x32d 7x7 2.6 -> 1.1, 8x14d 5.3-8.2 -> 3.3-3.7.
# Stride 2 (batch 64 / 8), forward / backward-input: 16->32 32x32 1.2 / 2.9 -> 1.2 / 1.6,
# 32->64 16x16 1.1 / 2.2 -> 1.1 / 1.6, 32x8d 56x56 5.3 / 7.7 -> 4.0 / 4.0, 32x16d 28x28
# 4.8 / 11.4 -> 3.0 / 4.5, 32x32d 14x14 6.6 / 9.8 -> 2.7 / 5.2, dense 64->128 56x56
# 5.5 / 5.8 -> 5.0 / 5.8; but 128->256 28x28 4.8 / 5.0 -> 5.3 / 7.5 (BLAS).
_TAPCONV_MAX_WORK = 64 * 9


def tap_geometry(g: ConvGeometry) -> str | None:
    """ "same" or "poly2" if the tap-table kernel takes this conv, else None. Not
    depthwise (one output per group would waste the output-channel tile) and not 1x1
    (the input already is the GEMM's matrix)."""
    if g.cpi * g.kh * g.kw > _TAPCONV_MAX_WORK or g.cpo < 2 or (g.kh, g.kw) == (1, 1):
        return None
    if g.stride == (1, 1) and all(
        d * (k - 1) == 2 * p for k, p, d in zip((g.kh, g.kw), g.padding, g.dilation)
    ):
        return "same"
    if (
        g.kh % 2 == 1
        and g.kw % 2 == 1
        and g.stride == (2, 2)
        and g.padding == ((g.kh - 1) // 2, (g.kw - 1) // 2)
        and g.dilation == (1, 1)
    ):
        return "poly2"  # odd kernels at stride 2 with "same" padding: 3x3 / 1, the 7x7 stem
    return None


# A grouped stride-2 conv on large planes: the direct tiles beat the tap kernel on the
# polyphase planes (whose four plane copies a group cost more than they save). Measured
# (2026-12-04 session 13, AMD Zen 4, 2 threads, float32, forward ms with 64 MB streamed
# through the caches before each call, tap_poly2 / direct): to 28x28 outputs - 256 in 32
# groups batch 2 3.17 / 1.70, batch 8 8.62 / 4.88, 128 in 32 groups batch 8 3.31 / 2.15,
# 512 in 16 groups batch 8 26.1 / 18.4, 1024 in 32 groups batch 2 12.1 / 9.3; to 56x56:
# 256 in 32 groups batch 8 39.9 / 18.0, 64 in 8 groups 9.52 / 4.77; to 20x20: 256 in 32
# groups batch 8 4.79 / 2.88. To 14x14 the tap kernel wins: 256 in 32 groups batch 8
# 1.57 / 1.78, 128 in 32 1.22 / 1.44, 512 in 16 5.39 / 6.22; to 7x7 1024 in 32 groups
# 0.86 / 1.60. Between 196 and 400 output pixels nothing was measured.
# On an Intel Xeon with two 512-bit FMA units a core (2026-12-05 session 15, 2 threads,
# forward ms, tap_poly2 / direct) the tap kernel wins them all: warm caches, to 28x28 256
# in 32 groups batch 8 2.62 / 4.07, batch 2 0.73 / 1.13, 128 in 32 groups batch 8 1.28 /
# 1.90, 224 in 8 groups 4.66 / 6.71, to 20x20 64 in 8 groups batch 4 0.21 / 0.34; with 64
# MB streamed through the caches before each call 5.07 / 6.38, 1.03 / 1.32, 1.82 / 2.48,
# to 20x20 128 in 32 groups 1.52 / 1.98. So the rule holds only where it was measured:
# AVX-512 executed on 256-bit datapaths (`AVX512_ON_256BIT_UNITS`).
_POLY2_DIRECT_MIN_PIXELS = 400


def _avx512_on_256bit_units() -> bool:
    """True on CPUs that run AVX-512 on 256-bit datapaths: AMD family 0x19 (Zen 4; Zen
    3 of the same family has no AVX-512). Read from /proc/cpuinfo; False where it cannot
    be read. Intel's AVX-512 cores and AMD's Zen 5 (family 0x1a) have 512-bit units."""
    try:
        with open("/proc/cpuinfo") as f:
            info = {}
            for line in f:
                key, _, value = line.partition(":")
                if not line.strip():
                    break  # the first processor's block
                info[key.strip()] = value.strip()
    except OSError:
        return False
    flags = info.get("flags", "").split()
    return (
        info.get("vendor_id") == "AuthenticAMD"
        and info.get("cpu family") == "25"
        and "avx512f" in flags
    )


# a hardware fact the rules below may depend on (tests set it to check both sides)
AVX512_ON_256BIT_UNITS = _avx512_on_256bit_units()


def use_direct_poly2(g: ConvGeometry) -> bool:
    """A grouped, direct-sized, stride-2 "poly2" conv with 4-32 input and output channels
    a group (the measured range) and output planes of >= `_POLY2_DIRECT_MIN_PIXELS`
    pixels, on a CPU running AVX-512 on 256-bit datapaths (`AVX512_ON_256BIT_UNITS`:
    AMD Zen 4, where it was measured faster; on Intel the tap kernel is): the forward
    takes DIRECT, not TAP_POLY2."""
    return (
        AVX512_ON_256BIT_UNITS
        and g.groups > 1
        and 4 <= g.cpi <= 32
        and 4 <= g.cpo <= 32
        and use_direct(g)
        and g.ho * g.wo >= _POLY2_DIRECT_MIN_PIXELS
    )


def can_lane_weight_grad(g: ConvGeometry) -> bool:
    """What `tapconv.lane_weight_grad` computes at all - 3x3 / pad 1 / dilation 1, stride
    1 or 2, tap-sized groups (any channel counts; output channels are padded to a
    vector) - where `use_lane_weight_grad` is the part of it where it measured fastest.
    Autotuning times it on all of it (`candidates`): on the Intel host it also won on
    8x14d, 16-channel groups of 32x32-56x56 planes and 8x28d (PERFLOG, session 17)."""
    return (
        g.stride in ((1, 1), (2, 2))
        and (g.kh, g.kw) == (3, 3)
        and g.padding == (1, 1)
        and g.dilation == (1, 1)
        and g.cpi * 9 <= _TAPCONV_MAX_WORK
    )


_LANE_MIN_CPI = 8  # fewer input channels a group: the lane kernel's copies dominate


def use_lane_weight_grad(g: ConvGeometry, itemsize: int) -> bool:
    """The output-channel-lane weight gradient (`tapconv.lane_weight_grad`) for 3x3 /
    pad 1 convs, stride 1 or 2, with >= 16 output channels per group (a float32 vector
    on AVX-512) whose zero-bordered input planes of one image and group are small
    (L1-sized at stride 1; stride 2 does 1/4 of the FMAs per copied value but still won
    at 115 KB). Session 8 made the kernel 1.05-1.5x faster and 16-31 outputs a group
    then won too (ms, masked / direct / Winograd -> lanes, same process): ResNeXt's 32
    groups of 16 at 14x14 batch 2 0.65 -> 0.48, batch 4 1.17 -> 0.71, batch 8 2.31 ->
    1.22, at 7x7 0.38 -> 0.26, 64 groups of 16 at 7x7 0.63 -> 0.42, stride 2 from 28x28
    1.62 -> 0.96 (direct) and from 14x14 0.64 -> 0.33; 32 groups of 20 at 14x14 1.00 ->
    0.88, of 24 (Winograd) 1.48 -> 1.12; dense 16->16 16x16 batch 8 0.153 vs 0.159 (a
    tie); 8 outputs a group still lose (32 groups of 8 at 28x28 0.42 -> 0.75). Earlier:
    Measured (2 threads, float32, ms, interleaved runs; old path -> lanes): stride 1:
    dense 32->32 16x16 batch 64 2.5 -> 1.7, 32->32 8x8 1.4 -> 0.56, 64->64 8x8 (BLAS)
    2.0 -> 1.8, ResNeXt 32x32d 7x7 batch 4 2.8 -> 1.2, 16 groups of 32 at 14x14 5.0 ->
    2.9; but 64->64 16x16 (83 KB of planes) 6.2 -> 6.6, 16->16 32x32 (one vector of
    channels: twice the copying per FMA) 1.8 -> 2.4, 64->64 56x56 9.8 -> 11.1. Stride 2:
    16->32 32x32 batch 64 3.1 -> 1.6, 32->64 16x16 2.8 -> 1.4, 32x32d 14x14 batch 4 4.8
    -> 1.8, 16 groups of 32 at 28x28 7.8 -> 4.6; but 64->128 56x56 (860 KB) 5.9 -> 8.2.

    And >= `_LANE_MIN_CPI` input channels a group: the per-image copies (grad_out
    transposed to pixel-major, x's zero-bordered planes) are amortised over cpi * 9
    FMAs per grad_out value, too few below 8. Session 11, AMD EPYC (Zen 4), 2 threads,
    ms, lanes vs the masked / direct kernel the plan falls back to: CIFAR's stem 3->16
    32x32 batch 64 1.36 vs 0.51; 1, 2, 4, 6, 8 -> 16 at 32x32 1.15 / 1.14 / 1.40 / 1.64
    / 1.83 vs - / 0.41 / 0.64 / 0.97 / 1.28; 3, 4 -> 32 at 16x16 0.45, 0.56 vs 0.35,
    0.45 (8 -> 32: lanes 0.83 vs 0.86, kept); stride 2 from 56x56 batch 8, 3, 4, 8 -> 64
    0.49, 0.56, 0.80 vs direct 0.42, 0.45, 0.73; one input channel (the depthwise plane
    kernel): 1 -> 16 32x32 batch 64 1.29 vs 0.40, 1 -> 32 28x28 1.04 vs 0.48, depthwise
    x16 32 -> 512 28x28 batch 8 2.29 vs 0.96, x64 8 -> 512 30x27 batch 3 1.07 vs 0.40."""
    scratch = g.cpi * (g.h + 2) * (g.w + 2) * itemsize
    return (
        can_lane_weight_grad(g)
        and g.cpo >= 16
        and g.cpi >= _LANE_MIN_CPI
        and scratch <= (48 if g.stride == (1, 1) else 128) * 1024
    )


# The masked direct weight-gradient kernel (`direct._same3x3_bwd_weight_task`) is used
# for 3x3 / stride 1 / pad 1 convs with at most this many input channels per group.
# (Its forward twin was replaced by the tap table, which keeps the accumulators in
# registers; for the weight gradient the masked dot products already do, and a
# register-blocked 2 x 9-tap version measured 1.1-1.2x slower.) Measured
# (1 thread, float32, batch 8, fwd / bwd-input / bwd-weight ms, tile -> masked):
# 32x4d conv2 6.0/6.1/4.8 -> 4.9/4.8/3.6, 32x8d conv3 4.5/4.5/4.9 -> 3.8/3.5/2.8,
# 8x14d 12.0/12.3/11.6 -> 11.8/11.9/11.4 (with 14 channels per group the tile copy is
# already amortised). Session 2, 2 threads, fwd+bwd total, limit 16 -> 32: 4x24d 20.3 ->
# 18.9 ms, 8x28d 16.0 -> 13.0 ms, dense 32->32 16x16 batch 64 9.4 -> 7.5 ms (also
# better than im2col + BLAS, 8.5 ms). Dense 64 -> 64 at 8x8 direct: 14.9 ms vs 6.5 ms
# with BLAS. Wider groups go to BLAS (`_DIRECT_MAX_WORK`, `_DIRECT_MAX_DENSE`).
_SAME3X3_MAX_CPI = 32


def wide_vectors(itemsize: int = 4) -> bool:
    """64-byte SIMD vectors (AVX-512: 32 vector registers), where the register tiles and
    most thresholds here were measured; False with 32-byte ones (AVX2: 16 registers)."""
    return _lanes(itemsize)[1] >= 64


def _masked_shape(g: ConvGeometry) -> bool:
    """What the masked 3x3 weight gradient computes: 3x3 same, at most
    `_SAME3X3_MAX_CPI` input channels per group."""
    return g.cpi <= _SAME3X3_MAX_CPI and is_same3x3(g)


def use_same3x3_masked(g: ConvGeometry, itemsize: int = 4) -> bool:
    """`_masked_shape`, with 64-byte vectors (with 32-byte ones the direct tile kernel:
    `use_direct_same`'s figures)."""
    return _masked_shape(g) and wide_vectors(itemsize)


# With 32-byte vectors (AVX2: 16 registers) the direct tile kernels, LLVM-vectorised
# scalar code whose register tiles the compiler fits to the target, beat the explicit
# tap-table kernels on "same" convs with large output planes, and the masked 3x3 weight
# gradient everywhere. Measured (session 18, AMD EPYC Zen 3, 2 threads, float32, ms, min
# of 9; forward tap_same / direct, input gradient transposed tap_same / direct, weight
# gradient same3x3_masked / direct): 32 groups of 4 56x56 batch 8 5.69 / 4.62, 6.60 /
# 4.82, 7.30 / 4.40; 32 groups of 8 28x28 3.03 / 2.80, 3.10 / 2.84, 6.37 / 3.06; 8 groups
# of 14 56x56 8.71 / 7.51, 8.70 / 7.28, 19.9 / 7.02; dense 16->16 32x32 batch 64 4.69 /
# 3.42, 4.84 / 3.58, 7.02 / 3.42; 16 groups of 16 56x56 19.6 / 17.3, 19.9 / 17.8, 43.5 /
# 15.0; but to 14x14 (32 groups of 16, batch 2) the tap kernel wins, 1.07 / 1.31, 1.00 /
# 1.37. Autotuning (`minires bench --autotune`) chose direct on the same geometries.
# With 64-byte vectors the tap kernels win (PERFLOG, sessions 5-16).
# Session 19 (same host class): those tap-kernel times included AVX2's microcoded
# masked store (~10 cycles) on every output vector, since made a plain store where all
# lanes are stored (`simd.vstorem`). That cost weighed most where each output takes the
# fewest FMAs, and the direct kernel's own fixed costs per output (bias fill, copy-out,
# one accumulator pass per input channel and kernel row) weigh most there too: with at
# most `_TAP_SAME_MAX_CPI_AVX2` input channels a group the tap kernel now wins. Measured
# (2 threads, ms, forward tap_same / direct, input gradient, three rounds): 32 groups of 4
# 56x56 batch 8 2.77 / 2.85, 2.73 / 2.97, 2.65 / 3.04 (input gradient 2.70-2.86 /
# 2.90-3.08); 32 groups of 4 28x28 0.68 / 0.77; 32 groups of 8 28x28 2.27 / 2.50, 3.30 /
# 3.83, 2.18 / 2.32 (input gradient 2.18-2.25 / 2.33-2.49); 8 groups of 8 56x56 a tie
# (2.17 / 2.17); but with more channels direct still wins: 8 groups of 14 56x56 6.8-7.0
# / 6.3-6.5, 4 groups of 24 9.0-9.5 / 8.3-8.6, dense 16->16 32x32 batch 64 2.7-2.9 /
# 2.4-2.5; 16 channels a group at 28x28 tie.
_TAP_SAME_MAX_CPI_AVX2 = 8


def use_direct_same(g: ConvGeometry, itemsize: int = 4) -> bool:
    """A direct-sized "same" conv (not depthwise) with more than
    `_TAP_SAME_MAX_CPI_AVX2` input channels a group and output planes of >=
    `_POLY2_DIRECT_MIN_PIXELS` pixels, with 32-byte vectors: the forward takes DIRECT,
    not TAP_SAME."""
    return (
        not wide_vectors(itemsize)
        and use_direct(g)
        and not is_depthwise3x3(g)
        and g.cpi > _TAP_SAME_MAX_CPI_AVX2
        and g.ho * g.wo >= _POLY2_DIRECT_MIN_PIXELS
    )


# Winograd F(2x2, 3x3) (`winograd.py`) does 2.25x fewer multiplies than any direct
# kernel but pays for two transforms and for lanes wasted at the end of each row of
# tiles (a vector holds tiles of one row). Measured (2026-12-03, Intel Xeon 2 cores,
# float32, forward ms, winograd vs the previous plan): 64->64 56x56 batch 8 4.9 vs 7.6
# (tap), 32->32 56x56 1.4 vs 1.8, 128->128 56x56 15.9 vs 31.7 (BLAS), 2x80d 56x56 14.3
# vs 29.8, 128->128 28x28 4.6 vs 7.8, 64->64 28x28 1.3 vs 1.9, 256->256 28x28 18.9 vs
# 26.1, 4x48d 28x28 3.2 vs 4.0, 32->32 32x32 batch 64 3.6 vs 4.8, 64->64 112x112 batch 2
# 4.8 vs 9.9; but 16->16 56x56 0.55 vs 0.58 (too few channels to pay the transforms),
# 16->16 32x32 batch 64 1.39 vs 1.30, 128->128 14x14 2.4 vs 2.2 and 256->256 14x14 8.6
# vs 7.3 (7 tiles in 16 lanes), 32->32 16x16 1.6 vs 1.3 (8 in 16), 64->64 8x8 2.4 vs
# 1.3, 512->512 14x14 54.8 vs 29.3 and 512 at 7x7 (the transformed weights of a task
# no longer stay in cache). The weight gradient (the backward of the same algorithm)
# wins and loses on the same geometries (weight-gradient ms, winograd vs previous plan):
# 64->64 56x56 5.3 vs 9.6 (BLAS), 32->32 56x56 1.6 vs 2.6 (masked), 128->128 56x56 23.5
# vs 33.9, 4x96d 56x56 51.4 vs 93.3, 128->128 28x28 6.6 vs 8.4, 64->64 28x28 1.9 vs 2.6,
# 32->32 28x28 0.65 vs 0.76, 4x48d 28x28 5.6 vs 6.6, 32->32 32x32 batch 64 4.7 vs 6.6,
# 64->64 112x112 batch 2 5.7 vs 11.6, 256->256 28x28 30.6 vs 31.2; but 16->16 56x56
# 0.99 vs 0.79, 8x14d 8.1 vs 5.0, 128->128 14x14 3.8 vs 2.7, 32->32 16x16 batch 64 2.4
# vs 1.7 (lane), 64->64 8x8 5.3 vs 2.1. Grouped (fwd / weight-gradient ms): 8x28d 28x28
# 2.7 / 3.6 vs 3.3 / 3.9 (tap / masked), 4x24d 56x56 3.9 / 5.4 vs 4.0 / 6.2; but 16
# channels per group lose (4x16d 56x56 2.0 / 3.8 vs 1.9 / 2.7, 8x16d 28x28 1.2 / 2.0
# vs 1.1 / 1.4), and 8x14d 56x56 3.3 / 6.5 vs 3.2 / 5.0.
_WINOGRAD_MIN_CPI = 24
_WINOGRAD_MAX_CPI = 256
_WINOGRAD_MIN_CPO = 16
_WINOGRAD_MIN_FILL = 0.75
# Rows of at most LANES/2 tiles go two to a vector (winograd.winograd_table), which
# made Winograd pay on small planes too (forward ms, winograd vs the plan without it,
# batch 8 unless said: 256->256 14x14 5.6 vs 7.7, 128->128 14x14 1.5 vs 2.3, 64->64
# 14x14 0.48 vs 0.60, 96->96 12x12 0.87 vs 1.09, 2 x 256 groups 14x14 10.9 vs 14.0,
# 32->32 16x16 batch 64 1.0 vs 1.3, 64->64 16x16 batch 64 2.9 vs 4.4; but 64->64 8x8
# batch 64 1.4 vs 1.2 (4 tiles in 8 lanes), 512->512 7x7 5.7 vs 2.6). Its weight
# gradient sums one partial dU (16 x cpi x cpo) per task over few tiles, which pays
# only with few channels: 64->64 16x16 batch 64 4.8 vs 6.1, 64->64 14x14 0.67 vs 0.83,
# 32->32 16x16 batch 64 1.5 vs 1.7; but 96->96 12x12 1.34 vs 1.15, 128->128 14x14 2.37
# vs 2.54 (a tie), 256->256 14x14 13.7 vs 9.5.
_WINOGRAD_TWO_ROW_MAX_CPI_WGRAD = 64
_WINOGRAD_MAX_TASK_BYTES = 4 << 20
# With 32-byte vectors (AVX2: its GEMM runs 8 x 1-vector passes) the weight gradient
# needs more input channels a group to pay for its transforms than the direct tiles.
# Measured (session 19, AMD EPYC Zen 3, 1 thread, float32, weight-gradient ms, winograd /
# direct, three rounds): 4 groups of 24 56x56 batch 8 21.8-23.3 / 14.2-14.8, 8 groups of
# 28 28x28 11.7-13.1 / 10.8-11.1, dense 32->32 56x56 6.7-7.3 / 6.2-6.5, but 8 groups of
# 32 28x28 12.3-13.6 / 14.0-14.2, 4 groups of 48 28x28 11.9-12.3 / 14.9-15.4, dense
# 64->64 56x56 19-20.5 / 23.6-24.1: below 32 input channels a group the direct-sized
# ones go direct (dense 32->32 at 56x56, a 7-12% loss, stays with Winograd).
_WINOGRAD_WGRAD_MIN_CPI_AVX2 = 32


@functools.cache
def _lanes(itemsize: int) -> tuple[int, int]:
    """(lanes of a SIMD vector of this item size, vector bytes) - looked up once (simd.py
    imports numba, so only when a geometry first reaches the Winograd rule)."""
    from .simd import VECTOR_BYTES

    return VECTOR_BYTES // itemsize, VECTOR_BYTES


def use_winograd(g: ConvGeometry, itemsize: int, pass_: str = "forward") -> bool:
    """Winograd F(2x2, 3x3) for 3x3 same convs with enough channels per group whose
    rows of 2x2 tiles fill at least 3/4 of the SIMD lanes that hold them (a vector holds
    one row of tiles, or two rows of at most LANES/2 tiles; the lane count depends on
    the dtype and the CPU). The weight gradient (`pass_` "backward_weight") takes the
    two-rows-a-vector planes only with at most 64 input channels per group, and with
    32-byte vectors no direct-sized conv of fewer than 32 input channels per group
    (`_winograd_wgrad_left_to_direct`)."""
    if pass_ == "backward_weight" and _winograd_wgrad_left_to_direct(g, itemsize):
        return False
    return _winograd_shape(g, itemsize, pass_)


def _winograd_wgrad_left_to_direct(g: ConvGeometry, itemsize: int = 4) -> bool:
    """With 32-byte vectors, a direct-sized conv of fewer than
    `_WINOGRAD_WGRAD_MIN_CPI_AVX2` input channels a group: its weight gradient goes to
    the direct tiles, whatever Winograd's shape rules say."""
    return (
        not wide_vectors(itemsize)
        and g.cpi < _WINOGRAD_WGRAD_MIN_CPI_AVX2
        and use_direct_weight_grad(g)
    )


def _winograd_shape(g: ConvGeometry, itemsize: int, pass_: str) -> bool:
    """`use_winograd` but for the AVX2 weight-gradient rule: the shapes it pays on."""
    if not (
        is_same3x3(g)
        and _WINOGRAD_MIN_CPI <= g.cpi <= _WINOGRAD_MAX_CPI
        and g.cpo >= _WINOGRAD_MIN_CPO
    ):
        return False
    nlanes, vector_bytes = _lanes(itemsize)
    tiles = (g.w + 1) // 2
    # a task transforms 16 x cpi x (its vectors) values into a buffer: keep it cache-
    # sized (very wide planes would otherwise take one huge buffer per thread)
    vectors = max(4, 2 * -(-tiles // nlanes))
    if 16 * g.cpi * vectors * vector_bytes > _WINOGRAD_MAX_TASK_BYTES:
        return False
    if tiles <= nlanes // 2:  # two rows of tiles a vector
        if pass_ == "backward_weight" and g.cpi > _WINOGRAD_TWO_ROW_MAX_CPI_WGRAD:
            return False
        return tiles / (nlanes // 2) >= _WINOGRAD_MIN_FILL
    return tiles / (-(-tiles // nlanes) * nlanes) >= _WINOGRAD_MIN_FILL


# Winograd F(2x2, 3x3) on channels-last tiles (`nhwc.py`): output channels in the
# lanes, so small planes waste no lanes (the layout above holds tiles in the lanes: a
# row of 4 tiles at 8x8 half-fills even a two-row vector). Its 16 products are GEMMs of
# (tiles x cpi) by (cpi x cpo) with 6 tiles x 4 vectors of output channels in registers.
# Measured (session 12, AMD EPYC Zen 4, 2 threads, float32, ms, the plan before ->
# winograd_nhwc, forward / input gradient / weight gradient): 64->64 8x8 batch 64 1.65 ->
# 1.29 / 1.55 -> 1.24 / 1.98 -> 1.62 (tap_same, lane), batch 8 0.24 -> 0.24 / 0.26 ->
# 0.21 / 0.33 -> 0.24, 6x6 batch 64 1.52 -> 0.67 / 1.57 -> 0.71 / 1.19 -> 0.73; 32->64
# 8x8 0.79 -> 0.70 / (cpo 32 for the input gradient: not taken) / 0.97 -> 0.74; 128->128
# 8x8 batch 16 1.83 -> 1.14 / 2.04 -> 1.03 / 2.05 -> 1.25 (im2col + BLAS / SIMD), 7x7
# batch 8 0.73 -> 0.66 / 0.94 -> 0.57 / 0.81 -> 0.65; 256->256 8x8 batch 16 6.70 -> 4.64
# / 7.18 -> 4.26 / 9.58 -> 6.12. The weight gradient also beats the tiles-in-lanes
# Winograd and the SIMD GEMM up to 14x14: 64->64 14x14 batch 8 0.60 -> 0.47, 12x12 batch
# 32 2.15 -> 1.41, 128->128 14x14 batch 8 4.08 -> 2.32, 256->256 14x14 batch 8 14.1 ->
# 9.2. Lost: fewer tiles than input channels or than 128 (256->256 7x7 batch 8 2.68 ->
# 2.90 forward, 128->128 7x7 batch 2 0.37 -> 0.40, 512->512 7x7 batch 2 3.1 -> 9.8: the
# transformed weights, 16 x cpi x cpo, stream from memory for few tiles), 48 output
# channels in a 64-lane panel (forward 0.87 -> 1.12), 16 input channels (64->16 input
# gradient 0.41 -> 1.11), and forward / input gradient on 14x14-16x16 planes where the
# other Winograd takes them (64->64 16x16 batch 64 3.51 -> 5.62).
_WINOGRAD_NHWC_MIN_CPI = 32
_WINOGRAD_NHWC_MAX_CHANNELS = 256
_WINOGRAD_NHWC_MIN_FILL = 7 / 8
_WINOGRAD_NHWC_MIN_TILES = 128
_WINOGRAD_NHWC_MAX_PLANE_TILES = 49  # 14x14


def use_winograd_nhwc(g: ConvGeometry, itemsize: int) -> bool:
    """Winograd on channels-last tiles (`nhwc.py`) for 3x3 same convs on planes of at
    most 14x14 with 32-256 input and at most 256 output channels per group, the output
    channels filling >= 7/8 of the 4-vector panels that hold them, and at least
    max(128, cpi) tiles (the transformed weights are read once per task)."""
    if not (
        is_same3x3(g)
        and _WINOGRAD_NHWC_MIN_CPI <= g.cpi <= _WINOGRAD_NHWC_MAX_CHANNELS
        and g.cpo <= _WINOGRAD_NHWC_MAX_CHANNELS
    ):
        return False
    panel = 4 * _lanes(itemsize)[0]
    if g.cpo / (-(-g.cpo // panel) * panel) < _WINOGRAD_NHWC_MIN_FILL:
        return False
    plane_tiles = ((g.h + 1) // 2) * ((g.w + 1) // 2)
    if plane_tiles > _WINOGRAD_NHWC_MAX_PLANE_TILES:
        return False
    return g.n * plane_tiles >= max(_WINOGRAD_NHWC_MIN_TILES, g.cpi)


def weights_dominate(g: ConvGeometry) -> bool:
    """At least half as many weights as input-gradient elements: the transposed input
    gradient's per-call copy of the flipped weights then costs more than `COL2IM_GEMM`'s
    col2im pass (which reads W^T as it is). Measured (2026-12-03, 2 threads, float32,
    input-gradient ms, transposed:im2col_gemm vs col2im_gemm): 512->512 7x7 batch 2 3.8
    vs 2.7, 512->512 14x14 batch 2 8.8 vs 7.3, 256->256 14x14 batch 8 8.0 vs 7.7,
    512->512 28x28 batch 8 111 vs 107, 64->64 5x5 20x20 batch 4 2.1 vs 1.9; but 128->128
    8x8 batch 64 6.0 vs 7.1, 96->96 12x12 batch 8 1.18 vs 1.25, 80->72 20x20 batch 8 1.89
    vs 1.88 (activations dominate)."""
    weights = g.c_out * g.cpi * g.kh * g.kw
    return 2 * weights >= g.n * g.c_in * g.h * g.w


# The SIMD GEMM (`gemm.py`) folds the batch into the columns of one GEMM per group,
# reads the weights in place (W, or W^T for the input gradient) and splits its columns
# (and, when they are few, the rows of the weights) between the threads; the BLAS path
# runs one one-thread OpenBLAS GEMM per image, packing the weights for each. Measured
# (2026-12-03, Intel Xeon 2 cores, 2 threads, float32, ms BLAS vs SIMD, same process,
# interleaved; forward / input gradient): batch 1, where BLAS runs one image on one
# thread: 256->256 56x56 3.04 vs 1.69 / 2.88 vs 1.74, 512->2048 7x7 1.12 vs 0.70 / 1.27
# vs 0.96, 1024->256 14x14 0.83 vs 0.61 / 0.83 vs 0.64, but small convs lose (256->256
# 8x8 0.10 vs 0.13); small planes with more images: 2048->512 7x7 batch 2 1.32 vs 1.22
# / 1.31 vs 1.60, batch 8 4.60 vs 3.56 / 4.56 vs 4.81, 256->256 7x7 batch 8 0.40 vs 0.28
# / 0.38 vs 0.32, 64->64 8x8 batch 32 0.37 vs 0.16 / 0.35 vs 0.16; 14x14 / 16x16 with
# batch >= 2: 256->256 14x14 batch 2 0.39 vs 0.34 / 0.39 vs 0.34, 1024->256 14x14 batch
# 8 3.44 vs 3.32 / 3.47 vs 4.57 (the input gradient reads W^T's rows 8 floats at a
# time, one cache line per k: it loses with wide weights), 2048->512 14x14 batch 2 3.25
# vs 3.53 / 3.14 vs 5.05; larger planes with 2+ images tie or lose (256->256 28x28 batch
# 8 3.24 vs 3.45, 64->256 56x56 batch 4 2.00 vs 3.73) and stay on BLAS.
_SIMD_MIN_MACS = 1 << 22  # multiply-adds of the whole conv: below, call overheads rule
_SIMD_MIN_MACS_BATCH1 = {"forward": 1 << 23, "backward_input": 1 << 24}
_SIMD_SMALL_PLANE = 64  # pixels
_SIMD_MEDIUM_PLANE = 256
# wider weights stream from memory in a network (cold caches: 2048->512 7x7 batch 2
# forward 1.70 vs 1.69 ms cold; no faster with warm caches at 14x14 and up)
_SIMD_MAX_WEIGHTS_FORWARD = 1 << 20
_SIMD_MAX_WEIGHTS_INPUT_GRAD = 1 << 18
# The weight gradient (`gemm.conv1x1_weight_grad`: grad_out's rows broadcast in place,
# x^T packed by strided gathers, each task summing its tiles over the whole batch; the
# BLAS path sums one GEMM per image in partials). Weight-gradient ms, BLAS vs SIMD,
# same runs: 2048->512 7x7 batch 2 2.07 vs 1.00, 512->2048 7x7 batch 2 2.15 vs 1.03,
# 1024->256 14x14 batch 2 1.19 vs 0.94, 64->256 56x56 batch 8 6.35 vs 5.55, 512->128 28x28
# batch 8 3.93 vs 3.76, 256->256 56x56 batch 1 3.33 vs 2.09, 64->64 8x8 batch 64 1.04 vs
# 0.40, 16->16 8x8 batch 2 0.082 vs 0.019; but 16->32 32x32 batch 64 1.18 vs 1.57 (16
# input channels fill half of a 32-lane panel), 256->128 56x56 batch 8 8.07 vs 8.52,
# 256->64 56x56 batch 8 4.45 vs 4.61, and in the benchmark's separable layer 188->188
# 56x56 batch 8 10.0 vs 13.3-14.8: a task owned a panel of output columns for the whole
# batch, so each of the K/32 panel tasks streamed all of grad_out (19 MB there) from
# memory. Beyond 8 MB of x + grad_out the reduction is now cut into 8 fixed chunks
# (`gemm.weight_grad_chunks`, partials added in order), and the SIMD path wins there too
# (BLAS vs SIMD, warm / cold caches): 256->128 56x56 batch 8 7.89 vs 7.26 / 8.30 vs 7.93,
# 188->188 8.96 vs 7.85 / 9.19 vs 8.62, 64->256 5.22 vs 3.76 / 5.64 vs 5.01, 256->64
# 4.67 vs 4.53 / 5.30 vs 5.12, 128->512 28x28 4.07 vs 3.21 / 4.59 vs 3.66.
_SIMD_TINY_MACS = 1 << 20
_SIMD_WGRAD_MIN_FILL = 0.75
# All of the above was measured with 64-byte vectors (AVX-512), where the SIMD GEMM's 8 x
# 2-vector micro-kernel keeps its 16 accumulators in 32 registers. With 32-byte vectors
# (AVX2: 16 registers, the micro-kernel run as two 8 x 1 halves) OpenBLAS's Haswell
# kernels win nearly everywhere. Measured (session 18, AMD EPYC Zen 3, 2 threads,
# float32, ms, min of 11, SIMD vs BLAS, forward / input gradient / weight gradient):
# 1024->512 14x14 batch 2 7.24 vs 5.00 / - / 7.53 vs 3.96, 512->1024 14x14 8.78 vs 4.81 /
# - / 7.11 vs 5.44, 2048->1024 7x7 weight gradient 10.35 vs 5.97, 256->128 56x56 batch 8
# 4.90 vs 2.70, batch 1: 1024->256 14x14 1.33 vs 0.65 / 1.51 vs 0.66 / 1.06 vs 0.76,
# 512->2048 7x7 1.83 vs 0.88 / 1.99 vs 0.89 / 1.35 vs 0.72, 256->240 17x17 0.55 vs 0.32;
# weight gradients of small planes: 256->256 7x7 batch 8 0.60 vs 0.49, 128->256 8x8
# batch 32 1.46 vs 1.04, 64->64 16x16 batch 16 0.48 vs 0.32, but 32->64 8x8 batch 64
# 0.34 vs 0.47 and 128->72 6x6 batch 16 0.20 vs 0.37 (a few megaflops: call overheads).
# im2col + SIMD vs BLAS weight gradients tie or lose: 512->512 3x3 7x7 batch 2 5.48 vs
# 5.50, 1024->2048 1x1 stride 2 5.06 vs 4.66. So there: BLAS, but for tiny weight
# gradients (`_SIMD_TINY_MACS`).


def simd_gemm_beats_blas(itemsize: int = 4) -> bool:
    """Whether the SIMD GEMM's rules apply on this CPU: its vectors are 64 bytes (the
    rules' measurements); with 32-byte vectors BLAS (see above)."""
    return wide_vectors(itemsize)


def use_pointwise_simd(g: ConvGeometry, pass_: str = "forward", itemsize: int = 4) -> bool:
    """The SIMD GEMM (`gemm.py`) for a dense 1x1 / stride 1 / pad 0 conv.

    `pass_` "forward", "backward_input" (asked with the transposed conv of the input
    gradient) or "backward_weight". Forward and input gradient: one image with enough
    multiply-adds, or planes of at most 64 pixels (forward: up to 256 pixels with fewer
    than 2^20 weights; input gradient: fewer than 2^18 weights) with enough
    multiply-adds. Weight gradient: when the input channels fill >= 3/4 of the vectors
    that hold them (or the conv is tiny). With 32-byte vectors (AVX2) only tiny weight
    gradients (`simd_gemm_beats_blas`).
    Else one BLAS GEMM per image (measurements above)."""
    if not is_pointwise(g) or g.groups != 1:
        return False
    pixels = g.h * g.w
    weights = g.cpi * g.cpo
    macs = weights * g.n * pixels
    if pass_ == "backward_weight" and macs < _SIMD_TINY_MACS:
        return True
    if not simd_gemm_beats_blas(itemsize):
        return False
    if pass_ == "backward_weight":
        width = 2 * _lanes(itemsize)[0]  # a panel of k: two vectors
        return g.cpi / (-(-g.cpi // width) * width) >= _SIMD_WGRAD_MIN_FILL
    if g.n == 1:
        return macs >= _SIMD_MIN_MACS_BATCH1[pass_]
    if macs < _SIMD_MIN_MACS:
        return False
    if pass_ == "forward":
        return pixels <= _SIMD_MEDIUM_PLANE and weights < _SIMD_MAX_WEIGHTS_FORWARD
    return pixels <= _SIMD_SMALL_PLANE and weights < _SIMD_MAX_WEIGHTS_INPUT_GRAD


# The same GEMM after an im2col of the whole batch (`IM2COL_SIMD`, weight gradient; the
# column matrix is the input of an equivalent 1x1 conv with C_in*kH*kW channels on the
# output plane, so `use_pointwise_simd` decides on that conv, for output planes of at
# most 256 pixels). Measured (warm caches, ms, im2col + BLAS vs im2col + SIMD, forward /
# weight gradient): 512->512 3x3 7x7 batch 2 4.54 vs 3.68 /
# 6.05 vs 2.85, batch 4 7.54 vs 5.68 / 10.45 vs 4.78, 512->512 3x3 stride 2 14x14 5.19
# vs 4.00 / 7.11 vs 3.23, 1024->2048 1x1 stride 2 14x14 4.09 vs 2.43 / 5.09 vs 2.12,
# 512->1024 1x1 stride 2 28x28 2.23 vs 2.05 / 2.51 vs 2.11, 256->256 3x3 14x14 weight
# gradient 3.10 vs 2.25, 256->256 3x3 stride 2 28x28 3.89 vs 4.23 / 4.46 vs 3.70; but
# larger output planes tie or lose: 128->128 3x3 stride 2 56x56 3.15 vs 3.14 / 3.13 vs
# 3.30, the 7x7 stem 3->64 at 224x224 5.66 vs 5.19 / 5.70 vs 6.79; and small convs
# (80->72 3x3 6x9 batch 3, 2^23 multiply-adds: 0.23 vs 0.37 / 0.25 vs 0.28), while from
# 2^24 on they won (128->128 3x3 stride 2 16x16 batch 16, 2^27: 2.79 vs 2.52 / 3.53 vs
# 2.76). With cold caches (a 64 MB buffer read between calls), the forward ties (512->512
# 3x3 7x7 3.51 vs 3.61, stride 2 14x14 3.73 vs 3.92), and so does the whole ResNet-50
# step (the same step with the forward on BLAS and on im2col + SIMD, alternating in one
# process: batch 2 422.8 vs 420.3 ms, batch 4 710.7 vs 708.2): forward kept on BLAS; the
# weight gradient still wins cold (6.86 vs 2.48, 7.06 vs 2.79, 1024->2048 1x1 stride 2
# 6.08 vs 2.24).
_IM2COL_SIMD_MAX_PIXELS = 256
_IM2COL_SIMD_MIN_MACS = 1 << 24


def use_im2col_simd(g: ConvGeometry, pass_: str = "forward", itemsize: int = 4) -> bool:
    """im2col + the SIMD GEMM's weight gradient for a dense conv that is not a stride-1
    unpadded 1x1 (those take `POINTWISE_SIMD`): output planes of at most 256 pixels, at
    least 2^24 multiply-adds, where the equivalent 1x1 conv (C_in*kH*kW channels, Ho x
    Wo) would take it. Only `pass_` "backward_weight": the forward measured faster in
    isolation (warm caches) but tied in a network (below)."""
    if pass_ != "backward_weight" or g.groups != 1 or is_pointwise(g):
        return False
    if g.ho * g.wo > _IM2COL_SIMD_MAX_PIXELS:
        return False
    cols = ConvGeometry(g.n, g.c_in * g.kh * g.kw, g.ho, g.wo, g.c_out, 1, 1, (1, 1),
                        (0, 0), (1, 1), 1)  # fmt: skip
    if cols.cpi * cols.cpo * g.n * g.ho * g.wo < _IM2COL_SIMD_MIN_MACS:
        return False  # small convs: the whole-batch im2col's call costs rule
    return use_pointwise_simd(cols, pass_, itemsize)


# --------------------------------------------------------------------------- the planner


def _gemm(g: ConvGeometry) -> Algorithm:
    return Algorithm.POINTWISE_GEMM if is_pointwise(g) else Algorithm.IM2COL_GEMM


# Families of algorithms whose use is a speed decision (a threshold), not a correctness
# one: `plan(..., disabled=...)` can switch each off, and the planner then picks what it
# would pick with that threshold at zero. Autotuning (autotune.py) times these choices.
FAMILIES = ("winograd", "tap", "direct", "lane", "same3x3", "col2im", "simd_gemm")


def _plan_forward(
    g: ConvGeometry, itemsize: int, off=frozenset(), pass_: str = "forward"
) -> Algorithm:
    if "winograd" not in off and use_winograd(g, itemsize):
        return Algorithm.WINOGRAD
    if "winograd" not in off and use_winograd_nhwc(g, itemsize):
        return Algorithm.WINOGRAD_NHWC
    tap = None if "tap" in off else tap_geometry(g)
    if tap == "poly2" and "direct" not in off and use_direct_poly2(g):
        return Algorithm.DIRECT
    if tap == "same" and "direct" not in off and use_direct_same(g, itemsize):
        return Algorithm.DIRECT
    if tap is not None:
        return Algorithm.TAP_SAME if tap == "same" else Algorithm.TAP_POLY2
    if "direct" not in off and use_direct(g):
        return Algorithm.DEPTHWISE3X3 if is_depthwise3x3(g) else Algorithm.DIRECT
    if "simd_gemm" not in off and use_pointwise_simd(g, pass_):
        return Algorithm.POINTWISE_SIMD
    return _gemm(g)


# The stride-2 input gradient (tapconv.stride2_backward_input) holds both column phases
# of a row phase in registers over all of a group's output channels, so it takes any
# channel count. Dense convs go to col2im + one GEMM (BLAS blocks the weights for the
# cache) where the weights dominate (`weights_dominate`: small planes, weights streamed
# from beyond L2 for few pixels each) or where the kernel would fill under half its
# lanes (`stride2_lane_use`: rows of grad_out shorter than half a vector, 5x5 planes
# and smaller). Measured (2026-12-05 session 16, Intel Xeon 2 cores, float32,
# input-gradient ms, tap_stride2 / col2im_gemm): dense 512->512 to 7x7 batch 2 4.85 /
# 2.63, 256->256 to 7x7 batch 8 4.05 / 3.02, 64->64 to 2x2 batch 16 0.27 / 0.23,
# 256->256 to 14x14 batch 2 2.15 / 2.20 (weights dominate); 128->64 to 5x5 batch 16 0.96
# / 0.80, batch 64 3.60 / 3.07 (39% of the lanes); 128->128 to 28x28 batch 2 2.10 /
# 2.59, batch 1 1.15 / 1.51, 64->128 to 28x28 batch 4 2.03 / 2.45, CIFAR 32->64 to 4x4
# batch 64 0.46 / 0.78 (half the lanes), 16->32 to 16x16 0.60 / 2.37; grouped and
# depthwise, always faster: ResNeXt's 1024 in 32 groups to 7x7 batch 2 0.65 / 0.98,
# batch 8 2.01 / 3.31, 2048 in 64 groups batch 2 1.26 / 1.89, 256 in 32 groups to 28x28
# batch 2 0.35 / 1.36, depthwise 128 to 28x28 batch 8 0.54 / 7.67 (direct_scatter 2.11).
_STRIDE2_MIN_LANE_USE = 0.5


def stride2_lane_use(g: ConvGeometry, itemsize: int) -> float:
    """The share of SIMD lanes holding grad_out pixels in the stride-2 input gradient:
    each row of grad_out in segments of half a vector, two segments a vector, vectors
    in pairs (`tapconv._stride2_tables`)."""
    nlanes, _ = _lanes(itemsize)
    half = nlanes // 2
    segments = g.ho * -(-g.wo // half)
    vectors = -(-segments // 4) * 4 // 2  # pairs of vectors of two segments
    return g.ho * g.wo / (vectors * nlanes)


def _plan_backward_input(g: ConvGeometry, itemsize: int, off=frozenset()) -> Algorithm:
    direct = "direct" not in off and use_direct(g)
    if g.stride == (1, 1) and (min(g.flipped_padding) >= 0 or direct):
        # a negative padding (a crop) only the direct kernels take
        forward = _plan_forward(g.transposed(), itemsize, off, "backward_input")
        if forward == Algorithm.IM2COL_GEMM and "col2im" not in off and weights_dominate(g):
            return Algorithm.COL2IM_GEMM
        return Algorithm("transposed:" + forward.value)
    if "tap" not in off and is_stride2_3x3(g):
        lanes_used = stride2_lane_use(g, itemsize)
        dense_gemm = g.groups == 1 and (weights_dominate(g) or lanes_used < _STRIDE2_MIN_LANE_USE)
        if dense_gemm and "col2im" not in off:
            return Algorithm.COL2IM_GEMM
        return Algorithm.TAP_STRIDE2
    return Algorithm.DIRECT_SCATTER if direct else Algorithm.COL2IM_GEMM


def _plan_backward_weight(g: ConvGeometry, itemsize: int, off=frozenset()) -> Algorithm:
    if "winograd" not in off and use_winograd_nhwc(g, itemsize):
        return Algorithm.WINOGRAD_NHWC
    if "winograd" not in off and use_winograd(g, itemsize, "backward_weight"):
        return Algorithm.WINOGRAD
    if "lane" not in off and use_lane_weight_grad(g, itemsize):
        return Algorithm.LANE
    if "direct" not in off and use_direct_weight_grad(g):
        if is_depthwise3x3(g):
            return Algorithm.DEPTHWISE3X3
        if "same3x3" not in off and use_same3x3_masked(g, itemsize):
            return Algorithm.SAME3X3_MASKED
        return Algorithm.DIRECT
    if "simd_gemm" not in off and use_pointwise_simd(g, "backward_weight", itemsize):
        return Algorithm.POINTWISE_SIMD
    if "simd_gemm" not in off and use_im2col_simd(g, "backward_weight", itemsize):
        return Algorithm.IM2COL_SIMD
    return _gemm(g)


def plan(
    pass_: str,
    geometry: ConvGeometry,
    dtype=np.float32,
    finite: bool = True,
    disabled: frozenset[str] = frozenset(),
) -> Algorithm:
    """The algorithm kernels.jit runs for one pass of a conv (the table at the top of
    this module).

    pass_: "forward", "backward_input" or "backward_weight"; geometry: the conv's
    `ConvGeometry`; dtype: float32 or float64. finite=False gives the path for
    non-finite weights (forward, backward_input) or for a non-finite weight gradient
    computed by a fast kernel (backward_weight): the GEMM paths, whose sums are the
    reference's. disabled: families of `FAMILIES` switched off (the plan as if their
    thresholds were zero; the alternatives autotuning times).

    The answer is kept per arguments (a conv asks ~6 times a step, 2-5 us each: ~1% of
    a ResNet-20 step); after changing a threshold of this module, `clear_plans()`.
    """
    return _plan(pass_, geometry, np.dtype(dtype).itemsize, bool(finite), frozenset(disabled))


@functools.lru_cache(maxsize=4096)
def _plan(
    pass_: str, geometry: ConvGeometry, itemsize: int, finite: bool, disabled: frozenset[str]
) -> Algorithm:
    if pass_ == "forward":
        alg = _plan_forward(geometry, itemsize, disabled)
        if not finite and alg not in EXACT_ALGORITHMS:
            alg = Algorithm.IM2COL_GEMM
        return alg
    if pass_ == "backward_input":
        alg = _plan_backward_input(geometry, itemsize, disabled)
        return alg if finite or alg in EXACT_ALGORITHMS else Algorithm.COL2IM_GEMM
    if pass_ == "backward_weight":
        if not finite:
            return _gemm(geometry)
        return _plan_backward_weight(geometry, itemsize, disabled)
    raise ValueError(f"pass_ must be one of {PASSES}, got {pass_!r}")


def clear_plans() -> None:
    """Forget the plans `plan` kept (after a threshold of this module changed)."""
    _plan.cache_clear()


def _simd_gemm_left_to_blas(g: ConvGeometry) -> bool:
    """A dense 1x1 conv, with 32-byte vectors: the SIMD GEMM can compute it, the rules
    give it to BLAS (`simd_gemm_beats_blas`), autotuning may still find it faster."""
    return not simd_gemm_beats_blas() and is_pointwise(g) and g.groups == 1


def _im2col_simd_left_to_blas(g: ConvGeometry) -> bool:
    """Any other dense conv's weight gradient, likewise (im2col + the SIMD GEMM)."""
    return not simd_gemm_beats_blas() and not is_pointwise(g) and g.groups == 1


def _masked_left_to_direct(g: ConvGeometry) -> bool:
    """The masked 3x3 weight gradient's geometries with 32-byte vectors, where the rules
    give them to the direct kernel (`use_same3x3_masked`)."""
    return (
        not wide_vectors()
        and use_direct_weight_grad(g)
        and not is_depthwise3x3(g)
        and _masked_shape(g)
    )


def _winograd_left_to_direct(g: ConvGeometry) -> bool:
    """The Winograd weight gradient's shapes that the rules give to the direct tiles
    with 32-byte vectors (`_winograd_wgrad_left_to_direct`)."""
    return _winograd_wgrad_left_to_direct(g) and _winograd_shape(g, 4, "backward_weight")


# Algorithms whose rule in the plan (where they measured fastest) is narrower than what
# they compute, with the test of what they compute: `candidates` adds them wherever they
# can run, so autotuning measures them there too.
BEYOND_THE_RULES = {
    ("backward_weight", Algorithm.LANE): can_lane_weight_grad,
    ("backward_weight", Algorithm.SAME3X3_MASKED): _masked_left_to_direct,
    ("backward_weight", Algorithm.WINOGRAD): _winograd_left_to_direct,
    ("forward", Algorithm.POINTWISE_SIMD): _simd_gemm_left_to_blas,
    ("backward_input", Algorithm.TRANSPOSED_POINTWISE_SIMD): _simd_gemm_left_to_blas,
    ("backward_weight", Algorithm.POINTWISE_SIMD): _simd_gemm_left_to_blas,
    ("backward_weight", Algorithm.IM2COL_SIMD): _im2col_simd_left_to_blas,
}


def candidates(pass_: str, geometry: ConvGeometry, dtype=np.float32) -> list[Algorithm]:
    """The algorithms that can compute this pass (finite weights): the plan with every
    subset of `FAMILIES` switched off, then those of `BEYOND_THE_RULES` that can run on
    this geometry; the default plan first, no duplicates."""
    out = []
    for mask in range(1 << len(FAMILIES)):
        off = frozenset(f for i, f in enumerate(FAMILIES) if mask >> i & 1)
        alg = plan(pass_, geometry, dtype, disabled=off)
        if alg not in out:
            out.append(alg)
    for (p, alg), can_run in BEYOND_THE_RULES.items():
        if p == pass_ and alg not in out and can_run(geometry):
            out.append(alg)
    return out


def plan_for(x_shape, weight_shape, stride, padding, dilation, groups, dtype=np.float32):
    """{"forward", "backward_input", "backward_weight"} -> the `Algorithm` each pass of
    this conv takes with finite weights. x_shape (N, C_in, H, W), weight_shape (C_out,
    C_in/groups, kH, kW); stride, padding, dilation: ints or pairs. With autotuning on
    (`MINIRES_AUTOTUNE=1`), a pass already tuned for this geometry gives its tuned
    choice."""
    g = ConvGeometry.of(x_shape, weight_shape, stride, padding, dilation, groups)
    from . import autotune

    return {p: autotune.cached(p, g, dtype) or plan(p, g, dtype) for p in PASSES}


# --------------------------------------------------------------------------- last plan

_last = threading.local()


def record(pass_: str, algorithm: Algorithm) -> None:
    """Note that this thread's last conv `pass_` ran `algorithm` (for `last_plan`)."""
    d = getattr(_last, "plan", None)
    if d is None:
        d = _last.plan = {}
    d[pass_] = algorithm


def last_plan() -> dict[str, Algorithm]:
    """pass -> the algorithm that the last conv call of that pass on this thread ran
    (after the non-finite fallbacks); passes not run yet on this thread are absent."""
    return dict(getattr(_last, "plan", None) or {})
