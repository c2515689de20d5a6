"""`minires demo --quick` runs end to end and writes its report and plots."""

from __future__ import annotations

import json

from minires.benchmarks.story import ms, plan_cell
from minires.cli import main


def test_demo_quick_end_to_end(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--out", str(out), "--backend", "numpy"]) == 0
    text = (out / "report.md").read_text()
    assert "ops pass in float64" in text
    assert "max |I + R - full|" in text  # the decomposition's own sum check is reported
    assert "preact_resnet8" in text and "exactly equal: True" in text  # the literal formula
    assert "resnet8: train error" in text and "plain8: train error" in text
    assert "conv2 32x4d" in text  # the conv timing table made it into the report
    # the sentences on the conv timing are the numbers of the run the demo just made
    results = json.loads((out / "conv_timing" / "results.json").read_text())
    rows = [r for r in results["rows"] if r["backend"] == "numba" and r.get("status") == "ok"]
    assert len(rows) == 3  # dense, 32x4d, depthwise
    dense = next(r for r in rows if r.get("cardinality") == 1)
    grouped = next(r for r in rows if r.get("cardinality") == 32)
    dw = next(r for r in rows if r["kind"] == "depthwise")

    def plan(r):  # the algorithms the row ran, when the kernels report them
        return "" if plan_cell(r) == "-" else f", plan {plan_cell(r)}"

    assert (
        f"{dw['name']}: {1e3 * dw['gflop_fwd']:.1f} MFLOP per pass at "
        f"{dw['intensity_flop_per_byte']:.0f} FLOP/byte, {ms(dw['total_median_ms'])} ms "
        f"for forward + both backward passes ({dw['gflops_total']:.1f} GFLOP/s{plan(dw)}): "
        f"{dense['gflop_fwd'] / dw['gflop_fwd']:.1f}x fewer FLOPs than the dense conv"
    ) in text
    assert f"does {dense['gflop_fwd'] / grouped['gflop_fwd']:.1f}x fewer FLOPs" in text
    assert (
        f"at {grouped['intensity_flop_per_byte']:.0f} FLOP/byte against "
        f"{dense['intensity_flop_per_byte']:.0f}"
    ) in text
    assert (
        f"minires runs it in {ms(grouped['total_median_ms'])} ms "
        f"({grouped['gflops_total']:.0f} GFLOP/s{plan(grouped)}) against "
        f"{ms(dense['total_median_ms'])} ms ({dense['gflops_total']:.0f} GFLOP/s"
        f"{plan(dense)})"
    ) in text
    # the roofline bound from the run's own bandwidth (the demo measures the ceilings)
    bw, top = results["ceilings"]["bandwidth_gb_s"], results["ceilings"]["practical_gflops"]
    # 2.25 FLOP/byte is under the ridge point of any quiet machine, but both ceilings are
    # measured: on a loaded one the sgemm ceiling drops, so the sentence follows the run
    bound = f"bound {bw * dw['intensity_flop_per_byte']:.0f} GFLOP/s"
    assert (bound in text) == (dw["intensity_flop_per_byte"] < top / bw)
    xr = sorted(r["x_reference"] for r in rows)
    assert f"Against its NumPy reference minires is {xr[0]:.2f}x to {xr[-1]:.2f}x" in text
    assert "8x fewer FLOPs than the dense one but moves nearly" not in text  # no fixed prose
    for png in ("decomposition.png", "gradient_flow.png", "training.png"):
        assert (out / png).stat().st_size > 1000
