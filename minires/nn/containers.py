"""Containers that register the modules they hold: `Sequential`, `ModuleList`, `ModuleDict`.

A Module only sees sub-modules assigned as attributes; modules kept in a plain Python
list or dict are invisible to ``parameters()``, ``state_dict()``, ``train()`` and
``to()``. These containers make them visible under PyTorch's names (``paths.0.conv1``).
"""

from __future__ import annotations

import operator
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from minires.nn.module import Module


def _integer(container: str, i: Any) -> int:
    """``i`` as an int (any integer type, not a bool), else a TypeError."""
    if isinstance(i, bool) or not hasattr(i, "__index__"):
        raise TypeError(f"{container} indices must be integers or slices, not {type(i).__name__}")
    return operator.index(i)


def _position(container: str, i: Any, n: int) -> int:
    """An index into n entries (negative from the end) as 0 .. n-1."""
    i = _integer(container, i)
    if not -n <= i < n:
        raise IndexError(f"{container} index {i} is out of range for length {n}")
    return i % n


def _hold(owner: Module, items: list[tuple[str, Module]]) -> None:
    """Make `owner`'s children exactly `items` ((name, module) pairs), in order; when
    every name is a number they are numbered again from 0 (as PyTorch's containers do
    after a deletion or an insertion)."""
    for name in list(owner._modules):
        delattr(owner, name)
    numbered = all(k.isdigit() for k, _ in items)
    for j, (k, m) in enumerate(items):
        owner.add_module(str(j) if numbered else k, m)


def _sequential(other: Any, op: str) -> Sequential:
    if not isinstance(other, Sequential):
        raise ValueError(
            f"Sequential {op}: supports only another Sequential, got {type(other).__name__}"
        )
    return other


def _times(times: Any) -> int:
    if isinstance(times, bool) or not isinstance(times, int):
        raise TypeError(
            f"unsupported operand type(s) for *: 'Sequential' and '{type(times).__name__}'"
        )
    if times <= 0:
        raise ValueError(f"Sequential *: non-positive multiplication factor {times}")
    return times


def _check_module(container: str, key: Any, value: Any) -> Module:
    if not isinstance(value, Module):
        raise TypeError(
            f"{container} holds Modules only; entry {key!r} is a {type(value).__name__}"
        )
    return value


class Sequential(Module):
    """Runs its modules in order; children are named ``0, 1, 2, ...`` (or by an
    OrderedDict's keys)."""

    def __init__(self, *modules: Module | OrderedDict):
        super().__init__()
        if len(modules) == 1 and isinstance(modules[0], OrderedDict):
            for name, m in modules[0].items():
                self.add_module(name, _check_module("Sequential", name, m))
        else:
            for i, m in enumerate(modules):
                self.add_module(str(i), _check_module("Sequential", i, m))

    def forward(self, x: Any) -> Any:
        for m in self._modules.values():
            x = m(x)
        return x

    def __getitem__(self, i: int | slice) -> Module:
        """One module, or a Sequential of a slice keeping the children's names (as in
        PyTorch: ``s[1:]`` of numbered children holds ``1``, ``2``, ...)."""
        items = list(self._modules.items())
        if isinstance(i, slice):
            return Sequential(OrderedDict(items[i]))
        return items[_position("Sequential", i, len(items))][1]

    def __setitem__(self, i: int, module: Module) -> None:
        name = list(self._modules)[_position("Sequential", i, len(self))]
        self.add_module(name, _check_module("Sequential", i, module))

    def __delitem__(self, i: int | slice) -> None:
        """Remove an entry (or a slice); numbered children are numbered again from 0."""
        items = list(self._modules.items())
        del items[i if isinstance(i, slice) else _position("Sequential", i, len(items))]
        _hold(self, items)

    def insert(self, index: int, module: Module) -> Sequential:
        """Insert a module before position ``index`` (children renumbered). Returns self."""
        items = list(self._modules.items())
        n, index = len(items), _integer("Sequential.insert", index)
        if not -n <= index <= n:
            raise IndexError(f"Sequential.insert: index {index} is out of range for length {n}")
        items.insert(index, (str(n), _check_module("Sequential", index, module)))
        _hold(self, items)
        return self

    def extend(self, modules: Iterable[Module]) -> Sequential:
        """Append each module of ``modules``. Returns self."""
        for m in modules:
            self.append(m)
        return self

    def pop(self, index: int = -1) -> Module:
        """Remove and return the module at ``index``."""
        module = self[index]
        del self[index]
        return module

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self) -> Iterator[Module]:
        return iter(self._modules.values())

    def append(self, module: Module) -> Sequential:
        """Add a module at the end. Returns self."""
        self.add_module(str(len(self)), _check_module("Sequential", len(self), module))
        return self

    # torch's operators: the same module objects (not copies), numbered from 0

    def __add__(self, other: Sequential) -> Sequential:
        """A new Sequential running self's modules, then other's."""
        return Sequential(*self, *_sequential(other, "+"))

    def __iadd__(self, other: Sequential) -> Sequential:
        """Append other's modules. Returns self."""
        return self.extend(list(_sequential(other, "+=")))

    def __mul__(self, times: int) -> Sequential:
        """A new Sequential running self's modules ``times`` times over (shared, as torch:
        ``s * 2`` applies the same layers twice)."""
        return Sequential(*(list(self) * _times(times)))

    __rmul__ = __mul__

    def __imul__(self, times: int) -> Sequential:
        """Repeat the modules ``times`` times over, in place. Returns self."""
        return self.extend(list(self) * (_times(times) - 1))


