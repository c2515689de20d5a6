"""Numba plumbing shared by the jit kernels: the process-wide settings (`configure`),
the decorator, threads, scratch buffers.

* `jit(...)` is `numba.njit(cache=True, error_model="numpy", ...)`, falling back to an
  in-memory JIT with one clear warning when no cache directory is writable (read-only
  install, sandbox...).
  Numba tries `__pycache__` beside this file first, then the user-wide cache
  (`~/.cache/numba`, or `$NUMBA_CACHE_DIR` when set).
* `workspace(role, n, dtype)` hands out reusable 1-D scratch buffers (e.g. the im2col
  matrix), one per role and thread, grown to the largest size seen, so a training step
  does not allocate a fresh multi-megabyte buffer per layer per step.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import platform
import sys
import threading
import time
import warnings

import numba
import numpy as np
from llvmlite import ir
from numba.core import cgutils, types
from numba.core.caching import FunctionCache
from numba.extending import intrinsic


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


# glibc malloc: serve arrays of up to 32 MB from the heap, and keep up to 512 MB of
# freed heap instead of handing it back to the OS.
_MMAP_THRESHOLD = 32 * 1024 * 1024
_TRIM_THRESHOLD = 512 * 1024 * 1024


def _keep_freed_memory() -> bool:
    """Stop glibc from returning freed activation arrays to the OS after every step.

    By default glibc serves a multi-megabyte array with a fresh `mmap` and unmaps it on
    free (or trims the heap), so every training step page-faults all of its activations
    back in: ~1 us per 4 KB page, taken while the kernels write their outputs. Measured
    on a ResNet-20 step (batch 64, 2 threads): 172 -> 144 ms with these thresholds; the
    first conv alone 4.4 -> 0.44 ms. The cost is that the process keeps its peak heap
    (up to 512 MB of it) once the arrays are freed. Only on glibc; skipped when the user
    set `MALLOC_MMAP_THRESHOLD_` / `MALLOC_TRIM_THRESHOLD_` or `MINIRES_MALLOC_TUNE=0`.
    """
    if os.environ.get("MINIRES_MALLOC_TUNE", "1") == "0":
        return False
    if "MALLOC_MMAP_THRESHOLD_" in os.environ or "MALLOC_TRIM_THRESHOLD_" in os.environ:
        return False
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        import ctypes

        libc = ctypes.CDLL(None)
        m_trim_threshold, m_mmap_threshold = -1, -3  # <malloc.h>
        ok = libc.mallopt(m_mmap_threshold, _MMAP_THRESHOLD) == 1
        return libc.mallopt(m_trim_threshold, _TRIM_THRESHOLD) == 1 and ok
    except (OSError, AttributeError):  # pragma: no cover - no mallopt
        return False


_CONFIG: dict[str, object] | None = None


def _l2_bytes_per_core(default: int = 1 << 20) -> int:
    """This CPU's L2 cache per core in bytes (Linux sysfs), or `default` if unknown."""
    base = "/sys/devices/system/cpu/cpu0/cache"
    try:
        for entry in sorted(os.listdir(base)):
            d = os.path.join(base, entry)
            with open(os.path.join(d, "level")) as f:
                if f.read().strip() != "2":
                    continue
            with open(os.path.join(d, "size")) as f:
                size = f.read().strip().upper()
            mult = {"K": 1 << 10, "M": 1 << 20}.get(size[-1:], 1)
            return int(size.rstrip("KM")) * mult
    except (OSError, ValueError):
        pass
    return default


# A memory-bound pass (ReLU, batch norm, pooling) over less data than about half of
# one core's L2 runs faster on the calling thread alone than split between threads (the
# hand-off, and the other core's misses on data this one just wrote). Measured on a
# 2 MB-L2 Xeon, each call alone (us, 1 thread / 2): ReLU 512 KB 12.5 / 43.6, 1.5 MB 109
# / 98, 4 MB 302 / 219; batch-norm forward 512 KB 34 / 71, 1 MB 88 / 121, 1.5 MB 127 /
# 164, 3 MB 308 / 222. In a network the data comes from both cores, and the crossover
# is lower: limit 2 MB / 1 MB / 512 KB against none, steps alternating in one process
# (ms): resnext50_32x4d batch 2 320.0 vs 318.2 / 318.3 vs 319.1 / 314.5 vs 314.9,
# resnet20 batch 8 - / 24.0 vs 26.6 / 24.7 vs 25.8. Callers pass the bytes of their
# main array (`parallel_for(..., nbytes=)`).
PARALLEL_MIN_BYTES = _l2_bytes_per_core() // 2


