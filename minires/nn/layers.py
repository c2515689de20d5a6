"""The layers of the design, each a thin Module around one functional op, initialised
as in PyTorch."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from minires import functional as F
from minires.functional._util import check_int, check_real, pair
from minires.functional.conv import PADDING_STRINGS
from minires.functional.pool import check_pool_geometry
from minires.nn import init
from minires.nn.module import Module, Parameter
from minires.tensor import Tensor

Pair = int | tuple[int, int]


def _check_bool(value: Any, name: str, op: str) -> None:
    if not isinstance(value, bool | np.bool_):
        raise TypeError(f"{op}: {name} must be True or False, got {value!r}")


def _float_dtype(dtype: Any, op: str) -> np.dtype:
    try:
        dt = np.dtype(dtype)
    except TypeError as exc:
        raise TypeError(f"{op}: dtype must be float32 or float64, got {dtype!r}") from exc
    if dt not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise TypeError(f"{op}: dtype must be float32 or float64, got {dt}")
    return dt


def _check_pool_args(
    op: str, kernel_size: Any, stride: Any, padding: Any, dilation: Any = 1, **flags: Any
) -> None:
    """The checks of `F.max_pool2d` / `F.avg_pool2d` that do not need the input, at
    construction time (so a bad layer fails where it is built, not at its first call);
    ``flags`` are the boolean arguments, by name."""
    check_pool_geometry(op, kernel_size, stride, padding, dilation)
    for name, value in flags.items():
        _check_bool(value, name, op)


class Identity(Module):
    """Returns its input unchanged (a placeholder, e.g. a deleted block's branch)."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__()

    def forward(self, x: Tensor) -> Tensor:
        return x


class Conv2d(Module):
    """2-D convolution layer. weight (out, in/groups, kH, kW), bias (out,) or None.

    Input (N, in_channels, H, W) -> (N, out_channels, H_out, W_out), or unbatched
    (in_channels, H, W) -> (out_channels, H_out, W_out). ``padding`` is an int, a pair,
    "valid" or "same" (stride 1 only), as in PyTorch. Initialised like PyTorch
    (Kaiming-uniform with a=sqrt(5)); the models re-initialise with Kaiming normal,
    fan_out, as torchvision does.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: Pair,
        stride: Pair = 1,
        padding: Pair | str = 0,
        dilation: Pair = 1,
        groups: int = 1,
        bias: bool = True,
        dtype: Any = np.float32,
    ):
        super().__init__()
        op = "Conv2d"
        in_channels = check_int(in_channels, "in_channels", op, minimum=1)
        out_channels = check_int(out_channels, "out_channels", op, minimum=1)
        groups = check_int(groups, "groups", op, minimum=1)
        if in_channels % groups or out_channels % groups:
            raise ValueError(
                f"Conv2d: in_channels ({in_channels}) and out_channels ({out_channels}) must be "
                f"divisible by groups ({groups})"
            )
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size = pair(kernel_size, "kernel_size", minimum=1, op=op)
        self.stride = pair(stride, "stride", minimum=1, op=op)
        self.padding: tuple[int, int] | str
        if isinstance(padding, str):  # kept as the string, as PyTorch does
            if padding not in PADDING_STRINGS:
                raise ValueError(
                    f"{op}: invalid padding string {padding!r}, should be one of "
                    f"{PADDING_STRINGS} or an int or a pair of ints"
                )
            if padding == "same" and self.stride != (1, 1):
                raise ValueError(f"{op}: padding='same' is not supported for strided convolutions")
            self.padding = padding
        else:
            self.padding = pair(padding, "padding", minimum=0, op=op)
        self.dilation, self.groups = pair(dilation, "dilation", minimum=1, op=op), groups
        _check_bool(bias, "bias", op)
        dtype = _float_dtype(dtype, op)
        shape = (out_channels, in_channels // groups, *self.kernel_size)
        self.weight = Parameter(np.empty(shape, dtype=dtype))
        self.register_parameter("bias", Parameter(np.empty(out_channels, dtype)) if bias else None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """PyTorch's default init: U(-b, b) with b = 1/sqrt(fan_in) for weight and bias."""
        init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            bound = 1 / math.sqrt(init.fan_in_and_fan_out(self.weight.shape)[0])
            init.uniform_(self.bias, -bound, bound)

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(
            x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups
        )

    def extra_repr(self) -> str:
        s = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}"
        s += f", stride={self.stride}"
        if self.padding != (0, 0):
            s += f", padding={self.padding}"
        if self.dilation != (1, 1):
            s += f", dilation={self.dilation}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        if self.bias is None:
            s += ", bias=False"
        return s


