"""ResNeXt's three equivalent forms (Fig. 3): (a) `ResNeXtPaths`, (b) `ResNeXtConcat` and
(c) `Bottleneck(groups=C)` compute one function - output, input gradient, parameter
gradients and running statistics equal in float64 - plus the depthwise-separable block."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import minires as mr
from minires import nn
from minires.models import (
    BasicBlock,
    Bottleneck,
    DepthwiseSeparableBlock,
    PlainBottleneck,
    ResNeXtConcat,
    ResNeXtPaths,
    conv1x1,
)

TOL = dict(rtol=1e-10, atol=1e-10)


def n_params(m: nn.Module) -> int:
    return sum(p.data.size for p in m.parameters())


def grouped_block(cardinality, d, planes, inplanes, stride, downsample, stride_in_1x1=False):
    """A float64 grouped Bottleneck with width d per group and random BN state."""
    out = 4 * planes
    ds = None
    if downsample:
        ds = nn.Sequential(conv1x1(inplanes, out, stride), nn.BatchNorm2d(out))
    b = Bottleneck(inplanes, planes, stride, ds, groups=cardinality, base_width=64 * d // planes,
                   stride_in_1x1=stride_in_1x1).double()  # fmt: skip
    assert b.conv2.groups == cardinality and b.conv2.out_channels == cardinality * d
    rng = np.random.default_rng(cardinality * 100 + d)
    for m in b.modules():  # non-trivial BN parameters and running statistics
        if isinstance(m, nn.BatchNorm2d):
            c = m.num_features
            m.weight.data[...] = rng.uniform(0.5, 1.5, c)
            m.bias.data[...] = rng.normal(0, 0.3, c)
            m.running_mean[...] = rng.normal(0, 0.5, c)
            m.running_var[...] = rng.uniform(0.5, 2.0, c)
    return b


def run(block, x, g):
    """Forward + backward with upstream gradient g; returns (out, x.grad, {name: grad})."""
    xt = mr.tensor(x, requires_grad=True)
    block.zero_grad()
    out = block(xt)
    out.backward(g)
    return out.data, xt.grad, {n: p.grad for n, p in block.named_parameters()}


shapes = st.tuples(
    st.integers(2, 4),  # cardinality C
    st.integers(1, 3),  # width d per path
    st.sampled_from([1, 2]),  # planes (out = 4 * planes)
    st.sampled_from([1, 2]),  # stride
    st.booleans(),  # downsample (forced when the shape changes)
    st.integers(1, 5),  # inplanes when there is a downsample
    st.booleans(),  # stride on the first 1x1 instead of the 3x3
)


@pytest.mark.parametrize("form", [ResNeXtPaths, ResNeXtConcat], ids=["a_paths", "b_concat"])
@given(shape=shapes)
def test_forms_compute_the_grouped_bottleneck(form, shape):
    C, d, planes, stride, downsample, inplanes, s1x1 = shape
    if stride != 1:
        downsample = True
    if not downsample:
        inplanes = 4 * planes
    block_c = grouped_block(C, d, planes, inplanes, stride, downsample, s1x1)
    block_x = form.from_bottleneck(block_c)
    assert isinstance(block_x.paths, nn.ModuleList) and block_x.cardinality == C
    assert n_params(block_x) == n_params(block_c)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, inplanes, 5, 5))
    for mode in ("train", "eval", "train"):
        block_c.train(mode == "train")
        block_x.train(mode == "train")
        side = (5 + stride - 1) // stride
        g = rng.standard_normal((3, 4 * planes, side, side))
        out_c, gx_c, grads_c = run(block_c, x, g)
        out_x, gx_x, grads_x = run(block_x, x, g)
        np.testing.assert_allclose(out_x, out_c, **TOL)
        np.testing.assert_allclose(gx_x, gx_c, **TOL)
        mapped = block_x.bottleneck_state_dict(grads_x)
        assert set(mapped) == set(grads_c)
        for k, v in grads_c.items():
            np.testing.assert_allclose(mapped[k], v, err_msg=k, **TOL)
        # running statistics (and every other entry) updated identically
        state_x, state_c = block_x.bottleneck_state_dict(), block_c.state_dict()
        assert set(state_x) == set(state_c)
        for k, v in state_c.items():
            np.testing.assert_allclose(np.asarray(state_x[k], float), np.asarray(v, float),
                                       err_msg=k, **TOL)  # fmt: skip


def test_from_bottleneck_copies_and_keeps_dtype_and_mode():
    block = grouped_block(4, 2, 2, 8, 1, False).eval()
    a = ResNeXtPaths.from_bottleneck(block)
    assert not a.training and a.paths[0].conv1.weight.dtype == np.float64
    # slices: path 1 owns conv1/conv2 output channels 2..3 and conv3 input channels 2..3
    np.testing.assert_array_equal(a.paths[1].conv1.weight.data, block.conv1.weight.data[2:4])
    np.testing.assert_array_equal(a.paths[1].conv2.weight.data, block.conv2.weight.data[2:4])
    np.testing.assert_array_equal(a.paths[1].conv3.weight.data, block.conv3.weight.data[:, 2:4])
    np.testing.assert_array_equal(a.paths[1].bn2.running_var, block.bn2.running_var[2:4])
    # independent copies: changing one leaves the other alone
    a.paths[0].conv1.weight.data[...] = 0
    a.bn3.running_mean[...] = 7
    assert np.abs(block.conv1.weight.data[:2]).sum() > 0 and not (block.bn3.running_mean == 7).any()
    b = ResNeXtConcat.from_bottleneck(block)
    np.testing.assert_array_equal(b.conv3.weight.data, block.conv3.weight.data)
    assert list(b.state_dict())[:2] == ["paths.0.conv1.weight", "paths.0.bn1.weight"]


def test_constructor_matches_bottleneck_and_builds_a_net():
    for form in (ResNeXtPaths, ResNeXtConcat):
        for C, bw in ((4, 16), (8, 8), (1, 64)):  # C=1: one path, the plain bottleneck
            blk = form(16, 8, groups=C, base_width=bw)
            ref = Bottleneck(16, 8, groups=C, base_width=bw)
            assert blk.cardinality == C and n_params(blk) == n_params(ref)
        with pytest.raises(ValueError, match="width per path"):
            form(16, 4, groups=4, base_width=8)  # int(4 * 8 / 64) = 0
    # same constructor arguments as Bottleneck: a whole ResNet of form-(a) blocks
    net = mr.models.ResNet(ResNeXtPaths, [1, 1, 1, 1], num_classes=3, groups=4, width_per_group=4)
    ref = mr.models.ResNet(Bottleneck, [1, 1, 1, 1], num_classes=3, groups=4, width_per_group=4)
    assert n_params(net) == n_params(ref)
    assert net(mr.tensor(np.random.randn(2, 3, 32, 32).astype(np.float32))).shape == (2, 3)


def test_from_bottleneck_bad_input():
    with pytest.raises(ValueError, match="not grouped"):
        ResNeXtPaths.from_bottleneck(Bottleneck(16, 4))
    with pytest.raises(TypeError, match="BasicBlock"):
        ResNeXtConcat.from_bottleneck(BasicBlock(8, 8))
    with pytest.raises(TypeError, match="PlainBottleneck"):
        ResNeXtPaths.from_bottleneck(PlainBottleneck(16, 4, groups=2, base_width=32))
    with pytest.raises(TypeError, match="nn.Identity|Identity"):
        ResNeXtPaths.from_bottleneck(
            Bottleneck(16, 4, groups=2, base_width=32, norm_layer=lambda c: nn.Identity())
        )
    with pytest.raises(TypeError, match="Bottleneck"):
        ResNeXtPaths.from_bottleneck("not a block")


# -- depthwise-separable block ---------------------------------------------------------------


def test_depthwise_separable_block_layout_and_counts():
    blk = DepthwiseSeparableBlock(
        8, 16, stride=2, downsample=nn.Sequential(conv1x1(8, 16, 2), nn.BatchNorm2d(16))
    )
    assert blk.conv1.groups == 8 and blk.conv1.weight.shape == (8, 1, 3, 3)
    assert blk.conv2.weight.shape == (16, 8, 1, 1)
    # 9*C_in + C_in*C_out weights instead of the dense 3x3's 9*C_in*C_out
    assert blk.conv1.weight.data.size + blk.conv2.weight.data.size == 9 * 8 + 8 * 16
    s = mr.summary(blk, (8, 8, 8))
    assert s.total_macs == (9 * 8 + 8 * 16) * 4 * 4 + 8 * 16 * 4 * 4  # + the 1x1 downsample
    out = blk(mr.tensor(np.random.randn(2, 8, 8, 8).astype(np.float32)))
    assert out.shape == (2, 16, 4, 4) and (out.data >= 0).all()


def test_depthwise_separable_block_gradcheck():
    blk = DepthwiseSeparableBlock(3, 3).double()
    x = mr.tensor(np.random.randn(2, 3, 4, 4), requires_grad=True)
    assert mr.gradcheck(lambda x: blk(x), [x])


def test_depthwise_separable_block_matches_torch(torch):
    blk = DepthwiseSeparableBlock(4, 6, downsample=nn.Sequential(conv1x1(4, 6), nn.BatchNorm2d(6)))
    tn = torch.nn  # the same layout written in torch
    conv1 = tn.Conv2d(4, 4, 3, 1, 1, groups=4, bias=False)
    conv2 = tn.Conv2d(4, 6, 1, bias=False)
    ds = tn.Conv2d(4, 6, 1, bias=False)
    bn1, bn2, bnd = tn.BatchNorm2d(4), tn.BatchNorm2d(6), tn.BatchNorm2d(6)
    with torch.no_grad():
        conv1.weight.copy_(torch.from_numpy(blk.conv1.weight.data))
        conv2.weight.copy_(torch.from_numpy(blk.conv2.weight.data))
        ds.weight.copy_(torch.from_numpy(blk.downsample[0].weight.data))
    x = np.random.randn(2, 4, 6, 6).astype(np.float32)
    xt = torch.tensor(x, requires_grad=True)
    ref = torch.relu(bn2(conv2(torch.relu(bn1(conv1(xt))))) + bnd(ds(xt)))
    xm = mr.tensor(x, requires_grad=True)
    out = blk(xm)
    g = np.random.randn(*out.shape).astype(np.float32)
    out.backward(g)
    ref.backward(torch.from_numpy(g))
    np.testing.assert_allclose(out.data, ref.detach().numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(xm.grad, xt.grad.numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(blk.conv1.weight.grad, conv1.weight.grad.numpy(), rtol=1e-4,
                               atol=1e-5)  # fmt: skip
