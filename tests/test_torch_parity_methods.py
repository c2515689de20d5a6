"""Tensor methods PyTorch code reaches for, checked against torch: comparison methods,
masks (``& | ^ ~``, logical_*), ``//`` and ``%``, casts (``int``, ``bool``, ``type_as``),
``new_*``, shape helpers (``view_as``, ``expand_as``, ``reshape_as``, ``repeat``, ``tile``,
``mT``), in-place unary ops and ``detach_``, reductions (``sum/mean(dtype=)``, ``prod``,
``cumsum``, ``norm``) and sorting (``sort``, ``argsort``, ``topk``).

Each differentiable op: a float64 gradcheck over hypothesis-generated shapes and torch as
the oracle of values, dtypes, shapes and gradients."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from torch_oracle import grads_match, spread, t64

import minires as mr
import minires.functional as F

torch = pytest.importorskip("torch", reason="PyTorch is the oracle of these tests")

SIZES = st.sampled_from([1, 2, 3, 5])  # batch 1 and odd sizes
shapes = st.lists(SIZES, min_size=1, max_size=3).map(tuple)
SEEDS = st.integers(0, 2**16)


def np_of(t):
    return t.detach().numpy() if isinstance(t, torch.Tensor) else np.asarray(t.data)


def same(got, want, rtol=1e-12, atol=1e-12):
    """minires tensor == torch tensor: shape, dtype and values (NaN where torch has NaN)."""
    w = np_of(want)
    assert got.shape == tuple(want.shape), (got.shape, tuple(want.shape))
    assert got.dtype == w.dtype, (got.dtype, w.dtype)
    np.testing.assert_allclose(got.data, w, rtol=rtol, atol=atol)


@st.composite
def reduce_case(draw, allow_none=True):
    """(shape, dim, keepdim): dim None (all) or one dimension, negative ones included."""
    shape = draw(shapes)
    dims = [None] if allow_none else []
    dims += list(range(-len(shape), len(shape)))
    return shape, draw(st.sampled_from(dims)), draw(st.booleans())


# -- comparisons, masks -------------------------------------------------------------------

COMPARISONS = ["eq", "ne", "lt", "le", "gt", "ge"]
ALIASES = {"not_equal": "ne", "less": "lt", "less_equal": "le", "greater": "gt",
           "greater_equal": "ge"}  # fmt: skip


@pytest.mark.parametrize("name", COMPARISONS + sorted(ALIASES))
def test_comparison_methods_match_torch_and_the_operators(name):
    x = np.array([[1.0, 2.0, 3.0], [3.0, 2.0, 1.0]])
    col = np.array([[2.0], [1.0]])
    ints = np.array([1, 2, 3])
    for a, b in [(x, col), (x, 2.0), (x, 2), (ints, x), (ints, 2), (x, ints)]:
        want = getattr(torch.as_tensor(a), name)(b if np.isscalar(b) else torch.as_tensor(b))
        got = getattr(mr.tensor(a, dtype=a.dtype), name)(
            b if np.isscalar(b) else mr.tensor(b, dtype=b.dtype)
        )
        same(got, want)
        fn = getattr(F, ALIASES.get(name, name))
        same(fn(mr.tensor(a, dtype=a.dtype), b if np.isscalar(b) else mr.tensor(b)), want)
    op = {"eq": "__eq__", "ne": "__ne__", "lt": "__lt__", "le": "__le__", "gt": "__gt__",
          "ge": "__ge__"}[ALIASES.get(name, name)]  # fmt: skip
    t = mr.tensor(x)
    np.testing.assert_array_equal(getattr(t, name)(1.5).data, getattr(t, op)(1.5).data)
    with pytest.raises(ValueError, match=r"\(2, 3\) and \(2,\)"):
        getattr(t, name)(mr.tensor([1.0, 2.0]))


def test_comparisons_are_outside_the_graph():
    x = mr.tensor([1.0, -1.0], requires_grad=True)
    m = x.gt(0)
    assert m.dtype == np.bool_ and not m.requires_grad and m.grad_fn is None


def test_mask_operators_match_torch():
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((3, 4)), rng.standard_normal(4)
    ta, tb, ma, mb = torch.tensor(a), torch.tensor(b), mr.tensor(a), mr.tensor(b)
    same((ma > 0) & (mb < 0.5), (ta > 0) & (tb < 0.5))
    same((ma > 0) | (mb < 0.5), (ta > 0) | (tb < 0.5))
    same((ma > 0) ^ (mb < 0.5), (ta > 0) ^ (tb < 0.5))
    same(~(ma > 0), ~(ta > 0))
    same((ma > 0) & True, (ta > 0) & True)
    same(False | (ma > 0), False | (ta > 0))
    same(True ^ (mb > 0), True ^ (tb > 0))
    for name in ("logical_and", "logical_or", "logical_xor"):  # any dtypes, nonzero is True
        want = getattr(ta.round(), name)(tb.round().long())
        same(getattr(mr.tensor(a.round()), name)(mr.tensor(b.round().astype(np.int64))), want)
        same(getattr(F, name)(mr.tensor(a.round()), mr.tensor(b.round())),
             getattr(torch, name)(ta.round(), tb.round()))  # fmt: skip
    same(mr.tensor(a.round()).logical_not(), ta.round().logical_not())
    same(F.logical_not(mr.tensor(np.array([0, 2]))), torch.tensor([0, 2]).logical_not())


def test_bitwise_ops_promote_like_torch_and_refuse_floats():
    i64 = np.array([6, -3, 0, 5])
    i32 = i64.astype(np.int32)
    bools = np.array([True, False, True, False])
    cases = [(bools, 1), (i32, 1), (i32, i64), (i64, 3), (bools, i64), (bools, True)]
    for a, b in cases:
        ta, ma = torch.from_numpy(a), mr.tensor(a, dtype=a.dtype)
        tb = b if np.isscalar(b) else torch.from_numpy(b)
        mb = b if np.isscalar(b) else mr.tensor(b, dtype=b.dtype)
        same(ma & mb, ta & tb)
        same(ma | mb, ta | tb)
        same(ma ^ mb, ta ^ tb)
        same(ma.bitwise_and(mb), ta.bitwise_and(tb))
        same(ma.bitwise_or(mb), ta.bitwise_or(tb))
        same(ma.bitwise_xor(mb), ta.bitwise_xor(tb))
        same(mb & ma if np.isscalar(b) else ma & mb, tb & ta if np.isscalar(b) else ta & tb)
    for a in (i64, i32, bools):
        same(~mr.tensor(a, dtype=a.dtype), ~torch.from_numpy(a))
        same(mr.tensor(a, dtype=a.dtype).bitwise_not(), torch.from_numpy(a).bitwise_not())
    x = mr.tensor([1.0, 2.0])
    for f in (lambda: x & (x > 1), lambda: (x > 1) | 1.0, lambda: ~x, lambda: x ^ x):
        with pytest.raises(TypeError, match="bool or integer"):
            f()
    with pytest.raises(ValueError, match=r"shapes \(2,\) and \(3,\)"):
        (x > 0) & mr.tensor(np.array([True, False, True]))
    with pytest.raises(TypeError, match="expected a Tensor, an array or a number"):
        (x > 0) & "a"


# -- floor division, remainder --------------------------------------------------------------


def _division_cases():
    ints = np.array([7, -7, 5, -3, 0, 12])
    divisors = np.array([2, 2, -3, -3, 4, 5])
    floats = np.array([7.5, -7.25, 5.0, -3.5, 0.0, 12.0])
    yield ints, divisors
    yield ints.astype(np.int32), 3
    yield ints, 2
    yield ints, 2.5
    yield floats, divisors
    yield floats, np.array([2.0, -2.0, 0.5, 3.0, -1.5, 0.75])
    yield floats.astype(np.float32), 2
    yield floats.astype(np.float32), np.array([2.0, -2.0, 0.5, 3.0, -1.5, 0.75])
    yield 7, ints + 100
    yield 7.5, divisors
    yield floats.reshape(2, 3), divisors[:3]
    yield np.array([1.0, -1.0, 0.0, 2.0]), 0.0  # inf, -inf, NaN, as torch


@pytest.mark.parametrize("op", ["floor_divide", "remainder"])
def test_floor_divide_and_remainder_match_torch(op):
    symbol = {"floor_divide": "__floordiv__", "remainder": "__mod__"}[op]
    reflected = {"floor_divide": "__rfloordiv__", "remainder": "__rmod__"}[op]
    for a, b in _division_cases():
        ta = a if np.isscalar(a) else torch.from_numpy(a)
        tb = b if np.isscalar(b) else torch.from_numpy(b)
        ma = a if np.isscalar(a) else mr.tensor(a, dtype=a.dtype)
        mb = b if np.isscalar(b) else mr.tensor(b, dtype=b.dtype)
        want = getattr(torch, op)(ta, tb) if not np.isscalar(a) else getattr(tb, reflected)(ta)
        if np.isscalar(a):
            got = getattr(mb, reflected)(ma)
        else:
            got = getattr(ma, symbol)(mb)
            same(getattr(ma, op)(mb), want)
            same(getattr(F, op)(ma, mb), want)
        same(got, want)


def test_integer_division_by_zero_and_bool_operands_are_refused_like_torch():
    i = mr.tensor(np.array([3, 4]))
    for f in (lambda: i // 0, lambda: i % mr.tensor(np.array([1, 0])), lambda: 5 // (i - 3)):
        with pytest.raises(ZeroDivisionError, match="integer division by zero"):
            f()
    with pytest.raises(RuntimeError):  # torch raises a RuntimeError
        i // 0
    b = mr.tensor(np.array([True, False]))
    with pytest.raises(TypeError, match="two bool tensors"):
        b // b
    with pytest.raises(ValueError, match=r"shapes \(2,\) and \(3,\)"):
        i % mr.tensor(np.array([1, 2, 3]))


@st.composite
def remainder_case(draw):
    """(a, b) float64 with b broadcasting to a and a / b at least 0.15 from an integer
    (the remainder's jumps): every finite difference stays on one smooth piece."""
    shape = draw(shapes)
    bshape = shape[draw(st.integers(0, len(shape))) :]
    rng = np.random.default_rng(draw(SEEDS))
    b = rng.uniform(0.5, 2.0, bshape) * rng.choice([-1, 1], bshape)
    q = rng.integers(-3, 4, shape) + rng.uniform(0.15, 0.85, shape)
    return q * b, b


@given(case=remainder_case())
def test_remainder_gradcheck(case):
    a, b = case
    assert mr.gradcheck(lambda x, y: x % y, [t64(a), t64(b)])


@given(case=remainder_case())
def test_remainder_gradients_match_torch(case):
    grads_match(lambda x, y: x % y, lambda x, y: x % y, list(case))
    # a number on the left: torch has no derivative for that overload; minires gives the
    # one of the tensor form (torch.tensor(3.5) % y)
    grads_match(lambda y: 3.5 % y, lambda y: torch.tensor(3.5, dtype=y.dtype) % y, [case[1]])


def test_floor_divide_backward_refuses_like_torch():
    x = mr.tensor([3.0, -7.5], requires_grad=True)
    y = x // 2
    np.testing.assert_array_equal(y.data, [1.0, -4.0])
    assert y.requires_grad  # as torch: recorded, and its backward refuses
    with pytest.raises(RuntimeError, match="floor_divide"):
        (y * 2).sum().backward()
    xt = torch.tensor([3.0, -7.5], requires_grad=True)
    with pytest.raises(RuntimeError):
        (xt // 2 * 2).sum().backward()
    (x.detach() // 2 * x).sum().backward()  # detached: fine
    np.testing.assert_array_equal(x.grad, [1.0, -4.0])


@pytest.mark.parametrize("mode", ["floor", "trunc"])
def test_div_rounding_modes_match_torch(mode):
    for a, b in _division_cases():
        if np.isscalar(a):
            continue
        ma = mr.tensor(a, dtype=a.dtype)
        mb = b if np.isscalar(b) else mr.tensor(b, dtype=b.dtype)
        tb = b if np.isscalar(b) else torch.from_numpy(b)
        want = torch.div(torch.from_numpy(a), tb, rounding_mode=mode)
        same(ma.div(mb, rounding_mode=mode), want)
        same(mr.div(ma, mb, rounding_mode=mode), want)
    # a step function: zero gradients for both operands, as torch gives
    x, y = t64([-7.0, 5.5, 3.25]), t64([2.0, -2.0, 1.5])
    mr.div(x, y, rounding_mode=mode).sum().backward()
    np.testing.assert_array_equal(x.grad, 0.0)
    np.testing.assert_array_equal(y.grad, 0.0)
    with pytest.raises(ValueError, match="rounding_mode must be None, 'trunc' or 'floor'"):
        x.div(y, rounding_mode="round")


@given(a=shapes, seed=SEEDS, alpha=st.sampled_from([1, -2, 0.5]))
def test_add_sub_mul_div_methods_match_torch(a, seed, alpha):
    rng = np.random.default_rng(seed)
    bshape = a[rng.integers(0, len(a) + 1) :]  # broadcasts to a
    x, y = rng.standard_normal(a), rng.uniform(0.5, 2.0, bshape)
    ops = {"add": {"alpha": alpha}, "sub": {"alpha": alpha}, "mul": {}, "div": {}}
    for name, kw in ops.items():
        method = lambda u, v, name=name, kw=kw: getattr(u, name)(v, **kw)  # noqa: E731
        grads_match(method, method, [x, y])
        ours = lambda u, v, name=name, kw=kw: getattr(mr, name)(u, v, **kw)  # noqa: E731
        theirs = lambda u, v, name=name, kw=kw: getattr(torch, name)(u, v, **kw)  # noqa: E731
        grads_match(ours, theirs, [x, y])
    assert mr.gradcheck(lambda u, v: u.sub(v, alpha=alpha).div(v).mul(u).add(v), [t64(x), t64(y)])


def test_add_sub_take_alpha_by_keyword_only_as_torch():
    x = mr.ones(2)
    with pytest.raises(TypeError):
        x.add(x, 3)
    with pytest.raises(TypeError, match="alpha must be a number"):
        x.sub(x, alpha=True)
    with pytest.raises(TypeError, match="add: input must be a Tensor"):
        mr.add(2, x)


@given(shape=shapes, seed=SEEDS, data=st.data())
def test_flip_and_logsumexp_match_torch(shape, seed, data):
    x = np.random.default_rng(seed).standard_normal(shape) * 20  # large: logsumexp's shift
    dims = data.draw(st.lists(st.integers(-len(shape), len(shape) - 1), min_size=1, max_size=3))
    dims = list({d % len(shape): d for d in dims}.values())  # distinct dims, as torch asks
    grads_match(lambda t: t.flip(*dims), lambda t: t.flip(*dims), [x])
    grads_match(lambda t: mr.flip(t, dims), lambda t: torch.flip(t, dims), [x])
    dim, keep = dims[0], data.draw(st.booleans())
    grads_match(lambda t: t.logsumexp(dim, keep), lambda t: t.logsumexp(dim, keep), [x], rtol=1e-9)
    assert mr.gradcheck(lambda t: mr.logsumexp(t, dim, keep).exp(), [t64(x / 20)])
    assert mr.gradcheck(lambda t: t.flip(*dims) * t, [t64(x)])


def test_flip_copies_and_logsumexp_takes_the_edges_as_torch():
    x = mr.tensor(np.arange(6.0).reshape(2, 3))
    y = x.flip(1)
    assert not np.shares_memory(y.data, x.data)  # a copy, as torch's
    np.testing.assert_array_equal(y.data, [[2, 1, 0], [5, 4, 3]])
    odd = np.array([[np.inf, 1.0], [-np.inf, -np.inf], [np.nan, 1.0], [1e30, 1e30]], np.float32)
    same(mr.tensor(odd).logsumexp(1), torch.from_numpy(odd).logsumexp(1))
    same(mr.zeros(2, 0).logsumexp(1), torch.zeros(2, 0).logsumexp(1))
    with pytest.raises(ValueError, match="appears multiple times"):
        x.flip(0, -2)
    with pytest.raises(ValueError, match="out of range"):
        x.logsumexp(2)
    with pytest.raises(TypeError, match="floating-point"):
        mr.tensor(np.arange(3)).logsumexp(0)


# -- casts, new tensors, shape helpers ------------------------------------------------------


def test_int_bool_type_as_match_torch():
    x = np.array([[1.7, -2.5, 0.0], [0.2, -0.9, 3.0]], np.float32)
    tx, mx = torch.from_numpy(x), mr.tensor(x)
    same(mx.int(), tx.int())
    same(mx.bool(), tx.bool())
    same(mx.long(), tx.long())
    same(mx.bool().float(), tx.bool().float())
    same(mx.int().double(), tx.int().double())
    same(mx.type_as(mr.tensor(np.zeros(1))), tx.type_as(torch.zeros(1, dtype=torch.float64)))
    same(mx.int().type_as(mx), tx.int().type_as(tx))
    assert mx.type_as(mx) is mx
    w = mr.tensor(x, requires_grad=True)
    d = w.type_as(mr.tensor(np.zeros(1)))
    assert d.dtype == np.float64 and d.requires_grad
    (d * 2).sum().backward()
    assert w.grad.dtype == np.float32 and np.all(w.grad == 2)
    assert not w.int().requires_grad and not w.bool().requires_grad  # cut, as torch
    with pytest.raises(TypeError, match="expected a Tensor"):
        mx.type_as(np.float64)


def test_new_factories_match_torch():
    for dtype in (np.float32, np.float64, np.int64, np.int32):
        src = np.arange(6).reshape(2, 3).astype(dtype)
        tx, mx = torch.from_numpy(src), mr.tensor(src, dtype=dtype)
        same(mx.new_zeros(2, 3), tx.new_zeros(2, 3))
        same(mx.new_zeros((4,)), tx.new_zeros((4,)))
        same(mx.new_ones([1, 2]), tx.new_ones([1, 2]))
        same(mx.new_full((2, 2), 1.5), tx.new_full((2, 2), 1.5))
        same(mx.new_full([3], -2), tx.new_full([3], -2))
        assert mx.new_empty(2, 5).shape == (2, 5) and mx.new_empty(2, 5).dtype == dtype
        same(mx.new_tensor([1.5, -2.0]), tx.new_tensor([1.5, -2.0]))
        same(mx.new_tensor(np.array([3, 4])), tx.new_tensor(np.array([3, 4])))
        same(mx.new_zeros(2, dtype="float64"), tx.new_zeros(2, dtype=torch.float64))
        same(mx.new_ones(2, dtype=mr.long), tx.new_ones(2, dtype=torch.long))
        same(mx.new_full((2,), 7, dtype=torch.float32), tx.new_full((2,), 7, dtype=torch.float32))
        same(mx.new_tensor([1, 2], dtype=mr.float64), tx.new_tensor([1, 2], dtype=torch.float64))
    x = mr.tensor([1.0, 2.0])
    p = x.new_zeros(3, requires_grad=True, device="cpu")
    assert p.requires_grad and p.is_leaf
    src = mr.tensor([1.0, 2.0], requires_grad=True)
    c = x.new_tensor(src * 2)  # a copy, cut from the graph
    assert not c.requires_grad and c.data.base is None
    np.testing.assert_array_equal(c.data, [2.0, 4.0])
    with pytest.raises(ValueError, match="CPU only"):
        x.new_zeros(2, device="cuda")
    with pytest.raises(TypeError, match="sizes must be ints"):
        x.new_ones(2.0)
    with pytest.raises(ValueError, match="sizes must be >= 0"):
        x.new_zeros(-1)
    with pytest.raises(TypeError, match="fill_value must be a number"):
        x.new_full((2,), "a")
    with pytest.raises(TypeError, match="only float32/float64 tensors can require grad"):
        x.new_zeros(2, dtype="long", requires_grad=True)


def test_view_as_reshape_as_expand_as_and_mT_match_torch():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((2, 3))
    grads_match(lambda x: x.view_as(mr.zeros(3, 2)), lambda x: x.view_as(torch.zeros(3, 2)), [a])
    grads_match(lambda x: x.reshape_as(mr.zeros(6)), lambda x: x.reshape_as(torch.zeros(6)), [a])
    b = rng.standard_normal((3, 1))
    grads_match(
        lambda x: x.expand_as(mr.zeros(2, 3, 4)), lambda x: x.expand_as(torch.zeros(2, 3, 4)), [b]
    )
    for shape in [(2, 3), (4, 1, 3, 5), (1, 2, 1)]:
        grads_match(lambda x: x.mT, lambda x: x.mT, [rng.standard_normal(shape)])
    with pytest.raises(ValueError, match=r"mT: needs a matrix .* shape \(3,\)"):
        _ = mr.zeros(3).mT
    with pytest.raises(ValueError, match="cannot reshape"):
        mr.zeros(2, 3).view_as(mr.zeros(5))
    with pytest.raises(ValueError, match="cannot expand"):
        mr.zeros(2, 3).expand_as(mr.zeros(3, 3))
    with pytest.raises(TypeError, match="expected a Tensor"):
        mr.zeros(2, 3).view_as((3, 2))


@st.composite
def repeat_case(draw):
    shape = draw(st.lists(SIZES, min_size=0, max_size=3).map(tuple))
    extra = draw(st.integers(0, 2))
    reps = tuple(draw(st.lists(st.integers(0, 3), min_size=len(shape) + extra,
                               max_size=len(shape) + extra)))  # fmt: skip
    return shape, reps


@given(case=repeat_case(), seed=SEEDS)
def test_repeat_gradcheck(case, seed):
    shape, reps = case
    x = t64(np.random.default_rng(seed).standard_normal(shape))
    if math.prod(reps) == 0:
        assert x.repeat(*reps).shape == tuple(torch.zeros(shape).repeat(*reps).shape)
        return
    assert mr.gradcheck(lambda t: t.repeat(*reps), [x])


@given(case=repeat_case(), seed=SEEDS)
def test_repeat_and_tile_match_torch(case, seed):
    shape, reps = case
    a = np.random.default_rng(seed).standard_normal(shape)
    if reps:  # torch's repeat() needs an argument; repeat(()) of a 0-d tensor is fine
        grads_match(lambda x: x.repeat(*reps), lambda x: x.repeat(*reps), [a])
    grads_match(lambda x: x.repeat(reps), lambda x: x.repeat(reps), [a])
    short = reps[len(reps) - len(shape) + 1 :] if shape else reps
    grads_match(lambda x: x.tile(short), lambda x: x.tile(short), [a])
    grads_match(lambda x: F.tile(x, short), lambda x: torch.tile(x, short), [a])
    if short:
        grads_match(lambda x: x.tile(*short), lambda x: x.tile(*short), [a])


def test_repeat_refuses_like_torch():
    x = mr.zeros(2, 3)
    with pytest.raises(ValueError, match=r"repeat: 1 sizes \(2,\) for a tensor of shape \(2, 3\)"):
        x.repeat(2)
    with pytest.raises(ValueError, match="must be >= 0"):
        x.repeat(-1, 2)
    with pytest.raises(TypeError, match="must be an int"):
        x.repeat(2.0, 1)
    assert mr.tensor(np.array([1, 2])).repeat(2).dtype == np.int64


# -- in-place unary ops -------------------------------------------------------------------

INPLACE = {
    "abs_": (), "neg_": (), "exp_": (), "log_": (), "sqrt_": (), "sigmoid_": (), "tanh_": (),
    "relu_": (), "clamp_": (-0.5, 0.75), "clamp_min_": (0.1,), "clamp_max_": (0.2,),
    "clip_": (None, 0.3),
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(INPLACE))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_inplace_unary_ops_match_torch_and_count_versions(name, dtype):
    args = INPLACE[name]
    x = np.random.default_rng(0).uniform(-2, 2, (3, 4)).astype(dtype)
    if name in ("log_", "sqrt_"):
        x = np.abs(x) + 0.1
    tx, mx = torch.from_numpy(x.copy()), mr.tensor(x)
    view_t, view_m = tx[1], mx[1]  # a view sees the write, and shares the version
    assert getattr(mx, name)(*args) is mx
    getattr(tx, name)(*args)
    tol = 1e-6 if dtype == np.float32 else 1e-12
    same(mx, tx, rtol=tol, atol=tol)
    same(view_m, view_t, rtol=tol, atol=tol)
    assert (mx._version, view_m._version) == (tx._version, view_t._version) == (1, 1)
    # out-of-place op's values, bit for bit
    out_of_place = getattr(mr.tensor(x), name.rstrip("_").replace("clip", "clamp"))(*args)
    np.testing.assert_array_equal(mx.data, out_of_place.data)


@pytest.mark.parametrize("name", sorted(INPLACE))
def test_inplace_unary_ops_write_through_outside_the_graph_and_are_recorded_inside(name):
    args = INPLACE[name]
    p = mr.tensor(np.full(3, 0.25), requires_grad=True)
    with pytest.raises(RuntimeError, match="in-place op on a leaf tensor that requires grad"):
        getattr(p, name)(*args)
    assert p._version == 0
    # in the graph: recorded as torch records it - same object, its values, the gradient
    pt = torch.full((3,), 0.25, dtype=torch.float64, requires_grad=True)
    y, yt = p * 2, pt * 2
    assert getattr(y, name)(*args) is y and y._version == 1
    getattr(yt, name)(*args)
    (y * y).sum().backward()
    (yt * yt).sum().backward()
    np.testing.assert_allclose(y.data, yt.detach().numpy(), rtol=1e-15)
    np.testing.assert_allclose(p.grad, pt.grad.numpy(), rtol=1e-12)
    p.grad = None
    loss = (p * p).sum()  # saved p for backward
    with mr.no_grad():
        getattr(p, name)(*args)  # a parameter update: written through, version bumped
    assert p._version == 1 and p.requires_grad
    with pytest.raises(RuntimeError, match="modified by an in-place operation"):
        loss.backward()
    with pytest.raises(RuntimeError):
        getattr(pt, name)(*args)


def test_inplace_unary_ops_refuse_a_result_of_another_kind_like_torch():
    i = mr.tensor(np.array([1, 2, 3]))
    for name, args in [("exp_", ()), ("sqrt_", ()), ("sigmoid_", ()), ("clamp_", (1.5,))]:
        with pytest.raises(TypeError, match=r"the result \(float\d+\) cannot be stored in this "
                                            "int64 tensor"):  # fmt: skip
            getattr(i, name)(*args)
        with pytest.raises(RuntimeError, match="can't be cast"):
            getattr(torch.tensor([1, 2, 3]), name)(*args)
    assert i._version == 0
    same(i.clamp_(min=2), torch.tensor([1, 2, 3]).clamp_(min=2))
    same(i.relu_(), torch.tensor([2, 2, 3]).relu_())
    same(i.abs_(), torch.tensor([2, 2, 3]).abs_())
    for bound in ("min", "max"):  # a bound that requires grad: recorded, as torch
        w = mr.tensor([1.0, 2.0], requires_grad=True)
        wt = torch.tensor([1.0, 2.0], requires_grad=True)
        a, at = mr.zeros(2), torch.zeros(2)
        assert a.clamp_(**{bound: w}) is a and a.requires_grad
        at.clamp_(**{bound: wt})
        a.sum().backward()
        at.sum().backward()
        same(a.detach(), at.detach())
        np.testing.assert_array_equal(w.grad, wt.grad.numpy())


def test_augmented_floordiv_mod_and_mask_assignments_match_torch():
    def run(lib, a, ops):
        t = lib.tensor(a)
        alias = t  # an in-place write is seen through another reference
        for op, v in ops:
            t = op(t, v)
        return t, alias, t._version

    cases = [
        (np.array([7.5, -3.0, 4.0]), [(lambda t, v: t.__ifloordiv__(v), 2),
                                      (lambda t, v: t.__imod__(v), 1.5)]),
        (np.array([7, -3, 4]), [(lambda t, v: t.__ifloordiv__(v), 2),
                                (lambda t, v: t.__imod__(v), 3)]),
        (np.array([True, False, True]), [(lambda t, v: t.__iand__(v), np.array([1, 0, 0]) > 0),
                                         (lambda t, v: t.__ior__(v), np.array([0, 1, 0]) > 0),
                                         (lambda t, v: t.__ixor__(v), True)]),
        (np.array([6, 5, 3]), [(lambda t, v: t.__iand__(v), 3), (lambda t, v: t.__ixor__(v), 1)]),
    ]  # fmt: skip
    for a, ops in cases:
        tm, alias_m, vm = run(mr, a, [(op, v if np.isscalar(v) else mr.tensor(v)) for op, v in ops])
        tt, alias_t, vt = run(torch, a, [(op, v if np.isscalar(v) else torch.tensor(v))
                                         for op, v in ops])  # fmt: skip
        same(tm, tt)
        assert alias_m is tm and vm == vt == len(ops)
    m = mr.tensor(np.array([True, False]))
    with pytest.raises(TypeError, match=r"&=: the result \(int64\) cannot be stored in this bool"):
        m &= mr.tensor(np.array([1, 1]))
    with pytest.raises(TypeError, match=r"//=: the result \(float32\) cannot be stored"):
        i = mr.tensor(np.array([5, 7]))
        i //= 2.5
    # in the graph, //= and %= rebind the name (as +=), with torch's values and gradient
    w = mr.tensor([7.5, -3.0], requires_grad=True)
    y = w * 1
    y %= 2.0
    y.sum().backward()
    np.testing.assert_array_equal(y.data, [1.5, 1.0])
    np.testing.assert_array_equal(w.grad, [1.0, 1.0])


def test_detach_inplace_cuts_the_tensor_from_the_graph():
    for lib in (mr, torch):
        x = lib.tensor([1.0, 2.0], requires_grad=True)
        y = x * 2
        assert y.detach_() is y
        assert not y.requires_grad and y.grad_fn is None and y.is_leaf
        assert x.requires_grad
        z = lib.tensor([3.0], requires_grad=True)
        z.detach_()
        assert not z.requires_grad
        np.testing.assert_array_equal(np.asarray(y.detach().numpy()), [2.0, 4.0])


# -- sum / mean dtype, prod, cumsum ---------------------------------------------------------


def test_sum_and_mean_dtype_match_torch():
    x = np.random.default_rng(0).standard_normal((3, 4)).astype(np.float32)
    for dtype_m, dtype_t in [("float64", torch.float64), (mr.float32, torch.float32)]:
        for kwargs in ({}, {"dim": 1}, {"dim": (0, 1), "keepdim": True}):
            xm, xt = mr.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
            for red in ("sum", "mean"):
                got = getattr(xm, red)(dtype=dtype_m, **kwargs)
                want = getattr(xt, red)(dtype=dtype_t, **kwargs)
                same(got, want, rtol=1e-6, atol=1e-6)
                got.sum().backward()
                want.sum().backward()
            assert xm.grad.dtype == np.float32
            np.testing.assert_allclose(xm.grad, xt.grad.numpy(), rtol=1e-6)
    ints = np.array([[1, 2, 3], [4, 5, 7]])
    same(mr.tensor(ints).mean(dtype=mr.float32), torch.tensor(ints).mean(dtype=torch.float32))
    same(F.mean(mr.tensor(ints), dim=0, dtype="float64"),
         torch.tensor(ints).mean(0, dtype=torch.float64))  # fmt: skip
    same(mr.tensor(ints).sum(dtype=mr.float32), torch.tensor(ints).sum(dtype=torch.float32))
    same(mr.tensor(ints > 2).sum(), torch.tensor(ints > 2).sum())
    same(F.sum(mr.tensor(x), dim=0, dtype=mr.float64), torch.tensor(x).sum(0, dtype=torch.float64))
    with pytest.raises(TypeError, match="mean: dtype must be float32 or float64"):
        mr.tensor(ints).mean(dtype="long")
    with pytest.raises(TypeError, match="float16"):
        mr.tensor(x).sum(dtype="float16")


def _with_zeros(a, rng, zeros):
    """``a`` with ``zeros`` entries set to 0 (at random places)."""
    a = a.copy()
    flat = a.reshape(-1)
    flat[rng.choice(flat.size, min(zeros, flat.size), replace=False)] = 0.0
    return a


@given(case=reduce_case(), zeros=st.integers(0, 2), seed=SEEDS)
def test_prod_gradcheck(case, zeros, seed):
    shape, dim, keepdim = case
    rng = np.random.default_rng(seed)
    x = t64(_with_zeros(spread(shape, rng, 0.5, 1.5) * rng.choice([-1, 1], shape), rng, zeros))
    if dim is None:
        assert mr.gradcheck(lambda t: t.prod(), [x])
    else:
        assert mr.gradcheck(lambda t: t.prod(dim, keepdim), [x])


@given(case=reduce_case(), zeros=st.integers(0, 3), seed=SEEDS)
def test_prod_matches_torch(case, zeros, seed):
    shape, dim, keepdim = case
    rng = np.random.default_rng(seed)
    a = _with_zeros(rng.uniform(-2, 2, shape), rng, zeros)
    if dim is None:
        grads_match(lambda t: t.prod(), lambda t: t.prod(), [a])
    else:
        grads_match(lambda t: t.prod(dim, keepdim), lambda t: t.prod(dim, keepdim), [a])
        grads_match(lambda t: F.prod(t, dim=dim, keepdim=keepdim),
                    lambda t: torch.prod(t, dim=dim, keepdim=keepdim), [a])  # fmt: skip


def test_prod_dtypes_and_edges_match_torch():
    ints = np.array([[1, -2, 3], [4, 5, 0]], np.int32)
    same(mr.tensor(ints, dtype=np.int32).prod(), torch.from_numpy(ints).prod())
    same(mr.tensor(ints, dtype=np.int32).prod(1), torch.from_numpy(ints).prod(1))
    same(mr.tensor(ints > 0).prod(0), torch.from_numpy(ints > 0).prod(0))
    x = np.array([[1.5, 2.0], [0.5, 4.0]], np.float32)
    same(mr.tensor(x).prod(dtype="float64"), torch.from_numpy(x).prod(dtype=torch.float64))
    grads_match(lambda t: t.prod(), lambda t: t.prod(), [np.array(3.0)])
    grads_match(lambda t: t.prod(0), lambda t: t.prod(0), [np.array(3.0)])
    grads_match(lambda t: t.prod(0), lambda t: t.prod(0), [np.zeros((0, 3))])
    grads_match(lambda t: t.prod(), lambda t: t.prod(), [np.zeros((2, 0))])
    with pytest.raises(TypeError, match="prod: dim must be one int"):
        mr.tensor(x).prod((0, 1))
    with pytest.raises(ValueError, match="dim 2 is out of range"):
        mr.tensor(x).prod(2)


@given(case=reduce_case(allow_none=False), seed=SEEDS)
def test_cumsum_gradcheck(case, seed):
    shape, dim, _ = case
    x = t64(np.random.default_rng(seed).standard_normal(shape))
    assert mr.gradcheck(lambda t: t.cumsum(dim), [x])


@given(case=reduce_case(allow_none=False), seed=SEEDS)
def test_cumsum_matches_torch(case, seed):
    shape, dim, _ = case
    a = np.random.default_rng(seed).standard_normal(shape)
    grads_match(lambda t: t.cumsum(dim), lambda t: t.cumsum(dim), [a])
    grads_match(lambda t: F.cumsum(t, dim=dim), lambda t: torch.cumsum(t, dim=dim), [a])


def test_cumsum_dtypes_and_edges_match_torch():
    ints = np.array([[1, -2, 3], [4, 5, 0]], np.int32)
    same(mr.tensor(ints, dtype=np.int32).cumsum(1), torch.from_numpy(ints).cumsum(1))
    same(mr.tensor(ints > 0).cumsum(0), torch.from_numpy(ints > 0).cumsum(0))
    x = np.array([1.5, 2.0, 0.25], np.float32)
    same(
        mr.tensor(x).cumsum(0, dtype=mr.float64), torch.from_numpy(x).cumsum(0, dtype=torch.float64)
    )
    grads_match(lambda t: t.cumsum(0), lambda t: t.cumsum(0), [np.array(3.0)])
    grads_match(lambda t: t.cumsum(-1), lambda t: t.cumsum(-1), [np.zeros((2, 0))])
    with pytest.raises(TypeError, match="cumsum: dim is required"):
        mr.tensor(x).cumsum()
    with pytest.raises(ValueError, match="dim 1 is out of range"):
        mr.tensor(x).cumsum(1)


# -- norm ---------------------------------------------------------------------------------

NORM_PS = [2, 1, math.inf, -math.inf, 3, 1.5, 0.5, "fro"]


@st.composite
def norm_case(draw):
    shape = draw(shapes)
    ndim = len(shape)
    dim = draw(st.one_of(
        st.none(),
        st.integers(-ndim, ndim - 1),
        st.lists(st.integers(0, ndim - 1), min_size=1, max_size=min(ndim, 2), unique=True)
        .map(tuple),
    ))  # fmt: skip
    return shape, dim, draw(st.booleans()), draw(st.sampled_from(NORM_PS))


@given(case=norm_case(), seed=SEEDS)
def test_norm_gradcheck(case, seed):
    shape, dim, keepdim, p = case
    x = t64(spread(shape, np.random.default_rng(seed)))  # no ties, no zeros
    assert mr.gradcheck(lambda t: t.norm(p, dim, keepdim), [x])


@given(case=norm_case(), seed=SEEDS, zeros=st.integers(0, 3), ties=st.booleans())
def test_norm_matches_torch_with_zeros_and_ties(case, seed, zeros, ties):
    """torch's subgradients: sign 0 at 0, a zero 2-norm passes 0, tied extrema share."""
    shape, dim, keepdim, p = case
    rng = np.random.default_rng(seed)
    a = rng.choice([-1.5, 1.5, 0.5], shape) if ties else rng.uniform(-2, 2, shape)
    a = _with_zeros(a, rng, zeros)
    grads_match(lambda t: t.norm(p, dim, keepdim), lambda t: t.norm(p, dim, keepdim), [a])
    grads_match(lambda t: F.linalg.norm(t, p, dim, keepdim),
                lambda t: torch.norm(t, p, dim, keepdim), [a])  # fmt: skip


def test_norm_all_zero_slices_and_vector_norm_match_torch():
    a = np.array([[0.0, 0.0, 0.0], [3.0, -4.0, 0.0]])
    for p in (2, 1, math.inf, -math.inf, 3, 1.5, "fro"):
        grads_match(lambda t, p=p: t.norm(p, 1), lambda t, p=p: t.norm(p, 1), [a])
        grads_match(lambda t, p=p: t.norm(p), lambda t, p=p: t.norm(p), [a])
    # p = 0 counts non-zeros: its gradient is 0 (torch leaves .grad None)
    x = t64(a)
    same(x.norm(0, 1), torch.tensor(a).norm(0, 1))
    x.norm(0).backward()
    np.testing.assert_array_equal(x.grad, 0.0)
    for ord_ in (2, 1, math.inf, 0.5, 4):
        grads_match(lambda t, o=ord_: F.vector_norm(t, o, dim=0, keepdim=True),
                    lambda t, o=ord_: torch.linalg.vector_norm(t, o, dim=0, keepdim=True),
                    [a + 0.25])  # fmt: skip
    x32 = np.array([[1.0, -2.0], [3.0, 4.0]], np.float32)
    same(mr.tensor(x32).norm(), torch.from_numpy(x32).norm(), rtol=1e-6)
    same(mr.tensor(x32).norm(dtype=mr.float64), torch.from_numpy(x32).norm(dtype=torch.float64))
    same(mr.tensor(3.0).norm(), torch.tensor(3.0).norm())
    same(mr.tensor(np.zeros((0, 2))).norm(), torch.zeros(0, 2, dtype=torch.float64).norm())


def test_norm_refuses_like_torch():
    x = mr.zeros(2, 2, 2)
    with pytest.raises(TypeError, match="float32 or float64"):
        mr.tensor(np.array([1, 2])).norm()
    with pytest.raises(ValueError, match="'nuc' is not supported"):
        x.norm("nuc")
    with pytest.raises(ValueError, match="at most 2 dims"):
        x.norm("fro", dim=(0, 1, 2))
    with pytest.raises(ValueError, match="empty tensor"):
        mr.zeros(0).norm(math.inf)
    with pytest.raises(TypeError, match="p must be a number or 'fro'"):
        x.norm(True)
    with pytest.raises(ValueError, match="dim 3 is out of range"):
        x.norm(2, 3)
    with pytest.raises(TypeError, match="ord must be a number"):
        F.vector_norm(x, "fro")


# -- sort, argsort, topk --------------------------------------------------------------------


@st.composite
def sort_case(draw):
    shape = draw(shapes)
    return shape, draw(st.integers(-len(shape), len(shape) - 1)), draw(st.booleans())


@given(case=sort_case(), seed=SEEDS)
def test_sort_and_topk_values_gradcheck(case, seed):
    shape, dim, flag = case
    x = t64(spread(shape, np.random.default_rng(seed)))
    assert mr.gradcheck(lambda t: t.sort(dim, flag).values, [x])
    k = shape[dim] // 2 + 1
    assert mr.gradcheck(lambda t: t.topk(k, dim, largest=flag).values, [x])


@given(case=sort_case(), seed=SEEDS, ties=st.booleans())
def test_sort_and_argsort_match_torch(case, seed, ties):
    """Values, int64 indices (stable: ties keep their order, as torch's CPU sort) and the
    gradient, which goes back to where each value came from."""
    shape, dim, descending = case
    rng = np.random.default_rng(seed)
    a = rng.integers(-2, 3, shape).astype(np.float64) if ties else spread(shape, rng)
    out = grads_match(lambda t: t.sort(dim, descending).values,
                      lambda t: t.sort(dim=dim, descending=descending, stable=True).values,
                      [a])  # fmt: skip
    assert out.grad_fn is not None
    want = torch.tensor(a).sort(dim=dim, descending=descending, stable=True)
    got = mr.tensor(a).sort(dim, descending)
    same(got.indices, want.indices)
    values, indices = got  # unpacks as torch's pair
    same(values, want.values)
    same(F.sort(mr.tensor(a), dim, descending, stable=True)[1], want[1])
    same(mr.tensor(a).argsort(dim, descending),
         torch.tensor(a).argsort(dim=dim, descending=descending, stable=True))  # fmt: skip
    same(F.argsort(mr.tensor(a), dim, descending), want.indices)


@given(case=sort_case(), seed=SEEDS, data=st.data())
def test_topk_matches_torch(case, seed, data):
    shape, dim, largest = case
    k = data.draw(st.integers(0, shape[dim]))
    a = spread(shape, np.random.default_rng(seed))  # no ties: torch's pick among ties is free
    got = grads_match(lambda t: t.topk(k, dim, largest).values,
                      lambda t: t.topk(k, dim, largest).values, [a])  # fmt: skip
    want = torch.tensor(a).topk(k, dim, largest)
    same(mr.tensor(a).topk(k, dim, largest).indices, want.indices)
    same(F.topk(mr.tensor(a), k, dim, largest=largest, sorted=True).indices, want.indices)
    assert got.shape == tuple(want.values.shape)


def test_sort_and_topk_nan_ints_bools_and_0d_like_torch():
    a = np.array([1.0, np.nan, 2.0, -np.inf, np.nan, np.inf])
    for descending in (False, True):
        got, want = mr.tensor(a).sort(descending=descending), torch.tensor(a).sort(
            descending=descending, stable=True)  # fmt: skip
        same(got.values, want.values)
        same(got.indices, want.indices)
    b = np.array([1.0, np.nan, 2.0, 3.0])
    for largest in (False, True):
        got, want = mr.tensor(b).topk(2, largest=largest), torch.tensor(b).topk(2, largest=largest)
        same(got.values, want.values)
        same(got.indices, want.indices)
    ints = np.array([[3, -1, 2], [0, 0, 5]])
    for descending in (False, True):
        want = torch.from_numpy(ints).sort(dim=1, descending=descending, stable=True)
        got = mr.tensor(ints).sort(1, descending)
        same(got.values, want.values)
        same(got.indices, want.indices)
    same(mr.tensor(ints > 0).argsort(stable=True), torch.from_numpy(ints > 0).argsort(stable=True))
    same(mr.tensor(ints).topk(2).values, torch.from_numpy(ints).topk(2).values)
    for op in (lambda t: t.sort(), lambda t: t.topk(1), lambda t: t.sort(0, True),
               lambda t: t.topk(0)):  # fmt: skip
        got, want = op(mr.tensor(3.0)), op(torch.tensor(3.0))
        same(got.values, want.values)
        same(got.indices, want.indices)
    same(mr.tensor(3.0).argsort(), torch.tensor(3.0).argsort())
    x = t64([[2.0, 1.0]])
    assert mr.gradcheck(lambda t: t.sort(-1, True).values * 1.0, [x])
    vals, idx = mr.tensor([3.0, 1.0, 2.0]).topk(2)
    assert repr(mr.tensor([1.0]).sort()).startswith("ValuesIndices(values=tensor(")
    np.testing.assert_array_equal(vals.data, [3.0, 2.0])
    np.testing.assert_array_equal(idx.data, [0, 2])


def test_sort_and_topk_refuse_bad_arguments():
    x = mr.zeros(2, 3)
    with pytest.raises(ValueError, match=r"topk: k=4 is out of range for dim -1 of size 3"):
        x.topk(4)
    with pytest.raises(ValueError, match="k must be >= 0"):
        x.topk(-1)
    with pytest.raises(TypeError, match="k must be an int"):
        x.topk(2.0)
    with pytest.raises(ValueError, match="dim 2 is out of range"):
        x.sort(2)
    with pytest.raises(TypeError, match="descending must be a bool"):
        x.sort(0, "yes")
    with pytest.raises(TypeError, match="largest must be a bool"):
        x.topk(1, largest=1)


def test_max_and_min_with_dim_still_return_values_only():
    x = mr.tensor([[1.0, 5.0], [7.0, 2.0]])
    for got in (x.max(dim=1), x.min(dim=0), x.max(1)):
        assert isinstance(got, mr.Tensor) and got.shape == (2,)
