"""The layers of the design, each a thin Module around one functional op, initialised
as in PyTorch."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from minires import functional as F
from minires.device import check_device, resolve_dtype
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
    """The dtype of a layer's parameters: None is float32, torch's default (NumPy would
    read None as float64); NumPy, string and torch spellings ("double", torch.float64)."""
    if dtype is None:
        return np.dtype(np.float32)
    return resolve_dtype(dtype, op, float_only=True)


def _factory_args(device: Any, dtype: Any, op: str) -> np.dtype:
    """torch's ``device=`` / ``dtype=`` constructor arguments: the CPU only (another
    device is a ValueError), the parameters' dtype returned."""
    check_device(device, op)
    return _float_dtype(dtype, op)


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


PADDING_MODES = ("zeros", "reflect", "replicate", "circular")


class Conv2d(Module):
    """2-D convolution layer. weight (out, in/groups, kH, kW), bias (out,) or None.

    Input (N, in_channels, H, W) -> (N, out_channels, H_out, W_out), or unbatched
    (in_channels, H, W) -> (out_channels, H_out, W_out). ``padding`` is an int, a pair,
    "valid" or "same" (stride 1 only), as in PyTorch; ``padding_mode`` is what the padding
    holds: "zeros" (default), or the input's values as torch's "reflect", "replicate" or
    "circular". Initialised like PyTorch (Kaiming-uniform with a=sqrt(5)); the models
    re-initialise with Kaiming normal, fan_out, as torchvision does. ``device`` may only
    be the CPU; ``dtype`` (default float32) is the parameters' dtype.
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
        padding_mode: str = "zeros",
        device: Any = None,
        dtype: Any = None,
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
        if not isinstance(padding_mode, str) or padding_mode not in PADDING_MODES:
            raise ValueError(
                f"{op}: padding_mode must be one of {PADDING_MODES}, got {padding_mode!r}"
            )
        self.padding_mode = padding_mode
        dtype = _factory_args(device, dtype, op)
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
        if self.padding_mode == "zeros":
            return F.conv2d(
                x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups
            )
        return F.conv2d(
            self._pad(x), self.weight, self.bias, self.stride, 0, self.dilation, self.groups
        )

    def _pad(self, x: Tensor) -> Tensor:
        """``x`` padded with its own values (`padding_mode` other than "zeros"), as torch
        does before a convolution without padding: each padded axis is a gather of x's
        rows or columns (an index array), so the gradient flows back through the
        indexing, repeated entries adding up."""
        if (
            not isinstance(x, Tensor)
            or x.ndim not in (3, 4)
            or x.shape[-3] != self.in_channels
            or min(x.shape[-2:]) < 1
        ):
            return x  # F.conv2d refuses it, naming the input's own shape
        if self.padding == "same":  # the odd one at the bottom/right, as F.conv2d
            totals = [d * (k - 1) for k, d in zip(self.kernel_size, self.dilation)]
            pads = [(t // 2, t - t // 2) for t in totals]
        else:  # "valid" is no padding
            pads = [(0, 0)] * 2 if self.padding == "valid" else [(p, p) for p in self.padding]
        (top, bottom), (left, right) = pads
        try:
            return F.pad(x, (left, right, top, bottom), mode=self.padding_mode)
        except ValueError as exc:
            raise ValueError(str(exc).replace("pad: mode", "Conv2d: padding_mode", 1)) from None

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
        if self.padding_mode != "zeros":
            s += f", padding_mode={self.padding_mode}"
        return s


class BatchNorm2d(Module):
    """Batch normalisation over channels of (N, C, H, W) (also accepts (N, C)).

    Parameters ``weight`` (ones) and ``bias`` (zeros; none with ``bias=False``) when
    ``affine``; buffers ``running_mean`` (zeros), ``running_var`` (ones),
    ``num_batches_tracked`` (int64 0) when ``track_running_stats``, else those attributes
    are None and every call uses the batch's statistics. ``momentum=None`` uses a
    cumulative moving average, as in PyTorch. ``device`` may only be the CPU; ``dtype``
    (default float32) is that of the parameters and running statistics.
    """

    _optional_state = ("num_batches_tracked",)  # as PyTorch's legacy state dicts

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
        device: Any = None,
        dtype: Any = None,
        *,
        bias: bool = True,
    ):
        super().__init__()
        op = type(self).__name__
        num_features = check_int(num_features, "num_features", op, minimum=1)
        eps = check_real(eps, "eps", op, minimum=0.0)
        if momentum is not None:
            momentum = check_real(momentum, "momentum", op, minimum=0.0, maximum=1.0)
        for name, flag in (("affine", affine), ("track_running_stats", track_running_stats)):
            _check_bool(flag, name, op)
        _check_bool(bias, "bias", op)
        dtype = _factory_args(device, dtype, op)
        self.num_features, self.eps, self.momentum = num_features, eps, momentum
        self.affine, self.track_running_stats = affine, track_running_stats
        if affine:
            self.weight = Parameter(np.ones(num_features, dtype))
            self.register_parameter(
                "bias", Parameter(np.zeros(num_features, dtype)) if bias else None
            )
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        if track_running_stats:
            self.register_buffer("running_mean", np.zeros(num_features, dtype))
            self.register_buffer("running_var", np.ones(num_features, dtype))
            self.register_buffer("num_batches_tracked", np.array(0, dtype=np.int64))
        else:  # None, as torch: the attributes exist, the state dict leaves them out
            for name in ("running_mean", "running_var", "num_batches_tracked"):
                self.register_buffer(name, None)

    def _check_input(self, x: Tensor) -> None:
        """The module's checks, before `num_batches_tracked` counts the call."""
        if isinstance(x, Tensor) and (x.ndim not in (2, 4) or x.shape[1] != self.num_features):
            c = self.num_features
            raise ValueError(
                f"{type(self).__name__}({c}): expected input (N, {c}, H, W) or (N, {c}), "
                f"got shape {x.shape}"
            )

    def _running_stats(self) -> tuple[float, np.ndarray | None, np.ndarray | None]:
        """torch's bookkeeping before the normalisation: (momentum, running_mean,
        running_var). A training call counts one more batch in `num_batches_tracked`
        (``momentum=None``: 1 / that count, a cumulative average); the running
        statistics are used or updated except while training without tracking them."""
        momentum = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats and self.num_batches_tracked is not None:
            self.num_batches_tracked = self.num_batches_tracked + 1
            if self.momentum is None:
                momentum = 1.0 / float(self.num_batches_tracked)
        if self.training and not self.track_running_stats:
            return momentum, None, None
        return momentum, self.running_mean, self.running_var

    def forward(self, x: Tensor) -> Tensor:
        self._check_input(x)
        momentum, running_mean, running_var = self._running_stats()
        # Batch statistics when training, or when there are no running ones to use.
        no_stats = self.running_mean is None and self.running_var is None
        return F.batch_norm(
            x,
            running_mean,
            running_var,
            self.weight,
            self.bias,
            training=self.training or no_stats,
            momentum=momentum,
            eps=self.eps,
        )

    def reset_running_stats(self) -> None:
        """Running mean 0, variance 1, no batches seen."""
        if self.track_running_stats:
            self.running_mean[...] = 0
            self.running_var[...] = 1
            self.num_batches_tracked = np.array(0, dtype=np.int64)

    def reset_parameters(self) -> None:
        """Back to the initial state, as torch: running statistics reset, weight 1, bias 0."""
        self.reset_running_stats()
        if self.weight is not None:
            init.ones_(self.weight)
        if self.bias is not None:
            init.zeros_(self.bias)

    def extra_repr(self) -> str:
        return (
            f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, "
            f"affine={self.affine}, bias={self.bias is not None}, "
            f"track_running_stats={self.track_running_stats}"
        )


