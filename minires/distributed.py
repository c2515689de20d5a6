"""Data-parallel training on MPI (through mpi4py), the way Horovod does it.

Launch any minires command with ``mpiexec -n N minires train ...``: every process (rank)
holds a full copy of the model, takes its share of each global batch, and the ranks sum
their gradients with one all-reduce per step before the (identical) optimizer step. The
ranks' parameters therefore stay bitwise identical. Without mpi4py, or outside mpiexec,
`get_comm()` is a size-1 communicator and everything runs as a single process.

    from minires import distributed as dist
    comm = dist.get_comm()                 # rank, size, allreduce_, bcast_, barrier
    comm.allreduce_(grad_buffer)           # in place, sum over ranks, no pickling

What is in here:

- `Communicator` (size 1) and `MPICommunicator` (mpi4py's COMM_WORLD): sums and
  broadcasts of NumPy buffers with MPI's buffer calls (no pickling), `bcast_tree` for
  nested dicts of arrays (a checkpoint, an optimizer state), barrier, abort.
- `DataParallel`: the hooks the training loop calls (shard a global batch, scale the loss,
  all-reduce the gradients in one flat buffer, average BatchNorm running statistics,
  reduce metrics, check that the ranks agree).
- autograd ops across ranks: `all_reduce_sum` (backward: identity) and `shard`
  (backward: all-reduce), used by `nn.SyncBatchNorm` and its gradient check.
- `guard`: an exception on any rank prints that rank's traceback and calls MPI_Abort,
  which ends the whole job with a non-zero status within seconds instead of a hang.
- `limit_threads_for_ranks`: each rank gets cores-per-node / ranks-per-node Numba and BLAS
  threads unless the user chose (called from ``minires/__init__`` before NumPy loads).

See docs/distributed.md for the semantics and the measured costs.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from minires._mpi_env import launched_size, limit_threads_for_ranks  # noqa: F401
from minires.autograd import Function

# -- communicators --------------------------------------------------------------------------


class Communicator:
    """The size-1 communicator: one process, every collective a no-op. `MPICommunicator`
    has the same methods across ranks."""

    rank = 0
    size = 1

    @property
    def is_root(self) -> bool:
        """True on rank 0 (the one that prints and writes files)."""
        return self.rank == 0

    def allreduce_(self, buf: np.ndarray) -> np.ndarray:
        """Sum ``buf`` (a contiguous ndarray) over ranks, in place; returns it."""
        return buf

    def bcast_(self, buf: np.ndarray, root: int = 0) -> np.ndarray:
        """Overwrite ``buf`` (contiguous) with root's, in place; returns it."""
        return buf

    def bcast_object(self, obj: Any, root: int = 0) -> Any:
        """Root's Python object on every rank (pickled: for small things like settings)."""
        return obj

    def allgather_(self, send: np.ndarray) -> np.ndarray:
        """Every rank's ``send`` (same shape and dtype everywhere), stacked: (size, *shape)."""
        return send[None].copy()

    def allgather_object(self, obj: Any) -> list[Any]:
        """Every rank's small Python object, in rank order."""
        return [obj]

    def barrier(self) -> None:
        """Wait until every rank gets here."""

    def abort(self, code: int = 1) -> None:
        """End the whole job now with exit status ``code``."""
        os._exit(code)

    def bcast_tree(self, tree: Any, root: int = 0) -> Any:
        """Root's nested dict/list of arrays and plain values on every rank. The structure
        (keys, shapes, dtypes, scalars) travels pickled — it is small; the arrays travel
        with MPI's buffer broadcast, without pickling."""
        if self.size == 1:
            return tree
        arrays: list[np.ndarray] = []
        skeleton = _strip_arrays(tree, arrays) if self.rank == root else None
        skeleton = self.bcast_object(skeleton, root)
        specs = _array_specs(skeleton)
        if self.rank == root:
            bufs = [a if a.flags.c_contiguous else a.copy(order="C") for a in arrays]
        else:
            bufs = [np.empty(shape, np.dtype(dt)) for shape, dt in specs]
        for b in bufs:
            if b.size:
                self.bcast_(b, root)
        return _fill_arrays(skeleton, iter(bufs))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(rank={self.rank}, size={self.size})"