def configure() -> dict[str, object]:
    """Apply the process-wide settings of the JIT backend, once; return what was set.

    Importing kernels.jit's kernels calls this (from `_numba`, before the first Numba
    dispatcher exists). Everything here affects the whole process, not only minires:

    * ``prefer_512_bit``: Numba's CPU features get ``-prefer-256-bit`` on AVX-512 hosts
      (`_prefer_512_bit_vectors`; opt out: ``MINIRES_JIT_512=0``, or set
      ``NUMBA_CPU_FEATURES``);
    * ``malloc_tuned``: glibc's mmap threshold raised to 32 MB and trim threshold to
      512 MB with ``mallopt`` (`_keep_freed_memory`; opt out: ``MINIRES_MALLOC_TUNE=0``
      or the ``MALLOC_*_`` variables);
    * ``threads`` / ``spinning``: `parallel_for` starts a team of ``threads - 1``
      daemon threads on its first call (``NUMBA_NUM_THREADS``), which poll ~1 ms for
      the next job before sleeping (opt out: ``MINIRES_JIT_SPIN=0``; ``poll_ns``, set when
      the team starts, is this CPU's measured time per poll, which turns the polling
      durations into counts; 0 before); memory-bound
      passes over less than ``parallel_min_bytes`` (half a core's L2) stay on the
      calling thread;
    * ``blas_one_thread_per_gemm``: the GEMM conv paths limit BLAS to one thread while
      they run (threadpoolctl, `kernels.blas`), process-wide for the duration of a call.

    With ``MINIRES_VERBOSE=1`` the settings are printed to stderr. Later calls return
    the same dict without changing anything.
    """
    global _CONFIG
    if _CONFIG is not None:
        return _CONFIG
    from ..blas import blas_controller

    _CONFIG = {
        "prefer_512_bit": _prefer_512_bit_vectors(),
        "cpu_features": numba.config.CPU_FEATURES or "(host default)",
        "malloc_tuned": _keep_freed_memory(),
        "mmap_threshold": _MMAP_THRESHOLD,
        "trim_threshold": _TRIM_THRESHOLD,
        "threads": int(numba.config.NUMBA_NUM_THREADS),
        "spinning": platform.machine().lower() in ("x86_64", "amd64")
        and os.environ.get("MINIRES_JIT_SPIN", "1") != "0",
        "blas_one_thread_per_gemm": bool(blas_controller()),
        "parallel_min_bytes": PARALLEL_MIN_BYTES,
    }
    if os.environ.get("MINIRES_VERBOSE", "0") not in ("", "0"):
        c = _CONFIG
        vec = "on (-prefer-256-bit added to Numba's CPU features)"
        if not c["prefer_512_bit"]:
            vec = "off (Numba's CPU features unchanged)"
        mal = "M_MMAP_THRESHOLD=32 MB, M_TRIM_THRESHOLD=512 MB"
        if not c["malloc_tuned"]:
            mal = "unchanged"
        team = "polling ~1 ms" if c["spinning"] else "sleeping between jobs"
        blas = "1 thread per conv GEMM (threadpoolctl)"
        if not c["blas_one_thread_per_gemm"]:
            blas = "threads left as they are (no threadpoolctl)"
        print(
            "minires kernels.jit configure():\n"
            f"  512-bit vectors: {vec}\n"
            f"  glibc mallopt: {mal}\n"
            f"  thread team: {c['threads']} threads on the first parallel kernel, {team};"
            f" passes under {c['parallel_min_bytes'] >> 10} KB on the calling thread\n"
            f"  BLAS: {blas}",
            file=sys.stderr,
        )
    return _CONFIG


configure()
PREFER_512 = bool(_CONFIG["prefer_512_bit"])
MALLOC_TUNED = bool(_CONFIG["malloc_tuned"])

# Fast-math flags for the conv/BN reductions: re-association lets LLVM vectorise
# float reductions (dot products) and contract a*b+c into FMAs. No 'nnan'/'ninf':
# NaN and inf must still propagate like in NumPy/PyTorch.
FASTMATH = {"reassoc", "contract", "nsz", "arcp"}


_cache_warned = False


