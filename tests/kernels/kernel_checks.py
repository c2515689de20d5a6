"""Shared checks of the kernel tests (kernels.jit against kernels.reference)."""

from __future__ import annotations

import numba
import numpy as np


def assert_close(got, want, dtype):
    """~1e-5 relative (float32) / 1e-12 (float64), relative to the array's scale; shapes
    and dtypes must match."""
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape
    assert got.dtype == want.dtype
    tol = 2e-5 if np.dtype(dtype) == np.float32 else 1e-12
    scale = max(1.0, float(np.abs(want).max(initial=0.0)))
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol * scale)


def with_threads(k, fn):
    """fn() with the Numba kernels on k threads."""
    old = numba.get_num_threads()
    numba.set_num_threads(k)
    try:
        return fn()
    finally:
        numba.set_num_threads(old)


def serial_and_parallel(fn):
    """(fn() on 1 thread, fn() on 2 threads, or 1 where only one is configured)."""
    return with_threads(1, fn), with_threads(min(2, numba.config.NUMBA_NUM_THREADS), fn)


def conv_passes(x, wt, go, args, bias=None):
    """A function computing the three conv passes of the active kernels.jit."""
    import minires.kernels.jit as J

    def run():
        return (
            J.conv2d_forward(x, wt, bias, *args),
            J.conv2d_backward_input(go, wt, x.shape, *args),
            J.conv2d_backward_weight(x, go, wt.shape, *args),
        )

    return run


def conv_case(n, c, h, w, cout, k, s=1, p=0, d=1, g=1):
    """A conv geometry as a dict of pairs (the form `conv_inputs` takes)."""
    return dict(n=n, c=c, h=h, w=w, cout=cout, k=(k, k), s=(s, s), p=(p, p), d=(d, d), g=g)


# One geometry per dispatch path of kernels.jit.conv: name -> (case, (forward,
# backward-input, backward-weight) algorithms as the planner (`kernels.jit.plan_for`)
# names them; "T:" stands for "transposed:"). Together they hit every algorithm of every
# pass (asserted in test_planner.py).
_T = "transposed:"
CONV_PATH_CASES = {
    "winograd": (conv_case(1, 32, 4, 28, 32, 3, p=1),
                 ("winograd", "T:winograd", "winograd")),
    "winograd_two_rows": (conv_case(2, 32, 9, 14, 32, 3, p=1),  # 7 tiles a row
                          ("winograd", "T:winograd", "winograd")),
    # 5 tiles a row fill under 3/4 of 4, 8 or 16 lanes: not the tiles-in-lanes Winograd
    # whatever the dtype and CPU; 140 tiles
    "winograd_nhwc": (conv_case(8, 64, 7, 10, 64, 3, p=1),
                      ("winograd_nhwc", "T:winograd_nhwc", "winograd_nhwc")),
    "dense3x3": (conv_case(2, 8, 7, 9, 8, 3, p=1),
                 ("tap_same", "T:tap_same", "same3x3_masked")),
    "dense5x5": (conv_case(2, 4, 7, 6, 6, 5, p=2),
                 ("tap_same", "T:tap_same", "direct")),
    "stride2": (conv_case(2, 8, 17, 16, 8, 3, s=2, p=1),  # 9x8 outputs: the tap input grad
                ("tap_poly2", "tap_stride2", "direct")),
    "grouped": (conv_case(2, 16, 7, 6, 16, 3, p=1, g=4),
                ("tap_same", "T:tap_same", "same3x3_masked")),
    "depthwise": (conv_case(2, 6, 5, 20, 6, 3, p=1, g=6),
                  ("depthwise3x3", "T:depthwise3x3", "depthwise3x3")),
    "depthwise_narrow": (conv_case(2, 6, 7, 9, 6, 3, p=1, g=6),
                         ("depthwise3x3", "T:depthwise3x3", "depthwise3x3")),
    "depthwise_x2": (conv_case(2, 3, 7, 9, 6, 3, p=1, g=3),
                     ("tap_same", "T:direct", "depthwise3x3")),
    "depthwise_stride2": (conv_case(2, 4, 9, 6, 4, 3, s=2, p=1, g=4),
                          ("direct", "tap_stride2", "direct")),
    "depthwise_stride2_unpadded": (conv_case(2, 4, 9, 6, 4, 3, s=2, g=4),
                                   ("direct", "direct_scatter", "direct")),
    "dilated": (conv_case(1, 10, 8, 7, 10, 3, p=1, d=2, g=5),
                ("direct", "T:direct", "direct")),
    "crop": (conv_case(2, 4, 9, 8, 4, 3, p=3, g=2),
             ("direct", "T:direct", "direct")),
    "lanes": (conv_case(2, 32, 6, 10, 32, 3, p=1),
              ("tap_same", "T:tap_same", "lane")),
    "lanes_stride2": (conv_case(4, 32, 16, 15, 32, 3, s=2, p=1),  # activations dominate
                      ("tap_poly2", "tap_stride2", "lane")),
    "wide": (conv_case(6, 80, 16, 20, 72, 3, p=2, d=2),  # dilated: no Winograd on any CPU
             ("im2col_gemm", "T:im2col_gemm", "im2col_gemm")),
    "wide_weights": (conv_case(3, 80, 6, 9, 72, 3, p=1),
                     ("im2col_gemm", "col2im_gemm", "im2col_gemm")),
    "wide_grouped": (conv_case(2, 160, 5, 9, 32, 3, p=1, g=2),
                     ("im2col_gemm", "T:tap_same", "im2col_gemm")),
    "pointwise": (conv_case(3, 128, 4, 5, 80, 1),
                  ("pointwise_gemm", "T:pointwise_gemm", "pointwise_simd")),
    "pointwise_narrow": (conv_case(64, 3, 16, 16, 64, 1),  # 3 channels: a few lanes of a panel
                         ("pointwise_gemm", "T:pointwise_gemm", "pointwise_gemm")),
    "pointwise_simd": (conv_case(16, 128, 5, 7, 72, 1),  # 35-pixel images: vectors span two
                       ("pointwise_simd", "T:pointwise_simd", "pointwise_simd")),
    "pointwise_simd_image": (conv_case(1, 256, 17, 17, 240, 1),
                             ("pointwise_simd", "T:pointwise_simd", "pointwise_simd")),
    "im2col_simd": (conv_case(16, 128, 9, 9, 64, 3, s=2),  # 4x4 outputs, 1152-row columns
                    ("im2col_gemm", "col2im_gemm", "im2col_simd")),
    "pointwise_stride2": (conv_case(2, 8, 7, 5, 6, 1, s=2),
                          ("im2col_gemm", "col2im_gemm", "im2col_gemm")),
    "stem7x7": (conv_case(2, 3, 15, 13, 8, 7, s=2, p=3),  # polyphase taps, 3 x 49 of them
                ("tap_poly2", "col2im_gemm", "direct")),
}  # fmt: skip
# Where 32-byte vectors (AVX2) plan otherwise: one BLAS GEMM per image for what the SIMD
# GEMM takes with 64-byte ones (`planner.simd_gemm_beats_blas`), the direct weight
# gradient for the masked one (`planner.use_same3x3_masked`).
_AVX2_PATHS = {
    "dense3x3": ("tap_same", "T:tap_same", "direct"),
    "grouped": ("tap_same", "T:tap_same", "direct"),
    "pointwise_simd": ("pointwise_gemm", "T:pointwise_gemm", "pointwise_gemm"),
    "pointwise_simd_image": ("pointwise_gemm", "T:pointwise_gemm", "pointwise_gemm"),
    "im2col_simd": ("im2col_gemm", "col2im_gemm", "im2col_gemm"),
}
_BY_WIDTH = {64: CONV_PATH_CASES, 32: {**CONV_PATH_CASES, **{
    name: (CONV_PATH_CASES[name][0], paths) for name, paths in _AVX2_PATHS.items()}}}  # fmt: skip


