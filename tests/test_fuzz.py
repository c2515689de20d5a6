"""Fuzz campaign over the ops: random shapes (size 1 and odd sizes included), dtypes,
memory layouts and arguments. Every case either

* matches the NumPy reference backend (the Numba backend on an odd memory layout against
  the reference on a plain C-contiguous copy) and, where torch is installed, PyTorch in
  float64 -- values, gradients, and batch-norm running statistics -- and leaves its
  inputs untouched; or
* raises a ValueError/TypeError whose message names the op or the argument at fault.

Nothing else: no IndexError (except indexing out of range, as in Python, NumPy and
PyTorch), ZeroDivisionError, KeyError or Numba error. The default run is fast
(``max_examples`` ~100 per test); ``pytest -m slow tests/test_fuzz.py`` runs a bigger
campaign.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import mutually_broadcastable_shapes

import minires as mr
import minires.functional as F

try:
    import torch
    import torch.nn.functional as TF
except ImportError:  # the NumPy reference still checks everything but the torch oracle
    torch = TF = None

_COMMON = dict(deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
FAST = settings(max_examples=120, **_COMMON)
BIG = settings(max_examples=1500, **_COMMON)
LAYOUTS = ("c", "fortran", "strided", "negative", "readonly", "unaligned")
OK = (ValueError, TypeError)


# -- cases -----------------------------------------------------------------------------------


@dataclass
class Case:
    """One op call: ``fn(*tensors)`` on minires and ``torch_fn(*tensors)`` on torch (None:
    no torch oracle). ``fn`` may return ``(out, [extra arrays])`` (batch-norm's running
    statistics), compared like the output."""

    name: str
    fn: Callable[..., Any]
    arrays: list[np.ndarray]
    torch_fn: Callable[..., Any] | None = None
    grad: list[bool] = field(default_factory=list)  # which inputs require grad

    def __post_init__(self) -> None:
        if not self.grad:
            self.grad = [a.dtype.kind == "f" for a in self.arrays]


def _data(rng: np.random.Generator, shape, dtype=np.float64, away_from_zero=False):
    x = np.asarray(rng.standard_normal(shape))
    if away_from_zero:  # denominators, and no relu/max ties at 0
        x = np.where(x < 0, -1.0, 1.0) * (0.5 + np.abs(x))
    return np.asarray(x, dtype=dtype)


def _dtype(draw) -> np.dtype:
    return np.dtype(draw(st.sampled_from([np.float32, np.float64])))


@st.composite
def conv_cases(draw):
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    kind = draw(st.sampled_from(["dense", "groups", "depthwise"]))
    if kind == "dense":
        g, c_in, c_out = 1, draw(st.integers(1, 4)), draw(st.integers(1, 4))
    elif kind == "groups":
        g = draw(st.integers(2, 3))
        c_in, c_out = g * draw(st.integers(1, 2)), g * draw(st.integers(1, 2))
    else:
        c_in = g = draw(st.integers(1, 4))
        c_out = c_in * draw(st.integers(1, 2))
    n, h, w = draw(st.integers(1, 2)), draw(st.integers(1, 7)), draw(st.integers(1, 7))
    kh, kw = draw(st.integers(1, 3)), draw(st.integers(1, 3))

    def arg(lo, hi):
        return draw(st.one_of(st.integers(lo, hi), st.tuples(st.integers(lo, hi),
                                                              st.integers(lo, hi))))  # fmt: skip

    stride, padding, dilation = arg(1, 3), arg(0, 2), arg(1, 2)
    bias = draw(st.booleans())
    dt = _dtype(draw)
    arrays = [_data(rng, (n, c_in, h, w), dt), _data(rng, (c_out, c_in // g, kh, kw), dt)]
    if bias:
        arrays.append(_data(rng, (c_out,), dt))

    def fn(x, wt, b=None):
        return F.conv2d(x, wt, b, stride=stride, padding=padding, dilation=dilation, groups=g)

    def tfn(x, wt, b=None):
        return TF.conv2d(x, wt, b, stride=stride, padding=padding, dilation=dilation, groups=g)

    return Case(f"conv2d[{kind} s{stride} p{padding} d{dilation}]", fn, arrays, tfn)


@st.composite
def pool_cases(draw):
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    kind = draw(st.sampled_from(["max", "avg", "adaptive"]))
    shape = (draw(st.integers(1, 2)), draw(st.integers(1, 3)), draw(st.integers(1, 7)),
             draw(st.integers(1, 7)))  # fmt: skip
    dt = _dtype(draw)
    x = _data(rng, shape, dt)
    if kind == "adaptive":
        out = draw(st.one_of(st.integers(1, 4), st.tuples(st.integers(1, 4), st.integers(1, 4))))
        return Case(f"adaptive_avg_pool2d[{out}]", lambda t: F.adaptive_avg_pool2d(t, out), [x],
                    lambda t: TF.adaptive_avg_pool2d(t, out))  # fmt: skip
    k = draw(st.one_of(st.integers(1, 3), st.tuples(st.integers(1, 3), st.integers(1, 3))))
    stride = draw(st.one_of(st.none(), st.integers(1, 3)))
    padding = draw(st.integers(0, 1))
    ours, theirs = (F.max_pool2d, "max_pool2d") if kind == "max" else (F.avg_pool2d, "avg_pool2d")

    def tfn(t):
        return getattr(TF, theirs)(t, k, stride, padding)

    return Case(f"{theirs}[k{k} s{stride} p{padding}]", lambda t: ours(t, k, stride, padding),
                [x], tfn)  # fmt: skip


@st.composite
def batch_norm_cases(draw):
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    two_d = draw(st.booleans())
    n, c = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    shape = (n, c) if two_d else (n, c, draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    training, affine = draw(st.booleans()), draw(st.booleans())
    momentum = draw(st.sampled_from([0.0, 0.1, 0.5, 1.0]))
    eps = draw(st.sampled_from([1e-5, 1e-3, 0.5]))
    dt = _dtype(draw)
    x = _data(rng, shape, dt)
    rm0, rv0 = _data(rng, (c,), dt), np.abs(_data(rng, (c,), dt)) + 0.5
    arrays = [x] + ([_data(rng, (c,), dt), _data(rng, (c,), dt)] if affine else [])

    def fn(t, w=None, b=None):
        rm, rv = rm0.copy(), rv0.copy()
        out = F.batch_norm(t, rm, rv, w, b, training=training, momentum=momentum, eps=eps)
        return out, [rm, rv]

    def tfn(t, w=None, b=None):
        rm, rv = torch.from_numpy(rm0.astype(np.float64)), torch.from_numpy(rv0.astype(np.float64))
        out = TF.batch_norm(t, rm, rv, w, b, training=training, momentum=momentum, eps=eps)
        return out, [rm.numpy(), rv.numpy()]

    return Case(f"batch_norm[{shape} train={training} m={momentum}]", fn, arrays, tfn)


@st.composite
def dense_cases(draw):
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    dt = _dtype(draw)
    kind = draw(st.sampled_from(["linear", "relu", "cross_entropy", "log_softmax", "sum",
                                 "mean", "max"]))  # fmt: skip
    batch = tuple(draw(st.lists(st.integers(1, 3), max_size=2)))
    if kind == "linear":
        i, o, bias = draw(st.integers(1, 4)), draw(st.integers(1, 4)), draw(st.booleans())
        arrays = [_data(rng, (*batch, i), dt), _data(rng, (o, i), dt)]
        if bias:
            arrays.append(_data(rng, (o,), dt))
        return Case("linear", F.linear, arrays, TF.linear if TF else None)
    if kind == "cross_entropy":
        n, k = draw(st.integers(1, 4)), draw(st.integers(1, 5))
        target = rng.integers(0, k, n)
        return Case("cross_entropy", lambda lg: F.cross_entropy(lg, target),
                    [_data(rng, (n, k), dt)],
                    lambda lg: TF.cross_entropy(lg, torch.from_numpy(target)))  # fmt: skip
    shape = (*batch, *draw(st.lists(st.integers(1, 4), min_size=1, max_size=2)))
    x = _data(rng, shape, dt, away_from_zero=True)
    if kind == "relu":
        return Case("relu", F.relu, [x], TF.relu if TF else None)
    axis = draw(st.integers(-len(shape), len(shape) - 1))
    if kind == "log_softmax":
        return Case(f"log_softmax[{axis}]", lambda t: F.log_softmax(t, axis), [x],
                    lambda t: TF.log_softmax(t, axis))  # fmt: skip
    keep = draw(st.booleans())
    if kind == "max":  # distinct values: no tie-sharing conventions involved
        x = (rng.permutation(x.size).reshape(shape) / x.size - 0.5).astype(dt)
        return Case(f"max[{axis}]", lambda t: t.max(axis, keep), [x],
                    lambda t: t.amax(axis, keep))  # fmt: skip
    return Case(f"{kind}[{axis}]", lambda t: getattr(t, kind)(axis, keep), [x],
                lambda t: getattr(t, kind)(axis, keep))  # fmt: skip


@st.composite
def elementwise_cases(draw):
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    shapes = draw(mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=3,
                                                max_side=3)).input_shapes  # fmt: skip
    op = draw(st.sampled_from(["+", "-", "*", "/", "**"]))
    dt = _dtype(draw)
    a = _data(rng, shapes[0], dt, away_from_zero=True)
    b = _data(rng, shapes[1], dt, away_from_zero=True)
    if op == "**":
        a = np.asarray(np.abs(a))  # real powers of positive bases (asarray: 0-d stays an array)
    fns = {"+": lambda x, y: x + y, "-": lambda x, y: x - y, "*": lambda x, y: x * y,
           "/": lambda x, y: x / y, "**": lambda x, y: x**y}  # fmt: skip
    return Case(f"a{op}b {shapes}", fns[op], [a, b], fns[op])


@st.composite
def shape_cases(draw):
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    dt = _dtype(draw)
    shape = tuple(draw(st.lists(st.integers(1, 4), min_size=1, max_size=4)))
    x = _data(rng, shape, dt)
    nd = len(shape)
    kind = draw(st.sampled_from(["reshape", "transpose", "flatten", "cat", "index", "fancy"]))
    if kind == "reshape":
        target = list(rng.permutation(shape))
        if draw(st.booleans()):
            target[draw(st.integers(0, len(target) - 1))] = -1
        target = tuple(int(v) for v in target)
        return Case(f"reshape{target}", lambda t: t.reshape(target), [x],
                    lambda t: t.reshape(target))  # fmt: skip
    if kind == "transpose":
        perm = tuple(int(p) - nd * draw(st.booleans()) for p in rng.permutation(nd))
        return Case(f"transpose{perm}", lambda t: t.transpose(perm), [x],
                    lambda t: t.permute(perm))  # fmt: skip
    if kind == "flatten":
        s, e = draw(st.integers(-nd, nd - 1)), draw(st.integers(-nd, nd - 1))
        return Case(f"flatten({s},{e})", lambda t: F.flatten(t, s, e), [x],
                    lambda t: torch.flatten(t, s, e))  # fmt: skip
    if kind == "cat":
        axis = draw(st.integers(-nd, nd - 1))
        k = draw(st.integers(1, 3))
        arrays = []
        for _ in range(k):
            s = list(shape)
            s[axis] = draw(st.integers(1, 3))
            arrays.append(_data(rng, tuple(s), dt))
        return Case(f"cat(axis={axis})", lambda *ts: mr.cat(list(ts), axis=axis), arrays,
                    lambda *ts: torch.cat(list(ts), dim=axis))  # fmt: skip
    if kind == "index":
        index = tuple(
            draw(st.one_of(
                st.integers(-n, n - 1),
                st.builds(slice, st.one_of(st.none(), st.integers(-n, n)),
                          st.one_of(st.none(), st.integers(-n, n)),
                          st.one_of(st.none(), st.sampled_from([1, 2, 3, -1, -2]))),
            ))
            for n in shape[: draw(st.integers(1, nd))]
        )  # fmt: skip
        has_neg = any(isinstance(i, slice) and (i.step or 1) < 0 for i in index)
        return Case(
            f"x[{index}]", lambda t: t[index], [x], None if has_neg else (lambda t: t[index])
        )  # torch: no negative steps
    idx = rng.integers(-shape[0], shape[0], draw(st.integers(1, 5)))  # repeats accumulate
    return Case(f"x[{idx.tolist()}]", lambda t: t[idx], [x], lambda t: t[torch.from_numpy(idx)])


# -- running and comparing -------------------------------------------------------------------


def _layout(a: np.ndarray, kind: str) -> np.ndarray:
    """The same values in another memory layout."""
    if kind == "readonly":
        b = np.array(a)
        b.flags.writeable = False
        return b
    if kind == "unaligned":  # the data starts one byte into a buffer
        buf = np.zeros(a.nbytes + 1, np.uint8)
        b = np.frombuffer(buf.data, dtype=a.dtype, count=a.size, offset=1).reshape(a.shape)
        b[...] = a
        return b
    if a.ndim == 0 or kind == "c":
        return a.copy()
    if kind == "fortran":
        return np.asfortranarray(a)
    every_other = tuple(slice(None, None, 2) for _ in a.shape)
    if kind == "strided":
        big = np.zeros(tuple(2 * n for n in a.shape), a.dtype)
        big[every_other] = a
        return big[every_other]
    flip = tuple(slice(None, None, -1) for _ in a.shape)
    return np.ascontiguousarray(a[flip])[flip]  # negative strides


def _upstream(shape, dtype, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def _run(case: Case, arrays: list[np.ndarray], backend: str):
    """(output, extras, input grads) of the minires call, or the exception raised."""
    with mr.use_backend(backend):
        ts = [mr.Tensor(a, requires_grad=g) for a, g in zip(arrays, case.grad)]
        res = case.fn(*ts)
        out, extras = res if isinstance(res, tuple) else (res, [])
        grads = []
        if out.requires_grad:
            out.backward(_upstream(out.shape, out.dtype))
            grads = [t.grad for t, g in zip(ts, case.grad) if g]
    return np.array(out.data), [np.array(e) for e in extras], grads


def _run_torch(case: Case, arrays: list[np.ndarray]):
    ts = [torch.tensor(np.asarray(a, np.float64) if a.dtype.kind == "f" else a,
                       requires_grad=g) for a, g in zip(arrays, case.grad)]  # fmt: skip
    res = case.torch_fn(*ts)
    out, extras = res if isinstance(res, tuple) else (res, [])
    grads = []
    if out.requires_grad:
        out.backward(torch.from_numpy(_upstream(tuple(out.shape), np.float64)))
        grads = [t.grad.numpy() if t.grad is not None else np.zeros(t.shape)
                 for t, g in zip(ts, case.grad) if g]  # fmt: skip
    return out.detach().numpy(), [np.asarray(e) for e in extras], grads


def _close(actual, expected, dtype, what: str, case: Case) -> None:
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.shape == expected.shape, f"{case.name}: {what} shape {actual.shape} vs " \
                                           f"{expected.shape}"  # fmt: skip
    scale = max(1.0, float(np.max(np.abs(expected), initial=0.0)))
    tol = 1e-9 if dtype == np.float64 else 1e-4
    np.testing.assert_allclose(actual, expected, rtol=tol, atol=tol * scale,
                               err_msg=f"{case.name}: {what}")  # fmt: skip


def check_case(case: Case, layout: str) -> None:
    """The contract: a ValueError/TypeError naming the problem, or the reference's (and
    torch's) values and gradients, with the inputs left unchanged."""
    originals = [a.copy() for a in case.arrays]
    dtype = case.arrays[0].dtype
    try:
        ref = _run(case, [a.copy() for a in case.arrays], "numpy")
    except OK as exc:
        assert str(exc), f"{case.name}: empty {type(exc).__name__} message"
        # the Numba backend and any layout must refuse the same call the same way
        with pytest.raises(type(exc)):
            _run(case, [_layout(a, layout) for a in case.arrays], "numba")
        if torch is not None and case.torch_fn is not None:
            with pytest.raises(Exception):  # noqa: B017 - torch's own error types vary
                _run_torch(case, case.arrays)
        return
    inputs = [_layout(a, layout) for a in case.arrays]
    got = _run(case, inputs, "numba")
    for a, orig in zip(inputs, originals):
        np.testing.assert_array_equal(a, orig, err_msg=f"{case.name}: input modified")
    out, extras, grads = got
    _close(out, ref[0], dtype, "output", case)
    assert out.dtype == ref[0].dtype, f"{case.name}: dtype {out.dtype} vs {ref[0].dtype}"
    for i, (e, r) in enumerate(zip(extras, ref[1])):
        _close(e, r, dtype, f"state {i}", case)
    assert len(grads) == len(ref[2])
    for i, (g, r) in enumerate(zip(grads, ref[2])):
        _close(g, r, dtype, f"grad {i}", case)
    if torch is None or case.torch_fn is None:
        return
    t_out, t_extras, t_grads = _run_torch(case, case.arrays)
    _close(out, t_out, dtype, "output vs torch", case)
    for i, (e, r) in enumerate(zip(extras, t_extras)):
        _close(e, r, dtype, f"state {i} vs torch", case)
    for i, (g, r) in enumerate(zip(grads, t_grads)):
        _close(g, r, dtype, f"grad {i} vs torch", case)


