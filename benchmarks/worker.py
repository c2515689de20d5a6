"""A benchmark worker: one backend in its own process.

Why a process per backend: OpenBLAS's spinning threads, torch's OpenMP pool and Numba's
pool fighting over 2 cores in one process made small-shape timings wrong by up to 100x.
The parent (`benchmarks.sweep`) runs workers back to back, never two at a time (at the
block and model level their processes live side by side, but only one steps at a time).

Two modes, both answering in JSON on stdout (everything else goes to stderr)::

    python -m minires.benchmarks.worker --backend numba --spec '{"task": "conv", ...}'   # one job
    python -m minires.benchmarks.worker --backend torch --serve    # one job per stdin line

In ``--serve`` mode the first line out is ``{"ready": true, "info": {...}}`` and each
request line gets exactly one result line.

Tasks: ``info``, ``conv`` (one layer: correctness check, then timing; ``conv_more``:
more repetitions of it, for the parent's later rounds), ``ceilings``
(large sgemm, memory bandwidth), ``block`` / ``model`` (fwd+bwd or a training step, peak
RSS), ``model_open`` / ``model_step`` / ``model_close`` (the same, one step per request,
so that the parent can interleave the backends' steps), ``coldstart`` (first call of
the Numba kernels; the parent sets NUMBA_CACHE_DIR).

Backends: ``numpy`` (`kernels.reference`), ``numba`` (`kernels.jit`), ``torch`` (NCHW),
``torch_cl`` (channels_last). ``broken`` (a deliberately wrong forward) exists only to
test the correctness check and is refused unless MINIRES_BENCH_ENABLE_FAKE=1.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import importlib
import json
import os
import re
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from minires.benchmarks.specs import LayerSpec

BACKENDS = ("numba", "numpy", "torch", "torch_cl")
FAKE_BACKENDS = ("broken",)
FAKE_ENV = "MINIRES_BENCH_ENABLE_FAKE"
PASSES = ("fwd", "bwd_in", "bwd_w")
TIMED = (*PASSES, "bwd")  # bwd: both gradients in one call, as a training step asks


class BackendUnavailable(RuntimeError):
    """The backend cannot run here (not installed, import failed ...); the message says why."""


# --------------------------------------------------------------------------- helpers


def threads() -> int:
    """Thread count the parent asked for (it also set OMP/OPENBLAS/NUMBA variables)."""
    return int(os.environ.get("MINIRES_BENCH_THREADS", "0")) or (os.cpu_count() or 1)


def rss_mb() -> float:
    """Current resident set size in MB."""
    m = re.search(r"VmRSS:\s+(\d+)", Path("/proc/self/status").read_text())
    if m:
        return int(m.group(1)) / 1024
    import resource  # pragma: no cover - non-Linux

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark (VmHWM) so a later `peak_rss_mb` covers only what
    follows. Linux >= 4.0; returns False where that is impossible."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def peak_rss_mb() -> float:
    """Peak RSS (since the last `reset_peak_rss`, or process start) in MB."""
    try:
        m = re.search(r"VmHWM:\s+(\d+)", Path("/proc/self/status").read_text())
        if m:
            return int(m.group(1)) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rel_err(got: np.ndarray, ref: np.ndarray) -> float:
    """max |got - ref| / max |ref| (inf on shape mismatch or non-finite values)."""
    got = np.asarray(got, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    if got.shape != ref.shape:
        return float("inf")
    diff = np.abs(got - ref).max(initial=0.0)
    if not np.isfinite(diff):
        return float("inf")
    return float(diff / max(np.abs(ref).max(initial=0.0), 1e-30))


def stats_ms(seconds: list[float]) -> dict[str, float]:
    """median / min / max in milliseconds."""
    a = np.asarray(seconds) * 1e3
    return {"median_ms": float(np.median(a)), "min_ms": float(a.min()), "max_ms": float(a.max())}


def make_inputs(spec: LayerSpec, seed: int) -> tuple[np.ndarray, Any, np.ndarray]:
    """Seeded float32 x, weight (scaled by 1/sqrt(fan_in)) and grad_out for a layer; for
    a separable row the weight is the pair (depthwise, pointwise)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(spec.x_shape, dtype=np.float32)
    ws = []
    for part in spec.parts():
        fan_in = part.w_shape[1] * part.kernel * part.kernel
        w = rng.standard_normal(part.w_shape, dtype=np.float32) / np.sqrt(fan_in)
        ws.append(w.astype(np.float32))
    g = rng.standard_normal(spec.y_shape, dtype=np.float32)
    return x, (ws[0] if len(ws) == 1 else tuple(ws)), g


def _cache_key(obj: Any) -> str:
    return hashlib.sha1(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]