class ModuleList(Module):
    """A list of Modules, registered as children ``0, 1, 2, ...`` (``torch.nn.ModuleList``).

    It has no ``forward``: the owner decides how to call its entries, e.g. the C paths of
    a ResNeXt block summed, ``sum(p(x) for p in self.paths)``.
    """

    def __init__(self, modules: Iterable[Module] | None = None):
        super().__init__()
        if modules is not None:
            self.extend(modules)

    def _index(self, i: int) -> int:
        return _position("ModuleList", i, len(self))

    def __getitem__(self, i: int | slice) -> Module | ModuleList:
        if isinstance(i, slice):
            return ModuleList(list(self._modules.values())[i])
        return self._modules[str(self._index(i))]

    def __setitem__(self, i: int, module: Module) -> None:
        self.add_module(str(self._index(i)), _check_module("ModuleList", i, module))

    def __delitem__(self, i: int | slice) -> None:
        items = list(self._modules.items())
        del items[i if isinstance(i, slice) else self._index(i)]
        _hold(self, items)

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self) -> Iterator[Module]:
        return iter(self._modules.values())

    def append(self, module: Module) -> ModuleList:
        """Add a module at the end. Returns self."""
        self.add_module(str(len(self)), _check_module("ModuleList", len(self), module))
        return self

    def extend(self, modules: Iterable[Module]) -> ModuleList:
        """Append every module of ``modules``. Returns self."""
        if isinstance(modules, Module) and not isinstance(modules, ModuleList | Sequential):
            raise TypeError("ModuleList.extend takes an iterable of Modules, not one Module")
        for m in list(modules):
            self.append(m)
        return self

    def insert(self, index: int, module: Module) -> None:
        """Insert ``module`` before ``index``."""
        items = list(self._modules.items())
        items.insert(index, (str(len(items)), _check_module("ModuleList", index, module)))
        _hold(self, items)

    def pop(self, index: int | slice = -1) -> Module | ModuleList:
        """Remove and return the module at ``index`` (the entries after it renumbered)."""
        module = self[index]
        del self[index]
        return module

    def __add__(self, other: Iterable[Module]) -> ModuleList:
        """A new ModuleList of self's modules, then other's (the same objects)."""
        return ModuleList([*self, *other])

    def __iadd__(self, other: Iterable[Module]) -> ModuleList:
        return self.extend(other)

    def __repr__(self) -> str:
        """torch's compressed form: a run of entries that print the same shows once, as
        ``(0-2): 3 x Linear(...)`` (a ResNeXt block's 32 paths take 1 line, not 32)."""
        runs: list[list[Any]] = []  # [first index, last index, repr]
        for i, m in enumerate(self):
            text = repr(m)
            if runs and runs[-1][2] == text:
                runs[-1][1] = i
            else:
                runs.append([i, i, text])
        if not runs:
            return f"{type(self).__name__}()"
        lines = [
            (f"({a}): " if a == b else f"({a}-{b}): {b - a + 1} x ") + text.replace("\n", "\n  ")
            for a, b, text in runs
        ]
        return f"{type(self).__name__}(\n  " + "\n  ".join(lines) + "\n)"


class ModuleDict(Module):
    """An ordered dict of str -> Module, registered as children (``torch.nn.ModuleDict``)."""

    def __init__(self, modules: Mapping[str, Module] | Iterable[tuple[str, Module]] | None = None):
        super().__init__()
        if modules is not None:
            self.update(modules)

    def _check_key(self, key: Any) -> str:
        if not isinstance(key, str):  # a TypeError, as torch
            raise TypeError(f"ModuleDict keys are strings, got {type(key).__name__} {key!r}")
        if not key or "." in key:
            raise KeyError(f"ModuleDict keys are non-empty strings without '.', got {key!r}")
        return key

    def __getitem__(self, key: str) -> Module:
        return self._modules[key]

    def __setitem__(self, key: str, module: Module) -> None:
        self.add_module(self._check_key(key), _check_module("ModuleDict", key, module))

    def __delitem__(self, key: str) -> None:
        del self._modules[key]
        object.__delattr__(self, key)

    def __contains__(self, key: object) -> bool:
        return key in self._modules

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self) -> Iterator[str]:
        return iter(self._modules)

    def keys(self) -> Iterable[str]:
        """The names, in insertion order."""
        return self._modules.keys()

    def values(self) -> Iterable[Module]:
        """The modules, in insertion order."""
        return self._modules.values()

    def items(self) -> Iterable[tuple[str, Module]]:
        """(name, module) pairs, in insertion order."""
        return self._modules.items()

    def update(self, modules: Mapping[str, Module] | Iterable[tuple[str, Module]]) -> None:
        """Add or replace entries from a mapping (a ModuleDict too) or from (name, module)
        pairs."""
        pairs = modules.items() if isinstance(modules, Mapping | ModuleDict) else modules
        for key, m in pairs:
            self[key] = m

    def clear(self) -> None:
        """Remove every entry."""
        for key in list(self._modules):
            del self[key]

    def pop(self, key: str) -> Module:
        """Remove ``key`` and return its module."""
        m = self._modules[key]
        del self[key]
        return m
