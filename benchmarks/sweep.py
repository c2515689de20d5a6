"""The orchestrator: starts one worker process per backend, runs the jobs back to back
(never two workers busy at once), layer by layer, and collects the rows.

Sections, in run order:

    ceilings   large sgemm per library (practical FP32 ceiling), memory bandwidth
    layers     the conv sweep of `benchmarks.specs.layer_sweep`, every backend per layer, its
               repetitions in rounds over the backends (`layer_job`)
    blocks     ResNet-50 vs ResNeXt-50 conv2-stage bottleneck, fwd+bwd (a fresh process
               per backend and job; the backends' steps interleaved: `run_interleaved`)
    forms      ResNeXt's three equivalent forms of that block (Fig. 3: a paths, b concat,
               c grouped conv), fwd+bwd in minires and torch, all checked against form (c)
    models     resnet50 / resnext50_32x4d fwd+bwd at 224x224, resnet20 training step
    coldstart  first call of the Numba kernels with an empty and a warm JIT cache
"""

from __future__ import annotations

import json
import os
import select
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import minires
from minires.benchmarks.machine import OPENBLAS_OVERRIDES, machine_info, thread_env
from minires.benchmarks.specs import LayerSpec, layer_sweep
from minires.benchmarks.story import MINIRES, add_ratios  # noqa: F401 (MINIRES re-exported)

SECTIONS = ("ceilings", "layers", "blocks", "forms", "models", "coldstart", "distributed")
# ResNeXt-50's conv2 block (32x4d, 256 -> 128 grouped -> 256) in the forms of Fig. 3
FORMS = {
    "c": "block_resnext50_32x4d",
    "b": "block_resnext50_32x4d_concat",
    "a": "block_resnext50_32x4d_paths",
}
DEFAULT_BACKENDS = ("numba", "numpy", "torch", "torch_cl")
# MINIRES (from story.py): "numba", the backend every ratio is relative to
# The folder holding the `minires` package this process imported (the repository in a
# checkout, site-packages when installed): workers import the same minires from there.
PACKAGE_PARENT = Path(minires.__file__).resolve().parent.parent


def _default_threads() -> int:
    try:
        import psutil

        return psutil.cpu_count(logical=False) or os.cpu_count() or 1
    except ImportError:  # pragma: no cover
        return os.cpu_count() or 1


@dataclass
class BenchConfig:
    """Everything a run depends on (also written to the JSON)."""

    out_dir: Path
    quick: bool = False
    batch: int = 8
    size: int = 56
    layers: str = "all"
    threads: int = field(default_factory=_default_threads)
    backends: list[str] = field(default_factory=lambda: list(DEFAULT_BACKENDS))
    sections: list[str] = field(default_factory=lambda: list(SECTIONS))
    reps: int = 5
    warmup: int = 2
    min_time: float = 0.3
    max_reps: int = 50
    max_time: float = 15.0  # s of timed repetitions per layer row at most (>= 1 rep)
    # a layer's repetitions in rounds, every backend in turn in each (`layer_job`)
    layer_rounds: int = 3
    tol: float = 1e-3
    model_tol: float = 1e-3
    block_batch: int = 8
    model_batch: int = 2
    cifar_batch: int = 64
    model_reps: int = 5
    numpy_models: bool = False
    coldstart_model: bool = True
    sgemm_n: int = 2048
    stream_mb: int = 256
    unset_openblas_env: bool = True
    settle: float = 0.5  # max s to wait after a job for its worker's threads to stop spinning
    timeout: float = 1800.0
    seed: int = 0
    peak_gflops: float | None = None
    plots: bool = True
    progress: bool = True
    autotune: bool = False  # MINIRES_AUTOTUNE in the workers (kernels/jit/autotune.py)

    @classmethod
    def quick_preset(cls, out_dir: Path, **overrides: Any) -> BenchConfig:
        """`--quick`: small batches, few repetitions; < 2 minutes on 2 cores."""
        base = dict(quick=True, batch=2, reps=3, warmup=1, min_time=0.05, block_batch=2,
                    model_batch=1, model_reps=1, sgemm_n=1536, stream_mb=128, max_time=5.0,
                    coldstart_model=False, layer_rounds=1)  # fmt: skip
        base.update(overrides)
        return cls(out_dir=out_dir, **base)


