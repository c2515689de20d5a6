"""The ``distributed`` section of ``minires bench``: data-parallel training on MPI.

Measured (each configuration in fresh processes, the ranks under the environment's
``mpiexec``):

- resnet20 training throughput (CIFAR shapes, global batch ``--cifar-batch``) with 1 rank x
  2 threads against 2 ranks x 1 thread (the same two cores), with the time per step spent
  in the gradient all-reduce (waiting for the slower rank included) and its share;
- the all-reduce of ResNet-50's 25.56M float32 gradients (one flat buffer) on 2 ranks, and
  of 8 bytes (the latency), after a barrier: pure communication, the inputs of the scaling
  model in docs/distributed.md.

    python -m minires.benchmarks --only distributed
    python -m minires.benchmarks.distributed worker train --steps 12   # one configuration
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

RESNET50_PARAMS = 25_557_032


def _env(base: dict[str, str], threads: int, n: int) -> dict[str, str]:
    env = dict(base)
    for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
              "NUMBA_NUM_THREADS", "MINIRES_BENCH_THREADS"):  # fmt: skip
        env[k] = str(threads)
    from minires.distributed import mpi_environment

    for k, v in mpi_environment(n).items():
        if k.startswith("MPIR_CVAR"):
            env.setdefault(k, v)
    return env


def _launch(n: int, threads: int, args: list[str], env: dict[str, str], log: Path,
            timeout: float) -> dict[str, Any]:  # fmt: skip
    from minires.distributed import find_mpiexec

    cmd = [sys.executable, "-m", "minires.benchmarks.distributed", "worker", *args]
    if n > 1:
        cmd = [find_mpiexec(), "-n", str(n), *cmd]
    try:
        r = subprocess.run(cmd, env=_env(env, threads, n), capture_output=True, text=True,
                           timeout=timeout)  # fmt: skip
    except subprocess.TimeoutExpired:
        return {"status": "error", "reason": f"timed out after {timeout:.0f} s"}
    with open(log, "a") as f:
        f.write(f"$ {' '.join(cmd)}\n{r.stderr}\n")
    lines = [ln for ln in r.stdout.splitlines() if ln.startswith("{")]
    if r.returncode != 0 or not lines:
        return {"status": "error", "reason": (r.stderr.strip().splitlines() or ["?"])[-1]}
    return {"status": "ok", **json.loads(lines[-1])}


def run_section(cfg: Any, env: dict[str, str], log_dir: Path, progress: Any = None,
                steps: int = 12) -> list[dict[str, Any]]:  # fmt: skip
    """The rows of the distributed section (see the module doc)."""
    import importlib.util

    base = {"section": "distributed", "backend": "numba"}
    try:
        from minires.distributed import find_mpiexec

        find_mpiexec()
        if importlib.util.find_spec("mpi4py") is None:
            raise FileNotFoundError("mpi4py is not installed")
    except FileNotFoundError as exc:
        reason = f"{exc}".splitlines()[0] + " (pip install 'minires[mpi]')"
        return [
            {**base, "name": n, "status": "skipped", "reason": reason}
            for n in ("resnet20 train 1x2", "resnet20 train 2x1", "allreduce resnet50")
        ]
    log = log_dir / "distributed.log"
    batch = cfg.cifar_batch
    rows = []
    for n, t in ((1, 2), (2, 1)):
        if progress is not None:
            progress.set_description_str(f"distributed: resnet20 {n} rank(s) x {t} thread(s)")
        res = _launch(n, t, ["train", "--batch", str(batch), "--steps", str(steps)], env, log,
                      cfg.timeout)  # fmt: skip
        rows.append({**base, "name": f"resnet20 train {n}x{t}", "ranks": n, "threads": t,
                     "batch": batch, **res})  # fmt: skip
    if progress is not None:
        progress.set_description_str("distributed: all-reduce of ResNet-50's gradients")
    res = _launch(2, 1, ["allreduce", "--numel", str(RESNET50_PARAMS)], env, log, cfg.timeout)
    rows.append({**base, "name": "allreduce resnet50", "ranks": 2, "threads": 1,
                 "numel": RESNET50_PARAMS, **res})  # fmt: skip
    one, two = rows[0], rows[1]
    if one.get("status") == "ok" and two.get("status") == "ok":
        two["throughput_vs_1x2"] = two["images_per_s"] / one["images_per_s"]
    return rows


def table(results: dict[str, Any]) -> list[str]:
    """Markdown lines for the summary (empty if the section did not run)."""
    rows = [r for r in results.get("rows", []) if r.get("section") == "distributed"]
    if not rows:
        return []
    out = ["| configuration | step (ms, median) | images/s | all-reduce incl. wait (ms) | "
           "share | pure all-reduce (ms) | share | vs 1x2 |",
           "|---|---:|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    for r in rows:
        if r.get("status") != "ok":
            out.append(f"| {r['name']} | {r.get('status')}: {r.get('reason', '')} |||||||")
        elif r["name"].startswith("resnet20"):
            out.append(
                f"| resnet20, {r['ranks']} rank(s) x {r['threads']} thread(s), batch "
                f"{r['batch']} | {r['step_ms']:.1f} | {r['images_per_s']:.0f} | "
                f"{r['allreduce_ms']:.2f} | {100 * r['allreduce_share']:.1f}% | "
                f"{r['allreduce_pure_ms']:.2f} | {100 * r['allreduce_pure_share']:.2f}% | "
                f"{r.get('throughput_vs_1x2', 1.0):.2f} |"
            )
        else:
            out.append(
                f"| all-reduce of {r['numel'] / 1e6:.2f}M float32 ({r['mbytes']:.0f} MB), "
                f"2 ranks | | | | | {r['allreduce_ms']:.1f} (bus {r['bus_gb_s']:.2f} GB/s, "
                f"8-byte latency {r['latency_us']:.1f} us) | | |"
            )
    return out


# -- the worker (runs on each rank) ---------------------------------------------------------


def _worker_train(batch: int, steps: int, warmup: int = 3, model_name: str = "resnet20",
                  size: int = 32) -> dict[str, Any] | None:  # fmt: skip
    import numpy as np

    import minires as mr
    import minires.functional as F
    from minires import training
    from minires.distributed import DataParallel, get_comm, split_counts
    from minires.models import get_model

    comm = get_comm()
    mr.manual_seed(0)
    model = get_model(model_name, num_classes=10 if size == 32 else 1000)
    opt = training.build_optimizer(model, "sgd", lr=0.01)
    dp = DataParallel(model, opt)
    dp.broadcast_state()
    rng = np.random.default_rng(comm.rank)
    n_local = split_counts(batch, comm.size)[comm.rank]
    x = mr.tensor(rng.standard_normal((n_local, 3, size, size)).astype(np.float32))
    y = mr.tensor(rng.integers(0, 10, n_local))
    dp.n_global = batch
    step_t, ar_t = [], []
    for i in range(warmup + steps):
        comm.barrier()
        t0 = time.perf_counter()
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        dp.backward(loss, n_local)
        t1 = time.perf_counter()
        dp.allreduce_gradients()
        t2 = time.perf_counter()
        opt.step()
        t3 = time.perf_counter()
        if i >= warmup:
            step_t.append(t3 - t0)
            ar_t.append(t2 - t1)
    # Pure communication: the same all-reduce right after a barrier (no waiting for a
    # slower rank), as the scaling model counts it.
    pure = []
    flat = np.ones(sum(p.data.size for p in model.parameters()), np.float32)
    for _ in range(30):
        comm.barrier()
        t0 = time.perf_counter()
        comm.allreduce_(flat)
        pure.append(time.perf_counter() - t0)
    # the slowest rank's step is the job's step
    stats = np.array([np.median(step_t), np.median(ar_t), np.median(pure)])
    allst = comm.allgather_(stats)
    if not comm.is_root:
        return None
    step = float(allst[:, 0].max())
    ar = float(allst[:, 1].max())
    pure_ar = float(allst[:, 2].max()) if comm.size > 1 else 0.0
    return {"step_ms": 1e3 * step, "images_per_s": batch / step, "allreduce_ms": 1e3 * ar,
            "allreduce_share": ar / step, "allreduce_pure_ms": 1e3 * pure_ar,
            "allreduce_pure_share": pure_ar / step, "steps": steps,
            "params": sum(p.data.size for p in model.parameters())}  # fmt: skip


def _worker_allreduce(numel: int, reps: int = 7) -> dict[str, Any] | None:
    import numpy as np

    from minires.distributed import get_comm

    comm = get_comm()
    buf = np.ones(numel, np.float32)
    small = np.ones(2, np.float32)
    times, lat = [], []
    for _ in range(reps + 1):
        comm.barrier()
        t0 = time.perf_counter()
        comm.allreduce_(buf)
        times.append(time.perf_counter() - t0)
    for _ in range(200):
        comm.barrier()
        t0 = time.perf_counter()
        comm.allreduce_(small)
        lat.append(time.perf_counter() - t0)
    t = float(np.median(times[1:]))
    if not comm.is_root:
        return None
    n = comm.size
    nbytes = buf.nbytes
    return {"allreduce_ms": 1e3 * t, "mbytes": nbytes / 1e6,
            # ring all-reduce moves 2(N-1)/N x bytes per rank: its "bus bandwidth"
            "bus_gb_s": 2 * (n - 1) / n * nbytes / t / 1e9,
            "latency_us": 1e6 * float(np.median(lat))}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m minires.benchmarks.distributed")
    sub = p.add_subparsers(dest="cmd", required=True)
    w = sub.add_parser("worker")
    w.add_argument("what", choices=["train", "allreduce"])
    w.add_argument("--batch", type=int, default=64)
    w.add_argument("--steps", type=int, default=12)
    w.add_argument("--numel", type=int, default=RESNET50_PARAMS)
    w.add_argument("--model", default="resnet20")
    w.add_argument("--size", type=int, default=32)
    w.add_argument("--warmup", type=int, default=3)
    args = p.parse_args(argv)
    from minires.distributed import guard

    def work() -> int:
        if args.what == "train":
            res = _worker_train(args.batch, args.steps, args.warmup, args.model, args.size)
        else:
            res = _worker_allreduce(args.numel)
        if res is not None:
            res["threads"] = int(os.environ.get("NUMBA_NUM_THREADS", "0") or 0)
            print(json.dumps(res), flush=True)
        return 0

    return guard(work)


if __name__ == "__main__":
    sys.exit(main())
