"""Write a run's results: CSV (one row per measurement), JSON (everything, with the
machine and environment) and a Markdown summary."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

from minires.benchmarks.story import (
    RATIO_RULE,
    TORCH_LAYOUTS,
    blocks_verdict,
    ceilings_verdict,
    coldstart_verdict,
    distributed_verdict,
    ensure_ratios,
    layers_verdict,
    models_verdict,
    noise_note,
    plan_cell,
    verdicts,
)
from minires.benchmarks.story import ms as _ms
from minires.benchmarks.sweep import FORMS, MINIRES

FORM_OF = {name: letter for letter, name in FORMS.items()}
FORM_TITLE = {"c": "(c) one grouped conv", "b": "(b) 32 paths, concatenated",
              "a": "(a) 32 paths, summed"}  # fmt: skip

# CSV columns first in this order; any other keys follow alphabetically
CSV_FIRST = [
    "section", "name", "backend", "status", "reason", "kind", "stage", "cardinality", "c_in",
    "c_out", "groups", "kernel", "batch", "size", "out", "gflop_fwd", "block_gflop_fwd",
    "intensity_flop_per_byte", "reps",
    "fwd_median_ms", "fwd_min_ms", "fwd_max_ms", "bwd_in_median_ms", "bwd_in_min_ms",
    "bwd_in_max_ms", "bwd_w_median_ms", "bwd_w_min_ms", "bwd_w_max_ms", "bwd_median_ms",
    "bwd_min_ms", "bwd_max_ms", "total_median_ms", "total_min_ms", "total_max_ms",
    "gflops_fwd", "gflops_bwd_in", "gflops_bwd_w", "gflops_bwd",
    "gflops_total", "pct_sgemm", "pct_peak", "plan", "time_over_minires", "x_torch",
    "x_torch_layout", "x_reference", "images_per_s",
    "peak_rss_mb", "base_rss_mb", "err_fwd", "err_bwd_in", "err_bwd_w", "err_bwd", "method",
]  # fmt: skip


def _json_default(o: Any) -> Any:
    if hasattr(o, "item"):
        return o.item()
    return str(o)


def write_json(results: dict[str, Any], path: Path) -> None:
    """The whole results dict (machine, env, config, ceilings, rows)."""
    path.write_text(json.dumps(results, indent=1, default=_json_default) + "\n")


def write_csv(rows: list[dict[str, Any]], path: Path) -> None:
    """One line per row; columns = `CSV_FIRST` then any other keys."""
    keys = [k for k in CSV_FIRST if any(k in r for r in rows)]
    keys += sorted({k for r in rows for k in r} - set(keys))
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=keys, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({k: _cell(r.get(k)) for k in keys})


def _cell(v: Any) -> Any:
    if isinstance(v, float):
        return f"{v:.6g}"
    if isinstance(v, (dict, list)):
        return json.dumps(v)
    return "" if v is None else v


def _f(v: Any, fmt: str = ".1f", none: str = "-") -> str:
    if v is None or v == "" or (isinstance(v, float) and not math.isfinite(v)):
        return none
    return format(v, fmt)


def _status_cell(r: dict[str, Any]) -> str | None:
    s = r.get("status")
    if s == "ok":
        return None
    return {"MISMATCH": "**MISMATCH**", "skipped": "skipped", "error": "error"}.get(s, str(s))


def machine_lines(results: dict[str, Any]) -> list[str]:
    """The header describing where and how the run happened."""
    m = results["machine"]
    cpu, v = m["cpu"], m["versions"]
    blas = ""
    workers = results.get("workers", {})
    # NumPy's own BLAS: the NumPy worker loads no other (Numba loads SciPy's OpenBLAS
    # too, where SciPy is installed, and threadpoolctl may list that one first)
    for name in sorted(workers, key=lambda n: n != "numpy"):
        info = workers[name]
        for b in info.get("blas") or []:
            if b.get("user_api") == "blas":
                blas = (
                    f"{b.get('internal_api')} {b.get('version')} ({b.get('architecture')} kernels)"
                )
                break
        if blas:
            break
    cfg = results["config"]
    env = results.get("env_workers", {})
    unset = env.get("openblas_overrides_unset_in_workers") or {}
    peak = m.get("theoretical_peak", {})
    ceil = results.get("ceilings", {})
    lines = [
        f"- **CPU**: {cpu['model']}, {cpu['physical_cores']} physical cores / "
        f"{cpu['logical_cpus']} logical, {_f((cpu.get('clock_mhz') or 0) / 1e3, '.2f')} GHz"
        f"{' (' + cpu['hypervisor'] + ' VM)' if cpu.get('hypervisor') else ''}, "
        f"SIMD: {', '.join(cpu.get('simd') or []) or '?'}",
        f"- **Software**: Python {v.get('python')}, NumPy {v.get('numpy')} ({blas or 'BLAS ?'}), "
        f"Numba {v.get('numba')}, PyTorch {v.get('torch') or 'not installed'}",
        f"- **Threads**: {cfg['threads']} for every pool of every backend "
        "(OMP/OPENBLAS/MKL/NUMBA_NUM_THREADS, torch.set_num_threads); each backend in its "
        "own process, never two busy at once; a layer's repetitions and the block and model "
        "steps in rounds, every backend in turn in each",
        "- **OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE**: "
        + (
            f"unset in the workers (parent had {unset})"
            if unset
            else "not set"
            if cfg["unset_openblas_env"]
            else "kept as in the parent env"
        ),
        f"- **Ceilings**: measured sgemm {_f(ceil.get('practical_gflops'))} GFLOP/s "
        f"({ceil.get('practical_source') or 'not measured'}) = the practical ceiling"
        + "".join(
            f"; {b} sgemm best {_f(s.get('gflops_best'))} / median {_f(s.get('gflops_median'))}"
            for b, s in (ceil.get("sgemm") or {}).items()
        )
        + "; "
        f"FP32 FMA peak measured {_f(ceil.get('fma_peak_gflops'))} GFLOP/s "
        f"({ceil.get('fma_peak_source') or 'not measured'}); "
        f"derived from the nominal clock {_f(peak.get('gflops'))} GFLOP/s "
        f"({peak.get('assumption')}); "
        f"memory bandwidth {_f(ceil.get('bandwidth_gb_s'))} GB/s ({ceil.get('bandwidth_source')})",
    ]
    ld = results.get("load") or {}
    if ld.get("load1_max") is not None:
        warn = "**WARNING**: " if ld.get("busy") else ""
        lines.append(
            f"- **Machine load** (1-min average): start {ld['load1_start']:.1f}, max "
            f"{ld['load1_max']:.1f}, end {ld['load1_end']:.1f} - {warn}{ld['note']}"
        )
    return lines


def layer_table(results: dict[str, Any]) -> list[str]:
    """The headline table: total (fwd + bwd-input + bwd-weight) time per layer and backend,
    the algorithms minires ran (its ``plan``) and the ratios (`story.RATIO_RULE`)."""
    ensure_ratios(results)  # runs before the one convention carried the inverse ratio
    rows = [r for r in results["rows"] if r["section"] == "layer"]
    if not rows:
        return []
    backends = list(dict.fromkeys(r["backend"] for r in rows))
    names = list(dict.fromkeys(r["name"] for r in rows))
    by = {(r["name"], r["backend"]): r for r in rows}
    has_torch = any(b in TORCH_LAYOUTS for b in backends) and MINIRES in backends
    head = ["layer", "groups", "GFLOP fwd", "FLOP/B"]
    for b in backends:
        head += [f"{b} ms", f"{b} GFLOP/s"]
        head += ["% sgemm (% peak)", "plan (fwd / bwd-in / bwd-w)"] if b == MINIRES else ["x"]
    head += ["x torch"] if has_torch else []
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for n in names:
        first = next(by[(n, b)] for b in backends if (n, b) in by)
        cells = [n, str(first["groups"]), _f(first["gflop_fwd"], ".3f"),
                 _f(first["intensity_flop_per_byte"], ".0f")]  # fmt: skip
        for b in backends:
            r = by.get((n, b), {})
            bad = _status_cell(r) if r else "-"
            if bad:
                cells += [bad, "", "", ""] if b == MINIRES else [bad, "", ""]
                continue
            cells += [_ms(r.get("total_median_ms")), _f(r.get("gflops_total"))]
            if b == MINIRES:
                cells.append(f"{_f(r.get('pct_sgemm'), '.0f')}% ({_f(r.get('pct_peak'), '.0f')}%)")
                cells.append(plan_cell(r))
            else:
                cells.append(_f(r.get("time_over_minires"), ".2f") + "x")
        if has_torch:
            cells.append(_f(by.get((n, MINIRES), {}).get("x_torch"), ".2f") + "x")
        out.append("| " + " | ".join(cells) + " |")
    return out


def pass_table(results: dict[str, Any]) -> list[str]:
    """Per-pass medians (and min-max) in ms."""
    rows = [r for r in results["rows"] if r["section"] == "layer" and r.get("status") == "ok"]
    if not rows:
        return []
    out = [
        "| layer | backend | fwd ms | bwd-input ms | bwd-weight ms | bwd (both) ms "
        "| total ms (min-max) | fwd GFLOP/s | bwd-in GFLOP/s | bwd-w GFLOP/s | reps |",
        "|" + "---|" * 11,
    ]
    for r in rows:
        out.append(
            f"| {r['name']} | {r['backend']} | {_ms(r.get('fwd_median_ms'))} | "
            f"{_ms(r.get('bwd_in_median_ms'))} | {_ms(r.get('bwd_w_median_ms'))} | "
            f"{_ms(r.get('bwd_median_ms'))} | "
            f"{_ms(r.get('total_median_ms'))} ({_ms(r.get('total_min_ms'))}-"
            f"{_ms(r.get('total_max_ms'))}) | {_f(r.get('gflops_fwd'))} | "
            f"{_f(r.get('gflops_bwd_in'))} | {_f(r.get('gflops_bwd_w'))} | {r.get('reps')} |"
        )
    return out


def model_table(results: dict[str, Any]) -> list[str]:
    ensure_ratios(results)
    rows = [r for r in results["rows"] if r["section"] in ("blocks", "models")]
    if not rows:
        return []
    out = [
        "| what | backend | pass | batch x input | ms / step (min-max) | images/s "
        "| x = time / minires | peak RSS MB (before) |",
        "|" + "---|" * 8,
    ]
    for r in rows:
        what = {"fwdbwd": "fwd+bwd", "train": "train step", "block": "fwd+bwd"}.get(
            r.get("mode"), r.get("mode")
        )
        bad = _status_cell(r)
        if bad:
            reason = (r.get("reason") or "").splitlines()[0][:90] if r.get("reason") else ""
            out.append(f"| {r['name']} | {r['backend']} | {what} | {r.get('batch')} x "
                       f"{r.get('input')} | {bad}: {reason} | | | |")  # fmt: skip
            continue
        out.append(
            f"| {r['name']} | {r['backend']} | {what} | {r.get('batch')} x {r.get('input')} | "
            f"{_ms(r.get('total_median_ms'))} ({_ms(r.get('total_min_ms'))}-"
            f"{_ms(r.get('total_max_ms'))}) | {_f(r.get('images_per_s'))} | "
            f"{_f(r.get('time_over_minires'), '.2f')}x | {_f(r.get('peak_rss_mb'), '.0f')} "
            f"({_f(r.get('base_rss_mb'), '.0f')}) |"
        )
    return out


def forms_table(results: dict[str, Any]) -> list[str]:
    """ResNeXt's forms (a), (b), (c) of one block: time per step and ops per forward."""
    # skipped rows (the NumPy reference) are listed under "Skipped, failed or mismatched"
    ensure_ratios(results)
    rows = [r for r in results["rows"] if r["section"] == "forms" and r.get("status") != "skipped"]
    if not rows:
        return []
    out = [
        "| form | backend | batch x input | ops / forward | ms / step (min-max) "
        "| x form (c) | x = time / minires | peak RSS MB |",
        "|" + "---|" * 8,
    ]
    order = {"c": 0, "b": 1, "a": 2}
    for r in sorted(rows, key=lambda r: order.get(FORM_OF.get(r["name"], "c"), 3)):
        title = FORM_TITLE.get(FORM_OF.get(r["name"], ""), r["name"])
        bad = _status_cell(r)
        if bad:
            reason = (r.get("reason") or "").splitlines()[0][:90] if r.get("reason") else ""
            out.append(f"| {title} | {r['backend']} | {r.get('batch')} x {r.get('input')} | | "
                       f"{bad}: {reason} | | | |")  # fmt: skip
            continue
        out.append(
            f"| {title} | {r['backend']} | {r.get('batch')} x {r.get('input')} | "
            f"{r.get('graph_ops', '-')} | {_ms(r.get('total_median_ms'))} "
            f"({_ms(r.get('total_min_ms'))}-{_ms(r.get('total_max_ms'))}) | "
            f"{_f(r.get('x_form_c'), '.2f')}x | {_f(r.get('time_over_minires'), '.2f')}x | "
            f"{_f(r.get('peak_rss_mb'), '.0f')} |"
        )
    return out


