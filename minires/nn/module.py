"""`Module` and `Parameter`: PyTorch's container API (registration by attribute, dotted
names, traversal, ``apply``, forward and backward hooks, state_dict / load_state_dict,
train/eval, dtype casts)."""

from __future__ import annotations

import warnings
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np

from minires import autograd
from minires.device import parse_to
from minires.tensor import RemovableHandle, Tensor, native_array


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
        # hooks, in the order they run (see `register_forward_hook` and friends)
        object.__setattr__(self, "_forward_pre_hooks", [])
        object.__setattr__(self, "_forward_hooks", [])
        object.__setattr__(self, "_backward_hooks", [])

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

    def register_module(self, name: str, module: Module | None) -> None:
        """Alias of `add_module` (PyTorch has both names)."""
        self.add_module(name, module)

    # -- calling --------------------------------------------------------------------------

    def forward(self, *args: Any, **kwargs: Any) -> Any:  # pragma: no cover
        raise NotImplementedError(f"{type(self).__name__} must implement forward()")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Run ``forward``, with the hooks around it (as ``torch.nn.Module.__call__``):
        forward pre-hooks (may replace the arguments), then ``forward``, then forward hooks
        (may replace the output); full backward hooks are attached to the inputs and
        outputs of this call when grad mode is on."""
        if not (self._forward_pre_hooks or self._forward_hooks or self._backward_hooks):
            return self.forward(*args, **kwargs)
        return self._call_with_hooks(args, kwargs)

    def _call_with_hooks(self, args: tuple, kwargs: dict[str, Any]) -> Any:
        # the order of torch.nn.Module._call_impl
        for entry in list(self._forward_pre_hooks):
            if entry.with_kwargs:
                res = entry.fn(self, args, kwargs)
                if res is not None:
                    if not (isinstance(res, tuple) and len(res) == 2):
                        raise _HookResultError(
                            f"forward pre-hook {_hook_name(entry.fn)} registered with "
                            f"with_kwargs=True must return None or a tuple (new_args, "
                            f"new_kwargs), got {type(res).__name__}"
                        )
                    args, kwargs = res
            else:
                res = entry.fn(self, args)
                if res is not None:
                    args = res if isinstance(res, tuple) else (res,)
        bw = None
        if self._backward_hooks and autograd.is_grad_enabled():
            bw = _BackwardHookCall(self, [e.fn for e in self._backward_hooks])
            args = bw.wrap_inputs(args)
        result = self.forward(*args, **kwargs)
        for entry in list(self._forward_hooks):
            if entry.with_kwargs:
                res = entry.fn(self, args, kwargs, result)
            else:
                res = entry.fn(self, args, result)
            if res is not None:
                result = res
        if bw is not None:
            result = bw.wrap_outputs(result)
        return result

    # -- hooks ----------------------------------------------------------------------------

    def _add_hook(
        self, store: str, what: str, hook: Any, prepend: bool, with_kwargs: bool = False
    ) -> RemovableHandle:
        if not callable(hook):
            raise TypeError(f"{what}: hook must be callable, got {hook!r} ({type(hook).__name__})")
        hooks = getattr(self, store)
        entry = _Hook(hook, with_kwargs)
        if prepend:
            hooks.insert(0, entry)
        else:
            hooks.append(entry)
        return _ModuleHookHandle(hooks, entry)

    def register_forward_pre_hook(
        self, hook: Callable[..., Any], *, prepend: bool = False, with_kwargs: bool = False
    ) -> RemovableHandle:
        """Call ``hook(module, args)`` before every ``forward``.

        ``args`` is the tuple of positional arguments; the hook returns None (keep them)
        or new arguments (a single value is taken as a 1-tuple). With ``with_kwargs=True``
        it is ``hook(module, args, kwargs)`` and returns None or ``(new_args,
        new_kwargs)``. ``prepend=True`` runs it before the hooks already registered.

        Returns a handle: ``handle.remove()`` unregisters the hook (or ``with handle:``).
        """
        return self._add_hook(
            "_forward_pre_hooks", "register_forward_pre_hook", hook, prepend, with_kwargs
        )

    def register_forward_hook(
        self, hook: Callable[..., Any], *, prepend: bool = False, with_kwargs: bool = False
    ) -> RemovableHandle:
        """Call ``hook(module, args, output)`` after every ``forward``.

        ``args`` are the positional arguments forward received (after the pre-hooks),
        ``output`` what it returned, e.g. the ``(N, C, H, W)`` activation of a conv; the
        hook returns None (keep it) or a replacement output. With ``with_kwargs=True`` it
        is ``hook(module, args, kwargs, output)``. Recording activations layer by layer::

            acts = {}

            def record(name):
                return lambda mod, args, out: acts.__setitem__(name, out.data)

            for name, m in model.named_modules():
                m.register_forward_hook(record(name))

        Returns a handle: ``handle.remove()`` unregisters the hook (or ``with handle:``).
        """
        return self._add_hook("_forward_hooks", "register_forward_hook", hook, prepend, with_kwargs)

    def register_full_backward_hook(
        self, hook: Callable[..., Any], prepend: bool = False
    ) -> RemovableHandle:
        """Call ``hook(module, grad_input, grad_output)`` when backward has computed the
        gradients with respect to this module's inputs.

        ``grad_output`` holds d loss / d output per output of ``forward`` (a 1-tuple for
        a module returning one tensor: ``(N, C_out, H_out, W_out)`` for a conv) and
        ``grad_input`` d loss / d input per positional argument, counting only this
        module's use of the input (None for arguments that are not tensors requiring
        grad). As elsewhere in minires the gradients are ndarrays (PyTorch hands
        Tensors). The hook returns None or a tuple of ``len(grad_input)`` replacing the
        gradients passed on to the inputs (None in it stops that gradient). An input that
        requires grad but that the output does not depend on gets zeros, an output that
        the loss does not use None. The gradients w.r.t. the module's parameters are not
        part of ``grad_input`` (read ``p.grad`` after backward).

        As in PyTorch: when no input requires grad (the first conv of a net fed an image)
        the hook fires as soon as ``grad_output`` is known, with ``grad_input`` all None,
        and warns. Hooks are attached to calls made in grad mode only, and a call keeps
        the hooks registered when it ran. Each call's inputs and outputs pass through an
        identity op (``BackwardHookFunctionBackward`` in the graph), so the tensors
        ``forward`` sees and returns are new ones sharing the data.

        Returns a handle: ``handle.remove()`` unregisters the hook (for later calls).
        """
        return self._add_hook("_backward_hooks", "register_full_backward_hook", hook, prepend)

    def apply(self, fn: Callable[[Module], Any]) -> Module:
        """Call ``fn(m)`` on every sub-module (children before their parent, in order),
        then on self, as ``torch.nn.Module.apply``; returns self. The usual use is custom
        initialisation::

            def init(m):
                if isinstance(m, nn.Conv2d):
                    nn.init.kaiming_normal_(m.weight, mode="fan_out")

            model.apply(init)
        """
        if not callable(fn):
            raise TypeError(f"apply: fn must be callable, got {fn!r} ({type(fn).__name__})")
        # torch recurses (for child in children(): child.apply(fn); fn(self)); the same
        # post-order with an explicit stack
        stack: list[tuple[Module, bool]] = [(self, False)]
        while stack:
            mod, children_done = stack.pop()
            if children_done:
                fn(mod)
                continue
            stack.append((mod, True))
            stack.extend((c, False) for c in reversed(list(mod.children())))
        return self

    # -- traversal ------------------------------------------------------------------------

    def named_modules(
        self, memo: set[Module] | None = None, prefix: str = "", remove_duplicate: bool = True
    ) -> Iterator[tuple[str, Module]]:
        """``(dotted_name, module)`` for this module (named ``prefix``, ``""`` by default)
        and every descendant, depth first in registration order (PyTorch's order).

        A module reachable by several paths is listed once, under its first name, unless
        ``remove_duplicate=False``; ``memo`` is a set of modules to skip (and to which the
        listed ones are added), as in PyTorch.
        """
        seen: set[Module] = memo if memo is not None else set()
        stack: list[tuple[str, Module]] = [(prefix, self)]
        while stack:  # iterative: a 1,000-block net must not recurse
            name, mod = stack.pop()
            if remove_duplicate:
                if mod in seen:
                    continue
                seen.add(mod)
            yield name, mod
            children = [
                (f"{name}.{k}" if name else k, m) for k, m in mod._modules.items() if m is not None
            ]
            stack.extend(reversed(children))

    def modules(self) -> Iterator[Module]:
        """Every module in the tree, self first, each once (the order of `named_modules`)."""
        for _, m in self.named_modules():
            yield m

    def named_children(self) -> Iterator[tuple[str, Module]]:
        """Direct sub-modules with their names (a module registered twice: once)."""
        seen: set[Module] = set()
        for k, m in self._modules.items():
            if m is not None and m not in seen:
                seen.add(m)
                yield k, m

    def children(self) -> Iterator[Module]:
        """Direct sub-modules."""
        for _, m in self.named_children():
            yield m

    def _named_members(
        self,
        members: Callable[[Module], Iterator[tuple[str, Any]]],
        prefix: str,
        recurse: bool,
        remove_duplicate: bool,
    ) -> Iterator[tuple[str, Any]]:
        """PyTorch's ``_named_members``: ``members(module)`` of self (and descendants if
        ``recurse``), each value once (by identity) unless ``remove_duplicate=False``."""
        seen: set[int] = set()
        mods = (
            self.named_modules(prefix=prefix, remove_duplicate=remove_duplicate)
            if recurse
            else [(prefix, self)]
        )
        for mname, mod in mods:
            for k, v in members(mod):
                if v is None or id(v) in seen:
                    continue
                if remove_duplicate:
                    seen.add(id(v))
                yield (f"{mname}.{k}" if mname else k), v

    def named_parameters(
        self, prefix: str = "", recurse: bool = True, remove_duplicate: bool = True
    ) -> Iterator[tuple[str, Parameter]]:
        """``(dotted_name, parameter)`` for every parameter (of this module only if
        ``recurse=False``), names prefixed with ``prefix + "."``. A parameter shared by
        several modules (tied weights) is listed once, under its first name, unless
        ``remove_duplicate=False``."""
        yield from self._named_members(
            lambda m: iter(m._parameters.items()), prefix, recurse, remove_duplicate
        )

    def parameters(self, recurse: bool = True) -> Iterator[Parameter]:
        """Every parameter, each once (of this module only if ``recurse=False``); what an
        optimizer takes."""
        for _, p in self.named_parameters(recurse=recurse):
            yield p

    def named_buffers(
        self, prefix: str = "", recurse: bool = True, remove_duplicate: bool = True
    ) -> Iterator[tuple[str, np.ndarray]]:
        """``(dotted_name, ndarray)`` for every buffer (``running_mean``, ...), with the
        arguments of `named_parameters`."""
        yield from self._named_members(
            lambda m: iter(m._buffers.items()), prefix, recurse, remove_duplicate
        )

    def buffers(self, recurse: bool = True) -> Iterator[np.ndarray]:
        """Every buffer (ndarray), each once (of this module only if ``recurse=False``)."""
        for _, b in self.named_buffers(recurse=recurse):
            yield b

    def get_submodule(self, target: str) -> Module:
        """The module at a dotted path, e.g. ``model.get_submodule("layer1.0.conv2")``
        (``""`` is self). Raises an AttributeError naming the part of the path that is
        missing or is not a Module, as PyTorch."""
        return self._submodule(target, f"get_submodule({target!r})")

    def _submodule(self, target: str, where: str) -> Module:
        if not isinstance(target, str):
            raise TypeError(
                f"{where.split('(')[0]}: target must be a dotted path string, got {target!r} "
                f"({type(target).__name__})"
            )
        mod: Module = self
        for part in target.split(".") if target else []:
            child = mod._modules.get(part) if part in mod._modules else getattr(mod, part, _MISSING)
            if child is _MISSING:
                raise AttributeError(f"{type(mod).__name__} has no attribute {part!r} ({where})")
            if not isinstance(child, Module):
                raise AttributeError(
                    f"{part!r} is not an nn.Module but {type(child).__name__} ({where})"
                )
            mod = child
        return mod

    def _get_attribute(self, target: str, what: str) -> tuple[Module, str, Any]:
        where = f"get_{what}({target!r})"
        if not isinstance(target, str):
            raise TypeError(
                f"get_{what}: target must be a dotted path string, got {target!r} "
                f"({type(target).__name__})"
            )
        path, _, name = target.rpartition(".")
        mod = self._submodule(path, where)
        value = getattr(mod, name, _MISSING)
        if value is _MISSING:
            raise AttributeError(f"{type(mod).__name__} has no attribute {name!r} ({where})")
        return mod, name, value

    def get_parameter(self, target: str) -> Parameter:
        """The parameter at a dotted path, e.g. ``model.get_parameter("layer1.0.conv2.weight")``.
        Raises an AttributeError if the path is missing or is not an ``nn.Parameter``."""
        _, name, value = self._get_attribute(target, "parameter")
        if not isinstance(value, Parameter):
            raise AttributeError(
                f"{name!r} is not an nn.Parameter but {type(value).__name__} "
                f"(get_parameter({target!r}))"
            )
        return value

    def get_buffer(self, target: str) -> np.ndarray:
        """The buffer (ndarray) at a dotted path, e.g. ``model.get_buffer("bn1.running_mean")``.
        Raises an AttributeError if the path is missing or is not a buffer."""
        mod, name, value = self._get_attribute(target, "buffer")
        if name not in mod._buffers:
            raise AttributeError(f"{name!r} is not a buffer (get_buffer({target!r}))")
        return value

    # -- mode and gradients ---------------------------------------------------------------

    def train(self, mode: bool = True) -> Module:
        """Training mode (batchnorm uses batch statistics). Returns self."""
        for m in self.modules():
            object.__setattr__(m, "training", mode)
        return self

    def eval(self) -> Module:
        """Evaluation mode (batchnorm uses running statistics). Returns self."""
        return self.train(False)

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Clear the ``.grad`` of every parameter: set it to None (the default, as in
        PyTorch 2), or with ``set_to_none=False`` fill the existing arrays with zeros in
        place (parameters without a gradient keep None)."""
        for p in self.parameters():
            if p.grad is None:
                continue
            if set_to_none:
                p.grad = None
            elif p.grad.flags.writeable:
                p.grad[...] = 0
            else:
                p.grad = np.zeros_like(p.grad)

    def requires_grad_(self, requires_grad: bool = True) -> Module:
        """Freeze or unfreeze every parameter. Returns self."""
        for p in self.parameters():
            p.requires_grad = requires_grad
        return self

    # -- state ----------------------------------------------------------------------------

    def state_dict(self, *, prefix: str = "", keep_vars: bool = False) -> OrderedDict[str, Any]:
        """Copies of every parameter and buffer, keyed by dotted name (PyTorch's keys), each
        key after ``prefix``; ``keep_vars=True`` gives the live objects instead (the
        Parameters and buffer arrays themselves, as torch gives its tensors)."""
        if not isinstance(prefix, str):
            raise TypeError(f"state_dict: prefix must be a string, got {prefix!r}")
        targets = self._state_targets().items()
        if keep_vars:
            return OrderedDict((prefix + key, v) for key, (_, _, v) in targets)
        return OrderedDict(
            (prefix + key, np.array(v.data if isinstance(v, Tensor) else v, copy=True))
            for key, (_, _, v) in targets
        )

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
                autograd.bump_version(current.data)  # as torch's copy_: a saved copy is stale
            elif isinstance(current, np.ndarray) and current.ndim > 0:
                current[...] = value
                autograd.bump_version(current)
            else:  # 0-d buffer (num_batches_tracked): replace, keeping the dtype
                mod._buffers[name] = np.array(value, dtype=np.asarray(current).dtype)
                object.__setattr__(mod, name, mod._buffers[name])
        return _IncompatibleKeys(missing, unexpected)

    def _state_targets(self) -> OrderedDict[str, tuple[Module, str, Any]]:
        """key -> (module, name, parameter or buffer): PyTorch's state-dict keys, a module
        or parameter shared by two parents under both names (as torch's state_dict)."""
        out: OrderedDict[str, tuple[Module, str, Any]] = OrderedDict()
        for mname, mod in self.named_modules(remove_duplicate=False):
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
        """This module's settings as shown by ``repr`` (one line, or several), e.g.
        ``"p=0.5, inplace=False"``; override in layers (PyTorch's hook of the same name)."""
        return ""

    def __repr__(self) -> str:
        """PyTorch's layout: ``Name(extra)`` for a leaf; with children, the lines of
        `extra_repr` and then ``(name): child`` each on its own line, indented."""
        extra = self.extra_repr()
        extra_lines = extra.split("\n") if extra else []
        child_lines = [
            f"({name}): " + repr(child).replace("\n", "\n  ")
            for name, child in self._modules.items()
        ]
        lines = extra_lines + child_lines
        body = ""
        if len(extra_lines) == 1 and not child_lines:
            body = extra_lines[0]
        elif lines:
            body = "\n  " + "\n  ".join(lines) + "\n"
        return f"{type(self).__name__}({body})"


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


