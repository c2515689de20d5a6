r"""Residual gradient decomposition: the gradient reaching a low block, split into the part
carried by the chain of shortcuts and the part that went through residual branches.

The formula
-----------
For a stack of *pre-activation* blocks ``a^{i+1} = a^i + F_i(a^i)`` (He et al. 2016),

    a^{l2} = a^{l1} + sum_{i=l1}^{l2-1} F_i(a^i)
    d loss/d a^{l1} = d loss/d a^{l2} . (1 + d/d a^{l1} sum_i F_i(a^i))
                    =   d loss/d a^{l2}                                  (identity term)
                      + d loss/d a^{l2} . d/d a^{l1} sum_i F_i(a^i)      (residual term)

The identity term reaches ``a^{l1}`` with no weight matrix in between. This holds
literally for the pre-activation nets of `minires.models` (``preact_resnet20`` ...
``preact_resnet1001``): over a run of units with identity shortcuts, ``I`` *is*
``d loss/d a^{l2}``, bit for bit. Where a basic pre-activation net changes stage, its
option-A shortcut (on the raw input) makes ``I`` the transpose of option A applied to
``d loss/d a^{l2}`` (the gradient of the original channels at the kept positions) - still
exact, still weight-free, but smaller. A bottleneck net's projection units (the first
unit of each stage) apply a 1x1 conv to the pre-activated input, so the path "through
the shortcut" there crosses that conv and the unit's first BN-ReLU: the decomposition
still sums exactly, ``parameter_free`` is False, and the literal formula is the one over
a stage's identity units (``l1`` = the second unit of a stage or later).

What is computed for any block (post-activation too)
----------------------------------------------------
The other nets of `minires.models` are post-activation:
``a^{i+1} = g(F_i(a^i) + S_i(a^i))`` with ``g`` = ReLU and ``S_i`` the shortcut (identity,
option-A subsample + zero-pad, or a 1x1 projection). Backprop through block ``i`` splits
exactly into two pieces:

    d loss/d a^i = J_{F_i}^T D_i d loss/d a^{i+1}  +  J_{S_i}^T D_i d loss/d a^{i+1}

where ``D_i`` is the Jacobian of ``g`` at ``F_i + S_i`` (the ReLU mask). Expanding this
over blocks ``l1 .. l2-1`` writes d loss/d a^{l1} as a sum over the 2^(l2-l1) paths (each
block: through F or through S). Then

* **identity term** ``I`` = the single path that takes every shortcut:
  ``I = J_{S_{l1}}^T D_{l1} ... J_{S_{l2-1}}^T D_{l2-1} d loss/d a^{l2}``:
  d loss/d a^{l2} carried down unchanged where shapes match, only masked by the ReLUs after
  the adds, sliced/sub-sampled back through option-A shortcuts (through the 1x1 conv + BN
  of a projection shortcut, which `Decomposition.parameter_free` reports). For
  pre-activation blocks with identity shortcuts ``I`` is exactly ``d loss/d a^{l2}``.
* **residual term** ``R`` = all other paths (each goes through at least one ``F_i``).
  Grouping them by the *lowest* residual branch they use gives an independent recursion:
  ``R_{l2} = 0``, ``R_i = J_{F_i}^T D_i (d loss/d a^{i+1}) + J_{S_i}^T D_i R_{i+1}``.

``I`` and ``R`` are computed block by block with the blocks' own ``residual`` and
``shortcut`` (vector-Jacobian products of each branch, `BlockLinearisation`), using the
gradients the model's ``backward`` left at the boundaries ``a^{i+1}``. The full gradient
d loss/d a^{l1} is read from that same backward (`Tensor.retain_grad`). Two checks that
can fail:

1. ``I + R == full`` (``max_error``): fails if a block's forward is not built from its
   residual and shortcut, if autograd did not *sum* the two gradients at the fork, ...
2. ``I == identity_detached`` (``identity_check_error``): a second forward/backward of
   the whole model in which the outputs of the residual branches l1..l2-1 are detached
   (same values, no gradient through F) leaves exactly ``I`` at ``a^{l1}``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from minires.analysis._blocks import (
    BlockLinearisation,
    as_input,
    cosine,
    default_loss,
    frozen,
    norm,
    patched_many,
    preserved,
    recording,
    shortcut_kind,
)
from minires.autograd import no_grad
from minires.nn.module import Module
from minires.tensor import Tensor

LossFn = Callable[[Tensor, Any], Tensor]


@dataclass
class Decomposition:
    """The gradient at ``a^{l1}`` split into identity and residual terms.

    Arrays have the shape of the activation ``a^{l1}``, e.g. (N, C, H, W).

    Attributes:
        l1, l2: the block boundaries (``a^k`` is the input of block k; ``n`` the output of
            the last block).
        blocks: names of blocks l1 .. l2-1; ``shortcuts`` their shortcut kinds.
        full: d loss / d a^{l1} from the model's own backward.
        identity: the identity (all-shortcut) term I.
        residual: the residual term R (paths through at least one F).
        identity_detached: I recomputed by a backward with the residual outputs detached.
        grad_l2: d loss / d a^{l2}.
        loss: the loss value.
        forward_error: max |block forward - rebuilt forward| over the blocks (should be 0).
        per_boundary: one dict per boundary k = l1..l2 with the norms of I_k, R_k, full_k,
            their cosine and ``max|I_k + R_k - full_k|``.
    """

    l1: int
    l2: int
    blocks: list[str]
    shortcuts: list[str]
    full: np.ndarray
    identity: np.ndarray
    residual: np.ndarray
    identity_detached: np.ndarray
    grad_l2: np.ndarray
    loss: float
    forward_error: float
    per_boundary: list[dict[str, Any]] = field(default_factory=list)

    @property
    def max_error(self) -> float:
        """max |I + R - full|: the sum check."""
        return float(np.max(np.abs(self.identity + self.residual - self.full)))

    @property
    def relative_error(self) -> float:
        """`max_error` / max |full|."""
        scale = float(np.max(np.abs(self.full)))
        return self.max_error / scale if scale > 0 else self.max_error

    @property
    def identity_check_error(self) -> float:
        """max |I - I_detached|: the identity term computed two independent ways."""
        return float(np.max(np.abs(self.identity - self.identity_detached)))

    @property
    def norm_full(self) -> float:
        return norm(self.full)

    @property
    def norm_identity(self) -> float:
        return norm(self.identity)

    @property
    def norm_residual(self) -> float:
        return norm(self.residual)

    @property
    def cosine(self) -> float:
        """cos(I, R); nan if one of them is zero (e.g. a plain net has no identity term)."""
        return cosine(self.identity, self.residual)

    @property
    def identity_ratio(self) -> float:
        """|I| / |d loss/d a^{l2}|: 1 exactly over pre-activation units with identity
        shortcuts; below 1 where ReLU masks after the adds or option-A shortcuts (which
        drop the gradient of the padded channels and of 3 in 4 positions) are crossed."""
        g = norm(self.grad_l2)
        return self.norm_identity / g if g > 0 else float("nan")

    @property
    def parameter_free(self) -> bool:
        """True if the identity term crosses no weight: every shortcut is the identity or
        option A (no 1x1 projection)."""
        return all(k in ("identity", "option A") for k in self.shortcuts)

    @property
    def identity_equals_grad_l2(self) -> bool:
        """Whether I is literally d loss/d a^{l2} (pre-activation stacks, same shapes)."""
        return self.identity.shape == self.grad_l2.shape and bool(
            np.allclose(self.identity, self.grad_l2, rtol=1e-12, atol=0)
        )

    def summary(self) -> dict[str, float]:
        """The key numbers as a flat dict."""
        return {
            "l1": self.l1,
            "l2": self.l2,
            "loss": self.loss,
            "norm_full": self.norm_full,
            "norm_identity": self.norm_identity,
            "norm_residual": self.norm_residual,
            "cosine": self.cosine,
            "max_error": self.max_error,
            "relative_error": self.relative_error,
            "identity_check_error": self.identity_check_error,
            "forward_error": self.forward_error,
        }

    def __str__(self) -> str:
        kinds = sorted(set(self.shortcuts))
        rows = [
            ("loss", f"{self.loss:.6g}"),
            (f"|d loss/d a^{self.l1}| (backward)", f"{self.norm_full:.6e}"),
            ("|identity term I|", f"{self.norm_identity:.6e}"),
            ("|residual term R|", f"{self.norm_residual:.6e}"),
            ("cos(I, R)", _cos_text(self)),
            ("max |I + R - full|", f"{self.max_error:.3e}  (relative {self.relative_error:.3e})"),
            ("max |I - I(detached residuals)|", f"{self.identity_check_error:.3e}"),
            ("max |forward - block(F, S)|", f"{self.forward_error:.3e}"),
        ]
        head = (
            f"Residual gradient decomposition at a^{self.l1} (blocks {self.l1}..{self.l2 - 1}: "
            f"{self.blocks[0]} .. {self.blocks[-1]}; shortcuts: {', '.join(kinds)})"
        )
        return "\n".join([head] + [f"  {k:<34}{v}" for k, v in rows])

    def table(self) -> str:
        """Per-boundary norms of I, R and the full gradient, as aligned text."""
        head = f"{'k':>4} {'|full|':>12} {'|I|':>12} {'|R|':>12} {'cos(I,R)':>9} {'err':>10}"
        rows = [head]
        for r in self.per_boundary:
            rows.append(
                f"{r['k']:>4} {r['norm_full']:>12.4e} {r['norm_identity']:>12.4e} "
                f"{r['norm_residual']:>12.4e} {_cos_cell(r):>9} {r['max_error']:>10.2e}"
            )
        return "\n".join(rows)

    def plot(self, ax: Any = None, title: str | None = None) -> Any:
        """Norms of I_k, R_k and the full gradient at every boundary k (log scale)."""
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots(figsize=(6, 3.5))
        k = [r["k"] for r in self.per_boundary]

        def series(key: str) -> list[float]:  # zeros (R at k = l2) are left out of a log plot
            return [r[key] if r[key] > 0 else float("nan") for r in self.per_boundary]

        ax.semilogy(k, series("norm_full"), "k-", lw=2, alpha=0.5, label="full (backward)")
        ax.semilogy(k, series("norm_identity"), "o-", ms=3, label="identity term I")
        ax.semilogy(k, series("norm_residual"), "s--", ms=3, label="residual term R")
        marked = False
        for j, kind in enumerate(self.shortcuts):  # where the skip path is not the identity
            if kind in ("option A", "projection"):
                ax.axvline(self.l1 + j + 0.5, color="gray", ls=":", lw=1,
                           label=None if marked else f"{kind} shortcut")  # fmt: skip
                marked = True
        ax.set_xlabel(f"block boundary k (gradient split between a^k and a^{self.l2})")
        ax.set_ylabel("norm of gradient")
        ax.set_title(title or "identity vs residual paths")
        ax.legend(fontsize=8)
        return ax


def compare_decompositions(decomps: Mapping[str, Decomposition]) -> str:
    """Per-boundary norms of several decompositions side by side (same boundaries):
    ``k``, then ``|full|``, ``|I|``, ``|R|`` of each, as aligned text."""
    names = list(decomps)
    rows_by = [decomps[n].per_boundary for n in names]
    if len({len(r) for r in rows_by}) != 1:
        raise ValueError(
            "compare_decompositions: the decompositions span different numbers of "
            f"boundaries ({', '.join(f'{n}: {len(r)}' for n, r in zip(names, rows_by))})"
        )
    width = 3 * 11 + 2
    head1 = f"{'':>4} " + " | ".join(f"{n:^{width}}" for n in names)
    head2 = f"{'k':>4} " + " | ".join(f"{'|full|':>11} {'|I|':>11} {'|R|':>11}" for _ in names)
    lines = [head1, head2]
    for i in range(len(rows_by[0])):
        cells = [
            f"{r[i]['norm_full']:>11.3e} {r[i]['norm_identity']:>11.3e} "
            f"{r[i]['norm_residual']:>11.3e}"
            for r in rows_by
        ]
        lines.append(f"{rows_by[0][i]['k']:>4} " + " | ".join(cells))
    return "\n".join(lines)


def plot_decompositions(
    decomps: Mapping[str, Decomposition],
    path: str | os.PathLike | None = None,
    title: str | None = None,
) -> Any:
    """One panel per decomposition (``{"preact_resnet20": d1, "resnet20": d2}``), side by
    side on a shared log scale: |I|, |R| and |full| at every boundary. Saved to ``path``
    if given. Returns the figure."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(decomps), figsize=(5.5 * len(decomps), 3.8), sharey=True,
                             squeeze=False)  # fmt: skip
    for ax, (name, d) in zip(axes[0], decomps.items()):
        d.plot(ax=ax, title=name)
    for ax in axes[0][1:]:
        ax.set_ylabel("")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=110, bbox_inches="tight")
    return fig


