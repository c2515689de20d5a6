"""Training: the loop, evaluation, checkpoints that resume bit-for-bit, metrics files and
curve plots. Used by ``minires train``, ``minires experiment`` and the demo.

    import minires as mr
    from minires import data, training
    from minires.models import resnet20

    mr.manual_seed(0)
    train_loader, test_loader, info = data.make_loaders("digits", batch_size=64, seed=0)
    model = resnet20(num_classes=10, in_channels=1)
    opt = training.build_optimizer(model, "sgd", lr=0.1, momentum=0.9, weight_decay=1e-4)
    sched = training.build_scheduler(opt, "cosine", epochs=10)
    history = training.train(model, train_loader, test_loader, 10, opt, sched, out_dir="runs/r20")
    history["test_acc"]          # one value per epoch

What a checkpoint holds (``out_dir/checkpoint.npz``, written atomically with `mr.save`
after every epoch and on Ctrl-C): the model's state_dict (parameters *and* batchnorm
buffers), the optimizer's state (momentum / Adam buffers), the scheduler's state, the
loader's seed, minires' RNG state, the epoch and batch reached, the running sums of the
unfinished epoch, the history so far and the run's config. The loader's order and
augmentation are a pure function of (seed, epoch, batch), so a resumed run replays
exactly the batches the uninterrupted one would have seen: same floats, bit for bit.
"""

from __future__ import annotations

import contextlib
import csv
import json
import math
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

import minires.functional as F
from minires.autograd import no_grad
from minires.data.loader import DataLoader
from minires.distributed import DataParallel
from minires.nn.module import Module
from minires.optim import SGD, Adam, AdamW, Optimizer
from minires.optim import lr_scheduler as lrs
from minires.random import get_rng, get_rng_state, set_rng_state
from minires.serialization import load, save

CHECKPOINT_FORMAT = "minires-train-checkpoint"
CHECKPOINT_VERSION = 1
SCHEDULES = ("constant", "step", "multistep", "cosine")
OPTIMIZERS = ("sgd", "adam", "adamw")
METRIC_FIELDS = [
    "epoch", "lr", "train_loss", "train_acc", "train_error", "test_loss", "test_acc",
    "test_error", "seconds",
]  # fmt: skip


# -- history --------------------------------------------------------------------------------


