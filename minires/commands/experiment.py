"""``minires experiment``: reproduce a paper result on a CPU.

minires experiment degradation                     # plain vs residual, depths 8 and 20
minires experiment degradation --depths 20 56 --epochs 30
minires experiment degradation --family preact     # pre-activation nets, depths 8 and 20
minires experiment cardinality                     # ResNeXt Table 3 templates, 3 seeds each
"""

from __future__ import annotations

import argparse
import sys

from minires.commands._args import (
    Parser,
    cifar_depth,
    non_negative_float,
    non_negative_int,
    positive_float,
    positive_int,
    unit_interval,
    writable_dir,
)
from minires.experiments import CARDINALITY_DEFAULTS as CD
from minires.experiments import DEGRADATION_DEFAULTS as D
from minires.experiments import FAMILIES


def build_parser() -> argparse.ArgumentParser:
    p = Parser(
        prog="minires experiment",
        description="Run a paper experiment; settings and results go to --out as JSON and PNG.",
    )
    sub = p.add_subparsers(dest="name", required=True, metavar="EXPERIMENT")
    d = sub.add_parser(
        "degradation",
        help="He et al. Fig. 6: plain vs residual nets at two depths, training error per epoch",
        description="Train plain and residual CIFAR-style nets (depth 6n+2) at each depth with "
        "one recipe and plot training error per epoch (--family preact: pre-activation nets, "
        "He et al. 2016b). Finished runs in --out are reused and interrupted ones resumed, "
        "so Ctrl-C and re-running is safe.",
    )
    d.add_argument(
        "--family",
        default=D["family"],
        choices=list(FAMILIES),
        help="resnet: plain vs post-activation residual nets (Fig. 6, the default); preact: "
        "pre-activation residual nets, does the deeper one train at least as well?",
    )
    d.add_argument(
        "--depths",
        type=cifar_depth,
        nargs="+",
        default=D["depths"],
        help=f"depths 6n+2 (default {D['depths']})",
    )
    d.add_argument(
        "--dataset", default=D["dataset"],
        choices=["digits", "cifar10", "cifar100", "mnist", "fashion-mnist", "synthetic"],
    )  # fmt: skip
    d.add_argument("--download", action="store_true", help="download --dataset if missing")
    d.add_argument(
        "--data-root", default=None, help="data folder (default $MINIRES_DATA or ~/.cache/minires)"
    )
    d.add_argument("--epochs", type=positive_int, default=D["epochs"])
    d.add_argument("--batch-size", type=positive_int, default=D["batch_size"])
    d.add_argument("--lr", type=positive_float, default=D["lr"])
    d.add_argument("--momentum", type=unit_interval, default=D["momentum"])
    d.add_argument("--weight-decay", type=non_negative_float, default=D["weight_decay"])
    d.add_argument(
        "--schedule", default=D["schedule"], choices=["constant", "step", "multistep", "cosine"]
    )
    d.add_argument("--warmup", type=non_negative_int, default=D["warmup"])
    d.add_argument("--augment", action=argparse.BooleanOptionalAction, default=D["augment"])
    d.add_argument("--seed", type=non_negative_int, default=D["seed"])
    d.add_argument("--backend", choices=["numba", "numpy"], default=None)
    d.add_argument(
        "--out", default=None,
        help="folder (default runs/degradation, runs/degradation-preact for --family preact)",
    )  # fmt: skip
    d.add_argument("--no-progress", action="store_true")

    c = sub.add_parser(
        "cardinality",
        help="ResNeXt Table 3: cardinality vs width at preserved complexity, several seeds",
        description="Train the preserved-complexity templates (1x64d, 2x40d, 4x24d, 8x14d, "
        "32x4d) as CIFAR-style ResNeXts (depth 9n+2, widths base_planes*C*d/64 at stage 1) "
        "with one recipe and several seeds; report mean and spread of the test error and "
        "whether any trend is larger than the seed-to-seed spread. Finished runs in --out "
        "are reused, so Ctrl-C and re-running is safe.",
    )
    c.add_argument("--templates", nargs="+", default=CD["templates"],
                   help=f"CxDd templates (default {' '.join(CD['templates'])})")  # fmt: skip
    c.add_argument("--seeds", type=non_negative_int, nargs="+", default=CD["seeds"])
    c.add_argument("--depth", type=positive_int, default=CD["depth"], help="9n+2 (default 11)")
    c.add_argument("--base-planes", type=positive_int, default=CD["base_planes"],
                   help="stage-1 planes P (outputs 4P, 8P, 16P); 64 = the paper's "
                   "ResNeXt-29 (default 32: every width halved)")  # fmt: skip
    c.add_argument("--stem-width", type=positive_int, default=CD["stem_width"])
    c.add_argument("--dataset", default=CD["dataset"], choices=["digits", "cifar10", "synthetic"])
    c.add_argument("--data-root", default=None, help="folder holding cifar-10-batches-py")
    c.add_argument("--epochs", type=positive_int, default=CD["epochs"])
    c.add_argument("--batch-size", type=positive_int, default=CD["batch_size"])
    c.add_argument("--lr", type=positive_float, default=CD["lr"])
    c.add_argument("--momentum", type=unit_interval, default=CD["momentum"])
    c.add_argument("--weight-decay", type=non_negative_float, default=CD["weight_decay"])
    c.add_argument(
        "--schedule", default=CD["schedule"], choices=["constant", "step", "multistep", "cosine"]
    )
    c.add_argument("--augment", action=argparse.BooleanOptionalAction, default=CD["augment"])
    c.add_argument("--limit", type=positive_int, default=None,
                   help="train and test on the first N samples only (quick checks)")  # fmt: skip
    c.add_argument("--backend", choices=["numba", "numpy"], default=None)
    c.add_argument("--out", default="runs/cardinality")
    c.add_argument("--no-progress", action="store_true")
    return p


