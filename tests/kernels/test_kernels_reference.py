"""Oracle tests for the NumPy reference kernels (`kernels.reference`).

Every forward output and every gradient is compared with PyTorch (autograd for the
gradients) in float64 over hypothesis-generated shapes: odd sizes, batch 1, strides,
padding, dilation, non-square kernels/inputs and every kind of grouping.
"""

from __future__ import annotations

import pathlib
import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minires.kernels import reference as K

torch = pytest.importorskip("torch", reason="PyTorch not installed: oracle tests skipped")
TF = torch.nn.functional

ATOL = 1e-10
RTOL = 1e-10
EXAMPLES = settings(max_examples=25, deadline=None)


def t(a: np.ndarray, grad: bool = False):
    """ndarray -> torch tensor (copy), optionally a leaf that records gradients."""
    return torch.tensor(np.array(a), requires_grad=grad)


def close(actual: np.ndarray, expected, rtol: float = RTOL, atol: float = ATOL) -> None:
    if isinstance(expected, torch.Tensor):
        expected = expected.detach().numpy()
    assert actual.shape == expected.shape
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol)


def pair(draw, lo: int, hi: int) -> tuple[int, int]:
    return (draw(st.integers(lo, hi)), draw(st.integers(lo, hi)))


def input_extent(draw, kernel: int, pad: int, dil: int) -> int:
    """An input size for which the (dilated) kernel fits the padded input at least once."""
    span = dil * (kernel - 1) + 1
    return draw(st.integers(max(1, span - 2 * pad), span - 2 * pad + 6))


# ----------------------------------------------------------------------------- conv


