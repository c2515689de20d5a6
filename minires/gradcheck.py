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

An element passes when ``|analytic - numeric| <= atol + rtol * |numeric|``; the report
names, per input, the element that is furthest out of that tolerance (largest
``|analytic - numeric| / (atol + rtol * |numeric|)``), with its analytic and numeric values.
The relative error reported is ``|analytic - numeric| / max(|numeric|, atol/rtol)``: below
``atol/rtol`` atol dominates the tolerance, so ``rel err <= rtol`` always passes, and the
~1e-9 rounding noise of the difference quotient cannot make a near-zero gradient look
wrong. `reading_guide` (printed under every report) says what values correct and broken
ops showed when measured.

``fast_mode=True`` checks one random projection ``u^T J v`` per input (two function
evaluations per input instead of per element), for large inputs. It cannot say which
element is wrong, only that one is.

Kinks: where an input sits within ``eps`` of a point where the function is not
differentiable (relu at 0, a max-pool tie), the one-sided slopes disagree by the jump of
the slope, whatever the step; where the function is smooth they disagree by about
``eps * f''``, which halves with the step - so an element is taken to sit on a kink only
if the gap stays when the step is halved (`_kink`). Such elements are reported with a
warning, not as a bare mismatch, and are left out of the comparison; a check that could
compare no element at all fails.
In fast mode they are found by bisection (about ``4 log2(n)`` more evaluations per kink
element) and set to zero in the direction ``v`` for the analytic and the numeric side
alike, so the other elements are still checked.

