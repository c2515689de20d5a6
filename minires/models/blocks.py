"""Residual blocks: torchvision's `BasicBlock` and `Bottleneck`, their plain twins with
the skip connection removed, and the parameter-free option-A shortcut of the CIFAR nets.

Every block splits its forward into two readable halves so the teaching tools can look
at (or remove) each one:

    residual(x)  the branch F(x): conv -> bn -> relu -> ... -> last bn (before the add)
    shortcut(x)  the identity x, ``downsample(x)`` (1x1 conv + bn), or option A
    forward(x)   relu(residual(x) + shortcut(x))      for residual blocks (has_skip True)
                 relu(residual(x))                    for plain blocks    (has_skip False)

The add is an ordinary (not in-place) `+`, so the identity tensor stays intact.
"""

from __future__ import annotations

from collections.abc import Callable

from minires import functional as F
from minires import nn
from minires.tensor import Tensor

NormLayer = Callable[[int], nn.Module]


def conv3x3(
    in_planes: int, out_planes: int, stride: int = 1, groups: int = 1, dilation: int = 1
) -> nn.Conv2d:
    """3x3 convolution with padding, no bias: (N, in, H, W) -> (N, out, H/stride, W/stride)."""
    return nn.Conv2d(
        in_planes,
        out_planes,
        kernel_size=3,
        stride=stride,
        padding=dilation,
        groups=groups,
        bias=False,
        dilation=dilation,
    )


