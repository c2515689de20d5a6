"""``nn.GroupNorm`` and ``nn.LayerNorm``: per-sample normalisation (no batch statistics,
so training and evaluation compute the same thing), with PyTorch's parameter names."""

from __future__ import annotations

from typing import Any

import numpy as np

from minires import functional as F
from minires.functional._util import check_real
from minires.nn import init
from minires.nn.layers import _check_bool, _factory_args
from minires.nn.module import Module, Parameter
from minires.tensor import Tensor


class GroupNorm(Module):
    """Group normalisation of (N, C, *) inputs: ``num_channels`` split into ``num_groups``
    groups, each standardised per sample; then per-channel ``weight`` (ones) and ``bias``
    (zeros; none with ``bias=False``) when ``affine``. ``num_groups=1`` normalises over
    (C, H, W) like a layer norm; ``num_groups=num_channels`` is instance norm. ``device``
    may only be the CPU; ``dtype`` defaults to float32."""

    def __init__(
        self,
        num_groups: int,
        num_channels: int,
        eps: float = 1e-5,
        affine: bool = True,
        device: Any = None,
        dtype: Any = None,
        *,
        bias: bool = True,
    ):
        super().__init__()
        op = "GroupNorm"
        for name, v in (("num_groups", num_groups), ("num_channels", num_channels)):
            if isinstance(v, bool) or not isinstance(v, int | np.integer) or v <= 0:
                raise ValueError(f"GroupNorm: {name} must be a positive int, got {v!r}")
        if num_channels % num_groups:
            raise ValueError(
                f"GroupNorm: num_channels ({num_channels}) must be divisible by "
                f"num_groups ({num_groups})"
            )
        eps = check_real(eps, "eps", op, minimum=0.0)  # here, not at the first call
        _check_bool(affine, "affine", op)
        _check_bool(bias, "bias", op)
        dtype = _factory_args(device, dtype, op)
        self.num_groups, self.num_channels = int(num_groups), int(num_channels)
        self.eps, self.affine = eps, affine
        if affine:
            self.weight = Parameter(np.ones(num_channels, dtype))
            self.register_parameter(
                "bias", Parameter(np.zeros(num_channels, dtype)) if bias else None
            )
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)

    def reset_parameters(self) -> None:
        """weight 1, bias 0 (torch's initialisation)."""
        _reset_affine(self)

    def forward(self, x: Tensor) -> Tensor:
        if isinstance(x, Tensor) and x.ndim >= 2 and x.shape[1] != self.num_channels:
            raise ValueError(
                f"GroupNorm: expected {self.num_channels} channels, got input of shape {x.shape}"
            )
        return F.group_norm(x, self.num_groups, self.weight, self.bias, self.eps)

    def extra_repr(self) -> str:
        return (
            f"{self.num_groups}, {self.num_channels}, eps={self.eps}, affine={self.affine}, "
            f"bias={self.bias is not None}"
        )


class LayerNorm(Module):
    """Layer normalisation over the trailing dimensions ``normalized_shape`` (an int or a
    tuple): each sample standardised on its own, then elementwise ``weight`` (ones) and
    ``bias`` (zeros) of shape ``normalized_shape`` when ``elementwise_affine`` (``bias=False``
    drops the bias, as in torch >= 2.1). ``device`` may only be the CPU; ``dtype``
    defaults to float32."""

    def __init__(
        self,
        normalized_shape: int | tuple[int, ...] | list[int],
        eps: float = 1e-5,
        elementwise_affine: bool = True,
        bias: bool = True,
        device: Any = None,
        dtype: Any = None,
    ):
        super().__init__()
        if not isinstance(normalized_shape, int | np.integer | tuple | list):
            raise TypeError(
                "LayerNorm: normalized_shape must be an int or a tuple of ints, got "
                f"{normalized_shape!r}"
            )
        shape = (
            (normalized_shape,)
            if isinstance(normalized_shape, int | np.integer)
            else tuple(normalized_shape)
        )
        if not shape or not all(
            isinstance(s, int | np.integer) and not isinstance(s, bool) and s > 0 for s in shape
        ):
            raise ValueError(
                f"LayerNorm: normalized_shape must be a positive int or a non-empty tuple of "
                f"them, got {normalized_shape!r}"
            )
        self.normalized_shape = tuple(int(s) for s in shape)
        eps = check_real(eps, "eps", "LayerNorm", minimum=0.0)  # here, not at the first call
        _check_bool(elementwise_affine, "elementwise_affine", "LayerNorm")
        _check_bool(bias, "bias", "LayerNorm")
        dtype = _factory_args(device, dtype, "LayerNorm")
        self.eps, self.elementwise_affine = eps, elementwise_affine
        if elementwise_affine:
            self.weight = Parameter(np.ones(self.normalized_shape, dtype))
        else:
            self.register_parameter("weight", None)
        if elementwise_affine and bias:
            self.bias = Parameter(np.zeros(self.normalized_shape, dtype))
        else:
            self.register_parameter("bias", None)

    def reset_parameters(self) -> None:
        """weight 1, bias 0 (torch's initialisation)."""
        _reset_affine(self)

    def forward(self, x: Tensor) -> Tensor:
        return F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)

    def extra_repr(self) -> str:
        return (
            f"{self.normalized_shape}, eps={self.eps}, "
            f"elementwise_affine={self.elementwise_affine}, bias={self.bias is not None}"
        )


def _reset_affine(module: Module) -> None:
    if module.weight is not None:
        init.ones_(module.weight)
    if module.bias is not None:
        init.zeros_(module.bias)