def forms_verdict(results: dict[str, Any]) -> str:
    """The forms' cost in words, computed from the measured rows ("" without them)."""
    rows = [r for r in results["rows"] if r["section"] == "forms" and r.get("status") == "ok"]
    by = {(FORM_OF.get(r["name"]), r["backend"]): r for r in rows}
    ms = lambda f, b: by[(f, b)]["total_median_ms"] if (f, b) in by else None  # noqa: E731

    def ratio_words(x: float) -> str:
        if x >= 1.5:
            return f"{x:.1f}x slower"
        if x >= 1.1:
            return f"{x:.2f}x, slightly slower"
        if x > 1 / 1.1:
            return f"{x:.2f}x, the same within noise"
        return f"{x:.2f}x, faster"

    parts = []
    for label, backends in (("minires (Numba)", ["numba"]), ("PyTorch", ["torch", "torch_cl"])):
        c_times = [(ms("c", b), b) for b in backends if ms("c", b)]
        if not c_times:
            continue
        cells = []
        for f in ("c", "b", "a"):
            times = [(ms(f, b), b) for b in backends if ms(f, b)]
            if not times:
                continue
            t, b = min(times)
            tc = ms("c", b) or min(c_times)[0]
            extra = "" if f == "c" else f" ({ratio_words(t / tc)})"
            layout = f", {b}" if label == "PyTorch" else ""
            cells.append(f"form {FORM_TITLE[f]}: {_ms(t)} ms{layout}{extra}")
        parts.append(f"{label}: " + "; ".join(cells) + ".")
    if not parts:
        return ""
    anyrow = rows[0]
    n = anyrow.get("batch")
    side = str(anyrow.get("input", "256x56x56")).split("x")
    h, w = int(side[1]), int(side[2])
    ops = {f: by[(f, "numba")].get("graph_ops") for f in "abc" if (f, "numba") in by}
    params = anyrow.get("params")
    partial_mb = 32 * n * 256 * h * w * 4 / 1e6
    why = (
        f"All three forms do the same multiply-adds with the same {params:,} parameters "
        "and compute the same output (each row was checked against form (c)'s NumPy "
        "reference). What differs is how the work is cut up. "
    )
    if ops.get("a") and ops.get("c"):
        why += (
            f"Form (a) records {ops['a']} ops per forward and form (b) {ops.get('b', '?')}, "
            f"against {ops['c']} for form (c): the 32 paths run one after another from a "
            "Python loop, each a 1x1 conv to 4 channels, a 4-channel 3x3 conv (and in form "
            "(a) a 1x1 conv back to 256 channels). A matrix product with 4 rows is too thin "
            "to fill the SIMD lanes or the cores, and every op pays its dispatch, its "
            "allocation and its autograd bookkeeping, forward and backward. "
        )
    why += (
        f"Form (a) also writes 32 full-size 256-channel partial outputs ({partial_mb:.0f} "
        f"MB at batch {n}) and adds them up: 32x the memory traffic of form (c)'s single "
        "conv3. Form (c) does the same arithmetic in one grouped-conv call whose kernel "
        "runs all 32 groups inside one parallel loop - when that kernel is fast."
    )
    # where a library's grouped conv is no faster than its loop of small ops, say so
    for b in ("torch", "torch_cl"):
        ta, tc = ms("a", b), ms("c", b)
        if ta and tc and ta / tc < 1.5:
            why += (
                f" In PyTorch ({b}) form (a) took {ta / tc:.2f}x form (c)'s time: there "
                "the single grouped-conv call is no faster than the 32-path loop, so "
                "splitting costs little - the win of form (c) depends on a grouped kernel "
                "that is actually efficient."
            )
            break
    return " ".join(parts) + " " + why + noise_note(results)