FAMILIES = {
    "conv2d": conv_cases(),
    "pools": pool_cases(),
    "batch_norm": batch_norm_cases(),
    "dense": dense_cases(),
    "elementwise": elementwise_cases(),
    "shape": shape_cases(),
}


@pytest.mark.parametrize("family", list(FAMILIES))
@settings(FAST, max_examples=150)
@given(data=st.data(), layout=st.sampled_from(LAYOUTS))
def test_fuzz_ops_match_reference_and_torch(family, data, layout):
    check_case(data.draw(FAMILIES[family], label="case"), layout)


@pytest.mark.slow
@pytest.mark.parametrize("family", list(FAMILIES))
@BIG
@given(data=st.data(), layout=st.sampled_from(LAYOUTS))
def test_fuzz_campaign_slow(family, data, layout):
    check_case(data.draw(FAMILIES[family], label="case"), layout)


# -- dtypes ------------------------------------------------------------------------------------


def _wdtype(t: mr.Tensor) -> np.dtype:
    """A weight in the input's float dtype (mixing float32 and float64 is refused)."""
    return t.dtype.newbyteorder("=") if t.dtype.kind == "f" else np.dtype(np.float32)


# One call per op on a small input; each dtype below either is converted to a native
# float (then the result equals the one from the converted input) or refused (TypeError).
DTYPE_OPS: dict[str, Callable[[Any], Any]] = {
    "relu": F.relu,
    "add": lambda t: t + t,
    "mul_scalar": lambda t: t * 2.0,
    "sum": lambda t: t.sum(),
    "reshape": lambda t: t.reshape(-1),
    "conv2d": lambda t: F.conv2d(t, mr.tensor(np.ones((2, 2, 3, 3), _wdtype(t)))),
    "max_pool2d": lambda t: F.max_pool2d(t, 2),
    "avg_pool2d": lambda t: F.avg_pool2d(t, 2),
    "batch_norm": lambda t: F.batch_norm(t, None, None, training=True),
    "linear": lambda t: F.linear(t, mr.tensor(np.ones((3, 4), _wdtype(t)))),
    "log_softmax": lambda t: F.log_softmax(t, 1),
}
DTYPES = {
    "float32": (np.float32, "exact"),
    "float64": (np.float64, "exact"),
    "float16": (np.float16, np.float32),
    "big-endian f4": (">f4", np.float32),
    "big-endian f8": (">f8", np.float64),
    "int64": (np.int64, "int"),
    "int32": (np.int32, "int"),
    "uint8": (np.uint8, "int"),
    "bool": (np.bool_, "int"),
    "complex64": (np.complex64, "refuse"),
    "complex128": (np.complex128, "refuse"),
    "object": (object, "refuse"),
    "longdouble": (np.longdouble, "refuse"),
}


