"""PyTorch's arguments that a fuzz audit found missing, checked against torch itself:

- ``F.log_softmax`` / ``F.softmax``: ``dim=`` beside ``axis=``;
- ``F.cross_entropy`` / ``nn.CrossEntropyLoss``: ``weight``, ``ignore_index``, K-dimensional
  input (N, C, d1, ...) and class-probability targets, with ``label_smoothing``;
- ``F.max_pool2d`` / ``F.avg_pool2d`` and their modules: ``ceil_mode``, ``dilation`` (max),
  ``count_include_pad`` and ``divisor_override`` (avg), unbatched input and empty batches;
- ``F.conv2d`` / ``nn.Conv2d``: ``padding="same"`` / ``"valid"``, unbatched input and empty
  batches.

Forward values and every input gradient are compared with torch in float64 over
hypothesis-generated small shapes; each new differentiable path also passes a float64
`mr.gradcheck`; bad arguments raise the exception type torch's rule implies, naming the
argument.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from torch_oracle import grads_match, t64

import minires as mr
import minires.functional as F
from minires import nn

torch = pytest.importorskip("torch", reason="PyTorch not installed: torch-oracle tests skipped")
TF = torch.nn.functional
# torch warns that an even kernel with padding="same" pads a copy of the input (minires
# does the same, silently)
pytestmark = pytest.mark.filterwarnings("ignore:Using padding='same':UserWarning")

FEW = settings(max_examples=40)  # keeps the file well under a minute on two shared cores
RTOL = ATOL = 1e-10


def compare(mr_fn, torch_fn, arrays, rtol=RTOL, atol=ATOL):
    """`grads_match` with this file's tolerances."""
    return grads_match(mr_fn, torch_fn, arrays, rtol, atol)


def distinct(shape, rng):
    """Values in (-2, 2) without ties (max pooling picks one winner, as torch)."""
    n = int(np.prod(shape))
    return ((rng.permutation(n) + 0.25) / max(n, 1) * 4 - 2).reshape(shape)


# -- log_softmax / softmax: dim --------------------------------------------------------------


@FEW
@given(
    shape=st.lists(st.integers(1, 4), min_size=1, max_size=3).map(tuple),
    data=st.data(),
    name=st.sampled_from(["log_softmax", "softmax"]),
)
def test_softmax_dim_matches_torch(shape, data, name):
    dim = data.draw(st.integers(-len(shape), len(shape) - 1), label="dim")
    x = np.random.default_rng(0).standard_normal(shape)
    ours, theirs = getattr(F, name), getattr(TF, name)
    compare(lambda t: ours(t, dim=dim), lambda t: theirs(t, dim=dim), [x])
    # axis= and both spellings naming the same axis (negative or not) give the same
    alias = dim % len(shape)
    np.testing.assert_array_equal(ours(t64(x), axis=dim).data, ours(t64(x), dim=dim).data)
    np.testing.assert_array_equal(
        ours(t64(x), dim=dim, axis=alias).data, ours(t64(x), dim=dim).data
    )


def test_softmax_dim_gradcheck():
    x = t64(np.random.default_rng(2).standard_normal((3, 4, 2)))
    assert mr.gradcheck(lambda t: F.log_softmax(t, dim=1), [x])
    assert mr.gradcheck(lambda t: F.softmax(t, dim=0), [x])


def test_softmax_dim_default_is_the_last_axis():
    x = np.random.default_rng(3).standard_normal((2, 3, 4))
    np.testing.assert_allclose(F.softmax(t64(x)).data, TF.softmax(torch.tensor(x), -1).numpy())


@pytest.mark.parametrize("fn", [F.log_softmax, F.softmax])
def test_softmax_dim_errors(fn):
    x = mr.randn(2, 3)
    with pytest.raises(TypeError, match=r"dim=0 and axis=1.*dim or axis"):
        fn(x, dim=0, axis=1)
    with pytest.raises(TypeError, match=r"dim=-1 and axis=0"):  # an explicit -1 counts too
        fn(x, dim=-1, axis=0)
    with pytest.raises(TypeError, match="dim must be an int"):
        fn(x, dim=1.5)
    with pytest.raises(ValueError, match="axis 2 is out of range"):
        fn(x, axis=2)
    with pytest.raises(ValueError, match="dim -3 is out of range"):
        fn(x, -3)


