"""minires' random number generator (weight init, dropout-free data shuffling defaults).

``minires.manual_seed(0)`` makes model construction reproducible."""

from __future__ import annotations

import numpy as np

_rng = np.random.default_rng()


def manual_seed(seed: int) -> np.random.Generator:
    """Reseed the global generator used for initialisation; returns it. ``seed`` is an
    integer (negative ones are taken modulo 2**64, as in PyTorch)."""
    global _rng
    if isinstance(seed, bool | np.bool_) or not isinstance(seed, int | np.integer):
        raise TypeError(f"manual_seed: seed must be an int, got {seed!r} ({type(seed).__name__})")
    _rng = np.random.default_rng(int(seed) % 2**64)
    return _rng


def get_rng() -> np.random.Generator:
    """The global generator."""
    return _rng


def get_rng_state() -> dict:
    """The generator's state (JSON-able dict), for checkpoints."""
    return _rng.bit_generator.state


def set_rng_state(state: dict) -> None:
    """Restore a state from `get_rng_state`."""
    _rng.bit_generator.state = state
