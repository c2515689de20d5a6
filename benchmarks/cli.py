"""Command line of the benchmark: ``python -m minires.benchmarks`` or ``minires bench``."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from minires.benchmarks.specs import layer_sweep
from minires.benchmarks.sweep import DEFAULT_BACKENDS, SECTIONS, BenchConfig, run
from minires.commands._args import (
    Parser,
    non_negative_float,
    non_negative_int,
    positive_float,
    positive_int,
    writable_dir,
)

EPILOG = """\
examples:
  python -m minires.benchmarks --quick                      # < 2 min on 2 cores
  python -m minires.benchmarks                              # full run, < 15 min on 2 cores
  python -m minires.benchmarks --batch 16 --size 28 --only layers --backends numba,torch
  minires bench --list                              # the layers of the sweep

Outputs (in --out): results.csv, results.json, summary.md, cardinality.png, layers.png,
roofline.png, logs/ (each worker's stderr).
"""


def _csv(s: str) -> list[str]:
    return [x.strip() for x in s.split(",") if x.strip()]


def build_parser(prog: str = "python -m minires.benchmarks") -> argparse.ArgumentParser:
    p = Parser(
        prog=prog,
        description="Time grouped vs dense vs depthwise convolution (minires Numba, minires "
        "NumPy reference, PyTorch NCHW and channels_last), each backend in its own process; "
        "check every result against the NumPy reference before timing it.",
        epilog=EPILOG.replace("python -m minires.benchmarks", prog),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--quick", action="store_true", help="small batches, few repetitions")
    p.add_argument(
        "--out", type=Path, default=None, help="output directory (default bench-results/<UTC time>)"
    )
    p.add_argument("--batch", type=positive_int, help="layer-sweep batch size (full 8, quick 2)")
    p.add_argument(
        "--size",
        type=positive_int,
        default=56,
        help="conv2-stage resolution; conv3 runs at half (default 56)",
    )
    p.add_argument(
        "--layers",
        default="all",
        help="'all', 'conv2', or comma-separated substrings of layer names",
    )
    p.add_argument(
        "--backends",
        default=",".join(DEFAULT_BACKENDS),
        help=f"comma-separated subset of {','.join(DEFAULT_BACKENDS)}",
    )
    p.add_argument(
        "--threads", type=positive_int, help="threads per backend (default: physical cores)"
    )
    p.add_argument("--only", help=f"comma-separated sections to run: {','.join(SECTIONS)}")
    p.add_argument("--skip", default="", help="comma-separated sections to skip")
    p.add_argument("--reps", type=positive_int, help="minimum timed repetitions (full 5, quick 3)")
    p.add_argument(
        "--warmup", type=non_negative_int, help="warm-up calls before timing (full 2, quick 1)"
    )
    p.add_argument(
        "--min-time",
        type=non_negative_float,
        help="repeat until this many seconds per layer (full 0.3, quick 0.05; 0: just --reps)",
    )
    p.add_argument(
        "--layer-rounds",
        type=positive_int,
        help="split a layer's repetitions into this many rounds, every backend in turn in "
        "each (full 3, quick 1)",
    )
    p.add_argument(
        "--model-batch", type=positive_int, help="ImageNet-model batch (full 2, quick 1)"
    )
    p.add_argument(
        "--model-reps", type=positive_int, help="timed steps per block/model row (full 5, quick 1)"
    )
    p.add_argument(
        "--block-batch", type=positive_int, help="bottleneck-block batch (default = --batch)"
    )
    p.add_argument(
        "--cifar-batch", type=positive_int, default=64, help="resnet20 batch (default 64)"
    )
    p.add_argument(
        "--numpy-models",
        action="store_true",
        help="also time the NumPy reference on resnet50/resnext50 (slow)",
    )
    p.add_argument(
        "--tol",
        type=positive_float,
        default=1e-3,
        help="max relative error vs the NumPy reference (default 1e-3)",
    )
    p.add_argument(
        "--peak-gflops",
        type=positive_float,
        help="FP32 peak (GFLOP/s) for %% peak instead of the measured FMA peak",
    )
    p.add_argument(
        "--keep-openblas-env",
        action="store_true",
        help="do not unset OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE in the workers",
    )
    p.add_argument(
        "--autotune",
        action="store_true",
        help="run minires with MINIRES_AUTOTUNE=1: each conv pass times its candidate "
        "algorithms on first use and keeps the fastest (the row's plan shows the choice)",
    )
    p.add_argument("--no-plots", action="store_true")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--list", action="store_true", help="list the sweep's layers and exit")
    return p


def config_from_args(args: argparse.Namespace) -> BenchConfig:
    out = args.out or Path("bench-results") / time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    sections = _csv(args.only) if args.only else list(SECTIONS)
    skip = set(_csv(args.skip))
    bad = [s for s in [*sections, *skip] if s not in SECTIONS]
    if bad:
        raise SystemExit(f"unknown section(s) {bad}; sections are {', '.join(SECTIONS)}")
    backends = _csv(args.backends)
    bad = [b for b in backends if b not in DEFAULT_BACKENDS]
    if bad:
        raise SystemExit(f"unknown backend(s) {bad}; backends are {', '.join(DEFAULT_BACKENDS)}")
    overrides = {
        "size": args.size, "layers": args.layers, "backends": backends,
        "sections": [s for s in sections if s not in skip], "tol": args.tol,
        "cifar_batch": args.cifar_batch, "numpy_models": args.numpy_models,
        "peak_gflops": args.peak_gflops, "unset_openblas_env": not args.keep_openblas_env,
        "plots": not args.no_plots, "progress": not args.no_progress,
        "autotune": args.autotune,
    }  # fmt: skip
    for name in ("batch", "threads", "reps", "warmup", "min_time", "model_batch",
                 "block_batch", "model_reps", "layer_rounds"):  # fmt: skip
        v = getattr(args, name)
        if v is not None:
            overrides[name] = v
    if "block_batch" not in overrides and "batch" in overrides:
        overrides["block_batch"] = overrides["batch"]
    if args.quick:
        return BenchConfig.quick_preset(out, **overrides)
    return BenchConfig(out_dir=out, **overrides)


def main(argv: list[str] | None = None, prog: str = "python -m minires.benchmarks") -> int:
    """Run the benchmark; prints the Markdown summary and where the files went."""
    args = build_parser(prog).parse_args(argv)
    if args.list:
        for s in layer_sweep(args.batch or 1, args.size):
            print(f"{s.name:32s} {s.c_in:4d}->{s.c_out:<4d} groups={s.groups:<4d} "
                  f"k={s.kernel} {s.size}x{s.size}  {s.gflop * 1e3:8.1f} MFLOP/image fwd  "
                  f"{s.intensity:6.1f} FLOP/B")  # fmt: skip
        return 0
    try:
        cfg = config_from_args(args)
        layer_sweep(cfg.batch, cfg.size, cfg.layers)  # validate before starting workers
    except ValueError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    problem = writable_dir(str(cfg.out_dir), prog)
    if problem:
        print(problem, file=sys.stderr)
        return 2
    from minires.benchmarks.plots import write_plots
    from minires.benchmarks.report import markdown, write_all

    results = run(cfg)
    paths = write_all(results, cfg.out_dir)
    if cfg.plots:
        paths.update(write_plots(results, cfg.out_dir))
    print(markdown(results))
    print("\nwrote:\n" + "\n".join(f"  {p}" for p in paths.values()))
    if results.get("interrupted"):
        print("interrupted: the files above hold the rows measured so far", file=sys.stderr)
        return 130
    bad = [r for r in results["rows"] if r.get("status") == "MISMATCH"]
    return 1 if bad else 0
