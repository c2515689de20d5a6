"""Learning-rate schedules with PyTorch's names and semantics (``minires.optim.lr_scheduler``).

Call ``scheduler.step()`` once per epoch, after the epoch's ``optimizer.step()`` calls. Each
step updates ``group["lr"]`` of every parameter group by PyTorch's rules (``get_lr``, its
"chainable" forms: most schedules change the current lr, so two schedulers on one optimizer
compose and an lr set by hand carries on). ``lr_at(epoch)`` is the closed form, the lrs a
schedule gives when it alone sets them, so it can be read (and plotted) without running it::

    sched = CosineAnnealingLR(opt, T_max=30)
    [sched.lr_at(e)[0] for e in range(30)]
"""

from __future__ import annotations

import bisect
import math
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from minires.optim.optimizer import Optimizer


class LRScheduler:
    """Base class. Subclasses implement `get_lr` (the step's rule) and `lr_at` (its closed
    form); one that implements only `lr_at` steps by it.

    On construction each group's ``initial_lr`` is recorded (``base_lrs``) and a first
    step applies the learning rate of epoch 0 (``last_epoch`` becomes 0), as in PyTorch.
    ``last_epoch`` other than -1 (resuming) needs ``initial_lr`` in every group.
    """

    _is_initial = False  # True during the constructor's step only (torch's flag; not saved)
    _unsaved: tuple[str, ...] = ("optimizer",)  # attributes `state_dict` leaves out

    def __init__(self, optimizer: Optimizer, last_epoch: int = -1):
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"{type(self).__name__} needs a minires Optimizer, got {optimizer!r}")
        _int_in(last_epoch, "last_epoch", type(self).__name__, -1)
        self.optimizer = optimizer
        if last_epoch == -1:
            for group in optimizer.param_groups:
                group.setdefault("initial_lr", group["lr"])
        else:
            for i, group in enumerate(optimizer.param_groups):
                if "initial_lr" not in group:
                    raise KeyError(
                        f"param 'initial_lr' is not set in param_groups[{i}] when resuming"
                    )
        self.base_lrs: list[float] = [g["initial_lr"] for g in optimizer.param_groups]
        self.last_epoch = int(last_epoch)
        self._last_lr: list[float] = []
        self._initial_step()

    def _initial_step(self) -> None:
        """The constructor's step, which some rules treat apart (as torch)."""
        self._is_initial = True
        try:
            self.step()
        finally:
            del self._is_initial  # back to the class's False, and out of state_dict

    def lr_at(self, epoch: int) -> list[float]:  # pragma: no cover - abstract
        """The learning rate of each group at ``epoch`` (0-based) when this schedule alone
        sets them: the closed form of what `step` does."""
        raise NotImplementedError

    def get_lr(self) -> list[float]:
        """The learning rate of each group for the epoch `step` has just advanced to
        (``last_epoch``), by PyTorch's rule; by default the closed form `lr_at`."""
        return self.lr_at(self.last_epoch)

    def step(self, epoch: int | None = None) -> None:
        """Advance one epoch and set the optimizer's learning rates (`get_lr`). With
        ``epoch`` (deprecated in PyTorch, which warns too), go to that epoch and set the
        closed form's rates (`lr_at`)."""
        if epoch is None:
            self.last_epoch += 1
            self._apply(self.get_lr())
            return
        warnings.warn(
            "scheduler.step(epoch) is deprecated (as in PyTorch): call step() once per epoch",
            UserWarning,
            stacklevel=2,
        )
        self._step_to(epoch)

    def _step_to(self, epoch: int) -> None:
        """Go to ``epoch`` and apply the closed form there (torch's ``_update_lr(epoch)``)."""
        _int_in(epoch, "epoch", type(self).__name__, 0, _MAX_EPOCH)
        self.last_epoch = int(epoch)
        has_closed_form = type(self).lr_at is not LRScheduler.lr_at
        self._apply(self.lr_at(self.last_epoch) if has_closed_form else self.get_lr())

    def _lrs(self) -> list[float]:
        """The current ``group["lr"]`` of each group (what torch's chainable rules update)."""
        return [group["lr"] for group in self.optimizer.param_groups]

    def _apply(self, lrs: Sequence[float]) -> None:
        for group, lr in zip(self.optimizer.param_groups, lrs):
            group["lr"] = lr
        self._last_lr = [g["lr"] for g in self.optimizer.param_groups]

    def get_last_lr(self) -> list[float]:
        """The learning rates set by the last `step` (one per parameter group)."""
        return list(self._last_lr)

    def state_dict(self) -> dict[str, Any]:
        """Everything but the optimizer (plain values: JSON- and `minires.save`-able)."""
        return {
            k: v for k, v in self.__dict__.items() if k not in self._unsaved and not callable(v)
        }

    def check_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Check, changing nothing, that `state_dict` is a state of this scheduler: exactly
        the keys its own `state_dict` writes (so never ``optimizer`` or a method), each of
        the right type and range. Raises TypeError for a value of the wrong type and
        ValueError for anything else, naming the key and the value at fault."""
        owner = f"{type(self).__name__} state"
        if not isinstance(state_dict, Mapping):
            raise TypeError(f"{owner}: expected a mapping, got {type(state_dict).__name__}")
        expected = list(self.state_dict())
        unknown = [k for k in state_dict if k not in expected]
        missing = [k for k in expected if k not in state_dict]
        if unknown or missing:
            what = f"unknown key {unknown[0]!r}" if unknown else f"no {missing[0]!r} entry"
            raise ValueError(
                f"{owner}: {what} (a {type(self).__name__} state has exactly "
                f"{', '.join(expected)}; is it another scheduler's?)"
            )
        for key in expected:
            self._check_state_value(key, state_dict[key], owner)

    def _check_state_value(self, key: str, value: Any, owner: str) -> None:
        """One loaded value. Subclasses check their own settings and pass the rest on."""
        groups = len(self.optimizer.param_groups)
        if key == "last_epoch":  # (-1: a SequentialLR's schedule that has not started)
            # lr_at computes pi * epoch / T_max etc. in floats: keep it an exact float
            _int_in(value, key, owner, -1, _MAX_EPOCH)
        elif key == "base_lrs":  # initial_lr of each group: an lr, so >= 0
            _numbers(value, key, owner, groups, lo=0)
        elif key == "_last_lr":  # (a negative gamma gives negative lrs: no sign check)
            _numbers(value, key, owner, groups)
        else:  # an attribute of a subclass defined elsewhere: like the value it has now
            _check_like(value, getattr(self, key), key, owner)

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Restore a `state_dict` after `check_state_dict` (nothing changes if it fails).
        Only the keys this scheduler's `state_dict` writes are set. (The optimizer's lrs
        are restored by the optimizer's own ``load_state_dict``.)"""
        self.check_state_dict(state_dict)
        self._set_state(state_dict)

    def _set_state(self, state_dict: Mapping[str, Any]) -> None:
        """Set the attributes of a checked state (plain Python values, lists for tuples)."""
        for key in self.state_dict():
            setattr(self, key, _plain(state_dict[key]))

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v}" for k, v in self.state_dict().items() if not k.startswith("_"))
        return f"{type(self).__name__}({args})"


