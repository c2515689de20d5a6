"""The performance paths added for whole-model training speed (issue 4, model level):
the vectorised elementwise kernels, the branch-free max pool, GetItem's basic-index
backward, Linear's single-thread BLAS for small products and the step profiler. Each
against a plain reference, at 1 and 2 threads where threads matter (the thread team
itself: test_threads.py)."""

from __future__ import annotations

import numba
import numpy as np
import pytest

import minires as mr
import minires.functional as F
import minires.kernels.jit as J
import minires.kernels.reference as R
from minires.functional import _util
from minires.kernels.jit import elementwise as jew

DTYPES = [np.float32, np.float64]


@pytest.fixture(params=[1, 2], ids=["1thread", "2threads"])
def threads(request):
    old = numba.get_num_threads()
    numba.set_num_threads(min(request.param, numba.config.NUMBA_NUM_THREADS))
    yield numba.get_num_threads()
    numba.set_num_threads(old)


# --------------------------------------------------------------------------- elementwise


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("size", [1, 17, jew._BLOCK, 3 * jew._BLOCK + 17])
def test_relu_kernels_ragged_blocks(threads, dtype, size):
    rng = np.random.default_rng(size)
    x = rng.standard_normal(size).astype(dtype)
    y = rng.standard_normal(size).astype(dtype)
    x[::7] = 0
    x[::11] = -0.0
    x[3::13] = np.nan
    y[5::17] = np.inf
    np.testing.assert_array_equal(J.relu_forward(x), R.relu_forward(x))
    out = R.relu_forward(y)
    np.testing.assert_array_equal(J.relu_backward(x, out), R.relu_backward(x, out))
    np.testing.assert_array_equal(J.add_relu_forward(x, y), R.relu_forward(x + y))
    assert J.relu_forward(x).dtype == dtype
    assert J.relu_backward(x, out).dtype == dtype


def test_relu_noncontiguous_4d(threads):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 6, 9, 7)).astype(np.float32).transpose(0, 2, 1, 3)
    np.testing.assert_array_equal(J.relu_forward(x), R.relu_forward(x))
    g = rng.standard_normal(x.shape).astype(np.float32)
    out = R.relu_forward(x)
    np.testing.assert_array_equal(J.relu_backward(g, out), R.relu_backward(g, out))


# --------------------------------------------------------------------------- max pool


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "k,s,p,hw",
    [((3, 3), (2, 2), (1, 1), (13, 12)), ((2, 2), (2, 2), (0, 0), (8, 9)),
     ((3, 3), (1, 1), (1, 1), (5, 6)), ((3, 2), (2, 1), (1, 1), (7, 4)),
     ((1, 1), (1, 1), (0, 0), (3, 3))],
)  # fmt: skip
def test_max_pool_ties_nan_padding(threads, dtype, k, s, p, hw):
    rng = np.random.default_rng(1)
    # small integers: many ties, so first-maximum-wins is exercised
    x = rng.integers(-3, 3, size=(2, 3, *hw)).astype(dtype)
    x[0, 0, 1, 1] = np.nan
    x[1, 2, 0, :] = np.nan
    x[0, 1] = -np.inf
    out, arg = J.max_pool2d_forward(x, k, s, p)
    rout, rarg = R.max_pool2d_forward(x, k, s, p)
    np.testing.assert_array_equal(out, rout)
    np.testing.assert_array_equal(arg, rarg)
    g = rng.standard_normal(out.shape).astype(dtype)
    np.testing.assert_array_equal(
        J.max_pool2d_backward(g, arg, x.shape), R.max_pool2d_backward(g, rarg, x.shape)
    )


# --------------------------------------------------------------------------- GetItem backward


@pytest.mark.parametrize(
    "index",
    [
        (slice(None), slice(None), slice(None, None, 2), slice(None, None, 2)),
        (0,),
        (Ellipsis, 1),
        (slice(1, 3), None, np.int64(2)),
        (slice(None, None, -1),),
    ],
    ids=["optionA", "int", "ellipsis", "none-npint", "reversed"],
)
def test_getitem_basic_index_grad(index):
    x = mr.tensor(np.random.default_rng(0).standard_normal((4, 3, 6, 5)), requires_grad=True)
    y = x[index]
    g = np.random.default_rng(1).standard_normal(y.shape)
    y.backward(g)
    want = np.zeros(x.shape)
    np.add.at(want, index, g)
    np.testing.assert_array_equal(x.grad, want)


def test_getitem_advanced_index_still_accumulates():
    x = mr.tensor(np.arange(5.0), requires_grad=True)
    y = x[np.array([0, 0, 3])]
    y.backward(np.array([1.0, 2.0, 4.0]))
    np.testing.assert_array_equal(x.grad, [3.0, 0, 0, 4.0, 0])
    x2 = mr.tensor(np.arange(6.0).reshape(2, 3), requires_grad=True)
    x2[np.array([True, False])].backward(np.ones((1, 3)))
    np.testing.assert_array_equal(x2.grad, [[1, 1, 1], [0, 0, 0]])


def test_is_basic_index():
    from minires.functional.shape import _is_basic_index

    assert _is_basic_index((slice(None), 0, None, Ellipsis))
    assert _is_basic_index(3)
    assert not _is_basic_index(np.array([0, 1]))
    assert not _is_basic_index((slice(None), [0, 0]))
    assert not _is_basic_index(True)


# --------------------------------------------------------------------------- Linear BLAS


def test_one_thread_gemm_context(monkeypatch):
    import contextlib

    with _util.one_thread_gemm():
        pass
    import minires.kernels.blas

    # threadpoolctl missing: a no-op
    monkeypatch.setattr(minires.kernels.blas, "_controller", False)
    assert isinstance(_util.one_thread_gemm(), contextlib.nullcontext)