def _dtype_params():
    for name in DTYPES:
        for op in DTYPE_OPS:
            yield pytest.param(name, op, id=f"{name}-{op}")


@pytest.mark.parametrize("dtype_name, op", list(_dtype_params()))
def test_dtypes_converted_or_refused(dtype_name, op):
    dtype, rule = DTYPES[dtype_name]
    rng = np.random.default_rng(0)
    base = rng.standard_normal((2, 2, 4, 4)) * 3
    if op == "linear":
        base = base[:, 0, 0, :]
    elif op == "log_softmax":
        base = base[:, :, 0, 0]
    raw = base.astype(dtype)
    fn = DTYPE_OPS[op]
    if rule == "refuse":
        with pytest.raises(TypeError, match=str(np.dtype(dtype)) if dtype is not object
                           else "object"):  # fmt: skip
            fn(mr.tensor(raw))
        return
    try:
        got = fn(mr.tensor(raw))
    except TypeError as exc:
        assert rule == "int" and str(exc), f"{op} refused {dtype_name}: {exc}"
        return
    except ValueError as exc:  # e.g. bool arithmetic NumPy itself refuses
        assert rule == "int" and str(exc)
        return
    assert got.dtype.isnative, f"{op} returned a non-native {got.dtype}"
    if rule == "int":
        with mr.use_backend("numpy"):
            expected = fn(mr.tensor(raw.copy()))
        np.testing.assert_array_equal(got.data, expected.data)
        return
    native = raw.astype(np.dtype(dtype).newbyteorder("=")) if rule == "exact" else \
        raw.astype(rule)  # fmt: skip
    with mr.use_backend("numpy"):
        expected = fn(mr.tensor(native))
    assert got.dtype == expected.dtype
    np.testing.assert_allclose(got.data, expected.data, rtol=1e-6, atol=1e-6)


