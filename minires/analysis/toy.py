"""Miniature CIFAR-style nets for fast experiments on the embedded 8x8 digits.

`toy_resnet` is He et al.'s CIFAR ResNet shrunk: a 3x3 stem conv, stages of
`minires.models.BasicBlock` (or `PlainBasicBlock`) with option-A shortcuts, global average
pooling and a linear classifier. Same attribute names as the CIFAR nets (conv1, bn1,
relu, layer1.., avgpool, fc) and the same blocks, only narrower and with fewer stages,
so training one for a hundred steps takes seconds on the NumPy kernels.
"""

from __future__ import annotations

from collections.abc import Sequence

from minires import nn
from minires.models import BasicBlock, PlainBasicBlock, ShortcutA, conv3x3, init_weights
from minires.tensor import Tensor


class ToyResNet(nn.Module):
    """(N, in_channels, H, W) -> (N, num_classes); depth = 2 * sum(blocks) + 2."""

    def __init__(
        self,
        blocks: Sequence[int] = (3, 3),
        widths: Sequence[int] = (8, 16),
        plain: bool = False,
        in_channels: int = 1,
        num_classes: int = 10,
        batchnorm: bool = True,
    ):
        super().__init__()
        if len(blocks) != len(widths) or not blocks:
            raise ValueError(f"blocks {blocks} and widths {widths} must have the same length")
        block = PlainBasicBlock if plain else BasicBlock
        norm = nn.BatchNorm2d if batchnorm else (lambda c: nn.Identity())
        self.conv1 = conv3x3(in_channels, widths[0])
        self.bn1 = norm(widths[0])
        self.relu = nn.ReLU()
        inplanes = widths[0]
        self.stages: list[str] = []
        for s, (n, w) in enumerate(zip(blocks, widths)):
            stride = 1 if s == 0 else 2
            layers = []
            for i in range(n):
                st = stride if i == 0 else 1
                ds = ShortcutA(inplanes, w, st) if (st != 1 or inplanes != w) else None
                layers.append(block(inplanes, w, st, ds, norm_layer=norm))
                inplanes = w
            name = f"layer{s + 1}"
            self.add_module(name, nn.Sequential(*layers))
            self.stages.append(name)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(inplanes, num_classes)
        init_weights(self)

    def forward(self, x: Tensor) -> Tensor:
        """(N, in_channels, H, W) -> logits (N, num_classes)."""
        x = self.relu(self.bn1(self.conv1(x)))
        for name in self.stages:
            x = getattr(self, name)(x)
        return self.fc(self.avgpool(x).flatten(1))


def toy_resnet(
    blocks: Sequence[int] = (3, 3),
    widths: Sequence[int] = (8, 16),
    plain: bool = False,
    in_channels: int = 1,
    num_classes: int = 10,
    batchnorm: bool = True,
) -> ToyResNet:
    """A narrow CIFAR-style ResNet (``plain=True``: its plain twin) for 8x8 digits.

    ``toy_resnet((3, 3))`` has 14 weight layers: stem, 2 stages x 3 BasicBlocks x 2 convs,
    fc. ``batchnorm=False`` builds it without normalisation.
    """
    return ToyResNet(blocks, widths, plain, in_channels, num_classes, batchnorm)
