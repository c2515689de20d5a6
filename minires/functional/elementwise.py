"""Elementwise ops with NumPy broadcasting. Each backward un-broadcasts its gradient
back to the shape of the input it belongs to."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any

import numpy as np

from minires.autograd import Context, Function, bump_version
from minires.backend import get_backend, kernels
from minires.device import resolve_dtype
from minires.functional._util import (
    as_array,
    as_tensor,
    check_real,
    check_tensor,
    unbroadcast,
)
from minires.tensor import Tensor


class Add(Function):
    """out = a + b"""

    @staticmethod
    def forward(ctx: Context, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        ctx.shapes = (np.shape(a), np.shape(b))
        if ctx.shapes[0] == ctx.shapes[1]:  # a residual join: the kernel's (parallel) sum
            return kernels().add(a, b)
        with np.errstate(over="ignore", invalid="ignore"):  # inf - inf: NaN, as in torch
            return a + b

    @staticmethod
    def backward(ctx: Context, g: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        sa, sb = ctx.shapes
        return unbroadcast(g, sa), unbroadcast(g, sb)


class Sub(Function):
    """out = a - b"""

    @staticmethod
    def forward(ctx: Context, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        ctx.shapes = (np.shape(a), np.shape(b))
        return a - b

    @staticmethod
    def backward(ctx: Context, g: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        sa, sb = ctx.shapes
        return unbroadcast(g, sa), unbroadcast(-g, sb)


class Mul(Function):
    """out = a * b"""

    @staticmethod
    def forward(ctx: Context, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        ctx.save_for_backward(ctx.kept_for(a, 1), ctx.kept_for(b, 0))
        return a * b

    @staticmethod
    def backward(ctx: Context, g: np.ndarray) -> tuple[np.ndarray | None, np.ndarray | None]:
        a, b = ctx.saved_tensors
        ga = unbroadcast(g * b, np.shape(a)) if ctx.needs_input_grad[0] else None
        gb = unbroadcast(g * a, np.shape(b)) if ctx.needs_input_grad[1] else None
        return ga, gb


class Div(Function):
    """out = a / b"""

    @staticmethod
    def forward(ctx: Context, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        ctx.save_for_backward(ctx.kept_for(a, 1), b)
        return a / b

    @staticmethod
    def backward(ctx: Context, g: np.ndarray) -> tuple[np.ndarray | None, np.ndarray | None]:
        a, b = ctx.saved_tensors
        ga = unbroadcast(g / b, np.shape(a)) if ctx.needs_input_grad[0] else None
        gb = unbroadcast(-g * a / (b * b), np.shape(b)) if ctx.needs_input_grad[1] else None
        return ga, gb


class Neg(Function):
    """out = -a"""

    @staticmethod
    def forward(ctx: Context, a: np.ndarray) -> np.ndarray:
        return -a

    @staticmethod
    def backward(ctx: Context, g: np.ndarray) -> np.ndarray:
        return -g


class Pow(Function):
    """out = a ** b (elementwise; b may be a tensor)"""

    @staticmethod
    def forward(ctx: Context, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            out = a**b  # 0 ** -1 = inf, (-8) ** (1/3) = NaN: values, as in torch
        ctx.save_for_backward(a, b, out)
        return out

    @staticmethod
    def backward(ctx: Context, g: np.ndarray) -> tuple[np.ndarray | None, np.ndarray | None]:
        a, b, out = ctx.saved_tensors
        ga = gb = None
        # PyTorch's conventions at the edges: d/da is 0 where b == 0 (also at a == 0,
        # where b * a^(b-1) would be 0 * inf); d/db = a^b log a is 0 where a == 0 and
        # b >= 0, NaN for a negative base, +-inf where a^b or log a is infinite.
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            if ctx.needs_input_grad[0]:
                ga = unbroadcast(g * np.where(b == 0, 0, b * a ** (b - 1)), np.shape(a))
            if ctx.needs_input_grad[1]:
                dout = np.where((a == 0) & (b >= 0), 0, out * np.log(a))
                gb = unbroadcast(g * dout, np.shape(b))
        return ga, gb


class Exp(Function):
    """out = exp(a)"""

    @staticmethod
    def forward(ctx: Context, a: np.ndarray) -> np.ndarray:
        out = np.exp(a)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx: Context, g: np.ndarray) -> np.ndarray:
        (out,) = ctx.saved_tensors
        return g * out


class Log(Function):
    """out = log(a)"""

    @staticmethod
    def forward(ctx: Context, a: np.ndarray) -> np.ndarray:
        ctx.save_for_backward(a)
        return np.log(a)

    @staticmethod
    def backward(ctx: Context, g: np.ndarray) -> np.ndarray:
        (a,) = ctx.saved_tensors
        return g / a


class Tanh(Function):
    """out = tanh(a)"""

    @staticmethod
    def forward(ctx: Context, a: np.ndarray) -> np.ndarray:
        out = np.tanh(a)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx: Context, g: np.ndarray) -> np.ndarray:
        (out,) = ctx.saved_tensors
        return g * (1 - out * out)


class Sigmoid(Function):
    """out = 1 / (1 + exp(-a))"""

    @staticmethod
    def forward(ctx: Context, a: np.ndarray) -> np.ndarray:
        out = 0.5 * (1 + np.tanh(0.5 * a))  # stable for large |a|
        ctx.save_for_backward(out)
        return out.astype(a.dtype, copy=False)

    @staticmethod
    def backward(ctx: Context, g: np.ndarray) -> np.ndarray:
        (out,) = ctx.saved_tensors
        return g * out * (1 - out)


class ReLU(Function):
    """out = max(a, 0); the gradient passes where the output is positive."""

    @staticmethod
    def forward(ctx: Context, a: np.ndarray) -> np.ndarray:
        out = kernels().relu_forward(a)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx: Context, g: np.ndarray) -> np.ndarray:
        (out,) = ctx.saved_tensors
        return kernels().relu_backward(g, out)


class ReLUInPlace(ReLU):
    """`ReLU` written into its input's memory (`Tensor.relu_`, ``F.relu(x, inplace=True)``,
    ``nn.ReLU(inplace=True)``): no new activation, the version counter moves before the
    output is saved, so an op that saved the old values refuses them in backward (as
    PyTorch). The backward is ReLU's: it reads only the output."""

    inplace = True

    @staticmethod
    def forward(ctx: Context, a: np.ndarray) -> np.ndarray:
        kernels().relu_forward(a, out=a)
        bump_version(a)
        ctx.save_for_backward(a)
        return a