def coldstart_table(results: dict[str, Any]) -> list[str]:
    rows = [r for r in results["rows"] if r["section"] == "coldstart"]
    if not rows:
        return []
    out = [
        "| Numba cache | import s | first conv fwd+bwd s | steady s | "
        "resnet20 first train step s | steady step s |",
        "|" + "---|" * 6,
    ]
    for r in rows:
        if r.get("status") != "ok":
            out.append(f"| {r.get('cache')} | {_status_cell(r)}: {r.get('reason')} | | | | |")
            continue
        layers = r["name"].split("(")[-1].rstrip(")")
        out.append(
            f"| {r['cache']} ({layers}) | {_f(r.get('import_s'), '.2f')} | "
            f"{_f(r.get('first_call_s'), '.2f')} | {_f(r.get('steady_call_s'), '.3f')} | "
            f"{_f(r.get('model_first_step_s'), '.2f')} | "
            f"{_f(r.get('model_steady_step_s'), '.3f')} |"
        )
    return out


def problems(results: dict[str, Any]) -> list[str]:
    """Every non-ok row with its reason."""
    out = []
    for r in results["rows"]:
        if r.get("status") not in ("ok", None):
            reason = (r.get("reason") or "").strip().replace("\n", " / ")
            out.append(f"- {r['section']} / {r['name']} / {r['backend']}: "
                       f"**{r.get('status')}** - {reason[:300]}")  # fmt: skip
    return out


