"""``mr.summary(model, input_shape)``: parameters, output shapes and multiply-adds, per
layer and per stage.

Counting follows the convention of torchvision's model cards and the ResNet/ResNeXt
papers: "FLOPs" are the multiply-adds of conv and linear layers for ONE image
(batchnorm, relu, pooling and the residual adds are not counted).

    conv:    MACs = C_out * H_out * W_out * (C_in / groups) * kH * kW
    linear:  MACs = out_features * in_features

Shapes come from a *dry run*: the model's own forward is called on a zero image of
shape (1, C, H, W) under ``no_grad`` with the heavy kernels (conv, batchnorm, pooling,
relu) replaced by stand-ins that only allocate an output of the right shape (its values
are meaningless, so a model whose control flow depends on values needs
``dry_run=False``). The ops
still check their arguments, so a shape error is reported exactly as a real forward
would, but a 224x224 ResNet-50 takes milliseconds. Each module's ``forward`` is wrapped
for the duration of the run to record what it returns; the model is left untouched
(mode, parameters and running statistics).
"""

from __future__ import annotations

import contextlib
import operator
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from minires import backend, nn
from minires.autograd import no_grad
from minires.tensor import Tensor

Shape = tuple[int, ...]

__all__ = ["LayerInfo", "ModelSummary", "StageInfo", "compare", "summary"]


# -- records --------------------------------------------------------------------------------


@dataclass
class LayerInfo:
    """One call of a leaf module during the dry run."""

    name: str  # dotted name, e.g. "layer1.0.conv2"
    type: str  # class name, e.g. "Conv2d"
    input_shape: Shape  # with the batch dimension (1, ...)
    output_shape: Shape
    params: int  # parameters of this module (0 on repeated calls of a shared module)
    macs: int  # multiply-adds for one image (conv and linear only)
    stage: str = ""  # stage it belongs to (see StageInfo.name)


@dataclass
class StageInfo:
    """One row of the paper's architecture table (He et al. 2015 Table 1, Xie et al. 2017
    Table 1): ``conv1`` (the stem), ``conv2`` .. ``conv5`` (``layer1`` .. ``layer4``),
    ``head`` (global average pool and fc)."""

    name: str  # paper's name: conv1, conv2, ..., head
    modules: list[str]  # top-level children in this stage, e.g. ["maxpool", "layer1"]
    output_shape: Shape  # (C, H, W) of one image at the end of the stage (or (features,))
    params: int
    macs: int
    description: list[str] = field(default_factory=list)  # e.g. ["3x3 max pool, stride 2",
    #                                                       "[1x1, 64; 3x3, 64; 1x1, 256] x3"]

    @property
    def output_size(self) -> str:
        """Spatial size as printed in the papers, e.g. ``"56x56"``."""
        s = self.output_shape
        return f"{s[-2]}x{s[-1]}" if len(s) >= 3 else "1x1"