class Cast(Function):
    """out = a as another dtype; the gradient is cast back."""

    @staticmethod
    def forward(ctx: Context, a: np.ndarray, dtype: Any) -> np.ndarray:
        ctx.dtype = a.dtype
        return a.astype(dtype)

    @staticmethod
    def backward(ctx: Context, g: np.ndarray) -> tuple[np.ndarray, None]:
        return g.astype(ctx.dtype), None


# -- functional wrappers -------------------------------------------------------------------


_F32 = np.dtype(np.float32)  # what integers become in float ops (PyTorch's default dtype)


def _float_operand(t: Tensor, dtype: np.dtype = _F32) -> Tensor:
    """An integer / bool operand of a float op, as `dtype` (integers carry no gradient)."""
    return t if t.dtype.kind == "f" else Tensor._wrap(t.data.astype(dtype))


def _binary(fn: type[Function], a: Any, b: Any) -> Tensor:
    """Wrap scalars (taking the tensor operand's dtype) and check the shapes broadcast.

    PyTorch's promotion across categories: an integer / bool tensor meeting a float
    tensor takes the float's dtype, and meeting a Python float becomes float32 (NumPy
    would make both float64)."""
    return fn.apply(*_promote(fn.__name__.lower(), a, b))


def _promote(op: str, a: Any, b: Any) -> tuple[Tensor, Tensor]:
    """`_binary`'s operands: scalars wrapped, integers meeting floats made float, shapes
    checked to broadcast (a ValueError naming ``op`` and both shapes)."""
    a = as_tensor(a, b if isinstance(b, Tensor) else None)
    b = as_tensor(b, a)
    if a.dtype.kind == "f" and b.dtype.kind in "iub":
        b = _float_operand(b, a.dtype)
    elif b.dtype.kind == "f" and a.dtype.kind in "iub":
        a = _float_operand(a, b.dtype)
    try:
        np.broadcast_shapes(a.shape, b.shape)
    except ValueError:
        raise ValueError(
            f"{op}: shapes {a.shape} and {b.shape} do not broadcast "
            "(trailing dimensions must be equal or 1)"
        ) from None
    return a, b


def add(a: Any, b: Any) -> Tensor:
    """a + b with broadcasting."""
    return _binary(Add, a, b)


def sub(a: Any, b: Any) -> Tensor:
    """a - b with broadcasting."""
    return _binary(Sub, a, b)


def mul(a: Any, b: Any) -> Tensor:
    """a * b with broadcasting."""
    return _binary(Mul, a, b)


def div(a: Any, b: Any) -> Tensor:
    """a / b with broadcasting (true division: integers divide as float32, like torch)."""
    if not any(isinstance(v, Tensor) and v.dtype.kind == "f" for v in (a, b)):
        a, b = (_float_operand(v) if isinstance(v, Tensor) else v for v in (a, b))
    return _binary(Div, a, b)


def neg(a: Tensor) -> Tensor:
    """-a"""
    check_tensor(a, "neg")
    return Neg.apply(a)


def pow(a: Any, b: Any) -> Tensor:  # noqa: A001 - mirrors torch.pow
    """a ** b with broadcasting."""
    return _binary(Pow, a, b)


def exp(a: Tensor) -> Tensor:
    """Elementwise e^a."""
    check_tensor(a, "exp")
    return Exp.apply(_float_operand(a))


def log(a: Tensor) -> Tensor:
    """Elementwise natural log."""
    check_tensor(a, "log")
    return Log.apply(_float_operand(a))


def tanh(a: Tensor) -> Tensor:
    """Elementwise tanh."""
    check_tensor(a, "tanh")
    return Tanh.apply(_float_operand(a))


def sigmoid(a: Tensor) -> Tensor:
    """Elementwise logistic sigmoid."""
    check_tensor(a, "sigmoid")
    return Sigmoid.apply(_float_operand(a))