class MPICommunicator(Communicator):
    """MPI's COMM_WORLD through mpi4py. Collective calls must be made by every rank in
    the same order (as in any MPI program)."""

    def __init__(self, comm: Any = None):
        from mpi4py import MPI

        self.MPI = MPI
        self.comm = comm if comm is not None else MPI.COMM_WORLD
        self.rank = self.comm.Get_rank()
        self.size = self.comm.Get_size()

    def allreduce_(self, buf: np.ndarray) -> np.ndarray:
        if not buf.flags.c_contiguous:
            raise ValueError("allreduce_: the buffer must be C-contiguous")
        if self.size > 1:
            self.comm.Allreduce(self.MPI.IN_PLACE, buf, op=self.MPI.SUM)
        return buf

    def bcast_(self, buf: np.ndarray, root: int = 0) -> np.ndarray:
        if not buf.flags.c_contiguous:
            raise ValueError("bcast_: the buffer must be C-contiguous")
        if self.size > 1:
            self.comm.Bcast(buf, root=root)
        return buf

    def bcast_object(self, obj: Any, root: int = 0) -> Any:
        return self.comm.bcast(obj, root=root) if self.size > 1 else obj

    def allgather_(self, send: np.ndarray) -> np.ndarray:
        send = send if send.flags.c_contiguous else send.copy(order="C")
        out = np.empty((self.size, *send.shape), send.dtype)
        self.comm.Allgather(send, out)
        return out

    def allgather_object(self, obj: Any) -> list[Any]:
        return self.comm.allgather(obj)

    def barrier(self) -> None:
        self.comm.Barrier()

    def abort(self, code: int = 1) -> None:
        self.comm.Abort(code)


def _strip_arrays(tree: Any, out: list[np.ndarray]) -> Any:
    if isinstance(tree, np.ndarray):
        out.append(tree)
        return ("__array__", tree.shape, tree.dtype.str)
    if isinstance(tree, dict):
        return type(tree)((k, _strip_arrays(v, out)) for k, v in tree.items())
    if isinstance(tree, list | tuple):
        return type(tree)(_strip_arrays(v, out) for v in tree)
    return tree


def _is_spec(x: Any) -> bool:
    return isinstance(x, tuple) and len(x) == 3 and x[0] == "__array__"


def _array_specs(tree: Any) -> list[tuple[tuple[int, ...], str]]:
    if _is_spec(tree):
        return [(tuple(tree[1]), tree[2])]
    if isinstance(tree, dict):
        return [s for v in tree.values() for s in _array_specs(v)]
    if isinstance(tree, list | tuple):
        return [s for v in tree for s in _array_specs(v)]
    return []


def _fill_arrays(tree: Any, it: Iterator[np.ndarray]) -> Any:
    if _is_spec(tree):
        return next(it)
    if isinstance(tree, dict):
        return type(tree)((k, _fill_arrays(v, it)) for k, v in tree.items())
    if isinstance(tree, list | tuple):
        return type(tree)(_fill_arrays(v, it) for v in tree)
    return tree


_COMM: Communicator | None = None


def get_comm() -> Communicator:
    """The process's communicator: MPI's COMM_WORLD when launched by mpiexec with
    mpi4py installed, else the size-1 `Communicator`. (mpi4py is only imported when a
    launcher's environment says there are several ranks, so single runs pay nothing.)"""
    global _COMM
    if _COMM is None:
        if launched_size() > 1:
            try:
                _COMM = MPICommunicator()
            except ImportError as exc:
                raise RuntimeError(
                    f"launched by an MPI launcher with {launched_size()} ranks, but mpi4py is "
                    "not installed: pip install 'minires[mpi]'"
                ) from exc
        else:
            _COMM = Communicator()
    return _COMM


def set_comm(comm: Communicator | None) -> None:
    """Replace the process's communicator (tests; None: detect again)."""
    global _COMM
    _COMM = comm


# -- abort on exception ---------------------------------------------------------------------


def guard(fn: Callable[[], int | None]) -> int:
    """Run ``fn()`` (a command; returns an exit status). Under several ranks an exception
    or a non-zero status on any rank prints ``[rank r] ...`` and aborts the whole job
    (MPI_Abort), so the other ranks, perhaps waiting in a collective, end within seconds
    instead of hanging. A single process just runs ``fn``."""
    comm = get_comm() if launched_size() > 1 else None
    if comm is None or comm.size == 1:
        return int(fn() or 0)
    try:
        code = int(fn() or 0)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:  # noqa: BLE001 - any failure must end every rank
        msg = "".join(traceback.format_exc())
        _abort(comm, "".join(f"[rank {comm.rank}] {line}\n" for line in msg.splitlines()), 1)
        raise  # pragma: no cover - abort does not return
    if code != 0:
        _abort(comm, f"[rank {comm.rank}] exit status {code}", code)
    return code