@dataclass
class ModelSummary:
    """What `summary` returns; ``print(s)`` shows the per-layer and per-stage tables."""

    name: str
    input_shape: Shape  # (C, H, W)
    output_shape: Shape  # (1, ...) the model's output for one image
    layers: list[LayerInfo]
    stages: list[StageInfo]
    total_params: int
    trainable_params: int
    total_macs: int

    @property
    def weight_params(self) -> int:
        """Parameters of the conv and linear layers only: what the papers' tables count as
        "# params" (batchnorm's scale and shift left out). ResNet-50: 25,503,912 (25.5M)
        of 25,557,032."""
        return sum(r.params for r in self.layers if r.type in ("Conv2d", "Linear"))

    @property
    def total_flops(self) -> int:
        """Alias of `total_macs`: what the ResNet/ResNeXt papers call FLOPs."""
        return self.total_macs

    def layer_table(self) -> str:
        """Per-layer rows: name, type, output shape, params, mult-adds (ReLU rows and other
        shape-preserving, parameter-free calls are left out)."""
        rows = [["layer", "type", "output shape", "params", "mult-adds"]]
        for r in self.layers:
            if _is_trivial(r):
                continue
            rows.append([r.name, r.type, _shape(r.output_shape), f"{r.params:,}", f"{r.macs:,}"])
        rows.append(
            [
                "total",
                "",
                _shape(self.output_shape),
                f"{self.total_params:,}",
                f"{self.total_macs:,}",
            ]
        )
        return _format_table(rows, right={3, 4})

    def stage_table(self) -> str:
        """Per-stage rows: stage, modules, output size, blocks, params, mult-adds."""
        rows = [["stage", "modules", "output", "params", "mult-adds", "structure"]]
        for s in self.stages:
            desc = s.description or [""]
            rows.append(
                [
                    s.name,
                    ", ".join(s.modules),
                    s.output_size,
                    f"{s.params:,}",
                    f"{s.macs:,}",
                    desc[0],
                ]
            )
            rows += [["", "", "", "", "", d] for d in desc[1:]]
        rows.append(["total", "", "", f"{self.total_params:,}", f"{self.total_macs:,}", ""])
        return _format_table(rows, right={3, 4})

    def __str__(self) -> str:
        head = (
            f"{self.name}: input {_shape(self.input_shape)}, "
            f"{self.total_params:,} params ({_human(self.total_params)}), "
            f"{self.total_macs:,} mult-adds ({_human(self.total_macs)})"
        )
        return "\n\n".join([head, self.layer_table(), self.stage_table()])

    def __repr__(self) -> str:
        return (
            f"ModelSummary({self.name!r}, input_shape={self.input_shape}, "
            f"total_params={self.total_params:,}, total_macs={self.total_macs:,})"
        )


# -- the dry run ----------------------------------------------------------------------------


class _ShapeKernels:
    """Stand-in for the kernel module: same signatures, outputs of the right shape and
    dtype left uninitialised (``np.empty``: no arithmetic, not even zero-filling).
    Anything else falls through to the real kernels."""

    def __init__(self, real: Any):
        self._real = real

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)

    @staticmethod
    def conv2d_forward(x, weight, bias, stride, padding, dilation, groups):
        n, _, h, w = x.shape
        c_out, _, kh, kw = weight.shape
        ho = (h + 2 * padding[0] - dilation[0] * (kh - 1) - 1) // stride[0] + 1
        wo = (w + 2 * padding[1] - dilation[1] * (kw - 1) - 1) // stride[1] + 1
        return np.empty((n, c_out, ho, wo), dtype=x.dtype)

    @staticmethod
    def _pool_shape(x, kernel_size, stride, padding):
        n, c, h, w = x.shape
        ho = (h + 2 * padding[0] - kernel_size[0]) // stride[0] + 1
        wo = (w + 2 * padding[1] - kernel_size[1]) // stride[1] + 1
        return (n, c, ho, wo)

    def max_pool2d_forward(self, x, kernel_size, stride, padding):
        shape = self._pool_shape(x, kernel_size, stride, padding)
        return np.empty(shape, x.dtype), np.zeros(shape, np.int64)

    def avg_pool2d_forward(self, x, kernel_size, stride, padding):
        return np.empty(self._pool_shape(x, kernel_size, stride, padding), x.dtype)

    @staticmethod
    def batch_norm_eval_forward(x, running_mean, running_var, weight, bias, eps):
        return np.empty_like(x)

    @staticmethod
    def batch_norm_train_forward(x, weight, bias, eps):
        c = x.shape[1]
        return np.empty_like(x), np.zeros(c, x.dtype), np.ones(c, x.dtype)

    @staticmethod
    def relu_forward(x, out=None):
        return np.empty_like(x) if out is None else out

    @staticmethod
    def add_relu_forward(a, b):
        return np.empty(np.broadcast_shapes(a.shape, b.shape), a.dtype)


@contextlib.contextmanager
def _shape_only_kernels() -> Iterator[None]:
    with backend._use_module(_ShapeKernels(backend.kernels())):
        yield