def relu(a: Tensor, inplace: bool = False) -> Tensor:
    """Elementwise max(a, 0). Shape unchanged. ``inplace=True`` writes the result into
    ``a`` and returns ``a`` (`Tensor.relu_`: in the graph, recorded as PyTorch does)."""
    check_tensor(a, "relu")
    if inplace:
        return a.relu_()
    return ReLU.apply(a)


def cast(a: Tensor, dtype: Any) -> Tensor:
    """``a`` converted to ``dtype`` (differentiable between float dtypes; a cast to an
    integer or bool dtype is cut from the graph, as in PyTorch)."""
    dtype = resolve_dtype(dtype, "astype")  # TypeError for complex, object, strings, ...
    if dtype == a.dtype:
        return a
    check_tensor(a, "cast")
    if dtype.kind != "f":
        return Tensor._wrap(a.data.astype(dtype))
    return Cast.apply(a, dtype)


# -- abs, sqrt, clamp (PyTorch's Tensor methods) ----------------------------------------


class Abs(Function):
    """out = |a|; the gradient is sign(a): 0 at a == 0 and at NaN, as in PyTorch."""

    @staticmethod
    def forward(ctx: Context, a: np.ndarray) -> np.ndarray:
        ctx.save_for_backward(a)
        return np.abs(a)

    @staticmethod
    def backward(ctx: Context, g: np.ndarray) -> np.ndarray:
        (a,) = ctx.saved_tensors
        sign = (a > 0).astype(g.dtype) - (a < 0)  # NaN compares False both ways: 0
        return g * sign


class Sqrt(Function):
    """out = sqrt(a); d out / d a = 1 / (2 out) (inf at 0, NaN below, like PyTorch)."""

    @staticmethod
    def forward(ctx: Context, a: np.ndarray) -> np.ndarray:
        with np.errstate(invalid="ignore"):  # sqrt of a negative is NaN, as in torch
            out = np.sqrt(a)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx: Context, g: np.ndarray) -> np.ndarray:
        (out,) = ctx.saved_tensors
        with np.errstate(divide="ignore", invalid="ignore"):
            return g / (2 * out)


class Clamp(Function):
    """out = min(max(a, low), high), either bound may be None.

    The gradient passes where ``low <= a <= high`` - bounds included, as in PyTorch - and is
    0 outside (and at NaN)."""

    @staticmethod
    def forward(ctx: Context, a: np.ndarray, low: Any, high: Any) -> np.ndarray:
        out = a if low is None else np.maximum(a, low)
        out = out if high is None else np.minimum(out, high)
        inside = np.ones(a.shape, bool) if low is None else a >= low
        if high is not None:
            inside &= a <= high
        ctx.save_for_backward(inside)
        return out

    @staticmethod
    def backward(ctx: Context, g: np.ndarray):
        (inside,) = ctx.saved_tensors
        return np.where(inside, g, g.dtype.type(0)), None, None


def abs(a: Tensor) -> Tensor:  # noqa: A001 - mirrors torch.abs
    """Elementwise |a|."""
    return Abs.apply(a)


def sqrt(a: Tensor) -> Tensor:
    """Elementwise square root (NaN for negative values, like torch); integers give
    float32."""
    return Sqrt.apply(_float_operand(as_tensor(a)))


class ClampTensor(Function):
    """out = min(max(a, low), high) with Tensor bounds (broadcast; either may be None).

    PyTorch's gradients: a's where ``low <= a <= high``; low's where ``a < low`` (and
    ``low < high``); high's where ``a > high`` or ``high < low`` (high wins then)."""

    @staticmethod
    def forward(ctx: Context, a: np.ndarray, low: Any, high: Any) -> np.ndarray:
        out = a if low is None else np.maximum(a, low)
        out = out if high is None else np.minimum(out, high)
        ctx.shapes = [np.shape(v) if v is not None else None for v in (a, low, high)]
        ctx.save_for_backward(a, low, high)
        return out

    @staticmethod
    def backward(ctx: Context, g: np.ndarray):
        a, low, high = ctx.saved_tensors
        zero = g.dtype.type(0)
        inside = np.ones(a.shape, bool) if low is None else a >= low
        if high is not None:
            inside = inside & (a <= high)
        grads = [np.where(inside, g, zero), None, None]
        if low is not None:
            takes_low = a < low if high is None else (a < low) & (low < high)
            grads[1] = np.where(takes_low, g, zero)
        if high is not None:
            takes_high = a > high if low is None else (a > high) | (high < low)
            grads[2] = np.where(takes_high, g, zero)
        return tuple(
            None if v is None else unbroadcast(v, shape) for v, shape in zip(grads, ctx.shapes)
        )


