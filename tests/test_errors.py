"""Bad input gets a clear ValueError/TypeError naming the shapes or dtypes at fault."""

from __future__ import annotations

import numpy as np
import pytest

import minires as mr
import minires.functional as F
from minires import nn


def t(*shape, dtype=np.float32):
    return mr.tensor(np.ones(shape, dtype))


def test_conv_wrong_ndim():
    with pytest.raises(ValueError, match=r"3 or 4 dimensions.*\(8, 8\)"):
        F.conv2d(t(8, 8), t(4, 3, 3, 3))


def test_conv_channels_not_divisible_by_groups():
    with pytest.raises(ValueError, match=r"in_channels \(6\).*out_channels \(4\).*groups \(3\)"):
        F.conv2d(t(1, 6, 8, 8), t(4, 2, 3, 3), groups=3)
    with pytest.raises(ValueError, match="divisible"):
        nn.Conv2d(6, 4, 3, groups=4)


def test_conv_weight_channels_mismatch():
    with pytest.raises(
        ValueError, match=r"weight \(4, 2, 3, 3\) expects 2 input channels.*\(1, 3, 8, 8\)"
    ):
        F.conv2d(t(1, 3, 8, 8), t(4, 2, 3, 3))


def test_conv_kernel_larger_than_padded_input():
    with pytest.raises(ValueError, match=r"kernel 5x5.*larger than the padded input 4x4"):
        F.conv2d(t(1, 1, 4, 4), t(1, 1, 5, 5))


def test_conv_dtype_mismatch_and_int_input():
    with pytest.raises(TypeError, match="same dtype.*float32.*float64"):
        F.conv2d(t(1, 1, 4, 4), t(1, 1, 3, 3, dtype=np.float64))
    with pytest.raises(TypeError, match="float32 or float64"):
        F.conv2d(mr.tensor(np.ones((1, 1, 4, 4), np.int64)), t(1, 1, 3, 3))


def test_matmul_shapes():
    with pytest.raises(ValueError, match=r"\(2, 3\) and \(4, 5\) are not aligned: 3"):
        t(2, 3) @ t(4, 5)
    with pytest.raises(ValueError, match="batch dimensions"):
        t(2, 3, 4) @ t(3, 4, 5)


def test_linear_features():
    with pytest.raises(ValueError, match=r"input of shape \(2, 3\) has 3 features.*expects 4"):
        F.linear(t(2, 3), t(5, 4))


def test_cross_entropy_targets():
    with pytest.raises(TypeError, match="integer"):
        F.cross_entropy(t(2, 3), np.array([0.0, 1.0]))
    with pytest.raises(ValueError, match=r"target shape \(3,\).*\(2, 3\)"):
        F.cross_entropy(t(2, 3), np.array([0, 1, 2]))
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        F.cross_entropy(t(2, 3), np.array([0, 3]))


def test_batch_norm_shapes():
    with pytest.raises(ValueError, match=r"running_mean must have shape \(3,\)"):
        F.batch_norm(t(2, 3, 4, 4), np.zeros(4), np.ones(3))
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        F.batch_norm(t(1, 3), None, None, training=True)


def test_pool_args():
    with pytest.raises(ValueError, match="at most half"):
        F.max_pool2d(t(1, 1, 5, 5), 2, padding=2)
    with pytest.raises(TypeError, match="kernel_size must be an int or a pair"):
        F.avg_pool2d(t(1, 1, 5, 5), (1, 2, 3))


def test_reshape_and_elementwise():
    with pytest.raises(ValueError, match=r"\(2, 3\).*into \(4, 2\)"):
        t(2, 3).reshape(4, 2)
    with pytest.raises(ValueError, match=r"add: shapes \(2, 3\) and \(4,\) do not broadcast"):
        t(2, 3) + t(4)


def test_wrong_state_dict_lists_keys_and_shapes():
    m = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
    sd = m.state_dict()
    sd["0.weight"] = np.zeros((4, 3, 5, 5), np.float32)
    del sd["1.bias"]
    sd["2.weight"] = np.zeros(3)
    with pytest.raises(ValueError) as err:
        m.load_state_dict(sd)
    msg = str(err.value)
    assert "missing keys: 1.bias" in msg and "unexpected keys: 2.weight" in msg
    assert "0.weight: checkpoint (4, 3, 5, 5) vs model (4, 3, 3, 3)" in msg


# -- fuzz findings (session 7) ---------------------------------------------------------------


def test_log_softmax_over_an_empty_axis_is_empty():
    x = mr.randn(3, 0, requires_grad=True)
    assert F.log_softmax(x, 1).shape == (3, 0) and F.softmax(x, 1).shape == (3, 0)
    F.log_softmax(x, 1).sum().backward()
    assert x.grad.shape == (3, 0)


def test_load_state_dict_names_a_non_string_key():
    with pytest.raises(ValueError, match="unexpected keys: 0"):
        mr.nn.Linear(3, 2).load_state_dict({0: np.ones(1)})


@pytest.mark.parametrize("shape", [(3, 32.9, 32), "abc", (3, None, 32)])
def test_summary_wants_integer_input_shapes(shape):
    with pytest.raises(TypeError, match="tuple of integers"):
        mr.summary(mr.models.resnet20(), shape)


def test_a_backward_with_extra_gradients_is_refused_unless_they_are_none():
    class Extra(mr.Function):
        @staticmethod
        def forward(ctx, x):
            return x * 2

        @staticmethod
        def backward(ctx, g):
            return g * 2, g

    class ExtraNone(Extra):
        @staticmethod
        def backward(ctx, g):
            return g * 2, None

    x = mr.randn(3, requires_grad=True)
    with pytest.raises(ValueError, match="returned 2 gradient"):
        Extra.apply(x).sum().backward()
    ExtraNone.apply(x).sum().backward()
    np.testing.assert_array_equal(x.grad, np.full(3, 2.0, np.float32))
