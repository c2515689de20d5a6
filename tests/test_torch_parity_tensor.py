"""Tensor-level behaviour PyTorch users rely on: indexing order with integers beside index
arrays, transpose(dim0, dim1), Python number conversions, dtype promotion in cat/stack,
argument validation, gradcheck with index outputs, legacy BatchNorm state dicts."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import minires as mr

torch = pytest.importorskip("torch", reason="PyTorch is the oracle of these tests")

SHAPE = (4, 5, 3)

_INT = st.integers(-3, 2)
_SLICE = st.builds(slice, st.sampled_from([None, 0, 1]), st.sampled_from([None, 2, 3]),
                   st.sampled_from([None, 1, 2]))  # fmt: skip
_ARRAY = st.lists(st.integers(0, 2), min_size=1, max_size=4).map(np.array)
_ENTRY = st.one_of(_INT, _SLICE, _ARRAY, st.none())


@st.composite
def indices(draw):
    """Tuples of ints, slices, integer arrays, None and at most one Ellipsis that index
    at most the 3 dimensions of SHAPE (every value in range)."""
    entries = draw(st.lists(_ENTRY, min_size=1, max_size=3))
    if draw(st.booleans()):
        entries.insert(draw(st.integers(0, len(entries))), Ellipsis)
    return tuple(entries)


def _torch_index(index):
    return tuple(torch.from_numpy(i) if isinstance(i, np.ndarray) else i for i in index)


@settings(max_examples=150, deadline=None)
@given(index=indices(), seed=st.integers(0, 2**16))
def test_indexing_matches_torch_values_shapes_and_gradients(index, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(SHAPE)
    xt = torch.tensor(x, requires_grad=True)
    try:
        want = xt[_torch_index(index)]
    except (IndexError, RuntimeError, TypeError, ValueError):
        return  # torch refuses it (e.g. too many indices): not a parity case
    t = mr.tensor(x, requires_grad=True)
    got = t[index]
    assert got.shape == tuple(want.shape), index
    np.testing.assert_array_equal(got.data, want.detach().numpy())
    g = rng.standard_normal(tuple(want.shape))
    got.backward(g)
    want.backward(torch.from_numpy(g))
    np.testing.assert_allclose(t.grad, xt.grad.numpy(), rtol=1e-12, atol=1e-12)


def test_integer_beside_an_index_array_keeps_torch_order():
    x = np.arange(60.0).reshape(SHAPE)
    idx = np.array([2, 2, 0])
    got = mr.tensor(x)[1, :, idx]
    assert got.shape == (5, 3)  # NumPy gives (3, 5)
    np.testing.assert_array_equal(got.data, x[1][:, idx])
    # a 0-d integer tensor indexes as an int
    assert mr.tensor(x)[mr.tensor(np.array(1)), :, idx].shape == (5, 3)


def test_transpose_two_dims_swaps_them_like_torch():
    x = np.arange(24.0).reshape(2, 3, 4)
    for d0, d1 in [(0, 2), (1, -1), (0, 0), (2, 1)]:
        np.testing.assert_array_equal(
            mr.tensor(x).transpose(d0, d1).data, torch.tensor(x).transpose(d0, d1).numpy()
        )
    m = np.arange(6.0).reshape(2, 3)
    assert mr.tensor(m).transpose(0, 1).shape == (3, 2)  # NumPy's (0, 1) is the identity
    assert mr.tensor(x).transpose((2, 0, 1)).shape == (4, 2, 3)  # a tuple: a permutation
    assert mr.tensor(x).transpose(2, 0, 1).shape == (4, 2, 3)
    t = mr.tensor(x, requires_grad=True)
    assert mr.gradcheck(lambda a: a.transpose(0, 2) * 2.0, [t])
    with pytest.raises(ValueError, match="dim 3 is out of range"):
        mr.tensor(x).transpose(0, 3)


def test_one_element_tensors_convert_to_python_numbers():
    loss = mr.tensor(np.float64(2.75))
    assert float(loss) == 2.75 and int(loss) == 2 and f"{loss:.1f}" == "2.8"
    assert float(mr.tensor([3.5])) == 3.5 and int(mr.tensor([[-2.5]])) == -2
    assert [10, 20, 30][mr.tensor(np.array(2))] == 30
    assert list(range(mr.tensor(np.array([3])))) == [0, 1, 2]
    with pytest.raises(ValueError, match=r"shape \(2,\)"):
        float(mr.tensor([1.0, 2.0]))
    with pytest.raises(TypeError, match="only integer tensors"):
        [1, 2][mr.tensor(1.0)]
    with pytest.raises(TypeError, match="only 0-d tensors"):
        f"{mr.tensor([1.0]):.2f}"
    assert f"{mr.tensor([1.0, 2.0])}" == str(mr.tensor([1.0, 2.0]))


def test_cat_and_stack_promote_dtypes_like_torch_and_keep_gradient_dtypes():
    a = mr.tensor(np.ones(2, np.float32), requires_grad=True)
    b = mr.tensor(np.ones(2, np.float64), requires_grad=True)
    i = mr.tensor(np.arange(2))
    for op in (mr.cat, mr.stack):
        a.grad = b.grad = None
        y = op([a, b])
        assert y.dtype == np.float64
        (y * 3.0).sum().backward()
        assert a.grad.dtype == np.float32 and b.grad.dtype == np.float64
        np.testing.assert_array_equal(a.grad, 3.0)
        assert op([a, i]).dtype == np.float32  # int + float32 -> float32, as torch
    with pytest.raises(TypeError, match="cannot combine dtypes"):
        mr.cat([a, mr.tensor(np.array([True, False]))])


def test_keepdim_must_be_a_bool_and_strings_are_not_operands():
    t = mr.tensor([1.0, 2.0])
    with pytest.raises(TypeError, match="keepdim must be a bool"):
        t.sum(0, keepdim="no")
    with pytest.raises(TypeError, match="keepdim must be a bool"):
        t.mean(dim=0, keepdim=1)
    assert t.sum(0, keepdim=np.bool_(True)).shape == (1,)
    for f in (lambda: t + "a", lambda: "a" * t, lambda: t - b"x"):
        with pytest.raises(TypeError, match="got (str|bytes)"):
            f()


def test_gradcheck_skips_integer_outputs_like_torch():
    x = mr.tensor(np.random.default_rng(0).random(4), requires_grad=True)
    assert mr.gradcheck(lambda t: (t.exp(), mr.tensor(np.argsort(t.data)), t * t), [x])

    class Wrong(mr.Function):
        @staticmethod
        def forward(ctx, a):
            ctx.save_for_backward(a)
            return a * a

        @staticmethod
        def backward(ctx, g):
            (a,) = ctx.saved_tensors
            return 2.02 * a * g

    # a wrong float output is still caught next to an integer one
    with pytest.raises(mr.GradcheckError):
        mr.gradcheck(lambda t: (mr.tensor(np.argsort(t.data)), Wrong.apply(t)), [x])
    with pytest.raises(ValueError, match="no output is floating-point"):
        mr.gradcheck(lambda t: mr.tensor(np.argsort(t.data)), [x])


def test_batchnorm_loads_legacy_state_dicts_like_torch():
    bn = mr.nn.BatchNorm2d(3)
    bn.num_batches_tracked = np.array(7, np.int64)
    sd = {k: v for k, v in bn.state_dict().items() if k != "num_batches_tracked"}
    keys = bn.load_state_dict(sd)  # PyTorch < 0.4.1 checkpoints have no such key
    assert list(keys.missing_keys) == [] and int(bn.num_batches_tracked) == 7
    tbn = torch.nn.BatchNorm2d(3)
    tbn.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in sd.items()})  # same
    sd["num_batches_tracked"] = np.array([5])  # a 0-d value saved with shape (1,)
    bn.load_state_dict(sd)
    assert bn.num_batches_tracked.shape == () and int(bn.num_batches_tracked) == 5
    sd["num_batches_tracked"] = np.array([5, 6])
    with pytest.raises(ValueError, match=r"num_batches_tracked: checkpoint \(2,\) vs model \(\)"):
        bn.load_state_dict(sd)
    # other modules still report every missing key
    conv = mr.nn.Conv2d(3, 3, 1)
    with pytest.raises(ValueError, match="missing keys: bias"):
        conv.load_state_dict({"weight": conv.weight.data})


def test_state_dict_values_must_be_real_numbers():
    from minires.interop import to_numpy_state_dict

    with pytest.raises(TypeError, match="'w' is not a real-valued array"):
        to_numpy_state_dict({"w": np.array(["a", "b"])})
    with pytest.raises(TypeError, match="'w' is not a real-valued array"):
        to_numpy_state_dict({"w": np.ones(2, np.complex64)})


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**16), which=st.sampled_from(["both", "min", "max", "crossed"]))
def test_clamp_with_tensor_bounds_matches_torch(seed, which):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((3, 4))
    lo, hi = rng.standard_normal(4) - 0.5, rng.standard_normal((3, 1)) + 0.2
    if which == "crossed":  # min > max somewhere: torch gives max (and its gradient)
        lo, hi = hi, lo
    bounds = {"both": (lo, hi), "min": (lo, None), "max": (None, hi), "crossed": (lo, hi)}
    lo, hi = bounds[which]
    ours = [mr.tensor(v, requires_grad=True) if v is not None else None for v in (x, lo, hi)]
    theirs = [torch.tensor(v, requires_grad=True) if v is not None else None for v in (x, lo, hi)]
    y = ours[0].clamp(ours[1], ours[2])
    want = theirs[0].clamp(theirs[1], theirs[2])
    np.testing.assert_array_equal(y.data, want.detach().numpy())
    g = rng.standard_normal(y.shape)
    y.backward(g)
    want.backward(torch.from_numpy(g))
    for a, b in zip(ours, theirs):
        if a is not None:
            np.testing.assert_array_equal(a.grad, b.grad.numpy())
    live = [v for v in ours if v is not None]
    for v in live:
        v.grad = None
    fns = {"both": lambda a, b, c: a.clamp(b, c), "min": lambda a, b: a.clamp(min=b),
           "max": lambda a, c: a.clamp(max=c)}  # fmt: skip
    fn = fns.get(which, fns["both"])
    assert mr.gradcheck(fn, live)


def test_clamp_tensor_bounds_must_broadcast_to_the_input():
    with pytest.raises(ValueError, match=r"min of shape \(5,\) does not broadcast"):
        mr.tensor(np.ones((3, 4))).clamp(mr.tensor(np.zeros(5)))
    with pytest.raises(ValueError, match=r"max of shape \(2, 3, 4\) does not broadcast"):
        mr.tensor(np.ones((3, 4))).clamp(max=mr.tensor(np.zeros((2, 3, 4))))


def test_in_place_ops_update_tensors_outside_the_graph():
    model = mr.nn.Linear(3, 2)
    before = [p.data.copy() for p in model.parameters()]
    for p in model.parameters():
        p.grad = np.ones_like(p.data)
    with mr.no_grad():  # a hand-written SGD step, as in PyTorch tutorials
        for p in model.parameters():
            p -= 0.5 * mr.tensor(p.grad)
    for p, b in zip(model.parameters(), before):
        np.testing.assert_allclose(p.data, b - 0.5)
    t = mr.tensor(np.zeros((2, 3)))
    same = t
    t += 1.0
    t *= mr.tensor([1.0, 2.0, 3.0])
    t.sub_(mr.tensor(np.ones(3)), alpha=2.0)
    t[0] = 9.0
    t[:, 1] = mr.tensor([5.0, 6.0])
    assert same is t
    want = torch.zeros(2, 3, dtype=torch.float64)
    want += 1.0
    want *= torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)
    want.sub_(torch.ones(3, dtype=torch.float64), alpha=2.0)
    want[0] = 9.0
    want[:, 1] = torch.tensor([5.0, 6.0], dtype=torch.float64)
    np.testing.assert_array_equal(t.data, want.numpy())
    assert t.div_(2.0) is t and t.zero_() is t and not t.data.any()
    assert t.fill_(3.0).data.tolist() == [[3.0] * 3] * 2
    t.copy_(np.arange(3.0))
    np.testing.assert_array_equal(t.data, [[0.0, 1.0, 2.0]] * 2)


def test_in_place_ops_in_the_graph_follow_torch():
    x = mr.tensor(np.random.default_rng(1).random(3), requires_grad=True)
    with pytest.raises(RuntimeError, match="in-place op on a leaf tensor that requires grad"):
        x += 1.0
    out = x * 2.0
    alias = out
    out += x  # torchvision's `out += identity`: the gradient counts both terms
    assert out is alias and out._version == 1  # written in place, as torch
    out.sum().backward()
    np.testing.assert_array_equal(x.grad, 3.0)
    # the named methods, chained, with torch's values and gradients
    xt = torch.tensor(x.data, requires_grad=True)
    x.grad = None
    for t in (x, xt):
        y = t * 2.0
        y.add_(t, alpha=3.0).mul_(t).sub_(1.0).div_(t + 2.0)
        (y * y).sum().backward()
    np.testing.assert_allclose(x.grad, xt.grad.numpy(), rtol=1e-12)


def test_in_place_ops_in_the_graph_refuse_what_torch_cannot_record_here():
    """minires records an in-place op by rebasing the one tensor written: a tensor that
    shares memory with another in the graph (a view, or one a view was taken of) is
    refused (torch rebases both, or refuses views made inside custom Functions), as is
    the ReLU of an op that saved its output (torch too: at backward)."""
    x = mr.tensor(np.random.default_rng(2).random((2, 3)), requires_grad=True)
    with pytest.raises(ValueError, match="shares its memory with another tensor"):
        (x * 2.0).reshape(6).relu_()
    y = x * 2.0
    v = y.reshape(6)
    with pytest.raises(ValueError, match="shares its memory with another tensor"):
        y.relu_()
    with pytest.raises(ValueError, match="shares its memory with another tensor"):
        v.add_(1.0)
    assert y._version == 0 and v.data.tolist() == (x.data * 2.0).ravel().tolist()
    e = x.exp()  # exp keeps its output for backward
    e.relu_()
    with pytest.raises(RuntimeError, match="modified by an in-place operation"):
        e.sum().backward()


def test_in_place_op_errors_name_the_problem():
    t = mr.tensor(np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"shape \(4,\) does not broadcast .* \(2, 3\)"):
        t.add_(np.ones(4))
    with pytest.raises(TypeError, match="cannot be stored in this int64 tensor"):
        mr.tensor(np.arange(3)).add_(0.5)
    with pytest.raises(ValueError, match="expected a number"):
        t.fill_([1.0, 2.0])
    with pytest.raises(TypeError, match="got 'a'"):
        t.mul_("a")


# -- PyTorch's Tensor methods and functions beside NumPy's ------------------------------------


def _pair(x):
    return mr.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)


def _same_values_and_grads(ours, theirs, got, want, seed=0):
    np.testing.assert_allclose(got.data, want.detach().numpy(), rtol=1e-12, atol=1e-12)
    g = np.random.default_rng(seed).standard_normal(want.shape)
    got.backward(g)
    want.backward(torch.from_numpy(g))
    for a, b in zip(ours, theirs):
        np.testing.assert_allclose(a.grad, b.grad.numpy(), rtol=1e-12, atol=1e-12)


def test_size_is_numpys_count_and_torchs_shape():
    t = mr.tensor(np.zeros((2, 3, 4)))
    assert t.size == 24 and t.size + 1 == 25  # NumPy's attribute
    assert t.size() == (2, 3, 4) and t.size(1) == 3 and t.size(-1) == 4  # torch's call
    with pytest.raises(ValueError, match="dim 3 is out of range"):
        t.size(3)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**16), dim=st.sampled_from([None, 0, 1, (0, 1), -1]),
       keepdim=st.booleans(), correction=st.sampled_from([None, 0, 1, 2]))  # fmt: skip
def test_var_and_std_match_torch(seed, dim, keepdim, correction):
    x = np.random.default_rng(seed).standard_normal((4, 5))
    for name in ("var", "std"):
        (a,), (b,) = [_pair(x)[0]], [_pair(x)[1]]
        kwargs = {} if correction is None else {"correction": correction}
        if dim is None and keepdim:
            return  # torch's var() without a dim has no keepdim
        got = (
            getattr(a, name)(dim, keepdim=keepdim, **kwargs)
            if dim is not None
            else getattr(a, name)(**kwargs)
        )
        want = (
            getattr(b, name)(dim, keepdim=keepdim, **kwargs)
            if dim is not None
            else getattr(b, name)(**kwargs)
        )
        _same_values_and_grads([a], [b], got, want, seed)
    assert mr.gradcheck(lambda t: t.std(1, unbiased=False), [mr.tensor(x, requires_grad=True)])


def test_where_maximum_minimum_and_masked_fill_match_torch_with_ties_and_nan():
    rng = np.random.default_rng(3)
    a = np.round(rng.standard_normal((3, 4)), 1)
    b = np.round(rng.standard_normal(4), 1)
    a[0, :] = b  # ties: torch splits the gradient in halves
    a[1, 2] = np.nan
    for op in ("maximum", "minimum"):
        (ta, ua), (tb, ub) = _pair(a), _pair(b)
        _same_values_and_grads([ta, tb], [ua, ub], getattr(mr, op)(ta, tb),
                               getattr(torch, op)(ua, ub))  # fmt: skip
    a = rng.standard_normal((3, 4))
    cond = a > 0.2
    (ta, ua), (tb, ub) = _pair(a), _pair(b)
    _same_values_and_grads([ta, tb], [ua, ub], mr.where(mr.tensor(cond), ta, tb),
                           torch.where(torch.from_numpy(cond), ua, ub))  # fmt: skip
    (ta, ua) = _pair(a)
    _same_values_and_grads([ta], [ua], ta.masked_fill(mr.tensor(cond), -1.0),
                           ua.masked_fill(torch.from_numpy(cond), -1.0))  # fmt: skip
    xs = [mr.tensor(v, requires_grad=True) for v in (a, rng.standard_normal(4))]
    assert mr.gradcheck(lambda p, q: mr.maximum(p, q) + mr.where(mr.tensor(cond), p, q), xs)
    with pytest.raises(TypeError, match="condition must be a bool tensor"):
        mr.where(mr.tensor(a), ta, tb)
    with pytest.raises(ValueError, match=r"mask \(5,\) does not broadcast"):
        ta.masked_fill(np.zeros(5, bool), 0.0)


def test_split_chunk_expand_clone_and_small_methods_match_torch():
    x = np.random.default_rng(4).standard_normal((5, 3))
    for args in [(2,), (2, 1), ([1, 4],), ([3, 0, 2], 0)]:
        (a, b) = _pair(x)
        got, want = a.split(*args), b.split(*args)
        assert [p.shape for p in got] == [tuple(q.shape) for q in want]
        _same_values_and_grads([a], [b], mr.cat([p * (i + 1.0) for i, p in enumerate(got)],
                                                dim=args[1] if len(args) > 1 else 0),
                               torch.cat([p * (i + 1.0) for i, p in enumerate(want)],
                                         dim=args[1] if len(args) > 1 else 0))  # fmt: skip
    for chunks, dim in [(2, 0), (3, 1), (6, 0)]:
        assert [p.shape for p in mr.tensor(x).chunk(chunks, dim)] == [
            tuple(q.shape) for q in torch.tensor(x).chunk(chunks, dim)]  # fmt: skip
    with pytest.raises(ValueError, match="sum to 4"):
        mr.tensor(x).split([1, 3])
    y = np.random.default_rng(5).standard_normal((3, 1))
    (a, b) = _pair(y)
    _same_values_and_grads([a], [b], a.expand(2, -1, 4), b.expand(2, -1, 4))
    (a, b) = _pair(x)
    c = a.clone()
    assert c.data is not a.data and not np.shares_memory(c.data, a.data)
    _same_values_and_grads(
        [a], [b], c.t().mm(a) + a.pow(2).sum(), b.clone().t().mm(b) + b.pow(2).sum()
    )
    (a, b) = _pair(x)
    _same_values_and_grads(
        [a], [b], a.softmax(1) + a.log_softmax(0), b.softmax(1) + b.log_softmax(0)
    )
    assert mr.tensor(x).T.contiguous().data.flags.c_contiguous
    assert mr.tensor(x).long().dtype == np.int64
    assert bool((mr.tensor(x) > -100).all()) and not bool((mr.tensor(x) > 100).any())
    assert (mr.tensor(x) > 0).any(dim=1).data.tolist() == (torch.tensor(x) > 0).any(dim=1).tolist()
    with pytest.raises(ValueError, match="t\\(\\): expects a tensor of <= 2 dimensions"):
        mr.tensor(np.zeros((2, 2, 2))).t()


def test_from_numpy_shares_memory_and_isnan_isfinite():
    arr = np.zeros(3)
    t = mr.from_numpy(arr)
    arr[0] = 5.0
    assert t.data[0] == 5.0
    with pytest.raises(TypeError, match="cannot be shared"):
        mr.from_numpy(np.zeros(3, np.float16))
    v = mr.tensor([1.0, np.nan, np.inf])
    assert mr.isnan(v).data.tolist() == [False, True, False]
    assert mr.isfinite(v).data.tolist() == [True, False, False]


def test_set_grad_enabled_as_torch():
    x = mr.tensor([1.0], requires_grad=True)
    with mr.set_grad_enabled(False):
        assert not (x * 2).requires_grad
    assert (x * 2).requires_grad
    mr.set_grad_enabled(False)
    try:
        assert not mr.is_grad_enabled()
    finally:
        mr.set_grad_enabled(True)

    @mr.set_grad_enabled(False)
    def double(t):
        return t * 2

    assert mr.is_grad_enabled()  # decorating changes nothing
    assert not double(x).requires_grad and mr.is_grad_enabled()
    with pytest.raises(TypeError, match="mode must be a bool"):
        mr.set_grad_enabled("no")


def test_autograd_grad_matches_torch_and_leaves_grads_alone():
    rng = np.random.default_rng(7)
    x0, w0 = rng.standard_normal((2, 3)), rng.standard_normal((3, 3))
    g0 = rng.standard_normal((2, 3))

    def run(lib, x, w):
        h = (x @ w).relu()
        out = h @ w + h  # a residual join: d out / d h = W^T-path + identity
        return h, out, (out * out).sum()

    x, w = (mr.tensor(v, requires_grad=True) for v in (x0, w0))
    tx, tw = (torch.tensor(v, requires_grad=True) for v in (x0, w0))
    h, out, loss = run(mr, x, w)
    th, tout, tloss = run(torch, tx, tw)
    ours = mr.autograd.grad([loss, out], [x, h, w], grad_outputs=[None, g0], retain_graph=True)
    seeds = [None, torch.from_numpy(g0)]
    theirs = torch.autograd.grad([tloss, tout], [tx, th, tw], seeds, retain_graph=True)
    for a, b in zip(ours, theirs):
        np.testing.assert_allclose(a, b.numpy(), rtol=1e-12, atol=1e-12)
    assert x.grad is None and w.grad is None  # nothing accumulated
    loss.backward()  # the graph was retained: a normal backward still works
    assert x.grad is not None
    unused = mr.tensor(np.ones(2), requires_grad=True)
    _, out2, loss2 = run(mr, x, w)
    with pytest.raises(ValueError, match=r"inputs\[1\] .* is not used"):
        mr.autograd.grad(loss2, [x, unused], retain_graph=True)
    gx, gu = mr.autograd.grad(loss2, [x, unused], allow_unused=True, retain_graph=True)
    assert gu is None and gx.shape == x.shape
    with pytest.raises(ValueError, match="give grad_outputs for a non-scalar output"):
        mr.autograd.grad(out2, x)
    with pytest.raises(ValueError, match="does not require grad"):
        mr.autograd.grad(loss2, mr.tensor(np.ones(2)))


# -- round two of the fuzz audit: assignment, in-place ops with tracked values, std at 0 ------


def test_item_assignment_uses_getitems_index_rules():
    x = np.arange(60.0).reshape(SHAPE)
    idx = np.array([2, 2, 0])
    ours, theirs = mr.tensor(x), torch.tensor(x)
    v = np.random.default_rng(0).standard_normal((5, 3))
    ours[1, :, idx] = v  # torch's order: a (5, 3) block
    theirs[1, :, torch.from_numpy(idx)] = torch.from_numpy(v)
    np.testing.assert_array_equal(ours.data, theirs.numpy())
    ours[mr.tensor(np.array([2]))] = mr.tensor(np.full((1, 5, 3), 7.0))  # a Tensor index
    theirs[torch.tensor([2])] = torch.full((1, 5, 3), 7.0, dtype=torch.float64)
    np.testing.assert_array_equal(ours.data, theirs.numpy())
    # an Ellipsis that stands for no dimension does not split two index arrays
    a = mr.tensor(np.arange(18.0).reshape(3, 3, 2))
    got = a[:, [0, 1], ..., [1, 0]]
    want = torch.arange(18.0, dtype=torch.float64).reshape(3, 3, 2)[:, [0, 1], ..., [1, 0]]
    assert got.shape == tuple(want.shape)
    np.testing.assert_array_equal(got.data, want.numpy())


def test_in_place_ops_with_a_value_that_requires_grad():
    w = mr.tensor([1.0, 2.0, 3.0], requires_grad=True)
    acc = mr.zeros(3, dtype=np.float64)
    acc += w * 2.0  # the accumulate-into-zeros pattern: the graph is kept, as torch
    acc.sum().backward()
    np.testing.assert_array_equal(w.grad, 2.0)
    out = mr.zeros(3, dtype=np.float64)
    with pytest.raises(ValueError, match="the value .* requires grad"):
        out[0] = (w * 3.0)[0]
    w.grad = None
    assert out.add_(w, alpha=2.0) is out and out.grad_fn is not None  # recorded, as torch
    out.sum().backward()
    np.testing.assert_array_equal(w.grad, 2.0)
    y = w * 1.0
    with pytest.raises(ValueError, match=r"shape \(2, 3\) differs from this tensor's \(3,\)"):
        y += mr.ones(2, 3, dtype=np.float64)
    z = mr.tensor(np.ones(2, np.float32), requires_grad=True) * 1.0
    z += mr.tensor(np.ones(2))  # float32 += float64 stays float32, as torch
    assert z.dtype == np.float32


def test_in_place_op_arguments_and_casts():
    t = mr.tensor(np.zeros(3))
    with pytest.raises(TypeError, match="alpha must be a number"):
        t.add_(1.0, alpha="a")
    with pytest.raises(TypeError, match="alpha must be a number"):
        t.sub_(1.0, alpha=True)
    i = mr.tensor(np.arange(3))
    with pytest.raises(TypeError, match=r"the result \(float64\) cannot be stored in this int64"):
        i /= 2
    with pytest.raises(ValueError, match="cannot convert float NaN to integer"):
        i[0] = np.nan
    i.copy_(np.array([1.7, -1.7, 2.2]))  # torch truncates floats into an integer tensor
    assert i.data.tolist() == torch.tensor([1.7, -1.7, 2.2]).long().tolist()


def test_std_gradient_is_zero_where_the_deviation_is_zero():
    x = mr.tensor(np.ones((2, 4)), requires_grad=True)
    tx = torch.ones(2, 4, dtype=torch.float64, requires_grad=True)
    (x.std(1).sum() + x.std()).backward()
    (tx.std(1).sum() + tx.std()).backward()
    np.testing.assert_array_equal(x.grad, tx.grad.numpy())
    assert np.isfinite(x.grad).all()


def test_masked_fill_keeps_the_tensors_dtype():
    m = np.array([True, False])
    got = mr.tensor(np.array([1, 2])).masked_fill(mr.tensor(m), 2.5)
    want = torch.tensor([1, 2]).masked_fill(torch.from_numpy(m), 2.5)
    assert got.dtype == np.int64 and got.data.tolist() == want.tolist()
    f = mr.tensor(np.ones(2, np.float32)).masked_fill(m, mr.tensor(np.float64(3.0)))
    assert f.dtype == np.float32 and f.data.tolist() == [3.0, 1.0]
    with pytest.raises(ValueError, match="value must be 0-d"):
        mr.tensor(np.ones(2)).masked_fill(m, mr.tensor(np.ones(2)))


def test_autograd_grad_of_several_outputs_frees_their_graphs():
    x = mr.tensor(np.ones(3), requires_grad=True)
    y, z = (x * 2.0).sum(), (x * x).sum()
    (gx,) = mr.autograd.grad([y, z], x)
    np.testing.assert_array_equal(gx, 4.0)
    with pytest.raises(RuntimeError, match="second time"):
        mr.autograd.grad(y, x)  # freed, as torch (retain_graph was not asked for)


@settings(max_examples=100, deadline=None)
@given(index=indices(), seed=st.integers(0, 2**16))
def test_item_assignment_matches_torch(index, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(SHAPE)
    theirs = torch.tensor(x)
    try:
        shape = tuple(theirs[_torch_index(index)].shape)
        v = rng.standard_normal(shape)
        theirs[_torch_index(index)] = torch.from_numpy(v)
    except (IndexError, RuntimeError, TypeError, ValueError):
        return  # torch refuses the index
    ours = mr.tensor(x.copy())
    ours[index] = v
    if any(isinstance(i, np.ndarray) and len(set(i.tolist())) < len(i) for i in index):
        return  # repeated indices: which write wins is unspecified in both libraries
    np.testing.assert_array_equal(ours.data, theirs.numpy())


def test_augmented_assignment_into_a_view_with_a_tracked_value_refuses():
    w = mr.tensor([1.0, 2.0, 3.0], requires_grad=True)
    buf = mr.zeros(2, 3)
    row = buf[0]
    with pytest.raises(ValueError, match="is a view of another"):
        row += w  # torch writes through into buf; minires cannot record that
    row += mr.tensor(np.ones(3, np.float32))  # an untracked value writes through
    assert buf.data[0].tolist() == [1.0, 1.0, 1.0]
