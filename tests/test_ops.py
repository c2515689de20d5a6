"""Every functional op: float64 gradcheck over hypothesis-generated shapes (on both kernel
backends where the op has kernels), and torch as an oracle for forward and gradients."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

import minires as mr
import minires.functional as F

BACKENDS = ["numpy", "numba"]


@pytest.fixture(params=BACKENDS)
def backend(request):
    with mr.use_backend(request.param):
        yield request.param


def t64(a, grad=True):
    return mr.tensor(np.asarray(a, dtype=np.float64), requires_grad=grad)


def jitter_away_from_ties(x: np.ndarray, rng) -> np.ndarray:
    """Distinct values with gaps >> eps: no relu-at-0 and no max-pool ties."""
    n = x.size
    vals = rng.permutation(n).astype(np.float64) + 0.25  # never exactly 0 below
    return (vals / n * 4 - 2).reshape(x.shape)


# -- strategies --------------------------------------------------------------------------------


@st.composite
def conv_case(draw):
    kind = draw(st.sampled_from(["dense", "groups2", "depthwise", "depthwise_x2"]))
    cpg = draw(st.integers(1, 3))
    if kind == "dense":
        groups, c_in, c_out = 1, cpg, draw(st.integers(1, 4))
    elif kind == "groups2":
        groups, c_in, c_out = 2, 2 * cpg, 2 * draw(st.integers(1, 2))
    else:
        c_in = draw(st.integers(1, 4))
        groups, c_out = c_in, c_in * (2 if kind == "depthwise_x2" else 1)
    n = draw(st.integers(1, 2))
    h, w = draw(st.integers(3, 8)), draw(st.integers(3, 8))
    kh, kw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    s = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    p = (draw(st.integers(0, 2)), draw(st.integers(0, 2)))
    d = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    ho = (h + 2 * p[0] - d[0] * (kh - 1) - 1) // s[0] + 1
    wo = (w + 2 * p[1] - d[1] * (kw - 1) - 1) // s[1] + 1
    assume(ho >= 1 and wo >= 1)
    bias = draw(st.booleans())
    return dict(
        x=(n, c_in, h, w),
        w=(c_out, c_in // groups, kh, kw),
        bias=bias,
        stride=s,
        padding=p,
        dilation=d,
        groups=groups,
    )


@st.composite
def pool_case(draw):
    n, c = draw(st.integers(1, 2)), draw(st.integers(1, 3))
    h, w = draw(st.integers(2, 7)), draw(st.integers(2, 7))
    k = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    s = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    p = (draw(st.integers(0, k[0] // 2)), draw(st.integers(0, k[1] // 2)))
    assume((h + 2 * p[0] - k[0]) // s[0] + 1 >= 1 and (w + 2 * p[1] - k[1]) // s[1] + 1 >= 1)
    return dict(x=(n, c, h, w), k=k, s=s, p=p)


# -- gradcheck over generated shapes --------------------------------------------------------------


@given(case=conv_case(), seed=st.integers(0, 2**16))
def test_conv2d_gradcheck(backend, case, seed):
    rng = np.random.default_rng(seed)
    x, w = t64(rng.standard_normal(case["x"])), t64(rng.standard_normal(case["w"]))
    inputs = [x, w] + ([t64(rng.standard_normal(case["w"][0]))] if case["bias"] else [])

    def fn(x, w, b=None):
        return F.conv2d(x, w, b, case["stride"], case["padding"], case["dilation"], case["groups"])

    assert mr.gradcheck(fn, inputs)


@pytest.mark.parametrize("w", [8, 12])  # float64: two rows of tiles a vector / one row
def test_conv2d_gradcheck_winograd_plans(w):
    """The hypothesis shapes above are too small for Winograd (24+ channels per group):
    these geometries are planned as Winograd for all three passes, and gradcheck them
    (48 output channels: too many for the direct tiles, which take the weight gradient
    of 24 -> 24 with AVX2's vectors)."""
    import minires.kernels.jit as J

    rng = np.random.default_rng(w)
    x, wt = t64(rng.standard_normal((1, 24, 3, w))), t64(rng.standard_normal((48, 24, 3, 3)))
    b = t64(rng.standard_normal(48))
    plan = J.plan_for(x.shape, wt.shape, 1, 1, 1, 1, np.float64)
    assert {str(a) for a in plan.values()} == {"winograd", "transposed:winograd"}
    with mr.use_backend("numba"):
        assert mr.gradcheck(lambda x, w, b: F.conv2d(x, w, b, padding=1), [x, wt, b])
        assert str(J.last_plan()["backward_weight"]) == "winograd"


def test_conv2d_gradcheck_winograd_nhwc_plans():
    """A geometry planned as Winograd on channels-last tiles for all three passes
    (128+ tiles, 32 channels: whole panels of float64 lanes; a 9x2 plane, one tile a
    row, which the tiles-in-lanes Winograd does not take), gradchecked in float64 with
    random projections."""
    import minires.kernels.jit as J

    rng = np.random.default_rng(12)
    x, wt = t64(rng.standard_normal((26, 32, 9, 2))), t64(rng.standard_normal((32, 32, 3, 3)))
    b = t64(rng.standard_normal(32))
    plan = J.plan_for(x.shape, wt.shape, 1, 1, 1, 1, np.float64)
    assert {str(a) for a in plan.values()} == {"winograd_nhwc", "transposed:winograd_nhwc"}
    with mr.use_backend("numba"):
        assert mr.gradcheck(lambda x, w, b: F.conv2d(x, w, b, padding=1), [x, wt, b],
                            fast_mode=True)  # fmt: skip
        assert {str(a) for a in J.last_plan().values()} == {
            "winograd_nhwc", "transposed:winograd_nhwc"}  # fmt: skip


@pytest.fixture
def simd_gemm_rules(monkeypatch):
    """The planner's rules for 64-byte vectors, under which it gives the SIMD GEMM the
    convs below (with AVX2's it gives them to BLAS); the kernels still run at this CPU's
    vector width."""
    from minires.kernels.jit import planner

    monkeypatch.setattr(planner, "_lanes", lambda itemsize: (64 // itemsize, 64))


@pytest.mark.parametrize("n, c, hw", [(16, 72, (7, 9)), (1, 256, (16, 17))])
def test_conv2d_gradcheck_pointwise_simd_plans(n, c, hw, simd_gemm_rules):
    """1x1 geometries planned as the SIMD GEMM (all three passes), gradchecked
    in float64 with random projections (they need millions of multiply-adds to be
    planned so): many small images (vectors span images), and one large image."""
    import minires.kernels.jit as J

    rng = np.random.default_rng(n)
    x, wt = t64(rng.standard_normal((n, c, *hw))), t64(rng.standard_normal((c, c, 1, 1)) / c)
    b = t64(rng.standard_normal(c))
    plan = J.plan_for(x.shape, wt.shape, 1, 0, 1, 1, np.float64)
    assert [str(plan[p]) for p in ("forward", "backward_input")] == [
        "pointwise_simd", "transposed:pointwise_simd"]  # fmt: skip
    with mr.use_backend("numba"):
        assert mr.gradcheck(lambda x, w, b: F.conv2d(x, w, b), [x, wt, b], fast_mode=True)
        assert {str(a) for a in J.last_plan().values()} == {
            "pointwise_simd", "transposed:pointwise_simd"}  # fmt: skip


def test_conv2d_gradcheck_im2col_simd_plans(simd_gemm_rules):
    """A strided 3x3 conv whose weight gradient is planned as im2col + the SIMD GEMM
    (2^24+ multiply-adds), gradchecked in float64 with random projections."""
    import minires.kernels.jit as J

    rng = np.random.default_rng(7)
    x, wt = (
        t64(rng.standard_normal((16, 128, 9, 9))),
        t64(rng.standard_normal((64, 128, 3, 3)) / 30),
    )
    b = t64(rng.standard_normal(64))
    plan = J.plan_for(x.shape, wt.shape, 2, 1, 1, 1, np.float64)
    assert str(plan["backward_weight"]) == "im2col_simd"
    with mr.use_backend("numba"):
        f = lambda x, w, b: F.conv2d(x, w, b, stride=2, padding=1)  # noqa: E731
        assert mr.gradcheck(f, [x, wt, b], fast_mode=True)
        assert str(J.last_plan()["backward_weight"]) == "im2col_simd"


@given(
    n=st.integers(2, 3),
    c=st.integers(1, 3),
    hw=st.sampled_from([(1, 1), (2, 3), (3, 3)]),
    affine=st.booleans(),
    training=st.booleans(),
    two_d=st.booleans(),
    seed=st.integers(0, 999),
)
def test_batch_norm_gradcheck(backend, n, c, hw, affine, training, two_d, seed):
    rng = np.random.default_rng(seed)
    shape = (n, c) if two_d else (n, c, *hw)
    x = t64(rng.standard_normal(shape) * 2 + 1)
    inputs = [x] + ([t64(rng.standard_normal(c)), t64(rng.standard_normal(c))] if affine else [])
    rm, rv = rng.standard_normal(c), rng.uniform(0.5, 2, c)

    def fn(x, w=None, b=None):
        return F.batch_norm(x, rm.copy(), rv.copy(), w, b, training=training)

    assert mr.gradcheck(fn, inputs)


@given(case=pool_case(), seed=st.integers(0, 999))
def test_max_pool2d_gradcheck(backend, case, seed):
    rng = np.random.default_rng(seed)
    x = t64(jitter_away_from_ties(np.empty(case["x"]), rng))
    assert mr.gradcheck(lambda x: F.max_pool2d(x, case["k"], case["s"], case["p"]), [x])


@given(case=pool_case(), seed=st.integers(0, 999))
def test_avg_pool2d_gradcheck(backend, case, seed):
    x = t64(np.random.default_rng(seed).standard_normal(case["x"]))
    assert mr.gradcheck(lambda x: F.avg_pool2d(x, case["k"], case["s"], case["p"]), [x])


@given(h=st.integers(1, 7), w=st.integers(1, 7), oh=st.integers(1, 4), ow=st.integers(1, 4))
def test_adaptive_avg_pool2d_gradcheck(h, w, oh, ow):
    x = t64(np.random.default_rng(h * 10 + w).standard_normal((2, 2, h, w)))
    assert mr.gradcheck(lambda x: F.adaptive_avg_pool2d(x, (oh, ow)), [x])


@given(shape=st.lists(st.integers(1, 4), min_size=1, max_size=3), seed=st.integers(0, 999))
def test_relu_gradcheck(backend, shape, seed):
    x = t64(jitter_away_from_ties(np.empty(shape), np.random.default_rng(seed)))
    assert mr.gradcheck(F.relu, [x])


@st.composite
def broadcast_pair(draw):
    base = draw(st.lists(st.integers(1, 4), min_size=1, max_size=3))
    other = [draw(st.sampled_from([d, 1])) for d in base]
    drop = draw(st.integers(0, len(other) - 1))
    return tuple(base), tuple(other[drop:])


@given(
    shapes=broadcast_pair(),
    op=st.sampled_from(["add", "sub", "mul", "div", "pow"]),
    swap=st.booleans(),
    seed=st.integers(0, 999),
)
def test_elementwise_broadcast_gradcheck(shapes, op, swap, seed):
    rng = np.random.default_rng(seed)
    sa, sb = shapes[::-1] if swap else shapes
    a = t64(rng.uniform(0.5, 2, sa))
    b = t64(rng.uniform(0.5, 2, sb))
    fns = {
        "add": lambda a, b: a + b,
        "sub": lambda a, b: a - b,
        "mul": lambda a, b: a * b,
        "div": lambda a, b: a / b,
        "pow": lambda a, b: a**b,
    }
    assert mr.gradcheck(fns[op], [a, b])


@given(
    shape=st.lists(st.integers(1, 4), min_size=1, max_size=3), keep=st.booleans(), data=st.data()
)
def test_reductions_gradcheck(shape, keep, data):
    axis = data.draw(st.one_of(st.none(), st.integers(-len(shape), len(shape) - 1)))
    rng = np.random.default_rng(len(shape))
    x = t64(jitter_away_from_ties(np.empty(shape), rng))
    for fn in (F.sum, F.mean, F.max):
        assert mr.gradcheck(lambda x, fn=fn: fn(x, axis, keep), [x])


@given(
    n=st.integers(1, 3),
    k=st.integers(1, 4),
    m=st.integers(1, 4),
    batch=st.booleans(),
    vec=st.sampled_from(["none", "left", "right", "both"]),
)
def test_matmul_gradcheck(n, k, m, batch, vec):
    """Every promotion of 1-D operands, including vector @ vector (a 0-d product)."""
    rng = np.random.default_rng(n * 100 + k * 10 + m)
    a_shape = (k,) if vec in ("left", "both") else ((2, n, k) if batch else (n, k))
    b_batch = (2,) if batch and vec == "left" else ()
    b_shape = (k,) if vec in ("right", "both") else (*b_batch, k, m)
    assert mr.gradcheck(
        lambda a, b: a @ b, [t64(rng.standard_normal(a_shape)), t64(rng.standard_normal(b_shape))]
    )


@given(n=st.integers(1, 4), i=st.integers(1, 5), o=st.integers(1, 4), bias=st.booleans())
def test_linear_gradcheck(n, i, o, bias):
    rng = np.random.default_rng(n + 7 * i + 31 * o)
    inputs = [t64(rng.standard_normal((n, i))), t64(rng.standard_normal((o, i)))]
    if bias:
        inputs.append(t64(rng.standard_normal(o)))
    assert mr.gradcheck(F.linear, inputs)


@given(n=st.integers(1, 4), k=st.integers(2, 6), seed=st.integers(0, 999))
def test_log_softmax_and_cross_entropy_gradcheck(n, k, seed):
    rng = np.random.default_rng(seed)
    x = t64(rng.standard_normal((n, k)) * 3)
    target = rng.integers(0, k, n)
    assert mr.gradcheck(lambda x: F.log_softmax(x, axis=-1), [x])
    assert mr.gradcheck(lambda x: F.log_softmax(x, axis=0), [x])
    assert mr.gradcheck(lambda x: F.cross_entropy(x, target), [x])


def test_shape_ops_gradcheck():
    rng = np.random.default_rng(0)
    x = t64(rng.standard_normal((2, 3, 4)))
    assert mr.gradcheck(lambda x: x.reshape(4, -1), [x])
    assert mr.gradcheck(lambda x: x.transpose(2, 0, 1), [x])
    assert mr.gradcheck(lambda x: x.T, [x])
    assert mr.gradcheck(lambda x: x[1, ::2, 1:], [x])
    assert mr.gradcheck(lambda x: x[:, [0, 0, 2]], [x])
    assert mr.gradcheck(lambda x: F.flatten(x), [x])
    assert mr.gradcheck(lambda x: F.pad(x, (1, 2, 0, 1)), [x])
    assert mr.gradcheck(
        lambda a, b: mr.cat([a, b], axis=1), [x, t64(rng.standard_normal((2, 1, 4)))]
    )
    assert mr.gradcheck(lambda x: (x.exp() + x.tanh() * x.sigmoid()).log(), [x])
    assert mr.gradcheck(lambda x: x.double(), [x])


# -- torch as an oracle ---------------------------------------------------------------------------


def _torch_grads(torch, fn, arrays, seed_grad):
    ts = [torch.tensor(a, requires_grad=True) for a in arrays]
    out = fn(*ts)
    out.backward(torch.tensor(seed_grad))
    return out.detach().numpy(), [t.grad.numpy() for t in ts]


def _mr_grads(fn, arrays, seed_grad):
    ts = [mr.tensor(a, requires_grad=True) for a in arrays]
    out = fn(*ts)
    out.backward(seed_grad)
    return out.data, [t.grad for t in ts]


def _compare(torch, mr_fn, torch_fn, arrays, rtol=1e-10, atol=1e-10):
    out_t = torch_fn(*[torch.tensor(a) for a in arrays]).numpy()
    g = np.random.default_rng(1).standard_normal(out_t.shape)
    o1, g1 = _mr_grads(mr_fn, arrays, g)
    o2, g2 = _torch_grads(torch, torch_fn, arrays, g)
    np.testing.assert_allclose(o1, o2, rtol=rtol, atol=atol)
    for a, b in zip(g1, g2):
        np.testing.assert_allclose(a, b, rtol=rtol, atol=atol)


@given(case=conv_case(), seed=st.integers(0, 999))
def test_conv2d_matches_torch(torch, backend, case, seed):
    rng = np.random.default_rng(seed)
    arrays = [rng.standard_normal(case["x"]), rng.standard_normal(case["w"])]
    if case["bias"]:
        arrays.append(rng.standard_normal(case["w"][0]))
    args = (case["stride"], case["padding"], case["dilation"], case["groups"])
    _compare(
        torch,
        lambda x, w, b=None: F.conv2d(x, w, b, *args),
        lambda x, w, b=None: torch.nn.functional.conv2d(x, w, b, *args),
        arrays,
    )
    # float32 forward
    x32, w32 = (a.astype(np.float32) for a in arrays[:2])
    ours = F.conv2d(mr.tensor(x32), mr.tensor(w32), None, *args).data
    ref = torch.nn.functional.conv2d(torch.tensor(x32), torch.tensor(w32), None, *args).numpy()
    assert ours.dtype == np.float32
    np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-5)


@given(training=st.booleans(), two_d=st.booleans(), seed=st.integers(0, 999))
def test_batch_norm_matches_torch_including_running_stats(torch, backend, training, two_d, seed):
    rng = np.random.default_rng(seed)
    shape = (4, 3) if two_d else (3, 3, 4, 5)
    arrays = [rng.standard_normal(shape) * 2 + 1, rng.standard_normal(3), rng.standard_normal(3)]
    rm, rv = rng.standard_normal(3), rng.uniform(0.5, 2, 3)
    _compare(
        torch,
        lambda x, w, b: F.batch_norm(x, rm.copy(), rv.copy(), w, b, training=training),
        lambda x, w, b: torch.nn.functional.batch_norm(
            x, torch.tensor(rm), torch.tensor(rv), w, b, training
        ),
        arrays,
    )
    # one forward each: the running statistics move the same way
    rm_m, rv_m, rm_t, rv_t = rm.copy(), rv.copy(), torch.tensor(rm), torch.tensor(rv)
    F.batch_norm(mr.tensor(arrays[0]), rm_m, rv_m, training=training, momentum=0.3)
    torch.nn.functional.batch_norm(torch.tensor(arrays[0]), rm_t, rv_t, None, None, training, 0.3)
    np.testing.assert_allclose(rm_m, rm_t.numpy(), rtol=1e-12)
    np.testing.assert_allclose(rv_m, rv_t.numpy(), rtol=1e-12)


@given(case=pool_case(), seed=st.integers(0, 999))
def test_pools_match_torch(torch, backend, case, seed):
    x = jitter_away_from_ties(np.empty(case["x"]), np.random.default_rng(seed))
    k, s, p = case["k"], case["s"], case["p"]
    _compare(
        torch,
        lambda x: F.max_pool2d(x, k, s, p),
        lambda x: torch.nn.functional.max_pool2d(x, k, s, p),
        [x],
    )
    _compare(
        torch,
        lambda x: F.avg_pool2d(x, k, s, p),
        lambda x: torch.nn.functional.avg_pool2d(x, k, s, p),
        [x],
    )


@pytest.mark.parametrize("size", [(7, 5), (4, 4), (3, 9)])
@pytest.mark.parametrize("out", [1, (2, 3), (3, 2)])
def test_adaptive_avg_pool_matches_torch(torch, size, out):
    x = np.random.default_rng(0).standard_normal((2, 3, *size))
    _compare(
        torch,
        lambda x: F.adaptive_avg_pool2d(x, out),
        lambda x: torch.nn.functional.adaptive_avg_pool2d(x, out),
        [x],
    )


def test_dense_ops_match_torch(torch):
    rng = np.random.default_rng(0)
    x, w, b = rng.standard_normal((4, 5)), rng.standard_normal((3, 5)), rng.standard_normal(3)
    tf = torch.nn.functional
    _compare(torch, F.linear, tf.linear, [x, w, b])
    _compare(torch, lambda a, b: a @ b, lambda a, b: a @ b, [x, w.T.copy()])
    _compare(
        torch,
        lambda a, b: a @ b,
        lambda a, b: a @ b,
        [rng.standard_normal((2, 3, 4)), rng.standard_normal((4,))],
    )
    _compare(torch, lambda x: F.log_softmax(x, axis=1), lambda x: tf.log_softmax(x, dim=1), [x])
    target = np.array([0, 4, 2, 1])
    _compare(
        torch,
        lambda x: F.cross_entropy(x, target),
        lambda x: tf.cross_entropy(x, torch.tensor(target)),
        [x],
    )
    _compare(torch, F.relu, tf.relu, [jitter_away_from_ties(x, rng)])
    _compare(
        torch,
        lambda x: F.flatten(x),
        lambda x: torch.flatten(x, 1),
        [rng.standard_normal((2, 3, 2, 2))],
    )
    y = rng.standard_normal((4, 1))
    for op in ("add", "sub", "mul", "div"):
        _compare(torch, getattr(F, op), getattr(torch, op), [x, y])
    pos = rng.uniform(0.5, 2, (4, 5))
    _compare(torch, F.pow, torch.pow, [pos, rng.standard_normal((4, 5))])
    _compare(torch, lambda x: x.sum(axis=1), lambda x: x.sum(dim=1), [x])
    _compare(torch, lambda x: x.mean(axis=0), lambda x: x.mean(dim=0), [x])
    _compare(torch, lambda x: x.max(), lambda x: x.max(), [x])
    _compare(
        torch,
        lambda x: x.exp().log().tanh().sigmoid(),
        lambda x: x.exp().log().tanh().sigmoid(),
        [x],
    )


def test_cs231n_conv_forward_case():
    """The classic course exercise with its published expected output."""
    x = np.linspace(-0.1, 0.5, num=2 * 3 * 4 * 4).reshape(2, 3, 4, 4)
    w = np.linspace(-0.2, 0.3, num=3 * 3 * 4 * 4).reshape(3, 3, 4, 4)
    b = np.linspace(-0.1, 0.2, num=3)
    correct = np.array(
        [
            [
                [[-0.08759809, -0.10987781], [-0.18387192, -0.2109216]],
                [[0.21027089, 0.21661097], [0.22847626, 0.23004637]],
                [[0.50813986, 0.54309974], [0.64082444, 0.67101435]],
            ],
            [
                [[-0.98053589, -1.03143541], [-1.19128892, -1.24695841]],
                [[0.69108355, 0.66880383], [0.59480972, 0.56776003]],
                [[2.36270298, 2.36904306], [2.38090835, 2.38247847]],
            ],
        ]
    )
    for name in BACKENDS:
        with mr.use_backend(name):
            out = F.conv2d(mr.tensor(x), mr.tensor(w), mr.tensor(b), stride=2, padding=1)
        np.testing.assert_allclose(out.data, correct, rtol=1e-7)
