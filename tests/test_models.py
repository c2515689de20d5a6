"""The model zoo: exact parameter counts, block API, initialisation, gradchecks, a
1,202-layer net, and parity with the same nets written in PyTorch (torchvision's code,
re-typed here because torchvision's wheel may not import next to the CPU torch)."""

from __future__ import annotations

import types

import numpy as np
import pytest

import minires as mr
import minires.functional as F
from minires import models as M
from minires import nn
from minires.interop import to_numpy_state_dict
from minires.models import BasicBlock, Bottleneck, PlainBasicBlock, PlainBottleneck, ShortcutA

# torchvision's published parameter counts; CIFAR counts from He et al. (2015) nets
PARAMS = {
    "resnet18": 11_689_512,
    "resnet34": 21_797_672,
    "resnet50": 25_557_032,
    "resnet101": 44_549_160,
    "resnet152": 60_192_808,
    "resnext50_32x4d": 25_028_904,
    "resnext101_32x8d": 88_791_336,
    "resnext101_64x4d": 83_455_272,
    "wide_resnet50_2": 68_883_240,
    "resnet20": 269_722,
    "resnet32": 464_154,
    "resnet44": 658_586,
    "resnet56": 853_018,
    "resnet110": 1_727_962,
    "plain20": 269_722,
    "plain32": 464_154,
    "plain44": 658_586,
    "plain56": 853_018,
    "plain110": 1_727_962,
}


def n_params(model: nn.Module) -> int:
    return sum(p.data.size for p in model.parameters())


def build(name: str, **kwargs) -> nn.Module:
    with M.no_init():
        return M.get_model(name, **kwargs)


# -- structure ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(PARAMS))
def test_parameter_counts(name):
    assert n_params(build(name)) == PARAMS[name]


def test_resnext_builder_and_templates():
    assert n_params(build("resnext50_32x4d")) == n_params(M.resnext(50, 32, 4))
    with M.no_init():
        assert n_params(M.resnext50_template("1x64d")) == PARAMS["resnet50"]
        for name, (c, d) in M.RESNEXT_TEMPLATES.items():
            m = M.resnext50_template(name)
            assert m.layer1[0].conv2.groups == c
            assert m.layer1[0].conv2.out_channels == c * d  # inner width int(64*d/64)*C
            assert m.layer4[0].conv2.out_channels == 8 * c * d
            assert abs(n_params(m) - 25.3e6) < 0.4e6  # the templates preserve complexity
        wide = M.wide_resnet50_2()
    assert wide.layer1[0].conv2.out_channels == 128 and wide.layer1[0].conv2.groups == 1
    assert n_params(build("resnext50_8x14d")) == n_params(M.resnext(50, 8, 14))
    with pytest.raises(ValueError, match="depth"):
        M.resnext(34)
    with pytest.raises(ValueError, match="unknown model"):
        M.get_model("resnet51")


def test_torchvision_key_names():
    keys = list(build("resnet50").state_dict())
    assert keys[:7] == [
        "conv1.weight",
        "bn1.weight",
        "bn1.bias",
        "bn1.running_mean",
        "bn1.running_var",
        "bn1.num_batches_tracked",
        "layer1.0.conv1.weight",
    ]
    assert "layer1.0.downsample.0.weight" in keys and "layer1.0.downsample.1.running_var" in keys
    assert "layer1.1.downsample.0.weight" not in keys
    assert keys[-2:] == ["fc.weight", "fc.bias"]
    assert len(keys) == 320  # torchvision resnet50's state_dict length
    cifar = list(M.resnet20().state_dict())
    assert cifar[0] == "conv1.weight" and cifar[-1] == "fc.bias"
    assert "layer3.2.bn2.running_mean" in cifar and not any("downsample" in k for k in cifar)
    assert list(M.plain20().state_dict()) == cifar


