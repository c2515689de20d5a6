"""Numba plumbing shared by the jit kernels: the decorator, threads, scratch buffers.

* `jit(...)` is `numba.njit(cache=True, ...)`, falling back to an in-memory JIT with one
  clear warning when no cache directory is writable (read-only install, sandbox...).
  Numba tries `__pycache__` beside this file first, then the user-wide cache
  (`~/.cache/numba`, or `$NUMBA_CACHE_DIR` when set).
* `workspace(role, n, dtype)` hands out reusable 1-D scratch buffers (e.g. the im2col
  matrix), one per role and thread, grown to the largest size seen, so a training step
  does not allocate a fresh multi-megabyte buffer per layer per step.
"""

from __future__ import annotations

import itertools
import os
import threading
import warnings

import numba
import numpy as np


def _prefer_512_bit_vectors() -> bool:
    """Let LLVM use 512-bit vectors on AVX-512 hosts (it prefers 256-bit by default).

    LLVM's tuning for Intel server cores sets `prefer-256-bit`, so Numba emits ymm code
    even on AVX-512 machines; the conv inner loops measured ~1.3-1.5x faster with zmm.
    Numba takes the target features from `NUMBA_CPU_FEATURES` when it first builds its
    CPU target, so this only works if nothing in the process has created a Numba
    dispatcher yet and the user has not set `NUMBA_CPU_FEATURES`; otherwise it does
    nothing. Opt out with `MINIRES_JIT_512=0`.
    """
    if os.environ.get("MINIRES_JIT_512", "1") == "0" or numba.config.CPU_FEATURES:
        return False
    from numba.core.registry import cpu_target

    if "_toplevel_target_context" in vars(cpu_target):  # codegen already built
        return False
    try:
        import llvmlite.binding as llb

        features = llb.get_host_cpu_features().flatten()
    except Exception:  # pragma: no cover - exotic platforms
        return False
    if "+avx512f" not in features.split(","):
        return False
    numba.config.CPU_FEATURES = features + ",-prefer-256-bit"
    return True


PREFER_512 = _prefer_512_bit_vectors()

# Fast-math flags for the conv/BN reductions: re-association lets LLVM vectorise
# float reductions (dot products) and contract a*b+c into FMAs. No 'nnan'/'ninf':
# NaN and inf must still propagate like in NumPy/PyTorch.
FASTMATH = {"reassoc", "contract", "nsz", "arcp"}


_cache_warned = False


def jit(**options):
    """`numba.njit` with `cache=True`; degrade to no on-disk cache if that is impossible."""

    def decorate(func):
        global _cache_warned
        try:
            return numba.njit(cache=True, **options)(func)
        except RuntimeError as exc:  # "cannot cache function ...: no locator available"
            if not _cache_warned:
                _cache_warned = True
                warnings.warn(
                    "kernels.jit: cannot write a Numba cache ("
                    f"{exc}); kernels will be recompiled in every process. "
                    "Set NUMBA_CACHE_DIR to a writable directory to avoid this.",
                    RuntimeWarning,
                    stacklevel=3,
                )
            return numba.njit(cache=False, **options)(func)

    return decorate


_local = threading.local()


def workspace(role: str, size: int, dtype) -> np.ndarray:
    """A reusable uninitialised 1-D buffer of `size` elements (contents are garbage).

    One buffer per (role, dtype) and thread, grown to the largest request seen. The
    caller must not keep a view of it past its own call (the next call reuses it).
    """
    bufs = getattr(_local, "bufs", None)
    if bufs is None:
        bufs = _local.bufs = {}
    key = (role, np.dtype(dtype).str)
    buf = bufs.get(key)
    if buf is None or buf.size < size:
        buf = np.empty(size, dtype=dtype)
        bufs[key] = buf
    return buf[:size]


def clear_workspace() -> None:
    """Free the scratch buffers of the calling thread."""
    _local.bufs = {}


_pool = None
_pool_lock = threading.Lock()


def _forget_pool_after_fork():
    # a forked child inherits the pool object but not its threads: start a new one
    global _pool, _pool_lock
    _pool = None
    _pool_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool_after_fork)


def _get_pool():
    global _pool
    if _pool is None:
        with _pool_lock:
            if _pool is None:
                from concurrent.futures import ThreadPoolExecutor

                _pool = ThreadPoolExecutor(
                    max_workers=max(1, numba.config.NUMBA_NUM_THREADS),
                    thread_name_prefix="kernels-jit",
                )
    return _pool


def num_threads() -> int:
    """Threads the kernels use: `numba.get_num_threads()` (set with numba.set_num_threads)."""
    return numba.get_num_threads()


def _drain(next_chunk, nchunks, bounds, range_kernel, args) -> None:
    # Claim chunks from the shared counter until none is left (dynamic load balancing).
    while True:
        i = next_chunk()
        if i >= nchunks:
            return
        range_kernel(bounds[i], bounds[i + 1], *args)


def parallel_for(range_kernel, ntasks: int, *args, chunks_per_thread: int = 4) -> None:
    """Run `range_kernel(t0, t1, *args)` over [0, ntasks) on `numba.get_num_threads()` threads.

    `range_kernel` is a `nogil=True` jit function looping `for t in range(t0, t1)` over
    independent tasks. All jit kernels use this instead of `prange`: (1) the parfor
    pass re-optimises the whole inlined kernel a second time, which doubled the
    first-call compile time of the conv kernels (measured ~3-4 s per kernel and dtype)
    for the same machine code; (2) no Numba threading layer is started, so no spinning
    OpenMP workers compete with OpenBLAS's threads in the dense convs. The thread count
    follows `numba.get_num_threads()` (`numba.set_num_threads`, `NUMBA_NUM_THREADS`).

    The tasks are cut into `chunks_per_thread * threads` contiguous chunks that the
    threads claim one at a time from a shared counter (dynamic load balancing on a
    shared machine). The calling thread is one of the workers: only `threads - 1` jobs
    go to the pool, so a call costs one thread hand-off instead of one per chunk (a
    ResNet-20 step makes ~400 of these calls, many on sub-millisecond kernels).
    Results do not depend on the number of threads: every task writes its own outputs.
    """
    nth = min(numba.get_num_threads(), ntasks)
    if nth <= 1:
        range_kernel(0, ntasks, *args)
        return
    k = min(ntasks, nth * chunks_per_thread)
    bounds = [ntasks * i // k for i in range(k + 1)]
    next_chunk = itertools.count().__next__  # atomic under the GIL
    pool = _get_pool()
    futures = [
        pool.submit(_drain, next_chunk, k, bounds, range_kernel, args) for _ in range(nth - 1)
    ]
    try:
        _drain(next_chunk, k, bounds, range_kernel, args)
    finally:
        for f in futures:
            f.result()