class History:
    """Per-epoch metrics of a run: a list of dicts (``rows``), one per finished epoch,
    with the keys of ``METRIC_FIELDS``. ``history["train_error"]`` is that column as a
    list; ``interrupted`` is True when Ctrl-C stopped the run early."""

    def __init__(self, rows: Sequence[dict[str, Any]] = ()):
        self.rows: list[dict[str, Any]] = [dict(r) for r in rows]
        self.interrupted = False
        self.checkpoint: Path | None = None

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, key: str) -> list[Any]:
        if self.rows and key not in self.rows[0]:
            raise KeyError(f"no metric {key!r}; have {list(self.rows[0])}")
        return [r[key] for r in self.rows]

    def append(self, row: dict[str, Any]) -> None:
        """Add one epoch's metrics."""
        self.rows.append(dict(row))

    @property
    def last(self) -> dict[str, Any]:
        """The metrics of the last finished epoch ({} before the first)."""
        return self.rows[-1] if self.rows else {}

    def to_csv(self, path: str | os.PathLike) -> None:
        """Write the rows as CSV (header = METRIC_FIELDS)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=METRIC_FIELDS, extrasaction="ignore")
            w.writeheader()
            for r in self.rows:
                w.writerow({k: _fmt(r.get(k)) for k in METRIC_FIELDS})
        os.replace(tmp, path)

    def to_json(self, path: str | os.PathLike, **extra: Any) -> None:
        """Write ``{"history": rows, "interrupted": ..., **extra}`` as JSON."""
        _write_json(path, {**extra, "interrupted": self.interrupted, "history": self.rows})

    def __repr__(self) -> str:
        return f"History({len(self)} epochs, last={self.last})"


def _fmt(v: Any) -> Any:
    return repr(v) if isinstance(v, float) else v  # repr: round-trippable floats


def _write_json(path: str | os.PathLike, obj: Any) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, default=_json_default) + "\n")
    os.replace(tmp, path)


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"cannot write {type(o).__name__} to JSON")


# -- recipes --------------------------------------------------------------------------------


def build_optimizer(
    model: Module,
    name: str = "sgd",
    lr: float = 0.1,
    momentum: float = 0.9,
    weight_decay: float = 1e-4,
    nesterov: bool = False,
) -> Optimizer:
    """An optimizer over ``model.parameters()`` by name: ``"sgd"`` (He et al.: lr 0.1,
    momentum 0.9, weight decay 1e-4), ``"adam"`` or ``"adamw"`` (momentum is beta1)."""
    params = list(model.parameters())
    if name == "sgd":
        return SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=nesterov)
    if name in ("adam", "adamw"):
        cls = Adam if name == "adam" else AdamW
        return cls(params, lr=lr, betas=(momentum, 0.999), weight_decay=weight_decay)
    raise ValueError(f"unknown optimizer {name!r}; choose one of {list(OPTIMIZERS)}")


def build_scheduler(
    optimizer: Optimizer,
    name: str = "cosine",
    epochs: int = 10,
    warmup: int = 0,
    milestones: Sequence[int] | None = None,
    step_size: int | None = None,
    gamma: float = 0.1,
    warmup_factor: float = 0.1,
) -> lrs.LRScheduler:
    """A per-epoch learning-rate schedule by name, optionally after a linear warm-up.

    Args:
        name: ``"constant"``; ``"step"`` (times ``gamma`` every ``step_size`` epochs,
            default a third of the run); ``"multistep"`` (times ``gamma`` at
            ``milestones``, default 50% and 75% of the run as in He et al.); ``"cosine"``
            (to 0 over the run).
        epochs: total epochs of the run (the horizon of the default schedules).
        warmup: epochs of linear warm-up from ``warmup_factor * lr`` (0 = none); the
            main schedule then covers the remaining epochs.
    """
    main_epochs = max(1, epochs - warmup)
    if name == "constant":
        main: lrs.LRScheduler = lrs.LambdaLR(optimizer, lambda e: 1.0)
    elif name == "step":
        main = lrs.StepLR(optimizer, step_size or max(1, main_epochs // 3), gamma)
    elif name == "multistep":
        ms = milestones if milestones else [main_epochs // 2, (3 * main_epochs) // 4]
        main = lrs.MultiStepLR(optimizer, ms, gamma)
    elif name == "cosine":
        main = lrs.CosineAnnealingLR(optimizer, main_epochs)
    else:
        raise ValueError(f"unknown schedule {name!r}; choose one of {list(SCHEDULES)}")
    if warmup <= 0:
        return main
    warm = lrs.LinearLR(optimizer, start_factor=warmup_factor, total_iters=warmup)
    return lrs.SequentialLR(optimizer, [warm, main], milestones=[warmup])


# -- evaluation -----------------------------------------------------------------------------


def evaluate(
    model: Module, loader: DataLoader, progress: bool = False, comm: Any = None
) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of ``model`` on every batch of ``loader``, in eval
    mode (batchnorm uses its running statistics) and without building a graph. The
    model's previous mode is restored. With a communicator of several ranks
    (`minires.distributed`), rank r evaluates batches r, r + size, ... and the sums are
    all-reduced: the result is exact over the whole set, the same on every rank.

    Returns:
        (loss, accuracy) as floats; accuracy in [0, 1].
    """
    was_training = model.training
    model.eval()
    loss_sum, correct, seen = 0.0, 0, 0
    try:
        with no_grad():
            for x, y in _bar(_eval_batches(loader, comm), len(loader), "eval", progress,
                             leave=False):  # fmt: skip
                out = model(x)
                n = len(y.data)
                loss_sum += float(F.cross_entropy(out, y).item()) * n
                correct += int((out.data.argmax(axis=1) == y.data).sum())
                seen += n
                del out  # one batch's activations at a time
    finally:
        model.train(was_training)
    if comm is not None and comm.size > 1:
        sums = np.array([loss_sum, correct, seen], dtype=np.float64)
        comm.allreduce_(sums)
        loss_sum, correct, seen = float(sums[0]), int(sums[1]), int(sums[2])
    return loss_sum / max(seen, 1), correct / max(seen, 1)