def _save_npz(path: Path, **arrays: np.ndarray) -> None:
    tmp = path.with_suffix(f".tmp{os.getpid()}.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, path)


def conv_reference(
    spec: LayerSpec, seed: int, x: np.ndarray, w: np.ndarray, g: np.ndarray, ref_dir: str | None
) -> dict[str, np.ndarray]:
    """The NumPy reference's forward and both gradients on the seeded inputs, computed
    once per layer and shared between workers through `ref_dir`."""
    path = Path(ref_dir) / f"conv-{_cache_key([spec.to_dict(), seed])}.npz" if ref_dir else None
    if path is not None and path.exists():
        with np.load(path) as f:
            return {k: f[k] for k in PASSES}
    import minires.kernels.reference as ref

    if spec.kind == "separable":  # depthwise then pointwise, backward in reverse
        dws, (w_dw, w_pw) = spec.parts()[0], w
        a_dw = ((dws.stride,) * 2, (dws.pad,) * 2, (1, 1), dws.groups)
        a_pw = ((1, 1), (0, 0), (1, 1), 1)
        y1 = ref.conv2d_forward(x, w_dw, None, *a_dw)
        g1 = ref.conv2d_backward_input(g, w_pw, y1.shape, *a_pw)
        out = {
            "fwd": ref.conv2d_forward(y1, w_pw, None, *a_pw),
            "bwd_in": ref.conv2d_backward_input(g1, w_dw, x.shape, *a_dw),
            "bwd_w": np.concatenate([
                ref.conv2d_backward_weight(x, g1, w_dw.shape, *a_dw).ravel(),
                ref.conv2d_backward_weight(y1, g, w_pw.shape, *a_pw).ravel(),
            ]),
        }  # fmt: skip
    else:
        args = ((spec.stride,) * 2, (spec.pad,) * 2, (1, 1), spec.groups)
        out = {
            "fwd": ref.conv2d_forward(x, w, None, *args),
            "bwd_in": ref.conv2d_backward_input(g, w, x.shape, *args),
            "bwd_w": ref.conv2d_backward_weight(x, g, w.shape, *args),
        }
    if path is not None:
        _save_npz(path, **out)
    return out


# --------------------------------------------------------------------------- conv backends


class ConvBackend:
    """Runs the three conv passes of one layer on prepared inputs."""

    name = "?"
    method = "?"

    def prepare(self, spec: LayerSpec, x: np.ndarray, w: np.ndarray, g: np.ndarray) -> None:
        raise NotImplementedError

    def forward(self) -> Any:
        raise NotImplementedError

    def backward_input(self) -> Any:
        raise NotImplementedError

    def backward_weight(self) -> Any:
        raise NotImplementedError

    def backward(self) -> Any:
        """Both gradients in one call, (grad_x, grad_w): what a training step's backward
        asks of the conv (a backend may share work between them)."""
        return self.backward_input(), self.backward_weight()

    def to_numpy(self, r: Any) -> np.ndarray:
        return np.asarray(r)

    def info(self) -> dict[str, Any]:
        return {}


class KernelBackend(ConvBackend):
    """minires' ndarray kernels (`kernels.reference` or `kernels.jit`), called directly."""

    def __init__(self, name: str, module: Any, method: str):
        self.name, self.module, self.method = name, module, method

    def prepare(self, spec, x, w, g):
        self.x, self.w, self.g = x, w, g
        self.args = ((spec.stride,) * 2, (spec.pad,) * 2, (1, 1), spec.groups)

    def forward(self):
        return self.module.conv2d_forward(self.x, self.w, None, *self.args)

    def backward_input(self):
        return self.module.conv2d_backward_input(self.g, self.w, self.x.shape, *self.args)

    def backward_weight(self):
        return self.module.conv2d_backward_weight(self.x, self.g, self.w.shape, *self.args)

    def backward(self):
        return self.module.conv2d_backward(self.g, self.x, self.w, *self.args)


class BrokenBackend(KernelBackend):
    """Test-only: the reference with a wrong forward (one output channel negated)."""

    def forward(self):
        out = super().forward().copy()
        out[:, 0] *= -1.0
        return out


class TorchBackend(ConvBackend):
    """PyTorch's CPU convolution at kernel level: ``aten.convolution`` (forward) and
    ``aten.convolution_backward`` with an output mask selecting one gradient, so
    backward-input and backward-weight are timed separately, no autograd graph."""

    def __init__(self, channels_last: bool):
        try:
            import torch
        except ImportError as exc:
            raise BackendUnavailable(f"PyTorch is not installed ({exc})") from exc
        self.torch = torch
        torch.set_num_threads(threads())
        self.channels_last = channels_last
        self.name = "torch_cl" if channels_last else "torch"
        fmt = "channels_last (NHWC)" if channels_last else "NCHW"
        self.method = (
            f"torch {torch.__version__} {fmt}: aten.convolution / aten.convolution_backward "
            "(output_mask per gradient), no autograd"
        )

    def prepare(self, spec, x, w, g):
        t = self.torch
        fmt = t.channels_last if self.channels_last else t.contiguous_format
        self.x = t.from_numpy(x).contiguous(memory_format=fmt)
        self.w = t.from_numpy(w).contiguous(memory_format=fmt)
        self.g = t.from_numpy(g).contiguous(memory_format=fmt)
        self.s, self.p, self.groups = [spec.stride] * 2, [spec.pad] * 2, spec.groups
        self.conv = t.ops.aten.convolution
        self.conv_bwd = t.ops.aten.convolution_backward

    def forward(self):
        with self.torch.no_grad():
            return self.conv(self.x, self.w, None, self.s, self.p, [1, 1], False, [0, 0],
                             self.groups)  # fmt: skip

    def _bwd(self, mask):
        with self.torch.no_grad():
            return self.conv_bwd(self.g, self.x, self.w, None, self.s, self.p, [1, 1], False,
                                 [0, 0], self.groups, mask)  # fmt: skip

    def backward_input(self):
        return self._bwd([True, False, False])[0]

    def backward_weight(self):
        return self._bwd([False, True, False])[1]

    def backward(self):
        return tuple(self._bwd([True, True, False])[:2])

    def to_numpy(self, r):
        return r.contiguous().numpy()

    def info(self):
        t = self.torch
        return {
            "torch_threads": t.get_num_threads(),
            "torch_interop_threads": t.get_num_interop_threads(),
            "mkldnn": bool(t.backends.mkldnn.is_available()),
            "torch_parallel_info": t.__config__.parallel_info().strip().splitlines()[:6],
        }


class SeparableBackend(ConvBackend):
    """A depthwise-separable row on one backend: two instances of it, the depthwise k x k
    conv then the pointwise 1x1. The intermediate activation and gradient are computed
    once in `prepare` (by the backend itself), so each timed pass runs both kernels:
    fwd = depthwise + pointwise forward, bwd_in = pointwise then depthwise backward-input,
    bwd_w = both backward-weights (checked as one concatenated array); bwd = both
    gradients of the pointwise conv, then of the depthwise one."""

    def __init__(self, name: str):
        self.dw, self.pw = make_backend(name), make_backend(name)
        self.name = name
        self.method = f"{self.dw.method}; depthwise then pointwise conv"

    def prepare(self, spec, x, w, g):
        (dws, pws), (w_dw, w_pw) = spec.parts(), w
        self.dw.prepare(dws, x, w_dw, np.zeros(dws.y_shape, np.float32))
        y1 = np.ascontiguousarray(self.dw.to_numpy(self.dw.forward()))
        self.pw.prepare(pws, y1, w_pw, g)
        g1 = np.ascontiguousarray(self.pw.to_numpy(self.pw.backward_input()))
        self.dw.prepare(dws, x, w_dw, g1)

    def forward(self):
        self.dw.forward()
        return self.pw.forward()

    def backward_input(self):
        self.pw.backward_input()
        return self.dw.backward_input()

    def backward_weight(self):
        return (self.dw.backward_weight(), self.pw.backward_weight())

    def backward(self):
        _, gw_pw = self.pw.backward()
        gx, gw_dw = self.dw.backward()
        return gx, (gw_dw, gw_pw)

    def to_numpy(self, r):
        if isinstance(r, tuple):
            return np.concatenate([self.dw.to_numpy(r[0]).ravel(), self.pw.to_numpy(r[1]).ravel()])
        return self.dw.to_numpy(r)


def make_backend(name: str) -> ConvBackend:
    """Build a conv backend or raise `BackendUnavailable` with the reason."""
    if name == "numpy":
        import minires.kernels.reference as ref

        return KernelBackend("numpy", ref, "minires kernels.reference (NumPy im2col + matmul)")
    if name == "numba":
        try:
            import minires.kernels.jit as kj

            fns = [getattr(kj, f"conv2d_{p}") for p in ("forward", "backward_input",
                                                        "backward_weight")]  # fmt: skip
        except Exception as exc:  # ImportError, numba errors while the package lands ...
            raise BackendUnavailable(f"cannot import minires.kernels.jit ({exc!r})") from exc
        del fns
        own = getattr(kj, "implemented_here", None)
        native = bool(own and own("conv2d_forward"))
        method = "minires kernels.jit (Numba)" + (
            "" if native else " - conv NOT implemented there yet: re-exported NumPy reference"
        )
        return KernelBackend("numba", kj, method)
    if name in ("torch", "torch_cl"):
        return TorchBackend(channels_last=name == "torch_cl")
    if name == "broken":
        if os.environ.get(FAKE_ENV) != "1":
            raise BackendUnavailable(f"'broken' is a test-only backend (set {FAKE_ENV}=1)")
        import minires.kernels.reference as ref

        return BrokenBackend("broken", ref, "test-only deliberately wrong backend")
    raise BackendUnavailable(f"unknown backend {name!r}; choose from {', '.join(BACKENDS)}")


# --------------------------------------------------------------------------- tasks


def _time_passes(
    be: ConvBackend, reps: int, min_time: float, max_reps: int, max_time: float
) -> dict:
    """Repeat fwd, bwd-input, bwd-weight and bwd (both gradients in one call) until
    `reps` repetitions and `min_time` seconds are reached, or `max_reps` repetitions, or
    `max_time` seconds (a pathologically slow row - e.g. on an oversubscribed machine -
    gets fewer repetitions; `reps` says so). total = fwd + bwd: a training step's conv
    (the two gradients apart are timed for the per-pass table)."""
    times: dict[str, list[float]] = {p: [] for p in (*TIMED, "total")}
    fns = (be.forward, be.backward_input, be.backward_weight, be.backward)
    start = time.perf_counter()
    while True:
        stamps = [time.perf_counter()]
        for fn in fns:
            fn()
            stamps.append(time.perf_counter())
        for p, a, b in zip(TIMED, stamps, stamps[1:]):
            times[p].append(b - a)
        times["total"].append(times["fwd"][-1] + times["bwd"][-1])
        n = len(times["total"])
        elapsed = time.perf_counter() - start
        if n >= max_reps or elapsed >= max_time or (n >= reps and elapsed >= min_time):
            break
    return times


def task_conv(be: ConvBackend, job: dict) -> dict:
    """Check one layer against the NumPy reference, then time it.

    Job keys: spec, seed, tol, warmup, reps, min_time, max_reps, max_time, ref_dir."""
    _conv_session.clear()  # `conv_more` must never time the previous layer
    spec = LayerSpec.from_dict(job["spec"])
    seed = int(job.get("seed", 0))
    x, w, g = make_inputs(spec, seed)
    ref = conv_reference(spec, seed, x, w, g, job.get("ref_dir"))
    if spec.kind == "separable":
        be = SeparableBackend(be.name)
    be.prepare(spec, x, w, g)
    res: dict[str, Any] = {"method": be.method}
    # first call (compiles / loads JIT code), also the correctness check
    t0 = time.perf_counter()
    got = {"fwd": be.forward(), "bwd_in": be.backward_input(), "bwd_w": be.backward_weight()}
    both = be.backward()
    res["first_call_s"] = time.perf_counter() - t0
    tol = float(job.get("tol", 1e-3))
    errs = {p: rel_err(be.to_numpy(got[p]), ref[p]) for p in PASSES}
    errs["bwd"] = max(rel_err(be.to_numpy(both[0]), ref["bwd_in"]),
                      rel_err(be.to_numpy(both[1]), ref["bwd_w"]))  # fmt: skip
    res.update({f"err_{p}": e for p, e in errs.items()})
    del got, both, ref
    bad = [p for p, e in errs.items() if not e <= tol]
    if bad:
        detail = ", ".join(f"{p} rel err {errs[p]:.2e}" for p in bad)
        res.update(status="MISMATCH", reason=f"{detail} > tol {tol:g}: timing skipped")
        return res
    max_time = float(job.get("max_time", 30.0))
    if res["first_call_s"] < max_time / 4:  # a very slow first call was warm-up enough
        for _ in range(max(0, int(job.get("warmup", 1)) - 1)):  # the check was warm-up #1
            be.forward(), be.backward_input(), be.backward_weight(), be.backward()
    times = _time_passes(be, int(job.get("reps", 3)), float(job.get("min_time", 0.0)),
                         int(job.get("max_reps", 50)), max_time)  # fmt: skip
    plan = conv_plan(be, spec)
    if plan is not None:
        res["plan"] = plan
    _conv_session.update(be=be, res=res, times=times)
    return _conv_row(res, times)


def _conv_row(res: dict, times: dict[str, list[float]]) -> dict:
    """`res` with the statistics of every timed repetition so far."""
    row = {**res, "reps": len(times["total"]), "status": "ok"}
    for p, ts in times.items():
        row.update({f"{p}_{k}": v for k, v in stats_ms(ts).items()})
    return row


# the layer a worker timed last, kept for `conv_more` (the parent's later rounds)
_conv_session: dict[str, Any] = {}


def task_conv_more(job: dict) -> dict:
    """More timed repetitions of the layer the last ``conv`` task checked and timed (no
    new check, one warm-up repetition); returns its row over all repetitions so far, so
    the parent can interleave the backends in rounds (`sweep.run`)."""
    if "be" not in _conv_session:
        return {"status": "error", "reason": "no layer was timed yet (send a conv task first)"}
    be, times = _conv_session["be"], _conv_session["times"]
    be.forward(), be.backward_input(), be.backward_weight(), be.backward()
    more = _time_passes(be, int(job.get("reps", 3)), float(job.get("min_time", 0.0)),
                        int(job.get("max_reps", 50)), float(job.get("max_time", 30.0)))  # fmt: skip
    for p, ts in more.items():
        times[p].extend(ts)
    return _conv_row(_conv_session["res"], times)


def conv_plan(be: ConvBackend, spec: LayerSpec) -> dict[str, str] | None:
    """{"forward", "backward_input", "backward_weight"} -> the kernels.jit algorithm of
    each pass of this row (its planner, `kernels.jit.plan_for`; a separable row's two
    convs joined by " + "), with "backward": "one sweep" where `conv2d_backward` computes
    both gradients in one sweep (`kernels.jit.onesweep.SWEEPS`); None for the other
    backends."""
    module = getattr(getattr(be, "dw", be), "module", None)  # SeparableBackend: its parts
    plan_for = getattr(module, "plan_for", None)
    if be.name != "numba" or plan_for is None:
        return None
    plans = [
        plan_for(part.x_shape, part.w_shape, part.stride, part.pad, 1, part.groups)
        for part in spec.parts()
    ]
    out = {p: " + ".join(str(q[p]) for q in plans) for p in plans[0]}
    sweeps = getattr(importlib.import_module(module.__name__ + ".onesweep"), "SWEEPS", {})
    if all((q["backward_input"], q["backward_weight"]) in sweeps for q in plans):
        out["backward"] = "one sweep"  # both gradients in one call (`conv2d_backward`)
    return out


def task_ceilings(backend: str, job: dict) -> dict:
    """The practical ceilings measured by this backend's library: a large sgemm
    (numpy/OpenBLAS or torch) and memory bandwidth (numpy copy, Numba parallel triad)."""
    n, reps = int(job.get("n", 2048)), int(job.get("reps", 5))
    res: dict[str, Any] = {"status": "ok"}
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    flop = 2.0 * n**3

    def bench(fn) -> list[float]:
        fn()  # warm-up
        out = []
        for _ in range(reps):
            t = time.perf_counter()
            fn()
            out.append(time.perf_counter() - t)
        return out

    if backend in ("numpy", "broken"):
        c = np.empty((n, n), np.float32)
        ts = bench(lambda: np.matmul(a, b, out=c))
        res["sgemm"] = {"library": "numpy.matmul (BLAS)", "n": n, **_gflops(flop, ts)}
        # single-threaded copy bandwidth: bytes read + written
        m = int(job.get("stream_mb", 256)) * 2**20 // 4
        src, dst = np.ones(m, np.float32), np.empty(m, np.float32)
        ts = bench(lambda: np.copyto(dst, src))
        res["bandwidth"] = {"method": "numpy copyto, 1 thread (read+write bytes)",
                            "gb_s": 2 * 4 * m / min(ts) / 1e9}  # fmt: skip
    elif backend in ("torch", "torch_cl"):
        import torch

        torch.set_num_threads(threads())
        ta, tb = torch.from_numpy(a), torch.from_numpy(b)
        tc = torch.empty((n, n))
        ts = bench(lambda: torch.mm(ta, tb, out=tc))
        res["sgemm"] = {"library": f"torch.mm ({_torch_blas(torch)})", "n": n,
                        **_gflops(flop, ts)}  # fmt: skip
    elif backend == "numba":
        try:
            import numba
        except ImportError as exc:
            return {"status": "skipped", "reason": f"numba not importable ({exc})"}

        @numba.njit(parallel=True, cache=False)
        def triad(x, y, z, s):  # pragma: no cover - compiled
            for i in numba.prange(x.shape[0]):
                x[i] = y[i] + s * z[i]

        m = int(job.get("stream_mb", 256)) * 2**20 // 4
        x, y, z = (np.ones(m, np.float32) for _ in range(3))
        ts = bench(lambda: triad(x, y, z, np.float32(0.5)))
        res["bandwidth"] = {
            "method": f"Numba parallel triad, {numba.get_num_threads()} threads "
            "(2 reads + 1 write)",
            "gb_s": 3 * 4 * m / min(ts) / 1e9,
        }
        res["fma_peak"] = fma_peak(reps)
        try:
            res["numba_threading_layer"] = numba.threading_layer()
        except ValueError:  # pragma: no cover - no parallel region ran
            pass
    return res


def fma_peak(reps: int = 5, iters: int = 2_000_000) -> dict[str, Any]:
    """The FP32 FLOP/s this machine's cores really sustain: each thread runs 12
    independent chains of FMAs on full SIMD vectors (enough to keep two FMA units with
    4-cycle latency busy), from registers, so nothing but the FMA datapath and the clock
    it runs at limits it. Unlike a peak derived from the nominal clock, it sees turbo,
    AVX-512 down-clocking and 256-bit datapaths (AMD Zen 4) as they are."""
    import numba

    from minires.kernels.jit.simd import lanes, vfma, vload, vstore

    L = lanes(np.float32)
    chains = 12

    @numba.njit(parallel=True, cache=False)
    def fma_chains(buf, iters):  # pragma: no cover - compiled
        for t in numba.prange(buf.shape[0]):
            row = buf[t]
            m, c = vload(row, chains * L), vload(row, (chains + 1) * L)  # a = m a + c
            a0, a1, a2, a3 = vload(row, 0), vload(row, L), vload(row, 2 * L), vload(row, 3 * L)
            a4, a5 = vload(row, 4 * L), vload(row, 5 * L)
            a6, a7 = vload(row, 6 * L), vload(row, 7 * L)
            a8, a9 = vload(row, 8 * L), vload(row, 9 * L)
            a10, a11 = vload(row, 10 * L), vload(row, 11 * L)
            for _ in range(iters):
                a0, a1, a2, a3 = vfma(a0, m, c), vfma(a1, m, c), vfma(a2, m, c), vfma(a3, m, c)
                a4, a5, a6, a7 = vfma(a4, m, c), vfma(a5, m, c), vfma(a6, m, c), vfma(a7, m, c)
                a8, a9, a10, a11 = vfma(a8, m, c), vfma(a9, m, c), vfma(a10, m, c), vfma(a11, m, c)
            for i, a in enumerate((a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11)):
                vstore(row, i * L, a)

    nthreads = numba.get_num_threads()
    buf = np.empty((nthreads, (chains + 2) * L), np.float32)
    buf[:, : chains * L] = 1.0
    buf[:, chains * L :] = 0.5  # a <- 0.5 a + 0.5 stays at 1: no overflow, no denormals
    flop = 2.0 * nthreads * iters * chains * L
    fma_chains(buf, 1000)  # compile and warm up
    ts = []
    for _ in range(reps):
        t = time.perf_counter()
        fma_chains(buf, iters)
        ts.append(time.perf_counter() - t)
    if not np.isfinite(buf).all():  # pragma: no cover - would mean the loop misbehaved
        raise RuntimeError("FMA peak loop produced non-finite values")
    return {
        "method": f"Numba, {nthreads} threads x {chains} chains of {L}-lane float32 FMAs "
        "from registers",
        **_gflops(flop, ts),
    }


def _gflops(flop: float, ts: list[float]) -> dict[str, float]:
    return {"gflops_median": flop / float(np.median(ts)) / 1e9, "gflops_best": flop / min(ts) / 1e9}


def _torch_blas(torch: Any) -> str:
    cfg = torch.__config__.show()
    m = re.search(r"BLAS_INFO=(\w+)", cfg)
    return f"BLAS={m.group(1)}" if m else "BLAS unknown"


def _minires_model(name: str, seed: int) -> Any:
    import minires as mr

    try:
        import minires.models as models
    except ImportError as exc:
        raise BackendUnavailable(f"minires.models not importable yet ({exc})") from exc
    mr.manual_seed(seed)
    if name == "block_resnet50":
        return models.Bottleneck(256, 64)
    if name == "block_resnext50_32x4d":
        return models.Bottleneck(256, 64, groups=32, base_width=4)
    if name in ("block_resnext50_32x4d_paths", "block_resnext50_32x4d_concat"):
        # ResNeXt's form (a) / (b) of the same seeded grouped block: same weights
        grouped = models.Bottleneck(256, 64, groups=32, base_width=4)
        form = models.ResNeXtPaths if name.endswith("_paths") else models.ResNeXtConcat
        return form.from_bottleneck(grouped)
    fn = getattr(models, name, None)
    if fn is None:
        raise BackendUnavailable(f"minires.models has no {name!r} yet")
    return fn()


def _model_inputs(job: dict) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(int(job.get("seed", 0)) + 1)
    shape = tuple(job["input_shape"])
    x = rng.standard_normal(shape, dtype=np.float32)
    classes = int(job.get("num_classes", 0))
    y = rng.integers(0, max(classes, 1), size=shape[0]).astype(np.int64)
    return x, y


def _minires_step(model: Any, x: np.ndarray, y: np.ndarray, mode: str, lr: float = 0.01):
    """One fwd+bwd (block: grad of sum(out*g); model: cross-entropy) or a training step
    (fwd, loss, bwd, plain SGD update). Returns the forward output (ndarray)."""
    import minires as mr
    import minires.functional as F

    model.zero_grad()
    out = model(mr.Tensor(x))
    if mode == "block":
        loss = out.mean()
    else:
        loss = F.cross_entropy(out, y)
    loss.backward()
    if mode == "train":
        for p in model.parameters():
            p.data -= lr * p.grad
    return out.data


def _torch_step(torch: Any, model: Any, x: Any, y: Any, mode: str, lr: float = 0.01):
    model.zero_grad(set_to_none=True)
    out = model(x)
    if mode == "block":
        loss = out.mean()
    else:
        loss = torch.nn.functional.cross_entropy(out, y)
    loss.backward()
    if mode == "train":
        with torch.no_grad():
            for p in model.parameters():
                p -= lr * p.grad
    return out.detach()


def _torch_graph_ops(fn: Any) -> int:
    """Autograd nodes behind a torch output, leaf accumulators excluded (to compare with
    minires' recorded ops)."""
    seen, stack = set(), [fn]
    while stack:
        f = stack.pop()
        if f is None or f in seen:
            continue
        seen.add(f)
        stack.extend(nxt for nxt, _ in f.next_functions)
    return sum(type(f).__name__ != "AccumulateGrad" for f in seen)


def open_model(backend: str, job: dict) -> tuple[dict, Callable[[], Any] | None]:
    """Build a block or a whole model, run its first step (its forward output checked
    against minires' NumPy reference with the same weights and inputs) and the warm-up
    steps. Returns (res, step): ``step()`` runs one more step (forward+backward, or a
    training step), or is None when the check failed (``res["status"] == "MISMATCH"``).

    Job keys: model, mode ("block" | "fwdbwd" | "train"), input_shape, num_classes,
    reps, warmup, max_time, seed, tol, ref_dir; ``ref_model`` (check against another
    model's reference output, e.g. the forms against form c), ``count_ops`` (record the
    number of ops of one forward as ``graph_ops``)."""
    import minires as mr

    name, mode = job["model"], job.get("mode", "fwdbwd")
    ref_name = job.get("ref_model") or name  # the forms are all checked against form (c)
    seed = int(job.get("seed", 0))
    x, y = _model_inputs(job)
    res: dict[str, Any] = {}
    ref_path = None
    if job.get("ref_dir"):
        key = _cache_key([ref_name, mode, list(x.shape), seed])
        ref_path = Path(job["ref_dir"]) / f"model-{key}.npz"
    ref_out = None
    if ref_path is not None and ref_path.exists():
        with np.load(ref_path) as f:
            ref_out = f["out"]
    if backend not in ("numpy", "numba", "torch", "torch_cl"):
        raise BackendUnavailable(f"backend {backend!r} has no block/model level")
    # one minires model (seeded weights): the reference, the timed model or torch's weights
    mm = _minires_model(name, seed)
    mm.train()  # train-mode BN: batch statistics, so the running stats do not matter
    if ref_out is None and (backend != "numpy" or ref_name != name):
        rm = mm if ref_name == name else _minires_model(ref_name, seed).train()
        with mr.use_backend("numpy"), mr.no_grad():  # compute with the reference backend
            ref_out = rm(mr.Tensor(x)).data
        del rm
        if ref_path is not None:
            _save_npz(ref_path, out=ref_out)

    if backend in ("numpy", "numba"):
        mr.set_backend(backend)
        model = mm
        gc.collect()
        res["method"] = f"minires {backend} backend, Tensor autograd (train-mode BN)"
        res["params"] = int(sum(p.data.size for p in model.parameters()))
        if job.get("count_ops"):
            res["graph_ops"] = len(list(mr.autograd.iter_graph(model(mr.Tensor(x)))))
        res["base_rss_mb"] = rss_mb()
        reset_peak_rss()
        step = lambda: _minires_step(model, x, y, mode)  # noqa: E731
    elif backend in ("torch", "torch_cl"):
        try:
            import torch
        except ImportError as exc:
            raise BackendUnavailable(f"PyTorch is not installed ({exc})") from exc
        from minires.benchmarks import torch_models

        torch.set_num_threads(threads())
        model = torch_models.build(name)
        torch_models.load_minires_weights(model, mm.state_dict())
        del mm
        model.train()
        tx, ty = torch.from_numpy(x), torch.from_numpy(y)
        if backend == "torch_cl":
            model = model.to(memory_format=torch.channels_last)
            tx = tx.contiguous(memory_format=torch.channels_last)
        fmt = "channels_last" if backend == "torch_cl" else "NCHW"
        res["method"] = f"torch {torch.__version__} {fmt}, autograd (train-mode BN)"
        res["params"] = int(sum(p.numel() for p in model.parameters()))
        if job.get("count_ops"):
            res["graph_ops"] = _torch_graph_ops(model(tx.requires_grad_()).grad_fn)
            tx = tx.detach()
        gc.collect()
        res["base_rss_mb"] = rss_mb()
        reset_peak_rss()
        step = lambda: _torch_step(torch, model, tx, ty, mode).numpy()  # noqa: E731

    t0 = time.perf_counter()
    out = np.asarray(step())
    res["first_call_s"] = time.perf_counter() - t0
    if ref_out is None:  # this is the reference backend
        ref_out = out
        if ref_path is not None:
            _save_npz(ref_path, out=out)
    tol = float(job.get("tol", 1e-2))
    res["err_fwd"] = err = rel_err(out, ref_out)
    if not err <= tol:
        res.update(status="MISMATCH", reason=f"forward rel err {err:.2e} > tol {tol:g}")
        return res, None
    for _ in range(max(0, int(job.get("warmup", 1)) - 1)):
        step()
    return res, step


def finish_model(res: dict, seconds: list[float], batch: int) -> dict:
    """`res` of `open_model` with the step times' statistics, images/s (`batch` images a
    step) and the peak RSS since the model was opened."""
    res.update({f"total_{k}": v for k, v in stats_ms(seconds).items()})
    res["reps"] = len(seconds)
    res["images_per_s"] = batch / float(np.median(seconds))
    res["peak_rss_mb"] = peak_rss_mb()
    res["status"] = "ok"
    return res


def task_model(backend: str, job: dict) -> dict:
    """A block or a whole model in this process alone: `task_model_open`, timed steps
    (`task_model_step`) until ``reps`` and ``min_time`` are reached (or ``max_time``; at
    most 50), then `task_model_close`. The benchmark interleaves the backends' steps
    instead, sending those three requests itself."""
    opened = task_model_open(backend, job)
    if "step" not in _model_session:  # a mismatch or an error: the row says why
        return opened
    reps, min_time = int(job.get("reps", 3)), float(job.get("min_time", 0))
    max_time = float(job.get("max_time", 120.0))
    start = time.perf_counter()
    while True:
        elapsed = time.perf_counter() - start
        n = len(_model_session["seconds"])
        if n and (elapsed >= max_time or (n >= reps and elapsed >= min_time) or n >= 50):
            break
        task_model_step(job)
    return task_model_close(job)


# the model a serving worker keeps between `model_open` and `model_close` requests (the
# conv layer between `conv` and `conv_more` requests is `_conv_session`)
_model_session: dict[str, Any] = {}


def task_model_open(backend: str, job: dict) -> dict:
    """`open_model` in a serving worker, kept for `task_model_step` requests (one model
    at a time: opening another drops the previous one)."""
    _model_session.clear()
    res, step = open_model(backend, job)
    if step is None:
        return res
    _model_session.update(res=res, step=step, seconds=[], batch=job["input_shape"][0])
    return {**res, "status": "ok"}


def task_model_step(job: dict) -> dict:
    """One timed step of the open model; returns its time (``seconds``)."""
    if "step" not in _model_session:
        return {"status": "error", "reason": "no model is open (send model_open first)"}
    t = time.perf_counter()
    _model_session["step"]()
    dt = time.perf_counter() - t
    _model_session["seconds"].append(dt)
    return {"status": "ok", "seconds": dt}


def task_model_close(job: dict) -> dict:
    """The open model's row (`finish_model` over its timed steps); drops the model."""
    if not _model_session.get("seconds"):
        _model_session.clear()
        return {"status": "error", "reason": "no timed step of an open model"}
    res = finish_model(_model_session["res"], _model_session["seconds"], _model_session["batch"])
    _model_session.clear()
    gc.collect()
    return res


def task_coldstart(job: dict) -> dict:
    """Time the first calls of the Numba conv kernels (JIT compile, or loading the
    on-disk cache) in this fresh process; the parent points NUMBA_CACHE_DIR at an empty
    or an already-filled directory. Optionally a resnet20 training step too."""
    res: dict[str, Any] = {"numba_cache_dir": os.environ.get("NUMBA_CACHE_DIR")}
    t0 = time.perf_counter()
    try:
        be = make_backend("numba")
    except BackendUnavailable as exc:
        return {"status": "skipped", "reason": str(exc)}
    res["import_s"] = time.perf_counter() - t0
    res["method"] = be.method
    first = steady = 0.0
    for d in job["specs"]:
        spec = LayerSpec.from_dict(d)
        x, w, g = make_inputs(spec, 0)
        be.prepare(spec, x, w, g)
        t = time.perf_counter()
        be.forward(), be.backward()  # what a training step calls
        first += time.perf_counter() - t
        t = time.perf_counter()
        be.forward(), be.backward()
        steady += time.perf_counter() - t
    res["first_call_s"], res["steady_call_s"] = first, steady
    if job.get("model"):
        import minires as mr

        mr.set_backend("numba")
        try:
            model = _minires_model(job["model"], 0)
        except BackendUnavailable as exc:
            res["model_reason"] = str(exc)
        else:
            x, y = _model_inputs(job)
            t = time.perf_counter()
            _minires_step(model, x, y, "train")
            res["model_first_step_s"] = time.perf_counter() - t
            t = time.perf_counter()
            _minires_step(model, x, y, "train")
            res["model_steady_step_s"] = time.perf_counter() - t
    res["status"] = "ok"
    return res


def worker_info(backend: str, be: ConvBackend | None, reason: str | None) -> dict:
    """What this worker process runs with: env, thread pools, BLAS kernel."""
    from minires.benchmarks.machine import blas_info, thread_env

    info: dict[str, Any] = {
        "backend": backend,
        "available": be is not None,
        "reason": reason,
        "method": be.method if be else None,
        "pid": os.getpid(),
        "threads_requested": threads(),
        "env": thread_env(),
        "blas": blas_info(),
    }
    if be is not None:
        info.update(be.info())
    if backend == "numba" and be is not None:
        try:
            import minires.kernels.jit as kj

            own = getattr(kj, "implemented_here", None)
            if own is not None:
                names = list(getattr(kj, "__all__", []))
                info["numba_native_kernels"] = [n for n in names if own(n)]
                info["numba_fallback_to_reference"] = [n for n in names if not own(n)]
        except Exception as exc:  # pragma: no cover - a half-written kernels.jit
            info["numba_kernels_error"] = repr(exc)
        try:
            import numba

            info["numba_threads"] = numba.get_num_threads()
            info["numba_threading_layer_config"] = numba.config.THREADING_LAYER
        except Exception as exc:  # pragma: no cover
            info["numba_error"] = repr(exc)
    return info


def handle(backend: str, be: ConvBackend | None, reason: str | None, job: dict) -> dict:
    """Run one job; never raises (errors become ``status: error`` with a traceback)."""
    task = job.get("task")
    try:
        if task == "info":
            return {"status": "ok", **worker_info(backend, be, reason)}
        if task == "ceilings":
            return task_ceilings(backend, job)
        if task == "coldstart":
            return task_coldstart(job)
        if task in ("block", "model"):
            return task_model(backend, job)
        if task == "model_open":
            return task_model_open(backend, job)
        if task == "model_step":
            return task_model_step(job)
        if task == "model_close":
            return task_model_close(job)
        if task == "conv":
            if be is None:
                return {"status": "skipped", "reason": reason}
            return task_conv(be, job)
        if task == "conv_more":
            return task_conv_more(job)
        return {"status": "error", "reason": f"unknown task {task!r}"}
    except BackendUnavailable as exc:
        return {"status": "skipped", "reason": str(exc)}
    except MemoryError:
        return {"status": "error", "reason": "out of memory"}
    except Exception as exc:
        tb = traceback.format_exc(limit=6)
        print(tb, file=sys.stderr)
        return {"status": "error", "reason": f"{type(exc).__name__}: {exc}", "traceback": tb}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m minires.benchmarks.worker", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--backend", required=True, choices=BACKENDS + FAKE_BACKENDS)
    mode = p.add_mutually_exclusive_group(required=True)
    mode.add_argument("--spec", help="one job as JSON; the result is printed as JSON")
    mode.add_argument("--serve", action="store_true", help="JSON lines on stdin/stdout")
    args = p.parse_args(argv)

    out = sys.stdout
    sys.stdout = sys.stderr  # stray prints must not corrupt the protocol
    be: ConvBackend | None = None
    reason: str | None = None
    needs_conv = args.serve or json.loads(args.spec).get("task") in ("conv", "info")
    if needs_conv:
        try:
            be = make_backend(args.backend)
        except BackendUnavailable as exc:
            reason = str(exc)

    def reply(obj: dict) -> None:
        out.write(json.dumps(obj, default=_json_default) + "\n")
        out.flush()

    if not args.serve:
        reply(handle(args.backend, be, reason, json.loads(args.spec)))
        return 0
    reply({"ready": True, "info": worker_info(args.backend, be, reason)})
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            job = json.loads(line)
        except json.JSONDecodeError as exc:
            reply({"status": "error", "reason": f"bad request: {exc}"})
            continue
        if job.get("task") == "exit":
            break
        reply(handle(args.backend, be, reason, job))
    return 0


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


if __name__ == "__main__":
    sys.exit(main())