def clamp(a: Tensor, min: Any = None, max: Any = None) -> Tensor:  # noqa: A002
    """Limit values to ``[min, max]`` (either may be None, not both), like ``torch.clamp``;
    the bounds are numbers or Tensors that broadcast to ``a`` (differentiable).
    If ``min > max`` every value becomes ``max``, as in torch."""
    if min is None and max is None:
        raise ValueError("clamp: at least one of min and max must be given")
    if a.dtype.kind not in "fiu":
        raise TypeError(f"clamp: needs a numeric tensor, got {a.dtype}")
    if isinstance(min, Tensor) or isinstance(max, Tensor):
        return _clamp_tensor(a, min, max)
    bounds = []
    for name, v in (("min", min), ("max", max)):
        if v is not None and (isinstance(v, bool) or not isinstance(v, int | float | np.number)):
            raise TypeError(f"clamp: {name} must be a number or None, got {type(v).__name__}")
        # bounds take a float tensor's dtype (no promotion); ints promote as in torch
        bounds.append(v if v is None or a.dtype.kind != "f" else a.dtype.type(v))
    return Clamp.apply(a, *bounds)


def _clamp_tensor(a: Tensor, low: Any, high: Any) -> Tensor:
    """`clamp` with Tensor bounds: one float dtype for all three (as `_binary`), shapes
    that broadcast to ``a``'s (the output keeps ``a``'s shape, as torch.clamp)."""
    bounds = [None if v is None else as_tensor(v, like=a) for v in (low, high)]
    parts = [a] + [v for v in bounds if v is not None]
    if any(t.dtype.kind not in "fiu" for t in parts):
        raise TypeError(f"clamp: needs numeric tensors, got {[str(t.dtype) for t in parts]}")
    dtype = np.result_type(*(t.dtype for t in parts))
    if dtype.kind == "f" or any(t.dtype.kind == "f" for t in parts):
        floats = [t.dtype for t in parts if t.dtype.kind == "f"]
        dtype = max(floats, key=lambda d: d.itemsize)
    a, low, high = (None if t is None else cast(t, dtype) for t in [a] + bounds)
    for name, v in (("min", low), ("max", high)):
        if v is None:
            continue
        try:
            shape = np.broadcast_shapes(v.shape, a.shape)
        except ValueError:
            shape = None
        if shape != a.shape:
            raise ValueError(
                f"clamp: {name} of shape {v.shape} does not broadcast to the input's {a.shape}"
            )
    return ClampTensor.apply(a, low, high)


# -- where, maximum, minimum -----------------------------------------------------------------


class Where(Function):
    """out = cond ? a : b (broadcast); the gradient goes to the operand each element took."""

    @staticmethod
    def forward(ctx: Context, a: np.ndarray, b: np.ndarray, cond: np.ndarray) -> np.ndarray:
        ctx.shapes, ctx.cond = (a.shape, b.shape), cond
        return np.where(cond, a, b)

    @staticmethod
    def backward(ctx: Context, g: np.ndarray):
        zero = g.dtype.type(0)
        cond = ctx.cond
        ga = unbroadcast(np.where(cond, g, zero), ctx.shapes[0])
        gb = unbroadcast(np.where(cond, zero, g), ctx.shapes[1])
        return ga, gb, None