def _eval_batches(loader: DataLoader, comm: Any) -> Iterator[tuple[Any, ...]]:
    if comm is None or comm.size == 1:
        return loader.epoch_iter(0)
    return (loader.load(loader.batch_indices(0, i), 0)
            for i in range(comm.rank, len(loader), comm.size))  # fmt: skip


# -- checkpoints ----------------------------------------------------------------------------


def save_checkpoint(
    path: str | os.PathLike,
    model: Module,
    optimizer: Optimizer,
    scheduler: lrs.LRScheduler | None = None,
    loader: DataLoader | None = None,
    *,
    epoch: int = 0,
    batch: int = 0,
    partial: dict[str, float] | None = None,
    history: History | None = None,
    config: dict[str, Any] | None = None,
) -> Path:
    """Write a training checkpoint atomically (see the module doc for its contents).

    ``epoch`` is the 0-based epoch in progress and ``batch`` the next batch to run in it
    (``batch=0`` at an epoch boundary: ``epoch`` epochs are done).
    """
    ck = {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "epoch": int(epoch),
        "batch": int(batch),
        "partial": dict(partial or {"loss_sum": 0.0, "correct": 0, "seen": 0}),
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "loader": loader.state_dict() if loader is not None else None,
        "rng": get_rng_state(),
        "history": history.rows if history is not None else [],
        "config": config or {},
    }
    save(ck, path)
    return Path(path)


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Read a checkpoint written by `save_checkpoint`; a clear ValueError if ``path`` is
    some other file. (Restore it with `restore_checkpoint`.)"""
    path = Path(path)
    if path.is_dir():
        path = path / "checkpoint.npz"
    ck = load(path)
    if not isinstance(ck, dict) or ck.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{str(path)!r} is a minires file but not a training checkpoint")
    version = ck.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ValueError(f"{str(path)!r}: the checkpoint's version {version!r} is not valid")
    if version > CHECKPOINT_VERSION:
        raise ValueError(f"{str(path)!r} is from a newer minires (checkpoint v{version})")
    _check_checkpoint(ck, str(path))
    return ck


# entry -> what it must hold (checked before any of it is used)
_CHECKPOINT_ENTRIES = {
    "epoch": (int,),
    "batch": (int,),
    "partial": (dict,),
    "model": (dict,),
    "optimizer": (dict,),
    "scheduler": (dict, type(None)),
    "loader": (dict, type(None)),
    "rng": (dict,),
    "history": (list,),
    "config": (dict,),
}


def _check_checkpoint(ck: dict[str, Any], where: str) -> None:
    """ValueError naming the first entry a checkpoint lacks, holds the wrong kind of, or
    holds a value no run writes. Checks what needs no model, optimizer or loader: the
    entries' types, ``epoch`` and ``batch`` >= 0, the unfinished epoch's sums, the
    history's rows and the random state (`restore_checkpoint` checks the rest)."""
    for key, kinds in _CHECKPOINT_ENTRIES.items():
        if key not in ck:
            raise ValueError(f"{where}: the checkpoint has no {key!r} entry")
        value = ck[key]
        if not isinstance(value, kinds) or isinstance(value, bool):
            names = " or ".join("None" if k is type(None) else k.__name__ for k in kinds)
            kind = type(value).__name__
            raise ValueError(f"{where}: the checkpoint's {key!r} is a {kind}, expected {names}")
    for key in ("epoch", "batch"):
        if ck[key] < 0:
            raise ValueError(f"{where}: the checkpoint's {key!r} is {ck[key]}, expected >= 0")
    _check_partial(ck["partial"], ck["batch"], f"{where}: the checkpoint's 'partial'")
    _check_history(ck["history"], ck["epoch"], f"{where}: the checkpoint's 'history'")
    # set on a scratch generator: checked without touching minires' own
    try:
        type(get_rng().bit_generator)().state = ck["rng"]
    except (TypeError, ValueError, KeyError, OverflowError) as exc:
        msg = f"{where}: the checkpoint's 'rng' is not a valid random state: {exc}"
        raise ValueError(msg) from None


_PARTIAL_KEYS = ("loss_sum", "correct", "seen")


