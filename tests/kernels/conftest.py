"""Fixtures of the kernel tests."""

from __future__ import annotations

import pytest
from kernel_checks import vector_width


@pytest.fixture
def wide_vector_rules(monkeypatch):
    """The planner's rules for 64-byte vectors (AVX-512, where most were measured)
    whatever this CPU has, for tests of what those rules plan; the kernels still run at
    this CPU's vector width."""
    vector_width(monkeypatch, 64)
