"""Residual networks as ensembles of paths (Veit, Wilber & Belongie 2016).

Unrolling n residual blocks, every block is either entered (through F_i) or skipped
(through the shortcut), so the net is a collection of 2^n paths; C(n, k) of them go
through exactly k residual branches ("length k"). The path lengths are Binomial(n, 1/2).

Veit's measurement of the gradient carried by paths of length k: feed a batch forward,
then in the backward pass pick k blocks at random, propagate *only through the residual
branch* of those and *only through the shortcut* of the others, and record the norm of
the gradient that arrives at the input of the first block. The magnitude of one path
falls roughly exponentially with k, while the number of paths C(n, k) first rises:
their product, the total gradient carried by all paths of length k, peaks at lengths far
below n. Those are the "effective paths" (5-17 of 54 blocks in Veit's ResNet-110).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from minires.analysis._blocks import (
    BlockLinearisation,
    as_input,
    default_loss,
    frozen,
    norm,
    preserved,
    recording,
)
from minires.nn.module import Module
from minires.tensor import Tensor

LossFn = Callable[[Tensor, Any], Tensor]


def path_length_distribution(n: int) -> np.ndarray:
    """Number of paths of each length k = 0..n through n residual blocks: C(n, k).

    Returns an int-valued float array of shape (n + 1,) (floats: C(110, 55) > 2^63).
    """
    return np.array([float(math.comb(n, k)) for k in range(n + 1)])


@dataclass
class PathGradients:
    """Gradient magnitude carried by paths of each length (Veit et al., Fig. 6).

    Attributes:
        n: number of residual blocks.
        lengths: the path lengths k that were sampled, shape (L,).
        per_path: mean norm of the gradient through one path of length k, shape (L,).
        per_path_std: its standard deviation over the samples.
        samples: samples per length.
        counts: C(n, k) for the sampled lengths.
    """

    n: int
    lengths: np.ndarray
    per_path: np.ndarray
    per_path_std: np.ndarray
    samples: int
    counts: np.ndarray

    @property
    def total(self) -> np.ndarray:
        """Total gradient magnitude of all paths of length k: per_path * C(n, k)."""
        return self.per_path * self.counts

    @property
    def total_fraction(self) -> np.ndarray:
        """`total` normalised to sum to 1 over the sampled lengths."""
        t = self.total
        return t / t.sum()

    @property
    def decay_per_block(self) -> float:
        """Geometric factor by which one path's gradient shrinks per extra residual
        branch (fit of log per_path vs k)."""
        ok = self.per_path > 0
        slope = np.polyfit(self.lengths[ok], np.log(self.per_path[ok]), 1)[0]
        return float(np.exp(slope))

    @property
    def peak_length(self) -> int:
        """The path length carrying the most total gradient."""
        return int(self.lengths[int(np.argmax(self.total))])

    def effective_range(self, mass: float = 0.9) -> tuple[int, int]:
        """The central interval of path lengths [k_lo, k_hi] carrying ``mass`` of the
        total gradient (cut (1 - mass)/2 from each tail of `total_fraction`)."""
        cdf = np.cumsum(self.total_fraction)
        tail = (1.0 - mass) / 2
        lo = int(self.lengths[int(np.searchsorted(cdf, tail))])
        hi = int(self.lengths[min(int(np.searchsorted(cdf, 1.0 - tail)), len(cdf) - 1)])
        return lo, hi

    def __str__(self) -> str:
        lo, hi = self.effective_range()
        lines = [
            f"Paths through {self.n} residual blocks ({self.samples} samples per length)",
            f"  per-path gradient shrinks x{self.decay_per_block:.3f} per residual branch; "
            f"total peaks at length {self.peak_length}; 90% of it from lengths {lo}..{hi} "
            f"(mean path length {self.n / 2:g})",
            f"{'k':>4} {'C(n,k)':>12} {'|g| one path':>13} {'total':>12} {'share':>7}",
        ]
        for k, c, p, t, f in zip(
            self.lengths, self.counts, self.per_path, self.total, self.total_fraction
        ):
            lines.append(f"{k:>4} {c:>12.4g} {p:>13.4e} {t:>12.4e} {f:>7.3f}")
        return "\n".join(lines)


def path_gradients(
    model: Module,
    x: Any,
    target: Any = None,
    lengths: Sequence[int] | None = None,
    samples: int = 10,
    seed: int = 0,
    loss_fn: LossFn | None = None,
    progress: bool = False,
) -> PathGradients:
    """Veit's sampling: for each length k, ``samples`` times choose k of the n residual
    blocks, backpropagate d loss/d(last block output) through the residual branch of the
    chosen blocks and the shortcut of the others, and record the norm at the input of the
    first block.

    Args:
        model: a residual net (every block must have a skip).
        x, target: the batch; loss_fn as in `decompose`.
        lengths: the k to sample (default 0..n).
        samples: random block subsets per length (one batch, several subsets).
        progress: show a tqdm bar.
    """
    loss_fn = loss_fn or default_loss
    if isinstance(samples, bool) or not isinstance(samples, int | np.integer) or samples < 1:
        raise ValueError(f"path_gradients: samples must be an int >= 1, got {samples!r}")
    rng = np.random.default_rng(seed)
    with preserved(model):
        with recording(model) as rec:
            out = model(as_input(x))
            loss_fn(out, target).backward()
        n = rec.n
        rec.check_chained(0, n)
        called = rec.called_blocks()
        if not all(b.has_skip for _, b in called):
            raise ValueError("path_gradients needs a residual net: a plain block has no skip")
        seed_grad = np.array(rec.boundary_grad(n), copy=True)
        ins = [rec.inputs[j].data for j in range(n)]
        del rec, out
        if lengths is None:
            lengths = list(range(n + 1))
        else:
            if isinstance(lengths, int | np.integer) or not all(
                isinstance(k, int | np.integer) and not isinstance(k, bool) for k in lengths
            ):
                raise TypeError(f"path_gradients: lengths must be a list of ints, got {lengths!r}")
            bad = [int(k) for k in lengths if not 0 <= k <= n]
            if bad:
                raise ValueError(
                    f"path_gradients: path lengths must be in 0..{n} (the net has {n} residual "
                    f"blocks), got {bad}"
                )
            lengths = [int(k) for k in lengths]
        with frozen(model):
            lins = [BlockLinearisation(b, ins[j]) for j, (_, b) in enumerate(called)]
            means, stds = [], []
            todo: Any = lengths
            if progress:
                from tqdm.auto import tqdm

                todo = tqdm(lengths, desc="path lengths")
            for k in todo:
                norms = []
                for _ in range(samples):
                    active = set(rng.choice(n, size=k, replace=False).tolist())
                    v = seed_grad
                    for j in range(n - 1, -1, -1):
                        v = lins[j].vjp_residual(v) if j in active else lins[j].vjp_shortcut(v)
                    norms.append(norm(v))
                means.append(float(np.mean(norms)))
                stds.append(float(np.std(norms)))
    ks = np.array(lengths)
    return PathGradients(
        n=n,
        lengths=ks,
        per_path=np.array(means),
        per_path_std=np.array(stds),
        samples=samples,
        counts=np.array([float(math.comb(n, int(k))) for k in ks]),
    )


def plot_paths(pg: PathGradients, path: str | None = None) -> Any:
    """Three panels like Veit et al. Fig. 6: (a) the number of paths of each length,
    (b) the gradient magnitude of one path vs length (log), (c) the total gradient
    magnitude per length, with the effective range shaded. Returns the figure."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(12, 3.3))
    k_all = np.arange(pg.n + 1)
    axes[0].bar(k_all, path_length_distribution(pg.n), color="tab:blue")
    axes[0].set_title(f"(a) number of paths, n = {pg.n}")
    axes[0].set_xlabel("path length k")
    axes[1].semilogy(pg.lengths, pg.per_path, "o-", ms=3, color="tab:orange")
    axes[1].set_title("(b) gradient through one path")
    axes[1].set_xlabel("path length k")
    axes[2].plot(pg.lengths, pg.total_fraction, "o-", ms=3, color="tab:green")
    lo, hi = pg.effective_range()
    axes[2].axvspan(lo, hi, color="tab:green", alpha=0.15, label=f"90%: k = {lo}..{hi}")
    axes[2].set_title("(c) total gradient by path length")
    axes[2].set_xlabel("path length k")
    axes[2].legend(fontsize=8)
    fig.tight_layout()
    if path:
        fig.savefig(path, dpi=110, bbox_inches="tight")
    return fig
