"""Weight initialisers (in place, like ``torch.nn.init``), drawing from `minires.random`."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from minires.autograd import bump_version
from minires.random import get_rng
from minires.tensor import Tensor


def fan_in_and_fan_out(shape: tuple[int, ...]) -> tuple[int, int]:
    """(fan_in, fan_out) of a weight: conv (out, in, kH, kW) -> (in*kH*kW, out*kH*kW)."""
    if len(shape) < 2:
        raise ValueError(f"fan in/out needs a weight of >= 2 dimensions, got shape {shape}")
    receptive = int(np.prod(shape[2:])) if len(shape) > 2 else 1
    return shape[1] * receptive, shape[0] * receptive


def _gain(nonlinearity: str, a: float = 0.0) -> float:
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        return math.sqrt(2.0 / (1 + a * a))
    if nonlinearity in ("linear", "conv2d", "sigmoid"):
        return 1.0
    raise ValueError(f"unknown nonlinearity {nonlinearity!r}")


def _fill(t: Tensor, values: Any) -> Tensor:
    # in place, counted as torch's in-place init (an op that saved t refuses it after)
    t.data[...] = values
    bump_version(t.data)
    return t


def uniform_(t: Tensor, a: float = 0.0, b: float = 1.0) -> Tensor:
    """Fill with U(a, b)."""
    return _fill(t, get_rng().uniform(a, b, t.shape))


def normal_(t: Tensor, mean: float = 0.0, std: float = 1.0) -> Tensor:
    """Fill with N(mean, std^2)."""
    return _fill(t, get_rng().normal(mean, std, t.shape))


def constant_(t: Tensor, value: float) -> Tensor:
    """Fill with ``value``."""
    return _fill(t, value)


def zeros_(t: Tensor) -> Tensor:
    """Fill with 0."""
    return constant_(t, 0.0)


def ones_(t: Tensor) -> Tensor:
    """Fill with 1."""
    return constant_(t, 1.0)


def kaiming_uniform_(
    t: Tensor, a: float = 0.0, mode: str = "fan_in", nonlinearity: str = "leaky_relu"
) -> Tensor:
    """He-uniform: U(-b, b), b = gain * sqrt(3 / fan)."""
    fan = fan_in_and_fan_out(t.shape)[0 if mode == "fan_in" else 1]
    bound = _gain(nonlinearity, a) * math.sqrt(3.0 / fan) if fan else 0.0
    return uniform_(t, -bound, bound)


def kaiming_normal_(
    t: Tensor, a: float = 0.0, mode: str = "fan_in", nonlinearity: str = "leaky_relu"
) -> Tensor:
    """He-normal: N(0, std^2), std = gain / sqrt(fan); torchvision's ResNets use
    ``mode="fan_out", nonlinearity="relu"`` for every conv."""
    fan = fan_in_and_fan_out(t.shape)[0 if mode == "fan_in" else 1]
    std = _gain(nonlinearity, a) / math.sqrt(fan) if fan else 0.0
    return normal_(t, 0.0, std)