Nothing non-finite passes: NaN/inf inputs are refused, and a NaN/inf output, analytic or
numeric gradient fails the check with a message saying where.
"""

from __future__ import annotations

import math
import numbers
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from minires.tensor import Tensor

# How to read the max relative error of a float64 check at the default settings, as
# measured on the project's own ops by `minires gradcheck --calibrate` (64 cases of the
# built-in check x 8 seeds on both backends, 6 larger cases, planted bugs); the tests in
# tests/test_gradcheck_calibration.py re-derive every number here. Ops that only move or
# pick values (reshape, indexing, relu, max, where, ...) are exact: below EXACT_REL_ERR
# (34% of the measurements); the band describes the others.
EXACT_REL_ERR = 1e-14
TYPICAL_REL_ERR = (1e-10, 1e-7)  # median 1.1e-09, 90th percentile 4.3e-08
SMALL_MAX_REL_ERR = 2e-6  # every small case (measured max 1.2e-6, batch_norm train)
REDUCTION_MAX_REL_ERR = 5e-5  # batch norm over 576 values per channel: 3.4e-5
SUSPICIOUS_REL_ERR = 1e-5  # from here to rtol: a small bug, or the noise of a big reduction


def _e(x: float) -> str:
    return f"{x:.0e}".replace("e-0", "e-")


def reading_guide(eps: float = 1e-6, atol: float = 1e-5, rtol: float = 1e-3) -> str:
    """How to read ``rel err``: what correct and broken ops showed when measured."""
    s = (
        "how to read rel err (measured on the built-in ops, float64, eps=1e-6): correct ops "
        "that only move or pick values show ~0, the others "
        f"{_e(TYPICAL_REL_ERR[0])}..{_e(TYPICAL_REL_ERR[1])}, all below "
        f"{_e(SMALL_MAX_REL_ERR)} on small inputs, up to ~3e-5 where an input feeds a "
        "reduction over hundreds of values (batch norm);\n    a backward off by a factor 1+d "
        f"shows d. So < {_e(SUSPICIOUS_REL_ERR)} is fine, {_e(SUSPICIOUS_REL_ERR)}..rtol "
        "suspicious (shrink the input: rounding noise shrinks, a bug stays), > rtol wrong."
    )
    if eps != 1e-6 or atol != 1e-5 or rtol != 1e-3:
        s += (
            f"\n    (This check used eps={eps:g}, atol={atol:g}, rtol={rtol:g}; the bands were "
            "measured at the defaults.)"
        )
    return s


class GradcheckError(RuntimeError):
    """Raised by `gradcheck` when analytic and numeric gradients disagree."""


class GradcheckWarning(UserWarning):
    """An input sits on a kink: its numeric gradient is not meaningful there."""


@dataclass
class InputReport:
    """Per-input outcome.

    ``worst_index`` is the element furthest out of tolerance (largest
    ``abs_error / (atol + rtol*|numeric|)``), with its ``analytic``/``numeric`` values and
    ``abs_error``/``rel_error``; ``max_abs_error``/``max_rel_error`` are maxima over all
    elements (they may sit at other elements). ``row`` says which upstream gradient
    produced the worst value (a projection number, or a flat output index with
    ``full_jacobian``). ``kinks`` are elements left out because they sit on a kink;
    ``problems`` describe non-finite values. Fast mode cannot localise: ``worst_index``
    is None and the values are those of the projection ``u^T J v``.
    """

    index: int
    shape: tuple[int, ...]
    max_abs_error: float = 0.0
    max_rel_error: float = 0.0
    worst_index: tuple[int, ...] | None = None
    analytic: float = 0.0
    numeric: float = 0.0
    abs_error: float = 0.0
    rel_error: float = 0.0
    row: str = ""
    n_failed: int = 0
    passed: bool = True
    kinks: list[tuple[int, ...]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def line(self) -> str:
        n = math.prod(self.shape)
        verdict = "ok" if self.passed else "MISMATCH"
        if not self.passed and self.worst_index is not None:
            verdict += f" in {self.n_failed} of {n} element(s)"
        s = f"input {self.index} {self.shape}: {verdict}"
        if self.worst_index is not None:
            s += (
                f"; {'worst' if not self.passed else 'largest error'} at {self.worst_index}"
                f"{self.row}: analytic {self.analytic:.6g}, numeric {self.numeric:.6g}, "
                f"abs err {self.abs_error:.3e}, rel err {self.rel_error:.3e}"
                f"; max over the input: abs err {self.max_abs_error:.3e}, "
                f"rel err {self.max_rel_error:.3e}"
            )
        elif n and len(self.kinks) < n:
            s += (
                f"; u^T J v: analytic {self.analytic:.6g}, numeric {self.numeric:.6g}, "
                f"abs err {self.abs_error:.3e}, rel err {self.rel_error:.3e}"
            )
            if not self.passed:
                s += " (fast mode cannot say which element; rerun without fast_mode)"
        for p in self.problems:
            s += f"; {p}"
        if self.kinks:
            s += (
                f"; {len(self.kinks)} element(s) on a kink left out, e.g. "
                f"{', '.join(map(str, self.kinks[:3]))}"
            )
        return s


@dataclass
class GradcheckResult:
    """Truthy when every input passed; ``str()`` gives the per-input report and a footer
    saying how to read the relative errors."""

    inputs: list[InputReport]
    mode: str
    problems: list[str] = field(default_factory=list)
    settings: tuple[float, float, float] = (1e-6, 1e-5, 1e-3)  # eps, atol, rtol

    @property
    def passed(self) -> bool:
        return not self.problems and all(r.passed for r in self.inputs)

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
        lines = [head] + ["  " + p for p in self.problems]
        lines += ["  " + r.line() for r in self.inputs]
        return "\n".join(lines + ["  " + reading_guide(*self.settings)])


# -- argument checks ------------------------------------------------------------------------


def _real(name: str, value: Any, *, positive: bool) -> float:
    if isinstance(value, bool | np.bool_) or not isinstance(value, numbers.Real):
        raise TypeError(f"gradcheck: {name} must be a real number, got {value!r}")
    v = float(value)
    if not math.isfinite(v) or (v <= 0 if positive else v < 0):
        need = "> 0" if positive else ">= 0"
        raise ValueError(f"gradcheck: {name} must be finite and {need}, got {name}={value!r}")
    return v


def _flag(name: str, value: Any) -> bool:
    if not isinstance(value, bool | np.bool_):
        raise TypeError(f"gradcheck: {name} must be True or False, got {name}={value!r}")
    return bool(value)


def _int(name: str, value: Any, low: int) -> int:
    if isinstance(value, bool | np.bool_) or not isinstance(value, numbers.Integral):
        raise TypeError(f"gradcheck: {name} must be an int, got {name}={value!r}")
    if value < low:
        raise ValueError(f"gradcheck: {name} must be >= {low}, got {name}={value!r}")
    return int(value)


def _first_bad(mask: np.ndarray) -> tuple[int, ...]:
    return tuple(int(i) for i in np.argwhere(mask)[0])


def _check_inputs(inputs: Any, eps: float) -> tuple[list[Tensor], list[int]]:
    inputs = [inputs] if isinstance(inputs, Tensor) else inputs
    if not isinstance(inputs, Sequence) or isinstance(inputs, str):
        raise TypeError(
            f"gradcheck: inputs must be a Tensor or a list/tuple of Tensors, got "
            f"{type(inputs).__name__}"
        )
    inputs = list(inputs)
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
        if not inputs[i].data.flags.writeable:
            raise ValueError(
                f"gradcheck: input {i} (shape {inputs[i].shape}) is read-only; gradcheck "
                "perturbs inputs in place (and restores them): pass a writeable copy"
            )
    for i, t in enumerate(inputs):
        x = t.data
        if x.dtype.kind in "fc" and not np.all(np.isfinite(x)):
            where = _first_bad(~np.isfinite(x))
            raise ValueError(
                f"gradcheck: input {i} (shape {t.shape}) holds {np.sum(~np.isfinite(x))} "
                f"non-finite value(s), e.g. {x[where]} at {where}; gradients are not defined "
                "there, so nothing could be checked"
            )
    for i in checked:
        x = inputs[i].data
        # The step actually taken is (x+eps) - (x-eps); where rounding eats most of it the
        # difference quotient is noise.
        coarse = ((x + eps) - (x - eps)) < eps
        if np.any(coarse):
            where = _first_bad(coarse)
            raise ValueError(
                f"gradcheck: eps={eps:g} is too small for input {i}: at {where} the value "
                f"{x[where]:g} cannot be moved by eps in float64; scale the input or raise eps"
            )
    return inputs, checked


# -- evaluating fn ---------------------------------------------------------------------------


def _outputs(fn: Callable[..., Any], inputs: Sequence[Tensor]) -> list[Tensor]:
    out = fn(*inputs)
    outs = list(out) if isinstance(out, tuple | list) else [out]
    if not outs:
        raise ValueError("gradcheck: fn returned no outputs")
    for k, o in enumerate(outs):
        if not isinstance(o, Tensor):
            raise TypeError(
                f"gradcheck: fn must return Tensors, output {k} is a {type(o).__name__}"
            )
    # integer / bool outputs (indices, masks) have no gradient: skipped, as in PyTorch
    floats = [o for o in outs if o.dtype.kind == "f"]
    if not floats:
        o = outs[0]
        raise ValueError(
            f"gradcheck: output 0 of fn is {o.dtype} (shape {o.shape}) and no output is "
            "floating-point: gradients are defined for floating-point outputs only"
        )
    return floats


def _evaluate(fn: Callable[..., Any], inputs: Sequence[Tensor]) -> np.ndarray:
    """All outputs of fn, flattened into one float64 vector (no graph recorded)."""
    from minires.autograd import no_grad

    with no_grad():
        outs = _outputs(fn, inputs)
    return np.concatenate([np.asarray(o.data, dtype=np.float64).ravel() for o in outs])


def _check_outputs(
    fn: Callable[..., Any], inputs: Sequence[Tensor]
) -> tuple[np.ndarray, list[str]]:
    """The outputs at the given inputs, flattened (see `_evaluate`), and descriptions of
    non-finite values; refuses outputs a float64 check cannot use."""
    from minires.autograd import no_grad

    with no_grad():
        outs = _outputs(fn, inputs)
    problems = []
    for k, o in enumerate(outs):
        if o.dtype != np.float64:
            raise ValueError(
                f"gradcheck: output {k} of fn is {o.dtype} (shape {o.shape}); the check needs "
                "float64 outputs (float32 rounding swamps finite differences). Does fn cast, "
                "or use float32 parameters (model.double())?"
            )
        bad = ~np.isfinite(o.data)
        if np.any(bad):
            where = _first_bad(bad)
            problems.append(
                f"output {k} (shape {o.shape}) is not finite at the given inputs: "
                f"{int(bad.sum())} value(s), e.g. {o.data[where]} at {where}; nothing compared"
            )
    return np.concatenate([o.data.ravel() for o in outs]), problems


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
            offset, seeds = 0, []
            for o in outs:
                seeds.append(u[offset : offset + o.size].reshape(o.shape))
                offset += o.size
            live = [(o, s) for o, s in zip(outs, seeds) if o.requires_grad]
            for n, (o, s) in enumerate(live):
                # Outputs may share a graph: keep it until the last output's backward.
                o.backward(s.astype(o.dtype), retain_graph=n < len(live) - 1)
            for slot, i in enumerate(checked):
                if inputs[i].grad is not None:
                    result[slot][r] = inputs[i].grad
    finally:
        for t, g in zip(inputs, saved):
            t.grad = g
    return result


# -- the check -------------------------------------------------------------------------------


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
        fn: takes the tensors of ``inputs`` and returns a float64 Tensor or a tuple of them.
        inputs: the tensors; those with ``requires_grad=True`` are checked and must be
            float64 (float32 is refused: its rounding error swamps the difference quotient).
            Non-finite values are refused. They are perturbed in place and restored
            bit for bit, also when ``fn`` raises (the exception propagates unchanged).
        eps: finite-difference step (finite, > 0).
        atol, rtol: an element passes when ``|analytic - numeric| <= atol + rtol*|numeric|``
            (finite, >= 0).
        raise_exception: raise `GradcheckError` with the report on failure.
        fast_mode: one random projection ``u^T J v`` per input (cheap; says that an input's
            gradient is wrong, not where). Kink elements are found by bisection and left out.
        n_projections: number of random upstream gradients ``u`` (default mode), >= 1.
        full_jacobian: use every standard basis vector as ``u`` (the whole Jacobian;
            one backward per output element). Not together with ``fast_mode``.
        seed: seed of the random projections (int >= 0).

    Returns:
        `GradcheckResult`: truthy on success; ``str(result)`` is the per-input report of
        the worst element (index, analytic, numeric, absolute and relative error) and a
        footer saying what relative errors correct and wrong ops show.

    Raises:
        GradcheckError: on failure when ``raise_exception``; TypeError/ValueError for bad
        arguments, naming the argument.
    """
    if not callable(fn):
        raise TypeError(f"gradcheck: fn must be callable, got {type(fn).__name__}")
    eps = _real("eps", eps, positive=True)
    atol = _real("atol", atol, positive=False)
    rtol = _real("rtol", rtol, positive=False)
    raise_exception = _flag("raise_exception", raise_exception)
    fast_mode = _flag("fast_mode", fast_mode)
    full_jacobian = _flag("full_jacobian", full_jacobian)
    n_projections = _int("n_projections", n_projections, 1)
    seed = _int("seed", seed, 0)
    if fast_mode and full_jacobian:
        raise ValueError("gradcheck: fast_mode and full_jacobian exclude each other; pick one")
    inputs, checked = _check_inputs(inputs, eps)

    # Restore every input bit for bit whatever happens (fn may raise midway).
    saved = [(t, t.data, t.data.copy()) for t in inputs]
    try:
        result = _run(
            fn, inputs, checked, eps, atol, rtol, fast_mode, n_projections, full_jacobian, seed
        )
    finally:
        for t, arr, copy in saved:
            t.data = arr
            np.copyto(arr, copy)
    for r in result.inputs:
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