def _verdict(text: str, what: str) -> str:
    """A section's closing paragraph (computed in `benchmarks/story.py`)."""
    return f"**Verdict ({what})**: {text}" if text else ""


def markdown(results: dict[str, Any]) -> str:
    """The Markdown summary of a run."""
    cfg = results["config"]
    lines = [
        f"# minires conv benchmark ({'quick' if cfg['quick'] else 'full'} run, "
        f"{results['started_utc']}, {results['duration_s']:.0f} s)"
        + (" - INTERRUPTED, partial results" if results.get("interrupted") else ""),
        "",
        *machine_lines(results),
        "",
        RATIO_RULE,
        "",
    ]
    if (results.get("ceilings") or {}).get("sgemm"):
        lines += [_verdict(ceilings_verdict(results), "ceilings"), ""]
    lt = layer_table(results)
    if lt:
        lines += [
            f"## Layer sweep: batch {cfg['batch']}, conv2 stage {cfg['size']}x{cfg['size']}, "
            f"conv3 stage {cfg['size'] // 2}x{cfg['size'] // 2}",
            "",
            "Total = forward + backward (both gradients in one call, as a training step asks: "
            "minires' conv2d_backward, torch's convolution_backward with both outputs), median "
            "over repetitions after warm-up; the per-pass table also times the two gradients "
            "apart. GFLOP/s counts useful FLOPs (2 N C_out H_out W_out C_in/groups kH kW per pass,"
            " 3 passes). `x` = that backend's time / minires' time and `x torch` = the best "
            "PyTorch layout's time / minires' time (> 1: minires faster). `% sgemm (% peak)` = "
            "share of the measured sgemm ceiling (and of the peak: the measured FMA peak, else the"
            " derived one). `plan` = the algorithm each of minires' three passes ran. Templates "
            "keep the *block's* FLOPs constant, so the 3x3 conv alone gets cheaper as cardinality "
            "grows. Useful GFLOP/s above the sgemm ceiling means the library did fewer actual "
            "multiplies (e.g. oneDNN's Winograd 3x3). Every row was checked against the NumPy "
            "reference first.",
            "",
            *lt,
            "",
            _verdict(layers_verdict(results), "layers"),
            "",
        ]
    mt = model_table(results)
    if mt:
        lines += ["## Blocks and models", "",
                  "Blocks: conv2-stage bottleneck 256->256 (ResNet-50: 3x3 64 dense; ResNeXt-50: "
                  "3x3 128 in 32 groups), fwd+bwd. Models: train-mode BN, cross-entropy. "
                  "Each row's steps alternate with the other backends' steps, round by round (a "
                  "busy spell of a shared machine hits them alike). Peak RSS is measured "
                  "while timing (fresh process per row).",
                  "", *mt, ""]  # fmt: skip
        sections = {r["section"] for r in results["rows"]}
        if "blocks" in sections:
            lines += [_verdict(blocks_verdict(results), "blocks"), ""]
        if "models" in sections:
            lines += [_verdict(models_verdict(results), "models"), ""]
    ft = forms_table(results)
    if ft:
        lines += ["## ResNeXt's three forms of one block (Fig. 3)", "",
                  "ResNeXt-50's conv2 block (32x4d: 256 -> 128 in 32 groups -> 256, identity "
                  "shortcut), fwd+bwd with train-mode BN, built three ways with the same "
                  "weights (`ResNeXtPaths.from_bottleneck`, `ResNeXtConcat.from_bottleneck`; "
                  "torch twins built the same way). Ops / forward: nodes of the recorded "
                  "graph.", "", *ft, "", _verdict(forms_verdict(results), "forms"), ""]  # fmt: skip
    ct = coldstart_table(results)
    if ct:
        lines += ["## Cold start (first call of the Numba kernels, fresh process)", "", *ct, "",
                  _verdict(coldstart_verdict(results), "cold start"), ""]  # fmt: skip
    from minires.benchmarks.distributed import table as distributed_table

    dt = distributed_table(results)
    if dt:
        lines += ["## Data-parallel training on MPI (resnet20; all-reduce of ResNet-50's "
                  "gradients)", "",
                  "Same two cores either way: 1 rank x 2 threads vs 2 ranks x 1 thread. "
                  "'incl. wait' is the all-reduce call in the step (it also waits for the "
                  "slower rank); 'pure' is the same all-reduce right after a barrier.",
                  "", *dt, "", _verdict(distributed_verdict(results), "MPI"), ""]  # fmt: skip
    pt = pass_table(results)
    if pt:
        lines += ["## Per pass (median ms)", "", *pt, ""]
    workers = results.get("workers", {})
    methods = {b: i.get("method") for b, i in workers.items() if i.get("method")}
    if methods:
        lines += ["## How each backend was timed", ""]
        for b, m in methods.items():
            fallback = workers[b].get("numba_fallback_to_reference")
            if fallback:
                m += f" (these still run the NumPy reference: {', '.join(fallback)})"
            lines.append(f"- `{b}`: {m}")
        lines += [
            "- blocks and models: minires through its Tensor autograd with "
            "`minires.set_backend`; torch through autograd on twin modules "
            "(`benchmarks/torch_models.py`) loaded with the same weights",
            "",
        ]
    pr = problems(results)
    if pr:
        lines += ["## Skipped, failed or mismatched rows", "", *pr, ""]
    return "\n".join(lines)