@pytest.mark.parametrize("op", ["linear", "matmul"])
def test_matrix_products_do_not_depend_on_the_blas_thread_count(op):
    """OpenBLAS splits a threaded GEMM by thread count: the last bits of a product this size
    differed between 1 and 2 threads. The ops pin BLAS to one thread, whatever the caller
    set."""
    threadpoolctl = pytest.importorskip("threadpoolctl")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((256, 2048)).astype(np.float32)
    w = rng.standard_normal((1000, 2048)).astype(np.float32)
    g = rng.standard_normal((256, 1000)).astype(np.float32)

    def run(threads):
        with threadpoolctl.threadpool_limits(threads, user_api="blas"):
            xt, wt = mr.tensor(x, requires_grad=True), mr.tensor(w, requires_grad=True)
            out = F.linear(xt, wt) if op == "linear" else xt @ wt.T
            out.backward(g)
            return out.data, xt.grad, wt.grad

    for one, two in zip(run(1), run(2)):
        np.testing.assert_array_equal(one, two)


@pytest.mark.parametrize("shape", [(2, 2048, 1000), (64, 64, 10), (3, 5, 4)])
def test_linear_matches_matmul(shape):
    n, k, m = shape
    rng = np.random.default_rng(0)
    x = mr.tensor(rng.standard_normal((n, k)), requires_grad=True)
    w = mr.tensor(rng.standard_normal((m, k)), requires_grad=True)
    b = mr.tensor(rng.standard_normal(m), requires_grad=True)
    out = F.linear(x, w, b)
    _assert_sums_close(out.data, x.data @ w.data.T + b.data, abs(x.data) @ abs(w.data.T), k)
    g = rng.standard_normal(out.shape)
    out.backward(g)
    _assert_sums_close(x.grad, g @ w.data, abs(g) @ abs(w.data), m)
    _assert_sums_close(w.grad, g.T @ x.data, abs(g.T) @ abs(x.data), n)
    _assert_sums_close(b.grad, g.sum(0), abs(g).sum(0), n)


def _assert_sums_close(got, want, abs_terms, count):
    """got and want are the same sums of `count` float64 products in different orders:
    each within the rounding bound count * eps * (sum of |products|) of the other (a
    small sum of large terms cancels, so a relative tolerance on the sum says nothing)."""
    bound = 2 * count * np.finfo(np.float64).eps * (abs_terms + 1)
    assert got.shape == want.shape and got.dtype == want.dtype
    assert np.all(np.abs(got - want) <= bound), np.max(np.abs(got - want) / bound)


# --------------------------------------------------------------------------- profiler


def test_step_profiler_smoke():
    """`python -m minires.benchmarks.profile` on a tiny step: every category is reported, the
    shares add up, and the classes are restored afterwards."""
    from minires.autograd import Function
    from minires.benchmarks import profile as bp

    def methods():
        return {
            c: (vars(c).get("forward"), vars(c).get("backward")) for c in _all_subclasses(Function)
        }

    before = methods()
    rep = bp.profile("resnet20", batch=2, steps=1, warmup=1, plain_steps=1)
    assert F.Conv2d in before and methods() == before  # every op class restored
    names = {r["name"] for r in rep["rows"]}
    for want in ("conv fwd", "conv bwd-input", "conv bwd-weight", "batchnorm fwd", "relu bwd"):
        assert want in names
    assert abs(sum(r["share"] for r in rep["rows"]) - 1) < 1e-6
    s = rep["shares"]
    assert 0 < s["conv"] < 1 and 0 < s["non_conv_ops"] < 1
    assert rep["conv_layers"]["2x16x32x32 -> 16, 3x3, s1"]["layers"] == 6
    assert "non-conv ops" in bp.format_table(rep, layers=True)


@pytest.mark.parametrize("backend", ["numba", "numpy"])
def test_step_profiler_splits_the_backward_call(backend):
    """The op's one backward call (`conv2d_backward`): a strided conv's time lands in
    bwd-input and bwd-weight (timed inside it), a depthwise 3x3's in its one-sweep row
    on the Numba backend; nothing is counted twice."""
    from minires.benchmarks import profile as bp

    rng = np.random.default_rng(0)
    x = mr.tensor(rng.standard_normal((2, 4, 9, 9)).astype(np.float32), requires_grad=True)
    dense = mr.tensor(rng.standard_normal((4, 4, 3, 3)).astype(np.float32), requires_grad=True)
    depthwise = mr.tensor(rng.standard_normal((4, 1, 3, 3)).astype(np.float32), requires_grad=True)
    prof = bp.StepProfiler()
    old = mr.get_backend()
    mr.set_backend(backend)
    prof.install()
    try:
        for w, groups, stride in ((dense, 1, 2), (depthwise, 4, 1)):
            prof.reset()
            prof.active = True
            F.conv2d(x, w, stride=stride, padding=1, groups=groups).sum().backward()
            prof.active = False
            calls = {pas: n for (cat, pas), n in prof.calls.items() if cat == "conv kernel"}
            swept = groups == 4 and backend == "numba"
            want = {"fwd": 1, **({"bwd-both": 1} if swept else {"bwd-input": 1, "bwd-weight": 1})}
            assert calls == want, (backend, groups, calls)
    finally:
        prof.active = False
        prof.uninstall()
        mr.set_backend(old)
    assert not bp.StepProfiler().calls


def _all_subclasses(cls):
    out = set()
    for sub in cls.__subclasses__():
        out |= {sub} | _all_subclasses(sub)
    return out