# ---------------------------------------------------------------------------------------
# Hooks
# ---------------------------------------------------------------------------------------

_MISSING = object()


class _Hook:
    """A registered hook and how it is called (its identity is what a handle removes)."""

    __slots__ = ("fn", "with_kwargs")

    def __init__(self, fn: Callable[..., Any], with_kwargs: bool) -> None:
        self.fn, self.with_kwargs = fn, with_kwargs


class _ModuleHookHandle(RemovableHandle):
    """What the ``register_*_hook`` methods return: ``remove()`` unregisters the hook
    (a second call does nothing); also a context manager removing it on exit."""

    def __enter__(self) -> _ModuleHookHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()


class _HookResultError(ValueError, RuntimeError):
    """A hook returned something of the wrong form (a ValueError for minires' rule on bad
    values, a RuntimeError as in PyTorch)."""


def _hook_name(fn: Any) -> str:
    return repr(getattr(fn, "__qualname__", type(fn).__name__))


class BackwardHookFunction(autograd.Function):
    """The identity, recorded in the graph: the single input (or output) of a call of a
    module with full backward hooks passes through it, so the gradient arriving at its
    node is exactly the gradient w.r.t. that input (this module's use of it) or output,
    before it is passed on. As PyTorch's op of the same name."""

    @staticmethod
    def forward(ctx: autograd.Context, x: np.ndarray) -> np.ndarray:
        return x

    @staticmethod
    def backward(ctx: autograd.Context, grad: np.ndarray) -> np.ndarray:
        return grad


