"""Pre-activation ResNets (He et al. 2016b): exact parameter counts, state_dict keys, the
unit structure (nothing after the add, no BN after the stem, option A on the raw input,
projection on the pre-activated input), the registry and summary, and parity with a
PyTorch twin in float64 (loss, input gradient, every parameter gradient, BN buffers)."""

from __future__ import annotations

import numpy as np
import pytest

import minires as mr
import minires.functional as F
from minires import models as M
from minires import nn
from minires.interop import to_numpy_state_dict
from minires.models import PreActBasicBlock, PreActBottleneck, PreActResNet, ShortcutA

COUNTS = {
    "preact_resnet20": 269_722,
    "preact_resnet32": 464_154,
    "preact_resnet44": 658_586,
    "preact_resnet56": 853_018,
    "preact_resnet110": 1_727_962,
    "preact_resnet164": 1_703_258,
    "preact_resnet1001": 10_327_706,
}


def n_params(model: nn.Module) -> int:
    return sum(p.data.size for p in model.parameters())


@pytest.mark.parametrize("name", list(COUNTS))
def test_parameter_counts(name):
    with M.no_init():
        model = M.get_model(name)
    assert n_params(model) == COUNTS[name]
    assert getattr(M, name) is M.MODELS[name] and name in M.list_models()


@pytest.mark.parametrize("name", ["preact_resnet110", "preact_resnet1001"])
def test_summary_shows_the_counts(name, capsys):
    from minires.commands.summary import main

    assert main([name]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"{name}: input (3, 32, 32), {COUNTS[name]:,} params")
    # the stage column describes the residual branch, not the projection shortcut
    basic = "[3x3, 64; 3x3, 64] x18"
    assert (basic if name.endswith("110") else "[1x1, 64; 3x3, 64; 1x1, 256] x111") in out


def test_state_dict_keys():
    with M.no_init():
        basic, bottle = M.preact_resnet20(), M.preact_resnet164()
    keys = [k for k in basic.state_dict() if k.endswith("weight")]
    assert keys[:6] == [
        "conv1.weight", "layer1.0.bn1.weight", "layer1.0.conv1.weight",
        "layer1.0.bn2.weight", "layer1.0.conv2.weight", "layer1.1.bn1.weight",
    ]  # fmt: skip
    assert keys[-2:] == ["bn.weight", "fc.weight"]
    unit = {k.split(".")[2] for k in basic.state_dict() if k.startswith("layer2.0.")}
    assert unit == {"bn1", "conv1", "bn2", "conv2"}  # option A has no parameters
    unit = {k.split(".")[2] for k in bottle.state_dict() if k.startswith("layer2.0.")}
    assert unit == {"bn1", "conv1", "bn2", "conv2", "bn3", "conv3", "shortcut"}
    unit = {k.split(".")[2] for k in bottle.state_dict() if k.startswith("layer2.1.")}
    assert unit == {"bn1", "conv1", "bn2", "conv2", "bn3", "conv3"}
    assert "bn1.weight" not in basic.state_dict()  # no BN after the stem
    projections = [k for k in bottle.state_dict() if ".shortcut." in k]
    assert projections == [f"layer{s}.0.shortcut.weight" for s in (1, 2, 3)]  # no bias, no BN
    assert bottle.layer1[0].shortcut.weight.shape == (64, 16, 1, 1)
    assert bottle.layer2[0].shortcut.stride == (2, 2) and bottle.layer2[0].conv2.stride == (2, 2)


