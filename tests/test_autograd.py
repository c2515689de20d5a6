"""The autograd engine: graph walk, accumulation, freeing, hooks, Function, dtype rules."""

from __future__ import annotations

import numpy as np
import pytest

import minires as mr
import minires.functional as F


def test_residual_block_graph_accumulates_both_paths():
    # y = x + f(x) with f(x) = w * x: dy/dx = 1 + w. The identity path contributes the "1".
    x = mr.tensor([1.0, -2.0, 3.0], requires_grad=True)
    w = mr.tensor([0.5, 2.0, -1.0], requires_grad=True)
    y = x + w * x
    y.backward(np.ones(3, dtype=np.float32))
    np.testing.assert_allclose(x.grad, 1 + w.data)
    np.testing.assert_allclose(w.grad, x.data)


def test_value_used_twice_accumulates():
    x = mr.tensor(3.0, requires_grad=True)
    y = x * x + x  # dy/dx = 2x + 1
    y.backward()
    assert x.grad == pytest.approx(7.0)


def test_grads_accumulate_across_backward_calls_like_pytorch():
    x = mr.tensor([1.0, 2.0], requires_grad=True)
    (x * 3).sum().backward()
    (x * 3).sum().backward()
    np.testing.assert_allclose(x.grad, [6.0, 6.0])


def test_deep_chain_does_not_hit_recursion_limit():
    x = mr.tensor(np.ones(4), requires_grad=True, dtype=np.float64)
    h = x
    for _ in range(3000):  # 3,000 residual "blocks": h = h + 0.001 * h
        h = h + h * 0.001
    h.sum().backward()
    np.testing.assert_allclose(x.grad, np.full(4, 1.001**3000), rtol=1e-10)


def test_backward_twice_without_retain_graph_is_a_clear_error():
    x = mr.tensor([1.0, 2.0], requires_grad=True)
    y = (x * x).sum()
    y.backward()
    with pytest.raises(RuntimeError, match="second time"):
        y.backward()


def test_retain_graph_allows_second_backward():
    x = mr.tensor([1.0, 2.0], requires_grad=True)
    y = (x * x).sum()
    y.backward(retain_graph=True)
    y.backward()
    np.testing.assert_allclose(x.grad, 2 * 2 * x.data)


def test_buffers_freed_after_backward():
    x = mr.tensor(np.ones((2, 2)), requires_grad=True)
    y = x * x
    node = y.grad_fn
    y.sum().backward()
    assert node.ctx._saved is None and node.freed


def test_retain_grad_on_activation():
    x = mr.tensor([1.0, -1.0, 2.0], requires_grad=True)
    a = x * 2
    a.retain_grad()
    (a.relu() * 3).sum().backward()
    np.testing.assert_allclose(a.grad, [3.0, 0.0, 3.0])
    assert (x * 2).grad is None  # non-leaf without retain_grad keeps nothing


def test_register_hook_sees_and_can_replace_gradient():
    x = mr.tensor([1.0, 2.0], requires_grad=True)
    seen = []
    h = x * 1.0
    h.register_hook(lambda g: seen.append(g.copy()))
    x.register_hook(lambda g: g * 10)
    (h * 2).sum().backward()
    np.testing.assert_allclose(seen[0], [2.0, 2.0])
    np.testing.assert_allclose(x.grad, [20.0, 20.0])


def test_hook_removal():
    x = mr.tensor([1.0], requires_grad=True)
    remove = x.register_hook(lambda g: g * 0)
    remove()
    (x * 2).sum().backward()
    assert x.grad[0] == 2.0


def test_no_grad_records_nothing():
    x = mr.tensor([1.0], requires_grad=True)
    with mr.no_grad():
        y = x * 2
    assert y.grad_fn is None and not y.requires_grad

    @mr.no_grad()
    def f(t):
        return t * 2

    assert f(x).grad_fn is None