# -- cross_entropy: weight, ignore_index, K-dimensional, probabilities ---------------------------


@st.composite
def ce_case(draw):
    n, c = draw(st.integers(1, 3)), draw(st.integers(1, 4))
    extra = tuple(draw(st.lists(st.integers(1, 3), max_size=2)))
    return dict(
        shape=(n, c, *extra),
        reduction=draw(st.sampled_from(["mean", "sum", "none"])),
        smoothing=draw(st.sampled_from([0.0, 0.3])),
        weighted=draw(st.booleans()),
        seed=draw(st.integers(0, 2**16)),
    )


def _ce_kwargs(case, rng, c):
    w = rng.uniform(0.2, 2.0, c) if case["weighted"] else None
    ours = {"weight": w} if w is not None else {}
    theirs = {"weight": torch.tensor(w)} if w is not None else {}
    common = dict(reduction=case["reduction"], label_smoothing=case["smoothing"])
    return ours, {**common, **theirs}


@FEW
@given(case=ce_case(), ignore=st.sampled_from([None, -100, 0, 2]))
def test_cross_entropy_class_indices_match_torch(case, ignore):
    rng = np.random.default_rng(case["seed"])
    shape, c = case["shape"], case["shape"][1]
    target = rng.integers(0, c, (shape[0], *shape[2:]))
    ours, theirs = _ce_kwargs(case, rng, c)
    if ignore is not None:
        target[rng.random(target.shape) < 0.4] = ignore
        ours["ignore_index"] = theirs["ignore_index"] = ignore
    assume(case["reduction"] != "mean" or (target != theirs.get("ignore_index", -100)).any())
    reduction, smoothing = case["reduction"], case["smoothing"]
    compare(
        lambda x: F.cross_entropy(x, target, reduction, smoothing, **ours),
        lambda x: TF.cross_entropy(x, torch.tensor(target), **theirs),
        [rng.standard_normal(shape) * 2],
    )


@FEW
@given(case=ce_case())
def test_cross_entropy_probabilities_match_torch(case):
    rng = np.random.default_rng(case["seed"])
    shape = case["shape"]
    probs = rng.dirichlet(np.ones(shape[1]), (shape[0], *shape[2:]))  # (N, d.., C)
    target = np.moveaxis(probs, -1, 1)
    ours, theirs = _ce_kwargs(case, rng, shape[1])
    reduction, smoothing = case["reduction"], case["smoothing"]
    compare(  # the target is differentiable too, as in torch
        lambda x, t: F.cross_entropy(x, t, reduction, smoothing, **ours),
        lambda x, t: TF.cross_entropy(x, t, **theirs),
        [rng.standard_normal(shape) * 2, target],
    )


def test_cross_entropy_all_ignored_is_nan_for_the_mean_with_zero_gradient():
    x = np.random.default_rng(4).standard_normal((3, 4))
    target = np.full(3, -100)
    for kwargs in ({}, {"label_smoothing": 0.2}, {"weight": np.arange(1.0, 5.0)}):
        tkw = {k: torch.tensor(v) if isinstance(v, np.ndarray) else v for k, v in kwargs.items()}
        compare(
            lambda t, kw=kwargs: F.cross_entropy(t, target, **kw),
            lambda t, kw=tkw: TF.cross_entropy(t, torch.tensor(target), **kw),
            [x],
        )
        out = F.cross_entropy(t64(x), target, **kwargs)
        assert np.isnan(out.item())
        summed = F.cross_entropy(t64(x), target, "sum", **kwargs)
        assert summed.item() == 0.0


def test_cross_entropy_an_ignored_row_of_nan_logits_leaves_the_loss_finite():
    x = np.random.default_rng(5).standard_normal((3, 4))
    x[1] = np.nan
    target = np.array([0, -100, 3])
    loss = F.cross_entropy(t64(x), target, label_smoothing=0.1)
    assert np.isfinite(loss.item())
    # the other rows' gradients are finite; the NaN row's is NaN (log_softmax's backward
    # of a zero gradient at NaN log-probabilities), exactly as torch
    compare(
        lambda t: F.cross_entropy(t, target, label_smoothing=0.1),
        lambda t: TF.cross_entropy(t, torch.tensor(target), label_smoothing=0.1),
        [x],
    )


