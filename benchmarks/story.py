"""What a run says, in words computed from its rows: one verdict per section of the
summary, the ratio convention, and the conv story the demo tells.

Every number in a verdict comes from the rows of that run (``results["rows"]``, the
ceilings and the load summary); a comparison whose rows are missing says "not measured",
and a run on a busy machine says its timings are noisy. Nothing here is fixed prose about
performance.

The one ratio convention (README, summary.md, results.json, the demo)::

    x torch   = best PyTorch layout's time (NCHW or channels_last) / minires' time
    x <other> = that backend's time / minires' time          (> 1: minires is faster)

results.json holds it as ``time_over_minires`` on every timed row and ``x_torch``,
``x_torch_layout``, ``x_reference`` on minires' own rows.
"""

from __future__ import annotations

from typing import Any

MINIRES = "numba"  # the backend every ratio is relative to
TORCH_LAYOUTS = ("torch", "torch_cl")
REFERENCE = "numpy"
RATIO_SECTIONS = ("layer", "blocks", "forms", "models")  # the sections with ratios
RATIO_RULE = (
    '**Ratios**: "x torch" = the best PyTorch layout\'s time (NCHW or channels_last) / '
    "minires' (Numba) time; \"x\" next to any other backend = that backend's time / "
    "minires' time. Both: > 1 means minires is faster."
)


# --------------------------------------------------------------------------- helpers


def ensure_ratios(results: dict[str, Any]) -> None:
    """Add the ratio fields (`add_ratios`) to results that lack them: runs written before
    the one convention carried the inverse ``speedup_vs_minires`` instead."""
    rows = results.get("rows", [])
    if any(
        r.get("section") in RATIO_SECTIONS
        and r.get("status") == "ok"
        and r.get("total_median_ms")
        and "time_over_minires" not in r
        for r in rows
    ):
        add_ratios(rows, RATIO_SECTIONS)  # fmt: skip


def ok_rows(results: dict[str, Any], section: str) -> list[dict[str, Any]]:
    """The timed rows of one section."""
    ensure_ratios(results)
    return [r for r in results.get("rows", []) if r.get("section") == section
            and r.get("status") == "ok" and r.get("total_median_ms")]  # fmt: skip


def ms(v: float | None) -> str:
    """A time in ms with 3 significant digits or so (same as the tables)."""
    if v is None:
        return "-"
    return f"{v:.2f}" if v < 10 else f"{v:.1f}" if v < 1000 else f"{v:.0f}"


def x(v: float | None) -> str:
    """A ratio as printed everywhere: ``2.84x``."""
    return "-" if v is None else f"{v:.2f}x"


def noise_note(results: dict[str, Any]) -> str:
    """A sentence when the load monitor flagged the run as busy, else ""."""
    ld = results.get("load") or {}
    if not ld.get("busy"):
        return ""
    peak = ld.get("load1_max")
    where = f" (1-min load average up to {peak:.1f} on {ld.get('cores')} cores)" if peak else ""
    return f" Measured on a busy machine{where}: these timings are noisy."


def best_torch(by: dict[tuple[str, str], dict[str, Any]], name: str
               ) -> tuple[float, str] | None:  # fmt: skip
    """(time, layout) of PyTorch's faster layout for row `name`, None if not measured."""
    times = [(by[(name, b)]["total_median_ms"], b) for b in TORCH_LAYOUTS if (name, b) in by]
    return min(times) if times else None


def add_ratios(rows: list[dict[str, Any]], sections: tuple[str, ...]) -> None:
    """Write the ratio convention into the rows, in place: ``time_over_minires`` on every
    timed row (this row's time / minires' time of the same name), and on minires' rows
    ``x_torch`` (best PyTorch layout / minires), ``x_torch_layout`` and ``x_reference``
    (the NumPy reference / minires). > 1: minires is faster."""
    timed = [r for r in rows if r.get("section") in sections and r.get("status") == "ok"
             and r.get("total_median_ms")]  # fmt: skip
    by = {(r["section"], r["name"], r["backend"]): r for r in timed}
    for r in timed:
        mine = by.get((r["section"], r["name"], MINIRES))
        r["time_over_minires"] = r["total_median_ms"] / mine["total_median_ms"] if mine else None
        if r["backend"] != MINIRES:
            continue
        torch = [(by[(r["section"], r["name"], b)]["total_median_ms"], b) for b in TORCH_LAYOUTS
                 if (r["section"], r["name"], b) in by]  # fmt: skip
        t_torch, layout = min(torch) if torch else (None, None)
        r["x_torch"] = t_torch / r["total_median_ms"] if t_torch else None
        r["x_torch_layout"] = layout
        ref = by.get((r["section"], r["name"], REFERENCE))
        r["x_reference"] = ref["total_median_ms"] / r["total_median_ms"] if ref else None


