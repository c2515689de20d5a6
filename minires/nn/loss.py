"""Loss modules with PyTorch's names: ``nn.CrossEntropyLoss`` and ``nn.MSELoss``.
Called as ``criterion(prediction, target)``."""

from __future__ import annotations

import numpy as np

from minires import functional as F
from minires.functional.loss import _check_reduction
from minires.nn.module import Module
from minires.tensor import Tensor


class CrossEntropyLoss(Module):
    """`F.cross_entropy` as a module: logits (N, K), integer target (N,) ->
    a 0-d loss ("mean", "sum") or (N,) ("none"). ``label_smoothing`` in [0, 1]."""

    def __init__(self, reduction: str = "mean", label_smoothing: float = 0.0):
        super().__init__()
        self.reduction = _check_reduction(reduction, "CrossEntropyLoss")
        if isinstance(label_smoothing, bool) or not isinstance(
            label_smoothing, int | float | np.integer | np.floating
        ):
            raise TypeError(
                f"CrossEntropyLoss: label_smoothing must be a number, got {label_smoothing!r}"
            )
        if not 0.0 <= label_smoothing <= 1.0:
            raise ValueError(
                f"CrossEntropyLoss: label_smoothing must be between 0.0 and 1.0, "
                f"got {label_smoothing}"
            )
        self.label_smoothing = label_smoothing

    def forward(self, input: Tensor, target: Tensor | np.ndarray) -> Tensor:  # noqa: A002
        return F.cross_entropy(input, target, self.reduction, self.label_smoothing)

    def extra_repr(self) -> str:
        return f"reduction={self.reduction!r}, label_smoothing={self.label_smoothing}"


class MSELoss(Module):
    """`F.mse_loss` as a module: mean (or "sum", "none") of (input - target)^2."""

    def __init__(self, reduction: str = "mean"):
        super().__init__()
        self.reduction = _check_reduction(reduction, "MSELoss")

    def forward(self, input: Tensor, target: Tensor | np.ndarray) -> Tensor:  # noqa: A002
        return F.mse_loss(input, target, self.reduction)

    def extra_repr(self) -> str:
        return f"reduction={self.reduction!r}"
