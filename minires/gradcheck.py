"""Numerical gradient checking: analytic vector-Jacobian products from ``backward`` against
central finite differences, in float64.

What it checks
--------------
For each output ``y_k`` we draw a random upstream gradient ``u_k`` (a plain ``sum`` would
hide bugs: batchnorm's input gradient of ``sum(bn(x))`` is exactly zero, so a broken
backward would pass). ``backward`` gives ``g = J^T u`` for every input at once. For each
input element ``x_i`` the function is evaluated at ``x_i - eps``, ``x_i`` and ``x_i + eps``;
the central difference of ``u . y`` is the numeric ``g_i``. Several independent ``u`` are
checked against the same finite differences (the differences are stored once, as
``y(x + eps e_i) - y(x - eps e_i)``), and with ``full_jacobian=True`` ``u`` runs over the
standard basis, so every Jacobian entry is compared, as in PyTorch's slow mode.

``fast_mode=True`` checks one random projection ``u^T J v`` per input (two function
evaluations per input instead of per element), for large inputs.

Kinks: where an input sits within ``eps`` of a point where the function is not
differentiable (relu at 0, a max-pool tie), the one-sided slopes disagree. Such elements
are reported with a warning, not as a bare mismatch, and do not fail the check.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from minires.tensor import Tensor


class GradcheckError(RuntimeError):
    """Raised by `gradcheck` when analytic and numeric gradients disagree."""


class GradcheckWarning(UserWarning):
    """An input sits on a kink: its numeric gradient is not meaningful there."""


@dataclass
class InputReport:
    """Per-input outcome: the worst element and the elements skipped as kinks."""

    index: int
    shape: tuple[int, ...]
    max_abs_error: float = 0.0
    max_rel_error: float = 0.0
    worst_index: tuple[int, ...] | None = None
    analytic: float = 0.0
    numeric: float = 0.0
    passed: bool = True
    kinks: list[tuple[int, ...]] = field(default_factory=list)

    def line(self) -> str:
        where = "" if self.worst_index is None else f" at {self.worst_index}"
        s = (
            f"input {self.index} {self.shape}: {'ok' if self.passed else 'MISMATCH'}; "
            f"max abs err {self.max_abs_error:.3e}, max rel err {self.max_rel_error:.3e}{where}"
            f" (analytic {self.analytic:.6g}, numeric {self.numeric:.6g})"
        )
        if self.kinks:
            s += f"; {len(self.kinks)} element(s) on a kink skipped, e.g. {self.kinks[0]}"
        return s


@dataclass
class GradcheckResult:
    """Truthy when every input passed; ``str()`` gives the per-input report."""

    inputs: list[InputReport]
    mode: str

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.inputs)

    def __bool__(self) -> bool:
        return self.passed

    @property
    def max_abs_error(self) -> float:
        return max((r.max_abs_error for r in self.inputs), default=0.0)

    @property
    def max_rel_error(self) -> float:
        return max((r.max_rel_error for r in self.inputs), default=0.0)

    def __str__(self) -> str:
        head = f"gradcheck ({self.mode}): {'passed' if self.passed else 'FAILED'}"
        return "\n".join([head] + ["  " + r.line() for r in self.inputs])


def _outputs(fn: Callable[..., Any], inputs: Sequence[Tensor]) -> list[Tensor]:
    out = fn(*inputs)
    outs = list(out) if isinstance(out, tuple | list) else [out]
    for o in outs:
        if not isinstance(o, Tensor):
            raise TypeError(f"gradcheck: fn must return Tensors, got {type(o).__name__}")
    return outs


def _evaluate(fn: Callable[..., Any], inputs: Sequence[Tensor]) -> np.ndarray:
    """All outputs of fn, flattened into one float64 vector (no graph recorded)."""
    from minires.autograd import no_grad

    with no_grad():
        outs = _outputs(fn, inputs)
    return np.concatenate([np.asarray(o.data, dtype=np.float64).ravel() for o in outs])


def _analytic_vjps(
    fn: Callable[..., Any], inputs: Sequence[Tensor], checked: list[int], us: np.ndarray
) -> list[np.ndarray]:
    """For each row u of ``us``: J^T u for every checked input, by one backward pass.

    Returns one array per checked input, shaped (len(us), *input.shape).
    """
    saved = [t.grad for t in inputs]
    result = [np.zeros((len(us),) + inputs[i].shape) for i in checked]
    try:
        for r, u in enumerate(us):
            for t in inputs:
                t.grad = None
            outs = _outputs(fn, inputs)
            offset = 0
            for o in outs:
                seed = u[offset : offset + o.size].reshape(o.shape)
                offset += o.size
                if o.requires_grad:
                    o.backward(seed.astype(o.dtype))
            for slot, i in enumerate(checked):
                if inputs[i].grad is not None:
                    result[slot][r] = inputs[i].grad
    finally:
        for t, g in zip(inputs, saved):
            t.grad = g
    return result


def gradcheck(
    fn: Callable[..., Any],
    inputs: Tensor | Sequence[Tensor],
    eps: float = 1e-6,
    atol: float = 1e-5,
    rtol: float = 1e-3,
    raise_exception: bool = True,
    fast_mode: bool = False,
    n_projections: int = 2,
    full_jacobian: bool = False,
    seed: int = 0,
) -> GradcheckResult:
    """Compare ``fn``'s analytic gradients with central finite differences.

    Args:
        fn: takes the tensors of ``inputs`` and returns a Tensor or a tuple of Tensors.
        inputs: the tensors; those with ``requires_grad=True`` are checked and must be
            float64 (float32 is refused: its rounding error swamps the difference quotient).
        eps: finite-difference step.
        atol, rtol: an element passes when ``|analytic - numeric| <= atol + rtol*|numeric|``.
        raise_exception: raise `GradcheckError` with the report on failure.
        fast_mode: one random projection ``u^T J v`` per input (cheap, less precise blame).
        n_projections: number of random upstream gradients ``u`` (default mode).
        full_jacobian: use every standard basis vector as ``u`` (the whole Jacobian;
            one backward per output element).
        seed: seed of the random projections.

    Returns:
        `GradcheckResult`: truthy on success; ``str(result)`` is the per-input report of
        the worst element (index, analytic, numeric, absolute and relative error).
    """
    inputs = [inputs] if isinstance(inputs, Tensor) else list(inputs)
    for i, t in enumerate(inputs):
        if not isinstance(t, Tensor):
            raise TypeError(f"gradcheck: input {i} is a {type(t).__name__}, expected a Tensor")
    checked = [i for i, t in enumerate(inputs) if t.requires_grad]
    if not checked:
        raise ValueError("gradcheck: no input has requires_grad=True, nothing to check")
    for i in checked:
        if inputs[i].dtype != np.float64:
            raise TypeError(
                f"gradcheck: input {i} (shape {inputs[i].shape}) is {inputs[i].dtype}; gradcheck "
                "needs float64 (float32 rounding swamps finite differences). Use "
                "mr.tensor(x, dtype=np.float64) or t.double() for the inputs and model.double()."
            )
    rng = np.random.default_rng(seed)
    y0 = _evaluate(fn, inputs)
    if fast_mode:
        reports = _fast(fn, inputs, checked, y0, eps, atol, rtol, rng)
        mode = "fast mode: one random projection per input"
    else:
        us = np.eye(y0.size) if full_jacobian else rng.standard_normal((n_projections, y0.size))
        reports = _elementwise(fn, inputs, checked, y0, us, eps, atol, rtol)
        mode = "full Jacobian" if full_jacobian else f"{len(us)} random projection(s)"
    result = GradcheckResult(reports, mode)
    for r in reports:
        if r.kinks:
            warnings.warn(
                f"gradcheck: input {r.index} has {len(r.kinks)} element(s) within eps={eps} of a "
                f"non-differentiable point (e.g. index {r.kinks[0]}: left and right slopes differ, "
                "like relu at 0 or a max-pool tie); they were skipped. Jitter the input away from "
                "kinks to check them.",
                GradcheckWarning,
                stacklevel=2,
            )
    if not result and raise_exception:
        raise GradcheckError(str(result))
    return result


def _kink(left: np.ndarray, right: np.ndarray, atol: float, rtol: float) -> bool:
    """One-sided slopes that disagree beyond tolerance mean a kink within eps."""
    scale = np.maximum(np.abs(left), np.abs(right))
    return bool(np.any(np.abs(left - right) > 10 * (atol + rtol * scale)))


def _elementwise(fn, inputs, checked, y0, us, eps, atol, rtol) -> list[InputReport]:
    analytic = _analytic_vjps(fn, inputs, checked, us)
    reports = []
    for slot, i in enumerate(checked):
        x = inputs[i].data
        numeric = np.zeros((len(us),) + x.shape)
        kinks: list[tuple[int, ...]] = []
        for idx in np.ndindex(x.shape):
            orig = x[idx]
            x[idx] = orig + eps
            y_plus = _evaluate(fn, inputs)
            x[idx] = orig - eps
            y_minus = _evaluate(fn, inputs)
            x[idx] = orig
            numeric[(slice(None),) + idx] = us @ (y_plus - y_minus) / (2 * eps)
            if _kink((y0 - y_minus) / eps, (y_plus - y0) / eps, atol, rtol):
                kinks.append(idx)
        reports.append(_compare(i, x.shape, analytic[slot], numeric, kinks, atol, rtol))
    return reports


def _compare(i, shape, analytic, numeric, kinks, atol, rtol) -> InputReport:
    """Worst element of one input over all projections; kink elements are excluded."""
    abs_err = np.abs(analytic - numeric)
    # Relative to |numeric|, but never to less than atol: a gradient that is ~0 has no
    # meaningful relative error.
    rel_err = abs_err / np.maximum(np.abs(numeric), atol)
    bad = abs_err > atol + rtol * np.abs(numeric)
    for k in kinks:
        bad[(slice(None),) + k] = False
        abs_err[(slice(None),) + k] = 0.0
        rel_err[(slice(None),) + k] = 0.0
    rep = InputReport(i, tuple(shape), kinks=kinks)
    if abs_err.size:
        flat = (
            int(np.argmax(np.where(bad, np.inf, abs_err))) if bad.any() else int(np.argmax(abs_err))
        )
        where = np.unravel_index(flat, abs_err.shape)
        rep.max_abs_error = float(abs_err.max())
        rep.max_rel_error = float(rel_err.max())
        rep.worst_index = tuple(int(w) for w in where[1:])
        rep.analytic, rep.numeric = float(analytic[where]), float(numeric[where])
    rep.passed = not bool(bad.any())
    return rep


def _fast(fn, inputs, checked, y0, eps, atol, rtol, rng) -> list[InputReport]:
    u = rng.standard_normal((1, y0.size))
    analytic = _analytic_vjps(fn, inputs, checked, u)
    reports = []
    for slot, i in enumerate(checked):
        x = inputs[i].data
        v = rng.standard_normal(x.shape)
        orig = x.copy()
        x[...] = orig + eps * v
        y_plus = _evaluate(fn, inputs)
        x[...] = orig - eps * v
        y_minus = _evaluate(fn, inputs)
        x[...] = orig
        numeric = float(u[0] @ (y_plus - y_minus) / (2 * eps))
        kinks = (
            [()]
            if _kink((y0 - y_minus) @ u[0] / eps, (y_plus - y0) @ u[0] / eps, atol, rtol)
            else []
        )
        a = float(np.sum(analytic[slot][0] * v))
        rep = _compare(i, x.shape, np.array([a]), np.array([numeric]), [], atol, rtol)
        rep.worst_index, rep.kinks = None, kinks
        if kinks:
            rep.passed = True
        reports.append(rep)
    return reports