def plan_cell(r: dict[str, Any]) -> str:
    """The algorithms a minires conv row ran, "forward / backward-input / backward-weight"
    (``-`` when the row carries no plan), and whether its backward computed both
    gradients in one sweep over grad_out (`kernels.jit.onesweep`)."""
    plan = r.get("plan")
    if not isinstance(plan, dict) or not plan:
        return "-"
    cell = " / ".join(str(plan.get(k) or "?") for k in ("forward", "backward_input",
                                                         "backward_weight"))  # fmt: skip
    return cell + (" (backward: one sweep)" if plan.get("backward") == "one sweep" else "")


def _plan(r: dict[str, Any]) -> str:
    """ ", plan tapconv / tapconv / lane_wgrad" when the row names its algorithms."""
    cell = plan_cell(r)
    return "" if cell == "-" else f", plan {cell}"


def _ratio_words(a: float, b: float, what: str = "time") -> str:
    """`a` against `b` in words: "3.1x less time" / "1.4x more time"."""
    if a <= b:
        return f"{b / a:.1f}x less {what}" if b / a >= 1.05 else f"the same {what} within 5%"
    return f"{a / b:.1f}x more {what}"


# --------------------------------------------------------------------------- verdicts


def ceilings_verdict(results: dict[str, Any]) -> str:
    """The practical ceiling against the peak (measured FMA peak, else derived), how the
    derived peak compares with the measured one, and the roofline's ridge point."""
    ceil = results.get("ceilings") or {}
    prac, theo, bw = (ceil.get("practical_gflops"), ceil.get("theoretical_gflops"),
                      ceil.get("bandwidth_gb_s"))  # fmt: skip
    fma = ceil.get("fma_peak_gflops")
    if not prac:
        return "Ceilings: sgemm not measured, so no share of the ceiling is reported."
    s = f"The best measured sgemm, {prac:.0f} GFLOP/s, is the practical ceiling"
    if fma:
        s += f" ({100 * prac / fma:.0f}% of the {fma:.0f} GFLOP/s FMA peak measured here)."
        if theo and not 0.9 <= fma / theo <= 1.1:
            clock = (results.get("machine") or {}).get("cpu", {}).get("clock_mhz")
            at = f" at the nominal {clock / 1e3:.2f} GHz" if clock else ""
            why = (f"the cores ran at about {clock / 1e3 * fma / theo:.1f} GHz (turbo)"
                   if clock and fma > theo else
                   "down-clocking or a narrower FMA datapath than assumed")  # fmt: skip
            s += f" The peak derived from the core's FMA units{at}, {theo:.0f}, is off: {why}."
    elif theo:
        s += f" ({100 * prac / theo:.0f}% of the {theo:.0f} GFLOP/s theoretical peak)."
    else:
        s += " (peak unknown for this CPU)."
    if bw:
        s += (f" At the measured {bw:.1f} GB/s the roofline's ridge point is "
              f"{prac / bw:.0f} FLOP/byte: a layer with fewer FLOPs per compulsory byte "
              "cannot reach the ceiling from memory.")  # fmt: skip
    else:
        s += " Memory bandwidth not measured."
    return s


