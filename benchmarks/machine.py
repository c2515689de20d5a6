"""The machine a run happened on: CPU, cores, clock, theoretical FP32 peak, library
versions, BLAS, and the thread-related environment.

The theoretical peak is derived, not measured, and the derivation is stated with it:

    peak = FLOP/cycle/core x cores x clock
    FLOP/cycle/core = SIMD fp32 lanes x 2 (an FMA is 2 FLOP) x FMA units per core

with 16 lanes for AVX-512 (`avx512f`), 8 for AVX2+FMA, 4 for SSE; 2 FMA units per core
for AVX-512 / AVX2 cores (Xeon Gold/Platinum class, most desktop cores). Some Xeon
Silver/Bronze parts have only one AVX-512 FMA unit, so the figure can be 2x too high
there; the measured sgemm in the same run is the practical ceiling.
"""

from __future__ import annotations

import os
import platform
import re
import subprocess
from typing import Any

# Environment variables that change how many threads run, or which BLAS kernels run.
THREAD_ENV_VARS = (
    "OMP_NUM_THREADS",
    "OMP_WAIT_POLICY",
    "OMP_PROC_BIND",
    "OMP_PLACES",
    "GOMP_SPINCOUNT",
    "KMP_BLOCKTIME",
    "KMP_AFFINITY",
    "OPENBLAS_NUM_THREADS",
    "OPENBLAS_CORETYPE",
    "OPENBLAS_L2_SIZE",
    "OPENBLAS_VERBOSE",
    "GOTO_NUM_THREADS",
    "MKL_NUM_THREADS",
    "MKL_DYNAMIC",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "NUMBA_NUM_THREADS",
    "NUMBA_THREADING_LAYER",
    "NUMBA_CACHE_DIR",
    "NUMBA_DISABLE_JIT",
    "MINIRES_BACKEND",
)

# Unset together in benchmark workers (never in tests or CI): they pin OpenBLAS to an
# older, slower kernel set on processors where old OpenBLAS builds misbehave.
OPENBLAS_OVERRIDES = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")


def thread_env(env: dict[str, str] | None = None) -> dict[str, str]:
    """The thread/BLAS-related variables that are set in `env` (default os.environ)."""
    env = os.environ if env is None else env
    return {k: env[k] for k in THREAD_ENV_VARS if k in env}


def _cpuinfo() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError:
        return ""