class ReLU(Module):
    """max(x, 0) elementwise. ``inplace=True`` (torchvision's blocks use it) writes the
    result into the input and returns it (`Tensor.relu_`), recorded in the graph as
    PyTorch does: no new activation is allocated."""

    def __init__(self, inplace: bool = False):
        super().__init__()
        self.inplace = bool(inplace)

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(x, inplace=self.inplace)

    def extra_repr(self) -> str:
        return "inplace=True" if self.inplace else ""


class MaxPool2d(Module):
    """Max pooling (`F.max_pool2d`), PyTorch's arguments in PyTorch's order;
    (N, C, H, W) -> (N, C, H_out, W_out) or (C, H, W) -> (C, H_out, W_out).
    ``stride`` defaults to the kernel size (and reads so afterwards, as in torch).
    With ``return_indices=True`` the forward gives ``(output, indices)``."""

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
        self.kernel_size, self.padding = kernel_size, padding
        self.stride = kernel_size if stride is None else stride
        self.dilation, self.return_indices, self.ceil_mode = dilation, return_indices, ceil_mode

    def forward(self, x: Tensor) -> Tensor:
        return F.max_pool2d(
            x, self.kernel_size, self.stride, self.padding, self.dilation, self.ceil_mode,
            self.return_indices,
        )  # fmt: skip

    def extra_repr(self) -> str:
        return (
            f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, "
            f"dilation={self.dilation}, ceil_mode={self.ceil_mode}"
        )


