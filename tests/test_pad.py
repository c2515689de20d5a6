"""F.pad as torch's: constant (any axes, negative entries crop), reflect, replicate and
circular (the last 1-3 axes of a 2-D to 5-D input): values, gradients in float64
(gradcheck), PyTorch as the oracle where installed, and the refusals."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from torch_oracle import grads_match, t64

import minires as mr
import minires.functional as F
from minires import nn


@st.composite
def pad_case(draw):
    """(shape, pad, mode, value) that torch pads without error: sizes 1-5 (0 in batch
    and channels for constant padding), entries -3..4 within each mode's limits."""
    mode = draw(st.sampled_from(["constant", "reflect", "replicate", "circular"]))
    k = draw(st.integers(1, 3))
    ndim = draw(st.integers(k + 1, k + 2)) if mode != "constant" else draw(st.integers(k, 4))
    lead_min = 0 if mode == "constant" else 1
    shape = [draw(st.integers(lead_min, 2)) for _ in range(ndim - k)]
    shape += [draw(st.integers(1, 5)) for _ in range(k)]
    pad = []
    for n in reversed(shape[-k:]):  # the last axis first
        if mode == "constant":
            before = draw(st.integers(-n, 4))
            after = draw(st.integers(-(n + min(0, before)), 4))
        elif mode == "circular":
            lo, hi = draw(st.integers(-n + 1, 0)), draw(st.integers(-n + 1, 0))
            kept = n + lo + hi
            if kept < 1:
                lo, hi, kept = 0, 0, n
            before = lo if draw(st.booleans()) else draw(st.integers(0, kept))
            after = hi if before < 0 or draw(st.booleans()) else draw(st.integers(0, kept))
            if before < 0 and after < 0:
                after = 0
        else:
            limit = n - 1 if mode == "reflect" else 4
            before = draw(st.integers(-(n - 1), limit))
            after = draw(st.integers(max(-(n - 1), 1 - n - before), limit))
        pad += [before, after]
    value = draw(st.sampled_from([None, 0.0, 2.5])) if mode == "constant" else None
    return tuple(shape), tuple(pad), mode, value


def _reference(x: np.ndarray, pad, mode: str, value) -> np.ndarray:
    """Readable NumPy: each padded axis in turn - crop (negative entries) and np.pad for
    constant and circular ('wrap'), or np.pad on the whole axis then crop for reflect
    and replicate ('edge') - as torch defines them."""
    np_mode = {"reflect": "reflect", "replicate": "edge", "circular": "wrap"}.get(mode)
    for i in range(len(pad) // 2):
        axis = x.ndim - 1 - i
        before, after = pad[2 * i], pad[2 * i + 1]
        widths = [(0, 0)] * x.ndim
        widths[axis] = (max(0, before), max(0, after))
        crop = [slice(None)] * x.ndim
        if mode in ("constant", "circular"):  # crop, then pad what is left
            crop[axis] = slice(max(0, -before), x.shape[axis] - max(0, -after))
            x = x[tuple(crop)]
            if mode == "constant":
                x = np.pad(x, widths, constant_values=0.0 if value is None else value)
            else:
                x = np.pad(x, widths, mode="wrap")
        else:  # pad the whole axis, then crop
            x = np.pad(x, widths, mode=np_mode)
            crop[axis] = slice(max(0, -before), x.shape[axis] - max(0, -after))
            x = x[tuple(crop)]
    return x


@settings(max_examples=60, deadline=None)
@given(pad_case(), st.integers(0, 2**31 - 1))
def test_pad_matches_the_numpy_reading_and_its_gradient_checks(case, seed):
    shape, pad, mode, value = case
    x = np.random.default_rng(seed).standard_normal(shape)
    out = F.pad(t64(x, grad=False), pad, mode=mode, value=value)
    np.testing.assert_array_equal(out.data, _reference(x, pad, mode, value))
    if x.size and out.numel():
        assert mr.gradcheck(lambda t: F.pad(t, pad, mode=mode, value=value), [t64(x)])


@settings(max_examples=60, deadline=None)
@given(pad_case(), st.integers(0, 2**31 - 1))
def test_pad_against_torch(case, seed):
    torch = pytest.importorskip("torch", reason="PyTorch is the oracle of this test")
    shape, pad, mode, value = case
    x = np.random.default_rng(seed).standard_normal(shape)
    kw = {"mode": mode} if value is None else {"mode": mode, "value": value}
    grads_match(lambda t: F.pad(t, pad, **kw), lambda t: torch.nn.functional.pad(t, pad, **kw), [x])


def test_pad_modes_on_one_row():
    x = t64(np.arange(4.0).reshape(1, 1, 4), grad=False)
    row = lambda *a, **k: F.pad(x, *a, **k).data.ravel().tolist()  # noqa: E731
    assert row((3, 3), mode="reflect") == [3, 2, 1, 0, 1, 2, 3, 2, 1, 0]
    assert row((2, 1), mode="replicate") == [0, 0, 0, 1, 2, 3, 3]
    assert row((1, 2), mode="circular") == [3, 0, 1, 2, 3, 0, 1]
    assert row((-1, 2), mode="circular") == [1, 2, 3, 1, 2]  # cropped first, then wrapped
    assert row((-1, 2), mode="reflect") == [1, 2, 3, 2, 1]
    assert row((-1, 3), value=9.0) == [1, 2, 3, 9, 9, 9]
    assert row((-2, -2)) == []
    # torch's positional order: pad, mode, value
    assert F.pad(x, (1, 0), "constant", 7.0).data.ravel().tolist() == [7, 0, 1, 2, 3]


def test_pad_gradient_adds_up_the_copies():
    x = t64(np.arange(3.0).reshape(1, 1, 3))
    F.pad(x, (2, 2), mode="reflect").sum().backward()
    # out = [2, 1, 0, 1, 2, 1, 0]: x0 twice, x1 three times, x2 twice
    np.testing.assert_array_equal(x.grad.ravel(), [2, 3, 2])
    y = t64(np.arange(4.0))
    F.pad(y, (-1, -2)).sum().backward()  # cropped values get no gradient
    np.testing.assert_array_equal(y.grad, [0, 1, 0, 0])


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda x: F.pad(x, (1, 1), mode="edge"), ValueError, "mode must be one of"),
        (lambda x: F.pad(x, (1, 1), mode=None), TypeError, "mode must be a str"),
        (lambda x: F.pad(x, (1, 1), value="0"), TypeError, "value must be a number"),
        (lambda x: F.pad(x, (1,)), ValueError, "pairs"),
        (lambda x: F.pad(x, (1, 1.0)), TypeError, "int"),
        (lambda x: F.pad(x, (-4, 1)), ValueError, r"crops more than its 3 values"),
        (lambda x: F.pad(x, (1, 1), mode="reflect", value=1.0), ValueError, "takes no value"),
        (lambda x: F.pad(x, (1,) * 6, mode="reflect"), ValueError, r"last 1-3 dims.*\(1, 2, 3\)"),
        (lambda x: F.pad(x, (3, 0), mode="reflect"), ValueError, r"< the input size.*\(3, 0\)"),
        (lambda x: F.pad(x, (4, 0), mode="circular"), ValueError, "<= the input size"),
        (lambda x: F.pad(x, (-2, 2), mode="circular"), ValueError, r"\(1 after cropping\)"),
        (lambda x: F.pad(x, (-2, -1), mode="replicate"), ValueError, "non-empty"),
    ],
)
def test_pad_refuses_clearly(call, error, match):
    with pytest.raises(error, match=match):
        call(mr.tensor(np.zeros((1, 2, 3), np.float32)))