def test_parents_in_order_for_non_commutative_ops():
    a = mr.tensor([6.0], requires_grad=True)
    b = mr.tensor([2.0], requires_grad=True)
    (a / b - b).sum().backward()
    assert a.grad[0] == pytest.approx(0.5)
    assert b.grad[0] == pytest.approx(-6.0 / 4 - 1)


def test_dtype_rules():
    assert mr.tensor(1.0).dtype == np.float32
    assert mr.tensor([1, 2]).dtype == np.float32
    assert mr.tensor(np.ones(2)).dtype == np.float64
    assert mr.tensor(np.ones(2, np.float32)).dtype == np.float32
    assert mr.tensor(np.array([1, 2])).dtype.kind == "i"
    assert mr.tensor(1, dtype=np.float64).dtype == np.float64
    with pytest.raises(TypeError, match="require grad"):
        mr.tensor(np.array([1, 2]), requires_grad=True)
    # A Python scalar does not promote a float32 tensor.
    assert (mr.tensor([1.0]) * 2.5).dtype == np.float32
    x = mr.tensor(np.ones(3, np.float32), requires_grad=True)
    (x * 2.0).sum().backward()
    assert x.grad.dtype == np.float32


def test_tensor_api_surface():
    t = mr.Tensor(np.arange(6.0).reshape(2, 3), requires_grad=True)
    assert t.shape == (2, 3) and t.ndim == 2 and t.numpy() is t.data
    assert np.asarray(t).shape == (2, 3)
    assert t.T.shape == (3, 2) and t.transpose(1, 0).shape == (3, 2)
    assert t.sum().item() == 15.0
    d = t.detach()
    assert d.grad_fn is None and not d.requires_grad and np.shares_memory(d.data, t.data)
    assert "grad_fn" in repr(t * 2)


def test_ndarray_on_left_dispatches_to_tensor():
    t = mr.tensor([1.0, 2.0], requires_grad=True)
    out = np.array([3.0, 4.0], dtype=np.float32) * t
    assert isinstance(out, mr.Tensor)
    out.sum().backward()
    np.testing.assert_allclose(t.grad, [3.0, 4.0])


def test_nonscalar_backward_needs_grad_argument():
    x = mr.tensor([1.0, 2.0], requires_grad=True)
    with pytest.raises(RuntimeError, match="one-element"):
        (x * 2).backward()
    with pytest.raises(ValueError, match="shape"):
        (x * 2).backward(np.ones(3))
    (x * 2).backward(mr.tensor([1.0, 1.0]))
    np.testing.assert_allclose(x.grad, [2.0, 2.0])


