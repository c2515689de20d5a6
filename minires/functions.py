"""torch's module-level functions: ``mr.abs(x)``, ``mr.flatten(x)``, ``mr.max(x, dim)``,
``mr.allclose(a, b)``, ``mr.numel(x)``, ...

The ops themselves live in minires.functional (each a Function with its backward); these
give them torch's module-level signatures and add no arithmetic. Ops whose functional form
already checks its input and matches torch are re-exported as they are
(minires/__init__.py); the ones here add a check that the input is a Tensor, or differ
from the functional signature. Defining `abs`, `max`, `min` here shadows the builtins for
the rest of this module.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from minires import functional as F
from minires.creation import _number
from minires.functional._util import check_same_dtype, check_tensor
from minires.tensor import Tensor


def is_tensor(obj: Any) -> bool:
    """True if ``obj`` is a minires Tensor (a Parameter included), as ``torch.is_tensor``."""
    return isinstance(obj, Tensor)


def numel(input: Tensor) -> int:  # noqa: A002 - torch's argument name
    """The number of elements of ``input`` (the product of its shape; 1 for a 0-d tensor)."""
    check_tensor(input, "numel")
    return int(input.data.size)


def _pair(op: str, input: Any, other: Any) -> None:  # noqa: A002
    check_tensor(input, op)
    check_tensor(other, op, "other")


def equal(input: Tensor, other: Tensor) -> bool:  # noqa: A002
    """True if both tensors have the same shape and the same values (no broadcasting;
    values of different dtypes compare as numbers; NaN is never equal), as ``torch.equal``."""
    _pair("equal", input, other)
    return input.shape == other.shape and bool(np.array_equal(input.data, other.data))


def allclose(
    input: Tensor,  # noqa: A002
    other: Tensor,
    rtol: float = 1e-05,
    atol: float = 1e-08,
    equal_nan: bool = False,
) -> bool:
    """True if ``|input - other| <= atol + rtol * |other|`` everywhere, with the shapes
    broadcast (as ``torch.allclose``; NaNs are equal only with ``equal_nan=True``, equal
    infinities are close). Both tensors must have one dtype, as in torch."""
    _pair("allclose", input, other)
    check_same_dtype("allclose", input=input, other=other)
    if input.dtype.kind not in "fiu":
        raise TypeError(f"allclose: needs numeric tensors, got {input.dtype}")
    for name, v in (("rtol", rtol), ("atol", atol)):
        _number("allclose", name, v)
    if not isinstance(equal_nan, bool | np.bool_):
        raise TypeError(f"allclose: equal_nan must be a bool, got {equal_nan!r}")
    try:
        np.broadcast_shapes(input.shape, other.shape)
    except ValueError:
        raise ValueError(
            f"allclose: shapes {input.shape} and {other.shape} do not broadcast"
        ) from None
    return bool(np.allclose(input.data, other.data, rtol=rtol, atol=atol, equal_nan=equal_nan))


def add(input: Tensor, other: Any, *, alpha: float = 1) -> Tensor:  # noqa: A002
    """``input + alpha * other`` with broadcasting (torch.add)."""
    check_tensor(input, "add")
    return input.add(other, alpha=alpha)


def sub(input: Tensor, other: Any, *, alpha: float = 1) -> Tensor:  # noqa: A002
    """``input - alpha * other`` with broadcasting (torch.sub)."""
    check_tensor(input, "sub")
    return input.sub(other, alpha=alpha)


def mul(input: Tensor, other: Any) -> Tensor:  # noqa: A002
    """``input * other`` with broadcasting (torch.mul)."""
    check_tensor(input, "mul")
    return input.mul(other)


def div(input: Tensor, other: Any, *, rounding_mode: str | None = None) -> Tensor:  # noqa: A002
    """``input / other`` with broadcasting, or rounded "floor" / "trunc" (torch.div)."""
    check_tensor(input, "div")
    return input.div(other, rounding_mode=rounding_mode)


def flip(input: Tensor, dims: Any) -> Tensor:  # noqa: A002
    """``input`` reversed along ``dims`` (torch.flip)."""
    check_tensor(input, "flip")
    return F.flip(input, dims)


def logsumexp(input: Tensor, dim: Any, keepdim: bool = False) -> Tensor:  # noqa: A002
    """log(sum(exp(input))) along ``dim`` without overflow (torch.logsumexp)."""
    check_tensor(input, "logsumexp")
    return F.logsumexp(input, dim, keepdim)


def abs(input: Tensor) -> Tensor:  # noqa: A001, A002 - torch.abs
    """Elementwise ``|input|``; any shape, the same shape out."""
    check_tensor(input, "abs")
    return F.abs(input)


def sqrt(input: Tensor) -> Tensor:  # noqa: A002
    """Elementwise square root (NaN below 0); any shape, the same shape out; integers give
    float32."""
    check_tensor(input, "sqrt")
    return F.sqrt(input)


def clamp(input: Tensor, min: Any = None, max: Any = None) -> Tensor:  # noqa: A001, A002
    """Values limited to ``[min, max]`` (numbers, or Tensors broadcasting to ``input``'s
    shape); the output has ``input``'s shape."""
    check_tensor(input, "clamp")
    return F.clamp(input, min, max)