def test_big_endian_relu_and_batchnorm_are_never_garbage():
    """The issue's silent-garbage case: after a native call of the same rank, relu of a
    big-endian array returned negative values and batch-norm running means ~1e304."""
    x = np.random.default_rng(0).standard_normal((2, 3, 4, 4))
    F.relu(mr.tensor(x))  # compile and cache the native specialisation first
    for data in (x.astype(">f8"), x.astype(">f4")):
        try:
            out = F.relu(mr.tensor(data))
        except TypeError:
            continue
        assert (out.data >= 0).all()
        rm, rv = np.zeros(3), np.ones(3)
        try:
            F.batch_norm(mr.tensor(data.astype(np.float64)), rm, rv, training=True)
        except TypeError:
            continue
        assert np.abs(rm).max() < 10


# -- bad arguments -----------------------------------------------------------------------------


def _t(*shape, dtype=np.float32):
    return mr.tensor(np.random.default_rng(0).standard_normal(shape).astype(dtype))


X4, W4 = _t(1, 4, 6, 6), _t(4, 2, 3, 3)

BAD_CALLS: dict[str, Callable[[], Any]] = {
    # conv2d: every argument
    "conv stride 0": lambda: F.conv2d(X4, W4, stride=0, groups=2),
    "conv stride -1": lambda: F.conv2d(X4, W4, stride=-1, groups=2),
    "conv stride 1.5": lambda: F.conv2d(X4, W4, stride=1.5, groups=2),
    "conv stride True": lambda: F.conv2d(X4, W4, stride=True, groups=2),
    "conv stride str": lambda: F.conv2d(X4, W4, stride="1", groups=2),
    "conv stride triple": lambda: F.conv2d(X4, W4, stride=(1, 1, 1), groups=2),
    "conv stride None": lambda: F.conv2d(X4, W4, stride=None, groups=2),
    "conv padding -1": lambda: F.conv2d(X4, W4, padding=-1, groups=2),
    "conv padding (0, -1)": lambda: F.conv2d(X4, W4, padding=(0, -1), groups=2),
    "conv dilation 0": lambda: F.conv2d(X4, W4, dilation=0, groups=2),
    "conv dilation 2.0": lambda: F.conv2d(X4, W4, dilation=2.0, groups=2),
    "conv groups 0": lambda: F.conv2d(X4, W4, groups=0),
    "conv groups -2": lambda: F.conv2d(X4, W4, groups=-2),
    "conv groups 2.0": lambda: F.conv2d(X4, W4, groups=2.0),
    "conv groups True": lambda: F.conv2d(X4, W4, groups=True),
    "conv groups 3 (divisibility)": lambda: F.conv2d(X4, W4, groups=3),
    "conv weight 3-D": lambda: F.conv2d(X4, _t(4, 2, 3), groups=2),
    "conv weight channels": lambda: F.conv2d(X4, W4, groups=1),
    "conv weight empty": lambda: F.conv2d(X4, _t(4, 4, 0, 3)),
    "conv bias shape": lambda: F.conv2d(X4, W4, _t(3), groups=2),
    "conv bias ndarray": lambda: F.conv2d(X4, W4, np.zeros(4, np.float32), groups=2),
    "conv input 2-D": lambda: F.conv2d(_t(4, 6), W4, groups=2),
    "conv empty channels": lambda: F.conv2d(_t(2, 0, 6, 6), W4, groups=2),
    "max_pool empty channels": lambda: F.max_pool2d(_t(2, 0, 6, 6), 2),
    "conv input list": lambda: F.conv2d([[1.0]], W4),
    "conv kernel too big": lambda: F.conv2d(_t(1, 4, 2, 2), W4, groups=2),
    "conv dtype mix": lambda: F.conv2d(X4, _t(4, 2, 3, 3, dtype=np.float64), groups=2),
    # pools
    "max_pool k 0": lambda: F.max_pool2d(X4, 0),
    "max_pool k -1": lambda: F.max_pool2d(X4, -1),
    "max_pool k 2.5": lambda: F.max_pool2d(X4, 2.5),
    "max_pool k True": lambda: F.max_pool2d(X4, True),
    "max_pool k (2,)": lambda: F.max_pool2d(X4, (2,)),
    "max_pool k None": lambda: F.max_pool2d(X4, None),
    "max_pool stride 0": lambda: F.max_pool2d(X4, 2, 0),
    "max_pool padding -1": lambda: F.max_pool2d(X4, 2, 2, -1),
    "max_pool padding > k/2": lambda: F.max_pool2d(X4, 2, 2, 2),
    "max_pool k > input": lambda: F.max_pool2d(_t(1, 1, 2, 2), 3),
    "avg_pool k 0": lambda: F.avg_pool2d(X4, 0),
    "avg_pool stride -2": lambda: F.avg_pool2d(X4, 2, -2),
    "avg_pool int input": lambda: F.avg_pool2d(mr.tensor(np.ones((1, 1, 4, 4), np.int64)), 2),
    "adaptive 0": lambda: F.adaptive_avg_pool2d(X4, 0),
    "adaptive -1": lambda: F.adaptive_avg_pool2d(X4, -1),
    "adaptive 1.5": lambda: F.adaptive_avg_pool2d(X4, 1.5),
    "adaptive (1,)": lambda: F.adaptive_avg_pool2d(X4, (1,)),
    # batch_norm
    "bn momentum -0.1": lambda: F.batch_norm(X4, None, None, training=True, momentum=-0.1),
    "bn momentum 1.5": lambda: F.batch_norm(X4, None, None, training=True, momentum=1.5),
    "bn momentum nan": lambda: F.batch_norm(X4, None, None, training=True, momentum=math.nan),
    "bn momentum str": lambda: F.batch_norm(X4, None, None, training=True, momentum="0.1"),
    "bn eps -1": lambda: F.batch_norm(X4, None, None, training=True, eps=-1.0),
    "bn eps inf": lambda: F.batch_norm(X4, None, None, training=True, eps=math.inf),
    "bn running shape": lambda: F.batch_norm(X4, np.zeros(3), np.ones(3)),
    "bn running int": lambda: F.batch_norm(X4, np.zeros(4, int), np.ones(4, int), training=True),
    "bn running list": lambda: F.batch_norm(X4, [0.0] * 4, [1.0] * 4),
    "bn weight shape": lambda: F.batch_norm(X4, None, None, _t(3), training=True),
    "bn weight ndarray": lambda: F.batch_norm(X4, None, None, np.ones(4), training=True),
    "bn one value per channel": lambda: F.batch_norm(_t(1, 4), None, None, training=True),
    "bn eval without stats": lambda: F.batch_norm(X4, None, None),
    "bn 3-D input": lambda: F.batch_norm(_t(2, 4, 3), None, None, training=True),
    "bn training str": lambda: F.batch_norm(X4, None, None, training="yes"),
    # linear
    "linear weight 3-D": lambda: F.linear(_t(2, 3), _t(1, 4, 3)),
    "linear features": lambda: F.linear(_t(2, 3), _t(4, 5)),
    "linear bias shape": lambda: F.linear(_t(2, 3), _t(4, 3), _t(3)),
    "linear bias list": lambda: F.linear(_t(2, 3), _t(4, 3), [0.0] * 4),
    "linear 0-d input": lambda: F.linear(_t(), _t(4, 3)),
    # shape ops
    "cat axis 3 on 2-D": lambda: mr.cat([_t(2, 2), _t(2, 2)], axis=3),
    "cat axis -3 on 2-D": lambda: mr.cat([_t(2, 2), _t(2, 2)], axis=-3),
    "cat axis 1.0": lambda: mr.cat([_t(2, 2), _t(2, 2)], axis=1.0),
    "cat 0-d": lambda: mr.cat([_t(), _t()]),
    "cat empty": lambda: mr.cat([]),
    "cat shapes": lambda: mr.cat([_t(2, 2), _t(3, 3)]),
    "cat ndim": lambda: mr.cat([_t(2, 2), _t(2, 2, 1)]),
    "cat a tensor": lambda: mr.cat(_t(2, 2)),
    "cat non-tensors": lambda: mr.cat([np.ones(2), np.ones(2)]),
    "cat dtype mix": lambda: mr.cat([_t(2), mr.tensor(np.array([True, False]))]),
    "flatten 5 on 4-D": lambda: F.flatten(X4, 5),
    "flatten -5 on 4-D": lambda: F.flatten(X4, -5),
    "flatten end 4": lambda: F.flatten(X4, 0, 4),
    "flatten start after end": lambda: F.flatten(X4, 3, 1),
    "flatten 1.0": lambda: F.flatten(X4, 1.0),
    "reshape 2.7": lambda: _t(6).reshape(2.7, 3),
    "reshape str": lambda: _t(6).reshape("6"),
    "reshape two -1": lambda: _t(6).reshape(-1, -1),
    "reshape -2": lambda: _t(6).reshape(-2, -3),
    "reshape sizes": lambda: _t(6).reshape(4, 2),
    "reshape -1 no fit": lambda: _t(6).reshape(-1, 4),
    "reshape -1 with 0": lambda: _t(6).reshape(0, -1),
    "transpose not a permutation": lambda: _t(2, 3).transpose((0, 0)),
    "transpose out of range": lambda: _t(2, 3).transpose(0, 5),
    "transpose too many": lambda: _t(2, 3).transpose(0, 1, 2),
    "transpose wrap": lambda: _t(2, 3).transpose(2, 1),
    "pad float": lambda: F.pad(_t(2, 2), (1.5, 1)),
    "pad crops past the input": lambda: F.pad(_t(2, 2), (-3, 1)),
    "pad mode": lambda: F.pad(_t(2, 2), (1, 1), mode="edge"),
    "pad mode type": lambda: F.pad(_t(2, 2), (1, 1), mode=None),
    "pad reflect value": lambda: F.pad(_t(1, 2, 2), (1, 1), mode="reflect", value=1.0),
    "pad reflect dims": lambda: F.pad(_t(1, 2, 2), (1, 1, 1, 1, 1, 1), mode="reflect"),
    "pad reflect too wide": lambda: F.pad(_t(1, 2, 2), (2, 0), mode="reflect"),
    "pad circular too wide": lambda: F.pad(_t(1, 2, 2), (3, 0), mode="circular"),
    "pad replicate empty": lambda: F.pad(_t(1, 2, 0), (1, 0), mode="replicate"),
    # losses
    "ce float targets": lambda: F.cross_entropy(_t(3, 4), np.array([0.0, 1.0, 2.0])),
    "ce bool targets": lambda: F.cross_entropy(_t(3, 4), np.array([True, False, True])),
    "ce target range": lambda: F.cross_entropy(_t(3, 4), np.array([0, 4, 1])),
    "ce negative target": lambda: F.cross_entropy(_t(3, 4), np.array([0, -1, 1])),
    "ce target shape": lambda: F.cross_entropy(_t(3, 4), np.array([[0, 1, 2]])),
    "ce target None": lambda: F.cross_entropy(_t(3, 4), None),
    "ce logits 1-D, target (1,)": lambda: F.cross_entropy(_t(4), np.array([0])),
    "ce int logits": lambda: F.cross_entropy(mr.tensor(np.ones((3, 4), int)), np.zeros(3, int)),
    "log_softmax axis 2 on 2-D": lambda: F.log_softmax(_t(3, 4), 2),
    "log_softmax axis 1.0": lambda: F.log_softmax(_t(3, 4), 1.0),
    "log_softmax 0-d dim 1": lambda: F.log_softmax(_t(), 1),
    "matmul misaligned": lambda: _t(2, 3) @ _t(4, 5),
    "matmul 0-d": lambda: _t() @ _t(3),
    "broadcast": lambda: _t(2, 3) + _t(4, 3),
}


