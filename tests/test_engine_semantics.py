"""Engine semantics a PyTorch user relies on (issue 13): the graph frees activations
after backward, grad mode and backend are per thread, every array entering minires
follows the dtype rules, `mr.tensor` copies, hooks and seeds of the wrong shape or dtype
are refused."""

from __future__ import annotations

import gc
import threading
import tracemalloc
import weakref

import numpy as np
import pytest

import minires as mr
import minires.functional as F
from minires import autograd, backend, data, nn, training
from minires.models import cifar_resnet, resnet20

# -- 1. memory: the graph frees what it no longer needs ---------------------------------


def _traced() -> int:
    gc.collect()
    return tracemalloc.get_traced_memory()[0]


def test_backward_frees_activations_while_loss_and_logits_are_referenced():
    model = resnet20()
    rng = np.random.default_rng(0)
    x = mr.tensor(rng.standard_normal((16, 3, 32, 32)).astype(np.float32))
    y = mr.Tensor(np.arange(16) % 10)
    F.cross_entropy(model(x[:2]), y[:2]).backward()  # compile the kernels outside the trace
    model.zero_grad()
    tracemalloc.start()
    try:
        base = _traced()  # parameters were allocated before the trace: not counted
        logits = model(x)
        loss = F.cross_entropy(logits, y)
        after_forward = _traced() - base
        loss.backward()
        after_backward = _traced() - base  # gradients kept; loss and logits still referenced
    finally:
        tracemalloc.stop()
    assert all(p.grad is not None for p in model.parameters())
    assert logits.shape == (16, 10) and np.isfinite(loss.item())
    # resnet20 at batch 16: ~23 MiB of activations after forward; what is left is the
    # gradients (~1 MiB) and metadata
    assert after_forward > 10 * 2**20
    assert after_backward < 0.3 * after_forward, (after_forward, after_backward)
    nodes = list(autograd.iter_graph(loss))
    assert len(nodes) > 50 and all(n.freed and n.ctx._saved is None for n in nodes)
    with pytest.raises(RuntimeError, match="backward through the graph a second time"):
        loss.backward()


def test_graph_holds_no_non_leaf_tensor():
    w = mr.tensor(np.ones((3, 3)), requires_grad=True)
    x = mr.tensor(np.arange(9.0).reshape(3, 3))  # no grad: recorded as None
    h = x @ w
    a = h.relu()
    ref_h, ref_a = weakref.ref(h), weakref.ref(a)
    loss = (a * a).sum()
    del h, a
    gc.collect()
    assert ref_h() is None and ref_a() is None  # the graph does not keep them alive
    nodes = list(autograd.iter_graph(loss))
    for node in nodes:
        for inp in node.inputs:
            assert inp is None or isinstance(inp, autograd.Node) or inp.is_leaf
    matmul = nodes[-1]
    assert matmul.name() == "MatMul" and matmul.inputs == [None, w]
    assert matmul.shape == (3, 3) and matmul.dtype == np.float64
    assert loss.grad_fn.shape == () and loss.grad_fn.inputs[0] is nodes[1]
    loss.backward()
    np.testing.assert_allclose(w.grad, x.data.T @ (2 * np.maximum(x.data @ w.data, 0)))


def test_retain_grad_and_hooks_on_non_leaf_survive_the_tensor_being_unreferenced():
    x = mr.tensor([1.0, -2.0, 3.0], requires_grad=True)
    a = x * 2
    a.retain_grad()
    seen = []
    b = x * 3
    b.register_hook(lambda g: seen.append(g.copy()))
    loss = (a.relu() + b).sum()
    del b  # the hook lives on the node
    loss.backward()
    np.testing.assert_allclose(a.grad, [1.0, 0.0, 1.0])
    np.testing.assert_allclose(seen[0], [1.0, 1.0, 1.0])
    np.testing.assert_allclose(x.grad, [5.0, 3.0, 5.0])


