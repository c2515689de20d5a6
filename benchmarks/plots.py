"""PNG plots of a run (matplotlib, Agg backend):

* ``cardinality.png``  time and GFLOP/s vs cardinality at preserved block FLOPs, one line
                       per backend, conv2 and conv3 stages side by side
* ``layers.png``       bars per layer type (time and GFLOP/s), one bar per backend, and
                       minires' x torch per layer (the one ratio convention of
                       `story.RATIO_RULE`: best PyTorch layout's time / minires' time,
                       > 1: minires faster) when PyTorch ran
* ``roofline.png``     arithmetic intensity vs GFLOP/s with the measured sgemm ceiling,
                       the peak (measured FMA peak) and the bandwidth slope: grouped and
                       depthwise convs sit left, under the memory roof
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

MARKERS = {"numba": "o", "numpy": "s", "torch": "^", "torch_cl": "v", "broken": "x"}


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _ok_layers(results: dict[str, Any]) -> list[dict[str, Any]]:
    return [r for r in results["rows"] if r["section"] == "layer" and r.get("status") == "ok"]


def plot_cardinality(results: dict[str, Any], path: Path) -> Path | None:
    rows = [r for r in _ok_layers(results) if r.get("kind") == "template"]
    if not rows:
        return None
    plt = _plt()
    stages = list(dict.fromkeys(r["stage"] for r in rows))
    fig, axes = plt.subplots(2, len(stages), figsize=(5.5 * len(stages), 7), squeeze=False)
    backends = list(dict.fromkeys(r["backend"] for r in rows))
    for j, stage in enumerate(stages):
        for b in backends:
            pts = sorted((r["cardinality"], r["total_median_ms"], r["gflops_total"])
                         for r in rows if r["stage"] == stage and r["backend"] == b)  # fmt: skip
            if not pts:
                continue
            c, t, g = zip(*pts)
            axes[0, j].plot(c, t, marker=MARKERS.get(b, "o"), label=b)
            axes[1, j].plot(c, g, marker=MARKERS.get(b, "o"), label=b)
        size = next(r["out"] for r in rows if r["stage"] == stage)
        axes[0, j].set_title(f"{stage} 3x3 conv ({size}x{size}), batch {rows[0]['batch']}")
        for i, ylab in enumerate(("fwd+bwd time (ms, log)", "useful GFLOP/s (log)")):
            ax = axes[i, j]
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            cards = sorted({r["cardinality"] for r in rows})
            ax.set_xticks(cards, [str(c) for c in cards])
            ax.set_xlabel("cardinality C (block FLOPs preserved)")
            ax.set_ylabel(ylab)
            ax.grid(True, which="both", alpha=0.3)
        axes[0, j].legend(fontsize=8)
    fig.suptitle("ResNeXt templates: same block FLOPs, different speed", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_layers(results: dict[str, Any], path: Path) -> Path | None:
    rows = _ok_layers(results)
    if not rows:
        return None
    plt = _plt()
    import numpy as np

    from minires.benchmarks.story import MINIRES, ensure_ratios

    ensure_ratios(results)
    names = list(dict.fromkeys(r["name"] for r in rows))
    backends = list(dict.fromkeys(r["backend"] for r in rows))
    by = {(r["name"], r["backend"]): r for r in rows}
    xt = [by[(n, MINIRES)].get("x_torch") if (n, MINIRES) in by else None for n in names]
    panels = 3 if any(xt) else 2
    fig, axes = plt.subplots(panels, 1, figsize=(max(8, 1.1 * len(names)), 4 * panels),
                             sharex=True)  # fmt: skip
    width = 0.8 / len(backends)
    x = np.arange(len(names))
    for k, b in enumerate(backends):
        t = [by[(n, b)]["total_median_ms"] if (n, b) in by else np.nan for n in names]
        g = [by[(n, b)]["gflops_total"] if (n, b) in by else np.nan for n in names]
        axes[0].bar(x + (k - (len(backends) - 1) / 2) * width, t, width, label=b)
        axes[1].bar(x + (k - (len(backends) - 1) / 2) * width, g, width, label=b)
    axes[0].set_ylabel("fwd+bwd time (ms, log)")
    axes[0].set_yscale("log")
    axes[1].set_ylabel("useful GFLOP/s")
    prac = results.get("ceilings", {}).get("practical_gflops")
    if prac:
        axes[1].axhline(prac, color="k", ls="--", lw=1, label=f"sgemm {prac:.0f}")
    if panels == 3:
        vals = [v if v else np.nan for v in xt]
        axes[2].bar(x, vals, 0.6, color=["tab:green" if v > 1 else "tab:red" for v in
                                         np.nan_to_num(vals)])  # fmt: skip
        axes[2].axhline(1.0, color="k", lw=1)
        axes[2].set_ylabel("x torch")
        axes[2].set_title("x torch = best PyTorch layout's time / minires' time "
                          "(> 1: minires faster)", fontsize=9)  # fmt: skip
    axes[-1].set_xticks(x, [n.replace(" (", "\n(") for n in names], rotation=45, ha="right",
                        fontsize=8)  # fmt: skip
    for ax in axes:
        ax.grid(True, axis="y", alpha=0.3)
    axes[0].legend(fontsize=8, ncol=len(backends))
    axes[1].legend(fontsize=8)
    fig.suptitle(f"Per layer, batch {rows[0]['batch']}: forward + backward-input + "
                 "backward-weight", fontsize=11)  # fmt: skip
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_roofline(results: dict[str, Any], path: Path) -> Path | None:
    rows = _ok_layers(results)
    if not rows:
        return None
    plt = _plt()
    import numpy as np

    ceil = results.get("ceilings", {})
    prac, peak, bw = (ceil.get("practical_gflops"),
                      ceil.get("peak_gflops") or ceil.get("theoretical_gflops"),
                      ceil.get("bandwidth_gb_s"))  # fmt: skip
    peak_label = "measured FMA peak" if ceil.get("fma_peak_gflops") == peak else "peak"
    fig, ax = plt.subplots(figsize=(11, 6))
    kinds = list(dict.fromkeys(r["kind"] for r in rows))
    colors = dict(zip(kinds, plt.rcParams["axes.prop_cycle"].by_key()["color"]))
    for r in rows:
        ax.scatter(r["intensity_flop_per_byte"], r["gflops_total"],
                   marker=MARKERS.get(r["backend"], "o"), color=colors[r["kind"]],
                   s=40, alpha=0.85)  # fmt: skip
        if r["backend"] == "numba" or len({x["backend"] for x in rows}) == 1:
            tag = f"C={r['cardinality']}" if r["kind"] == "template" else r["kind"]
            ax.annotate(f"{tag} {r['stage']}" if r["kind"] == "template" else tag,
                        (r["intensity_flop_per_byte"], r["gflops_total"]), fontsize=7,
                        xytext=(4, 2), textcoords="offset points")  # fmt: skip
    ai = np.logspace(
        np.log10(max(0.5, min(r["intensity_flop_per_byte"] for r in rows) / 2)),
        np.log10(max(r["intensity_flop_per_byte"] for r in rows) * 2),
        100,
    )
    if bw:
        roof = bw * ai
        top = max(v for v in (prac, peak) if v) if (prac or peak) else None
        ax.plot(ai, np.minimum(roof, top) if top else roof, "k-", lw=1.2,
                label=f"roof: {bw:.0f} GB/s x intensity, capped by the peak")  # fmt: skip
    if prac:
        ax.axhline(prac, color="k", ls="--", lw=1, label=f"measured sgemm {prac:.0f} GFLOP/s")
    if peak:
        ax.axhline(peak, color="gray", ls=":", lw=1, label=f"{peak_label} {peak:.0f} GFLOP/s")
    for b in dict.fromkeys(r["backend"] for r in rows):
        ax.scatter([], [], marker=MARKERS.get(b, "o"), color="gray", label=f"backend {b}")
    for k in kinds:
        ax.scatter([], [], marker="s", color=colors[k], label=f"layer: {k}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("arithmetic intensity (useful FLOP / compulsory byte of x, w, y)")
    ax.set_ylabel("achieved useful GFLOP/s (fwd+bwd)")
    ax.set_title("Roofline: low-intensity grouped / depthwise convs are memory-bound")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_plots(results: dict[str, Any], out_dir: Path) -> dict[str, Path]:
    """All plots that have data; returns name -> path."""
    out_dir = Path(out_dir)
    made = {}
    for name, fn in (("cardinality", plot_cardinality), ("layers", plot_layers),
                     ("roofline", plot_roofline)):  # fmt: skip
        p = fn(results, out_dir / f"{name}.png")
        if p is not None:
            made[name] = p
    return made
