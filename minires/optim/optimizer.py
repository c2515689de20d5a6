"""`Optimizer`: the base class of SGD and Adam — parameter groups, per-parameter state,
``zero_grad`` and ``state_dict`` / ``load_state_dict`` in PyTorch's layout.

An optimizer only ever touches ``p.data`` (in place) and reads ``p.grad``; it never builds
a graph. Subclasses implement `step`.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np

from minires.autograd import bump_version, enable_grad
from minires.tensor import Tensor


class _Required:
    """Sentinel for a hyper-parameter without a default (``lr`` of SGD)."""

    def __repr__(self) -> str:
        return "<required>"


required = _Required()

# hyper-parameters that are booleans
_FLAGS = ("nesterov", "maximize", "amsgrad", "decoupled_weight_decay")


def check_hyperparameters(owner: str, **values: Any) -> None:
    """Types of hyper-parameters, before any range check compares them: flags are bools,
    ``betas`` a pair of numbers, everything else one finite real number (not a bool).
    Raises TypeError/ValueError naming the optimizer, the setting and its value."""
    for name, value in values.items():
        if value is required:
            continue
        if name in _FLAGS:
            if not isinstance(value, bool | np.bool_):
                raise TypeError(f"{owner}: {name} must be True or False, got {value!r}")
            continue
        items = value if name == "betas" else (value,)
        if name == "betas" and (not isinstance(value, tuple | list) or len(value) != 2):
            raise TypeError(f"{owner}: betas must be a pair of numbers, got {value!r}")
        for v in items:
            if isinstance(v, bool | np.bool_) or not isinstance(v, int | float | np.number):
                raise TypeError(f"{owner}: {name} must be a number, got {value!r}")
            if not np.isfinite(v):
                raise ValueError(f"{owner}: {name} must be finite, got {value!r}")


def check_implementation_flags(
    owner: str,
    foreach: bool | None = None,
    fused: bool | None = None,
    capturable: bool = False,
    differentiable: bool = False,
) -> None:
    """torch's switches between implementations, accepted so that torch code runs.
    ``foreach`` and ``fused`` pick one of several implementations of the same update
    (minires has one): ignored. ``capturable`` (CUDA graphs) and ``differentiable``
    (autograd through ``step``) are not supported: True raises a ValueError."""
    for name, value in (("foreach", foreach), ("fused", fused)):
        if value is not None and not isinstance(value, bool | np.bool_):
            raise TypeError(f"{owner}: {name} must be None, True or False, got {value!r}")
    for name, value in (("capturable", capturable), ("differentiable", differentiable)):
        if not isinstance(value, bool | np.bool_):
            raise TypeError(f"{owner}: {name} must be True or False, got {value!r}")
        if value:
            raise ValueError(
                f"{owner}: {name}=True is not supported (minires updates parameters on the "
                "CPU, outside autograd)"
            )


def run_closure(closure: Callable[[], Any] | None) -> Any:
    """``step(closure)``'s first part, as torch: call ``closure`` (which recomputes the
    loss and the gradients) with gradients enabled, and return its value (None without)."""
    if closure is None:
        return None
    with enable_grad():
        return closure()


def grad_of(p: Tensor, owner: str) -> np.ndarray:
    """``p.grad`` as a float array of ``p``'s shape (a Tensor assigned to ``.grad`` gives
    its array). torch checks a gradient when it is assigned; minires' ``.grad`` is a plain
    attribute, so the check is here: a gradient of another shape would broadcast into a
    wrong update, and an integer one is refused as torch refuses it."""
    g = p.grad.data if isinstance(p.grad, Tensor) else p.grad
    if not isinstance(g, np.ndarray) or g.dtype.kind != "f":
        what = f"an array of dtype {g.dtype}" if isinstance(g, np.ndarray) else type(g).__name__
        raise TypeError(f"{owner}: a parameter's .grad must be a float array, got {what}")
    if g.shape != p.shape:
        raise ValueError(
            f"{owner}: a parameter of shape {tuple(p.shape)} has a .grad of shape {g.shape}"
        )
    return g


class ParamState(dict):
    """``Optimizer.state``: each parameter's buffers, keyed by ``id(param)``. As in torch,
    ``state[p]`` takes the parameter itself too, and gives (and keeps) an empty dict for a
    parameter without state yet, as torch's ``defaultdict(dict)`` does."""

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, Tensor):
            return super().setdefault(id(key), {})
        return super().__getitem__(key)

    def __setitem__(self, key: Any, value: Any) -> None:
        super().__setitem__(_state_key(key), value)

    def __delitem__(self, key: Any) -> None:
        super().__delitem__(_state_key(key))

    def __contains__(self, key: Any) -> bool:
        return super().__contains__(_state_key(key))

    def get(self, key: Any, default: Any = None) -> Any:
        return super().get(_state_key(key), default)

    def setdefault(self, key: Any, default: Any = None) -> Any:
        return super().setdefault(_state_key(key), default)

    def pop(self, key: Any, *default: Any) -> Any:
        return super().pop(_state_key(key), *default)