def test_cifar_structure_and_general_depth():
    m = M.resnet20()
    assert [len(m.layer1), len(m.layer2), len(m.layer3)] == [3, 3, 3]
    assert isinstance(m.layer2[0].downsample, ShortcutA) and m.layer1[0].downsample is None
    assert all(b.has_skip for b in m.layer1) and not any(b.has_skip for b in M.plain20().layer1)
    tiny = M.cifar_resnet(8, num_classes=5, in_channels=1)
    assert [len(tiny.layer1), len(tiny.layer2), len(tiny.layer3)] == [1, 1, 1]
    y = tiny(mr.tensor(np.random.randn(2, 1, 8, 8).astype(np.float32)))
    assert y.shape == (2, 5) and y.dtype == np.float32
    with pytest.raises(ValueError, match="6n \\+ 2"):
        M.cifar_resnet(21)
    with pytest.raises(ValueError, match=r"expected input \(N, 3, H, W\)"):
        m(mr.tensor(np.zeros((1, 1, 8, 8), np.float32)))


def test_block_api_and_forward_composition():
    x = mr.tensor(np.random.randn(2, 8, 6, 6))
    ds = nn.Sequential(M.conv1x1(8, 16, 2), nn.BatchNorm2d(16)).double()
    blocks = [
        BasicBlock(8, 16, 2, ds).double(),
        Bottleneck(8, 4, 2, ds, groups=2, base_width=32).double(),
        BasicBlock(8, 16, 2, ShortcutA(8, 16, 2)).double(),
        PlainBasicBlock(8, 16, 2, ShortcutA(8, 16, 2)).double(),
        PlainBottleneck(8, 4, 2, ShortcutA(8, 16, 2)).double(),
    ]
    for b in blocks:
        r, s, y = b.residual(x), b.shortcut(x), b(x)
        assert r.shape == s.shape == y.shape == (2, 16, 3, 3)
        expect = np.maximum(r.data + s.data, 0) if b.has_skip else np.maximum(r.data, 0)
        np.testing.assert_allclose(y.data, expect, rtol=1e-12, atol=1e-12)
        assert {"conv1", "bn1", "conv2", "bn2", "relu", "downsample", "stride"} <= set(vars(b))
    assert BasicBlock.expansion == 1 and Bottleneck.expansion == 4
    assert BasicBlock.has_skip and not PlainBottleneck.has_skip
    # the add is not in place: the identity the block received is unchanged
    before = x.data.copy()
    BasicBlock(8, 8).double()(x)
    np.testing.assert_array_equal(x.data, before)
    with pytest.raises(ValueError, match="groups=1"):
        BasicBlock(8, 8, groups=2)


def test_option_a_shortcut():
    x = mr.tensor(np.arange(2 * 3 * 4 * 4, dtype=np.float64).reshape(2, 3, 4, 4))
    y = ShortcutA(3, 5, 2)(x)
    assert y.shape == (2, 5, 2, 2)
    np.testing.assert_array_equal(y.data[:, :3], x.data[:, :, ::2, ::2])
    np.testing.assert_array_equal(y.data[:, 3:], 0)
    assert not list(ShortcutA(3, 5, 2).parameters())
    with pytest.raises(ValueError, match="shrink"):
        ShortcutA(8, 4)


def test_stride_placement_v1_vs_v15():
    with M.no_init():
        v15, v1 = M.resnet50(), M.resnet50(stride_in_1x1=True)
    assert v15.layer2[0].conv1.stride == (1, 1) and v15.layer2[0].conv2.stride == (2, 2)
    assert v1.layer2[0].conv1.stride == (2, 2) and v1.layer2[0].conv2.stride == (1, 1)
    assert n_params(v1) == n_params(v15)
    assert mr.summary(v1).total_macs < mr.summary(v15).total_macs  # 3.86 G vs 4.09 G
    with pytest.raises(ValueError, match="Bottleneck"):
        M.resnet18(stride_in_1x1=True)