class _HookGather(autograd.Function):
    """Several tensors as one node, for a call with several inputs (or outputs): the
    output is a placeholder of their total size (a zero-stride view of one zero: nothing
    is copied) that `_HookScatter` takes apart again. Its node receives the gradients of
    all of them at once, raveled and concatenated, zeros for those not used (as
    PyTorch's multi-output BackwardHookFunction), before any is passed on."""

    @staticmethod
    def forward(ctx: autograd.Context, *xs: np.ndarray) -> np.ndarray:
        ctx.shapes = [x.shape for x in xs]
        total = sum(x.size for x in xs)
        return np.broadcast_to(np.zeros((), np.result_type(*xs)), (total,))

    @staticmethod
    def backward(ctx: autograd.Context, grad: np.ndarray) -> tuple[np.ndarray, ...]:
        return tuple(_split(grad, ctx.shapes))


class _HookScatter(autograd.Function):
    """The tensor at ``start`` of a `_HookGather` (forward: the original array itself);
    backward puts its gradient at that place of a zero gradient of the gathered size."""

    @staticmethod
    def forward(
        ctx: autograd.Context, gathered: np.ndarray, x: np.ndarray, start: int
    ) -> np.ndarray:
        ctx.total, ctx.start = gathered.size, start
        return x

    @staticmethod
    def backward(ctx: autograd.Context, grad: np.ndarray) -> tuple[np.ndarray, None, None]:
        full = np.zeros(ctx.total, grad.dtype)
        full[ctx.start : ctx.start + grad.size] = grad.ravel()
        return full, None, None