def _check_partial(partial: dict[str, Any], batch: int, where: str) -> None:
    """The running sums of the unfinished epoch: a finite loss sum and counts with
    0 <= correct <= seen, all zero at an epoch's start (``batch`` 0)."""
    _check_keys(partial, _PARTIAL_KEYS, where)
    _check_number(partial["loss_sum"], f"{where}['loss_sum']")
    for key in ("correct", "seen"):
        v = partial[key]
        if not _is_int(v) or v < 0:
            raise ValueError(f"{where}['{key}'] is {v!r}, expected an int >= 0")
    if partial["correct"] > partial["seen"]:
        raise ValueError(
            f"{where}: 'correct' is {partial['correct']}, more than 'seen' ({partial['seen']})"
        )
    if (batch == 0 or partial["seen"] == 0) and any(partial[k] for k in _PARTIAL_KEYS):
        raise ValueError(
            f"{where} is {dict(partial)}: sums without samples seen in the epoch (batch {batch})"
        )


def _check_history(rows: list[Any], epoch: int, where: str) -> None:
    """One row per finished epoch, as `train` writes them: exactly the METRIC_FIELDS,
    ``epoch`` increasing and at most the checkpoint's, finite metrics (accuracies and
    errors in [0, 1]), the test metrics all None (no test set) or all numbers."""
    last = 0
    for i, row in enumerate(rows):
        at = f"{where}[{i}]"
        if not isinstance(row, dict):
            raise ValueError(f"{at} is {row!r}, expected a dict of {', '.join(METRIC_FIELDS)}")
        _check_keys(row, METRIC_FIELDS, at)
        e = row["epoch"]
        if not _is_int(e) or not last < e <= epoch:
            raise ValueError(
                f"{at}['epoch'] is {e!r}, expected an int in [{last + 1}, {epoch}] (rows "
                "follow the epochs, up to the checkpoint's)"
            )
        last = e
        tests = [row[k] is None for k in ("test_loss", "test_acc", "test_error")]
        if any(tests) and not all(tests):
            raise ValueError(f"{at}: the test metrics must be all None or all numbers, got {row}")
        for key in METRIC_FIELDS[1:]:
            v, name = row[key], f"{at}[{key!r}]"
            if v is None and key.startswith("test_"):
                continue
            if key.endswith(("_acc", "_error")):  # ratios of counts
                _check_number(v, name, lo=0, hi=1)
            else:  # (a model can overflow on the test set without diverging in training)
                _check_number(v, name, lo=0 if key == "seconds" else None,
                              finite=key != "test_loss")  # fmt: skip


def _check_keys(d: dict[str, Any], keys: Sequence[str], where: str) -> None:
    unknown = [k for k in d if k not in keys]
    missing = [k for k in keys if k not in d]
    if unknown or missing:
        what = f"an unknown key {unknown[0]!r}" if unknown else f"no {missing[0]!r}"
        raise ValueError(f"{where} has {what} (expected exactly {', '.join(keys)})")


def _is_int(v: Any) -> bool:
    return isinstance(v, int | np.integer) and not isinstance(v, bool | np.bool_)


def _check_number(
    v: Any, where: str, lo: float | None = None, hi: float | None = None, finite: bool = True
) -> None:
    """ValueError unless ``v`` is a real number (not a bool), finite (or NaN/inf when not
    ``finite``) and in [lo, hi]."""
    ok = isinstance(v, int | float | np.number) and not isinstance(v, bool | np.bool_)
    try:
        ok = ok and (not finite or math.isfinite(float(v)))
    except OverflowError:  # an int too large for a float
        ok = False
    if not ok or (lo is not None and v < lo) or (hi is not None and v > hi):
        what = "a finite number" if finite else "a number"
        span = "" if lo is None and hi is None else f" in [{lo}, {'inf' if hi is None else hi}]"
        raise ValueError(f"{where} is {v!r}, expected {what}{span}")


class CheckpointError(ValueError):
    """A checkpoint that does not fit the run resuming from it (`restore_checkpoint`)."""


def restore_checkpoint(
    ck: dict[str, Any],
    model: Module,
    optimizer: Optimizer,
    scheduler: lrs.LRScheduler | None = None,
    loader: DataLoader | None = None,
) -> None:
    """Load a checkpoint's states into freshly built objects of the same kinds.

    Everything is checked before anything is loaded: the checkpoint's entries, the
    optimizer's, scheduler's and loader's states against those objects (each one's
    ``check_state_dict``), ``batch`` and the unfinished epoch's sums against the loader,
    the model's state against its parameters and buffers. A checkpoint that does not fit
    is refused with a `CheckpointError` (a ValueError) naming the entry, the key and the
    value at fault, and the model, optimizer, scheduler, loader and random state are left
    as they were.
    """
    try:
        _restore(ck, model, optimizer, scheduler, loader)
    except CheckpointError:
        raise
    except ValueError as exc:  # every check below raises a ValueError
        raise CheckpointError(str(exc)) from None