def test_init_like_torchvision():
    mr.manual_seed(0)
    m = M.resnet50(zero_init_residual=True)
    w = m.layer3[0].conv2.weight.data  # (256, 256, 3, 3): fan_out = 256 * 9
    assert abs(w.std() - np.sqrt(2 / (256 * 9))) < 0.05 * np.sqrt(2 / (256 * 9))
    assert abs(w.mean()) < 1e-3
    assert np.all(m.bn1.weight.data == 1) and np.all(m.bn1.bias.data == 0)
    for layer in (m.layer1, m.layer2, m.layer3, m.layer4):
        for b in layer:
            assert np.all(b.bn3.weight.data == 0) and np.all(b.bn2.weight.data == 1)
    c = M.resnet20(zero_init_residual=True)
    assert np.all(c.layer2[1].bn2.weight.data == 0)
    assert np.all(M.plain20(zero_init_residual=True).layer2[1].bn2.weight.data == 1)
    assert all(p.dtype == np.float32 for p in c.parameters())
    d = M.resnet20().double()
    assert all(p.dtype == np.float64 for p in d.parameters())
    assert all(b.dtype == np.float64 for b in d.buffers() if b.dtype.kind == "f")


def test_zero_init_residual_reaches_every_residual_block():
    """Every residual block names its branch's last BN (``last_bn``): ResNeXt's forms (a)
    and (b) and the depthwise-separable block start as the identity too."""
    grouped = M.Bottleneck(64, 16, groups=4, base_width=4)
    blocks = [M.ResNeXtPaths.from_bottleneck(grouped), M.ResNeXtConcat.from_bottleneck(grouped),
              M.DepthwiseSeparableBlock(8, 8), grouped, M.BasicBlock(8, 8)]  # fmt: skip
    for block in blocks:
        M.init_weights(block, zero_init_residual=True)
        last = getattr(block, block.last_bn)
        assert np.all(last.weight.data == 0), type(block).__name__
        others = [m for n, m in block.named_modules() if isinstance(m, mr.nn.BatchNorm2d)
                  and m is not last]  # fmt: skip
        assert others and all(np.all(m.weight.data == 1) for m in others)


def test_layers_are_indexable():
    with M.no_init():
        m = M.resnet18()
    assert isinstance(m.layer1, nn.Sequential) and isinstance(m.layer4[1], BasicBlock)
    assert m.get_submodule("layer2.0.downsample.0").stride == (2, 2)


# -- gradients ------------------------------------------------------------------------------


def _gradcheck_module(module: nn.Module, x: mr.Tensor) -> None:
    params = list(module.parameters())
    result = mr.gradcheck(lambda *_: module(x), [x, *params], fast_mode=True, atol=1e-6)
    assert result


def test_gradcheck_basic_block():
    block = BasicBlock(3, 4, 2, nn.Sequential(M.conv1x1(3, 4, 2), nn.BatchNorm2d(4))).double()
    _gradcheck_module(block, mr.tensor(np.random.randn(2, 3, 5, 5), requires_grad=True))


def test_gradcheck_grouped_bottleneck():
    # inner width int(4 * 32 / 64) * 4 = 8 channels in 4 groups
    ds = nn.Sequential(M.conv1x1(8, 16, 2), nn.BatchNorm2d(16))
    block = Bottleneck(8, 4, 2, ds, groups=4, base_width=32).double()
    assert block.conv2.groups == 4 and block.conv2.weight.shape == (8, 2, 3, 3)
    _gradcheck_module(block, mr.tensor(np.random.randn(2, 8, 5, 5), requires_grad=True))


def test_gradcheck_cifar_stage():
    stage = nn.Sequential(BasicBlock(4, 8, 2, ShortcutA(4, 8, 2)), BasicBlock(8, 8)).double()
    _gradcheck_module(stage, mr.tensor(np.random.randn(2, 4, 6, 6), requires_grad=True))


def test_resnet1202_runs_without_recursion_errors():
    # What is tested is depth (no recursion in build, forward, backward, traversal), not
    # the kernels: the NumPy reference has the lowest per-call overhead on 1x3x8x8.
    with mr.use_backend("numpy"):
        _resnet1202_step()


def _resnet1202_step() -> None:
    m = M.resnet1202()
    assert sum(len(s) for s in (m.layer1, m.layer2, m.layer3)) == 600
    x = mr.tensor(np.random.randn(1, 3, 8, 8).astype(np.float32))
    loss = F.cross_entropy(m(x), np.array([3]))
    loss.backward()
    assert np.isfinite(loss.item())
    assert m.conv1.weight.grad is not None and m.layer1[0].conv1.weight.grad is not None


