r"""Pre-activation ResNets for CIFAR-10 (He et al. 2016b, "Identity Mappings in Deep
Residual Networks"): the nets where the residual formula holds literally.

A pre-activation unit puts batchnorm and ReLU *before* each conv and nothing after the
addition, so a stack of units with identity shortcuts is exactly

    a^{l+1} = a^l + F(a^l)          a^{l2} = a^{l1} + sum_{i=l1}^{l2-1} F(a^i)
    d loss/d a^{l1} = d loss/d a^{l2} . (1 + d/d a^{l1} sum_i F(a^i))

and the first term (the identity term) reaches a^{l1} untouched.

    conv1   3x3 conv, 16 channels (no BN, no ReLU after it)          32x32
    layer1  n units, 16 channels (x4 for bottleneck units)           32x32
    layer2  n units, 32 channels (x4), first unit strides 2          16x16
    layer3  n units, 64 channels (x4), first unit strides 2          8x8
    head    bn -> relu -> global average pool -> fc (num_classes)

* basic unit (`PreActBasicBlock`): BN-ReLU-conv3x3(stride)-BN-ReLU-conv3x3; where a
  stage changes, an option-A shortcut (subsample ``x[:, :, ::2, ::2]``, append zero
  channels) applied to the raw input; depth 6n + 2 (20, 32, 44, 56, 110).
* bottleneck unit (`PreActBottleneck`): BN-ReLU-conv1x1, BN-ReLU-conv3x3(stride),
  BN-ReLU-conv1x1 (4x expansion); where the shape changes, a 1x1 projection conv (no BN,
  no bias) applied to the *pre-activated* input, whose BN-ReLU is then shared by both
  branches (as in the authors' code); depth 9n + 2 (164, 1001).

state_dict keys: ``conv1``, ``layer1.0.bn1``, ``layer1.0.conv1``, ``layer1.0.bn2``,
``layer1.0.conv2`` (bottleneck: also ``bn3``, ``conv3``; a projection: ``shortcut``), ...,
``bn``, ``fc``. Parameters: preact_resnet20 269,722 (the same as resnet20: a BN moved, none
added), 56 853,018, 110 1,727,962, 164 1,703,258, 1001 10,327,706.

The units follow the block protocol of the analysis tools: ``forward`` is
``residual(x) + shortcut(x)`` with nothing after the add, ``has_skip`` is True.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from minires import nn
from minires.models.blocks import ShortcutA, conv1x1, conv3x3
from minires.models.resnet import init_weights
from minires.tensor import Tensor


class _PreActUnit(nn.Module):
    """What both pre-activation units share: ``preactivate`` (bn1 -> relu), the shortcut
    and ``forward = residual + shortcut`` with nothing after the add."""

    expansion: int = 1
    has_skip: bool = True

    # set by subclasses before _finish(): bn1, relu, shortcut
    def _finish(self, shortcut: nn.Module | None) -> None:
        # A shortcut with weights (a projection) sees the pre-activated input, as in He et
        # al.'s code; the identity and option A see the raw input, so the identity term of
        # the gradient crosses no BN and no ReLU.
        self.shortcut = nn.Identity() if shortcut is None else shortcut
        self.preact_shortcut = any(True for _ in self.shortcut.parameters())

    def preactivate(self, x: Tensor) -> Tensor:
        """relu(bn1(x)): the unit's first BN-ReLU."""
        return self.relu(self.bn1(x))

    def forward(self, x: Tensor) -> Tensor:
        """``residual(x) + shortcut(x)``; (N, inplanes, H, W) -> (N, out, H', W').

        In a unit with a projection shortcut the first BN-ReLU is computed once and fed
        to both branches; then ``residual`` and ``shortcut`` take ``preactivate(x)``.
        """
        if self.preact_shortcut:
            x = self.preactivate(x)
        return self.residual(x) + self.shortcut(x)

    def residual(self, x: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError


class PreActBasicBlock(_PreActUnit):
    """Pre-activation basic unit: x + conv3x3(relu(bn2(conv3x3(relu(bn1(x)))))).

    (N, inplanes, H, W) -> (N, planes, H/stride, W/stride). When the shape changes and no
    ``shortcut`` is given, an option-A `ShortcutA` (parameter-free) is used; otherwise
    the identity. A ``shortcut`` with parameters is applied to ``preactivate(x)``.
    """

    expansion = 1

    def __init__(
        self, inplanes: int, planes: int, stride: int = 1, shortcut: nn.Module | None = None
    ):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(inplanes)
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes)
        self.relu = nn.ReLU(inplace=True)
        if shortcut is None and (stride != 1 or inplanes != planes):
            shortcut = ShortcutA(inplanes, planes, stride)
        self._finish(shortcut)
        self.stride = stride

    def residual(self, x: Tensor) -> Tensor:
        """F(x): [bn1-relu]-conv1-bn2-relu-conv2 -> (N, planes, H', W'). The first BN-ReLU
        is here unless the unit has a projection shortcut (then forward applies it)."""
        out = x if self.preact_shortcut else self.preactivate(x)
        out = self.conv1(out)
        return self.conv2(self.relu(self.bn2(out)))


