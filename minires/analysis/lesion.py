"""Lesion study (Veit, Wilber & Belongie 2016, "Residual networks behave like ensembles
of relatively shallow networks"): delete one block at a time from a *trained* net and
measure test accuracy.

Deleting residual block k keeps its shortcut and removes its branch F_k:
``a^{k+1} = relu(0 + shortcut(a^k))`` (= ``shortcut(a^k)``, as ``a^k >= 0`` after a ReLU).
Only the paths through F_k disappear; the other 2^(n-1) paths of the ensemble remain, so
accuracy drops a little. A plain block has no shortcut: removing it *breaks the only
path* (its output is relu(0) = 0) and accuracy collapses to chance. With
``plain_mode="identity"`` a plain block whose input and output shapes match is instead
replaced by the identity (a skip the net never had during training), which shows how
strongly a plain net's layers depend on each other.

Batchnorm complicates the picture: its running statistics were estimated with every
block present, so after a deletion the blocks downstream normalise with stale means
and variances. Pass training images as ``recalibrate`` to also measure each lesioned
net after re-estimating those statistics (no weight changes): what remains is the
damage done by removing the branch itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from minires.analysis._blocks import find_blocks, patched, preserved, shortcut_kind
from minires.autograd import no_grad
from minires.nn.module import Module
from minires.tensor import Tensor


def evaluate(model: Module, x: Any, y: Any, batch_size: int = 256) -> float:
    """Accuracy of ``model`` (eval mode, no grad) on images x (N, C, H, W), labels y (N,)."""
    xs = np.asarray(x.data if isinstance(x, Tensor) else x)
    ys = np.asarray(y.data if isinstance(y, Tensor) else y)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int | np.integer):
        raise TypeError(f"evaluate: batch_size must be an int, got {batch_size!r}")
    if batch_size < 1:
        raise ValueError(f"evaluate: batch_size must be >= 1, got {batch_size}")
    if len(xs) == 0 or len(xs) != len(ys):
        raise ValueError(
            f"evaluate: needs a non-empty batch of images and one label each, got "
            f"{len(xs)} image(s) and {len(ys)} label(s)"
        )
    correct = 0
    with preserved(model), no_grad():
        model.eval()
        for i in range(0, len(xs), batch_size):
            logits = model(Tensor(xs[i : i + batch_size])).data
            correct += int(np.sum(np.argmax(logits, axis=1) == ys[i : i + batch_size]))
    return correct / len(xs)


@dataclass
class LesionResult:
    """Accuracy with each block deleted.

    Attributes:
        name: label of the model; baseline: accuracy of the intact model; chance: 1/K.
        rows: one dict per block: ``index``, ``block`` (name), ``shortcut`` kind,
            ``downsampling`` (shape changes), ``accuracy``, ``action`` (what deleting did).
    """

    name: str
    baseline: float
    chance: float
    rows: list[dict[str, Any]] = field(default_factory=list)
    baseline_recalibrated: float | None = None

    @property
    def accuracies(self) -> np.ndarray:
        """Accuracy with block k deleted, shape (n_blocks,)."""
        return np.array([r["accuracy"] for r in self.rows])

    @property
    def recalibrated(self) -> np.ndarray | None:
        """The same after re-estimating the BN statistics (None if not measured)."""
        if self.baseline_recalibrated is None:
            return None
        return np.array([r["accuracy_recalibrated"] for r in self.rows])

    def __str__(self) -> str:
        recal = self.baseline_recalibrated is not None
        head = f"Lesion study of {self.name}: intact accuracy {self.baseline:.3f}"
        if recal:
            head += f" ({self.baseline_recalibrated:.3f} with BN statistics re-estimated)"
        lines = [
            head + f"; chance {self.chance:.3f}",
            f"{'#':>3} {'block':<12} {'shortcut':<10} {'accuracy':>8}"
            + (f" {'BN re-est.':>10}" if recal else "")
            + "  action",
        ]
        for r in self.rows:
            extra = f" {r['accuracy_recalibrated']:>10.3f}" if recal else ""
            lines.append(
                f"{r['index']:>3} {r['block']:<12} {r['shortcut']:<10} {r['accuracy']:>8.3f}"
                f"{extra}  {r['action']}"
            )
        return "\n".join(lines)


def _zero_branch(block: Module) -> Any:
    """A replacement for ``block.residual``: zeros shaped like the block's output."""

    def residual(x: Tensor) -> Tensor:
        with no_grad():
            s = block.shortcut(x)
        return Tensor(np.zeros_like(s.data))

    return residual


