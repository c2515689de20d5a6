"""nn.Module's everyday PyTorch API, checked against torch: ``apply``, the traversal
methods' arguments, ``zero_grad(set_to_none)``, forward / forward-pre / full backward
hooks and their handles, ``get_submodule`` / ``get_parameter`` / ``get_buffer``,
``register_module``, ``__repr__`` with ``extra_repr``, and ``nn.Dropout2d``."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import minires as mr
import minires.functional as F
from minires import nn
from minires.models import resnet20
from minires.models.blocks import BasicBlock

# -- building the same nets in both libraries ---------------------------------------------


def _copy_weights(torch, ours: nn.Module, theirs) -> None:
    """Load our state dict into the torch twin (same key names)."""
    state = {k: torch.from_numpy(np.array(v)) for k, v in ours.state_dict().items()}
    theirs.load_state_dict(state)


def _randomise(m: nn.Module, seed: int = 0) -> nn.Module:
    """Non-trivial BN affine parameters and running statistics (so eval mode matters)."""
    rng = np.random.default_rng(seed)
    for mod in m.modules():
        if isinstance(mod, nn.BatchNorm2d):
            c = mod.num_features
            mod.weight.data[...] = rng.uniform(0.5, 1.5, c)
            mod.bias.data[...] = rng.normal(0, 0.3, c)
            mod.running_mean[...] = rng.normal(0, 0.3, c)
            mod.running_var[...] = rng.uniform(0.5, 2.0, c)
    return m


def _torch_basic_block(torch, inplanes: int, planes: int, stride: int = 1, downsample=None):
    """torchvision's BasicBlock (attribute order and forward), ReLU not in place (torch
    refuses in-place ops on the outputs of a module with backward hooks)."""
    tnn = torch.nn

    class TBasicBlock(tnn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = tnn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
            self.bn1 = tnn.BatchNorm2d(planes)
            self.relu = tnn.ReLU()
            self.conv2 = tnn.Conv2d(planes, planes, 3, 1, 1, bias=False)
            self.bn2 = tnn.BatchNorm2d(planes)
            self.downsample = downsample

        def forward(self, x):
            out = self.relu(self.bn1(self.conv1(x)))
            out = self.bn2(self.conv2(out))
            identity = x if self.downsample is None else self.downsample(x)
            return self.relu(out + identity)

    return TBasicBlock()


def _block_pair(torch, dtype=np.float64, inplace=False):
    """The same two-block stage (second block with a 1x1-conv downsample) in both (ours'
    ReLU not in place either unless asked: torch's is not, see `_torch_basic_block`)."""
    ours = nn.Sequential(
        BasicBlock(4, 4),
        BasicBlock(
            4,
            6,
            stride=2,
            downsample=nn.Sequential(nn.Conv2d(4, 6, 1, 2, bias=False), nn.BatchNorm2d(6)),
        ),
    )
    tnn = torch.nn
    theirs = tnn.Sequential(
        _torch_basic_block(torch, 4, 4),
        _torch_basic_block(
            torch, 4, 6, 2, tnn.Sequential(tnn.Conv2d(4, 6, 1, 2, bias=False), tnn.BatchNorm2d(6))
        ),
    )
    for block in ours:
        block.relu.inplace = inplace
    ours.to(dtype)
    _randomise(ours)
    theirs.to(getattr(torch, np.dtype(dtype).name))
    _copy_weights(torch, ours, theirs)
    return ours, theirs


def _conv_bn_relu(torch):
    ours = nn.Sequential(nn.Conv2d(3, 5, 3, padding=1), nn.BatchNorm2d(5), nn.ReLU()).double()
    _randomise(ours)
    tnn = torch.nn
    theirs = tnn.Sequential(tnn.Conv2d(3, 5, 3, padding=1), tnn.BatchNorm2d(5), tnn.ReLU()).double()
    _copy_weights(torch, ours, theirs)
    return ours, theirs


def _names(model) -> dict[int, str]:
    return {id(m): n for n, m in model.named_modules()}


# -- apply ---------------------------------------------------------------------------------


def test_apply_visits_children_before_parents_in_torchs_order(torch):
    ours, theirs = _block_pair(torch)
    for model in (ours, theirs):
        model.append(type(model[0].relu)())  # a third child, after the blocks
    seq_ours, seq_theirs = [], []
    names_o, names_t = _names(ours), _names(theirs)
    assert ours.apply(lambda m: seq_ours.append(names_o[id(m)])) is ours
    theirs.apply(lambda m: seq_theirs.append(names_t[id(m)]))
    assert seq_ours == seq_theirs
    assert seq_ours[0] == "0.conv1" and seq_ours[-1] == ""
    assert seq_ours.index("1.downsample.0") < seq_ours.index("1.downsample") < seq_ours.index("1")


def test_apply_custom_init_matches_torch(torch):
    ours, theirs = _block_pair(torch)

    def init_ours(m):
        if isinstance(m, nn.Conv2d):
            m.weight.data[...] = 0.01 * np.arange(m.weight.data.size).reshape(m.weight.shape)
        elif isinstance(m, nn.BatchNorm2d):
            m.weight.data[...] = 2.0

    def init_theirs(m):
        if isinstance(m, torch.nn.Conv2d):
            with torch.no_grad():
                m.weight.copy_(0.01 * torch.arange(m.weight.numel()).reshape(m.weight.shape))
        elif isinstance(m, torch.nn.BatchNorm2d):
            torch.nn.init.constant_(m.weight, 2.0)

    ours.apply(init_ours)
    theirs.apply(init_theirs)
    sd = theirs.state_dict()
    for k, v in ours.state_dict().items():
        np.testing.assert_allclose(v, sd[k].numpy(), err_msg=k)


def test_apply_on_a_shared_module_runs_as_often_as_torch(torch):
    lin_o, lin_t = nn.Linear(2, 2), torch.nn.Linear(2, 2)
    count_o, count_t = [], []
    nn.Sequential(lin_o, lin_o).apply(lambda m: count_o.append(type(m).__name__))
    torch.nn.Sequential(lin_t, lin_t).apply(lambda m: count_t.append(type(m).__name__))
    assert count_o == count_t == ["Linear", "Sequential"]  # children() lists a child once


def test_apply_refuses_a_non_callable():
    with pytest.raises(TypeError, match="'init'"):
        nn.Linear(2, 2).apply("init")


# -- traversal -----------------------------------------------------------------------------


def test_traversal_names_and_arguments_match_torch(torch):
    ours, theirs = _block_pair(torch)
    for kwargs in ({}, {"prefix": "net"}, {"recurse": False}, {"remove_duplicate": False}):
        assert [n for n, _ in ours.named_parameters(**kwargs)] == [
            n for n, _ in theirs.named_parameters(**kwargs)
        ], kwargs
        assert [n for n, _ in ours.named_buffers(**kwargs)] == [
            n for n, _ in theirs.named_buffers(**kwargs)
        ], kwargs
    assert [n for n, _ in ours.named_modules()] == [n for n, _ in theirs.named_modules()]
    assert [n for n, _ in ours.named_modules(prefix="m")] == [
        n for n, _ in theirs.named_modules(prefix="m")
    ]
    assert [n for n, _ in ours.named_children()] == [n for n, _ in theirs.named_children()]
    assert len(list(ours[1].parameters(recurse=False))) == 0
    assert len(list(ours[1].conv1.parameters(recurse=False))) == 1
    assert len(list(ours[1].bn1.buffers(recurse=False))) == 3
    assert len(list(ours.buffers())) == len(list(theirs.buffers()))


def test_shared_modules_and_parameters_appear_once_as_in_torch(torch):
    lin_o, lin_t = nn.Linear(3, 3), torch.nn.Linear(3, 3)
    ours = nn.Sequential(lin_o, nn.ReLU(), lin_o)
    theirs = torch.nn.Sequential(lin_t, torch.nn.ReLU(), lin_t)
    ours.add_module("head", nn.Linear(3, 2))
    theirs.add_module("head", torch.nn.Linear(3, 2))
    ours.head.weight = lin_o.weight  # a tied weight
    theirs.head.weight = lin_t.weight
    for kwargs in ({}, {"remove_duplicate": False}):
        assert [n for n, _ in ours.named_parameters(**kwargs)] == [
            n for n, _ in theirs.named_parameters(**kwargs)
        ], kwargs
        assert [n for n, _ in ours.named_modules(**kwargs)] == [
            n for n, _ in theirs.named_modules(**kwargs)
        ], kwargs
    assert len(list(ours.parameters())) == len(list(theirs.parameters())) == 3
    assert len(list(ours.modules())) == len(list(theirs.modules())) == 4
    # one module registered under two names of one parent: named_children lists it once
    pair_o, pair_t = nn.Module(), torch.nn.Module()
    pair_o.a = pair_o.b = lin_o
    pair_t.a = pair_t.b = lin_t
    assert [n for n, _ in pair_o.named_children()] == [n for n, _ in pair_t.named_children()]
    memo = {ours[1]}  # named_modules' memo: modules to skip
    assert "1" not in [n for n, _ in ours.named_modules(memo)]


# -- zero_grad -----------------------------------------------------------------------------


def test_zero_grad_default_sets_none_as_torch_and_can_zero_in_place(torch):
    lin_o, lin_t = nn.Linear(3, 2), torch.nn.Linear(3, 2)
    lin_o(mr.tensor(np.ones((4, 3), np.float32))).sum().backward()
    lin_t(torch.ones(4, 3)).sum().backward()
    grads = [p.grad for p in lin_o.parameters()]
    lin_o.zero_grad(set_to_none=False)
    lin_t.zero_grad(set_to_none=False)
    for p, g, pt in zip(lin_o.parameters(), grads, lin_t.parameters()):
        assert p.grad is g and not p.grad.any()  # the same arrays, zeroed in place
        assert not pt.grad.any()
    lin_o.zero_grad()
    lin_t.zero_grad()
    assert all(p.grad is None for p in lin_o.parameters())
    assert all(p.grad is None for p in lin_t.parameters())
    nn.Linear(2, 2).zero_grad(set_to_none=False)  # no gradients yet: stays None, no error


# -- forward hooks -------------------------------------------------------------------------


def _record_shapes(model, tensor_type):
    """Register a pre-hook and a forward hook on every module; returns the log and the
    handles (call order, name, input shapes, output shape)."""
    log, handles = [], []
    for name, m in model.named_modules():

        def pre(mod, args, name=name):
            log.append(("pre", name, tuple(tuple(a.shape) for a in args)))

        def post(mod, args, out, name=name):
            assert isinstance(out, tensor_type)
            log.append(("post", name, tuple(tuple(a.shape) for a in args), tuple(out.shape)))

        handles += [m.register_forward_pre_hook(pre), m.register_forward_hook(post)]
    return log, handles


def test_forward_hooks_see_the_same_calls_and_shapes_as_torch(torch):
    ours, theirs = _block_pair(torch)
    x = np.random.default_rng(1).standard_normal((2, 4, 6, 6))
    log_o, handles = _record_shapes(ours, mr.Tensor)
    log_t, _ = _record_shapes(theirs, torch.Tensor)
    out = ours(mr.tensor(x))
    theirs(torch.from_numpy(x))
    assert log_o == log_t
    assert ("post", "1.conv2", ((2, 6, 3, 3),), (2, 6, 3, 3)) in log_o
    assert sum(e[1] == "0.relu" for e in log_o) == 4  # the block's relu is called twice
    for h in handles:
        h.remove()
    np.testing.assert_array_equal(ours(mr.tensor(x)).data, out.data)
    assert len(log_o) == len(log_t)  # removed: nothing more recorded


def test_hooks_can_replace_arguments_and_outputs(torch):
    lin_o, lin_t = nn.Linear(3, 2).double(), torch.nn.Linear(3, 2).double()
    _copy_weights(torch, lin_o, lin_t)
    x = np.arange(6.0).reshape(2, 3)
    for m in (lin_o, lin_t):
        m.register_forward_pre_hook(lambda mod, args: args[0] * 2)  # not a tuple: wrapped
        m.register_forward_hook(lambda mod, args, out: out + 1)
    np.testing.assert_allclose(lin_o(mr.tensor(x)).data, lin_t(torch.from_numpy(x)).detach())
    expected = F.linear(mr.tensor(2 * x), lin_o.weight, lin_o.bias).data + 1
    np.testing.assert_allclose(lin_o(mr.tensor(x)).data, expected)


def _hook_order(module) -> list:
    order = []
    h1 = module.register_forward_hook(lambda m, a, o: order.append("first"))
    module.register_forward_hook(lambda m, a, o: order.append("prepended"), prepend=True)
    module.register_forward_pre_hook(
        lambda m, a, kw: order.append(("pre-kwargs", sorted(kw))), with_kwargs=True
    )
    module.register_forward_hook(
        lambda m, a, kw, o: order.append(("kwargs", sorted(kw))), with_kwargs=True
    )
    module(1.0)
    h1.remove()
    h1.remove()  # a second remove does nothing
    module(1.0)
    with module.register_forward_hook(lambda m, a, o: order.append("scoped")):
        module(1.0)
    module(1.0)
    return order


def test_hook_order_prepend_with_kwargs_and_handles(torch):
    ours = _hook_order(nn.Identity())
    assert ours == _hook_order(torch.nn.Identity())
    assert ours.count("scoped") == 1 and ours.count("first") == 1
    assert ours[:4] == [("pre-kwargs", []), "prepended", "first", ("kwargs", [])]


def test_pre_hook_with_kwargs_can_replace_both_and_bad_results_raise():
    class Scale(nn.Module):
        def forward(self, x, factor=1.0):
            return x * factor

    m = Scale()
    h = m.register_forward_pre_hook(
        lambda mod, a, kw: ((a[0] + 1,), {"factor": 3.0}), with_kwargs=True
    )
    assert m(mr.tensor([1.0])).item() == 6.0
    h.remove()
    m.register_forward_pre_hook(lambda mod, a, kw: "oops", with_kwargs=True)
    with pytest.raises(RuntimeError, match="new_kwargs"):
        m(mr.tensor([1.0]))


@pytest.mark.parametrize(
    "register",
    ["register_forward_pre_hook", "register_forward_hook", "register_full_backward_hook"],
)
def test_registering_a_non_callable_hook_is_a_type_error(register):
    with pytest.raises(TypeError, match=r"hook must be callable, got 42"):
        getattr(nn.ReLU(), register)(42)


# -- full backward hooks -------------------------------------------------------------------


def _record_grads(model, keep_none: bool = False):
    log = {}
    handles = []
    for name, m in model.named_modules():

        def hook(mod, grad_input, grad_output, name=name):
            def arr(g):
                return None if g is None else np.array(g)

            log.setdefault(name, []).append(
                (tuple(arr(g) for g in grad_input), tuple(arr(g) for g in grad_output))
            )

        handles.append(m.register_full_backward_hook(hook))
    return log, handles


def _assert_grad_logs_equal(ours, theirs):
    assert ours.keys() == theirs.keys()
    for name in ours:
        assert len(ours[name]) == len(theirs[name]), name
        for (gi_o, go_o), (gi_t, go_t) in zip(ours[name], theirs[name]):
            for a, b in zip(gi_o + go_o, gi_t + go_t):
                assert (a is None) == (b is None), name
                if a is not None:
                    np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12, err_msg=name)
            assert len(gi_o) == len(gi_t) and len(go_o) == len(go_t), name


