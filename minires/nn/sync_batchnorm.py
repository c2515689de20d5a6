"""`SyncBatchNorm`: batch normalisation whose training-mode statistics are those of the
global batch, spread over MPI ranks (`minires.distributed`), as PyTorch's
``nn.SyncBatchNorm``. With one process it is exactly `BatchNorm2d`.

Forward: each rank computes its shard's per-channel (count, mean, M2 = sum of squared
deviations); one all-gather brings every rank's triple, and every rank combines them in
rank order (Chan et al.'s parallel variance, numerically as good as a two-pass variance)
into the global mean and biased variance. Backward: with x̂ = (x - mean) / σ and g the
output gradient,

    dx = w / σ * (g - Σ g / N - x̂ * Σ (g x̂) / N)

where the sums run over all N samples of all ranks: one all-reduce of the two per-channel
sums. The weight and bias gradients are the local Σ g x̂ and Σ g; the data-parallel
gradient all-reduce sums them over ranks like every other parameter's.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from minires.autograd import Context, Function
from minires.distributed import Communicator, get_comm
from minires.functional.norm import _update_running
from minires.nn.layers import BatchNorm2d
from minires.nn.module import Module
from minires.tensor import Tensor


def _axes(x: np.ndarray) -> tuple[int, ...]:
    return (0,) if x.ndim == 2 else (0, 2, 3)


def _bshape(x: np.ndarray) -> tuple[int, ...]:
    return (1, -1) if x.ndim == 2 else (1, -1, 1, 1)


def global_moments(x: np.ndarray, comm: Communicator) -> tuple[int, np.ndarray, np.ndarray]:
    """(N, mean, biased variance) per channel of ``x`` (N, C[, H, W]) over all ranks'
    shards: one all-gather of (count, mean, M2), combined in rank order on every rank, so
    every rank gets bitwise the same result. Computed in float64."""
    axes = _axes(x)
    c = x.shape[1]
    n_local = x.size // c if x.size else 0
    xd = x.astype(np.float64, copy=False)
    mean_l = xd.mean(axis=axes) if n_local else np.zeros(c)
    m2_l = ((xd - mean_l.reshape(_bshape(x))) ** 2).sum(axis=axes) if n_local else np.zeros(c)
    rows = comm.allgather_(np.concatenate([[float(n_local)], mean_l, m2_l]))
    n, mean, m2 = 0.0, np.zeros(c), np.zeros(c)
    for row in rows:  # Chan et al.: merge (n, mean, M2) of two parts
        n_r, mean_r, m2_r = row[0], row[1 : c + 1], row[c + 1 :]
        if n_r == 0:
            continue
        tot = n + n_r
        delta = mean_r - mean
        mean = mean + delta * (n_r / tot)
        m2 = m2 + m2_r + delta**2 * (n * n_r / tot)
        n = tot
    return int(n), mean, m2 / max(n, 1.0)


class SyncBatchNormTrain(Function):
    """Training-mode batch norm over the global batch (see the module doc)."""

    @staticmethod
    def forward(ctx, x, weight, bias, running_mean, running_var, momentum, eps, comm):
        n, mean, var = global_moments(x, comm)
        if n < 2:
            raise ValueError(
                f"SyncBatchNorm: expected more than 1 value per channel over all ranks, got {n}"
            )
        if running_mean is not None:
            _update_running(running_mean, running_var, mean, var, n, momentum)
        inv_std = (1.0 / np.sqrt(var + eps)).astype(x.dtype)
        bs = _bshape(x)
        xhat = (x - mean.astype(x.dtype).reshape(bs)) * inv_std.reshape(bs)
        w = np.ones(x.shape[1], x.dtype) if weight is None else weight
        b = np.zeros(x.shape[1], x.dtype) if bias is None else bias
        ctx.save_for_backward(xhat, inv_std, w)
        ctx.n, ctx.comm = n, comm
        return xhat * w.reshape(bs) + b.reshape(bs)

    @staticmethod
    def backward(ctx: Context, g: np.ndarray):
        xhat, inv_std, w = ctx.saved_tensors
        axes, bs = _axes(g), _bshape(g)
        sum_g = g.sum(axis=axes)
        sum_gx = (g * xhat).sum(axis=axes)
        c = len(sum_g)
        tot = ctx.comm.allreduce_(np.concatenate([sum_g, sum_gx]))  # Σ over all ranks
        mean_g, mean_gx = (tot[:c] / ctx.n).reshape(bs), (tot[c:] / ctx.n).reshape(bs)
        gx = (w * inv_std).reshape(bs) * (g - mean_g - xhat * mean_gx)
        return gx.astype(g.dtype, copy=False), sum_gx, sum_g, None, None, None, None, None


def sync_batch_norm(
    x: Tensor,
    running_mean: np.ndarray | None,
    running_var: np.ndarray | None,
    weight: Tensor | None = None,
    bias: Tensor | None = None,
    momentum: float = 0.1,
    eps: float = 1e-5,
    comm: Communicator | None = None,
) -> Tensor:
    """Training-mode batch norm of ``x`` (N, C) or (N, C, H, W) with the statistics of
    the union of every rank's ``x``; running statistics updated in place (unbiased
    variance of the global batch). Every rank must call it (a collective)."""
    if not isinstance(x, Tensor) or x.ndim not in (2, 4):
        raise ValueError(
            f"sync_batch_norm: expected a Tensor (N, C) or (N, C, H, W), got "
            f"{getattr(x, 'shape', type(x).__name__)}"
        )
    return SyncBatchNormTrain.apply(
        x, weight, bias, running_mean, running_var, float(momentum), float(eps),
        comm or get_comm(),
    )  # fmt: skip


class SyncBatchNorm(BatchNorm2d):
    """`BatchNorm2d` whose training-mode statistics are those of the global batch over
    all MPI ranks (PyTorch's ``nn.SyncBatchNorm``); in eval mode, or on one process, it
    is `BatchNorm2d`. Build one directly or convert a model with
    ``nn.SyncBatchNorm.convert_sync_batchnorm(model)``.

    Args:
        num_features, eps, momentum, affine, track_running_stats, device, dtype, bias: as
            `BatchNorm2d` (torch's order: ``process_group`` comes before ``device``).
        process_group: the `minires.distributed` communicator (default: the world).
    """

    synchronized_stats = True  # running statistics are equal on every rank already

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1,
                 affine: bool = True, track_running_stats: bool = True,
                 process_group: Communicator | None = None, device: Any = None,
                 dtype: Any = None, *, bias: bool = True):  # fmt: skip
        super().__init__(num_features, eps, momentum, affine, track_running_stats,
                         device, dtype, bias=bias)  # fmt: skip
        self.process_group = process_group

    def forward(self, x: Tensor) -> Tensor:
        comm = self.process_group or get_comm()
        if not self.training or comm.size == 1:
            return super().forward(x)
        if not isinstance(x, Tensor):
            raise TypeError(f"SyncBatchNorm: input must be a Tensor, got {type(x).__name__}")
        self._check_input(x)
        momentum, running_mean, running_var = self._running_stats()
        return sync_batch_norm(
            x, running_mean, running_var, self.weight, self.bias, momentum, self.eps, comm
        )

    @classmethod
    def convert_sync_batchnorm(
        cls, module: Module, process_group: Communicator | None = None
    ) -> Module:
        """``module`` with every `BatchNorm2d` replaced by a `SyncBatchNorm` that shares
        its parameters and buffers (so the values, and an optimizer built on the old
        parameters, carry over). Returns the converted module (a new object if
        ``module`` itself is a BatchNorm2d)."""
        out = module
        if isinstance(module, BatchNorm2d) and not isinstance(module, SyncBatchNorm):
            dtype = (
                module.weight.dtype
                if module.weight is not None
                else (module.running_mean.dtype if module.running_mean is not None else np.float32)
            )
            out = cls(module.num_features, module.eps, module.momentum, module.affine,
                      module.track_running_stats, process_group, dtype=dtype,
                      bias=module.bias is not None)  # fmt: skip
            if module.affine:
                out.weight, out.bias = module.weight, module.bias
            if module.track_running_stats:
                out.running_mean, out.running_var = module.running_mean, module.running_var
                out.num_batches_tracked = module.num_batches_tracked
            out.train(module.training)
        for name, child in list(module.named_children()):
            new = cls.convert_sync_batchnorm(child, process_group)
            if new is not child:  # in place: keeps the order of children and parameters
                out._modules[name] = new
                object.__setattr__(out, name, new)
        return out