class PreActBottleneck(_PreActUnit):
    """Pre-activation bottleneck unit, 4x expansion:
    x + conv1x1(relu(bn3(conv3x3(relu(bn2(conv1x1(relu(bn1(x))))))))).

    (N, inplanes, H, W) -> (N, planes * 4, H/stride, W/stride); the stride sits on the
    3x3 conv. When the shape changes and no ``shortcut`` is given, a 1x1 projection conv
    (no BN, no bias) is used, applied to the pre-activated input ``preactivate(x)``.
    """

    expansion = 4

    def __init__(
        self, inplanes: int, planes: int, stride: int = 1, shortcut: nn.Module | None = None
    ):
        super().__init__()
        out = planes * self.expansion
        self.bn1 = nn.BatchNorm2d(inplanes)
        self.conv1 = conv1x1(inplanes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes, stride)
        self.bn3 = nn.BatchNorm2d(planes)
        self.conv3 = conv1x1(planes, out)
        self.relu = nn.ReLU(inplace=True)
        if shortcut is None and (stride != 1 or inplanes != out):
            shortcut = conv1x1(inplanes, out, stride)
        self._finish(shortcut)
        self.stride = stride

    def residual(self, x: Tensor) -> Tensor:
        """F(x): [bn1-relu]-conv1-bn2-relu-conv2-bn3-relu-conv3 -> (N, planes*4, H', W')."""
        out = x if self.preact_shortcut else self.preactivate(x)
        out = self.conv1(out)
        out = self.conv2(self.relu(self.bn2(out)))
        return self.conv3(self.relu(self.bn3(out)))