@contextlib.contextmanager
def _recording(model: nn.Module, records: list[tuple[str, nn.Module, Shape, Any]]):
    """Wrap every module's forward to append (name, module, input shape, output)."""
    patched: list[tuple[nn.Module, bool, Any]] = []
    try:
        for name, mod in model.named_modules():
            original = mod.forward

            def hooked(*args: Any, _n=name, _m=mod, _f=original, **kwargs: Any) -> Any:
                out = _f(*args, **kwargs)
                first = args[0] if args else None
                records.append((_n, _m, tuple(first.shape) if hasattr(first, "shape") else (), out))
                return out

            patched.append((mod, "forward" in mod.__dict__, mod.__dict__.get("forward")))
            object.__setattr__(mod, "forward", hooked)
        yield
    finally:
        for mod, had, previous in patched:
            if had:
                object.__setattr__(mod, "forward", previous)
            else:
                mod.__dict__.pop("forward", None)


def _macs(mod: nn.Module, in_shape: Shape, out_shape: Shape) -> int:
    if isinstance(mod, nn.Conv2d):
        kh, kw = mod.kernel_size
        per_output = (mod.in_channels // mod.groups) * kh * kw
        return int(np.prod(out_shape[1:])) * per_output
    if isinstance(mod, nn.Linear):
        return int(np.prod(out_shape[1:])) * mod.in_features
    return 0


# -- stages ---------------------------------------------------------------------------------

_LAYER = re.compile(r"layer(\d+)")


def _stage_of(top_names: list[str], modules: dict[str, nn.Module]) -> dict[str, str]:
    """Map each top-level child to a paper stage: everything before the first ``layerN``
    is conv1 (a pooling layer right before a stage joins it, as in the papers), layerN is
    conv{N+1}, and everything after the last stage is the head."""
    layer_pos = [i for i, n in enumerate(top_names) if _LAYER.fullmatch(n)]
    if not layer_pos:
        return {n: "body" for n in top_names}
    first, last = layer_pos[0], layer_pos[-1]
    out: dict[str, str] = {}
    for i, n in enumerate(top_names):
        if m := _LAYER.fullmatch(n):
            out[n] = f"conv{int(m[1]) + 1}"
        elif i > last:
            out[n] = "head"
        elif i < first:
            out[n] = "conv1"
        else:
            out[n] = "body"
    # pooling right before a stage belongs to it (ResNet's maxpool is listed under conv2)
    for i in range(first - 1, -1, -1):
        name = top_names[i]
        if isinstance(modules[name], nn.MaxPool2d | nn.AvgPool2d):
            out[name] = out[top_names[first]]
        else:
            break
    return out


def _k(conv: nn.Conv2d) -> str:
    kh, kw = conv.kernel_size
    return f"{kh}x{kw}"


def _describe_block(block: nn.Module) -> str:
    """``[1x1, 128; 3x3, 128, C=32; 1x1, 256]`` from the convs of a block's residual branch."""
    parts = []
    for name, m in block.named_modules():
        if isinstance(m, nn.Conv2d) and not name.startswith(("downsample", "shortcut")):
            s = f"{_k(m)}, {m.out_channels}"
            if m.groups > 1:
                s += f", C={m.groups}"
            parts.append(s)
    text = "[" + "; ".join(parts) + "]" if parts else type(block).__name__
    return text if getattr(block, "has_skip", True) else text + " no skip"


def _describe(mod: nn.Module) -> list[str]:
    if isinstance(mod, nn.Conv2d):
        s = f"{_k(mod)}, {mod.out_channels}"
        if mod.groups > 1:
            s += f", C={mod.groups}"
        if mod.stride != (1, 1):
            s += f", stride {mod.stride[0]}"
        return [s]
    if isinstance(mod, nn.MaxPool2d | nn.AvgPool2d):
        k = mod.kernel_size if isinstance(mod.kernel_size, int) else mod.kernel_size[0]
        stride = mod.stride if mod.stride is not None else mod.kernel_size
        st = stride if isinstance(stride, int) else stride[0]
        kind = "max" if isinstance(mod, nn.MaxPool2d) else "avg"
        return [f"{k}x{k} {kind} pool, stride {st}"]
    if isinstance(mod, nn.AdaptiveAvgPool2d):
        return ["global average pool"]
    if isinstance(mod, nn.Linear):
        return [f"{mod.out_features}-d fc, softmax"]
    if isinstance(mod, nn.Sequential) and len(mod) and all(hasattr(b, "residual") for b in mod):
        return [f"{_describe_block(mod[0])} x{len(mod)}"]
    return []


# -- public ---------------------------------------------------------------------------------


def summary(
    model: nn.Module,
    input_shape: Sequence[int] | None = None,
    name: str | None = None,
    dry_run: bool = True,
) -> ModelSummary:
    """Parameters, output shapes and multiply-adds of ``model`` for one image.

    Args:
        model: any `nn.Module` whose forward takes one (N, C, H, W) tensor.
        input_shape: (C, H, W) of one image, no batch dimension; default (3, 32, 32) for
            the CIFAR nets and (3, 224, 224) otherwise.
        name: printed in the header (default: the class name).
        dry_run: True (default) computes shapes only; False runs the real kernels.

    Returns:
        `ModelSummary` with ``.total_params``, ``.total_macs``, ``.layers``, ``.stages``;
        ``print()`` it for the tables. ResNet-50 at (3, 224, 224): 25,557,032 params and
        4.09 G mult-adds.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"summary: expected an nn.Module, got {type(model).__name__}")
    if input_shape is None:
        from minires.models import input_shape_for

        input_shape = input_shape_for(model)
    try:
        shape = tuple(operator.index(s) for s in input_shape)  # integers only: no 32.9
    except TypeError:
        raise TypeError(
            f"summary: input_shape must be a (C, H, W) tuple of integers, got {input_shape!r}"
        ) from None
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(
            f"summary: input_shape must be (C, H, W) of one image without the batch "
            f"dimension, got {tuple(input_shape)}"
        )
    params = list(model.parameters())
    dtype = params[0].dtype if params else np.dtype(np.float32)
    x = Tensor(np.zeros((1, *shape), dtype=dtype))

    records: list[tuple[str, nn.Module, Shape, Any]] = []
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        with contextlib.ExitStack() as stack:
            stack.enter_context(no_grad())
            stack.enter_context(np.errstate(all="ignore"))
            if dry_run:
                stack.enter_context(_shape_only_kernels())
            stack.enter_context(_recording(model, records))
            out = model(x)
    finally:
        for m, mode in modes:
            object.__setattr__(m, "training", mode)

    # leaf rows, in call order
    counted: set[int] = set()
    layers: list[LayerInfo] = []
    last_out: dict[str, Shape] = {}
    for rname, mod, in_shape, o in records:
        oshape = tuple(o.shape) if hasattr(o, "shape") else ()
        last_out[rname] = oshape
        if any(True for _ in mod.children()):
            continue
        n_params = 0
        if id(mod) not in counted:
            counted.add(id(mod))
            n_params = sum(p.data.size for p in mod._parameters.values() if p is not None)
        layers.append(
            LayerInfo(
                rname, type(mod).__name__, in_shape, oshape, n_params, _macs(mod, in_shape, oshape)
            )
        )

    # stages over the top-level children, in call order
    children = dict(model.named_children())
    called = [n for n in dict.fromkeys(r.name.split(".")[0] for r in layers) if n in children]
    top_names = called + [n for n in children if n not in called]
    stage_of = _stage_of(top_names, children)
    for r in layers:
        r.stage = stage_of.get(r.name.split(".")[0], "body")
    stages: list[StageInfo] = []
    for n in top_names:
        sname = stage_of[n]
        if not stages or stages[-1].name != sname:
            stages.append(StageInfo(sname, [], (), 0, 0))
        st = stages[-1]
        st.modules.append(n)
        st.params += sum(p.data.size for p in children[n].parameters())
        st.macs += sum(r.macs for r in layers if r.name == n or r.name.startswith(n + "."))
        if n in last_out:
            st.output_shape = last_out[n][1:]
        st.description += _describe(children[n])
    head = next((s for s in stages if s.name == "head"), None)
    if head is not None:
        head.output_shape = tuple(out.shape[1:])
        if head.description:
            head.description = [", ".join(head.description)]

    total_params = sum(p.data.size for p in params)
    trainable = sum(p.data.size for p in params if p.requires_grad)
    total_macs = sum(r.macs for r in layers)
    return ModelSummary(
        name or type(model).__name__,
        shape,
        tuple(out.shape),
        layers,
        stages,
        total_params,
        trainable,
        total_macs,
    )


def _is_trivial(r: LayerInfo) -> bool:
    return r.params == 0 and r.macs == 0 and r.input_shape == r.output_shape


# -- side by side ---------------------------------------------------------------------------


def _paper_number(n: int, exp: int) -> str:
    """25557032, 6 -> '25.6 x 10^6' (one decimal, as the papers print)."""
    return f"{n / 10**exp:.1f} x 10^{exp}"


def compare(summaries: Sequence[ModelSummary], titles: Sequence[str] | None = None) -> str:
    """Side-by-side architecture table in the style of the ResNeXt paper's Table 1:
    stage, output size, and each model's layers/blocks, then params and FLOPs
    (mult-adds), then per-stage params and mult-adds."""
    if not summaries:
        raise ValueError("compare: needs at least one summary")
    titles = list(titles) if titles is not None else [s.name for s in summaries]
    order: list[str] = []
    for s in summaries:
        for st in s.stages:
            if st.name not in order:
                order.append(st.name)
    by_name = [{st.name: st for st in s.stages} for s in summaries]

    rows = [["stage", "output", *titles]]
    for stage in order:
        sts = [b.get(stage) for b in by_name]
        ref = next(st for st in sts if st is not None)
        sizes = {st.output_size for st in sts if st is not None}
        size = ref.output_size if len(sizes) == 1 else " / ".join(sorted(sizes))
        descs = [st.description if st is not None else ["-"] for st in sts]
        depth = max(len(d) for d in descs) or 1
        label = "" if stage == "head" else stage
        for i in range(depth):
            rows.append(
                [
                    label if i == 0 else "",
                    size if i == 0 else "",
                    *[d[i] if i < len(d) else "" for d in descs],
                ]
            )
    rows.append(["# params.", "", *[_paper_number(s.weight_params, 6) for s in summaries]])
    rows.append(["FLOPs", "", *[_paper_number(s.total_macs, 9) for s in summaries]])
    table1 = _format_table(rows, separator_after={0, len(rows) - 3})
    size = "x".join(str(d) for d in summaries[0].input_shape)
    note = (
        "# params.: conv and fc weights, as the papers count them (all parameters, with "
        "batchnorm: " + " vs ".join(f"{s.total_params:,}" for s in summaries) + ")\n"
        f"FLOPs: multiply-adds of conv and fc layers for one {size} image ("
        + " vs ".join(f"{s.total_macs:,}" for s in summaries)
        + ")"
    )
    table1 += "\n" + note

    rows2 = [["stage", *[f"{t} params" for t in titles], *[f"{t} mult-adds" for t in titles]]]
    for stage in order:
        sts = [b.get(stage) for b in by_name]
        rows2.append(
            [
                stage,
                *[f"{st.params:,}" if st else "-" for st in sts],
                *[f"{st.macs:,}" if st else "-" for st in sts],
            ]
        )
    rows2.append(
        [
            "total",
            *[f"{s.total_params:,}" for s in summaries],
            *[f"{s.total_macs:,}" for s in summaries],
        ]
    )
    table2 = _format_table(rows2, right=set(range(1, 1 + 2 * len(summaries))))
    return table1 + "\n\n" + table2


# -- formatting -----------------------------------------------------------------------------


def _shape(s: Shape) -> str:
    return "(" + ", ".join(str(d) for d in s) + ")"


def _human(n: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.3f}{unit}" if unit == "G" else f"{n / scale:.2f}{unit}"
    return str(int(n))


def _format_table(
    rows: list[list[str]], right: set[int] | None = None, separator_after: set[int] | None = None
) -> str:
    right = right or set()
    separator_after = {0} if separator_after is None else separator_after
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = []
    for k, r in enumerate(rows):
        cells = [
            c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))
        ]
        lines.append("  ".join(cells).rstrip())
        if k in separator_after:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)
