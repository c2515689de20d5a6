"""Autotuning of the conv planner (`MINIRES_AUTOTUNE=1`, like torch.backends.cudnn.benchmark).

The planner's thresholds (planner.py) were measured on one Intel CPU. With
`MINIRES_AUTOTUNE=1`, the first conv call of a pass on a geometry (shapes, stride,
padding, dilation, groups, dtype) times every algorithm that can compute it
(`planner.candidates`: the plans with the speed-motivated families switched off, and
algorithms whose rule is narrower than what they compute wherever they can run) on the
call's own inputs - one warm-up call each (it compiles), then `REPS` rounds over all
candidates, the best time of each counting - and keeps the fastest. Choices are cached
in memory and on disk, in `<cache dir>/autotune-<key>.json`, where the key hashes the
CPU model, the numba, numpy and Python versions and the kernels' own sources (a choice
measured on another CPU, library build or minires is never reused); the cache dir is
`$MINIRES_CACHE_DIR`, else `$XDG_CACHE_HOME/minires`, else `~/.cache/minires`. Files are
written atomically (a temporary file, then `os.replace`), merged with what other
processes wrote meanwhile.

Non-finite weights are never tuned (they take the GEMM paths, planner.py), and a pass
with one candidate is not timed.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import platform
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from .planner import Algorithm, ConvGeometry, candidates

ENV = "MINIRES_AUTOTUNE"
REPS = 3  # timed calls per candidate (after one warm-up call); the minimum counts

_timer: Callable[[], float] = time.perf_counter  # tests substitute a fake clock
_lock = threading.Lock()
_choices: dict[str, str] | None = None  # entry -> algorithm value, this key's file
# entry -> the one candidate of a pass nothing else computes: nothing to time or to
# write, but `candidates` (128 plans) is too slow to run again on every conv call
_single: dict[str, Algorithm] = {}


def enabled() -> bool:
    """True when `MINIRES_AUTOTUNE` is set to something other than "0" / ""."""
    return os.environ.get(ENV, "0").strip() not in ("", "0")


def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo on Linux), else what `platform` knows."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


@functools.lru_cache(maxsize=1)
def kernels_hash() -> str:
    """A hash of this package's sources (the planner's candidates and the kernels' code):
    a choice timed on other kernels, or before a new candidate existed, is not reused."""
    h = hashlib.sha256()
    for path in sorted(Path(__file__).parent.glob("*.py")):
        h.update(path.name.encode() + b"\0" + path.read_bytes())
    return h.hexdigest()[:16]


def cache_key() -> dict[str, str]:
    """What a tuned choice depends on besides the geometry."""
    import numba

    return {
        "cpu": cpu_model(),
        "machine": platform.machine(),
        "numba": numba.__version__,
        "numpy": np.__version__,
        "python": sys.version.split()[0],
        "kernels": kernels_hash(),
    }


def cache_dir() -> Path:
    """`$MINIRES_CACHE_DIR`, else `$XDG_CACHE_HOME/minires`, else `~/.cache/minires`."""
    if os.environ.get("MINIRES_CACHE_DIR"):
        return Path(os.environ["MINIRES_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "minires"


def cache_path() -> Path:
    """The choices file of this CPU and these library versions."""
    key = json.dumps(cache_key(), sort_keys=True)
    return cache_dir() / f"autotune-{hashlib.sha256(key.encode()).hexdigest()[:16]}.json"


def _entry(pass_: str, g: ConvGeometry, dtype) -> str:
    shape = (g.n, g.c_in, g.h, g.w, g.c_out, g.kh, g.kw, *g.stride, *g.padding, *g.dilation)
    return f"{pass_} {np.dtype(dtype).name} {','.join(map(str, (*shape, g.groups)))}"


def _read(path: Path) -> dict[str, str]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict) or data.get("key") != cache_key():
        return {}
    choices = data.get("choices")
    return {k: v for k, v in choices.items() if isinstance(v, str)} if isinstance(
        choices, dict
    ) else {}  # fmt: skip


def _loaded() -> dict[str, str]:
    global _choices
    if _choices is None:
        _choices = _read(cache_path())
    return _choices


def _write(entry: str, alg: Algorithm) -> None:
    """Add one choice to the file (merged with its current contents), atomically."""
    path = cache_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        choices = {**_read(path), **_loaded(), entry: alg.value}
        text = json.dumps({"key": cache_key(), "choices": choices}, indent=1, sort_keys=True)
        fd, tmp = tempfile.mkstemp(prefix=path.name, suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "w") as f:
                f.write(text)
            os.replace(tmp, path)
        except BaseException:
            os.unlink(tmp)
            raise
    except OSError as exc:  # a read-only home: keep the choice for this process only
        import warnings

        warnings.warn(f"autotune: cannot write {path} ({exc})", RuntimeWarning, stacklevel=3)


def cached(pass_: str, g: ConvGeometry, dtype) -> Algorithm | None:
    """The tuned choice for this pass and geometry, if autotuning is on and has one."""
    if not enabled():
        return None
    with _lock:
        value = _loaded().get(_entry(pass_, g, dtype))
    try:
        return Algorithm(value) if value is not None else None
    except ValueError:  # an algorithm of another minires version
        return None


def choose(pass_: str, g: ConvGeometry, dtype, run: Callable[[Algorithm], object]) -> Algorithm:
    """The fastest candidate for this pass and geometry: the cached choice, else the
    candidates timed with `run(algorithm)` (one warm-up call each, then `REPS` rounds
    over all of them; the best time of each counts), the winner cached in memory and on
    disk. A pass with one candidate is not timed (remembered in memory: `candidates`
    runs the planner 128 times)."""
    hit = cached(pass_, g, dtype)
    if hit is not None:
        return hit
    entry = _entry(pass_, g, dtype)
    if entry in _single:
        return _single[entry]
    cands = candidates(pass_, g, dtype)
    if len(cands) == 1:
        _single[entry] = cands[0]
        return cands[0]
    for alg in cands:
        run(alg)  # warm-up: the first call compiles
    times: dict[Algorithm, list[float]] = {alg: [] for alg in cands}
    for _ in range(REPS):  # rounds over all candidates: drift on a shared machine hits all
        for alg in cands:
            t0 = _timer()
            run(alg)
            times[alg].append(_timer() - t0)
    best = min(cands, key=lambda alg: min(times[alg]))  # ties: the planner's order
    with _lock:
        _loaded()[entry] = best.value
        _write(entry, best)
    return best


def forget() -> None:
    """Drop the in-memory choices (the next lookup reads the file again)."""
    global _choices
    with _lock:
        _choices = None
        _single.clear()
