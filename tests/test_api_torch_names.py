"""The pieces a PyTorch user reaches for: dropout, group/layer norm, loss functions and
modules, Tensor methods under torch's names, factories and ``.to(...)``.

Each differentiable op: a float64 gradcheck over hypothesis-generated shapes and torch as
an oracle for forward and gradients (skipped with a reason when torch is missing)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from torch_oracle import grads_match, spread, t64

import minires as mr
import minires.functional as F
from minires import nn

shapes = st.lists(st.integers(1, 4), min_size=1, max_size=3).map(tuple)


# -- dropout ----------------------------------------------------------------------------------


@given(shape=shapes, p=st.sampled_from([0.0, 0.2, 0.5, 0.9, 1.0]), seed=st.integers(0, 999))
def test_dropout_gradcheck_with_fixed_mask(shape, p, seed):
    x = t64(np.random.default_rng(seed).standard_normal(shape))

    def fn(x):
        mr.manual_seed(seed)  # the same mask at every evaluation
        return F.dropout(x, p, training=True)

    assert mr.gradcheck(fn, [x])


def compare_with_torch(mr_fn, torch_fn, arrays, rtol=1e-10, atol=1e-10):
    """`grads_match` with this file's tolerances."""
    return grads_match(mr_fn, torch_fn, arrays, rtol, atol)


def test_dropout_semantics():
    x = mr.ones(20000, dtype="float64")
    mr.manual_seed(3)
    a = F.dropout(x, 0.25)
    mr.manual_seed(3)
    b = F.dropout(x, 0.25)
    np.testing.assert_array_equal(a.data, b.data)  # reproducible from minires' seed
    kept = a.data != 0
    np.testing.assert_allclose(a.data[kept], 1 / 0.75)  # inverted: kept values scaled
    assert abs(kept.mean() - 0.75) < 0.02  # 4 sigma is 0.012
    assert not np.array_equal(F.dropout(x, 0.25).data, a.data)  # the generator moves on
    assert F.dropout(x, 0.5, training=False) is x
    assert F.dropout(x, 0.0) is x
    np.testing.assert_array_equal(F.dropout(x, 1.0).data, 0)
    x32 = mr.randn(3, 4)
    assert F.dropout(x32, 0.5).dtype == np.float32


def test_dropout_module_train_and_eval():
    m = nn.Sequential(nn.Dropout(0.5))
    x = mr.randn(64, 8)
    assert np.any(m(x).data == 0)
    m.eval()
    assert m(x) is x
    assert "p=0.5" in repr(m)


@pytest.mark.parametrize("p", [-0.1, 1.5, float("nan")])
def test_dropout_refuses_bad_p(p):
    with pytest.raises(ValueError, match="between 0 and 1"):
        F.dropout(mr.randn(3), p)
    with pytest.raises(ValueError, match="between 0 and 1"):
        nn.Dropout(p)
    with pytest.raises(TypeError):
        nn.Dropout("0.5")


@given(shape=shapes, p=st.sampled_from([0.1, 0.5, 0.8]), seed=st.integers(0, 999))
def test_dropout_matches_torch_given_its_mask(torch, shape, p, seed):
    """torch's RNG is not ours, so take torch's mask and check scaling and gradient."""
    x = np.random.default_rng(seed).uniform(0.5, 2, shape)  # nonzero: zeros mark drops
    torch.manual_seed(seed)
    xt = torch.tensor(x, requires_grad=True)
    out_t = torch.nn.functional.dropout(xt, p, training=True)
    g = np.random.default_rng(1).standard_normal(shape)
    out_t.backward(torch.tensor(g))
    mask = (out_t.detach().numpy() != 0) / (1 - p)
    xm = t64(x)
    out_m = F.Dropout.apply(xm, mask)
    out_m.backward(g)
    np.testing.assert_allclose(out_m.data, out_t.detach().numpy(), rtol=1e-12)
    np.testing.assert_allclose(xm.grad, xt.grad.numpy(), rtol=1e-12)
    # p = 1 and eval mode agree exactly, NaN included
    xn = np.array([np.nan, 1.0, -2.0])
    np.testing.assert_array_equal(
        F.dropout(mr.tensor(xn), 1.0).data,
        torch.nn.functional.dropout(torch.tensor(xn), 1.0).numpy(),
    )


# -- layer norm and group norm ----------------------------------------------------------------


@st.composite
def layer_norm_case(draw):
    lead = draw(st.lists(st.integers(1, 3), min_size=0, max_size=2))
    norm = draw(st.lists(st.integers(1, 4), min_size=1, max_size=2))
    return tuple(lead), tuple(norm)


@given(case=layer_norm_case(), affine=st.booleans(), seed=st.integers(0, 999))
def test_layer_norm_gradcheck(backend, case, affine, seed):
    lead, norm = case
    rng = np.random.default_rng(seed)
    x = t64(rng.standard_normal(lead + norm) * 2 + 1)
    extra = [t64(rng.standard_normal(norm)), t64(rng.standard_normal(norm))] if affine else []
    assert mr.gradcheck(lambda x, *wb: F.layer_norm(x, norm, *wb), [x, *extra])


@st.composite
def group_norm_case(draw):
    groups = draw(st.integers(1, 3))
    c = groups * draw(st.integers(1, 3))
    spatial = draw(st.lists(st.integers(1, 3), min_size=0, max_size=2))
    return (draw(st.integers(1, 3)), c, *spatial), groups


@given(case=group_norm_case(), affine=st.booleans(), seed=st.integers(0, 999))
def test_group_norm_gradcheck(backend, case, affine, seed):
    shape, groups = case
    rng = np.random.default_rng(seed)
    x = t64(rng.standard_normal(shape) * 2 + 1)
    c = shape[1]
    extra = [t64(rng.standard_normal(c)), t64(rng.standard_normal(c))] if affine else []
    assert mr.gradcheck(lambda x, *wb: F.group_norm(x, groups, *wb), [x, *extra])


