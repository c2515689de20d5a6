"""ImageNet ResNet / ResNeXt / Wide ResNet with torchvision's structure and state_dict keys.

    stem    conv1 (7x7, 64, stride 2) -> bn1 -> relu -> maxpool (3x3, stride 2)
    layer1  blocks at 1/4 resolution,  planes 64
    layer2  blocks at 1/8 resolution,  planes 128 (first block strides)
    layer3  blocks at 1/16 resolution, planes 256
    layer4  blocks at 1/32 resolution, planes 512
    head    avgpool (global) -> flatten -> fc

(N, 3, 224, 224) -> (N, num_classes). A model's keys (``conv1.weight``,
``layer1.0.downsample.0.weight``, ``fc.bias``, ...) are torchvision's, so its checkpoints
load with `load_state_dict` (see `minires.interop`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from minires import nn
from minires.models.blocks import (
    BasicBlock,
    Bottleneck,
    NormLayer,
    PlainBasicBlock,
    PlainBottleneck,
    ShortcutA,
    conv1x1,
)
from minires.tensor import Tensor

Block = type[BasicBlock] | type[Bottleneck]

# blocks per stage for each depth (He et al. 2015, Table 1)
LAYERS: dict[int, tuple[type[BasicBlock] | type[Bottleneck], list[int]]] = {
    18: (BasicBlock, [2, 2, 2, 2]),
    34: (BasicBlock, [3, 4, 6, 3]),
    50: (Bottleneck, [3, 4, 6, 3]),
    101: (Bottleneck, [3, 4, 23, 3]),
    152: (Bottleneck, [3, 8, 36, 3]),
}


def init_weights(model: nn.Module, zero_init_residual: bool = False) -> None:
    """torchvision's ResNet initialisation, in place.

    Convs: Kaiming normal, fan_out, relu gain. BatchNorm: weight 1, bias 0. Linear layers
    keep PyTorch's default. With ``zero_init_residual`` the last BN weight of every
    residual block (``has_skip``; the block names it in ``last_bn``) is 0, so each block
    starts as the identity.
    """
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d) and m.weight is not None:
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    if zero_init_residual:
        for m in model.modules():
            name = getattr(m, "last_bn", None) if getattr(m, "has_skip", False) else None
            bn = getattr(m, name, None) if name else None
            if getattr(bn, "weight", None) is not None:
                nn.init.zeros_(bn.weight)


class ResNet(nn.Module):
    """torchvision's ResNet: (N, in_channels, H, W) -> (N, num_classes).

    Args:
        block: `BasicBlock`, `Bottleneck` or a plain variant (then the shortcuts that
            change shape are parameter-free `ShortcutA`, kept for lesion tools but unused).
        layers: blocks per stage, e.g. ``[3, 4, 6, 3]`` for ResNet-50.
        groups, width_per_group: the bottleneck's cardinality C and per-group width d
            (ResNeXt C x d); ``width_per_group=128`` is Wide ResNet-50-2.
        replace_stride_with_dilation: three bools for layer2..4, as torchvision.
        stride_in_1x1: put a bottleneck's stride on its first 1x1 conv (original paper)
            instead of the 3x3 (torchvision's "v1.5", the default).
    """

    def __init__(
        self,
        block: Block,
        layers: list[int],
        num_classes: int = 1000,
        zero_init_residual: bool = False,
        groups: int = 1,
        width_per_group: int = 64,
        replace_stride_with_dilation: list[bool] | None = None,
        norm_layer: NormLayer | None = None,
        *,
        in_channels: int = 3,
        stride_in_1x1: bool = False,
    ):
        super().__init__()
        if len(layers) != 4:
            raise ValueError(f"ResNet: layers must list 4 stage depths, got {layers}")
        if norm_layer is None:
            norm_layer = nn.BatchNorm2d
        if replace_stride_with_dilation is None:
            replace_stride_with_dilation = [False, False, False]
        if len(replace_stride_with_dilation) != 3:
            raise ValueError(
                "replace_stride_with_dilation should be None or a 3-element tuple, got "
                f"{replace_stride_with_dilation}"
            )
        if stride_in_1x1 and not issubclass(block, Bottleneck):
            raise ValueError("stride_in_1x1 only applies to Bottleneck blocks")
        self._norm_layer = norm_layer
        self._block_kwargs: dict[str, Any] = {"stride_in_1x1": True} if stride_in_1x1 else {}
        self.inplanes = 64
        self.dilation = 1
        self.groups = groups
        self.base_width = width_per_group
        self.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = norm_layer(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(block, 64, layers[0])
        self.layer2 = self._make_layer(
            block, 128, layers[1], stride=2, dilate=replace_stride_with_dilation[0]
        )
        self.layer3 = self._make_layer(
            block, 256, layers[2], stride=2, dilate=replace_stride_with_dilation[1]
        )
        self.layer4 = self._make_layer(
            block, 512, layers[3], stride=2, dilate=replace_stride_with_dilation[2]
        )
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512 * block.expansion, num_classes)
        init_weights(self, zero_init_residual)

    def _make_layer(
        self, block: Block, planes: int, blocks: int, stride: int = 1, dilate: bool = False
    ) -> nn.Sequential:
        norm_layer = self._norm_layer
        downsample: nn.Module | None = None
        previous_dilation = self.dilation
        if dilate:
            self.dilation *= stride
            stride = 1
        if stride != 1 or self.inplanes != planes * block.expansion:
            if block.has_skip:
                downsample = nn.Sequential(
                    conv1x1(self.inplanes, planes * block.expansion, stride),
                    norm_layer(planes * block.expansion),
                )
            else:  # plain nets: no projection parameters; shortcut() still answers
                downsample = ShortcutA(self.inplanes, planes * block.expansion, stride)
        layers = [
            block(
                self.inplanes,
                planes,
                stride,
                downsample,
                self.groups,
                self.base_width,
                previous_dilation,
                norm_layer,
                **self._block_kwargs,
            )
        ]
        self.inplanes = planes * block.expansion
        for _ in range(1, blocks):
            layers.append(
                block(
                    self.inplanes,
                    planes,
                    groups=self.groups,
                    base_width=self.base_width,
                    dilation=self.dilation,
                    norm_layer=norm_layer,
                    **self._block_kwargs,
                )
            )
        return nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        """(N, in_channels, H, W) -> logits (N, num_classes)."""
        if x.ndim != 4 or x.shape[1] != self.conv1.in_channels:
            raise ValueError(
                f"{type(self).__name__}: expected input (N, {self.conv1.in_channels}, H, W), "
                f"got {tuple(x.shape)}"
            )
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer1(x)
        x = self.layer2(x)
        x = self.layer3(x)
        x = self.layer4(x)
        x = self.avgpool(x)
        return self.fc(x.flatten(1))


def _resnet(block: Block, layers: list[int], dtype: Any = np.float32, **kwargs: Any) -> ResNet:
    model = ResNet(block, layers, **kwargs)
    return model if np.dtype(dtype) == np.float32 else model.to(dtype)


def resnet(depth: int, plain: bool = False, **kwargs: Any) -> ResNet:
    """ImageNet ResNet of depth 18, 34, 50, 101 or 152 (``plain=True``: no skips).

    Other keyword arguments go to `ResNet` (num_classes, zero_init_residual, groups,
    width_per_group, stride_in_1x1, ...). Input (N, 3, H, W) -> (N, num_classes).
    """
    if depth not in LAYERS:
        raise ValueError(f"resnet: depth must be one of {sorted(LAYERS)}, got {depth}")
    block, layers = LAYERS[depth]
    if plain:
        block = PlainBasicBlock if block is BasicBlock else PlainBottleneck
    return _resnet(block, layers, **kwargs)


def resnext(depth: int = 50, cardinality: int = 32, width: int = 4, **kwargs: Any) -> ResNet:
    """ResNeXt-{depth} (C x d): bottlenecks whose 3x3 conv has ``cardinality`` groups of
    ``width`` channels in the first stage (doubling per stage).

    ``resnext(50, 32, 4)`` is resnext50_32x4d; ``resnext(50, 1, 64)`` is ResNet-50.
    Input (N, 3, H, W) -> (N, num_classes).
    """
    if depth not in LAYERS or LAYERS[depth][0] is not Bottleneck:
        raise ValueError(f"resnext: depth must be 50, 101 or 152, got {depth}")
    if cardinality < 1 or width < 1:
        raise ValueError(f"resnext: cardinality and width must be >= 1, got {cardinality}, {width}")
    return _resnet(
        Bottleneck, LAYERS[depth][1], groups=cardinality, width_per_group=width, **kwargs
    )


# ResNeXt paper (Xie et al. 2017), Table 2: ResNeXt-50 templates of ~equal complexity.
RESNEXT_TEMPLATES: dict[str, tuple[int, int]] = {
    "1x64d": (1, 64),
    "2x40d": (2, 40),
    "4x24d": (4, 24),
    "8x14d": (8, 14),
    "32x4d": (32, 4),
}


def resnext50_template(name: str, **kwargs: Any) -> ResNet:
    """One of the ResNeXt-50 preserved-complexity templates: "1x64d", "2x40d", "4x24d",
    "8x14d" or "32x4d" (cardinality x bottleneck width)."""
    if name not in RESNEXT_TEMPLATES:
        raise ValueError(f"unknown template {name!r}; choose one of {list(RESNEXT_TEMPLATES)}")
    c, d = RESNEXT_TEMPLATES[name]
    return resnext(50, c, d, **kwargs)


def resnet18(**kwargs: Any) -> ResNet:
    """ResNet-18: BasicBlock x [2, 2, 2, 2]; 11,689,512 params, 1.81 G mult-adds."""
    return _resnet(BasicBlock, [2, 2, 2, 2], **kwargs)


def resnet34(**kwargs: Any) -> ResNet:
    """ResNet-34: BasicBlock x [3, 4, 6, 3]; 21,797,672 params, 3.66 G mult-adds."""
    return _resnet(BasicBlock, [3, 4, 6, 3], **kwargs)


def resnet50(**kwargs: Any) -> ResNet:
    """ResNet-50: Bottleneck x [3, 4, 6, 3]; 25,557,032 params, 4.09 G mult-adds."""
    return _resnet(Bottleneck, [3, 4, 6, 3], **kwargs)


def resnet101(**kwargs: Any) -> ResNet:
    """ResNet-101: Bottleneck x [3, 4, 23, 3]; 44,549,160 params, 7.80 G mult-adds."""
    return _resnet(Bottleneck, [3, 4, 23, 3], **kwargs)


def resnet152(**kwargs: Any) -> ResNet:
    """ResNet-152: Bottleneck x [3, 8, 36, 3]; 60,192,808 params, 11.51 G mult-adds."""
    return _resnet(Bottleneck, [3, 8, 36, 3], **kwargs)


def resnext50_32x4d(**kwargs: Any) -> ResNet:
    """ResNeXt-50 (32x4d); 25,028,904 params, 4.23 G mult-adds."""
    return _resnet(Bottleneck, [3, 4, 6, 3], groups=32, width_per_group=4, **kwargs)


def resnext101_32x8d(**kwargs: Any) -> ResNet:
    """ResNeXt-101 (32x8d); 88,791,336 params, 16.41 G mult-adds."""
    return _resnet(Bottleneck, [3, 4, 23, 3], groups=32, width_per_group=8, **kwargs)


def resnext101_64x4d(**kwargs: Any) -> ResNet:
    """ResNeXt-101 (64x4d); 83,455,272 params, 15.46 G mult-adds."""
    return _resnet(Bottleneck, [3, 4, 23, 3], groups=64, width_per_group=4, **kwargs)


def wide_resnet50_2(**kwargs: Any) -> ResNet:
    """Wide ResNet-50-2: bottleneck inner width doubled; 68,883,240 params, 11.40 G."""
    return _resnet(Bottleneck, [3, 4, 6, 3], width_per_group=128, **kwargs)