def decompose(
    model: Module,
    x: Any,
    target: Any = None,
    l1: int | str = 0,
    l2: int | str | None = None,
    loss_fn: LossFn | None = None,
) -> Decomposition:
    """Split d loss / d a^{l1} into identity and residual terms over blocks l1 .. l2-1.

    Args:
        model: a ResNet / ResNeXt / CIFAR net, a plain twin, a ``Sequential`` of blocks,
            or any module whose blocks have ``residual``/``shortcut`` (see `find_blocks`).
            Use ``model.double()`` and float64 inputs for ~1e-12 agreement.
        x: a batch (N, C, H, W) (ndarray or Tensor).
        target: integer labels (N,) for cross-entropy, or None (then the loss is a fixed
            random projection of the output, `default_loss`).
        l1, l2: block boundaries, ``0 <= l1 < l2 <= n`` (n = number of blocks called);
            ``l2=None`` means the output of the last block. They may span stages. A
            block name (``"layer2.0"``) stands for the input of that block.
        loss_fn: ``loss_fn(output, target) -> scalar Tensor`` (default: `default_loss`).

    The model is left as it was (BN running statistics, grads, modes are restored);
    batchnorm runs in the model's current mode. See the module docstring for the exact
    definition of the two terms.
    """
    loss_fn = loss_fn or default_loss
    with preserved(model):
        # 1. the real thing: forward + backward of the model, boundaries recorded
        with recording(model) as rec:
            out = model(as_input(x))
            loss = loss_fn(out, target)
            loss.backward()
        n = rec.n
        l1 = _boundary_index(l1, rec, n)
        l2 = n if l2 is None else _boundary_index(l2, rec, n)
        if not 0 <= l1 < l2 <= n:
            raise ValueError(f"need 0 <= l1 < l2 <= {n} (number of blocks), got l1={l1}, l2={l2}")
        rec.check_chained(l1, l2)
        called = rec.called_blocks()
        grads = {k: np.array(rec.boundary_grad(k), copy=True) for k in range(l1, l2 + 1)}
        inputs = {j: rec.inputs[j].data for j in range(l1, l2)}
        outputs = {j: rec.outputs[j].data for j in range(l1, l2)}
        del rec, out

        # 2. block by block: I and R by their recursions
        identity = grads[l2]
        residual = np.zeros_like(identity)
        forward_error = 0.0
        per_boundary = [_boundary_row(l2, identity, residual, grads[l2])]
        with frozen(model):
            for j in range(l2 - 1, l1 - 1, -1):
                lin = BlockLinearisation(called[j][1], inputs[j])
                forward_error = max(forward_error, float(np.max(np.abs(lin.out.data - outputs[j]))))
                via_f = lin.vjp_residual(grads[j + 1])
                residual = via_f + lin.vjp_shortcut(residual)
                identity = lin.vjp_shortcut(identity)
                per_boundary.append(_boundary_row(j, identity, residual, grads[j]))
                del lin
        per_boundary.reverse()

        # 3. independently: backward with the residual branches l1..l2-1 detached
        identity_detached = _identity_by_detaching(
            model, x, target, loss_fn, l1, [called[j][1] for j in range(l1, l2)]
        )

    return Decomposition(
        l1=l1,
        l2=l2,
        blocks=[called[j][0] for j in range(l1, l2)],
        shortcuts=[shortcut_kind(called[j][1]) for j in range(l1, l2)],
        full=grads[l1],
        identity=identity,
        residual=residual,
        identity_detached=identity_detached,
        grad_l2=grads[l2],
        loss=float(loss.item()),
        forward_error=forward_error,
        per_boundary=per_boundary,
    )


