"""The CIFAR-10 ResNets and plain nets of He et al. (2015), section 4.2.

    conv1   3x3 conv, 16 channels -> bn1 -> relu           32x32
    layer1  n BasicBlocks, 16 channels                     32x32
    layer2  n BasicBlocks, 32 channels (first strides 2)   16x16
    layer3  n BasicBlocks, 64 channels (first strides 2)   8x8
    head    global average pool -> fc (num_classes)

depth = 6n + 2 (20, 32, 44, 56, 110, 1202). Shortcuts are option A: where a stage halves
the resolution the identity is subsampled ``x[:, :, ::2, ::2]`` and zero channels are
appended (`ShortcutA`), so the residual nets have exactly the parameters of the plain
ones. Input (N, in_channels, 32, 32) -> (N, num_classes).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from minires import nn
from minires.models.blocks import BasicBlock, PlainBasicBlock, ShortcutA, conv3x3
from minires.models.resnet import init_weights
from minires.tensor import Tensor


class CifarResNet(nn.Module):
    """He et al.'s CIFAR ResNet: (N, in_channels, H, W) -> (N, num_classes).

    Args:
        block: `BasicBlock` (residual) or `PlainBasicBlock` (no skips).
        num_blocks: blocks per stage, ``[n, n, n]`` for depth 6n + 2.
    """

    def __init__(
        self,
        block: type[BasicBlock],
        num_blocks: list[int],
        num_classes: int = 10,
        in_channels: int = 3,
        zero_init_residual: bool = False,
    ):
        super().__init__()
        if len(num_blocks) != 3 or min(num_blocks) < 1:
            raise ValueError(f"CifarResNet: num_blocks must be 3 positive ints, got {num_blocks}")
        self.in_planes = 16
        self.conv1 = conv3x3(in_channels, 16)
        self.bn1 = nn.BatchNorm2d(16)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = self._make_layer(block, 16, num_blocks[0], stride=1)
        self.layer2 = self._make_layer(block, 32, num_blocks[1], stride=2)
        self.layer3 = self._make_layer(block, 64, num_blocks[2], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(64, num_classes)
        init_weights(self, zero_init_residual)

    def _make_layer(
        self, block: type[BasicBlock], planes: int, blocks: int, stride: int
    ) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.in_planes != planes:
            downsample = ShortcutA(self.in_planes, planes, stride)
        layers = [block(self.in_planes, planes, stride, downsample)]
        self.in_planes = planes
        layers += [block(planes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        """(N, in_channels, H, W) -> logits (N, num_classes)."""
        if x.ndim != 4 or x.shape[1] != self.conv1.in_channels:
            raise ValueError(
                f"{type(self).__name__}: expected input (N, {self.conv1.in_channels}, H, W), "
                f"got {tuple(x.shape)}"
            )
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer1(x)
        x = self.layer2(x)
        x = self.layer3(x)
        x = self.avgpool(x)
        return self.fc(x.flatten(1))


def cifar_resnet(
    depth: int,
    num_classes: int = 10,
    in_channels: int = 3,
    plain: bool = False,
    dtype: Any = np.float32,
    **kwargs: Any,
) -> CifarResNet:
    """CIFAR ResNet (or plain net) of depth 6n + 2: 8, 14, 20, ..., 110, 1202.

    Input (N, in_channels, 32, 32) -> (N, num_classes).
    """
    if depth < 8 or (depth - 2) % 6:
        raise ValueError(
            f"cifar_resnet: depth must be 6n + 2 with n >= 1 (8, 14, 20, ...), got {depth}"
        )
    n = (depth - 2) // 6
    block = PlainBasicBlock if plain else BasicBlock
    model = CifarResNet(block, [n, n, n], num_classes, in_channels, **kwargs)
    return model if np.dtype(dtype) == np.float32 else model.to(dtype)


def resnet20(num_classes: int = 10, in_channels: int = 3, **kwargs: Any) -> CifarResNet:
    """CIFAR ResNet-20 (n=3): 269,722 params."""
    return cifar_resnet(20, num_classes, in_channels, **kwargs)


def resnet32(num_classes: int = 10, in_channels: int = 3, **kwargs: Any) -> CifarResNet:
    """CIFAR ResNet-32 (n=5): 464,154 params."""
    return cifar_resnet(32, num_classes, in_channels, **kwargs)


def resnet44(num_classes: int = 10, in_channels: int = 3, **kwargs: Any) -> CifarResNet:
    """CIFAR ResNet-44 (n=7): 658,586 params."""
    return cifar_resnet(44, num_classes, in_channels, **kwargs)


def resnet56(num_classes: int = 10, in_channels: int = 3, **kwargs: Any) -> CifarResNet:
    """CIFAR ResNet-56 (n=9): 853,018 params."""
    return cifar_resnet(56, num_classes, in_channels, **kwargs)


def resnet110(num_classes: int = 10, in_channels: int = 3, **kwargs: Any) -> CifarResNet:
    """CIFAR ResNet-110 (n=18): 1,727,962 params."""
    return cifar_resnet(110, num_classes, in_channels, **kwargs)


def resnet1202(num_classes: int = 10, in_channels: int = 3, **kwargs: Any) -> CifarResNet:
    """CIFAR ResNet-1202 (n=200): 19.4 M params."""
    return cifar_resnet(1202, num_classes, in_channels, **kwargs)


def plain20(num_classes: int = 10, in_channels: int = 3, **kwargs: Any) -> CifarResNet:
    """CIFAR plain-20: resnet20 without skip connections (same 269,722 params)."""
    return cifar_resnet(20, num_classes, in_channels, plain=True, **kwargs)


def plain32(num_classes: int = 10, in_channels: int = 3, **kwargs: Any) -> CifarResNet:
    """CIFAR plain-32: resnet32 without skip connections."""
    return cifar_resnet(32, num_classes, in_channels, plain=True, **kwargs)


def plain44(num_classes: int = 10, in_channels: int = 3, **kwargs: Any) -> CifarResNet:
    """CIFAR plain-44: resnet44 without skip connections."""
    return cifar_resnet(44, num_classes, in_channels, plain=True, **kwargs)


def plain56(num_classes: int = 10, in_channels: int = 3, **kwargs: Any) -> CifarResNet:
    """CIFAR plain-56: resnet56 without skip connections."""
    return cifar_resnet(56, num_classes, in_channels, plain=True, **kwargs)


def plain110(num_classes: int = 10, in_channels: int = 3, **kwargs: Any) -> CifarResNet:
    """CIFAR plain-110: resnet110 without skip connections."""
    return cifar_resnet(110, num_classes, in_channels, plain=True, **kwargs)