def _number(value: Any, name: str, owner: str) -> float | int:
    """``value`` if it is a real number (not a bool), else a TypeError naming it."""
    if isinstance(value, bool | np.bool_) or not isinstance(value, int | float | np.number):
        raise TypeError(f"{owner}: {name} must be a number, got {value!r}")
    return value


def _power(gamma: float, k: int) -> float:
    """gamma ** k, inf where it overflows (Python's float power raises OverflowError)."""
    with np.errstate(over="ignore"):
        return float(np.float64(gamma) ** k)


def _check_sequential_milestones(milestones: list, what: str) -> None:
    """SequentialLR's milestones: ints >= 0, non-decreasing (bisect picks the running
    scheduler: unsorted ones would silently run the wrong one)."""
    for m in milestones:
        if isinstance(m, bool) or not isinstance(m, int | np.integer):
            raise TypeError(f"{what} must be ints, got {m!r}")
    if any(m < 0 for m in milestones) or any(a > b for a, b in zip(milestones, milestones[1:])):
        raise ValueError(f"{what} must be non-decreasing and >= 0, got {list(milestones)}")


# -- checks of loaded states ----------------------------------------------------------------

_MAX_EPOCH = 2**53  # beyond it an epoch count is not an exact float (and is no real run)


def _finite(
    value: Any,
    name: str,
    owner: str,
    lo: float | None = None,
    hi: float | None = None,
    lo_open: bool = False,
) -> None:
    """TypeError unless ``value`` is a real number, ValueError unless it is finite (as a
    float: lr_at computes in floats) and in [lo, hi] (or (lo, hi] with ``lo_open``)."""
    _number(value, name, owner)
    try:
        f = float(value)
    except OverflowError:  # an int too large for a float
        f = math.inf
    if not math.isfinite(f):
        raise ValueError(f"{owner}: {name} must be finite, got {value!r}")
    if lo is not None and (f <= lo if lo_open else f < lo):
        raise ValueError(f"{owner}: {name} must be {'>' if lo_open else '>='} {lo}, got {value!r}")
    if hi is not None and f > hi:
        raise ValueError(f"{owner}: {name} must be <= {hi}, got {value!r}")