class AvgPool2d(Module):
    """Average pooling (`F.avg_pool2d`), PyTorch's arguments in PyTorch's order;
    (N, C, H, W) -> (N, C, H_out, W_out) or (C, H, W) -> (C, H_out, W_out). ``stride``
    defaults to the kernel size (and reads so afterwards, as in torch)."""

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
        self.kernel_size, self.padding = kernel_size, padding
        self.stride = kernel_size if stride is None else stride
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
        # torch's text; then, unlike torch, the other arguments when not at their default
        s = f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"
        if self.ceil_mode:
            s += ", ceil_mode=True"
        if not self.count_include_pad:
            s += ", count_include_pad=False"
        if self.divisor_override is not None:
            s += f", divisor_override={self.divisor_override}"
        return s


def _size_or_none(output_size: Any, op: str) -> tuple[int | None, int | None]:
    """An adaptive pool's ``output_size`` (an int or a pair) as a pair whose entries are
    ints >= 1 or None (None in a pair: keep that dimension of the input), as torch."""
    items = output_size if isinstance(output_size, tuple | list) else (output_size,) * 2
    if len(items) != 2 or output_size is None:  # torch fails at the call on a bare None
        raise TypeError(
            f"{op}: output_size must be an int or a pair (of ints or None), got {output_size!r}"
        )
    return tuple(None if v is None else check_int(v, "output_size", op, minimum=1) for v in items)


class AdaptiveAvgPool2d(Module):
    """Average into a fixed grid of ``output_size`` (an int, or a pair; None in it keeps
    the input's size there, as in torch); ``1`` is global average pooling."""

    def __init__(self, output_size: int | tuple[int | None, int | None]):
        super().__init__()
        _size_or_none(output_size, "AdaptiveAvgPool2d")
        self.output_size = output_size  # as given, as torch

    def forward(self, x: Tensor) -> Tensor:
        size = _size_or_none(self.output_size, "AdaptiveAvgPool2d")
        if isinstance(x, Tensor) and x.ndim >= 2:  # F.adaptive_avg_pool2d wants ints
            size = tuple(x.shape[x.ndim - 2 + i] if v is None else v for i, v in enumerate(size))
        return F.adaptive_avg_pool2d(x, size)

    def extra_repr(self) -> str:
        return f"output_size={self.output_size}"


class Linear(Module):
    """Affine layer: (..., in_features) -> (..., out_features); weight (out, in), bias
    (out,) or None. ``device`` may only be the CPU; ``dtype`` defaults to float32."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        device: Any = None,
        dtype: Any = None,
    ):
        super().__init__()
        in_features = check_int(in_features, "in_features", "Linear", minimum=0)
        out_features = check_int(out_features, "out_features", "Linear", minimum=0)
        _check_bool(bias, "bias", "Linear")
        dtype = _factory_args(device, dtype, "Linear")
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
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"bias={self.bias is not None}"
        )


class Flatten(Module):
    """Merge axes ``start_dim..end_dim``: (N, C, H, W) -> (N, C*H*W) by default."""

    def __init__(self, start_dim: int = 1, end_dim: int = -1):
        super().__init__()
        self.start_dim = check_int(start_dim, "start_dim", "Flatten")
        self.end_dim = check_int(end_dim, "end_dim", "Flatten")

    def forward(self, x: Tensor) -> Tensor:
        return F.flatten(x, self.start_dim, self.end_dim)

    def extra_repr(self) -> str:
        return f"start_dim={self.start_dim}, end_dim={self.end_dim}"