def _restore(
    ck: dict[str, Any],
    model: Module,
    optimizer: Optimizer,
    scheduler: lrs.LRScheduler | None,
    loader: DataLoader | None,
) -> None:
    where = "restore_checkpoint"
    if not isinstance(ck, dict):
        raise ValueError(f"{where}: expected a checkpoint dict, got {type(ck).__name__}")
    _check_checkpoint(ck, where)
    _check_state(optimizer, ck["optimizer"], "optimizer", where)
    if scheduler is not None:
        if ck["scheduler"] is None:
            raise ValueError(
                f"{where}: the checkpoint has no scheduler state but a scheduler was given"
            )
        _check_state(scheduler, ck["scheduler"], "scheduler", where)
    if loader is not None:
        if ck["loader"] is not None:
            _check_state(loader, ck["loader"], "loader", where)
        n, batch, seen = len(loader), ck["batch"], ck["partial"]["seen"]
        if batch > n:  # (batch == n: stopped after an epoch's last batch, before its end)
            raise ValueError(
                f"{where}: the checkpoint's 'batch' is {batch}, but an epoch of this loader "
                f"has {n} batches"
            )
        if seen > batch * loader.batch_size:
            raise ValueError(
                f"{where}: the checkpoint's 'partial' has seen {seen} samples, more than "
                f"its {batch} batches of at most {loader.batch_size} hold"
            )
    # The model is checked last and written first: Module.load_state_dict checks every
    # entry before it writes any, and once it has, the loads below cannot fail.
    try:
        model.load_state_dict(ck["model"])
    except (TypeError, ValueError) as exc:
        raise ValueError(
            f"{where}: the checkpoint's 'model' does not fit the model: {exc}"
        ) from None
    optimizer.load_state_dict(ck["optimizer"])
    if scheduler is not None:
        scheduler.load_state_dict(ck["scheduler"])
    if loader is not None and ck["loader"] is not None:
        loader.load_state_dict(ck["loader"])
    set_rng_state(ck["rng"])


def _check_state(obj: Any, state: Any, key: str, where: str) -> None:
    """``obj.check_state_dict(state)``, its TypeError or ValueError as a ValueError that
    names the checkpoint's entry."""
    try:
        obj.check_state_dict(state)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{where}: the checkpoint's {key!r} does not fit: {exc}") from None


# -- the loop -------------------------------------------------------------------------------


class _GracefulInterrupt:
    """While active, the first Ctrl-C (SIGINT) only sets ``requested``; the loop finishes
    the current batch, saves a checkpoint and returns. A second Ctrl-C aborts at once."""

    def __init__(self, log: Callable[[str], None], enabled: bool = True):
        self.requested = False
        self._log = log
        self._previous: Any = None
        self._enabled = enabled  # off under MPI: ranks would stop at different batches

    def _handler(self, signum: int, frame: Any) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        self._log("\nCtrl-C: finishing this batch and saving a checkpoint (Ctrl-C again to abort)")

    def __enter__(self) -> _GracefulInterrupt:
        if self._enabled and threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handler)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


