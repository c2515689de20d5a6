"""Paper experiments, small enough for a CPU.

`degradation`: He et al. (2016), Fig. 6 — train plain and residual CIFAR-style nets at
two depths with one recipe and compare their *training* error. The "degradation
problem": the deeper plain net trains worse than the shallower one (an optimisation
difficulty, not overfitting — it is the training error that is higher), while the deeper
residual net trains at least as well as the shallower one.

``family="preact"`` runs the same comparison on pre-activation ResNets (He et al. 2016b,
"Identity Mappings"), whose claim is that with a clean identity path the deeper net
trains at least as well as the shallower one.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

DEGRADATION_DEFAULTS: dict[str, Any] = {
    "depths": [8, 20],
    "dataset": "digits",
    "epochs": 12,
    "batch_size": 64,
    "lr": 0.1,
    "momentum": 0.9,
    "weight_decay": 1e-4,
    "schedule": "multistep",
    "warmup": 0,
    "augment": True,
    "seed": 0,
    "family": "resnet",
}

# family -> the kinds of net it trains at every depth
FAMILIES: dict[str, tuple[str, ...]] = {"resnet": ("plain", "resnet"), "preact": ("preact",)}


def _run_name(kind: str, depth: int) -> str:
    return f"{kind}{depth}"


def degradation(
    depths: Sequence[int] = (8, 20),
    dataset: str = "digits",
    epochs: int = 12,
    batch_size: int = 64,
    lr: float = 0.1,
    momentum: float = 0.9,
    weight_decay: float = 1e-4,
    schedule: str = "multistep",
    warmup: int = 0,
    augment: bool | None = True,
    seed: int = 0,
    out_dir: str | os.PathLike | None = "runs/degradation",
    data_root: str | os.PathLike | None = None,
    progress: bool = True,
    plot: bool = True,
    log: Any = None,
    family: str = "resnet",
) -> dict[str, Any]:
    """Train ``plain{d}`` and ``resnet{d}`` (CIFAR-style, depth 6n+2) for each depth d
    with the same recipe, seed, data order and initialisation scheme; with
    ``family="preact"``, the pre-activation nets ``preact{d}`` (basic units) instead.

    Each run lives in ``out_dir/<name>/`` (checkpoint, metrics); a run already finished
    there is reused, an interrupted one resumed — so a long experiment can be stopped
    with Ctrl-C and restarted. ``out_dir/degradation.json`` records the settings and
    results and ``out_dir/degradation.png`` plots training error (bold) and test error
    (dashed) per epoch, plain nets left, residual nets right (one panel for preact).

    The default recipe is He et al.'s (SGD 0.1, momentum 0.9, weight decay 1e-4, lr / 10
    at 50% and 75% of the epochs) with random-crop augmentation (pad 1 on the 8x8
    digits), which keeps the training error away from 0 long enough to compare curves.

    Returns:
        dict with ``settings``, ``runs`` (name -> {"depth", "residual", "history",
        "final_train_error", ...}) and ``findings`` (the comparisons as booleans and a
        sentence: ``reproduces_fig6`` for the resnet family, ``reproduces_he2016b`` for
        preact). ``interrupted`` is True if Ctrl-C stopped a run.
    """
    import minires as mr
    from minires import data, training
    from minires.distributed import get_comm
    from minires.models import cifar_resnet, preact_resnet

    if family not in FAMILIES:
        raise ValueError(
            f"degradation: family must be one of {', '.join(map(repr, FAMILIES))}, got {family!r}"
        )
    log = log or (lambda s: print(s, file=sys.stderr))
    comm = get_comm()  # under mpiexec: rank 0 decides, logs and writes; all ranks train
    if not comm.is_root:
        log = training._silent
    depths = sorted(int(d) for d in depths)
    if len(depths) < 2:
        raise ValueError(f"degradation: need at least two depths, got {depths}")
    for d in depths:
        if d < 8 or (d - 2) % 6:
            raise ValueError(
                f"degradation: depths must be 6n+2 (8, 14, 20, 32, 44, 56...), got {d}"
            )
    settings = dict(
        depths=depths, dataset=dataset, epochs=epochs, batch_size=batch_size, lr=lr,
        momentum=momentum, weight_decay=weight_decay, schedule=schedule, warmup=warmup,
        augment=augment, seed=seed, optimizer="sgd", backend=mr.get_backend(), family=family,
    )  # fmt: skip
    out = Path(out_dir) if out_dir is not None else None
    runs: dict[str, Any] = {}
    interrupted = False
    t_start = time.perf_counter()
    for kind in FAMILIES[family]:
        residual = kind != "plain"
        for depth in depths:
            name = _run_name(kind, depth)
            run_dir = out / name if out is not None else None
            done = comm.bcast_object(_finished(run_dir, settings) if comm.is_root else None)
            if done is not None:
                log(f"{name}: already trained in {run_dir}, reusing its metrics")
                history = training.History(done["history"])
                seconds = done.get("seconds")
            else:
                mr.manual_seed(seed)
                train_loader, test_loader, info = data.make_loaders(
                    dataset, batch_size=batch_size, seed=seed, augment=augment, root=data_root
                )
                if kind == "preact":
                    model = preact_resnet(
                        depth, info.num_classes, info.in_channels, bottleneck=False
                    )
                else:
                    model = cifar_resnet(
                        depth, num_classes=info.num_classes, in_channels=info.in_channels,
                        plain=not residual,
                    )  # fmt: skip
                opt = training.build_optimizer(model, "sgd", lr, momentum, weight_decay)
                sched = training.build_scheduler(opt, schedule, epochs=epochs, warmup=warmup)
                resume = comm.bcast_object(
                    run_dir / "checkpoint.npz"
                    if comm.is_root
                    and run_dir is not None
                    and (run_dir / "checkpoint.npz").exists()
                    and _same_settings(run_dir, settings)
                    else None
                )
                log(f"{name}: training {sum(p.data.size for p in model.parameters()):,} "
                    f"parameters for {epochs} epochs")  # fmt: skip
                t0 = time.perf_counter()
                history = training.train(
                    model, train_loader, test_loader, epochs, opt, sched, out_dir=run_dir,
                    resume=resume, progress=progress, verbose=True, plot=False,
                    config={**settings, "run": name, "title": name},
                )  # fmt: skip
                seconds = round(time.perf_counter() - t0, 1)
                if history.interrupted:
                    interrupted = True
            runs[name] = {
                "depth": depth,
                "kind": kind,
                "residual": residual,
                "final_train_error": history.last.get("train_error"),
                "final_test_error": history.last.get("test_error"),
                "min_train_error": min(history["train_error"]) if len(history) else None,
                "mean_train_error": (
                    float(np.mean(history["train_error"])) if len(history) else None
                ),
                "mean_train_error_last3": (
                    float(np.mean(history["train_error"][-3:])) if len(history) else None
                ),
                "seconds": seconds,
                "history": history.rows,
            }
            if interrupted:
                break
        if interrupted:
            break

    result: dict[str, Any] = {
        "experiment": "degradation (He et al. 2016, Fig. 6)"
        if family == "resnet"
        else "depth in pre-activation ResNets (He et al. 2016b, Identity Mappings)",
        "settings": settings,
        "machine": {"python": platform.python_version(), "platform": platform.platform()},
        "interrupted": interrupted,
        "seconds": round(time.perf_counter() - t_start, 1),
        "runs": runs,
    }
    if not interrupted:  # the caller prints findings["summary"] (the CLI does, once)
        result["findings"] = (_findings if family == "resnet" else _findings_preact)(runs, depths)
    if out is not None and comm.is_root:
        out.mkdir(parents=True, exist_ok=True)
        (out / "degradation.json").write_text(json.dumps(result, indent=2) + "\n")
        if plot and not interrupted:
            try:
                plot_degradation(result, out / "degradation.png")
            except ImportError as exc:
                log(f"note: {exc}; degradation.png not written")
    return result


def _same_settings(run_dir: Path, settings: dict[str, Any]) -> bool:
    try:
        cfg = json.loads((run_dir / "metrics.json").read_text()).get("config", {})
    except (OSError, ValueError):
        return False
    # runs recorded before families existed are resnet-family runs
    return all(
        cfg.get(k, "resnet" if k == "family" else None) == v
        for k, v in settings.items()
        if k != "backend"
    )


def _finished(run_dir: Path | None, settings: dict[str, Any]) -> dict[str, Any] | None:
    """The metrics of a finished run with the same settings in run_dir, else None."""
    if run_dir is None or not _same_settings(run_dir, settings):
        return None
    m = json.loads((run_dir / "metrics.json").read_text())
    if m.get("interrupted") or len(m.get("history", [])) != settings["epochs"]:
        return None
    m["seconds"] = round(sum(r.get("seconds") or 0 for r in m["history"]), 1)
    return m


def _findings(runs: dict[str, Any], depths: list[int]) -> dict[str, Any]:
    """Compare shallowest vs deepest by the training error averaged over all epochs (the
    area under the Fig. 6 curve: how well and how fast the net fits its training set)."""
    lo, hi = depths[0], depths[-1]
    key = "mean_train_error"
    p_lo, p_hi = runs[f"plain{lo}"][key], runs[f"plain{hi}"][key]
    r_lo, r_hi = runs[f"resnet{lo}"][key], runs[f"resnet{hi}"][key]
    plain_degrades = p_hi > p_lo
    residual_ok = r_hi <= r_lo + 0.005  # within half a percentage point
    pct = lambda v: f"{100 * v:.2f}%"  # noqa: E731
    summary = (
        f"mean training error over {len(runs[f'plain{lo}']['history'])} epochs: "
        f"plain{lo} {pct(p_lo)} vs plain{hi} {pct(p_hi)} -> "
        + (
            "the deeper plain net trains worse (degradation); "
            if plain_degrades
            else "no degradation of the plain net at these settings; "
        )
        + f"resnet{lo} {pct(r_lo)} vs resnet{hi} {pct(r_hi)} -> "
        + (
            "the deeper residual net does not."
            if residual_ok
            else f"the deeper residual net is also slower, by {pct(r_hi - r_lo)} "
            f"(plain: {pct(p_hi - p_lo)})."
        )
    )
    return {
        "metric": key,
        "plain_deeper_trains_worse": bool(plain_degrades),
        "residual_deeper_not_worse": bool(residual_ok),
        "plain_depth_penalty": p_hi - p_lo,
        "residual_depth_penalty": r_hi - r_lo,
        "deeper_resnet_beats_deeper_plain": bool(r_hi < p_hi),
        "reproduces_fig6": bool(plain_degrades and residual_ok),
        "summary": summary,
    }


def _findings_preact(runs: dict[str, Any], depths: list[int]) -> dict[str, Any]:
    """He et al. (2016b): does the deeper pre-activation net train at least as well as the
    shallower one? Same metric and half-point tolerance as `_findings`; the final-epoch
    training errors are reported beside it."""
    lo, hi = depths[0], depths[-1]
    key = "mean_train_error"
    a_lo, a_hi = runs[f"preact{lo}"][key], runs[f"preact{hi}"][key]
    f_lo, f_hi = runs[f"preact{lo}"]["final_train_error"], runs[f"preact{hi}"]["final_train_error"]
    ok = a_hi <= a_lo + 0.005  # within half a percentage point
    pct = lambda v: f"{100 * v:.2f}%"  # noqa: E731
    summary = (
        f"mean training error over {len(runs[f'preact{lo}']['history'])} epochs: "
        f"preact{lo} {pct(a_lo)} vs preact{hi} {pct(a_hi)} (final epoch {pct(f_lo)} vs "
        f"{pct(f_hi)}) -> "
        + (
            "the deeper pre-activation net trains at least as well: He et al. 2016b's claim "
            "holds at these settings."
            if ok
            else f"the deeper pre-activation net trains worse, by {pct(a_hi - a_lo)}: He et al. "
            "2016b's claim is not reproduced at these settings."
        )
    )
    return {
        "metric": key,
        "preact_deeper_not_worse": bool(ok),
        "preact_depth_penalty": a_hi - a_lo,
        "final_train_error_deeper_not_worse": bool(f_hi <= f_lo + 0.005),
        "reproduces_he2016b": bool(ok),
        "summary": summary,
    }


def plot_degradation(result: dict[str, Any], path: str | os.PathLike | None = None) -> Any:
    """He et al. Fig. 6 layout: plain nets (left) and residual nets (right) - one panel
    for the pre-activation family; training error bold, test error dashed, one colour per
    depth. Returns the Figure."""
    from minires.training import History, _pyplot

    plt = _pyplot()
    family = result["settings"].get("family", "resnet")
    kinds = FAMILIES[family]
    fig, axes = plt.subplots(1, len(kinds), figsize=(max(7.0, 5.5 * len(kinds)), 4.4),
                             sharey=True, squeeze=False)  # fmt: skip
    axes = list(axes[0])
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    depths = result["settings"]["depths"]
    titles = {"plain": "plain networks", "resnet": "residual networks",
              "preact": "pre-activation residual networks"}  # fmt: skip
    for ax, kind in zip(axes, kinds):
        for c, depth in zip(colors, depths):
            run = result["runs"].get(_run_name(kind, depth))
            if run is None:
                continue
            h = History(run["history"])
            ax.plot(h["epoch"], [100 * v for v in h["train_error"]], lw=2.2, color=c,
                    label=f"{kind}-{depth} train")  # fmt: skip
            if all(v is not None for v in h["test_error"]):
                ax.plot(h["epoch"], [100 * v for v in h["test_error"]], lw=1, ls="--", color=c,
                        label=f"{kind}-{depth} test")  # fmt: skip
        ax.set(xlabel="epoch", title=titles[kind])
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    axes[0].set_ylabel("error (%) — bold: training, dashed: test")
    for ax in axes:  # linear near 0, logarithmic above 1%: the first epochs and the tails
        ax.set_yscale("symlog", linthresh=1.0, linscale=0.6)
        ax.set_ylim(bottom=0)
        ax.set_yticks([0, 0.5, 1, 2, 5, 10, 20, 50, 100])
        ax.set_yticklabels(["0", "0.5", "1", "2", "5", "10", "20", "50", "100"])
        ax.xaxis.set_major_locator(plt.MaxNLocator(integer=True))
    s = result["settings"]
    what = "Degradation (He et al. Fig. 6)" if family == "resnet" else "Depth (He et al. 2016b)"
    sep = ": " if len(kinds) > 1 else "\n"  # one panel: too narrow for one line
    fig.suptitle(f"{what} on {s['dataset']}{sep}{s['epochs']} epochs, "
                 f"SGD lr {s['lr']}, {s['schedule']}")  # fmt: skip
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=120)
        plt.close(fig)
    return fig