def _peak_of_training(model, n_batches: int, batch: int) -> int:
    rng = np.random.default_rng(1)
    ds = data.TensorDataset(
        rng.standard_normal((n_batches * batch, 3, 16, 16)).astype(np.float32),
        np.arange(n_batches * batch) % 10,
    )
    loader = data.DataLoader(ds, batch_size=batch, seed=0)
    gc.collect()
    tracemalloc.start()
    try:
        training.train(model, loader, epochs=1, progress=False, verbose=False, plot=False)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_train_holds_one_graph_at_a_time():
    model = cifar_resnet(8)
    _peak_of_training(model, 1, 2)  # compile the kernels and make the optimizer's buffers
    one = _peak_of_training(model, 1, 64)
    three = _peak_of_training(model, 3, 64)
    # Two graphs alive at once would make the peak of later steps ~1.8x the first one's.
    assert three < 1.25 * one, (one, three)


# -- 2. grad mode and backend are per thread --------------------------------------------


def _run_threads(*targets):
    errors = []

    def wrap(f):
        def run():
            try:
                f()
            except BaseException as exc:  # report in the main thread
                errors.append(exc)

        return run

    threads = [threading.Thread(target=wrap(f)) for f in targets]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
        assert not t.is_alive()
    if errors:
        raise errors[0]


def test_no_grad_in_one_thread_does_not_stop_recording_in_another():
    x = mr.tensor([1.0, 2.0], requires_grad=True)
    inside, checked = threading.Event(), threading.Event()
    seen = {}

    def a():
        with mr.no_grad():
            inside.set()
            assert checked.wait(30)
            seen["a"] = (x * 2).requires_grad

    def b():
        assert inside.wait(30)
        y = x * 2
        seen["b"] = (mr.is_grad_enabled(), y.requires_grad, y.grad_fn is not None)
        checked.set()

    _run_threads(a, b)
    assert seen == {"a": False, "b": (True, True, True)}
    assert mr.is_grad_enabled()


def test_overlapping_no_grad_blocks_in_two_threads_leave_grad_mode_on():
    # A enters, B enters, A exits, B exits: with one process-wide flag B would restore
    # the "off" it saw on entry.
    steps = [threading.Event() for _ in range(3)]
    shared = mr.no_grad()  # one instance entered from both threads
    after = {}

    def a():
        with shared:
            steps[0].set()
            assert steps[1].wait(30)
        after["a"] = mr.is_grad_enabled()
        steps[2].set()

    def b():
        assert steps[0].wait(30)
        with shared:
            steps[1].set()
            assert steps[2].wait(30)
            after["b inside"] = mr.is_grad_enabled()
        after["b"] = mr.is_grad_enabled()

    _run_threads(a, b)
    assert after == {"a": True, "b inside": False, "b": True}
    assert mr.is_grad_enabled()
    x = mr.tensor([1.0], requires_grad=True)
    assert (x * 2).requires_grad


def test_no_grad_decorator_and_enable_grad_nest():
    x = mr.tensor([1.0], requires_grad=True)

    @mr.no_grad()
    def f():
        with mr.enable_grad():
            inner = (x * 2).requires_grad
        return inner, (x * 2).requires_grad, mr.is_grad_enabled()

    assert f() == (True, False, False)
    assert f() == (True, False, False)
    assert mr.is_grad_enabled()


def test_use_backend_in_one_thread_does_not_switch_another():
    default = mr.get_backend()
    other = "numpy" if default == "numba" else "numba"
    inside, checked = threading.Event(), threading.Event()
    seen = {}

    def a():
        with mr.use_backend(other):
            inside.set()
            assert checked.wait(30)
            seen["a"] = mr.get_backend()
        seen["a after"] = mr.get_backend()

    def b():
        assert inside.wait(30)
        seen["b"] = (mr.get_backend(), backend.kernels().__name__)
        checked.set()

    _run_threads(a, b)
    assert seen["a"] == other and seen["a after"] == default
    assert seen["b"] == (default, backend.BACKENDS[default])