@pytest.mark.parametrize("train", [True, False])
def test_backward_hooks_match_torch_on_conv_bn_relu_float64(torch, train):
    ours, theirs = _conv_bn_relu(torch)
    ours.train(train)
    theirs.train(train)
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 3, 5, 5))
    g = rng.standard_normal((2, 5, 5, 5))
    log_o, _ = _record_grads(ours)
    log_t, _ = _record_grads(theirs)
    xo = mr.tensor(x, requires_grad=True)
    xt = torch.tensor(x, requires_grad=True)
    ours(xo).backward(g)
    theirs(xt).backward(torch.from_numpy(g))
    _assert_grad_logs_equal(log_o, log_t)
    assert set(log_o) == {"", "0", "1", "2"}
    ((gi, go),) = log_o[""]
    np.testing.assert_allclose(gi[0], xo.grad)  # the block's input gradient
    np.testing.assert_array_equal(go[0], g)
    assert gi[0].shape == (2, 3, 5, 5) and log_o["0"][0][1][0].shape == (2, 5, 5, 5)


def test_backward_hooks_match_torch_on_resnet_blocks_with_a_skip(torch):
    # the blocks' inputs also feed the skip: grad_input is this module's use only
    ours, theirs = _block_pair(torch)
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 4, 6, 6))
    log_o, handles = _record_grads(ours)
    log_t, _ = _record_grads(theirs)
    xo, xt = mr.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    (ours(xo) ** 2).sum().backward()
    (theirs(xt) ** 2).sum().backward()
    _assert_grad_logs_equal(log_o, log_t)
    np.testing.assert_allclose(xo.grad, xt.grad.numpy(), rtol=1e-10, atol=1e-12)
    assert len(log_o["0.relu"]) == 2  # one per call
    for h in handles:
        h.remove()
    ours(mr.tensor(x, requires_grad=True)).sum().backward()
    assert all(len(v) == len(log_t[k]) for k, v in log_o.items())  # removed: not called