class PreActResNet(nn.Module):
    """He et al. (2016b)'s CIFAR pre-activation ResNet: (N, in_channels, H, W) ->
    (N, num_classes).

    Args:
        block: `PreActBasicBlock` or `PreActBottleneck` (or your own unit with the same
            constructor ``(inplanes, planes, stride)`` and ``expansion``).
        num_blocks: units per stage, ``[n, n, n]``.
    """

    def __init__(
        self,
        block: type[_PreActUnit],
        num_blocks: list[int],
        num_classes: int = 10,
        in_channels: int = 3,
    ):
        super().__init__()
        if len(num_blocks) != 3 or min(num_blocks) < 1:
            raise ValueError(f"PreActResNet: num_blocks must be 3 positive ints, got {num_blocks}")
        for name, value in (("num_classes", num_classes), ("in_channels", in_channels)):
            if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
                raise ValueError(f"PreActResNet: {name} must be a positive int, got {value!r}")
        self.in_planes = 16
        self.conv1 = conv3x3(in_channels, 16)
        self.layer1 = self._make_layer(block, 16, num_blocks[0], stride=1)
        self.layer2 = self._make_layer(block, 32, num_blocks[1], stride=2)
        self.layer3 = self._make_layer(block, 64, num_blocks[2], stride=2)
        self.bn = nn.BatchNorm2d(64 * block.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(64 * block.expansion, num_classes)
        init_weights(self)

    def _make_layer(
        self, block: type[_PreActUnit], planes: int, blocks: int, stride: int
    ) -> nn.Sequential:
        layers = [block(self.in_planes, planes, stride)]
        self.in_planes = planes * block.expansion
        layers += [block(self.in_planes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        """(N, in_channels, H, W) -> logits (N, num_classes)."""
        if x.ndim != 4 or x.shape[1] != self.conv1.in_channels:
            raise ValueError(
                f"{type(self).__name__}: expected input (N, {self.conv1.in_channels}, H, W), "
                f"got {tuple(x.shape)}"
            )
        x = self.conv1(x)
        x = self.layer3(self.layer2(self.layer1(x)))
        x = self.relu(self.bn(x))
        return self.fc(self.avgpool(x).flatten(1))


def preact_resnet(
    depth: int,
    num_classes: int = 10,
    in_channels: int = 3,
    bottleneck: bool | None = None,
    dtype: Any = np.float32,
) -> PreActResNet:
    """Pre-activation CIFAR ResNet of any depth.

    Basic units: depth 6n + 2 (8, 14, 20, ..., 110); bottleneck units: depth 9n + 2
    (11, 20, ..., 164, 1001). ``bottleneck=None`` follows the paper: bottleneck units from
    depth 164 up, basic units below. Input (N, in_channels, 32, 32) -> (N, num_classes).
    """
    if isinstance(depth, bool) or not isinstance(depth, int | np.integer):
        raise TypeError(f"preact_resnet: depth must be an int, got {depth!r}")
    if bottleneck is None:
        bottleneck = depth >= 164
    elif not isinstance(bottleneck, bool | np.bool_):
        raise TypeError(
            f"preact_resnet: bottleneck must be True, False or None, got {bottleneck!r}"
        )
    per_unit = 9 if bottleneck else 6
    if depth < per_unit + 2 or (depth - 2) % per_unit:
        kind, examples = ("bottleneck", "11, 20, ..., 164, 1001") if bottleneck else (
            "basic", "8, 14, 20, ..., 110")  # fmt: skip
        raise ValueError(
            f"preact_resnet: with {kind} units depth must be {per_unit}n + 2 with n >= 1 "
            f"({examples}), got {depth}"
        )
    n = (depth - 2) // per_unit
    block = PreActBottleneck if bottleneck else PreActBasicBlock
    model = PreActResNet(block, [n, n, n], num_classes, in_channels)
    return model if np.dtype(dtype) == np.float32 else model.to(dtype)


def preact_resnet20(num_classes: int = 10, in_channels: int = 3, **kwargs: Any) -> PreActResNet:
    """Pre-activation ResNet-20 (basic units, n=3): 269,722 params."""
    return preact_resnet(20, num_classes, in_channels, bottleneck=False, **kwargs)


def preact_resnet32(num_classes: int = 10, in_channels: int = 3, **kwargs: Any) -> PreActResNet:
    """Pre-activation ResNet-32 (basic units, n=5): 464,154 params."""
    return preact_resnet(32, num_classes, in_channels, bottleneck=False, **kwargs)


def preact_resnet44(num_classes: int = 10, in_channels: int = 3, **kwargs: Any) -> PreActResNet:
    """Pre-activation ResNet-44 (basic units, n=7): 658,586 params."""
    return preact_resnet(44, num_classes, in_channels, bottleneck=False, **kwargs)


def preact_resnet56(num_classes: int = 10, in_channels: int = 3, **kwargs: Any) -> PreActResNet:
    """Pre-activation ResNet-56 (basic units, n=9): 853,018 params."""
    return preact_resnet(56, num_classes, in_channels, bottleneck=False, **kwargs)


def preact_resnet110(num_classes: int = 10, in_channels: int = 3, **kwargs: Any) -> PreActResNet:
    """Pre-activation ResNet-110 (basic units, n=18): 1,727,962 params."""
    return preact_resnet(110, num_classes, in_channels, bottleneck=False, **kwargs)


def preact_resnet164(num_classes: int = 10, in_channels: int = 3, **kwargs: Any) -> PreActResNet:
    """Pre-activation ResNet-164 (bottleneck units, n=18): 1,703,258 params (paper: 1.7M)."""
    return preact_resnet(164, num_classes, in_channels, bottleneck=True, **kwargs)


def preact_resnet1001(num_classes: int = 10, in_channels: int = 3, **kwargs: Any) -> PreActResNet:
    """Pre-activation ResNet-1001 (bottleneck units, n=111): 10,327,706 params (paper:
    10.2M)."""
    return preact_resnet(1001, num_classes, in_channels, bottleneck=True, **kwargs)
