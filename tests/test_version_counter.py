"""Version counters: an in-place write into an array an op saved for backward makes that
backward refuse (PyTorch's "modified by an inplace operation"), and only then - ops keep
what their wanted gradients read, as PyTorch's do. PyTorch is the oracle."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

import minires as mr
import minires.functional as F

torch = pytest.importorskip("torch", reason="PyTorch is the oracle of these tests")
TF = torch.nn.functional

OPS = {
    "mul": (lambda F_, a, b: a * b, (2, 3, 5, 5), (2, 3, 5, 5)),
    "div": (lambda F_, a, b: a / b, (2, 3, 5, 5), (3, 5, 5)),
    "matmul": (lambda F_, a, b: a @ b.T, (3, 4), (5, 4)),
    "linear": (lambda F_, a, b: F_.linear(a, b), (3, 4), (5, 4)),
    "conv2d": (lambda F_, a, b: F_.conv2d(a, b, padding=1), (2, 3, 5, 5), (4, 3, 3, 3)),
}
WRITES = {
    "+=": lambda t: t.__iadd__(1),
    "mul_": lambda t: t.mul_(2),
    "setitem": lambda t: t.__setitem__(0, 1),
    "detach().add_": lambda t: t.detach().add_(1),
}


def _backward_after_write(lib, op: str, requires: tuple[bool, bool], written: int, write: str):
    fn, sa, sb = OPS[op]
    rng = np.random.default_rng(0)
    arrays = rng.standard_normal(sa), rng.standard_normal(sb) + 3
    a, b = (lib.tensor(v, requires_grad=r) for v, r in zip(arrays, requires))
    loss = fn(TF if lib is torch else F, a, b).sum()
    with lib.no_grad():
        WRITES[write]((a, b)[written])
    try:
        loss.backward()
    except RuntimeError as exc:
        return "refused", str(exc)
    return "ran", ""


@pytest.mark.parametrize("op", sorted(OPS))
def test_backward_refuses_exactly_where_torch_does(op):
    cases = itertools.product([(True, False), (False, True), (True, True)], [0, 1], WRITES)
    for requires, written, write in cases:
        got, message = _backward_after_write(mr, op, requires, written, write)
        want, _ = _backward_after_write(torch, op, requires, written, write)
        assert got == want, (op, requires, written, write, got, want)
        if got == "refused":
            assert "modified by an in-place operation" in message
            assert "at version" in message and op.replace("2d", "").lower() in message.lower()


def test_version_counts_like_torch_and_is_shared_by_views_and_detach():
    def steps(lib):
        t = lib.zeros(4, 3)
        view, seen = t[1], []
        with lib.no_grad():
            for write in (
                lambda: t.__iadd__(1),
                lambda: t.add_(1, alpha=2),
                lambda: view.mul_(3),
                lambda: t.detach().zero_(),
                lambda: t.__setitem__((0, 1), 5),
                lambda: t.copy_(lib.ones(4, 3)),
                lambda: t.fill_(2),
            ):
                write()
                seen.append((t._version, view._version))
        return seen

    assert steps(mr) == steps(torch)
    assert steps(mr)[-1] == (7, 7)


def test_out_of_place_ops_and_failed_writes_do_not_count():
    t = mr.zeros(2, 3)
    u = t + 1
    _ = t.reshape(3, 2) * 2
    assert t._version == 0 and u._version == 0
    with pytest.raises(ValueError):
        t += mr.ones(4)  # does not broadcast: nothing written
    assert t._version == 0


def test_write_into_an_op_output_under_no_grad_is_caught():
    # exp saves its output; writing into it under no_grad would corrupt exp's gradient
    for lib in (mr, torch):
        x = lib.tensor(np.linspace(-1, 1, 5), requires_grad=True)
        y = x.exp()
        with lib.no_grad():
            y += 1
        with pytest.raises(RuntimeError, match="modified by an in-?place operation"):
            y.sum().backward()


def test_unwanted_operand_is_not_held():
    # x * mask with a constant mask: x is not kept (its memory can be returned)
    x = mr.randn(3, requires_grad=True)
    mask = mr.tensor([1.0, 0.0, 1.0])
    y = x * mask
    saved_x, saved_mask = y.grad_fn.ctx.saved_tensors
    assert saved_x.strides == (0,) and saved_x.shape == (3,)  # a stand-in, no data
    assert saved_mask is mask.data
    y.sum().backward()
    np.testing.assert_array_equal(x.grad, [1.0, 0.0, 1.0])


def test_custom_function_saved_arrays_are_checked():
    class Square(mr.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return x * x

        @staticmethod
        def backward(ctx, g):
            (x,) = ctx.saved_tensors
            return 2 * x * g

    x = mr.tensor([1.0, 2.0], requires_grad=True)
    y = Square.apply(x).sum()
    with mr.no_grad():
        x[0] = 10.0
    with pytest.raises(RuntimeError, match="saved value 0 of Square"):
        y.backward()


@pytest.mark.parametrize("update", ["sgd", "adam", "load_state_dict", "init"])
def test_parameter_updates_between_forward_and_backward_as_torch(update):
    # the weight is saved (the input wants a gradient): updating it in place before the
    # backward makes the input's gradient wrong, and both libraries refuse
    def run(lib):
        nn = lib.nn
        layer = nn.Linear(4, 3)
        x = lib.tensor(np.ones((2, 4)), requires_grad=True, dtype=lib.float32)
        loss = layer(x).sum()
        loss.backward(retain_graph=True)
        before = layer.weight._version
        if update == "sgd":
            lib.optim.SGD(layer.parameters(), lr=0.1).step()
        elif update == "adam":
            lib.optim.Adam(layer.parameters(), lr=0.1).step()
        elif update == "load_state_dict":
            layer.load_state_dict(layer.state_dict())
        else:
            nn.init.zeros_(layer.weight)
        assert layer.weight._version > before
        with pytest.raises(RuntimeError, match="modified by an in-?place operation"):
            loss.backward()

    run(mr)
    run(torch)