def _split(flat: np.ndarray, shapes: list[tuple[int, ...]]) -> list[np.ndarray]:
    """The pieces of a raveled concatenation, with their shapes (views)."""
    out, start = [], 0
    for shape in shapes:
        n = int(np.prod(shape, dtype=np.int64))
        out.append(flat[start : start + n].reshape(shape))
        start += n
    return out


class _BackwardHookCall:
    """One call's bookkeeping for `Module.register_full_backward_hook` (PyTorch's
    ``torch.utils.hooks.BackwardHook``).

    The inputs that require grad go through one collector node (`BackwardHookFunction`
    for one tensor, `_HookGather` + `_HookScatter` for several), and so do the outputs.
    In backward the outputs' collector runs first (it is upstream of everything the
    module computed) and stores ``grad_output``; the inputs' collector runs once every
    gradient w.r.t. the inputs is summed, before any is passed on, so the user hooks run
    there and what they return replaces the inputs' gradients. Only gradients (ndarrays),
    shapes and the module are held, never a tensor of the graph.
    """

    def __init__(self, module: Module, hooks: list[Callable[..., Any]]) -> None:
        self.module, self.hooks = module, hooks
        self.n_inputs = self.n_outputs = 0
        self.input_index: list[int] = []  # positions of the collected inputs
        self.input_meta: list[tuple[tuple[int, ...], np.dtype]] = []
        self.output_index: list[int] = []
        self.output_shapes: list[tuple[int, ...]] = []
        self.outputs_used: set[int] = set()  # outputs whose gradient arrived (several)
        self.grad_outputs: tuple[np.ndarray | None, ...] | None = None

    def _collect(
        self,
        values: list[Any],
        index: list[int],
        collector_hook: Callable[[np.ndarray], np.ndarray | None],
        used_hook: Callable[[int], Callable[[np.ndarray], None]] | None = None,
    ) -> list[Any]:
        """Route ``values[i]`` for i in ``index`` through one collector node whose tensor
        hook is ``collector_hook`` (and, with several, ``used_hook(i)`` on the node of
        each); returns the new values."""
        new = list(values)
        if len(index) == 1:
            t = BackwardHookFunction.apply(values[index[0]])
            t.register_hook(collector_hook)
            new[index[0]] = t
            return new
        gathered = _HookGather.apply(*(values[i] for i in index))
        gathered.register_hook(collector_hook)
        start = 0
        for i in index:
            t = _HookScatter.apply(gathered, values[i].data, start)
            if used_hook is not None:
                t.register_hook(used_hook(i))
            start += values[i].data.size
            new[i] = t
        return new

    def wrap_inputs(self, args: tuple) -> tuple:
        self.n_inputs = len(args)
        self.input_index = [
            i for i, a in enumerate(args) if isinstance(a, Tensor) and a.requires_grad
        ]
        if not self.input_index:
            return args
        self.input_meta = [(args[i].shape, args[i].dtype) for i in self.input_index]
        new = self._collect(list(args), self.input_index, self._inputs_hook)
        return tuple(new) if type(args) is tuple else type(args)(*new)

    def wrap_outputs(self, result: Any) -> Any:
        single = isinstance(result, Tensor)
        if not single and not isinstance(result, tuple):
            warnings.warn(
                "For backward hooks to be called, module output should be a Tensor or a "
                f"tuple of Tensors but received {type(result)}",
                stacklevel=3,
            )
            return result
        outs = [result] if single else list(result)
        self.n_outputs = len(outs)
        self.output_index = [
            i for i, o in enumerate(outs) if isinstance(o, Tensor) and o.requires_grad
        ]
        if not self.output_index or not autograd.is_grad_enabled():
            return result
        self.output_shapes = [outs[i].shape for i in self.output_index]
        new = self._collect(outs, self.output_index, self._outputs_hook, self._output_used)
        if single:
            return new[0]
        return tuple(new) if type(result) is tuple else type(result)(*new)

    def _output_used(self, i: int) -> Callable[[np.ndarray], None]:
        def hook(grad: np.ndarray) -> None:
            self.outputs_used.add(i)

        return hook

    def _outputs_hook(self, grad: np.ndarray) -> None:
        if len(self.output_index) == 1:
            pieces: list[np.ndarray | None] = [grad]
        else:  # zeros stand for outputs nothing used: PyTorch hands None for those
            pieces = [
                g if i in self.outputs_used else None
                for i, g in zip(self.output_index, _split(grad, self.output_shapes))
            ]
            self.outputs_used = set()
        grad_output: list[np.ndarray | None] = [None] * self.n_outputs
        for i, g in zip(self.output_index, pieces):
            grad_output[i] = g
        self.grad_outputs = tuple(grad_output)
        if self.input_index:
            return None  # the hooks run when the inputs' gradients are in
        # no input requires grad: nothing reaches an input, so (as PyTorch) they run now
        warnings.warn(
            "Full backward hook is firing when gradients are computed with respect to "
            "module outputs since no inputs require gradients",
            stacklevel=5,  # the line calling .backward()
        )
        grad_input = (None,) * self.n_inputs
        grad_output_t, self.grad_outputs = self.grad_outputs, None
        for h in self.hooks:
            res = h(self.module, grad_input, grad_output_t)
            if res is not None and not (isinstance(res, tuple) and all(r is None for r in res)):
                raise _HookResultError(
                    f"backward hook {_hook_name(h)} of {type(self.module).__name__}: no "
                    "input of this call requires grad, so the hook must return None (or "
                    f"None for every gradient), got {type(res).__name__}"
                )
        return None

    def _inputs_hook(self, grad: np.ndarray) -> np.ndarray | None:
        if self.grad_outputs is None:
            return None  # reached the inputs without passing through the outputs
        shapes = [shape for shape, _ in self.input_meta]
        pieces = [grad] if len(shapes) == 1 else _split(grad, shapes)
        grad_input: list[np.ndarray | None] = [None] * self.n_inputs
        for i, g, (_, dtype) in zip(self.input_index, pieces, self.input_meta):
            grad_input[i] = g.astype(dtype, copy=False)
        given = tuple(grad_input)
        grad_output, self.grad_outputs = self.grad_outputs, None  # ready for another backward
        res = given
        for h in self.hooks:
            out = h(self.module, res, grad_output)
            if out is None:
                continue
            if not isinstance(out, tuple | list) or len(out) != len(res):
                got = len(out) if isinstance(out, tuple | list) else type(out).__name__
                raise _HookResultError(
                    f"backward hook {_hook_name(h)} of {type(self.module).__name__} returned "
                    f"an invalid number of grad_input: expected a tuple of {len(res)}, got {got}"
                )
            res = tuple(out)
        if res is given:
            return None
        new = []
        for i, (shape, dtype) in zip(self.input_index, self.input_meta):
            if res[i] is None:  # PyTorch: None stops the gradient
                new.append(np.zeros(shape, dtype))
            else:
                where = (
                    f"grad_input[{i}] returned by a backward hook of {type(self.module).__name__}"
                )
                new.append(autograd.as_gradient(res[i], shape, dtype, where))
        if len(new) == 1:
            return new[0]
        return np.concatenate([g.ravel().astype(grad.dtype, copy=False) for g in new])
