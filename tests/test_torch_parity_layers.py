"""The layer modules as a PyTorch user meets them, with torch itself as the oracle:
constructor arguments and the attributes they leave (``bias=``, ``device=``/``dtype=``,
``padding_mode``, pools' ``stride``), ``repr``, BatchNorm's running statistics and
buffers over several training steps, ``reset_parameters``, and the containers' list
operators. Each test failed before the fix it guards (an audit of ``minires.nn``).
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import minires as mr
from minires import nn

torch = pytest.importorskip("torch", reason="PyTorch not installed: torch-oracle tests skipped")
T = torch.nn
# torch warns that an even kernel with padding="same" pads a copy of the input
pytestmark = pytest.mark.filterwarnings("ignore:Using padding='same':UserWarning")

TORCH_DTYPE = {np.float32: torch.float32, np.float64: torch.float64}
TOL = {np.float32: 2e-5, np.float64: 1e-10}


def copy_torch_state(ours: nn.Module, theirs: torch.nn.Module) -> None:
    """Load torch's state dict into ours (as ndarrays): the same keys, and the values
    read back equal."""
    state = theirs.state_dict()
    assert list(ours.state_dict()) == list(state)
    ours.load_state_dict({k: v.numpy() for k, v in state.items()})
    for key, value in ours.state_dict().items():
        np.testing.assert_array_equal(value, state[key].numpy())


def assert_close(ours, theirs, dtype) -> None:
    theirs = theirs.detach().numpy() if isinstance(theirs, torch.Tensor) else np.asarray(theirs)
    assert ours is not None and ours.shape == theirs.shape and ours.dtype == theirs.dtype
    np.testing.assert_allclose(ours, theirs, rtol=TOL[dtype], atol=TOL[dtype])


def run_both(ours, theirs, x: np.ndarray, dtype) -> None:
    """One forward/backward of both modules on ``x``: the output, the input gradient and
    every parameter gradient equal torch's (the parameters' gradients then cleared)."""
    xm, xt = mr.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    out_m, out_t = ours(xm), theirs(xt)
    g = np.random.default_rng(x.size).standard_normal(tuple(out_t.shape)).astype(dtype)
    out_m.backward(g)
    out_t.backward(torch.tensor(g))
    assert_close(out_m.data, out_t, dtype)
    assert_close(xm.grad, xt.grad, dtype)
    for (name, p), (tname, tp) in zip(ours.named_parameters(), theirs.named_parameters()):
        assert name == tname
        assert_close(p.grad, tp.grad, dtype)
    ours.zero_grad()
    theirs.zero_grad()


# -- repr and attributes ---------------------------------------------------------------------

REPRS = [
    "Linear(3, 4)",
    "Linear(3, 4, bias=False)",
    "Conv2d(3, 16, 3, padding=1, bias=False)",
    "Conv2d(4, 8, (3, 5), stride=2, padding=(1, 2), dilation=2, groups=4)",
    "Conv2d(2, 2, 3, padding=1, padding_mode='reflect')",
    "BatchNorm2d(4)",
    "BatchNorm2d(4, eps=1e-3, momentum=None, affine=False, track_running_stats=False)",
    "BatchNorm2d(4, bias=False)",
    "SyncBatchNorm(4)",
    "GroupNorm(2, 4)",
    "GroupNorm(2, 4, affine=False)",
    "GroupNorm(2, 4, bias=False)",
    "LayerNorm((3, 4), elementwise_affine=False)",
    "LayerNorm(4, bias=False)",
    "MaxPool2d(2)",
    "MaxPool2d(3, 2, 1)",
    "AvgPool2d(2)",
    "AvgPool2d(3, 2, 1)",
    "AdaptiveAvgPool2d((None, 3))",
    "Flatten()",
    "Flatten(0, 2)",
    "ReLU(inplace=True)",
    "Sequential(lib.Linear(2, 3), lib.ReLU())",
    "ModuleList([lib.Linear(2, 2) for _ in range(3)] + [lib.Sequential(lib.ReLU())] * 2)",
    "ModuleList()",
]


@pytest.mark.parametrize("expr", REPRS)
def test_repr_matches_torch(expr):
    ours, theirs = (eval(f"lib.{expr}", {"lib": lib}) for lib in (nn, T))
    assert repr(ours) == repr(theirs)


def test_pools_read_their_stride_as_torch():
    for ours, theirs in (
        (nn.MaxPool2d(3), T.MaxPool2d(3)),
        (nn.AvgPool2d((2, 3)), T.AvgPool2d((2, 3))),
    ):
        assert ours.stride == theirs.stride  # None means the kernel size, kept as such
    for ours, theirs in ((nn.Conv2d(2, 2, 3), T.Conv2d(2, 2, 3)), (nn.ReLU(True), T.ReLU(True))):
        for name in ("padding_mode", "inplace"):
            assert getattr(ours, name, "-") == getattr(theirs, name, "-")


# -- device= and dtype= -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "make",
    [
        lambda lib, **kw: lib.Linear(3, 2, **kw),
        lambda lib, **kw: lib.Conv2d(2, 2, 3, **kw),
        lambda lib, **kw: lib.BatchNorm2d(3, **kw),
        lambda lib, **kw: lib.SyncBatchNorm(3, **kw),
        lambda lib, **kw: lib.GroupNorm(1, 3, **kw),
        lambda lib, **kw: lib.LayerNorm(3, **kw),
    ],
)
def test_device_and_dtype_arguments_as_torch(make):
    # dtype=None is torch's default float32 (NumPy reads None as float64)
    assert all(v.dtype == np.float32 for v in make(nn, dtype=None).state_dict().values()
               if v.dtype.kind == "f")  # fmt: skip
    for spelling in (torch.float64, "double", np.float64):
        ours = make(nn, device="cpu", dtype=spelling)
        theirs = make(T, device="cpu", dtype=torch.float64)
        assert {k: v.dtype.name for k, v in ours.state_dict().items()} == {
            k: str(v.dtype).removeprefix("torch.").replace("long", "int64")
            for k, v in theirs.state_dict().items()
        }
    with pytest.raises(ValueError, match="CPU only"):
        make(nn, device="cuda")
    with pytest.raises(TypeError, match="int32"):
        make(nn, dtype=np.int32)


def test_positional_arguments_in_torchs_order():
    # Conv2d(..., bias, padding_mode, device, dtype); Linear(in, out, bias, device, dtype)
    conv = nn.Conv2d(2, 4, 3, 1, 1, 1, 2, False, "circular", "cpu", torch.float64)
    assert conv.padding_mode == "circular" and conv.bias is None
    assert conv.weight.dtype == np.float64
    assert nn.Linear(2, 3, True, None, "double").weight.dtype == np.float64
    bn = nn.BatchNorm2d(3, 1e-5, 0.1, True, True, "cpu", torch.float64)
    assert bn.running_var.dtype == np.float64
    assert nn.GroupNorm(1, 2, 1e-5, True, None, "double").weight.dtype == np.float64
    assert nn.LayerNorm(2, 1e-5, True, True, None, "double").weight.dtype == np.float64


# -- Conv2d padding_mode -----------------------------------------------------------------------


@st.composite
def padded_conv_case(draw):
    groups = draw(st.sampled_from([1, 2]))
    c_in, c_out = 2 * draw(st.integers(1, 2)), 2 * draw(st.integers(1, 2))
    h, w = draw(st.integers(3, 6)), draw(st.integers(3, 6))  # > padding, >= kernel
    k = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    padding = draw(st.sampled_from(["same", "valid", 1, (0, 2), (2, 1)]))
    mode = draw(st.sampled_from(["reflect", "replicate", "circular"]))
    stride = 1 if padding == "same" else draw(st.sampled_from([1, 2, (1, 2)]))
    batch = draw(st.sampled_from([(), (0,), (1,), (2,)]))  # () is unbatched (C, H, W)
    return dict(
        args=(c_in, c_out, k, stride, padding, 1, groups, draw(st.booleans()), mode),
        shape=(*batch, c_in, h, w),
        dtype=draw(st.sampled_from([np.float32, np.float64])),
    )


@settings(max_examples=60)
@given(case=padded_conv_case())
def test_conv2d_padding_modes_match_torch(case):
    dtype = case["dtype"]
    ours = nn.Conv2d(*case["args"], dtype=dtype)
    theirs = T.Conv2d(*case["args"], dtype=TORCH_DTYPE[dtype])
    copy_torch_state(ours, theirs)
    x = np.random.default_rng(0).standard_normal(case["shape"]).astype(dtype)
    run_both(ours, theirs, x, dtype)


def test_conv2d_padding_mode_errors_name_the_problem():
    with pytest.raises(ValueError, match="padding_mode must be one of .* got 'zero'"):
        nn.Conv2d(1, 1, 3, padding_mode="zero")
    with pytest.raises(ValueError, match=r"padding \(3, 3\) on dim 3 of input \(1, 1, 3, 3\)"):
        nn.Conv2d(1, 1, 3, padding=3, padding_mode="reflect")(mr.randn(1, 1, 3, 3))
    with pytest.raises(ValueError, match="circular.*<= the input size"):
        nn.Conv2d(1, 1, 3, padding=4, padding_mode="circular")(mr.randn(1, 1, 3, 3))
    # the wrong channel count is reported with the input's own shape, not the padded one
    with pytest.raises(ValueError, match=r"\(1, 2, 3, 3\) has 2"):
        nn.Conv2d(1, 1, 3, padding=1, padding_mode="replicate")(mr.randn(1, 2, 3, 3))


# -- BatchNorm2d / SyncBatchNorm / GroupNorm / LayerNorm ---------------------------------------


@st.composite
def batchnorm_case(draw):
    return dict(
        kwargs=dict(
            eps=draw(st.sampled_from([1e-5, 1e-2])),
            momentum=draw(st.sampled_from([0.1, 0.5, None])),
            affine=draw(st.booleans()),
            track_running_stats=draw(st.booleans()),
            bias=draw(st.booleans()),
        ),
        cls=draw(st.sampled_from(["BatchNorm2d", "SyncBatchNorm"])),
        shape=draw(st.sampled_from([(4, 3, 3, 2), (1, 3, 2, 1), (2, 3, 1, 1)])),
        dtype=draw(st.sampled_from([np.float32, np.float64])),
    )


@settings(max_examples=50)
@given(case=batchnorm_case())
def test_batchnorm_training_steps_then_eval_match_torch(case):
    """Outputs, gradients and the buffers after three training steps, then evaluation."""
    dtype, kwargs = case["dtype"], case["kwargs"]
    ours = getattr(nn, case["cls"])(3, dtype=dtype, **kwargs)
    theirs = getattr(T, case["cls"])(3, dtype=TORCH_DTYPE[dtype], **kwargs)
    rng = np.random.default_rng(1)
    if theirs.weight is not None:
        with torch.no_grad():
            theirs.weight.uniform_(0.5, 2)
            if theirs.bias is not None:
                theirs.bias.uniform_(-1, 1)
    copy_torch_state(ours, theirs)
    for step in range(4):
        if step == 3:
            ours.eval()
            theirs.eval()
        x = (rng.standard_normal(case["shape"]) * 2 + step).astype(dtype)
        run_both(ours, theirs, x, dtype)
        state = theirs.state_dict()
        assert list(ours.state_dict()) == list(state)
        for key, value in ours.state_dict().items():  # num_batches_tracked: int64 as torch
            assert_close(value, state[key], dtype)


def test_batchnorm_without_running_stats_has_none_buffers_as_torch():
    ours, theirs = (
        nn.BatchNorm2d(3, track_running_stats=False),
        T.BatchNorm2d(3, track_running_stats=False),
    )
    for name in ("running_mean", "running_var", "num_batches_tracked"):
        assert getattr(ours, name) is None and getattr(theirs, name) is None
    # switched off after construction: training leaves the buffers alone (torch's rule) ...
    ours, theirs = nn.BatchNorm2d(3), T.BatchNorm2d(3)
    ours.track_running_stats = theirs.track_running_stats = False
    x = np.random.default_rng(2).standard_normal((4, 3, 2, 2)).astype(np.float32)
    run_both(ours, theirs, x, np.float32)
    np.testing.assert_array_equal(ours.running_mean, theirs.running_mean.numpy())
    assert int(ours.num_batches_tracked) == int(theirs.num_batches_tracked) == 0
    # ... and evaluation still normalises with them
    ours.running_mean[...] = 1.0
    theirs.running_mean.fill_(1.0)
    ours.eval()
    theirs.eval()
    run_both(ours, theirs, x, np.float32)


def test_batchnorm_checks_the_input_before_counting_the_batch():
    bn = nn.BatchNorm2d(3)
    with pytest.raises(ValueError, match=r"BatchNorm2d\(3\).*\(N, 3, H, W\).*\(2, 3, 4\)"):
        bn(mr.randn(2, 3, 4))
    with pytest.raises(ValueError, match=r"BatchNorm2d\(3\).*\(2, 4, 2, 2\)"):
        bn(mr.randn(2, 4, 2, 2))
    assert int(bn.num_batches_tracked) == 0


def test_sync_batchnorm_without_bias_is_batchnorm_on_one_process():
    bn = nn.BatchNorm2d(3, bias=False)
    sync = nn.SyncBatchNorm.convert_sync_batchnorm(nn.Sequential(bn))[0]
    assert isinstance(sync, nn.SyncBatchNorm) and sync.bias is None
    assert sync.weight is bn.weight and list(sync.state_dict()) == list(bn.state_dict())
    x = mr.randn(4, 3, 2, 2)
    np.testing.assert_array_equal(sync(x).data, nn.BatchNorm2d(3, bias=False)(x).data)


@pytest.mark.parametrize(
    "make",
    [
        lambda lib: lib.GroupNorm(2, 6, bias=False),
        lambda lib: lib.GroupNorm(3, 6, affine=False),
        lambda lib: lib.LayerNorm((3, 2), bias=False),
    ],
)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_group_and_layer_norm_without_bias_match_torch(make, dtype):
    ours, theirs = make(nn).to(dtype), make(T).to(TORCH_DTYPE[dtype])
    if theirs.weight is not None:
        with torch.no_grad():
            theirs.weight.uniform_(0.5, 2)
    copy_torch_state(ours, theirs)
    x = np.random.default_rng(3).standard_normal((2, 6, 3, 2)).astype(dtype)
    run_both(ours, theirs, x, dtype)


@pytest.mark.parametrize(
    "make",
    [
        lambda lib: lib.BatchNorm2d(3),
        lambda lib: lib.BatchNorm2d(3, bias=False),
        lambda lib: lib.GroupNorm(1, 3),
        lambda lib: lib.LayerNorm(3),
    ],
)
def test_reset_parameters_as_torch(make):
    ours, theirs = make(nn), make(T)
    x = np.random.default_rng(4).standard_normal((4, 3, 2, 3)).astype(np.float32)
    for module in (ours, theirs):
        for p in module.parameters():
            p.data[...] = 3.0
    run_both(ours, theirs, x, np.float32)  # moves the running statistics
    ours.reset_parameters()
    theirs.reset_parameters()
    for key, value in theirs.state_dict().items():
        np.testing.assert_array_equal(ours.state_dict()[key], value.numpy())


def test_norm_layers_check_their_arguments_where_built():
    for bad, error in [
        (lambda: nn.GroupNorm(2, 4, eps=-1), ValueError),
        (lambda: nn.GroupNorm(2, 4, affine="yes"), TypeError),
        (lambda: nn.LayerNorm(4, eps="a"), TypeError),
        (lambda: nn.LayerNorm(4, elementwise_affine=1), TypeError),
        (lambda: nn.BatchNorm2d(4, bias=None), TypeError),
    ]:
        with pytest.raises(error, match="Norm"):
            bad()
    with pytest.raises(TypeError, match="group_norm: input must be a Tensor, got list"):
        nn.GroupNorm(1, 2)([[1.0, 2.0]])


# -- AdaptiveAvgPool2d: None in output_size -----------------------------------------------------


@pytest.mark.parametrize("size", [(None, 3), (2, None), [None, None]])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_adaptive_avg_pool_none_keeps_the_input_size_as_torch(size, dtype):
    ours, theirs = nn.AdaptiveAvgPool2d(size), T.AdaptiveAvgPool2d(size)
    assert ours.output_size == theirs.output_size
    x = np.random.default_rng(5).standard_normal((2, 3, 5, 7)).astype(dtype)
    run_both(ours, theirs, x, dtype)
    with pytest.raises(TypeError, match="output_size"):
        nn.AdaptiveAvgPool2d(None)  # torch fails at the call: len(None)


# -- containers -------------------------------------------------------------------------------


def kinds(container) -> list[str]:
    return [type(m).__name__ for m in container]


@pytest.mark.parametrize("lib", [nn, T], ids=["minires", "torch"])
def test_container_operators_as_torch(lib):
    """The same sequence of operations on both libraries gives the same structure (the
    oracle is the torch run of this very test)."""
    s = lib.Sequential(lib.ReLU(), lib.Tanh())
    assert kinds(s + s) == kinds(s * 2) == kinds(2 * s) == ["ReLU", "Tanh"] * 2
    assert (s * 2)[2] is s[0]  # the same modules, not copies
    s += lib.Sequential(lib.Sigmoid())
    s *= 2
    assert kinds(s) == ["ReLU", "Tanh", "Sigmoid"] * 2
    with pytest.raises(ValueError):
        s + [lib.ReLU()]
    with pytest.raises(ValueError):
        s * 0
    with pytest.raises(TypeError):
        s * 1.5
    ml = lib.ModuleList([lib.ReLU(), lib.Tanh(), lib.Sigmoid()])
    both = ml + [lib.ReLU()]
    assert type(both) is lib.ModuleList and kinds(both) == ["ReLU", "Tanh", "Sigmoid", "ReLU"]
    ml += [lib.Flatten()]
    assert type(ml.pop(1)).__name__ == "Tanh"
    assert [n for n, _ in ml.named_children()] == ["0", "1", "2"]
    assert kinds(ml) == ["ReLU", "Sigmoid", "Flatten"]
    md = lib.ModuleDict(OrderedDict(b=lib.ReLU()))
    md.update(lib.ModuleDict(OrderedDict(a=lib.Tanh())))
    assert list(md) == ["b", "a"]
    with pytest.raises(TypeError):
        md[1] = lib.ReLU()
    md.clear()
    assert len(md) == 0 and not list(md.children())


def test_container_operators_match_torchs_state_dict_keys():
    ours = nn.Sequential(nn.Linear(2, 2), nn.ReLU()) + nn.Sequential(nn.Linear(2, 3))
    theirs = T.Sequential(T.Linear(2, 2), T.ReLU()) + T.Sequential(T.Linear(2, 3))
    copy_torch_state(ours, theirs)
    run_both(ours, theirs, np.ones((1, 2), np.float32), np.float32)


# -- empty batches and unbatched input through the functional ops ---------------------------


def test_batchnorm_of_an_empty_batch_as_torch():
    ours, theirs = nn.BatchNorm2d(3), T.BatchNorm2d(3)
    run_both(ours, theirs, np.zeros((0, 3, 2, 2), np.float32), np.float32)
    assert int(ours.num_batches_tracked) == int(theirs.num_batches_tracked) == 1


@pytest.mark.parametrize("shape", [(3, 5, 7), (0, 3, 5, 7)])
def test_adaptive_avg_pool_unbatched_and_empty_batch_as_torch(shape):
    ours, theirs = nn.AdaptiveAvgPool2d((2, 3)), T.AdaptiveAvgPool2d((2, 3))
    run_both(ours, theirs, np.ones(shape, np.float32), np.float32)