def _template_sentences(mine: dict[str, dict[str, Any]],
                        by: dict[tuple[str, str], dict[str, Any]]) -> list[str]:  # fmt: skip
    """Per stage: the most grouped template against the dense one (C=1) at the same block
    FLOPs, in minires and in PyTorch."""
    parts = []
    for stage in ("conv2", "conv3"):
        tmpl = sorted(
            (r for r in mine.values() if r.get("kind") == "template" and r.get("stage") == stage),
            key=lambda r: r.get("cardinality") or 0,
        )
        if len(tmpl) < 2 or tmpl[0].get("cardinality") != 1:
            continue
        d, g = tmpl[0], tmpl[-1]
        label = g["name"].split(" (")[0]
        s = (f"{label}: at the same block FLOPs its 3x3 conv does "
             f"{d['gflop_fwd'] / g['gflop_fwd']:.1f}x fewer FLOPs than the dense one "
             f"({1e3 * g['gflop_fwd']:.0f} vs {1e3 * d['gflop_fwd']:.0f} MFLOP per pass) at "
             f"{g['intensity_flop_per_byte']:.0f} FLOP/byte against "
             f"{d['intensity_flop_per_byte']:.0f}; minires runs it in "
             f"{ms(g['total_median_ms'])} ms ({g['gflops_total']:.0f} GFLOP/s{_plan(g)}) "
             f"against {ms(d['total_median_ms'])} ms ({d['gflops_total']:.0f} GFLOP/s"
             f"{_plan(d)}), "
             f"{_ratio_words(g['total_median_ms'], d['total_median_ms'])}")  # fmt: skip
        tg, td = best_torch(by, g["name"]), best_torch(by, d["name"])
        if tg and td:
            s += (f"; PyTorch's best layout {ms(tg[0])} ms ({tg[1]}) against {ms(td[0])} ms "
                  f"({td[1]}), {_ratio_words(tg[0], td[0])}: x torch {x(g.get('x_torch'))} "
                  f"on the grouped conv, {x(d.get('x_torch'))} on the dense one.")  # fmt: skip
        else:
            s += "; PyTorch not measured."
        parts.append(s)
    return parts


def _roofline_sentence(results: dict[str, Any], mine: dict[str, dict[str, Any]]) -> str:
    """The layers below the roofline's ridge point, with their bandwidth bound."""
    ceil = results.get("ceilings") or {}
    prac, bw = ceil.get("practical_gflops"), ceil.get("bandwidth_gb_s")
    if not (prac and bw):
        return "Roofline bounds not computed: sgemm ceiling or bandwidth not measured."
    ridge = prac / bw
    low = sorted((r for r in mine.values() if r["intensity_flop_per_byte"] < ridge),
                 key=lambda r: r["intensity_flop_per_byte"])  # fmt: skip
    cells = []
    for r in low:
        bound = bw * r["intensity_flop_per_byte"]
        above = " - above it: its data stays in cache" if r["gflops_total"] > bound else ""
        cells.append(
            f"{r['name']} ({r['intensity_flop_per_byte']:.0f} FLOP/byte, bound "
            f"{bound:.0f} GFLOP/s, minires {r['gflops_total']:.0f}{above})"
        )
    if not cells:
        return f"No layer sits below the ridge point ({ridge:.0f} FLOP/byte)."
    return (f"Memory-bound (below the ridge point, {ridge:.0f} FLOP/byte, at {bw:.1f} GB/s): "
            + "; ".join(cells) + ".")  # fmt: skip


def _standing_sentences(mine: dict[str, dict[str, Any]]) -> list[str]:
    """minires against PyTorch's best layout and against its own NumPy reference."""
    parts = []
    xt = [(r["x_torch"], n) for n, r in mine.items() if r.get("x_torch")]
    if xt:
        faster = sum(v > 1 for v, _ in xt)
        lo, hi = min(xt), max(xt)
        parts.append(
            f"minires is faster than PyTorch's best layout on {faster} of {len(xt)} "
            f"layers (x torch from {x(lo[0])} on {lo[1]} to {x(hi[0])} on {hi[1]})."
        )
    else:
        parts.append("x torch: PyTorch not measured.")
    xr = [(r["x_reference"], n) for n, r in mine.items() if r.get("x_reference")]
    if xr:
        slow = [n for v, n in xr if v < 1]
        parts.append(f"Against its NumPy reference minires is {x(min(xr)[0])} to "
                     f"{x(max(xr)[0])} faster" + (f"; slower on {', '.join(slow)}." if slow
                                                  else ", never slower."))  # fmt: skip
    return parts


def _minires_layers(results: dict[str, Any]) -> tuple[dict, dict]:
    rows = ok_rows(results, "layer")
    by = {(r["name"], r["backend"]): r for r in rows}
    return {r["name"]: r for r in rows if r["backend"] == MINIRES}, by