def test_set_backend_sets_the_process_default_and_use_backend_overrides_it():
    default = mr.get_backend()
    other = "numpy" if default == "numba" else "numba"
    entered, switched = threading.Event(), threading.Event()
    seen = {}

    def keeps_own_choice():
        with mr.use_backend(default):
            entered.set()
            assert switched.wait(30)
            seen["override"] = mr.get_backend()
        seen["after override"] = mr.get_backend()

    def follows_default():
        assert switched.wait(30)
        seen["plain"] = mr.get_backend()

    def switcher():
        assert entered.wait(30)
        mr.set_backend(other)
        switched.set()

    try:
        _run_threads(keeps_own_choice, follows_default, switcher)
        assert mr.get_backend() == other  # this thread has no override either
        with mr.use_backend(default):
            mr.set_backend(other)  # inside one's own block, one's explicit choice wins
            assert mr.get_backend() == other
        assert mr.get_backend() == other
    finally:
        mr.set_backend(default)
    assert seen == {"override": default, "after override": other, "plain": other}
    with pytest.raises(ValueError, match="unknown backend"):
        mr.set_backend("cuda")


# -- 3. dtypes ---------------------------------------------------------------------------

BIG = np.dtype(">f8")
REFUSED = [
    (np.array([1 + 2j, 3j]), "complex"),
    (np.array([1.0, 2.0], dtype=object), "object"),
    (np.array([1.0, 2.0], dtype=np.longdouble), str(np.dtype(np.longdouble))),
    (np.array(["a", "b"]), "<U1"),
    (np.array(["2020-01-01", "2021-01-01"], dtype="datetime64[D]"), "datetime64"),
]
REFUSED_IDS = ["complex", "object", "longdouble", "str", "datetime"]


def _big(values, dtype=BIG) -> np.ndarray:
    arr = np.asarray(values, dtype=dtype)
    assert not arr.dtype.isnative
    return arr


@pytest.mark.parametrize(
    "make",
    [mr.Tensor, mr.tensor, nn.Parameter, lambda a: mr.tensor(a, dtype=a.dtype)],
    ids=["Tensor", "tensor", "Parameter", "tensor-dtype"],
)
def test_big_endian_floats_become_native(make):
    src = _big([[1.5, -2.0], [3.0, -4.25]])
    t = make(src)
    assert t.dtype == np.float64 and t.dtype.isnative
    np.testing.assert_array_equal(t.data, src.astype(np.float64))
    f32 = make(_big([1.0, -1.0], ">f4"))
    assert f32.dtype == np.float32 and f32.dtype.isnative


def test_float16_widened_and_integer_targets_kept():
    assert mr.Tensor(np.ones(3, np.float16)).dtype == np.float32
    t = mr.Tensor(_big([1, 2, 3], ">i8"))
    assert t.dtype == np.int64 and t.dtype.isnative
    with pytest.raises(TypeError, match="int64"):
        mr.tensor([1, 2], dtype=np.int64, requires_grad=True)
    logits = mr.tensor(np.zeros((3, 4)), requires_grad=True)
    loss = F.cross_entropy(logits, mr.Tensor(_big([0, 1, 3], ">i8")))
    np.testing.assert_allclose(loss.item(), np.log(4))


@pytest.mark.parametrize(("arr", "name"), REFUSED, ids=REFUSED_IDS)
def test_refused_dtypes_at_every_entry_point(arr, name):
    t = mr.tensor(np.zeros(2), requires_grad=True)
    entries = {
        "Tensor": lambda: mr.Tensor(arr),
        "tensor": lambda: mr.tensor(arr),
        "tensor dtype": lambda: mr.tensor(arr, dtype=np.float64),
        "Parameter": lambda: nn.Parameter(arr),
        ".data": lambda: setattr(mr.Tensor(np.zeros(2)), "data", arr),
        "op operand": lambda: t + arr,
        "reflected operand": lambda: arr * t if arr.dtype.kind in "cO" else t * arr,
        "backward grad": lambda: (t * 2).backward(arr),
        "register_buffer": lambda: nn.Module().register_buffer("b", arr),
    }
    if arr.dtype.kind == "f":  # an explicit dtype=float64 is a requested conversion
        del entries["tensor dtype"]
    for where, call in entries.items():
        with pytest.raises(TypeError, match=name.replace("[", r"\[")) as info:
            call()
        assert "dtype" in str(info.value), where


def test_refused_dtype_in_load_state_dict():
    bn = nn.BatchNorm2d(2)
    state = bn.state_dict()
    state["running_mean"] = np.array([1j, 2j])
    with pytest.raises(TypeError, match="complex128"):
        bn.load_state_dict(state)
    np.testing.assert_array_equal(bn.running_mean, [0.0, 0.0])


