"""gradcheck must be able to fail, and must say why."""

from __future__ import annotations

import numpy as np
import pytest

import minires as mr
import minires.functional as F


class WrongSquare(mr.Function):
    """Forward x^2, backward deliberately 2.1 x."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x * x

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return 2.1 * x * g


class BatchNormNoCentering(mr.Function):
    """A batchnorm whose backward forgets the mean terms: passes a sum-based check."""

    @staticmethod
    def forward(ctx, x):
        mu, var = x.mean(0), x.var(0)
        inv = 1 / np.sqrt(var + 1e-5)
        ctx.save_for_backward(inv)
        return (x - mu) * inv

    @staticmethod
    def backward(ctx, g):
        (inv,) = ctx.saved_tensors
        return g * inv


def x64(*shape, seed=0):
    return mr.tensor(np.random.default_rng(seed).standard_normal(shape), requires_grad=True)


def test_wrong_backward_fails_with_report():
    x = x64(3, 4)
    with pytest.raises(mr.GradcheckError, match=r"input 0 \(3, 4\): MISMATCH.*analytic"):
        mr.gradcheck(WrongSquare.apply, [x])
    res = mr.gradcheck(WrongSquare.apply, [x], raise_exception=False)
    assert not res and res.max_abs_error > 1e-3
    rep = res.inputs[0]
    assert rep.worst_index is not None and len(rep.worst_index) == 2
    assert rep.analytic == pytest.approx(2.1 / 2 * rep.numeric, rel=1e-4)


def test_random_upstream_gradient_catches_bug_a_plain_sum_hides():
    x = x64(5, 3)
    # With a plain sum upstream, both the true and the buggy gradients of sum(bn(x)) vanish.
    x.grad = None
    BatchNormNoCentering.apply(x).sum().backward()
    assert not np.allclose(x.grad, 0)  # the bug is visible only with a random upstream grad
    assert not mr.gradcheck(BatchNormNoCentering.apply, [x], raise_exception=False)
    assert not mr.gradcheck(BatchNormNoCentering.apply, [x], raise_exception=False, fast_mode=True)


def test_correct_ops_pass_in_all_modes():
    x, w = x64(2, 3, 5, 5), x64(4, 3, 3, 3, seed=1)
    f = lambda x, w: F.conv2d(x, w, padding=1)  # noqa: E731
    assert mr.gradcheck(f, [x, w])
    assert mr.gradcheck(f, [x, w], fast_mode=True)
    assert mr.gradcheck(lambda x: F.log_softmax(x), [x64(3, 4)], full_jacobian=True)


def test_multiple_outputs_and_non_grad_inputs():
    x, y = x64(3), mr.tensor(np.ones(3))
    assert mr.gradcheck(lambda x, y: (x * y, (x * x).sum()), [x, y])


def test_float32_refused_clearly():
    x = mr.tensor(np.ones((2, 2), np.float32), requires_grad=True)
    with pytest.raises(TypeError, match="float64"):
        mr.gradcheck(lambda x: x * 2, [x])


def test_no_input_requires_grad():
    with pytest.raises(ValueError, match="requires_grad"):
        mr.gradcheck(lambda x: x * 2, [mr.tensor(np.ones(2))])


def test_kink_is_reported_as_warning_not_bare_mismatch():
    x = mr.tensor(np.array([0.0, 1.0, -1.0]), requires_grad=True)  # relu at exactly 0
    with pytest.warns(mr.GradcheckWarning, match="non-differentiable"):
        res = mr.gradcheck(F.relu, [x])
    assert res and res.inputs[0].kinks == [(0,)]
    tie = mr.tensor(np.array([[[[1.0, 1.0], [0.0, -1.0]]]]), requires_grad=True)
    with pytest.warns(mr.GradcheckWarning):
        assert mr.gradcheck(lambda t: F.max_pool2d(t, 2), [tie])


def test_inputs_grads_are_restored():
    x = x64(3)
    x.grad = np.full(3, 7.0)
    mr.gradcheck(lambda x: x * 3, [x])
    np.testing.assert_array_equal(x.grad, np.full(3, 7.0))


def test_report_str_lists_every_input():
    res = mr.gradcheck(lambda a, b: a * b, [x64(2), x64(2, seed=1)])
    text = str(res)
    assert "passed" in text and "input 0" in text and "input 1" in text