def _kernel_sources_digest(folder: str | None = None) -> str:
    """sha256 over the source of every module of this package (or of `folder`) that
    holds compiled code (its text contains a `jit(` decorator or an `@intrinsic`), in
    name order.

    Numba keys a cached function by its own bytecode and its own file's time stamp: a
    kernel inlines the intrinsics of simd.py and the helpers of other modules, and their
    edits would otherwise leave it running stale machine code from the cache."""
    import hashlib

    folder = folder or os.path.dirname(os.path.abspath(__file__))
    digest = hashlib.sha256()
    for name in sorted(os.listdir(folder)):
        if not name.endswith(".py"):
            continue
        with open(os.path.join(folder, name), "rb") as f:
            text = f.read()
        if b"jit(" in text or b"@intrinsic" in text:
            digest.update(name.encode() + b"\0" + text)
    return digest.hexdigest()


class _KernelCache(FunctionCache):
    """Numba's on-disk function cache with two more inputs in its key: the kernel
    sources (`_kernel_sources_digest`) and whether bounds checks are compiled in
    (`NUMBA_BOUNDSCHECK`, which Numba's own key ignores)."""

    _extra_key = None

    def _index_key(self, sig, codegen):
        if _KernelCache._extra_key is None:
            _KernelCache._extra_key = (_kernel_sources_digest(), numba.config.BOUNDSCHECK)
        return super()._index_key(sig, codegen) + _KernelCache._extra_key


def _cached_njit(func, options):
    """numba.njit(cache=True) with `_KernelCache` as its cache (RuntimeError when no
    cache directory can be used)."""
    dispatcher = numba.njit(cache=True, **options)(func)
    dispatcher._cache = _KernelCache(func)
    return dispatcher


def jit(**options):
    """`numba.njit` with `cache=True`; degrade to no on-disk cache if that is impossible.

    The cache key also covers the other kernel sources a function may inline and the
    bounds-check switch (`_KernelCache`). Division follows NumPy/IEEE
    (`error_model="numpy"`): x / 0.0 is inf or NaN, as in the reference and in PyTorch.
    Numba's default model raises ZeroDivisionError instead (e.g. batch norm with eps=0
    on a constant channel), and checks every division.
    """
    options.setdefault("error_model", "numpy")

    def decorate(func):
        global _cache_warned
        try:
            return _cached_njit(func, options)
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


# --------------------------------------------------------------------------- threads
#
# A team of `threads - 1` worker threads runs the chunks of each `parallel_for` call
# together with the calling thread. Measured on this 2-vCPU VM: handing a job to a
# sleeping thread (ThreadPoolExecutor: queue + condition variable) costs ~95 us per
# call - the idle vCPU is halted and has to be woken through the hypervisor - so an
# empty `parallel_for` took 95 us, and a ResNet-20 training step makes ~400 calls. The
# workers therefore keep polling for the next job for a short while after each one
# (`_SPIN_POLLS`, ~1 ms, in nogil compiled code, so the GIL stays free) before
# they go to sleep; a job that arrives in that window starts within microseconds.

# How long the threads poll, as durations: one poll (an atomic load and a `pause`) takes
# 8.5 ns on the Granite Rapids class host, 15 on the Sapphire Rapids class one and 26
# on the AMD EPYC (Zen 4) VM, so counts tuned on one CPU polled 3x longer on another
# (the settles below, meant as ~8 us, were 26 us on Zen 4). `_poll_counts()` turns them
# into polls with this CPU's measured time per poll when the thread team starts.
#
# A worker polls ~1 ms for the next job before it sleeps (a wake-up from sleep costs
# ~50-100 us here, and a step's gaps between jobs - Python, small serial ops - often
# exceed 0.2 ms: 20_000 -> 120_000 polls of 8.5 ns, interleaved, resnet50 b4 487.3 ->
# 483.0 ms, resnet20 b64 92.5 -> 91.7); the caller, having run its share, polls ~1.7 ms
# for the workers' last chunks before it falls back to sleeping in 20 us steps (which
# oversleep by ~60-100 us on this VM)
_SPIN_NS = 850_000
_WAIT_NS = 1_700_000
# ~8.5 us of polls from `go` to the GIL: the caller's Python from setting `go` to its
# kernel's entry (in a ResNet-50 step, median worker start 200 polls of 8.5 ns 47 us -
# often still too early -, 1000 23 us, 4000 48 us; steps 506.6 vs 503.0 ms for 200 vs
# 1000, interleaved)
_SETTLE_NS = 8_500
# ~7 us of polls once the caller saw every chunk done, before it asks for the GIL: the
# worker that set the last done flag still holds it for its few lines of Python, and a
# caller that asked then slept on the GIL's condition variable (~30-60 us; steps,
# interleaved, 0 -> 800 polls of 8.5 ns: resnet50 b4 494.5 -> 482.9 ms, resnet20 b64
# 102.2 -> 100.1, resnext50_32x4d b2 0 -> 500: 312.2 -> 306.0, 500 vs 1500: 299.4 vs
# 301.3)
_END_SETTLE_NS = 6_800
# chunks per thread of a parallel_for call: more balance the load on a shared machine,
# fewer mean fewer GIL hand-offs between the threads (each a chance for a thread to
# fall asleep waiting for it). 2 vs 4, interleaved runs: depthwise 3x3 2.19-2.23 vs
# 2.27-2.64 ms, 32x4d 5.44-5.66 vs 5.63-5.69, resnet20 step 178-180 vs 180-190 ms
_CHUNKS_PER_THREAD = 2
_X86 = platform.machine().lower() in ("x86_64", "amd64")  # `pause` + x86 memory ordering
# MINIRES_JIT_SPIN=0: never poll (threads sleep between jobs; for oversubscribed machines)
_SPINNING = bool(_CONFIG["spinning"])