class Maximum(Function):
    """out = max(a, b) elementwise (broadcast); NaN wins. Gradients as torch's: a tie
    splits it in halves, a NaN comparison gives it to both operands."""

    pick = staticmethod(np.maximum)
    less = staticmethod(np.less)  # "a loses" for the maximum

    @classmethod
    def forward(cls, ctx: Context, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        ctx.save_for_backward(a, b)
        return cls.pick(a, b)

    @classmethod
    def backward(cls, ctx: Context, g: np.ndarray):
        a, b = ctx.saved_tensors
        zero = g.dtype.type(0)
        tie = a == b
        half = g * g.dtype.type(0.5)
        ga = np.where(tie, half, np.where(cls.less(a, b), zero, g))
        gb = np.where(tie, half, np.where(cls.less(b, a), zero, g))
        return unbroadcast(ga, a.shape), unbroadcast(gb, b.shape)


class Minimum(Maximum):
    """out = min(a, b) elementwise; gradients as `Maximum`'s."""

    pick = staticmethod(np.minimum)
    less = staticmethod(np.greater)  # "a loses" for the minimum


def where(condition: Any, input: Any, other: Any) -> Tensor:  # noqa: A002
    """``condition ? input : other`` elementwise, like ``torch.where`` (all three broadcast;
    the gradient reaches the operand each element came from)."""
    cond = condition.data if isinstance(condition, Tensor) else np.asarray(condition)
    if cond.dtype != np.bool_:
        raise TypeError(f"where: condition must be a bool tensor, got dtype {cond.dtype}")
    a = as_tensor(input, other if isinstance(other, Tensor) else None)
    b = as_tensor(other, a)
    if a.dtype != b.dtype:  # promote as the arithmetic ops do
        if a.dtype.kind == "f" and b.dtype.kind == "f":
            wide = np.result_type(a.dtype, b.dtype)
            a, b = cast(a, wide), cast(b, wide)
        elif a.dtype.kind == "f":
            b = _float_operand(b, a.dtype)
        elif b.dtype.kind == "f":
            a = _float_operand(a, b.dtype)
    try:
        np.broadcast_shapes(cond.shape, a.shape, b.shape)
    except ValueError:
        raise ValueError(
            f"where: shapes {cond.shape} (condition), {a.shape} and {b.shape} do not broadcast"
        ) from None
    return Where.apply(a, b, cond)


def maximum(a: Any, b: Any) -> Tensor:
    """Elementwise maximum of two tensors (broadcast), like ``torch.maximum``."""
    return _binary(Maximum, a, b)


def minimum(a: Any, b: Any) -> Tensor:
    """Elementwise minimum of two tensors (broadcast), like ``torch.minimum``."""
    return _binary(Minimum, a, b)


def isnan(a: Tensor) -> Tensor:
    """A bool tensor: True where ``a`` is NaN (outside the graph)."""
    check_tensor(a, "isnan")
    return Tensor._wrap(np.isnan(a.data) if a.dtype.kind == "f" else np.zeros(a.shape, bool))


def isfinite(a: Tensor) -> Tensor:
    """A bool tensor: True where ``a`` is neither NaN nor +-inf (outside the graph)."""
    check_tensor(a, "isfinite")
    return Tensor._wrap(np.isfinite(a.data) if a.dtype.kind == "f" else np.ones(a.shape, bool))


# -- leaky_relu, gelu, silu, softplus (activations PyTorch users reach for) ---------------


def _activation_input(a: Any, op: str) -> None:
    """The activations below take float tensors (torch refuses integer ones too)."""
    check_tensor(a, op)
    if a.dtype.kind != "f":
        raise TypeError(f"{op}: input must be float32 or float64, got {a.dtype}")


class LeakyReLU(Function):
    """out = a where a > 0, negative_slope * a elsewhere; the gradient is 1 or
    negative_slope by the same test on a (negative_slope at a == 0 and at NaN, as torch)."""

    @staticmethod
    def forward(ctx: Context, a: np.ndarray, negative_slope: float) -> np.ndarray:
        positive = a > 0
        slope = a.dtype.type(negative_slope)
        ctx.save_for_backward(positive)
        ctx.slope = slope
        return np.where(positive, a, a * slope)

    @staticmethod
    def backward(ctx: Context, g: np.ndarray):
        (positive,) = ctx.saved_tensors
        return np.where(positive, g, g * ctx.slope), None


def _erf_scalar(v: float) -> float:
    """math.erf of one value: what `_numba_erf` compiles (at module level, so Numba can
    cache the compiled code on disk)."""
    return math.erf(v)


@functools.cache
def _numba_erf() -> Callable[[np.ndarray], np.ndarray] | None:
    """math.erf as a compiled NumPy ufunc (float32 and float64 loops), or None without
    numba. Built on first use (importing minires compiles nothing) and cached on disk
    where Numba finds a writable cache directory (in memory otherwise)."""
    try:
        import numba
    except ImportError:  # pragma: no cover - numba is a dependency
        return None
    signatures = ["float32(float32)", "float64(float64)"]
    try:
        return numba.vectorize(signatures, cache=True)(_erf_scalar)
    except Exception:  # pragma: no cover - no writable cache directory
        return numba.vectorize(signatures)(_erf_scalar)


def _erf(x: np.ndarray) -> np.ndarray:
    """The error function elementwise, in x's dtype (NumPy has none): ``math.erf`` on each
    value (the readable reference, used by the "numpy" backend) or the same function
    compiled by Numba (the "numba" backend; float32 then evaluates in float32, as torch)."""
    fast = _numba_erf() if get_backend() == "numba" else None
    if fast is not None:
        return fast(x)
    return np.asarray(np.frompyfunc(math.erf, 1, 1)(x)).astype(x.dtype)  # 0-d: a float


_SQRT1_2 = math.sqrt(0.5)
_SQRT_2_OVER_PI = math.sqrt(2 / math.pi)  # torch's kBeta of the tanh form
_INV_SQRT_2PI = 1 / math.sqrt(2 * math.pi)  # the normal density's constant
_GELU_KAPPA = 0.044715


class GELU(Function):
    """Gaussian error linear unit, out = a * Phi(a), Phi the standard normal CDF:

    - ``approximate="none"``: Phi(a) = (1 + erf(a / sqrt 2)) / 2, d out / d a =
      Phi(a) + a * exp(-a^2 / 2) / sqrt(2 pi);
    - ``approximate="tanh"``: Phi(a) ~ (1 + tanh(k (a + 0.044715 a^3))) / 2 with
      k = sqrt(2 / pi), differentiated as written (torch's formulas, in a's dtype).
    """

    @staticmethod
    def forward(ctx: Context, a: np.ndarray, approximate: str) -> np.ndarray:
        dt = a.dtype.type
        ctx.save_for_backward(a)
        ctx.approximate = approximate
        with np.errstate(over="ignore", invalid="ignore"):
            if approximate == "tanh":
                inner = dt(_SQRT_2_OVER_PI) * (a + dt(_GELU_KAPPA) * a * a * a)
                return dt(0.5) * a * (1 + np.tanh(inner))
            return a * dt(0.5) * (1 + _erf(a * dt(_SQRT1_2)))

    @staticmethod
    def backward(ctx: Context, g: np.ndarray):
        (a,) = ctx.saved_tensors
        dt = a.dtype.type
        with np.errstate(over="ignore", invalid="ignore"):
            if ctx.approximate == "tanh":
                k, kappa = dt(_SQRT_2_OVER_PI), dt(_GELU_KAPPA)
                a2 = a * a
                t = np.tanh(k * (a + kappa * a2 * a))
                left = dt(0.5) * a
                d_left = dt(0.5) * (1 + t)
                d_right = left * (1 - t * t) * (k * (1 + 3 * kappa * a2))
                return g * (d_left + d_right), None
            cdf = dt(0.5) * (1 + _erf(a * dt(_SQRT1_2)))
            pdf = dt(_INV_SQRT_2PI) * np.exp(dt(-0.5) * a * a)
            return g * (cdf + a * pdf), None


def _stable_sigmoid(a: np.ndarray) -> np.ndarray:
    """1 / (1 + exp(-a)), accurate to a few ulps also in the far negative tail (where
    ``(1 + tanh(a / 2)) / 2`` cancels): e / (1 + e) with e = exp(-|a|) for a < 0."""
    e = np.exp(-np.abs(a))
    return np.where(a >= 0, 1 / (1 + e), e / (1 + e))


class SiLU(Function):
    """out = a * sigmoid(a) (also called swish); d out / d a =
    sigmoid(a) * (1 + a * (1 - sigmoid(a))), as torch (NaN at a = -inf, like its value)."""

    @staticmethod
    def forward(ctx: Context, a: np.ndarray) -> np.ndarray:
        s = _stable_sigmoid(a)
        ctx.save_for_backward(a, s)
        with np.errstate(invalid="ignore"):  # -inf * 0: NaN, as torch
            return a * s

    @staticmethod
    def backward(ctx: Context, g: np.ndarray) -> np.ndarray:
        a, s = ctx.saved_tensors
        with np.errstate(invalid="ignore"):
            return g * s * (1 + a * (1 - s))


class Softplus(Function):
    """out = log(1 + exp(beta * a)) / beta, and a itself where beta * a > threshold (where
    the two agree to float precision); d out / d a = z / (z + 1) with z = exp(beta * a),
    1 above the threshold: torch's formulas."""

    @staticmethod
    def forward(ctx: Context, a: np.ndarray, beta: float, threshold: float) -> np.ndarray:
        b, th = a.dtype.type(beta), a.dtype.type(threshold)
        ba = a * b
        linear = ba > th
        ctx.save_for_backward(ba, linear)
        with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
            return np.where(linear, a, np.log1p(np.exp(ba)) / b)

    @staticmethod
    def backward(ctx: Context, g: np.ndarray):
        ba, linear = ctx.saved_tensors
        with np.errstate(over="ignore", invalid="ignore"):
            z = np.exp(ba)
            return np.where(linear, g, g * z / (z + 1)), None, None


def leaky_relu(input: Tensor, negative_slope: float = 0.01, inplace: bool = False) -> Tensor:  # noqa: A002
    """``input`` where positive, ``negative_slope * input`` elsewhere, as
    ``torch.nn.functional.leaky_relu``. Any shape; float32 or float64. ``inplace=True``
    writes the result into ``input`` and returns it (recorded in the graph as PyTorch
    does: `Tensor._record_inplace`)."""
    _activation_input(input, "leaky_relu")
    slope = check_real(negative_slope, "negative_slope", "leaky_relu")
    if inplace:
        return input._write_result("leaky_relu_", lambda t: LeakyReLU.apply(t, slope))
    return LeakyReLU.apply(input, slope)


GELU_APPROXIMATIONS = ("none", "tanh")


def gelu(input: Tensor, approximate: str = "none") -> Tensor:  # noqa: A002
    """GELU, ``input * Phi(input)`` with Phi the standard normal CDF, as
    ``torch.nn.functional.gelu``: exact (``approximate="none"``, via erf) or the tanh
    approximation (``approximate="tanh"``). Any shape; float32 or float64."""
    _activation_input(input, "gelu")
    if not isinstance(approximate, str):
        raise TypeError(
            f"gelu: approximate must be one of {GELU_APPROXIMATIONS}, got "
            f"{type(approximate).__name__}"
        )
    if approximate not in GELU_APPROXIMATIONS:
        raise ValueError(
            f"gelu: approximate must be one of {GELU_APPROXIMATIONS}, got {approximate!r}"
        )
    return GELU.apply(input, approximate)


def silu(input: Tensor, inplace: bool = False) -> Tensor:  # noqa: A002
    """SiLU (swish), ``input * sigmoid(input)``, as ``torch.nn.functional.silu``. Any
    shape; float32 or float64. ``inplace=True`` writes the result into ``input`` and
    returns it (recorded in the graph as PyTorch does)."""
    _activation_input(input, "silu")
    if inplace:
        return input._write_result("silu_", SiLU.apply)
    return SiLU.apply(input)


def softplus(input: Tensor, beta: float = 1.0, threshold: float = 20.0) -> Tensor:  # noqa: A002
    """Softplus, ``log(1 + exp(beta * input)) / beta`` (``input`` itself where
    ``beta * input > threshold``), as ``torch.nn.functional.softplus``. Any shape; float32
    or float64; ``beta`` and ``threshold`` finite numbers."""
    _activation_input(input, "softplus")
    b = check_real(beta, "beta", "softplus")
    th = check_real(threshold, "threshold", "softplus")
    return Softplus.apply(input, b, th)


# -- comparisons, logical and bitwise ops (outside the graph, as in torch) -----------------


def _operand(x: Any, op: str) -> Any:
    """The array of a Tensor operand, or the value itself (Python numbers stay "weak", so
    ``mask & 1`` and ``int32_t & 1`` promote as torch: NumPy 2 follows the same rule)."""
    if isinstance(x, Tensor):
        return x.data
    if isinstance(x, str | bytes) or as_array(x, op, "the operand").dtype.kind not in "biuf":
        raise TypeError(f"{op}: expected a Tensor, an array or a number, got {x!r}")
    return x


def _outside_graph(op: str, ufunc: Callable, a: Any, b: Any) -> Tensor:
    """``ufunc(a, b)`` on the arrays, wrapped as a tensor without a graph; a ValueError
    naming both shapes when they do not broadcast."""
    check_tensor(a, op)
    other = _operand(b, op)
    try:
        np.broadcast_shapes(a.shape, np.shape(other))
    except ValueError:
        raise ValueError(
            f"{op}: shapes {a.shape} and {np.shape(other)} do not broadcast "
            "(trailing dimensions must be equal or 1)"
        ) from None
    return Tensor._wrap(np.asarray(ufunc(a.data, other)))


def eq(input: Tensor, other: Any) -> Tensor:  # noqa: A002 - torch's argument names
    """``input == other`` elementwise (broadcast): a bool tensor, outside the graph."""
    return _outside_graph("eq", np.equal, input, other)


def ne(input: Tensor, other: Any) -> Tensor:  # noqa: A002
    """``input != other`` elementwise (broadcast): a bool tensor."""
    return _outside_graph("ne", np.not_equal, input, other)


def lt(input: Tensor, other: Any) -> Tensor:  # noqa: A002
    """``input < other`` elementwise (broadcast): a bool tensor."""
    return _outside_graph("lt", np.less, input, other)


def le(input: Tensor, other: Any) -> Tensor:  # noqa: A002
    """``input <= other`` elementwise (broadcast): a bool tensor."""
    return _outside_graph("le", np.less_equal, input, other)


def gt(input: Tensor, other: Any) -> Tensor:  # noqa: A002
    """``input > other`` elementwise (broadcast): a bool tensor."""
    return _outside_graph("gt", np.greater, input, other)


def ge(input: Tensor, other: Any) -> Tensor:  # noqa: A002
    """``input >= other`` elementwise (broadcast): a bool tensor."""
    return _outside_graph("ge", np.greater_equal, input, other)


def logical_and(input: Tensor, other: Any) -> Tensor:  # noqa: A002
    """True where both are non-zero (any dtypes, broadcast): a bool tensor."""
    return _outside_graph("logical_and", np.logical_and, input, other)


def logical_or(input: Tensor, other: Any) -> Tensor:  # noqa: A002
    """True where either is non-zero (any dtypes, broadcast): a bool tensor."""
    return _outside_graph("logical_or", np.logical_or, input, other)


def logical_xor(input: Tensor, other: Any) -> Tensor:  # noqa: A002
    """True where exactly one is non-zero (any dtypes, broadcast): a bool tensor."""
    return _outside_graph("logical_xor", np.logical_xor, input, other)


def logical_not(input: Tensor) -> Tensor:  # noqa: A002
    """True where ``input`` is zero: a bool tensor of ``input``'s shape."""
    check_tensor(input, "logical_not")
    return Tensor._wrap(np.logical_not(input.data))


def _bitwise(op: str, ufunc: Callable, a: Tensor, b: Any) -> Tensor:
    """A bitwise op: bool and integer operands only (torch refuses floats); dtypes promote
    as torch's (bool with a Python int gives int64, int32 with one stays int32)."""
    check_tensor(a, op)
    for dt in (a.dtype, np.asarray(_operand(b, op)).dtype):
        if dt.kind not in "biu":
            raise TypeError(
                f"{op}: needs bool or integer operands (as torch), got {dt}; for a mask "
                "of a float tensor compare it first, e.g. (x > 0) & (y < 1)"
            )
    return _outside_graph(op, ufunc, a, b)


def bitwise_and(input: Tensor, other: Any) -> Tensor:  # noqa: A002
    """``input & other``: logical and of bool tensors, bitwise and of integers."""
    return _bitwise("bitwise_and", np.bitwise_and, input, other)


def bitwise_or(input: Tensor, other: Any) -> Tensor:  # noqa: A002
    """``input | other``: logical or of bool tensors, bitwise or of integers."""
    return _bitwise("bitwise_or", np.bitwise_or, input, other)


def bitwise_xor(input: Tensor, other: Any) -> Tensor:  # noqa: A002
    """``input ^ other``: logical xor of bool tensors, bitwise xor of integers."""
    return _bitwise("bitwise_xor", np.bitwise_xor, input, other)


def bitwise_not(input: Tensor) -> Tensor:  # noqa: A002
    """``~input``: logical not of a bool tensor, bitwise not (``-x - 1``) of integers."""
    check_tensor(input, "bitwise_not")
    if input.dtype.kind not in "biu":
        raise TypeError(
            f"bitwise_not: needs a bool or integer tensor (as torch), got {input.dtype}; "
            "for a float mask use logical_not or compare first"
        )
    return Tensor._wrap(np.invert(input.data))


# -- floor division and remainder (Python's // and %, as torch's) --------------------------


class _IntegerDivisionByZero(ZeroDivisionError, RuntimeError):
    """An integer // or % by zero (Python's ZeroDivisionError; a RuntimeError as torch's)."""


class FloorDivide(Function):
    """out = floor(a / b), Python's ``//`` (torch.floor_divide): -7 // 2 == -4.

    Not differentiable, as in torch (its derivative is 0 almost everywhere, and torch
    refuses it): a backward through it raises."""

    @staticmethod
    def forward(ctx: Context, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):  # inf, NaN: torch's
            return np.floor_divide(a, b)

    @staticmethod
    def backward(ctx: Context, g: np.ndarray):
        raise RuntimeError(
            "the derivative of floor_divide (`//`) is not implemented, as in torch (it is 0 "
            "almost everywhere): divide a detached tensor (x.detach() // n), or use `/`"
        )


class RoundedDivide(Function):
    """out = a / b rounded down ("floor": Python's ``//``) or toward zero ("trunc"), as
    torch.div's ``rounding_mode``; integers stay integers. A step function: its gradient
    is zero for both operands, as torch's (which, unlike for ``//``, gives one)."""

    @staticmethod
    def forward(ctx: Context, a: np.ndarray, b: np.ndarray, mode: str) -> np.ndarray:
        ctx.shapes = (np.shape(a), np.shape(b))
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):  # inf, NaN: torch's
            if mode == "floor":
                return np.floor_divide(a, b)
            if np.result_type(a, b).kind == "f":
                return np.trunc(np.true_divide(a, b)).astype(np.result_type(a, b))
            q = np.floor_divide(a, b)  # integers: one up where floor went below zero
            return q + ((q < 0) & (np.remainder(a, b) != 0))

    @staticmethod
    def backward(ctx: Context, g: np.ndarray):
        return tuple(np.zeros(shape, g.dtype) for shape in ctx.shapes) + (None,)