def _int_in(
    value: Any, name: str, owner: str, lo: int | None = None, hi: int | None = None
) -> None:
    """TypeError unless ``value`` is an int (not a bool), ValueError unless lo <= it < hi."""
    if isinstance(value, bool | np.bool_) or not isinstance(value, int | np.integer):
        raise TypeError(f"{owner}: {name} must be an int, got {value!r}")
    if (lo is not None and value < lo) or (hi is not None and value >= hi):
        bounds = f"in [{lo}, {hi})" if hi is not None else f">= {lo}"
        raise ValueError(f"{owner}: {name} must be {bounds}, got {value!r}")


def _sequence(value: Any, name: str, owner: str, length: int | None = None) -> None:
    """TypeError unless ``value`` is a list (or tuple), ValueError if its length differs."""
    if not isinstance(value, list | tuple):
        raise TypeError(f"{owner}: {name} must be a list, got {value!r}")
    if length is not None and len(value) != length:
        raise ValueError(f"{owner}: {name} must be a list of length {length}, got {value!r}")


def _numbers(value: Any, name: str, owner: str, length: int, lo: float | None = None) -> None:
    """A list of ``length`` finite numbers (one per parameter group), each >= lo."""
    _sequence(value, name, owner, length)
    for i, v in enumerate(value):
        _finite(v, f"{name}[{i}]", owner, lo)


def _check_like(value: Any, current: Any, name: str, owner: str) -> None:
    """A value of a kind `check_state_dict` has no rule for: a bool for a bool, a finite
    number for a number, a string for a string, a list for a list; anything else goes."""
    if isinstance(current, bool | np.bool_):
        if not isinstance(value, bool | np.bool_):
            raise TypeError(f"{owner}: {name} must be True or False, got {value!r}")
    elif isinstance(current, int | float | np.number):
        _finite(value, name, owner)
    elif isinstance(current, str) and not isinstance(value, str):
        raise TypeError(f"{owner}: {name} must be a string, got {value!r}")
    elif isinstance(current, list | tuple):
        _sequence(value, name, owner)


