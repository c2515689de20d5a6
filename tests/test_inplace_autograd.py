"""In-place ops recorded in the graph, as PyTorch records them: `F.relu(x, inplace=True)`,
`nn.ReLU(inplace=True)` (torchvision's blocks), `relu_`, the other `inplace=` activations
and dropouts. The tensor written keeps its identity, takes the new values and history;
gradients are those of the out-of-place op."""

from __future__ import annotations

import numpy as np
import pytest

import minires as mr
import minires.functional as F
from minires import nn
from minires.models import resnet20


def _grads(model):
    return {k: p.grad.copy() for k, p in model.named_parameters()}


def test_inplace_relu_in_a_resnet_step_gives_the_out_of_place_bits():
    """ResNet-20 (nn.ReLU(inplace=True) in every block) trained one step with its ReLUs in
    place and not: the same loss, the same gradient bits, no activation allocated for
    the in-place ReLUs."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 3, 16, 16)).astype(np.float32)
    y = rng.integers(0, 10, 4)
    results = []
    for inplace in (True, False):
        mr.manual_seed(1)
        model = resnet20()
        relus = [m for m in model.modules() if isinstance(m, nn.ReLU)]
        assert relus and all(m.inplace for m in relus)  # torchvision's choice
        for m in relus:
            m.inplace = inplace
        loss = F.cross_entropy(model(mr.tensor(x)), y)
        loss.backward()
        results.append((loss.item(), _grads(model)))
    (l_in, g_in), (l_out, g_out) = results
    assert l_in == l_out
    for k in g_in:
        np.testing.assert_array_equal(g_in[k], g_out[k], err_msg=k)


def test_functional_inplace_activations_match_torch(torch):
    """The result is the input tensor itself, with torch's values and gradients."""
    rng = np.random.default_rng(2)
    a = rng.standard_normal((2, 3, 4))
    cases = [
        ("relu", {}),
        ("leaky_relu", {"negative_slope": 0.2}),
        ("silu", {}),
    ]
    for name, kw in cases:
        x = mr.tensor(a, requires_grad=True)
        xt = torch.tensor(a, requires_grad=True)
        h, ht = x * 2.0, xt * 2.0
        out = getattr(F, name)(h, inplace=True, **kw)
        getattr(torch.nn.functional, name)(ht, inplace=True, **kw)
        assert out is h and h._version == 1
        (h * h).sum().backward()
        (ht * ht).sum().backward()
        np.testing.assert_allclose(h.data, ht.detach().numpy(), rtol=1e-14, err_msg=name)
        np.testing.assert_allclose(x.grad, xt.grad.numpy(), rtol=1e-12, err_msg=name)


@pytest.mark.parametrize("fn", [F.dropout, F.dropout2d])
def test_inplace_dropout_is_the_out_of_place_one_written_through(fn):
    a = np.random.default_rng(3).standard_normal((4, 5, 3, 3))
    runs = []
    for inplace in (False, True):
        mr.manual_seed(7)
        x = mr.tensor(a, requires_grad=True)
        h = x * 1.0
        out = fn(h, 0.5, True, inplace)
        assert (out is h) == inplace
        (out * out).sum().backward()
        runs.append((out.data.copy(), x.grad.copy()))
    np.testing.assert_array_equal(runs[0][0], runs[1][0])
    np.testing.assert_array_equal(runs[0][1], runs[1][1])
    with mr.no_grad():  # outside the graph: written through
        t = mr.tensor(a.copy())
        assert fn(t, 1.0, True, True) is t and not t.data.any()


def test_inplace_relu_gradcheck_float64():
    x = mr.tensor(np.random.default_rng(4).standard_normal((3, 5)) + 0.05, requires_grad=True)

    def f(t):
        h = t * 1.5
        F.relu(h, inplace=True)
        return h * t  # the in-place result and the leaf both reach the output

    assert mr.gradcheck(f, (x,))


def test_inplace_relu_outside_the_graph_writes_through():
    x = mr.tensor(np.array([-1.0, 2.0, -3.0], np.float32))
    before = x._version
    with mr.no_grad():
        assert nn.ReLU(inplace=True)(x) is x
    assert x.data.tolist() == [0.0, 2.0, 0.0] and x._version == before + 1
    frozen = mr.tensor(np.array([-1.0, 1.0]))
    frozen.data.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        frozen.relu_()


def test_inplace_relu_refuses_a_leaf_that_requires_grad_as_torch(torch):
    x = mr.tensor(np.ones(3), requires_grad=True)
    with pytest.raises(RuntimeError, match="leaf tensor that requires grad"):
        F.relu(x, inplace=True)
    with pytest.raises(RuntimeError, match="leaf Variable that requires grad"):
        torch.nn.functional.relu(torch.ones(3, requires_grad=True), inplace=True)


def test_retained_grad_follows_the_in_place_write_and_hooks_stay_as_torch(torch):
    got = {}
    for lib in (mr, torch):
        x = lib.tensor(np.array([1.0, -2.0, 3.0]), requires_grad=True)
        y = x * 2.0
        y.retain_grad()
        seen = []
        y.register_hook(lambda g, seen=seen: seen.append(np.array(g, copy=True)))
        y.relu_()
        (y * lib.tensor(np.array([1.0, 2.0, 3.0]))).sum().backward()
        got[lib.__name__] = (np.array(y.grad, copy=True), seen[0])
    for a, b in zip(got["minires"], got["torch"]):
        np.testing.assert_array_equal(a, b)