_ABORT_RELAY_SECONDS = 0.2


def _abort(comm: Communicator, message: str, code: int) -> None:
    sys.stdout.flush()
    sys.stderr.write(message if message.endswith("\n") else message + "\n")
    sys.stderr.write(f"[rank {comm.rank}] aborting all {comm.size} ranks (MPI_Abort)\n")
    sys.stderr.flush()
    # mpiexec relays a rank's output through its proxy; MPI_Abort kills the proxies, and
    # a message still in the pipe is lost with them (seen once in ~50 runs of the test
    # of this path: empty stderr). A moment for the relay costs nothing on a failing job.
    time.sleep(_ABORT_RELAY_SECONDS)
    comm.abort(code)


# -- launching ------------------------------------------------------------------------------


def find_mpiexec() -> str:
    """The ``mpiexec`` of this Python environment (the mpich wheel puts one beside
    ``python``), else the first on PATH; FileNotFoundError saying what to install."""
    here = Path(sys.executable).parent / "mpiexec"
    if here.exists():
        return str(here)
    found = shutil.which("mpiexec")
    if found:
        return found
    raise FileNotFoundError(
        "no mpiexec found: pip install 'minires[mpi]' (mpi4py and the mpich wheel, which "
        "provides mpiexec), or install an MPI (MPICH, Open MPI) and mpi4py"
    )


def mpi_environment(n: int) -> dict[str, str]:
    """The environment for ``n`` ranks on this machine. When the ranks outnumber the
    cores, MPICH's busy-polling ranks would steal the cores of the ones computing, so
    waiting ranks are told to yield the CPU (MPIR_CVAR_POLLS_BEFORE_YIELD, progress
    throttling) unless the user set those variables."""
    env = dict(os.environ)
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cores = os.cpu_count() or 1
    if n > cores:
        env.setdefault("MPIR_CVAR_POLLS_BEFORE_YIELD", "1")
        env.setdefault("MPIR_CVAR_CH4_PROGRESS_THROTTLE", "1")
    return env


def launch(n: int, args: list[str]) -> int:
    """Run ``minires ARGS`` on ``n`` MPI ranks of this machine (``mpiexec -n n python -m
    minires ARGS``) and return its exit status."""
    if launched_size() > 1:
        print("minires: --workers is for a single process; this one already runs under "
              "mpiexec", file=sys.stderr)  # fmt: skip
        return 2
    if importlib.util.find_spec("mpi4py") is None:
        print("minires: --workers needs mpi4py and an mpiexec: pip install 'minires[mpi]'",
              file=sys.stderr)  # fmt: skip
        return 2
    try:
        mpiexec = find_mpiexec()
    except FileNotFoundError as exc:
        print(f"minires: {exc}", file=sys.stderr)
        return 2
    cmd = [mpiexec, "-n", str(n), sys.executable, "-m", "minires", *args]
    print("+ " + " ".join(cmd), file=sys.stderr)
    return subprocess.call(cmd, env=mpi_environment(n))


# -- autograd ops across ranks --------------------------------------------------------------


def all_reduce_sum(x: Any, comm: Communicator | None = None) -> Any:
    """Sum of ``x`` (a Tensor, same shape on every rank) over ranks, differentiable: the
    backward passes the (identical on every rank) output gradient to each rank's input."""
    return _AllReduceSum.apply(x, comm or get_comm())


def replicated(x: Any, comm: Communicator | None = None) -> Any:
    """``x`` (a parameter replicated on every rank) as used by this rank's part of a
    computation spread over ranks: identity forward; the backward sums the gradient over
    ranks (what the data-parallel gradient all-reduce does), so a gradient check sees the
    gradient of the whole computation."""
    return _AllReduceGrad.apply(x, comm or get_comm())


def shard(x: Any, counts: list[int], comm: Communicator | None = None) -> Any:
    """This rank's rows of ``x`` (a Tensor replicated on every rank): rows
    ``sum(counts[:rank]) : sum(counts[:rank + 1])``. Differentiable: the backward
    all-reduces the zero-padded gradient, so every rank gets the gradient of all rows."""
    return _Shard.apply(x, tuple(int(c) for c in counts), comm or get_comm())


