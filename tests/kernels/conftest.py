"""Kernel-test settings: the planner's rules as stated for CPUs that run 512-bit FMAs at
full rate (the Intel hosts they were measured on), whatever CPU runs the tests, so tests
that name the plan of a geometry hold everywhere. The half-rate rule (AMD Zen 4) has its
own test (test_planner.py::test_winograd_from_16_channels_where_fmas_run_at_half_rate)."""

from __future__ import annotations

import pytest

from minires.kernels.jit import planner


@pytest.fixture(autouse=True)
def _full_rate_fma_rules(monkeypatch):
    monkeypatch.setattr(planner, "_half_rate_512_bit_fma", lambda: False)