# --------------------------------------------------------------------------- processes


def worker_env(
    cfg: BenchConfig, extra: dict[str, str] | None = None, base: dict[str, str] | None = None
) -> tuple[dict[str, str], dict[str, Any]]:
    """Environment of every worker, built from `base` (default os.environ, which is never
    modified): the same thread count for every pool, the repository on PYTHONPATH, and
    (unless told otherwise) OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE unset.
    Returns (env, notes recording what was changed)."""
    env = dict(os.environ if base is None else base)
    n = str(cfg.threads)
    forced = {k: n for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                             "NUMBA_NUM_THREADS", "MINIRES_BENCH_THREADS")}  # fmt: skip
    env.update(forced)
    paths = (str(PACKAGE_PARENT), env.get("PYTHONPATH"))
    env["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
    env.pop("MINIRES_BACKEND", None)
    env["MINIRES_AUTOTUNE"] = "1" if cfg.autotune else "0"
    removed = {}
    if cfg.unset_openblas_env:
        removed = {k: env.pop(k) for k in OPENBLAS_OVERRIDES if k in env}
    if extra:
        env.update(extra)
    notes = {
        "threads_forced": forced,
        "autotune": cfg.autotune,
        "openblas_overrides_unset_in_workers": removed,
        "openblas_overrides_policy": (
            "unset in workers (benchmark only)"
            if cfg.unset_openblas_env
            else "kept as in the parent environment"
        ),
    }
    return env, notes


class Worker:
    """One long-lived ``python -m minires.benchmarks.worker --serve`` process."""

    def __init__(self, backend: str, env: dict[str, str], log_dir: Path, timeout: float):
        self.backend, self.env, self.timeout = backend, env, timeout
        self.log_path = log_dir / f"worker-{backend}.log"
        self.proc: subprocess.Popen | None = None
        self.info: dict[str, Any] = {}

    def start(self) -> dict[str, Any]:
        """Start the process; returns its info (or an error dict)."""
        self.log = open(self.log_path, "a", encoding="utf-8")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "minires.benchmarks.worker", "--backend", self.backend,
             "--serve"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log, env=self.env,
            text=True, bufsize=1, cwd=str(PACKAGE_PARENT),
        )  # fmt: skip
        msg = self._read(timeout=300)
        self.info = msg.get("info", msg)
        return self.info

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def _stderr_tail(self, n: int = 15) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(lines[-n:])

    def _read(self, timeout: float) -> dict[str, Any]:
        assert self.proc is not None and self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not ready:
            self.close(kill=True)
            return {"status": "error", "reason": f"worker timed out after {timeout:.0f} s"}
        line = self.proc.stdout.readline()
        if not line:
            code = self.proc.wait()
            return {"status": "error",
                    "reason": f"worker process exited (code {code}); stderr tail:\n"
                              f"{self._stderr_tail()}"}  # fmt: skip
        try:
            return json.loads(line)
        except json.JSONDecodeError:
            return {"status": "error", "reason": f"unparseable worker output: {line[:200]!r}"}

    def request(self, job: dict[str, Any]) -> dict[str, Any]:
        """Send one job and wait for its result (restarting a dead worker first)."""
        if not self.alive:
            self.start()
            if not self.alive:
                return {"status": "error", "reason": self.info.get("reason", "worker died")}
        assert self.proc is not None and self.proc.stdin is not None
        try:
            self.proc.stdin.write(json.dumps(job) + "\n")
            self.proc.stdin.flush()
        except BrokenPipeError:
            return {"status": "error", "reason": f"worker died; stderr:\n{self._stderr_tail()}"}
        return self._read(self.timeout)

    def wait_idle(self, max_wait: float) -> float:
        """Block until this worker uses no CPU (OpenBLAS and OpenMP threads spin for up to
        ~0.2 s after a call), at most `max_wait` s, so the next worker starts on idle
        cores. Returns the time waited."""
        t0 = time.perf_counter()
        try:
            import psutil

            p = psutil.Process(self.proc.pid) if self.alive else None
        except Exception:  # no psutil, or the process is gone
            p = None
        if p is None:
            time.sleep(min(max_wait, 0.25))
            return time.perf_counter() - t0
        try:
            prev = sum(p.cpu_times()[:2])
            while time.perf_counter() - t0 < max_wait:
                time.sleep(0.03)
                cur = sum(p.cpu_times()[:2])
                if cur - prev < 0.005:  # under a clock tick in 30 ms: idle
                    break
                prev = cur
        except Exception:  # process ended meanwhile
            pass
        return time.perf_counter() - t0

    def close(self, kill: bool = False) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:
                if kill:
                    self.proc.kill()
                else:
                    assert self.proc.stdin is not None
                    self.proc.stdin.write('{"task": "exit"}\n')
                    self.proc.stdin.flush()
                    self.proc.stdin.close()
                self.proc.wait(timeout=30)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def run_oneshot(
    backend: str, job: dict[str, Any], env: dict[str, str], log_dir: Path, timeout: float
) -> dict[str, Any]:
    """Run one job in a fresh worker process (used where peak RSS or a cold JIT cache
    must belong to that job alone)."""
    log_path = log_dir / f"oneshot-{backend}.log"
    cmd = [sys.executable, "-m", "minires.benchmarks.worker", "--backend", backend, "--spec",
           json.dumps(job)]  # fmt: skip
    with open(log_path, "a", encoding="utf-8") as log:
        log.write(f"\n=== {job.get('task')} {job.get('model', '')}\n")
        log.flush()
        try:
            proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=log, text=True, env=env,
                                  timeout=timeout, cwd=str(PACKAGE_PARENT))  # fmt: skip
        except subprocess.TimeoutExpired:
            return {"status": "error", "reason": f"timed out after {timeout:.0f} s"}
    lines = [ln for ln in proc.stdout.splitlines() if ln.strip()]
    if proc.returncode != 0 or not lines:
        tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-15:])
        return {"status": "error", "reason": f"worker exited {proc.returncode}:\n{tail}"}
    return json.loads(lines[-1])


