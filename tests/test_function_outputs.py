"""Custom Functions with several outputs, as torch.autograd.Function: ``forward`` returns
a tuple, ``backward(ctx, *grad_outputs)`` gets one gradient per output (zeros where none
arrived), ``ctx.mark_non_differentiable`` and ``ctx.set_materialize_grads``. PyTorch is
the oracle."""

from __future__ import annotations

import numpy as np
import pytest

import minires as mr

torch = pytest.importorskip("torch", reason="PyTorch is the oracle of these tests")


def _make(lib, seen: list | None = None, materialize: bool = True, bug: float = 1.0):
    """(x * w, x + w, argsort(x)) with a hand-written backward, in minires or torch."""
    base = torch.autograd.Function if lib is torch else mr.Function

    class ProdSum(base):
        @staticmethod
        def forward(ctx, x, w):
            ctx.save_for_backward(x, w)
            ctx.set_materialize_grads(materialize)
            idx = torch.argsort(x, dim=-1) if lib is torch else np.argsort(x, axis=-1)
            ctx.mark_non_differentiable(idx)
            return x * w, x + w, idx

        @staticmethod
        def backward(ctx, g_prod, g_sum, g_idx):
            if seen is not None:
                seen.append((g_prod is None, g_sum is None))
            x, w = ctx.saved_tensors
            gx = gw = None
            if g_prod is not None:
                gx, gw = g_prod * w * bug, g_prod * x
            if g_sum is not None:
                gx = g_sum if gx is None else gx + g_sum
                gw = g_sum if gw is None else gw + g_sum
            return gx, gw

    return ProdSum


USES = {
    "product only": lambda p, s: (p * 3).sum(),
    "sum only": lambda p, s: (s**2).sum(),
    "both": lambda p, s: (p * s).sum(),
    "both, one twice": lambda p, s: (p + p * s).sum(),
}


def _grads(lib, use: str, materialize: bool = True):
    rng = np.random.default_rng(1)
    x = lib.tensor(rng.standard_normal((3, 4)), requires_grad=True)
    w = lib.tensor(rng.standard_normal((3, 4)), requires_grad=True)
    seen: list = []
    prod, total, idx = _make(lib, seen, materialize).apply(x, w)
    USES[use](prod, total).backward()
    as_np = (lambda t: t.numpy()) if lib is torch else np.asarray
    flags = (prod.requires_grad, total.requires_grad, idx.requires_grad)
    return as_np(x.grad), as_np(w.grad), seen, flags


@pytest.mark.parametrize("use", sorted(USES))
@pytest.mark.parametrize("materialize", [True, False])
def test_gradients_and_what_backward_receives_as_torch(use, materialize):
    ours, theirs = _grads(mr, use, materialize), _grads(torch, use, materialize)
    np.testing.assert_allclose(ours[0], theirs[0], rtol=1e-12)
    np.testing.assert_allclose(ours[1], theirs[1], rtol=1e-12)
    assert ours[2] == theirs[2]  # backward ran once, with None exactly where torch's had
    assert ours[3] == theirs[3] == (True, True, False)


def test_retain_graph_hooks_and_autograd_grad():
    x = mr.tensor(np.arange(1.0, 5.0), requires_grad=True)
    w = mr.tensor(np.full(4, 2.0), requires_grad=True)
    prod, total, _ = _make(mr).apply(x, w)
    hooked = []
    total.register_hook(lambda g: hooked.append(g.copy()))
    loss = (prod + total).sum()
    loss.backward(retain_graph=True)
    np.testing.assert_array_equal(x.grad, w.data + 1)
    loss.backward()  # the retained graph runs again and accumulates
    np.testing.assert_array_equal(x.grad, 2 * (w.data + 1))
    assert len(hooked) == 2
    with pytest.raises(RuntimeError, match="second time"):
        loss.backward()
    prod, total, _ = _make(mr).apply(x, w)
    (gx,) = mr.autograd.grad((prod * total).sum(), [x])
    np.testing.assert_allclose(gx, w.data * total.data + prod.data)


def test_gradcheck_passes_on_the_op_and_catches_a_wrong_backward():
    rng = np.random.default_rng(2)
    inputs = [mr.tensor(rng.standard_normal((2, 3)), requires_grad=True) for _ in range(2)]
    assert mr.gradcheck(lambda x, w: _make(mr).apply(x, w)[:2], inputs)
    broken = _make(mr, bug=1.01)
    with pytest.raises(mr.GradcheckError):
        mr.gradcheck(lambda x, w: broken.apply(x, w)[:2], inputs)


def test_outputs_without_gradient_and_bad_outputs():
    class Pair(mr.Function):
        @staticmethod
        def forward(ctx, x):
            return x.copy(), (x > 0).astype(np.int64)

        @staticmethod
        def backward(ctx, g, g_int):
            assert g_int is None  # an integer output gets no gradient
            return 2 * g

    x = mr.tensor([1.0, -2.0], requires_grad=True)
    y, mask = Pair.apply(x)
    assert y.requires_grad and not mask.requires_grad and mask.dtype == np.int64
    y.sum().backward()
    np.testing.assert_array_equal(x.grad, [2.0, 2.0])
    with mr.no_grad():
        y, _ = Pair.apply(x)
    assert not y.requires_grad and y.grad_fn is None

    class Empty(mr.Function):
        @staticmethod
        def forward(ctx, x):
            return ()

    class NotArrays(mr.Function):
        @staticmethod
        def forward(ctx, x):
            return x, "text"

    with pytest.raises(TypeError, match="empty"):
        Empty.apply(x)
    with pytest.raises(TypeError, match="output 1 must be an ndarray"):
        NotArrays.apply(x)