def train(
    model: Module,
    train_loader: DataLoader,
    test_loader: DataLoader | None = None,
    epochs: int = 1,
    optimizer: Optimizer | None = None,
    scheduler: lrs.LRScheduler | None = None,
    *,
    out_dir: str | os.PathLike | None = None,
    resume: str | os.PathLike | bool | None = None,
    progress: bool = True,
    verbose: bool | None = None,
    plot: bool = True,
    config: dict[str, Any] | None = None,
    callback: Callable[[int, int, dict[str, Any]], None] | None = None,
    log: Callable[[str], None] | None = None,
    check_sync: bool = False,
) -> History:
    """Train ``model`` with cross-entropy for ``epochs`` epochs (in total, counting the
    ones a resumed checkpoint already did).

    Each step: ``zero_grad``, forward, ``cross_entropy``, ``backward``, ``optimizer.step``;
    the scheduler steps once per epoch. After every epoch the train metrics (averaged over
    the epoch's batches, in training mode, as He et al. plot them) and the test metrics
    (eval mode) are appended to the history and, with ``out_dir``, written to
    ``metrics.csv`` / ``metrics.json`` together with a checkpoint.

    Args:
        model: any classifier (N, C, H, W) -> (N, num_classes).
        train_loader: shuffled training batches (see `minires.data.DataLoader`).
        test_loader: evaluated after every epoch (optional).
        epochs: total number of epochs.
        optimizer: default ``SGD(lr=0.1, momentum=0.9, weight_decay=1e-4)``.
        scheduler: per-epoch schedule (optional).
        out_dir: folder for ``checkpoint.npz``, ``metrics.csv``, ``metrics.json``,
            ``model.npz`` (final weights) and ``curves.png``; None keeps nothing on disk.
        resume: a checkpoint path (or True for ``out_dir/checkpoint.npz``) to continue
            from; the model, optimizer and scheduler must be built as for the original run
            (a checkpoint that does not fit them is refused with a ValueError before
            anything is loaded: see `restore_checkpoint`).
        progress: tqdm bars with running loss/accuracy (skipped if tqdm is missing).
        verbose: a one-line summary per epoch via ``log`` (default: same as ``progress``).
        plot: write ``curves.png`` at the end (needs matplotlib; skipped with a note if absent).
        config: settings recorded in the checkpoint and ``metrics.json``.
        callback: called as ``callback(epoch, batch, info)`` after every batch (``info``
            has ``loss`` and ``acc`` of the batch) — for live plots, or to stop a run.
        log: where messages go (default: print to stderr).
        check_sync: under MPI, verify after every epoch that all ranks hold bitwise the
            same parameters, buffers and optimizer state.

    Under ``mpiexec -n N`` (see `minires.distributed` and docs/distributed.md) every rank
    runs this function: each takes its share of every global batch, gradients are summed
    over ranks before the step, BatchNorm running statistics are averaged before
    evaluation and checkpoints, evaluation is sharded, and rank 0 alone prints and writes.

    Returns:
        `History`; ``history.interrupted`` is True if Ctrl-C stopped it (after saving a
        checkpoint to ``history.checkpoint`` when ``out_dir`` is set).
    """
    log = log or (lambda s: print(s, file=sys.stderr))
    verbose = progress if verbose is None else verbose
    if epochs < 0:
        raise ValueError(f"train: epochs must be >= 0, got {epochs}")
    if optimizer is None:
        optimizer = SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    # Data parallelism over MPI ranks; with one process every hook is a no-op.
    dp = DataParallel(model, optimizer, check_sync=check_sync)
    root = dp.comm.is_root  # rank 0 alone prints and writes
    if not root:
        progress = verbose = plot = False
        log = _silent
    out = Path(out_dir) if out_dir is not None else None
    ckpt_path = out / "checkpoint.npz" if out is not None else None

    history = History()
    start_epoch, start_batch = 0, 0
    partial = {"loss_sum": 0.0, "correct": 0, "seen": 0}
    if resume:
        if resume is True:
            if ckpt_path is None:
                raise ValueError("train: resume=True needs out_dir (or pass a checkpoint path)")
            resume = ckpt_path
        ck = dp.load_on_root(lambda: load_checkpoint(resume))
        restore_checkpoint(ck, model, optimizer, scheduler, train_loader)
        start_epoch, start_batch = int(ck["epoch"]), int(ck["batch"])
        sums = ck["partial"]  # checked: a finite sum and counts (Python numbers from here)
        partial = {
            "loss_sum": float(sums["loss_sum"]),
            "correct": int(sums["correct"]),
            "seen": int(sums["seen"]),
        }
        history = History(ck["history"])
        config = config if config is not None else dict(ck.get("config") or {})
        if start_epoch >= epochs:
            log(
                f"resumed from {resume}: the run already trained {start_epoch} epochs "
                f"(epochs={epochs}), nothing to train; pass a larger epochs to train longer"
            )
        else:
            where = f"epoch {start_epoch + 1} of {epochs}"
            if start_batch:
                where += f", batch {start_batch + 1} of {len(train_loader)}"
            log(f"resumed from {resume}: continuing at {where}")
    config = dict(config or {})
    dp.broadcast_state()  # every rank starts from rank 0's state
    dp.check_batches(train_loader)

    def checkpoint(epoch: int, batch: int) -> None:
        if ckpt_path is not None and root:
            save_checkpoint(
                ckpt_path, model, optimizer, scheduler, train_loader, epoch=epoch, batch=batch,
                partial=partial, history=history, config=config,
            )  # fmt: skip

    def write_metrics() -> None:
        if out is not None and root:
            history.to_csv(out / "metrics.csv")
            history.to_json(out / "metrics.json", config=config)

    n_batches = len(train_loader)
    with _GracefulInterrupt(log, enabled=dp.size == 1) as stop:
        for epoch in range(start_epoch, epochs):
            model.train()
            lr = optimizer.param_groups[0]["lr"]
            t0 = time.perf_counter()
            bar = _bar(
                dp.epoch_iter(train_loader, epoch, start_batch), n_batches,
                f"epoch {epoch + 1}/{epochs}", progress, initial=start_batch,
            )  # fmt: skip
            for i, (x, y) in enumerate(bar, start=start_batch):
                optimizer.zero_grad()
                logits = model(x)
                n = len(y.data)
                hits = int((logits.data.argmax(axis=1) == y.data).sum())
                loss = F.cross_entropy(logits, y)
                del logits
                dp.backward(loss, n)  # plain loss.backward() on one process
                dp.allreduce_gradients()
                optimizer.step()
                # One graph at a time: keep Python numbers only, so nothing of this step
                # is alive while the next forward builds its graph.
                loss_value = float(loss.item())
                del loss
                loss_value, hits, n = dp.batch_metrics(loss_value, hits, n)  # over all ranks
                if not math.isfinite(loss_value):
                    raise FloatingPointError(
                        f"training diverged: loss is {loss_value} at epoch {epoch + 1}, batch "
                        f"{i + 1} (lr {lr:g}); try a smaller learning rate or a warm-up"
                    )
                partial["loss_sum"] += loss_value * n
                partial["correct"] += hits
                partial["seen"] += n
                if hasattr(bar, "set_postfix"):
                    bar.set_postfix(
                        loss=f"{partial['loss_sum'] / partial['seen']:.4f}",
                        acc=f"{partial['correct'] / partial['seen']:.3f}",
                        lr=f"{lr:.3g}",
                    )
                if callback is not None:
                    callback(epoch, i, {"loss": loss_value, "acc": hits / n})
                if stop.requested:
                    _close(bar)
                    checkpoint(epoch, i + 1)
                    history.interrupted, history.checkpoint = True, ckpt_path
                    write_metrics()
                    where = f"epoch {epoch + 1}, batch {i + 1}/{n_batches}"
                    log(
                        f"interrupted at {where}; "
                        + (f"checkpoint saved to {ckpt_path}" if ckpt_path else "nothing saved")
                    )
                    return history
            _close(bar)
            start_batch = 0

            row: dict[str, Any] = {"epoch": epoch + 1, "lr": lr}
            seen = max(partial["seen"], 1)
            row["train_loss"] = partial["loss_sum"] / seen
            row["train_acc"] = partial["correct"] / seen
            row["train_error"] = 1.0 - row["train_acc"]
            dp.average_buffers()  # BatchNorm running statistics: the mean over ranks
            dp.check(f"after epoch {epoch + 1}")
            if test_loader is not None:
                row["test_loss"], row["test_acc"] = evaluate(model, test_loader, comm=dp.comm)
                row["test_error"] = 1.0 - row["test_acc"]
            else:
                row["test_loss"] = row["test_acc"] = row["test_error"] = None
            row["seconds"] = round(time.perf_counter() - t0, 3)
            history.append(row)
            partial = {"loss_sum": 0.0, "correct": 0, "seen": 0}
            if scheduler is not None:
                scheduler.step()
            train_loader.set_epoch(epoch + 1)
            checkpoint(epoch + 1, 0)
            write_metrics()
            if verbose:
                log(_summary(row, epochs))

    history.checkpoint = ckpt_path
    if out is not None and root:
        save(model.state_dict(), out / "model.npz")
        if plot and len(history):
            try:
                plot_history(history, out / "curves.png", title=config.get("title"))
            except ImportError as exc:
                log(f"note: {exc}; curves.png not written")
    return history