@given(case=layer_norm_case(), affine=st.booleans(), seed=st.integers(0, 999))
def test_layer_norm_matches_torch(torch, backend, case, affine, seed):
    lead, norm = case
    rng = np.random.default_rng(seed)
    arrays = [rng.standard_normal(lead + norm) * 3 - 1]
    if affine:
        arrays += [rng.standard_normal(norm), rng.standard_normal(norm)]
    compare_with_torch(
        lambda x, *wb: F.layer_norm(x, norm, *wb),
        lambda x, *wb: torch.nn.functional.layer_norm(x, norm, *wb),
        arrays,
    )


@given(case=group_norm_case(), affine=st.booleans(), seed=st.integers(0, 999))
def test_group_norm_matches_torch(torch, backend, case, affine, seed):
    shape, groups = case
    # torch.nn.functional.group_norm refuses N * C / G * prod(spatial) == 1 (its batch-norm
    # check, reused); minires computes it (the output is the bias)
    assume(shape[0] * shape[1] // groups * int(np.prod(shape[2:])) > 1)
    rng = np.random.default_rng(seed)
    arrays = [rng.standard_normal(shape) * 3 - 1]
    if affine:
        arrays += [rng.standard_normal(shape[1]), rng.standard_normal(shape[1])]
    compare_with_torch(
        lambda x, *wb: F.group_norm(x, groups, *wb),
        lambda x, *wb: torch.nn.functional.group_norm(x, groups, *wb),
        arrays,
    )


def test_norm_modules_match_torch_and_use_torch_names(torch, backend):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 6, 3, 4)).astype(np.float32)
    pairs = [
        (nn.GroupNorm(3, 6), torch.nn.GroupNorm(3, 6)),
        (nn.GroupNorm(2, 6, affine=False), torch.nn.GroupNorm(2, 6, affine=False)),
        (nn.LayerNorm((3, 4)), torch.nn.LayerNorm((3, 4))),
        (
            nn.LayerNorm(4, elementwise_affine=False),
            torch.nn.LayerNorm(4, elementwise_affine=False),
        ),
        (nn.LayerNorm(4, bias=False), torch.nn.LayerNorm(4, bias=False)),
    ]
    for ours, theirs in pairs:
        assert list(ours.state_dict()) == list(theirs.state_dict())
        for p in theirs.parameters():  # non-trivial affine parameters, copied across
            p.data.uniform_(0.5, 1.5)
        ours.load_state_dict({k: v.numpy() for k, v in theirs.state_dict().items()})
        y = ours(mr.tensor(x))
        assert y.dtype == np.float32
        np.testing.assert_allclose(
            y.data, theirs(torch.tensor(x)).detach().numpy(), rtol=1e-5, atol=1e-5
        )
        ours.eval()  # no batch statistics: the same function in eval mode
        np.testing.assert_array_equal(ours(mr.tensor(x)).data, y.data)


def test_norm_validation():
    x = mr.randn(2, 6, 3)
    with pytest.raises(ValueError, match="divisible"):
        nn.GroupNorm(4, 6)
    with pytest.raises(ValueError, match="divisible by num_groups"):
        F.group_norm(x, 4)
    with pytest.raises(ValueError, match="positive"):
        nn.GroupNorm(0, 6)
    with pytest.raises(ValueError, match="expected 8 channels"):
        nn.GroupNorm(2, 8)(x)
    with pytest.raises(ValueError, match=r"weight must have shape \(6,\)"):
        F.group_norm(x, 2, mr.ones(5))
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        F.group_norm(mr.randn(6), 2)
    with pytest.raises(ValueError, match=r"does not end in normalized_shape \(6, 4\)"):
        F.layer_norm(x, (6, 4))
    with pytest.raises(ValueError, match="does not end in"):
        nn.LayerNorm(4)(x)
    with pytest.raises(ValueError, match=r"bias must have shape \(3,\)"):
        F.layer_norm(x, 3, None, mr.zeros(4))
    with pytest.raises(TypeError, match="same dtype"):
        F.layer_norm(x, 3, mr.ones(3, dtype="float64"))
    with pytest.raises(ValueError, match="eps"):
        F.layer_norm(x, 3, eps=-1.0)
    with pytest.raises(ValueError, match="normalized_shape"):
        nn.LayerNorm(())


# -- losses -----------------------------------------------------------------------------------


@given(shape=shapes, reduction=st.sampled_from(["mean", "sum", "none"]), seed=st.integers(0, 999))
def test_mse_loss_gradcheck(shape, reduction, seed):
    rng = np.random.default_rng(seed)
    a, b = t64(rng.standard_normal(shape)), t64(rng.standard_normal(shape))
    assert mr.gradcheck(lambda a, b: F.mse_loss(a, b, reduction), [a, b])


@given(shape=shapes, reduction=st.sampled_from(["mean", "sum", "none"]), seed=st.integers(0, 999))
def test_mse_loss_matches_torch(torch, shape, reduction, seed):
    rng = np.random.default_rng(seed)
    compare_with_torch(
        lambda a, b: F.mse_loss(a, b, reduction),
        lambda a, b: torch.nn.functional.mse_loss(a, b, reduction=reduction),
        [rng.standard_normal(shape), rng.standard_normal(shape)],
    )


@given(
    n=st.integers(1, 4),
    k=st.integers(2, 5),
    reduction=st.sampled_from(["mean", "sum", "none"]),
    smoothing=st.sampled_from([0.0, 0.1, 1.0]),
    seed=st.integers(0, 999),
)
def test_cross_entropy_reduction_and_smoothing(torch, n, k, reduction, smoothing, seed):
    rng = np.random.default_rng(seed)
    target = rng.integers(0, k, n)
    x = t64(rng.standard_normal((n, k)) * 3)
    assert mr.gradcheck(lambda x: F.cross_entropy(x, target, reduction, smoothing), [x])
    compare_with_torch(
        lambda x: F.cross_entropy(x, target, reduction, smoothing),
        lambda x: torch.nn.functional.cross_entropy(
            x, torch.tensor(target), reduction=reduction, label_smoothing=smoothing
        ),
        [x.data],
    )