def _cardinality(args: argparse.Namespace) -> int:
    from minires.experiments import cardinality

    try:
        result = cardinality(
            templates=args.templates, seeds=args.seeds, depth=args.depth,
            base_planes=args.base_planes, stem_width=args.stem_width, dataset=args.dataset,
            epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
            momentum=args.momentum, weight_decay=args.weight_decay, schedule=args.schedule,
            augment=args.augment, limit=args.limit, out_dir=args.out,
            data_root=args.data_root, progress=not args.no_progress,
        )  # fmt: skip
    except (ValueError, FileNotFoundError) as exc:
        print(f"minires experiment cardinality: {exc}", file=sys.stderr)
        return 2
    if result["interrupted"]:
        print("interrupted; run the same command again to continue", file=sys.stderr)
        return 130
    print(f"{'template':<8} {'widths (3x3)':<16} {'params':>9} {'mult-adds':>11} "
          f"{'test error: mean +- s.d. (seeds)':>34}")  # fmt: skip
    for t, v in result["templates"].items():
        errs = " ".join(f"{100 * e:.2f}" for e in v["errors"].values())
        sd = f"{100 * v['std_error']:.2f}" if v["std_error"] is not None else "-"
        widths = "/".join(map(str, v["widths_3x3"]))
        print(f"{t:<8} {widths:<16} {v['params']:>9,} {v['mult_adds']:>11,} "
              f"{100 * v['mean_error']:>6.2f}% +- {sd}  ({errs})")  # fmt: skip
    print(result["findings"]["summary"])
    print(f"results: {args.out}/cardinality.json, plot: {args.out}/cardinality.png")
    return 0


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    import minires as mr
    from minires.experiments import degradation

    if args.out is None:
        args.out = "runs/degradation" + ("" if args.family == "resnet" else f"-{args.family}")
    problem = writable_dir(args.out, "minires experiment")
    if problem:
        print(problem, file=sys.stderr)
        return 2
    if args.backend:
        mr.set_backend(args.backend)
    if args.name == "cardinality":
        return _cardinality(args)
    try:
        if args.download:
            from minires.data import make_loaders

            make_loaders(args.dataset, root=args.data_root, download=True)
        result = degradation(
            depths=args.depths,
            dataset=args.dataset,
            epochs=args.epochs,
            batch_size=args.batch_size,
            lr=args.lr,
            momentum=args.momentum,
            weight_decay=args.weight_decay,
            schedule=args.schedule,
            warmup=args.warmup,
            augment=args.augment,
            seed=args.seed,
            out_dir=args.out,
            data_root=args.data_root,
            progress=not args.no_progress,
            family=args.family,
        )
    except (ValueError, FileNotFoundError, ConnectionError) as exc:
        print(f"minires experiment: {exc}", file=sys.stderr)
        return 2
    if result["interrupted"]:
        print("interrupted; run the same command again to continue", file=sys.stderr)
        return 130
    from minires.distributed import get_comm

    if get_comm().is_root:  # under mpiexec, rank 0 alone reports
        print(result["findings"]["summary"])
        print(f"results: {args.out}/degradation.json, plot: {args.out}/degradation.png")
    return 0
