"""``minires experiment``: reproduce a paper result on a CPU.

minires experiment degradation                     # plain vs residual, depths 8 and 20
minires experiment degradation --depths 20 56 --epochs 30
minires experiment degradation --family preact     # pre-activation nets, depths 8 and 20
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
    return p


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
