"""``nn.Dropout`` and ``nn.Dropout2d``: inverted dropout in training mode (of single values,
or of whole channels), the identity in evaluation mode."""

from __future__ import annotations

import warnings

from minires import functional as F
from minires.functional._util import check_float
from minires.functional.dropout import Dropout as _DropoutOp
from minires.functional.dropout import check_p, dropout_mask
from minires.nn.module import Module
from minires.tensor import Tensor


class _DropoutNd(Module):
    """What the dropout modules share: ``p`` (checked to be in [0, 1]) and ``inplace``
    (accepted for PyTorch compatibility and ignored: the output is always a new tensor)."""

    def __init__(self, p: float = 0.5, inplace: bool = False):
        super().__init__()
        self.p = check_p(p, type(self).__name__)
        self.inplace = bool(inplace)

    def extra_repr(self) -> str:
        return f"p={self.p}, inplace={self.inplace}"


class Dropout(_DropoutNd):
    """Zero each value with probability ``p`` and scale the rest by ``1 / (1 - p)`` while
    training (``model.train()``); pass the input through unchanged after ``model.eval()``.
    Any input shape. ``inplace`` is accepted for PyTorch compatibility and ignored."""

    def forward(self, x: Tensor) -> Tensor:
        return F.dropout(x, self.p, self.training)


class _FeatureDropoutShapeError(ValueError, RuntimeError):
    """Channel dropout of an input with fewer than 2 dimensions (a ValueError for minires'
    rule on bad input, a RuntimeError as in PyTorch)."""


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
    the same mask (0 or ``1 / (1 - p)``). ``inplace`` is accepted and ignored.
    """

    def forward(self, x: Tensor) -> Tensor:
        check_float(x, "Dropout2d")
        if x.ndim == 3:
            warnings.warn(
                "dropout2d: Received a 3D input to dropout2d and assuming that channel-wise "
                "1D dropout behavior is desired - input is interpreted as shape (N, C, L), "
                "where C is the channel dim (as PyTorch does)",
                stacklevel=2,
            )
        elif x.ndim != 4:
            warnings.warn(
                f"dropout2d: Received a {x.ndim}-D input to dropout2d; it exists to zero "
                "channels of (N, C, H, W) inputs (use Dropout for single values)",
                stacklevel=2,
            )
        if not self.training or self.p == 0.0:
            return x
        if x.ndim < 2:
            raise _FeatureDropoutShapeError(
                f"Dropout2d: channel dropout needs at least 2 dimensions (N, C, ...), got an "
                f"input of shape {x.shape}"
            )
        mask = dropout_mask(x.shape[:2] + (1,) * (x.ndim - 2), self.p, x.dtype)
        return _DropoutOp.apply(x, mask)  # x * mask, broadcast; backward: grad * mask
