"""simd.py's accesses under Numba's bounds checking (`NUMBA_BOUNDSCHECK=1`): the lanes
a load, store, gather or broadcast touches must lie inside the array, masked-off lanes
may lie anywhere. Run in a fresh process (Numba reads the switch when it starts) with
its own cache (Numba's cache key ignores the switch)."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent(
    """
    import numpy as np, numba
    from minires.kernels.jit.simd import (lanes, vbcast, vgather, vload, vloadm, vstore,
                                          vstorem)

    L = lanes(np.float64)

    @numba.njit
    def bcast(a, i):
        out = np.empty(L, a.dtype)
        vstore(out, 0, vbcast(a, i))
        return out

    @numba.njit
    def load(a, i):
        out = np.empty(L, a.dtype)
        vstore(out, 0, vload(a, i))
        return out

    @numba.njit
    def loadm(a, i, m):
        out = np.zeros(L, a.dtype)
        vstore(out, 0, vloadm(a, i, m))
        return out

    @numba.njit
    def storem(a, i, m):
        vstorem(a, i, vload(np.ones(L, a.dtype), 0), m)

    @numba.njit
    def gather(a, i, s, m):
        out = np.zeros(L, a.dtype)
        vstore(out, 0, vgather(a, i, s, m))
        return out

    def outcome(f, *args):
        try:
            f(*args)
            return "ok"
        except IndexError:
            return "IndexError"

    a = np.arange(2.0 * L)
    full = np.uint32((1 << L) - 1)
    print(outcome(bcast, a, 2 * L - 1), outcome(bcast, a, 2 * L), outcome(bcast, a, -1))
    print(outcome(load, a, L), outcome(load, a, L + 1))
    print(outcome(loadm, a, -1, np.uint32(0b10)), outcome(loadm, a, -1, np.uint32(1)),
          outcome(loadm, a, 100, np.uint32(0)), outcome(loadm, a, L + 1, full >> 1),
          outcome(loadm, a, L + 1, full))
    print(outcome(storem, a, 2 * L - 1, np.uint32(1)), outcome(storem, a, 2 * L - 1, np.uint32(2)))
    print(outcome(gather, a, 0, 2, full), outcome(gather, a, 0, 3, full),
          outcome(gather, a, 2 * L - 1, -2, full))
    """
)


def test_simd_accesses_are_checked_under_numba_boundscheck(tmp_path):
    env = dict(os.environ, NUMBA_BOUNDSCHECK="1", NUMBA_CACHE_DIR=str(tmp_path))
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    ok, bad = "ok", "IndexError"
    assert done.stdout.split("\n")[:5] == [
        f"{ok} {bad} {bad}",  # one element: the last one, one past it, one before
        f"{ok} {bad}",  # a whole vector: the last L elements, one further
        f"{ok} {bad} {ok} {ok} {bad}",  # masked: only the selected lanes count
        f"{ok} {bad}",
        f"{ok} {bad} {ok}",  # strided: every selected lane, also going backwards
    ]


def test_simd_accesses_are_not_checked_by_default(tmp_path):
    """Without the switch no check is compiled in: a broadcast one past the end reads
    whatever lies there (the kernels are not slowed by checks they never fail)."""
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_BOUNDSCHECK"}
    env["NUMBA_CACHE_DIR"] = str(tmp_path)
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[0] == "ok ok ok"


# The features of an AVX2 core (Haswell and later, AMD Zen 1-3): what the kernels compile
# to where the host has AVX-512, to run them with 32-byte vectors too.
AVX2_FEATURES = "+sse,+sse2,+sse3,+ssse3,+sse4.1,+sse4.2,+popcnt,+avx,+avx2,+fma,+f16c,+bmi,+bmi2,+lzcnt,+movbe,+cx16"  # noqa: E501


def _host_has_avx512() -> bool:
    import llvmlite.binding as llb

    return "+avx512f" in llb.get_host_cpu_features().flatten().split(",")


@pytest.mark.slow
def test_kernel_suite_bounds_checked_with_32_byte_vectors(tmp_path):
    """The kernel tests again, every array access and SIMD lane bounds-checked, with
    32-byte vectors (8 float32 / 4 float64 lanes) even on an AVX-512 host, whose default
    run has 64-byte ones: a kernel that is right at one lane count and reads past an
    array at the other (Winograd's float64 accumulators, found on an AVX2 host) fails
    here on either kind of machine. ~4 minutes, most of it compiling."""
    env = dict(os.environ, NUMBA_BOUNDSCHECK="1", NUMBA_CACHE_DIR=str(tmp_path))
    if _host_has_avx512():
        env.update(NUMBA_CPU_NAME="haswell", NUMBA_CPU_FEATURES=AVX2_FEATURES)
    probe = "from minires.kernels.jit.simd import VECTOR_BYTES; print(VECTOR_BYTES)"
    done = subprocess.run(
        [sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.stdout.strip() == "32", done.stderr
    root = pathlib.Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", "-m", "not slow",
         "tests/kernels"],
        cwd=root, env=env, capture_output=True, text=True, timeout=2400,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
