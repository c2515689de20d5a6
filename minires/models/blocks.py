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
from typing import Any

import numpy as np

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
    last_bn: str = "bn2"  # the residual branch's last BN (zero_init_residual zeroes it)

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
    last_bn: str = "bn3"  # the residual branch's last BN (zero_init_residual zeroes it)

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


# =======================================================================================
# ResNeXt's three equivalent forms (Xie et al. 2017, Fig. 3)
# =======================================================================================
#
# A ResNeXt block aggregates C transformations of the same input, y = x + sum_i T_i(x):
#
#   (a) ResNeXtPaths   C paths  1x1 (in -> d) - BN - ReLU - 3x3 (d -> d) - BN - ReLU -
#                      1x1 (d -> out), summed, then one BN; + shortcut; ReLU
#   (b) ResNeXtConcat  C paths  1x1 - BN - ReLU - 3x3 - BN - ReLU, concatenated
#                      (C*d channels), one 1x1 (C*d -> out) - BN; + shortcut; ReLU
#   (c) Bottleneck(groups=C)    1x1 (in -> C*d) - BN - ReLU - 3x3 in C groups - BN - ReLU
#                      - 1x1 (C*d -> out) - BN; + shortcut; ReLU
#
# They are one function: a 1x1 conv of C*d channels is C 1x1 convs of d channels stacked
# along the output axis (conv1); a grouped 3x3 conv is C separate 3x3 convs (conv2);
# a 1x1 conv *from* C*d channels is the sum of C 1x1 convs, each over its own slice of d
# input channels (conv3): conv3(cat(h_1..h_C)) = sum_i conv3[:, slice_i](h_i). BatchNorm
# works per channel, so slicing its parameters and running statistics per path changes
# nothing. `from_bottleneck` builds (a) or (b) from a grouped Bottleneck with the same
# weights; `bottleneck_state_dict` maps parameters, buffers or gradients back to (c)'s
# names.


class ResNeXtPath(nn.Module):
    """One transformation T_i of a ResNeXt block (paper Fig. 3a/b), width ``d``.

    (N, inplanes, H, W) -> conv1 1x1 (inplanes -> d) -> bn1 -> relu -> conv2 3x3
    (d -> d, stride) -> bn2 -> relu [-> conv3 1x1 (d -> out_planes)] ->
    (N, d or out_planes, H/stride, W/stride). Without ``out_planes`` (form b) the path
    stops after the second ReLU.
    """

    def __init__(
        self,
        inplanes: int,
        width: int,
        out_planes: int | None = None,
        stride: int = 1,
        dilation: int = 1,
        norm_layer: NormLayer | None = None,
        *,
        stride_in_1x1: bool = False,
    ):
        super().__init__()
        norm_layer = norm_layer or nn.BatchNorm2d
        s1, s3 = (stride, 1) if stride_in_1x1 else (1, stride)
        self.conv1 = conv1x1(inplanes, width, s1)
        self.bn1 = norm_layer(width)
        self.conv2 = conv3x3(width, width, s3, 1, dilation)
        self.bn2 = norm_layer(width)
        self.conv3 = None if out_planes is None else conv1x1(width, out_planes)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        """T_i(x): (N, inplanes, H, W) -> (N, d or out_planes, H', W')."""
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return out if self.conv3 is None else self.conv3(out)


# How each per-path entry maps onto the grouped Bottleneck's tensor of the same local
# name: the axis along which the C paths' slices are stacked (None: one shared counter).
_PATH_AXES: dict[str, int | None] = {
    "conv1.weight": 0,
    "conv2.weight": 0,
    **{
        f"{bn}.{k}": 0
        for bn in ("bn1", "bn2")
        for k in ("weight", "bias", "running_mean", "running_var")
    },  # fmt: skip
    "bn1.num_batches_tracked": None,
    "bn2.num_batches_tracked": None,
}