@pytest.mark.parametrize("name", list(BAD_CALLS))
def test_bad_arguments_are_refused_clearly(name):
    with pytest.raises(OK) as info:
        BAD_CALLS[name]()
    message = str(info.value)
    assert len(message) > 15, f"{name}: unhelpful message {message!r}"


BAD_LAYERS: dict[str, Callable[[], Any]] = {
    "Conv2d groups 0": lambda: mr.nn.Conv2d(4, 4, 3, groups=0),
    "Conv2d in_channels 0": lambda: mr.nn.Conv2d(0, 4, 3),
    "Conv2d out_channels -1": lambda: mr.nn.Conv2d(4, -1, 3),
    "Conv2d kernel_size 0": lambda: mr.nn.Conv2d(4, 4, 0),
    "Conv2d kernel_size (3, 0)": lambda: mr.nn.Conv2d(4, 4, (3, 0)),
    "Conv2d padding -1": lambda: mr.nn.Conv2d(4, 4, 3, padding=-1),
    "Conv2d stride 0": lambda: mr.nn.Conv2d(4, 4, 3, stride=0),
    "Conv2d dilation 0": lambda: mr.nn.Conv2d(4, 4, 3, dilation=0),
    "Conv2d in_channels True": lambda: mr.nn.Conv2d(True, 4, 3),
    "Conv2d kernel_size 3.0": lambda: mr.nn.Conv2d(4, 4, 3.0),
    "Conv2d groups 3": lambda: mr.nn.Conv2d(4, 4, 3, groups=3),
    "Conv2d bias 1": lambda: mr.nn.Conv2d(4, 4, 3, bias=1),
    "Conv2d dtype int": lambda: mr.nn.Conv2d(4, 4, 3, dtype=np.int32),
    "BatchNorm2d 0": lambda: mr.nn.BatchNorm2d(0),
    "BatchNorm2d 2.0": lambda: mr.nn.BatchNorm2d(2.0),
    "BatchNorm2d eps -1": lambda: mr.nn.BatchNorm2d(4, eps=-1),
    "BatchNorm2d momentum 2": lambda: mr.nn.BatchNorm2d(4, momentum=2),
    "Linear -1": lambda: mr.nn.Linear(-1, 3),
    "Linear 2.5": lambda: mr.nn.Linear(2.5, 3),
    "MaxPool2d 0": lambda: mr.nn.MaxPool2d(0),
    "MaxPool2d padding": lambda: mr.nn.MaxPool2d(2, padding=3),
    "AvgPool2d stride 0": lambda: mr.nn.AvgPool2d(2, stride=0),
    "AdaptiveAvgPool2d 0": lambda: mr.nn.AdaptiveAvgPool2d(0),
    "Flatten 1.5": lambda: mr.nn.Flatten(1.5),
    "BatchNorm2d channels": lambda: mr.nn.BatchNorm2d(3)(_t(2, 4, 2, 2)),
}