def _silent(message: str) -> None:
    """The log of ranks other than 0."""


def _summary(row: dict[str, Any], epochs: int) -> str:
    s = (
        f"epoch {row['epoch']}/{epochs}  lr {row['lr']:.4g}  train loss {row['train_loss']:.4f}"
        f" acc {row['train_acc']:.4f}"
    )
    if row.get("test_acc") is not None:
        s += f"  test loss {row['test_loss']:.4f} acc {row['test_acc']:.4f}"
    return s + f"  ({row['seconds']:.1f}s)"


def _bar(it: Iterator[Any], total: int, desc: str, enabled: bool, **kw: Any) -> Any:
    if not enabled:
        return it
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return it
    return tqdm(it, total=total, desc=desc, leave=kw.pop("leave", True), dynamic_ncols=True, **kw)


def _close(bar: Any) -> None:
    with contextlib.suppress(Exception):
        bar.close()


# -- plots ----------------------------------------------------------------------------------


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError as exc:
        raise ImportError(
            "plotting needs matplotlib: pip install 'minires[plot]' (or pip install matplotlib)"
        ) from exc
    if "matplotlib.pyplot" not in sys.modules:
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_history(
    history: History | Sequence[dict[str, Any]],
    path: str | os.PathLike | None = None,
    title: str | None = None,
) -> Any:
    """Loss (left) and error (right) per epoch, train and test. Saves a PNG if ``path``
    is given; returns the matplotlib Figure."""
    plt = _pyplot()
    h = history if isinstance(history, History) else History(history)
    ep = h["epoch"]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    ax1.plot(ep, h["train_loss"], label="train")
    ax2.plot(ep, [100 * v for v in h["train_error"]], label="train")
    if any(v is not None for v in h["test_loss"]):
        # only the epochs that were tested (a run resumed with a test set after one
        # without has rows of both kinds)
        tested = [i for i, v in enumerate(h["test_loss"]) if v is not None]
        test_ep = [ep[i] for i in tested]
        ax1.plot(test_ep, [h["test_loss"][i] for i in tested], "o-", label="test")
        ax2.plot(test_ep, [100 * h["test_error"][i] for i in tested], "o-", label="test")
    ax1.set(xlabel="epoch", ylabel="cross-entropy loss", title="loss")
    ax2.set(xlabel="epoch", ylabel="error (%)", title="error = 100% - accuracy")
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
        ax.legend()
        ax.xaxis.set_major_locator(plt.MaxNLocator(integer=True))
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=120)
        plt.close(fig)
    return fig


