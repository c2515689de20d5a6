"""Autotuning of the conv planner (`MINIRES_AUTOTUNE=1`), with a fake clock: which
candidates are timed, which one wins, and the on-disk cache."""

from __future__ import annotations

import json

import numpy as np
import pytest
from kernel_checks import CONV_PATH_CASES, assert_close, conv_inputs, conv_path_cases, vector_width

import minires.kernels.jit as J
import minires.kernels.reference as R
from minires.kernels.jit import autotune, planner
from minires.kernels.jit.planner import Algorithm as A
from minires.kernels.jit.planner import ConvGeometry


@pytest.fixture
def tuning(tmp_path, monkeypatch):
    """Autotuning on, its cache in tmp_path, nothing in memory."""
    monkeypatch.setenv(autotune.ENV, "1")
    monkeypatch.setenv("MINIRES_CACHE_DIR", str(tmp_path))
    autotune.forget()
    yield tmp_path
    autotune.forget()


class FakeClock:
    """A clock under the test's control: `cost[alg]` seconds pass in each timed call
    (100 for an algorithm `cost` leaves out: a candidate only some CPUs have, such as
    the SIMD GEMM beyond its rules with 32-byte vectors, never wins)."""

    def __init__(self, cost):
        self.now, self.cost, self.calls = 0.0, cost, []

    def __call__(self):
        return self.now

    def run(self, alg):
        self.calls.append(alg)
        self.now += self.cost.get(alg, 100.0)


@pytest.mark.parametrize("vector_bytes", [64, 32])
def test_candidates_are_the_plans_with_families_switched_off(vector_bytes, monkeypatch):
    vector_width(monkeypatch, vector_bytes)
    # with AVX2's vectors the rules plan direct kernels here and BLAS for the SIMD GEMM's
    # geometries; what they give up is timed too (BEYOND_THE_RULES)
    avx2 = vector_bytes == 32
    g = ConvGeometry.of((8, 16, 32, 32), (16, 16, 3, 3), 1, 1, 1, 1)  # CIFAR 16->16
    fwd = [A.DIRECT, A.TAP_SAME] if avx2 else [A.TAP_SAME, A.DIRECT]
    assert planner.candidates("forward", g) == [*fwd, A.IM2COL_GEMM]
    cands = planner.candidates("backward_weight", g)
    # the lane kernel's rule leaves these planes out (measured on Zen 4); it can run
    # here, so autotuning times it too (BEYOND_THE_RULES), after the plans
    extra = [A.IM2COL_SIMD] if avx2 else []
    first = A.DIRECT if avx2 else A.SAME3X3_MASKED
    assert cands[0] == first and cands[len(cands) - 1 - len(extra) - avx2] == A.LANE
    assert set(cands) == {A.SAME3X3_MASKED, A.DIRECT, A.IM2COL_GEMM, A.LANE, *extra}
    assert not planner.use_lane_weight_grad(g, 4) and planner.can_lane_weight_grad(g)
    stem = ConvGeometry.of((2, 3, 224, 224), (64, 3, 7, 7), 2, 3, 1, 1)
    assert planner.candidates("forward", stem) == [A.TAP_POLY2, A.IM2COL_GEMM]
    assert planner.candidates("backward_input", stem) == [A.COL2IM_GEMM]  # nothing else
    assert planner.candidates("backward_weight", stem) == [A.DIRECT, A.IM2COL_GEMM, *extra]
    pointwise = ConvGeometry.of((2, 1024, 14, 14), (512, 1024, 1, 1), 1, 0, 1, 1)
    for p, simd in zip(planner.PASSES, (A.POINTWISE_SIMD, A.TRANSPOSED_POINTWISE_SIMD,
                                        A.POINTWISE_SIMD)):  # fmt: skip
        cands = planner.candidates(p, pointwise)
        if avx2:  # timed, not planned
            assert simd in cands and cands[0] != simd, (p, cands)
        elif p != "backward_input":  # planned (the input gradient's rule: <= 64 pixels)
            assert cands[0] == simd, (p, cands)
    for case, want in conv_path_cases(vector_bytes).values():  # the default plan first
        x, w, _, args = conv_inputs(case, np.float32, 0)
        g = ConvGeometry.of(x.shape, w.shape, *args)
        for p, alg in zip(planner.PASSES, want):
            cands = planner.candidates(p, g)
            assert cands[0] == alg and len(set(cands)) == len(cands)