class Remainder(Function):
    """out = a - b * floor(a / b), Python's ``%`` (torch.remainder): the sign of ``b``.

    Gradients as torch's: d/da = 1, d/db = -floor(a / b) (the jumps where a / b is an
    integer are ignored)."""

    @staticmethod
    def forward(ctx: Context, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        ctx.save_for_backward(ctx.kept_for(a, 1), ctx.kept_for(b, 1))  # only d/db reads them
        with np.errstate(divide="ignore", invalid="ignore"):  # x % 0.0 is NaN, as torch
            return np.remainder(a, b)

    @staticmethod
    def backward(ctx: Context, g: np.ndarray):
        a, b = ctx.saved_tensors
        ga = unbroadcast(g, np.shape(a)) if ctx.needs_input_grad[0] else None
        gb = None
        if ctx.needs_input_grad[1]:
            with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
                gb = unbroadcast(-g * np.floor_divide(a, b), np.shape(b))
        return ga, gb


def _division(op: str, a: Any, b: Any) -> tuple[Tensor, Tensor]:
    """Operands of // and %, promoted as `+` (an integer meeting a float becomes that
    float); two bool tensors and an integer division by zero are refused, as in torch."""
    a, b = _promote(op, a, b)
    if a.dtype.kind == "b" and b.dtype.kind == "b":
        raise TypeError(f"{op}: not defined for two bool tensors (as torch); use .long() first")
    if a.dtype.kind in "biu" and b.dtype.kind in "biu" and np.any(b.data == 0):
        raise _IntegerDivisionByZero(
            f"{op}: integer division by zero (the {b.dtype} divisor of shape {b.shape} holds "
            "a 0); make one operand float for inf / NaN results"
        )
    return a, b


def floor_divide(input: Any, other: Any) -> Tensor:  # noqa: A002
    """``input // other`` with broadcasting: the floor of the quotient (Python's and
    torch's rule, -7 // 2 == -4). Integers stay integers; an integer meeting a float
    becomes that float. Not differentiable (as torch: a backward through it raises)."""
    return FloorDivide.apply(*_division("floor_divide", input, other))


def rounded_divide(input: Any, other: Any, rounding_mode: str) -> Tensor:  # noqa: A002
    """torch.div's ``rounding_mode`` "floor" (Python's ``//``) or "trunc" (toward zero)
    of ``input / other`` with broadcasting; gradients zero (`RoundedDivide`)."""
    if rounding_mode not in ("floor", "trunc"):
        raise ValueError(
            f"div: rounding_mode must be None, 'trunc' or 'floor', got {rounding_mode!r}"
        )
    return RoundedDivide.apply(*_division("div", input, other), rounding_mode)


def remainder(input: Any, other: Any) -> Tensor:  # noqa: A002
    """``input % other`` with broadcasting: the remainder of `floor_divide`, with the
    sign of ``other`` (Python's and torch's rule, -7 % 2 == 1). Differentiable in both
    operands (d/dinput = 1, d/dother = -floor(input / other))."""
    return Remainder.apply(*_division("remainder", input, other))