def test_cross_entropy_gradchecks():
    rng = np.random.default_rng(6)
    x = t64(rng.standard_normal((2, 3, 2, 2)))
    target = rng.integers(0, 3, (2, 2, 2))
    target[0, 1, 0] = 1  # ignored below, with the class weights
    w = np.array([0.5, 2.0, 1.5])
    for reduction in ("mean", "none"):
        assert mr.gradcheck(
            lambda t, r=reduction: F.cross_entropy(t, target, r, 0.2, weight=w, ignore_index=1),
            [x],
        )
    probs = t64(rng.dirichlet(np.ones(3), (2, 2, 2)).transpose(0, 3, 1, 2))
    assert mr.gradcheck(lambda a, b: F.cross_entropy(a, b, "mean", 0.1, weight=w), [x, probs])


def test_cross_entropy_float32_keeps_its_dtype():
    x = mr.tensor(np.random.default_rng(7).standard_normal((2, 3, 4)).astype(np.float32))
    x.requires_grad = True
    loss = F.cross_entropy(x, np.array([[0, 1, 2, -100], [2, 2, 1, 0]]), weight=np.ones(3))
    loss.backward()
    assert loss.dtype == np.float32 and x.grad.dtype == np.float32
    probs = mr.tensor(np.full((2, 3, 4), 1 / 3, np.float32))
    assert F.cross_entropy(x, probs, "none").dtype == np.float32


def test_cross_entropy_errors_name_the_argument():
    x = mr.randn(2, 3)
    with pytest.raises(TypeError, match="ignore_index must be an int"):
        F.cross_entropy(x, np.array([0, 1]), ignore_index=1.5)
    with pytest.raises(TypeError, match="ignore_index must be an int"):
        F.cross_entropy(x, np.array([0, 1]), ignore_index=True)
    with pytest.raises(ValueError, match=r"target values must be in \[0, 3\).*ignore_index"):
        F.cross_entropy(x, np.array([0, -1]))  # only -100 is skipped by default
    with pytest.raises(ValueError, match=r"target values must be in \[0, 3\)"):
        F.cross_entropy(x, np.array([-100, 3]))
    with pytest.raises(ValueError, match=r"weight must have one entry per class, shape \(3,\)"):
        F.cross_entropy(x, np.array([0, 1]), weight=np.ones(4))
    with pytest.raises(TypeError, match="weight"):  # torch's 3rd positional is weight
        F.cross_entropy(x, np.array([0, 1]), mr.ones(3))
    with pytest.raises(TypeError, match="same dtype"):
        F.cross_entropy(x, np.array([0, 1]), weight=mr.ones(3, dtype="float64"))
    with pytest.raises(TypeError, match="class probabilities and must be float"):
        F.cross_entropy(x, np.zeros((2, 3), np.int64))
    with pytest.raises(TypeError, match="same dtype"):
        F.cross_entropy(x, mr.ones(2, 3, dtype="float64"))
    with pytest.raises(ValueError, match=r"target shape \(2, 2\).*expected \(2, 4\)"):
        F.cross_entropy(mr.randn(2, 3, 4), np.zeros((2, 2), np.int64))
    with pytest.raises(TypeError, match="ignore_index"):
        nn.CrossEntropyLoss(ignore_index="x")
    with pytest.raises(TypeError, match="weight"):
        nn.CrossEntropyLoss(weight=np.ones((3, 1)))


def test_cross_entropy_module_matches_torch_and_keeps_weight_as_a_buffer():
    rng = np.random.default_rng(8)
    x = rng.standard_normal((4, 3, 2))
    target = np.array([[0, 2], [1, -1], [2, 2], [-1, 0]])
    w = np.array([1.0, 0.5, 3.0])
    ours = nn.CrossEntropyLoss("sum", 0.1, weight=w, ignore_index=-1).double()
    theirs = torch.nn.CrossEntropyLoss(
        weight=torch.tensor(w), ignore_index=-1, reduction="sum", label_smoothing=0.1
    )
    compare(lambda t: ours(t, target), lambda t: theirs(t, torch.tensor(target)), [x])
    assert list(ours.state_dict()) == ["weight"] == list(theirs.state_dict())
    assert ours.weight.dtype == np.float64
    assert "ignore_index=-1" in repr(ours)
    assert list(nn.CrossEntropyLoss().state_dict()) == []