def _run(fn, inputs, checked, eps, atol, rtol, fast_mode, n_projections, full_jacobian, seed):
    y0, problems = _check_outputs(fn, inputs)
    if fast_mode:
        mode = "fast mode: one random projection per input"
    elif full_jacobian:
        mode = "full Jacobian"
    else:
        mode = f"{n_projections} random projection(s)"
    if problems:
        reports = [InputReport(i, inputs[i].shape, passed=False) for i in checked]
        for r in reports:
            r.problems.append("not compared (non-finite output)")
        return GradcheckResult(reports, mode, problems, (eps, atol, rtol))
    rng = np.random.default_rng(seed)
    if fast_mode:
        reports = _fast(fn, inputs, checked, y0, eps, atol, rtol, rng)
    else:
        us = np.eye(y0.size) if full_jacobian else rng.standard_normal((n_projections, y0.size))
        rows = "output" if full_jacobian else "projection"
        reports = _elementwise(fn, inputs, checked, y0, us, eps, atol, rtol, rows)
    return GradcheckResult(reports, mode, [], (eps, atol, rtol))


_NOTHING_COMPARED = (
    "every element sits on a kink, so nothing was compared (move the input off the "
    "non-differentiable points)"
)


def _kink(y0, y_plus, y_minus, h, half, atol, rtol) -> bool:
    """Whether fn has a kink within the step h of the point: y0 = fn(x), y_plus / y_minus
    = fn(x +- h) (h along the input or a direction).

    The one-sided slopes differ by gap = |y+ - 2 y0 + y-| / h: about h |f''| where fn is
    smooth, so it halves with the step, and about the jump of the slope where a kink lies
    within it, so it does not. A gap beyond the tolerance and the rounding noise of the
    values is a kink only if it stays above 3/4 of itself at half the step (`half()` ->
    (fn(x + h/2), fn(x - h/2)), evaluated only then). Judged by tolerance alone, a
    smooth function with large curvature (or a tight atol / rtol) would have every
    element "on a kink" and left out, and a wrong backward would pass. A NaN slope is no
    kink: the non-finite numeric gradient then fails the check.
    """
    with np.errstate(invalid="ignore", over="ignore"):
        left, right = (y0 - y_minus) / h, (y_plus - y0) / h
        gap = np.abs(right - left)
        scale = np.maximum(np.abs(left), np.abs(right))
        noise = 64 * np.finfo(np.float64).eps * (np.abs(y0) + np.abs(y_plus) + np.abs(y_minus)) / h
        suspect = gap > 10 * (atol + rtol * scale) + noise
        if not suspect.any():
            return False
        y_plus_half, y_minus_half = half()
        gap_half = np.abs(y_plus_half - 2 * y0 + y_minus_half) / (h / 2)
        return bool(np.any(suspect & (gap_half > 0.75 * gap)))