def test_conv2d_padding_modes_share_f_pad():
    torch = pytest.importorskip("torch", reason="PyTorch is the oracle of this test")
    rng = np.random.default_rng(0)
    for mode in ("reflect", "replicate", "circular"):
        conv = nn.Conv2d(2, 3, 3, padding=(1, 2), padding_mode=mode).double()
        ref = torch.nn.Conv2d(2, 3, 3, padding=(1, 2), padding_mode=mode).double()
        ref.load_state_dict({k: torch.from_numpy(v) for k, v in conv.state_dict().items()})
        x = rng.standard_normal((2, 2, 5, 4))
        out = conv(mr.tensor(x)).data
        np.testing.assert_allclose(out, ref(torch.from_numpy(x)).detach().numpy(), atol=1e-12)


@pytest.mark.parametrize(
    "name, args",
    [
        ("ZeroPad2d", (1,)),
        ("ZeroPad2d", ((1, 2, 0, 3),)),
        ("ZeroPad2d", ((-1, 2, 1, -2),)),
        ("ConstantPad2d", (2, 3.5)),
        ("ConstantPad2d", ((0, 1, 2, 0), float("-inf"))),
        ("ReflectionPad2d", ((1, 2, 2, 0),)),
        ("ReplicationPad2d", (2,)),
        ("CircularPad2d", ((1, 3, 2, 0),)),
    ],
)
def test_padding_modules_match_torch(name, args):
    torch = pytest.importorskip("torch", reason="PyTorch is the oracle of this test")
    ours, theirs = getattr(nn, name)(*args), getattr(torch.nn, name)(*args)
    assert repr(ours) == repr(theirs)
    x = np.random.default_rng(0).standard_normal((2, 3, 4, 5))
    grads_match(ours, theirs, [x])
    grads_match(ours, theirs, [x[0]])  # unbatched (C, H, W)


def test_padding_modules_refuse_bad_arguments_where_built():
    with pytest.raises(TypeError, match=r"\(left, right, top, bottom\)"):
        nn.ZeroPad2d((1, 2, 3))
    with pytest.raises(TypeError, match="int"):
        nn.ReflectionPad2d(1.5)
    with pytest.raises(TypeError, match="value must be a number"):
        nn.ConstantPad2d(1, "0")
    with pytest.raises(ValueError, match="needs padding < the input size"):
        nn.ReflectionPad2d(4)(mr.zeros(1, 1, 4, 4))