def conv1x1(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    """1x1 convolution, no bias: (N, in, H, W) -> (N, out, H/stride, W/stride)."""
    return nn.Conv2d(in_planes, out_planes, kernel_size=1, stride=stride, bias=False)


class ShortcutA(nn.Module):
    """Option-A shortcut of He et al. (2015), section 4.2: parameter-free.

    (N, in_planes, H, W) -> (N, planes, H/stride, W/stride): subsample ``x[:, :, ::2, ::2]``
    when ``stride == 2``, then append ``planes - in_planes`` zero channels after the
    existing ones.
    """

    def __init__(self, in_planes: int, planes: int, stride: int = 1):
        super().__init__()
        if planes < in_planes:
            raise ValueError(
                f"ShortcutA: cannot shrink channels ({in_planes} -> {planes}); option A only "
                "pads with zeros"
            )
        if stride not in (1, 2):
            raise ValueError(f"ShortcutA: stride must be 1 or 2, got {stride}")
        self.in_planes, self.planes, self.stride = in_planes, planes, stride

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim != 4 or x.shape[1] != self.in_planes:
            raise ValueError(
                f"ShortcutA: expected input (N, {self.in_planes}, H, W), got {tuple(x.shape)}"
            )
        if self.stride == 2:
            x = x[:, :, ::2, ::2]
        extra = self.planes - self.in_planes
        if extra:
            x = F.pad(x, (0, 0, 0, 0, 0, extra))  # torch order: (W, H, C) pairs
        return x

    def extra_repr(self) -> str:
        return f"{self.in_planes}, {self.planes}, stride={self.stride}"


class BasicBlock(nn.Module):
    """Two 3x3 convs (ResNet-18/34 and the CIFAR nets).

    (N, inplanes, H, W) -> (N, planes, H/stride, W/stride). ``downsample`` must map the
    input to that shape when it changes (a 1x1 conv + bn, or `ShortcutA`).
    """

    expansion: int = 1
    has_skip: bool = True

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        groups: int = 1,
        base_width: int = 64,
        dilation: int = 1,
        norm_layer: NormLayer | None = None,
    ):
        super().__init__()
        if norm_layer is None:
            norm_layer = nn.BatchNorm2d
        if groups != 1 or base_width != 64:
            raise ValueError(
                f"BasicBlock only supports groups=1 and base_width=64 (got groups={groups}, "
                f"base_width={base_width}); use Bottleneck for ResNeXt / Wide ResNet"
            )
        if dilation > 1:
            raise NotImplementedError("dilation > 1 is not supported in BasicBlock")
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn1 = norm_layer(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = norm_layer(planes)
        self.downsample = downsample
        self.stride = stride

    def residual(self, x: Tensor) -> Tensor:
        """F(x): conv1-bn1-relu-conv2-bn2, (N, inplanes, H, W) -> (N, planes, H', W')."""
        out = self.relu(self.bn1(self.conv1(x)))
        return self.bn2(self.conv2(out))

    def shortcut(self, x: Tensor) -> Tensor:
        """The skip path: x itself, or ``downsample(x)`` when the shape changes."""
        return x if self.downsample is None else self.downsample(x)

    def forward(self, x: Tensor) -> Tensor:
        """relu(F(x) + shortcut(x)); (N, inplanes, H, W) -> (N, planes, H', W')."""
        return self.relu(self.residual(x) + self.shortcut(x))


class Bottleneck(nn.Module):
    """1x1 (reduce) -> 3x3 (grouped) -> 1x1 (expand x4): ResNet-50+, ResNeXt, Wide ResNet.

    (N, inplanes, H, W) -> (N, planes * 4, H/stride, W/stride). The inner width is
    ``int(planes * base_width / 64) * groups``: groups=32, base_width=4 gives ResNeXt's
    32x4d; groups=1, base_width=128 gives Wide ResNet-50-2.

    The stride sits on the 3x3 conv (torchvision's "ResNet v1.5"); ``stride_in_1x1=True``
    puts it on the first 1x1 conv, as in the original paper (and Caffe models).
    """

    expansion: int = 4
    has_skip: bool = True

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        groups: int = 1,
        base_width: int = 64,
        dilation: int = 1,
        norm_layer: NormLayer | None = None,
        *,
        stride_in_1x1: bool = False,
    ):
        super().__init__()
        if norm_layer is None:
            norm_layer = nn.BatchNorm2d
        width = int(planes * (base_width / 64.0)) * groups
        if width < 1:
            raise ValueError(
                f"Bottleneck: inner width int({planes} * {base_width} / 64) * {groups} is 0"
            )
        s1, s3 = (stride, 1) if stride_in_1x1 else (1, stride)
        self.conv1 = conv1x1(inplanes, width, s1)
        self.bn1 = norm_layer(width)
        self.conv2 = conv3x3(width, width, s3, groups, dilation)
        self.bn2 = norm_layer(width)
        self.conv3 = conv1x1(width, planes * self.expansion)
        self.bn3 = norm_layer(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.stride = stride

    def residual(self, x: Tensor) -> Tensor:
        """F(x): conv1-bn1-relu-conv2-bn2-relu-conv3-bn3, -> (N, planes*4, H', W')."""
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self.bn3(self.conv3(out))

    def shortcut(self, x: Tensor) -> Tensor:
        """The skip path: x itself, or ``downsample(x)`` when the shape changes."""
        return x if self.downsample is None else self.downsample(x)

    def forward(self, x: Tensor) -> Tensor:
        """relu(F(x) + shortcut(x)); (N, inplanes, H, W) -> (N, planes*4, H', W')."""
        return self.relu(self.residual(x) + self.shortcut(x))


class PlainBasicBlock(BasicBlock):
    """`BasicBlock` without the skip: relu(F(x)). Same layers, same state_dict keys.

    `shortcut` still exists (for lesion and comparison tools) but forward ignores it.
    """

    has_skip: bool = False

    def forward(self, x: Tensor) -> Tensor:
        """relu(F(x)); (N, inplanes, H, W) -> (N, planes, H', W')."""
        return self.relu(self.residual(x))


class PlainBottleneck(Bottleneck):
    """`Bottleneck` without the skip: relu(F(x)). Same layers, same state_dict keys."""

    has_skip: bool = False

    def forward(self, x: Tensor) -> Tensor:
        """relu(F(x)); (N, inplanes, H, W) -> (N, planes*4, H', W')."""
        return self.relu(self.residual(x))