# -- pools: ceil_mode, dilation, count_include_pad, divisor_override, unbatched, empty batch ----


def _every_window_sees_input(size, k, s, p, d, out):
    """torch reads outside the plane for a dilated window with no input pixel: avoid it."""
    return all(any(0 <= o * s - p + i * d < size for i in range(k)) for o in range(out))


@st.composite
def pool_case(draw, kind):
    n = draw(st.sampled_from([0, 1, 2, None]))  # None: unbatched (C, H, W)
    c, h, w = draw(st.integers(1, 2)), draw(st.integers(1, 7)), draw(st.integers(1, 7))
    k = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    s = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    d = (draw(st.integers(1, 2)), draw(st.integers(1, 2))) if kind == "max" else (1, 1)
    half = [(d[a] * (k[a] - 1) + 1) // 2 for a in (0, 1)]
    p = (draw(st.integers(0, half[0])), draw(st.integers(0, half[1])))
    ceil_mode = draw(st.booleans())
    tx = torch.empty((1, 1, h, w))
    try:  # torch decides which geometries are valid
        out = TF.max_pool2d(tx, k, s, p, d, ceil_mode).shape[2:]
    except RuntimeError:
        assume(False)
    assume(all(_every_window_sees_input(*a) for a in zip((h, w), k, s, p, d, out)))
    shape = (c, h, w) if n is None else (n, c, h, w)
    args = dict(kernel_size=k, stride=s, padding=p, ceil_mode=ceil_mode)
    if kind == "max":
        args["dilation"] = d
    else:
        args["count_include_pad"] = draw(st.booleans())
        args["divisor_override"] = draw(st.sampled_from([None, 1, 3]))
    return shape, args


@FEW
@given(case=pool_case("max"), seed=st.integers(0, 999))
def test_max_pool2d_args_match_torch(backend, case, seed):
    shape, args = case
    x = distinct(shape, np.random.default_rng(seed))
    compare(lambda t: F.max_pool2d(t, **args), lambda t: TF.max_pool2d(t, **args), [x])
    layer = nn.MaxPool2d(**args)
    compare(layer, torch.nn.MaxPool2d(**args), [x])


@FEW
@given(case=pool_case("avg"), seed=st.integers(0, 999))
def test_avg_pool2d_args_match_torch(backend, case, seed):
    shape, args = case
    x = np.random.default_rng(seed).standard_normal(shape)
    compare(lambda t: F.avg_pool2d(t, **args), lambda t: TF.avg_pool2d(t, **args), [x])
    compare(nn.AvgPool2d(**args), torch.nn.AvgPool2d(**args), [x])


def test_pool_gradchecks():
    rng = np.random.default_rng(9)
    x = t64(distinct((2, 2, 5, 6), rng))
    unbatched = t64(distinct((2, 5, 6), rng))
    for t in (x, unbatched):
        assert mr.gradcheck(lambda a: F.max_pool2d(a, 2, 2, 1, ceil_mode=True), [t])
        assert mr.gradcheck(lambda a: F.max_pool2d(a, (2, 3), 2, 1, dilation=(2, 1)), [t])
        assert mr.gradcheck(
            lambda a: F.avg_pool2d(a, 3, 2, 1, ceil_mode=True, count_include_pad=False), [t]
        )
        assert mr.gradcheck(lambda a: F.avg_pool2d(a, 2, 2, 1, ceil_mode=True), [t])
        assert mr.gradcheck(lambda a: F.avg_pool2d(a, 3, 1, 1, divisor_override=4), [t])


def test_ceil_mode_drops_a_window_that_would_start_in_the_right_padding():
    # H = 5, k = 2, s = 2, p = 1: ceil((5 + 2 - 2) / 2) + 1 = 4 windows, but the 4th would
    # start at 3*2 - 1 = 5, in the right padding: torch keeps 3.
    x = mr.randn(1, 1, 5, 5, dtype="float64")
    assert F.max_pool2d(x, 2, 2, 1, ceil_mode=True).shape == (1, 1, 3, 3)
    assert F.avg_pool2d(x, 2, 2, 1, ceil_mode=True).shape == (1, 1, 3, 3)
    assert F.max_pool2d(x, 2, 2, 0, ceil_mode=True).shape == (1, 1, 3, 3)  # not 2
    ones = F.avg_pool2d(mr.ones(1, 1, 5, 5, dtype="float64"), 2, 2, 1, ceil_mode=True)
    np.testing.assert_allclose(ones.data[0, 0], [[0.25, 0.5, 0.5], [0.5, 1, 1], [0.5, 1, 1]])


def test_ceil_mode_windows_past_the_padded_input_are_divided_by_their_clipped_size():
    # H = W = 6, k = 3, s = 2: the ceil window at 4 covers 4..6, one cell past the input;
    # torch's divisor counts the window clipped to the padded input (2 cells, not 3)
    x = np.random.default_rng(14).standard_normal((1, 2, 6, 6))
    for include in (True, False):
        args = dict(kernel_size=3, stride=2, ceil_mode=True, count_include_pad=include)
        compare(
            lambda t, a=args: F.avg_pool2d(t, **a), lambda t, a=args: TF.avg_pool2d(t, **a), [x]
        )
    ones = F.avg_pool2d(mr.ones(1, 1, 6, 6, dtype="float64"), 3, 2, ceil_mode=True)
    np.testing.assert_array_equal(ones.data, 1.0)


def test_max_pool_of_minus_inf_picks_the_first_input_pixel_not_the_padding():
    x = np.full((1, 1, 4, 5), -np.inf)
    x[0, 0, 3, 4] = 1.0
    for args in (dict(padding=1, ceil_mode=True), dict(padding=1, dilation=(1, 2))):
        compare(
            lambda t, a=args: F.max_pool2d(t, 3, 2, **a),
            lambda t, a=args: TF.max_pool2d(t, 3, 2, **a),
            [x],
        )


def test_max_pool_window_without_input_pixels_is_minus_inf_with_no_gradient():
    x = t64([[[[3.0]]]])  # a dilated 2x2 window at padding 1 reads rows/cols -1 and 1
    out = F.max_pool2d(x, 2, padding=1, dilation=2)
    expected = TF.max_pool2d(torch.tensor(x.data), 2, padding=1, dilation=2)
    np.testing.assert_array_equal(out.data, expected.numpy())  # -inf, as torch
    out.backward(np.ones(out.shape))
    np.testing.assert_array_equal(x.grad, 0.0)


@pytest.mark.parametrize("fn", [F.max_pool2d, F.avg_pool2d])
def test_pools_of_an_empty_batch(backend, fn):
    x = t64(np.empty((0, 3, 5, 5)))
    out = fn(x, 2)
    assert out.shape == (0, 3, 2, 2)
    out.sum().backward()
    assert x.grad.shape == (0, 3, 5, 5)


def test_pools_keep_float32():
    x = mr.tensor(distinct((2, 5, 5), np.random.default_rng(10)).astype(np.float32))
    x.requires_grad = True
    for out in (
        F.max_pool2d(x, 2, ceil_mode=True, dilation=(1, 2)),
        F.avg_pool2d(x, 3, 2, 1, ceil_mode=True, count_include_pad=False, divisor_override=2),
    ):
        out.sum().backward()
        assert out.dtype == np.float32 and x.grad.dtype == np.float32


def test_pool_errors_name_the_argument():
    x = mr.randn(1, 1, 5, 5)
    with pytest.raises(ValueError, match=r"padding \(2, 2\) must be at most half"):
        F.max_pool2d(x, 3, padding=2)
    with pytest.raises(ValueError, match=r"padding \(2, 2\) must be at most half"):
        F.avg_pool2d(x, 3, padding=2)
    with pytest.raises(ValueError, match=r"padding \(2, 2\) must be at most half the kernel"):
        F.max_pool2d(x, 3, padding=2, dilation=2)  # torch: k // 2, dilated or not
    assert F.max_pool2d(mr.randn(1, 1, 7, 7), 3, padding=1, dilation=2).shape == (1, 1, 2, 2)
    with pytest.raises(TypeError, match="ceil_mode must be True or False"):
        F.max_pool2d(x, 2, ceil_mode="yes")
    with pytest.raises(TypeError, match="count_include_pad must be True or False"):
        F.avg_pool2d(x, 2, count_include_pad=1)
    with pytest.raises(ValueError, match="divisor_override must not be zero"):
        F.avg_pool2d(x, 2, divisor_override=0)
    with pytest.raises(TypeError, match="divisor_override must be an int"):
        F.avg_pool2d(x, 2, divisor_override=1.5)
    with pytest.raises(TypeError, match="dilation must be an int or a pair"):
        F.max_pool2d(x, 2, dilation=1.5)
    with pytest.raises(TypeError, match="return_indices must be True or False"):
        F.max_pool2d(x, 2, return_indices=1)
    with pytest.raises(ValueError, match=r"input \(2, 0, 5, 5\) is empty"):
        F.max_pool2d(mr.randn(2, 0, 5, 5), 2)
    with pytest.raises(ValueError, match="3 or 4 dimensions"):
        F.avg_pool2d(mr.randn(5, 5), 2)
    with pytest.raises(ValueError, match=r"kernel \(3, 3\) is larger than the padded input"):
        nn.MaxPool2d(3)(mr.randn(1, 1, 2, 2))  # (with ceil_mode torch gives 1x1)
    with pytest.raises(ValueError, match="at most half the kernel"):
        nn.MaxPool2d(3, padding=2, dilation=2)
    with pytest.raises(TypeError, match="ceil_mode"):
        nn.AvgPool2d(2, ceil_mode=None)
    with pytest.raises(ValueError, match="divisor_override"):
        nn.AvgPool2d(2, divisor_override=0)
    with pytest.raises(TypeError, match="return_indices"):
        nn.MaxPool2d(2, 2, 0, 1, "yes")


@settings(max_examples=40, deadline=None)
@given(
    shape=st.sampled_from([(1, 1, 5, 5), (2, 3, 6, 7), (3, 4, 4), (1, 2, 9, 3)]),
    kernel=st.sampled_from([1, 2, 3, (2, 3)]),
    stride=st.sampled_from([None, 1, 2, (1, 2)]),
    padding=st.sampled_from([0, 1]),
    dilation=st.sampled_from([1, 2]),
    ceil_mode=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_max_pool_return_indices_match_torch(shape, kernel, stride, padding, dilation, ceil_mode,
                                             seed):  # fmt: skip
    x = distinct(shape, np.random.default_rng(seed))
    args = (kernel, stride, padding, dilation, ceil_mode)
    try:
        want, want_idx = torch.nn.functional.max_pool2d(torch.from_numpy(x), *args, True)
    except RuntimeError:
        return  # a geometry torch refuses (minires refuses it too: test_pool_errors)
    if want.numel() == 0:
        return
    out, idx = F.max_pool2d(mr.tensor(x, requires_grad=True), *args, return_indices=True)
    np.testing.assert_array_equal(out.data, want.numpy())
    assert idx.dtype == np.int64 and not idx.requires_grad
    np.testing.assert_array_equal(idx.data, want_idx.numpy())
    out2, idx2 = nn.MaxPool2d(*args[:4], True, ceil_mode)(mr.tensor(x))
    np.testing.assert_array_equal(idx2.data, idx.data)
    # the values stay differentiable (the gradient to each window's winner)
    xt = mr.tensor(x, requires_grad=True)
    values, _ = F.max_pool2d(xt, *args, return_indices=True)
    values.sum().backward()
    plain = mr.tensor(x, requires_grad=True)
    F.max_pool2d(plain, *args).sum().backward()
    np.testing.assert_array_equal(xt.grad, plain.grad)


def test_pool_modules_take_torchs_positional_order():
    x = distinct((1, 2, 7, 7), np.random.default_rng(11))
    compare(nn.MaxPool2d(3, 2, 1, 2, False, True), torch.nn.MaxPool2d(3, 2, 1, 2, False, True), [x])
    compare(nn.AvgPool2d(3, 2, 1, True, False, None), torch.nn.AvgPool2d(3, 2, 1, True, False), [x])
    assert repr(nn.MaxPool2d(3, 2, 1, 2, ceil_mode=True)) == (
        "MaxPool2d(kernel_size=3, stride=2, padding=1, dilation=2, ceil_mode=True)"
    )
    assert repr(nn.AvgPool2d(2, count_include_pad=False)) == (
        "AvgPool2d(kernel_size=2, stride=2, padding=0, count_include_pad=False)"
    )


# -- conv2d: padding strings, unbatched input, empty batch -------------------------------------


@st.composite
def conv_case(draw):
    groups = draw(st.sampled_from([1, 2]))
    c_in, c_out = groups * draw(st.integers(1, 2)), groups * draw(st.integers(1, 2))
    n = draw(st.sampled_from([0, 1, 2, None]))  # None: unbatched (C, H, W)
    h, w = draw(st.integers(1, 7)), draw(st.integers(1, 7))
    k = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))  # even sizes: asymmetric "same"
    d = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    padding = draw(st.sampled_from(["same", "valid", 0, 1, (1, 2)]))
    stride = 1 if padding == "same" else draw(st.sampled_from([1, 2, (1, 3)]))
    try:  # torch decides which geometries are valid
        TF.conv2d(torch.empty(1, 1, h, w), torch.empty(1, 1, *k), None, stride, padding, d)
    except RuntimeError:
        assume(False)
    return dict(
        x=(c_in, h, w) if n is None else (n, c_in, h, w),
        w=(c_out, c_in // groups, *k),
        bias=draw(st.booleans()),
        args=dict(stride=stride, padding=padding, dilation=d, groups=groups),
    )


@FEW
@given(case=conv_case(), seed=st.integers(0, 999))
def test_conv2d_args_match_torch(backend, case, seed):
    rng = np.random.default_rng(seed)
    arrays = [rng.standard_normal(case["x"]), rng.standard_normal(case["w"])]
    if case["bias"]:
        arrays.append(rng.standard_normal(case["w"][0]))
    args = case["args"]
    compare(lambda *a: F.conv2d(*a, **args), lambda *a: TF.conv2d(*a, **args), arrays)


def test_conv2d_gradchecks():
    rng = np.random.default_rng(12)
    w_even = t64(rng.standard_normal((3, 2, 2, 4)))  # total padding 1 and 3: odd one right
    x = t64(rng.standard_normal((2, 2, 5, 4)))
    unbatched = t64(rng.standard_normal((2, 5, 4)))
    b = t64(rng.standard_normal(3))
    for t in (x, unbatched):
        assert mr.gradcheck(lambda a, w, c: F.conv2d(a, w, c, padding="same"), [t, w_even, b])
        assert mr.gradcheck(
            lambda a, w: F.conv2d(a, w, padding="same", dilation=(3, 1)), [t, w_even]
        )
        assert mr.gradcheck(lambda a, w: F.conv2d(a, w, stride=2, padding="valid"), [t, w_even])


def test_conv2d_same_keeps_the_size_and_pads_the_odd_one_right():
    x = t64(np.arange(16.0).reshape(1, 1, 4, 4))
    w = t64(np.zeros((1, 1, 2, 2)))
    w.data[0, 0, 0, 0] = 1.0  # picks x[h, w] when the extra padding is at the bottom/right
    out = F.conv2d(x, w, padding="same")
    np.testing.assert_array_equal(out.data, x.data)


def test_conv2d_empty_batch_gives_zero_gradients(backend):
    x = t64(np.empty((0, 2, 5, 5)))
    w, b = t64(np.ones((4, 2, 3, 3))), t64(np.ones(4))
    out = F.conv2d(x, w, b, padding="same")
    assert out.shape == (0, 4, 5, 5)
    out.sum().backward()
    assert x.grad.shape == (0, 2, 5, 5)
    np.testing.assert_array_equal(w.grad, np.zeros((4, 2, 3, 3)))
    np.testing.assert_array_equal(b.grad, np.zeros(4))


def test_conv2d_float32_same_and_unbatched():
    x = mr.tensor(np.ones((3, 6, 5), np.float32))
    x.requires_grad = True
    out = F.conv2d(x, mr.ones(2, 3, 2, 2), padding="same")
    out.sum().backward()
    assert out.shape == (2, 6, 5) and out.dtype == np.float32
    assert x.grad.shape == (3, 6, 5) and x.grad.dtype == np.float32


def test_conv2d_module_with_padding_strings_matches_torch():
    rng = np.random.default_rng(13)
    ours = nn.Conv2d(2, 3, (2, 3), padding="same", dilation=(1, 2)).double()
    theirs = torch.nn.Conv2d(2, 3, (2, 3), padding="same", dilation=(1, 2)).double()
    with torch.no_grad():
        theirs.weight.copy_(torch.tensor(ours.weight.data))
        theirs.bias.copy_(torch.tensor(ours.bias.data))
    compare(ours, theirs, [rng.standard_normal((2, 2, 5, 6))])
    compare(ours, theirs, [rng.standard_normal((2, 5, 6))])  # unbatched
    assert "padding=same" in repr(ours)
    valid = nn.Conv2d(2, 3, 3, padding="valid")
    assert valid(mr.randn(1, 2, 5, 5)).shape == (1, 3, 3, 3)


def test_conv2d_errors_name_the_argument():
    x, w = mr.randn(1, 2, 5, 5), mr.randn(3, 2, 3, 3)
    with pytest.raises(ValueError, match="padding='same' is not supported for strided"):
        F.conv2d(x, w, stride=2, padding="same")
    with pytest.raises(ValueError, match="padding='same' is not supported for strided"):
        F.conv2d(x, w, stride=(1, 2), padding="same")
    with pytest.raises(ValueError, match="invalid padding string 'full'"):
        F.conv2d(x, w, padding="full")
    with pytest.raises(ValueError, match="padding='same' is not supported for strided"):
        nn.Conv2d(2, 3, 3, stride=2, padding="same")
    with pytest.raises(ValueError, match="invalid padding string 'SAME'"):
        nn.Conv2d(2, 3, 3, padding="SAME")
    with pytest.raises(ValueError, match=r"input \(2, 2, 0, 5\) is empty"):
        F.conv2d(mr.randn(2, 2, 0, 5), w)
    with pytest.raises(ValueError, match="3 or 4 dimensions"):
        F.conv2d(mr.randn(5, 5), w)
    with pytest.raises(ValueError, match=r"expects 2 input channels.*\(3, 5, 5\)"):
        F.conv2d(mr.randn(3, 5, 5), w)  # unbatched: channels are dim 0


def test_cross_entropy_argument_types_as_torch():
    x = mr.tensor(np.random.default_rng(0).standard_normal((3, 4)))
    t = np.array([0, 1, 3])
    a = F.cross_entropy(x, t, label_smoothing=np.float32(0.1))  # NumPy scalars are floats
    b = F.cross_entropy(x, t, label_smoothing=0.1)
    np.testing.assert_allclose(a.data, b.data, rtol=1e-6)
    probs = np.full((3, 4), 0.25)
    with pytest.raises(ValueError, match="ignore_index .1. does not apply to class-probability"):
        F.cross_entropy(x, probs, ignore_index=1)
    assert np.isfinite(F.cross_entropy(x, probs).data)  # the default -100 is fine


def test_cross_entropy_of_unbatched_logits_as_torch():
    rng = np.random.default_rng(3)
    z = rng.standard_normal(5)
    p = rng.dirichlet(np.ones(5))
    for target, ttarget in [(np.array(3), torch.tensor(3)), (p, torch.from_numpy(p))]:
        for reduction in ("mean", "sum", "none"):
            x, tx = mr.tensor(z, requires_grad=True), torch.tensor(z, requires_grad=True)
            got = F.cross_entropy(x, target, reduction, label_smoothing=0.1)
            want = torch.nn.functional.cross_entropy(tx, ttarget, reduction=reduction,
                                                     label_smoothing=0.1)  # fmt: skip
            assert got.shape == tuple(want.shape)
            np.testing.assert_allclose(got.data, want.detach().numpy(), rtol=1e-12)
            got.backward()
            want.backward()
            np.testing.assert_allclose(x.grad, tx.grad.numpy(), rtol=1e-10, atol=1e-14)
    with pytest.raises(ValueError, match=r"unbatched logits \(5,\) need a 0-d class index"):
        F.cross_entropy(mr.tensor(z), np.array([3]))


def test_state_dict_prefix_and_keep_vars_as_torch():
    m = nn.Sequential(nn.Conv2d(2, 3, 1), nn.BatchNorm2d(3))
    t = torch.nn.Sequential(torch.nn.Conv2d(2, 3, 1), torch.nn.BatchNorm2d(3))
    assert list(m.state_dict(prefix="net.")) == list(t.state_dict(prefix="net."))
    live = m.state_dict(keep_vars=True)
    assert live["0.weight"] is m[0].weight  # the Parameter itself
    assert m.state_dict()["0.weight"] is not m[0].weight.data  # a copy by default