class _ResNeXtForm(nn.Module):
    """What forms (a) and (b) share: the constructor arguments of `Bottleneck`, the
    residual/shortcut split, `from_bottleneck` and the mapping back to form (c)."""

    expansion: int = 4
    has_skip: bool = True
    last_bn: str = "bn3"  # the residual branch's last BN (zero_init_residual zeroes it)
    _path_axes: dict[str, int | None] = _PATH_AXES
    _path_out: bool = False  # form (a): each path ends with its own 1x1 to out_planes

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
        d = int(planes * (base_width / 64.0))
        if d < 1 or groups < 1:
            raise ValueError(
                f"{type(self).__name__}: width per path int({planes} * {base_width} / 64) = "
                f"{d} and groups={groups} must both be >= 1"
            )
        self._build(inplanes, d, groups, planes * self.expansion, stride, dilation,
                    norm_layer, stride_in_1x1)  # fmt: skip
        self.downsample = downsample

    def _build(
        self,
        inplanes: int,
        d: int,
        cardinality: int,
        out_planes: int,
        stride: int,
        dilation: int,
        norm_layer: NormLayer | None,
        stride_in_1x1: bool,
    ) -> None:
        norm_layer = norm_layer or nn.BatchNorm2d
        path_out = out_planes if self._path_out else None
        self.paths = nn.ModuleList(
            ResNeXtPath(
                inplanes, d, path_out, stride, dilation, norm_layer, stride_in_1x1=stride_in_1x1
            )  # fmt: skip
            for _ in range(cardinality)
        )
        if not self._path_out:
            self.conv3 = conv1x1(cardinality * d, out_planes)
        self.bn3 = norm_layer(out_planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample: nn.Module | None = None
        self.stride = stride

    @property
    def cardinality(self) -> int:
        """C, the number of paths."""
        return len(self.paths)

    def shortcut(self, x: Tensor) -> Tensor:
        """The skip path: x itself, or ``downsample(x)`` when the shape changes."""
        return x if self.downsample is None else self.downsample(x)

    def forward(self, x: Tensor) -> Tensor:
        """relu(F(x) + shortcut(x)); (N, inplanes, H, W) -> (N, planes*4, H', W')."""
        return self.relu(self.residual(x) + self.shortcut(x))

    def residual(self, x: Tensor) -> Tensor:  # pragma: no cover - defined by each form
        raise NotImplementedError

    @classmethod
    def from_bottleneck(cls, block: Bottleneck) -> _ResNeXtForm:
        """This form of a grouped `Bottleneck` (form c), with the same weights.

        Every per-path tensor is a copy of its slice of the block's tensor: conv1's and
        conv2's output channels, conv3's input channels (form a), bn1/bn2's weight, bias
        and running statistics; the final BN, conv3 (form b) and the downsample are
        copied whole. The result is independent of ``block`` (training one does not
        change the other), in the block's dtype and train/eval mode.

        Raises:
            TypeError: ``block`` is not a residual `Bottleneck`, or its bn1/bn2 are not
                `nn.BatchNorm2d` (other norms cannot be sliced per path).
            ValueError: ``block`` is not grouped (``groups=1``: a single path is the
                Bottleneck itself, there is nothing to split), or a conv has a bias.
        """
        import copy

        if not isinstance(block, Bottleneck) or not block.has_skip:
            raise TypeError(
                f"{cls.__name__}.from_bottleneck needs a residual Bottleneck (form c), got "
                f"{type(block).__name__}"
            )
        groups = block.conv2.groups
        if groups == 1:
            raise ValueError(
                f"{cls.__name__}.from_bottleneck: the block is not grouped (conv2 has "
                "groups=1), so it has one path and nothing to split; build it with "
                "Bottleneck(..., groups=C) for C > 1"
            )
        for name in ("bn1", "bn2"):
            bn = getattr(block, name)
            if type(bn) is not nn.BatchNorm2d:
                raise TypeError(
                    f"{cls.__name__}.from_bottleneck: {name} is a {type(bn).__name__}; only "
                    "nn.BatchNorm2d can be sliced per path (it normalises each channel alone)"
                )
        for name in ("conv1", "conv2", "conv3"):
            if getattr(block, name).bias is not None:
                raise ValueError(f"{cls.__name__}.from_bottleneck: {name} has a bias")
        width, out_planes = block.conv2.out_channels, block.conv3.out_channels
        s1, s3 = block.conv1.stride[0], block.conv2.stride[0]
        bn = block.bn1

        def norm(c: int) -> nn.BatchNorm2d:  # the block's eps and momentum
            return nn.BatchNorm2d(c, eps=bn.eps, momentum=bn.momentum)

        obj = cls.__new__(cls)
        nn.Module.__init__(obj)
        obj._build(block.conv1.in_channels, width // groups, groups, out_planes,
                   max(s1, s3), block.conv2.dilation[0], norm, s1 > 1)  # fmt: skip
        obj.bn3 = copy.deepcopy(block.bn3)
        obj.downsample = copy.deepcopy(block.downsample)
        obj.to(block.conv1.weight.dtype)
        src = block.state_dict()
        state = {}
        for key, value in obj.state_dict().items():
            path, local = _split_path_key(key)
            if path is None:
                state[key] = src[key]
                continue
            axis = obj._path_axis(local)
            if axis is None:
                state[key] = src[local]
            else:
                n = value.shape[axis]
                state[key] = np.take(src[local], range(path * n, (path + 1) * n), axis=axis)
        obj.load_state_dict(state)
        obj.train(block.training)
        return obj

    def _path_axis(self, local: str) -> int | None:
        if local in self._path_axes:
            return self._path_axes[local]
        if self._path_out and local == "conv3.weight":
            return 1  # conv3 of form (c) reads all C*d channels: path i owns slice i
        raise KeyError(f"{type(self).__name__}: no rule to map path entry {local!r} to form (c)")

    def bottleneck_state_dict(self, values: dict[str, Any] | None = None) -> dict[str, Any]:
        """Values keyed by this form's names, mapped to form (c)'s (`Bottleneck`) names.

        ``values`` defaults to ``self.state_dict()``; pass e.g.
        ``{n: p.grad for n, p in self.named_parameters()}`` to map gradients. Per-path
        entries are concatenated in path order along the axis they were sliced from;
        ``num_batches_tracked`` (one counter per path, all equal) becomes path 0's.
        """
        values = self.state_dict() if values is None else values
        out: dict[str, Any] = {}
        per_path: dict[str, list[tuple[int, Any]]] = {}
        for key, value in values.items():
            path, local = _split_path_key(key)
            if path is None:
                out[key] = value
            else:
                per_path.setdefault(local, []).append((path, value))
        for local, items in per_path.items():
            items.sort(key=lambda iv: iv[0])
            axis = self._path_axis(local)
            arrays = [np.asarray(v) for _, v in items]
            out[local] = arrays[0] if axis is None else np.concatenate(arrays, axis=axis)
        return out


def _split_path_key(key: str) -> tuple[int | None, str]:
    """``"paths.3.bn1.weight"`` -> (3, ``"bn1.weight"``); other keys -> (None, key)."""
    if key.startswith("paths."):
        _, i, local = key.split(".", 2)
        return int(i), local
    return None, key


class ResNeXtPaths(_ResNeXtForm):
    """ResNeXt block, form (a) of Fig. 3: C parallel paths, summed.

    (N, inplanes, H, W) -> (N, planes*4, H/stride, W/stride). ``paths`` is an
    `nn.ModuleList` of C `ResNeXtPath` (1x1 -> BN-ReLU -> 3x3 -> BN-ReLU -> 1x1 to
    planes*4, width d = int(planes * base_width / 64) each); their outputs are summed,
    then one BN (``bn3``), + shortcut, ReLU. Same arguments and parameter count as
    ``Bottleneck(groups=C)``; `from_bottleneck` copies a grouped Bottleneck's weights.
    Keys: ``paths.<i>.{conv1,bn1,conv2,bn2,conv3}``, ``bn3``, ``downsample``.
    """

    _path_out = True

    def residual(self, x: Tensor) -> Tensor:
        """F(x) = bn3(sum_i T_i(x)), (N, inplanes, H, W) -> (N, planes*4, H', W')."""
        out = self.paths[0](x)
        for path in list(self.paths)[1:]:
            out = out + path(x)
        return self.bn3(out)


class ResNeXtConcat(_ResNeXtForm):
    """ResNeXt block, form (b) of Fig. 3: early concatenation.

    (N, inplanes, H, W) -> (N, planes*4, H/stride, W/stride). ``paths`` is an
    `nn.ModuleList` of C `ResNeXtPath` without their last 1x1 (1x1 -> BN-ReLU -> 3x3 ->
    BN-ReLU, d channels out); the C outputs are concatenated (C*d channels) and go through
    one 1x1 conv (``conv3``) and BN (``bn3``), + shortcut, ReLU. Keys:
    ``paths.<i>.{conv1,bn1,conv2,bn2}``, ``conv3``, ``bn3``, ``downsample``.
    """

    def residual(self, x: Tensor) -> Tensor:
        """F(x) = bn3(conv3(cat_i T_i(x))), (N, inplanes, H, W) -> (N, planes*4, H', W')."""
        return self.bn3(self.conv3(F.cat([path(x) for path in self.paths], axis=1)))


# =======================================================================================
# Depthwise-separable convolution (Xception / MobileNet)
# =======================================================================================


class DepthwiseSeparableBlock(nn.Module):
    """A residual block built on a depthwise-separable convolution (MobileNet v1 layout).

    (N, inplanes, H, W) -> (N, planes, H/stride, W/stride)::

        conv1  depthwise 3x3, inplanes -> inplanes, groups=inplanes, stride  (9 MACs/px/ch)
        bn1 -> relu
        conv2  pointwise 1x1, inplanes -> planes                    (inplanes MACs/px/ch)
        bn2
        + shortcut(x) -> relu      (shortcut: x, or ``downsample(x)`` when the shape changes)

    The depthwise conv filters every channel on its own (space), the pointwise conv mixes
    channels (depth): the dense 3x3 conv's ``9 * C_in * C_out`` MACs per pixel become
    ``9 * C_in + C_in * C_out``. MobileNet v1 puts BN-ReLU after both convs, as here;
    Xception's SeparableConv has no BN or ReLU between them. ``has_skip``, ``residual`` and
    ``shortcut`` follow the other blocks, so the analysis tools and `mr.viz` see it.
    """

    expansion: int = 1
    has_skip: bool = True
    last_bn: str = "bn2"  # the residual branch's last BN (zero_init_residual zeroes it)

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        norm_layer: NormLayer | None = None,
    ):
        super().__init__()
        norm_layer = norm_layer or nn.BatchNorm2d
        self.conv1 = conv3x3(inplanes, inplanes, stride, groups=inplanes)
        self.bn1 = norm_layer(inplanes)
        self.conv2 = conv1x1(inplanes, planes)
        self.bn2 = norm_layer(planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.stride = stride

    def residual(self, x: Tensor) -> Tensor:
        """F(x): depthwise-bn1-relu-pointwise-bn2, (N, inplanes, H, W) -> (N, planes, H', W')."""
        return self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))

    def shortcut(self, x: Tensor) -> Tensor:
        """The skip path: x itself, or ``downsample(x)`` when the shape changes."""
        return x if self.downsample is None else self.downsample(x)

    def forward(self, x: Tensor) -> Tensor:
        """relu(F(x) + shortcut(x)); (N, inplanes, H, W) -> (N, planes, H', W')."""
        return self.relu(self.residual(x) + self.shortcut(x))
