"""What is measured: the conv layers of the sweep and their useful-FLOP arithmetic.

The templates are the ResNeXt paper's preserved-complexity variants of the conv2-stage
bottleneck (Xie et al. 2017, Table 2): cardinality C and bottleneck width d such that the
*block* (1x1 reduce, 3x3 grouped, 1x1 expand) keeps ResNet-50's FLOPs. Only the 3x3 conv
is swept here, so its own FLOPs *fall* as C grows (the wider 1x1 convs make up for it);
`LayerSpec.block_gflop` is the whole block's count, which stays ~constant.

Useful FLOPs (what the layer has to do, not what an algorithm happens to do)::

    forward  = 2 * N * C_out * H_out * W_out * (C_in / groups) * kH * kW
    backward-input = backward-weight = forward      (so backward = 2x forward)

A ``separable`` row (Xception / MobileNet) is two convs run back to back: a depthwise
k x k conv (C_in -> C_in, groups=C_in, the stride) then a pointwise 1x1 conv (C_in ->
C_out); its FLOPs and bytes are the sum of the two (`LayerSpec.parts`). The sweep holds
one at the FLOPs of the dense 3x3 64 -> 64 conv (ResNet-50's conv2 3x3), beside a grouped
conv at exactly those FLOPs, so dense, grouped and depthwise-separable convolution can be
compared at one budget.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

# (cardinality, bottleneck width of the 3x3 conv at the conv2 stage): the paper's
# preserved-complexity templates. The conv3 stage doubles the widths.
RESNEXT_TEMPLATES: list[tuple[int, int]] = [(1, 64), (2, 80), (4, 96), (8, 112), (32, 128)]

BYTES_FP32 = 4


def out_size(n: int, k: int, stride: int, pad: int, dilation: int = 1) -> int:
    """Output size of a convolution along one axis."""
    return (n + 2 * pad - dilation * (k - 1) - 1) // stride + 1


def conv_flops(
    n: int, c_in: int, c_out: int, h_out: int, w_out: int, groups: int, kh: int, kw: int
) -> int:
    """Useful FLOPs of one forward pass (a multiply-add counts 2)."""
    if c_in % groups or c_out % groups:
        raise ValueError(f"channels ({c_in} -> {c_out}) not divisible by groups={groups}")
    return 2 * n * c_out * h_out * w_out * (c_in // groups) * kh * kw


@dataclass(frozen=True)
class LayerSpec:
    """One convolution of the sweep (square input and kernel, float32, NCHW)."""

    name: str  # unique row label, e.g. "conv2 32x4d"
    kind: str  # "template" | "depthwise" | "dense" | "pointwise" | "grouped" | "separable"
    stage: str  # "conv2" (56x56 at 224 input) or "conv3" (28x28)
    c_in: int
    c_out: int
    groups: int
    kernel: int
    batch: int
    size: int  # input H = W
    stride: int = 1
    pad: int = -1  # -1: "same" padding, kernel // 2
    cardinality: int = 0  # templates only (0 otherwise)
    bottleneck_width: int = 0  # templates only: the 3x3 conv's width
    extra: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self) -> None:
        if self.pad < 0:
            object.__setattr__(self, "pad", self.kernel // 2)
        if self.kind == "separable" and self.groups != self.c_in:
            raise ValueError(f"{self.name}: a separable row's depthwise conv has groups = c_in")
        if self.kind != "separable" and (self.c_in % self.groups or self.c_out % self.groups):
            raise ValueError(f"{self.name}: channels not divisible by groups={self.groups}")

    def parts(self) -> list[LayerSpec]:
        """The convs this row runs: itself, or for ``separable`` the depthwise k x k conv
        (C_in -> C_in, groups=C_in, stride) and the pointwise 1x1 conv (C_in -> C_out)."""
        if self.kind != "separable":
            return [self]
        dw = LayerSpec(f"{self.name} [depthwise]", "depthwise", self.stage, self.c_in,
                       self.c_in, self.c_in, self.kernel, self.batch, self.size, self.stride,
                       self.pad)  # fmt: skip
        pw = LayerSpec(f"{self.name} [pointwise]", "pointwise", self.stage, self.c_in,
                       self.c_out, 1, 1, self.batch, dw.out, 1, 0)  # fmt: skip
        return [dw, pw]

    @property
    def out(self) -> int:
        """Output H = W."""
        return out_size(self.size, self.kernel, self.stride, self.pad)

    @property
    def x_shape(self) -> tuple[int, int, int, int]:
        return (self.batch, self.c_in, self.size, self.size)

    @property
    def w_shape(self) -> tuple[int, int, int, int]:
        return (self.c_out, self.c_in // self.groups, self.kernel, self.kernel)

    @property
    def y_shape(self) -> tuple[int, int, int, int]:
        return (self.batch, self.c_out, self.out, self.out)

    @property
    def flops(self) -> int:
        """Useful FLOPs of one forward pass (also of each backward pass)."""
        if self.kind == "separable":
            return sum(p.flops for p in self.parts())
        return conv_flops(
            self.batch, self.c_in, self.c_out, self.out, self.out, self.groups,
            self.kernel, self.kernel,
        )  # fmt: skip

    @property
    def gflop(self) -> float:
        """Forward useful GFLOP."""
        return self.flops / 1e9

    @property
    def min_bytes(self) -> int:
        """Compulsory memory traffic of one pass: read x and w, write y (float32); a
        separable row counts both convs (its intermediate is written and read back)."""
        if self.kind == "separable":
            return sum(p.min_bytes for p in self.parts())
        n_x = self.batch * self.c_in * self.size * self.size
        n_w = self.c_out * (self.c_in // self.groups) * self.kernel * self.kernel
        n_y = self.batch * self.c_out * self.out * self.out
        return BYTES_FP32 * (n_x + n_w + n_y)

    @property
    def intensity(self) -> float:
        """Arithmetic intensity, useful FLOP per compulsory byte (one pass)."""
        return self.flops / self.min_bytes

    @property
    def block_gflop(self) -> float:
        """Templates: forward GFLOP of the whole bottleneck block (1x1 in -> width, the
        3x3, 1x1 width -> out) that the paper keeps constant; 0 for other layers."""
        if self.kind != "template":
            return 0.0
        block_in = 256 if self.stage == "conv2" else 512
        px = self.batch * self.out * self.out
        return (2 * px * block_in * self.c_in * 2 + self.flops) / 1e9

    def to_dict(self) -> dict[str, Any]:
        """The spec as sent to a worker (plain JSON types)."""
        d = asdict(self)
        d.pop("extra", None)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LayerSpec:
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})

    def describe(self) -> dict[str, Any]:
        """Columns describing the layer in the results table."""
        return {
            "kind": self.kind,
            "stage": self.stage,
            "cardinality": self.cardinality or "",
            "c_in": self.c_in,
            "c_out": self.c_out,
            "groups": self.groups,
            "kernel": self.kernel,
            "batch": self.batch,
            "size": self.size,
            "out": self.out,
            "gflop_fwd": self.gflop,
            "block_gflop_fwd": round(self.block_gflop, 6) if self.block_gflop else "",
            "intensity_flop_per_byte": self.intensity,
        }


def layer_sweep(batch: int, size: int = 56, which: str = "all") -> list[LayerSpec]:
    """The sweep of issue 3 at a given batch size and conv2-stage input size.

    `size` is the conv2-stage resolution (56 at 224x224 input); the conv3 stage runs at
    ``size // 2`` with the widths doubled. `which` = "all", "conv2" (templates at the
    conv2 stage + the reference layers) or a comma-separated list of layer names.
    """
    if batch < 1 or size < 4:
        raise ValueError(f"batch must be >= 1 and size >= 4 (got batch={batch}, size={size})")
    specs: list[LayerSpec] = []
    for stage, mult, sz in (("conv2", 1, size), ("conv3", 2, size // 2)):
        for card, width in RESNEXT_TEMPLATES:
            w = width * mult
            d = w // card
            label = "dense" if card == 1 else f"{card}x{d}d"
            specs.append(
                LayerSpec(
                    name=f"{stage} {label} (C={card}, w={w})",
                    kind="template",
                    stage=stage,
                    c_in=w,
                    c_out=w,
                    groups=card,
                    kernel=3,
                    batch=batch,
                    size=sz,
                    cardinality=card,
                    bottleneck_width=w,
                )
            )
    specs += [
        LayerSpec("depthwise 3x3 128 (g=128)", "depthwise", "conv2", 128, 128, 128, 3, batch, size),
        LayerSpec("dense 3x3 128->128", "dense", "conv2", 128, 128, 1, 3, batch, size),
        LayerSpec("1x1 256->128", "pointwise", "conv2", 256, 128, 1, 1, batch, size),
        # one FLOP budget, three ways to convolve: dense 3x3 64->64 (the "conv2 dense" row:
        # 36,864 MACs/px), grouped 3x3 256 in 16 groups (exactly 36,864), depthwise 3x3 188 +
        # pointwise 188->188 (9*188 + 188^2 = 37,036, +0.5%)
        LayerSpec("grouped 3x3 256 (g=16)", "grouped", "conv2", 256, 256, 16, 3, batch, size),
        LayerSpec(
            "separable 3x3 188 (dw+1x1)", "separable", "conv2", 188, 188, 188, 3, batch, size
        ),  # fmt: skip
    ]
    if which == "all":
        return specs
    if which == "conv2":
        return [s for s in specs if s.stage == "conv2"]
    wanted = [w.strip() for w in which.split(",") if w.strip()]
    chosen = [s for s in specs if any(w.lower() in s.name.lower() for w in wanted)]
    if not chosen:
        names = "\n  ".join(s.name for s in specs)
        raise ValueError(f"--layers {which!r} matches no layer; layers are:\n  {names}")
    return chosen