def test_structure():
    m = M.preact_resnet20()
    assert [len(m.layer1), len(m.layer2), len(m.layer3)] == [3, 3, 3]
    assert isinstance(m.layer2[0].shortcut, ShortcutA) and not m.layer2[0].preact_shortcut
    assert isinstance(m.layer1[0].shortcut, nn.Identity) and m.layer2[0].conv1.stride == (2, 2)
    b = M.preact_resnet(20, bottleneck=True)  # 9n + 2 with n = 2: bottleneck units
    assert isinstance(b.layer1[0], PreActBottleneck) and len(b.layer3) == 2
    assert b.layer1[0].preact_shortcut and not b.layer1[1].preact_shortcut
    assert isinstance(M.preact_resnet(164).layer1[0], PreActBottleneck)
    assert isinstance(M.preact_resnet(110).layer1[0], PreActBasicBlock)
    tiny = M.get_model("preact_resnet8", num_classes=5, in_channels=1)
    y = tiny(mr.tensor(np.random.randn(2, 1, 8, 8).astype(np.float32)))
    assert y.shape == (2, 5) and y.dtype == np.float32
    assert M.input_shape_for("preact_resnet8") == (3, 32, 32) == M.input_shape_for(m)
    assert all(p.dtype == np.float64 for p in M.preact_resnet20(dtype=np.float64).parameters())
    with pytest.raises(ValueError, match="6n \\+ 2"):
        M.preact_resnet(21)
    with pytest.raises(ValueError, match="9n \\+ 2"):
        M.preact_resnet(166)
    with pytest.raises(TypeError, match="depth"):
        M.preact_resnet(20.0)
    with pytest.raises(TypeError, match="bottleneck"):
        M.preact_resnet(20, bottleneck="yes")
    for bad in ({"num_classes": 0}, {"in_channels": -1}, {"num_classes": 2.5}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            M.preact_resnet20(**bad)
    with pytest.raises(ValueError, match=r"expected input \(N, 3, H, W\)"):
        m(mr.tensor(np.zeros((1, 1, 8, 8), np.float32)))


def test_init_like_the_other_cifar_nets():
    mr.manual_seed(0)
    m = M.preact_resnet110()
    w = m.layer3[5].conv2.weight.data  # (64, 64, 3, 3): Kaiming normal, fan_out = 64 * 9
    assert abs(w.std() - np.sqrt(2 / (64 * 9))) < 0.05 * np.sqrt(2 / (64 * 9))
    assert np.all(m.layer2[1].bn1.weight.data == 1) and np.all(m.bn.bias.data == 0)


def test_units_are_residual_plus_shortcut_with_nothing_after_the_add():
    x = mr.tensor(np.random.randn(2, 8, 6, 6))
    for unit, out_shape in (
        (PreActBasicBlock(8, 8), (2, 8, 6, 6)),
        (PreActBasicBlock(8, 16, 2), (2, 16, 3, 3)),  # option A on the raw input
        (PreActBottleneck(8, 2), (2, 8, 6, 6)),  # identity
        (PreActBottleneck(8, 4, 2), (2, 16, 3, 3)),  # projection on the pre-activated input
    ):
        unit.double()
        y = unit(x)
        assert y.shape == out_shape and unit.has_skip
        h = unit.preactivate(x) if unit.preact_shortcut else x
        np.testing.assert_allclose(y.data, (unit.residual(h) + unit.shortcut(h)).data,
                                   rtol=0, atol=1e-13)  # fmt: skip
        assert y.data.min() < 0  # no ReLU after the add
    proj = PreActBottleneck(8, 4, 2).double()
    expect = F.conv2d(F.relu(proj.bn1(x)), proj.shortcut.weight, stride=2)
    np.testing.assert_allclose(proj.shortcut(proj.preactivate(x)).data, expect.data, rtol=1e-13)
    a = PreActBasicBlock(8, 16, 2).double()
    np.testing.assert_array_equal(a.shortcut(x).data[:, :8], x.data[:, :, ::2, ::2])
    # a custom shortcut with weights sees the pre-activated input
    assert PreActBasicBlock(8, 16, 2, shortcut=M.conv1x1(8, 16, 2)).preact_shortcut


def test_preact_resnet1001_forward_backward():
    """The deepest zoo net (333 bottleneck units): no recursion limit, finite gradients."""
    with mr.use_backend("numpy"):
        m = M.preact_resnet1001(in_channels=1)
        x = mr.tensor(np.random.randn(2, 1, 8, 8).astype(np.float32))
        loss = F.cross_entropy(m(x), np.array([3, 4]))
        loss.backward()
    assert np.isfinite(loss.item())
    assert m.conv1.weight.grad is not None and np.all(np.isfinite(m.layer1[0].shortcut.weight.grad))


# -- PyTorch twin ---------------------------------------------------------------------------


def torch_preact(torch, bottleneck: bool, n: int):
    """He et al. (2016b)'s CIFAR pre-activation net written in plain torch, independently
    of minires (the layout of the authors' fb.resnet.torch preresnet.lua)."""
    tnn, tF = torch.nn, torch.nn.functional

    class Basic(tnn.Module):
        expansion = 1

        def __init__(self, i, planes, stride=1):
            super().__init__()
            self.bn1 = tnn.BatchNorm2d(i)
            self.conv1 = tnn.Conv2d(i, planes, 3, stride, 1, bias=False)
            self.bn2 = tnn.BatchNorm2d(planes)
            self.conv2 = tnn.Conv2d(planes, planes, 3, 1, 1, bias=False)
            self.stride, self.extra = stride, planes - i

        def forward(self, x):
            out = self.conv1(tF.relu(self.bn1(x)))
            out = self.conv2(tF.relu(self.bn2(out)))
            short = x[:, :, :: self.stride, :: self.stride]  # option A
            return out + tF.pad(short, (0, 0, 0, 0, 0, self.extra))

    class Bottle(tnn.Module):
        expansion = 4

        def __init__(self, i, planes, stride=1):
            super().__init__()
            self.bn1 = tnn.BatchNorm2d(i)
            self.conv1 = tnn.Conv2d(i, planes, 1, bias=False)
            self.bn2 = tnn.BatchNorm2d(planes)
            self.conv2 = tnn.Conv2d(planes, planes, 3, stride, 1, bias=False)
            self.bn3 = tnn.BatchNorm2d(planes)
            self.conv3 = tnn.Conv2d(planes, 4 * planes, 1, bias=False)
            if stride != 1 or i != 4 * planes:
                self.shortcut = tnn.Conv2d(i, 4 * planes, 1, stride, bias=False)

        def forward(self, x):
            out = tF.relu(self.bn1(x))
            short = self.shortcut(out) if hasattr(self, "shortcut") else x
            out = self.conv1(out)
            out = self.conv2(tF.relu(self.bn2(out)))
            out = self.conv3(tF.relu(self.bn3(out)))
            return out + short

    unit = Bottle if bottleneck else Basic

    class Net(tnn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = tnn.Conv2d(3, 16, 3, 1, 1, bias=False)
            i, stages = 16, []
            for planes, stride in ((16, 1), (32, 2), (64, 2)):
                units = [unit(i, planes, stride)]
                i = planes * unit.expansion
                units += [unit(i, planes) for _ in range(1, n)]
                stages.append(tnn.Sequential(*units))
            self.layer1, self.layer2, self.layer3 = stages
            self.bn = tnn.BatchNorm2d(i)
            self.fc = tnn.Linear(i, 10)

        def forward(self, x):
            x = self.layer3(self.layer2(self.layer1(self.conv1(x))))
            return self.fc(tF.relu(self.bn(x)).mean(dim=(2, 3)))

    return Net()


def _close(a, b, rel: float) -> None:
    """|a - b| <= rel * (|b| + max|b|) elementwise."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    assert a.shape == b.shape
    scale = np.abs(b) + np.abs(b).max()
    worst = float(np.max(np.abs(a - b) / np.where(scale > 0, scale, 1)))
    assert worst <= rel, f"relative error {worst:.3g} > {rel:.1g}"


@pytest.mark.parametrize(
    "depth, bottleneck", [(20, False), (20, True), (164, True)],
    ids=["preact_resnet20", "bottleneck20", "preact_resnet164"],
)  # fmt: skip
def test_train_step_matches_torch_float64(torch, depth, bottleneck):
    torch.manual_seed(2)
    n = (depth - 2) // (9 if bottleneck else 6)
    ref = torch_preact(torch, bottleneck, n).double().train()
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():  # non-trivial BN affine parameters
        for m in ref.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.copy_(1 + 0.2 * torch.randn(m.num_features, generator=g))
                m.bias.copy_(0.1 * torch.randn(m.num_features, generator=g))
    model = M.preact_resnet(depth, bottleneck=bottleneck, dtype=np.float64).train()
    assert [k for k, _ in model.named_parameters()] == [k for k, _ in ref.named_parameters()]
    model.load_state_dict(to_numpy_state_dict(ref.state_dict()))
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal((4, 3, 8, 8)), np.array([3, 7, 0, 9])

    tx = torch.from_numpy(x).requires_grad_(True)
    tloss = torch.nn.functional.cross_entropy(ref(tx), torch.from_numpy(y))
    tloss.backward()
    xm = mr.tensor(x, requires_grad=True)
    loss = F.cross_entropy(model(xm), y)
    loss.backward()

    _close(loss.item(), tloss.item(), 1e-10)
    _close(xm.grad, tx.grad.numpy(), 1e-10)
    tparams = dict(ref.named_parameters())
    for name, p in model.named_parameters():
        assert p.grad is not None, name
        _close(p.grad, tparams[name].grad.numpy(), 1e-10)
    tbuffers = dict(ref.named_buffers())
    for name, b in model.named_buffers():
        if not name.endswith("num_batches_tracked"):
            _close(b, tbuffers[name].numpy(), 1e-10)


def test_custom_net_from_the_public_units():
    net = PreActResNet(PreActBottleneck, [1, 2, 1], num_classes=3, in_channels=2).double()
    y = net(mr.tensor(np.random.randn(2, 2, 8, 8)))
    assert y.shape == (2, 3)
    assert [type(b.shortcut).__name__ for b in net.layer2] == ["Conv2d", "Identity"]
    with pytest.raises(ValueError, match="num_blocks"):
        PreActResNet(PreActBasicBlock, [1, 1])


@pytest.mark.parametrize("unit", ["basic option A", "bottleneck projection"])
def test_gradcheck_units(unit):
    """Float64 finite differences through a unit, its input and every parameter (train-mode
    BN, the shared pre-activation of a projection unit)."""
    block = PreActBasicBlock(3, 4, 2) if unit.startswith("basic") else PreActBottleneck(3, 2, 2)
    block.double()
    x = mr.tensor(np.random.randn(3, 3, 5, 5), requires_grad=True)
    params = list(block.parameters())
    assert mr.gradcheck(lambda *_: block(x), [x, *params], fast_mode=True, atol=1e-6)
