"""Gradient flow by depth: how large is d loss / d a^k at every block boundary, and the
weight gradient of every conv, for a residual net and its plain twin.

What the engine shows (not the folklore): with batchnorm in training mode a deep *plain*
net's gradients at initialisation do not vanish toward the input, they *explode* -
every conv-BN-ReLU layer multiplies the backward signal by a factor a little above 1, and
the factors compound over depth (about 10^3-10^4 x from the last block to the first in
plain56, 10^7 x in plain110, against 20-50 x in resnet56/110). Without batchnorm the
picture flips: the plain nets' gradients vanish toward the input and the residual nets
explode (forward and backward: every block adds a branch of comparable variance to the
identity). Run `compare_gradient_flow` to measure it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from minires.analysis._blocks import as_input, default_loss, norm, preserved, recording
from minires.nn.module import Module
from minires.tensor import Tensor

LossFn = Callable[[Tensor, Any], Tensor]


@dataclass
class GradientFlow:
    """Gradient norms through the depth of one model for one batch.

    Attributes:
        name: a label (e.g. ``"plain56"``); ``phase``: e.g. ``"init"`` or ``"step 50"``.
        blocks: block names in forward order; ``has_skip``: whether each has a skip.
        grad_in: ``||d loss / d a^k||`` at the input of block k, shape (n_blocks,).
        grad_out: the same at the output of block k.
        rms_in: ``grad_in / sqrt(numel)``: per-element size (stages differ in numel).
        conv_names / conv_grad: every conv weight (4-D parameter) and the norm of its
            gradient, in definition order.
        loss: the loss of the batch.
    """

    name: str
    phase: str
    blocks: list[str]
    has_skip: list[bool]
    grad_in: np.ndarray
    grad_out: np.ndarray
    rms_in: np.ndarray
    conv_names: list[str]
    conv_grad: np.ndarray
    loss: float

    @property
    def spread(self) -> float:
        """largest / smallest per-block gradient norm (at block inputs)."""
        return _ratio(self.grad_in.max(), self.grad_in.min())

    @property
    def first_last_ratio(self) -> float:
        """gradient at the first block / gradient at the last block (> 1: grows toward
        the input; < 1: vanishes toward the input)."""
        return _ratio(self.grad_in[0], self.grad_in[-1])

    @property
    def conv_spread(self) -> float:
        """largest / smallest conv weight-gradient norm."""
        return _ratio(self.conv_grad.max(), self.conv_grad.min())

    def rows(self) -> list[dict[str, Any]]:
        """One dict per block: name, index, has_skip, grad_in, grad_out, rms_in."""
        return [
            {
                "model": self.name,
                "phase": self.phase,
                "index": i,
                "block": b,
                "has_skip": s,
                "grad_in": float(gi),
                "grad_out": float(go),
                "rms_in": float(r),
            }
            for i, (b, s, gi, go, r) in enumerate(
                zip(self.blocks, self.has_skip, self.grad_in, self.grad_out, self.rms_in)
            )
        ]

    def __str__(self) -> str:
        return (
            f"{self.name:>16} {self.phase:>8}  loss {self.loss:8.4f}  "
            f"|g| first block {self.grad_in[0]:.3e}  last block {self.grad_in[-1]:.3e}  "
            f"first/last {self.first_last_ratio:9.3g}  spread {self.spread:9.3g}"
        )


def _ratio(a: float, b: float) -> float:
    return float(a) / float(b) if b > 0 else math.inf


def gradient_flow(
    model: Module,
    x: Any,
    target: Any = None,
    name: str | None = None,
    phase: str = "",
    loss_fn: LossFn | None = None,
) -> GradientFlow:
    """Per-block activation-gradient norms and per-conv weight-gradient norms.

    Args:
        model: any model with blocks (see `minires.analysis.find_blocks`).
        x: a batch (N, C, H, W); target: labels (N,) (or None, see `default_loss`).
        name, phase: labels for tables and plots.
        loss_fn: ``loss_fn(output, target)`` (default cross-entropy).

    One forward + backward in the model's current mode (batchnorm in train mode uses
    batch statistics); the model's state and grads are restored afterwards.
    """
    loss_fn = loss_fn or default_loss
    with preserved(model):
        model.zero_grad()
        with recording(model) as rec:
            out = model(as_input(x))
            loss = loss_fn(out, target)
            loss.backward()
        called = rec.called_blocks()
        g_in = np.array([norm(rec.boundary_grad(k)) for k in range(rec.n)])
        g_out = np.array(
            [norm(rec.outputs[k].grad) if rec.outputs[k].grad is not None else 0.0
             for k in range(rec.n)]
        )  # fmt: skip
        rms = np.array([g / math.sqrt(rec.inputs[k].data.size) for k, g in enumerate(g_in)])
        convs = [(n, p) for n, p in model.named_parameters() if p.ndim == 4]
        conv_grad = np.array([norm(p.grad) if p.grad is not None else 0.0 for _, p in convs])
        result = GradientFlow(
            name=name or type(model).__name__,
            phase=phase,
            blocks=[n for n, _ in called],
            has_skip=[bool(b.has_skip) for _, b in called],
            grad_in=g_in,
            grad_out=g_out,
            rms_in=rms,
            conv_names=[n for n, _ in convs],
            conv_grad=conv_grad,
            loss=float(loss.item()),
        )
    return result


def train_steps(
    model: Module,
    batches: Iterable[tuple[Any, Any]],
    steps: int,
    lr: float = 0.05,
    momentum: float = 0.9,
    weight_decay: float = 1e-4,
    loss_fn: LossFn | None = None,
) -> list[float]:
    """A few SGD steps (``minires.optim.SGD``) on batches drawn from ``batches``
    (cycled if it runs out). Returns the training losses; stops early if the loss is
    not finite (a diverged net: the last entry is then nan or inf)."""
    from minires.optim import SGD

    loss_fn = loss_fn or default_loss
    opt = SGD(model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)
    model.train()
    losses: list[float] = []
    source = list(batches) if not hasattr(batches, "__next__") else batches
    it = iter(source)
    while len(losses) < steps:
        try:
            xb, yb = next(it)
        except StopIteration:
            it = iter(source)
            xb, yb = next(it)
        opt.zero_grad()
        loss = loss_fn(model(xb if isinstance(xb, Tensor) else Tensor(np.asarray(xb))), yb)
        loss.backward()
        value = float(loss.item())
        del loss  # one graph at a time
        losses.append(value)
        if not math.isfinite(value):
            break
        opt.step()
    return losses


@dataclass
class GradientFlowComparison:
    """`GradientFlow` of several models (and phases); print it for the table."""

    flows: list[GradientFlow] = field(default_factory=list)
    figure: Any = None
    diverged: dict[str, bool] = field(default_factory=dict)

    def get(self, name: str, phase: str | None = None) -> GradientFlow:
        """The flow of model ``name`` (in ``phase``; the first one if None)."""
        for f in self.flows:
            if f.name == name and (phase is None or f.phase == phase):
                return f
        raise KeyError(f"no gradient flow for {name!r} (phase {phase!r})")

    def rows(self) -> list[dict[str, Any]]:
        """Every block of every model and phase, one dict each (a long-format table)."""
        return [r for f in self.flows for r in f.rows()]

    def summary_rows(self) -> list[dict[str, Any]]:
        """One dict per (model, phase): loss, first/last ratio, spread."""
        return [
            {
                "model": f.name,
                "phase": f.phase,
                "loss": f.loss,
                "grad_first_block": float(f.grad_in[0]),
                "grad_last_block": float(f.grad_in[-1]),
                "first_last_ratio": f.first_last_ratio,
                "spread": f.spread,
                "conv_spread": f.conv_spread,
            }
            for f in self.flows
        ]

    def __str__(self) -> str:
        head = (
            f"{'model':>16} {'phase':>8} {'loss':>8} {'|g| 1st blk':>11} {'|g| last':>10} "
            f"{'first/last':>10} {'spread':>10} {'conv spread':>11}"
        )
        lines = [head]
        for r in self.summary_rows():
            lines.append(
                f"{r['model']:>16} {r['phase']:>8} {r['loss']:>8.4f} "
                f"{r['grad_first_block']:>11.3e} {r['grad_last_block']:>10.3e} "
                f"{r['first_last_ratio']:>10.3g} {r['spread']:>10.3g} {r['conv_spread']:>11.3g}"
            )
        for name, bad in self.diverged.items():
            if bad:
                lines.append(f"  ({name} diverged during training: its loss became nan/inf)")
        return "\n".join(lines)


def compare_gradient_flow(
    models: Mapping[str, Module],
    x: Any,
    target: Any = None,
    train_batches: Iterable[tuple[Any, Any]] | None = None,
    steps: int = 0,
    lr: float = 0.05,
    plot: bool = True,
    path: str | None = None,
    title: str | None = None,
    ax: Any = None,
    loss_fn: LossFn | None = None,
) -> GradientFlowComparison:
    """Gradient norms by depth for several models, at initialisation and (if ``steps``)
    after ``steps`` SGD steps on ``train_batches``, measured on the same batch ``x``.

    Args:
        models: ``{"resnet56": m1, "plain56": m2, ...}``; trained in place if steps > 0.
        x, target: the measurement batch.
        train_batches: iterable of (x, y) used for the training steps.
        steps: SGD steps between the two measurements (0: only at initialisation).
        plot: draw the comparison (log scale) into ``ax`` (or a new figure), saved to
            ``path`` if given.

    Returns:
        a `GradientFlowComparison` (``print`` it for the table; ``.rows()`` per block;
        ``.figure`` the matplotlib figure when plotted).
    """
    comp = GradientFlowComparison()
    for name, model in models.items():
        comp.flows.append(gradient_flow(model, x, target, name=name, phase="init", loss_fn=loss_fn))
    if steps > 0:
        if train_batches is None:
            raise ValueError("compare_gradient_flow: steps > 0 needs train_batches")
        batches = list(train_batches)
        for name, model in models.items():
            with np.errstate(all="ignore"):  # a net without BN may diverge: reported as nan
                losses = train_steps(model, batches, steps, lr=lr, loss_fn=loss_fn)
            comp.diverged[name] = not math.isfinite(losses[-1])
            with np.errstate(all="ignore"):
                flow = gradient_flow(
                    model, x, target, name=name, phase=f"step {steps}", loss_fn=loss_fn
                )
            comp.flows.append(flow)
    if plot:
        comp.figure = plot_gradient_flow(comp.flows, ax=ax, title=title, path=path)
    return comp


def plot_gradient_flow(
    flows: Iterable[GradientFlow],
    ax: Any = None,
    title: str | None = None,
    path: str | None = None,
    quantity: str = "grad_in",
) -> Any:
    """Gradient norm vs depth, log scale; one line per (model, phase). Plain nets
    dashed, residual solid; later phases lighter. ``quantity``: ``"grad_in"`` (block
    inputs), ``"grad_out"``, ``"rms_in"`` (per element) or ``"conv_grad"`` (per conv
    weight). Returns the figure."""
    import matplotlib.pyplot as plt

    if ax is None:
        fig, ax = plt.subplots(figsize=(7, 4))
    else:
        fig = ax.figure
    colors: dict[str, Any] = {}
    palette = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    phases: list[str] = []
    for f in flows:
        if f.phase not in phases:
            phases.append(f.phase)
    for f in flows:
        c = colors.setdefault(f.name, palette[len(colors) % len(palette)])
        style = "-" if any(f.has_skip) else "--"
        alpha = 1.0 if phases.index(f.phase) == 0 else 0.5
        y = getattr(f, quantity)
        ax.semilogy(np.arange(len(y)), y, style, color=c, alpha=alpha, marker=".", ms=3,
                    label=f"{f.name} ({f.phase})" if f.phase else f.name)  # fmt: skip
    if quantity == "conv_grad":
        ax.set_xlabel("conv layer (0 = nearest the input)")
        ax.set_ylabel("||d loss / d weight||")
    else:
        ax.set_xlabel("block (0 = nearest the input)")
        ax.set_ylabel(
            f"||d loss / d a|| at block {'output' if quantity == 'grad_out' else 'input'}"
        )
    ax.set_title(title or "gradient norm by depth")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    if path:
        fig.savefig(path, dpi=110, bbox_inches="tight")
    return fig


def strip_batchnorm(model: Module) -> Module:
    """Replace every ``BatchNorm2d`` of ``model`` by ``Identity``, in place (returns it).

    Used to show the same nets without normalisation: the convs keep their Kaiming init.
    """
    from minires import nn

    for _, mod in list(model.named_modules()):
        for cname, child in list(mod.named_children()):
            if isinstance(child, nn.BatchNorm2d):
                mod.add_module(cname, nn.Identity())
    return model