def _elementwise(fn, inputs, checked, y0, us, eps, atol, rtol, rows) -> list[InputReport]:
    analytic = _analytic_vjps(fn, inputs, checked, us)
    reports = []
    for slot, i in enumerate(checked):
        x = inputs[i].data
        numeric = np.zeros((len(us),) + x.shape)
        kinks: list[tuple[int, ...]] = []
        for idx in np.ndindex(x.shape):
            orig = x[idx]

            def moved(h, x=x, idx=idx, orig=orig):
                """fn with this element at orig + h and at orig - h."""
                try:
                    x[idx] = orig + h
                    y_plus = _evaluate(fn, inputs)
                    x[idx] = orig - h
                    return y_plus, _evaluate(fn, inputs)
                finally:
                    x[idx] = orig

            y_plus, y_minus = moved(eps)
            # Divide by the step float64 actually took, not by 2*eps.
            step = (orig + eps) - (orig - eps)
            numeric[(slice(None),) + idx] = us @ (y_plus - y_minus) / step
            if _kink(y0, y_plus, y_minus, step / 2, lambda: moved(eps / 2), atol, rtol):
                kinks.append(idx)
        reports.append(_compare(i, x.shape, analytic[slot], numeric, kinks, atol, rtol, rows))
    return reports


def _compare(i, shape, analytic, numeric, kinks, atol, rtol, rows) -> InputReport:
    """Worst element of one input over all rows (projections or outputs).

    ``analytic``/``numeric`` are shaped (rows, *shape). Kink elements are left out unless
    a value there is non-finite; a non-finite value is never within tolerance. The worst
    element is the one furthest out of tolerance, ``abs_err / (atol + rtol*|numeric|)``:
    the measure the pass/fail decision uses (the largest absolute error can sit at a
    large gradient that is well within its relative tolerance).
    """
    finite = np.isfinite(analytic) & np.isfinite(numeric)
    counted = np.ones(analytic.shape, bool)
    for k in kinks:
        counted[(slice(None),) + k] = False
    counted |= ~finite  # non-finite stays a failure even on a kink
    mag = np.where(finite, np.abs(numeric), 0.0)
    with np.errstate(invalid="ignore", over="ignore"):
        abs_err = np.where(finite, np.abs(analytic - numeric), np.inf)
    tol = atol + rtol * mag
    # Relative to |numeric|, but never to less than atol/rtol: below that atol dominates
    # the tolerance, and the rounding noise of the difference quotient (~1e-9 absolute)
    # would make a near-zero gradient look wrong. So rel err <= rtol always passes.
    # 0/0 counts as 0, x/0 as inf (atol and rtol may be 0).
    denom = np.maximum(mag, atol / rtol if rtol > 0 else atol)
    rel_err = np.divide(abs_err, denom, out=np.where(abs_err > 0, np.inf, 0.0), where=denom > 0)
    excess = np.divide(abs_err, tol, out=np.where(abs_err > 0, np.inf, 0.0), where=tol > 0)
    # Written as "not within" so that NaN can never count as a pass.
    bad = ~(abs_err <= tol) & counted
    rep = InputReport(i, tuple(shape), kinks=kinks)
    rep.passed = not bool(bad.any())
    if not counted.any():
        if kinks:  # a check that compared nothing has not passed
            rep.passed = False
            rep.problems.append(_NOTHING_COMPARED)
        return rep
    where = np.unravel_index(int(np.argmax(np.where(counted, excess, -1.0))), excess.shape)
    rep.max_abs_error = float(abs_err[counted].max())
    rep.max_rel_error = float(rel_err[counted].max())
    rep.worst_index = tuple(int(w) for w in where[1:])
    rep.analytic, rep.numeric = float(analytic[where]), float(numeric[where])
    rep.abs_error, rep.rel_error = float(abs_err[where]), float(rel_err[where])
    if analytic.shape[0] > 1 or rows == "output":
        rep.row = f" ({rows} {int(where[0])})"
    rep.n_failed = int(bad.reshape(bad.shape[0], -1).any(axis=0).sum())
    for side, vals in (("analytic", analytic), ("numeric", numeric)):
        nf = ~np.isfinite(vals)
        if not np.any(nf):
            continue
        w = _first_bad(nf)
        at = (
            f"at {int(np.any(nf, axis=0).sum())} element(s), e.g. {w[1:]} ({vals[w]})"
            if rows
            else f"in u^T J v ({vals[w]})"
        )
        why = "backward returned it" if side == "analytic" else "fn(x +- eps) is not finite"
        rep.problems.append(f"{side} gradient not finite {at}: {why}")
    return rep


