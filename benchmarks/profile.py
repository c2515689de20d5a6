"""Where a minires training step's time goes, per op type.

    python -m minires.benchmarks.profile resnet20 --batch 64
    python -m minires.benchmarks.profile resnext50_32x4d --batch 2 --size 224 --mode fwdbwd
    python -m minires.benchmarks.profile resnet20 --batch 64 --json /tmp/prof.json --layers

How: every `minires.Function` subclass gets its ``forward`` / ``backward`` wrapped in a
wall-clock timer, and the three conv kernels of the active backend (``conv2d_forward``,
``conv2d_backward_input``, ``conv2d_backward_weight``) are timed on their own, so the
conv rows split into forward / backward-input / backward-weight. The op's backward calls
``conv2d_backward`` (both gradients), which calls the two backward kernels - timed there
too - or computes both in one sweep (the depthwise 3x3): that time is its own row. The
step is timed in phases (zero_grad, forward incl. loss, backward, SGD update); what a phase spends
outside any Function is reported as overhead: module calls, argument checks and
``Function.apply`` in the forward, the graph walk and the summing of gradients that
meet (the residual joins) in the backward. The step is the one of ``python -m
benchmarks`` (train: zero_grad, forward, cross-entropy, backward, ``p -= lr * grad``).

Unprofiled steps are timed first (the "step" row of the report: the number to compare
with the benchmark), then profiled steps; each category's time is the median over the
profiled steps. Thread counts follow the benchmark: ``--threads`` (default: the
machine's cores) is written into OMP/OPENBLAS/MKL/NUMBA_NUM_THREADS before NumPy is
imported, unless already set.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

# op class name -> category of the report (anything else is reported under its own name)
CATEGORIES = {
    "Conv2d": "conv",
    "BatchNormTrain": "batchnorm",
    "BatchNormEval": "batchnorm",
    "ReLU": "relu",
    "ReLUInPlace": "relu",
    "AddReLU": "add+relu",
    "Add": "add",
    "MaxPool2d": "pool",
    "AvgPool2d": "pool",
    "AdaptiveAvgPool2d": "pool",
    "GetItem": "shortcut (slice/pad)",
    "Pad": "shortcut (slice/pad)",
    "ShortcutA": "shortcut (slice/pad)",
    "Linear": "linear",
    "MatMul": "linear",
    "CrossEntropy": "loss",
    "LogSoftmax": "loss",
    "Reshape": "reshape/flatten",
    "Transpose": "reshape/flatten",
}
CONV_KERNELS = {
    "conv2d_forward": "fwd",
    "conv2d_backward_input": "bwd-input",
    "conv2d_backward_weight": "bwd-weight",
    # both gradients in one call: only its one-sweep path counts here (when it calls the
    # two kernels above, they are timed as themselves)
    "conv2d_backward": "bwd-both",
}
PHASES = ("zero_grad", "forward", "backward", "update")


def _set_thread_env(n: int) -> None:
    for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
        os.environ.setdefault(k, str(n))


class StepProfiler:
    """Times Function forward/backward calls and the conv kernels while `active`.

    ``install()`` patches the classes and the kernel module once; ``times`` maps
    (category, pass) -> seconds accumulated since the last ``reset()``; ``calls`` counts
    the calls; ``layers`` maps a conv's geometry -> pass -> seconds.
    """

    def __init__(self) -> None:
        self.active = False
        self.times: dict[tuple[str, str], float] = defaultdict(float)
        self.calls: dict[tuple[str, str], int] = defaultdict(int)
        self.layers: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
        self._patched: list[tuple[Any, str, Any]] = []
        self._open: list[list[int]] = []  # conv kernel calls inside the running bwd-both

    def reset(self) -> None:
        self.times.clear()
        self.calls.clear()
        self.layers.clear()

    # -- patching -------------------------------------------------------------------------

    def _timed(self, func, category: str, pas: str, per_layer: bool = False):
        """`func` timed into (category, pas); a conv kernel (`per_layer`) also into its
        layer's row (`_conv_key` of its arguments). A "bwd-both" call counts only when it
        ran no other conv kernel (its one-sweep path)."""
        prof = self

        def wrapper(*args, **kwargs):
            if not prof.active:
                return func(*args, **kwargs)
            if per_layer and prof._open:
                prof._open[-1][0] += 1
            if pas == "bwd-both":
                prof._open.append([0])
            t0 = time.perf_counter()
            try:
                return func(*args, **kwargs)
            finally:
                dt = time.perf_counter() - t0
                # a bwd-both that ran the two backward kernels: timed as themselves
                if pas != "bwd-both" or not prof._open.pop()[0]:
                    prof.times[(category, pas)] += dt
                    prof.calls[(category, pas)] += 1
                    if per_layer:
                        key = _conv_key(pas, args)
                        prof.layers[key][pas] += dt
                        prof.layers[key]["calls:" + pas] += 1

        return wrapper

    def install(self) -> None:
        from minires.autograd import Function
        from minires.backend import kernels

        seen: set[type] = set()
        todo = list(Function.__subclasses__())
        while todo:
            cls = todo.pop()
            if cls in seen:
                continue
            seen.add(cls)
            todo.extend(cls.__subclasses__())
            cat = CATEGORIES.get(cls.__name__, cls.__name__)
            for pas in ("forward", "backward"):
                if pas not in cls.__dict__:  # inherited: the base class is patched
                    continue
                orig = cls.__dict__[pas]
                func = orig.__func__ if isinstance(orig, staticmethod) else orig
                self._patched.append((cls, pas, orig))
                setattr(cls, pas, staticmethod(self._timed(func, cat, pas)))
        k = kernels()
        # conv2d_backward calls the two backward kernels of its own module, not k's
        home = sys.modules[k.conv2d_backward.__module__]
        for name, pas in CONV_KERNELS.items():
            orig = getattr(k, name)
            self._patched.append((k, name, orig))
            setattr(k, name, self._timed(orig, "conv kernel", pas, per_layer=True))
        for name in ("conv2d_backward_input", "conv2d_backward_weight"):
            orig = getattr(home, name, None)
            if home is not k and orig is not None:
                self._patched.append((home, name, orig))
                wrapped = self._timed(orig, "conv kernel", CONV_KERNELS[name], per_layer=True)
                setattr(home, name, wrapped)

    def uninstall(self) -> None:
        for obj, name, orig in reversed(self._patched):
            setattr(obj, name, orig)
        self._patched.clear()


def _conv_key(pas: str, args: tuple) -> str:
    """'N x Cin x H x W -> Cout, k, stride, groups' of a conv kernel call."""
    if pas == "fwd":
        x, w, _b, stride, _pad, _dil, groups = args[:7]
        xs = x.shape
    elif pas == "bwd-input":
        _g, w, xs, stride, _pad, _dil, groups = args[:7]
    elif pas == "bwd-both":
        _g, x, w, stride, _pad, _dil, groups = args[:7]
        xs = x.shape
    else:
        x, _g, ws, stride, _pad, _dil, groups = args[:7]
        xs = x.shape
        w = None
    wshape = w.shape if w is not None else ws
    n, c, h, wd = xs
    key = f"{n}x{c}x{h}x{wd} -> {wshape[0]}, {wshape[2]}x{wshape[3]}, s{stride[0]}"
    return key + (f", g{groups}" if groups != 1 else "")


def _conv_flops(key: str) -> float:
    """2 * MACs of one pass of the conv described by `_conv_key` (stride and padding as
    the models use them: 3x3 pad 1, 1x1 pad 0)."""
    inp, rest = key.split(" -> ")
    n, c, h, w = (int(v) for v in inp.split("x"))
    parts = [p.strip() for p in rest.split(",")]
    cout = int(parts[0])
    kh, kw = (int(v) for v in parts[1].split("x"))
    s = int(parts[2][1:])
    g = int(parts[3][1:]) if len(parts) > 3 else 1
    ho = (h + 2 * (kh // 2) - kh) // s + 1
    wo = (w + 2 * (kw // 2) - kw) // s + 1
    return 2.0 * n * cout * ho * wo * (c // g) * kh * kw


def build_step(model_name: str, batch: int, size: int | None, mode: str, seed: int = 0):
    """The model, its inputs and the four phases of one step (as `benchmarks.worker`)."""
    import numpy as np

    import minires as mr
    import minires.functional as F
    import minires.models as models

    mr.manual_seed(seed)
    model = getattr(models, model_name)()
    model.train()
    shape = models.input_shape_for(model_name)
    if size is not None:
        shape = (shape[0], size, size)
    rng = np.random.default_rng(seed + 1)
    x = rng.standard_normal((batch, *shape), dtype=np.float32)
    num_classes = model.fc.out_features if hasattr(model, "fc") else 10
    y = rng.integers(0, num_classes, size=batch).astype(np.int64)
    params = list(model.parameters())
    lr = 0.01
    state: dict[str, Any] = {}

    def zero_grad():
        model.zero_grad()

    def forward():
        out = model(mr.Tensor(x))
        state["loss"] = out.mean() if mode == "block" else F.cross_entropy(out, y)

    def backward():
        state.pop("loss").backward()

    def update():
        if mode == "train":
            for p in params:
                p.data -= lr * p.grad

    return model, {
        "zero_grad": zero_grad,
        "forward": forward,
        "backward": backward,
        "update": update,
    }


def _median(values: list[float]) -> float:
    import numpy as np

    return float(np.median(values)) if values else 0.0


def profile(
    model_name: str,
    batch: int,
    size: int | None = None,
    mode: str = "train",
    steps: int = 7,
    warmup: int = 2,
    plain_steps: int = 7,
) -> dict[str, Any]:
    """Run the step, return the report as a dict (see `format_table` for the layout)."""
    import numba
    import numpy as np

    import minires as mr

    _model, phases = build_step(model_name, batch, size, mode)
    for _ in range(warmup):
        for ph in PHASES:
            phases[ph]()
    plain, plain_cpu = [], []
    for _ in range(plain_steps):
        t0, c0 = time.perf_counter(), time.process_time()
        for ph in PHASES:
            phases[ph]()
        plain.append(time.perf_counter() - t0)
        plain_cpu.append(time.process_time() - c0)

    prof = StepProfiler()
    prof.install()
    per_step: list[dict[str, float]] = []
    layer_steps: list[dict[str, dict[str, float]]] = []
    calls: dict[tuple[str, str], int] = {}
    try:
        for _ in range(steps):
            prof.reset()
            prof.active = True
            rec: dict[str, float] = {}
            t_step = time.perf_counter()
            for ph in PHASES:
                before = sum(prof.times[k] for k in prof.times if k[0] != "conv kernel")
                t0 = time.perf_counter()
                phases[ph]()
                dt = time.perf_counter() - t0
                after = sum(prof.times[k] for k in prof.times if k[0] != "conv kernel")
                rec[f"phase:{ph}"] = dt
                rec[f"overhead:{ph}"] = dt - (after - before)
            rec["step"] = time.perf_counter() - t_step
            prof.active = False
            for (cat, pas), t in prof.times.items():
                rec[f"{cat}|{pas}"] = t
            per_step.append(rec)
            layer_steps.append({k: dict(v) for k, v in prof.layers.items()})
            calls = dict(prof.calls)
    finally:
        prof.active = False
        prof.uninstall()

    keys = sorted({k for r in per_step for k in r})
    med = {k: _median([r.get(k, 0.0) for r in per_step]) for k in keys}
    rows = _rows(med)
    total = med["step"]
    layers = {}
    for key in sorted({k for s in layer_steps for k in s}):
        d = {}
        for pas in CONV_KERNELS.values():
            t = _median([s.get(key, {}).get(pas, 0.0) for s in layer_steps])
            d[pas + "_ms"] = t * 1e3
        d["total_ms"] = sum(d.values())
        # layers of one geometry per step, and the passes they ran (the stem has no bwd-input)
        d["layers"] = max(
            int(layer_steps[-1].get(key, {}).get("calls:" + p, 0)) for p in CONV_KERNELS.values()
        )
        passes = sum(  # a one-sweep backward is both backward passes
            layer_steps[-1].get(key, {}).get("calls:" + p, 0) * (2 if p == "bwd-both" else 1)
            for p in CONV_KERNELS.values()
        )
        flops = passes * _conv_flops(key)
        d["gflops_per_s"] = flops / (d["total_ms"] * 1e-3) / 1e9 if d["total_ms"] else 0.0
        layers[key] = d
    non_conv = sum(r["ms"] for r in rows if r["group"] == "op" and not r["name"].startswith("conv"))
    conv = sum(r["ms"] for r in rows if r["group"] == "op" and r["name"].startswith("conv"))
    overhead = sum(r["ms"] for r in rows if r["group"] == "overhead")
    return {
        "model": model_name,
        "batch": batch,
        "input_size": size,
        "mode": mode,
        "backend": mr.get_backend(),
        "threads": numba.get_num_threads(),
        "numpy": np.__version__,
        "numba": numba.__version__,
        "plain_step_ms": {
            "median": _median(plain) * 1e3,
            "min": min(plain) * 1e3,
            "all": [t * 1e3 for t in plain],
        },
        # CPU seconds of all threads per step: steadier than wall time on a shared machine
        "plain_step_cpu_ms": _median(plain_cpu) * 1e3,
        "profiled_step_ms": total * 1e3,
        "images_per_s": batch / _median(plain),
        "rows": rows,
        "shares": {
            "conv": conv / (total * 1e3),
            "non_conv_ops": non_conv / (total * 1e3),
            "overhead": overhead / (total * 1e3),
        },
        "calls_per_step": {f"{c}|{p}": n for (c, p), n in sorted(calls.items())},
        "conv_layers": layers,
        "loadavg": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def _rows(med: dict[str, float]) -> list[dict[str, Any]]:
    """Per-category rows (ms) from the per-key medians."""
    rows: list[dict[str, Any]] = []
    ops = sorted({k.split("|")[0] for k in med if "|" in k} - {"conv kernel"})
    for cat in ops:
        fwd, bwd = med.get(f"{cat}|forward", 0.0), med.get(f"{cat}|backward", 0.0)
        if cat == "conv":
            kf = med.get("conv kernel|fwd", 0.0)
            ki = med.get("conv kernel|bwd-input", 0.0)
            kw = med.get("conv kernel|bwd-weight", 0.0)
            kb = med.get("conv kernel|bwd-both", 0.0)
            rows.append(_row("op", "conv fwd", kf))
            rows.append(_row("op", "conv bwd-input", ki))
            rows.append(_row("op", "conv bwd-weight", kw))
            rows.append(_row("op", "conv bwd-input+weight (one sweep)", kb))
            glue = fwd + bwd - kf - ki - kw - kb
            rows.append(_row("op", "conv op glue (bias grad, checks)", glue))
            continue
        rows.append(_row("op", f"{cat} fwd", fwd))
        rows.append(_row("op", f"{cat} bwd", bwd))
    rows.append(_row("overhead", "forward: modules, checks, apply", med.get("overhead:forward", 0)))
    rows.append(
        _row("overhead", "backward: graph walk, grad sums", med.get("overhead:backward", 0))
    )
    rows.append(_row("overhead", "zero_grad", med.get("overhead:zero_grad", 0)))
    rows.append(_row("overhead", "SGD update", med.get("overhead:update", 0)))
    total = med["step"] * 1e3
    for r in rows:
        r["share"] = r["ms"] / total if total else 0.0
    # medians of parts need not add up to the median of the whole: say by how much
    rows.append(
        _row(
            "check",
            "unattributed (median mismatch)",
            total / 1e3 - sum(r["ms"] for r in rows) / 1e3,
        )
    )
    rows[-1]["share"] = rows[-1]["ms"] / total if total else 0.0
    return rows


def _row(group: str, name: str, seconds: float) -> dict[str, Any]:
    return {"group": group, "name": name, "ms": seconds * 1e3}


def format_table(rep: dict[str, Any], layers: bool = False) -> str:
    """The report as a Markdown table (plus the per-conv-layer table when asked)."""
    size = f" {rep['input_size']}x{rep['input_size']}" if rep["input_size"] else ""
    lines = [
        f"## {rep['model']} {rep['mode']} step, batch {rep['batch']}{size}, "
        f"{rep['backend']} backend, {rep['threads']} threads ({rep['time_utc']}, "
        f"load {', '.join(f'{v:.1f}' for v in rep['loadavg'] or ())})",
        "",
        f"step (unprofiled): median {rep['plain_step_ms']['median']:.1f} ms, "
        f"min {rep['plain_step_ms']['min']:.1f} ms, {rep['images_per_s']:.0f} img/s, "
        f"CPU time (all threads) {rep['plain_step_cpu_ms']:.0f} ms/step; "
        f"profiled step median {rep['profiled_step_ms']:.1f} ms",
        "",
        "| op type | ms | share |",
        "|---|---:|---:|",
    ]
    for r in rep["rows"]:
        if abs(r["ms"]) < 0.005 and r["group"] == "op":
            continue
        lines.append(f"| {r['name']} | {r['ms']:.1f} | {100 * r['share']:.1f}% |")
    s = rep["shares"]
    lines += [
        "",
        f"**conv {100 * s['conv']:.1f}% | non-conv ops {100 * s['non_conv_ops']:.1f}% | "
        f"autograd/Python overhead {100 * s['overhead']:.1f}%**",
    ]
    if layers:
        lines += [
            "",
            "| conv geometry (N x Cin x H x W -> Cout, k, stride, groups) | layers | fwd ms "
            "| bwd-in ms | bwd-w ms | bwd-in+w (one sweep) ms | total ms | GFLOP/s |",
            "|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for key, d in rep["conv_layers"].items():
            lines.append(
                f"| {key} | {d['layers']} | {d['fwd_ms']:.2f} | {d['bwd-input_ms']:.2f} | "
                f"{d['bwd-weight_ms']:.2f} | {d['bwd-both_ms']:.2f} | {d['total_ms']:.2f} | "
                f"{d['gflops_per_s']:.0f} |"
            )
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m minires.benchmarks.profile",
        description="Per-op-type time shares of one minires training step.",
    )
    p.add_argument("model", help="a minires.models name, e.g. resnet20, resnext50_32x4d")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--size", type=int, help="input resolution (default: the model's own)")
    p.add_argument(
        "--mode",
        choices=("train", "fwdbwd", "block"),
        default="train",
        help="train: fwd+loss+bwd+SGD (default); fwdbwd: no update",
    )
    p.add_argument("--steps", type=int, default=7, help="profiled steps (median)")
    p.add_argument("--plain-steps", type=int, default=7, help="unprofiled timed steps")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, help="threads (default: os.cpu_count())")
    p.add_argument("--backend", default="numba", choices=("numba", "numpy"))
    p.add_argument("--json", type=Path, help="write the report here (default: print only)")
    p.add_argument("--layers", action="store_true", help="also print the per-conv-layer table")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _set_thread_env(args.threads or os.cpu_count() or 1)
    import minires as mr

    mr.set_backend(args.backend)
    rep = profile(
        args.model,
        args.batch,
        args.size,
        args.mode,
        steps=args.steps,
        warmup=args.warmup,
        plain_steps=args.plain_steps,
    )
    print(format_table(rep, layers=args.layers))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(rep, indent=1))
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
