"""`Tensor`: an ndarray plus what autograd needs (``requires_grad``, ``grad``, ``grad_fn``).

Every operator on a Tensor is a `Function` from `minires.functional`; this file only
holds the container and the plumbing (dtype rules, ``backward``, hooks).
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from minires import autograd
from minires.device import resolve_dtype

if TYPE_CHECKING:  # pragma: no cover
    from minires.functional.shape import ValuesIndices

_FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def native_array(a: np.ndarray, where: str = "Tensor") -> np.ndarray:
    """The dtype rules every array entering minires follows, in one place.

    Native-endian float32/float64, integer and bool arrays pass unchanged (no copy, any
    strides); big-endian ones are converted to native byte order; float16 is widened to
    float32. complex, object, longdouble (float128), strings, datetimes and structured
    arrays are refused with a TypeError naming the dtype: no kernel can handle them, and
    a silent conversion would drop information. ``where`` names the entry point.
    """
    dt = a.dtype
    if dt.kind in "fiub" and dt.itemsize <= 8:
        if dt.kind == "f" and dt.itemsize == 2:
            return a.astype(np.float32)
        return a if dt.isnative else a.astype(dt.newbyteorder("="))
    what = {
        "c": "complex numbers are not supported",
        "f": "longdouble is not supported; convert to float64 first",
        "O": "object arrays are not supported",
        "U": "strings are not numbers",
        "S": "strings are not numbers",
        "M": "datetimes are not supported",
        "m": "timedeltas are not supported",
    }.get(dt.kind, "not a numeric dtype")
    raise TypeError(
        f"{where}: dtype {dt} cannot be used ({what}); minires tensors hold float32 or "
        "float64 (integer or bool for targets and indices)"
    )


def _to_array(data: Any, dtype: Any = None, where: str = "Tensor") -> np.ndarray:
    """Apply the design's dtype rules (`native_array`).

    ndarrays keep their dtype (float16 is widened to float32, big-endian made native);
    Python scalars and lists become float32 unless ``dtype`` says otherwise.
    """
    if isinstance(data, Tensor):
        data = data.data
    if _is_array_like(data):  # a torch tensor or any object with __array__: keep its dtype
        data = _array_of(data, where)
    if dtype is not None:
        src = data if isinstance(data, np.ndarray | np.generic) else _from_python(data, where)
        if src.dtype.kind not in "fiub":
            native_array(src, where)  # raises, naming the dtype
        return native_array(np.array(src, dtype=resolve_dtype(dtype, where)), where)
    if isinstance(data, np.ndarray | np.generic):
        return native_array(np.asarray(data), where)
    arr = _from_python(data, where)
    if arr.dtype.kind in "iuf":
        return native_array(arr.astype(np.float32), where)
    return native_array(arr, where)


def _is_array_like(data: Any) -> bool:
    """An array object other than an ndarray (torch tensors, anything with __array__):
    it has a dtype of its own, which the float32 rule for Python data must not override."""
    return not isinstance(data, np.ndarray | np.generic | list | tuple) and hasattr(
        data, "__array__"
    )


def torch_to_numpy(t: Any) -> np.ndarray:
    """A torch tensor's values as an ndarray (detached, on the CPU; bfloat16, which NumPy
    has no dtype for, widened to float32 as float16 is)."""
    t = t.detach().cpu()
    if str(t.dtype) == "torch.bfloat16":
        t = t.float()
    return t.numpy()


def _array_of(data: Any, where: str) -> np.ndarray:
    if type(data).__module__.split(".")[0] == "torch":
        return torch_to_numpy(data)
    return _from_python(data, where)


def _from_python(data: Any, where: str) -> np.ndarray:
    try:
        return np.asarray(data)
    except (ValueError, TypeError) as exc:  # ragged lists, unconvertible objects
        kind = type(data).__name__
        raise TypeError(f"{where}: cannot make an array from {kind}: {exc}") from None


class RemovableHandle:
    """What `Tensor.register_hook` returns: ``remove()`` takes the hook out (as PyTorch's
    handle); calling the handle does the same."""

    def __init__(self, hooks: list, hook: Callable) -> None:
        self._hooks, self._hook = hooks, hook

    def remove(self) -> None:
        if any(h is self._hook for h in self._hooks):
            self._hooks.remove(self._hook)

    __call__ = remove


class _AmbiguousTruth(ValueError, RuntimeError):
    """bool() of a tensor that is not one element (a ValueError as in NumPy, a
    RuntimeError as in PyTorch)."""


class _Size(int):
    """An element count (NumPy's ``a.size``) callable as PyTorch's ``size(dim=None)``."""

    def __new__(cls, n: int, shape: tuple[int, ...]) -> _Size:
        self = super().__new__(cls, n)
        self.shape = shape
        return self

    def __call__(self, dim: Any = None) -> tuple[int, ...] | int:
        if dim is None:
            return self.shape
        from minires.functional._util import check_dim

        return self.shape[check_dim(dim, len(self.shape), "dim", "size")]


class _InPlaceInGraph(ValueError, RuntimeError):
    """An in-place op on a tensor autograd tracks (a ValueError for minires' rule on bad
    input, a RuntimeError as in PyTorch)."""


class Tensor:
    """A multi-dimensional array that records the ops applied to it for backprop.

    Args:
        data: array-like. float64 stays float64, float32 stays float32; Python scalars
            and lists become float32. Integer arrays are allowed (targets, indices) but
            cannot require grad.
        requires_grad: whether gradients should be accumulated into ``.grad``.
    """

    __array_priority__ = 1000  # make `ndarray + Tensor` call Tensor.__radd__
    __slots__ = ("_data", "grad", "grad_fn", "_requires_grad", "_hooks", "_aliased", "__weakref__")

    def __init__(self, data: Any, requires_grad: bool = False):
        # An ndarray that already follows the dtype rules is shared, not copied (use
        # `minires.tensor` for a copy); anything else is converted.
        self._data: np.ndarray = _to_array(data)
        self.grad: np.ndarray | None = None
        self.grad_fn: autograd.Node | None = None
        self._hooks: list[Callable[[np.ndarray], np.ndarray | None]] = []
        self._aliased = False  # shares memory with another tensor in the graph (a view)
        self._requires_grad = False
        self.requires_grad = requires_grad

    @classmethod
    def _wrap(cls, data: np.ndarray, grad_fn: autograd.Node | None = None) -> Tensor:
        """Wrap an op's output without copying or re-applying the dtype rules."""
        t = cls.__new__(cls)
        t._data = data
        t.grad = None
        t.grad_fn = grad_fn
        t._hooks = []
        t._aliased = False
        t._requires_grad = grad_fn is not None
        return t

    @property
    def data(self) -> np.ndarray:
        """The ndarray holding the values."""
        return self._data

    @data.setter
    def data(self, value: Any) -> None:
        # Assigning goes through the dtype rules too: no back door to the kernels.
        arr = _to_array(value, where="Tensor.data")
        if self._requires_grad and arr.dtype not in _FLOAT_DTYPES:
            raise TypeError(
                f"Tensor.data: this tensor requires grad, so it must stay float32 or float64, "
                f"got {arr.dtype}"
            )
        self._data = arr

    # -- autograd state ------------------------------------------------------------------

    @property
    def requires_grad(self) -> bool:
        """Whether this tensor takes part in backprop."""
        return self._requires_grad

    @requires_grad.setter
    def requires_grad(self, value: bool) -> None:
        if value and self.data.dtype not in _FLOAT_DTYPES:
            raise TypeError(
                f"only float32/float64 tensors can require grad, this one is {self.data.dtype}"
            )
        if not value and self.grad_fn is not None:
            raise RuntimeError("cannot clear requires_grad of a non-leaf tensor; use .detach()")
        self._requires_grad = bool(value)

    def requires_grad_(self, value: bool = True) -> Tensor:
        """Set ``requires_grad`` in place and return self."""
        self.requires_grad = value
        return self

    @property
    def _version(self) -> int:
        """In-place writes through minires into this tensor's memory so far (shared with
        its views and `detach`, as PyTorch's ``_version``)."""
        return autograd.version_of(self._data)

    @property
    def is_leaf(self) -> bool:
        """True for tensors created by the user (not by an op)."""
        return self.grad_fn is None

    def backward(self, grad: Any = None, retain_graph: bool = False) -> None:
        """Backpropagate from this tensor.

        Args:
            grad: d(something)/d(self), an ndarray or Tensor of ``self.shape``; may be
                omitted for a one-element tensor (then it is 1).
            retain_graph: keep the saved buffers so backward can run through the graph again.
        """
        if not self.requires_grad:
            raise RuntimeError(
                "this tensor does not require grad and has no grad_fn: nothing to backprop "
                "(did you forget requires_grad=True on an input or parameter?)"
            )
        if grad is None:
            if self.data.size != 1:
                raise RuntimeError(
                    f"grad can be implicitly created only for one-element outputs; this output "
                    f"has shape {self.shape}: pass grad=... of that shape"
                )
            seed = np.ones_like(self.data)
        else:
            # A real array of the output's shape; the other float dtype is cast.
            seed = autograd.as_gradient(grad, self.shape, self.dtype, "backward(grad=...)")
        autograd.backward(self, seed, retain_graph=retain_graph)

    def _accumulate(self, g: np.ndarray, owned: bool = False) -> None:
        """Add ``g`` into ``.grad``; ``owned``: nothing else references ``g``, so the
        first gradient is kept as it is (else copied: a later += must not alias)."""
        g = np.asarray(g, dtype=self.dtype)
        if self.grad is None:
            self.grad = g if owned else np.array(g, copy=True)
        else:
            self.grad += g

    def retain_grad(self) -> None:
        """Keep ``.grad`` on a non-leaf tensor, so the gradient arriving at an activation
        can be inspected after backward. No-op on leaves (they keep theirs anyway)."""
        if self.grad_fn is not None:
            self.grad_fn.retained = weakref.ref(self)

    def register_hook(self, hook: Callable[[np.ndarray], np.ndarray | None]) -> RemovableHandle:
        """Call ``hook(grad)`` when the gradient w.r.t. this tensor is computed (for a
        leaf: once, on the sum of every path's gradient, as in PyTorch).

        The hook may return a replacement gradient. Returns a handle whose ``remove()``
        (or calling it) removes the hook.
        """
        if not callable(hook):
            raise TypeError(f"register_hook: expected a callable, got {type(hook).__name__}")
        if not self.requires_grad:
            raise RuntimeError("cannot register a hook on a tensor that does not require grad")
        hooks = self._hooks if self.grad_fn is None else self.grad_fn.hooks
        hooks.append(hook)
        return RemovableHandle(hooks, hook)

    def detach(self) -> Tensor:
        """A new leaf tensor sharing this data, cut from the graph."""
        return Tensor._wrap(self.data)

    def zero_grad(self) -> None:
        """Forget the accumulated gradient."""
        self.grad = None

    # -- array-like access ---------------------------------------------------------------

    @property
    def shape(self) -> tuple[int, ...]:
        return self.data.shape

    @property
    def dtype(self) -> np.dtype:
        return self.data.dtype

    @property
    def ndim(self) -> int:
        return self.data.ndim

    @property
    def size(self) -> _Size:
        """NumPy's ``size`` (the number of elements, an int) that is also PyTorch's
        ``size()``: ``t.size()`` is the shape, ``t.size(d)`` one dimension's length."""
        return _Size(self.data.size, self.data.shape)

    def numel(self) -> int:
        """Number of elements."""
        return self.data.size

    def __len__(self) -> int:
        if self.data.ndim == 0:
            raise TypeError("len() of a 0-d tensor")
        return len(self.data)

    def __iter__(self):
        """The sub-tensors along the first axis (as `t[i]`), like PyTorch."""
        if self.data.ndim == 0:
            raise TypeError("iteration over a 0-d tensor")
        return (self[i] for i in range(len(self.data)))

    def __bool__(self) -> bool:
        """The truth of a one-element tensor; ambiguous (an error) for any other size."""
        if self.data.size != 1:
            raise _AmbiguousTruth(
                f"the truth value of a tensor of shape {self.shape} is ambiguous: it needs "
                "exactly one element (use .any() / .all() on the data, or .item())"
            )
        return bool(self.data.item())

    # Comparisons are elementwise, as in PyTorch: bool tensors outside the graph (so
    # `(pred == target).float().mean()` is an accuracy). Tensors still hash by identity.
    __hash__ = object.__hash__

    def _compare(self, other: Any, op: Callable[[Any, Any], Any]) -> Tensor:
        other = other.data if isinstance(other, Tensor) else other
        try:
            return Tensor._wrap(np.asarray(op(self.data, other)))
        except ValueError as exc:  # shapes that do not broadcast
            shape = np.shape(other)
            msg = f"cannot compare tensors of shapes {self.shape} and {shape}: {exc}"
            raise ValueError(msg) from None

    def __eq__(self, other: Any) -> Tensor:  # type: ignore[override]
        return self._compare(other, np.equal)

    def __ne__(self, other: Any) -> Tensor:  # type: ignore[override]
        return self._compare(other, np.not_equal)

    def __lt__(self, other: Any) -> Tensor:
        return self._compare(other, np.less)

    def __le__(self, other: Any) -> Tensor:
        return self._compare(other, np.less_equal)

    def __gt__(self, other: Any) -> Tensor:
        return self._compare(other, np.greater)

    def __ge__(self, other: Any) -> Tensor:
        return self._compare(other, np.greater_equal)

    # torch's method names of the comparisons: the same bool tensors as the operators
    def eq(self, other: Any) -> Tensor:
        """``self == other`` elementwise (broadcast): a bool tensor, outside the graph."""
        return _F().eq(self, other)

    def ne(self, other: Any) -> Tensor:
        """``self != other`` elementwise (broadcast): a bool tensor."""
        return _F().ne(self, other)

    def lt(self, other: Any) -> Tensor:
        """``self < other`` elementwise (broadcast): a bool tensor."""
        return _F().lt(self, other)

    def le(self, other: Any) -> Tensor:
        """``self <= other`` elementwise (broadcast): a bool tensor."""
        return _F().le(self, other)

    def gt(self, other: Any) -> Tensor:
        """``self > other`` elementwise (broadcast): a bool tensor."""
        return _F().gt(self, other)

    def ge(self, other: Any) -> Tensor:
        """``self >= other`` elementwise (broadcast): a bool tensor."""
        return _F().ge(self, other)

    # torch's longer aliases
    not_equal, less, less_equal, greater, greater_equal = ne, lt, le, gt, ge

    # -- logical and bitwise ops (bool masks: `(a > 0) & (b < 1)`, `~mask`) ---------------

    def logical_and(self, other: Any) -> Tensor:
        """True where both are non-zero (any dtypes, broadcast): a bool tensor."""
        return _F().logical_and(self, other)

    def logical_or(self, other: Any) -> Tensor:
        """True where either is non-zero (any dtypes, broadcast): a bool tensor."""
        return _F().logical_or(self, other)

    def logical_xor(self, other: Any) -> Tensor:
        """True where exactly one is non-zero (any dtypes, broadcast): a bool tensor."""
        return _F().logical_xor(self, other)

    def logical_not(self) -> Tensor:
        """True where this tensor is zero: a bool tensor of the same shape."""
        return _F().logical_not(self)

    def bitwise_and(self, other: Any) -> Tensor:
        """``self & other`` (bool or integer tensors, broadcast; see `__and__`)."""
        return _F().bitwise_and(self, other)

    def bitwise_or(self, other: Any) -> Tensor:
        """``self | other`` (bool or integer tensors, broadcast)."""
        return _F().bitwise_or(self, other)

    def bitwise_xor(self, other: Any) -> Tensor:
        """``self ^ other`` (bool or integer tensors, broadcast)."""
        return _F().bitwise_xor(self, other)

    def bitwise_not(self) -> Tensor:
        """``~self``: logical not of a bool tensor, bitwise not of an integer one."""
        return _F().bitwise_not(self)

    def __and__(self, other: Any) -> Tensor:
        """Elementwise and of bool masks (bitwise for integers; floats are refused, as
        torch: compare first, ``(x > 0) & (y < 1)``)."""
        return _F().bitwise_and(self, other)

    def __or__(self, other: Any) -> Tensor:
        """Elementwise or of bool masks (bitwise for integers)."""
        return _F().bitwise_or(self, other)

    def __xor__(self, other: Any) -> Tensor:
        """Elementwise xor of bool masks (bitwise for integers)."""
        return _F().bitwise_xor(self, other)

    # and, or, xor commute (also in their result dtype): the reflected forms are the same
    __rand__, __ror__, __rxor__ = __and__, __or__, __xor__

    def __invert__(self) -> Tensor:
        """``~mask``: logical not of a bool tensor, bitwise not of an integer one."""
        return _F().bitwise_not(self)

    def numpy(self) -> np.ndarray:
        """The underlying ndarray (shared, not copied)."""
        return self.data

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        return self.data if dtype is None else self.data.astype(dtype)

    def item(self) -> float | int | bool:
        """The value of a one-element tensor as a Python number."""
        if self.data.size != 1:
            raise ValueError(f"item() needs a one-element tensor, got shape {self.shape}")
        return self.data.item()

    def __float__(self) -> float:
        """float(t) of a one-element tensor, as in PyTorch."""
        return float(self._one_element("float()"))

    def __int__(self) -> int:
        """int(t) of a one-element tensor (truncated toward zero), as in PyTorch."""
        return int(self._one_element("int()"))

    def __index__(self) -> int:
        """A one-element integer tensor used as an index (``range(t)``, ``lst[t]``)."""
        if self.data.dtype.kind not in "iu":
            raise TypeError(
                f"only integer tensors of a single element can be converted to an index, "
                f"got dtype {self.dtype}"
            )
        return int(self._one_element("__index__()"))

    def __format__(self, spec: str) -> str:
        """``f"{loss:.3f}"``: a 0-d tensor formats as its value (PyTorch's rule); other
        tensors take only the empty format."""
        if self.data.ndim == 0:
            return format(self.data.item(), spec)
        if spec:
            raise TypeError(
                f"unsupported format string {spec!r} for a tensor of shape {self.shape}: "
                "only 0-d tensors format as numbers (use .item())"
            )
        return str(self)

    def _one_element(self, what: str) -> float | int | bool:
        if self.data.size != 1:  # ValueError like PyTorch's and item()'s
            raise ValueError(
                f"{what} needs a tensor with one element, got shape {self.shape} "
                f"({self.data.size} elements)"
            )
        return self.data.item()

    def tolist(self) -> Any:
        return self.data.tolist()

    def float(self) -> Tensor:
        """Cast to float32 (differentiable)."""
        return self.astype(np.float32)

    def double(self) -> Tensor:
        """Cast to float64 (differentiable)."""
        return self.astype(np.float64)

    def astype(self, dtype: Any) -> Tensor:
        """Cast to ``dtype``; differentiable between float dtypes."""
        return _F().cast(self, dtype)

    # `int` and `bool` are torch's method names; they shadow the builtins only in the class
    # body below (method bodies see the module's builtins).
    def int(self) -> Tensor:
        """Cast to int32 (truncated toward zero; cut from the graph, as in PyTorch)."""
        return self.astype(np.int32)

    def bool(self) -> Tensor:
        """Cast to bool: True where non-zero (cut from the graph)."""
        return self.astype(np.bool_)

    def type_as(self, other: Tensor) -> Tensor:
        """Cast to ``other``'s dtype (self when it already has it; differentiable between
        float dtypes)."""
        if not isinstance(other, Tensor):
            raise TypeError(f"type_as: expected a Tensor, got {type(other).__name__}")
        return self.astype(other.dtype)

    # -- new tensors like this one (torch's new_*: this dtype unless dtype= says otherwise) --

    def _new(
        self, op: str, make: Callable[[np.dtype], np.ndarray], dtype: Any, device: Any,
        requires_grad: bool,
    ) -> Tensor:  # fmt: skip
        """A new leaf ``make(dtype)``, the dtype this tensor's unless ``dtype`` is given."""
        from minires.device import check_device

        check_device(device, op)
        dt = self.dtype if dtype is None else resolve_dtype(dtype, op)
        return Tensor(make(dt), requires_grad=requires_grad)

    def new_zeros(
        self, *size: Any, dtype: Any = None, device: Any = None, requires_grad: bool = False
    ) -> Tensor:
        """Zeros of shape ``size`` (``new_zeros(2, 3)`` or ``new_zeros((2, 3))``) with
        this tensor's dtype unless ``dtype`` is given; a new leaf."""
        shape = _sizes("new_zeros", size)
        return self._new("new_zeros", lambda dt: np.zeros(shape, dt), dtype, device, requires_grad)

    def new_ones(
        self, *size: Any, dtype: Any = None, device: Any = None, requires_grad: bool = False
    ) -> Tensor:
        """Ones of shape ``size`` with this tensor's dtype unless ``dtype`` is given."""
        shape = _sizes("new_ones", size)
        return self._new("new_ones", lambda dt: np.ones(shape, dt), dtype, device, requires_grad)

    def new_empty(
        self, *size: Any, dtype: Any = None, device: Any = None, requires_grad: bool = False
    ) -> Tensor:
        """A tensor of shape ``size`` with this dtype (unless ``dtype``) whose values are
        not meant to be read: torch leaves them uninitialised; minires fills zeros, so a
        stray read is reproducible."""
        shape = _sizes("new_empty", size)
        return self._new("new_empty", lambda dt: np.zeros(shape, dt), dtype, device, requires_grad)

    def new_full(
        self, size: Any, fill_value: Any, *, dtype: Any = None, device: Any = None,
        requires_grad: bool = False,
    ) -> Tensor:  # fmt: skip
        """A tensor of shape ``size`` (a tuple, or one int) filled with the number
        ``fill_value``, in this tensor's dtype unless ``dtype`` is given (a float fill of
        an integer tensor is truncated, as torch)."""
        if isinstance(fill_value, Tensor) and fill_value.data.size == 1:
            fill_value = fill_value.item()
        if not isinstance(fill_value, int | float | np.number | np.bool_):  # bool is an int
            raise TypeError(f"new_full: fill_value must be a number, got {fill_value!r}")
        shape = _sizes("new_full", size if isinstance(size, tuple | list) else (size,))
        fill = lambda dt: np.full(shape, fill_value).astype(dt)  # noqa: E731 - truncates as torch
        return self._new("new_full", fill, dtype, device, requires_grad)

    def new_tensor(
        self, data: Any, *, dtype: Any = None, device: Any = None, requires_grad: bool = False
    ) -> Tensor:
        """A new leaf holding a copy of ``data`` in this tensor's dtype (whatever the data's
        own dtype, as torch) unless ``dtype`` is given; a Tensor's values are copied and
        cut from its graph."""
        copy = lambda dt: _to_array(data, dt, where="new_tensor").copy()  # noqa: E731
        return self._new("new_tensor", copy, dtype, device, requires_grad)

    def __repr__(self) -> str:
        body = np.array2string(self.data, precision=4, separator=", ", prefix="tensor(")
        extra = ""
        if self.data.dtype != np.float32:
            extra += f", dtype={self.data.dtype}"
        if self.grad_fn is not None:
            extra += f", grad_fn=<{self.grad_fn.name()}Backward>"
        elif self.requires_grad:
            extra += ", requires_grad=True"
        return f"tensor({body}{extra})"

    # -- operators: each one is a Function in minires.functional ---------------------------

    def __add__(self, other: Any) -> Tensor:
        return _F().add(self, other)

    def __radd__(self, other: Any) -> Tensor:
        return _F().add(other, self)

    def __sub__(self, other: Any) -> Tensor:
        return _F().sub(self, other)

    def __rsub__(self, other: Any) -> Tensor:
        return _F().sub(other, self)

    def __mul__(self, other: Any) -> Tensor:
        return _F().mul(self, other)

    def __rmul__(self, other: Any) -> Tensor:
        return _F().mul(other, self)

    def __truediv__(self, other: Any) -> Tensor:
        return _F().div(self, other)

    def __rtruediv__(self, other: Any) -> Tensor:
        return _F().div(other, self)

    def __floordiv__(self, other: Any) -> Tensor:
        """``self // other``: floor division as Python's and torch's (-7 // 2 == -4);
        integers stay integers. Not differentiable (torch refuses its backward too)."""
        return _F().floor_divide(self, other)

    def __rfloordiv__(self, other: Any) -> Tensor:
        return _F().floor_divide(other, self)

    def __mod__(self, other: Any) -> Tensor:
        """``self % other``: the remainder of floor division, with ``other``'s sign (as
        Python and torch.remainder); differentiable."""
        return _F().remainder(self, other)

    def __rmod__(self, other: Any) -> Tensor:
        return _F().remainder(other, self)

    def floor_divide(self, other: Any) -> Tensor:
        """``self // other`` (see `__floordiv__`)."""
        return _F().floor_divide(self, other)

    def remainder(self, other: Any) -> Tensor:
        """``self % other`` (see `__mod__`)."""
        return _F().remainder(self, other)

    def __pow__(self, other: Any) -> Tensor:
        return _F().pow(self, other)

    def __rpow__(self, other: Any) -> Tensor:
        return _F().pow(other, self)

    def __matmul__(self, other: Any) -> Tensor:
        return _F().matmul(self, other)

    def __rmatmul__(self, other: Any) -> Tensor:
        return _F().matmul(other, self)

    def __neg__(self) -> Tensor:
        return _F().neg(self)

    def neg(self) -> Tensor:
        """``-self``."""
        return _F().neg(self)

    def __getitem__(self, index: Any) -> Tensor:
        return _F().getitem(self, index)

    # -- in-place ops ------------------------------------------------------------------------
    # Outside the graph (grad mode off, or a tensor autograd does not track) they write
    # into the array, so `with mr.no_grad(): p -= lr * p.grad` updates a parameter (without
    # them Python rebinds `p` to a new tensor and the model silently does not change). On a
    # tensor in the graph, or with a value that requires grad (`acc += w * 2`), they are
    # recorded as PyTorch records them (`_record_inplace`): the tensor's memory takes the
    # new values and the tensor the op's history. Refused on a leaf that requires grad (as
    # PyTorch) and, for the named methods, on a tensor sharing memory with another in the
    # graph (a view: `+=` there rebinds the name instead); `t[i] = v`, `copy_` and `fill_`
    # stay outside the graph.

    def _augmented(self, op: str, ufunc: Any, other: Any, out_of_place: Callable) -> Tensor:
        if self._in_graph(other) and not self._is_leaf_with_grad():
            if self._aliased:
                # a view (or a viewed tensor) in the graph: its other alias could not be
                # rebased, so the name is rebound to the out-of-place result instead
                return self._checked_result(op, out_of_place(self, other))
            return self._record_inplace(op, lambda t: out_of_place(t, other))
        if ufunc is None:  # no NumPy ufunc writes this op's values: compute, then store
            return self._write_result(op, lambda t: out_of_place(t, other), other)
        return self._inplace(op, ufunc, other)

    def _is_leaf_with_grad(self) -> bool:
        return self.grad_fn is None and self._requires_grad

    def _in_graph(self, other: Any = None) -> bool:
        """Whether an in-place op here is recorded: grad mode on, and this tensor or the
        value takes part in backprop."""
        return autograd.is_grad_enabled() and (
            self._requires_grad
            or self.grad_fn is not None
            or (isinstance(other, Tensor) and other.requires_grad)
        )

    def _checked_result(self, op: str, out: Tensor) -> Tensor:
        """An in-place op's result by its rules: this tensor's shape, and its dtype (a
        float result cast within the float kind, recorded; another kind refused)."""
        if out.shape != self.shape:
            raise ValueError(
                f"{op}: the result's shape {out.shape} differs from this tensor's "
                f"{self.shape} (an in-place op cannot change the shape)"
            )
        if out.dtype != self.dtype:
            if self.dtype.kind != "f":
                raise TypeError(
                    f"{op}: the result ({out.dtype}) cannot be stored in this "
                    f"{self.dtype} tensor in place"
                )
            out = _F().cast(out, self.dtype)
        return out

    def _record_inplace(self, op: str, compute: Callable[[Tensor], Tensor]) -> Tensor:
        """An in-place op in the graph, recorded as PyTorch does: ``compute(self)`` (the
        op, recorded) gives the new values and history; the values are written into this
        tensor's memory (other references see them; the version counter moves, so an op
        that saved the old values refuses them in backward) and this tensor takes the
        op's node as its ``grad_fn``. `ReLUInPlace` computes straight into the memory;
        an op that keeps its operand for its gradient (abs_, log_, mul_ by a tracked
        value) gets a copy of the old values instead (PyTorch's saved original self).
        Refused, as in PyTorch, on a leaf that requires grad, and on a tensor that
        shares memory with another in the graph (a view, or a tensor a view was taken
        of: minires cannot rebase the other's history)."""
        if self._is_leaf_with_grad():
            self._refuse_in_graph(op, None)  # its leaf message
        if self._aliased or (self.grad_fn is None and self._data.base is not None):
            raise _InPlaceInGraph(
                f"{op}: this tensor (shape {self.shape}) shares its memory with another "
                "tensor (it is a view of another, or one was taken of it), and the op "
                "is recorded for backprop: minires cannot record an in-place write for "
                "both; use the out-of-place op (or mr.cat, mr.stack, mr.where)"
            )
        if not self._data.flags.writeable:
            raise ValueError(f"{op}: this tensor's array is read-only")
        out = self._checked_result(op, compute(self))
        if out.data is not self._data:
            if _keeps(out, self._data):  # recompute on the old values' copy
                old = Tensor._wrap(self._data.copy(), grad_fn=self.grad_fn)
                old._requires_grad = self._requires_grad
                out = self._checked_result(op, compute(old))
            np.copyto(self._data, out.data)
            autograd.bump_version(self._data)
        before, self.grad_fn = self.grad_fn, out.grad_fn
        self._requires_grad = out.grad_fn is not None
        if before is not None and before.retained is not None and self.grad_fn is not None:
            # retain_grad follows the tensor to its new value (hooks stay, as torch's)
            self.grad_fn.retained, before.retained = before.retained, None
        return self

    def _write_result(
        self, op: str, compute: Callable[[Tensor], Tensor], other: Any = None
    ) -> Tensor:
        """Write ``compute(self)`` - an out-of-place op on this tensor, so the values are
        that op's to the bit - into this tensor with `_inplace`'s rules: cast to this
        dtype only within a kind, version bumped; in the graph, recorded
        (`_record_inplace`)."""
        if self._in_graph(other):
            return self._record_inplace(op, compute)
        with autograd.no_grad():
            result = compute(self)
        return self._inplace(op, _store, result)

    def _refuse_in_graph(self, op: str, other: Any) -> None:
        """The in-place ops' refusal: with grad mode on, not on a tensor autograd tracks
        nor with a value that requires grad."""
        if autograd.is_grad_enabled():
            if self._requires_grad or self.grad_fn is not None:
                kind = "a leaf tensor that requires grad" if self.is_leaf else "a tensor in a graph"
                raise _InPlaceInGraph(
                    f"{op}: in-place op on {kind} (shape {self.shape}) while grad mode is on; "
                    "wrap it in `with mr.no_grad():` or use the out-of-place op"
                )
            if isinstance(other, Tensor) and other.requires_grad:
                raise _InPlaceInGraph(
                    f"{op}: the value (shape {other.shape}) requires grad, and minires does not "
                    "record in-place writes in the graph; build the tensor out-of-place (e.g. "
                    "x = x + v, mr.cat, mr.where) or detach the value"
                )

    def _inplace(self, op: str, ufunc: Any, other: Any, casting: str = "same_kind") -> Tensor:
        self._refuse_in_graph(op, other)
        value = other.data if isinstance(other, Tensor) else other
        if isinstance(value, str | bytes) or np.asarray(value).dtype.kind not in "biuf":
            raise TypeError(f"{op}: expected a Tensor, an array or a number, got {value!r}")
        try:
            ufunc(self._data, value, out=self._data, casting=casting)
        except TypeError:  # NumPy's UFuncTypeError: float into an integer tensor
            one = np.asarray(value).ravel()[:1]
            result = ufunc(self._data.ravel()[:1], one).dtype if one.size else "another dtype"
            raise TypeError(
                f"{op}: the result ({result}) cannot be stored in this {self.dtype} tensor in place"
            ) from None
        except ValueError as exc:  # shapes, a read-only array, NaN into integers
            if not self._data.flags.writeable:
                raise ValueError(f"{op}: this tensor's array is read-only") from None
            if "broadcast" not in str(exc):
                raise ValueError(f"{op}: {exc}") from None
            raise ValueError(
                f"{op}: a value of shape {np.shape(value)} does not broadcast to the shape "
                f"it is written to (this tensor's is {self.shape}; an in-place op cannot "
                "change the shape)"
            ) from None
        autograd.bump_version(self._data)  # an op that saved this array refuses it now
        return self

    def __iadd__(self, other: Any) -> Tensor:
        return self._augmented("+=", np.add, other, Tensor.__add__)

    def __isub__(self, other: Any) -> Tensor:
        return self._augmented("-=", np.subtract, other, Tensor.__sub__)

    def __imul__(self, other: Any) -> Tensor:
        return self._augmented("*=", np.multiply, other, Tensor.__mul__)

    def __itruediv__(self, other: Any) -> Tensor:
        return self._augmented("/=", np.true_divide, other, Tensor.__truediv__)

    # no ufunc for these: the out-of-place op computes (its checks and dtype rules), then
    # the result is stored (or, in the graph, the name rebound, as += does)
    def __ifloordiv__(self, other: Any) -> Tensor:
        return self._augmented("//=", None, other, Tensor.__floordiv__)

    def __imod__(self, other: Any) -> Tensor:
        return self._augmented("%=", None, other, Tensor.__mod__)

    def __iand__(self, other: Any) -> Tensor:
        return self._augmented("&=", None, other, Tensor.__and__)

    def __ior__(self, other: Any) -> Tensor:
        return self._augmented("|=", None, other, Tensor.__or__)

    def __ixor__(self, other: Any) -> Tensor:
        return self._augmented("^=", None, other, Tensor.__xor__)

    @staticmethod
    def _check_alpha(op: str, alpha: Any) -> None:
        if isinstance(alpha, bool | np.bool_) or not isinstance(alpha, int | float | np.number):
            raise TypeError(f"{op}: alpha must be a number, got {alpha!r}")

    def _scaled(self, op: str, other: Any, alpha: Any) -> Any:
        self._check_alpha(op, alpha)
        if alpha == 1:
            return other
        value = other.data if isinstance(other, Tensor) else other
        if isinstance(value, str | bytes):
            raise TypeError(f"{op}: expected a Tensor, an array or a number, got {value!r}")
        return np.multiply(value, alpha)

    def add(self, other: Any, *, alpha: float = 1) -> Tensor:
        """self + alpha * other with broadcasting, a new tensor (torch's Tensor.add)."""
        self._check_alpha("add", alpha)
        return _F().add(self, _times(other, alpha))

    def sub(self, other: Any, *, alpha: float = 1) -> Tensor:
        """self - alpha * other with broadcasting, a new tensor (torch's Tensor.sub)."""
        self._check_alpha("sub", alpha)
        return _F().sub(self, _times(other, alpha))

    def mul(self, other: Any) -> Tensor:
        """self * other with broadcasting, a new tensor (torch's Tensor.mul)."""
        return _F().mul(self, other)

    def div(self, other: Any, *, rounding_mode: str | None = None) -> Tensor:
        """self / other with broadcasting (true division), or rounded with
        ``rounding_mode`` "floor" / "trunc" (zero gradients), as torch's Tensor.div."""
        if rounding_mode is None:
            return _F().div(self, other)
        return _F().rounded_divide(self, other, rounding_mode)

    def add_(self, other: Any, alpha: float = 1) -> Tensor:
        """self += alpha * other, in place (recorded in the graph: `_record_inplace`);
        returns self."""
        if self._in_graph(other):
            self._check_alpha("add_", alpha)
            return self._record_inplace("add_", lambda t: t + _times(other, alpha))
        return self._inplace("add_", np.add, self._scaled("add_", other, alpha))

    def sub_(self, other: Any, alpha: float = 1) -> Tensor:
        """self -= alpha * other, in place (recorded in the graph); returns self."""
        if self._in_graph(other):
            self._check_alpha("sub_", alpha)
            return self._record_inplace("sub_", lambda t: t - _times(other, alpha))
        return self._inplace("sub_", np.subtract, self._scaled("sub_", other, alpha))

    def mul_(self, other: Any) -> Tensor:
        """self *= other, in place (recorded in the graph); returns self."""
        if self._in_graph(other):
            return self._record_inplace("mul_", lambda t: t * other)
        return self._inplace("mul_", np.multiply, other)

    def div_(self, other: Any) -> Tensor:
        """self /= other, in place (recorded in the graph); returns self."""
        if self._in_graph(other):
            return self._record_inplace("div_", lambda t: t / other)
        return self._inplace("div_", np.true_divide, other)

    def copy_(self, src: Any) -> Tensor:
        """Overwrite the values with ``src`` (broadcast to this shape, cast to this dtype
        as PyTorch does: floats into an integer tensor are truncated); returns self."""
        copy = lambda a, b, out, casting: np.copyto(out, b, casting=casting)  # noqa: E731
        return self._inplace("copy_", copy, src, casting="unsafe")

    def fill_(self, value: Any) -> Tensor:
        """Set every value to the number ``value``; returns self."""
        if np.ndim(value) != 0:
            raise ValueError(f"fill_: expected a number, got shape {np.shape(value)}")
        return self.copy_(value)

    def zero_(self) -> Tensor:
        """Set every value to 0; returns self."""
        return self.fill_(0)

    # In-place unary ops: the out-of-place op's values written into this tensor, with the
    # rules above (the version counter moves; recorded in the graph). A result of another
    # kind (exp_ of an integer tensor is float) is refused, as torch does.

    def abs_(self) -> Tensor:
        """|self| in place (recorded in the graph); returns self."""
        return self._write_result("abs_", lambda t: _F().abs(t))

    def neg_(self) -> Tensor:
        """-self in place (recorded in the graph); returns self."""
        return self._write_result("neg_", lambda t: _F().neg(t))

    def exp_(self) -> Tensor:
        """e ** self in place (float tensors; recorded in the graph); returns self."""
        return self._write_result("exp_", lambda t: _F().exp(t))

    def log_(self) -> Tensor:
        """Natural log in place (float tensors; recorded in the graph); returns self."""
        return self._write_result("log_", lambda t: _F().log(t))

    def sqrt_(self) -> Tensor:
        """Square root in place (float tensors; recorded in the graph); returns self."""
        return self._write_result("sqrt_", lambda t: _F().sqrt(t))

    def sigmoid_(self) -> Tensor:
        """Logistic sigmoid in place (float tensors; recorded in the graph); returns self."""
        return self._write_result("sigmoid_", lambda t: _F().sigmoid(t))

    def tanh_(self) -> Tensor:
        """tanh in place (float tensors; recorded in the graph); returns self."""
        return self._write_result("tanh_", lambda t: _F().tanh(t))

    def relu_(self) -> Tensor:
        """max(self, 0) in place; returns self. A float tensor's ReLU is computed straight
        into its memory (`ReLUInPlace`: no new activation), recorded in the graph as
        PyTorch does (`_record_inplace`)."""
        if self.dtype.kind != "f":
            return self._write_result("relu_", lambda t: _F().relu(t))
        relu_into = _F().elementwise.ReLUInPlace.apply
        if self._in_graph():
            return self._record_inplace("relu_", relu_into)
        if not self._data.flags.writeable:
            raise ValueError("relu_: this tensor's array is read-only")
        with autograd.no_grad():
            relu_into(self)
        return self

    def clamp_(self, min: Any = None, max: Any = None) -> Tensor:  # noqa: A002
        """`clamp` in place (bounds as `clamp`'s; recorded in the graph); returns self."""
        tracked = min if isinstance(min, Tensor) and min.requires_grad else max
        return self._write_result("clamp_", lambda t: _F().clamp(t, min, max), tracked)

    clip_ = clamp_

    def clamp_min_(self, min: Any) -> Tensor:  # noqa: A002
        """`clamp_` with a lower bound only; returns self."""
        return self._write_result("clamp_min_", lambda t: _F().clamp(t, min, None), min)

    def clamp_max_(self, max: Any) -> Tensor:  # noqa: A002
        """`clamp_` with an upper bound only; returns self."""
        return self._write_result("clamp_max_", lambda t: _F().clamp(t, None, max), max)

    def detach_(self) -> Tensor:
        """Cut this tensor from the graph in place: it becomes a leaf that does not
        require grad (its values and memory unchanged); returns self."""
        self.grad_fn = None
        self._requires_grad = False
        return self

    def __setitem__(self, index: Any, value: Any) -> None:
        """``t[index] = value`` in place, outside the graph (as the in-place ops), with
        `__getitem__`'s indexing rules (PyTorch's order of integers and index arrays)."""
        select, rest = _F().index_parts(index, self.ndim)

        def assign(a, b, out, casting):
            (out if select is None else out[select])[rest] = b

        self._inplace("item assignment", assign, value)

    def sum(
        self, axis: Any = None, keepdims: Any = None, *, dim: Any = None, keepdim: Any = None,
        dtype: Any = None,
    ) -> Tensor:  # fmt: skip
        """Sum over ``axis`` or ``dim`` (all if None); ``keepdims``/``keepdim`` keep the
        reduced axes as size 1 (default False); ``dtype`` casts first (as torch)."""
        return _F().sum(self, axis, keepdims, dim=dim, keepdim=keepdim, dtype=dtype)

    def mean(
        self, axis: Any = None, keepdims: Any = None, *, dim: Any = None, keepdim: Any = None,
        dtype: Any = None,
    ) -> Tensor:  # fmt: skip
        """Mean over ``axis`` or ``dim`` (all if None); ``dtype`` (a float dtype) casts
        first (as torch)."""
        return _F().mean(self, axis, keepdims, dim=dim, keepdim=keepdim, dtype=dtype)

    def prod(
        self, dim: Any = None, keepdim: Any = None, *, dtype: Any = None, axis: Any = None,
        keepdims: Any = None,
    ) -> Tensor:  # fmt: skip
        """Product over one ``dim`` (all if None: 0-d), as torch; differentiable, zeros
        included (see `minires.functional.prod`)."""
        return _F().prod(self, dim, keepdim, dtype=dtype, axis=axis, keepdims=keepdims)

    def cumsum(self, dim: Any = None, *, dtype: Any = None, axis: Any = None) -> Tensor:
        """Running sum along ``dim`` (required): same shape; differentiable."""
        return _F().cumsum(self, dim, dtype=dtype, axis=axis)

    def logsumexp(self, dim: Any, keepdim: bool = False) -> Tensor:
        """log(sum(exp(self))) along ``dim`` without overflow; differentiable."""
        return _F().logsumexp(self, dim, keepdim)

    def flip(self, *dims: Any) -> Tensor:
        """A copy with the entries reversed along ``dims`` (``flip(0, 1)`` or ``flip((0,
        1))``), as torch."""
        return _F().flip(self, dims[0] if len(dims) == 1 else dims)

    def norm(
        self, p: Any = "fro", dim: Any = None, keepdim: bool = False, dtype: Any = None
    ) -> Tensor:
        """The vector p-norm over ``dim`` (all if None): p = 2 / "fro", 1, inf, -inf, 0 or
        another real, as torch; differentiable, with torch's subgradients (0 at 0)."""
        return _F().linalg.norm(self, p, dim, keepdim, dtype)

    def sort(
        self, dim: int = -1, descending: bool = False, *, stable: bool = False
    ) -> ValuesIndices:
        """``(values, indices)`` sorted along ``dim`` (a named pair, as torch's): same
        shapes, values differentiable, indices int64; stable, NaN largest."""
        return _F().sort(self, dim, descending, stable)

    def argsort(self, dim: int = -1, descending: bool = False, *, stable: bool = False) -> Tensor:
        """int64 indices that sort along ``dim`` (`sort`'s indices): same shape."""
        return _F().argsort(self, dim, descending, stable)

    def topk(
        self,
        k: int,
        dim: int = -1,
        largest: bool = True,
        sorted: bool = True,  # noqa: A002
    ) -> ValuesIndices:
        """``(values, indices)`` of the k largest (or smallest) along ``dim``, whose size
        becomes k (see `minires.functional.topk`); values differentiable."""
        return _F().topk(self, k, dim, largest, sorted)

    def max(
        self, axis: Any = None, keepdims: Any = None, *, dim: Any = None, keepdim: Any = None
    ) -> Tensor:
        """Maximum over ``axis`` or ``dim`` (all if None: a 0-d tensor); ties share the
        gradient. Returns the values only (torch's ``amax``; torch's ``max(dim=d)`` also
        returns indices): use `argmax` for those."""
        return _F().max(self, axis, keepdims, dim=dim, keepdim=keepdim)

    def reshape(self, *shape: Any) -> Tensor:
        """Same values, new shape (one entry may be -1)."""
        return _F().reshape(self, *shape)

    view = reshape

    def view_as(self, other: Tensor) -> Tensor:
        """This tensor with ``other``'s shape (same number of elements)."""
        return self.reshape(_shape_of(other, "view_as"))

    def reshape_as(self, other: Tensor) -> Tensor:
        """This tensor with ``other``'s shape (same number of elements)."""
        return self.reshape(_shape_of(other, "reshape_as"))

    def expand_as(self, other: Tensor) -> Tensor:
        """This tensor broadcast to ``other``'s shape (see `expand`)."""
        return self.expand(_shape_of(other, "expand_as"))

    def repeat(self, *sizes: Any) -> Tensor:
        """Repeated ``sizes[i]`` times along each dimension (one size per dimension at
        least; extra leading ones add dimensions): (3, 4).repeat(2, 1) is (6, 4).
        Differentiable."""
        return _F().repeat(self, *sizes)

    def tile(self, *dims: Any) -> Tensor:
        """`repeat` with fewer sizes allowed (leading 1s added): (3, 4).tile(2) is (3, 8)."""
        return _F().tile(self, dims[0] if len(dims) == 1 else dims)

    def transpose(self, *axes: Any) -> Tensor:
        """Permute the axes (reverse them if none given)."""
        return _F().transpose(self, *axes)

    @property
    def T(self) -> Tensor:
        """The axes reversed (the matrix transpose for 2-D)."""
        return _F().transpose(self)

    @property
    def mT(self) -> Tensor:
        """The last two dimensions swapped, (..., m, n) -> (..., n, m): a batch of matrices
        transposed (torch's ``mT``; at least 2-D)."""
        if self.ndim < 2:
            raise ValueError(
                f"mT: needs a matrix or a batch of matrices (>= 2 dimensions), got shape "
                f"{self.shape}"
            )
        return _F().transpose(self, -2, -1)

    def flatten(self, start_dim: int = 0, end_dim: int = -1) -> Tensor:
        """Merge axes ``start_dim..end_dim`` into one (all by default, like torch)."""
        return _F().flatten(self, start_dim, end_dim)

    def relu(self) -> Tensor:
        """max(self, 0)."""
        return _F().relu(self)

    def exp(self) -> Tensor:
        """e ** self."""
        return _F().exp(self)

    def log(self) -> Tensor:
        """Natural logarithm."""
        return _F().log(self)

    def tanh(self) -> Tensor:
        """Hyperbolic tangent."""
        return _F().tanh(self)

    def sigmoid(self) -> Tensor:
        """Logistic sigmoid."""
        return _F().sigmoid(self)

    # -- PyTorch's names beside NumPy's (see minires.functional for each op) ---------------

    def min(
        self, axis: Any = None, keepdims: Any = None, *, dim: Any = None, keepdim: Any = None
    ) -> Tensor:
        """Minimum over ``axis`` or ``dim`` (all if None); values only, like `max`."""
        return _F().min(self, axis, keepdims, dim=dim, keepdim=keepdim)

    def argmax(
        self, dim: Any = None, keepdim: Any = None, *, axis: Any = None, keepdims: Any = None
    ) -> Tensor:
        """int64 index of the maximum along ``dim`` (of the flattened tensor if None)."""
        return _F().argmax(self, axis, keepdims, dim=dim, keepdim=keepdim)

    def argmin(
        self, dim: Any = None, keepdim: Any = None, *, axis: Any = None, keepdims: Any = None
    ) -> Tensor:
        """int64 index of the minimum along ``dim`` (of the flattened tensor if None)."""
        return _F().argmin(self, axis, keepdims, dim=dim, keepdim=keepdim)

    def permute(self, *dims: Any) -> Tensor:
        """Reorder the dimensions: ``x.permute(0, 2, 3, 1)`` or ``x.permute((0, 2, 3, 1))``."""
        return _F().permute(self, *dims)

    def unsqueeze(self, dim: int) -> Tensor:
        """Insert a dimension of size 1 at ``dim``."""
        return _F().unsqueeze(self, dim)

    def squeeze(self, dim: Any = None) -> Tensor:
        """Remove dimensions of size 1 (all, or those named by ``dim``)."""
        return _F().squeeze(self, dim)

    def abs(self) -> Tensor:
        """Elementwise absolute value."""
        return _F().abs(self)

    def sqrt(self) -> Tensor:
        """Elementwise square root."""
        return _F().sqrt(self)

    def clamp(self, min: Any = None, max: Any = None) -> Tensor:  # noqa: A002
        """Limit values to ``[min, max]``; the gradient passes inside, bounds included."""
        return _F().clamp(self, min, max)

    clip = clamp

    def clamp_min(self, min: Any) -> Tensor:  # noqa: A002
        """`clamp` with a lower bound only."""
        return _F().clamp(self, min, None)

    def clamp_max(self, max: Any) -> Tensor:  # noqa: A002
        """`clamp` with an upper bound only."""
        return _F().clamp(self, None, max)

    def pow(self, exponent: Any) -> Tensor:
        """self ** exponent."""
        return _F().pow(self, exponent)

    def matmul(self, other: Any) -> Tensor:
        """self @ other."""
        return _F().matmul(self, other)

    def mm(self, other: Any) -> Tensor:
        """Matrix product of two 2-D tensors (torch.mm): (n, k) @ (k, m) -> (n, m)."""
        if self.ndim != 2 or np.ndim(other) != 2:
            raise ValueError(f"mm: expects 2-D tensors, got {self.shape} and {np.shape(other)}")
        return _F().matmul(self, other)

    def t(self) -> Tensor:
        """The transpose of a tensor of <= 2 dimensions (torch's ``t()``)."""
        if self.ndim > 2:
            raise ValueError(f"t(): expects a tensor of <= 2 dimensions, got shape {self.shape}")
        return _F().transpose(self)

    def clone(self) -> Tensor:
        """A copy in new memory, recorded in the graph (the gradient passes through)."""
        return _F().clone(self)

    def contiguous(self) -> Tensor:
        """Self if its array is C-contiguous, else a contiguous `clone`."""
        return self if self.data.flags.c_contiguous else self.clone()

    def long(self) -> Tensor:
        """Cast to int64 (cut from the graph, as in PyTorch)."""
        return self.astype(np.int64)

    def softmax(self, dim: int) -> Tensor:
        """Softmax along ``dim``."""
        return _F().softmax(self, dim)

    def log_softmax(self, dim: int) -> Tensor:
        """Log-softmax along ``dim``."""
        return _F().log_softmax(self, dim)

    def var(
        self, dim: Any = None, unbiased: Any = None, keepdim: bool = False, *,
        correction: Any = None,
    ) -> Tensor:  # fmt: skip
        """Variance over ``dim`` (all if None) with Bessel's correction by default, as
        torch (``unbiased=False`` or ``correction=0``: divide by n)."""
        if unbiased is not None and correction is not None:
            raise TypeError("var: give unbiased or correction, not both")
        if correction is None:
            correction = 1 if unbiased is None or unbiased else 0
        mean = self.mean(dim=dim, keepdim=True)
        n = self.data.size if dim is None else int(
            np.prod([self.shape[d] for d in np.atleast_1d(dim)]))  # fmt: skip
        centred = self - mean
        return (centred * centred).sum(dim=dim, keepdim=keepdim) / max(n - correction, 0)

    def std(
        self, dim: Any = None, unbiased: Any = None, keepdim: bool = False, *,
        correction: Any = None,
    ) -> Tensor:  # fmt: skip
        """Standard deviation: the square root of `var` (same arguments); its gradient is
        0 where the deviation is 0 (as torch), not NaN."""
        return _F().std_of_var(self.var(dim, unbiased, keepdim, correction=correction))

    def all(self, dim: Any = None, keepdim: bool = False) -> Tensor:
        """True where every value along ``dim`` (all if None) is non-zero; a bool tensor."""
        return Tensor._wrap(np.asarray(self.data.all(axis=dim, keepdims=keepdim)))

    def any(self, dim: Any = None, keepdim: bool = False) -> Tensor:
        """True where some value along ``dim`` (all if None) is non-zero; a bool tensor."""
        return Tensor._wrap(np.asarray(self.data.any(axis=dim, keepdims=keepdim)))

    def expand(self, *sizes: Any) -> Tensor:
        """This tensor broadcast to ``sizes`` (-1 keeps a dimension), as torch's
        ``expand``; the gradient sums over the broadcast dimensions. A copy here, not a
        view."""
        if len(sizes) == 1 and isinstance(sizes[0], tuple | list):
            sizes = tuple(sizes[0])
        lead = len(sizes) - self.ndim
        if lead < 0:
            raise ValueError(f"expand: {len(sizes)} sizes for a tensor of shape {self.shape}")
        shape = tuple(
            self.shape[i - lead] if n == -1 and i >= lead else n for i, n in enumerate(sizes)
        )
        try:
            np.broadcast_to(np.empty(self.shape, np.bool_), shape)
        except ValueError:
            raise ValueError(f"expand: shape {self.shape} cannot expand to {sizes}") from None
        return self + Tensor._wrap(np.zeros(shape, self.dtype))

    def split(self, split_size: Any, dim: int = 0) -> tuple[Tensor, ...]:
        """Pieces along ``dim`` (see `minires.functional.split`)."""
        return _F().split(self, split_size, dim)

    def chunk(self, chunks: int, dim: int = 0) -> tuple[Tensor, ...]:
        """``chunks`` pieces along ``dim`` (see `minires.functional.chunk`)."""
        return _F().chunk(self, chunks, dim)

    def masked_fill(self, mask: Any, value: Any) -> Tensor:
        """``value`` where ``mask`` (a bool tensor broadcasting to this shape) is True;
        the gradient passes where it is False."""
        m = mask.data if isinstance(mask, Tensor) else np.asarray(mask)
        try:
            fits = np.broadcast_shapes(m.shape, self.shape) == self.shape
        except ValueError:
            fits = False
        if not fits:
            raise ValueError(f"masked_fill: mask {m.shape} does not broadcast to {self.shape}")
        if isinstance(value, Tensor):
            if value.ndim != 0:
                raise ValueError(f"masked_fill: value must be 0-d, got shape {value.shape}")
            fill = value if value.dtype == self.dtype else value.astype(self.dtype)
        elif isinstance(value, bool | int | float | np.number):
            fill = Tensor._wrap(np.asarray(value).astype(self.dtype))  # torch: self's dtype
        else:
            raise TypeError(f"masked_fill: value must be a number, got {value!r}")
        return _F().where(m, fill, self)

    def to(self, *args: Any, **kwargs: Any) -> Tensor:
        """``to(dtype)``, ``to("cpu")``, ``to("cpu", dtype)``, ``to(other_tensor)``: a cast
        (differentiable between float dtypes), or self when nothing changes. minires runs on
        the CPU only: other devices raise a ValueError."""
        from minires.device import parse_to

        dtype = parse_to(args, kwargs, "Tensor.to")
        return self if dtype is None else self.astype(dtype)

    def cpu(self) -> Tensor:
        """Self: minires tensors always live on the CPU."""
        return self

    def dim(self) -> int:
        """Number of dimensions (torch's name for ``ndim``)."""
        return self.data.ndim

    @property
    def device(self) -> str:
        """Always ``"cpu"``."""
        return "cpu"

    # Identity semantics for hashing: tensors are graph nodes, usable as dict keys.
    __hash__ = object.__hash__


def _sizes(op: str, size: tuple) -> tuple[int, ...]:
    """``(2, 3)`` from ``f(2, 3)``, ``f((2, 3))`` or ``f([2, 3])``: ints >= 0."""
    if len(size) == 1 and isinstance(size[0], tuple | list):
        size = tuple(size[0])
    for n in size:
        if isinstance(n, bool | np.bool_) or not isinstance(n, int | np.integer):
            raise TypeError(f"{op}: sizes must be ints, got {size!r}")
        if n < 0:
            raise ValueError(f"{op}: sizes must be >= 0, got {size!r}")
    return tuple(int(n) for n in size)


def _shape_of(other: Any, op: str) -> tuple[int, ...]:
    """The shape of the Tensor argument of view_as / reshape_as / expand_as."""
    if not isinstance(other, Tensor):
        raise TypeError(f"{op}: expected a Tensor, got {type(other).__name__}")
    return other.shape


def _store(a: np.ndarray, b: Any, out: np.ndarray | None = None, casting: str = "same_kind"):
    """The "ufunc" `Tensor._write_result` gives `Tensor._inplace`: copies the computed
    ``b`` into ``out``; called without ``out`` (`_inplace`'s message for a failed cast)
    it returns ``b``, whose dtype is the result's."""
    if out is None:
        return np.asarray(b)
    np.copyto(out, b, casting=casting)
    return out


_functional = None


def _keeps(out: Tensor, array: np.ndarray) -> bool:
    """Whether the op that made ``out`` saved ``array``'s memory for its backward."""
    if out.grad_fn is None:
        return False
    mine = autograd._memory_key(array)[0]
    return any(key == mine for _, key, _ in out.grad_fn.ctx._saved_versions)


def _times(other: Any, alpha: Any) -> Any:
    """alpha * other for `add_` / `sub_` in the graph (other unchanged at alpha 1)."""
    return other if alpha == 1 else other * alpha


def _F() -> Any:
    """minires.functional, imported on first use (it imports this module)."""
    global _functional
    if _functional is None:
        from minires import functional

        _functional = functional
    return _functional


def tensor(data: Any, requires_grad: bool = False, dtype: Any = None) -> Tensor:
    """Make a new leaf Tensor holding a copy of ``data``, like ``torch.tensor``.

    ``data`` may be a Tensor (its values are copied, the result is cut from its graph), an
    ndarray or nested Python numbers. ``mr.Tensor(ndarray)``, by contrast, shares the array.
    """
    src = data.data if isinstance(data, Tensor) else data
    arr = _to_array(src, dtype, where="tensor")
    if isinstance(src, np.ndarray) and np.may_share_memory(arr, src):
        arr = arr.copy()
    return Tensor(arr, requires_grad=requires_grad)
