"""torch's module-level API in minires, with torch as the oracle: the factories
(``mr.empty``, ``eye``, ``linspace``, ``randint``, ...), the ``torch.*`` forms of the
Tensor ops (``mr.exp``, ``mr.max``, ``mr.flatten``, ...), ``allclose / equal / numel /
is_tensor``, and ``F.one_hot`` / ``F.interpolate``. The new differentiable op
(interpolate) is also checked by a float64 gradcheck over generated shapes: batch 1, odd
sizes, scaling up and down."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

import minires as mr
import minires.functional as F

torch = pytest.importorskip("torch", reason="PyTorch not installed: torch-oracle tests skipped")
TF = torch.nn.functional


def spread(shape, seed=0, low=-2.0, high=2.0):
    """Distinct float64 values in [low, high], far from each other and from 0 (no ties and
    no kinks for max / relu / abs / clamp at +-0.5)."""
    n = int(np.prod(shape))
    vals = np.random.default_rng(seed).permutation(n).astype(np.float64) + 0.37
    return (low + (high - low) * vals / n).reshape(shape)


def both(fn_mr, fn_torch, arrays, grad=True, rtol=1e-12, atol=1e-12):
    """Forward (values, shape, dtype) and, with ``grad``, every input gradient of
    ``fn_mr`` vs ``fn_torch`` on the same arrays, with one random upstream gradient."""
    ts = [torch.tensor(a, requires_grad=grad and a.dtype.kind == "f") for a in arrays]
    ms = [mr.tensor(a, requires_grad=grad and a.dtype.kind == "f", dtype=a.dtype) for a in arrays]
    out_t, out_m = fn_torch(*ts), fn_mr(*ms)
    assert isinstance(out_m, mr.Tensor)
    assert out_m.shape == tuple(out_t.shape)
    assert out_m.dtype == np.dtype(str(out_t.dtype).removeprefix("torch."))
    np.testing.assert_allclose(out_m.data, out_t.detach().numpy(), rtol=rtol, atol=atol)
    if grad:
        g = np.random.default_rng(1).standard_normal(out_m.shape).astype(out_m.dtype)
        out_t.backward(torch.tensor(g))
        out_m.backward(g)
        for m, t in zip(ms, ts):
            if t.requires_grad:
                assert m.grad.dtype == m.dtype
                np.testing.assert_allclose(m.grad, t.grad.numpy(), rtol=rtol, atol=atol)


# -- factories ---------------------------------------------------------------------------


def _torch_dtype(a):
    return np.dtype(str(a.dtype).removeprefix("torch."))


def test_empty_full_like_and_eye_match_torch():
    cases = [
        (mr.empty(2, 3), torch.empty(2, 3)),
        (mr.empty((4,), dtype="float64"), torch.empty((4,), dtype=torch.float64)),
        (mr.empty([0, 2], dtype=mr.long), torch.empty([0, 2], dtype=torch.long)),
        (mr.empty_like(mr.ones(2, 1, dtype="int32")), torch.empty_like(torch.ones(2, 1).int())),
        (mr.empty_like(mr.ones(3), dtype="double"),
         torch.empty_like(torch.ones(3), dtype=torch.double)),
    ]  # fmt: skip
    for m, t in cases:
        assert m.shape == tuple(t.shape) and m.dtype == _torch_dtype(t)
    np.testing.assert_array_equal(mr.empty(2, 3).data, 0)  # zero-filled: reproducible
    x_int = np.arange(6).reshape(2, 3)
    for value in (2.7, -1, True):
        for arr in (x_int, x_int.astype(np.float64), x_int.astype(np.float32)):
            m = mr.full_like(mr.from_numpy(arr), value)
            t = torch.full_like(torch.from_numpy(arr), value)
            assert m.dtype == _torch_dtype(t)
            np.testing.assert_array_equal(m.data, t.numpy())
    m = mr.full_like(mr.zeros(2), mr.tensor(3.5), dtype="float64")
    np.testing.assert_array_equal(m.data, [3.5, 3.5])
    assert m.dtype == np.float64
    for args, kw in [((3,), {}), ((2, 4), {}), ((4, 2), {}), ((0,), {}), ((1,), {}),
                     ((3,), {"dtype": "long"}), ((2, 3), {"dtype": "float64"})]:  # fmt: skip
        t = torch.eye(*args, **{k: getattr(torch, v) for k, v in kw.items()})
        m = mr.eye(*args, **kw)
        assert m.dtype == _torch_dtype(t)
        np.testing.assert_array_equal(m.data, t.numpy())


def test_factories_take_requires_grad_and_the_cpu():
    for make in (
        lambda **kw: mr.empty(2, **kw),
        lambda **kw: mr.empty_like(mr.ones(2), **kw),
        lambda **kw: mr.full_like(mr.ones(2), 3.0, **kw),
        lambda **kw: mr.zeros_like(mr.ones(2), **kw),
        lambda **kw: mr.ones_like(mr.ones(2), **kw),
        lambda **kw: mr.eye(2, **kw),
        lambda **kw: mr.linspace(0, 1, 3, **kw),
        lambda **kw: mr.logspace(0, 1, 3, **kw),
        lambda **kw: mr.rand_like(mr.ones(2), **kw),
        lambda **kw: mr.randn_like(mr.ones(2), **kw),
        lambda **kw: mr.normal(0.0, 1.0, (2,), **kw),
    ):
        t = make(requires_grad=True, device="cpu")
        assert t.requires_grad and t.is_leaf and t.dtype == np.float32
        with pytest.raises(ValueError, match="CPU only"):
            make(device="cuda")
    for make in (lambda **kw: mr.randint(3, (2,), **kw), lambda **kw: mr.randperm(3, **kw)):
        assert make(device=torch.device("cpu")).dtype == np.int64
        with pytest.raises(TypeError, match="float32/float64 tensors can require grad"):
            make(requires_grad=True)  # int64, as torch refuses
        with pytest.raises(ValueError, match="CPU only"):
            make(device="cuda:0")


LINSPACE_CASES = [
    (0, 1, 5, None), (-3.5, 2, 7, None), (1, 0, 4, None), (0, 1, 1, None), (0, 1, 0, None),
    (2, 2, 3, None), (0, 1e6, 11, None), (0.1, 0.7, 6, None), (-1, 1, 100, None),
    (0, 1, 101, "float64"), (-7.3, 11.1, 17, "float64"), (0, 10, 4, "long"),
    (-0.5, 7.9, 5, "long"), (10, -10, 7, "int32"), (0, 100, 9, "float64"),
]  # fmt: skip


@pytest.mark.parametrize(("start", "end", "steps", "dtype"), LINSPACE_CASES)
def test_linspace_and_logspace_match_torch(start, end, steps, dtype):
    tdt = {"dtype": getattr(torch, dtype)} if dtype else {}
    mdt = {"dtype": dtype} if dtype else {}
    t = torch.linspace(start, end, steps, **tdt)
    m = mr.linspace(start, end, steps, **mdt)
    assert m.shape == (steps,) and m.dtype == _torch_dtype(t)
    # torch computes in the output dtype (with its vectorised rounding), minires in float64
    # and rounds once: equal up to a few ulps of the larger end
    ulp = np.finfo(m.dtype).eps * max(abs(start), abs(end)) if m.dtype.kind == "f" else 0
    np.testing.assert_allclose(m.data, t.numpy(), rtol=0, atol=4 * ulp)
    if steps:
        assert m.data[0] == t.numpy()[0] and m.data[-1] == t.numpy()[-1]  # both ends exact
    if abs(end) < 20 and abs(start) < 20 and dtype != "int32":  # 10**10 overflows int32
        for base in (10.0, 2.0, 0.5):
            t = torch.logspace(start, end, steps, base=base, **tdt)
            m = mr.logspace(start, end, steps, base, **mdt)
            assert m.dtype == _torch_dtype(t)
            np.testing.assert_allclose(m.data, t.numpy(), rtol=1e-6, atol=0)


def test_linspace_takes_tensor_ends():
    m = mr.linspace(mr.tensor(0.0), mr.tensor(2.0), 3)
    np.testing.assert_array_equal(m.data, [0, 1, 2])


def test_randint_and_randperm():
    for args, kw, shape in [((10, (3,)), {}, (3,)), ((-5, 5, (2, 4)), {}, (2, 4)),
                            ((7,), {"size": (5,)}, (5,)), ((), {"high": 3, "size": [2]}, (2,)),
                            ((2, 3, [4]), {}, (4,))]:  # fmt: skip
        t = torch.randint(*args, **kw)
        m = mr.randint(*args, **kw)
        assert m.shape == tuple(t.shape) == shape and m.dtype == _torch_dtype(t) == np.int64
    m = mr.randint(-2, 3, (4000,))
    assert set(np.unique(m.data)) == {-2, -1, 0, 1, 2}  # [low, high): high is left out
    assert mr.randint(0, 255, (10,), dtype="uint8").dtype == np.uint8
    assert mr.randint(5, (2, 2), dtype="float64").dtype == np.float64  # as torch allows
    for draw in (lambda: mr.randint(0, 100, (20,)), lambda: mr.randperm(20)):
        mr.manual_seed(7)
        a = draw()
        mr.manual_seed(7)
        np.testing.assert_array_equal(draw().data, a.data)  # minires' generator
        assert not np.array_equal(draw().data, a.data)
    p = mr.randperm(50)
    assert p.dtype == np.int64 and sorted(p.data) == list(range(50))
    assert mr.randperm(0).shape == (0,)
    assert mr.randperm(4, dtype="float32").dtype == np.float32


def test_rand_like_randn_like_and_normal():
    x = mr.zeros(200, 30, dtype="float64")
    for fn, tfn in ((mr.rand_like, torch.rand_like), (mr.randn_like, torch.randn_like)):
        m, t = fn(x), tfn(torch.zeros(200, 30, dtype=torch.float64))
        assert m.shape == tuple(t.shape) and m.dtype == np.float64
        assert fn(mr.zeros(2, dtype="long"), dtype="float").dtype == np.float32
        mr.manual_seed(3)
        a = fn(x)
        mr.manual_seed(3)
        np.testing.assert_array_equal(fn(x).data, a.data)
    u, z = mr.rand_like(x).data, mr.randn_like(x).data
    assert 0 <= u.min() and u.max() < 1 and abs(u.mean() - 0.5) < 0.02
    assert abs(z.mean()) < 0.05 and abs(z.std() - 1) < 0.05  # 6000 samples: > 4 sigma
    # torch.normal's four forms: shapes and dtypes as torch
    pairs = [
        (mr.normal(0.0, 1.0, (3, 2)), torch.normal(0.0, 1.0, (3, 2))),
        (mr.normal(2.0, 3.0, size=(4,), dtype="float64"),
         torch.normal(2.0, 3.0, size=(4,), dtype=torch.float64)),
        (mr.normal(mr.zeros(2, 1), mr.ones(3)), torch.normal(torch.zeros(2, 1), torch.ones(3))),
        (mr.normal(mr.zeros(3, dtype="float64"), 2.0),
         torch.normal(torch.zeros(3, dtype=torch.float64), 2.0)),
        (mr.normal(1.0, mr.ones(2, 2)), torch.normal(1.0, torch.ones(2, 2))),
    ]  # fmt: skip
    for m, t in pairs:
        assert m.shape == tuple(t.shape) and m.dtype == _torch_dtype(t)
    np.testing.assert_array_equal(mr.normal(5.0, 0.0, (4,)).data, 5.0)
    s = mr.normal(mr.full((20000,), 3.0, dtype="float64"), 2.0).data
    assert abs(s.mean() - 3) < 0.06 and abs(s.std() - 2) < 0.06
    mean = mr.zeros(3, requires_grad=True)
    assert not mr.normal(mean, 1.0).requires_grad  # a sample: not in the graph


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda: mr.eye(-1), ValueError, "n must be >= 0, got -1"),
        (lambda: mr.eye(2.0), TypeError, "n must be an int"),
        (lambda: mr.eye(2, -3), ValueError, "m must be >= 0, got -3"),
        (lambda: mr.linspace(0, 1, -1), ValueError, "steps must be >= 0, got -1"),
        (lambda: mr.linspace(0, 1, 2.5), TypeError, "steps must be an int"),
        (lambda: mr.linspace(0, float("inf"), 3), ValueError, "finite"),
        (lambda: mr.linspace("a", 1, 3), TypeError, "start must be a real number"),
        (lambda: mr.linspace(0, 1, 3, dtype="float16"), TypeError, "float16 is not supported"),
        (lambda: mr.randint(5, 5, (2,)), ValueError, "low=5, high=5"),
        (lambda: mr.randint(5), TypeError, "size is required"),
        (lambda: mr.randint(0.5, 5, (2,)), TypeError, "low must be an int"),
        (lambda: mr.randint(0, 300, (2,), dtype="uint8"), ValueError, "do not fit in uint8"),
        (lambda: mr.randint(0, 3, (-1,)), ValueError, "sizes must be >= 0"),
        (lambda: mr.randint(2, 3, 4), TypeError, "size must be a tuple of ints"),
        (lambda: mr.normal(0.0, 1.0, 4), TypeError, "size must be a tuple of ints"),
        (lambda: mr.randperm(-1), ValueError, "n must be >= 0, got -1"),
        (lambda: mr.randperm(300, dtype="uint8"), ValueError, "do not fit in uint8"),
        (lambda: mr.rand_like(mr.zeros(2, dtype="long")), TypeError, "input is int64"),
        (lambda: mr.randn_like([1.0]), TypeError, "expected a Tensor, got list"),
        (lambda: mr.full_like(mr.zeros(2), "x"), TypeError, "fill_value must be a real number"),
        (lambda: mr.empty_like(None), TypeError, "expected a Tensor, got NoneType"),
        (lambda: mr.normal(0.0, -1.0, (2,)), ValueError, "std must be >= 0, found -1"),
        (lambda: mr.normal(0.0, 1.0), TypeError, "size is required"),
        (lambda: mr.normal(mr.zeros(2), mr.ones(3)), ValueError, r"\(2,\) and std of shape \(3,\)"),
        (lambda: mr.normal(mr.zeros(2, dtype="long"), 1.0), TypeError, "must be float"),
        (lambda: mr.normal(mr.zeros(2), 1.0, (2,)), TypeError, "size and dtype"),
    ],
)  # fmt: skip
def test_factory_errors(call, error, match):
    with pytest.raises(error, match=match):
        call()


# -- torch.* forms of the Tensor ops -------------------------------------------------------

X = spread((3, 4, 2))
POS = spread((3, 4), low=0.1, high=3.0)
Y = spread((3, 4, 2), seed=1)

OPS = [
    ("exp", lambda m: mr.exp(m), lambda t: torch.exp(t), [X]),
    ("log", lambda m: mr.log(m), lambda t: torch.log(t), [POS]),
    ("sqrt", lambda m: mr.sqrt(m), lambda t: torch.sqrt(t), [POS]),
    ("abs", lambda m: mr.abs(m), lambda t: torch.abs(t), [X]),
    ("sigmoid", lambda m: mr.sigmoid(m), lambda t: torch.sigmoid(t), [X]),
    ("tanh", lambda m: mr.tanh(m), lambda t: torch.tanh(t), [X]),
    ("relu", lambda m: mr.relu(m), lambda t: torch.relu(t), [X]),
    ("clamp", lambda m: mr.clamp(m, -0.5, 0.5), lambda t: torch.clamp(t, -0.5, 0.5), [X]),
    ("clamp_min", lambda m: mr.clamp(m, min=0.1), lambda t: torch.clamp(t, min=0.1), [X]),
    ("clip", lambda m: mr.clip(m, max=0.1), lambda t: torch.clip(t, max=0.1), [X]),
    ("clamp_tensor", lambda m, lo: mr.clamp(m, lo), lambda t, lo: torch.clamp(t, lo), [X, Y]),
    ("sum", lambda m: mr.sum(m), lambda t: torch.sum(t), [X]),
    ("sum_dim", lambda m: mr.sum(m, 1, True), lambda t: torch.sum(t, 1, True), [X]),
    ("sum_dims", lambda m: mr.sum(m, dim=(0, 2)), lambda t: torch.sum(t, dim=(0, 2)), [X]),
    ("mean", lambda m: mr.mean(m), lambda t: torch.mean(t), [X]),
    ("mean_dim", lambda m: mr.mean(m, dim=-1, keepdim=True),
     lambda t: torch.mean(t, dim=-1, keepdim=True), [X]),
    ("max", lambda m: mr.max(m), lambda t: torch.max(t), [X]),
    ("max_dim", lambda m: mr.max(m, 1), lambda t: torch.max(t, 1).values, [X]),
    ("max_keepdim", lambda m: mr.max(m, dim=2, keepdim=True),
     lambda t: torch.max(t, dim=2, keepdim=True).values, [X]),
    ("max_other", lambda a, b: mr.max(a, b), lambda a, b: torch.max(a, b), [X, Y]),
    ("min", lambda m: mr.min(m), lambda t: torch.min(t), [X]),
    ("min_dim", lambda m: mr.min(m, 0), lambda t: torch.min(t, 0).values, [X]),
    ("min_other", lambda a, b: mr.min(a, other=b), lambda a, b: torch.min(a, other=b), [X, Y]),
    ("matmul", lambda a, b: mr.matmul(a, b), lambda a, b: torch.matmul(a, b),
     [spread((2, 3, 4)), spread((4, 5), seed=2)]),
    ("matmul_vec", lambda a, b: mr.matmul(a, b), lambda a, b: torch.matmul(a, b),
     [spread((3, 4)), spread((4,), seed=2)]),
    ("transpose", lambda m: mr.transpose(m, 0, 2), lambda t: torch.transpose(t, 0, 2), [X]),
    ("permute", lambda m: mr.permute(m, (2, 0, 1)), lambda t: torch.permute(t, (2, 0, 1)), [X]),
    ("reshape", lambda m: mr.reshape(m, (4, -1)), lambda t: torch.reshape(t, (4, -1)), [X]),
    ("flatten", lambda m: mr.flatten(m), lambda t: torch.flatten(t), [X]),
    ("flatten_1", lambda m: mr.flatten(m, 1), lambda t: torch.flatten(t, 1), [X]),
    ("flatten_0_1", lambda m: mr.flatten(m, 0, 1), lambda t: torch.flatten(t, 0, 1), [X]),
    ("squeeze", lambda m: mr.squeeze(m), lambda t: torch.squeeze(t), [spread((1, 3, 1))]),
    ("squeeze_dim", lambda m: mr.squeeze(m, 2), lambda t: torch.squeeze(t, 2), [spread((1, 3, 1))]),
    ("unsqueeze", lambda m: mr.unsqueeze(m, 1), lambda t: torch.unsqueeze(t, 1), [X]),
    ("unsqueeze_neg", lambda m: mr.unsqueeze(m, -1), lambda t: torch.unsqueeze(t, -1), [X]),
    ("softmax", lambda m: mr.softmax(m, 1), lambda t: torch.softmax(t, 1), [X]),
    ("log_softmax", lambda m: mr.log_softmax(m, dim=-1), lambda t: torch.log_softmax(t, dim=-1),
     [X]),
]  # fmt: skip


@pytest.mark.parametrize(("name", "fn_mr", "fn_torch", "arrays"), OPS, ids=[o[0] for o in OPS])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_torch_function_forms_match_torch(name, fn_mr, fn_torch, arrays, dtype):
    tol = 1e-12 if dtype == np.float64 else 2e-6
    both(fn_mr, fn_torch, [a.astype(dtype) for a in arrays], rtol=tol, atol=tol)


def test_function_forms_that_are_not_differentiable():
    x = spread((3, 5))
    for dim in (None, 0, 1, -1):
        for fn in ("argmax", "argmin"):
            m = getattr(mr, fn)(mr.tensor(x), dim)
            t = getattr(torch, fn)(torch.tensor(x), dim)
            assert m.dtype == np.int64
            np.testing.assert_array_equal(m.data, t.numpy())
    m = mr.argmax(mr.tensor(x), dim=1, keepdim=True)
    np.testing.assert_array_equal(m.data, torch.argmax(torch.tensor(x), dim=1, keepdim=True))
    # integer tensors keep their dtype where torch does
    ints = np.arange(-3, 3).reshape(2, 3)
    both(lambda m: mr.abs(m), lambda t: torch.abs(t), [ints], grad=False)
    both(lambda m: mr.max(m, 0), lambda t: torch.max(t, 0).values, [ints], grad=False)
    both(lambda m: mr.flatten(m), lambda t: torch.flatten(t), [ints], grad=False)


def test_function_forms_are_the_functional_ops():
    for name in ("exp", "log", "sigmoid", "tanh", "relu", "sum", "mean", "argmax", "argmin",
                 "transpose", "reshape", "softmax", "log_softmax"):  # fmt: skip
        assert getattr(mr, name) is getattr(F, name)  # the same function, not a copy
    names = ["empty", "empty_like", "full_like", "eye", "linspace", "logspace", "randint",
             "randperm", "rand_like", "randn_like", "normal", "allclose", "equal", "numel",
             "is_tensor", "abs", "sqrt", "clamp", "clip", "matmul", "permute", "squeeze",
             "unsqueeze", "flatten", "max", "min"]  # fmt: skip
    names += [o[0] for o in OPS if "_" not in o[0]]
    for name in names:
        assert callable(getattr(mr, name)) and name in mr.__all__, name
    for name in ("one_hot", "interpolate"):
        assert getattr(F, name) is getattr(mr.nn.functional, name) and name in F.__all__


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda: mr.abs([1.0, -2.0]), TypeError, "abs: input must be a Tensor, got list"),
        (lambda: mr.sqrt(np.ones(2)), TypeError, "sqrt: input must be a Tensor, got ndarray"),
        (lambda: mr.clamp(None, 0.0), TypeError, "clamp: input must be a Tensor"),
        (lambda: mr.matmul(mr.ones(2, 3), [[1.0]]), TypeError, "matmul: other must be a Tensor"),
        (lambda: mr.matmul(mr.ones(2, 3), mr.ones(2, 3)), ValueError, r"\(2, 3\) and \(2, 3\)"),
        (lambda: mr.permute("x", (0,)), TypeError, "permute: input must be a Tensor"),
        (lambda: mr.permute(mr.ones(2, 3), (0, 0)), ValueError, "not a permutation"),
        (lambda: mr.squeeze(3.0), TypeError, "squeeze: input must be a Tensor"),
        (lambda: mr.unsqueeze(mr.ones(2), 3), ValueError, "dim 3 is out of range"),
        (lambda: mr.flatten(np.ones(3)), TypeError, "flatten: input must be a Tensor"),
        (lambda: mr.max(mr.ones(2), mr.ones(2), 0), TypeError, "max\\(input, other\\)"),
        (lambda: mr.max(mr.ones(2, 3), mr.ones(4)), ValueError, "broadcast"),
        (lambda: mr.min([1.0]), TypeError, "min: input must be a Tensor"),
        (lambda: mr.max(mr.ones(2), 3), ValueError, "out of range"),
        (lambda: mr.numel([1, 2]), TypeError, "numel: input must be a Tensor"),
        (lambda: mr.equal(mr.ones(2), np.ones(2)), TypeError, "equal: other must be a Tensor"),
        (lambda: mr.allclose(mr.ones(2), mr.ones(2, dtype="float64")), TypeError,
         "input float32, other float64"),
        (lambda: mr.allclose(mr.ones(2), mr.ones(3)), ValueError, r"\(2,\) and \(3,\)"),
        (lambda: mr.allclose(mr.ones(2), mr.ones(2), atol="x"), TypeError, "atol"),
        (lambda: mr.allclose(mr.ones(2), mr.ones(2), equal_nan=1), TypeError, "equal_nan"),
    ],
)  # fmt: skip
def test_function_form_errors(call, error, match):
    with pytest.raises(error, match=match):
        call()


# -- allclose, equal, numel, is_tensor -----------------------------------------------------

PAIRS = [
    ([1.0, 2.0], [1.0, 2.0]),
    ([1.0, 2.0], [1.0, 2.0 + 1e-6]),
    ([1.0, 2.0], [1.0, 2.0 + 1e-4]),
    ([1e-9, 0.0], [0.0, 1e-9]),
    ([[1.0, 2.0]], [1.0, 2.0]),  # broadcasts for allclose, differs for equal
    ([[1.0], [1.0]], [1.0]),
    ([float("nan"), 1.0], [float("nan"), 1.0]),
    ([float("inf"), 1.0], [float("inf"), 1.0]),
    ([float("inf"), 1.0], [-float("inf"), 1.0]),
    ([0.0], [-0.0]),
    (3.0, 3.0),
    (3.0, [3.0]),
    ([], []),
]


@pytest.mark.parametrize(("a", "b"), PAIRS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64])
def test_allclose_equal_numel_match_torch(a, b, dtype):
    with np.errstate(invalid="ignore"):
        a, b = np.asarray(a).astype(dtype), np.asarray(b).astype(dtype)
    ma, mb = mr.tensor(a, dtype=dtype), mr.tensor(b, dtype=dtype)
    ta, tb = torch.tensor(a), torch.tensor(b)
    assert mr.equal(ma, mb) is torch.equal(ta, tb)
    assert mr.numel(ma) == torch.numel(ta) and isinstance(mr.numel(ma), int)
    for kw in ({}, {"equal_nan": True}, {"rtol": 1e-3}, {"atol": 1e-3, "rtol": 0.0}):
        assert mr.allclose(ma, mb, **kw) is torch.allclose(ta, tb, **kw), kw


def test_equal_across_dtypes_and_is_tensor():
    assert mr.equal(mr.tensor([1, 2], dtype="long"), mr.tensor([1.0, 2.0]))  # torch: True
    assert torch.equal(torch.tensor([1, 2]), torch.tensor([1.0, 2.0]))
    objects = ((mr.ones(2), True), (mr.nn.Parameter(mr.ones(2)), True), (np.ones(2), False),
               ([1.0], False), (3.0, False), (None, False))  # fmt: skip
    for obj, expected in objects:
        assert mr.is_tensor(obj) is expected
    assert mr.numel(mr.tensor(2.0)) == 1 and mr.numel(mr.zeros(0, 3)) == 0


# -- one_hot -------------------------------------------------------------------------------


@given(
    shape=st.lists(st.integers(0, 4), min_size=0, max_size=3).map(tuple),
    classes=st.integers(1, 6),
    given_classes=st.booleans(),
    seed=st.integers(0, 99),
)
def test_one_hot_matches_torch(shape, classes, given_classes, seed):
    idx = np.random.default_rng(seed).integers(0, classes, shape)
    if not given_classes and idx.size == 0:
        return  # torch and minires both refuse (tested below)
    num = classes if given_classes else -1
    t = TF.one_hot(torch.tensor(idx), num)
    m = F.one_hot(mr.tensor(idx, dtype="long"), num)
    assert m.dtype == np.int64 and m.shape == tuple(t.shape)
    np.testing.assert_array_equal(m.data, t.numpy())
    m32 = F.one_hot(mr.tensor(idx, dtype="int32"), num)  # any integer dtype (torch: int64)
    np.testing.assert_array_equal(m32.data, t.numpy())


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda: F.one_hot(mr.tensor([0.0, 2.0])), TypeError, "integer class indices, got float32"),
        (lambda: F.one_hot([0, 1]), TypeError, "tensor must be a Tensor, got list"),
        (lambda: F.one_hot(mr.tensor([0, -1], dtype="long")), ValueError, "non-negative, got -1"),
        (lambda: F.one_hot(mr.tensor([0, 3], dtype="long"), 3), ValueError,
         "smaller than num_classes=3, got 3"),
        (lambda: F.one_hot(mr.tensor([1], dtype="long"), 0), ValueError, "num_classes=0"),
        (lambda: F.one_hot(mr.tensor([1], dtype="long"), -2), ValueError, "got -2"),
        (lambda: F.one_hot(mr.tensor([1], dtype="long"), 2.0), TypeError,
         "num_classes must be an int"),
        (lambda: F.one_hot(mr.zeros(0, dtype="long")), ValueError, r"empty tensor of shape \(0,\)"),
    ],
)  # fmt: skip
def test_one_hot_errors(call, error, match):
    with pytest.raises(error, match=match):
        call()


# -- interpolate ---------------------------------------------------------------------------

SCALES = [0.5, 0.6, 1 / 3, 0.7, 1.1, 1.5, 1.7, 2.0, 2.5, 3.0]


@st.composite
def resize_cases(draw):
    """(input shape, mode, align_corners, size / scale_factor keywords)."""
    shape = (draw(st.integers(1, 2)), draw(st.integers(1, 2)),
             draw(st.integers(1, 7)), draw(st.integers(1, 7)))  # fmt: skip
    mode = draw(st.sampled_from(["nearest", "bilinear"]))
    align = None if mode == "nearest" else draw(st.booleans())
    if draw(st.booleans()):
        kw = {"size": (draw(st.integers(1, 9)), draw(st.integers(1, 9)))}
    else:
        sh, sw = draw(st.sampled_from(SCALES)), draw(st.sampled_from(SCALES))
        scale = sh if draw(st.booleans()) else (sh, sw)
        kw = {"scale_factor": scale, "recompute_scale_factor": draw(st.sampled_from([None, True]))}
        sh, sw = scale if isinstance(scale, tuple) else (scale, scale)
        if math.floor(shape[2] * sh) < 1 or math.floor(shape[3] * sw) < 1:
            kw = {"size": (1, 1)}
    return shape, mode, align, kw


EXAMPLES = [  # batch 1, odd sizes, up, down, torch's special cases (same size, twice the size)
    ((1, 1, 3, 5), "nearest", None, {"size": (7, 9)}),
    ((1, 2, 7, 5), "nearest", None, {"size": (3, 2)}),
    ((1, 1, 5, 5), "nearest", None, {"scale_factor": 1.1}),  # out == in: torch copies
    ((2, 1, 3, 3), "nearest", None, {"scale_factor": 2.5}),
    ((1, 1, 5, 7), "nearest", None, {"scale_factor": 0.7}),
    ((1, 1, 3, 5), "bilinear", False, {"size": (7, 9)}),
    ((1, 3, 7, 5), "bilinear", True, {"size": (3, 2)}),
    ((1, 1, 5, 3), "bilinear", False, {"scale_factor": (1.1, 2.0)}),
    ((1, 1, 4, 5), "bilinear", False, {"scale_factor": 1 / 3, "recompute_scale_factor": True}),
    ((1, 1, 1, 1), "bilinear", True, {"size": (3, 1)}),
    ((1, 1, 3, 4), "bilinear", True, {"size": (1, 1)}),
]


def _with_examples(test):
    for case in EXAMPLES:
        test = example(case=case)(test)
    return test


@_with_examples
@given(case=resize_cases())
def test_interpolate_gradcheck(case):
    shape, mode, align, kw = case
    x = mr.tensor(np.random.default_rng(0).standard_normal(shape), requires_grad=True)
    assert mr.gradcheck(lambda x: F.interpolate(x, mode=mode, align_corners=align, **kw), [x])


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@_with_examples
@given(case=resize_cases())
def test_interpolate_matches_torch(case, dtype):
    shape, mode, align, kw = case
    tol = 1e-12 if dtype == np.float64 else 1e-5
    x = np.random.default_rng(1).standard_normal(shape).astype(dtype)
    both(
        lambda m: F.interpolate(m, mode=mode, align_corners=align, **kw),
        lambda t: TF.interpolate(t, mode=mode, align_corners=align, **kw),
        [x],
        rtol=tol,
        atol=tol,
    )


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_interpolate_nearest_picks_torchs_pixels(dtype):
    """torch's nearest rule exactly, on every output size up to 2.5x, scale factors whose
    float32 reciprocal rounds either way, and large upscales where torch's float32 index
    arithmetic (also for float64 input) picks another row than exact arithmetic would
    (2 -> 82: output 41 copies row 0, not 1): which source row each output row copies."""
    np_dtype = np.dtype(str(dtype).removeprefix("torch."))
    for n_in in range(1, 14):
        calls = [{"size": (n_out, 1)} for n_out in range(1, 2 * n_in + 4)]
        calls += [{"scale_factor": (s, 1.0)} for s in SCALES + [0.9, 1.3, 1 / 0.7, 7 / 3]]
        calls += [{"size": (n_out, 1)} for n_out in (82, 94, 123) if n_in <= 4]
        for kw in calls:
            if "scale_factor" in kw and math.floor(n_in * kw["scale_factor"][0]) < 1:
                continue
            rows = np.arange(n_in, dtype=np_dtype).reshape(1, 1, n_in, 1)
            t = TF.interpolate(torch.tensor(rows, dtype=dtype), mode="nearest", **kw)
            m = F.interpolate(mr.tensor(rows, dtype=np_dtype), mode="nearest", **kw)
            np.testing.assert_array_equal(m.data, t.numpy(), err_msg=f"n_in={n_in}, {kw}")


def test_interpolate_keeps_no_graph_without_grad_and_handles_empty_batch():
    x = mr.randn(0, 2, 3, 3)
    for mode in ("nearest", "bilinear"):
        out = F.interpolate(x, size=5, mode=mode)
        assert out.shape == (0, 2, 5, 5) and not out.requires_grad
    x = mr.randn(2, 3, 4, 4)
    ref = TF.interpolate(torch.tensor(x.data), scale_factor=2, mode="bilinear")
    np.testing.assert_allclose(F.interpolate(x, scale_factor=2, mode="bilinear").data, ref.numpy(),
                               rtol=1e-6, atol=1e-6)  # fmt: skip


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"size": 2, "scale_factor": 2.0}, ValueError, "only one of size or scale_factor"),
        ({}, ValueError, "either size or scale_factor"),
        ({"size": (0, 2)}, ValueError,
         r"input \(H, W\) = \(4, 5\) and output \(H', W'\) = \(0, 2\)"),
        ({"scale_factor": 0.1}, ValueError, r"output \(H', W'\) = \(0, 0\)"),
        ({"scale_factor": -2.0}, ValueError, "scale_factor must be > 0"),
        ({"scale_factor": float("nan")}, ValueError, "scale_factor must be finite"),
        ({"size": (2, 2, 2)}, ValueError, "one per spatial dimension"),
        ({"scale_factor": (2.0,)}, ValueError, "one per spatial dimension"),
        ({"size": 2.5}, TypeError, "size must be an int"),
        ({"size": (2, True)}, TypeError, "size must be an int"),
        ({"size": 2, "mode": "foo"}, ValueError, "unknown mode 'foo'"),
        ({"size": 2, "mode": "bicubic"}, NotImplementedError, "'bicubic' is not implemented"),
        ({"size": 2, "align_corners": True}, ValueError, "align_corners option"),
        ({"size": 2, "mode": "bilinear", "align_corners": 1}, TypeError, "align_corners must be"),
        ({"size": 2, "mode": "bilinear", "antialias": True}, NotImplementedError, "antialias"),
        ({"size": 2, "recompute_scale_factor": True}, ValueError, "not meaningful"),
    ],
)  # fmt: skip
def test_interpolate_errors(kwargs, error, match):
    with pytest.raises(error, match=match):
        F.interpolate(mr.zeros(1, 1, 4, 5), **kwargs)


def test_interpolate_input_errors():
    with pytest.raises(ValueError, match=r"4-D input \(N, C, H, W\), got shape \(1, 4, 4\)"):
        F.interpolate(mr.zeros(1, 4, 4), size=2)
    with pytest.raises(TypeError, match="float32 or float64, got int64"):
        F.interpolate(mr.zeros(1, 1, 4, 4, dtype="long"), size=2)
    with pytest.raises(TypeError, match="must be a Tensor"):
        F.interpolate(np.zeros((1, 1, 4, 4)), size=2)
    with pytest.raises(ValueError, match=r"input \(H, W\) = \(0, 4\)"):
        F.interpolate(mr.zeros(1, 1, 0, 4), size=2)