def test_big_endian_buffers_and_state_dict_become_native():
    bn = nn.BatchNorm2d(3)
    bn.register_buffer("running_mean", _big([1.0, 2.0, 3.0], ">f4"))
    assert bn.running_mean.dtype == np.float32 and bn.running_mean.dtype.isnative
    state = {k: np.asarray(v).astype(v.dtype.newbyteorder(">")) for k, v in bn.state_dict().items()}
    state["running_var"] = _big([4.0, 5.0, 6.0], ">f4")
    bn.load_state_dict(state)
    np.testing.assert_array_equal(bn.running_var, [4.0, 5.0, 6.0])
    assert all(b.dtype.isnative for b in bn.buffers())
    x = mr.tensor(np.random.default_rng(0).standard_normal((4, 3, 2, 2)).astype(np.float32))
    bn(x)  # a training step updates the (native) buffers in place
    assert not np.array_equal(bn.running_var, [4.0, 5.0, 6.0])


def test_batch_norm_refuses_non_native_buffers_it_would_update_in_place():
    x = mr.tensor(np.random.default_rng(0).standard_normal((4, 2, 3, 3)))
    rm, rv = _big([0.0, 0.0]), _big([1.0, 1.0])
    with pytest.raises(TypeError, match="running_mean.*>f8"):
        F.batch_norm(x, rm, rv, training=True)
    out = F.batch_norm(x, rm, rv, training=False)  # read only: converted at the door
    np.testing.assert_allclose(out.data, x.data / np.sqrt(1 + 1e-5), rtol=1e-12)


@pytest.mark.parametrize("name", ["numba", "numpy"])
def test_relu_and_batch_norm_of_big_endian_input_on_each_backend(name):
    rng = np.random.default_rng(0)
    native = rng.standard_normal((2, 3, 4, 5))
    with mr.use_backend(name):
        # a native call of the same rank first (the reproducer gave garbage after it)
        mr.Tensor(native[:, :, 1:, :]).relu()
        big = _big(native)
        out = F.relu(mr.Tensor(big))
        assert out.dtype == np.float64 and out.dtype.isnative
        assert (out.data >= 0).all()
        np.testing.assert_array_equal(out.data, np.maximum(native, 0))
        rm, rv = np.zeros(3), np.ones(3)
        bn = F.batch_norm(mr.Tensor(big), rm, rv, training=True)
        ref = (native - native.mean((0, 2, 3), keepdims=True)) / np.sqrt(
            native.var((0, 2, 3), keepdims=True) + 1e-5
        )
        np.testing.assert_allclose(bn.data, ref, rtol=1e-10, atol=1e-10)
        np.testing.assert_allclose(rm, 0.1 * native.mean((0, 2, 3)), rtol=1e-10)


def test_big_endian_operand_and_upstream_gradient():
    x = mr.tensor(np.array([1.0, -2.0, 3.0]), requires_grad=True)
    y = x * _big([2.0, 2.0, 2.0]) + _big([1.0, 1.0, 1.0])
    assert y.dtype.isnative
    np.testing.assert_array_equal(y.data, [3.0, -3.0, 7.0])
    r = _big([1.0, 1.0, 1.0]) - x  # the reflected operator, through Tensor.__rsub__
    assert r.dtype == np.float64 and r.dtype.isnative
    np.testing.assert_array_equal(r.data, [0.0, 3.0, -2.0])
    y.backward(_big([1.0, 10.0, 100.0]))
    assert x.grad.dtype == np.float64 and x.grad.dtype.isnative
    np.testing.assert_array_equal(x.grad, [2.0, 20.0, 200.0])


def test_data_assignment_follows_the_rules():
    p = nn.Parameter(np.zeros(2, np.float32))
    p.data = _big([1.0, 2.0])
    assert p.dtype == np.float64 and p.dtype.isnative
    with pytest.raises(TypeError, match="requires grad.*int64"):
        p.data = np.array([1, 2])


