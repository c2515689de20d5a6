"""ResNet, ResNeXt, Wide ResNet and plain nets, for ImageNet and CIFAR.

    import minires as mr
    model = mr.models.resnet50()                  # torchvision structure and keys
    model = mr.models.resnext(50, cardinality=8, width=14)
    model = mr.models.resnet20()                  # CIFAR, option-A shortcuts
    model = mr.models.cifar_resnet(1202)          # any depth 6n + 2
    model = mr.models.preact_resnet110()          # pre-activation (He et al. 2016b)
    model = mr.models.preact_resnet1001()         # bottleneck units, 10.3 M params
    block = model.layer1[0]                       # blocks: residual(x), shortcut(x)

`get_model(name)` builds any model by name (also ``"resnext50_8x14d"``,
``"cifar_resnet8"``, ``"cifar_plain14"``, ``"preact_resnet8"``); `list_models()` lists
the registered names.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from minires.models.blocks import (
    BasicBlock,
    Bottleneck,
    DepthwiseSeparableBlock,
    PlainBasicBlock,
    PlainBottleneck,
    ResNeXtConcat,
    ResNeXtPath,
    ResNeXtPaths,
    ShortcutA,
    conv1x1,
    conv3x3,
)
from minires.models.cifar import (
    CifarResNet,
    cifar_resnet,
    plain20,
    plain32,
    plain44,
    plain56,
    plain110,
    resnet20,
    resnet32,
    resnet44,
    resnet56,
    resnet110,
    resnet1202,
)
from minires.models.cifar_resnext import (
    CifarResNeXt,
    cifar_resnext,
    parse_template,
    template_width,
)
from minires.models.preact import (
    PreActBasicBlock,
    PreActBottleneck,
    PreActResNet,
    preact_resnet,
    preact_resnet20,
    preact_resnet32,
    preact_resnet44,
    preact_resnet56,
    preact_resnet110,
    preact_resnet164,
    preact_resnet1001,
)
from minires.models.resnet import (
    RESNEXT_TEMPLATES,
    ResNet,
    init_weights,
    resnet,
    resnet18,
    resnet34,
    resnet50,
    resnet101,
    resnet152,
    resnext,
    resnext50_32x4d,
    resnext50_template,
    resnext101_32x8d,
    resnext101_64x4d,
    wide_resnet50_2,
)
from minires.models.utils import no_init
from minires.nn import Module

IMAGENET_MODELS: dict[str, Callable[..., ResNet]] = {
    "resnet18": resnet18,
    "resnet34": resnet34,
    "resnet50": resnet50,
    "resnet101": resnet101,
    "resnet152": resnet152,
    "resnext50_32x4d": resnext50_32x4d,
    "resnext101_32x8d": resnext101_32x8d,
    "resnext101_64x4d": resnext101_64x4d,
    "wide_resnet50_2": wide_resnet50_2,
}

CIFAR_MODELS: dict[str, Callable[..., CifarResNet]] = {
    "resnet20": resnet20,
    "resnet32": resnet32,
    "resnet44": resnet44,
    "resnet56": resnet56,
    "resnet110": resnet110,
    "resnet1202": resnet1202,
    "plain20": plain20,
    "plain32": plain32,
    "plain44": plain44,
    "plain56": plain56,
    "plain110": plain110,
}

PREACT_MODELS: dict[str, Callable[..., PreActResNet]] = {
    "preact_resnet20": preact_resnet20,
    "preact_resnet32": preact_resnet32,
    "preact_resnet44": preact_resnet44,
    "preact_resnet56": preact_resnet56,
    "preact_resnet110": preact_resnet110,
    "preact_resnet164": preact_resnet164,
    "preact_resnet1001": preact_resnet1001,
}

MODELS: dict[str, Callable[..., Module]] = {**IMAGENET_MODELS, **CIFAR_MODELS, **PREACT_MODELS}

_RESNEXT = re.compile(r"resnext(\d+)_(\d+)x(\d+)d")
_CIFAR = re.compile(r"cifar_(resnet|plain)(\d+)")
_PREACT = re.compile(r"preact_resnet(\d+)")


def list_models() -> list[str]:
    """Names accepted by `get_model` (plus the patterns ``resnext{depth}_{C}x{d}d``,
    ``cifar_resnet{depth}`` / ``cifar_plain{depth}`` and ``preact_resnet{depth}``)."""
    return list(MODELS)


def get_model(name: str, **kwargs: Any) -> Module:
    """Build a model by name, e.g. ``get_model("resnet50", num_classes=10)``."""
    if name in MODELS:
        return MODELS[name](**kwargs)
    if m := _RESNEXT.fullmatch(name):
        return resnext(int(m[1]), int(m[2]), int(m[3]), **kwargs)
    if m := _CIFAR.fullmatch(name):
        return cifar_resnet(int(m[2]), plain=m[1] == "plain", **kwargs)
    if m := _PREACT.fullmatch(name):
        return preact_resnet(int(m[1]), **kwargs)
    raise ValueError(
        f"unknown model {name!r}; choose one of {', '.join(MODELS)}, or a pattern "
        "resnext{depth}_{C}x{d}d / cifar_resnet{depth} / cifar_plain{depth} / "
        "preact_resnet{depth}"
    )


def input_shape_for(name_or_model: str | Module) -> tuple[int, int, int]:
    """The usual one-image input shape (C, H, W): (3, 32, 32) for CIFAR nets, else
    (3, 224, 224)."""
    if isinstance(name_or_model, str):
        cifar = name_or_model in CIFAR_MODELS or bool(
            _CIFAR.fullmatch(name_or_model) or _PREACT.fullmatch(name_or_model)
        )
        return (3, 32, 32) if cifar else (3, 224, 224)
    if isinstance(name_or_model, CifarResNet | PreActResNet):
        return (name_or_model.conv1.in_channels, 32, 32)
    conv1 = getattr(name_or_model, "conv1", None)
    return (getattr(conv1, "in_channels", 3), 224, 224)


__all__ = [
    "BasicBlock",
    "Bottleneck",
    "CIFAR_MODELS",
    "CifarResNet",
    "CifarResNeXt",
    "DepthwiseSeparableBlock",
    "IMAGENET_MODELS",
    "MODELS",
    "PREACT_MODELS",
    "PlainBasicBlock",
    "PlainBottleneck",
    "PreActBasicBlock",
    "PreActBottleneck",
    "PreActResNet",
    "RESNEXT_TEMPLATES",
    "ResNeXtConcat",
    "ResNeXtPath",
    "ResNeXtPaths",
    "ResNet",
    "ShortcutA",
    "cifar_resnet",
    "cifar_resnext",
    "conv1x1",
    "conv3x3",
    "get_model",
    "init_weights",
    "input_shape_for",
    "list_models",
    "no_init",
    "parse_template",
    "plain20",
    "plain32",
    "plain44",
    "plain56",
    "plain110",
    "preact_resnet",
    "preact_resnet20",
    "preact_resnet32",
    "preact_resnet44",
    "preact_resnet56",
    "preact_resnet110",
    "preact_resnet164",
    "preact_resnet1001",
    "resnet",
    "resnet18",
    "resnet20",
    "resnet32",
    "resnet34",
    "resnet44",
    "resnet50",
    "resnet56",
    "resnet101",
    "resnet110",
    "resnet152",
    "resnet1202",
    "resnext",
    "resnext50_32x4d",
    "resnext50_template",
    "resnext101_32x8d",
    "resnext101_64x4d",
    "template_width",
    "wide_resnet50_2",
]