def recalibrated_accuracy(
    model: Module, x: Any, y: Any, calibration: Any, batch_size: int = 256
) -> float:
    """Accuracy after re-estimating every batchnorm's running statistics on the images
    ``calibration`` (forward passes in train mode, no gradient, weights untouched). The
    model is restored afterwards."""
    from minires import nn

    xs = np.asarray(calibration.data if isinstance(calibration, Tensor) else calibration)
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    momenta = [m.momentum for m in bns]
    with preserved(model), no_grad():
        for m in bns:
            m.reset_running_stats()
            m.momentum = None  # cumulative average over the calibration batches
        model.train()
        for i in range(0, len(xs), batch_size):
            model(Tensor(xs[i : i + batch_size]))
        for m, mom in zip(bns, momenta):
            m.momentum = mom
        return evaluate(model, x, y, batch_size)


def lesion_study(
    model: Module,
    x: Any,
    y: Any,
    name: str | None = None,
    plain_mode: str = "break",
    batch_size: int = 256,
    num_classes: int | None = None,
    recalibrate: Any = None,
) -> LesionResult:
    """Delete each block in turn (keeping its shortcut) and measure accuracy on (x, y).

    Args:
        model: a trained net with blocks (residual or plain).
        x, y: test images (N, C, H, W) and labels (N,).
        plain_mode: for blocks without a skip: ``"break"`` (remove the branch: the only
            path is cut, output zero) or ``"identity"`` (replace the block by the
            identity when its shapes allow; otherwise fall back to "break").
        num_classes: for the chance level (default: from the model's output).
        recalibrate: training images (N, C, H, W). If given, each lesioned net is also
            evaluated after re-estimating the batchnorm running statistics on them
            (``accuracy_recalibrated``): the statistics stored during training assume
            every block is present, and part of the damage of a deletion is only that.
    """
    if plain_mode not in ("break", "identity"):
        raise ValueError(f"plain_mode must be 'break' or 'identity', got {plain_mode!r}")
    blocks = find_blocks(model)
    xs = np.asarray(x.data if isinstance(x, Tensor) else x)
    if num_classes is None:
        with preserved(model), no_grad():
            model.eval()
            num_classes = int(model(Tensor(xs[:1])).shape[-1])
    result = LesionResult(
        name=name or type(model).__name__,
        baseline=evaluate(model, x, y, batch_size),
        chance=1.0 / num_classes,
    )
    if recalibrate is not None:
        result.baseline_recalibrated = recalibrated_accuracy(model, x, y, recalibrate, batch_size)
    for i, (bname, block) in enumerate(blocks):
        downsampling = getattr(block, "downsample", None) is not None
        if block.has_skip:
            methods = {"residual": _zero_branch(block)}
            action = "branch removed, shortcut kept"
        elif plain_mode == "identity" and not downsampling:
            methods = {"forward": lambda t: t}
            action = "plain block replaced by the identity (a skip it never had)"
        else:
            methods = {"residual": _zero_branch(block)}
            action = "no shortcut: deleting it breaks the only path"
        row = {
            "index": i,
            "block": bname,
            "shortcut": shortcut_kind(block),
            "downsampling": downsampling,
            "action": action,
        }
        with patched(block, **methods):
            row["accuracy"] = evaluate(model, x, y, batch_size)
            if recalibrate is not None:
                row["accuracy_recalibrated"] = recalibrated_accuracy(
                    model, x, y, recalibrate, batch_size
                )
        result.rows.append(row)
    return result


def plot_lesion(
    results: list[LesionResult] | LesionResult,
    ax: Any = None,
    path: str | None = None,
    title: str | None = None,
) -> Any:
    """Accuracy vs deleted block (one line per model), with each intact accuracy and the
    chance level. Downsampling blocks are marked with open circles. Returns the figure."""
    import matplotlib.pyplot as plt

    if isinstance(results, LesionResult):
        results = [results]
    if ax is None:
        fig, ax = plt.subplots(figsize=(7, 3.5))
    else:
        fig = ax.figure
    for r in results:
        idx = np.arange(len(r.rows))
        (line,) = ax.plot(idx, r.accuracies, marker="o", ms=4, label=f"{r.name}: block deleted")
        ax.axhline(r.baseline, color=line.get_color(), ls=":", lw=1,
                   label=f"{r.name}: intact")  # fmt: skip
        if r.recalibrated is not None:
            label = f"{r.name}: BN statistics re-estimated"
            ax.plot(idx, r.recalibrated, marker="^", ms=4, ls="-.", alpha=0.7,
                    color=line.get_color(), label=label)  # fmt: skip
        ds = [i for i, row in enumerate(r.rows) if row["downsampling"]]
        if ds:
            ax.plot(ds, r.accuracies[ds], "o", mfc="white", color=line.get_color(), ms=7)
    if results:
        ax.axhline(results[0].chance, color="gray", ls="--", lw=1, label="chance")
    ax.set_xlabel("deleted block (open circle: downsampling block)")
    ax.set_ylabel("test accuracy")
    ax.set_ylim(0, 1.02)
    ax.set_title(title or "lesion study")
    ax.legend(fontsize=8)
    if path:
        fig.savefig(path, dpi=110, bbox_inches="tight")
    return fig
