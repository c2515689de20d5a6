"""``nn.Dropout`` and ``nn.Dropout2d``: inverted dropout in training mode (of single values,
or of whole channels), the identity in evaluation mode."""

from __future__ import annotations

from minires import functional as F
from minires.functional.dropout import check_p
from minires.nn.module import Module
from minires.tensor import Tensor


class _DropoutNd(Module):
    """What the dropout modules share: ``p`` (checked to be in [0, 1]) and ``inplace``
    (write the result into the input, recorded in the graph as PyTorch does)."""

    def __init__(self, p: float = 0.5, inplace: bool = False):
        super().__init__()
        self.p = check_p(p, type(self).__name__)
        self.inplace = bool(inplace)

    def extra_repr(self) -> str:
        return f"p={self.p}, inplace={self.inplace}"


class Dropout(_DropoutNd):
    """Zero each value with probability ``p`` and scale the rest by ``1 / (1 - p)`` while
    training (``model.train()``); pass the input through unchanged after ``model.eval()``.
    Any input shape."""

    def forward(self, x: Tensor) -> Tensor:
        return F.dropout(x, self.p, self.training, self.inplace)


class Dropout2d(_DropoutNd):
    """Zero whole channels: in training each ``(n, c)`` feature map ``x[n, c]`` is zeroed
    with probability ``p`` and the kept ones are scaled by ``1 / (1 - p)``; after
    ``model.eval()`` the input passes through unchanged (as `Dropout`, but neighbouring
    pixels of a conv's output are dropped together; Tompson et al. 2015).

    Shape: input ``(N, C, H, W)``, output the same. As in PyTorch, a 3-D input is read as
    ``(N, C, L)`` (with a warning: channel-wise 1-D dropout) and other inputs of 2 or more
    dimensions as ``(N, C, ...)`` (with a warning); fewer than 2 dimensions is an error in
    training.

    The mask, of shape ``(N, C, 1, 1)``, is drawn from minires' generator
    (``mr.manual_seed`` makes it reproducible); the gradient is the upstream gradient times
    the same mask (0 or ``1 / (1 - p)``).
    """

    def forward(self, x: Tensor) -> Tensor:
        return F.dropout2d(x, self.p, self.training, self.inplace)