@intrinsic
def _load_acquire(typingctx, arr, idx):
    """arr[idx] as an atomic acquire load: re-read on every poll (a plain load could be
    hoisted out of the polling loop)."""
    sig = arr.dtype(arr, idx)

    def codegen(context, builder, signature, args):
        aryty = signature.args[0]
        ary = context.make_array(aryty)(context, builder, args[0])
        ptr = cgutils.get_item_pointer(context, builder, aryty, ary, [args[1]])
        return builder.load_atomic(ptr, "acquire", aryty.dtype.bitwidth // 8)

    return sig, codegen


@intrinsic
def _cpu_pause(typingctx):
    """The x86 `pause` hint of a spin-wait loop (nothing elsewhere)."""
    sig = types.void()

    def codegen(context, builder, signature, args):
        if _X86:  # MCJIT has no inline-asm parser: the LLVM intrinsic instead
            fn = cgutils.get_or_insert_function(
                builder.module, ir.FunctionType(ir.VoidType(), []), "llvm.x86.sse2.pause"
            )
            builder.call(fn, [])
        return context.get_dummy_value()

    return sig, codegen


@jit(nogil=True)
def _poll_change(seq, last, polls):
    """True as soon as seq[0] != last, False after `polls` more polls (0: look once)."""
    for _ in range(polls + 1):
        if _load_acquire(seq, 0) != last:
            return True
        _cpu_pause()
    return False


@jit(nogil=True)
def _poll_go(go, last, polls, settle):
    """`_poll_change(go, last, polls)`, then `settle` more polls once go changed (the
    caller's last microseconds with the GIL: see `_Team._work`)."""
    if not _poll_change(go, last, polls):
        return False
    for _ in range(settle):
        _cpu_pause()
    return True


@jit(nogil=True)
def _poll_all_set(flags, polls, settle=0):
    """True as soon as every flag is nonzero (then `settle` more polls), False after
    `polls` more polls (0: look once)."""
    for _ in range(polls + 1):
        done = True
        for i in range(flags.size):
            if _load_acquire(flags, i) == 0:
                done = False
                break
        if done:
            for _ in range(settle):
                _cpu_pause()
            return True
        _cpu_pause()
    return False


def _poll_ns(polls: int = 20_000, rounds: int = 3) -> float:
    """Nanoseconds of one poll of `_poll_change` on this CPU: the fastest of `rounds`
    timings of `polls` polls (a round the VM descheduled only reads slower), within
    [1, 200] ns."""
    seq = np.zeros(1, np.int64)
    _poll_change(seq, 0, 0)  # compiled (or loaded from the cache) before timing
    best = float("inf")
    for _ in range(rounds):
        t = time.perf_counter_ns()
        _poll_change(seq, 0, polls)
        best = min(best, (time.perf_counter_ns() - t) / (polls + 1))
    return min(max(best, 1.0), 200.0)


def _poll_counts(poll_ns: float) -> tuple[int, int, int, int]:
    """(spin, wait, settle, end-settle) polls of `poll_ns` each for the durations above."""
    return tuple(
        max(1, round(ns / poll_ns)) for ns in (_SPIN_NS, _WAIT_NS, _SETTLE_NS, _END_SETTLE_NS)
    )


# the counts at 8.5 ns a poll until the thread team starts and `_calibrate_polls` has
# measured this CPU (at import it would cost ~0.1 s: loading the polling helper)
POLL_NS = 0.0
_SPIN_POLLS, _WAIT_POLLS, _SETTLE_POLLS, _END_SETTLE_POLLS = _poll_counts(8.5)
_CONFIG["poll_ns"] = POLL_NS


def _calibrate_polls() -> None:
    """Measure this CPU's time per poll and set the poll counts from it, once per
    process, before the thread team's first job (nothing to measure without spinning)."""
    global POLL_NS, _SPIN_POLLS, _WAIT_POLLS, _SETTLE_POLLS, _END_SETTLE_POLLS
    if POLL_NS or not _SPINNING:
        return
    POLL_NS = _poll_ns()
    _SPIN_POLLS, _WAIT_POLLS, _SETTLE_POLLS, _END_SETTLE_POLLS = _poll_counts(POLL_NS)
    _CONFIG["poll_ns"] = round(POLL_NS, 1)
    if os.environ.get("MINIRES_VERBOSE", "0") not in ("", "0"):
        print(
            f"minires kernels.jit thread team polls: {POLL_NS:.1f} ns each on this CPU:"
            f" {_SPIN_POLLS} polls for the next job (~{_SPIN_NS / 1e6:.2f} ms),"
            f" {_SETTLE_POLLS} / {_END_SETTLE_POLLS} to settle before asking for the GIL",
            file=sys.stderr,
        )


class _Job:
    """One `parallel_for` call: chunks claimed from a shared counter, one done flag each."""

    __slots__ = ("kernel", "args", "bounds", "nchunks", "claim", "seats", "done", "error", "go")

    def __init__(self, kernel, args, bounds, helpers):
        self.kernel, self.args, self.bounds = kernel, args, bounds
        self.nchunks = len(bounds) - 1
        self.claim = itertools.count().__next__  # atomic under the GIL
        self.seats = iter(range(helpers))  # how many workers may join
        self.done = np.zeros(self.nchunks, np.uint8)
        self.error = None
        self.go = None  # (the team's `go` array, this job's number): see `_Team._work`

    def take_seat(self) -> bool:
        """For a worker: False once enough workers joined (numba.set_num_threads(k) with
        k below the team size)."""
        return next(self.seats, None) is not None

    def run(self) -> None:
        """Claim and run chunks until none is left (any thread)."""
        while True:
            i = self.claim()
            if i >= self.nchunks:
                return
            if self.go is not None:  # the caller, about to release the GIL in its kernel
                self.go[0][0] = self.go[1]
                self.go = None
            try:
                self.kernel(self.bounds[i], self.bounds[i + 1], *self.args)
            except BaseException as exc:  # re-raised by the caller
                if self.error is None:
                    self.error = exc
            finally:
                self.done[i] = 1

    def wait(self) -> None:
        """Until every chunk has finished (the caller, after its own `run`), then a few
        microseconds more for the worker's GIL (`_END_SETTLE_POLLS`)."""
        polls, settle = (_WAIT_POLLS, _END_SETTLE_POLLS) if _SPINNING else (0, 0)
        while not _poll_all_set(self.done, polls, settle):
            time.sleep(20e-6)  # a worker was descheduled: yield the GIL and the core
        if self.error is not None:
            raise self.error


class _Team:
    """`size` daemon worker threads taking `_Job`s; see the comment above."""

    def __init__(self, size: int):
        self.seq = np.zeros(1, np.int64)  # number of the current job
        self.go = np.zeros(1, np.int64)  # its number again once the caller enters its chunk
        self.job = None
        self.cond = threading.Condition()
        self.sleeping = 0
        for i in range(size):
            threading.Thread(target=self._work, name=f"kernels-jit-{i}", daemon=True).start()

    def submit(self, job: _Job) -> None:
        self.job = job
        with self.cond:
            self.seq[0] += 1
            job.go = (self.go, int(self.seq[0]))
            if self.sleeping:
                self.cond.notify_all()

    def _work(self) -> None:
        # A polling worker waits for `go`, which the caller sets right before it enters
        # the kernel of its first chunk - where it releases the GIL - and polls a few
        # microseconds more (`_SETTLE_POLLS`) before it asks for the GIL. Asking as soon
        # as the job was published (`seq`), it found the GIL still held by the caller
        # and slept on the GIL's condition variable (CPython's waiters do not spin):
        # ~45 us before it started its first chunk in a ResNet-50 step (median, 376 jobs
        # a step, the caller then waiting for its last chunk; ~22 us in a tight loop of
        # jobs, 8 us with `go`). Whole steps, old -> new, separate processes in turn:
        # resnet50 b4 521/506/507 -> 508/495/504 ms, resnext50_32x4d b2 324/323 ->
        # 309/310, resnet20 b64 100/101 -> 97/98. A job whose `go` never comes is taken
        # from `seq` once the polls run out (the sleeping path).
        last = 0
        while True:
            polls, settle = (_SPIN_POLLS, _SETTLE_POLLS) if _SPINNING else (0, 0)
            if not _poll_go(self.go, last, polls, settle):
                with self.cond:
                    while self.seq[0] == last:
                        self.sleeping += 1
                        self.cond.wait()
                        self.sleeping -= 1
            last = int(self.seq[0])
            job = self.job
            if job.take_seat():
                job.run()


_team = None
_team_lock = threading.Lock()


def _forget_team_after_fork():
    # a forked child inherits the team object but not its threads: start a new one
    global _team, _team_lock
    _team = None
    _team_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_team_after_fork)