# -- PyTorch parity -------------------------------------------------------------------------


def torch_reference(torch) -> types.SimpleNamespace:
    """torchvision's ResNet code (v0.20) and He et al.'s CIFAR nets, in plain torch."""
    tnn = torch.nn

    def conv3x3(i, o, stride=1, groups=1, dilation=1):
        return tnn.Conv2d(i, o, 3, stride, dilation, groups=groups, bias=False, dilation=dilation)

    def conv1x1(i, o, stride=1):
        return tnn.Conv2d(i, o, 1, stride, bias=False)

    class TBasicBlock(tnn.Module):
        expansion = 1

        def __init__(self, inplanes, planes, stride=1, downsample=None, skip=True):
            super().__init__()
            self.conv1 = conv3x3(inplanes, planes, stride)
            self.bn1 = tnn.BatchNorm2d(planes)
            self.relu = tnn.ReLU(inplace=True)
            self.conv2 = conv3x3(planes, planes)
            self.bn2 = tnn.BatchNorm2d(planes)
            self.downsample, self.skip = downsample, skip

        def forward(self, x):
            out = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
            if self.skip:
                out = out + (x if self.downsample is None else self.downsample(x))
            return self.relu(out)

    class TBottleneck(tnn.Module):
        expansion = 4

        def __init__(self, inplanes, planes, stride=1, downsample=None, groups=1, base_width=64):
            super().__init__()
            width = int(planes * (base_width / 64.0)) * groups
            self.conv1 = conv1x1(inplanes, width)
            self.bn1 = tnn.BatchNorm2d(width)
            self.conv2 = conv3x3(width, width, stride, groups)
            self.bn2 = tnn.BatchNorm2d(width)
            self.conv3 = conv1x1(width, planes * 4)
            self.bn3 = tnn.BatchNorm2d(planes * 4)
            self.relu = tnn.ReLU(inplace=True)
            self.downsample = downsample

        def forward(self, x):
            identity = x if self.downsample is None else self.downsample(x)
            out = self.relu(self.bn1(self.conv1(x)))
            out = self.relu(self.bn2(self.conv2(out)))
            return self.relu(self.bn3(self.conv3(out)) + identity)

    class TResNet(tnn.Module):
        def __init__(self, layers, num_classes=1000, groups=1, width_per_group=64):
            super().__init__()
            self.inplanes, self.groups, self.base_width = 64, groups, width_per_group
            self.conv1 = tnn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)
            self.bn1 = tnn.BatchNorm2d(64)
            self.relu = tnn.ReLU(inplace=True)
            self.maxpool = tnn.MaxPool2d(kernel_size=3, stride=2, padding=1)
            self.layer1 = self._make_layer(64, layers[0])
            self.layer2 = self._make_layer(128, layers[1], stride=2)
            self.layer3 = self._make_layer(256, layers[2], stride=2)
            self.layer4 = self._make_layer(512, layers[3], stride=2)
            self.avgpool = tnn.AdaptiveAvgPool2d((1, 1))
            self.fc = tnn.Linear(512 * 4, num_classes)

        def _make_layer(self, planes, blocks, stride=1):
            downsample = None
            if stride != 1 or self.inplanes != planes * 4:
                downsample = tnn.Sequential(
                    conv1x1(self.inplanes, planes * 4, stride), tnn.BatchNorm2d(planes * 4)
                )
            g, w = self.groups, self.base_width
            layers = [TBottleneck(self.inplanes, planes, stride, downsample, g, w)]
            self.inplanes = planes * 4
            layers += [
                TBottleneck(self.inplanes, planes, groups=g, base_width=w) for _ in range(1, blocks)
            ]
            return tnn.Sequential(*layers)

        def forward(self, x):
            x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
            x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
            return self.fc(torch.flatten(self.avgpool(x), 1))

    class TShortcutA(tnn.Module):
        def __init__(self, extra):
            super().__init__()
            self.extra = extra

        def forward(self, x):
            return tnn.functional.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, 0, self.extra))

    class TCifarResNet(tnn.Module):
        def __init__(self, n, num_classes=10, skip=True):
            super().__init__()
            self.conv1 = conv3x3(3, 16)
            self.bn1 = tnn.BatchNorm2d(16)
            self.relu = tnn.ReLU()
            planes_in, stages = 16, []
            for planes, stride in ((16, 1), (32, 2), (64, 2)):
                ds = TShortcutA(planes - planes_in) if stride != 1 else None
                blocks = [TBasicBlock(planes_in, planes, stride, ds, skip)]
                blocks += [TBasicBlock(planes, planes, skip=skip) for _ in range(1, n)]
                stages.append(tnn.Sequential(*blocks))
                planes_in = planes
            self.layer1, self.layer2, self.layer3 = stages
            self.fc = tnn.Linear(64, num_classes)

        def forward(self, x):
            x = self.relu(self.bn1(self.conv1(x)))
            x = self.layer3(self.layer2(self.layer1(x)))
            return self.fc(x.mean(dim=(2, 3)))

    return types.SimpleNamespace(ResNet=TResNet, CifarResNet=TCifarResNet)