def write_all(results: dict[str, Any], out_dir: Path) -> dict[str, Path]:
    """results.json, results.csv and summary.md in `out_dir`; returns their paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": out_dir / "results.json", "csv": out_dir / "results.csv",
             "markdown": out_dir / "summary.md"}  # fmt: skip
    results["ratio_convention"] = RATIO_RULE.replace("**", "")
    results["verdicts"] = verdicts(results)
    if results["verdicts"].get("forms"):
        results["forms_verdict"] = results["verdicts"]["forms"]
    write_json(results, paths["json"])
    write_csv(results["rows"], paths["csv"])
    paths["markdown"].write_text(markdown(results) + "\n")
    return paths


def headline_table(results: dict[str, Any]) -> list[str]:
    """A compact table for the README: one cell "ms (GFLOP/s)" per backend, then minires'
    x torch and x reference (`story.RATIO_RULE`)."""
    ensure_ratios(results)  # runs before the one convention carried the inverse ratio
    rows = [r for r in results["rows"] if r["section"] == "layer"]
    if not rows:
        return []
    backends = list(dict.fromkeys(r["backend"] for r in rows))
    by = {(r["name"], r["backend"]): r for r in rows}
    head = [f"layer (batch {rows[0]['batch']})", "FLOP/byte"]
    head += [f"{b} ms (GFLOP/s)" for b in backends] + ["x torch", "x reference"]
    out = ["| " + " | ".join(head) + " |", "|---|---:|" + "---:|" * (len(backends) + 2)]
    for n in dict.fromkeys(r["name"] for r in rows):
        first = next(by[(n, b)] for b in backends if (n, b) in by)
        cells = [n, _f(first["intensity_flop_per_byte"], ".0f")]
        for b in backends:
            r = by.get((n, b), {})
            bad = _status_cell(r) if r else "-"
            cells.append(bad or f"{_ms(r.get('total_median_ms'))} ({_f(r.get('gflops_total'))})")
        mine = by.get((n, MINIRES), {})
        cells += [_f(mine.get("x_torch"), ".2f"), _f(mine.get("x_reference"), ".2f")]
        out.append("| " + " | ".join(cells) + " |")
    return out


def main(argv: list[str] | None = None) -> int:
    """``python -m minires.benchmarks.report results.json [--headline]``: re-render a run."""
    import argparse

    p = argparse.ArgumentParser(
        prog="python -m minires.benchmarks.report", description=main.__doc__
    )
    p.add_argument("results", type=Path, help="a results.json written by a run")
    p.add_argument(
        "--headline",
        action="store_true",
        help="print only the machine lines and the compact README table",
    )
    p.add_argument("--plots", type=Path, help="also (re)draw the PNG plots into this folder")
    args = p.parse_args(argv)
    if not args.results.is_file():
        p.error(f"no such file: {args.results} (give the results.json of a run)")
    results = json.loads(args.results.read_text())
    if args.headline:
        said = verdicts(results)
        print("\n".join([*machine_lines(results), "", RATIO_RULE, "", *headline_table(results),
                         "", *model_table(results), "", *forms_table(results), "",
                         *(f"- {k}: {v}" for k, v in said.items())]))  # fmt: skip
    else:
        print(markdown(results))
    if args.plots:
        from minires.benchmarks.plots import write_plots

        args.plots.mkdir(parents=True, exist_ok=True)
        for path in write_plots(results, args.plots).values():
            print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