def test_loss_modules_match_torch(torch):
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((5, 3)).astype(np.float32)
    target = rng.integers(0, 3, 5)
    ce = nn.CrossEntropyLoss(label_smoothing=0.2)(mr.tensor(logits), mr.tensor(target))
    ce_t = torch.nn.CrossEntropyLoss(label_smoothing=0.2)(
        torch.tensor(logits), torch.tensor(target)
    )
    assert ce.shape == () and ce.dtype == np.float32
    np.testing.assert_allclose(ce.item(), ce_t.item(), rtol=1e-6)
    y = rng.standard_normal((5, 3)).astype(np.float32)
    for red in ("mean", "sum", "none"):
        ours = nn.MSELoss(reduction=red)(mr.tensor(logits), y)  # an array target is fine
        theirs = torch.nn.MSELoss(reduction=red)(torch.tensor(logits), torch.tensor(y))
        np.testing.assert_allclose(ours.data, theirs.numpy(), rtol=1e-6)
    assert repr(nn.MSELoss()) == "MSELoss(reduction='mean')"


def test_loss_validation():
    x = mr.randn(3, 4)
    with pytest.raises(ValueError, match="reduction must be one of"):
        F.mse_loss(x, x, "avg")
    with pytest.raises(ValueError, match="reduction must be one of"):
        nn.CrossEntropyLoss(reduction="elementwise_mean")
    with pytest.raises(ValueError, match=r"target shape \(4,\) does not match input shape"):
        F.mse_loss(x, mr.randn(4))
    with pytest.raises(TypeError, match="same dtype"):
        F.mse_loss(x, mr.randn(3, 4, dtype="float64"))
    with pytest.raises(TypeError, match="integer class indices"):
        nn.CrossEntropyLoss()(x, np.array([0.0, 1.0, 2.0]))
    with pytest.raises(ValueError, match=r"must be in \[0, 4\)"):
        nn.CrossEntropyLoss()(x, np.array([0, 4, 1]))
    with pytest.raises(ValueError, match=r"must be in \[0, 4\)"):
        nn.CrossEntropyLoss()(x, np.array([0, -1, 1]))  # -100 is torch's ignore_index
    with pytest.raises(ValueError, match="label_smoothing"):
        nn.CrossEntropyLoss(label_smoothing=1.5)
    with pytest.raises(ValueError, match="label_smoothing"):
        F.cross_entropy(x, np.array([0, 1, 2]), label_smoothing=-0.1)


# -- Tensor methods under torch's names -----------------------------------------------------------


@st.composite
def reduce_case(draw):
    shape = draw(shapes)
    dim = draw(
        st.one_of(
            st.none(),
            st.integers(-len(shape), len(shape) - 1),
            st.lists(st.integers(0, len(shape) - 1), min_size=1, unique=True).map(tuple),
        )
    )
    return shape, dim, draw(st.booleans())


@given(case=reduce_case(), seed=st.integers(0, 999))
def test_reductions_with_dim_keepdim_gradcheck(case, seed):
    shape, dim, keep = case
    x = t64(spread(shape, np.random.default_rng(seed)))
    for name in ("sum", "mean", "max", "min"):
        fn = getattr(mr.Tensor, name)
        ours = fn(x, dim=dim, keepdim=keep)
        np.testing.assert_array_equal(ours.data, fn(x, axis=dim, keepdims=keep).data)
        np.testing.assert_allclose(ours.data, getattr(np, name)(x.data, axis=dim, keepdims=keep))
        assert mr.gradcheck(lambda x, fn=fn: fn(x, dim=dim, keepdim=keep), [x])


@given(case=reduce_case(), seed=st.integers(0, 999))
def test_reductions_match_torch(torch, case, seed):
    shape, dim, keep = case
    x = spread(shape, np.random.default_rng(seed))
    tdim = tuple(range(len(shape))) if dim is None else dim
    for ours, theirs in (
        ("sum", lambda t: t.sum(dim=tdim, keepdim=keep)),
        ("mean", lambda t: t.mean(dim=tdim, keepdim=keep)),
        ("max", lambda t: t.amax(dim=tdim, keepdim=keep)),
        ("min", lambda t: t.amin(dim=tdim, keepdim=keep)),
    ):
        compare_with_torch(
            lambda t, ours=ours: getattr(t, ours)(dim=dim, keepdim=keep), theirs, [x]
        )
    if not isinstance(dim, tuple):
        for name in ("argmax", "argmin"):
            ours = getattr(mr.tensor(x), name)(dim=dim, keepdim=keep)
            theirs = getattr(torch.tensor(x), name)(dim=dim, keepdim=keep)
            assert ours.dtype == np.int64
            np.testing.assert_array_equal(ours.data, theirs.numpy())


def test_max_and_min_conventions(torch):
    x = t64([[3.0, 3.0, 1.0], [0.0, 2.0, 2.0]])
    m = x.max()
    assert m.shape == () and m.item() == 3.0  # no dim: a 0-d tensor
    m.backward()
    np.testing.assert_array_equal(x.grad, [[0.5, 0.5, 0], [0, 0, 0]])  # ties share
    v = x.max(dim=1)  # values only (torch's amax); indices are argmax
    np.testing.assert_array_equal(v.data, [3.0, 2.0])
    np.testing.assert_array_equal(x.argmax(dim=1).data, [0, 1])  # first on ties, like torch
    np.testing.assert_array_equal(x.argmin(1, True).data, [[2], [0]])
    assert x.argmax().item() == 0 and x.argmax(keepdim=True).shape == (1, 1)
    assert x.min(0).data.tolist() == [0.0, 2.0, 1.0]
    s = mr.tensor(5.0)  # a 0-d tensor accepts dim 0 and -1, like torch
    assert s.sum(dim=0).item() == 5.0 and s.max(dim=-1).shape == () and s.argmax(0).item() == 0