def plot_runs(
    runs: dict[str, History | Sequence[dict[str, Any]]],
    path: str | os.PathLike | None = None,
    metric: str = "train_error",
    title: str | None = None,
    test_metric: str | None = "test_error",
) -> Any:
    """Compare runs on one axis: ``metric`` per epoch for each (bold), and
    ``test_metric`` dashed — the layout of He et al.'s Fig. 6. Errors are shown in %."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    scale = 100.0 if "error" in metric or "acc" in metric else 1.0
    name = metric.replace("_", " ")
    dashed = False
    for label, hist in runs.items():
        h = hist if isinstance(hist, History) else History(hist)
        has_test = bool(test_metric) and all(v is not None for v in h[test_metric])
        (line,) = ax.plot(h["epoch"], [scale * v for v in h[metric]], lw=2,
                          label=f"{label} ({name})" if has_test else label)  # fmt: skip
        if has_test:  # every line gets a legend entry, the dashed ones too
            ax.plot(h["epoch"], [scale * v for v in h[test_metric]], ls="--", lw=1,
                    color=line.get_color(),
                    label=f"{label} ({test_metric.replace('_', ' ')})")  # fmt: skip
            dashed = True
    ylabel = f"{name}, bold; {test_metric.replace('_', ' ')}, dashed" if dashed else name
    ax.set(xlabel="epoch", ylabel=ylabel + (" (%)" if scale == 100 else ""))
    ax.xaxis.set_major_locator(plt.MaxNLocator(integer=True))
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=120)
        plt.close(fig)
    return fig