class _AllReduceSum(Function):
    @staticmethod
    def forward(ctx, x, comm):
        ctx.comm = comm
        return comm.allreduce_(np.array(x, copy=True, order="C"))

    @staticmethod
    def backward(ctx, g):
        return g, None


class _AllReduceGrad(Function):
    @staticmethod
    def forward(ctx, x, comm):
        ctx.comm = comm
        return x.copy()

    @staticmethod
    def backward(ctx, g):
        return ctx.comm.allreduce_(np.array(g, copy=True, order="C")), None


class _Shard(Function):
    @staticmethod
    def forward(ctx, x, counts, comm):
        if sum(counts) != x.shape[0] or len(counts) != comm.size:
            raise ValueError(
                f"shard: counts {list(counts)} must have one entry per rank ({comm.size}) and "
                f"sum to the first dimension of the input {x.shape}"
            )
        lo = sum(counts[: comm.rank])
        ctx.comm, ctx.lo, ctx.shape = comm, lo, x.shape
        return np.ascontiguousarray(x[lo : lo + counts[comm.rank]])

    @staticmethod
    def backward(ctx, g):
        full = np.zeros(ctx.shape, g.dtype)
        full[ctx.lo : ctx.lo + g.shape[0]] = g
        return ctx.comm.allreduce_(full), None, None


# -- the training loop's hooks --------------------------------------------------------------


def split_counts(n: int, size: int) -> list[int]:
    """How a global batch of ``n`` samples is split over ``size`` ranks: contiguous
    shards, the first ``n % size`` ranks one sample more (no padding)."""
    q, r = divmod(n, size)
    return [q + (1 if i < r else 0) for i in range(size)]


