"""Adam (L2 weight decay) and AdamW (decoupled weight decay) — PyTorch's update rules."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from minires.optim.optimizer import (
    Optimizer,
    check_hyperparameters,
    check_implementation_flags,
)
from minires.tensor import Tensor


class Adam(Optimizer):
    r"""Adam, exactly as ``torch.optim.Adam`` computes it. Per parameter p with grad g, at
    step t = 1, 2, ...:

    .. code-block:: text

        p = p * (1 - lr * weight_decay)          (AdamW, or decoupled_weight_decay)
        g = g + weight_decay * p                 (Adam: L2 penalty)
        m = m + (1 - beta1) * (g - m)            (running mean of g; torch's lerp)
        v = beta2 * v + (1 - beta2) * g * g      (running mean of g^2)
        v_max = max(v_max, v)                    (amsgrad only; then use v_max for v)
        denom = sqrt(v) / sqrt(1 - beta2^t) + eps
        p = p - lr / (1 - beta1^t) * m / denom

    Args:
        params: Parameters or parameter groups.
        lr: learning rate.
        betas: decay rates (beta1, beta2) of the two running means.
        eps: added to the denominator for stability.
        weight_decay: L2 penalty coefficient (added to the gradient).
        amsgrad: use the running maximum of v (Reddi et al. 2018).
        maximize: ascend instead of descend.
        decoupled_weight_decay: decay as AdamW does (torch's option of the same name).
        foreach, fused, capturable, differentiable: torch's implementation switches,
            accepted for torch code (see `check_implementation_flags`).
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        amsgrad: bool = False,
        maximize: bool = False,
        *,
        decoupled_weight_decay: bool = False,
        foreach: bool | None = None,
        fused: bool | None = None,
        capturable: bool = False,
        differentiable: bool = False,
    ):
        owner = type(self).__name__
        check_implementation_flags(owner, foreach, fused, capturable, differentiable)
        check_hyperparameters(
            owner, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad,
            maximize=maximize, decoupled_weight_decay=decoupled_weight_decay,
        )  # fmt: skip
        if lr < 0.0:
            raise ValueError(f"{type(self).__name__}: invalid learning rate {lr}")
        if eps < 0.0:
            raise ValueError(f"{type(self).__name__}: invalid eps {eps}")
        if not (0.0 <= betas[0] < 1.0 and 0.0 <= betas[1] < 1.0):
            raise ValueError(f"{type(self).__name__}: betas must be in [0, 1), got {betas}")
        if weight_decay < 0.0:
            raise ValueError(f"{type(self).__name__}: invalid weight_decay {weight_decay}")
        defaults = dict(
            lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay, amsgrad=amsgrad,
            maximize=maximize, decoupled_weight_decay=decoupled_weight_decay,
        )  # fmt: skip
        super().__init__(params, defaults)

    def _update_group(self, group: dict[str, Any], pairs: list[tuple[Tensor, np.ndarray]]) -> None:
        lr, (beta1, beta2), eps = group["lr"], group["betas"], group["eps"]
        weight_decay, amsgrad = group["weight_decay"], group["amsgrad"]
        decoupled = group["decoupled_weight_decay"]
        for p, g in pairs:
            g = -g if group["maximize"] else g
            state = self.state.setdefault(id(p), {})
            if not state:
                state["step"] = 0.0
                state["exp_avg"] = np.zeros_like(p.data)
                state["exp_avg_sq"] = np.zeros_like(p.data)
                if amsgrad:
                    state["max_exp_avg_sq"] = np.zeros_like(p.data)
            m, v = state["exp_avg"], state["exp_avg_sq"]
            state["step"] += 1
            t = state["step"]

            if weight_decay != 0:
                if decoupled:
                    p.data *= 1 - lr * weight_decay
                else:
                    g = g + weight_decay * p.data

            # torch's exp_avg.lerp_(g, w) works from the nearer end: the same value in exact
            # arithmetic, but with beta1 < 0.5 (w > 0.5) the other form rounds differently;
            # w in the parameter's dtype, as torch's (float32: 1 - 1e-8 is 1, m becomes g)
            w = p.data.dtype.type(1 - beta1)
            if w < 0.5:
                m += w * (g - m)
            else:
                m[...] = g - (g - m) * (1 - w)
            v *= beta2
            v += (1 - beta2) * g * g

            step_size = lr / (1 - beta1**t)
            bias_correction2_sqrt = math.sqrt(1 - beta2**t)
            if amsgrad:
                np.maximum(state["max_exp_avg_sq"], v, out=state["max_exp_avg_sq"])
                v = state["max_exp_avg_sq"]
            denom = np.sqrt(v) / bias_correction2_sqrt + eps
            p.data -= step_size * m / denom  # torch: addcdiv(m, denom, -step_size)


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter), as ``torch.optim.AdamW``:
    the parameters shrink by ``lr * weight_decay`` each step instead of an L2 term being
    added to the gradient. Same arguments as `Adam` but ``decoupled_weight_decay``;
    ``weight_decay`` defaults to 0.01."""

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
        amsgrad: bool = False,
        maximize: bool = False,
        *,
        foreach: bool | None = None,
        fused: bool | None = None,
        capturable: bool = False,
        differentiable: bool = False,
    ):
        super().__init__(
            params, lr, betas, eps, weight_decay, amsgrad, maximize, decoupled_weight_decay=True,
            foreach=foreach, fused=fused, capturable=capturable, differentiable=differentiable,
        )  # fmt: skip

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """As `Optimizer.load_state_dict`; the decay stays decoupled (as torch's AdamW
        does), even if the state is an Adam's."""
        super().load_state_dict(state_dict)
        for group in self.param_groups:
            group["decoupled_weight_decay"] = True
