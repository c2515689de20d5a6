"""NaN and inf propagate as in PyTorch, through every op and its backward, on both backends.

Oracle tests with NaN / +inf / -inf planted at random positions (half of them on the
first or last row or column of a plane, next to the padding): the Numba kernels must
give exactly the NaN / +inf / -inf pattern of the NumPy reference (and so of each
other), and both the pattern of PyTorch; finite values agree to the usual tolerance.

The conv oracle is PyTorch in float64 (on the same values). PyTorch's float32 conv
(oneDNN) is not self-consistent about the zero padding: with an inf weight it skips the
padded taps in most geometries (no 0 * inf) but not in all, while its float64 conv - like
our reference's im2col - always multiplies the padding zeros. Measured on 39 geometries
with torch 2.13: float64 and the reference agreed on all of them, float32 differed from
both rules on 6.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from kernel_checks import CONV_PATH_CASES, conv_inputs

import minires as mr
import minires.functional as F
import minires.kernels.jit as J
import minires.kernels.reference as R
from minires.kernels.jit.planner import Algorithm as A

DTYPES = [np.float32, np.float64]
SPECIALS = np.array([np.nan, np.inf, -np.inf])


def pattern(a):
    """(3, ...) bool: where a is NaN, +inf, -inf."""
    a = np.asarray(a)
    return np.stack([np.isnan(a), np.isposinf(a), np.isneginf(a)])


def assert_same_nonfinite(got, want, dtype, what=""):
    """The same NaN / +inf / -inf positions, and the finite values close."""
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape, what
    pg, pw = pattern(got), pattern(want)
    for name, a, b in zip(("NaN", "+inf", "-inf"), pg, pw):
        if not np.array_equal(a, b):
            raise AssertionError(
                f"{what}: {name} at {np.argwhere(a & ~b)[:5].tolist()} (only here) and "
                f"{np.argwhere(b & ~a)[:5].tolist()} (only in the oracle)"
            )
    fin = ~pw.any(axis=0)
    tol = 2e-5 if np.dtype(dtype) == np.float32 else 1e-10
    scale = max(1.0, float(np.abs(want[fin]).max(initial=0.0)))
    np.testing.assert_allclose(got[fin], want[fin], rtol=tol, atol=tol * scale, err_msg=what)


def plant(rng, a, k):
    """Put k values drawn from NaN, +inf, -inf into `a` in place, about half of them on
    the first/last row or column of an image plane (the pixels next to the padding)."""
    flat = a.reshape(-1)
    for _ in range(k):
        if a.ndim >= 2 and rng.random() < 0.5:
            idx = [int(rng.integers(n)) for n in a.shape]
            axis = a.ndim - 1 - int(rng.integers(2))  # a row or a column at the edge
            idx[axis] = 0 if rng.random() < 0.5 else a.shape[axis] - 1
            a[tuple(idx)] = rng.choice(SPECIALS)
        else:
            flat[rng.integers(flat.size)] = rng.choice(SPECIALS)


def torch_conv64(torch, x, w, go, args):
    """PyTorch's float64 conv forward, grad_x, grad_w on the same values."""
    s, p, d, g = args
    xt = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    wt = torch.tensor(w, dtype=torch.float64, requires_grad=True)
    out = torch.nn.functional.conv2d(xt, wt, None, s, p, d, g)
    out.backward(torch.tensor(go, dtype=torch.float64))
    return out.detach().numpy(), xt.grad.numpy(), wt.grad.numpy()


def conv_all(K, x, w, go, args):
    with np.errstate(all="ignore"):
        return (
            K.conv2d_forward(x, w, None, *args),
            K.conv2d_backward_input(go, w, x.shape, *args),
            K.conv2d_backward_weight(x, go, w.shape, *args),
        )