@pytest.mark.parametrize(
    "call",
    [
        lambda x: x.sum(dim=3),
        lambda x: x.mean(dim=-4),
        lambda x: x.max(dim=(0, 5)),
        lambda x: x.min(dim=3),
        lambda x: x.argmax(dim=3),
        lambda x: x.permute(0, 1, 3),
        lambda x: x.unsqueeze(4),
        lambda x: x.unsqueeze(-5),
        lambda x: x.squeeze(3),
        lambda x: x.flatten(0, 3),
        lambda x: x.flatten(-4),
        lambda x: F.flatten(x, 5),
        lambda x: mr.cat([x, x], dim=3),
        lambda x: mr.cat([x, x], axis=-4),
        lambda x: mr.stack([x, x], dim=4),
    ],
)
def test_out_of_range_dims_are_refused_not_wrapped(call):
    x = mr.randn(2, 3, 4)
    with pytest.raises(ValueError, match="out of range"):
        call(x)


def test_argument_mixups_are_refused():
    x = mr.randn(2, 3, 4)
    with pytest.raises(TypeError, match="dim or axis, not both"):
        x.sum(axis=0, dim=1)
    with pytest.raises(TypeError, match="keepdim or keepdims, not both"):
        x.mean(0, keepdims=True, keepdim=True)
    with pytest.raises(TypeError, match="dim or axis, not both"):
        mr.cat([x, x], 0, axis=1)
    with pytest.raises(TypeError, match="must be an int"):
        x.sum(dim=1.5)
    with pytest.raises(TypeError, match="one int"):
        x.argmax(dim=(0, 1))
    with pytest.raises(ValueError, match="twice"):
        x.sum(dim=(1, -2))
    with pytest.raises(ValueError, match="not a permutation"):
        x.permute(0, 0, 1)
    with pytest.raises(ValueError, match="not a permutation"):
        x.permute(1, 0)
    with pytest.raises(ValueError, match="at least one of min and max"):
        x.clamp()
    with pytest.raises(TypeError, match="min must be a number"):
        x.clamp(min="0")
    with pytest.raises(ValueError, match="zero-dimensional tensor .* cannot be concatenated"):
        mr.cat([mr.tensor(1.0), mr.tensor(2.0)])
    with pytest.raises(ValueError, match="same shape"):
        mr.stack([x, x[:1]])
    with pytest.raises(ValueError, match="empty"):
        mr.zeros(0, 3).argmax()


@given(shape=shapes, seed=st.integers(0, 999), data=st.data())
def test_shape_methods_gradcheck_and_match_torch(torch, shape, seed, data):
    rng = np.random.default_rng(seed)
    a = rng.standard_normal(shape)
    x = t64(a)
    nd = len(shape)
    perm = tuple(data.draw(st.permutations(range(nd))))
    new = data.draw(st.integers(-nd - 1, nd))
    sq = data.draw(st.integers(-nd, nd - 1))
    start = data.draw(st.integers(-nd, nd - 1))
    end = data.draw(st.integers(start % nd, nd - 1))
    cases = [
        (lambda t: t.permute(*perm), lambda t: t.permute(*perm)),
        (lambda t: t.permute(perm), lambda t: t.permute(perm)),
        (lambda t: t.unsqueeze(new), lambda t: t.unsqueeze(new)),
        (lambda t: t.unsqueeze(new).squeeze(), lambda t: t.unsqueeze(new).squeeze()),
        (lambda t: t.squeeze(sq), lambda t: t.squeeze(sq)),
        (lambda t: t.view(-1), lambda t: t.view(-1)),
        (lambda t: t.view(a.size, 1), lambda t: t.view(a.size, 1)),
        (lambda t: t.view((1, -1)), lambda t: t.view((1, -1))),
        (lambda t: t.flatten(), lambda t: t.flatten()),
        (lambda t: t.flatten(start, end), lambda t: t.flatten(start, end)),
    ]
    for ours, theirs in cases:
        assert ours(x).shape == tuple(theirs(torch.tensor(a)).shape)
        assert mr.gradcheck(ours, [x])
        compare_with_torch(ours, theirs, [a])


@given(shape=shapes, n=st.integers(1, 3), seed=st.integers(0, 999), data=st.data())
def test_stack_and_cat_gradcheck_and_match_torch(torch, shape, n, seed, data):
    rng = np.random.default_rng(seed)
    arrays = [rng.standard_normal(shape) for _ in range(n)]
    sdim = data.draw(st.integers(-len(shape) - 1, len(shape)))
    cdim = data.draw(st.integers(-len(shape), len(shape) - 1))
    for ours, theirs in (
        (lambda *ts: mr.stack(ts, dim=sdim), lambda *ts: torch.stack(ts, dim=sdim)),
        (lambda *ts: mr.stack(list(ts), sdim), lambda *ts: torch.stack(ts, sdim)),
        (lambda *ts: mr.cat(ts, dim=cdim), lambda *ts: torch.cat(ts, dim=cdim)),
        (lambda *ts: mr.cat(ts, axis=cdim), lambda *ts: torch.cat(ts, cdim)),
    ):
        assert mr.gradcheck(ours, [t64(a) for a in arrays])
        compare_with_torch(ours, theirs, arrays)


@given(shape=shapes, seed=st.integers(0, 999))
def test_elementwise_methods_gradcheck(shape, seed):
    rng = np.random.default_rng(seed)
    x = t64(spread(shape, rng))  # away from 0 and from the bounds
    assert mr.gradcheck(lambda x: x.abs(), [x])
    assert mr.gradcheck(lambda x: x.abs().sqrt(), [x])
    assert mr.gradcheck(lambda x: (x * 3.0).exp().log(), [x])
    for lo, hi in ((-1.01, 0.99), (None, 0.51), (-0.49, None), (1.5, -1.5)):
        assert mr.gradcheck(lambda x, lo=lo, hi=hi: x.clamp(lo, hi), [x])
    assert mr.gradcheck(lambda x: x.clip(min=-0.3), [x])