class DataParallel:
    """What the training loop does differently on several ranks (see docs/distributed.md).

    Args:
        model: the replica on this rank.
        optimizer: its optimizer (its state is broadcast by `broadcast_state`).
        comm: the communicator (default `get_comm()`).
        check_sync: verify at `check` that every rank's parameters, buffers and optimizer
            state hash to the same digest.
    """

    def __init__(self, model: Any, optimizer: Any = None, comm: Communicator | None = None,
                 check_sync: bool = False):  # fmt: skip
        self.model, self.optimizer = model, optimizer
        self.comm = comm or get_comm()
        self.check_sync = check_sync
        self._flat: np.ndarray | None = None
        self.n_global = 0  # samples in the current global batch (set by epoch_iter)

    @property
    def size(self) -> int:
        return self.comm.size

    # state --------------------------------------------------------------------------------

    def broadcast_state(self) -> None:
        """Make every rank's parameters, buffers and optimizer state rank 0's."""
        if self.size == 1:
            return
        state = self.comm.bcast_tree(dict(self.model.state_dict()) if self.comm.is_root else None)
        self.model.load_state_dict(state)
        if self.optimizer is not None:
            opt = self.comm.bcast_tree(self.optimizer.state_dict() if self.comm.is_root else None)
            self.optimizer.load_state_dict(opt)

    def load_on_root(self, load: Callable[[], Any]) -> Any:
        """``load()`` on rank 0 only (e.g. read a checkpoint: other nodes may not see the
        file), its result broadcast to every rank."""
        return self.comm.bcast_tree(load() if self.comm.is_root else None)

    # data ---------------------------------------------------------------------------------

    def epoch_iter(self, loader: Any, epoch: int, start_batch: int = 0) -> Iterator[tuple]:
        """This rank's shard ``(x, y)`` of each global batch of ``epoch`` (the whole batch
        on one process); ``self.n_global`` is the size of the current global batch. The
        union of the shards is exactly the batch one process would see."""
        if self.size == 1:
            for batch in loader.epoch_iter(epoch, start_batch):
                self.n_global = len(batch[-1].data)
                yield batch
            return
        for i in range(start_batch, len(loader)):
            idx = loader.batch_indices(epoch, i)
            counts = split_counts(len(idx), self.size)
            if min(counts) == 0:
                raise ValueError(
                    f"batch {i + 1} of epoch {epoch + 1} has {len(idx)} samples, fewer than "
                    f"the {self.size} ranks: choose a batch size so that every batch (also "
                    "the last, smaller one) has at least one sample per rank"
                )
            lo = sum(counts[: self.comm.rank])
            self.n_global = len(idx)
            yield loader.load(idx[lo : lo + counts[self.comm.rank]], epoch)

    def check_batches(self, loader: Any) -> None:
        """A clear error before training if some batch would leave a rank empty."""
        n, b = len(loader.dataset), loader.batch_size
        last = n % b if not loader.drop_last else 0
        if b < self.size or 0 < last < self.size:
            raise ValueError(
                f"global batch {b} with {n} samples leaves a batch of "
                f"{last if 0 < last < self.size else b} for {self.size} ranks: every rank "
                "needs at least one sample per step (change --batch-size)"
            )

    # gradients ----------------------------------------------------------------------------

    def backward(self, loss: Any, n_local: int) -> None:
        """``loss.backward()`` of this rank's mean loss over its ``n_local`` samples, scaled
        by n_local / n_global: the ranks' gradients then sum to the gradient of the
        global batch's mean loss (exact for uneven shards)."""
        if self.size == 1:
            loss.backward()
        else:
            loss.backward(np.asarray(n_local / self.n_global, dtype=loss.dtype))

    def allreduce_gradients(self) -> None:
        """Sum every parameter's gradient over ranks, in one flat buffer (one MPI call).
        The buffer also carries, per parameter, how many ranks have a gradient: a
        parameter no rank used keeps ``grad = None`` (as on one process, where the
        optimizer then skips it)."""
        if self.size == 1:
            return
        params = [p for p in self.model.parameters() if p.requires_grad]
        dtypes = {p.data.dtype for p in params}
        if len(dtypes) != 1:
            raise TypeError(f"allreduce_gradients: mixed dtypes {sorted(map(str, dtypes))}")
        total = sum(p.data.size for p in params)
        dt = dtypes.pop()
        size = total + len(params)
        if self._flat is None or self._flat.size != size or self._flat.dtype != dt:
            self._flat = np.empty(size, dt)
        flat, off = self._flat, 0
        for j, p in enumerate(params):
            k = p.data.size
            flat[off : off + k] = 0 if p.grad is None else p.grad.ravel()
            flat[total + j] = p.grad is not None
            off += k
        self.comm.allreduce_(flat)
        off = 0
        for j, p in enumerate(params):
            k = p.data.size
            used = flat[total + j] > 0
            p.grad = flat[off : off + k].reshape(p.data.shape).copy() if used else None
            off += k

    # batchnorm ----------------------------------------------------------------------------

    def average_buffers(self) -> None:
        """Average floating-point buffers (BatchNorm running statistics) over ranks, so
        every rank evaluates and saves the same model. (SyncBatchNorm's are equal already.)"""
        if self.size == 1:
            return
        for mod in self.model.modules():
            if getattr(mod, "synchronized_stats", False):
                continue  # SyncBatchNorm: already the same on every rank
            for buf in mod._buffers.values():
                if (isinstance(buf, np.ndarray) and buf.dtype.kind == "f"
                        and buf.flags.c_contiguous):  # fmt: skip
                    self.comm.allreduce_(buf)
                    buf /= self.size

    # metrics ------------------------------------------------------------------------------

    def batch_metrics(self, loss: float, hits: int, n: int) -> tuple[float, int, int]:
        """(mean loss, correct, samples) of the global batch from this rank's shard's."""
        if self.size == 1:
            return loss, hits, n
        a = self.comm.allreduce_(np.array([loss * n, hits, n], dtype=np.float64))
        return float(a[0] / a[2]), int(a[1]), int(a[2])

    def digest(self) -> str:
        """A SHA-256 of the parameters, buffers and optimizer state of this rank."""
        h = hashlib.sha256()
        for k, v in self.model.state_dict().items():
            h.update(k.encode())
            h.update(np.asarray(v).tobytes())
        if self.optimizer is not None:
            for k, st in sorted(self.optimizer.state_dict()["state"].items()):
                for name, v in sorted(st.items()):
                    h.update(f"{k}.{name}".encode())
                    h.update(np.asarray(v).tobytes())
        return h.hexdigest()

    def check(self, where: str) -> None:
        """With ``check_sync``: raise RuntimeError unless every rank has the same digest."""
        if not self.check_sync or self.size == 1:
            return
        digests = self.comm.allgather_object(self.digest())
        if len(set(digests)) != 1:
            groups: dict[str, list[int]] = {}
            for r, d in enumerate(digests):
                groups.setdefault(d, []).append(r)
            raise RuntimeError(
                f"--check-sync: ranks disagree {where}: "
                + "; ".join(f"ranks {g} have {d[:12]}" for d, g in groups.items())
            )
