"""Shared test settings: hypothesis without deadlines (JIT compiles make first calls slow),
a seeded minires RNG per test, a `torch` fixture that skips with a clear reason, and a
`backend` fixture running a test on both backends."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

import minires as mr

# Our function-scoped fixtures (backend choice, torch module, seeding) are constant across
# generated examples, so hypothesis' warning about them does not apply.
settings.register_profile(
    "default",
    deadline=None,
    max_examples=25,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
settings.load_profile("default")


@pytest.fixture(autouse=True)
def _seed_everything():
    mr.manual_seed(0)
    np.random.seed(0)
    yield


@pytest.fixture(autouse=True)
def _fresh_conv_plans(monkeypatch):
    """The conv planner keeps its answers (`planner.clear_plans`): each test starts with
    none kept, and any `monkeypatch.setattr` (a planner threshold or predicate changed
    mid-test) forgets them too."""
    from minires.kernels.jit import planner

    planner.clear_plans()
    setattr_ = monkeypatch.setattr

    def setattr_and_forget(*args, **kwargs):
        setattr_(*args, **kwargs)
        planner.clear_plans()

    monkeypatch.setattr = setattr_and_forget
    yield
    planner.clear_plans()


@pytest.fixture
def torch():
    """The torch module, or a skip saying why the oracle test did not run."""
    return pytest.importorskip("torch", reason="PyTorch not installed: torch-oracle test skipped")


@pytest.fixture(params=["numpy", "numba"])
def backend(request):
    """Each minires backend in turn (the NumPy reference and the Numba kernels)."""
    with mr.use_backend(request.param):
        yield request.param
