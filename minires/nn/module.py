"""`Module` and `Parameter`: PyTorch's container API (registration by attribute, dotted
names, state_dict / load_state_dict, train/eval, dtype casts)."""

from __future__ import annotations

import warnings
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

from minires.device import parse_to
from minires.tensor import Tensor, native_array


def _holds_modules(value: Any) -> bool:
    """True for a list, tuple or dict with a Module among its direct entries."""
    if isinstance(value, dict):
        value = value.values()
    elif not isinstance(value, list | tuple):
        return False
    return any(isinstance(v, Module) for v in value)


class Parameter(Tensor):
    """A Tensor that is a learnable weight of a Module: ``requires_grad`` by default and
    registered automatically when assigned as a Module attribute."""

    __slots__ = ()

    def __init__(self, data: Any, requires_grad: bool = True):
        super().__init__(data.data if isinstance(data, Tensor) else data, requires_grad)

    def __repr__(self) -> str:
        return "Parameter containing:\n" + super().__repr__()


class LoadStateDictError(ValueError, TypeError):
    """`Module.load_state_dict` refused the state dict (nothing was loaded). A ValueError
    for bad keys, shapes and values, and a TypeError too, since a refused dtype (complex,
    object, strings) is among the problems it lists."""


class Module:
    """Base class of every layer and model.

    Assign `Parameter`s and sub-`Module`s as attributes; register non-learnable state
    (batchnorm's running statistics) with `register_buffer`. Names are dotted paths,
    as in PyTorch: ``layer1.0.conv2.weight``.
    """

    # Buffers a state dict may lack: PyTorch's BatchNorm fills in `num_batches_tracked`
    # for checkpoints written before it existed (the module keeps its current value).
    _optional_state: tuple[str, ...] = ()

    def __init__(self) -> None:
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "training", True)

    # -- registration ---------------------------------------------------------------------

    def __setattr__(self, name: str, value: Any) -> None:
        if "_parameters" not in self.__dict__:
            raise AttributeError(
                f"cannot assign {name!r} before Module.__init__() is called "
                f"(call super().__init__() first in {type(self).__name__}.__init__)"
            )
        # a registered parameter / sub-module is replaced only by its kind (or None), as in
        # PyTorch: a plain Tensor over `weight` would silently drop it from parameters()
        if name in self._parameters and not isinstance(value, Parameter | type(None)):
            raise TypeError(
                f"cannot assign a {type(value).__name__} as parameter {name!r} of "
                f"{type(self).__name__} (nn.Parameter or None expected)"
            )
        if name in self._modules and not isinstance(value, Module | type(None)):
            raise TypeError(
                f"cannot assign a {type(value).__name__} as child module {name!r} of "
                f"{type(self).__name__} (nn.Module or None expected)"
            )
        # replacing a parameter / sub-module by another keeps its place in the order
        # (state_dict keys, Sequential's order), as in PyTorch
        same_kind = (isinstance(value, Parameter) and name in self._parameters) or (
            isinstance(value, Module) and name in self._modules
        )
        if same_kind:
            (self._parameters if name in self._parameters else self._modules)[name] = value
            object.__setattr__(self, name, value)
            return
        for store in (self._parameters, self._buffers, self._modules):
            store.pop(name, None)
        if isinstance(value, Parameter):
            self._parameters[name] = value
        elif isinstance(value, Module):
            self._modules[name] = value
        elif name in self.__dict__.get("_buffer_names", ()):
            if value is not None:  # the dtype rules of tensors (native byte order, no complex)
                value = native_array(np.asarray(value), f"{type(self).__name__} buffer {name!r}")
            self._buffers[name] = value
        elif _holds_modules(value):
            warnings.warn(
                f"{type(self).__name__}.{name} is a {type(value).__name__} holding Modules: "
                "they are not registered, so parameters(), state_dict(), train() and to() "
                "will not see them; use nn.ModuleList or nn.ModuleDict",
                stacklevel=2,
            )
        object.__setattr__(self, name, value)

    def __delattr__(self, name: str) -> None:
        for store in (self._parameters, self._buffers, self._modules):
            store.pop(name, None)
        self.__dict__.get("_buffer_names", set()).discard(name)
        object.__delattr__(self, name)

    def register_buffer(self, name: str, value: np.ndarray | None) -> None:
        """Register non-learnable state saved in the state_dict (e.g. ``running_mean``)."""
        if "_buffer_names" not in self.__dict__:
            object.__setattr__(self, "_buffer_names", set())
        self._buffer_names.add(name)
        setattr(self, name, None if value is None else np.asarray(value))

    def register_parameter(self, name: str, value: Parameter | None) -> None:
        """Register a parameter (or None, e.g. a conv without bias) under ``name``."""
        if value is None:
            object.__setattr__(self, name, None)
            self._parameters.pop(name, None)
        else:
            setattr(self, name, value)

    def add_module(self, name: str, module: Module | None) -> None:
        """Register a sub-module under ``name`` (used by containers with numeric names):
        a non-empty string without '.' that is not already another attribute."""
        if not isinstance(module, Module | type(None)):
            raise TypeError(f"add_module: {type(module).__name__} is not a Module")
        if not isinstance(name, str):
            raise TypeError(f"add_module: module name must be a string, got {name!r}")
        if not name or "." in name:
            raise KeyError(f"add_module: module name must be non-empty without '.', got {name!r}")
        if name not in self._modules and hasattr(self, name):
            raise KeyError(f"add_module: attribute {name!r} already exists")
        setattr(self, name, module)

    # -- calling --------------------------------------------------------------------------

    def forward(self, *args: Any, **kwargs: Any) -> Any:  # pragma: no cover
        raise NotImplementedError(f"{type(self).__name__} must implement forward()")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.forward(*args, **kwargs)

    # -- traversal ------------------------------------------------------------------------

    def named_modules(self, prefix: str = "") -> Iterator[tuple[str, Module]]:
        """``(dotted_name, module)`` for this module (name ``""``) and every descendant."""
        stack: list[tuple[str, Module]] = [(prefix, self)]
        seen: set[int] = set()
        while stack:  # iterative: a 1,000-block net must not recurse
            name, mod = stack.pop()
            if id(mod) in seen:
                continue
            seen.add(id(mod))
            yield name, mod
            children = [
                (f"{name}.{k}" if name else k, m) for k, m in mod._modules.items() if m is not None
            ]
            stack.extend(reversed(children))

    def modules(self) -> Iterator[Module]:
        """Every module in the tree, self first."""
        for _, m in self.named_modules():
            yield m

    def named_children(self) -> Iterator[tuple[str, Module]]:
        """Direct sub-modules with their names."""
        for k, m in self._modules.items():
            if m is not None:
                yield k, m

    def children(self) -> Iterator[Module]:
        """Direct sub-modules."""
        for _, m in self.named_children():
            yield m

    def named_parameters(self, prefix: str = "") -> Iterator[tuple[str, Parameter]]:
        """``(dotted_name, parameter)`` for every parameter, each once."""
        seen: set[int] = set()
        for mname, mod in self.named_modules(prefix):
            for k, p in mod._parameters.items():
                if p is not None and id(p) not in seen:
                    seen.add(id(p))
                    yield (f"{mname}.{k}" if mname else k), p

    def parameters(self) -> Iterator[Parameter]:
        """Every parameter, each once."""
        for _, p in self.named_parameters():
            yield p

    def named_buffers(self, prefix: str = "") -> Iterator[tuple[str, np.ndarray]]:
        """``(dotted_name, ndarray)`` for every buffer."""
        for mname, mod in self.named_modules(prefix):
            for k, b in mod._buffers.items():
                if b is not None:
                    yield (f"{mname}.{k}" if mname else k), b

    def buffers(self) -> Iterator[np.ndarray]:
        """Every buffer (ndarray)."""
        for _, b in self.named_buffers():
            yield b

    def get_submodule(self, target: str) -> Module:
        """The module at a dotted path, e.g. ``model.get_submodule("layer1.0")``."""
        mod: Module = self
        for part in target.split(".") if target else []:
            if part not in mod._modules:
                raise AttributeError(f"{type(mod).__name__} has no submodule {part!r} ({target!r})")
            mod = mod._modules[part]
        return mod

    # -- mode and gradients ---------------------------------------------------------------

    def train(self, mode: bool = True) -> Module:
        """Training mode (batchnorm uses batch statistics). Returns self."""
        for m in self.modules():
            object.__setattr__(m, "training", mode)
        return self

    def eval(self) -> Module:
        """Evaluation mode (batchnorm uses running statistics). Returns self."""
        return self.train(False)

    def zero_grad(self) -> None:
        """Clear the ``.grad`` of every parameter."""
        for p in self.parameters():
            p.grad = None

    def requires_grad_(self, requires_grad: bool = True) -> Module:
        """Freeze or unfreeze every parameter. Returns self."""
        for p in self.parameters():
            p.requires_grad = requires_grad
        return self

    # -- state ----------------------------------------------------------------------------

    def state_dict(self) -> OrderedDict[str, np.ndarray]:
        """Copies of every parameter and buffer, keyed by dotted name (PyTorch's keys)."""
        state: OrderedDict[str, np.ndarray] = OrderedDict()
        for mname, mod in self.named_modules():
            dot = f"{mname}." if mname else ""
            for k, p in mod._parameters.items():
                if p is not None:
                    state[dot + k] = p.data.copy()
            for k, b in mod._buffers.items():
                if b is not None:
                    state[dot + k] = np.array(b, copy=True)
        return state

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True) -> Any:
        """Copy values into the existing parameters and buffers, keeping their dtype.

        Every entry is checked before any is written, so a failed load leaves the module
        untouched. Raises a ValueError listing every missing key, unexpected key, shape
        mismatch and non-numeric value (with ``strict=False`` missing and unexpected keys
        are allowed). NaN and inf values are loaded as they are. Values may be ndarrays,
        Tensors or anything with ``.numpy()`` (a torch tensor on the CPU).
        """
        if not isinstance(state_dict, Mapping):
            raise TypeError(
                f"load_state_dict: expected a mapping of name -> array, got "
                f"{type(state_dict).__name__}"
            )
        targets = self._state_targets()
        given: dict[str, np.ndarray] = {}
        bad_values: list[str] = []
        bad_keys: set[str] = set()
        unexpected = [k for k in state_dict if k not in targets]
        for k, v in state_dict.items():
            if k not in targets:
                continue
            try:
                arr = _to_numpy(v, k)
            except TypeError as exc:  # a refused dtype (complex, object, ...)
                bad_values.append(f"{k}: {exc}")
                bad_keys.add(k)
                continue
            except Exception as exc:  # anything that is not array-like
                bad_values.append(f"{k}: cannot read a {type(v).__name__} as an array ({exc})")
                bad_keys.add(k)
                continue
            if arr.dtype.kind not in "biuf":
                bad_values.append(f"{k}: dtype {arr.dtype} is not a real number type")
                bad_keys.add(k)
                continue
            if arr.shape == (1,) and np.ndim(targets[k][2]) == 0:
                arr = arr.reshape(())  # a 0-d value saved as shape (1,) (PyTorch < 0.4)
            given[k] = arr
        missing = [
            k
            for k, (mod, name, _) in targets.items()
            if k not in given and k not in bad_keys and name not in mod._optional_state
        ]
        mismatched_keys = {
            k for k in targets if k in given and given[k].shape != np.shape(targets[k][2])
        }
        mismatched = [
            f"{k}: checkpoint {tuple(given[k].shape)} vs model {tuple(np.shape(targets[k][2]))}"
            for k in targets
            if k in mismatched_keys
        ]
        # Convert everything first (nothing is written until every entry passed).
        writes = []
        for k, (mod, name, current) in targets.items():
            if k not in given or k in mismatched_keys:
                continue
            dst = current.data if isinstance(current, Tensor) else np.asarray(current)
            src = given[k]
            if dst.dtype.kind in "iub" and src.dtype.kind == "f" and not np.isfinite(src).all():
                bad_values.append(f"{k}: non-finite values for an integer {dst.dtype} buffer")
                continue
            if dst.ndim > 0 and not dst.flags.writeable:
                bad_values.append(f"{k}: the model's array is read-only")
                continue
            writes.append((mod, name, current, src.astype(dst.dtype, copy=False)))
        problems = []
        if strict and missing:
            problems.append("missing keys: " + ", ".join(missing))
        if strict and unexpected:
            problems.append("unexpected keys: " + ", ".join(map(str, unexpected)))
        if mismatched:
            problems.append("shape mismatches: " + "; ".join(mismatched))
        if bad_values:
            problems.append("bad values: " + "; ".join(bad_values))
        if problems:
            raise LoadStateDictError(
                f"load_state_dict into {type(self).__name__} failed (nothing was loaded):\n  "
                + "\n  ".join(problems)
            )
        for mod, name, current, value in writes:
            if isinstance(current, Tensor):
                current.data[...] = value
            elif isinstance(current, np.ndarray) and current.ndim > 0:
                current[...] = value
            else:  # 0-d buffer (num_batches_tracked): replace, keeping the dtype
                mod._buffers[name] = np.array(value, dtype=np.asarray(current).dtype)
                object.__setattr__(mod, name, mod._buffers[name])
        return _IncompatibleKeys(missing, unexpected)

    def _state_targets(self) -> OrderedDict[str, tuple[Module, str, Any]]:
        out: OrderedDict[str, tuple[Module, str, Any]] = OrderedDict()
        for mname, mod in self.named_modules():
            dot = f"{mname}." if mname else ""
            for k, p in mod._parameters.items():
                if p is not None:
                    out[dot + k] = (mod, k, p)
            for k, b in mod._buffers.items():
                if b is not None:
                    out[dot + k] = (mod, k, b)
        return out

    # -- dtype ----------------------------------------------------------------------------

    def to(self, *args: Any, **kwargs: Any) -> Module:
        """Cast float parameters and buffers to a dtype (integer buffers stay). Returns self.

        Takes what ``torch.nn.Module.to`` takes: ``to(dtype)``, ``to("cpu")`` (a no-op:
        minires runs on the CPU only, other devices raise a ValueError), ``to("cpu", dtype)``
        and ``device=``/``dtype=`` keywords; dtypes as ``np.float64``, ``"float64"`` or
        ``"double"``."""
        dtype = parse_to(args, kwargs, "Module.to", float_only=True)
        if dtype is None:
            return self
        for mod in self.modules():
            for p in mod._parameters.values():
                if p is not None:
                    p.data = p.data.astype(dtype)
                    if p.grad is not None:
                        p.grad = p.grad.astype(dtype)
            for k, b in list(mod._buffers.items()):
                if b is not None and b.dtype.kind == "f":
                    mod._buffers[k] = b.astype(dtype)
                    object.__setattr__(mod, k, mod._buffers[k])
        return self

    def float(self) -> Module:
        """Cast to float32. Returns self."""
        return self.to(np.float32)

    def double(self) -> Module:
        """Cast to float64 (what gradcheck needs). Returns self."""
        return self.to(np.float64)

    # -- printing -------------------------------------------------------------------------

    def extra_repr(self) -> str:
        """One-line description of this module's settings (override in layers)."""
        return ""

    def __repr__(self) -> str:
        lines = []
        for name, child in self.named_children():
            body = repr(child).replace("\n", "\n  ")
            lines.append(f"  ({name}): {body}")
        head = f"{type(self).__name__}({self.extra_repr()}"
        return head + ("\n" + "\n".join(lines) + "\n)" if lines else ")")


class _IncompatibleKeys(tuple):
    """(missing_keys, unexpected_keys), like PyTorch's return value."""

    def __new__(cls, missing: list[str], unexpected: list[str]):
        obj = super().__new__(cls, (missing, unexpected))
        obj.missing_keys, obj.unexpected_keys = missing, unexpected
        return obj


def _to_numpy(v: Any, key: str = "") -> np.ndarray:
    if isinstance(v, Tensor):
        return v.data
    if hasattr(v, "detach") and hasattr(v, "numpy"):  # a torch tensor, without importing torch
        v = v.detach().cpu().numpy()
    return native_array(np.asarray(v), f"load_state_dict: {key}")
