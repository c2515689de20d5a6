"""The machine a run happened on: CPU, cores, clock, theoretical FP32 peak, library
versions, BLAS, and the thread-related environment.

The theoretical peak is derived, not measured, and the derivation is stated with it (the
benchmark also measures the FMA peak - `worker.fma_peak` - and reports "% peak" against
that, since a nominal clock misses turbo):

    peak = FLOP/cycle/core x cores x clock
    FLOP/cycle/core = fp32 lanes per FMA datapath x 2 (an FMA is 2 FLOP) x FMA units

The SIMD flags alone do not give it: the same `avx512f` flag means two 512-bit FMA units
on a Sapphire Rapids Xeon, one on an Ice Lake laptop, and two 256-bit datapaths (each
AVX-512 instruction split in two) on AMD Zen 4. `fma_datapath` looks the core up by
vendor, family, model and flags; when it does not know the core it says so, no peak is
derived, and the measured sgemm ceiling of the same run stands in for it.
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
    vendor = first("vendor_id") or lscpu.get("Vendor ID")

    def number(key: str, lscpu_key: str) -> int | None:
        raw = first(key) or lscpu.get(lscpu_key)
        try:
            return int(raw) if raw is not None else None
        except ValueError:
            return None

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
    simd = [f for f in ("avx512f", "avx512_fp16", "avx512_bf16", "amx_tile", "avx2", "fma",
                        "avx", "sse2") if f in flags]  # fmt: skip
    return {
        "model": model,
        "vendor": vendor,
        "family": number("cpu family", "CPU family"),
        "model_number": number("model", "Model"),
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


# Intel client cores with AVX-512 (Ice Lake, Tiger Lake, Rocket Lake): one 512-bit FMA
# unit (ports 0+1 fused), i.e. the same 32 FLOP/cycle as their two 256-bit units.
_INTEL_CLIENT_AVX512 = {0x7D, 0x7E, 0x8C, 0x8D, 0xA7}


def fma_datapath(cpu: dict[str, Any]) -> dict[str, Any] | None:
    """fp32 lanes per FMA datapath, FMA units per core and why, for cores we know.

    Returns None when the core is not known well enough to say (the caller then uses
    the measured sgemm ceiling). Sources: Intel's and AMD's optimisation manuals.
    """
    simd = set(cpu.get("simd") or [])
    vendor, family, model = cpu.get("vendor"), cpu.get("family"), cpu.get("model_number")
    name = cpu.get("model") or ""
    if vendor == "AuthenticAMD":
        if family == 0x17:  # Zen, Zen+ (2 x 128-bit), Zen 2 (2 x 256-bit)
            if model is not None and model < 0x30:
                return {"lanes": 4, "units": 2, "why": "AMD Zen/Zen+: 2 x 128-bit FMA pipes"}
            return {"lanes": 8, "units": 2, "why": "AMD Zen 2: 2 x 256-bit FMA pipes"}
        if family == 0x19:  # Zen 3 (AVX2), Zen 4 (AVX-512 on 256-bit datapaths)
            if "avx512f" in simd:
                return {"lanes": 8, "units": 2, "why": "AMD Zen 4: AVX-512 executed on 2 x "
                        "256-bit FMA pipes (each 512-bit FMA takes two)"}  # fmt: skip
            return {"lanes": 8, "units": 2, "why": "AMD Zen 3: 2 x 256-bit FMA pipes"}
        return None  # Zen 5 has 512-bit datapaths on some parts and 256-bit on others
    if vendor == "GenuineIntel" and family == 6:
        if "avx512f" in simd:
            if "amx_tile" in simd:
                return {"lanes": 16, "units": 2, "why": "Intel Xeon with AMX (Sapphire Rapids "
                        "or newer): 2 x 512-bit FMA units per core"}  # fmt: skip
            if "Platinum" in name or re.search(r"Gold 6\d", name):
                return {
                    "lanes": 16,
                    "units": 2,
                    "why": "Intel Xeon Platinum / Gold 6xxx: 2 x 512-bit FMA units",
                }
            if model in _INTEL_CLIENT_AVX512 and "Xeon" not in name:
                return {"lanes": 16, "units": 1, "why": "Intel client core with AVX-512: "
                        "1 x 512-bit FMA unit"}  # fmt: skip
            return None  # Xeon Silver/Bronze/Gold 5xxx have 1 unit, others 2: unknown
        if "avx2" in simd and "fma" in simd:
            return {"lanes": 8, "units": 2, "why": "Intel AVX2 core: 2 x 256-bit FMA units"}
    return None


def theoretical_peak(cpu: dict[str, Any], cores: int | None = None) -> dict[str, Any]:
    """FP32 peak GFLOP/s = FMA datapath x cores x clock, with the assumption spelled out.

    Returns ``{"gflops": None, "assumption": why}`` when it cannot be derived (unknown
    core, clock or core count); reports then use the measured sgemm ceiling instead.
    """
    cores = cores or cpu.get("physical_cores") or cpu.get("logical_cpus")
    clock = cpu.get("clock_mhz")
    path = fma_datapath(cpu)
    if path is None:
        return {
            "gflops": None,
            "assumption": (
                f"FMA width unknown for {cpu.get('model')} (vendor {cpu.get('vendor')}, family "
                f"{cpu.get('family')}, model {cpu.get('model_number')}, flags "
                f"{', '.join(cpu.get('simd') or []) or 'none'}): no peak derived; % peak uses "
                "the measured FMA peak, and the measured sgemm ceiling is the practical one"
            ),
        }
    if not clock or not cores:
        return {"gflops": None, "assumption": "clock or core count unknown"}
    per_cycle = path["lanes"] * 2 * path["units"]
    gflops = per_cycle * cores * clock / 1e3
    return {
        "gflops": round(gflops, 1),
        "flop_per_cycle_per_core": per_cycle,
        "assumption": (
            f"{path['why']}: {path['lanes']} fp32 lanes x 2 (FMA) x {path['units']} = "
            f"{per_cycle} FLOP/cycle/core x {cores} cores x {clock / 1e3:.2f} GHz "
            f"({cpu.get('clock_source')}); assumes every core sustains that clock with all "
            "FMA units busy (no turbo, no AVX-512 down-clocking)"
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