def _boundary_index(k: int | str, rec: Any, n: int) -> int:
    """A boundary given as an int, or as a block name (the input of that block)."""
    if isinstance(k, str):
        names = [name for name, _ in rec.called_blocks()]
        if k not in names:
            raise ValueError(f"no block named {k!r}; blocks: {', '.join(names)}")
        return names.index(k)
    return int(k)


def _cos_cell(row: dict[str, Any]) -> str:
    """cos(I, R) for a table cell: undefined (not +nan) where a term is exactly zero, as
    R is at k = l2 (no block lies between a^{l2} and itself) and I in a plain net."""
    if row["norm_residual"] == 0:
        return "n/a (R=0)"
    if row["norm_identity"] == 0:
        return "n/a (I=0)"
    return f"{row['cosine']:+.3f}"


def _cos_text(d: Decomposition) -> str:
    if d.norm_residual == 0:
        return "n/a (R = 0: no residual branch in between)"
    if d.norm_identity == 0:
        return "n/a (I = 0: no path through the shortcuts)"
    return f"{d.cosine:+.4f}"


def _boundary_row(k: int, i: np.ndarray, r: np.ndarray, full: np.ndarray) -> dict[str, Any]:
    return {
        "k": k,
        "norm_full": norm(full),
        "norm_identity": norm(i),
        "norm_residual": norm(r),
        "cosine": cosine(i, r),
        "max_error": float(np.max(np.abs(i + r - full))),
    }


def _identity_by_detaching(
    model: Module, x: Any, target: Any, loss_fn: LossFn, l1: int, blocks: list[Module]
) -> np.ndarray:
    """d loss / d a^{l1} when the residual outputs of ``blocks`` carry no gradient."""
    patches: list[tuple[Module, dict[str, Any]]] = []
    for block in blocks:

        def detached(t: Tensor, _f: Any = block.residual) -> Tensor:
            with no_grad():
                return _f(t)

        patches.append((block, {"residual": detached}))
    with patched_many(patches), recording(model) as rec:
        out = model(as_input(x))
        loss_fn(out, target).backward()
    return np.array(rec.boundary_grad(l1), copy=True)