def _lscpu() -> dict[str, str]:
    try:
        out = subprocess.run(
            ["lscpu"], capture_output=True, text=True, timeout=10, check=False
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return {}
    info = {}
    for line in out.splitlines():
        if ":" in line:
            k, v = line.split(":", 1)
            info[k.strip()] = v.strip()
    return info


def cpu_info() -> dict[str, Any]:
    """CPU model, logical/physical cores, clock (MHz), SIMD flags."""
    text = _cpuinfo()
    lscpu = _lscpu()

    def first(key: str) -> str | None:
        m = re.search(rf"^{key}\s*:\s*(.*)$", text, re.MULTILINE)
        return m.group(1).strip() if m else None

    model = first("model name") or lscpu.get("Model name") or platform.processor() or "unknown"
    flags = set((first("flags") or lscpu.get("Flags", "")).split())
    logical = os.cpu_count() or 1
    physical: int | None = None
    try:
        import psutil

        physical = psutil.cpu_count(logical=False)
    except ImportError:  # pragma: no cover - psutil is a test dependency
        pass
    if not physical:
        try:
            physical = int(lscpu["Core(s) per socket"]) * int(lscpu.get("Socket(s)", "1"))
        except (KeyError, ValueError):
            physical = logical
    try:
        affinity = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        affinity = logical
    mhz_now = first("cpu MHz")
    mhz_max = lscpu.get("CPU max MHz")
    clock_mhz = float(mhz_max) if mhz_max else float(mhz_now) if mhz_now else None
    clock_src = "lscpu 'CPU max MHz'" if mhz_max else "/proc/cpuinfo 'cpu MHz'" if mhz_now else None
    simd = [f for f in ("avx512f", "avx512_fp16", "avx512_bf16", "avx2", "fma", "avx", "sse2")
            if f in flags]  # fmt: skip
    return {
        "model": model,
        "arch": platform.machine(),
        "logical_cpus": logical,
        "physical_cores": physical,
        "usable_cpus": affinity,
        "clock_mhz": clock_mhz,
        "clock_source": clock_src,
        "hypervisor": lscpu.get("Hypervisor vendor"),
        "l2_cache": lscpu.get("L2 cache"),
        "l3_cache": lscpu.get("L3 cache"),
        "simd": simd,
    }


def theoretical_peak(cpu: dict[str, Any], cores: int | None = None) -> dict[str, Any]:
    """FP32 peak GFLOP/s from SIMD flags x cores x clock, with the assumption spelled out.

    Returns ``{"gflops": None, "assumption": why}`` when it cannot be derived.
    """
    simd = set(cpu.get("simd") or [])
    cores = cores or cpu.get("physical_cores") or cpu.get("logical_cpus")
    clock = cpu.get("clock_mhz")
    if "avx512f" in simd:
        lanes, units, isa = 16, 2, "AVX-512"
    elif "avx2" in simd and "fma" in simd:
        lanes, units, isa = 8, 2, "AVX2+FMA"
    elif "avx" in simd:
        lanes, units, isa = 8, 1, "AVX (no FMA: mul + add ports)"
    elif "sse2" in simd:
        lanes, units, isa = 4, 1, "SSE"
    else:
        return {"gflops": None, "assumption": "unknown SIMD width (no x86 flags found)"}
    if not clock or not cores:
        return {"gflops": None, "assumption": "clock or core count unknown"}
    per_cycle = lanes * 2 * units
    gflops = per_cycle * cores * clock / 1e3
    return {
        "gflops": round(gflops, 1),
        "flop_per_cycle_per_core": per_cycle,
        "assumption": (
            f"{isa}: {lanes} fp32 lanes x 2 (FMA) x {units} FMA unit(s)/core = {per_cycle} "
            f"FLOP/cycle/core x {cores} cores x {clock / 1e3:.2f} GHz ({cpu.get('clock_source')}); "
            "assumes every core sustains that clock with all FMA units busy (no turbo, "
            "no AVX-512 down-clocking); 1-FMA-unit parts (some Xeon Silver/Bronze) have half."
        ),
    }


def library_versions() -> dict[str, str | None]:
    """Versions of python, numpy, numba, torch (None when not installed), without
    importing torch (slow) - its version comes from package metadata."""
    from importlib import metadata

    versions: dict[str, str | None] = {"python": platform.python_version()}
    for pkg in ("numpy", "numba", "torch", "threadpoolctl", "llvmlite"):
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = None
    return versions


def blas_info() -> list[dict[str, Any]]:
    """NumPy's BLAS as threadpoolctl sees it in *this* process (library, version,
    kernel architecture, threads)."""
    try:
        import numpy  # noqa: F401  (loads the BLAS)
        from threadpoolctl import threadpool_info
    except ImportError:
        return []
    keep = ("user_api", "internal_api", "prefix", "version", "architecture", "num_threads",
            "threading_layer")  # fmt: skip
    return [{k: d.get(k) for k in keep} for d in threadpool_info()]


def machine_info() -> dict[str, Any]:
    """Everything about the machine that goes into the JSON and the Markdown header."""
    cpu = cpu_info()
    return {
        "hostname": platform.node(),
        "os": f"{platform.system()} {platform.release()}",
        "cpu": cpu,
        "theoretical_peak": theoretical_peak(cpu),
        "versions": library_versions(),
        "blas_parent": blas_info(),
        "env_parent": thread_env(),
    }