def _fast(fn, inputs, checked, y0, eps, atol, rtol, rng) -> list[InputReport]:
    u = rng.standard_normal(y0.size)
    analytic = _analytic_vjps(fn, inputs, checked, u[None])
    reports = []
    for slot, i in enumerate(checked):
        x = inputs[i].data
        # Magnitudes in [0.5, 1.5]: every element moves by about eps (as in the default
        # mode, so "on a kink" means the same), and continuous values keep errors at two
        # elements from cancelling.
        v = rng.choice([-1.0, 1.0], x.shape) * rng.uniform(0.5, 1.5, x.shape)
        a, numeric, kinks = _fast_input(fn, inputs, x, y0, u, analytic[slot][0], v, eps, atol, rtol)
        rep = _compare(i, x.shape, np.array([a]), np.array([numeric]), [], atol, rtol, "")
        rep.worst_index, rep.kinks, rep.n_failed = None, kinks, 0
        if x.size and len(kinks) == x.size:
            rep.passed = False
            rep.problems.append(_NOTHING_COMPARED)
        reports.append(rep)
    return reports


def _fast_input(fn, inputs, x, y0, u, g, v, eps, atol, rtol):
    """(analytic, numeric, kinks) of ``u^T J v`` for the input whose data is ``x``.

    Elements on a kink are found by bisection (one-sided slopes along ``v`` restricted to
    halves of the elements) and set to zero in ``v`` on both sides: they are not moved
    in fn and not counted in the analytic projection, so the others are still checked.
    """
    orig = x.copy()

    def along(mask: np.ndarray, h: float = eps) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """y(x + h v), y(x - h v) moving only the elements in ``mask``; the step taken."""
        plus = np.where(mask, orig + h * v, orig)
        minus = np.where(mask, orig - h * v, orig)
        try:
            x[...] = plus
            y_plus = _evaluate(fn, inputs)
            x[...] = minus
            y_minus = _evaluate(fn, inputs)
        finally:
            x[...] = orig
        return y_plus, y_minus, plus - minus

    def kinked(mask: np.ndarray, y_plus: np.ndarray, y_minus: np.ndarray) -> bool:
        return _kink(y0, y_plus, y_minus, eps, lambda: along(mask, eps / 2)[:2], atol, rtol)

    def bisect(flat: np.ndarray) -> list[int]:
        """Elements of ``flat`` (which together show a kink) that sit on one."""
        if flat.size == 1:
            return [int(flat[0])]
        found: list[int] = []
        for half in np.array_split(flat, 2):
            mask = _mask(half, x.shape)
            if kinked(mask, *along(mask)[:2]):
                found += bisect(half)
        return found

    active = np.ones(x.shape, bool)
    while True:
        y_plus, y_minus, step = along(active)
        if not active.any() or not kinked(active, y_plus, y_minus):
            break
        found = bisect(np.flatnonzero(active))
        if not found:
            # No element shows a kink on its own: the one-sided slopes along the whole
            # direction differ by curvature (eps * v^T H v grows with the number of
            # elements moved), which the central difference cancels. Nothing to leave out.
            break
        active.flat[found] = False
    kinks = [tuple(int(w) for w in np.unravel_index(f, x.shape)) for f in np.flatnonzero(~active)]
    numeric = float(u @ (y_plus - y_minus) / (2 * eps))
    analytic = float(np.sum(g * step) / (2 * eps))  # the step float64 took, kinks at 0
    return analytic, numeric, kinks


def _mask(flat: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    m = np.zeros(shape, bool)
    m.flat[flat] = True
    return m
