"""PyTorch twins of minires' models, for the block- and model-level baseline rows.

torchvision is not a dependency, so the few architectures the benchmark times are
written out here with torchvision's structure and ``state_dict`` key names, which are
also minires' (see `minires.models`). That lets a worker copy a minires model's weights
into its twin and check both compute the same thing before timing.
"""

from __future__ import annotations

from typing import Any


def _nn():
    import torch.nn as nn

    return nn


def make_bottleneck(inplanes: int, planes: int, groups: int = 1, base_width: int = 64) -> Any:
    """torchvision's Bottleneck (stride 1, identity shortcut): 1x1 -> 3x3 (grouped) -> 1x1."""
    nn = _nn()

    class Bottleneck(nn.Module):
        expansion = 4

        def __init__(self, inplanes, planes, stride=1, downsample=None, groups=1, base_width=64):
            super().__init__()
            width = int(planes * (base_width / 64.0)) * groups
            self.conv1 = nn.Conv2d(inplanes, width, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(width)
            self.conv2 = nn.Conv2d(width, width, 3, stride, 1, groups=groups, bias=False)
            self.bn2 = nn.BatchNorm2d(width)
            self.conv3 = nn.Conv2d(width, planes * 4, 1, bias=False)
            self.bn3 = nn.BatchNorm2d(planes * 4)
            self.relu = nn.ReLU(inplace=True)
            self.downsample = downsample

        def forward(self, x):
            identity = x if self.downsample is None else self.downsample(x)
            out = self.relu(self.bn1(self.conv1(x)))
            out = self.relu(self.bn2(self.conv2(out)))
            out = self.bn3(self.conv3(out))
            return self.relu(out + identity)

    make_bottleneck.cls = Bottleneck  # type: ignore[attr-defined]
    return Bottleneck(inplanes, planes, groups=groups, base_width=base_width)


def make_resnext_form(
    form: str, inplanes: int = 256, planes: int = 64, groups: int = 32, base_width: int = 4
) -> Any:
    """ResNeXt's form (a) "paths" or (b) "concat" (Fig. 3) with minires' key names
    (``paths.<i>.conv1`` ...), built the way `minires.models.ResNeXtPaths` /
    `ResNeXtConcat` are: a Python loop over C small paths (stride 1, identity shortcut)."""
    import torch

    nn = _nn()
    d = int(planes * (base_width / 64.0))
    out_planes = planes * 4

    class Path(nn.Module):
        def __init__(self, with_conv3: bool):
            super().__init__()
            self.conv1 = nn.Conv2d(inplanes, d, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(d)
            self.conv2 = nn.Conv2d(d, d, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(d)
            self.conv3 = nn.Conv2d(d, out_planes, 1, bias=False) if with_conv3 else None
            self.relu = nn.ReLU(inplace=True)

        def forward(self, x):
            out = self.relu(self.bn1(self.conv1(x)))
            out = self.relu(self.bn2(self.conv2(out)))
            return out if self.conv3 is None else self.conv3(out)

    class Form(nn.Module):
        def __init__(self):
            super().__init__()
            self.paths = nn.ModuleList(Path(form == "paths") for _ in range(groups))
            if form == "concat":
                self.conv3 = nn.Conv2d(groups * d, out_planes, 1, bias=False)
            self.bn3 = nn.BatchNorm2d(out_planes)
            self.relu = nn.ReLU(inplace=True)

        def forward(self, x):
            if form == "paths":
                out = self.paths[0](x)
                for p in self.paths[1:]:
                    out = out + p(x)
            else:
                out = self.conv3(torch.cat([p(x) for p in self.paths], dim=1))
            return self.relu(self.bn3(out) + x)

    if form not in ("paths", "concat"):
        raise ValueError(f"form must be 'paths' or 'concat', got {form!r}")
    return Form()


def imagenet_resnet(layers: list[int], groups: int = 1, width_per_group: int = 64) -> Any:
    """torchvision's ResNet with Bottleneck blocks (ResNet-50, ResNeXt-50 ...)."""
    nn = _nn()
    make_bottleneck(64, 16)  # defines the class
    block = make_bottleneck.cls  # type: ignore[attr-defined]

    class ResNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.inplanes = 64
            self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
            self.bn1 = nn.BatchNorm2d(64)
            self.relu = nn.ReLU(inplace=True)
            self.maxpool = nn.MaxPool2d(3, 2, 1)
            self.layer1 = self._make_layer(64, layers[0], 1)
            self.layer2 = self._make_layer(128, layers[1], 2)
            self.layer3 = self._make_layer(256, layers[2], 2)
            self.layer4 = self._make_layer(512, layers[3], 2)
            self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
            self.fc = nn.Linear(512 * 4, 1000)

        def _make_layer(self, planes, blocks, stride):
            downsample = None
            if stride != 1 or self.inplanes != planes * 4:
                downsample = nn.Sequential(
                    nn.Conv2d(self.inplanes, planes * 4, 1, stride, bias=False),
                    nn.BatchNorm2d(planes * 4),
                )
            mods = [block(self.inplanes, planes, stride, downsample, groups, width_per_group)]
            self.inplanes = planes * 4
            mods += [block(self.inplanes, planes, groups=groups, base_width=width_per_group)
                     for _ in range(1, blocks)]  # fmt: skip
            return nn.Sequential(*mods)

        def forward(self, x):
            x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
            x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
            return self.fc(self.avgpool(x).flatten(1))

    return ResNet()


def cifar_resnet(depth: int = 20, num_classes: int = 10) -> Any:
    """He et al.'s CIFAR ResNet with parameter-free option-A shortcuts (minires' keys)."""
    import torch
    import torch.nn.functional as F

    nn = _nn()
    n = (depth - 2) // 6

    class ShortcutA(nn.Module):
        def __init__(self, in_planes, planes, stride):
            super().__init__()
            self.extra, self.stride = planes - in_planes, stride

        def forward(self, x):
            if self.stride == 2:
                x = x[:, :, ::2, ::2]
            return F.pad(x, (0, 0, 0, 0, 0, self.extra)) if self.extra else x

    class BasicBlock(nn.Module):
        def __init__(self, in_planes, planes, stride=1, downsample=None):
            super().__init__()
            self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(planes)
            self.relu = nn.ReLU(inplace=True)
            self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(planes)
            self.downsample = downsample

        def forward(self, x):
            identity = x if self.downsample is None else self.downsample(x)
            out = self.relu(self.bn1(self.conv1(x)))
            return self.relu(self.bn2(self.conv2(out)) + identity)

    class CifarResNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.in_planes = 16
            self.conv1 = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(16)
            self.relu = nn.ReLU(inplace=True)
            self.layer1 = self._make_layer(16, 1)
            self.layer2 = self._make_layer(32, 2)
            self.layer3 = self._make_layer(64, 2)
            self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
            self.fc = nn.Linear(64, num_classes)

        def _make_layer(self, planes, stride):
            down = None
            if stride != 1 or self.in_planes != planes:
                down = ShortcutA(self.in_planes, planes, stride)
            mods = [BasicBlock(self.in_planes, planes, stride, down)]
            self.in_planes = planes
            mods += [BasicBlock(planes, planes) for _ in range(1, n)]
            return nn.Sequential(*mods)

        def forward(self, x):
            x = self.relu(self.bn1(self.conv1(x)))
            x = self.layer3(self.layer2(self.layer1(x)))
            return self.fc(torch.flatten(self.avgpool(x), 1))

    return CifarResNet()


def build(name: str) -> Any:
    """A torch twin by benchmark name: ``resnet50``, ``resnext50_32x4d``, ``resnet20``,
    ``block_resnet50`` / ``block_resnext50_32x4d`` (a conv2-stage bottleneck, 256 -> 256),
    ``block_resnext50_32x4d_paths`` / ``_concat`` (that block in ResNeXt's forms a / b)."""
    if name == "resnet50":
        return imagenet_resnet([3, 4, 6, 3])
    if name == "resnext50_32x4d":
        return imagenet_resnet([3, 4, 6, 3], groups=32, width_per_group=4)
    if name == "resnet20":
        return cifar_resnet(20)
    if name == "block_resnet50":
        return make_bottleneck(256, 64)
    if name == "block_resnext50_32x4d":
        return make_bottleneck(256, 64, groups=32, base_width=4)
    if name in ("block_resnext50_32x4d_paths", "block_resnext50_32x4d_concat"):
        return make_resnext_form(name.rsplit("_", 1)[1])
    raise ValueError(f"no torch twin for {name!r}")


def load_minires_weights(module: Any, state: dict[str, Any]) -> None:
    """Copy a minires ``state_dict`` (name -> ndarray) into a torch twin (strict)."""
    import torch

    tensors = {k: torch.as_tensor(v) for k, v in state.items()}
    own = module.state_dict()
    for k, v in own.items():  # num_batches_tracked dtype differences are harmless
        if k in tensors:
            tensors[k] = tensors[k].to(v.dtype)
    module.load_state_dict(tensors, strict=True)