def test_function_apply_is_the_door_for_raw_array_arguments():
    seen = []

    class Scale(mr.Function):
        @staticmethod
        def forward(ctx, x, factor):
            seen.append(factor.dtype)
            return x * factor

        @staticmethod
        def backward(ctx, g):
            return g, None

    out = Scale.apply(mr.tensor([1.0, 2.0]), _big([3.0, 4.0]))
    assert seen == [np.dtype(np.float64)]
    np.testing.assert_array_equal(out.data, [3.0, 8.0])
    with pytest.raises(TypeError, match="Scale argument 1.*complex"):
        Scale.apply(mr.tensor([1.0, 2.0]), np.array([1j, 2j]))


def test_non_contiguous_and_negative_stride_arrays_still_work():
    base = np.arange(24.0).reshape(4, 6) - 10
    view = base[::-1, ::2]
    t = mr.Tensor(view)
    assert np.shares_memory(t.data, base)  # Tensor(ndarray) shares
    np.testing.assert_array_equal(t.relu().data, np.maximum(view, 0))
    big_view = _big(base)[::-1, ::2]
    np.testing.assert_array_equal(mr.Tensor(big_view).relu().data, np.maximum(view, 0))


# -- 4. copies, hooks, seeds -------------------------------------------------------------


def test_tensor_copies_tensors_and_arrays_but_Tensor_shares():
    arr = np.array([1.0, 2.0])
    src = mr.Tensor(arr, requires_grad=True)
    copy_t, copy_a, shared = mr.tensor(src), mr.tensor(arr), mr.Tensor(arr)
    arr[0] = 99.0
    assert copy_t.data[0] == 1.0 and copy_a.data[0] == 1.0 and shared.data[0] == 99.0
    assert copy_t.is_leaf and not copy_t.requires_grad
    f32 = np.array([1.0, 2.0], np.float32)
    copy32 = mr.tensor(f32, dtype=np.float32)
    f32[0] = 5.0
    assert copy32.data[0] == 1.0


@pytest.mark.parametrize("leaf", [True, False], ids=["leaf", "non-leaf"])
def test_hook_returning_the_wrong_shape_raises(leaf):
    x = mr.tensor([1.0, 2.0, 3.0], requires_grad=True)
    target = x if leaf else x * 2
    target.register_hook(lambda g: np.zeros(7))
    with pytest.raises(ValueError, match=r"shape \(7,\).*\(3,\)"):
        (target * 1.0).sum().backward()
    assert x.grad is None


def test_hook_returning_the_other_float_dtype_is_cast():
    x = mr.tensor(np.array([1.0, 2.0], np.float32), requires_grad=True)
    x.register_hook(lambda g: g.astype(np.float64) * 2)
    (x * 3).sum().backward()
    assert x.grad.dtype == np.float32
    np.testing.assert_array_equal(x.grad, [6.0, 6.0])


@pytest.mark.parametrize(
    ("grad", "error", "match"),
    [
        (np.array([1j, 2j]), TypeError, "complex128"),
        (np.array([1.0, 2.0], dtype=object), TypeError, "object"),
        (np.array(["a", "b"]), TypeError, "<U1"),
        ("ab", TypeError, "<U2"),
        (np.ones(3), ValueError, r"shape \(3,\).*\(2,\)"),
        (np.ones((2, 1)), ValueError, r"shape \(2, 1\)"),
    ],
    ids=["complex", "object", "str-array", "str", "too-long", "2-d"],
)
def test_backward_refuses_bad_upstream_gradients(grad, error, match):
    x = mr.tensor(np.array([1.0, 2.0], np.float32), requires_grad=True)
    y = x * 2
    with pytest.raises(error, match=match):
        y.backward(grad)
    assert x.grad is None
    y.backward(np.array([1.0, 1.0]))  # the graph is untouched by the refused call
    np.testing.assert_array_equal(x.grad, [2.0, 2.0])


def test_backward_casts_a_float_gradient_of_the_other_dtype():
    x = mr.tensor(np.array([1.0, 2.0], np.float32), requires_grad=True)
    (x * 2).backward(mr.tensor(np.array([0.5, 1.5], np.float64), dtype=np.float64))
    assert x.grad.dtype == np.float32
    np.testing.assert_array_equal(x.grad, [1.0, 3.0])
    z = mr.tensor(np.array([1.0, 2.0]), requires_grad=True)
    (z * 2).backward(np.array([1.0, 1.0], np.float32))
    assert z.grad.dtype == np.float64


# -- fuzz findings, second round (session 7) --------------------------------------------------


