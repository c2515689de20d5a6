"""Which kernel implementation the ops call: ``"numba"`` (default, `kernels.jit`) or
``"numpy"`` (the readable reference, `kernels.reference`).

Like PyTorch's global defaults and its per-thread modes:

- ``minires.set_backend(name)`` sets the process-wide default, seen by every thread that
  has not overridden it (and, inside a ``use_backend`` block, by that block too);
- ``with minires.use_backend(name): ...`` overrides it for the current thread (the
  current context, in contextvars terms) only: other threads keep their backend;
- the environment variable ``MINIRES_BACKEND`` gives the default at import time.
"""

from __future__ import annotations

import contextlib
import contextvars
import importlib
import os
import threading
import warnings
from collections.abc import Iterator
from types import ModuleType

BACKENDS = {"numba": "minires.kernels.jit", "numpy": "minires.kernels.reference"}

_default = os.environ.get("MINIRES_BACKEND", "numba").strip().lower() or "numba"
if _default not in BACKENDS:
    warnings.warn(
        f"MINIRES_BACKEND={_default!r} is not one of {sorted(BACKENDS)}; using 'numba'",
        stacklevel=1,
    )
    _default = "numba"

# The current context's override: None (use the default), or (name, module) where module
# is None (load the named backend) or a stand-in module (see `_use_module`).
_override: contextvars.ContextVar[tuple[str, ModuleType | None] | None] = contextvars.ContextVar(
    "minires_backend", default=None
)
_loaded: dict[str, ModuleType] = {}
_load_lock = threading.Lock()


def _check(name: str) -> str:
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; choose one of {sorted(BACKENDS)}")
    return name


def set_backend(name: str) -> None:
    """Select the kernel backend for the process: ``"numba"`` (fast) or ``"numpy"``
    (reference). Threads inside their own `use_backend` block keep theirs."""
    global _default
    _default = _check(name)
    if _override.get() is not None:  # the caller's own block follows its explicit choice
        _override.set((name, None))


def get_backend() -> str:
    """Name of the backend active in this thread."""
    ov = _override.get()
    name = _default if ov is None else ov[0]
    if name == "numba" and _loaded.get("numba") is _loaded.get("numpy") is not None:
        return "numpy"  # numba unavailable: the reference stands in (see `kernels`)
    return name


@contextlib.contextmanager
def use_backend(name: str) -> Iterator[None]:
    """Switch backend in this thread only: ``with use_backend("numpy"): ...``."""
    token = _override.set((_check(name), None))
    try:
        yield
    finally:
        _override.reset(token)


@contextlib.contextmanager
def _use_module(module: ModuleType) -> Iterator[None]:
    """Route this thread's kernel calls to ``module`` (e.g. shape-only stand-ins)."""
    token = _override.set((get_backend(), module))
    try:
        yield
    finally:
        _override.reset(token)


def _load(name: str) -> ModuleType:
    module = _loaded.get(name)
    if module is not None:
        return module
    with _load_lock:
        if name in _loaded:
            return _loaded[name]
        try:
            module = importlib.import_module(BACKENDS[name])
        except ImportError as exc:  # e.g. numba missing: the reference always works
            if name == "numpy":
                raise
            warnings.warn(
                f"numba backend unavailable ({exc}); falling back to the NumPy reference",
                stacklevel=3,
            )
            module = _loaded["numpy"] = importlib.import_module(BACKENDS["numpy"])
        _loaded[name] = module
    return module


def kernels() -> ModuleType:
    """The module of the backend active in this thread (imported on first use)."""
    ov = _override.get()
    if ov is None:
        return _load(_default)
    return ov[1] if ov[1] is not None else _load(ov[0])
