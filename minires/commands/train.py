"""``minires train``: train a zoo model on the embedded digits (default) or CIFAR-10.

minires train --model resnet20 --epochs 10 --out runs/r20
minires train --resume runs/r20            # continue (also after Ctrl-C)
minires train --resume runs/r20 --epochs 15   # ... and train longer
mpiexec -n 4 minires train --batch-size 128 ...  # data-parallel over 4 MPI ranks
minires train --workers 2 ...                     # the same, launched for you
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

# Settings with their defaults. On --resume the run's saved settings are used and only
# --epochs (and display options) may change, so a resumed run is the same run.
DEFAULTS: dict[str, Any] = {
    "model": "resnet20",
    "dataset": "digits",
    "epochs": 10,
    "batch_size": 64,
    "optimizer": "sgd",
    "lr": 0.1,
    "momentum": 0.9,
    "weight_decay": 1e-4,
    "nesterov": False,
    "schedule": "cosine",
    "warmup": 0,
    "milestones": None,
    "gamma": 0.1,
    "augment": None,
    "seed": 0,
    "data_root": None,
    "backend": None,
    "dtype": "float32",
    "sync_bn": False,
}
RUN_ONLY = ("epochs", "backend")  # may differ between the original run and a resume


def build_parser() -> argparse.ArgumentParser:
    from minires.data import DATASETS
    from minires.training import OPTIMIZERS, SCHEDULES

    p = argparse.ArgumentParser(
        prog="minires train",
        description="Train a model; per-epoch metrics (CSV, JSON), a checkpoint every epoch, "
        "and a PNG of the curves go to --out. Ctrl-C saves a checkpoint; --resume continues "
        "bit-for-bit.",
        argument_default=argparse.SUPPRESS,
    )
    d = DEFAULTS
    p.add_argument(
        "--model",
        help=f"any minires.models name, e.g. resnet20, plain20, "
        f"cifar_resnet8, resnet18 (default {d['model']})",
    )
    p.add_argument(
        "--dataset",
        choices=DATASETS,
        help=f"default {d['dataset']} (embedded, "
        "no download); the others are read from --data-root (see --download)",
    )
    p.add_argument("--data-root", help="data folder (default $MINIRES_DATA or ~/.cache/minires)")
    p.add_argument("--epochs", type=int, help=f"total epochs (default {d['epochs']})")
    p.add_argument("--batch-size", type=int, help=f"default {d['batch_size']}")
    p.add_argument("--optimizer", choices=OPTIMIZERS, help=f"default {d['optimizer']}")
    p.add_argument("--lr", type=float, help=f"peak learning rate (default {d['lr']})")
    p.add_argument(
        "--momentum", type=float, help=f"SGD momentum / Adam beta1 (default {d['momentum']})"
    )
    p.add_argument("--weight-decay", type=float, help=f"default {d['weight_decay']}")
    p.add_argument("--nesterov", action="store_true", help="Nesterov momentum (SGD)")
    p.add_argument(
        "--schedule",
        choices=SCHEDULES,
        help=f"per-epoch lr schedule (default {d['schedule']}; multistep = /10 at 50%% and 75%%)",
    )
    p.add_argument("--warmup", type=int, help="epochs of linear lr warm-up (default 0)")
    p.add_argument("--milestones", type=int, nargs="+", help="epochs for --schedule multistep")
    p.add_argument("--gamma", type=float, help="decay factor of step/multistep (default 0.1)")
    g = p.add_mutually_exclusive_group()
    g.add_argument(
        "--augment",
        dest="augment",
        action="store_true",
        help="random crop (+ flip on CIFAR); default on for cifar10 only",
    )
    g.add_argument("--no-augment", dest="augment", action="store_false")
    p.add_argument("--seed", type=int, help="seed of init, order and augmentation (default 0)")
    p.add_argument("--backend", choices=["numba", "numpy"], help="kernel backend")
    p.add_argument("--out", help="output folder (default runs/MODEL-DATASET)")
    p.add_argument(
        "--resume",
        nargs="?",
        const=True,
        metavar="CKPT",
        help="continue from CKPT (a checkpoint.npz or its folder; default: --out)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--no-plot", action="store_true", help="skip curves.png")
    _add_distributed_arguments(p)
    return p


def _add_distributed_arguments(p: argparse.ArgumentParser) -> None:
    """Precision, data download and MPI options (see docs/distributed.md)."""
    g = p.add_argument_group("precision, data and distributed training")
    g.add_argument(
        "--dtype", choices=["float32", "float64"], help="parameters and inputs (default float32)"
    )
    g.add_argument(
        "--download", action="store_true",
        help="download the --dataset into --data-root / $MINIRES_DATA if missing (verified)",
    )  # fmt: skip
    g.add_argument(
        "--sync-bn", action="store_true",
        help="under MPI: BatchNorm statistics over the global batch (nn.SyncBatchNorm)",
    )  # fmt: skip
    g.add_argument(
        "--check-sync", action="store_true",
        help="under MPI: verify after every epoch that all ranks hold identical state",
    )  # fmt: skip
    g.add_argument(
        "--workers", type=int, metavar="N",
        help="run on N MPI ranks on this machine (re-executes under the environment's mpiexec)",
    )  # fmt: skip


def _pop_workers(argv: list[str]) -> list[str]:
    """``argv`` without ``--workers N`` / ``--workers=N``."""
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a == "--workers":
            skip = True
        elif not a.startswith("--workers="):
            out.append(a)
    return out


def launch_workers(n: int, argv: list[str]) -> int:
    """``mpiexec -n n python -m minires train ARGV`` on this machine; its exit status."""
    from minires.distributed import launch

    return launch(n, ["train", *_pop_workers(argv)])


def main(argv: list[str]) -> int:
    args = vars(build_parser().parse_args(argv))
    from minires.training import load_checkpoint

    workers = args.pop("workers", None)
    if workers is not None:
        if workers < 1:
            print(f"minires train: --workers must be >= 1, got {workers}", file=sys.stderr)
            return 2
        return launch_workers(workers, argv)
    check_sync = args.pop("check_sync", False)
    download = args.pop("download", False)

    resume = args.pop("resume", None)
    out = args.pop("out", None)
    progress = not args.pop("no_progress", False)
    plot = not args.pop("no_plot", False)
    ckpt = None
    if resume:
        src = Path(resume if resume is not True else (out or ""))
        if resume is True and out is None:
            print("minires train: --resume needs a checkpoint path or --out", file=sys.stderr)
            return 2
        try:
            ck = load_checkpoint(src)
        except (FileNotFoundError, ValueError) as exc:
            print(f"minires train: cannot resume: {exc}", file=sys.stderr)
            return 2
        ckpt = src / "checkpoint.npz" if src.is_dir() else src
        saved = ck["config"]
        ignored = [k for k in args if k not in RUN_ONLY and args[k] != saved.get(k)]
        if ignored:
            print(
                "minires train: resuming with the run's saved settings; ignoring "
                + ", ".join(f"--{k.replace('_', '-')}" for k in ignored),
                file=sys.stderr,
            )
        cfg = {**DEFAULTS, **saved, **{k: v for k, v in args.items() if k in RUN_ONLY}}
        if cfg["epochs"] != saved.get("epochs") and cfg["schedule"] != "constant":
            print(
                f"minires train: note: --epochs {cfg['epochs']} differs from the run's "
                f"{saved.get('epochs')}; the {cfg['schedule']} schedule keeps its original "
                "horizon",
                file=sys.stderr,
            )
        out = out or str(ckpt.parent)
    else:
        cfg = {**DEFAULTS, **args}
        out = out or f"runs/{cfg['model']}-{cfg['dataset']}"
    return run(cfg, out, ckpt, progress=progress, plot=plot, check_sync=check_sync,
               download=download)  # fmt: skip


def run(
    cfg: dict[str, Any],
    out: str | Path,
    resume: str | Path | None = None,
    progress: bool = True,
    plot: bool = True,
    check_sync: bool = False,
    download: bool = False,
) -> int:
    """Build everything from ``cfg`` (the keys of DEFAULTS), train, print a summary."""
    import minires as mr
    from minires import data, training
    from minires.models import get_model

    if cfg.get("backend"):
        mr.set_backend(cfg["backend"])
    mr.manual_seed(cfg["seed"])
    try:
        train_loader, test_loader, info = data.make_loaders(
            cfg["dataset"],
            batch_size=cfg["batch_size"],
            seed=cfg["seed"],
            augment=cfg["augment"],
            root=cfg["data_root"],
            dtype=cfg.get("dtype", "float32"),
            download=download,
        )
    except (FileNotFoundError, ValueError, ConnectionError) as exc:
        print(f"minires train: {exc}", file=sys.stderr)
        return 2
    try:
        model = get_model(cfg["model"], num_classes=info.num_classes, in_channels=info.in_channels)
    except (ValueError, TypeError) as exc:
        print(f"minires train: {exc}", file=sys.stderr)
        return 2
    model = _prepare_model(model, cfg)
    opt = training.build_optimizer(
        model,
        cfg["optimizer"],
        lr=cfg["lr"],
        momentum=cfg["momentum"],
        weight_decay=cfg["weight_decay"],
        nesterov=cfg["nesterov"],
    )
    sched = training.build_scheduler(
        opt,
        cfg["schedule"],
        epochs=cfg["epochs"],
        warmup=cfg["warmup"],
        milestones=cfg["milestones"],
        gamma=cfg["gamma"],
    )
    config = {**cfg, "dataset_info": info.to_dict(), "title": f"{cfg['model']} on {info.name}"}
    n_params = sum(p.data.size for p in model.parameters())
    from minires.distributed import get_comm

    comm = get_comm()
    if comm.size > 1 and comm.is_root:
        print(
            f"data-parallel on {comm.size} MPI ranks: global batch {cfg['batch_size']}, "
            f"BatchNorm {'synchronised' if cfg.get('sync_bn') else 'per rank'}",
            file=sys.stderr,
        )
    if comm.is_root:
        print(
            f"{cfg['model']} ({n_params:,} parameters) on {info.name}: {info.n_train} train / "
            f"{info.n_test} test images {info.in_channels}x{info.image_size}x"
            f"{info.image_size}, backend {mr.get_backend()}; output in {out}",
            file=sys.stderr,
        )
    try:
        history = training.train(
            model,
            train_loader,
            test_loader,
            cfg["epochs"],
            opt,
            sched,
            out_dir=out,
            resume=resume,
            progress=progress,
            verbose=True,
            plot=plot,
            config=config,
            check_sync=check_sync,
        )
    except FloatingPointError as exc:
        print(f"minires train: {exc}", file=sys.stderr)
        return 1
    if history.interrupted:
        print(f"resume with: minires train --resume {out}", file=sys.stderr)
        return 130
    last = history.last
    if last and comm.is_root:
        print(json.dumps({k: last[k] for k in ("epoch", "train_acc", "test_acc")}))
    return 0


def _prepare_model(model: Any, cfg: dict[str, Any]) -> Any:
    """Cast to ``cfg["dtype"]``; with ``sync_bn``, BatchNorm2d -> nn.SyncBatchNorm."""
    import numpy as np

    from minires import nn

    model.to(np.dtype(cfg.get("dtype", "float32")))
    if cfg.get("sync_bn"):
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    return model