class Cube(mr.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x**3

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return 3 * x**2 * g


def test_user_function_and_needs_input_grad():
    x = mr.tensor(np.array([1.0, 2.0]), requires_grad=True)
    y = Cube.apply(x)
    y.sum().backward()
    np.testing.assert_allclose(x.grad, [3.0, 12.0])
    assert mr.gradcheck(Cube.apply, [mr.tensor(np.array([0.3, -1.2]), requires_grad=True)])

    seen = {}

    class Spy(mr.Function):
        @staticmethod
        def forward(ctx, a, b):
            seen["needs"] = ctx.needs_input_grad
            return a * b

        @staticmethod
        def backward(ctx, g):
            return g, g

    Spy.apply(mr.tensor([1.0]), mr.tensor([2.0], requires_grad=True))
    assert seen["needs"] == (False, True)


def test_conv_skips_input_gradient_of_first_layer():
    x = mr.tensor(np.random.randn(1, 2, 5, 5))  # images: no grad
    w = mr.tensor(np.random.randn(3, 2, 3, 3), requires_grad=True)
    F.conv2d(x, w).sum().backward()
    assert x.grad is None and w.grad is not None


def test_wrong_gradient_shape_from_user_function_is_reported():
    class Bad(mr.Function):
        @staticmethod
        def forward(ctx, x):
            return x * 2

        @staticmethod
        def backward(ctx, g):
            return np.ones(7)

    x = mr.tensor(np.ones(3), requires_grad=True)
    with pytest.raises(ValueError, match=r"Bad.backward.*\(7,\).*\(3,\)"):
        Bad.apply(x).sum().backward()


def test_node_records_leaf_tensors_and_producing_nodes():
    """A node's inputs are None (no grad), a leaf Tensor or the Node that made a non-leaf
    input; a value used twice (a residual fork) is one node, run once."""
    x = mr.tensor([1.0, 2.0], requires_grad=True)
    c = mr.tensor([3.0, 4.0])  # no grad
    h = x * c
    y = h + h
    assert y.grad_fn.inputs == [h.grad_fn, h.grad_fn]
    assert h.grad_fn.inputs == [x, None]
    assert (h.grad_fn.shape, h.grad_fn.dtype, h.grad_fn.name()) == ((2,), np.float32, "Mul")
    assert len(list(mr.autograd.iter_graph(y))) == 2
    y.backward(np.ones(2))
    np.testing.assert_allclose(x.grad, 2 * c.data)
    assert h.grad_fn.freed and y.grad_fn.freed and h.grad_fn.ctx._saved is None


# --------------------------------------------------------------------------- leaf gradients
# Ops declaring `fresh_gradients` hand their parameter gradients to the leaves without a
# copy; anything that may be shared is still copied.


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_kernel_gradients_are_fresh_arrays(backend):
    """The contract behind `fresh_gradients`: every conv / batchnorm kernel gradient is a
    new buffer, sharing memory with no input and no other returned gradient."""
    from minires.backend import get_backend, kernels, set_backend

    old = get_backend()
    set_backend(backend)
    try:
        k = kernels()
        rng = np.random.default_rng(0)
        cases = [(2, 4, 7, 6, 3, 1, 1, 1, 1), (1, 8, 9, 8, 3, 2, 1, 1, 8),
                 (2, 8, 5, 4, 1, 1, 0, 1, 2), (1, 3, 6, 4, 3, 1, 2, 2, 1),
                 (3, 16, 8, 32, 1, 1, 0, 1, 1)]  # fmt: skip
        for n, c, h, co, kk, s, p, d, g in cases:
            x = rng.standard_normal((n, c, h, h), dtype=np.float32)
            w = rng.standard_normal((co, c // g, kk, kk), dtype=np.float32)
            y = k.conv2d_forward(x, w, None, (s, s), (p, p), (d, d), g)
            go = rng.standard_normal(y.shape, dtype=np.float32)
            args = ((s, s), (p, p), (d, d), g)
            gx = k.conv2d_backward_input(go, w, x.shape, *args)
            gw = k.conv2d_backward_weight(x, go, w.shape, *args)
            gw2 = k.conv2d_backward_weight(x, go, w.shape, *args)
            for a in (gx, gw):
                assert not any(np.shares_memory(a, b) for b in (x, w, go, y))
            assert not np.shares_memory(gx, gw) and not np.shares_memory(gw, gw2)
        x = rng.standard_normal((2, 3, 4, 4), dtype=np.float32)
        w, b = np.ones(3, np.float32), np.zeros(3, np.float32)
        out, mean, var = k.batch_norm_train_forward(x, w, b, 1e-5)
        go = rng.standard_normal(x.shape, dtype=np.float32)
        for grads in (k.batch_norm_train_backward(go, x, mean, var, w, 1e-5),
                      k.batch_norm_eval_backward(go, x, mean, var, w, 1e-5)):  # fmt: skip
            for i, a in enumerate(grads):
                assert not any(np.shares_memory(a, o) for o in (x, go, w, b, mean, var, out))
                assert not any(np.shares_memory(a, o) for o in grads[i + 1 :])
    finally:
        set_backend(old)


def test_weight_gradient_is_kept_without_a_copy(monkeypatch):
    import minires.backend as backend

    returned = []
    k = backend.kernels()
    real = k.conv2d_backward

    def spy(*args, **kwargs):
        gx, gw = real(*args, **kwargs)
        returned.append(gw)
        return gx, gw

    monkeypatch.setattr(k, "conv2d_backward", spy)
    conv = mr.nn.Conv2d(3, 4, 3, padding=1, bias=False)
    x = mr.randn(2, 3, 5, 5)
    conv(x).sum().backward()
    assert np.shares_memory(conv.weight.grad, returned[-1])
    first = conv.weight.grad.copy()
    conv(x).sum().backward()  # the second gradient is added into the kept one
    np.testing.assert_allclose(conv.weight.grad, 2 * first, rtol=1e-6)
    assert not np.shares_memory(conv.weight.grad, returned[-1])


class _FreshPassThrough(mr.Function):
    """Claims fresh gradients but passes grad_out through (a careless custom op)."""

    fresh_gradients = True

    @staticmethod
    def forward(ctx, a, b):
        return a + b

    @staticmethod
    def backward(ctx, g):
        return g, g


class _FreshTwice(_FreshPassThrough):
    """Returns one new array as the gradient of both inputs."""

    @staticmethod
    def backward(ctx, g):
        new = g * 1.0
        return new, new[...]  # the same memory, seen through another view


@pytest.mark.parametrize("op", [_FreshPassThrough, _FreshTwice])
def test_shared_gradients_are_still_copied(op):
    a = mr.tensor(np.ones((2, 3)), requires_grad=True)
    b = mr.tensor(np.ones((2, 3)), requires_grad=True)
    seed = np.full((2, 3), 2.0)
    op.apply(a, b).backward(seed)
    assert not np.shares_memory(a.grad, b.grad)
    assert not np.shares_memory(a.grad, seed) and not np.shares_memory(b.grad, seed)
    op.apply(a, b).backward(seed)
    np.testing.assert_array_equal(a.grad, 4.0)
    np.testing.assert_array_equal(b.grad, 4.0)
    np.testing.assert_array_equal(seed, 2.0)


def test_leaf_with_hook_gets_a_copy_of_a_fresh_gradient():
    kept = []
    conv = mr.nn.Conv2d(2, 2, 1, bias=False)
    conv.weight.register_hook(lambda g: kept.append(g))
    conv(mr.randn(1, 2, 3, 3)).sum().backward()
    assert not np.shares_memory(conv.weight.grad, kept[0])
    before = kept[0].copy()
    conv(mr.randn(1, 2, 3, 3)).sum().backward()
    np.testing.assert_array_equal(kept[0], before)  # what the hook kept was not added into


class _FreshDouble(mr.Function):
    """2x, with a freshly allocated gradient."""

    fresh_gradients = True

    @staticmethod
    def forward(ctx, a):
        return 2 * a

    @staticmethod
    def backward(ctx, g):
        return 2 * g


@pytest.mark.parametrize("backend", ["numba", "numpy"])
@pytest.mark.parametrize("shape", [(2, 3), (512, 1025)])  # 4 MB: the threaded kernel sum
def test_gradients_meeting_at_a_join_are_summed_without_touching_shared_arrays(backend, shape):
    """Where paths meet, the gradients are summed (the backend's `add`) into a new array;
    arrays that an op passed through (held in several places, or the caller's seed) are
    never written."""
    with mr.use_backend(backend):
        x = mr.tensor(
            np.arange(np.prod(shape), dtype=np.float64).reshape(shape), requires_grad=True
        )
        a, b = x * 1.0, x * 2.0
        a.retain_grad()
        # Add passes one array to a and b; then fresh gradients join them, in both orders
        loss = (
            (a + b) + (_FreshDouble.apply(a) + _FreshDouble.apply(b)) + (b + _FreshDouble.apply(a))
        )
        seed = np.full(shape, 0.5)
        loss.backward(seed)
    np.testing.assert_array_equal(seed, 0.5)
    np.testing.assert_array_equal(a.grad, 0.5 * (1 + 2 + 2))
    np.testing.assert_array_equal(x.grad, 0.5 * (1 * 5 + 2 * (1 + 2 + 1)))
    np.testing.assert_array_equal(loss.numpy(), 13 * x.numpy())  # x + 2x + 2x + 4x + 2x + 2x
