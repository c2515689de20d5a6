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


# =======================================================================================
# Cardinality vs width at preserved complexity (Xie et al. 2017, Table 3)
# =======================================================================================

TABLE3_TEMPLATES = ["1x64d", "2x40d", "4x24d", "8x14d", "32x4d"]

CARDINALITY_DEFAULTS: dict[str, Any] = {
    "templates": TABLE3_TEMPLATES,
    "seeds": [0, 1, 2],
    "depth": 11,
    "base_planes": 32,
    "stem_width": 32,
    "dataset": "digits",
    "epochs": 15,
    "batch_size": 64,
    "lr": 0.1,
    "momentum": 0.9,
    "weight_decay": 5e-4,
    "schedule": "cosine",
    "augment": True,
    "limit": None,
}


def _write_json_atomic(path: Path, obj: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(json.dumps(obj, indent=2) + "\n")
    os.replace(tmp, path)


def _subset(loader: Any, limit: int | None) -> Any:
    """The same loader over the first ``limit`` samples (None: unchanged)."""
    if limit is None or limit >= len(loader.dataset):
        return loader
    from minires.data import DataLoader, TensorDataset

    arrays = [a[:limit] for a in loader.dataset.arrays]
    return DataLoader(TensorDataset(*arrays), loader.batch_size, shuffle=loader.shuffle,
                      seed=loader.seed, transform=loader.transform)  # fmt: skip


def cardinality(
    templates: Sequence[str] = tuple(TABLE3_TEMPLATES),
    seeds: Sequence[int] = (0, 1, 2),
    depth: int = 11,
    base_planes: int = 32,
    stem_width: int = 32,
    dataset: str = "digits",
    epochs: int = 15,
    batch_size: int = 64,
    lr: float = 0.1,
    momentum: float = 0.9,
    weight_decay: float = 5e-4,
    schedule: str = "cosine",
    augment: bool | None = True,
    limit: int | None = None,
    out_dir: str | os.PathLike | None = "runs/cardinality",
    data_root: str | os.PathLike | None = None,
    progress: bool = True,
    plot: bool = True,
    log: Any = None,
) -> dict[str, Any]:
    """Train one CIFAR-style ResNeXt per template and seed; compare their errors.

    The templates of ResNeXt Table 3 (1x64d, 2x40d, 4x24d, 8x14d, 32x4d) trade
    cardinality C against bottleneck width d at (nearly) the same FLOPs. Here each is
    `minires.models.cifar_resnext` (depth 9n + 2, stage-1 planes ``base_planes``, so the
    3x3 widths are ``base_planes * C * d / 64`` at stage 1 and double per stage). The
    default (depth 11: one bottleneck per stage, base_planes 32) halves every width of
    ResNeXt-50's conv2..conv4 stages: 3x3 widths 32/40/48/56/64 at stage 1 for C = 1, 2,
    4, 8, 32, on the 8x8 digits. Every run uses the same recipe (SGD with momentum,
    cosine schedule) and the seed sets initialisation and data order.

    ``limit`` trains on the first ``limit`` training samples (for quick tests). A finished
    run recorded in ``out_dir/cardinality.json`` with the same settings is reused, so an
    interrupted experiment continues where it stopped.

    Returns:
        dict with ``settings``, ``templates`` (per template: C, d, widths, params,
        mult-adds, errors per seed, mean and spread), ``runs`` and ``findings`` (does the
        error change with cardinality by more than the seed-to-seed spread?).

    Raises:
        ValueError: a template that is not "CxDd" or whose width does not divide at
            ``base_planes``, or a depth that is not 9n + 2.
    """
    import minires as mr
    from minires import data, training
    from minires.models import cifar_resnext, parse_template, template_width

    log = log or (lambda s: print(s, file=sys.stderr))
    templates = [str(t) for t in templates]
    if not templates or not seeds:
        raise ValueError("cardinality: need at least one template and one seed")
    if len(set(templates)) != len(templates):
        raise ValueError(f"cardinality: templates repeat: {templates}")
    for t in templates:
        template_width(t, base_planes)  # ValueError naming the template
    if depth < 11 or (depth - 2) % 9:
        raise ValueError(f"cardinality: depth must be 9n + 2 (11, 20, 29, ...), got {depth}")
    if limit is not None and limit < 1:
        raise ValueError(f"cardinality: limit must be >= 1, got {limit}")
    seeds = [int(s) for s in seeds]
    settings = dict(
        templates=templates, seeds=seeds, depth=depth, base_planes=base_planes,
        stem_width=stem_width, dataset=dataset, epochs=epochs, batch_size=batch_size, lr=lr,
        momentum=momentum, weight_decay=weight_decay, schedule=schedule, augment=augment,
        limit=limit, optimizer="sgd",
    )  # fmt: skip
    out = Path(out_dir) if out_dir is not None else None
    json_path = out / "cardinality.json" if out is not None else None
    previous: dict[str, Any] = {}
    if json_path is not None and json_path.exists():
        try:
            old = json.loads(json_path.read_text())
            if {k: old.get("settings", {}).get(k) for k in settings if k not in
                    ("templates", "seeds")} == {k: v for k, v in settings.items() if k not in
                    ("templates", "seeds")}:  # fmt: skip
                previous = old.get("runs", {})
        except (OSError, ValueError):
            previous = {}

    train_loader, test_loader, info = data.make_loaders(
        dataset, batch_size=batch_size, seed=0, augment=augment, root=data_root
    )
    shape = (info.in_channels, info.image_size, info.image_size)
    per_template: dict[str, Any] = {}
    for t in templates:
        c, d = parse_template(t)
        with mr.models.no_init():
            m = cifar_resnext(depth, t, base_planes, stem_width, info.num_classes,
                              info.in_channels)  # fmt: skip
        s = mr.summary(m, shape)
        w1 = template_width(t, base_planes) * c
        per_template[t] = {
            "cardinality": c, "d": d, "width_per_group_stage1": w1 // c,
            "widths_3x3": [w1, 2 * w1, 4 * w1], "params": int(s.total_params),
            "mult_adds": int(s.total_macs), "errors": {}, "train_errors": {},
        }  # fmt: skip
    macs = [v["mult_adds"] for v in per_template.values()]
    log(f"cardinality: {len(templates)} templates x {len(seeds)} seeds, depth {depth}, "
        f"base planes {base_planes}, {dataset}, {epochs} epochs; mult-adds per image "
        f"{min(macs):,}-{max(macs):,}")  # fmt: skip

    runs: dict[str, Any] = {}
    interrupted = False
    t_start = time.perf_counter()

    def result_dict() -> dict[str, Any]:
        return {
            "experiment": "cardinality vs width at preserved complexity (Xie et al. 2017, "
            "Table 3), scaled down",
            "settings": settings,
            "dataset": info.to_dict() | {"classes": None},
            "machine": {
                "python": platform.python_version(),
                "platform": platform.platform(),
                "backend": mr.get_backend(),
            },  # fmt: skip
            "interrupted": interrupted,
            "seconds": round(time.perf_counter() - t_start, 1),
            "templates": per_template,
            "runs": runs,
        }

    for t in templates:
        for seed in seeds:
            key = f"{t}/seed{seed}"
            if key in previous and previous[key].get("finished"):
                runs[key] = previous[key]
                log(f"{key}: already trained, reusing its result")
                continue
            mr.manual_seed(seed)
            tr, te, _ = data.make_loaders(dataset, batch_size=batch_size, seed=seed,
                                          augment=augment, root=data_root)  # fmt: skip
            tr = _subset(tr, limit)
            te = _subset(te, limit)
            model = cifar_resnext(depth, t, base_planes, stem_width, info.num_classes,
                                  info.in_channels)  # fmt: skip
            opt = training.build_optimizer(model, "sgd", lr, momentum, weight_decay)
            sched = training.build_scheduler(opt, schedule, epochs=epochs)
            t0 = time.perf_counter()
            history = training.train(model, tr, te, epochs, opt, sched, progress=progress,
                                     verbose=False, plot=False, log=log)  # fmt: skip
            if history.interrupted:
                interrupted = True
                break
            last = history.last
            runs[key] = {
                "template": t, "seed": seed, "finished": True,
                "test_error": last.get("test_error"), "train_error": last.get("train_error"),
                "seconds": round(time.perf_counter() - t0, 1),
                "history": history.rows,
            }  # fmt: skip
            log(f"{key}: test error {100 * last['test_error']:.2f}%, train error "
                f"{100 * last['train_error']:.2f}% ({runs[key]['seconds']} s)")  # fmt: skip
            if json_path is not None:
                out.mkdir(parents=True, exist_ok=True)
                _write_json_atomic(json_path, result_dict())
        if interrupted:
            break

    for r in runs.values():
        per_template[r["template"]]["errors"][str(r["seed"])] = r["test_error"]
        per_template[r["template"]]["train_errors"][str(r["seed"])] = r["train_error"]
    for v in per_template.values():
        e = np.array(list(v["errors"].values()), dtype=float)
        v["mean_error"] = float(e.mean()) if e.size else None
        v["std_error"] = float(e.std(ddof=1)) if e.size > 1 else None
        v["min_error"] = float(e.min()) if e.size else None
        v["max_error"] = float(e.max()) if e.size else None
        tr_e = np.array(list(v["train_errors"].values()), dtype=float)
        v["mean_train_error"] = float(tr_e.mean()) if tr_e.size else None
    result = result_dict()
    if not interrupted:
        result["findings"] = cardinality_findings(per_template)
        log(result["findings"]["summary"])
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        _write_json_atomic(json_path, result)
        if plot and not interrupted:
            try:
                plot_cardinality(result, out / "cardinality.png")
            except ImportError as exc:
                log(f"note: {exc}; cardinality.png not written")
    return result


def cardinality_findings(per_template: dict[str, Any]) -> dict[str, Any]:
    """Is there a trend of the test error with cardinality larger than the seed spread?

    Two checks, both needed: the least-squares slope of the error against log2(C) over
    every run is more than two standard errors from zero, and the range of the template
    means exceeds twice the pooled seed-to-seed standard deviation.
    """
    xs, ys, variances = [], [], []
    for v in per_template.values():
        for e in v["errors"].values():
            xs.append(np.log2(v["cardinality"]))
            ys.append(e)
        if v.get("std_error") is not None:
            variances.append(v["std_error"] ** 2)
    x, y = np.asarray(xs, float), np.asarray(ys, float)
    means = {t: v["mean_error"] for t, v in per_template.items() if v["mean_error"] is not None}
    pooled = float(np.sqrt(np.mean(variances))) if variances else None
    slope = se = None
    if len(set(xs)) > 1 and len(xs) > 2:
        a = np.vstack([x - x.mean(), np.ones_like(x)]).T
        coef, res, *_ = np.linalg.lstsq(a, y, rcond=None)
        slope = float(coef[0])
        resid = y - a @ coef
        se = float(np.sqrt(resid @ resid / (len(y) - 2) / ((x - x.mean()) ** 2).sum()))
    spread_range = float(max(means.values()) - min(means.values())) if means else None
    slope_sig = slope is not None and se is not None and abs(slope) > 2 * se
    range_big = pooled is not None and spread_range is not None and spread_range > 2 * pooled
    larger = bool(slope_sig and range_big)
    best = min(means, key=means.get) if means else None
    pct = lambda v: f"{100 * v:.2f}%"  # noqa: E731
    if slope is None:
        summary = "not enough runs to estimate a trend"
    else:
        direction = "falls" if slope < 0 else "rises"
        summary = (
            f"test error {direction} by {100 * abs(slope):.2f} points per doubling of "
            f"cardinality (slope {100 * slope:+.2f} +- {200 * se:.2f} at 2 s.e.); template "
            f"means span {pct(spread_range)} against a seed-to-seed spread (pooled s.d.) of "
            + (pct(pooled) if pooled is not None else "? (one seed)")
            + ": "
            + ("the trend IS larger than the seed spread"
               + (" and goes the paper's way (more paths, lower error)." if slope < 0
                  else ", but it goes against the paper (higher error with more paths).")
               if larger else
               "no trend larger than the seed-to-seed spread at this scale.")
            + f" Best mean: {best} ({pct(means[best])})."
        )  # fmt: skip
    return {
        "metric": "final test error",
        "slope_per_doubling": slope,
        "slope_se": se,
        "range_of_means": spread_range,
        "pooled_seed_sd": pooled,
        "slope_significant": bool(slope_sig),
        "range_larger_than_2sd": bool(range_big),
        "trend_larger_than_seed_spread": larger,
        "paper_direction": bool(slope is not None and slope < 0),
        "best_template": best,
        "summary": summary,
    }


def plot_cardinality(result: dict[str, Any], path: str | os.PathLike | None = None) -> Any:
    """Test error per template: every seed as a dot, mean +- s.d. as a bar; the
    templates' mult-adds in the labels. Returns the Figure."""
    from minires.training import _pyplot

    plt = _pyplot()
    per = result["templates"]
    names = list(per)
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    for i, t in enumerate(names):
        v = per[t]
        errs = [100 * e for e in v["errors"].values()]
        ax.scatter([i] * len(errs), errs, color="#3182bd", s=18, zorder=3,
                   label="one seed" if i == 0 else None)  # fmt: skip
        if v.get("mean_error") is not None:
            sd = 100 * (v.get("std_error") or 0.0)
            ax.errorbar(i + 0.12, 100 * v["mean_error"], yerr=sd, fmt="o", color="#e6550d",
                        capsize=4, label="mean +- s.d." if i == 0 else None)  # fmt: skip
    ax.set_xticks(range(len(names)))
    labels = [f"{t}\n{per[t]['mult_adds'] / 1e6:.2f}M MACs\n{per[t]['params'] / 1e3:.0f}k params"
              for t in names]  # fmt: skip
    ax.set_xticklabels(labels, fontsize=8)
    ax.set_ylabel("final test error (%)")
    s = result["settings"]
    title = (f"Cardinality vs width (ResNeXt Table 3) on {s['dataset']}: depth {s['depth']}, "
             f"{s['epochs']} epochs, seeds {s['seeds']}")  # fmt: skip
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=120)
        plt.close(fig)
    return fig
