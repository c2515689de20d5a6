"""CIFAR-style ResNeXt (Xie et al. 2017, section 5.3), and the cardinality templates.

    conv1   3x3 conv, stem_width channels -> bn1 -> relu
    layer1  n Bottlenecks, planes P,  out 4P, C groups of d channels (3x3 width C*d)
    layer2  n Bottlenecks, planes 2P, out 8P, width 2*C*d          (first strides 2)
    layer3  n Bottlenecks, planes 4P, out 16P, width 4*C*d         (first strides 2)
    head    global average pool -> fc

depth = 9n + 2. Each block is the grouped `Bottleneck` (form c) with ``groups=C`` and
``base_width=d``, so stage 1's width per group is ``P * d / 64``: with P = 64 (the
paper's ResNeXt-29: outputs 256, 512, 1024) the template "8x64d" has 3x3 widths 512,
1024, 2048. Shortcuts are projections (1x1 conv + BN) where the shape changes,
identities elsewhere. Input (N, in_channels, H, W) -> (N, num_classes).

`parse_template` / `template_width` read and check a "CxDd" template (e.g. "32x4d").
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from minires import nn
from minires.models.blocks import Bottleneck, conv1x1, conv3x3
from minires.models.resnet import init_weights
from minires.tensor import Tensor

_TEMPLATE = re.compile(r"(\d+)x(\d+)d")


def parse_template(template: str) -> tuple[int, int]:
    """``"32x4d"`` -> (cardinality 32, bottleneck width d 4); ValueError otherwise."""
    m = _TEMPLATE.fullmatch(str(template).strip())
    if not m or int(m[1]) < 1 or int(m[2]) < 1:
        raise ValueError(
            f"template {template!r}: expected 'CxDd' with positive integers, e.g. '32x4d' "
            "(cardinality C, bottleneck width d per group)"
        )
    return int(m[1]), int(m[2])


def template_width(template: str, base_planes: int = 64) -> int:
    """Width per group of stage 1 for a template at ``base_planes``: ``base_planes * d /
    64``, which must be a whole number >= 1 (ValueError naming the template otherwise).

    At base_planes 64 it is d itself (the paper's ResNeXt-29); at 32 every width halves:
    "8x14d" -> 7 channels per group, and "8x14d" at 16 (3.5) is refused.
    """
    c, d = parse_template(template)
    if base_planes < 1:
        raise ValueError(f"base_planes must be >= 1, got {base_planes}")
    if (base_planes * d) % 64:
        raise ValueError(
            f"template {template!r} at base_planes={base_planes}: the width per group "
            f"{base_planes} * {d} / 64 = {base_planes * d / 64:g} is not a whole number; "
            "choose base_planes so that base_planes * d is a multiple of 64"
        )
    return base_planes * d // 64


class CifarResNeXt(nn.Module):
    """CIFAR-style ResNeXt: (N, in_channels, H, W) -> (N, num_classes).

    Args:
        blocks_per_stage: n (depth 9n + 2).
        cardinality, width: the template C x d (d at base_planes 64, as in the paper).
        base_planes: P, the planes of stage 1 (outputs 4P, 8P, 16P).
        stem_width: channels of the 3x3 stem conv.
    """

    def __init__(
        self,
        blocks_per_stage: int = 3,
        cardinality: int = 8,
        width: int = 64,
        base_planes: int = 64,
        stem_width: int = 64,
        num_classes: int = 10,
        in_channels: int = 3,
    ):
        super().__init__()
        if blocks_per_stage < 1:
            raise ValueError(f"CifarResNeXt: blocks_per_stage must be >= 1, got {blocks_per_stage}")
        template_width(f"{cardinality}x{width}d", base_planes)  # checks divisibility
        self.cardinality, self.width = cardinality, width
        self.conv1 = conv3x3(in_channels, stem_width)
        self.bn1 = nn.BatchNorm2d(stem_width)
        self.relu = nn.ReLU(inplace=True)
        inplanes = stem_width
        for s in range(3):
            planes = base_planes * 2**s
            layers = []
            for i in range(blocks_per_stage):
                stride = 2 if (s > 0 and i == 0) else 1
                ds = None
                if stride != 1 or inplanes != planes * 4:
                    ds = nn.Sequential(
                        conv1x1(inplanes, planes * 4, stride), nn.BatchNorm2d(planes * 4)
                    )
                # Bottleneck's inner width is int(planes * base_width / 64) * groups; with
                # base_width = d that is planes * d / 64 per group, exact by the check above
                layers.append(Bottleneck(inplanes, planes, stride, ds, cardinality, width))
                inplanes = planes * 4
            self.add_module(f"layer{s + 1}", nn.Sequential(*layers))
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(inplanes, num_classes)
        init_weights(self)

    def forward(self, x: Tensor) -> Tensor:
        """(N, in_channels, H, W) -> logits (N, num_classes)."""
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(self.avgpool(x).flatten(1))


def cifar_resnext(
    depth: int = 29,
    template: str = "8x64d",
    base_planes: int = 64,
    stem_width: int = 64,
    num_classes: int = 10,
    in_channels: int = 3,
    dtype: Any = np.float32,
) -> CifarResNeXt:
    """A CIFAR ResNeXt of depth 9n + 2 (11, 20, 29, ...) for a "CxDd" template.

    ``cifar_resnext(29, "8x64d")`` is the paper's ResNeXt-29 8x64d (34.4M params);
    ``cifar_resnext(11, "32x4d", base_planes=32, stem_width=32)`` is the small net of
    ``minires experiment cardinality``.
    """
    if depth < 11 or (depth - 2) % 9:
        raise ValueError(f"cifar_resnext: depth must be 9n + 2 (11, 20, 29, ...), got {depth}")
    c, d = parse_template(template)
    model = CifarResNeXt((depth - 2) // 9, c, d, base_planes, stem_width, num_classes,
                         in_channels)  # fmt: skip
    return model if np.dtype(dtype) == np.float32 else model.to(dtype)