@pytest.mark.parametrize("name", list(BAD_LAYERS))
def test_bad_layer_arguments_are_refused_clearly(name):
    with pytest.raises(OK) as info:
        BAD_LAYERS[name]()
    assert type(BAD_LAYERS[name].__code__) and len(str(info.value)) > 15
    assert name.split()[0] in str(info.value)  # the message names the layer


def test_zero_dim_pieces_and_negative_axes_that_are_fine():
    x = _t(2, 3)
    assert mr.cat([x, x], axis=-1).shape == (2, 6)
    assert F.flatten(_t(2, 3, 4), -2).shape == (2, 12)
    assert F.flatten(_t(), 0).shape == (1,)
    assert x.reshape(-1).shape == (6,) and x.reshape((3, -1)).shape == (3, 2)
    assert x.transpose(-1, -2).shape == (3, 2)
    assert F.batch_norm(_t(2, 3), np.zeros(3, np.float32), np.ones(3, np.float32),
                        training=False, eps=0.0).shape == (2, 3)  # fmt: skip
    with pytest.raises(ValueError, match="positive during training"):  # as torch 2.13
        F.batch_norm(_t(2, 3), np.zeros(3, np.float32), np.ones(3, np.float32),
                     training=True, eps=0.0)  # fmt: skip