class BatchNorm2d(Module):
    """Batch normalisation over channels of (N, C, H, W) (also accepts (N, C)).

    Parameters ``weight`` (ones) and ``bias`` (zeros); buffers ``running_mean`` (zeros),
    ``running_var`` (ones), ``num_batches_tracked`` (int64 0). ``momentum=None`` uses a
    cumulative moving average, as in PyTorch.
    """

    _optional_state = ("num_batches_tracked",)  # as PyTorch's legacy state dicts

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
        dtype: Any = np.float32,
    ):
        super().__init__()
        op = type(self).__name__
        num_features = check_int(num_features, "num_features", op, minimum=1)
        eps = check_real(eps, "eps", op, minimum=0.0)
        if momentum is not None:
            momentum = check_real(momentum, "momentum", op, minimum=0.0, maximum=1.0)
        _check_bool(affine, "affine", op)
        _check_bool(track_running_stats, "track_running_stats", op)
        dtype = _float_dtype(dtype, op)
        self.num_features, self.eps, self.momentum = num_features, eps, momentum
        self.affine, self.track_running_stats = affine, track_running_stats
        if affine:
            self.weight = Parameter(np.ones(num_features, dtype))
            self.bias = Parameter(np.zeros(num_features, dtype))
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        if track_running_stats:
            self.register_buffer("running_mean", np.zeros(num_features, dtype))
            self.register_buffer("running_var", np.ones(num_features, dtype))
            self.register_buffer("num_batches_tracked", np.array(0, dtype=np.int64))
        else:
            self.running_mean = self.running_var = None

    def forward(self, x: Tensor) -> Tensor:
        if isinstance(x, Tensor) and x.ndim >= 2 and x.shape[1] != self.num_features:
            raise ValueError(
                f"{type(self).__name__}({self.num_features}): expected {self.num_features} "
                f"channels (dim 1), got input of shape {x.shape}"
            )
        momentum = self.momentum
        if self.training and self.track_running_stats:
            self.num_batches_tracked = self.num_batches_tracked + 1
            if momentum is None:  # cumulative moving average
                momentum = 1.0 / float(self.num_batches_tracked)
        # Batch statistics when training, or when there are no running ones to use.
        return F.batch_norm(
            x,
            self.running_mean,
            self.running_var,
            self.weight,
            self.bias,
            training=self.training or self.running_mean is None,
            momentum=0.0 if momentum is None else momentum,
            eps=self.eps,
        )

    def reset_running_stats(self) -> None:
        """Running mean 0, variance 1, no batches seen."""
        if self.track_running_stats:
            self.running_mean[...] = 0
            self.running_var[...] = 1
            self.num_batches_tracked = np.array(0, dtype=np.int64)

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}, momentum={self.momentum}"


class ReLU(Module):
    """max(x, 0) elementwise. ``inplace`` is accepted for torchvision compatibility and
    ignored: minires never overwrites an activation another op may need."""

    def __init__(self, inplace: bool = False):
        super().__init__()

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(x)


class MaxPool2d(Module):
    """Max pooling (`F.max_pool2d`), PyTorch's arguments in PyTorch's order;
    (N, C, H, W) -> (N, C, H_out, W_out) or (C, H, W) -> (C, H_out, W_out).
    ``return_indices=True`` is not supported."""

    def __init__(
        self,
        kernel_size: Pair,
        stride: Pair | None = None,
        padding: Pair = 0,
        dilation: Pair = 1,
        return_indices: bool = False,
        ceil_mode: bool = False,
    ):
        super().__init__()
        op = type(self).__name__
        _check_pool_args(
            op, kernel_size, stride, padding, dilation,
            return_indices=return_indices, ceil_mode=ceil_mode,
        )  # fmt: skip
        if return_indices:
            raise NotImplementedError(f"{op}: return_indices=True is not supported")
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding
        self.dilation, self.return_indices, self.ceil_mode = dilation, return_indices, ceil_mode

    def forward(self, x: Tensor) -> Tensor:
        return F.max_pool2d(
            x, self.kernel_size, self.stride, self.padding, self.dilation, self.ceil_mode
        )

    def extra_repr(self) -> str:
        s = f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"
        if self.dilation != 1:
            s += f", dilation={self.dilation}"
        return s + (", ceil_mode=True" if self.ceil_mode else "")