def test_elementwise_methods_match_torch_at_kinks(torch):
    """At the points where gradcheck cannot look - 0 for abs and sqrt, the bounds of clamp,
    NaN - forward and gradient are torch's."""
    a = np.array([-2.0, -1.0, -0.5, 0.0, 0.5, 1.0, 2.0, np.nan])
    with np.errstate(invalid="ignore", divide="ignore"):
        for ours, theirs in (
            (lambda t: t.abs(), lambda t: t.abs()),
            (lambda t: t.clamp(-1.0, 1.0), lambda t: t.clamp(-1.0, 1.0)),
            (lambda t: t.clamp(min=0.0), lambda t: t.clamp(min=0.0)),
            (lambda t: t.clamp(max=0.5), lambda t: t.clamp(max=0.5)),
            (lambda t: t.clamp(1.0, -1.0), lambda t: t.clamp(1.0, -1.0)),
            (lambda t: t.sqrt(), lambda t: t.sqrt()),
            (lambda t: t.exp(), lambda t: t.exp()),
            (lambda t: t.log(), lambda t: t.log()),
        ):
            ts = torch.tensor(a, requires_grad=True)
            theirs(ts).sum().backward()
            x = t64(a)
            out = ours(x)
            out.sum().backward()
            # NaN and inf where torch has them; torch's vectorised sqrt is 1 ulp off
            np.testing.assert_allclose(out.data, theirs(torch.tensor(a)).numpy(), rtol=1e-15)
            np.testing.assert_allclose(x.grad, ts.grad.numpy(), rtol=1e-15)
    # float32 stays float32; int tensors clamp like numbers
    assert mr.randn(3).clamp(0, 1).dtype == np.float32
    np.testing.assert_array_equal(mr.arange(5).clamp(1, 3).data, [1, 1, 2, 3, 3])


# -- factories ------------------------------------------------------------------------------


def test_factories(torch):
    for make in ("zeros", "ones"):
        ours = getattr(mr, make)
        assert ours(2, 3).shape == (2, 3) and ours(2, 3).dtype == np.float32
        assert ours((2, 3)).shape == ours([2, 3]).shape == (2, 3)
        assert ours().shape == ()
        np.testing.assert_array_equal(ours(4).data, getattr(torch, make)(4).numpy())
        assert ours(2, dtype="float64").dtype == np.float64
        assert ours(2, dtype=np.float64).dtype == np.float64
        assert ours(2, dtype="double").dtype == np.float64
        assert ours(2, dtype=torch.float64).dtype == np.float64
        assert ours(2, dtype="long").dtype == np.int64
        t = ours(2, 2, requires_grad=True)
        assert t.requires_grad and t.is_leaf
    x = mr.randn(2, 3, dtype="float64")
    assert mr.zeros_like(x).dtype == np.float64 and mr.ones_like(x).shape == (2, 3)
    assert mr.zeros_like(x, dtype="float32").dtype == np.float32
    assert mr.full((2, 2), 7.0).data.tolist() == [[7.0, 7.0], [7.0, 7.0]]
    mr.manual_seed(5)
    a = mr.randn(1000)
    mr.manual_seed(5)
    np.testing.assert_array_equal(a.data, mr.randn(1000).data)  # minires' generator
    assert a.dtype == np.float32 and abs(a.data.mean()) < 0.15 and abs(a.data.std() - 1) < 0.1
    u = mr.rand(1000, dtype="float64")
    assert u.dtype == np.float64 and 0 <= u.data.min() and u.data.max() < 1
    with pytest.raises(TypeError, match="sizes must be ints"):
        mr.zeros(2.5, 3)
    with pytest.raises(ValueError, match=">= 0"):
        mr.ones(-1)
    with pytest.raises(TypeError, match="not supported"):
        mr.zeros(2, dtype=np.complex128)
    with pytest.raises(TypeError, match="float32 or float64"):
        mr.randn(2, dtype="int64")
    with pytest.raises(ValueError, match="CPU only"):
        mr.zeros(2, device="cuda")


@pytest.mark.parametrize(
    "args",
    [(5,), (2, 9), (2, 9, 3), (0, 1, 0.1), (0.5, 3.2, 0.7), (1, -2, -0.3), (3, 3), (10, 0, -3)],
)
def test_arange_matches_torch(torch, args):
    ours, theirs = mr.arange(*args), torch.arange(*args)
    assert str(ours.dtype) == str(theirs.dtype).removeprefix("torch.")  # int64 or float32
    np.testing.assert_allclose(ours.data, theirs.numpy(), rtol=1e-6)
    assert mr.arange(*args, dtype="float64").dtype == np.float64


def test_arange_refuses_what_torch_refuses():
    with pytest.raises(ValueError, match="nonzero"):
        mr.arange(0, 5, 0)
    with pytest.raises(ValueError, match="inconsistent with step sign"):
        mr.arange(0, 5, -1)
    with pytest.raises(TypeError, match="finite"):
        mr.arange(float("inf"))


# -- .to(...) and friends -----------------------------------------------------------------------


def test_tensor_to_cpu_and_dtypes(torch):
    x = mr.randn(2, 3, requires_grad=True)
    assert x.to("cpu") is x and x.cpu() is x and x.to(device="cpu") is x
    assert x.to(torch.device("cpu")) is x and x.device == "cpu" and x.dim() == 2
    for spec in (np.float64, "float64", "double", torch.float64, np.dtype("f8")):
        assert x.to(spec).dtype == np.float64
    assert x.to("cpu", "float64").dtype == np.float64
    assert x.to("cpu", dtype=np.float64).dtype == np.float64
    assert x.to(mr.zeros(1, dtype="float64")).dtype == np.float64
    assert x.to("float") is x and x.float() is x
    y = x.double().to("float32")
    assert y.dtype == np.float32
    y.sum().backward()  # the casts are differentiable
    np.testing.assert_array_equal(x.grad, np.ones((2, 3), np.float32))
    assert x.to("long").dtype == np.int64 and not x.to("long").requires_grad
    np.testing.assert_array_equal(x.numpy(), x.data)
    assert x.tolist() == x.data.tolist()
    for device in ("cuda", "cuda:0", "mps", torch.device("meta")):
        with pytest.raises(ValueError, match="CPU only"):
            x.to(device)
    with pytest.raises(TypeError, match="not supported"):
        x.to(np.float16)
    with pytest.raises(TypeError, match="float16 is not supported"):
        x.to("cpu", "float16")
    with pytest.raises(TypeError, match="unknown dtype"):
        x.to("cpu", "float17")
    with pytest.raises(TypeError, match="unexpected keyword"):
        x.to(memory_format=None)