def test_a_leaf_hook_runs_once_on_the_summed_gradient_and_can_be_removed(torch):
    calls = []
    x = mr.tensor(np.ones(3), requires_grad=True)
    handle = x.register_hook(lambda g: (calls.append(g.copy()), np.ones_like(g))[1])
    (x * 2 + x * 3).sum().backward()
    tx = torch.ones(3, dtype=torch.float64, requires_grad=True)
    tx.register_hook(lambda g: torch.ones_like(g))
    (tx * 2 + tx * 3).sum().backward()
    assert len(calls) == 1 and np.array_equal(calls[0], np.full(3, 5.0))
    np.testing.assert_array_equal(x.grad, tx.grad.numpy())
    handle.remove()
    handle.remove()  # twice is harmless, as in torch
    x.grad = None
    (x * x).sum().backward()
    assert len(calls) == 1 and np.array_equal(x.grad, np.full(3, 2.0))


def test_optimizer_params_like_torch():
    p = nn.Parameter(np.ones((3, 4), np.float32))
    with pytest.raises(TypeError, match="iterable of Tensors"):
        mr.optim.SGD(p, lr=0.1)  # list(p) would have optimized its rows
    model = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 1))
    model[0].requires_grad_(False)  # a frozen backbone: accepted, left alone by step
    opt = mr.optim.SGD(model.parameters(), lr=0.1)
    frozen = model[0].weight.data.copy()
    model(mr.randn(4, 2)).sum().backward()
    opt.step()
    np.testing.assert_array_equal(model[0].weight.data, frozen)
    with pytest.raises(ValueError, match="non-leaf"):
        mr.optim.SGD([p * 2], lr=0.1)


def test_data_loader_collates_like_torch():
    class Arrays(mr.data.Dataset):
        def __len__(self):
            return 4

        def __getitem__(self, i):
            return np.full(3, i, np.float32)

    class Dicts(Arrays):
        def __getitem__(self, i):
            return {"x": np.full(3, i, np.float32), "y": i}

    batch = next(iter(mr.data.DataLoader(Arrays(), batch_size=2)))
    assert isinstance(batch, mr.Tensor) and batch.shape == (2, 3)
    batch = next(iter(mr.data.DataLoader(Dicts(), batch_size=2)))
    assert batch["x"].shape == (2, 3) and batch["y"].data.tolist() == [0, 1]


def test_module_names_and_assignments_are_checked_like_torch():
    for key in ("parameters", "training"):
        with pytest.raises(KeyError, match="already exists"):
            nn.ModuleDict({key: nn.ReLU()})
    for name in ("a.b", ""):
        with pytest.raises(KeyError):
            nn.Module().add_module(name, nn.ReLU())
    with pytest.raises(TypeError, match="not a Module"):
        nn.Module().add_module("x", 3)
    lin = nn.Linear(2, 2)
    with pytest.raises(TypeError, match="nn.Parameter or None"):
        lin.weight = mr.randn(2, 2)
    assert [n for n, _ in lin.named_parameters()] == ["weight", "bias"]
    lin.bias = None  # allowed: no bias
    assert list(lin.state_dict()) == ["weight"]
    seq = nn.Sequential(nn.Linear(2, 2))
    with pytest.raises(TypeError, match="child module"):
        setattr(seq, "0", mr.randn(2))


def test_sequential_api_like_torch(torch):
    from collections import OrderedDict

    named = nn.Sequential(
        OrderedDict([("a", nn.Linear(2, 2)), ("r", nn.ReLU()), ("b", nn.Linear(2, 1))])
    )
    assert list(named[1:].state_dict()) == ["b.weight", "b.bias"]
    seq = nn.Sequential(nn.Linear(2, 2), nn.ReLU(), nn.Linear(2, 1))
    ref = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.ReLU(), torch.nn.Linear(2, 1))
    assert list(seq[1:].state_dict()) == list(ref[1:].state_dict()) == ["2.weight", "2.bias"]
    assert seq[np.int64(-1)] is seq[2] and nn.ModuleList([nn.ReLU()])[np.int64(0)] is not None
    del seq[0]
    del ref[0]
    assert list(seq._modules) == list(ref._modules) == ["0", "1"]
    seq.insert(0, nn.Linear(2, 2)).extend([nn.ReLU()])
    first = nn.Linear(2, 2)
    seq[0] = first  # replaced in place: the order is kept
    assert list(seq._modules) == ["0", "1", "2", "3"] and seq[0] is first
    assert isinstance(seq.pop(1), nn.ReLU) and len(seq) == 3
    with pytest.raises(IndexError):
        seq[3]
    with pytest.raises(TypeError):
        seq[1.0]
    lin = nn.Linear(2, 2)
    lin.weight = nn.Parameter(np.zeros((2, 2), np.float32))
    assert list(lin.state_dict()) == ["weight", "bias"]  # replaced in place


