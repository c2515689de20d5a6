"""Stochastic gradient descent with momentum, dampening, Nesterov and L2 weight decay —
PyTorch's update rule, step for step."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from minires.optim.optimizer import (
    Optimizer,
    check_hyperparameters,
    check_implementation_flags,
    required,
)
from minires.tensor import Tensor


class SGD(Optimizer):
    r"""SGD, exactly as ``torch.optim.SGD`` computes it. For each parameter p with grad g:

    .. code-block:: text

        g = g + weight_decay * p                     (L2 penalty, if weight_decay != 0)
        if momentum != 0:
            buf = g                    on the first step
            buf = momentum * buf + (1 - dampening) * g   afterwards
            g = g + momentum * buf     if nesterov  else  g = buf
        p = p - lr * g

    Note that the momentum buffer is *not* scaled by the learning rate (PyTorch's form,
    not Sutskever's), so changing ``lr`` mid-run takes effect immediately.

    Args:
        params: Parameters or parameter groups (see `Optimizer`).
        lr: learning rate (default 1e-3, as in PyTorch 2).
        momentum: momentum factor (0 = plain SGD).
        dampening: scales the gradient added into the momentum buffer by ``1 - dampening``.
        weight_decay: L2 penalty coefficient.
        nesterov: Nesterov momentum (needs momentum > 0 and dampening = 0).
        maximize: ascend instead of descend.
        foreach, fused, differentiable: torch's implementation switches, accepted for
            torch code (see `check_implementation_flags`).
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,  # PyTorch 2's default
        momentum: float = 0.0,
        dampening: float = 0.0,
        weight_decay: float = 0.0,
        nesterov: bool = False,
        maximize: bool = False,
        *,
        foreach: bool | None = None,
        differentiable: bool = False,
        fused: bool | None = None,
    ):
        check_implementation_flags("SGD", foreach, fused, differentiable=differentiable)
        check_hyperparameters(
            "SGD", lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay,
            nesterov=nesterov, maximize=maximize,
        )  # fmt: skip
        if lr is not required and lr < 0.0:
            raise ValueError(f"SGD: invalid learning rate {lr}")
        if momentum < 0.0:
            raise ValueError(f"SGD: invalid momentum {momentum}")
        if weight_decay < 0.0:
            raise ValueError(f"SGD: invalid weight_decay {weight_decay}")
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("SGD: Nesterov momentum requires momentum > 0 and zero dampening")
        defaults = dict(
            lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay,
            nesterov=nesterov, maximize=maximize,
        )  # fmt: skip
        super().__init__(params, defaults)

    def _update_group(self, group: dict[str, Any], pairs: list[tuple[Tensor, np.ndarray]]) -> None:
        lr, momentum, dampening = group["lr"], group["momentum"], group["dampening"]
        weight_decay, nesterov = group["weight_decay"], group["nesterov"]
        for p, g in pairs:
            g = -g if group["maximize"] else g
            if weight_decay != 0:
                g = g + weight_decay * p.data
            if momentum != 0:
                state = self.state.setdefault(id(p), {})
                buf = state.get("momentum_buffer")
                if buf is None:
                    buf = state["momentum_buffer"] = np.array(g, dtype=p.dtype, copy=True)
                else:
                    buf *= momentum
                    buf += (1 - dampening) * g
                g = g + momentum * buf if nesterov else buf
            p.data -= lr * g