def test_autotune_can_take_the_lane_weight_grad_beyond_its_rule(tuning, monkeypatch):
    """8x14d (14 outputs a group: outside the lane rule) - when the lane kernel is the
    fastest, autotuning keeps it, and the conv's weight gradient then runs it and
    matches the reference."""
    x, go = np.random.default_rng(3).standard_normal((2, 2, 28, 9, 9)).astype(np.float32)
    shape, args = (28, 14, 3, 3), ((1, 1), (1, 1), (1, 1), 2)
    g = ConvGeometry.of(x.shape, shape, *args)
    assert A.LANE in planner.candidates("backward_weight", g)
    assert planner.plan("backward_weight", g) != A.LANE
    cost = {alg: 2.0 for alg in planner.candidates("backward_weight", g)}
    clock = FakeClock({**cost, A.LANE: 1.0})
    monkeypatch.setattr(autotune, "_timer", clock)
    assert autotune.choose("backward_weight", g, np.float32, clock.run) == A.LANE
    got = J.conv2d_backward_weight(x, go, shape, *args)
    assert J.last_plan()["backward_weight"] == A.LANE
    assert_close(got, R.conv2d_backward_weight(x, go, shape, *args), np.float32)


@pytest.mark.usefixtures("wide_vector_rules")
def test_choose_times_every_candidate_and_keeps_the_fastest(tuning, monkeypatch):
    g = ConvGeometry.of((8, 16, 32, 32), (16, 16, 3, 3), 1, 1, 1, 1)
    clock = FakeClock({A.TAP_SAME: 3.0, A.DIRECT: 1.0, A.IM2COL_GEMM: 2.0})
    monkeypatch.setattr(autotune, "_timer", clock)
    assert autotune.choose("forward", g, np.float32, clock.run) == A.DIRECT
    order = [A.TAP_SAME, A.DIRECT, A.IM2COL_GEMM]
    assert clock.calls == order + order * autotune.REPS  # warm-ups, then rounds
    # cached: no more timing, in this process or (from the file) in the next one
    assert autotune.choose("forward", g, np.float32, clock.run) == A.DIRECT
    autotune.forget()
    assert autotune.choose("forward", g, np.float32, clock.run) == A.DIRECT
    assert len(clock.calls) == 12
    assert autotune.cached("forward", g, np.float32) == A.DIRECT
    assert autotune.cached("forward", g, np.float64) is None  # per dtype
    assert J.plan_for((8, 16, 32, 32), (16, 16, 3, 3), 1, 1, 1, 1)["forward"] == A.DIRECT
    # one file, keyed by the CPU and library versions, no temporary files left
    files = list(tuning.iterdir())
    assert files == [autotune.cache_path()]
    data = json.loads(files[0].read_text())
    assert data["key"]["cpu"] == autotune.cpu_model() and "numba" in data["key"]
    assert list(data["choices"].values()) == ["direct"]


def test_a_pass_with_one_candidate_is_planned_once(tuning, monkeypatch):
    """Nothing to time, nothing written - but the candidates (128 plans) are not worked
    out again on every call: that cost ResNeXt-50 ~30 ms a step with autotuning on."""
    stem = ConvGeometry.of((2, 3, 224, 224), (64, 3, 7, 7), 2, 3, 1, 1)
    calls = []
    real = autotune.candidates

    def counting(*args):
        calls.append(args)
        return real(*args)

    monkeypatch.setattr(autotune, "candidates", counting)
    clock = FakeClock({})
    for _ in range(3):
        assert autotune.choose("backward_input", stem, np.float32, clock.run) == A.COL2IM_GEMM
    assert len(calls) == 1 and clock.calls == []
    assert not list(tuning.iterdir())  # not written: a later version may have more