# ----------------------------------------------------------------------------- conv


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", sorted(CONV_PATH_CASES))
def test_conv_nonfinite_like_reference_and_torch(name, dtype, request):
    """NaN / inf in the input, the weight, grad_out, or all three: forward, input
    gradient and weight gradient of every dispatch path have the reference's NaN/inf
    pattern (padding: see INTERFACE.md), and the reference has PyTorch's (float64)."""
    case, _ = CONV_PATH_CASES[name]
    try:
        torch = request.getfixturevalue("torch")
    except pytest.skip.Exception:
        torch = None
    for seed in range(2):
        rng = np.random.default_rng(seed)
        base = conv_inputs(case, dtype, seed)
        for target in ("x", "w", "g", "xwg"):
            x, w, go, args = (a.copy() if i < 3 else a for i, a in enumerate(base))
            for which, arr in zip("xwg", (x, w, go)):
                if which in target:
                    plant(rng, arr, 2)
            ref = conv_all(R, x, w, go, args)
            jit = conv_all(J, x, w, go, args)
            oracle = torch_conv64(torch, x, w, go, args) if torch is not None else None
            for i, pas in enumerate(("forward", "grad_x", "grad_w")):
                what = f"{name} {pas} seed {seed} planted in {target}"
                assert_same_nonfinite(jit[i], ref[i], dtype, what + " (jit vs reference)")
                if oracle is not None:
                    tol_dt = np.float32 if dtype == np.float32 else np.float64
                    assert_same_nonfinite(ref[i], oracle[i], tol_dt, what + " (ref vs torch)")


@pytest.mark.parametrize("dtype", DTYPES)
def test_conv_inf_weight_times_padding(dtype, torch):
    """A +inf weight tap: outputs whose tap lies in the padding are NaN (0 * inf, as the
    reference and torch float64), the others +-inf; the input gradient never multiplies
    padding (no NaN from it): on the tap-table, depthwise and direct paths, whose fast
    kernels would do otherwise (they take the GEMM path for non-finite weights)."""
    for name in ("dense3x3", "depthwise", "dilated", "stride2", "wide"):
        case, _ = CONV_PATH_CASES[name]
        x, w, go, args = conv_inputs(case, dtype, 5)
        w[0, 0, 0, 0] = np.inf
        jit = conv_all(J, x, w, go, args)
        want = torch_conv64(torch, x, w, go, args)
        assert np.isnan(jit[0][:, 0, 0]).all()  # top output row: tap (0, 0) in the padding
        assert not np.isnan(jit[1]).any(), name  # grad_x: finite grad_out, no 0 * inf
        for got, ref in zip(jit, want):
            assert_same_nonfinite(got, ref, dtype, name)


