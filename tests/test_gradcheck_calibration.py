"""The reading guide printed under every gradcheck report ("correct ops show ...") is a
measurement: these tests re-derive it from the built-in ops, so it cannot rot."""

from __future__ import annotations

import importlib

import numpy as np
import pytest

import minires as mr
from minires.commands import gradcheck as gc

G = importlib.import_module("minires.gradcheck")  # `minires.gradcheck` is also the function


def _check_claims(cal: gc.Calibration) -> None:
    small = np.concatenate(list(cal.correct.values()))
    for case, rel in cal.correct.items():
        assert max(rel) < G.SMALL_MAX_REL_ERR, (case, rel)
    # "ops that only move or pick values show ~0, the others 1e-10..1e-7": the median of
    # the others lies in the band, and 90% of them under it; the exact ones are common
    arithmetic = small[small > G.EXACT_REL_ERR]
    assert G.TYPICAL_REL_ERR[0] <= np.median(arithmetic) <= G.TYPICAL_REL_ERR[1]
    assert np.percentile(arithmetic, 90) <= G.TYPICAL_REL_ERR[1]
    assert 0.2 <= np.mean(small <= G.EXACT_REL_ERR) <= 0.6
    for case, rel in cal.larger.items():
        assert max(rel) < G.REDUCTION_MAX_REL_ERR, (case, rel)
    for delta, runs in cal.planted.items():
        for rel, passed in runs:
            # "a backward off by a factor 1+d shows d" ...
            assert 0.5 * delta <= rel <= 2 * delta
            # ... and fails exactly when d is beyond rtol.
            assert passed == (delta <= 1e-3)
        if delta >= G.SUSPICIOUS_REL_ERR:  # a bug that size stands out of the noise
            assert min(r for r, _ in runs) > G.SMALL_MAX_REL_ERR


def test_reading_guide_holds_on_the_builtin_ops():
    cal = gc.calibrate(seeds=2, larger_seeds=0, deltas=(1e-2, 1e-5))
    # The noisiest larger case (a reduction over 576 values), once.
    ((_, _, build),) = [c for c in gc.larger_cases() if c[0] == "batch_norm train"]
    fn, inputs = build(np.random.default_rng(0))
    cal.larger["batch_norm train"] = [mr.gradcheck(fn, inputs).max_rel_error]
    assert cal.larger["batch_norm train"][0] > G.SMALL_MAX_REL_ERR  # why the guide says so
    _check_claims(cal)
    assert f"correct ops, {len(cal.correct)} cases x 2 seed(s)" in cal.summary()


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["numba", "numpy"])
def test_reading_guide_holds_on_the_full_measurement(backend):
    with mr.use_backend(backend):
        _check_claims(gc.calibrate(seeds=8, larger_seeds=3))


def test_reading_guide_states_the_constants():
    text = G.reading_guide()
    for v in (*G.TYPICAL_REL_ERR, G.SMALL_MAX_REL_ERR, G.SUSPICIOUS_REL_ERR):
        assert G._e(v) in text
    assert "3e-5" in text and 2e-5 <= 3e-5 <= G.REDUCTION_MAX_REL_ERR


def test_readme_states_the_measured_bands():
    from pathlib import Path

    readme = (Path(__file__).parents[1] / "README.md").read_text()
    para = readme[readme.index("`mr.gradcheck` compares") :].split("\n\n")[0]
    for v in (*G.TYPICAL_REL_ERR, G.SMALL_MAX_REL_ERR, G.SUSPICIOUS_REL_ERR):
        assert G._e(v) in para, G._e(v)