@pytest.mark.usefixtures("wide_vector_rules")
def test_cache_of_another_cpu_is_not_used(tuning, monkeypatch):
    g = ConvGeometry.of((8, 16, 32, 32), (16, 16, 3, 3), 1, 1, 1, 1)
    clock = FakeClock({A.SAME3X3_MASKED: 1.0, A.DIRECT: 2.0, A.IM2COL_GEMM: 0.5, A.LANE: 3.0})
    monkeypatch.setattr(autotune, "_timer", clock)
    assert autotune.choose("backward_weight", g, np.float32, clock.run) == A.IM2COL_GEMM
    first = autotune.cache_path()
    monkeypatch.setattr(autotune, "cpu_model", lambda: "Some Other CPU")
    autotune.forget()
    assert autotune.cache_path() != first
    assert autotune.cached("backward_weight", g, np.float32) is None
    clock.cost[A.IM2COL_GEMM] = 5.0
    assert autotune.choose("backward_weight", g, np.float32, clock.run) == A.SAME3X3_MASKED
    assert len(list(tuning.glob("autotune-*.json"))) == 2


def test_choices_of_other_kernel_sources_are_not_used(tuning, monkeypatch):
    """The key hashes kernels/jit's sources: after a change to the planner or a kernel
    (a new candidate, a faster kernel) earlier timings are not reused."""
    assert autotune.cache_key()["kernels"] == autotune.kernels_hash()
    assert len(autotune.kernels_hash()) == 16
    g = ConvGeometry.of((8, 16, 32, 32), (16, 16, 3, 3), 1, 1, 1, 1)
    clock = FakeClock({A.TAP_SAME: 3.0, A.DIRECT: 1.0, A.IM2COL_GEMM: 2.0})
    monkeypatch.setattr(autotune, "_timer", clock)
    assert autotune.choose("forward", g, np.float32, clock.run) == A.DIRECT
    monkeypatch.setattr(autotune, "kernels_hash", lambda: "0" * 16)
    autotune.forget()
    assert autotune.cached("forward", g, np.float32) is None


def test_off_by_default(monkeypatch):
    monkeypatch.delenv(autotune.ENV, raising=False)
    g = ConvGeometry.of((8, 16, 32, 32), (16, 16, 3, 3), 1, 1, 1, 1)
    assert not autotune.enabled() and autotune.cached("forward", g, np.float32) is None


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
def test_conv_calls_run_the_tuned_algorithm(tuning, monkeypatch):
    """The entry points with autotuning on: the fake clock makes the GEMM paths fastest,
    the calls run them (`last_plan`) and still match the reference; non-finite weights
    are not tuned."""
    slow = {a: 1.0 for a in A}
    slow.update({A.IM2COL_GEMM: 0.1, A.TRANSPOSED_IM2COL_GEMM: 0.1})
    state = {"now": 0.0}

    def timer():  # each read advances by the cost of the algorithm last planned
        state["now"] += slow[J.last_plan().get("forward", A.DIRECT)] / 2
        return state["now"]

    monkeypatch.setattr(autotune, "_timer", timer)
    case, want = CONV_PATH_CASES["dense3x3"]
    x, w, go, args = conv_inputs(case, np.float64, 3)
    # time by the algorithm that runs: wrap the forward runner to record it
    from minires.kernels.jit import conv as jconv

    real = jconv._run_forward

    def spy(alg, *a):
        planner.record("forward", alg)
        return real(alg, *a)

    monkeypatch.setattr(jconv, "_run_forward", spy)
    out = J.conv2d_forward(x, w, None, *args)
    assert J.last_plan()["forward"] == A.IM2COL_GEMM != want[0]
    assert_close(out, R.conv2d_forward(x, w, None, *args), np.float64)
    assert autotune.cached("forward", ConvGeometry.of(x.shape, w.shape, *args), x.dtype)
    w[0, 0, 0, 0] = np.nan
    J.conv2d_backward_input(go, w, x.shape, *args)
    assert J.last_plan()["backward_input"] == A.COL2IM_GEMM
    g = ConvGeometry.of(x.shape, w.shape, *args)
    assert autotune.cached("backward_input", g, x.dtype) is None  # not tuned
