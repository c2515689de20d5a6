"""``nn.Dropout``: inverted dropout in training mode, the identity in evaluation mode."""

from __future__ import annotations

from minires import functional as F
from minires.functional.dropout import check_p
from minires.nn.module import Module
from minires.tensor import Tensor


class Dropout(Module):
    """Zero each value with probability ``p`` and scale the rest by ``1 / (1 - p)`` while
    training (``model.train()``); pass the input through unchanged after ``model.eval()``.
    Any input shape. ``inplace`` is accepted for PyTorch compatibility and ignored."""

    def __init__(self, p: float = 0.5, inplace: bool = False):
        super().__init__()
        self.p = check_p(p, "Dropout")

    def forward(self, x: Tensor) -> Tensor:
        return F.dropout(x, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}"