@pytest.mark.parametrize("dtype", DTYPES)
def test_conv_nan_pixel_reaches_every_output_it_touches(dtype):
    """A NaN input pixel makes exactly the outputs whose window covers it NaN (no path
    drops it or spreads it), an inf pixel +-inf (or NaN where signs cancel)."""
    for name, (case, _) in CONV_PATH_CASES.items():
        x, w, go, args = conv_inputs(case, dtype, 6)
        x[0, 0, case["h"] // 2, 0] = np.nan  # a pixel on the left edge
        x[-1, -1, -1, case["w"] // 2] = np.inf  # one on the bottom edge
        ones = np.ones_like(x)
        ones[0, 0, case["h"] // 2, 0] = 0
        # the outputs that see the NaN pixel: those that change when it alone changes
        probe = x.copy()
        probe[~np.isfinite(probe)] = 0
        base = J.conv2d_forward(probe, np.abs(w) + 1, None, *args)
        probe[0, 0, case["h"] // 2, 0] = 1e3
        touched = J.conv2d_forward(probe, np.abs(w) + 1, None, *args) != base
        out = J.conv2d_forward(x, w, None, *args)
        assert np.array_equal(np.isnan(out) & touched, touched), name
        assert_same_nonfinite(out, conv_all(R, x, w, go, args)[0], dtype, name)


def test_conv_nonfinite_paths_are_thread_independent():
    """The GEMM fallbacks taken for non-finite weights / weight gradients give the same
    bits for 1 and 2 threads too."""
    from kernel_checks import conv_passes, serial_and_parallel

    for name in ("dense3x3", "lanes", "depthwise", "dilated"):
        case, _ = CONV_PATH_CASES[name]
        x, w, go, args = conv_inputs(case, np.float32, 7)
        x[0, 0, 0, 0] = np.inf
        w[-1, 0, -1, -1] = -np.inf
        serial, parallel = serial_and_parallel(conv_passes(x, w, go, args))
        for a, b in zip(serial, parallel):
            assert np.array_equal(a, b, equal_nan=True), name


def test_nonfinite_weights_take_the_gemm_path():
    """Non-finite weights never reach the fast kernels of the forward and the input
    gradient; a weight gradient that comes out non-finite is recomputed by the GEMM
    (the plans that ran, `kernels.jit.last_plan`)."""
    case, want = CONV_PATH_CASES["dense3x3"]
    x, w, go, args = conv_inputs(case, np.float64, 8)
    J.conv2d_forward(x, w, None, *args)
    J.conv2d_backward_input(go, w, x.shape, *args)
    J.conv2d_backward_weight(x, go, w.shape, *args)
    ran = J.last_plan()
    assert (ran["forward"], ran["backward_input"], ran["backward_weight"]) == want
    w[0, 0, 1, 1] = np.nan
    x[0, 0, 2, 2] = np.inf
    J.conv2d_forward(x, w, None, *args)
    J.conv2d_backward_input(go, w, x.shape, *args)
    J.conv2d_backward_weight(x, go, w.shape, *args)
    ran = J.last_plan()
    assert ran == {
        "forward": A.IM2COL_GEMM,
        "backward_input": A.COL2IM_GEMM,
        "backward_weight": A.IM2COL_GEMM,
    }


@settings(max_examples=60, deadline=None)
@given(
    dtype=st.sampled_from(DTYPES),
    # sizes around the 2^16-value blocks and the parallel threshold (16 blocks)
    size=st.sampled_from([0, 1, 15, 65535, 65536, 65537, 16 * 65536 + 3, 20 * 65536]),
    special=st.sampled_from([np.nan, np.inf, -np.inf, None]),
    where=st.floats(0, 1),
    data=st.data(),
)
def test_all_finite_finds_every_nan_and_inf(dtype, size, special, where, data):
    """`all_finite` (the conv entry points' test for the fast paths) agrees with
    np.isfinite(a).all() for any position of a NaN / inf, on both sides of a block and
    of the thread threshold; the largest finite values, subnormals and -0.0 are finite."""
    from minires.kernels.jit.elementwise import all_finite

    rng = np.random.default_rng(data.draw(st.integers(0, 2**16)))
    a = rng.standard_normal(size).astype(dtype)
    if size:
        info = np.finfo(dtype)
        a[rng.integers(0, size, 3)] = [info.max, -info.smallest_subnormal, -0.0]
        if special is not None:
            a[min(size - 1, int(where * size))] = special
    assert all_finite(a) == bool(np.isfinite(a).all())
    assert all_finite(a[::-1].reshape(-1, 1)) == bool(np.isfinite(a).all())  # any layout


def test_all_finite_other_dtypes():
    from minires.kernels.jit.elementwise import all_finite

    assert all_finite(np.arange(5))
    assert not all_finite(np.array([1.0, np.inf], np.float16))


# ----------------------------------------------------------------------------- pooling


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "k,s,p", [((3, 3), (2, 2), (1, 1)), ((2, 2), (2, 2), (0, 0)), ((3, 3), (1, 1), (1, 1))]
)
def test_max_pool_nan_is_the_max_and_takes_the_gradient(k, s, p, dtype, torch):
    """torch: NaN beats everything, the *last* NaN of a window wins (argmax and gradient),
    -inf windows and padding as usual; both backends."""
    rng = np.random.default_rng(0)
    x = rng.integers(-3, 3, size=(2, 3, 7, 8)).astype(dtype)  # ties
    x[0, 0, :3, :3] = np.nan  # several NaNs in one window
    x[0, 1, 2, :] = np.nan
    x[1, 0] = -np.inf
    x[1, 1, :, 0] = np.inf
    plant(rng, x, 6)
    xt = torch.tensor(x, requires_grad=True)
    out_t, idx_t = torch.nn.functional.max_pool2d(xt, k, s, p, return_indices=True)
    g = rng.standard_normal(out_t.shape).astype(dtype)
    out_t.backward(torch.tensor(g))
    for K in (J, R):
        out, arg = K.max_pool2d_forward(x, k, s, p)
        assert_same_nonfinite(out, out_t.detach().numpy(), dtype, K.__name__)
        np.testing.assert_array_equal(arg, idx_t.numpy())
        assert_same_nonfinite(K.max_pool2d_backward(g, arg, x.shape), xt.grad, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_avg_pool_nonfinite(dtype, torch):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 3, 7, 6)).astype(dtype)
    plant(rng, x, 5)
    for k, s, p in (((3, 3), (2, 2), (1, 1)), ((2, 2), (1, 1), (0, 0))):
        xt = torch.tensor(x, requires_grad=True)
        out_t = torch.nn.functional.avg_pool2d(xt, k, s, p)
        g = rng.standard_normal(out_t.shape).astype(dtype)
        plant(rng, g, 2)
        out_t.backward(torch.tensor(g))
        for K in (J, R):
            assert_same_nonfinite(K.avg_pool2d_forward(x, k, s, p), out_t.detach(), dtype)
            assert_same_nonfinite(K.avg_pool2d_backward(g, x.shape, k, s, p), xt.grad, dtype)


# ----------------------------------------------------------------------------- relu


@pytest.mark.parametrize("dtype", DTYPES)
def test_relu_nan_passes_the_gradient_like_torch(dtype, torch):
    """relu(NaN) = NaN, and its backward passes the gradient there (torch's
    threshold_backward zeroes only where the output is <= 0); both backends."""
    x = np.array([np.nan, -1.0, 2.0, np.inf, -np.inf, 0.0, -0.0], dtype)
    g = np.array([3.0, 3.0, np.nan, np.inf, np.inf, np.nan, 1.0], dtype)
    xt = torch.tensor(x, requires_grad=True)
    torch.relu(xt).backward(torch.tensor(g))
    for K in (J, R):
        out = K.relu_forward(x)
        assert_same_nonfinite(out, torch.relu(torch.tensor(x)), dtype)
        np.testing.assert_array_equal(K.relu_backward(g, out), xt.grad.numpy())
    assert J.relu_backward(g, J.relu_forward(x))[0] == 3.0  # the NaN input's gradient


# ----------------------------------------------------------------------------- batch norm


def torch_bn(torch, x, w, b, g, training, rm=None, rv=None, eps=1e-5, dtype=None):
    dt = dtype or torch.float64
    xt = torch.tensor(x, dtype=dt, requires_grad=True)
    wt = torch.tensor(w, dtype=dt, requires_grad=True)
    bt = torch.tensor(b, dtype=dt, requires_grad=True)
    rmt = None if rm is None else torch.tensor(rm, dtype=dt)
    rvt = None if rv is None else torch.tensor(rv, dtype=dt)
    out = torch.nn.functional.batch_norm(xt, rmt, rvt, wt, bt, training, 0.1, eps)
    out.backward(torch.tensor(g, dtype=dt))
    return [a.detach().numpy() for a in (out, xt.grad, wt.grad, bt.grad)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(3, 4, 5, 6), (6, 4)])
def test_batch_norm_nonfinite_like_torch(shape, dtype, torch):
    """NaN / inf in x or grad_out: training and eval, forward and backward, both backends
    (a channel with a non-finite value is NaN / inf throughout, the others untouched)."""
    for seed in range(6):
        rng = np.random.default_rng(seed)
        x = rng.standard_normal(shape).astype(dtype)
        g = rng.standard_normal(shape).astype(dtype)
        w, b = rng.standard_normal((2, shape[1])).astype(dtype)
        plant(rng, x if seed % 2 == 0 else g, 2)
        want = torch_bn(torch, x, w, b, g, True)
        for K in (J, R):
            with np.errstate(all="ignore"):
                out, mean, var = K.batch_norm_train_forward(x, w, b, 1e-5)
                grads = K.batch_norm_train_backward(g, x, mean, var, w, 1e-5)
            for got, ref in zip((out, *grads), want):
                assert_same_nonfinite(got, ref, dtype, f"train {K.__name__} seed {seed}")
        rm = rng.standard_normal(shape[1]).astype(dtype)
        rv = rng.random(shape[1]).astype(dtype) + 0.5
        want = torch_bn(torch, x, w, b, g, False, rm, rv)
        for K in (J, R):
            with np.errstate(all="ignore"):
                out = K.batch_norm_eval_forward(x, rm, rv, w, b, 1e-5)
                grads = K.batch_norm_eval_backward(g, x, rm, rv, w, 1e-5)
            for got, ref in zip((out, *grads), want):
                assert_same_nonfinite(got, ref, dtype, f"eval {K.__name__} seed {seed}")


@pytest.mark.parametrize("scale", [1e20, 1e30])
def test_batch_norm_huge_float32_values(scale, torch):
    """|x| ~ 1e20 and 1e30 in float32: the statistics must not overflow (a float32
    variance is inf above ~1.8e19, which made every gradient 0). Oracle: torch in float64
    on the same values (torch's own float32 batch norm overflows there)."""
    rng = np.random.default_rng(2)
    x = (rng.standard_normal((4, 3, 5, 5)) * scale).astype(np.float32)
    x[:, 1] += np.float32(3 * scale)  # a channel whose mean is far from 0
    g = rng.standard_normal(x.shape).astype(np.float32)
    w, b = rng.standard_normal((2, 3)).astype(np.float32)
    want = torch_bn(torch, x, w, b, g, True)
    for backend in ("numba", "numpy"):
        with mr.use_backend(backend):
            xt, wt, bt = (mr.tensor(a, requires_grad=True) for a in (x, w, b))
            rm, rv = np.zeros(3, np.float32), np.ones(3, np.float32)
            out = F.batch_norm(xt, rm, rv, wt, bt, training=True)
            out.backward(g)
        got = [out.data, xt.grad, wt.grad, bt.grad]
        for name, a, ref in zip(("out", "grad_x", "grad_w", "grad_b"), got, want):
            assert a.dtype == np.float32
            assert np.isfinite(a).all(), (backend, name)
            np.testing.assert_allclose(a, ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())
        assert np.abs(xt.grad).max() > 0  # the gradient did not vanish
        np.testing.assert_allclose(rm, 0.1 * x.mean(axis=(0, 2, 3), dtype=np.float64), rtol=1e-5)


@pytest.mark.parametrize("dtype", DTYPES)
def test_batch_norm_eps0_constant_channel(dtype, torch):
    """eps=0 on a constant channel: 0 * (1 / 0) is NaN as in the reference, not a
    ZeroDivisionError from the Numba kernels (they use NumPy's division rules now).
    Training at the kernel level (torch refuses eps=0 in training; the kernels must still
    not raise), eval with running_var = 0 through the op on both backends (NaN/inf)."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((4, 3, 5, 5)).astype(dtype)
    x[:, 1] = 2.5
    w, b = rng.standard_normal((2, 3)).astype(dtype)
    g = rng.standard_normal(x.shape).astype(dtype)
    got = {}
    for K in (J, R):
        with np.errstate(all="ignore"):
            out, mean, var = K.batch_norm_train_forward(x, w, b, 0.0)
            grads = K.batch_norm_train_backward(g, x, mean, var, w, 0.0)
        assert np.isnan(out[:, 1]).all() and np.isfinite(out[:, [0, 2]]).all()
        assert np.isnan(grads[0][:, 1]).all() and np.isnan(grads[1][1])
        got[K] = (out, *grads)
    for a, r in zip(got[J], got[R]):
        assert_same_nonfinite(a, r, dtype, "eps=0 train, jit vs reference")
    rm, rv = np.zeros(3, dtype), np.zeros(3, dtype)
    rv[0] = 1.0
    for backend in ("numba", "numpy"):
        with mr.use_backend(backend), np.errstate(all="ignore"):
            xt, wt, bt = (mr.tensor(a, requires_grad=True) for a in (x, w, b))
            out = F.batch_norm(xt, rm, rv, wt, bt, eps=0.0)
            out.backward(g)
        mine = [out.data, xt.grad, wt.grad, bt.grad]
        # torch's eval forward is x * (w * invstd) + (b - mean * w * invstd): 0 * inf there
        # gives NaN where (x - mean) * (w * invstd) + b gives +-inf, so only the
        # backward, whose formula is the same, is compared with torch
        want = torch_bn(torch, x, w, b, g, False, rm, rv, eps=0.0)
        assert np.isinf(out.data[:, 1:]).all() and np.isfinite(out.data[:, 0]).all()
        for name, a, ref in zip(("grad_x", "grad_w", "grad_b"), mine[1:], want[1:]):
            assert_same_nonfinite(a, ref, dtype, f"eps=0 eval {backend} {name}")


def test_jit_kernels_use_ieee_division():
    """Every Numba kernel is compiled with NumPy's error model: float division by zero
    gives inf/NaN, never ZeroDivisionError (Numba's default, which also checks every
    division)."""
    import importlib

    from numba.core.registry import CPUDispatcher

    found = 0
    import pkgutil

    import minires.kernels.jit as jit_pkg

    for sub in sorted(m.name for m in pkgutil.iter_modules(jit_pkg.__path__)):
        mod = importlib.import_module(f"minires.kernels.jit.{sub}")
        for name, obj in vars(mod).items():
            if isinstance(obj, CPUDispatcher) and obj.__module__ == mod.__name__:
                assert obj.targetoptions.get("error_model") == "numpy", f"{sub}.{name}"
                found += 1
    assert found > 40


# ----------------------------------------------------------------------------- the ops


def _run(fn, arrays, g, requires_grad=True):
    ts = [mr.tensor(a, requires_grad=requires_grad) for a in arrays]
    out = fn(*ts)
    out.backward(g)
    return [out.data] + [t.grad for t in ts]


def _run_torch(torch, fn, arrays, g):
    ts = [torch.tensor(a, requires_grad=True) for a in arrays]
    out = fn(*ts)
    out.backward(torch.tensor(g))
    return [out.detach().numpy()] + [t.grad.numpy() for t in ts]


_TARGET = np.array([0, 2, 1, 4])

OPS = {  # name: (minires fn, torch fn (given the module), input shapes)
    "linear": (F.linear, lambda t: t.nn.functional.linear, [(4, 5), (3, 5), (3,)]),
    "cross_entropy": (
        lambda x: F.cross_entropy(x, _TARGET),
        lambda t: lambda x: t.nn.functional.cross_entropy(x, t.tensor(_TARGET)),
        [(4, 6)],
    ),
    "log_softmax": (
        lambda x: F.log_softmax(x, 1), lambda t: lambda x: t.log_softmax(x, 1), [(4, 6)]
    ),
    "add": (F.add, lambda t: t.add, [(3, 4), (3, 4)]),
    "sub": (F.sub, lambda t: t.sub, [(3, 4), (4,)]),
    "mul": (F.mul, lambda t: t.mul, [(3, 4), (3, 4)]),
    "div": (F.div, lambda t: t.div, [(3, 4), (3, 4)]),
    "relu": (F.relu, lambda t: t.relu, [(3, 4)]),
    "max": (F.max, lambda t: lambda x: x.max(), [(3, 4)]),
    "mean": (lambda x: F.mean(x, 1), lambda t: lambda x: x.mean(1), [(3, 4)]),
    "avg_pool": (
        lambda x: F.avg_pool2d(x, 2, 2),
        lambda t: lambda x: t.nn.functional.avg_pool2d(x, 2, 2),
        [(2, 2, 4, 4)],
    ),
    "max_pool": (
        lambda x: F.max_pool2d(x, 3, 2, 1),
        lambda t: lambda x: t.nn.functional.max_pool2d(x, 3, 2, 1),
        [(2, 2, 5, 5)],
    ),
    "conv": (
        lambda x, w: F.conv2d(x, w, padding=1),
        lambda t: lambda x, w: t.nn.functional.conv2d(x, w, padding=1),
        [(2, 3, 5, 5), (4, 3, 3, 3)],
    ),
}  # fmt: skip


@pytest.mark.parametrize("backend", ["numba", "numpy"])
@pytest.mark.parametrize("name", sorted(OPS))
def test_ops_nonfinite_like_torch(name, backend, torch):
    """Forward and every input gradient with NaN/inf planted in an input or the upstream
    gradient: the NaN / +inf / -inf pattern of torch (float64 throughout: torch's float32
    conv is not an oracle for padding, see the module doc)."""
    fn, tfn, shapes = OPS[name]
    for seed in range(12):
        rng = np.random.default_rng(seed)
        arrays = [rng.standard_normal(s) for s in shapes]
        plant(rng, arrays[seed % len(arrays)], 2)
        with torch.no_grad():
            out_shape = tuple(tfn(torch)(*[torch.tensor(a) for a in arrays]).shape)
        g = rng.standard_normal(out_shape)
        if seed % 3 == 0:
            plant(rng, g, 1)
        with mr.use_backend(backend), np.errstate(all="ignore"):
            got = _run(fn, arrays, g)
        want = _run_torch(torch, tfn(torch), arrays, g)
        for i, (a, b) in enumerate(zip(got, want)):
            assert_same_nonfinite(a, b, np.float64, f"{name} seed {seed} output/grad {i}")


@pytest.mark.parametrize("backend", ["numba", "numpy"])
def test_small_net_with_a_nan_pixel_like_torch(backend, torch):
    """conv -> batch norm -> relu -> max pool -> linear -> cross entropy with a NaN and an
    inf pixel in one image: every gradient has torch's NaN/inf pattern (float64)."""
    rng = np.random.default_rng(4)
    x = rng.standard_normal((3, 2, 6, 6))
    x[1, 0, 0, 5] = np.nan
    x[2, 1, 3, 0] = np.inf
    w = rng.standard_normal((4, 2, 3, 3))
    lw = rng.standard_normal((5, 4 * 3 * 3))
    target = np.array([1, 0, 4])

    def net(F_, x, w, lw, bn_w, bn_b, flatten, ce):
        h = F_.conv2d(x, w, padding=1)
        h = F_.batch_norm(h, None, None, bn_w, bn_b, training=True)
        h = F_.max_pool2d(F_.relu(h), 3, 2, 1)
        return ce(F_.linear(flatten(h), lw))

    params = [x, w, lw, np.ones(4), np.zeros(4)]
    with mr.use_backend(backend), np.errstate(all="ignore"):
        ts = [mr.tensor(a, requires_grad=True) for a in params]
        loss = net(F, *ts, lambda h: F.flatten(h, 1), lambda z: F.cross_entropy(z, target))
        loss.backward()
    tt = [torch.tensor(a, requires_grad=True) for a in params]
    tF = torch.nn.functional
    tloss = net(
        tF, *tt, lambda h: h.flatten(1), lambda z: tF.cross_entropy(z, torch.tensor(target))
    )
    tloss.backward()
    assert_same_nonfinite(loss.data, tloss.detach().numpy(), np.float64, "loss")
    for a, b in zip(ts, tt):
        assert_same_nonfinite(a.grad, b.grad.numpy(), np.float64, "grad")