def test_module_to_cpu_and_dtypes():
    m = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm2d(2), nn.LayerNorm(2))
    assert m.to("cpu") is m
    assert m.to("cpu", "double") is m and m[0].weight.dtype == np.float64
    assert m[1].num_batches_tracked.dtype == np.int64  # integer buffers stay
    m.to(dtype="float")
    assert all(p.dtype == np.float32 for p in m.parameters())
    m.to(np.float64)
    assert m[2].weight.dtype == np.float64
    with pytest.raises(ValueError, match="CPU only"):
        m.to("cuda")
    with pytest.raises(TypeError, match="float32 or float64"):
        m.to("long")


def test_everything_is_exported():
    import minires.nn.functional as NF

    for name in (
        "dropout", "group_norm", "layer_norm", "mse_loss", "cross_entropy", "abs", "sqrt",
        "clamp", "min", "argmax", "argmin", "permute", "unsqueeze", "squeeze", "stack", "cat",
    ):  # fmt: skip
        assert getattr(F, name) is getattr(NF, name)
        assert name in F.__all__
    for name in ("zeros", "ones", "randn", "rand", "arange", "stack", "cat", "full"):
        assert callable(getattr(mr, name)) and name in mr.__all__
    for name in ("Dropout", "GroupNorm", "LayerNorm", "CrossEntropyLoss", "MSELoss"):
        assert issubclass(getattr(nn, name), nn.Module) and name in nn.__all__


@pytest.mark.filterwarnings("ignore:Mean of empty slice")  # rows of length 0: NaN statistics
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("rows", [(0, 5), (3, 0), (1, 1), (7, 13), (64, 300)])
def test_row_norm_jit_matches_reference_for_any_thread_count(dtype, rows):
    numba = pytest.importorskip("numba", reason="numba not installed: jit kernel not tested")
    from minires.kernels import jit, reference

    assert jit.implemented_here("row_norm_forward") and jit.implemented_here("row_norm_backward")
    rng = np.random.default_rng(0)
    x = (rng.standard_normal(rows) * 5 + 3).astype(dtype)
    g = rng.standard_normal(rows).astype(dtype)
    if x.size > 2:
        x[0, 0], x[-1, :] = np.nan, 1.0  # NaN spreads over its row; a constant row is fine
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-12)
    with np.errstate(all="ignore"):
        ref = reference.row_norm_forward(x, 1e-5)
        ref_gx = reference.row_norm_backward(g, ref[0], ref[2])
        runs = []
        for threads in (1, 2):
            prev = numba.get_num_threads()
            numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
            try:
                out = jit.row_norm_forward(x, 1e-5)
                runs.append((*out, jit.row_norm_backward(g, out[0], out[2])))
            finally:
                numba.set_num_threads(prev)
    for ours, theirs in zip(runs[0], (*ref, ref_gx)):
        assert ours.dtype == dtype
        np.testing.assert_allclose(ours, theirs, **tol)  # NaN where the reference has NaN
    for a, b in zip(*runs):
        np.testing.assert_array_equal(a, b)  # bit-identical for 1 and 2 threads
    # eps = 0 on a constant row: NaN like the reference and torch, not a ZeroDivisionError
    c = np.ones((2, 3), dtype)
    with np.errstate(all="ignore"):
        assert np.isnan(jit.row_norm_forward(c, 0.0)[0]).all()
        assert np.isnan(reference.row_norm_forward(c, 0.0)[0]).all()


# -- fuzz: torch's names against torch itself, bad arguments included -------------------------


@st.composite
def method_call(draw):
    """A shape (empty dimensions and 0-d included), an op and arguments that may be out of
    range, duplicated or inconsistent."""
    shape = tuple(draw(st.lists(st.integers(0, 3), min_size=0, max_size=4)))
    nd = len(shape)
    anydim = st.integers(-nd - 2, nd + 1)
    op = draw(
        st.sampled_from(
            ["sum", "mean", "amax", "amin", "argmax", "argmin", "permute", "unsqueeze",
             "squeeze", "flatten", "view", "clamp", "stack", "cat"]
        )
    )  # fmt: skip
    if op in ("sum", "mean", "amax", "amin"):
        dim = draw(st.one_of(anydim, st.lists(anydim, min_size=1, max_size=3).map(tuple)))
        args = dict(dim=dim, keepdim=draw(st.booleans()))
    elif op in ("argmax", "argmin"):
        args = dict(dim=draw(st.one_of(st.none(), anydim)), keepdim=draw(st.booleans()))
    elif op == "permute":
        args = dict(dims=tuple(draw(st.lists(anydim, min_size=nd, max_size=nd))))
        if draw(st.booleans()):
            args = dict(dims=tuple(draw(st.permutations(range(nd)))))
    elif op in ("unsqueeze", "squeeze", "stack", "cat"):
        args = dict(dim=draw(anydim))
    elif op == "flatten":
        args = dict(start=draw(anydim), end=draw(anydim))
    elif op == "view":
        args = dict(shape=tuple(draw(st.lists(st.integers(-1, 4), min_size=0, max_size=3))))
    else:
        bound = st.one_of(st.none(), st.floats(-1.5, 1.5))
        args = dict(min=draw(bound), max=draw(bound))
    return shape, op, args