def _state_key(key: Any) -> Any:
    return id(key) if isinstance(key, Tensor) else key


class Optimizer:
    """Base class: holds ``param_groups`` (list of dicts with a ``"params"`` list and the
    hyper-parameters) and ``state`` (per-parameter buffers, keyed by ``id(param)``;
    ``state[param]`` works too, as in torch).

    Args:
        params: an iterable of Parameters, of ``(name, Parameter)`` pairs
            (``model.named_parameters()``), or of dicts ``{"params": [...], "lr": ...}``
            (parameter groups, each overriding some defaults).
        defaults: the hyper-parameters of every group that does not override them.
    """

    def __init__(self, params: Iterable[Any], defaults: dict[str, Any]):
        self.defaults = dict(defaults)
        self.state: dict[int, dict[str, Any]] = ParamState()
        self.param_groups: list[dict[str, Any]] = []
        if isinstance(params, Tensor | dict):  # list() would take a tensor's rows
            raise TypeError(
                f"{type(self).__name__}: params must be an iterable of Tensors or of dicts "
                f"(parameter groups), got a {type(params).__name__}; wrap it in a list"
            )
        params = list(params)
        if not params:
            raise ValueError(f"{type(self).__name__} got an empty parameter list")
        if not isinstance(params[0], dict):
            params = [{"params": params}]
        for group in params:
            self.add_param_group(group)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a group of parameters with its own hyper-parameters (e.g. no weight decay).

        ``param_group["params"]`` is a Tensor or an ordered collection of Tensors or of
        ``(name, Tensor)`` pairs (the names go to ``param_group["param_names"]``; all groups
        have names or none has). As in torch, the dict itself becomes the group, with the
        defaults filled in, so later changes to it (``group["lr"] = ...``) take effect.
        """
        owner = type(self).__name__
        if not isinstance(param_group, dict) or "params" not in param_group:
            raise TypeError(f"{owner}: a parameter group must be a dict with a 'params' entry")
        ps = param_group["params"]
        if isinstance(ps, set | frozenset):  # as torch: a set's order changes between runs
            raise TypeError(
                f"{owner}: a group's parameters must be an ordered collection (a list), not a "
                "set, whose order changes between runs"
            )
        ps = [ps] if isinstance(ps, Tensor) else list(ps)
        named = any(isinstance(p, tuple) for p in ps)  # from named_parameters()
        if named and not all(isinstance(p, tuple) for p in ps):
            raise ValueError(f"{owner}: give every parameter of a group a name, or none")
        if named and not all(len(p) == 2 and isinstance(p[0], str) for p in ps):
            raise TypeError(f"{owner}: named parameters must be (str, Tensor) pairs")
        params = [p[1] for p in ps] if named else ps
        for p in params:
            if not isinstance(p, Tensor):
                raise TypeError(
                    f"{owner} can only optimize Tensors/Parameters, got {type(p).__name__}"
                )
            if p.grad_fn is not None:  # (frozen leaves are fine: step skips a None grad)
                raise ValueError(f"{owner} can't optimize a non-leaf tensor")
            if p.data.dtype.kind != "f":  # (torch fails at the first gradient instead)
                raise TypeError(
                    f"{owner} can only optimize floating-point tensors, got one of dtype "
                    f"{p.data.dtype}"
                )
        if len({id(p) for p in params}) != len(params):
            # torch warns that this will become an error; step would update it twice
            raise ValueError(f"{owner}: a parameter appears twice in one parameter group")
        check_hyperparameters(owner, **{k: v for k, v in param_group.items() if k in self.defaults})
        for name, default in self.defaults.items():
            if default is required and name not in param_group:
                raise ValueError(f"{owner}: parameter group needs a value for {name!r}")
        if any(("param_names" in g) != named for g in self.param_groups):
            raise ValueError(
                f"{owner}: all parameter groups must have parameter names, or none (as "
                "model.named_parameters() gives them)"
            )
        seen = {id(p) for g in self.param_groups for p in g["params"]}
        if any(id(p) in seen for p in params):
            raise ValueError("some parameters appear in more than one parameter group")
        param_group["params"] = params  # (only now: a refused group is left unchanged)
        if named:
            param_group["param_names"] = [p[0] for p in ps]
        for name, default in self.defaults.items():
            param_group.setdefault(name, default)
        self.param_groups.append(param_group)

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Clear every parameter's ``.grad`` (to None, or to zeros in place)."""
        for group in self.param_groups:
            for p in group["params"]:
                if set_to_none:
                    p.grad = None
                elif p.grad is not None:
                    p.grad[...] = 0

    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """Update every parameter that has a gradient (`_update_group`, the subclass's
        rule); with a ``closure``, call it first (`run_closure`) and return its loss."""
        loss = run_closure(closure)
        grads = self._gradients()
        with np.errstate(all="ignore"):  # NaN / inf gradients propagate silently, as in torch
            for group, pairs in zip(self.param_groups, grads):
                self._update_group(group, pairs)
                for p, _ in pairs:  # written in place, as torch: an op that saved p refuses it
                    bump_version(p.data)
        return loss

    def _update_group(
        self, group: dict[str, Any], pairs: list[tuple[Tensor, np.ndarray]]
    ) -> None:  # pragma: no cover
        """Update the parameters of one group in place from their (checked) gradients."""
        raise NotImplementedError

    def _gradients(self) -> list[list[tuple[Tensor, np.ndarray]]]:
        """Each group's (parameter, gradient) pairs, skipping a None ``.grad`` (as torch);
        all checked (`grad_of`) before `step` changes any parameter."""
        owner = type(self).__name__
        return [
            [(p, grad_of(p, owner)) for p in group["params"] if p.grad is not None]
            for group in self.param_groups
        ]

    # -- state ----------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """``{"state": {"0": {...}, ...}, "param_groups": [{..., "params": [0, 1, ...]}]}``.

        PyTorch's layout, except that the state keys (parameter indices in group order) are
        strings so that `minires.save` can store the dict. Arrays are copies.
        """
        index: dict[int, int] = {}
        groups = []
        for group in self.param_groups:
            packed = {k: v for k, v in group.items() if k != "params"}
            ids = []
            for p in group["params"]:
                index.setdefault(id(p), len(index))
                ids.append(index[id(p)])
            packed["params"] = ids
            groups.append(packed)
        state = {}
        for pid, i in index.items():
            if pid in self.state:
                state[str(i)] = {
                    k: (v.copy() if isinstance(v, np.ndarray) else v)
                    for k, v in self.state[pid].items()
                }
        return {"state": state, "param_groups": groups}

    def check_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Check, changing nothing, that `state_dict` would load into this optimizer: its
        structure, one group per group of ours with as many parameters, settings of the
        right types and ranges (finite; lr, momentum, weight decay, eps >= 0; betas in
        [0, 1)), and per parameter the buffers its `step` keeps, of the parameter's shape
        and a real dtype. Raises a ValueError naming the group or parameter, the key and
        the value at fault. (Buffers may hold NaN or inf, as a model's weights may.)"""
        self._checked_pairs(state_dict)

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Restore hyper-parameters and buffers from `state_dict` (ours, or a torch
        optimizer's of the same kind: integer keys and tensors are accepted). Everything
        is checked first (`check_state_dict`): a state of another shape (a crafted or
        corrupt file) is refused with a ValueError and leaves the optimizer unchanged."""
        pairs = self._checked_pairs(state_dict)
        state = {}
        for p, entry, kinds in pairs:
            state[id(p)] = {k: _loaded(v, p, kinds[k]) for k, v in entry.items()}
        settings = [
            {k: copy.deepcopy(_plain(v)) for k, v in theirs.items() if k != "params"}
            for theirs in state_dict["param_groups"]
        ]
        self.state = ParamState(state)
        for mine, theirs in zip(self.param_groups, settings):
            mine.update(theirs)  # (settings torch has and we don't are kept, unused)

    def _checked_pairs(
        self, state_dict: Mapping[str, Any]
    ) -> list[tuple[Tensor, Mapping[str, Any], dict[str, str]]]:
        """The checks of `check_state_dict`. Returns (parameter, its saved buffers, the
        kind of each buffer) in parameter order."""
        what = "optimizer state_dict"
        _check_state_dict(state_dict, self.param_groups)
        groups = state_dict["param_groups"]
        if len(groups) != len(self.param_groups):
            raise ValueError(
                f"{what}: loaded state has {len(groups)} parameter groups, this optimizer "
                f"has {len(self.param_groups)}"
            )
        index: dict[int, tuple[Tensor, Mapping[str, Any]]] = {}  # saved number -> ours
        for n, (mine, theirs) in enumerate(zip(self.param_groups, groups)):
            if len(mine["params"]) != len(theirs["params"]):
                raise ValueError(
                    f"{what}: loaded parameter group {n} has {len(theirs['params'])} "
                    f"parameters, this optimizer's has {len(mine['params'])}"
                )
            _check_settings(theirs, mine, f"{what}: param group {n}")
            for i, p in zip(theirs["params"], mine["params"]):
                if int(i) in index:
                    raise ValueError(f"{what}: parameter {i} is in 'param_groups' twice")
                index[int(i)] = (p, theirs)
        saved: dict[int, Mapping[str, Any]] = {}
        for key, entry in state_dict["state"].items():
            i = int(key)
            if i in saved:
                raise ValueError(f"{what}: 'state' has two entries for parameter {i}")
            if i not in index:  # a state no parameter would get: not this optimizer's
                raise ValueError(
                    f"{what}: 'state' has an entry for parameter {key!r}, which no param "
                    f"group lists (they list {sorted(index)})"
                )
            saved[i] = entry
        pairs = []
        for i, (p, group) in index.items():
            if i in saved:
                amsgrad = bool(_plain(group.get("amsgrad", False)))
                kinds = _check_buffers(self, saved[i], p, amsgrad, f"{what}: parameter {i}")
                pairs.append((p, saved[i], kinds))
        return pairs

    def __repr__(self) -> str:
        lines = [f"{type(self).__name__} ("]
        for i, group in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            for k in sorted(group):
                if k != "params":
                    lines.append(f"    {k}: {group[k]}")
        return "\n".join(lines) + "\n)"


def _to_numpy(v: Any) -> Any:
    if isinstance(v, Tensor):
        return v.data
    if hasattr(v, "detach") and hasattr(v, "numpy"):  # torch tensor, without importing torch
        return v.detach().cpu().numpy()
    return v


def _plain(v: Any) -> Any:
    """Numbers from JSON/npz round trips back to Python scalars; tuples stay tuples."""
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, np.ndarray) and v.ndim == 0:
        return v.item()
    if isinstance(v, list):
        return [_plain(x) for x in v]
    return v


def _check_state_dict(state_dict: Any, param_groups: list[dict[str, Any]]) -> None:
    """ValueError unless `state_dict` has an optimizer state's structure: "param_groups",
    a list of mappings each with a list of integer "params" and hyper-parameters of the
    types this optimizer's have; "state", a mapping from integer keys to mappings."""
    what = "optimizer state_dict"
    if not isinstance(state_dict, Mapping):
        raise ValueError(f"{what}: expected a mapping, got {type(state_dict).__name__}")
    for key in ("param_groups", "state"):
        if key not in state_dict:
            raise ValueError(f"{what}: no {key!r} entry (keys: {sorted(map(str, state_dict))})")
    groups, state = state_dict["param_groups"], state_dict["state"]
    if not isinstance(groups, list | tuple) or not all(isinstance(g, Mapping) for g in groups):
        raise ValueError(f"{what}: 'param_groups' must be a list of mappings")
    for n, group in enumerate(groups):
        ids = group.get("params")
        if not isinstance(ids, list | tuple) or not all(_is_int(i) for i in ids):
            raise ValueError(f"{what}: param group {n} has no list of integer 'params'")
        mine = param_groups[n] if n < len(param_groups) else {}
        for k, v in group.items():
            if k != "params" and k in mine and not _same_kind(_plain(v), mine[k]):
                raise ValueError(
                    f"{what}: param group {n}: {k!r} is {v!r}, expected a value like {mine[k]!r}"
                )
    if not isinstance(state, Mapping) or not all(isinstance(v, Mapping) for v in state.values()):
        raise ValueError(f"{what}: 'state' must map parameter numbers to mappings")
    bad = [k for k in state if not (_is_int(k) or (isinstance(k, str) and k.isdecimal()))]
    if bad:
        raise ValueError(f"{what}: 'state' keys must be parameter numbers, got {bad[0]!r}")


def _is_int(v: Any) -> bool:
    return isinstance(v, int | np.integer) and not isinstance(v, bool)


def _same_kind(v: Any, like: Any) -> bool:
    """A loaded hyper-parameter can replace `like`: a real number for a number, a bool
    for a bool, a sequence of numbers of the same length for a tuple (betas); anything
    for values of other types."""
    if isinstance(like, bool):
        return isinstance(v, bool | np.bool_)
    if isinstance(like, int | float):
        return isinstance(v, int | float | np.integer | np.floating) and not isinstance(v, bool)
    if isinstance(like, tuple | list):
        return (
            isinstance(v, tuple | list)
            and len(v) == len(like)
            and all(_same_kind(a, b) for a, b in zip(v, like))
        )
    return True


# Settings that are >= 0 in every built-in optimizer (their constructors refuse others).
_NON_NEGATIVE = ("lr", "initial_lr", "momentum", "weight_decay", "eps")


def _check_settings(theirs: Mapping[str, Any], mine: dict[str, Any], where: str) -> None:
    """The loaded settings of one group that this optimizer uses (`_check_state_dict`
    checked their types): finite numbers, within the constructors' ranges. A scheduler's
    ``initial_lr`` is checked even if this group has none yet (a scheduler built later
    would take it)."""
    for k, v in theirs.items():
        if k == "params" or (k not in mine and k != "initial_lr"):
            continue
        v = _plain(v)
        if k == "initial_lr" and not _same_kind(v, 0.0):
            raise ValueError(f"{where}: 'initial_lr' is {v!r}, expected a number")
        for x in v if isinstance(v, tuple | list) else (v,):
            if isinstance(x, bool | np.bool_) or not isinstance(x, int | float | np.number):
                continue  # (flags, and settings of other kinds, have no range)
            if not _is_finite(x):
                raise ValueError(f"{where}: {k!r} is {v!r}, expected a finite number")
            if k in _NON_NEGATIVE and x < 0:
                raise ValueError(f"{where}: {k!r} is {v!r}, expected a number >= 0")
            if k == "betas" and not 0 <= x < 1:
                raise ValueError(f"{where}: 'betas' is {v!r}, expected two numbers in [0, 1)")


def _is_finite(x: Any) -> bool:
    """A real number is finite as a float (an int too large for one is not)."""
    try:
        return bool(np.isfinite(float(x)))
    except OverflowError:
        return False


def _buffer_kinds(opt: Optimizer, amsgrad: bool) -> tuple[dict[str, str], tuple[str, ...]] | None:
    """What the built-in optimizers keep per parameter: buffer name -> "buffer" (an array
    of the parameter's shape), "buffer?" (or None) or "count" (a number >= 0), and the
    names a non-empty entry needs (their `step` fails without them). None for other
    optimizers, whose entries are checked value by value."""
    from minires.optim.adam import Adam, AdamW  # (they import this module)
    from minires.optim.sgd import SGD

    if type(opt) is SGD:
        return {"momentum_buffer": "buffer?"}, ()
    if type(opt) in (Adam, AdamW):
        kinds = {"step": "count", "exp_avg": "buffer", "exp_avg_sq": "buffer",
                 "max_exp_avg_sq": "buffer"}  # fmt: skip
        return kinds, ("step", "exp_avg", "exp_avg_sq") + ("max_exp_avg_sq",) * amsgrad
    return None


def _check_buffers(
    opt: Optimizer, entry: Mapping[str, Any], p: Tensor, amsgrad: bool, where: str
) -> dict[str, str]:
    """ValueError unless ``entry`` holds buffers `step` can use for parameter ``p``;
    returns the kind of each (see `_buffer_kinds`; "any" for other optimizers)."""
    layout = _buffer_kinds(opt, amsgrad)
    kinds, needed = layout if layout is not None else ({}, ())
    missing = [k for k in needed if k not in entry]
    if entry and missing:
        raise ValueError(f"{where}: no {missing[0]!r} buffer (the entry has {sorted(entry)})")
    out = {}
    for k, v in entry.items():
        kind = kinds.get(k) if layout is not None else "any"
        if kind is None:
            raise ValueError(
                f"{where}: unknown buffer {k!r} for {type(opt).__name__} (it keeps "
                f"{', '.join(kinds)})"
            )
        _check_buffer(v, p, kind, f"{where}: {k!r}")
        out[k] = kind
    return out


def _check_buffer(v: Any, p: Tensor, kind: str, where: str) -> None:
    """ValueError unless ``v`` is a buffer of ``kind`` for parameter ``p``."""
    try:
        v = _to_numpy(v)
    except Exception as exc:  # something with .detach/.numpy that is not a torch tensor
        raise ValueError(f"{where}: cannot read a {type(v).__name__} ({exc})") from None
    if v is None and kind in ("buffer?", "any"):
        return
    if kind in ("count", "any") and isinstance(v, np.ndarray) and v.ndim == 0:
        v = v.item()  # (torch keeps Adam's step as a 0-d tensor)
    if kind == "count":
        if not _same_kind(v, 0.0) or not _is_finite(v) or v < 0:
            raise ValueError(f"{where} is {v!r}, expected a step count (a number >= 0)")
        return
    if kind == "any" and not isinstance(v, np.ndarray):
        if not isinstance(v, int | float | np.number):  # (bools are ints)
            raise ValueError(f"{where} is a {type(v).__name__}, expected an array or a number")
        return
    if isinstance(v, bool | np.bool_) or not isinstance(v, np.ndarray | int | float | np.number):
        raise ValueError(
            f"{where} is a {type(v).__name__}, expected an array of shape {tuple(p.shape)}"
        )
    a = np.asarray(v)
    if a.dtype.kind not in ("biuf" if kind == "any" else "iuf"):
        raise ValueError(f"{where} has dtype {a.dtype}, expected real numbers")
    if a.shape != p.shape:
        raise ValueError(f"{where} has shape {a.shape}, the parameter has {p.shape}")


def _loaded(v: Any, p: Tensor, kind: str) -> Any:
    """A checked buffer as the optimizer keeps it: arrays copied in the parameter's dtype
    (a 0-d parameter's buffers too), other 0-d arrays as Python numbers."""
    v = _to_numpy(v)
    if kind.startswith("buffer") and v is not None:
        return np.array(v, dtype=p.dtype, copy=True)
    if isinstance(v, np.ndarray):
        return v.astype(p.dtype, copy=True) if v.ndim > 0 else v.item()
    return v