def conv_path_cases(vector_bytes: int) -> dict:
    """name -> (case, (forward, backward-input, backward-weight) algorithms) as planned
    for SIMD vectors of `vector_bytes` (64: AVX-512, 32: AVX2)."""
    return {
        name: (case, tuple(p.replace("T:", _T) for p in paths))
        for name, (case, paths) in _BY_WIDTH[vector_bytes].items()
    }


def _host_vector_bytes() -> int:
    from minires.kernels.jit.simd import VECTOR_BYTES

    return VECTOR_BYTES


CONV_PATH_CASES = conv_path_cases(_host_vector_bytes())  # as this CPU plans them


def conv_inputs(case, dtype, seed):
    """(x, weight, grad_out, args) for a `conv_case`, standard normal values."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((case["n"], case["c"], case["h"], case["w"])).astype(dtype)
    wt = rng.standard_normal((case["cout"], case["c"] // case["g"]) + case["k"]).astype(dtype)
    ho, wo = (
        (n + 2 * p - d * (k - 1) - 1) // s + 1
        for n, k, s, p, d in zip((case["h"], case["w"]), case["k"], case["s"], case["p"], case["d"])
    )
    go = rng.standard_normal((case["n"], case["cout"], ho, wo)).astype(dtype)
    return x, wt, go, (case["s"], case["p"], case["d"], case["g"])


def vector_width(monkeypatch, vector_bytes: int) -> None:
    """Make the planner plan for SIMD vectors of `vector_bytes` (32: AVX2, 64: AVX-512)
    whatever this CPU has, until the test ends (its rules only; kernels still run at
    this CPU's width). The conftest forgets the kept plans on each monkeypatch."""
    from minires.kernels.jit import planner

    def lanes(itemsize: int) -> tuple[int, int]:
        return vector_bytes // itemsize, vector_bytes

    monkeypatch.setattr(planner, "_lanes", lanes)


def plan_of(case, dtype):
    """The (forward, backward-input, backward-weight) algorithms the planner of
    kernels.jit picks for a `conv_case` (finite weights)."""
    import minires.kernels.jit as J

    x_shape = (case["n"], case["c"], case["h"], case["w"])
    w_shape = (case["cout"], case["c"] // case["g"]) + case["k"]
    p = J.plan_for(x_shape, w_shape, case["s"], case["p"], case["d"], case["g"], dtype)
    return p["forward"], p["backward_input"], p["backward_weight"]