clip = clamp


def matmul(input: Tensor, other: Tensor) -> Tensor:  # noqa: A002
    """Matrix product with torch's (and NumPy's) broadcasting: (..., n, k) @ (..., k, m)
    -> (..., n, m); a 1-D operand is a vector."""
    _pair("matmul", input, other)
    return F.matmul(input, other)


def permute(input: Tensor, dims: Any) -> Tensor:  # noqa: A002
    """``input`` with its dimensions reordered: ``permute(x, (0, 2, 3, 1))`` takes (N, C,
    H, W) to (N, H, W, C)."""
    check_tensor(input, "permute")
    return F.permute(input, dims)


def squeeze(input: Tensor, dim: Any = None) -> Tensor:  # noqa: A002
    """``input`` without its size-1 dimensions (all, or those named by ``dim``):
    (2, 1, 3) -> (2, 3)."""
    check_tensor(input, "squeeze")
    return F.squeeze(input, dim)


def unsqueeze(input: Tensor, dim: int) -> Tensor:  # noqa: A002
    """``input`` with a size-1 dimension inserted at ``dim``: (2, 3), dim 1 -> (2, 1, 3)."""
    check_tensor(input, "unsqueeze")
    return F.unsqueeze(input, dim)


def flatten(input: Tensor, start_dim: int = 0, end_dim: int = -1) -> Tensor:  # noqa: A002
    """Dimensions ``start_dim..end_dim`` merged into one: every dimension by default,
    (N, C, H, W) -> (N*C*H*W,), as ``torch.flatten`` (``F.flatten`` starts at dim 1, as
    ``nn.Flatten``)."""
    return F.flatten(input, start_dim, end_dim)


def _extremum(op: str, reduce: Any, pairwise: Any, input: Any, args: tuple, kwargs: dict):  # noqa: A002
    """torch.max/min: a Tensor second argument (or ``other=``) means the elementwise form."""
    other = kwargs.pop("other", None)
    if other is None and args and isinstance(args[0], Tensor):
        other, args = args[0], args[1:]
    if other is None:
        return reduce(input, *args, **kwargs)
    if args or kwargs:
        raise TypeError(f"{op}(input, other) takes no further arguments, got {args} {kwargs}")
    _pair(op, input, other)
    return pairwise(input, other)


def max(input: Tensor, *args: Any, **kwargs: Any) -> Tensor:  # noqa: A001, A002
    """torch.max's forms: ``max(x)`` the largest value (0-d); ``max(x, dim, keepdim=False)``
    the largest values along ``dim`` - the values only, as ``Tensor.max`` (torch returns
    (values, indices); the indices are `argmax`); ``max(x, other)`` the elementwise
    maximum of two tensors (shapes broadcast). NumPy's ``axis=``/``keepdims=`` also work."""
    return _extremum("max", F.max, F.maximum, input, args, kwargs)


def min(input: Tensor, *args: Any, **kwargs: Any) -> Tensor:  # noqa: A001, A002
    """torch.min's forms, as `max`: ``min(x)``, ``min(x, dim, keepdim=False)`` (values
    only) and ``min(x, other)`` (elementwise minimum, shapes broadcast)."""
    return _extremum("min", F.min, F.minimum, input, args, kwargs)