# Garbage for any argument: hypothesis picks an op and a value for one of its arguments.
GARBAGE = st.one_of(
    st.none(), st.booleans(), st.integers(-3, 9), st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=2), st.tuples(st.integers(-2, 4)), st.tuples(st.integers(-2, 4),
    st.integers(-2, 4)), st.tuples(st.integers(0, 3), st.integers(0, 3), st.integers(0, 3)),
    st.lists(st.floats(-2, 2), max_size=3), st.just(np.int64(2)), st.just(np.float32(1.0)),
)  # fmt: skip

GARBAGE_TARGETS: dict[str, tuple[Callable[..., Any], str]] = {
    "conv2d": (lambda v, a: F.conv2d(X4, W4, **{a: v, **({"groups": 2} if a != "groups" else {})}),
               "stride padding dilation groups"),
    "max_pool2d": (lambda v, a: F.max_pool2d(X4, **{"kernel_size": 2, a: v}),
                   "kernel_size stride padding"),
    "avg_pool2d": (lambda v, a: F.avg_pool2d(X4, **{"kernel_size": 2, a: v}),
                   "kernel_size stride padding"),
    "adaptive_avg_pool2d": (lambda v, a: F.adaptive_avg_pool2d(X4, v), "output_size"),
    "batch_norm": (lambda v, a: F.batch_norm(X4, None, None, training=True, **{a: v}),
                   "momentum eps"),
    "flatten": (lambda v, a: F.flatten(X4, **{a: v}), "start_dim end_dim"),
    "cat": (lambda v, a: mr.cat([_t(2, 2), _t(2, 2)], axis=v), "axis"),
    "reshape": (lambda v, a: _t(2, 3).reshape(v), "shape"),
    "transpose": (lambda v, a: _t(2, 3).transpose(v) if isinstance(v, tuple)
                  else _t(2, 3).transpose(v, 0), "axes"),
    "log_softmax": (lambda v, a: F.log_softmax(_t(2, 3), v), "axis"),
    "sum": (lambda v, a: _t(2, 3).sum(v), "axis"),
    "Conv2d": (lambda v, a: mr.nn.Conv2d(**{"in_channels": 4, "out_channels": 4,
                                            "kernel_size": 3, a: v}),
               "in_channels out_channels kernel_size stride padding dilation groups"),
    "BatchNorm2d": (lambda v, a: mr.nn.BatchNorm2d(**{"num_features": 4, a: v}),
                    "num_features eps momentum"),
    "Linear": (lambda v, a: mr.nn.Linear(**{"in_features": 3, "out_features": 2, a: v}),
               "in_features out_features"),
}  # fmt: skip