def _call(lib, x, y, op, args):
    """Run one call on minires (lib=None) or torch, by the same names."""
    if op in ("amax", "amin"):
        name = op if lib is not None else op[1:]  # minires' max/min are torch's amax/amin
        return getattr(x, name)(dim=args["dim"], keepdim=args["keepdim"])
    if op in ("sum", "mean", "argmax", "argmin"):
        return getattr(x, op)(dim=args["dim"], keepdim=args["keepdim"])
    if op == "permute":
        return x.permute(*args["dims"])
    if op in ("unsqueeze", "squeeze"):
        return getattr(x, op)(args["dim"])
    if op == "flatten":
        return x.flatten(args["start"], args["end"])
    if op == "view":
        return x.view(*args["shape"])
    if op == "clamp":
        return x.clamp(args["min"], args["max"])
    cat = (mr if lib is None else lib).cat if op == "cat" else (mr if lib is None else lib).stack
    return cat([x, y], dim=args["dim"])


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # mean of an empty tensor is NaN
@given(case=method_call(), special=st.sampled_from([None, np.nan, np.inf, -np.inf]))
def test_fuzz_torch_names_match_torch_or_refuse_clearly(torch, case, special):
    shape, op, args = case
    if args.get("dims") == () or args.get("shape") == ():
        return  # x.permute() / x.view() of a 0-d tensor: torch wants an argument, we don't
    if op == "cat" and shape == (0,):
        return  # torch's legacy rule skips 1-D empty tensors in cat, whatever the dim
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal(shape), rng.standard_normal(shape)
    if special is not None and a.size:
        a.flat[rng.integers(a.size)] = special  # NaN/inf propagate as in torch
    try:
        expected = _call(torch, torch.tensor(a), torch.tensor(b), op, args)
    except (IndexError, RuntimeError, ValueError, TypeError):
        expected = None
    if expected is None:  # torch refuses: so must minires, with a ValueError/TypeError
        with pytest.raises((ValueError, TypeError)):
            _call(None, mr.tensor(a), mr.tensor(b), op, args)
        return
    x = t64(a, grad=op not in ("argmax", "argmin"))
    ours = _call(None, x, mr.tensor(b), op, args)
    assert ours.shape == tuple(expected.shape), (op, args)
    np.testing.assert_allclose(ours.data, expected.numpy(), rtol=1e-12, atol=1e-12)
    if x.requires_grad:  # and the gradient, NaN/inf included
        xt = torch.tensor(a, requires_grad=True)
        out_t = _call(torch, xt, torch.tensor(b), op, args)
        g = rng.standard_normal(ours.shape)
        ours.backward(g)
        out_t.backward(torch.tensor(g))
        np.testing.assert_allclose(x.grad, xt.grad.numpy(), rtol=1e-12, atol=1e-12)


@st.composite
def norm_or_loss_call(draw):
    """Norms, losses and dropout-in-eval with odd arguments and NaN/inf among the values."""
    op = draw(st.sampled_from(["layer_norm", "group_norm", "mse_loss", "cross_entropy"]))
    if op == "cross_entropy":
        shape = (draw(st.integers(0, 3)), draw(st.integers(1, 4)))
        target = tuple(draw(st.lists(st.integers(-1, 4), min_size=shape[0], max_size=shape[0])))
        args = dict(
            target=target,
            reduction=draw(st.sampled_from(["mean", "sum", "none"])),
            label_smoothing=draw(st.sampled_from([0.0, 0.3, 1.0, 1.5])),
        )
    else:
        shape = tuple(draw(st.lists(st.integers(1, 3), min_size=1, max_size=4)))
        nd = len(shape)
        if op == "layer_norm":
            k = draw(st.integers(1, nd + 1))
            norm = tuple(draw(st.lists(st.integers(1, 3), min_size=k, max_size=k)))
            if draw(st.booleans()):
                norm = shape[nd - min(k, nd) :]  # usually a valid suffix
            args = dict(norm=norm, affine=draw(st.booleans()))
        elif op == "group_norm":
            args = dict(groups=draw(st.integers(0, 4)), affine=draw(st.booleans()))
        else:
            args = dict(reduction=draw(st.sampled_from(["mean", "sum", "none", "avg"])))
    special = draw(st.sampled_from([None, np.nan, np.inf, -np.inf]))
    return shape, op, args, special


