"""Numba JIT kernels: the default hot path, same signatures as `kernels.reference`.

Importing this package is cheap: Numba and the kernel modules are imported on first
attribute access, and each kernel is compiled on its first call (then cached on disk,
`cache=True`; see `_numba.jit` for the read-only fallback). Any interface function not
implemented here is re-exported from `kernels.reference`; a kernel whose module cannot be
imported (Numba missing or broken) falls back to the reference with a RuntimeWarning.
The first kernel import runs `configure()` (process-wide settings: 512-bit vectors,
glibc malloc thresholds, the worker thread team; `MINIRES_VERBOSE=1` prints them).

Conv dispatch: `planner.plan(pass_, geometry, dtype)` chooses the algorithm of every
conv pass (its docstring and DESIGN.md hold the table); `plan_for(...)` gives the plan of
a conv from its shapes, `last_plan()` what the last conv call on this thread ran. Layout,
design and measurements: DESIGN.md and PERFLOG.md.
"""

from __future__ import annotations

import importlib
import warnings

# name -> submodule of kernels.jit that implements it (anything else: kernels.reference)
_IMPLEMENTED = {
    "conv2d_forward": "conv",
    "conv2d_backward_input": "conv",
    "conv2d_backward_weight": "conv",
    "conv2d_backward": "conv",
    "batch_norm_train_forward": "batchnorm",
    "batch_norm_train_backward": "batchnorm",
    "batch_norm_eval_forward": "batchnorm",
    "batch_norm_eval_backward": "batchnorm",
    "max_pool2d_forward": "pool",
    "max_pool2d_backward": "pool",
    "avg_pool2d_forward": "pool",
    "avg_pool2d_backward": "pool",
    "relu_forward": "elementwise",
    "relu_backward": "elementwise",
    "add": "elementwise",
    "linear_forward": "linear",
    "linear_backward_input": "linear",
    "linear_backward_weight": "linear",
    "add_relu_forward": "elementwise",
    "row_norm_forward": "rownorm",
    "row_norm_backward": "rownorm",
}
# kernels.jit only (not in kernels/INTERFACE.md): the conv planner's API and the
# process-wide configuration step
_EXTRAS = {
    "plan": "planner",
    "plan_for": "planner",
    "last_plan": "planner",
    "ConvGeometry": "planner",
    "Algorithm": "planner",
    "configure": "_numba",
}
__all__ = list(_IMPLEMENTED) + list(_EXTRAS)  # INTERFACE.md, the fused extras, the extras


def _resolve(name: str):
    if name in _EXTRAS:
        return getattr(importlib.import_module(f"{__name__}.{_EXTRAS[name]}"), name)
    sub = _IMPLEMENTED.get(name)
    if sub is not None:
        try:
            return getattr(importlib.import_module(f"{__name__}.{sub}"), name)
        except (ImportError, AttributeError) as exc:  # e.g. numba missing or broken
            warnings.warn(
                f"kernels.jit.{name}: the Numba kernel is unavailable "
                f"({type(exc).__name__}: {exc}); using the NumPy reference instead",
                RuntimeWarning,
                stacklevel=3,
            )
    return getattr(importlib.import_module("..reference", __package__), name)


def __getattr__(name: str):
    if name in __all__:
        func = _resolve(name)
        globals()[name] = func  # later lookups skip __getattr__
        return func
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))


def implemented_here(name: str) -> bool:
    """True if `name` is a Numba kernel of this package, False if it is the reference."""
    return getattr(__getattr__(name), "__module__", "").startswith(__name__)