def test_schedulers_and_seeds_check_their_arguments_like_torch(torch):
    from minires.optim import lr_scheduler as L

    def lrs(make, tmake, n=8):
        opt = mr.optim.SGD([nn.Parameter(np.ones(2, np.float32))], lr=1.0)
        topt = torch.optim.SGD([torch.nn.Parameter(torch.ones(2))], lr=1.0)
        s, ts, out = make(opt), tmake(topt), []
        for _ in range(n):
            out.append((opt.param_groups[0]["lr"], topt.param_groups[0]["lr"]))
            opt.step(), s.step(), topt.step(), ts.step()
        return np.array(out)

    T = torch.optim.lr_scheduler
    for make, tmake in [
        (lambda o: L.CosineAnnealingLR(o, T_max=2.5), lambda o: T.CosineAnnealingLR(o, T_max=2.5)),
        (lambda o: L.MultiStepLR(o, [-1, 3]), lambda o: T.MultiStepLR(o, [-1, 3])),
        (lambda o: L.MultiStepLR(o, [0, 3]), lambda o: T.MultiStepLR(o, [0, 3])),
    ]:
        got = lrs(make, tmake)
        np.testing.assert_allclose(got[:, 0], got[:, 1], rtol=1e-12)
    opt = mr.optim.SGD([nn.Parameter(np.ones(2, np.float32))], lr=1.0)
    for bad in (
        lambda: L.StepLR(opt, "3"), lambda: L.StepLR(opt, 2.5), lambda: L.StepLR(opt, 2, gamma="x"),
        lambda: L.MultiStepLR(opt, 3), lambda: L.LambdaLR(opt, 3),
    ):  # fmt: skip
        with pytest.raises(TypeError):
            bad()
    mr.manual_seed(-1)  # taken modulo 2**64, as torch does
    for seed in (1.5, None, True):
        with pytest.raises(TypeError, match="seed"):
            mr.manual_seed(seed)
    mr.manual_seed(0)


def test_creation_and_layer_arguments_are_checked():
    for value in (None, [1, 2], "a"):
        with pytest.raises(TypeError, match="fill_value"):
            mr.full((2,), value)
    with pytest.raises(TypeError, match="got a Tensor"):
        mr.stack(mr.zeros(2, 2))
    with pytest.raises(TypeError, match="expected a Tensor"):
        mr.zeros_like([1, 2])
    for shape in (2.0, None):
        with pytest.raises(TypeError, match="normalized_shape"):
            nn.LayerNorm(shape)
    with pytest.raises(TypeError, match="label_smoothing"):
        nn.CrossEntropyLoss(label_smoothing="a")


def test_no_grad_decorates_without_parentheses():
    @mr.no_grad
    def double(x):
        return x * 2

    x = mr.randn(2, requires_grad=True)
    assert not double(x).requires_grad and (x * 2).requires_grad


def test_analysis_functions_check_their_arguments():
    from minires import analysis

    model = mr.models.resnet20()
    x, y = np.zeros((4, 3, 32, 32), np.float32), np.zeros(4, np.int64)
    for batch_size in (-1, 0):
        with pytest.raises(ValueError, match="batch_size"):
            analysis.evaluate(model, x, y, batch_size=batch_size)
    with pytest.raises(ValueError, match="non-empty"):
        analysis.evaluate(model, x[:0], y[:0])
    for kwargs in ({"lengths": [12]}, {"lengths": [-1]}, {"samples": 0}):
        with pytest.raises(ValueError):
            analysis.path_gradients(model, x[:2], y[:2], **kwargs)