def _norm_or_loss(lib, x, y, op, args):
    """The same call on minires (lib=None) or torch (lib=torch)."""
    f = F if lib is None else lib.nn.functional
    if op == "layer_norm":
        n = args["norm"]
        wb = (y.reshape(n) * 0 + 1.5, y.reshape(n) * 0 - 0.5) if args["affine"] else ()
        return f.layer_norm(x, n, *wb)
    if op == "group_norm":
        c = x.shape[1] if x.ndim > 1 else 1
        wb = (y.sum() * 0 + np.linspace(0.5, 1.5, c),) if args["affine"] else ()
        return f.group_norm(x, args["groups"], *wb)
    if op == "mse_loss":
        return f.mse_loss(x, y, reduction=args["reduction"])
    target = np.array(args["target"], dtype=np.int64)
    target = mr.tensor(target) if lib is None else lib.tensor(target)
    return f.cross_entropy(
        x, target, reduction=args["reduction"], label_smoothing=args["label_smoothing"]
    )


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@given(case=norm_or_loss_call(), seed=st.integers(0, 99))
def test_fuzz_norms_and_losses_match_torch_or_refuse_clearly(torch, case, seed):
    shape, op, args, special = case
    rng = np.random.default_rng(seed)
    a, b = rng.standard_normal(shape), rng.standard_normal(shape)
    if special is not None and a.size:
        a.flat[rng.integers(a.size)] = special  # NaN/inf propagate as in torch
    if op == "group_norm" and len(shape) > 1 and args["groups"] > 0:
        # torch refuses N * C / G * prod(spatial) == 1 with its batch-norm check; we don't
        assume(shape[0] * shape[1] // args["groups"] * int(np.prod(shape[2:])) > 1)
    xt, yt = torch.tensor(a, requires_grad=True), torch.tensor(b)
    try:
        expected = _norm_or_loss(torch, xt, yt, op, args)
    except (IndexError, RuntimeError, ValueError, TypeError, ZeroDivisionError):  # groups=0
        expected = None
    x = t64(a)
    if expected is None:
        with pytest.raises((ValueError, TypeError)):
            _norm_or_loss(None, x, mr.tensor(b), op, args)
        return
    ours = _norm_or_loss(None, x, mr.tensor(b), op, args)
    assert ours.shape == tuple(expected.shape)
    np.testing.assert_allclose(ours.data, expected.detach().numpy(), rtol=1e-10, atol=1e-10)
    g = rng.standard_normal(ours.shape)
    ours.backward(g)
    expected.backward(torch.tensor(g))
    np.testing.assert_allclose(x.grad, xt.grad.numpy(), rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_pow_gradients_at_edge_values_like_torch(dtype, torch):
    """a ** b and both gradients on every pair of 0, -0, +-1, +-2, +-0.5, 3, +-inf, NaN:
    the same values and the same NaN / inf as PyTorch (d/da is 0 where b == 0, d/db is 0
    where a == 0 and b >= 0, NaN for a negative base)."""
    vals = [0.0, -0.0, 1.0, -1.0, 2.0, -2.0, 0.5, -0.5, 3.0, -np.inf, np.inf, np.nan]
    a, b = (v.ravel().astype(dtype) for v in np.meshgrid(vals, vals))
    x, y = mr.tensor(a, requires_grad=True), mr.tensor(b, requires_grad=True)
    out = x**y
    out.sum().backward()
    tx, ty = torch.tensor(a, requires_grad=True), torch.tensor(b, requires_grad=True)
    tout = tx**ty
    tout.sum().backward()
    for got, want in ((out.data, tout.detach()), (x.grad, tx.grad), (y.grad, ty.grad)):
        np.testing.assert_allclose(got, want.numpy(), rtol=1e-6, atol=0, equal_nan=True)


def test_tensor_from_array_objects_keeps_their_dtype(torch):
    """A torch tensor (or any object with __array__) is an array with a dtype of its own,
    not Python data: float64 stays float64, int64 stays int64 (bfloat16 widens to float32);
    dtype= takes torch's names and dtype objects as the factories do."""
    assert mr.tensor(torch.ones(2, dtype=torch.float64)).dtype == np.float64
    assert mr.tensor(torch.tensor([1, 2])).dtype == np.int64
    assert mr.tensor(torch.ones(2, dtype=torch.bfloat16)).dtype == np.float32
    assert mr.Tensor(torch.ones(3, dtype=torch.float64)).dtype == np.float64
    assert mr.tensor([1, 2], dtype="float").dtype == mr.zeros(2, dtype="float").dtype == np.float32
    assert mr.tensor([1, 2], dtype=torch.float64).dtype == np.float64
    assert mr.tensor([1.0], dtype=">f8").dtype == np.dtype("<f8")  # native byte order
    assert mr.tensor([1.5, 2.5]).dtype == np.float32  # Python data: float32


@pytest.mark.parametrize("dtype", [np.complex64, object, "U5", "M8[s]", np.float16])
def test_astype_refuses_what_tensors_cannot_hold(dtype):
    t = mr.tensor([1.5, 2.5])
    with pytest.raises(TypeError, match="not supported"):
        t.astype(dtype)
    assert t.astype(">i4").dtype == np.dtype("int32")  # made native, like mr.tensor


def test_truth_iteration_and_comparisons_like_torch(torch):
    for data in ([0.0], 0.0, [2.0], [[-1.0]]):
        assert bool(mr.tensor(data)) == bool(torch.tensor(data))
    for shape in ((2, 2), (0,)):
        with pytest.raises((RuntimeError, ValueError), match="ambiguous"):
            bool(mr.zeros(*shape))
    with pytest.raises(TypeError, match="0-d"):
        iter(mr.tensor(1.0))
    with pytest.raises(TypeError, match="0-d"):
        len(mr.tensor(1.0))
    rows = list(mr.tensor(np.arange(6.0).reshape(3, 2), requires_grad=True))
    assert [r.shape for r in rows] == [(2,)] * 3 and rows[1].requires_grad
    a, b = np.array([1.0, 2.0, 3.0]), np.array([1.0, 5.0, 0.0])
    ta, tb = torch.tensor(a), torch.tensor(b)
    x, y = mr.tensor(a), mr.tensor(b)
    for op in ("__eq__", "__ne__", "__lt__", "__le__", "__gt__", "__ge__"):
        got, want = getattr(x, op)(y), getattr(ta, op)(tb)
        assert got.dtype == np.bool_ and not got.requires_grad
        np.testing.assert_array_equal(got.data, want.numpy())
        np.testing.assert_array_equal(getattr(x, op)(2.0).data, getattr(ta, op)(2.0).numpy())
    assert float((x == y).float().mean().item()) == pytest.approx(1 / 3)  # an accuracy
    assert len({x: 1, y: 2}) == 2  # tensors still hash by identity
    with pytest.raises(ValueError, match=r"\(3,\) and \(2,\)"):
        x == mr.tensor([1.0, 2.0])  # noqa: B015


def test_type_promotion_across_categories_like_torch(torch):
    """Integers meeting floats take the float's dtype (a Python float: float32), integers
    with Python integers stay integers, true division and float functions of integers give
    float32; float32 @ float64 is refused as in PyTorch."""
    i, f, d = np.array([1, 2, 3]), np.array([1.0, 2.0, 4.0], np.float32), np.array([1.0, 2.0, 4.0])
    mi, mf, md = mr.tensor(i), mr.tensor(f), mr.tensor(d)
    ti, tf, td = torch.tensor(i), torch.tensor(f), torch.tensor(d)
    cases = [
        (mf + mi, tf + ti), (mi + 1.5, ti + 1.5), (mi * mf, ti * tf), (mi + 1, ti + 1),
        (md + mi, td + ti), (mf + md, tf + td), (mi.sqrt(), ti.sqrt()), (mi.exp(), ti.exp()),
        (mi / 2, ti / 2), (mi**2, ti**2), (1.5 * mi, 1.5 * ti), (mi / mi, ti / ti),
        (2 / mi, 2 / ti), (3 * mi, 3 * ti), (mf / 2, tf / 2), (mf + mi.sum(), tf + ti.sum()),
    ]  # fmt: skip
    for got, want in cases:
        assert str(got.dtype) == str(want.dtype).removeprefix("torch.")
        np.testing.assert_allclose(got.data, want.numpy(), rtol=1e-6)
    x = mr.tensor(f, requires_grad=True)
    (x * mi).sum().backward()  # the integer operand carries no gradient, x gets one
    np.testing.assert_array_equal(x.grad, i.astype(np.float32))
    with pytest.raises(TypeError, match="same dtype"):
        mr.tensor(f.reshape(1, 3)) @ mr.tensor(d.reshape(3, 1))