def _get_team() -> _Team:
    global _team
    if _team is None:
        with _team_lock:
            if _team is None:
                _calibrate_polls()
                _team = _Team(max(1, numba.config.NUMBA_NUM_THREADS) - 1)
    return _team


@contextlib.contextmanager
def serial():
    """Inside the block, `parallel_for` on this thread runs its tasks on the calling
    thread alone: for calls too small to pay for the hand-off (see conv.py). The
    kernels' results do not depend on the thread count, so this changes only the time."""
    before = getattr(_local, "serial", False)
    _local.serial = True
    try:
        yield
    finally:
        _local.serial = before


def num_threads() -> int:
    """Threads the kernels use: `numba.get_num_threads()` (set with numba.set_num_threads)."""
    return numba.get_num_threads()


def parallel_for(
    range_kernel,
    ntasks: int,
    *args,
    chunks_per_thread: int | None = None,
    nbytes: int | None = None,
) -> None:
    """Run `range_kernel(t0, t1, *args)` over [0, ntasks) on `numba.get_num_threads()` threads.

    `range_kernel` is a `nogil=True` jit function looping `for t in range(t0, t1)` over
    independent tasks. All jit kernels use this instead of `prange`: (1) the parfor
    pass re-optimises the whole inlined kernel a second time, which doubled the
    first-call compile time of the conv kernels (measured ~3-4 s per kernel and dtype)
    for the same machine code; (2) no Numba threading layer is started, so no OpenMP
    workers spin for ~100 ms against OpenBLAS's threads in the dense convs (ours poll
    ~1 ms). The thread count
    follows `numba.get_num_threads()` (`numba.set_num_threads`, `NUMBA_NUM_THREADS`).

    The tasks are cut into `chunks_per_thread * threads` (default `_CHUNKS_PER_THREAD`)
    contiguous chunks that the threads claim one at a time from a shared counter
    (dynamic load balancing on a shared machine). The calling thread is one of the
    workers, the others are a team of daemon threads that poll for the next job for a
    short while before sleeping (see `_Team`): an empty call costs ~7-12 us instead of
    the ~95 us of waking a sleeping thread here (a ResNet-20 step makes ~400 calls,
    many on sub-millisecond kernels).
    Results do not depend on the number of threads: every task writes its own outputs.
    `nbytes`: the size of a memory-bound pass's main array; below `PARALLEL_MIN_BYTES`
    the call runs on the calling thread alone (as inside `serial()`).
    """
    nth = min(numba.get_num_threads(), ntasks)
    small = nbytes is not None and nbytes < PARALLEL_MIN_BYTES
    if nth <= 1 or small or getattr(_local, "serial", False):
        range_kernel(0, ntasks, *args)
        return
    k = min(ntasks, nth * (chunks_per_thread or _CHUNKS_PER_THREAD))
    job = _Job(range_kernel, args, [ntasks * i // k for i in range(k + 1)], nth - 1)
    _get_team().submit(job)
    job.run()
    job.wait()