def _plain(value: Any) -> Any:
    """Python numbers for NumPy scalars, lists for tuples (what the constructors store)."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


class LambdaLR(LRScheduler):
    """lr = base_lr * lr_lambda(epoch); ``lr_lambda`` is a function, or a list of one per
    parameter group. (The functions are not saved in ``state_dict``.)"""

    _unsaved = ("optimizer", "lr_lambdas")

    def __init__(
        self,
        optimizer: Optimizer,
        lr_lambda: Callable[[int], float] | Sequence[Callable[[int], float]],
        last_epoch: int = -1,
    ):
        groups = len(getattr(optimizer, "param_groups", ()))
        if isinstance(lr_lambda, list | tuple):
            if len(lr_lambda) != groups:
                raise ValueError(
                    f"LambdaLR: expected {groups} lr_lambdas (one per group), got {len(lr_lambda)}"
                )
            self.lr_lambdas = list(lr_lambda)
        else:
            self.lr_lambdas = [lr_lambda] * groups
        for f in self.lr_lambdas:
            if not callable(f):
                raise TypeError(f"LambdaLR: lr_lambda must be callable, got {f!r}")
        super().__init__(optimizer, last_epoch)

    def lr_at(self, epoch: int) -> list[float]:
        return [base * f(epoch) for f, base in zip(self.lr_lambdas, self.base_lrs)]


class StepLR(LRScheduler):
    """lr = base_lr * gamma ** (epoch // step_size): decay by ``gamma`` every ``step_size``
    epochs."""

    def __init__(self, optimizer: Optimizer, step_size: int, gamma: float = 0.1, last_epoch=-1):
        if isinstance(step_size, bool | np.bool_) or not isinstance(step_size, int | np.integer):
            # (torch takes 2.5 and then decays only at epochs that are multiples of it)
            raise TypeError(f"StepLR: step_size must be an int, got {step_size!r}")
        if step_size < 1:
            raise ValueError(f"StepLR: step_size must be >= 1, got {step_size}")
        self.step_size = int(step_size)
        _finite(gamma, "gamma", "StepLR")  # NaN / inf would make every lr NaN / inf
        self.gamma = gamma
        super().__init__(optimizer, last_epoch)

    def lr_at(self, epoch: int) -> list[float]:
        return [base * _power(self.gamma, epoch // self.step_size) for base in self.base_lrs]

    def get_lr(self) -> list[float]:
        """torch's rule: the current lr times gamma at each multiple of step_size."""
        if self.last_epoch == 0 or self.last_epoch % self.step_size != 0:
            return self._lrs()
        return [lr * self.gamma for lr in self._lrs()]

    def _check_state_value(self, key: str, value: Any, owner: str) -> None:
        if key == "step_size":
            _int_in(value, key, owner, 1)
        elif key == "gamma":
            _finite(value, key, owner)
        else:
            super()._check_state_value(key, value, owner)


class MultiStepLR(LRScheduler):
    """lr = base_lr * gamma ** (number of milestones <= epoch). He et al. (2016) divide by
    10 at 50% and 75% of training: ``MultiStepLR(opt, [E // 2, 3 * E // 4])``."""

    def __init__(
        self, optimizer: Optimizer, milestones: Iterable[int], gamma: float = 0.1, last_epoch=-1
    ):
        # any collection of ints, as torch (their order does not matter: they are sorted)
        if not isinstance(milestones, Iterable) or isinstance(milestones, str | bytes):
            raise TypeError(f"MultiStepLR: milestones must be a list of ints, got {milestones!r}")
        milestones = list(milestones)
        for m in milestones:
            if isinstance(m, bool | np.bool_) or not isinstance(m, int | np.integer):
                raise TypeError(f"MultiStepLR: milestones must be ints, got {m!r}")
        # a milestone before epoch 0 is never reached (the schedule starts at epoch 0)
        self.milestones = sorted(int(m) for m in milestones if m >= 0)
        _finite(gamma, "gamma", "MultiStepLR")
        self.gamma = gamma
        super().__init__(optimizer, last_epoch)

    def lr_at(self, epoch: int) -> list[float]:
        k = bisect.bisect_right(self.milestones, epoch)
        return [base * _power(self.gamma, k) for base in self.base_lrs]

    def get_lr(self) -> list[float]:
        """torch's rule: the current lr times gamma at each milestone (gamma ** 2 at one
        given twice)."""
        k = self.milestones.count(self.last_epoch)
        return [lr * _power(self.gamma, k) for lr in self._lrs()] if k else self._lrs()

    def _check_state_value(self, key: str, value: Any, owner: str) -> None:
        if key == "milestones":  # as the constructor stores them: sorted, none before 0
            _sequence(value, key, owner)
            for i, m in enumerate(value):
                _int_in(m, f"{key}[{i}]", owner, 0)
            if list(value) != sorted(value):  # bisect needs them sorted
                raise ValueError(f"{owner}: {key} must be sorted, got {value!r}")
        elif key == "gamma":
            _finite(value, key, owner)
        else:
            super()._check_state_value(key, value, owner)


class CosineAnnealingLR(LRScheduler):
    """lr = eta_min + (base_lr - eta_min) * (1 + cos(pi * epoch / T_max)) / 2: a half cosine
    from base_lr down to eta_min over ``T_max`` epochs (SGDR without restarts)."""

    def __init__(self, optimizer: Optimizer, T_max: int, eta_min: float = 0.0, last_epoch=-1):
        if _number(T_max, "T_max", "CosineAnnealingLR") <= 0:
            raise ValueError(f"CosineAnnealingLR: T_max must be > 0, got {T_max}")
        self.T_max = T_max  # not truncated: the cosine's period is 2 * T_max (torch)
        _finite(eta_min, "eta_min", "CosineAnnealingLR")
        self.eta_min = eta_min
        super().__init__(optimizer, last_epoch)

    def lr_at(self, epoch: int) -> list[float]:
        c = (1 + math.cos(math.pi * epoch / self.T_max)) / 2
        return [self.eta_min + (base - self.eta_min) * c for base in self.base_lrs]

    def get_lr(self) -> list[float]:
        """torch's recursive rule: the current lr's distance to eta_min scaled by the ratio
        of successive cosine terms (the step after each minimum, where that ratio's
        denominator is 0, adds the first step's rise instead)."""
        e, T, eta = self.last_epoch, self.T_max, self.eta_min
        if self._is_initial:
            return self._lrs()
        below = 1 + math.cos(math.pi * (e - 1) / T)
        # (torch tests only the first condition: a T_max a rounding error away from an
        # integer, such as 1.9999999999999982, made it divide by zero)
        if (e - 1 - T) % (2 * T) == 0 or below == 0:
            rise = (1 - math.cos(math.pi / T)) / 2
            return [lr + (base - eta) * rise for lr, base in zip(self._lrs(), self.base_lrs)]
        ratio = (1 + math.cos(math.pi * e / T)) / below
        return [ratio * (lr - eta) + eta for lr in self._lrs()]

    def _check_state_value(self, key: str, value: Any, owner: str) -> None:
        if key == "T_max":
            _finite(value, key, owner, lo=0, lo_open=True)
        elif key == "eta_min":
            _finite(value, key, owner)
        else:
            super()._check_state_value(key, value, owner)


class LinearLR(LRScheduler):
    """Linear warm-up (or decay): the factor on base_lr goes linearly from ``start_factor``
    to ``end_factor`` over ``total_iters`` epochs, then stays at ``end_factor``."""

    def __init__(
        self,
        optimizer: Optimizer,
        start_factor: float = 1.0 / 3,
        end_factor: float = 1.0,
        total_iters: int = 5,
        last_epoch: int = -1,
    ):
        if not 0 < start_factor <= 1 or not 0 <= end_factor <= 1:
            raise ValueError(
                "LinearLR: start_factor must be in (0, 1] and end_factor in [0, 1], got "
                f"{start_factor}, {end_factor}"
            )
        self.start_factor, self.end_factor = start_factor, end_factor
        if isinstance(total_iters, bool) or not isinstance(total_iters, int | np.integer):
            raise TypeError(f"LinearLR: total_iters must be an int, got {total_iters!r}")
        if total_iters < 0:
            raise ValueError(f"LinearLR: total_iters must be >= 0, got {total_iters}")
        self.total_iters = int(total_iters)
        super().__init__(optimizer, last_epoch)

    def lr_at(self, epoch: int) -> list[float]:
        # (total_iters=0 stays at start_factor, as torch's steps do)
        frac = min(epoch, self.total_iters) / self.total_iters if self.total_iters else 0.0
        factor = self.start_factor + (self.end_factor - self.start_factor) * frac
        return [base * factor for base in self.base_lrs]

    def get_lr(self) -> list[float]:
        """torch's rule: start_factor times the lr at epoch 0, then each epoch up to
        total_iters the ratio of successive factors."""
        e, s, f, n = self.last_epoch, self.start_factor, self.end_factor, self.total_iters
        if e == 0:
            return [lr * s for lr in self._lrs()]
        if self._is_initial or e > n:
            return self._lrs()
        return [lr * (1.0 + (f - s) / (n * s + (e - 1) * (f - s))) for lr in self._lrs()]

    def _check_state_value(self, key: str, value: Any, owner: str) -> None:
        if key == "start_factor":  # the constructor's ranges
            _finite(value, key, owner, lo=0, hi=1, lo_open=True)
        elif key == "end_factor":
            _finite(value, key, owner, lo=0, hi=1)
        elif key == "total_iters":
            _int_in(value, key, owner, 0)
        else:
            super()._check_state_value(key, value, owner)


class SequentialLR(LRScheduler):
    """Run ``schedulers[0]`` until ``milestones[0]``, then ``schedulers[1]`` (restarted at
    its epoch 0), and so on — e.g. linear warm-up then cosine::

        warm = LinearLR(opt, start_factor=0.1, total_iters=5)
        cos = CosineAnnealingLR(opt, T_max=epochs - 5)
        sched = SequentialLR(opt, [warm, cos], milestones=[5])
    """

    def __init__(
        self,
        optimizer: Optimizer,
        schedulers: Sequence[LRScheduler],
        milestones: Sequence[int],
        last_epoch: int = -1,
    ):
        if len(schedulers) < 1:
            raise ValueError("SequentialLR: expected at least one scheduler, got none")
        if len(schedulers) != len(milestones) + 1:
            raise ValueError(
                f"SequentialLR: expected {len(schedulers) - 1} milestones for "
                f"{len(schedulers)} schedulers, got {len(milestones)}"
            )
        for sched in schedulers:
            if not isinstance(sched, LRScheduler):
                raise TypeError(f"SequentialLR: expected schedulers, got {sched!r}")
            if sched.optimizer is not optimizer:
                raise ValueError("SequentialLR: every scheduler must wrap the same optimizer")
        self._schedulers = list(schedulers)
        _check_sequential_milestones(list(milestones), "SequentialLR: milestones")
        self.milestones = [int(m) for m in milestones]
        # as torch: undo the schedulers' initial steps; the first step below starts the
        # one of epoch 0, and each other one starts (at its epoch 0) at its milestone
        for group in optimizer.param_groups:
            group["lr"] = group.get("initial_lr", group["lr"])
        for sched in self._schedulers:
            sched.last_epoch -= 1
        super().__init__(optimizer, last_epoch)

    def lr_at(self, epoch: int) -> list[float]:
        i = bisect.bisect_right(self.milestones, epoch)
        start = self.milestones[i - 1] if i > 0 else 0
        return self._schedulers[i].lr_at(epoch - start)

    def step(self) -> None:  # type: ignore[override]
        """Advance one epoch: step the running schedule, or start the next one at its
        milestone (no ``epoch`` argument, as in torch)."""
        self.last_epoch += 1
        if self._is_initial:  # (torch starts the schedule of epoch 0, whatever last_epoch)
            sub = self._schedulers[bisect.bisect_right(self.milestones, 0)]
            sub._initial_step()
        else:
            i = bisect.bisect_right(self.milestones, self.last_epoch)
            sub = self._schedulers[i]
            if i > 0 and self.milestones[i - 1] == self.last_epoch:
                sub._step_to(0)
            else:
                sub.step()
        self._last_lr = sub.get_last_lr()

    def state_dict(self) -> dict[str, Any]:
        state = {k: v for k, v in super().state_dict().items() if k != "_schedulers"}
        state["_schedulers"] = [s.state_dict() for s in self._schedulers]
        return state

    def _check_state_value(self, key: str, value: Any, owner: str) -> None:
        if key == "milestones":
            _sequence(value, key, owner, len(self._schedulers) - 1)
            for i, m in enumerate(value):
                _int_in(m, f"{key}[{i}]", owner)
            _check_sequential_milestones(value, f"{owner}: {key}")
        elif key == "_schedulers":  # each one checked by its own scheduler
            _sequence(value, key, owner, len(self._schedulers))
            for i, (sub, state) in enumerate(zip(self._schedulers, value)):
                try:
                    sub.check_state_dict(state)
                except (TypeError, ValueError) as exc:
                    raise type(exc)(f"{owner}: {key}[{i}]: {exc}") from None
        else:
            super()._check_state_value(key, value, owner)

    def _set_state(self, state_dict: Mapping[str, Any]) -> None:
        for key in self.state_dict():
            if key != "_schedulers":
                setattr(self, key, _plain(state_dict[key]))
        for sub, state in zip(self._schedulers, state_dict["_schedulers"]):
            sub._set_state(state)


# PyTorch < 2.0 name
_LRScheduler = LRScheduler
