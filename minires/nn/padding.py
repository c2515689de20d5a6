"""Padding layers with PyTorch's names: `F.pad` of the last two dims as a module."""

from __future__ import annotations

from typing import Any

import numpy as np

from minires import functional as F
from minires.functional._util import check_int
from minires.nn.module import Module
from minires.tensor import Tensor


def _padding4(padding: Any, op: str) -> tuple[int, int, int, int]:
    """An int (all four sides) or (left, right, top, bottom) of ints, as torch's."""
    if isinstance(padding, int | np.integer) and not isinstance(padding, bool | np.bool_):
        return (int(padding),) * 4
    if not isinstance(padding, tuple | list) or len(padding) != 4:
        raise TypeError(
            f"{op}: padding must be an int or (left, right, top, bottom), got {padding!r}"
        )
    return tuple(check_int(p, "padding entry", op) for p in padding)  # type: ignore[return-value]


class _Pad2d(Module):
    """Pads the last two dims by ``padding`` = (left, right, top, bottom) (an int: all four;
    negative entries crop) with `F.pad`'s `mode`: (..., H, W) -> (..., H + top + bottom,
    W + left + right)."""

    mode = "constant"

    def __init__(self, padding: Any):
        super().__init__()
        self.padding = _padding4(padding, type(self).__name__)

    def forward(self, x: Tensor) -> Tensor:
        return F.pad(x, self.padding, mode=self.mode)

    def extra_repr(self) -> str:
        return f"{self.padding}"


class ZeroPad2d(_Pad2d):
    """Zeros around the last two dims (torch.nn.ZeroPad2d)."""


class ConstantPad2d(_Pad2d):
    """``value`` around the last two dims (torch.nn.ConstantPad2d)."""

    def __init__(self, padding: Any, value: float):
        super().__init__(padding)
        number = isinstance(value, int | float | np.integer | np.floating)
        if not number or isinstance(value, bool | np.bool_):
            raise TypeError(f"ConstantPad2d: value must be a number, got {value!r}")
        self.value = float(value)  # inf and NaN too, as torch

    def forward(self, x: Tensor) -> Tensor:
        return F.pad(x, self.padding, value=self.value)

    def extra_repr(self) -> str:
        return f"padding={self.padding}, value={self.value}"


class ReflectionPad2d(_Pad2d):
    """The input mirrored about its edges, without repeating them (torch.nn.ReflectionPad2d);
    (C, H, W) or (N, C, H, W), each padding < the size it pads."""

    mode = "reflect"


class ReplicationPad2d(_Pad2d):
    """The edge values repeated (torch.nn.ReplicationPad2d); (C, H, W) or (N, C, H, W)."""

    mode = "replicate"


class CircularPad2d(_Pad2d):
    """The input wrapped around (torch.nn.CircularPad2d); (C, H, W) or (N, C, H, W), each
    padding <= the size it pads."""

    mode = "circular"