def layer_job(cfg: BenchConfig, round_: int, **first: Any) -> dict[str, Any]:
    """Round `round_` of a layer row's timing: round 0 the ``conv`` task (the check, the
    warm-up, then timing; `first` adds spec and ref_dir), later rounds ``conv_more``
    (more repetitions of the same layer). The repetitions, minimum time and time limit
    are split over `cfg.layer_rounds` rounds, every backend timed in turn in each, so a
    busy spell of a shared machine falls on all of them (timed back to back, one
    backend's repetitions could all land in it)."""
    n = max(1, cfg.layer_rounds)
    job = {"task": "conv" if round_ == 0 else "conv_more", "reps": -(-cfg.reps // n),
           "min_time": cfg.min_time / n, "max_reps": -(-cfg.max_reps // n),
           "max_time": cfg.max_time / n}  # fmt: skip
    if round_ == 0:
        job.update(seed=cfg.seed, tol=cfg.tol, warmup=cfg.warmup, **first)
    return job


def _model_skip_reason(
    cfg: BenchConfig,
    section: str,
    name: str,
    backend: str,
    avail: dict[str, bool],
    worker_info: dict[str, Any],
) -> str | None:
    """Why a block / model row is not timed on `backend` (None: it is timed)."""
    if not avail.get(backend):
        return worker_info.get(backend, {}).get("reason") or f"backend {backend} unavailable"
    if backend == "numpy" and section == "forms":
        return ("forms: minires (Numba) vs torch; the NumPy reference only computes the "
                "check")  # fmt: skip
    if backend == "numpy" and name in ("resnet50", "resnext50_32x4d") and not cfg.numpy_models:
        return "NumPy reference is too slow at ImageNet-model level (use --numpy-models)"
    if (
        section == "models"
        and cfg.quick
        and (backend == "torch_cl" or (backend == "numpy" and not cfg.numpy_models))
    ):
        return "skipped in --quick (the full run times it)"
    return None


def _rotated(items: list[str], i: int) -> list[str]:
    """`items` rotated left by `i`: round i of the rounds starts with another backend."""
    k = i % max(1, len(items))
    return items[k:] + items[:k]


def run_interleaved(
    backends: list[str],
    job: dict[str, Any],
    env: dict[str, str],
    log_dir: Path,
    timeout: float,
    settle: float,
) -> dict[str, dict[str, Any]]:
    """Time one block / model job on several backends with their steps interleaved:
    a fresh serving worker per backend (so peak RSS is that job's own), each opened
    (checked, warmed up) in turn, then ``job["reps"]`` rounds of one step per backend,
    the order rotating every round. A busy spell of a shared machine then slows every
    backend's steps alike instead of all the steps of one backend (run back to back,
    ResNeXt-50's x torch on a noisy 2-core VM spread from 0.69 to 1.31 over three runs).
    Returns backend -> result (the `task_model` row, or an error / MISMATCH)."""
    results: dict[str, dict[str, Any]] = {}
    workers: dict[str, Worker] = {}
    try:
        for b in backends:
            w = Worker(b, env, log_dir, timeout)
            info = w.start()
            if not w.alive:
                results[b] = {"status": "error", "reason": info.get("reason", "worker died")}
                continue
            res = w.request({**job, "task": "model_open"})
            w.wait_idle(settle)
            results[b] = res
            if res.get("status") == "ok":
                workers[b] = w
            else:
                w.close()
        reps, max_time = int(job.get("reps", 3)), float(job.get("max_time", 120.0))
        start = time.perf_counter()
        for i in range(max(1, reps)):
            for b in _rotated(list(workers), i):
                res = workers[b].request({"task": "model_step"})
                workers[b].wait_idle(settle)
                if res.get("status") != "ok":
                    results[b] = res
                    workers.pop(b).close(kill=True)
            if time.perf_counter() - start >= max_time * max(1, len(workers)):
                break
        for b, w in workers.items():
            results[b] = w.request({"task": "model_close"})
    finally:
        failing = sys.exc_info()[0] is not None
        for w in workers.values():
            w.close(kill=failing)
    return results


# --------------------------------------------------------------------------- the run


class LoadMonitor:
    """Samples the 1-minute load average between jobs: other processes competing for the
    cores make timings (especially small multi-threaded ones) unreliable."""

    def __init__(self) -> None:
        self.samples: list[float] = []
        self.sample()

    def sample(self) -> None:
        try:
            self.samples.append(os.getloadavg()[0])
        except (AttributeError, OSError):  # pragma: no cover - not on Linux
            pass

    def summary(self, cores: int, threads: int) -> dict[str, Any]:
        if not self.samples:
            return {"available": False}
        peak = max(self.samples)
        busy = peak > max(cores, threads) + 1.0
        return {
            "load1_start": self.samples[0],
            "load1_max": peak,
            "load1_end": self.samples[-1],
            "cores": cores,
            "busy": busy,
            "note": (
                f"1-min load average reached {peak:.1f} on {cores} cores (this run itself "
                f"accounts for up to {threads}): other processes competed for the CPU, so "
                "timings - above all small multi-threaded ones - are unreliable; rerun on a "
                "quiet machine"
                if busy
                else "machine was quiet enough"
            ),
        }


def _progress(total: int, enabled: bool):
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover
        tqdm = None
    if tqdm is None or not enabled:

        class _Null:
            def update(self, n: int = 1) -> None: ...
            def set_description_str(self, s: str) -> None: ...
            def close(self) -> None: ...

        return _Null()
    return tqdm(total=total, unit="job", file=sys.stderr, dynamic_ncols=True, leave=True)


def _layer_row(spec: LayerSpec, backend: str, res: dict[str, Any]) -> dict[str, Any]:
    row: dict[str, Any] = {"section": "layer", "name": spec.name, "backend": backend,
                           **spec.describe()}  # fmt: skip
    row.update({k: v for k, v in res.items() if k != "traceback"})
    row.setdefault("status", "error")
    if row["status"] == "ok":
        f = spec.flops
        for p, mult in (("fwd", 1), ("bwd_in", 1), ("bwd_w", 1), ("bwd", 2), ("total", 3)):
            ms = row.get(f"{p}_median_ms")
            row[f"gflops_{p}"] = mult * f / (ms * 1e-3) / 1e9 if ms else None
    return row


def model_jobs(cfg: BenchConfig) -> list[tuple[str, str, dict[str, Any]]]:
    """(section, label, job) for the block and model levels."""
    jobs = []
    # warm-up: the first (checked) step and one more untimed: the second step still
    # grows the heap / caches (3 timed steps after only the first gave resnet50 b4
    # ranges of 487-524 ms)
    common = {"seed": cfg.seed, "tol": cfg.model_tol, "warmup": 1 if cfg.quick else 2,
              "min_time": 0.0, "max_time": 4 * cfg.max_time}  # fmt: skip
    if "blocks" in cfg.sections:
        for name in ("block_resnet50", "block_resnext50_32x4d"):
            jobs.append(("blocks", name, {
                **common, "task": "block", "model": name, "mode": "block",
                "input_shape": [cfg.block_batch, 256, cfg.size, cfg.size],
                "reps": cfg.model_reps,
            }))  # fmt: skip
    if "forms" in cfg.sections:
        for name in FORMS.values():
            jobs.append(("forms", name, {
                **common, "task": "block", "model": name, "mode": "block",
                "input_shape": [cfg.block_batch, 256, cfg.size, cfg.size],
                "reps": cfg.model_reps, "ref_model": FORMS["c"], "count_ops": True,
            }))  # fmt: skip
    if "models" in cfg.sections:
        for name in ("resnet50", "resnext50_32x4d"):
            jobs.append(("models", name, {
                **common, "task": "model", "model": name, "mode": "fwdbwd",
                "input_shape": [cfg.model_batch, 3, 224, 224], "num_classes": 1000,
                "reps": cfg.model_reps,
            }))  # fmt: skip
        jobs.append(("models", "resnet20", {
            **common, "task": "model", "model": "resnet20", "mode": "train",
            "input_shape": [cfg.cifar_batch, 3, 32, 32], "num_classes": 10,
            "reps": cfg.model_reps,
        }))  # fmt: skip
    return jobs


def coldstart_specs(cfg: BenchConfig) -> list[dict[str, Any]]:
    """The layers whose first call is timed: ResNeXt's grouped 3x3 and a dense 3x3 (two
    different Numba code paths; --quick times only the grouped one), at batch 1 so
    compute is negligible next to compiling."""
    specs = [
        LayerSpec("cold 32x4d", "template", "conv2", 128, 128, 32, 3, 1, 16).to_dict(),
        LayerSpec("cold dense", "dense", "conv2", 64, 64, 1, 3, 1, 16).to_dict(),
    ]
    return specs[:1] if cfg.quick else specs


def run(cfg: BenchConfig, fake_backends: tuple[str, ...] = ()) -> dict[str, Any]:
    """Run the benchmark described by `cfg` and return the results (rows + metadata).
    `fake_backends` (tests only) adds e.g. ``"broken"`` to the layer sweep."""
    unknown = [s for s in cfg.sections if s not in SECTIONS]
    if unknown:
        raise ValueError(f"unknown sections {unknown}; choose from {', '.join(SECTIONS)}")
    out_dir = Path(cfg.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    log_dir = out_dir / "logs"
    log_dir.mkdir(exist_ok=True)
    started = time.time()
    extra_env = {"MINIRES_BENCH_ENABLE_FAKE": "1"} if fake_backends else None
    env, env_notes = worker_env(cfg, extra_env)
    backends = list(dict.fromkeys([*cfg.backends, *fake_backends]))
    specs = layer_sweep(cfg.batch, cfg.size, cfg.layers) if "layers" in cfg.sections else []
    mjobs = model_jobs(cfg)
    model_backends = [b for b in backends if b in ("numba", "numpy", "torch", "torch_cl")]

    n_cold = 2 if "coldstart" in cfg.sections else 0
    total = (len(backends) + ("ceilings" in cfg.sections) * len(backends)
             + len(specs) * len(backends) + len(mjobs) * len(model_backends) + n_cold)  # fmt: skip
    bar = _progress(total, cfg.progress)
    rows: list[dict[str, Any]] = []
    worker_info: dict[str, Any] = {}
    ceilings: dict[str, Any] = {}
    ref_dir = tempfile.mkdtemp(prefix="minires-bench-ref-")
    load = LoadMonitor()
    workers: dict[str, Worker] = {}
    interrupted = False
    try:
        try:
            # start the workers one after another (imports would fight otherwise)
            for b in backends:
                bar.set_description_str(f"start {b}")
                w = Worker(b, env, log_dir, cfg.timeout)
                worker_info[b] = w.start()
                workers[b] = w
                bar.update()
            avail = {b: bool(worker_info[b].get("available")) for b in backends}

            if "ceilings" in cfg.sections:
                for b in backends:
                    bar.set_description_str(f"ceilings {b}")
                    if avail[b] and b != "torch_cl" and b not in fake_backends:
                        ceilings[b] = workers[b].request(
                            {
                                "task": "ceilings",
                                "n": cfg.sgemm_n,
                                "reps": 5,
                                "stream_mb": cfg.stream_mb,
                            }
                        )
                        workers[b].wait_idle(cfg.settle)
                    bar.update()

            for spec in specs:  # layer by layer, the backends in turn, in rounds
                bar.set_description_str(f"{spec.name} | {', '.join(backends)}")
                res_by = {}
                for b in backends:
                    if not avail[b]:
                        res_by[b] = {"status": "skipped", "reason": worker_info[b].get("reason")}
                        continue
                    job = layer_job(cfg, 0, spec=spec.to_dict(), ref_dir=ref_dir)
                    res_by[b] = workers[b].request(job)
                    workers[b].wait_idle(cfg.settle)
                for r in range(1, cfg.layer_rounds):
                    timed = [b for b in backends if res_by[b].get("status") == "ok"]
                    for b in _rotated(timed, r):
                        res_by[b] = workers[b].request(layer_job(cfg, r))
                        workers[b].wait_idle(cfg.settle)
                for b in backends:
                    rows.append(_layer_row(spec, b, res_by[b]))
                    bar.update()
                load.sample()
        finally:
            failing = sys.exc_info()[0] is not None  # e.g. Ctrl-C: do not wait for jobs
            for w in workers.values():
                w.close(kill=failing)

        try:
            # block and model level: fresh processes per job so peak RSS is that job's
            # own, the backends' steps interleaved
            for section, name, job in mjobs:
                job = {**job, "ref_dir": ref_dir}
                skipped = {b: _model_skip_reason(cfg, section, name, b, avail, worker_info)
                           for b in model_backends}  # fmt: skip
                timed = [b for b in model_backends if skipped[b] is None]
                bar.set_description_str(f"{name} | {', '.join(timed) or 'skipped'}")
                timed_res = run_interleaved(timed, job, env, log_dir, cfg.timeout, cfg.settle)
                for b in model_backends:
                    res = timed_res.get(b) or {"status": "skipped", "reason": skipped[b]}
                    row = {"section": section, "name": name, "backend": b, "mode": job["mode"],
                           "batch": job["input_shape"][0],
                           "input": "x".join(map(str, job["input_shape"][1:]))}  # fmt: skip
                    row.update({k: v for k, v in res.items() if k != "traceback"})
                    rows.append(row)
                    bar.update()
                load.sample()

            if "coldstart" in cfg.sections:
                cache = tempfile.mkdtemp(prefix="minires-bench-numba-cache-")
                cjob = {"task": "coldstart", "specs": coldstart_specs(cfg)}
                if cfg.coldstart_model:
                    cjob.update(model="resnet20", input_shape=[cfg.cifar_batch, 3, 32, 32],
                                num_classes=10)  # fmt: skip
                try:
                    for state in ("empty", "warm"):
                        bar.set_description_str(f"cold start, {state} Numba cache")
                        cenv = {**env, "NUMBA_CACHE_DIR": cache}
                        if "numba" in backends or not backends:
                            res = run_oneshot("numba", cjob, cenv, log_dir, cfg.timeout)
                        else:
                            res = {"status": "skipped", "reason": "numba backend not selected"}
                        res = {k: v for k, v in res.items() if k != "traceback"}
                        what = " + ".join(s["name"].removeprefix("cold ") for s in cjob["specs"])
                        rows.append({"section": "coldstart", "backend": "numba", "cache": state,
                                     "name": f"numba conv fwd+bwd first call ({what})",
                                     **res})  # fmt: skip
                        bar.update()
                finally:
                    shutil.rmtree(cache, ignore_errors=True)
            if "distributed" in cfg.sections:  # MPI data parallelism (benchmarks/distributed.py)
                from minires.benchmarks.distributed import run_section

                rows.extend(run_section(cfg, env, log_dir, bar, steps=4 if cfg.quick else 12))
        finally:
            bar.close()
            shutil.rmtree(ref_dir, ignore_errors=True)
    except KeyboardInterrupt:  # keep what was measured; the caller writes it out
        interrupted = True

    machine = machine_info()
    results = {
        "tool": "minires benchmarks",
        "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "duration_s": round(time.time() - started, 1),
        "command": " ".join([os.path.basename(sys.argv[0]), *sys.argv[1:]]),
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(cfg).items()},
        "machine": machine,
        "env_parent": thread_env(),
        "env_workers": env_notes,
        "workers": worker_info,
        "ceilings": summarize_ceilings(ceilings, machine, cfg.peak_gflops),
        "interrupted": interrupted,
        "load": load.summary(machine["cpu"].get("usable_cpus") or os.cpu_count() or 1, cfg.threads),
        "rows": rows,
    }
    add_derived(results)
    return results


def summarize_ceilings(
    ceilings: dict[str, Any], machine: dict[str, Any], given_peak: float | None = None
) -> dict[str, Any]:
    """Pick the practical ceiling (best sgemm of any library), the bandwidth and the peak
    that "% peak" refers to: ``given_peak`` (--peak-gflops), else the FMA peak measured by
    the Numba worker, else the one derived from the nominal clock (which misses turbo)."""
    sgemm = {b: c["sgemm"] for b, c in ceilings.items() if isinstance(c.get("sgemm"), dict)}
    fma = next((c["fma_peak"] for c in ceilings.values() if isinstance(c.get("fma_peak"), dict)),
               None)  # fmt: skip
    theo = machine.get("theoretical_peak", {})
    if given_peak:
        peak, peak_source = given_peak, "given with --peak-gflops"
    elif fma:
        peak, peak_source = fma["gflops_best"], f"measured: {fma['method']}"
    else:
        peak, peak_source = theo.get("gflops"), f"derived: {theo.get('assumption')}"
    bw = {b: c["bandwidth"] for b, c in ceilings.items() if isinstance(c.get("bandwidth"), dict)}
    # the best repetition of the best library: noise only ever slows a run down
    best = max(sgemm.items(), key=lambda kv: kv[1]["gflops_best"], default=(None, None))
    best_bw = max(bw.items(), key=lambda kv: kv[1]["gb_s"], default=(None, None))
    return {
        "sgemm": sgemm,
        "bandwidth": bw,
        "practical_gflops": best[1]["gflops_best"] if best[1] else None,
        "practical_source": (
            f"{best[0]}: {best[1]['library']}, n={best[1]['n']}" if best[1] else None
        ),
        "bandwidth_gb_s": best_bw[1]["gb_s"] if best_bw[1] else None,
        "bandwidth_source": best_bw[1]["method"] if best_bw[1] else None,
        "theoretical_gflops": theo.get("gflops"),
        "fma_peak_gflops": fma["gflops_best"] if fma else None,
        "fma_peak_source": fma["method"] if fma else None,
        "peak_gflops": peak,
        "peak_source": peak_source,
        "errors": {b: c.get("reason") for b, c in ceilings.items() if c.get("status") != "ok"},
    }


def add_derived(results: dict[str, Any]) -> None:
    """% of the ceilings and the ratios to minires (Numba), in place. One convention
    (`story.add_ratios`): ``time_over_minires`` = this row's time / minires' time, and on
    minires' rows ``x_torch`` = best PyTorch layout's time / minires' time; > 1: minires
    is faster."""
    ceil = results["ceilings"]
    prac = ceil.get("practical_gflops")
    peak = ceil.get("peak_gflops") or ceil.get("theoretical_gflops")  # (older results)
    rows = results["rows"]
    for r in rows:
        if r.get("status") == "ok" and r["section"] == "layer":
            g = r.get("gflops_total")
            r["pct_sgemm"] = 100 * g / prac if g and prac else None
            r["pct_peak"] = 100 * g / peak if g and peak else None
    add_ratios(rows, ("layer", "blocks", "forms", "models"))
    # forms: each form's time over form (c)'s on the same backend
    form_c = {r["backend"]: r.get("total_median_ms") for r in rows if r["section"] == "forms"
              and r["name"] == FORMS["c"] and r.get("status") == "ok"}  # fmt: skip
    for r in rows:
        if r["section"] == "forms" and r.get("status") == "ok" and form_c.get(r["backend"]):
            r["x_form_c"] = r["total_median_ms"] / form_c[r["backend"]]
