"""Helpers for building models."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from minires.nn import init
from minires.tensor import Tensor

_RANDOM_INITS = ("uniform_", "normal_", "kaiming_uniform_", "kaiming_normal_")


def _keep(t: Tensor, *args: object, **kwargs: object) -> Tensor:
    return t


@contextlib.contextmanager
def no_init() -> Iterator[None]:
    """Build models without drawing random weights: much faster for big nets when only
    the structure matters (counting parameters and multiply-adds, loading a checkpoint
    over every weight). Random initialisers become no-ops inside the block, so weights
    hold whatever memory they were allocated with until you load or set them.

        with mr.models.no_init():
            model = mr.models.resnext101_32x8d()
        model.load_state_dict(weights)
    """
    saved = {name: getattr(init, name) for name in _RANDOM_INITS}
    try:
        for name in _RANDOM_INITS:
            setattr(init, name, _keep)
        yield
    finally:
        for name, fn in saved.items():
            setattr(init, name, fn)