def _tt(t: mr.Tensor):
    return torch.from_numpy(np.array(t.data))


# torch's version of the garbage targets whose arguments map one to one
TORCH_TWINS: dict[str, Callable[..., Any]] = {
    "conv2d": lambda v, a: TF.conv2d(_tt(X4), _tt(W4),
                                     **{a: v, **({"groups": 2} if a != "groups" else {})}),
    "max_pool2d": lambda v, a: TF.max_pool2d(_tt(X4), **{"kernel_size": 2, a: v}),
    "avg_pool2d": lambda v, a: TF.avg_pool2d(_tt(X4), **{"kernel_size": 2, a: v}),
    "adaptive_avg_pool2d": lambda v, a: TF.adaptive_avg_pool2d(_tt(X4), v),
    "flatten": lambda v, a: torch.flatten(_tt(X4), **{"start_dim": 1, a: v}),  # F default 1
    "log_softmax": lambda v, a: TF.log_softmax(_tt(_t(2, 3)), v),
} if torch is not None else {}  # fmt: skip


@st.composite
def garbage_calls(draw):
    name = draw(st.sampled_from(sorted(GARBAGE_TARGETS)))
    fn, args = GARBAGE_TARGETS[name]
    return name, fn, draw(st.sampled_from(args.split())), draw(GARBAGE)


@settings(FAST, max_examples=300)
@given(call=garbage_calls())
def test_fuzz_garbage_arguments_give_value_or_type_errors(call):
    """Whatever value lands in an argument: it works (and then it was a valid value, e.g.
    ``stride=2`` or ``(1, 2)``) or a ValueError/TypeError names the problem. Bools and
    floats never pass as ints."""
    name, fn, arg, value = call
    try:
        out = fn(value, arg)
    except OK as exc:
        assert str(exc), f"{name}({arg}={value!r}): empty message"
        return
    if torch is not None and name in TORCH_TWINS:  # accepted: torch must agree on the value
        plain = int(value) if isinstance(value, np.integer) else value  # torch wants int
        t_out = TORCH_TWINS[name](plain, arg)
        np.testing.assert_allclose(out.data, t_out.numpy(), rtol=1e-5, atol=1e-6,
                                   err_msg=f"{name}({arg}={value!r}) vs torch")  # fmt: skip
    if arg == "momentum" and value is None and name == "BatchNorm2d":
        return  # cumulative moving average, as in PyTorch
    if arg in ("momentum", "eps"):
        assert isinstance(value, int | float | np.number) and not isinstance(value, bool)
        assert math.isfinite(value) and value >= 0 and (arg == "eps" or value <= 1)
        return

    def ints(v):  # an int, or a tuple/list of ints (empty: numpy's "no axes" for sum)
        return all(isinstance(i, int | np.integer) and not isinstance(i, bool)
                   for i in (v if isinstance(v, tuple | list) else (v,)))  # fmt: skip

    if arg == "axis" and name == "sum" and value is None:
        return  # sum over all axes
    if arg == "axis" and name == "log_softmax" and value is None:
        return  # dim=None: torch's legacy choice of dim, with its warning
    if arg == "axis" and name == "cat" and value is None:
        return  # None is "not given": the default dim 0
    if arg == "stride" and value is None and "pool" in name:
        return  # the default: stride = kernel size
    assert ints(value) and (not isinstance(value, list) or name in ("reshape", "sum")), (
        f"{name} accepted {arg}={value!r}"
    )


# -- NaN and inf ---------------------------------------------------------------------------


@settings(FAST, max_examples=60)
@given(data=st.data(), special=st.sampled_from([np.nan, np.inf, -np.inf]))
def test_fuzz_non_finite_values_propagate_like_torch(data, special):
    """A NaN or inf in the input gives the NaN/inf pattern torch gives, in the output and
    the gradients, on both backends."""
    if torch is None:
        pytest.skip("torch not installed: no oracle for NaN/inf propagation")
    family = data.draw(st.sampled_from(["conv2d", "pools", "batch_norm", "dense"]))
    case = data.draw(FAMILIES[family], label="case")
    x = case.arrays[0]
    pos = data.draw(st.integers(0, x.size - 1), label="position")
    x.reshape(-1)[pos] = special
    for backend in ("numpy", "numba"):
        try:
            out, extras, grads = _run(case, [a.copy() for a in case.arrays], backend)
        except OK:
            return
        t_out, t_extras, t_grads = _run_torch(case, case.arrays)
        for what, a, b in [("output", out, t_out), *zip(("state",) * 2, extras, t_extras),
                           *zip(("grad",) * 3, grads, t_grads)]:  # fmt: skip
            np.testing.assert_array_equal(
                np.isnan(a), np.isnan(b), err_msg=f"{backend} {case.name} {what}: NaN pattern"
            )
            np.testing.assert_array_equal(
                np.isposinf(a),
                np.isposinf(b),
                err_msg=f"{backend} {case.name} {what}: +inf pattern",
            )