def layers_verdict(results: dict[str, Any]) -> str:
    """Grouped vs dense at the same block FLOPs, the memory-bound layers on the roofline,
    and where minires stands against PyTorch and its own NumPy reference."""
    mine, by = _minires_layers(results)
    if not mine:
        return "minires' layer rows were not measured." + noise_note(results)
    parts = [*_template_sentences(mine, by), _roofline_sentence(results, mine),
             *_standing_sentences(mine)]  # fmt: skip
    return " ".join(parts) + noise_note(results)


def _speed_pair(by: dict[tuple[str, str], dict[str, Any]], a: str, b: str
                ) -> tuple[float | None, float | None]:  # fmt: skip
    """Speed of `b` relative to `a` (time a / time b) in minires and in PyTorch's best
    layout of each."""
    m = None
    if (a, MINIRES) in by and (b, MINIRES) in by:
        m = by[(a, MINIRES)]["total_median_ms"] / by[(b, MINIRES)]["total_median_ms"]
    ta, tb = best_torch(by, a), best_torch(by, b)
    return m, (ta[0] / tb[0] if ta and tb else None)


def _x_torch_list(by: dict[tuple[str, str], dict[str, Any]], names: list[str]) -> str:
    cells = [f"{n} {x(by[(n, MINIRES)].get('x_torch'))}" for n in names
             if (n, MINIRES) in by and by[(n, MINIRES)].get("x_torch")]  # fmt: skip
    return ("x torch: " + ", ".join(cells) + ".") if cells else "x torch: PyTorch not measured."


def blocks_verdict(results: dict[str, Any]) -> str:
    """The ResNeXt block against the ResNet block (same FLOPs) in minires and in PyTorch."""
    rows = ok_rows(results, "blocks")
    by = {(r["name"], r["backend"]): r for r in rows}
    a, b = "block_resnet50", "block_resnext50_32x4d"
    m, t = _speed_pair(by, a, b)
    if m is None and t is None:
        return "ResNeXt block vs ResNet block: not measured." + noise_note(results)
    s = (f"At the same block FLOPs the ResNeXt block runs at "
         f"{'(not measured)' if m is None else f'{m:.2f}'} times the ResNet block's speed in "
         f"minires, {'not measured' if t is None else f'{t:.2f}'} in PyTorch (best layout "
         f"of each).")  # fmt: skip
    return s + " " + _x_torch_list(by, [a, b]) + noise_note(results)


def models_verdict(results: dict[str, Any]) -> str:
    """Whole models: x torch for each, ResNeXt-50 vs ResNet-50, ResNeXt-50's peak memory."""
    rows = ok_rows(results, "models")
    by = {(r["name"], r["backend"]): r for r in rows}
    names = list(dict.fromkeys(r["name"] for r in rows))
    if not names:
        return "Models: not measured." + noise_note(results)
    parts = [_x_torch_list(by, names)]
    a, b = "resnet50", "resnext50_32x4d"
    m, t = _speed_pair(by, a, b)
    if m is not None or t is not None:
        parts.append(f"resnext50_32x4d runs at {'(not measured)' if m is None else f'{m:.2f}'}"
                     f" times resnet50's speed in minires, "
                     f"{'not measured' if t is None else f'{t:.2f}'} in PyTorch.")  # fmt: skip
    else:
        parts.append("resnext50_32x4d vs resnet50: not measured.")
    mine = by.get((b, MINIRES))
    torch_rss = [by[(b, tb)].get("peak_rss_mb") for tb in TORCH_LAYOUTS if (b, tb) in by]
    torch_rss = [v for v in torch_rss if v]
    if mine and mine.get("peak_rss_mb") and torch_rss:
        parts.append(f"Peak RSS of the resnext50_32x4d step: {mine['peak_rss_mb']:.0f} MB in "
                     f"minires, {min(torch_rss):.0f} MB in PyTorch "
                     f"({mine['peak_rss_mb'] / min(torch_rss):.2f}x).")  # fmt: skip
    return " ".join(parts) + noise_note(results)