class AvgPool2d(Module):
    """Average pooling (`F.avg_pool2d`), PyTorch's arguments in PyTorch's order;
    (N, C, H, W) -> (N, C, H_out, W_out) or (C, H, W) -> (C, H_out, W_out)."""

    def __init__(
        self,
        kernel_size: Pair,
        stride: Pair | None = None,
        padding: Pair = 0,
        ceil_mode: bool = False,
        count_include_pad: bool = True,
        divisor_override: int | None = None,
    ):
        super().__init__()
        op = type(self).__name__
        _check_pool_args(
            op, kernel_size, stride, padding,
            ceil_mode=ceil_mode, count_include_pad=count_include_pad,
        )  # fmt: skip
        if divisor_override is not None:
            divisor_override = check_int(divisor_override, "divisor_override", op)
            if divisor_override == 0:
                raise ValueError(f"{op}: divisor_override must not be zero")
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding
        self.ceil_mode, self.count_include_pad = ceil_mode, count_include_pad
        self.divisor_override = divisor_override

    def forward(self, x: Tensor) -> Tensor:
        return F.avg_pool2d(
            x,
            self.kernel_size,
            self.stride,
            self.padding,
            self.ceil_mode,
            self.count_include_pad,
            self.divisor_override,
        )

    def extra_repr(self) -> str:
        s = f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"
        if self.ceil_mode:
            s += ", ceil_mode=True"
        if not self.count_include_pad:
            s += ", count_include_pad=False"
        if self.divisor_override is not None:
            s += f", divisor_override={self.divisor_override}"
        return s


class AdaptiveAvgPool2d(Module):
    """Average into a fixed grid; ``(1, 1)`` is global average pooling."""

    def __init__(self, output_size: Pair):
        super().__init__()
        pair(output_size, "output_size", minimum=1, op="AdaptiveAvgPool2d")
        self.output_size = output_size

    def forward(self, x: Tensor) -> Tensor:
        return F.adaptive_avg_pool2d(x, self.output_size)

    def extra_repr(self) -> str:
        return f"output_size={self.output_size}"


class Linear(Module):
    """Affine layer: (..., in_features) -> (..., out_features); weight (out, in)."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, dtype=np.float32):
        super().__init__()
        in_features = check_int(in_features, "in_features", "Linear", minimum=0)
        out_features = check_int(out_features, "out_features", "Linear", minimum=0)
        _check_bool(bias, "bias", "Linear")
        dtype = _float_dtype(dtype, "Linear")
        self.in_features, self.out_features = in_features, out_features
        self.weight = Parameter(np.empty((out_features, in_features), dtype))
        self.register_parameter("bias", Parameter(np.empty(out_features, dtype)) if bias else None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """PyTorch's default: Kaiming-uniform(a=sqrt(5)) weight, U(+-1/sqrt(in)) bias."""
        init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            bound = 1 / math.sqrt(self.in_features) if self.in_features else 0
            init.uniform_(self.bias, -bound, bound)

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight, self.bias)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}"


class Flatten(Module):
    """Merge axes ``start_dim..end_dim``: (N, C, H, W) -> (N, C*H*W) by default."""

    def __init__(self, start_dim: int = 1, end_dim: int = -1):
        super().__init__()
        self.start_dim = check_int(start_dim, "start_dim", "Flatten")
        self.end_dim = check_int(end_dim, "end_dim", "Flatten")

    def forward(self, x: Tensor) -> Tensor:
        return F.flatten(x, self.start_dim, self.end_dim)
