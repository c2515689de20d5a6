"""Smoke tests of the benchmark harness (`benchmarks/`): tiny sizes, one repetition, the
NumPy reference plus a deliberately wrong fake backend. No timing assertions."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from minires.benchmarks import worker
from minires.benchmarks.machine import theoretical_peak
from minires.benchmarks.report import forms_table, forms_verdict
from minires.benchmarks.specs import LayerSpec, conv_flops, layer_sweep
from minires.benchmarks.story import plan_cell
from minires.benchmarks.sweep import FORMS, BenchConfig, add_derived, model_jobs, run, worker_env


def test_flops_grouped_and_depthwise():
    # ResNeXt 32x4d 3x3 conv: 128 -> 128 in 32 groups of 4 channels, 56x56, batch 2
    s = LayerSpec("g", "template", "conv2", 128, 128, 32, 3, batch=2, size=56)
    assert s.out == 56 and s.w_shape == (128, 4, 3, 3)
    assert s.flops == 2 * 2 * 128 * 56 * 56 * 4 * 9 == 57_802_752
    # depthwise: every output channel sees exactly one input channel
    d = LayerSpec("dw", "depthwise", "conv2", 128, 128, 128, 3, batch=1, size=56)
    assert d.flops == 2 * 1 * 128 * 56 * 56 * 1 * 9
    # dense: groups=1 costs `groups` times the grouped conv of the same width
    dense = LayerSpec("d", "dense", "conv2", 128, 128, 1, 3, batch=2, size=56)
    assert dense.flops == 32 * s.flops
    # 1x1, stride 2, no padding
    assert conv_flops(1, 256, 512, 28, 28, 1, 1, 1) == 2 * 512 * 28 * 28 * 256
    p = LayerSpec("p", "pointwise", "conv2", 256, 512, 1, 1, batch=1, size=56, stride=2)
    assert p.out == 28 and p.flops == 2 * 512 * 28 * 28 * 256
    with pytest.raises(ValueError):
        conv_flops(1, 10, 10, 4, 4, 3, 3, 3)
    # arithmetic intensity: FLOPs over the compulsory bytes of x, w and y
    assert d.min_bytes == 4 * (128 * 56 * 56 + 128 * 9 + 128 * 56 * 56)
    assert d.intensity == pytest.approx(d.flops / d.min_bytes)
    assert d.intensity < s.intensity < dense.intensity


def test_templates_preserve_block_flops():
    specs = [s for s in layer_sweep(batch=1, size=56) if s.kind == "template"]
    assert [s.cardinality for s in specs] == [1, 2, 4, 8, 32] * 2
    assert [s.c_in for s in specs[:5]] == [64, 80, 96, 112, 128]
    assert [s.c_in for s in specs[5:]] == [128, 160, 192, 224, 256]
    blocks = [s.block_gflop for s in specs]
    assert max(blocks) / min(blocks) < 1.03  # the paper's "preserved complexity"
    assert specs[0].gflop > specs[4].gflop  # ... while the 3x3 alone gets cheaper
    names = [s.name for s in layer_sweep(1, 56)]
    assert len(names) == len(set(names)) == 15
    with pytest.raises(ValueError, match="matches no layer"):
        layer_sweep(1, 56, "nonexistent")


def _cpu(vendor, family, model, simd, name="test cpu"):
    return {
        "vendor": vendor,
        "family": family,
        "model_number": model,
        "simd": simd,
        "model": name,
        "physical_cores": 2,
        "clock_mhz": 2300.0,
        "clock_source": "test",
    }


@pytest.mark.parametrize("cpu, per_cycle", [
    # Sapphire Rapids (AMX): two 512-bit FMA units
    (_cpu("GenuineIntel", 6, 0x8F, ["avx512f", "amx_tile", "avx2", "fma"]), 64),
    # a KVM guest that reports a client model number but has AMX: still a Xeon
    (_cpu("GenuineIntel", 6, 0xA7, ["avx512f", "amx_tile", "avx2", "fma"]), 64),
    (_cpu("GenuineIntel", 6, 0x55, ["avx512f", "avx2", "fma"],
          "Intel(R) Xeon(R) Platinum 8280 CPU"), 64),
    # Ice Lake laptop: one 512-bit unit
    (_cpu("GenuineIntel", 6, 0x7E, ["avx512f", "avx2", "fma"], "Intel(R) Core(TM) i7"), 32),
    (_cpu("GenuineIntel", 6, 0x3C, ["avx2", "fma"]), 32),  # Haswell
    # AMD Zen 4: AVX-512 on 256-bit datapaths, not 64 FLOP/cycle
    (_cpu("AuthenticAMD", 0x19, 0x11, ["avx512f", "avx2", "fma"]), 32),
    (_cpu("AuthenticAMD", 0x19, 0x01, ["avx2", "fma"]), 32),  # Zen 3
    (_cpu("AuthenticAMD", 0x17, 0x01, ["avx2", "fma"]), 16),  # Zen 1
])  # fmt: skip
def test_theoretical_peak_knows_the_fma_datapath(cpu, per_cycle):
    peak = theoretical_peak(cpu)
    assert peak["flop_per_cycle_per_core"] == per_cycle
    assert peak["gflops"] == pytest.approx(per_cycle * 2 * 2.3)
    assert "FMA" in peak["assumption"]


@pytest.mark.parametrize("cpu", [
    _cpu("GenuineIntel", 6, 0x55, ["avx512f", "avx2", "fma"], "Intel(R) Xeon(R) Silver 4214"),
    _cpu("AuthenticAMD", 0x1A, 0x02, ["avx512f", "avx2", "fma"]),  # Zen 5: varies by part
    _cpu("SomeVendor", 1, 1, ["sse2"]),
    _cpu(None, None, None, []),
])  # fmt: skip
def test_theoretical_peak_unknown_core_says_so(cpu):
    peak = theoretical_peak(cpu)
    assert peak["gflops"] is None
    assert "unknown" in peak["assumption"] and "measured sgemm" in peak["assumption"]


def test_fma_peak_is_measured_and_finite():
    got = worker.fma_peak(reps=2, iters=20_000)
    assert got["gflops_best"] >= got["gflops_median"] > 0
    assert "chains" in got["method"]


def _ceilings(theo: float | None, fma: float | None, given: float | None = None) -> dict:
    from minires.benchmarks.sweep import summarize_ceilings

    measured = {"numpy": {"status": "ok", "sgemm": {"gflops_best": 300.0, "library": "x",
                                                    "n": 8}}}  # fmt: skip
    if fma:
        measured["numba"] = {"status": "ok", "fma_peak": {"gflops_best": fma, "method": "m"}}
    machine = {"theoretical_peak": {"gflops": theo, "assumption": "a"},
               "cpu": {"clock_mhz": 2600.0}}  # fmt: skip
    return summarize_ceilings(measured, machine, given), machine


@pytest.mark.parametrize("theo, fma, given, peak", [
    (333.0, 488.0, None, 488.0),  # measured FMA peak wins over the nominal-clock one
    (333.0, None, None, 333.0),   # not measured: the derived peak
    (None, 488.0, 400.0, 400.0),  # --peak-gflops wins
    (None, None, None, None),
])  # fmt: skip
def test_percent_of_peak_uses_the_measured_fma_peak(theo, fma, given, peak):
    ceil, _ = _ceilings(theo, fma, given)
    assert ceil["peak_gflops"] == peak
    results = {"rows": [{"section": "layer", "status": "ok", "gflops_total": 100.0,
                         "name": "l", "backend": "numba"}], "ceilings": ceil}  # fmt: skip
    add_derived(results)
    row = results["rows"][0]
    assert row["pct_sgemm"] == pytest.approx(100 / 3)
    assert row["pct_peak"] == (pytest.approx(1e4 / peak) if peak else None)


def test_ceilings_verdict_flags_a_derived_peak_off_the_measured_one():
    from minires.benchmarks.story import ceilings_verdict

    ceil, machine = _ceilings(333.0, 488.0)
    text = ceilings_verdict({"ceilings": ceil, "machine": machine})
    assert "61% of the 488 GFLOP/s FMA peak" in text
    assert "333" in text and "about 3.8 GHz" in text
    ceil, machine = _ceilings(480.0, 488.0)  # within 10%: nothing to flag
    text = ceilings_verdict({"ceilings": ceil, "machine": machine})
    assert "488 GFLOP/s FMA peak" in text and "is off" not in text


def test_rel_err():
    a = np.array([1.0, -2.0, 4.0])
    assert worker.rel_err(a, a) == 0.0
    assert worker.rel_err(a * (1 + 1e-2), a) == pytest.approx(1e-2)
    assert worker.rel_err(a[:2], a) == float("inf")
    assert worker.rel_err(np.array([np.nan, 0, 0]), a) == float("inf")


def test_worker_env_keeps_or_unsets_openblas_overrides(tmp_path):
    base = {"OPENBLAS_CORETYPE": "Haswell", "OPENBLAS_L2_SIZE": "1048576", "PATH": "/bin"}
    cfg = BenchConfig(out_dir=tmp_path, threads=3)
    env, notes = worker_env(cfg, base=base)
    assert "OPENBLAS_CORETYPE" not in env and "OPENBLAS_L2_SIZE" not in env
    assert notes["openblas_overrides_unset_in_workers"] == {
        "OPENBLAS_CORETYPE": "Haswell", "OPENBLAS_L2_SIZE": "1048576"}  # fmt: skip
    assert env["OMP_NUM_THREADS"] == env["NUMBA_NUM_THREADS"] == env["OPENBLAS_NUM_THREADS"] == "3"
    cfg.unset_openblas_env = False
    env, notes = worker_env(cfg, base=base)
    assert env["OPENBLAS_CORETYPE"] == "Haswell"
    assert not notes["openblas_overrides_unset_in_workers"]
    assert base["OPENBLAS_CORETYPE"] == "Haswell"  # the caller's mapping is not modified


def test_fake_backend_needs_opt_in(monkeypatch):
    monkeypatch.delenv(worker.FAKE_ENV, raising=False)
    with pytest.raises(worker.BackendUnavailable, match="test-only"):
        worker.make_backend("broken")


def _tiny_job(spec: LayerSpec) -> dict:
    return {"task": "conv", "spec": spec.to_dict(), "reps": 1, "warmup": 1, "min_time": 0.0,
            "tol": 1e-3, "seed": 0}  # fmt: skip


def test_conv_task_in_process_numpy_and_broken(monkeypatch):
    spec = LayerSpec("t", "template", "conv2", 8, 8, 4, 3, batch=1, size=6)
    res = worker.task_conv(worker.make_backend("numpy"), _tiny_job(spec))
    assert res["status"] == "ok" and res["err_fwd"] == 0.0 and res["reps"] == 1
    assert {"fwd_median_ms", "bwd_in_min_ms", "bwd_w_max_ms", "total_median_ms"} <= set(res)
    monkeypatch.setenv(worker.FAKE_ENV, "1")
    bad = worker.task_conv(worker.make_backend("broken"), _tiny_job(spec))
    assert bad["status"] == "MISMATCH" and "fwd" in bad["reason"]
    assert "total_median_ms" not in bad  # a wrong result is never timed


def test_conv_task_torch(torch):
    spec = LayerSpec("dw", "depthwise", "conv2", 8, 8, 8, 3, batch=2, size=6)
    for name in ("torch", "torch_cl"):
        res = worker.task_conv(worker.make_backend(name), _tiny_job(spec))
        assert res["status"] == "ok", res
        assert max(res["err_fwd"], res["err_bwd_in"], res["err_bwd_w"]) < 1e-5


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """One real run of the harness: worker processes for numpy and the wrong backend,
    two tiny layers (grouped and depthwise), one repetition, outputs written."""
    from minires.benchmarks.plots import write_plots
    from minires.benchmarks.report import write_all

    out = tmp_path_factory.mktemp("bench")
    cfg = BenchConfig(
        out_dir=out, batch=1, size=8, layers="32x4d,depthwise", backends=["numpy"],
        sections=["ceilings", "layers"], reps=1, warmup=1, min_time=0.0, sgemm_n=64,
        stream_mb=1, unset_openblas_env=False, settle=0.0, progress=False, timeout=120,
    )  # fmt: skip
    results = run(cfg, fake_backends=("broken",))
    paths = write_all(results, out)
    paths.update(write_plots(results, out))
    return results, paths


def test_run_produces_rows_and_flags_mismatch(tiny_run):
    results, _ = tiny_run
    rows = [r for r in results["rows"] if r["section"] == "layer"]
    assert {(r["name"].split()[0], r["backend"]) for r in rows} == {
        ("conv2", "numpy"),
        ("conv2", "broken"),
        ("depthwise", "numpy"),
        ("depthwise", "broken"),
    }
    for r in rows:
        if r["backend"] == "numpy":
            assert r["status"] == "ok", r
            assert r["gflops_total"] > 0 and r["total_min_ms"] <= r["total_max_ms"]
            assert r["gflops_total"] == pytest.approx(
                3 * r["gflop_fwd"] / (r["total_median_ms"] * 1e-3)
            )
        else:
            assert r["status"] == "MISMATCH", r
            assert "total_median_ms" not in r
    dw = next(r for r in rows if r["kind"] == "depthwise")
    assert dw["groups"] == dw["c_in"] == 128
    assert dw["gflop_fwd"] * 1e9 == pytest.approx(2 * 1 * 128 * 8 * 8 * 9)
    assert results["ceilings"]["practical_gflops"] > 0
    assert results["workers"]["numpy"]["available"]
    assert results["machine"]["cpu"]["logical_cpus"] >= 1


def test_outputs_written(tiny_run):
    results, paths = tiny_run
    data = json.loads(paths["json"].read_text())
    assert data["machine"]["versions"]["numpy"] == np.__version__
    assert "env_workers" in data and "OMP_NUM_THREADS" in data["env_workers"]["threads_forced"]
    with open(paths["csv"], newline="") as f:
        table = list(csv.DictReader(f))
    assert len(table) == len(results["rows"]) == 4
    assert {"name", "backend", "status", "gflops_total", "total_median_ms"} <= set(table[0])
    md = paths["markdown"].read_text()
    assert "| layer |" in md and "MISMATCH" in md and "sgemm" in md
    # the verdicts and the ratio convention travel with the data; no minires rows here
    assert data["verdicts"]["layers"].startswith("minires' layer rows were not measured.")
    assert "x torch" in data["ratio_convention"] and md.count("**Ratios**") == 1
    assert "**Verdict (layers)**: minires' layer rows were not measured." in md
    for name in ("cardinality", "layers", "roofline"):
        png = paths[name]
        assert png.stat().st_size > 1000 and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_model_jobs_shapes(tmp_path):
    cfg = BenchConfig(out_dir=tmp_path, block_batch=2, model_batch=1, cifar_batch=64)
    jobs = {name: job for _, name, job in model_jobs(cfg)}
    assert set(jobs) == {"block_resnet50", "block_resnext50_32x4d", "resnet50",
                         "resnext50_32x4d", "resnet20", *FORMS.values()}  # fmt: skip
    assert jobs["resnet50"]["input_shape"] == [1, 3, 224, 224]
    assert jobs["resnet20"]["input_shape"] == [64, 3, 32, 32]
    assert jobs["resnet20"]["mode"] == "train"


def test_cli_list_and_minires_bench(capsys):
    from minires.benchmarks.cli import main

    assert main(["--list"]) == 0
    assert "32x4d" in capsys.readouterr().out
    from minires.cli import main as minires_main

    assert minires_main(["bench", "--list", "--batch", "2"]) == 0
    assert "depthwise" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["--backends", "nope", "--out", "unused"])


@pytest.fixture
def restore_backend():
    import minires as mr

    previous = mr.get_backend()
    yield
    mr.set_backend(previous)


def _resnet20_job(tmp_path) -> dict:
    pytest.importorskip("minires.models", reason="minires.models not available yet")
    return {"task": "model", "model": "resnet20", "mode": "train", "input_shape": [2, 3, 32, 32],
            "num_classes": 10, "reps": 1, "warmup": 1, "tol": 1e-3, "seed": 0,
            "ref_dir": str(tmp_path)}  # fmt: skip


def test_model_task_numpy(tmp_path, restore_backend):
    res = worker.task_model("numpy", _resnet20_job(tmp_path))
    assert res["status"] == "ok", res
    assert res["images_per_s"] > 0 and res["peak_rss_mb"] > 0 and res["params"] == 269_722


def test_model_task_torch_twin_matches_minires(tmp_path, restore_backend, torch):
    res = worker.task_model("torch", _resnet20_job(tmp_path))
    assert res["status"] == "ok", res
    assert res["err_fwd"] < 1e-4 and res["params"] == 269_722


def test_unavailable_backend_rows_are_skipped_with_reason():
    spec = LayerSpec("t", "dense", "conv2", 4, 4, 1, 3, batch=1, size=4)
    res = worker.handle("numba", None, "cannot import minires.kernels.jit (boom)", _tiny_job(spec))
    assert res == {"status": "skipped", "reason": "cannot import minires.kernels.jit (boom)"}
    res = worker.handle("numpy", None, None, {"task": "nope"})
    assert res["status"] == "error" and "unknown task" in res["reason"]


def test_scaling_model_ring_allreduce_and_efficiency():
    from minires.benchmarks import scaling_model as sm

    assert sm.comm_time(1e9, 1, 1e9, 1e-5) == 0.0
    # 2(N-1)/N x bytes / bandwidth + 2(N-1) x latency
    assert sm.comm_time(1e9, 4, 1e9, 1e-5) == pytest.approx(1.5 + 6e-5)
    assert sm.efficiency("resnet20", 1, 1e9, 1e-5) == pytest.approx(1.0)
    effs = [sm.efficiency("resnet20", n, 1.25e9, 3e-5, speed=56) for n in (2, 8, 64)]
    assert effs[0] > effs[1] > effs[2] > 0
    assert sm.nodes_for("resnet110", 1.0, 1.25e9, 3e-5, speed=1.0) is None  # capped at 64
    assert "| resnet110 |" in sm.markdown()


def test_distributed_bench_table_renders_rows():
    from minires.benchmarks.distributed import table

    rows = [
        {"section": "distributed", "name": "resnet20 train 1x2", "status": "ok", "ranks": 1,
         "threads": 2, "batch": 64, "step_ms": 400.0, "images_per_s": 160.0,
         "allreduce_ms": 0.0, "allreduce_share": 0.0, "allreduce_pure_ms": 0.0,
         "allreduce_pure_share": 0.0},
        {"section": "distributed", "name": "allreduce resnet50", "status": "skipped",
         "reason": "no mpiexec"},
    ]  # fmt: skip
    lines = table({"rows": rows})
    assert any("resnet20, 1 rank(s) x 2 thread(s)" in ln for ln in lines)
    assert any("skipped: no mpiexec" in ln for ln in lines)


# -- depthwise-separable rows and ResNeXt's forms ---------------------------------------------


def test_separable_row_matches_the_dense_and_grouped_budget():
    specs = {s.kind: s for s in layer_sweep(batch=1, size=56)
             if s.kind in ("separable", "grouped")}  # fmt: skip
    dense = next(s for s in layer_sweep(1, 56) if s.name.startswith("conv2 dense"))
    sep, grp = specs["separable"], specs["grouped"]
    dw, pw = sep.parts()
    assert (dw.groups, dw.c_out, dw.kernel) == (188, 188, 3) and (pw.kernel, pw.groups) == (1, 1)
    assert sep.flops == dw.flops + pw.flops == 2 * 56 * 56 * (9 * 188 + 188 * 188)
    assert grp.flops == dense.flops  # exactly
    assert abs(sep.flops / dense.flops - 1) < 0.01  # within 1%
    assert sep.min_bytes == dw.min_bytes + pw.min_bytes and sep.intensity < dense.intensity
    with pytest.raises(ValueError, match="groups = c_in"):
        LayerSpec("bad", "separable", "conv2", 8, 8, 1, 3, 1, 8)


def test_conv_task_separable_checked_and_timed(monkeypatch):
    spec = LayerSpec("s", "separable", "conv2", 6, 10, 6, 3, batch=2, size=6, stride=2)
    res = worker.task_conv(worker.make_backend("numpy"), _tiny_job(spec))
    assert res["status"] == "ok" and res["err_bwd_w"] == 0.0 and "total_median_ms" in res
    monkeypatch.setenv(worker.FAKE_ENV, "1")
    bad = worker.task_conv(worker.make_backend("broken"), _tiny_job(spec))
    assert bad["status"] == "MISMATCH" and "total_median_ms" not in bad


def test_conv_task_separable_torch(torch):
    spec = LayerSpec("s", "separable", "conv2", 6, 10, 6, 3, batch=2, size=6)
    res = worker.task_conv(worker.make_backend("torch"), _tiny_job(spec))
    assert res["status"] == "ok" and max(res["err_fwd"], res["err_bwd_in"], res["err_bwd_w"]) < 1e-5


def test_forms_jobs(tmp_path):
    cfg = BenchConfig(out_dir=tmp_path, sections=["forms"], block_batch=2)
    jobs = model_jobs(cfg)
    assert [name for _, name, _ in jobs] == list(FORMS.values())
    for section, _, job in jobs:
        assert section == "forms" and job["ref_model"] == FORMS["c"] and job["count_ops"]
        assert job["input_shape"] == [2, 256, 56, 56]


def _form_job(name, tmp_path):
    return {"task": "block", "model": name, "mode": "block", "input_shape": [2, 256, 4, 4],
            "reps": 1, "warmup": 1, "tol": 1e-3, "seed": 0, "ref_dir": str(tmp_path),
            "ref_model": FORMS["c"], "count_ops": True}  # fmt: skip


def test_forms_task_all_checked_against_form_c(tmp_path, restore_backend):
    res = {f: worker.task_model("numpy", _form_job(n, tmp_path)) for f, n in FORMS.items()}
    for r in res.values():
        assert r["status"] == "ok", r
        assert r["err_fwd"] < 1e-5 and r["params"] == res["c"]["params"]
    # ops of one forward: (c) conv-bn-relu x2, conv-bn, add, relu = 10; (a) 32 paths of 7
    # ops + 31 adds + bn3 + add + relu = 258; (b) 32 x 6 + cat + conv3 + bn3 + add + relu
    assert (res["c"]["graph_ops"], res["a"]["graph_ops"], res["b"]["graph_ops"]) == (10, 258, 197)


def test_forms_task_torch_twins(tmp_path, restore_backend, torch, monkeypatch):
    monkeypatch.setenv("MINIRES_BENCH_THREADS", "1")  # tiny ops: spinning threads only hurt
    threads = torch.get_num_threads()
    try:
        for name in FORMS.values():
            r = worker.task_model("torch", _form_job(name, tmp_path))
            assert r["status"] == "ok" and r["err_fwd"] < 1e-4, r
            assert r["graph_ops"] == {"c": 10, "a": 258, "b": 197}[
                next(f for f, n in FORMS.items() if n == name)]  # fmt: skip
    finally:
        torch.set_num_threads(threads)


def test_forms_verdict_from_rows():
    rows = []
    for backend, times in (("numba", (100.0, 300.0, 900.0)), ("torch", (120.0, 500.0, 2000.0))):
        for (f, name), t in zip(FORMS.items(), times):
            rows.append({"section": "forms", "name": name, "backend": backend, "status": "ok",
                         "total_median_ms": t, "total_min_ms": t, "total_max_ms": t,
                         "batch": 8, "input": "256x56x56", "params": 70_144,
                         "graph_ops": {"c": 10, "b": 197, "a": 258}[f]})  # fmt: skip
    results = {"rows": rows, "ceilings": {}, "load": {"busy": True}}
    add_derived(results)
    x = {(r["name"], r["backend"]): r["x_form_c"] for r in rows}
    assert x[(FORMS["a"], "numba")] == pytest.approx(9.0)
    assert x[(FORMS["b"], "torch")] == pytest.approx(500 / 120)
    words = forms_verdict(results)
    assert "form (a) 32 paths, summed: 900.0 ms (9.0x slower)" in words
    assert "(3.0x slower)" in words and "258 ops per forward" in words
    assert "822 MB" in words and "noisy" in words
    table = "\n".join(forms_table(results))
    assert table.count("| (a) 32 paths, summed |") == 2 and "9.00x" in table
    assert forms_verdict({"rows": []}) == ""


# -- the story: plans, one ratio convention, verdicts computed from the rows -------------------


def _layer_rows(times: dict[str, dict[str, float]], plan: dict | None = None) -> list[dict]:
    """Synthetic layer rows (batch 8, 56x56) for the named sweep layers: backend -> ms."""
    specs = {s.name.split(" (")[0]: s for s in layer_sweep(8, 56)}
    rows = []
    for short, per_backend in times.items():
        s = specs[short]
        for backend, t in per_backend.items():
            r = {
                "section": "layer",
                "name": s.name,
                "backend": backend,
                **s.describe(),
                "status": "ok",
                "total_median_ms": t,
                "gflops_total": 3 * s.flops / t / 1e6,
            }
            if plan and backend == "numba":
                r["plan"] = plan
            rows.append(r)  # fmt: skip
    return rows


def _results(rows: list[dict], busy: bool = False) -> dict:
    load = {
        "busy": busy,
        "load1_start": 1.0,
        "load1_max": 4.5,
        "load1_end": 1.0,
        "cores": 2,
        "note": "test",
    }
    results = {"rows": rows, "load": load,
               "ceilings": {"practical_gflops": 300.0, "theoretical_gflops": 332.8,
                            "bandwidth_gb_s": 25.0, "sgemm": {"torch": {}}}}  # fmt: skip
    add_derived(results)
    return results


PLAN = {"forward": "tapconv", "backward_input": "tapconv", "backward_weight": "lane_wgrad"}


def test_plan_column_in_table_json_and_csv(tmp_path):
    from minires.benchmarks.report import layer_table, write_csv, write_json

    rows = _layer_rows({"conv2 32x4d": {"numba": 4.0, "torch": 12.0},
                        "depthwise 3x3 128": {"numba": 2.0, "torch": 2.2}}, plan=PLAN)  # fmt: skip
    del rows[2]["plan"]  # depthwise minires row without a plan
    results = _results(rows)
    table = "\n".join(layer_table(results))
    assert "plan (fwd / bwd-in / bwd-w)" in table
    line32 = next(ln for ln in table.splitlines() if ln.startswith("| conv2 32x4d"))
    line_dw = next(ln for ln in table.splitlines() if ln.startswith("| depthwise"))
    assert "| tapconv / tapconv / lane_wgrad |" in line32 and "| - |" in line_dw
    write_json(results, tmp_path / "r.json")
    write_csv(results["rows"], tmp_path / "r.csv")
    assert json.loads((tmp_path / "r.json").read_text())["rows"][0]["plan"] == PLAN
    with open(tmp_path / "r.csv", newline="") as f:
        table = list(csv.DictReader(f))
    assert json.loads(table[0]["plan"]) == PLAN and table[2]["plan"] == ""


def test_one_ratio_convention_minires_faster_above_one():
    from minires.benchmarks.report import layer_table, markdown, model_table
    from minires.benchmarks.story import RATIO_RULE

    rows = _layer_rows({"conv2 32x4d": {"numba": 10.0, "numpy": 50.0, "torch": 30.0,
                                        "torch_cl": 20.0}})  # fmt: skip
    rows += [{"section": "models", "name": "resnet20", "backend": b, "status": "ok",
              "mode": "train", "batch": 64, "input": "3x32x32", "total_median_ms": t}
             for b, t in (("numba", 100.0), ("torch", 80.0))]  # fmt: skip
    results = _results(rows)
    mine = next(r for r in rows if r["backend"] == "numba" and r["section"] == "layer")
    assert mine["x_torch"] == pytest.approx(2.0) and mine["x_torch_layout"] == "torch_cl"
    assert mine["x_reference"] == pytest.approx(5.0) and mine["time_over_minires"] == 1.0
    torch_row = next(r for r in rows if r["backend"] == "torch" and r["section"] == "layer")
    assert torch_row["time_over_minires"] == pytest.approx(3.0)
    m20 = next(r for r in rows if r["section"] == "models" and r["backend"] == "numba")
    assert m20["x_torch"] == pytest.approx(0.8)  # torch faster: below 1
    assert not any("speedup_vs_minires" in r for r in rows)  # the inverse ratio is gone
    table = "\n".join(layer_table(results))
    assert "| 3.00x | " in table and table.rstrip().endswith("| 2.00x |")
    assert "| 0.80x |" in "\n".join(model_table(results))
    results.update(config={"quick": True, "batch": 8, "size": 56, "threads": 2,
                           "unset_openblas_env": True}, started_utc="t",
                   duration_s=1.0, machine={"cpu": {"model": "cpu", "physical_cores": 2,
                   "logical_cpus": 2}, "versions": {}})  # fmt: skip
    assert markdown(results).count(RATIO_RULE) == 1


def test_layers_verdict_numbers_come_from_the_rows():
    from minires.benchmarks.story import conv_story, layers_verdict

    times = {
        "conv2 dense": {"numba": 26.0, "numpy": 100.0, "torch_cl": 17.5},
        "conv2 32x4d": {"numba": 4.5, "numpy": 200.0, "torch_cl": 12.7},
        "depthwise 3x3 128": {"numba": 2.3, "numpy": 220.0, "torch_cl": 2.31},
    }
    words = layers_verdict(_results(_layer_rows(times)))
    assert "does 8.0x fewer FLOPs than the dense one" in words
    assert "at 9 FLOP/byte against 142" in words
    assert "minires runs it in 4.50 ms" in words and "against 26.0 ms" in words
    assert "5.8x less time" in words  # 26.0 / 4.5
    assert f"x torch {12.7 / 4.5:.2f}x on the grouped conv, {17.5 / 26:.2f}x on the dense" in words
    # ridge 300 / 25 = 12 FLOP/byte: 32x4d (9) and depthwise (2.25) are below it
    assert "ridge point, 12 FLOP/byte" in words and "bound 56 GFLOP/s, minires 75 - above" in words
    assert "bound 225 GFLOP/s, minires 154)" in words  # 25 GB/s x 9 FLOP/byte
    assert "faster than PyTorch's best layout on 2 of 3 layers" in words
    assert "never slower" in words and "noisy" not in words
    # change one row: the sentence follows
    times["conv2 32x4d"]["numba"] = 9.0
    times["depthwise 3x3 128"]["numpy"] = 1.0
    words2 = layers_verdict(_results(_layer_rows(times), busy=True))
    assert "minires runs it in 9.00 ms" in words2 and "2.9x less time" in words2
    assert "slower on depthwise 3x3 128 (g=128)" in words2 and "noisy" in words2
    # the algorithms each pass ran, when the rows name them
    assert "(77 GFLOP/s, plan tapconv / tapconv / lane_wgrad) against" in layers_verdict(
        _results(_layer_rows(times, plan=PLAN)))  # fmt: skip
    # PyTorch missing: said, not invented
    no_torch = {k: {"numba": v["numba"]} for k, v in times.items()}
    words3 = layers_verdict(_results(_layer_rows(no_torch)))
    assert "PyTorch not measured" in words3 and "x torch: PyTorch not measured" in words3
    assert "not measured" in layers_verdict(_results([]))
    story = conv_story(_results(_layer_rows(times)))
    assert "minires runs it in 9.00 ms" in story  # the template sentence, then the rest
    assert "depthwise 3x3 128 (g=128): 57.8 MFLOP per pass at 2 FLOP/byte, 2.30 ms" in story
    assert "32.0x fewer FLOPs than the dense conv, 11.3x less time" in story


def _model_rows(section, times, rss=None):
    return [{"section": section, "name": n, "backend": b, "status": "ok", "mode": "fwdbwd",
             "batch": 2, "input": "3x224x224", "total_median_ms": t,
             "peak_rss_mb": (rss or {}).get((n, b))}
            for n, per in times.items() for b, t in per.items()]  # fmt: skip


def test_blocks_models_coldstart_distributed_verdicts_from_rows():
    from minires.benchmarks import story

    blocks = {
        "block_resnet50": {"numba": 90.0, "torch": 106.0, "torch_cl": 93.0},
        "block_resnext50_32x4d": {"numba": 86.0, "torch": 114.0, "torch_cl": 131.0},
    }
    blocks_verdict, models_verdict = story.blocks_verdict, story.models_verdict
    coldstart_verdict, distributed_verdict = story.coldstart_verdict, story.distributed_verdict
    words = blocks_verdict(_results(_model_rows("blocks", blocks)))
    assert f"{90 / 86:.2f} times the ResNet block's speed in minires" in words
    assert f"{93 / 114:.2f} in PyTorch" in words
    assert f"block_resnext50_32x4d {114 / 86:.2f}x" in words
    blocks["block_resnext50_32x4d"]["numba"] = 45.0
    assert f"{90 / 45:.2f} times" in blocks_verdict(_results(_model_rows("blocks", blocks)))
    del blocks["block_resnet50"]
    assert "not measured" in blocks_verdict(_results(_model_rows("blocks", blocks)))

    models = {
        "resnet50": {"numba": 430.0, "torch_cl": 300.0},
        "resnext50_32x4d": {"numba": 417.0, "torch_cl": 366.0},
    }
    rss = {("resnext50_32x4d", "numba"): 808.0, ("resnext50_32x4d", "torch_cl"): 782.0}
    words = models_verdict(_results(_model_rows("models", models, rss), busy=True))
    assert f"resnet50 {300 / 430:.2f}x" in words and f"{430 / 417:.2f} times resnet50" in words
    assert "808 MB in minires, 782 MB in PyTorch (1.03x)" in words and "noisy" in words

    cold = [{"section": "coldstart", "cache": c, "status": "ok", "first_call_s": s,
             "steady_call_s": 0.01} for c, s in (("empty", 5.4), ("warm", 0.36))]  # fmt: skip
    assert "5.40 s with an empty" in coldstart_verdict({"rows": cold})
    assert "compiling costs 5.0 s" in coldstart_verdict({"rows": cold})
    assert "not measured" in coldstart_verdict({"rows": cold[:1]})
    dist = [{"section": "distributed", "name": f"resnet20 train {n}", "status": "ok",
             "images_per_s": ips, "allreduce_share": 0.05, "allreduce_pure_share": 0.01}
            for n, ips in (("1x2", 160.0), ("2x1", 200.0))]  # fmt: skip
    assert "1.25 times the throughput" in distributed_verdict({"rows": dist})
    assert "not measured" in distributed_verdict({"rows": dist[:1]})


def test_old_runs_render_in_the_one_convention_and_plot_x_torch(tmp_path):
    from minires.benchmarks.plots import plot_layers
    from minires.benchmarks.report import headline_table, layer_table

    rows = _layer_rows({"conv2 32x4d": {"numba": 10.0, "numpy": 40.0, "torch_cl": 25.0}})
    for r in rows:  # a results.json written before the convention: the inverse ratio only
        r["speedup_vs_minires"] = 10.0 / r["total_median_ms"]
    old = {"rows": rows, "ceilings": {}}
    assert "| 2.50x | 2.50x |" in "\n".join(layer_table(old))  # torch_cl x, then x torch
    assert "| 2.50 | 4.00 |" in "\n".join(headline_table(old))  # x torch, x reference
    assert plot_layers(old, tmp_path / "layers.png").stat().st_size > 1000


def test_conv_task_numba_rows_record_the_plan(monkeypatch):
    """A numba layer row names the kernels.jit algorithm of each pass (`plan`); a
    separable row both of its convs; other backends have no plan. (The planner's rules
    for 64-byte vectors, whatever this CPU has: with AVX2's this weight gradient is
    planned direct, and no one sweep.)"""
    from minires.kernels.jit import planner

    monkeypatch.setattr(planner, "_lanes", lambda itemsize: (64 // itemsize, 64))
    spec = LayerSpec("t", "template", "conv2", 8, 8, 4, 3, batch=1, size=6)
    res = worker.task_conv(worker.make_backend("numba"), _tiny_job(spec))
    assert res["status"] == "ok"
    assert res["plan"] == {
        "forward": "tap_same",
        "backward_input": "transposed:tap_same",
        "backward_weight": "same3x3_masked",
        "backward": "one sweep",  # both gradients in one call (kernels/jit/onesweep.py)
    }
    assert plan_cell(res).endswith("same3x3_masked (backward: one sweep)")
    json.dumps(res)  # the plan is plain strings in results.json
    sep = LayerSpec("s", "separable", "conv2", 6, 10, 6, 3, batch=2, size=6, stride=2)
    res = worker.task_conv(worker.make_backend("numba"), _tiny_job(sep))
    assert res["plan"]["forward"] == "direct + pointwise_gemm"  # depthwise stride 2; a 1x1
    assert "backward" not in res["plan"]  # stride 2 and a 1x1: the two passes apart
    res = worker.task_conv(worker.make_backend("numpy"), _tiny_job(spec))
    assert "plan" not in res


def test_bench_autotune_flag_reaches_the_workers(tmp_path):
    """`minires bench --autotune` runs the workers with MINIRES_AUTOTUNE=1 (and without
    the flag with it off, whatever the caller's environment says)."""
    from minires.benchmarks.cli import build_parser, config_from_args

    cfg = config_from_args(build_parser().parse_args(["--autotune", "--out", str(tmp_path)]))
    env, notes = worker_env(cfg, base={"PATH": "/bin"})
    assert env["MINIRES_AUTOTUNE"] == "1" and notes["autotune"] is True
    cfg = config_from_args(build_parser().parse_args(["--out", str(tmp_path)]))
    env, _ = worker_env(cfg, base={"PATH": "/bin", "MINIRES_AUTOTUNE": "1"})
    assert env["MINIRES_AUTOTUNE"] == "0"


def test_model_session_tasks_open_step_close(tmp_path, restore_backend):
    job = {**_resnet20_job(tmp_path), "task": "model_open"}
    assert worker.handle("numpy", None, None, {"task": "model_step"})["status"] == "error"
    opened = worker.handle("numpy", None, None, job)
    assert opened["status"] == "ok" and opened["err_fwd"] <= 1e-3, opened
    steps = [worker.handle("numpy", None, None, {"task": "model_step"}) for _ in range(2)]
    assert all(s["status"] == "ok" and s["seconds"] > 0 for s in steps)
    row = worker.handle("numpy", None, None, {"task": "model_close"})
    assert row["status"] == "ok" and row["reps"] == 2 and row["peak_rss_mb"] > 0
    assert row["total_median_ms"] == pytest.approx(1e3 * np.median([s["seconds"] for s in steps]))
    assert row["images_per_s"] == pytest.approx(2 / np.median([s["seconds"] for s in steps]))
    # closed: nothing to step or close any more
    assert worker.handle("numpy", None, None, {"task": "model_step"})["status"] == "error"
    assert worker.handle("numpy", None, None, {"task": "model_close"})["status"] == "error"


def test_interleaved_model_steps_rotate_and_drop_a_failing_backend(monkeypatch, tmp_path):
    from minires.benchmarks import sweep

    steps: list[str] = []

    class FakeWorker:
        def __init__(self, backend, env, log_dir, timeout):
            self.backend, self.alive, self.n = backend, True, 0

        def start(self):
            return {}

        def request(self, job):
            if job["task"] == "model_open":
                return {"status": "MISMATCH"} if self.backend == "bad" else {"status": "ok"}
            if job["task"] == "model_step":
                steps.append(self.backend)
                self.n += 1
                if self.backend == "flaky" and self.n == 2:
                    return {"status": "error", "reason": "boom"}
                return {"status": "ok", "seconds": 0.1}
            return {"status": "ok", "reps": self.n}

        def wait_idle(self, max_wait):
            return 0.0

        def close(self, kill=False):
            self.alive = False

    monkeypatch.setattr(sweep, "Worker", FakeWorker)
    res = sweep.run_interleaved(["a", "bad", "b", "flaky"], {"reps": 3}, {}, tmp_path, 1, 0)
    # round 1: a b flaky; round 2 starts one later: b flaky(fails) a; round 3: a b
    assert steps == ["a", "b", "flaky", "b", "flaky", "a", "a", "b"]
    assert res["a"] == {"status": "ok", "reps": 3} and res["b"] == {"status": "ok", "reps": 3}
    assert res["bad"]["status"] == "MISMATCH" and res["flaky"]["reason"] == "boom"


def test_interleaved_model_run_in_real_workers(tmp_path):
    pytest.importorskip("minires.models", reason="minires.models not available yet")
    from minires.benchmarks import sweep

    cfg = BenchConfig(out_dir=tmp_path, unset_openblas_env=False)
    env, _ = worker_env(cfg)
    job = {**_resnet20_job(tmp_path), "reps": 2}
    res = sweep.run_interleaved(["numpy"], job, env, tmp_path, 300, 0.0)
    assert res["numpy"]["status"] == "ok", res
    assert res["numpy"]["reps"] == 2 and res["numpy"]["peak_rss_mb"] > 0


def test_conv_more_adds_repetitions_of_the_last_checked_layer(monkeypatch):
    spec = LayerSpec("t", "template", "conv2", 8, 8, 4, 3, batch=1, size=6)
    first = worker.task_conv(worker.make_backend("numpy"), _tiny_job(spec))
    assert first["status"] == "ok" and first["reps"] == 1
    more = worker.handle("numpy", None, None, {"task": "conv_more", "reps": 2, "min_time": 0})
    assert more["status"] == "ok" and more["reps"] == 3  # statistics over all of them
    assert more.get("plan") == first.get("plan") and more["err_fwd"] == first["err_fwd"]
    assert more["total_min_ms"] <= more["total_median_ms"] <= more["total_max_ms"]
    # a layer that failed its check leaves nothing to time: never the previous layer
    monkeypatch.setenv(worker.FAKE_ENV, "1")
    bad = worker.task_conv(worker.make_backend("broken"), _tiny_job(spec))
    assert bad["status"] == "MISMATCH"
    again = worker.handle("numpy", None, None, {"task": "conv_more", "reps": 1})
    assert again["status"] == "error" and "no layer" in again["reason"]


def test_layer_job_splits_the_repetitions_over_rounds(tmp_path):
    from minires.benchmarks.sweep import layer_job

    cfg = BenchConfig(out_dir=tmp_path, reps=5, min_time=0.3, max_reps=50, max_time=15.0)
    first = layer_job(cfg, 0, spec={"name": "x"}, ref_dir="r")
    assert first["task"] == "conv" and first["spec"] == {"name": "x"}
    assert (first["reps"], first["max_reps"]) == (2, 17)  # 3 rounds: >= 5 and >= 50 in all
    assert first["min_time"] == pytest.approx(0.1) and first["max_time"] == pytest.approx(5.0)
    later = layer_job(cfg, 2)
    assert later["task"] == "conv_more" and "spec" not in later and later["reps"] == 2
    one = layer_job(BenchConfig.quick_preset(tmp_path), 0, spec={})
    assert one["reps"] == 3  # --quick: one round, as before


def test_layer_rounds_rotate_the_backends(monkeypatch, tmp_path):
    from minires.benchmarks import sweep

    calls: list[tuple[str, str]] = []

    class FakeWorker:
        def __init__(self, backend, env, log_dir, timeout):
            self.backend, self.alive, self.n = backend, True, 0

        def start(self):
            return {"available": True}

        def request(self, job):
            calls.append((self.backend, job["task"]))
            if job["task"] == "conv" and self.backend == "bad":
                return {"status": "MISMATCH", "reason": "wrong"}
            self.n += 1
            ms = {"total_median_ms": 1.0, "fwd_median_ms": 0.3, "bwd_in_median_ms": 0.3,
                  "bwd_w_median_ms": 0.4}  # fmt: skip
            return {"status": "ok", "reps": self.n, **ms}

        def wait_idle(self, max_wait):
            return 0.0

        def close(self, kill=False):
            self.alive = False

    monkeypatch.setattr(sweep, "Worker", FakeWorker)
    cfg = BenchConfig(out_dir=tmp_path, backends=["a", "bad", "b"], sections=["layers"],
                      layers="32x4d", batch=1, size=8, progress=False, plots=False)  # fmt: skip
    results = sweep.run(cfg)
    assert calls == [("a", "conv"), ("bad", "conv"), ("b", "conv"),  # round 0: all, checked
                     ("b", "conv_more"), ("a", "conv_more"),  # round 1 starts one later
                     ("a", "conv_more"), ("b", "conv_more")]  # fmt: skip
    rows = {r["backend"]: r for r in results["rows"] if r["section"] == "layer"}
    assert rows["a"]["reps"] == 3 and rows["b"]["reps"] == 3
    assert rows["bad"]["status"] == "MISMATCH"


def test_software_line_names_numpys_blas_not_another_librarys(tiny_run):
    from minires.benchmarks.report import machine_lines

    results, _ = tiny_run
    scipy_first = {"user_api": "blas", "internal_api": "openblas", "version": "0.0.1-scipy",
                   "architecture": "X"}  # fmt: skip
    numpy_blas = next(b for b in results["workers"]["numpy"]["blas"] if b["user_api"] == "blas")
    workers = {"numba": {"blas": [scipy_first]}, **results["workers"]}
    line = next(ln for ln in machine_lines({**results, "workers": workers}) if "Software" in ln)
    assert str(numpy_blas["version"]) in line and "0.0.1-scipy" not in line