def coldstart_verdict(results: dict[str, Any]) -> str:
    """What compiling costs: the first call with an empty against a warm Numba cache."""
    rows = {r.get("cache"): r for r in results.get("rows", [])
            if r.get("section") == "coldstart" and r.get("status") == "ok"}  # fmt: skip
    empty, warm = rows.get("empty"), rows.get("warm")
    if not (empty and warm and empty.get("first_call_s") and warm.get("first_call_s")):
        return "Cold start: the empty- or warm-cache row was not measured."
    s = (
        f"The first conv fwd+bwd took {empty['first_call_s']:.2f} s with an empty Numba "
        f"cache (compiling) and {warm['first_call_s']:.2f} s with a warm one"
    )
    if warm.get("steady_call_s"):
        s += f", against {warm['steady_call_s']:.3f} s once running"
    return s + (f": compiling costs {empty['first_call_s'] - warm['first_call_s']:.1f} s, "
                "once per machine and version.")  # fmt: skip


def distributed_verdict(results: dict[str, Any]) -> str:
    """2 ranks x 1 thread against 1 rank x 2 threads, and the all-reduce's share."""
    rows = {r["name"]: r for r in results.get("rows", [])
            if r.get("section") == "distributed" and r.get("status") == "ok"}  # fmt: skip
    one, two = rows.get("resnet20 train 1x2"), rows.get("resnet20 train 2x1")
    parts = []
    if one and two:
        parts.append(
            f"On the same cores, 2 ranks x 1 thread train resnet20 at "
            f"{two['images_per_s'] / one['images_per_s']:.2f} times the throughput "
            f"of 1 rank x 2 threads ({two['images_per_s']:.0f} vs "
            f"{one['images_per_s']:.0f} images/s); the all-reduce takes "
            f"{100 * two['allreduce_share']:.1f}% of a step including the wait for "
            f"the slower rank, {100 * two['allreduce_pure_share']:.2f}% alone."
        )
    else:
        parts.append("resnet20 on 1 vs 2 ranks: not measured.")
    ar = rows.get("allreduce resnet50")
    if ar:
        parts.append(f"All-reduce of ResNet-50's gradients on 2 ranks: {ar['allreduce_ms']:.1f}"
                     f" ms (bus {ar['bus_gb_s']:.2f} GB/s).")  # fmt: skip
    return " ".join(parts) + noise_note(results)


def verdicts(results: dict[str, Any]) -> dict[str, str]:
    """Every section's verdict that has rows (the keys of results.json's ``verdicts``)."""
    from minires.benchmarks.report import forms_verdict

    sections = {r.get("section") for r in results.get("rows", [])}
    out = {}
    if (results.get("ceilings") or {}).get("sgemm"):
        out["ceilings"] = ceilings_verdict(results)
    for key, section, fn in (("layers", "layer", layers_verdict),
                             ("blocks", "blocks", blocks_verdict),
                             ("forms", "forms", forms_verdict),
                             ("models", "models", models_verdict),
                             ("coldstart", "coldstart", coldstart_verdict),
                             ("distributed", "distributed", distributed_verdict)):  # fmt: skip
        if section in sections:
            text = fn(results)
            if text:
                out[key] = text
    return out


# --------------------------------------------------------------------------- the demo


def conv_story(results: dict[str, Any]) -> str:
    """The demo's words on grouped vs dense vs depthwise, from a layer run's results:
    FLOP ratio, FLOP/byte, measured times and GFLOP/s of each, which is faster, the
    roofline bound and the standing against PyTorch and the NumPy reference."""
    mine, by = _minires_layers(results)
    if not mine:
        return "minires' conv rows were not measured." + noise_note(results)
    dense = next((r for r in mine.values() if r.get("kind") == "template"
                  and r.get("cardinality") == 1), None)  # fmt: skip
    parts = _template_sentences(mine, by)
    for r in mine.values():
        if r.get("kind") == "template" and parts:
            continue  # the template sentence told it
        s = (
            f"{r['name']}: {1e3 * r['gflop_fwd']:.1f} MFLOP per pass at "
            f"{r['intensity_flop_per_byte']:.0f} FLOP/byte, {ms(r['total_median_ms'])} ms for "
            f"forward + both backward passes ({r['gflops_total']:.1f} GFLOP/s{_plan(r)})"
        )
        if dense is not None and r is not dense:
            s += (
                f": {dense['gflop_fwd'] / r['gflop_fwd']:.1f}x fewer FLOPs than the dense "
                f"conv, {_ratio_words(r['total_median_ms'], dense['total_median_ms'])}"
            )
        parts.append(s + ".")
    parts += [_roofline_sentence(results, mine), *_standing_sentences(mine)]
    return " ".join(parts) + noise_note(results)