def _randomize_norm(torch, tmodel) -> None:
    """Non-trivial BN affine parameters and running statistics (eval mode uses them)."""
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for m in tmodel.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                c = m.num_features
                m.weight.copy_(1 + 0.2 * torch.randn(c, generator=g))
                m.bias.copy_(0.1 * torch.randn(c, generator=g))
                m.running_mean.copy_(0.1 * torch.randn(c, generator=g))
                m.running_var.copy_(1 + 0.2 * torch.rand(c, generator=g))


def _close(a: np.ndarray, b: np.ndarray, rel: float) -> None:
    """|a - b| <= rel * (|b| + max|b|) elementwise: relative, robust to near-zero entries."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    assert a.shape == b.shape
    scale = np.abs(b) + np.abs(b).max()
    worst = float(np.max(np.abs(a - b) / np.where(scale > 0, scale, 1)))
    assert worst <= rel, f"relative error {worst:.3g} > {rel:.1g}"


def test_resnext50_logits_match_torch(torch):
    torch.manual_seed(0)
    ref = torch_reference(torch).ResNet([3, 4, 6, 3], groups=32, width_per_group=4).eval()
    _randomize_norm(torch, ref)
    with M.no_init():
        model = M.resnext50_32x4d().eval()
    model.load_state_dict(to_numpy_state_dict(ref.state_dict()))
    x = np.random.default_rng(0).standard_normal((1, 3, 224, 224)).astype(np.float32)
    with torch.no_grad():
        expected = ref(torch.from_numpy(x)).numpy()
    with mr.no_grad():
        got = model(mr.tensor(x))
    assert got.dtype == np.float32 and got.shape == (1, 1000)
    _close(got.data, expected, 1e-3)


@pytest.mark.parametrize("plain", [False, True], ids=["resnet20", "plain20"])
def test_cifar_train_step_matches_torch(torch, plain):
    torch.manual_seed(1)
    ref = torch_reference(torch).CifarResNet(3, skip=not plain).double().train()
    _randomize_norm(torch, ref)
    model = (M.plain20() if plain else M.resnet20()).double().train()
    # copies: Module.load_state_dict keeps a reference to 0-d arrays (num_batches_tracked),
    # which would alias torch's counter
    model.load_state_dict(to_numpy_state_dict(ref.state_dict()))
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 3, 8, 8))
    y = np.array([3, 7])

    tloss = torch.nn.functional.cross_entropy(ref(torch.from_numpy(x)), torch.from_numpy(y))
    tloss.backward()
    loss = F.cross_entropy(model(mr.tensor(x)), y)
    loss.backward()

    _close(loss.item(), tloss.item(), 1e-7)
    tparams = dict(ref.named_parameters())
    names = [k for k, _ in model.named_parameters()]
    assert names == list(tparams)
    for name, p in model.named_parameters():
        assert p.grad is not None, name
        _close(p.grad, tparams[name].grad.numpy(), 1e-7)
    tbuffers = dict(ref.named_buffers())
    for name, b in model.named_buffers():
        if name.endswith("num_batches_tracked"):
            assert int(b) == int(tbuffers[name]) == 1
        else:
            _close(b, tbuffers[name].numpy(), 1e-7)
