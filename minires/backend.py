"""Which kernel implementation the ops call: ``"numba"`` (default, `kernels.jit`) or
``"numpy"`` (the readable reference, `kernels.reference`).

Pick with ``minires.set_backend(name)``, the ``use_backend(name)`` context manager, or
the environment variable ``MINIRES_BACKEND`` at import time.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import warnings
from collections.abc import Iterator
from types import ModuleType

BACKENDS = {"numba": "minires.kernels.jit", "numpy": "minires.kernels.reference"}

_name = os.environ.get("MINIRES_BACKEND", "numba").strip().lower() or "numba"
if _name not in BACKENDS:
    warnings.warn(
        f"MINIRES_BACKEND={_name!r} is not one of {sorted(BACKENDS)}; using 'numba'",
        stacklevel=1,
    )
    _name = "numba"
_module: ModuleType | None = None


def set_backend(name: str) -> None:
    """Select the kernel backend: ``"numba"`` (fast) or ``"numpy"`` (reference)."""
    global _name, _module
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; choose one of {sorted(BACKENDS)}")
    _name, _module = name, None


def get_backend() -> str:
    """Name of the active backend."""
    return _name


@contextlib.contextmanager
def use_backend(name: str) -> Iterator[None]:
    """Temporarily switch backend: ``with use_backend("numpy"): ...``."""
    previous = get_backend()
    set_backend(name)
    try:
        yield
    finally:
        set_backend(previous)


def kernels() -> ModuleType:
    """The module of the active backend (imported on first use)."""
    global _module, _name
    if _module is None:
        try:
            _module = importlib.import_module(BACKENDS[_name])
        except ImportError as exc:  # e.g. numba missing: the reference always works
            if _name == "numpy":
                raise
            warnings.warn(
                f"numba backend unavailable ({exc}); falling back to the NumPy reference",
                stacklevel=2,
            )
            _name = "numpy"
            _module = importlib.import_module(BACKENDS["numpy"])
    return _module