def test_inplace_relu_after_a_hooked_module_refuses_as_torch(torch):
    """A module with full backward hooks passes its output through an identity op (a
    view of it): an in-place ReLU on that output is refused, as in torch."""
    ours, _ = _block_pair(torch, inplace=True)
    _record_grads(ours)
    with pytest.raises(ValueError, match="shares its memory with another tensor"):
        ours(mr.tensor(np.zeros((2, 4, 6, 6)), requires_grad=True))
    bn = torch.nn.BatchNorm2d(4).double()
    bn.register_full_backward_hook(lambda *a: None)
    with pytest.raises(RuntimeError, match="is a view and is being modified inplace"):
        torch.nn.ReLU(inplace=True)(
            bn(torch.zeros(2, 4, 3, 3, dtype=torch.float64, requires_grad=True))
        )


def test_backward_hook_can_replace_grad_input_as_torch(torch):
    ours, theirs = _conv_bn_relu(torch)
    x = np.random.default_rng(4).standard_normal((2, 3, 4, 4))
    ours[1].register_full_backward_hook(lambda m, gi, go: (gi[0] * 3,))
    theirs[1].register_full_backward_hook(lambda m, gi, go: (gi[0] * 3,))
    xo, xt = mr.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    ours(xo).sum().backward()
    theirs(xt).sum().backward()
    np.testing.assert_allclose(xo.grad, xt.grad.numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(ours[0].weight.grad, theirs[0].weight.grad.numpy(), rtol=1e-10)
    # None in the returned tuple stops the gradient, as in torch
    ours[2].register_full_backward_hook(lambda m, gi, go: (None,))
    xo = mr.tensor(x, requires_grad=True)
    ours(xo).sum().backward()
    assert not xo.grad.any()


def test_backward_hook_when_no_input_requires_grad_fires_with_none_and_warns(torch):
    ours, theirs = _conv_bn_relu(torch)
    x = np.random.default_rng(5).standard_normal((2, 3, 4, 4))
    log_o, _ = _record_grads(ours[0])
    log_t, _ = _record_grads(theirs[0])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ours(mr.tensor(x)).sum().backward()
        theirs(torch.from_numpy(x)).sum().backward()
    assert sum("no inputs require gradients" in str(w.message) for w in caught) == 2
    _assert_grad_logs_equal(log_o, log_t)
    assert log_o[""][0][0] == (None,)
    ours[0].register_full_backward_hook(lambda m, gi, go: (np.ones((2, 3, 4, 4)),))
    with pytest.warns(UserWarning), pytest.raises(RuntimeError, match="must return None"):
        ours(mr.tensor(x)).sum().backward()


def _mix_classes(torch):
    """The same multi-input, multi-output module in both libraries: ``c`` (a tensor that
    requires grad) is not used; the second output is ``a * 3``, the third not a tensor;
    ``self.mid`` is an intermediate the caller can backprop from directly."""

    def forward(self, a, scale, b, c):
        self.mid = a * b * scale
        return self.mid + a, a * 3, "tag"

    return type("Mix", (nn.Module,), {"forward": forward}), type(
        "TMix", (torch.nn.Module,), {"forward": forward}
    )


def _run_mix(module, make, a, b, c, replace: bool):
    log, _ = _record_grads(module)
    if replace:  # double a's gradient, set c's to ones, stop b's
        module.register_full_backward_hook(lambda m, gi, go: (gi[0] * 2, None, None, gi[3] + 1))
    ta, tb, tc = (make(v, requires_grad=True) for v in (a, b, c))
    out, second, tag = module(ta, 2.0, tb, tc)
    assert tag == "tag"
    out.sum().backward(retain_graph=True)
    out.sum().backward(retain_graph=True)  # fires again
    second.sum().backward(retain_graph=True)  # now the first output is the unused one
    module.mid.sum().backward()  # reaches the inputs without the outputs: no call
    grads = [np.array(t.grad) for t in (ta, tb, tc)]
    return log, grads


@pytest.mark.parametrize("replace", [False, True])
def test_backward_hook_with_several_inputs_and_outputs_matches_torch(torch, replace):
    Mix, TMix = _mix_classes(torch)
    rng = np.random.default_rng(6)
    a, b, c = rng.standard_normal((3, 2)), rng.standard_normal((3, 2)), rng.standard_normal(4)
    log_o, grads_o = _run_mix(Mix(), mr.tensor, a, b, c, replace)
    log_t, grads_t = _run_mix(TMix(), torch.tensor, a, b, c, replace)
    _assert_grad_logs_equal(log_o, log_t)
    for g_o, g_t in zip(grads_o, grads_t):
        np.testing.assert_allclose(g_o, g_t, rtol=1e-12)
    assert len(log_o[""]) == 3
    assert log_o[""][2][1][0] is None and log_o[""][2][1][1] is not None
    gi, go = log_o[""][0]
    assert gi[1] is None and not gi[3].any() and gi[3].shape == (4,)  # unused input: zeros
    assert go[1] is None and go[2] is None  # unused output, non-tensor output
    np.testing.assert_allclose(gi[0], b * 2 + 1)


def _two_outputs(lib, ones):
    class Two(lib.Module):
        def __init__(self):
            super().__init__()
            self.w = lib.Parameter(ones(3))

        def forward(self, x):
            return x * self.w, x * self.w * 2

    m = Two()
    log, _ = _record_grads(m)
    with pytest.warns(UserWarning, match="no inputs require gradients"):
        m(ones(3))[1].sum().backward()  # the input does not require grad
    return log


def test_backward_hook_without_grad_inputs_and_two_outputs_fires_once(torch):
    ours = _two_outputs(nn, mr.ones)
    _assert_grad_logs_equal(ours, _two_outputs(torch.nn, torch.ones))
    assert ours[""][0][0] == (None,) and ours[""][0][1][0] is None


def test_backward_hook_wrappers_share_data_and_show_in_the_graph():
    m = nn.Identity()
    seen = {}
    m.register_forward_hook(lambda mod, args, out: seen.update(arg=args[0]))
    m.register_full_backward_hook(lambda *a: None)
    x = mr.tensor([1.0, 2.0], requires_grad=True)
    y = m(x)
    assert seen["arg"] is not x and np.shares_memory(seen["arg"].data, x.data)
    assert np.shares_memory(y.data, x.data)
    assert y.grad_fn.name() == "BackwardHookFunction"
    assert seen["arg"].grad_fn.name() == "BackwardHookFunction"


def test_backward_hook_returning_the_wrong_number_of_grads_raises(torch):
    ours, theirs = _conv_bn_relu(torch)
    x = np.zeros((1, 3, 3, 3))
    ours[1].register_full_backward_hook(lambda m, gi, go: (gi[0], gi[0]))
    theirs[1].register_full_backward_hook(lambda m, gi, go: (gi[0], gi[0]))
    with pytest.raises(RuntimeError, match="invalid number of grad_input"):
        theirs(torch.tensor(x, requires_grad=True)).sum().backward()
    with pytest.raises(RuntimeError, match="expected a tuple of 1, got 2"):
        ours(mr.tensor(x, requires_grad=True)).sum().backward()


def test_backward_hooks_are_not_attached_under_no_grad():
    m = nn.ReLU()
    calls = []
    m.register_full_backward_hook(lambda *a: calls.append(a))
    x = mr.tensor([1.0, -1.0], requires_grad=True)
    with mr.no_grad():
        y = m(x)
    assert y.grad_fn is None and not calls
    m(x).sum().backward()
    assert len(calls) == 1


def test_gradient_norms_layer_by_layer_of_a_resnet():
    """What a learner does: record ||grad_output|| of every conv of resnet20."""
    model = resnet20().double()
    norms = {}
    for name, m in model.named_modules():
        if isinstance(m, nn.Conv2d):
            m.register_full_backward_hook(
                lambda mod, gi, go, name=name: norms.__setitem__(name, np.linalg.norm(go[0]))
            )
    acts = {}
    model.get_submodule("fc").register_forward_hook(lambda m, a, out: acts.update(fc=out))
    fc_grad = {}
    model.fc.register_full_backward_hook(lambda m, gi, go: fc_grad.update(g=go[0]))
    x = mr.tensor(np.random.default_rng(7).standard_normal((4, 3, 8, 8)))
    y = np.array([0, 1, 2, 3])
    with pytest.warns(UserWarning, match="no inputs require gradients"):  # the stem conv
        F.cross_entropy(model(x), y).backward()
    assert len(norms) == 19 and "layer1.0.conv2" in norms and "conv1" in norms
    assert all(np.isfinite(v) and v > 0 for v in norms.values())
    logits = acts["fc"].data
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    p[np.arange(4), y] -= 1
    np.testing.assert_allclose(fc_grad["g"], p / 4, rtol=1e-10, atol=1e-14)


# -- submodules and parameters by path -----------------------------------------------------


def test_get_submodule_parameter_buffer_by_path(torch):
    model = resnet20()
    conv = model.get_submodule("layer1.0.conv2")
    assert conv is model.layer1[0].conv2
    assert model.get_submodule("") is model
    assert model.get_parameter("layer1.0.conv2.weight") is conv.weight
    assert model.get_parameter("fc.bias") is model.fc.bias
    assert model.get_buffer("layer2.1.bn1.running_var") is model.layer2[1].bn1.running_var
    ours, theirs = _block_pair(torch)
    for path in ("1.conv9", "1.conv1.weight", "2", "0.bn1.weight.x"):
        with pytest.raises(AttributeError) as ours_err:
            ours.get_submodule(path)
        with pytest.raises(AttributeError):
            theirs.get_submodule(path)
        assert path.split(".")[-1] in str(ours_err.value) or "not an nn.Module" in str(
            ours_err.value
        )
    for path in ("1.bn1.running_mean", "1.bn1.nope", "1.stride", "9.weight"):
        with pytest.raises(AttributeError, match=f"get_parameter\\({path!r}\\)"):
            ours.get_parameter(path)
        with pytest.raises(AttributeError):
            theirs.get_parameter(path)
    with pytest.raises(AttributeError, match="not a buffer"):
        ours.get_buffer("1.bn1.weight")
    with pytest.raises(TypeError, match="dotted path"):
        ours.get_submodule(1)


def test_register_module_is_add_module():
    m = nn.Module()
    m.register_module("body", nn.ReLU())
    assert [n for n, _ in m.named_children()] == ["body"]
    with pytest.raises(KeyError):
        m.register_module("a.b", nn.ReLU())
    with pytest.raises(TypeError):
        m.register_module("x", 3)


def test_repr_with_extra_repr_matches_torch(torch):
    def make(base, relu):
        class Block(base):
            def __init__(self, extra):
                super().__init__()
                self.extra = extra
                self.act = relu()
                self.inner = type(self)("") if extra == "x=1\ny=2" else None

            def extra_repr(self):
                return self.extra

        return Block

    for extra in ("", "k=3", "x=1\ny=2"):
        ours, theirs = make(nn.Module, nn.ReLU)(extra), make(torch.nn.Module, torch.nn.ReLU)(extra)
        assert repr(ours) == repr(theirs)

    class Leaf(nn.Module):
        def extra_repr(self):
            return "a=1"

    assert repr(Leaf()) == "Leaf(a=1)"
    assert repr(nn.Dropout(0.25)) == repr(torch.nn.Dropout(0.25))


# -- Dropout2d -----------------------------------------------------------------------------


def test_dropout2d_zeroes_whole_channels_and_scales_the_rest(torch):
    p = 0.3
    d = nn.Dropout2d(p)
    assert repr(d) == repr(torch.nn.Dropout2d(p))
    x = mr.tensor(np.random.default_rng(8).uniform(1, 2, (64, 50, 3, 4)), requires_grad=True)
    out = d(x)
    ratio = out.data / x.data
    mask = ratio[:, :, :1, :1]
    assert np.allclose(ratio, mask)  # one value per (n, c)
    assert set(np.round(np.unique(mask), 12)) == {0.0, round(1 / (1 - p), 12)}
    dropped = float((mask == 0).mean())
    theirs = torch.nn.Dropout2d(p)(torch.ones(64, 50, 3, 4))
    dropped_t = float((theirs[:, :, 0, 0] == 0).float().mean())
    sigma = np.sqrt(p * (1 - p) / (64 * 50))
    assert abs(dropped - p) < 5 * sigma and abs(dropped_t - p) < 5 * sigma
    g = np.random.default_rng(9).standard_normal(x.shape)
    out.backward(g)
    np.testing.assert_allclose(x.grad, g * mask)  # the same mask, 0 or 1 / (1 - p)


def test_dropout2d_eval_p0_p1_seed_and_gradcheck():
    x = mr.tensor(np.random.default_rng(10).standard_normal((2, 3, 2, 2)), requires_grad=True)
    d = nn.Dropout2d(0.5)
    assert d.eval()(x) is x and nn.Dropout2d(0.0)(x) is x
    out = nn.Dropout2d(1.0)(x)
    out.sum().backward()
    assert not out.data.any() and not x.grad.any()
    d.train()
    mr.manual_seed(3)
    a = d(x).data
    mr.manual_seed(3)
    np.testing.assert_array_equal(d(x).data, a)  # minires' generator draws the mask

    def fixed_mask(t):
        mr.manual_seed(5)  # the same mask at every evaluation
        return d(t)

    assert mr.gradcheck(fixed_mask, [x])


def test_dropout2d_other_ranks_and_bad_arguments(torch):
    d = nn.Dropout2d(0.5)
    with pytest.warns(UserWarning, match=r"\(N, C, L\)"):
        out = d(mr.tensor(np.ones((8, 16, 5))))
    assert np.allclose(out.data, out.data[:, :, :1])  # per (n, c), as torch reads 3-D
    with pytest.warns(UserWarning, match="5-D"):
        d(mr.tensor(np.ones((2, 3, 2, 2, 2))))
    with pytest.warns(UserWarning), pytest.raises(RuntimeError, match="at least 2"):
        d(mr.tensor(np.ones(5)))
    with pytest.warns(UserWarning), pytest.raises(RuntimeError):
        torch.nn.Dropout2d(0.5)(torch.ones(5))
    for p in (-0.1, 1.5, float("nan")):
        with pytest.raises(ValueError, match=str(p)):
            nn.Dropout2d(p)
    with pytest.raises(TypeError, match="str"):
        nn.Dropout2d("0.5")
    with pytest.raises(TypeError, match="int64"):
        d(mr.Tensor(np.ones((2, 2, 2, 2), dtype=np.int64)))


def test_state_dict_keys_of_shared_modules_and_parameters_match_torch(torch):
    lin, tlin = nn.Linear(2, 3), torch.nn.Linear(2, 3)
    ours, theirs = (
        nn.Sequential(lin, nn.ReLU(), lin),
        torch.nn.Sequential(tlin, torch.nn.ReLU(), tlin),
    )
    assert list(ours.state_dict()) == list(theirs.state_dict())  # 0.* and 2.*, as torch
    ours.load_state_dict({k: v.numpy() for k, v in theirs.state_dict().items()})
    np.testing.assert_array_equal(lin.weight.data, tlin.weight.detach().numpy())
    a, b = nn.Linear(2, 2), nn.Linear(2, 2)
    b.weight = a.weight  # tied weights: both names, as torch
    assert list(nn.Sequential(a, b).state_dict()) == ["0.weight", "0.bias", "1.weight", "1.bias"]
    assert len(list(nn.Sequential(a, b).parameters())) == 3  # but the parameter once