@st.composite
def conv_cases(draw):
    kind = draw(st.sampled_from(["dense", "groups2", "depthwise", "depthwise_mult"]))
    if kind == "dense":
        c_in, groups, c_out = draw(st.integers(1, 4)), 1, draw(st.integers(1, 4))
    elif kind == "groups2":
        c_in, groups, c_out = 2 * draw(st.integers(1, 3)), 2, 2 * draw(st.integers(1, 3))
    elif kind == "depthwise":
        c_in = draw(st.integers(1, 5))
        groups, c_out = c_in, c_in
    else:  # depthwise with a channel multiplier: C_out = k * C_in
        c_in = draw(st.integers(1, 4))
        groups, c_out = c_in, c_in * draw(st.integers(2, 3))
    kernel = pair(draw, 1, 4)
    stride, padding, dilation = pair(draw, 1, 3), pair(draw, 0, 2), pair(draw, 1, 2)
    h = input_extent(draw, kernel[0], padding[0], dilation[0])
    w = input_extent(draw, kernel[1], padding[1], dilation[1])
    n = draw(st.integers(1, 3))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    x = rng.standard_normal((n, c_in, h, w))
    weight = rng.standard_normal((c_out, c_in // groups) + kernel)
    bias = rng.standard_normal(c_out) if draw(st.booleans()) else None
    if draw(st.booleans()):  # a non-contiguous view with the same values
        x = np.asfortranarray(x)[:, :, ::-1, :][:, :, ::-1, :]
    return dict(
        x=x,
        weight=weight,
        bias=bias,
        stride=stride,
        padding=padding,
        dilation=dilation,
        groups=groups,
        rng=rng,
    )


@EXAMPLES
@given(conv_cases())
def test_conv2d_matches_torch(case):
    x, weight, bias = case["x"], case["weight"], case["bias"]
    geom = dict(
        stride=case["stride"],
        padding=case["padding"],
        dilation=case["dilation"],
        groups=case["groups"],
    )
    xt, wt = t(x, True), t(weight, True)
    bt = None if bias is None else t(bias, True)
    ref = TF.conv2d(xt, wt, bt, **geom)

    out = K.conv2d_forward(x, weight, bias, **geom)
    close(out, ref)

    grad_out = case["rng"].standard_normal(ref.shape)
    ref.backward(t(grad_out))
    close(K.conv2d_backward_input(grad_out, weight, x.shape, **geom), xt.grad)
    close(K.conv2d_backward_weight(x, grad_out, weight.shape, **geom), wt.grad)
    if bias is not None:  # the op computes it this way; check the convention holds
        close(grad_out.sum((0, 2, 3)), bt.grad)


# The CS231n conv case (published expected output): tests/test_ops.py, on both backends.


# ------------------------------------------------------------------------ batchnorm


@st.composite
def bn_cases(draw):
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    c = draw(st.integers(1, 5))
    if draw(st.booleans()):
        n = draw(st.integers(1, 3))
        h, w = draw(st.integers(1, 5)), draw(st.integers(1, 5))
        if n * h * w < 2:  # training needs at least two values per channel
            h = 2
        shape = (n, c, h, w)
    else:
        shape = (draw(st.integers(2, 6)), c)
    # offset and scale the data so normalisation has something to do
    x = rng.standard_normal(shape) * 3.0 + rng.standard_normal((1, c) + (1,) * (len(shape) - 2))
    return dict(
        x=x,
        grad_out=rng.standard_normal(shape),
        weight=rng.standard_normal(c),
        bias=rng.standard_normal(c),
        running_mean=rng.standard_normal(c),
        running_var=rng.uniform(0.5, 2.0, c),
        eps=draw(st.sampled_from([1e-5, 1e-3, 0.1])),
    )


@EXAMPLES
@given(bn_cases())
def test_batch_norm_train_matches_torch(case):
    x, weight, bias, eps = case["x"], case["weight"], case["bias"], case["eps"]
    xt, wt, bt = t(x, True), t(weight, True), t(bias, True)
    ref = TF.batch_norm(xt, None, None, wt, bt, training=True, eps=eps)

    out, mean, var = K.batch_norm_train_forward(x, weight, bias, eps)
    close(out, ref)
    axes = (0,) + tuple(range(2, x.ndim))
    close(mean, t(x).mean(axes))
    close(var, t(x).var(axes, unbiased=False))

    ref.backward(t(case["grad_out"]))
    gx, gw, gb = K.batch_norm_train_backward(case["grad_out"], x, mean, var, weight, eps)
    close(gx, xt.grad, atol=1e-9)
    close(gw, wt.grad)
    close(gb, bt.grad)


@EXAMPLES
@given(bn_cases())
def test_batch_norm_eval_matches_torch(case):
    x, weight, bias, eps = case["x"], case["weight"], case["bias"], case["eps"]
    rm, rv = case["running_mean"], case["running_var"]
    xt, wt, bt = t(x, True), t(weight, True), t(bias, True)
    ref = TF.batch_norm(xt, t(rm), t(rv), wt, bt, training=False, eps=eps)

    close(K.batch_norm_eval_forward(x, rm, rv, weight, bias, eps), ref)

    ref.backward(t(case["grad_out"]))
    gx, gw, gb = K.batch_norm_eval_backward(case["grad_out"], x, rm, rv, weight, eps)
    close(gx, xt.grad)
    close(gw, wt.grad)
    close(gb, bt.grad)


# -------------------------------------------------------------------------- pooling


@st.composite
def pool_cases(draw):
    kernel = pair(draw, 1, 4)
    # torch requires padding <= kernel // 2
    padding = (draw(st.integers(0, kernel[0] // 2)), draw(st.integers(0, kernel[1] // 2)))
    stride = pair(draw, 1, 3)
    h = input_extent(draw, kernel[0], padding[0], 1)
    w = input_extent(draw, kernel[1], padding[1], 1)
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    shape = (draw(st.integers(1, 3)), draw(st.integers(1, 3)), h, w)
    x = rng.standard_normal(shape)
    if draw(st.booleans()):  # a non-contiguous view with the same values
        x = np.asfortranarray(x)[:, :, :, ::-1][:, :, :, ::-1]
    return dict(x=x, kernel_size=kernel, stride=stride, padding=padding, rng=rng)


@EXAMPLES
@given(pool_cases())
def test_max_pool2d_matches_torch(case):
    x = case["x"]
    geom = dict(kernel_size=case["kernel_size"], stride=case["stride"], padding=case["padding"])
    xt = t(x, True)
    ref, ref_idx = TF.max_pool2d(xt, return_indices=True, **geom)

    out, argmax = K.max_pool2d_forward(x, **geom)
    close(out, ref)
    assert argmax.dtype == np.int64
    np.testing.assert_array_equal(argmax, ref_idx.numpy())

    grad_out = case["rng"].standard_normal(ref.shape)
    ref.backward(t(grad_out))
    close(K.max_pool2d_backward(grad_out, argmax, x.shape), xt.grad)


@EXAMPLES
@given(pool_cases())
def test_avg_pool2d_matches_torch(case):
    x = case["x"]
    geom = dict(kernel_size=case["kernel_size"], stride=case["stride"], padding=case["padding"])
    xt = t(x, True)
    ref = TF.avg_pool2d(xt, count_include_pad=True, ceil_mode=False, **geom)

    close(K.avg_pool2d_forward(x, **geom), ref)

    grad_out = case["rng"].standard_normal(ref.shape)
    ref.backward(t(grad_out))
    close(K.avg_pool2d_backward(grad_out, x.shape, **geom), xt.grad)


@pytest.mark.parametrize("fill", [0.0, -np.inf])
def test_max_pool2d_ties_first_maximum_wins(fill):
    # A constant input: every window is one big tie, and with -inf even the padding ties.
    x = np.full((1, 2, 5, 6), fill)
    geom = dict(kernel_size=(3, 2), stride=(2, 1), padding=(1, 1))
    ref, ref_idx = TF.max_pool2d(t(x), return_indices=True, **geom)
    out, argmax = K.max_pool2d_forward(x, **geom)
    np.testing.assert_array_equal(out, ref.numpy())
    np.testing.assert_array_equal(argmax, ref_idx.numpy())


def test_max_pool2d_backward_accumulates_overlaps():
    # stride 1 < kernel 3: the global maximum wins every window that contains it
    x = np.zeros((1, 1, 4, 4))
    x[0, 0, 1, 2] = 5.0
    out, argmax = K.max_pool2d_forward(x, (3, 3), (1, 1), (0, 0))
    grad_x = K.max_pool2d_backward(np.ones_like(out), argmax, x.shape)
    assert grad_x[0, 0, 1, 2] == 4.0 and grad_x.sum() == 4.0


# ---------------------------------------------------------------------- elementwise


def test_relu_matches_torch():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 4, 5, 6))
    x[0, 0, 0, :3] = 0.0  # the kink: torch's gradient there is 0
    grad_out = rng.standard_normal(x.shape)
    xt = t(x, True)
    ref = TF.relu(xt)
    ref.backward(t(grad_out))

    out = K.relu_forward(x)
    close(out, ref)
    close(K.relu_backward(grad_out, out), xt.grad)


# ------------------------------------------------------------------ dtypes, layouts


def _run_all(x, dtype):
    """Call every kernel on `x` (N, C, H, W) in `dtype`; return {name: output}."""
    rng = np.random.default_rng(1)
    n, c, h, w = x.shape
    as_dtype = lambda *shape: rng.standard_normal(shape).astype(dtype)  # noqa: E731
    weight = as_dtype(4, c // 2, 3, 2)
    geom = dict(stride=(2, 1), padding=(1, 2), dilation=(2, 1), groups=2)
    res = {}
    res["conv"] = K.conv2d_forward(x, weight, as_dtype(4), **geom)
    go = as_dtype(*res["conv"].shape)
    res["conv_bi"] = K.conv2d_backward_input(go, weight, x.shape, **geom)
    res["conv_bw"] = K.conv2d_backward_weight(x, go, weight.shape, **geom)

    bw, bb = as_dtype(c), as_dtype(c)
    out, mean, var = K.batch_norm_train_forward(x, bw, bb, 1e-5)
    res.update(bn=out, bn_mean=mean, bn_var=var)
    gx, gw, gb = K.batch_norm_train_backward(as_dtype(*x.shape), x, mean, var, bw, 1e-5)
    res.update(bn_gx=gx, bn_gw=gw, bn_gb=gb)
    rv = np.abs(as_dtype(c)) + 0.5
    res["bn_eval"] = K.batch_norm_eval_forward(x, mean, rv, bw, bb, 1e-5)
    gx, gw, gb = K.batch_norm_eval_backward(as_dtype(*x.shape), x, mean, rv, bw, 1e-5)
    res.update(bne_gx=gx, bne_gw=gw, bne_gb=gb)

    pgeom = dict(kernel_size=(3, 2), stride=(2, 2), padding=(1, 1))
    res["max"], argmax = K.max_pool2d_forward(x, **pgeom)
    res["max_b"] = K.max_pool2d_backward(as_dtype(*argmax.shape), argmax, x.shape)
    res["avg"] = K.avg_pool2d_forward(x, **pgeom)
    res["avg_b"] = K.avg_pool2d_backward(as_dtype(*res["avg"].shape), x.shape, **pgeom)

    res["relu"] = K.relu_forward(x)
    res["relu_b"] = K.relu_backward(as_dtype(*x.shape), res["relu"])
    return res, argmax


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dtype_preserved(dtype):
    x = np.random.default_rng(0).standard_normal((2, 4, 7, 6)).astype(dtype)
    res, argmax = _run_all(x, dtype)
    for name, value in res.items():
        # batch-norm statistics are float64 (a float32 variance overflows for |x| > 1.8e19)
        want = np.float64 if name in ("bn_mean", "bn_var") else dtype
        assert value.dtype == want, name
    assert argmax.dtype == np.int64


def test_non_contiguous_inputs_give_same_results():
    x = np.random.default_rng(0).standard_normal((2, 4, 7, 6))
    view = np.transpose(np.ascontiguousarray(np.transpose(x, (3, 1, 0, 2))), (2, 1, 3, 0))
    assert not view.flags.c_contiguous and np.array_equal(view, x)
    expected, _ = _run_all(x, np.float64)
    actual, _ = _run_all(view, np.float64)
    for name in expected:
        np.testing.assert_allclose(
            actual[name], expected[name], rtol=1e-12, atol=1e-12, err_msg=name
        )


def test_float32_forward_matches_torch_float64():
    rng = np.random.default_rng(3)
    x64 = rng.standard_normal((2, 6, 9, 8))
    w64 = rng.standard_normal((6, 3, 3, 3))
    b64 = rng.standard_normal(6)
    f32 = lambda a: a.astype(np.float32)  # noqa: E731

    def check(actual, expected):
        assert actual.dtype == np.float32
        expected = expected.numpy()
        scale = np.abs(expected).max()
        np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-5 * scale)

    geom = dict(stride=(1, 2), padding=(1, 1), dilation=(1, 2), groups=2)
    check(
        K.conv2d_forward(f32(x64), f32(w64), f32(b64), **geom),
        TF.conv2d(t(f32(x64)).double(), t(f32(w64)).double(), t(f32(b64)).double(), **geom),
    )

    bw, bb = rng.standard_normal(6), rng.standard_normal(6)
    out, _, _ = K.batch_norm_train_forward(f32(x64), f32(bw), f32(bb), 1e-5)
    check(
        out,
        TF.batch_norm(
            t(f32(x64)).double(),
            None,
            None,
            t(f32(bw)).double(),
            t(f32(bb)).double(),
            training=True,
            eps=1e-5,
        ),
    )

    pgeom = dict(kernel_size=(3, 3), stride=(2, 2), padding=(1, 1))
    check(K.max_pool2d_forward(f32(x64), **pgeom)[0], TF.max_pool2d(t(f32(x64)).double(), **pgeom))
    check(K.avg_pool2d_forward(f32(x64), **pgeom), TF.avg_pool2d(t(f32(x64)).double(), **pgeom))
    check(K.relu_forward(f32(x64)), TF.relu(t(f32(x64)).double()))


def interface_names() -> set[str]:
    """The kernel names kernels/INTERFACE.md declares (its indented signature lines)."""
    text = (pathlib.Path(K.__file__).resolve().parents[1] / "INTERFACE.md").read_text()
    return set(re.findall(r"^    ([a-z][a-z0-9_]*)\(", text, flags=re.M))


def test_exports_match_interface():
    expected = interface_names()
    assert len(expected) >= 15 and "conv2d_forward" in expected
    assert set(K.__all__) == expected
    assert all(callable(getattr(K, name)) for name in expected)


def test_jit_implements_the_whole_interface():
    """kernels.jit exports every interface kernel, each a Numba kernel of its own."""
    import minires.kernels.jit as J

    for name in interface_names():
        assert name in J.__all__ and callable(getattr(J, name)), name
        assert J.implemented_here(name), name
